#pragma once
// The one way examples become a model batch. Every command that feeds the model
// (train, eval, predict, compare, bench train) builds its batches here, so the
// speed `bench train` reports is the speed of the step users run.
//
// Layouts follow the Hugging Face notebook's choices: packed (sequences end to
// end, no padding), padded to the longest sequence of the batch, or padded to
// max_length. Which examples go into a batch is the caller's business: evaluation
// takes consecutive slices (split_batches), training its sampler's order
// (train/sampler.h).
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "model/bert.h"
#include "text/tokenizer.h"

namespace bertune::infer {

enum class Padding { Packed, Longest, MaxLength };
Padding parse_padding(const std::string& name);  // packed | longest | max_length
std::string padding_name(Padding p);

// A dataset turned into token ids (truncated to max_length, [CLS] ... [SEP]; a sentence
// pair [CLS] a [SEP] b [SEP] with its token types).
struct TokenizedData {
  std::vector<std::vector<int32_t>> ids;
  std::vector<std::vector<int32_t>> token_type_ids;  // one per example for pairs; empty: all 0
  std::vector<int32_t> labels;  // -1 when unlabelled (or labelled by targets)
  // Regression and multi-label (data::LabelKind Score, LabelSet): each example's float
  // labels, empty when unlabelled; all empty for integer labels.
  std::vector<std::vector<float>> targets;
  // Token classification (infer/tagged.h): each example's label per id, -100 where none
  // ([CLS], [SEP], a word's later pieces); empty when unlabelled. `labels` then holds 0
  // (labelled) or -1.
  std::vector<std::vector<int32_t>> token_labels;
  std::vector<int> lengths;     // ids[i].size()
  size_t size() const { return ids.size(); }
  bool labelled() const;        // every example has a label (or targets)
};

// How a data file's labels read for a model of `config`: ro.num_labels, and by its
// problem_type (Unset: HF's rule for a file of labels, num_labels 1 -> regression, else
// integer classes) ro.label_kind, with the label names for multi-label sets.
void set_label_options(data::ReadOptions& ro, const model::BertConfig& config);

// Pairs when any example has a text_pair (data::ReadOptions::text_pair_column): then every
// example is encoded as a pair (Tokenizer::encode_pair).
TokenizedData tokenize(const data::Dataset& d, const text::Tokenizer& tok, int max_length, int threads = 0);

struct BatchLayout {
  Padding padding = Padding::Packed;
  int max_length = 128;  // sequences are already truncated to it; MaxLength pads to it
  int32_t pad_id = 0;
};

// Examples `indices` of `data` as the model reads them. Labels (or float targets, or a label
// per token row with -100 on pad rows) go in when every selected example has them; otherwise
// the batch has none (no loss). Token types go in for pairs (pad rows type 0, as HF pads them).
model::Batch build_batch(const TokenizedData& data, const std::vector<size_t>& indices,
                         const BatchLayout& layout);

// Consecutive slices of `order`, batch_size each; the last one may be shorter.
std::vector<std::vector<size_t>> split_batches(const std::vector<size_t>& order, int batch_size);

}  // namespace bertune::infer
