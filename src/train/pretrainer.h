#pragma once
// `bertune pretrain`: masked-language-model pretraining of a BertForMaskedLM on plain text
// (one review per line), the Hugging Face way (run_mlm.py with DataCollatorForLanguageModeling
// or ...ForWholeWordMask) over the native engine.
//
// It shares with `bertune train` the training loop (train/loop.h) and everything below it: the
// options table (TrainingArguments), TrainStep (forward, backward, clip + AdamW, non-finite
// guard), the lr schedule, the sampler's per-epoch order, atomic checkpoints with exact resume
// (train/checkpoint.h), the JSONL log and the progress bar. No classification metrics, no
// best-model selection: a held-out MLM loss/accuracy instead.
#include <cstdio>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/loop.h"
#include "train/mlm_data.h"
#include "train/options.h"
#include "train/report.h"
#include "train/state.h"

namespace bertune::train {

// What the model learns from: BERT's masked LM, BERT's masked LM + next-sentence prediction
// (BertForPreTraining, on sentence pairs), or ELECTRA's replaced-token detection with a small
// generator (train/electra.h); the kept model is then the discriminator.
enum class Objective { MaskedLM, MaskedLMNextSentence, Electra };
Objective parse_objective(const std::string& name);  // mlm | mlm-nsp | electra
const char* objective_name(Objective o);

struct PretrainOptions {
  // The TrainingArguments pretraining uses: model_config, tokenizer, train_file, max_length,
  // epochs/steps, batch sizes, optimizer, schedule, seed, data_seed, eval/save/logging
  // strategy and steps, output_dir, save_total_limit, resume_from_checkpoint, threads.
  TrainOptions train;
  double mlm_probability = 0.15;
  bool whole_word_mask = false;
  ReviewAttention attention = ReviewAttention::Across;
  int64_t validation_reviews = 1000;  // held out (seeded by data_seed), never trained on
  int64_t train_reviews = -1;         // the first N remaining reviews only; -1: all
  int gradient_accumulation_steps = 1;
  Objective objective = Objective::MaskedLM;
  // ELECTRA's generator: the discriminator's embeddings (shared) and hidden size, fewer layers.
  int generator_layers = -1;             // -1: a quarter of the discriminator's, at least 1
  int generator_intermediate_size = -1;  // -1: the discriminator's
  double discriminator_weight = 50;      // ELECTRA's lambda: loss = MLM + lambda x RTD

  nlohmann::json to_json() const;  // the pretraining options (pretrain_args.json)
};

// Checks what TrainOptions' validate() does not; throws Error naming the flag.
void validate(PretrainOptions& o);

// Held-out masked-LM loss (mean over selected tokens) and accuracy (argmax == label there).
struct MlmEval {
  double loss = 0;
  double accuracy = 0;
  int64_t selected_tokens = 0;
  // --objective mlm-nsp: the next-sentence loss (mean over pairs), accuracy, pairs scored.
  double nsp_loss = 0, nsp_accuracy = 0;
  int64_t nsp_pairs = 0;
};
// Masks are drawn for epoch -1: fixed, so every evaluation of a run sees the same ones.
// With a discriminator (ELECTRA), the model is the generator, and the discriminator is scored
// on the generator's samples too (fixed draws): its loss and accuracy over every real token.
struct RtdEval {
  double loss = 0, accuracy = 0, replaced_fraction = 0;
  int64_t tokens = 0;
};
MlmEval evaluate_mlm(model::BertModel& model, const PackedCorpus& corpus, ReviewAttention attention,
                     const MaskingOptions& masking, uint64_t seed, int batch_size,
                     model::BertModel* discriminator = nullptr, RtdEval* rtd = nullptr);

struct PretrainResult {
  TrainSummary summary;
  TrainerState state;
  std::filesystem::path final_model_dir;  // ELECTRA: DIR/final/discriminator
  std::optional<MlmEval> final_eval;
};

struct PreparedPretrain;
class PretrainStep;

// Masked-LM or ELECTRA pretraining over the training loop (train/loop.h): packed, masked
// batches (gradient accumulation: micro-batches of one step), TrainStep or ElectraStep, the
// held-out MLM (and discriminator) figures, ELECTRA's generator in every checkpoint, and at the
// end the held-out figures under both attention modes and DIR/final/.
class PretrainObjective : public TrainingObjective {
 public:
  // Reads and checks every input (validate() included) before the first write.
  PretrainObjective(const PretrainOptions& options, std::FILE* out);
  ~PretrainObjective() override;

  LoopParts parts() override;
  const char* what() const override { return "pretraining"; }
  std::vector<std::vector<size_t>> epoch_steps(int64_t epoch) const override;
  std::vector<model::Batch> step_batches(const std::vector<size_t>& step, int64_t epoch) const override;
  void launch(std::span<const model::Batch> micro_batches, int64_t step) override;
  const std::vector<StepOutcome>& collect() override;
  size_t pending() const override;
  const LrSchedule& schedule() const override;
  void start(TrainingLoop& loop) override;
  void add_to_loss_record(nlohmann::json& record) const override;
  bool can_evaluate() const override;
  std::optional<double> evaluate(TrainingLoop& loop) override;
  void write_checkpoint_files(const std::filesystem::path& tmp_dir) override;
  void finish(TrainingLoop& loop) override;

  std::string description() const;  // the model and the batch (`bench pretrain`'s report)
  const model::BertConfig& config() const;
  PretrainResult& result() { return result_; }

 private:
  MlmEval held_out(ReviewAttention mode, RtdEval* rtd);
  void save_final(const std::filesystem::path& final_dir);

  std::unique_ptr<PreparedPretrain> p_;
  std::unique_ptr<PretrainStep> step_;
  std::FILE* out_;
  PretrainResult result_;
};

// Reads and checks every input before the first write, then trains; DIR/final/ is a
// BertForMaskedLM directory (config, model.safetensors, tokenizer files), or with ELECTRA
// DIR/final/discriminator/ (ElectraForPreTraining) and DIR/final/generator/ (ElectraForMaskedLM).
PretrainResult run_pretraining(const PretrainOptions& options, std::FILE* out = stdout);

}  // namespace bertune::train
