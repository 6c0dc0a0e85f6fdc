#pragma once
// Named entities from a token classifier, as transformers 4.30's TokenClassificationPipeline
// gives them (infer/aggregation.h: aggregation_strategy "simple" unless asked otherwise): each
// text tokenized whole (with character offsets), [CLS] ... [SEP] truncated at max_length;
// every piece's label the argmax of its softmax; a piece continues a word when its token is
// longer than the text it covers (the "##" of a WordPiece); pieces (or words) grouped while
// the label's type stays the same and the next one is not a B- (a label without B-/I- counts
// as I-); a group's score the mean of its members' scores, its word the pieces joined as
// convert_tokens_to_string joins them (an [UNK] piece: the text it covers); records or groups
// of an ignored label (default O) left out. SentencePiece (XLM-R): offsets without the "▁"
// (Tokenizer::encode_with_offsets), a piece continues a word unless a space is just before or
// at its start (the pipeline's fallback), a group's word the text it spans.
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/aggregation.h"
#include "model/bert.h"
#include "text/tokenizer.h"

namespace bertune::infer {

struct EntitySpan {
  std::string entity_group;  // aggregation none: the piece's label ("entity")
  float score = 0.f;
  std::string word;
  size_t start = 0, end = 0;  // code points of the text, [start, end)
  int index = -1;             // aggregation none: the piece's row in [CLS] ... [SEP]
};

// {"entity_group", "score", "word", "start", "end"} of each span; with aggregation none
// {"entity", "score", "index", "word", "start", "end"} of each piece.
nlohmann::json spans_json(const std::vector<EntitySpan>& spans, Aggregation aggregation = Aggregation::Simple);

// The spans of one text from its pieces and their logits [pieces.size(), num_labels].
std::vector<EntitySpan> group_entities(const text::Tokenizer& tok, const model::BertConfig& config,
                                       std::string_view text, const std::vector<text::Tokenizer::Piece>& pieces,
                                       const float* logits, const EntityOptions& options = {});

// Every text through a token classifier (inference forward, packed batches of batch_size).
std::vector<std::vector<EntitySpan>> predict_entities(model::BertModel& model, const text::Tokenizer& tok,
                                                      const std::vector<std::string>& texts, int max_length,
                                                      int batch_size, const EntityOptions& options = {});

}  // namespace bertune::infer
