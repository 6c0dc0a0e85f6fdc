#include "train/pretrainer.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>

#include "infer/batching.h"
#include "infer/model_dir.h"
#include "io/atomic_file.h"
#include "kernels/cpu_runtime.h"
#include "model/electra_pretrained.h"
#include "model/pretrained.h"
#include "io/safetensors.h"
#include "train/checkpoint.h"
#include "train/distributed.h"
#include "train/electra.h"
#include "train/memory_plan.h"
#include "train/sampler.h"
#include "train/step.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

Objective parse_objective(const std::string& name) {
  if (name == "mlm") return Objective::MaskedLM;
  if (name == "mlm-nsp") return Objective::MaskedLMNextSentence;
  if (name == "electra") return Objective::Electra;
  throw Error("'" + name + "' is not one of mlm|mlm-nsp|electra");
}

const char* objective_name(Objective o) {
  switch (o) {
    case Objective::MaskedLM: break;
    case Objective::MaskedLMNextSentence: return "mlm-nsp";
    case Objective::Electra: return "electra";
  }
  return "mlm";
}

Json PretrainOptions::to_json() const {
  Json j{{"mlm_probability", mlm_probability},
         {"whole_word_mask", whole_word_mask},
         {"review_attention", review_attention_name(attention)},
         {"validation_reviews", validation_reviews},
         {"train_reviews", train_reviews},
         {"gradient_accumulation_steps", gradient_accumulation_steps}};
  if (!train.text_pair_column.empty()) {  // absent for plain text: older checkpoints still resume
    j["text_column"] = train.text_column;
    j["text_pair_column"] = train.text_pair_column;
  }
  // Absent for MLM: older checkpoints still resume.
  if (objective != Objective::MaskedLM) j["objective"] = objective_name(objective);
  if (objective == Objective::Electra) {
    j["generator_layers"] = generator_layers;
    j["generator_intermediate_size"] = generator_intermediate_size;
    j["discriminator_weight"] = discriminator_weight;
  }
  return j;
}

void validate(PretrainOptions& o) {
  validate(o.train);
  if (o.train.train_file.empty())
    throw Error("--train-file is required (plain text, one review per line; or sentence pairs with "
                "--text-pair-column)");
  if (!(o.mlm_probability > 0 && o.mlm_probability < 1)) throw Error("--mlm-probability: must lie in (0, 1)");
  if (o.train.text_pair_column.empty() && o.train.text_column != TrainOptions{}.text_column)
    throw Error("--text-column " + o.train.text_column + ": names the first text of sentence pairs; give "
                "--text-pair-column too (plain text is read one review per line)");
  if (o.validation_reviews < 0) throw Error("--validation-reviews: must not be negative");
  if (o.train_reviews == 0 || o.train_reviews < -1) throw Error("--train-reviews: must be positive (or -1 for all)");
  if (o.gradient_accumulation_steps < 1) throw Error("--gradient-accumulation-steps: must be positive");
  if (static_cast<int64_t>(o.train.per_device_train_batch_size) * o.gradient_accumulation_steps > INT32_MAX)
    throw Error("--per-device-train-batch-size " + std::to_string(o.train.per_device_train_batch_size) +
                " x --gradient-accumulation-steps " + std::to_string(o.gradient_accumulation_steps) +
                ": more than " + std::to_string(INT32_MAX) + " sequences per optimization step");
  if (o.train.eval_strategy != Strategy::No && o.validation_reviews == 0)
    throw Error("--eval-strategy " + std::string(strategy_name(o.train.eval_strategy)) +
                " evaluates on held-out reviews: give --validation-reviews N > 0");
  if (o.train.load_best_model_at_end || o.train.early_stopping_patience > 0)
    throw Error("pretrain keeps the last model: --load-best-model-at-end and early stopping do not apply");
  if (!o.train.test_file.empty() || !o.train.eval_file.empty() || o.train.validation_split > 0)
    throw Error("pretrain evaluates on held-out reviews (--validation-reviews), not --eval-file/--test-file");
  if (o.objective == Objective::MaskedLMNextSentence) {
    if (o.train.text_pair_column.empty())
      throw Error("--objective mlm-nsp: next-sentence prediction needs sentence pairs (--text-column A "
                  "--text-pair-column B)");
    if (o.attention != ReviewAttention::Within)
      throw Error("--objective mlm-nsp: each pair needs its own [CLS] row: give --review-attention within");
    if (o.train.device != kernels::Device::CPU) throw Error("--objective mlm-nsp: runs on the CPU only");
  }
  if (o.objective == Objective::Electra) {
    if (o.train.device != kernels::Device::CPU) throw Error("--objective electra: runs on the CPU only");
    if (o.generator_layers == 0 || o.generator_layers < -1) throw Error("--generator-layers: must be positive (or -1)");
    if (o.generator_intermediate_size == 0 || o.generator_intermediate_size < -1)
      throw Error("--generator-intermediate-size: must be positive (or -1)");
    if (!(o.discriminator_weight > 0)) throw Error("--discriminator-weight: must be positive");
  }
}

MlmEval evaluate_mlm(model::BertModel& model, const PackedCorpus& corpus, ReviewAttention attention,
                     const MaskingOptions& masking, uint64_t seed, int batch_size, model::BertModel* discriminator,
                     RtdEval* rtd) {
  MlmEval r;
  double loss_sum = 0, rtd_loss_sum = 0;
  int64_t correct = 0, rtd_correct = 0, replaced = 0;
  for (size_t first = 0; first < corpus.size(); first += static_cast<size_t>(batch_size)) {
    std::vector<size_t> idx;
    for (size_t s = first; s < std::min(corpus.size(), first + batch_size); ++s) idx.push_back(s);
    const model::Batch b = mlm_batch(corpus, idx, attention, masking, seed, /*epoch=*/-1);
    int64_t selected = 0;
    for (int32_t l : b.labels) selected += l != -100;
    if (selected == 0) continue;
    const float loss = model.forward(b, /*train=*/false);
    // BertForPreTraining's loss is MLM + next-sentence: the MLM part alone here.
    loss_sum += (static_cast<double>(loss) - model.next_sentence_loss()) * static_cast<double>(selected);
    if (!b.next_sentence_labels.empty()) {
      const int B = b.num_sequences();
      const float* z = model.next_sentence_logits();
      r.nsp_loss += static_cast<double>(model.next_sentence_loss()) * B;
      for (int s = 0; s < B; ++s) r.nsp_accuracy += (z[2 * s + 1] > z[2 * s] ? 1 : 0) == b.next_sentence_labels[s];
      r.nsp_pairs += B;
    }
    const int V = model.logits_cols();
    const auto& token_rows = model.logit_token_rows();  // the labelled rows, in order
    for (size_t r = 0; r < token_rows.size(); ++r) {
      const float* row = model.logits() + r * static_cast<size_t>(V);
      correct += std::max_element(row, row + V) - row == b.labels[token_rows[r]];
    }
    r.selected_tokens += selected;
    if (discriminator) {
      int64_t n_replaced = 0;
      const model::Batch fake = replaced_token_batch(b, model, seed, /*draw=*/first, &n_replaced);
      const float d_loss = discriminator->forward(fake, /*train=*/false);
      const int64_t rows = discriminator->logits_rows();
      rtd_loss_sum += static_cast<double>(d_loss) * static_cast<double>(rows);
      for (int64_t i = 0; i < rows; ++i) {
        const float* z = discriminator->logits() + 2 * i;
        rtd_correct += (z[1] > z[0] ? 1 : 0) == fake.labels[discriminator->logit_token_rows()[i]];
      }
      replaced += n_replaced;
      rtd->tokens += rows;
    }
  }
  if (r.nsp_pairs > 0) {
    r.nsp_loss /= static_cast<double>(r.nsp_pairs);
    r.nsp_accuracy /= static_cast<double>(r.nsp_pairs);
  }
  if (r.selected_tokens > 0) {
    r.loss = loss_sum / static_cast<double>(r.selected_tokens);
    r.accuracy = static_cast<double>(correct) / static_cast<double>(r.selected_tokens);
  }
  if (discriminator && rtd->tokens > 0) {
    const double n = static_cast<double>(rtd->tokens);
    rtd->loss = rtd_loss_sum / n;
    rtd->accuracy = static_cast<double>(rtd_correct) / n;
    rtd->replaced_fraction = static_cast<double>(replaced) / n;
  }
  return r;
}

// A pretraining run with every input read and checked; nothing written yet.
struct PreparedPretrain {
  PretrainOptions o;
  Clock::time_point started = Clock::now();
  RunDirPlan run_dir;  // run_dir.resume_dir empty: a fresh run
  fs::path tokenizer_dir;
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
  model::PretrainedTensors pretrained;  // --model's weights, until build_model loads them
  std::vector<std::string> initialised, unused;  // --model: what it lacked (initialised afresh), what went unused
  std::unique_ptr<model::BertModel> model;  // MLM: the masked LM; ELECTRA: the discriminator
  std::unique_ptr<AdamW> optimizer;
  // ELECTRA only: the generator and its optimizer.
  model::BertConfig generator_config;
  std::unique_ptr<model::BertModel> generator;
  std::unique_ptr<AdamW> generator_optimizer;

  int64_t steps_without_masks = 0;  // optimizer steps whose micro-batches had no token to predict

  bool electra() const { return o.objective == Objective::Electra; }
  int step_size() const { return o.train.per_device_train_batch_size * o.gradient_accumulation_steps; }
};

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

void read_corpus(PreparedPretrain& p) {
  const TrainOptions& t = p.o.train;
  ReviewCorpus all = t.text_pair_column.empty() ? read_review_corpus(t.train_file)
                                                : read_pair_corpus(t.train_file, t.text_column, t.text_pair_column);
  CorpusSplit split = split_heldout(std::move(all), static_cast<size_t>(p.o.validation_reviews), t.data_seed);
  if (p.o.train_reviews > 0 && static_cast<size_t>(p.o.train_reviews) < split.train.size()) {
    split.train.reviews.resize(static_cast<size_t>(p.o.train_reviews));
    if (split.train.is_pairs()) split.train.pairs.resize(static_cast<size_t>(p.o.train_reviews));
  }
  if (p.o.objective == Objective::MaskedLMNextSentence) {  // the held-out pairs drawn among themselves
    draw_next_sentences(split.train, t.data_seed);
    if (split.heldout.size() > 1) draw_next_sentences(split.heldout, t.data_seed + 1);
  }
  p.train_review_count = split.train.size();
  p.heldout_review_count = split.heldout.size();
  p.train = pack_corpus(split.train, p.tokenizer, t.max_length, t.threads);
  if (split.heldout.size() > 0) p.heldout = pack_corpus(split.heldout, p.tokenizer, t.max_length, t.threads);
  p.lengths = p.train.lengths();
}

void plan_steps(PreparedPretrain& p) {
  const TrainOptions& t = p.o.train;
  p.steps_per_epoch = batches_per_epoch(p.train.size(), p.step_size());
  const RunLength length = plan_run_length(t, p.steps_per_epoch);
  p.state.max_steps = length.max_steps;
  p.state.num_train_epochs = length.num_train_epochs;
  p.schedule = {t.lr_scheduler_type, t.learning_rate, length.warmup_steps, length.max_steps};
}

model::Task model_task(const PreparedPretrain& p) {
  switch (p.o.objective) {
    case Objective::MaskedLM: break;
    case Objective::MaskedLMNextSentence: return model::Task::PreTraining;
    case Objective::Electra: return model::Task::ReplacedTokenDetection;
  }
  return model::Task::MaskedLM;
}

void plan_generator(PreparedPretrain& p) {
  if (!p.electra()) return;
  const int layers = p.o.generator_layers > 0 ? p.o.generator_layers : std::max(1, p.config.num_hidden_layers / 4);
  const int inner = p.o.generator_intermediate_size > 0 ? p.o.generator_intermediate_size : p.config.intermediate_size;
  p.generator_config = generator_config(p.config, layers, inner);
}

// Before the models are built: a micro-batch of the longest packed sequences, the held-out
// evaluation's batch, the masked-LM head on the selected tokens (mlm_probability of them).
void require_pretrain_memory(const PreparedPretrain& p) {
  const TrainOptions& t = p.o.train;
  const int longest = p.lengths.empty() ? t.max_length : *std::max_element(p.lengths.begin(), p.lengths.end());
  auto batch = [&](const model::BertConfig& config, model::Task task, int sequences) {
    model::BatchShape s = model::uniform_batch(config, task, sequences, longest);
    if (task == model::Task::MaskedLM || task == model::Task::PreTraining)
      s.logit_rows = static_cast<int64_t>(std::ceil(static_cast<double>(s.rows) * p.o.mlm_probability));
    return s;
  };
  const int eval_batch = p.heldout.size() > 0 ? t.per_device_eval_batch_size : 0;
  util::MemoryNeed need;
  add_trained_model(need, p.config, model_task(p), batch(p.config, model_task(p), t.per_device_train_batch_size),
                    batch(p.config, model_task(p), eval_batch));
  if (p.electra())
    add_trained_model(need, p.generator_config, model::Task::MaskedLM,
                      batch(p.generator_config, model::Task::MaskedLM, t.per_device_train_batch_size),
                      batch(p.generator_config, model::Task::MaskedLM, eval_batch), "generator ");
  require_training_memory(need, t, "pretrain");
}

void build_model(PreparedPretrain& p) {
  const TrainOptions& t = p.o.train;
  p.model = std::make_unique<model::BertModel>(p.config, model_task(p), t.device, model::Init::Zeros);
  if (t.model.empty()) {
    p.model->init_weights(t.seed);
  } else {  // continued pretraining: HF's from_pretrained of a BertForMaskedLM (or BertForPreTraining)
    model::LoadReport report = p.model->load_state_dict(p.pretrained.tensors, t.seed);
    p.initialised = std::move(report.initialised);
    p.unused = std::move(report.unused);
    p.pretrained.tensors.clear();
  }
  p.model->set_dropout_seed(t.seed);
  p.optimizer = std::make_unique<AdamW>(*p.model, adamw_options(t));
  if (!p.electra()) return;
  p.generator = std::make_unique<model::BertModel>(p.generator_config, model::Task::MaskedLM, t.device,
                                                   model::Init::Zeros);
  p.generator->init_weights(t.seed + 1);  // its embeddings are the discriminator's from the first step on
  p.generator->set_dropout_seed(t.seed + 1);
  p.generator_optimizer = std::make_unique<AdamW>(*p.generator, adamw_options(t));
}

// ELECTRA's checkpoints carry the generator beside the discriminator (model.safetensors).
constexpr const char* kGeneratorWeights = "generator.safetensors";
constexpr const char* kGeneratorOptimizer = "generator_optimizer.safetensors";

void read_generator(PreparedPretrain& p, const fs::path& dir, int64_t optimizer_steps, uint64_t dropout_step) {
  for (const char* f : {kGeneratorWeights, kGeneratorOptimizer})
    if (!fs::exists(dir / f))
      throw Error("--resume-from-checkpoint: " + (dir / f).string() + " is missing (an ELECTRA checkpoint has it)");
  p.generator->load_state_dict(io::read_safetensors(dir / kGeneratorWeights), p.o.train.seed);
  p.generator_optimizer->load_state_dict(io::read_safetensors(dir / kGeneratorOptimizer), optimizer_steps);
  p.generator->set_dropout_step(dropout_step);  // one training forward per micro-batch, as the discriminator
}

// Token masking selects each token with probability p. When an average optimizer step holds
// so little text that it expects less than one selected token, most steps have nothing to
// predict: their loss is undefined (HF logs nan) and the run would report a loss of 0 while
// learning nothing. Whole-word masking predicts at least one word per sequence.
void require_tokens_to_mask(const PreparedPretrain& p) {
  if (p.o.whole_word_mask) return;
  const auto& special = p.masking.special_ids;
  int64_t maskable = 0;
  for (int32_t id : p.train.ids) maskable += std::find(special.begin(), special.end(), id) == special.end();
  const double per_step = static_cast<double>(maskable) / static_cast<double>(std::max<int64_t>(p.steps_per_epoch, 1));
  const double expected = per_step * p.o.mlm_probability;
  if (expected >= 1) return;
  char line[320];
  std::snprintf(line, sizeof line,
                "--mlm-probability %g selects %.2f tokens in an average step (%s has %.1f maskable tokens per "
                "step): most steps would have nothing to predict and report a loss of 0",
                p.o.mlm_probability, expected, p.o.train.train_file.c_str(), per_step);
  throw Error(std::string(line) + "; raise --mlm-probability, give more text per step (more or longer reviews, a "
              "larger batch) or use --whole-word-mask");
}

// --model-config as the model pretraining trains: BERT-named (ELECTRA's two models too; their
// final directories are renamed to ELECTRA's, model/electra_pretrained.h). An "electra" config
// is taken for --objective electra when its embeddings have the hidden width.
// The model a run pretrains, from --model-config's config (`what` names the flag and file).
model::BertConfig pretraining_config(model::BertConfig c, const std::string& what, Objective objective) {
  const std::string type = model::family_model_type(c.family);
  if (objective != Objective::Electra && c.family != model::Family::Bert)
    throw Error(what + ": model_type \"" + type + "\": --objective " + objective_name(objective) + " trains a " +
                (objective == Objective::MaskedLM ? "BertForMaskedLM" : "BertForPreTraining") +
                "; give a \"bert\" config" +
                (c.family == model::Family::Electra ? " (an \"electra\" one pretrains with --objective electra)" : ""));
  if (objective == Objective::Electra && c.family != model::Family::Bert) {
    if (c.family != model::Family::Electra)
      throw Error(what + ": model_type \"" + type +
                  "\": --objective electra trains an ELECTRA model; give an \"electra\" or \"bert\" config");
    if (c.embedding_width() != c.hidden_size)
      throw Error(what + ": embedding_size " + std::to_string(c.embedding_width()) +
                  " differs from hidden_size " + std::to_string(c.hidden_size) +
                  "; ELECTRA pretraining trains embeddings of the hidden width (set embedding_size to " +
                  std::to_string(c.hidden_size) + ")");
    c.family = model::Family::Bert;
    c.embedding_size = 0;
  }
  c.architectures = {objective == Objective::Electra               ? "BertModel"
                     : objective == Objective::MaskedLMNextSentence ? "BertForPreTraining"
                                                                    : "BertForMaskedLM"};
  return c;
}

PreparedPretrain prepare(const PretrainOptions& o) {
  PreparedPretrain p;
  p.o = o;
  const TrainOptions& t = o.train;
  p.run_dir = plan_run_dir(t);
  kernels::set_num_threads(t.threads);
  set_compute_precision(t);
  if (t.model.empty()) {
    p.config = pretraining_config(model::BertConfig::load(t.model_config), "--model-config " + t.model_config,
                                  o.objective);
  } else {  // continued pretraining: the encoder (and MLM head) of a BERT directory
    p.pretrained = infer::load_weights_to_train(t.model, "pretraining");
    if (p.pretrained.config.family != model::Family::Bert)
      throw Error("--model " + t.model + ": model_type \"" + model::family_model_type(p.pretrained.config.family) +
                  "\": continued pretraining takes a BERT model directory");
    p.config = pretraining_config(p.pretrained.config, "--model " + t.model, o.objective);
  }
  if (t.hidden_dropout >= 0) p.config.hidden_dropout_prob = static_cast<float>(t.hidden_dropout);
  if (t.attention_dropout >= 0) p.config.attention_probs_dropout_prob = static_cast<float>(t.attention_dropout);
  model::require_max_length_fits(t.max_length, p.config);
  if (!t.text_pair_column.empty()) model::require_pair_token_type(p.config);
  p.tokenizer_dir = !t.tokenizer.empty() ? fs::path(t.tokenizer)
                   : !t.model.empty()   ? fs::path(t.model)
                                        : infer::default_tokenizer_dir();
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
  require_tokens_to_mask(p);
  p.fingerprint = resume_fingerprint(t, p.train.size());
  p.fingerprint["pretrain"] = o.to_json();
  plan_generator(p);
  require_pretrain_memory(p);
  build_model(p);
  if (!p.run_dir.resume_dir.empty()) {
    ResumePoint rp = read_checkpoint(p.run_dir.resume_dir, p.fingerprint, p.steps_per_epoch, *p.model, *p.optimizer, t.seed);
    rp.state.max_steps = p.state.max_steps;
    rp.state.num_train_epochs = p.state.num_train_epochs;
    p.state = std::move(rp.state);
    p.run = std::move(rp.run);
    if (p.electra()) read_generator(p, p.run_dir.resume_dir, p.run.optimizer_steps, p.run.dropout_step);
  }
  return p;
}


}  // namespace

// The step a run takes: TrainStep on the masked LM, or ElectraStep on both models (CPU only:
// its launch runs the step, its collect hands the outcomes back).
class PretrainStep {
 public:
  explicit PretrainStep(PreparedPretrain& p) : mlm_(*p.model, *p.optimizer, p.schedule, p.o.train.max_grad_norm) {
    mlm_.set_gradient_reduction(world_gradient_reduction(p.o.train));
    if (p.electra())
      electra_ = std::make_unique<ElectraStep>(*p.generator, *p.generator_optimizer, *p.model, *p.optimizer,
                                               p.schedule, p.o.train.max_grad_norm, p.o.discriminator_weight,
                                               p.o.train.seed);
  }
  void launch(std::span<const model::Batch> micro, int64_t step) {
    if (electra_) electra_pending_.push_back(electra_->run(micro, step));
    else mlm_.launch(micro, step);
  }
  const std::vector<StepOutcome>& collect() {
    if (!electra_) return mlm_.collect();
    electra_collected_.clear();
    std::swap(electra_collected_, electra_pending_);
    return electra_collected_;
  }
  size_t pending() const { return electra_ ? electra_pending_.size() : mlm_.pending(); }
  const LrSchedule& schedule() const { return mlm_.schedule(); }
  const ElectraStep* electra() const { return electra_.get(); }
  void share_embeddings() {
    if (electra_) electra_->share_embeddings();
  }

 private:
  TrainStep mlm_;
  std::unique_ptr<ElectraStep> electra_;
  std::vector<StepOutcome> electra_pending_, electra_collected_;
};

PretrainObjective::PretrainObjective(const PretrainOptions& options, std::FILE* out) : out_(console(out)) {
  PretrainOptions o = options;
  validate(o);
  if (o.objective == Objective::Electra && world().size > 1)  // ELECTRA's two-model step has no reduction
    throw Error("ELECTRA pretraining (--objective electra) runs in one process; masked-LM pretraining runs under "
                "mpirun");
  if (o.objective == Objective::MaskedLMNextSentence && world().size > 1)  // its loss has no denominator
    throw Error("next-sentence pretraining (--objective mlm-nsp) runs in one process");
  join_world(o.train, o.to_json().dump());
  p_ = std::make_unique<PreparedPretrain>(prepare(o));
  step_ = std::make_unique<PretrainStep>(*p_);
}

PretrainObjective::~PretrainObjective() = default;

LoopParts PretrainObjective::parts() {
  return {p_->o.train, p_->config, *p_->model, *p_->optimizer, p_->state, p_->run, p_->fingerprint, p_->tokenizer_dir,
          p_->run_dir, p_->started};
}

const model::BertConfig& PretrainObjective::config() const { return p_->config; }

std::vector<std::vector<size_t>> PretrainObjective::epoch_steps(int64_t epoch) const {
  return epoch_batches(p_->lengths, p_->step_size(), false, p_->o.train.seed, epoch);
}

std::vector<model::Batch> PretrainObjective::step_batches(const std::vector<size_t>& step, int64_t epoch) const {
  std::vector<model::Batch> micro;
  const World& w = world();
  for (const auto& part : infer::split_batches(step, p_->o.train.per_device_train_batch_size)) {
    // This rank's share of the global micro-batch, balanced by tokens.
    const auto build = [&](const std::vector<size_t>& ex) {
      return mlm_batch(p_->train, ex, p_->o.attention, p_->masking, p_->o.train.seed, epoch);
    };
    micro.push_back(w.size == 1 ? build(part) : rank_batch(part, &p_->lengths, p_->config.num_attention_heads, build));
  }
  const bool masked = std::any_of(micro.begin(), micro.end(), [](const model::Batch& b) {
    return std::any_of(b.labels.begin(), b.labels.end(), [](int32_t l) { return l != -100; });
  });
  if (!masked && p_->steps_without_masks++ == 0)
    std::fprintf(console(stderr),
                 "warning: an optimizer step (epoch %lld) has no token selected for prediction: its loss is "
                 "undefined (HF logs nan) and logged as 0, and its gradient is zero\n",
                 static_cast<long long>(epoch + 1));
  return micro;
}

void PretrainObjective::launch(std::span<const model::Batch> micro_batches, int64_t step) {
  step_->launch(micro_batches, step);
}
const std::vector<StepOutcome>& PretrainObjective::collect() { return step_->collect(); }
size_t PretrainObjective::pending() const { return step_->pending(); }
const LrSchedule& PretrainObjective::schedule() const { return step_->schedule(); }
bool PretrainObjective::can_evaluate() const { return p_->heldout.size() > 0; }

// pretrain_args.json and the banner.
void PretrainObjective::start(TrainingLoop&) {
  const PreparedPretrain& p = *p_;
  const TrainOptions& t = p.o.train;
  if (world().writer()) io::write_file_atomic(fs::path(t.output_dir) / "pretrain_args.json", p.o.to_json().dump(2) + "\n");
  const model::BertConfig& c = p.config;
  std::fprintf(out_,
               "***** Running %s pretraining *****\n"
               "  %s = %zu for training (%lld tokens in %zu sequences of <= %d, %lld truncated), "
               "%zu held out\n  Num Epochs = %g\n  Batch = %d sequences x %d accumulation steps\n"
               "  Total optimization steps = %lld\n  Warmup steps = %lld\n"
               "  Masking = %s, p = %g; attention %s reviews\n"
               "  Model = %s (%d layers, hidden %d, %lld non-embedding parameters), %s%s\n",
               p.electra()                                          ? "ELECTRA (replaced-token detection)"
               : p.o.objective == Objective::MaskedLMNextSentence ? "masked-LM + next-sentence"
                                                                  : "masked-LM",
               t.text_pair_column.empty() ? "Reviews" : "Sentence pairs", p.train_review_count,
               static_cast<long long>(p.train.tokens()), p.train.size(), t.max_length,
               static_cast<long long>(p.train.truncated_reviews), p.heldout_review_count, p.state.num_train_epochs,
               per_device_batch(t), p.o.gradient_accumulation_steps,
               static_cast<long long>(p.state.max_steps), static_cast<long long>(p.schedule.warmup_steps),
               p.o.whole_word_mask ? "whole-word" : "token", p.o.mlm_probability,
               p.o.attention == ReviewAttention::Across ? "across" : "within",
               t.model.empty() ? t.model_config.c_str() : t.model.c_str(), c.num_hidden_layers, c.hidden_size,
               static_cast<long long>(c.non_embedding_parameters()),
               t.model.empty() ? "random initialisation" : "its pretrained weights",
               p.run_dir.resume_dir.empty() ? "" : ("\n  Resuming from " + p.run_dir.resume_dir.string() + " at step " +
                                           std::to_string(p.state.global_step)).c_str());
  for (const auto& [names, what] : {std::pair{&p.initialised, "Newly initialised (not in %s): %s\n"},
                                     {&p.unused, "Not used (of %s): %s\n"}}) {
    std::string list;
    for (const auto& n : *names) list += (list.empty() ? "" : ", ") + n;
    if (!list.empty()) std::fprintf(out_, what, t.model.c_str(), list.c_str());
  }
  if (p.electra()) {
    const model::BertConfig& g = p.generator_config;
    std::fprintf(out_, "  Objective = ELECTRA replaced-token detection: generator %d layers, hidden %d, intermediate %d "
                 "(%lld non-embedding parameters, embeddings shared), discriminator weight %g\n",
                 g.num_hidden_layers, g.hidden_size, g.intermediate_size,
                 static_cast<long long>(g.non_embedding_parameters()), p.o.discriminator_weight);
  }
  print_compute(out_, t);
  print_world(out_, static_cast<int64_t>(t.per_device_train_batch_size) * p.o.gradient_accumulation_steps);
}

// ELECTRA: the logged step's own parts (loss = their weighted sum).
void PretrainObjective::add_to_loss_record(Json& record) const {
  if (const ElectraStep* e = step_->electra()) {
    record["generator_loss"] = e->last_losses().generator;
    record["discriminator_loss"] = e->last_losses().discriminator;
    record["replaced_fraction"] = e->last_losses().replaced_fraction;
  }
}

// The held-out masked-LM figures (ELECTRA: the generator's, and the discriminator's on its samples).
MlmEval PretrainObjective::held_out(ReviewAttention mode, RtdEval* rtd) {
  const TrainOptions& t = p_->o.train;
  if (!p_->electra())
    return evaluate_mlm(*p_->model, p_->heldout, mode, p_->masking, t.seed, t.per_device_eval_batch_size);
  step_->share_embeddings();
  return evaluate_mlm(*p_->generator, p_->heldout, mode, p_->masking, t.seed, t.per_device_eval_batch_size,
                      p_->model.get(), rtd);
}

// Logged and shown; no metric picks a best checkpoint (pretraining keeps the last model).
std::optional<double> PretrainObjective::evaluate(TrainingLoop& loop) {
  const auto t0 = Clock::now();
  RtdEval rtd;
  const MlmEval ev = held_out(p_->o.attention, &rtd);
  Json record{{"eval_loss", ev.loss}, {"eval_mlm_accuracy", ev.accuracy}, {"eval_selected_tokens", ev.selected_tokens}};
  char line[300];
  int n = std::snprintf(line, sizeof line, "step %lld: held-out %sMLM loss %.4f, accuracy %.4f (%lld masked tokens)",
                        static_cast<long long>(p_->state.global_step), p_->electra() ? "generator " : "", ev.loss,
                        ev.accuracy, static_cast<long long>(ev.selected_tokens));
  if (ev.nsp_pairs > 0) {
    record.update({{"eval_nsp_loss", ev.nsp_loss}, {"eval_nsp_accuracy", ev.nsp_accuracy}});
    n += std::snprintf(line + n, sizeof line - n, "; next-sentence loss %.4f, accuracy %.4f (%lld pairs)",
                       ev.nsp_loss, ev.nsp_accuracy, static_cast<long long>(ev.nsp_pairs));
  }
  if (p_->electra()) {
    record.update({{"eval_rtd_loss", rtd.loss}, {"eval_rtd_accuracy", rtd.accuracy},
                   {"eval_replaced_fraction", rtd.replaced_fraction}});
    std::snprintf(line + n, sizeof line - n, "; discriminator loss %.4f, accuracy %.4f (%.1f %% of tokens replaced)",
                  rtd.loss, rtd.accuracy, 100 * rtd.replaced_fraction);
  }
  record["eval_runtime"] = seconds_since(t0);
  loop.log_record(std::move(record));
  loop.progress().message(line);
  return std::nullopt;
}

// ELECTRA's checkpoints carry the generator beside the discriminator (model.safetensors).
void PretrainObjective::write_checkpoint_files(const fs::path& tmp) {
  if (!p_->electra()) return;
  io::write_safetensors(tmp / kGeneratorWeights, p_->generator->state_dict());
  io::write_safetensors(tmp / kGeneratorOptimizer, p_->generator_optimizer->state_dict(), {{"format", "bertune-adamw"}});
}

// The final model: its held-out MLM figures under both attention modes (the run's own one is
// the result; the other tells how much a model leans on, or copes without, its neighbours),
// then DIR/final/.
void PretrainObjective::finish(TrainingLoop& loop) {
  const PreparedPretrain& p = *p_;
  const TrainOptions& t = p.o.train;
  if (p.steps_without_masks > 0)
    std::fprintf(console(stderr), "warning: %lld optimizer step%s had no token selected for prediction (logged as loss 0)\n",
                 static_cast<long long>(p.steps_without_masks), p.steps_without_masks == 1 ? "" : "s");
  if (p.heldout.size() > 0) {
    Json record;
    // Next-sentence labels belong to each pair's own attention sequence: within only.
    std::vector<ReviewAttention> modes = {ReviewAttention::Across, ReviewAttention::Within};
    if (p.o.objective == Objective::MaskedLMNextSentence) modes = {ReviewAttention::Within};
    for (ReviewAttention mode : modes) {
      RtdEval rtd;
      const MlmEval ev = held_out(mode, &rtd);
      if (p.electra()) {
        record[std::string("final_eval_") + review_attention_name(mode) + "_rtd_accuracy"] = rtd.accuracy;
        std::fprintf(out_, "Held-out discriminator (attention %s reviews): loss %.4f, accuracy %.4f over %lld tokens, "
                     "%.1f %% replaced\n",
                     review_attention_name(mode), rtd.loss, rtd.accuracy, static_cast<long long>(rtd.tokens),
                     100 * rtd.replaced_fraction);
      }
      if (mode == p.o.attention) result_.final_eval = ev;
      const std::string key = std::string("final_eval_") + review_attention_name(mode);
      record[key + "_loss"] = ev.loss;
      record[key + "_mlm_accuracy"] = ev.accuracy;
      std::fprintf(out_, "Held-out MLM (%zu %s, attention %s reviews%s): loss %.4f, accuracy %.4f over %lld "
                   "masked tokens\n",
                   p.heldout_review_count, t.text_pair_column.empty() ? "reviews" : "pairs",
                   review_attention_name(mode), mode == p.o.attention ? ", as trained" : "",
                   ev.loss, ev.accuracy, static_cast<long long>(ev.selected_tokens));
      if (ev.nsp_pairs > 0) {
        record[key + "_nsp_loss"] = ev.nsp_loss;
        record[key + "_nsp_accuracy"] = ev.nsp_accuracy;
        std::fprintf(out_, "Held-out next-sentence prediction (%lld pairs, half of them random): loss %.4f, "
                     "accuracy %.4f\n", static_cast<long long>(ev.nsp_pairs), ev.nsp_loss, ev.nsp_accuracy);
      }
    }
    loop.log_record(record);
  }
  const fs::path final_dir = fs::path(t.output_dir) / "final";
  if (world().writer()) {
    save_final(final_dir);
    p.state.save(fs::path(t.output_dir) / "trainer_state.json");
  } else {
    result_.final_model_dir = final_dir;  // masked LM: ELECTRA pretraining runs in one process
  }
}

// DIR/final/: the BertForMaskedLM, or ELECTRA's discriminator/ (ElectraForPreTraining, the model
// that is kept) and generator/ (ElectraForMaskedLM), each with the embeddings and the tokenizer.
void PretrainObjective::save_final(const fs::path& final_dir) {
  const PreparedPretrain& p = *p_;
  const std::vector<fs::path> tokenizer = text::tokenizer_files(p.tokenizer_dir);
  if (!p.electra()) {
    result_.final_model_dir = final_dir;
    model::save_pretrained(final_dir, p.config, p.model->state_dict(), tokenizer);
    std::fprintf(out_, "Saved the pretrained model (%s) to %s\n", p.config.architectures.at(0).c_str(),
                 final_dir.c_str());
    return;
  }
  step_->share_embeddings();  // the generator's copy := the trained one
  const model::ElectraCheckpoint d = model::electra_discriminator_checkpoint(p.config, p.model->state_dict());
  const model::ElectraCheckpoint g = model::electra_generator_checkpoint(p.generator_config, p.generator->state_dict());
  io::write_directory_atomic(final_dir, [&](const fs::path& staging) {  // both or neither
    model::save_pretrained(staging / "discriminator", d.config, d.refs(), tokenizer);
    model::save_pretrained(staging / "generator", g.config, g.refs(), tokenizer, io::DType::F32, g.buffers());
  });
  result_.final_model_dir = final_dir / "discriminator";
  std::fprintf(out_, "Saved the pretrained discriminator (ElectraForPreTraining) to %s and the generator "
               "(ElectraForMaskedLM) to %s\n", result_.final_model_dir.c_str(), (final_dir / "generator").c_str());
}

std::string PretrainObjective::description() const {
  const PretrainOptions& o = p_->o;
  const model::BertConfig& c = p_->config;
  char text[200];
  std::snprintf(text, sizeof text, "L%d/H%d, vocab %d, %d x %d sequences of <= %d per step, attention %s",
                c.num_hidden_layers, c.hidden_size, c.vocab_size, o.train.per_device_train_batch_size,
                o.gradient_accumulation_steps, o.train.max_length, review_attention_name(o.attention));
  std::string d = text;
  if (p_->electra())
    d += ", ELECTRA (generator L" + std::to_string(p_->generator_config.num_hidden_layers) + "/I" +
         std::to_string(p_->generator_config.intermediate_size) + ")";
  return d;
}

PretrainResult run_pretraining(const PretrainOptions& options, std::FILE* out) {
  PretrainObjective objective(options, out);
  PretrainResult& result = objective.result();
  result.summary = TrainingLoop(objective, out).run();
  result.state = objective.parts().state;
  return std::move(result);
}

}  // namespace bertune::train
