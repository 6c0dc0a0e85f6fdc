#include "infer/classifier.h"

#include <algorithm>
#include <cstdio>
#include <numeric>

#include "data/dataset.h"
#include "infer/batching.h"
#include "model/config.h"
#include "util/error.h"

namespace bertune::infer {

namespace {

// HF only warns ("newly initialized ... you should probably TRAIN this model"); for
// evaluation and prediction a random head makes every figure meaningless.
void check_head(const std::filesystem::path& dir, const std::vector<std::string>& initialised, UntrainedHead policy) {
  if (initialised.empty() || policy == UntrainedHead::Allow) return;
  std::string names;
  for (const auto& n : initialised) names += (names.empty() ? "" : ", ") + n;
  const std::string model = dir.string();
  if (policy == UntrainedHead::Refuse)
    throw Error(model + " has no trained classification head (missing: " + names +
                "); fine-tune it first with `bertune train --model " + model +
                "`, or pass --allow-untrained-head to use a randomly initialised one");
  std::fprintf(stderr, "warning: %s: newly initialised %s — predictions are meaningless\n", model.c_str(),
               names.c_str());
}

}  // namespace

std::unique_ptr<Classifier> Classifier::load(const std::filesystem::path& dir, const ClassifierOptions& options) {
  if (options.max_length < 2) throw Error("--max-length: must be at least 2");
  std::unique_ptr<Classifier> c(new Classifier());
  c->weights_ = load_inference_model(dir, options.int8, options.device);
  check_head(dir, c->weights_.initialised, options.untrained_head);
  c->tokenizer_ = load_tokenizer_for(dir, options.tokenizer);
  const auto& config = c->model().config();
  c->num_labels_ = config.num_labels();
  // Longer than the model's positions cannot be encoded: the default truncates there, as HF
  // does with truncation=True and model_max_length; a length asked for is refused.
  if (options.max_length_given) model::require_max_length_fits(options.max_length, config, (dir / "config.json").string());
  c->max_length_ = std::min(options.max_length, config.max_sequence_length());
  for (int i = 0; i < c->num_labels_; ++i) c->label_names_.push_back(config.label_name(i));
  return c;
}

Classifier::~Classifier() = default;

std::string Classifier::pair_problem(const std::string& name) const {
  return model::pair_token_type_problem(model().config(), name);
}

std::vector<TokenIds> Classifier::tokenize(const std::vector<std::string>& texts,
                                           const std::vector<std::string>& text_pairs) const {
  if (!text_pairs.empty() && text_pairs.size() != texts.size())
    throw Error("tokenize: " + std::to_string(texts.size()) + " texts but " + std::to_string(text_pairs.size()) +
                " text pairs");
  data::Dataset d;
  for (size_t i = 0; i < texts.size(); ++i) d.examples.push_back({texts[i], -1, 0, text_pairs.empty() ? "" : text_pairs[i], {}});
  TokenizedData t = infer::tokenize(d, tokenizer_, max_length_, /*threads=*/1);
  std::vector<TokenIds> out(t.size());
  for (size_t i = 0; i < t.size(); ++i) {
    out[i].ids = std::move(t.ids[i]);
    if (!t.token_type_ids.empty()) out[i].token_type_ids = std::move(t.token_type_ids[i]);
  }
  return out;
}

std::vector<float> Classifier::logits(const std::vector<const TokenIds*>& sequences) {
  // Shortest first, as eval and predict order their batches (infer::evaluate's stable
  // sort by length): the same texts then form the same packed batch, row for row, so the
  // answers equal `predict`'s bit for bit; results go back in the callers' order.
  std::vector<size_t> order(sequences.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sequences[a]->size() < sequences[b]->size(); });
  // Pairs and single texts may share a batch (serve): a single text's types are all 0.
  const bool typed = std::any_of(sequences.begin(), sequences.end(),
                                 [](const TokenIds* s) { return !s->token_type_ids.empty(); });
  model::Batch batch;
  batch.offsets.push_back(0);
  for (size_t i : order) {
    const TokenIds& s = *sequences[i];
    batch.input_ids.insert(batch.input_ids.end(), s.ids.begin(), s.ids.end());
    if (typed) {
      batch.token_type_ids.insert(batch.token_type_ids.end(), s.token_type_ids.begin(), s.token_type_ids.end());
      batch.token_type_ids.resize(batch.input_ids.size(), 0);
    }
    batch.lengths.push_back(static_cast<int32_t>(s.size()));
    batch.offsets.push_back(static_cast<int32_t>(batch.input_ids.size()));
  }
  model().forward(batch, /*train=*/false);
  const float* out = model().logits();
  const size_t k = static_cast<size_t>(num_labels_);
  std::vector<float> logits(sequences.size() * k);
  for (size_t r = 0; r < order.size(); ++r) std::copy(out + r * k, out + (r + 1) * k, logits.begin() + order[r] * k);
  return logits;
}

model::ProblemType Classifier::problem_type() const { return model().config().resolved_problem_type(); }

void Classifier::set_label_names(std::vector<std::string> names) {
  if (static_cast<int>(names.size()) != num_labels_)
    throw Error("--label-names: " + std::to_string(names.size()) + " names given, the model has " +
                std::to_string(num_labels_) + " labels");
  for (size_t i = 0; i < names.size(); ++i)
    if (names[i].empty()) throw Error("--label-names: name " + std::to_string(i + 1) + " is empty");
  label_names_ = std::move(names);
}

}  // namespace bertune::infer
