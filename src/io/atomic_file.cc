#include "io/atomic_file.h"

#include <fcntl.h>
#include <stdio.h>  // renameat2
#include <sys/stat.h>
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

std::string named(const fs::path& path, std::string_view role) {
  return role.empty() ? path.string() : std::string(role) + " " + path.string();
}

const char* file_kind(mode_t mode) {
  if (S_ISDIR(mode)) return "a directory";
  if (S_ISLNK(mode)) return "a symbolic link";
  if (S_ISCHR(mode)) return "a character device";
  if (S_ISBLK(mode)) return "a block device";
  if (S_ISFIFO(mode)) return "a FIFO (named pipe)";
  if (S_ISSOCK(mode)) return "a socket";
  return "not a regular file";
}
}  // namespace

void require_replaceable_file(const fs::path& path, std::string_view role) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || S_ISREG(st.st_mode)) return;  // absent: creating it says why not
  throw Error(named(path, role) + " is " + file_kind(st.st_mode) +
              "; outputs are written as new regular files, so it is not replaced (name a regular file instead)");
}

void require_replaceable_directory(const fs::path& path, std::string_view role) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0 || S_ISDIR(st.st_mode)) return;
  if (S_ISLNK(st.st_mode))
    throw Error(named(path, role) + " is a symbolic link; a directory output is replaced as a whole, so the "
                "link is not replaced (name the directory itself, or a new one)");
  throw Error(named(path, role) + " exists and is not a directory");
}

void flush_standard_output() {
  errno = 0;
  const bool flushed = std::fflush(stdout) == 0;
  const int err = errno;
  if (flushed && !std::ferror(stdout)) return;
  std::clearerr(stdout);
  throw Error(std::string("cannot write to standard output: ") +
              (err ? std::strerror(err) : "an earlier write failed"));
}

AtomicFile::AtomicFile(fs::path target) : target_(std::move(target)) {
  require_replaceable_file(target_);
  if (target_.has_parent_path()) fs::create_directories(target_.parent_path());
  std::random_device rd;
  temp_ = target_;
  temp_ += ".tmp." + std::to_string(::getpid()) + "." + std::to_string(rd() & 0xffffff);
  guard_.emplace(temp_);  // registered before the file exists: no moment a signal leaves it behind
  file_ = std::fopen(temp_.c_str(), "wb");
  if (!file_) throw Error("cannot create " + target_.string() + ": " + errno_text());
}

AtomicFile::~AtomicFile() {
  if (file_) std::fclose(file_);
}  // then guard_ removes the temporary file unless commit() released it

void AtomicFile::write(const void* data, size_t size) {
  if (size && std::fwrite(data, 1, size, file_) != size)
    throw Error("cannot write " + target_.string() + ": " + errno_text());
}

void AtomicFile::commit() {
  if (std::fflush(file_) != 0 || ::fsync(::fileno(file_)) != 0)
    throw Error("cannot write " + target_.string() + ": " + errno_text());
  std::FILE* f = file_;
  file_ = nullptr;
  if (std::fclose(f) != 0) throw Error("cannot write " + target_.string() + ": " + errno_text());
  require_replaceable_file(target_);  // nothing put a link or device there meanwhile
  if (std::rename(temp_.c_str(), target_.c_str()) != 0)
    throw Error("cannot replace " + target_.string() + ": " + errno_text());
  guard_->release();
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
  try {
    if (!fs::exists(fs::symlink_status(target))) {
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
  } catch (const fs::filesystem_error& e) {  // named as the user's path, not the staging one
    throw Error("cannot replace " + target.string() + ": " + e.code().message());
  }
  fsync_directory(parent);
}

namespace {
// `what` with every mention of the staging directory spelt as the directory it becomes.
std::string unstaged(std::string what, const std::string& staging, const std::string& dir) {
  for (size_t at = what.find(staging); at != std::string::npos; at = what.find(staging, at + dir.size()))
    what.replace(at, staging.size(), dir);
  return what;
}
}  // namespace

void write_directory_atomic(const fs::path& dir_in, const std::function<void(const fs::path&)>& fill) {
  // Normalise "out/" to "out" so the staging directory sits beside it.
  fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
  if (dir.empty()) throw Error("write_directory_atomic: empty directory name");
  require_replaceable_directory(dir);
  fs::path staging = dir;
  staging += ".tmp-" + std::to_string(::getpid());
  fs::remove_all(staging);
  util::TempPathGuard guard(staging);  // removed on an error, or when a signal ends the process
  fs::create_directories(staging);
  try {
    fill(staging);
  } catch (const Interrupted&) {
    throw;
  } catch (const Error& e) {
    const std::string what = unstaged(e.what(), staging.string(), dir.string());
    if (what == e.what()) throw;
    throw Error(what);
  } catch (const fs::filesystem_error& e) {
    throw Error(unstaged(std::string("cannot write ") + e.path1().string() + ": " + e.code().message(),
                         staging.string(), dir.string()));
  }
  fsync_directory(staging);
  publish_directory(staging, dir);
  guard.release();
}

}  // namespace bertune::io
