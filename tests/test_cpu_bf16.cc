// bf16 GEMMs on the CPU (--precision bf16 --device cpu, kernels/cpu/gemm_bf16_cpu.h): the
// rounding against the bits of bench/bf16_blas_shim.c, the GEMM against an fp32 GEMM of the
// rounded operands, the Hugging Face golden cases within the bounds CUDA's bf16 is held to,
// training and resume, and the refusal where the CPU or the build cannot. Tests that run bf16
// GEMMs report SKIPPED with the reason on a CPU without avx512_bf16 / AMX-BF16 or in a build
// without oneDNN.
#include <gtest/gtest.h>

#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "golden_bert.h"
#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_bf16_cpu.h"
#include "kernels/ops.h"
#include "train/options.h"
#include "train_fixture.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace bertune;
using kernels::Device;
using kernels::Precision;

#define REQUIRE_CPU_BF16()                                                 \
  do {                                                                     \
    const std::string why_ = kernels::cpu::bf16_unavailable();             \
    if (!why_.empty()) GTEST_SKIP() << why_;                               \
  } while (0)

namespace {

// bench/bf16_blas_shim.c's rounding, verbatim.
uint32_t shim_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
}
float from_bits(uint32_t b) {
  float x;
  std::memcpy(&x, &b, 4);
  return x;
}
bool is_nan_bits(uint32_t b) { return (b & 0x7FFFFFFFu) > 0x7F800000u; }

// Restores the CPU's GEMM precision when a test ends.
struct CpuPrecision {
  explicit CpuPrecision(Precision p) { kernels::set_precision(Device::CPU, p); }
  ~CpuPrecision() { kernels::set_precision(Device::CPU, Precision::FP32); }
};

// Sets an environment variable for a scope (the binary and the in-process checks read it).
struct ScopedEnv {
  std::string name;
  ScopedEnv(const char* n, const char* v) : name(n) { ::setenv(n, v, 1); }
  ~ScopedEnv() { ::unsetenv(name.c_str()); }
};

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

// Ties go to even, subnormals round (no flush to zero), overflow goes to inf, inf stays inf, and
// NaN stays NaN with its sign; every other pattern gives the shim's bits, through the scalar
// helper and the (AVX-512 when present) array loop, at every tail length.
TEST(CpuBf16Rounding, GivesTheShimsBitsIncludingTiesSubnormalsAndInf) {
  std::vector<uint32_t> bits = {
      0x00000000u, 0x80000000u,                            // zeros
      0x3F808000u, 0x3F818000u, 0xBF808000u, 0xBF818000u,  // ties: down to even, up to even
      0x3F807FFFu, 0x3F808001u,                            // just below / above a tie
      0x00000001u, 0x00007FFFu, 0x00008000u, 0x00018000u,  // subnormals, ties among them
      0x007FFFFFu, 0x807F8000u, 0x00800000u,               // largest subnormal (rounds to normal), smallest normal
      0x7F7FFFFFu, 0xFF7FFFFFu, 0x7F7F7FFFu,               // max finite: overflow to inf; just below
      0x7F800000u, 0xFF800000u,                            // inf
  };
  std::mt19937 rng(7);
  while (bits.size() < 100003) {  // not a multiple of 16: the vector loop's tail
    const uint32_t b = rng();
    if (!is_nan_bits(b)) bits.push_back(b);
  }
  std::vector<float> x(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) x[i] = from_bits(bits[i]);
  for (size_t n : {bits.size(), size_t(1), size_t(15), size_t(16), size_t(17), size_t(33)}) {
    std::vector<uint16_t> got(n, 0xDEAD);
    kernels::cpu::round_to_bf16(x.data(), got.data(), n);
    for (size_t i = 0; i < n; ++i) {
      const uint32_t want = shim_bits(x[i]) >> 16;
      ASSERT_EQ(got[i], want) << "array, n " << n << ", input 0x" << std::hex << bits[i];
      ASSERT_EQ(kernels::cpu::bf16_bits(x[i]), want) << "scalar, input 0x" << std::hex << bits[i];
    }
  }
  EXPECT_EQ(kernels::cpu::bf16_bits(from_bits(0x3F808000u)), 0x3F80);  // 1 + 2^-8: to even (1)
  EXPECT_EQ(kernels::cpu::bf16_bits(from_bits(0x3F818000u)), 0x3F82);
  EXPECT_EQ(kernels::cpu::bf16_bits(from_bits(0x00008000u)), 0x0000);  // subnormal tie, to even
  EXPECT_EQ(kernels::cpu::bf16_bits(from_bits(0x00018000u)), 0x0002);
  EXPECT_EQ(kernels::cpu::bf16_bits(from_bits(0x7F7FFFFFu)), 0x7F80);  // overflow to inf
  // NaN (where the shim's arithmetic would carry into the sign or exponent): NaN, sign kept.
  const std::vector<uint32_t> nans = {0x7FC00000u, 0x7F800001u, 0x7FFFFFFFu, 0xFFFFFFFFu, 0xFF800001u, 0x7FBFFFFFu};
  std::vector<float> xn(nans.size());
  for (size_t i = 0; i < nans.size(); ++i) xn[i] = from_bits(nans[i]);
  std::vector<uint16_t> got(nans.size());
  kernels::cpu::round_to_bf16(xn.data(), got.data(), nans.size());
  for (size_t i = 0; i < nans.size(); ++i) {
    EXPECT_TRUE(is_nan_bits(uint32_t(got[i]) << 16)) << std::hex << nans[i] << " -> " << got[i];
    EXPECT_EQ(got[i] >> 15, nans[i] >> 31) << "sign of 0x" << std::hex << nans[i];
    EXPECT_EQ(kernels::cpu::bf16_bits(xn[i]), got[i]);
  }
}

// C = alpha op(A) op(B) + beta C through the gemm op with the CPU in bf16 equals a double
// GEMM of the bf16-rounded operands within fp32 summation error, for every transpose pair,
// odd shapes, alpha and beta, and leading dimensions past the width (the columns past the
// width stay untouched). The bound is far below bf16's own error, so unrounded operands fail.
TEST(CpuBf16Gemm, EqualsAnFp32GemmOfTheRoundedOperands) {
  REQUIRE_CPU_BF16();
  CpuPrecision bf16(Precision::BF16);
  std::mt19937 rng(11);
  std::normal_distribution<float> normal;
  struct Shape { int M, N, K; };
  for (const Shape s : {Shape{1, 1, 1}, Shape{7, 13, 5}, Shape{33, 17, 65}, Shape{130, 67, 300}, Shape{64, 48, 128}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (const auto& [alpha, beta] : {std::pair{1.f, 0.f}, std::pair{0.5f, 1.f}, std::pair{1.f, -0.75f}}) {
          const int a_rows = ta ? s.K : s.M, a_cols = ta ? s.M : s.K;
          const int b_rows = tb ? s.N : s.K, b_cols = tb ? s.K : s.N;
          const int lda = a_cols + 3, ldb = b_cols + 1, ldc = s.N + 2;
          std::vector<float> A(size_t(a_rows) * lda), B(size_t(b_rows) * ldb), C(size_t(s.M) * ldc);
          for (float& v : A) v = normal(rng);
          for (float& v : B) v = normal(rng);
          for (float& v : C) v = normal(rng);
          const std::vector<float> C0 = C;
          kernels::gemm(Device::CPU, ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta, C.data(), ldc);
          auto rounded = [](float v) { return from_bits(uint32_t(kernels::cpu::bf16_bits(v)) << 16); };
          double worst_ratio = 0, unrounded_gap = 0;
          for (int i = 0; i < s.M; ++i)
            for (int j = 0; j < s.N; ++j) {
              double exact = 0, plain = 0, magnitude = 0;
              for (int k = 0; k < s.K; ++k) {
                const float a = ta ? A[size_t(k) * lda + i] : A[size_t(i) * lda + k];
                const float b = tb ? B[size_t(j) * ldb + k] : B[size_t(k) * ldb + j];
                exact += double(rounded(a)) * rounded(b);
                plain += double(a) * b;
                magnitude += std::fabs(double(rounded(a)) * rounded(b));
              }
              const double c0 = C0[size_t(i) * ldc + j];
              const double want = alpha * exact + beta * c0;
              // fp32 summation: K roundings of at most 2^-24 of the running magnitude, and the epilogue.
              const double bound = (s.K + 4) * std::ldexp(1.0, -24) * (std::fabs(alpha) * magnitude + std::fabs(beta * c0)) + 1e-30;
              worst_ratio = std::max(worst_ratio, std::fabs(C[size_t(i) * ldc + j] - want) / bound);
              unrounded_gap = std::max(unrounded_gap, std::fabs(alpha * (plain - exact)) / bound);
            }
          const std::string where = "M " + std::to_string(s.M) + " N " + std::to_string(s.N) + " K " +
                                    std::to_string(s.K) + " ta " + std::to_string(ta) + " tb " + std::to_string(tb) +
                                    " alpha " + std::to_string(alpha) + " beta " + std::to_string(beta);
          EXPECT_LE(worst_ratio, 1.0) << where;
          if (s.K >= 64) {
            EXPECT_GT(unrounded_gap, 1.0) << where << ": the bound would not tell fp32 operands apart";
          }
          for (int i = 0; i < s.M; ++i)
            for (int j = s.N; j < ldc; ++j)
              ASSERT_EQ(C[size_t(i) * ldc + j], C0[size_t(i) * ldc + j]) << where << ": wrote past the width";
        }
}

// linear_forward and linear_backward run their GEMMs in bf16 (the gemm op's result, bitwise);
// attention stays fp32 (the same bits in both precisions).
TEST(CpuBf16Gemm, LinearsFollowThePrecisionAttentionDoesNot) {
  REQUIRE_CPU_BF16();
  const int T = 9, in = 40, out = 24;
  std::mt19937 rng(3);
  std::normal_distribution<float> normal;
  std::vector<float> x(T * in), W(out * in), b(out), dy(T * out);
  for (auto* v : {&x, &W, &b, &dy})
    for (float& e : *v) e = normal(rng);
  auto forward = [&] {
    std::vector<float> y(T * out);
    kernels::linear_forward(Device::CPU, y.data(), x.data(), W.data(), b.data(), T, in, out);
    return y;
  };
  const std::vector<float> y32 = forward();
  std::vector<float> y16, want(T * out);
  {
    CpuPrecision bf16(Precision::BF16);
    y16 = forward();
    for (int t = 0; t < T; ++t) std::copy(b.begin(), b.end(), want.begin() + t * out);
    kernels::cpu::gemm_bf16(false, true, T, out, in, 1.f, x.data(), in, W.data(), in, 1.f, want.data(), out);
  }
  EXPECT_EQ(y16, want);
  EXPECT_NE(y16, y32);

  // Attention: one sequence of 6 tokens, 2 heads of 4.
  const int n = 6, heads = 2, d = 4, H = heads * d;
  std::vector<float> qkv(n * 3 * H);
  for (float& v : qkv) v = normal(rng);
  const std::vector<int32_t> offsets = {0, n}, lengths = {n};
  const std::vector<int64_t> prob_offsets = {0, int64_t(heads) * n * n};
  kernels::AttentionShape shape{offsets.data(), lengths.data(), 1, heads, d, prob_offsets.data(), n};
  auto attend = [&] {
    std::vector<float> ctx(n * H), probs(heads * n * n);
    kernels::attention_forward(Device::CPU, ctx.data(), probs.data(), qkv.data(), shape, kernels::Dropout{});
    return ctx;
  };
  const std::vector<float> ctx32 = attend();
  CpuPrecision bf16(Precision::BF16);
  EXPECT_EQ(attend(), ctx32);
}

// The Hugging Face golden cases (those tests/test_model.cc holds the fp32 CPU to) with the CPU
// in bf16, within the bounds CUDA's bf16 is held to (tests/test_gpu_golden.cc).
TEST(CpuBf16Golden, ClassificationCase) {
  REQUIRE_CPU_BF16();
  CpuPrecision bf16(Precision::BF16);
  golden_bert::expect_classification_case(Device::CPU, golden_bert::bf16_tolerance());
}

TEST(CpuBf16Golden, MaskedLMCase) {
  REQUIRE_CPU_BF16();
  CpuPrecision bf16(Precision::BF16);
  golden_bert::expect_masked_lm_case(Device::CPU, golden_bert::bf16_masked_lm_tolerance());
}

TEST(CpuBf16Golden, SentencePairAndRegression) {
  REQUIRE_CPU_BF16();
  CpuPrecision bf16(Precision::BF16);
  for (const char* name : {"bert_pair", "bert_regression"})
    golden_bert::expect_sequence_case(Device::CPU, golden_bert::family_inputs(name), golden_bert::bf16_tolerance());
}

// Where bf16 cannot run, the message names what is missing: the CPU flag, the build option, or
// both. A CPU without it is simulated (BERTUNE_TEST_CPU_WITHOUT_BF16); tf32 stays refused.
TEST(CpuBf16Refusal, NamesWhatIsMissing) {
  using kernels::cpu::bf16_unavailable_reason;
  EXPECT_EQ(bf16_unavailable_reason(true, true), "");
  EXPECT_NE(bf16_unavailable_reason(false, true).find("a CPU with avx512_bf16 or AMX-BF16"), std::string::npos);
  EXPECT_EQ(bf16_unavailable_reason(false, true).find("oneDNN"), std::string::npos);
  EXPECT_NE(bf16_unavailable_reason(true, false).find("-DBERTUNE_ONEDNN=ON"), std::string::npos);
  EXPECT_EQ(bf16_unavailable_reason(true, false).find("avx512_bf16"), std::string::npos);
  const std::string both = bf16_unavailable_reason(false, false);
  EXPECT_NE(both.find("avx512_bf16"), std::string::npos);
  EXPECT_NE(both.find("oneDNN"), std::string::npos);

  ScopedEnv without("BERTUNE_TEST_CPU_WITHOUT_BF16", "1");
  EXPECT_FALSE(kernels::cpu::cpu_has_bf16());
  const std::string why = kernels::precision_unavailable(Device::CPU, Precision::BF16);
  EXPECT_NE(why.find("a CPU with avx512_bf16 or AMX-BF16"), std::string::npos) << why;
  EXPECT_NE(error_of([] { kernels::set_precision(Device::CPU, Precision::BF16); }).find(why), std::string::npos);
  EXPECT_EQ(kernels::cpu::gemm_precision(), Precision::FP32);
  EXPECT_EQ(error_of([] { train::resolve_precision(Device::CPU, Precision::BF16); }),
            "--precision bf16: " + why + "; use --precision fp32 or drop it");
  EXPECT_NE(error_of([] { train::resolve_precision(Device::CPU, Precision::TF32); }).find("needs --device cuda"),
            std::string::npos);
  EXPECT_EQ(train::resolve_precision(Device::CPU, std::nullopt), Precision::FP32);
}

namespace {

// 200 training and 40 evaluation reviews, the tiny config.
struct Bf16Run : TinyNsmcDir {
  Bf16Run() : TinyNsmcDir("cpu_bf16_test", 200, 40) {}
  std::vector<std::string> args(const fs::path& out, const char* precision) const {
    return {"train", "--model-config", config.string(), "--train-file", train.string(), "--eval-file",
            eval.string(), "--max-length", "48", "--per-device-train-batch-size", "16", "--learning-rate", "1e-3",
            "--num-train-epochs", "1", "--logging-steps", "1", "--save-strategy", "steps", "--save-steps", "4",
            "--output-dir", out.string(),
            "--threads", "2", "--precision", precision};
  }
};

}  // namespace

// A short bf16 run: finite, close to the fp32 run's losses (not equal: the GEMMs differ), named
// in the banner and training_args.json; killed after step 6 and resumed, it ends with the
// uninterrupted run's weights, bit for bit.
TEST(CpuBf16Training, FiniteCloseToFp32AndResumesBitExact) {
  REQUIRE_CPU_BF16();
  Bf16Run fx;
  const fs::path full = fx.dir / "bf16", fp32 = fx.dir / "fp32", killed = fx.dir / "killed";
  ASSERT_EQ(run(fx.args(full, "bf16"), fx.dir / "bf16.txt"), 0) << slurp(fx.dir / "bf16.txt");
  ASSERT_EQ(run(fx.args(fp32, "fp32"), fx.dir / "fp32.txt"), 0) << slurp(fx.dir / "fp32.txt");
  EXPECT_NE(slurp(fx.dir / "bf16.txt").find("Compute = CPU, GEMMs in bf16"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(slurp(full / "training_args.json")).at("precision"), "bf16");
  const auto loss16 = metric_by_step(full / "log.jsonl", "loss"), loss32 = metric_by_step(fp32 / "log.jsonl", "loss");
  ASSERT_EQ(loss16.size(), 13u);  // 200 / 16 = 13 steps
  ASSERT_EQ(loss32.size(), loss16.size());
  double gap = 0;
  for (const auto& [step, l] : loss16) {
    ASSERT_TRUE(std::isfinite(l)) << "step " << step;
    gap = std::max(gap, std::fabs(l - loss32.at(step)));
  }
  EXPECT_GT(gap, 0.0) << "bf16 gave the fp32 losses: its GEMMs did not run in bf16";
  EXPECT_LT(gap, 0.02) << "bf16 losses far from fp32";

  ASSERT_TRUE(run_until_killed(fx.args(killed, "bf16"), "after-step:6", fx.dir / "k.txt")) << slurp(fx.dir / "k.txt");
  auto resume = fx.args(killed, "bf16");
  resume.insert(resume.end(), {"--resume-from-checkpoint", "last"});
  ASSERT_EQ(run(resume, fx.dir / "r.txt"), 0) << slurp(fx.dir / "r.txt");
  EXPECT_NE(slurp(fx.dir / "r.txt").find("Resuming from"), std::string::npos);
  EXPECT_EQ(metric_by_step(killed / "log.jsonl", "loss"), loss16);
  EXPECT_EQ(slurp(killed / "final" / "model.safetensors"), slurp(full / "final" / "model.safetensors"))
      << "resumed bf16 weights differ from the uninterrupted run's";

  // An int8 model ignores --precision: the same scores in bf16 as in fp32.
  auto predict = [&](const char* precision, const char* name) {
    const fs::path log = fx.dir / name;
    EXPECT_EQ(run({"predict", "--model", (full / "final").string(), "--int8", "--threads", "2", "--precision",
                   precision, "정말 재미있는 영화였다", "최악"},
                  log),
              0)
        << slurp(log);
    return slurp(log);
  };
  EXPECT_EQ(predict("bf16", "int8_bf16.txt"), predict("fp32", "int8_fp32.txt"));
}
