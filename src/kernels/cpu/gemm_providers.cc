// Loading the fp32 GEMM providers of gemm_providers.h.
//
// Nothing BLAS is linked at build time. Debian's OpenBLAS 0.3.21 does not recognise Zen 4/5
// and falls back to slow kernels unless OPENBLAS_CORETYPE names a core before the library
// loads; BLIS 0.9 does not recognise them either and needs BLIS_ARCH_TYPE. So each is
// opened on first use, after the variable is set from cpuid (a value the user set is kept),
// and cblas_sgemm is resolved with dlsym.
#include "kernels/cpu/gemm_providers.h"

#include <dlfcn.h>
#include <omp.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>

#ifdef BERTUNE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.h>
#endif

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/simd_cpu.h"

namespace bertune::kernels::cpu {
namespace {

using cblas_sgemm_fn = void (*)(int order, int trans_a, int trans_b, int M, int N, int K, float alpha,
                                const float* A, int lda, const float* B, int ldb, float beta, float* C,
                                int ldc);
constexpr int kRowMajor = 101, kNoTrans = 111, kTrans = 112;

// One cblas_sgemm per library (a captureless run() per provider reads its own).
cblas_sgemm_fn openblas_sgemm = nullptr, blis_sgemm = nullptr;
void (*openblas_set_threads)(int) = nullptr;
void (*blis_set_threads)(int64_t) = nullptr;  // BLIS's dim_t: 64-bit

template <cblas_sgemm_fn* fn>
void run_cblas(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
               int ldb, float beta, float* C, int ldc) {
  (*fn)(kRowMajor, ta ? kTrans : kNoTrans, tb ? kTrans : kNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C,
        ldc);
}

// Opens the first of `paths` that has cblas_sgemm; "" and the reason when none does.
void* open_cblas(const std::vector<std::string>& paths, std::string& opened, std::string& missing) {
  for (const auto& path : paths) {
    void* lib = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (lib && dlsym(lib, "cblas_sgemm")) {
      opened = path;
      return lib;
    }
    if (lib) dlclose(lib);
  }
  missing = "none of";
  for (const auto& path : paths) missing += " " + path;
  missing += " could be opened with cblas_sgemm";
  return nullptr;
}

GemmProvider load_openblas() {
  GemmProvider p;
  p.name = "openblas";
  const char* disable = std::getenv("BERTUNE_NO_BLAS");
  if (disable && *disable && std::string(disable) != "0") {
    p.missing = "BERTUNE_NO_BLAS is set";
    return p;
  }
  if (cpu_has_simd512()) setenv("OPENBLAS_CORETYPE", "SkylakeX", /*overwrite=*/0);
  std::vector<std::string> paths;
  if (const char* path = std::getenv("BERTUNE_BLAS"); path && *path) paths.push_back(path);
  paths.push_back("/usr/lib/x86_64-linux-gnu/openblas-openmp/libopenblas.so.0");
  paths.push_back("/usr/lib/aarch64-linux-gnu/openblas-openmp/libopenblas.so.0");
  std::string path;
  void* lib = open_cblas(paths, path, p.missing);
  if (!lib) return p;
  openblas_sgemm = reinterpret_cast<cblas_sgemm_fn>(dlsym(lib, "cblas_sgemm"));
  openblas_set_threads = reinterpret_cast<void (*)(int)>(dlsym(lib, "openblas_set_num_threads"));
  auto corename = reinterpret_cast<char* (*)()>(dlsym(lib, "openblas_get_corename"));
  auto config = reinterpret_cast<char* (*)()>(dlsym(lib, "openblas_get_config"));
  p.version = path;
  if (config) p.version.append(" ").append(config());
  if (corename) p.version.append(" core=").append(corename());
  p.available = true;
  p.run = run_cblas<&openblas_sgemm>;
  return p;
}

// BLIS 0.9 knows no CPU after Zen 3 and picks generic kernels for them (62 GFLOP/s on Zen 5,
// 2 threads, quiet machine); its AVX-512 kernels (skx) gave 343 there, haswell's 313. Its
// configurations: skx, knl, haswell, sandybridge, penryn, zen3, zen2, zen, ... (no zen4).
const char* blis_arch_for_this_cpu() {
  if (cpu_has_simd512()) return "skx";
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma"))
    return __builtin_cpu_is("amd") ? "zen3" : "haswell";
  return nullptr;  // BLIS's own detection
}

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define BERTUNE_ADDRESS_SANITIZER 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__)
#define BERTUNE_ADDRESS_SANITIZER 1
#endif

GemmProvider load_blis() {
  GemmProvider p;
  p.name = "blis";
#ifdef BERTUNE_ADDRESS_SANITIZER
  p.missing = "left out of sanitizer builds (BLIS's threads crash LeakSanitizer's tracer at exit)";
  return p;
#endif
  if (const char* arch = blis_arch_for_this_cpu()) setenv("BLIS_ARCH_TYPE", arch, /*overwrite=*/0);
  std::string path;
  void* lib = open_cblas({"/usr/lib/x86_64-linux-gnu/blis-openmp/libblis.so.4",
                          "/usr/lib/aarch64-linux-gnu/blis-openmp/libblis.so.4"},
                         path, p.missing);
  if (!lib) return p;
  // BLIS checks BLIS_ARCH_TYPE against its kernel tables, which bli_init fills: before
  // anything else asks for the architecture.
  if (auto init = reinterpret_cast<void (*)()>(dlsym(lib, "bli_init"))) init();
  blis_sgemm = reinterpret_cast<cblas_sgemm_fn>(dlsym(lib, "cblas_sgemm"));
  blis_set_threads = reinterpret_cast<void (*)(int64_t)>(dlsym(lib, "bli_thread_set_num_threads"));
  auto version = reinterpret_cast<const char* (*)()>(dlsym(lib, "bli_info_get_version_str"));
  auto arch_id = reinterpret_cast<int (*)()>(dlsym(lib, "bli_arch_query_id"));
  auto arch_name = reinterpret_cast<const char* (*)(int)>(dlsym(lib, "bli_arch_string"));
  p.version = path + " BLIS " + (version ? version() : "?");
  if (arch_id && arch_name) p.version.append(" arch=").append(arch_name(arch_id()));
  p.available = true;
  p.spins = true;
  p.run = run_cblas<&blis_sgemm>;
  return p;
}

#ifdef BERTUNE_WITH_ONEDNN
// dnnl_sgemm is row-major, as gemm() (oneDNN's documentation of it).
void run_onednn(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda, const float* B,
                int ldb, float beta, float* C, int ldc) {
  dnnl_sgemm(ta ? 'T' : 'N', tb ? 'T' : 'N', M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}
#endif

GemmProvider load_onednn() {
  GemmProvider p;
  p.name = "onednn";
#ifdef BERTUNE_WITH_ONEDNN
  const dnnl_version_t* v = dnnl_version();
  char buf[96];
  std::snprintf(buf, sizeof buf, "oneDNN %d.%d.%d isa=%d", v->major, v->minor, v->patch,
                int(dnnl_get_effective_cpu_isa()));
  p.version = buf;
  p.available = true;
  p.run = run_onednn;
#else
  p.missing = "this bertune was built without oneDNN (configure with -DBERTUNE_ONEDNN=ON and libdnnl-dev)";
#endif
  return p;
}

std::vector<GemmProvider> load_all() {
  std::vector<GemmProvider> all = {load_openblas(), load_onednn(), load_blis(), {}};
  GemmProvider& builtin = all.back();
  builtin.name = "builtin";
  builtin.version = "builtin";
  builtin.available = true;
  builtin.run = gemm_builtin;
  set_provider_threads(omp_get_max_threads());
  return all;
}

}  // namespace

const std::vector<GemmProvider>& gemm_providers() {
  static const std::vector<GemmProvider> all = load_all();
  return all;
}

const GemmProvider* find_gemm_provider(const std::string& name) {
  for (const GemmProvider& p : gemm_providers())
    if (name == p.name) return &p;
  return nullptr;
}

const GemmProvider& builtin_gemm_provider() { return gemm_providers().back(); }

void set_provider_threads(int n) {
  if (openblas_set_threads) openblas_set_threads(n);
  if (blis_set_threads) blis_set_threads(n);
}

}  // namespace bertune::kernels::cpu
