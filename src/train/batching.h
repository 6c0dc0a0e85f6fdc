#pragma once
// Turning tokenized examples into model batches, the way the HF Trainer
// orders and pads them: random order or length-grouped (LengthGroupedSampler),
// then packed (no padding), padded to the longest of the batch, or padded to
// max_length.
#include <cstdint>
#include <string>
#include <vector>

#include "model/bert.h"

namespace bertune::train {

enum class Padding { Packed, Longest, MaxLength };
Padding parse_padding(const std::string& name);  // packed | longest | max_length
std::string padding_name(Padding p);

// Batches of the first epoch as the trainer orders them (train/sampler.h):
// a seeded permutation, or with group_by_length HF's LengthGroupedSampler on
// it; the last batch may be short (drop_last false).
std::vector<std::vector<size_t>> make_batches(const std::vector<int>& lengths, int batch_size,
                                              bool group_by_length, uint64_t seed);

// Sequences must already be truncated to max_length (tokenizer) when padding
// to it. labels: one per example, or empty.
model::Batch build_batch(const std::vector<std::vector<int32_t>>& ids,
                         const std::vector<int32_t>& labels, const std::vector<size_t>& indices,
                         Padding padding, int max_length, int32_t pad_id);

}  // namespace bertune::train
