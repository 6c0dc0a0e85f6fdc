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

std::vector<TensorSpec> bert_tensor_layout(const BertConfig& config, Task task) {
  const int64_t V = config.vocab_size, H = config.hidden_size, I = config.intermediate_size;
  const int64_t P = config.max_position_embeddings, TT = config.type_vocab_size;
  std::vector<TensorSpec> specs;
  auto add = [&](std::string name, std::vector<int64_t> shape) -> TensorSpec& {
    TensorSpec& spec = specs.emplace_back();
    spec.name = std::move(name);
    spec.shape = std::move(shape);
    return spec;
  };
  add("bert.embeddings.word_embeddings.weight", {V, H});
  add("bert.embeddings.position_embeddings.weight", {P, H});
  add("bert.embeddings.token_type_embeddings.weight", {TT, H});
  add("bert.embeddings.LayerNorm.weight", {H});
  add("bert.embeddings.LayerNorm.bias", {H});
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    std::string pre = "bert.encoder.layer." + std::to_string(l) + ".";
    add(pre + "attention.self.query.weight", {H, H});
    add(pre + "attention.self.key.weight", {H, H}).follows_previous = true;
    add(pre + "attention.self.value.weight", {H, H}).follows_previous = true;
    add(pre + "attention.self.query.bias", {H});
    add(pre + "attention.self.key.bias", {H}).follows_previous = true;
    add(pre + "attention.self.value.bias", {H}).follows_previous = true;
    add(pre + "attention.output.dense.weight", {H, H});
    add(pre + "attention.output.dense.bias", {H});
    add(pre + "attention.output.LayerNorm.weight", {H});
    add(pre + "attention.output.LayerNorm.bias", {H});
    add(pre + "intermediate.dense.weight", {I, H});
    add(pre + "intermediate.dense.bias", {I});
    add(pre + "output.dense.weight", {H, I});
    add(pre + "output.dense.bias", {H});
    add(pre + "output.LayerNorm.weight", {H});
    add(pre + "output.LayerNorm.bias", {H});
  }
  make_head(task)->append_tensors(config, specs);
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
    p.decay = p.name.find("bias") == std::string::npos &&
              p.name.find("LayerNorm.weight") == std::string::npos;
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
  bool is_layernorm = p.name.find("LayerNorm") != std::string::npos;
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
  if (p.name == "bert.embeddings.word_embeddings.weight") {
    int pad = config.pad_token_id;
    if (pad >= 0 && pad < config.vocab_size)
      std::fill(x + size_t(pad) * config.hidden_size, x + size_t(pad + 1) * config.hidden_size, 0.f);
  }
}

// Found by HF name, so that only bert_tensor_layout knows the order.
EncoderParams encoder_views(const BertConfig& config, const FlatView& at) {
  EncoderParams p;
  p.word = at["bert.embeddings.word_embeddings.weight"];
  p.position = at["bert.embeddings.position_embeddings.weight"];
  p.token_type = at["bert.embeddings.token_type_embeddings.weight"];
  p.emb_ln_g = at["bert.embeddings.LayerNorm.weight"];
  p.emb_ln_b = at["bert.embeddings.LayerNorm.bias"];
  for (int l = 0; l < config.num_hidden_layers; ++l) {
    const std::string pre = "bert.encoder.layer." + std::to_string(l) + ".";
    LayerParams L;
    L.qkv_w = at[pre + "attention.self.query.weight"];  // key, value weights follow: [3H, H]
    L.qkv_b = at[pre + "attention.self.query.bias"];    // key, value biases follow: [3H]
    L.attn_out_w = at[pre + "attention.output.dense.weight"];
    L.attn_out_b = at[pre + "attention.output.dense.bias"];
    L.ln1_g = at[pre + "attention.output.LayerNorm.weight"];
    L.ln1_b = at[pre + "attention.output.LayerNorm.bias"];
    L.ffn_in_w = at[pre + "intermediate.dense.weight"];
    L.ffn_in_b = at[pre + "intermediate.dense.bias"];
    L.ffn_out_w = at[pre + "output.dense.weight"];
    L.ffn_out_b = at[pre + "output.dense.bias"];
    L.ln2_g = at[pre + "output.LayerNorm.weight"];
    L.ln2_b = at[pre + "output.LayerNorm.bias"];
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
