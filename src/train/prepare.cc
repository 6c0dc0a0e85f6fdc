#include "train/prepare.h"

#include <algorithm>
#include <cmath>

#include "data/label_names.h"
#include "kernels/cpu_runtime.h"
#include "infer/metrics.h"
#include "infer/model_dir.h"
#include "infer/tagged.h"
#include "model/pretrained.h"
#include "train/memory_plan.h"
#include "train/distributed.h"
#include "train/sampler.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;

namespace {

// The model's config.json (from --model or --model-config) with the run's overrides; the
// pretrained weights, when there are any, are left in `pretrained`.
// NSMC-trained models name their labels (negative/positive) where the config only numbers them.
void name_labels(model::BertConfig& config, const fs::path& train_path) {
  for (const auto& [id, name] : config.id2label)
    if (name != "LABEL_" + std::to_string(id)) return;  // the model's own names stay
  auto names = data::known_label_names(train_path);
  if (!names.empty() && static_cast<int>(names.size()) == config.num_labels()) config.id2label = names;
}

// --metric-for-best-model must name a metric of `kind` (the task's evaluation reports it).
void require_metric_of(infer::MetricsKind kind, const TrainOptions& o, const std::string& what) {
  if (o.metric_for_best_model.empty()) return;
  const std::string m = o.metric_key().substr(5);
  const auto names = infer::metric_names(kind);
  if (std::find(names.begin(), names.end(), m) != names.end()) return;
  std::string choices;
  for (const auto& n : names) choices += (choices.empty() ? "" : "|") + n;
  throw Error("--metric-for-best-model " + o.metric_for_best_model + " is not a metric of " + what + " (" + choices +
              ")");
}

// --problem-type over config.json's problem_type; neither: HF's rule for labels read from a
// file (num_labels 1 -> regression, else integer classes: single-label). A config without
// id2label gets 1 label for regression, else 2; --num-labels N gives it N (LABEL_i) where it
// names another number. The decision goes into every saved config.json.
void resolve_problem_type(model::BertConfig& config, const TrainOptions& o) {
  using model::ProblemType;
  if (!o.problem_type.empty()) config.problem_type = model::parse_problem_type(o.problem_type);
  if (o.num_labels > 0 && (config.id2label.empty() || o.num_labels != config.num_labels()))
    config.set_num_labels(o.num_labels);
  if (config.id2label.empty()) config.set_num_labels(config.problem_type == ProblemType::Regression ? 1 : 2);
  config.problem_type = config.resolved_problem_type();
  if (config.problem_type == ProblemType::Regression && config.num_labels() != 1)
    throw Error("problem_type regression needs num_labels 1, but the model's config.json names " +
                std::to_string(config.num_labels()) + " labels (id2label)");
  const auto kind = config.problem_type == ProblemType::Regression   ? infer::MetricsKind::Regression
                    : config.problem_type == ProblemType::MultiLabel ? infer::MetricsKind::MultiLabel
                                                                     : infer::MetricsKind::SingleLabel;
  require_metric_of(kind, o, std::string("problem_type ") + model::problem_type_name(config.problem_type));
}

model::BertConfig load_config(const TrainOptions& o, model::PretrainedTensors& pretrained) {
  model::BertConfig config;
  if (!o.model.empty()) {
    pretrained = infer::load_weights_to_train(o.model, "training");
    config = pretrained.config;
  } else {
    config = model::BertConfig::load(o.model_config);
  }
  config.architectures = {config.classifier_architecture(o.token_classification())};
  if (o.token_classification()) require_metric_of(infer::MetricsKind::Entities, o, "--task token-classification");
  else resolve_problem_type(config, o);
  if (o.hidden_dropout >= 0) config.hidden_dropout_prob = static_cast<float>(o.hidden_dropout);
  if (o.attention_dropout >= 0) config.attention_probs_dropout_prob = static_cast<float>(o.attention_dropout);
  if (!o.text_pair_column.empty()) model::require_pair_token_type(config);
  model::require_max_length_fits(o.max_length, config);
  return config;
}

// Train and eval sets: subsets exactly like dataset.shuffle(seed=data_seed).select(range(n)),
// or an eval set carved off the shuffled training data.
struct Splits {
  data::Dataset train, eval, test;
  bool have_eval = false;
};

Splits carve_validation(data::Dataset all, const TrainOptions& o, const fs::path& train_path) {
  if (static_cast<size_t>(o.validation_split) >= all.size())
    throw Error("--validation-split " + std::to_string(o.validation_split) + ": " + train_path.string() +
                " has only " + std::to_string(all.size()) + " examples");
  Splits s;
  s.eval.source = s.train.source = all.source;
  auto perm = data::shuffled_indices(all.size(), o.data_seed);
  for (size_t i = 0; i < perm.size(); ++i)
    (i < static_cast<size_t>(o.validation_split) ? s.eval : s.train).examples.push_back(all.examples[perm[i]]);
  if (o.train_samples > static_cast<int64_t>(s.train.size()))
    throw Error("--train-samples " + std::to_string(o.train_samples) + ": " + train_path.string() + " has only " +
                std::to_string(s.train.size()) + " examples besides the --validation-split " +
                std::to_string(o.validation_split));
  if (o.train_samples > 0) s.train.examples.resize(static_cast<size_t>(o.train_samples));
  s.have_eval = true;
  return s;
}

Splits read_splits(const TrainOptions& o, const model::BertConfig& config, const fs::path& train_path) {
  data::ReadOptions ro;
  ro.text_column = o.text_column;
  ro.text_pair_column = o.text_pair_column;
  ro.label_column = o.label_column;
  infer::set_label_options(ro, config);
  data::Dataset all = read_split(train_path, o.train_rows, ro);
  Splits s;
  if (o.validation_split > 0) {
    s = carve_validation(std::move(all), o, train_path);
  } else {
    s.train = o.train_samples > 0 ? data::select_samples(all, o.data_seed, o.train_samples, "--train-samples")
                                  : std::move(all);
    if (o.eval_strategy != Strategy::No || !o.eval_file.empty()) {
      s.eval = read_split(o.eval_file.empty() ? data::nsmc_path("test") : fs::path(o.eval_file), o.eval_rows, ro);
      if (o.eval_samples > 0) s.eval = data::select_samples(s.eval, o.data_seed, o.eval_samples, "--eval-samples");
      s.have_eval = true;
    }
  }
  if (s.train.size() == 0) throw Error(train_path.string() + ": no training examples");
  // Metrics of zero examples would read as accuracy 0 (and steer the best-model choice).
  if (s.have_eval && s.eval.size() == 0)
    throw Error((o.eval_file.empty() ? data::nsmc_path("test").string() : o.eval_file) + ": no evaluation examples");
  if (!o.test_file.empty()) {
    s.test = read_split(o.test_file, o.test_rows, ro);
    if (s.test.size() == 0) throw Error(o.test_file + ": no test examples");
  }
  return s;
}

// Token classification: tagged train/eval/test files; the labels are the training file's
// tags, sorted (id2label of the saved config.json); --validation-split carves sentences
// off the shuffled training file, --train-samples / --eval-samples select as for texts.
void read_tagged_splits(PreparedRun& r) {
  const TrainOptions& o = r.options;
  if (o.train_file.empty()) throw Error("--task token-classification needs --train-file (tagged data)");
  data::TaggedDataset all = read_tagged_split(r.train_path, o.train_rows);
  if (all.size() == 0) throw Error(r.train_path.string() + ": no training sentences");
  const std::vector<std::string> tags = data::tag_set(all);
  if (tags.empty()) throw Error(r.train_path.string() + ": training sentences need tags");
  r.config.id2label.clear();
  for (size_t i = 0; i < tags.size(); ++i) r.config.id2label[static_cast<int>(i)] = tags[i];
  const auto label2id = infer::label_ids(r.config);
  auto tokenize = [&](const data::TaggedDataset& d) { return infer::tokenize_tagged(d, r.tokenizer, o.max_length, label2id); };
  auto subset = [&](const data::TaggedDataset& d, const std::vector<size_t>& order, size_t from, size_t to) {
    data::TaggedDataset out;
    out.source = d.source;
    for (size_t i = from; i < std::min(to, order.size()); ++i) out.sentences.push_back(d.sentences[order[i]]);
    return out;
  };
  const std::vector<size_t> perm = data::shuffled_indices(all.size(), o.data_seed);
  const size_t carve = static_cast<size_t>(std::max<int64_t>(o.validation_split, 0));
  if (carve >= all.size())
    throw Error("--validation-split " + std::to_string(carve) + ": " + r.train_path.string() + " has only " +
                std::to_string(all.size()) + " sentences");
  std::vector<size_t> identity(all.size());
  for (size_t i = 0; i < identity.size(); ++i) identity[i] = i;
  const bool select = o.train_samples > 0 || carve > 0;
  const size_t train_end = o.train_samples > 0 ? carve + static_cast<size_t>(o.train_samples) : all.size();
  r.train = tokenize(subset(all, select ? perm : identity, carve, train_end));
  r.have_eval = carve > 0 || o.eval_strategy != Strategy::No || !o.eval_file.empty();
  if (carve > 0) {
    r.eval = tokenize(subset(all, perm, 0, carve));
  } else if (r.have_eval) {
    if (o.eval_file.empty()) throw Error("--task token-classification evaluates on --eval-file (or --validation-split)");
    data::TaggedDataset eval = read_tagged_split(o.eval_file, o.eval_rows);
    if (o.eval_samples > 0) eval = subset(eval, data::shuffled_indices(eval.size(), o.data_seed), 0, size_t(o.eval_samples));
    if (eval.size() == 0) throw Error(o.eval_file + ": no evaluation sentences");
    r.eval = tokenize(eval);
  }
  if (!o.test_file.empty()) r.tagged_test = read_tagged_split(o.test_file, o.test_rows);
  r.sampling_lengths = r.train.lengths;
  if (o.padding == infer::Padding::MaxLength) r.sampling_lengths.assign(r.train.size(), o.max_length);
}

void tokenize_splits(PreparedRun& r, Splits& s) {
  const TrainOptions& o = r.options;
  r.train = infer::tokenize(s.train, r.tokenizer, o.max_length, o.threads);
  if (!r.train.labelled()) throw Error(r.train_path.string() + ": training examples need labels (--label-column)");
  r.have_eval = s.have_eval;
  if (s.have_eval) r.eval = infer::tokenize(s.eval, r.tokenizer, o.max_length, o.threads);
  r.test_set = std::move(s.test);
  // With padding='max_length' at tokenization every example is max_length long for HF's
  // LengthGroupedSampler, and grouping changes nothing.
  r.sampling_lengths = r.train.lengths;
  if (o.padding == infer::Padding::MaxLength) r.sampling_lengths.assign(r.train.size(), o.max_length);
}

// --max-tokens-per-batch: every epoch's order cuts into its own number of batches, so the
// run's epochs are planned one by one: whole epochs, then the fraction of the last (or as
// many as --max-steps needs). Each epoch's batches are a pure function of (seed, epoch).
void plan_token_budget_epochs(PreparedRun& r) {
  constexpr int64_t kMaxPlannedEpochs = 10000;
  const TrainOptions& o = r.options;
  std::vector<int64_t> planned;
  int64_t total = 0;
  auto plan_epoch = [&] {
    if (static_cast<int64_t>(planned.size()) >= kMaxPlannedEpochs)
      throw Error("--max-tokens-per-batch: a run of more than " + std::to_string(kMaxPlannedEpochs) +
                  " epochs is not supported (lower --num-train-epochs or --max-steps)");
    planned.push_back(static_cast<int64_t>(r.epoch_batches(static_cast<int64_t>(planned.size())).size()));
    return planned.back();
  };
  if (o.max_steps > 0) {
    while (total < o.max_steps) total += plan_epoch();
    total = o.max_steps;
  } else {
    const double whole = std::floor(o.num_train_epochs), fraction = o.num_train_epochs - whole;
    for (int64_t e = 0; e < static_cast<int64_t>(whole); ++e) total += plan_epoch();
    if (fraction > 0) total += static_cast<int64_t>(std::ceil(fraction * static_cast<double>(plan_epoch())));
  }
  r.state.max_steps = total;
  r.state.num_train_epochs = static_cast<double>(planned.size());
  r.steps_per_epoch = planned.front();
  r.epochs = EpochSizes(std::move(planned));
}

void plan_steps(PreparedRun& r) {
  const TrainOptions& o = r.options;
  r.steps_per_epoch = batches_per_epoch(r.train.size(), o.per_device_train_batch_size);
  r.epochs = EpochSizes(r.steps_per_epoch);
  const RunLength length = plan_run_length(o, r.steps_per_epoch);
  r.state.max_steps = length.max_steps;
  r.state.num_train_epochs = length.num_train_epochs;
  if (o.max_tokens_per_batch > 0) plan_token_budget_epochs(r);
  const int64_t warmup = o.max_tokens_per_batch > 0 ? warmup_steps(o, r.state.max_steps) : length.warmup_steps;
  r.schedule = {o.lr_scheduler_type, o.learning_rate, warmup, r.state.max_steps};
}

// Before the model is built: the run's memory against what the process can have.
void require_run_memory(const PreparedRun& r) {
  const TrainOptions& o = r.options;
  const model::Task task = o.model_task();
  const model::BatchShape train =
      largest_batch(r.epoch_batches(0), r.train.lengths, o.padding, o.max_length, r.config, task);
  model::BatchShape eval;
  if (r.have_eval)
    eval = largest_batch(consecutive_batches(r.eval.size(), o.per_device_eval_batch_size), r.eval.lengths, o.padding,
                         o.max_length, r.config, task);
  util::MemoryNeed need;
  add_trained_model(need, r.config, task, train, eval);
  if (r.have_eval || !o.test_file.empty()) add_evaluation_metrics(need, r.config.num_labels());
  require_training_memory(need, o, "train");
}

// --model's head tensors whose shape is not the model's (a checkpoint of another label count or
// task): with --ignore-mismatched-sizes taken out of `pretrained`, so that the load initialises
// them afresh, and listed in r.mismatched as HF lists them; without it, refused by name.
// Returns the names taken out.
std::vector<std::string> drop_mismatched_heads(PreparedRun& r, model::PretrainedTensors& pretrained) {
  std::vector<std::string> dropped;
  for (const model::ParamInfo& p : r.model->param_info()) {
    auto it = pretrained.tensors.find(p.name);
    if (!p.head || it == pretrained.tensors.end() || it->second.shape == p.shape) continue;
    const std::string found = shape_text(it->second.shape), wanted = shape_text(p.shape);
    if (!r.options.ignore_mismatched_sizes)
      throw Error(pretrained.weights_file.string() + ": tensor " + p.name + " has shape " + found + ", the " +
                  r.config.classifier_architecture(r.options.token_classification()) + " being trained needs " +
                  wanted + " (" + std::to_string(r.config.num_labels()) +
                  " labels); pass --ignore-mismatched-sizes to initialise it afresh");
    r.mismatched.push_back("- " + p.name + ": found shape torch.Size(" + found +
                           ") in the checkpoint and torch.Size(" + wanted + ") in the model instantiated");
    dropped.push_back(p.name);
    pretrained.tensors.erase(it);
  }
  return dropped;
}

void build_model(PreparedRun& r, model::PretrainedTensors& pretrained) {
  const TrainOptions& o = r.options;
  r.model = std::make_unique<model::BertModel>(r.config, o.model_task(), o.device,
                                                model::Init::Zeros);  // loaded or initialised below
  if (!o.model.empty()) {
    const std::vector<std::string> dropped = drop_mismatched_heads(r, pretrained);
    model::LoadReport report = r.model->load_state_dict(pretrained.tensors, o.seed);
    std::erase_if(report.initialised, [&](const std::string& n) { return std::ranges::count(dropped, n) > 0; });
    r.initialised = std::move(report.initialised);
    r.unused = std::move(report.unused);
    r.model_description = o.model;
  } else {
    r.model->init_weights(o.seed);
    r.model_description = o.model_config + ", random initialisation";
  }
  pretrained.tensors.clear();
  r.optimizer = std::make_unique<AdamW>(*r.model, adamw_options(o));
  r.model->set_dropout_seed(o.seed);
}

void restore_checkpoint(PreparedRun& r) {
  ResumePoint p = read_checkpoint(r.run_dir.resume_dir, r.fingerprint, r.epochs, *r.model, *r.optimizer, r.options.seed);
  p.state.max_steps = r.state.max_steps;
  p.state.num_train_epochs = r.state.num_train_epochs;
  r.state = std::move(p.state);
  r.run = std::move(p.run);
}

}  // namespace

data::Dataset read_split(const fs::path& file, const std::optional<std::string>& rows, const data::ReadOptions& ro) {
  if (!rows) return data::read_dataset(file, ro);
  data::ReadOptions jsonl = ro;
  jsonl.format = data::Format::Jsonl;
  return data::parse_dataset(*rows, file, jsonl);
}

data::TaggedDataset read_tagged_split(const fs::path& file, const std::optional<std::string>& rows) {
  return rows ? data::parse_tagged(*rows, file, /*jsonl=*/true) : data::read_tagged(file);
}

std::vector<std::vector<size_t>> PreparedRun::epoch_batches(int64_t epoch) const {
  return train::epoch_batches(sampling_lengths, options.per_device_train_batch_size, options.group_by_length,
                              options.seed, epoch, options.max_tokens_per_batch);
}

PreparedRun prepare_run(const TrainOptions& o) {
  PreparedRun r;
  r.options = o;
  r.started = std::chrono::steady_clock::now();
  r.run_dir = plan_run_dir(o);
  kernels::set_num_threads(o.threads);
  set_compute_precision(o);

  model::PretrainedTensors pretrained;
  r.config = load_config(o, pretrained);
  r.train_path = o.train_file.empty() ? data::nsmc_path("train") : fs::path(o.train_file);
  name_labels(r.config, r.train_path);
  r.tokenizer_dir = infer::tokenizer_dir_for(o.model, o.tokenizer);
  r.tokenizer = text::Tokenizer::load(r.tokenizer_dir);
  if (static_cast<int>(r.tokenizer.vocab_size()) > r.config.vocab_size)
    throw Error("tokenizer " + r.tokenizer_dir.string() + " has " + std::to_string(r.tokenizer.vocab_size()) +
                " tokens but the model's vocab_size is " + std::to_string(r.config.vocab_size));

  if (o.token_classification()) {
    read_tagged_splits(r);
  } else {
    Splits splits = read_splits(o, r.config, r.train_path);
    tokenize_splits(r, splits);
  }
  plan_steps(r);
  r.fingerprint = resume_fingerprint(o, r.train.size());
  require_run_memory(r);
  build_model(r, pretrained);
  if (!r.run_dir.resume_dir.empty()) restore_checkpoint(r);
  return r;
}

}  // namespace bertune::train
