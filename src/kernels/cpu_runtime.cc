#include "kernels/cpu_runtime.h"

#include <unistd.h>

#include <cstdlib>

#include "kernels/cpu/cpu.h"

namespace bertune::kernels {

void set_num_threads(int n) { cpu::set_num_threads(n); }
int num_threads() { return cpu::num_threads(); }

void configure_thread_policy(char** argv) {
  if (std::getenv("OMP_WAIT_POLICY") || std::getenv("GOMP_SPINCOUNT")) return;
  setenv("OMP_WAIT_POLICY", "passive", 1);
  execv("/proc/self/exe", argv);  // returns only on failure: run on with the default
}

std::string gemm_backend() { return cpu::gemm_backend(); }

}  // namespace bertune::kernels
