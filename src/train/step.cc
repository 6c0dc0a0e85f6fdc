#include "train/step.h"

#include <cmath>

#include "util/profiler.h"

namespace bertune::train {

TrainStep::TrainStep(model::BertModel& model, AdamW& optimizer, LrSchedule schedule, double max_grad_norm)
    : model_(model), optimizer_(optimizer), schedule_(schedule),
      max_grad_norm_(max_grad_norm > 0 ? max_grad_norm : INFINITY) {}

StepOutcome TrainStep::run(const model::Batch& batch, int64_t step) {
  StepOutcome r;
  r.lr = schedule_.at(step);
  r.loss = model_.forward(batch, /*train=*/true);
  r.finite = std::isfinite(r.loss);
  if (r.finite) {
    model_.backward();
    ProfileScope p("optimizer (clip + adamw + zero_grad)");
    r.grad_norm = grad_norm(model_);
    r.finite = std::isfinite(r.grad_norm);
    // clip_coefficient(norm, inf) is 1: the same pass with nothing to scale.
    if (r.finite) optimizer_.step(r.lr, clip_coefficient(r.grad_norm, max_grad_norm_));
  }
  if (!r.finite) model_.zero_grad();
  return r;
}

}  // namespace bertune::train
