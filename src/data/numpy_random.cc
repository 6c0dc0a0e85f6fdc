#include "data/numpy_random.h"

#include <numeric>
#include <utility>

namespace bertune::data {
namespace {

// Constants of numpy/random/bit_generator.pyx (SeedSequence), which come from
// Melissa O'Neill's seed_seq_fe.
constexpr uint32_t kInitA = 0x43b0d7e5, kMultA = 0x931e8875;
constexpr uint32_t kInitB = 0x8b51f9dd, kMultB = 0x58f38ded;
constexpr uint32_t kMixMultL = 0xca01f9dd, kMixMultR = 0x4973f715;
constexpr int kXShift = 16;

uint32_t hashmix(uint32_t value, uint32_t& hash_const) {
  value ^= hash_const;
  hash_const *= kMultA;
  value *= hash_const;
  value ^= value >> kXShift;
  return value;
}

uint32_t mix(uint32_t x, uint32_t y) {
  uint32_t result = kMixMultL * x - kMixMultR * y;
  result ^= result >> kXShift;
  return result;
}

constexpr unsigned __int128 u128(uint64_t high, uint64_t low) {
  return (static_cast<unsigned __int128>(high) << 64) | low;
}

constexpr unsigned __int128 kPcgMultiplier = u128(0x2360ed051fc65da4ULL, 0x4385df649fccf645ULL);

}  // namespace

SeedSequence::SeedSequence(uint64_t entropy) {
  // numpy's _coerce_to_uint32_array: a Python int becomes its 32-bit words,
  // least significant first; 0 is the single word [0].
  std::vector<uint32_t> words{static_cast<uint32_t>(entropy)};
  if (entropy >> 32) words.push_back(static_cast<uint32_t>(entropy >> 32));

  // mix_entropy: hash the words into the pool, then let every pool word
  // influence every other one.
  uint32_t hash_const = kInitA;
  for (size_t i = 0; i < pool_.size(); ++i)
    pool_[i] = hashmix(i < words.size() ? words[i] : 0u, hash_const);
  for (size_t src = 0; src < pool_.size(); ++src)
    for (size_t dst = 0; dst < pool_.size(); ++dst)
      if (src != dst) pool_[dst] = mix(pool_[dst], hashmix(pool_[src], hash_const));
  // Words beyond the pool size (never for a 64-bit seed) would be folded in here.
}

std::vector<uint32_t> SeedSequence::generate_state_u32(size_t n_words) const {
  std::vector<uint32_t> state(n_words);
  uint32_t hash_const = kInitB;
  for (size_t i = 0; i < n_words; ++i) {
    uint32_t v = pool_[i % pool_.size()];
    v ^= hash_const;
    hash_const *= kMultB;
    v *= hash_const;
    v ^= v >> kXShift;
    state[i] = v;
  }
  return state;
}

std::vector<uint64_t> SeedSequence::generate_state_u64(size_t n_words) const {
  std::vector<uint32_t> halves = generate_state_u32(2 * n_words);
  std::vector<uint64_t> state(n_words);
  for (size_t i = 0; i < n_words; ++i)
    state[i] = static_cast<uint64_t>(halves[2 * i]) | (static_cast<uint64_t>(halves[2 * i + 1]) << 32);
  return state;
}

Pcg64::Pcg64(uint64_t seed) {
  // _pcg64.pyx: val = seed_seq.generate_state(4, uint64);
  // pcg64_set_seed(state, &val[0], &val[2]) with each pair read as (high, low).
  std::vector<uint64_t> v = SeedSequence(seed).generate_state_u64(4);
  unsigned __int128 initstate = u128(v[0], v[1]);
  unsigned __int128 initseq = u128(v[2], v[3]);
  // pcg_setseq_128_srandom_r
  state_ = 0;
  inc_ = (initseq << 1) | 1;
  step();
  state_ += initstate;
  step();
}

void Pcg64::step() { state_ = state_ * kPcgMultiplier + inc_; }

uint64_t Pcg64::next_uint64() {
  step();
  uint64_t xored = static_cast<uint64_t>(state_ >> 64) ^ static_cast<uint64_t>(state_);
  unsigned rot = static_cast<unsigned>(state_ >> 122);
  return (xored >> rot) | (xored << ((64 - rot) & 63));
}

uint32_t Pcg64::next_uint32() {
  if (has_uint32_) {
    has_uint32_ = false;
    return buffered_uint32_;
  }
  uint64_t next = next_uint64();
  has_uint32_ = true;
  buffered_uint32_ = static_cast<uint32_t>(next >> 32);
  return static_cast<uint32_t>(next);
}

uint64_t random_interval(Pcg64& rng, uint64_t max) {
  if (max == 0) return 0;
  uint64_t mask = max;
  mask |= mask >> 1;
  mask |= mask >> 2;
  mask |= mask >> 4;
  mask |= mask >> 8;
  mask |= mask >> 16;
  mask |= mask >> 32;
  uint64_t value;
  if (max <= 0xffffffffULL) {
    while ((value = (rng.next_uint32() & mask)) > max) {
    }
  } else {
    while ((value = (rng.next_uint64() & mask)) > max) {
    }
  }
  return value;
}

std::vector<size_t> numpy_permutation(size_t n, uint64_t seed) {
  // Generator.permutation(n) shuffles arange(n) in place: _shuffle_raw walks
  // i from n-1 down to 1, swapping with random_interval(i).
  std::vector<size_t> perm(n);
  std::iota(perm.begin(), perm.end(), size_t{0});
  Pcg64 rng(seed);
  for (size_t i = n; i-- > 1;) std::swap(perm[i], perm[random_interval(rng, i)]);
  return perm;
}

}  // namespace bertune::data
