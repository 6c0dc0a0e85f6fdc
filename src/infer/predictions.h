#pragma once
// What a classifier's logits tell a user, one text at a time: the scored label list of
// Hugging Face's text-classification pipeline, and the record `predict` writes and
// `serve`'s POST /v1/classify answers. The model's problem_type decides how logits are read.
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "model/config.h"

namespace bertune::infer {

using model::ProblemType;

enum class ScoreFunction { Softmax, Sigmoid, None };

// The pipeline's default: sigmoid for a multi-label model, softmax for a single-label one,
// and for a model without problem_type sigmoid on one label, softmax on more. A regression
// model's score is its prediction: none (the pipeline would take its sigmoid).
ScoreFunction default_score_function(ProblemType problem, int num_labels);

// The pipeline's function_to_apply by name: "softmax", "sigmoid" or "none" (exactly these);
// nullopt for any other name, which the caller refuses in its own terms.
std::optional<ScoreFunction> score_function_named(const std::string& name);

// Every label with its score, best first (equal scores keep label order), the first top_k.
nlohmann::json label_scores(const float* logits, const std::vector<std::string>& labels, ScoreFunction f,
                            int top_k);

// One text's prediction, by the problem type (Unset: single-label):
//   single-label  {"label": id, "label_name", "probs": softmax, "logits"}
//   regression    {"score": the logit}
//   multi-label   [{"label", "score": sigmoid}, ...] every label, best first
nlohmann::json prediction_record(const float* logits, const std::vector<std::string>& labels, ProblemType problem);

}  // namespace bertune::infer
