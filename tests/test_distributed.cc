// Data-parallel training (train/distributed.h): how a global batch is shared among ranks, the
// global-count loss of unequal shares, and — under mpirun — N ranks x batch b against one
// process x batch N*b: the same logged losses, final weights and evaluation; a checkpoint of
// two ranks resumed by one; mismatched options and a dying rank ending the job.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <thread>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/bert.h"
#include "model/config.h"
#include "train/distributed.h"
#include "train/optimizer.h"
#include "train/report.h"
#include "train/step.h"
#include "train/watchdog.h"
#include "run_cli.h"
#include "test_support.h"
#include "train_fixture.h"

using namespace bertune;
using namespace bertune::train;
namespace fs = std::filesystem;

// The GPU collectives' watchdog (train/watchdog.h) on a probe the test drives: it fires once
// collectives have stood unfinished, without progress, for the timeout (and not before); never
// while they finish, or while none is queued; at once on an error.
namespace {
struct Fired {
  std::mutex m;
  std::vector<std::string> why;
  std::chrono::steady_clock::time_point at;
  void operator()(const std::string& w) {
    std::lock_guard<std::mutex> lock(m);
    why.push_back(w);
    at = std::chrono::steady_clock::now();
  }
  size_t count() {
    std::lock_guard<std::mutex> lock(m);
    return why.size();
  }
};
}  // namespace

TEST(Watchdog, FiresWhenQueuedCollectivesStallForTheTimeout) {
  Fired fired;
  const auto start = std::chrono::steady_clock::now();
  {
    Watchdog dog(0.3, [] { return WatchdogProbe{true, 7, "", ""}; }, std::ref(fired), 0.01);
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  }
  ASSERT_EQ(fired.count(), 1u);  // once
  EXPECT_EQ(fired.why[0], "no GPU collective has finished for 0.3 s (--ddp-timeout): a rank has stopped or hangs");
  EXPECT_GE(std::chrono::duration<double>(fired.at - start).count(), 0.3);
}

// A blocking MPI call that does not return: the probe names it.
TEST(Watchdog, NamesTheStalledCallItIsGiven) {
  Fired fired;
  {
    Watchdog dog(0.2, [] { return WatchdogProbe{true, 3, "", "MPI_Barrier has not returned"}; }, std::ref(fired),
                 0.01);
    std::this_thread::sleep_for(std::chrono::milliseconds(1000));
  }
  ASSERT_EQ(fired.count(), 1u);
  EXPECT_EQ(fired.why[0], "MPI_Barrier has not returned for 0.2 s (--ddp-timeout): a rank has stopped or hangs");
}

TEST(Watchdog, QuietWhileCollectivesFinishOrNoneIsQueued) {
  Fired fired;
  std::atomic<uint64_t> finished{0};
  std::atomic<bool> busy{true};
  {
    Watchdog dog(0.2, [&] { return WatchdogProbe{busy.load(), finished.load(), "", ""}; }, std::ref(fired), 0.01);
    for (int i = 0; i < 40; ++i) {  // 0.8 s busy, finishing one every 20 ms
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
      ++finished;
    }
    busy = false;  // nothing queued: no progress needed
    std::this_thread::sleep_for(std::chrono::milliseconds(600));
  }
  EXPECT_EQ(fired.count(), 0u);
}

TEST(Watchdog, FiresAtOnceOnAnError) {
  Fired fired;
  {
    Watchdog dog(1000, [] { return WatchdogProbe{false, 0, "NCCL: remote process exited", ""}; }, std::ref(fired), 0.01);
    for (int i = 0; i < 200 && fired.count() == 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_EQ(fired.count(), 1u);
  EXPECT_EQ(fired.why[0], "NCCL: remote process exited");
}

TEST(RankShare, SharesLaidEndToEndAreTheBatch) {
  const std::vector<size_t> batch = {9, 3, 7, 1, 5, 0, 8};
  const std::vector<int> lengths = {5, 40, 1, 3, 30, 2, 1, 1, 9, 60};
  for (const std::vector<int>* by : {static_cast<const std::vector<int>*>(nullptr), &lengths})
    for (int ranks : {1, 2, 3, 7, 9}) {
      std::vector<size_t> joined;
      for (int r = 0; r < ranks; ++r) {
        const auto share = rank_share(batch, r, ranks, by);
        joined.insert(joined.end(), share.begin(), share.end());
      }
      EXPECT_EQ(joined, batch) << ranks << " ranks";
    }
}

TEST(RankShare, BalancedByCountOrByTokens) {
  const std::vector<size_t> batch = {0, 1, 2, 3, 4};
  EXPECT_EQ(rank_share(batch, 0, 2), (std::vector<size_t>{0, 1, 2}));  // the first ranks larger
  EXPECT_EQ(rank_share(batch, 1, 2), (std::vector<size_t>{3, 4}));
  EXPECT_TRUE(rank_share({4}, 1, 2).empty());  // fewer examples than ranks: an empty share
  // Tokens 50 | 10 10 10 20: the cut nearest half of 100 falls after the first example.
  const std::vector<int> lengths = {50, 10, 10, 10, 20};
  EXPECT_EQ(rank_share(batch, 0, 2, &lengths), (std::vector<size_t>{0}));
  EXPECT_EQ(rank_share(batch, 1, 2, &lengths), (std::vector<size_t>{1, 2, 3, 4}));
  EXPECT_THROW(rank_share(batch, 2, 2), Error);
}

// Two workers whose micro-batches hold 3 and 1 masked tokens: each divides its loss by the
// global count per worker (2), and their sum over 2 micro-batches is one model's loss and
// gradient on both sequences in one batch (the mean over 4 tokens), not the mean of the two
// workers' means.
class OtherWorker : public GradientReduction {
 public:
  OtherWorker(std::vector<float> grads, double loss, double count) : grads_(std::move(grads)), loss_(loss), count_(count) {}
  int workers() const override { return 2; }
  void sum_counts(std::span<double> values) override { values[0] += count_; }
  void sum_over_workers(float* grads, size_t n, double& loss_sum, double& micro_batches) override {
    for (size_t i = 0; i < n; ++i) grads[i] += grads_[i];
    loss_sum += loss_;
    micro_batches += 1;
  }
  // The device step's call (NCCL's on a GPU), here on host memory.
  void sum_on_device(float* grads, size_t n, double* loss_sum) override {
    double micro_batches = 0;
    sum_over_workers(grads, n, *loss_sum, micro_batches);
  }

 private:
  std::vector<float> grads_;
  double loss_, count_;
};

// on_device: the GPU step's path (loss and decision in "device" memory, the reduction's
// sum_on_device, each rank's loss share added by kernels::add_loss_share) on the CPU.
void unequal_shares_give_the_global_batch_mean(bool on_device) {
  const model::BertConfig config = model::BertConfig::load(shared_path("golden/bert/tiny_config.json"));
  const std::vector<int32_t> sa = {2, 40, 41, 42, 43, 3}, sb = {2, 50, 51, 52, 3};
  const std::vector<int32_t> la = {-100, 40, 41, -100, 43, -100}, lb = {-100, -100, 51, -100, -100};
  model::Batch a = model::Batch::packed({sa}), b = model::Batch::packed({sb}), both = model::Batch::packed({sa, sb});
  a.labels = la;
  b.labels = lb;
  both.labels = la;
  both.labels.insert(both.labels.end(), lb.begin(), lb.end());
  auto fresh = [&] {
    auto m = std::make_unique<model::BertModel>(config, model::Task::MaskedLM);
    m->init_weights(11);
    return m;
  };
  const LrSchedule lr{Schedule::Constant, 1e-3, 0, 10};
  auto whole = fresh();
  AdamW opt_whole(*whole, {});
  const StepOutcome want = TrainStep(*whole, opt_whole, lr, 0).run(both, 0);

  auto other = fresh();  // worker 2: b over the global count per worker
  other->set_loss_denominator(2.0);
  const float loss_b = other->forward(b, true);
  other->backward();
  OtherWorker worker2(std::vector<float>(other->grads(), other->grads() + other->num_params()), loss_b, 1);
  auto worker1 = fresh();
  AdamW opt1(*worker1, {});
  TrainStep step1(*worker1, opt1, lr, 0);
  step1.set_gradient_reduction(&worker2);
  step1.set_decide_on_device(on_device);
  const StepOutcome got = step1.run(a, 0);
  if (on_device) {
    EXPECT_EQ(opt1.steps_done(), 1);
  }
  ASSERT_TRUE(got.finite && want.finite);
  EXPECT_NEAR(got.loss, want.loss, 1e-6 * want.loss);
  EXPECT_NEAR(got.grad_norm, want.grad_norm, 1e-5 * want.grad_norm);
  double worst = 0;
  for (size_t i = 0; i < worker1->num_params(); ++i)
    worst = std::max(worst, std::fabs(double(worker1->params()[i]) - whole->params()[i]));
  EXPECT_LT(worst, 2e-6);  // as TrainStepAccumulation's: one AdamW step at lr 1e-3 over float-order noise
  // The denominator holds for that step only: an evaluation after it is a plain mean.
  EXPECT_NEAR(worker1->forward(a, false), whole->forward(a, false), 1e-5);
}

TEST(DistributedStep, UnequalSharesGiveTheGlobalBatchMean) { unequal_shares_give_the_global_batch_mean(false); }

TEST(DistributedStep, TheDeviceStepSumsTheSameShares) { unequal_shares_give_the_global_batch_mean(true); }

// A reduction that sums nothing and records what the step told it.
class RecordingReduction : public GradientReduction {
 public:
  int workers() const override { return 1; }
  void sum_counts(std::span<double>) override {}
  void touched_rows(TouchedRows rows) override { rows_ = std::move(rows); }
  void sum_over_workers(float* grads, size_t, double&, double&) override {
    calls_++;
    nonzero_untouched_ = 0;
    for (int r = 0; r < rows_.rows; ++r)
      for (int c = 0; c < rows_.cols && !rows_.touched[r]; ++c)
        nonzero_untouched_ += grads[rows_.offset + size_t(r) * rows_.cols + c] != 0.f;
  }
  TouchedRows rows_;
  int calls_ = 0;
  size_t nonzero_untouched_ = 0;
};

// A classifier's step tells the reduction which word-embedding rows its tokens touched, and
// every other row's gradient is zero (what lets the reduction skip them); a masked LM's tied
// decoder touches every row, so it tells nothing.
TEST(DistributedStep, TheStepNamesTheWordEmbeddingRowsItsTokensTouched) {
  const model::BertConfig config = model::BertConfig::load(shared_path("golden/bert/tiny_config.json"));
  const model::Batch batch = model::Batch::packed({{2, 40, 41, 3}, {2, 50, 40, 3}}, {1, 0});
  model::BertModel m(config, model::Task::SequenceClassification);
  AdamW opt(m, {});
  TrainStep step(m, opt, LrSchedule{Schedule::Constant, 1e-3, 0, 10}, 0);
  RecordingReduction rec;
  step.set_gradient_reduction(&rec);
  ASSERT_TRUE(step.run(batch, 0).finite);
  ASSERT_EQ(rec.calls_, 1);
  ASSERT_EQ(rec.rows_.rows, config.vocab_size);
  ASSERT_EQ(rec.rows_.cols, config.hidden_size);
  std::vector<int> touched;
  for (int r = 0; r < rec.rows_.rows; ++r)
    if (rec.rows_.touched[r]) touched.push_back(r);
  EXPECT_EQ(touched, (std::vector<int>{2, 3, 40, 41, 50}));
  EXPECT_EQ(rec.nonzero_untouched_, 0u);

  model::BertModel mlm(config, model::Task::MaskedLM);
  AdamW opt_mlm(mlm, {});
  TrainStep mlm_step(mlm, opt_mlm, LrSchedule{Schedule::Constant, 1e-3, 0, 10}, 0);
  RecordingReduction rec_mlm;
  mlm_step.set_gradient_reduction(&rec_mlm);
  model::Batch masked = model::Batch::packed({{2, 40, 41, 3}});
  masked.labels = {-100, 40, -100, -100};
  ASSERT_TRUE(mlm_step.run(masked, 0).finite);
  EXPECT_EQ(rec_mlm.rows_.rows, 0) << "a masked LM's word-embedding gradient is dense";
}

// A reduction that overlaps the backward and sums nothing: at each gradients_ready it copies
// the part said to be final, and at sum_over_workers (the gradients complete) compares.
class SnapshotReduction : public GradientReduction {
 public:
  int workers() const override { return 1; }
  void sum_counts(std::span<double>) override {}
  bool overlaps() const override { return true; }
  void gradient_layout(std::vector<size_t> ready, size_t n) override {
    layout_ = std::move(ready);
    n_ = n;
  }
  void gradients_ready(float* grads, size_t from) override {
    froms_.push_back(from);
    snapshots_.emplace_back(grads + from, grads + n_);
    whole_.assign(grads, grads + n_);  // at the last report: the embeddings' part not final yet
  }
  void sum_over_workers(float* grads, size_t n, double&, double&) override {
    ASSERT_EQ(n, n_);
    for (size_t i = 0; i < froms_.size(); ++i)
      for (size_t j = 0; j < snapshots_[i].size(); ++j)
        if (snapshots_[i][j] != grads[froms_[i] + j]) {
          changed_++;
          break;
        }
    for (size_t j = 0; j < layout_.back() && !whole_.empty(); ++j) embeddings_changed_ |= whole_[j] != grads[j];
    steps_++;
  }
  std::vector<size_t> layout_, froms_;
  size_t n_ = 0;
  std::vector<std::vector<float>> snapshots_;
  std::vector<float> whole_;
  int changed_ = 0, steps_ = 0;
  bool embeddings_changed_ = false;
};

// Each part of the gradient buffer the backward reports as finished is final: nothing after
// the report (the rest of this backward) changes it. Top-down, at the offsets the model
// lists, during the last micro-batch's backward only; classification with the last layer on
// the [CLS] rows and in full, and a masked LM (whose tied decoder writes the word embeddings'
// gradient from the head).
TEST(DistributedStep, TheBackwardReportsEachFinishedPartOfTheGradients) {
  model::BertConfig config = model::BertConfig::load(shared_path("golden/bert/tiny_config.json"));
  config.num_hidden_layers = 3;
  model::Batch cls = model::Batch::packed({{2, 40, 41, 3}, {2, 50, 40, 60, 3}}, {1, 0});
  model::Batch mlm = model::Batch::packed({{2, 40, 41, 42, 3}, {2, 50, 51, 3}});
  mlm.labels = {-100, 40, -100, 42, -100, -100, 50, -100, -100};
  for (const auto& [task, cls_only] : {std::pair{model::Task::SequenceClassification, true},
                                       std::pair{model::Task::SequenceClassification, false},
                                       std::pair{model::Task::MaskedLM, false}}) {
    SCOPED_TRACE(task == model::Task::MaskedLM ? "masked LM" : cls_only ? "[CLS] rows" : "full last layer");
    model::BertModel m(config, task);
    m.set_last_layer_cls_only(cls_only);
    AdamW opt(m, {});
    TrainStep step(m, opt, LrSchedule{Schedule::Constant, 1e-3, 0, 10}, 0);
    SnapshotReduction rec;
    step.set_gradient_reduction(&rec);
    const std::vector<size_t> want = m.gradient_ready_offsets();
    ASSERT_EQ(want.size(), size_t(config.num_hidden_layers) + 1);
    EXPECT_EQ(rec.layout_, want);
    EXPECT_EQ(rec.n_, m.num_params());
    EXPECT_TRUE(std::is_sorted(want.rbegin(), want.rend()));
    EXPECT_EQ(want.back(), m.param("bert.encoder.layer.0.attention.self.query.weight").offset);
    EXPECT_LT(want.front(), m.num_params());
    const model::Batch& b = task == model::Task::MaskedLM ? mlm : cls;
    const std::vector<model::Batch> two = {b, b};
    ASSERT_TRUE(step.run(two, 0).finite);  // two micro-batches: only the second backward reports
    EXPECT_EQ(rec.steps_, 1);
    EXPECT_EQ(rec.froms_, want);
    EXPECT_EQ(rec.changed_, 0) << "a part reported finished changed afterwards";
    // The comparison can fail: the embeddings' part, not reported, did change after the last report.
    EXPECT_TRUE(rec.embeddings_changed_);
  }
}

// ---------------------------------------------------------------- under mpirun

namespace {

std::string find_mpirun() {
  const char* path = std::getenv("PATH");
  std::string p = path ? path : "";
  for (size_t at = 0; at <= p.size();) {
    const size_t colon = std::min(p.find(':', at), p.size());
    const fs::path cand = fs::path(p.substr(at, colon - at)) / "mpirun";
    if (::access(cand.c_str(), X_OK) == 0) return cand.string();
    at = colon + 1;
  }
  return "";
}

// A 2-layer BERT of width 32, without dropout (tiny0.json) and with it (tiny_dropout.json): a
// rank's share of a packed batch draws the masks its rows have in the global batch, so packed
// runs equal one process with dropout too; padded shares are laid out differently (padded to
// their own longest), so padded runs are compared without dropout.
class MpiTraining : public ::testing::Test {
 protected:
  static inline std::unique_ptr<TinyTrainDir> files;
  static inline std::string mpirun;
  static void SetUpTestSuite() {
    files = std::make_unique<TinyTrainDir>("mpi");
    io::write_file_atomic(files->dir / "tiny0.json", R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0})");
    io::write_file_atomic(files->dir / "tiny_dropout.json", R"({"vocab_size": 32000, "hidden_size": 32,
      "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})");
    io::write_file_atomic(files->dir / "tiny_deep.json", R"({"vocab_size": 32000, "hidden_size": 32,
      "num_hidden_layers": 6, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})");
    const NsmcRows nsmc = nsmc_train_rows(400);
    std::string train, eval;
    for (size_t i = 0; i < nsmc.rows.size(); ++i) (i < 340 ? train : eval) += nsmc.rows[i] + "\n";
    io::write_file_atomic(files->dir / "train.tsv", nsmc.header + "\n" + train);
    io::write_file_atomic(files->dir / "eval.tsv", nsmc.header + "\n" + eval);
    mpirun = find_mpirun();
  }
  static void TearDownTestSuite() { files.reset(); }
  void SetUp() override {
    if (!mpi_built()) GTEST_SKIP() << "this build has no MPI (configured with BERTUNE_MPI=OFF or no MPI found)";
    if (mpirun.empty()) GTEST_SKIP() << "mpirun is not on PATH (Debian: openmpi-bin)";
  }
  static std::string path(const std::string& name) { return (files->dir / name).string(); }
  // `bertune ARGS` in `ranks` processes (one: without mpirun).
  static CliResult run(int ranks, const std::string& args, const std::string& mca = "") {
    if (ranks == 1) return run_cli(args);
    return run_shell(mpirun + " --allow-run-as-root --oversubscribe " + mca + " -np " + std::to_string(ranks) + " " +
                     BERTUNE_BINARY + " " + args);
  }
  // A shell command line (mpirun ...) with its combined output, as run_cli runs the binary.
  static CliResult run_shell(const std::string& command) {
    std::FILE* p = popen((command + " 2>&1").c_str(), "r");
    CliResult r{0, ""};
    char buf[4096];
    for (size_t n; (n = std::fread(buf, 1, sizeof buf, p)) > 0;) r.output.append(buf, n);
    const int st = pclose(p);
    r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
    return r;
  }
  // save_steps 0: no checkpoints.
  static std::string train_args(const std::string& out, int batch, const std::string& padding, int steps = 20,
                                int save_steps = 0, const std::string& config = "tiny0.json") {
    return "train --model-config " + path(config) + " --train-file " + path("train.tsv") + " --eval-file " +
           path("eval.tsv") + " --max-length 32 --max-steps " + std::to_string(steps) +
           " --logging-steps 1 --threads 1 --learning-rate 3e-4 --padding " + padding + " --eval-strategy steps --eval-steps 10 --per-device-eval-batch-size 16" +
           (save_steps > 0 ? " --save-strategy steps --save-steps " + std::to_string(save_steps) : " --save-strategy no") +
           " --per-device-train-batch-size " + std::to_string(batch) + " --output-dir " + path(out);
  }
  static std::vector<nlohmann::json> records(const std::string& out, const char* key) {
    std::vector<nlohmann::json> r;
    for (const auto& rec : JsonlLog::read(fs::path(path(out)) / "log.jsonl"))
      if (rec.contains(key)) r.push_back(rec);
    return r;
  }
  // Every logged loss within 1e-6 relative; every evaluation's figures equal.
  static void expect_same_log(const std::string& a, const std::string& b, size_t losses) {
    const auto la = records(a, "loss"), lb = records(b, "loss");
    ASSERT_EQ(la.size(), losses);
    ASSERT_EQ(lb.size(), losses);
    for (size_t i = 0; i < la.size(); ++i) {
      const double x = la[i]["loss"], y = lb[i]["loss"];
      EXPECT_NEAR(x, y, 1e-6 * std::fabs(y)) << "step " << lb[i]["step"];
    }
    const auto ea = records(a, "eval_accuracy"), eb = records(b, "eval_accuracy");
    ASSERT_EQ(ea.size(), eb.size());
    for (size_t i = 0; i < ea.size(); ++i) {
      EXPECT_EQ(ea[i]["eval_accuracy"], eb[i]["eval_accuracy"]);
      EXPECT_NEAR(double(ea[i]["eval_loss"]), double(eb[i]["eval_loss"]), 1e-6 * double(eb[i]["eval_loss"]));
    }
  }
  // Every final weight within 1e-6 relative to max(1, |w|): AdamW turns a gradient that sums to
  // nearly zero in another order into an update of a fraction of the learning rate, so small
  // weights are held to 1e-6 absolute.
  static void expect_same_weights(const std::string& a, const std::string& b, const char* file) {
    const auto ta = io::read_safetensors(fs::path(path(a)) / "final" / file);
    const auto tb = io::read_safetensors(fs::path(path(b)) / "final" / file);
    ASSERT_EQ(ta.size(), tb.size());
    for (const auto& [name, t] : tb) {
      const auto& u = ta.at(name).data;
      ASSERT_EQ(u.size(), t.data.size()) << name;
      double worst = 0;
      for (size_t i = 0; i < t.data.size(); ++i)
        worst = std::max(worst, std::fabs(double(u[i]) - t.data[i]) / std::max(1.0, double(std::fabs(t.data[i]))));
      EXPECT_LE(worst, 1e-6) << name;
    }
  }
};

}  // namespace

TEST_F(MpiTraining, TwoRanksOfEightAreOneProcessOfSixteenPadded) {
  ASSERT_EQ(run(1, train_args("one_padded", 16, "longest")).status, 0);
  const auto two = run(2, train_args("two_padded", 8, "longest"));
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_TRUE(contains(two.output, "World size = 2 processes (MPI), global batch = 16")) << two.output;
  EXPECT_EQ(two.output.find("Running training"), two.output.rfind("Running training")) << "rank 0's banner alone:\n"
                                                                                      << two.output;
  expect_same_log("two_padded", "one_padded", 20);
  expect_same_weights("two_padded", "one_padded", "model.safetensors");
}

// Packed batches split by tokens, over TCP instead of shared memory.
TEST_F(MpiTraining, TwoRanksOfEightAreOneProcessOfSixteenPackedOverTcp) {
  ASSERT_EQ(run(1, train_args("one_packed", 16, "packed")).status, 0);
  const auto two = run(2, train_args("two_packed", 8, "packed"), "--mca btl tcp,self");
  ASSERT_EQ(two.status, 0) << two.output;
  expect_same_log("two_packed", "one_packed", 20);
  expect_same_weights("two_packed", "one_packed", "model.safetensors");
}

// With dropout (hidden, attention probabilities, classifier): each rank's rows draw the masks
// they have in one process's packed global batch.
TEST_F(MpiTraining, TwoRanksOfEightAreOneProcessOfSixteenPackedWithDropout) {
  ASSERT_EQ(run(1, train_args("one_dropout", 16, "packed", 20, 0, "tiny_dropout.json")).status, 0);
  const auto two = run(2, train_args("two_dropout", 8, "packed", 20, 0, "tiny_dropout.json"));
  ASSERT_EQ(two.status, 0) << two.output;
  expect_same_log("two_dropout", "one_dropout", 20);
  expect_same_weights("two_dropout", "one_dropout", "model.safetensors");
}

TEST_F(MpiTraining, MaskedLmPretrainingOverTwoRanks) {
  auto args = [&](const std::string& out, int batch) {
    return "pretrain --model-config " + path("tiny_dropout.json") + " --train-file " + path("train.tsv") +
           " --max-length 32 --max-steps 12 --logging-steps 1 --threads 1 --learning-rate 3e-4 --gradient-accumulation-steps 2"
           " --validation-reviews 20 --eval-strategy steps --eval-steps 6 --save-strategy no"
           " --per-device-train-batch-size " + std::to_string(batch) + " --output-dir " + path(out);
  };
  const auto one = run(1, args("one_mlm", 8));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto two = run(2, args("two_mlm", 4));
  ASSERT_EQ(two.status, 0) << two.output;
  expect_same_log("two_mlm", "one_mlm", 12);
  const auto ea = records("two_mlm", "eval_loss"), eb = records("one_mlm", "eval_loss");
  ASSERT_EQ(ea.size(), 2u);
  ASSERT_EQ(ea.size(), eb.size());
  for (size_t i = 0; i < ea.size(); ++i)
    EXPECT_NEAR(double(ea[i]["eval_loss"]), double(eb[i]["eval_loss"]), 1e-6 * double(eb[i]["eval_loss"]));
  expect_same_weights("two_mlm", "one_mlm", "model.safetensors");
}

// The gradients summed in buckets overlapping the backward: --ddp-bucket-cap-mb 0.001 (1 KiB)
// makes each of the six layers and the head (~34 KB and ~4.5 KB) a bucket of its own, each
// MPI_Iallreduce started as its layer's backward ends. Over TCP, with dropout: the same run as
// one process.
TEST_F(MpiTraining, SmallBucketsOverlappingTheBackwardAreOneProcessOverTcp) {
  ASSERT_EQ(run(1, train_args("one_deep", 16, "packed", 20, 0, "tiny_deep.json")).status, 0);
  const auto two = run(2, train_args("two_buckets", 8, "packed", 20, 0, "tiny_deep.json") + " --ddp-bucket-cap-mb 0.001",
                       "--mca btl tcp,self");
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_TRUE(contains(two.output, "Gradients summed = 7 buckets of >= 0.001 MiB (--ddp-bucket-cap-mb), overlapping "
                                   "the backward")) << two.output;
  expect_same_log("two_buckets", "one_deep", 20);
  expect_same_weights("two_buckets", "one_deep", "model.safetensors");
}

// Masked-LM pretraining in small buckets (the tied decoder's word-embedding gradient comes from
// the head, the embeddings are summed last), two micro-batches a step (only the second
// backward starts buckets), over shared memory.
TEST_F(MpiTraining, MaskedLmPretrainingInSmallBuckets) {
  auto args = [&](const std::string& out, int batch) {
    return "pretrain --model-config " + path("tiny_deep.json") + " --train-file " + path("train.tsv") +
           " --max-length 32 --max-steps 8 --logging-steps 1 --threads 1 --learning-rate 3e-4 --gradient-accumulation-steps 2"
           " --validation-reviews 20 --eval-strategy no --save-strategy no --ddp-bucket-cap-mb 0.001"
           " --per-device-train-batch-size " + std::to_string(batch) + " --output-dir " + path(out);
  };
  const auto one = run(1, args("one_mlm_buckets", 8));
  ASSERT_EQ(one.status, 0) << one.output;
  const auto two = run(2, args("two_mlm_buckets", 4));
  ASSERT_EQ(two.status, 0) << two.output;
  EXPECT_TRUE(contains(two.output, "Gradients summed = 7 buckets")) << two.output;
  expect_same_log("two_mlm_buckets", "one_mlm_buckets", 8);
  expect_same_weights("two_mlm_buckets", "one_mlm_buckets", "model.safetensors");
}

// Two ranks die after step 10 (checkpoint-10 saved); one process resumes it: steps 11-20 log
// what an uninterrupted single process logs.
TEST_F(MpiTraining, CheckpointOfTwoRanksResumesInOneProcess) {
  auto args = [&](const std::string& out, int batch) { return train_args(out, batch, "longest", 20, 10); };
  ASSERT_EQ(run(1, args("whole", 16)).status, 0);
  ::setenv("BERTUNE_TEST_KILL", "after-step:10", 1);
  const auto killed = run(2, args("resumed", 8));
  ::unsetenv("BERTUNE_TEST_KILL");
  EXPECT_NE(killed.status, 0) << killed.output;
  ASSERT_TRUE(fs::exists(fs::path(path("resumed")) / "checkpoint-10" / "model.safetensors"));
  EXPECT_FALSE(fs::exists(fs::path(path("resumed")) / "final"));
  const auto resumed = run(1, args("resumed", 16) + " --resume-from-checkpoint last");
  ASSERT_EQ(resumed.status, 0) << resumed.output;
  expect_same_log("resumed", "whole", 20);
  expect_same_weights("resumed", "whole", "model.safetensors");
}

TEST_F(MpiTraining, MismatchedOptionsAreAnErrorOnEveryRank) {
  const std::string base = " " + std::string(BERTUNE_BINARY) + " " + train_args("mismatch", 8, "longest");
  const auto r = run_shell(mpirun + " --allow-run-as-root --oversubscribe -np 1" + base + " --seed 1 : -np 1" +
                                 base + " --seed 2");
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, " of 2: the options differ between the ranks (every rank must be started with the "
                                 "same command line)")) << r.output;
  EXPECT_FALSE(fs::exists(fs::path(path("mismatch")) / "final"));
}

// One rank SIGSTOPped after step 6 (alive, never answering): the other, waiting in the next
// step's sums, ends itself after --ddp-timeout with a message naming the call, and mpirun the
// stopped one; the checkpoint saved before loads.
TEST_F(MpiTraining, AHangingRankEndsTheJobAfterTheTimeout) {
  const std::string bin = " " + std::string(BERTUNE_BINARY) + " " + train_args("hanging", 8, "longest", 40, 5) +
                          " --ddp-timeout 3";
  const auto started = std::chrono::steady_clock::now();
  const auto r = run_shell("timeout -s KILL 120 " + mpirun + " --allow-run-as-root --oversubscribe -np 1" + bin +
                           " : -np 1 env BERTUNE_TEST_KILL=stop-after-step:6" + bin);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(seconds, 60) << r.output;
  EXPECT_TRUE(contains(r.output, "bertune: error: rank 0 of 2: MPI_Allreduce (loss counts) has not returned for 3 s "
                                 "(--ddp-timeout): a rank has stopped or hangs; ending the job"))
      << r.output;
  EXPECT_FALSE(fs::exists(fs::path(path("hanging")) / "final"));
  const auto resumed = run(1, train_args("hanging", 16, "longest", 7, 5) + " --resume-from-checkpoint last");
  EXPECT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "checkpoint-5")) << resumed.output;
}

// NCCL sums GPU memory: on the CPU it is refused by name on every rank, nothing written.
TEST_F(MpiTraining, NcclOnTheCpuIsRefusedOnEveryRank) {
  const auto r = run(2, train_args("nccl_cpu", 8, "longest") + " --ddp-backend nccl");
  EXPECT_NE(r.status, 0) << r.output;
  size_t named = 0;
  for (size_t at = 0; (at = r.output.find("bertune: error: --ddp-backend nccl sums GPU memory: use it with --device "
                                          "cuda", at)) != std::string::npos; ++at)
    ++named;
  EXPECT_EQ(named, 2u) << r.output;
  EXPECT_FALSE(fs::exists(path("nccl_cpu")));
}

// ELECTRA's two-model step has no reduction: refused by name, nothing written.
TEST_F(MpiTraining, ElectraIsRefusedAcrossProcesses) {
  const auto r = run(2, "pretrain --objective electra --model-config " + path("tiny0.json") + " --train-file " +
                            path("train.tsv") + " --max-length 32 --max-steps 2 --threads 1 --output-dir " +
                            path("electra"));
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "bertune: error: ELECTRA pretraining (--objective electra) runs in one process"))
      << r.output;
  EXPECT_FALSE(fs::exists(path("electra")));
}

// One rank SIGKILLed after step 6 of 40: the job ends with an error, promptly; the checkpoint
// saved before loads.
TEST_F(MpiTraining, ADyingRankEndsTheJob) {
  const std::string args = train_args("dying", 8, "longest", 40, 5);
  const std::string bin = " " + std::string(BERTUNE_BINARY) + " " + args;
  const auto started = std::chrono::steady_clock::now();
  const auto r = run_shell(mpirun + " --allow-run-as-root --oversubscribe -np 1" + bin +
                                 " : -np 1 env BERTUNE_TEST_KILL=after-step:6" + bin);
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  EXPECT_NE(r.status, 0) << r.output;
  EXPECT_LT(seconds, 30) << r.output;
  EXPECT_FALSE(fs::exists(fs::path(path("dying")) / "final"));
  const auto resumed = run(1, train_args("dying", 16, "longest", 7, 5) + " --resume-from-checkpoint last");
  EXPECT_EQ(resumed.status, 0) << resumed.output;
  EXPECT_TRUE(contains(resumed.output, "checkpoint-5")) << resumed.output;
}
