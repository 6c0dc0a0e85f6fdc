#pragma once
// An output directory belongs to one run. Each run has an id (16 random hex digits), written
// at its start into OUTPUT/bertune_run.json and into every checkpoint's bertune_state.json;
// a resumed run keeps the id of the checkpoint it continues. From that:
//  - a fresh run into a directory that holds another run's outputs (checkpoint-<step>/,
//    final/, a non-empty log.jsonl, trainer_state.json) is refused, naming them, unless
//    --overwrite-output-dir is given; then they are moved, with that run's training_args.json,
//    pretrain_args.json and bertune_run.json, into OUTPUT/previous-run-<its id>/ before the new
//    run writes anything, and stderr says so;
//  - --resume-from-checkpoint last|PATH refuses a checkpoint of another run than the
//    directory's (a checkpoint from elsewhere continues into an OUTPUT that holds no other
//    run, or, with --overwrite-output-dir, after that run is moved aside);
//  - rotation (--save-total-limit) and `last` only ever see the run's own checkpoints.
//  - the directory is locked while the run lives (flock on OUTPUT/.bertune.lock, which holds
//    the run's pid); a second run into it is refused at once. The kernel drops the lock when
//    the process ends, however it ends (kill -9 too), so no lock outlives its run.
// A checkpoint written before run ids (no "run_id" in bertune_state.json) counts as the run
// of its directory when no other run is there; a resume from it gives the run a new id.
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "train/options.h"

namespace bertune::train {

inline constexpr const char* kRunFile = "bertune_run.json";
inline constexpr const char* kLockFile = ".bertune.lock";

// The output directory's lock (an existing directory's), held to the end of the run.
class OutputDirLock {
 public:
  // Error "OUTPUT is in use by another bertune run (pid N)" when another process holds it.
  explicit OutputDirLock(const std::filesystem::path& output_dir);
  ~OutputDirLock();
  OutputDirLock(const OutputDirLock&) = delete;
  OutputDirLock& operator=(const OutputDirLock&) = delete;

 private:
  int fd_ = -1;
};

// What a run does with its output directory, decided before anything is written.
struct RunDirPlan {
  std::filesystem::path output_dir;
  std::filesystem::path resume_dir;  // the checkpoint a resume starts from; empty: a fresh run
  std::string run_id;                // this run's: new, or the resumed checkpoint's
  // Another run's outputs in output_dir (--overwrite-output-dir), moved aside at the start.
  std::vector<std::filesystem::path> previous_outputs;
  std::string previous_run_id;
  bool discard_previous = false;  // deleted instead (compare's own mode directories)
  // Held while the plan (the run) lives: taken by plan_run_dir when the directory exists, else
  // by claim_run_dir once it has created it.
  mutable std::shared_ptr<OutputDirLock> lock;
};

// Locks output_dir when it exists, reads it (and the checkpoint to resume) and applies the
// rules above; throws Error naming what is there. Writes nothing but the lock file.
RunDirPlan plan_run_dir(const TrainOptions& o);

// The run's first write: creates and locks output_dir, moves (or deletes) another run's outputs,
// saying so on stderr, removes interrupted saves, and writes bertune_run.json.
void claim_run_dir(const RunDirPlan& plan);

std::string new_run_id();
// bertune_state.json's run id; "" for a checkpoint written before run ids (or unreadable:
// resume names that problem itself).
std::string checkpoint_run_id(const std::filesystem::path& checkpoint_dir);
// bertune_run.json's run id; "" when there is none. Error for a file that is not bertune's.
std::string output_dir_run_id(const std::filesystem::path& output_dir);
// Whether checkpoint_dir belongs to run `run_id`: its id is that one, or it has none.
bool checkpoint_of_run(const std::filesystem::path& checkpoint_dir, const std::string& run_id);

}  // namespace bertune::train
