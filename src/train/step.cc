#include "train/step.h"

#include <cmath>

#include "util/profiler.h"

namespace bertune::train {

TrainStep::TrainStep(model::BertModel& model, AdamW& optimizer, LrSchedule schedule, double max_grad_norm)
    : model_(model), optimizer_(optimizer), schedule_(schedule),
      max_grad_norm_(max_grad_norm > 0 ? max_grad_norm : INFINITY) {}

StepOutcome TrainStep::run(std::span<const model::Batch> micro_batches, int64_t step) {
  StepOutcome r;
  r.lr = schedule_.at(step);
  double k = static_cast<double>(micro_batches.size());
  double loss_sum = 0;
  for (const model::Batch& batch : micro_batches) {
    const float loss = model_.forward(batch, /*train=*/true);
    if (!std::isfinite(loss)) {
      r.loss = loss;  // the non-finite value, for the caller's message
      loss_sum = NAN;
      break;
    }
    model_.backward();
    loss_sum += loss;
  }
  const bool single = micro_batches.size() == 1 && reduction_ == nullptr;
  if (reduction_ != nullptr) reduction_->sum_over_workers(model_.grads(), model_.num_params(), loss_sum, k);
  r.finite = std::isfinite(loss_sum);
  if (r.finite) {
    r.loss = static_cast<float>(loss_sum / k);
    ProfileScope p("optimizer (clip + adamw + zero_grad)");
    // The buffer holds the sum of k mean-loss gradients; the step's gradient is 1/k of it.
    r.grad_norm = grad_norm(model_) / k;
    r.finite = std::isfinite(r.grad_norm);
    // clip_coefficient(norm, inf) is 1: the same pass with nothing to scale.
    const float scale = single ? clip_coefficient(r.grad_norm, max_grad_norm_)
                               : static_cast<float>(clip_coefficient(r.grad_norm, max_grad_norm_) / k);
    if (r.finite) optimizer_.step(r.lr, scale);
  } else if (std::isfinite(r.loss)) {
    r.loss = static_cast<float>(loss_sum);  // another worker's loss was not finite
  }
  if (!r.finite) model_.zero_grad();
  return r;
}

}  // namespace bertune::train
