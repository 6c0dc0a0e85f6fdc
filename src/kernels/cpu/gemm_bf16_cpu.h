#pragma once
// bf16 GEMMs on the CPU (Precision::BF16), the rules of the CUDA path: both operands of every
// gemm / linear_* GEMM are rounded to bf16 (round to nearest even) on each call, products
// accumulate in fp32, outputs are fp32. The multiply is oneDNN's matmul (bf16 source and
// weights, f32 destination), which runs on CPUs with avx512_bf16 or AMX-BF16; a build without
// oneDNN, or another CPU, computes fp32 only and says which of the two is missing.
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/ops.h"

namespace bertune::kernels::cpu {

// cpuid: avx512_bf16 (leaf 7 subleaf 1, EAX bit 5) or AMX-BF16 (leaf 7, EDX bit 22), with the
// OS saving AVX-512 state. The tests simulate a CPU without either by setting the environment
// variable BERTUNE_TEST_CPU_WITHOUT_BF16=1 (read on every call; not meant for anything else).
bool cpu_has_bf16();
// What stands in the way of bf16 GEMMs with these facts ("" when nothing does): the message
// set_precision(CPU, BF16) and --precision bf16 give.
std::string bf16_unavailable_reason(bool cpu_has_bf16, bool build_has_onednn);
// The same for this CPU and this build.
std::string bf16_unavailable();

// The CPU's GEMM precision: FP32 or BF16 (an Error naming what is missing when BF16 cannot
// run here; TF32 is the caller's to refuse).
void set_gemm_precision(Precision p);
Precision gemm_precision();

// fp32 -> bf16 bits, round to nearest even (bench/bf16_blas_shim.c's and CUDA's
// __float2bfloat16_rn bits); NaN stays NaN (quiet, sign kept). Subnormals round like any
// other value (no flush to zero).
uint16_t bf16_bits(float x);
// n values; AVX-512 when the CPU has it, else a loop the compiler vectorises with AVX2.
void round_to_bf16(const float* src, uint16_t* dst, size_t n);

// Row-major C[M,N] = alpha op(A) op(B) + beta C with A and B rounded to bf16, fp32
// accumulation (oneDNN matmul; the gemm op's arguments). Needs bf16_unavailable() == "".
void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc);

}  // namespace bertune::kernels::cpu
