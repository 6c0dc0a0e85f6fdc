// Every op of kernels/op_table.inc on the CPU against plain references (the backend test's
// CPU half; tests/test_gpu_backend_ops.cc holds the other backends to the CPU): the cases
// of tests/backend_ops_cases.h run through the ops.h fronts and every output is compared
// with naive loops in double (tests/op_reference.h). A case the CPU does not take (a GEMM
// precision it lacks) is reported skipped, "not supported", with the reason.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend_ops_cases.h"
#include "kernels/cpu/simd_cpu.h"
#include "kernels/cpu_runtime.h"
#include "kernels/ops.h"
#include "util/error.h"

using namespace bertune;
using kernels::Device;
using kernels::Op;

using backend_ops::cases;

namespace {

class BackendOps : public ::testing::TestWithParam<size_t> {};

}  // namespace

static void expect_cpu_matches_reference(const backend_ops::OpCase& c, const char* cpu) {
  std::unique_ptr<backend_ops::PrecisionScope> precision;
  try {
    precision = std::make_unique<backend_ops::PrecisionScope>(Device::CPU, c.precision);
  } catch (const Error& e) {
    GTEST_SKIP() << "not supported: " << e.what();
  }
  // A reduced precision (bf16 on a CPU that has it) is held to its own bound, the one a GPU body
  // is held to against the CPU's fp32; fp32 to the reference's.
  const bool fp32 = c.precision == kernels::Precision::FP32;
  backend_ops::expect_outputs(c.run(Device::CPU), c.reference(), /*vs_reference=*/fp32, cpu, "reference");
}

TEST_P(BackendOps, CpuMatchesReference) { expect_cpu_matches_reference(cases()[GetParam()], "cpu"); }

// The same cases on the AVX2 copies of the elementwise and row kernels (kernels/cpu/simd_cpu.h):
// on a CPU with AVX-512 the suite above runs the AVX-512 copies, this one the others.
class BackendOpsAvx2 : public ::testing::TestWithParam<size_t> {};

TEST_P(BackendOpsAvx2, CpuMatchesReference) {
  struct Width {
    int was = kernels::vector_bits();
    Width() { kernels::set_vector_bits(256); }
    ~Width() { kernels::set_vector_bits(was); }
  } width;
  expect_cpu_matches_reference(cases()[GetParam()], "cpu avx2");
}

// The AVX-512 and AVX2 copies of an elementwise kernel give the same bits (one body, one
// arithmetic per element); a CPU without AVX-512 has one copy and nothing to compare.
TEST(SimdCopies, ElementwiseKernelsAgreeBitForBit) {
  if (!kernels::cpu::cpu_has_simd512()) GTEST_SKIP() << "this CPU has no AVX-512: one copy of each kernel";
  const size_t n = 100003;
  std::vector<float> x(n), dy(n);
  for (size_t i = 0; i < n; ++i) {
    x[i] = 6.f * std::sin(0.37f * float(i)) + 1e-3f * float(i % 17);
    dy[i] = std::cos(0.11f * float(i));
  }
  const kernels::Dropout drop{1234, 0.1f};
  auto run = [&](int bits) {
    kernels::set_vector_bits(bits);
    std::vector<float> g(n), dg(n), d(n);
    kernels::gelu_forward(Device::CPU, g.data(), x.data(), n);
    kernels::gelu_backward(Device::CPU, dg.data(), dy.data(), x.data(), n);
    kernels::dropout_forward(Device::CPU, d.data(), x.data(), n, drop);
    g.insert(g.end(), dg.begin(), dg.end());
    g.insert(g.end(), d.begin(), d.end());
    return g;
  };
  const int was = kernels::vector_bits();
  const std::vector<float> wide = run(512), narrow = run(256);
  kernels::set_vector_bits(was);
  size_t differ = 0;
  for (size_t i = 0; i < wide.size(); ++i) differ += std::memcmp(&wide[i], &narrow[i], sizeof(float)) != 0;
  EXPECT_EQ(differ, 0u);
}

TEST(SimdCopies, SetVectorBitsRejectsOtherWidths) {
  EXPECT_THROW(kernels::set_vector_bits(128), Error);
  if (!kernels::cpu::cpu_has_simd512()) {
    EXPECT_THROW(kernels::set_vector_bits(512), Error);
  }
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BackendOps);
GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BackendOpsAvx2);
INSTANTIATE_TEST_SUITE_P(Ops, BackendOps, ::testing::Range(size_t(0), backend_ops::registered_case_count("Ops/BackendOps")),
                         [](const ::testing::TestParamInfo<size_t>& info) { return cases()[info.param].name; });
INSTANTIATE_TEST_SUITE_P(Ops, BackendOpsAvx2,
                         ::testing::Range(size_t(0), backend_ops::registered_case_count("Ops/BackendOpsAvx2")),
                         [](const ::testing::TestParamInfo<size_t>& info) { return cases()[info.param].name; });

// An op added to the table without cases fails here, not silently.
TEST(BackendOpsTable, EveryOpHasACase) {
  std::map<Op, int> count;
  for (const auto& c : cases()) ++count[c.op];
  for (Op op : kernels::kAllOps) EXPECT_GT(count[op], 0) << kernels::op_name(op) << " has no case in tests/backend_ops_cases.h";
  EXPECT_EQ(count.size(), size_t(kernels::kOpCount));
}

TEST(BackendOpsTable, CpuHasEveryOpAndCudaOnlyInACudaBuild) {
  int on_cuda = 0;
  for (Op op : kernels::kAllOps) {
    EXPECT_TRUE(kernels::supports(Device::CPU, op)) << kernels::op_name(op);
    on_cuda += kernels::supports(Device::CUDA, op);
  }
#ifdef BERTUNE_CUDA
  EXPECT_GT(on_cuda, 0);
  EXPECT_TRUE(kernels::supports(Device::CUDA, Op::gemm));
  EXPECT_FALSE(kernels::supports(Device::CUDA, Op::linear_int8_forward));  // int8 inference: CPU only
#else
  EXPECT_EQ(on_cuda, 0);
#endif
}

// A call without a body names the op and the device: int8 (CPU only) on CUDA, and in a
// build without CUDA any op on CUDA.
TEST(BackendOpsTable, CallWithoutABodyIsAnErrorNamingTheOp) {
  kernels::QuantizedLinear w;
  w.packed = {0};
  w.compensation = {0};
  try {
    kernels::linear_int8_forward(Device::CUDA, nullptr, nullptr, w, nullptr, 0);
    ADD_FAILURE() << "linear_int8_forward ran on CUDA";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kernels::linear_int8_forward: int8 inference is CPU-only"),
              std::string::npos)
        << e.what();
  }
#ifndef BERTUNE_CUDA
  try {
    kernels::dropout_rows(Device::CUDA, nullptr, nullptr, nullptr, 0, 4, kernels::Dropout{});
    ADD_FAILURE() << "dropout_rows ran on CUDA";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kernels::dropout_rows: no CUDA"), std::string::npos) << e.what();
  }
#endif
}
