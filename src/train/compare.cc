#include "train/compare.h"

#include <cmath>

#include "io/atomic_file.h"
#include "train/plot.h"
#include "train/trainer.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {
// The figure per epoch: --metric-for-best-model's unless that is the loss, else accuracy, which
// a regression run has not: Pearson's r there.
std::string epoch_metric_name(const TrainOptions& o, const std::vector<Json>& log) {
  std::string m = o.metric_for_best_model.rfind("eval_", 0) == 0 ? o.metric_for_best_model.substr(5)
                                                                 : o.metric_for_best_model;
  if (!m.empty() && m != "loss") return m;
  for (const auto& rec : log)
    if (rec.contains("eval_pearson") && !rec.contains("eval_accuracy")) return "pearson";
  return "accuracy";
}

struct Mode {
  const char* name;
  infer::Padding padding;
  bool group;
  uint32_t rgb;
};
const Mode kModes[] = {{"max_length", infer::Padding::MaxLength, false, 0xD62728},
                       {"longest", infer::Padding::Longest, false, 0x1F77B4},
                       {"longest+group_by_length", infer::Padding::Longest, true, 0xFF7F0E},
                       {"packed", infer::Padding::Packed, false, 0x2CA02C}};
}  // namespace

std::vector<CompareRow> run_compare(const TrainOptions& base, std::FILE* out) {
  std::vector<CompareRow> rows;
  for (const Mode& m : kModes) {
    TrainOptions o = base;
    o.padding = m.padding;
    o.group_by_length = m.group;
    o.output_dir = (fs::path(base.output_dir) / m.name).string();
    o.overwrite_output_dir = true;  // its own mode directories: an earlier comparison is replaced
    o.discard_previous_run = true;
    o.resume_from_checkpoint.clear();
    // Same epochs for every mode: no early stop, no checkpoints to time.
    o.eval_strategy = Strategy::Epoch;
    o.save_strategy = Strategy::No;
    o.load_best_model_at_end = false;
    o.early_stopping_patience = 0;
    o.test_file.clear();
    validate(o);
    std::fprintf(out, "\n===== %s =====\n", m.name);
    TrainResult r = run_training(o, out);
    CompareRow row;
    row.mode = m.name;
    row.summary = r.summary;
    row.padding_fraction = r.summary.padding_fraction;
    const auto log = JsonlLog::read(fs::path(o.output_dir) / "log.jsonl");
    row.metric = epoch_metric_name(o, log);
    for (const auto& rec : log) {
      if (rec.contains("epoch_train_runtime")) row.epoch_seconds.push_back(rec["epoch_train_runtime"].get<double>());
      if (rec.contains("eval_" + row.metric)) row.epoch_metric.push_back(rec["eval_" + row.metric].get<double>());
    }
    rows.push_back(row);
  }
  std::string md = compare_markdown(rows);
  std::fprintf(out, "\n%s", md.c_str());
  const fs::path dir = base.output_dir;
  io::write_file_atomic(dir / "compare.md", md);
  Json j = Json::array();
  for (const auto& r : rows)
    j.push_back({{"mode", r.mode}, {"summary", r.summary.to_json()}, {"epoch_seconds", r.epoch_seconds},
                 {"metric", r.metric}, {"epoch_" + r.metric, r.epoch_metric}});
  io::write_file_atomic(dir / "compare.json", j.dump(2) + "\n");
  const std::string metric = rows.empty() ? "accuracy" : rows[0].metric;
  Panel time{"Training time per epoch", "seconds", {}}, acc{"Eval " + metric + " per epoch", metric, {}};
  for (size_t i = 0; i < rows.size(); ++i) {
    time.series.push_back({rows[i].mode, rows[i].epoch_seconds, kModes[i].rgb});
    acc.series.push_back({rows[i].mode, rows[i].epoch_metric, kModes[i].rgb});
  }
  write_line_charts(dir / "compare.png", {time, acc}, "epoch");
  std::fprintf(out, "\nwrote %s, %s and %s\n", (dir / "compare.md").c_str(), (dir / "compare.json").c_str(),
               (dir / "compare.png").c_str());
  return rows;
}

std::string compare_markdown(const std::vector<CompareRow>& rows) {
  const std::string metric = rows.empty() ? "accuracy" : rows[0].metric;
  std::string s = "| mode | train time | samples/s | real tokens/s | padding | speed-up vs max_length | eval " + metric +
                  " per epoch |\n|---|---:|---:|---:|---:|---:|---|\n";
  const double base_time = rows.empty() ? 0 : rows[0].summary.train_runtime;
  char buf[512];
  for (const auto& r : rows) {
    std::string accs;
    for (size_t i = 0; i < r.epoch_metric.size(); ++i) {
      char a[32];
      std::snprintf(a, sizeof a, "%s%.4f", i ? ", " : "", r.epoch_metric[i]);
      accs += a;
    }
    double train_seconds = 0;
    for (double t : r.epoch_seconds) train_seconds += t;
    std::snprintf(buf, sizeof buf, "| %s | %s | %.1f | %.0f | %.1f%% | %.2fx | %s |\n", r.mode.c_str(),
                  format_duration(r.summary.train_runtime).c_str(), r.summary.train_samples_per_second,
                  r.summary.real_tokens_per_second, 100.0 * r.padding_fraction,
                  r.summary.train_runtime > 0 ? base_time / r.summary.train_runtime : 0.0, accs.c_str());
    s += buf;
  }
  s += "\ntrain time = Trainer.train() wall time including the per-epoch evaluations; samples/s and real tokens/s over it.\n";
  return s;
}

}  // namespace bertune::train
