#include "util/signals.h"

#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "util/error.h"

namespace bertune::util {
namespace fs = std::filesystem;
namespace {

std::mutex g_mutex;
std::vector<const TempPathGuard*> g_guards;  // under g_mutex
std::atomic<int> g_safe_point_depth{0};
std::atomic<int> g_stop_signal{0};

const char* signal_name(int sig) {
  return sig == SIGINT ? "SIGINT" : sig == SIGTERM ? "SIGTERM" : sig == SIGHUP ? "SIGHUP" : "a signal";
}

// Runs on the watcher thread: removes every guarded path and ends the process.
[[noreturn]] void remove_temporaries_and_exit(int sig) {
  std::string removed;
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    for (const TempPathGuard* g : g_guards) {
      std::error_code ec;
      if (fs::remove_all(g->path(), ec) > 0 && !ec) removed += (removed.empty() ? "" : ", ") + g->path().string();
    }
  }
  std::string msg = std::string("bertune: interrupted by ") + signal_name(sig);
  msg += removed.empty() ? "\n" : "; removed unfinished " + removed + "\n";
  ssize_t ignored = ::write(STDERR_FILENO, msg.data(), msg.size());
  (void)ignored;
  std::fflush(stdout);
  ::_exit(128 + sig);
}

void watch_signals(sigset_t set) {
  for (;;) {
    int sig = 0;
    if (sigwait(&set, &sig) != 0) continue;
    if (g_safe_point_depth.load() > 0 && g_stop_signal.load() == 0) {
      g_stop_signal.store(sig);  // the loop stops at its next safe point
      const char* msg = "bertune: stopping at the next safe point (send the signal again to stop at once)\n";
      ssize_t ignored = ::write(STDERR_FILENO, msg, std::strlen(msg));
      (void)ignored;
      continue;
    }
    remove_temporaries_and_exit(sig);
  }
}

}  // namespace

static sigset_t stop_signals() {
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  // A closed terminal or a dropped SSH session: by default it killed the process mid-save
  // and left checkpoint-N.tmp-PID/ behind.
  sigaddset(&set, SIGHUP);
  return set;
}

void block_stop_signals() {
  const sigset_t set = stop_signals();
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
}

void install_signal_handlers() {
  static std::once_flag once;
  std::call_once(once, [] {
    // Blocked here, so every thread created later (OpenMP's pool included)
    // inherits the mask and only the watcher receives them.
    block_stop_signals();
    std::thread(watch_signals, stop_signals()).detach();
  });
}

TempPathGuard::TempPathGuard(fs::path path) : path_(std::move(path)) {
  std::lock_guard<std::mutex> lock(g_mutex);
  g_guards.push_back(this);
}

TempPathGuard::~TempPathGuard() {
  {
    std::lock_guard<std::mutex> lock(g_mutex);
    g_guards.erase(std::remove(g_guards.begin(), g_guards.end(), this), g_guards.end());
  }
  if (!released_) {
    std::error_code ec;
    fs::remove_all(path_, ec);
  }
}

void TempPathGuard::release() {
  std::lock_guard<std::mutex> lock(g_mutex);
  released_ = true;
  g_guards.erase(std::remove(g_guards.begin(), g_guards.end(), this), g_guards.end());
}

StopAtSafePoint::StopAtSafePoint() { g_safe_point_depth.fetch_add(1); }
StopAtSafePoint::~StopAtSafePoint() { g_safe_point_depth.fetch_sub(1); }

int stop_signal() { return g_stop_signal.load(); }

void throw_if_stop_requested() {
  int sig = g_stop_signal.load();
  if (sig == 0) return;
  throw Interrupted(std::string("interrupted by ") + signal_name(sig), sig);
}

}  // namespace bertune::util
