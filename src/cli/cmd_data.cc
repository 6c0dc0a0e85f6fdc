// `bertune data stats|head` and `bertune download nsmc`.
#include <algorithm>
#include <cstdio>
#include <memory>
#include <string>

#include "cli/commands.h"
#include "cli/validators.h"
#include "data/dataset.h"
#include "data/download.h"
#include "data/stats.h"
#include "model/config.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::cli {
namespace {

// Options every data subcommand reads a file with.
struct ReadFlags {
  std::string file;
  std::string format = "auto";
  std::string text_column = "document";
  std::string label_column = "label";
  int num_labels = 2;
  std::string problem_type;  // "": integer class labels
  std::string label_names;   // multi-label: the names a label set may use, comma-separated
  bool skip_bad_rows = false;
  int64_t samples = -1;
  uint64_t data_seed = 42;

  void add_to(CLI::App* cmd) {
    cmd->add_option("file", file, "Data file (default: NSMC train split)");
    cmd->add_option("--format", format, "auto|tsv|csv|jsonl (auto: by extension, else TSV)")
        ->capture_default_str();
    cmd->add_option("--text-column", text_column, "Column (or JSON key) holding the text")->capture_default_str();
    cmd->add_option("--label-column", label_column, "Column holding the integer label; empty: unlabelled")
        ->capture_default_str();
    cmd->add_option("--num-labels", num_labels, "Labels must lie in [0, N)")->capture_default_str();
    cmd->add_option("--problem-type", problem_type,
                    "How the label column reads, as train takes it: single_label_classification (integer "
                    "classes, the default), regression (numbers), multi_label_classification (label sets)");
    cmd->add_option("--label-names", label_names,
                    "multi_label_classification: the label names, comma-separated (sets the number of labels)");
    cmd->add_flag("--skip-bad-rows", skip_bad_rows, "Skip (and count) malformed rows instead of stopping");
    cmd->add_option("--samples", samples,
                    "Use N rows picked as dataset.shuffle(seed).select(range(N)) does (numpy-exact)");
    // Unsigned: CLI11 alone would turn -1 into 2^64-1 (numpy refuses negative seeds).
    cmd->add_option("--data-seed", data_seed, "Seed of that shuffle")->capture_default_str()->check(not_negative());
  }

  data::LabelKind label_kind() const {
    if (problem_type.empty()) return data::LabelKind::Class;
    model::ProblemType t;
    try {
      t = model::parse_problem_type(problem_type);
    } catch (const Error& e) {
      throw Error(std::string("--problem-type: ") + e.what());
    }
    return t == model::ProblemType::Regression   ? data::LabelKind::Score
           : t == model::ProblemType::MultiLabel ? data::LabelKind::LabelSet
                                                 : data::LabelKind::Class;
  }

  data::Dataset read() const {
    if (num_labels < 1) throw Error("--num-labels: must be positive (got " + std::to_string(num_labels) + ")");
    if (samples < -1 || samples == 0)
      throw Error("--samples: must be positive (got " + std::to_string(samples) + ")");
    data::ReadOptions o;
    o.format = data::parse_format(format);
    o.text_column = text_column;
    o.label_column = label_column;
    o.num_labels = num_labels;
    o.label_kind = label_kind();
    if (!label_names.empty()) {
      if (o.label_kind != data::LabelKind::LabelSet)
        throw Error("--label-names: names the labels of multi_label_classification data only");
      o.label_names = split_list(label_names);
      for (const auto& name : o.label_names)
        if (name.empty()) throw Error("--label-names: an empty name in '" + label_names + "'");
      o.num_labels = static_cast<int>(o.label_names.size());
    }
    o.skip_bad_rows = skip_bad_rows;
    std::filesystem::path path = file.empty() ? data::nsmc_path("train") : std::filesystem::path(file);
    data::Dataset d = data::read_dataset(path, o);
    if (!d.skipped.empty()) std::fprintf(stderr, "bertune: %s\n", data::describe_skipped(d).c_str());
    // datasets' select(range(N)) raises IndexError past the end; so do we,
    // rather than print a header claiming N rows.
    if (samples > static_cast<int64_t>(d.size()))
      throw Error("--samples " + std::to_string(samples) + ": " + path.string() + " has only " +
                  std::to_string(d.size()) + " rows");
    if (samples >= 0) d = data::shuffle_select(d, data_seed, samples);
    return d;
  }
};

// One line of a document for a terminal: control characters escaped, cut
// after max_chars code points (never inside a UTF-8 sequence).
std::string display_text(const std::string& text, size_t max_chars) {
  std::string out;
  size_t chars = 0;
  for (size_t i = 0; i < text.size(); ++i) {
    unsigned char c = static_cast<unsigned char>(text[i]);
    if ((c & 0xc0) != 0x80 && chars++ == max_chars) {
      out += "…";
      break;
    }
    if (c == '\n') out += "\\n";
    else if (c == '\r') out += "\\r";
    else if (c == '\t') out += "\\t";
    else out.push_back(static_cast<char>(c));
  }
  return out;
}

void run_head(const ReadFlags& flags, int rows, bool json) {
  if (rows < 0) throw Error("--rows: must not be negative (got " + std::to_string(rows) + ")");
  data::Dataset d = flags.read();
  size_t n = std::min(d.size(), static_cast<size_t>(std::max(rows, 0)));
  if (json) {
    for (size_t i = 0; i < n; ++i) {
      const data::Example& e = d.examples[i];
      nlohmann::json j = {{"line", e.line}, {"text", e.text}};
      if (e.label >= 0) j["label"] = e.label;
      if (!e.targets.empty()) j["label"] = flags.label_kind() == data::LabelKind::Score ? nlohmann::json(e.targets[0])
                                                                                        : nlohmann::json(e.targets);
      std::printf("%s\n", j.dump().c_str());
    }
    return;
  }
  std::printf("%8s  %5s  %s\n", "line", "label", "text");
  for (size_t i = 0; i < n; ++i) {
    const data::Example& e = d.examples[i];
    std::string label = e.label < 0 ? "-" : std::to_string(e.label);
    if (!e.targets.empty()) {
      char buf[32];
      label.clear();
      if (flags.label_kind() == data::LabelKind::Score) std::snprintf(buf, sizeof buf, "%g", e.targets[0]), label = buf;
      for (size_t id = 0; flags.label_kind() == data::LabelKind::LabelSet && id < e.targets.size(); ++id)
        if (e.targets[id] >= 0.5f) label += (label.empty() ? "" : ",") + std::to_string(id);
    }
    std::string text = e.text.empty() ? "(empty)" : display_text(e.text, 100);
    std::printf("%8lld  %5s  %s\n", static_cast<long long>(e.line), label.c_str(), text.c_str());
  }
  std::printf("(%zu of %zu rows)\n", n, d.size());
}

// `data stats --tokenizer DIR`, by default the shared klue-bert-base's.
text::Tokenizer stats_tokenizer(const std::string& dir) {
  return text::Tokenizer::load(dir.empty() ? shared_path("models/klue-bert-base") : std::filesystem::path(dir));
}

// The tagged file of `data stats|head --task token-classification`. The table options do not
// apply; --samples picks sentences as train and eval do.
data::TaggedDataset read_tagged_flags(const CLI::App& cmd, const ReadFlags& flags) {
  for (const char* table : {"--format", "--text-column", "--label-column", "--num-labels", "--problem-type",
                            "--label-names", "--skip-bad-rows"})
    if (cmd.count(table))
      throw Error(std::string(table) + ": --task token-classification reads tagged data (a token and its tag per " +
                  "line, or JSONL tokens and tags): the option does not apply");
  if (flags.file.empty()) throw Error("--task token-classification: give the tagged data file");
  if (flags.samples < -1 || flags.samples == 0)
    throw Error("--samples: must be positive (got " + std::to_string(flags.samples) + ")");
  data::TaggedDataset d = data::read_tagged(flags.file);
  if (flags.samples > 0) d = data::select_sentences(d, flags.data_seed, flags.samples, "--samples");
  return d;
}

// --task as `data stats` and `data head` take it: whether the file is tagged data.
bool tagged_task(const std::string& task) {
  if (task == "token-classification") return true;
  if (task != "sequence-classification")
    throw Error("--task: '" + task + "' is not one of sequence-classification|token-classification");
  return false;
}

const char* kTaskHelp = "sequence-classification (a table of texts), or token-classification: tagged data (CoNLL "
                        "columns or JSONL tokens and tags)";

// `data head --task token-classification`: the first sentences, each word with its tag.
void tagged_head(const CLI::App& cmd, const ReadFlags& flags, int rows, bool json) {
  const data::TaggedDataset d = read_tagged_flags(cmd, flags);
  const size_t n = std::min(d.size(), static_cast<size_t>(std::max(rows, 0)));
  if (!json) std::printf("%8s  %s\n", "line", "words/tags");
  for (size_t i = 0; i < n; ++i) {
    const data::TaggedSentence& s = d.sentences[i];
    if (json) {
      nlohmann::json j = {{"line", s.lines.front()}, {"tokens", s.tokens}};
      if (!s.tags.empty()) j["tags"] = s.tags;
      std::printf("%s\n", j.dump().c_str());
      continue;
    }
    std::string words;
    for (size_t w = 0; w < s.tokens.size(); ++w)
      words += (w ? " " : "") + s.tokens[w] + (s.tags.empty() ? "" : "/" + s.tags[w]);
    std::printf("%8lld  %s\n", static_cast<long long>(s.lines.front()), display_text(words, 100).c_str());
  }
  if (!json) std::printf("(%zu of %zu sentences)\n", n, d.size());
}

// `data stats --task token-classification`: the tagged file's sentences, tags and lengths.
void tagged_stats(const CLI::App& cmd, const ReadFlags& flags, const std::string& tokenizer_dir, bool pieces,
                  int64_t token_limit, bool json) {
  const data::TaggedDataset d = read_tagged_flags(cmd, flags);
  std::vector<std::vector<int64_t>> word_pieces;
  if (pieces) word_pieces = data::tagged_word_pieces(d, stats_tokenizer(tokenizer_dir));
  const data::TaggedStats s = data::compute_tagged_stats(d, word_pieces, token_limit);
  if (json) {
    nlohmann::json j = data::tagged_stats_to_json(s);
    j["source"] = d.source.string();
    if (flags.samples > 0) j["subset"] = {{"samples", flags.samples}, {"data_seed", flags.data_seed}};
    std::printf("%s\n", j.dump(2).c_str());
  } else {
    std::printf("%s\n%s", d.source.string().c_str(), data::tagged_stats_to_text(s).c_str());
  }
}

}  // namespace

void add_data_commands(CLI::App& app) {
  CLI::App* data_cmd = app.add_subcommand("data", "Inspect data sets");
  data_cmd->require_subcommand(1);

  {
    auto flags = std::make_shared<ReadFlags>();
    auto json = std::make_shared<bool>(false);
    auto no_tokens = std::make_shared<bool>(false);
    auto tokenizer_dir = std::make_shared<std::string>();
    auto token_limit = std::make_shared<int64_t>(128);
    auto task = std::make_shared<std::string>("sequence-classification");
    CLI::App* stats = data_cmd->add_subcommand(
        "stats", "Rows, label balance, empty documents, length percentiles (code points and tokens)");
    flags->add_to(stats);
    stats->add_option("--tokenizer", *tokenizer_dir,
                      "Tokenizer directory for token lengths (default: shared klue-bert-base)");
    stats->add_flag("--no-tokens", *no_tokens, "Skip token lengths");
    stats->add_option("--token-limit", *token_limit, "Report documents longer than this many tokens")
        ->capture_default_str()
        ->check(integer_range<int64_t>(1));
    stats->add_flag("--json", *json, "Print JSON");
    stats->add_option("--task", *task, std::string(kTaskHelp) + ": sentences, words, tags and word pieces")
        ->capture_default_str();
    stats->callback([=] {
      if (tagged_task(*task))
        return tagged_stats(*stats, *flags, *tokenizer_dir, !*no_tokens, *token_limit, *json);
      data::Dataset d = flags->read();
      std::vector<int64_t> token_lengths;
      if (!*no_tokens) token_lengths = data::token_lengths(d, stats_tokenizer(*tokenizer_dir));
      data::DatasetStats s = data::compute_stats(d, token_lengths, *token_limit, flags->label_kind());
      if (*json) {
        nlohmann::json j = data::stats_to_json(s);
        j["source"] = d.source.string();
        if (flags->samples >= 0) j["subset"] = {{"samples", flags->samples}, {"data_seed", flags->data_seed}};
        std::printf("%s\n", j.dump(2).c_str());
      } else {
        std::printf("%s", d.source.string().c_str());
        if (flags->samples >= 0)
          std::printf("  (shuffle(seed=%llu).select(range(%lld)))", static_cast<unsigned long long>(flags->data_seed),
                      static_cast<long long>(flags->samples));
        std::printf("\n%s", data::stats_to_text(s).c_str());
      }
    });
  }

  {
    auto flags = std::make_shared<ReadFlags>();
    auto rows = std::make_shared<int>(5);
    auto json = std::make_shared<bool>(false);
    CLI::App* head = data_cmd->add_subcommand("head", "Show the first rows as a table");
    flags->add_to(head);
    head->add_option("-n,--rows", *rows, "How many rows")->capture_default_str();
    head->add_flag("--json", *json, "Print one JSON object per row");
    auto task = std::make_shared<std::string>("sequence-classification");
    head->add_option("--task", *task, std::string(kTaskHelp) + ": each sentence's words with their tags")
        ->capture_default_str();
    head->callback([=] {
      if (tagged_task(*task)) return tagged_head(*head, *flags, *rows, *json);
      run_head(*flags, *rows, *json);
    });
  }

  {
    CLI::App* download = app.add_subcommand("download", "Fetch a public data set into the cache, verified by SHA-256");
    download->require_subcommand(1);
    auto cache = std::make_shared<std::string>();
    auto url_base = std::make_shared<std::string>();
    CLI::App* nsmc = download->add_subcommand("nsmc", "NSMC ratings_train.txt and ratings_test.txt");
    nsmc->add_option("--cache-dir", *cache, "Cache folder (default: $BERTUNE_CACHE or ~/.cache/bertune); files go to DIR/nsmc");
    nsmc->add_option("--url-base", *url_base,
                     std::string("Where to fetch from (default: $BERTUNE_NSMC_URL or ") + data::kNsmcUrlBase + ")");
    nsmc->callback([=] {
      data::DownloadOptions o;
      o.url_base = *url_base;
      if (!cache->empty()) o.target_dir = std::filesystem::path(*cache) / "nsmc";
      o.log = [](const std::string& line) { std::printf("%s\n", line.c_str()); };
      auto files = data::download_nsmc(o);
      bool fetched = false;
      for (const auto& f : files) fetched |= f.status == data::FileStatus::Downloaded;
      std::printf(fetched ? "NSMC ready in %s\n" : "NSMC already present and verified in %s; nothing to do\n",
                  files.front().path.parent_path().string().c_str());
    });
  }
}

}  // namespace bertune::cli
