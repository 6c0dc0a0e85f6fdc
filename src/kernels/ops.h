#pragma once
// The device-neutral front of every numerical kernel the model uses.
//
// Each op checks its shapes once, then dispatches on `Device` to a backend
// body: kernels/cpu/*_cpu.cc, and kernels/gpu/*.cu when the build has CUDA
// (BERTUNE_CUDA). Pointers are raw, row-major, contiguous unless a leading
// dimension is given, and live on the op's device: the model owns the memory,
// the kernels only compute (llm.c style). A front reads only its scalar
// arguments, never argument memory (on CUDA that is device memory): what
// needs the data checked (labels, attention offsets) is checked by the
// caller on its host copy (check_attention_metadata; the model's batch checks).
//
// The ops themselves, their meaning and which backends have a body, are the rows of
// kernels/op_table.inc: this header declares one front per row,
//   ret name(Device d, params...)
// and supports(d, Op::name) says whether this build has a body of the op for d. Here:
// the types the ops take, and what is not an op of the table (precision, int8 weights).
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

namespace bertune::kernels {

enum class Device { CPU, CUDA };
const char* device_name(Device d);

// ---- dropout -------------------------------------------------------------
// Counter-based: whether element i is kept is a pure function of
// (seed, step, site, i), so masks are reproducible, resumable and can be
// regenerated in backward instead of stored.
struct Dropout {
  uint64_t stream = 0;  // hash of (seed, step, site)
  float p = 0.f;        // drop probability; 0 = identity
  static Dropout make(uint64_t seed, uint64_t step, uint64_t site, float p);
  bool active() const { return p > 0.f; }
  // The same site seen from element `first` on: element i of the result draws what element
  // first + i of this one draws (stream_hash(stream, i) depends on stream + (i + 1) * golden,
  // kernels/dropout_hash.h). How a rank holding part of a global batch draws the masks its
  // elements have in the whole batch.
  Dropout shifted(uint64_t first) const { return Dropout{stream + first * 0x9E3779B97F4A7C15ull, p}; }
};

// ---- GEMM precision ------------------------------------------------------
// What the GEMMs of gemm / linear_* multiply in; outputs, accumulation, gradients and
// master weights stay fp32 in every mode, and so does everything else (attention included).
//   FP32  fp32 products: the CPU's default, and what the golden tests hold CUDA to
//   TF32  operands rounded to tf32 (10-bit mantissa) in the tensor cores (CUDA)
//   BF16  operands rounded to bf16 (8-bit mantissa) per call, fp32 accumulation (CUDA; the
//         CPU with avx512_bf16 or AMX-BF16 in a build with oneDNN)
enum class Precision { FP32, TF32, BF16 };
Precision parse_precision(const std::string& name);  // fp32|tf32|bf16; Error naming the choices
const char* precision_name(Precision p);              // "fp32" | "tf32" | "bf16"
Precision default_precision(Device d);                // bf16 on CUDA, fp32 on the CPU
// Why device d cannot compute GEMMs in p (what is missing: a GPU for tf32, the CPU flag or
// oneDNN for bf16 on the CPU); "" when it can, or when the device's own check decides (CUDA).
std::string precision_unavailable(Device d, Precision p);
// Sets device d's GEMM precision for the whole process (from the next GEMM on); an Error
// with precision_unavailable's reason when the device cannot.
void set_precision(Device d, Precision p);

// ---- attention ---------------------------------------------------------------
// Sequences lie end to end in the token dimension: sequence b owns rows
// [offsets[b], offsets[b+1]) of every activation. Only the first lengths[b]
// of them are real; when lengths[b] is shorter (padded mode) the rest are pad
// rows that are still computed, with pad KEYS masked exactly as HF does it
// (score + finfo(float32).min). qkv is [T, 3H] = [Q | K | V]; heads split H.
// offsets, lengths and prob_offsets live on the op's device; everything else
// is a host scalar, so the front and a CUDA launch never read the arrays.
struct AttentionShape {
  const int32_t* offsets = nullptr;  // [B+1]
  const int32_t* lengths = nullptr;  // [B]
  int num_sequences = 0;
  int num_heads = 0;
  int head_dim = 0;
  // probs layout: sequence b, head h starts at prob_offsets[b] + h * n_b * n_b
  const int64_t* prob_offsets = nullptr;  // [B+1]
  // The longest span offsets[b+1] - offsets[b] (launch sizes on CUDA, which
  // requires it > 0 when num_sequences > 0; 0 on CPU means "not given").
  int max_length = 0;
};
// Checks host copies of the arrays of an AttentionShape (the shape's own
// pointers are ignored): every span positive, 0 < lengths[b] <= span,
// prob_offsets advancing by heads x span^2, max_length (when given) the longest
// span. Throws Error naming `op` and the sequence. The CPU fronts call it
// themselves; a caller that uploads the arrays for CUDA calls it before upload.
void check_attention_metadata(const AttentionShape& shape, const int32_t* offsets,
                              const int32_t* lengths, const int64_t* prob_offsets,
                              const char* op = "attention");

// ---- loss against float targets (target_loss) --------------------------------------
//   MSE            (x - y)^2, as torch.nn.MSELoss (regression)
//   BCEWithLogits  max(x, 0) - x y + log(1 + exp(-|x|)), as torch.nn.BCEWithLogitsLoss
//                  (multi-label classification, y a 0/1 target per logit)
enum class TargetLoss { MSE, BCEWithLogits };

// ---- optimizer ---------------------------------------------------------------
// One fused AdamW pass over flat buffers, covering both forms the HF Trainer
// can use (train/optimizer.h picks the coefficients):
//   g *= grad_scale                                  (grad-norm clipping, fused)
//   p *= pre_decay                                   (torch.optim.AdamW: 1 - lr*wd)
//   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
//   p -= step_size * m / (sqrt(v) / bias2_sqrt + eps)
//   p += post_decay * p                              (transformers.AdamW: -lr*wd)
//   g = 0 when zero_grad (the Trainer's zero_grad, without another pass).
// With clip_sum_squares set (memory of the op's device: a sum of squares from
// sum_squares_accumulate) and max_grad_norm > 0, the gradient factor is
// grad_scale * min(1, max_grad_norm / (sqrt(*clip_sum_squares) + 1e-6)) in
// float32, as torch's clip_grad_norm_: clipping without the norm leaving the device.
struct AdamWStep {
  float beta1, one_minus_beta1, beta2, one_minus_beta2, eps;
  float step_size, bias2_sqrt, pre_decay, post_decay;
  float grad_scale = 1.f;
  const double* clip_sum_squares = nullptr;
  float max_grad_norm = 0.f;
};
// A range of the flat buffers adamw_update_ranges / adamw_update_device update.
struct AdamWRange {
  size_t begin = 0, end = 0;
  bool decay = true;
};
// AdamW's hyper-parameters (train/optimizer.h's AdamWOptions, the variant as a flag).
struct AdamWHyper {
  double beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool torch_form = false;  // torch.optim.AdamW; false: transformers.AdamW
};
// One AdamW step whose inputs the host never reads: it updates only when *loss_sum and the
// gradient norm sqrt(*sum_squares) / micro_batches are finite (TrainStep's rule), as update
// t = *step_count + 1, clipped as torch's clip_grad_norm_ (max_grad_norm <= 0: no clipping),
// and then adds 1 to *step_count; otherwise p, m, v and *step_count stay. Gradients are
// zeroed either way. The arithmetic is kernels/adamw_math.h's, the host's.
struct AdamWDeviceStep {
  AdamWHyper hyper;
  double lr = 0;
  double max_grad_norm = 0;
  int micro_batches = 1;
  float grad_scale = 1.f;               // a further factor on every gradient
  const double* loss_sum = nullptr;     // device d
  const double* sum_squares = nullptr;  // device d
  int64_t* step_count = nullptr;        // device d
};

// ---- int8 linear (inference only, CPU only; bodies in kernels/cpu/linear_int8_cpu.cc) ----
// nn.Linear with the weight quantized per output channel, symmetric:
//   W[o, k] ~= scale[o] * q[o, k],  q in [-127, 127],  scale[o] = max_k |W[o, k]| / 127.
// Activations are quantized per row the same way, on the fly; products accumulate in
// int32 (exact), then y = float(acc) * (row_scale * scale[o]) + b[o] in fp32 (one fma).
// So every kernel path gives the same bits.
// What a kernel derives from a weight on its first use, kept beside it. A copy starts
// empty (and derives its own), so a changed copy never reads its source's.
class DerivedCache {
 public:
  DerivedCache() = default;
  DerivedCache(const DerivedCache&) {}
  DerivedCache& operator=(const DerivedCache&) {
    reset();
    return *this;
  }
  // The value make() returns on the first call (one call whatever the threads).
  template <class T, class Make>
  std::shared_ptr<const T> get(Make make) const {
    std::lock_guard lock(mu_);
    if (!value_) value_ = make();
    return std::static_pointer_cast<const T>(value_);
  }
  void reset() {
    std::lock_guard lock(mu_);
    value_.reset();
  }

 private:
  mutable std::mutex mu_;
  mutable std::shared_ptr<const void> value_;
};

struct QuantizedLinear {
  int in = 0, out = 0;
  std::vector<int8_t> q;       // [out, in] row-major: what a quantized checkpoint stores
  std::vector<float> scale;    // [out]
  // Derived by pack_quantized_linear(): the layout of the VNNI kernel (vpdpbusd, u8 x s8),
  // which the AVX2 kernel reads too: 16-column blocks of [k/4][16][4] bytes, k padded to
  // 4 and out to 16 with zeros, and 128 * sum_k q[o, k] per column to undo the +128 that
  // makes activations unsigned (VNNI only).
  std::vector<int8_t> packed;
  std::vector<int32_t> compensation;  // [out padded to 16]
  DerivedCache onednn;                // the onednn kernel's blocked copy of q, on its first use
};
// Quantizes W [out, in] (and packs it).
QuantizedLinear quantize_linear(const float* W, int out, int in);
// Rebuilds packed / compensation from q and scale (after loading them). Throws Error on bad sizes.
void pack_quantized_linear(QuantizedLinear& w);

// ---- the ops: one front per row of kernels/op_table.inc ----------------------------
#define BERTUNE_UNPAREN(...) __VA_ARGS__
// A row's backends: whether it has a CUDA body (expands its arguments only if so).
#define BERTUNE_IF_CUDA_CPU(...)
#define BERTUNE_IF_CUDA_CPU_CUDA(...) __VA_ARGS__
#define BERTUNE_DEFAULT(value) = value
#define BERTUNE_OP(name, backends, front, ret, params, args) ret name(Device d, BERTUNE_UNPAREN params);
#include "kernels/op_table.inc"
#undef BERTUNE_OP
#undef BERTUNE_DEFAULT

// Op::name for every row, in table order.
enum class Op {
#define BERTUNE_OP(name, ...) name,
#include "kernels/op_table.inc"
#undef BERTUNE_OP
};
inline constexpr Op kAllOps[] = {
#define BERTUNE_OP(name, ...) Op::name,
#include "kernels/op_table.inc"
#undef BERTUNE_OP
};
inline constexpr int kOpCount = int(std::size(kAllOps));
const char* op_name(Op op);  // "gelu_forward"
// Whether this build has a body of `op` for device d (the CPU has every op; CUDA those its
// row names, in a build with CUDA). Whether a GPU is present is require_device's question
// (kernels/memory.h). A call without a body is an Error naming the op and the device.
bool supports(Device d, Op op);

// Which int8 kernel runs: Auto = the first the CPU running us has (checked with cpuid at
// run time, not at build time) of oneDNN (builds with oneDNN, where it multiplies with
// VNNI), AVX-512 VNNI, AVX2 (+FMA), portable. The environment variable
// BERTUNE_INT8_KERNEL=portable|avx2|vnni|onednn picks one at start-up (one that cannot run
// falls back to Auto's choice, with a note on stderr). All give the same bits.
enum class Int8Kernel { Auto, Portable, Avx2, Vnni, Onednn };
void set_int8_kernel(Int8Kernel k);  // a kernel that cannot run here: Error saying why
const char* int8_kernel_name();      // "onednn" | "avx512-vnni" | "avx2" | "portable": what runs now
bool cpu_has_avx512_vnni();
bool cpu_has_avx2();                 // AVX2 and FMA
// Null when the onednn kernel can run, else why not (no oneDNN in this build; oneDNN's ISA
// without VNNI, where its u8 x s8 products saturate).
const char* onednn_int8_unavailable();

// The inference seam for int8 models: while an Int8Binding lives, linear_forward() called
// with a bound fp32 weight pointer W runs linear_int8_forward() with W's quantized
// weight instead of the fp32 GEMM (same x, b, T; in/out must match). So a model's forward
// uses int8 without the model knowing; backward and unbound weights are untouched, and
// with nothing bound linear_forward pays one relaxed atomic load. One pointer may carry
// several widths (a fused [3H, H] QKV weight and its query rows [H, H] start at the same
// address): linear_forward picks the one whose `out` matches.
class Int8Binding {
 public:
  Int8Binding() = default;
  Int8Binding(const Int8Binding&) = delete;
  Int8Binding& operator=(const Int8Binding&) = delete;
  ~Int8Binding();  // unbinds everything it bound
  // Throws Error when W is already bound with q.out rows (by any binding).
  void bind(const float* W, QuantizedLinear q);
  size_t size() const { return bound_.size(); }

 private:
  std::vector<std::pair<const float*, int>> bound_;  // (W, out)
};
// The quantized weight bound to W with `out` rows (out 0: any width), or null.
const QuantizedLinear* bound_int8_weight(const float* W, int out = 0);

}  // namespace bertune::kernels
