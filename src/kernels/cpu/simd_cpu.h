#pragma once
// The vector width of the elementwise and row kernels, chosen at run time. The default build
// targets x86-64-v3 (AVX2, 8 floats); on a CPU with AVX-512 (F, BW, DQ, VL) the same loop
// bodies run from a second copy compiled for 16-float registers. One source body, two
// compilations:
//
//   BERTUNE_SIMD_BODY void gelu_span_body(float* y, const float* x, size_t n) { ...omp simd... }
//   BERTUNE_SIMD_KERNEL(gelu_span, (float* y, const float* x, size_t n), (y, x, n))
//
// defines gelu_span_base (the build's own ISA), gelu_span_simd512 (AVX-512, only ever called
// where cpuid has it; tests/check_isa allows AVX-512 in names ending _simd512) and
// gelu_span, which calls the one vector_bits() picks. The body is inlined into each copy and
// vectorised there, so elementwise results are the same bits in both; a body that sums
// (omp simd reduction) adds in another order at the other width.
#include <cstddef>

namespace bertune::kernels::cpu {

// 512 where the CPU has AVX-512 F/BW/DQ/VL and neither BERTUNE_CPU_SIMD=avx2 nor
// set_vector_bits(256) asked for the narrower copy; else 256.
int vector_bits();
// 256 or 512 (512 only where the CPU has it); Error otherwise. Tests and benches run both.
void set_vector_bits(int bits);
// Whether the AVX-512 copies can run here.
bool cpu_has_simd512();

#define BERTUNE_SIMD_BODY __attribute__((always_inline)) inline

#if defined(__x86_64__)
#define BERTUNE_HAVE_SIMD512 1
#define BERTUNE_SIMD512_TARGET __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,prefer-vector-width=512")))
#define BERTUNE_SIMD_KERNEL(name, params, args)                  \
  void name##_base params { name##_body args; }                  \
  BERTUNE_SIMD512_TARGET void name##_simd512 params { name##_body args; } \
  inline void name params {                                      \
    if (vector_bits() == 512)                                    \
      name##_simd512 args;                                       \
    else                                                         \
      name##_base args;                                          \
  }
#else  // another architecture: one copy
#define BERTUNE_SIMD_KERNEL(name, params, args) \
  inline void name params { name##_body args; }
#endif

// f(begin, end) over [0, n) split into one contiguous span per thread of the pool (a
// multiple of 16 elements each), or on the calling thread for n <= grain.
template <class F>
void parallel_spans(size_t n, size_t grain, F&& f);

}  // namespace bertune::kernels::cpu

#include <omp.h>

#include <algorithm>

namespace bertune::kernels::cpu {

template <class F>
void parallel_spans(size_t n, size_t grain, F&& f) {
  if (n <= grain || omp_get_max_threads() == 1) {
    if (n) f(size_t(0), n);
    return;
  }
#pragma omp parallel
  {
    const size_t nt = size_t(omp_get_num_threads()), id = size_t(omp_get_thread_num());
    const size_t per = ((n + nt - 1) / nt + 15) / 16 * 16;
    const size_t b = std::min(n, id * per), e = std::min(n, b + per);
    if (b < e) f(b, e);
  }
}

}  // namespace bertune::kernels::cpu
