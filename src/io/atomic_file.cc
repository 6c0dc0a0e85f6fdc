#include "io/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <random>

#include "util/error.h"
#include "util/signals.h"

namespace bertune::io {
namespace fs = std::filesystem;

namespace {
std::string errno_text() { return std::strerror(errno); }
}  // namespace

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  if (target_.has_parent_path()) fs::create_directories(target_.parent_path());
  std::random_device rd;
  temp_ = target_;
  temp_ += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd() & 0xffffff);
  file_ = std::fopen(temp_.c_str(), "wb");
  if (!file_) throw Error("cannot create " + temp_.string() + ": " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
  if (!committed_) {
    std::error_code ec;
    fs::remove(temp_, ec);
  }
}

void AtomicFile::write(const void* data, size_t size) {
  if (size && std::fwrite(data, 1, size, file_) != size)
    throw Error("cannot write " + temp_.string() + ": " + errno_text());
}

void AtomicFile::commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
    throw Error("cannot flush " + temp_.string() + ": " + errno_text());
  std::fclose(file_);
  file_ = nullptr;
  if (std::rename(temp_.c_str(), target_.c_str()) != 0)
    throw Error("cannot rename " + temp_.string() + " to " + target_.string() + ": " + errno_text());
  committed_ = true;
  fsync_directory(target_.has_parent_path() ? target_.parent_path() : fs::path("."));
}

void write_file_atomic(const fs::path& target, std::string_view contents) {
  AtomicFile f(target);
  f.write(contents);
  f.commit();
}

void fsync_directory(const fs::path& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
  if (fd < 0) return;  // best effort: some filesystems refuse directory fds
  ::fsync(fd);
  ::close(fd);
}


namespace {
// Exchanges two directory entries atomically (Linux renameat2). False when
// the filesystem or kernel cannot; errno says why.
bool exchange_paths(const fs::path& a, const fs::path& b) {
#ifdef RENAME_EXCHANGE
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0;
#else
  errno = ENOSYS;
  return false;
#endif
}
}  // namespace

void publish_directory(const fs::path& staged, const fs::path& target) {
  const fs::path parent = target.has_parent_path() ? target.parent_path() : fs::path(".");
  if (!fs::exists(target)) {
    fs::rename(staged, target);
  } else if (exchange_paths(staged, target)) {
    fsync_directory(parent);
    fs::remove_all(staged);  // now holds the previous copy
  } else {
    fs::path old = target;
    old += ".old-" + std::to_string(::getpid());
    fs::remove_all(old);
    fs::rename(target, old);
    fs::rename(staged, target);
    fsync_directory(parent);
    fs::remove_all(old);
  }
  fsync_directory(parent);
}

void write_directory_atomic(const fs::path& dir_in, const std::function<void(const fs::path&)>& fill) {
  // Normalise "out/" to "out" so the staging directory sits beside it.
  fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
  if (dir.empty()) throw Error("write_directory_atomic: empty directory name");
  if (fs::exists(dir) && !fs::is_directory(dir)) throw Error(dir.string() + " exists and is not a directory");
  fs::path staging = dir;
  staging += ".tmp-" + std::to_string(::getpid());
  fs::remove_all(staging);
  util::TempPathGuard guard(staging);  // removed on an error, or when a signal ends the process
  fs::create_directories(staging);
  fill(staging);
  fsync_directory(staging);
  publish_directory(staging, dir);
  guard.release();
}

}  // namespace bertune::io
