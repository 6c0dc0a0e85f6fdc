#pragma once
// CPU bodies of the int8 ops in kernels/ops.h (ops_int8.cc checks shapes first).
#include "kernels/ops.h"

namespace bertune::kernels::cpu {

void quantize_linear(QuantizedLinear& w, const float* W);  // w.in / w.out set
void pack_quantized_linear(QuantizedLinear& w);
void linear_int8_forward(float* y, const float* x, const QuantizedLinear& w, const float* b, int T);
void set_int8_kernel(Int8Kernel k);
const char* int8_kernel_name();
bool cpu_has_avx512_vnni();

}  // namespace bertune::kernels::cpu
