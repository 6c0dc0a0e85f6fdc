#pragma once
// The optimizer side of one training step, as the HF Trainer 4.30 does it:
// global grad-norm clipping (torch.nn.utils.clip_grad_norm_), AdamW, and the
// LambdaLR schedules of transformers.optimization.
//
// AdamW comes in the two forms the Trainer's `optim` can select:
//   adamw_hf     transformers.AdamW: denom = sqrt(v) + eps with the bias corrections
//                folded into the step size; p -= lr*wd*p after the update
//   adamw_torch  torch.optim.AdamW: p *= 1 - lr*wd first; denom = sqrt(v)/sqrt(1-b2^t) + eps
// They differ where |g| is tiny (eps enters at another scale). adamw_hf is the default
// everywhere (TrainOptions, AdamWOptions): it is TrainingArguments' default in transformers
// 4.30, which the reference notebook ran. Golden runs of both: shared/golden/bert/tiny_adamw*
// (tests/test_model.cc).
#include <cstdint>
#include <string>
#include <vector>

#include "kernels/memory.h"
#include "kernels/ops.h"
#include "util/tensor.h"

namespace bertune::model {
class BertModel;
}

namespace bertune::train {

enum class AdamWVariant { HF, Torch };
AdamWVariant parse_adamw_variant(const std::string& name);  // "adamw_hf" | "adamw_torch"
const char* adamw_variant_name(AdamWVariant v);

struct AdamWOptions {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8;  // TrainingArguments defaults
  double weight_decay = 0.0;
  AdamWVariant variant = AdamWVariant::HF;
};

class AdamW {
 public:
  // Weight decay applies to the parameters the model marks `decay`
  // (not biases, not LayerNorm weights: HF Trainer's grouping).
  AdamW(model::BertModel& model, AdamWOptions options);

  // One update at learning rate lr, then the gradients are zeroed (what the
  // Trainer's model.zero_grad() does), in the same pass over memory.
  // grad_scale multiplies every gradient first: pass clip_coefficient() to
  // clip without a separate pass over the gradients.
  // On a GPU the update is decided on the device either way (kernels::adamw_update_device):
  // the step count lives there too.
  void step(double lr, float grad_scale = 1.f);
  // The same update decided on the model's device, from a loss and a gradient sum of squares
  // that stay there (device memory): skipped when either is not finite, clipped to
  // max_grad_norm (<= 0: not clipped); the gradients hold the sum of micro_batches mean-loss
  // gradients (TrainStep's rule, see train/step.h). Nothing waits on a GPU. On the CPU the
  // pointers are host memory and the same arithmetic runs there (tests hold it to step()).
  void step_on_device(double lr, int micro_batches, const double* loss_sum, const double* sum_squares,
                      double max_grad_norm);
  // Updates made so far (on a GPU: read from the device, which waits for the stream).
  int64_t steps_done() const;

  // Checkpoint state: exp_avg.<name>, exp_avg_sq.<name> and a step count. Host-readable
  // views: the moments themselves on the CPU, a host copy made by this call elsewhere.
  std::vector<TensorRef> state_dict() const;
  void load_state_dict(const TensorMap& tensors, int64_t steps_done);

 private:
  kernels::AdamWHyper hyper() const;
  void device_update(kernels::AdamWDeviceStep s);

  model::BertModel& model_;
  AdamWOptions options_;
  std::vector<kernels::AdamWRange> ranges_;  // the flat buffer cut where the decay flag changes
  kernels::DeviceBuffer<float> m_, v_;  // on the model's device, zeroed
  mutable std::vector<float> host_m_, host_v_;  // state_dict's copies off the CPU
  int64_t step_ = 0;  // the CPU's step count
  // Off the CPU: ranges_ and the step count in device memory (the device decides each update).
  kernels::DeviceBuffer<kernels::AdamWRange> device_ranges_;
  kernels::DeviceBuffer<int64_t> device_step_;
};

// torch.nn.utils.clip_grad_norm_(params, max_norm) in two halves, so the scaling rides on
// the optimizer's pass over the gradients (train/step.h):
//   norm = grad_norm(model); opt.step(lr, clip_coefficient(norm, max_norm));
double grad_norm(const model::BertModel& model);
float clip_coefficient(double norm, double max_norm);  // torch's clamped coefficient, <= 1

enum class Schedule { Linear, Cosine, Constant, ConstantWithWarmup };
Schedule parse_schedule(const std::string& name);  // HF names: linear, cosine, constant, constant_with_warmup
const char* schedule_name(Schedule s);

// Learning rate for optimizer step `step` (0-based), as LambdaLR computes it.
double learning_rate(Schedule s, double base_lr, int64_t step, int64_t warmup_steps,
                     int64_t total_steps);

}  // namespace bertune::train
