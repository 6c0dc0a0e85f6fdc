#include "train/pretrainer.h"

#include <chrono>
#include <cmath>
#include <memory>

#include "io/atomic_file.h"
#include "kernels/cpu_runtime.h"
#include "model/pretrained.h"
#include "train/checkpoint.h"
#include "train/evaluate.h"
#include "train/sampler.h"
#include "train/step.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

Json PretrainOptions::to_json() const {
  return Json{{"mlm_probability", mlm_probability},
              {"whole_word_mask", whole_word_mask},
              {"review_attention", review_attention_name(attention)},
              {"validation_reviews", validation_reviews},
              {"train_reviews", train_reviews},
              {"gradient_accumulation_steps", gradient_accumulation_steps}};
}

void validate(PretrainOptions& o) {
  if (!o.train.model.empty()) throw Error("pretrain starts from --model-config (random initialisation), not --model");
  if (o.train.model_config.empty()) throw Error("--model-config is required (the architecture's config.json)");
  validate(o.train);
  if (o.train.train_file.empty()) throw Error("--train-file is required (plain text, one review per line)");
  if (!(o.mlm_probability > 0 && o.mlm_probability < 1)) throw Error("--mlm-probability: must lie in (0, 1)");
  if (o.validation_reviews < 0) throw Error("--validation-reviews: must not be negative");
  if (o.train_reviews == 0 || o.train_reviews < -1) throw Error("--train-reviews: must be positive (or -1 for all)");
  if (o.gradient_accumulation_steps < 1) throw Error("--gradient-accumulation-steps: must be positive");
  if (o.train.eval_strategy != Strategy::No && o.validation_reviews == 0)
    throw Error("--eval-strategy " + std::string(strategy_name(o.train.eval_strategy)) +
                " evaluates on held-out reviews: give --validation-reviews N > 0");
  if (o.train.load_best_model_at_end || o.train.early_stopping_patience > 0)
    throw Error("pretrain keeps the last model: --load-best-model-at-end and early stopping do not apply");
  if (!o.train.test_file.empty() || !o.train.eval_file.empty() || o.train.validation_split > 0)
    throw Error("pretrain evaluates on held-out reviews (--validation-reviews), not --eval-file/--test-file");
}

MlmEval evaluate_mlm(model::BertModel& model, const PackedCorpus& corpus, ReviewAttention attention,
                     const MaskingOptions& masking, uint64_t seed, int batch_size) {
  MlmEval r;
  double loss_sum = 0;
  int64_t correct = 0;
  for (size_t first = 0; first < corpus.size(); first += static_cast<size_t>(batch_size)) {
    std::vector<size_t> idx;
    for (size_t s = first; s < std::min(corpus.size(), first + batch_size); ++s) idx.push_back(s);
    const model::Batch b = mlm_batch(corpus, idx, attention, masking, seed, /*epoch=*/-1);
    int64_t selected = 0;
    for (int32_t l : b.labels) selected += l != -100;
    if (selected == 0) continue;
    const float loss = model.forward(b, /*train=*/false);
    loss_sum += static_cast<double>(loss) * static_cast<double>(selected);
    const int V = model.logits_cols();
    const auto& token_rows = model.logit_token_rows();  // the labelled rows, in order
    for (size_t r = 0; r < token_rows.size(); ++r) {
      const float* row = model.logits() + r * static_cast<size_t>(V);
      correct += std::max_element(row, row + V) - row == b.labels[token_rows[r]];
    }
    r.selected_tokens += selected;
  }
  if (r.selected_tokens > 0) {
    r.loss = loss_sum / static_cast<double>(r.selected_tokens);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(r.selected_tokens);
  }
  return r;
}

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

// A pretraining run with every input read and checked; nothing written yet.
struct PreparedPretrain {
  PretrainOptions o;
  Clock::time_point started = Clock::now();
  fs::path resume_dir, tokenizer_dir;
  model::BertConfig config;
  text::Tokenizer tokenizer;
  PackedCorpus train, heldout;
  size_t train_review_count = 0, heldout_review_count = 0;
  std::vector<int> lengths;
  MaskingOptions masking;
  int64_t steps_per_epoch = 0;
  LrSchedule schedule;
  TrainerState state;
  RunState run;
  Json fingerprint;
  std::unique_ptr<model::BertModel> model;
  std::unique_ptr<AdamW> optimizer;

  int step_size() const { return o.train.per_device_train_batch_size * o.gradient_accumulation_steps; }
};

void read_corpus(PreparedPretrain& p) {
  const TrainOptions& t = p.o.train;
  CorpusSplit split = split_heldout(read_review_corpus(t.train_file), static_cast<size_t>(p.o.validation_reviews),
                                    t.data_seed);
  if (p.o.train_reviews > 0 && static_cast<size_t>(p.o.train_reviews) < split.train.reviews.size())
    split.train.reviews.resize(static_cast<size_t>(p.o.train_reviews));
  p.train_review_count = split.train.reviews.size();
  p.heldout_review_count = split.heldout.reviews.size();
  p.train = pack_reviews(split.train.reviews, p.tokenizer, t.max_length, t.threads);
  if (!split.heldout.reviews.empty()) p.heldout = pack_reviews(split.heldout.reviews, p.tokenizer, t.max_length, t.threads);
  p.lengths = p.train.lengths();
}

void plan_steps(PreparedPretrain& p) {
  const TrainOptions& t = p.o.train;
  p.steps_per_epoch = batches_per_epoch(p.train.size(), p.step_size());
  TrainerState& st = p.state;
  st.max_steps = t.max_steps > 0 ? t.max_steps : static_cast<int64_t>(std::ceil(t.num_train_epochs * p.steps_per_epoch));
  st.num_train_epochs = t.max_steps > 0 ? std::ceil(static_cast<double>(st.max_steps) / p.steps_per_epoch)
                                        : std::ceil(t.num_train_epochs);
  p.schedule = {t.lr_scheduler_type, t.learning_rate,
                t.warmup_steps > 0 ? t.warmup_steps : static_cast<int64_t>(std::ceil(st.max_steps * t.warmup_ratio)),
                st.max_steps};
}

void build_model(PreparedPretrain& p) {
  const TrainOptions& t = p.o.train;
  p.model = std::make_unique<model::BertModel>(p.config, model::Task::MaskedLM, t.device, model::Init::Zeros);
  p.model->init_weights(t.seed);
  p.model->set_dropout_seed(t.seed);
  p.optimizer = std::make_unique<AdamW>(*p.model, adamw_options(t));
}

PreparedPretrain prepare(const PretrainOptions& o) {
  PreparedPretrain p;
  p.o = o;
  const TrainOptions& t = o.train;
  p.resume_dir = resume_dir_of(t);
  kernels::set_num_threads(t.threads);
  p.config = model::BertConfig::load(t.model_config);
  p.config.architectures = {"BertForMaskedLM"};
  if (t.hidden_dropout >= 0) p.config.hidden_dropout_prob = static_cast<float>(t.hidden_dropout);
  if (t.attention_dropout >= 0) p.config.attention_probs_dropout_prob = static_cast<float>(t.attention_dropout);
  if (t.max_length > p.config.max_position_embeddings)
    throw Error("--max-length " + std::to_string(t.max_length) + " exceeds the model's max_position_embeddings (" +
                std::to_string(p.config.max_position_embeddings) + ")");
  p.tokenizer_dir = t.tokenizer.empty() ? default_tokenizer_dir() : fs::path(t.tokenizer);
  p.tokenizer = text::Tokenizer::load(p.tokenizer_dir);
  if (static_cast<int>(p.tokenizer.vocab_size()) > p.config.vocab_size)
    throw Error("tokenizer " + p.tokenizer_dir.string() + " has " + std::to_string(p.tokenizer.vocab_size()) +
                " tokens but the model's vocab_size is " + std::to_string(p.config.vocab_size));
  // HF maps a special token missing from the vocabulary to [UNK]; masked LM cannot work so.
  for (auto [id, what] : {std::pair{p.tokenizer.mask_id(), "mask"}, {p.tokenizer.cls_id(), "classifier ([CLS])"},
                          {p.tokenizer.sep_id(), "separator ([SEP])"}})
    if (id == p.tokenizer.unk_id())
      throw Error("tokenizer " + p.tokenizer_dir.string() + " has no " + what + " token; masked-LM pretraining needs one");
  p.masking = masking_options(p.tokenizer, o.mlm_probability, o.whole_word_mask);
  read_corpus(p);
  plan_steps(p);
  p.fingerprint = resume_fingerprint(t, p.train.size());
  p.fingerprint["pretrain"] = o.to_json();
  build_model(p);
  if (!p.resume_dir.empty()) {
    ResumePoint rp = read_checkpoint(p.resume_dir, p.fingerprint, p.steps_per_epoch, *p.model, *p.optimizer, t.seed);
    rp.state.max_steps = p.state.max_steps;
    rp.state.num_train_epochs = p.state.num_train_epochs;
    p.state = std::move(rp.state);
    p.run = std::move(rp.run);
  }
  return p;
}

class Pretrainer {
 public:
  Pretrainer(PreparedPretrain p, std::FILE* out)
      : p_(std::move(p)), out_(out), state_(p_.state), run_(p_.run),
        step_(*p_.model, *p_.optimizer, p_.schedule, p_.o.train.max_grad_norm),
        progress_(p_.state.max_steps, p_.state.global_step) {}

  PretrainResult train() {
    start();
    while (state_.global_step < state_.max_steps) run_epoch();
    progress_.finish();
    summarise(seconds_since(train_start_));
    finish();
    result_.state = state_;
    return std::move(result_);
  }

 private:
  void start();
  void run_epoch();
  std::vector<model::Batch> micro_batches(const std::vector<size_t>& step_indices, int64_t epoch) const;
  void record_step(const std::vector<model::Batch>& micro, int64_t sequences, const StepOutcome& step);
  void on_nonfinite(const StepOutcome& step);
  void after_step(bool epoch_end);
  void evaluate_now();
  void log_record(Json record);
  void save_checkpoint();
  void summarise(double runtime);
  void finish();

  PreparedPretrain p_;
  std::FILE* out_;
  TrainerState& state_;
  RunState& run_;
  TrainStep step_;
  Progress progress_;
  std::unique_ptr<JsonlLog> log_;
  PretrainResult result_;
  Clock::time_point train_start_;
  int64_t start_step_ = 0;
  RunState start_run_;  // the run state when this process began
  std::string last_good_checkpoint_;
};

void Pretrainer::start() {
  const TrainOptions& t = p_.o.train;
  fs::create_directories(t.output_dir);
  remove_interrupted_saves(t.output_dir);
  const fs::path log_path = fs::path(t.output_dir) / "log.jsonl";
  if (!p_.resume_dir.empty()) JsonlLog::truncate_after(log_path, state_.global_step);
  else if (fs::exists(log_path)) fs::remove(log_path);
  log_ = std::make_unique<JsonlLog>(log_path);
  io::write_file_atomic(fs::path(t.output_dir) / "training_args.json", t.to_json().dump(2) + "\n");
  io::write_file_atomic(fs::path(t.output_dir) / "pretrain_args.json", p_.o.to_json().dump(2) + "\n");
  const model::BertConfig& c = p_.config;
  std::fprintf(out_,
               "***** Running masked-LM pretraining *****\n"
               "  Reviews = %zu for training (%lld tokens in %zu sequences of <= %d, %lld reviews truncated), "
               "%zu held out\n  Num Epochs = %g\n  Batch = %d sequences x %d accumulation steps\n"
               "  Total optimization steps = %lld\n  Warmup steps = %lld\n"
               "  Masking = %s, p = %g; attention %s reviews\n"
               "  Model = %s (%d layers, hidden %d, %lld non-embedding parameters), random initialisation%s\n",
               p_.train_review_count, static_cast<long long>(p_.train.tokens()), p_.train.size(), t.max_length,
               static_cast<long long>(p_.train.truncated_reviews), p_.heldout_review_count, state_.num_train_epochs,
               t.per_device_train_batch_size, p_.o.gradient_accumulation_steps,
               static_cast<long long>(state_.max_steps), static_cast<long long>(p_.schedule.warmup_steps),
               p_.o.whole_word_mask ? "whole-word" : "token", p_.o.mlm_probability,
               p_.o.attention == ReviewAttention::Across ? "across" : "within", t.model_config.c_str(),
               c.num_hidden_layers, c.hidden_size, static_cast<long long>(c.non_embedding_parameters()),
               p_.resume_dir.empty() ? "" : ("\n  Resuming from " + p_.resume_dir.string() + " at step " +
                                            std::to_string(state_.global_step)).c_str());
  std::fflush(out_);
  train_start_ = Clock::now();
  start_step_ = state_.global_step;
  start_run_ = run_;
  last_good_checkpoint_ = p_.resume_dir.string();
}

std::vector<model::Batch> Pretrainer::micro_batches(const std::vector<size_t>& step_indices, int64_t epoch) const {
  std::vector<model::Batch> micro;
  for (const auto& part : split_batches(step_indices, p_.o.train.per_device_train_batch_size))
    micro.push_back(mlm_batch(p_.train, part, p_.o.attention, p_.masking, p_.o.train.seed, epoch));
  return micro;
}

// The rest of epoch run_.epoch_index, from step run_.batch_in_epoch (non-zero on resume).
void Pretrainer::run_epoch() {
  const int64_t e = run_.epoch_index;
  const auto steps = epoch_batches(p_.lengths, p_.step_size(), false, p_.o.train.seed, e);
  for (int64_t b = run_.batch_in_epoch; b < static_cast<int64_t>(steps.size()); ++b) {
    const std::vector<model::Batch> micro = micro_batches(steps[b], e);
    const StepOutcome step = step_.run(micro, state_.global_step);
    if (!step.finite) on_nonfinite(step);
    state_.global_step++;
    run_.batch_in_epoch = b + 1;
    state_.epoch = e + static_cast<double>(b + 1) / static_cast<double>(steps.size());
    record_step(micro, static_cast<int64_t>(steps[b].size()), step);
    const bool epoch_end = b + 1 == static_cast<int64_t>(steps.size());
    if (epoch_end) {
      run_.epoch_index = e + 1;
      run_.batch_in_epoch = 0;
    }
    after_step(epoch_end);
    if (state_.global_step >= state_.max_steps) return;
  }
}

// Samples are packed sequences (under either attention mode).
void Pretrainer::record_step(const std::vector<model::Batch>& micro, int64_t sequences, const StepOutcome& step) {
  if (step.finite) run_.count_loss(step.loss);  // (pretraining leaves the eval window unread)
  int64_t tokens = 0;
  for (const auto& b : micro) {
    state_.total_flos += 6.0 * b.num_rows() * static_cast<double>(p_.config.non_embedding_parameters());
    run_.tokens.add(b);
    tokens += b.real_tokens();
  }
  run_.samples += sequences;
  progress_.step(state_.global_step, state_.epoch, step.loss, step_.schedule().at(state_.global_step), sequences,
                 tokens);
}

void Pretrainer::on_nonfinite(const StepOutcome& step) {
  progress_.message(count_nonfinite_step(run_, step.loss, state_.global_step + 1, last_good_checkpoint_, "pretraining"));
}

// Log, evaluate, save — the Trainer's order.
void Pretrainer::after_step(bool epoch_end) {
  const TrainOptions& t = p_.o.train;
  const int64_t step = state_.global_step;
  const bool last = step >= state_.max_steps;
  if (step % t.logging_steps == 0 && run_.log_loss_steps > 0) {
    log_record({{"loss", run_.log_loss_sum / run_.log_loss_steps}, {"learning_rate", step_.schedule().at(step)}});
    run_.log_loss_sum = 0;
    run_.log_loss_steps = 0;
  }
  auto due = [&](Strategy s, int64_t every) {
    return (s == Strategy::Steps && step % every == 0) || (s == Strategy::Epoch && (epoch_end || last));
  };
  if (p_.heldout.size() > 0 && due(t.eval_strategy, t.eval_steps)) evaluate_now();
  if (due(t.save_strategy, t.save_steps)) {
    if (run_.nonfinite_streak > 0)
      progress_.message("warning: checkpoint-" + std::to_string(step) + " not saved: the last step was skipped");
    else
      save_checkpoint();
  }
}

void Pretrainer::evaluate_now() {
  const TrainOptions& t = p_.o.train;
  const auto t0 = Clock::now();
  const MlmEval ev = evaluate_mlm(*p_.model, p_.heldout, p_.o.attention, p_.masking, t.seed,
                                  t.per_device_eval_batch_size);
  log_record({{"eval_loss", ev.loss}, {"eval_mlm_accuracy", ev.accuracy}, {"eval_selected_tokens", ev.selected_tokens},
              {"eval_runtime", seconds_since(t0)}});
  char line[160];
  std::snprintf(line, sizeof line, "step %lld: held-out MLM loss %.4f, accuracy %.4f (%lld masked tokens)",
                static_cast<long long>(state_.global_step), ev.loss, ev.accuracy,
                static_cast<long long>(ev.selected_tokens));
  progress_.message(line);
}

void Pretrainer::log_record(Json record) {
  record["epoch"] = std::round(state_.epoch * 100.0) / 100.0;
  record["step"] = state_.global_step;
  state_.log_history.push_back(record);
  log_->append(record);
}

void Pretrainer::save_checkpoint() {
  const TrainOptions& t = p_.o.train;
  const fs::path dir = fs::path(t.output_dir) / ("checkpoint-" + std::to_string(state_.global_step));
  run_.dropout_step = p_.model->dropout_step();
  run_.optimizer_steps = p_.optimizer->steps_done();
  write_checkpoint(dir, {p_.config, *p_.model, *p_.optimizer, state_, run_, t, p_.fingerprint, p_.tokenizer_dir});
  last_good_checkpoint_ = dir.string();
  rotate_checkpoints(t.output_dir, t.save_total_limit, std::nullopt);
}

void Pretrainer::summarise(double runtime) {
  result_.summary = run_summary(state_, run_, start_run_, start_step_, runtime);
  log_record(summary_record(result_.summary));
  std::fprintf(out_, "%s\n", result_.summary.to_text().c_str());
}

// The final model: its held-out MLM figures under both attention modes (the run's own one is
// the result; the other tells how much a model leans on, or copes without, its neighbours),
// then DIR/final/.
void Pretrainer::finish() {
  const TrainOptions& t = p_.o.train;
  if (p_.heldout.size() > 0) {
    Json record;
    for (ReviewAttention mode : {ReviewAttention::Across, ReviewAttention::Within}) {
      const MlmEval ev = evaluate_mlm(*p_.model, p_.heldout, mode, p_.masking, t.seed, t.per_device_eval_batch_size);
      if (mode == p_.o.attention) result_.final_eval = ev;
      const std::string key = std::string("final_eval_") + review_attention_name(mode);
      record[key + "_loss"] = ev.loss;
      record[key + "_mlm_accuracy"] = ev.accuracy;
      std::fprintf(out_, "Held-out MLM (%zu reviews, attention %s reviews%s): loss %.4f, accuracy %.4f over %lld "
                   "masked tokens\n",
                   p_.heldout_review_count, review_attention_name(mode), mode == p_.o.attention ? ", as trained" : "",
                   ev.loss, ev.accuracy, static_cast<long long>(ev.selected_tokens));
    }
    log_record(record);
  }
  result_.final_model_dir = fs::path(t.output_dir) / "final";
  model::save_pretrained(result_.final_model_dir, p_.config, p_.model->state_dict(),
                      text::tokenizer_files(p_.tokenizer_dir));
  state_.save(fs::path(t.output_dir) / "trainer_state.json");
  std::fprintf(out_, "Saved the pretrained model (BertForMaskedLM) to %s\n", result_.final_model_dir.c_str());
  std::fprintf(out_, "Total wall time %s\n", format_duration(seconds_since(p_.started)).c_str());
}

}  // namespace

PretrainBench bench_pretraining(const PretrainOptions& options, int warmup, int steps, int repeat) {
  if (warmup < 0 || steps < 1 || repeat < 1)
    throw Error("bench pretrain: --steps and --repeat must be positive, --warmup >= 0");
  PretrainOptions o = options;
  validate(o);
  PreparedPretrain p = prepare(o);
  TrainStep step(*p.model, *p.optimizer, p.schedule, o.train.max_grad_norm);
  const auto order = epoch_batches(p.lengths, p.step_size(), false, o.train.seed, 0);
  auto micro = [&](int64_t s) {
    std::vector<model::Batch> m;
    for (const auto& part : split_batches(order[static_cast<size_t>(s) % order.size()], o.train.per_device_train_batch_size))
      m.push_back(mlm_batch(p.train, part, o.attention, p.masking, o.train.seed, 0));
    return m;
  };
  PretrainBench r;
  const model::BertConfig& c = p.config;
  char description[200];
  std::snprintf(description, sizeof description, "L%d/H%d, vocab %d, %d x %d sequences of <= %d per step, attention %s",
                c.num_hidden_layers, c.hidden_size, c.vocab_size, o.train.per_device_train_batch_size,
                o.gradient_accumulation_steps, o.train.max_length, review_attention_name(o.attention));
  r.description = description;
  int64_t global = 0;
  for (int rep = 0; rep < repeat; ++rep) {
    for (int w = 0; w < warmup; ++w) step.run(micro(global), global), ++global;
    int64_t tokens = 0;
    const auto t0 = Clock::now();
    for (int s = 0; s < steps; ++s, ++global) {
      const std::vector<model::Batch> m = micro(global);
      for (const auto& b : m) tokens += b.real_tokens();
      step.run(m, global);
    }
    const double secs = seconds_since(t0);
    r.seconds.push_back(secs);
    r.real_tokens_per_s.push_back(static_cast<double>(tokens) / secs);
    r.timed_tokens = tokens;
  }
  return r;
}

PretrainResult run_pretraining(const PretrainOptions& options, std::FILE* out) {
  PretrainOptions o = options;
  validate(o);
  return Pretrainer(prepare(o), out).train();
}

}  // namespace bertune::train
