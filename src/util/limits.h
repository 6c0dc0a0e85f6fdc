#pragma once
// Refusing absurd sizes before allocating: a request for more memory than the
// machine has is the user's mistake (a 1e12 vocabulary, a 10^9-row batch), so
// it is an Error naming the number and the limit, never std::bad_alloc.
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

namespace bertune::util {

uint64_t physical_memory_bytes();  // 0 when unknown

// Throws Error "<what>: N x B bytes = X MiB, more than this machine's memory
// (Y MiB)" when count * bytes_each overflows or exceeds physical memory.
// what names the source, e.g. "--per-device-eval-batch-size 1000000000".
void require_fits_memory(uint64_t count, uint64_t bytes_each, const std::string& what);

// The memory this process may still take: the least of the kernel's MemAvailable
// (/proc/meminfo), the cgroup's limit less its usage (v2 memory.max / memory.current, v1
// memory.limit_in_bytes / memory.usage_in_bytes), and BERTUNE_MAX_MEMORY (the most the
// process may use in all: bytes, or a number with K, M, G, KiB, MiB or GiB) less what it
// holds already. `source` names the one that set it; bytes 0 with an empty source: unknown.
struct MemoryBudget {
  uint64_t bytes = 0;   // what may still be taken
  uint64_t in_use = 0;  // the process's resident memory when it was measured
  uint64_t limit = 0;   // the most the process may have in all: in_use + bytes, or the cap
  std::string source;
};
MemoryBudget available_memory();  // Error for a BERTUNE_MAX_MEMORY that is not a size
uint64_t resident_memory_bytes();  // VmRSS of this process; 0 when unknown
std::string format_bytes(uint64_t bytes);  // "512 MiB", "13.6 GiB"

// What a command is about to allocate, part by part: what it is, its bytes, and what makes
// it smaller ("lower --per-device-train-batch-size or --max-length").
struct MemoryNeed {
  struct Part {
    std::string what;
    uint64_t bytes = 0;
    std::string remedy;
  };
  std::vector<Part> parts;
  void add(std::string what, uint64_t bytes, std::string remedy) {
    parts.push_back({std::move(what), bytes, std::move(remedy)});
  }
  uint64_t total() const;  // saturates at UINT64_MAX
};

// Throws Error "<command>: needs about X of memory (<parts>, Y in use already), more than the Z
// it can have (<source>); to fit, <the largest part's remedy>" when need.total() exceeds
// available_memory(). Nothing is checked where the available memory is unknown.
void require_memory(const MemoryNeed& need, const std::string& command);

}  // namespace bertune::util
