// The request handling of `bertune serve` on arbitrary bytes, as a connection feeds it:
// the HTTP/1.1 parser (serve/http.h), then for each complete request the routing and
// body validation (serve/routes.h), a stand-in classifier (logits derived from the texts,
// sometimes non-finite, in place of the model) and the answer. Checks of the parser:
// a refusal is a 4xx/5xx with a kind and a message, a request consumes at least one byte
// and never more than there is, a request's bytes less the last one are never taken for
// a request (or refused: the parser must wait for more), a body never exceeds the limit.
// Checks of the handling: the status is one serve answers, every answer is valid JSON,
// an error (>= 400) has {"error": {"kind", "message"}}, and the only 500 is non_finite
// logits; a 200 has one answer per text.
#include <cmath>
#include <cstring>
#include <limits>

#include "fuzz_common.h"
#include "serve/http.h"
#include "serve/routes.h"

namespace http = bertune::serve::http;
namespace serve = bertune::serve;
using Json = nlohmann::json;

namespace {

void check(bool ok) {
  if (!ok) __builtin_trap();
}

// The stand-in model: k labels (from the first text's length), each text's logits
// from its bytes; a text holding '!' gets one non-finite logit.
std::vector<float> standin_logits(const std::vector<std::string>& texts, int k) {
  std::vector<float> logits;
  for (const auto& text : texts) {
    uint32_t h = 2166136261u;
    for (unsigned char c : text) h = (h ^ c) * 16777619u;
    for (int j = 0; j < k; ++j) logits.push_back(static_cast<float>(static_cast<int32_t>(h >> (j * 8))) * 1e-6f);
    if (text.find('!') != std::string::npos)
      logits[logits.size() - 1] = h % 2 ? std::numeric_limits<float>::infinity() : std::nanf("");
  }
  return logits;
}

// What serve answers a classify request (server.cc's Service::handle less the model).
http::Response answer(const http::Request& req, bool hf_shape) {
  http::Response res;
  try {
    const serve::ClassifyJob job = serve::classify_job(req.body, hf_shape, 8);
    check(!job.texts.empty() && job.texts.size() <= 8);
    const std::vector<std::string> labels{"negative", "positive", "neutral"};
    const int k = 1 + static_cast<int>(job.texts[0].size() % 3);
    const std::vector<std::string> names(labels.begin(), labels.begin() + k);
    const auto logits = standin_logits(job.texts, k);
    serve::require_finite(logits, job.texts.size(), k, hf_shape);
    const auto problem = k == 1 ? serve::ProblemType::Regression : serve::ProblemType::SingleLabel;
    const Json j = serve::classify_answer(job, logits, names, problem, "model", 1.0);
    check((hf_shape ? j : j["predictions"]).size() == job.texts.size());
    serve::answer_json(res, 200, j);
  } catch (const serve::ClientError& e) {
    check(e.status == 400 || e.status == 413 || (e.status == 500 && e.kind == "non_finite"));
    serve::answer_json(res, e.status, serve::error_json(e.kind, e.message));
  }
  return res;
}

void check_response(const http::Response& res) {
  check(res.status == 200 || res.status == 400 || res.status == 404 || res.status == 405 || res.status == 413 ||
        res.status == 415 || res.status == 500);
  const Json j = Json::parse(res.body);  // throws (a finding) when not JSON
  if (res.status >= 400) {
    check(j.is_object() && j.contains("error") && j["error"].is_object());
    check(j["error"].value("kind", Json()).is_string() && j["error"].value("message", Json()).is_string());
    check(res.status != 500 || j["error"]["kind"] == "non_finite");
  }
}

// Routes one parsed request and checks the answer; health and metrics answer the
// server's state, not the request, and are left out.
void handle(const http::Request& req) {
  const serve::Route r = serve::route_request(req);
  http::Response res;
  if (r.endpoint == serve::Endpoint::Classify || r.endpoint == serve::Endpoint::Hf) {
    res = answer(req, r.endpoint == serve::Endpoint::Hf);
  } else if (r.endpoint == serve::Endpoint::Refused) {
    // A 404 carries no headers of its own; a 405 names what is allowed, a 415 what is accepted.
    const auto only = [&](const char* name) { return r.headers.size() == 1 && r.headers[0].first == name; };
    check((r.error.status == 404 && r.headers.empty()) || (r.error.status == 405 && only("Allow")) ||
          (r.error.status == 415 && only("Accept-Encoding")));
    serve::answer_json(res, r.error.status, serve::error_json(r.error.kind, r.error.message));
  } else {
    return;
  }
  check_response(res);
  const std::string out = http::serialize(res, req.method == "HEAD", req.keep_alive);
  check(out.rfind("HTTP/1.1 " + std::to_string(res.status) + " ", 0) == 0);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  http::Limits limits;
  limits.max_header_bytes = 2048;
  limits.max_headers = 32;
  limits.max_body_bytes = 8192;
  std::string_view bytes = bertune::fuzz::as_text(data, size);
  for (int i = 0; i < 16 && !bytes.empty(); ++i) {
    const http::Parsed p = http::parse_request(bytes, limits);
    check(p.consumed <= bytes.size());
    if (p.stage == http::Stage::Refused) {
      check(p.refusal.status >= 400 && p.refusal.status <= 599 && !p.refusal.kind.empty() &&
            !p.refusal.message.empty());
      http::Response refused;
      serve::answer_json(refused, p.refusal.status, serve::error_json(p.refusal.kind, p.refusal.message));
      check(Json::parse(refused.body).is_object());
      http::serialize(refused, false, false);
      break;
    }
    if (p.stage != http::Stage::Complete) break;
    check(p.consumed > 0 && p.request.body.size() <= limits.max_body_bytes && !p.request.method.empty() &&
          !p.request.path.empty());
    const http::Stage prefix = http::parse_request(bytes.substr(0, p.consumed - 1), limits).stage;
    check(prefix != http::Stage::Complete && prefix != http::Stage::Refused);
    handle(p.request);
    bytes.remove_prefix(p.consumed);
  }
  return 0;
}
