#include "train/evaluate.h"

#include <algorithm>
#include <chrono>
#include <numeric>

#include "model/pretrained.h"
#include "train/sampler.h"
#include "util/paths.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

Json EvalResult::record(const std::string& prefix) const {
  Json j = metrics.to_json(prefix);
  j[prefix + "runtime"] = runtime;
  j[prefix + "samples_per_second"] = runtime > 0 ? metrics.count / runtime : 0.0;
  j[prefix + "steps_per_second"] = runtime > 0 ? steps / runtime : 0.0;
  return j;
}

EvalResult evaluate(model::BertModel& model, const TokenizedData& data, int batch_size, Padding padding,
                    int max_length, int32_t pad_id, bool keep_logits, bool sort_by_length) {
  const auto start = std::chrono::steady_clock::now();
  const size_t num_labels = static_cast<size_t>(model.config().num_labels());
  const BatchLayout layout{padding, max_length, pad_id};
  std::vector<size_t> order(data.size());
  std::iota(order.begin(), order.end(), size_t(0));
  if (sort_by_length)
    std::stable_sort(order.begin(), order.end(),
                     [&](size_t a, size_t b) { return data.ids[a].size() < data.ids[b].size(); });
  // Logits land at their example's place, so everything after this loop sees input order.
  std::vector<float> logits(data.size() * num_labels);
  EvalResult r;
  for (const auto& indices : split_batches(order, batch_size)) {
    model::Batch batch = build_batch(data, indices, layout);
    model.forward(batch, /*train=*/false);
    const float* out = model.logits();  // (B, num_labels)
    for (size_t i = 0; i < indices.size(); ++i)
      std::copy(out + i * num_labels, out + (i + 1) * num_labels, logits.begin() + indices[i] * num_labels);
    r.steps++;
  }
  if (data.labelled()) {
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

ModelFiles load_model_files(const fs::path& dir) {
  model::PretrainedTensors pt = model::load_pretrained_tensors(dir);
  return {pt.config, std::move(pt.tensors)};
}

std::unique_ptr<model::BertModel> load_classifier(const fs::path& dir, uint64_t head_seed,
                                                  std::vector<std::string>* initialised,
                                                  const model::BertConfig* override_config,
                                                  kernels::Device device) {
  ModelFiles pt = load_model_files(dir);
  model::BertConfig config = override_config ? *override_config : pt.config;
  config.architectures = {"BertForSequenceClassification"};
  auto m = std::make_unique<model::BertModel>(config, model::Task::SequenceClassification, device,
                                               model::Init::Zeros);  // loaded next
  auto report = m->load_state_dict(pt.tensors, head_seed);
  if (initialised) *initialised = report.initialised;
  return m;
}

fs::path default_tokenizer_dir() { return shared_path("models/klue-bert-base"); }

text::Tokenizer load_tokenizer_for(const fs::path& model_dir, const std::string& fallback) {
  if (!fallback.empty()) return text::Tokenizer::load(fallback);
  if (text::is_tokenizer_dir(model_dir)) return text::Tokenizer::load(model_dir);
  return text::Tokenizer::load(default_tokenizer_dir());
}

}  // namespace bertune::train
