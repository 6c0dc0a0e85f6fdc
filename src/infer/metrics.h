#pragma once
// Classification metrics over a whole evaluation set, as sklearn computes them (macro
// averages over all classes; a class never predicted has precision 0, never present has
// recall 0: zero_division=0).
#include <cstdint>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bertune::infer {

// Which problem the metrics describe (model/config.h's ProblemType): what to_json and
// report show.
// Entities: token classification, entity-level precision/recall/F1 as seqeval counts them.
enum class MetricsKind { SingleLabel, Regression, MultiLabel, Entities };

struct ClassificationMetrics {
  MetricsKind kind = MetricsKind::SingleLabel;
  int num_labels = 0;
  int64_t count = 0;
  double loss = 0.0;  // mean per-example loss (HF's eval_loss): cross-entropy, MSE or BCE
  double accuracy = 0.0;  // multi-label: exact match (every label of the example right)
  double macro_f1 = 0.0;
  std::vector<double> precision, recall, f1;     // per class (multi-label: per label)
  std::vector<std::vector<int64_t>> confusion;   // [true][predicted] (single-label only)
  double micro_f1 = 0.0;  // multi-label: F1 of all (example, label) decisions pooled
  double mse = 0.0, pearson = 0.0, spearman = 0.0;  // regression (0 when undefined)
  // Entities: micro over entity types; count = sentences, accuracy = token accuracy.
  double entity_precision = 0.0, entity_recall = 0.0, entity_f1 = 0.0;
  int64_t true_entities = 0, predicted_entities = 0, correct_entities = 0;

  // {"eval_loss", "eval_accuracy", "eval_f1", ...} the way HF prefixes compute_metrics keys.
  // Regression: eval_loss, eval_mse, eval_pearson, eval_spearmanr. Multi-label: eval_loss,
  // eval_accuracy (exact match), eval_f1 (macro), eval_micro_f1, per-label precision/recall.
  // Entities: eval_loss, eval_precision, eval_recall, eval_f1, eval_accuracy (the HF
  // token-classification example's keys).
  nlohmann::json to_json(const std::string& prefix = "eval_") const;
  // A small text table: confusion matrix and per-class precision/recall.
  std::string report(const std::vector<std::string>& label_names = {}) const;
};

// Accumulates predictions batch by batch.
class MetricsAccumulator {
 public:
  explicit MetricsAccumulator(int num_labels);
  // logits: [n, num_labels] row-major; labels: n true labels (>= 0).
  void add(const float* logits, const int32_t* labels, size_t n);
  ClassificationMetrics finish() const;
  const std::vector<int32_t>& predictions() const { return predictions_; }

 private:
  int num_labels_;
  double loss_sum_ = 0.0;
  std::vector<int32_t> predictions_, labels_;
};

// Metrics from predicted and true labels alone (loss left 0).
ClassificationMetrics compute_metrics(const std::vector<int32_t>& predicted,
                                      const std::vector<int32_t>& truth, int num_labels);

// Regression: MSE, Pearson's r and Spearman's rho (ranks of ties averaged, as scipy) of
// scores against the true values; loss = MSE. A constant side makes r and rho undefined: 0.
ClassificationMetrics regression_metrics(const std::vector<float>& scores, const std::vector<float>& truth);
// Multi-label: logits and truth [n, num_labels] (truth 0/1); a label is predicted when its
// sigmoid exceeds 0.5 (logit > 0). Precision, recall and F1 per label and macro-averaged as
// sklearn (zero_division=0), micro-F1 over all decisions, exact-match accuracy, mean BCE loss.
ClassificationMetrics multi_label_metrics(const float* logits, const float* truth, size_t n, int num_labels);
// One entity of IOB2 tags: its type and the first and last index of its tokens.
struct Entity {
  std::string type;
  int64_t first = 0, last = 0;
  bool operator==(const Entity&) const = default;
};
// seqeval's get_entities (default, not strict mode): the sequences joined with an "O" between
// them (indices count across them); a tag's first character is its prefix (B, I, E, S, O),
// what follows "-" its type. An entity starts at B- (or S-), and also at an I- after O or
// after a tag of another type; it ends before O, B-, S- or a tag of another type.
std::vector<Entity> iob2_entities(const std::vector<std::vector<std::string>>& sequences);
// Entity-level micro precision, recall and F1 (seqeval's classification_report "micro avg",
// zero_division 0) and token accuracy of predicted against true tag sequences.
ClassificationMetrics entity_metrics(const std::vector<std::vector<std::string>>& predicted,
                                     const std::vector<std::vector<std::string>>& truth);
// The metric names --metric-for-best-model takes for each kind (without "eval_").
std::vector<std::string> metric_names(MetricsKind kind);

// Numerically stable softmax of one row, and the argmax (first maximum, like torch/numpy).
std::vector<float> softmax(const float* logits, int n);
int argmax(const float* values, int n);

// How many of values[0, n) are NaN or infinite, by their exponent bits (integer work that
// vectorises, and that no fast-math build folds away).
size_t count_non_finite(const float* values, size_t n);
// The first row of logits [rows, k] holding a NaN or infinite value; -1 when all are finite.
int64_t first_non_finite_row(const float* logits, size_t rows, int k);

}  // namespace bertune::infer
