#include "train/trainer.h"

#include <unistd.h>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>

#include "io/atomic_file.h"
#if __has_include("io/checkpoint.h")
#include "io/checkpoint.h"  // HF directories incl. pytorch_model.bin and sharded weights
#define BERTUNE_HAVE_IO_CHECKPOINT 1
#endif
#include "io/safetensors.h"
#include "kernels/ops.h"
#include "model/pretrained.h"
#include "train/optimizer.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

namespace {

double seconds_since(Clock::time_point t) { return std::chrono::duration<double>(Clock::now() - t).count(); }

model::Batch to_model_batch(const HostBatch& hb) {
  model::Batch b;
  b.input_ids = hb.input_ids;
  b.offsets = hb.offsets;
  b.lengths = hb.lengths;
  bool labelled = true;
  for (int32_t y : hb.labels) labelled &= y >= 0;
  if (labelled) b.labels = hb.labels;
  return b;
}

const char* kTokenizerFiles[] = {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"};

bool has_tokenizer_files(const fs::path& dir) {
  std::error_code ec;
  return !dir.empty() && (fs::exists(dir / "vocab.txt", ec) || fs::exists(dir / "tokenizer.json", ec));
}

std::vector<fs::path> tokenizer_files(const fs::path& dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const char* name : kTokenizerFiles)
    if (fs::exists(dir / name, ec)) files.push_back(dir / name);
  return files;
}

fs::path default_tokenizer_dir() { return shared_path("models/klue-bert-base"); }

// Everything a checkpoint holds beyond HF's trainer_state.json.
struct RunState {
  int64_t epoch_index = 0;      // epoch in progress (0-based)
  int64_t batch_in_epoch = 0;   // batches of it already done
  uint64_t dropout_step = 0;
  int64_t optimizer_steps = 0;  // AdamW's own count (skipped steps do not advance it)
  int early_stopping_counter = 0;
  int nonfinite_streak = 0;
  int64_t skipped_steps = 0;
  double log_loss_sum = 0;      // the logging window in progress
  int64_t log_loss_steps = 0;
  double eval_loss_sum = 0;     // training loss since the last evaluation (for the table)
  int64_t eval_loss_steps = 0;
  double run_loss_sum = 0;      // whole run, for training_loss
  int64_t run_loss_steps = 0;
  int64_t samples = 0;
  TokenCounts tokens;
  CollapseDetector collapse;

  Json to_json() const {
    return Json{{"epoch_index", epoch_index},
                {"batch_in_epoch", batch_in_epoch},
                {"dropout_step", dropout_step},
                {"optimizer_steps", optimizer_steps},
                {"early_stopping_counter", early_stopping_counter},
                {"nonfinite_streak", nonfinite_streak},
                {"skipped_steps", skipped_steps},
                {"log_loss_sum", log_loss_sum},
                {"log_loss_steps", log_loss_steps},
                {"eval_loss_sum", eval_loss_sum},
                {"eval_loss_steps", eval_loss_steps},
                {"run_loss_sum", run_loss_sum},
                {"run_loss_steps", run_loss_steps},
                {"samples", samples},
                {"real_tokens", tokens.real},
                {"processed_tokens", tokens.processed},
                {"collapse", collapse.to_json()}};
  }
  static RunState from_json(const Json& j, const std::string& source) {
    RunState r;
    try {
      r.epoch_index = j.at("epoch_index").get<int64_t>();
      r.batch_in_epoch = j.at("batch_in_epoch").get<int64_t>();
      r.dropout_step = j.at("dropout_step").get<uint64_t>();
      r.optimizer_steps = j.at("optimizer_steps").get<int64_t>();
      r.early_stopping_counter = j.at("early_stopping_counter").get<int>();
      r.nonfinite_streak = j.at("nonfinite_streak").get<int>();
      r.skipped_steps = j.at("skipped_steps").get<int64_t>();
      r.log_loss_sum = j.at("log_loss_sum").get<double>();
      r.log_loss_steps = j.at("log_loss_steps").get<int64_t>();
      r.eval_loss_sum = j.at("eval_loss_sum").get<double>();
      r.eval_loss_steps = j.at("eval_loss_steps").get<int64_t>();
      r.run_loss_sum = j.at("run_loss_sum").get<double>();
      r.run_loss_steps = j.at("run_loss_steps").get<int64_t>();
      r.samples = j.at("samples").get<int64_t>();
      r.tokens.real = j.at("real_tokens").get<int64_t>();
      r.tokens.processed = j.at("processed_tokens").get<int64_t>();
      r.collapse.from_json(j.at("collapse"));
    } catch (const Json::exception& e) {
      throw Error(source + ": " + e.what());
    }
    return r;
  }
};

// The options that must not change across a resume, or the continued run is another run.
Json resume_fingerprint(const TrainOptions& o, size_t train_examples) {
  return Json{{"seed", o.seed},
              {"data_seed", o.data_seed},
              {"per_device_train_batch_size", o.per_device_train_batch_size},
              {"group_by_length", o.group_by_length},
              {"padding", padding_name(o.padding)},
              {"max_length", o.max_length},
              {"train_examples", train_examples}};
}

void write_checkpoint(const fs::path& output_dir, const fs::path& final_dir, const model::BertConfig& config,
                      const model::BertModel& model, const AdamW& optimizer, const TrainerState& state,
                      const RunState& run, const TrainOptions& options, const Json& fingerprint,
                      const fs::path& tokenizer_dir) {
  // Built in a temporary directory and renamed into place: a kill at any moment leaves
  // either no checkpoint-<step> or a complete one. Temporary names never match
  // checkpoint-<digits>, so an interrupted save is invisible to resume and rotation.
  fs::path tmp = output_dir / (final_dir.filename().string() + ".tmp-" + std::to_string(::getpid()));
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  config.save(tmp / "config.json");
  io::write_safetensors(tmp / "model.safetensors", model.state_dict());
  io::write_safetensors(tmp / "optimizer.safetensors", optimizer.state_dict(), {{"format", "bertune-adamw"}});
  state.save(tmp / "trainer_state.json");
  Json extra = run.to_json();
  extra["fingerprint"] = fingerprint;
  io::write_file_atomic(tmp / "bertune_state.json", extra.dump(2) + "\n");
  io::write_file_atomic(tmp / "training_args.json", options.to_json().dump(2) + "\n");
  // The tokenizer travels with every checkpoint (as with HF when the Trainer has one), minus
  // tokenizer.json: vocab.txt says the same and is a quarter of the size.
  for (const auto& f : tokenizer_files(tokenizer_dir))
    if (f.filename() != "tokenizer.json") io::write_file_atomic(tmp / f.filename(), io::read_file(f));
  io::fsync_directory(tmp);
  std::error_code ec;
  if (fs::exists(final_dir, ec)) fs::remove_all(final_dir);
  fs::rename(tmp, final_dir);
  io::fsync_directory(output_dir);
}

void remove_interrupted_saves(const fs::path& output_dir) {
  std::error_code ec;
  if (!fs::is_directory(output_dir, ec)) return;
  for (const auto& e : fs::directory_iterator(output_dir)) {
    const std::string name = e.path().filename().string();
    if (e.is_directory() && name.rfind("checkpoint-", 0) == 0 && name.find(".tmp-") != std::string::npos)
      fs::remove_all(e.path(), ec);
  }
}

// config.json + weights of an HF model directory.
struct ModelFiles {
  model::BertConfig config;
  io::TensorMap tensors;
};
ModelFiles load_model_files(const fs::path& dir) {
#ifdef BERTUNE_HAVE_IO_CHECKPOINT
  model::PretrainedTensors pt = model::load_pretrained_tensors(dir);
  return {pt.config, std::move(pt.tensors)};
#else
  if (!fs::exists(dir / "model.safetensors"))
    throw Error(dir.string() + ": no model.safetensors (this build reads safetensors weights only)");
  return {model::BertConfig::load(dir), io::read_safetensors(dir / "model.safetensors")};
#endif
}

// An HF model directory (config.json, model.safetensors with format=pt, tokenizer files),
// built beside its target and renamed into place: it appears whole or not at all.
void write_model_dir(const fs::path& dir, const model::BertConfig& config, const model::BertModel& model,
                     const fs::path& tokenizer_dir) {
  fs::path tmp = dir;
  tmp += ".tmp-" + std::to_string(::getpid());
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  config.save(tmp / "config.json");
  io::write_safetensors(tmp / "model.safetensors", model.state_dict());
  for (const auto& f : tokenizer_files(tokenizer_dir)) io::write_file_atomic(tmp / f.filename(), io::read_file(f));
  io::fsync_directory(tmp);
  std::error_code ec;
  if (fs::exists(dir, ec)) fs::remove_all(dir);
  fs::rename(tmp, dir);
  io::fsync_directory(dir.parent_path().empty() ? fs::path(".") : dir.parent_path());
}

std::string join(const std::vector<std::string>& v, const char* sep = ", ") {
  std::string s;
  for (size_t i = 0; i < v.size(); ++i) s += (i ? sep : "") + v[i];
  return s;
}

}  // namespace

TokenizedData tokenize(const data::Dataset& d, const text::Tokenizer& tok, int max_length, int threads) {
  std::vector<std::string> texts;
  texts.reserve(d.size());
  for (const auto& e : d.examples) texts.push_back(e.text);
  text::EncodeOptions eo;
  eo.max_length = max_length;
  auto enc = tok.encode_batch(texts, eo, threads);
  TokenizedData t;
  t.ids.reserve(enc.size());
  for (size_t i = 0; i < enc.size(); ++i) {
    t.lengths.push_back(static_cast<int>(enc[i].ids.size()));
    t.ids.push_back(std::move(enc[i].ids));
    t.labels.push_back(d.examples[i].label);
  }
  return t;
}

Json EvalResult::record(const std::string& prefix) const {
  Json j = metrics.to_json(prefix);
  j[prefix + "runtime"] = runtime;
  j[prefix + "samples_per_second"] = runtime > 0 ? metrics.count / runtime : 0.0;
  j[prefix + "steps_per_second"] = runtime > 0 ? steps / runtime : 0.0;
  return j;
}

EvalResult evaluate(model::BertModel& model, const TokenizedData& data, int batch_size, Padding padding,
                    int max_length, int32_t pad_id, bool keep_logits) {
  auto t0 = Clock::now();
  const int num_labels = model.config().num_labels();
  MetricsAccumulator acc(num_labels);
  EvalResult r;
  std::vector<size_t> order(data.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  bool labelled = true;
  for (int32_t y : data.labels) labelled &= y >= 0;
  for (const auto& batch : split_batches(order, batch_size)) {
    HostBatch hb = build_host_batch(data.ids, data.labels, batch, padding, max_length, pad_id);
    model::Batch b = to_model_batch(hb);
    if (!labelled) b.labels.clear();
    model.forward(b, /*train=*/false);
    const float* logits = model.logits();
    const size_t n = batch.size();
    if (keep_logits) r.logits.insert(r.logits.end(), logits, logits + n * num_labels);
    if (labelled) {
      acc.add(logits, hb.labels.data(), n);
    } else {
      for (size_t i = 0; i < n; ++i) r.predictions.push_back(argmax(logits + i * num_labels, num_labels));
    }
    r.steps++;
  }
  if (labelled) {
    r.metrics = acc.finish();
    r.predictions = acc.predictions();
  }
  r.runtime = seconds_since(t0);
  return r;
}

std::unique_ptr<model::BertModel> load_classifier(const fs::path& dir, uint64_t head_seed,
                                                  std::vector<std::string>* initialised,
                                                  const model::BertConfig* override_config) {
  ModelFiles pt = load_model_files(dir);
  model::BertConfig config = override_config ? *override_config : pt.config;
  config.architectures = {"BertForSequenceClassification"};
  auto m = std::make_unique<model::BertModel>(config, model::Task::SequenceClassification);
  auto report = m->load_state_dict(pt.tensors, head_seed);
  if (initialised) *initialised = report.initialised;
  return m;
}

text::Tokenizer load_tokenizer_for(const fs::path& model_dir, const std::string& fallback) {
  if (!fallback.empty()) return text::Tokenizer::load(fallback);
  if (has_tokenizer_files(model_dir)) return text::Tokenizer::load(model_dir);
  return text::Tokenizer::load(default_tokenizer_dir());
}

TrainResult run_training(const TrainOptions& opt, std::FILE* out) {
  const auto run_start = Clock::now();
  TrainResult result;
  auto warn = [&](const std::string& w) {
    std::fprintf(stderr, "%s\n", w.c_str());
    result.warnings.push_back(w);
  };
  const fs::path output_dir = opt.output_dir;

  // ---- everything that can be checked is checked before the first write ----
  fs::path resume_dir;
  if (!opt.resume_from_checkpoint.empty()) {
    if (opt.resume_from_checkpoint == "last" || opt.resume_from_checkpoint == "true") {
      resume_dir = last_checkpoint(output_dir);
      if (resume_dir.empty())
        throw Error("--resume-from-checkpoint " + opt.resume_from_checkpoint + ": no checkpoint-<step> in " +
                    output_dir.string());
    } else {
      resume_dir = opt.resume_from_checkpoint;
    }
    for (const char* f : {"model.safetensors", "optimizer.safetensors", "trainer_state.json", "bertune_state.json"})
      if (!fs::exists(resume_dir / f))
        throw Error("--resume-from-checkpoint: " + (resume_dir / f).string() + " is missing");
  } else if (!opt.overwrite_output_dir && !last_checkpoint(output_dir).empty()) {
    throw Error("--output-dir " + output_dir.string() +
                " already holds checkpoints; pass --resume-from-checkpoint last to continue, or "
                "--overwrite-output-dir to start over there");
  }

  kernels::set_num_threads(opt.threads);

  // Model configuration (weights come later, after the data checks).
  model::BertConfig config;
  ModelFiles pretrained;
  if (!opt.model.empty()) {
    pretrained = load_model_files(opt.model);
    config = pretrained.config;
  } else {
    config = model::BertConfig::load(opt.model_config);
  }
  config.architectures = {"BertForSequenceClassification"};
  if (config.id2label.empty()) config.set_num_labels(2);
  if (opt.hidden_dropout >= 0) config.hidden_dropout_prob = static_cast<float>(opt.hidden_dropout);
  if (opt.attention_dropout >= 0) config.attention_probs_dropout_prob = static_cast<float>(opt.attention_dropout);
  if (opt.max_length > config.max_position_embeddings)
    throw Error("--max-length " + std::to_string(opt.max_length) + " exceeds the model's max_position_embeddings (" +
                std::to_string(config.max_position_embeddings) + ")");

  fs::path tokenizer_dir = !opt.tokenizer.empty()                                      ? fs::path(opt.tokenizer)
                           : (!opt.model.empty() && has_tokenizer_files(opt.model)) ? fs::path(opt.model)
                                                                                      : default_tokenizer_dir();
  text::Tokenizer tok = text::Tokenizer::load(tokenizer_dir);
  if (static_cast<int>(tok.vocab_size()) > config.vocab_size)
    throw Error("tokenizer " + tokenizer_dir.string() + " has " + std::to_string(tok.vocab_size()) +
                " tokens but the model's vocab_size is " + std::to_string(config.vocab_size));

  // Data: subsets exactly like dataset.shuffle(seed=data_seed).select(range(n)).
  data::ReadOptions ro;
  ro.text_column = opt.text_column;
  ro.label_column = opt.label_column;
  ro.num_labels = config.num_labels();
  const fs::path train_path = opt.train_file.empty() ? data::nsmc_path("train") : fs::path(opt.train_file);
  data::Dataset train_set = data::read_dataset(train_path, ro);
  data::Dataset eval_set;
  bool have_eval = false;
  if (opt.validation_split > 0) {
    if (static_cast<size_t>(opt.validation_split) >= train_set.size())
      throw Error("--validation-split " + std::to_string(opt.validation_split) + ": " + train_path.string() +
                  " has only " + std::to_string(train_set.size()) + " examples");
    auto perm = data::shuffled_indices(train_set.size(), opt.data_seed);
    eval_set.source = train_set.source;
    data::Dataset rest;
    rest.source = train_set.source;
    for (size_t i = 0; i < perm.size(); ++i)
      (i < static_cast<size_t>(opt.validation_split) ? eval_set : rest).examples.push_back(train_set.examples[perm[i]]);
    if (opt.train_samples > 0 && static_cast<size_t>(opt.train_samples) < rest.size())
      rest.examples.resize(static_cast<size_t>(opt.train_samples));
    train_set = std::move(rest);
    have_eval = true;
  } else {
    if (opt.train_samples > 0) train_set = data::shuffle_select(train_set, opt.data_seed, opt.train_samples);
    if (opt.eval_strategy != Strategy::No || !opt.eval_file.empty()) {
      eval_set = data::read_dataset(opt.eval_file.empty() ? data::nsmc_path("test") : fs::path(opt.eval_file), ro);
      if (opt.eval_samples > 0) eval_set = data::shuffle_select(eval_set, opt.data_seed, opt.eval_samples);
      have_eval = true;
    }
  }
  if (train_set.size() == 0) throw Error(train_path.string() + ": no training examples");
  data::Dataset test_set;
  if (!opt.test_file.empty()) test_set = data::read_dataset(opt.test_file, ro);

  TokenizedData train = tokenize(train_set, tok, opt.max_length, opt.threads);
  TokenizedData eval = have_eval ? tokenize(eval_set, tok, opt.max_length, opt.threads) : TokenizedData{};
  for (int32_t y : train.labels)
    if (y < 0) throw Error(train_path.string() + ": training examples need labels (--label-column)");

  // Steps, as Trainer computes them (drop_last=False, no gradient accumulation).
  const int bs = opt.per_device_train_batch_size;
  const int64_t steps_per_epoch = batches_per_epoch(train.size(), bs);
  TrainerState state;
  state.max_steps = opt.max_steps > 0 ? opt.max_steps
                                      : static_cast<int64_t>(std::ceil(opt.num_train_epochs * steps_per_epoch));
  state.num_train_epochs = opt.max_steps > 0 ? std::ceil(static_cast<double>(state.max_steps) / steps_per_epoch)
                                             : std::ceil(opt.num_train_epochs);
  const int64_t warmup = opt.warmup_steps > 0 ? opt.warmup_steps
                                              : static_cast<int64_t>(std::ceil(state.max_steps * opt.warmup_ratio));
  const Schedule schedule = parse_schedule(opt.lr_scheduler_type);
  const Json fingerprint = resume_fingerprint(opt, train.size());

  // HF's LengthGroupedSampler reads len(input_ids): with padding='max_length' at
  // tokenization every example is max_length long and grouping changes nothing.
  std::vector<int> sampling_lengths = train.lengths;
  if (opt.padding == Padding::MaxLength) sampling_lengths.assign(train.size(), opt.max_length);

  // ---- model and optimizer ----
  model::BertModel model(config, model::Task::SequenceClassification);
  if (!opt.model.empty()) {
    auto report = model.load_state_dict(pretrained.tensors, opt.seed);
    if (!report.initialised.empty())
      warn("Some weights of BertForSequenceClassification were not initialized from the model checkpoint at " +
           opt.model + " and are newly initialized: [" + join(report.initialised) + "]");
  } else {
    model.init_weights(opt.seed);
  }
  pretrained.tensors.clear();
  AdamWOptions ao;
  ao.beta1 = opt.adam_beta1;
  ao.beta2 = opt.adam_beta2;
  ao.eps = opt.adam_epsilon;
  ao.weight_decay = opt.weight_decay;
  ao.variant = parse_adamw_variant(opt.optim);
  AdamW optimizer(model, ao);
  model.set_dropout_seed(opt.seed);

  RunState run;
  EarlyStopping early{opt.early_stopping_patience, opt.early_stopping_threshold};
  if (!resume_dir.empty()) {
    Json extra = Json::parse(io::read_file(resume_dir / "bertune_state.json"));
    if (extra.value("fingerprint", Json()) != fingerprint)
      throw Error("--resume-from-checkpoint " + resume_dir.string() + " was made with " +
                  extra.value("fingerprint", Json()).dump() + " but this run has " + fingerprint.dump() +
                  "; the data order would differ");
    run = RunState::from_json(extra, (resume_dir / "bertune_state.json").string());
    TrainerState saved = TrainerState::load(resume_dir / "trainer_state.json");
    saved.max_steps = state.max_steps;
    saved.num_train_epochs = state.num_train_epochs;
    state = saved;
    model.load_state_dict(io::read_safetensors(resume_dir / "model.safetensors"), opt.seed);
    optimizer.load_state_dict(io::read_safetensors(resume_dir / "optimizer.safetensors"), run.optimizer_steps);
    model.set_dropout_step(run.dropout_step);
    early.counter = run.early_stopping_counter;
  }

  // ---- first writes ----
  fs::create_directories(output_dir);
  remove_interrupted_saves(output_dir);
  const fs::path log_path = output_dir / "log.jsonl";
  if (!resume_dir.empty()) JsonlLog::truncate_after(log_path, state.global_step);
  else if (fs::exists(log_path)) fs::remove(log_path);  // --overwrite-output-dir
  JsonlLog log(log_path);
  io::write_file_atomic(output_dir / "training_args.json", opt.to_json().dump(2) + "\n");

  const int64_t non_embedding = config.non_embedding_parameters();
  const int32_t pad_id = tok.pad_id();
  std::fprintf(out,
               "***** Running training *****\n"
               "  Num examples = %zu%s\n  Num Epochs = %g\n  Instantaneous batch size = %d\n"
               "  Total optimization steps = %lld\n  Warmup steps = %lld\n  Padding = %s%s\n"
               "  Model = %s (%d layers, hidden %d, %lld non-embedding parameters)%s\n",
               train.size(), have_eval ? (", eval " + std::to_string(eval.size())).c_str() : "",
               state.num_train_epochs, bs, static_cast<long long>(state.max_steps), static_cast<long long>(warmup),
               padding_name(opt.padding).c_str(), opt.group_by_length ? ", grouped by length" : "",
               opt.model.empty() ? (opt.model_config + ", random initialisation").c_str() : opt.model.c_str(),
               config.num_hidden_layers, config.hidden_size, static_cast<long long>(non_embedding),
               resume_dir.empty() ? "" : ("\n  Resuming from " + resume_dir.string() + " at step " +
                                          std::to_string(state.global_step)).c_str());
  std::fflush(out);

  Progress progress(state.max_steps, state.global_step);
  EpochTable table(out);
  const auto train_start = Clock::now();
  const int64_t start_samples = run.samples;
  const TokenCounts start_tokens = run.tokens;
  const int64_t start_step = state.global_step;
  double epoch_train_seconds = 0;
  TokenCounts epoch_tokens;
  std::string last_good_checkpoint = resume_dir.string();
  bool stop = false;

  auto log_record = [&](Json rec) {
    rec["epoch"] = std::round(state.epoch * 100.0) / 100.0;
    rec["step"] = state.global_step;
    state.log_history.push_back(rec);
    log.append(rec);
  };

  auto do_evaluate = [&](int64_t epoch_index) -> std::optional<double> {
    EvalResult er = evaluate(model, eval, opt.per_device_eval_batch_size, opt.padding, opt.max_length, pad_id);
    Json rec = er.record();
    log_record(rec);
    double train_loss = run.eval_loss_steps ? run.eval_loss_sum / run.eval_loss_steps : NAN;
    if (progress.is_tty()) progress.message("");
    table.row(state.epoch, state.global_step, train_loss, rec, seconds_since(train_start));
    run.eval_loss_sum = 0;
    run.eval_loss_steps = 0;
    std::string w = run.collapse.on_evaluate(er.metrics.accuracy, er.predictions, config.num_labels());
    if (!w.empty()) {
      progress.message(w);
      result.warnings.push_back(w);
    }
    if (opt.metric_for_best_model.empty()) return std::nullopt;
    double metric = rec.at(opt.metric_key()).get<double>();
    if (opt.early_stopping_patience > 0 && early.on_evaluate(metric, state.best_metric, opt.higher_is_better())) {
      progress.message("early stopping: " + opt.metric_key() + " has not improved by more than " +
                       std::to_string(opt.early_stopping_threshold) + " for " +
                       std::to_string(early.counter) + " evaluations");
      stop = true;
    }
    return metric;
  };

  auto do_save = [&](std::optional<double> metric) {
    fs::path dir = output_dir / ("checkpoint-" + std::to_string(state.global_step));
    if (metric) update_best(state, *metric, dir.string(), opt.higher_is_better());
    run.dropout_step = model.dropout_step();
    run.optimizer_steps = optimizer.steps_done();
    run.early_stopping_counter = early.counter;
    write_checkpoint(output_dir, dir, config, model, optimizer, state, run, opt, fingerprint, tokenizer_dir);
    last_good_checkpoint = dir.string();
    for (const auto& gone : rotate_checkpoints(output_dir, opt.save_total_limit, state.best_model_checkpoint))
      (void)gone;
  };

  while (state.global_step < state.max_steps && !stop) {
    const int64_t e = run.epoch_index;
    auto batches = split_batches(train_epoch_order(sampling_lengths, bs, opt.group_by_length, opt.seed, e), bs);
    auto epoch_start = Clock::now();
    if (run.batch_in_epoch == 0) epoch_tokens = TokenCounts{};
    for (int64_t b = run.batch_in_epoch; b < static_cast<int64_t>(batches.size()); ++b) {
      HostBatch hb = build_host_batch(train.ids, train.labels, batches[b], opt.padding, opt.max_length, pad_id);
      model::Batch mb = to_model_batch(hb);
      const double lr = learning_rate(schedule, opt.learning_rate, state.global_step, warmup, state.max_steps);
      float loss = model.forward(mb, /*train=*/true);
      bool finite = std::isfinite(loss);
      double norm = 0;
      if (finite) {
        model.backward();
        norm = clip_grad_norm(model, opt.max_grad_norm > 0 ? opt.max_grad_norm : INFINITY);
        finite = std::isfinite(norm);
      }
      if (finite) {
        optimizer.step(lr);  // also zeroes the gradients
        run.nonfinite_streak = 0;
        run.log_loss_sum += loss;
        run.log_loss_steps++;
        run.eval_loss_sum += loss;
        run.eval_loss_steps++;
        run.run_loss_sum += loss;
        run.run_loss_steps++;
      } else {
        model.zero_grad();
        run.skipped_steps++;
        run.nonfinite_streak++;
        progress.message("warning: step " + std::to_string(state.global_step + 1) + ": non-finite " +
                         (std::isfinite(loss) ? "gradient norm" : "loss") + " — step skipped, weights unchanged");
        if (run.nonfinite_streak >= 3)
          throw Error("training stopped at step " + std::to_string(state.global_step + 1) +
                      ": 3 steps in a row had a non-finite loss or gradient (learning rate too high?). " +
                      (last_good_checkpoint.empty() ? std::string("No checkpoint was saved yet.")
                                                    : "The last good checkpoint is " + last_good_checkpoint +
                                                          " (--resume-from-checkpoint " + last_good_checkpoint + ")"));
      }
      state.global_step++;
      run.batch_in_epoch = b + 1;
      state.epoch = e + static_cast<double>(b + 1) / static_cast<double>(batches.size());
      state.total_flos += 6.0 * static_cast<double>(hb.processed_tokens()) * static_cast<double>(non_embedding);
      run.samples += static_cast<int64_t>(hb.size());
      run.tokens.add(hb);
      epoch_tokens.add(hb);
      progress.step(state.global_step, state.epoch, loss, learning_rate(schedule, opt.learning_rate, state.global_step,
                                                                       warmup, state.max_steps),
                    static_cast<int64_t>(hb.size()), hb.real_tokens());

      const bool epoch_end = b + 1 == static_cast<int64_t>(batches.size());
      const bool last_step = state.global_step >= state.max_steps;
      if (state.global_step % opt.logging_steps == 0 && run.log_loss_steps > 0) {
        // HF logs the mean loss since the last log and the lr the next step will use.
        log_record({{"loss", run.log_loss_sum / run.log_loss_steps},
                    {"learning_rate", learning_rate(schedule, opt.learning_rate, state.global_step, warmup,
                                                    state.max_steps)}});
        run.log_loss_sum = 0;
        run.log_loss_steps = 0;
      }
      if (epoch_end || last_step) {
        epoch_train_seconds += seconds_since(epoch_start);
        log.append({{"epoch_end", e + 1}, {"step", state.global_step}, {"epoch_train_runtime", epoch_train_seconds},
                    {"epoch_real_tokens", epoch_tokens.real}, {"epoch_processed_tokens", epoch_tokens.processed},
                    {"epoch_padding_fraction", epoch_tokens.padding_fraction()}});
      }
      const bool eval_now = have_eval && ((opt.eval_strategy == Strategy::Steps && state.global_step % opt.eval_steps == 0) ||
                                          (opt.eval_strategy == Strategy::Epoch && (epoch_end || last_step)));
      const bool save_now = (opt.save_strategy == Strategy::Steps && state.global_step % opt.save_steps == 0) ||
                            (opt.save_strategy == Strategy::Epoch && (epoch_end || last_step));
      std::optional<double> metric;
      if (eval_now) metric = do_evaluate(e);
      if (epoch_end) {
        run.epoch_index = e + 1;
        run.batch_in_epoch = 0;
      }
      if (save_now && run.nonfinite_streak > 0)
        progress.message("warning: checkpoint-" + std::to_string(state.global_step) +
                         " not saved: the last step was skipped (non-finite)");
      else if (save_now)
        do_save(metric);
      if (epoch_end) epoch_train_seconds = 0;
      if (last_step || stop) break;
    }
    if (run.batch_in_epoch != 0 && state.global_step < state.max_steps && !stop) {
      run.epoch_index = e + 1;  // unreachable in practice: the loop above runs to the end
      run.batch_in_epoch = 0;
    }
  }
  progress.finish();
  const double train_runtime = seconds_since(train_start);

  // ---- the end: best model, summary, final model, test ----
  if (opt.load_best_model_at_end && state.best_model_checkpoint) {
    std::fprintf(out, "Loading best model from %s (%s = %.6g).\n", state.best_model_checkpoint->c_str(),
                 opt.metric_key().c_str(), *state.best_metric);
    model.load_state_dict(io::read_safetensors(fs::path(*state.best_model_checkpoint) / "model.safetensors"), opt.seed);
  }
  TrainSummary& s = result.summary;
  s.global_step = state.global_step;
  s.training_loss = run.run_loss_steps ? run.run_loss_sum / run.run_loss_steps : NAN;
  s.train_runtime = train_runtime;
  const int64_t samples_now = run.samples - start_samples;
  s.train_samples_per_second = train_runtime > 0 ? samples_now / train_runtime : 0;
  s.train_steps_per_second = train_runtime > 0 ? (state.global_step - start_step) / train_runtime : 0;
  s.total_flos = state.total_flos;
  s.epoch = state.epoch;
  s.real_tokens_per_second = train_runtime > 0 ? (run.tokens.real - start_tokens.real) / train_runtime : 0;
  s.padding_fraction = run.tokens.padding_fraction();
  s.skipped_steps = run.skipped_steps;
  Json final_rec = {{"train_runtime", s.train_runtime},
                    {"train_samples_per_second", s.train_samples_per_second},
                    {"train_steps_per_second", s.train_steps_per_second},
                    {"total_flos", s.total_flos},
                    {"train_loss", s.training_loss},
                    {"train_real_tokens_per_second", s.real_tokens_per_second},
                    {"train_padding_fraction", s.padding_fraction}};
  log_record(final_rec);
  std::fprintf(out, "%s\n", s.to_text().c_str());

  result.final_model_dir = output_dir / "final";
  write_model_dir(result.final_model_dir, config, model, tokenizer_dir);
  state.save(output_dir / "trainer_state.json");
  std::fprintf(out, "Saved the final model to %s\n", result.final_model_dir.c_str());

  if (have_eval) {
    result.final_eval = evaluate(model, eval, opt.per_device_eval_batch_size, opt.padding, opt.max_length, pad_id);
    std::fprintf(out, "\n***** Final evaluation (%zu examples) *****\n%s", eval.size(),
                 result.final_eval->metrics.report().c_str());
  }
  if (!opt.test_file.empty()) {
    TokenizedData test = tokenize(test_set, tok, opt.max_length, opt.threads);
    result.test = evaluate(model, test, opt.per_device_eval_batch_size, opt.padding, opt.max_length, pad_id);
    Json rec = result.test->record("test_");
    log_record(rec);
    std::fprintf(out, "\n***** Test (%s, %zu examples) *****\n%s", opt.test_file.c_str(), test.size(),
                 result.test->metrics.report().c_str());
  }
  std::fprintf(out, "Total wall time %s\n", format_duration(seconds_since(run_start)).c_str());
  result.state = state;
  return result;
}

}  // namespace bertune::train
