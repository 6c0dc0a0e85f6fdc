#pragma once
// Which provider (gemm_providers.h) gemm() runs a call on.
//
// BERTUNE_GEMM=openblas|onednn|blis|builtin forces one for every call (a provider that is
// not available is an Error naming what is missing); BERTUNE_NO_BLAS=1 forces builtin and
// BERTUNE_BLAS=PATH openblas (that library). auto, the default, chooses by measurement:
// calls of one shape class — the transpose pair, the two dimensions a model's Linear fixes
// and the token count bucketed to 256, 1024 or 4096 rows — run on the provider that was
// fastest at that class the first time the class was met: every available provider is timed
// on it once (a few hundred milliseconds per class) and the winner is written to a cache
// file per CPU model, thread count and library versions in util::cache_dir(), under a file
// lock, so every process on the machine (and every later run) makes the same choice.
// BLIS takes part on one thread only (its threads spin: GemmProvider::spins). Calls inside
// an OpenMP region (attention's per-head products) and tiny ones run on the first available
// provider without timing.
#include <filesystem>
#include <map>
#include <mutex>
#include <string>

#include "kernels/cpu/gemm_providers.h"

namespace bertune::kernels::cpu {

// What the environment asks for: a forced provider, or auto (forced == nullptr).
struct GemmMode {
  const GemmProvider* forced = nullptr;
  std::string reason;  // "BERTUNE_GEMM=blis", ...
  std::string error;   // an unknown or unavailable provider: the message
};
// From the variables' values (nullptr: unset), so tests can try them.
GemmMode parse_gemm_mode(const char* gemm, const char* no_blas, const char* blas_path);
const GemmMode& gemm_mode();  // the process's, read once

// One thread count's choices, backed by one cache file in `cache_dir`.
class GemmChooser {
 public:
  GemmChooser(std::filesystem::path cache_dir, int threads);
  // The provider for a top-level call of this shape (K > 0), timing its class first
  // when neither this object nor the cache file has it.
  const GemmProvider& choose(bool ta, bool tb, int M, int N, int K);
  std::filesystem::path cache_path() const { return path_; }
  int measured() const;  // classes timed by this object
  int loaded() const;    // classes read from the cache file
  std::string summary() const;  // "onednn for 7 shape classes, blis for 2 (...)"

 private:
  struct Choice {
    std::string provider;
    std::map<std::string, double> gflops;
  };
  void read_cache();
  void write_cache() const;
  Choice measure(bool ta, bool tb, int d1, int d2, int rows) const;

  mutable std::mutex mu_;
  std::filesystem::path dir_, path_;
  int threads_;
  std::string cpu_, libraries_;
  std::map<std::string, Choice> table_;  // by shape-class key
  int measured_ = 0, loaded_ = 0;
  std::string cache_note_;  // why the cache file was not used, if it was not
};

// The provider gemm() runs this call on (K > 0); Error for a bad BERTUNE_GEMM.
const GemmProvider& gemm_provider_for(bool ta, bool tb, int M, int N, int K);
// What the GEMM runs on and why (forced / chosen by measurement: calibrated or cached).
std::string gemm_choice_description();

}  // namespace bertune::kernels::cpu
