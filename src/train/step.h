#pragma once
// One optimizer step — the only one. `bertune train`, `pretrain` (masked LM), `compare` and
// `bench train|pretrain` all run this, so a published speed is the speed of what users run:
//   forward (dropout on) -> backward -> global grad-norm (torch's clip_grad_norm_, its
//   scaling fused into AdamW's pass) -> AdamW at the scheduled lr -> gradients zeroed.
// A non-finite loss or gradient norm skips the update: weights and moments stay as they
// were, gradients are zeroed, and the caller decides what to do about it.
#include <cstdint>
#include <span>
#include <vector>

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
  int64_t step = 0;      // the optimizer step number it ran as (0-based)
};

// The data-parallel seam. A worker's step sums its micro-batches' gradients in the
// model's gradient buffer; before the gradient norm, the step hands that buffer to
// sum_over_workers(), which leaves there the sum over all workers (an MPI_Allreduce or
// ncclAllReduce with ncclSum), and sums the loss and the micro-batch count the same way.
// The loss is the mean over the global micro-batch (all workers' labelled items): before
// the forwards, sum_counts() adds up the micro-batches' labelled items (examples, masked
// tokens) over the workers, and each worker divides its loss by that count over the number
// of workers (BertModel::set_loss_denominator), so the workers' sum over their k
// micro-batches each, divided by the summed micro-batch count, is the mean over the
// global micro-batches' means — what one worker running the whole batch computes.
// Everything after it (norm, clip, AdamW) then runs identically on every worker, so the
// loop never changes. A worker whose loss was non-finite still takes part (collectives
// must), with loss_sum = NaN: the summed loss is then non-finite everywhere and every
// worker skips the update together. Without one (nullptr) the step is single-worker.
//
// Most rows of a word-embedding gradient stay zero (only the batch's tokens touch them): a
// step tells the reduction which rows its worker touched (touched_rows) before summing, and
// a reduction may then sum only the rows some worker touched (the others are zero on every
// worker), which is the same sum.
//
// A reduction may overlap with the backward pass (overlaps()): the step then hands it, once,
// the offsets at which the model's backward finishes parts of the buffer
// (BertModel::gradient_ready_offsets, the same on every worker, so every worker can cut the
// same buckets), and during the last backward of each step tells it each time the gradients
// [from, n) are final on this worker (gradients_ready), so it may start summing them there;
// sum_over_workers then sums what was not started (a worker that ran no backward, or a
// non-finite loss, starts everything there, in the same order) and waits for all of it, before
// anything reads the buffer. The sum of each value is the same however the buffer is cut.
//
// On a GPU the step keeps its loss on the device (launch/collect below): a reduction that
// sums device memory (sums_on(device), NCCL's) is handed the gradient buffer and the step's
// loss sum there (sum_on_device: both summed in place over the workers, queued on the compute
// stream, nothing waiting), and each worker's micro-batch count times workers() is the summed
// count (every worker runs the same number). sum_counts stays on the host: the loss
// denominators are set before the forwards.
struct TouchedRows {
  size_t offset = 0;  // the block's first value in the gradient buffer
  int rows = 0, cols = 0;
  std::vector<uint8_t> touched;  // [rows]: 1 where this worker's gradient may be non-zero
};
class GradientReduction {
 public:
  virtual ~GradientReduction() = default;
  virtual void sum_over_workers(float* grads, size_t n, double& loss_sum, double& micro_batches) = 0;
  // For the next sum_over_workers only; the default sums every row.
  virtual void touched_rows(TouchedRows rows) {}
  virtual int workers() const = 0;
  virtual void sum_counts(std::span<double> values) = 0;  // in place, over the workers
  // Overlap with the backward pass (see above); the defaults: none.
  virtual bool overlaps() const { return false; }
  virtual void gradient_layout(std::vector<size_t> ready_offsets, size_t n) {}
  virtual void gradients_ready(float* grads, size_t from) {}
  // Memory of which device sum_over_workers / sum_on_device sum; the default: the host's.
  virtual bool sums_on(kernels::Device d) const { return d == kernels::Device::CPU; }
  // grads [n] and *loss_sum (one double), memory of a device sums_on() accepts.
  virtual void sum_on_device(float* grads, size_t n, double* loss_sum);
};

class TrainStep {
 public:
  // max_grad_norm <= 0: no clipping (the norm is still computed, for the non-finite check).
  TrainStep(model::BertModel& model, AdamW& optimizer, LrSchedule schedule, double max_grad_norm);

  // Optimizer step number `step` (0-based: what HF's scheduler has seen) on `batch`.
  StepOutcome run(const model::Batch& batch, int64_t step) { return run(std::span(&batch, 1), step); }
  // Gradient accumulation: one optimizer step on the mean of the micro-batches' losses (HF
  // divides each micro-batch's loss by their number). The gradients add up in the model's
  // gradient buffer; the 1/k rides on the clip coefficient, so there is no extra pass. The
  // reported loss is the mean of the micro-batch losses. With one micro-batch this is exactly
  // the single-batch step.
  StepOutcome run(std::span<const model::Batch> micro_batches, int64_t step);

  // The same step without waiting for its outcome: on a GPU the loss and the gradient
  // norm stay on the device (the clip coefficient and the non-finite skip are decided
  // there, kernels::adamw_update_device) until collect() reads every pending outcome in
  // one copy. On the CPU, launch() is run() and collect() hands its outcome back, so a
  // loop that collects after every step on the CPU does exactly what run() did.
  void launch(std::span<const model::Batch> micro_batches, int64_t step);
  void launch(const model::Batch& batch, int64_t step) { launch(std::span(&batch, 1), step); }
  // The outcomes of the launched steps not collected yet, in launch order (on a GPU this
  // waits for the stream: the last launched step has finished when it returns). Valid until
  // the next launch() or collect(); no allocation once the buffers have grown.
  const std::vector<StepOutcome>& collect();
  size_t pending() const { return pending_.size(); }
  // Tests: take the device's path (loss and norm in "device" memory, AdamW decided by
  // kernels::adamw_update_device) on the CPU too, to hold its arithmetic to the host step's.
  void set_decide_on_device(bool on) { decide_on_device_ = on; }

  const LrSchedule& schedule() const { return schedule_; }
  // Data-parallel training: see GradientReduction. Not owned; nullptr = one worker.
  void set_gradient_reduction(GradientReduction* reduction);

 private:
  model::BertModel& model_;
  AdamW& optimizer_;
  LrSchedule schedule_;
  double max_grad_norm_;
  GradientReduction* reduction_ = nullptr;
  // The word embeddings' rows in the gradient buffer when only a batch's tokens touch them
  // (not where a tied decoder reads them: masked LM, ELECTRA's generator).
  const model::ParamInfo* word_embeddings_ = nullptr;
  TouchedRows touched_rows(std::span<const model::Batch> micro_batches) const;
  std::vector<double> counts_;  // the micro-batches' labelled items, summed over the workers

  double micro_batch_losses(std::span<const model::Batch> micro_batches, StepOutcome& r);
  void sum_counts(std::span<const model::Batch> micro_batches);
  // With a reduction: sets micro-batch j's loss denominator; false for an empty one (skipped).
  bool set_denominator(const model::Batch& batch, size_t j);

  bool on_device() const { return decide_on_device_ || model_.device() != kernels::Device::CPU; }
  void launch_on_device(std::span<const model::Batch> micro_batches, int64_t step);
  bool decide_on_device_ = false;
  // Launched, not collected: on the CPU resolved; on a GPU lr, step and finite = true, with
  // {loss sum, gradient sum of squares} in device_stats_ at 2 x its index, and its
  // micro-batch count in pending_micro_.
  std::vector<StepOutcome> pending_, collected_;
  std::vector<int> pending_micro_;
  std::vector<double> host_stats_;  // collect()'s copy of the pending device slots
  kernels::DeviceBuffer<double> device_stats_;
};

}  // namespace bertune::train
