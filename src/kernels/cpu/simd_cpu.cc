// The run-time choice of kernels/cpu/simd_cpu.h.
#include "kernels/cpu/simd_cpu.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "util/error.h"

namespace bertune::kernels::cpu {
namespace {

std::atomic<int> g_bits{0};  // 0: not chosen yet

}  // namespace

bool cpu_has_simd512() {
#if defined(__x86_64__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512dq") && __builtin_cpu_supports("avx512vl");
#else
  return false;
#endif
}

int vector_bits() {
  int bits = g_bits.load(std::memory_order_relaxed);
  if (bits == 0) {
    const char* env = std::getenv("BERTUNE_CPU_SIMD");
    const bool narrow = env && (std::strcmp(env, "avx2") == 0 || std::strcmp(env, "256") == 0);
    bits = cpu_has_simd512() && !narrow ? 512 : 256;
    g_bits.store(bits, std::memory_order_relaxed);
  }
  return bits;
}

void set_vector_bits(int bits) {
  if (bits != 256 && bits != 512)
    throw Error("kernels::set_vector_bits: " + std::to_string(bits) + " (256 or 512)");
  if (bits == 512 && !cpu_has_simd512())
    throw Error("kernels::set_vector_bits: 512 needs AVX-512 F/BW/DQ/VL, which this CPU lacks");
  g_bits.store(bits, std::memory_order_relaxed);
}

}  // namespace bertune::kernels::cpu
