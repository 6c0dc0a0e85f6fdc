// fp32 GEMM on the CPU.
//
// Debian's OpenBLAS 0.3.21 does not recognise Zen 4 and falls back to SSE3
// kernels (~5x slower) unless OPENBLAS_CORETYPE names a core BEFORE the
// library loads. So nothing BLAS is linked at build time: on first use we
// set the core type (when the CPU has AVX-512 and the user has not chosen),
// dlopen the OpenMP build of OpenBLAS — it shares GCC's libgomp pool with our
// own kernels, where the pthread build would bring a second pool that spins
// against ours on a 2-core machine — and resolve cblas_sgemm with dlsym.
// Without it, a builtin blocked GEMM keeps everything working (slower).
#include <dlfcn.h>
#include <omp.h>

#include <algorithm>
#include <cstdlib>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_bf16_cpu.h"
#include "util/threads.h"

namespace bertune::kernels::cpu {
namespace {

using sgemm_fn = void (*)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha,
                          const float* A, int lda, const float* B, int ldb, float beta, float* C,
                          int ldc);
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

struct Blas {
  sgemm_fn sgemm = nullptr;
  void (*set_threads)(int) = nullptr;
  std::string name = "builtin";
};

Blas load_blas() {
  Blas blas;
  const char* disable = std::getenv("BERTUNE_NO_BLAS");
  if (disable && *disable && std::string(disable) != "0") return blas;
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq") &&
      __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vl"))
    setenv("OPENBLAS_CORETYPE", "SkylakeX", /*overwrite=*/0);
  std::vector<std::string> candidates;
  if (const char* path = std::getenv("BERTUNE_BLAS"); path && *path) candidates.push_back(path);
  candidates.push_back("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0");
  candidates.push_back("/usr/lib/aarch64-linux-gnu/openblas-openmp/libopenblas.so.0");
  for (const auto& path : candidates) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!lib) continue;
    auto sgemm = reinterpret_cast<sgemm_fn>(dlsym(lib, "cblas_sgemm"));
    if (!sgemm) {
      dlclose(lib);
      continue;
    }
    blas.sgemm = sgemm;
    blas.set_threads = reinterpret_cast<void (*)(int)>(dlsym(lib, "openblas_set_num_threads"));
    auto corename = reinterpret_cast<char* (*)()>(dlsym(lib, "openblas_get_corename"));
    auto config = reinterpret_cast<char* (*)()>(dlsym(lib, "openblas_get_config"));
    std::string name = "openblas (";
    name.append(path).append(")");
    if (config) name.append(" ").append(config());
    if (corename) name.append(" core=").append(corename());
    blas.name = std::move(name);
    if (blas.set_threads) blas.set_threads(omp_get_max_threads());
    break;
  }
  return blas;
}

Blas& blas() {
  static Blas instance = load_blas();
  return instance;
}

}  // namespace

void set_num_threads(int n) {
  n = n <= 0 ? omp_get_num_procs() : util::checked_thread_count(n);  // 100,000 would crash libgomp
  omp_set_num_threads(n);
  if (blas().set_threads) blas().set_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

std::string gemm_backend() { return blas().name; }

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
  if (K > 0 && gemm_precision() == Precision::BF16)  // kernels/cpu/gemm_bf16_cpu.h
    return gemm_bf16(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  gemm_fp32(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

void gemm_fp32(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  if (K == 0) {  // BLAS leaves C untouched when K = 0 only if beta == 1
    gemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    return;
  }
  if (auto sgemm = blas().sgemm) {
    sgemm(kRowMajor, trans_a ? kTrans : kNoTrans, trans_b ? kTrans : kNoTrans, M, N, K, alpha, A,
          lda, B, ldb, beta, C, ldc);
    return;
  }
  gemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

}  // namespace bertune::kernels::cpu
