#include "kernels/cpu_runtime.h"

#include <unistd.h>

#include <cstdlib>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_choice.h"
#include "kernels/cpu/gemm_providers.h"
#include "kernels/cpu/simd_cpu.h"
#include "util/error.h"

namespace bertune::kernels {

void set_num_threads(int n) { cpu::set_num_threads(n); }
int num_threads() { return cpu::num_threads(); }

void configure_thread_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: run on with the default
}

int vector_bits() { return cpu::vector_bits(); }
void set_vector_bits(int bits) { cpu::set_vector_bits(bits); }

std::string gemm_backend() { return cpu::gemm_backend(); }

std::vector<GemmLibrary> gemm_libraries() {
  std::vector<GemmLibrary> all;
  for (const cpu::GemmProvider& p : cpu::gemm_providers()) all.push_back({p.name, p.version, p.missing, p.available});
  return all;
}

void gemm_with(const std::string& library, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc) {
  const cpu::GemmProvider* p = cpu::find_gemm_provider(library);
  if (!p) throw Error("GEMM provider '" + library + "': unknown (one of openblas, onednn, blis, builtin)");
  if (!p->available) throw Error("GEMM provider " + library + " is not available: " + p->missing);
  if (K == 0 || M == 0 || N == 0) return cpu::gemm_builtin(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
  p->run(trans_a, trans_b, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

std::string gemm_library_for(bool trans_a, bool trans_b, int M, int N, int K) {
  if (K == 0 || M == 0 || N == 0) return "builtin";
  return cpu::gemm_provider_for(trans_a, trans_b, M, N, K).name;
}

}  // namespace bertune::kernels
