#pragma once
// Shared by the libFuzzer targets. A target may throw bertune::Error (a clean
// refusal of bad input: the point of the parsers); anything else escaping —
// another exception, a crash, a sanitizer report, a leak — is a finding.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "util/error.h"

namespace bertune::fuzz {

// A private scratch directory (tmpfs when there is one) for parsers that take
// a path: the bytes are written to `name` inside it.
inline std::filesystem::path scratch_dir() {
  static const std::filesystem::path dir = [] {
    std::filesystem::path base = std::filesystem::exists("/dev/shm") ? "/dev/shm" : std::filesystem::temp_directory_path();
    auto d = base / ("bertune_fuzz_" + std::to_string(::getpid()));
    std::filesystem::create_directories(d);
    return d;
  }();
  return dir;
}

inline std::filesystem::path write_scratch(const std::string& name, const uint8_t* data, size_t size) {
  auto path = scratch_dir() / name;
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  return path;
}

inline std::string_view as_text(const uint8_t* data, size_t size) {
  return {reinterpret_cast<const char*>(data), size};
}

}  // namespace bertune::fuzz

// Runs the statements given; a bertune::Error is an accepted outcome.
// Variadic so that commas inside the body need no extra parentheses.
#define BERTUNE_FUZZ_BODY(...)       \
  try {                              \
    __VA_ARGS__;                     \
  } catch (const bertune::Error&) { \
  }                                  \
  return 0;
