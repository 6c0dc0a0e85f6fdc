// bertune tokenize: texts -> JSONL {"ids": [...], "tokens": [...]}, exactly as
// transformers' BertTokenizer encodes them (with [CLS] ... [SEP]).
#include <cstdio>
#include <filesystem>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/validators.h"
#include "data/dataset.h"
#include "io/atomic_file.h"
#include "io/read_file.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::cli {
namespace fs = std::filesystem;

namespace {

struct TokenizeArgs {
  std::string tokenizer_dir;
  std::vector<std::string> texts;
  std::string input;
  std::string text_column;
  std::string format = "auto";
  std::string output;
  int max_length = 0;
  int threads = 0;
};

bool is_table(const fs::path& p) {
  const std::string ext = p.extension().string();
  return ext == ".tsv" || ext == ".csv" || ext == ".jsonl" || ext == ".json";
}

void append_json_line(std::string& out, const text::Tokenizer& tok, const text::Encoding& e) {
  out += "{\"ids\": [";
  for (size_t i = 0; i < e.ids.size(); ++i) {
    if (i) out += ", ";
    out += std::to_string(e.ids[i]);
  }
  out += "], \"tokens\": [";
  for (size_t i = 0; i < e.ids.size(); ++i) {
    if (i) out += ", ";
    // Tokens are valid UTF-8 (the vocabulary was checked on load), so
    // nlohmann's escaping cannot throw here.
    out += nlohmann::json(tok.id_to_token(e.ids[i])).dump();
  }
  out += "]}\n";
}

void run_tokenize(const TokenizeArgs& a) {
  const bool to_stdout = a.output.empty() || a.output == "-";
  if (!to_stdout) io::require_replaceable_file(a.output, "--output");
  const fs::path dir = a.tokenizer_dir.empty() ? shared_path("models/klue-bert-base") : fs::path(a.tokenizer_dir);
  if (!to_stdout) io::require_distinct_paths(dir, "--tokenizer", a.output, "--output");  // or a file inside it
  const text::Tokenizer tok = text::Tokenizer::load(dir);

  std::vector<std::string> texts;
  if (!a.input.empty()) {
    if (!a.texts.empty()) throw Error("give texts on the command line or --input FILE, not both");
    const fs::path in(a.input);
    if (!to_stdout) io::require_distinct_paths(in, "--input", a.output, "--output");
    if (!a.text_column.empty() || a.format != "auto" || is_table(in)) {
      data::ReadOptions o;
      o.format = data::parse_format(a.format);
      o.text_column = a.text_column.empty() ? "document" : a.text_column;
      o.label_column = "";  // labels are not needed to tokenize
      for (auto& ex : data::read_dataset(in, o).examples) texts.push_back(std::move(ex.text));
    } else {
      texts = data::read_text_lines(in);  // invalid UTF-8: Error naming FILE:LINE
    }
  } else {
    texts = a.texts;
    for (size_t i = 0; i < texts.size(); ++i) data::require_utf8(texts[i], "text " + std::to_string(i + 1));
  }
  if (texts.empty() && a.input.empty()) throw Error("nothing to tokenize: give texts or --input FILE (see --help)");

  text::EncodeOptions eo;
  eo.max_length = a.max_length;
  const auto encodings = tok.encode_batch(texts, eo, a.threads);

  std::string out;
  out.reserve(texts.size() * 256);
  for (const auto& e : encodings) append_json_line(out, tok, e);
  if (to_stdout) {
    std::fwrite(out.data(), 1, out.size(), stdout);
    io::flush_standard_output();
  } else {
    io::write_file_atomic(a.output, out);  // whole or nothing
  }
}

}  // namespace

void add_tokenize_commands(CLI::App& app) {
  auto args = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "tokenize",
      "Tokenize texts exactly as Hugging Face's BertTokenizer (transformers 4.30) does, one JSON line per text:\n"
      "  {\"ids\": [2, ..., 3], \"tokens\": [\"[CLS]\", ..., \"[SEP]\"]}\n"
      "Examples:\n"
      "  bertune tokenize \"아 더빙.. 진짜 짜증나네요\" \"굳 ㅋ\"\n"
      "  bertune tokenize --input reviews.txt                  # one text per line\n"
      "  bertune tokenize --input ratings_test.txt --format tsv --text-column document --max-length 128\n"
      "  bertune tokenize --input data.tsv --output tokens.jsonl");
  add_texts_positional(cmd, "texts", args->texts, "Texts to tokenize, one argument each (instead of --input)");
  cmd->add_option("--tokenizer", args->tokenizer_dir,
                  "Tokenizer directory: vocab.txt (+ tokenizer_config.json) or tokenizer.json "
                  "[default: shared/models/klue-bert-base]");
  cmd->add_option("-i,--input", args->input,
                  "Read texts from FILE: one per line, or a table (.tsv/.csv/.jsonl, or when "
                  "--text-column/--format is given; TSV as HF's nsmc loader reads it: header line, "
                  "no quote processing)");
  cmd->add_option("--text-column", args->text_column, "Column (or JSONL key) holding the text [default: document]");
  cmd->add_option("--format", args->format, "Input table format: auto (by extension), tsv, csv, jsonl")
      ->check(CLI::IsMember({"auto", "tsv", "csv", "jsonl", "json"}));
  cmd->add_option("--max-length", args->max_length,
                  "Truncate to N ids, [CLS] and [SEP] included (the last kept id is [SEP]); 0: no truncation")
      ->check(integer_range(0));
  cmd->add_option("-o,--output", args->output, "Write the JSONL here (atomically; a regular file) instead of stdout (-)");
  cmd->add_option("--threads", args->threads, "Threads for encoding [default: all cores]")
      ->check(integer_range(0));
  cmd->callback([args] { run_tokenize(*args); });
}

}  // namespace bertune::cli
