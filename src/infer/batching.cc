#include "infer/batching.h"

#include <algorithm>

#include "util/enum_names.h"
#include "util/error.h"

namespace bertune::infer {

namespace {
constexpr EnumNames<Padding, 3> kPaddingNames{
    {{{Padding::MaxLength, "max_length"}, {Padding::Longest, "longest"}, {Padding::Packed, "packed"}}}};
}  // namespace

Padding parse_padding(const std::string& name) { return kPaddingNames.parse(name); }
std::string padding_name(Padding p) { return kPaddingNames.name(p); }

bool TokenizedData::labelled() const {
  if (!targets.empty()) return std::none_of(targets.begin(), targets.end(), [](const auto& t) { return t.empty(); });
  return std::all_of(labels.begin(), labels.end(), [](int32_t y) { return y >= 0; });
}

void set_label_options(data::ReadOptions& ro, const model::BertConfig& config) {
  using model::ProblemType;
  ro.num_labels = config.num_labels();
  const ProblemType problem = config.resolved_problem_type();
  ro.label_kind = problem == ProblemType::Regression   ? data::LabelKind::Score
                  : problem == ProblemType::MultiLabel ? data::LabelKind::LabelSet
                                                       : data::LabelKind::Class;
  ro.label_names.clear();
  for (int i = 0; i < config.num_labels(); ++i) ro.label_names.push_back(config.label_name(i));
}

TokenizedData tokenize(const data::Dataset& d, const text::Tokenizer& tok, int max_length, int threads) {
  const bool pairs =
      std::any_of(d.examples.begin(), d.examples.end(), [](const data::Example& e) { return !e.text_pair.empty(); });
  std::vector<std::string> texts, text_pairs;
  texts.reserve(d.size());
  for (const auto& e : d.examples) texts.push_back(e.text);
  if (pairs)
    for (const auto& e : d.examples) text_pairs.push_back(e.text_pair);
  text::EncodeOptions eo;
  eo.max_length = max_length;
  auto enc = tok.encode_batch(texts, text_pairs, eo, threads);
  TokenizedData t;
  t.ids.reserve(enc.size());
  for (size_t i = 0; i < enc.size(); ++i) {
    t.lengths.push_back(static_cast<int>(enc[i].ids.size()));
    t.ids.push_back(std::move(enc[i].ids));
    if (pairs) t.token_type_ids.push_back(std::move(enc[i].token_type_ids));
    t.labels.push_back(d.examples[i].label);
  }
  if (std::any_of(d.examples.begin(), d.examples.end(), [](const data::Example& e) { return !e.targets.empty(); }))
    for (const auto& e : d.examples) t.targets.push_back(e.targets);
  return t;
}

model::Batch build_batch(const TokenizedData& data, const std::vector<size_t>& indices,
                         const BatchLayout& layout) {
  model::Batch b;
  int32_t longest = 0;
  bool labelled = true;
  for (size_t i : indices) {
    const auto& seq = data.ids.at(i);
    if (seq.empty()) throw Error("build_batch: example " + std::to_string(i) + " has no tokens");
    if (layout.max_length > 0 && static_cast<int>(seq.size()) > layout.max_length)
      throw Error("build_batch: example " + std::to_string(i) + " is longer than max_length");
    b.lengths.push_back(static_cast<int32_t>(seq.size()));
    if (!data.targets.empty()) {
      const auto& t = data.targets.at(i);
      labelled &= !t.empty();
      b.targets.insert(b.targets.end(), t.begin(), t.end());
    } else {
      const int32_t label = i < data.labels.size() ? data.labels[i] : -1;
      labelled &= label >= 0;
      b.labels.push_back(label);
    }
    longest = std::max(longest, static_cast<int32_t>(seq.size()));
  }
  if (!labelled) b.labels.clear(), b.targets.clear();
  int32_t row_length = 0;  // 0: packed, sequences end to end
  if (layout.padding == Padding::Longest) row_length = longest;
  if (layout.padding == Padding::MaxLength) row_length = layout.max_length > 0 ? layout.max_length : longest;
  const bool typed = !data.token_type_ids.empty();
  b.offsets.push_back(0);
  for (size_t k = 0; k < indices.size(); ++k) {
    const auto& seq = data.ids[indices[k]];
    b.input_ids.insert(b.input_ids.end(), seq.begin(), seq.end());
    if (typed) {
      const auto& types = data.token_type_ids.at(indices[k]);
      if (types.size() != seq.size())
        throw Error("build_batch: example " + std::to_string(indices[k]) + " has " + std::to_string(types.size()) +
                    " token types for " + std::to_string(seq.size()) + " tokens");
      b.token_type_ids.insert(b.token_type_ids.end(), types.begin(), types.end());
    }
    if (row_length > 0) {
      b.input_ids.resize((k + 1) * static_cast<size_t>(row_length), layout.pad_id);
      if (typed) b.token_type_ids.resize(b.input_ids.size(), 0);
    }
    b.offsets.push_back(static_cast<int32_t>(b.input_ids.size()));
  }
  return b;
}

std::vector<std::vector<size_t>> split_batches(const std::vector<size_t>& order, int batch_size) {
  std::vector<std::vector<size_t>> batches;
  for (size_t s = 0; s < order.size(); s += static_cast<size_t>(batch_size)) {
    size_t e = std::min(order.size(), s + static_cast<size_t>(batch_size));
    batches.emplace_back(order.begin() + static_cast<std::ptrdiff_t>(s),
                         order.begin() + static_cast<std::ptrdiff_t>(e));
  }
  return batches;
}

}  // namespace bertune::infer
