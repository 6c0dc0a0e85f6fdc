#pragma once
// The training loop — one for every objective, as the Hugging Face Trainer has one loop and
// a compute_loss per task. The loop owns what every run does the same way: epochs over the
// objective's steps (resumed mid-epoch), launch/collect of the step (on a GPU no step waits for
// the device unless its outcome is used), the non-finite guard, the JSONL log and its records,
// the due rules for log / evaluate / save in HF's order (log, then evaluate — early stopping
// looks at the metric before the save updates the best — then save and rotate), atomic
// checkpoints with exact resume, SIGINT/SIGTERM at a safe point, and the TrainOutput summary.
// The objective (classification: train/trainer.h; masked LM and ELECTRA: train/pretrainer.h)
// supplies its batches, its step, its evaluation, its extra checkpoint files and its final model.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/bert.h"
#include "infer/batching.h"
#include "train/optimizer.h"
#include "train/options.h"
#include "train/report.h"
#include "train/run_dir.h"
#include "train/run_state.h"
#include "train/state.h"
#include "train/step.h"

namespace bertune::train {

// What the loop runs on, owned by the objective: the kept model and its optimizer (what a
// checkpoint's model.safetensors and optimizer.safetensors hold), the run's state, and what
// makes a checkpoint resumable.
struct LoopParts {
  const TrainOptions& options;
  const model::BertConfig& config;
  model::BertModel& model;
  AdamW& optimizer;
  TrainerState& state;
  RunState& run;
  const nlohmann::json& fingerprint;
  const std::filesystem::path& tokenizer_dir;
  const RunDirPlan& run_dir;  // the output directory, the run's id, and the checkpoint a resume starts from
  std::chrono::steady_clock::time_point started;  // when the command began (for the total wall time)
};

class TrainingLoop;

// What a caller watching a run sees of it (the Python Trainer's callbacks, HF's
// TrainerCallback): each log record, each evaluation before it is logged (with the
// evaluation set's logits and labels, when asked for), each epoch's end, each save, and
// every step boundary. Returning true asks the loop to stop at the next step boundary, as
// early stopping does (HF's control.should_training_stop); an exception thrown ends the run
// there (util::Interrupted as a signal would: the last checkpoint stays whole).
class LoopObserver {
 public:
  virtual ~LoopObserver() = default;
  virtual bool on_step_end(int64_t step) { return false; }
  virtual bool on_log(const nlohmann::json& record) { return false; }
  // `metrics` (eval_loss, eval_accuracy, ...) may be added to before they are logged;
  // logits [n, num_labels] and labels [n] are empty unless wants_eval_logits(). Token
  // classification (positions > 0): logits [n, positions, num_labels] and labels [n, positions],
  // -100 where a position has no label (only the labelled positions' logits are computed: 0
  // elsewhere), as transformers' Trainer hands them to compute_metrics.
  virtual bool wants_eval_logits() const { return false; }
  virtual bool on_evaluate(nlohmann::json& metrics, const std::vector<float>& logits,
                           const std::vector<int32_t>& labels, size_t positions) { return false; }
  virtual bool on_epoch_end(double epoch) { return false; }
  virtual bool on_save(const std::filesystem::path& checkpoint) { return false; }
};

// One learning task over the loop.
class TrainingObjective {
 public:
  virtual ~TrainingObjective() = default;
  virtual LoopParts parts() = 0;
  virtual const char* what() const = 0;  // "training", "pretraining": named by the non-finite guard

  // The optimizer steps of epoch `epoch` (0-based), in training order: each the example indices
  // of one step; and a step's micro-batches (one without gradient accumulation).
  virtual std::vector<std::vector<size_t>> epoch_steps(int64_t epoch) const = 0;
  virtual std::vector<model::Batch> step_batches(const std::vector<size_t>& step, int64_t epoch) const = 0;

  // The step, as TrainStep's launch / collect / pending (train/step.h).
  virtual void launch(std::span<const model::Batch> micro_batches, int64_t step) = 0;
  virtual const std::vector<StepOutcome>& collect() = 0;
  virtual size_t pending() const = 0;
  virtual const LrSchedule& schedule() const = 0;

  // After the common writes (output dir, log, training_args.json): the objective's own files,
  // warnings and banner.
  virtual void start(TrainingLoop& loop) = 0;
  // More fields of a loss record (the logged step's own parts).
  virtual void add_to_loss_record(nlohmann::json& record) const { (void)record; }
  // Whether the log gets a record at each epoch's end (its time and token counts).
  virtual bool epoch_records() const { return false; }
  virtual bool can_evaluate() const = 0;
  // An evaluation, logged through the loop; returns the metric that picks the best
  // checkpoint (and drives early stopping), when there is one.
  virtual std::optional<double> evaluate(TrainingLoop& loop) = 0;
  // More files of a checkpoint (written into its temporary directory before it is published).
  virtual void write_checkpoint_files(const std::filesystem::path& tmp_dir) { (void)tmp_dir; }
  // After the summary: the final model, its evaluation, DIR/final/ and trainer_state.json.
  virtual void finish(TrainingLoop& loop) = 0;
};

// The tests' deterministic stop: BERTUNE_TEST_KILL=after-step:N SIGKILLs the process once step N
// is done (its log, evaluation and save included); in-save:N SIGKILLs it while checkpoint-N is
// being written (its files complete in the temporary directory, not yet published);
// stop-after-step:N SIGSTOPs it once step N is done (a rank that hangs).
struct KillHook {
  enum class Point { None, AfterStep, InSave, StopAfterStep };
  Point point = Point::None;
  int64_t step = 0;
  static KillHook from_environment();  // throws Error for a malformed value
  void at(Point p, int64_t s) const;
};

class TrainingLoop {
 public:
  // Output goes to `out` (banner, tables, summary) and stderr (progress, warnings).
  TrainingLoop(TrainingObjective& objective, std::FILE* out);
  TrainSummary run();  // start, the epochs, the summary, the objective's finish

  // For the objective.
  std::FILE* out() const { return out_; }
  Progress& progress() { return progress_; }
  void log_record(nlohmann::json record);  // with epoch and step, into the log and log_history
  // The observer that watches the run (null: none); not owned.
  void set_observer(LoopObserver* observer) { observer_ = observer; }
  LoopObserver* observer() const { return observer_; }
  // An evaluation's record, shown to the observer (which may add to it) before it is logged.
  void log_evaluation(nlohmann::json record, const std::vector<float>& logits, const std::vector<int32_t>& labels,
                      size_t positions = 0);
  double seconds_since_start() const;      // of training in this process

 private:
  void start();
  void run_epoch();
  bool outcomes_needed(int64_t step_after, bool epoch_end) const;
  void account_steps();
  void record_step(const std::vector<model::Batch>& micro, int64_t samples);
  void after_step(int64_t epoch, bool epoch_end);
  void log_epoch_end(int64_t epoch);
  void evaluate_now(std::optional<double>& metric);
  void save_checkpoint(std::optional<double> metric);
  void summarise();

  TrainingObjective& objective_;
  LoopParts p_;
  std::FILE* out_;
  TrainerState& state_;
  RunState& run_;
  EarlyStopping early_;
  std::unique_ptr<JsonlLog> log_;
  Progress progress_;
  KillHook kill_;
  TrainSummary summary_;

  std::chrono::steady_clock::time_point train_start_, epoch_start_;
  int64_t start_step_ = 0;
  RunState start_run_;  // the run state when this process began (a resume counts its own steps)
  TokenCounts epoch_tokens_;
  double epoch_train_seconds_ = 0;
  std::string last_good_checkpoint_;
  bool stop_ = false;
  LoopObserver* observer_ = nullptr;
  // The steps launched but not yet accounted (collect), in order.
  struct Launched {
    double epoch;  // state_.epoch after the step
    int64_t samples;
    int64_t real_tokens;
  };
  std::vector<Launched> launched_;
  static constexpr size_t kMaxPendingSteps = 256;
};

}  // namespace bertune::train
