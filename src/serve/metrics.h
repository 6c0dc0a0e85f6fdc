#pragma once
// What GET /metrics reports, in the Prometheus text exposition format (0.0.4).
// Everything is guarded by one mutex: a few updates per request are nothing next
// to a BERT forward.
#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <vector>

namespace bertune::serve {

// A cumulative histogram with fixed upper bounds (+Inf implied).
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);
  void observe(double value);
  // name_bucket{le=".."} ..., name_sum, name_count
  void write(std::string& out, const std::string& name, const std::string& help) const;

 private:
  std::vector<double> bounds_;
  std::vector<uint64_t> counts_;  // per bucket, non-cumulative; last = +Inf
  double sum_ = 0;
  uint64_t count_ = 0;
};

class Metrics {
 public:
  Metrics();
  // One answered HTTP request (any endpoint, including those the transport refuses itself).
  void request(const std::string& endpoint, int status);
  // Seconds from a classification request's arrival to its answer.
  void latency(double seconds);
  // One client error or failure, by kind (bad_json, payload_too_large, ...).
  void error(const std::string& kind);
  // One forward pass of the batching worker: texts, tokens, seconds spent computing, and
  // how long each text of it had waited in the queue.
  void batch(int texts, int64_t tokens, double compute_seconds, const std::vector<double>& queue_seconds);
  void set_queue_depth(size_t texts);
  void set_ready(bool ready);
  void set_connections(size_t open);
  std::string render() const;

 private:
  using Clock = std::chrono::steady_clock;
  mutable std::mutex mu_;
  std::map<std::pair<std::string, int>, uint64_t> requests_;
  std::map<std::string, uint64_t> errors_;
  Histogram batch_size_, queue_seconds_, latency_seconds_, compute_seconds_;
  uint64_t texts_ = 0, tokens_ = 0;
  double busy_seconds_ = 0;
  size_t queue_depth_ = 0, connections_ = 0;
  bool ready_ = false;
  std::deque<std::pair<Clock::time_point, int64_t>> recent_tokens_;  // the last 10 s of batches
};

}  // namespace bertune::serve
