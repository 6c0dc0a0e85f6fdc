#include "data/stats.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <numeric>

#include "util/error.h"

namespace bertune::data {

namespace {

template <class V>
double percentile_of(const std::vector<V>& sorted, double q) {
  if (sorted.empty()) return 0;
  double rank = q / 100.0 * static_cast<double>(sorted.size() - 1);
  size_t lo = static_cast<size_t>(std::floor(rank));
  size_t hi = std::min(lo + 1, sorted.size() - 1);
  double frac = rank - static_cast<double>(lo);
  return static_cast<double>(sorted[lo]) + frac * static_cast<double>(sorted[hi] - sorted[lo]);
}

template <class V>
LengthSummary summarize(std::vector<V> values) {
  LengthSummary s;
  s.count = values.size();
  if (values.empty()) return s;
  std::sort(values.begin(), values.end());
  s.min = static_cast<double>(values.front());
  s.max = static_cast<double>(values.back());
  s.p50 = percentile_of(values, 50);
  s.p90 = percentile_of(values, 90);
  s.p95 = percentile_of(values, 95);
  s.p99 = percentile_of(values, 99);
  s.mean = static_cast<double>(std::accumulate(values.begin(), values.end(), V{0})) / static_cast<double>(values.size());
  return s;
}

}  // namespace

double percentile(const std::vector<int64_t>& sorted, double q) { return percentile_of(sorted, q); }
LengthSummary summarize_lengths(std::vector<int64_t> lengths) { return summarize(std::move(lengths)); }
LengthSummary summarize_values(std::vector<double> values) { return summarize(std::move(values)); }

std::vector<int64_t> token_lengths(const Dataset& d, const text::Tokenizer& tokenizer) {
  std::vector<std::string> texts;
  texts.reserve(d.size());
  for (const Example& e : d.examples) texts.push_back(e.text);
  std::vector<text::Encoding> encodings = tokenizer.encode_batch(texts);
  std::vector<int64_t> lengths;
  lengths.reserve(encodings.size());
  for (const text::Encoding& e : encodings) lengths.push_back(static_cast<int64_t>(e.ids.size()));
  return lengths;
}

DatasetStats compute_stats(const Dataset& d, const std::vector<int64_t>& token_lengths, int64_t token_limit,
                           LabelKind kind) {
  if (!token_lengths.empty() && token_lengths.size() != d.size())
    throw Error("internal: " + std::to_string(token_lengths.size()) + " token lengths for " +
                std::to_string(d.size()) + " rows");
  DatasetStats s;
  s.rows = d.size();
  s.skipped = d.skipped.size();
  std::vector<int64_t> chars;
  chars.reserve(d.size());
  std::vector<double> scores;
  for (const Example& e : d.examples) {
    if (e.targets.empty()) {
      s.label_counts[e.label]++;
    } else if (kind == LabelKind::Score) {
      scores.push_back(e.targets[0]);
    } else {  // LabelSet: every label that applies, "none" for a row with none
      bool any = false;
      for (size_t id = 0; id < e.targets.size(); ++id)
        if (e.targets[id] >= 0.5f) any = true, s.label_counts[static_cast<int>(id)]++;
      if (!any) s.label_counts[-1]++;
    }
    s.empty_documents += e.text.empty();
    chars.push_back(static_cast<int64_t>(count_code_points(e.text)));
  }
  s.chars = summarize_lengths(std::move(chars));
  if (!scores.empty()) s.scores = summarize_values(std::move(scores));
  s.token_limit = token_limit;
  if (!token_lengths.empty()) {
    s.tokens = summarize_lengths(token_lengths);
    s.over_token_limit = static_cast<size_t>(
        std::count_if(token_lengths.begin(), token_lengths.end(), [&](int64_t n) { return n > token_limit; }));
  }
  return s;
}

namespace {
nlohmann::json summary_json(const LengthSummary& s) {
  return {{"count", s.count}, {"min", s.min}, {"p50", s.p50}, {"p90", s.p90}, {"p95", s.p95},
          {"p99", s.p99},     {"max", s.max}, {"mean", s.mean}};
}

std::string fmt(double v) {
  char buf[32];
  if (v == std::floor(v) && std::abs(v) < 1e15) std::snprintf(buf, sizeof buf, "%.0f", v);
  else std::snprintf(buf, sizeof buf, "%.2f", v);
  return buf;
}

std::string summary_row(const char* what, const LengthSummary& s) {
  char buf[256];
  std::snprintf(buf, sizeof buf, "%-10s %7s %7s %7s %7s %7s %7s %8.2f\n", what, fmt(s.min).c_str(),
                fmt(s.p50).c_str(), fmt(s.p90).c_str(), fmt(s.p95).c_str(), fmt(s.p99).c_str(),
                fmt(s.max).c_str(), s.mean);
  return buf;
}
}  // namespace

nlohmann::json stats_to_json(const DatasetStats& s) {
  nlohmann::json labels = nlohmann::json::object();
  for (auto [label, n] : s.label_counts) labels[std::to_string(label)] = n;
  nlohmann::json j = {{"rows", s.rows},
                      {"skipped_rows", s.skipped},
                      {"label_counts", labels},
                      {"empty_documents", s.empty_documents},
                      {"length_chars", summary_json(s.chars)}};
  if (s.scores) j["label_scores"] = summary_json(*s.scores);
  if (s.tokens) {
    j["length_tokens"] = summary_json(*s.tokens);
    j["token_limit"] = s.token_limit;
    j["over_token_limit"] = s.over_token_limit;
    j["over_token_limit_fraction"] = s.rows ? static_cast<double>(s.over_token_limit) / static_cast<double>(s.rows) : 0.0;
  }
  return j;
}

std::string stats_to_text(const DatasetStats& s) {
  std::string out = "rows             " + std::to_string(s.rows) + "\n";
  if (s.skipped) out += "skipped rows     " + std::to_string(s.skipped) + "\n";
  for (auto [label, n] : s.label_counts) {
    char buf[96];
    std::snprintf(buf, sizeof buf, "label %-10s %zu (%.2f%%)\n", label < 0 ? "none" : std::to_string(label).c_str(),
                  n, s.rows ? 100.0 * static_cast<double>(n) / static_cast<double>(s.rows) : 0.0);
    out += buf;
  }
  out += "empty documents  " + std::to_string(s.empty_documents) + "\n\n";
  char head[160];
  if (s.scores) {
    std::snprintf(head, sizeof head, "%-10s %7s %7s %7s %7s %7s %7s %8s\n", "label", "min", "p50", "p90", "p95",
                  "p99", "max", "mean");
    out += head + summary_row("score", *s.scores) + "\n";
  }
  std::snprintf(head, sizeof head, "%-10s %7s %7s %7s %7s %7s %7s %8s\n", "length", "min", "p50", "p90", "p95",
                "p99", "max", "mean");
  out += head;
  out += summary_row("chars", s.chars);
  if (s.tokens) {
    out += summary_row("tokens", *s.tokens);
    char buf[128];
    std::snprintf(buf, sizeof buf, "\nover %lld tokens  %zu (%.4f%%)\n", static_cast<long long>(s.token_limit),
                  s.over_token_limit,
                  s.rows ? 100.0 * static_cast<double>(s.over_token_limit) / static_cast<double>(s.rows) : 0.0);
    out += buf;
  }
  return out;
}

std::vector<std::vector<int64_t>> tagged_word_pieces(const TaggedDataset& d, const text::Tokenizer& tokenizer) {
  text::EncodeOptions words;
  words.add_special_tokens = false;
  std::vector<std::vector<int64_t>> out;
  out.reserve(d.size());
  for (const TaggedSentence& s : d.sentences) {
    std::vector<int64_t>& pieces = out.emplace_back();
    pieces.reserve(s.tokens.size());
    for (const std::string& word : s.tokens)
      pieces.push_back(static_cast<int64_t>(tokenizer.encode(word, words).ids.size()));
  }
  return out;
}

TaggedStats compute_tagged_stats(const TaggedDataset& d, const std::vector<std::vector<int64_t>>& word_pieces,
                                 int64_t token_limit) {
  if (!word_pieces.empty() && word_pieces.size() != d.size())
    throw Error("internal: piece counts of " + std::to_string(word_pieces.size()) + " sentences for " +
                std::to_string(d.size()));
  TaggedStats s;
  s.sentences = d.size();
  s.token_limit = token_limit;
  std::vector<int64_t> words, pieces;
  for (size_t i = 0; i < d.size(); ++i) {
    const TaggedSentence& sentence = d.sentences[i];
    s.words += sentence.tokens.size();
    words.push_back(static_cast<int64_t>(sentence.tokens.size()));
    s.tagged = s.tagged || !sentence.tags.empty();
    for (const std::string& tag : sentence.tags) s.tag_counts[tag]++;
    if (word_pieces.empty()) continue;
    int64_t length = 1;  // [CLS]
    for (const int64_t n : word_pieces[i]) {
      // As training truncates: a word is kept while its first piece fits before the last [SEP].
      if (n > 0 && length + 1 > token_limit - 1) s.words_past_limit++;
      length += n;
    }
    pieces.push_back(length + 1);  // [SEP]
    s.over_token_limit += length + 1 > token_limit;
  }
  s.words_per_sentence = summarize_lengths(std::move(words));
  if (!word_pieces.empty()) s.pieces = summarize_lengths(std::move(pieces));
  return s;
}

nlohmann::json tagged_stats_to_json(const TaggedStats& s) {
  nlohmann::json j = {{"sentences", s.sentences},
                      {"words", s.words},
                      {"tag_counts", s.tag_counts},
                      {"words_per_sentence", summary_json(s.words_per_sentence)}};
  if (s.pieces) {
    j["pieces_per_sentence"] = summary_json(*s.pieces);
    j["token_limit"] = s.token_limit;
    j["over_token_limit"] = s.over_token_limit;
    j["words_past_token_limit"] = s.words_past_limit;
  }
  return j;
}

std::string tagged_stats_to_text(const TaggedStats& s) {
  const auto share = [](size_t n, size_t of) { return of ? 100.0 * static_cast<double>(n) / static_cast<double>(of) : 0.0; };
  std::string out = "sentences        " + std::to_string(s.sentences) + "\nwords            " + std::to_string(s.words) +
                    (s.tagged ? "" : " (no tags)") + "\n";
  for (const auto& [tag, n] : s.tag_counts) {
    char buf[160];
    std::snprintf(buf, sizeof buf, "tag %-12s %zu (%.2f%%)\n", tag.c_str(), n, share(n, s.words));
    out += buf;
  }
  char head[160];
  std::snprintf(head, sizeof head, "\n%-10s %7s %7s %7s %7s %7s %7s %8s\n", "sentence", "min", "p50", "p90", "p95",
                "p99", "max", "mean");
  out += head + summary_row("words", s.words_per_sentence);
  if (s.pieces) {
    out += summary_row("pieces", *s.pieces);
    char buf[200];
    std::snprintf(buf, sizeof buf, "\nover %lld pieces  %zu sentences (%.4f%%); %zu words (%.4f%%) past it, untagged\n",
                  static_cast<long long>(s.token_limit), s.over_token_limit, share(s.over_token_limit, s.sentences),
                  s.words_past_limit, share(s.words_past_limit, s.words));
    out += buf;
  }
  return out;
}

}  // namespace bertune::data
