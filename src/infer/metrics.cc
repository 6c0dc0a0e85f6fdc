#include "infer/metrics.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include "util/error.h"

namespace bertune::infer {

std::vector<float> softmax(const float* logits, int n) {
  float mx = logits[0];
  for (int i = 1; i < n; ++i) mx = std::max(mx, logits[i]);
  std::vector<float> p(static_cast<size_t>(n));
  double sum = 0.0;
  for (int i = 0; i < n; ++i) sum += (p[i] = std::exp(logits[i] - mx));
  for (auto& v : p) v = static_cast<float>(v / sum);
  return p;
}

int argmax(const float* values, int n) {
  int best = 0;
  for (int i = 1; i < n; ++i)
    if (values[i] > values[best]) best = i;
  return best;
}

size_t count_non_finite(const float* values, size_t n) {
  size_t bad = 0;
  for (size_t i = 0; i < n; ++i) {
    uint32_t bits;
    std::memcpy(&bits, values + i, sizeof bits);
    bad += (bits & 0x7f800000u) == 0x7f800000u;  // exponent all ones: Inf or NaN
  }
  return bad;
}

int64_t first_non_finite_row(const float* logits, size_t rows, int k) {
  for (size_t r = 0; r < rows; ++r)
    if (count_non_finite(logits + r * k, static_cast<size_t>(k)) != 0) return static_cast<int64_t>(r);
  return -1;
}

MetricsAccumulator::MetricsAccumulator(int num_labels) : num_labels_(num_labels) {
  if (num_labels < 1) throw Error("metrics: num_labels must be at least 1");
}

void MetricsAccumulator::add(const float* logits, const int32_t* labels, size_t n) {
  for (size_t i = 0; i < n; ++i) {
    const float* row = logits + i * static_cast<size_t>(num_labels_);
    int32_t y = labels[i];
    if (y < 0 || y >= num_labels_) throw Error("metrics: label " + std::to_string(y) + " out of range");
    // Cross-entropy via log-sum-exp in double, so the mean over 50,000 reviews stays exact
    // to the digits we print.
    double mx = row[0];
    for (int k = 1; k < num_labels_; ++k) mx = std::max(mx, static_cast<double>(row[k]));
    double sum = 0.0;
    for (int k = 0; k < num_labels_; ++k) sum += std::exp(row[k] - mx);
    loss_sum_ += std::log(sum) + mx - row[y];
    predictions_.push_back(argmax(row, num_labels_));
    labels_.push_back(y);
  }
}

ClassificationMetrics MetricsAccumulator::finish() const {
  auto m = compute_metrics(predictions_, labels_, num_labels_);
  m.loss = labels_.empty() ? 0.0 : loss_sum_ / static_cast<double>(labels_.size());
  return m;
}

ClassificationMetrics compute_metrics(const std::vector<int32_t>& predicted,
                                      const std::vector<int32_t>& truth, int num_labels) {
  if (predicted.size() != truth.size()) throw Error("metrics: predictions and labels differ in count");
  ClassificationMetrics m;
  m.num_labels = num_labels;
  m.count = static_cast<int64_t>(truth.size());
  m.confusion.assign(num_labels, std::vector<int64_t>(num_labels, 0));
  int64_t correct = 0;
  for (size_t i = 0; i < truth.size(); ++i) {
    m.confusion.at(truth[i]).at(predicted[i])++;
    correct += truth[i] == predicted[i];
  }
  m.accuracy = m.count ? static_cast<double>(correct) / static_cast<double>(m.count) : 0.0;
  m.precision.assign(num_labels, 0.0);
  m.recall.assign(num_labels, 0.0);
  m.f1.assign(num_labels, 0.0);
  double f1_sum = 0.0;
  for (int c = 0; c < num_labels; ++c) {
    int64_t tp = m.confusion[c][c], predicted_c = 0, actual_c = 0;
    for (int k = 0; k < num_labels; ++k) predicted_c += m.confusion[k][c], actual_c += m.confusion[c][k];
    m.precision[c] = predicted_c ? static_cast<double>(tp) / predicted_c : 0.0;
    m.recall[c] = actual_c ? static_cast<double>(tp) / actual_c : 0.0;
    double pr = m.precision[c] + m.recall[c];
    m.f1[c] = pr > 0 ? 2.0 * m.precision[c] * m.recall[c] / pr : 0.0;
    f1_sum += m.f1[c];
  }
  m.macro_f1 = f1_sum / num_labels;
  return m;
}

nlohmann::json ClassificationMetrics::to_json(const std::string& prefix) const {
  nlohmann::json j;
  j[prefix + "loss"] = loss;
  j[prefix + "accuracy"] = accuracy;
  j[prefix + "f1"] = macro_f1;
  for (int c = 0; c < num_labels; ++c) {
    j[prefix + "precision_" + std::to_string(c)] = precision[c];
    j[prefix + "recall_" + std::to_string(c)] = recall[c];
  }
  j[prefix + "confusion_matrix"] = confusion;
  return j;
}

std::string ClassificationMetrics::report(const std::vector<std::string>& names) const {
  auto name = [&](int c) { return c < static_cast<int>(names.size()) ? names[c] : "label " + std::to_string(c); };
  std::string out;
  char line[256];
  std::snprintf(line, sizeof line, "examples %lld  loss %.4f  accuracy %.4f  macro-F1 %.4f\n",
                static_cast<long long>(count), loss, accuracy, macro_f1);
  out += line;
  std::snprintf(line, sizeof line, "%-12s %9s %9s %9s   confusion (rows: true, columns: predicted)\n",
                "class", "precision", "recall", "f1");
  out += line;
  for (int c = 0; c < num_labels; ++c) {
    std::snprintf(line, sizeof line, "%-12s %9.4f %9.4f %9.4f  ", name(c).c_str(), precision[c], recall[c], f1[c]);
    out += line;
    for (int k = 0; k < num_labels; ++k) {
      std::snprintf(line, sizeof line, " %8lld", static_cast<long long>(confusion[c][k]));
      out += line;
    }
    out += "\n";
  }
  return out;
}

}  // namespace bertune::infer
