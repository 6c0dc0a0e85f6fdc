#pragma once
// `bertune train`: the Hugging Face Trainer's loop (transformers 4.30) over the native engine.
// One optimizer step per batch; log / evaluate / save after a step when their strategy says
// so, in HF's order (log, then evaluate — early stopping looks at the metric before the
// save updates the best — then save and rotate). Checkpoints hold everything needed to
// continue bit-for-bit: weights, AdamW moments, the data position, the dropout counter,
// the partial logging window and the callback state.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "model/bert.h"
#include "text/tokenizer.h"
#include "train/metrics.h"
#include "train/options.h"
#include "train/report.h"
#include "train/sampler.h"
#include "train/state.h"

namespace bertune::train {

// A dataset turned into token ids (truncated to max_length, [CLS] ... [SEP]).
struct TokenizedData {
  std::vector<std::vector<int32_t>> ids;
  std::vector<int32_t> labels;  // -1 when unlabelled
  std::vector<int> lengths;
  size_t size() const { return ids.size(); }
};
TokenizedData tokenize(const data::Dataset& d, const text::Tokenizer& tok, int max_length, int threads = 0);

struct EvalResult {
  ClassificationMetrics metrics;
  std::vector<int32_t> predictions;
  std::vector<float> logits;  // [n, num_labels], only when asked for
  double runtime = 0;
  int64_t steps = 0;
  // HF's evaluate() record: eval_loss, eval_accuracy, ..., eval_runtime, eval_samples_per_second.
  nlohmann::json record(const std::string& prefix = "eval_") const;
};

// Sequential order, no dropout. Labels must be present unless only predictions are wanted.
EvalResult evaluate(model::BertModel& model, const TokenizedData& data, int batch_size, Padding padding,
                    int max_length, int32_t pad_id, bool keep_logits = false);

// The model directory bertune writes and reads: HF layout, plus the tokenizer files.
// Loads weights into a classification model (head initialised when absent, as
// from_pretrained(num_labels=2) does; the names of fresh tensors go to `initialised`).
std::unique_ptr<model::BertModel> load_classifier(const std::filesystem::path& dir, uint64_t head_seed,
                                 std::vector<std::string>* initialised = nullptr,
                                 const model::BertConfig* override_config = nullptr);
// The tokenizer for a model: its own files when it has them, else `fallback`, else klue's.
text::Tokenizer load_tokenizer_for(const std::filesystem::path& model_dir, const std::string& fallback = "");

struct TrainResult {
  TrainSummary summary;
  TrainerState state;
  std::filesystem::path final_model_dir;
  std::optional<EvalResult> final_eval;  // the eval set, final model
  std::optional<EvalResult> test;        // --test-file, final model
  std::vector<std::string> warnings;
};

// The whole run. Output goes to `out` (tables, summary) and stderr (progress, warnings).
// Throws Error for bad input before writing anything.
TrainResult run_training(const TrainOptions& options, std::FILE* out = stdout);

}  // namespace bertune::train
