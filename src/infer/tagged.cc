#include "infer/tagged.h"

#include <algorithm>

#include "util/error.h"

namespace bertune::infer {

std::map<std::string, int32_t> label_ids(const model::BertConfig& config) {
  std::map<std::string, int32_t> ids;
  for (int i = 0; i < config.num_labels(); ++i) ids[config.label_name(i)] = i;
  return ids;
}

namespace {

std::string label_list(const std::map<std::string, int32_t>& label2id) {
  std::string out;
  for (const auto& [name, id] : label2id) out += (out.empty() ? "" : ", ") + name;
  return out;
}

}  // namespace

TokenizedData tokenize_tagged(const data::TaggedDataset& d, const text::Tokenizer& tok, int max_length,
                              const std::map<std::string, int32_t>& label2id) {
  const bool labelled = !d.sentences.empty() && !d.sentences.front().tags.empty();
  text::EncodeOptions words;
  words.add_special_tokens = false;
  TokenizedData t;
  for (const auto& s : d.sentences) {
    if (s.tags.empty() == labelled)
      throw Error(d.source.string() + ":" + std::to_string(s.lines.front()) + ": a sentence " +
                  (labelled ? "without" : "with") + " tags among sentences " + (labelled ? "with" : "without"));
    std::vector<int32_t> ids{tok.cls_id()}, labels{-100};
    const size_t room = max_length > 2 ? static_cast<size_t>(max_length) - 1 : 1;  // [SEP] last
    for (size_t w = 0; w < s.tokens.size() && ids.size() < room; ++w) {
      int32_t label = -100;
      if (labelled) {
        const auto it = label2id.find(s.tags[w]);
        if (it == label2id.end())
          throw Error(d.source.string() + ":" + std::to_string(s.lines[w]) + ": tag '" +
                      s.tags[w] + "' is not a label of the model (" + label_list(label2id) + ")");
        label = it->second;
      }
      const std::vector<int32_t> pieces = tok.encode(s.tokens[w], words).ids;
      for (size_t p = 0; p < pieces.size() && ids.size() < room; ++p) {
        ids.push_back(pieces[p]);
        labels.push_back(p == 0 ? label : -100);
      }
    }
    ids.push_back(tok.sep_id());
    labels.push_back(-100);
    t.lengths.push_back(static_cast<int>(ids.size()));
    t.ids.push_back(std::move(ids));
    t.labels.push_back(labelled ? 0 : -1);
    if (labelled) t.token_labels.push_back(std::move(labels));
  }
  return t;
}

std::vector<int32_t> padded_token_labels(const TokenizedData& data, size_t positions) {
  std::vector<int32_t> out(data.size() * positions, -100);
  for (size_t i = 0; i < data.token_labels.size(); ++i) {
    if (data.token_labels[i].size() > positions)
      throw Error("padded_token_labels: an example of " + std::to_string(data.token_labels[i].size()) +
                  " positions for " + std::to_string(positions));
    std::copy(data.token_labels[i].begin(), data.token_labels[i].end(), out.begin() + static_cast<std::ptrdiff_t>(i * positions));
  }
  return out;
}

std::vector<std::string> labelled_tags(const std::vector<int32_t>& token_labels, const model::BertConfig& config) {
  std::vector<std::string> tags;
  for (int32_t l : token_labels)
    if (l != -100) tags.push_back(config.label_name(l));
  return tags;
}

}  // namespace bertune::infer
