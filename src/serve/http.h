#pragma once
// The HTTP/1.1 transport of `bertune serve`: an incremental request parser (a pure
// function over the bytes a connection has received) and an epoll connection loop with
// per-connection deadlines, a connection cap, keep-alive and pipelining (requests on one
// connection are answered one at a time, in order). Complete requests go to a Handler on
// a pool of threads; the loop itself never blocks.
//
// Deadlines of a connection: a request's headers must arrive within header_timeout of
// its first byte, its body within body_timeout of the headers, an answer must be taken
// by the client within write_timeout, and a keep-alive connection with nothing to do is
// closed after idle_timeout. A client past a deadline is dropped, never waited for.
#include <atomic>
#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace bertune::serve::http {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct Request {
  std::string method, target;  // as sent: "POST", "/v1/classify?x=1"
  std::string path;            // the target up to '?'
  int minor_version = 1;       // HTTP/1.<minor_version>
  Headers headers;             // names lower-cased, values without surrounding blanks
  std::string body;            // de-chunked
  bool keep_alive = true;      // HTTP/1.1 unless "Connection: close"; 1.0 with "keep-alive"
  // The first value of a header (name lower-case), or nullptr.
  const std::string* header(std::string_view name) const;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  Headers headers;     // more headers (Allow, ...)
  bool close = false;  // "Connection: close", then the connection is closed
};

const char* reason_phrase(int status);
// Status line, headers and (unless head_only: an answer to HEAD) the body.
std::string serialize(const Response& response, bool head_only, bool keep_alive);

struct Limits {
  size_t max_header_bytes = 16384;  // request line + headers (more: 431)
  size_t max_headers = 100;         // header lines (more: 431)
  size_t max_body_bytes = 1 << 20;  // the body, de-chunked (more: 413)
};

// A request the transport answers itself: status, a stable kind (the metrics label) and
// a message for the client.
struct Refusal {
  int status = 0;
  std::string kind, message;
};

enum class Stage {
  Empty,     // nothing but blank lines so far
  Headers,   // the request line or headers are incomplete
  Body,      // the headers are complete, the body is not
  Complete,  // `request` holds it; `consumed` bytes belong to it
  Refused,   // malformed or over a limit: answer `refusal`, then close
};

struct Parsed {
  Stage stage = Stage::Empty;
  size_t consumed = 0;
  Request request;               // Complete; Body: everything but the body
  Refusal refusal;               // Refused
  bool expect_continue = false;  // Body: the client waits for "100 Continue" before sending it
};

// The first request in `bytes` (what a connection has received and not yet consumed).
// Pure: call it again with more bytes until the stage is Complete or Refused. Costs
// O(headers + chunk count), not O(body), so a large body arriving in pieces is cheap.
Parsed parse_request(std::string_view bytes, const Limits& limits);

struct ServerOptions {
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port
  Limits limits;
  int max_connections = 512;  // open at once; beyond: 503, then closed
  int handler_threads = 128;  // requests handled at once
  std::chrono::milliseconds header_timeout{10000}, body_timeout{30000}, idle_timeout{15000},
      write_timeout{30000};
};

struct Hooks {
  std::function<Response(const Request&)> handle;  // called on a pool thread; may block
  // The answer to a request the transport refuses (malformed, over a limit, too slow,
  // too many connections); `path` is the request's path when it got that far.
  std::function<Response(const Refusal&, const std::string& path)> refuse;
  std::function<void(size_t open)> connections;  // the number of open connections changed
};

class Server {
 public:
  // Binds and listens; throws Error naming the address when that fails ("port N is in use").
  Server(ServerOptions options, Hooks hooks);
  ~Server();
  int port() const;
  // Serves until stop(): then stops accepting, drops connections that have no request in
  // the handler, answers the ones that have (with "Connection: close") and returns.
  void run();
  void stop();  // any thread

 private:
  struct Loop;
  std::unique_ptr<Loop> loop_;
};

}  // namespace bertune::serve::http
