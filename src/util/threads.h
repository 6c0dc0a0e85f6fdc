#pragma once
// The one place a thread count from the user is checked. OpenMP (libgomp)
// dies with SIGSEGV when asked for ~100,000 threads (each needs a stack), so
// counts above kMaxThreads are refused with a message, before any pool grows.
#include <string>

namespace bertune::util {

inline constexpr int kMaxThreads = 256;

// requested <= 0: every core; 1..kMaxThreads: as asked (more than the cores
// is allowed, only slower); above: Error "--threads N: at most 256 ...".
int checked_thread_count(int requested);
int hardware_threads();  // the cores this process may run on (>= 1)

}  // namespace bertune::util
