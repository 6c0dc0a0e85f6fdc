#pragma once
// The GEMM precision of the CUDA bodies of gemm, linear_forward and
// linear_backward (declared in ops_gpu.h from the op table; all pointers device
// memory, shapes already checked by the front). Defined in gemm_gpu.cu,
// compiled only with BERTUNE_CUDA; this header is plain C++ so that ops.cc
// (g++) can include it.
//
// Everything runs through one cuBLASLt handle and one 32 MiB workspace,
// created on first use, on the stream of kernels/gpu/runtime.h (the per-thread
// default stream). Matmul plans (descriptors + the heuristic's algorithm) are
// cached per shape, so a repeated shape costs one cublasLtMatmul call.
#include "kernels/gpu/ops_gpu.h"
#include "kernels/ops.h"

namespace bertune::kernels::gpu {

// What the matrix units compute with: kernels::Precision (ops.h). Outputs,
// accumulation, C and the master weights stay fp32 in every mode.
//   FP32: exact fp32 products (SIMT or the fp32 tensor-core path cuBLAS picks
//         that keeps full fp32 accuracy); what the CPU reference matches.
//   TF32: fp32 operands rounded to tf32 (10-bit mantissa) inside the tensor cores.
//   BF16: operands converted to bf16 (8-bit mantissa) per call, fp32 accumulation.
using Precision = kernels::Precision;
// Process-wide; takes effect at the next GEMM. Default FP32.
void set_precision(Precision p);
Precision precision();
using kernels::precision_name;  // "fp32" | "tf32" | "bf16"

// gemm, linear_forward and linear_backward: kernels/gpu/ops_gpu.h (from the op table).

}  // namespace bertune::kernels::gpu
