#pragma once
// Token-tagged data (NER) for token classification, as the Hugging Face token-classification
// example reads it:
// - CoNLL-style columns (any extension but .jsonl/.json): one token and its tag per line,
//   the token the first field and the tag the last (CoNLL-2003's columns between them are
//   not read), split at tabs on a line holding one (so a space character is a token:
//   KLUE-NER's " \tO"), else at runs of spaces; a blank line ends a sentence, which holds at
//   most kMaxSentenceTokens tokens (more is a file without blank lines: an error); lines
//   starting with "## " are comments, and CoNLL-2003's "-DOCSTART- ..." lines end a sentence
//   without being part of one (as its datasets loader skips them). A UTF-8 byte order mark is dropped, CRLF read as LF,
//   gzip decompressed transparently.
// - JSONL: one sentence per line, {"tokens": [...], "tags": [...]} of the same length (tags
//   may be left out: unlabelled); blank lines are ignored.
// Every token and tag must be valid UTF-8 and non-empty. Errors: Error "FILE:LINE: problem".
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace bertune::data {

inline constexpr size_t kMaxSentenceTokens = 10000;

struct TaggedSentence {
  std::vector<std::string> tokens;  // the words, as the file splits them
  std::vector<std::string> tags;    // one per token; empty: unlabelled
  std::vector<int64_t> lines;       // 1-based line of each token (JSONL: the object's line)
};

struct TaggedDataset {
  std::filesystem::path source;
  std::vector<TaggedSentence> sentences;
  size_t size() const { return sentences.size(); }
};

// JSONL by extension (.jsonl, .json, each also .gz), else CoNLL columns.
TaggedDataset read_tagged(const std::filesystem::path& path);
// The same on bytes in memory; `path` names the source in errors and picks the format, unless
// `jsonl` says it (rows handed over in memory: JSONL whatever their name).
TaggedDataset parse_tagged(std::string_view contents, const std::filesystem::path& path, bool jsonl = false);

// n sentences as datasets' shuffle(seed).select(range(n)) picks them (data::shuffled_indices);
// Error "<flag> N: FILE has only M sentences" when n exceeds them.
TaggedDataset select_sentences(const TaggedDataset& d, uint64_t seed, int64_t n, const std::string& flag);

// The tags of every sentence, sorted and unique: the label list (id = position) of the HF
// example's get_label_list.
std::vector<std::string> tag_set(const TaggedDataset& d);

}  // namespace bertune::data
