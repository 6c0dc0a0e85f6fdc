#pragma once
// Token classification data as the model reads it, aligned as the Hugging Face
// token-classification example aligns it (tokenize_and_align_labels, label_all_tokens False):
// each word tokenized on its own (basic tokenizer + WordPiece: a word may split further,
// "(32" -> "(", "32"); the first piece carries the word's label, the others -100; a word
// of whitespace gives no piece (and no label); [CLS] and [SEP] -100; truncation at
// max_length drops the pieces that do not fit.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "data/tagged.h"
#include "infer/batching.h"
#include "text/tokenizer.h"

namespace bertune::infer {

// label2id from the model's id2label (names -> ids).
std::map<std::string, int32_t> label_ids(const model::BertConfig& config);

// Unlabelled sentences (no tags) give no token_labels; labelled and unlabelled sentences
// may not mix. A tag outside `label2id`: Error "FILE:LINE: tag 'X' is not a label of the
// model (...)".
TokenizedData tokenize_tagged(const data::TaggedDataset& d, const text::Tokenizer& tok, int max_length,
                              const std::map<std::string, int32_t>& label2id);

// Every example's token labels padded with -100 to `positions`: [n, positions], the label_ids
// transformers' Trainer gives compute_metrics for token classification.
std::vector<int32_t> padded_token_labels(const TokenizedData& data, size_t positions);

// The names of the labels other than -100, in order: an example's true tags.
std::vector<std::string> labelled_tags(const std::vector<int32_t>& token_labels, const model::BertConfig& config);

}  // namespace bertune::infer
