// int8 vs fp32 linear layers (y = x W^T + b) on the shapes of BERT's four linears, at
// the L4/H256 main-job size and the klue/bert-base size, for a short request (32 rows)
// and a full serving batch (1024 rows = 64 reviews of ~16 tokens, packed):
// fp32 = kernels::linear_forward (OpenBLAS when loaded), int8 = kernels::linear_int8_forward
// (activation quantization included) with each kernel that can run here (onednn, avx512-vnni,
// avx2) and the portable one. Each case: --runs timed runs of enough calls to last ~--min-ms; reports the
// median GOP/s (2*T*in*out per call) with min and max, the process CPU seconds and the load.
//
//   ./build/bench_int8 [--threads N] [--runs N] [--min-ms MS] [--rows 32,1024] [--model bert-base]
//                      [--kernels onednn,avx512-vnni,avx2,portable] [--json]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <random>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu_runtime.h"
#include "kernels/ops.h"

using namespace bertune;
using Clock = std::chrono::steady_clock;

namespace {

struct Case {
  const char* model;
  const char* layer;
  int in, out;
};
const Case kCases[] = {
    {"L4/H256", "qkv", 256, 768},      {"L4/H256", "attn_out", 256, 256}, {"L4/H256", "ffn_in", 256, 1024},
    {"L4/H256", "ffn_out", 1024, 256}, {"bert-base", "qkv", 768, 2304},   {"bert-base", "attn_out", 768, 768},
    {"bert-base", "ffn_in", 768, 3072}, {"bert-base", "ffn_out", 3072, 768},
};

double cpu_seconds() {
  timespec ts;
  clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
  return ts.tv_sec + ts.tv_nsec * 1e-9;
}

std::string load_average() {
  char buf[128] = {0};
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    if (!std::fgets(buf, sizeof buf, f)) buf[0] = 0;
    std::fclose(f);
  }
  std::string s(buf);
  return s.substr(0, s.find(' ', s.find(' ', s.find(' ') + 1) + 1));
}

struct Result {
  double median, min, max, cpu_per_call;
};

// Runs `fn` in --runs timed runs of n calls each (n chosen so one run lasts ~min_ms).
template <class Fn>
Result measure(Fn fn, double flops, int runs, double min_ms) {
  fn();  // warm-up (allocations, BLAS load, page faults)
  int n = 1;
  for (;;) {
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) fn();
    double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    if (ms >= min_ms || n > (1 << 20)) break;
    n = std::max(n * 2, static_cast<int>(n * min_ms / std::max(ms, 1e-3)));
  }
  std::vector<double> gops;
  double cpu = 0;
  for (int r = 0; r < runs; ++r) {
    double c0 = cpu_seconds();
    auto t0 = Clock::now();
    for (int i = 0; i < n; ++i) fn();
    double s = std::chrono::duration<double>(Clock::now() - t0).count();
    cpu += (cpu_seconds() - c0) / n;
    gops.push_back(flops * n / s * 1e-9);
  }
  std::sort(gops.begin(), gops.end());
  return {gops[gops.size() / 2], gops.front(), gops.back(), cpu / runs};
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, runs = 5;
  double min_ms = 200;
  bool json = false;
  std::vector<int> rows = {32, 1024};
  std::string model_filter, kernel_filter;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--threads" && i + 1 < argc) threads = std::atoi(argv[++i]);
    else if (a == "--runs" && i + 1 < argc) runs = std::max(1, std::atoi(argv[++i]));
    else if (a == "--min-ms" && i + 1 < argc) min_ms = std::atof(argv[++i]);
    else if (a == "--json") json = true;
    else if (a == "--rows" && i + 1 < argc) {
      rows.clear();
      for (std::string v = argv[++i]; !v.empty();) {
        rows.push_back(std::max(1, std::atoi(v.c_str())));
        const size_t comma = v.find(',');
        v = comma == std::string::npos ? "" : v.substr(comma + 1);
      }
    } else if (a == "--model" && i + 1 < argc) model_filter = argv[++i];
    else if (a == "--kernels" && i + 1 < argc) kernel_filter = "," + std::string(argv[++i]) + ",";
    else {
      std::fprintf(stderr, "usage: bench_int8 [--threads N] [--runs N] [--min-ms MS] [--rows T,T] [--model NAME] "
                           "[--kernels K,K] [--json]\n");
      return 2;
    }
  }
  kernels::set_num_threads(threads);
  std::vector<kernels::Int8Kernel> int8_kernels = {kernels::Int8Kernel::Portable};
  if (kernels::cpu_has_avx2()) int8_kernels.insert(int8_kernels.begin(), kernels::Int8Kernel::Avx2);
  if (kernels::cpu_has_avx512_vnni()) int8_kernels.insert(int8_kernels.begin(), kernels::Int8Kernel::Vnni);
  if (!kernels::onednn_int8_unavailable()) int8_kernels.insert(int8_kernels.begin(), kernels::Int8Kernel::Onednn);
  nlohmann::json records = nlohmann::json::array();
  if (!json)
    std::printf("threads %d, fp32 GEMM: %s, load average %s\n%-10s %-9s %5s %5s %5s  %-22s %s\n", threads,
                kernels::gemm_backend().c_str(), load_average().c_str(), "model", "layer", "T", "in", "out",
                "kernel", "GOP/s median [min, max]   speed-up vs fp32");
  std::mt19937 rng(1);
  std::normal_distribution<float> dist(0.f, 1.f);
  for (int T : rows)
    for (const Case& c : kCases) {
      if (!model_filter.empty() && model_filter != c.model) continue;
      std::vector<float> x(size_t(T) * c.in), W(size_t(c.out) * c.in), b(c.out), y(size_t(T) * c.out);
      for (auto& v : x) v = dist(rng);
      for (auto& v : W) v = 0.05f * dist(rng);
      for (auto& v : b) v = 0.1f * dist(rng);
      const double flops = 2.0 * T * c.in * c.out;
      auto fp32 = measure([&] { kernels::linear_forward(kernels::Device::CPU, y.data(), x.data(), W.data(), b.data(), T, c.in, c.out); },
                          flops, runs, min_ms);
      auto q = kernels::quantize_linear(W.data(), c.out, c.in);
      auto report = [&](const char* name, const Result& r) {
        records.push_back({{"model", c.model}, {"layer", c.layer}, {"T", T}, {"in", c.in}, {"out", c.out},
                           {"kernel", name}, {"gops_median", r.median}, {"gops_min", r.min}, {"gops_max", r.max},
                           {"cpu_seconds_per_call", r.cpu_per_call}, {"vs_fp32", r.median / fp32.median},
                           {"threads", threads}, {"load_average", load_average()}});
        if (!json)
          std::printf("%-10s %-9s %5d %5d %5d  %-22s %7.1f [%7.1f, %7.1f]   %.2fx\n", c.model, c.layer, T, c.in, c.out,
                      name, r.median, r.min, r.max, r.median / fp32.median);
      };
      report("fp32", fp32);
      for (auto k : int8_kernels) {
        kernels::set_int8_kernel(k);
        if (!kernel_filter.empty() && kernel_filter.find("," + std::string(kernels::int8_kernel_name()) + ",") ==
                                          std::string::npos)
          continue;
        auto r = measure([&] { kernels::linear_int8_forward(kernels::Device::CPU, y.data(), x.data(), q, b.data(), T); },
                         flops, runs, min_ms);
        report((std::string("int8 ") + kernels::int8_kernel_name()).c_str(), r);
      }
    }
  if (json) std::printf("%s\n", records.dump(1).c_str());
  return 0;
}
