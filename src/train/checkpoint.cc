#include "train/checkpoint.h"

#include <unistd.h>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "text/tokenizer.h"
#include "util/error.h"

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
  try {
    r.epoch_index = j.at("epoch_index").get<int64_t>();
    r.batch_in_epoch = j.at("batch_in_epoch").get<int64_t>();
    r.dropout_step = j.at("dropout_step").get<uint64_t>();
    r.optimizer_steps = j.at("optimizer_steps").get<int64_t>();
    r.early_stopping_counter = j.at("early_stopping_counter").get<int>();
    r.nonfinite_streak = j.at("nonfinite_streak").get<int>();
    r.skipped_steps = j.at("skipped_steps").get<int64_t>();
    r.log_loss_sum = j.at("log_loss_sum").get<double>();
    r.log_loss_steps = j.at("log_loss_steps").get<int64_t>();
    r.eval_loss_sum = j.at("eval_loss_sum").get<double>();
    r.eval_loss_steps = j.at("eval_loss_steps").get<int64_t>();
    r.run_loss_sum = j.at("run_loss_sum").get<double>();
    r.run_loss_steps = j.at("run_loss_steps").get<int64_t>();
    r.samples = j.at("samples").get<int64_t>();
    r.tokens.real = j.at("real_tokens").get<int64_t>();
    r.tokens.processed = j.at("processed_tokens").get<int64_t>();
    r.collapse.from_json(j.at("collapse"));
  } catch (const Json::exception& e) {
    throw Error(source + ": " + e.what());
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
  const fs::path tmp = dir.parent_path() / (dir.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
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
  io::fsync_directory(tmp);
  io::publish_directory(tmp, dir);
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

ResumePoint read_checkpoint(const fs::path& dir, const Json& fingerprint, model::BertModel& model, AdamW& optimizer,
                            uint64_t seed) {
  Json extra = Json::parse(io::read_file(dir / "bertune_state.json"));
  if (extra.value("fingerprint", Json()) != fingerprint)
    throw Error("--resume-from-checkpoint " + dir.string() + " was made with " +
                extra.value("fingerprint", Json()).dump() + " but this run has " + fingerprint.dump() +
                "; the data order would differ");
  ResumePoint p;
  p.run = RunState::from_json(extra, (dir / "bertune_state.json").string());
  p.state = TrainerState::load(dir / "trainer_state.json");
  model.load_state_dict(io::read_safetensors(dir / "model.safetensors"), seed);
  optimizer.load_state_dict(io::read_safetensors(dir / "optimizer.safetensors"), p.run.optimizer_steps);
  model.set_dropout_step(p.run.dropout_step);
  return p;
}

}  // namespace bertune::train
