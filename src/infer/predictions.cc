#include "infer/predictions.h"

#include <algorithm>
#include <cmath>
#include <numeric>

#include "infer/metrics.h"

namespace bertune::infer {
using Json = nlohmann::json;

ScoreFunction default_score_function(ProblemType problem, int num_labels) {
  switch (problem) {
    case ProblemType::MultiLabel: return ScoreFunction::Sigmoid;
    case ProblemType::SingleLabel: return ScoreFunction::Softmax;
    case ProblemType::Regression: return ScoreFunction::None;
    case ProblemType::Unset: break;
  }
  return num_labels == 1 ? ScoreFunction::Sigmoid : ScoreFunction::Softmax;
}

std::optional<ScoreFunction> score_function_named(const std::string& name) {
  if (name == "softmax") return ScoreFunction::Softmax;
  if (name == "sigmoid") return ScoreFunction::Sigmoid;
  if (name == "none") return ScoreFunction::None;
  return std::nullopt;
}

Json label_scores(const float* logits, const std::vector<std::string>& labels, ScoreFunction f, int top_k) {
  const int k = static_cast<int>(labels.size());
  std::vector<float> scores(logits, logits + k);
  switch (f) {
    case ScoreFunction::Softmax: scores = softmax(logits, k); break;
    case ScoreFunction::Sigmoid:
      for (auto& s : scores) s = 1.0f / (1.0f + std::exp(-s));
      break;
    case ScoreFunction::None: break;
  }
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  order.resize(std::clamp(top_k, 0, k));
  Json out = Json::array();
  for (int j : order) out.push_back({{"label", labels[j]}, {"score", scores[j]}});
  return out;
}

Json prediction_record(const float* logits, const std::vector<std::string>& labels, ProblemType problem) {
  const int k = static_cast<int>(labels.size());
  if (problem == ProblemType::Regression) return {{"score", logits[0]}};
  if (problem == ProblemType::MultiLabel) return label_scores(logits, labels, ScoreFunction::Sigmoid, k);
  const int label = argmax(logits, k);
  return {{"label", label},
          {"label_name", labels[label]},
          {"probs", softmax(logits, k)},
          {"logits", std::vector<float>(logits, logits + k)}};
}

}  // namespace bertune::infer
