#include "train/batching.h"

#include <algorithm>
#include <numeric>

#include "util/error.h"

namespace bertune::train {

Padding parse_padding(const std::string& name) {
  if (name == "packed") return Padding::Packed;
  if (name == "longest") return Padding::Longest;
  if (name == "max_length") return Padding::MaxLength;
  throw Error("unknown padding '" + name + "' (expected packed, longest or max_length)");
}

std::string padding_name(Padding p) {
  switch (p) {
    case Padding::Packed: return "packed";
    case Padding::Longest: return "longest";
    case Padding::MaxLength: return "max_length";
  }
  return "?";
}

std::vector<std::vector<size_t>> make_batches(const std::vector<int>& lengths, int batch_size,
                                              bool group_by_length, uint64_t seed) {
  if (batch_size <= 0) throw Error("batch size must be positive");
  const size_t n = lengths.size();
  std::vector<size_t> order(n);
  std::iota(order.begin(), order.end(), 0);
  uint64_t state = seed;
  auto next = [&]() {  // splitmix64
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  for (size_t i = n; i > 1; --i) std::swap(order[i - 1], order[next() % i]);  // Fisher-Yates

  std::vector<std::vector<size_t>> batches;
  auto cut = [&](const std::vector<size_t>& seq) {
    for (size_t i = 0; i < seq.size(); i += batch_size)
      batches.emplace_back(seq.begin() + i, seq.begin() + std::min(seq.size(), i + batch_size));
  };
  if (!group_by_length) {
    cut(order);
    return batches;
  }
  size_t mult = std::min<size_t>(n / (size_t(batch_size) * 4), 50);
  size_t mega = std::max<size_t>(mult, 1) * batch_size;
  for (size_t i = 0; i < n; i += mega) {
    std::vector<size_t> m(order.begin() + i, order.begin() + std::min(n, i + mega));
    std::stable_sort(m.begin(), m.end(), [&](size_t a, size_t b) { return lengths[a] > lengths[b]; });
    cut(m);
  }
  // The longest batch goes first (HF: an early OOM instead of a late one).
  size_t longest = 0;
  for (size_t b = 1; b < batches.size(); ++b)
    if (lengths[batches[b][0]] > lengths[batches[longest][0]]) longest = b;
  if (!batches.empty()) std::swap(batches[0], batches[longest]);
  return batches;
}

model::Batch build_batch(const std::vector<std::vector<int32_t>>& ids,
                         const std::vector<int32_t>& labels, const std::vector<size_t>& indices,
                         Padding padding, int max_length, int32_t pad_id) {
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int32_t> batch_labels;
  for (size_t i : indices) {
    seqs.push_back(ids.at(i));
    if (!labels.empty()) batch_labels.push_back(labels.at(i));
  }
  switch (padding) {
    case Padding::Packed: return model::Batch::packed(seqs, std::move(batch_labels));
    case Padding::Longest: return model::Batch::padded(seqs, 0, pad_id, std::move(batch_labels));
    case Padding::MaxLength:
      return model::Batch::padded(seqs, max_length, pad_id, std::move(batch_labels));
  }
  throw Error("build_batch: bad padding");
}

}  // namespace bertune::train
