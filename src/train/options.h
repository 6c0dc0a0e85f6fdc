#pragma once
// TrainingArguments, bertune's way: the same names (flags spelled with dashes, config-file
// keys with underscores), the same defaults as transformers 4.30, and the same consistency
// rules — checked before anything is written, with errors that name the flag or key.
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <string>

#include <functional>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/memory.h"
#include "infer/batching.h"
#include "train/optimizer.h"

namespace bertune::train {

enum class Strategy { No, Steps, Epoch };
Strategy parse_strategy(const std::string& name);  // no | steps | epoch
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
  std::string text_pair_column;  // non-empty: sentence pairs, the second text in this column
  std::string label_column = "label";
  int num_labels = 0;  // > 0: HF's num_labels, LABEL_0.. when config.json names another number; 0: config.json's
  std::string problem_type;  // "" -> config.json's, else HF's rule (model/config.h ProblemType)
  // sequence-classification (a label per text) | token-classification (a tag per word: NER
  // data of data/tagged.h, BertForTokenClassification)
  std::string task = "sequence-classification";
  bool token_classification() const { return task == "token-classification"; }
  model::Task model_task() const {
    return token_classification() ? model::Task::TokenClassification : model::Task::SequenceClassification;
  }
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
  AdamWVariant optim = AdamWVariant::HF;  // transformers 4.30's default (see train/optimizer.h)
  int64_t warmup_steps = 0;
  double warmup_ratio = 0.0;
  Schedule lr_scheduler_type = Schedule::Linear;
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
  infer::Padding padding = infer::Padding::Packed;
  bool group_by_length = false;
  // > 0: training batches are built to this many real tokens (packed padding) instead of
  // per_device_train_batch_size samples; 0: sample-count batches (HF's, the default).
  int64_t max_tokens_per_batch = 0;
  double hidden_dropout = -1.0;     // < 0: from the model config
  double attention_dropout = -1.0;
  // from_pretrained(ignore_mismatched_sizes=True): --model's head tensors of another shape
  // (another label count) are initialised afresh instead of refused.
  bool ignore_mismatched_sizes = false;
  std::string resume_from_checkpoint;  // a checkpoint dir, or "last"/"true" for the newest
  int threads = 0;                     // 0: all cores
  // Data-parallel training (mpirun, train/distributed.h): sum the layers' gradients in buckets of
  // at least this many MiB, each as soon as the backward has finished it (HF's name); 0: the
  // whole gradient once, after the backward.
  double ddp_bucket_cap_mb = 0;
  // How the gradients are summed across processes (HF's ddp_backend): "mpi" (host memory,
  // --device cpu), "nccl" (GPU memory, --device cuda; also a communicator of one without
  // mpirun); empty: nccl for --device cuda, mpi on the CPU. train/distributed.h.
  std::string ddp_backend;
  // Seconds a collective (NCCL's on the GPU, a blocking MPI call) may go unfinished before the
  // ranks end (HF's ddp_timeout).
  double ddp_timeout = 1800;
  kernels::Device device = kernels::Device::CPU;  // where the model computes (--device cpu|cuda)
  // What the GEMMs multiply in (--precision fp32|tf32|bf16); unset: the device's default
  // (bf16 on cuda, fp32 on cpu), which validate() fills in.
  std::optional<kernels::Precision> precision;
  std::string preset;                  // name of the preset the options came from, if any
  // Not an option (no flag, no key): with --overwrite-output-dir, delete another run's outputs
  // instead of moving them to previous-run-<id>/ (compare's own mode directories).
  bool discard_previous_run = false;
  // Not options either: datasets handed over in memory (the Python Trainer's), JSONL text read
  // in place of the file train_file / eval_file / test_file then only names in messages
  // ("train_dataset:7: ..." for its 7th row). Unset: the file is read.
  std::optional<std::string> train_rows, eval_rows, test_rows;

  // "eval_accuracy" style key of the metric that picks the best model.
  std::string metric_key() const;
  bool higher_is_better() const;
  nlohmann::json to_json() const;  // every option, under its config-file key
};

// The options table: one entry per TrainOptions field, under its config-file key. It drives
// the config file, training_args.json, and (in src/cli) the command-line flags and their help.
struct OptionField {
  std::string key;        // config-file key; the flag is --key-with-dashes
  bool is_flag = false;   // a boolean: --flag alone means true
  std::string help;
  std::string type_name;  // INT, FLOAT, TEXT or the choices
  std::function<void(TrainOptions&, const nlohmann::json&, const std::string& where)> set;
  std::function<nlohmann::json(const TrainOptions&)> get;
};
const std::vector<OptionField>& train_option_fields();
const OptionField* find_train_option(const std::string& key);  // accepts HF's older aliases
std::string option_flag(const std::string& key);               // "learning_rate" -> "--learning-rate"

// Sets the options of a JSON object of config keys on `o` (no validation). `source` names the
// file or preset in errors.
void apply_options_json(TrainOptions& o, const nlohmann::json& j, const std::string& source);

// The same from a JSON object alone (tests, presets): keys as in the config file.
TrainOptions train_options_from_json(const nlohmann::json& j, const std::string& source = "options");

// The optimizer the options describe (adam_beta1/2, adam_epsilon, weight_decay, optim).
AdamWOptions adamw_options(const TrainOptions& o);

// The precision --precision asks for on `device`: unset gives the device's default; tf32 or
// bf16 with --device cpu is an Error naming --precision. validate() and eval/predict use it.
kernels::Precision resolve_precision(kernels::Device device, std::optional<kernels::Precision> asked);
// set_precision for the run's device and precision (resolved: the device's default when unset).
void set_compute_precision(const TrainOptions& o);
// The banner's line "  Compute = CPU, GEMMs in bf16".
void print_compute(std::FILE* out, const TrainOptions& o);

// HF's TrainingArguments.__post_init__ consistency rules plus ours; fills derived defaults
// (eval_steps, metric_for_best_model, greater_is_better).
void validate(TrainOptions& o);

// The most optimization steps a run may plan: 10^12 (decades at a millisecond a step). More
// is a mistyped flag, and the step counters and the schedule's arithmetic would overflow.
inline constexpr int64_t kMaxTrainSteps = 1'000'000'000'000;

// The run's length as Trainer computes it: --max-steps, else ceil(epochs x steps per epoch)
// (fractional epochs included); the epochs it spans; the warmup steps (--warmup-steps, else
// ceil(ratio x steps)). Error naming the flag and the limit beyond kMaxTrainSteps.
struct RunLength {
  int64_t max_steps = 0;
  double num_train_epochs = 0;
  int64_t warmup_steps = 0;
};
RunLength plan_run_length(const TrainOptions& o, int64_t steps_per_epoch);
int64_t warmup_steps(const TrainOptions& o, int64_t max_steps);  // --warmup-steps, else ceil(ratio x steps)

}  // namespace bertune::train
