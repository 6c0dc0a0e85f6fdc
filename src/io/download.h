#pragma once
// One libcurl download into a file that lands whole or not at all: bytes
// stream into an AtomicFile beside the target, and it is renamed into place
// only when the transfer finished and the caller's check (e.g. a SHA-256)
// passed. Used by the NSMC fetcher (data/download) and the hub resolver (io/hub).
#include <cstdint>
#include <filesystem>
#include <functional>
#include <string>

namespace bertune::io {

struct FetchOptions {
  long connect_timeout_s = 20;
  // Every received chunk, in order (e.g. to hash it). Exceptions are caught
  // and abort the transfer.
  std::function<void(const char* data, size_t size)> on_data;
  // Called after a complete transfer; a non-empty result is the reason to
  // discard the file (thrown as Error, the target left untouched).
  std::function<std::string()> verify;
  // HTTP 404 (or a missing file:// path) returns false instead of throwing.
  bool missing_ok = false;
};

// Returns true when `target` now holds `url`'s bytes. Throws Error naming the
// URL on network failure, HTTP error, write error or failed verification,
// suggesting `hint` (what the user can do offline) when it is non-empty.
bool fetch_to_file(const std::string& url, const std::filesystem::path& target,
                   const FetchOptions& options = {}, const std::string& hint = "");

}  // namespace bertune::io
