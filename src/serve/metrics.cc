#include "serve/metrics.h"

#include <cstdio>

namespace bertune::serve {
namespace {

constexpr double kTokensWindowSeconds = 10;

std::string number(double v) {
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.9g", v);
  return buf;
}

std::vector<double> time_buckets() {
  return {0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};
}

void header(std::string& out, const std::string& name, const std::string& type, const std::string& help) {
  out += "# HELP " + name + " " + help + "\n# TYPE " + name + " " + type + "\n";
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds) : bounds_(std::move(bounds)), counts_(bounds_.size() + 1, 0) {}

void Histogram::observe(double value) {
  size_t i = 0;
  while (i < bounds_.size() && value > bounds_[i]) ++i;
  counts_[i]++;
  sum_ += value;
  count_++;
}

void Histogram::write(std::string& out, const std::string& name, const std::string& help) const {
  header(out, name, "histogram", help);
  uint64_t cumulative = 0;
  for (size_t i = 0; i < bounds_.size(); ++i) {
    cumulative += counts_[i];
    out += name + "_bucket{le=\"" + number(bounds_[i]) + "\"} " + std::to_string(cumulative) + "\n";
  }
  out += name + "_bucket{le=\"+Inf\"} " + std::to_string(count_) + "\n";
  out += name + "_sum " + number(sum_) + "\n" + name + "_count " + std::to_string(count_) + "\n";
}

Metrics::Metrics()
    : batch_size_({1, 2, 4, 8, 16, 32, 64, 128, 256}),
      queue_seconds_(time_buckets()),
      latency_seconds_(time_buckets()),
      compute_seconds_(time_buckets()) {}

void Metrics::request(const std::string& endpoint, int status) {
  std::lock_guard lock(mu_);
  requests_[{endpoint, status}]++;
}

void Metrics::latency(double seconds) {
  std::lock_guard lock(mu_);
  latency_seconds_.observe(seconds);
}

void Metrics::error(const std::string& kind) {
  std::lock_guard lock(mu_);
  errors_[kind]++;
}

void Metrics::batch(int texts, int64_t tokens, double compute_seconds, const std::vector<double>& queue_seconds) {
  std::lock_guard lock(mu_);
  batch_size_.observe(texts);
  compute_seconds_.observe(compute_seconds);
  for (double q : queue_seconds) queue_seconds_.observe(q);
  texts_ += texts;
  tokens_ += tokens;
  busy_seconds_ += compute_seconds;
  auto now = Clock::now();
  recent_tokens_.emplace_back(now, tokens);
  while (!recent_tokens_.empty() &&
         std::chrono::duration<double>(now - recent_tokens_.front().first).count() > kTokensWindowSeconds)
    recent_tokens_.pop_front();
}

void Metrics::set_queue_depth(size_t texts) {
  std::lock_guard lock(mu_);
  queue_depth_ = texts;
}

void Metrics::set_ready(bool ready) {
  std::lock_guard lock(mu_);
  ready_ = ready;
}

void Metrics::set_connections(size_t open) {
  std::lock_guard lock(mu_);
  connections_ = open;
}

std::string Metrics::render() const {
  std::lock_guard lock(mu_);
  std::string out;
  header(out, "bertune_ready", "gauge", "1 once the model is loaded and requests are answered");
  out += "bertune_ready " + std::string(ready_ ? "1" : "0") + "\n";
  header(out, "bertune_requests_total", "counter", "HTTP requests answered, by endpoint and status code");
  for (const auto& [key, n] : requests_)
    out += "bertune_requests_total{endpoint=\"" + key.first + "\",code=\"" + std::to_string(key.second) + "\"} " +
           std::to_string(n) + "\n";
  header(out, "bertune_errors_total", "counter", "requests refused or failed, by kind");
  for (const auto& [kind, n] : errors_)
    out += "bertune_errors_total{kind=\"" + kind + "\"} " + std::to_string(n) + "\n";
  latency_seconds_.write(out, "bertune_request_latency_seconds", "classification requests: time from arrival to answer");
  queue_seconds_.write(out, "bertune_queue_seconds", "time a text waited for its batch to start");
  batch_size_.write(out, "bertune_batch_size", "texts per forward pass of the batching worker");
  compute_seconds_.write(out, "bertune_batch_compute_seconds", "seconds per forward pass");
  header(out, "bertune_texts_total", "counter", "texts classified");
  out += "bertune_texts_total " + std::to_string(texts_) + "\n";
  header(out, "bertune_tokens_total", "counter", "tokens run through the model (no padding is computed)");
  out += "bertune_tokens_total " + std::to_string(tokens_) + "\n";
  header(out, "bertune_busy_seconds_total", "counter", "seconds the worker spent in forward passes");
  out += "bertune_busy_seconds_total " + number(busy_seconds_) + "\n";
  int64_t recent = 0;
  auto now = Clock::now();
  for (const auto& [t, n] : recent_tokens_)
    if (std::chrono::duration<double>(now - t).count() <= kTokensWindowSeconds) recent += n;
  header(out, "bertune_tokens_per_second", "gauge", "tokens classified per second over the last 10 s");
  out += "bertune_tokens_per_second " + number(recent / kTokensWindowSeconds) + "\n";
  header(out, "bertune_queue_depth", "gauge", "texts waiting for the batching worker");
  out += "bertune_queue_depth " + std::to_string(queue_depth_) + "\n";
  header(out, "bertune_open_connections", "gauge", "client connections open (within --max-connections)");
  out += "bertune_open_connections " + std::to_string(connections_) + "\n";
  return out;
}

}  // namespace bertune::serve
