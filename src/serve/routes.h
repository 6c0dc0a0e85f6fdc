#pragma once
// The request handling of `bertune serve` that needs no model: which endpoint a parsed
// request names (or its 404/405), the validation of a classify body into the texts and
// the HF "parameters", and the JSON answer built from the logits. server.cc runs these
// around the real classifier; fuzz/fuzz_http.cc around a stand-in.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "serve/hf_api.h"
#include "serve/http.h"

namespace bertune::serve {

// A refused request: HTTP status, a stable kind (the metrics label) and a message.
// Every one a client body can cause is a 4xx; the only 500 is "non_finite" (the model).
struct ClientError {
  int status;
  std::string kind, message;
};

enum class Endpoint { Classify, Hf, Health, Metrics, Refused };

struct Route {
  Endpoint endpoint = Endpoint::Refused;
  ClientError error{0, "", ""};  // Refused: the 404, 405 or 415
  http::Headers headers;         // a refusal's own headers: a 405's Allow, a 415's Accept-Encoding
  std::string metrics_path;      // the metrics series of a refused request
};

// The endpoint of a method and path: POST /v1/classify, POST /, GET|HEAD /health and
// /metrics; a wrong method on those is 405, any other path 404, a compressed body
// (Content-Encoding other than identity) 415.
Route route_request(const http::Request& req);
bool known_path(const std::string& path);

// A classify request's work: the texts, in order, and for the HF shape its parameters.
struct ClassifyJob {
  std::vector<std::string> texts;
  std::vector<std::string> text_pairs;  // sentence pairs: one second text per text; else empty
  TextClassificationParameters parameters;
  infer::EntityOptions entities;  // a token classifier's (POST /: its "parameters")
  bool hf_shape = false;  // POST /: "inputs"; else /v1/classify's "texts" | "text"
  bool single_input = false;  // POST /: "inputs" was one text (a string), not a list
};

// Parses and validates a body (JSON that is not, a wrong field or type, too many texts,
// bad parameters). Throws ClientError, always a 4xx.
// token_classifier: the HF shape's "parameters" are the token-classification task's.
ClassifyJob classify_job(const std::string& body, bool hf_shape, int max_texts, bool token_classifier = false);

// Throws ClientError 500 "non_finite" naming the first text whose logits (n rows of k)
// are not all finite.
void require_finite(const std::vector<float>& logits, size_t n, int k, bool hf_shape);

// The 200 answer: /v1/classify's predictions (infer::prediction_record) or the HF API's
// scored label lists, both read as the model's problem type says.
nlohmann::json classify_answer(const ClassifyJob& job, const std::vector<float>& logits,
                               const std::vector<std::string>& label_names, ProblemType problem,
                               const std::string& model, double ms);

nlohmann::json error_json(const std::string& kind, const std::string& message);
void answer_json(http::Response& res, int status, const nlohmann::json& j);

}  // namespace bertune::serve
