#pragma once
// The trainer's checkpoint-<step>/ directories: the HF files (config.json, model.safetensors,
// trainer_state.json, training_args.json, tokenizer files) plus what HF loses on resume —
// AdamW's moments (optimizer.safetensors) and bertune_state.json (data position, dropout
// counter, logging windows, callback state) — so a resumed run continues bit for bit.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "model/bert.h"
#include "train/optimizer.h"
#include "train/options.h"
#include "train/report.h"
#include "train/run_state.h"
#include "train/state.h"

namespace bertune::train {

// The options that must not change across a resume, or the continued run is another run.
nlohmann::json resume_fingerprint(const TrainOptions& o, size_t train_examples);

// What one checkpoint is made of.
struct CheckpointParts {
  const model::BertConfig& config;
  const model::BertModel& model;
  const AdamW& optimizer;
  const TrainerState& state;
  const RunState& run;
  const TrainOptions& options;
  const nlohmann::json& fingerprint;
  const std::filesystem::path& tokenizer_dir;
  const std::string& run_id;  // bertune_state.json's "run_id" (train/run_dir.h)
  // More files of the same checkpoint (ELECTRA's generator), written into the directory
  // before it is published, so they appear with the rest or not at all.
  std::function<void(const std::filesystem::path& tmp_dir)> write_extra = nullptr;
};

// Built in <output_dir>/<name>.tmp-<pid> and published whole (io::write_directory_atomic): a kill
// at any moment leaves no checkpoint-<step> or a complete one. Temporary names never match
// checkpoint-<digits>, so an interrupted save is invisible to resume and rotation.
void write_checkpoint(const std::filesystem::path& dir, const CheckpointParts& parts);

// Removes the temporary directories of saves that a kill interrupted.
void remove_interrupted_saves(const std::filesystem::path& output_dir);

// The checkpoint a resume starts from: "last"/"true" = the newest under output_dir. Checks
// that every file a resume reads is there. Throws Error naming what is missing. Whether it may
// continue in output_dir is train/run_dir.h's plan_run_dir.
std::filesystem::path resolve_resume_dir(const std::string& resume_from_checkpoint,
                                         const std::filesystem::path& output_dir);

// The non-finite guard after a skipped step (number `step`, 1-based): counts it in `run` and
// returns the warning to show; the third skipped step in a row throws NonFiniteStop (exit 3)
// naming the last good checkpoint, which `what` ("training", "pretraining") stopped at.
std::string count_nonfinite_step(RunState& run, float loss, int64_t step, const std::string& last_good_checkpoint,
                                 const char* what);

// Trainer.train()'s TrainOutput for the steps since `start` (the run state when this process
// began: resumed runs count only their own steps and time), and its log record.
TrainSummary run_summary(const TrainerState& state, const RunState& run, const RunState& start,
                         int64_t start_step, double runtime);
nlohmann::json summary_record(const TrainSummary& s);

// Reads a checkpoint's state into a freshly built model and optimizer, after checking that
// it was made by a run with the same fingerprint and that its files agree with each other
// (trainer_state.json's global_step, bertune_state.json's data position and step counts,
// the directory's step number): an edited or mixed-up checkpoint is refused, naming the files.
struct ResumePoint {
  RunState run;
  TrainerState state;
};
ResumePoint read_checkpoint(const std::filesystem::path& dir, const nlohmann::json& fingerprint,
                            const EpochSizes& epochs, model::BertModel& model, AdamW& optimizer, uint64_t seed);

}  // namespace bertune::train
