#include "data/download.h"

#include <curl/curl.h>

#include <cstdlib>

#include "data/sha256.h"
#include "io/atomic_file.h"
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

struct Sink {
  io::AtomicFile* file;
  Sha256 hash;
  size_t bytes = 0;
  std::string error;  // a write failure; exceptions must not cross libcurl
};

size_t on_data(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t n = size * count;
  try {
    sink->file->write(data, n);
  } catch (const std::exception& e) {
    sink->error = e.what();
    return 0;  // tells libcurl to abort the transfer
  }
  sink->hash.update(data, n);
  sink->bytes += n;
  return n;
}

void fetch_verified(const std::string& url, const fs::path& target, const std::string& expected,
                    const DownloadOptions& options) {
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) throw Error("cannot initialise libcurl");
  io::AtomicFile file(target);  // discarded unless committed below
  Sink sink{&file, {}, 0, {}};
  CURL* curl = curl_easy_init();
  if (!curl) throw Error("cannot initialise libcurl");
  char curl_message[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_message);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);  // HTTP 4xx/5xx are errors, not content
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  // A stalled transfer (under 1 KB/s for a minute) is given up rather than hanging.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_data);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "bertune/" BERTUNE_VERSION);
  CURLcode rc = curl_easy_perform(curl);
  curl_easy_cleanup(curl);
  if (!sink.error.empty()) throw Error("downloading " + url + ": " + sink.error);
  if (rc != CURLE_OK)
    throw Error("cannot download " + url + ": " + (curl_message[0] ? curl_message : curl_easy_strerror(rc)) +
                " (no network? the file can also be copied into " + target.parent_path().string() + ")");
  std::string got = sink.hash.hex_digest();
  if (got != expected)
    throw Error("downloaded " + url + " (" + std::to_string(sink.bytes) + " bytes) has sha256 " + got +
                ", expected " + expected + "; kept nothing");
  file.commit();
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
