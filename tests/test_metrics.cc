#include <gtest/gtest.h>

#include <cmath>

#include "infer/metrics.h"

using namespace bertune::infer;

TEST(Metrics, HandCheckedBinaryCase) {
  // truth     1 1 1 0 0 0 0 1
  // predicted 1 0 1 0 0 1 0 1   -> class 1: tp 3, fp 1, fn 1; class 0: tp 3, fp 1, fn 1
  std::vector<int32_t> truth = {1, 1, 1, 0, 0, 0, 0, 1}, pred = {1, 0, 1, 0, 0, 1, 0, 1};
  auto m = compute_metrics(pred, truth, 2);
  EXPECT_DOUBLE_EQ(m.accuracy, 6.0 / 8.0);
  EXPECT_DOUBLE_EQ(m.precision[1], 0.75);
  EXPECT_DOUBLE_EQ(m.recall[1], 0.75);
  EXPECT_DOUBLE_EQ(m.macro_f1, 0.75);
  EXPECT_EQ(m.confusion, (std::vector<std::vector<int64_t>>{{3, 1}, {1, 3}}));
}

TEST(Metrics, UnbalancedAndNeverPredictedClass) {
  // Everything predicted 0 (the notebook's collapsed run): class 1 precision 0 by convention.
  std::vector<int32_t> truth = {0, 0, 0, 1}, pred = {0, 0, 0, 0};
  auto m = compute_metrics(pred, truth, 2);
  EXPECT_DOUBLE_EQ(m.accuracy, 0.75);
  EXPECT_DOUBLE_EQ(m.precision[0], 0.75);
  EXPECT_DOUBLE_EQ(m.recall[0], 1.0);
  EXPECT_DOUBLE_EQ(m.precision[1], 0.0);
  EXPECT_DOUBLE_EQ(m.recall[1], 0.0);
  // f1_0 = 2*.75*1/1.75 = 6/7; macro = 3/7 (sklearn f1_score(average='macro') gives 0.428571...)
  EXPECT_NEAR(m.macro_f1, 3.0 / 7.0, 1e-12);
}

TEST(Metrics, LossIsMeanCrossEntropyAndArgmaxTakesFirstMax) {
  MetricsAccumulator acc(2);
  float logits[] = {0.f, 0.f,     // ln 2, prediction 0 (tie -> first)
                    2.f, -1.f,    // label 1: ln(1+e^3) - ... = log(e^2+e^-1) + 1
                    -3.f, 5.f};
  int32_t labels[] = {1, 1, 1};
  acc.add(logits, labels, 3);
  auto m = acc.finish();
  double l0 = std::log(2.0);
  double l1 = std::log(std::exp(2.0) + std::exp(-1.0)) + 1.0;
  double l2 = std::log(std::exp(-3.0) + std::exp(5.0)) - 5.0;
  EXPECT_NEAR(m.loss, (l0 + l1 + l2) / 3.0, 1e-12);
  EXPECT_EQ(acc.predictions(), (std::vector<int32_t>{0, 0, 1}));
  EXPECT_NEAR(m.accuracy, 1.0 / 3.0, 1e-12);
  auto j = m.to_json();
  EXPECT_NEAR(j["eval_accuracy"].get<double>(), 1.0 / 3.0, 1e-12);
  EXPECT_TRUE(j.contains("eval_f1"));
  auto p = softmax(logits + 4, 2);
  EXPECT_NEAR(p[1], 1.0 / (1.0 + std::exp(-8.0)), 1e-7);
}

// Regression: MSE, Pearson's r, Spearman's rho (ties ranked by their average, as scipy).
TEST(Metrics, RegressionAgainstHandComputedValues) {
  // x 1 2 3 4, y 1 2 3 5: MSE 1/4; dx -1.5 -.5 .5 1.5, dy -1.75 -.75 .25 2.25: sxy 6.5,
  // sxx 5, syy 8.75, r = 6.5 / sqrt(43.75); the same order on both sides: rho 1.
  auto m = regression_metrics({1, 2, 3, 4}, {1, 2, 3, 5});
  EXPECT_EQ(m.kind, MetricsKind::Regression);
  EXPECT_DOUBLE_EQ(m.mse, 0.25);
  EXPECT_DOUBLE_EQ(m.loss, 0.25);
  EXPECT_NEAR(m.pearson, 6.5 / std::sqrt(43.75), 1e-12);
  EXPECT_NEAR(m.spearman, 1.0, 1e-12);
  // Ties: ranks 1.5 1.5 3 4 against 1 2 3 4: scipy.stats.spearmanr gives 0.9486832980505138.
  auto t = regression_metrics({1, 1, 2, 3}, {1, 2, 3, 4});
  EXPECT_NEAR(t.spearman, 0.9486832980505138, 1e-12);
  EXPECT_NEAR(regression_metrics({3, 2, 1}, {1, 2, 3}).pearson, -1.0, 1e-12);
  EXPECT_EQ(regression_metrics({1, 1, 1}, {1, 2, 3}).pearson, 0.0);  // constant scores: undefined
  auto j = m.to_json();
  EXPECT_DOUBLE_EQ(j["eval_mse"].get<double>(), 0.25);
  EXPECT_TRUE(j.contains("eval_pearson") && j.contains("eval_spearmanr"));
  EXPECT_FALSE(j.contains("eval_accuracy"));
}

// Multi-label: a label is predicted when its logit is > 0 (sigmoid > 0.5).
TEST(Metrics, MultiLabelAgainstHandComputedValues) {
  // truth [1,0,1] [0,1,0] [1,1,0]; predicted [1,0,0] [0,1,0] [1,0,1]
  // label 0: tp 2 fp 0 fn 0 -> F1 1; label 1: tp 1, fn 1 -> P 1, R .5, F1 2/3; label 2: tp 0 -> 0.
  // macro F1 5/9; micro: tp 3, predicted 4, actual 5 -> P .75, R .6, F1 2/3; exact match 1/3.
  const float truth[] = {1, 0, 1, 0, 1, 0, 1, 1, 0};
  const float logits[] = {2, -2, -2, -2, 2, -2, 2, -2, 2};
  auto m = multi_label_metrics(logits, truth, 3, 3);
  EXPECT_EQ(m.kind, MetricsKind::MultiLabel);
  EXPECT_NEAR(m.macro_f1, 5.0 / 9.0, 1e-12);
  EXPECT_NEAR(m.micro_f1, 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(m.accuracy, 1.0 / 3.0, 1e-12);
  EXPECT_DOUBLE_EQ(m.precision[1], 1.0);
  EXPECT_DOUBLE_EQ(m.recall[1], 0.5);
  EXPECT_DOUBLE_EQ(m.precision[2], 0.0);
  // BCE: every element log(1 + e^-2), and 2 more for each of the 3 wrong ones, over 9.
  EXPECT_NEAR(m.loss, std::log1p(std::exp(-2.0)) + 6.0 / 9.0, 1e-9);
  auto j = m.to_json();
  EXPECT_NEAR(j["eval_micro_f1"].get<double>(), 2.0 / 3.0, 1e-12);
  EXPECT_NEAR(j["eval_f1"].get<double>(), 5.0 / 9.0, 1e-12);
  EXPECT_FALSE(j.contains("eval_confusion_matrix"));
  EXPECT_NE(m.report({"a", "b", "c"}).find("micro-F1 0.6667"), std::string::npos) << m.report();
}
