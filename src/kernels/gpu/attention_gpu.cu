// Scaled dot-product attention over packed variable-length sequences, fp32.
//
// The contract keeps `probs` (softmax before dropout) for backward, so these
// kernels write it: a two-pass softmax per 32-row block of queries. Pass 1
// streams 32-key tiles of K through shared memory and keeps, per lane, the
// running max and sum of exp over the keys lane, lane + 32, ... (one exp per
// score); a warp reduction then gives each row's max and 1 / sum. Pass 2
// recomputes the scores, writes probs (32 consecutive floats per warp store),
// applies dropout and accumulates ctx += dropout(P) V from a V tile. Nothing
// of size n x n lives in shared memory, so any span works.
//
// Backward, two launches (the second needs every row's D_i from the first):
//   rows:  D_i = sum_j P_ij g_ij with g = dropout(dC V^T), then
//          dQ_i = sum_j dS_ij K_j, dS_ij = P_ij (g_ij - D_i) / sqrt(d);
//   keys:  per 32-key block, over all query blocks: dV_j = sum_i P~_ij dC_i
//          (P~ = dropout(P)) and dK_j = sum_i dS_ij Q_i.
// D goes through a scratch buffer [T, heads].
//
// Threads: 4 warps per block, 8 rows (or keys) per warp, a lane per key (or
// query) when forming scores and a lane per column (head_dim / 32 columns
// each) when accumulating. The tiles are zero beyond the span and beyond
// head_dim, so the fixed-length (DMAX) inner loops need no bounds.
#include <cfloat>
#include <cmath>
#include <cstdint>
#include <string>

#include "kernels/gpu/attention_gpu.h"
#include "kernels/gpu/attention_kernels.cuh"
#include "kernels/gpu/gemm_attention_common.cuh"

namespace bertune::kernels::gpu {
namespace {

using detail::ceil_div;
using detail::check_cuda;
using detail::check_launch;
using detail::op_stream;

using namespace attention_kernels;

// ---- launches -----------------------------------------------------------------------

dim3 grid_of(const AttentionShape& s, const char* op) {
  if (s.head_dim > kMaxHeadDim)
    throw Error(std::string("kernels::") + op + " (CUDA): head_dim " + std::to_string(s.head_dim) +
                " is over the supported " + std::to_string(kMaxHeadDim));
  if (s.max_length <= 0)
    throw Error(std::string("kernels::") + op +
                " (CUDA): AttentionShape.max_length must be the longest span (it is the launch shape)");
  const unsigned blocks = ceil_div(size_t(s.max_length), kTile);
  if (s.num_heads > 65535 || blocks > 65535)
    throw Error(std::string("kernels::") + op + " (CUDA): " + std::to_string(s.num_heads) +
                " heads x spans of " + std::to_string(s.max_length) + " exceed the grid");
  return dim3(unsigned(s.num_sequences), unsigned(s.num_heads), blocks);
}

// Lets `kernel` take `bytes` of dynamic shared memory (over 48 KB needs asking), once.
template <typename Kernel>
void allow_smem(Kernel kernel, size_t bytes, const char* name) {
  if (bytes > 48 * 1024)
    check_cuda(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, int(bytes)),
               name);
}

template <int DMAX>
void launch_forward(dim3 grid, float* ctx, float* probs, const float* qkv, const AttentionArgs& a,
                    const DropParams& drop) {
  constexpr size_t bytes = forward_smem_floats<DMAX>() * sizeof(float);
  static const bool ready = (allow_smem(attention_forward_kernel<DMAX>, bytes, "attention_forward"), true);
  (void)ready;
  attention_forward_kernel<DMAX><<<grid, attention_kernels::kThreads, bytes, op_stream()>>>(ctx, probs, qkv, a, drop);
  check_launch("attention_forward_kernel");
}

template <int DMAX>
void launch_backward(dim3 grid, float* dqkv, float* row_dots, const float* dctx, const float* qkv,
                     const float* probs, const AttentionArgs& a, const DropParams& drop) {
  constexpr size_t rows_bytes = backward_rows_smem_floats<DMAX>() * sizeof(float);
  constexpr size_t keys_bytes = backward_keys_smem_floats<DMAX>() * sizeof(float);
  static const bool ready =
      (allow_smem(attention_backward_rows_kernel<DMAX>, rows_bytes, "attention_backward (rows)"),
       allow_smem(attention_backward_keys_kernel<DMAX>, keys_bytes, "attention_backward (keys)"), true);
  (void)ready;
  attention_backward_rows_kernel<DMAX><<<grid, attention_kernels::kThreads, rows_bytes, op_stream()>>>(
      dqkv, row_dots, dctx, qkv, probs, a, drop);
  check_launch("attention_backward_rows_kernel");
  attention_backward_keys_kernel<DMAX><<<grid, attention_kernels::kThreads, keys_bytes, op_stream()>>>(
      dqkv, row_dots, dctx, qkv, probs, a, drop);
  check_launch("attention_backward_keys_kernel");
}

}  // namespace

void attention_forward(float* ctx, float* probs, const float* qkv, const AttentionShape& shape,
                       const Dropout& drop) {
  if (shape.num_sequences <= 0) return;
  const dim3 grid = grid_of(shape, "attention_forward");
  const AttentionArgs a = args_of(shape);
  const DropParams dp = drop_params(drop);
  if (shape.head_dim <= 32) return launch_forward<32>(grid, ctx, probs, qkv, a, dp);
  if (shape.head_dim <= 64) return launch_forward<64>(grid, ctx, probs, qkv, a, dp);
  launch_forward<128>(grid, ctx, probs, qkv, a, dp);
}

void attention_backward(float* dqkv, const float* dctx, const float* qkv, const float* probs,
                        const AttentionShape& shape, const Dropout& drop) {
  if (shape.num_sequences <= 0) return;
  const dim3 grid = grid_of(shape, "attention_backward");
  const AttentionArgs a = args_of(shape);
  const DropParams dp = drop_params(drop);
  // D_i per (row, head); T <= num_sequences * max_length bounds the rows. One
  // buffer per thread: each host thread has its own per-thread stream.
  thread_local detail::GrowOnlyScratch row_dot_scratch;
  const size_t rows = size_t(shape.num_sequences) * size_t(shape.max_length);
  auto* row_dots = static_cast<float*>(
      row_dot_scratch.get(rows * shape.num_heads * sizeof(float), "attention_backward scratch"));
  if (shape.head_dim <= 32) return launch_backward<32>(grid, dqkv, row_dots, dctx, qkv, probs, a, dp);
  if (shape.head_dim <= 64) return launch_backward<64>(grid, dqkv, row_dots, dctx, qkv, probs, a, dp);
  launch_backward<128>(grid, dqkv, row_dots, dctx, qkv, probs, a, dp);
}

namespace {

// The first-query kernels' dynamic shared memory: the span's scores and a few vectors.
size_t first_query_bytes(size_t floats, const AttentionShape& shape, const char* op) {
  const size_t bytes = floats * sizeof(float);
  if (bytes > 48 * 1024)  // spans over ~12,000 keys: far beyond BERT's 512 positions
    throw Error(std::string("kernels::") + op + " (CUDA): a span of " + std::to_string(shape.max_length) +
                " keys does not fit shared memory");
  return bytes;
}

}  // namespace

void attention_first_query_forward(float* ctx, float* probs, const float* q, const float* kv,
                                   const AttentionShape& shape, const Dropout& drop) {
  if (shape.num_sequences <= 0) return;
  const dim3 grid = grid_of(shape, "attention_first_query_forward");
  const size_t bytes =
      first_query_bytes(first_query_smem_floats(shape.max_length), shape, "attention_first_query_forward");
  attention_first_query_kernel<<<dim3(grid.x, grid.y), attention_kernels::kThreads, bytes, op_stream()>>>(
      ctx, probs, q, kv, args_of(shape), drop_params(drop));
  check_launch("attention_first_query_kernel");
}

void attention_first_query_backward(float* dq, float* dkv, const float* dctx, const float* q, const float* kv,
                                    const float* probs, const AttentionShape& shape, const Dropout& drop) {
  if (shape.num_sequences <= 0) return;
  const dim3 grid = grid_of(shape, "attention_first_query_backward");
  const size_t bytes = first_query_bytes(first_query_backward_smem_floats(shape.max_length), shape,
                                         "attention_first_query_backward");
  attention_first_query_backward_kernel<<<dim3(grid.x, grid.y), attention_kernels::kThreads, bytes,
                                          op_stream()>>>(dq, dkv, dctx, q, kv, probs, args_of(shape),
                                                         drop_params(drop));
  check_launch("attention_first_query_backward_kernel");
}

}  // namespace bertune::kernels::gpu
