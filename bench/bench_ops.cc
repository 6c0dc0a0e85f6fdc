// The CPU's elementwise and row ops (everything of a BERT step but the GEMMs) at both vector
// widths of kernels/cpu/simd_cpu.h, side by side: for each op, --rounds rounds that time the
// AVX2 copies, then the AVX-512 copies (where the CPU has them), each the best of --reps calls;
// reports the median [min-max] of the per-round ratio avx512 / avx2 (below 1: the wide copy is
// faster) and the load average. Shapes: a packed klue/bert-base batch (T tokens in sequences of
// --length, H 768, I 3072, 12 heads). LayerNorm backward, the int8 FFN linears and the AdamW
// pass over --params parameters have one copy (controls: their ratio is the noise).
//
//   ./build/bench_ops [--threads 2] [--tokens 640] [--length 20] [--rounds 5] [--reps 5] [--params 20000000]
#include <algorithm>
#include <cmath>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#include "kernels/cpu_runtime.h"
#include "kernels/ops.h"

using namespace bertune;
using kernels::Device;
using Clock = std::chrono::steady_clock;

namespace {

struct Options {
  int threads = 2, tokens = 640, length = 20, rounds = 5, reps = 5;
  size_t params = 20000000;
};

Options parse(int argc, char** argv) {
  Options o;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string k = argv[i];
    const long v = std::atol(argv[i + 1]);
    if (k == "--threads") o.threads = int(v);
    else if (k == "--tokens") o.tokens = int(v);
    else if (k == "--length") o.length = int(v);
    else if (k == "--rounds") o.rounds = int(v);
    else if (k == "--reps") o.reps = int(v);
    else if (k == "--params") o.params = size_t(v);
    else {
      std::fprintf(stderr, "bench_ops: unknown option %s\n", k.c_str());
      std::exit(1);
    }
  }
  return o;
}

double best_of(int reps, const std::function<void()>& f) {
  double best = 1e30;
  for (int r = 0; r < reps; ++r) {
    const auto a = Clock::now();
    f();
    best = std::min(best, std::chrono::duration<double>(Clock::now() - a).count());
  }
  return best;
}

std::string load() {
  char buf[64] = "?";
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
    std::fclose(f);
  }
  std::string s(buf);
  size_t cut = 0;
  for (int i = 0; i < 3 && cut != std::string::npos; ++i) cut = s.find(' ', cut + 1);
  return s.substr(0, cut);
}

void fill(std::vector<float>& v, float scale, unsigned seed) {
  for (size_t i = 0; i < v.size(); ++i) {
    seed = seed * 1664525u + 1013904223u;
    v[i] = scale * (float(seed >> 8) / float(1 << 24) - 0.5f);
  }
}

struct Op {
  std::string name;
  std::function<void()> run;
};

}  // namespace

// Long: the op list is one table of closures over the shared buffers
int main(int argc, char** argv) {
  const Options o = parse(argc, argv);
  kernels::set_num_threads(o.threads);
  const int T = o.tokens, H = 768, I = 3072, nh = 12, d = 64, B = std::max(1, T / o.length);
  const int n = T / B;  // every sequence the same span: B * n tokens
  const int Tn = B * n;
  std::vector<int32_t> offsets(B + 1), lengths(B, n);
  std::vector<int64_t> prob_offsets(B + 1);
  for (int b = 0; b <= B; ++b) {
    offsets[b] = b * n;
    prob_offsets[b] = int64_t(b) * nh * n * n;
  }
  kernels::AttentionShape shape{offsets.data(), lengths.data(), B, nh, d, prob_offsets.data(), n};
  std::vector<float> x(size_t(Tn) * I), y(x.size()), z(x.size()), dy(x.size()), qkv(size_t(Tn) * 3 * H),
      dqkv(qkv.size()), probs(static_cast<size_t>(prob_offsets[B])), gamma(I), beta(I), bias(I), grad(2 * I), mean(Tn),
      rstd(Tn);
  fill(x, 8.f, 1);
  fill(dy, 1.f, 2);
  fill(qkv, 2.f, 3);
  fill(gamma, 1.f, 4);
  fill(beta, 1.f, 5);
  fill(bias, 1.f, 6);
  const kernels::Dropout drop = kernels::Dropout::make(42, 1, 7, 0.1f);
  std::vector<float> p(o.params), g(o.params), m(o.params), v(o.params);
  fill(p, 1.f, 8);
  fill(g, 1e-3f, 9);
  fill(v, 1e-6f, 10);
  for (float& e : v) e = std::abs(e);
  kernels::AdamWStep step{0.9f, 0.1f, 0.999f, 0.001f, 1e-8f, 5e-5f, 1.f, 1.f, 0.f};
  const size_t TI = size_t(Tn) * I;
  // int8 linears (the automatic kernel: oneDNN's GEMM between our quantization and epilogue)
  std::vector<float> w_in(size_t(I) * H), w_out(size_t(H) * I);
  fill(w_in, 0.1f, 11);
  fill(w_out, 0.1f, 12);
  const kernels::QuantizedLinear q_in = kernels::quantize_linear(w_in.data(), I, H);
  const kernels::QuantizedLinear q_out = kernels::quantize_linear(w_out.data(), H, I);
  const std::vector<Op> ops = {
      {"gelu_forward (T, I)", [&] { kernels::gelu_forward(Device::CPU, y.data(), x.data(), TI); }},
      {"gelu_backward (T, I)", [&] { kernels::gelu_backward(Device::CPU, z.data(), dy.data(), x.data(), TI); }},
      {"bias_gelu_forward (T, I)",
       [&] {
         std::memcpy(y.data(), x.data(), TI * sizeof(float));
         kernels::bias_gelu_forward(Device::CPU, y.data(), z.data(), bias.data(), Tn, I);
       }},
      {"dropout_forward (T, I)", [&] { kernels::dropout_forward(Device::CPU, y.data(), x.data(), TI, drop); }},
      {"dropout_residual_layernorm_forward (T, H)",
       [&] {
         kernels::dropout_residual_layernorm_forward(Device::CPU, y.data(), z.data(), mean.data(), rstd.data(), x.data(),
                                                     dy.data(), gamma.data(), beta.data(), Tn, H, 1e-12f, drop);
       }},
      {"layernorm_backward (T, H)",
       [&] {
         kernels::layernorm_backward(Device::CPU, y.data(), grad.data(), grad.data() + H, dy.data(), z.data(),
                                     mean.data(), rstd.data(), gamma.data(), Tn, H);
       }},
      {"attention_forward (T, 3H)",
       [&] { kernels::attention_forward(Device::CPU, y.data(), probs.data(), qkv.data(), shape, drop); }},
      {"attention_backward (T, 3H)",
       [&] { kernels::attention_backward(Device::CPU, dqkv.data(), dy.data(), qkv.data(), probs.data(), shape, drop); }},
      {"linear_int8_forward ffn-in (T, H) -> (T, I)",
       [&] { kernels::linear_int8_forward(Device::CPU, y.data(), z.data(), q_in, bias.data(), Tn); }},
      {"linear_int8_forward ffn-out (T, I) -> (T, H)",
       [&] { kernels::linear_int8_forward(Device::CPU, y.data(), x.data(), q_out, bias.data(), Tn); }},
      {"adamw_update (params)",
       [&] { kernels::adamw_update(Device::CPU, p.data(), g.data(), m.data(), v.data(), o.params, step, false); }},
  };
  const bool wide = [] {
    try {
      kernels::set_vector_bits(512);
      return true;
    } catch (const std::exception&) {
      return false;
    }
  }();
  std::printf("# bench_ops: T %d (%d sequences of %d), threads %d, %d rounds, best of %d; AVX-512 copies: %s\n", Tn, B,
              n, o.threads, o.rounds, o.reps, wide ? "yes" : "no (one width: ratios are 1)");
  for (const Op& op : ops) {
    std::vector<double> t256, t512, ratio;
    const std::string load_before = load();
    for (int r = 0; r < o.rounds; ++r) {
      kernels::set_vector_bits(256);
      t256.push_back(best_of(o.reps, op.run));
      if (wide) kernels::set_vector_bits(512);
      t512.push_back(best_of(o.reps, op.run));
      ratio.push_back(t512.back() / t256.back());
    }
    std::sort(t256.begin(), t256.end());
    std::sort(t512.begin(), t512.end());
    std::sort(ratio.begin(), ratio.end());
    const size_t mid = ratio.size() / 2;
    std::printf("%-44s avx2 %8.3f ms  avx512 %8.3f ms  avx512/avx2 %.2f [%.2f-%.2f]  load %s\n", op.name.c_str(),
                1e3 * t256[mid], 1e3 * t512[mid], ratio[mid], ratio.front(), ratio.back(), load_before.c_str());
  }
  return 0;
}
