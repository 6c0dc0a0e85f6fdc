#pragma once
// Labelled text datasets: NSMC's TSV exactly as the Hugging Face `nsmc`
// loader reads it (tab-separated, header line, no quote processing), plus
// RFC 4180 CSV and JSONL with configurable columns.
//
// Semantics shared by the three formats:
// - A UTF-8 byte order mark at the start of the file is dropped; lines may
//   end in LF or CRLF (the CR is not part of the last field).
// - TSV: the first line names the columns; every row must have as many
//   tab-separated fields. Quotes are ordinary characters (csv.QUOTE_NONE), so
//   NSMC's `"""영화 ..."""` keeps its quotes. Empty documents are kept.
//   An empty line is no row (as pandas' skip_blank_lines) unless the file has
//   a single column, where it is an empty document.
// - CSV: RFC 4180 (quoted fields, "" for a quote, commas and newlines inside
//   quotes); first record is the header. Text after a closing quote is an error.
// - JSONL: one object per line; text and label are looked up by key; lines
//   holding only whitespace are ignored. The label may be a JSON integer or a
//   string holding one.
// - A gzip file (magic bytes 1f 8b) is decompressed transparently.
// - With text_pair_column, each row's second text must be there and non-empty.
// - Every text field must be valid UTF-8; labels are integers in
//   [0, num_labels), or as LabelKind says for regression and multi-label data. A bad row throws Error "FILE:LINE: problem", or with
//   skip_bad_rows is left out and listed in Dataset::skipped (never dropped
//   silently). A missing column or an unreadable file always throws.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace bertune::data {

enum class Format { Auto, Tsv, Csv, Jsonl };

// How the label column reads (the model's problem_type):
//   Class     an integer in [0, num_labels): single-label classification
//   Score     a finite number: regression. TSV/CSV "3.5"; JSONL 3.5 or "3.5"
//   LabelSet  the labels that apply, any number of num_labels: multi-label classification.
//             TSV/CSV a comma-separated list of label names (ReadOptions::label_names) or
//             ids: "sports,politics", "0,2", "" for none. JSONL the same string, a list of
//             names or ids (["sports", "politics"], ["0", "2"]), or a list of num_labels
//             numbers in [0, 1], one per label ([0, 1, 1, 0], Hugging Face's float labels)
enum class LabelKind { Class, Score, LabelSet };

struct Example {
  std::string text;
  int label = -1;  // -1 for unlabelled input (and for Score and LabelSet labels)
  int64_t line = 0;  // 1-based line in the source file (first line of a CSV record)
  std::string text_pair;  // the second text of a sentence pair (ReadOptions::text_pair_column)
  // Score: {value}; LabelSet: num_labels values, 1 for a label that applies. Empty for
  // unlabelled input and Class labels.
  std::vector<float> targets;
};

struct ReadOptions {
  Format format = Format::Auto;  // Auto: by extension (.csv, .jsonl/.json, each also .gz), else TSV
  std::string text_column = "document";
  std::string label_column = "label";  // empty: unlabelled
  int num_labels = 2;                  // labels must lie in [0, num_labels); <= 0: only >= 0
  LabelKind label_kind = LabelKind::Class;
  std::vector<std::string> label_names;  // LabelSet: the name of each label id (id2label)
  bool skip_bad_rows = false;          // else the first bad row stops the read
  // Non-empty: every row is a sentence pair, its second text in this column (an empty or
  // missing cell is a bad row).
  std::string text_pair_column;
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

// The same on bytes already in memory (decompressed); `path` names the
// source in errors and picks the format when options.format is Auto.
Dataset parse_dataset(std::string_view contents, const std::filesystem::path& path, const ReadOptions& options = {});

// "auto" | "tsv" | "csv" | "jsonl" (also "json"); throws Error otherwise.
Format parse_format(std::string_view name);
// The format read_dataset will use for this path and option.
Format resolve_format(const std::filesystem::path& path, Format format);
const char* format_name(Format format);

// "skipped 3 bad rows of FILE: line 7: ..., line 9: ..." listing at most
// max_listed; empty when nothing was skipped. For logs and the CLI.
std::string describe_skipped(const Dataset& d, size_t max_listed = 5);

// One text per line (predict --input, tokenize --input): LF or CRLF, a
// trailing newline ends the last line, gzip read transparently. Each line
// must be valid UTF-8: Error "FILE:LINE: invalid UTF-8 at byte N" otherwise
// (Hugging Face's tokenizers take Python str, which cannot hold invalid
// UTF-8; dropping the bytes would silently glue words together).
std::vector<std::string> read_text_lines(const std::filesystem::path& path);
// Throws Error "<where>: invalid UTF-8 at byte N" unless `text` is valid
// UTF-8; for command-line texts (where = "text 2").
void require_utf8(std::string_view text, const std::string& where);

// Byte offset of the first invalid UTF-8 sequence (overlong forms,
// surrogates and code points past U+10FFFF are invalid), or npos.
size_t find_invalid_utf8(std::string_view s);
// Number of Unicode code points in valid UTF-8.
size_t count_code_points(std::string_view s);

// dataset.shuffle(seed).select(range(n)) semantics: a deterministic
// permutation of [0, size), then the first n (n < 0 or n >= size: all,
// shuffled). The permutation is numpy's, bit for bit: Hugging Face `datasets`
// shuffles with np.random.default_rng(seed).permutation(size), i.e.
// SeedSequence(seed) -> PCG64 (128-bit LCG, XSL-RR output) -> Fisher-Yates
// from the end with masked rejection sampling (numpy_random.h). So a given
// seed selects the same rows here as in a Python notebook (checked against
// numpy 1.24 in tests/fixtures/data/permutations.json).
std::vector<size_t> shuffled_indices(size_t size, uint64_t seed);
Dataset shuffle_select(const Dataset& d, uint64_t seed, int64_t n);
// shuffle_select for an option `flag` N (-1: all): Error "FLAG N: SOURCE has only K examples"
// when d holds fewer than n, as datasets' select(range(n)) raises IndexError past the end.
Dataset select_samples(const Dataset& d, uint64_t seed, int64_t n, const std::string& flag);

// Default NSMC split paths: ../shared/data/nsmc when present, else the
// download cache.
std::filesystem::path nsmc_path(const std::string& split);  // "train" | "test"

}  // namespace bertune::data
