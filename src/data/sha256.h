#pragma once
// SHA-256 for verifying downloads against published digests, streaming, on
// OpenSSL's libcrypto (a solved problem: we use the well-kept implementation).
#include <cstddef>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace bertune::data {

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t size);
  void update(std::string_view s) { update(s.data(), s.size()); }
  std::string hex_digest();  // finishes the hash; call once

 private:
  struct Context;
  std::unique_ptr<Context> ctx_;
};

std::string sha256_hex(std::string_view data);
std::string sha256_file(const std::filesystem::path& path);  // throws Error when unreadable

}  // namespace bertune::data
