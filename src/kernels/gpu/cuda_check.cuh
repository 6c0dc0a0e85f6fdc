#pragma once
// What every .cu file of the CUDA backend shares: the one stream all work goes
// on, error checks that throw bertune::Error naming the CUDA call, and launch
// sizes. Only .cu files include this (it needs the CUDA headers).
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "util/error.h"

namespace bertune::kernels::gpu {

// runtime.h: every call is ordered on the per-thread default stream of the calling thread.
inline cudaStream_t stream() { return cudaStreamPerThread; }

[[noreturn]] inline void throw_cuda(const char* call, cudaError_t e) {
  throw Error(std::string("CUDA: ") + call + " failed: " + cudaGetErrorName(e) + " (" +
              cudaGetErrorString(e) + ")");
}
inline void check_cuda(cudaError_t e, const char* call) {
  if (e != cudaSuccess) throw_cuda(call, e);
}
// After a kernel launch: a bad configuration shows here; faults inside the
// kernel show at the next synchronising call (synchronize(), copy_to_host()).
inline void check_launch(const char* kernel) { check_cuda(cudaGetLastError(), kernel); }

constexpr int kThreads = 256;
// Blocks for a grid-stride loop over n elements: enough to fill an H100/H200
// (132 SMs x 8 resident blocks of 256) and no more.
inline unsigned grid_for(size_t n, int threads = kThreads) {
  size_t blocks = (n + threads - 1) / threads;
  if (blocks > 132 * 8) blocks = 132 * 8;
  return blocks == 0 ? 1u : static_cast<unsigned>(blocks);
}

}  // namespace bertune::kernels::gpu

#define BERTUNE_CUDA_CHECK(call) ::bertune::kernels::gpu::check_cuda((call), #call)
