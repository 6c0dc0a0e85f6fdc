#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "golden_bert.h"
#include "infer/batching.h"
#include "train/sampler.h"
#include "util/error.h"
#include "util/paths.h"

using namespace bertune;

TEST(Batching, EveryExampleOnceAndLengthGroupsAreSorted) {
  std::vector<int> lengths;
  for (int i = 0; i < 1000; ++i) lengths.push_back(3 + (i * 7919) % 120);
  for (bool group : {false, true}) {
    auto batches = train::epoch_batches(lengths, 32, group, 9, 0);
    std::multiset<size_t> seen;
    for (auto& b : batches) seen.insert(b.begin(), b.end());
    EXPECT_EQ(seen.size(), 1000u);
    EXPECT_EQ(std::set<size_t>(seen.begin(), seen.end()).size(), 1000u);
    EXPECT_EQ(batches.back().size(), 1000u % 32);
    if (group) {
      // Inside a batch lengths descend, except where HF's swap moved the longest example to
      // the very front: its first batch and the batch that received the old first element.
      int unsorted = 0;
      for (auto& b : batches)
        unsorted += !std::is_sorted(b.begin(), b.end(), [&](size_t x, size_t y) { return lengths[x] > lengths[y]; });
      EXPECT_LE(unsorted, 2);
      EXPECT_EQ(lengths[batches[0][0]], *std::max_element(lengths.begin(), lengths.end()));
    }
  }
  EXPECT_EQ(train::epoch_batches(lengths, 32, true, 9, 0), train::epoch_batches(lengths, 32, true, 9, 0));
}

TEST(Batching, BuildsPackedAndPaddedBatches) {
  infer::TokenizedData data;
  data.ids = {{2, 5, 3}, {2, 6, 7, 8, 3}, {2, 3}};
  data.labels = {1, 0, 1};
  auto build = [&](std::vector<size_t> idx, infer::Padding padding, int max_length) {
    return infer::build_batch(data, idx, {padding, max_length, 0});
  };
  auto packed = build({1, 2}, infer::Padding::Packed, 8);
  EXPECT_EQ(packed.input_ids, (std::vector<int32_t>{2, 6, 7, 8, 3, 2, 3}));
  EXPECT_EQ(packed.offsets, (std::vector<int32_t>{0, 5, 7}));
  EXPECT_EQ(packed.labels, (std::vector<int32_t>{0, 1}));
  auto longest = build({0, 2}, infer::Padding::Longest, 8);
  EXPECT_EQ(longest.input_ids, (std::vector<int32_t>{2, 5, 3, 2, 3, 0}));
  EXPECT_EQ(longest.lengths, (std::vector<int32_t>{3, 2}));
  auto fixed = build({0}, infer::Padding::MaxLength, 8);
  EXPECT_EQ(fixed.num_rows(), 8);
  EXPECT_EQ(fixed.real_tokens(), 3);
  EXPECT_THROW(build({1}, infer::Padding::MaxLength, 4), Error);
  EXPECT_THROW(infer::parse_padding("left"), Error);
}

// Sentence pairs through the batching every command uses: token types travel with the ids in
// every layout (pad rows type 0), and the model's logits are Hugging Face's
// (shared/golden/families/bert_pair).
TEST(Batching, PairTokenTypesReachTheModelInEveryLayout) {
  const auto g = golden_bert::family_inputs("bert_pair");
  infer::TokenizedData data;
  data.ids = g.sequences;
  data.token_type_ids = g.token_type_ids;
  data.labels = g.labels;
  for (const auto& s : g.sequences) data.lengths.push_back(static_cast<int>(s.size()));
  model::BertModel m(g.config, model::Task::SequenceClassification);
  m.load_state_dict(g.tensors("init.safetensors"));
  const TensorMap forward = g.tensors("forward.safetensors");
  const auto& logits = forward.at("logits");
  const std::vector<size_t> all = {0, 1, 2, 3, 4};
  for (auto [padding, pad_to] : {std::pair{infer::Padding::Packed, -1}, std::pair{infer::Padding::Longest, 0},
                                 std::pair{infer::Padding::MaxLength, 24}}) {
    const model::Batch b = infer::build_batch(data, all, {padding, 24, 0});
    const model::Batch want = g.batch(pad_to);
    EXPECT_EQ(b.input_ids, want.input_ids) << infer::padding_name(padding);
    EXPECT_EQ(b.token_type_ids, want.token_type_ids) << infer::padding_name(padding);
    EXPECT_EQ(b.offsets, want.offsets) << infer::padding_name(padding);
    m.forward(b, /*train=*/false);
    EXPECT_LE(golden_bert::max_abs_diff(m.logits(), logits.data.data(), logits.data.size()), 1e-4f)
        << infer::padding_name(padding);
  }
  data.token_type_ids[1].pop_back();
  EXPECT_THROW(infer::build_batch(data, all, {infer::Padding::Packed, 24, 0}), Error);
}

TEST(Batching, TokenizeEncodesPairsWhenTheDataHasThem) {
  const auto tok = text::Tokenizer::load(shared_path("models/klue-bert-base"));
  data::Dataset d;
  for (auto [text, pair] : {std::pair{"재밌다", "정말 재밌다ㅋㅋ"}, std::pair{"별로", "지루하다"}}) {
    data::Example e;
    e.text = text;
    e.text_pair = pair;
    d.examples.push_back(e);
  }
  const infer::TokenizedData t = infer::tokenize(d, tok, 8, 1);
  ASSERT_EQ(t.token_type_ids.size(), 2u);
  text::EncodeOptions o;
  o.max_length = 8;
  for (size_t i = 0; i < 2; ++i) {
    const auto e = tok.encode_pair(d.examples[i].text, d.examples[i].text_pair, o);
    EXPECT_EQ(t.ids[i], e.ids);
    EXPECT_EQ(t.token_type_ids[i], e.token_type_ids);
    EXPECT_EQ(t.lengths[i], static_cast<int>(e.ids.size()));
  }
  EXPECT_EQ(t.token_type_ids[0].back(), 1);
  for (auto& e : d.examples) e.text_pair.clear();  // single texts: no token types at all
  EXPECT_TRUE(infer::tokenize(d, tok, 8, 1).token_type_ids.empty());
}
