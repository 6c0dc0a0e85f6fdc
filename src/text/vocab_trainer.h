#pragma once
// WordPiece vocabulary training the way Hugging Face tokenizers'
// BertWordPieceTokenizer.train does it: count the words of the corpus
// (BertNormalizer + BertPreTokenizer, i.e. our BasicTokenizer::split), keep
// the limit_alphabet most frequent characters, then run tokenizers' BPE
// trainer with the "##" continuing-subword prefix until vocab_size tokens.
//
// Where tokenizers leaves an order to a randomly seeded HashMap we fix it, so
// the result is the same on every run and for any thread count:
//  - "##c" continuation forms get their ids in code-point order (tokenizers:
//    in the order its word HashMap happens to visit them);
//  - limit_alphabet drops, among characters with the same count, the higher
//    code points first (tokenizers: sort_unstable, arbitrary).
// Everything else (merge order by pair count, ties to the smaller pair of
// ids, when min_frequency stops training, which words see a merge when) is
// tokenizers' algorithm.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "text/tokenizer.h"

namespace bertune::text {

struct VocabTrainerOptions {
  size_t vocab_size = 30000;       // tokenizers' default
  uint64_t min_frequency = 2;      // merges stop at the first best pair seen fewer times
  size_t limit_alphabet = 1000;    // most frequent characters kept; 0: keep all
  std::vector<std::string> special_tokens = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  std::string continuing_prefix = "##";  // empty: plain BPE (no continuation forms)
};

// Word → number of occurrences in the corpus.
using WordCounts = std::unordered_map<std::string, uint64_t>;

// Splits one line into words (appending to `out`). Must be callable from
// several threads at once.
using WordSplitter = std::function<void(std::string_view line, std::vector<std::string>& out)>;

// Reads a corpus file whole: plain text, or gzip (detected by its magic
// bytes) decompressed with zlib. Throws Error naming the file (also for UTF-16/UTF-32
// text and gzip data past io::gzip_expansion_limit).
std::string read_corpus_file(const std::filesystem::path& path);

// Counts the words of every line of `text` ('\n'-separated), lines split
// across `threads` threads. The result does not depend on `threads`.
WordCounts count_words(std::string_view text, const WordSplitter& split, int threads);

// Adds `from` into `into`.
void add_word_counts(WordCounts& into, const WordCounts& from);

struct TrainedVocab {
  std::vector<std::string> tokens;  // id order: specials, alphabet, "##" forms, merges
  size_t alphabet_size = 0;         // characters kept
  size_t alphabet_dropped = 0;      // characters seen but cut by limit_alphabet
  size_t continuation_forms = 0;    // "##c" tokens added before merging
  size_t merges = 0;                // merge steps taken (tokenizers may repeat a pair: see .cc)
  size_t distinct_words = 0;
  uint64_t total_words = 0;
  std::string stop_reason;          // why merging ended
};

// Throws Error (and does nothing else) on bad options: vocab_size smaller
// than the initial vocabulary (specials + alphabet + "##" forms), no words.
TrainedVocab train_wordpiece(const WordCounts& counts, const VocabTrainerOptions& options);

// Writes vocab.txt, tokenizer_config.json, special_tokens_map.json and
// tokenizer.json (Hugging Face fast-tokenizer form, as klue's) into `dir` as
// one directory: all four appear at once or none do (io::write_directory_atomic,
// replacing `dir` whole). The specials must be in the vocab. `lowercase` is
// recorded as do_lower_case so Tokenizer::load splits text as training did.
void save_vocab_dir(const TrainedVocab& vocab, const std::filesystem::path& dir, bool lowercase);

struct VocabTrainStats {
  double read_seconds = 0, count_seconds = 0, train_seconds = 0, save_seconds = 0;
};

// The whole `bertune vocab train`: read and count every corpus with
// BasicTokenizer::split (lowercasing + accent stripping when `lowercase`),
// train, save. Checks every input before writing anything: a corpus with invalid UTF-8
// (FILE:LINE), an existing output directory holding anything but vocabulary files.
// `progress`, when given, hears one line as each corpus file is counted and as merging starts.
TrainedVocab train_vocab_files(const std::vector<std::filesystem::path>& corpus,
                               const VocabTrainerOptions& options, bool lowercase, int threads,
                               const std::filesystem::path& output_dir,
                               VocabTrainStats* stats = nullptr,
                               const std::function<void(const std::string&)>& progress = {});

// How a vocabulary covers a set of documents (`bertune vocab eval`).
struct CoverageStats {
  uint64_t documents = 0;
  uint64_t tokens = 0;         // excluding the [CLS]/[SEP] of every document
  uint64_t unk_tokens = 0;
  uint64_t docs_with_unk = 0;
  uint64_t tokens_with_specials = 0;
  double unk_rate() const { return tokens ? double(unk_tokens) / tokens : 0.0; }
  double docs_with_unk_rate() const { return documents ? double(docs_with_unk) / documents : 0.0; }
  double mean_tokens_per_doc() const {
    return documents ? double(tokens_with_specials) / documents : 0.0;
  }
};
CoverageStats measure_coverage(const Tokenizer& tokenizer, const std::vector<std::string>& texts,
                               int threads);

}  // namespace bertune::text
