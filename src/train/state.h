#pragma once
// What the Trainer remembers between steps, evaluations and runs, with the semantics of
// transformers 4.30: TrainerState (trainer_state.json, same keys), EarlyStoppingCallback,
// the best-checkpoint rule of Trainer._save_checkpoint and the rotation of
// Trainer._rotate_checkpoints. bertune additionally keeps what HF loses on resume (the
// early-stopping counter, the partial logging window, the data position) in
// bertune_state.json next to it, so a resumed run continues exactly.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bertune::train {

// trainer_state.json: the keys and meaning of transformers.TrainerState.
struct TrainerState {
  double epoch = 0.0;  // fractional: epochs done + steps into this epoch / steps per epoch
  int64_t global_step = 0;
  int64_t max_steps = 0;
  double num_train_epochs = 0;
  double total_flos = 0.0;
  nlohmann::json log_history = nlohmann::json::array();
  std::optional<double> best_metric;
  std::optional<std::string> best_model_checkpoint;

  nlohmann::json to_json() const;  // with HF's other fields (is_world_process_zero, ...)
  static TrainerState from_json(const nlohmann::json& j, const std::string& source = "trainer_state.json");
  void save(const std::filesystem::path& file) const;  // atomic; indent 2, sorted keys like HF
  static TrainerState load(const std::filesystem::path& file);
};

// a is better than b under the chosen direction (np.greater / np.less: strict).
inline bool metric_better(double a, double b, bool greater_is_better) {
  return greater_is_better ? a > b : a < b;
}

// EarlyStoppingCallback.check_metric_value + on_evaluate: improvement iff there is no best
// yet, or the metric beats the best of *earlier* evaluations (state.best_metric, updated only
// after this check, at save time) by more than `threshold` in absolute terms.
struct EarlyStopping {
  int patience = 0;  // 0: disabled
  double threshold = 0.0;
  int counter = 0;   // evaluations in a row without improvement (persisted in checkpoints)

  // Returns true when training should stop.
  bool on_evaluate(double metric, const std::optional<double>& best_metric, bool greater_is_better);
};

// Trainer._save_checkpoint: the checkpoint just saved becomes the best when there is no best
// yet, or its metric strictly beats best_metric. Returns whether it did.
bool update_best(TrainerState& state, double metric, const std::string& checkpoint_dir,
                 bool greater_is_better);

// Which checkpoint-<step> dirs count (empty: all): rotation sees only the run's own
// (train/run_dir.h).
using CheckpointFilter = std::function<bool(const std::filesystem::path&)>;

// Trainer._sorted_checkpoints: checkpoint-<step> dirs of `output_dir`, oldest first (by step
// number), with the best one bubbled towards the end (to second-to-last) so rotation keeps it.
std::vector<std::filesystem::path> sorted_checkpoints(const std::filesystem::path& output_dir,
                                                      const std::optional<std::string>& best_model_checkpoint,
                                                      const CheckpointFilter& counted = {});

// Trainer._rotate_checkpoints: delete the oldest beyond save_total_limit (<= 0: keep all);
// with a limit of 1 and a best checkpoint that is not the newest, two are kept so the run can
// still resume. Only the checkpoints `counted` accepts are counted or deleted. Returns the
// directories deleted.
std::vector<std::filesystem::path> rotate_checkpoints(const std::filesystem::path& output_dir,
                                                      int save_total_limit,
                                                      const std::optional<std::string>& best_model_checkpoint,
                                                      const CheckpointFilter& counted = {});

// The newest checkpoint-<step> under output_dir (highest step), or empty.
std::filesystem::path last_checkpoint(const std::filesystem::path& output_dir);

// Warns the way the notebook's third run needed: the same metric and the same predictions at
// every evaluation (e.g. one class for everything) means the model has stopped learning.
struct CollapseDetector {
  std::vector<uint64_t> prediction_hashes;
  std::vector<double> metrics;
  // Empty string, or a warning to print.
  std::string on_evaluate(double metric, const std::vector<int32_t>& predictions, int num_labels);
  nlohmann::json to_json() const;
  void from_json(const nlohmann::json& j);
};

}  // namespace bertune::train
