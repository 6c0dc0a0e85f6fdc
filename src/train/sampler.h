#pragma once
// Which examples go into which batch (infer/batching.h lays a batch out).
//
// Training order follows the Hugging Face Trainer (transformers 4.30):
//  - random order: a fresh permutation every epoch;
//  - --group-by-length: LengthGroupedSampler (trainer_pt_utils.get_length_grouped_indices),
//    reproduced exactly *after* the base permutation. torch.randperm's stream cannot be
//    reproduced without torch, so the base permutation comes from our own documented RNG
//    (SplitMix64 -> Fisher-Yates, below); everything that follows it is HF's algorithm.
// Evaluation is sequential. Batches keep drop_last=False semantics (the last one may be short).
//
// An epoch's order is a pure function of (seed, epoch), so resuming mid-epoch means rebuilding
// the order and skipping the batches already done — no sampler state beyond two integers.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace bertune::train {

// SplitMix64 (Steele, Lea & Flood 2014): tiny, fast, statistically sound for shuffling, and
// trivially re-implementable anywhere, so an order can be reproduced outside bertune.
struct SplitMix64 {
  uint64_t state;
  explicit SplitMix64(uint64_t seed) : state(seed) {}
  uint64_t next() {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform in [0, bound) without modulo bias (Lemire's multiply-shift with rejection).
  uint64_t below(uint64_t bound);
};

// Permutation of [0, n): Fisher-Yates from the back, j = below(i + 1).
std::vector<size_t> random_permutation(size_t n, uint64_t seed);

// The seed of epoch `epoch` (0-based) for a run seeded with `seed`. HF keeps one torch
// generator running across epochs; we derive each epoch's seed instead so any epoch's order
// can be rebuilt on resume without replaying the earlier ones.
uint64_t epoch_seed(uint64_t seed, int64_t epoch);

// HF get_length_grouped_indices with a given base permutation `indices` (what torch.randperm
// returned there). mega_batch_mult <= 0: min(n / (4 * batch_size), 50), at least 1.
// Megabatches of mega_batch_mult * batch_size consecutive indices are each stably sorted by
// length, longest first (Python's sorted(reverse=True) keeps ties in permutation order); then
// the first element of the megabatch whose first element is longest (first such megabatch,
// as torch.argmax) is swapped with the very first element, so the longest batch runs first
// (an out-of-memory error shows up at once).
std::vector<size_t> length_grouped_indices(const std::vector<int>& lengths, int batch_size,
                                           const std::vector<size_t>& indices,
                                           int mega_batch_mult = 0);

// The order of training epoch `epoch`: a random permutation, or the length-grouped order
// built on that permutation.
std::vector<size_t> train_epoch_order(const std::vector<int>& lengths, int batch_size,
                                      bool group_by_length, uint64_t seed, int64_t epoch);

// Consecutive slices of `order` holding at most max_tokens tokens each (lengths[i] per
// example): a slice closes when the next example would not fit. Every example once, in
// order; Error when one alone is longer than max_tokens.
std::vector<std::vector<size_t>> split_batches_by_tokens(const std::vector<size_t>& order,
                                                         const std::vector<int>& lengths, int64_t max_tokens);
// The batches of training epoch `epoch`, in the order they run: batch_size examples each, or
// with max_tokens > 0 the same order cut to a token budget (batch_size then only sizes the
// length-grouping megabatches).
std::vector<std::vector<size_t>> epoch_batches(const std::vector<int>& lengths, int batch_size,
                                               bool group_by_length, uint64_t seed, int64_t epoch,
                                               int64_t max_tokens = 0);
inline int64_t batches_per_epoch(size_t n, int batch_size) {
  return static_cast<int64_t>((n + batch_size - 1) / batch_size);
}

}  // namespace bertune::train
