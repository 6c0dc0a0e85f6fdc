#pragma once
// `bertune train`: the Hugging Face Trainer (transformers 4.30) over the native engine — the
// training loop (train/loop.h) with the classification objective. One TrainStep per batch;
// checkpoints hold everything needed to continue bit-for-bit (train/checkpoint.h).
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "infer/batching.h"
#include "infer/evaluate.h"
#include "train/loop.h"
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

// Sequence classification (BertForSequenceClassification) over the training loop: the
// prepared run's batches, TrainStep, accuracy/F1 evaluations with the notebook's table and
// the collapse check, and at the end the best model (when asked for), final/, its evaluation
// and the test set.
class ClassificationObjective : public TrainingObjective {
 public:
  // Output goes to `out` (banner, tables, final figures) and stderr (warnings).
  ClassificationObjective(PreparedRun run, std::FILE* out);

  LoopParts parts() override;
  const char* what() const override { return "training"; }
  std::vector<std::vector<size_t>> epoch_steps(int64_t epoch) const override { return r_.epoch_batches(epoch); }
  std::vector<model::Batch> step_batches(const std::vector<size_t>& step, int64_t epoch) const override;
  void launch(std::span<const model::Batch> micro_batches, int64_t step) override { step_.launch(micro_batches, step); }
  const std::vector<StepOutcome>& collect() override { return step_.collect(); }
  size_t pending() const override { return step_.pending(); }
  const LrSchedule& schedule() const override { return step_.schedule(); }
  void start(TrainingLoop& loop) override;
  bool epoch_records() const override { return true; }
  bool can_evaluate() const override { return r_.have_eval; }
  std::optional<double> evaluate(TrainingLoop& loop) override;
  void finish(TrainingLoop& loop) override;

  const PreparedRun& prepared() const { return r_; }
  TrainResult& result() { return result_; }

 private:
  void warn(TrainingLoop& loop, const std::string& message);
  void warn_if_unknown_tokens(TrainingLoop& loop);

  PreparedRun r_;
  std::FILE* out_;
  TrainStep step_;
  EpochTable table_;
  TrainResult result_;
};

// The whole run: prepare_run, then the training loop (watched by `observer` when given).
// Throws Error for bad input before writing.
TrainResult run_training(const TrainOptions& options, std::FILE* out = stdout, LoopObserver* observer = nullptr);

}  // namespace bertune::train
