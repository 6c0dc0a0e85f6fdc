// Shape checks and dispatch of the int8 ops (kept apart from ops.cc: inference only).
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>

#include "kernels/cpu/int8_cpu.h"
#include "kernels/ops.h"
#include "util/error.h"

namespace bertune::kernels {

QuantizedLinear quantize_linear(const float* W, int out, int in) {
  if (out <= 0 || in <= 0) throw Error("kernels::quantize_linear: bad shape [" + std::to_string(out) + ", " +
                                       std::to_string(in) + "]");
  QuantizedLinear w;
  w.in = in;
  w.out = out;
  cpu::quantize_linear(w, W);
  cpu::pack_quantized_linear(w);
  return w;
}

void pack_quantized_linear(QuantizedLinear& w) {
  if (w.out <= 0 || w.in <= 0 || w.q.size() != static_cast<size_t>(w.out) * w.in ||
      w.scale.size() != static_cast<size_t>(w.out))
    throw Error("kernels::pack_quantized_linear: q has " + std::to_string(w.q.size()) + " values and scale " +
                std::to_string(w.scale.size()) + " for a [" + std::to_string(w.out) + ", " + std::to_string(w.in) +
                "] weight");
  cpu::pack_quantized_linear(w);
}

void linear_int8_forward(Device d, float* y, const float* x, const QuantizedLinear& w, const float* b, int T) {
  if (T < 0 || w.packed.empty() || w.compensation.empty())
    throw Error("kernels::linear_int8_forward: T " + std::to_string(T) + " or an unpacked weight");
  if (d != Device::CPU)
    throw Error("kernels::linear_int8_forward: int8 inference is CPU-only (asked for " +
                std::string(device_name(d)) + ")");
  cpu::linear_int8_forward(y, x, w, b, T);
}

namespace {

struct Registry {
  std::shared_mutex mu;
  std::map<const float*, std::unique_ptr<const QuantizedLinear>> weights;
  std::atomic<size_t> count{0};
};
Registry& registry() {
  static Registry r;
  return r;
}

}  // namespace

Int8Binding::~Int8Binding() {
  auto& r = registry();
  std::unique_lock lock(r.mu);
  for (const float* W : bound_) r.weights.erase(W);
  r.count.store(r.weights.size(), std::memory_order_relaxed);
}

void Int8Binding::bind(const float* W, QuantizedLinear q) {
  if (q.packed.empty()) pack_quantized_linear(q);
  auto& r = registry();
  std::unique_lock lock(r.mu);
  if (r.weights.count(W)) throw Error("kernels::Int8Binding: this weight is already bound");
  r.weights[W] = std::make_unique<const QuantizedLinear>(std::move(q));
  bound_.push_back(W);
  r.count.store(r.weights.size(), std::memory_order_relaxed);
}

const QuantizedLinear* bound_int8_weight(const float* W) {
  auto& r = registry();
  if (r.count.load(std::memory_order_relaxed) == 0) return nullptr;
  std::shared_lock lock(r.mu);
  auto it = r.weights.find(W);
  return it == r.weights.end() ? nullptr : it->second.get();
}

void set_int8_kernel(Int8Kernel k) { cpu::set_int8_kernel(k); }
const char* int8_kernel_name() { return cpu::int8_kernel_name(); }
bool cpu_has_avx512_vnni() { return cpu::cpu_has_avx512_vnni(); }

}  // namespace bertune::kernels
