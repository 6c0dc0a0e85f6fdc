#pragma once
// The small kernels around the cuBLASLt calls of gemm_gpu.cu: operand
// conversion to bf16, C = beta C, the bias broadcast and the bias-gradient
// reduction. In a header so that tests/test_gemm_kernels_emulated.cc can run
// them on the CPU over tests/cuda_emulation.h (see attention_kernels.cuh).
// Only gemm_gpu.cu may include it among the .cu files (the kernels are not inline).
#include <cstddef>
#include <cstdint>
#include <utility>

#ifndef BERTUNE_CUDA_EMULATION
#include <cuda_bf16.h>
#endif

namespace bertune::kernels::gpu::gemm_kernels {
// Internal linkage: the emulated CPU tests (tests/test_*_kernels_emulated.cc) include this
// header too, and a test binary links the CUDA library beside them.
namespace {

// dst[r * dst_ld + c] = bf16(src[r * ld + c]): one stored operand.
__global__ void to_bf16_kernel(__nv_bfloat16* dst, int dst_ld, const float* src, int ld, int rows,
                               int cols) {
  const size_t total = size_t(rows) * cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / cols, c = i % cols;
    dst[r * dst_ld + c] = __float2bfloat16_rn(src[r * ld + c]);
  }
}

// The same, four columns per thread (16-byte loads) when cols, ld and src allow it.
__global__ void to_bf16_quads_kernel(__nv_bfloat16* dst, int dst_ld, const float* src, int ld,
                                     int rows, int quads_per_row) {
  const size_t total = size_t(rows) * quads_per_row;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    const size_t r = i / quads_per_row, c = (i % quads_per_row) * 4;
    const float4 v = *reinterpret_cast<const float4*>(src + r * ld + c);
    auto* out = reinterpret_cast<__nv_bfloat162*>(dst + r * dst_ld + c);
    out[0] = __floats2bfloat162_rn(v.x, v.y);
    out[1] = __floats2bfloat162_rn(v.z, v.w);
  }
}

// C[r * ldc + c] = beta * C (beta = 0 writes zeros, as BLAS does): a GEMM with K = 0.
__global__ void scale_matrix_kernel(float* C, int rows, int cols, int ldc, float beta) {
  const size_t total = size_t(rows) * cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x) {
    float* c = C + (i / cols) * ldc + i % cols;
    *c = beta == 0.f ? 0.f : beta * *c;
  }
}

// y[t, :] = b for every row: the bias, when the GEMM epilogue cannot add it.
__global__ void broadcast_rows_kernel(float* y, const float* b, int rows, int cols) {
  const size_t total = size_t(rows) * cols;
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < total;
       i += size_t(gridDim.x) * blockDim.x)
    y[i] = b[i % cols];
}

// db[j] += sum_t dy[t, j], deterministic: blocks of 32 columns x kRowsPerChunk
// rows write partial sums, summed in a fixed order by a second kernel (or, for
// a single chunk, added to db at once).
constexpr int kRowsPerChunk = 128;
constexpr int kColumnThreads = 32, kRowThreads = 8;
constexpr int kMaxChunks = 1024;  // bounds the partial-sum buffer: chunks x cols floats

// {chunks, rows per chunk} for T rows: kRowsPerChunk rows a block, unless that
// makes more than kMaxChunks chunks, then longer chunks.
inline std::pair<int, int> column_chunks(int T) {
  int rows_per_chunk = kRowsPerChunk;
  int chunks = (T + rows_per_chunk - 1) / rows_per_chunk;
  if (chunks > kMaxChunks) {
    rows_per_chunk = (T + kMaxChunks - 1) / kMaxChunks;
    chunks = (T + rows_per_chunk - 1) / rows_per_chunk;
  }
  return {chunks, rows_per_chunk};
}

__global__ void column_sums_kernel(float* out, bool accumulate, const float* dy, int T, int cols,
                                   int rows_per_chunk) {
  __shared__ float partial[kRowThreads][kColumnThreads + 1];
  const int col = blockIdx.x * kColumnThreads + threadIdx.x;
  const int row_begin = blockIdx.y * rows_per_chunk;
  const int row_end = min(T, row_begin + rows_per_chunk);
  float sum = 0.f;
  if (col < cols)
    for (int t = row_begin + threadIdx.y; t < row_end; t += kRowThreads) sum += dy[size_t(t) * cols + col];
  partial[threadIdx.y][threadIdx.x] = sum;
  __syncthreads();
  if (threadIdx.y != 0 || col >= cols) return;
  for (int r = 1; r < kRowThreads; ++r) sum += partial[r][threadIdx.x];
  float* dst = out + size_t(blockIdx.y) * cols + col;
  *dst = accumulate ? *dst + sum : sum;
}

__global__ void add_partials_kernel(float* db, const float* partials, int chunks, int cols) {
  const int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= cols) return;
  float sum = 0.f;
  for (int c = 0; c < chunks; ++c) sum += partials[size_t(c) * cols + col];
  db[col] += sum;
}

}  // namespace
}  // namespace bertune::kernels::gpu::gemm_kernels
