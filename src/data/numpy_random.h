#pragma once
// numpy's default random Generator, bit for bit: np.random.default_rng(seed)
// is SeedSequence(seed) feeding a PCG64 bit generator, and
// Generator.permutation(n) is a Fisher–Yates shuffle drawing each swap index
// with masked rejection sampling (numpy 1.17+, checked against numpy 1.24).
// Hugging Face `datasets` shuffles with exactly this, so reproducing it lets
// `--data-seed 42` pick the same rows a Python notebook would.
#include <array>
#include <cstddef>
#include <cstdint>
#include <vector>

namespace bertune::data {

// numpy.random.SeedSequence for a plain integer entropy (no spawn key): the
// integer is split into 32-bit words, hashed into a 4-word pool, and the
// pool is stretched into as many state words as asked.
class SeedSequence {
 public:
  explicit SeedSequence(uint64_t entropy);
  std::vector<uint32_t> generate_state_u32(size_t n_words) const;
  std::vector<uint64_t> generate_state_u64(size_t n_words) const;  // pairs of u32, little-endian

 private:
  std::array<uint32_t, 4> pool_{};
};

// PCG64: 128-bit LCG with the XSL-RR output function (O'Neill's
// pcg_setseq_128_xsl_rr_64), seeded as numpy's PCG64(SeedSequence) does.
class Pcg64 {
 public:
  explicit Pcg64(uint64_t seed);
  uint64_t next_uint64();
  // numpy hands out 64-bit draws in two 32-bit halves (low first) and keeps
  // the unused high half buffered; reproducing the buffering matters because
  // permutation() mixes 32- and 64-bit draws.
  uint32_t next_uint32();
  unsigned __int128 state() const { return state_; }
  unsigned __int128 increment() const { return inc_; }

 private:
  void step();
  unsigned __int128 state_ = 0, inc_ = 0;
  bool has_uint32_ = false;
  uint32_t buffered_uint32_ = 0;
};

// numpy's random_interval: uniform on [0, max] by rejection with the
// smallest all-ones mask covering max.
uint64_t random_interval(Pcg64& rng, uint64_t max);

// np.random.default_rng(seed).permutation(n).
std::vector<size_t> numpy_permutation(size_t n, uint64_t seed);

}  // namespace bertune::data
