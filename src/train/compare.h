#pragma once
// `bertune compare`: the notebook's bucketing study done right. The same model, subset,
// seed and schedule trained four ways — padded to max_length (the notebook), dynamic padding
// in random order, dynamic padding grouped by length (HF group_by_length), packed — with time
// and the evaluation metric per epoch side by side.
#include <filesystem>
#include <string>
#include <vector>

#include "train/options.h"
#include "train/report.h"

namespace bertune::train {

struct CompareRow {
  std::string mode;
  TrainSummary summary;
  std::vector<double> epoch_seconds;   // training time of each epoch (no evaluation)
  std::string metric;                // accuracy; a regression run's pearson; or --metric-for-best-model's
  std::vector<double> epoch_metric;  // eval_<metric> after each epoch
  double padding_fraction = 0;
};

std::vector<CompareRow> run_compare(const TrainOptions& base, std::FILE* out = stdout);
std::string compare_markdown(const std::vector<CompareRow>& rows);

}  // namespace bertune::train
