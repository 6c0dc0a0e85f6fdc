#pragma once
// Labelled text datasets: NSMC's TSV exactly as the Hugging Face `nsmc`
// loader reads it (tab-separated, header line, no quote processing), plus
// RFC 4180 CSV and JSONL with configurable columns.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

namespace bertune::data {

enum class Format { Auto, Tsv, Csv, Jsonl };

struct Example {
  std::string text;
  int label = -1;  // -1 for unlabelled input
  int64_t line = 0;  // 1-based line in the source file (first line of a CSV record)
};

struct ReadOptions {
  Format format = Format::Auto;  // Auto: by extension (.csv, .jsonl/.json), else TSV
  std::string text_column = "document";
  std::string label_column = "label";  // empty: unlabelled
  int num_labels = 2;                  // labels must lie in [0, num_labels)
  bool skip_bad_rows = false;          // else the first bad row stops the read
};

struct BadRow {
  int64_t line;
  std::string problem;
};

struct Dataset {
  std::filesystem::path source;
  std::vector<Example> examples;
  std::vector<BadRow> skipped;  // only with skip_bad_rows
  size_t size() const { return examples.size(); }
};

// Throws Error "FILE:LINE: problem" on the first bad row unless skip_bad_rows.
Dataset read_dataset(const std::filesystem::path& path, const ReadOptions& options = {});

// dataset.shuffle(seed).select(range(n)) semantics: a deterministic
// permutation of [0, size) (documented RNG), then the first n (n < 0 or
// n >= size: all, shuffled).
std::vector<size_t> shuffled_indices(size_t size, uint64_t seed);
Dataset shuffle_select(const Dataset& d, uint64_t seed, int64_t n);

// Default NSMC split paths: ../shared/data/nsmc when present, else the
// download cache.
std::filesystem::path nsmc_path(const std::string& split);  // "train" | "test"

}  // namespace bertune::data
