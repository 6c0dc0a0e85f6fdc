#pragma once
// The backend test's cases: for every op of kernels/op_table.inc, shapes (sizes around
// warp and block edges, ragged packed batches, BERT-base widths), GEMM precisions and
// dropout on and off. Each case runs its op on a device and has a reference (backend_ops.h).
// The row, embedding, attention and loss cases: backend_ops_cases_rows.h; the optimizer's:
// backend_ops_cases_optimizer.h. Adding an op: its cases in the add_* function of its
// family (or a new one called from all_cases()); BackendOpsTable.EveryOpHasACase fails for
// an op without one.
#include <fnmatch.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include "backend_ops.h"
#include "backend_ops_cases_optimizer.h"
#include "backend_ops_cases_rows.h"

namespace backend_ops {

namespace ref = op_reference;

// ---- dropout ---------------------------------------------------------------------------
inline void add_dropout(std::vector<OpCase>& cases) {
  for (size_t n : sizes())
    for (float p : {0.f, 0.1f, 0.5f}) {
      auto x = [n] { return randn(n, uint32_t(n) + 3); };
      auto drop = k::Dropout::make(42, n, 7, p);
      auto want = [=] {
        Doubles y(n);
        const Floats in = x();
        for (size_t i = 0; i < n; ++i) y[i] = double(in[i]) * ref::drop_factor(drop, i);
        return y;
      };
      cases.push_back({Op::dropout_forward, case_name("dropout_forward_n" + std::to_string(n) + p_name(p)),
                       Precision::FP32, "",
                       [=](Device d) {
                         On<float> in(d, x()), y(d, nans(n));
                         k::dropout_forward(d, y.p(), in.p(), n, drop);
                         return Outputs{{"y", y.get(), gpu_test::kExact, kRef}};
                       },
                       [=] { return std::vector<Doubles>{want()}; }});
      if (n > 1000 * 1000) continue;
      cases.push_back({Op::dropout_backward, case_name("dropout_backward_in_place_n" + std::to_string(n) + p_name(p)),
                       Precision::FP32, "",
                       [=](Device d) {
                         On<float> dy(d, x());
                         k::dropout_backward(d, dy.p(), dy.p(), n, drop);
                         return Outputs{{"dx", dy.get(), gpu_test::kExact, kRef}};
                       },
                       [=] { return std::vector<Doubles>{want()}; }});
    }
  // rows gathered from a [*, width] tensor: the first rows of a packed batch's sequences
  for (int width : {33, 768})
    for (float p : {0.f, 0.1f})
      for (bool in_place : {false, true}) {
        const auto batch = gpu_test::random_packed_batch(uint32_t(width), 9, 40, 1);
        const Ints rows(batch.offsets.begin(), batch.offsets.end() - 1);
        const int n_rows = int(rows.size());
        const Floats x = randn(size_t(n_rows) * width, uint32_t(width) + 1);
        const auto drop = k::Dropout::make(3, 9, uint64_t(width), p);
        cases.push_back(
            {Op::dropout_rows,
             case_name("dropout_rows_w" + std::to_string(width) + p_name(p) + (in_place ? "_in_place" : "")),
             Precision::FP32, "",
             [=](Device d) {
               On<float> in(d, x), y(d, in_place ? x : nans(x.size()));
               On<int32_t> r(d, rows);
               k::dropout_rows(d, y.p(), in_place ? y.p() : in.p(), r.p(), n_rows, width, drop);
               return Outputs{{"y", y.get(), gpu_test::kExact, kRef}};
             },
             [=] {
               Doubles y(x.size());
               for (int r = 0; r < n_rows; ++r)
                 for (int j = 0; j < width; ++j)
                   y[size_t(r) * width + j] =
                       x[size_t(r) * width + j] * ref::drop_factor(drop, uint64_t(rows[r]) * width + j);
               return std::vector<Doubles>{y};
             }});
      }
}

// ---- GEMM, linear, int8 linear ------------------------------------------------------------
inline Tolerance gemm_tolerance(Precision p) {
  return p == Precision::BF16 ? kBf16 : p == Precision::TF32 ? kTf32 : gpu_test::kFp32Sum;
}
inline std::string precision_suffix(Precision p) { return std::string("_") + k::precision_name(p); }

inline void add_gemm(std::vector<OpCase>& cases) {
  struct Shape {
    int M, N, K;
  };
  for (Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16})
    for (Shape s : {Shape{1, 1, 1}, Shape{7, 13, 5}, Shape{33, 17, 64}, Shape{96, 200, 130}})
      for (int ta = 0; ta < 2; ++ta)
        for (int tb = 0; tb < 2; ++tb)
          for (float beta : {0.f, 0.5f}) {
            const int lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 1, ldc = s.N + 2;
            const Floats A = randn(size_t(ta ? s.K : s.M) * lda, 1), B = randn(size_t(tb ? s.N : s.K) * ldb, 2),
                         C0 = randn(size_t(s.M) * ldc, 3);
            const Tolerance to_ref{1e-5, 1e-5, 1e-5 * std::sqrt(double(s.K))};
            cases.push_back({Op::gemm,
                             case_name("gemm_" + std::to_string(s.M) + "x" + std::to_string(s.N) + "x" +
                                       std::to_string(s.K) + "_ta" + std::to_string(ta) + "_tb" + std::to_string(tb) +
                                       "_beta" + std::to_string(int(beta * 10)) + precision_suffix(prec)),
                             prec, "",
                             [=](Device d) {
                               On<float> a(d, A), b(d, B), c(d, C0);
                               k::gemm(d, ta, tb, s.M, s.N, s.K, 0.75f, a.p(), lda, b.p(), ldb, beta, c.p(), ldc);
                               return Outputs{{"C", c.get(), gemm_tolerance(prec), to_ref}};
                             },
                             [=] {
                               return std::vector<Doubles>{
                                   ref::gemm(ta, tb, s.M, s.N, s.K, 0.75, A, lda, B, ldb, beta, C0, ldc)};
                             }});
          }
}

// y = x W^T + b; dW += dy^T x; db += column sums of dy; dx = dy W (+= when accumulating).
struct LinearCase {
  int T, in, out;
  bool bias;
};
inline void add_linear_forward(std::vector<OpCase>& cases, LinearCase c, Precision prec) {
  const Floats x = randn(size_t(c.T) * c.in, 4), W = randn(size_t(c.out) * c.in, 5), b = randn(c.out, 6);
  const std::string at = std::to_string(c.T) + "x" + std::to_string(c.in) + "x" + std::to_string(c.out) +
                         (c.bias ? "" : "_no_bias") + precision_suffix(prec);
  cases.push_back({Op::linear_forward, case_name("linear_forward_" + at), prec, "",
                   [=](Device d) {
                     On<float> dx(d, x), dW(d, W), db(d, b), y(d, nans(size_t(c.T) * c.out));
                     k::linear_forward(d, y.p(), dx.p(), dW.p(), c.bias ? db.p() : nullptr, c.T, c.in, c.out);
                     return Outputs{{"y", y.get(), gemm_tolerance(prec), kRefSum}};
                   },
                   [=] {
                     Floats bias_rows(size_t(c.T) * c.out);
                     for (int t = 0; t < c.T; ++t)
                       for (int o = 0; o < c.out; ++o) bias_rows[size_t(t) * c.out + o] = c.bias ? b[o] : 0.f;
                     return std::vector<Doubles>{
                         ref::gemm(false, true, c.T, c.out, c.in, 1.0, x, c.in, W, c.in, 1.0, bias_rows, c.out)};
                   }});
}

inline void add_linear_backward(std::vector<OpCase>& cases, LinearCase c, Precision prec, bool accumulate_dx) {
  const Floats x = randn(size_t(c.T) * c.in, 4), W = randn(size_t(c.out) * c.in, 5), dy = randn(size_t(c.T) * c.out, 7);
  const Floats dx0 = randn(x.size(), 8), dW0 = randn(W.size(), 9), db0 = randn(c.out, 10);
  const std::string at = std::to_string(c.T) + "x" + std::to_string(c.in) + "x" + std::to_string(c.out) +
                         (c.bias ? "" : "_no_bias") + (accumulate_dx ? "_accumulate_dx" : "") + precision_suffix(prec);
  const Tolerance tol = gemm_tolerance(prec);
  cases.push_back({Op::linear_backward, case_name("linear_backward_" + at), prec, "",
                   [=](Device d) {
                     On<float> dx(d, accumulate_dx ? dx0 : nans(x.size())), dW(d, dW0), db(d, db0), in(d, x),
                         w(d, W), g(d, dy);
                     k::linear_backward(d, dx.p(), dW.p(), c.bias ? db.p() : nullptr, g.p(), in.p(), w.p(), c.T,
                                        c.in, c.out, accumulate_dx);
                     return Outputs{{"dx", dx.get(), tol, kRefSum},
                                    {"dW", dW.get(), tol, kRefSum},
                                    {"db", db.get(), gpu_test::kFp32Sum, kRefSum}};
                   },
                   [=] {
                     Doubles db(db0.begin(), db0.end());
                     for (int t = 0; c.bias && t < c.T; ++t)
                       for (int o = 0; o < c.out; ++o) db[o] += dy[size_t(t) * c.out + o];
                     return std::vector<Doubles>{
                         ref::gemm(false, false, c.T, c.in, c.out, 1.0, dy, c.out, W, c.in, accumulate_dx ? 1.0 : 0.0,
                                   dx0, c.in),
                         ref::gemm(true, false, c.out, c.in, c.T, 1.0, dy, c.out, x, c.in, 1.0, dW0, c.in), db};
                   }});
}

inline void add_linear_int8(std::vector<OpCase>& cases) {
  for (LinearCase c : {LinearCase{3, 50, 17, true}, LinearCase{37, 768, 40, false}, LinearCase{5, 7, 1, true}}) {
    const Floats x = randn(size_t(c.T) * c.in, 11), W = randn(size_t(c.out) * c.in, 12), b = randn(c.out, 13);
    const auto q = k::quantize_linear(W.data(), c.out, c.in);
    cases.push_back({Op::linear_int8_forward,
                     case_name("linear_int8_forward_" + std::to_string(c.T) + "x" + std::to_string(c.in) + "x" +
                               std::to_string(c.out) + (c.bias ? "" : "_no_bias")),
                     Precision::FP32, "",
                     [=](Device d) {
                       On<float> in(d, x), bias(d, b), y(d, nans(size_t(c.T) * c.out));
                       k::linear_int8_forward(d, y.p(), in.p(), q, c.bias ? bias.p() : nullptr, c.T);
                       return Outputs{{"y", y.get(), gpu_test::kExact, kRef}};
                     },
                     [=] { return std::vector<Doubles>{ref::linear_int8(x, q, c.bias ? &b : nullptr, c.T)}; }});
  }
}

inline void add_gemm_linear(std::vector<OpCase>& cases) {
  add_gemm(cases);
  for (Precision prec : {Precision::FP32, Precision::TF32, Precision::BF16})
    for (LinearCase c : {LinearCase{37, 48, 20, true}, LinearCase{1, 768, 768, true}, LinearCase{130, 100, 33, false}}) {
      add_linear_forward(cases, c, prec);
      for (bool accumulate_dx : {false, true}) add_linear_backward(cases, c, prec, accumulate_dx);
    }
  add_linear_int8(cases);
}

// ---- elementwise -------------------------------------------------------------------------
// An op of one input x (and dy) over n elements: y = f(x) or dx = dy * f'(x).
inline void add_unary(std::vector<OpCase>& cases, Op op, size_t n, Tolerance vs_cpu,
                      std::function<void(Device, float*, const float*, const float*, size_t)> call,
                      std::function<double(double x, double dy)> want) {
  auto x = [n] { return randn(n, uint32_t(n), 3.f); };
  auto dy = [n] { return randn(n, uint32_t(n) + 1); };
  cases.push_back({op, case_name(std::string(k::op_name(op)) + "_n" + std::to_string(n)), Precision::FP32, "",
                   [=](Device d) {
                     On<float> in(d, x()), g(d, dy()), out(d, nans(n));
                     call(d, out.p(), g.p(), in.p(), n);
                     return Outputs{{"out", out.get(), vs_cpu, kRef}};
                   },
                   [=] {
                     const Floats in = x(), g = dy();
                     Doubles y(n);
                     for (size_t i = 0; i < n; ++i) y[i] = want(in[i], g[i]);
                     return std::vector<Doubles>{y};
                   }});
}

inline void add_reductions(std::vector<OpCase>& cases, size_t n) {
  auto x = [n] { return randn(n, uint32_t(n) + 8); };
  auto y0 = [n] { return randn(n, uint32_t(n) + 9); };
  auto squares = [x] {
    double s = 0;
    for (float v : x()) s += double(v) * v;
    return s;
  };
  const std::string at = "_n" + std::to_string(n);
  const Tolerance sum_tol{1e-5, 0, 0};
  cases.push_back({Op::sum_squares, "sum_squares" + at, Precision::FP32, "",
                   [=](Device d) {
                     On<float> in(d, x());
                     return Outputs{{"sum", {k::sum_squares(d, in.p(), n)}, sum_tol, kRefSum}};
                   },
                   [=] { return std::vector<Doubles>{{squares()}}; }});
  cases.push_back({Op::sum_squares_accumulate, "sum_squares_accumulate" + at, Precision::FP32, "",
                   [=](Device d) {  // twice, onto what is there
                     On<float> in(d, x());
                     On<double> total(d, {1.5});
                     k::sum_squares_accumulate(d, total.p(), in.p(), n);
                     k::sum_squares_accumulate(d, total.p(), in.p(), n);
                     return Outputs{{"total", total.get(), sum_tol, kRefSum}};
                   },
                   [=] { return std::vector<Doubles>{{1.5 + 2 * squares()}}; }});
  cases.push_back({Op::scale, "scale" + at, Precision::FP32, "",
                   [=](Device d) {
                     On<float> in(d, x());
                     k::scale(d, in.p(), n, -0.37f);
                     return Outputs{{"x", in.get(), gpu_test::kExact, kRef}};
                   },
                   [=] {
                     Doubles v = as_doubles(x());
                     for (double& e : v) e *= double(-0.37f);
                     return std::vector<Doubles>{v};
                   }});
  cases.push_back({Op::add_loss_share, "add_loss_share" + at, Precision::FP32, "",
                   [=](Device d) {  // twice, onto what is there: the float-rounded share of the mean
                     On<double> total(d, {0.25}), loss(d, {double(float(squares() / n))});
                     k::add_loss_share(d, total.p(), loss.p(), 3, 7);
                     k::add_loss_share(d, total.p(), loss.p(), double(n), 2);
                     return Outputs{{"total", total.get(), gpu_test::kExact, kRef}};
                   },
                   [=] {
                     const double loss = double(float(squares() / n));
                     return std::vector<Doubles>{{0.25 + double(float(loss * 3 / 7)) + double(float(loss * n / 2))}};
                   }});
  cases.push_back({Op::add_scaled, "add_scaled" + at, Precision::FP32, "",
                   [=](Device d) {
                     On<float> in(d, x()), y(d, y0());
                     k::add_scaled(d, y.p(), in.p(), n, 2.5f);
                     return Outputs{{"y", y.get(), gpu_test::kFp32, kRef}};
                   },
                   [=] {
                     Doubles y = as_doubles(y0());
                     const Floats in = x();
                     for (size_t i = 0; i < n; ++i) y[i] += 2.5 * in[i];
                     return std::vector<Doubles>{y};
                   }});
}

inline void add_elementwise(std::vector<OpCase>& cases) {
  for (size_t n : sizes()) {
    add_unary(
        cases, Op::gelu_forward, n, gpu_test::kGelu,
        [](Device d, float* y, const float*, const float* x, size_t n) { k::gelu_forward(d, y, x, n); },
        [](double x, double) { return ref::gelu(x); });
    add_unary(
        cases, Op::gelu_backward, n, gpu_test::kGelu,
        [](Device d, float* dx, const float* dy, const float* x, size_t n) { k::gelu_backward(d, dx, dy, x, n); },
        [](double x, double dy) { return dy * ref::gelu_grad(x); });
    add_unary(
        cases, Op::tanh_forward, n, gpu_test::kFp32,
        [](Device d, float* y, const float*, const float* x, size_t n) { k::tanh_forward(d, y, x, n); },
        [](double x, double) { return std::tanh(x); });
    // backward works from the output y (here any values: the formula is what is tested)
    add_unary(
        cases, Op::tanh_backward, n, gpu_test::kFp32,
        [](Device d, float* dx, const float* dy, const float* y, size_t n) { k::tanh_backward(d, dx, dy, y, n); },
        [](double y, double dy) { return dy * (1 - y * y); });
    add_unary(
        cases, Op::relu_forward, n, gpu_test::kExact,
        [](Device d, float* y, const float*, const float* x, size_t n) { k::relu_forward(d, y, x, n); },
        [](double x, double) { return x > 0 ? x : 0.0; });
    add_unary(
        cases, Op::relu_backward, n, gpu_test::kExact,
        [](Device d, float* dx, const float* dy, const float* y, size_t n) { k::relu_backward(d, dx, dy, y, n); },
        [](double y, double dy) { return y > 0 ? dy : 0.0; });
    add_reductions(cases, n);
  }
}

// Every case of every op.
inline std::vector<OpCase> all_cases() {
  std::vector<OpCase> cases;
  add_dropout(cases);
  add_gemm_linear(cases);
  add_elementwise(cases);
  add_rows(cases);
  add_embeddings(cases);
  add_attention(cases);
  add_loss(cases);
  add_target_loss(cases);
  add_optimizer(cases);
  return cases;
}
// all_cases(), built once (a test lists them by index).
inline const std::vector<OpCase>& cases() {
  static const std::vector<OpCase> all = all_cases();
  return all;
}

// How many cases to register as tests of the parameterized suite `suite` (e.g.
// "Ops/BackendOps"): all of them, unless the --gtest_filter in force cannot select that
// suite. Building the cases makes their inputs and runs CPU ops (starting OpenMP's
// threads), so a process that runs other tests only (ctest runs each test in its own
// process; death tests re-run the binary for one test) must not build them.
inline size_t registered_case_count(const std::string& suite) {
  std::string filter = GTEST_FLAG_GET(filter);
  const size_t minus = filter.find('-');
  if (minus != std::string::npos) {
    // A negative pattern "Suite.*" that names this suite leaves none of its tests.
    const std::string negative = filter.substr(minus + 1);
    size_t b = 0;
    while (b <= negative.size()) {
      size_t e = negative.find(':', b);
      if (e == std::string::npos) e = negative.size();
      const std::string p = negative.substr(b, e - b);
      if (p.size() > 2 && p.compare(p.size() - 2, 2, ".*") == 0 &&
          ::fnmatch(p.substr(0, p.size() - 2).c_str(), suite.c_str(), 0) == 0)
        return 0;
      b = e + 1;
    }
    filter = filter.substr(0, minus);  // the positive patterns
  }
  if (filter.empty()) filter = "*";
  size_t begin = 0;
  while (begin <= filter.size()) {
    size_t end = filter.find(':', begin);
    if (end == std::string::npos) end = filter.size();
    std::string pattern = filter.substr(begin, end - begin);
    // The suite part of a pattern "Suite.test"; a pattern without a dot is matched against a
    // name in the suite.
    const size_t dot = pattern.find('.');
    const std::string against = dot == std::string::npos ? suite + ".x" : suite;
    if (dot != std::string::npos) pattern = pattern.substr(0, dot);
    if (!pattern.empty() && ::fnmatch(pattern.c_str(), against.c_str(), 0) == 0)
      return cases().size();
    begin = end + 1;
  }
  return 0;
}

}  // namespace backend_ops
