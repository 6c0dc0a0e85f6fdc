#include "train/options.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <functional>
#include <limits>
#include <utility>
#include <vector>

#include "kernels/collectives.h"
#include "model/config.h"
#include "util/enum_names.h"
#include "util/error.h"
#include "util/threads.h"

namespace bertune::train {
namespace {

using Json = nlohmann::json;

// Conversions from a JSON value (typed in a config file, or a string as typed on the command
// line) to each field type; `where` names the flag or key in errors.
std::string describe(const Json& v) { return v.is_string() ? "'" + v.get<std::string>() + "'" : v.dump(); }

void convert(const Json& v, std::string& out, const std::string& where) {
  if (!v.is_string()) throw Error(where + ": expected a string, got " + v.dump());
  out = v.get<std::string>();
}

template <typename Int>
  requires std::is_integral_v<Int>
void convert(const Json& v, Int& out, const std::string& where) {
  // nlohmann's get<Int>() wraps 2147483648 to a negative int: check the range first.
  auto out_of_range = [&] {
    return Error(where + ": " + describe(v) + " is out of range [" + std::to_string(std::numeric_limits<Int>::min()) +
                 ", " + std::to_string(std::numeric_limits<Int>::max()) + "]");
  };
  if (v.is_number_unsigned()) {
    if (v.get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<Int>::max())) throw out_of_range();
    out = static_cast<Int>(v.get<uint64_t>());
    return;
  }
  if (v.is_number_integer()) {
    if constexpr (std::is_unsigned_v<Int>)
      if (v.get<int64_t>() < 0) throw Error(where + ": " + v.dump() + " is negative");
    if (!std::in_range<Int>(v.get<int64_t>())) throw out_of_range();
    out = static_cast<Int>(v.get<int64_t>());
    return;
  }
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    Int x{};
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), x);
    if (ec == std::errc() && p == s.data() + s.size() && !s.empty()) { out = x; return; }
    if (ec == std::errc::result_out_of_range && p == s.data() + s.size()) throw out_of_range();
  }
  throw Error(where + ": " + describe(v) + " is not an integer");
}

void convert(const Json& v, double& out, const std::string& where) {
  if (v.is_number()) { out = v.get<double>(); return; }
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    try {
      size_t used = 0;
      double x = std::stod(s, &used);
      if (used == s.size() && std::isfinite(x)) { out = x; return; }
    } catch (const std::exception&) {
    }
  }
  throw Error(where + ": " + describe(v) + " is not a number");
}

void convert(const Json& v, bool& out, const std::string& where) {
  if (v.is_boolean()) { out = v.get<bool>(); return; }
  if (v.is_string()) {
    const std::string s = v.get<std::string>();
    if (s == "true" || s == "1" || s == "yes") { out = true; return; }
    if (s == "false" || s == "0" || s == "no") { out = false; return; }
  }
  throw Error(where + ": " + describe(v) + " is not true|false");
}

void convert(const Json& v, std::optional<bool>& out, const std::string& where) {
  if (v.is_null()) { out.reset(); return; }
  bool b = false;
  convert(v, b, where);
  out = b;
}

// An enum under its HF spelling; `parse` names the choices when the text is none of them.
template <typename E>
void convert_choice(const Json& v, E& out, const std::string& where, E (*parse)(const std::string&)) {
  try {
    out = parse(v.is_string() ? v.get<std::string>() : v.dump());
  } catch (const Error& e) {
    throw Error(where + ": " + e.what());
  }
}
void convert(const Json& v, Strategy& out, const std::string& w) { convert_choice(v, out, w, parse_strategy); }
void convert(const Json& v, infer::Padding& out, const std::string& w) { convert_choice(v, out, w, infer::parse_padding); }
void convert(const Json& v, AdamWVariant& out, const std::string& w) { convert_choice(v, out, w, parse_adamw_variant); }
void convert(const Json& v, Schedule& out, const std::string& w) { convert_choice(v, out, w, parse_schedule); }
void convert(const Json& v, kernels::Device& out, const std::string& w) { convert_choice(v, out, w, kernels::parse_device); }
void convert(const Json& v, std::optional<kernels::Precision>& out, const std::string& w) {
  if (v.is_null()) { out.reset(); return; }
  kernels::Precision p{};
  convert_choice(v, p, w, kernels::parse_precision);
  out = p;
}

Json to_json_value(const std::string& s) { return s; }
template <typename T> requires std::is_arithmetic_v<T> Json to_json_value(T x) { return x; }
Json to_json_value(const std::optional<bool>& b) { return b ? Json(*b) : Json(nullptr); }
Json to_json_value(Strategy s) { return strategy_name(s); }
Json to_json_value(infer::Padding p) { return infer::padding_name(p); }
Json to_json_value(AdamWVariant v) { return adamw_variant_name(v); }
Json to_json_value(Schedule s) { return schedule_name(s); }
Json to_json_value(kernels::Device d) { return kernels::device_flag_name(d); }
Json to_json_value(const std::optional<kernels::Precision>& p) { return p ? Json(kernels::precision_name(*p)) : Json(nullptr); }

template <typename T>
OptionField field(const char* key, T TrainOptions::*member, const char* help) {
  constexpr bool is_flag = std::is_same_v<T, bool> || std::is_same_v<T, std::optional<bool>>;
  std::string type_name = std::is_same_v<T, Strategy>        ? "no|steps|epoch"
                          : std::is_same_v<T, infer::Padding> ? "max_length|longest|packed"
                          : std::is_same_v<T, AdamWVariant>  ? "adamw_hf|adamw_torch"
                          : std::is_same_v<T, Schedule>      ? "linear|cosine|constant|constant_with_warmup"
                          : std::is_same_v<T, kernels::Device> ? "cpu|cuda"
                          : std::is_same_v<T, std::optional<kernels::Precision>> ? "fp32|tf32|bf16"
                          : std::is_floating_point_v<T>      ? "FLOAT"
                          : std::is_integral_v<T>            ? "INT"
                                                             : "TEXT";
  return OptionField{key, is_flag, help, type_name,
               [member](TrainOptions& o, const Json& v, const std::string& where) { convert(v, o.*member, where); },
               [member](const TrainOptions& o) { return to_json_value(o.*member); }};
}

}  // namespace

const std::vector<OptionField>& train_option_fields() {
  using O = TrainOptions;
  static const std::vector<OptionField> all = {
      field("model", &O::model, "HF model directory (config.json + model.safetensors or pytorch_model.bin)"),
      field("model_config", &O::model_config, "config.json for a randomly initialised model"),
      field("tokenizer", &O::tokenizer, "tokenizer directory (vocab.txt); default: --model, else klue/bert-base's"),
      field("train_file", &O::train_file, "training data (TSV as NSMC, CSV or JSONL); default: NSMC train"),
      field("eval_file", &O::eval_file, "evaluation data; default: NSMC test"),
      field("test_file", &O::test_file, "evaluated once after training with the final model"),
      field("text_column", &O::text_column, "text column"),
      field("text_pair_column", &O::text_pair_column,
            "column of a sentence pair's second text: [CLS] text [SEP] pair [SEP] (default: single texts)"),
      field("label_column", &O::label_column, "label column"),
      field("num_labels", &O::num_labels,
            "labels of the classification head, as from_pretrained(num_labels=N): config.json's id2label, or "
            "LABEL_0..N-1 where it names another number (default: config.json's)"),
      field("problem_type", &O::problem_type,
            "regression|single_label_classification|multi_label_classification (default: config.json's, else "
            "regression for num_labels 1, single-label otherwise)"),
      field("task", &O::task,
            "sequence-classification|token-classification (a tag per word from CoNLL-style columns or JSONL "
            "{\"tokens\", \"tags\"}; labels: the training file's tags)"),
      field("max_length", &O::max_length, "truncate (and with --padding max_length, pad) to this many tokens"),
      field("train_samples", &O::train_samples, "use N training examples: shuffle(data_seed) then select"),
      field("eval_samples", &O::eval_samples, "use M evaluation examples: shuffle(data_seed) then select"),
      field("validation_split", &O::validation_split, "carve N examples off the training data as the eval set"),
      field("data_seed", &O::data_seed, "seed of the subset shuffles and the validation split"),
      field("num_train_epochs", &O::num_train_epochs, "epochs (may be fractional)"),
      field("max_steps", &O::max_steps, "optimizer steps; > 0 overrides --num-train-epochs"),
      field("per_device_train_batch_size", &O::per_device_train_batch_size, "training batch size"),
      field("per_device_eval_batch_size", &O::per_device_eval_batch_size, "evaluation batch size"),
      field("learning_rate", &O::learning_rate, "peak learning rate of AdamW"),
      field("weight_decay", &O::weight_decay, "decoupled weight decay (not on biases or LayerNorm weights)"),
      field("adam_beta1", &O::adam_beta1, "AdamW beta1"),
      field("adam_beta2", &O::adam_beta2, "AdamW beta2"),
      field("adam_epsilon", &O::adam_epsilon, "AdamW epsilon"),
      field("optim", &O::optim, "adamw_hf (transformers 4.30 default) | adamw_torch"),
      field("warmup_steps", &O::warmup_steps, "linear warmup steps (overrides --warmup-ratio)"),
      field("warmup_ratio", &O::warmup_ratio, "warmup as a fraction of all steps"),
      field("lr_scheduler_type", &O::lr_scheduler_type, "linear|cosine|constant|constant_with_warmup"),
      field("max_grad_norm", &O::max_grad_norm, "global gradient-norm clip (0: none)"),
      field("seed", &O::seed, "seed of initialisation, data order and dropout"),
      field("eval_strategy", &O::eval_strategy, "no|steps|epoch"),
      field("save_strategy", &O::save_strategy, "no|steps|epoch"),
      field("eval_steps", &O::eval_steps, "evaluate every N steps (--eval-strategy steps; default: --logging-steps)"),
      field("save_steps", &O::save_steps, "save every N steps (--save-strategy steps)"),
      field("logging_steps", &O::logging_steps, "log the mean training loss every N steps"),
      field("output_dir", &O::output_dir, "where checkpoints, logs and the final model go"),
      field("overwrite_output_dir", &O::overwrite_output_dir, "allow an output dir that already holds checkpoints"),
      field("save_total_limit", &O::save_total_limit, "keep at most N checkpoints (never deleting the best)"),
      field("load_best_model_at_end", &O::load_best_model_at_end, "finish with the best checkpoint's weights"),
      field("metric_for_best_model", &O::metric_for_best_model,
            "loss (the default), accuracy|f1 (classification), micro_f1 (multi-label), mse|pearson|spearmanr "
            "(regression), precision|recall|f1|accuracy (token classification: entity-level, token accuracy)"),
      field("greater_is_better", &O::greater_is_better, "whether a higher metric is better (default: not a loss or mse)"),
      field("early_stopping_patience", &O::early_stopping_patience, "stop after N evaluations without improvement"),
      field("early_stopping_threshold", &O::early_stopping_threshold, "minimum absolute improvement"),
      field("padding", &O::padding, "max_length|longest|packed"),
      field("group_by_length", &O::group_by_length, "HF LengthGroupedSampler order"),
      field("max_tokens_per_batch", &O::max_tokens_per_batch,
            "build training batches to N real tokens (packed padding) instead of a sample count (0: off)"),
      field("hidden_dropout", &O::hidden_dropout, "override hidden_dropout_prob"),
      field("attention_dropout", &O::attention_dropout, "override attention_probs_dropout_prob"),
      field("ignore_mismatched_sizes", &O::ignore_mismatched_sizes,
            "initialise --model's head tensors of another shape (another label count) afresh instead of refusing "
            "them, as from_pretrained(ignore_mismatched_sizes=True)"),
      field("resume_from_checkpoint", &O::resume_from_checkpoint, "checkpoint dir to resume, or 'last'"),
      field("threads", &O::threads, "compute threads (0: all cores)"),
      field("ddp_bucket_cap_mb", &O::ddp_bucket_cap_mb,
            "under mpirun: sum the gradients in buckets of at least N MiB, each started as soon as the backward "
            "has finished its layers, overlapping the rest of the backward (0: the whole gradient once, after "
            "the backward)"),
      field("ddp_backend", &O::ddp_backend,
            "how the gradients are summed across processes: mpi (--device cpu) or nccl (--device cuda: "
            "ncclAllReduce on the GPU, bootstrapped over MPI; without mpirun a communicator of one) "
            "(default: nccl for --device cuda, mpi on the CPU)"),
      field("ddp_timeout", &O::ddp_timeout,
            "under mpirun: seconds a collective may go unfinished (a GPU all-reduce with nccl, a blocking MPI "
            "call on the host; a rank stopped or hanging) before the ranks end with an error"),
      field("device", &O::device, "where the model computes: cpu, or cuda (a build with CUDA and a GPU)"),
      field("precision", &O::precision,
            "what the GEMMs multiply in: fp32, bf16 (cuda; cpu with avx512_bf16 or AMX-BF16), tf32 (cuda) "
            "(default: bf16 on cuda, fp32 on cpu)"),
      field("preset", &O::preset, "preset name (informational)"),
  };
  return all;
}

const OptionField* find_train_option(const std::string& key) {
  // HF 4.30 still calls it evaluation_strategy; accept both.
  const std::string canonical = key == "evaluation_strategy" ? "eval_strategy" : key;
  for (const auto& f : train_option_fields())
    if (f.key == canonical) return &f;
  return nullptr;
}

std::string option_flag(const std::string& key) {
  std::string f = "--" + key;
  for (auto& c : f)
    if (c == '_') c = '-';
  return f;
}

void apply_options_json(TrainOptions& o, const Json& j, const std::string& source) {
  if (j.is_null()) return;
  if (!j.is_object()) throw Error(source + ": expected a JSON object of options");
  for (const auto& [key, value] : j.items()) {
    const OptionField* f = find_train_option(key);
    if (!f) throw Error(source + ": unknown option '" + key + "'");
    f->set(o, value, source + ": " + key);
  }
}

namespace {
constexpr EnumNames<Strategy, 3> kStrategyNames{{{{Strategy::No, "no"}, {Strategy::Steps, "steps"}, {Strategy::Epoch, "epoch"}}}};
}  // namespace

Strategy parse_strategy(const std::string& name) { return kStrategyNames.parse(name); }
const char* strategy_name(Strategy s) { return kStrategyNames.name(s); }

std::string TrainOptions::metric_key() const {
  std::string m = metric_for_best_model.empty() ? "loss" : metric_for_best_model;
  return m.rfind("eval_", 0) == 0 ? m : "eval_" + m;
}

bool TrainOptions::higher_is_better() const {
  if (greater_is_better) return *greater_is_better;
  const std::string m = metric_key();
  // A loss, and regression's mean squared error, are better lower (transformers would take
  // eval_mse as higher-is-better unless told otherwise).
  return !(m.size() >= 4 && m.compare(m.size() - 4, 4, "loss") == 0) && m != "eval_mse";
}

Json TrainOptions::to_json() const {
  Json j = Json::object();
  for (const auto& f : train_option_fields()) j[f.key] = f.get(*this);
  return j;
}

TrainOptions train_options_from_json(const Json& j, const std::string& source) {
  TrainOptions o;
  apply_options_json(o, j, source);
  validate(o);
  return o;
}

AdamWOptions adamw_options(const TrainOptions& o) {
  AdamWOptions a;
  a.beta1 = o.adam_beta1;
  a.beta2 = o.adam_beta2;
  a.eps = o.adam_epsilon;
  a.weight_decay = o.weight_decay;
  a.variant = o.optim;
  return a;
}

kernels::Precision resolve_precision(kernels::Device device, std::optional<kernels::Precision> asked) {
  const kernels::Precision p = asked.value_or(kernels::default_precision(device));
  if (device == kernels::Device::CPU && p == kernels::Precision::TF32)
    throw Error("--precision tf32: needs --device cuda (the CPU computes fp32 or bf16); use --precision fp32 or "
                "drop it");
  if (const std::string why = kernels::precision_unavailable(device, p); !why.empty())
    throw Error(std::string("--precision ") + kernels::precision_name(p) + ": " + why +
                "; use --precision fp32 or drop it");
  return p;
}

void set_compute_precision(const TrainOptions& o) {
  kernels::set_precision(o.device, o.precision.value_or(kernels::default_precision(o.device)));
}

void print_compute(std::FILE* out, const TrainOptions& o) {
  std::fprintf(out, "  Compute = %s, GEMMs in %s\n", kernels::device_name(o.device),
               kernels::precision_name(o.precision.value_or(kernels::default_precision(o.device))));
}

namespace {
std::string format_count(double x) {  // 1e+300, 2.5, 13
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.10g", x);
  return buf;
}
}  // namespace

RunLength plan_run_length(const TrainOptions& o, int64_t steps_per_epoch) {
  RunLength r;
  const auto per_epoch = static_cast<double>(steps_per_epoch);
  if (o.max_steps > 0) {
    r.max_steps = o.max_steps;
    r.num_train_epochs = std::ceil(static_cast<double>(r.max_steps) / per_epoch);
  } else {
    const double steps = std::ceil(o.num_train_epochs * per_epoch);
    if (!(steps <= static_cast<double>(kMaxTrainSteps)))
      throw Error("--num-train-epochs " + format_count(o.num_train_epochs) + ": " + format_count(o.num_train_epochs) +
                  " epochs x " + std::to_string(steps_per_epoch) + " steps per epoch = " + format_count(steps) +
                  " optimization steps, more than the limit of " + std::to_string(kMaxTrainSteps) +
                  "; lower --num-train-epochs or give --max-steps");
    r.max_steps = static_cast<int64_t>(steps);
    r.num_train_epochs = std::ceil(o.num_train_epochs);
  }
  r.warmup_steps = warmup_steps(o, r.max_steps);
  return r;
}

int64_t warmup_steps(const TrainOptions& o, int64_t max_steps) {
  // warmup_ratio lies in [0, 1]: never more steps than the run's.
  return o.warmup_steps > 0 ? o.warmup_steps
                            : static_cast<int64_t>(std::ceil(static_cast<double>(max_steps) * o.warmup_ratio));
}

namespace {

// --ddp-backend against --device and the build; before the device's own check, so that a
// bad pair names the option.
void validate_ddp_backend(const TrainOptions& o) {
  auto fail = [](const std::string& m) { throw Error(m); };
  if (!(o.ddp_timeout > 0) || !std::isfinite(o.ddp_timeout)) fail("--ddp-timeout: must be a positive number of seconds");
  if (o.ddp_backend.empty()) return;
  if (o.ddp_backend != "mpi" && o.ddp_backend != "nccl")
    fail("--ddp-backend: '" + o.ddp_backend + "' is not one of mpi|nccl");
  const bool cpu = o.device == kernels::Device::CPU;
  if (o.ddp_backend == "nccl" && cpu)
    fail("--ddp-backend nccl sums GPU memory: use it with --device cuda (on the CPU the gradients are summed "
         "over MPI: --ddp-backend mpi)");
  if (o.ddp_backend == "nccl" && !kernels::nccl_built()) fail("--ddp-backend nccl: " + kernels::nccl_missing());
  if (o.ddp_backend == "mpi" && !cpu)
    fail("--ddp-backend mpi sums host memory: it runs with --device cpu; on GPUs the gradients are summed with "
         "--ddp-backend nccl");
}

}  // namespace

void validate(TrainOptions& o) {
  auto fail = [](const std::string& m) { throw Error(m); };
  if (o.model.empty() == o.model_config.empty())
    fail("give exactly one of --model DIR (pretrained) or --model-config CONFIG.json (random initialisation)");
  if (o.output_dir.empty()) fail("--output-dir is required");
  if (o.max_length < 2) fail("--max-length: must be at least 2 ([CLS] and [SEP])");
  if (o.max_length < 3 && !o.text_pair_column.empty())
    fail("--max-length: must be at least 3 for sentence pairs ([CLS] and two [SEP])");
  if (o.per_device_train_batch_size < 1) fail("--per-device-train-batch-size: must be positive");
  if (o.per_device_eval_batch_size < 1) fail("--per-device-eval-batch-size: must be positive");
  if (o.num_train_epochs <= 0 && o.max_steps <= 0) fail("--num-train-epochs: must be positive (or give --max-steps)");
  if (!std::isfinite(o.num_train_epochs)) fail("--num-train-epochs: must be a finite number");
  const std::string step_limit = " (" + std::to_string(kMaxTrainSteps) + " optimization steps)";
  if (o.max_steps <= 0 && o.num_train_epochs > static_cast<double>(kMaxTrainSteps))
    fail("--num-train-epochs " + format_count(o.num_train_epochs) + ": more epochs than the limit" + step_limit +
         "; an epoch is at least one step");
  if (o.max_steps > kMaxTrainSteps) fail("--max-steps " + std::to_string(o.max_steps) + ": more than the limit" + step_limit);
  if (o.warmup_steps > kMaxTrainSteps)
    fail("--warmup-steps " + std::to_string(o.warmup_steps) + ": more than the limit" + step_limit);
  if (!(o.learning_rate > 0)) fail("--learning-rate: must be positive");
  if (o.weight_decay < 0) fail("--weight-decay: must not be negative");
  if (o.warmup_steps < 0) fail("--warmup-steps: must not be negative");
  if (o.warmup_ratio < 0 || o.warmup_ratio > 1) fail("--warmup-ratio: must lie in [0, 1]");
  if (o.max_grad_norm < 0) fail("--max-grad-norm: must not be negative");
  if (o.logging_steps < 1) fail("--logging-steps: must be positive");
  if (o.max_tokens_per_batch < 0) fail("--max-tokens-per-batch: must not be negative (0: sample-count batches)");
  if (o.max_tokens_per_batch > 0 && o.padding != infer::Padding::Packed)
    fail("--max-tokens-per-batch builds packed batches: use --padding packed (not " + infer::padding_name(o.padding) + ")");
  if (o.max_tokens_per_batch > 0 && o.max_tokens_per_batch < o.max_length)
    fail("--max-tokens-per-batch " + std::to_string(o.max_tokens_per_batch) + " is below --max-length " +
         std::to_string(o.max_length) + ": the longest example must fit in one batch");
  if (o.eval_steps == -1) o.eval_steps = o.logging_steps;  // HF: eval_steps defaults to logging_steps
  if (o.eval_strategy == Strategy::Steps && o.eval_steps < 1) fail("--eval-steps: must be positive");
  if (o.save_strategy == Strategy::Steps && o.save_steps < 1) fail("--save-steps: must be positive");
  if (o.train_samples == 0 || o.train_samples < -1) fail("--train-samples: must be positive (or -1 for all)");
  if (o.eval_samples == 0 || o.eval_samples < -1) fail("--eval-samples: must be positive (or -1 for all)");
  if (o.validation_split < 0) fail("--validation-split: must not be negative");
  if (o.validation_split > 0 && !o.eval_file.empty())
    fail("--validation-split carves the eval set from the training data; do not also give --eval-file");
  // < 0 means "from the model config"; 1 would zero every activation (torch accepts it, training cannot).
  if (o.hidden_dropout >= 1) fail("--hidden-dropout: must lie in [0, 1)");
  if (o.attention_dropout >= 1) fail("--attention-dropout: must lie in [0, 1)");
  // torch.optim.AdamW's checks: 0 <= beta < 1, 0 <= eps.
  if (!(o.adam_beta1 >= 0 && o.adam_beta1 < 1)) fail("--adam-beta1: must lie in [0, 1)");
  if (!(o.adam_beta2 >= 0 && o.adam_beta2 < 1)) fail("--adam-beta2: must lie in [0, 1)");
  if (!(o.adam_epsilon >= 0)) fail("--adam-epsilon: must not be negative");
  if (o.threads < 0) fail("--threads: must not be negative");
  if (o.ddp_bucket_cap_mb < 0) fail("--ddp-bucket-cap-mb: must not be negative (0: one reduction after the backward)");
  if (o.threads > util::kMaxThreads) util::checked_thread_count(o.threads);  // throws: libgomp crashes on 100000
  if (o.early_stopping_patience < 0) fail("--early-stopping-patience: must not be negative");
  validate_ddp_backend(o);
  o.precision = resolve_precision(o.device, o.precision);
  kernels::require_device(o.device);  // --device cuda without CUDA or a GPU: named here, before any write
  if (o.early_stopping_threshold < 0) fail("--early-stopping-threshold: must not be negative");
  if (o.load_best_model_at_end) {
    if (o.eval_strategy == Strategy::No)
      fail("--load-best-model-at-end needs evaluations: set --eval-strategy steps|epoch");
    if (o.eval_strategy != o.save_strategy)
      fail(std::string("--load-best-model-at-end requires the save and eval strategy to match, but found --eval-strategy ") +
           strategy_name(o.eval_strategy) + " and --save-strategy " + strategy_name(o.save_strategy));
    if (o.eval_strategy == Strategy::Steps && o.save_steps % o.eval_steps != 0)
      fail("--load-best-model-at-end requires --save-steps (" + std::to_string(o.save_steps) +
           ") to be a round multiple of --eval-steps (" + std::to_string(o.eval_steps) + ")");
    if (o.metric_for_best_model.empty()) o.metric_for_best_model = "loss";  // HF default
  }
  if (o.num_labels < 0) fail("--num-labels: must be at least 1 (or 0: config.json's)");
  if (o.task != "sequence-classification" && o.task != "token-classification")
    fail("--task: '" + o.task + "' is not one of sequence-classification|token-classification");
  if (o.token_classification()) {  // its labels are the training file's tags
    const char* other = !o.problem_type.empty() ? "--problem-type"
                        : o.num_labels > 0      ? "--num-labels"
                        : !o.text_pair_column.empty() ? "--text-pair-column"
                                                      : nullptr;
    if (other) fail(std::string("--task token-classification reads a tag per word: ") + other + " does not apply");
  }
  if (!o.problem_type.empty()) {
    try {
      model::parse_problem_type(o.problem_type);
    } catch (const Error& e) {
      fail(std::string("--problem-type: ") + e.what());
    }
  }
  if (!o.metric_for_best_model.empty()) {
    static const char* known[] = {"loss",    "accuracy", "f1",        "micro_f1", "mse",
                                  "pearson", "spearmanr", "precision", "recall"};
    std::string m = o.metric_for_best_model.rfind("eval_", 0) == 0 ? o.metric_for_best_model.substr(5)
                                                                    : o.metric_for_best_model;
    bool ok = false;
    for (auto* k : known) ok |= m == k;
    if (!ok) fail("--metric-for-best-model: '" + o.metric_for_best_model + "' is not one of loss|accuracy|f1|micro_f1|mse|pearson|spearmanr|precision|recall");
    if (!o.greater_is_better) o.greater_is_better = o.higher_is_better();
  }
  if (o.early_stopping_patience > 0) {
    // EarlyStoppingCallback asserts these in on_train_begin.
    if (!o.load_best_model_at_end) fail("--early-stopping-patience requires --load-best-model-at-end");
    if (o.eval_strategy == Strategy::No) fail("--early-stopping-patience requires --eval-strategy steps|epoch");
  }
}

}  // namespace bertune::train
