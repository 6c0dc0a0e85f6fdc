// An output directory belongs to one run (train/run_dir.h), run lengths that overflow are
// refused by name (train/options.h), and a run that cannot fit in memory is refused before it
// allocates (train/memory_plan.h) — on the real binary, as users run it.
#include <gtest/gtest.h>

#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "test_support.h"
#include "train_fixture.h"
#include "train/run_dir.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace bertune;

namespace {

// 80 NSMC training reviews (5 steps of 16 an epoch) beside the tiny config.
struct Fixture : TinyTrainDir {
  fs::path train;
  Fixture() : TinyTrainDir("run_dir_test") {
    const NsmcRows nsmc = nsmc_train_rows(80);
    std::ofstream tr(dir / "train.tsv");
    tr << nsmc.header << "\n";
    for (const std::string& row : nsmc.rows) tr << row << "\n";
    train = dir / "train.tsv";
  }
  std::vector<std::string> args(const fs::path& out, std::vector<std::string> more = {}) const {
    std::vector<std::string> a = {"train", "--model-config", config.string(), "--train-file", train.string(),
                                  "--max-length", "32", "--per-device-train-batch-size", "16", "--logging-steps",
                                  "1", "--output-dir", out.string(), "--threads", "2"};
    a.insert(a.end(), more.begin(), more.end());
    return a;
  }
};

std::string run_id_of(const fs::path& dir) { return Json::parse(slurp(dir / "bertune_run.json"))["run_id"]; }
std::string checkpoint_run(const fs::path& ckpt) { return Json::parse(slurp(ckpt / "bertune_state.json"))["run_id"]; }

}  // namespace

// The reported sequence: a run with --save-total-limit 2 is interrupted; a rerun with
// --overwrite-output-dir kept its checkpoints, `--resume-from-checkpoint last` then picked the
// stale one ("step 84/3") and log.jsonl mixed both runs. Now the old run moves aside whole.
TEST(RunDir, OverwriteMovesTheOldRunAsideAndResumeSeesOnlyItsOwn) {
  Fixture fx;
  const fs::path out = fx.dir / "out";
  const auto first = fx.args(out, {"--num-train-epochs", "2", "--save-steps", "2", "--save-total-limit", "2"});
  ASSERT_TRUE(run_until_killed(first, "after-step:7", fx.dir / "a.txt")) << slurp(fx.dir / "a.txt");
  ASSERT_TRUE(fs::exists(out / "checkpoint-6"));
  const std::string old_run = run_id_of(out);
  EXPECT_EQ(checkpoint_run(out / "checkpoint-6"), old_run);

  // A fresh run into it is refused, naming what is there; nothing is touched.
  const auto fresh = fx.args(out, {"--max-steps", "3", "--save-steps", "1", "--save-total-limit", "2"});
  ASSERT_EQ(run(fresh, fx.dir / "b.txt"), 1) << slurp(fx.dir / "b.txt");
  const std::string refused = slurp(fx.dir / "b.txt");
  EXPECT_TRUE(contains(refused, "already holds the outputs of run " + old_run + " (checkpoint-4/, checkpoint-6/, log.jsonl"))
      << refused;
  EXPECT_TRUE(contains(refused, "--overwrite-output-dir")) << refused;
  EXPECT_EQ(count_loss_records(out / "log.jsonl"), 7u);

  // --overwrite-output-dir: the old run's outputs move to previous-run-<id>/, and rotation
  // (--save-steps 1, limit 2) keeps the new run's last two checkpoints.
  auto overwrite = fresh;
  overwrite.push_back("--overwrite-output-dir");
  ASSERT_EQ(run(overwrite, fx.dir / "c.txt"), 0) << slurp(fx.dir / "c.txt");
  const fs::path previous = out / ("previous-run-" + old_run);
  EXPECT_TRUE(contains(slurp(fx.dir / "c.txt"), "moved the outputs of run " + old_run)) << slurp(fx.dir / "c.txt");
  EXPECT_TRUE(fs::exists(previous / "checkpoint-4"));
  EXPECT_TRUE(fs::exists(previous / "checkpoint-6"));
  EXPECT_EQ(count_loss_records(previous / "log.jsonl"), 7u);
  const std::string new_run = run_id_of(out);
  EXPECT_NE(new_run, old_run);
  EXPECT_FALSE(fs::exists(out / "checkpoint-1"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-4"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-6"));
  ASSERT_TRUE(fs::exists(out / "checkpoint-3"));
  EXPECT_EQ(checkpoint_run(out / "checkpoint-2"), new_run);
  EXPECT_EQ(checkpoint_run(out / "checkpoint-3"), new_run);
  EXPECT_EQ(count_loss_records(out / "log.jsonl"), 3u) << "log.jsonl holds the new run only";
  EXPECT_EQ(Json::parse(slurp(out / "trainer_state.json"))["global_step"], 3);

  // A checkpoint of the old run put back beside them is another run's: `last` refuses it
  // instead of continuing at step 6 of 3, and final/ stays the new run's.
  fs::copy(previous / "checkpoint-6", out / "checkpoint-6", fs::copy_options::recursive);
  const std::string final_weights = slurp(out / "final" / "model.safetensors");
  auto resume = fresh;
  resume.insert(resume.end(), {"--resume-from-checkpoint", "last"});
  ASSERT_EQ(run(resume, fx.dir / "d.txt"), 1) << slurp(fx.dir / "d.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "d.txt"), "the checkpoint belongs to run " + old_run + ", but --output-dir"))
      << slurp(fx.dir / "d.txt");
  EXPECT_EQ(slurp(out / "final" / "model.safetensors"), final_weights);
  // Its own checkpoint resumes.
  fs::remove_all(out / "checkpoint-6");
  auto own = fresh;
  own.insert(own.end(), {"--resume-from-checkpoint", (out / "checkpoint-2").string()});
  ASSERT_EQ(run(own, fx.dir / "e.txt"), 0) << slurp(fx.dir / "e.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "e.txt"), "Resuming from " + (out / "checkpoint-2").string()));
  EXPECT_EQ(run_id_of(out), new_run);
}

// `train` into a directory holding only final/ replaced it without a word.
TEST(RunDir, FinalModelAloneIsAnotherRunsOutput) {
  Fixture fx;
  const fs::path out = fx.dir / "final-only";
  ASSERT_EQ(run(fx.args(out, {"--max-steps", "2", "--save-strategy", "no"}), fx.dir / "a.txt"), 0)
      << slurp(fx.dir / "a.txt");
  fs::remove(out / "log.jsonl");
  fs::remove(out / "trainer_state.json");
  const std::string weights = slurp(out / "final" / "model.safetensors");
  ASSERT_EQ(run(fx.args(out, {"--max-steps", "3", "--save-strategy", "no"}), fx.dir / "b.txt"), 1)
      << slurp(fx.dir / "b.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "b.txt"), "already holds the outputs of run " + run_id_of(out) + " (final/"))
      << slurp(fx.dir / "b.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "b.txt"), "no checkpoint to continue from")) << slurp(fx.dir / "b.txt");
  EXPECT_EQ(slurp(out / "final" / "model.safetensors"), weights);
}

// A directory written before run ids (no bertune_run.json, no run_id in the checkpoints) is
// one run: `last` continues it, and the resumed run gets an id of its own.
TEST(RunDir, CheckpointsFromBeforeRunIdsResume) {
  Fixture fx;
  const fs::path out = fx.dir / "legacy";
  const auto a = fx.args(out, {"--max-steps", "6", "--save-steps", "2"});
  ASSERT_TRUE(run_until_killed(a, "after-step:5", fx.dir / "a.txt")) << slurp(fx.dir / "a.txt");
  fs::remove(out / "bertune_run.json");
  for (const char* c : {"checkpoint-2", "checkpoint-4"}) {
    Json state = Json::parse(slurp(out / c / "bertune_state.json"));
    state.erase("run_id");
    io::write_file_atomic(out / c / "bertune_state.json", state.dump(2));
  }
  auto resume = a;
  resume.insert(resume.end(), {"--resume-from-checkpoint", "last", "--save-total-limit", "1"});
  ASSERT_EQ(run(resume, fx.dir / "b.txt"), 0) << slurp(fx.dir / "b.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "b.txt"), "checkpoint-4 at step 4")) << slurp(fx.dir / "b.txt");
  const std::string id = run_id_of(out);
  EXPECT_EQ(checkpoint_run(out / "checkpoint-6"), id);
  // Rotation counts the old checkpoints as the run's: one is left.
  EXPECT_FALSE(fs::exists(out / "checkpoint-2"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-4"));
}

// A checkpoint from another directory continues there only when that directory holds no
// other run, or with --overwrite-output-dir, which moves that run aside.
TEST(RunDir, CheckpointFromElsewhereNeedsAFreeDirectory) {
  Fixture fx;
  const fs::path a = fx.dir / "a", b = fx.dir / "b";
  ASSERT_EQ(run(fx.args(a, {"--max-steps", "4", "--save-steps", "2"}), fx.dir / "a.txt"), 0) << slurp(fx.dir / "a.txt");
  ASSERT_EQ(run(fx.args(b, {"--max-steps", "2", "--save-steps", "2"}), fx.dir / "b.txt"), 0) << slurp(fx.dir / "b.txt");
  const std::string run_a = run_id_of(a), run_b = run_id_of(b);
  auto resume = fx.args(b, {"--max-steps", "6", "--save-steps", "2", "--resume-from-checkpoint",
                            (a / "checkpoint-4").string()});
  ASSERT_EQ(run(resume, fx.dir / "c.txt"), 1) << slurp(fx.dir / "c.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "c.txt"), "holds the outputs of run " + run_b)) << slurp(fx.dir / "c.txt");
  resume.push_back("--overwrite-output-dir");
  ASSERT_EQ(run(resume, fx.dir / "d.txt"), 0) << slurp(fx.dir / "d.txt");
  EXPECT_EQ(run_id_of(b), run_a) << "the run continued is a's";
  EXPECT_TRUE(fs::exists(b / ("previous-run-" + run_b) / "checkpoint-2"));
  EXPECT_EQ(checkpoint_run(b / "checkpoint-6"), run_a);
}

// --num-train-epochs 1e300 planned -9223372036854775808 steps, ran none and saved an untrained
// model. Every run length is checked against the limit, naming the flag; fractional epochs
// still work.
TEST(RunLength, OverflowingCountsAreRefusedByName) {
  Fixture fx;
  struct Case {
    std::vector<std::string> flags;
    std::string says;
  };
  const Case cases[] = {
      {{"--num-train-epochs", "1e300"}, "--num-train-epochs 1e+300: more epochs than the limit (1000000000000"},
      {{"--num-train-epochs", "3e11"}, "3e+11 epochs x 5 steps per epoch = 1.5e+12 optimization steps"},
      {{"--max-steps", "1000000000001"}, "--max-steps 1000000000001: more than the limit (1000000000000"},
      {{"--max-steps", "5", "--warmup-steps", "9223372036854775807"}, "--warmup-steps 9223372036854775807: more than"},
      {{"--num-train-epochs", "nan"}, "--num-train-epochs: 'nan' is not a number"},
      {{"--num-train-epochs", "0"}, "--num-train-epochs: must be positive"},
      {{"--num-train-epochs", "-2"}, "--num-train-epochs: must be positive"},
  };
  for (const Case& c : cases) {
    const fs::path out = fx.dir / "never";
    ASSERT_EQ(run(fx.args(out, c.flags), fx.dir / "x.txt"), 1) << c.flags[1] << ": " << slurp(fx.dir / "x.txt");
    EXPECT_TRUE(contains(slurp(fx.dir / "x.txt"), c.says)) << slurp(fx.dir / "x.txt");
    EXPECT_FALSE(fs::exists(out));
  }
  ASSERT_EQ(run(fx.args(fx.dir / "half", {"--num-train-epochs", "0.5", "--save-strategy", "no"}), fx.dir / "h.txt"), 0)
      << slurp(fx.dir / "h.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "h.txt"), "Total optimization steps = 3")) << slurp(fx.dir / "h.txt");
  EXPECT_EQ(Json::parse(slurp(fx.dir / "half" / "trainer_state.json"))["global_step"], 3);
}

// Two runs into one --output-dir at the same time both exited 0 and left one mixed directory.
// The directory is locked while a run lives: a second train or pretrain into it is refused at
// once, and a run killed with SIGKILL leaves no lock behind.
TEST(RunDir, ADirectoryInUseIsRefusedAndKillLeavesNoLock) {
  Fixture fx;
  const fs::path out = fx.dir / "busy";
  const pid_t first =
      spawn(fx.args(out, {"--num-train-epochs", "100000", "--save-strategy", "no"}), fx.dir / "first.txt");
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  while (!fs::exists(out / "bertune_run.json") && std::chrono::steady_clock::now() < deadline &&
         ::waitpid(first, &status, WNOHANG) == 0)
    ::usleep(20000);
  ASSERT_TRUE(fs::exists(out / "bertune_run.json")) << slurp(fx.dir / "first.txt");
  const std::string busy = out.string() + " is in use by another bertune run (pid " + std::to_string(first) + ")";
  EXPECT_EQ(run(fx.args(out, {"--max-steps", "2"}), fx.dir / "second.txt"), 1) << slurp(fx.dir / "second.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "second.txt"), busy)) << slurp(fx.dir / "second.txt");
  const std::vector<std::string> pretrain = {"pretrain", "--model-config", fx.config.string(), "--tokenizer",
                                             shared_path("models/klue-bert-base").string(), "--train-file",
                                             fx.train.string(), "--max-steps", "2", "--output-dir", out.string()};
  EXPECT_EQ(run(pretrain, fx.dir / "pretrain.txt"), 1) << slurp(fx.dir / "pretrain.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "pretrain.txt"), busy)) << slurp(fx.dir / "pretrain.txt");
  ::kill(first, SIGKILL);
  ::waitpid(first, &status, 0);
  ASSERT_EQ(run(fx.args(out, {"--max-steps", "2", "--overwrite-output-dir"}), fx.dir / "third.txt"), 0)
      << slurp(fx.dir / "third.txt");
  EXPECT_TRUE(fs::exists(out / "final"));
}

// Two runs planned on an output directory that did not exist yet; the first claimed it, ran to
// the end and let go of it before the second claimed it: the second overwrote it and both
// exited 0. The second now refuses, naming what the first left.
TEST(RunDir, ARunThatEndedBeforeTheClaimIsNotOverwritten) {
  Fixture fx;
  train::TrainOptions o;
  o.output_dir = (fx.dir / "raced").string();
  const train::RunDirPlan second = train::plan_run_dir(o);
  {
    const train::RunDirPlan first = train::plan_run_dir(o);
    train::claim_run_dir(first);
    io::write_file_atomic(fs::path(o.output_dir) / "trainer_state.json", "{}\n");
  }
  try {
    train::claim_run_dir(second);
    FAIL() << "the second claim went through";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), o.output_dir + " was taken by another bertune run")) << e.what();
    EXPECT_TRUE(contains(e.what(), "trainer_state.json")) << e.what();
  }
}

// --train-samples / --eval-samples past the file's rows trained on what was there and exited 0
// (`eval --samples` already refused): refused, naming the flag, the file and its row count.
TEST(RunLength, SamplesPastTheFileAreRefused) {
  Fixture fx;
  const fs::path out = fx.dir / "never";
  const std::string file = fx.train.string();
  const std::pair<std::vector<std::string>, std::string> cases[] = {
      {{"--train-samples", "100000"}, "--train-samples 100000: " + file + " has only 80 examples"},
      {{"--eval-file", file, "--eval-samples", "81"}, "--eval-samples 81: " + file + " has only 80 examples"},
      {{"--validation-split", "20", "--train-samples", "61"},
       "--train-samples 61: " + file + " has only 60 examples besides the --validation-split 20"},
  };
  for (const auto& [flags, says] : cases) {
    ASSERT_EQ(run(fx.args(out, flags), fx.dir / "x.txt"), 1) << flags[1] << ": " << slurp(fx.dir / "x.txt");
    EXPECT_TRUE(contains(slurp(fx.dir / "x.txt"), says)) << slurp(fx.dir / "x.txt");
    EXPECT_FALSE(fs::exists(out)) << "a refused run leaves no output directory";
  }
}

// 100,000 layers, or 65,536 labels (a 65,536 x 65,536 confusion matrix per evaluation) ended in
// "internal error: out of memory". The whole run is estimated before anything is allocated.
TEST(MemoryCheck, RunsThatCannotFitAreRefusedBeforeAllocating) {
  Fixture fx;
  const MemoryCap cap("4GiB");
  Json deep = Json::parse(slurp(fx.config));
  deep["num_hidden_layers"] = 100000;
  io::write_file_atomic(fx.dir / "deep.json", deep.dump());
  auto a = fx.args(fx.dir / "deep", {"--max-steps", "1"});
  a[2] = (fx.dir / "deep.json").string();
  ASSERT_EQ(run(a, fx.dir / "deep.txt"), 1) << slurp(fx.dir / "deep.txt");
  const std::string deep_says = slurp(fx.dir / "deep.txt");
  EXPECT_TRUE(contains(deep_says, "train: needs about ")) << deep_says;
  EXPECT_TRUE(contains(deep_says, "GiB of memory (parameters 3.")) << deep_says;
  EXPECT_TRUE(contains(deep_says, "it can have (BERTUNE_MAX_MEMORY=4GiB); to fit, ")) << deep_says;
  EXPECT_TRUE(contains(deep_says, "to fit, lower --per-device-train-batch-size or --max-length (each of the 100000 "
                                  "layers keeps its activations"))
      << deep_says;
  EXPECT_FALSE(contains(deep_says, "internal error")) << deep_says;
  EXPECT_FALSE(fs::exists(fx.dir / "deep"));

  Json wide = Json::parse(slurp(fx.config));
  for (int i = 0; i < 65536; ++i) {
    std::string name = "L";
    name += std::to_string(i);
    wide["id2label"][std::to_string(i)] = name;
  }
  io::write_file_atomic(fx.dir / "wide.json", wide.dump());
  auto b = fx.args(fx.dir / "wide", {"--max-steps", "1", "--validation-split", "16"});
  b[2] = (fx.dir / "wide.json").string();
  ASSERT_EQ(run(b, fx.dir / "wide.txt"), 1) << slurp(fx.dir / "wide.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "wide.txt"), "a 65536 x 65536 confusion matrix 96.0 GiB"))
      << slurp(fx.dir / "wide.txt");
  EXPECT_TRUE(contains(slurp(fx.dir / "wide.txt"), "to fit, a model with fewer labels")) << slurp(fx.dir / "wide.txt");

  // eval checks before it loads anything: a directory with config.json alone is enough.
  fs::create_directories(fx.dir / "wide-model");
  fs::copy_file(fx.dir / "wide.json", fx.dir / "wide-model" / "config.json");
  ASSERT_EQ(run({"eval", "--model", (fx.dir / "wide-model").string(), "--data", fx.train.string()},
                fx.dir / "eval.txt"),
            1);
  EXPECT_TRUE(contains(slurp(fx.dir / "eval.txt"), "eval: needs about ")) << slurp(fx.dir / "eval.txt");

  // What fits is not refused.
  ASSERT_EQ(run(fx.args(fx.dir / "fits", {"--max-steps", "1", "--save-strategy", "no"}), fx.dir / "fits.txt"), 0)
      << slurp(fx.dir / "fits.txt");
}
