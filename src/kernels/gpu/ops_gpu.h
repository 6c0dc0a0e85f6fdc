#pragma once
// CUDA bodies of the ops in kernels/ops.h other than GEMM, linear and attention
// (gemm_gpu.h, attention_gpu.h). Same meaning as the CPU bodies (kernels/cpu/cpu.h),
// no shape checks (ops.cc has done them), every pointer device memory, every call
// asynchronous on the stream of runtime.h unless its comment says it waits.
// Defined in ops_gpu.cu, compiled only with BERTUNE_CUDA.
#include <cstddef>
#include <cstdint>

#include "kernels/ops.h"

namespace bertune::kernels::gpu {

void dropout_forward(float* y, const float* x, size_t n, const Dropout& drop);
void dropout_backward(float* dx, const float* dy, size_t n, const Dropout& drop);
void gelu_forward(float* y, const float* x, size_t n);
void gelu_backward(float* dx, const float* dy, const float* x, size_t n);
void tanh_forward(float* y, const float* x, size_t n);
void tanh_backward(float* dx, const float* dy, const float* y, size_t n);
void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                       const float* beta, int T, int H, float eps);
void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                        const float* mean, const float* rstd, const float* gamma, int T, int H);
void dropout_residual_layernorm_forward(float* out, float* s, float* mean, float* rstd,
                                        const float* y, const float* residual, const float* gamma,
                                        const float* beta, int T, int H, float eps,
                                        const Dropout& drop);
void bias_gelu_forward(float* u, float* g, const float* b, int T, int N);
void embeddings_forward(float* out, const int32_t* ids, const int32_t* positions,
                        const int32_t* types, const float* word, const float* position,
                        const float* token_type, int T, int H);
void embeddings_backward(float* dword, float* dposition, float* dtoken_type, const float* dout,
                         const int32_t* ids, const int32_t* positions, const int32_t* types, int T,
                         int H);
// Waits for the stream: the loss and the count come back to the host.
float cross_entropy_forward(float* probs, const float* logits, const int32_t* labels, int N, int C,
                            int* counted);
void cross_entropy_backward(float* dlogits, const float* probs, const int32_t* labels, int N, int C,
                            int counted);
// Waits for the stream (the sum comes back to the host); sum_squares_accumulate does not.
double sum_squares(const float* x, size_t n);
void sum_squares_accumulate(double* total, const float* x, size_t n);
void scale(float* x, size_t n, float factor);
void add_scaled(float* y, const float* x, size_t n, float alpha);
void adamw_update(float* p, float* g, float* m, float* v, size_t n, const AdamWStep& s,
                  bool zero_grad);
void adamw_update_ranges(float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         int count, const AdamWStep& decay, const AdamWStep& no_decay,
                         bool zero_grad);
// Nothing waits: the loss stays on the device (*loss_sum +=).
void cross_entropy_loss_accumulate(double* loss_sum, float* probs, const float* logits,
                                   const int32_t* labels, int N, int C, int counted);
// ranges: device memory; n = the end of the last range. Two launches: the update (or only
// the zeroed gradients) and the step count.
void adamw_update_device(float* p, float* g, float* m, float* v, const AdamWRange* ranges, int count,
                         size_t n, const AdamWDeviceStep& s);

}  // namespace bertune::kernels::gpu
