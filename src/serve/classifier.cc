#include "serve/classifier.h"

#include <algorithm>
#include <numeric>

#include "data/dataset.h"
#include "kernels/ops.h"
#include "model/bert.h"
#include "model/config.h"
#include "quant/inference_model.h"
#include "text/tokenizer.h"
#include "train/metrics.h"
#include "train/trainer.h"
#include "util/error.h"

namespace bertune::serve {

std::unique_ptr<Classifier> Classifier::load(const std::filesystem::path& dir, const std::string& tokenizer,
                                             int max_length, bool int8) {
  if (max_length < 2) throw Error("--max-length: must be at least 2");
  std::unique_ptr<Classifier> c(new Classifier());
  quant::InferenceModel loaded = quant::load_inference_model(dir, int8);
  c->model_ = std::move(loaded.model);
  c->int8_ = std::move(loaded.int8);
  c->int8_weights_ = c->int8_ != nullptr;
  c->tokenizer_ = std::make_unique<text::Tokenizer>(train::load_tokenizer_for(dir, tokenizer));
  const auto& config = c->model_->config();
  c->num_labels_ = config.num_labels();
  c->max_length_ = std::min(max_length, config.max_position_embeddings);
  for (int i = 0; i < c->num_labels_; ++i) {
    auto it = config.id2label.find(i);
    c->label_names_.push_back(it != config.id2label.end() ? it->second : "LABEL_" + std::to_string(i));
  }
  return c;
}

Classifier::~Classifier() = default;

std::vector<TokenIds> Classifier::tokenize(const std::vector<std::string>& texts) const {
  data::Dataset d;
  for (const auto& t : texts) d.examples.push_back({t, -1, 0});
  return train::tokenize(d, *tokenizer_, max_length_, /*threads=*/1).ids;
}

std::vector<float> Classifier::logits(const std::vector<const TokenIds*>& sequences) {
  // Shortest first, as eval and predict order their batches (train::evaluate's stable
  // sort by length): the same texts then form the same packed batch, row for row, so the
  // answers equal `predict`'s bit for bit; results go back in the callers' order.
  std::vector<size_t> order(sequences.size());
  std::iota(order.begin(), order.end(), size_t(0));
  std::stable_sort(order.begin(), order.end(),
                   [&](size_t a, size_t b) { return sequences[a]->size() < sequences[b]->size(); });
  model::Batch batch;
  batch.offsets.push_back(0);
  for (size_t i : order) {
    const TokenIds& s = *sequences[i];
    batch.input_ids.insert(batch.input_ids.end(), s.begin(), s.end());
    batch.lengths.push_back(static_cast<int32_t>(s.size()));
    batch.offsets.push_back(static_cast<int32_t>(batch.input_ids.size()));
  }
  model_->forward(batch, /*train=*/false);
  const float* out = model_->logits();
  const size_t k = static_cast<size_t>(num_labels_);
  std::vector<float> logits(sequences.size() * k);
  for (size_t r = 0; r < order.size(); ++r) std::copy(out + r * k, out + (r + 1) * k, logits.begin() + order[r] * k);
  return logits;
}

void Classifier::set_label_names(std::vector<std::string> names) {
  if (static_cast<int>(names.size()) != num_labels_)
    throw Error("--label-names: " + std::to_string(names.size()) + " names given, the model has " +
                std::to_string(num_labels_) + " labels");
  label_names_ = std::move(names);
}

std::vector<float> Classifier::softmax(const float* logits, int n) { return train::softmax(logits, n); }
int Classifier::argmax(const float* values, int n) { return train::argmax(values, n); }

}  // namespace bertune::serve
