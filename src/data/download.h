#pragma once
// Fetching public data sets into the cache, verified: each file is streamed
// into a temporary file beside its target while its SHA-256 is computed, and
// only a file whose digest matches the published one is renamed into place.
// A failed, partial or corrupt download never replaces what was there.
#include <filesystem>
#include <functional>
#include <string>
#include <vector>

namespace bertune::data {

struct RemoteFile {
  std::string name;    // file name under the URL base and in the target folder
  std::string sha256;  // expected digest, lowercase hex
};

struct DownloadOptions {
  std::string url_base;            // e.g. https://raw.githubusercontent.com/e9t/nsmc/master
  std::filesystem::path target_dir;
  long connect_timeout_s = 20;
  std::function<void(const std::string&)> log;  // progress lines; may be empty
};

enum class FileStatus { AlreadyPresent, Downloaded };

struct DownloadedFile {
  std::filesystem::path path;
  FileStatus status;
};

// Throws Error naming the URL on a network failure or HTTP error, and naming
// both digests on a mismatch.
std::vector<DownloadedFile> download_verified(const std::vector<RemoteFile>& files,
                                              const DownloadOptions& options);

// NSMC's published splits and their digests (as in shared/data/nsmc/SHA256SUMS).
const std::vector<RemoteFile>& nsmc_files();
constexpr const char* kNsmcUrlBase = "https://raw.githubusercontent.com/e9t/nsmc/master";

// download_verified(nsmc_files()) into cache_dir()/nsmc unless target_dir is set.
// The URL base can be overridden by $BERTUNE_NSMC_URL (e.g. a file:// mirror).
std::vector<DownloadedFile> download_nsmc(DownloadOptions options = {});

}  // namespace bertune::data
