#pragma once
// `bertune train`: the Hugging Face Trainer's loop (transformers 4.30) over the native engine.
// One TrainStep per batch; log / evaluate / save after a step when their strategy says so, in
// HF's order (log, then evaluate — early stopping looks at the metric before the save updates
// the best — then save and rotate). Checkpoints hold everything needed to continue
// bit-for-bit (train/checkpoint.h).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "infer/batching.h"
#include "infer/evaluate.h"
#include "train/prepare.h"
#include "train/report.h"
#include "train/step.h"

namespace bertune::train {

struct TrainResult {
  TrainSummary summary;
  TrainerState state;
  std::filesystem::path final_model_dir;
  std::optional<infer::EvalResult> final_eval;  // the eval set, final model
  std::optional<infer::EvalResult> test;        // --test-file, final model
  std::vector<std::string> warnings;
};

class Trainer {
 public:
  // Output goes to `out` (banner, tables, summary) and stderr (progress, warnings).
  Trainer(PreparedRun run, std::FILE* out);
  TrainResult train();  // the loop, then the final model, its evaluation and the test

 private:
  void start();  // the first writes: output dir, log, training_args.json, banner
  void run_epoch();
  bool outcomes_needed(int64_t step_after, bool epoch_end) const;
  void account_steps();
  void record_batch(const model::Batch& batch);
  void on_nonfinite(const StepOutcome& step);
  void after_step(int64_t epoch, bool epoch_end);
  void log_record(nlohmann::json record);
  std::optional<double> evaluate_now();
  void save_checkpoint(std::optional<double> metric);
  void summarise(double train_runtime);
  void finish();
  void warn(const std::string& message);
  void warn_if_unknown_tokens();

  PreparedRun r_;
  std::FILE* out_;
  model::BertModel& model_;
  TrainerState& state_;
  RunState& run_;
  TrainStep step_;
  EarlyStopping early_;
  std::unique_ptr<JsonlLog> log_;
  Progress progress_;
  EpochTable table_;
  TrainResult result_;

  std::chrono::steady_clock::time_point train_start_, epoch_start_;
  int64_t start_step_ = 0;
  RunState start_run_;  // the run state when this process began (a resume counts its own steps)
  TokenCounts epoch_tokens_;
  double epoch_train_seconds_ = 0;
  std::string last_good_checkpoint_;
  bool stop_ = false;
  // The batches of the steps launched but not yet accounted (TrainStep::collect), in order.
  struct Launched {
    double epoch;  // state_.epoch after the step
    int sequences;
    int64_t real_tokens;
  };
  std::vector<Launched> launched_;
  static constexpr size_t kMaxPendingSteps = 256;
};

// The whole run: prepare_run, then Trainer::train. Throws Error for bad input before writing.
TrainResult run_training(const TrainOptions& options, std::FILE* out = stdout);

}  // namespace bertune::train
