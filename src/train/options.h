#pragma once
// TrainingArguments, bertune's way: the same names (flags spelled with dashes, config-file
// keys with underscores), the same defaults as transformers 4.30, and the same consistency
// rules — checked before anything is written, with errors that name the flag or key.
#include <cstdint>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "train/sampler.h"

namespace bertune::train {

enum class Strategy { No, Steps, Epoch };
const char* strategy_name(Strategy s);

struct TrainOptions {
  // model and data
  std::string model;           // HF directory (config.json + weights); head created when absent
  std::string model_config;    // config.json for random initialisation
  std::string tokenizer;       // default: --model, else the klue vocab in shared/
  std::string train_file;      // default: NSMC train
  std::string eval_file;       // evaluated each eval step (unless validation_split carves one)
  std::string test_file;       // evaluated once at the end with the final (best) model
  std::string text_column = "document";
  std::string label_column = "label";
  int max_length = 128;
  int64_t train_samples = -1;  // shuffle(seed=data_seed).select(range(N)); -1: all
  int64_t eval_samples = -1;
  int64_t validation_split = 0;  // carve N examples off the training data as the eval set
  uint64_t data_seed = 42;
  // optimisation
  double num_train_epochs = 3.0;
  int64_t max_steps = -1;  // > 0 overrides num_train_epochs
  int per_device_train_batch_size = 8;
  int per_device_eval_batch_size = 8;
  double learning_rate = 5e-5;
  double weight_decay = 0.0;
  double adam_beta1 = 0.9, adam_beta2 = 0.999, adam_epsilon = 1e-8;
  std::string optim = "adamw_hf";  // transformers 4.30's default; or adamw_torch
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  std::string lr_scheduler_type = "linear";
  double max_grad_norm = 1.0;
  uint64_t seed = 42;
  // evaluation, saving, logging
  Strategy eval_strategy = Strategy::No;
  Strategy save_strategy = Strategy::Steps;
  int64_t eval_steps = -1;  // -1: logging_steps (HF)
  int64_t save_steps = 500;
  int64_t logging_steps = 500;
  std::string output_dir;
  bool overwrite_output_dir = false;
  int save_total_limit = -1;  // <= 0: keep all
  bool load_best_model_at_end = false;
  std::string metric_for_best_model;     // "" -> "loss" when load_best_model_at_end (HF)
  std::optional<bool> greater_is_better;  // unset -> not metric.endswith("loss")
  int early_stopping_patience = 0;        // 0: no early stopping
  double early_stopping_threshold = 0.0;
  // batching and model overrides
  Padding padding = Padding::Packed;
  bool group_by_length = false;
  double hidden_dropout = -1.0;     // < 0: from the model config
  double attention_dropout = -1.0;
  std::string resume_from_checkpoint;  // a checkpoint dir, or "last"/"true" for the newest
  int threads = 0;                     // 0: all cores
  std::string preset;                  // name of the preset the options came from, if any

  // "eval_accuracy" style key of the metric that picks the best model.
  std::string metric_key() const;
  bool higher_is_better() const;
  nlohmann::json to_json() const;  // every option, under its config-file key
};

// The raw strings of the train options given on a command line.
struct RawOptions {
  std::map<std::string, std::string> values;  // config key -> string as typed
  std::map<std::string, CLI::Option*> cli;    // to ask whether a flag was given
  std::string config_file;
};

// Registers every TrainOptions field on `cmd` as --flag-name (plus --config FILE).
void add_train_option_flags(CLI::App* cmd, RawOptions& raw);

// Config file (JSON object of config keys), then defaults from `base` (e.g. a preset),
// overridden by the flags actually given; validated. Throws Error naming the flag or key.
TrainOptions resolve_train_options(const RawOptions& raw, const nlohmann::json& base = {});

// The same from a JSON object alone (tests, presets): keys as in the config file.
TrainOptions train_options_from_json(const nlohmann::json& j, const std::string& source = "options");

// HF's TrainingArguments.__post_init__ consistency rules plus ours; fills derived defaults
// (eval_steps, metric_for_best_model, greater_is_better).
void validate(TrainOptions& o);

}  // namespace bertune::train
