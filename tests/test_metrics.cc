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
