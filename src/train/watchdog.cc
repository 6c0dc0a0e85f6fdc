#include "train/watchdog.h"

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <exception>

namespace bertune::train {

Watchdog::Watchdog(double timeout_s, std::function<WatchdogProbe()> probe,
                   std::function<void(const std::string&)> fire, double poll_s)
    : timeout_s_(timeout_s),
      poll_s_(poll_s > 0 ? poll_s : std::min(1.0, timeout_s / 10)),
      probe_(std::move(probe)),
      fire_(std::move(fire)),
      thread_([this] { run(); }) {}

Watchdog::~Watchdog() {
  {
    std::lock_guard<std::mutex> lock(mutex_);
    stop_ = true;
  }
  wake_.notify_all();
  thread_.join();
}

void Watchdog::run() {
  using Clock = std::chrono::steady_clock;
  const auto poll = std::chrono::duration<double>(poll_s_);
  bool stalled = false;  // busy, with `last` finished since `since`
  uint64_t last = 0;
  Clock::time_point since;
  std::unique_lock<std::mutex> lock(mutex_);
  while (!wake_.wait_for(lock, poll, [this] { return stop_; })) {
    WatchdogProbe p;
    try {
      p = probe_();
    } catch (const std::exception& e) {
      p.error = e.what();
    }
    if (!p.error.empty()) {
      fire_(p.error);
      return;
    }
    const Clock::time_point now = Clock::now();
    if (!p.busy) {
      stalled = false;
    } else if (!stalled || p.progress != last) {
      stalled = true;
      last = p.progress;
      since = now;
    } else if (std::chrono::duration<double>(now - since).count() >= timeout_s_) {
      char seconds[32];
      std::snprintf(seconds, sizeof seconds, "%g", timeout_s_);
      fire_((p.stalled.empty() ? std::string("no GPU collective has finished") : p.stalled) + " for " + seconds +
            " s (--ddp-timeout): a rank has stopped or hangs");
      return;
    }
  }
}

}  // namespace bertune::train
