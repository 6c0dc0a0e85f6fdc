#include "train/evaluate.h"

#include <chrono>

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
                    int max_length, int32_t pad_id, bool keep_logits) {
  const auto start = std::chrono::steady_clock::now();
  const int num_labels = model.config().num_labels();
  const BatchLayout layout{padding, max_length, pad_id};
  const bool labelled = data.labelled();
  MetricsAccumulator acc(num_labels);
  EvalResult r;
  std::vector<size_t> order(data.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  for (const auto& indices : split_batches(order, batch_size)) {
    model::Batch batch = build_batch(data, indices, layout);
    model.forward(batch, /*train=*/false);
    const float* logits = model.logits();  // (B, num_labels)
    const size_t n = indices.size();
    if (keep_logits) r.logits.insert(r.logits.end(), logits, logits + n * num_labels);
    if (labelled) {
      acc.add(logits, batch.labels.data(), n);
    } else {
      for (size_t i = 0; i < n; ++i) r.predictions.push_back(argmax(logits + i * num_labels, num_labels));
    }
    r.steps++;
  }
  if (labelled) {
    r.metrics = acc.finish();
    r.predictions = acc.predictions();
  }
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
  auto m = std::make_unique<model::BertModel>(config, model::Task::SequenceClassification, device);
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
