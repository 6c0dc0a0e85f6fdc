#pragma once
// Evaluation and prediction: sequential (or length-sorted) batches, no dropout, every
// logit back at its example's place.
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/batching.h"
#include "infer/metrics.h"
#include "model/bert.h"

namespace bertune::infer {

struct EvalResult {
  ClassificationMetrics metrics;
  std::vector<int32_t> predictions;
  // Only when asked for: [n, num_labels]; token classification [n, positions, num_labels], the
  // labelled tokens' rows at their positions and 0 elsewhere (only those are computed), where
  // `positions` is the longest example's length.
  std::vector<float> logits;
  size_t positions = 0;
  double runtime = 0;
  int64_t steps = 0;
  // HF's evaluate() record: eval_loss, eval_accuracy, ..., eval_runtime, eval_samples_per_second.
  nlohmann::json record(const std::string& prefix = "eval_") const;
};

// One evaluation split across the processes of a world (data-parallel training): rank r of
// `size` runs the batches j with j % size == r, and sum_all adds every rank's logits in place
// (an all-reduce), so every rank ends with all of them — each computed by exactly one rank,
// zero on the others, so the sum is that rank's value (a -0 becomes +0) — and the metrics of
// one process.
struct EvalShard {
  int rank = 0;
  int size = 1;
  std::function<void(float* logits, size_t n)> sum_all;
};

// No dropout. Metrics when every example has a label, else predictions only; predictions
// and logits in the data's order either way. sort_by_length: batches of similar length
// (less padding, and packed batches of even size) — what eval and predict do; the
// trainer's evaluation keeps sequential batches. shard (sequence classification and regression;
// token classification runs whole on every rank): this rank's part of one evaluation.
EvalResult evaluate(model::BertModel& model, const TokenizedData& data, int batch_size, Padding padding,
                    int max_length, int32_t pad_id, bool keep_logits = false, bool sort_by_length = false,
                    const EvalShard* shard = nullptr);

}  // namespace bertune::infer
