// Every op of kernels/op_table.inc on the CPU against plain references (the backend test's
// CPU half; tests/test_gpu_backend_ops.cc holds the other backends to the CPU): the cases
// of tests/backend_ops_cases.h run through the ops.h fronts and every output is compared
// with naive loops in double (tests/op_reference.h). A case the CPU does not take (a GEMM
// precision it lacks) is reported skipped, "not supported", with the reason.
#include <gtest/gtest.h>

#include <map>
#include <memory>
#include <string>
#include <vector>

#include "backend_ops_cases.h"
#include "kernels/ops.h"
#include "util/error.h"

using namespace bertune;
using kernels::Device;
using kernels::Op;

using backend_ops::cases;

namespace {

class BackendOps : public ::testing::TestWithParam<size_t> {};

}  // namespace

TEST_P(BackendOps, CpuMatchesReference) {
  const backend_ops::OpCase& c = cases()[GetParam()];
  std::unique_ptr<backend_ops::PrecisionScope> precision;
  try {
    precision = std::make_unique<backend_ops::PrecisionScope>(Device::CPU, c.precision);
  } catch (const Error& e) {
    GTEST_SKIP() << "not supported: " << e.what();
  }
  // A reduced precision (bf16 on a CPU that has it) is held to its own bound, the one a GPU body
  // is held to against the CPU's fp32; fp32 to the reference's.
  const bool fp32 = c.precision == kernels::Precision::FP32;
  backend_ops::expect_outputs(c.run(Device::CPU), c.reference(), /*vs_reference=*/fp32, "cpu", "reference");
}

GTEST_ALLOW_UNINSTANTIATED_PARAMETERIZED_TEST(BackendOps);
INSTANTIATE_TEST_SUITE_P(Ops, BackendOps, ::testing::Range(size_t(0), backend_ops::registered_case_count("Ops/BackendOps")),
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
  EXPECT_FALSE(kernels::supports(Device::CUDA, Op::dropout_rows));  // the [CLS]-only training ops: CPU only
#else
  EXPECT_EQ(on_cuda, 0);
#endif
}

// A call without a body names the op and the device.
TEST(BackendOpsTable, CallWithoutABodyIsAnErrorNamingTheOp) {
  try {
    kernels::dropout_rows(Device::CUDA, nullptr, nullptr, nullptr, 0, 4, kernels::Dropout{});
    ADD_FAILURE() << "dropout_rows ran on CUDA";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("kernels::dropout_rows: no CUDA"), std::string::npos) << e.what();
  }
}
