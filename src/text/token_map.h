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
  // 8 bytes at a time with a multiply-xorshift mix: tokens are short (mostly
  // under 16 bytes), so this beats byte-wise hashes by a wide margin.
  uint64_t h = 0x9E3779B97F4A7C15ull ^ (uint64_t(n) * 0xFF51AFD7ED558CCDull);
  while (n >= 8) {
    uint64_t v;
    std::memcpy(&v, p, 8);
    h = (h ^ v) * 0xBF58476D1CE4E5B9ull;
    h ^= h >> 31;
    p += 8;
    n -= 8;
  }
  if (n) {
    uint64_t v = 0;
    std::memcpy(&v, p, n);
    h = (h ^ v) * 0x94D049BB133111EBull;
    h ^= h >> 29;
  }
  h *= 0xD6E8FEB86659FD93ull;
  return h ^ (h >> 32);
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
        s = {h, static_cast<uint32_t>(pool_.size()), static_cast<uint32_t>(key.size()), id};
        pool_.append(key);
        ++size_;
        return;
      }
      if (s.hash == h && key_of(s) == key) {
        s.id = id;
        return;
      }
    }
  }

  int32_t find(std::string_view key) const {
    if (size_ == 0) return -1;
    const uint64_t h = hash_token(key.data(), key.size());
    for (size_t i = h & mask_;; i = (i + 1) & mask_) {
      const Slot& s = slots_[i];
      if (s.id < 0) return -1;
      if (s.hash == h && s.length == key.size() &&
          std::memcmp(pool_.data() + s.offset, key.data(), key.size()) == 0)
        return s.id;
    }
  }

  size_t size() const { return size_; }
  size_t max_key_bytes() const { return max_key_bytes_; }

 private:
  struct Slot {
    uint64_t hash = 0;
    uint32_t offset = 0, length = 0;
    int32_t id = -1;  // -1: empty
  };
  std::string_view key_of(const Slot& s) const { return {pool_.data() + s.offset, s.length}; }

  void grow() {
    std::vector<Slot> old = std::move(slots_);
    slots_.assign(old.empty() ? 64 : old.size() * 2, Slot{});
    mask_ = slots_.size() - 1;
    for (const Slot& s : old) {
      if (s.id < 0) continue;
      size_t i = s.hash & mask_;
      while (slots_[i].id >= 0) i = (i + 1) & mask_;
      slots_[i] = s;
    }
  }

  std::vector<Slot> slots_;
  std::string pool_;
  size_t mask_ = 0, size_ = 0, max_key_bytes_ = 0;
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
