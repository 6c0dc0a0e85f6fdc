#pragma once
// bertune_state.json: what a checkpoint holds beyond HF's trainer_state.json (data position,
// dropout counter, loss windows, callback state), and the checks a resume makes on it. Kept
// apart from train/checkpoint.h, which needs the model, so that the fuzz build (parsers only,
// fuzz/fuzz_bertune_state.cc) parses exactly the code a resume runs.
#include <cstdint>
#include <filesystem>
#include <string>

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
  void add(const model::Batch& b);  // in batching.cc, beside the batch
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
void check_resume_consistent(const std::filesystem::path& dir, const TrainerState& state, const RunState& run,
                             int64_t steps_per_epoch);

}  // namespace bertune::train
