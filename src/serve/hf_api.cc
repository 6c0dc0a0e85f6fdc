#include "serve/hf_api.h"

#include <algorithm>
#include <cctype>
#include <limits>

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
  if (const auto f = infer::score_function_named(name)) return f;
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

infer::EntityOptions parse_token_parameters(const Json& parameters) {
  infer::EntityOptions o;
  if (parameters.is_null()) return o;
  if (!parameters.is_object())
    throw ParameterError("\"parameters\": expected an object, got " + std::string(parameters.type_name()));
  const std::string strategies = "\"none\", \"simple\", \"first\", \"average\" or \"max\"";
  for (const auto& [key, value] : parameters.items()) {
    if (key == "aggregation_strategy") {
      if (value.is_null()) continue;
      if (!value.is_string())
        throw ParameterError("\"parameters\".\"aggregation_strategy\": expected " + strategies + ", got " +
                             std::string(value.type_name()));
      try {
        o.aggregation = infer::parse_aggregation(value.get<std::string>());
      } catch (const Error&) {
        throw ParameterError("\"parameters\".\"aggregation_strategy\": expected " + strategies + ", got " +
                             value.dump(-1, ' ', false, Json::error_handler_t::replace));
      }
    } else if (key == "ignore_labels") {
      if (value.is_null()) continue;
      const bool strings = value.is_array() && std::all_of(value.begin(), value.end(), [](const Json& v) {
        return v.is_string();
      });
      if (!strings)
        throw ParameterError("\"parameters\".\"ignore_labels\": expected a list of label names, got " +
                             value.dump(-1, ' ', false, Json::error_handler_t::replace));
      o.ignore_labels = value.get<std::vector<std::string>>();
    } else {
      throw ParameterError("\"parameters\": unknown field \"" + key +
                           "\" (token classification takes \"aggregation_strategy\" and \"ignore_labels\")");
    }
  }
  return o;
}

Json label_scores(const float* logits, const std::vector<std::string>& labels, const TextClassificationParameters& p,
                  ProblemType problem) {
  const int k = static_cast<int>(labels.size());
  return infer::label_scores(logits, labels, p.function_to_apply.value_or(infer::default_score_function(problem, k)),
                             p.top_k.value_or(k));
}

}  // namespace bertune::serve
