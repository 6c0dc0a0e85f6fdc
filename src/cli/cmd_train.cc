// bertune train | compare | eval | predict
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <functional>

#include "cli/commands.h"
#include "cli/validators.h"
#include "cli/train_flags.h"
#include "data/dataset.h"
#include "data/tagged.h"
#include "infer/classifier.h"
#include "infer/entities.h"
#include "infer/evaluate.h"
#include "infer/metrics.h"
#include "infer/predictions.h"
#include "infer/tagged.h"
#include "io/atomic_file.h"
#include "io/read_file.h"
#include "kernels/cpu_runtime.h"
#include "kernels/memory.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "text/unk_rate.h"
#include "train/compare.h"
#include "train/memory_plan.h"
#include "train/trainer.h"
#include "util/error.h"

namespace bertune::cli {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// The flags eval and predict share: how texts become batches, and on how many threads.
struct InferenceFlags {
  std::string model, tokenizer, text_column, text_pair_column, device = "cpu";
  std::string precision;  // empty: the device's default
  int max_length = 128, batch_size = 64, threads = 0;
  bool allow_untrained_head = false, int8 = false;
  bool max_length_given = false;  // --max-length on the command line: past the model's positions is an error
};

void add_inference_flags(CLI::App* cmd, InferenceFlags& f, const std::string& text_column_help) {
  cmd->add_option("--model", f.model, "model directory (HF layout)")->required();
  cmd->add_option("--tokenizer", f.tokenizer, "tokenizer directory (default: the model's)");
  cmd->add_option("--text-column", f.text_column, text_column_help);
  cmd->add_option("--text-pair-column", f.text_pair_column, train::find_train_option("text_pair_column")->help);
  cmd->add_option("--max-length", f.max_length, "truncate to this many tokens")
      ->capture_default_str()
      ->each([&f](const std::string&) { f.max_length_given = true; });
  cmd->add_option("--batch-size", f.batch_size, "batch size")->capture_default_str();
  cmd->add_option("--threads", f.threads, "compute threads (0: all cores)")->capture_default_str();
  // The help of training's --device (the options table), so every command describes it alike.
  cmd->add_option("--device", f.device, train::find_train_option("device")->help)->capture_default_str();
  cmd->add_option("--precision", f.precision, train::find_train_option("precision")->help)->type_name("fp32|tf32|bf16");
  cmd->add_flag("--int8", f.int8,
                "int8 encoder linears: quantize an fp32 model while loading (an int8 directory from "
                "`bertune quantize` is int8 without it); CPU only");
  cmd->add_flag("--allow-untrained-head", f.allow_untrained_head,
                "use a model without a trained classifier head (a random one is made: predictions are meaningless)");
}

// The classifier (fp32, int8 directory, or quantized on load: the loader serve uses too),
// its tokenizer, and the longest sequence both can take, on the device the flags name.
// `texts`: how many the command will run, when known: the memory a batch needs is for no
// more texts than that (predict of one text with --batch-size 2000000000 needs one text's).
std::unique_ptr<infer::Classifier> load_for_inference(const InferenceFlags& f, const char* command, bool metrics,
                                                      size_t texts = SIZE_MAX) {
  if (f.max_length < 2) throw Error("--max-length: must be at least 2 (got " + std::to_string(f.max_length) + ")");
  if (f.max_length < 3 && !f.text_pair_column.empty())
    throw Error("--max-length: must be at least 3 for sentence pairs (got " + std::to_string(f.max_length) + ")");
  if (f.batch_size < 1) throw Error("--batch-size: must be positive");
  if (f.threads < 0) throw Error("--threads: must not be negative (0: all cores)");  // as train's validate()
  kernels::Device device = kernels::Device::CPU;
  try {
    device = kernels::parse_device(f.device);
  } catch (const Error& e) {
    throw Error(std::string("--device: ") + e.what());
  }
  // Before require_device: the refusal reads the same with or without a usable GPU.
  if (f.int8 && device != kernels::Device::CPU)
    throw Error("--int8: int8 inference runs on the CPU only; use --device cpu, or drop --int8 to run fp32 on " +
                std::string(kernels::device_name(device)));
  const kernels::Precision resolved = train::resolve_precision(device, parse_precision_flag(f.precision));
  kernels::require_device(device);
  if (device == kernels::Device::CPU) {
    const int batch = static_cast<int>(std::min<size_t>(static_cast<size_t>(f.batch_size), std::max<size_t>(texts, 1)));
    train::require_inference_memory(f.model, batch, f.max_length, metrics, command);
  }
  kernels::set_num_threads(f.threads);
  kernels::set_precision(device, resolved);
  infer::ClassifierOptions o;
  o.tokenizer = f.tokenizer;
  o.max_length = f.max_length;
  o.max_length_given = f.max_length_given;
  o.int8 = f.int8;
  o.device = device;
  o.untrained_head = f.allow_untrained_head ? infer::UntrainedHead::Warn : infer::UntrainedHead::Refuse;
  auto classifier = infer::Classifier::load(f.model, o);
  if (!f.text_pair_column.empty()) model::require_pair_token_type(classifier->model().config(), f.model);
  return classifier;
}

// The first batch's [UNK] share: a tokenizer that does not fit the text shows at once.
void warn_if_unknown_tokens(const infer::Classifier& m, const infer::TokenizedData& t, const InferenceFlags& f) {
  const size_t n = std::min(t.size(), static_cast<size_t>(f.batch_size));
  const std::vector<std::vector<int32_t>> first(t.ids.begin(), t.ids.begin() + static_cast<std::ptrdiff_t>(n));
  const std::string dir = f.tokenizer.empty() ? f.model : f.tokenizer;
  if (auto w = text::unk_warning(text::unk_rate(m.tokenizer(), first), dir)) std::fprintf(stderr, "%s\n", w->c_str());
}

// Finite weights can still overflow on some text (float32 activations past 3.4e38); its
// logits would print as null probabilities and label 0. Refuse, naming the first such text
// (`where(i)`), before anything is written.
void require_finite_logits(const std::vector<float>& logits, int k, const std::function<std::string(size_t)>& where) {
  const int64_t row = infer::first_non_finite_row(logits.data(), logits.size() / k, k);
  if (row < 0) return;
  std::string values;
  for (int j = 0; j < k; ++j) {
    char v[32];
    std::snprintf(v, sizeof v, "%s%g", j ? ", " : "", logits[row * k + j]);
    values += v;
  }
  throw Error(where(static_cast<size_t>(row)) + ": the model's logits [" + values +
              "] are not finite (its activations overflow float32 on this text)");
}

void run_train(const TrainFlags& flags) {
  train::run_training(resolve_train_flags(flags, preset_base(flags.preset, flags, /*announce=*/true)), stdout);
}

// The options compare sets itself in every mode (train/compare.cc): given as flags they would
// be dropped without a word, so they are refused, with the reason.
void refuse_flags_compare_sets(const TrainFlags& flags) {
  static const std::pair<const char*, const char*> kSet[] = {
      {"padding", "compare trains once in each padding mode (max_length, longest, longest+group_by_length, packed)"},
      {"group_by_length", "compare trains once in each padding mode, one of them longest+group_by_length"},
      {"resume_from_checkpoint", "every mode trains from the start"},
      {"eval_strategy", "every mode evaluates after each epoch"},
      {"evaluation_strategy", "every mode evaluates after each epoch"},
      {"eval_steps", "every mode evaluates after each epoch"},
      {"save_strategy", "no mode saves checkpoints (their time would enter the comparison)"},
      {"save_steps", "no mode saves checkpoints (their time would enter the comparison)"},
      {"save_total_limit", "no mode saves checkpoints (their time would enter the comparison)"},
      {"load_best_model_at_end", "every mode trains all its epochs, without a best-model choice"},
      {"metric_for_best_model", "every mode trains all its epochs, without a best-model choice"},
      {"greater_is_better", "every mode trains all its epochs, without a best-model choice"},
      {"early_stopping_patience", "every mode trains the same epochs (no early stopping)"},
      {"early_stopping_threshold", "every mode trains the same epochs (no early stopping)"},
      {"test_file", "compare reports the evaluation accuracy of each epoch, not a test set's"}};
  for (const auto& [key, why] : kSet)
    if (flags.given(key))
      throw Error("compare: " + train::option_flag(key) + " is not used: " + why + "; drop it (train honours it)");
}

void run_compare(const TrainFlags& flags) {
  refuse_flags_compare_sets(flags);
  nlohmann::json base = preset_base(flags.preset, flags, /*announce=*/true);
  if (!flags.given("output_dir"))
    base["output_dir"] = base.contains("output_dir") ? base["output_dir"].get<std::string>() + "-compare"
                                                     : std::string("runs/compare");
  train::run_compare(resolve_train_flags(flags, base), stdout);
}

struct EvalCommand {
  InferenceFlags in;
  std::string data, label_column = "label", padding = "packed";
  int64_t samples = -1;
  uint64_t data_seed = 42;
  bool json = false;
};

void print_eval(const EvalCommand& c, const infer::Classifier& m, const infer::EvalResult& r) {
  if (c.json) {
    std::printf("%s\n", r.record().dump().c_str());
    return;
  }
  std::vector<std::string> names;
  for (const auto& [id, name] : m.model().config().id2label) names.push_back(name);
  std::printf("%s (%s)\n%s%.1f examples/s\n", c.data.c_str(), c.in.model.c_str(), r.metrics.report(names).c_str(),
              r.runtime > 0 ? r.metrics.count / r.runtime : 0.0);
}

// A token classifier (BertForTokenClassification) on tagged data (data/tagged.h): entity
// precision / recall / F1 and token accuracy.
void run_eval_tagged(const EvalCommand& c, infer::Classifier& m, infer::Padding padding) {
  // Tagged data is a token and its tag per line: no text columns to choose.
  const char* other = !c.in.text_pair_column.empty() ? "--text-pair-column"
                      : !c.in.text_column.empty()    ? "--text-column"
                                                     : nullptr;
  if (other)
    throw Error(std::string(other) + ": " + c.in.model + " is a token classifier, which reads tagged data (a token " +
                "and its tag per line, or JSONL tokens and tags): the flag does not apply");
  data::TaggedDataset d = data::read_tagged(c.data);
  if (d.size() == 0) throw Error(c.data + ": no sentences to evaluate");
  if (c.samples > 0) d = data::select_sentences(d, c.data_seed, c.samples, "--samples");
  const auto t = infer::tokenize_tagged(d, m.tokenizer(), m.max_length(), infer::label_ids(m.model().config()));
  warn_if_unknown_tokens(m, t, c.in);
  const auto r = infer::evaluate(m.model(), t, c.in.batch_size, padding, m.max_length(), m.tokenizer().pad_id(),
                                 /*keep_logits=*/false, /*sort_by_length=*/true);
  print_eval(c, m, r);
}

void run_eval(const EvalCommand& c) {
  infer::Padding padding = infer::parse_padding(c.padding);
  // -1: all; datasets' select(range(N)) has no "0 or fewer means all".
  if (c.samples == 0 || c.samples < -1) throw Error("--samples: must be positive (got " + std::to_string(c.samples) + ")");
  const std::unique_ptr<infer::Classifier> m = load_for_inference(c.in, "eval", /*metrics=*/true);
  if (m->model().task() == model::Task::TokenClassification) return run_eval_tagged(c, *m, padding);
  data::ReadOptions ro;
  ro.text_column = c.in.text_column.empty() ? "document" : c.in.text_column;
  ro.text_pair_column = c.in.text_pair_column;
  ro.label_column = c.label_column;
  infer::set_label_options(ro, m->model().config());
  auto d = data::read_dataset(c.data, ro);
  // Metrics of zero examples read as a model that gets everything wrong.
  if (d.size() == 0) throw Error(c.data + ": no examples to evaluate");
  if (c.samples > 0) d = data::select_samples(d, c.data_seed, c.samples, "--samples");
  auto t = infer::tokenize(d, m->tokenizer(), m->max_length(), c.in.threads);
  warn_if_unknown_tokens(*m, t, c.in);
  auto r = infer::evaluate(m->model(), t, c.in.batch_size, padding, m->max_length(), m->tokenizer().pad_id(),
                           /*keep_logits=*/true, /*sort_by_length=*/true);
  require_finite_logits(r.logits, m->num_labels(),
                        [&](size_t i) { return c.data + ":" + std::to_string(d.examples[i].line); });
  print_eval(c, *m, r);
}

struct PredictCommand {
  InferenceFlags in;
  std::string input, output;
  std::vector<std::string> texts;
  std::string aggregation;  // a token classifier's aggregation_strategy; empty: simple
};

void run_predict(const PredictCommand& c) {
  if (c.texts.empty() == c.input.empty()) throw Error("give texts as arguments or --input FILE (one of them)");
  if (!c.texts.empty() && !c.in.text_pair_column.empty())
    throw Error("--text-pair-column reads pairs from --input FILE (a TSV/CSV/JSONL with both columns), "
                "not from texts given as arguments");
  infer::EntityOptions entities;
  try {
    if (!c.aggregation.empty()) entities.aggregation = infer::parse_aggregation(c.aggregation);
  } catch (const Error& e) {
    throw Error(std::string("--aggregation-strategy: ") + e.what());
  }
  const bool to_stdout = c.output.empty() || c.output == "-";
  if (!to_stdout) io::require_replaceable_file(c.output, "--output");
  if (!c.input.empty() && !to_stdout) io::require_distinct_paths(c.input, "--input", c.output, "--output");
  if (!to_stdout) {  // nor a file of the model or tokenizer directory (config.json, weights, vocab.txt)
    io::require_distinct_paths(c.in.model, "--model", c.output, "--output");
    if (!c.in.tokenizer.empty()) io::require_distinct_paths(c.in.tokenizer, "--tokenizer", c.output, "--output");
  }
  const std::string& text_column = c.in.text_column;
  data::Dataset d;
  if (!c.input.empty()) {
    // Directories, gzip and invalid UTF-8 (named FILE:LINE) are handled by the line reader.
    std::vector<std::string> lines = data::read_text_lines(c.input);
    const bool table = !text_column.empty() || !c.in.text_pair_column.empty() || c.input.ends_with(".jsonl") ||
                       c.input.ends_with(".csv") ||
                       (!lines.empty() && lines.front().find('\t') != std::string::npos);
    if (table) {
      data::ReadOptions ro;
      ro.text_column = text_column.empty() ? "document" : text_column;
      ro.text_pair_column = c.in.text_pair_column;
      ro.label_column = "";
      d = data::read_dataset(c.input, ro);
    } else {
      int64_t n = 0;
      for (auto& line : lines) d.examples.push_back({std::move(line), -1, ++n, {}, {}});
    }
    // An empty file (a wrong redirection, a failed export) must not look like a finished job.
    if (d.size() == 0) throw Error(c.input + ": no texts to predict");
  } else {
    for (size_t i = 0; i < c.texts.size(); ++i) {
      data::require_utf8(c.texts[i], "text " + std::to_string(i + 1));
      d.examples.push_back({c.texts[i], -1, 0, {}, {}});
    }
  }
  // The texts are read (and refused) before the model is loaded.
  const std::unique_ptr<infer::Classifier> m = load_for_inference(c.in, "predict", /*metrics=*/false, d.size());
  auto write = [&](const std::string& out) {
    if (to_stdout) std::fwrite(out.data(), 1, out.size(), stdout);  // checked by main's flush
    else io::write_file_atomic(c.output, out);
  };
  if (m->model().task() == model::Task::TokenClassification) {  // a JSON list of entity spans per text
    if (!c.in.text_pair_column.empty())
      throw Error("--text-pair-column: " + c.in.model + " is a token classifier, which tags single texts");
    std::vector<std::string> texts;
    for (const auto& e : d.examples) texts.push_back(e.text);
    std::string out;
    for (const auto& spans :
         infer::predict_entities(m->model(), m->tokenizer(), texts, m->max_length(), c.in.batch_size, entities))
      out += infer::spans_json(spans, entities.aggregation).dump() + "\n";
    return write(out);
  }
  if (!c.aggregation.empty())
    throw Error("--aggregation-strategy: " + c.in.model + " is a sequence classifier; the flag applies to token "
                "classifiers (entity spans)");
  auto t = infer::tokenize(d, m->tokenizer(), m->max_length(), c.in.threads);
  warn_if_unknown_tokens(*m, t, c.in);
  auto r = infer::evaluate(m->model(), t, c.in.batch_size, infer::Padding::Packed, m->max_length(),
                           m->tokenizer().pad_id(), /*keep_logits=*/true, /*sort_by_length=*/true);
  require_finite_logits(r.logits, m->num_labels(), [&](size_t i) {
    return c.input.empty() ? "text " + std::to_string(i + 1) : c.input + ":" + std::to_string(d.examples[i].line);
  });
  const int k = m->num_labels();
  std::string out;
  for (size_t i = 0; i < d.size(); ++i)
    out += infer::prediction_record(r.logits.data() + i * k, m->label_names(), m->problem_type()).dump() + "\n";
  write(out);
}

}  // namespace

void add_train_commands(CLI::App& app) {
  auto* train_cmd = app.add_subcommand("train", "Fine-tune a BERT classifier with Hugging Face Trainer semantics");
  auto tf = std::make_shared<TrainFlags>();
  add_train_flags(train_cmd, *tf);
  train_cmd->callback([tf] { run_train(*tf); });

  auto* compare_cmd = app.add_subcommand(
      "compare", "Train the same model four ways (max_length, longest, longest+group_by_length, packed) and compare");
  auto cf = std::make_shared<TrainFlags>();
  add_train_flags(compare_cmd, *cf);
  compare_cmd->callback([cf] { run_compare(*cf); });

  auto* eval_cmd = app.add_subcommand("eval", "Evaluate a classifier directory on a labelled file");
  auto ec = std::make_shared<EvalCommand>();
  add_inference_flags(eval_cmd, ec->in, "text column (default: document)");
  eval_cmd->add_option("--data", ec->data,
                       "labelled data (NSMC TSV, CSV, JSONL; a token classifier: tagged CoNLL columns or JSONL)")
      ->required();
  eval_cmd->add_option("--label-column", ec->label_column, "label column");
  eval_cmd->add_option("--padding", ec->padding, "max_length|longest|packed");
  eval_cmd->add_option("--samples", ec->samples, "evaluate N examples: shuffle(data_seed) then select");
  eval_cmd->add_option("--data-seed", ec->data_seed, "seed of --samples")->check(not_negative());  // unsigned
  eval_cmd->add_flag("--json", ec->json, "one JSON object instead of the report");
  eval_cmd->callback([ec] { run_eval(*ec); });

  auto* pred_cmd = app.add_subcommand("predict", "Classify texts: one JSON line {label, probs, logits} per text");
  auto pc = std::make_shared<PredictCommand>();
  add_inference_flags(pred_cmd, pc->in, "text column of --input (default: document)");
  add_texts_positional(pred_cmd, "texts", pc->texts, "texts to classify, one argument each");
  pred_cmd->add_option("--input", pc->input, "file: one text per line, or a TSV/CSV/JSONL text column");
  pred_cmd->add_option("--output", pc->output, "write the JSONL here, a regular file (default or -: stdout)");
  pred_cmd->add_option("--aggregation-strategy", pc->aggregation,
                       "token classifiers: none (one record per piece) | simple (default) | first | average | max, "
                       "as transformers' token-classification pipeline");
  pred_cmd->callback([pc] { run_predict(*pc); });
}

}  // namespace bertune::cli
