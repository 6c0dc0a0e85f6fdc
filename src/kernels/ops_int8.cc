// The int8 weights: quantizing, packing, binding (kept apart from ops.cc: inference only).
// linear_int8_forward is a row of the op table (kernels/op_table.inc).
#include <atomic>
#include <map>
#include <memory>
#include <mutex>
#include <shared_mutex>
#include <string>
#include <utility>
#include <vector>

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

namespace {

struct Registry {
  std::shared_mutex mu;
  // Several widths may share one pointer: a fused [3H, H] QKV weight and its first
  // H rows (the query alone) start at the same address.
  std::map<const float*, std::vector<std::unique_ptr<const QuantizedLinear>>> weights;
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
  for (const auto& [W, out] : bound_) {
    auto it = r.weights.find(W);
    if (it == r.weights.end()) continue;
    std::erase_if(it->second, [out = out](const auto& q) { return q->out == out; });
    if (it->second.empty()) r.weights.erase(it);
  }
  r.count.store(r.weights.size(), std::memory_order_relaxed);
}

void Int8Binding::bind(const float* W, QuantizedLinear q) {
  if (q.packed.empty()) pack_quantized_linear(q);
  auto& r = registry();
  std::unique_lock lock(r.mu);
  auto& at = r.weights[W];
  for (const auto& b : at)
    if (b->out == q.out) throw Error("kernels::Int8Binding: this weight is already bound with this output width");
  bound_.emplace_back(W, q.out);
  at.push_back(std::make_unique<const QuantizedLinear>(std::move(q)));
  r.count.store(r.weights.size(), std::memory_order_relaxed);
}

const QuantizedLinear* bound_int8_weight(const float* W, int out) {
  auto& r = registry();
  if (r.count.load(std::memory_order_relaxed) == 0) return nullptr;
  std::shared_lock lock(r.mu);
  auto it = r.weights.find(W);
  if (it == r.weights.end()) return nullptr;
  for (const auto& q : it->second)
    if (out == 0 || q->out == out) return q.get();
  return nullptr;
}

void set_int8_kernel(Int8Kernel k) { cpu::set_int8_kernel(k); }
const char* int8_kernel_name() { return cpu::int8_kernel_name(); }
bool cpu_has_avx512_vnni() { return cpu::cpu_has_avx512_vnni(); }
bool cpu_has_avx2() { return cpu::cpu_has_avx2(); }
const char* onednn_int8_unavailable() { return cpu::onednn_int8_unavailable(); }

}  // namespace bertune::kernels
