#include "train/trainer.h"

#include <chrono>
#include <cmath>
#include <cstdio>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/pretrained.h"
#include "text/tokenizer.h"
#include "text/unk_rate.h"
#include "train/sampler.h"
#include "util/error.h"
#include "util/signals.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

}  // namespace

Trainer::Trainer(PreparedRun run, std::FILE* out)
    : r_(std::move(run)),
      out_(out),
      model_(*r_.model),
      state_(r_.state),
      run_(r_.run),
      step_(*r_.model, *r_.optimizer, r_.schedule, r_.options.max_grad_norm),
      early_{r_.options.early_stopping_patience, r_.options.early_stopping_threshold, r_.run.early_stopping_counter},
      progress_(r_.state.max_steps, r_.state.global_step),
      table_(out) {}

void Trainer::warn(const std::string& message) {
  progress_.message(message);
  result_.warnings.push_back(message);
}

// A tokenizer that does not fit the text (e.g. a directory without tokenizer_config.json,
// which lower-cases and strips accents: every Hangul syllable becomes [UNK]) shows on the
// first batch already.
void Trainer::warn_if_unknown_tokens() {
  const auto batches = r_.epoch_batches(run_.epoch_index);
  std::vector<std::vector<int32_t>> first;
  for (size_t i : batches.front()) first.push_back(r_.train.ids[i]);
  if (auto w = text::unk_warning(text::unk_rate(r_.tokenizer, first), r_.tokenizer_dir.string())) warn(*w);
}

void Trainer::start() {
  const TrainOptions& o = r_.options;
  const fs::path output_dir = o.output_dir;
  fs::create_directories(output_dir);
  remove_interrupted_saves(output_dir);
  const fs::path log_path = output_dir / "log.jsonl";
  if (!r_.resume_dir.empty()) JsonlLog::truncate_after(log_path, state_.global_step);
  else if (fs::exists(log_path)) fs::remove(log_path);  // --overwrite-output-dir
  log_ = std::make_unique<JsonlLog>(log_path);
  io::write_file_atomic(output_dir / "training_args.json", o.to_json().dump(2) + "\n");
  if (!r_.unused.empty())
    warn("Some weights of the model checkpoint at " + o.model +
         " were not used when initializing BertForSequenceClassification: [" + join(r_.unused) +
         "] (expected when the checkpoint was trained on another task, e.g. masked-LM pretraining)");
  warn_if_unknown_tokens();
  if (!r_.initialised.empty())
    warn("Some weights of BertForSequenceClassification were not initialized from the model checkpoint at " +
         o.model + " and are newly initialized: [" + join(r_.initialised) + "]");

  const model::BertConfig& c = r_.config;
  const std::string batching =
      std::string(o.group_by_length ? ", grouped by length" : "") +
      (o.max_tokens_per_batch > 0 ? ", batches of at most " + std::to_string(o.max_tokens_per_batch) + " real tokens"
                                  : std::string());
  std::fprintf(out_,
               "***** Running training *****\n"
               "  Num examples = %zu%s\n  Num Epochs = %g\n  Instantaneous batch size = %d\n"
               "  Total optimization steps = %lld\n  Warmup steps = %lld\n  Padding = %s%s\n"
               "  Model = %s (%d layers, hidden %d, %lld non-embedding parameters)%s\n",
               r_.train.size(), r_.have_eval ? (", eval " + std::to_string(r_.eval.size())).c_str() : "",
               state_.num_train_epochs, o.per_device_train_batch_size, static_cast<long long>(state_.max_steps),
               static_cast<long long>(r_.schedule.warmup_steps), padding_name(o.padding).c_str(),
               batching.c_str(), r_.model_description.c_str(), c.num_hidden_layers,
               c.hidden_size, static_cast<long long>(c.non_embedding_parameters()),
               r_.resume_dir.empty() ? "" : ("\n  Resuming from " + r_.resume_dir.string() + " at step " +
                                           std::to_string(state_.global_step)).c_str());
  std::fflush(out_);
  train_start_ = Clock::now();
  start_run_ = run_;
  start_step_ = state_.global_step;
  last_good_checkpoint_ = r_.resume_dir.string();
}

TrainResult Trainer::train() {
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
  summarise(seconds_since(train_start_));
  finish();
  result_.state = state_;
  return std::move(result_);
}

// The rest of epoch run_.epoch_index, from batch run_.batch_in_epoch (non-zero on resume).
void Trainer::run_epoch() {
  const int64_t e = run_.epoch_index;
  const auto batches = r_.epoch_batches(e);
  const infer::BatchLayout layout = r_.layout();
  epoch_start_ = Clock::now();
  if (run_.batch_in_epoch == 0) epoch_tokens_ = TokenCounts{};
  for (int64_t b = run_.batch_in_epoch; b < static_cast<int64_t>(batches.size()); ++b) {
    util::throw_if_stop_requested();
    const model::Batch batch = infer::build_batch(r_.train, batches[b], layout);
    const double epoch_after = e + static_cast<double>(b + 1) / static_cast<double>(batches.size());
    const bool epoch_end = b + 1 == static_cast<int64_t>(batches.size());
    step_.launch(batch, state_.global_step);
    launched_.push_back({epoch_after, batch.num_sequences(), batch.real_tokens()});
    if (outcomes_needed(state_.global_step + 1, epoch_end)) account_steps();
    state_.global_step++;
    run_.batch_in_epoch = b + 1;
    state_.epoch = epoch_after;
    record_batch(batch);
    after_step(e, epoch_end);
    if (state_.global_step >= state_.max_steps || stop_) return;
  }
}

// Whether the step that ends at `step_after` needs the outcomes now: on the CPU always
// (they are there already); on a GPU, where reading them waits for the device, only where
// they are used (a log, an evaluation, a save, an epoch's or the run's end) or when many
// have gathered. In between the device skips non-finite steps itself; the guard's count
// and warnings then catch up here, and a stop after three in a row comes at this point.
bool Trainer::outcomes_needed(int64_t step_after, bool epoch_end) const {
  if (model_.device() == kernels::Device::CPU) return true;
  const TrainOptions& o = r_.options;
  return step_after % o.logging_steps == 0 || (o.eval_strategy == Strategy::Steps && step_after % o.eval_steps == 0) ||
         (o.save_strategy == Strategy::Steps && step_after % o.save_steps == 0) || epoch_end ||
         step_after >= state_.max_steps || step_.pending() >= kMaxPendingSteps;
}

// The launched steps' outcomes, in order: the non-finite guard, the logged loss, progress.
void Trainer::account_steps() {
  const std::vector<StepOutcome>& outcomes = step_.collect();
  for (size_t i = 0; i < outcomes.size(); ++i) {
    const StepOutcome& o = outcomes[i];
    if (o.finite) run_.count_loss(o.loss);
    else on_nonfinite(o);
    progress_.step(o.step + 1, launched_[i].epoch, o.loss, step_.schedule().at(o.step + 1), launched_[i].sequences,
                   launched_[i].real_tokens);
  }
  launched_.clear();
}

void Trainer::record_batch(const model::Batch& batch) {
  const double non_embedding = static_cast<double>(r_.config.non_embedding_parameters());
  state_.total_flos += 6.0 * static_cast<double>(batch.num_rows()) * non_embedding;
  run_.samples += batch.num_sequences();
  run_.tokens.add(batch);
  epoch_tokens_.add(batch);
}

// The non-finite guard: skip the step; three in a row stop the run.
void Trainer::on_nonfinite(const StepOutcome& step) {
  progress_.message(count_nonfinite_step(run_, step.loss, step.step + 1, last_good_checkpoint_, "training"));
}

// Log, evaluate, save — in HF's order — after the step that ended batch `run_.batch_in_epoch`.
void Trainer::after_step(int64_t epoch, bool epoch_end) {
  const TrainOptions& o = r_.options;
  const int64_t step = state_.global_step;
  const bool last_step = step >= state_.max_steps;
  if (step % o.logging_steps == 0 && run_.log_loss_steps > 0) {
    // HF logs the mean loss since the last log and the lr the next step will use.
    log_record({{"loss", run_.log_loss_sum / run_.log_loss_steps}, {"learning_rate", step_.schedule().at(step)}});
    run_.log_loss_sum = 0;
    run_.log_loss_steps = 0;
  }
  if (epoch_end || last_step) {
    epoch_train_seconds_ += seconds_since(epoch_start_);
    log_->append({{"epoch_end", epoch + 1}, {"step", step}, {"epoch_train_runtime", epoch_train_seconds_},
                  {"epoch_real_tokens", epoch_tokens_.real}, {"epoch_processed_tokens", epoch_tokens_.processed},
                  {"epoch_padding_fraction", epoch_tokens_.padding_fraction()}});
  }
  auto due = [&](Strategy s, int64_t every) {
    return (s == Strategy::Steps && step % every == 0) || (s == Strategy::Epoch && (epoch_end || last_step));
  };
  std::optional<double> metric;
  if (r_.have_eval && due(o.eval_strategy, o.eval_steps)) metric = evaluate_now();
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

void Trainer::log_record(Json record) {
  record["epoch"] = std::round(state_.epoch * 100.0) / 100.0;
  record["step"] = state_.global_step;
  state_.log_history.push_back(record);
  log_->append(record);
}

// An evaluation on the eval set: logged, tabled, checked for collapse and early stopping.
// Returns the metric that picks the best model, when there is one.
std::optional<double> Trainer::evaluate_now() {
  const TrainOptions& o = r_.options;
  infer::EvalResult er = infer::evaluate(model_, r_.eval, o.per_device_eval_batch_size, o.padding, o.max_length,
                                         r_.tokenizer.pad_id());
  Json rec = er.record();
  log_record(rec);
  const double train_loss = run_.eval_loss_steps ? run_.eval_loss_sum / run_.eval_loss_steps : NAN;
  if (progress_.is_tty()) progress_.message("");
  table_.row(state_.epoch, state_.global_step, train_loss, rec, seconds_since(train_start_));
  run_.eval_loss_sum = 0;
  run_.eval_loss_steps = 0;
  const std::string collapse = run_.collapse.on_evaluate(er.metrics.accuracy, er.predictions, r_.config.num_labels());
  if (!collapse.empty()) warn(collapse);
  if (o.metric_for_best_model.empty()) return std::nullopt;
  const double metric = rec.at(o.metric_key()).get<double>();
  if (o.early_stopping_patience > 0 && early_.on_evaluate(metric, state_.best_metric, o.higher_is_better())) {
    progress_.message("early stopping: " + o.metric_key() + " has not improved by more than " +
                      std::to_string(o.early_stopping_threshold) + " for " + std::to_string(early_.counter) +
                      " evaluations");
    stop_ = true;
  }
  return metric;
}

void Trainer::save_checkpoint(std::optional<double> metric) {
  const TrainOptions& o = r_.options;
  const fs::path dir = fs::path(o.output_dir) / ("checkpoint-" + std::to_string(state_.global_step));
  if (metric) update_best(state_, *metric, dir.string(), o.higher_is_better());
  run_.dropout_step = model_.dropout_step();
  run_.optimizer_steps = r_.optimizer->steps_done();
  run_.early_stopping_counter = early_.counter;
  write_checkpoint(dir, {r_.config, model_, *r_.optimizer, state_, run_, o, r_.fingerprint, r_.tokenizer_dir});
  last_good_checkpoint_ = dir.string();
  rotate_checkpoints(o.output_dir, o.save_total_limit, state_.best_model_checkpoint);
}

// Trainer.train()'s TrainOutput, printed and logged.
void Trainer::summarise(double train_runtime) {
  result_.summary = run_summary(state_, run_, start_run_, start_step_, train_runtime);
  log_record(summary_record(result_.summary));
  std::fprintf(out_, "%s\n", result_.summary.to_text().c_str());
}

// The best model (when asked for), saved as final/, evaluated, and tested once.
void Trainer::finish() {
  const TrainOptions& o = r_.options;
  if (o.load_best_model_at_end && state_.best_model_checkpoint) {
    std::fprintf(out_, "Loading best model from %s (%s = %.6g).\n", state_.best_model_checkpoint->c_str(),
                 o.metric_key().c_str(), *state_.best_metric);
    model_.load_state_dict(io::read_safetensors(fs::path(*state_.best_model_checkpoint) / "model.safetensors"),
                           o.seed);
  }
  result_.final_model_dir = fs::path(o.output_dir) / "final";
  model::save_pretrained(result_.final_model_dir, r_.config, model_.state_dict(), text::tokenizer_files(r_.tokenizer_dir));
  state_.save(fs::path(o.output_dir) / "trainer_state.json");
  std::fprintf(out_, "Saved the final model to %s\n", result_.final_model_dir.c_str());

  const int32_t pad_id = r_.tokenizer.pad_id();
  if (r_.have_eval) {
    result_.final_eval = infer::evaluate(model_, r_.eval, o.per_device_eval_batch_size, o.padding, o.max_length, pad_id);
    std::fprintf(out_, "\n***** Final evaluation (%zu examples) *****\n%s", r_.eval.size(),
                 result_.final_eval->metrics.report().c_str());
  }
  if (!o.test_file.empty()) {
    infer::TokenizedData test = infer::tokenize(r_.test_set, r_.tokenizer, o.max_length, o.threads);
    result_.test = infer::evaluate(model_, test, o.per_device_eval_batch_size, o.padding, o.max_length, pad_id);
    log_record(result_.test->record("test_"));
    std::fprintf(out_, "\n***** Test (%s, %zu examples) *****\n%s", o.test_file.c_str(), test.size(),
                 result_.test->metrics.report().c_str());
  }
  std::fprintf(out_, "Total wall time %s\n", format_duration(seconds_since(r_.started)).c_str());
}

TrainResult run_training(const TrainOptions& options, std::FILE* out) {
  return Trainer(prepare_run(options), out).train();
}

}  // namespace bertune::train
