#pragma once
// The attention kernels of attention_gpu.cu (device code only; the launches
// and the shape checks are there). Kept in a header so that
// tests/test_gpu_attention_emulated.cc can also compile them as plain C++
// over a small CUDA emulation (tests/cuda_emulation.h, which defines
// BERTUNE_CUDA_EMULATION and the few CUDA built-ins used here) and run their
// logic on the CPU against the CPU body: indexing, tiles, masks, dropout,
// barriers. What that cannot show (timing, the memory model, the compiler)
// only a GPU run can.
#include <cfloat>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "kernels/ops.h"

// `#pragma unroll` as macros: g++ (the emulation) warns on the pragma itself.
#ifdef BERTUNE_CUDA_EMULATION
#define BERTUNE_UNROLL
#define BERTUNE_UNROLL_BY(n)
#else
#define BERTUNE_UNROLL _Pragma("unroll")
#define BERTUNE_UNROLL_BY(n) _Pragma(BERTUNE_STRINGIFY(unroll n))
#define BERTUNE_STRINGIFY(x) #x
#endif

namespace bertune::kernels::gpu::attention_kernels {
// Internal linkage: the emulated CPU tests (tests/test_*_kernels_emulated.cc) include this
// header too, and a test binary links the CUDA library beside them.
namespace {

#ifndef BERTUNE_CUDA_EMULATION
// The block's dynamic shared memory (16-byte aligned).
__device__ __forceinline__ float* dynamic_shared_floats() {
  extern __shared__ float4 smem4[];
  return reinterpret_cast<float*>(smem4);
}
#endif

constexpr int kTile = 32;                      // query rows per block = keys per tile
constexpr int kWarps = 4;
constexpr int kThreads = kWarps * 32;
constexpr int kRowsPerWarp = kTile / kWarps;  // 8
constexpr int kMaxHeadDim = 128;

// The dropout generator of kernels/cpu/math_cpu.h (DropMask), bit for bit:
// element i is kept when the top 24 bits of splitmix64(stream, i) >= p 2^24.
struct DropParams {
  uint64_t stream = 0;
  uint32_t threshold = 0;  // p * 2^24
  float scale = 1.f;       // 1 / (1 - p)
  bool active = false;
};

inline DropParams drop_params(const Dropout& d) {
  DropParams p;
  p.active = d.active();
  p.stream = d.stream;
  p.threshold = static_cast<uint32_t>(static_cast<double>(d.p) * 16777216.0);
  p.scale = d.p > 0.f ? 1.f / (1.f - d.p) : 1.f;
  return p;
}

__device__ __forceinline__ float drop_factor(const DropParams& d, uint64_t i) {
  if (!d.active) return 1.f;
  uint64_t z = d.stream + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  z ^= z >> 31;
  return static_cast<uint32_t>(z >> 40) >= d.threshold ? d.scale : 0.f;
}

struct AttentionArgs {
  const int32_t* offsets;
  const int32_t* lengths;
  const int64_t* prob_offsets;
  int num_heads, head_dim;
  float sqrt_d;
};

inline AttentionArgs args_of(const AttentionShape& s) {
  // As the CPU body and HF: divide by math.sqrt(head_dim), rounded to float.
  const float sqrt_d = static_cast<float>(std::sqrt(static_cast<double>(s.head_dim)));
  return AttentionArgs{s.offsets, s.lengths, s.prob_offsets, s.num_heads, s.head_dim, sqrt_d};
}

// One (sequence, head) as the block sees it.
struct Pair {
  int offset, span, valid;
  int packed_row;  // offset - offsets[0]: this sequence's first row in the D scratch
  int64_t pbase;  // where this head's n x n probs start (also the dropout index base)
};

__device__ __forceinline__ Pair pair_of(const AttentionArgs& a, int b, int h) {
  Pair p;
  p.offset = a.offsets[b];
  p.span = a.offsets[b + 1] - p.offset;
  p.valid = a.lengths[b];
  p.packed_row = p.offset - a.offsets[0];
  p.pbase = a.prob_offsets[b] + int64_t(h) * p.span * p.span;
  return p;
}

// HF: scores / sqrt(d), then + finfo(float32).min on pad keys.
__device__ __forceinline__ float scaled_score(float dot, int key, int valid, float sqrt_d) {
  float s = dot / sqrt_d;
  return key >= valid ? s + (-FLT_MAX) : s;
}

__device__ __forceinline__ float warp_max(float v) {
  for (int o = 16; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ float warp_sum(float v) {
  for (int o = 16; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// tile[r][c] = src[r * ld + c] for r < rows_left and c < d, else 0; 32 rows.
template <int DMAX>
__device__ void load_tile(float* tile, int stride, const float* src, int ld, int rows_left, int d) {
  for (int idx = threadIdx.x; idx < kTile * DMAX; idx += kThreads) {
    const int r = idx / DMAX, c = idx % DMAX;
    tile[r * stride + c] = (r < rows_left && c < d) ? src[size_t(r) * ld + c] : 0.f;
  }
}

// out[rr] = <rows[rr], mine> for the warp's 8 rows (stride DMAX, read by every
// lane alike: broadcast) and the lane's own row (padded stride: conflict-free).
template <int DMAX>
__device__ __forceinline__ void dot8(float (&out)[kRowsPerWarp], const float* rows,
                                     const float* mine) {
BERTUNE_UNROLL
  for (int rr = 0; rr < kRowsPerWarp; ++rr) out[rr] = 0.f;
BERTUNE_UNROLL
  for (int c = 0; c < DMAX; c += 4) {
    const float4 m = *reinterpret_cast<const float4*>(mine + c);
BERTUNE_UNROLL
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const float4 r = *reinterpret_cast<const float4*>(rows + rr * DMAX + c);
      out[rr] += r.x * m.x + r.y * m.y + r.z * m.z + r.w * m.w;
    }
  }
}

// acc[rr][cc] += sum_t weights[rr][t] * tile[t][lane + 32 cc] over a 32-row tile:
// weights (stride kTile) are read alike by every lane, tile rows lane-contiguous.
template <int DMAX>
__device__ __forceinline__ void accumulate8(float (&acc)[kRowsPerWarp][DMAX / 32],
                                            const float* weights, const float* tile, int stride) {
  const int lane = threadIdx.x % 32;
BERTUNE_UNROLL_BY(4)
  for (int t = 0; t < kTile; ++t) {
    float v[DMAX / 32];
BERTUNE_UNROLL
    for (int cc = 0; cc < DMAX / 32; ++cc) v[cc] = tile[t * stride + lane + 32 * cc];
BERTUNE_UNROLL
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const float w = weights[rr * kTile + t];
BERTUNE_UNROLL
      for (int cc = 0; cc < DMAX / 32; ++cc) acc[rr][cc] += w * v[cc];
    }
  }
}

// dst[(row0 + rr) * ld + lane + 32 cc] = acc[rr][cc] for rows < rows_left, columns < d.
template <int DMAX>
__device__ void store8(float* dst, int ld, const float (&acc)[kRowsPerWarp][DMAX / 32], int row0,
                       int rows_left, int d) {
  const int lane = threadIdx.x % 32;
BERTUNE_UNROLL
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    if (row0 + rr >= rows_left) break;
BERTUNE_UNROLL
    for (int cc = 0; cc < DMAX / 32; ++cc) {
      const int c = lane + 32 * cc;
      if (c < d) dst[size_t(row0 + rr) * ld + c] = acc[rr][cc];
    }
  }
}

// ---- forward ------------------------------------------------------------------

template <int DMAX>
constexpr size_t forward_smem_floats() {
  return kTile * DMAX + kTile * (DMAX + 4) + kTile * DMAX + kTile * kTile;
}

// Per-lane online max / sum over the lane's keys, merged across the warp:
// row_max[rr] and inv_sum[rr] of the warp's 8 query rows.
template <int DMAX>
__device__ void softmax_stats(float (&row_max)[kRowsPerWarp], float (&inv_sum)[kRowsPerWarp],
                              const float* Qw, float* Ks, const float* k_src, int H3,
                              const Pair& pr, int d, float sqrt_d) {
  const int lane = threadIdx.x % 32;
  float m[kRowsPerWarp], l[kRowsPerWarp];
BERTUNE_UNROLL
  for (int rr = 0; rr < kRowsPerWarp; ++rr) m[rr] = -INFINITY, l[rr] = 0.f;
  for (int k0 = 0; k0 < pr.span; k0 += kTile) {
    __syncthreads();
    load_tile<DMAX>(Ks, DMAX + 4, k_src + size_t(k0) * H3, H3, pr.span - k0, d);
    __syncthreads();
    const int j = k0 + lane;
    float s[kRowsPerWarp];
    dot8<DMAX>(s, Qw, Ks + lane * (DMAX + 4));
    if (j < pr.span) {
BERTUNE_UNROLL
      for (int rr = 0; rr < kRowsPerWarp; ++rr) {
        const float x = scaled_score(s[rr], j, pr.valid, sqrt_d);
        if (x > m[rr]) {  // a new max: rescale the lane's sum (exp(-inf) = 0 at the first key)
          l[rr] = l[rr] * expf(m[rr] - x) + 1.f;
          m[rr] = x;
        } else {
          l[rr] += expf(x - m[rr]);
        }
      }
    }
  }
BERTUNE_UNROLL
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    row_max[rr] = warp_max(m[rr]);
    inv_sum[rr] = 1.f / warp_sum(l[rr] * expf(m[rr] - row_max[rr]));  // lanes without keys add 0
  }
}

template <int DMAX>
__global__ void __launch_bounds__(kThreads) attention_forward_kernel(float* ctx, float* probs,
                                                                     const float* qkv,
                                                                     AttentionArgs a,
                                                                     DropParams drop) {
  const int b = blockIdx.x, h = blockIdx.y, q0 = blockIdx.z * kTile;
  const Pair pr = pair_of(a, b, h);
  if (q0 >= pr.span) return;
  const int d = a.head_dim, H = a.num_heads * d, H3 = 3 * H, n = pr.span;
  float* Qs = dynamic_shared_floats();  // [32][DMAX]      queries, broadcast rows
  float* Ks = Qs + kTile * DMAX;                // [32][DMAX + 4]  keys, a row per lane
  float* Vs = Ks + kTile * (DMAX + 4);          // [32][DMAX]      values, lane-contiguous
  float* Ps = Vs + kTile * DMAX;                // [32][32]        dropout(P) of the tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, row0 = warp * kRowsPerWarp;
  const float* head = qkv + size_t(pr.offset) * H3 + size_t(h) * d;  // Q of the sequence's row 0
  load_tile<DMAX>(Qs, DMAX, head + size_t(q0) * H3, H3, n - q0, d);
  float row_max[kRowsPerWarp], inv_sum[kRowsPerWarp];
  softmax_stats<DMAX>(row_max, inv_sum, Qs + row0 * DMAX, Ks, head + H, H3, pr, d, a.sqrt_d);

  float acc[kRowsPerWarp][DMAX / 32] = {};
  for (int k0 = 0; k0 < n; k0 += kTile) {
    __syncthreads();
    load_tile<DMAX>(Ks, DMAX + 4, head + H + size_t(k0) * H3, H3, n - k0, d);
    load_tile<DMAX>(Vs, DMAX, head + 2 * H + size_t(k0) * H3, H3, n - k0, d);
    __syncthreads();
    const int j = k0 + lane;
    float s[kRowsPerWarp];
    dot8<DMAX>(s, Qs + row0 * DMAX, Ks + lane * (DMAX + 4));
BERTUNE_UNROLL
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int i = q0 + row0 + rr;
      float weight = 0.f;
      if (i < n && j < n) {
        const float x = scaled_score(s[rr], j, pr.valid, a.sqrt_d);
        const float p = expf(x - row_max[rr]) * inv_sum[rr];
        const int64_t e = pr.pbase + int64_t(i) * n + j;
        probs[e] = p;
        weight = p * drop_factor(drop, uint64_t(e));
      }
      Ps[(row0 + rr) * kTile + lane] = weight;
    }
    __syncwarp();
    accumulate8<DMAX>(acc, Ps + row0 * kTile, Vs, DMAX);
  }
  store8<DMAX>(ctx + size_t(pr.offset + q0) * H + size_t(h) * d, H, acc, row0, n - q0, d);
}

// ---- backward: rows (D and dQ) ----------------------------------------------------

template <int DMAX>
constexpr size_t backward_rows_smem_floats() {
  return kTile * DMAX + kTile * (DMAX + 4) + kTile * DMAX + kTile * kTile;
}

// g = dropout(dC V^T) for the warp's 8 rows and the lane's key j of the tile in Vs.
struct RowGrad {
  float p[kRowsPerWarp], g[kRowsPerWarp];
};

template <int DMAX>
__device__ __forceinline__ RowGrad row_grads(const float* dCw, const float* Vs, const float* probs,
                                             const Pair& pr, int first_row, int j,
                                             const DropParams& drop) {
  const int lane = threadIdx.x % 32;
  RowGrad rg;
  float dp[kRowsPerWarp];
  dot8<DMAX>(dp, dCw, Vs + lane * (DMAX + 4));
BERTUNE_UNROLL
  for (int rr = 0; rr < kRowsPerWarp; ++rr) {
    const int i = first_row + rr;
    rg.p[rr] = rg.g[rr] = 0.f;
    if (i < pr.span && j < pr.span) {
      const int64_t e = pr.pbase + int64_t(i) * pr.span + j;
      rg.p[rr] = probs[e];
      rg.g[rr] = dp[rr] * drop_factor(drop, uint64_t(e));
    }
  }
  return rg;
}

template <int DMAX>
__global__ void __launch_bounds__(kThreads) attention_backward_rows_kernel(
    float* dqkv, float* row_dots, const float* dctx, const float* qkv, const float* probs,
    AttentionArgs a, DropParams drop) {
  const int b = blockIdx.x, h = blockIdx.y, q0 = blockIdx.z * kTile;
  const Pair pr = pair_of(a, b, h);
  if (q0 >= pr.span) return;
  const int d = a.head_dim, H = a.num_heads * d, H3 = 3 * H, n = pr.span;
  float* dCs = dynamic_shared_floats();  // [32][DMAX]      dctx rows, broadcast
  float* Vs = dCs + kTile * DMAX;                // [32][DMAX + 4]  a row per lane
  float* Ks = Vs + kTile * (DMAX + 4);           // [32][DMAX]      lane-contiguous
  float* Ss = Ks + kTile * DMAX;                 // [32][32]        dS of the tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, row0 = warp * kRowsPerWarp;
  const float* head = qkv + size_t(pr.offset) * H3 + size_t(h) * d;
  load_tile<DMAX>(dCs, DMAX, dctx + size_t(pr.offset + q0) * H + size_t(h) * d, H, n - q0, d);
  const float* dCw = dCs + row0 * DMAX;

  float D[kRowsPerWarp] = {};
  for (int k0 = 0; k0 < n; k0 += kTile) {
    __syncthreads();
    load_tile<DMAX>(Vs, DMAX + 4, head + 2 * H + size_t(k0) * H3, H3, n - k0, d);
    __syncthreads();
    const RowGrad rg = row_grads<DMAX>(dCw, Vs, probs, pr, q0 + row0, k0 + lane, drop);
BERTUNE_UNROLL
    for (int rr = 0; rr < kRowsPerWarp; ++rr) D[rr] += rg.p[rr] * rg.g[rr];
  }
BERTUNE_UNROLL
  for (int rr = 0; rr < kRowsPerWarp; ++rr) D[rr] = warp_sum(D[rr]);

  float acc[kRowsPerWarp][DMAX / 32] = {};
  for (int k0 = 0; k0 < n; k0 += kTile) {
    __syncthreads();
    load_tile<DMAX>(Vs, DMAX + 4, head + 2 * H + size_t(k0) * H3, H3, n - k0, d);
    load_tile<DMAX>(Ks, DMAX, head + H + size_t(k0) * H3, H3, n - k0, d);
    __syncthreads();
    const RowGrad rg = row_grads<DMAX>(dCw, Vs, probs, pr, q0 + row0, k0 + lane, drop);
BERTUNE_UNROLL
    for (int rr = 0; rr < kRowsPerWarp; ++rr)
      Ss[(row0 + rr) * kTile + lane] = rg.p[rr] * (rg.g[rr] - D[rr]) / a.sqrt_d;
    __syncwarp();
    accumulate8<DMAX>(acc, Ss + row0 * kTile, Ks, DMAX);
  }
  store8<DMAX>(dqkv + size_t(pr.offset + q0) * H3 + size_t(h) * d, H3, acc, row0, n - q0, d);
  if (lane < kRowsPerWarp && q0 + row0 + lane < n) {
    float mine = D[0];
BERTUNE_UNROLL
    for (int rr = 1; rr < kRowsPerWarp; ++rr) mine = lane == rr ? D[rr] : mine;
    row_dots[size_t(pr.packed_row + q0 + row0 + lane) * a.num_heads + h] = mine;
  }
}

// ---- backward: keys (dK and dV) -----------------------------------------------------

template <int DMAX>
constexpr size_t backward_keys_smem_floats() {
  return kTile * DMAX + 2 * kTile * (DMAX + 4) + kTile * (kTile + 1) + kTile + 2 * kTile * kTile;
}

template <int DMAX>
__global__ void __launch_bounds__(kThreads) attention_backward_keys_kernel(
    float* dqkv, const float* row_dots, const float* dctx, const float* qkv, const float* probs,
    AttentionArgs a, DropParams drop) {
  const int b = blockIdx.x, h = blockIdx.y, k0 = blockIdx.z * kTile;
  const Pair pr = pair_of(a, b, h);
  if (k0 >= pr.span) return;
  const int d = a.head_dim, H = a.num_heads * d, H3 = 3 * H, n = pr.span;
  float* Vown = dynamic_shared_floats();  // [32][DMAX]      this block's keys' V, broadcast
  float* dCs = Vown + kTile * DMAX;               // [32][DMAX + 4]  dctx, a row per lane
  float* Qs = dCs + kTile * (DMAX + 4);           // [32][DMAX + 4]  queries, lane-contiguous
  float* Pt = Qs + kTile * (DMAX + 4);            // [32][33]        probs tile [query][key]
  float* Ds = Pt + kTile * (kTile + 1);           // [32]            D of the query rows
  float* Pw = Ds + kTile;                         // [32 keys][32]   dropout(P)^T of the tile
  float* Sw = Pw + kTile * kTile;                 // [32 keys][32]   dS^T of the tile
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, key0 = warp * kRowsPerWarp;
  const float* head = qkv + size_t(pr.offset) * H3 + size_t(h) * d;
  load_tile<DMAX>(Vown, DMAX, head + 2 * H + size_t(k0) * H3, H3, n - k0, d);

  float accV[kRowsPerWarp][DMAX / 32] = {}, accK[kRowsPerWarp][DMAX / 32] = {};
  for (int q0 = 0; q0 < n; q0 += kTile) {
    __syncthreads();
    load_tile<DMAX>(dCs, DMAX + 4, dctx + size_t(pr.offset + q0) * H + size_t(h) * d, H, n - q0, d);
    load_tile<DMAX>(Qs, DMAX + 4, head + size_t(q0) * H3, H3, n - q0, d);
    for (int idx = threadIdx.x; idx < kTile * kTile; idx += kThreads) {
      const int i = q0 + idx / kTile, j = k0 + idx % kTile;  // coalesced along j
      Pt[(idx / kTile) * (kTile + 1) + idx % kTile] =
          i < n && j < n ? probs[pr.pbase + int64_t(i) * n + j] : 0.f;
    }
    if (threadIdx.x < kTile) {
      const int i = q0 + threadIdx.x;
      Ds[threadIdx.x] = i < n ? row_dots[size_t(pr.packed_row + i) * a.num_heads + h] : 0.f;
    }
    __syncthreads();
    const int i = q0 + lane;  // this lane's query
    float dp[kRowsPerWarp];
    dot8<DMAX>(dp, Vown + key0 * DMAX, dCs + lane * (DMAX + 4));
BERTUNE_UNROLL
    for (int rr = 0; rr < kRowsPerWarp; ++rr) {
      const int j = k0 + key0 + rr;
      float weight = 0.f, ds = 0.f;
      if (i < n && j < n) {
        const float p = Pt[lane * (kTile + 1) + key0 + rr];
        const float f = drop_factor(drop, uint64_t(pr.pbase + int64_t(i) * n + j));
        weight = p * f;
        ds = p * (dp[rr] * f - Ds[lane]) / a.sqrt_d;
      }
      Pw[(key0 + rr) * kTile + lane] = weight;
      Sw[(key0 + rr) * kTile + lane] = ds;
    }
    __syncwarp();
    accumulate8<DMAX>(accV, Pw + key0 * kTile, dCs, DMAX + 4);
    accumulate8<DMAX>(accK, Sw + key0 * kTile, Qs, DMAX + 4);
  }
  float* dK = dqkv + size_t(pr.offset + k0) * H3 + H + size_t(h) * d;
  store8<DMAX>(dK, H3, accK, key0, n - k0, d);
  store8<DMAX>(dK + H, H3, accV, key0, n - k0, d);
}


// ---- first query only (the last layer's [CLS] rows) ------------------------------
//
// ctx[b, h] = dropout(softmax(q_b K_b^T / sqrt(d) + mask)) V_b for the first row of
// each sequence: one block per (sequence, head), a thread per key for the scores
// (kept in shared memory, span floats), block-wide max and sum, then a thread per
// column of ctx. A single query row is little work; what matters is that it is one
// launch for the batch and reads K and V once. probs (null: not kept) gets the softmax
// row before dropout at heads * offsets[b] + h * span; the dropout masks are those of
// the full layer's query row 0 (element prob_offsets[b] + h span^2 + j).
//
// The backward, one block per (sequence, head) again: g_j = dropout_j(dC . V_j),
// D = sum_j p_j g_j, dS_j = p_j (g_j - D) / sqrt(d); dq = sum_j dS_j K_j, and every
// key row j of the sequence gets dK_j = dS_j q and dV_j = dropout_j(p_j) dC
// (overwritten: the [CLS] query is the only one attending).

// The floats of dynamic shared memory for spans up to max_length.
inline size_t first_query_smem_floats(int max_length) { return kMaxHeadDim + kWarps + size_t(max_length); }
inline size_t first_query_backward_smem_floats(int max_length) {
  return 2 * kMaxHeadDim + kWarps + size_t(max_length);
}

// v reduced over the block with op (max or sum); every thread gets the result.
template <bool kMax>
__device__ float block_reduce(float v, float* scratch) {
  v = kMax ? warp_max(v) : warp_sum(v);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  __syncthreads();  // scratch may still be read by a previous reduction
  if (lane == 0) scratch[warp] = v;
  __syncthreads();
  v = scratch[0];
  for (int w = 1; w < kWarps; ++w) v = kMax ? fmaxf(v, scratch[w]) : v + scratch[w];
  return v;
}

__global__ void __launch_bounds__(kThreads) attention_first_query_kernel(float* ctx, float* probs, const float* q,
                                                                         const float* kv, AttentionArgs a,
                                                                         DropParams drop) {
  const int b = blockIdx.x, h = blockIdx.y, d = a.head_dim;
  const int H = a.num_heads * d, H2 = 2 * H;
  const int offset = a.offsets[b], span = a.offsets[b + 1] - offset, valid = a.lengths[b];
  float* smem = dynamic_shared_floats();
  float* q_s = smem;                  // (d) this head's [CLS] query
  float* scratch = q_s + kMaxHeadDim; // (kWarps) block reductions
  float* scores = scratch + kWarps;   // (span) scores, then exp(score - max)
  for (int c = threadIdx.x; c < d; c += kThreads) q_s[c] = q[size_t(b) * H + size_t(h) * d + c];
  __syncthreads();
  const float* K = kv + size_t(offset) * H2 + size_t(h) * d;  // row j at K + j H2
  const float* V = K + H;
  float mx = -INFINITY;
  for (int j = threadIdx.x; j < span; j += kThreads) {
    float dot = 0.f;
    for (int c = 0; c < d; ++c) dot += q_s[c] * K[size_t(j) * H2 + c];
    scores[j] = scaled_score(dot, j, valid, a.sqrt_d);
    mx = fmaxf(mx, scores[j]);
  }
  mx = block_reduce<true>(mx, scratch);
  float sum = 0.f;
  for (int j = threadIdx.x; j < span; j += kThreads) {
    scores[j] = expf(scores[j] - mx);
    sum += scores[j];
  }
  const float inv_sum = 1.f / block_reduce<false>(sum, scratch);
  const uint64_t mask_base = drop.active ? uint64_t(a.prob_offsets[b]) + uint64_t(h) * span * span : 0;
  for (int j = threadIdx.x; j < span; j += kThreads) {  // scores -> dropout(p)
    const float p = scores[j] * inv_sum;
    if (probs != nullptr) probs[size_t(offset) * a.num_heads + size_t(h) * span + j] = p;
    scores[j] = p * drop_factor(drop, mask_base + j);
  }
  __syncthreads();
  for (int c = threadIdx.x; c < d; c += kThreads) {
    float acc = 0.f;
    for (int j = 0; j < span; ++j) acc += scores[j] * V[size_t(j) * H2 + c];
    ctx[size_t(b) * H + size_t(h) * d + c] = acc;
  }
}

__global__ void __launch_bounds__(kThreads)
    attention_first_query_backward_kernel(float* dq, float* dkv, const float* dctx, const float* q, const float* kv,
                                          const float* probs, AttentionArgs a, DropParams drop) {
  const int b = blockIdx.x, h = blockIdx.y, d = a.head_dim;
  const int H = a.num_heads * d, H2 = 2 * H;
  const int offset = a.offsets[b], span = a.offsets[b + 1] - offset;
  float* smem = dynamic_shared_floats();
  float* q_s = smem;                    // (d) this head's [CLS] query
  float* dc_s = q_s + kMaxHeadDim;      // (d) its dctx
  float* scratch = dc_s + kMaxHeadDim;  // (kWarps) the block reduction
  float* ds = scratch + kWarps;         // (span) g, then dS
  const size_t q_at = size_t(b) * H + size_t(h) * d;
  for (int c = threadIdx.x; c < d; c += kThreads) {
    q_s[c] = q[q_at + c];
    dc_s[c] = dctx[q_at + c];
  }
  __syncthreads();
  const float* p = probs + size_t(offset) * a.num_heads + size_t(h) * span;  // (span)
  const uint64_t mask_base = drop.active ? uint64_t(a.prob_offsets[b]) + uint64_t(h) * span * span : 0;
  const size_t kv_at = size_t(offset) * H2 + size_t(h) * d;  // row j at + j H2
  const float* K = kv + kv_at;
  const float* V = K + H;
  float weighted = 0.f;
  for (int j = threadIdx.x; j < span; j += kThreads) {
    float g = 0.f;
    for (int c = 0; c < d; ++c) g += dc_s[c] * V[size_t(j) * H2 + c];
    g *= drop_factor(drop, mask_base + j);
    ds[j] = g;
    weighted += p[j] * g;
  }
  weighted = block_reduce<false>(weighted, scratch);
  for (int j = threadIdx.x; j < span; j += kThreads) ds[j] = p[j] * (ds[j] - weighted) / a.sqrt_d;
  __syncthreads();
  for (int c = threadIdx.x; c < d; c += kThreads) {
    float acc = 0.f;
    for (int j = 0; j < span; ++j) acc += ds[j] * K[size_t(j) * H2 + c];
    dq[q_at + c] = acc;
  }
  float* dK = dkv + kv_at;
  float* dV = dK + H;
  for (size_t e = threadIdx.x; e < size_t(span) * d; e += kThreads) {  // consecutive threads, consecutive columns
    const int j = int(e / d), c = int(e % d);
    dK[size_t(j) * H2 + c] = ds[j] * q_s[c];
    dV[size_t(j) * H2 + c] = p[j] * drop_factor(drop, mask_base + j) * dc_s[c];
  }
}

}  // namespace
}  // namespace bertune::kernels::gpu::attention_kernels
