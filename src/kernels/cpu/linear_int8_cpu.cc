// int8 linear layers: per-row dynamic activation quantization, int32 accumulation,
// fp32 dequantization (see kernels/ops.h for the arithmetic).
//
// Four kernels compute the same integers and the same final fma, so they agree bit
// for bit (tested); cpuid picks the first the CPU has, in this order:
// - AVX-512 VNNI: vpdpbusd multiplies u8 x s8 in groups of 4 and adds into int32
//   lanes. Activations are shifted to u8 (q + 128) and 128 * sum_k w[o, k] is taken
//   off afterwards. A 4-row x 64-column tile keeps 16 accumulators in registers; the
//   weights are packed so that one 64-byte load feeds 16 columns x 4 k.
//   Compiled with a target attribute and chosen by cpuid at RUN time, so one binary
//   runs on CPUs with and without VNNI.
// - AVX2 (linear_int8_avx2.cc): vpmaddwd on int16-widened operands, reading the same
//   packed weights; and an AVX2 activation quantization.
// - portable: plain int8 x int8 -> int32 loops the compiler vectorises, scalar
//   quantization (BERTUNE_INT8_KERNEL=portable runs no AVX code at all).
// - oneDNN (linear_int8_onednn.cc, builds with oneDNN): its int8 matmul for the integer
//   GEMM, our quantization and epilogue; first where it can run (oneDNN with VNNI), for
//   calls of kOnednnMinRows rows or more when chosen automatically (the next kernel below).
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__)
// GCC 12's _mm512_cvtepi32_ps passes an undefined vector as its (unused) merge source
// and warns about it wherever it is inlined.
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#include <immintrin.h>
#endif

#include "kernels/cpu/int8_cpu.h"
#include "kernels/cpu/simd_cpu.h"
#include "util/error.h"

namespace bertune::kernels::cpu {
namespace {

constexpr int kCols = kPackedCols;    // columns per packed block (one zmm of int32)
constexpr int kTileRows = 4;          // rows per register tile
constexpr int kTileBlocks = 4;        // packed blocks per register tile (64 columns)
constexpr int kRowsPerTask = 32;      // rows of one parallel task
constexpr size_t kParallelWork = 1 << 16;

int round_up(int v, int m) { return (v + m - 1) / m * m; }

// Symmetric quantization of one row: q = round(x * 127 / amax), scale = amax / 127.
float quantize_row_scalar(const float* x, int n, int8_t* q) {
  float amax = 0.f;
  for (int k = 0; k < n; ++k) amax = std::max(amax, std::fabs(x[k]));
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  for (int k = 0; k < n; ++k) {
    const float v = std::nearbyint(x[k] * inv);
    q[k] = static_cast<int8_t>(std::clamp(v, -127.f, 127.f));
  }
  return amax / 127.f;
}

std::atomic<int> g_kernel{-1};       // -1: not chosen yet, else Int8Kernel
std::atomic<bool> g_automatic{true};  // chosen by Auto (not forced)

// Below this many rows the automatic choice runs bertune's own kernel instead of oneDNN's:
// oneDNN's GEMM pads rows to 16 and has a fixed cost per call. Measured on Zen 5 (bert-base
// shapes, one thread, bench_int8 --rows): onednn/avx512-vnni = 0.4x at 1 row, 0.5-0.7x at 4,
// 0.8-1.1x at 8, 1.0-1.4x at 12, 1.3-2x from 16 up. Serving's [CLS]-only last layer runs 1 row.
constexpr int kOnednnMinRows = 12;

Int8Kernel best_own_kernel() {
  return cpu_has_avx512_vnni() ? Int8Kernel::Vnni : cpu_has_avx2() ? Int8Kernel::Avx2 : Int8Kernel::Portable;
}

Int8Kernel best_kernel() { return onednn_int8_unavailable() ? best_own_kernel() : Int8Kernel::Onednn; }

const char* kernel_name(Int8Kernel k) {
  switch (k) {
    case Int8Kernel::Onednn: return "onednn";
    case Int8Kernel::Vnni: return "avx512-vnni";
    case Int8Kernel::Avx2: return "avx2";
    default: return "portable";
  }
}

// Why kernel k cannot run here, or null.
const char* cannot_run(Int8Kernel k) {
  if (k == Int8Kernel::Vnni && !cpu_has_avx512_vnni()) return "this CPU has no AVX-512 VNNI";
  if (k == Int8Kernel::Avx2 && !cpu_has_avx2()) return "this CPU has no AVX2 and FMA";
  if (k == Int8Kernel::Onednn) return onednn_int8_unavailable();
  return nullptr;
}

// A value of BERTUNE_INT8_KERNEL; Auto for any other.
Int8Kernel kernel_from_name(const std::string& v) {
  return v == "portable" ? Int8Kernel::Portable
         : v == "avx2"   ? Int8Kernel::Avx2
         : v == "vnni" || v == "avx512-vnni" ? Int8Kernel::Vnni
         : v == "onednn"                     ? Int8Kernel::Onednn
                                             : Int8Kernel::Auto;
}

// BERTUNE_INT8_KERNEL=portable|avx2|vnni|onednn; a kernel that cannot run here, or another
// value, falls back to the best one with a note on stderr (a server should start anyway).
Int8Kernel kernel_from_environment() {
  const char* env = std::getenv("BERTUNE_INT8_KERNEL");
  if (!env || !*env) return best_kernel();
  const Int8Kernel asked = kernel_from_name(env);
  const char* why = asked == Int8Kernel::Auto ? "not one of portable, avx2, vnni, onednn" : cannot_run(asked);
  if (!why) return asked;
  const Int8Kernel best = best_kernel();
  std::fprintf(stderr, "bertune: BERTUNE_INT8_KERNEL=%s: %s; using %s\n", env, why, kernel_name(best));
  return best;
}

Int8Kernel resolved_kernel() {
  int k = g_kernel.load(std::memory_order_relaxed);
  if (k < 0) {
    const char* env = std::getenv("BERTUNE_INT8_KERNEL");
    k = static_cast<int>(kernel_from_environment());
    g_automatic.store(!env || !*env || static_cast<Int8Kernel>(k) != kernel_from_name(env),
                      std::memory_order_relaxed);
    g_kernel.store(k, std::memory_order_relaxed);
  }
  return static_cast<Int8Kernel>(k);
}

// The portable kernel quantizes with scalar code, the others with AVX2 (same bits), so
// forcing portable checks the vector quantization too.
float quantize_row(Int8Kernel kernel, const float* x, int n, int8_t* q) {
  return kernel != Int8Kernel::Portable && cpu_has_avx2() ? quantize_row_avx2(x, n, q) : quantize_row_scalar(x, n, q);
}

// Per-thread scratch for the quantized activations: no allocation per call.
struct Scratch {
  std::vector<int8_t> q;
  std::vector<float> scales;
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

void quantize_activations(Int8Kernel kernel, const float* x, int T, int in, int k_padded, Scratch& s) {
  s.q.assign(static_cast<size_t>(T) * k_padded, 0);
  s.scales.resize(T);
#pragma omp parallel for schedule(static) if (size_t(T) * in > kParallelWork)
  for (int t = 0; t < T; ++t)
    s.scales[t] = quantize_row(kernel, x + size_t(t) * in, in, s.q.data() + size_t(t) * k_padded);
}

void forward_portable(float* y, const QuantizedLinear& w, const float* b, int T, const Scratch& s, int k_padded) {
  const int in = w.in, out = w.out;
#pragma omp parallel for collapse(2) schedule(static) if (size_t(T) * out * in > kParallelWork)
  for (int t = 0; t < T; ++t)
    for (int o = 0; o < out; ++o) {
      const int8_t* xq = s.q.data() + size_t(t) * k_padded;
      const int8_t* wq = w.q.data() + size_t(o) * in;
      int32_t acc = 0;
      for (int k = 0; k < in; ++k) acc += int32_t(xq[k]) * int32_t(wq[k]);
      y[size_t(t) * out + o] = std::fma(static_cast<float>(acc), s.scales[t] * w.scale[o], b ? b[o] : 0.f);
    }
}

#if defined(__x86_64__)
#define BERTUNE_VNNI __attribute__((target("avx512f,avx512bw,avx512dq,avx512vl,avx512vnni")))

// One MR x (NB * 16) tile: A rows are u8 [MR][k_padded], B the NB packed blocks.
template <int MR, int NB>
BERTUNE_VNNI void vnni_tile(const uint8_t* A, int k_padded, const int8_t* B, size_t block_bytes,
                            const QuantizedLinear& w, const float* bias, const float* row_scales, float* y,
                            int col0) {
  __m512i acc[MR][NB];
  for (int r = 0; r < MR; ++r)
    for (int nb = 0; nb < NB; ++nb) acc[r][nb] = _mm512_setzero_si512();
  const int k4n = k_padded / 4;
  for (int k4 = 0; k4 < k4n; ++k4) {
    __m512i bv[NB];
    for (int nb = 0; nb < NB; ++nb) bv[nb] = _mm512_loadu_si512(B + nb * block_bytes + size_t(k4) * 64);
    for (int r = 0; r < MR; ++r) {
      int32_t four;
      std::memcpy(&four, A + size_t(r) * k_padded + size_t(k4) * 4, 4);
      const __m512i av = _mm512_set1_epi32(four);
      for (int nb = 0; nb < NB; ++nb) acc[r][nb] = _mm512_dpbusd_epi32(acc[r][nb], av, bv[nb]);
    }
  }
  const int out = w.out;
  for (int nb = 0; nb < NB; ++nb) {
    const int c = col0 + nb * kCols;
    if (c >= out) break;
    const int rem = std::min(kCols, out - c);
    const __mmask16 mask = static_cast<__mmask16>((1u << rem) - 1);
    const __m512i comp = _mm512_loadu_si512(w.compensation.data() + c);
    const __m512 wscale = _mm512_maskz_loadu_ps(mask, w.scale.data() + c);
    const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + c) : _mm512_setzero_ps();
    for (int r = 0; r < MR; ++r) {
      const __m512 f = _mm512_cvtepi32_ps(_mm512_sub_epi32(acc[r][nb], comp));
      const __m512 s = _mm512_mul_ps(_mm512_set1_ps(row_scales[r]), wscale);
      _mm512_mask_storeu_ps(y + size_t(r) * out + c, mask, _mm512_fmadd_ps(f, s, bv));
    }
  }
}

using TileFn = void (*)(const uint8_t*, int, const int8_t*, size_t, const QuantizedLinear&, const float*,
                        const float*, float*, int);
template <int MR>
constexpr TileFn tile_for(int nb) {
  return nb == 1 ? vnni_tile<MR, 1> : nb == 2 ? vnni_tile<MR, 2> : nb == 3 ? vnni_tile<MR, 3> : vnni_tile<MR, 4>;
}
TileFn tile_fn(int mr, int nb) {
  switch (mr) {
    case 1: return tile_for<1>(nb);
    case 2: return tile_for<2>(nb);
    case 3: return tile_for<3>(nb);
    default: return tile_for<4>(nb);
  }
}

void forward_vnni(float* y, const QuantizedLinear& w, const float* b, int T, Scratch& s, int k_padded) {
  // u8 = q + 128 (flipping the sign bit), in place: the scratch is ours.
  uint8_t* A = reinterpret_cast<uint8_t*>(s.q.data());
  for (size_t i = 0; i < s.q.size(); ++i) A[i] ^= 0x80;
  const int blocks = round_up(w.out, kCols) / kCols;
  const int panels = (blocks + kTileBlocks - 1) / kTileBlocks;
  const int row_tasks = (T + kRowsPerTask - 1) / kRowsPerTask;
  const size_t block_bytes = size_t(k_padded) * kCols;
#pragma omp parallel for collapse(2) schedule(static) if (size_t(T) * w.out * w.in > kParallelWork)
  for (int p = 0; p < panels; ++p)
    for (int rt = 0; rt < row_tasks; ++rt) {
      const int nb = std::min(kTileBlocks, blocks - p * kTileBlocks);
      const int col0 = p * kTileBlocks * kCols;
      const int8_t* B = w.packed.data() + size_t(p) * kTileBlocks * block_bytes;
      const int t_end = std::min(T, (rt + 1) * kRowsPerTask);
      for (int t = rt * kRowsPerTask; t < t_end; t += kTileRows) {
        const int mr = std::min(kTileRows, t_end - t);
        tile_fn(mr, nb)(A + size_t(t) * k_padded, k_padded, B, block_bytes, w, b, s.scales.data() + t,
                        y + size_t(t) * w.out, col0);
      }
    }
}
#endif

}  // namespace

bool cpu_has_avx512_vnni() {
#if defined(__x86_64__)
  return cpu_has_simd512() && __builtin_cpu_supports("avx512vnni");  // cpu_has_simd512 runs cpu_init
#else
  return false;
#endif
}

void set_int8_kernel(Int8Kernel k) {
  if (const char* why = cannot_run(k)) throw Error(std::string("int8 kernel ") + kernel_name(k) + ": " + why);
  if (k == Int8Kernel::Auto) {
    g_kernel.store(-1);
    resolved_kernel();
  } else {
    g_automatic.store(false);
    g_kernel.store(static_cast<int>(k));
  }
}

const char* int8_kernel_name() { return kernel_name(resolved_kernel()); }

void quantize_linear(QuantizedLinear& w, const float* W) {
  w.q.resize(size_t(w.out) * w.in);
  w.scale.resize(w.out);
  const Int8Kernel kernel = resolved_kernel();
#pragma omp parallel for schedule(static) if (size_t(w.out) * w.in > kParallelWork)
  for (int o = 0; o < w.out; ++o)
    w.scale[o] = quantize_row(kernel, W + size_t(o) * w.in, w.in, w.q.data() + size_t(o) * w.in);
}

void pack_quantized_linear(QuantizedLinear& w) {
  const int k_padded = round_up(w.in, 4), n_padded = round_up(w.out, kCols);
  const int k4n = k_padded / 4;
  w.onednn.reset();  // derived from the q it had
  w.packed.assign(size_t(n_padded) * k_padded, 0);
  w.compensation.assign(n_padded, 0);
  for (int o = 0; o < w.out; ++o) {
    const int block = o / kCols, c = o % kCols;
    int32_t sum = 0;
    for (int k = 0; k < w.in; ++k) {
      const int8_t v = w.q[size_t(o) * w.in + k];
      sum += v;
      w.packed[((size_t(block) * k4n + k / 4) * kCols + c) * 4 + k % 4] = v;
    }
    w.compensation[o] = 128 * sum;
  }
}

void linear_int8_forward(float* y, const float* x, const QuantizedLinear& w, const float* b, int T) {
  if (T == 0) return;
  const int k_padded = round_up(w.in, 4);
  Scratch& s = scratch();
  Int8Kernel kernel = resolved_kernel();
  if (kernel == Int8Kernel::Onednn) {
    if (T >= kOnednnMinRows || !g_automatic.load(std::memory_order_relaxed)) return forward_onednn(y, x, w, b, T);
    kernel = best_own_kernel();
  }
  quantize_activations(kernel, x, T, w.in, k_padded, s);
#if defined(__x86_64__)
  if (kernel == Int8Kernel::Vnni) return forward_vnni(y, w, b, T, s, k_padded);
#endif
  if (kernel == Int8Kernel::Avx2) return forward_avx2(y, w, b, T, s.q.data(), s.scales.data(), k_padded);
  forward_portable(y, w, b, T, s, k_padded);
}

}  // namespace bertune::kernels::cpu
