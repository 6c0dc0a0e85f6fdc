// Times `bertune vocab train` end to end (read + count + merges + save) on
// NSMC's unlabeled reviews. Target: a 32,000-token vocabulary in under
// 3 minutes on 2 cores.
//   ./build/bench_vocab [--repeat 3] [--vocab-size 32000] [--limit-alphabet 3000] ...
#include <CLI/CLI.hpp>
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include "text/vocab_trainer.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {
struct Series {
  std::vector<double> v;
  void print(const char* name) const {
    double mean = 0, var = 0;
    for (double x : v) mean += x;
    mean /= v.size();
    for (double x : v) var += (x - mean) * (x - mean);
    double sd = v.size() > 1 ? std::sqrt(var / (v.size() - 1)) : 0.0;
    std::printf("  %-8s mean %7.2f s  sd %5.2f  min %7.2f  max %7.2f\n", name, mean, sd,
                *std::min_element(v.begin(), v.end()), *std::max_element(v.begin(), v.end()));
  }
};
}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"bench_vocab: time WordPiece vocabulary training"};
  std::string corpus;
  text::VocabTrainerOptions options;
  options.vocab_size = 32000;
  options.min_frequency = 2;
  options.limit_alphabet = 3000;
  int repeat = 3, threads = 2;
  app.add_option("--corpus", corpus, "Corpus (default: shared NSMC unlabeled.txt.gz)");
  app.add_option("--vocab-size", options.vocab_size)->capture_default_str();
  app.add_option("--min-frequency", options.min_frequency)->capture_default_str();
  app.add_option("--limit-alphabet", options.limit_alphabet)->capture_default_str();
  app.add_option("--repeat", repeat)->capture_default_str();
  app.add_option("--threads", threads)->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  try {
    fs::path path = corpus.empty() ? shared_path("data/nsmc/unlabeled.txt.gz") : fs::path(corpus);
    fs::path out = fs::temp_directory_path() / "bertune_bench_vocab";
    Series total, read, count, train;
    for (int r = 0; r < repeat; ++r) {
      text::VocabTrainStats st;
      auto t0 = std::chrono::steady_clock::now();
      text::TrainedVocab v = text::train_vocab_files({path}, options, false, threads, out, &st);
      double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
      std::printf("run %d: %.2f s (read %.2f, count %.2f, merges %.2f), %zu tokens\n", r + 1, s,
                  st.read_seconds, st.count_seconds, st.train_seconds, v.tokens.size());
      total.v.push_back(s);
      read.v.push_back(st.read_seconds);
      count.v.push_back(st.count_seconds);
      train.v.push_back(st.train_seconds);
    }
    fs::remove_all(out);
    std::printf("%s, vocab %zu, %d threads, %d runs:\n", path.filename().c_str(), options.vocab_size,
                threads, repeat);
    total.print("total");
    read.print("read");
    count.print("count");
    train.print("merges");
    std::printf("target: total < 180 s\n");
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_vocab: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
