// The training loop's observer (train/loop.h LoopObserver, what the Python Trainer's callbacks
// ride on) and datasets handed over in memory (TrainOptions::train_rows): the run a file gives,
// events in HF's order, metrics added before they are logged, a stop at a step boundary.
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "train/loop.h"
#include "train/options.h"
#include "train/report.h"
#include "train/trainer.h"
#include "util/error.h"
#include "train_fixture.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace bertune;

namespace {

// Every event as "kind:step", stopping after step `stop_at`; adds "eval_extra" to evaluations.
struct Recorder : train::LoopObserver {
  std::vector<std::string> events;
  int64_t step = 0, stop_at = 0;
  size_t logits = 0;
  bool on_step_end(int64_t s) override {
    step = s;
    return s == stop_at;
  }
  bool on_log(const Json& record) override {
    events.push_back((record.contains("loss") ? "loss:" : record.contains("eval_loss") ? "eval:" : "log:") +
                     std::to_string(step));
    return false;
  }
  bool wants_eval_logits() const override { return true; }
  bool on_evaluate(Json& metrics, const std::vector<float>& l, const std::vector<int32_t>& labels, size_t) override {
    logits = l.size() / labels.size();
    metrics["eval_extra"] = static_cast<double>(labels.size());
    events.push_back("evaluate:" + std::to_string(step));
    return false;
  }
  bool on_save(const fs::path& checkpoint) override {
    events.push_back("save:" + checkpoint.filename().string());
    return false;
  }
};

std::vector<double> logged_losses(const fs::path& log) {
  std::vector<double> out;
  for (const auto& r : train::JsonlLog::read(log))
    if (r.contains("loss")) out.push_back(r["loss"].get<double>());
  return out;
}

}  // namespace

TEST(LoopObserver, InMemoryRowsEventsMetricsAndStop) {
  TinyTrainDir files("loop_observer");
  const NsmcRows nsmc = nsmc_train_rows(96);
  std::ofstream(files.dir / "train.tsv") << nsmc.header << "\n";
  std::string rows;  // the same reviews as JSONL text
  for (const auto& line : nsmc.rows) {
    std::ofstream(files.dir / "train.tsv", std::ios::app) << line << "\n";
    std::istringstream fields(line);
    std::string id, document, label;
    std::getline(fields, id, '\t');
    std::getline(fields, document, '\t');
    std::getline(fields, label, '\t');
    rows += Json{{"document", document}, {"label", std::stoi(label)}}.dump() + "\n";
  }
  auto options = [&](const std::string& out) {
    return train::train_options_from_json(
        {{"model_config", files.config.string()}, {"train_file", (files.dir / "train.tsv").string()},
         {"max_steps", 8}, {"logging_steps", 2}, {"per_device_train_batch_size", 8}, {"max_length", 32},
         {"save_strategy", "steps"}, {"save_steps", 2}, {"eval_strategy", "steps"}, {"eval_steps", 2},
         {"eval_file", (files.dir / "train.tsv").string()}, {"eval_samples", 16}, {"threads", 2},
         {"output_dir", (files.dir / out).string()}});
  };
  std::FILE* quiet = std::tmpfile();
  train::TrainOptions from_file = options("file");
  train::validate(from_file);
  train::run_training(from_file, quiet);

  train::TrainOptions in_memory = options("memory");
  in_memory.train_file = "train_dataset";  // names the rows in messages
  in_memory.train_rows = rows;
  train::validate(in_memory);
  Recorder recorder;
  recorder.stop_at = 5;
  const train::TrainResult r = train::run_training(in_memory, quiet, &recorder);
  EXPECT_EQ(r.summary.global_step, 5);  // stopped at the step boundary after step 5
  const std::vector<double> file_losses = logged_losses(files.dir / "file" / "log.jsonl");
  const std::vector<double> memory_losses = logged_losses(files.dir / "memory" / "log.jsonl");
  ASSERT_EQ(memory_losses.size(), 2u);
  EXPECT_EQ(memory_losses, std::vector<double>(file_losses.begin(), file_losses.begin() + 2));
  const std::vector<std::string> expected = {"loss:2", "evaluate:2", "eval:2", "save:checkpoint-2",
                                             "loss:4", "evaluate:4", "eval:4", "save:checkpoint-4", "log:5"};
  EXPECT_EQ(recorder.events, expected);
  EXPECT_EQ(recorder.logits, 2u);
  size_t extras = 0;
  for (const auto& rec : train::JsonlLog::read(files.dir / "memory" / "log.jsonl"))
    extras += rec.contains("eval_extra") && rec["eval_extra"] == 16.0;
  EXPECT_EQ(extras, 2u);

  // A bad row in memory is named by its row number.
  train::TrainOptions bad = options("bad");
  bad.train_file = "train_dataset";
  bad.train_rows = rows + "{\"document\": \"x\", \"label\": 7}\n";
  train::validate(bad);
  try {
    train::run_training(bad, quiet);
    FAIL() << "a label outside [0, 2) was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("train_dataset:97"), std::string::npos) << e.what();
  }
  std::fclose(quiet);
}
