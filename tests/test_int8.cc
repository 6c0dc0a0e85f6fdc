// int8 linear layers against an fp64 reference, with an error bound derived from the
// quantization steps, on random and ragged shapes; every kernel the CPU has, and all of
// them must agree bitwise (the AVX2 tests are skipped on a CPU without AVX2).
#include <gtest/gtest.h>

#include <cmath>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "util/error.h"

using namespace bertune;
using kernels::Int8Kernel;

namespace {

std::vector<float> random_matrix(size_t n, std::mt19937& rng, float spread) {
  std::normal_distribution<float> d(0.f, spread);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

float row_scale(const float* x, int n) {
  float amax = 0;
  for (int k = 0; k < n; ++k) amax = std::max(amax, std::fabs(x[k]));
  return amax / 127.f;
}

// Restores the automatic kernel choice whatever a test forced.
struct KernelGuard {
  ~KernelGuard() { kernels::set_int8_kernel(Int8Kernel::Auto); }
};

struct Shape {
  int T, in, out;
};
const Shape kShapes[] = {{1, 1, 1},   {3, 7, 5},    {5, 32, 16},  {17, 33, 17}, {4, 256, 64},
                         {33, 257, 65}, {9, 64, 130}, {2, 768, 3}, {70, 128, 96}};

TEST(Int8, WeightQuantizationIsPerChannelSymmetricWithinHalfAStep) {
  std::mt19937 rng(1);
  const int out = 37, in = 53;
  auto W = random_matrix(size_t(out) * in, rng, 0.05f);
  for (int k = 0; k < in; ++k) W[5 * in + k] = 0;  // an all-zero channel
  auto q = kernels::quantize_linear(W.data(), out, in);
  ASSERT_EQ(q.scale.size(), size_t(out));
  for (int o = 0; o < out; ++o) {
    EXPECT_FLOAT_EQ(q.scale[o], row_scale(&W[size_t(o) * in], in)) << o;
    int max_q = 0;
    for (int k = 0; k < in; ++k) {
      const int v = q.q[size_t(o) * in + k];
      max_q = std::max(max_q, std::abs(v));
      EXPECT_LE(std::abs(q.scale[o] * v - W[size_t(o) * in + k]), q.scale[o] * 0.5f * 1.0001f + 1e-9f);
    }
    EXPECT_EQ(max_q, o == 5 ? 0 : 127) << o;  // the largest weight maps to +-127
  }
}

void check_against_reference(Int8Kernel kernel) {
  KernelGuard guard;
  kernels::set_int8_kernel(kernel);
  std::mt19937 rng(42);
  for (const Shape& s : kShapes)
    for (bool with_bias : {false, true}) {
      auto x = random_matrix(size_t(s.T) * s.in, rng, 1.f);
      auto W = random_matrix(size_t(s.out) * s.in, rng, 0.05f);
      auto b = random_matrix(s.out, rng, 0.1f);
      if (s.T > 2)
        for (int k = 0; k < s.in; ++k) x[size_t(1) * s.in + k] = 0;  // an all-zero row: y = b
      auto q = kernels::quantize_linear(W.data(), s.out, s.in);
      std::vector<float> y(size_t(s.T) * s.out, -1.f);
      kernels::linear_int8_forward(kernels::Device::CPU, y.data(), x.data(), q, with_bias ? b.data() : nullptr, s.T);
      for (int t = 0; t < s.T; ++t) {
        const float sx = row_scale(&x[size_t(t) * s.in], s.in);
        for (int o = 0; o < s.out; ++o) {
          const float sw = q.scale[o];
          double ref = with_bias ? b[o] : 0.0, bound = 0, magnitude = 0;
          for (int k = 0; k < s.in; ++k) {
            const double xv = x[size_t(t) * s.in + k], wv = W[size_t(o) * s.in + k];
            ref += xv * wv;
            // |x^ w^ - x w| <= |x| sw/2 + |w| sx/2 + sx sw/4 per product
            bound += std::fabs(xv) * sw / 2 + std::fabs(wv) * sx / 2 + double(sx) * sw / 4;
            magnitude += std::fabs(xv * wv);
          }
          bound += 1e-5 * (magnitude + std::fabs(ref)) + 1e-7;  // fp32 rounding of scales and dequantization
          const float got = y[size_t(t) * s.out + o];
          ASSERT_LE(std::fabs(got - ref), bound)
              << kernels::int8_kernel_name() << " T=" << s.T << " in=" << s.in << " out=" << s.out << " t=" << t
              << " o=" << o << " got " << got << " want " << ref;
          if (t == 1 && s.T > 2) {
            EXPECT_EQ(got, with_bias ? b[o] : 0.f);
          }
        }
      }
    }
}

TEST(Int8, PortableKernelMatchesFp32WithinTheQuantizationBound) { check_against_reference(Int8Kernel::Portable); }

TEST(Int8, VnniKernelMatchesFp32WithinTheQuantizationBound) {
  if (!kernels::cpu_has_avx512_vnni()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI: only the portable kernel runs";
  check_against_reference(Int8Kernel::Vnni);
}

TEST(Int8, Avx2KernelMatchesFp32WithinTheQuantizationBound) {
  if (!kernels::cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernel cannot run";
  check_against_reference(Int8Kernel::Avx2);
}

const char* best_kernel_name() {
  if (!kernels::onednn_int8_unavailable()) return "onednn";
  return kernels::cpu_has_avx512_vnni() ? "avx512-vnni" : kernels::cpu_has_avx2() ? "avx2" : "portable";
}

// y of `kernel` and of the portable kernel on the same shape: the same bits. Weights are
// quantized by each kernel's own quantizer, and must come out the same too.
void expect_portable_bits(Int8Kernel kernel, const char* name, const Shape& s, std::mt19937& rng, bool bias) {
  auto x = random_matrix(size_t(s.T) * s.in, rng, 2.f);
  auto W = random_matrix(size_t(s.out) * s.in, rng, 0.05f);
  auto b = random_matrix(s.out, rng, 0.1f);
  if (s.T > 2)
    for (int k = 0; k < s.in; ++k) x[size_t(2) * s.in + k] = 0;  // an all-zero row
  std::vector<float> a(size_t(s.T) * s.out, -1.f), v(a.size(), -2.f);
  kernels::set_int8_kernel(Int8Kernel::Portable);
  EXPECT_STREQ(kernels::int8_kernel_name(), "portable");
  auto qp = kernels::quantize_linear(W.data(), s.out, s.in);
  kernels::linear_int8_forward(kernels::Device::CPU, a.data(), x.data(), qp, bias ? b.data() : nullptr, s.T);
  kernels::set_int8_kernel(kernel);
  EXPECT_STREQ(kernels::int8_kernel_name(), name);
  auto q = kernels::quantize_linear(W.data(), s.out, s.in);
  ASSERT_EQ(q.q, qp.q) << name << " T=" << s.T << " in=" << s.in << " out=" << s.out;
  ASSERT_EQ(q.scale, qp.scale);
  kernels::linear_int8_forward(kernels::Device::CPU, v.data(), x.data(), q, bias ? b.data() : nullptr, s.T);
  ASSERT_EQ(a, v) << name << " T=" << s.T << " in=" << s.in << " out=" << s.out << " bias " << bias;
}

TEST(Int8, VnniKernelGivesThePortableBits) {
  if (!kernels::cpu_has_avx512_vnni()) GTEST_SKIP() << "this CPU has no AVX-512 VNNI: only the portable kernel runs";
  KernelGuard guard;
  std::mt19937 rng(7);
  for (const Shape& s : kShapes) expect_portable_bits(Int8Kernel::Vnni, "avx512-vnni", s, rng, true);
}

// Ragged shapes on purpose: T = 1..37 (row tiles of 4, tasks of 32 rows), in not a
// multiple of 4 or 16 (padding of k), out not a multiple of 8 or 16 (masked column
// tiles, several 64-column panels), with and without bias, serial and OpenMP-parallel.
TEST(Int8, Avx2KernelGivesThePortableBitsOnRaggedShapes) {
  if (!kernels::cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernel cannot run";
  KernelGuard guard;
  std::mt19937 rng(12);
  for (const Shape& s : kShapes) expect_portable_bits(Int8Kernel::Avx2, "avx2", s, rng, true);
  std::uniform_int_distribution<int> rows(1, 37), width(1, 300), cols(1, 150);
  for (int i = 0; i < 60; ++i) {
    const Shape s{i < 37 ? i + 1 : rows(rng), width(rng), cols(rng)};
    expect_portable_bits(Int8Kernel::Avx2, "avx2", s, rng, i % 2 == 0);
  }
  expect_portable_bits(Int8Kernel::Avx2, "avx2", {37, 771, 203}, rng, true);  // bigger: several tasks each way
}

// The oneDNN kernel: oneDNN's GEMM between our quantization and our epilogue gives the
// portable bits on ragged shapes (in / out not multiples of 4 or 16), T = 1, T across
// several 256-row chunks with a padded last one, zero rows, and extreme values (huge and
// tiny rows and weights, one large value in a row of small ones: q = +-127 next to zeros).
TEST(Int8, OnednnKernelGivesThePortableBits) {
  KernelGuard guard;
  if (const char* why = kernels::onednn_int8_unavailable()) {
    try {
      kernels::set_int8_kernel(Int8Kernel::Onednn);
      ADD_FAILURE() << "set_int8_kernel(Onednn) must be refused here: " << why;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(std::string("int8 kernel onednn: ") + why), std::string::npos) << e.what();
    }
    GTEST_SKIP() << "the onednn kernel cannot run here: " << why;
  }
  std::mt19937 rng(21);
  for (const Shape& s : kShapes) expect_portable_bits(Int8Kernel::Onednn, "onednn", s, rng, true);
  std::uniform_int_distribution<int> rows(1, 300), width(1, 300), cols(1, 150);
  for (int i = 0; i < 40; ++i) {
    const Shape s{i < 20 ? i + 1 : rows(rng), width(rng), cols(rng)};
    expect_portable_bits(Int8Kernel::Onednn, "onednn", s, rng, i % 2 == 0);
  }
  for (const Shape& s : {Shape{1, 768, 2304}, Shape{129, 768, 768}, Shape{300, 3072, 77}, Shape{257, 45, 3072}})
    expect_portable_bits(Int8Kernel::Onednn, "onednn", s, rng, true);

  const int T = 131, in = 203, out = 67;  // extreme values, same comparison
  auto x = random_matrix(size_t(T) * in, rng, 1.f);
  auto W = random_matrix(size_t(out) * in, rng, 0.05f);
  auto b = random_matrix(out, rng, 0.1f);
  for (int k = 0; k < in; ++k) {
    x[size_t(3) * in + k] *= 1e30f;                  // huge row
    x[size_t(4) * in + k] *= 1e-30f;                 // tiny row
    x[size_t(5) * in + k] = k == 7 ? -1e3f : 1e-4f;  // one value dominates: the rest quantize to 0
    x[size_t(6) * in + k] = 0.f;                     // zero row
    x[size_t(7) * in + k] = k % 2 ? 1.f : -1.f;      // every value +-127
    W[size_t(2) * in + k] *= 1e20f;
    W[size_t(3) * in + k] = 0.f;                     // zero weight row
    W[size_t(4) * in + k] = k % 3 ? -2.f : 2.f;
  }
  std::vector<float> a(size_t(T) * out), v(a.size());
  kernels::set_int8_kernel(Int8Kernel::Portable);
  auto qp = kernels::quantize_linear(W.data(), out, in);
  kernels::linear_int8_forward(kernels::Device::CPU, a.data(), x.data(), qp, b.data(), T);
  kernels::set_int8_kernel(Int8Kernel::Onednn);
  auto q = kernels::quantize_linear(W.data(), out, in);
  ASSERT_EQ(q.q, qp.q);
  kernels::linear_int8_forward(kernels::Device::CPU, v.data(), x.data(), q, b.data(), T);
  ASSERT_EQ(a, v);
  for (int o = 0; o < out; ++o) EXPECT_EQ(v[size_t(6) * out + o], b[o]);  // the zero row: y = b
  // A copy of a used weight, changed and repacked, runs on its own q (not the blocked copy
  // the source made on its first use).
  auto changed = q;
  for (auto& qv : changed.q) qv = static_cast<int8_t>(-qv);
  kernels::pack_quantized_linear(changed);
  kernels::linear_int8_forward(kernels::Device::CPU, v.data(), x.data(), changed, nullptr, T);
  kernels::linear_int8_forward(kernels::Device::CPU, a.data(), x.data(), q, nullptr, T);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(v[i], -a[i]) << i;
}

// The AVX2 quantizer rounds half to even like std::nearbyint, clamps to +-127 and takes
// amax over the vector lanes and the scalar tail alike. amax = 127 makes x * 127 / amax
// exact, so the x.5 values below are true ties.
TEST(Int8, Avx2QuantizationRoundsHalfToEvenLikeTheScalarOne) {
  if (!kernels::cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2: the AVX2 kernel cannot run";
  KernelGuard guard;
  const int in = 37;  // 4 vectors of 8 and a tail of 5
  std::vector<float> W(size_t(3) * in, 0.f);
  const float ties[] = {0.5f, 1.5f, 2.5f, -0.5f, -1.5f, -2.5f, 126.5f, -126.5f, 3.49999f, -0.f};
  for (int k = 0; k < in; ++k) W[k] = ties[k % 10];
  W[3] = 127.f;                                       // amax in the vector part (row 0)
  for (int k = 0; k < in; ++k) W[in + k] = ties[(k + 3) % 10];
  W[in + 35] = -127.f;                                // amax in the tail (row 1)
  for (int k = 0; k < in; ++k) W[2 * in + k] = 1e-3f * float(k - 18);  // small, mixed signs (row 2)
  kernels::set_int8_kernel(Int8Kernel::Portable);
  auto p = kernels::quantize_linear(W.data(), 3, in);
  kernels::set_int8_kernel(Int8Kernel::Avx2);
  auto v = kernels::quantize_linear(W.data(), 3, in);
  EXPECT_EQ(p.q, v.q);
  EXPECT_EQ(p.scale, v.scale);
  EXPECT_EQ(v.scale[0], 1.f);
  EXPECT_EQ(v.q[0], 0);    // 0.5 -> 0
  EXPECT_EQ(v.q[1], 2);    // 1.5 -> 2
  EXPECT_EQ(v.q[2], 2);    // 2.5 -> 2
  EXPECT_EQ(v.q[4], -2);   // -1.5 -> -2
  EXPECT_EQ(v.q[6], 126);  // 126.5 -> 126
  EXPECT_EQ(v.q[in + 33], 126);  // 126.5 in the tail
  EXPECT_EQ(v.q[in + 35], -127);
}

TEST(Int8, EnvironmentForcesThePortableKernelAndPackingRoundTrips) {
  KernelGuard guard;
  setenv("BERTUNE_INT8_KERNEL", "portable", 1);
  kernels::set_int8_kernel(Int8Kernel::Auto);
  EXPECT_STREQ(kernels::int8_kernel_name(), "portable");
  setenv("BERTUNE_INT8_KERNEL", "avx2", 1);
  kernels::set_int8_kernel(Int8Kernel::Auto);
  EXPECT_STREQ(kernels::int8_kernel_name(), kernels::cpu_has_avx2() ? "avx2" : best_kernel_name());
  setenv("BERTUNE_INT8_KERNEL", "onednn", 1);  // where it cannot run: the automatic choice
  kernels::set_int8_kernel(Int8Kernel::Auto);
  EXPECT_STREQ(kernels::int8_kernel_name(), kernels::onednn_int8_unavailable() ? best_kernel_name() : "onednn");
  setenv("BERTUNE_INT8_KERNEL", "no-such-kernel", 1);  // falls back to the automatic choice
  kernels::set_int8_kernel(Int8Kernel::Auto);
  EXPECT_STREQ(kernels::int8_kernel_name(), best_kernel_name());
  unsetenv("BERTUNE_INT8_KERNEL");
  kernels::set_int8_kernel(Int8Kernel::Auto);
  EXPECT_STREQ(kernels::int8_kernel_name(), best_kernel_name());
  if (!kernels::cpu_has_avx2()) {
    EXPECT_THROW(kernels::set_int8_kernel(Int8Kernel::Avx2), Error);
  }
  if (!kernels::cpu_has_avx512_vnni()) {
    EXPECT_THROW(kernels::set_int8_kernel(Int8Kernel::Vnni), Error);
  }

  // q and scale alone (what a checkpoint stores) rebuild the same packed weight.
  std::mt19937 rng(3);
  auto W = random_matrix(size_t(19) * 45, rng, 0.05f);
  auto q = kernels::quantize_linear(W.data(), 19, 45);
  kernels::QuantizedLinear loaded;
  loaded.out = 19;
  loaded.in = 45;
  loaded.q = q.q;
  loaded.scale = q.scale;
  kernels::pack_quantized_linear(loaded);
  EXPECT_EQ(loaded.packed, q.packed);
  EXPECT_EQ(loaded.compensation, q.compensation);
  loaded.scale.pop_back();
  EXPECT_THROW(kernels::pack_quantized_linear(loaded), Error);
}

}  // namespace

namespace {

// linear_forward on a bound weight runs the int8 kernel (same bits as calling it
// directly); unbound again once the binding is gone; a shape mismatch is an Error.
TEST(Int8, BindingRoutesLinearForwardToInt8WhileItLives) {
  std::mt19937 rng(11);
  const int T = 9, in = 40, out = 24;
  auto x = random_matrix(size_t(T) * in, rng, 1.f);
  auto W = random_matrix(size_t(out) * in, rng, 0.05f);
  auto b = random_matrix(out, rng, 0.1f);
  auto q = kernels::quantize_linear(W.data(), out, in);
  std::vector<float> fp32(size_t(T) * out), int8(fp32.size()), bound(fp32.size()), after(fp32.size());
  kernels::linear_forward(kernels::Device::CPU, fp32.data(), x.data(), W.data(), b.data(), T, in, out);
  kernels::linear_int8_forward(kernels::Device::CPU, int8.data(), x.data(), q, b.data(), T);
  ASSERT_NE(fp32, int8);
  EXPECT_EQ(kernels::bound_int8_weight(W.data()), nullptr);
  {
    kernels::Int8Binding binding;
    binding.bind(W.data(), q);
    EXPECT_EQ(binding.size(), 1u);
    EXPECT_THROW(binding.bind(W.data(), q), Error);
    kernels::linear_forward(kernels::Device::CPU, bound.data(), x.data(), W.data(), b.data(), T, in, out);
    EXPECT_EQ(bound, int8);
    EXPECT_THROW(kernels::linear_forward(kernels::Device::CPU, bound.data(), x.data(), W.data(), b.data(), T, in / 2,
                                         out),
                 Error);
  }
  EXPECT_EQ(kernels::bound_int8_weight(W.data()), nullptr);
  kernels::linear_forward(kernels::Device::CPU, after.data(), x.data(), W.data(), b.data(), T, in, out);
  EXPECT_EQ(after, fp32);
}

}  // namespace
