#pragma once
// Dynamic batching: callers on any thread submit tokenized texts and block; ONE worker
// thread (the only user of the model) takes up to max_batch queued texts — waiting at
// most max_wait after the oldest arrived for more to come — runs them as one packed
// batch and hands each caller its own rows. A request with more texts than max_batch
// is simply spread over several batches.
//
// Waiting for a fuller batch only pays when more texts are on their way. With
// wait_only_when_arriving (the default) the worker waits only while some request has
// announced itself (arrived, still being parsed / tokenized) and has not been queued
// yet; a lone client is then never delayed by the batch window.
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "infer/classifier.h"
#include "serve/metrics.h"

namespace bertune::serve {

using TokenIds = infer::TokenIds;  // one text's (or pair's) ids and token types

struct BatcherOptions {
  int max_batch = 64;                          // texts per forward pass
  std::chrono::microseconds max_wait{5000};    // after the oldest queued text arrived
  int compute_threads = 0;                     // OpenMP threads of the worker (0: all cores)
  bool wait_only_when_arriving = true;         // false: always wait out max_wait (or a full batch)
};

class Batcher {
 public:
  // `logits` runs one packed batch and returns [n, num_labels] (infer::Classifier::logits).
  using RunFn = std::function<std::vector<float>(const std::vector<const TokenIds*>&)>;
  Batcher(RunFn run, int num_labels, BatcherOptions options, Metrics* metrics);
  ~Batcher();  // stop()

  // Blocks until every text is classified; returns logits [texts.size(), num_labels].
  // Throws Error when the batcher is stopping, or what the forward threw.
  std::vector<float> classify(std::vector<TokenIds> texts, bool announced = false);

  // A request has arrived and will call classify() (or withdraw()) soon: a batch being
  // formed waits for it (up to max_wait). classify() consumes one announcement, if any.
  void announce();
  void withdraw();
  // RAII: announce now, withdraw on scope exit unless classify() consumed it.
  class Arrival {
   public:
    explicit Arrival(Batcher& b) : b_(b) { b_.announce(); }
    ~Arrival() {
      if (!consumed_) b_.withdraw();
    }
    std::vector<float> classify(std::vector<TokenIds> texts) {
      consumed_ = true;
      return b_.classify(std::move(texts), /*announced=*/true);
    }

   private:
    Batcher& b_;
    bool consumed_ = false;
  };

  // Finishes everything already queued, then joins the worker; later submits throw.
  void stop();

 private:
  struct Request;
  struct Item {
    std::shared_ptr<Request> request;
    size_t index;
  };
  void worker_loop();
  std::vector<Item> next_batch(std::unique_lock<std::mutex>& lock);
  void run_batch(const std::vector<Item>& items);

  RunFn run_;
  int num_labels_;
  BatcherOptions options_;
  Metrics* metrics_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<Item> queue_;
  bool stopping_ = false;
  int arriving_ = 0;  // announced, not yet queued
  std::thread worker_;
};

}  // namespace bertune::serve
