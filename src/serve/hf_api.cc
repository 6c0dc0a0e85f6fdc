#include "serve/hf_api.h"

#include <algorithm>
#include <cctype>
#include <cmath>
#include <limits>
#include <numeric>

#include "infer/metrics.h"

namespace bertune::serve {
using Json = nlohmann::json;

namespace {

std::optional<ScoreFunction> parse_function(const Json& v) {
  if (v.is_null()) return std::nullopt;
  if (!v.is_string())
    throw ParameterError("\"parameters\".\"function_to_apply\": expected \"softmax\", \"sigmoid\" or \"none\", got " +
                         std::string(v.type_name()));
  std::string name = v.get<std::string>();
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  if (name == "softmax") return ScoreFunction::Softmax;
  if (name == "sigmoid") return ScoreFunction::Sigmoid;
  if (name == "none") return ScoreFunction::None;
  throw ParameterError("\"parameters\".\"function_to_apply\": expected \"softmax\", \"sigmoid\" or \"none\", got " +
                       v.dump(-1, ' ', false, Json::error_handler_t::replace));
}

std::optional<int> parse_top_k(const Json& v) {
  if (v.is_null()) return std::nullopt;
  // A body's positive integers parse as unsigned; 0, negatives, 2.0, "2" and true do not pass.
  if (v.is_number_unsigned() && v.get<uint64_t>() >= 1)
    return static_cast<int>(std::min<uint64_t>(v.get<uint64_t>(), std::numeric_limits<int>::max()));
  throw ParameterError("\"parameters\".\"top_k\": expected an integer of at least 1, got " +
                       (v.is_number() ? v.dump() : std::string(v.type_name())));
}

}  // namespace

TextClassificationParameters parse_parameters(const Json& parameters) {
  TextClassificationParameters p;
  if (parameters.is_null()) return p;
  if (!parameters.is_object())
    throw ParameterError("\"parameters\": expected an object, got " + std::string(parameters.type_name()));
  for (const auto& [key, value] : parameters.items()) {
    if (key == "top_k") p.top_k = parse_top_k(value);
    else if (key == "function_to_apply") p.function_to_apply = parse_function(value);
    else
      throw ParameterError("\"parameters\": unknown field \"" + key +
                           "\" (text classification takes \"top_k\" and \"function_to_apply\")");
  }
  return p;
}

ScoreFunction default_score_function(int num_labels) {
  return num_labels == 1 ? ScoreFunction::Sigmoid : ScoreFunction::Softmax;
}

Json label_scores(const float* logits, const std::vector<std::string>& labels, const TextClassificationParameters& p) {
  const int k = static_cast<int>(labels.size());
  std::vector<float> scores(logits, logits + k);
  switch (p.function_to_apply.value_or(default_score_function(k))) {
    case ScoreFunction::Softmax: scores = infer::softmax(logits, k); break;
    case ScoreFunction::Sigmoid:
      for (auto& s : scores) s = 1.0f / (1.0f + std::exp(-s));
      break;
    case ScoreFunction::None: break;
  }
  std::vector<int> order(k);
  std::iota(order.begin(), order.end(), 0);
  std::stable_sort(order.begin(), order.end(), [&](int a, int b) { return scores[a] > scores[b]; });
  order.resize(std::min(k, p.top_k.value_or(k)));
  Json out = Json::array();
  for (int j : order) out.push_back({{"label", labels[j]}, {"score", scores[j]}});
  return out;
}

}  // namespace bertune::serve
