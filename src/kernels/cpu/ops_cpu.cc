// CPU bodies of the elementwise, row and optimizer ops. Rows are split over
// the OpenMP pool; inner loops are `omp simd` so they vectorise (the selects inside
// exp/erf need -fno-trapping-math, cmake/layers.cmake). The hot loops are
// BERTUNE_SIMD_KERNELs (simd_cpu.h): compiled for AVX2 and for AVX-512, picked at run time.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "kernels/adamw_math.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/math_cpu.h"
#include "kernels/cpu/simd_cpu.h"
#include "util/error.h"

namespace bertune::kernels::cpu {
namespace {

// Elementwise loops below this size are not worth waking the pool for.
constexpr size_t kParallelGrain = 1 << 14;

inline float gelu(float x) { return 0.5f * x * (1.f + erf_fast(x * 0.70710678118654752f)); }

// y[i] = x[i] * mask factor of element i, for i in [b, e)
BERTUNE_SIMD_BODY void dropout_span_body(float* y, const float* x, size_t b, size_t e, const DropMask& mask) {
#pragma omp simd
  for (size_t i = b; i < e; ++i) y[i] = x[i] * mask.factor(i);
}
BERTUNE_SIMD_KERNEL(dropout_span, (float* y, const float* x, size_t b, size_t e, const DropMask& mask),
                    (y, x, b, e, mask))

BERTUNE_SIMD_BODY void gelu_span_body(float* y, const float* x, size_t b, size_t e) {
#pragma omp simd
  for (size_t i = b; i < e; ++i) y[i] = gelu(x[i]);
}
BERTUNE_SIMD_KERNEL(gelu_span, (float* y, const float* x, size_t b, size_t e), (y, x, b, e))

BERTUNE_SIMD_BODY void gelu_grad_span_body(float* dx, const float* dy, const float* x, size_t b, size_t e) {
#pragma omp simd
  for (size_t i = b; i < e; ++i) dx[i] = dy[i] * gelu_grad_fast(x[i]);
}
BERTUNE_SIMD_KERNEL(gelu_grad_span, (float* dx, const float* dy, const float* x, size_t b, size_t e),
                    (dx, dy, x, b, e))

}  // namespace

void dropout_forward(float* y, const float* x, size_t n, const Dropout& drop) {
  if (!drop.active()) {
    if (y != x) std::memcpy(y, x, n * sizeof(float));
    return;
  }
  DropMask mask(drop);
  parallel_spans(n, kParallelGrain, [&](size_t b, size_t e) { dropout_span(y, x, b, e, mask); });
}

void dropout_backward(float* dx, const float* dy, size_t n, const Dropout& drop) {
  dropout_forward(dx, dy, n, drop);  // the same mask, the same scale
}

void dropout_rows(float* y, const float* x, const int32_t* rows, int n_rows, int width,
                  const Dropout& drop) {
  if (!drop.active()) {
    if (y != x) std::memcpy(y, x, size_t(n_rows) * width * sizeof(float));
    return;
  }
  DropMask mask(drop);
#pragma omp parallel for schedule(static) if (size_t(n_rows) * width > kParallelGrain)
  for (int r = 0; r < n_rows; ++r) {
    const size_t at = size_t(r) * width;
    const uint64_t base = uint64_t(rows[r]) * width;  // where the row's mask lies in place
#pragma omp simd
    for (int j = 0; j < width; ++j) y[at + j] = x[at + j] * mask.factor(base + j);
  }
}

void linear_forward(float* y, const float* x, const float* W, const float* b, int T, int in,
                    int out) {
  // Start C from the bias and let the GEMM accumulate onto it (beta = 1):
  // no separate bias pass over the output.
  if (b) {
#pragma omp parallel for schedule(static) if (size_t(T) * out > kParallelGrain)
    for (int t = 0; t < T; ++t) std::memcpy(y + size_t(t) * out, b, out * sizeof(float));
  }
  gemm(false, true, T, out, in, 1.f, x, in, W, in, b ? 1.f : 0.f, y, out);
}

void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int T, int in, int out, bool accumulate_dx) {
  if (T == 0) return;
  if (dx) gemm(false, false, T, in, out, 1.f, dy, out, W, in, accumulate_dx ? 1.f : 0.f, dx, in);
  if (dW) gemm(true, false, out, in, T, 1.f, dy, out, x, in, 1.f, dW, in);
  if (db) {
    // Column sums: each thread sums its own block of columns over all rows.
#pragma omp parallel if (size_t(T) * out > kParallelGrain)
    {
      int nt = omp_get_num_threads(), id = omp_get_thread_num();
      int chunk = (out + nt - 1) / nt;
      chunk = (chunk + 15) / 16 * 16;
      int j0 = std::min(out, id * chunk), j1 = std::min(out, j0 + chunk);
      for (int t = 0; t < T; ++t) {
        const float* row = dy + size_t(t) * out;
#pragma omp simd
        for (int j = j0; j < j1; ++j) db[j] += row[j];
      }
    }
  }
}

void gelu_forward(float* y, const float* x, size_t n) {
  parallel_spans(n, kParallelGrain, [&](size_t b, size_t e) { gelu_span(y, x, b, e); });
}

void gelu_backward(float* dx, const float* dy, const float* x, size_t n) {
  parallel_spans(n, kParallelGrain, [&](size_t b, size_t e) { gelu_grad_span(dx, dy, x, b, e); });
}

void tanh_forward(float* y, const float* x, size_t n) {
  for (size_t i = 0; i < n; ++i) y[i] = std::tanh(x[i]);
}

void tanh_backward(float* dx, const float* dy, const float* y, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) dx[i] = dy[i] * (1.f - y[i] * y[i]);
}

void relu_forward(float* y, const float* x, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) y[i] = x[i] > 0.f ? x[i] : 0.f;
}

void relu_backward(float* dx, const float* dy, const float* y, size_t n) {
#pragma omp simd
  for (size_t i = 0; i < n; ++i) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}

namespace {

// One row: mean and biased variance by two passes (as torch), then the affine map.
BERTUNE_SIMD_BODY void layernorm_row_body(float* out, float* mean_out, float* rstd_out, const float* x,
                          const float* gamma, const float* beta, int H, float eps) {
  float sum = 0.f;
#pragma omp simd reduction(+ : sum)
  for (int i = 0; i < H; ++i) sum += x[i];
  float mean = sum / H;
  float var = 0.f;
#pragma omp simd reduction(+ : var)
  for (int i = 0; i < H; ++i) {
    float d = x[i] - mean;
    var += d * d;
  }
  var /= H;
  float rstd = 1.f / std::sqrt(var + eps);
#pragma omp simd
  for (int i = 0; i < H; ++i) out[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
  *mean_out = mean;
  *rstd_out = rstd;
}
BERTUNE_SIMD_KERNEL(layernorm_row,
                    (float* out, float* mean_out, float* rstd_out, const float* x, const float* gamma,
                     const float* beta, int H, float eps),
                    (out, mean_out, rstd_out, x, gamma, beta, H, eps))

// One row of dropout_residual_layernorm_forward: s = dropout(y) + residual, then its layernorm.
BERTUNE_SIMD_BODY void dropout_residual_layernorm_row_body(float* out, float* sr, float* mean, float* rstd,
                                                           const float* y, const float* residual,
                                                           const float* gamma, const float* beta, int H,
                                                           float eps, const DropMask* mask, uint64_t base) {
  if (mask) {
#pragma omp simd
    for (int i = 0; i < H; ++i) sr[i] = y[i] * mask->factor(base + i) + residual[i];
  } else {
#pragma omp simd
    for (int i = 0; i < H; ++i) sr[i] = y[i] + residual[i];
  }
  layernorm_row_body(out, mean, rstd, sr, gamma, beta, H, eps);
}
BERTUNE_SIMD_KERNEL(dropout_residual_layernorm_row,
                    (float* out, float* sr, float* mean, float* rstd, const float* y, const float* residual,
                     const float* gamma, const float* beta, int H, float eps, const DropMask* mask,
                     uint64_t base),
                    (out, sr, mean, rstd, y, residual, gamma, beta, H, eps, mask, base))

// One row of bias_gelu_forward: u += b, g = gelu(u).
BERTUNE_SIMD_BODY void bias_gelu_row_body(float* ur, float* gr, const float* b, int N) {
#pragma omp simd
  for (int j = 0; j < N; ++j) {
    float v = ur[j] + b[j];
    ur[j] = v;
    gr[j] = gelu(v);
  }
}
BERTUNE_SIMD_KERNEL(bias_gelu_row, (float* ur, float* gr, const float* b, int N), (ur, gr, b, N))

}  // namespace

void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                       const float* beta, int T, int H, float eps) {
#pragma omp parallel for schedule(static) if (size_t(T) * H > kParallelGrain)
  for (int t = 0; t < T; ++t)
    layernorm_row(out + size_t(t) * H, mean + t, rstd + t, x + size_t(t) * H, gamma, beta, H, eps);
}

void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                        const float* mean, const float* rstd, const float* gamma, int T, int H) {
  int threads = size_t(T) * H > kParallelGrain ? omp_get_max_threads() : 1;
  // Per-thread partial dgamma/dbeta, summed at the end: no atomics, no races.
  std::vector<float> partial(size_t(threads) * 2 * H, 0.f);
#pragma omp parallel num_threads(threads)
  {
    float* pg = partial.data() + size_t(omp_get_thread_num()) * 2 * H;
    float* pb = pg + H;
#pragma omp for schedule(static)
    for (int t = 0; t < T; ++t) {
      const float* xr = x + size_t(t) * H;
      const float* dr = dout + size_t(t) * H;
      float* dxr = dx + size_t(t) * H;
      float mu = mean[t], rs = rstd[t];
      float sum_dxhat = 0.f, sum_dxhat_xhat = 0.f;
#pragma omp simd reduction(+ : sum_dxhat, sum_dxhat_xhat)
      for (int i = 0; i < H; ++i) {
        float xhat = (xr[i] - mu) * rs;
        float dxhat = dr[i] * gamma[i];
        sum_dxhat += dxhat;
        sum_dxhat_xhat += dxhat * xhat;
        pg[i] += dr[i] * xhat;
        pb[i] += dr[i];
      }
      float a = sum_dxhat / H, c = sum_dxhat_xhat / H;
#pragma omp simd
      for (int i = 0; i < H; ++i) {
        float xhat = (xr[i] - mu) * rs;
        dxr[i] = rs * (dr[i] * gamma[i] - a - xhat * c);
      }
    }
  }
  for (int k = 0; k < threads; ++k) {
    const float* pg = partial.data() + size_t(k) * 2 * H;
    for (int i = 0; i < H; ++i) {
      dgamma[i] += pg[i];
      dbeta[i] += pg[H + i];
    }
  }
}

void dropout_residual_layernorm_forward(float* out, float* s, float* mean, float* rstd,
                                        const float* y, const float* residual, const float* gamma,
                                        const float* beta, int T, int H, float eps,
                                        const Dropout& drop) {
  const DropMask mask(drop);
  const DropMask* dropping = drop.active() ? &mask : nullptr;
#pragma omp parallel for schedule(static) if (size_t(T) * H > kParallelGrain)
  for (int t = 0; t < T; ++t) {
    const size_t base = size_t(t) * H;
    dropout_residual_layernorm_row(out + base, s + base, mean + t, rstd + t, y + base, residual + base, gamma,
                                   beta, H, eps, dropping, base);
  }
}

void bias_gelu_forward(float* u, float* g, const float* b, int T, int N) {
#pragma omp parallel for schedule(static) if (size_t(T) * N > kParallelGrain)
  for (int t = 0; t < T; ++t) bias_gelu_row(u + size_t(t) * N, g + size_t(t) * N, b, N);
}

void embeddings_forward(float* out, const int32_t* ids, const int32_t* positions,
                        const int32_t* types, const float* word, const float* position,
                        const float* token_type, int T, int H) {
#pragma omp parallel for schedule(static) if (size_t(T) * H > kParallelGrain)
  for (int t = 0; t < T; ++t) {
    const float* w = word + size_t(ids[t]) * H;
    const float* p = position + size_t(positions[t]) * H;
    float* o = out + size_t(t) * H;
    if (!token_type) {
#pragma omp simd
      for (int i = 0; i < H; ++i) o[i] = w[i] + p[i];
      continue;
    }
    const float* tt = token_type + size_t(types ? types[t] : 0) * H;
#pragma omp simd
    for (int i = 0; i < H; ++i) o[i] = w[i] + p[i] + tt[i];
  }
}

void embeddings_backward(float* dword, float* dposition, float* dtoken_type, const float* dout,
                         const int32_t* ids, const int32_t* positions, const int32_t* types, int T,
                         int H) {
  // Several tokens share a row, so threads split the hidden dimension, not
  // the tokens: each thread owns a column block of every table.
#pragma omp parallel if (size_t(T) * H > kParallelGrain)
  {
    int nt = omp_get_num_threads(), id = omp_get_thread_num();
    int chunk = ((H + nt - 1) / nt + 15) / 16 * 16;
    int i0 = std::min(H, id * chunk), i1 = std::min(H, i0 + chunk);
    for (int t = 0; t < T; ++t) {
      const float* d = dout + size_t(t) * H;
      float* w = dword + size_t(ids[t]) * H;
      float* p = dposition + size_t(positions[t]) * H;
#pragma omp simd
      for (int i = i0; i < i1; ++i) {
        w[i] += d[i];
        p[i] += d[i];
      }
      if (!dtoken_type) continue;
      float* tt = dtoken_type + size_t(types ? types[t] : 0) * H;
#pragma omp simd
      for (int i = i0; i < i1; ++i) tt[i] += d[i];
    }
  }
}

float cross_entropy_forward(float* probs, const float* logits, const int32_t* labels, int N, int C,
                            int* counted) {
  double total = 0.0;
  int n = 0;
  for (int r = 0; r < N; ++r) {
    const float* z = logits + size_t(r) * C;
    float* p = probs + size_t(r) * C;
    float mx = z[0];
    for (int c = 1; c < C; ++c) mx = std::max(mx, z[c]);
    // float64 sum: a vocabulary row has tens of thousands of terms, most of them below half
    // an ulp of a float running sum, which would drop them (1e-4 of a probability at 32K).
    double sum = 0.0;
    for (int c = 0; c < C; ++c) {
      p[c] = std::exp(z[c] - mx);
      sum += p[c];
    }
    float inv = float(1.0 / sum);
    for (int c = 0; c < C; ++c) p[c] *= inv;
    if (labels[r] != -100) {
      // log_softmax as torch: (z - max) - log(sum exp(z - max))
      total -= double(z[labels[r]] - mx) - std::log(sum);
      ++n;
    }
  }
  *counted = n;
  return n ? float(total / n) : 0.f;
}

void cross_entropy_backward(float* dlogits, const float* probs, const int32_t* labels, int N, int C,
                            int counted) {
  float inv = counted ? 1.f / counted : 0.f;
  for (int r = 0; r < N; ++r) {
    float* d = dlogits + size_t(r) * C;
    const float* p = probs + size_t(r) * C;
    if (labels[r] == -100) {
      std::fill(d, d + C, 0.f);
      continue;
    }
    for (int c = 0; c < C; ++c) d[c] = p[c] * inv;
    d[labels[r]] -= inv;
  }
}

double sum_squares(const float* x, size_t n) {
  double total = 0.0;
#pragma omp parallel for reduction(+ : total) schedule(static) if (n > kParallelGrain)
  for (size_t b = 0; b < n; b += 4096) {
    size_t e = std::min(n, b + 4096);
    float acc = 0.f;  // a float partial per 4096 elements, summed in double
#pragma omp simd reduction(+ : acc)
    for (size_t i = b; i < e; ++i) acc += x[i] * x[i];
    total += acc;
  }
  return total;
}

void sum_squares_accumulate(double* total, const float* x, size_t n) { *total += sum_squares(x, n); }

void scale(float* x, size_t n, float factor) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) x[i] *= factor;
}

void add_scaled(float* y, const float* x, size_t n, float alpha) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) y[i] += alpha * x[i];
}

namespace {

template <bool kZeroGrad>
void adamw_loop(float* __restrict p, float* __restrict g, float* __restrict m,
                float* __restrict v, size_t n, const AdamWStep c) {
#pragma omp parallel for simd schedule(static) if (n > kParallelGrain)
  for (size_t i = 0; i < n; ++i) {
    float gi = g[i] * c.grad_scale;
    float pi = p[i] * c.pre_decay;
    float mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
    float vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    pi = pi - c.step_size * (mi / (std::sqrt(vi) / c.bias2_sqrt + c.eps));
    p[i] = pi + c.post_decay * pi;
    if constexpr (kZeroGrad) g[i] = 0.f;
  }
}

void adamw_span(float* p, float* g, float* m, float* v, size_t n, const AdamWStep& s, bool zero_grad) {
  if (zero_grad)
    adamw_loop<true>(p, g, m, v, n, s);
  else
    adamw_loop<false>(p, g, m, v, n, s);
}

// A clip norm in the op's memory is host memory here: fold it into grad_scale (the same
// float32 arithmetic as the CUDA kernel).
AdamWStep resolve_clip(AdamWStep s) {
  if (s.clip_sum_squares && s.max_grad_norm > 0.f) {
    float norm = static_cast<float>(std::sqrt(*s.clip_sum_squares));
    float coef = s.max_grad_norm / (norm + 1e-6f);
    s.grad_scale *= coef < 1.f ? coef : 1.f;
  }
  s.clip_sum_squares = nullptr;
  return s;
}

}  // namespace

void adamw_update(float* p, float* g, float* m, float* v, size_t n, const AdamWStep& s,
                  bool zero_grad) {
  adamw_span(p, g, m, v, n, resolve_clip(s), zero_grad);
}

void adamw_update_ranges(float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         int count, const AdamWStep& decay, const AdamWStep& no_decay,
                         bool zero_grad) {
  const AdamWStep with_decay = resolve_clip(decay), without = resolve_clip(no_decay);
  for (int r = 0; r < count; ++r) {
    const size_t b = ranges[r].begin;
    adamw_span(p + b, g + b, m + b, v + b, ranges[r].end - b, ranges[r].decay ? with_decay : without,
               zero_grad);
  }
}

// Every pointer is host memory: the plan is the CUDA kernel's (adamw_math.h), run here.
void adamw_update_device(float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         const AdamWRange* /*device_ranges: the same list*/, int count,
                         const AdamWDeviceStep& s) {
  AdamWStep decay, no_decay;
  const bool update = adamw_device_plan(s, s.loss_sum ? *s.loss_sum : 0.0, s.sum_squares ? *s.sum_squares : 0.0,
                                        *s.step_count, decay, no_decay);
  if (update) {
    adamw_update_ranges(p, g, m, v, ranges, count, decay, no_decay, /*zero_grad=*/true);
    ++*s.step_count;
    return;
  }
  for (int r = 0; r < count; ++r) std::fill(g + ranges[r].begin, g + ranges[r].end, 0.f);
}

void target_loss(TargetLoss kind, double* loss_sum, float* dlogits, const float* logits, const float* targets,
                 int n) {
  double total = 0.0;
  const float inv = 1.f / float(n);
  for (int i = 0; i < n; ++i) {
    const float x = logits[i], y = targets[i];
    if (kind == TargetLoss::MSE) {
      total += double(x - y) * double(x - y);
      if (dlogits) dlogits[i] = 2.f * (x - y) * inv;
    } else {
      total += double(std::max(x, 0.f)) - double(x) * y + std::log1p(std::exp(-double(std::fabs(x))));
      if (dlogits) dlogits[i] = (1.f / (1.f + std::exp(-x)) - y) * inv;
    }
  }
  *loss_sum += double(float(total / n));
}

void add_loss_share(double* loss_sum, const double* loss, double count, double denominator) {
  *loss_sum += static_cast<float>(*loss * count / denominator);
}

void cross_entropy_loss_accumulate(double* loss_sum, float* probs, const float* logits,
                                   const int32_t* labels, int N, int C, int counted) {
  int rows = 0;
  const float loss = cross_entropy_forward(probs, logits, labels, N, C, &rows);
  if (rows != counted)
    throw Error("kernels::cross_entropy_loss_accumulate: " + std::to_string(rows) +
                " labelled rows, the caller counted " + std::to_string(counted));
  *loss_sum += loss;
}

}  // namespace bertune::kernels::cpu
