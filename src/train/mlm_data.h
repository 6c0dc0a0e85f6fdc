#pragma once
// The data side of masked-language-model pretraining (`bertune pretrain`):
//   corpus  — plain text, one review per line, .gz read transparently, or sentence pairs
//             (TSV/CSV/JSONL columns, as `train --text-pair-column` reads them); a held-out split;
//   packing — reviews tokenized without specials and packed into training sequences
//             [CLS] r1 [SEP] r2 [SEP] ... of at most max_length tokens; pairs encoded as
//             `train` encodes them, [CLS] a [SEP] b [SEP] with token types 0/1, and packed whole;
//   masking — Hugging Face's DataCollatorForLanguageModeling (and ...ForWholeWordMask)
//             semantics, drawn from a counter-based RNG: the masks of a sequence are a pure
//             function of (seed, epoch, sequence index), so they are fresh every epoch and a
//             resumed run sees exactly the masks the uninterrupted one would have.
#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include "model/bert.h"
#include "text/tokenizer.h"

namespace bertune::train {

// ---- corpus ----

struct ReviewCorpus {
  std::vector<std::string> reviews;
  std::vector<std::string> pairs;  // sentence pairs: the second text of each; empty: single texts
  std::vector<int64_t> lines;  // 1-based line of each review in its file
  // Next-sentence prediction (draw_next_sentences): per pair, 0 = the file's second text,
  // 1 = the second text of another pair drawn at random; empty: no next-sentence labels.
  std::vector<int32_t> next_labels;
  std::string source;

  bool is_pairs() const { return !pairs.empty(); }
  size_t size() const { return reviews.size(); }
};

// One review per line; empty (or whitespace-only) lines skipped; '\r\n' accepted. Invalid
// UTF-8 is an Error naming file:line. Plain or gzip (zlib detects it).
ReviewCorpus read_review_corpus(const std::filesystem::path& path);

// Sentence pairs: the text_column and text_pair_column of a TSV/CSV/JSONL file (format by
// extension, .gz read transparently), read as `train` reads them (data/dataset.h, no label).
// A missing or empty cell is an Error naming file:line and the column.
ReviewCorpus read_pair_corpus(const std::filesystem::path& path, const std::string& text_column,
                              const std::string& text_pair_column);

// A seeded shuffle of the reviews, the first `heldout` of it set aside (never trained on),
// the rest for training in their file order. heldout must leave at least one training review.
struct CorpusSplit {
  ReviewCorpus train, heldout;
};
CorpusSplit split_heldout(ReviewCorpus all, size_t heldout, uint64_t seed);

// BERT's next-sentence data, as transformers' TextDatasetForNextSentencePrediction draws it:
// each pair keeps its second text (label 0) or, with probability 1/2, takes the second text of
// another pair of the corpus drawn uniformly (label 1). Pure in seed; needs two pairs at least.
void draw_next_sentences(ReviewCorpus& pairs, uint64_t seed);

// ---- packing ----

// How a packed sequence is shown to the model.
enum class ReviewAttention {
  Across,  // one attention sequence per packed sequence: reviews see each other
  Within,  // each review (with its closing [SEP]) its own sequence: same tokens, positions restart
};
ReviewAttention parse_review_attention(const std::string& name);  // across | within
const char* review_attention_name(ReviewAttention a);

// Packed training sequences, stored flat. Sequence s is ids[offsets[s], offsets[s+1]);
// its reviews end (after their [SEP]) at the positions listed in segment_ends[seg_offsets[s],
// seg_offsets[s+1]) (relative to the sequence start, increasing, the last = its length).
struct PackedCorpus {
  std::vector<int32_t> ids;
  std::vector<int64_t> offsets{0};
  std::vector<int32_t> segment_ends;
  std::vector<int64_t> seg_offsets{0};
  std::vector<int32_t> types;  // token types, beside ids (pairs: 0 up to a's [SEP], 1 after); empty: all 0
  std::vector<int32_t> segment_labels;  // beside segment_ends: each pair's next-sentence label; empty: none
  int64_t truncated_reviews = 0;  // reviews (pairs) longer than max_length tokens with their specials, cut

  size_t size() const { return offsets.size() - 1; }
  int length(size_t s) const { return static_cast<int>(offsets[s + 1] - offsets[s]); }
  std::vector<int> lengths() const;
  int64_t tokens() const { return static_cast<int64_t>(ids.size()); }
};

// Tokenizes the reviews (no [CLS]/[SEP], threads as Tokenizer::encode_batch) and packs them
// in order, greedily: a review goes into the current sequence when it fits, else it starts
// the next. A review longer than max_length - 2 tokens is truncated to fit alone. Reviews
// that tokenize to nothing are dropped.
PackedCorpus pack_reviews(const std::vector<std::string>& reviews, const text::Tokenizer& tok, int max_length,
                          int threads = 0);

// Pairs (texts[i], pairs[i]) encoded as Tokenizer::encode_pair (what `train --text-pair-column`
// feeds the model): [CLS] a [SEP] b [SEP], token types 0 then 1, a pair longer than max_length
// truncated longest_first. Each pair is one unit (a segment, with --review-attention within its
// own attention sequence), packed greedily in order: [CLS] a1 [SEP] b1 [SEP] [CLS] a2 [SEP] ...
// Pairs of which neither text gives a token are dropped. next_labels (one per pair, or empty):
// kept beside each packed pair (segment_labels).
PackedCorpus pack_pairs(const std::vector<std::string>& texts, const std::vector<std::string>& pairs,
                        const text::Tokenizer& tok, int max_length, int threads = 0,
                        const std::vector<int32_t>& next_labels = {});

// pack_pairs for a corpus of pairs, pack_reviews for one of single texts.
PackedCorpus pack_corpus(const ReviewCorpus& corpus, const text::Tokenizer& tok, int max_length, int threads = 0);

// ---- masking ----

struct MaskingOptions {
  double mlm_probability = 0.15;
  bool whole_word_mask = false;   // DataCollatorForWholeWordMask: '##' pieces go with their word
  std::vector<int32_t> special_ids;  // never selected ([PAD] [UNK] [CLS] [SEP] [MASK]: all_special_ids)
  int32_t mask_id = 4;
  int32_t cls_id = 2, sep_id = 3;  // whole-word masking: the only tokens HF leaves out of words
  int32_t vocab_size = 0;         // random replacements are uniform over [0, vocab_size), as HF's randint(len(tokenizer))
  std::vector<bool> continuation; // per vocab id: starts with '##' (whole-word masking only)
};
MaskingOptions masking_options(const text::Tokenizer& tok, double mlm_probability, bool whole_word_mask);

// The masked copy of one sequence: labels[i] = the original id where position i was
// selected, -100 elsewhere.
struct MaskedSequence {
  std::vector<int32_t> ids;
  std::vector<int32_t> labels;
};
// DataCollatorForLanguageModeling.torch_mask_tokens: every non-special token selected with
// probability p; of those 80% [MASK], 10% a random id, 10% unchanged (per token draws, like
// HF's bernoulli masks). Whole-word: DataCollatorForWholeWordMask._whole_word_mask picks words
// (a word = a token and the '##' tokens after it; [CLS] and [SEP] left out) in random order
// until max(1, round(n * p)) tokens are covered (n counting specials, as HF does), skipping
// words that would overshoot; then, as HF's torch_mask_tokens does, special tokens among them
// ([UNK], say) are unselected, and the 80/10/10 replacement goes per token.
// Pure in (seed, epoch, index).
MaskedSequence mask_sequence(const int32_t* ids, int n, const MaskingOptions& o, uint64_t seed, int64_t epoch,
                             uint64_t index);

// The model batch of packed sequences `indices`, masked for `epoch` (token types: the corpus's;
// next-sentence labels: the corpus's segment_labels, one per attention sequence, which needs
// ReviewAttention::Within).
model::Batch mlm_batch(const PackedCorpus& corpus, const std::vector<size_t>& indices, ReviewAttention attention,
                       const MaskingOptions& masking, uint64_t seed, int64_t epoch);

}  // namespace bertune::train
