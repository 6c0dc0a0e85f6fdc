#pragma once
// bertune_state.json: what a checkpoint holds beyond HF's trainer_state.json (data position,
// dropout counter, loss windows, callback state), and the checks a resume makes on it. Kept
// apart from train/checkpoint.h, which needs the model, so that the fuzz build (parsers only,
// fuzz/fuzz_bertune_state.cc) parses exactly the code a resume runs.
#include <cstdint>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/state.h"

namespace bertune::model {
struct Batch;
}

namespace bertune::train {

// Running totals of real and computed tokens: the padding fraction is the share of
// computed positions that were padding.
struct TokenCounts {
  int64_t real = 0;
  int64_t processed = 0;
  void add(const model::Batch& b);  // in step.cc, beside the step that runs the batch
  double padding_fraction() const {
    return processed > 0 ? 1.0 - static_cast<double>(real) / static_cast<double>(processed) : 0.0;
  }
};

struct RunState {
  int64_t epoch_index = 0;      // epoch in progress (0-based)
  int64_t batch_in_epoch = 0;   // batches of it already done
  uint64_t dropout_step = 0;
  int64_t optimizer_steps = 0;  // AdamW's own count (skipped steps do not advance it)
  int early_stopping_counter = 0;
  int nonfinite_streak = 0;
  int64_t skipped_steps = 0;
  double log_loss_sum = 0;      // the logging window in progress
  int64_t log_loss_steps = 0;
  double eval_loss_sum = 0;     // training loss since the last evaluation (for the table)
  int64_t eval_loss_steps = 0;
  double run_loss_sum = 0;      // whole run, for training_loss
  int64_t run_loss_steps = 0;
  int64_t samples = 0;
  TokenCounts tokens;
  CollapseDetector collapse;

  // A finite step's loss: ends a non-finite streak and enters every loss window.
  void count_loss(float loss) {
    nonfinite_streak = 0;
    log_loss_sum += loss;
    log_loss_steps++;
    eval_loss_sum += loss;
    eval_loss_steps++;
    run_loss_sum += loss;
    run_loss_steps++;
  }

  nlohmann::json to_json() const;
  // Every field present, of its type, and in the range a run can write (counts not negative,
  // loss sums finite, a non-finite streak the guard would not have stopped); Error naming
  // `source` and the field otherwise.
  static RunState from_json(const nlohmann::json& j, const std::string& source);
};

// Reads <dir>/bertune_state.json, refusing one made by a run with another `fingerprint`
// (the data order would differ). Error names the file.
RunState read_run_state(const std::filesystem::path& dir, const nlohmann::json& fingerprint);

// The step counts of trainer_state.json and bertune_state.json must tell one story, and the
// directory's name (checkpoint-<step>) the same step: an edited or mixed-up checkpoint is
// refused, naming the files.
// Batches per epoch: the same number every epoch (a sample count per batch), or one number
// per planned epoch (--max-tokens-per-batch: each epoch's order packs into its own count).
struct EpochSizes {
  int64_t every = 0;             // > 0: every epoch has this many batches
  std::vector<int64_t> planned;  // otherwise: epoch e has planned[e], and there is none beyond
  EpochSizes(int64_t every_epoch = 0) : every(every_epoch) {}  // NOLINT: a count converts
  explicit EpochSizes(std::vector<int64_t> per_epoch) : planned(std::move(per_epoch)) {}
  // The step epoch e starts at; -1 beyond the plan or when it overflows.
  int64_t start_of(int64_t epoch) const;
  int64_t size_of(int64_t epoch) const;  // 0 beyond the plan
};

void check_resume_consistent(const std::filesystem::path& dir, const TrainerState& state, const RunState& run,
                             const EpochSizes& epochs);

}  // namespace bertune::train
