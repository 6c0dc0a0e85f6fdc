#include "train/checkpoint.h"

#include <unistd.h>

#include <cmath>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "text/tokenizer.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

Json resume_fingerprint(const TrainOptions& o, size_t train_examples) {
  Json j{{"seed", o.seed},
         {"data_seed", o.data_seed},
         {"per_device_train_batch_size", o.per_device_train_batch_size},
         {"group_by_length", o.group_by_length},
         {"padding", infer::padding_name(o.padding)},
         {"max_length", o.max_length},
         {"train_examples", train_examples}};
  if (o.max_tokens_per_batch > 0) j["max_tokens_per_batch"] = o.max_tokens_per_batch;  // absent: older checkpoints match
  return j;
}

void write_checkpoint(const fs::path& dir, const CheckpointParts& c) {
  io::write_directory_atomic(dir, [&](const fs::path& tmp) {
    c.config.save(tmp / "config.json");
    io::write_safetensors(tmp / "model.safetensors", c.model.state_dict());
    io::write_safetensors(tmp / "optimizer.safetensors", c.optimizer.state_dict(), {{"format", "bertune-adamw"}});
    c.state.save(tmp / "trainer_state.json");
    Json extra = c.run.to_json();
    extra["fingerprint"] = c.fingerprint;
    extra["run_id"] = c.run_id;
    io::write_file_atomic(tmp / "bertune_state.json", extra.dump(2) + "\n");
    io::write_file_atomic(tmp / "training_args.json", c.options.to_json().dump(2) + "\n");
    // The tokenizer travels with every checkpoint (as with HF when the Trainer has one), minus
    // tokenizer.json: vocab.txt says the same and is a quarter of the size.
    for (const auto& f : text::tokenizer_files(c.tokenizer_dir))
      if (f.filename() != "tokenizer.json") io::write_file_atomic(tmp / f.filename(), io::read_file(f));
    if (c.write_extra) c.write_extra(tmp);
  });
}

void remove_interrupted_saves(const fs::path& output_dir) {
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return;
  for (const auto& e : fs::directory_iterator(output_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("checkpoint-", 0) == 0 && name.find(".tmp-") != std::string::npos)
      fs::remove_all(e.path(), ec);
  }
}

fs::path resolve_resume_dir(const std::string& resume_from_checkpoint, const fs::path& output_dir) {
  fs::path dir = resume_from_checkpoint;
  if (resume_from_checkpoint == "last" || resume_from_checkpoint == "true") {
    dir = last_checkpoint(output_dir);
    if (dir.empty())
      throw Error("--resume-from-checkpoint " + resume_from_checkpoint + ": no checkpoint-<step> in " +
                  output_dir.string());
  }
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "bertune_state.json"})
    if (!fs::exists(dir / f)) throw Error("--resume-from-checkpoint: " + (dir / f).string() + " is missing");
  return dir;
}

std::string count_nonfinite_step(RunState& run, float loss, int64_t step, const std::string& last_good_checkpoint,
                                 const char* what) {
  run.skipped_steps++;
  run.nonfinite_streak++;
  if (run.nonfinite_streak >= 3)
    throw NonFiniteStop(std::string(what) + " stopped at step " + std::to_string(step) +
                        ": 3 steps in a row had a non-finite loss or gradient (learning rate too high?). " +
                        (last_good_checkpoint.empty() ? std::string("No checkpoint was saved yet.")
                                                      : "The last good checkpoint is " + last_good_checkpoint +
                                                            " (--resume-from-checkpoint " + last_good_checkpoint + ")"));
  return "warning: step " + std::to_string(step) + ": non-finite " +
         (std::isfinite(loss) ? "gradient norm" : "loss") + " — step skipped, weights unchanged";
}

TrainSummary run_summary(const TrainerState& state, const RunState& run, const RunState& start, int64_t start_step,
                         double runtime) {
  TrainSummary s;
  s.global_step = state.global_step;
  s.training_loss = run.run_loss_steps ? run.run_loss_sum / run.run_loss_steps : NAN;
  s.train_runtime = runtime;
  s.train_samples_per_second = runtime > 0 ? (run.samples - start.samples) / runtime : 0;
  s.train_steps_per_second = runtime > 0 ? (state.global_step - start_step) / runtime : 0;
  s.total_flos = state.total_flos;
  s.epoch = state.epoch;
  s.real_tokens_per_second = runtime > 0 ? (run.tokens.real - start.tokens.real) / runtime : 0;
  s.padding_fraction = run.tokens.padding_fraction();
  s.skipped_steps = run.skipped_steps;
  return s;
}

Json summary_record(const TrainSummary& s) {
  return {{"train_runtime", s.train_runtime},
          {"train_samples_per_second", s.train_samples_per_second},
          {"train_steps_per_second", s.train_steps_per_second},
          {"total_flos", s.total_flos},
          {"train_loss", s.training_loss},
          {"train_real_tokens_per_second", s.real_tokens_per_second},
          {"train_padding_fraction", s.padding_fraction}};
}

ResumePoint read_checkpoint(const fs::path& dir, const Json& fingerprint, const EpochSizes& epochs,
                            model::BertModel& model, AdamW& optimizer, uint64_t seed) {
  ResumePoint p;
  p.run = read_run_state(dir, fingerprint);
  p.state = TrainerState::load(dir / "trainer_state.json");
  check_resume_consistent(dir, p.state, p.run, epochs);
  model.load_state_dict(io::read_safetensors(dir / "model.safetensors"), seed);
  optimizer.load_state_dict(io::read_safetensors(dir / "optimizer.safetensors"), p.run.optimizer_steps);
  model.set_dropout_step(p.run.dropout_step);
  return p;
}

}  // namespace bertune::train
