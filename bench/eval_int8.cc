// Accuracy and speed of a classifier directory — fp32 or int8 (`bertune quantize`) — on a
// labelled file, through the classifier serve runs (infer::Classifier), so the int8 format's
// accuracy cost can be measured side by side with its fp32 source:
//
//   ./build/eval_int8 --model DIR [--data ../shared/data/nsmc/ratings_test.txt] [--threads 2]
//                     [--batch-size 64] [--samples N]
//
// Texts are sorted by length and run in packed batches; tokenization is not timed.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <numeric>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "infer/classifier.h"
#include "infer/metrics.h"
#include "kernels/cpu_runtime.h"
#include "kernels/ops.h"
#include "util/error.h"
#include "util/paths.h"

using namespace bertune;

int main(int argc, char** argv) {
  std::string model, data = shared_path("data/nsmc/ratings_test.txt").string();
  int threads = 2, batch_size = 64;
  long samples = -1;
  for (int i = 1; i + 1 < argc; i += 2) {
    std::string a = argv[i];
    if (a == "--model") model = argv[i + 1];
    else if (a == "--data") data = argv[i + 1];
    else if (a == "--threads") threads = std::atoi(argv[i + 1]);
    else if (a == "--batch-size") batch_size = std::atoi(argv[i + 1]);
    else if (a == "--samples") samples = std::atol(argv[i + 1]);
    else {
      std::fprintf(stderr, "unknown option %s\n", a.c_str());
      return 2;
    }
  }
  if (model.empty()) {
    std::fprintf(stderr, "usage: eval_int8 --model DIR [--data FILE] [--threads N] [--batch-size N] [--samples N]\n");
    return 2;
  }
  try {
    kernels::set_num_threads(threads);
    auto c = infer::Classifier::load(model);
    auto d = data::read_dataset(data);
    if (samples > 0 && static_cast<size_t>(samples) < d.size()) d.examples.resize(samples);
    std::vector<std::string> texts;
    for (const auto& e : d.examples) texts.push_back(e.text);
    auto ids = c->tokenize(texts);
    std::vector<size_t> order(ids.size());
    std::iota(order.begin(), order.end(), 0);
    std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return ids[a].size() < ids[b].size(); });
    size_t correct = 0;
    const int k = c->num_labels();
    const auto t0 = std::chrono::steady_clock::now();
    for (size_t start = 0; start < order.size(); start += batch_size) {
      std::vector<const infer::TokenIds*> batch;
      for (size_t i = start; i < std::min(order.size(), start + batch_size); ++i) batch.push_back(&ids[order[i]]);
      auto logits = c->logits(batch);
      for (size_t i = 0; i < batch.size(); ++i)
        correct += infer::argmax(logits.data() + i * k, k) == d.examples[order[start + i]].label;
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("{\"model\": \"%s\", \"int8\": \"%s\", \"examples\": %zu, \"accuracy\": %.6f, \"seconds\": %.2f, "
                "\"docs_per_s\": %.1f, \"threads\": %d}\n",
                model.c_str(), c->int8_weights() ? kernels::int8_kernel_name() : "no", d.size(),
                double(correct) / d.size(), s, d.size() / s, threads);
  } catch (const Error& e) {
    std::fprintf(stderr, "eval_int8: %s\n", e.what());
    return 1;
  }
  return 0;
}
