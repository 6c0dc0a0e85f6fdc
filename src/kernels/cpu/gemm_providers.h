#pragma once
// The fp32 GEMM libraries gemm() can run on ("providers"), each behind one row-major call:
//   openblas  the OpenMP build of OpenBLAS, opened at run time (BERTUNE_BLAS=PATH: another)
//   onednn    oneDNN's dnnl_sgemm, linked when the build found oneDNN
//   blis      the OpenMP build of BLIS, opened at run time
//   builtin   bertune's own blocked loops: always there, and the reference
// All of them run on GCC's OpenMP pool (the libraries' OpenMP builds share libgomp with
// bertune's kernels; a pthread build would bring a second pool that spins against it).
// Which provider a call runs on is gemm_choice.h's business.
#include <string>
#include <vector>

namespace bertune::kernels::cpu {

struct GemmProvider {
  const char* name = "";  // BERTUNE_GEMM's name for it
  bool available = false;
  std::string version;  // library, version, kernels: part of the calibration cache's key
  std::string missing;  // why it is not available
  // Its threads wait for each other by spinning (BLIS 0.9): on 2 threads beside any other
  // process its calls slow down 10-30x (measured), so auto uses it on one thread only.
  bool spins = false;
  // Row-major C = alpha op(A) op(B) + beta C with K > 0 (the caller handles K = 0).
  void (*run)(bool ta, bool tb, int M, int N, int K, float alpha, const float* A, int lda,
              const float* B, int ldb, float beta, float* C, int ldc) = nullptr;
};

// Every provider, available or not, in the order above (the first available one is the
// default); loaded once, on first use.
const std::vector<GemmProvider>& gemm_providers();
const GemmProvider* find_gemm_provider(const std::string& name);  // nullptr: no such name
const GemmProvider& builtin_gemm_provider();
// The libraries with their own thread count (OpenBLAS, BLIS) follow OpenMP's n.
void set_provider_threads(int n);

}  // namespace bertune::kernels::cpu
