// The Hugging Face golden cases of shared/golden/bert with the model on CUDA (ctest label
// `gpu`; SKIPPED with the reason without a GPU). The checks are tests/golden_bert.h's, the
// ones tests/test_model.cc runs on the CPU; only the device and, for bf16, the tolerances differ.
//
// fp32 (--precision fp32): the CPU's bounds. Logits and hidden states <= 1e-4 absolute, loss
// 1e-5 relative, every gradient <= 1e-3 of its tensor's largest value, and three trainer
// steps (TrainStep + AdamW, both forms) as tests/test_model.cc holds the CPU to.
//
// bf16 (--precision bf16, the CUDA default): every GEMM operand is rounded to bf16 (8
// significant bits, unit roundoff u = 2^-8 = 3.9e-3) and products are summed in fp32, so each
// GEMM output is off by ~sqrt(2/3) u ~ 3e-3 of its size (two independent roundings per
// product); attention and everything outside the GEMMs stay fp32. The bounds below are ~3-5x
// what an emulation on the CPU measured with EVERY GEMM's operands rounded to bf16 (round to
// nearest even, as gemm_gpu.cu; the CPU attention's GEMMs included, so it is harsher than the
// GPU): classification logits 1.0e-3 (~0.1 in size), masked-LM logits 6.7e-3 (larger: the
// tied decoder), hidden states 3.0e-3 (O(1) LayerNorm outputs), loss 3.1e-4 relative,
// gradients 1.2e-2 of each tensor's largest value, key-bias gradients (zero in exact
// arithmetic) 2.3e-6. A wrong gradient is off by O(1) of it: 3e-2 still tells them apart.
// (The emulation: bench/bf16_blas_shim.c, a cblas_sgemm rounding both operands, via BERTUNE_BLAS=.)
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
const Tolerance kBf16 = bf16_tolerance();

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
  expect_three_adamw_steps(Device::CUDA, bertune::train::AdamWVariant::Torch, "adamw.json",
                           "after_adamw.safetensors");
}

TEST(GpuGolden, ThreeAdamWHfStepsFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  expect_three_adamw_steps(Device::CUDA, bertune::train::AdamWVariant::HF, "adamw_hf.json",
                           "after_adamw_hf.safetensors");
}

TEST(GpuGolden, RegressionAndMultiLabelFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  for (const char* name : {"bert_regression", "bert_multilabel"}) {
    expect_sequence_case(Device::CUDA, family_inputs(name), kFp32);
    expect_three_adamw_steps(Device::CUDA, family_inputs(name), bertune::train::AdamWVariant::Torch, "adamw.json",
                             "after_adamw.safetensors");
  }
}

TEST(GpuGolden, TokenClassificationFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  expect_sequence_case(Device::CUDA, family_inputs("bert_tokencls"), kFp32);
  expect_three_adamw_steps(Device::CUDA, family_inputs("bert_tokencls"), bertune::train::AdamWVariant::Torch,
                           "adamw.json", "after_adamw.safetensors", 1e-5f, 5e-5f);
}

TEST(GpuGolden, SentencePairFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  expect_sequence_case(Device::CUDA, family_inputs("bert_pair"), kFp32);
  expect_three_adamw_steps(Device::CUDA, family_inputs("bert_pair"), bertune::train::AdamWVariant::Torch, "adamw.json",
                           "after_adamw.safetensors", 1e-5f, 5e-5f);
}

// RoBERTa, ELECTRA and DistilBERT (shared/golden/families): the CPU's checks and bounds
// (tests/test_families.cc) with the model on CUDA — the ReLU and GELU heads, ELECTRA's
// projected embeddings and DistilBERT's embeddings without a token-type table included.
TEST(GpuGolden, OtherFamiliesFp32) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope fp32(Precision::FP32);
  for (const char* name : {"roberta_seqcls", "electra_seqcls", "distilbert_seqcls"}) {
    SCOPED_TRACE(name);
    expect_sequence_case(Device::CUDA, family_inputs(name), kFp32);
    expect_three_adamw_steps(Device::CUDA, family_inputs(name), bertune::train::AdamWVariant::Torch, "adamw.json",
                             "after_adamw.safetensors", 1e-5f, 5e-5f, /*tiny_grad=*/1e-7f);
  }
}

TEST(GpuGolden, ClassificationBf16) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope bf16(Precision::BF16);
  expect_classification_case(Device::CUDA, kBf16);
}

TEST(GpuGolden, MaskedLMBf16) {
  BERTUNE_REQUIRE_GPU();
  PrecisionScope bf16(Precision::BF16);
  expect_masked_lm_case(Device::CUDA, bf16_masked_lm_tolerance());
}
