#include "serve/routes.h"

#include "infer/metrics.h"

namespace bertune::serve {
namespace {

using Json = nlohmann::json;

Json parse_body(const std::string& body) {
  if (body.empty()) throw ClientError{400, "bad_json", "empty body: expected a JSON object"};
  try {
    return Json::parse(body);
  } catch (const Json::parse_error& e) {
    // nlohmann validates UTF-8 inside strings while parsing.
    if (std::string(e.what()).find("UTF-8") != std::string::npos)
      throw ClientError{400, "invalid_utf8", std::string("body is not valid UTF-8: ") + e.what()};
    throw ClientError{400, "bad_json", std::string("body is not valid JSON: ") + e.what()};
  } catch (const Json::exception& e) {
    // out_of_range 406: a number beyond double (1e999) is refused while parsing.
    throw ClientError{400, "bad_json", std::string("body is not usable JSON: ") + e.what()};
  }
}

std::string type_name(const Json& j) { return j.type_name(); }

// A pair's second text: a string, and not empty (a pair with nothing on one side is no pair).
std::string pair_text(const Json& v, const std::string& where) {
  if (!v.is_string()) throw ClientError{400, "bad_type", where + ": expected a string, got " + type_name(v)};
  if (v.get_ref<const std::string&>().empty()) throw ClientError{400, "empty", where + ": empty text pair"};
  return v.get<std::string>();
}

// One item: a text (string), or a sentence pair as ["text", "text_pair"] or Hugging Face's
// {"text": ..., "text_pair": ...}. Returns whether it is a pair.
bool add_item(const Json& item, const std::string& where, ClassifyJob& job) {
  if (item.is_string()) {
    job.texts.push_back(item.get<std::string>());
    return false;
  }
  if (item.is_array() && item.size() == 2 && item[0].is_string()) {
    job.texts.push_back(item[0].get<std::string>());
    job.text_pairs.push_back(pair_text(item[1], where + "[1]"));
    return true;
  }
  if (item.is_object() && item.contains("text") && item["text"].is_string() && item.contains("text_pair")) {
    for (const auto& [key, value] : item.items())
      if (key != "text" && key != "text_pair")
        throw ClientError{400, "bad_field", where + ": unknown field \"" + key + "\" (expected \"text\", \"text_pair\")"};
    job.texts.push_back(item["text"].get<std::string>());
    job.text_pairs.push_back(pair_text(item["text_pair"], where + ".text_pair"));
    return true;
  }
  throw ClientError{400, "bad_type",
                    where + ": expected a string or a pair ([\"text\", \"text_pair\"] or {\"text\", \"text_pair\"}), got " +
                        type_name(item)};
}

// A string, a pair, or a non-empty array of them, as the texts to classify: all single texts
// or all pairs.
void texts_from(const Json& value, const std::string& field, int max_texts, ClassifyJob& job) {
  const std::string where = "\"" + field + "\"";
  if (!value.is_array()) {
    add_item(value, where, job);
    return;
  }
  if (value.empty()) throw ClientError{400, "empty", where + ": empty list, nothing to classify"};
  if (value.size() > static_cast<size_t>(max_texts))
    throw ClientError{413, "too_many_texts",
                      where + ": " + std::to_string(value.size()) + " texts, the limit is " + std::to_string(max_texts) +
                          " per request (--max-texts)"};
  bool first_is_pair = false;
  for (size_t i = 0; i < value.size(); ++i) {
    const std::string at = where + "[" + std::to_string(i) + "]";
    const bool pair = add_item(value[i], at, job);
    if (i == 0) first_is_pair = pair;
    if (pair != first_is_pair)
      throw ClientError{400, "bad_type", at + ": " + (pair ? "a pair" : "a single text") + " among " +
                                             (pair ? "single texts" : "pairs") + "; give all texts or all pairs"};
  }
}

// /v1/classify: exactly one of "texts" (list) or "text" (string).
void classify_texts(const Json& body, int max_texts, ClassifyJob& job) {
  if (!body.is_object()) throw ClientError{400, "bad_type", "body: expected a JSON object, got " + type_name(body)};
  for (const auto& [key, value] : body.items())
    if (key != "texts" && key != "text")
      throw ClientError{400, "bad_field", "unknown field \"" + key + "\" (expected \"texts\" or \"text\")"};
  if (body.contains("texts") == body.contains("text"))
    throw ClientError{400, "bad_field", "give exactly one of \"texts\" (a list of strings) or \"text\" (a string)"};
  if (body.contains("text")) {
    if (!body["text"].is_string())
      throw ClientError{400, "bad_type", "\"text\": expected a string, got " + type_name(body["text"])};
    job.texts.push_back(body["text"].get<std::string>());
    return;
  }
  if (!body["texts"].is_array())
    throw ClientError{400, "bad_type", "\"texts\": expected a list of strings, got " + type_name(body["texts"])};
  texts_from(body["texts"], "texts", max_texts, job);
}

// The Hugging Face Inference API body: "inputs", "parameters" (the text- or token-classification
// ones: hf_api.h) and "options" (accepted, unused: the model is always loaded, nothing is cached).
void hf_texts(const Json& body, int max_texts, bool token_classifier, ClassifyJob& job) {
  if (!body.is_object()) throw ClientError{400, "bad_type", "body: expected a JSON object, got " + type_name(body)};
  for (const auto& [key, value] : body.items())
    if (key != "inputs" && key != "parameters" && key != "options")
      throw ClientError{400, "bad_field", "unknown field \"" + key + "\" (expected \"inputs\")"};
  if (!body.contains("inputs")) throw ClientError{400, "bad_field", "missing field \"inputs\""};
  try {
    const Json parameters = body.value("parameters", Json());
    if (token_classifier) job.entities = parse_token_parameters(parameters);
    else job.parameters = parse_parameters(parameters);
  } catch (const ParameterError& e) {
    throw ClientError{400, "bad_parameter", e.what()};
  }
  texts_from(body["inputs"], "inputs", max_texts, job);
  job.single_input = body["inputs"].is_string();
}

}  // namespace

bool known_path(const std::string& path) {
  return path == "/v1/classify" || path == "/" || path == "/health" || path == "/metrics";
}

Route route_request(const http::Request& req) {
  Route r;
  const bool post_path = req.path == "/v1/classify" || req.path == "/";
  const bool get = req.method == "GET" || req.method == "HEAD";  // HEAD: the GET answer's headers
  const std::string* encoding = req.header("content-encoding");
  if (post_path && req.method == "POST" && encoding && !encoding->empty() && *encoding != "identity") {
    // Read as JSON, a gzip body would be "not valid JSON": say what is wrong instead.
    r.headers.emplace_back("Accept-Encoding", "identity");
    r.error = {415, "unsupported_encoding",
               "Content-Encoding: " + *encoding + " is not supported; send the JSON body uncompressed"};
    r.metrics_path = req.path;
  } else if (post_path && req.method == "POST") {
    r.endpoint = req.path == "/" ? Endpoint::Hf : Endpoint::Classify;
  } else if (req.path == "/health" && get) {
    r.endpoint = Endpoint::Health;
  } else if (req.path == "/metrics" && get) {
    r.endpoint = Endpoint::Metrics;
  } else if (known_path(req.path)) {
    r.headers.emplace_back("Allow", post_path ? "POST" : "GET, HEAD");
    r.error = {405, "method_not_allowed", "use " + std::string(post_path ? "POST" : "GET") + " for " + req.path};
    r.metrics_path = req.path;
  } else {
    r.error = {404, "not_found", "no endpoint " + req.path + " (POST /v1/classify, POST /, GET /health, GET /metrics)"};
    r.metrics_path = "other";  // unknown paths share one series
  }
  return r;
}

ClassifyJob classify_job(const std::string& body, bool hf_shape, int max_texts, bool token_classifier) {
  const Json j = parse_body(body);
  ClassifyJob job;
  job.hf_shape = hf_shape;
  if (hf_shape) hf_texts(j, max_texts, token_classifier, job);
  else classify_texts(j, max_texts, job);
  return job;
}

// Finite weights can still overflow on some text: its scores would go out as null. A 500
// naming the text instead (the model is at fault, not the request).
void require_finite(const std::vector<float>& logits, size_t n, int k, bool hf_shape) {
  const int64_t row = infer::first_non_finite_row(logits.data(), n, k);
  if (row < 0) return;
  throw ClientError{500, "non_finite",
                    "\"" + std::string(hf_shape ? "inputs" : "texts") + "\"[" + std::to_string(row) +
                        "]: the model's logits are not finite (its activations overflow float32 on this text)"};
}

Json classify_answer(const ClassifyJob& job, const std::vector<float>& logits, const std::vector<std::string>& labels,
                     ProblemType problem, const std::string& model, double ms) {
  const int k = static_cast<int>(labels.size());
  Json all = Json::array();
  for (size_t i = 0; i < job.texts.size(); ++i) {
    const float* row = logits.data() + i * k;
    if (job.hf_shape) {
      all.push_back(label_scores(row, labels, job.parameters, problem));
    } else {
      all.push_back(infer::prediction_record(row, labels, problem));
    }
  }
  if (job.hf_shape) return all;
  return {{"predictions", std::move(all)}, {"model", model}, {"elapsed_ms", ms}};
}

Json error_json(const std::string& kind, const std::string& message) {
  return {{"error", {{"kind", kind}, {"message", message}}}};
}

void answer_json(http::Response& res, int status, const Json& j) {
  res.status = status;
  res.content_type = "application/json";
  res.body = j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

}  // namespace bertune::serve
