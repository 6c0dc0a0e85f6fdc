#include "io/json_error.h"

#include "io/read_file.h"
#include "util/error.h"

namespace bertune::io {
namespace fs = std::filesystem;
using nlohmann::json;

std::string json_error_position(const json::exception& e) {
  std::string what = e.what();
  // Drop "[json.exception.parse_error.101] parse error at " and similar.
  if (size_t close = what.find("] "); what.rfind("[json.exception.", 0) == 0 && close != std::string::npos)
    what = what.substr(close + 2);
  if (what.rfind("parse error at ", 0) == 0) what = what.substr(15);
  if (size_t last = what.find("; last read: '"); last != std::string::npos) {
    // The quoted input runs to the closing "'"; keep only its start.
    size_t end = what.rfind('\'');
    std::string quoted = end > last + 14 ? what.substr(last + 14, end - last - 14) : "";
    what = what.substr(0, last) + "; last read: '" + quote_excerpt(quoted, 40) + "'" +
           (end != std::string::npos ? what.substr(end + 1) : "");
  }
  return quote_excerpt(what, 200);
}

json read_json_file(const fs::path& path) {
  std::string text = read_file(path);
  check_text_encoding(text, path);  // UTF-16 would read as a syntax error at column 1
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    throw Error(path.string() + ": not valid JSON (" + json_error_position(e) + ")");
  }
}

}  // namespace bertune::io
