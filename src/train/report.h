#pragma once
// What a training run tells its user: a live progress line on a terminal (plain periodic
// lines when stderr is a file or pipe), the notebook's per-epoch table, every log record as
// one JSON line in the output dir, and a TrainOutput-like summary at the end.
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bertune::train {

std::string format_duration(double seconds);  // 0:01:23 / 12.3s

class Progress {
 public:
  // total: optimizer steps of the whole run; first: the step it starts at (resume).
  Progress(int64_t total, int64_t first, std::FILE* out = stderr);
  // After each optimizer step. loss: that step's loss; samples/tokens: of that step.
  void step(int64_t global_step, double epoch, double loss, double lr, int64_t samples, int64_t real_tokens);
  void message(const std::string& line);  // prints a line without breaking the bar
  void finish();
  bool is_tty() const { return tty_; }

 private:
  void draw(bool force);
  std::FILE* out_;
  bool tty_;
  int64_t total_, first_, current_ = 0;
  double epoch_ = 0, loss_ema_ = 0, lr_ = 0;
  bool have_loss_ = false;
  int64_t samples_ = 0, tokens_ = 0;
  std::chrono::steady_clock::time_point start_, last_draw_;
  bool drawn_ = false;
  bool drawn_final_ = false;  // the last step's line is out already
};

// The notebook's table, one row per evaluation, printed as each row arrives.
class EpochTable {
 public:
  explicit EpochTable(std::FILE* out = stdout) : out_(out) {}
  void row(double epoch, int64_t step, double train_loss, const nlohmann::json& eval_metrics, double seconds);

 private:
  std::FILE* out_;
  bool header_done_ = false;
};

// Append-only JSONL: each record is written as one line with one write() and fsync'ed, so
// a kill -9 can at worst lose the line being written, never tear an earlier one.
class JsonlLog {
 public:
  explicit JsonlLog(std::filesystem::path path);
  ~JsonlLog();
  JsonlLog(const JsonlLog&) = delete;
  JsonlLog& operator=(const JsonlLog&) = delete;
  void append(const nlohmann::json& record);
  const std::filesystem::path& path() const { return path_; }
  // On resume: keep only the records of steps <= step (what the checkpoint had seen),
  // rewriting the file atomically; a torn last line is dropped too.
  static void truncate_after(const std::filesystem::path& path, int64_t step);
  static std::vector<nlohmann::json> read(const std::filesystem::path& path);

 private:
  std::filesystem::path path_;
  int fd_ = -1;
};

// Trainer.train()'s TrainOutput metrics, plus what HF does not measure.
struct TrainSummary {
  int64_t global_step = 0;
  double training_loss = 0;  // mean loss over all steps of the run
  double train_runtime = 0;  // seconds
  double train_samples_per_second = 0;
  double train_steps_per_second = 0;
  double total_flos = 0;     // 6 x processed (padded) input tokens x non-embedding parameters
  double epoch = 0;
  double real_tokens_per_second = 0;
  double padding_fraction = 0;
  int64_t skipped_steps = 0;
  nlohmann::json to_json() const;
  std::string to_text() const;
};

}  // namespace bertune::train
