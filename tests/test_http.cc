// The HTTP/1.1 request parser of `bertune serve` (serve/http.h), in process: framing,
// limits, malformed input, and the same result however the bytes are split.
#include <gtest/gtest.h>

#include "serve/http.h"

using namespace bertune::serve::http;

namespace {

Limits small_limits() {
  Limits l;
  l.max_header_bytes = 256;
  l.max_headers = 8;
  l.max_body_bytes = 64;
  return l;
}

Parsed parse(const std::string& bytes, Limits limits = small_limits()) { return parse_request(bytes, limits); }

TEST(HttpParser, ACompleteRequestWithItsBody) {
  const std::string req = "POST /v1/classify?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nX-Thing:  v v \r\n\r\nhello";
  Parsed p = parse(req + "GET /next HTTP/1.1\r\n\r\n");
  ASSERT_EQ(p.stage, Stage::Complete);
  EXPECT_EQ(p.consumed, req.size());
  EXPECT_EQ(p.request.method, "POST");
  EXPECT_EQ(p.request.target, "/v1/classify?x=1");
  EXPECT_EQ(p.request.path, "/v1/classify");
  EXPECT_EQ(p.request.body, "hello");
  ASSERT_NE(p.request.header("x-thing"), nullptr);
  EXPECT_EQ(*p.request.header("x-thing"), "v v");
  EXPECT_TRUE(p.request.keep_alive);
}

// Every split of the bytes gives Empty/Headers/Body until the last byte, then the same
// request: the parser keeps no state between calls.
TEST(HttpParser, ByteByByteIsTheSameAsAllAtOnce) {
  const std::string req = "\r\nPOST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3;ext=1\r\nabc\r\n2\r\nde\r\n0\r\nT: x\r\n\r\n";
  for (size_t n = 0; n < req.size(); ++n) {
    Parsed p = parse(req.substr(0, n));
    EXPECT_TRUE(p.stage == Stage::Empty || p.stage == Stage::Headers || p.stage == Stage::Body) << n;
    if (n > 2) {
      EXPECT_NE(p.stage, Stage::Empty) << n;
    }
  }
  Parsed p = parse(req);
  ASSERT_EQ(p.stage, Stage::Complete) << p.refusal.message;
  EXPECT_EQ(p.request.body, "abcde");
  EXPECT_EQ(p.consumed, req.size());
}

TEST(HttpParser, ConnectionAndExpect) {
  EXPECT_FALSE(parse("GET / HTTP/1.1\r\nConnection: Close\r\n\r\n").request.keep_alive);
  EXPECT_FALSE(parse("GET / HTTP/1.0\r\n\r\n").request.keep_alive);
  EXPECT_TRUE(parse("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").request.keep_alive);
  Parsed p = parse("POST / HTTP/1.1\r\nContent-Length: 3\r\nExpect: 100-continue\r\n\r\n");
  EXPECT_EQ(p.stage, Stage::Body);
  EXPECT_TRUE(p.expect_continue);
  EXPECT_EQ(p.request.path, "/");
  // Bare LF line ends are accepted.
  EXPECT_EQ(parse("GET /health HTTP/1.1\nHost: a\n\n").stage, Stage::Complete);
}

void expect_refused(const std::string& bytes, int status, const std::string& message_part) {
  Parsed p = parse(bytes);
  ASSERT_EQ(p.stage, Stage::Refused) << bytes;
  EXPECT_EQ(p.refusal.status, status) << bytes << " -> " << p.refusal.message;
  EXPECT_NE(p.refusal.message.find(message_part), std::string::npos) << p.refusal.message;
}

TEST(HttpParser, MalformedFramingIsRefusedWithTheRightStatus) {
  expect_refused("POST / HTTP/1.1\r\nContent-Length: -5\r\n\r\n", 400, "invalid Content-Length \"-5\"");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\n", 400, "invalid Content-Length");
  expect_refused("POST / HTTP/1.1\r\nContent-Length:\r\n\r\n", 400, "invalid Content-Length");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400,
                 "conflicting Content-Length values (3 and 4)");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 3, 4\r\n\r\n", 400, "conflicting Content-Length");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 99999999999999999999999\r\n\r\n", 413, "exceeds the limit of 64");
  expect_refused("POST / HTTP/1.1\r\nContent-Length: 65\r\n\r\n", 413, "exceeds the limit of 64 bytes");
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", 400, "ambiguous");
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", 501, "not supported");
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400, "malformed chunk size");
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n41\r\n", 413, "exceeds the limit");
  expect_refused("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n", 400, "not followed by a line end");
  expect_refused("hello there\r\n\r\n", 400, "malformed request line");
  expect_refused("GET  / HTTP/1.1\r\n\r\n", 400, "malformed request line");
  expect_refused("G(T / HTTP/1.1\r\n\r\n", 400, "bad method");
  expect_refused("GET ?x=1 HTTP/1.1\r\n\r\n", 400, "bad target \"?x=1\" (expected /path)");
  EXPECT_EQ(parse("GET http://h:1/health?x HTTP/1.1\r\n\r\n").request.path, "/health");
  EXPECT_EQ(parse("GET HTTP://h HTTP/1.1\r\n\r\n").request.path, "/");
  expect_refused("GET / HTTP/2.0\r\n\r\n", 505, "not supported");
  expect_refused("GET / FTP/1.1\r\n\r\n", 400, "bad HTTP version");
  expect_refused("GET / HTTP/1.1\r\nNo colon here\r\n\r\n", 400, "header line 1: malformed");
  expect_refused("GET / HTTP/1.1\r\nBad Name: x\r\n\r\n", 400, "header line 1: malformed");
  expect_refused("GET / HTTP/1.1\r\nA: b\r\n folded\r\n\r\n", 400, "folded");
  expect_refused("GET / HTTP/1.1\r\nA: b\x01\r\n\r\n", 400, "control character");
  // A wrong request line is refused before the headers end.
  expect_refused("\x16\x03\x01\x02\x05\x01\x07\x01\xfc\x03\x03\n", 400, "malformed request line");
}

TEST(HttpParser, HeaderLimits) {
  expect_refused("GET / HTTP/1.1\r\nA: " + std::string(300, 'x') + "\r\n\r\n", 431, "exceed the limit of 256 bytes");
  expect_refused("GET / HTTP/1.1\r\nA: " + std::string(300, 'x'), 431, "exceed the limit of 256 bytes");
  std::string many = "GET / HTTP/1.1\r\n";
  for (int i = 0; i < 9; ++i) many += "H" + std::to_string(i) + ": v\r\n";
  expect_refused(many + "\r\n", 431, "9 header lines, the limit is 8");
  // Blank lines alone are consumed (between pipelined requests), never a request.
  Parsed p = parse("\r\n\r\n\n");
  EXPECT_EQ(p.stage, Stage::Empty);
  EXPECT_EQ(p.consumed, 5u);
}

TEST(HttpSerialize, StatusHeadersAndHead) {
  Response r;
  r.status = 405;
  r.body = "{}";
  r.headers.emplace_back("Allow", "GET, HEAD");
  EXPECT_EQ(serialize(r, false, true),
            "HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: 2\r\nAllow: GET, "
            "HEAD\r\nConnection: keep-alive\r\n\r\n{}");
  EXPECT_EQ(serialize(r, true, false).find("{}"), std::string::npos);
  EXPECT_NE(serialize(r, true, false).find("Connection: close\r\n\r\n"), std::string::npos);
}

}  // namespace
