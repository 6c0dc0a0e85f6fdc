#include "serve/server.h"

#include <httplib.h>
#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <thread>

#include <nlohmann/json.hpp>

#include "infer/classifier.h"
#include "infer/metrics.h"
#include "kernels/ops.h"
#include "serve/batcher.h"
#include "serve/hf_api.h"
#include "serve/metrics.h"
#include "util/error.h"

namespace bertune::serve {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// A refused request: HTTP status, a stable kind (the metrics label) and a message.
struct ClientError {
  int status;
  std::string kind, message;
};

Json parse_body(const std::string& body) {
  if (body.empty()) throw ClientError{400, "bad_json", "empty body: expected a JSON object"};
  try {
    return Json::parse(body);
  } catch (const Json::parse_error& e) {
    // nlohmann validates UTF-8 inside strings while parsing.
    if (std::string(e.what()).find("UTF-8") != std::string::npos)
      throw ClientError{400, "invalid_utf8", std::string("body is not valid UTF-8: ") + e.what()};
    throw ClientError{400, "bad_json", std::string("body is not valid JSON: ") + e.what()};
  }
}

std::string type_name(const Json& j) { return j.type_name(); }

// A string, or a non-empty array of strings, as the texts to classify.
std::vector<std::string> texts_from(const Json& value, const std::string& field, int max_texts) {
  std::vector<std::string> texts;
  if (value.is_string()) {
    texts.push_back(value.get<std::string>());
  } else if (value.is_array()) {
    if (value.empty()) throw ClientError{400, "empty", "\"" + field + "\": empty list, nothing to classify"};
    if (value.size() > static_cast<size_t>(max_texts))
      throw ClientError{413, "too_many_texts",
                        "\"" + field + "\": " + std::to_string(value.size()) + " texts, the limit is " +
                            std::to_string(max_texts) + " per request (--max-texts)"};
    for (size_t i = 0; i < value.size(); ++i) {
      if (!value[i].is_string())
        throw ClientError{400, "bad_type",
                          "\"" + field + "\"[" + std::to_string(i) + "]: expected a string, got " + type_name(value[i])};
      texts.push_back(value[i].get<std::string>());
    }
  } else {
    throw ClientError{400, "bad_type",
                      "\"" + field + "\": expected a string or a list of strings, got " + type_name(value)};
  }
  return texts;
}

// /v1/classify: exactly one of "texts" (list) or "text" (string).
std::vector<std::string> classify_texts(const Json& body, int max_texts) {
  if (!body.is_object()) throw ClientError{400, "bad_type", "body: expected a JSON object, got " + type_name(body)};
  for (const auto& [key, value] : body.items())
    if (key != "texts" && key != "text")
      throw ClientError{400, "bad_field", "unknown field \"" + key + "\" (expected \"texts\" or \"text\")"};
  if (body.contains("texts") == body.contains("text"))
    throw ClientError{400, "bad_field", "give exactly one of \"texts\" (a list of strings) or \"text\" (a string)"};
  if (body.contains("text")) {
    if (!body["text"].is_string())
      throw ClientError{400, "bad_type", "\"text\": expected a string, got " + type_name(body["text"])};
    return {body["text"].get<std::string>()};
  }
  if (!body["texts"].is_array())
    throw ClientError{400, "bad_type", "\"texts\": expected a list of strings, got " + type_name(body["texts"])};
  return texts_from(body["texts"], "texts", max_texts);
}

// The Hugging Face Inference API body: "inputs", "parameters" (the text-classification ones:
// hf_api.h) and "options" (accepted, unused: the model is always loaded, nothing is cached).
std::vector<std::string> hf_texts(const Json& body, int max_texts, TextClassificationParameters* parameters) {
  if (!body.is_object()) throw ClientError{400, "bad_type", "body: expected a JSON object, got " + type_name(body)};
  for (const auto& [key, value] : body.items())
    if (key != "inputs" && key != "parameters" && key != "options")
      throw ClientError{400, "bad_field", "unknown field \"" + key + "\" (expected \"inputs\")"};
  if (!body.contains("inputs")) throw ClientError{400, "bad_field", "missing field \"inputs\""};
  try {
    *parameters = parse_parameters(body.value("parameters", Json()));
  } catch (const ParameterError& e) {
    throw ClientError{400, "bad_parameter", e.what()};
  }
  return texts_from(body["inputs"], "inputs", max_texts);
}

void answer_json(httplib::Response& res, int status, const Json& j) {
  res.status = status;
  res.set_content(j.dump(-1, ' ', false, Json::error_handler_t::replace), "application/json");
}

Json error_json(const std::string& kind, const std::string& message) {
  return {{"error", {{"kind", kind}, {"message", message}}}};
}

class Service {
 public:
  explicit Service(const ServeOptions& o) : options_(o) {}

  void install(httplib::Server& svr);
  // Loads the model and starts the batching worker; /health turns 200.
  void load();
  void begin_shutdown() { shutting_down_ = true; }
  bool int8() const { return classifier_ && classifier_->int8_weights(); }
  void stop_batcher() {
    if (batcher_) batcher_->stop();
  }

 private:
  void handle(const httplib::Request& req, httplib::Response& res, bool hf_shape);
  Json classify_answer(const std::vector<std::string>& texts, const std::vector<float>& logits, double ms) const;
  Json hf_answer(const std::vector<float>& logits, size_t n, const TextClassificationParameters& p) const;
  void require_finite(const std::vector<float>& logits, size_t n, bool hf_shape) const;
  void refuse(httplib::Response& res, const ClientError& e) {
    metrics_.error(e.kind);
    answer_json(res, e.status, error_json(e.kind, e.message));
  }

  ServeOptions options_;
  Metrics metrics_;
  std::unique_ptr<infer::Classifier> classifier_;
  std::unique_ptr<Batcher> batcher_;
  std::atomic<bool> ready_{false}, shutting_down_{false};
};

void Service::load() {
  infer::ClassifierOptions co;
  co.tokenizer = options_.tokenizer;
  co.max_length = options_.max_length;
  co.int8 = options_.int8;
  // As predict: a model without a trained head would answer from a random one.
  co.untrained_head = options_.allow_untrained_head ? infer::UntrainedHead::Warn : infer::UntrainedHead::Refuse;
  classifier_ = infer::Classifier::load(options_.model, co);
  if (!options_.label_names.empty()) classifier_->set_label_names(options_.label_names);
  BatcherOptions bo;
  bo.max_batch = options_.max_batch;
  bo.max_wait = std::chrono::microseconds(static_cast<int64_t>(options_.max_wait_ms * 1000));
  bo.compute_threads = options_.threads;
  bo.wait_only_when_arriving = options_.batch_wait == "arriving";
  infer::Classifier* c = classifier_.get();
  batcher_ = std::make_unique<Batcher>([c](const auto& seqs) { return c->logits(seqs); }, c->num_labels(), bo,
                                       &metrics_);
  ready_ = true;
  metrics_.set_ready(true);
}

Json Service::classify_answer(const std::vector<std::string>& texts, const std::vector<float>& logits,
                              double ms) const {
  const int k = classifier_->num_labels();
  Json predictions = Json::array();
  for (size_t i = 0; i < texts.size(); ++i) {
    const float* row = logits.data() + i * k;
    const int label = infer::argmax(row, k);
    predictions.push_back({{"label", label},
                           {"label_name", classifier_->label_names()[label]},
                           {"probs", infer::softmax(row, k)},
                           {"logits", std::vector<float>(row, row + k)}});
  }
  return {{"predictions", std::move(predictions)}, {"model", options_.model}, {"elapsed_ms", ms}};
}

Json Service::hf_answer(const std::vector<float>& logits, size_t n, const TextClassificationParameters& p) const {
  const size_t k = static_cast<size_t>(classifier_->num_labels());
  Json all = Json::array();
  for (size_t i = 0; i < n; ++i) all.push_back(label_scores(logits.data() + i * k, classifier_->label_names(), p));
  return all;
}

// Finite weights can still overflow on some text: its scores would go out as null. A 500
// naming the text instead (the model is at fault, not the request).
void Service::require_finite(const std::vector<float>& logits, size_t n, bool hf_shape) const {
  const int64_t row = infer::first_non_finite_row(logits.data(), n, classifier_->num_labels());
  if (row < 0) return;
  throw ClientError{500, "non_finite",
                    "\"" + std::string(hf_shape ? "inputs" : "texts") + "\"[" + std::to_string(row) +
                        "]: the model's logits are not finite (its activations overflow float32 on this text)"};
}

void Service::handle(const httplib::Request& req, httplib::Response& res, bool hf_shape) {
  const auto t0 = Clock::now();
  try {
    if (shutting_down_) throw ClientError{503, "shutting_down", "the server is shutting down"};
    if (!ready_) throw ClientError{503, "not_ready", "the model is still loading; retry when GET /health is 200"};
    Batcher::Arrival arrival(*batcher_);  // a batch being formed now waits for this request
    Json body = parse_body(req.body);
    TextClassificationParameters parameters;
    auto texts =
        hf_shape ? hf_texts(body, options_.max_texts, &parameters) : classify_texts(body, options_.max_texts);
    auto logits = arrival.classify(classifier_->tokenize(texts));
    require_finite(logits, texts.size(), hf_shape);
    const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
    answer_json(res, 200,
                hf_shape ? hf_answer(logits, texts.size(), parameters) : classify_answer(texts, logits, ms));
  } catch (const ClientError& e) {
    refuse(res, e);
    if (e.status >= 500)
      std::fprintf(stderr, "bertune serve: %s %s: %s\n", req.method.c_str(), req.path.c_str(), e.message.c_str());
  } catch (const std::exception& e) {
    metrics_.error("internal");
    answer_json(res, 500, error_json("internal", e.what()));
    std::fprintf(stderr, "bertune serve: %s %s: internal error: %s\n", req.method.c_str(), req.path.c_str(), e.what());
  }
  metrics_.latency(std::chrono::duration<double>(Clock::now() - t0).count());
  metrics_.request(req.path, res.status);
}

void Service::install(httplib::Server& svr) {
  svr.Post("/v1/classify", [this](const auto& req, auto& res) { handle(req, res, false); });
  svr.Post("/", [this](const auto& req, auto& res) { handle(req, res, true); });
  svr.Get("/health", [this](const auto&, auto& res) {
    const char* status = shutting_down_ ? "shutting_down" : ready_ ? "ok" : "loading";
    answer_json(res, ready_ && !shutting_down_ ? 200 : 503, {{"status", status}, {"model", options_.model}});
    metrics_.request("/health", res.status);
  });
  svr.Get("/metrics", [this](const auto&, auto& res) {
    metrics_.request("/metrics", 200);
    res.set_content(metrics_.render(), "text/plain; version=0.0.4");
  });
  for (const char* path : {"/v1/classify", "/"})
    svr.Get(path, [this, path](const auto&, auto& res) {
      refuse(res, {405, "method_not_allowed", std::string("use POST for ") + path});
      metrics_.request(path, 405);
    });
  // Errors httplib answers itself (413 for a body over the limit, 404, 400 for a
  // broken request) get the same JSON shape; ours already have a body. Requests are
  // counted here and in the handlers, before the answer is written (a logger would
  // run after it, racing the client's next request).
  const size_t limit = options_.max_body_bytes;
  svr.set_error_handler(httplib::Server::HandlerWithResponse(
      [this, limit](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    ClientError e{res.status, "bad_request", "malformed HTTP request"};
    if (res.status == 413)
      e = {413, "payload_too_large",
           "request body exceeds the limit of " + std::to_string(limit) + " bytes (--max-body-bytes)"};
    else if (res.status == 404)
      e = {404, "not_found", "no endpoint " + req.path + " (POST /v1/classify, POST /, GET /health, GET /metrics)"};
    refuse(res, e);
    const bool known = req.path == "/v1/classify" || req.path == "/" || req.path == "/health" || req.path == "/metrics";
    metrics_.request(known ? req.path : "other", res.status);  // unknown paths share one series
    return httplib::Server::HandlerResponse::Handled;
  }));
}

void validate(const ServeOptions& o) {
  if (o.port < 0 || o.port > 65535) throw Error("--port: must be 0..65535");
  if (o.max_batch < 1) throw Error("--max-batch: must be at least 1");
  if (o.max_wait_ms < 0) throw Error("--max-wait-ms: must not be negative");
  if (o.max_texts < 1) throw Error("--max-texts: must be at least 1");
  if (o.batch_wait != "arriving" && o.batch_wait != "always")
    throw Error("--batch-wait: expected arriving or always, got " + o.batch_wait);
  if (o.max_body_bytes < 16) throw Error("--max-body-bytes: must be at least 16");
  if (o.http_threads < 1) throw Error("--http-threads: must be at least 1");
  if (o.read_timeout_s < 1) throw Error("--read-timeout: must be at least 1 second");
  if (!std::filesystem::is_directory(o.model)) throw Error("--model: " + o.model + " is not a directory");
}

// Blocks until SIGTERM/SIGINT (blocked in every thread, so only this waits for them)
// or until the listener stops by itself.
void wait_for_signal(const sigset_t& signals, const std::atomic<bool>& listener_done) {
  timespec tick{0, 100 * 1000 * 1000};
  while (!listener_done) {
    int sig = sigtimedwait(&signals, nullptr, &tick);
    if (sig == SIGTERM || sig == SIGINT) {
      std::fprintf(stderr, "bertune serve: %s: finishing requests in flight, then exiting\n",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT");
      return;
    }
  }
}

}  // namespace

int run_server(const ServeOptions& options) {
  validate(options);
  // Block the signals before any thread exists: every thread inherits the mask, and
  // wait_for_signal() takes them synchronously.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill us

  httplib::Server svr;
  Service service(options);
  service.install(svr);
  const int http_threads = options.http_threads;
  svr.new_task_queue = [http_threads] { return new httplib::ThreadPool(http_threads); };
  svr.set_payload_max_length(options.max_body_bytes);
  svr.set_read_timeout(options.read_timeout_s, 0);
  svr.set_write_timeout(options.read_timeout_s, 0);
  svr.set_keep_alive_max_count(1000000);
  svr.set_tcp_nodelay(true);

  int port = options.port;
  if (port == 0) port = svr.bind_to_any_port(options.host);
  else if (!svr.bind_to_port(options.host, port)) port = -1;
  if (port < 0) throw Error("cannot listen on " + options.host + ":" + std::to_string(options.port));
  std::atomic<bool> listener_done{false};
  std::thread listener([&] {
    svr.listen_after_bind();
    listener_done = true;
  });
  // stop() is a no-op before listening has begun: wait for it.
  while (!svr.is_running() && !listener_done) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::fprintf(stderr, "bertune serve: listening on http://%s:%d (loading %s)\n", options.host.c_str(), port,
               options.model.c_str());
  try {
    service.load();
  } catch (...) {
    svr.stop();
    listener.join();
    throw;
  }
  std::fprintf(stderr, "bertune serve: ready%s\n",
               service.int8() ? (std::string(" (int8 encoder linears, ") + kernels::int8_kernel_name() + ")").c_str()
                              : "");
  wait_for_signal(signals, listener_done);
  service.begin_shutdown();
  svr.stop();        // stop accepting; returns once every connection's request is answered
  listener.join();
  service.stop_batcher();
  std::fprintf(stderr, "bertune serve: stopped\n");
  return 0;
}

}  // namespace bertune::serve
