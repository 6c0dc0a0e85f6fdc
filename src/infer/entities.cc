#include "infer/entities.h"

#include <algorithm>

#include "infer/metrics.h"
#include "util/error.h"

namespace bertune::infer {
using Json = nlohmann::json;

namespace {

// Code points [start, end) of UTF-8 text.
std::string code_point_slice(std::string_view text, size_t start, size_t end) {
  size_t cp = 0, from = text.size(), to = text.size();
  for (size_t b = 0; b < text.size(); ++b) {
    if ((static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) continue;  // a continuation byte
    if (cp == start) from = b;
    if (cp == end) {
      to = b;
      break;
    }
    ++cp;
  }
  return std::string(text.substr(std::min(from, text.size()), to - std::min(from, to)));
}

// get_tag: ("B", type) for B-type, ("I", type) for I-type and for anything else.
std::pair<char, std::string> bio_tag(const std::string& label) {
  if (label.rfind("B-", 0) == 0) return {'B', label.substr(2)};
  if (label.rfind("I-", 0) == 0) return {'I', label.substr(2)};
  return {'I', label};
}

struct TokenEntity {
  std::string label, word;
  float score;
  size_t start, end;
};

// group_sub_entities: the type after the label's last "-", the mean score, the joined word.
EntitySpan group_of(const std::vector<TokenEntity>& group) {
  EntitySpan e;
  const std::string& label = group.front().label;
  e.entity_group = label.substr(label.rfind('-') == std::string::npos ? 0 : label.rfind('-') + 1);
  double sum = 0.0;
  std::string joined;
  for (const auto& t : group) {
    sum += t.score;
    joined += (joined.empty() ? "" : " ") + t.word;
  }
  e.score = static_cast<float>(sum / double(group.size()));
  // convert_tokens_to_string: " ".join(tokens).replace(" ##", "").strip()
  for (size_t at; (at = joined.find(" ##")) != std::string::npos;) joined.erase(at, 3);
  const size_t first = joined.find_first_not_of(' '), last = joined.find_last_not_of(' ');
  e.word = first == std::string::npos ? std::string() : joined.substr(first, last - first + 1);
  e.start = group.front().start;
  e.end = group.back().end;
  return e;
}

}  // namespace

Json spans_json(const std::vector<EntitySpan>& spans) {
  Json out = Json::array();
  for (const auto& s : spans)
    out.push_back({{"entity_group", s.entity_group}, {"score", s.score}, {"word", s.word}, {"start", s.start},
                   {"end", s.end}});
  return out;
}

std::vector<EntitySpan> group_entities(const text::Tokenizer& tok, const model::BertConfig& config,
                                       std::string_view text, const std::vector<text::Tokenizer::Piece>& pieces,
                                       const float* logits) {
  const int C = config.num_labels();
  std::vector<EntitySpan> groups;
  std::vector<TokenEntity> current;
  auto close = [&] {
    if (!current.empty()) groups.push_back(group_of(current));
    current.clear();
  };
  for (size_t i = 0; i < pieces.size(); ++i) {
    const std::vector<float> probs = softmax(logits + i * C, C);
    const int best = argmax(probs.data(), C);
    const auto& p = pieces[i];
    TokenEntity t{config.label_name(best),
                  p.id == tok.unk_id() ? code_point_slice(text, p.start, p.end) : tok.id_to_token(p.id), probs[best],
                  p.start, p.end};
    if (!current.empty()) {
      const auto [bi, type] = bio_tag(t.label);
      if (!(type == bio_tag(current.back().label).second && bi != 'B')) close();
    }
    current.push_back(std::move(t));
  }
  close();
  std::erase_if(groups, [](const EntitySpan& e) { return e.entity_group == "O"; });
  return groups;
}

std::vector<std::vector<EntitySpan>> predict_entities(model::BertModel& model, const text::Tokenizer& tok,
                                                      const std::vector<std::string>& texts, int max_length,
                                                      int batch_size) {
  if (model.task() != model::Task::TokenClassification) throw Error("predict_entities: not a token classifier");
  std::vector<std::vector<EntitySpan>> out(texts.size());
  const int C = model.config().num_labels();
  for (size_t first = 0; first < texts.size(); first += static_cast<size_t>(batch_size)) {
    const size_t last = std::min(texts.size(), first + static_cast<size_t>(batch_size));
    std::vector<std::vector<text::Tokenizer::Piece>> pieces;
    std::vector<std::vector<int32_t>> sequences;
    for (size_t i = first; i < last; ++i) {
      pieces.push_back(tok.encode_with_offsets(texts[i]));
      if (max_length > 2 && pieces.back().size() > size_t(max_length) - 2) pieces.back().resize(size_t(max_length) - 2);
      std::vector<int32_t> ids{tok.cls_id()};
      for (const auto& p : pieces.back()) ids.push_back(p.id);
      ids.push_back(tok.sep_id());
      sequences.push_back(std::move(ids));
    }
    const model::Batch batch = model::Batch::packed(sequences);
    model.forward(batch, /*train=*/false);
    const float* logits = model.logits();  // (T, C): every row, without labels
    for (size_t k = 0; k < sequences.size(); ++k)
      out[first + k] = group_entities(tok, model.config(), texts[first + k], pieces[k],
                                      logits + (size_t(batch.offsets[k]) + 1) * C);
  }
  return out;
}

}  // namespace bertune::infer
