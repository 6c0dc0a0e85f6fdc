#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "io/atomic_file.h"
#include "cli/train_flags.h"
#include "io/json_error.h"
#include "train/options.h"
#include "train/run_state.h"
#include "train/state.h"
#include "util/error.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace bertune;
using namespace bertune::train;

// The notebook's callback: EarlyStoppingCallback(patience=3, threshold=0.01) on accuracy.
// Each evaluation is compared with the best of *earlier* evaluations, and the best creeps up
// on every strict improvement (at save time) even when the improvement was under threshold.
TEST(EarlyStopping, ThresholdIsAbsoluteAgainstEarlierBest) {
  EarlyStopping es{3, 0.01};
  TrainerState st;
  auto evaluate = [&](double acc, int step) {
    bool stop = es.on_evaluate(acc, st.best_metric, true);  // callback first (inside evaluate())
    update_best(st, acc, "out/checkpoint-" + std::to_string(step), true);  // then _save_checkpoint
    return stop;
  };
  EXPECT_FALSE(evaluate(0.800, 1));  // no best yet -> counter 0
  EXPECT_EQ(es.counter, 0);
  EXPECT_FALSE(evaluate(0.805, 2));  // better, but by 0.005 <= 0.01 -> 1; best becomes 0.805
  EXPECT_EQ(es.counter, 1);
  EXPECT_DOUBLE_EQ(*st.best_metric, 0.805);
  EXPECT_FALSE(evaluate(0.830, 3));  // +0.025 over 0.805 -> reset
  EXPECT_EQ(es.counter, 0);
  EXPECT_FALSE(evaluate(0.839, 4));  // +0.009 -> 1 (best 0.839)
  EXPECT_FALSE(evaluate(0.848, 5));  // +0.009 -> 2 (best 0.848)
  EXPECT_EQ(es.counter, 2);
  EXPECT_TRUE(evaluate(0.848, 6));   // equal -> 3 >= patience: stop
  EXPECT_EQ(*st.best_model_checkpoint, "out/checkpoint-5");
}

TEST(EarlyStopping, LowerIsBetterForLoss) {
  EarlyStopping es{2, 0.0};
  std::optional<double> best;
  EXPECT_FALSE(es.on_evaluate(0.5, best, false));
  best = 0.5;
  EXPECT_FALSE(es.on_evaluate(0.6, best, false));  // worse -> 1
  EXPECT_FALSE(es.on_evaluate(0.4, best, false));  // better by 0.1 > 0 -> 0
  EXPECT_EQ(es.counter, 0);
  EXPECT_FALSE(es.on_evaluate(0.5, best, false));
  EXPECT_TRUE(es.on_evaluate(0.5, best, false));   // 0.5 vs 0.5: not strictly better
  EarlyStopping off;
  EXPECT_FALSE(off.on_evaluate(1.0, 0.0, true));
}

TEST(BestCheckpoint, StrictImprovementOnly) {
  TrainerState st;
  EXPECT_TRUE(update_best(st, 0.80, "o/checkpoint-10", true));
  EXPECT_FALSE(update_best(st, 0.80, "o/checkpoint-20", true));  // a tie keeps the earlier one
  EXPECT_FALSE(update_best(st, 0.79, "o/checkpoint-30", true));
  EXPECT_TRUE(update_best(st, 0.81, "o/checkpoint-40", true));
  EXPECT_EQ(*st.best_model_checkpoint, "o/checkpoint-40");
  TrainerState loss;
  update_best(loss, 0.7, "a", false);
  EXPECT_TRUE(update_best(loss, 0.6, "b", false));
  EXPECT_FALSE(update_best(loss, 0.65, "c", false));
}

class Rotation : public ::testing::Test {
 protected:
  // Per process: ctest runs the three Rotation tests as separate processes, in parallel with -j2.
  fs::path dir = fs::temp_directory_path() / ("bertune_rotation_test_" + std::to_string(::getpid()));
  void SetUp() override {
    fs::remove_all(dir);
    for (int s : {10, 20, 30, 40, 50}) fs::create_directories(dir / ("checkpoint-" + std::to_string(s)));
    fs::create_directories(dir / "checkpoint-60.tmp-123");  // an interrupted save: never counted
  }
  void TearDown() override { fs::remove_all(dir); }
  std::vector<std::string> remaining() {
    std::vector<std::string> names;
    for (auto& p : sorted_checkpoints(dir, std::nullopt)) names.push_back(p.filename().string());
    return names;
  }
};

TEST_F(Rotation, KeepsTheBestBeyondTheLimit) {
  std::string best = (dir / "checkpoint-20").string();
  auto order = sorted_checkpoints(dir, best);  // best bubbled to second-to-last
  ASSERT_EQ(order.size(), 5u);
  EXPECT_EQ(order[3].filename(), "checkpoint-20");
  EXPECT_EQ(order[4].filename(), "checkpoint-50");
  auto deleted = rotate_checkpoints(dir, 2, best);
  EXPECT_EQ(deleted.size(), 3u);
  EXPECT_EQ(remaining(), (std::vector<std::string>{"checkpoint-20", "checkpoint-50"}));
}

TEST_F(Rotation, LimitOneKeepsBestAndNewestForResume) {
  rotate_checkpoints(dir, 1, (dir / "checkpoint-30").string());
  EXPECT_EQ(remaining(), (std::vector<std::string>{"checkpoint-30", "checkpoint-50"}));
  rotate_checkpoints(dir, 1, (dir / "checkpoint-50").string());  // best is newest: one left
  EXPECT_EQ(remaining(), (std::vector<std::string>{"checkpoint-50"}));
}

TEST_F(Rotation, NoLimitNoBest) {
  EXPECT_TRUE(rotate_checkpoints(dir, 0, std::nullopt).empty());
  rotate_checkpoints(dir, 3, std::nullopt);
  EXPECT_EQ(remaining(), (std::vector<std::string>{"checkpoint-30", "checkpoint-40", "checkpoint-50"}));
  EXPECT_EQ(last_checkpoint(dir).filename(), "checkpoint-50");
}

TEST(TrainerStateFile, HfKeysRoundTrip) {
  TrainerState st;
  st.global_step = 375;
  st.epoch = 3.0;
  st.max_steps = 375;
  st.num_train_epochs = 3;
  st.best_metric = 0.8415;
  st.best_model_checkpoint = "out/checkpoint-125";
  st.log_history.push_back({{"loss", 0.6931}, {"learning_rate", 4.9e-05}, {"epoch", 0.08}, {"step", 10}});
  fs::path f = fs::temp_directory_path() / "bertune_state_test" / "trainer_state.json";
  st.save(f);
  auto j = nlohmann::json::parse(io::read_file(f));
  for (const char* key : {"best_metric", "best_model_checkpoint", "epoch", "global_step", "is_hyper_param_search",
                          "is_local_process_zero", "is_world_process_zero", "log_history", "max_steps",
                          "num_train_epochs", "total_flos", "trial_name", "trial_params"})
    EXPECT_TRUE(j.contains(key)) << key;
  auto back = TrainerState::load(f);
  EXPECT_EQ(back.global_step, 375);
  EXPECT_EQ(*back.best_model_checkpoint, "out/checkpoint-125");
  EXPECT_EQ(back.log_history[0]["step"], 10);
  fs::remove_all(f.parent_path());
}

TEST(CollapseWarning, SameMetricAndPredictionsOrOneClass) {
  CollapseDetector d;
  EXPECT_EQ(d.on_evaluate(0.8, {0, 1, 1, 0}, 2), "");
  EXPECT_EQ(d.on_evaluate(0.82, {0, 1, 1, 1}, 2), "");
  EXPECT_NE(d.on_evaluate(0.82, {0, 1, 1, 1}, 2), "");  // identical to the previous evaluation
  CollapseDetector e;
  auto w = e.on_evaluate(0.8415, {1, 1, 1, 1}, 2);
  EXPECT_NE(w.find("label 1 for every"), std::string::npos) << w;
}

// ---- options ----

static TrainOptions parse(std::vector<std::string> args, cli::TrainFlags& raw) {
  CLI::App app;
  auto* cmd = app.add_subcommand("train");
  cli::add_train_flags(cmd, raw);
  std::vector<std::string> argv = {"train"};
  argv.insert(argv.end(), args.begin(), args.end());
  std::reverse(argv.begin(), argv.end());  // CLI11 parses a reversed vector
  app.parse(argv);
  return cli::resolve_train_flags(raw);
}

static std::string flags_error(std::vector<std::string> args) {
  cli::TrainFlags raw;
  try {
    parse(std::move(args), raw);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

TEST(TrainOptionsParse, DefaultsFlagsAndConfigOverride) {
  fs::path cfg = fs::temp_directory_path() / "bertune_opts_test.json";
  io::write_file_atomic(cfg, R"({"learning_rate": 3e-5, "num_train_epochs": 5, "evaluation_strategy": "epoch",
                                 "save_strategy": "epoch", "per_device_train_batch_size": 16})");
  cli::TrainFlags raw;
  auto o = parse({"--config", cfg.string(), "--model-config", "c.json", "--output-dir", "o",
                  "--learning-rate", "1e-5", "--load-best-model-at-end", "--metric-for-best-model", "accuracy"},
                 raw);
  EXPECT_DOUBLE_EQ(o.learning_rate, 1e-5);  // flag beats file
  EXPECT_DOUBLE_EQ(o.num_train_epochs, 5);  // file beats default
  EXPECT_EQ(o.per_device_train_batch_size, 16);
  EXPECT_EQ(o.per_device_eval_batch_size, 8);  // HF default
  EXPECT_EQ(o.eval_strategy, Strategy::Epoch);
  EXPECT_TRUE(o.load_best_model_at_end);
  EXPECT_TRUE(o.higher_is_better());
  EXPECT_EQ(o.metric_key(), "eval_accuracy");
  EXPECT_EQ(o.padding, infer::Padding::Packed);
  EXPECT_EQ(o.eval_steps, 500);  // = logging_steps
  fs::remove(cfg);
}

TEST(TrainOptionsParse, ClearErrorsNamingTheFlag) {
  const std::vector<std::string> base = {"--model-config", "c.json", "--output-dir", "o"};
  auto with = [&](std::vector<std::string> extra) {
    auto a = base;
    a.insert(a.end(), extra.begin(), extra.end());
    return flags_error(a);
  };
  EXPECT_EQ(with({"--eval-strategy", "epochs"}), "--eval-strategy: 'epochs' is not one of no|steps|epoch");
  EXPECT_EQ(with({"--learning-rate", "fast"}), "--learning-rate: 'fast' is not a number");
  EXPECT_EQ(with({"--per-device-train-batch-size", "0"}), "--per-device-train-batch-size: must be positive");
  EXPECT_EQ(with({"--padding", "dynamic"}), "--padding: 'dynamic' is not one of max_length|longest|packed");
  EXPECT_NE(with({"--load-best-model-at-end", "--eval-strategy", "epoch"}).find("save and eval strategy to match"),
            std::string::npos);
  EXPECT_NE(with({"--load-best-model-at-end", "--eval-strategy", "steps", "--eval-steps", "30", "--save-steps", "50"})
                .find("round multiple"),
            std::string::npos);
  EXPECT_NE(with({"--early-stopping-patience", "3"}).find("requires --load-best-model-at-end"), std::string::npos);
  EXPECT_NE(with({"--metric-for-best-model", "precision_0"}).find("not one of loss|accuracy|f1"), std::string::npos);
  EXPECT_EQ(with({"--task", "ner"}), "--task: 'ner' is not one of sequence-classification|token-classification");
  EXPECT_EQ(with({"--task", "token-classification", "--problem-type", "regression"}),
            "--task token-classification reads a tag per word: --problem-type does not apply");
  EXPECT_EQ(with({"--task", "token-classification", "--num-labels", "5"}),
            "--task token-classification reads a tag per word: --num-labels does not apply");
  EXPECT_EQ(with({"--problem-type", "multilabel"}),
            "--problem-type: 'multilabel' is not one of regression|single_label_classification|"
            "multi_label_classification");
  EXPECT_NE(with({"--metric-for-best-model", "pearsonr"}).find("not one of loss|accuracy|f1|micro_f1|mse|pearson|spearmanr"),
            std::string::npos);
  EXPECT_NE(flags_error({"--output-dir", "o"}).find("--model"), std::string::npos);
  EXPECT_EQ(with({"--group-by-length=maybe"}), "--group-by-length: 'maybe' is not true|false");
  // Config-file errors name the file and key.
  fs::path cfg = fs::temp_directory_path() / "bertune_opts_bad.json";
  io::write_file_atomic(cfg, R"({"learning_rat": 1e-5})");
  EXPECT_EQ(with({"--config", cfg.string()}), cfg.string() + ": unknown option 'learning_rat'");
  io::write_file_atomic(cfg, R"({"max_steps": "ten"})");
  EXPECT_EQ(with({"--config", cfg.string()}), cfg.string() + ": max_steps: 'ten' is not an integer");
  fs::remove(cfg);
}

TEST(TrainOptionsParse, GreaterIsBetterFollowsMetricName) {
  auto o = train_options_from_json({{"model_config", "c"}, {"output_dir", "o"}, {"load_best_model_at_end", true},
                                    {"eval_strategy", "epoch"}, {"save_strategy", "epoch"}});
  EXPECT_EQ(o.metric_key(), "eval_loss");
  EXPECT_FALSE(o.higher_is_better());
  auto p = train_options_from_json({{"model_config", "c"}, {"output_dir", "o"}, {"metric_for_best_model", "f1"},
                                    {"greater_is_better", false}});
  EXPECT_FALSE(p.higher_is_better());
  // Regression: a lower MSE is better, higher correlations are.
  auto mse = train_options_from_json({{"model_config", "c"}, {"output_dir", "o"}, {"metric_for_best_model", "mse"}});
  EXPECT_FALSE(mse.higher_is_better());
  auto r = train_options_from_json({{"model_config", "c"}, {"output_dir", "o"}, {"metric_for_best_model", "pearson"}});
  EXPECT_TRUE(r.higher_is_better());
}

#include "train/presets.h"

TEST(Presets, NotebookRunsValidateWithTheirSettings) {
  for (const auto& p : presets()) {
    TrainOptions o;
    ASSERT_NO_THROW(o = train_options_from_json(p.options, p.name)) << p.name;
  }
  auto run3 = train_options_from_json(find_preset("notebook-3").options);
  EXPECT_EQ(run3.train_samples, 10000);
  EXPECT_EQ(run3.per_device_train_batch_size, 32);
  EXPECT_DOUBLE_EQ(run3.learning_rate, 1e-5);
  EXPECT_EQ(run3.early_stopping_patience, 3);
  EXPECT_DOUBLE_EQ(run3.early_stopping_threshold, 0.01);
  EXPECT_EQ(run3.metric_key(), "eval_accuracy");
  EXPECT_EQ(run3.padding, infer::Padding::MaxLength);
  auto run4 = train_options_from_json(find_preset("notebook-4").options);
  EXPECT_EQ(run4.padding, infer::Padding::Longest);
  EXPECT_TRUE(run4.group_by_length);
  EXPECT_THROW(find_preset("notebook-9"), Error);
}

// ---------------------------------------------------------------- values a run never writes

namespace {
std::string options_error(nlohmann::json j) {
  j["model_config"] = "c.json";
  j["output_dir"] = "o";
  return error_of([&] { train::train_options_from_json(j, "opts.json"); });
}

nlohmann::json run_state_with(const std::string& key, const nlohmann::json& value) {
  train::RunState r;
  r.optimizer_steps = 3;
  r.skipped_steps = 1;
  r.epoch_index = 1;
  nlohmann::json j = r.to_json();
  j[key] = value;
  return j;
}
}  // namespace

TEST(TrainOptions, TorchRangesAndSignsAreChecked) {
  EXPECT_EQ(options_error({}), "");
  EXPECT_EQ(options_error({{"adam_beta1", 1.5}}), "--adam-beta1: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"adam_beta2", -0.5}}), "--adam-beta2: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"adam_epsilon", -1}}), "--adam-epsilon: must not be negative");
  EXPECT_EQ(options_error({{"hidden_dropout", 1}}), "--hidden-dropout: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"attention_dropout", 1}}), "--attention-dropout: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"train_samples", -5}}), "--train-samples: must be positive (or -1 for all)");
  EXPECT_EQ(options_error({{"eval_samples", -2}}), "--eval-samples: must be positive (or -1 for all)");
  EXPECT_TRUE(contains(options_error({{"threads", 100000}}), "at most 256"));
  // int fields: no silent wrap to a negative number, no 1.5 -> 1.
  EXPECT_EQ(options_error({{"per_device_train_batch_size", 2147483648ll}}),
            "opts.json: per_device_train_batch_size: 2147483648 is out of range [-2147483648, 2147483647]");
  EXPECT_EQ(options_error({{"per_device_train_batch_size", "99999999999"}}),
            "opts.json: per_device_train_batch_size: '99999999999' is out of range [-2147483648, 2147483647]");
  EXPECT_EQ(options_error({{"per_device_train_batch_size", 1.5}}), "opts.json: per_device_train_batch_size: 1.5 is not an integer");
  EXPECT_EQ(options_error({{"logging_steps", "99999999999999999999"}}),
            "opts.json: logging_steps: '99999999999999999999' is out of range [-9223372036854775808, 9223372036854775807]");
}

// fuzz_trainer_state: the same overflow in trainer_state.json (read on resume).
TEST(TrainerStateFile, NumberOverflowIsAnError) {
  auto e = error_of([] { train::TrainerState::load(fuzz_fixture("trainer_state_number_overflow.json")); });
  EXPECT_TRUE(contains(e, "trainer_state_number_overflow.json: not valid JSON (number overflow parsing")) << e;
  TempDir tmp("state_fields");
  fs::path state = tmp.file("trainer_state.json", R"({"epoch": 1.0})");
  EXPECT_EQ(error_of([&] { train::TrainerState::load(state); }), state.string() + ": missing field \"global_step\"");
}

// A hand-edited or corrupted bertune_state.json was believed: negative counts went into
// AdamW's bias correction and the loss windows (no run writes them).
TEST(ResumeState, CountsOutsideWhatARunWritesAreRefused) {
  auto refused = [](const std::string& key, const nlohmann::json& v) {
    return error_of([&] { train::RunState::from_json(run_state_with(key, v), "ck/bertune_state.json"); });
  };
  EXPECT_EQ(refused("optimizer_steps", -5),
            "ck/bertune_state.json: field \"optimizer_steps\" is -5; it counts, so it must be >= 0");
  EXPECT_TRUE(contains(refused("run_loss_steps", -1), "field \"run_loss_steps\" is -1"));
  EXPECT_TRUE(contains(refused("early_stopping_counter", -2), "field \"early_stopping_counter\" is -2"));
  EXPECT_TRUE(contains(refused("nonfinite_streak", 3), "field \"nonfinite_streak\" is 3; a saved run has 0, 1 or 2"));
  EXPECT_TRUE(contains(refused("log_loss_sum", std::numeric_limits<double>::infinity()),
                       "field \"log_loss_sum\" must be a finite number"));
  EXPECT_TRUE(contains(refused("real_tokens", 10), "real_tokens 10 exceeds processed_tokens 0"));
  EXPECT_EQ(refused("samples", 7), "");  // the base itself is accepted
}

// The collapse detector compares metric i with prediction hash i; a state with fewer hashes
// than metrics made the next evaluation read past the hashes (heap overflow under ASan).
TEST(ResumeState, CollapseHistoryOfUnequalLengthsIsRefused) {
  auto j = run_state_with("collapse", {{"prediction_hashes", nlohmann::json::array()}, {"metrics", {0.5, 0.5}}});
  EXPECT_EQ(error_of([&] { train::RunState::from_json(j, "s.json"); }),
            "s.json: field \"collapse\" has 0 prediction hashes but 2 metrics");
  auto not_ours = run_state_with("collapse", "x");
  EXPECT_EQ(error_of([&] { train::RunState::from_json(not_ours, "s.json"); }),
            "s.json: field \"collapse\" is not what bertune writes");
}

// epoch_index * steps_per_epoch + batch_in_epoch wrapped (signed overflow, UB): epoch 2^62 of
// 4 steps "agreed" with global_step 1, and the resumed run started at epoch 2^62.
TEST(ResumeState, DataPositionThatOverflowsIsInconsistent) {
  train::TrainerState state;
  state.global_step = 1;
  train::RunState run;
  run.optimizer_steps = 1;
  run.epoch_index = int64_t{1} << 62;
  run.batch_in_epoch = 1;
  auto e = error_of([&] { train::check_resume_consistent("out/checkpoint-1", state, run, 4); });
  EXPECT_TRUE(contains(e, "inconsistent checkpoint")) << e;
  EXPECT_TRUE(contains(e, "the data position is epoch 4611686018427387904, batch 1 of 4")) << e;
  run.epoch_index = 0;
  EXPECT_EQ(error_of([&] { train::check_resume_consistent("out/checkpoint-1", state, run, 4); }), "");
}

// What the fuzz target reads first: another run's fingerprint is named, not believed.
TEST(ResumeState, AnotherRunsFingerprintIsRefusedNamingBoth) {
  TempDir tmp("run_state_fp");
  auto j = run_state_with("samples", 0);
  j["fingerprint"] = {{"seed", 1}};
  tmp.file("bertune_state.json", j.dump());
  auto e = error_of([&] { train::read_run_state(tmp.path, {{"seed", 2}}); });
  EXPECT_TRUE(contains(e, "was made with {\"seed\":1} but this run has {\"seed\":2}")) << e;
  tmp.file("bertune_state.json", "[1, 2]");
  EXPECT_TRUE(contains(error_of([&] { train::read_run_state(tmp.path, {{"seed", 2}}); }),
                       "bertune_state.json: expected a JSON object, found array"));
}

// fuzz_bertune_state finding (second run): a prediction hash beyond 2^64 parsed as a double
// and was converted to uint64_t (undefined; UBSan's report, a garbage hash in release).
TEST(ResumeState, BertuneStateHashOverflowIsAnError) {
  const fs::path f = fuzz_fixture("bertune_state_hash_overflow.json");
  EXPECT_EQ(error_of([&] { train::RunState::from_json(io::read_json_file(f), "s.json"); }),
            "s.json: field \"collapse\" is not what bertune writes");
}
