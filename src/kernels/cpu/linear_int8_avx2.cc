// The AVX2 int8 kernel (CPUs without AVX-512 VNNI, e.g. AMD Zen 2/3, Intel Haswell to
// Comet Lake), compiled with a target attribute so the binary still runs everywhere;
// linear_int8_cpu.cc chooses it by cpuid at run time.
//
// Exactness: vpmaddubsw (u8 x s8 pairs into int16) saturates, so it would not give the
// other kernels' integers. Here both operands are sign-extended to int16 and vpmaddwd
// adds pairs of int16 products into int32 lanes: |2 * 127 * 127| < 2^15 * 2^16, exact.
// So the int32 accumulations, and hence the outputs, equal the portable kernel's bit
// for bit (tested).
//
// Layout: the weights are read straight from the VNNI packing (16-column blocks of
// [k/4][16 columns][4 k] bytes), so no second packed copy is kept. 16 bytes = 4 columns
// x 4 k, sign-extended (vpmovsxbw) to one ymm; an activation row is widened to int16 once
// per call and its 4 k broadcast as one 64-bit lane, so vpmaddwd leaves two partial sums
// per column (k0k1, k2k3). A tile is up to 6 rows x 8 columns (2 accumulators per row);
// one vphaddd + vpermq per row at the end turns the partial sums into 8 column sums.
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "kernels/cpu/int8_cpu.h"
#include "util/error.h"

namespace bertune::kernels::cpu {

bool cpu_has_avx2() {
#if defined(__x86_64__)
  static const bool has = [] {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }();
  return has;
#else
  return false;
#endif
}

#if defined(__x86_64__)
#define BERTUNE_AVX2 __attribute__((target("avx2,fma")))

// amax as the scalar loop takes it: _mm256_max_ps returns its second operand when either
// is NaN, so a NaN is skipped as std::max(amax, NaN) skips it; max itself is exact, so
// the lane order does not matter. Then q = clamp(round_half_even(x * inv)), the same
// single-rounded product and the same rounding as std::nearbyint.
BERTUNE_AVX2 float quantize_row_avx2(const float* x, int n, int8_t* q) {
  const __m256 abs_mask = _mm256_castsi256_ps(_mm256_set1_epi32(0x7fffffff));
  __m256 m = _mm256_setzero_ps();
  int k = 0;
  for (; k + 8 <= n; k += 8) m = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + k), abs_mask), m);
  float lanes[8];
  _mm256_storeu_ps(lanes, m);
  float amax = 0.f;
  for (float v : lanes) amax = std::max(amax, v);
  for (int j = k; j < n; ++j) amax = std::max(amax, std::fabs(x[j]));
  const float inv = amax > 0.f ? 127.f / amax : 0.f;
  const __m256 vinv = _mm256_set1_ps(inv), lo = _mm256_set1_ps(-127.f), hi = _mm256_set1_ps(127.f);
  k = 0;
  for (; k + 8 <= n; k += 8) {
    __m256 v = _mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(x + k), vinv), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __m256i i = _mm256_cvtps_epi32(_mm256_min_ps(_mm256_max_ps(v, lo), hi));  // integral: exact
    const __m128i w16 = _mm_packs_epi32(_mm256_castsi256_si128(i), _mm256_extracti128_si256(i, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + k), _mm_packs_epi16(w16, w16));
  }
  for (; k < n; ++k) q[k] = static_cast<int8_t>(std::clamp(std::nearbyint(x[k] * inv), -127.f, 127.f));
  return amax / 127.f;
}

namespace {

constexpr int kTileCols = 8;        // columns per register tile (half a packed block)
constexpr int kTileRows = 6;        // rows per register tile (see avx2_tile)
constexpr int kPanelCols = 64;      // columns of one parallel task
constexpr int kRowsPerTask = 36;    // rows of one parallel task (6 tiles)
constexpr size_t kParallelWork = 1 << 16;

BERTUNE_AVX2 void widen_to_int16(const int8_t* q, size_t n, int16_t* out) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i),
                        _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i))));
  for (; i < n; ++i) out[i] = q[i];
}

struct Epilogue {
  const float* row_scales;  // [MR]
  const float* wscale;      // scale of the tile's first column
  const float* bias;        // of the tile's first column, or null
  float* y;                 // y of the tile's first row and column
  int out;                  // row stride of y
  int cols;                 // valid columns of the tile, 1..8
};

// y = fma(float(acc), row_scale * scale[o], bias[o]) for `rows` rows of 8 column sums,
// exactly as the other kernels write it.
BERTUNE_AVX2 void store_tile(const __m256i* sums, int rows, const Epilogue& e) {
  const __m256i mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(e.cols), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  const __m256 wscale = _mm256_maskload_ps(e.wscale, mask);
  const __m256 bias = e.bias ? _mm256_maskload_ps(e.bias, mask) : _mm256_setzero_ps();
  for (int r = 0; r < rows; ++r) {
    const __m256i acc = _mm256_permute4x64_epi64(sums[r], 0xD8);  // 64-bit lanes 0, 2, 1, 3
    const __m256 s = _mm256_mul_ps(_mm256_set1_ps(e.row_scales[r]), wscale);
    const __m256 v = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc), s, bias);
    float* dst = e.y + size_t(r) * e.out;
    if (e.cols == kTileCols) _mm256_storeu_ps(dst, v);
    else _mm256_maskstore_ps(dst, mask, v);
  }
}

BERTUNE_AVX2 __attribute__((always_inline)) inline void madd_row(const int16_t* a4, __m256i b0, __m256i b1,
                                                                __m256i& c0, __m256i& c1) {
  long long four;  // a[k..k+3] as int16
  std::memcpy(&four, a4, 8);
  const __m256i a = _mm256_set1_epi64x(four);
  c0 = _mm256_add_epi32(c0, _mm256_madd_epi16(a, b0));
  c1 = _mm256_add_epi32(c1, _mm256_madd_epi16(a, b1));
}

// One MR x 8 tile (MR <= 6: 12 accumulators + 2 weights + 1 activation + 1 product = the
// 16 ymm registers). A: MR int16 rows [k_padded]; B: the tile's first byte in a packed
// block (stride 64 bytes per 4 k). Named accumulators, not an array: GCC 12 keeps an
// array's tile in memory.
template <int MR>
BERTUNE_AVX2 void avx2_tile(const int16_t* A, int k_padded, const int8_t* B, const Epilogue& e) {
  const __m256i z = _mm256_setzero_si256();
  __m256i c00 = z, c01 = z, c10 = z, c11 = z, c20 = z, c21 = z, c30 = z, c31 = z, c40 = z, c41 = z, c50 = z, c51 = z;
  const size_t ld = k_padded;
  const int k4n = k_padded / 4;
  for (int k4 = 0; k4 < k4n; ++k4) {
    const int8_t* b = B + size_t(k4) * kPackedCols * 4;
    const __m256i b0 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b)));
    const __m256i b1 = _mm256_cvtepi8_epi16(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b + 16)));
    const int16_t* a = A + size_t(k4) * 4;
    madd_row(a, b0, b1, c00, c01);
    if constexpr (MR > 1) madd_row(a + ld, b0, b1, c10, c11);
    if constexpr (MR > 2) madd_row(a + 2 * ld, b0, b1, c20, c21);
    if constexpr (MR > 3) madd_row(a + 3 * ld, b0, b1, c30, c31);
    if constexpr (MR > 4) madd_row(a + 4 * ld, b0, b1, c40, c41);
    if constexpr (MR > 5) madd_row(a + 5 * ld, b0, b1, c50, c51);
  }
  // Without this barrier GCC 12 interleaves the epilogue's vphaddd pairs into the loop's
  // data flow and spills half the accumulators to the stack on every iteration.
  asm("" : "+x"(c00), "+x"(c01), "+x"(c10), "+x"(c11), "+x"(c20), "+x"(c21), "+x"(c30), "+x"(c31), "+x"(c40),
      "+x"(c41), "+x"(c50), "+x"(c51));
  // vphaddd: [c0 c1 c4 c5 | c2 c3 c6 c7] per row; the epilogue's vpermq puts them in order.
  const __m256i sums[6] = {_mm256_hadd_epi32(c00, c01), _mm256_hadd_epi32(c10, c11), _mm256_hadd_epi32(c20, c21),
                           _mm256_hadd_epi32(c30, c31), _mm256_hadd_epi32(c40, c41), _mm256_hadd_epi32(c50, c51)};
  store_tile(sums, MR, e);
}

using TileFn = void (*)(const int16_t*, int, const int8_t*, const Epilogue&);
TileFn tile_fn(int mr) {
  switch (mr) {
    case 1: return avx2_tile<1>;
    case 2: return avx2_tile<2>;
    case 3: return avx2_tile<3>;
    case 4: return avx2_tile<4>;
    case 5: return avx2_tile<5>;
    default: return avx2_tile<6>;
  }
}

// Rows [t0, t1) x columns [c0, c1) (c0 a multiple of 8): tiles of 6 rows, each row tile
// going over the panel's columns while its activations stay in L1.
void avx2_task(const QuantizedLinear& w, const float* b, const int16_t* A, const float* row_scales, int k_padded,
               float* y, int t0, int t1, int c0, int c1) {
  const size_t block_bytes = size_t(k_padded) * kPackedCols;
  for (int t = t0; t < t1; t += kTileRows) {
    const int mr = std::min(kTileRows, t1 - t);
    const TileFn tile = tile_fn(mr);
    for (int c = c0; c < c1; c += kTileCols) {
      const int8_t* B = w.packed.data() + size_t(c / kPackedCols) * block_bytes + (c % kPackedCols) * 4;
      const Epilogue e{row_scales + t, w.scale.data() + c, b ? b + c : nullptr, y + size_t(t) * w.out + c, w.out,
                       std::min(kTileCols, c1 - c)};
      tile(A + size_t(t) * k_padded, k_padded, B, e);
    }
  }
}

}  // namespace

void forward_avx2(float* y, const QuantizedLinear& w, const float* b, int T, const int8_t* q, const float* row_scales,
                  int k_padded) {
  static thread_local std::vector<int16_t> a16;  // activations as int16: no allocation per call
  a16.resize(size_t(T) * k_padded);
  widen_to_int16(q, a16.size(), a16.data());
  const int16_t* A = a16.data();
  const int panels = (w.out + kPanelCols - 1) / kPanelCols;
  const int row_tasks = (T + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for collapse(2) schedule(static) if (size_t(T) * w.out * w.in > kParallelWork)
  for (int p = 0; p < panels; ++p)
    for (int rt = 0; rt < row_tasks; ++rt)
      avx2_task(w, b, A, row_scales, k_padded, y, rt * kRowsPerTask, std::min(T, (rt + 1) * kRowsPerTask),
                p * kPanelCols, std::min(w.out, (p + 1) * kPanelCols));
}

#else  // not x86-64: never chosen (cpu_has_avx2() is false)

float quantize_row_avx2(const float*, int, int8_t*) { throw Error("int8 kernel avx2: not an x86-64 build"); }
void forward_avx2(float*, const QuantizedLinear&, const float*, int, const int8_t*, const float*, int) {
  throw Error("int8 kernel avx2: not an x86-64 build");
}

#endif

}  // namespace bertune::kernels::cpu
