#pragma once
// What the int8 CPU kernels share besides the linear_int8_forward body (kernels/cpu/cpu.h):
// quantizing and packing weights, and the kernel choice (ops_int8.cc checks shapes first).
#include <cstdint>

#include "kernels/cpu/cpu.h"
#include "kernels/ops.h"

namespace bertune::kernels::cpu {

void quantize_linear(QuantizedLinear& w, const float* W);  // w.in / w.out set
void pack_quantized_linear(QuantizedLinear& w);
void set_int8_kernel(Int8Kernel k);
const char* int8_kernel_name();
bool cpu_has_avx512_vnni();
bool cpu_has_avx2();

// Shared by linear_int8_cpu.cc, linear_int8_avx2.cc and linear_int8_onednn.cc (not part of
// the op front).
constexpr int kPackedCols = 16;  // columns per block of QuantizedLinear::packed
// AVX2 bodies (linear_int8_avx2.cc); call them only when cpu_has_avx2().
// quantize_row_avx2: the same bits as the scalar quantize_row for finite x.
float quantize_row_avx2(const float* x, int n, int8_t* q);
// y[T, out] from activations q [T, k_padded] (int8, zero padded) with per-row scales.
void forward_avx2(float* y, const QuantizedLinear& w, const float* b, int T, const int8_t* q,
                  const float* row_scales, int k_padded);
// The oneDNN body (linear_int8_onednn.cc): null when it can run here, else why not (a build
// without oneDNN; oneDNN without VNNI, where its products saturate).
const char* onednn_int8_unavailable();
// y[T, out] = linear_int8(x): quantization, oneDNN's integer GEMM, our epilogue.
void forward_onednn(float* y, const float* x, const QuantizedLinear& w, const float* b, int T);

}  // namespace bertune::kernels::cpu
