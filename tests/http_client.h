#pragma once
// A minimal HTTP/1.1 client over loopback sockets for the serve tests: one connection per
// request ("Connection: close"), plus raw exchanges of bytes for framing tests
// (pipelining, half-close, slow clients).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bertune::testing {

struct HttpResult {
  int status = 0;
  std::vector<std::pair<std::string, std::string>> headers;  // names lower-cased
  std::string body;
  std::string header(const std::string& name) const {
    for (const auto& [n, v] : headers)
      if (n == name) return v;
    return "";
  }
};

// A connected loopback socket, or -1.
inline int connect_loopback(int port, double timeout_s = 5) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
  timeval tv{static_cast<time_t>(timeout_s), static_cast<suseconds_t>((timeout_s - static_cast<time_t>(timeout_s)) * 1e6)};
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  if (connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

inline bool send_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n <= 0) return false;
    bytes.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Everything the peer sends until it closes, or until nothing came for timeout_s.
inline std::string read_until_close(int fd, double timeout_s) {
  std::string out;
  char buf[65536];
  for (;;) {
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, static_cast<int>(timeout_s * 1000)) <= 0) break;
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

// Sends `bytes` on a new connection (then half-closes it when asked) and returns all
// that came back.
inline std::string http_exchange(int port, std::string_view bytes, bool half_close = false, double timeout_s = 10) {
  int fd = connect_loopback(port, timeout_s);
  if (fd < 0) return "";
  send_all(fd, bytes);
  if (half_close) shutdown(fd, SHUT_WR);
  std::string out = read_until_close(fd, timeout_s);
  close(fd);
  return out;
}

// The answers in a byte stream, in order (each framed by its Content-Length, except the
// answers to HEAD requests: their indices in `head`, they have no body).
inline std::vector<HttpResult> parse_responses(std::string_view bytes, const std::vector<size_t>& head = {}) {
  std::vector<HttpResult> out;
  for (;;) {
    const size_t end = bytes.find("\r\n\r\n");
    if (end == std::string_view::npos || bytes.substr(0, 9).find("HTTP/1.") != 0) return out;
    HttpResult r;
    r.status = std::atoi(std::string(bytes.substr(9, 3)).c_str());
    size_t pos = bytes.find("\r\n") + 2;
    size_t length = 0;
    while (pos < end) {
      const size_t eol = bytes.find("\r\n", pos);
      std::string line(bytes.substr(pos, eol - pos));
      pos = eol + 2;
      const size_t colon = line.find(':');
      std::string name = line.substr(0, colon), value = line.substr(colon + 1);
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      value.erase(0, value.find_first_not_of(' '));
      const bool no_body = std::find(head.begin(), head.end(), out.size()) != head.end();
      if (name == "content-length" && !no_body) length = std::stoul(value);
      r.headers.emplace_back(name, value);
    }
    if (bytes.size() < end + 4 + length) return out;
    r.body = std::string(bytes.substr(end + 4, length));
    out.push_back(std::move(r));
    bytes.remove_prefix(end + 4 + length);
  }
}

class HttpClient {
 public:
  HttpClient(std::string host, int port) : host_(std::move(host)), port_(port) {}
  void set_read_timeout(int seconds, int) { timeout_s_ = seconds; }
  void set_connection_timeout(int seconds, int) { timeout_s_ = seconds; }

  std::optional<HttpResult> request(const std::string& method, const std::string& path, const std::string& body = "",
                                    const std::string& content_type = "") {
    std::string head = method + " " + path + " HTTP/1.1\r\nHost: " + host_ + "\r\nConnection: close\r\n";
    if (!content_type.empty()) head += "Content-Type: " + content_type + "\r\n";
    if (method == "POST" || !body.empty()) head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    int fd = connect_loopback(port_, timeout_s_);
    if (fd < 0) return std::nullopt;
    send_all(fd, head + "\r\n" + body);  // the answer may come early (413): read it regardless
    const std::string bytes = read_until_close(fd, timeout_s_);
    close(fd);
    auto answers = parse_responses(bytes);
    if (answers.empty()) return std::nullopt;
    return answers[0];
  }
  std::optional<HttpResult> Get(const std::string& path) { return request("GET", path); }
  std::optional<HttpResult> Post(const std::string& path, const std::string& body, const std::string& content_type) {
    return request("POST", path, body, content_type);
  }

 private:
  std::string host_;
  int port_;
  double timeout_s_ = 30;
};

}  // namespace bertune::testing
