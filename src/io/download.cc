#include "io/download.h"

#include <curl/curl.h>

#include "io/atomic_file.h"
#include "util/error.h"

namespace bertune::io {
namespace fs = std::filesystem;

namespace {

struct Sink {
  AtomicFile* file;
  const FetchOptions* options;
  uint64_t bytes = 0;
  std::string error;  // a write failure; exceptions must not cross libcurl
};

size_t on_chunk(char* data, size_t size, size_t count, void* user) {
  auto* sink = static_cast<Sink*>(user);
  size_t n = size * count;
  try {
    sink->file->write(data, n);
    if (sink->options->on_data) sink->options->on_data(data, n);
  } catch (const std::exception& e) {
    sink->error = e.what();
    return 0;  // tells libcurl to abort the transfer
  }
  sink->bytes += n;
  return n;
}

}  // namespace

bool fetch_to_file(const std::string& url, const fs::path& target, const FetchOptions& options,
                   const std::string& hint) {
  static const bool curl_ready = curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK;
  if (!curl_ready) throw Error("cannot initialise libcurl");
  AtomicFile file(target);  // discarded unless committed below
  Sink sink{&file, &options, 0, {}};
  CURL* curl = curl_easy_init();
  if (!curl) throw Error("cannot initialise libcurl");
  char curl_message[CURL_ERROR_SIZE] = "";
  curl_easy_setopt(curl, CURLOPT_URL, url.c_str());
  curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, curl_message);
  curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 1L);  // the hub redirects LFS files to a CDN
  curl_easy_setopt(curl, CURLOPT_FAILONERROR, 1L);     // HTTP 4xx/5xx are errors, not content
  curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT, options.connect_timeout_s);
  // A stalled transfer (under 1 KB/s for a minute) is given up rather than hanging.
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1024L);
  curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_chunk);
  curl_easy_setopt(curl, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(curl, CURLOPT_USERAGENT, "bertune/" BERTUNE_VERSION);
  CURLcode rc = curl_easy_perform(curl);
  long status = 0;
  curl_easy_getinfo(curl, CURLINFO_RESPONSE_CODE, &status);
  curl_easy_cleanup(curl);
  if (!sink.error.empty()) throw Error("downloading " + url + ": " + sink.error);
  bool missing = (rc == CURLE_HTTP_RETURNED_ERROR && status == 404) || rc == CURLE_FILE_COULDNT_READ_FILE;
  if (missing && options.missing_ok) return false;
  if (rc != CURLE_OK)
    throw Error("cannot download " + url + ": " + (curl_message[0] ? curl_message : curl_easy_strerror(rc)) +
                (hint.empty() ? "" : " (" + hint + ")"));
  if (options.verify) {
    std::string problem = options.verify();
    if (!problem.empty())
      throw Error("downloaded " + url + " (" + std::to_string(sink.bytes) + " bytes) " + problem + "; kept nothing");
  }
  file.commit();
  return true;
}

}  // namespace bertune::io
