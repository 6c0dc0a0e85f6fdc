// bertune pretrain: masked-LM pretraining on plain text (train/pretrainer.h).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "cli/pretrain_flags.h"
#include "train/pretrainer.h"
#include "util/error.h"

namespace bertune::cli {

namespace {

// The TrainingArguments that mean something for pretraining, bound from the options table.
const std::vector<std::string> kPretrainTrainKeys = {
    "model", "model_config", "tokenizer", "train_file", "max_length", "data_seed", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "per_device_eval_batch_size", "learning_rate", "weight_decay", "adam_beta1",
    "adam_beta2", "adam_epsilon", "optim", "warmup_steps", "warmup_ratio", "lr_scheduler_type", "max_grad_norm",
    "seed", "eval_strategy", "eval_steps", "save_strategy", "save_steps", "logging_steps", "output_dir",
    "overwrite_output_dir", "save_total_limit", "hidden_dropout", "attention_dropout", "resume_from_checkpoint",
    "threads", "ddp_bucket_cap_mb", "ddp_backend", "ddp_timeout", "device", "precision", "text_column", "text_pair_column"};

}  // namespace

void add_pretrain_flags(CLI::App* cmd, PretrainFlags& flags) {
  add_train_flags(cmd, flags.train, /*with_preset=*/false, kPretrainTrainKeys);
  // The same options, read differently here.
  flags.train.cli.at("train_file")->description(
      "plain text, one review per line (.gz read transparently); with --text-pair-column sentence pairs in a "
      "TSV/CSV/JSONL file (format by extension)");
  flags.train.cli.at("text_column")->description("sentence pairs: the column of the first text");
  flags.train.cli.at("text_pair_column")->description(
      "pretrain on sentence pairs: the column of the second text; each pair is [CLS] a [SEP] b [SEP] with token "
      "types 0/1, masked over both texts, as `train --text-pair-column` encodes it");
  flags.train.cli.at("max_length")->description("longest packed training sequence, [CLS] and [SEP]s included");
  flags.train.cli.at("model")->description(
      "continue pretraining this BERT model directory (its encoder, and its masked-LM head when it has one)");
  flags.train.cli.at("model_config")->description("config.json of a randomly initialised model");
  flags.train.cli.at("tokenizer")->description("tokenizer directory (vocab.txt); default: --model's, else klue/bert-base's");
  flags.train.cli.at("per_device_train_batch_size")->description("packed sequences per micro-batch");
  flags.train.cli.at("per_device_eval_batch_size")->description("packed sequences per held-out evaluation batch");
  flags.train.cli.at("eval_strategy")->description("when to compute the held-out MLM loss/accuracy: no|steps|epoch");
  train::PretrainOptions& o = flags.options;
  cmd->add_option("--mlm-probability", o.mlm_probability, "share of tokens selected for prediction")
      ->capture_default_str();
  cmd->add_flag("--whole-word-mask", o.whole_word_mask, "mask whole words ('##' pieces with their word)");
  cmd->add_option("--review-attention", flags.attention,
                  "across: a packed sequence is one attention sequence; within: each review attends to itself only")
      ->capture_default_str();
  cmd->add_option("--validation-reviews", o.validation_reviews,
                  "reviews held out (never trained on) for the held-out MLM loss/accuracy")
      ->capture_default_str();
  cmd->add_option("--train-reviews", o.train_reviews, "train on the first N remaining reviews only (-1: all)")
      ->capture_default_str();
  cmd->add_option("--gradient-accumulation-steps", o.gradient_accumulation_steps,
                  "micro-batches per optimizer step")
      ->capture_default_str();
  cmd->add_option("--objective", flags.objective,
                  "mlm: BERT's masked LM; mlm-nsp: masked LM + next-sentence prediction on the pooled [CLS] "
                  "(BertForPreTraining; sentence pairs, --review-attention within, half of the second texts "
                  "replaced by another pair's); electra: replaced-token detection with a small generator sharing "
                  "the embeddings (the discriminator is kept)")
      ->capture_default_str();
  cmd->add_option("--generator-layers", o.generator_layers,
                  "ELECTRA generator's layers (-1: a quarter of the model's, at least 1)")
      ->capture_default_str();
  cmd->add_option("--generator-intermediate-size", o.generator_intermediate_size,
                  "ELECTRA generator's feed-forward size (-1: the model's)")
      ->capture_default_str();
  cmd->add_option("--discriminator-weight", o.discriminator_weight,
                  "ELECTRA's lambda: loss = generator MLM + lambda x discriminator")
      ->capture_default_str();
}

train::PretrainOptions resolve_pretrain_flags(const PretrainFlags& flags, const nlohmann::json& base) {
  train::PretrainOptions o = flags.options;
  o.train = resolve_train_flags(flags.train, base);
  try {
    o.attention = train::parse_review_attention(flags.attention);
  } catch (const Error& e) {
    throw Error(std::string("--review-attention: ") + e.what());
  }
  try {
    o.objective = train::parse_objective(flags.objective);
  } catch (const Error& e) {
    throw Error(std::string("--objective: ") + e.what());
  }
  return o;
}

void add_pretrain_command(CLI::App& app) {
  auto flags = std::make_shared<PretrainFlags>();
  CLI::App* cmd = app.add_subcommand("pretrain",
                                     "masked-LM pretraining of a BERT on plain text (one review per line, .gz ok) or sentence "
                                     "pairs (--text-pair-column), from "
                                     "random weights (--model-config) or continued from a model (--model); the result in "
                                     "OUTPUT_DIR/final/ as a BertForMaskedLM directory (--objective mlm-nsp: "
                                     "BertForPreTraining; --objective electra: "
                                     "final/discriminator/ and final/generator/, ElectraForPreTraining and "
                                     "ElectraForMaskedLM)");
  add_pretrain_flags(cmd, *flags);
  cmd->callback([flags] { train::run_pretraining(resolve_pretrain_flags(*flags), stdout); });
}

}  // namespace bertune::cli

