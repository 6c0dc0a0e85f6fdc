#include "util/limits.h"

#include <unistd.h>

#include "util/error.h"

namespace bertune::util {

uint64_t physical_memory_bytes() {
  long pages = ::sysconf(_SC_PHYS_PAGES), page = ::sysconf(_SC_PAGESIZE);
  return pages > 0 && page > 0 ? static_cast<uint64_t>(pages) * static_cast<uint64_t>(page) : 0;
}

void require_fits_memory(uint64_t count, uint64_t bytes_each, const std::string& what) {
  const uint64_t memory = physical_memory_bytes();
  uint64_t bytes = 0;
  const bool overflow = __builtin_mul_overflow(count, bytes_each, &bytes);
  if (!overflow && (memory == 0 || bytes <= memory)) return;
  throw Error(what + ": " + std::to_string(count) + " x " + std::to_string(bytes_each) + " bytes = " +
              (overflow ? std::string("more than 2^64 bytes") : std::to_string(bytes >> 20) + " MiB") +
              ", more than this machine's memory (" + std::to_string(memory >> 20) + " MiB)");
}

}  // namespace bertune::util
