// `bertune bench train` and `bertune bench gemm`: the speed of the training
// step on real NSMC batches, and the GEMM ceiling it is measured against.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <numeric>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "kernels/ops.h"
#include "model/bert.h"
#include "text/tokenizer.h"
#include "train/batching.h"
#include "train/optimizer.h"
#include "util/error.h"
#include "util/profiler.h"

namespace bertune::cli {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;  // Linux: kilobytes
}

json spread(const std::vector<double>& v) {
  std::vector<double> s = v;
  std::sort(s.begin(), s.end());
  double mean = std::accumulate(s.begin(), s.end(), 0.0) / s.size();
  double var = 0;
  for (double x : s) var += (x - mean) * (x - mean);
  double sd = s.size() > 1 ? std::sqrt(var / (s.size() - 1)) : 0.0;
  double median = s.size() % 2 ? s[s.size() / 2] : 0.5 * (s[s.size() / 2 - 1] + s[s.size() / 2]);
  return {{"median", median}, {"mean", mean}, {"min", s.front()}, {"max", s.back()},
          {"stddev", sd}, {"rel_spread", mean > 0 ? (s.back() - s.front()) / mean : 0.0}};
}

struct TrainBench {
  std::string model_config, tokenizer, data;
  int batch_size = 32, steps = 20, warmup = 3, threads = 2, max_length = 128, repeat = 1;
  std::string padding = "packed";
  bool group_by_length = false, json_out = false, profile = false;
  uint64_t seed = 42;
  double lr = 5e-5;
};

void run_train_bench(const TrainBench& o) {
  kernels::set_num_threads(o.threads);
  const auto padding = train::parse_padding(o.padding);
  if (o.steps <= 0 || o.warmup < 0 || o.repeat <= 0)
    throw Error("bench train: --steps and --repeat must be positive, --warmup >= 0");

  model::BertConfig config = model::BertConfig::load(o.model_config);
  if (config.id2label.empty()) config.set_num_labels(2);
  text::Tokenizer tok = text::Tokenizer::load(o.tokenizer);
  data::Dataset ds = data::read_dataset(o.data);
  if (ds.size() == 0) throw Error(o.data + ": no examples");

  // Enough examples for every step, from a pool big enough for length
  // grouping to see its megabatches; batches then run in a seeded random
  // order so each timed run sees a representative mix of lengths.
  const size_t batches_needed = size_t(o.warmup + o.steps) * o.repeat;
  const size_t pool = std::min(ds.size(), std::max(batches_needed * o.batch_size,
                                                   size_t(100) * o.batch_size));
  auto order = data::shuffled_indices(ds.size(), o.seed);
  std::vector<std::string> texts;
  std::vector<int32_t> labels;
  for (size_t i = 0; i < pool; ++i) {
    texts.push_back(ds.examples[order[i]].text);
    labels.push_back(ds.examples[order[i]].label);
  }
  text::EncodeOptions enc;
  enc.max_length = o.max_length;
  auto encodings = tok.encode_batch(texts, enc, o.threads);
  std::vector<std::vector<int32_t>> ids;
  std::vector<int> lengths;
  for (auto& e : encodings) {
    lengths.push_back(static_cast<int>(e.ids.size()));
    ids.push_back(std::move(e.ids));
  }
  auto batches = train::make_batches(lengths, o.batch_size, o.group_by_length, o.seed);
  batches.erase(std::remove_if(batches.begin(), batches.end(),
                               [&](const auto& b) { return int(b.size()) != o.batch_size; }),
                batches.end());
  {
    uint64_t s = o.seed ^ 0x5bd1e995;
    for (size_t i = batches.size(); i > 1; --i) {
      s = s * 6364136223846793005ull + 1442695040888963407ull;
      std::swap(batches[i - 1], batches[(s >> 33) % i]);
    }
  }
  if (batches.size() < batches_needed)
    throw Error("bench train: " + o.data + " has too few examples for " +
                std::to_string(batches_needed) + " batches of " + std::to_string(o.batch_size));

  model::BertModel m(config, model::Task::SequenceClassification);
  m.init_weights(o.seed);
  m.set_dropout_seed(o.seed);
  train::AdamW opt(m, {.weight_decay = 0.01});
  const int64_t total_steps = int64_t(batches_needed);

  Profiler profiler;
  json runs = json::array();
  std::vector<double> real_tps, samples_ps, padded_tps, gflops;
  size_t next_batch = 0;
  int64_t global_step = 0;
  float last_loss = 0;
  double real_len_sum = 0;
  int64_t real_len_count = 0;
  const double flops_per_token = 6.0 * double(config.non_embedding_parameters());

  auto one_step = [&](const model::Batch& batch) {
    float loss = m.forward(batch, true);
    m.backward();
    {
      ProfileScope p("optimizer (clip + adamw + zero_grad)");
      double norm = train::grad_norm(m);
      opt.step(train::learning_rate(train::Schedule::Linear, o.lr, global_step, 0, total_steps),
               train::clip_coefficient(norm, 1.0));
    }
    ++global_step;
    return loss;
  };

  for (int r = 0; r < o.repeat; ++r) {
    for (int w = 0; w < o.warmup; ++w) {
      auto batch = train::build_batch(ids, labels, batches[next_batch++], padding, o.max_length,
                                      tok.pad_id());
      one_step(batch);
    }
    // Batches are built before the clock starts: the tokenizer and the
    // batcher are measured by their own benchmarks.
    std::vector<model::Batch> timed;
    for (int s = 0; s < o.steps; ++s)
      timed.push_back(train::build_batch(ids, labels, batches[next_batch++], padding,
                                         o.max_length, tok.pad_id()));
    int64_t real = 0, rows = 0, samples = 0;
    if (o.profile) Profiler::active() = &profiler;
    auto t0 = clock_type::now();
    for (const auto& batch : timed) {
      last_loss = one_step(batch);
      real += batch.real_tokens();
      rows += batch.num_rows();
      samples += batch.num_sequences();
    }
    double secs = seconds_since(t0);
    Profiler::active() = nullptr;
    real_len_sum += double(real);
    real_len_count += samples;
    json run = {{"seconds", secs},
                {"steps", o.steps},
                {"real_tokens", real},
                {"processed_tokens", rows},
                {"real_tokens_per_s", real / secs},
                {"samples_per_s", samples / secs},
                {"padded_tokens_per_s", rows / secs},
                {"model_gflops", flops_per_token * rows / secs / 1e9}};
    real_tps.push_back(real / secs);
    samples_ps.push_back(samples / secs);
    padded_tps.push_back(rows / secs);
    gflops.push_back(flops_per_token * rows / secs / 1e9);
    runs.push_back(run);
    if (!o.json_out)
      std::fprintf(stderr, "run %d: %.1f real tok/s, %.2f samples/s, %.1f processed tok/s, %.1f GFLOP/s\n",
                   r + 1, real / secs, samples / secs, rows / secs,
                   flops_per_token * rows / secs / 1e9);
  }

  json out = {
      {"bench", "train"},
      {"model_config", o.model_config},
      {"padding", train::padding_name(padding)},
      {"group_by_length", o.group_by_length},
      {"batch_size", o.batch_size},
      {"max_length", o.max_length},
      {"threads", o.threads},
      {"steps", o.steps},
      {"warmup", o.warmup},
      {"repeat", o.repeat},
      {"gemm_backend", kernels::gemm_backend()},
      {"non_embedding_parameters", config.non_embedding_parameters()},
      {"mean_real_length", real_len_count ? real_len_sum / real_len_count : 0.0},
      {"real_tokens_per_s", spread(real_tps)["median"]},
      {"samples_per_s", spread(samples_ps)["median"]},
      {"padded_tokens_per_s", spread(padded_tps)["median"]},
      {"model_gflops", spread(gflops)["median"]},
      {"peak_rss_mb", peak_rss_mb()},
      {"last_loss", last_loss},
      {"runs", runs},
      {"spread",
       {{"real_tokens_per_s", spread(real_tps)},
        {"samples_per_s", spread(samples_ps)},
        {"padded_tokens_per_s", spread(padded_tps)},
        {"model_gflops", spread(gflops)}}},
  };
  if (o.profile) {
    double total = 0;
    for (const auto& [name, e] : profiler.phases()) total += e.seconds;
    json prof = json::object();
    std::vector<std::pair<double, std::string>> rows;
    for (const auto& [name, e] : profiler.phases()) {
      prof[name] = {{"seconds", e.seconds}, {"share", total > 0 ? e.seconds / total : 0.0}};
      rows.emplace_back(e.seconds, name);
    }
    out["profile"] = prof;
    std::sort(rows.rbegin(), rows.rend());
    std::fprintf(stderr, "profile (timed steps, %.2f s):\n", total);
    for (auto& [s, name] : rows)
      std::fprintf(stderr, "  %6.2f%%  %8.3f s  %s\n", 100 * s / total, s, name.c_str());
  }
  std::printf("%s\n", o.json_out ? out.dump().c_str() : out.dump(2).c_str());
}

void run_gemm_bench(int threads, int repeat, bool json_out) {
  kernels::set_num_threads(threads);
  struct Case {
    const char* use;
    bool ta, tb;
    int M, N, K;
  };
  std::vector<Case> cases;
  // Every Linear of BERT-base, as forward (NT), backward-data (NN) and
  // backward-weight (TN) GEMMs, for a short (768) and a long (4096) token count.
  const int dims[][2] = {{768, 2304}, {768, 768}, {768, 3072}, {3072, 768}};
  for (int T : {768, 4096})
    for (auto& d : dims) {
      int in = d[0], out = d[1];
      cases.push_back({"fwd  y=x W^T  (NT)", false, true, T, out, in});
      cases.push_back({"bwd dx=dy W   (NN)", false, false, T, in, out});
      cases.push_back({"bwd dW=dy^T x (TN)", true, false, out, in, T});
    }
  json rows = json::array();
  double best = 0, total_flop = 0, total_time = 0;
  for (const auto& c : cases) {
    size_t a_size = size_t(c.M) * c.K, b_size = size_t(c.K) * c.N;
    std::vector<float> A(a_size, 0.01f), B(b_size, 0.02f), C(size_t(c.M) * c.N, 0.f);
    int lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
    double flop = 2.0 * c.M * c.N * c.K, best_s = 1e30;
    kernels::gemm(kernels::Device::CPU, c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb,
                  0.f, C.data(), c.N);  // warm up
    for (int r = 0; r < repeat; ++r) {
      auto t0 = clock_type::now();
      kernels::gemm(kernels::Device::CPU, c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(),
                    ldb, 1.f, C.data(), c.N);
      best_s = std::min(best_s, seconds_since(t0));
    }
    double gf = flop / best_s / 1e9;
    best = std::max(best, gf);
    total_flop += flop;
    total_time += best_s;
    rows.push_back({{"use", c.use}, {"M", c.M}, {"N", c.N}, {"K", c.K}, {"gflops", gf}});
    if (!json_out)
      std::printf("%-20s M=%5d N=%5d K=%5d  %7.1f GFLOP/s\n", c.use, c.M, c.N, c.K, gf);
  }
  json out = {{"bench", "gemm"},
              {"threads", threads},
              {"gemm_backend", kernels::gemm_backend()},
              {"best_gflops", best},
              {"mix_gflops", total_flop / total_time / 1e9},
              {"cases", rows}};
  if (json_out)
    std::printf("%s\n", out.dump().c_str());
  else
    std::printf("backend: %s\nbest %.1f GFLOP/s, whole BERT-base mix %.1f GFLOP/s (%d threads)\n",
                kernels::gemm_backend().c_str(), best, total_flop / total_time / 1e9, threads);
}

}  // namespace

void add_bench_engine_commands(CLI::App& bench) {
  auto o = std::make_shared<TrainBench>();
  auto* train = bench.add_subcommand("train", "Time training steps (forward, backward, AdamW) on NSMC batches");
  train->add_option("--model-config", o->model_config, "BERT config.json (or its directory)")->required();
  train->add_option("--tokenizer", o->tokenizer, "Tokenizer directory (vocab.txt / tokenizer.json)")->required();
  train->add_option("--data", o->data, "Labelled TSV/CSV/JSONL (NSMC ratings_train.txt)")->required();
  train->add_option("--batch-size", o->batch_size, "Sequences per step")->capture_default_str();
  train->add_option("--padding", o->padding, "packed | longest | max_length")->capture_default_str();
  train->add_flag("--group-by-length", o->group_by_length, "Length-grouped batches (HF group_by_length)");
  train->add_option("--steps", o->steps, "Timed steps per run")->capture_default_str();
  train->add_option("--warmup", o->warmup, "Untimed steps before each run")->capture_default_str();
  train->add_option("--threads", o->threads, "Threads (one OpenMP pool)")->capture_default_str();
  train->add_option("--max-length", o->max_length, "Truncation / max_length padding")->capture_default_str();
  train->add_option("--repeat", o->repeat, "Timed runs, for the spread")->capture_default_str();
  train->add_option("--seed", o->seed, "Init, dropout and data order seed")->capture_default_str();
  train->add_option("--lr", o->lr, "Peak learning rate (linear decay)")->capture_default_str();
  train->add_flag("--profile", o->profile, "Print where the step time goes");
  train->add_flag("--json", o->json_out, "One JSON object on one line");
  train->callback([o]() { run_train_bench(*o); });

  auto threads = std::make_shared<int>(2);
  auto repeat = std::make_shared<int>(5);
  auto json_flag = std::make_shared<bool>(false);
  auto* gemm = bench.add_subcommand("gemm", "fp32 GEMM GFLOP/s for BERT-base shapes (fwd NT, bwd NN/TN)");
  gemm->add_option("--threads", *threads, "Threads")->capture_default_str();
  gemm->add_option("--repeat", *repeat, "Timings per shape (best kept)")->capture_default_str();
  gemm->add_flag("--json", *json_flag, "One JSON object");
  gemm->callback([=]() { run_gemm_bench(*threads, *repeat, *json_flag); });
}

}  // namespace bertune::cli
