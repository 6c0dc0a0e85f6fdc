#pragma once
// Plain references of the ops of kernels/op_table.inc for the backend test
// (tests/backend_ops.h): naive loops written for clarity, accumulating in double, from
// the definitions in the table's comments. Dropout masks come from the generator's
// definition (kernels/dropout_hash.h), AdamW's device-decided coefficients from the
// shared scalar arithmetic (kernels/adamw_math.h): both are specifications, not kernels.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "kernels/adamw_math.h"
#include "kernels/dropout_hash.h"
#include "kernels/ops.h"

namespace op_reference {

using Doubles = std::vector<double>;
using Floats = std::vector<float>;
using bertune::kernels::Dropout;

// mask(i) / (1 - p) of a dropout site.
inline double drop_factor(const Dropout& d, uint64_t i) {
  if (!d.active()) return 1.0;
  namespace k = bertune::kernels;
  return k::dropout_factor(d.stream, k::dropout_threshold(d.p), k::dropout_keep_scale(d.p), i);
}

// C = alpha op(A) op(B) + beta C, row-major (C [M, ldc] holds the start values).
inline Doubles gemm(bool ta, bool tb, int M, int N, int K, double alpha, const Floats& A, int lda,
                    const Floats& B, int ldb, double beta, const Floats& C, int ldc) {
  Doubles out(C.begin(), C.end());
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < K; ++k)
        acc += double(ta ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k]) *
               (tb ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j]);
      out[size_t(i) * ldc + j] = alpha * acc + (beta == 0 ? 0.0 : beta * C[size_t(i) * ldc + j]);
    }
  return out;
}

inline double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }
inline double gelu_grad(double x) {
  return 0.5 * (1 + std::erf(x / std::sqrt(2.0))) + x * std::exp(-x * x / 2) / std::sqrt(2 * M_PI);
}

// LayerNorm of the rows of s [T, H]: out, mean, rstd.
struct LayerNorm {
  Doubles out, mean, rstd;
};
inline LayerNorm layernorm(const Doubles& s, const Floats& gamma, const Floats& beta, int T, int H, double eps) {
  LayerNorm r{Doubles(s.size()), Doubles(T), Doubles(T)};
  for (int t = 0; t < T; ++t) {
    double mu = 0, var = 0;
    for (int i = 0; i < H; ++i) mu += s[size_t(t) * H + i];
    mu /= H;
    for (int i = 0; i < H; ++i) var += (s[size_t(t) * H + i] - mu) * (s[size_t(t) * H + i] - mu);
    var /= H;
    r.mean[t] = mu;
    r.rstd[t] = 1 / std::sqrt(var + eps);
    for (int i = 0; i < H; ++i)
      r.out[size_t(t) * H + i] = (s[size_t(t) * H + i] - mu) * r.rstd[t] * gamma[i] + beta[i];
  }
  return r;
}

// LayerNorm backward from x and its statistics: dx; dgamma, dbeta accumulate onto their start.
struct LayerNormGrads {
  Doubles dx, dgamma, dbeta;
};
inline LayerNormGrads layernorm_backward(const Floats& dout, const Floats& x, const Doubles& mean, const Doubles& rstd,
                                         const Floats& gamma, const Floats& dgamma0, const Floats& dbeta0, int T,
                                         int H) {
  LayerNormGrads g{Doubles(x.size()), Doubles(dgamma0.begin(), dgamma0.end()), Doubles(dbeta0.begin(), dbeta0.end())};
  for (int t = 0; t < T; ++t) {
    double a = 0, c = 0;
    for (int i = 0; i < H; ++i) {
      const size_t e = size_t(t) * H + i;
      const double xh = (x[e] - mean[t]) * rstd[t];
      a += dout[e] * gamma[i];
      c += dout[e] * gamma[i] * xh;
      g.dgamma[i] += dout[e] * xh;
      g.dbeta[i] += dout[e];
    }
    for (int i = 0; i < H; ++i) {
      const size_t e = size_t(t) * H + i;
      const double xh = (x[e] - mean[t]) * rstd[t];
      g.dx[e] = rstd[t] * (dout[e] * gamma[i] - a / H - xh * c / H);
    }
  }
  return g;
}

// Packed multi-head attention, forward and backward, dense loops (kernels/ops.h's
// AttentionShape layout): ctx [T, H], probs (before dropout), dqkv [T, 3H].
struct Attention {
  Doubles ctx, probs, dqkv;
};
// Long: the forward and backward of one (sequence, head, query row) in one place, as the docs state them.
inline Attention attention(const Floats& qkv, const Floats& dctx, const std::vector<int32_t>& offsets,
                           const std::vector<int32_t>& lengths, const std::vector<int64_t>& prob_offsets, int nh,
                           int hd, const Dropout& drop) {
  const int H = nh * hd, T = offsets.back();
  Attention r{Doubles(size_t(T) * H, 0.0), Doubles(prob_offsets.back(), 0.0), Doubles(size_t(T) * 3 * H, 0.0)};
  for (size_t b = 0; b + 1 < offsets.size(); ++b) {
    const int o = offsets[b], n = offsets[b + 1] - o, valid = lengths[b];
    for (int h = 0; h < nh; ++h) {
      auto at = [&](int row, int part, int k) { return size_t(o + row) * 3 * H + size_t(part) * H + h * hd + k; };
      for (int i = 0; i < n; ++i) {
        Doubles P(n), F(n), dP(n);
        double mx = -1e300, sum = 0, dot = 0;
        for (int j = 0; j < n; ++j) {
          if (j >= valid) continue;
          double s = 0;
          for (int k = 0; k < hd; ++k) s += double(qkv[at(i, 0, k)]) * qkv[at(j, 1, k)];
          P[j] = s / std::sqrt(double(hd));
          mx = std::max(mx, P[j]);
        }
        for (int j = 0; j < n; ++j) sum += P[j] = j < valid ? std::exp(P[j] - mx) : 0.0;
        const int64_t row = prob_offsets[b] + int64_t(h) * n * n + int64_t(i) * n;
        for (int j = 0; j < n; ++j) {
          P[j] /= sum;
          F[j] = drop_factor(drop, uint64_t(row + j));
          r.probs[row + j] = P[j];
        }
        for (int k = 0; k < hd; ++k) {
          double c = 0;
          for (int j = 0; j < n; ++j) c += P[j] * F[j] * qkv[at(j, 2, k)];
          r.ctx[size_t(o + i) * H + h * hd + k] = c;
        }
        for (int j = 0; j < n; ++j) {
          double g = 0;
          for (int k = 0; k < hd; ++k) {
            const double dc = dctx[size_t(o + i) * H + h * hd + k];
            g += dc * qkv[at(j, 2, k)];
            r.dqkv[at(j, 2, k)] += P[j] * F[j] * dc;
          }
          dP[j] = g * F[j];
          dot += P[j] * dP[j];
        }
        for (int j = 0; j < n; ++j) {
          const double ds = P[j] * (dP[j] - dot) / std::sqrt(double(hd));
          for (int k = 0; k < hd; ++k) {
            r.dqkv[at(i, 0, k)] += ds * qkv[at(j, 1, k)];
            r.dqkv[at(j, 1, k)] += ds * qkv[at(i, 0, k)];
          }
        }
      }
    }
  }
  return r;
}

// Softmax rows of logits [N, C], the mean loss over rows whose label != -100 (as float,
// as the op returns it) and their count.
struct CrossEntropy {
  Doubles probs;
  double loss = 0;
  int counted = 0;
};
inline CrossEntropy cross_entropy(const Floats& logits, const std::vector<int32_t>& labels, int N, int C) {
  CrossEntropy r{Doubles(logits.size())};
  double total = 0;
  for (int i = 0; i < N; ++i) {
    const float* z = &logits[size_t(i) * C];
    const double mx = *std::max_element(z, z + C);
    double s = 0;
    for (int c = 0; c < C; ++c) s += std::exp(z[c] - mx);
    for (int c = 0; c < C; ++c) r.probs[size_t(i) * C + c] = std::exp(z[c] - mx) / s;
    if (labels[i] == -100) continue;
    total -= z[labels[i]] - mx - std::log(s);
    ++r.counted;
  }
  r.loss = r.counted ? double(float(total / r.counted)) : 0.0;
  return r;
}

// One AdamW pass over [begin, end) (kernels/ops.h's AdamWStep), with the clip factor of
// *clip_sum_squares folded in as torch's clip_grad_norm_ computes it (float32).
struct AdamW {
  Doubles p, g, m, v;
};
inline void adamw(AdamW& a, size_t begin, size_t end, bertune::kernels::AdamWStep s, bool zero_grad) {
  double grad_scale = s.grad_scale;
  if (s.clip_sum_squares && s.max_grad_norm > 0)
    grad_scale *= bertune::kernels::clip_coefficient_f32(std::sqrt(*s.clip_sum_squares), s.max_grad_norm);
  for (size_t i = begin; i < end; ++i) {
    const double g = a.g[i] * grad_scale;
    double p = a.p[i] * s.pre_decay;
    a.m[i] = a.m[i] * s.beta1 + double(s.one_minus_beta1) * g;
    a.v[i] = a.v[i] * s.beta2 + double(s.one_minus_beta2) * g * g;
    p -= s.step_size * (a.m[i] / (std::sqrt(a.v[i]) / s.bias2_sqrt + s.eps));
    a.p[i] = p + s.post_decay * p;
    if (zero_grad) a.g[i] = 0;
  }
}

// int8 linear as ops.h defines it: rows of x quantized symmetric per row (round to
// nearest even), int32 products, y = float(acc) * (row_scale * scale[o]) + b[o].
inline Doubles linear_int8(const Floats& x, const bertune::kernels::QuantizedLinear& w, const Floats* b, int T) {
  Doubles y(size_t(T) * w.out);
  std::vector<int8_t> q(w.in);
  for (int t = 0; t < T; ++t) {
    const float* row = &x[size_t(t) * w.in];
    float amax = 0.f;
    for (int k = 0; k < w.in; ++k) amax = std::max(amax, std::fabs(row[k]));
    const float inv = amax > 0.f ? 127.f / amax : 0.f;
    for (int k = 0; k < w.in; ++k) q[k] = int8_t(std::clamp(std::nearbyint(row[k] * inv), -127.f, 127.f));
    const float row_scale = amax / 127.f;
    for (int o = 0; o < w.out; ++o) {
      int64_t acc = 0;
      for (int k = 0; k < w.in; ++k) acc += int64_t(q[k]) * w.q[size_t(o) * w.in + k];
      y[size_t(t) * w.out + o] = double(acc) * (double(row_scale) * w.scale[o]) + (b ? (*b)[o] : 0.f);
    }
  }
  return y;
}

}  // namespace op_reference
