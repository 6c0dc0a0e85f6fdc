#include "util/limits.h"

#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <sstream>

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

namespace {

constexpr uint64_t kNoLimit = std::numeric_limits<uint64_t>::max();

// "<key>: <n> kB" of a /proc file; 0 when absent.
uint64_t proc_kib(const char* file, const std::string& key) {
  std::ifstream in(file);
  for (std::string line; std::getline(in, line);)
    if (line.rfind(key + ":", 0) == 0) return std::strtoull(line.c_str() + key.size() + 1, nullptr, 10) * 1024;
  return 0;
}

// A cgroup file holding one number; kNoLimit for "max", a missing file, or v1's "no limit"
// (a huge number).
uint64_t cgroup_number(const char* file) {
  std::ifstream in(file);
  std::string s;
  if (!(in >> s) || s == "max") return kNoLimit;
  const uint64_t v = std::strtoull(s.c_str(), nullptr, 10);
  return v >= (uint64_t{1} << 60) ? kNoLimit : v;
}

// What the cgroup still allows; kNoLimit without a limit.
uint64_t cgroup_room() {
  for (auto [limit_file, usage_file] : {std::pair{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"},
                                        {"/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                         "/sys/fs/cgroup/memory/memory.usage_in_bytes"}}) {
    const uint64_t limit = cgroup_number(limit_file);
    if (limit == kNoLimit) continue;
    const uint64_t usage = cgroup_number(usage_file);
    return usage == kNoLimit || usage >= limit ? 0 : limit - usage;
  }
  return kNoLimit;
}

// BERTUNE_MAX_MEMORY: "8GiB", "512M", "1000000000".
uint64_t parse_size(const std::string& text) {
  size_t used = 0;
  double x = 0;
  try {
    x = std::stod(text, &used);
  } catch (const std::exception&) {
    used = 0;
  }
  std::string unit = text.substr(used);
  unit.erase(std::remove_if(unit.begin(), unit.end(), ::isspace), unit.end());
  for (auto& c : unit) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  if (unit.size() == 3 && unit[1] == 'I' && unit[2] == 'B') unit = unit.substr(0, 1);
  const double scale = unit.empty() || unit == "B" ? 1.0 : unit == "K" ? 0x1p10 : unit == "M" ? 0x1p20 : unit == "G" ? 0x1p30
                       : unit == "T" ? 0x1p40 : 0.0;
  if (used == 0 || !(x > 0) || scale == 0 || !(x * scale < 0x1p63))
    throw Error("BERTUNE_MAX_MEMORY='" + text + "': expected a size such as 8GiB, 512MiB or a number of bytes");
  return static_cast<uint64_t>(x * scale);
}

}  // namespace

uint64_t resident_memory_bytes() { return proc_kib("/proc/self/status", "VmRSS"); }

MemoryBudget available_memory() {
  MemoryBudget b;
  b.in_use = resident_memory_bytes();
  auto take = [&](uint64_t bytes, uint64_t limit, const std::string& source) {
    if (bytes == kNoLimit || (!b.source.empty() && bytes >= b.bytes)) return;
    b.bytes = bytes;
    b.limit = limit;
    b.source = source;
  };
  if (const uint64_t avail = proc_kib("/proc/meminfo", "MemAvailable"))
    take(avail, b.in_use + avail, "MemAvailable");
  if (const uint64_t room = cgroup_room(); room != kNoLimit) take(room, b.in_use + room, "the cgroup's memory limit");
  if (const char* cap = std::getenv("BERTUNE_MAX_MEMORY"); cap && *cap) {
    const uint64_t limit = parse_size(cap);
    take(limit > b.in_use ? limit - b.in_use : 0, limit, "BERTUNE_MAX_MEMORY=" + std::string(cap));
  }
  return b;
}

std::string format_bytes(uint64_t bytes) {
  char buf[32];
  if (bytes < (uint64_t{1} << 30)) std::snprintf(buf, sizeof buf, "%.0f MiB", static_cast<double>(bytes) / 0x1p20);
  else std::snprintf(buf, sizeof buf, "%.1f GiB", static_cast<double>(bytes) / 0x1p30);
  return buf;
}

uint64_t MemoryNeed::total() const {
  uint64_t sum = 0;
  for (const Part& p : parts)
    if (__builtin_add_overflow(sum, p.bytes, &sum)) return kNoLimit;
  return sum;
}

void require_memory(const MemoryNeed& need, const std::string& command) {
  const MemoryBudget budget = available_memory();
  const uint64_t total = need.total();
  if (budget.source.empty() || total <= budget.bytes) return;
  std::ostringstream parts;
  const MemoryNeed::Part* largest = &need.parts.front();
  for (const MemoryNeed::Part& p : need.parts) {
    parts << p.what << " " << format_bytes(p.bytes) << ", ";
    if (p.bytes > largest->bytes) largest = &p;
  }
  uint64_t in_all = 0;
  if (__builtin_add_overflow(total, budget.in_use, &in_all)) in_all = kNoLimit;
  throw Error(command + ": needs " + (in_all == kNoLimit ? std::string("more memory than any machine has: over 16 EiB") : "about " + format_bytes(in_all)) +
              " of memory (" + parts.str() + format_bytes(budget.in_use) + " in use already), more than the " +
              format_bytes(budget.limit) + " it can have (" + budget.source + "); to fit, " + largest->remedy);
}

}  // namespace bertune::util
