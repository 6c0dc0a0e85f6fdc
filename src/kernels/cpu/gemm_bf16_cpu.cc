// bf16 GEMMs on the CPU: operands rounded to bf16 by our own loop (the bits of the CUDA
// path and of bench/bf16_blas_shim.c), multiplied by oneDNN's matmul into fp32.
//
// Why our rounding rather than oneDNN's reorder or vcvtne2ps2bf16: the instruction flushes
// subnormal inputs to zero, and the reference bits (CUDA's __float2bfloat16_rn, the shim)
// round them. The integer form below is exact for every input and runs at memory speed.
//
// Why no cached bf16 copy of each weight (made once per optimizer step): rounding a BERT-base
// layer's weights for its forward and backward GEMMs measured 1-7 % of that layer's GEMM time
// on 2 cores (docs/performance.md), less than a cache's bookkeeping is worth; a per-call copy
// can never be stale, and the CUDA path decides the same.
//
// Primitives are cached per shape (transposes, M, N, K, ldc, alpha, beta). Packed batches
// change M every step, so the cache is bounded; a new M costs a primitive creation (~3 ms
// each, ~1 % of a BERT-base step). Primitives with a run-time M would be made once, but
// oneDNN 2.6 runs them on its generic gemm instead of the bf16 brgemm kernels: ~1.8x slower
// (docs/performance.md).
#include "kernels/cpu/gemm_bf16_cpu.h"

#include <cpuid.h>
#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <mutex>
#include <unordered_map>
#include <vector>

#include "util/error.h"

#ifdef BERTUNE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

namespace bertune::kernels::cpu {
namespace {

std::atomic<Precision> g_precision{Precision::FP32};

constexpr bool kBuildHasOneDnn =
#ifdef BERTUNE_WITH_ONEDNN
    true;
#else
    false;
#endif

bool cpuid_has_bf16() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  if (!__builtin_cpu_supports("avx512f")) return false;  // also: the OS saves zmm state
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return false;
  const bool amx_bf16 = (d >> 22) & 1u;
  const unsigned max_subleaf = a;
  bool avx512_bf16 = false;
  if (max_subleaf >= 1 && __get_cpuid_count(7, 1, &a, &b, &c, &d)) avx512_bf16 = (a >> 5) & 1u;
  return avx512_bf16 || amx_bf16;
#else
  return false;
#endif
}

std::string cpu_model_name() {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0) {
      const size_t colon = line.find(':');
      if (colon != std::string::npos && colon + 2 <= line.size()) return line.substr(colon + 2);
    }
  return "";
}

// ---- rounding ------------------------------------------------------------------

inline uint16_t round_bits(uint32_t b) {
  if ((b & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((b >> 16) | 0x0040u);  // NaN: quiet
  return static_cast<uint16_t>((b + 0x7FFFu + ((b >> 16) & 1u)) >> 16);
}

void round_portable(const float* src, uint16_t* dst, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    uint32_t b;
    std::memcpy(&b, src + i, 4);
    dst[i] = round_bits(b);
  }
}

#if defined(__x86_64__)
// The same arithmetic, 16 lanes at a time (AVX-512F; chosen by cpuid).
__attribute__((target("avx512f"))) inline __m512i bf16_round_avx512_lanes(__m512i b) {
  const __m512i high = _mm512_srli_epi32(b, 16);
  const __m512i lsb = _mm512_and_si512(high, _mm512_set1_epi32(1));
  const __m512i r = _mm512_srli_epi32(_mm512_add_epi32(_mm512_add_epi32(b, _mm512_set1_epi32(0x7FFF)), lsb), 16);
  const __mmask16 nan =
      _mm512_cmpgt_epu32_mask(_mm512_and_si512(b, _mm512_set1_epi32(0x7FFFFFFF)), _mm512_set1_epi32(0x7F800000));
  return _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(high, _mm512_set1_epi32(0x0040)));
}

__attribute__((target("avx512f"))) void bf16_round_avx512(const float* src, uint16_t* dst, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16)
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst + i),
                        _mm512_cvtepi32_epi16(bf16_round_avx512_lanes(_mm512_loadu_si512(src + i))));
  if (i < n) {
    const __mmask16 m = static_cast<__mmask16>((1u << (n - i)) - 1u);
    _mm512_mask_cvtepi32_storeu_epi16(dst + i, m, bf16_round_avx512_lanes(_mm512_maskz_loadu_epi32(m, src + i)));
  }
}
#endif

using round_fn = void (*)(const float*, uint16_t*, size_t);
round_fn pick_round() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) return bf16_round_avx512;
#endif
  return round_portable;
}

// Rows x cols of src (leading dimension ld) into dense dst, over the OpenMP threads when large.
void round_matrix(const float* src, int rows, int cols, int ld, uint16_t* dst) {
  if (ld == cols) {
    const size_t n = size_t(rows) * cols;
    const size_t chunk = 1 << 16;
    const long chunks = static_cast<long>((n + chunk - 1) / chunk);
#pragma omp parallel for schedule(static) if (chunks > 1)
    for (long c = 0; c < chunks; ++c)
      round_to_bf16(src + c * chunk, dst + c * chunk, std::min(chunk, n - c * chunk));
    return;
  }
#pragma omp parallel for schedule(static) if (size_t(rows) * cols > (1u << 16))
  for (int r = 0; r < rows; ++r) round_to_bf16(src + size_t(r) * ld, dst + size_t(r) * cols, cols);
}

}  // namespace

bool cpu_has_bf16() {
  const char* without = std::getenv("BERTUNE_TEST_CPU_WITHOUT_BF16");
  if (without && std::string(without) == "1") return false;
  static const bool has = cpuid_has_bf16();
  return has;
}

std::string bf16_unavailable_reason(bool cpu_has, bool build_has_onednn) {
  std::string missing;
  if (!cpu_has) {
    const std::string model = cpu_model_name();
    missing = "a CPU with avx512_bf16 or AMX-BF16 (this one" + (model.empty() ? "" : ", " + model + ",") +
              " has neither)";
  }
  if (!build_has_onednn)
    missing += std::string(missing.empty() ? "" : " and ") +
               "a build with oneDNN (this one has none: install libdnnl-dev and configure with -DBERTUNE_ONEDNN=ON)";
  return missing.empty() ? "" : "bf16 GEMMs on the CPU need " + missing;
}

std::string bf16_unavailable() { return bf16_unavailable_reason(cpu_has_bf16(), kBuildHasOneDnn); }

void set_gemm_precision(Precision p) {
  if (p == Precision::BF16) {
    const std::string why = bf16_unavailable();
    if (!why.empty()) throw Error(why);
  } else if (p != Precision::FP32) {
    throw Error(std::string(precision_name(p)) + " GEMMs need a GPU: the CPU computes fp32 or bf16");
  }
  g_precision.store(p, std::memory_order_relaxed);
}

Precision gemm_precision() { return g_precision.load(std::memory_order_relaxed); }

uint16_t bf16_bits(float x) {
  uint32_t b;
  std::memcpy(&b, &x, 4);
  return round_bits(b);
}

void round_to_bf16(const float* src, uint16_t* dst, size_t n) {
  static const round_fn fn = pick_round();
  fn(src, dst, n);
}

#ifdef BERTUNE_WITH_ONEDNN
namespace {

struct MatmulKey {
  bool trans_a, trans_b;
  int M, N, K, ldc;
  uint32_t alpha, beta;  // bits
  bool operator==(const MatmulKey&) const = default;
};
struct MatmulKeyHash {
  size_t operator()(const MatmulKey& k) const {
    uint64_t h = 1469598103934665603ull;
    for (uint64_t v : {uint64_t(k.trans_a) << 1 | uint64_t(k.trans_b), uint64_t(uint32_t(k.M)), uint64_t(uint32_t(k.N)),
                       uint64_t(uint32_t(k.K)), uint64_t(uint32_t(k.ldc)), uint64_t(k.alpha) << 32 | k.beta})
      h = (h ^ v) * 1099511628211ull;
    return h;
  }
};

// A matmul primitive and the memory layouts it was made for.
struct Matmul {
  dnnl::matmul primitive;
  dnnl::memory::desc a, b, c;
};

struct OneDnn {
  dnnl::engine engine{dnnl::engine::kind::cpu, 0};
  std::mutex mutex;
  std::unordered_map<MatmulKey, Matmul, MatmulKeyHash> primitives;
  static constexpr size_t kMaxPrimitives = 512;  // packed batches: a new M every step

  static OneDnn& get() {
    static OneDnn instance;
    return instance;
  }

  // The matmul of C[M,N] = alpha op(A) op(B) + beta C on dense bf16 operands: A stored
  // [M,K] (or [K,M] when trans_a), B stored [K,N] (or [N,K]); transposes are strides.
  Matmul matmul(const MatmulKey& k) {
    std::lock_guard<std::mutex> lock(mutex);
    if (auto it = primitives.find(k); it != primitives.end()) return it->second;
    using dt = dnnl::memory::data_type;
    using dims = dnnl::memory::dims;
    const dnnl::memory::dim M = k.M, N = k.N, K = k.K;
    const dnnl::memory::desc a({M, K}, dt::bf16, k.trans_a ? dims{1, M} : dims{K, 1});
    const dnnl::memory::desc b({K, N}, dt::bf16, k.trans_b ? dims{1, K} : dims{N, 1});
    const dnnl::memory::desc c({M, N}, dt::f32, dims{k.ldc, 1});
    float alpha, beta;
    std::memcpy(&alpha, &k.alpha, 4);
    std::memcpy(&beta, &k.beta, 4);
    dnnl::primitive_attr attr;
    if (alpha != 1.f) attr.set_output_scales(0, {alpha});
    if (beta != 0.f) {
      dnnl::post_ops ops;
      ops.append_sum(beta);
      attr.set_post_ops(ops);
    }
    const dnnl::matmul::primitive_desc pd(dnnl::matmul::desc(a, b, c), attr, engine);
    if (primitives.size() >= kMaxPrimitives) primitives.clear();
    return primitives.emplace(k, Matmul{dnnl::matmul(pd), a, b, c}).first->second;
  }
};

thread_local std::vector<uint16_t> t_a16, t_b16;

}  // namespace

void gemm_bf16(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
               const float* B, int ldb, float beta, float* C, int ldc) {
  if (M == 0 || N == 0) return;
  uint32_t alpha_bits, beta_bits;
  std::memcpy(&alpha_bits, &alpha, 4);
  std::memcpy(&beta_bits, &beta, 4);
  OneDnn& dnn = OneDnn::get();
  const Matmul mm = dnn.matmul({trans_a, trans_b, M, N, K, ldc, alpha_bits, beta_bits});
  const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
  const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
  t_a16.resize(size_t(a_rows) * a_cols);
  t_b16.resize(size_t(b_rows) * b_cols);
  round_matrix(A, a_rows, a_cols, lda, t_a16.data());
  round_matrix(B, b_rows, b_cols, ldb, t_b16.data());
  const dnnl::memory a(mm.a, dnn.engine, t_a16.data());
  const dnnl::memory b(mm.b, dnn.engine, t_b16.data());
  const dnnl::memory c(mm.c, dnn.engine, C);
  dnnl::stream stream(dnn.engine);
  mm.primitive.execute(stream, {{DNNL_ARG_SRC, a}, {DNNL_ARG_WEIGHTS, b}, {DNNL_ARG_DST, c}});
  stream.wait();
}

#else

void gemm_bf16(bool, bool, int, int, int, float, const float*, int, const float*, int, float, float*, int) {
  throw Error(bf16_unavailable_reason(cpu_has_bf16(), false));
}

#endif

}  // namespace bertune::kernels::cpu
