#pragma once
// Refusing absurd sizes before allocating: a request for more memory than the
// machine has is the user's mistake (a 1e12 vocabulary, a 10^9-row batch), so
// it is an Error naming the number and the limit, never std::bad_alloc.
#include <cstdint>
#include <string>

namespace bertune::util {

uint64_t physical_memory_bytes();  // 0 when unknown

// Throws Error "<what>: N x B bytes = X MiB, more than this machine's memory
// (Y MiB)" when count * bytes_each overflows or exceeds physical memory.
// what names the source, e.g. "--per-device-eval-batch-size 1000000000".
void require_fits_memory(uint64_t count, uint64_t bytes_each, const std::string& what);

}  // namespace bertune::util
