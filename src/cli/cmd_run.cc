// `bertune run`: the main job on built-in defaults — README command 1.
// Until the trainer lands it is the data pass of the reference notebook:
// NSMC statistics for both splits and a full tokenization with the klue vocab.
#include <chrono>
#include <cstdio>

#include "cli/commands.h"
#include "data/dataset.h"
#include "data/stats.h"
#include "text/tokenizer.h"
#include "util/paths.h"

namespace bertune::cli {

void add_run_command(CLI::App& app) {
  auto* run = app.add_subcommand("run", "Run the main job on the built-in defaults (NSMC + klue vocab)");
  run->callback([] {
    using Clock = std::chrono::steady_clock;
    text::Tokenizer tokenizer = text::Tokenizer::load(shared_path("models/klue-bert-base"));
    size_t documents = 0, tokens = 0;
    double tokenize_seconds = 0;
    for (const char* split : {"train", "test"}) {
      data::Dataset d = data::read_dataset(data::nsmc_path(split));
      auto start = Clock::now();
      std::vector<int64_t> lengths = data::token_lengths(d, tokenizer);
      tokenize_seconds += std::chrono::duration<double>(Clock::now() - start).count();
      documents += d.size();
      for (int64_t n : lengths) tokens += static_cast<size_t>(n);
      std::printf("== NSMC %s: %s\n%s\n", split, d.source.string().c_str(),
                  data::stats_to_text(data::compute_stats(d, lengths)).c_str());
    }
    std::printf("Tokenized %zu documents into %zu tokens in %.2f s (%.0f docs/s, both cores)\n", documents,
                tokens, tokenize_seconds, documents / tokenize_seconds);
  });
}

}  // namespace bertune::cli
