// Every backend built against the CPU, op by op (ggml's test-backend-ops): the cases of
// tests/backend_ops_cases.h (every op of kernels/op_table.inc; shapes that include ragged
// packed batches and sizes that are no multiple of a warp or block; GEMM precisions;
// dropout on and off) run on the backend and on the CPU from the same inputs, and every
// output is compared (tolerances: gpu_harness.h and backend_ops.h). A pair the backend
// lacks is reported skipped, "not supported", with the reason; without CUDA or a usable
// GPU every case reports itself skipped with that reason. The `gpu` ctest label. Also: the
// CUDA runtime seam, and what the op fronts promise a CUDA call.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "backend_ops_cases.h"
#include "gpu_harness.h"
#include "kernels/ops.h"
#include "util/error.h"

using namespace bertune;
using kernels::Device;
using gpu_test::DeviceArray;
using gpu_test::expect_close;
using gpu_test::randn;

using backend_ops::cases;

namespace {

// Why `c` cannot run on CUDA here ("" when it can): no CUDA in this build, no body of the
// op, a case the body refuses, no usable GPU.
std::string why_not_on_cuda(const backend_ops::OpCase& c) {
#ifndef BERTUNE_CUDA
  return gpu_test::gpu_missing();
#endif
  if (!kernels::supports(Device::CUDA, c.op))
    return std::string("not supported: no CUDA body of ") + kernels::op_name(c.op) + " in this build";
  if (!c.cuda_refuses.empty()) return "not supported: " + c.cuda_refuses;
  return gpu_test::gpu_missing();
}

class GpuBackendOps : public ::testing::TestWithParam<size_t> {};

}  // namespace

TEST_P(GpuBackendOps, MatchesCpu) {
  const backend_ops::OpCase& c = cases()[GetParam()];
  const std::string why = why_not_on_cuda(c);
  if (!why.empty()) GTEST_SKIP() << why;
  std::vector<std::vector<double>> want;
  for (auto& out : c.run(Device::CPU)) want.push_back(std::move(out.values));
  backend_ops::PrecisionScope precision(Device::CUDA, c.precision);
  backend_ops::expect_outputs(c.run(Device::CUDA), want, /*vs_reference=*/false, "cuda", "cpu");
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(GpuBackendOps);
INSTANTIATE_TEST_SUITE_P(Ops, GpuBackendOps, ::testing::Range(size_t(0), backend_ops::registered_case_count("Ops/GpuBackendOps")),
                         [](const ::testing::TestParamInfo<size_t>& info) { return cases()[info.param].name; });

// What supports() and the case table call "not supported" is what a call does: an Error
// naming the op, never a silent no-op.
TEST(GpuBackendOpsTable, PairsNotSupportedAreErrorsNamingTheOp) {
  BERTUNE_REQUIRE_GPU();
  int checked = 0;
  for (const auto& c : cases()) {
    if (kernels::supports(Device::CUDA, c.op) && c.cuda_refuses.empty()) continue;
    try {
      c.run(Device::CUDA);
      ADD_FAILURE() << c.name << " ran on CUDA, which does not support it";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(kernels::op_name(c.op)), std::string::npos) << e.what();
    }
    ++checked;
  }
  EXPECT_GT(checked, 0);
}

TEST(GpuRuntime, AvailableGivesAReasonWhenNot) {
#ifndef BERTUNE_CUDA
  GTEST_SKIP() << gpu_test::gpu_missing();
#else
  std::string why = "unchanged";
  bool ok = kernels::gpu::available(&why);
  if (ok) {
    EXPECT_TRUE(why.empty());
    std::printf("GPU: %s\n", kernels::gpu::device_description().c_str());
  } else {
    EXPECT_FALSE(why.empty());
    EXPECT_NE(why, "unchanged");
    std::printf("no GPU: %s\n", why.c_str());
  }
#endif
}

// Without a usable GPU a CUDA op is an Error (never a crash or a silent no-op).
TEST(GpuRuntime, CudaOpWithoutGpuIsAnError) {
  if (gpu_test::gpu_missing().empty()) GTEST_SKIP() << "a GPU is usable here";
  EXPECT_THROW(kernels::scale(Device::CUDA, nullptr, 16, 2.f), Error);
}

TEST(GpuRuntime, Int8IsCpuOnly) {
  std::vector<float> W(4 * 8, 0.5f);
  auto q = kernels::quantize_linear(W.data(), 4, 8);
  try {
    kernels::linear_int8_forward(Device::CUDA, nullptr, nullptr, q, nullptr, 2);
    ADD_FAILURE() << "linear_int8_forward on CUDA did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int8 inference is CPU-only"), std::string::npos) << e.what();
  }
}

TEST(GpuRuntime, CopiesFillGatherScatter) {
#ifndef BERTUNE_CUDA
  GTEST_SKIP() << gpu_test::gpu_missing();  // the runtime functions exist only in a CUDA build
#else
  BERTUNE_REQUIRE_GPU();
  const int rows = 50, width = 33;
  auto src = randn(size_t(rows) * width, 1);
  DeviceArray<float> d_src(src), d_copy = DeviceArray<float>::poisoned(src.size());
  kernels::gpu::copy_on_device(d_copy.data(), d_src.data(), src.size() * sizeof(float));
  EXPECT_EQ(d_copy.download(), src);
  kernels::gpu::fill_zero(d_copy.data(), src.size() * sizeof(float));
  EXPECT_EQ(d_copy.download(), std::vector<float>(src.size(), 0.f));

  auto picks = gpu_test::random_ints(80, 2, 0, rows - 1);  // repeats: the scatter must add
  DeviceArray<int32_t> d_picks(picks);
  auto gathered = DeviceArray<float>::poisoned(picks.size() * width);
  kernels::gpu::gather_rows(gathered.data(), d_src.data(), d_picks.data(), int(picks.size()), width);
  std::vector<float> want_gather(picks.size() * width), want_scatter = src;
  for (size_t r = 0; r < picks.size(); ++r)
    for (int c = 0; c < width; ++c) {
      want_gather[r * width + c] = src[size_t(picks[r]) * width + c];
      want_scatter[size_t(picks[r]) * width + c] += want_gather[r * width + c];
    }
  EXPECT_EQ(gathered.download(), want_gather);
  kernels::gpu::scatter_add_rows(d_src.data(), gathered.data(), d_picks.data(), int(picks.size()), width);
  expect_close("scatter_add_rows", d_src.download(), want_scatter, gpu_test::kFp32Sum);
  kernels::gpu::synchronize();
#endif
}


TEST(OpFronts, AttentionMetadataIsCheckedOnHostCopies) {
  auto batch = gpu_test::random_packed_batch(3, 5, 20, 2);
  auto shape = batch.shape(2, 8);
  EXPECT_NO_THROW(kernels::check_attention_metadata(shape, batch.offsets.data(), batch.lengths.data(),
                                                    batch.prob_offsets.data()));
  auto lengths = batch.lengths;
  lengths[1] = batch.offsets[2] - batch.offsets[1] + 1;  // longer than its span
  try {
    kernels::check_attention_metadata(shape, batch.offsets.data(), lengths.data(), batch.prob_offsets.data(),
                                      "upload");
    ADD_FAILURE() << "a length beyond its span passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("upload: sequence 1 has length"), std::string::npos) << e.what();
  }
  shape.max_length = batch.max_length + 1;
  EXPECT_THROW(kernels::check_attention_metadata(shape, batch.offsets.data(), batch.lengths.data(),
                                                 batch.prob_offsets.data()),
               Error);
  // a CUDA call must name the longest span: the front cannot read offsets there
  shape = batch.shape(2, 8);
  shape.max_length = 0;
  try {
    kernels::attention_forward(Device::CUDA, nullptr, nullptr, nullptr, shape, kernels::Dropout{});
    ADD_FAILURE() << "a CUDA attention call without max_length passed the front";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_length must be set"), std::string::npos) << e.what();
  }
}

// Without a usable GPU, CUDA calls whose arrays point at unmapped addresses end in an
// Error from dispatch or the CUDA runtime: the fronts never dereference them (a
// front that read labels or offsets would crash here instead).
TEST(OpFronts, CudaFrontsReadNoArgumentMemory) {
  if (gpu_test::gpu_missing().empty()) GTEST_SKIP() << "a GPU is usable here: launching on bad pointers is not a test";
  const auto* bad_i32 = reinterpret_cast<const int32_t*>(uintptr_t(16));
  const auto* bad_i64 = reinterpret_cast<const int64_t*>(uintptr_t(16));
  auto* bad_f = reinterpret_cast<float*>(uintptr_t(16));
  int counted = 0;
  EXPECT_THROW(kernels::cross_entropy_forward(Device::CUDA, bad_f, bad_f, bad_i32, 8, 2, &counted), Error);
  kernels::AttentionShape shape{bad_i32, bad_i32, 4, 2, 8, bad_i64, 16};
  EXPECT_THROW(kernels::attention_forward(Device::CUDA, bad_f, bad_f, bad_f, shape, kernels::Dropout{}), Error);
  EXPECT_THROW(kernels::embeddings_forward(Device::CUDA, bad_f, bad_i32, bad_i32, bad_i32, bad_f, bad_f, bad_f, 4, 8),
               Error);
}

TEST(OpFronts, AdamWRangesAndHostClipMatchSeparateCallsOnCpu) {
  const size_t n = 5000;
  std::vector<kernels::AdamWRange> ranges = {{0, 100, false}, {100, 3000, true}, {3100, n, true}};
  auto s = backend_ops::adamw_coefficients(true, 2), nd = s;
  nd.pre_decay = 1.f;
  auto g = randn(n, 7), p = randn(n, 8), m = randn(n, 9, 0.01f), v = m;
  for (auto& e : v) e = std::fabs(e);
  double sumsq = kernels::sum_squares(Device::CPU, g.data(), n);
  const float max_norm = 1.f;
  float coef = max_norm / (float(std::sqrt(sumsq)) + 1e-6f);
  ASSERT_LT(coef, 1.f);  // clipping is active
  // expected: one adamw_update per range with grad_scale = coef
  auto p2 = p, g2 = g, m2 = m, v2 = v;
  for (const auto& r : ranges) {
    auto c = r.decay ? s : nd;
    c.grad_scale = coef;
    kernels::adamw_update(Device::CPU, p2.data() + r.begin, g2.data() + r.begin, m2.data() + r.begin,
                          v2.data() + r.begin, r.end - r.begin, c, true);
  }
  s.clip_sum_squares = nd.clip_sum_squares = &sumsq;
  s.max_grad_norm = nd.max_grad_norm = max_norm;
  kernels::adamw_update_ranges(Device::CPU, p.data(), g.data(), m.data(), v.data(), ranges.data(),
                               int(ranges.size()), s, nd, true);
  EXPECT_EQ(p, p2);
  EXPECT_EQ(g, g2);
  EXPECT_EQ(m, m2);
  EXPECT_EQ(v, v2);
  EXPECT_NE(g[3050], 0.f);  // the gap between ranges is untouched
  double total = 0.5;
  kernels::sum_squares_accumulate(Device::CPU, &total, g2.data(), 100);
  EXPECT_EQ(total, 0.5 + kernels::sum_squares(Device::CPU, g2.data(), 100));
  std::vector<kernels::AdamWRange> overlapping = {{0, 200, true}, {100, 300, false}};
  EXPECT_THROW(kernels::adamw_update_ranges(Device::CPU, p.data(), g.data(), m.data(), v.data(),
                                            overlapping.data(), 2, s, nd, true),
               Error);
}
