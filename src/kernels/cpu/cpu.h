#pragma once
// CPU bodies of the ops in kernels/ops.h (same meaning, no shape checks:
// ops.cc has already done them).
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
void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc);

void dropout_forward(float* y, const float* x, size_t n, const Dropout& drop);
void dropout_backward(float* dx, const float* dy, size_t n, const Dropout& drop);
void dropout_rows(float* y, const float* x, const int32_t* rows, int n_rows, int width,
                  const Dropout& drop);
void linear_forward(float* y, const float* x, const float* W, const float* b, int T, int in,
                    int out);
void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int T, int in, int out, bool accumulate_dx);
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
void attention_forward(float* ctx, float* probs, const float* qkv, const AttentionShape& shape,
                       const Dropout& drop);
void attention_backward(float* dqkv, const float* dctx, const float* qkv, const float* probs,
                        const AttentionShape& shape, const Dropout& drop);
void attention_first_query_forward(float* ctx, float* probs, const float* q, const float* kv,
                                   const AttentionShape& shape, const Dropout& drop);
void attention_first_query_backward(float* dq, float* dkv, const float* dctx, const float* q,
                                    const float* kv, const float* probs, const AttentionShape& shape,
                                    const Dropout& drop);
float cross_entropy_forward(float* probs, const float* logits, const int32_t* labels, int N, int C,
                            int* counted);
void cross_entropy_backward(float* dlogits, const float* probs, const int32_t* labels, int N, int C,
                            int counted);
double sum_squares(const float* x, size_t n);
void scale(float* x, size_t n, float factor);
void add_scaled(float* y, const float* x, size_t n, float alpha);
void adamw_update(float* p, float* g, float* m, float* v, size_t n, const AdamWStep& s,
                  bool zero_grad);

}  // namespace bertune::kernels::cpu
