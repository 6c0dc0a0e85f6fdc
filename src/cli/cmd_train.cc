// bertune train | eval | predict | compare
#include <cstdio>
#include <fstream>
#include <sstream>

#include "cli/commands.h"
#include "data/dataset.h"
#include "io/atomic_file.h"
#include "kernels/ops.h"
#include "train/compare.h"
#include "train/presets.h"
#include "train/trainer.h"
#include "util/error.h"

namespace bertune::cli {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

struct TrainCommand {
  train::RawOptions raw;
  std::string preset;
};

void run_train(TrainCommand& c) {
  Json base;
  if (!c.preset.empty()) {
    const auto& p = train::find_preset(c.preset);
    base = p.options;
    base["preset"] = p.name;
    const bool own_model = c.raw.cli.at("model")->count() > 0;
    if (own_model) base.erase("model_config");
    std::fprintf(stderr, "preset %s: %s\n", p.name.c_str(), p.description.c_str());
    if (!own_model && base.contains("model_config"))
      std::fprintf(stderr,
                   "note: starting from RANDOM INITIALISATION of the architecture (pretrained klue/bert-base weights "
                   "are not available here); pass --model DIR with downloaded weights to run the notebook's "
                   "fine-tuning itself\n");
  }
  train::TrainOptions options = train::resolve_train_options(c.raw, base);
  train::run_training(options, stdout);
}

struct EvalCommand {
  std::string model, data, tokenizer, text_column = "document", label_column = "label", padding = "packed";
  int max_length = 128, batch_size = 64, threads = 0;
  int64_t samples = -1;
  uint64_t data_seed = 42;
  bool json = false;
};

void run_eval(const EvalCommand& c) {
  if (c.max_length < 2) throw Error("--max-length: must be at least 2");
  if (c.batch_size < 1) throw Error("--batch-size: must be positive");
  train::Padding padding = train::parse_padding(c.padding);
  kernels::set_num_threads(c.threads);
  auto model = train::load_classifier(c.model, 42);
  auto tok = train::load_tokenizer_for(c.model, c.tokenizer);
  data::ReadOptions ro;
  ro.text_column = c.text_column;
  ro.label_column = c.label_column;
  ro.num_labels = model->config().num_labels();
  auto d = data::read_dataset(c.data, ro);
  if (c.samples > 0) d = data::shuffle_select(d, c.data_seed, c.samples);
  const int max_length = std::min(c.max_length, model->config().max_position_embeddings);
  auto t = train::tokenize(d, tok, max_length, c.threads);
  auto r = train::evaluate(*model, t, c.batch_size, padding, max_length, tok.pad_id());
  if (c.json) {
    std::printf("%s\n", r.record().dump().c_str());
  } else {
    std::vector<std::string> names;
    for (const auto& [id, name] : model->config().id2label) names.push_back(name);
    std::printf("%s (%s)\n%s%.1f examples/s\n", c.data.c_str(), c.model.c_str(), r.metrics.report(names).c_str(),
                r.runtime > 0 ? r.metrics.count / r.runtime : 0.0);
  }
}

struct PredictCommand {
  std::string model, tokenizer, input, output, text_column;
  std::vector<std::string> texts;
  int max_length = 128, batch_size = 64, threads = 0;
};

void run_predict(const PredictCommand& c) {
  if (c.texts.empty() == c.input.empty()) throw Error("give texts as arguments or --input FILE (one of them)");
  kernels::set_num_threads(c.threads);
  auto model = train::load_classifier(c.model, 42);
  auto tok = train::load_tokenizer_for(c.model, c.tokenizer);
  data::Dataset d;
  if (!c.input.empty()) {
    std::string first_line;
    {
      std::ifstream in(c.input);
      if (!in) throw Error("--input: cannot open " + c.input);
      std::getline(in, first_line);
    }
    if (!c.text_column.empty() || first_line.find('\t') != std::string::npos || c.input.ends_with(".jsonl") ||
        c.input.ends_with(".csv")) {
      data::ReadOptions ro;
      ro.text_column = c.text_column.empty() ? "document" : c.text_column;
      ro.label_column = "";
      d = data::read_dataset(c.input, ro);
    } else {
      std::istringstream in(io::read_file(c.input));
      std::string line;
      int64_t n = 0;
      while (std::getline(in, line)) {
        ++n;
        if (!line.empty() && line.back() == '\r') line.pop_back();
        d.examples.push_back({line, -1, n});
      }
    }
  } else {
    for (const auto& t : c.texts) d.examples.push_back({t, -1, 0});
  }
  // Longer than the model's positions cannot be encoded: truncate there, as HF does with
  // truncation=True and model_max_length.
  const int max_length = std::min(c.max_length, model->config().max_position_embeddings);
  auto t = train::tokenize(d, tok, max_length, c.threads);
  auto r = train::evaluate(*model, t, c.batch_size, train::Padding::Packed, max_length, tok.pad_id(), true);
  const int k = model->config().num_labels();
  std::string out;
  for (size_t i = 0; i < d.size(); ++i) {
    const float* logits = r.logits.data() + i * k;
    auto probs = train::softmax(logits, k);
    Json rec = {{"label", r.predictions[i]},
                {"probs", probs},
                {"logits", std::vector<float>(logits, logits + k)}};
    auto it = model->config().id2label.find(r.predictions[i]);
    if (it != model->config().id2label.end()) rec["label_name"] = it->second;
    out += rec.dump() + "\n";
  }
  if (c.output.empty()) std::fwrite(out.data(), 1, out.size(), stdout);
  else io::write_file_atomic(c.output, out);
}

}  // namespace

void add_train_commands(CLI::App& app) {
  auto* train_cmd = app.add_subcommand("train", "Fine-tune a BERT classifier with Hugging Face Trainer semantics");
  auto tc = std::make_shared<TrainCommand>();
  train_cmd->add_option("--preset", tc->preset, "notebook-1|notebook-2|notebook-3|notebook-4|main");
  train::add_train_option_flags(train_cmd, tc->raw);
  train_cmd->callback([tc] { run_train(*tc); });

  auto* eval_cmd = app.add_subcommand("eval", "Evaluate a classifier directory on a labelled file");
  auto ec = std::make_shared<EvalCommand>();
  eval_cmd->add_option("--model", ec->model, "model directory (HF layout)")->required();
  eval_cmd->add_option("--data", ec->data, "labelled data (NSMC TSV, CSV, JSONL)")->required();
  eval_cmd->add_option("--tokenizer", ec->tokenizer, "tokenizer directory (default: the model's)");
  eval_cmd->add_option("--text-column", ec->text_column, "text column");
  eval_cmd->add_option("--label-column", ec->label_column, "label column");
  eval_cmd->add_option("--max-length", ec->max_length, "truncate to this many tokens");
  eval_cmd->add_option("--batch-size", ec->batch_size, "batch size");
  eval_cmd->add_option("--padding", ec->padding, "max_length|longest|packed");
  eval_cmd->add_option("--samples", ec->samples, "evaluate N examples: shuffle(data_seed) then select");
  eval_cmd->add_option("--data-seed", ec->data_seed, "seed of --samples");
  eval_cmd->add_option("--threads", ec->threads, "compute threads (0: all cores)");
  eval_cmd->add_flag("--json", ec->json, "one JSON object instead of the report");
  eval_cmd->callback([ec] { run_eval(*ec); });

  auto* pred_cmd = app.add_subcommand("predict", "Classify texts: one JSON line {label, probs, logits} per text");
  auto pc = std::make_shared<PredictCommand>();
  pred_cmd->add_option("--model", pc->model, "model directory (HF layout)")->required();
  pred_cmd->add_option("texts", pc->texts, "texts to classify");
  pred_cmd->add_option("--input", pc->input, "file: one text per line, or a TSV/CSV/JSONL text column");
  pred_cmd->add_option("--text-column", pc->text_column, "text column of --input (default: document)");
  pred_cmd->add_option("--output", pc->output, "write the JSONL here (default: stdout)");
  pred_cmd->add_option("--tokenizer", pc->tokenizer, "tokenizer directory (default: the model's)");
  pred_cmd->add_option("--max-length", pc->max_length, "truncate to this many tokens");
  pred_cmd->add_option("--batch-size", pc->batch_size, "batch size");
  pred_cmd->add_option("--threads", pc->threads, "compute threads (0: all cores)");
  pred_cmd->callback([pc] { run_predict(*pc); });

  add_compare_command(app);
}

}  // namespace bertune::cli
