#pragma once
// Writes that either land whole or not at all: data goes to a temporary file
// beside the target, is fsync'ed, then renamed over it, and the directory is
// fsync'ed so the rename itself survives a crash. A kill -9 at any moment
// leaves either the old file or the new one, never a torn mix.
#include <cstdio>
#include <filesystem>
#include <string>
#include <string_view>

#include "io/read_file.h"  // read_file, read_text_file (kept here for existing callers)

namespace bertune::io {

class AtomicFile {
 public:
  explicit AtomicFile(std::filesystem::path target);
  ~AtomicFile();  // discards the temporary file unless commit() ran
  AtomicFile(const AtomicFile&) = delete;
  AtomicFile& operator=(const AtomicFile&) = delete;

  void write(const void* data, size_t size);
  void write(std::string_view s) { write(s.data(), s.size()); }
  void commit();  // flush, fsync, rename, fsync directory
  const std::filesystem::path& target() const { return target_; }

 private:
  std::filesystem::path target_;
  std::filesystem::path temp_;
  std::FILE* file_ = nullptr;
  bool committed_ = false;
};

void write_file_atomic(const std::filesystem::path& target, std::string_view contents);
void fsync_directory(const std::filesystem::path& dir);

}  // namespace bertune::io
