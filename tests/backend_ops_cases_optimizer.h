#pragma once
// The backend test's cases, continued (backend_ops_cases.h): the AdamW ops.
#include <cmath>
#include <limits>
#include <string>
#include <vector>

#include "backend_ops.h"

namespace backend_ops {

namespace ref = op_reference;

// AdamW coefficients of update `step` (lr 3e-4, weight decay 0.01) in either form.
inline k::AdamWStep adamw_coefficients(bool torch_form, int step) {
  k::AdamWHyper h;
  h.weight_decay = 0.01;
  h.torch_form = torch_form;
  k::AdamWStep decay, no_decay;
  k::adamw_coefficients(h, 3e-4, step, 1.f, decay, no_decay);
  return decay;
}

// p, g, m, v of n elements (v >= 0), and the outputs of a run.
struct AdamWState {
  Floats p, g, m, v;
  explicit AdamWState(size_t n) : p(randn(n, 1)), g(randn(n, 11, 0.5f)), m(randn(n, 2, 0.01f)), v(randn(n, 3, 0.01f)) {
    for (auto& e : v) e = std::fabs(e);
  }
  ref::AdamW reference() const { return {as_doubles(p), as_doubles(g), as_doubles(m), as_doubles(v)}; }
};
struct AdamWOn {
  On<float> p, g, m, v;
  AdamWOn(Device d, const AdamWState& s) : p(d, s.p), g(d, s.g), m(d, s.m), v(d, s.v) {}
  Outputs outputs() const {
    const Tolerance state{1e-5, 1e-6, 1e-7};  // p, m, v: float updates against double
    return {{"p", p.get(), gpu_test::kFp32, state},
            {"g", g.get(), gpu_test::kExact, kRef},
            {"m", m.get(), gpu_test::kFp32, state},
            {"v", v.get(), gpu_test::kFp32, state}};
  }
};
inline std::vector<Doubles> adamw_outputs(const ref::AdamW& a) { return {a.p, a.g, a.m, a.v}; }

inline void add_adamw_update(std::vector<OpCase>& cases) {
  for (size_t n : {size_t(1000), kOptimizerSize})
    for (bool torch_form : {true, false})
      for (bool clip : {false, true}) {
        const AdamWState state(n);
        double sumsq = 0;
        for (float e : state.g) sumsq += double(e) * e;
        k::AdamWStep s = adamw_coefficients(torch_form, 2);
        s.grad_scale = 0.5f;
        s.max_grad_norm = clip ? 1.f : 0.f;
        const bool zero_grad = clip;
        cases.push_back({Op::adamw_update,
                         case_name("adamw_update_n" + std::to_string(n) + (torch_form ? "_torch" : "_transformers") +
                                   (clip ? "_clip_zero_grad" : "")),
                         Precision::FP32, "",
                         [=](Device d) {
                           AdamWOn on(d, state);
                           On<double> total(d, {sumsq});  // the clip norm in the op's memory
                           k::AdamWStep step = s;
                           step.clip_sum_squares = total.p();
                           k::adamw_update(d, on.p.p(), on.g.p(), on.m.p(), on.v.p(), n, step, zero_grad);
                           return on.outputs();
                         },
                         [=] {
                           auto a = state.reference();
                           k::AdamWStep step = s;
                           step.clip_sum_squares = &sumsq;
                           ref::adamw(a, 0, n, step, zero_grad);
                           return adamw_outputs(a);
                         }});
      }
}

// decay / no-decay ranges as the model lays parameters out, with a gap left untouched
inline std::vector<k::AdamWRange> adamw_ranges(size_t n) {
  const size_t b = n / 5 * 3;  // n >= 1000
  return {{0, 768, false}, {768, b, true}, {b, b + 100, false}, {b + 200, n, true}};
}

inline void add_adamw_update_ranges(std::vector<OpCase>& cases) {
  const size_t n = kOptimizerSize;
  const auto ranges = adamw_ranges(n);
  for (bool torch_form : {true, false})
    for (float max_norm : {0.f, 1.f}) {
      const AdamWState state(n);
      double sumsq = 0;
      for (float e : state.g) sumsq += double(e) * e;
      k::AdamWStep decay = adamw_coefficients(torch_form, 3), no_decay = decay;
      no_decay.pre_decay = 1.f;
      no_decay.post_decay = 0.f;
      decay.grad_scale = no_decay.grad_scale = 0.5f;  // e.g. 1 / accumulation steps
      decay.max_grad_norm = no_decay.max_grad_norm = max_norm;
      cases.push_back({Op::adamw_update_ranges,
                       case_name(std::string("adamw_update_ranges") + (torch_form ? "_torch" : "_transformers") +
                                 (max_norm > 0 ? "_clip" : "")),
                       Precision::FP32, "",
                       [=](Device d) {
                         AdamWOn on(d, state);
                         On<double> total(d, {sumsq});
                         k::AdamWStep with = decay, without = no_decay;
                         with.clip_sum_squares = without.clip_sum_squares = total.p();
                         k::adamw_update_ranges(d, on.p.p(), on.g.p(), on.m.p(), on.v.p(), ranges.data(),
                                                int(ranges.size()), with, without, true);
                         return on.outputs();
                       },
                       [=] {
                         auto a = state.reference();
                         k::AdamWStep with = decay, without = no_decay;
                         with.clip_sum_squares = without.clip_sum_squares = &sumsq;
                         for (const auto& r : ranges) ref::adamw(a, r.begin, r.end, r.decay ? with : without, true);
                         return adamw_outputs(a);
                       }});
    }
}

// The device-decided step: updates (and counts) only with a finite loss and norm.
inline void add_adamw_update_device(std::vector<OpCase>& cases) {
  const size_t n = 200003;
  const auto ranges = adamw_ranges(n);
  for (int micro_batches : {1, 3})
    for (double loss : {2.5, std::numeric_limits<double>::infinity()})
      for (double max_norm : {0.0, 1.0}) {
        const AdamWState state(n);
        double sumsq = 0;
        for (float e : state.g) sumsq += double(e) * e;
        k::AdamWDeviceStep s;
        s.hyper.weight_decay = 0.01;
        s.hyper.torch_form = micro_batches == 1;
        s.lr = 3e-4;
        s.max_grad_norm = max_norm;
        s.micro_batches = micro_batches;
        s.grad_scale = 0.5f;
        const int64_t steps_done = 4;
        cases.push_back(
            {Op::adamw_update_device,
             case_name("adamw_update_device_k" + std::to_string(micro_batches) + (std::isfinite(loss) ? "" : "_inf_loss") +
                       (max_norm > 0 ? "_clip" : "")),
             Precision::FP32, "",
             [=](Device d) {
               AdamWOn on(d, state);
               On<double> loss_sum(d, {loss}), total(d, {sumsq});
               On<int64_t> count(d, {steps_done});
               On<k::AdamWRange> device_ranges(d, ranges);
               k::AdamWDeviceStep step = s;
               step.loss_sum = loss_sum.p();
               step.sum_squares = total.p();
               step.step_count = count.p();
               k::adamw_update_device(d, on.p.p(), on.g.p(), on.m.p(), on.v.p(), ranges.data(), device_ranges.p(),
                                      int(ranges.size()), step);
               Outputs out = on.outputs();
               out.push_back({"step_count", count.get(), gpu_test::kExact, gpu_test::kExact});
               return out;
             },
             [=] {
               auto a = state.reference();
               k::AdamWStep decay, no_decay;
               const bool update = k::adamw_device_plan(s, loss, sumsq, steps_done, decay, no_decay);
               for (const auto& r : ranges) {
                 if (update) ref::adamw(a, r.begin, r.end, r.decay ? decay : no_decay, true);
                 for (size_t i = r.begin; i < r.end; ++i) a.g[i] = 0;
               }
               auto out = adamw_outputs(a);
               out.push_back({double(steps_done + (update ? 1 : 0))});
               return out;
             }});
      }
}

inline void add_optimizer(std::vector<OpCase>& cases) {
  add_adamw_update(cases);
  add_adamw_update_ranges(cases);
  add_adamw_update_device(cases);
}

}  // namespace backend_ops
