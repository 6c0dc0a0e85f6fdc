#include "train/checkpoint.h"

#include <unistd.h>

#include <cmath>

#include "io/atomic_file.h"
#include "io/json_error.h"
#include "io/safetensors.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/json_fields.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

Json RunState::to_json() const {
  return Json{{"epoch_index", epoch_index},
              {"batch_in_epoch", batch_in_epoch},
              {"dropout_step", dropout_step},
              {"optimizer_steps", optimizer_steps},
              {"early_stopping_counter", early_stopping_counter},
              {"nonfinite_streak", nonfinite_streak},
              {"skipped_steps", skipped_steps},
              {"log_loss_sum", log_loss_sum},
              {"log_loss_steps", log_loss_steps},
              {"eval_loss_sum", eval_loss_sum},
              {"eval_loss_steps", eval_loss_steps},
              {"run_loss_sum", run_loss_sum},
              {"run_loss_steps", run_loss_steps},
              {"samples", samples},
              {"real_tokens", tokens.real},
              {"processed_tokens", tokens.processed},
              {"collapse", collapse.to_json()}};
}

RunState RunState::from_json(const Json& j, const std::string& source) {
  RunState r;
  r.epoch_index = json_field<int64_t>(j, "epoch_index", source);
  r.batch_in_epoch = json_field<int64_t>(j, "batch_in_epoch", source);
  r.dropout_step = json_field<uint64_t>(j, "dropout_step", source);
  r.optimizer_steps = json_field<int64_t>(j, "optimizer_steps", source);
  r.early_stopping_counter = json_field<int>(j, "early_stopping_counter", source);
  r.nonfinite_streak = json_field<int>(j, "nonfinite_streak", source);
  r.skipped_steps = json_field<int64_t>(j, "skipped_steps", source);
  r.log_loss_sum = json_field<double>(j, "log_loss_sum", source);
  r.log_loss_steps = json_field<int64_t>(j, "log_loss_steps", source);
  r.eval_loss_sum = json_field<double>(j, "eval_loss_sum", source);
  r.eval_loss_steps = json_field<int64_t>(j, "eval_loss_steps", source);
  r.run_loss_sum = json_field<double>(j, "run_loss_sum", source);
  r.run_loss_steps = json_field<int64_t>(j, "run_loss_steps", source);
  r.samples = json_field<int64_t>(j, "samples", source);
  r.tokens.real = json_field<int64_t>(j, "real_tokens", source);
  r.tokens.processed = json_field<int64_t>(j, "processed_tokens", source);
  if (!j.contains("collapse")) throw Error(source + ": field 'collapse' is missing");
  try {
    r.collapse.from_json(j.at("collapse"));
  } catch (const Json::exception&) {
    throw Error(source + ": field 'collapse' is not what bertune writes");
  }
  return r;
}

Json resume_fingerprint(const TrainOptions& o, size_t train_examples) {
  return Json{{"seed", o.seed},
              {"data_seed", o.data_seed},
              {"per_device_train_batch_size", o.per_device_train_batch_size},
              {"group_by_length", o.group_by_length},
              {"padding", padding_name(o.padding)},
              {"max_length", o.max_length},
              {"train_examples", train_examples}};
}

void write_checkpoint(const fs::path& dir, const CheckpointParts& c) {
  io::write_directory_atomic(dir, [&](const fs::path& tmp) {
    c.config.save(tmp / "config.json");
    io::write_safetensors(tmp / "model.safetensors", c.model.state_dict());
    io::write_safetensors(tmp / "optimizer.safetensors", c.optimizer.state_dict(), {{"format", "bertune-adamw"}});
    c.state.save(tmp / "trainer_state.json");
    Json extra = c.run.to_json();
    extra["fingerprint"] = c.fingerprint;
    io::write_file_atomic(tmp / "bertune_state.json", extra.dump(2) + "\n");
    io::write_file_atomic(tmp / "training_args.json", c.options.to_json().dump(2) + "\n");
    // The tokenizer travels with every checkpoint (as with HF when the Trainer has one), minus
    // tokenizer.json: vocab.txt says the same and is a quarter of the size.
    for (const auto& f : text::tokenizer_files(c.tokenizer_dir))
      if (f.filename() != "tokenizer.json") io::write_file_atomic(tmp / f.filename(), io::read_file(f));
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

namespace {

// The step counts of trainer_state.json and bertune_state.json must tell one story.
void check_consistent(const fs::path& dir, const TrainerState& state, const RunState& run, int64_t steps_per_epoch) {
  const std::string both = (dir / "trainer_state.json").string() + " and " + (dir / "bertune_state.json").string();
  const int64_t step = state.global_step;
  auto fail = [&](const std::string& what) {
    throw Error("--resume-from-checkpoint " + dir.string() + ": inconsistent checkpoint: " + what +
                "; refusing to resume from it");
  };
  if (step < 0) fail("trainer_state.json has global_step " + std::to_string(step));
  if (run.optimizer_steps + run.skipped_steps != step)
    fail(both + " disagree: global_step " + std::to_string(step) + " but " + std::to_string(run.optimizer_steps) +
         " optimizer steps + " + std::to_string(run.skipped_steps) + " skipped");
  if (run.epoch_index * steps_per_epoch + run.batch_in_epoch != step || run.batch_in_epoch < 0 ||
      run.batch_in_epoch >= steps_per_epoch)
    fail(both + " disagree: global_step " + std::to_string(step) + " but the data position is epoch " +
         std::to_string(run.epoch_index) + ", batch " + std::to_string(run.batch_in_epoch) + " of " +
         std::to_string(steps_per_epoch));
  const std::string name = dir.filename().string();
  if (name.rfind("checkpoint-", 0) == 0 && name.substr(11) != std::to_string(step) &&
      name.find_first_not_of("0123456789", 11) == std::string::npos)
    fail("the directory is named for step " + name.substr(11) + " but trainer_state.json has global_step " +
         std::to_string(step));
}

}  // namespace

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

fs::path resume_dir_of(const TrainOptions& o) {
  if (!o.resume_from_checkpoint.empty()) return resolve_resume_dir(o.resume_from_checkpoint, o.output_dir);
  if (!o.overwrite_output_dir && !last_checkpoint(o.output_dir).empty())
    throw Error("--output-dir " + o.output_dir +
                " already holds checkpoints; pass --resume-from-checkpoint last to continue, or "
                "--overwrite-output-dir to start over there");
  return {};
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

ResumePoint read_checkpoint(const fs::path& dir, const Json& fingerprint, int64_t steps_per_epoch,
                            model::BertModel& model, AdamW& optimizer, uint64_t seed) {
  const Json extra = io::read_json_file(dir / "bertune_state.json");
  if (!extra.is_object()) throw Error((dir / "bertune_state.json").string() + ": expected a JSON object");
  if (extra.value("fingerprint", Json()) != fingerprint)
    throw Error("--resume-from-checkpoint " + dir.string() + " was made with " +
                extra.value("fingerprint", Json()).dump() + " but this run has " + fingerprint.dump() +
                "; the data order would differ");
  ResumePoint p;
  p.run = RunState::from_json(extra, (dir / "bertune_state.json").string());
  p.state = TrainerState::load(dir / "trainer_state.json");
  check_consistent(dir, p.state, p.run, steps_per_epoch);
  model.load_state_dict(io::read_safetensors(dir / "model.safetensors"), seed);
  optimizer.load_state_dict(io::read_safetensors(dir / "optimizer.safetensors"), p.run.optimizer_steps);
  model.set_dropout_step(p.run.dropout_step);
  return p;
}

}  // namespace bertune::train
