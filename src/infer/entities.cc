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
  int index;                 // the piece's row in [CLS] ... [SEP] (pieces only)
  bool is_subword = false;   // continues the word of the piece before it
  std::vector<float> probs;  // softmax over the labels (pieces only)
};

// convert_tokens_to_string: " ".join(tokens).replace(" ##", "").strip()
std::string tokens_to_string(const std::vector<std::string>& tokens) {
  std::string joined;
  for (const auto& t : tokens) joined += (joined.empty() ? "" : " ") + t;
  for (size_t at; (at = joined.find(" ##")) != std::string::npos;) joined.erase(at, 3);
  const size_t first = joined.find_first_not_of(' '), last = joined.find_last_not_of(' ');
  return first == std::string::npos ? std::string() : joined.substr(first, last - first + 1);
}

size_t code_points(std::string_view s) {
  return static_cast<size_t>(std::count_if(s.begin(), s.end(), [](char c) { return (c & 0xC0) != 0x80; }));
}

// group_sub_entities: the type after the label's last "-", the mean score, the joined word.
EntitySpan group_of(const std::vector<TokenEntity>& group) {
  EntitySpan e;
  const std::string& label = group.front().label;
  e.entity_group = label.substr(label.rfind('-') == std::string::npos ? 0 : label.rfind('-') + 1);
  double sum = 0.0;
  std::vector<std::string> words;
  for (const auto& t : group) {
    sum += t.score;
    words.push_back(t.word);
  }
  e.score = static_cast<float>(sum / double(group.size()));
  e.word = tokens_to_string(words);
  e.start = group.front().start;
  e.end = group.back().end;
  return e;
}

// gather_pre_entities with each piece's argmax label: the word is the token (an [UNK]: the
// text it covers), a subword when the token is longer than that text (the "##").
std::vector<TokenEntity> piece_entities(const text::Tokenizer& tok, const model::BertConfig& config,
                                        std::string_view text, const std::vector<text::Tokenizer::Piece>& pieces,
                                        const float* logits) {
  const int C = config.num_labels();
  std::vector<TokenEntity> out;
  for (size_t i = 0; i < pieces.size(); ++i) {
    const auto& p = pieces[i];
    TokenEntity t;
    t.probs = softmax(logits + i * C, C);
    const int best = argmax(t.probs.data(), C);
    t.label = config.label_name(best);
    t.score = t.probs[best];
    const bool unk = p.id == tok.unk_id();
    t.word = unk ? code_point_slice(text, p.start, p.end) : tok.id_to_token(p.id);
    // SentencePiece has no continuing-subword prefix: the pipeline's fallback, a piece
    // continues a word unless a space is just before or at its start.
    t.is_subword = !unk && (tok.is_sentencepiece()
                                ? p.start > 0 && code_point_slice(text, p.start - 1, p.start + 1).find(' ') == std::string::npos
                                : code_points(t.word) != p.end - p.start);
    t.start = p.start, t.end = p.end;
    t.index = static_cast<int>(i) + 1;  // after [CLS]
    out.push_back(std::move(t));
  }
  return out;
}

// aggregate_word: one word's label and score from its pieces.
TokenEntity word_of(const std::vector<TokenEntity>& pieces, Aggregation a, const model::BertConfig& config) {
  const int C = config.num_labels();
  std::vector<float> probs = pieces.front().probs;  // first
  if (a == Aggregation::Max) {
    const auto best = std::max_element(pieces.begin(), pieces.end(),  // the first of equal maxima
                                       [](const TokenEntity& x, const TokenEntity& y) { return x.score < y.score; });
    probs = best->probs;
  } else if (a == Aggregation::Average) {
    std::vector<double> sum(C, 0.0);
    for (const auto& p : pieces)
      for (int c = 0; c < C; ++c) sum[c] += p.probs[c];
    for (int c = 0; c < C; ++c) probs[c] = static_cast<float>(sum[c] / double(pieces.size()));
  }
  TokenEntity w;
  const int best = argmax(probs.data(), C);
  w.label = config.label_name(best);
  w.score = probs[best];
  std::vector<std::string> words;
  for (const auto& p : pieces) words.push_back(p.word);
  w.word = tokens_to_string(words);
  w.start = pieces.front().start, w.end = pieces.back().end;
  w.index = -1;
  return w;
}

// aggregate_words: a word is a piece with the subword pieces after it.
std::vector<TokenEntity> word_entities(const std::vector<TokenEntity>& pieces, Aggregation a,
                                       const model::BertConfig& config) {
  std::vector<TokenEntity> words, group;
  for (const auto& p : pieces) {
    if (!group.empty() && !p.is_subword) {
      words.push_back(word_of(group, a, config));
      group.clear();
    }
    group.push_back(p);
  }
  if (!group.empty()) words.push_back(word_of(group, a, config));
  return words;
}

// group_entities: neighbours of one type, a B- starting a new group.
std::vector<EntitySpan> grouped(const std::vector<TokenEntity>& entities) {
  std::vector<EntitySpan> groups;
  std::vector<TokenEntity> current;
  for (const auto& t : entities) {
    if (!current.empty()) {
      const auto [bi, type] = bio_tag(t.label);
      if (!(type == bio_tag(current.back().label).second && bi != 'B')) {
        groups.push_back(group_of(current));
        current.clear();
      }
    }
    current.push_back(t);
  }
  if (!current.empty()) groups.push_back(group_of(current));
  return groups;
}

}  // namespace

Json spans_json(const std::vector<EntitySpan>& spans, Aggregation aggregation) {
  Json out = Json::array();
  for (const auto& s : spans) {
    if (aggregation == Aggregation::None)
      out.push_back({{"entity", s.entity_group}, {"score", s.score}, {"index", s.index}, {"word", s.word},
                     {"start", s.start}, {"end", s.end}});
    else
      out.push_back({{"entity_group", s.entity_group}, {"score", s.score}, {"word", s.word}, {"start", s.start},
                     {"end", s.end}});
  }
  return out;
}

std::vector<EntitySpan> group_entities(const text::Tokenizer& tok, const model::BertConfig& config,
                                       std::string_view text, const std::vector<text::Tokenizer::Piece>& pieces,
                                       const float* logits, const EntityOptions& options) {
  const std::vector<TokenEntity> tokens = piece_entities(tok, config, text, pieces, logits);
  std::vector<EntitySpan> out;
  switch (options.aggregation) {
    case Aggregation::None:
      for (const auto& t : tokens) out.push_back({t.label, t.score, t.word, t.start, t.end, t.index});
      break;
    case Aggregation::Simple: out = grouped(tokens); break;
    default: out = grouped(word_entities(tokens, options.aggregation, config)); break;
  }
  // A SentencePiece group's word: the text it spans (the pieces carry "▁" and normalised
  // characters, e.g. NFKC's ᄏ for ㅋ).
  if (tok.is_sentencepiece() && options.aggregation != Aggregation::None)
    for (auto& e : out) e.word = code_point_slice(text, e.start, e.end);
  const auto& ignore = options.ignore_labels;
  std::erase_if(out, [&](const EntitySpan& e) { return std::find(ignore.begin(), ignore.end(), e.entity_group) != ignore.end(); });
  return out;
}

std::vector<std::vector<EntitySpan>> predict_entities(model::BertModel& model, const text::Tokenizer& tok,
                                                      const std::vector<std::string>& texts, int max_length,
                                                      int batch_size, const EntityOptions& options) {
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
                                      logits + (size_t(batch.offsets[k]) + 1) * C, options);
  }
  return out;
}

}  // namespace bertune::infer
