#pragma once
// The text-classification task of the Hugging Face Inference API (POST /): its
// "parameters" as transformers' TextClassificationPipeline reads them, and the scored
// label list it answers for one input. What huggingface_hub's
// InferenceClient.text_classification sends: {"inputs": .., "parameters": {"top_k": ..,
// "function_to_apply": ..}} (unset ones left out, or null).
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "infer/aggregation.h"
#include "infer/predictions.h"
#include "util/error.h"

namespace bertune::serve {

// A "parameters" value the API does not define: the message names the field.
struct ParameterError : Error {
  using Error::Error;
};

using infer::ProblemType;
using infer::ScoreFunction;

struct TextClassificationParameters {
  std::optional<int> top_k;                        // absent or null: every label
  std::optional<ScoreFunction> function_to_apply;  // absent or null: infer::default_score_function
};

// `parameters` (an object, or null). Throws ParameterError for an unknown key, a top_k
// that is not an integer >= 1, or a function_to_apply other than softmax, sigmoid or
// none (any letter case, as the pipeline takes it).
TextClassificationParameters parse_parameters(const nlohmann::json& parameters);

// The token-classification task's `parameters` (an object, or null) as transformers'
// TokenClassificationPipeline reads them: "aggregation_strategy" (infer/aggregation.h: none,
// simple, first, average or max, any letter case; absent or null: simple) and "ignore_labels"
// (a list of label names; absent or null: ["O"]). Throws ParameterError naming the field.
infer::EntityOptions parse_token_parameters(const nlohmann::json& parameters);

// One input's [{"label", "score"}, ...]: scores by the function (default: the problem
// type's, infer::default_score_function), best first (equal scores keep label order), the
// first top_k of them.
nlohmann::json label_scores(const float* logits, const std::vector<std::string>& labels,
                            const TextClassificationParameters& p, ProblemType problem = ProblemType::Unset);

}  // namespace bertune::serve
