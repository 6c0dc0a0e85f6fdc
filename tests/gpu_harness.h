#pragma once
// The GPU test harness: device memory, tolerances, random inputs and packed batches for
// the tests that hold a CUDA body to the CPU's. Every op of the op table is already
// covered by the backend test (tests/backend_ops_cases.h: add an op's cases there); this
// serves the GPU tests beyond it (tests/test_gpu_*.cc, the `gpu` ctest label), e.g.
//
//   TEST(GpuGemm, Something) {
//     BERTUNE_REQUIRE_GPU();                       // skipped, with the reason, without a GPU
//     auto x = gpu_test::randn(n, seed);
//     gpu_test::DeviceArray<float> dx(x), dy = gpu_test::DeviceArray<float>::poisoned(n);
//     kernels::my_op(Device::CUDA, dy.data(), dx.data(), n);
//     std::vector<float> want(n);
//     kernels::my_op(Device::CPU, want.data(), x.data(), n);
//     gpu_test::expect_close("my_op y", dy.download(), want, gpu_test::kFp32);
//   }
//
// Outputs start poisoned (NaN), so an element the kernel never wrote fails.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <random>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "numeric_compare.h"
#ifdef BERTUNE_CUDA
#include "kernels/gpu/runtime.h"
#endif

namespace gpu_test {

// Why the GPU tests cannot run here, or "" when they can.
inline std::string gpu_missing() {
#ifdef BERTUNE_CUDA
  static const std::string why = [] {
    std::string reason;
    return bertune::kernels::gpu::available(&reason) ? std::string() : "no usable GPU: " + reason;
  }();
  return why;
#else
  return "built without CUDA (BERTUNE_CUDA=OFF or no nvcc at configure time)";
#endif
}

#define BERTUNE_REQUIRE_GPU()                                 \
  do {                                                        \
    const std::string why_ = ::gpu_test::gpu_missing();       \
    if (!why_.empty()) GTEST_SKIP() << why_;                  \
  } while (0)

// Device memory holding a copy of a host vector; download() copies it back.
template <class T>
class DeviceArray {
 public:
  DeviceArray() = default;
  explicit DeviceArray(const std::vector<T>& host) : n_(host.size()) {
    ptr_ = static_cast<T*>(allocate(bytes()));
    upload(host);
  }
  // n elements of NaN (all-ones bytes for integers): never-written outputs show.
  static DeviceArray poisoned(size_t n) {
    std::vector<T> host(n, poison());
    return DeviceArray(host);
  }
  DeviceArray(const DeviceArray&) = delete;
  DeviceArray& operator=(const DeviceArray&) = delete;
  DeviceArray(DeviceArray&& o) noexcept : ptr_(o.ptr_), n_(o.n_) { o.ptr_ = nullptr; o.n_ = 0; }
  DeviceArray& operator=(DeviceArray&& o) noexcept {
    std::swap(ptr_, o.ptr_);
    std::swap(n_, o.n_);
    return *this;
  }
  ~DeviceArray() { release(ptr_); }

  T* data() { return ptr_; }
  const T* data() const { return ptr_; }
  size_t size() const { return n_; }
  void upload(const std::vector<T>& host) {
    if (host.size() != n_) throw std::logic_error("DeviceArray::upload: size mismatch");
#ifdef BERTUNE_CUDA
    bertune::kernels::gpu::copy_to_device(ptr_, host.data(), bytes());
#endif
  }
  std::vector<T> download() const {
    std::vector<T> host(n_);
#ifdef BERTUNE_CUDA
    bertune::kernels::gpu::copy_to_host(host.data(), ptr_, bytes());
#else
    throw std::logic_error("DeviceArray: built without CUDA");
#endif
    return host;
  }

 private:
  static T poison() {
    if constexpr (std::is_floating_point_v<T>) return std::numeric_limits<T>::quiet_NaN();
    else return static_cast<T>(-1);
  }
  size_t bytes() const { return n_ * sizeof(T); }
  static void* allocate(size_t bytes) {
#ifdef BERTUNE_CUDA
    return bertune::kernels::gpu::malloc_bytes(bytes);
#else
    throw std::logic_error("DeviceArray: built without CUDA");
#endif
  }
  static void release(void* p) {
#ifdef BERTUNE_CUDA
    bertune::kernels::gpu::free_bytes(p);
#endif
  }
  T* ptr_ = nullptr;
  size_t n_ = 0;
};

// ---- tolerances ----------------------------------------------------------------
// Element i passes when |got - want| <= rtol * |want| + atol_scale * max_j |want_j| + atol;
// NaN or Inf where the reference is finite never passes.
struct Tolerance {
  double rtol;        // relative to the element
  double atol_scale;  // absolute, relative to the tensor's largest magnitude
  double atol;        // absolute
};
// fp32 elementwise and row ops: a few ulps (another summation order in row
// reductions, fused multiply-adds on the GPU).
constexpr Tolerance kFp32{1e-5, 1e-6, 1e-6};
// fp32 sums over many rows in another order (atomics): dgamma, embedding and
// bias gradients, scatter-adds.
constexpr Tolerance kFp32Sum{1e-5, 1e-5, 1e-6};
// GELU: the CPU body uses Abramowitz-Stegun erf (|error| <= 1.5e-7) and a
// polynomial exp, the GPU erff/expf: up to ~1e-6 apart where |x| is large.
constexpr Tolerance kGelu{1e-5, 1e-6, 1e-5};
// Bitwise equal (dropout masks: the same generator, the same single multiply).
constexpr Tolerance kExact{0, 0, 0};

// got_name / want_name: what the message calls the two (a GPU body against the CPU's).
template <class T>
void expect_close(const std::string& what, const std::vector<T>& got, const std::vector<T>& want, Tolerance tol,
                  const char* got_name = "gpu", const char* want_name = "cpu") {
  ASSERT_EQ(got.size(), want.size()) << what;
  double scale = 0.0;
  for (T w : want) scale = std::max(scale, double(std::fabs(w)));
  const double floor_abs = tol.atol_scale * scale + tol.atol;
  size_t bad = 0, first_bad = 0;
  double worst = 0.0;  // largest |got - want| / allowed
  for (size_t i = 0; i < got.size(); ++i) {
    double diff = std::fabs(double(got[i]) - double(want[i]));
    double allowed = tol.rtol * std::fabs(double(want[i])) + floor_abs;
    bool ok = std::isfinite(want[i]) ? std::isfinite(got[i]) && diff <= allowed
                                     : (std::isnan(want[i]) ? std::isnan(got[i]) : got[i] == want[i]);
    if (allowed > 0) worst = std::max(worst, diff / allowed);
    if (!ok && bad++ == 0) first_bad = i;
  }
  EXPECT_EQ(bad, 0u) << what << ": " << bad << " of " << got.size()
                     << " elements out of tolerance (rtol " << tol.rtol << ", atol "
                     << floor_abs << "); first at " << first_bad << ": " << got_name << " " << got[first_bad]
                     << " vs " << want_name << " " << want[first_bad];
  std::printf("  %-40s n=%-8zu max err/allowed %.3g\n", what.c_str(), got.size(), worst);
}

// ---- random inputs ---------------------------------------------------------------
using numeric_compare::randn;

inline std::vector<int32_t> random_ints(size_t n, uint32_t seed, int lo, int hi) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> d(lo, hi);
  std::vector<int32_t> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}

// A ragged packed batch as the model lays it out: sequence b owns rows
// [offsets[b], offsets[b+1]); the first lengths[b] are real, the rest pad
// (about a third of the sequences are padded spans). Host arrays; upload them
// with DeviceArray and put the device pointers into `shape` for a CUDA call.
struct PackedBatch {
  std::vector<int32_t> offsets{0}, lengths, positions;
  std::vector<int64_t> prob_offsets{0};
  int max_length = 0;
  int rows() const { return offsets.back(); }
  int sequences() const { return int(lengths.size()); }
  bertune::kernels::AttentionShape shape(int num_heads, int head_dim) const {
    bertune::kernels::AttentionShape s;
    s.offsets = offsets.data();
    s.lengths = lengths.data();
    s.num_sequences = sequences();
    s.num_heads = num_heads;
    s.head_dim = head_dim;
    s.prob_offsets = prob_offsets.data();
    s.max_length = max_length;
    return s;
  }
};

inline PackedBatch random_packed_batch(uint32_t seed, int sequences, int longest, int num_heads) {
  std::mt19937 rng(seed);
  std::uniform_int_distribution<int> span_of(1, longest);
  PackedBatch b;
  for (int s = 0; s < sequences; ++s) {
    int span = span_of(rng);
    int length = (rng() % 3 == 0) ? 1 + int(rng() % span) : span;
    b.offsets.push_back(b.offsets.back() + span);
    b.lengths.push_back(length);
    b.prob_offsets.push_back(b.prob_offsets.back() + int64_t(num_heads) * span * span);
    for (int i = 0; i < span; ++i) b.positions.push_back(i);
    b.max_length = std::max(b.max_length, span);
  }
  return b;
}

}  // namespace gpu_test
