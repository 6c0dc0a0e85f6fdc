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
#define BERTUNE_X16(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) \
  op(8) op(9) op(10) op(11) op(12) op(13) op(14) op(15)

__attribute__((target("avx512f"))) float peak_isa_sum_lanes(__m512 v) {
  alignas(64) float out[16];
  _mm512_store_ps(out, v);
  float s = 0;
  for (float x : out) s += x;
  return s;
}
#define sum_lanes peak_isa_sum_lanes

// Each returns the operations (2 per multiply-add) it did; `sink` keeps the results alive.
__attribute__((target("avx512f"))) double peak_isa_avx512_fp32(long iters, float* sink) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(1.f + i * 1e-3f);
#define STEP(i) a##i = _mm512_fmadd_ps(a##i, m, c);
#define SUM(i) s = _mm512_add_ps(s, a##i);
  const __m512 m = _mm512_set1_ps(0.9999999f), c = _mm512_set1_ps(1e-7f);
  BERTUNE_X16(DECL)
  for (long n = 0; n < iters; ++n) { BERTUNE_X16(STEP) }
  __m512 s = _mm512_setzero_ps();
  BERTUNE_X16(SUM)
  *sink += sum_lanes(s);
  return 16.0 * 16 * 2 * iters;
#undef DECL
#undef STEP
#undef SUM
}

__attribute__((target("avx512f,avx512bf16"))) double peak_isa_avx512_bf16(long iters, float* sink) {
#define DECL(i) __m512 a##i = _mm512_set1_ps(float(i));
#define STEP(i) a##i = _mm512_dpbf16_ps(a##i, x, y);
#define SUM(i) s = _mm512_add_ps(s, a##i);
  const __m512bh x = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f)), y = x;
  BERTUNE_X16(DECL)
  for (long n = 0; n < iters; ++n) { BERTUNE_X16(STEP) }
  __m512 s = _mm512_setzero_ps();
  BERTUNE_X16(SUM)
  *sink += sum_lanes(s);
  return 16.0 * 32 * 2 * iters;
#undef DECL
#undef STEP
#undef SUM
}

__attribute__((target("avx512f,avx512vnni"))) double peak_isa_avx512_int8(long iters, float* sink) {
#define DECL(i) __m512i a##i = _mm512_set1_epi32(i);
#define STEP(i) a##i = _mm512_dpbusd_epi32(a##i, x, y);
#define SUM(i) s = _mm512_add_epi32(s, a##i);
  const __m512i x = _mm512_set1_epi8(1), y = _mm512_set1_epi8(-1);
  BERTUNE_X16(DECL)
  for (long n = 0; n < iters; ++n) { BERTUNE_X16(STEP) }
  __m512i s = _mm512_setzero_si512();
  BERTUNE_X16(SUM)
  *sink += sum_lanes(_mm512_castsi512_ps(s));  // the bits: only kept alive
  return 16.0 * 64 * 2 * iters;
#undef DECL
#undef STEP
#undef SUM
}

#define BERTUNE_X12(op) op(0) op(1) op(2) op(3) op(4) op(5) op(6) op(7) op(8) op(9) op(10) op(11)

double peak_avx2_fp32(long iters, float* sink) {  // 12 accumulators: 16 ymm registers
#define DECL(i) __m256 a##i = _mm256_set1_ps(1.f + i * 1e-3f);
#define STEP(i) a##i = _mm256_fmadd_ps(a##i, m, c);
#define SUM(i) s = _mm256_add_ps(s, a##i);
  const __m256 m = _mm256_set1_ps(0.9999999f), c = _mm256_set1_ps(1e-7f);
  BERTUNE_X12(DECL)
  for (long n = 0; n < iters; ++n) { BERTUNE_X12(STEP) }
  __m256 s = _mm256_setzero_ps();
  BERTUNE_X12(SUM)
  alignas(32) float out[8];
  _mm256_store_ps(out, s);
  for (float v : out) *sink += v;
  return 12.0 * 8 * 2 * iters;
#undef DECL
#undef STEP
#undef SUM
}

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
