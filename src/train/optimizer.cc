#include "train/optimizer.h"

#include <cmath>

#include "model/bert.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace bertune::train {
namespace k = bertune::kernels;

AdamW::AdamW(model::BertModel& model, AdamWOptions options)
    : model_(model),
      options_(options),
      m_(model.device(), model.num_params()),
      v_(model.device(), model.num_params()) {
  // Parameters are laid out in order; alignment gaps between them hold zeros
  // in params, grads and moments, so they can join either neighbour's range.
  for (const auto& p : model.param_info()) {
    if (!ranges_.empty() && ranges_.back().decay == p.decay) {
      ranges_.back().end = p.offset + p.numel;
    } else {
      size_t begin = ranges_.empty() ? 0 : ranges_.back().end;
      ranges_.push_back({begin, p.offset + p.numel, p.decay});
    }
  }
  if (!ranges_.empty()) ranges_.back().end = model.num_params();
}

void AdamW::step(double lr, float grad_scale) {
  ++step_;
  // Both optimizers compute these in Python floats (double); the tensor ops
  // then see them as float scalars.
  const double bias_correction1 = 1.0 - std::pow(options_.beta1, double(step_));
  const double bias_correction2 = 1.0 - std::pow(options_.beta2, double(step_));
  k::AdamWStep s{};
  s.beta1 = float(options_.beta1);
  s.one_minus_beta1 = float(1.0 - options_.beta1);
  s.beta2 = float(options_.beta2);
  s.one_minus_beta2 = float(1.0 - options_.beta2);
  s.eps = float(options_.eps);
  s.grad_scale = grad_scale;
  k::AdamWStep no_decay;
  if (options_.variant == AdamWVariant::Torch) {
    s.step_size = float(lr / bias_correction1);
    s.bias2_sqrt = float(std::sqrt(bias_correction2));
    s.pre_decay = float(1.0 - lr * options_.weight_decay);
    s.post_decay = 0.f;
    no_decay = s;
    no_decay.pre_decay = 1.f;
  } else {
    s.step_size = float(lr * std::sqrt(bias_correction2) / bias_correction1);
    s.bias2_sqrt = 1.f;
    s.pre_decay = 1.f;
    s.post_decay = float(-lr * options_.weight_decay);
    no_decay = s;
    no_decay.post_decay = 0.f;
  }
  float* p = model_.params();
  float* g = model_.grads();
  for (const auto& r : ranges_) {
    k::adamw_update(model_.device(), p + r.begin, g + r.begin, m_.data() + r.begin,
                    v_.data() + r.begin, r.end - r.begin, r.decay ? s : no_decay,
                    /*zero_grad=*/true);
  }
}

std::vector<TensorRef> AdamW::state_dict() const {
  const float* m = k::host_view(m_.device(), m_.data(), m_.size(), host_m_);
  const float* v = k::host_view(v_.device(), v_.data(), v_.size(), host_v_);
  std::vector<TensorRef> out;
  for (const auto& p : model_.param_info()) {
    out.push_back({"exp_avg." + p.name, p.shape, m + p.offset});
    out.push_back({"exp_avg_sq." + p.name, p.shape, v + p.offset});
  }
  return out;
}

void AdamW::load_state_dict(const TensorMap& tensors, int64_t steps_done) {
  for (const auto& p : model_.param_info()) {
    for (auto [prefix, buf] : {std::pair{std::string("exp_avg."), &m_}, std::pair{std::string("exp_avg_sq."), &v_}}) {
      auto it = tensors.find(prefix + p.name);
      if (it == tensors.end()) throw Error("optimizer state has no tensor " + prefix + p.name);
      if (it->second.data.size() != p.numel)
        throw Error("optimizer tensor " + prefix + p.name + " has " +
                    std::to_string(it->second.data.size()) + " values, the model needs " +
                    std::to_string(p.numel));
      k::copy_to_device(buf->device(), buf->data() + p.offset, it->second.data.data(), p.numel * sizeof(float));
    }
  }
  step_ = steps_done;
}

double grad_norm(const model::BertModel& model) {
  return std::sqrt(k::sum_squares(model.device(), model.grads(), model.num_params()));
}

float clip_coefficient(double norm, double max_norm) {
  // torch: clip_coef = max_norm / (total_norm + 1e-6), clamped to 1, in float32.
  float coef = static_cast<float>(max_norm) / (static_cast<float>(norm) + 1e-6f);
  return coef < 1.f ? coef : 1.f;
}

namespace {
constexpr EnumNames<Schedule, 4> kScheduleNames{{{{Schedule::Linear, "linear"},
                                                  {Schedule::Cosine, "cosine"},
                                                  {Schedule::Constant, "constant"},
                                                  {Schedule::ConstantWithWarmup, "constant_with_warmup"}}}};
constexpr EnumNames<AdamWVariant, 2> kAdamWNames{{{{AdamWVariant::HF, "adamw_hf"}, {AdamWVariant::Torch, "adamw_torch"}}}};
}  // namespace

Schedule parse_schedule(const std::string& name) { return kScheduleNames.parse(name); }
const char* schedule_name(Schedule s) { return kScheduleNames.name(s); }
AdamWVariant parse_adamw_variant(const std::string& name) { return kAdamWNames.parse(name); }
const char* adamw_variant_name(AdamWVariant v) { return kAdamWNames.name(v); }

double learning_rate(Schedule s, double base_lr, int64_t step, int64_t warmup_steps,
                     int64_t total_steps) {
  const double warm = double(std::max<int64_t>(1, warmup_steps));
  double factor = 1.0;
  switch (s) {
    case Schedule::Constant:
      factor = 1.0;
      break;
    case Schedule::ConstantWithWarmup:
      factor = step < warmup_steps ? double(step) / warm : 1.0;
      break;
    case Schedule::Linear:
      if (step < warmup_steps)
        factor = double(step) / warm;
      else
        factor = std::max(0.0, double(total_steps - step) /
                                   double(std::max<int64_t>(1, total_steps - warmup_steps)));
      break;
    case Schedule::Cosine:
      if (step < warmup_steps) {
        factor = double(step) / warm;
      } else {
        double progress = double(step - warmup_steps) /
                          double(std::max<int64_t>(1, total_steps - warmup_steps));
        factor = std::max(0.0, 0.5 * (1.0 + std::cos(M_PI * 0.5 * 2.0 * progress)));
      }
      break;
  }
  return base_lr * factor;
}

}  // namespace bertune::train
