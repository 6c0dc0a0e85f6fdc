#pragma once
// CPU bodies of the ops in kernels/ops.h: one per row of kernels/op_table.inc, declared
// from the table (same parameters minus the Device, no shape checks: the fronts have done
// them), and what the CPU backend has besides (threads, the GEMM backend).
#include <cstddef>
#include <cstdint>
#include <string>

#include "kernels/ops.h"

namespace bertune::kernels::cpu {

void set_num_threads(int n);
int num_threads();
std::string gemm_backend();
// The builtin GEMM is always available and is what the BLAS path is tested against.
void gemm_builtin(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                  int lda, const float* B, int ldb, float beta, float* C, int ldc);
// The fp32 GEMM whatever the precision: what gemm() runs in FP32, and what attention
// multiplies with (attention stays fp32 in every precision, as on CUDA).
void gemm_fp32(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc);

#define BERTUNE_DEFAULT(value)
#define BERTUNE_OP(name, backends, front, ret, params, args) ret name params;
#include "kernels/op_table.inc"
#undef BERTUNE_OP
#undef BERTUNE_DEFAULT

}  // namespace bertune::kernels::cpu
