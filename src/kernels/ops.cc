// Shape checks and device dispatch, generated from the op table (kernels/op_table.inc)
// but for the checks and the few fronts written by hand. The checks are cheap next to
// the work they guard, so they stay on in release builds: a wrong shape is an Error
// naming the op, never a silent out-of-bounds read.
#include "kernels/ops.h"

#include <algorithm>
#include <string>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_bf16_cpu.h"
#include "util/enum_names.h"
#include "util/error.h"
#ifdef BERTUNE_CUDA
#include "kernels/gpu/gemm_gpu.h"
#include "kernels/gpu/ops_gpu.h"
#endif

namespace bertune::kernels {
namespace {

[[noreturn]] void no_backend(Device d, const char* op) {
#ifdef BERTUNE_CUDA
  throw Error(std::string("kernels::") + op + ": no " + device_name(d) + " body in this build");
#else
  throw Error(std::string("kernels::") + op + ": no " + device_name(d) +
              " backend in this build (built without CUDA: BERTUNE_CUDA=OFF or no nvcc)");
#endif
}

void require(bool ok, const char* op, const std::string& what) {
  if (!ok) throw Error(std::string("kernels::") + op + ": " + what);
}

std::string dims(int a, int b) { return "[" + std::to_string(a) + ", " + std::to_string(b) + "]"; }

}  // namespace

const char* device_name(Device d) {
  switch (d) {
    case Device::CPU: return "CPU";
    case Device::CUDA: return "CUDA";
  }
  return "?";
}

// ---- what the fronts check (rows CHECKED of the op table) ------------------------------
namespace {

void check_dropout_p(const Dropout& drop, const char* op) {
  require(drop.p >= 0.f && drop.p < 1.f, op, "p must lie in [0, 1)");
}
void check_dropout_forward(Device, float*, const float*, size_t, const Dropout& drop) {
  check_dropout_p(drop, "dropout_forward");
}
void check_dropout_backward(Device, float*, const float*, size_t, const Dropout& drop) {
  check_dropout_p(drop, "dropout_backward");
}
void check_dropout_rows(Device, float*, const float*, const int32_t*, int n_rows, int width, const Dropout& drop) {
  check_dropout_p(drop, "dropout_rows");
  require(n_rows >= 0 && width > 0, "dropout_rows", "bad shape " + dims(n_rows, width));
}

void check_linear(int T, int in, int out, const char* op) {
  require(T >= 0 && in > 0 && out > 0, op, "bad shape x " + dims(T, in) + ", W " + dims(out, in));
}
void check_linear_backward(Device, float*, float*, float*, const float*, const float*, const float*, int T,
                           int in, int out, bool) {
  check_linear(T, in, out, "linear_backward");
}
void check_linear_int8_forward(Device d, float*, const float*, const QuantizedLinear& w, const float*, int T) {
  require(T >= 0 && !w.packed.empty() && !w.compensation.empty(), "linear_int8_forward",
          "T " + std::to_string(T) + " or an unpacked weight");
  require(d == Device::CPU, "linear_int8_forward",
          std::string("int8 inference is CPU-only (asked for ") + device_name(d) + ")");
}

void check_rows(int T, int H, const char* op) { require(T >= 0 && H > 0, op, "bad shape " + dims(T, H)); }
void check_layernorm_forward(Device, float*, float*, float*, const float*, const float*, const float*, int T,
                             int H, float) {
  check_rows(T, H, "layernorm_forward");
}
void check_layernorm_backward(Device, float*, float*, float*, const float*, const float*, const float*,
                              const float*, const float*, int T, int H) {
  check_rows(T, H, "layernorm_backward");
}
void check_dropout_residual_layernorm_forward(Device, float*, float*, float*, float*, const float*, const float*,
                                              const float*, const float*, int T, int H, float, const Dropout&) {
  check_rows(T, H, "dropout_residual_layernorm_forward");
}
void check_bias_gelu_forward(Device, float*, float*, const float*, int T, int N) {
  check_rows(T, N, "bias_gelu_forward");
}

// On CPU the arrays are host memory and are checked here; on CUDA they are
// device memory, checked by the caller before upload: only scalars here.
void check_attention(Device d, const AttentionShape& s, const char* op) {
  require(s.num_sequences >= 0, op, "negative num_sequences");
  if (d == Device::CPU) return check_attention_metadata(s, s.offsets, s.lengths, s.prob_offsets, op);
  require(s.num_heads > 0 && s.head_dim > 0, op, "num_heads and head_dim must be positive");
  require(s.num_sequences == 0 || s.max_length > 0, op,
          "max_length must be set (the longest span) for a CUDA call");
}
void check_attention_forward(Device d, float*, float*, const float*, const AttentionShape& shape, const Dropout&) {
  check_attention(d, shape, "attention_forward");
}
void check_attention_backward(Device d, float*, const float*, const float*, const float*,
                              const AttentionShape& shape, const Dropout&) {
  check_attention(d, shape, "attention_backward");
}
void check_attention_first_query_forward(Device d, float*, float*, const float*, const float*,
                                         const AttentionShape& shape, const Dropout& drop) {
  check_attention(d, shape, "attention_first_query_forward");
  check_dropout_p(drop, "attention_first_query_forward");
}
void check_attention_first_query_backward(Device d, float*, float*, const float*, const float*, const float*,
                                          const float* probs, const AttentionShape& shape, const Dropout& drop) {
  check_attention(d, shape, "attention_first_query_backward");
  require(probs != nullptr, "attention_first_query_backward", "needs the probs its forward kept");
  check_dropout_p(drop, "attention_first_query_backward");
}

// CUDA: labels are device memory (ops.h), checked by the caller.
void check_labels(Device d, const int32_t* labels, int N, int C, const char* op) {
  require(N >= 0 && C > 0, op, "bad shape " + dims(N, C));
  for (int i = 0; d == Device::CPU && i < N; ++i)
    require(labels[i] == -100 || (labels[i] >= 0 && labels[i] < C), op,
            "label " + std::to_string(labels[i]) + " of row " + std::to_string(i) + " is outside [0, " +
                std::to_string(C) + ")");
}
void check_cross_entropy_forward(Device d, float*, const float*, const int32_t* labels, int N, int C, int*) {
  check_labels(d, labels, N, C, "cross_entropy_forward");
}
void check_cross_entropy_backward(Device, float*, const float*, const int32_t*, int N, int C, int counted) {
  require(N >= 0 && C > 0 && counted >= 0, "cross_entropy_backward", "bad shape " + dims(N, C));
}
void check_cross_entropy_loss_accumulate(Device d, double*, float*, const float*, const int32_t* labels, int N,
                                         int C, int counted) {
  require(N >= 0 && C > 0 && counted >= 0 && counted <= N, "cross_entropy_loss_accumulate",
          "bad shape " + dims(N, C) + " with " + std::to_string(counted) + " labelled rows");
  check_labels(d, labels, N, C, "cross_entropy_loss_accumulate");
}
void check_target_loss(Device, TargetLoss kind, double* loss_sum, float*, const float*, const float*, int n) {
  require(kind == TargetLoss::MSE || kind == TargetLoss::BCEWithLogits, "target_loss", "unknown loss kind");
  require(n > 0, "target_loss", "bad size " + std::to_string(n));
  require(loss_sum != nullptr, "target_loss", "needs a loss sum");
}

void check_ranges(const AdamWRange* ranges, int count, const char* op) {
  require(count >= 0, op, "negative range count");
  for (int r = 0; r < count; ++r)
    require(ranges[r].begin <= ranges[r].end && (r == 0 || ranges[r - 1].end <= ranges[r].begin), op,
            "range " + std::to_string(r) + " is reversed or overlaps the one before");
}
void check_adamw_update_ranges(Device, float*, float*, float*, float*, const AdamWRange* ranges, int count,
                               const AdamWStep&, const AdamWStep&, bool) {
  check_ranges(ranges, count, "adamw_update_ranges");
}
void check_adamw_update_device(Device, float*, float*, float*, float*, const AdamWRange* ranges,
                               const AdamWRange* device_ranges, int count, const AdamWDeviceStep& s) {
  check_ranges(ranges, count, "adamw_update_device");
  require(s.micro_batches >= 1 && s.step_count && device_ranges, "adamw_update_device",
          "needs micro_batches >= 1, a step count and the device's range list");
}

}  // namespace

// ---- dispatch and fronts, from the op table --------------------------------------------
#ifdef BERTUNE_CUDA
#define BERTUNE_CUDA_CASE(name, args) \
  case Device::CUDA:                  \
    return gpu::name args;
#else
#define BERTUNE_CUDA_CASE(name, args)
#endif
#define BERTUNE_DEFAULT(value)

// dispatch_<name>(d, args...): the body of device d, or an Error naming the op.
namespace {
#define BERTUNE_OP(name, backends, front, ret, params, args)   \
  ret dispatch_##name(Device d, BERTUNE_UNPAREN params) {        \
    switch (d) {                                                 \
      case Device::CPU:                                          \
        return cpu::name args;                                   \
        BERTUNE_IF_CUDA_##backends(BERTUNE_CUDA_CASE(name, args)) \
      default:                                                   \
        no_backend(d, #name);                                    \
    }                                                            \
  }
#include "kernels/op_table.inc"
#undef BERTUNE_OP
}  // namespace

#define BERTUNE_FRONT_PLAIN(name, ret, params, args) \
  ret name(Device d, BERTUNE_UNPAREN params) { return dispatch_##name(d, BERTUNE_UNPAREN args); }
#define BERTUNE_FRONT_CHECKED(name, ret, params, args) \
  ret name(Device d, BERTUNE_UNPAREN params) {         \
    check_##name(d, BERTUNE_UNPAREN args);             \
    return dispatch_##name(d, BERTUNE_UNPAREN args);   \
  }
#define BERTUNE_FRONT_OWN(name, ret, params, args)
#define BERTUNE_OP(name, backends, front, ret, params, args) BERTUNE_FRONT_##front(name, ret, params, args)
#include "kernels/op_table.inc"
#undef BERTUNE_OP
#undef BERTUNE_DEFAULT

const char* op_name(Op op) {
  switch (op) {
#define BERTUNE_OP(name, ...) \
  case Op::name:              \
    return #name;
#include "kernels/op_table.inc"
#undef BERTUNE_OP
  }
  return "?";
}

bool supports(Device d, Op op) {
  if (d == Device::CPU) return true;
#ifdef BERTUNE_CUDA
  switch (op) {
#define BERTUNE_OP(name, backends, ...) BERTUNE_IF_CUDA_##backends(case Op::name:)
#include "kernels/op_table.inc"
#undef BERTUNE_OP
    return d == Device::CUDA;
    default:
      return false;
  }
#else
  (void)op;
  return false;
#endif
}

// ---- the fronts written by hand (rows OWN) ---------------------------------------------
void gemm(Device d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
          int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  require(M >= 0 && N >= 0 && K >= 0, "gemm", "negative size");
  require(lda >= (trans_a ? M : K) && lda >= 1, "gemm", "lda " + std::to_string(lda) + " too small");
  require(ldb >= (trans_b ? K : N) && ldb >= 1, "gemm", "ldb " + std::to_string(ldb) + " too small");
  require(ldc >= N && ldc >= 1, "gemm", "ldc " + std::to_string(ldc) + " too small");
  if (M == 0 || N == 0) return;
  dispatch_gemm(d, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void linear_forward(Device d, float* y, const float* x, const float* W, const float* b, int T,
                    int in, int out) {
  check_linear(T, in, out, "linear_forward");
  if (const QuantizedLinear* any = bound_int8_weight(W)) {  // an int8 model (Int8Binding)
    const QuantizedLinear* q = bound_int8_weight(W, out);
    if (!q) q = any;
    require(q->in == in && q->out == out, "linear_forward", "int8 weight bound to W is " + dims(q->out, q->in));
    return linear_int8_forward(d, y, x, *q, b, T);
  }
  dispatch_linear_forward(d, y, x, W, b, T, in, out);
}

// ---- what is not an op of the table ------------------------------------------------------
namespace {
constexpr EnumNames<Precision, 3> kPrecisionNames{
    {{{Precision::FP32, "fp32"}, {Precision::TF32, "tf32"}, {Precision::BF16, "bf16"}}}};
}  // namespace

Precision parse_precision(const std::string& name) { return kPrecisionNames.parse(name); }
const char* precision_name(Precision p) { return kPrecisionNames.name(p); }
Precision default_precision(Device d) { return d == Device::CUDA ? Precision::BF16 : Precision::FP32; }

std::string precision_unavailable(Device d, Precision p) {
  if (d != Device::CPU) return "";
  if (p == Precision::TF32) return "tf32 needs a GPU: the CPU computes fp32 or bf16";
  return p == Precision::BF16 ? cpu::bf16_unavailable() : "";
}

void set_precision(Device d, Precision p) {
  switch (d) {
    case Device::CPU: {
      const std::string why = precision_unavailable(d, p);
      require(why.empty(), "set_precision", why);
      return cpu::set_gemm_precision(p);
    }
#ifdef BERTUNE_CUDA
    case Device::CUDA:
      return gpu::set_precision(p);
#endif
    default:
      no_backend(d, "set_precision");
  }
}

void check_attention_metadata(const AttentionShape& s, const int32_t* offsets,
                              const int32_t* lengths, const int64_t* prob_offsets, const char* op) {
  require(s.num_heads > 0 && s.head_dim > 0, op, "num_heads and head_dim must be positive");
  int longest = 0;
  for (int b = 0; b < s.num_sequences; ++b) {
    int span = offsets[b + 1] - offsets[b];
    require(span > 0 && lengths[b] > 0 && lengths[b] <= span, op,
            "sequence " + std::to_string(b) + " has length " + std::to_string(lengths[b]) +
                " in a span of " + std::to_string(span));
    require(prob_offsets[b + 1] - prob_offsets[b] == int64_t(s.num_heads) * span * span, op,
            "prob_offsets do not match heads x span^2");
    longest = std::max(longest, span);
  }
  require(s.max_length == 0 || s.max_length == longest, op,
          "max_length " + std::to_string(s.max_length) + " is not the longest span (" +
              std::to_string(longest) + ")");
}

Dropout Dropout::make(uint64_t seed, uint64_t step, uint64_t site, float p) {
  auto mix = [](uint64_t z) {  // splitmix64 finaliser
    z += 0x9E3779B97F4A7C15ull;
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  };
  return Dropout{mix(mix(mix(seed) + step) + site), p};
}

}  // namespace bertune::kernels
