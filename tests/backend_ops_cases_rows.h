#pragma once
// The backend test's cases, continued (backend_ops_cases.h): row ops, embeddings,
// attention, loss and optimizer.
#include <cmath>
#include <string>
#include <vector>

#include "backend_ops.h"

namespace backend_ops {

namespace ref = op_reference;

// ---- row ops ----------------------------------------------------------------------------
inline std::string rows_name(const char* op, RowShape s) {
  return std::string(op) + "_T" + std::to_string(s.T) + "_H" + std::to_string(s.H);
}

inline void add_layernorm(std::vector<OpCase>& cases, RowShape s) {
  const auto [T, H] = s;
  const size_t n = size_t(T) * H;
  const Floats x = randn(n, uint32_t(T), 3.f), gamma = randn(H, uint32_t(H)), beta = randn(H, uint32_t(H) + 1),
               dout = randn(n, uint32_t(T) + 5), dgamma0 = randn(H, 9), dbeta0 = randn(H, 10);
  cases.push_back({Op::layernorm_forward, rows_name("layernorm_forward", s), Precision::FP32, "",
                   [=](Device d) {
                     On<float> in(d, x), g(d, gamma), b(d, beta), out(d, nans(n)), mean(d, nans(T)), rstd(d, nans(T));
                     k::layernorm_forward(d, out.p(), mean.p(), rstd.p(), in.p(), g.p(), b.p(), T, H, 1e-12f);
                     return Outputs{{"out", out.get(), gpu_test::kFp32, kRefSum},
                                    {"mean", mean.get(), gpu_test::kFp32, kRefSum},
                                    {"rstd", rstd.get(), gpu_test::kFp32, kRefSum}};
                   },
                   [=] {
                     auto r = ref::layernorm(as_doubles(x), gamma, beta, T, H, 1e-12);
                     return std::vector<Doubles>{r.out, r.mean, r.rstd};
                   }});
  // backward from the CPU's saved statistics (so only the backward differs between devices)
  Floats mean(T), rstd(T), scratch(n);
  k::layernorm_forward(Device::CPU, scratch.data(), mean.data(), rstd.data(), x.data(), gamma.data(), beta.data(), T,
                       H, 1e-12f);
  cases.push_back({Op::layernorm_backward, rows_name("layernorm_backward", s), Precision::FP32, "",
                   [=](Device d) {
                     On<float> in(d, x), g(d, gamma), m(d, mean), r(d, rstd), dy(d, dout), dx(d, nans(n)),
                         dg(d, dgamma0), db(d, dbeta0);
                     k::layernorm_backward(d, dx.p(), dg.p(), db.p(), dy.p(), in.p(), m.p(), r.p(), g.p(), T, H);
                     return Outputs{{"dx", dx.get(), gpu_test::kFp32, kRefSum},
                                    {"dgamma", dg.get(), gpu_test::kFp32Sum, kRefSum},
                                    {"dbeta", db.get(), gpu_test::kFp32Sum, kRefSum}};
                   },
                   [=] {
                     auto stats = ref::layernorm(as_doubles(x), gamma, beta, T, H, 1e-12);
                     auto g = ref::layernorm_backward(dout, x, stats.mean, stats.rstd, gamma, dgamma0, dbeta0, T, H);
                     return std::vector<Doubles>{g.dx, g.dgamma, g.dbeta};
                   }});
}

inline void add_row_ops(std::vector<OpCase>& cases, RowShape s) {
  const auto [T, H] = s;
  const size_t n = size_t(T) * H;
  for (float p : {0.f, 0.1f}) {
    const Floats y = randn(n, uint32_t(T)), res = randn(n, uint32_t(T) + 1), gamma = randn(H, 3), beta = randn(H, 4);
    const auto drop = k::Dropout::make(5, uint64_t(T), uint64_t(H), p);
    cases.push_back(
        {Op::dropout_residual_layernorm_forward, rows_name("dropout_residual_layernorm_forward", s) + p_name(p),
         Precision::FP32, "",
         [=](Device d) {
           On<float> in(d, y), r(d, res), g(d, gamma), b(d, beta), out(d, nans(n)), sum(d, nans(n)), mean(d, nans(T)),
               rstd(d, nans(T));
           k::dropout_residual_layernorm_forward(d, out.p(), sum.p(), mean.p(), rstd.p(), in.p(), r.p(), g.p(), b.p(),
                                                 T, H, 1e-12f, drop);
           // s = y * mask + residual: nvcc may fuse the two into one rounding
           return Outputs{{"out", out.get(), gpu_test::kFp32, kRefSum},
                          {"s", sum.get(), gpu_test::kFp32, kRef},
                          {"mean", mean.get(), gpu_test::kFp32, kRefSum},
                          {"rstd", rstd.get(), gpu_test::kFp32, kRefSum}};
         },
         [=] {
           Doubles sum(n);
           for (size_t i = 0; i < n; ++i) sum[i] = double(float(y[i] * ref::drop_factor(drop, i))) + res[i];
           auto r = ref::layernorm(sum, gamma, beta, T, H, 1e-12);
           return std::vector<Doubles>{r.out, sum, r.mean, r.rstd};
         }});
  }
  const Floats u0 = randn(n, uint32_t(T + H), 2.f), b = randn(H, uint32_t(T));
  cases.push_back({Op::bias_gelu_forward, rows_name("bias_gelu_forward", s), Precision::FP32, "",
                   [=](Device d) {
                     On<float> u(d, u0), bias(d, b), g(d, nans(n));
                     k::bias_gelu_forward(d, u.p(), g.p(), bias.p(), T, H);
                     return Outputs{{"u", u.get(), gpu_test::kFp32, kRef}, {"g", g.get(), gpu_test::kGelu, kRef}};
                   },
                   [=] {
                     Doubles u(n), g(n);
                     for (size_t i = 0; i < n; ++i) g[i] = ref::gelu(u[i] = double(u0[i] + b[i % H]));
                     return std::vector<Doubles>{u, g};
                   }});
}

inline void add_rows(std::vector<OpCase>& cases) {
  for (RowShape s : row_shapes()) {
    add_layernorm(cases, s);
    add_row_ops(cases, s);
  }
}

// ---- embeddings -------------------------------------------------------------------------
inline void add_embeddings(std::vector<OpCase>& cases) {
  // with types; types null (every row type 0); no token-type table (DistilBERT): neither
  for (int H : {32, 100, 768})
    for (int mode : {0, 1, 2}) {
      const bool with_types = mode == 0, table = mode != 2;
      const auto batch = gpu_test::random_packed_batch(uint32_t(H), 40, 128, 1);
      const int T = batch.rows(), V = 50, P = 128, TT = 2;  // a small vocabulary: ids repeat
      const Ints ids = gpu_test::random_ints(T, 1, 0, V - 1), types = gpu_test::random_ints(T, 2, 0, TT - 1),
                 pos = batch.positions;
      const Floats word = randn(size_t(V) * H, 3), position = randn(size_t(P) * H, 4), tt = randn(size_t(TT) * H, 5),
                   dout = randn(size_t(T) * H, 6);
      const std::string at = "_H" + std::to_string(H) + (with_types ? "" : table ? "_no_types" : "_no_table");
      auto type_of = [=](int t) { return with_types ? types[t] : 0; };
      cases.push_back({Op::embeddings_forward, "embeddings_forward" + at, Precision::FP32, "",
                       [=](Device d) {
                         On<int32_t> i(d, ids), p(d, pos), ty(d, types);
                         On<float> w(d, word), pe(d, position), te(d, tt), out(d, nans(size_t(T) * H));
                         k::embeddings_forward(d, out.p(), i.p(), p.p(), with_types ? ty.p() : nullptr, w.p(), pe.p(),
                                               table ? te.p() : nullptr, T, H);
                         return Outputs{{"out", out.get(), gpu_test::kFp32, kRef}};
                       },
                       [=] {
                         Doubles out(size_t(T) * H);
                         for (int t = 0; t < T; ++t)
                           for (int j = 0; j < H; ++j)
                             out[size_t(t) * H + j] = double(word[size_t(ids[t]) * H + j]) +
                                                      position[size_t(pos[t]) * H + j] +
                                                      (table ? tt[size_t(type_of(t)) * H + j] : 0.0);
                         return std::vector<Doubles>{out};
                       }});
      // backward accumulates into the tables: start from their values
      cases.push_back({Op::embeddings_backward, "embeddings_backward" + at, Precision::FP32, "",
                       [=](Device d) {
                         On<int32_t> i(d, ids), p(d, pos), ty(d, types);
                         On<float> w(d, word), pe(d, position), te(d, tt), g(d, dout);
                         k::embeddings_backward(d, w.p(), pe.p(), table ? te.p() : nullptr, g.p(), i.p(), p.p(),
                                                with_types ? ty.p() : nullptr, T, H);
                         return Outputs{{"dword", w.get(), gpu_test::kFp32Sum, kRefSum},
                                        {"dposition", pe.get(), gpu_test::kFp32Sum, kRefSum},
                                        {"dtoken_type", te.get(), gpu_test::kFp32Sum, kRefSum}};
                       },
                       [=] {
                         Doubles dw = as_doubles(word), dp = as_doubles(position), dt = as_doubles(tt);
                         for (int t = 0; t < T; ++t)
                           for (int j = 0; j < H; ++j) {
                             const double g = dout[size_t(t) * H + j];
                             dw[size_t(ids[t]) * H + j] += g;
                             dp[size_t(pos[t]) * H + j] += g;
                             if (table) dt[size_t(type_of(t)) * H + j] += g;
                           }
                         return std::vector<Doubles>{dw, dp, dt};
                       }});
    }
}

// ---- attention ----------------------------------------------------------------------------
struct AttentionCase {
  std::string name;
  gpu_test::PackedBatch batch;
  int heads, head_dim;
};
inline std::vector<AttentionCase> attention_batches() {
  gpu_test::PackedBatch fixed;  // spans 5, 9, 4 with real lengths 5, 6, 4 (one padded span)
  fixed.offsets = {0, 5, 14, 18};
  fixed.lengths = {5, 6, 4};
  for (int b = 0; b < 3; ++b) {
    const int span = fixed.offsets[b + 1] - fixed.offsets[b];
    fixed.prob_offsets.push_back(fixed.prob_offsets.back() + int64_t(3) * span * span);
    fixed.max_length = std::max(fixed.max_length, span);
  }
  return {{"3x8_fixed", fixed, 3, 8},
          {"4x64_ragged", gpu_test::random_packed_batch(7, 7, 45, 4), 4, 64},
          {"12x64_bert_base", gpu_test::random_packed_batch(8, 3, 70, 12), 12, 64},
          {"2x100_wide_heads", gpu_test::random_packed_batch(9, 5, 33, 2), 2, 100}};
}

inline void add_full_attention(std::vector<OpCase>& cases, const AttentionCase& c, float p) {
  const int H = c.heads * c.head_dim, T = c.batch.rows();
  const Floats qkv = randn(size_t(T) * 3 * H, 20), dctx = randn(size_t(T) * H, 21);
  const auto drop = k::Dropout::make(3, 1, 4, p);
  const auto b = c.batch;
  const int nh = c.heads, hd = c.head_dim;
  auto want = [=] { return ref::attention(qkv, dctx, b.offsets, b.lengths, b.prob_offsets, nh, hd, drop); };
  cases.push_back({Op::attention_forward, "attention_forward_" + c.name + p_name(p), Precision::FP32, "",
                   [=](Device d) {
                     ShapeOn s(d, b, nh, hd);
                     On<float> in(d, qkv), ctx(d, nans(size_t(T) * H)), probs(d, nans(b.prob_offsets.back()));
                     k::attention_forward(d, ctx.p(), probs.p(), in.p(), s.shape, drop);
                     return Outputs{{"ctx", ctx.get(), gpu_test::kFp32Sum, kRefSum},
                                    {"probs", probs.get(), gpu_test::kFp32, kRef}};
                   },
                   [=] {
                     auto r = want();
                     return std::vector<Doubles>{r.ctx, r.probs};
                   }});
  // backward from the CPU's probs (so only the backward differs between devices)
  Floats probs(b.prob_offsets.back()), ctx(size_t(T) * H);
  auto shape = b.shape(nh, hd);
  k::attention_forward(Device::CPU, ctx.data(), probs.data(), qkv.data(), shape, drop);
  cases.push_back({Op::attention_backward, "attention_backward_" + c.name + p_name(p), Precision::FP32, "",
                   [=](Device d) {
                     ShapeOn s(d, b, nh, hd);
                     On<float> in(d, qkv), g(d, dctx), pr(d, probs), dqkv(d, nans(qkv.size()));
                     k::attention_backward(d, dqkv.p(), g.p(), in.p(), pr.p(), s.shape, drop);
                     return Outputs{{"dqkv", dqkv.get(), gpu_test::kFp32Sum, kRefSum}};
                   },
                   [=] { return std::vector<Doubles>{want().dqkv}; }});
}

// The [CLS]-row forms: the full attention's first rows (their query, dctx zero elsewhere).
inline void add_first_query_attention(std::vector<OpCase>& cases, const AttentionCase& c, float p) {
  const int H = c.heads * c.head_dim, T = c.batch.rows(), B = c.batch.sequences(), nh = c.heads, hd = c.head_dim;
  const auto b = c.batch;
  const Floats q = randn(size_t(B) * H, 22), kv = randn(size_t(T) * 2 * H, 23), dctx = randn(size_t(B) * H, 24);
  const auto drop = k::Dropout::make(3, 1, 5, p);
  auto want = [=] {
    Floats qkv(size_t(T) * 3 * H, 0.f), full_dctx(size_t(T) * H, 0.f);
    for (int t = 0; t < T; ++t) std::copy_n(&kv[size_t(t) * 2 * H], 2 * H, &qkv[size_t(t) * 3 * H + H]);
    for (int s = 0; s < B; ++s) {
      std::copy_n(&q[size_t(s) * H], H, &qkv[size_t(b.offsets[s]) * 3 * H]);
      std::copy_n(&dctx[size_t(s) * H], H, &full_dctx[size_t(b.offsets[s]) * H]);
    }
    auto r = ref::attention(qkv, full_dctx, b.offsets, b.lengths, b.prob_offsets, nh, hd, drop);
    Doubles ctx(size_t(B) * H), probs(size_t(nh) * T), dq(size_t(B) * H), dkv(size_t(T) * 2 * H);
    for (int s = 0; s < B; ++s) {
      const int o = b.offsets[s], n = b.offsets[s + 1] - o;
      std::copy_n(&r.ctx[size_t(o) * H], H, &ctx[size_t(s) * H]);
      std::copy_n(&r.dqkv[size_t(o) * 3 * H], H, &dq[size_t(s) * H]);
      for (int h = 0; h < nh; ++h)
        std::copy_n(&r.probs[b.prob_offsets[s] + int64_t(h) * n * n], n, &probs[size_t(nh) * o + size_t(h) * n]);
    }
    for (int t = 0; t < T; ++t) std::copy_n(&r.dqkv[size_t(t) * 3 * H + H], 2 * H, &dkv[size_t(t) * 2 * H]);
    return std::vector<Doubles>{ctx, probs, dq, dkv};
  };
  for (bool keep_probs : {false, true}) {
    cases.push_back({Op::attention_first_query_forward,
                     "attention_first_query_forward_" + c.name + p_name(p) + (keep_probs ? "_probs" : ""),
                     Precision::FP32, "",
                     [=](Device d) {
                       ShapeOn s(d, b, nh, hd);
                       On<float> qd(d, q), kvd(d, kv), ctx(d, nans(size_t(B) * H)), probs(d, nans(size_t(nh) * T));
                       k::attention_first_query_forward(d, ctx.p(), keep_probs ? probs.p() : nullptr, qd.p(), kvd.p(),
                                                        s.shape, drop);
                       Outputs out{{"ctx", ctx.get(), gpu_test::kFp32Sum, kRefSum}};
                       if (keep_probs) out.push_back({"probs", probs.get(), gpu_test::kFp32, kRef});
                       return out;
                     },
                     [=] {
                       auto r = want();
                       return keep_probs ? std::vector<Doubles>{r[0], r[1]} : std::vector<Doubles>{r[0]};
                     }});
  }
  // backward from the CPU forward's probs
  Floats probs(size_t(nh) * T), ctx(size_t(B) * H);
  auto shape = b.shape(nh, hd);
  k::attention_first_query_forward(Device::CPU, ctx.data(), probs.data(), q.data(), kv.data(), shape, drop);
  cases.push_back({Op::attention_first_query_backward, "attention_first_query_backward_" + c.name + p_name(p),
                   Precision::FP32, "",
                   [=](Device d) {
                     ShapeOn s(d, b, nh, hd);
                     On<float> qd(d, q), kvd(d, kv), g(d, dctx), pr(d, probs), dq(d, nans(q.size())),
                         dkv(d, nans(kv.size()));
                     k::attention_first_query_backward(d, dq.p(), dkv.p(), g.p(), qd.p(), kvd.p(), pr.p(), s.shape,
                                                       drop);
                     return Outputs{{"dq", dq.get(), gpu_test::kFp32Sum, kRefSum},
                                    {"dkv", dkv.get(), gpu_test::kFp32Sum, kRefSum}};
                   },
                   [=] {
                     auto r = want();
                     return std::vector<Doubles>{r[2], r[3]};
                   }});
}

inline void add_attention(std::vector<OpCase>& cases) {
  for (const AttentionCase& c : attention_batches())
    for (float p : {0.f, 0.1f}) {
      add_full_attention(cases, c, p);
      add_first_query_attention(cases, c, p);
    }
}

// ---- loss ---------------------------------------------------------------------------------
// target_loss: MSE on scores (regression) and BCE-with-logits on 0/1 targets (multi-label),
// with and without the gradient, over sizes of one element to several blocks.
inline void add_target_loss(std::vector<OpCase>& cases) {
  for (k::TargetLoss kind : {k::TargetLoss::MSE, k::TargetLoss::BCEWithLogits})
    for (int n : {1, 5, 20, 3000}) {
      const bool mse = kind == k::TargetLoss::MSE;
      const Floats logits = randn(size_t(n), uint32_t(n + 7), 4.f);
      Floats targets = randn(size_t(n), uint32_t(n + 11), 3.f);
      if (!mse)
        for (float& t : targets) t = t > 0.f ? 1.f : 0.f;
      const std::string at = std::string(mse ? "_mse" : "_bce") + "_n" + std::to_string(n);
      cases.push_back({Op::target_loss, "target_loss" + at, Precision::FP32, "",
                       [=](Device d) {
                         On<float> z(d, logits), y(d, targets), dl(d, nans(logits.size()));
                         On<double> sum(d, {0.25});  // adds onto what is there
                         k::target_loss(d, kind, sum.p(), dl.p(), z.p(), y.p(), n);
                         On<double> sum_only(d, {0.0});
                         k::target_loss(d, kind, sum_only.p(), nullptr, z.p(), y.p(), n);
                         return Outputs{{"loss_sum", sum.get(), {1e-5, 0, 1e-8}, {1e-5, 0, 1e-8}},
                                        {"dlogits", dl.get(), gpu_test::kFp32, kRef},
                                        {"loss_without_gradient", sum_only.get(), {1e-5, 0, 1e-8}, {1e-5, 0, 1e-8}}};
                       },
                       [=] {
                         double total = 0;
                         Doubles dl(n);
                         for (int i = 0; i < n; ++i) {
                           const double x = logits[i], y = targets[i];
                           total += mse ? (x - y) * (x - y) : std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::fabs(x)));
                           dl[i] = (mse ? 2 * (x - y) : 1 / (1 + std::exp(-x)) - y) / n;
                         }
                         const double loss = double(float(total / n));
                         return std::vector<Doubles>{{0.25 + loss}, dl, {loss}};
                       }});
    }
}

// ---- loss ---------------------------------------------------------------------------------
inline void add_loss(std::vector<OpCase>& cases) {
  struct Shape {
    int N, C;
  };
  for (Shape s : {Shape{1, 2}, Shape{32, 2}, Shape{256, 3}, Shape{250, kVocabWidth}, Shape{5, 1}}) {
    const int N = s.N, C = s.C;
    const Floats logits = randn(size_t(N) * C, uint32_t(N + C), 4.f);
    Ints labels = gpu_test::random_ints(N, uint32_t(C), 0, C - 1);
    for (int i = 0; i < N; i += 3) labels[i] = -100;  // ignored rows (MLM), the first among them
    const std::string at = "_N" + std::to_string(N) + "_C" + std::to_string(C);
    const Tolerance probs_tol{5e-6, 0, 1e-12};  // z - max in float: ~|z - max| 2^-24 relative
    auto want = [=] { return ref::cross_entropy(logits, labels, N, C); };
    cases.push_back({Op::cross_entropy_forward, "cross_entropy_forward" + at, Precision::FP32, "",
                     [=](Device d) {
                       On<float> z(d, logits), probs(d, nans(logits.size()));
                       On<int32_t> y(d, labels);
                       int counted = -1;
                       const float loss = k::cross_entropy_forward(d, probs.p(), z.p(), y.p(), N, C, &counted);
                       return Outputs{{"probs", probs.get(), gpu_test::kFp32, probs_tol},
                                      {"loss", {loss}, {1e-5, 0, 1e-8}, {1e-5, 0, 1e-8}},
                                      {"counted", {double(counted)}, gpu_test::kExact, gpu_test::kExact}};
                     },
                     [=] {
                       auto r = want();
                       return std::vector<Doubles>{r.probs, {r.loss}, {double(r.counted)}};
                     }});
    // backward from the CPU's probs
    Floats probs(logits.size());
    int counted = 0;
    k::cross_entropy_forward(Device::CPU, probs.data(), logits.data(), labels.data(), N, C, &counted);
    cases.push_back({Op::cross_entropy_backward, "cross_entropy_backward" + at, Precision::FP32, "",
                     [=](Device d) {
                       On<float> pr(d, probs), dl(d, nans(probs.size()));
                       On<int32_t> y(d, labels);
                       k::cross_entropy_backward(d, dl.p(), pr.p(), y.p(), N, C, counted);
                       return Outputs{{"dlogits", dl.get(), gpu_test::kFp32, kRef}};
                     },
                     [=] {
                       Doubles dl = as_doubles(probs);
                       for (int i = 0; i < N; ++i)
                         for (int c = 0; c < C; ++c) {
                           double& e = dl[size_t(i) * C + c];
                           e = labels[i] == -100 ? 0.0 : (e - (c == labels[i])) / counted;
                         }
                       return std::vector<Doubles>{dl};
                     }});
    cases.push_back({Op::cross_entropy_loss_accumulate, "cross_entropy_loss_accumulate" + at, Precision::FP32, "",
                     [=](Device d) {
                       On<float> z(d, logits), pr(d, nans(logits.size()));
                       On<int32_t> y(d, labels);
                       On<double> sum(d, {0.25});  // adds onto what is there
                       k::cross_entropy_loss_accumulate(d, sum.p(), pr.p(), z.p(), y.p(), N, C, counted);
                       return Outputs{{"loss_sum", sum.get(), {1e-5, 0, 1e-8}, {1e-5, 0, 1e-8}},
                                      {"probs", pr.get(), gpu_test::kFp32, probs_tol}};
                     },
                     [=] {
                       auto r = want();
                       return std::vector<Doubles>{{0.25 + r.loss}, r.probs};
                     }});
  }
}

}  // namespace backend_ops
