// The HTTP/1.1 request parser of `bertune serve` (serve/http.h) on arbitrary bytes,
// as a connection feeds it: every pipelined request in the bytes, each answered
// (serialized) before the next is parsed. Checks that a refusal is a 4xx/5xx with a
// kind and a message, that a request consumes at least one byte and never more than
// there is, that a request's bytes less the last one are never taken for a request
// (or refused: the parser must wait for more), and that a body never exceeds the limit.
#include "fuzz_common.h"
#include "serve/http.h"

namespace http = bertune::serve::http;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::Limits limits;
  limits.max_header_bytes = 2048;
  limits.max_headers = 32;
  limits.max_body_bytes = 8192;
  std::string_view bytes = bertune::fuzz::as_text(data, size);
  for (int i = 0; i < 16 && !bytes.empty(); ++i) {
    const http::Parsed p = http::parse_request(bytes, limits);
    if (p.consumed > bytes.size()) __builtin_trap();
    if (p.stage == http::Stage::Refused) {
      if (p.refusal.status < 400 || p.refusal.status > 599 || p.refusal.kind.empty() || p.refusal.message.empty())
        __builtin_trap();
      http::Response answer;
      answer.status = p.refusal.status;
      answer.body = p.refusal.message;
      http::serialize(answer, false, false);
      break;
    }
    if (p.stage != http::Stage::Complete) break;
    if (p.consumed == 0 || p.request.body.size() > limits.max_body_bytes || p.request.method.empty() ||
        p.request.path.empty())
      __builtin_trap();
    const http::Stage prefix = http::parse_request(bytes.substr(0, p.consumed - 1), limits).stage;
    if (prefix == http::Stage::Complete || prefix == http::Stage::Refused) __builtin_trap();
    http::Response answer;
    answer.body = p.request.body;
    const std::string out = http::serialize(answer, p.request.method == "HEAD", p.request.keep_alive);
    if (out.rfind("HTTP/1.1 200 OK\r\n", 0) != 0) __builtin_trap();
    bytes.remove_prefix(p.consumed);
  }
  return 0;
}
