#include "data/download.h"

#include <cstdlib>

#include "data/sha256.h"
#include "io/download.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::data {
namespace fs = std::filesystem;

const std::vector<RemoteFile>& nsmc_files() {
  static const std::vector<RemoteFile> files = {
      {"ratings_train.txt", "e03b7d14e9e41be8d464a28057cd25d7396c53e67aa7fd5f7e552c59b0ee2940"},
      {"ratings_test.txt", "8ac9f64052f11dbf6ae0acb5e038f03d90a76f0eda7820cfb3a92d02edfcebda"},
  };
  return files;
}

namespace {

void fetch_verified(const std::string& url, const fs::path& target, const std::string& expected,
                    const DownloadOptions& options) {
  Sha256 hash;
  io::FetchOptions fetch;
  fetch.connect_timeout_s = options.connect_timeout_s;
  fetch.on_data = [&](const char* data, size_t n) { hash.update(data, n); };
  fetch.verify = [&]() -> std::string {
    std::string got = hash.hex_digest();
    return got == expected ? "" : "has sha256 " + got + ", expected " + expected;
  };
  io::fetch_to_file(url, target, fetch,
                    "no network? the file can also be copied into " + target.parent_path().string());
}

}  // namespace

std::vector<DownloadedFile> download_verified(const std::vector<RemoteFile>& files,
                                              const DownloadOptions& options) {
  auto log = [&](const std::string& s) {
    if (options.log) options.log(s);
  };
  std::string base = options.url_base;
  while (!base.empty() && base.back() == '/') base.pop_back();
  std::vector<DownloadedFile> out;
  for (const RemoteFile& f : files) {
    fs::path target = options.target_dir / f.name;
    if (fs::exists(target)) {
      std::string have = sha256_file(target);
      if (have == f.sha256) {
        log(target.string() + ": already present, sha256 verified");
        out.push_back({target, FileStatus::AlreadyPresent});
        continue;
      }
      log(target.string() + ": present but sha256 " + have + " is wrong; fetching again");
    }
    std::string url = base + "/" + f.name;
    log("fetching " + url);
    fetch_verified(url, target, f.sha256, options);
    log(target.string() + ": downloaded, sha256 verified");
    out.push_back({target, FileStatus::Downloaded});
  }
  return out;
}

std::vector<DownloadedFile> download_nsmc(DownloadOptions options) {
  if (options.url_base.empty()) {
    const char* env = std::getenv("BERTUNE_NSMC_URL");
    options.url_base = env && *env ? env : kNsmcUrlBase;
  }
  if (options.target_dir.empty()) options.target_dir = cache_dir() / "nsmc";
  return download_verified(nsmc_files(), options);
}

}  // namespace bertune::data
