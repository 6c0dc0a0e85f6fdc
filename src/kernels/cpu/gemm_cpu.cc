// fp32 GEMM on the CPU: gemm() runs each call on the provider gemm_choice.h picks among
// gemm_providers.h's libraries (OpenBLAS, oneDNN, BLIS) and the builtin below, which keeps
// everything working without any of them and is what they are tested against.
#include <omp.h>

#include <algorithm>
#include <string>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_bf16_cpu.h"
#include "kernels/cpu/gemm_choice.h"
#include "kernels/cpu/gemm_providers.h"
#include "util/error.h"
#include "util/threads.h"

namespace bertune::kernels::cpu {

void set_num_threads(int n) {
  n = n <= 0 ? omp_get_num_procs() : util::checked_thread_count(n);  // 100,000 would crash libgomp
  if (!gemm_mode().error.empty()) throw Error(gemm_mode().error);
  omp_set_num_threads(n);
  set_provider_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

std::string gemm_backend() { return gemm_choice_description(); }

// Simple but cache-aware: each thread owns rows of C; for each row the k loop
// streams rows of B (NN, TN) so the innermost loop is a contiguous axpy, or
// forms dot products of contiguous rows (NT).
void gemm_builtin(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
                  int lda, const float* B, int ldb, float beta, float* C, int ldc) {
#pragma omp parallel for schedule(static)
  for (int i = 0; i < M; ++i) {
    float* c = C + static_cast<size_t>(i) * ldc;
    if (beta == 0.f) {
      std::fill(c, c + N, 0.f);
    } else if (beta != 1.f) {
      for (int j = 0; j < N; ++j) c[j] *= beta;
    }
    if (trans_b) {
      for (int j = 0; j < N; ++j) {
        const float* b = B + static_cast<size_t>(j) * ldb;
        float acc = 0.f;
        if (!trans_a) {
          const float* a = A + static_cast<size_t>(i) * lda;
#pragma omp simd reduction(+ : acc)
          for (int k = 0; k < K; ++k) acc += a[k] * b[k];
        } else {
          for (int k = 0; k < K; ++k) acc += A[static_cast<size_t>(k) * lda + i] * b[k];
        }
        c[j] += alpha * acc;
      }
    } else {
      for (int k = 0; k < K; ++k) {
        float a = alpha * (trans_a ? A[static_cast<size_t>(k) * lda + i]
                                   : A[static_cast<size_t>(i) * lda + k]);
        const float* b = B + static_cast<size_t>(k) * ldb;
#pragma omp simd
        for (int j = 0; j < N; ++j) c[j] += a * b[j];
      }
    }
  }
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  if (K > 0 && M > 0 && N > 0 && gemm_precision() == Precision::BF16)  // kernels/cpu/gemm_bf16_cpu.h
    return gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  gemm_fp32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_fp32(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  if (K == 0 || M == 0 || N == 0) {  // BLAS leaves C untouched when K = 0 only if beta == 1
    gemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  gemm_provider_for(trans_a, trans_b, M, N, K).run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace bertune::kernels::cpu
