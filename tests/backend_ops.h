#pragma once
// The backend test's table of op cases (ggml's test-backend-ops): every op of
// kernels/op_table.inc on shapes, precisions and dropout on/off, each case able to
//   run(d)       run the op through its ops.h front on device d (inputs copied into d's
//                memory, outputs starting as NaN so an element never written fails) and
//                bring every output back, and
//   reference()  compute the same outputs with plain loops in double (op_reference.h).
// The cases themselves: tests/backend_ops_cases.h. tests/test_backend_ops.cc holds the CPU
// to the references; tests/test_gpu_backend_ops.cc holds every other backend built to the
// CPU. A pair a backend lacks (supports() false, or a case its body refuses) is reported
// skipped with the reason.
#include <cmath>
#include <cstdint>
#include <functional>
#include <limits>
#include <string>
#include <vector>

#include "gpu_harness.h"
#include "kernels/memory.h"
#include "kernels/ops.h"
#include "numeric_compare.h"
#include "op_reference.h"

namespace backend_ops {

namespace k = bertune::kernels;
using k::Device;
using k::Op;
using k::Precision;
using gpu_test::Tolerance;
using numeric_compare::randn;
using Doubles = std::vector<double>;
using Floats = std::vector<float>;
using Ints = std::vector<int32_t>;

// Against the double references: float arithmetic of one or a few roundings (elementwise),
// and sums over a row or a dot product in float (kRefSum).
constexpr Tolerance kRef{2e-6, 1e-6, 1e-6};
constexpr Tolerance kRefSum{1e-5, 1e-5, 1e-6};
// GEMMs in reduced precision against the CPU's fp32: the operands' rounding (tf32: 10-bit,
// bf16: 8-bit mantissa), relative to the output's largest magnitude.
constexpr Tolerance kTf32{0, 3e-3, 0};
constexpr Tolerance kBf16{0, 1.5e-2, 0};

// One output of a case: its values and how close another backend (to the CPU) and the
// CPU (to the reference) must come.
struct Output {
  std::string name;
  Doubles values;
  Tolerance vs_cpu, vs_reference;
};
using Outputs = std::vector<Output>;

struct OpCase {
  Op op;
  std::string name;  // unique, letters, digits and _
  Precision precision = Precision::FP32;
  std::string cuda_refuses;  // not empty: the CUDA body does not take this case, and why
  std::function<Outputs(Device)> run;
  std::function<std::vector<Doubles>()> reference;  // one per output, in order
};

// A copy of host values in device d's memory.
template <class T>
class On {
 public:
  On(Device d, const std::vector<T>& host) : d_(d), buf_(d, host.size()) {
    if (!host.empty()) k::copy_to_device(d, buf_.data(), host.data(), host.size() * sizeof(T));
  }
  T* p() { return buf_.data(); }
  Doubles get() const {
    std::vector<T> host(buf_.size());
    if (!host.empty()) k::copy_to_host(d_, host.data(), buf_.data(), host.size() * sizeof(T));
    return Doubles(host.begin(), host.end());
  }

 private:
  Device d_;
  k::DeviceBuffer<T> buf_;
};
inline Floats nans(size_t n) { return Floats(n, std::numeric_limits<float>::quiet_NaN()); }
inline Doubles as_doubles(const Floats& x) { return Doubles(x.begin(), x.end()); }

inline std::string case_name(std::string s) {
  for (char& c : s)
    if (!std::isalnum(static_cast<unsigned char>(c))) c = '_';
  return s;
}
inline std::string p_name(float p) { return p > 0 ? "_p" + std::to_string(int(p * 100)) : "_p0"; }

// Sizes around warp and block edges, up to several million elements (grid-stride loops on a
// GPU). Under the sanitizers, whose builds have no GPU backend, the largest is 300,007: past every
// CPU kernel's parallel grain as well, at a tenth of the instrumented time.
// The optimizer's and the loss's large cases shrink the same way (a million parameters, the
// vocabulary-wide softmax of the masked-LM head).
#if defined(__SANITIZE_ADDRESS__)
constexpr size_t kLargestOpSize = 300 * 1000 + 7;
constexpr size_t kOptimizerSize = 100 * 1000 + 3;
constexpr int kVocabWidth = 8000;
#else
constexpr size_t kLargestOpSize = 3 * 1000 * 1000 + 7;
constexpr size_t kOptimizerSize = 1000 * 1000 + 3;
constexpr int kVocabWidth = 32000;
#endif
inline const std::vector<size_t>& sizes() {
  static const std::vector<size_t> s = {1, 31, 1000, 65537, kLargestOpSize};
  return s;
}
// Rows (T, H): BERT-base, the small model, sizes no multiple of 32, a ragged packed batch's rows.
struct RowShape {
  int T, H;
};
inline std::vector<RowShape> row_shapes() {
  return {{1, 32}, {7, 100}, {33, 256}, {130, 768}, {64, 1030},
          {gpu_test::random_packed_batch(11, 37, 60, 4).rows(), 256}};
}

// A packed batch's attention arrays in device d's memory, and the shape naming them.
struct ShapeOn {
  On<int32_t> offsets, lengths;
  On<int64_t> prob_offsets;
  k::AttentionShape shape;
  ShapeOn(Device d, const gpu_test::PackedBatch& b, int nh, int hd)
      : offsets(d, b.offsets), lengths(d, b.lengths), prob_offsets(d, b.prob_offsets), shape(b.shape(nh, hd)) {
    shape.offsets = offsets.p();
    shape.lengths = lengths.p();
    shape.prob_offsets = prob_offsets.p();
  }
};

// Compares a case's outputs with another run's (or the reference's) values.
inline void expect_outputs(const Outputs& got, const std::vector<Doubles>& want, bool vs_reference,
                           const char* got_name, const char* want_name) {
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i)
    gpu_test::expect_close(got[i].name, got[i].values, want[i],
                           vs_reference ? got[i].vs_reference : got[i].vs_cpu, got_name, want_name);
}

// Sets device d's GEMM precision for one case, and back to fp32 after it. Error (a skip,
// with its message) where d does not compute in that precision.
class PrecisionScope {
 public:
  PrecisionScope(Device d, Precision p) : d_(d) { k::set_precision(d, p); }
  ~PrecisionScope() { k::set_precision(d_, Precision::FP32); }
  PrecisionScope(const PrecisionScope&) = delete;
  PrecisionScope& operator=(const PrecisionScope&) = delete;

 private:
  Device d_;
};

}  // namespace backend_ops
