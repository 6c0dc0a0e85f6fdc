// The HTTP/1.1 request parser and the answer's serialization (RFC 9112). Strict where
// leniency lets one request be read two ways (conflicting Content-Length, Content-Length
// with Transfer-Encoding, folded header lines), lenient where it costs nothing (bare LF
// line ends, blank lines between requests).
#include "serve/http.h"

#include <algorithm>
#include <cctype>
#include <cstdint>

namespace bertune::serve::http {
namespace {

constexpr size_t kMaxChunkLine = 1024;  // "1a2b;ext=..." before its LF

bool is_tchar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || std::string_view("!#$%&'*+-.^_`|~").find(c) != std::string_view::npos;
}

bool is_token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), is_tchar); }

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

// Printable for a message: at most 40 bytes, control bytes as '?'.
std::string quoted(std::string_view s) {
  std::string out = "\"";
  for (char c : s.substr(0, 40)) out += (static_cast<unsigned char>(c) < 0x20 || c == 0x7f) ? '?' : c;
  return out + (s.size() > 40 ? "...\"" : "\"");
}

Refusal refused(int status, std::string kind, std::string message) {
  return {status, std::move(kind), std::move(message)};
}

Refusal bad(std::string message) { return refused(400, "bad_request", std::move(message)); }

Refusal too_large(const Limits& limits) {
  return refused(413, "payload_too_large",
                 "request body exceeds the limit of " + std::to_string(limits.max_body_bytes) + " bytes (--max-body-bytes)");
}

Parsed stop(Refusal why) {
  Parsed p;
  p.stage = Stage::Refused;
  p.refusal = std::move(why);
  return p;
}

// The lines of a header block: each without its CR LF (or bare LF).
struct HeadBlock {
  std::vector<std::string_view> lines;  // request line, then header lines
  size_t end = 0;                       // just past the blank line
  bool complete = false;
};

// Splits bytes[start..] into lines up to the first blank one, reading at most max_bytes.
HeadBlock split_head(std::string_view b, size_t start, size_t max_bytes) {
  HeadBlock h;
  size_t pos = start;
  const size_t limit = std::min(b.size(), start + max_bytes);
  while (pos < limit) {
    const size_t lf = b.find('\n', pos);
    if (lf == std::string_view::npos || lf >= limit) break;
    std::string_view line = b.substr(pos, lf - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    pos = lf + 1;
    if (line.empty()) {
      h.end = pos;
      h.complete = true;
      return h;
    }
    h.lines.push_back(line);
  }
  return h;
}

// "METHOD SP target SP HTTP/1.x"
bool parse_request_line(std::string_view line, Request& r, Refusal& error) {
  const size_t a = line.find(' '), b = a == std::string_view::npos ? a : line.find(' ', a + 1);
  if (b == std::string_view::npos || line.find(' ', b + 1) != std::string_view::npos) {
    error = bad("malformed request line " + quoted(line) + ": expected \"METHOD /path HTTP/1.1\"");
    return false;
  }
  const std::string_view method = line.substr(0, a), target = line.substr(a + 1, b - a - 1), version = line.substr(b + 1);
  if (!is_token(method)) {
    error = bad("malformed request line: bad method " + quoted(method));
    return false;
  }
  const bool target_ok = !target.empty() && std::none_of(target.begin(), target.end(), [](char c) {
    return static_cast<unsigned char>(c) <= 0x20 || c == 0x7f;
  });
  if (!target_ok) {
    error = bad("malformed request line: bad target " + quoted(target));
    return false;
  }
  if (version.size() != 8 || version.substr(0, 5) != "HTTP/" || !std::isdigit(static_cast<unsigned char>(version[5])) ||
      version[6] != '.' || !std::isdigit(static_cast<unsigned char>(version[7]))) {
    error = bad("malformed request line: bad HTTP version " + quoted(version));
    return false;
  }
  if (version[5] != '1') {
    error = refused(505, "http_version_not_supported", "HTTP version " + std::string(version) + " is not supported (HTTP/1.1)");
    return false;
  }
  // origin-form "/path?query", absolute-form "http://host/path", or "*" (OPTIONS).
  std::string_view path = target.substr(0, target.find('?'));
  for (std::string_view scheme : {"http://", "https://"})
    if (lower(path.substr(0, scheme.size())) == scheme) {
      const size_t slash = path.find('/', scheme.size());
      path = slash == std::string_view::npos ? "/" : path.substr(slash);
    }
  if ((path.empty() || path.front() != '/') && target != "*") {
    error = bad("malformed request line: bad target " + quoted(target) + " (expected /path)");
    return false;
  }
  r.method = method;
  r.target = target;
  r.path = target == "*" ? "*" : std::string(path);
  r.minor_version = version[7] - '0';
  return true;
}

bool parse_header_lines(const std::vector<std::string_view>& lines, const Limits& limits, Request& r, Refusal& error) {
  if (lines.size() - 1 > limits.max_headers) {
    error = refused(431, "header_too_large",
                    std::to_string(lines.size() - 1) + " header lines, the limit is " + std::to_string(limits.max_headers));
    return false;
  }
  for (size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') {
      error = bad("header line " + std::to_string(i) + ": folded header lines (starting with a blank) are not supported");
      return false;
    }
    const size_t colon = line.find(':');
    if (colon == std::string_view::npos || !is_token(line.substr(0, colon))) {
      error = bad("header line " + std::to_string(i) + ": malformed " + quoted(line) + " (expected \"Name: value\")");
      return false;
    }
    const std::string_view value = trim(line.substr(colon + 1));
    if (std::any_of(value.begin(), value.end(), [](char c) { return (c >= 0 && c < 0x20 && c != '\t') || c == 0x7f; })) {
      error = bad("header line " + std::to_string(i) + ": control character in the value of " +
                  quoted(line.substr(0, colon)));
      return false;
    }
    r.headers.emplace_back(lower(line.substr(0, colon)), std::string(value));
  }
  return true;
}

bool has_token(const std::string& list, std::string_view token) {
  size_t pos = 0;
  while (pos <= list.size()) {
    size_t comma = list.find(',', pos);
    if (comma == std::string::npos) comma = list.size();
    if (lower(trim(std::string_view(list).substr(pos, comma - pos))) == token) return true;
    pos = comma + 1;
  }
  return false;
}

// How the body is framed: none, Content-Length, or chunked.
struct Framing {
  bool chunked = false;
  uint64_t length = 0;
};

bool parse_framing(const Request& r, const Limits& limits, Framing& f, Refusal& error) {
  bool have_length = false, have_te = false;
  for (const auto& [name, value] : r.headers) {
    if (name == "transfer-encoding") {
      if (have_te || lower(value) != "chunked") {
        error = refused(501, "unsupported_transfer_encoding",
                        "Transfer-Encoding " + quoted(value) + " is not supported (only a single \"chunked\")");
        return false;
      }
      have_te = f.chunked = true;
    }
    if (name != "content-length") continue;
    size_t pos = 0;  // a comma-separated list of equal values counts as one
    while (pos <= value.size()) {
      size_t comma = value.find(',', pos);
      if (comma == std::string::npos) comma = value.size();
      const std::string_view v = trim(std::string_view(value).substr(pos, comma - pos));
      pos = comma + 1;
      if (v.empty() || !std::all_of(v.begin(), v.end(), [](char c) { return c >= '0' && c <= '9'; })) {
        error = bad("invalid Content-Length " + quoted(value) + ": expected a number of bytes");
        error.kind = "bad_content_length";
        return false;
      }
      uint64_t n = 0;
      for (char c : v) n = n > (UINT64_MAX - 9) / 10 ? UINT64_MAX : n * 10 + static_cast<uint64_t>(c - '0');
      if (have_length && n != f.length) {
        error = bad("conflicting Content-Length values (" + std::to_string(f.length) + " and " + std::string(v) + ")");
        error.kind = "bad_content_length";
        return false;
      }
      have_length = true;
      f.length = n;
    }
  }
  if (have_te && have_length) {
    error = bad("both Transfer-Encoding and Content-Length: the body's length is ambiguous");
    return false;
  }
  if (f.length > limits.max_body_bytes) {
    error = too_large(limits);
    return false;
  }
  return true;
}

// Walks a chunked body from `pos`. Returns Complete (consumed set; body appended to
// `out` when given), Body (more bytes needed) or Refused.
Parsed walk_chunks(std::string_view b, size_t pos, const Limits& limits, std::string* out) {
  uint64_t total = 0;
  Parsed p;
  p.stage = Stage::Body;
  for (;;) {
    const size_t lf = b.find('\n', pos);
    if (lf == std::string_view::npos) return b.size() - pos > kMaxChunkLine ? stop(bad("chunk size line too long")) : p;
    if (lf - pos > kMaxChunkLine) return stop(bad("chunk size line too long"));
    std::string_view line = b.substr(pos, lf - pos);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    const std::string_view hex = trim(line.substr(0, line.find(';')));
    if (hex.empty() || hex.size() > 15 || !std::all_of(hex.begin(), hex.end(), [](char c) { return std::isxdigit(static_cast<unsigned char>(c)); }))
      return stop(bad("malformed chunk size " + quoted(line)));
    const uint64_t size = std::stoull(std::string(hex), nullptr, 16);
    pos = lf + 1;
    if (size == 0) break;
    if (total + size > limits.max_body_bytes)
      return stop(too_large(limits));
    total += size;
    if (b.size() - pos < size + 1) return p;
    if (out) out->append(b.substr(pos, size));
    pos += size;
    if (b[pos] == '\r') {
      if (b.size() - pos < 2) return p;
      ++pos;
    }
    if (b[pos] != '\n') return stop(bad("chunk data not followed by a line end"));
    ++pos;
  }
  // Trailer fields (ignored), up to a blank line.
  const HeadBlock trailer = split_head(b, pos, limits.max_header_bytes);
  if (!trailer.complete)
    return b.size() - pos >= limits.max_header_bytes ? stop(refused(431, "header_too_large", "chunked trailer too large")) : p;
  p.stage = Stage::Complete;
  p.consumed = trailer.end;
  return p;
}

}  // namespace

const std::string* Request::header(std::string_view name) const {
  for (const auto& [n, v] : headers)
    if (n == name) return &v;
  return nullptr;
}

Parsed parse_request(std::string_view b, const Limits& limits) {
  // Blank lines before a request are skipped (RFC 9112 2.2): `consumed` drops them.
  size_t start = 0;
  while (start < b.size() && (b[start] == '\n' || (b[start] == '\r' && start + 1 < b.size() && b[start + 1] == '\n')))
    start += b[start] == '\r' ? 2 : 1;
  Parsed p;
  p.consumed = start;
  if (start == b.size() || (b[start] == '\r' && start + 1 == b.size())) return p;
  const HeadBlock head = split_head(b, start, limits.max_header_bytes);
  Request& r = p.request;
  if (!head.complete) {
    p.stage = Stage::Headers;
    // A request line that is already complete and wrong need not wait for the rest.
    if (!head.lines.empty() && !parse_request_line(head.lines[0], r, p.refusal)) p.stage = Stage::Refused;
    else if (b.size() - start >= limits.max_header_bytes)
      p.refusal = refused(431, "header_too_large",
                          "request line and headers exceed the limit of " + std::to_string(limits.max_header_bytes) +
                              " bytes");
    if (p.refusal.status) p.stage = Stage::Refused;
    return p;
  }
  Framing framing;
  if (!parse_request_line(head.lines[0], r, p.refusal) || !parse_header_lines(head.lines, limits, r, p.refusal) ||
      !parse_framing(r, limits, framing, p.refusal)) {
    p.stage = Stage::Refused;
    return p;
  }
  const std::string* connection = r.header("connection");
  r.keep_alive = r.minor_version == 1 ? !(connection && has_token(*connection, "close"))
                                      : connection && has_token(*connection, "keep-alive");
  const std::string* expect = r.header("expect");
  p.expect_continue = r.minor_version == 1 && expect && lower(*expect) == "100-continue";
  if (framing.chunked) {
    Parsed walked = walk_chunks(b, head.end, limits, nullptr);
    if (walked.stage == Stage::Refused) return walked;
    if (walked.stage == Stage::Body) {
      p.stage = Stage::Body;
      return p;
    }
    walk_chunks(b, head.end, limits, &r.body);
    p.consumed = walked.consumed;
  } else {
    if (b.size() - head.end < framing.length) {
      p.stage = Stage::Body;
      return p;
    }
    r.body.assign(b.substr(head.end, framing.length));
    p.consumed = head.end + framing.length;
  }
  p.stage = Stage::Complete;
  p.expect_continue = false;
  return p;
}

const char* reason_phrase(int status) {
  switch (status) {
    case 100: return "Continue";
    case 200: return "OK";
    case 400: return "Bad Request";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 408: return "Request Timeout";
    case 411: return "Length Required";
    case 413: return "Content Too Large";
    case 415: return "Unsupported Media Type";
    case 422: return "Unprocessable Content";
    case 431: return "Request Header Fields Too Large";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 503: return "Service Unavailable";
    case 505: return "HTTP Version Not Supported";
    default: return status < 400 ? "OK" : status < 500 ? "Client Error" : "Server Error";
  }
}

std::string serialize(const Response& r, bool head_only, bool keep_alive) {
  std::string out = "HTTP/1.1 " + std::to_string(r.status) + " " + reason_phrase(r.status) + "\r\n";
  out += "Content-Type: " + r.content_type + "\r\nContent-Length: " + std::to_string(r.body.size()) + "\r\n";
  for (const auto& [name, value] : r.headers) out += name + ": " + value + "\r\n";
  out += keep_alive && !r.close ? "Connection: keep-alive\r\n\r\n" : "Connection: close\r\n\r\n";
  if (!head_only) out += r.body;
  return out;
}

}  // namespace bertune::serve::http
