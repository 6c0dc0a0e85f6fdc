#pragma once
// Branch-free scalar math that GCC vectorises inside `omp simd` loops
// (glibc's expf/erff are not vectorised without -ffast-math, and GELU, softmax
// and dropout run over every activation element).
#include <bit>
#include <cstdint>

#include "kernels/dropout_hash.h"
#include "kernels/ops.h"

namespace bertune::kernels::cpu {

// e^x with Cody-Waite range reduction and a degree-7 Taylor polynomial on
// [-ln2/2, ln2/2]: relative error ~1e-7, i.e. within an ulp or two of expf.
// Exactly 0 below the float range (masked attention scores rely on it).
#pragma omp declare simd notinbranch
inline float exp_fast(float x) {
  float xc = x < -87.3f ? -87.3f : (x > 88.7f ? 88.7f : x);
  // Round to nearest by the 1.5 * 2^23 trick: floorf would block vectorisation
  // (GCC keeps it scalar unless -fno-trapping-math).
  float n = (xc * 1.44269504088896341f + 12582912.f) - 12582912.f;
  float r = xc - n * 0.693145751953125f;
  r = r - n * 1.428606765330187045e-06f;
  float p = 1.f / 5040.f;
  p = p * r + 1.f / 720.f;
  p = p * r + 1.f / 120.f;
  p = p * r + 1.f / 24.f;
  p = p * r + 1.f / 6.f;
  p = p * r + 0.5f;
  p = p * r + 1.f;
  p = p * r + 1.f;
  int32_t e = (static_cast<int32_t>(n) + 127) << 23;
  float y = p * std::bit_cast<float>(e);
  return x < -87.3f ? 0.f : y;
}

// erf by Abramowitz & Stegun 7.1.26 (|error| <= 1.5e-7), odd extension.
#pragma omp declare simd notinbranch
inline float erf_fast(float x) {
  float a = x < 0.f ? -x : x;
  float t = 1.f / (1.f + 0.3275911f * a);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  poly = poly * t;
  float y = 1.f - poly * exp_fast(-a * a);
  return x < 0.f ? -y : y;
}

// d/dx GELU(x) = Phi(x) + x phi(x), one exp shared by erf and the density:
// exp(-(x/sqrt2)^2) = exp(-x^2/2).
inline float gelu_grad_fast(float x) {
  float a = (x < 0.f ? -x : x) * 0.70710678118654752f;
  float t = 1.f / (1.f + 0.3275911f * a);
  float poly = 1.061405429f;
  poly = poly * t - 1.453152027f;
  poly = poly * t + 1.421413741f;
  poly = poly * t - 0.284496736f;
  poly = poly * t + 0.254829592f;
  poly = poly * t;
  float e = exp_fast(-0.5f * x * x);
  float erf_a = 1.f - poly * e;
  float cdf = 0.5f * (1.f + (x < 0.f ? -erf_a : erf_a));
  return cdf + x * 0.3989422804014327f * e;
}

// Dropout keeps element i when a 24-bit uniform draw is >= p (kernels/dropout_hash.h:
// the same generator the CUDA bodies use).
struct DropMask {
  uint64_t stream;
  uint32_t threshold;  // p * 2^24
  float scale;         // 1 / (1 - p)
  explicit DropMask(const Dropout& d)
      : stream(d.stream), threshold(dropout_threshold(d.p)), scale(dropout_keep_scale(d.p)) {}
  // mask(i) / (1 - p): 0 or scale
  inline float factor(uint64_t i) const { return dropout_factor(stream, threshold, scale, i); }
};

}  // namespace bertune::kernels::cpu
