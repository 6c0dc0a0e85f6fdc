#pragma once
// SIGINT / SIGTERM / SIGHUP handling: temporary outputs are removed on the way out and
// the process exits 130 (SIGINT), 143 (SIGTERM) or 129 (SIGHUP: the terminal closed).
//
// install_signal_handlers() (main(), before any thread starts) blocks both
// signals in every thread and starts one watcher thread that sigwait()s for
// them, so the reaction runs in normal context (it may allocate and remove
// directories), not in an async signal handler:
//  - while a StopAtSafePoint scope is alive (a training loop that can stop
//    cleanly), the first signal only sets a flag; the loop calls
//    throw_if_stop_requested() between steps, which throws Interrupted, and
//    RAII (TempPathGuard) cleans up during unwinding. A second signal ends
//    the process at once as below.
//  - otherwise every path held by a live TempPathGuard is removed
//    (recursively), "interrupted: removed ..." goes to stderr, and the
//    process _exit()s with 128 + signal.
#include <filesystem>

namespace bertune::util {

void install_signal_handlers();

// Blocks SIGINT, SIGTERM and SIGHUP in the calling thread (install_signal_handlers does too).
// The mask and any pending signal survive execve, so main() calls it before re-executing
// itself: a signal sent while the new image loads (seconds on a busy machine) waits for the
// watcher instead of killing the process untidily, or, when the shell started it with SIGINT
// ignored (a background job), being discarded.
void block_stop_signals();

// A temporary file or directory (e.g. checkpoint-N.tmp-PID) that must not
// outlive the process: removed by the destructor unless release() ran (after
// the rename that publishes it), and by the watcher when a signal ends the
// process. Registering is cheap (a mutex and a list).
class TempPathGuard {
 public:
  explicit TempPathGuard(std::filesystem::path path);
  ~TempPathGuard();  // removes the path (recursively) unless released
  TempPathGuard(const TempPathGuard&) = delete;
  TempPathGuard& operator=(const TempPathGuard&) = delete;
  void release();  // the path was published (renamed away): keep whatever is there
  const std::filesystem::path& path() const { return path_; }

 private:
  std::filesystem::path path_;
  bool released_ = false;
};

// While alive, the first SIGINT/SIGTERM is left to the code that polls
// throw_if_stop_requested(). Nestable.
class StopAtSafePoint {
 public:
  StopAtSafePoint();
  ~StopAtSafePoint();
  StopAtSafePoint(const StopAtSafePoint&) = delete;
  StopAtSafePoint& operator=(const StopAtSafePoint&) = delete;
};

int stop_signal();                 // the pending signal number, 0 when none
void throw_if_stop_requested();    // throws Interrupted("interrupted by SIGINT ...", sig)

}  // namespace bertune::util
