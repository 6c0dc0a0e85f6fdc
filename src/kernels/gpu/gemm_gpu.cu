// GEMMs on the GPU through cuBLASLt.
//
// ops.h is row-major; cuBLAS is column-major. A row-major [R, C] matrix with
// leading dimension ld is the column-major [C, R] matrix with the same ld, so
// row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: we call
// cuBLASLt with the operands swapped (B first), m = N, n = M, and each
// operand's transpose flag unchanged.
//
// Precision (set_precision): FP32 computes in CUBLAS_COMPUTE_32F (no TF32);
// TF32 in CUBLAS_COMPUTE_32F_FAST_TF32; BF16 converts both operands to bf16
// into scratch on every call and multiplies with fp32 accumulation into the
// fp32 C/D. Why per-call conversion rather than bf16 shadow weights: this op
// cannot know when the optimizer has changed W, and a stale shadow would be a
// silent wrong answer; the conversion costs one read of W (fp32) and one write
// (bf16) per use, about 0.4 ms per BERT-base step on an H100 (2 uses x 85M
// weights x 6 bytes / ~3 TB/s), which a shadow kept by the optimizer could
// halve later.
#include <cublasLt.h>
#include <cuda_bf16.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <tuple>

#include "kernels/gpu/gemm_attention_common.cuh"
#include "kernels/gpu/gemm_gpu.h"
#include "kernels/gpu/gemm_kernels.cuh"

namespace bertune::kernels::gpu {
namespace {

using detail::ceil_div;
using detail::check_cuda;
using detail::check_launch;
using detail::op_stream;
using namespace gemm_kernels;

std::atomic<Precision> g_precision{Precision::FP32};

void check_cublas(cublasStatus_t status, const char* what) {
  if (status != CUBLAS_STATUS_SUCCESS)
    throw Error(std::string("cuBLASLt: ") + what + ": " + cublasLtGetStatusString(status));
}

// 32 MiB: what NVIDIA recommends for Hopper's split-K and stream-K kernels.
constexpr size_t kWorkspaceBytes = size_t(32) << 20;
constexpr size_t kMaxPlans = 4096;

// ---- plans ------------------------------------------------------------------
// Everything the heuristic's choice depends on. Alignments (largest power of
// two <= 256 dividing the address) are part of it: an algorithm chosen for a
// 256-byte-aligned pointer may not run on a 4-byte-aligned one.
struct PlanKey {
  bool trans_first, trans_second;  // column-major flags of the two operands
  int m, n, k, ld_first, ld_second, ld_c;
  Precision precision;
  bool bias;
  uint32_t align_first, align_second, align_c;
  auto tie() const {
    return std::tie(trans_first, trans_second, m, n, k, ld_first, ld_second, ld_c, precision, bias,
                    align_first, align_second, align_c);
  }
  bool operator<(const PlanKey& o) const { return tie() < o.tie(); }
};

struct Plan {
  cublasLtMatmulDesc_t desc = nullptr;
  cublasLtMatrixLayout_t first = nullptr, second = nullptr, c = nullptr;
  cublasLtMatmulAlgo_t algo{};
  bool found = false;  // false: no algorithm for this key (only possible with the bias epilogue)
};

uint32_t alignment_of(const void* p) {
  auto address = reinterpret_cast<uintptr_t>(p);
  uint32_t align = 256;
  while (align > 1 && address % align != 0) align /= 2;
  return align;
}

class LtContext {
 public:
  static LtContext& get() {
    // Created on first use, never destroyed (destroying it after the CUDA
    // runtime shut down at exit would fail).
    static LtContext* instance = new LtContext();
    return *instance;
  }
  cublasLtHandle_t handle() const { return handle_; }
  void* workspace() const { return workspace_; }
  // The plan for `key`, built (and its algorithm chosen) on first use.
  const Plan& plan(const PlanKey& key);
  std::mutex& mutex() { return mutex_; }

 private:
  LtContext() {
    check_cublas(cublasLtCreate(&handle_), "cublasLtCreate");
    check_cuda(cudaMalloc(&workspace_, kWorkspaceBytes), "cudaMalloc (cuBLASLt workspace)");
  }
  Plan build(const PlanKey& key);
  cublasLtHandle_t handle_ = nullptr;
  void* workspace_ = nullptr;
  std::map<PlanKey, Plan> plans_;
  std::mutex mutex_;
};

void destroy(Plan& p) {
  if (p.desc) cublasLtMatmulDescDestroy(p.desc);
  for (cublasLtMatrixLayout_t layout : {p.first, p.second, p.c})
    if (layout) cublasLtMatrixLayoutDestroy(layout);
}

const Plan& LtContext::plan(const PlanKey& key) {
  auto it = plans_.find(key);
  if (it != plans_.end()) return it->second;
  // Packed sample-count batches give a new token count T (a new GEMM shape) at
  // most steps; bound the cache rather than let it grow for the whole run.
  if (plans_.size() >= kMaxPlans) {
    for (auto& [unused, p] : plans_) destroy(p);
    plans_.clear();
  }
  return plans_.emplace(key, build(key)).first->second;
}

Plan LtContext::build(const PlanKey& key) {
  const bool bf16 = key.precision == Precision::BF16;
  const cudaDataType_t ab_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute =
      key.precision == Precision::TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  Plan plan;
  check_cublas(cublasLtMatmulDescCreate(&plan.desc, compute, CUDA_R_32F), "MatmulDescCreate");
  cublasOperation_t op_first = key.trans_first ? CUBLAS_OP_T : CUBLAS_OP_N;
  cublasOperation_t op_second = key.trans_second ? CUBLAS_OP_T : CUBLAS_OP_N;
  check_cublas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSA, &op_first,
                                              sizeof(op_first)), "TRANSA");
  check_cublas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_TRANSB, &op_second,
                                              sizeof(op_second)), "TRANSB");
  if (key.bias) {
    cublasLtEpilogue_t epilogue = CUBLASLT_EPILOGUE_BIAS;
    check_cublas(cublasLtMatmulDescSetAttribute(plan.desc, CUBLASLT_MATMUL_DESC_EPILOGUE,
                                                &epilogue, sizeof(epilogue)), "EPILOGUE");
  }
  // Stored shapes (column-major rows x cols) of the operands as they lie in memory.
  const int first_rows = key.trans_first ? key.k : key.m, first_cols = key.trans_first ? key.m : key.k;
  const int second_rows = key.trans_second ? key.n : key.k, second_cols = key.trans_second ? key.k : key.n;
  check_cublas(cublasLtMatrixLayoutCreate(&plan.first, ab_type, first_rows, first_cols, key.ld_first),
               "LayoutCreate (A)");
  check_cublas(cublasLtMatrixLayoutCreate(&plan.second, ab_type, second_rows, second_cols,
                                          key.ld_second), "LayoutCreate (B)");
  check_cublas(cublasLtMatrixLayoutCreate(&plan.c, CUDA_R_32F, key.m, key.n, key.ld_c),
               "LayoutCreate (C)");

  cublasLtMatmulPreference_t pref = nullptr;
  check_cublas(cublasLtMatmulPreferenceCreate(&pref), "PreferenceCreate");
  size_t workspace = kWorkspaceBytes;
  check_cublas(cublasLtMatmulPreferenceSetAttribute(pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES,
                                                    &workspace, sizeof(workspace)), "PREF_WORKSPACE");
  const std::pair<cublasLtMatmulPreferenceAttributes_t, uint32_t> aligns[] = {
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, key.align_first},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, key.align_second},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, key.align_c},
      {CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, key.align_c}};
  for (const auto& [attribute, value] : aligns)
    check_cublas(cublasLtMatmulPreferenceSetAttribute(pref, attribute, &value, sizeof(value)),
                 "PREF_MIN_ALIGNMENT");
  cublasLtMatmulHeuristicResult_t result{};
  int count = 0;
  cublasStatus_t status = cublasLtMatmulAlgoGetHeuristic(handle_, plan.desc, plan.first, plan.second,
                                                         plan.c, plan.c, pref, 1, &result, &count);
  cublasLtMatmulPreferenceDestroy(pref);
  if (status == CUBLAS_STATUS_SUCCESS && count > 0) {
    plan.algo = result.algo;
    plan.found = true;
  } else if (!key.bias) {
    destroy(plan);
    throw Error("cuBLASLt: no algorithm for a " + std::to_string(key.m) + "x" +
                std::to_string(key.n) + "x" + std::to_string(key.k) + " " +
                precision_name(key.precision) + " GEMM (" + cublasLtGetStatusString(status) + ")");
  }
  return plan;
}

// Scratch is per host thread: each thread has its own per-thread stream, and a
// buffer shared across streams could be overwritten while another stream reads it.
struct Scratch {
  detail::GrowOnlyScratch bf16_first, bf16_second, column_partials;
};
Scratch& scratch() {
  thread_local Scratch instance;
  return instance;
}

// ---- kernels ------------------------------------------------------------------

unsigned grid_for(size_t items, unsigned block) {
  size_t blocks = (items + block - 1) / block;
  return static_cast<unsigned>(blocks < 4096 ? (blocks > 0 ? blocks : 1) : 4096);
}

struct Bf16Operand {
  const __nv_bfloat16* data;
  int ld;
};

// Converts the stored row-major [rows, cols] operand (leading dimension ld) to
// bf16 with rows padded to 8 elements: 16-byte aligned rows keep the tensor-core
// kernels eligible whatever the shape.
Bf16Operand convert_bf16(detail::GrowOnlyScratch& scratch, const float* src, int rows, int cols,
                         int ld) {
  const int dst_ld = (cols + 7) / 8 * 8;
  auto* dst = static_cast<__nv_bfloat16*>(
      scratch.get(size_t(rows) * dst_ld * sizeof(__nv_bfloat16), "bf16 operand"));
  constexpr unsigned kBlock = 256;
  if (cols % 4 == 0 && ld % 4 == 0 && reinterpret_cast<uintptr_t>(src) % 16 == 0) {
    const int quads = cols / 4;
    to_bf16_quads_kernel<<<grid_for(size_t(rows) * quads, kBlock), kBlock, 0, op_stream()>>>(
        dst, dst_ld, src, ld, rows, quads);
  } else {
    to_bf16_kernel<<<grid_for(size_t(rows) * cols, kBlock), kBlock, 0, op_stream()>>>(
        dst, dst_ld, src, ld, rows, cols);
  }
  check_launch("to_bf16_kernel");
  return {dst, dst_ld};
}

// ---- the matmul ---------------------------------------------------------------

// Row-major C[M,N] = alpha op(A) op(B) + beta C (+ bias[N] broadcast over rows).
void matmul(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
            const float* B, int ldb, float beta, float* C, int ldc, const float* bias) {
  if (M == 0 || N == 0) return;
  if (K == 0) {  // cuBLAS rejects k = 0; the product is empty, C = beta C
    // (only gemm() gets here: linear_forward's front requires in > 0, so no bias).
    if (bias) throw Error("gpu::matmul: a bias with K = 0");
    scale_matrix_kernel<<<grid_for(size_t(M) * N, 256), 256, 0, op_stream()>>>(C, M, N, ldc, beta);
    check_launch("scale_matrix_kernel");
    return;
  }
  LtContext& lt = LtContext::get();
  std::lock_guard<std::mutex> lock(lt.mutex());
  const Precision precision = g_precision.load(std::memory_order_relaxed);
  // Column-major: first operand = B, second = A (see the top of the file).
  const void* first = B;
  const void* second = A;
  int ld_first = ldb, ld_second = lda;
  if (precision == Precision::BF16) {
    const int b_rows = trans_b ? N : K, b_cols = trans_b ? K : N;
    const int a_rows = trans_a ? K : M, a_cols = trans_a ? M : K;
    const Bf16Operand b16 = convert_bf16(scratch().bf16_first, B, b_rows, b_cols, ldb);
    const Bf16Operand a16 = convert_bf16(scratch().bf16_second, A, a_rows, a_cols, lda);
    first = b16.data;
    second = a16.data;
    ld_first = b16.ld;
    ld_second = a16.ld;
  }
  // The bias epilogue reads the bias with vector loads: only offer it aligned.
  const bool epilogue_bias = bias && reinterpret_cast<uintptr_t>(bias) % 16 == 0;
  PlanKey key{trans_b, trans_a, N, M, K, ld_first, ld_second, ldc, precision, epilogue_bias,
              alignment_of(first), alignment_of(second), alignment_of(C)};
  const Plan* plan = &lt.plan(key);
  if (bias && !plan->found) {  // no epilogue: start C from the bias and accumulate onto it
    key.bias = false;
    plan = &lt.plan(key);
  }
  if (bias && !key.bias) {
    if (ldc != N) throw Error("gpu::matmul: a bias needs a packed output (ldc == N)");
    broadcast_rows_kernel<<<grid_for(size_t(M) * N, 256), 256, 0, op_stream()>>>(C, bias, M, N);
    check_launch("broadcast_rows_kernel");
    beta = 1.f;
  }
  if (key.bias)
    check_cublas(cublasLtMatmulDescSetAttribute(plan->desc, CUBLASLT_MATMUL_DESC_BIAS_POINTER,
                                                &bias, sizeof(bias)), "BIAS_POINTER");
  check_cublas(cublasLtMatmul(lt.handle(), plan->desc, &alpha, first, plan->first, second,
                              plan->second, &beta, C, plan->c, C, plan->c, &plan->algo,
                              lt.workspace(), kWorkspaceBytes, op_stream()),
               "cublasLtMatmul");
}

// ---- bias gradient (kernels in gemm_kernels.cuh) ---------------------------------
void add_column_sums(float* db, const float* dy, int T, int cols) {
  const auto [chunks, rows_per_chunk] = column_chunks(T);
  const dim3 block(kColumnThreads, kRowThreads);
  const dim3 grid(ceil_div(cols, kColumnThreads), chunks);
  if (chunks == 1) {
    column_sums_kernel<<<grid, block, 0, op_stream()>>>(db, true, dy, T, cols, rows_per_chunk);
    check_launch("column_sums_kernel");
    return;
  }
  auto* partials = static_cast<float*>(
      scratch().column_partials.get(size_t(chunks) * cols * sizeof(float), "bias-gradient partials"));
  column_sums_kernel<<<grid, block, 0, op_stream()>>>(partials, false, dy, T, cols, rows_per_chunk);
  check_launch("column_sums_kernel");
  add_partials_kernel<<<ceil_div(cols, 256), 256, 0, op_stream()>>>(db, partials, chunks, cols);
  check_launch("add_partials_kernel");
}

}  // namespace

void set_precision(Precision p) { g_precision.store(p, std::memory_order_relaxed); }
Precision precision() { return g_precision.load(std::memory_order_relaxed); }

void gemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float* A, int lda,
          const float* B, int ldb, float beta, float* C, int ldc) {
  matmul(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc, nullptr);
}

void linear_forward(float* y, const float* x, const float* W, const float* b, int T, int in,
                    int out) {
  matmul(false, true, T, out, in, 1.f, x, in, W, in, 0.f, y, out, b);
}

void linear_backward(float* dx, float* dW, float* db, const float* dy, const float* x,
                     const float* W, int T, int in, int out, bool accumulate_dx) {
  if (T == 0) return;
  if (dx) matmul(false, false, T, in, out, 1.f, dy, out, W, in, accumulate_dx ? 1.f : 0.f, dx, in, nullptr);
  if (dW) matmul(true, false, out, in, T, 1.f, dy, out, x, in, 1.f, dW, in, nullptr);
  if (db) add_column_sums(db, dy, T, out);
}

}  // namespace bertune::kernels::gpu
