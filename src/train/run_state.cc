#include "train/run_state.h"

#include <algorithm>
#include <cmath>

#include "io/json_error.h"
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

namespace {

// A count no run writes below zero (a negative optimizer step count would run AdamW's bias
// correction backwards; a negative window would divide a loss by it).
int64_t count_field(const Json& j, const char* key, const std::string& source) {
  const int64_t v = json_field<int64_t>(j, key, source);
  if (v < 0) throw Error(source + ": field \"" + key + "\" is " + std::to_string(v) + "; it counts, so it must be >= 0");
  return v;
}

double finite_field(const Json& j, const char* key, const std::string& source) {
  const double v = json_field<double>(j, key, source);
  if (!std::isfinite(v)) throw Error(source + ": field \"" + key + "\" must be a finite number");
  return v;
}

void read_collapse(const Json& j, CollapseDetector& c, const std::string& source) {
  if (!j.contains("collapse")) throw Error(source + ": missing field \"collapse\"");
  // Element types first: a hash beyond 2^64 parses as a double, and converting that to
  // uint64_t is undefined (fuzz_bertune_state, tests/fixtures/fuzz/bertune_state_hash_overflow.json).
  const Json& cj = j.at("collapse");
  auto all_of = [](const Json& a, bool (Json::*is)() const noexcept) {
    return a.is_array() && std::all_of(a.begin(), a.end(), [&](const Json& v) { return (v.*is)(); });
  };
  if (!cj.is_object() || (cj.contains("prediction_hashes") && !all_of(cj.at("prediction_hashes"), &Json::is_number_unsigned)) ||
      (cj.contains("metrics") && !all_of(cj.at("metrics"), &Json::is_number)))
    throw Error(source + ": field \"collapse\" is not what bertune writes");
  try {
    c.from_json(j.at("collapse"));
  } catch (const Json::exception&) {
    throw Error(source + ": field \"collapse\" is not what bertune writes");
  }
  // One hash per evaluation metric: the detector compares them pairwise by index.
  if (c.prediction_hashes.size() != c.metrics.size())
    throw Error(source + ": field \"collapse\" has " + std::to_string(c.prediction_hashes.size()) +
                " prediction hashes but " + std::to_string(c.metrics.size()) + " metrics");
}

}  // namespace

RunState RunState::from_json(const Json& j, const std::string& source) {
  RunState r;
  r.epoch_index = count_field(j, "epoch_index", source);
  r.batch_in_epoch = count_field(j, "batch_in_epoch", source);
  r.dropout_step = json_field<uint64_t>(j, "dropout_step", source);
  r.optimizer_steps = count_field(j, "optimizer_steps", source);
  r.early_stopping_counter = json_field<int>(j, "early_stopping_counter", source);
  if (r.early_stopping_counter < 0)
    throw Error(source + ": field \"early_stopping_counter\" is " + std::to_string(r.early_stopping_counter) +
                "; it counts, so it must be >= 0");
  r.nonfinite_streak = json_field<int>(j, "nonfinite_streak", source);
  // The guard stops a run at the third non-finite step in a row, before any save.
  if (r.nonfinite_streak < 0 || r.nonfinite_streak > 2)
    throw Error(source + ": field \"nonfinite_streak\" is " + std::to_string(r.nonfinite_streak) +
                "; a saved run has 0, 1 or 2");
  r.skipped_steps = count_field(j, "skipped_steps", source);
  r.log_loss_sum = finite_field(j, "log_loss_sum", source);
  r.log_loss_steps = count_field(j, "log_loss_steps", source);
  r.eval_loss_sum = finite_field(j, "eval_loss_sum", source);
  r.eval_loss_steps = count_field(j, "eval_loss_steps", source);
  r.run_loss_sum = finite_field(j, "run_loss_sum", source);
  r.run_loss_steps = count_field(j, "run_loss_steps", source);
  r.samples = count_field(j, "samples", source);
  r.tokens.real = count_field(j, "real_tokens", source);
  r.tokens.processed = count_field(j, "processed_tokens", source);
  if (r.tokens.real > r.tokens.processed)
    throw Error(source + ": real_tokens " + std::to_string(r.tokens.real) + " exceeds processed_tokens " +
                std::to_string(r.tokens.processed));
  read_collapse(j, r.collapse, source);
  return r;
}

RunState read_run_state(const fs::path& dir, const Json& fingerprint) {
  const fs::path file = dir / "bertune_state.json";
  const Json extra = io::read_json_file(file);
  if (!extra.is_object()) throw Error(file.string() + ": expected a JSON object, found " + extra.type_name());
  const Json made_with = extra.value("fingerprint", Json());
  if (made_with != fingerprint)
    throw Error("--resume-from-checkpoint " + dir.string() + " was made with " +
                quote_excerpt(made_with.dump(-1, ' ', false, Json::error_handler_t::replace), 400) +
                " but this run has " + fingerprint.dump() + "; the data order would differ");
  return RunState::from_json(extra, file.string());
}

int64_t EpochSizes::start_of(int64_t epoch) const {
  if (epoch < 0) return -1;
  int64_t start = 0;
  if (every > 0) return __builtin_mul_overflow(epoch, every, &start) ? -1 : start;
  if (epoch > static_cast<int64_t>(planned.size())) return -1;
  for (int64_t e = 0; e < epoch; ++e) start += planned[e];
  return start;
}

int64_t EpochSizes::size_of(int64_t epoch) const {
  if (every > 0) return every;
  return epoch >= 0 && epoch < static_cast<int64_t>(planned.size()) ? planned[epoch] : 0;
}

void check_resume_consistent(const fs::path& dir, const TrainerState& state, const RunState& run,
                             const EpochSizes& epochs) {
  const std::string both = (dir / "trainer_state.json").string() + " and " + (dir / "bertune_state.json").string();
  const int64_t step = state.global_step;
  auto fail = [&](const std::string& what) {
    throw Error("--resume-from-checkpoint " + dir.string() + ": inconsistent checkpoint: " + what +
                "; refusing to resume from it");
  };
  if (step < 0) fail("trainer_state.json has global_step " + std::to_string(step));
  // Sums and products of hostile counts must not wrap into an agreeing number.
  int64_t counted = 0, position = 0;
  if (__builtin_add_overflow(run.optimizer_steps, run.skipped_steps, &counted) || counted != step)
    fail(both + " disagree: global_step " + std::to_string(step) + " but " + std::to_string(run.optimizer_steps) +
         " optimizer steps + " + std::to_string(run.skipped_steps) + " skipped");
  // A run that ended with its last planned epoch saves epoch_index = the plan's size, batch 0.
  const int64_t start = epochs.start_of(run.epoch_index), size = epochs.size_of(run.epoch_index);
  const bool past_plan_end = epochs.every == 0 && run.epoch_index == static_cast<int64_t>(epochs.planned.size());
  if (start < 0 || __builtin_add_overflow(start, run.batch_in_epoch, &position) || position != step ||
      run.batch_in_epoch < 0 || (run.batch_in_epoch >= size && !(past_plan_end && run.batch_in_epoch == 0)))
    fail(both + " disagree: global_step " + std::to_string(step) + " but the data position is epoch " +
         std::to_string(run.epoch_index) + ", batch " + std::to_string(run.batch_in_epoch) + " of " +
         std::to_string(size));
  const std::string name = dir.filename().string();
  if (name.rfind("checkpoint-", 0) == 0 && name.substr(11) != std::to_string(step) &&
      name.find_first_not_of("0123456789", 11) == std::string::npos)
    fail("the directory is named for step " + name.substr(11) + " but trainer_state.json has global_step " +
         std::to_string(step));
}

}  // namespace bertune::train
