#include "serve/server.h"

#include <signal.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <exception>
#include <mutex>
#include <thread>

#include <nlohmann/json.hpp>

#include "infer/classifier.h"
#include "infer/entities.h"
#include "kernels/ops.h"
#include "serve/batcher.h"
#include "serve/http.h"
#include "serve/metrics.h"
#include "serve/routes.h"
#include "util/error.h"

namespace bertune::serve {
namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

class Service {
 public:
  explicit Service(const ServeOptions& o) : options_(o) {}

  // The answer to one request (any path, any method): what the transport calls.
  http::Response route(const http::Request& req);
  // The answer to a request the transport refused (malformed, over a limit, too slow).
  http::Response refusal(const http::Refusal& refused, const std::string& path);
  void connections(size_t open) { metrics_.set_connections(open); }
  // Loads the model and starts the batching worker; /health turns 200.
  void load();
  void begin_shutdown() { shutting_down_ = true; }
  bool int8() const { return classifier_ && classifier_->int8_weights(); }
  void stop_batcher() {
    if (batcher_) batcher_->stop();
  }

 private:
  void handle(const http::Request& req, http::Response& res, bool hf_shape);
  void handle_entities(const http::Request& req, http::Response& res, bool hf_shape, Clock::time_point t0);
  void refuse(http::Response& res, const ClientError& e) {
    metrics_.error(e.kind);
    answer_json(res, e.status, error_json(e.kind, e.message));
  }

  ServeOptions options_;
  Metrics metrics_;
  std::unique_ptr<infer::Classifier> classifier_;
  std::unique_ptr<Batcher> batcher_;
  std::mutex entities_mutex_;  // a token classifier runs one request at a time
  std::atomic<bool> ready_{false}, shutting_down_{false};
};

void Service::load() {
  kernels::set_precision(kernels::Device::CPU, options_.precision);
  infer::ClassifierOptions co;
  co.tokenizer = options_.tokenizer;
  co.max_length = options_.max_length;
  co.max_length_given = options_.max_length_given;
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

void Service::handle(const http::Request& req, http::Response& res, bool hf_shape) {
  const auto t0 = Clock::now();
  try {
    if (shutting_down_) throw ClientError{503, "shutting_down", "the server is shutting down"};
    if (!ready_) throw ClientError{503, "not_ready", "the model is still loading; retry when GET /health is 200"};
    if (classifier_->model().task() == model::Task::TokenClassification) {
      handle_entities(req, res, hf_shape, t0);
    } else {
      Batcher::Arrival arrival(*batcher_);  // a batch being formed now waits for this request
      const ClassifyJob job = classify_job(req.body, hf_shape, options_.max_texts);
      // Before the batcher: a pair the model cannot encode must not fail the requests batched with it.
      if (!job.text_pairs.empty())
        if (std::string problem = classifier_->pair_problem(options_.model); !problem.empty())
          throw ClientError{400, "bad_request", std::move(problem)};
      auto logits = arrival.classify(classifier_->tokenize(job.texts, job.text_pairs));
      require_finite(logits, job.texts.size(), classifier_->num_labels(), hf_shape);
      const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
      answer_json(res, 200, classify_answer(job, logits, classifier_->label_names(), classifier_->problem_type(), options_.model, ms));
    }
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

// A token classifier: each text's entity spans (infer/entities.h), one request at a time on
// the model. The HF shape answers a list of spans for an "inputs" string, a list of such
// lists for a list of strings; /v1/classify {"predictions": [spans of each text], ...}.
void Service::handle_entities(const http::Request& req, http::Response& res, bool hf_shape, Clock::time_point t0) {
  const ClassifyJob job = classify_job(req.body, hf_shape, options_.max_texts, /*token_classifier=*/true);
  if (!job.text_pairs.empty()) throw ClientError{400, "bad_request", "a token classifier takes single texts, not pairs"};
  std::vector<std::vector<infer::EntitySpan>> spans;
  {
    std::lock_guard<std::mutex> lock(entities_mutex_);
    spans = infer::predict_entities(classifier_->model(), classifier_->tokenizer(), job.texts,
                                    classifier_->max_length(), options_.max_batch, job.entities);
  }
  Json all = Json::array();
  for (const auto& s : spans) all.push_back(infer::spans_json(s, job.entities.aggregation));
  const double ms = std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
  if (!hf_shape) return answer_json(res, 200, {{"predictions", std::move(all)}, {"model", options_.model}, {"elapsed_ms", ms}});
  answer_json(res, 200, job.single_input ? all.at(0) : all);
}

http::Response Service::route(const http::Request& req) {
  http::Response res;
  const Route r = route_request(req);
  if (r.endpoint == Endpoint::Classify || r.endpoint == Endpoint::Hf) {
    handle(req, res, r.endpoint == Endpoint::Hf);
  } else if (r.endpoint == Endpoint::Health) {
    const char* status = shutting_down_ ? "shutting_down" : ready_ ? "ok" : "loading";
    answer_json(res, ready_ && !shutting_down_ ? 200 : 503, {{"status", status}, {"model", options_.model}});
    metrics_.request("/health", res.status);
  } else if (r.endpoint == Endpoint::Metrics) {
    metrics_.request("/metrics", 200);
    res.content_type = "text/plain; version=0.0.4";
    res.body = metrics_.render();
  } else {
    refuse(res, r.error);
    res.headers.insert(res.headers.end(), r.headers.begin(), r.headers.end());
    metrics_.request(r.metrics_path, r.error.status);
  }
  return res;
}

http::Response Service::refusal(const http::Refusal& refused, const std::string& path) {
  http::Response res;
  refuse(res, {refused.status, refused.kind, refused.message});
  res.close = true;
  metrics_.request(known_path(path) ? path : "other", refused.status);
  return res;
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
  if (o.max_connections < 1) throw Error("--max-connections: must be at least 1");
  for (auto [flag, seconds] : {std::pair{"--header-timeout", o.header_timeout_s}, {"--body-timeout", o.body_timeout_s},
                               {"--idle-timeout", o.idle_timeout_s}, {"--write-timeout", o.write_timeout_s}})
    if (!(seconds >= 0.05 && seconds <= 86400))
      throw Error(std::string(flag) + ": must be 0.05 to 86400 seconds (got " + std::to_string(seconds) + ")");
  if (!std::filesystem::is_directory(o.model)) throw Error("--model: " + o.model + " is not a directory");
}

http::ServerOptions transport_options(const ServeOptions& o) {
  auto ms = [](double s) { return std::chrono::milliseconds(static_cast<int64_t>(s * 1000)); };
  http::ServerOptions t;
  t.host = o.host;
  t.port = o.port;
  t.limits.max_body_bytes = o.max_body_bytes;
  t.max_connections = o.max_connections;
  t.handler_threads = o.http_threads;
  t.header_timeout = ms(o.header_timeout_s);
  t.body_timeout = ms(o.body_timeout_s);
  t.idle_timeout = ms(o.idle_timeout_s);
  t.write_timeout = ms(o.write_timeout_s);
  return t;
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

  Service service(options);
  http::Server server(transport_options(options),
                      {[&](const http::Request& r) { return service.route(r); },
                       [&](const http::Refusal& r, const std::string& path) { return service.refusal(r, path); },
                       [&](size_t open) { service.connections(open); }});
  std::atomic<bool> listener_done{false};
  std::exception_ptr listener_error;
  std::thread listener([&] {
    try {
      server.run();
    } catch (...) {
      listener_error = std::current_exception();
    }
    listener_done = true;
  });
  std::fprintf(stderr, "bertune serve: listening on http://%s:%d (loading %s)\n", options.host.c_str(), server.port(),
               options.model.c_str());
  try {
    service.load();
  } catch (...) {
    server.stop();
    listener.join();
    throw;
  }
  std::fprintf(stderr, "bertune serve: ready%s%s\n",
               service.int8() ? (std::string(" (int8 encoder linears, ") + kernels::int8_kernel_name() + ")").c_str()
                              : "",
               options.precision == kernels::Precision::FP32
                   ? ""
                   : (std::string(" (") + kernels::precision_name(options.precision) + " GEMMs)").c_str());
  wait_for_signal(signals, listener_done);
  service.begin_shutdown();
  server.stop();  // stop accepting, drop idle and half-sent requests, answer those in the handler
  listener.join();
  service.stop_batcher();
  if (listener_error) std::rethrow_exception(listener_error);
  std::fprintf(stderr, "bertune serve: stopped\n");
  return 0;
}

}  // namespace bertune::serve
