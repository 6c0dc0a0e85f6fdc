// Tokenizer throughput on the whole NSMC corpus (200,000 documents: train +
// test, the document column as HF's nsmc loader reads it) with the klue
// vocabulary: 5 timed runs of encode_batch on 2 threads and on 1 thread.
//
//   ./build/bench_tokenizer [--runs N] [--threads N] [--docs N] [--tokenizer DIR] [--json]
// (--docs N: only the first N documents, e.g. under valgrind)
//
// Target: under 1.0 s for all 200,000 documents on 2 threads.
// Besides wall time it reports the process CPU time of each run: on a shared
// machine (other builds running) wall time swings, CPU time much less.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/paths.h"

using namespace bertune;

namespace {

struct Stats {
  double mean = 0, min = 0, max = 0, stddev = 0;
};

Stats summarize(const std::vector<double>& v) {
  Stats s;
  s.min = *std::min_element(v.begin(), v.end());
  s.max = *std::max_element(v.begin(), v.end());
  for (double x : v) s.mean += x;
  s.mean /= static_cast<double>(v.size());
  for (double x : v) s.stddev += (x - s.mean) * (x - s.mean);
  s.stddev = v.size() > 1 ? std::sqrt(s.stddev / static_cast<double>(v.size() - 1)) : 0.0;
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  int runs = 5;
  int max_docs = 0;  // 0: all
  std::vector<int> thread_counts = {2, 1};
  bool as_json = false;
  std::string tokenizer_dir;
  for (int i = 1; i < argc; ++i) {
    if (!std::strcmp(argv[i], "--json")) as_json = true;
    else if (!std::strcmp(argv[i], "--runs") && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--tokenizer") && i + 1 < argc) tokenizer_dir = argv[++i];
    else if (!std::strcmp(argv[i], "--docs") && i + 1 < argc) max_docs = std::max(1, std::atoi(argv[++i]));
    else if (!std::strcmp(argv[i], "--threads") && i + 1 < argc) thread_counts = {std::max(1, std::atoi(argv[++i]))};
    else {
      std::fprintf(stderr, "usage: %s [--runs N] [--threads N] [--docs N] [--tokenizer DIR] [--json]\n", argv[0]);
      return 2;
    }
  }
  try {
    const auto tok = text::Tokenizer::load(tokenizer_dir.empty() ? shared_path("models/klue-bert-base")
                                                                  : std::filesystem::path(tokenizer_dir));
    std::vector<std::string> docs;
    size_t bytes = 0;
    for (const char* split : {"train", "test"}) {
      data::ReadOptions o;
      o.format = data::Format::Tsv;
      auto d = data::read_dataset(data::nsmc_path(split), o);
      for (auto& e : d.examples) {
        bytes += e.text.size();
        docs.push_back(std::move(e.text));
      }
    }

    if (max_docs > 0 && docs.size() > static_cast<size_t>(max_docs)) {
      docs.resize(static_cast<size_t>(max_docs));
      bytes = 0;
      for (const auto& d : docs) bytes += d.size();
    }
    nlohmann::json report = {{"docs", docs.size()}, {"bytes", bytes}, {"runs", runs}};
    if (!as_json)
      std::printf("NSMC: %zu documents, %.1f MiB; klue vocab %zu; %d timed runs after 1 warm-up\n",
                  docs.size(), static_cast<double>(bytes) / (1 << 20), tok.vocab_size(), runs);
    for (int threads : thread_counts) {
      size_t tokens = 0;
      std::vector<double> seconds, cpu_seconds;
      for (int r = -1; r < runs; ++r) {  // r == -1: warm-up (page faults, allocator)
        const std::clock_t c0 = std::clock();
        auto t0 = std::chrono::steady_clock::now();
        auto enc = tok.encode_batch(docs, {}, threads);
        auto t1 = std::chrono::steady_clock::now();
        const std::clock_t c1 = std::clock();
        if (r < 0) {
          tokens = 0;
          for (const auto& e : enc) tokens += e.ids.size();
          continue;
        }
        seconds.push_back(std::chrono::duration<double>(t1 - t0).count());
        cpu_seconds.push_back(static_cast<double>(c1 - c0) / CLOCKS_PER_SEC);
      }
      Stats s = summarize(seconds);
      Stats cpu = summarize(cpu_seconds);
      const double docs_per_s = static_cast<double>(docs.size()) / s.mean;
      report["threads_" + std::to_string(threads)] = {
          {"seconds", seconds},       {"mean_s", s.mean},
          {"min_s", s.min},           {"max_s", s.max},
          {"stddev_s", s.stddev},     {"docs_per_s", docs_per_s},
          {"cpu_seconds", cpu_seconds}, {"cpu_mean_s", cpu.mean},
          {"tokens", tokens},         {"tokens_per_s", static_cast<double>(tokens) / s.mean},
          {"us_per_doc", 1e6 * s.mean / static_cast<double>(docs.size())}};
      if (!as_json)
        std::printf(
            "%d thread%s: mean %.3f s (min %.3f, max %.3f, sd %.3f) = %.0f docs/s (%.0f..%.0f), %.2f M tokens/s, "
            "%.2f us/doc [%zu tokens incl. CLS/SEP]; CPU time mean %.3f s (min %.3f, max %.3f)\n",
            threads, threads > 1 ? "s" : " ", s.mean, s.min, s.max, s.stddev, docs_per_s,
            static_cast<double>(docs.size()) / s.max, static_cast<double>(docs.size()) / s.min,
            static_cast<double>(tokens) / s.mean / 1e6, 1e6 * s.mean / static_cast<double>(docs.size()), tokens, cpu.mean,
            cpu.min, cpu.max);
    }
    if (as_json) std::printf("%s\n", report.dump(2).c_str());
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_tokenizer: error: %s\n", e.what());
    return 1;
  }
  return 0;
}
