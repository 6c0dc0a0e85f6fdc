#pragma once
// Small helpers shared by the test files: whether a text contains another, a temporary
// directory that removes itself, the message of the bertune::Error a call throws, gzip in
// memory, an environment variable for one scope, and the folder of the fuzz reproducers.
#include <unistd.h>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>

#include "io/atomic_file.h"
#include "util/error.h"

inline bool contains(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

// An environment variable set for one scope, its earlier value (or absence) restored after.
struct ScopedEnv {
  std::string name;
  std::optional<std::string> saved;
  ScopedEnv(const std::string& n, const std::string& value) : name(n) {
    if (const char* old = std::getenv(n.c_str())) saved = old;
    ::setenv(n.c_str(), value.c_str(), 1);
  }
  ~ScopedEnv() {
    if (saved) ::setenv(name.c_str(), saved->c_str(), 1);
    else ::unsetenv(name.c_str());
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;
};

// BERTUNE_MAX_MEMORY for one scope.
struct MemoryCap {
  explicit MemoryCap(const std::string& size) { set(size); }
  void set(const std::string& size) const { ::setenv("BERTUNE_MAX_MEMORY", size.c_str(), 1); }
  ~MemoryCap() { ::unsetenv("BERTUNE_MAX_MEMORY"); }
};

// A fresh directory bertune_NAME_PID under the system's temporary directory, removed with
// everything in it when the object goes.
struct TempDir {
  std::filesystem::path path;
  explicit TempDir(const std::string& name)
      : path(std::filesystem::temp_directory_path() / ("bertune_" + name + "_" + std::to_string(::getpid()))) {
    std::filesystem::remove_all(path);
    std::filesystem::create_directories(path);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() { std::filesystem::remove_all(path); }
  // Writes `contents` to path/name and returns that path.
  std::filesystem::path file(const std::string& name, const std::string& contents) const {
    bertune::io::write_file_atomic(path / name, contents);
    return path / name;
  }
};

// The message of the bertune::Error that f() throws, or "" when it returns.
template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const bertune::Error& e) {
    return e.what();
  }
  return "";
}

// `text` compressed as a gzip file (what `gzip` writes).
inline std::string gzip(const std::string& text) {
  uLongf cap = compressBound(static_cast<uLong>(text.size())) + 32;
  std::string out(cap, '\0');
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // +16: gzip wrapper
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

// tests/fixtures/fuzz/NAME: inputs the fuzz targets found that once crashed or misread.
inline std::filesystem::path fuzz_fixture(const std::string& name) {
  return std::filesystem::path(BERTUNE_SOURCE_DIR) / "tests" / "fixtures" / "fuzz" / name;
}
