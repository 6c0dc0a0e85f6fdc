#pragma once
// Small helpers shared by gemm_gpu.cu and attention_gpu.cu: the backend's stream
// and error checks (cuda_check.cuh) under the names they use, and a grow-only
// device scratch buffer.
#include <cuda_runtime.h>

#include <cstddef>
#include <string>

#include "kernels/gpu/cuda_check.cuh"
#include "util/error.h"

namespace bertune::kernels::gpu::detail {

// The stream and the error checks are the backend's one set (cuda_check.cuh).
inline cudaStream_t op_stream() { return stream(); }
using gpu::check_cuda;
using gpu::check_launch;

inline unsigned ceil_div(size_t a, size_t b) { return static_cast<unsigned>((a + b - 1) / b); }

// Device memory that only grows. Growth is stream-ordered (cudaFreeAsync of the
// old block, cudaMallocAsync of the new one on op_stream()), so work already
// queued on the old block finishes first. Once a step's shapes have been seen
// it never allocates again, which is what CUDA Graph capture needs.
class GrowOnlyScratch {
 public:
  GrowOnlyScratch() = default;
  GrowOnlyScratch(const GrowOnlyScratch&) = delete;
  GrowOnlyScratch& operator=(const GrowOnlyScratch&) = delete;
  // Deliberately never freed: these live for the process, and freeing after the
  // CUDA runtime has torn down at exit would fail.
  void* get(size_t bytes, const char* what) {
    if (bytes <= bytes_) return ptr_;
    size_t grown = bytes_ * 2 > bytes ? bytes_ * 2 : bytes;
    if (ptr_) check_cuda(cudaFreeAsync(ptr_, op_stream()), what);
    ptr_ = nullptr;
    bytes_ = 0;
    check_cuda(cudaMallocAsync(&ptr_, grown, op_stream()), what);
    bytes_ = grown;
    return ptr_;
  }

 private:
  void* ptr_ = nullptr;
  size_t bytes_ = 0;
};

}  // namespace bertune::kernels::gpu::detail
