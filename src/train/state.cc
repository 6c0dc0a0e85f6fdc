#include "train/state.h"

#include <algorithm>
#include <cmath>
#include <regex>

#include "io/atomic_file.h"
#include "io/json_error.h"
#include "util/error.h"
#include "util/json_fields.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

Json TrainerState::to_json() const {
  // nlohmann::json objects keep keys sorted, like HF's json.dumps(sort_keys=True).
  Json j;
  j["best_metric"] = best_metric ? Json(*best_metric) : Json(nullptr);
  j["best_model_checkpoint"] = best_model_checkpoint ? Json(*best_model_checkpoint) : Json(nullptr);
  j["epoch"] = epoch;
  j["global_step"] = global_step;
  j["is_hyper_param_search"] = false;
  j["is_local_process_zero"] = true;
  j["is_world_process_zero"] = true;
  j["log_history"] = log_history;
  j["max_steps"] = max_steps;
  j["num_train_epochs"] = num_train_epochs;
  j["total_flos"] = total_flos;
  j["trial_name"] = nullptr;
  j["trial_params"] = nullptr;
  return j;
}

TrainerState TrainerState::from_json(const Json& j, const std::string& source) {
  TrainerState s;
  s.epoch = json_field_or<double>(j, "epoch", 0.0, source);
  s.global_step = json_field<int64_t>(j, "global_step", source);
  s.max_steps = json_field_or<int64_t>(j, "max_steps", 0, source);
  s.num_train_epochs = json_field_or<double>(j, "num_train_epochs", 0.0, source);
  s.total_flos = json_field_or<double>(j, "total_flos", 0.0, source);
  s.log_history = j.value("log_history", Json::array());
  if (!s.log_history.is_array()) throw Error(source + ": field 'log_history' is not a list");
  if (j.contains("best_metric") && !j["best_metric"].is_null()) s.best_metric = json_field<double>(j, "best_metric", source);
  if (j.contains("best_model_checkpoint") && !j["best_model_checkpoint"].is_null())
    s.best_model_checkpoint = json_field<std::string>(j, "best_model_checkpoint", source);
  return s;
}

void TrainerState::save(const fs::path& file) const { io::write_file_atomic(file, to_json().dump(2) + "\n"); }

TrainerState TrainerState::load(const fs::path& file) { return from_json(io::read_json_file(file), file.string()); }

bool EarlyStopping::on_evaluate(double metric, const std::optional<double>& best_metric, bool greater_is_better) {
  if (patience <= 0) return false;
  if (!best_metric || (metric_better(metric, *best_metric, greater_is_better) &&
                       std::fabs(metric - *best_metric) > threshold))
    counter = 0;
  else
    counter += 1;
  return counter >= patience;
}

bool update_best(TrainerState& state, double metric, const std::string& checkpoint_dir, bool greater_is_better) {
  if (!state.best_metric || !state.best_model_checkpoint ||
      metric_better(metric, *state.best_metric, greater_is_better)) {
    state.best_metric = metric;
    state.best_model_checkpoint = checkpoint_dir;
    return true;
  }
  return false;
}

namespace {
// checkpoint-<digits> exactly; the temporary dirs of an unfinished save never match.
std::optional<int64_t> checkpoint_step(const fs::path& p) {
  static const std::regex re("checkpoint-([0-9]+)");
  std::smatch m;
  const std::string name = p.filename().string();
  if (!std::regex_match(name, m, re)) return std::nullopt;
  return std::stoll(m[1].str());
}
}  // namespace

std::vector<fs::path> sorted_checkpoints(const fs::path& output_dir, const std::optional<std::string>& best,
                                         const CheckpointFilter& counted) {
  std::vector<std::pair<int64_t, fs::path>> found;
  std::error_code ec;
  if (fs::is_directory(output_dir, ec))
    for (const auto& e : fs::directory_iterator(output_dir))
      if (e.is_directory())
        if (auto step = checkpoint_step(e.path()); step && (!counted || counted(e.path())))
          found.emplace_back(*step, e.path());
  std::sort(found.begin(), found.end());
  std::vector<fs::path> sorted;
  for (auto& [step, p] : found) sorted.push_back(p);
  if (best) {
    // HF bubbles the best from its index up to len - 2 (second to last).
    auto it = std::find_if(sorted.begin(), sorted.end(), [&](const fs::path& p) {
      return fs::weakly_canonical(p) == fs::weakly_canonical(fs::path(*best));
    });
    if (it != sorted.end()) {
      for (size_t i = static_cast<size_t>(it - sorted.begin()); i + 2 < sorted.size(); ++i)
        std::swap(sorted[i], sorted[i + 1]);
    }
  }
  return sorted;
}

std::vector<fs::path> rotate_checkpoints(const fs::path& output_dir, int save_total_limit,
                                         const std::optional<std::string>& best, const CheckpointFilter& counted) {
  if (save_total_limit <= 0) return {};
  auto sorted = sorted_checkpoints(output_dir, best, counted);
  if (static_cast<int>(sorted.size()) <= save_total_limit) return {};
  int limit = save_total_limit;
  if (best && save_total_limit == 1 &&
      fs::weakly_canonical(sorted.back()) != fs::weakly_canonical(fs::path(*best)))
    limit = 2;
  size_t n_delete = sorted.size() > static_cast<size_t>(limit) ? sorted.size() - limit : 0;
  std::vector<fs::path> deleted(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(n_delete));
  for (const auto& p : deleted) {
    std::error_code ec;
    fs::remove_all(p, ec);
  }
  return deleted;
}

fs::path last_checkpoint(const fs::path& output_dir) {
  auto sorted = sorted_checkpoints(output_dir, std::nullopt);
  return sorted.empty() ? fs::path() : sorted.back();
}

std::string CollapseDetector::on_evaluate(double metric, const std::vector<int32_t>& predictions, int num_labels) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a over the predicted labels
  for (int32_t p : predictions) h = (h ^ static_cast<uint64_t>(p)) * 1099511628211ull;
  prediction_hashes.push_back(h);
  metrics.push_back(metric);
  std::vector<int64_t> per_class(static_cast<size_t>(std::max(num_labels, 1)), 0);
  for (int32_t p : predictions)
    if (p >= 0 && p < num_labels) per_class[p]++;
  const bool single_class =
      !predictions.empty() && *std::max_element(per_class.begin(), per_class.end()) == static_cast<int64_t>(predictions.size());
  const size_t n = metrics.size();
  const bool unchanged = n >= 2 && metrics[n - 1] == metrics[n - 2] && prediction_hashes[n - 1] == prediction_hashes[n - 2];
  if (!single_class && !unchanged) return {};
  std::string w = "warning: ";
  if (single_class) {
    int cls = static_cast<int>(std::max_element(per_class.begin(), per_class.end()) - per_class.begin());
    w += "the model predicts label " + std::to_string(cls) + " for every evaluation example";
    if (unchanged) w += ", and ";
  }
  if (unchanged) {
    size_t run = 1;
    while (run < n && metrics[n - 1 - run] == metrics[n - 1] && prediction_hashes[n - 1 - run] == prediction_hashes[n - 1]) ++run;
    w += "the metric and all predictions are identical across the last " + std::to_string(run) + " evaluations";
  }
  w += " — training has likely collapsed (try a lower learning rate, warmup, or another seed)";
  return w;
}

Json CollapseDetector::to_json() const {
  return Json{{"prediction_hashes", prediction_hashes}, {"metrics", metrics}};
}

void CollapseDetector::from_json(const Json& j) {
  prediction_hashes = j.value("prediction_hashes", std::vector<uint64_t>{});
  metrics = j.value("metrics", std::vector<double>{});
}

}  // namespace bertune::train
