#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>
#include <set>

#include <nlohmann/json.hpp>

#include "infer/batching.h"
#include "train/run_state.h"
#include "train/sampler.h"
#include "util/error.h"

using namespace bertune;
using namespace bertune::infer;
using namespace bertune::train;

// Orders produced by transformers' get_length_grouped_indices (with torch.randperm) on fixed
// lengths; fed the same permutation, ours must agree element for element.
TEST(LengthGroupedSampler, MatchesHuggingFaceOnFixedLengths) {
  std::ifstream in(std::string(BERTUNE_SOURCE_DIR) + "/tests/fixtures/length_grouped.json");
  ASSERT_TRUE(in) << "missing tests/fixtures/length_grouped.json";
  auto cases = nlohmann::json::parse(in);
  ASSERT_EQ(cases.size(), 4u);
  for (const auto& c : cases) {
    auto lengths = c["lengths"].get<std::vector<int>>();
    auto perm = c["permutation"].get<std::vector<size_t>>();
    auto expected = c["expected"].get<std::vector<size_t>>();
    auto got = length_grouped_indices(lengths, c["batch_size"].get<int>(), perm);
    EXPECT_EQ(got, expected) << c["name"];
  }
}

TEST(LengthGroupedSampler, HandWorkedSwapBringsLongestBatchFirst) {
  // n=8, bs=2: 8/(2*4)=1 -> megabatches of 2: [0,1] [2,3] [4,5] [6,7] under the identity
  // permutation. Sorted: [1,0] (9,5) [3,2] (7,3) [5,4] (2,7)->[4,5] [6,7] (30,30) stays.
  // Longest head: megabatch 3 (30; the first 30). Swap heads: 6 <-> 1.
  std::vector<int> lengths = {5, 9, 3, 7, 7, 2, 30, 30};
  std::vector<size_t> identity = {0, 1, 2, 3, 4, 5, 6, 7};
  auto got = length_grouped_indices(lengths, 2, identity);
  std::vector<size_t> expected = {6, 0, 3, 2, 4, 5, 1, 7};
  EXPECT_EQ(got, expected);
  // The multiplier is capped at 50: 1000 examples, bs 2 -> 125 -> 50 -> megabatches of 100.
  std::vector<int> many(1000);
  std::vector<size_t> ident(1000);
  for (size_t i = 0; i < 1000; ++i) many[i] = static_cast<int>(i % 97), ident[i] = i;
  auto order = length_grouped_indices(many, 2, ident);
  for (size_t s = 100; s < 1000; s += 100)  // every megabatch after the first is sorted
    EXPECT_TRUE(std::is_sorted(order.begin() + s, order.begin() + s + 100,
                               [&](size_t a, size_t b) { return many[a] > many[b]; }));
  EXPECT_EQ(many[order[0]], 96);
}

TEST(RandomSampler, PermutationIsDeterministicAndDiffersPerEpoch) {
  auto a = random_permutation(1000, 42), b = random_permutation(1000, 42);
  EXPECT_EQ(a, b);
  std::set<size_t> uniq(a.begin(), a.end());
  EXPECT_EQ(uniq.size(), 1000u);
  EXPECT_EQ(*uniq.rbegin(), 999u);
  std::vector<int> lengths(1000, 10);
  auto e0 = train_epoch_order(lengths, 8, false, 42, 0);
  auto e1 = train_epoch_order(lengths, 8, false, 42, 1);
  EXPECT_NE(e0, e1);
  EXPECT_EQ(e0, train_epoch_order(lengths, 8, false, 42, 0));  // rebuilt on resume
  EXPECT_NE(e0, train_epoch_order(lengths, 8, false, 43, 0));
  // Not the identity, and a fair shuffle moves nearly everything.
  size_t fixed = 0;
  for (size_t i = 0; i < 1000; ++i) fixed += e0[i] == i;
  EXPECT_LT(fixed, 10u);
}

TEST(RandomSampler, BelowIsUnbiasedEnough) {
  SplitMix64 rng(1);
  std::vector<int> counts(3);
  for (int i = 0; i < 30000; ++i) counts[rng.below(3)]++;
  for (int c : counts) EXPECT_NEAR(c, 10000, 400);
}

TEST(Batches, SplitKeepsShortLastBatch) {
  std::vector<size_t> order = {4, 3, 2, 1, 0};
  auto b = split_batches(order, 2);
  ASSERT_EQ(b.size(), 3u);
  EXPECT_EQ(b[2], std::vector<size_t>({0}));
  EXPECT_EQ(batches_per_epoch(5, 2), 3);
  EXPECT_EQ(batches_per_epoch(4, 2), 2);
}

TEST(Batches, LayoutPerPaddingMode) {
  TokenizedData data;
  data.ids = {{2, 10, 3}, {2, 11, 12, 13, 3}, {2, 3}};
  data.labels = {1, 0, 1};
  std::vector<size_t> idx = {0, 1};

  auto packed = build_batch(data, idx, {Padding::Packed, 8, 0});
  EXPECT_EQ(packed.input_ids, std::vector<int32_t>({2, 10, 3, 2, 11, 12, 13, 3}));
  EXPECT_EQ(packed.offsets, std::vector<int32_t>({0, 3, 8}));  // no row length: spans = lengths
  EXPECT_EQ(packed.real_tokens(), 8);
  EXPECT_EQ(packed.num_rows(), 8);

  auto longest = build_batch(data, idx, {Padding::Longest, 8, 0});
  EXPECT_EQ(longest.offsets, std::vector<int32_t>({0, 5, 10}));  // rows of 5
  EXPECT_EQ(longest.input_ids, std::vector<int32_t>({2, 10, 3, 0, 0, 2, 11, 12, 13, 3}));
  EXPECT_EQ(longest.lengths, std::vector<int32_t>({3, 5}));
  EXPECT_EQ(longest.labels, std::vector<int32_t>({1, 0}));

  auto maxlen = build_batch(data, idx, {Padding::MaxLength, 8, 0});
  EXPECT_EQ(maxlen.num_rows(), 16);
  EXPECT_EQ(maxlen.offsets, std::vector<int32_t>({0, 8, 16}));

  TokenCounts counts;
  counts.add(maxlen);
  EXPECT_DOUBLE_EQ(counts.padding_fraction(), 0.5);  // 8 real of 16 computed
  counts.add(packed);
  EXPECT_DOUBLE_EQ(counts.padding_fraction(), 1.0 - 16.0 / 24.0);

  EXPECT_THROW(build_batch(data, idx, {Padding::MaxLength, 4, 0}), Error);
  EXPECT_THROW(parse_padding("dynamic"), Error);
}

// --max-tokens-per-batch: every batch holds at most the budget in real tokens, every example
// runs exactly once per epoch in the epoch's order, the cut is a pure function of (seed,
// epoch) — so a resumed run rebuilds it — and an example longer than the budget is an Error.
TEST(Batches, TokenBudgetBatchesHoldTheBudgetAndEveryExampleOnce) {
  std::vector<int> lengths;
  SplitMix64 rng(3);
  for (int i = 0; i < 1000; ++i) lengths.push_back(2 + static_cast<int>(rng.below(127)));  // 2..128
  for (bool grouped : {false, true})
    for (int64_t budget : {128, 1000, 4096}) {
      SCOPED_TRACE(std::string(grouped ? "grouped" : "random") + " budget " + std::to_string(budget));
      for (int64_t epoch = 0; epoch < 3; ++epoch) {
        const auto batches = epoch_batches(lengths, 32, grouped, 42, epoch, budget);
        std::vector<size_t> seen;
        for (const auto& b : batches) {
          ASSERT_FALSE(b.empty());
          int64_t tokens = 0;
          for (size_t i : b) tokens += lengths[i];
          EXPECT_LE(tokens, budget);
          seen.insert(seen.end(), b.begin(), b.end());
        }
        EXPECT_EQ(seen, train_epoch_order(lengths, 32, grouped, 42, epoch));  // the epoch's order, cut
        std::sort(seen.begin(), seen.end());
        for (size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i], i);
        for (size_t b = 0; b + 1 < batches.size(); ++b) {  // a batch closes only when the next example would not fit
          int64_t tokens = 0;
          for (size_t i : batches[b]) tokens += lengths[i];
          EXPECT_GT(tokens + lengths[batches[b + 1].front()], budget);
        }
        EXPECT_EQ(batches, epoch_batches(lengths, 32, grouped, 42, epoch, budget));
      }
      EXPECT_NE(epoch_batches(lengths, 32, grouped, 42, 0, budget), epoch_batches(lengths, 32, grouped, 43, 0, budget));
    }
  EXPECT_THROW(split_batches_by_tokens({0, 1}, {5, 9}, 8), Error);
  EXPECT_EQ(split_batches_by_tokens({1, 0, 2}, {3, 4, 5}, 8), (std::vector<std::vector<size_t>>{{1, 0}, {2}}));
}
