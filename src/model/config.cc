#include "model/config.h"

#include "io/atomic_file.h"
#include "util/error.h"

namespace bertune::model {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

template <typename T>
void take(json& j, const char* key, T& out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end()) return;
  if (!it->is_null()) {
    try {
      out = it->get<T>();
    } catch (const json::exception&) {
      throw Error(source + ": field '" + key + "' has the wrong type (" + it->dump() + ")");
    }
  }
  j.erase(it);
}

}  // namespace

void BertConfig::set_num_labels(int n) {
  id2label.clear();
  for (int i = 0; i < n; ++i) id2label[i] = "LABEL_" + std::to_string(i);
}

long long BertConfig::non_embedding_parameters() const {
  long long h = hidden_size, f = intermediate_size;
  long long layer = 4 * (h * h + h) + 2 * (h * f) + f + h + 4 * h;  // attn, ffn, 2 LayerNorms
  long long n = num_labels();
  // As HF's num_parameters(exclude_embeddings=True): only nn.Embedding tables
  // are left out, so the embedding LayerNorm, pooler and classifier count.
  return layer * num_hidden_layers + 2 * h + (h * h + h) + (h * n + n);
}

BertConfig BertConfig::from_json(const json& in, const std::string& source) {
  if (!in.is_object()) throw Error(source + ": expected a JSON object");
  json j = in;
  BertConfig c;
  take(j, "vocab_size", c.vocab_size, source);
  take(j, "hidden_size", c.hidden_size, source);
  take(j, "num_hidden_layers", c.num_hidden_layers, source);
  take(j, "num_attention_heads", c.num_attention_heads, source);
  take(j, "intermediate_size", c.intermediate_size, source);
  take(j, "hidden_act", c.hidden_act, source);
  take(j, "hidden_dropout_prob", c.hidden_dropout_prob, source);
  take(j, "attention_probs_dropout_prob", c.attention_probs_dropout_prob, source);
  take(j, "max_position_embeddings", c.max_position_embeddings, source);
  take(j, "type_vocab_size", c.type_vocab_size, source);
  take(j, "initializer_range", c.initializer_range, source);
  take(j, "layer_norm_eps", c.layer_norm_eps, source);
  take(j, "pad_token_id", c.pad_token_id, source);
  take(j, "classifier_dropout", c.classifier_dropout, source);
  take(j, "architectures", c.architectures, source);
  if (auto it = j.find("id2label"); it != j.end()) {
    if (!it->is_object()) throw Error(source + ": field 'id2label' must be an object");
    for (auto& [k, v] : it->items()) {
      try {
        c.id2label[std::stoi(k)] = v.get<std::string>();
      } catch (...) {
        throw Error(source + ": id2label entry '" + k + "' is not <int>: <string>");
      }
    }
    j.erase(it);
    j.erase("label2id");
  } else if (auto n = j.find("num_labels"); n != j.end() && n->is_number_integer()) {
    c.set_num_labels(n->get<int>());
  }
  j.erase("num_labels");

  if (c.hidden_act != "gelu")
    throw Error(source + ": hidden_act '" + c.hidden_act + "' is not supported (only 'gelu')");
  if (c.hidden_size <= 0 || c.num_attention_heads <= 0 || c.hidden_size % c.num_attention_heads)
    throw Error(source + ": hidden_size " + std::to_string(c.hidden_size) +
                " is not a positive multiple of num_attention_heads " +
                std::to_string(c.num_attention_heads));
  if (c.vocab_size <= 0 || c.num_hidden_layers < 0 || c.intermediate_size <= 0 ||
      c.max_position_embeddings <= 0 || c.type_vocab_size <= 0)
    throw Error(source + ": sizes must be positive");
  if (auto pe = j.find("position_embedding_type");
      pe != j.end() && pe->is_string() && *pe != "absolute")
    throw Error(source + ": position_embedding_type '" + pe->get<std::string>() +
                "' is not supported (only 'absolute')");
  c.extra = std::move(j);
  return c;
}

BertConfig BertConfig::load(const fs::path& path) {
  fs::path file = fs::is_directory(path) ? path / "config.json" : path;
  std::string text = io::read_file(file);
  json j;
  try {
    j = json::parse(text);
  } catch (const json::parse_error& e) {
    throw Error(file.string() + ": invalid JSON: " + e.what());
  }
  return from_json(j, file.string());
}

json BertConfig::to_json() const {
  json j = extra;
  j["model_type"] = "bert";
  j["vocab_size"] = vocab_size;
  j["hidden_size"] = hidden_size;
  j["num_hidden_layers"] = num_hidden_layers;
  j["num_attention_heads"] = num_attention_heads;
  j["intermediate_size"] = intermediate_size;
  j["hidden_act"] = hidden_act;
  j["hidden_dropout_prob"] = hidden_dropout_prob;
  j["attention_probs_dropout_prob"] = attention_probs_dropout_prob;
  j["max_position_embeddings"] = max_position_embeddings;
  j["type_vocab_size"] = type_vocab_size;
  j["initializer_range"] = initializer_range;
  j["layer_norm_eps"] = layer_norm_eps;
  j["pad_token_id"] = pad_token_id;
  j["classifier_dropout"] = classifier_dropout < 0 ? json(nullptr) : json(classifier_dropout);
  if (!architectures.empty()) j["architectures"] = architectures;
  json id2 = json::object(), l2i = json::object();
  int n = num_labels();
  for (int i = 0; i < n; ++i) {
    auto it = id2label.find(i);
    std::string name = it != id2label.end() ? it->second : "LABEL_" + std::to_string(i);
    id2[std::to_string(i)] = name;
    l2i[name] = i;
  }
  j["id2label"] = id2;
  j["label2id"] = l2i;
  return j;
}

void BertConfig::save(const fs::path& path) const {
  io::write_file_atomic(path, to_json().dump(2) + "\n");
}

}  // namespace bertune::model
