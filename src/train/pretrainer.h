#pragma once
// `bertune pretrain`: masked-language-model pretraining of a BertForMaskedLM on plain text
// (one review per line), the Hugging Face way (run_mlm.py with DataCollatorForLanguageModeling
// or ...ForWholeWordMask) over the native engine.
//
// It shares with `bertune train` everything below the loop: the options table
// (TrainingArguments), TrainStep (forward, backward, clip + AdamW, non-finite guard), the lr
// schedule, the sampler's per-epoch order, atomic checkpoints with exact resume
// (train/checkpoint.h), the JSONL log and the progress bar. The loop itself is its own: no
// classification metrics, no best-model selection; a held-out MLM loss/accuracy instead.
#include <cstdio>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/mlm_data.h"
#include "train/options.h"
#include "train/report.h"
#include "train/state.h"

namespace bertune::train {

// What the model learns from: BERT's masked LM, or ELECTRA's replaced-token detection with a
// small generator (train/electra.h); the kept model is then the discriminator.
enum class Objective { MaskedLM, Electra };
Objective parse_objective(const std::string& name);  // mlm | electra
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
  std::filesystem::path final_model_dir;
  std::optional<MlmEval> final_eval;
};

// Reads and checks every input before the first write, then trains; DIR/final/ is a
// BertForMaskedLM directory (config, model.safetensors, tokenizer files).
PretrainResult run_pretraining(const PretrainOptions& options, std::FILE* out = stdout);

// `bertune bench pretrain`: the pretraining step — the run's own masked batches (epoch 0, in
// training order, masking included) through TrainStep — timed, writing nothing. Each
// repetition runs `warmup` untimed steps, then `steps` timed ones.
struct PretrainBench {
  std::vector<double> real_tokens_per_s;  // one per repetition
  std::vector<double> seconds;
  int64_t timed_tokens = 0;  // real tokens of one repetition's timed steps
  std::string description;   // the model and batch, for the report
};
PretrainBench bench_pretraining(const PretrainOptions& options, int warmup, int steps, int repeat);

}  // namespace bertune::train
