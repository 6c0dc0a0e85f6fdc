// `bertune bench train`, `bench pretrain` and `bench gemm`: the speed of the training loop's
// step (fine-tuning on real NSMC batches, pretraining on the run's masked batches), and the
// GEMM ceiling it is measured against.
#include <sys/resource.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <map>
#include <string>
#include <numeric>
#include <vector>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/pretrain_flags.h"
#include "cli/train_flags.h"
#include "infer/batching.h"
#include "kernels/cpu_runtime.h"
#include "kernels/memory.h"
#include "kernels/ops.h"
#include "model/config.h"
#include "train/prepare.h"
#include "train/pretrainer.h"
#include "train/step.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/profiler.h"

namespace bertune::cli {
namespace {

using json = nlohmann::json;
using clock_type = std::chrono::steady_clock;

double seconds_since(clock_type::time_point t0) {
  return std::chrono::duration<double>(clock_type::now() - t0).count();
}

// CPU seconds (user + system) this process has used: flops per CPU-second
// are a per-core efficiency that stays meaningful when other work shares the
// cores and wall-clock rates drop.
double cpu_seconds() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_utime.tv_sec + u.ru_utime.tv_usec * 1e-6 + u.ru_stime.tv_sec + u.ru_stime.tv_usec * 1e-6;
}

double peak_rss_mb() {
  rusage u{};
  getrusage(RUSAGE_SELF, &u);
  return u.ru_maxrss / 1024.0;  // Linux: kilobytes
}

std::string load_average() {  // 1, 5, 15 minutes: how busy the machine was
  std::string s = "?";
  if (FILE* f = std::fopen("/proc/loadavg", "r")) {
    char buf[128] = {0};
    if (std::fgets(buf, sizeof buf, f)) s = buf;
    std::fclose(f);
    s = s.substr(0, s.find(' ', s.find(' ', s.find(' ') + 1) + 1));
  }
  return s;
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

// What `bench train` and `bench pretrain` share: the timed runs.
struct BenchRuns {
  int steps = 20, warmup = 3, repeat = 1;
  bool json_out = false, profile = false;
  void add_flags(CLI::App* cmd) {
    cmd->add_option("--steps", steps, "Timed steps per run")->capture_default_str();
    cmd->add_option("--warmup", warmup, "Untimed steps before each run")->capture_default_str();
    cmd->add_option("--repeat", repeat, "Timed runs, for the spread")->capture_default_str();
    cmd->add_flag("--profile", profile, "Print where the step time goes");
    cmd->add_flag("--json", json_out, "One JSON object on one line");
  }
};

struct TrainBench {
  TrainFlags flags;  // the same options as `bertune train`
  BenchRuns runs;
};

struct PretrainBench {
  PretrainFlags flags;  // the same options as `bertune pretrain`
  BenchRuns runs{10, 2, 3};
};

// Training options for the bench: `bertune train`'s, with the bench's defaults under the
// preset and the flags. Nothing is written, so any output dir will do.
train::TrainOptions bench_options(const TrainBench& b) {
  nlohmann::json base = {{"output_dir", "runs/bench"}, {"per_device_train_batch_size", 32}, {"threads", 2}};
  base.update(preset_base(b.flags.preset, b.flags, /*announce=*/false));
  train::TrainOptions o = resolve_train_flags(b.flags, base);
  if (!o.resume_from_checkpoint.empty()) throw Error("bench train: --resume-from-checkpoint is not supported");
  o.overwrite_output_dir = true;
  return o;
}

// The objective's steps in the training loop's order, epoch after epoch.
class StepStream {
 public:
  explicit StepStream(const train::TrainingObjective& objective) : objective_(objective), steps_(objective.epoch_steps(0)) {}
  std::vector<model::Batch> next() {
    if (next_ == steps_.size()) {
      steps_ = objective_.epoch_steps(++epoch_);
      next_ = 0;
    }
    return objective_.step_batches(steps_[next_++], epoch_);
  }

 private:
  const train::TrainingObjective& objective_;
  std::vector<std::vector<size_t>> steps_;
  size_t next_ = 0;
  int64_t epoch_ = 0;
};

json profile_json(const Profiler& profiler) {
  double total = 0;
  for (const auto& [name, e] : profiler.phases()) total += e.seconds;
  json prof = json::object();
  std::vector<std::pair<double, std::string>> rows;
  for (const auto& [name, e] : profiler.phases()) {
    prof[name] = {{"seconds", e.seconds}, {"share", total > 0 ? e.seconds / total : 0.0}};
    rows.emplace_back(e.seconds, name);
  }
  std::sort(rows.rbegin(), rows.rend());
  std::fprintf(stderr, "profile (timed steps, %.2f s):\n", total);
  for (auto& [sec, name] : rows) std::fprintf(stderr, "  %6.2f%%  %8.3f s  %s\n", 100 * sec / total, sec, name.c_str());
  return prof;
}

struct StepTimings {
  std::vector<double> real_tps, samples_ps, padded_tps, gflops, gflops_per_cpu, seconds;
  std::vector<double> losses;
  json runs = json::array();
  json profile;
  int64_t real_all = 0, samples_all = 0, timed_real_tokens = 0;  // the last: one run's
};

// Times the objective's own step (the training loop's: train/loop.h) on its own batches, so
// the loss after N steps is the run's loss at step N. Each run: `warmup` untimed steps, then
// `steps` timed ones (batch building included, as in the loop). launch/collect as the loop: on
// a GPU no step waits, and the collect that ends each run waits for its last step, so the time
// covers all the work.
StepTimings time_steps(train::TrainingObjective& objective, const BenchRuns& b, const char* what) {
  if (b.steps <= 0 || b.warmup < 0 || b.repeat <= 0)
    throw Error(std::string("bench ") + what + ": --steps and --repeat must be positive, --warmup >= 0");
  const train::LoopParts parts = objective.parts();
  const int64_t total_steps = int64_t(b.warmup + b.steps) * b.repeat;
  if (total_steps > parts.state.max_steps)
    throw Error(std::string("bench ") + what + ": " + std::to_string(total_steps) +
                " steps asked for, but the run has only " + std::to_string(parts.state.max_steps) +
                " (raise --max-steps or --num-train-epochs)");
  StepStream stream(objective);
  const double flops_per_token = 6.0 * double(parts.config.non_embedding_parameters());
  Profiler profiler;
  StepTimings t;
  int64_t global_step = 0;
  auto collect = [&] {
    for (const train::StepOutcome& o : objective.collect()) t.losses.push_back(o.loss);
  };
  for (int rep = 0; rep < b.repeat; ++rep) {
    for (int w = 0; w < b.warmup; ++w) objective.launch(stream.next(), global_step++);
    collect();
    int64_t real = 0, rows = 0, samples = 0;
    if (b.profile) Profiler::active() = &profiler;
    auto t0 = clock_type::now();
    double cpu0 = cpu_seconds();
    for (int s = 0; s < b.steps; ++s) {
      const std::vector<model::Batch> micro = stream.next();
      objective.launch(micro, global_step++);
      for (const model::Batch& batch : micro) {
        real += batch.real_tokens();
        rows += batch.num_rows();
        samples += batch.num_sequences();
      }
    }
    collect();
    double secs = seconds_since(t0);
    double cpu = cpu_seconds() - cpu0;
    Profiler::active() = nullptr;
    t.real_all += real;
    t.samples_all += samples;
    t.timed_real_tokens = real;
    t.seconds.push_back(secs);
    t.real_tps.push_back(real / secs);
    t.samples_ps.push_back(samples / secs);
    t.padded_tps.push_back(rows / secs);
    t.gflops.push_back(flops_per_token * rows / secs / 1e9);
    t.gflops_per_cpu.push_back(flops_per_token * rows / cpu / 1e9);
    t.runs.push_back({{"seconds", secs}, {"steps", b.steps}, {"real_tokens", real}, {"processed_tokens", rows},
                      {"real_tokens_per_s", t.real_tps.back()}, {"samples_per_s", t.samples_ps.back()},
                      {"padded_tokens_per_s", t.padded_tps.back()}, {"model_gflops", t.gflops.back()},
                      {"cpu_seconds", cpu}, {"model_gflops_per_cpu_second", t.gflops_per_cpu.back()}});
    if (!b.json_out)
      std::fprintf(stderr, "run %d: %.1f real tok/s, %.2f samples/s, %.1f processed tok/s, %.1f GFLOP/s\n", rep + 1,
                   t.real_tps.back(), t.samples_ps.back(), t.padded_tps.back(), t.gflops.back());
  }
  if (b.profile) t.profile = profile_json(profiler);
  return t;
}

// `bertune bench train`: `bertune train`'s prepared run, batches and TrainStep, timed.
void run_train_bench(const TrainBench& b) {
  const train::TrainOptions o = bench_options(b);
  train::ClassificationObjective objective(train::prepare_run(o), stdout);
  const train::PreparedRun& r = objective.prepared();
  const StepTimings t = time_steps(objective, b.runs, "train");
  json out = {
      {"bench", "train"},
      {"model", r.model_description},
      {"padding", infer::padding_name(o.padding)},
      {"group_by_length", o.group_by_length},
      {"batch_size", o.per_device_train_batch_size},
      {"max_length", o.max_length},
      {"optim", train::adamw_variant_name(o.optim)},
      {"threads", o.threads},
      {"device", kernels::device_flag_name(o.device)},
      {"precision", kernels::precision_name(o.precision.value_or(kernels::default_precision(o.device)))},
      {"steps", b.runs.steps},
      {"warmup", b.runs.warmup},
      {"repeat", b.runs.repeat},
      {"gemm_backend", kernels::gemm_backend()},
      {"non_embedding_parameters", r.config.non_embedding_parameters()},
      {"mean_real_length", t.samples_all ? double(t.real_all) / t.samples_all : 0.0},
      {"real_tokens_per_s", spread(t.real_tps)["median"]},
      {"samples_per_s", spread(t.samples_ps)["median"]},
      {"padded_tokens_per_s", spread(t.padded_tps)["median"]},
      {"model_gflops", spread(t.gflops)["median"]},
      {"model_gflops_per_cpu_second", spread(t.gflops_per_cpu)["median"]},
      {"load_average", load_average()},
      {"peak_rss_mb", peak_rss_mb()},
      {"last_loss", t.losses.back()},
      {"losses", t.losses},
      {"runs", t.runs},
      {"spread",
       {{"real_tokens_per_s", spread(t.real_tps)},
        {"samples_per_s", spread(t.samples_ps)},
        {"padded_tokens_per_s", spread(t.padded_tps)},
        {"model_gflops", spread(t.gflops)},
        {"model_gflops_per_cpu_second", spread(t.gflops_per_cpu)}}},
  };
  if (b.runs.profile) out["profile"] = t.profile;
  std::printf("%s\n", b.runs.json_out ? out.dump().c_str() : out.dump(2).c_str());
}

// `bertune bench pretrain`: the pretraining step — the run's own masked batches in training
// order, masking included — timed, writing nothing.
void run_pretrain_bench(const PretrainBench& b) {
  nlohmann::json base = {{"output_dir", "bench-pretrain-writes-nothing"}, {"threads", 2}};
  const train::PretrainOptions o = resolve_pretrain_flags(b.flags, base);
  train::PretrainObjective objective(o, stdout);
  const StepTimings t = time_steps(objective, b.runs, "pretrain");
  const json s = spread(t.real_tps);
  json out = {{"bench", "pretrain"},
              {"model", objective.description()},
              {"threads", o.train.threads},
              {"warmup", b.runs.warmup},
              {"steps", b.runs.steps},
              {"repeat", b.runs.repeat},
              {"timed_real_tokens_per_run", t.timed_real_tokens},
              {"real_tokens_per_s", s["median"]},
              {"spread", s},
              {"runs_real_tokens_per_s", t.real_tps},
              {"runs_seconds", t.seconds},
              {"losses", t.losses},
              {"load_average", load_average()},
              {"peak_rss_mb", peak_rss_mb()}};
  if (b.runs.profile) out["profile"] = t.profile;
  if (b.runs.json_out) {
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("bench pretrain: %s, %d threads\n  real tokens/s: median %.1f (min %.1f, max %.1f, sd %.1f over %d runs of "
              "%d steps)\n  load average %s\n",
              objective.description().c_str(), o.train.threads, s["median"].get<double>(), s["min"].get<double>(),
              s["max"].get<double>(), s["stddev"].get<double>(), b.runs.repeat, b.runs.steps, load_average().c_str());
}

struct GemmBench {
  int threads = 2, repeat = 5;
  bool json_out = false;
  std::string model_config;         // the Linear shapes of this config (default BERT-base's)
  std::vector<int> rows = {768, 4096};  // token counts
};

struct GemmCase {
  const char* use;
  bool ta, tb;
  int M, N, K;
};

// Every Linear of the model, as forward (NT), backward-data (NN) and backward-weight (TN)
// GEMMs, for each token count.
std::vector<GemmCase> gemm_cases(const GemmBench& b) {
  int hidden = 768, intermediate = 3072;
  if (!b.model_config.empty()) {
    const model::BertConfig config = model::BertConfig::load(b.model_config);
    hidden = config.hidden_size;
    intermediate = config.intermediate_size;
  }
  const int dims[][2] = {{hidden, 3 * hidden}, {hidden, hidden}, {hidden, intermediate}, {intermediate, hidden}};
  std::vector<GemmCase> cases;
  for (int T : b.rows) {
    if (T <= 0) throw Error("bench gemm: --rows must be positive (got " + std::to_string(T) + ")");
    for (auto& d : dims) {
      int in = d[0], out = d[1];
      cases.push_back({"fwd  y=x W^T  (NT)", false, true, T, out, in});
      cases.push_back({"bwd dx=dy W   (NN)", false, false, T, in, out});
      cases.push_back({"bwd dW=dy^T x (TN)", true, false, out, in, T});
    }
  }
  return cases;
}

// The best of `repeat` timings of one provider on the case (after a warm-up call).
double time_gemm_case(const std::string& library, const GemmCase& c, int repeat, bool warm_up) {
  std::vector<float> A(size_t(c.M) * c.K, 0.01f), B(size_t(c.K) * c.N, 0.02f), C(size_t(c.M) * c.N, 0.f);
  const int lda = c.ta ? c.M : c.K, ldb = c.tb ? c.K : c.N;
  auto call = [&] {
    kernels::gemm_with(library, c.ta, c.tb, c.M, c.N, c.K, 1.f, A.data(), lda, B.data(), ldb, 1.f, C.data(), c.N);
  };
  if (warm_up) call();
  double best = 1e30;
  for (int r = 0; r < repeat; ++r) {
    auto t0 = clock_type::now();
    call();
    best = std::min(best, seconds_since(t0));
  }
  return best;
}

json peak_json(const kernels::ComputePeak& p) {
  return {{"isa", p.isa}, {"threads", p.threads}, {"fp32_lanes", p.lanes},
          {"fp32_fma_per_ns_per_core", p.fp32_core / (2 * p.lanes)},
          {"fp32_gflops_per_core", p.fp32_core}, {"fp32_gflops", p.fp32_all},
          {"bf16_gflops_per_core", p.bf16_core}, {"bf16_gflops", p.bf16_all},
          {"int8_gops_per_core", p.int8_core}, {"int8_gops", p.int8_all},
          {"method", "loops of independent multiply-adds (16 accumulators), best of 3 timings"}};
}

void print_roofline(const kernels::ComputePeak& p, double auto_mix, double best_mix) {
  std::printf("peak (measured by %s multiply-add loops): fp32 %.1f GFLOP/s per core (%.2f G %d-lane FMAs/s: FMA units x "
              "clock), %.1f on %d threads at once\n",
              p.isa.c_str(), p.fp32_core, p.fp32_core / (2 * p.lanes), p.lanes, p.fp32_all, p.threads);
  if (p.bf16_core > 0) std::printf("      bf16 %.1f GFLOP/s per core, %.1f on %d threads\n", p.bf16_core, p.bf16_all, p.threads);
  if (p.int8_core > 0) std::printf("      int8 %.1f GOP/s per core, %.1f on %d threads\n", p.int8_core, p.int8_all, p.threads);
  const double peak = p.fp32_core * p.threads;
  std::printf("roofline: auto's mix %.1f GFLOP/s = %.1f %% of the fp32 peak of %d cores (%.1f); the best provider per "
              "shape %.1f = %.1f %%\n",
              auto_mix, 100 * auto_mix / peak, p.threads, peak, best_mix, 100 * best_mix / peak);
}

// One table (a column per provider, auto's choice marked) or its JSON twin, then the roofline.
void run_gemm_bench(const GemmBench& b) {
  // No timing at all would print "best 0.0 GFLOP/s" as if measured.
  if (b.repeat < 1) throw Error("bench gemm: --repeat must be positive (got " + std::to_string(b.repeat) + ")");
  if (b.threads < 0) throw Error("bench gemm: --threads must not be negative (0: all cores)");
  kernels::set_num_threads(b.threads);
  const std::vector<GemmCase> cases = gemm_cases(b);
  std::vector<std::string> names;
  json providers = json::array();
  for (const auto& l : kernels::gemm_libraries()) {
    providers.push_back({{"name", l.name}, {"available", l.available}, {"version", l.version}, {"missing", l.missing}});
    if (l.available) names.push_back(l.name);
  }
  if (!b.json_out) {
    std::printf("%-20s %5s %5s %5s", "GFLOP/s (* auto)", "M", "N", "K");
    for (const auto& n : names) std::printf(" %8s ", n.c_str());
    std::printf("\n");
  }
  json rows = json::array();
  std::map<std::string, double> seconds;  // per provider, and "auto", "best": the whole mix
  double total_flop = 0, best_single = 0;
  for (const auto& c : cases) {
    const std::string chosen = kernels::gemm_library_for(c.ta, c.tb, c.M, c.N, c.K);
    const double flop = 2.0 * c.M * c.N * c.K;
    json gf = json::object();
    double best_s = 1e30;
    if (!b.json_out) std::printf("%-20s %5d %5d %5d", c.use, c.M, c.N, c.K);
    for (const auto& n : names) {
      // The builtin is 5-10x slower than the libraries: one timing, no warm-up.
      const bool slow = n == "builtin" && names.size() > 1;
      const double s = time_gemm_case(n, c, slow ? 1 : b.repeat, /*warm_up=*/!slow);
      gf[n] = flop / s / 1e9;
      seconds[n] += s;
      best_s = std::min(best_s, s);
      if (n == chosen) {
        seconds["auto"] += s;
        best_single = std::max(best_single, flop / s / 1e9);
      }
      if (!b.json_out) std::printf(" %8.1f%c", flop / s / 1e9, n == chosen ? '*' : ' ');
    }
    if (!b.json_out) std::printf("\n");
    seconds["best"] += best_s;
    total_flop += flop;
    rows.push_back({{"use", c.use}, {"M", c.M}, {"N", c.N}, {"K", c.K}, {"gflops", gf}, {"chosen", chosen}});
  }
  json mix = json::object();
  for (const auto& [n, s] : seconds) mix[n] = total_flop / s / 1e9;
  const kernels::ComputePeak peak = kernels::measure_compute_peak(kernels::num_threads());
  const double auto_mix = mix["auto"].get<double>(), best_mix = mix["best"].get<double>();
  json out = {{"bench", "gemm"},
              {"threads", b.threads},
              {"gemm_backend", kernels::gemm_backend()},
              {"providers", providers},
              {"best_gflops", best_single},
              {"mix_gflops", auto_mix},
              {"mix_gflops_by_provider", mix},
              {"peak", peak_json(peak)},
              {"fraction_of_fp32_peak",  // of threads x one core's peak: what the cores could do
               {{"auto", auto_mix / (peak.fp32_core * peak.threads)}, {"best", best_mix / (peak.fp32_core * peak.threads)}}},
              {"load_average", load_average()},
              {"cases", rows}};
  if (b.json_out) {
    std::printf("%s\n", out.dump().c_str());
    return;
  }
  std::printf("%-38s", "whole mix (GFLOP/s)");
  for (const auto& n : names) std::printf(" %8.1f ", mix[n].get<double>());
  std::printf("\nauto %.1f GFLOP/s, best per shape %.1f (%d threads), load %s\n", auto_mix, best_mix, b.threads,
              load_average().c_str());
  print_roofline(peak, auto_mix, best_mix);
  std::printf("backend: %s\n", kernels::gemm_backend().c_str());
}

}  // namespace

void add_bench_engine_commands(CLI::App& bench) {
  auto o = std::make_shared<TrainBench>();
  auto* train = bench.add_subcommand(
      "train", "Time `bertune train`'s own step (forward, backward, clip, AdamW) on its own batches; train's flags");
  add_train_flags(train, o->flags);
  o->runs.add_flags(train);
  train->callback([o]() { run_train_bench(*o); });

  auto p = std::make_shared<PretrainBench>();
  auto* pretrain = bench.add_subcommand(
      "pretrain", "Time `bertune pretrain`'s step (masking, forward, backward, clip, AdamW) on its own batches; "
                  "pretrain's flags (threads default 2); writes nothing");
  add_pretrain_flags(pretrain, p->flags);
  p->runs.add_flags(pretrain);
  pretrain->callback([p]() { run_pretrain_bench(*p); });

  auto g = std::make_shared<GemmBench>();
  auto* gemm = bench.add_subcommand(
      "gemm", "fp32 GEMM GFLOP/s of every provider on a BERT step's shapes (fwd NT, bwd NN/TN), and the CPU's peak");
  gemm->add_option("--threads", g->threads, "Threads")->capture_default_str();
  gemm->add_option("--repeat", g->repeat, "Timings per shape (best kept)")->capture_default_str();
  gemm->add_option("--model-config", g->model_config, "config.json whose Linear shapes to time (default BERT-base's)");
  gemm->add_option("--rows", g->rows, "Token counts (rows) to time")->delimiter(',')->capture_default_str();
  gemm->add_flag("--json", g->json_out, "One JSON object");
  gemm->callback([g]() { run_gemm_bench(*g); });
}

}  // namespace bertune::cli
