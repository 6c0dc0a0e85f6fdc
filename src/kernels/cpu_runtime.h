#pragma once
// The CPU's own runtime: the thread pool, libgomp's wait policy, and which BLAS the
// GEMM runs on. Nothing here is an op, so it lives beside the device-neutral op
// front (ops.h) rather than in it; a GPU build still computes its host side
// (tokenisation, metrics) on these threads.
#include <string>
#include <vector>

namespace bertune::kernels {

// One thread pool for everything (OpenMP; the BLAS we load shares it).
void set_num_threads(int n);  // n <= 0: all cores
int num_threads();

// Call first thing in main(). libgomp reads its wait policy from the
// environment before main() runs, and its default (spin ~300k iterations at
// every barrier) collapses when anything else shares the 2 cores: measured
// 4x slower training steps at 2 threads beside a compiler. Unless the user
// chose a policy (OMP_WAIT_POLICY or GOMP_SPINCOUNT), this re-executes the
// program once with OMP_WAIT_POLICY=passive. Returns only if no re-exec happened.
void configure_thread_policy(char** argv);

// The vector width of the elementwise and row kernels (kernels/cpu/simd_cpu.h): 512 on a CPU
// with AVX-512 F/BW/DQ/VL unless BERTUNE_CPU_SIMD=avx2, else 256. set_vector_bits(256 or 512)
// switches (Error for a width this CPU lacks); benches and tests compare the two.
int vector_bits();
void set_vector_bits(int bits);

// What the GEMM runs on and why: the provider forced by BERTUNE_GEMM (or BERTUNE_NO_BLAS,
// BERTUNE_BLAS), or auto's choices per shape class, calibrated now or read from the cache
// (kernels/cpu/gemm_choice.h).
std::string gemm_backend();

// The fp32 GEMM providers: openblas, onednn, blis, builtin (BERTUNE_GEMM's names).
struct GemmLibrary {
  std::string name, version, missing;  // missing: why it is not available
  bool available = false;
};
std::vector<GemmLibrary> gemm_libraries();
// gemm() on one named provider, whatever auto would choose (bench gemm's columns); Error
// when it is not available.
void gemm_with(const std::string& library, bool trans_a, bool trans_b, int M, int N, int K, float alpha,
               const float* A, int lda, const float* B, int ldb, float beta, float* C, int ldc);
// The provider gemm() runs this call on (timing its shape class first when auto has not).
std::string gemm_library_for(bool trans_a, bool trans_b, int M, int N, int K);

// This CPU's arithmetic peak, measured with loops of independent multiply-adds (G(FL)OP/s,
// 2 operations per multiply-add; 0: the CPU lacks the instruction), on one thread ("core")
// and on `threads` threads at once ("all").
struct ComputePeak {
  std::string isa = "none";  // avx512 | avx2 (the fp32 loop's)
  int threads = 0, lanes = 0;  // fp32 lanes per FMA
  double fp32_core = 0, bf16_core = 0, int8_core = 0;
  double fp32_all = 0, bf16_all = 0, int8_all = 0;
};
ComputePeak measure_compute_peak(int threads);

}  // namespace bertune::kernels
