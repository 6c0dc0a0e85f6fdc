#include "train/batching.h"

#include "train/sampler.h"
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
  // The trainer's sampler, so the benchmark orders batches exactly as training does.
  return split_batches(train_epoch_order(lengths, batch_size, group_by_length, seed, 0), batch_size);
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
