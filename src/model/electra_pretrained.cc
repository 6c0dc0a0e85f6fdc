#include "model/electra_pretrained.h"

#include <numeric>
#include <string>

#include "util/error.h"

namespace bertune::model {

namespace {

HostTensor copy_of(const TensorRef& t) {
  HostTensor h;
  h.shape = t.shape;
  h.data.assign(t.data, t.data + h.numel());
  return h;
}

BertConfig electra_config(const BertConfig& trained, const char* architecture) {
  if (trained.family != Family::Bert)
    throw Error(std::string("ELECTRA checkpoint: the trained model is model_type \"") +
                family_model_type(trained.family) + "\", expected the BERT-named model pretraining trains");
  BertConfig c = trained;
  c.family = Family::Electra;
  c.embedding_size = trained.hidden_size;
  c.architectures = {architecture};
  return c;
}

// bert.* -> electra.*; every other name through `head` (false: unknown).
template <class Head>
ElectraCheckpoint convert(const BertConfig& config, const char* architecture, const std::vector<TensorRef>& state,
                          Head head) {
  ElectraCheckpoint out;
  out.config = electra_config(config, architecture);
  for (const TensorRef& t : state) {
    if (t.name.rfind("bert.", 0) == 0) {
      out.tensors["electra." + t.name.substr(5)] = copy_of(t);
      continue;
    }
    if (!head(t, out.tensors))
      throw Error("ELECTRA checkpoint (" + std::string(architecture) + "): no ELECTRA name for tensor " + t.name);
  }
  return out;
}

}  // namespace

std::vector<TensorRef> ElectraCheckpoint::refs() const {
  std::vector<TensorRef> r;
  for (const auto& [name, t] : tensors) r.push_back({name, t.shape, t.data.data()});
  return r;
}

std::vector<io::Int64Ref> ElectraCheckpoint::buffers() const {
  if (position_ids.empty()) return {};
  return {{"electra.embeddings.position_ids", {1, static_cast<int64_t>(position_ids.size())}, position_ids.data()}};
}

ElectraCheckpoint electra_discriminator_checkpoint(const BertConfig& config, const std::vector<TensorRef>& state) {
  return convert(config, "ElectraForPreTraining", state, [&](const TensorRef& t, TensorMap& out) {
    const std::string p = "discriminator_predictions.";
    if (t.name == p + "dense.weight" || t.name == p + "dense.bias") {
      out[t.name] = copy_of(t);
      return true;
    }
    const bool weight = t.name == p + "classifier.weight";
    if (!weight && t.name != p + "classifier.bias") return false;
    // [2, H] -> [1, H] (or [2] -> [1]): the "replaced" row minus the "original" row.
    const int64_t width = weight ? t.shape.at(1) : 1;
    if (t.shape.at(0) != 2) throw Error("ELECTRA checkpoint: " + t.name + " has shape " + shape_text(t.shape));
    HostTensor& h = out[p + (weight ? "dense_prediction.weight" : "dense_prediction.bias")];
    h.shape = weight ? std::vector<int64_t>{1, width} : std::vector<int64_t>{1};
    h.data.resize(width);
    for (int64_t i = 0; i < width; ++i) h.data[i] = t.data[width + i] - t.data[i];
    return true;
  });
}

ElectraCheckpoint electra_generator_checkpoint(const BertConfig& config, const std::vector<TensorRef>& state) {
  ElectraCheckpoint g = convert(config, "ElectraForMaskedLM", state, [](const TensorRef& t, TensorMap& out) {
    static const std::pair<const char*, const char*> kNames[] = {
        {"cls.predictions.transform.dense.", "generator_predictions.dense."},
        {"cls.predictions.transform.LayerNorm.", "generator_predictions.LayerNorm."}};
    for (const auto& [from, to] : kNames)
      if (t.name.rfind(from, 0) == 0) {
        out[to + t.name.substr(std::string(from).size())] = copy_of(t);
        return true;
      }
    if (t.name != "cls.predictions.bias") return false;
    out["generator_lm_head.bias"] = copy_of(t);
    return true;
  });
  const auto word = g.tensors.find("electra.embeddings.word_embeddings.weight");
  if (word == g.tensors.end()) throw Error("ELECTRA checkpoint: the generator has no word embeddings");
  g.tensors["generator_lm_head.weight"] = word->second;  // HF ties it to the word embeddings
  g.position_ids.resize(static_cast<size_t>(config.max_position_embeddings));
  std::iota(g.position_ids.begin(), g.position_ids.end(), int64_t{0});
  return g;
}

}  // namespace bertune::model
