#include "model/layout.h"

#include <algorithm>
#include <cmath>

#include "model/heads.h"
#include "util/error.h"

namespace bertune::model {

namespace {

uint64_t splitmix(uint64_t& state) {
  uint64_t z = (state += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

uint64_t hash_name(const std::string& s) {  // FNV-1a: per-tensor init streams
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

size_t aligned(size_t floats) { return (floats + 15) / 16 * 16; }  // 64 bytes

}  // namespace

// ---------------------------------------------------------------- tensors

EncoderNames encoder_names(const BertConfig& config) {
  EncoderNames n;
  const bool distil = config.family == Family::DistilBert;
  const std::string base = config.family == Family::Bert       ? "bert."
                           : config.roberta_like()              ? "roberta."
                           : config.family == Family::Electra   ? "electra."
                                                                : "distilbert.";
  n.word = base + "embeddings.word_embeddings";
  n.position = base + "embeddings.position_embeddings";
  if (!distil) n.token_type = base + "embeddings.token_type_embeddings";
  n.embedding_layernorm = base + "embeddings.LayerNorm";
  if (config.embedding_width() != config.hidden_size) n.project = base + "embeddings_project";
  n.layer_prefix = base + (distil ? "transformer.layer." : "encoder.layer.");
  if (distil) {
    n.query = "attention.q_lin", n.key = "attention.k_lin", n.value = "attention.v_lin";
    n.attn_out = "attention.out_lin", n.ln1 = "sa_layer_norm";
    n.ffn_in = "ffn.lin1", n.ffn_out = "ffn.lin2", n.ln2 = "output_layer_norm";
  } else {
    n.query = "attention.self.query", n.key = "attention.self.key", n.value = "attention.self.value";
    n.attn_out = "attention.output.dense", n.ln1 = "attention.output.LayerNorm";
    n.ffn_in = "intermediate.dense", n.ffn_out = "output.dense", n.ln2 = "output.LayerNorm";
  }
  return n;
}

bool is_layernorm_tensor(const std::string& name) {
  return name.find("LayerNorm.") != std::string::npos || name.find("layer_norm.") != std::string::npos;
}

std::vector<TensorSpec> bert_tensor_layout(const BertConfig& config, Task task) {
  if (config.family != Family::Bert && task != Task::SequenceClassification && task != Task::TokenClassification)
    throw Error(std::string("model_type \"") + family_model_type(config.family) +
                "\": only sequence and token classification are supported (pretraining objectives need a BERT "
                "model)");
  const int64_t V = config.vocab_size, H = config.hidden_size, I = config.intermediate_size;
  const int64_t P = config.max_position_embeddings, TT = config.type_vocab_size, E = config.embedding_width();
  const EncoderNames n = encoder_names(config);
  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape) -> TensorSpec& {
    TensorSpec& spec = specs.emplace_back();
    spec.name = std::move(name);
    spec.shape = std::move(shape);
    return spec;
  };
  add(n.word + ".weight", {V, E});
  add(n.position + ".weight", {P, E});
  if (!n.token_type.empty()) add(n.token_type + ".weight", {TT, E});
  add(n.embedding_layernorm + ".weight", {E});
  add(n.embedding_layernorm + ".bias", {E});
  if (!n.project.empty()) {
    add(n.project + ".weight", {H, E});
    add(n.project + ".bias", {H});
  }
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const std::string pre = n.layer(l);
    add(pre + n.query + ".weight", {H, H});
    add(pre + n.key + ".weight", {H, H}).follows_previous = true;
    add(pre + n.value + ".weight", {H, H}).follows_previous = true;
    add(pre + n.query + ".bias", {H});
    add(pre + n.key + ".bias", {H}).follows_previous = true;
    add(pre + n.value + ".bias", {H}).follows_previous = true;
    add(pre + n.attn_out + ".weight", {H, H});
    add(pre + n.attn_out + ".bias", {H});
    add(pre + n.ln1 + ".weight", {H});
    add(pre + n.ln1 + ".bias", {H});
    add(pre + n.ffn_in + ".weight", {I, H});
    add(pre + n.ffn_in + ".bias", {I});
    add(pre + n.ffn_out + ".weight", {H, I});
    add(pre + n.ffn_out + ".bias", {H});
    add(pre + n.ln2 + ".weight", {H});
    add(pre + n.ln2 + ".bias", {H});
  }
  make_head(task, config)->append_tensors(config, specs);
  return specs;
}

TensorShapes bert_checkpoint_shapes(const BertConfig& config, Task task) {
  TensorShapes shapes;
  for (auto& spec : bert_tensor_layout(config, task)) shapes[spec.name] = std::move(spec.shape);
  return shapes;
}

// ---------------------------------------------------------------- flat buffer

std::vector<ParamInfo> flat_param_layout(const BertConfig& config, Task task, size_t* total) {
  std::vector<ParamInfo> info;
  size_t offset = 0;
  for (const auto& spec : bert_tensor_layout(config, task)) {
    if (!spec.tied_to.empty()) continue;
    if (!spec.follows_previous) offset = aligned(offset);
    ParamInfo p;
    p.name = spec.name;
    p.shape = spec.shape;
    p.numel = 1;
    for (auto d : p.shape) p.numel *= static_cast<size_t>(d);
    p.offset = offset;
    p.decay = p.name.find("bias") == std::string::npos && !is_layernorm_tensor(p.name);
    p.head = spec.head;
    offset += p.numel;
    info.push_back(std::move(p));
  }
  *total = aligned(offset);
  return info;
}

const ParamInfo& find_param(const std::vector<ParamInfo>& info, const std::string& name) {
  for (const auto& p : info)
    if (p.name == name) return p;
  throw Error("model has no parameter named '" + name + "'");
}

void init_param_values(const BertConfig& config, const ParamInfo& p, uint64_t seed, float* x) {
  bool is_layernorm = is_layernorm_tensor(p.name);
  bool is_bias = p.name.size() >= 4 && p.name.compare(p.name.size() - 4, 4, "bias") == 0;
  if (is_layernorm) {
    std::fill(x, x + p.numel, is_bias ? 0.f : 1.f);
    return;
  }
  if (is_bias) {
    std::fill(x, x + p.numel, 0.f);
    return;
  }
  // Box-Muller on a per-tensor splitmix64 stream.
  uint64_t state = seed ^ hash_name(p.name);
  const double stddev = config.initializer_range;
  for (size_t i = 0; i < p.numel; i += 2) {
    double u1 = (static_cast<double>(splitmix(state) >> 11) + 1.0) * 0x1.0p-53;  // (0, 1]
    double u2 = static_cast<double>(splitmix(state) >> 11) * 0x1.0p-53;
    double r = std::sqrt(-2.0 * std::log(u1)), a = 2.0 * M_PI * u2;
    x[i] = static_cast<float>(stddev * r * std::cos(a));
    if (i + 1 < p.numel) x[i + 1] = static_cast<float>(stddev * r * std::sin(a));
  }
  // nn.Embedding(padding_idx=pad_token_id): word embeddings, and RoBERTa's positions too.
  const EncoderNames n = encoder_names(config);
  const bool padded_table = p.name == n.word + ".weight" || (config.roberta_like() && p.name == n.position + ".weight");
  const int64_t pad = config.pad_token_id, width = p.shape.size() == 2 ? p.shape[1] : 0;
  if (padded_table && pad >= 0 && pad < p.shape[0])
    std::fill(x + size_t(pad) * width, x + size_t(pad + 1) * width, 0.f);
}

// Found by HF name, so that only bert_tensor_layout knows the order.
EncoderParams encoder_views(const BertConfig& config, const FlatView& at) {
  const EncoderNames n = encoder_names(config);
  EncoderParams p;
  p.word = at[n.word + ".weight"];
  p.position = at[n.position + ".weight"];
  if (!n.token_type.empty()) p.token_type = at[n.token_type + ".weight"];
  p.emb_ln_g = at[n.embedding_layernorm + ".weight"];
  p.emb_ln_b = at[n.embedding_layernorm + ".bias"];
  if (!n.project.empty()) {
    p.project_w = at[n.project + ".weight"];
    p.project_b = at[n.project + ".bias"];
  }
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const std::string pre = n.layer(l);
    auto w = [&](const char* module) { return at[pre + module + ".weight"]; };
    auto b = [&](const char* module) { return at[pre + module + ".bias"]; };
    LayerParams L;
    L.qkv_w = w(n.query);  // key, value weights follow: [3H, H]
    L.qkv_b = b(n.query);  // key, value biases follow: [3H]
    L.attn_out_w = w(n.attn_out);
    L.attn_out_b = b(n.attn_out);
    L.ln1_g = w(n.ln1);
    L.ln1_b = b(n.ln1);
    L.ffn_in_w = w(n.ffn_in);
    L.ffn_in_b = b(n.ffn_in);
    L.ffn_out_w = w(n.ffn_out);
    L.ffn_out_b = b(n.ffn_out);
    L.ln2_g = w(n.ln2);
    L.ln2_b = b(n.ln2);
    p.layers.push_back(L);
  }
  return p;
}

// ---------------------------------------------------------------- activation arena

size_t ArenaPlan::total() const {
  size_t n = 0;
  for (const auto& [view, floats] : views_) n += aligned(floats);
  return n;
}

void ArenaPlan::place(float* base) const {
  for (const auto& [view, floats] : views_) {
    *view = base;
    base += aligned(floats);
  }
}

}  // namespace bertune::model
