#pragma once
// The counter-based dropout generator, shared by the CPU and CUDA bodies so
// that a GPU run draws exactly the CPU's masks: element i of a dropout site is
// kept when the top 24 bits of splitmix64(stream, i) are >= p * 2^24. Pure
// integer arithmetic, so both compilers give the same bits.
#include <cstdint>

#if defined(__CUDACC__)
#define BERTUNE_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define BERTUNE_HOST_DEVICE inline
#endif

namespace bertune::kernels {

// i-th output of the splitmix64 stream `stream`.
#if !defined(__CUDACC__)
#pragma omp declare simd notinbranch uniform(stream)
#endif
BERTUNE_HOST_DEVICE uint64_t stream_hash(uint64_t stream, uint64_t i) {
  uint64_t z = stream + (i + 1) * 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

// Element i is dropped when its 24-bit draw lies below `threshold`.
BERTUNE_HOST_DEVICE uint32_t dropout_threshold(float p) {
  return static_cast<uint32_t>(static_cast<double>(p) * 16777216.0);
}
// The factor kept elements are multiplied by: 1 / (1 - p).
BERTUNE_HOST_DEVICE float dropout_keep_scale(float p) { return p > 0.f ? 1.f / (1.f - p) : 1.f; }

// mask(i) / (1 - p): 0 or scale.
BERTUNE_HOST_DEVICE float dropout_factor(uint64_t stream, uint32_t threshold, float scale,
                                         uint64_t i) {
  return static_cast<uint32_t>(stream_hash(stream, i) >> 40) >= threshold ? scale : 0.f;
}

}  // namespace bertune::kernels
