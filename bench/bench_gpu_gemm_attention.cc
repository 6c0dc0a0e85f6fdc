// Times the CUDA GEMM (three precisions) and attention bodies on the shapes of
// one klue/bert-base layer, for scripts that run on a GPU machine:
//   build/bench_gpu_gemm_attention [repeats]
// Prints one line per measurement: median microseconds per call over
// `repeats` timed calls (after warm-up), and TFLOP/s for the GEMMs. Host
// clock around a synchronised loop: each call's launch overhead is included,
// as it is in a training step. Exits 1 with the reason without CUDA or a GPU.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#ifdef BERTUNE_CUDA
#include "kernels/gpu/attention_gpu.h"
#include "kernels/gpu/gemm_gpu.h"
#include "kernels/gpu/runtime.h"
#include "kernels/ops.h"

namespace {

namespace k = bertune::kernels;
namespace gpu = bertune::kernels::gpu;

struct DeviceFloats {
  float* ptr;
  explicit DeviceFloats(size_t n, std::mt19937& rng) {
    std::vector<float> host(n);
    std::uniform_real_distribution<float> dist(-1.f, 1.f);
    for (auto& x : host) x = dist(rng);
    ptr = static_cast<float*>(gpu::malloc_bytes(n * sizeof(float)));
    gpu::copy_to_device(ptr, host.data(), n * sizeof(float));
  }
  ~DeviceFloats() { gpu::free_bytes(ptr); }
};

// Median microseconds of `body` over `repeats` synchronised runs of 10 calls each.
template <typename F>
double median_us(int repeats, F&& body) {
  for (int i = 0; i < 5; ++i) body();  // warm-up: plans, scratch, module load
  gpu::synchronize();
  std::vector<double> us;
  for (int r = 0; r < repeats; ++r) {
    auto t0 = std::chrono::steady_clock::now();
    for (int i = 0; i < 10; ++i) body();
    gpu::synchronize();
    us.push_back(std::chrono::duration<double, std::micro>(std::chrono::steady_clock::now() - t0).count() / 10);
  }
  std::sort(us.begin(), us.end());
  return us[us.size() / 2];
}

void bench_linear(int repeats, int T, int in, int out, std::mt19937& rng) {
  DeviceFloats x(size_t(T) * in, rng), W(size_t(out) * in, rng), b(out, rng), y(size_t(T) * out, rng);
  DeviceFloats dx(size_t(T) * in, rng), dW(size_t(out) * in, rng), db(out, rng);
  const double flop = 2.0 * T * in * out;
  for (auto p : {gpu::Precision::FP32, gpu::Precision::TF32, gpu::Precision::BF16}) {
    gpu::set_precision(p);
    double fwd = median_us(repeats, [&] { gpu::linear_forward(y.ptr, x.ptr, W.ptr, b.ptr, T, in, out); });
    double bwd = median_us(repeats, [&] {
      gpu::linear_backward(dx.ptr, dW.ptr, db.ptr, y.ptr, x.ptr, W.ptr, T, in, out, false);
    });
    std::printf("linear %-5s T=%5d %4d->%4d  forward %8.1f us %6.1f TFLOP/s  backward %8.1f us %6.1f TFLOP/s\n",
                gpu::precision_name(p), T, in, out, fwd, flop / fwd * 1e-6, bwd, 2 * flop / bwd * 1e-6);
  }
  gpu::set_precision(gpu::Precision::FP32);
}

// 32 sequences of NSMC-like spans (mean ~22 tokens) or all padded to 128.
void bench_attention(int repeats, bool padded, std::mt19937& rng) {
  const int B = 32, nh = 12, hd = 64, H = nh * hd;
  std::vector<int32_t> offsets{0}, lengths;
  std::vector<int64_t> prob_offsets{0};
  std::geometric_distribution<int> extra(1.0 / 18);
  int longest = 0;
  for (int b = 0; b < B; ++b) {
    int real = std::min(128, 4 + extra(rng));
    int span = padded ? 128 : real;
    offsets.push_back(offsets.back() + span);
    lengths.push_back(real);
    prob_offsets.push_back(prob_offsets.back() + int64_t(nh) * span * span);
    longest = std::max(longest, span);
  }
  const int T = offsets.back();
  auto upload = [](const auto& v) {
    void* p = gpu::malloc_bytes(v.size() * sizeof(v[0]));
    gpu::copy_to_device(p, v.data(), v.size() * sizeof(v[0]));
    return p;
  };
  void* d_off = upload(offsets);
  void* d_len = upload(lengths);
  void* d_prob = upload(prob_offsets);
  k::AttentionShape shape{static_cast<int32_t*>(d_off), static_cast<int32_t*>(d_len), B, nh, hd,
                          static_cast<int64_t*>(d_prob), longest};
  DeviceFloats qkv(size_t(T) * 3 * H, rng), ctx(size_t(T) * H, rng), dctx(size_t(T) * H, rng);
  DeviceFloats probs(prob_offsets.back(), rng), dqkv(size_t(T) * 3 * H, rng);
  const auto drop = k::Dropout::make(1, 2, 3, 0.1f);
  double fwd = median_us(repeats, [&] { gpu::attention_forward(ctx.ptr, probs.ptr, qkv.ptr, shape, drop); });
  double bwd = median_us(repeats, [&] {
    gpu::attention_backward(dqkv.ptr, dctx.ptr, qkv.ptr, probs.ptr, shape, drop);
  });
  std::printf("attention %-6s B=32 T=%5d longest %3d heads 12x64  forward %8.1f us  backward %8.1f us\n",
              padded ? "padded" : "packed", T, longest, fwd, bwd);
  gpu::free_bytes(d_off);
  gpu::free_bytes(d_len);
  gpu::free_bytes(d_prob);
}

}  // namespace

int main(int argc, char** argv) {
  std::string why;
  if (!gpu::available(&why)) {
    std::fprintf(stderr, "bench_gpu_gemm_attention: no usable GPU: %s\n", why.c_str());
    return 1;
  }
  const int repeats = argc > 1 ? std::max(1, std::atoi(argv[1])) : 20;
  std::printf("%s\n", gpu::device_description().c_str());
  std::mt19937 rng(7);
  for (int T : {704, 4096})  // batch 32: NSMC's ~22 real tokens packed, or padded to 128
    for (auto [in, out] : {std::pair{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}})
      bench_linear(repeats, T, in, out, rng);
  bench_attention(repeats, false, rng);
  bench_attention(repeats, true, rng);
  return 0;
}

#else

int main() {
  std::fprintf(stderr, "bench_gpu_gemm_attention: built without CUDA (BERTUNE_CUDA undefined)\n");
  return 1;
}

#endif
