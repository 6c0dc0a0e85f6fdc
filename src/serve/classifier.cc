#include "serve/classifier.h"

#include <map>

#include "data/dataset.h"
#include "kernels/ops.h"
#include "model/bert.h"
#include "model/config.h"
#include "quant/int8_model.h"
#include "text/tokenizer.h"
#include "train/metrics.h"
#include "train/trainer.h"
#include "util/error.h"

namespace bertune::serve {

std::unique_ptr<Classifier> Classifier::load(const std::filesystem::path& dir, const std::string& tokenizer,
                                             int max_length, bool int8) {
  if (max_length < 2) throw Error("--max-length: must be at least 2");
  std::unique_ptr<Classifier> c(new Classifier());
  if (quant::is_int8_model_dir(dir)) {
    auto config = model::BertConfig::load(dir);
    config.architectures = {"BertForSequenceClassification"};
    c->model_ = std::make_unique<model::BertModel>(config, model::Task::SequenceClassification);
    auto int8 = quant::read_int8_safetensors(dir / "model.safetensors");
    auto report = c->model_->load_state_dict(int8.fp32, 42);
    if (!report.initialised.empty())
      throw Error(dir.string() + ": int8 model lacks " + report.initialised.front() + " (quantize a classifier)");
    c->bind_int8(quant::encoder_int8_linears(int8, config.num_hidden_layers));
    c->int8_weights_ = true;
  } else {
    c->model_ = train::load_classifier(dir, /*head_seed=*/42);
    if (int8) {
      quant::Int8Model m;
      for (const auto& t : c->model_->state_dict())
        if (quant::is_quantized_weight(t.name, t.shape))
          m.int8[t.name] = kernels::quantize_linear(t.data, static_cast<int>(t.shape[0]), static_cast<int>(t.shape[1]));
      c->bind_int8(quant::encoder_int8_linears(m, c->model_->config().num_hidden_layers));
      c->int8_weights_ = true;
    }
  }
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

// The fp32 weights whose linear_forward calls become int8: each layer's query weight
// (the start of the fused QKV), attention output, intermediate and output dense, in
// quant::encoder_int8_linears' order. The binding is keyed by the pointer the model passes
// to linear_forward: its own parameter memory, not a host view of it.
void Classifier::bind_int8(std::vector<kernels::QuantizedLinear> linears) {
  std::map<std::string, const float*> by_name;
  for (const auto& p : model_->param_info()) by_name[p.name] = model_->params() + p.offset;
  int8_ = std::make_unique<kernels::Int8Binding>();
  const int layers = model_->config().num_hidden_layers;
  for (int l = 0; l < layers; ++l) {
    const std::string p = "bert.encoder.layer." + std::to_string(l) + ".";
    const char* names[] = {"attention.self.query.weight", "attention.output.dense.weight",
                           "intermediate.dense.weight", "output.dense.weight"};
    for (int j = 0; j < 4; ++j) int8_->bind(by_name.at(p + names[j]), std::move(linears.at(4 * l + j)));
  }
}

std::vector<TokenIds> Classifier::tokenize(const std::vector<std::string>& texts) const {
  data::Dataset d;
  for (const auto& t : texts) d.examples.push_back({t, -1, 0});
  return train::tokenize(d, *tokenizer_, max_length_, /*threads=*/1).ids;
}

std::vector<float> Classifier::logits(const std::vector<const TokenIds*>& sequences) {
  model::Batch batch;
  batch.offsets.push_back(0);
  for (const TokenIds* s : sequences) {
    batch.input_ids.insert(batch.input_ids.end(), s->begin(), s->end());
    batch.lengths.push_back(static_cast<int32_t>(s->size()));
    batch.offsets.push_back(static_cast<int32_t>(batch.input_ids.size()));
  }
  model_->forward(batch, /*train=*/false);
  const float* out = model_->logits();
  return std::vector<float>(out, out + sequences.size() * num_labels_);
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
