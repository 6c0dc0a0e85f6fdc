// Data-parallel training's NCCL path on one GPU (ctest label `gpu`; SKIPPED with the reason
// without a GPU or in a build without NCCL): `--ddp-backend nccl` without mpirun runs every
// step's gradients and loss through ncclAllReduce on a communicator of one rank, the loss
// counts and denominators through the reduction's seam (train/step.h), so a run must log what
// the same run without it logs. Sequence classification and masked-LM pretraining (two
// micro-batches a step), 20 steps each, fp32, dropout on: every logged loss within 1e-6
// relative. Needs no mpirun.
#include <gtest/gtest.h>

#include <unistd.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "gpu_harness.h"
#include "kernels/collectives.h"
#include "train/options.h"
#include "train/pretrainer.h"
#include "train/report.h"
#include "train/trainer.h"
#include "util/paths.h"

using namespace bertune;
namespace fs = std::filesystem;

namespace {

#define BERTUNE_REQUIRE_GPU_AND_NCCL()                                                            \
  do {                                                                                            \
    BERTUNE_REQUIRE_GPU();                                                                        \
    if (!kernels::nccl_built()) GTEST_SKIP() << "this build has no NCCL (nccl.h not found at configure time)"; \
  } while (0)

// A temporary directory with a tiny BERT (width 32, 2 layers, dropout 0.1) over the klue
// vocabulary and the first 400 NSMC training reviews (train.tsv; their texts: train.txt).
struct Files {
  fs::path dir = fs::temp_directory_path() / ("bertune_gpu_nccl_" + std::to_string(::getpid()));
  Files() {
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ofstream(dir / "tiny.json") << R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})";
    std::ifstream in(shared_path("data/nsmc/ratings_train.txt"));
    std::ofstream tsv(dir / "train.tsv"), text(dir / "train.txt");  // the reviews alone, for pretraining
    std::string line;
    for (int i = 0; i <= 400 && std::getline(in, line); ++i) {
      tsv << line << "\n";
      const size_t a = line.find('\t'), b = line.rfind('\t');
      if (i > 0 && a != std::string::npos && b > a) text << line.substr(a + 1, b - a - 1) << "\n";
    }
  }
  ~Files() { fs::remove_all(dir); }
  std::string path(const std::string& name) const { return (dir / name).string(); }
};

// What a run printed to `out` (a tmpfile).
std::string printed(std::FILE* out) {
  std::string text;
  std::rewind(out);
  char buf[4096];
  for (size_t n; (n = std::fread(buf, 1, sizeof buf, out)) > 0;) text.append(buf, n);
  return text;
}

// The banner of a run through NCCL says so (the test would pass vacuously otherwise).
void expect_nccl_banner(std::FILE* out) {
  const std::string text = printed(out);
  EXPECT_NE(text.find("World size = 1 process (no mpirun)"), std::string::npos) << text;
  EXPECT_NE(text.find("Gradients summed = ncclAllReduce (fp32, ncclSum)"), std::string::npos) << text;
}

std::vector<double> losses(const fs::path& out) {
  std::vector<double> r;
  for (const auto& rec : train::JsonlLog::read(out / "log.jsonl"))
    if (rec.contains("loss")) r.push_back(rec["loss"]);
  return r;
}

void expect_same_losses(const fs::path& with, const fs::path& without, size_t steps) {
  const std::vector<double> a = losses(with), b = losses(without);
  ASSERT_EQ(a.size(), steps);
  ASSERT_EQ(b.size(), steps);
  for (size_t i = 0; i < steps; ++i) {
    EXPECT_TRUE(std::isfinite(a[i])) << "step " << i + 1;
    EXPECT_NEAR(a[i], b[i], 1e-6 * std::fabs(b[i])) << "step " << i + 1;
  }
}

// The options of a 20-step fp32 run on the GPU into f.path(out), with --ddp-backend `backend`
// (empty: none given).
nlohmann::json run_json(const Files& f, const std::string& train_file, int batch, const std::string& out,
                        const std::string& backend) {
  nlohmann::json j = {{"model_config", f.path("tiny.json")}, {"train_file", f.path(train_file)},
                      {"max_length", 32}, {"max_steps", 20}, {"logging_steps", 1},
                      {"per_device_train_batch_size", batch}, {"learning_rate", 3e-4},
                      {"save_strategy", "no"}, {"eval_strategy", "no"}, {"device", "cuda"},
                      {"precision", "fp32"}, {"output_dir", f.path(out)}};
  if (!backend.empty()) j["ddp_backend"] = backend;
  return j;
}

// run(options(out, backend), console) without a backend, then with nccl: the NCCL banner, and
// the losses of the run without.
template <typename Options, typename Run>
void expect_nccl_matches_the_run_without(const Files& f, const std::string& name, Options options, Run run) {
  std::FILE* quiet = std::tmpfile();
  std::FILE* banner = std::tmpfile();
  run(options(name + "_without", ""), quiet);
  run(options(name + "_nccl", "nccl"), banner);
  expect_nccl_banner(banner);
  std::fclose(quiet);
  std::fclose(banner);
  expect_same_losses(f.dir / (name + "_nccl"), f.dir / (name + "_without"), 20);
}

}  // namespace

TEST(GpuNccl, OneRankClassificationLogsTheLossesOfARunWithout) {
  BERTUNE_REQUIRE_GPU_AND_NCCL();
  Files f;
  auto options = [&](const std::string& out, const std::string& backend) {
    return train::train_options_from_json(run_json(f, "train.tsv", 16, out, backend));
  };
  expect_nccl_matches_the_run_without(
      f, "cls", options, [](const train::TrainOptions& o, std::FILE* console) { train::run_training(o, console); });
}

TEST(GpuNccl, OneRankMaskedLmPretrainingLogsTheLossesOfARunWithout) {
  BERTUNE_REQUIRE_GPU_AND_NCCL();
  Files f;
  auto options = [&](const std::string& out, const std::string& backend) {
    train::PretrainOptions o;
    o.train = train::train_options_from_json(run_json(f, "train.txt", 8, out, backend));
    o.validation_reviews = 20;
    o.gradient_accumulation_steps = 2;
    train::validate(o);
    return o;
  };
  expect_nccl_matches_the_run_without(
      f, "mlm", options, [](const train::PretrainOptions& o, std::FILE* console) { train::run_pretraining(o, console); });
}
