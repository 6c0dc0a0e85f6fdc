#pragma once
// Named entities from a token classifier, as transformers 4.30's TokenClassificationPipeline
// gives them with aggregation_strategy "simple": each text tokenized whole (with character
// offsets), [CLS] ... [SEP] truncated at max_length; every piece's label the argmax of its
// softmax; neighbouring pieces grouped while the label's type stays the same and the next
// one is not a B- (a label without B-/I- counts as I-); a group's score the mean of its
// pieces' scores, its word the pieces joined as convert_tokens_to_string joins them (an
// [UNK] piece: the text it covers); groups of the label O left out.
#include <cstddef>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/bert.h"
#include "text/tokenizer.h"

namespace bertune::infer {

struct EntitySpan {
  std::string entity_group;
  float score = 0.f;
  std::string word;
  size_t start = 0, end = 0;  // code points of the text, [start, end)
};

// {"entity_group", "score", "word", "start", "end"} of each span.
nlohmann::json spans_json(const std::vector<EntitySpan>& spans);

// The spans of one text from its pieces and their logits [pieces.size(), num_labels].
std::vector<EntitySpan> group_entities(const text::Tokenizer& tok, const model::BertConfig& config,
                                       std::string_view text, const std::vector<text::Tokenizer::Piece>& pieces,
                                       const float* logits);

// Every text through a token classifier (inference forward, packed batches of batch_size).
std::vector<std::vector<EntitySpan>> predict_entities(model::BertModel& model, const text::Tokenizer& tok,
                                                      const std::vector<std::string>& texts, int max_length,
                                                      int batch_size);

}  // namespace bertune::infer
