// Scaled dot-product attention, one (sequence, head) pair per task: the
// score matrix of a sequence is n x n with n its own span, so a packed batch
// does no work on padding, and a padded batch pays for every pad row exactly
// as HF does. The products inside a pair are small GEMMs on strided views of
// the [T, 3H] qkv buffer (no copies); called from inside the parallel loop,
// the GEMM runs single-threaded on that thread.
#include <omp.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/math_cpu.h"
#include "kernels/cpu/simd_cpu.h"

namespace bertune::kernels::cpu {
namespace {

int max_span(const AttentionShape& s) {
  int m = 0;
  for (int b = 0; b < s.num_sequences; ++b) m = std::max(m, s.offsets[b + 1] - s.offsets[b]);
  return m;
}

// The constants every attention body starts from.
struct Heads {
  int nh, d, H, B;
  float sqrt_d;  // HF divides the scores by math.sqrt(head_dim)
  int span_max;  // the longest sequence: the size of each thread's scratch
  explicit Heads(const AttentionShape& s)
      : nh(s.num_heads), d(s.head_dim), H(s.num_heads * s.head_dim), B(s.num_sequences),
        sqrt_d(static_cast<float>(std::sqrt(static_cast<double>(s.head_dim)))), span_max(max_span(s)) {}
};

// out[e] = x[e] * the dropout factor of element base + e (out may be x): the mask of
// attention probabilities lies in place, at the probabilities' own offsets.
BERTUNE_SIMD_BODY void apply_dropout_body(float* out, const float* x, size_t n, const DropMask& mask, uint64_t base) {
#pragma omp simd
  for (size_t e = 0; e < n; ++e) out[e] = x[e] * mask.factor(base + e);
}
BERTUNE_SIMD_KERNEL(apply_dropout, (float* out, const float* x, size_t n, const DropMask& mask, uint64_t base),
                    (out, x, n, mask, base))

// Where one (sequence b, head h) pair lies in the first-query layout, for the forward and
// backward alike: q (B, H) holds the [CLS] queries, kv (T, 2H) the keys then values, and the
// probabilities one row of n per head from the sequence's first row.
struct FirstQueryPair {
  int o, n;      // the sequence's first row and span
  size_t q_at;   // the pair's query in q (and dq, ctx, dctx)
  size_t kv_at;  // its first key in kv (and dkv); the values follow H later
  size_t p_at;   // its probability row in probs
  FirstQueryPair(const AttentionShape& s, const Heads& hs, int b, int h)
      : o(s.offsets[b]), n(s.offsets[b + 1] - s.offsets[b]), q_at(size_t(b) * hs.H + size_t(h) * hs.d),
        kv_at(size_t(o) * 2 * hs.H + size_t(h) * hs.d), p_at(size_t(o) * hs.nh + size_t(h) * n) {}
  // Its first dropout-mask element: where attention_forward's query row 0 of the pair starts,
  // so the [CLS] rows draw the full layer's masks. Only with dropout: inference may pass no
  // prob_offsets.
  uint64_t mask_base(const AttentionShape& s, int b, int h) const {
    return uint64_t(s.prob_offsets[b]) + uint64_t(h) * n * n;
  }
};

// Softmax backward over one score row, in place: g_j = p_j (g_j - sum_k p_k g_k) / sqrt(d)
// (the 1/sqrt(d) of the forward's scaling).
BERTUNE_SIMD_BODY void softmax_backward_row_body(float* g, const float* p, int n, float sqrt_d) {
  float weighted = 0.f;
#pragma omp simd reduction(+ : weighted)
  for (int j = 0; j < n; ++j) weighted += p[j] * g[j];
#pragma omp simd
  for (int j = 0; j < n; ++j) g[j] = p[j] * (g[j] - weighted) / sqrt_d;
}
BERTUNE_SIMD_KERNEL(softmax_backward_row, (float* g, const float* p, int n, float sqrt_d), (g, p, n, sqrt_d))

// Row-wise softmax of scores / sqrt(d) over `rows` rows of n keys, pad keys
// (j >= valid) masked by adding finfo(float32).min as HF's extended attention
// mask does.
BERTUNE_SIMD_BODY void masked_softmax_body(float* S, int rows, int n, int valid, float sqrt_d) {
  const float masked = -FLT_MAX;
  for (int i = 0; i < rows; ++i) {
    float* row = S + size_t(i) * n;
    float mx = -FLT_MAX;
#pragma omp simd reduction(max : mx)
    for (int j = 0; j < n; ++j) {
      float s = row[j] / sqrt_d + (j >= valid ? masked : 0.f);
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
  }
}
BERTUNE_SIMD_KERNEL(masked_softmax, (float* S, int rows, int n, int valid, float sqrt_d), (S, rows, n, valid, sqrt_d))

}  // namespace

void attention_forward(float* ctx, float* probs, const float* qkv, const AttentionShape& shape,
                       const Dropout& drop) {
  const Heads hs(shape);
  const int nh = hs.nh, d = hs.d, H = hs.H, H3 = 3 * H, B = hs.B;
  DropMask mask(drop);
  const bool dropping = drop.active();
#pragma omp parallel
  {
    std::vector<float> dropped(dropping ? size_t(hs.span_max) * hs.span_max : 0);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < nh; ++h) {
        const int o = shape.offsets[b], n = shape.offsets[b + 1] - o, valid = shape.lengths[b];
        const int64_t pbase = shape.prob_offsets[b] + int64_t(h) * n * n;
        float* P = probs + pbase;
        const float* Q = qkv + size_t(o) * H3 + h * d;
        const float* K = Q + H;
        const float* V = Q + 2 * H;
        gemm_fp32(false, true, n, n, d, 1.f, Q, H3, K, H3, 0.f, P, n);  // S = Q K^T
        masked_softmax(P, n, n, valid, hs.sqrt_d);
        const float* weights = P;
        if (dropping) {
          apply_dropout(dropped.data(), P, size_t(n) * n, mask, uint64_t(pbase));
          weights = dropped.data();
        }
        gemm_fp32(false, false, n, d, n, 1.f, weights, n, V, H3, 0.f, ctx + size_t(o) * H + h * d, H);
      }
    }
  }
}

// One query per (sequence, head): scores are a 1 x n row, so the work is two
// matrix-vector products; the softmax is the same code as attention_forward's, and
// the dropout mask is its query row 0's (element pbase + j).
void attention_first_query_forward(float* ctx, float* probs, const float* q, const float* kv,
                                   const AttentionShape& shape, const Dropout& drop) {
  const Heads hs(shape);
  const int nh = hs.nh, d = hs.d, H = hs.H, H2 = 2 * H, B = hs.B;
  DropMask mask(drop);
  const bool dropping = drop.active();
#pragma omp parallel
  {
    std::vector<float> scores(hs.span_max), dropped(dropping ? hs.span_max : 0);
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < nh; ++h) {
        const FirstQueryPair pair(shape, hs, b, h);
        const int n = pair.n;
        const float* Q = q + pair.q_at;
        const float* K = kv + pair.kv_at;
        const float* V = K + H;
        float* s = probs ? probs + pair.p_at : scores.data();
        gemm_fp32(false, true, 1, n, d, 1.f, Q, H, K, H2, 0.f, s, n);  // s = q K^T
        masked_softmax(s, 1, n, shape.lengths[b], hs.sqrt_d);
        const float* weights = s;
        if (dropping) {
          apply_dropout(dropped.data(), s, n, mask, pair.mask_base(shape, b, h));
          weights = dropped.data();
        }
        gemm_fp32(false, false, 1, d, n, 1.f, weights, n, V, H2, 0.f, ctx + pair.q_at, H);
      }
    }
  }
}

// attention_backward with one query row per (sequence, head): dV and dK are outer
// products (every key row gets the [CLS] query's share), dq one vector-matrix product.
void attention_first_query_backward(float* dq, float* dkv, const float* dctx, const float* q,
                                    const float* kv, const float* probs, const AttentionShape& shape,
                                    const Dropout& drop) {
  const Heads hs(shape);
  const int nh = hs.nh, d = hs.d, H = hs.H, H2 = 2 * H, B = hs.B;
  DropMask mask(drop);
  const bool dropping = drop.active();
#pragma omp parallel
  {
    std::vector<float> g(hs.span_max), dropped(dropping ? hs.span_max : 0);
#pragma omp for collapse(2) schedule(dynamic, 4)
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < nh; ++h) {
        const FirstQueryPair pair(shape, hs, b, h);
        const int n = pair.n;
        const uint64_t pbase = dropping ? pair.mask_base(shape, b, h) : 0;
        const float* p = probs + pair.p_at;
        const float* Q = q + pair.q_at;
        const float* K = kv + pair.kv_at;
        const float* V = K + H;
        const float* dC = dctx + pair.q_at;
        float* dK = dkv + pair.kv_at;
        float* dV = dK + H;
        const float* weights = p;  // ctx = dropout(p) V
        if (dropping) {
          apply_dropout(dropped.data(), p, n, mask, pbase);
          weights = dropped.data();
        }
        gemm_fp32(true, false, n, d, 1, 1.f, weights, n, dC, H, 0.f, dV, H2);  // dV = pd^T dctx
        gemm_fp32(false, true, 1, n, d, 1.f, dC, H, V, H2, 0.f, g.data(), n);  // dpd = dctx V^T
        if (dropping) apply_dropout(g.data(), g.data(), n, mask, pbase);
        softmax_backward_row(g.data(), p, n, hs.sqrt_d);  // ds
        gemm_fp32(false, false, 1, d, n, 1.f, g.data(), n, K, H2, 0.f, dq + pair.q_at, H);  // dq = ds K
        gemm_fp32(true, false, n, d, 1, 1.f, g.data(), n, Q, H, 0.f, dK, H2);  // dK = ds^T q
      }
    }
  }
}

void attention_backward(float* dqkv, const float* dctx, const float* qkv, const float* probs,
                        const AttentionShape& shape, const Dropout& drop) {
  const Heads hs(shape);
  const int nh = hs.nh, d = hs.d, H = hs.H, H3 = 3 * H, B = hs.B;
  DropMask mask(drop);
  const bool dropping = drop.active();
  const size_t nn_max = size_t(hs.span_max) * hs.span_max;
#pragma omp parallel
  {
    std::vector<float> dS(nn_max), dropped(dropping ? nn_max : 0);
#pragma omp for collapse(2) schedule(dynamic, 1)
    for (int b = 0; b < B; ++b) {
      for (int h = 0; h < nh; ++h) {
        const int o = shape.offsets[b], n = shape.offsets[b + 1] - o;
        const size_t nn = size_t(n) * n;
        const int64_t pbase = shape.prob_offsets[b] + int64_t(h) * n * n;
        const float* P = probs + pbase;
        const float* Q = qkv + size_t(o) * H3 + h * d;
        const float* K = Q + H;
        const float* V = Q + 2 * H;
        float* dQ = dqkv + size_t(o) * H3 + h * d;
        float* dK = dQ + H;
        float* dV = dQ + 2 * H;
        const float* dC = dctx + size_t(o) * H + h * d;
        // ctx = dropout(P) V
        const float* weights = P;
        if (dropping) {
          apply_dropout(dropped.data(), P, nn, mask, uint64_t(pbase));
          weights = dropped.data();
        }
        gemm_fp32(true, false, n, d, n, 1.f, weights, n, dC, H, 0.f, dV, H3);  // dV = Pd^T dctx
        gemm_fp32(false, true, n, n, d, 1.f, dC, H, V, H3, 0.f, dS.data(), n);  // dPd = dctx V^T
        // through dropout, then softmax: dS_ij = P_ij (dP_ij - sum_k P_ik dP_ik) / sqrt(d)
        for (int i = 0; i < n; ++i) {
          float* g = dS.data() + size_t(i) * n;
          const float* p = P + size_t(i) * n;
          if (dropping) apply_dropout(g, g, n, mask, uint64_t(pbase) + uint64_t(i) * n);
          softmax_backward_row(g, p, n, hs.sqrt_d);
        }
        gemm_fp32(false, false, n, d, n, 1.f, dS.data(), n, K, H3, 0.f, dQ, H3);  // dQ = dS K
        gemm_fp32(true, false, n, d, n, 1.f, dS.data(), n, Q, H3, 0.f, dK, H3);   // dK = dS^T Q
      }
    }
  }
}

}  // namespace bertune::kernels::cpu
