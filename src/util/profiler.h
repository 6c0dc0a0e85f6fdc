#pragma once
// Wall-clock time per named phase, for `bench train --profile`. Off by
// default: a ProfileScope then costs one load and a branch.
#include <chrono>
#include <map>
#include <string>

namespace bertune {

class Profiler {
 public:
  static Profiler*& active() {
    static Profiler* current = nullptr;
    return current;
  }
  void add(const char* phase, double seconds) {
    auto& e = phases_[phase];
    e.seconds += seconds;
    e.calls += 1;
  }
  struct Entry {
    double seconds = 0;
    long calls = 0;
  };
  const std::map<std::string, Entry>& phases() const { return phases_; }
  void clear() { phases_.clear(); }

 private:
  std::map<std::string, Entry> phases_;
};

class ProfileScope {
 public:
  explicit ProfileScope(const char* phase) : phase_(phase), profiler_(Profiler::active()) {
    if (profiler_) start_ = std::chrono::steady_clock::now();
  }
  ~ProfileScope() {
    if (profiler_)
      profiler_->add(phase_, std::chrono::duration<double>(std::chrono::steady_clock::now() - start_).count());
  }
  ProfileScope(const ProfileScope&) = delete;
  ProfileScope& operator=(const ProfileScope&) = delete;

 private:
  const char* phase_;
  Profiler* profiler_;
  std::chrono::steady_clock::time_point start_;
};

}  // namespace bertune
