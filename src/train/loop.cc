#include "train/loop.h"

#include <signal.h>
#include <unistd.h>

#include <cmath>
#include <cstdlib>

#include "io/atomic_file.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "util/error.h"
#include "util/signals.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

}  // namespace

KillHook KillHook::from_environment() {
  KillHook h;
  const char* v = std::getenv("BERTUNE_TEST_KILL");
  if (v == nullptr || *v == 0) return h;
  const std::string s = v;
  const size_t colon = s.find(':');
  const std::string point = s.substr(0, colon);
  if (point == "after-step") h.point = Point::AfterStep;
  else if (point == "in-save") h.point = Point::InSave;
  else if (point == "stop-after-step") h.point = Point::StopAfterStep;
  char* end = nullptr;
  if (colon != std::string::npos) h.step = std::strtoll(s.c_str() + colon + 1, &end, 10);
  if (h.point == Point::None || end == nullptr || *end != 0 || h.step < 1)
    throw Error("BERTUNE_TEST_KILL='" + s + "': expected after-step:N, in-save:N or stop-after-step:N (N >= 1)");
  return h;
}

void KillHook::at(Point p, int64_t s) const {
  const bool stop = point == Point::StopAfterStep;  // at the after-step point, with SIGSTOP
  if (p != (stop ? Point::AfterStep : point) || s != step) return;
  std::fflush(nullptr);
  ::kill(::getpid(), stop ? SIGSTOP : SIGKILL);
}

TrainingLoop::TrainingLoop(TrainingObjective& objective, std::FILE* out)
    : objective_(objective),
      p_(objective.parts()),
      out_(console(out)),
      state_(p_.state),
      run_(p_.run),
      early_{p_.options.early_stopping_patience, p_.options.early_stopping_threshold, p_.run.early_stopping_counter},
      progress_(p_.state.max_steps, p_.state.global_step, console(stderr)),
      kill_(KillHook::from_environment()) {}

double TrainingLoop::seconds_since_start() const { return seconds_since(train_start_); }

void TrainingLoop::start() {
  const TrainOptions& o = p_.options;
  const fs::path output_dir = o.output_dir;
  barrier();  // every rank has read the output directory (its resume point) before rank 0 claims it
  if (world().writer()) {  // the other ranks write nothing (train/distributed.h)
    claim_run_dir(p_.run_dir);
    const fs::path log_path = output_dir / "log.jsonl";
    if (!p_.run_dir.resume_dir.empty()) JsonlLog::truncate_after(log_path, state_.global_step);
    else if (fs::exists(log_path)) fs::remove(log_path);  // empty: a run that logged nothing
    log_ = std::make_unique<JsonlLog>(log_path);
    io::write_file_atomic(output_dir / "training_args.json", o.to_json().dump(2) + "\n");
  }
  objective_.start(*this);
  std::fflush(out_);
  train_start_ = Clock::now();
  start_run_ = run_;
  start_step_ = state_.global_step;
  last_good_checkpoint_ = p_.run_dir.resume_dir.string();
}

TrainSummary TrainingLoop::run() {
  start();
  {
    util::StopAtSafePoint safe_points;  // SIGINT/SIGTERM end the run between steps
    try {
      while (state_.global_step < state_.max_steps && !stop_) run_epoch();
    } catch (const Interrupted& e) {
      progress_.finish();
      throw Interrupted(std::string(e.what()) + " at step " + std::to_string(state_.global_step) + "; " +
                            (last_good_checkpoint_.empty()
                                 ? std::string("no checkpoint was saved")
                                 : "the last checkpoint is " + last_good_checkpoint_ +
                                       " (--resume-from-checkpoint last continues from it)"),
                        e.signal);
    }
  }
  progress_.finish();
  summarise();
  objective_.finish(*this);
  std::fprintf(out_, "Total wall time %s\n", format_duration(seconds_since(p_.started)).c_str());
  return summary_;
}

// The rest of epoch run_.epoch_index, from step run_.batch_in_epoch (non-zero on resume).
void TrainingLoop::run_epoch() {
  const int64_t e = run_.epoch_index;
  const auto steps = objective_.epoch_steps(e);
  const auto n = static_cast<int64_t>(steps.size());
  epoch_start_ = Clock::now();
  if (run_.batch_in_epoch == 0) epoch_tokens_ = TokenCounts{};
  for (int64_t b = run_.batch_in_epoch; b < n; ++b) {
    util::throw_if_stop_requested();
    const std::vector<model::Batch> micro = objective_.step_batches(steps[b], e);
    const double epoch_after = e + static_cast<double>(b + 1) / static_cast<double>(n);
    const bool epoch_end = b + 1 == n;
    objective_.launch(micro, state_.global_step);
    int64_t real_tokens = 0;
    for (const model::Batch& m : micro) real_tokens += m.real_tokens();
    launched_.push_back({epoch_after, static_cast<int64_t>(steps[b].size()), real_tokens});
    if (outcomes_needed(state_.global_step + 1, epoch_end)) account_steps();
    state_.global_step++;
    run_.batch_in_epoch = b + 1;
    state_.epoch = epoch_after;
    record_step(micro, static_cast<int64_t>(steps[b].size()));
    if (observer_ && observer_->on_step_end(state_.global_step)) stop_ = true;  // HF: before log/evaluate/save
    after_step(e, epoch_end);
    // An observer runs on every rank (each its own Python process under mpirun) and may ask
    // to stop on one alone: the ranks stop together, else the others would wait for it in
    // the next step's sums forever. (The loop's own stops — early stopping, max steps — see
    // the same numbers on every rank.)
    if (observer_ != nullptr) stop_ = on_any_rank(stop_);
    kill_.at(KillHook::Point::AfterStep, state_.global_step);
    if (state_.global_step >= state_.max_steps || stop_) return;
  }
}

// Whether the step that ends at `step_after` needs the outcomes now: on the CPU always
// (they are there already); on a GPU, where reading them waits for the device, only where
// they are used (a log, an evaluation, a save, an epoch's or the run's end) or when many
// have gathered. In between the device skips non-finite steps itself; the guard's count
// and warnings then catch up here, and a stop after three in a row comes at this point.
bool TrainingLoop::outcomes_needed(int64_t step_after, bool epoch_end) const {
  if (p_.model.device() == kernels::Device::CPU) return true;
  const TrainOptions& o = p_.options;
  return step_after % o.logging_steps == 0 || (o.eval_strategy == Strategy::Steps && step_after % o.eval_steps == 0) ||
         (o.save_strategy == Strategy::Steps && step_after % o.save_steps == 0) || epoch_end ||
         step_after >= state_.max_steps || objective_.pending() >= kMaxPendingSteps;
}

// The launched steps' outcomes, in order: the non-finite guard (skip the step; three in a
// row stop the run), the logged loss, progress.
void TrainingLoop::account_steps() {
  const std::vector<StepOutcome>& outcomes = objective_.collect();
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const StepOutcome& o = outcomes[i];
    if (o.finite) run_.count_loss(o.loss);
    else progress_.message(count_nonfinite_step(run_, o.loss, o.step + 1, last_good_checkpoint_, objective_.what()));
    progress_.step(o.step + 1, launched_[i].epoch, o.loss, objective_.schedule().at(o.step + 1), launched_[i].samples,
                   launched_[i].real_tokens);
  }
  launched_.clear();
}

void TrainingLoop::record_step(const std::vector<model::Batch>& micro, int64_t samples) {
  const double non_embedding = static_cast<double>(p_.config.non_embedding_parameters());
  for (const model::Batch& b : micro) {
    state_.total_flos += 6.0 * static_cast<double>(b.num_rows()) * non_embedding;
    run_.tokens.add(b);
    epoch_tokens_.add(b);
  }
  run_.samples += samples;
}

// Log, evaluate, save — in HF's order — after the step that ended batch `run_.batch_in_epoch`.
void TrainingLoop::after_step(int64_t epoch, bool epoch_end) {
  const TrainOptions& o = p_.options;
  const int64_t step = state_.global_step;
  const bool last_step = step >= state_.max_steps;
  if (step % o.logging_steps == 0 && run_.log_loss_steps > 0) {
    // HF logs the mean loss since the last log and the lr the next step will use.
    Json record{{"loss", run_.log_loss_sum / run_.log_loss_steps}, {"learning_rate", objective_.schedule().at(step)}};
    objective_.add_to_loss_record(record);
    log_record(std::move(record));
    run_.log_loss_sum = 0;
    run_.log_loss_steps = 0;
  }
  if (epoch_end || last_step) {
    epoch_train_seconds_ += seconds_since(epoch_start_);
    if (objective_.epoch_records()) log_epoch_end(epoch);
    if (observer_ && observer_->on_epoch_end(state_.epoch)) stop_ = true;
  }
  auto due = [&](Strategy s, int64_t every) {
    return (s == Strategy::Steps && step % every == 0) || (s == Strategy::Epoch && (epoch_end || last_step));
  };
  std::optional<double> metric;
  if (objective_.can_evaluate() && due(o.eval_strategy, o.eval_steps)) evaluate_now(metric);
  if (epoch_end) {
    run_.epoch_index = epoch + 1;
    run_.batch_in_epoch = 0;
  }
  if (due(o.save_strategy, o.save_steps)) {
    if (run_.nonfinite_streak > 0)
      progress_.message("warning: checkpoint-" + std::to_string(step) +
                        " not saved: the last step was skipped (non-finite)");
    else
      save_checkpoint(metric);
  }
  if (epoch_end) epoch_train_seconds_ = 0;
}

void TrainingLoop::log_epoch_end(int64_t epoch) {
  if (!log_) return;
  log_->append({{"epoch_end", epoch + 1}, {"step", state_.global_step}, {"epoch_train_runtime", epoch_train_seconds_},
                {"epoch_real_tokens", epoch_tokens_.real}, {"epoch_processed_tokens", epoch_tokens_.processed},
                {"epoch_padding_fraction", epoch_tokens_.padding_fraction()}});
}

// The objective's evaluation, then early stopping on its metric (where it applies).
void TrainingLoop::evaluate_now(std::optional<double>& metric) {
  const TrainOptions& o = p_.options;
  metric = objective_.evaluate(*this);
  if (metric && o.early_stopping_patience > 0 && early_.on_evaluate(*metric, state_.best_metric, o.higher_is_better())) {
    progress_.message("early stopping: " + o.metric_key() + " has not improved by more than " +
                      std::to_string(o.early_stopping_threshold) + " for " + std::to_string(early_.counter) +
                      " evaluations");
    stop_ = true;
  }
}

void TrainingLoop::log_record(Json record) {
  record["epoch"] = std::round(state_.epoch * 100.0) / 100.0;
  record["step"] = state_.global_step;
  state_.log_history.push_back(record);
  if (log_) log_->append(record);
  if (observer_ && observer_->on_log(record)) stop_ = true;
}

void TrainingLoop::log_evaluation(Json record, const std::vector<float>& logits, const std::vector<int32_t>& labels,
                                  size_t positions) {
  if (observer_ && observer_->on_evaluate(record, logits, labels, positions)) stop_ = true;
  log_record(std::move(record));
}

void TrainingLoop::save_checkpoint(std::optional<double> metric) {
  const TrainOptions& o = p_.options;
  const int64_t step = state_.global_step;
  const fs::path dir = fs::path(o.output_dir) / ("checkpoint-" + std::to_string(step));
  if (metric) update_best(state_, *metric, dir.string(), o.higher_is_better());
  run_.dropout_step = p_.model.dropout_step();
  run_.optimizer_steps = p_.optimizer.steps_done();
  run_.early_stopping_counter = early_.counter;
  const std::string& run_id = p_.run_dir.run_id;
  CheckpointParts parts{p_.config, p_.model, p_.optimizer, state_, run_, o, p_.fingerprint, p_.tokenizer_dir, run_id};
  parts.write_extra = [&](const fs::path& tmp) {
    objective_.write_checkpoint_files(tmp);
    kill_.at(KillHook::Point::InSave, step);
  };
  last_good_checkpoint_ = dir.string();
  if (world().writer()) {
    write_checkpoint(dir, parts);
    rotate_checkpoints(o.output_dir, o.save_total_limit, state_.best_model_checkpoint,
                       [&](const fs::path& c) { return checkpoint_of_run(c, run_id); });
  }
  barrier();  // every rank goes on once the checkpoint is there
  if (observer_ && observer_->on_save(dir)) stop_ = true;
}

// Trainer.train()'s TrainOutput, printed and logged.
void TrainingLoop::summarise() {
  summary_ = run_summary(state_, run_, start_run_, start_step_, seconds_since(train_start_));
  log_record(summary_record(summary_));
  std::fprintf(out_, "%s\n", summary_.to_text().c_str());
}

}  // namespace bertune::train
