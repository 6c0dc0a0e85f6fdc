// The arithmetic peak of this CPU, measured: loops of independent multiply-adds (16
// accumulators, more than the FMA units' latency x count needs) for fp32 (FMA), bf16
// (vdpbf16ps) and int8 (vpdpbusd). The rate is cores x lanes x FMA units x clock without
// trusting a nominal clock (a virtual machine's /proc/cpuinfo MHz is the host's base clock).
// The AVX-512 loops are chosen by cpuid at run time (tests/check_isa allows functions named
// peak_isa_*).
#include <omp.h>

#include <algorithm>
#include <chrono>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/cpu_runtime.h"

namespace bertune::kernels {
namespace {

using clock_type = std::chrono::steady_clock;
constexpr long kIters = 1 << 20;  // per timing: ~10-20 ms of one core
volatile float kept = 0;

#if defined(__x86_64__)
template <typename V>
float sum_lanes(V v) {  // any vector's bits as floats: only to keep the results alive
  float out[sizeof(V) / sizeof(float)];
  __builtin_memcpy(out, &v, sizeof out);
  float s = 0;
  for (float x : out) s += x;
  return s;
}

// Defines `double NAME(long iters, float* sink)`: ACC independent accumulators of type V,
// each `a = STEP(a)` once per iteration (OPS operations: 2 per multiply-add); returns the
// operations done and adds the results to *sink.
#define BERTUNE_PEAK_LOOP(NAME, TARGET, V, ACC, INIT, STEP, OPS)               \
  __attribute__((target(TARGET))) double NAME(long iters, float* sink) {       \
    V a[ACC];                                                                  \
    for (int i = 0; i < ACC; ++i) a[i] = INIT(i);                              \
    for (long n = 0; n < iters; ++n)                                           \
      for (int i = 0; i < ACC; ++i) a[i] = STEP(a[i]);                         \
    for (int i = 0; i < ACC; ++i) *sink += sum_lanes(a[i]);                    \
    return double(ACC) * (OPS) * iters;                                        \
  }

#define FP32_INIT(i) _mm512_set1_ps(1.f + (i) * 1e-3f)
#define FP32_STEP(a) _mm512_fmadd_ps(a, _mm512_set1_ps(0.9999999f), _mm512_set1_ps(1e-7f))
BERTUNE_PEAK_LOOP(peak_isa_avx512_fp32, "avx512f", __m512, 16, FP32_INIT, FP32_STEP, 16 * 2)
#define BF16_INIT(i) _mm512_set1_ps(float(i))
#define BF16_STEP(a) _mm512_dpbf16_ps(a, (__m512bh)_mm512_set1_epi16(0x3c00), (__m512bh)_mm512_set1_epi16(0x3c00))
BERTUNE_PEAK_LOOP(peak_isa_avx512_bf16, "avx512f,avx512bf16", __m512, 16, BF16_INIT, BF16_STEP, 32 * 2)
#define INT8_INIT(i) _mm512_set1_epi32(i)
#define INT8_STEP(a) _mm512_dpbusd_epi32(a, _mm512_set1_epi8(1), _mm512_set1_epi8(-1))
BERTUNE_PEAK_LOOP(peak_isa_avx512_int8, "avx512f,avx512vnni", __m512i, 16, INT8_INIT, INT8_STEP, 64 * 2)
#define AVX2_INIT(i) _mm256_set1_ps(1.f + (i) * 1e-3f)
#define AVX2_STEP(a) _mm256_fmadd_ps(a, _mm256_set1_ps(0.9999999f), _mm256_set1_ps(1e-7f))
BERTUNE_PEAK_LOOP(peak_avx2_fp32, "avx2,fma", __m256, 12, AVX2_INIT, AVX2_STEP, 8 * 2)  // 16 ymm registers
#endif

// Operations per second of `loop` on `threads` threads at once: the best of three timings.
template <typename Loop>
double rate(Loop loop, int threads) {
  double best = 0;
  float sink = 0;
  for (int round = 0; round < 4; ++round) {  // round 0 wakes the cores up
    double ops = 0;
    auto t0 = clock_type::now();
#pragma omp parallel num_threads(threads) reduction(+ : ops, sink)
    ops += loop(kIters, &sink);
    const double s = std::chrono::duration<double>(clock_type::now() - t0).count();
    if (round > 0) best = std::max(best, ops / s);
  }
  kept = sink;  // the loops' results are used
  return best;
}

}  // namespace

ComputePeak measure_compute_peak(int threads) {
  ComputePeak p;
  p.threads = threads;
#if defined(__x86_64__)
  __builtin_cpu_init();
  const bool avx512 = __builtin_cpu_supports("avx512f");
  const auto fp32 = avx512 ? peak_isa_avx512_fp32 : peak_avx2_fp32;
  p.isa = avx512 ? "avx512" : "avx2";
  p.fp32_core = rate(fp32, 1) / 1e9;
  p.fp32_all = rate(fp32, threads) / 1e9;
  if (avx512 && __builtin_cpu_supports("avx512bf16")) {
    p.bf16_core = rate(peak_isa_avx512_bf16, 1) / 1e9;
    p.bf16_all = rate(peak_isa_avx512_bf16, threads) / 1e9;
  }
  if (avx512 && __builtin_cpu_supports("avx512vnni")) {
    p.int8_core = rate(peak_isa_avx512_int8, 1) / 1e9;
    p.int8_all = rate(peak_isa_avx512_int8, threads) / 1e9;
  }
  p.lanes = avx512 ? 16 : 8;
#endif
  return p;
}

}  // namespace bertune::kernels
