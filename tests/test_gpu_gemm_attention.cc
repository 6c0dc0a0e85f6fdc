// The CUDA GEMM and attention bodies (kernels/gpu/gemm_gpu.cu,
// attention_gpu.cu) against their CPU bodies on random shapes: ragged packed
// batches, padded spans, dropout, head sizes that do not fill a tile, and the
// three GEMM precisions. ctest label `gpu`; without CUDA in the build, or
// without a usable GPU, each test reports itself skipped with the reason.
//
// Tolerances, as ||gpu - cpu|| / ||cpu|| over the whole output:
//   fp32 (GEMM and attention): 1e-5 (summation order only; tf32 would be ~5e-4)
//   tf32 GEMM:                 3e-3 against the fp32 reference
//   bf16 GEMM:                 1e-2 against the fp32 reference, and 1e-5 against
//                              the fp32 reference on bf16-rounded operands (so the
//                              only rounding is the operands': fp32 accumulation)
#include <gtest/gtest.h>

#ifdef BERTUNE_CUDA

#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/gpu/attention_gpu.h"
#include "kernels/gpu/gemm_gpu.h"
#include "kernels/gpu/runtime.h"
#include "kernels/ops.h"
#include "util/error.h"

namespace {

namespace k = bertune::kernels;
namespace gpu = bertune::kernels::gpu;
using Precision = gpu::Precision;

#define REQUIRE_GPU()                                                  \
  do {                                                                 \
    std::string why;                                                   \
    if (!gpu::available(&why)) GTEST_SKIP() << "no usable GPU: " << why; \
  } while (0)

// Device copy of a host vector, freed on scope exit.
template <typename T>
class DeviceArray {
 public:
  explicit DeviceArray(const std::vector<T>& host) : n_(host.size()) {
    ptr_ = static_cast<T*>(gpu::malloc_bytes(std::max<size_t>(1, n_) * sizeof(T)));
    if (n_) gpu::copy_to_device(ptr_, host.data(), n_ * sizeof(T));
  }
  ~DeviceArray() { gpu::free_bytes(ptr_); }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  T* get() { return ptr_; }
  std::vector<T> download() const {
    std::vector<T> host(n_);
    if (n_) gpu::copy_to_host(host.data(), ptr_, n_ * sizeof(T));
    return host;
  }

 private:
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// A fresh seed per run (printed on failure): the GPU must compute the same
// function on any valid input, not on one lucky draw.
uint32_t fresh_seed() {
  static std::random_device device;
  return device();
}

std::vector<float> uniform(size_t n, std::mt19937& rng, float scale = 1.f) {
  std::uniform_real_distribution<float> dist(-scale, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

const float kPoison = std::numeric_limits<float>::quiet_NaN();

// ||a - b|| / ||b||; any non-finite a (an element never written) fails.
double rel_error(const std::vector<float>& a, const std::vector<float>& b) {
  EXPECT_EQ(a.size(), b.size());
  double diff = 0, norm = 0;
  for (size_t i = 0; i < a.size() && i < b.size(); ++i) {
    if (!std::isfinite(a[i])) return std::numeric_limits<double>::infinity();
    diff += (double(a[i]) - b[i]) * (double(a[i]) - b[i]);
    norm += double(b[i]) * b[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);
}

// Round to the nearest bf16, ties to even (what __float2bfloat16_rn does).
float round_bf16(float x) {
  uint32_t u = std::bit_cast<uint32_t>(x);
  u += 0x7fffu + ((u >> 16) & 1u);
  return std::bit_cast<float>(u & 0xffff0000u);
}
std::vector<float> round_bf16(std::vector<float> v) {
  for (auto& x : v) x = round_bf16(x);
  return v;
}

// Restores FP32 when a test ends, whatever it set.
struct PrecisionScope {
  explicit PrecisionScope(Precision p) { gpu::set_precision(p); }
  ~PrecisionScope() { gpu::set_precision(Precision::FP32); }
};

double gemm_tolerance(Precision p) {
  switch (p) {
    case Precision::FP32: return 1e-5;
    case Precision::TF32: return 3e-3;
    case Precision::BF16: return 1e-2;
  }
  return 0;
}

// ---- GEMM ------------------------------------------------------------------------

struct GemmCase {
  bool ta, tb;
  int M, N, K, lda, ldb, ldc;
  float alpha, beta;
};

GemmCase random_gemm_case(std::mt19937& rng, bool ta, bool tb) {
  std::uniform_int_distribution<int> size(1, 300), pad(0, 5);
  GemmCase c{ta, tb, size(rng), size(rng), size(rng), 0, 0, 0, 0.f, 0.f};
  c.lda = (ta ? c.M : c.K) + pad(rng);
  c.ldb = (tb ? c.K : c.N) + pad(rng);
  c.ldc = c.N + pad(rng);
  c.alpha = std::uniform_real_distribution<float>(0.5f, 2.f)(rng);
  c.beta = std::uniform_int_distribution<int>(0, 1)(rng) ? 0.f : 0.75f;
  return c;
}

// Runs one case on both devices; returns {error vs fp32 reference, error vs the
// reference on bf16-rounded operands}. Columns of C past N must stay untouched.
std::pair<double, double> run_gemm_case(const GemmCase& c, std::mt19937& rng) {
  auto A = uniform(size_t(c.ta ? c.K : c.M) * c.lda, rng);
  auto B = uniform(size_t(c.tb ? c.N : c.K) * c.ldb, rng);
  auto C0 = uniform(size_t(c.M) * c.ldc, rng);
  std::vector<float> ref = C0, ref_bf16 = C0;
  k::cpu::gemm_builtin(c.ta, c.tb, c.M, c.N, c.K, c.alpha, A.data(), c.lda, B.data(), c.ldb, c.beta,
                       ref.data(), c.ldc);
  auto Ar = round_bf16(A), Br = round_bf16(B);
  k::cpu::gemm_builtin(c.ta, c.tb, c.M, c.N, c.K, c.alpha, Ar.data(), c.lda, Br.data(), c.ldb,
                       c.beta, ref_bf16.data(), c.ldc);
  DeviceArray<float> dA(A), dB(B), dC(C0);
  gpu::gemm(c.ta, c.tb, c.M, c.N, c.K, c.alpha, dA.get(), c.lda, dB.get(), c.ldb, c.beta, dC.get(),
            c.ldc);
  auto out = dC.download();
  for (int i = 0; i < c.M; ++i)
    for (int j = c.N; j < c.ldc; ++j)
      EXPECT_EQ(out[size_t(i) * c.ldc + j], C0[size_t(i) * c.ldc + j]) << "wrote past N at " << i;
  return {rel_error(out, ref), rel_error(out, ref_bf16)};
}

class GpuGemm : public ::testing::TestWithParam<Precision> {};

TEST_P(GpuGemm, AllTransposesRandomShapesAgainstCpu) {
  REQUIRE_GPU();
  const Precision p = GetParam();
  PrecisionScope scope(p);
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + ", " + gpu::precision_name(p));
  std::mt19937 rng(seed);
  for (bool ta : {false, true})
    for (bool tb : {false, true})
      for (int rep = 0; rep < 4; ++rep) {
        GemmCase c = random_gemm_case(rng, ta, tb);
        SCOPED_TRACE(testing::Message() << "ta " << ta << " tb " << tb << " M " << c.M << " N "
                                        << c.N << " K " << c.K << " lda " << c.lda << " ldb "
                                        << c.ldb << " ldc " << c.ldc << " beta " << c.beta);
        auto [error, error_vs_rounded] = run_gemm_case(c, rng);
        EXPECT_LE(error, gemm_tolerance(p));
        if (p == Precision::BF16) {
          EXPECT_LE(error_vs_rounded, 1e-5);
        }
      }
}

TEST_P(GpuGemm, EmptyProductScalesC) {
  REQUIRE_GPU();
  PrecisionScope scope(GetParam());
  std::mt19937 rng(fresh_seed());
  for (float beta : {0.f, 0.5f}) {
    auto C0 = uniform(6 * 9, rng);
    C0[3] = kPoison;  // beta = 0 must overwrite even NaN, as BLAS does
    DeviceArray<float> dC(C0), dummy(std::vector<float>(1, 1.f));
    gpu::gemm(false, false, 6, 7, 0, 1.f, dummy.get(), 1, dummy.get(), 7, beta, dC.get(), 9);
    auto out = dC.download();
    for (int i = 0; i < 6; ++i)
      for (int j = 0; j < 9; ++j) {
        const size_t e = size_t(i) * 9 + j;
        if (j >= 7) {
          EXPECT_EQ(std::bit_cast<uint32_t>(out[e]), std::bit_cast<uint32_t>(C0[e]));
        } else if (beta == 0.f) {
          EXPECT_EQ(out[e], 0.f);
        } else if (e != 3) {
          EXPECT_FLOAT_EQ(out[e], 0.5f * C0[e]);
        }
      }
  }
}

TEST_P(GpuGemm, LinearForwardAndBackwardAgainstCpu) {
  REQUIRE_GPU();
  const Precision p = GetParam();
  PrecisionScope scope(p);
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed) + ", " + gpu::precision_name(p));
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> size(1, 400);
  const double tol = gemm_tolerance(p);
  for (int rep = 0; rep < 6; ++rep) {
    // rep 0..1 exercise T > 128 rows x several chunks of the bias-gradient reduction
    const int T = rep < 2 ? 700 + size(rng) : size(rng), in = size(rng), out = size(rng);
    const bool bias = rep % 3 != 2, misaligned_bias = rep % 3 == 1, accumulate_dx = rep % 2 == 1;
    SCOPED_TRACE(testing::Message() << "T " << T << " in " << in << " out " << out << " bias "
                                    << bias << " misaligned " << misaligned_bias);
    auto x = uniform(size_t(T) * in, rng), W = uniform(size_t(out) * in, rng, 0.1f);
    auto b_store = uniform(out + 1, rng);  // the bias at offset 1 is only 4-byte aligned
    const int b_at = misaligned_bias ? 1 : 0;
    std::vector<float> y_ref(size_t(T) * out);
    k::cpu::linear_forward(y_ref.data(), x.data(), W.data(), bias ? b_store.data() + b_at : nullptr,
                           T, in, out);
    DeviceArray<float> dx_in(x), dW(W), db(b_store), dy_out(std::vector<float>(y_ref.size(), kPoison));
    gpu::linear_forward(dy_out.get(), dx_in.get(), dW.get(), bias ? db.get() + b_at : nullptr, T,
                        in, out);
    EXPECT_LE(rel_error(dy_out.download(), y_ref), tol) << "forward";

    auto dy = uniform(size_t(T) * out, rng), dW0 = uniform(W.size(), rng), db0 = uniform(out, rng);
    auto dx0 = uniform(x.size(), rng);
    std::vector<float> dx_ref = dx0, dW_ref = dW0, db_ref = db0;
    k::cpu::linear_backward(dx_ref.data(), dW_ref.data(), db_ref.data(), dy.data(), x.data(),
                            W.data(), T, in, out, accumulate_dx);
    DeviceArray<float> g_dy(dy), g_dx(accumulate_dx ? dx0 : std::vector<float>(dx0.size(), kPoison));
    DeviceArray<float> g_dW(dW0), g_db(db0);
    gpu::linear_backward(g_dx.get(), g_dW.get(), g_db.get(), g_dy.get(), dx_in.get(), dW.get(), T,
                         in, out, accumulate_dx);
    EXPECT_LE(rel_error(g_dx.download(), dx_ref), tol) << "dx";
    EXPECT_LE(rel_error(g_dW.download(), dW_ref), tol) << "dW (accumulated)";
    // db is an fp32 reduction in every precision
    EXPECT_LE(rel_error(g_db.download(), db_ref), 1e-5) << "db (accumulated)";
  }
}

TEST_P(GpuGemm, LinearBackwardSkipsNullGradients) {
  REQUIRE_GPU();
  PrecisionScope scope(GetParam());
  std::mt19937 rng(fresh_seed());
  const int T = 37, in = 19, out = 23;
  auto x = uniform(size_t(T) * in, rng), W = uniform(size_t(out) * in, rng);
  auto dy = uniform(size_t(T) * out, rng), dW0 = uniform(W.size(), rng);
  std::vector<float> dW_ref = dW0;
  k::cpu::linear_backward(nullptr, dW_ref.data(), nullptr, dy.data(), x.data(), W.data(), T, in, out,
                          false);
  DeviceArray<float> gx(x), gW(W), gdy(dy), gdW(dW0);
  gpu::linear_backward(nullptr, gdW.get(), nullptr, gdy.get(), gx.get(), gW.get(), T, in, out, false);
  EXPECT_LE(rel_error(gdW.download(), dW_ref), gemm_tolerance(GetParam()));
}

INSTANTIATE_TEST_SUITE_P(Precisions, GpuGemm,
                         ::testing::Values(Precision::FP32, Precision::TF32, Precision::BF16),
                         [](const auto& info) { return std::string(gpu::precision_name(info.param)); });

// ---- attention ------------------------------------------------------------------

// A packed batch: spans, real lengths (== span unless padded), offsets.
struct Batch {
  int num_heads = 0, head_dim = 0;
  std::vector<int32_t> offsets{0}, lengths;
  std::vector<int64_t> prob_offsets{0};
  int max_length = 0;
  int tokens() const { return offsets.back(); }
  int H() const { return num_heads * head_dim; }
};

Batch random_batch(std::mt19937& rng, int num_heads, int head_dim, int sequences, int longest,
                   bool padded) {
  Batch b;
  b.num_heads = num_heads;
  b.head_dim = head_dim;
  std::uniform_int_distribution<int> span_of(1, longest);
  for (int s = 0; s < sequences; ++s) {
    const int span = s == 0 ? longest : span_of(rng);  // one of the longest, to fill the grid
    const int length = padded ? std::uniform_int_distribution<int>(1, span)(rng) : span;
    b.offsets.push_back(b.offsets.back() + span);
    b.lengths.push_back(length);
    b.prob_offsets.push_back(b.prob_offsets.back() + int64_t(num_heads) * span * span);
    b.max_length = std::max(b.max_length, span);
  }
  return b;
}

struct AttentionResult {
  std::vector<float> ctx, probs, dqkv;
};

AttentionResult attention_cpu(const Batch& b, const std::vector<float>& qkv,
                              const std::vector<float>& dctx, const k::Dropout& drop) {
  k::AttentionShape shape{b.offsets.data(), b.lengths.data(), int(b.lengths.size()), b.num_heads,
                          b.head_dim, b.prob_offsets.data(), b.max_length};
  AttentionResult r{std::vector<float>(size_t(b.tokens()) * b.H()),
                    std::vector<float>(b.prob_offsets.back()), std::vector<float>(qkv.size())};
  k::cpu::attention_forward(r.ctx.data(), r.probs.data(), qkv.data(), shape, drop);
  k::cpu::attention_backward(r.dqkv.data(), dctx.data(), qkv.data(), r.probs.data(), shape, drop);
  return r;
}

// The GPU run, outputs poisoned first so that an element never written fails.
AttentionResult attention_gpu(const Batch& b, const std::vector<float>& qkv,
                              const std::vector<float>& dctx, const k::Dropout& drop,
                              int max_length_slack = 0) {
  DeviceArray<int32_t> offsets(b.offsets), lengths(b.lengths);
  DeviceArray<int64_t> prob_offsets(b.prob_offsets);
  k::AttentionShape shape{offsets.get(), lengths.get(), int(b.lengths.size()), b.num_heads,
                          b.head_dim, prob_offsets.get(), b.max_length + max_length_slack};
  DeviceArray<float> g_qkv(qkv), g_dctx(dctx);
  DeviceArray<float> ctx(std::vector<float>(size_t(b.tokens()) * b.H(), kPoison));
  DeviceArray<float> probs(std::vector<float>(b.prob_offsets.back(), kPoison));
  DeviceArray<float> dqkv(std::vector<float>(qkv.size(), kPoison));
  gpu::attention_forward(ctx.get(), probs.get(), g_qkv.get(), shape, drop);
  gpu::attention_backward(dqkv.get(), g_dctx.get(), g_qkv.get(), probs.get(), shape, drop);
  gpu::synchronize();
  return {ctx.download(), probs.download(), dqkv.download()};
}

void expect_attention_matches(const Batch& b, float p, std::mt19937& rng, int slack = 0) {
  auto qkv = uniform(size_t(b.tokens()) * 3 * b.H(), rng, 1.5f);
  auto dctx = uniform(size_t(b.tokens()) * b.H(), rng);
  const auto drop = k::Dropout::make(rng(), 7, 3, p);
  const AttentionResult want = attention_cpu(b, qkv, dctx, drop);
  const AttentionResult got = attention_gpu(b, qkv, dctx, drop, slack);
  EXPECT_LE(rel_error(got.probs, want.probs), 1e-5) << "probs";
  EXPECT_LE(rel_error(got.ctx, want.ctx), 1e-5) << "ctx";
  EXPECT_LE(rel_error(got.dqkv, want.dqkv), 1e-5) << "dqkv";
}

struct AttentionCase {
  const char* name;
  int heads, head_dim, sequences, longest;
};

class GpuAttention : public ::testing::TestWithParam<AttentionCase> {};

// Ragged packed spans crossing the 32-row tiles, with and without dropout, in
// packed and in padded mode (pad keys masked with finfo(float32).min).
TEST_P(GpuAttention, MatchesCpuPackedPaddedAndWithDropout) {
  REQUIRE_GPU();
  const AttentionCase c = GetParam();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  for (bool padded : {false, true})
    for (float p : {0.f, 0.1f}) {
      SCOPED_TRACE(testing::Message() << "padded " << padded << " dropout " << p);
      expect_attention_matches(random_batch(rng, c.heads, c.head_dim, c.sequences, c.longest, padded),
                               p, rng);
    }
}

INSTANTIATE_TEST_SUITE_P(
    Shapes, GpuAttention,
    ::testing::Values(AttentionCase{"bert_base_heads", 12, 64, 9, 77},
                      AttentionCase{"short_reviews", 4, 64, 32, 30},
                      AttentionCase{"head_dim_32", 3, 32, 5, 64},
                      AttentionCase{"head_dim_16", 2, 16, 6, 33},
                      AttentionCase{"head_dim_48", 2, 48, 5, 40},
                      AttentionCase{"head_dim_128", 2, 128, 4, 100},
                      AttentionCase{"single_token", 1, 8, 3, 1}),
    [](const auto& info) { return std::string(info.param.name); });

// A launch shape larger than the longest span (blocks past every span exit),
// and the precision setting, which attention ignores: it stays fp32.
TEST(GpuAttentionShape, SlackInMaxLengthAndBf16SettingChangeNothing) {
  REQUIRE_GPU();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE("seed " + std::to_string(seed));
  std::mt19937 rng(seed);
  PrecisionScope scope(Precision::BF16);
  expect_attention_matches(random_batch(rng, 4, 64, 7, 45, true), 0.1f, rng, /*slack=*/70);
}

// The GPU masks are the CPU masks: with dropout the GPU matches the CPU run
// with the same Dropout (checked above) and differs from the run without.
TEST(GpuAttentionShape, DropoutChangesTheResult) {
  REQUIRE_GPU();
  std::mt19937 rng(fresh_seed());
  Batch b = random_batch(rng, 2, 32, 4, 40, false);
  auto qkv = uniform(size_t(b.tokens()) * 3 * b.H(), rng), dctx = uniform(size_t(b.tokens()) * b.H(), rng);
  auto with = attention_gpu(b, qkv, dctx, k::Dropout::make(5, 1, 2, 0.3f));
  auto without = attention_gpu(b, qkv, dctx, k::Dropout::make(5, 1, 2, 0.f));
  EXPECT_LE(rel_error(with.probs, without.probs), 1e-7) << "probs are taken before dropout";
  EXPECT_GT(rel_error(with.ctx, without.ctx), 1e-2);
}

// Shape errors need no GPU: they are thrown before anything is launched.
TEST(GpuAttentionShape, RejectsMissingMaxLengthAndWideHeads) {
  std::vector<int32_t> offsets{0, 4}, lengths{4};
  std::vector<int64_t> prob_offsets{0, 16};
  k::AttentionShape shape{offsets.data(), lengths.data(), 1, 1, 8, prob_offsets.data(), 0};
  float dummy = 0;
  EXPECT_THROW(gpu::attention_forward(&dummy, &dummy, &dummy, shape, k::Dropout{}), bertune::Error);
  EXPECT_THROW(gpu::attention_backward(&dummy, &dummy, &dummy, &dummy, shape, k::Dropout{}),
               bertune::Error);
  shape.max_length = 4;
  shape.head_dim = 129;
  EXPECT_THROW(gpu::attention_forward(&dummy, &dummy, &dummy, shape, k::Dropout{}), bertune::Error);
}

}  // namespace

#else  // !BERTUNE_CUDA

TEST(GpuGemmAttention, BuiltWithoutCuda) {
  GTEST_SKIP() << "built without CUDA (BERTUNE_CUDA undefined): the GPU GEMM and attention bodies "
                  "are not compiled";
}

#endif
