// The hand-written kernels beside the cuBLASLt calls
// (src/kernels/gpu/gemm_kernels.cuh: bf16 operand conversion, C = beta C, bias
// broadcast, the bias-gradient reduction) run on the CPU over
// tests/cuda_emulation.h. A logic check on any machine; cuBLASLt itself and
// the compiled kernels are checked on a GPU by tests/test_gpu_gemm_attention.cc.
#include "cuda_emulation.h"
// (the emulation must come first)
#include "kernels/gpu/gemm_kernels.cuh"

#include <gtest/gtest.h>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

namespace {

namespace gk = bertune::kernels::gpu::gemm_kernels;
using cuda_emulation::launch;

#if defined(__SANITIZE_ADDRESS__)
#define SKIP_UNDER_ASAN() GTEST_SKIP() << "ucontext fibers confuse AddressSanitizer's stack tracking"
#else
#define SKIP_UNDER_ASAN() (void)0
#endif

std::vector<float> uniform(size_t n, std::mt19937& rng) {
  std::uniform_real_distribution<float> dist(-1.f, 1.f);
  std::vector<float> v(n);
  for (auto& x : v) x = dist(rng);
  return v;
}

// What gemm_gpu.cu's add_column_sums launches: db += column sums of dy [T, cols].
void add_column_sums_emulated(std::vector<float>& db, const std::vector<float>& dy, int T, int cols) {
  const auto [chunks, rows_per_chunk] = gk::column_chunks(T);
  const dim3 block(gk::kColumnThreads, gk::kRowThreads);
  const dim3 grid((cols + gk::kColumnThreads - 1) / gk::kColumnThreads, chunks);
  if (chunks == 1) {
    launch(grid, block, 0, gk::column_sums_kernel, db.data(), true, dy.data(), T, cols, rows_per_chunk);
    return;
  }
  std::vector<float> partials(size_t(chunks) * cols, std::numeric_limits<float>::quiet_NaN());
  launch(grid, block, 0, gk::column_sums_kernel, partials.data(), false, dy.data(), T, cols,
         rows_per_chunk);
  const float* from = partials.data();
  launch(dim3((cols + 255) / 256), dim3(256), 0, gk::add_partials_kernel, db.data(), from, chunks, cols);
}

// One chunk, several, a partial last chunk, and T past kMaxChunks x 128 rows
// (longer chunks); columns that do not fill the last 32-column block.
TEST(GemmKernelsEmulated, BiasGradientAccumulatesColumnSums) {
  SKIP_UNDER_ASAN();
  std::mt19937 rng(std::random_device{}());
  for (auto [T, cols] : {std::pair{1, 7}, {128, 33}, {129, 40}, {700, 70}, {140000, 3}}) {
    SCOPED_TRACE(testing::Message() << "T " << T << " cols " << cols);
    auto dy = uniform(size_t(T) * cols, rng), db = uniform(cols, rng);
    std::vector<double> want(db.begin(), db.end());
    for (int t = 0; t < T; ++t)
      for (int j = 0; j < cols; ++j) want[j] += dy[size_t(t) * cols + j];
    add_column_sums_emulated(db, dy, T, cols);
    for (int j = 0; j < cols; ++j) EXPECT_NEAR(db[j], want[j], 1e-5 * (1 + std::sqrt(double(T)))) << j;
  }
  EXPECT_EQ(gk::column_chunks(140000), (std::pair{1022, 137}));  // 137 rows a chunk: under the cap
}

// Both conversion kernels write exactly rows x cols bf16 values, rounded to
// nearest even, at the padded leading dimension, and nothing in the padding.
TEST(GemmKernelsEmulated, Bf16ConversionRoundsAndKeepsPadding) {
  SKIP_UNDER_ASAN();
  std::mt19937 rng(std::random_device{}());
  for (auto [rows, cols, ld] : {std::tuple{3, 8, 8}, {5, 12, 16}, {4, 7, 9}, {2, 5, 5}}) {
    SCOPED_TRACE(testing::Message() << rows << "x" << cols << " ld " << ld);
    auto src = uniform(size_t(rows) * ld, rng);
    src[1] = 1.f + 1.f / 256.f;  // a tie: rounds to even (1.0)
    const int dst_ld = (cols + 7) / 8 * 8;
    std::vector<__nv_bfloat16> dst(size_t(rows) * dst_ld, __nv_bfloat16{0xdead});
    if (cols % 4 == 0 && ld % 4 == 0)
      launch(dim3(2), dim3(64), 0, gk::to_bf16_quads_kernel, dst.data(), dst_ld, src.data(), ld, rows, cols / 4);
    else
      launch(dim3(2), dim3(64), 0, gk::to_bf16_kernel, dst.data(), dst_ld, src.data(), ld, rows, cols);
    for (int r = 0; r < rows; ++r)
      for (int c = 0; c < dst_ld; ++c) {
        const uint16_t got = dst[size_t(r) * dst_ld + c].bits;
        if (c >= cols) {
          EXPECT_EQ(got, 0xdead) << "padding written at " << r << "," << c;
          continue;
        }
        const float x = src[size_t(r) * ld + c];
        const float back = std::bit_cast<float>(uint32_t(got) << 16);
        EXPECT_LE(std::fabs(back - x), std::fabs(x) / 256.f) << r << "," << c;
      }
    EXPECT_EQ(dst[1].bits, 0x3f80) << "1 + 2^-8 is a tie: to even";  // every case has cols > 1
  }
}

TEST(GemmKernelsEmulated, ScaleAndBiasBroadcast) {
  SKIP_UNDER_ASAN();
  std::vector<float> C = {1, std::numeric_limits<float>::quiet_NaN(), 3, 9, 4, 5, 6, 9};  // 2x3, ldc 4
  launch(dim3(1), dim3(32), 0, gk::scale_matrix_kernel, C.data(), 2, 3, 4, 0.f);
  EXPECT_EQ(C, (std::vector<float>{0, 0, 0, 9, 0, 0, 0, 9}));  // beta 0 clears even NaN, not column 3
  C = {1, 2, 3, 9, 4, 5, 6, 9};
  launch(dim3(1), dim3(32), 0, gk::scale_matrix_kernel, C.data(), 2, 3, 4, 0.5f);
  EXPECT_EQ(C, (std::vector<float>{0.5f, 1, 1.5f, 9, 2, 2.5f, 3, 9}));
  std::vector<float> y(6, -1.f), b = {7, 8, 9};
  launch(dim3(1), dim3(4), 0, gk::broadcast_rows_kernel, y.data(), b.data(), 2, 3);
  EXPECT_EQ(y, (std::vector<float>{7, 8, 9, 7, 8, 9}));
}

}  // namespace
