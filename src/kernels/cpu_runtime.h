#pragma once
// The CPU's own runtime: the thread pool, libgomp's wait policy, and which BLAS the
// GEMM runs on. Nothing here is an op, so it lives beside the device-neutral op
// front (ops.h) rather than in it; a GPU build still computes its host side
// (tokenisation, metrics) on these threads.
#include <string>

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

// What the GEMM runs on, e.g. "openblas-openmp 0.3.21 (SkylakeX kernels)" or "builtin".
std::string gemm_backend();

}  // namespace bertune::kernels
