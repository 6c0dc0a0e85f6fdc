#include "train/sampler.h"

#include <algorithm>
#include <string>

#include "infer/batching.h"
#include "util/error.h"

namespace bertune::train {

uint64_t SplitMix64::below(uint64_t bound) {
  if (bound <= 1) return 0;
  // Lemire: the high word of x * bound is uniform once the low word clears the threshold.
  const uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    unsigned __int128 m = static_cast<unsigned __int128>(next()) * bound;
    if (static_cast<uint64_t>(m) >= threshold) return static_cast<uint64_t>(m >> 64);
  }
}

std::vector<size_t> random_permutation(size_t n, uint64_t seed) {
  std::vector<size_t> p(n);
  for (size_t i = 0; i < n; ++i) p[i] = i;
  SplitMix64 rng(seed);
  for (size_t i = n; i > 1; --i) {
    size_t j = static_cast<size_t>(rng.below(i));
    std::swap(p[i - 1], p[j]);
  }
  return p;
}

uint64_t epoch_seed(uint64_t seed, int64_t epoch) {
  // One SplitMix64 step over (seed, epoch): nearby seeds and epochs give unrelated streams.
  SplitMix64 mix(seed ^ (0xD1B54A32D192ED03ull * static_cast<uint64_t>(epoch + 1)));
  return mix.next();
}

std::vector<size_t> length_grouped_indices(const std::vector<int>& lengths, int batch_size,
                                           const std::vector<size_t>& indices,
                                           int mega_batch_mult) {
  if (batch_size <= 0) throw Error("length_grouped_indices: batch_size must be positive");
  if (indices.size() != lengths.size())
    throw Error("length_grouped_indices: permutation and lengths differ in size");
  const size_t n = lengths.size();
  if (n == 0) return {};
  if (mega_batch_mult <= 0) {
    mega_batch_mult = static_cast<int>(std::min<size_t>(n / (static_cast<size_t>(batch_size) * 4), 50));
    if (mega_batch_mult == 0) mega_batch_mult = 1;  // tiny datasets
  }
  const size_t megabatch_size = static_cast<size_t>(mega_batch_mult) * batch_size;

  std::vector<size_t> out(indices);
  std::vector<size_t> starts;
  for (size_t s = 0; s < n; s += megabatch_size) {
    auto first = out.begin() + static_cast<std::ptrdiff_t>(s);
    auto last = out.begin() + static_cast<std::ptrdiff_t>(std::min(n, s + megabatch_size));
    std::stable_sort(first, last, [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
    starts.push_back(s);
  }
  // The megabatch whose head is longest; ties go to the earliest one, like torch.argmax.
  size_t best = 0;
  for (size_t m = 1; m < starts.size(); ++m)
    if (lengths[out[starts[m]]] > lengths[out[starts[best]]]) best = m;
  std::swap(out[0], out[starts[best]]);
  return out;
}

std::vector<size_t> train_epoch_order(const std::vector<int>& lengths, int batch_size,
                                      bool group_by_length, uint64_t seed, int64_t epoch) {
  auto perm = random_permutation(lengths.size(), epoch_seed(seed, epoch));
  if (!group_by_length) return perm;
  return length_grouped_indices(lengths, batch_size, perm);
}

std::vector<std::vector<size_t>> split_batches_by_tokens(const std::vector<size_t>& order,
                                                         const std::vector<int>& lengths, int64_t max_tokens) {
  std::vector<std::vector<size_t>> batches;
  int64_t tokens = 0;
  for (size_t i : order) {
    const int64_t n = lengths[i];
    if (n > max_tokens)
      throw Error("example " + std::to_string(i) + " has " + std::to_string(n) + " tokens, more than the budget of " +
                  std::to_string(max_tokens) + " per batch");
    if (batches.empty() || tokens + n > max_tokens) {
      batches.emplace_back();
      tokens = 0;
    }
    batches.back().push_back(i);
    tokens += n;
  }
  return batches;
}

std::vector<std::vector<size_t>> epoch_batches(const std::vector<int>& lengths, int batch_size,
                                               bool group_by_length, uint64_t seed, int64_t epoch,
                                               int64_t max_tokens) {
  if (batch_size <= 0) throw Error("batch size must be positive");
  const std::vector<size_t> order = train_epoch_order(lengths, batch_size, group_by_length, seed, epoch);
  return max_tokens > 0 ? split_batches_by_tokens(order, lengths, max_tokens) : infer::split_batches(order, batch_size);
}

}  // namespace bertune::train
