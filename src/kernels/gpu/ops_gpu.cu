// CUDA bodies of the elementwise, row, embedding, loss and optimizer ops
// (kernels/gpu/ops_gpu.h). Each mirrors its CPU body in kernels/cpu/ops_cpu.cc;
// dropout draws the same counter-based masks (kernels/dropout_hash.h), so an
// fp32 GPU run drops exactly the elements a CPU run drops.
//
// Row ops (LayerNorm and its fused forms) give each row one warp; dgamma/dbeta
// and the embedding-table gradients are summed with atomics, so their last bits
// can vary between runs (summation order), unlike the CPU's fixed order.
#include <cuda_runtime.h>

#include <cfloat>
#include <cstring>

#include "kernels/adamw_math.h"
#include "kernels/dropout_hash.h"
#include "kernels/gpu/cuda_check.cuh"
#include "kernels/gpu/ops_gpu.h"

namespace bertune::kernels::gpu {
namespace {

constexpr int kWarp = 32;
constexpr int kRowsPerBlock = kThreads / kWarp;  // one warp per row

#define GRID_STRIDE(i, n)                                                      \
  for (size_t i = blockIdx.x * size_t(blockDim.x) + threadIdx.x; i < (n); \
       i += size_t(gridDim.x) * blockDim.x)

__device__ __forceinline__ float warp_sum(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
  for (int o = kWarp / 2; o > 0; o /= 2) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
// Sum over a whole block of kThreads; every thread gets the result.
__device__ float block_sum(float v) {
  __shared__ float part[kThreads / kWarp];
  __shared__ float total;
  v = warp_sum(v);
  if (threadIdx.x % kWarp == 0) part[threadIdx.x / kWarp] = v;
  __syncthreads();
  if (threadIdx.x < kWarp) {
    float w = threadIdx.x < kThreads / kWarp ? part[threadIdx.x] : 0.f;
    w = warp_sum(w);
    if (threadIdx.x == 0) total = w;
  }
  __syncthreads();
  float out = total;
  __syncthreads();  // `total` and `part` are reused by the next call
  return out;
}
__device__ float block_max(float v) {
  __shared__ float part[kThreads / kWarp];
  __shared__ float total;
  v = warp_max(v);
  if (threadIdx.x % kWarp == 0) part[threadIdx.x / kWarp] = v;
  __syncthreads();
  if (threadIdx.x < kWarp) {
    float w = threadIdx.x < kThreads / kWarp ? part[threadIdx.x] : -FLT_MAX;
    w = warp_max(w);
    if (threadIdx.x == 0) total = w;
  }
  __syncthreads();
  float out = total;
  __syncthreads();
  return out;
}

__device__ __forceinline__ float gelu(float x) {
  return 0.5f * x * (1.f + erff(x * 0.70710678118654752f));
}
// d/dx GELU(x) = Phi(x) + x phi(x)
__device__ __forceinline__ float gelu_grad(float x) {
  float cdf = 0.5f * (1.f + erff(x * 0.70710678118654752f));
  return cdf + x * 0.3989422804014327f * expf(-0.5f * x * x);
}

struct Mask {
  uint64_t stream;
  uint32_t threshold;
  float scale;
  __device__ float factor(uint64_t i) const { return dropout_factor(stream, threshold, scale, i); }
};
Mask mask_of(const Dropout& d) {
  return Mask{d.stream, dropout_threshold(d.p), dropout_keep_scale(d.p)};
}

// ---- elementwise -----------------------------------------------------------

__global__ void dropout_kernel(float* y, const float* x, size_t n, Mask mask) {
  GRID_STRIDE(i, n) y[i] = x[i] * mask.factor(i);
}
// Row r of y = row r of x times the mask of row rows[r] of a [*, width] tensor.
__global__ void dropout_rows_kernel(float* y, const float* x, const int32_t* rows, int width, size_t n, Mask mask) {
  GRID_STRIDE(i, n) y[i] = x[i] * mask.factor(uint64_t(rows[i / width]) * width + i % width);
}
__global__ void gelu_forward_kernel(float* y, const float* x, size_t n) {
  GRID_STRIDE(i, n) y[i] = gelu(x[i]);
}
__global__ void gelu_backward_kernel(float* dx, const float* dy, const float* x, size_t n) {
  GRID_STRIDE(i, n) dx[i] = dy[i] * gelu_grad(x[i]);
}
__global__ void tanh_forward_kernel(float* y, const float* x, size_t n) {
  GRID_STRIDE(i, n) y[i] = tanhf(x[i]);
}
__global__ void tanh_backward_kernel(float* dx, const float* dy, const float* y, size_t n) {
  GRID_STRIDE(i, n) dx[i] = dy[i] * (1.f - y[i] * y[i]);
}
__global__ void relu_forward_kernel(float* y, const float* x, size_t n) {
  GRID_STRIDE(i, n) y[i] = x[i] > 0.f ? x[i] : 0.f;
}
__global__ void relu_backward_kernel(float* dx, const float* dy, const float* y, size_t n) {
  GRID_STRIDE(i, n) dx[i] = y[i] > 0.f ? dy[i] : 0.f;
}
__global__ void bias_gelu_kernel(float* u, float* g, const float* b, int N, size_t n) {
  GRID_STRIDE(i, n) {
    float v = u[i] + b[i % N];
    u[i] = v;
    g[i] = gelu(v);
  }
}
__global__ void scale_kernel(float* x, size_t n, float factor) { GRID_STRIDE(i, n) x[i] *= factor; }
__global__ void add_scaled_kernel(float* y, const float* x, size_t n, float alpha) {
  GRID_STRIDE(i, n) y[i] += alpha * x[i];
}

// ---- LayerNorm ---------------------------------------------------------------

// One row by one warp: mean and biased variance by two passes (as torch).
__device__ void layernorm_row(float* out, float* mean_out, float* rstd_out, const float* x,
                              const float* gamma, const float* beta, int H, float eps, int lane) {
  float sum = 0.f;
  for (int i = lane; i < H; i += kWarp) sum += x[i];
  float mean = warp_sum(sum) / H;
  float var = 0.f;
  for (int i = lane; i < H; i += kWarp) {
    float d = x[i] - mean;
    var += d * d;
  }
  var = warp_sum(var) / H;
  float rstd = 1.f / sqrtf(var + eps);
  for (int i = lane; i < H; i += kWarp) out[i] = (x[i] - mean) * rstd * gamma[i] + beta[i];
  if (lane == 0) {
    *mean_out = mean;
    *rstd_out = rstd;
  }
}

__global__ void layernorm_forward_kernel(float* out, float* mean, float* rstd, const float* x,
                                         const float* gamma, const float* beta, int T, int H,
                                         float eps) {
  int t = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  if (t >= T) return;
  size_t base = size_t(t) * H;
  layernorm_row(out + base, mean + t, rstd + t, x + base, gamma, beta, H, eps, threadIdx.x % kWarp);
}

__global__ void dropout_residual_layernorm_kernel(float* out, float* s, float* mean, float* rstd,
                                                  const float* y, const float* residual,
                                                  const float* gamma, const float* beta, int T,
                                                  int H, float eps, Mask mask, bool active) {
  int t = blockIdx.x * kRowsPerBlock + threadIdx.x / kWarp;
  if (t >= T) return;
  int lane = threadIdx.x % kWarp;
  size_t base = size_t(t) * H;
  for (int i = lane; i < H; i += kWarp) {
    float v = active ? y[base + i] * mask.factor(base + i) : y[base + i];
    s[base + i] = v + residual[base + i];
  }
  __syncwarp();  // the row of s each lane wrote is read by the others below
  layernorm_row(out + base, mean + t, rstd + t, s + base, gamma, beta, H, eps, lane);
}

// dx per row (one warp each); dgamma/dbeta summed per block in shared memory
// (2H floats, dynamic), then added to the global sums with one atomic per column.
__global__ void layernorm_backward_kernel(float* dx, float* dgamma, float* dbeta, const float* dout,
                                          const float* x, const float* mean, const float* rstd,
                                          const float* gamma, int T, int H, int rows_per_block) {
  extern __shared__ float partial[];  // [2H]: dgamma then dbeta
  for (int i = threadIdx.x; i < 2 * H; i += blockDim.x) partial[i] = 0.f;
  __syncthreads();
  int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
  int t_begin = blockIdx.x * rows_per_block;
  int t_end = min(T, t_begin + rows_per_block);
  for (int t = t_begin + warp; t < t_end; t += kRowsPerBlock) {
    size_t base = size_t(t) * H;
    float mu = mean[t], rs = rstd[t];
    float sum_dxhat = 0.f, sum_dxhat_xhat = 0.f;
    for (int i = lane; i < H; i += kWarp) {
      float xhat = (x[base + i] - mu) * rs;
      float d = dout[base + i];
      float dxhat = d * gamma[i];
      sum_dxhat += dxhat;
      sum_dxhat_xhat += dxhat * xhat;
      atomicAdd(&partial[i], d * xhat);  // shared-memory atomics: warps of a block share columns
      atomicAdd(&partial[H + i], d);
    }
    float a = warp_sum(sum_dxhat) / H, c = warp_sum(sum_dxhat_xhat) / H;
    for (int i = lane; i < H; i += kWarp) {
      float xhat = (x[base + i] - mu) * rs;
      dx[base + i] = rs * (dout[base + i] * gamma[i] - a - xhat * c);
    }
  }
  __syncthreads();
  for (int i = threadIdx.x; i < H; i += blockDim.x) {
    atomicAdd(&dgamma[i], partial[i]);
    atomicAdd(&dbeta[i], partial[H + i]);
  }
}

// ---- embeddings ----------------------------------------------------------------

__global__ void embeddings_forward_kernel(float* out, const int32_t* ids, const int32_t* positions,
                                          const int32_t* types, const float* word,
                                          const float* position, const float* token_type, int H,
                                          size_t n) {
  GRID_STRIDE(e, n) {
    size_t t = e / H, i = e % H;
    int type = types ? types[t] : 0;
    float v = word[size_t(ids[t]) * H + i] + position[size_t(positions[t]) * H + i];
    out[e] = token_type ? v + token_type[size_t(type) * H + i] : v;
  }
}

__global__ void embeddings_backward_kernel(float* dword, float* dposition, float* dtoken_type,
                                           const float* dout, const int32_t* ids,
                                           const int32_t* positions, const int32_t* types, int H,
                                           size_t n) {
  GRID_STRIDE(e, n) {
    size_t t = e / H, i = e % H;
    int type = types ? types[t] : 0;
    float d = dout[e];
    atomicAdd(&dword[size_t(ids[t]) * H + i], d);
    atomicAdd(&dposition[size_t(positions[t]) * H + i], d);
    if (dtoken_type) atomicAdd(&dtoken_type[size_t(type) * H + i], d);
  }
}

// ---- loss ----------------------------------------------------------------------

struct LossSum {
  double total;
  unsigned long long counted;
};

// One block per row: softmax into probs, and the row's -log p[label] added to *sum.
__global__ void cross_entropy_forward_kernel(float* probs, LossSum* sum, const float* logits,
                                             const int32_t* labels, int C) {
  const size_t r = blockIdx.x;
  const float* z = logits + r * C;
  float* p = probs + r * C;
  float mx = -FLT_MAX;
  for (int c = threadIdx.x; c < C; c += blockDim.x) mx = fmaxf(mx, z[c]);
  mx = block_max(mx);
  float part = 0.f;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    float e = expf(z[c] - mx);
    p[c] = e;
    part += e;
  }
  float total = block_sum(part);  // its barriers also order the p[] writes above
  float inv = 1.f / total;
  for (int c = threadIdx.x; c < C; c += blockDim.x) p[c] *= inv;
  int label = labels[r];
  if (threadIdx.x == 0 && label != -100) {
    // log_softmax as torch: (z - max) - log(sum exp(z - max))
    atomicAdd(&sum->total, -(double(z[label] - mx) - log(double(total))));
    atomicAdd(&sum->counted, 1ull);
  }
}

__global__ void cross_entropy_backward_kernel(float* dlogits, const float* probs,
                                              const int32_t* labels, int C, float inv, size_t n) {
  GRID_STRIDE(e, n) {
    size_t r = e / C;
    int c = int(e % C), label = labels[r];
    dlogits[e] = label == -100 ? 0.f : probs[e] * inv - (c == label ? inv : 0.f);
  }
}

// Each element's loss of target_loss into a block sum, one double atomic per block, and its
// gradient (when dlogits is not null).
__global__ void target_loss_kernel(TargetLoss kind, double* sum, float* dlogits, const float* logits,
                                   const float* targets, int n) {
  const float inv = 1.f / float(n);
  float part = 0.f;
  GRID_STRIDE(i, size_t(n)) {
    const float x = logits[i], y = targets[i];
    if (kind == TargetLoss::MSE) {
      part += (x - y) * (x - y);
      if (dlogits) dlogits[i] = 2.f * (x - y) * inv;
    } else {
      part += fmaxf(x, 0.f) - x * y + log1pf(expf(-fabsf(x)));
      if (dlogits) dlogits[i] = (1.f / (1.f + expf(-x)) - y) * inv;
    }
  }
  part = block_sum(part);
  if (threadIdx.x == 0) atomicAdd(sum, double(part));
}

// *loss_sum += the mean of the element sum, rounded to float as torch's mean.
__global__ void add_target_mean_kernel(double* loss_sum, const double* sum, int n) {
  *loss_sum += double(float(*sum / double(n)));
}

// ---- optimizer ---------------------------------------------------------------

// *total += sum of x^2: float partials per thread, one double atomic per block.
__global__ void sum_squares_kernel(double* total, const float* x, size_t n) {
  float acc = 0.f;
  GRID_STRIDE(i, n) acc += x[i] * x[i];
  float block = block_sum(acc);
  if (threadIdx.x == 0) atomicAdd(total, double(block));
}

// The factor every gradient is multiplied by: s.grad_scale, times the
// clip coefficient from a device-resident sum of squares when one is given.
__device__ float effective_grad_scale(const AdamWStep& s) {
  if (!s.clip_sum_squares || !(s.max_grad_norm > 0.f)) return s.grad_scale;
  float norm = float(sqrt(*s.clip_sum_squares));
  float coef = s.max_grad_norm / (norm + 1e-6f);  // torch's clip_grad_norm_, in float32
  return s.grad_scale * (coef < 1.f ? coef : 1.f);
}

__device__ __forceinline__ void adamw_element(float* p, float* g, float* m, float* v, size_t i,
                                              const AdamWStep& c, float grad_scale, bool zero_grad) {
  float gi = g[i] * grad_scale;
  float pi = p[i] * c.pre_decay;
  float mi = m[i] * c.beta1 + c.one_minus_beta1 * gi;
  float vi = v[i] * c.beta2 + c.one_minus_beta2 * gi * gi;
  m[i] = mi;
  v[i] = vi;
  pi = pi - c.step_size * (mi / (sqrtf(vi) / c.bias2_sqrt + c.eps));
  p[i] = pi + c.post_decay * pi;
  if (zero_grad) g[i] = 0.f;
}

__global__ void adamw_kernel(float* p, float* g, float* m, float* v, size_t n, AdamWStep s,
                             bool zero_grad) {
  const float grad_scale = effective_grad_scale(s);
  GRID_STRIDE(i, n) adamw_element(p, g, m, v, i, s, grad_scale, zero_grad);
}

// All ranges in one launch. Ranges are sorted and disjoint; a thread's
// grid-stride indices only grow, so it walks the range list forward once.
__global__ void adamw_ranges_kernel(float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                                    int count, size_t n, AdamWStep decay, AdamWStep no_decay,
                                    bool zero_grad) {
  const float scale_decay = effective_grad_scale(decay);
  const float scale_no_decay = effective_grad_scale(no_decay);
  int r = 0;
  GRID_STRIDE(i, n) {
    while (r < count && i >= ranges[r].end) ++r;
    if (r == count) break;
    if (i < ranges[r].begin) continue;
    const bool d = ranges[r].decay;
    adamw_element(p, g, m, v, i, d ? decay : no_decay, d ? scale_decay : scale_no_decay, zero_grad);
  }
}

// The step decided on the device (adamw_update_device): every thread derives the same plan
// from the device-resident loss, sum of squares and step count (adamw_math.h, the host's
// arithmetic); a non-finite step only zeroes the gradients.
__device__ bool device_plan(const AdamWDeviceStep& s, AdamWStep& decay, AdamWStep& no_decay) {
  return adamw_device_plan(s, s.loss_sum ? *s.loss_sum : 0.0, s.sum_squares ? *s.sum_squares : 0.0,
                           *s.step_count, decay, no_decay);
}

__global__ void adamw_device_kernel(float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                                    int count, size_t n, AdamWDeviceStep s) {
  AdamWStep decay, no_decay;
  const bool update = device_plan(s, decay, no_decay);
  int r = 0;
  GRID_STRIDE(i, n) {
    while (r < count && i >= ranges[r].end) ++r;
    if (r == count) break;
    if (i < ranges[r].begin) continue;
    if (!update) {
      g[i] = 0.f;
      continue;
    }
    const bool d = ranges[r].decay;
    adamw_element(p, g, m, v, i, d ? decay : no_decay, decay.grad_scale, /*zero_grad=*/true);
  }
}

// After the update (a separate launch: every block above read the old count).
__global__ void adamw_count_step_kernel(AdamWDeviceStep s) {
  AdamWStep decay, no_decay;
  if (device_plan(s, decay, no_decay)) ++*s.step_count;
}

// *loss_sum += the batch's mean loss, rounded to float as cross_entropy_forward returns it.
__global__ void add_mean_loss_kernel(double* loss_sum, const LossSum* sum, int counted) {
  *loss_sum += double(counted ? float(sum->total / double(counted)) : 0.f);
}

__global__ void add_loss_share_kernel(double* loss_sum, const double* loss, double count, double denominator) {
  *loss_sum += double(float(*loss * count / denominator));
}

// A grow-only device buffer for small per-call data (loss sums, range lists).
// Kept for the life of the thread and never freed: the process exit releases
// it, and freeing from a thread_local destructor can outlive the CUDA context.
void* scratch(size_t bytes) {
  thread_local void* buffer = nullptr;
  thread_local size_t capacity = 0;
  if (bytes > capacity) {
    if (buffer) BERTUNE_CUDA_CHECK(cudaFreeAsync(buffer, stream()));
    buffer = nullptr;
    capacity = 0;
    size_t want = bytes < 4096 ? 4096 : bytes;
    BERTUNE_CUDA_CHECK(cudaMallocAsync(&buffer, want, stream()));
    capacity = want;
  }
  return buffer;
}

unsigned row_blocks(int T) { return unsigned((T + kRowsPerBlock - 1) / kRowsPerBlock); }

}  // namespace

void dropout_forward(float* y, const float* x, size_t n, const Dropout& drop) {
  if (n == 0) return;
  if (!drop.active()) {
    if (y != x) BERTUNE_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  dropout_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, x, n, mask_of(drop));
  check_launch("dropout_kernel");
}

void dropout_rows(float* y, const float* x, const int32_t* rows, int n_rows, int width, const Dropout& drop) {
  const size_t n = size_t(n_rows) * width;
  if (n == 0) return;
  if (!drop.active()) {
    if (y != x) BERTUNE_CUDA_CHECK(cudaMemcpyAsync(y, x, n * sizeof(float), cudaMemcpyDeviceToDevice, stream()));
    return;
  }
  dropout_rows_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, x, rows, width, n, mask_of(drop));
  check_launch("dropout_rows_kernel");
}

void dropout_backward(float* dx, const float* dy, size_t n, const Dropout& drop) {
  dropout_forward(dx, dy, n, drop);  // the same mask, the same scale
}

void gelu_forward(float* y, const float* x, size_t n) {
  if (n == 0) return;
  gelu_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, x, n);
  check_launch("gelu_forward_kernel");
}

void gelu_backward(float* dx, const float* dy, const float* x, size_t n) {
  if (n == 0) return;
  gelu_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dx, dy, x, n);
  check_launch("gelu_backward_kernel");
}

void tanh_forward(float* y, const float* x, size_t n) {
  if (n == 0) return;
  tanh_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, x, n);
  check_launch("tanh_forward_kernel");
}

void tanh_backward(float* dx, const float* dy, const float* y, size_t n) {
  if (n == 0) return;
  tanh_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dx, dy, y, n);
  check_launch("tanh_backward_kernel");
}

void relu_forward(float* y, const float* x, size_t n) {
  if (n == 0) return;
  relu_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, x, n);
  check_launch("relu_forward_kernel");
}

void relu_backward(float* dx, const float* dy, const float* y, size_t n) {
  if (n == 0) return;
  relu_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dx, dy, y, n);
  check_launch("relu_backward_kernel");
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* x, const float* gamma,
                       const float* beta, int T, int H, float eps) {
  if (T == 0) return;
  layernorm_forward_kernel<<<row_blocks(T), kThreads, 0, stream()>>>(out, mean, rstd, x, gamma,
                                                                     beta, T, H, eps);
  check_launch("layernorm_forward_kernel");
}

void layernorm_backward(float* dx, float* dgamma, float* dbeta, const float* dout, const float* x,
                        const float* mean, const float* rstd, const float* gamma, int T, int H) {
  if (T == 0) return;
  const size_t shared = 2 * size_t(H) * sizeof(float);
  if (shared > 48 * 1024)
    throw Error("kernels::layernorm_backward (CUDA): hidden size " + std::to_string(H) +
                " is above the 6144 this kernel's shared memory holds");
  // Enough blocks to fill the GPU, each summing many rows before its atomics.
  const int blocks = int(grid_for(size_t(T) * kWarp, kThreads));
  const int rows_per_block = (T + blocks - 1) / blocks;
  layernorm_backward_kernel<<<(T + rows_per_block - 1) / rows_per_block, kThreads, shared, stream()>>>(
      dx, dgamma, dbeta, dout, x, mean, rstd, gamma, T, H, rows_per_block);
  check_launch("layernorm_backward_kernel");
}

void dropout_residual_layernorm_forward(float* out, float* s, float* mean, float* rstd,
                                        const float* y, const float* residual, const float* gamma,
                                        const float* beta, int T, int H, float eps,
                                        const Dropout& drop) {
  if (T == 0) return;
  dropout_residual_layernorm_kernel<<<row_blocks(T), kThreads, 0, stream()>>>(
      out, s, mean, rstd, y, residual, gamma, beta, T, H, eps, mask_of(drop), drop.active());
  check_launch("dropout_residual_layernorm_kernel");
}

void bias_gelu_forward(float* u, float* g, const float* b, int T, int N) {
  size_t n = size_t(T) * N;
  if (n == 0) return;
  bias_gelu_kernel<<<grid_for(n), kThreads, 0, stream()>>>(u, g, b, N, n);
  check_launch("bias_gelu_kernel");
}

void embeddings_forward(float* out, const int32_t* ids, const int32_t* positions,
                        const int32_t* types, const float* word, const float* position,
                        const float* token_type, int T, int H) {
  size_t n = size_t(T) * H;
  if (n == 0) return;
  embeddings_forward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(out, ids, positions, types, word,
                                                                    position, token_type, H, n);
  check_launch("embeddings_forward_kernel");
}

void embeddings_backward(float* dword, float* dposition, float* dtoken_type, const float* dout,
                         const int32_t* ids, const int32_t* positions, const int32_t* types, int T,
                         int H) {
  size_t n = size_t(T) * H;
  if (n == 0) return;
  embeddings_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(
      dword, dposition, dtoken_type, dout, ids, positions, types, H, n);
  check_launch("embeddings_backward_kernel");
}

float cross_entropy_forward(float* probs, const float* logits, const int32_t* labels, int N, int C,
                            int* counted) {
  auto* sum = static_cast<LossSum*>(scratch(sizeof(LossSum)));
  BERTUNE_CUDA_CHECK(cudaMemsetAsync(sum, 0, sizeof(LossSum), stream()));
  if (N > 0) {
    cross_entropy_forward_kernel<<<unsigned(N), kThreads, 0, stream()>>>(probs, sum, logits, labels, C);
    check_launch("cross_entropy_forward_kernel");
  }
  LossSum host{};
  BERTUNE_CUDA_CHECK(cudaMemcpyAsync(&host, sum, sizeof host, cudaMemcpyDeviceToHost, stream()));
  BERTUNE_CUDA_CHECK(cudaStreamSynchronize(stream()));
  *counted = int(host.counted);
  return host.counted ? float(host.total / double(host.counted)) : 0.f;
}

void cross_entropy_loss_accumulate(double* loss_sum, float* probs, const float* logits,
                                   const int32_t* labels, int N, int C, int counted) {
  auto* sum = static_cast<LossSum*>(scratch(sizeof(LossSum)));
  BERTUNE_CUDA_CHECK(cudaMemsetAsync(sum, 0, sizeof(LossSum), stream()));
  if (N > 0) {
    cross_entropy_forward_kernel<<<unsigned(N), kThreads, 0, stream()>>>(probs, sum, logits, labels, C);
    check_launch("cross_entropy_forward_kernel");
  }
  add_mean_loss_kernel<<<1, 1, 0, stream()>>>(loss_sum, sum, counted);
  check_launch("add_mean_loss_kernel");
}

void add_loss_share(double* loss_sum, const double* loss, double count, double denominator) {
  add_loss_share_kernel<<<1, 1, 0, stream()>>>(loss_sum, loss, count, denominator);
  check_launch("add_loss_share_kernel");
}

void target_loss(TargetLoss kind, double* loss_sum, float* dlogits, const float* logits, const float* targets,
                 int n) {
  auto* sum = static_cast<double*>(scratch(sizeof(double)));
  BERTUNE_CUDA_CHECK(cudaMemsetAsync(sum, 0, sizeof(double), stream()));
  target_loss_kernel<<<grid_for(size_t(n)), kThreads, 0, stream()>>>(kind, sum, dlogits, logits, targets, n);
  check_launch("target_loss_kernel");
  add_target_mean_kernel<<<1, 1, 0, stream()>>>(loss_sum, sum, n);
  check_launch("add_target_mean_kernel");
}

void cross_entropy_backward(float* dlogits, const float* probs, const int32_t* labels, int N, int C,
                            int counted) {
  size_t n = size_t(N) * C;
  if (n == 0) return;
  float inv = counted ? 1.f / counted : 0.f;
  cross_entropy_backward_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dlogits, probs, labels, C,
                                                                        inv, n);
  check_launch("cross_entropy_backward_kernel");
}

void sum_squares_accumulate(double* total, const float* x, size_t n) {
  if (n == 0) return;
  sum_squares_kernel<<<grid_for(n), kThreads, 0, stream()>>>(total, x, n);
  check_launch("sum_squares_kernel");
}

double sum_squares(const float* x, size_t n) {
  auto* total = static_cast<double*>(scratch(sizeof(double)));
  BERTUNE_CUDA_CHECK(cudaMemsetAsync(total, 0, sizeof(double), stream()));
  sum_squares_accumulate(total, x, n);
  double host = 0.0;
  BERTUNE_CUDA_CHECK(cudaMemcpyAsync(&host, total, sizeof host, cudaMemcpyDeviceToHost, stream()));
  BERTUNE_CUDA_CHECK(cudaStreamSynchronize(stream()));
  return host;
}

void scale(float* x, size_t n, float factor) {
  if (n == 0) return;
  scale_kernel<<<grid_for(n), kThreads, 0, stream()>>>(x, n, factor);
  check_launch("scale_kernel");
}

void add_scaled(float* y, const float* x, size_t n, float alpha) {
  if (n == 0) return;
  add_scaled_kernel<<<grid_for(n), kThreads, 0, stream()>>>(y, x, n, alpha);
  check_launch("add_scaled_kernel");
}

void adamw_update(float* p, float* g, float* m, float* v, size_t n, const AdamWStep& s,
                  bool zero_grad) {
  if (n == 0) return;
  adamw_kernel<<<grid_for(n), kThreads, 0, stream()>>>(p, g, m, v, n, s, zero_grad);
  check_launch("adamw_kernel");
}

void adamw_update_ranges(float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         int count, const AdamWStep& decay, const AdamWStep& no_decay,
                         bool zero_grad) {
  if (count == 0) return;
  const size_t n = ranges[count - 1].end;  // host memory: the list is the caller's
  const size_t bytes = size_t(count) * sizeof(AdamWRange);
  void* device_ranges = scratch(bytes);
  BERTUNE_CUDA_CHECK(cudaMemcpyAsync(device_ranges, ranges, bytes, cudaMemcpyHostToDevice, stream()));
  adamw_ranges_kernel<<<grid_for(n), kThreads, 0, stream()>>>(
      p, g, m, v, static_cast<const AdamWRange*>(device_ranges), count, n, decay, no_decay, zero_grad);
  check_launch("adamw_ranges_kernel");
}

// Two launches: the update (or only the zeroed gradients) and the step count; none for
// an empty range list.
void adamw_update_device(float* p, float* g, float* m, float* v, const AdamWRange* ranges,
                         const AdamWRange* device_ranges, int count, const AdamWDeviceStep& s) {
  if (count == 0) return;
  const size_t n = ranges[count - 1].end;  // host memory: the list is the caller's
  if (n > 0) {
    adamw_device_kernel<<<grid_for(n), kThreads, 0, stream()>>>(p, g, m, v, device_ranges, count, n, s);
    check_launch("adamw_device_kernel");
  }
  adamw_count_step_kernel<<<1, 1, 0, stream()>>>(s);
  check_launch("adamw_count_step_kernel");
}

}  // namespace bertune::kernels::gpu
