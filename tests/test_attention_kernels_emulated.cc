// The CUDA attention kernels (src/kernels/gpu/attention_kernels.cuh) run on
// the CPU over tests/cuda_emulation.h, against the CPU body: every index,
// tile boundary, pad-key mask, dropout index and barrier of the kernels is
// exercised on any machine, GPU or not. This is a logic check, not a GPU
// check: tests/test_gpu_gemm_attention.cc runs the compiled kernels on a GPU.
#include "cuda_emulation.h"
// (the emulation must come first)
#include "kernels/gpu/attention_kernels.cuh"

#include <gtest/gtest.h>

#include <array>
#include <cmath>
#include <limits>
#include <random>
#include <string>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/ops.h"

namespace {

namespace k = bertune::kernels;
namespace ak = bertune::kernels::gpu::attention_kernels;

const float kNaN = std::numeric_limits<float>::quiet_NaN();

struct Outputs {
  std::vector<float> ctx, probs, dqkv;
};

// What attention_gpu.cu's launches do, over the emulation. Outputs start as NaN
// so that an element no kernel wrote fails the comparison.
template <int DMAX>
Outputs run_emulated(const k::AttentionShape& shape, int tokens, const std::vector<float>& qkv,
                     const std::vector<float>& dctx, const k::Dropout& drop, int max_length_slack) {
  const int H = shape.num_heads * shape.head_dim;
  Outputs out{std::vector<float>(size_t(tokens) * H, kNaN),
              std::vector<float>(shape.prob_offsets[shape.num_sequences], kNaN),
              std::vector<float>(qkv.size(), kNaN)};
  const ak::AttentionArgs a = ak::args_of(shape);
  const ak::DropParams dp = ak::drop_params(drop);
  const int launch_length = shape.max_length + max_length_slack;
  const dim3 grid(shape.num_sequences, shape.num_heads, (launch_length + ak::kTile - 1) / ak::kTile);
  std::vector<float> row_dots(size_t(shape.num_sequences) * launch_length * shape.num_heads, kNaN);
  cuda_emulation::launch(grid, ak::kThreads, ak::forward_smem_floats<DMAX>() * sizeof(float),
                         ak::attention_forward_kernel<DMAX>, out.ctx.data(), out.probs.data(),
                         qkv.data(), a, dp);
  const float* probs = out.probs.data();
  cuda_emulation::launch(grid, ak::kThreads, ak::backward_rows_smem_floats<DMAX>() * sizeof(float),
                         ak::attention_backward_rows_kernel<DMAX>, out.dqkv.data(), row_dots.data(),
                         dctx.data(), qkv.data(), probs, a, dp);
  const float* dots = row_dots.data();
  cuda_emulation::launch(grid, ak::kThreads, ak::backward_keys_smem_floats<DMAX>() * sizeof(float),
                         ak::attention_backward_keys_kernel<DMAX>, out.dqkv.data(), dots,
                         dctx.data(), qkv.data(), probs, a, dp);
  return out;
}

double rel_error(const std::vector<float>& got, const std::vector<float>& want) {
  double diff = 0, norm = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    if (!std::isfinite(got[i])) return std::numeric_limits<double>::infinity();
    diff += (double(got[i]) - want[i]) * (double(got[i]) - want[i]);
    norm += double(want[i]) * want[i];
  }
  return norm > 0 ? std::sqrt(diff / norm) : std::sqrt(diff);  // all-zero wants (one-key spans' dq): absolute
}

struct Case {
  int heads, head_dim, sequences, longest;
  bool padded;
  float p;
  int slack;
};

template <int DMAX>
void expect_matches_cpu(const Case& c, uint32_t seed) {
  SCOPED_TRACE(testing::Message() << "seed " << seed << " heads " << c.heads << " head_dim "
                                  << c.head_dim << " padded " << c.padded << " p " << c.p);
  std::mt19937 rng(seed);
  std::vector<int32_t> offsets{0}, lengths;
  std::vector<int64_t> prob_offsets{0};
  int max_length = 0;
  for (int b = 0; b < c.sequences; ++b) {
    const int span = b == 0 ? c.longest : std::uniform_int_distribution<int>(1, c.longest)(rng);
    offsets.push_back(offsets.back() + span);
    lengths.push_back(c.padded ? std::uniform_int_distribution<int>(1, span)(rng) : span);
    prob_offsets.push_back(prob_offsets.back() + int64_t(c.heads) * span * span);
    max_length = std::max(max_length, span);
  }
  const int tokens = offsets.back(), H = c.heads * c.head_dim;
  std::uniform_real_distribution<float> dist(-1.5f, 1.5f);
  std::vector<float> qkv(size_t(tokens) * 3 * H), dctx(size_t(tokens) * H);
  for (auto& x : qkv) x = dist(rng);
  for (auto& x : dctx) x = dist(rng);
  const k::AttentionShape shape{offsets.data(), lengths.data(), c.sequences, c.heads,
                                c.head_dim,     prob_offsets.data(), max_length};
  const auto drop = k::Dropout::make(seed, 3, 5, c.p);

  std::vector<float> ctx(size_t(tokens) * H), probs(prob_offsets.back()), dqkv(qkv.size());
  k::cpu::attention_forward(ctx.data(), probs.data(), qkv.data(), shape, drop);
  k::cpu::attention_backward(dqkv.data(), dctx.data(), qkv.data(), probs.data(), shape, drop);
  const Outputs got = run_emulated<DMAX>(shape, tokens, qkv, dctx, drop, c.slack);
  EXPECT_LE(rel_error(got.probs, probs), 1e-5) << "probs";
  EXPECT_LE(rel_error(got.ctx, ctx), 1e-5) << "ctx";
  EXPECT_LE(rel_error(got.dqkv, dqkv), 1e-5) << "dqkv";
}

#if defined(__SANITIZE_ADDRESS__)
#define SKIP_UNDER_ASAN() GTEST_SKIP() << "ucontext fibers confuse AddressSanitizer's stack tracking"
#else
#define SKIP_UNDER_ASAN() (void)0
#endif

uint32_t fresh_seed() { return std::random_device{}(); }

// Spans cross the 32-row tiles (up to 3 tiles); packed and padded; dropout on and off.
TEST(AttentionKernelsEmulated, HeadDim64MatchesCpu) {
  SKIP_UNDER_ASAN();
  for (bool padded : {false, true})
    for (float p : {0.f, 0.1f}) expect_matches_cpu<64>({2, 64, 3, 70, padded, p, 0}, fresh_seed());
}

// head_dim below the tile width (DMAX 64 with 48 used, DMAX 32 with 16), the
// widest head, a launch longer than every span, single-token sequences.
TEST(AttentionKernelsEmulated, OtherHeadSizesAndLaunchSlack) {
  SKIP_UNDER_ASAN();
  expect_matches_cpu<64>({2, 48, 3, 40, true, 0.1f, 33}, fresh_seed());
  expect_matches_cpu<32>({3, 16, 4, 35, true, 0.2f, 0}, fresh_seed());
  expect_matches_cpu<32>({1, 8, 3, 1, false, 0.1f, 0}, fresh_seed());
  expect_matches_cpu<128>({1, 128, 2, 33, true, 0.1f, 0}, fresh_seed());
}

// The [CLS]-only last layer's attention (last_layer_cls_forward and its backward): the
// first query of each sequence against every key, packed and padded, spans over several
// thread strides; inference's form (no probs, no dropout) and training's (probs kept,
// dropout drawing the full layer's row-0 masks), then the backward from those probs.
TEST(AttentionKernelsEmulated, FirstQueryMatchesCpu) {
  SKIP_UNDER_ASAN();
  const uint32_t seed = fresh_seed();
  SCOPED_TRACE(testing::Message() << "seed " << seed);
  std::mt19937 rng(seed);
  for (const auto& [heads, head_dim, sequences, longest] :
       std::vector<std::array<int, 4>>{{4, 64, 5, 300}, {2, 48, 3, 7}, {1, 128, 2, 1}, {12, 64, 4, 129}}) {
    std::vector<int32_t> offsets{0}, lengths;
    std::vector<int64_t> prob_offsets{0};
    int max_length = 0;
    for (int b = 0; b < sequences; ++b) {
      const int span = b == 0 ? longest : std::uniform_int_distribution<int>(1, longest)(rng);
      offsets.push_back(offsets.back() + span);
      lengths.push_back(b % 2 ? std::uniform_int_distribution<int>(1, span)(rng) : span);
      prob_offsets.push_back(prob_offsets.back() + int64_t(heads) * span * span);
      max_length = std::max(max_length, span);
    }
    const int H = heads * head_dim, T = offsets.back();
    std::uniform_real_distribution<float> dist(-1.5f, 1.5f);
    std::vector<float> q(size_t(sequences) * H), kv(size_t(T) * 2 * H), dctx(q.size());
    for (auto& x : q) x = dist(rng);
    for (auto& x : kv) x = dist(rng);
    for (auto& x : dctx) x = dist(rng);
    for (const bool training : {false, true}) {
      SCOPED_TRACE(testing::Message() << heads << " heads of " << head_dim << ", longest " << longest
                                      << (training ? ", training" : ", inference"));
      const k::AttentionShape shape{offsets.data(),         lengths.data(), sequences, heads, head_dim,
                                    training ? prob_offsets.data() : nullptr, max_length};
      const auto drop = training ? k::Dropout::make(seed, 2, 7, 0.2f) : k::Dropout{};
      std::vector<float> want(q.size()), want_probs(size_t(heads) * T), got(q.size(), kNaN),
          got_probs(want_probs.size(), kNaN);
      k::cpu::attention_first_query_forward(want.data(), training ? want_probs.data() : nullptr, q.data(), kv.data(),
                                            shape, drop);
      const ak::AttentionArgs a = ak::args_of(shape);
      const ak::DropParams dp = ak::drop_params(drop);
      cuda_emulation::launch(dim3(sequences, heads), ak::kThreads,
                             ak::first_query_smem_floats(max_length) * sizeof(float),
                             ak::attention_first_query_kernel, got.data(), training ? got_probs.data() : nullptr,
                             q.data(), kv.data(), a, dp);
      EXPECT_LE(rel_error(got, want), 1e-5) << "ctx";
      if (!training) continue;
      EXPECT_LE(rel_error(got_probs, want_probs), 1e-5) << "probs";
      std::vector<float> want_dq(q.size()), want_dkv(kv.size()), got_dq(q.size(), kNaN), got_dkv(kv.size(), kNaN);
      k::cpu::attention_first_query_backward(want_dq.data(), want_dkv.data(), dctx.data(), q.data(), kv.data(),
                                             want_probs.data(), shape, drop);
      cuda_emulation::launch(dim3(sequences, heads), ak::kThreads,
                             ak::first_query_backward_smem_floats(max_length) * sizeof(float),
                             ak::attention_first_query_backward_kernel, got_dq.data(), got_dkv.data(), dctx.data(),
                             q.data(), kv.data(), want_probs.data(), a, dp);
      EXPECT_LE(rel_error(got_dq, want_dq), 1e-5) << "dq";
      EXPECT_LE(rel_error(got_dkv, want_dkv), 1e-5) << "dkv";
    }
  }
}

// The emulation itself: a barrier that only some threads reach is a deadlock,
// reported rather than hung.
TEST(AttentionKernelsEmulated, EmulationReportsDivergentBarriers) {
  SKIP_UNDER_ASAN();
  auto kernel = [] {
    if (threadIdx.x < 16) __syncthreads();
  };
  EXPECT_THROW(cuda_emulation::launch(dim3(1), 32, 0, kernel), std::logic_error);
}

}  // namespace
