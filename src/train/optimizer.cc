#include "train/optimizer.h"

#include <cmath>

#include "kernels/adamw_math.h"
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
  if (model.device() != k::Device::CPU) {
    device_ranges_ = k::DeviceBuffer<k::AdamWRange>(model.device(), ranges_.size());
    k::copy_to_device(model.device(), device_ranges_.data(), ranges_.data(), ranges_.size() * sizeof(k::AdamWRange));
    device_step_ = k::DeviceBuffer<int64_t>(model.device(), 1);
  }
}

k::AdamWHyper AdamW::hyper() const {
  return {options_.beta1, options_.beta2, options_.eps, options_.weight_decay, options_.variant == AdamWVariant::Torch};
}

void AdamW::device_update(k::AdamWDeviceStep s) {
  const bool cpu = model_.device() == k::Device::CPU;  // host memory is the device's: step_ and ranges_
  s.hyper = hyper();
  s.step_count = cpu ? &step_ : device_step_.data();
  k::adamw_update_device(model_.device(), model_.params(), model_.grads(), m_.data(), v_.data(), ranges_.data(),
                         cpu ? ranges_.data() : device_ranges_.data(), static_cast<int>(ranges_.size()), s);
}

void AdamW::step_on_device(double lr, int micro_batches, const double* loss_sum, const double* sum_squares,
                           double max_grad_norm) {
  k::AdamWDeviceStep s;
  s.lr = lr;
  s.max_grad_norm = max_grad_norm;
  s.micro_batches = micro_batches;
  s.loss_sum = loss_sum;
  s.sum_squares = sum_squares;
  device_update(s);
}

int64_t AdamW::steps_done() const {
  if (model_.device() == k::Device::CPU) return step_;
  int64_t n = 0;
  k::copy_to_host(model_.device(), &n, device_step_.data(), sizeof n);
  return n;
}

void AdamW::step(double lr, float grad_scale) {
  if (model_.device() != k::Device::CPU) {  // no loss or norm to check: always an update
    k::AdamWDeviceStep s;
    s.lr = lr;
    s.grad_scale = grad_scale;
    return device_update(s);
  }
  ++step_;
  k::AdamWStep s, no_decay;
  k::adamw_coefficients(hyper(), lr, step_, grad_scale, s, no_decay);
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
  if (model_.device() != k::Device::CPU)
    k::copy_to_device(model_.device(), device_step_.data(), &steps_done, sizeof steps_done);
}

double grad_norm(const model::BertModel& model) {
  return std::sqrt(k::sum_squares(model.device(), model.grads(), model.num_params()));
}

float clip_coefficient(double norm, double max_norm) { return k::clip_coefficient_f32(norm, max_norm); }

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
