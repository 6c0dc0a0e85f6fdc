#pragma once
// The scalar arithmetic of one AdamW step, shared by the host (train/optimizer.cc, the CPU
// body of adamw_update_device) and the CUDA kernel that decides the step on the device
// (ops_gpu.cu), so a GPU step that never waits computes the host's float32 coefficients
// from the same expressions: transformers.AdamW / torch.optim.AdamW's bias corrections in
// double, torch's clip_grad_norm_ coefficient in float32.
#include <cmath>
#include <cstdint>

#include "kernels/ops.h"

#if defined(__CUDACC__)
#define BERTUNE_ADAMW_HD __host__ __device__ inline
#else
#define BERTUNE_ADAMW_HD inline
#endif

namespace bertune::kernels {

// torch.nn.utils.clip_grad_norm_: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1,
// in float32 (max_norm = inf: 1).
BERTUNE_ADAMW_HD float clip_coefficient_f32(double norm, double max_norm) {
  float coef = static_cast<float>(max_norm) / (static_cast<float>(norm) + 1e-6f);
  return coef < 1.f ? coef : 1.f;
}

// The coefficients of update number t (1-based) at learning rate lr, for parameters with
// and without weight decay; every gradient is multiplied by grad_scale first.
BERTUNE_ADAMW_HD void adamw_coefficients(const AdamWHyper& h, double lr, int64_t t, float grad_scale,
                                         AdamWStep& decay, AdamWStep& no_decay) {
  // Both optimizers compute these in Python floats (double); the tensor ops then see them
  // as float scalars.
  const double bias_correction1 = 1.0 - std::pow(h.beta1, double(t));
  const double bias_correction2 = 1.0 - std::pow(h.beta2, double(t));
  AdamWStep s{};
  s.beta1 = float(h.beta1);
  s.one_minus_beta1 = float(1.0 - h.beta1);
  s.beta2 = float(h.beta2);
  s.one_minus_beta2 = float(1.0 - h.beta2);
  s.eps = float(h.eps);
  s.grad_scale = grad_scale;
  if (h.torch_form) {
    s.step_size = float(lr / bias_correction1);
    s.bias2_sqrt = float(std::sqrt(bias_correction2));
    s.pre_decay = float(1.0 - lr * h.weight_decay);
    s.post_decay = 0.f;
    no_decay = s;
    no_decay.pre_decay = 1.f;
  } else {
    s.step_size = float(lr * std::sqrt(bias_correction2) / bias_correction1);
    s.bias2_sqrt = 1.f;
    s.pre_decay = 1.f;
    s.post_decay = float(-lr * h.weight_decay);
    no_decay = s;
    no_decay.post_decay = 0.f;
  }
  decay = s;
}

// What a device-decided step does (adamw_update_device): whether it updates, and with which
// coefficients. TrainStep's host rule: the summed loss and the gradient norm must be finite;
// the norm of the step's gradient is sqrt(sum_squares) / k; the clip coefficient is torch's,
// divided by k (in double, then float) when the step summed k > 1 micro-batches.
BERTUNE_ADAMW_HD bool adamw_device_plan(const AdamWDeviceStep& s, double loss_sum, double sum_squares,
                                        int64_t steps_done, AdamWStep& decay, AdamWStep& no_decay) {
  const double k = double(s.micro_batches);
  const double norm = std::sqrt(sum_squares) / k;
  if (!std::isfinite(loss_sum) || !std::isfinite(norm)) return false;
  const float clip = clip_coefficient_f32(norm, s.max_grad_norm > 0 ? s.max_grad_norm : INFINITY);
  const float scale = (s.micro_batches == 1 ? clip : static_cast<float>(clip / k)) * s.grad_scale;
  adamw_coefficients(s.hyper, s.lr, steps_done + 1, scale, decay, no_decay);
  return true;
}

}  // namespace bertune::kernels
