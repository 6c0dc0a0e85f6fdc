// serve/routes.h: the model-free request handling of `bertune serve`, without a socket.
#include <gtest/gtest.h>

#include <cmath>
#include <limits>

#include <nlohmann/json.hpp>

#include "serve/routes.h"

namespace bertune::serve {
namespace {

// The ClientError a body gets, or status 0 when it is accepted.
ClientError refusal_of(const std::string& body, bool hf_shape, int max_texts = 4) {
  try {
    classify_job(body, hf_shape, max_texts);
  } catch (const ClientError& e) {
    return e;
  }
  return {0, "", ""};
}

TEST(Routes, NumberBeyondDoubleIs400BadJsonNamingTheNumber) {
  for (auto [body, hf] : {std::pair{R"({"texts": 1e999})", false}, {R"({"texts":["a"],"x":1e999})", false},
                          {R"({"inputs": -1e999})", true}, {R"({"inputs": "a", "parameters": {"top_k": 1e400}})", true}}) {
    const ClientError e = refusal_of(body, hf);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.kind, "bad_json") << body;
    EXPECT_NE(e.message.find("number overflow"), std::string::npos) << body << ": " << e.message;
  }
}

TEST(Routes, ValidBodiesGiveTheirTextsAndParameters) {
  ClassifyJob job = classify_job(R"({"texts": ["a", "b"]})", false, 4);
  EXPECT_EQ(job.texts, (std::vector<std::string>{"a", "b"}));
  job = classify_job(R"({"inputs": "x", "parameters": {"top_k": 1}})", true, 4);
  EXPECT_EQ(job.texts, std::vector<std::string>{"x"});
  ASSERT_TRUE(job.parameters.top_k.has_value());
  EXPECT_EQ(*job.parameters.top_k, 1);
  EXPECT_EQ(refusal_of(R"({"texts": ["a","b","c","d","e"]})", false).status, 413);
}

TEST(Routes, SentencePairsInBothShapes) {
  ClassifyJob job = classify_job(R"({"texts": [["비가 온다", "날씨가 맑다"], ["a", "b"]]})", false, 4);
  EXPECT_EQ(job.texts, (std::vector<std::string>{"비가 온다", "a"}));
  EXPECT_EQ(job.text_pairs, (std::vector<std::string>{"날씨가 맑다", "b"}));
  job = classify_job(R"({"inputs": {"text": "a", "text_pair": "b"}})", true, 4);
  EXPECT_EQ(job.texts, std::vector<std::string>{"a"});
  EXPECT_EQ(job.text_pairs, std::vector<std::string>{"b"});
  job = classify_job(R"({"inputs": [{"text": "a", "text_pair": "b"}, {"text": "c", "text_pair": "d"}]})", true, 4);
  EXPECT_EQ(job.text_pairs, (std::vector<std::string>{"b", "d"}));
  EXPECT_TRUE(classify_job(R"({"texts": ["a", "b"]})", false, 4).text_pairs.empty());
  // Refused: texts mixed with pairs, an empty or non-string second text, a pair of three.
  for (auto [body, hf, kind] : {std::tuple{R"({"texts": ["a", ["b", "c"]]})", false, "bad_type"},
                                std::tuple{R"({"texts": [["a", ""]]})", false, "empty"},
                                std::tuple{R"({"texts": [["a", 2]]})", false, "bad_type"},
                                std::tuple{R"({"texts": [["a", "b", "c"]]})", false, "bad_type"},
                                std::tuple{R"({"inputs": {"text": "a", "text_pair": ""}})", true, "empty"},
                                std::tuple{R"({"inputs": {"text": "a", "text_pair": "b", "x": 1}})", true, "bad_field"}}) {
    const ClientError e = refusal_of(body, hf);
    EXPECT_EQ(e.status, 400) << body;
    EXPECT_EQ(e.kind, kind) << body << ": " << e.message;
  }
  EXPECT_NE(refusal_of(R"({"texts": ["a", ["b", "c"]]})", false).message.find("\"texts\"[1]: a pair among single texts"),
            std::string::npos);
}

http::Request request(std::string method, std::string path) {
  http::Request req;
  req.method = std::move(method);
  req.path = std::move(path);
  return req;
}

TEST(Routes, MethodsAndPaths) {
  Route r = route_request(request("DELETE", "/health"));
  EXPECT_EQ(r.endpoint, Endpoint::Refused);
  EXPECT_EQ(r.error.status, 405);
  EXPECT_EQ(r.headers, (http::Headers{{"Allow", "GET, HEAD"}}));
  r = route_request(request("POST", "/nope"));
  EXPECT_EQ(r.error.status, 404);
  EXPECT_EQ(r.metrics_path, "other");
  EXPECT_EQ(route_request(request("POST", "/")).endpoint, Endpoint::Hf);
}

// A gzip body was refused as "not valid JSON"; a compressed body is 415 naming its encoding.
TEST(Routes, CompressedBodiesAre415NamingTheEncoding) {
  for (const char* path : {"/v1/classify", "/"}) {
    http::Request req = request("POST", path);
    req.headers = {{"content-encoding", "gzip"}};
    const Route r = route_request(req);
    EXPECT_EQ(r.endpoint, Endpoint::Refused);
    EXPECT_EQ(r.error.status, 415);
    EXPECT_EQ(r.error.kind, "unsupported_encoding");
    EXPECT_NE(r.error.message.find("Content-Encoding: gzip is not supported"), std::string::npos) << r.error.message;
    EXPECT_EQ(r.headers, (http::Headers{{"Accept-Encoding", "identity"}}));
    req.headers = {{"content-encoding", "identity"}};
    EXPECT_NE(route_request(req).endpoint, Endpoint::Refused);
  }
  EXPECT_STREQ(http::reason_phrase(415), "Unsupported Media Type");
}

TEST(Routes, NonFiniteLogitsNameTheirText) {
  const std::vector<float> logits{0.f, 1.f, std::numeric_limits<float>::infinity(), 0.f};
  try {
    require_finite(logits, 2, 2, true);
    FAIL() << "non-finite logits accepted";
  } catch (const ClientError& e) {
    EXPECT_EQ(e.status, 500);
    EXPECT_EQ(e.kind, "non_finite");
    EXPECT_NE(e.message.find("\"inputs\"[1]"), std::string::npos) << e.message;
  }
  EXPECT_NO_THROW(require_finite(logits, 1, 2, false));
}

}  // namespace
}  // namespace bertune::serve
