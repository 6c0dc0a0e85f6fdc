// bertune vocab train | eval
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/validators.h"
#include "data/dataset.h"
#include "text/tokenizer.h"
#include "text/vocab_trainer.h"
#include "util/error.h"

namespace bertune::cli {
namespace fs = std::filesystem;

namespace {

struct TrainArgs {
  std::vector<std::string> corpus;
  std::string output;
  text::VocabTrainerOptions options;
  bool lowercase = false;
  int threads = 2;
};

void run_train(const TrainArgs& a) {
  std::vector<fs::path> corpus(a.corpus.begin(), a.corpus.end());
  text::VocabTrainStats st;
  auto t0 = std::chrono::steady_clock::now();
  text::TrainedVocab v =
      text::train_vocab_files(corpus, a.options, a.lowercase, a.threads, a.output, &st,
                              [](const std::string& line) { std::fprintf(stderr, "%s\n", line.c_str()); });
  double total = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  std::printf("words: %llu (%zu distinct)\n", static_cast<unsigned long long>(v.total_words),
              v.distinct_words);
  std::printf("alphabet: %zu characters kept, %zu dropped by --limit-alphabet; %zu \"##\" forms\n",
              v.alphabet_size, v.alphabet_dropped, v.continuation_forms);
  std::printf("merges: %zu; vocab: %zu tokens (%s)\n", v.merges, v.tokens.size(),
              v.stop_reason.c_str());
  std::printf("time: %.2f s total (read %.2f, count %.2f, merges %.2f, save %.2f)\n", total,
              st.read_seconds, st.count_seconds, st.train_seconds, st.save_seconds);
  std::printf("wrote %s/{vocab.txt, tokenizer_config.json, special_tokens_map.json, tokenizer.json}\n",
              a.output.c_str());
}

struct EvalArgs {
  std::string tokenizer;
  std::string data;
  std::string column = "document";
  int threads = 2;
};

void run_eval(const EvalArgs& a) {
  text::Tokenizer tok = text::Tokenizer::load(a.tokenizer);
  fs::path data = a.data.empty() ? data::nsmc_path("test") : fs::path(a.data);
  data::ReadOptions read;
  read.text_column = a.column;
  read.label_column = "";  // labels play no part here
  std::vector<std::string> texts;
  for (auto& ex : data::read_dataset(data, read).examples) texts.push_back(std::move(ex.text));
  if (texts.empty()) throw Error(data.string() + ": no documents");
  text::CoverageStats st = text::measure_coverage(tok, texts, a.threads);
  std::printf("tokenizer: %s (%zu tokens)\n", a.tokenizer.c_str(), tok.vocab_size());
  std::printf("data: %s (%llu documents)\n", data.string().c_str(),
              static_cast<unsigned long long>(st.documents));
  std::printf("unk_rate: %.4f%% (%llu [UNK] of %llu tokens, [CLS]/[SEP] excluded)\n",
              100.0 * st.unk_rate(), static_cast<unsigned long long>(st.unk_tokens),
              static_cast<unsigned long long>(st.tokens));
  std::printf("docs_with_unk: %.4f%% (%llu documents)\n", 100.0 * st.docs_with_unk_rate(),
              static_cast<unsigned long long>(st.docs_with_unk));
  std::printf("mean_tokens_per_doc: %.3f (with [CLS]/[SEP])\n", st.mean_tokens_per_doc());
}

}  // namespace

void add_vocab_commands(CLI::App& app) {
  CLI::App* vocab = app.add_subcommand("vocab", "Train or evaluate a WordPiece vocabulary");
  vocab->require_subcommand(1);

  auto train_args = std::make_shared<TrainArgs>();
  CLI::App* train = vocab->add_subcommand(
      "train",
      "Train a WordPiece vocabulary as Hugging Face BertWordPieceTokenizer.train does; writes "
      "vocab.txt + tokenizer_config.json");
  train->add_option("--corpus", train_args->corpus, "Text file, one document per line (.gz ok); repeatable")
      ->required();
  // The three are unsigned: CLI11 alone turns "-1" into the type's largest value.
  train->add_option("--vocab-size", train_args->options.vocab_size, "Target vocabulary size")
      ->capture_default_str()
      ->check(not_negative());
  train->add_option("--min-frequency", train_args->options.min_frequency,
                    "Stop merging when the best pair occurs fewer times")
      ->capture_default_str()
      ->check(not_negative());
  train->add_option("--limit-alphabet", train_args->options.limit_alphabet,
                    "Keep this many most frequent characters (0: all)")
      ->capture_default_str()
      ->check(not_negative());
  train->add_option("--output", train_args->output, "Output directory")->required();
  train->add_flag("--lowercase", train_args->lowercase,
                  "Lowercase and strip accents (BERT uncased); klue is cased");
  train->add_option("--threads", train_args->threads, "Threads for word counting")
      ->capture_default_str()
      ->check(integer_range(1, 256));
  train->callback([train_args] { run_train(*train_args); });

  auto eval_args = std::make_shared<EvalArgs>();
  CLI::App* eval = vocab->add_subcommand(
      "eval", "[UNK] rate and tokens per document of a tokenizer on a dataset");
  eval->add_option("--tokenizer", eval_args->tokenizer, "Tokenizer directory (vocab.txt)")
      ->required();
  eval->add_option("--data", eval_args->data, "Dataset: TSV (NSMC), CSV or JSONL (default: NSMC test)");
  eval->add_option("--column", eval_args->column, "Text column")->capture_default_str();
  eval->add_option("--threads", eval_args->threads, "Encoding threads (0: all cores)")
      ->capture_default_str()
      ->check(integer_range(0));
  eval->callback([eval_args] { run_eval(*eval_args); });
}

}  // namespace bertune::cli
