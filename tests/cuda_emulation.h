#pragma once
// Just enough of CUDA to run bertune's hand-written kernels on the CPU, for
// tests on machines without a GPU: each CUDA thread of a block is a fiber
// (ucontext) with its own stack; __syncthreads, __syncwarp and warp shuffles
// are barriers at which the fiber yields to a scheduler that resumes it once
// every participant has arrived. Blocks run one after another.
//
// Because a fiber runs on alone until its next barrier, a missing barrier
// makes a thread read shared memory its neighbours have not written yet
// (shared memory starts as NaN), so most such bugs show as wrong results; a
// barrier that not every thread reaches is reported as a deadlock. What it
// cannot show: the GPU memory model, timing, or what the CUDA compiler does.
//
// Include this before the kernel header; it defines BERTUNE_CUDA_EMULATION.
#include <ucontext.h>

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <limits>
#include <stdexcept>
#include <vector>

#define BERTUNE_CUDA_EMULATION 1
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __launch_bounds__(...)
// Blocks run one after another, so a function-local static is one block's shared array.
#define __shared__ static

using std::max;
using std::min;

struct alignas(16) float4 {
  float x, y, z, w;
};
struct uint3 {
  unsigned x = 0, y = 0, z = 0;
};
struct dim3 {
  unsigned x, y, z;
  dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};

namespace cuda_emulation {

constexpr size_t kStackBytes = 64 * 1024;

struct Fiber {
  ucontext_t context;
  uint3 thread;
  int waiting = -1;  // the barrier it waits at; -1 = runnable
  bool done = false;
};

struct State {
  ucontext_t scheduler;
  dim3 grid_dim, block_dim;
  std::vector<Fiber> fibers;
  std::vector<std::vector<char>> stacks;
  int current = -1;
  int threads = 0;
  uint3 block;
  std::vector<float4> shared;
  std::vector<int> arrived;       // per barrier: 0 = block, 1 + w = warp w
  std::vector<float> shuffle;     // a slot per thread
  std::function<void()> body;
};

inline State& state() {
  static State s;
  return s;
}

inline void fiber_entry() {
  State& s = state();
  s.body();
  s.fibers[s.current].done = true;
  swapcontext(&s.fibers[s.current].context, &s.scheduler);  // never resumed
}

// Waits until the `count` threads from `first` have all arrived at barrier `id`.
inline void barrier(int id, int first, int count) {
  State& s = state();
  s.fibers[s.current].waiting = id;
  if (++s.arrived[id] == count) {
    s.arrived[id] = 0;
    for (int i = first; i < first + count; ++i)
      if (s.fibers[i].waiting == id) s.fibers[i].waiting = -1;
  }
  swapcontext(&s.fibers[s.current].context, &s.scheduler);
}

// Runs one block to completion.
inline void run_block(uint3 block, size_t shared_bytes, std::function<void()> body) {
  State& s = state();
  const int threads = int(s.block_dim.x * s.block_dim.y * s.block_dim.z);
  s.threads = threads;
  s.block = block;
  s.body = std::move(body);
  const float nan = std::numeric_limits<float>::quiet_NaN();
  s.shared.assign((shared_bytes + 15) / 16, float4{nan, nan, nan, nan});
  s.arrived.assign(1 + (threads + 31) / 32, 0);
  s.shuffle.assign(threads, 0.f);
  s.fibers.assign(threads, Fiber{});
  if (s.stacks.size() < size_t(threads)) s.stacks.resize(threads, std::vector<char>(kStackBytes));
  for (int t = 0; t < threads; ++t) {
    Fiber& f = s.fibers[t];
    f.thread.x = unsigned(t) % s.block_dim.x;
    f.thread.y = unsigned(t) / s.block_dim.x % s.block_dim.y;
    f.thread.z = unsigned(t) / (s.block_dim.x * s.block_dim.y);
    getcontext(&f.context);
    f.context.uc_stack.ss_sp = s.stacks[t].data();
    f.context.uc_stack.ss_size = kStackBytes;
    f.context.uc_link = nullptr;
    makecontext(&f.context, fiber_entry, 0);
  }
  for (;;) {
    bool all_done = true, progress = false;
    for (int t = 0; t < threads; ++t) {
      if (s.fibers[t].done) continue;
      all_done = false;
      if (s.fibers[t].waiting != -1) continue;
      s.current = t;
      swapcontext(&s.scheduler, &s.fibers[t].context);
      progress = true;
    }
    if (all_done) break;
    if (!progress) throw std::logic_error("cuda_emulation: barrier deadlock (a barrier not every thread reaches)");
  }
  s.current = -1;
}

// kernel<<<grid, block, shared_bytes>>>(args...), run to completion.
template <typename Kernel, typename... Args>
void launch(dim3 grid, dim3 block, size_t shared_bytes, Kernel kernel, Args... args) {
  State& s = state();
  s.grid_dim = grid;
  s.block_dim = block;
  for (unsigned z = 0; z < grid.z; ++z)
    for (unsigned y = 0; y < grid.y; ++y)
      for (unsigned x = 0; x < grid.x; ++x)
        run_block(uint3{x, y, z}, shared_bytes, [&] { kernel(args...); });
}

// The thread's linear index in its block, and its warp.
inline int linear_thread() {
  const State& s = state();
  const uint3 t = s.fibers[s.current].thread;
  return int(t.x + s.block_dim.x * (t.y + s.block_dim.y * t.z));
}
inline int warp() { return linear_thread() / 32; }

}  // namespace cuda_emulation

#define threadIdx (::cuda_emulation::state().fibers[::cuda_emulation::state().current].thread)
#define blockIdx (::cuda_emulation::state().block)
#define blockDim (::cuda_emulation::state().block_dim)
#define gridDim (::cuda_emulation::state().grid_dim)

inline void __syncthreads() { cuda_emulation::barrier(0, 0, cuda_emulation::state().threads); }
inline void __syncwarp(unsigned = 0xffffffffu) {
  cuda_emulation::barrier(1 + cuda_emulation::warp(), cuda_emulation::warp() * 32, 32);
}
inline float __shfl_xor_sync(unsigned, float v, int lane_mask) {
  auto& s = cuda_emulation::state();
  const int me = cuda_emulation::linear_thread(), base = cuda_emulation::warp() * 32;
  s.shuffle[me] = v;
  __syncwarp();
  const float got = s.shuffle[base + ((me - base) ^ lane_mask)];
  __syncwarp();
  return got;
}
inline float* dynamic_shared_floats() {
  return reinterpret_cast<float*>(cuda_emulation::state().shared.data());
}

// bf16: the bits, rounded to nearest even as __float2bfloat16_rn (NaN stays NaN).
struct __nv_bfloat16 {
  uint16_t bits;
};
struct __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
inline __nv_bfloat16 __float2bfloat16_rn(float f) {
  uint32_t u = std::bit_cast<uint32_t>(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return {uint16_t((u >> 16) | 0x40u)};
  u += 0x7fffu + ((u >> 16) & 1u);
  return {uint16_t(u >> 16)};
}
inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return {__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
