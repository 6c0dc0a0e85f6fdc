#pragma once
// Token text -> id, as an open-addressing hash table over one string pool.
// Keyed by string_view so WordPiece can probe substrings of a word in place:
// no std::string is built per probe, and a probe touches one or two cache
// lines (slot array, then the pooled key bytes).
#include <bitset>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace bertune::text {

inline uint64_t hash_token(const char* p, size_t n) {
  // 8 bytes at a time with a multiply-xorshift mix; the tail is read with
  // overlapping loads (never byte by byte into a temporary, which stalls on
  // store forwarding). Tokens are short, so this is most of the cost.
  auto load64 = [](const char* q) {
    uint64_t v;
    std::memcpy(&v, q, 8);
    return v;
  };
  auto load32 = [](const char* q) {
    uint32_t v;
    std::memcpy(&v, q, 4);
    return uint64_t(v);
  };
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(n) * 0xFF51AFD7ED558CCDull);
  uint64_t tail;
  if (n >= 8) {
    const char* last = p + n - 8;
    while (p < last) {
      h = (h ^ load64(p)) * 0xBF58476D1CE4E5B9ull;
      h ^= h >> 31;
      p += 8;
    }
    tail = load64(last);
  } else if (n >= 4) {
    tail = load32(p) | (load32(p + n - 4) << 32);
  } else if (n > 0) {
    tail = uint64_t(uint8_t(p[0])) | (uint64_t(uint8_t(p[n / 2])) << 8) | (uint64_t(uint8_t(p[n - 1])) << 16);
  } else {
    tail = 0;
  }
  h = (h ^ tail) * 0x94D049BB133111EBull;
  h ^= h >> 29;
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 32);
}

// Compares short keys with 8-byte loads instead of a libc memcmp call.
inline bool same_bytes(const char* a, const char* b, size_t n) {
  while (n >= 8) {
    uint64_t x, y;
    std::memcpy(&x, a, 8);
    std::memcpy(&y, b, 8);
    if (x != y) return false;
    a += 8;
    b += 8;
    n -= 8;
  }
  while (n--)
    if (*a++ != *b++) return false;
  return true;
}

class TokenMap {
 public:
  // A later duplicate key overwrites an earlier one, as a Python dict does
  // when HF builds its vocab from vocab.txt.
  void insert(std::string_view key, int32_t id) {
    if ((size_ + 1) * 2 > slots_.size()) grow();
    if (key.size() > max_key_bytes_) max_key_bytes_ = key.size();
    const uint64_t h = hash_token(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      Slot& s = slots_[i];
      if (s.id < 0) {
        s = {tag_of(h), id, static_cast<uint32_t>(pool_.size()), static_cast<uint32_t>(key.size())};
        pool_.append(key);
        add_to_filter(h);
        ++size_;
        return;
      }
      if (s.tag == tag_of(h) && key_of(s) == key) {
        s.id = id;
        return;
      }
    }
  }

  int32_t find(std::string_view key) const {
    if (size_ == 0) return -1;
    const uint64_t h = hash_token(key.data(), key.size());
    // Greedy WordPiece asks mostly for strings that are not tokens: a bit
    // filter that stays in cache answers most of those without touching the
    // table.
    if (!maybe_contains(h)) return -1;
    const uint32_t tag = tag_of(h);
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.tag == tag && s.length == key.size() && same_bytes(pool_.data() + s.offset, key.data(), key.size()))
        return s.id;
    }
  }

  size_t size() const { return size_; }
  size_t max_key_bytes() const { return max_key_bytes_; }

 private:
  struct Slot {
    uint32_t tag = 0;
    int32_t id = -1;  // -1: empty
    uint32_t offset = 0, length = 0;  // the key's bytes in pool_
  };
  static uint32_t tag_of(uint64_t h) { return static_cast<uint32_t>(h >> 32); }
  std::string_view key_of(const Slot& s) const { return {pool_.data() + s.offset, s.length}; }

  // Two bits per key in 4 bits per slot (32k tokens: 32 KiB): ~5% of absent
  // keys get through.
  void add_to_filter(uint64_t h) {
    const size_t a = (h >> 20) & filter_mask_, b = (h >> 42) & filter_mask_;
    filter_[a >> 6] |= uint64_t(1) << (a & 63);
    filter_[b >> 6] |= uint64_t(1) << (b & 63);
  }
  bool maybe_contains(uint64_t h) const {
    const size_t a = (h >> 20) & filter_mask_, b = (h >> 42) & filter_mask_;
    return ((filter_[a >> 6] >> (a & 63)) & (filter_[b >> 6] >> (b & 63)) & 1) != 0;
  }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    const size_t n = old.empty() ? 64 : old.size() * 2;
    slots_.assign(n, Slot{});
    mask_ = n - 1;
    filter_.assign(n * 4 / 64, 0);
    filter_mask_ = n * 4 - 1;
    for (const Slot& s : old) {
      if (s.id < 0) continue;
      const uint64_t h = hash_token(pool_.data() + s.offset, s.length);
      size_t i = h & mask_;
      while (slots_[i].id >= 0) i = (i + 1) & mask_;
      slots_[i] = s;
      add_to_filter(h);
    }
  }

  std::vector<Slot> slots_;
  std::vector<uint64_t> filter_;
  std::string pool_;
  size_t mask_ = 0, filter_mask_ = 0, size_ = 0, max_key_bytes_ = 0;
};

// A small set of whole words (never_split, special tokens). Almost every
// probe is rejected by the first-byte filter without touching the strings.
class WordSet {
 public:
  WordSet() = default;
  explicit WordSet(const std::vector<std::string>& words) {
    for (const auto& w : words) add(w);
  }
  void add(const std::string& w) {
    if (w.empty() || contains(w)) return;
    words_.push_back(w);
    first_.set(static_cast<unsigned char>(w[0]));
  }
  bool contains(std::string_view w) const {
    if (w.empty() || !first_.test(static_cast<unsigned char>(w[0]))) return false;
    for (const auto& x : words_)
      if (x == w) return true;
    return false;
  }
  bool empty() const { return words_.empty(); }

 private:
  std::vector<std::string> words_;
  std::bitset<256> first_;
};

}  // namespace bertune::text
