#include "infer/metrics.h"

#include <algorithm>
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

namespace {

// Ranks 1..n of values, ties given their average rank (scipy.stats.rankdata).
std::vector<double> average_ranks(const std::vector<float>& v) {
  std::vector<size_t> order(v.size());
  for (size_t i = 0; i < order.size(); ++i) order[i] = i;
  std::stable_sort(order.begin(), order.end(), [&](size_t a, size_t b) { return v[a] < v[b]; });
  std::vector<double> rank(v.size());
  for (size_t i = 0; i < order.size();) {
    size_t j = i;
    while (j + 1 < order.size() && v[order[j + 1]] == v[order[i]]) ++j;
    for (size_t k = i; k <= j; ++k) rank[order[k]] = (double(i) + double(j)) / 2.0 + 1.0;
    i = j + 1;
  }
  return rank;
}

template <typename X, typename Y>
double pearson_r(const std::vector<X>& x, const std::vector<Y>& y) {
  const size_t n = x.size();
  if (n == 0) return 0.0;
  double mx = 0, my = 0;
  for (size_t i = 0; i < n; ++i) mx += x[i], my += y[i];
  mx /= double(n), my /= double(n);
  double sxy = 0, sxx = 0, syy = 0;
  for (size_t i = 0; i < n; ++i) {
    const double dx = x[i] - mx, dy = y[i] - my;
    sxy += dx * dy, sxx += dx * dx, syy += dy * dy;
  }
  return sxx > 0 && syy > 0 ? sxy / std::sqrt(sxx * syy) : 0.0;
}

double f1_of(int64_t tp, int64_t predicted, int64_t actual, double* precision = nullptr, double* recall = nullptr) {
  const double p = predicted ? double(tp) / double(predicted) : 0.0, r = actual ? double(tp) / double(actual) : 0.0;
  if (precision) *precision = p;
  if (recall) *recall = r;
  return p + r > 0 ? 2.0 * p * r / (p + r) : 0.0;
}

}  // namespace

ClassificationMetrics regression_metrics(const std::vector<float>& scores, const std::vector<float>& truth) {
  if (scores.size() != truth.size()) throw Error("metrics: scores and labels differ in count");
  ClassificationMetrics m;
  m.kind = MetricsKind::Regression;
  m.num_labels = 1;
  m.count = static_cast<int64_t>(truth.size());
  double se = 0.0;
  for (size_t i = 0; i < truth.size(); ++i) se += (double(scores[i]) - truth[i]) * (double(scores[i]) - truth[i]);
  m.mse = m.loss = m.count ? se / double(m.count) : 0.0;
  m.pearson = pearson_r(scores, truth);
  m.spearman = pearson_r(average_ranks(scores), average_ranks(truth));
  return m;
}

ClassificationMetrics multi_label_metrics(const float* logits, const float* truth, size_t n, int num_labels) {
  ClassificationMetrics m;
  m.kind = MetricsKind::MultiLabel;
  m.num_labels = num_labels;
  m.count = static_cast<int64_t>(n);
  std::vector<int64_t> tp(num_labels, 0), predicted(num_labels, 0), actual(num_labels, 0);
  int64_t exact = 0;
  double bce = 0.0;
  for (size_t i = 0; i < n; ++i) {
    bool all_right = true;
    for (int c = 0; c < num_labels; ++c) {
      const double x = logits[i * num_labels + c], y = truth[i * num_labels + c];
      bce += std::max(x, 0.0) - x * y + std::log1p(std::exp(-std::fabs(x)));
      const bool p = x > 0.0, t = y >= 0.5;
      tp[c] += p && t, predicted[c] += p, actual[c] += t;
      all_right &= p == t;
    }
    exact += all_right;
  }
  m.loss = n ? bce / (double(n) * num_labels) : 0.0;
  m.accuracy = n ? double(exact) / double(n) : 0.0;
  m.precision.assign(num_labels, 0.0);
  m.recall.assign(num_labels, 0.0);
  m.f1.assign(num_labels, 0.0);
  int64_t tp_all = 0, predicted_all = 0, actual_all = 0;
  for (int c = 0; c < num_labels; ++c) {
    m.f1[c] = f1_of(tp[c], predicted[c], actual[c], &m.precision[c], &m.recall[c]);
    m.macro_f1 += m.f1[c] / num_labels;
    tp_all += tp[c], predicted_all += predicted[c], actual_all += actual[c];
  }
  m.micro_f1 = f1_of(tp_all, predicted_all, actual_all);
  return m;
}

std::vector<Entity> iob2_entities(const std::vector<std::vector<std::string>>& sequences) {
  std::vector<Entity> entities;
  char prev_tag = 'O';
  std::string prev_type;
  int64_t begin = 0, i = 0;
  auto step = [&](const std::string& chunk) {
    const char tag = chunk.empty() ? 'O' : chunk[0];
    const size_t dash = chunk.find('-', 1);
    std::string type = dash == std::string::npos ? chunk.substr(std::min<size_t>(1, chunk.size())) : chunk.substr(dash + 1);
    if (type.empty()) type = "_";
    const bool other_type = prev_type != type;
    const bool ends = prev_tag == 'E' || prev_tag == 'S' ||
                      ((prev_tag == 'B' || prev_tag == 'I') && (tag == 'B' || tag == 'S' || tag == 'O')) ||
                      (prev_tag != 'O' && prev_tag != '.' && other_type);
    const bool starts = tag == 'B' || tag == 'S' || ((prev_tag == 'E' || prev_tag == 'S') && (tag == 'E' || tag == 'I')) ||
                        (prev_tag == 'O' && (tag == 'E' || tag == 'I')) || (tag != 'O' && tag != '.' && other_type);
    if (ends) entities.push_back({prev_type, begin, i - 1});
    if (starts) begin = i;
    prev_tag = tag;
    prev_type = std::move(type);
    ++i;
  };
  for (const auto& seq : sequences) {
    for (const auto& tag : seq) step(tag);
    step("O");
  }
  step("O");
  return entities;
}

ClassificationMetrics entity_metrics(const std::vector<std::vector<std::string>>& predicted,
                                     const std::vector<std::vector<std::string>>& truth) {
  if (predicted.size() != truth.size()) throw Error("metrics: predicted and true tag sequences differ in count");
  ClassificationMetrics m;
  m.kind = MetricsKind::Entities;
  int64_t right = 0, tokens = 0;
  for (size_t s = 0; s < truth.size(); ++s) {
    if (predicted[s].size() != truth[s].size())
      throw Error("metrics: sequence " + std::to_string(s) + " has " + std::to_string(predicted[s].size()) +
                  " predicted tags for " + std::to_string(truth[s].size()) + " true ones");
    for (size_t t = 0; t < truth[s].size(); ++t) right += predicted[s][t] == truth[s][t];
    tokens += static_cast<int64_t>(truth[s].size());
  }
  m.count = static_cast<int64_t>(truth.size());
  m.accuracy = tokens ? double(right) / double(tokens) : 0.0;
  const std::vector<Entity> want = iob2_entities(truth), got = iob2_entities(predicted);
  m.true_entities = static_cast<int64_t>(want.size());
  m.predicted_entities = static_cast<int64_t>(got.size());
  for (const Entity& e : got) m.correct_entities += std::find(want.begin(), want.end(), e) != want.end();
  m.entity_f1 = f1_of(m.correct_entities, m.predicted_entities, m.true_entities, &m.entity_precision, &m.entity_recall);
  return m;
}

std::vector<std::string> metric_names(MetricsKind kind) {
  switch (kind) {
    case MetricsKind::Regression:
      return {"loss", "mse", "pearson", "spearmanr"};
    case MetricsKind::MultiLabel:
      return {"loss", "accuracy", "f1", "micro_f1"};
    case MetricsKind::Entities:
      return {"loss", "precision", "recall", "f1", "accuracy"};
    default:
      return {"loss", "accuracy", "f1"};
  }
}

nlohmann::json ClassificationMetrics::to_json(const std::string& prefix) const {
  nlohmann::json j;
  j[prefix + "loss"] = loss;
  if (kind == MetricsKind::Regression) {
    j[prefix + "mse"] = mse;
    j[prefix + "pearson"] = pearson;
    j[prefix + "spearmanr"] = spearman;
    return j;
  }
  if (kind == MetricsKind::Entities) {
    j[prefix + "precision"] = entity_precision;
    j[prefix + "recall"] = entity_recall;
    j[prefix + "f1"] = entity_f1;
    j[prefix + "accuracy"] = accuracy;
    return j;
  }
  j[prefix + "accuracy"] = accuracy;
  j[prefix + "f1"] = macro_f1;
  if (kind == MetricsKind::MultiLabel) j[prefix + "micro_f1"] = micro_f1;
  for (int c = 0; c < num_labels; ++c) {
    j[prefix + "precision_" + std::to_string(c)] = precision[c];
    j[prefix + "recall_" + std::to_string(c)] = recall[c];
  }
  if (kind == MetricsKind::SingleLabel) j[prefix + "confusion_matrix"] = confusion;
  return j;
}

std::string ClassificationMetrics::report(const std::vector<std::string>& names) const {
  auto name = [&](int c) { return c < static_cast<int>(names.size()) ? names[c] : "label " + std::to_string(c); };
  std::string out;
  char line[256];
  if (kind == MetricsKind::Regression) {
    std::snprintf(line, sizeof line, "examples %lld  loss (MSE) %.4f  Pearson r %.4f  Spearman rho %.4f\n",
                  static_cast<long long>(count), mse, pearson, spearman);
    return line;
  }
  if (kind == MetricsKind::Entities) {
    std::snprintf(line, sizeof line,
                  "sentences %lld  loss %.4f  entities %lld true, %lld predicted, %lld right  precision %.4f  recall "
                  "%.4f  F1 %.4f  token accuracy %.4f\n",
                  static_cast<long long>(count), loss, static_cast<long long>(true_entities),
                  static_cast<long long>(predicted_entities), static_cast<long long>(correct_entities),
                  entity_precision, entity_recall, entity_f1, accuracy);
    return line;
  }
  if (kind == MetricsKind::MultiLabel) {
    std::snprintf(line, sizeof line,
                  "examples %lld  loss (BCE) %.4f  exact-match accuracy %.4f  micro-F1 %.4f  macro-F1 %.4f\n",
                  static_cast<long long>(count), loss, accuracy, micro_f1, macro_f1);
    out += line;
    std::snprintf(line, sizeof line, "%-12s %9s %9s %9s   (threshold 0.5 on the sigmoid)\n", "label", "precision",
                  "recall", "f1");
    out += line;
    for (int c = 0; c < num_labels; ++c) {
      std::snprintf(line, sizeof line, "%-12s %9.4f %9.4f %9.4f\n", name(c).c_str(), precision[c], recall[c], f1[c]);
      out += line;
    }
    return out;
  }
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
