#pragma once
// Summaries behind `bertune data stats`: label balance, empty documents and
// length distributions, in code points and (given token counts) in tokens.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "data/dataset.h"
#include "text/tokenizer.h"

namespace bertune::data {

struct LengthSummary {
  size_t count = 0;
  double min = 0, p50 = 0, p90 = 0, p95 = 0, p99 = 0, max = 0, mean = 0;
};

// Percentiles as numpy.percentile's default ("linear": interpolate between
// the two nearest ranks), so figures agree with a pandas/numpy notebook.
double percentile(const std::vector<int64_t>& sorted, double q);
LengthSummary summarize_lengths(std::vector<int64_t> lengths);
LengthSummary summarize_values(std::vector<double> values);

struct DatasetStats {
  size_t rows = 0;
  size_t skipped = 0;
  // Class labels: rows per label (-1: unlabelled). Label sets: rows each label applies to
  // (-1: rows with none). Scores: none counted here, see `scores`.
  std::map<int, size_t> label_counts;
  std::optional<LengthSummary> scores;  // regression labels' distribution
  size_t empty_documents = 0;
  LengthSummary chars;                  // Unicode code points
  std::optional<LengthSummary> tokens;  // with [CLS]/[SEP], untruncated
  int64_t token_limit = 128;
  size_t over_token_limit = 0;          // documents longer than token_limit tokens
};

// Untruncated token counts with [CLS] and [SEP], as the model sees each
// document before max_length cuts it. Uses both cores.
std::vector<int64_t> token_lengths(const Dataset& d, const text::Tokenizer& tokenizer);

// token_lengths: one per example (same order), or empty for no token figures.
DatasetStats compute_stats(const Dataset& d, const std::vector<int64_t>& token_lengths = {},
                           int64_t token_limit = 128, LabelKind kind = LabelKind::Class);
nlohmann::json stats_to_json(const DatasetStats& s);
std::string stats_to_text(const DatasetStats& s);

}  // namespace bertune::data
