// The Hugging Face golden cases of shared/golden/bert with the model on CUDA (ctest label
// `gpu`; SKIPPED with the reason without a GPU). The checks are tests/golden_bert.h's, the
// ones tests/test_model.cc runs on the CPU; only the device and, for bf16, the tolerances differ.
//
// fp32 (--precision fp32): the CPU's bounds. Logits and hidden states <= 1e-4 absolute, loss
// 1e-5 relative, every gradient <= 1e-3 of its tensor's largest value, and three trainer
// steps (TrainStep + AdamW, both forms) as tests/test_model.cc holds the CPU to.
//
// bf16 (--precision bf16, the CUDA default): every GEMM operand is rounded to bf16 (8
// significant bits, unit roundoff u = 2^-8 = 3.9e-3) and products are summed in fp32. A
// K-term dot product of rounded operands carries a relative error of about
// sqrt(2/3) u ~ 3.2e-3 (one standard deviation: two independent uniform roundings per
// product), and BERT's layers add about ten such GEMMs (forward) in quadrature before the
// last LayerNorm, ~1e-2 of an O(1) hidden state; four standard deviations over the few
// thousand values compared give the hidden-state bound; the logits are ~0.1 in size, hence
// 5e-3. The backward pass multiplies the same rounded operands once more (dx and dW), hence a
// gradient bound of 3e-2 of each tensor's largest value: still 30x below the error of
// a wrong gradient (O(1) of it). Attention and everything outside the GEMMs stay fp32.
#include <gtest/gtest.h>

#include "golden_bert.h"
#include "gpu_harness.h"
#include "kernels/ops.h"

using namespace golden_bert;
using bertune::kernels::Device;
using bertune::kernels::Precision;

namespace {

// Restores the process-wide GEMM precision when a test ends.
struct PrecisionScope {
  explicit PrecisionScope(Precision p) { bertune::kernels::set_precision(Device::CUDA, p); }
  ~PrecisionScope() { bertune::kernels::set_precision(Device::CUDA, Precision::FP32); }
};

const Tolerance kFp32{};
const Tolerance kBf16{.logits_abs = 5e-3f, .hidden_abs = 5e-2f, .loss_rel = 1e-2f, .grad_rel = 3e-2f,
                      .zero_grad_abs = 1e-6f};

}  // namespace

TEST(GpuGolden, ClassificationFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  expect_classification_case(Device::CUDA, kFp32);
}

TEST(GpuGolden, MaskedLMFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  expect_masked_lm_case(Device::CUDA, kFp32);
}

TEST(GpuGolden, ThreeAdamWStepsFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  expect_three_adamw_steps(Device::CUDA, bertune::train::AdamWVariant::Torch, "tiny_adamw.json",
                           "tiny_after_adamw.safetensors");
}

TEST(GpuGolden, ThreeAdamWHfStepsFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  expect_three_adamw_steps(Device::CUDA, bertune::train::AdamWVariant::HF, "tiny_adamw_hf.json",
                           "tiny_after_adamw_hf.safetensors");
}

TEST(GpuGolden, ClassificationBf16) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope bf16(Precision::BF16);
  expect_classification_case(Device::CUDA, kBf16);
}

TEST(GpuGolden, MaskedLMBf16) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope bf16(Precision::BF16);
  expect_masked_lm_case(Device::CUDA, kBf16);
}
