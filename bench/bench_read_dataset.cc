// Reading speed of the dataset readers on NSMC train (150K rows, 14 MB):
// median and spread over repeated reads of a warm page cache.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "data/dataset.h"
#include "util/error.h"

int main(int argc, char** argv) {
  using namespace bertune;
  try {
    std::filesystem::path path = argc > 1 ? std::filesystem::path(argv[1]) : data::nsmc_path("train");
    int reps = argc > 2 ? std::atoi(argv[2]) : 15;
    data::read_dataset(path);  // warm the page cache
    std::vector<double> ms;
    size_t rows = 0;
    for (int i = 0; i < reps; ++i) {
      auto t0 = std::chrono::steady_clock::now();
      data::Dataset d = data::read_dataset(path);
      ms.push_back(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
      rows = d.size();
    }
    std::sort(ms.begin(), ms.end());
    double mb = static_cast<double>(std::filesystem::file_size(path)) / 1e6;
    std::printf("read %s: %zu rows, %.1f MB; %d reads: median %.1f ms (min %.1f, max %.1f) = %.0f MB/s\n",
                path.c_str(), rows, mb, reps, ms[ms.size() / 2], ms.front(), ms.back(),
                mb / (ms[ms.size() / 2] / 1000));
  } catch (const Error& e) {
    std::fprintf(stderr, "error: %s\n", e.what());
    return 1;
  }
}
