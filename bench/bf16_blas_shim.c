// bf16 GEMM emulation on the CPU, for the bf16 tolerances of tests/test_gpu_golden.cc
// (docs/gpu.md, "Tests"): a cblas_sgemm that rounds both operands to bf16 (round to nearest
// even, as gemm_gpu.cu's BF16 mode) before Debian's OpenBLAS multiplies them in fp32; every
// other symbol bertune asks for is forwarded. Not part of the build:
//   gcc -O2 -shared -fPIC -o /tmp/libbf16blas.so bench/bf16_blas_shim.c -ldl
//   BERTUNE_BLAS=/tmp/libbf16blas.so build/bertune_tests --gtest_filter='BertGolden.ClassificationCaseAsTheDeviceTestRunsIt:BertGolden.MaskedLMMatchesHuggingFace'
// (the fp32 bounds then fail; the printed errors are what the table quotes). The CPU attention
// multiplies through GEMMs too, so this rounds more than the GPU does (its attention is fp32).
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
typedef void (*sgemm_fn)(int, int, int, int, int, int, float, const float*, int, const float*, int, float, float*, int);
static void* real(void) {
  static void* h;
  if (!h) h = dlopen("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0", RTLD_NOW | RTLD_LOCAL);
  return h;
}
static float* rounded(const float* x, int rows, int cols, int ld) {
  size_t n = (size_t)(rows - 1) * ld + cols;
  float* y = malloc(n * sizeof(float));
  for (size_t i = 0; i < n; ++i) {
    uint32_t b; memcpy(&b, &x[i], 4);
    b = (b + 0x7FFFu + ((b >> 16) & 1u)) & 0xFFFF0000u;
    memcpy(&y[i], &b, 4);
  }
  return y;
}
void cblas_sgemm(int order, int ta, int tb, int M, int N, int K, float alpha, const float* A, int lda,
                 const float* B, int ldb, float beta, float* C, int ldc) {
  static sgemm_fn f;
  if (!f) f = (sgemm_fn)dlsym(real(), "cblas_sgemm");
  if (M == 0 || N == 0 || K == 0) { f(order, ta, tb, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc); return; }
  float* a = rounded(A, ta == 112 ? K : M, ta == 112 ? M : K, lda);
  float* b = rounded(B, tb == 112 ? N : K, tb == 112 ? K : N, ldb);
  f(order, ta, tb, M, N, K, alpha, a, lda, b, ldb, beta, C, ldc);
  free(a); free(b);
}
void openblas_set_num_threads(int n) { ((void (*)(int))dlsym(real(), "openblas_set_num_threads"))(n); }
char* openblas_get_corename(void) { return ((char* (*)(void))dlsym(real(), "openblas_get_corename"))(); }
char* openblas_get_config(void) { return ((char* (*)(void))dlsym(real(), "openblas_get_config"))(); }
