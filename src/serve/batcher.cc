#include "serve/batcher.h"

#include <exception>
#include <future>

#include "kernels/cpu_runtime.h"
#include "util/error.h"

namespace bertune::serve {

using Clock = std::chrono::steady_clock;

struct Batcher::Request {
  std::vector<TokenIds> texts;
  std::vector<float> logits;
  size_t remaining = 0;  // guarded by the batcher's mutex
  Clock::time_point enqueued;
  std::exception_ptr error;
  std::promise<void> done;
};

Batcher::Batcher(RunFn run, int num_labels, BatcherOptions options, Metrics* metrics)
    : run_(std::move(run)), num_labels_(num_labels), options_(options), metrics_(metrics) {
  if (options_.max_batch < 1) throw Error("--max-batch: must be at least 1");
  if (options_.max_wait.count() < 0) throw Error("--max-wait-ms: must not be negative");
  worker_ = std::thread([this] { worker_loop(); });
}

Batcher::~Batcher() { stop(); }

void Batcher::announce() {
  std::lock_guard lock(mu_);
  arriving_++;
}

void Batcher::withdraw() {
  {
    std::lock_guard lock(mu_);
    arriving_--;
  }
  cv_.notify_all();
}

std::vector<float> Batcher::classify(std::vector<TokenIds> texts, bool announced) {
  auto request = std::make_shared<Request>();
  request->texts = std::move(texts);
  request->logits.resize(request->texts.size() * num_labels_);
  request->remaining = request->texts.size();
  request->enqueued = Clock::now();
  auto done = request->done.get_future();
  {
    std::lock_guard lock(mu_);
    if (announced) arriving_--;
    if (stopping_) throw Error("the server is shutting down");
    if (request->texts.empty()) return {};
    for (size_t i = 0; i < request->texts.size(); ++i) queue_.push_back({request, i});
    if (metrics_) metrics_->set_queue_depth(queue_.size());
  }
  cv_.notify_all();
  done.get();  // rethrows the forward's exception
  return std::move(request->logits);
}

void Batcher::stop() {
  {
    std::lock_guard lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
}

// Waits for the first text, then up to max_wait after it arrived for the batch to fill.
// Returns nothing only when stopping with an empty queue.
std::vector<Batcher::Item> Batcher::next_batch(std::unique_lock<std::mutex>& lock) {
  cv_.wait(lock, [&] { return stopping_ || !queue_.empty(); });
  if (queue_.empty()) return {};
  const auto deadline = queue_.front().request->enqueued + options_.max_wait;
  cv_.wait_until(lock, deadline, [&] {
    return stopping_ || queue_.size() >= static_cast<size_t>(options_.max_batch) ||
           (options_.wait_only_when_arriving && arriving_ <= 0);
  });
  const size_t n = std::min(queue_.size(), static_cast<size_t>(options_.max_batch));
  std::vector<Item> batch(queue_.begin(), queue_.begin() + n);
  queue_.erase(queue_.begin(), queue_.begin() + n);
  if (metrics_) metrics_->set_queue_depth(queue_.size());
  return batch;
}

void Batcher::worker_loop() {
  // OpenMP's thread count is per calling thread: set it here, where the forward runs.
  kernels::set_num_threads(options_.compute_threads);
  std::unique_lock lock(mu_);
  for (;;) {
    auto batch = next_batch(lock);
    if (batch.empty()) return;
    lock.unlock();
    run_batch(batch);
    lock.lock();
    for (const auto& item : batch) {
      if (!item.request->error && --item.request->remaining == 0) item.request->done.set_value();
    }
  }
}

void Batcher::run_batch(const std::vector<Item>& items) {
  std::vector<const TokenIds*> sequences;
  std::vector<double> waited;
  int64_t tokens = 0;
  const auto start = Clock::now();
  for (const auto& item : items) {
    sequences.push_back(&item.request->texts[item.index]);
    tokens += static_cast<int64_t>(sequences.back()->size());
    waited.push_back(std::chrono::duration<double>(start - item.request->enqueued).count());
  }
  try {
    std::vector<float> logits = run_(sequences);
    for (size_t i = 0; i < items.size(); ++i)
      std::copy_n(logits.data() + i * num_labels_, num_labels_,
                  items[i].request->logits.data() + items[i].index * num_labels_);
  } catch (...) {
    // Every request of the batch fails with the same error, answered once; its texts
    // still queued are then skipped by the worker loop's error check.
    auto error = std::current_exception();
    std::lock_guard lock(mu_);
    for (const auto& item : items) {
      if (!item.request->error) {
        item.request->error = error;
        item.request->done.set_exception(error);
      }
    }
  }
  const double seconds = std::chrono::duration<double>(Clock::now() - start).count();
  if (metrics_) metrics_->batch(static_cast<int>(items.size()), tokens, seconds, waited);
}

}  // namespace bertune::serve
