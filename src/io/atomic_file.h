#pragma once
// Writes that either land whole or not at all: data goes to a temporary file
// beside the target, is fsync'ed, then renamed over it, and the directory is
// fsync'ed so the rename itself survives a crash. A kill -9 at any moment
// leaves either the old file or the new one, never a torn mix.
#include <cstdio>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "io/read_file.h"  // read_file, read_text_file (kept here for existing callers)
#include "util/signals.h"

namespace bertune::io {

// The rule for every file bertune writes: outputs are regular files, replaced atomically
// (AtomicFile below). An existing `path` that is anything else — a directory, a symbolic
// link, a character or block device, a FIFO, a socket — is never replaced: Error naming
// `role` (e.g. "--output"; empty: none) and the path. Standard output given as "-" is the
// caller's to recognise before asking. AtomicFile applies the rule itself; commands call it
// before their work so a wrong --output fails at once.
void require_replaceable_file(const std::filesystem::path& path, std::string_view role = {});

// The same for a directory output (write_directory_atomic applies it): an existing `path`
// must be a real directory, not a symbolic link (to one) or anything else.
void require_replaceable_directory(const std::filesystem::path& path, std::string_view role = {});

// Flushes standard output and throws Error("cannot write to standard output: <reason>")
// when that or any earlier write to it failed (a full disk, a closed pipe, /dev/full).
// main() calls it after every command; a command may call it sooner.
void flush_standard_output();

// Errors name `target`, never the temporary file beside it. The temporary file is removed when
// a SIGINT/SIGTERM/SIGHUP ends the process mid-write (util::TempPathGuard).
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
  std::optional<util::TempPathGuard> guard_;  // removes temp_ unless commit() renamed it
  std::FILE* file_ = nullptr;
};

void write_file_atomic(const std::filesystem::path& target, std::string_view contents);
void fsync_directory(const std::filesystem::path& dir);

// Puts the complete, fsync'ed directory `staged` in place of `target`: renamed there when
// `target` does not exist, else swapped with it in one atomic renameat2(RENAME_EXCHANGE) and
// the old copy removed — `target` never disappears. Where the filesystem cannot exchange,
// the old directory is renamed to <target>.old-<pid> first; a crash between those two
// renames leaves no <target>, but both complete copies on disk.
void publish_directory(const std::filesystem::path& staged, const std::filesystem::path& target);

// Replaces the directory `dir` as a whole: `fill` writes every file into a
// staging directory <dir>.tmp-<pid>/ beside it, which is fsync'ed and then
// published (publish_directory). When `fill` throws, the staging directory
// is removed and <dir> is untouched; an Error from `fill` that names a path in
// the staging directory is rethrown naming the same path under `dir`.
// `dir` must pass require_replaceable_directory.
void write_directory_atomic(const std::filesystem::path& dir,
                            const std::function<void(const std::filesystem::path& staging)>& fill);

}  // namespace bertune::io
