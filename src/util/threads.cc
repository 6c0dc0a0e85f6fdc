#include "util/threads.h"

#include <thread>

#include "util/error.h"

namespace bertune::util {

int hardware_threads() {
  unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : static_cast<int>(n);
}

int checked_thread_count(int requested) {
  if (requested <= 0) return hardware_threads();
  if (requested > kMaxThreads)
    throw Error("--threads " + std::to_string(requested) + ": at most " + std::to_string(kMaxThreads) +
                " threads are allowed (this machine has " + std::to_string(hardware_threads()) +
                " cores; 0 uses them all)");
  return requested;
}

}  // namespace bertune::util
