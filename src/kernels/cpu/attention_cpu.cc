// Scaled dot-product attention, one (sequence, head) pair per task: the
// score matrix of a sequence is n x n with n its own span, so a packed batch
// does no work on padding, and a padded batch pays for every pad row exactly
// as HF does. Head dim is small (64 in BERT-base): the inner loops are
// contiguous dot products / axpys over it.
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/math_cpu.h"

namespace bertune::kernels::cpu {
namespace {

inline void axpy(float* y, float a, const float* x, int n) {
#pragma omp simd
  for (int i = 0; i < n; ++i) y[i] += a * x[i];
}

// dst[k * n + j] = src[j * ld + k]
inline void transpose_head(float* dst, const float* src, int n, int d, int ld) {
  for (int j = 0; j < n; ++j)
    for (int k = 0; k < d; ++k) dst[size_t(k) * n + j] = src[size_t(j) * ld + k];
}

// row[j] = sum_k q[k] * xt[k * n + j]
inline void scores_row(float* row, const float* q, const float* xt, int n, int d) {
  std::fill(row, row + n, 0.f);
  for (int k = 0; k < d; ++k) axpy(row, q[k], xt + size_t(k) * n, n);
}

int max_span(const AttentionShape& s) {
  int m = 0;
  for (int b = 0; b < s.num_sequences; ++b) m = std::max(m, s.offsets[b + 1] - s.offsets[b]);
  return m;
}

}  // namespace

void attention_forward(float* ctx, float* probs, const float* qkv, const AttentionShape& shape,
                       const Dropout& drop) {
  const int nh = shape.num_heads, d = shape.head_dim, H = nh * d, H3 = 3 * H;
  const int B = shape.num_sequences;
  // HF divides the scores by math.sqrt(head_dim) and adds finfo(float32).min
  // to masked keys.
  const float sqrt_d = static_cast<float>(std::sqrt(static_cast<double>(d)));
  const float masked = -FLT_MAX;
  DropMask mask(drop);
  const bool dropping = drop.active();
  const int span_max = max_span(shape);
#pragma omp parallel
  {
    // K of one head transposed to [d, n]: a score row is then d axpys over
    // contiguous keys instead of n horizontal dot-product reductions.
    std::vector<float> dropped(span_max), kt(size_t(d) * span_max);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < nh; ++h) {
        const int o = shape.offsets[b], n = shape.offsets[b + 1] - o, valid = shape.lengths[b];
        const int64_t pbase = shape.prob_offsets[b] + int64_t(h) * n * n;
        float* P = probs + pbase;
        transpose_head(kt.data(), qkv + size_t(o) * H3 + H + h * d, n, d, H3);
        for (int i = 0; i < n; ++i) {
          const float* q = qkv + size_t(o + i) * H3 + h * d;
          float* row = P + size_t(i) * n;
          scores_row(row, q, kt.data(), n, d);
          float mx = -FLT_MAX;
          for (int j = 0; j < n; ++j) {
            float s = row[j] / sqrt_d;
            if (j >= valid) s += masked;
            row[j] = s;
            mx = std::max(mx, s);
          }
          float sum = 0.f;
#pragma omp simd reduction(+ : sum)
          for (int j = 0; j < n; ++j) {
            float e = exp_fast(row[j] - mx);
            row[j] = e;
            sum += e;
          }
          float inv = 1.f / sum;
#pragma omp simd
          for (int j = 0; j < n; ++j) row[j] *= inv;
          const float* weights = row;
          if (dropping) {
            const uint64_t base = uint64_t(pbase) + uint64_t(i) * n;
#pragma omp simd
            for (int j = 0; j < n; ++j) dropped[j] = row[j] * mask.factor(base + j);
            weights = dropped.data();
          }
          float* c = ctx + size_t(o + i) * H + h * d;
          std::fill(c, c + d, 0.f);
          for (int j = 0; j < n; ++j) {
            if (weights[j] == 0.f) continue;  // masked key or dropped weight
            axpy(c, weights[j], qkv + size_t(o + j) * H3 + 2 * H + h * d, d);
          }
        }
      }
    }
  }
}

void attention_backward(float* dqkv, const float* dctx, const float* qkv, const float* probs,
                        const AttentionShape& shape, const Dropout& drop) {
  const int nh = shape.num_heads, d = shape.head_dim, H = nh * d, H3 = 3 * H;
  const int B = shape.num_sequences;
  const float sqrt_d = static_cast<float>(std::sqrt(static_cast<double>(d)));
  DropMask mask(drop);
  const bool dropping = drop.active();
  const int span_max = max_span(shape);
#pragma omp parallel
  {
    std::vector<float> dprob(span_max), factor(span_max, 1.f), vt(size_t(d) * span_max);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < nh; ++h) {
        const int o = shape.offsets[b], n = shape.offsets[b + 1] - o;
        const int64_t pbase = shape.prob_offsets[b] + int64_t(h) * n * n;
        const float* P = probs + pbase;
        transpose_head(vt.data(), qkv + size_t(o) * H3 + 2 * H + h * d, n, d, H3);
        for (int j = 0; j < n; ++j) {
          float* dk = dqkv + size_t(o + j) * H3 + H + h * d;
          std::fill(dk, dk + d, 0.f);
          std::fill(dk + H, dk + H + d, 0.f);  // dV
        }
        for (int i = 0; i < n; ++i) {
          const float* row = P + size_t(i) * n;
          const float* dc = dctx + size_t(o + i) * H + h * d;
          const float* q = qkv + size_t(o + i) * H3 + h * d;
          if (dropping) {
            const uint64_t base = uint64_t(pbase) + uint64_t(i) * n;
#pragma omp simd
            for (int j = 0; j < n; ++j) factor[j] = mask.factor(base + j);
          }
          // ctx_i = sum_j dropout(P_ij) V_j  =>  dV_j += dropout(P_ij) dctx_i,
          // dP_ij = dropout'(dctx_i . V_j)
          scores_row(dprob.data(), dc, vt.data(), n, d);  // dctx_i . V_j
          float weighted = 0.f;
          for (int j = 0; j < n; ++j) {
            float* dv = dqkv + size_t(o + j) * H3 + 2 * H + h * d;
            float f = factor[j];
            float g = dprob[j] * f;
            dprob[j] = g;
            weighted += row[j] * g;
            float w = row[j] * f;
            if (w != 0.f) axpy(dv, w, dc, d);
          }
          // softmax backward, then the 1/sqrt(d) scale: dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik) / sqrt(d)
          float* dq = dqkv + size_t(o + i) * H3 + h * d;
          std::fill(dq, dq + d, 0.f);
          for (int j = 0; j < n; ++j) {
            float ds = row[j] * (dprob[j] - weighted) / sqrt_d;
            if (ds == 0.f) continue;
            const float* k = qkv + size_t(o + j) * H3 + H + h * d;
            float* dk = dqkv + size_t(o + j) * H3 + H + h * d;
            axpy(dq, ds, k, d);
            axpy(dk, ds, q, d);
          }
        }
      }
    }
  }
}

}  // namespace bertune::kernels::cpu
