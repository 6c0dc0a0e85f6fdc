#pragma once
// Evaluation (sequential batches, no dropout) and the model directories bertune reads.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/tensor.h"
#include "model/bert.h"
#include "text/tokenizer.h"
#include "train/batching.h"
#include "train/metrics.h"

namespace bertune::train {

struct EvalResult {
  ClassificationMetrics metrics;
  std::vector<int32_t> predictions;
  std::vector<float> logits;  // [n, num_labels], only when asked for
  double runtime = 0;
  int64_t steps = 0;
  // HF's evaluate() record: eval_loss, eval_accuracy, ..., eval_runtime, eval_samples_per_second.
  nlohmann::json record(const std::string& prefix = "eval_") const;
};

// No dropout. Metrics when every example has a label, else predictions only; predictions
// and logits in the data's order either way. sort_by_length: batches of similar length
// (less padding, and packed batches of even size) — what eval and predict do; the
// trainer's evaluation keeps sequential batches.
EvalResult evaluate(model::BertModel& model, const TokenizedData& data, int batch_size, Padding padding,
                    int max_length, int32_t pad_id, bool keep_logits = false, bool sort_by_length = false);

// config.json + weights of an HF model directory (safetensors, pytorch_model.bin, sharded).
struct ModelFiles {
  model::BertConfig config;
  TensorMap tensors;
};
ModelFiles load_model_files(const std::filesystem::path& dir);

// Loads weights into a classification model (head initialised when absent, as
// from_pretrained(num_labels=2) does; the names of fresh tensors go to `initialised`).
std::unique_ptr<model::BertModel> load_classifier(const std::filesystem::path& dir, uint64_t head_seed,
                                                  std::vector<std::string>* initialised = nullptr,
                                                  const model::BertConfig* override_config = nullptr);

// The tokenizer for a model: `fallback` when given, else the model's own files, else klue's.
text::Tokenizer load_tokenizer_for(const std::filesystem::path& model_dir, const std::string& fallback = "");
std::filesystem::path default_tokenizer_dir();  // klue/bert-base's in shared/

}  // namespace bertune::train
