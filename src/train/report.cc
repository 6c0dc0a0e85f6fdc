#include "train/report.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstring>
#include <sstream>

#include "io/atomic_file.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

std::string format_duration(double s) {
  char buf[64];
  if (!std::isfinite(s) || s < 0) return "?";
  if (s < 60) {
    std::snprintf(buf, sizeof buf, "%.1fs", s);
  } else {
    long t = static_cast<long>(s + 0.5);
    std::snprintf(buf, sizeof buf, "%ld:%02ld:%02ld", t / 3600, (t / 60) % 60, t % 60);
  }
  return buf;
}

Progress::Progress(int64_t total, int64_t first, std::FILE* out)
    : out_(out), tty_(::isatty(::fileno(out)) != 0), total_(total), first_(first), current_(first) {
  start_ = last_draw_ = std::chrono::steady_clock::now();
}

void Progress::step(int64_t global_step, double epoch, double loss, double lr, int64_t samples, int64_t tokens) {
  current_ = global_step;
  epoch_ = epoch;
  lr_ = lr;
  if (std::isfinite(loss)) {
    // A short moving average: single-batch losses are too noisy to read.
    loss_ema_ = have_loss_ ? 0.9 * loss_ema_ + 0.1 * loss : loss;
    have_loss_ = true;
  }
  samples_ += samples;
  tokens_ += tokens;
  draw(global_step == total_);
}

void Progress::draw(bool force) {
  auto now = std::chrono::steady_clock::now();
  double since_draw = std::chrono::duration<double>(now - last_draw_).count();
  // Terminal: redraw at most 10 times a second. Log file: a line every 30 s.
  if (!force && since_draw < (tty_ ? 0.1 : 30.0)) return;
  last_draw_ = now;
  double elapsed = std::chrono::duration<double>(now - start_).count();
  int64_t done = current_ - first_;
  double rate = elapsed > 0 ? done / elapsed : 0;  // steps/s
  double eta = rate > 0 ? (total_ - current_) / rate : NAN;
  char stats[256];
  std::snprintf(stats, sizeof stats, "%lld/%lld  epoch %.2f  loss %.4f  lr %.3g  %.1f samples/s  %.0f tok/s  %s<%s",
                static_cast<long long>(current_), static_cast<long long>(total_), epoch_, have_loss_ ? loss_ema_ : NAN,
                lr_, elapsed > 0 ? samples_ / elapsed : 0.0, elapsed > 0 ? tokens_ / elapsed : 0.0,
                format_duration(elapsed).c_str(), format_duration(eta).c_str());
  if (tty_) {
    const int width = 24;
    double frac = total_ > 0 ? static_cast<double>(current_) / total_ : 0;
    int filled = static_cast<int>(frac * width);
    std::string bar(static_cast<size_t>(filled), '#');
    bar.resize(width, '.');
    std::fprintf(out_, "\r\033[2K%3.0f%% [%s] %s", frac * 100, bar.c_str(), stats);
    drawn_ = true;
  } else {
    std::fprintf(out_, "step %s\n", stats);
  }
  drawn_final_ = current_ == total_;
  std::fflush(out_);
}

void Progress::message(const std::string& line) {
  if (tty_ && drawn_) std::fprintf(out_, "\r\033[2K");
  std::fprintf(out_, "%s\n", line.c_str());
  if (tty_ && drawn_) draw(true);
  std::fflush(out_);
}

void Progress::finish() {
  if (tty_ || !drawn_final_) draw(true);
  if (tty_) std::fprintf(out_, "\n");
  std::fflush(out_);
}

void EpochTable::row(double epoch, int64_t step, double train_loss, const Json& m, double seconds) {
  auto get = [&](const char* k) { return m.contains(k) ? m[k].get<double>() : NAN; };
  // Regression shows its correlations, multi-label its micro-F1, where classification has
  // accuracy and F1.
  const bool regression = m.contains("eval_pearson"), multi_label = m.contains("eval_micro_f1");
  if (!header_done_) {
    std::fprintf(out_, "| Epoch | Step | Training Loss | Validation Loss | %s | %s | Elapsed  |\n",
                 regression ? "Pearson " : "Accuracy", regression ? "Spearm" : multi_label ? "MicroF" : "F1    ");
    std::fprintf(out_, "|------:|-----:|--------------:|----------------:|---------:|-------:|---------:|\n");
    header_done_ = true;
  }
  char loss[32];
  if (std::isfinite(train_loss)) std::snprintf(loss, sizeof loss, "%.6f", train_loss);
  else std::snprintf(loss, sizeof loss, "No log");
  std::fprintf(out_, "| %5.2f | %4lld | %13s | %15.6f | %8.4f | %.4f | %8s |\n", epoch, static_cast<long long>(step),
               loss, get("eval_loss"), get(regression ? "eval_pearson" : "eval_accuracy"),
               get(regression ? "eval_spearmanr" : multi_label ? "eval_micro_f1" : "eval_f1"),
               format_duration(seconds).c_str());
  std::fflush(out_);
}

JsonlLog::JsonlLog(fs::path path) : path_(std::move(path)) {
  if (path_.has_parent_path()) fs::create_directories(path_.parent_path());
  fd_ = ::open(path_.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error("cannot open " + path_.string() + ": " + std::strerror(errno));
}

JsonlLog::~JsonlLog() {
  if (fd_ >= 0) ::close(fd_);
}

void JsonlLog::append(const Json& record) {
  std::string line = record.dump() + "\n";
  const char* p = line.data();
  size_t left = line.size();
  while (left > 0) {
    ssize_t n = ::write(fd_, p, left);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw Error("cannot write " + path_.string() + ": " + std::strerror(errno));
    }
    p += n;
    left -= static_cast<size_t>(n);
  }
  ::fsync(fd_);
}

std::vector<Json> JsonlLog::read(const fs::path& path) {
  std::vector<Json> out;
  std::error_code ec;
  if (!fs::exists(path, ec)) return out;
  std::istringstream in(io::read_file(path));
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty()) continue;
    try {
      out.push_back(Json::parse(line));
    } catch (const Json::exception&) {
      break;  // a line torn by a kill: nothing after it is trusted
    }
  }
  return out;
}

void JsonlLog::truncate_after(const fs::path& path, int64_t step) {
  std::string kept;
  for (const auto& r : read(path))
    if (!r.contains("step") || r["step"].get<int64_t>() <= step) kept += r.dump() + "\n";
  io::write_file_atomic(path, kept);
}

Json TrainSummary::to_json() const {
  return Json{{"global_step", global_step},
              {"training_loss", training_loss},
              {"train_runtime", train_runtime},
              {"train_samples_per_second", train_samples_per_second},
              {"train_steps_per_second", train_steps_per_second},
              {"total_flos", total_flos},
              {"epoch", epoch},
              {"train_real_tokens_per_second", real_tokens_per_second},
              {"train_padding_fraction", padding_fraction},
              {"skipped_steps", skipped_steps}};
}

std::string TrainSummary::to_text() const {
  char buf[768];
  std::snprintf(buf, sizeof buf,
                "TrainOutput(global_step=%lld, training_loss=%.6f, metrics={'train_runtime': %.4f, "
                "'train_samples_per_second': %.3f, 'train_steps_per_second': %.3f, 'total_flos': %.6g, "
                "'train_loss': %.6f, 'epoch': %.2f})\n"
                "real tokens/s %.1f, padding %.1f%% of computed positions%s",
                static_cast<long long>(global_step), training_loss, train_runtime, train_samples_per_second,
                train_steps_per_second, total_flos, training_loss, epoch, real_tokens_per_second,
                100.0 * padding_fraction,
                skipped_steps ? (", " + std::to_string(skipped_steps) + " steps skipped (non-finite)").c_str() : "");
  return buf;
}

}  // namespace bertune::train
