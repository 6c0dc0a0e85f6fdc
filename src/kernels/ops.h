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
// Conventions: forward ops overwrite their outputs; backward ops ACCUMULATE
// (+=) into parameter gradients, and overwrite activation gradients unless
// the comment says otherwise.
#include <cstddef>
#include <cstdint>
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
};
// y = x * mask / (1 - p)   (in place allowed)
void dropout_forward(Device d, float* y, const float* x, size_t n, const Dropout& drop);
// dx = dy * mask / (1 - p) (in place allowed)
void dropout_backward(Device d, float* dx, const float* dy, size_t n, const Dropout& drop);
// Dropout of n_rows rows gathered from a [*, width] tensor: y row r = x row r times the
// mask of row rows[r] / (1 - p), so each row gets the mask it gets in place (element
// rows[r] * width + j). Its own backward (dx = dy times the same factors); in place allowed.
void dropout_rows(Device d, float* y, const float* x, const int32_t* rows, int n_rows, int width,
                  const Dropout& drop);

// ---- GEMM ----------------------------------------------------------------
// Row-major C[M,N] = alpha * op(A) * op(B) + beta * C, op(A) [M,K], op(B) [K,N].
// A is stored [M,K] (lda >= K), or [K,M] when trans_a (lda >= M); same for B.
void gemm(Device d, bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A,
          int lda, const float* B, int ldb, float beta, float* C, int ldc);

// What the GEMMs of gemm / linear_* multiply in; outputs, accumulation, gradients and
// master weights stay fp32 in every mode, and so does everything else (attention included).
//   FP32  fp32 products: the CPU's only mode, and what the golden tests hold CUDA to
//   TF32  operands rounded to tf32 (10-bit mantissa) in the tensor cores (CUDA)
//   BF16  operands rounded to bf16 (8-bit mantissa) per call, fp32 accumulation (CUDA)
enum class Precision { FP32, TF32, BF16 };
Precision parse_precision(const std::string& name);  // fp32|tf32|bf16; Error naming the choices
const char* precision_name(Precision p);              // "fp32" | "tf32" | "bf16"
Precision default_precision(Device d);                // bf16 on CUDA, fp32 on the CPU
// Sets device d's GEMM precision for the whole process (from the next GEMM on). The CPU
// computes fp32 only: TF32 or BF16 there is an Error.
void set_precision(Device d, Precision p);

// ---- linear (nn.Linear, weight [out, in]) ---------------------------------
// y[T,out] = x[T,in] W^T + b   (b may be null)
void linear_forward(Device d, float* y, const float* x, const float* W, const float* b, int T,
                    int in, int out);
// dW += dy^T x; db += sum_t dy (db may be null);
// dx = dy W, or dx += dy W when accumulate_dx (dx may be null: not needed).
void linear_backward(Device d, float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int T, int in, int out, bool accumulate_dx = false);

// ---- elementwise / row ops -----------------------------------------------
// GELU, erf form: 0.5 x (1 + erf(x / sqrt 2)).
void gelu_forward(Device d, float* y, const float* x, size_t n);
// dx = dy * gelu'(x)
void gelu_backward(Device d, float* dx, const float* dy, const float* x, size_t n);
// y = tanh(x); backward from y: dx = dy (1 - y^2)
void tanh_forward(Device d, float* y, const float* x, size_t n);
void tanh_backward(Device d, float* dx, const float* dy, const float* y, size_t n);

// out = LayerNorm(x) over rows of H; saves mean and rstd [T] for backward.
void layernorm_forward(Device d, float* out, float* mean, float* rstd, const float* x,
                       const float* gamma, const float* beta, int T, int H, float eps);
// dx = dLN/dx . dout (overwrite); dgamma, dbeta +=.
void layernorm_backward(Device d, float* dx, float* dgamma, float* dbeta, const float* dout,
                        const float* x, const float* mean, const float* rstd, const float* gamma,
                        int T, int H);

// The fused tail of both BERT sublayers (BertSelfOutput / BertOutput):
//   s = dropout(y) + residual;  out = LayerNorm(s)
// y already includes the dense bias. Saves s, mean, rstd for backward.
void dropout_residual_layernorm_forward(Device d, float* out, float* s, float* mean, float* rstd,
                                        const float* y, const float* residual, const float* gamma,
                                        const float* beta, int T, int H, float eps,
                                        const Dropout& drop);

// Linear bias + GELU in one pass: u = y + b (kept for backward), g = gelu(u).
void bias_gelu_forward(Device d, float* u, float* g, const float* b, int T, int N);

// ---- embeddings ------------------------------------------------------------
// out[t] = word[ids[t]] + position[pos[t]] + token_type[types[t]] (types may be null: 0)
void embeddings_forward(Device d, float* out, const int32_t* ids, const int32_t* positions,
                        const int32_t* types, const float* word, const float* position,
                        const float* token_type, int T, int H);
// Scatter-add dout into the rows that were read (sparse: only seen ids).
void embeddings_backward(Device d, float* dword, float* dposition, float* dtoken_type,
                         const float* dout, const int32_t* ids, const int32_t* positions,
                         const int32_t* types, int T, int H);

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
// probs: softmax(Q K^T / sqrt(d) + mask) before dropout (kept for backward).
void attention_forward(Device d, float* ctx, float* probs, const float* qkv,
                       const AttentionShape& shape, const Dropout& drop);
// dqkv (overwrite) from dctx.
void attention_backward(Device d, float* dqkv, const float* dctx, const float* qkv,
                        const float* probs, const AttentionShape& shape, const Dropout& drop);
// Attention of the FIRST row of each sequence only (its [CLS] row, all a classifier
// reads of the last layer): q [B, H] holds that row's query per sequence, kv [T, 2H] =
// [K | V] of every row; ctx [B, H]. The same masking and softmax as attention_forward's
// first query row, and the same dropout masks: query row 0 of sequence b, head h draws
// element prob_offsets[b] + h n^2 + j, as it does there. probs (null: not kept, as in
// inference) gets the softmax row before dropout, [heads x T] laid out per sequence:
// sequence b, head h at heads * offsets[b] + h * n_b (n_b its span).
void attention_first_query_forward(Device d, float* ctx, float* probs, const float* q,
                                   const float* kv, const AttentionShape& shape,
                                   const Dropout& drop = {});
// Its backward (overwrite): dq [B, H] from dctx [B, H], and dkv [T, 2H] for EVERY row,
// which the [CLS] queries attend to — exactly attention_backward's dQ of the first rows
// and dK, dV when dctx is zero on every other row. probs as attention_first_query_forward kept them.
void attention_first_query_backward(Device d, float* dq, float* dkv, const float* dctx,
                                    const float* q, const float* kv, const float* probs,
                                    const AttentionShape& shape, const Dropout& drop);

// ---- loss ------------------------------------------------------------------
// Mean cross-entropy over rows whose label != ignore_index (-100), as
// torch.nn.CrossEntropyLoss. Writes softmax probs [N,C]; returns the loss
// (0 when no row counts) and the number of counted rows. On CPU the front
// checks every label lies in [0, C) or is -100; on CUDA the caller must have
// (labels are device memory there), and the call waits for the loss.
float cross_entropy_forward(Device d, float* probs, const float* logits, const int32_t* labels,
                            int N, int C, int* counted);
// dlogits = (probs - onehot) / counted for counted rows, 0 elsewhere (overwrite).
void cross_entropy_backward(Device d, float* dlogits, const float* probs, const int32_t* labels,
                            int N, int C, int counted);

// ---- optimizer ---------------------------------------------------------------
// Sum of squares of x[0..n) in double (on CUDA: waits for the result).
double sum_squares(Device d, const float* x, size_t n);
// *total += sum of squares of x[0..n); total lives on device d, so on CUDA
// nothing waits: a gradient norm stays on the device until someone reads it
// (or AdamWStep::clip_sum_squares consumes it).
void sum_squares_accumulate(Device d, double* total, const float* x, size_t n);
void scale(Device d, float* x, size_t n, float factor);
// y[i] += alpha * x[i]: gradients of one tensor from two models (ELECTRA's shared embeddings).
void add_scaled(Device d, float* y, const float* x, size_t n, float alpha);

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
void adamw_update(Device d, float* p, float* g, float* m, float* v, size_t n, const AdamWStep& s,
                  bool zero_grad);
// Many ranges of the same flat buffers in one pass (one launch on CUDA):
// [begin, end) with `decay`'s coefficients or `no_decay`'s. The list is host
// memory, sorted and disjoint (the front checks); elements between ranges are untouched.
struct AdamWRange {
  size_t begin = 0, end = 0;
  bool decay = true;
};
void adamw_update_ranges(Device d, float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         int count, const AdamWStep& decay, const AdamWStep& no_decay,
                         bool zero_grad);

// ---- a training step decided on the device ------------------------------------
// A GPU step that never waits keeps its loss and gradient norm where they were computed;
// these two ops take them from there (on the CPU every pointer is host memory and they
// serve the tests that hold the device arithmetic to the host's).
//
// *loss_sum += the mean cross-entropy of rows whose label != -100, rounded to float as
// cross_entropy_forward returns it; probs as there. `counted` (the labelled rows) comes
// from the caller's host copy of the labels, which it has checked.
void cross_entropy_loss_accumulate(Device d, double* loss_sum, float* probs, const float* logits,
                                   const int32_t* labels, int N, int C, int counted);

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
// ranges: host memory, sorted and disjoint (the front checks), as adamw_update_ranges;
// device_ranges: the same list in device d's memory (kept by the caller: no upload per step).
void adamw_update_device(Device d, float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         const AdamWRange* device_ranges, int count, const AdamWDeviceStep& s);

// ---- int8 linear (inference only, CPU only; bodies in kernels/cpu/linear_int8_cpu.cc) ----
// nn.Linear with the weight quantized per output channel, symmetric:
//   W[o, k] ~= scale[o] * q[o, k],  q in [-127, 127],  scale[o] = max_k |W[o, k]| / 127.
// Activations are quantized per row the same way, on the fly; products accumulate in
// int32 (exact), then y = float(acc) * (row_scale * scale[o]) + b[o] in fp32 (one fma).
// So every kernel path gives the same bits.
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
};
// Quantizes W [out, in] (and packs it).
QuantizedLinear quantize_linear(const float* W, int out, int in);
// Rebuilds packed / compensation from q and scale (after loading them). Throws Error on bad sizes.
void pack_quantized_linear(QuantizedLinear& w);
// y[T, out] = dequant(quant_rows(x[T, in]) q^T) + b   (b may be null)
void linear_int8_forward(Device d, float* y, const float* x, const QuantizedLinear& w, const float* b, int T);

// Which int8 kernel runs: Auto = the first the CPU running us has (checked with cpuid at
// run time, not at build time) of AVX-512 VNNI, AVX2 (+FMA), portable. The environment
// variable BERTUNE_INT8_KERNEL=portable|avx2|vnni picks one at start-up (one the CPU
// lacks falls back to Auto's choice, with a note on stderr). All give the same bits.
enum class Int8Kernel { Auto, Portable, Avx2, Vnni };
void set_int8_kernel(Int8Kernel k);  // Vnni / Avx2 on a CPU without it: Error
const char* int8_kernel_name();      // "avx512-vnni" | "avx2" | "portable": what runs now
bool cpu_has_avx512_vnni();
bool cpu_has_avx2();                 // AVX2 and FMA

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
