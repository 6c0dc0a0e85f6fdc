#include "infer/evaluate.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "infer/tagged.h"
#include "util/error.h"

namespace bertune::infer {
using Json = nlohmann::json;

Json EvalResult::record(const std::string& prefix) const {
  Json j = metrics.to_json(prefix);
  j[prefix + "runtime"] = runtime;
  j[prefix + "samples_per_second"] = runtime > 0 ? metrics.count / runtime : 0.0;
  j[prefix + "steps_per_second"] = runtime > 0 ? steps / runtime : 0.0;
  return j;
}

namespace {

// Token classification: each batch's logit rows (the labelled tokens) back to their examples
// as predicted tags, entity metrics against the true tags; eval_loss the mean of the batches'
// losses weighted by their sizes, as HF's evaluation loop repeats each batch's loss.
// keep_logits: each labelled row's logits at its example and position (EvalResult::logits).
void evaluate_tokens(model::BertModel& model, const TokenizedData& data, const std::vector<size_t>& order,
                     int batch_size, const BatchLayout& layout, bool keep_logits, EvalResult& r) {
  if (!data.labelled()) throw Error("evaluate: token classification needs tagged examples");
  const model::BertConfig& config = model.config();
  std::vector<std::vector<std::string>> predicted(data.size()), truth(data.size());
  if (keep_logits) {
    for (const auto& ids : data.ids) r.positions = std::max(r.positions, ids.size());
    r.logits.assign(data.size() * r.positions * static_cast<size_t>(config.num_labels()), 0.0f);
  }
  double loss_sum = 0.0;
  for (const auto& indices : split_batches(order, batch_size)) {
    model::Batch batch = build_batch(data, indices, layout);
    loss_sum += double(model.forward(batch, /*train=*/false)) * double(indices.size());
    const float* logits = model.logits();  // (R, C): the labelled rows
    const int C = model.logits_cols();
    const auto& rows = model.logit_token_rows();  // ascending
    size_t k = 0;
    for (size_t i = 0; i < rows.size(); ++i) {
      while (rows[i] >= batch.offsets[k + 1]) ++k;
      predicted[indices[k]].push_back(config.label_name(argmax(logits + i * C, C)));
      if (keep_logits)
        std::copy(logits + i * C, logits + (i + 1) * C,
                  r.logits.begin() + static_cast<std::ptrdiff_t>(
                                         (indices[k] * r.positions + static_cast<size_t>(rows[i] - batch.offsets[k])) *
                                         static_cast<size_t>(C)));
    }
    r.steps++;
  }
  for (size_t i = 0; i < data.size(); ++i) truth[i] = labelled_tags(data.token_labels[i], config);
  r.metrics = entity_metrics(predicted, truth);
  r.metrics.num_labels = config.num_labels();
  r.metrics.loss = data.size() ? loss_sum / double(data.size()) : 0.0;
}

}  // namespace

EvalResult evaluate(model::BertModel& model, const TokenizedData& data, int batch_size, Padding padding,
                    int max_length, int32_t pad_id, bool keep_logits, bool sort_by_length,
                    const EvalShard* shard) {
  const auto start = std::chrono::steady_clock::now();
  const size_t num_labels = static_cast<size_t>(model.config().num_labels());
  const BatchLayout layout{padding, max_length, pad_id};
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), size_t(0));
  if (sort_by_length)
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return data.ids[a].size() < data.ids[b].size(); });
  EvalResult r;
  if (model.task() == model::Task::TokenClassification) {
    evaluate_tokens(model, data, order, batch_size, layout, keep_logits, r);
    r.runtime = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    return r;
  }
  // Logits land at their example's place, so everything after this loop sees input order.
  std::vector<float> logits(data.size() * num_labels);
  const bool sharded = shard != nullptr && shard->size > 1;
  size_t j = 0;
  auto batches = split_batches(order, batch_size);
  // Length-sorted batches run longest first, so the model's activation arena is laid out once,
  // for the first batch, instead of growing as the batches lengthen. The batches are the same
  // slices either way, so every example's logits are the same.
  if (sort_by_length) std::reverse(batches.begin(), batches.end());
  for (const auto& indices : batches) {
    if (sharded && j++ % static_cast<size_t>(shard->size) != static_cast<size_t>(shard->rank)) continue;
    model::Batch batch = build_batch(data, indices, layout);
    model.forward(batch, /*train=*/false);
    const float* out = model.logits();  // (B, num_labels)
    for (size_t i = 0; i < indices.size(); ++i)
      std::copy(out + i * num_labels, out + (i + 1) * num_labels, logits.begin() + indices[i] * num_labels);
    r.steps++;
  }
  if (sharded) shard->sum_all(logits.data(), logits.size());
  const model::ProblemType problem = model.config().problem_type;
  if (data.labelled() && !data.targets.empty()) {  // regression, multi-label
    std::vector<float> truth;
    for (const auto& t : data.targets) truth.insert(truth.end(), t.begin(), t.end());
    if (truth.size() != logits.size())
      throw Error("evaluate: " + std::to_string(truth.size()) + " float labels for " + std::to_string(data.size()) +
                  " examples of " + std::to_string(num_labels) + " labels");
    r.metrics = problem == model::ProblemType::Regression
                    ? regression_metrics(logits, truth)
                    : multi_label_metrics(logits.data(), truth.data(), data.size(), static_cast<int>(num_labels));
  } else if (data.labelled()) {
    MetricsAccumulator acc(static_cast<int>(num_labels));
    acc.add(logits.data(), data.labels.data(), data.size());
    r.metrics = acc.finish();
    r.predictions = acc.predictions();
  } else {
    for (size_t i = 0; i < data.size(); ++i)
      r.predictions.push_back(argmax(logits.data() + i * num_labels, static_cast<int>(num_labels)));
  }
  if (keep_logits) r.logits = std::move(logits);
  r.runtime = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  return r;
}

}  // namespace bertune::infer
