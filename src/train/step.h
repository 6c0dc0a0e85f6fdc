#pragma once
// One optimizer step — the only one. `bertune train`, `compare`, `bench train` (and
// pretraining next) all run this, so a published speed is the speed of what users run:
//   forward (dropout on) -> backward -> global grad-norm (torch's clip_grad_norm_, its
//   scaling fused into AdamW's pass) -> AdamW at the scheduled lr -> gradients zeroed.
// A non-finite loss or gradient norm skips the update: weights and moments stay as they
// were, gradients are zeroed, and the caller decides what to do about it.
#include <cstdint>

#include "model/bert.h"
#include "train/optimizer.h"

namespace bertune::train {

// transformers.optimization's LambdaLR schedules, with the run's fixed numbers.
struct LrSchedule {
  Schedule kind = Schedule::Linear;
  double base_lr = 5e-5;
  int64_t warmup_steps = 0;
  int64_t total_steps = 1;
  double at(int64_t step) const { return learning_rate(kind, base_lr, step, warmup_steps, total_steps); }
};

struct StepOutcome {
  float loss = 0;        // mean loss of the batch (before the update)
  double grad_norm = 0;  // global L2 norm before clipping (0 when the loss was non-finite)
  double lr = 0;         // the learning rate this step used
  bool finite = true;    // false: update skipped
};

class TrainStep {
 public:
  // max_grad_norm <= 0: no clipping (the norm is still computed, for the non-finite check).
  TrainStep(model::BertModel& model, AdamW& optimizer, LrSchedule schedule, double max_grad_norm);

  // Optimizer step number `step` (0-based: what HF's scheduler has seen) on `batch`.
  StepOutcome run(const model::Batch& batch, int64_t step);

  const LrSchedule& schedule() const { return schedule_; }

 private:
  model::BertModel& model_;
  AdamW& optimizer_;
  LrSchedule schedule_;
  double max_grad_norm_;
};

}  // namespace bertune::train
