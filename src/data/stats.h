#pragma once
// Summaries behind `bertune data stats`: label balance, empty documents and
// length distributions, in code points and (given token counts) in tokens.
#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <vector>

#include "data/dataset.h"
#include "data/tagged.h"
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

// Token classification data (data/tagged.h): sentences, words, tag balance, and sentence lengths
// in words and (given piece counts) in word pieces with [CLS] and [SEP], each word tokenized on
// its own as training aligns them (infer/tagged.h). A sentence longer than token_limit pieces
// loses its last words to truncation at that max_length: their tags are neither trained on nor
// evaluated, and `words_past_limit` counts them.
struct TaggedStats {
  size_t sentences = 0, words = 0;
  bool tagged = false;                        // the sentences carry tags
  std::map<std::string, size_t> tag_counts;  // words per tag
  LengthSummary words_per_sentence;
  std::optional<LengthSummary> pieces;       // per sentence, with [CLS]/[SEP], untruncated
  int64_t token_limit = 128;
  size_t over_token_limit = 0;   // sentences longer than token_limit pieces
  size_t words_past_limit = 0;   // words whose first piece falls past token_limit - 1
};

// Each sentence's word pieces per word (a whitespace word has none), in order.
std::vector<std::vector<int64_t>> tagged_word_pieces(const TaggedDataset& d, const text::Tokenizer& tokenizer);
// word_pieces: tagged_word_pieces' result, or empty for no piece figures.
TaggedStats compute_tagged_stats(const TaggedDataset& d, const std::vector<std::vector<int64_t>>& word_pieces = {},
                                 int64_t token_limit = 128);
nlohmann::json tagged_stats_to_json(const TaggedStats& s);
std::string tagged_stats_to_text(const TaggedStats& s);

}  // namespace bertune::data
