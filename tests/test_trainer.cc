// End-to-end tests of `bertune train|eval|predict` on a tiny random model: the real binary
// is spawned (and killed), so what is tested is what users run.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "kernels/collectives.h"
#include "train/options.h"
#include "train/report.h"
#include "util/error.h"
#include "util/paths.h"
#include "train_fixture.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace bertune;

namespace {

// 400 training and 80 evaluation reviews cut from the real NSMC training file, beside the
// tiny config.
struct Fixture : TinyNsmcDir {
  Fixture() : TinyNsmcDir("trainer_test", 400, 80) {}
  std::vector<std::string> base_args(const fs::path& out) const {
    return {"train", "--model-config", config.string(), "--train-file", train.string(), "--eval-file",
            eval.string(), "--max-length", "48", "--per-device-train-batch-size", "16", "--learning-rate", "1e-3",
            "--warmup-ratio", "0.1", "--logging-steps", "1", "--output-dir", out.string(), "--threads", "2"};
  }
};

void set_arg(std::vector<std::string>& args, const std::string& flag, const std::string& value) {
  auto it = std::find(args.begin(), args.end(), flag);
  ASSERT_TRUE(it != args.end() && it + 1 != args.end()) << flag;
  *(it + 1) = value;
}

}  // namespace

// The loss curve of a run killed with SIGKILL (mid-epoch, and mid-save) and resumed equals
// the uninterrupted run's: same batches, dropout masks, learning rates and optimizer state.
TEST(TrainerRun, ResumeAfterKillMatchesUninterrupted) {
  Fixture fx;
  auto args = [&](const fs::path& out, bool resume) {
    auto a = fx.base_args(out);
    for (const char* s : {"--num-train-epochs", "2", "--eval-strategy", "steps", "--eval-steps", "10",
                          "--save-strategy", "steps", "--save-steps", "4", "--save-total-limit", "2"})
      a.push_back(s);
    if (resume) a.insert(a.end(), {"--resume-from-checkpoint", "last"});
    return a;
  };
  const fs::path full = fx.dir / "full", killed = fx.dir / "killed";
  ASSERT_EQ(run(args(full, false), fx.dir / "full.txt"), 0) << slurp(fx.dir / "full.txt");
  auto expected = metric_by_step(full / "log.jsonl", "loss");
  ASSERT_EQ(expected.size(), 50u);  // 400 examples / 16 = 25 steps x 2 epochs, logged every step

  // Kill 1: mid-epoch 1, right after step 17 (logged; checkpoint-16 is the last saved). Kill 2:
  // inside the save of checkpoint-36 (mid-epoch 2): its files are in the temporary directory,
  // not yet published, so the resume below starts from checkpoint-32 and removes them.
  ASSERT_TRUE(run_until_killed(args(killed, false), "after-step:17", fx.dir / "k1.txt")) << slurp(fx.dir / "k1.txt");
  EXPECT_EQ(count_loss_records(killed / "log.jsonl"), 17u);
  EXPECT_TRUE(fs::exists(killed / "checkpoint-16"));
  ASSERT_TRUE(run_until_killed(args(killed, true), "in-save:36", fx.dir / "k2.txt")) << slurp(fx.dir / "k2.txt");
  EXPECT_EQ(count_loss_records(killed / "log.jsonl"), 36u);
  EXPECT_FALSE(fs::exists(killed / "checkpoint-36"));
  EXPECT_TRUE(has_interrupted_save(killed, "checkpoint-36"));
  EXPECT_TRUE(fs::exists(killed / "checkpoint-32"));
  for (const auto& e : fs::directory_iterator(killed)) {
    const std::string name = e.path().filename().string();
    if (name.rfind("checkpoint-", 0) != 0 || name.find(".tmp-") != std::string::npos) continue;
    for (const char* f : {"config.json", "model.safetensors", "optimizer.safetensors", "trainer_state.json",
                          "bertune_state.json"})
      EXPECT_TRUE(fs::exists(e.path() / f)) << e.path() << " lacks " << f;
    EXPECT_NO_THROW(io::read_safetensors(e.path() / "model.safetensors")) << e.path();
  }
  // What a kill earlier inside a save leaves: a half-written temporary directory. Resume must
  // neither pick it nor keep it.
  fs::create_directories(killed / "checkpoint-49.tmp-99999");
  io::write_file_atomic(killed / "checkpoint-49.tmp-99999" / "model.safetensors", "torn");
  ASSERT_EQ(run(args(killed, true), fx.dir / "k3.txt"), 0) << slurp(fx.dir / "k3.txt");
  EXPECT_FALSE(fs::exists(killed / "checkpoint-49.tmp-99999"));
  EXPECT_FALSE(has_interrupted_save(killed, "checkpoint-36"));
  EXPECT_NE(slurp(fx.dir / "k3.txt").find("Resuming from"), std::string::npos);

  auto got = metric_by_step(killed / "log.jsonl", "loss");
  ASSERT_EQ(got.size(), expected.size());
  double worst = 0;
  for (const auto& [step, loss] : expected) {
    ASSERT_TRUE(got.count(step)) << "step " << step << " missing after resume";
    worst = std::max(worst, std::fabs(got[step] - loss));
  }
  EXPECT_LE(worst, 1e-6) << "largest loss difference after resume";
  auto eval_a = metric_by_step(full / "log.jsonl", "eval_loss"), eval_b = metric_by_step(killed / "log.jsonl", "eval_loss");
  ASSERT_EQ(eval_a.size(), 5u);
  for (const auto& [step, v] : eval_a) EXPECT_NEAR(eval_b[step], v, 1e-6) << "eval at step " << step;
  // HF layout of the finished run.
  auto state = Json::parse(slurp(killed / "trainer_state.json"));
  EXPECT_EQ(state["global_step"], 50);
  EXPECT_TRUE(fs::exists(killed / "final" / "config.json"));
  EXPECT_TRUE(fs::exists(killed / "final" / "vocab.txt"));
}

TEST(TrainerRun, NonFiniteLossStopsAndKeepsLastGoodCheckpoint) {
  Fixture fx;
  const fs::path out = fx.dir / "nan";
  auto a = fx.base_args(out);
  set_arg(a, "--learning-rate", "1e30");  // blows the weights up
  set_arg(a, "--warmup-ratio", "0");
  for (const char* s : {"--save-strategy", "steps", "--save-steps", "1"}) a.push_back(s);
  ASSERT_EQ(run(a, fx.dir / "nan.txt"), 3) << slurp(fx.dir / "nan.txt");  // exit 3: the non-finite guard
  std::string console = slurp(fx.dir / "nan.txt");
  EXPECT_NE(console.find("non-finite loss — step skipped"), std::string::npos) << console;
  EXPECT_NE(console.find("3 steps in a row had a non-finite loss or gradient"), std::string::npos) << console;
  // Step 1 was finite and saved; steps 2-4 were skipped and saved nothing.
  EXPECT_NE(console.find("last good checkpoint is " + (out / "checkpoint-1").string()), std::string::npos) << console;
  EXPECT_TRUE(fs::exists(out / "checkpoint-1" / "model.safetensors"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-2"));
  EXPECT_FALSE(fs::exists(out / "checkpoint-4"));
}

TEST(TrainerRun, BadFlagsFailClearlyAndWriteNothing) {
  Fixture fx;
  const fs::path out = fx.dir / "never";
  auto a = fx.base_args(out);
  a.insert(a.end(), {"--eval-strategy", "epochs"});
  EXPECT_EQ(run(a, fx.dir / "bad.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "bad.txt").find("--eval-strategy: 'epochs' is not one of no|steps|epoch"), std::string::npos);
  auto b = fx.base_args(out);
  b.insert(b.end(), {"--load-best-model-at-end", "--eval-strategy", "epoch", "--save-strategy", "steps"});
  EXPECT_EQ(run(b, fx.dir / "bad2.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "bad2.txt").find("requires the save and eval strategy to match"), std::string::npos);
  auto c = fx.base_args(out);
  set_arg(c, "--train-file", (fx.dir / "missing.tsv").string());
  EXPECT_EQ(run(c, fx.dir / "bad3.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "bad3.txt").find("missing.tsv"), std::string::npos) << slurp(fx.dir / "bad3.txt");
  EXPECT_FALSE(fs::exists(out)) << "a rejected run must not create its output dir";
}

// Early stopping, best checkpoint and save_total_limit together, through the real loop:
// patience 1 with an unreachable threshold stops after the second evaluation; the first
// checkpoint is the best and survives save_total_limit=1 next to the newest.
TEST(TrainerRun, EarlyStoppingBestCheckpointAndRotation) {
  Fixture fx;
  const fs::path out = fx.dir / "es";
  auto a = fx.base_args(out);
  for (const char* s : {"--num-train-epochs", "5", "--eval-strategy", "epoch", "--save-strategy", "epoch",
                        "--load-best-model-at-end", "--metric-for-best-model", "loss", "--early-stopping-patience",
                        "1", "--early-stopping-threshold", "100", "--save-total-limit", "1"})
    a.push_back(s);
  ASSERT_EQ(run(a, fx.dir / "es.txt"), 0) << slurp(fx.dir / "es.txt");
  auto state = Json::parse(slurp(out / "trainer_state.json"));
  EXPECT_EQ(state["global_step"], 50);  // 2 of 5 epochs
  EXPECT_EQ(state["best_model_checkpoint"], (out / "checkpoint-25").string());
  EXPECT_TRUE(fs::exists(out / "checkpoint-25"));
  EXPECT_TRUE(fs::exists(out / "checkpoint-50"));
  auto evals = metric_by_step(out / "log.jsonl", "eval_loss");
  ASSERT_EQ(evals.size(), 2u);
  EXPECT_DOUBLE_EQ(state["best_metric"].get<double>(), std::min(evals[25], evals[50]) == evals[50] && evals[50] < evals[25]
                                                           ? evals[50] : evals[25]);
  EXPECT_NE(slurp(fx.dir / "es.txt").find("Loading best model from"), std::string::npos);
}

TEST(TrainerRun, ValidationSplitCarvesTheEvalSet) {
  Fixture fx;
  const fs::path out = fx.dir / "vs";
  auto a = fx.base_args(out);
  a.erase(a.begin() + 5, a.begin() + 7);  // no --eval-file: carve it from the training file
  for (const char* s : {"--validation-split", "80", "--data-seed", "7", "--max-steps", "4", "--eval-strategy",
                        "steps", "--eval-steps", "4", "--save-strategy", "no"})
    a.push_back(s);
  ASSERT_EQ(run(a, fx.dir / "vs.txt"), 0) << slurp(fx.dir / "vs.txt");
  std::string console = slurp(fx.dir / "vs.txt");
  EXPECT_NE(console.find("Num examples = 320, eval 80"), std::string::npos) << console;
  EXPECT_EQ(metric_by_step(out / "log.jsonl", "eval_accuracy").size(), 1u);
  auto b = a;
  b.insert(b.end(), {"--eval-file", fx.eval.string()});
  EXPECT_EQ(run(b, fx.dir / "vs2.txt"), 1);  // both: ambiguous, refused
  EXPECT_NE(slurp(fx.dir / "vs2.txt").find("--validation-split"), std::string::npos);
}

// `bertune eval` on the saved model reproduces the trainer's own evaluation of those
// weights; `bertune predict` writes one {label, probs, logits} line per text.
TEST(TrainerRun, EvalAndPredictOnTheSavedModel) {
  Fixture fx;
  const fs::path out = fx.dir / "ep";
  auto a = fx.base_args(out);
  for (const char* s : {"--max-steps", "8", "--eval-strategy", "steps", "--eval-steps", "8", "--save-strategy", "no"})
    a.push_back(s);
  ASSERT_EQ(run(a, fx.dir / "ep.txt"), 0) << slurp(fx.dir / "ep.txt");
  auto acc = metric_by_step(out / "log.jsonl", "eval_accuracy");
  auto loss = metric_by_step(out / "log.jsonl", "eval_loss");
  ASSERT_EQ(acc.size(), 1u);
  ASSERT_EQ(run({"eval", "--model", (out / "final").string(), "--data", fx.eval.string(), "--max-length", "48",
                 "--json"},
                fx.dir / "eval.txt"),
            0)
      << slurp(fx.dir / "eval.txt");
  auto j = Json::parse(slurp(fx.dir / "eval.txt"));
  EXPECT_DOUBLE_EQ(j["eval_accuracy"].get<double>(), acc[8]);
  EXPECT_NEAR(j["eval_loss"].get<double>(), loss[8], 1e-6);

  ASSERT_EQ(run({"predict", "--model", (out / "final").string(), "정말 재밌어요", "최악의 영화"}, fx.dir / "pred.txt"), 0)
      << slurp(fx.dir / "pred.txt");
  std::istringstream lines(slurp(fx.dir / "pred.txt"));
  std::string line;
  int n = 0;
  while (std::getline(lines, line)) {
    auto r = Json::parse(line);
    auto probs = r["probs"].get<std::vector<double>>();
    auto logits = r["logits"].get<std::vector<double>>();
    ASSERT_EQ(probs.size(), 2u);
    EXPECT_NEAR(probs[0] + probs[1], 1.0, 1e-6);
    EXPECT_EQ(r["label"].get<int>(), logits[1] > logits[0] ? 1 : 0);
    EXPECT_NEAR(probs[1], 1.0 / (1.0 + std::exp(logits[0] - logits[1])), 1e-6);
    ++n;
  }
  EXPECT_EQ(n, 2);
  ASSERT_EQ(run({"predict", "--model", (out / "final").string(), "--input", fx.eval.string(), "--output",
                 (fx.dir / "pred.jsonl").string()},
                fx.dir / "pred2.txt"),
            0)
      << slurp(fx.dir / "pred2.txt");
  EXPECT_EQ(train::JsonlLog::read(fx.dir / "pred.jsonl").size(), 80u);

  // The saved directory is a --model for further fine-tuning (HF layout round trip).
  auto b = fx.base_args(fx.dir / "again");
  auto cfg = std::find(b.begin(), b.end(), "--model-config");
  *cfg = "--model";
  *(cfg + 1) = (out / "final").string();
  for (const char* s : {"--max-steps", "2", "--save-strategy", "no"}) b.push_back(s);
  ASSERT_EQ(run(b, fx.dir / "again.txt"), 0) << slurp(fx.dir / "again.txt");
  EXPECT_EQ(slurp(fx.dir / "again.txt").find("newly initialized"), std::string::npos)  // the head was saved too
      << slurp(fx.dir / "again.txt");
}

// `bertune compare`: four runs, a table with one row per mode, and a picture. Padding can
// only shrink from max_length to longest (same random order), and packing removes it.
TEST(TrainerRun, CompareFourModes) {
  Fixture fx;
  const fs::path out = fx.dir / "cmp";
  auto a = fx.base_args(out);
  a[0] = "compare";
  for (const char* s : {"--num-train-epochs", "1", "--logging-steps", "100"}) a.push_back(s);
  a.erase(std::find(a.begin(), a.end(), "--logging-steps"), std::find(a.begin(), a.end(), "--logging-steps") + 2);
  ASSERT_EQ(run(a, fx.dir / "cmp.txt"), 0) << slurp(fx.dir / "cmp.txt");
  auto rows = Json::parse(slurp(out / "compare.json"));
  ASSERT_EQ(rows.size(), 4u);
  std::map<std::string, double> pad;
  for (const auto& r : rows) {
    pad[r["mode"]] = r["summary"]["train_padding_fraction"].get<double>();
    EXPECT_EQ(r["metric"], "accuracy");
    EXPECT_EQ(r["epoch_accuracy"].size(), 1u) << r["mode"];
    EXPECT_EQ(r["epoch_seconds"].size(), 1u) << r["mode"];
  }
  EXPECT_GT(pad["max_length"], pad["longest"]);
  EXPECT_LT(pad["longest+group_by_length"], pad["longest"]);
  EXPECT_EQ(pad["packed"], 0.0);
  std::string md = slurp(out / "compare.md");
  EXPECT_NE(md.find("| longest+group_by_length |"), std::string::npos) << md;
  EXPECT_TRUE(fs::file_size(out / "compare.png") > 1000);
}

// `bertune bench train` times the trainer's own step on the trainer's own batches: with the
// same flags, its loss after every step equals `bertune train`'s logged loss at that step,
// across an epoch boundary (25 batches of 16 per epoch here).
TEST(TrainerRun, BenchTrainRunsTheTrainersStep) {
  Fixture fx;
  auto a = fx.base_args(fx.dir / "trained");
  for (const char* s : {"--max-steps", "30", "--save-strategy", "no", "--weight-decay", "0.01"}) a.push_back(s);
  ASSERT_EQ(run(a, fx.dir / "train.txt"), 0) << slurp(fx.dir / "train.txt");
  auto trainer_loss = metric_by_step(fx.dir / "trained" / "log.jsonl", "loss");
  ASSERT_EQ(trainer_loss.size(), 30u);

  auto b = a;
  b[0] = "train";
  b.insert(b.begin(), "bench");
  set_arg(b, "--output-dir", (fx.dir / "bench").string());
  for (const char* s : {"--steps", "5", "--warmup", "5", "--repeat", "3", "--json"}) b.push_back(s);
  ASSERT_EQ(run(b, fx.dir / "bench.txt"), 0) << slurp(fx.dir / "bench.txt");
  std::istringstream console(slurp(fx.dir / "bench.txt"));
  Json bench;
  for (std::string line; std::getline(console, line);)
    if (!line.empty() && line[0] == '{') bench = Json::parse(line);
  ASSERT_TRUE(bench.contains("losses")) << slurp(fx.dir / "bench.txt");
  const auto losses = bench["losses"].get<std::vector<double>>();
  ASSERT_EQ(losses.size(), 30u);
  for (int64_t step = 1; step <= 30; ++step)
    EXPECT_EQ(static_cast<float>(losses[step - 1]), static_cast<float>(trainer_loss.at(step))) << "step " << step;
  EXPECT_FALSE(fs::exists(fx.dir / "bench")) << "bench train writes nothing";
}

// A checkpoint whose files disagree (an edited trainer_state.json) is refused before anything
// is written: HF would believe it and continue from step 999 with the weights of step 8.
TEST(TrainerRun, ResumeRefusesAnInconsistentCheckpoint) {
  Fixture fx;
  const fs::path out = fx.dir / "incons";
  auto a = fx.base_args(out);
  for (const char* s : {"--max-steps", "8", "--save-strategy", "steps", "--save-steps", "4"}) a.push_back(s);
  ASSERT_EQ(run(a, fx.dir / "first.txt"), 0) << slurp(fx.dir / "first.txt");
  const std::string final_weights = slurp(out / "final" / "model.safetensors");
  const fs::path ckpt = out / "checkpoint-8";
  auto state = Json::parse(slurp(ckpt / "trainer_state.json"));
  state["global_step"] = 999;
  io::write_file_atomic(ckpt / "trainer_state.json", state.dump(2));
  const std::string log_before = slurp(out / "log.jsonl");

  auto b = a;
  set_arg(b, "--max-steps", "12");
  b.insert(b.end(), {"--resume-from-checkpoint", ckpt.string()});
  EXPECT_EQ(run(b, fx.dir / "resume.txt"), 1) << slurp(fx.dir / "resume.txt");
  const std::string console = slurp(fx.dir / "resume.txt");
  EXPECT_NE(console.find("inconsistent checkpoint"), std::string::npos) << console;
  EXPECT_NE(console.find("global_step 999"), std::string::npos) << console;
  EXPECT_EQ(slurp(out / "final" / "model.safetensors"), final_weights) << "final/ must not be rewritten";
  EXPECT_EQ(slurp(out / "log.jsonl"), log_before) << "the log must not be touched";

  // A state file with a field of the wrong kind is named, not reported as library text.
  state["global_step"] = "eight";
  io::write_file_atomic(ckpt / "trainer_state.json", state.dump(2));
  EXPECT_EQ(run(b, fx.dir / "resume2.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "resume2.txt").find("field \"global_step\" must be an integer (found \"eight\")"),
            std::string::npos)
      << slurp(fx.dir / "resume2.txt");
  EXPECT_EQ(slurp(fx.dir / "resume2.txt").find("json.exception"), std::string::npos);
}

// eval/predict on a model without a trained classifier head (a base BERT checkpoint): HF only
// warns and predicts with a random head; bertune refuses unless asked.
TEST(TrainerRun, EvalAndPredictRefuseAnUntrainedHead) {
  Fixture fx;
  const fs::path out = fx.dir / "headless";
  auto a = fx.base_args(out);
  for (const char* s : {"--max-steps", "2", "--save-strategy", "no"}) a.push_back(s);
  ASSERT_EQ(run(a, fx.dir / "train.txt"), 0) << slurp(fx.dir / "train.txt");
  const fs::path base = fx.dir / "base-model";
  fs::create_directories(base);
  for (const char* f : {"config.json", "vocab.txt", "tokenizer_config.json"})
    if (fs::exists(out / "final" / f)) fs::copy_file(out / "final" / f, base / f);
  auto tensors = io::read_safetensors(out / "final" / "model.safetensors");
  std::vector<TensorRef> kept;
  for (const auto& [name, t] : tensors)
    if (name.rfind("classifier.", 0) != 0) kept.push_back({name, t.shape, t.data.data()});
  io::write_safetensors(base / "model.safetensors", kept);

  EXPECT_EQ(run({"eval", "--model", base.string(), "--data", fx.eval.string(), "--max-length", "48"},
                fx.dir / "eval.txt"),
            1);
  EXPECT_NE(slurp(fx.dir / "eval.txt").find("has no trained classification head (missing: classifier.weight"),
            std::string::npos)
      << slurp(fx.dir / "eval.txt");
  EXPECT_EQ(run({"predict", "--model", base.string(), "좋아요"}, fx.dir / "pred.txt"), 1);
  EXPECT_EQ(run({"predict", "--model", base.string(), "--allow-untrained-head", "좋아요"}, fx.dir / "pred2.txt"), 0)
      << slurp(fx.dir / "pred2.txt");
  EXPECT_NE(slurp(fx.dir / "pred2.txt").find("predictions are meaningless"), std::string::npos);
}

// SIGINT mid-run: the loop stops between steps, exits 130, leaves no temporary directory and
// says which checkpoint a resume continues from; the resumed run finishes normally.
TEST(TrainerRun, InterruptStopsBetweenStepsAndNamesTheCheckpoint) {
  Fixture fx;
  const fs::path out = fx.dir / "sigint";
  auto a = fx.base_args(out);
  for (const char* s : {"--num-train-epochs", "4", "--save-strategy", "steps", "--save-steps", "5"}) a.push_back(s);
  pid_t pid = spawn(a, fx.dir / "int.txt");
  int status = 0;
  while (count_loss_records(out / "log.jsonl") < 12) {
    ASSERT_NE(waitpid(pid, &status, WNOHANG), pid) << "ended before the signal: " << slurp(fx.dir / "int.txt");
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  kill(pid, SIGINT);
  waitpid(pid, &status, 0);
  ASSERT_TRUE(WIFEXITED(status)) << slurp(fx.dir / "int.txt");
  EXPECT_EQ(WEXITSTATUS(status), 130) << slurp(fx.dir / "int.txt");
  const std::string console = slurp(fx.dir / "int.txt");
  EXPECT_NE(console.find("the last checkpoint is " + (out / "checkpoint-").string()), std::string::npos) << console;
  for (const auto& e : fs::directory_iterator(out))
    EXPECT_EQ(e.path().filename().string().find(".tmp-"), std::string::npos) << e.path();
  EXPECT_FALSE(fs::exists(out / "final"));
  a.insert(a.end(), {"--resume-from-checkpoint", "last"});
  EXPECT_EQ(run(a, fx.dir / "resumed.txt"), 0) << slurp(fx.dir / "resumed.txt");
}

// A tokenizer directory without tokenizer_config.json lower-cases and strips accents (HF's
// defaults): Hangul turns into [UNK]. The first batch shows it, and the user is told. Models
// trained on NSMC name their labels.
TEST(TrainerRun, WarnsAboutUnknownTokensAndNamesNsmcLabels) {
  Fixture fx;
  const fs::path tok = fx.dir / "bare-tokenizer";
  fs::create_directories(tok);
  fs::copy_file(shared_path("models/klue-bert-base/vocab.txt"), tok / "vocab.txt");
  auto a = fx.base_args(fx.dir / "unk");
  for (const char* s : {"--max-steps", "2", "--save-strategy", "no", "--tokenizer"}) a.push_back(s);
  a.push_back(tok.string());
  ASSERT_EQ(run(a, fx.dir / "unk.txt"), 0) << slurp(fx.dir / "unk.txt");
  EXPECT_NE(slurp(fx.dir / "unk.txt").find("[UNK]"), std::string::npos) << slurp(fx.dir / "unk.txt");

  auto b = fx.base_args(fx.dir / "named");
  for (const char* s : {"--max-steps", "2", "--save-strategy", "no"}) b.push_back(s);
  ASSERT_EQ(run(b, fx.dir / "named.txt"), 0) << slurp(fx.dir / "named.txt");
  EXPECT_EQ(slurp(fx.dir / "named.txt").find("[UNK]"), std::string::npos) << slurp(fx.dir / "named.txt");
  auto config = Json::parse(slurp(fx.dir / "named" / "final" / "config.json"));
  EXPECT_EQ(config["id2label"]["0"], "negative");
  EXPECT_EQ(config["id2label"]["1"], "positive");
  ASSERT_EQ(run({"predict", "--model", (fx.dir / "named" / "final").string(), "--input", fx.dir.string()},
                fx.dir / "dir.txt"),
            1);
  EXPECT_NE(slurp(fx.dir / "dir.txt").find("is a directory"), std::string::npos) << slurp(fx.dir / "dir.txt");
}

// The error train_options_from_json gives for these options beside the required ones ("" if none).
static std::string options_error(nlohmann::json j) {
  j.update({{"model_config", "c.json"}, {"output_dir", "o"}});
  try {
    train::train_options_from_json(j);
  } catch (const Error& e) {
    return std::string(e.what());
  }
  return std::string();
}

// --max-tokens-per-batch: packed padding only, a budget the longest example fits in.
TEST(TrainOptionsTokenBudget, IsValidatedByName) {
  const auto error_of = options_error;
  EXPECT_EQ(error_of({{"max_tokens_per_batch", 4096}}), "");
  EXPECT_EQ(error_of({{"max_tokens_per_batch", -1}}),
            "--max-tokens-per-batch: must not be negative (0: sample-count batches)");
  EXPECT_EQ(error_of({{"max_tokens_per_batch", 4096}, {"padding", "longest"}}),
            "--max-tokens-per-batch builds packed batches: use --padding packed (not longest)");
  EXPECT_EQ(error_of({{"max_tokens_per_batch", 100}}),
            "--max-tokens-per-batch 100 is below --max-length 128: the longest example must fit in one batch");
}

TEST(TrainOptionsBuckets, AreValidatedByName) {
  const auto error_of = options_error;
  EXPECT_EQ(error_of({{"ddp_bucket_cap_mb", 25}}), "");
  EXPECT_EQ(error_of({{"ddp_bucket_cap_mb", 0.5}}), "");
  EXPECT_EQ(error_of({{"ddp_bucket_cap_mb", -1}}),
            "--ddp-bucket-cap-mb: must not be negative (0: one reduction after the backward)");
  EXPECT_EQ(error_of({{"ddp_bucket_cap_mb", "lots"}}), "options: ddp_bucket_cap_mb: 'lots' is not a number");
}

// --ddp-backend against --device and the build, named before the device's own check (this
// holds without a GPU: the pairs are refused by name first).
TEST(TrainOptionsDdpBackend, BadPairsAreNamed) {
  const auto error_of = options_error;
  EXPECT_EQ(error_of({{"ddp_backend", "mpi"}}), "");
  EXPECT_EQ(error_of({{"ddp_backend", "gloo"}}), "--ddp-backend: 'gloo' is not one of mpi|nccl");
  EXPECT_EQ(error_of({{"ddp_backend", "nccl"}}),
            "--ddp-backend nccl sums GPU memory: use it with --device cuda (on the CPU the gradients are summed over "
            "MPI: --ddp-backend mpi)");
  EXPECT_EQ(error_of({{"ddp_backend", "mpi"}, {"device", "cuda"}}),
            "--ddp-backend mpi sums host memory: it runs with --device cpu; on GPUs the gradients are summed with "
            "--ddp-backend nccl");
  EXPECT_EQ(error_of({{"ddp_timeout", 0}}), "--ddp-timeout: must be a positive number of seconds");
  EXPECT_EQ(error_of({{"ddp_timeout", 60}}), "");
  // nccl with cuda: refused for the build (no NCCL / no CUDA) or else for the machine (no GPU)
  // by the device's check; accepted on a machine with both.
  const std::string cuda = error_of({{"ddp_backend", "nccl"}, {"device", "cuda"}});
  if (!kernels::nccl_built()) {
    EXPECT_EQ(cuda, "--ddp-backend nccl: " + kernels::nccl_missing());
    EXPECT_TRUE(cuda.starts_with("--ddp-backend nccl: this bertune was built without")) << cuda;
  } else if (!cuda.empty()) {
    EXPECT_TRUE(cuda.starts_with("--device cuda")) << cuda;
  }
}

// Token-budget batches in a real run: each epoch holds every example once (the same real
// tokens), epochs differ in their number of batches, and a run resumed from a checkpoint
// logs exactly the uninterrupted run's losses.
TEST(TrainerRun, TokenBudgetBatchesResumeExactly) {
  Fixture fx;
  auto args = [&](const fs::path& out) {
    auto a = fx.base_args(out);
    for (const char* s : {"--num-train-epochs", "2", "--max-tokens-per-batch", "400", "--save-strategy", "steps",
                          "--save-steps", "7"})
      a.push_back(s);
    return a;
  };
  const fs::path full = fx.dir / "tokens-full", resumed = fx.dir / "tokens-resumed";
  ASSERT_EQ(run(args(full), fx.dir / "tfull.txt"), 0) << slurp(fx.dir / "tfull.txt");
  std::vector<Json> epoch_ends;
  for (const auto& r : train::JsonlLog::read(full / "log.jsonl"))
    if (r.contains("epoch_end")) epoch_ends.push_back(r);
  ASSERT_EQ(epoch_ends.size(), 2u);
  EXPECT_EQ(epoch_ends[0]["epoch_real_tokens"], epoch_ends[1]["epoch_real_tokens"]);
  EXPECT_EQ(epoch_ends[0]["epoch_real_tokens"], epoch_ends[0]["epoch_processed_tokens"]);  // packed: no padding
  const int64_t steps_0 = epoch_ends[0]["step"].get<int64_t>();
  EXPECT_GE(steps_0 * 400, epoch_ends[0]["epoch_real_tokens"].get<int64_t>());  // no batch above the budget
  const auto expected = metric_by_step(full / "log.jsonl", "loss");
  ASSERT_EQ(static_cast<int64_t>(expected.size()), epoch_ends[1]["step"].get<int64_t>());

  fs::create_directories(resumed);
  fs::copy(full / "checkpoint-14", resumed / "checkpoint-14", fs::copy_options::recursive);
  auto a = args(resumed);
  a.insert(a.end(), {"--resume-from-checkpoint", (resumed / "checkpoint-14").string()});
  ASSERT_EQ(run(a, fx.dir / "tresumed.txt"), 0) << slurp(fx.dir / "tresumed.txt");
  const auto got = metric_by_step(resumed / "log.jsonl", "loss");
  double worst = 0;
  size_t compared = 0;
  for (const auto& [step, loss] : expected) {
    if (step <= 14) continue;
    ASSERT_TRUE(got.count(step)) << "step " << step << " missing after resume";
    worst = std::max(worst, std::fabs(got.at(step) - loss));
    ++compared;
  }
  EXPECT_GT(compared, 0u);
  EXPECT_LE(worst, 1e-6) << "largest loss difference after resume";
}

// problem_type regression and multi_label_classification end to end on a tiny model: a
// score column and a label-set column of a TSV, a few steps with evaluation, `eval`'s
// metrics, the problem_type in the saved config.json, `predict`'s output per problem type,
// and a bad label refused with FILE:LINE.
TEST(TrainerRun, RegressionAndMultiLabelEndToEnd) {
  TinyTrainDir fx("problem_types");
  const NsmcRows nsmc = nsmc_train_rows(64);
  std::ofstream reg(fx.dir / "reg.tsv"), multi(fx.dir / "multi.tsv");
  reg << "document\tscore\n";
  multi << "document\ttags\n";
  for (size_t i = 0; i < nsmc.rows.size(); ++i) {
    const std::string& row = nsmc.rows[i];  // id \t document \t label
    const size_t a = row.find('\t'), b = row.rfind('\t');
    const std::string text = row.substr(a + 1, b - a - 1);
    const bool positive = row.substr(b + 1) == "1", long_text = text.size() > 40;
    reg << text << "\t" << (positive ? 4.5 : 1.0) + (long_text ? 0.25 : 0.0) << "\n";
    std::string tags = positive ? "positive" : "";
    if (long_text) tags += tags.empty() ? "long" : ",long";
    if (i % 3 == 0) tags += tags.empty() ? "2" : ",2";  // an id instead of a name
    multi << text << "\t" << tags << "\n";
  }
  reg.close();
  multi.close();
  io::write_file_atomic(fx.dir / "multi.json", R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "id2label": {"0": "positive", "1": "long", "2": "third"}})");
  struct Case {
    const char* name;
    fs::path config, data;
    const char *column, *problem, *metric;
  };
  for (const Case& c : {Case{"regression", fx.config, fx.dir / "reg.tsv", "score", "regression", "spearmanr"},
                        Case{"multi", fx.dir / "multi.json", fx.dir / "multi.tsv", "tags", "multi_label_classification",
                             "micro_f1"}}) {
    SCOPED_TRACE(c.name);
    const fs::path out = fx.dir / c.name;
    std::vector<std::string> args = {"train", "--model-config", c.config.string(), "--train-file", c.data.string(),
                                     "--eval-file", c.data.string(), "--label-column", c.column, "--problem-type",
                                     c.problem, "--max-length", "32", "--per-device-train-batch-size", "16",
                                     "--max-steps", "4", "--eval-strategy", "steps", "--eval-steps", "4",
                                     "--save-strategy", "no", "--metric-for-best-model", c.metric, "--logging-steps",
                                     "1", "--output-dir", out.string(), "--threads", "2"};
    const fs::path log = fx.dir / (std::string(c.name) + ".txt");
    ASSERT_EQ(run(args, log), 0) << slurp(log);
    // The evaluation table shows the problem type's metrics.
    EXPECT_NE(slurp(log).find(c.problem == std::string("regression") ? "| Pearson  | Spearm |" : "| Accuracy | MicroF |"),
              std::string::npos)
        << slurp(log);
    const auto steps = metric_by_step(out / "log.jsonl", (std::string("eval_") + c.metric).c_str());
    ASSERT_EQ(steps.size(), 1u) << slurp(out / "log.jsonl");
    const Json config = Json::parse(slurp(out / "final" / "config.json"));
    EXPECT_EQ(config["problem_type"], c.problem);
    EXPECT_EQ(config["id2label"].size(), c.problem == std::string("regression") ? 1u : 3u);

    ASSERT_EQ(run({"eval", "--model", (out / "final").string(), "--data", c.data.string(), "--label-column", c.column,
                   "--max-length", "32", "--json"},
                  log),
              0)
        << slurp(log);
    const Json j = Json::parse(slurp(log));
    EXPECT_NEAR(j[std::string("eval_") + c.metric].get<double>(), steps.at(4), 1e-6);
    ASSERT_EQ(run({"eval", "--model", (out / "final").string(), "--data", c.data.string(), "--label-column", c.column,
                   "--max-length", "32"},
                  log),
              0);
    EXPECT_NE(slurp(log).find(c.problem == std::string("regression") ? "Spearman rho" : "micro-F1"), std::string::npos)
        << slurp(log);

    ASSERT_EQ(run({"predict", "--model", (out / "final").string(), "정말 재밌어요"}, log), 0) << slurp(log);
    const Json p = Json::parse(slurp(log));
    if (c.problem == std::string("regression")) {
      EXPECT_TRUE(p.is_object() && p["score"].is_number()) << p;
      EXPECT_NEAR(p["score"].get<double>(), 2.5, 2.5) << p;  // somewhere between the two scores it learnt
    } else {
      ASSERT_TRUE(p.is_array() && p.size() == 3u) << p;
      for (size_t k = 0; k < 3; ++k) {
        EXPECT_GT(p[k]["score"].get<double>(), 0.0);
        EXPECT_LT(p[k]["score"].get<double>(), 1.0);
        if (k) {
          EXPECT_GE(p[k - 1]["score"].get<double>(), p[k]["score"].get<double>());  // highest first
        }
      }
    }
  }
  // compare on a regression run reports Pearson's r per epoch (it has no accuracy).
  ASSERT_EQ(run({"compare", "--model-config", fx.config.string(), "--train-file", (fx.dir / "reg.tsv").string(),
                 "--eval-file", (fx.dir / "reg.tsv").string(), "--label-column", "score", "--problem-type",
                 "regression", "--max-length", "32", "--per-device-train-batch-size", "32", "--num-train-epochs", "1",
                 "--logging-steps", "100", "--output-dir", (fx.dir / "cmp").string(), "--threads", "2"},
                fx.dir / "cmp.txt"),
            0)
      << slurp(fx.dir / "cmp.txt");
  for (const auto& r : Json::parse(slurp(fx.dir / "cmp" / "compare.json"))) {
    EXPECT_EQ(r["metric"], "pearson");
    EXPECT_EQ(r["epoch_pearson"].size(), 1u) << r;
  }
  EXPECT_NE(slurp(fx.dir / "cmp" / "compare.md").find("eval pearson per epoch"), std::string::npos);

  // A metric of another problem type, and a label outside the model's, are refused by name.
  ASSERT_EQ(run({"train", "--model-config", fx.config.string(), "--train-file", (fx.dir / "reg.tsv").string(),
                 "--label-column", "score", "--problem-type", "regression", "--metric-for-best-model", "accuracy",
                 "--max-length", "32", "--max-steps", "1", "--output-dir", (fx.dir / "bad").string()},
                fx.dir / "bad.txt"),
            1);
  EXPECT_NE(slurp(fx.dir / "bad.txt").find("not a metric of problem_type regression"), std::string::npos)
      << slurp(fx.dir / "bad.txt");
  std::ofstream(fx.dir / "badtags.tsv") << "document\ttags\nfine\tpositive\nnot fine\tpositive,music\n";
  ASSERT_EQ(run({"train", "--model-config", (fx.dir / "multi.json").string(), "--train-file",
                 (fx.dir / "badtags.tsv").string(), "--label-column", "tags", "--problem-type",
                 "multi_label_classification", "--max-length", "32", "--max-steps", "1", "--output-dir",
                 (fx.dir / "bad2").string()},
                fx.dir / "bad2.txt"),
            1);
  EXPECT_NE(slurp(fx.dir / "bad2.txt").find("badtags.tsv:3: label 'music' in column 'tags'"), std::string::npos)
      << slurp(fx.dir / "bad2.txt");
}
