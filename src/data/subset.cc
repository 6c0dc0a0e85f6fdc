#include <algorithm>

#include "data/dataset.h"
#include "data/numpy_random.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::data {
namespace fs = std::filesystem;

std::vector<size_t> shuffled_indices(size_t size, uint64_t seed) { return numpy_permutation(size, seed); }

Dataset shuffle_select(const Dataset& d, uint64_t seed, int64_t n) {
  std::vector<size_t> order = shuffled_indices(d.size(), seed);
  size_t keep = (n < 0 || static_cast<size_t>(n) >= d.size()) ? d.size() : static_cast<size_t>(n);
  Dataset out;
  out.source = d.source;
  out.skipped = d.skipped;
  out.examples.reserve(keep);
  for (size_t i = 0; i < keep; ++i) out.examples.push_back(d.examples[order[i]]);
  return out;
}

Dataset select_samples(const Dataset& d, uint64_t seed, int64_t n, const std::string& flag) {
  if (n > static_cast<int64_t>(d.size()))
    throw Error(flag + " " + std::to_string(n) + ": " + d.source.string() + " has only " + std::to_string(d.size()) +
                " examples");
  return n < 0 ? d : shuffle_select(d, seed, n);
}

fs::path nsmc_path(const std::string& split) {
  if (split != "train" && split != "test")
    throw Error("unknown NSMC split '" + split + "' (expected train or test)");
  std::string name = "ratings_" + split + ".txt";
  if (fs::path shared = shared_dir(); !shared.empty()) {
    fs::path p = shared / "data" / "nsmc" / name;
    if (fs::exists(p)) return p;
  }
  fs::path cached = cache_dir() / "nsmc" / name;
  if (fs::exists(cached)) return cached;
  throw Error("NSMC " + split + " split not found (looked in " +
              (shared_dir().empty() ? std::string("shared/data/nsmc") : (shared_dir() / "data" / "nsmc").string()) +
              " and " + cached.parent_path().string() +
              "): set BERTUNE_SHARED to the shared/ folder that holds data/nsmc, or run `bertune download nsmc`");
}

}  // namespace bertune::data
