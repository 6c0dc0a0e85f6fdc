#pragma once
// What a BertModel of a config takes in memory, before it is built: its flat parameter
// buffer (the gradients take as much again) and the activation arena of one forward, as
// BertModel::layout_arena plans it, for a batch shape. The memory checks of train, pretrain,
// eval, predict and serve add these up (util/limits.h) before they allocate anything.
#include <cstdint>

#include "model/config.h"
#include "model/layout.h"

namespace bertune::model {

struct BatchShape {
  int64_t sequences = 0;     // B
  int64_t rows = 0;          // T: computed tokens, pad rows included
  int64_t prob_entries = 0;  // heads x the sum of span^2 over the sequences
  int64_t logit_rows = 0;    // R: B for classification; a per-token head's rows (labelled, or all)
};

// B sequences of `length` rows each (padded to it, or as long as that).
BatchShape uniform_batch(const BertConfig& config, Task task, int64_t sequences, int64_t length);

uint64_t parameter_bytes(const BertConfig& config, Task task);
// The arena of a training (train) or inference forward. cls_rows_compact: a classification
// training forward that runs its last layer on the [CLS] rows only (BertModel's default on
// the CPU). UINT64_MAX for a shape beyond what a batch can hold.
uint64_t activation_bytes(const BertConfig& config, Task task, const BatchShape& shape, bool train,
                          bool cls_rows_compact);

}  // namespace bertune::model
