#include <gtest/gtest.h>

#include <algorithm>
#include <set>

#include "infer/batching.h"
#include "train/sampler.h"
#include "util/error.h"

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
