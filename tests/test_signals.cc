// Signals: SIGINT, SIGTERM and SIGHUP end a run with 128 + signal, and the temporary paths
// guarded by TempPathGuard (an unfinished checkpoint) are removed on the way out.
#include <gtest/gtest.h>

#include "test_support.h"

#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <thread>

#include "io/atomic_file.h"
#include "util/error.h"
#include "util/signals.h"

namespace fs = std::filesystem;
using namespace bertune;

// A temporary path guarded by TempPathGuard is removed when a signal ends the
// process, and the exit code is 128 + signal.
TEST(SignalsDeathTest, TemporaryPathsRemovedOnSignal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp("guard");
  const fs::path unfinished = tmp.path / "checkpoint-7.tmp-123";
  EXPECT_EXIT(
      {
        util::install_signal_handlers();
        fs::create_directories(unfinished);
        io::write_file_atomic(unfinished / "model.safetensors", "partial");
        util::TempPathGuard guard(unfinished);
        ::kill(::getpid(), SIGTERM);
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::exit(0);
      },
      ::testing::ExitedWithCode(143), "removed unfinished .*checkpoint-7.tmp-123");
  EXPECT_FALSE(fs::exists(unfinished));
}

// Inside StopAtSafePoint the first signal only asks the loop to stop; the
// loop's throw_if_stop_requested() unwinds, and the guards clean up.
TEST(SignalsDeathTest, SafePointStopUnwindsAndCleansUp) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp("safepoint");
  const fs::path unfinished = tmp.path / "checkpoint-9.tmp-1";
  EXPECT_EXIT(
      {
        util::install_signal_handlers();
        util::StopAtSafePoint scope;
        try {
          fs::create_directories(unfinished);
          util::TempPathGuard guard(unfinished);
          ::kill(::getpid(), SIGINT);
          for (int i = 0; i < 500 && util::stop_signal() == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          util::throw_if_stop_requested();
          std::exit(5);  // not reached when the flag was set
        } catch (const Interrupted& e) {
          std::fprintf(stderr, "caught %s; dir %s\n", e.what(), fs::exists(unfinished) ? "kept" : "removed");
          std::exit(e.exit_code());
        }
      },
      ::testing::ExitedWithCode(130), "caught interrupted by SIGINT; dir removed");
}

// Third pass: a closed terminal (SIGHUP) killed a training run mid-save and left
// checkpoint-N.tmp-PID/ behind; it is handled as SIGINT/SIGTERM are (exit 129).
TEST(SignalsDeathTest, HangupRemovesTemporaryPathsToo) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp("hangup");
  const fs::path unfinished = tmp.path / "checkpoint-3.tmp-77";
  EXPECT_EXIT(
      {
        util::install_signal_handlers();
        fs::create_directories(unfinished);
        util::TempPathGuard guard(unfinished);
        ::kill(::getpid(), SIGHUP);
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::exit(0);
      },
      ::testing::ExitedWithCode(129), "interrupted by SIGHUP; removed unfinished .*checkpoint-3.tmp-77");
  EXPECT_FALSE(fs::exists(unfinished));
}

TEST(SignalsGuard, ReleasedPathIsKept) {
  TempDir tmp("release");
  fs::path kept = tmp.path / "kept", dropped = tmp.path / "dropped";
  fs::create_directories(kept);
  fs::create_directories(dropped);
  {
    util::TempPathGuard a(kept), b(dropped);
    a.release();
  }
  EXPECT_TRUE(fs::exists(kept));
  EXPECT_FALSE(fs::exists(dropped));
}
