// Shape checks and device dispatch. The checks are cheap next to the work
// they guard, so they stay on in release builds: a wrong shape is an Error
// naming the op, never a silent out-of-bounds read.
#include "kernels/ops.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "kernels/adamw_math.h"
#include "kernels/cpu/cpu.h"
#include "util/enum_names.h"
#include "util/error.h"
#ifdef BERTUNE_CUDA
#include "kernels/gpu/attention_gpu.h"
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

#ifdef BERTUNE_CUDA
#define CUDA_CASE(op, ...) \
  case Device::CUDA:       \
    return gpu::op(__VA_ARGS__);
#else
#define CUDA_CASE(op, ...)
#endif
// CPU and, in a CUDA build, CUDA.
#define DISPATCH(op, ...)          \
  switch (d) {                     \
    case Device::CPU:              \
      return cpu::op(__VA_ARGS__); \
      CUDA_CASE(op, __VA_ARGS__)   \
    default:                       \
      no_backend(d, #op);          \
  }
// Ops with no CUDA body yet: the [CLS]-only last layer's training side
// (attention_first_query_backward, dropout_rows; the model trains the full layer on CUDA).
#define DISPATCH_CPU(op, ...)      \
  switch (d) {                     \
    case Device::CPU:              \
      return cpu::op(__VA_ARGS__); \
    default:                       \
      no_backend(d, #op);          \
  }

const char* device_name(Device d) {
  switch (d) {
    case Device::CPU: return "CPU";
    case Device::CUDA: return "CUDA";
  }
  return "?";
}

void dropout_forward(Device d, float* y, const float* x, size_t n, const Dropout& drop) {
  require(drop.p >= 0.f && drop.p < 1.f, "dropout_forward", "p must lie in [0, 1)");
  DISPATCH(dropout_forward, y, x, n, drop);
}
void dropout_backward(Device d, float* dx, const float* dy, size_t n, const Dropout& drop) {
  require(drop.p >= 0.f && drop.p < 1.f, "dropout_backward", "p must lie in [0, 1)");
  DISPATCH(dropout_backward, dx, dy, n, drop);
}

void dropout_rows(Device d, float* y, const float* x, const int32_t* rows, int n_rows, int width,
                  const Dropout& drop) {
  require(drop.p >= 0.f && drop.p < 1.f, "dropout_rows", "p must lie in [0, 1)");
  require(n_rows >= 0 && width > 0, "dropout_rows", "bad shape " + dims(n_rows, width));
  DISPATCH_CPU(dropout_rows, y, x, rows, n_rows, width, drop);
}

void gemm(Device d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
          int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  require(M >= 0 && N >= 0 && K >= 0, "gemm", "negative size");
  require(lda >= (trans_a ? M : K) && lda >= 1, "gemm", "lda " + std::to_string(lda) + " too small");
  require(ldb >= (trans_b ? K : N) && ldb >= 1, "gemm", "ldb " + std::to_string(ldb) + " too small");
  require(ldc >= N && ldc >= 1, "gemm", "ldc " + std::to_string(ldc) + " too small");
  if (M == 0 || N == 0) return;
  DISPATCH(gemm, trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

namespace {
constexpr EnumNames<Precision, 3> kPrecisionNames{
    {{{Precision::FP32, "fp32"}, {Precision::TF32, "tf32"}, {Precision::BF16, "bf16"}}}};
}  // namespace

Precision parse_precision(const std::string& name) { return kPrecisionNames.parse(name); }
const char* precision_name(Precision p) { return kPrecisionNames.name(p); }
Precision default_precision(Device d) { return d == Device::CUDA ? Precision::BF16 : Precision::FP32; }

void set_precision(Device d, Precision p) {
  switch (d) {
    case Device::CPU:
      require(p == Precision::FP32, "set_precision",
              std::string(precision_name(p)) + " needs a GPU: the CPU computes fp32 only");
      return;
#ifdef BERTUNE_CUDA
    case Device::CUDA:
      return gpu::set_precision(p);
#endif
    default:
      no_backend(d, "set_precision");
  }
}

void linear_forward(Device d, float* y, const float* x, const float* W, const float* b, int T,
                    int in, int out) {
  require(T >= 0 && in > 0 && out > 0, "linear_forward", "bad shape x " + dims(T, in) + ", W " + dims(out, in));
  if (const QuantizedLinear* any = bound_int8_weight(W)) {  // an int8 model (Int8Binding)
    const QuantizedLinear* q = bound_int8_weight(W, out);
    if (!q) q = any;
    require(q->in == in && q->out == out, "linear_forward", "int8 weight bound to W is " + dims(q->out, q->in));
    return linear_int8_forward(d, y, x, *q, b, T);
  }
  DISPATCH(linear_forward, y, x, W, b, T, in, out);
}
void linear_backward(Device d, float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int T, int in, int out, bool accumulate_dx) {
  require(T >= 0 && in > 0 && out > 0, "linear_backward", "bad shape x " + dims(T, in) + ", W " + dims(out, in));
  DISPATCH(linear_backward, dx, dW, db, dy, x, W, T, in, out, accumulate_dx);
}

void gelu_forward(Device d, float* y, const float* x, size_t n) { DISPATCH(gelu_forward, y, x, n); }
void gelu_backward(Device d, float* dx, const float* dy, const float* x, size_t n) {
  DISPATCH(gelu_backward, dx, dy, x, n);
}
void tanh_forward(Device d, float* y, const float* x, size_t n) { DISPATCH(tanh_forward, y, x, n); }
void tanh_backward(Device d, float* dx, const float* dy, const float* y, size_t n) {
  DISPATCH(tanh_backward, dx, dy, y, n);
}

void layernorm_forward(Device d, float* out, float* mean, float* rstd, const float* x,
                       const float* gamma, const float* beta, int T, int H, float eps) {
  require(T >= 0 && H > 0, "layernorm_forward", "bad shape " + dims(T, H));
  DISPATCH(layernorm_forward, out, mean, rstd, x, gamma, beta, T, H, eps);
}
void layernorm_backward(Device d, float* dx, float* dgamma, float* dbeta, const float* dout,
                        const float* x, const float* mean, const float* rstd, const float* gamma,
                        int T, int H) {
  require(T >= 0 && H > 0, "layernorm_backward", "bad shape " + dims(T, H));
  DISPATCH(layernorm_backward, dx, dgamma, dbeta, dout, x, mean, rstd, gamma, T, H);
}
void dropout_residual_layernorm_forward(Device d, float* out, float* s, float* mean, float* rstd,
                                        const float* y, const float* residual, const float* gamma,
                                        const float* beta, int T, int H, float eps,
                                        const Dropout& drop) {
  require(T >= 0 && H > 0, "dropout_residual_layernorm_forward", "bad shape " + dims(T, H));
  DISPATCH(dropout_residual_layernorm_forward, out, s, mean, rstd, y, residual, gamma, beta, T, H,
           eps, drop);
}
void bias_gelu_forward(Device d, float* u, float* g, const float* b, int T, int N) {
  require(T >= 0 && N > 0, "bias_gelu_forward", "bad shape " + dims(T, N));
  DISPATCH(bias_gelu_forward, u, g, b, T, N);
}

void embeddings_forward(Device d, float* out, const int32_t* ids, const int32_t* positions,
                        const int32_t* types, const float* word, const float* position,
                        const float* token_type, int T, int H) {
  DISPATCH(embeddings_forward, out, ids, positions, types, word, position, token_type, T, H);
}
void embeddings_backward(Device d, float* dword, float* dposition, float* dtoken_type,
                         const float* dout, const int32_t* ids, const int32_t* positions,
                         const int32_t* types, int T, int H) {
  DISPATCH(embeddings_backward, dword, dposition, dtoken_type, dout, ids, positions, types, T, H);
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

// On CPU the arrays are host memory and are checked here; on CUDA they are
// device memory, checked by the caller before upload: only scalars here.
static void check_attention(Device d, const AttentionShape& s, const char* op) {
  require(s.num_sequences >= 0, op, "negative num_sequences");
  if (d == Device::CPU) return check_attention_metadata(s, s.offsets, s.lengths, s.prob_offsets, op);
  require(s.num_heads > 0 && s.head_dim > 0, op, "num_heads and head_dim must be positive");
  require(s.num_sequences == 0 || s.max_length > 0, op,
          "max_length must be set (the longest span) for a CUDA call");
}
void attention_forward(Device d, float* ctx, float* probs, const float* qkv,
                       const AttentionShape& shape, const Dropout& drop) {
  check_attention(d, shape, "attention_forward");
  DISPATCH(attention_forward, ctx, probs, qkv, shape, drop);
}
void attention_backward(Device d, float* dqkv, const float* dctx, const float* qkv,
                        const float* probs, const AttentionShape& shape, const Dropout& drop) {
  check_attention(d, shape, "attention_backward");
  DISPATCH(attention_backward, dqkv, dctx, qkv, probs, shape, drop);
}
void attention_first_query_forward(Device d, float* ctx, float* probs, const float* q,
                                   const float* kv, const AttentionShape& shape, const Dropout& drop) {
  check_attention(d, shape, "attention_first_query_forward");
  require(drop.p >= 0.f && drop.p < 1.f, "attention_first_query_forward", "p must lie in [0, 1)");
#ifdef BERTUNE_CUDA
  // The CUDA body is inference's: it keeps no probs and draws no dropout.
  if (d == Device::CUDA && probs == nullptr && !drop.active())
    return gpu::attention_first_query_forward(ctx, q, kv, shape);
#endif
  DISPATCH_CPU(attention_first_query_forward, ctx, probs, q, kv, shape, drop);
}
void attention_first_query_backward(Device d, float* dq, float* dkv, const float* dctx,
                                    const float* q, const float* kv, const float* probs,
                                    const AttentionShape& shape, const Dropout& drop) {
  check_attention(d, shape, "attention_first_query_backward");
  require(probs != nullptr, "attention_first_query_backward", "needs the probs its forward kept");
  require(drop.p >= 0.f && drop.p < 1.f, "attention_first_query_backward", "p must lie in [0, 1)");
  DISPATCH_CPU(attention_first_query_backward, dq, dkv, dctx, q, kv, probs, shape, drop);
}

float cross_entropy_forward(Device d, float* probs, const float* logits, const int32_t* labels,
                            int N, int C, int* counted) {
  require(N >= 0 && C > 0, "cross_entropy_forward", "bad shape " + dims(N, C));
  for (int i = 0; d == Device::CPU && i < N; ++i)  // CUDA: labels are device memory (ops.h)
    require(labels[i] == -100 || (labels[i] >= 0 && labels[i] < C), "cross_entropy_forward",
            "label " + std::to_string(labels[i]) + " of row " + std::to_string(i) +
                " is outside [0, " + std::to_string(C) + ")");
  DISPATCH(cross_entropy_forward, probs, logits, labels, N, C, counted);
}
void cross_entropy_backward(Device d, float* dlogits, const float* probs, const int32_t* labels,
                            int N, int C, int counted) {
  require(N >= 0 && C > 0 && counted >= 0, "cross_entropy_backward", "bad shape " + dims(N, C));
  DISPATCH(cross_entropy_backward, dlogits, probs, labels, N, C, counted);
}

double sum_squares(Device d, const float* x, size_t n) { DISPATCH(sum_squares, x, n); }
void sum_squares_accumulate(Device d, double* total, const float* x, size_t n) {
  switch (d) {
    case Device::CPU:
      *total += cpu::sum_squares(x, n);
      return;
      CUDA_CASE(sum_squares_accumulate, total, x, n)
    default:
      no_backend(d, "sum_squares_accumulate");
  }
}
void scale(Device d, float* x, size_t n, float factor) { DISPATCH(scale, x, n, factor); }
void add_scaled(Device d, float* y, const float* x, size_t n, float alpha) { DISPATCH(add_scaled, y, x, n, alpha); }

namespace {
// On CPU a device-resident clip norm is host memory: fold it into grad_scale
// (the same float32 arithmetic as the CUDA kernel).
AdamWStep resolve_clip_on_host(AdamWStep s) {
  if (s.clip_sum_squares && s.max_grad_norm > 0.f) {
    float norm = static_cast<float>(std::sqrt(*s.clip_sum_squares));
    float coef = s.max_grad_norm / (norm + 1e-6f);
    s.grad_scale *= coef < 1.f ? coef : 1.f;
  }
  s.clip_sum_squares = nullptr;
  return s;
}
}  // namespace

void adamw_update(Device d, float* p, float* g, float* m, float* v, size_t n, const AdamWStep& s,
                  bool zero_grad) {
  if (d == Device::CPU) return cpu::adamw_update(p, g, m, v, n, resolve_clip_on_host(s), zero_grad);
  DISPATCH(adamw_update, p, g, m, v, n, s, zero_grad);
}

namespace {
void fill_zero_floats(float* x, size_t n) { std::fill(x, x + n, 0.f); }

void check_ranges(const AdamWRange* ranges, int count, const char* op) {
  require(count >= 0, op, "negative range count");
  for (int r = 0; r < count; ++r)
    require(ranges[r].begin <= ranges[r].end && (r == 0 || ranges[r - 1].end <= ranges[r].begin), op,
            "range " + std::to_string(r) + " is reversed or overlaps the one before");
}
}  // namespace

void adamw_update_ranges(Device d, float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         int count, const AdamWStep& decay, const AdamWStep& no_decay,
                         bool zero_grad) {
  check_ranges(ranges, count, "adamw_update_ranges");
  if (d == Device::CPU) {
    const AdamWStep with_decay = resolve_clip_on_host(decay), without = resolve_clip_on_host(no_decay);
    for (int r = 0; r < count; ++r)
      cpu::adamw_update(p + ranges[r].begin, g + ranges[r].begin, m + ranges[r].begin,
                        v + ranges[r].begin, ranges[r].end - ranges[r].begin,
                        ranges[r].decay ? with_decay : without, zero_grad);
    return;
  }
#ifdef BERTUNE_CUDA
  if (d == Device::CUDA)
    return gpu::adamw_update_ranges(p, g, m, v, ranges, count, decay, no_decay, zero_grad);
#endif
  no_backend(d, "adamw_update_ranges");
}

void cross_entropy_loss_accumulate(Device d, double* loss_sum, float* probs, const float* logits,
                                   const int32_t* labels, int N, int C, int counted) {
  require(N >= 0 && C > 0 && counted >= 0 && counted <= N, "cross_entropy_loss_accumulate",
          "bad shape " + dims(N, C) + " with " + std::to_string(counted) + " labelled rows");
  switch (d) {
    case Device::CPU: {
      int rows = 0;
      const float loss = cross_entropy_forward(d, probs, logits, labels, N, C, &rows);
      require(rows == counted, "cross_entropy_loss_accumulate",
              std::to_string(rows) + " labelled rows, the caller counted " + std::to_string(counted));
      *loss_sum += loss;
      return;
    }
      CUDA_CASE(cross_entropy_loss_accumulate, loss_sum, probs, logits, labels, N, C, counted)
    default:
      no_backend(d, "cross_entropy_loss_accumulate");
  }
}

void adamw_update_device(Device d, float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         const AdamWRange* device_ranges, int count, const AdamWDeviceStep& s) {
  check_ranges(ranges, count, "adamw_update_device");
  require(s.micro_batches >= 1 && s.step_count && device_ranges, "adamw_update_device",
          "needs micro_batches >= 1, a step count and the device's range list");
  if (d == Device::CPU) {  // every pointer is host memory: the plan is the kernel's, run here
    AdamWStep decay, no_decay;
    const bool update = adamw_device_plan(s, s.loss_sum ? *s.loss_sum : 0.0, s.sum_squares ? *s.sum_squares : 0.0,
                                          *s.step_count, decay, no_decay);
    if (update) {
      adamw_update_ranges(d, p, g, m, v, ranges, count, decay, no_decay, /*zero_grad=*/true);
      ++*s.step_count;
    } else {
      for (int r = 0; r < count; ++r)
        fill_zero_floats(g + ranges[r].begin, ranges[r].end - ranges[r].begin);
    }
    return;
  }
#ifdef BERTUNE_CUDA
  if (d == Device::CUDA && count > 0)
    return gpu::adamw_update_device(p, g, m, v, device_ranges, count, ranges[count - 1].end, s);
  if (d == Device::CUDA) return;
#endif
  no_backend(d, "adamw_update_device");
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
