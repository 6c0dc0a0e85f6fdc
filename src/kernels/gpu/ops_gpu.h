#pragma once
// CUDA bodies of the ops in kernels/ops.h: one per row of kernels/op_table.inc whose
// backends are CPU_CUDA, declared from the table. Same meaning as the CPU bodies
// (kernels/cpu/cpu.h), no shape checks (the fronts have done them), every pointer device
// memory, every call asynchronous on the stream of runtime.h unless the row says it waits
// (cross_entropy_forward and sum_squares bring a result back to the host).
// Defined in ops_gpu.cu, gemm_gpu.cu (gemm, linear) and attention_gpu.cu, compiled only
// with BERTUNE_CUDA; plain C++, so that ops.cc (g++) includes it.
#include <cstddef>
#include <cstdint>

#include "kernels/ops.h"

namespace bertune::kernels::gpu {

#define BERTUNE_DEFAULT(value)
#define BERTUNE_OP(name, backends, front, ret, params, args) BERTUNE_IF_CUDA_##backends(ret name params;)
#include "kernels/op_table.inc"
#undef BERTUNE_OP
#undef BERTUNE_DEFAULT

}  // namespace bertune::kernels::gpu
