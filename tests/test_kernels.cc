// Every op of kernels/ops.h, on every device this build has, against naive
// reference loops written for clarity (double accumulation) — the ggml idea:
// one harness, and a new backend (CUDA) only has to be added to kDevices.
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <random>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/math_cpu.h"
#include "kernels/cpu_runtime.h"
#include "numeric_compare.h"
#include "kernels/ops.h"

using namespace bertune;
using kernels::Device;

namespace {

const std::vector<Device> kDevices = {Device::CPU};

using numeric_compare::randn;

float max_err(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  float m = 0.f;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// C = alpha op(A) op(B) + beta C, row-major, in double.
void gemm_ref(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc) {
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double acc = 0;
      for (int k = 0; k < K; ++k)
        acc += double(ta ? A[k * lda + i] : A[i * lda + k]) * (tb ? B[j * ldb + k] : B[k * ldb + j]);
      C[i * ldc + j] = float(alpha * acc + (beta == 0.f ? 0.0 : double(beta) * C[i * ldc + j]));
    }
}

double gelu_ref(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

}  // namespace

TEST(Kernels, GemmAllTransposesAgainstReference) {
  std::printf("gemm backend: %s\n", kernels::gemm_backend().c_str());
  struct Shape { int M, N, K; };
  for (Shape s : {Shape{1, 1, 1}, Shape{7, 13, 5}, Shape{33, 17, 64}, Shape{96, 200, 130}}) {
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float beta : {0.f, 1.f, 0.5f}) {
          int lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 1, ldc = s.N + 2;
          auto A = randn(size_t(ta ? s.K : s.M) * lda, 1);
          auto B = randn(size_t(tb ? s.N : s.K) * ldb, 2);
          auto C0 = randn(size_t(s.M) * ldc, 3);
          auto want = C0;
          gemm_ref(ta, tb, s.M, s.N, s.K, 0.75f, A.data(), lda, B.data(), ldb, beta, want.data(), ldc);
          float tol = 1e-5f * std::sqrt(float(s.K)) * 4;
          for (Device d : kDevices) {
            auto got = C0;
            kernels::gemm(d, ta, tb, s.M, s.N, s.K, 0.75f, A.data(), lda, B.data(), ldb, beta,
                          got.data(), ldc);
            EXPECT_LE(max_err(got, want), tol) << "M" << s.M << " N" << s.N << " K" << s.K
                                               << " ta" << ta << " tb" << tb << " beta" << beta;
          }
          auto builtin = C0;
          kernels::cpu::gemm_builtin(ta, tb, s.M, s.N, s.K, 0.75f, A.data(), lda, B.data(), ldb,
                                     beta, builtin.data(), ldc);
          EXPECT_LE(max_err(builtin, want), tol);
        }
  }
}

TEST(Kernels, GemmRejectsBadLeadingDimensions) {
  std::vector<float> a(16), b(16), c(16);
  EXPECT_ANY_THROW(kernels::gemm(Device::CPU, false, false, 4, 4, 4, 1.f, a.data(), 3, b.data(), 4,
                                 0.f, c.data(), 4));
  EXPECT_ANY_THROW(kernels::gemm(Device::CUDA, false, false, 4, 4, 4, 1.f, a.data(), 4, b.data(),
                                 4, 0.f, c.data(), 4));  // no CUDA backend in this build
}

TEST(Kernels, LinearForwardBackward) {
  const int T = 37, in = 48, out = 20;
  auto x = randn(T * in, 4), W = randn(out * in, 5), b = randn(out, 6), dy = randn(T * out, 7);
  std::vector<float> y_ref(T * out), dx_ref(T * in), dW_ref(out * in, 0.5f), db_ref(out, 0.25f);
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < out; ++o) {
      double acc = b[o];
      for (int i = 0; i < in; ++i) acc += double(x[t * in + i]) * W[o * in + i];
      y_ref[t * out + o] = float(acc);
    }
  for (int t = 0; t < T; ++t)
    for (int i = 0; i < in; ++i) {
      double acc = 1.0;  // accumulate_dx onto ones
      for (int o = 0; o < out; ++o) acc += double(dy[t * out + o]) * W[o * in + i];
      dx_ref[t * in + i] = float(acc);
    }
  for (int o = 0; o < out; ++o) {
    double acc_b = db_ref[o];
    for (int t = 0; t < T; ++t) acc_b += dy[t * out + o];
    db_ref[o] = float(acc_b);
    for (int i = 0; i < in; ++i) {
      double acc = dW_ref[o * in + i];
      for (int t = 0; t < T; ++t) acc += double(dy[t * out + o]) * x[t * in + i];
      dW_ref[o * in + i] = float(acc);
    }
  }
  for (Device d : kDevices) {
    std::vector<float> y(T * out), dx(T * in, 1.f), dW(out * in, 0.5f), db(out, 0.25f);
    kernels::linear_forward(d, y.data(), x.data(), W.data(), b.data(), T, in, out);
    kernels::linear_backward(d, dx.data(), dW.data(), db.data(), dy.data(), x.data(), W.data(), T,
                             in, out, /*accumulate_dx=*/true);
    EXPECT_LE(max_err(y, y_ref), 1e-4f);
    EXPECT_LE(max_err(dx, dx_ref), 1e-4f);
    EXPECT_LE(max_err(dW, dW_ref), 1e-4f);
    EXPECT_LE(max_err(db, db_ref), 1e-4f);
  }
}

TEST(Kernels, GeluExpErfAgainstLibm) {
  std::vector<float> x(4001);
  for (int i = 0; i < 4001; ++i) x[i] = -10.f + i * 0.005f;
  std::vector<float> y_ref(x.size()), dx_ref(x.size()), dy(x.size(), 1.f);
  for (size_t i = 0; i < x.size(); ++i) {
    y_ref[i] = float(gelu_ref(x[i]));
    double v = x[i];
    dx_ref[i] = float(0.5 * (1 + std::erf(v / std::sqrt(2.0))) + v * std::exp(-v * v / 2) / std::sqrt(2 * M_PI));
  }
  for (Device d : kDevices) {
    std::vector<float> y(x.size()), dx(x.size());
    kernels::gelu_forward(d, y.data(), x.data(), x.size());
    kernels::gelu_backward(d, dx.data(), dy.data(), x.data(), x.size());
    float ey = max_err(y, y_ref), ed = max_err(dx, dx_ref);
    std::printf("gelu max |err| %.3g, gelu' max |err| %.3g\n", ey, ed);
    EXPECT_LE(ey, 1e-6f);
    EXPECT_LE(ed, 1e-6f);
    // bias + GELU fused, on rows
    std::vector<float> u(x.begin(), x.begin() + 4000), g(4000), bias = randn(40, 9);
    kernels::bias_gelu_forward(d, u.data(), g.data(), bias.data(), 100, 40);
    float e = 0.f;
    for (int t = 0; t < 100; ++t)
      for (int j = 0; j < 40; ++j) {
        float want_u = x[t * 40 + j] + bias[j];
        EXPECT_EQ(u[t * 40 + j], want_u);
        e = std::max(e, float(std::fabs(g[t * 40 + j] - gelu_ref(want_u))));
      }
    EXPECT_LE(e, 1e-6f);
  }
  float rel = 0.f;
  for (float v = -87.f; v < 88.f; v += 0.01f)
    rel = std::max(rel, float(std::fabs(kernels::cpu::exp_fast(v) - std::exp(double(v))) / std::exp(double(v))));
  std::printf("exp_fast max relative error %.3g\n", rel);
  EXPECT_LE(rel, 3e-7f);
  EXPECT_EQ(kernels::cpu::exp_fast(-FLT_MAX), 0.f);
}

TEST(Kernels, LayerNormAndFusedResidualAgainstReference) {
  const int T = 19, H = 72;
  auto x = randn(T * H, 10, 3.f), y = randn(T * H, 11), gamma = randn(H, 12), beta = randn(H, 13);
  auto dout = randn(T * H, 14);
  for (Device d : kDevices) {
    for (float p : {0.f, 0.2f}) {
      auto drop = kernels::Dropout::make(1, 2, 3, p);
      std::vector<float> out(T * H), s(T * H), mean(T), rstd(T);
      kernels::dropout_residual_layernorm_forward(d, out.data(), s.data(), mean.data(), rstd.data(),
                                                  y.data(), x.data(), gamma.data(), beta.data(), T,
                                                  H, 1e-12f, drop);
      std::vector<float> yd(T * H);
      kernels::dropout_forward(d, yd.data(), y.data(), yd.size(), drop);
      std::vector<float> out_ref(T * H), dx_ref(T * H), dg_ref(H, 0.f), db_ref(H, 0.f);
      for (int t = 0; t < T; ++t) {
        std::vector<double> sv(H);
        double mu = 0, var = 0;
        for (int i = 0; i < H; ++i) mu += sv[i] = double(yd[t * H + i]) + x[t * H + i];
        mu /= H;
        for (int i = 0; i < H; ++i) var += (sv[i] - mu) * (sv[i] - mu);
        var /= H;
        double rs = 1 / std::sqrt(var + 1e-12);
        double a = 0, c = 0;
        for (int i = 0; i < H; ++i) {
          double xh = (sv[i] - mu) * rs;
          out_ref[t * H + i] = float(xh * gamma[i] + beta[i]);
          a += dout[t * H + i] * gamma[i];
          c += dout[t * H + i] * gamma[i] * xh;
          dg_ref[i] += float(dout[t * H + i] * xh);
          db_ref[i] += dout[t * H + i];
        }
        for (int i = 0; i < H; ++i) {
          double xh = (sv[i] - mu) * rs;
          dx_ref[t * H + i] = float(rs * (dout[t * H + i] * gamma[i] - a / H - xh * c / H));
        }
      }
      EXPECT_LE(max_err(out, out_ref), 2e-5f);
      std::vector<float> dx(T * H), dg(H, 0.f), db(H, 0.f);
      kernels::layernorm_backward(d, dx.data(), dg.data(), db.data(), dout.data(), s.data(),
                                  mean.data(), rstd.data(), gamma.data(), T, H);
      EXPECT_LE(max_err(dx, dx_ref), 2e-5f);
      EXPECT_LE(max_err(dg, dg_ref), 2e-5f);
      EXPECT_LE(max_err(db, db_ref), 2e-5f);
      // plain layernorm of s gives the same output
      std::vector<float> out2(T * H), m2(T), r2(T);
      kernels::layernorm_forward(d, out2.data(), m2.data(), r2.data(), s.data(), gamma.data(),
                                 beta.data(), T, H, 1e-12f);
      EXPECT_LE(max_err(out2, out), 1e-6f);
    }
  }
}

TEST(Kernels, DropoutRateScaleAndReproducibility) {
  const size_t n = 1 << 20;
  std::vector<float> ones(n, 1.f), a(n), b(n), c(n);
  auto drop = kernels::Dropout::make(42, 7, 3, 0.1f);
  for (Device d : kDevices) {
    kernels::dropout_forward(d, a.data(), ones.data(), n, drop);
    kernels::dropout_forward(d, b.data(), ones.data(), n, drop);
    kernels::dropout_forward(d, c.data(), ones.data(), n, kernels::Dropout::make(42, 8, 3, 0.1f));
    size_t zeros = 0, differ = 0;
    for (size_t i = 0; i < n; ++i) {
      zeros += a[i] == 0.f;
      differ += a[i] != c[i];
      ASSERT_TRUE(a[i] == 0.f || std::fabs(a[i] - 1.f / 0.9f) < 1e-6f);
    }
    EXPECT_EQ(a, b);
    EXPECT_NEAR(double(zeros) / n, 0.1, 0.002);
    EXPECT_GT(differ, n / 10);
  }
}

// A site shifted by `first` draws, at element i, what the site draws at element first + i:
// how a part of a batch gets the masks it has in the whole batch.
TEST(Kernels, ShiftedDropoutIsTheTailOfTheSite) {
  const size_t first = 1000, n = 4097;
  std::vector<float> ones(first + n, 1.f), whole(first + n), tail(n);
  const auto drop = kernels::Dropout::make(42, 7, 3, 0.3f);
  for (Device d : kDevices) {
    kernels::dropout_forward(d, whole.data(), ones.data(), first + n, drop);
    kernels::dropout_forward(d, tail.data(), ones.data(), n, drop.shifted(first));
    EXPECT_TRUE(std::equal(tail.begin(), tail.end(), whole.begin() + first));
    kernels::dropout_forward(d, tail.data(), ones.data(), n, drop);
    EXPECT_FALSE(std::equal(tail.begin(), tail.end(), whole.begin() + first)) << "the unshifted site differs";
  }
}

TEST(Kernels, AttentionPackedAndPaddedAgainstReference) {
  const int nh = 3, hd = 8, H = nh * hd;
  // three sequences; spans 5, 9, 4 with real lengths 5, 6, 4 (one padded span)
  std::vector<int32_t> offsets = {0, 5, 14, 18}, lengths = {5, 6, 4};
  std::vector<int64_t> prob_offsets = {0};
  for (int b = 0; b < 3; ++b) {
    int n = offsets[b + 1] - offsets[b];
    prob_offsets.push_back(prob_offsets.back() + int64_t(nh) * n * n);
  }
  kernels::AttentionShape shape{offsets.data(), lengths.data(), 3, nh, hd, prob_offsets.data()};
  const int T = 18;
  auto qkv = randn(T * 3 * H, 20), dctx = randn(T * H, 21);
  for (Device d : kDevices) {
    for (float p : {0.f, 0.25f}) {
      auto drop = kernels::Dropout::make(3, 1, 4, p);
      std::vector<float> ctx(T * H), probs(prob_offsets.back()), dqkv(T * 3 * H);
      kernels::attention_forward(d, ctx.data(), probs.data(), qkv.data(), shape, drop);
      kernels::attention_backward(d, dqkv.data(), dctx.data(), qkv.data(), probs.data(), shape, drop);
      // reference: dense loops in double, with the same dropout factors
      std::vector<float> keep(prob_offsets.back(), 1.f), ctx_ref(T * H), dqkv_ref(T * 3 * H, 0.f);
      kernels::dropout_forward(d, keep.data(), keep.data(), keep.size(), drop);
      for (int b = 0; b < 3; ++b) {
        int o = offsets[b], n = offsets[b + 1] - o, valid = lengths[b];
        for (int h = 0; h < nh; ++h) {
          auto Q = [&](int i, int k) { return double(qkv[(o + i) * 3 * H + h * hd + k]); };
          auto K = [&](int j, int k) { return double(qkv[(o + j) * 3 * H + H + h * hd + k]); };
          auto V = [&](int j, int k) { return double(qkv[(o + j) * 3 * H + 2 * H + h * hd + k]); };
          for (int i = 0; i < n; ++i) {
            std::vector<double> P(n), F(n);
            double mx = -1e300, sum = 0;
            for (int j = 0; j < n; ++j) {
              if (j >= valid) { P[j] = -INFINITY; continue; }
              double s = 0;
              for (int k = 0; k < hd; ++k) s += Q(i, k) * K(j, k);
              P[j] = s / std::sqrt(double(hd));
              mx = std::max(mx, P[j]);
            }
            for (int j = 0; j < n; ++j) sum += P[j] = std::exp(P[j] - mx);
            for (int j = 0; j < n; ++j) {
              P[j] /= sum;
              F[j] = keep[prob_offsets[b] + int64_t(h) * n * n + i * n + j];
              EXPECT_NEAR(probs[prob_offsets[b] + int64_t(h) * n * n + i * n + j], P[j], 1e-6);
            }
            std::vector<double> dP(n);
            double dot = 0;
            for (int k = 0; k < hd; ++k) {
              double c = 0;
              for (int j = 0; j < n; ++j) c += P[j] * F[j] * V(j, k);
              ctx_ref[(o + i) * H + h * hd + k] = float(c);
            }
            for (int j = 0; j < n; ++j) {
              double g = 0;
              for (int k = 0; k < hd; ++k) {
                double dc = dctx[(o + i) * H + h * hd + k];
                g += dc * V(j, k);
                dqkv_ref[(o + j) * 3 * H + 2 * H + h * hd + k] += float(P[j] * F[j] * dc);
              }
              dP[j] = g * F[j];
              dot += P[j] * dP[j];
            }
            for (int j = 0; j < n; ++j) {
              double ds = P[j] * (dP[j] - dot) / std::sqrt(double(hd));
              for (int k = 0; k < hd; ++k) {
                dqkv_ref[(o + i) * 3 * H + h * hd + k] += float(ds * K(j, k));
                dqkv_ref[(o + j) * 3 * H + H + h * hd + k] += float(ds * Q(i, k));
              }
            }
          }
        }
      }
      EXPECT_LE(max_err(ctx, ctx_ref), 2e-5f) << "p " << p;
      EXPECT_LE(max_err(dqkv, dqkv_ref), 2e-5f) << "p " << p;
    }
  }
}

TEST(Kernels, EmbeddingsAndCrossEntropy) {
  const int T = 6, H = 20, V = 5;
  std::vector<int32_t> ids = {1, 3, 1, 4, 0, 1}, pos = {0, 1, 2, 0, 1, 2}, types = {0, 0, 1, 1, 0, 1};
  auto word = randn(V * H, 30), position = randn(3 * H, 31), type = randn(2 * H, 32), dout = randn(T * H, 33);
  for (Device d : kDevices) {
    std::vector<float> out(T * H), dw(V * H, 0.f), dp(3 * H, 0.f), dt(2 * H, 0.f);
    kernels::embeddings_forward(d, out.data(), ids.data(), pos.data(), types.data(), word.data(),
                                position.data(), type.data(), T, H);
    kernels::embeddings_backward(d, dw.data(), dp.data(), dt.data(), dout.data(), ids.data(),
                                 pos.data(), types.data(), T, H);
    std::vector<float> dw_ref(V * H, 0.f);
    for (int t = 0; t < T; ++t)
      for (int i = 0; i < H; ++i) {
        EXPECT_FLOAT_EQ(out[t * H + i], word[ids[t] * H + i] + position[pos[t] * H + i] + type[types[t] * H + i]);
        dw_ref[ids[t] * H + i] += dout[t * H + i];
      }
    EXPECT_LE(max_err(dw, dw_ref), 1e-6f);
    EXPECT_EQ(std::vector<float>(dw.begin() + 2 * H, dw.begin() + 3 * H), std::vector<float>(H, 0.f));  // id 2 unseen
    // cross-entropy, one ignored row
    std::vector<float> logits = randn(4 * V, 34), probs(4 * V), dl(4 * V);
    std::vector<int32_t> labels = {2, -100, 0, 4};
    int counted = 0;
    float loss = kernels::cross_entropy_forward(d, probs.data(), logits.data(), labels.data(), 4, V, &counted);
    double want = 0;
    for (int r : {0, 2, 3}) {
      double mx = -1e300, s = 0;
      for (int c = 0; c < V; ++c) mx = std::max(mx, double(logits[r * V + c]));
      for (int c = 0; c < V; ++c) s += std::exp(logits[r * V + c] - mx);
      want -= logits[r * V + labels[r]] - mx - std::log(s);
    }
    EXPECT_EQ(counted, 3);
    EXPECT_NEAR(loss, want / 3, 1e-6);
    kernels::cross_entropy_backward(d, dl.data(), probs.data(), labels.data(), 4, V, counted);
    for (int c = 0; c < V; ++c) EXPECT_EQ(dl[1 * V + c], 0.f);
    EXPECT_NEAR(dl[0 * V + 2], (probs[2] - 1) / 3, 1e-7);
    std::vector<int32_t> bad = {7, 0, 0, 0};
    EXPECT_ANY_THROW(kernels::cross_entropy_forward(d, probs.data(), logits.data(), bad.data(), 4, V, &counted));
  }
}

// A masked-LM row has 32,000 classes: summing their exponentials in float, one after
// another, drops the many terms below half an ulp of the running sum (found by the GPU
// check, whose tree sum disagreed with the CPU by 1e-4 of a probability). Against float64.
TEST(Kernels, CrossEntropyOverAVocabularyMatchesFloat64) {
  const int N = 8, C = 32000;
  auto logits = randn(size_t(N) * C, 35, 4.f);
  std::vector<int32_t> labels(N);
  for (int r = 0; r < N; ++r) labels[r] = (r * 7919) % C;
  for (Device d : kDevices) {
    std::vector<float> probs(logits.size());
    int counted = 0;
    float loss = kernels::cross_entropy_forward(d, probs.data(), logits.data(), labels.data(), N, C, &counted);
    double want_loss = 0, worst = 0;
    for (int r = 0; r < N; ++r) {
      const float* z = &logits[size_t(r) * C];
      double mx = *std::max_element(z, z + C), s = 0;
      for (int c = 0; c < C; ++c) s += std::exp(double(z[c]) - mx);
      for (int c = 0; c < C; ++c) {
        double p = std::exp(double(z[c]) - mx) / s;
        worst = std::max(worst, std::fabs(probs[size_t(r) * C + c] - p) / (p + 1e-30));
      }
      want_loss -= z[labels[r]] - mx - std::log(s);
    }
    EXPECT_NEAR(loss, want_loss / N, 1e-5 * want_loss / N);
    // float inputs: z - max rounds to ~|z - max|·2^-24 (2.4e-6 at 40), which exp carries over.
    EXPECT_LE(worst, 5e-6) << "largest relative error of a probability";
  }
}

TEST(Kernels, AdamWBothFormsAgainstScalarFormulas) {
  const size_t n = 100003;
  auto p0 = randn(n, 40), g = randn(n, 41, 1e-3f), m0 = randn(n, 42, 1e-4f), v0 = randn(n, 43, 1e-4f);
  for (auto& x : v0) x = x * x;
  const double lr = 2e-3, wd = 0.01, b1 = 0.9, b2 = 0.999, eps = 1e-8;
  const int t = 3;
  const double bc1 = 1 - std::pow(b1, t), bc2 = 1 - std::pow(b2, t);
  for (Device d : kDevices) {
    for (int variant = 0; variant < 2; ++variant) {
      kernels::AdamWStep s{float(b1), float(1 - b1), float(b2), float(1 - b2), float(eps), 0, 1, 1, 0};
      if (variant == 0) {  // torch.optim.AdamW
        s.step_size = float(lr / bc1);
        s.bias2_sqrt = float(std::sqrt(bc2));
        s.pre_decay = float(1 - lr * wd);
      } else {  // transformers.AdamW
        s.step_size = float(lr * std::sqrt(bc2) / bc1);
        s.post_decay = float(-lr * wd);
      }
      auto p = p0, m = m0, v = v0, gg = g;
      kernels::adamw_update(d, p.data(), gg.data(), m.data(), v.data(), n, s, true);
      float worst = 0;
      for (size_t i = 0; i < n; ++i) {
        double mi = b1 * m0[i] + (1 - b1) * g[i], vi = b2 * v0[i] + (1 - b2) * double(g[i]) * g[i];
        double pi = p0[i];
        if (variant == 0) {
          pi *= 1 - lr * wd;
          pi -= lr / bc1 * mi / (std::sqrt(vi) / std::sqrt(bc2) + eps);
        } else {
          pi -= lr * std::sqrt(bc2) / bc1 * mi / (std::sqrt(vi) + eps);
          pi -= lr * wd * pi;
        }
        worst = std::max(worst, float(std::fabs(p[i] - pi)));
        ASSERT_EQ(gg[i], 0.f);
      }
      EXPECT_LE(worst, 2e-6f) << "variant " << variant;
    }
  }
}

TEST(Kernels, SumSquaresAndScale) {
  auto x = randn(300001, 50);
  double want = 0;
  for (float v : x) want += double(v) * v;
  for (Device d : kDevices) {
    EXPECT_NEAR(kernels::sum_squares(d, x.data(), x.size()), want, 1e-6 * want);
    auto y = x;
    kernels::scale(d, y.data(), y.size(), 0.5f);
    EXPECT_EQ(y[12345], x[12345] * 0.5f);
    auto z = randn(x.size(), 51);
    const auto z0 = z;
    kernels::add_scaled(d, z.data(), x.data(), x.size(), -3.f);
    for (size_t i : {size_t(0), size_t(12345), x.size() - 1}) EXPECT_FLOAT_EQ(z[i], z0[i] - 3.f * x[i]);
  }
}
