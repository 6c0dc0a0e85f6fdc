#include "model/config.h"

#include <charconv>
#include <cstdlib>

#include <climits>
#include <cmath>
#include <cstdint>
#include <string_view>

#include "io/atomic_file.h"
#include "io/json_error.h"
#include "util/enum_names.h"
#include "util/error.h"

namespace bertune::model {

constexpr int kMaxNumLabels = 65536;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// Every field is checked for its JSON type by hand: nlohmann's get<int>()
// turns 1.5 into 1 and 2147483648 into a negative number without a word.
std::string shown(const json& v) { return quote_excerpt(v.dump(-1, ' ', false, json::error_handler_t::replace), 60); }

void take(json& j, const char* key, int& out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end()) return;
  if (!it->is_null()) {
    if (!it->is_number_integer()) {
      if (it->is_number())
        throw Error(source + ": field '" + key + "' is " + shown(*it) + ", not an integer");
      throw Error(source + ": field '" + key + "' must be an integer (found " + shown(*it) + ")");
    }
    const bool too_big = it->is_number_unsigned() ? it->get<uint64_t>() > uint64_t(INT32_MAX)
                                                   : it->get<int64_t>() > INT32_MAX || it->get<int64_t>() < INT32_MIN;
    if (too_big)
      throw Error(source + ": field '" + key + "' is " + shown(*it) + ", outside the 32-bit range [" +
                  std::to_string(INT32_MIN) + ", " + std::to_string(INT32_MAX) + "]");
    out = static_cast<int>(it->get<int64_t>());
  }
  j.erase(it);
}

void take(json& j, const char* key, float& out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end()) return;
  if (!it->is_null()) {
    if (!it->is_number()) throw Error(source + ": field '" + key + "' must be a number (found " + shown(*it) + ")");
    out = it->get<float>();
  }
  j.erase(it);
}

void take(json& j, const char* key, std::string& out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end()) return;
  if (!it->is_null()) {
    if (!it->is_string()) throw Error(source + ": field '" + key + "' must be a string (found " + shown(*it) + ")");
    out = it->get<std::string>();
  }
  j.erase(it);
}

void take(json& j, const char* key, std::vector<std::string>& out, const std::string& source) {
  auto it = j.find(key);
  if (it == j.end()) return;
  if (!it->is_null()) {
    if (!it->is_array()) throw Error(source + ": field '" + key + "' must be a list of strings (found " + shown(*it) + ")");
    out.clear();
    for (const auto& v : *it) {
      if (!v.is_string()) throw Error(source + ": field '" + key + "' holds " + shown(v) + ", not a string");
      out.push_back(v.get<std::string>());
    }
  }
  j.erase(it);
}

void require_positive(int value, const char* key, const std::string& source) {
  if (value <= 0) throw Error(source + ": field '" + std::string(key) + "' is " + std::to_string(value) + "; it must be positive");
}

void require_probability(float p, const char* key, const std::string& source) {
  if (!(p >= 0.f && p < 1.f))
    throw Error(source + ": field '" + std::string(key) + "' is " + std::to_string(p) + "; a dropout probability must lie in [0, 1)");
}

// Refuses shapes that could not be allocated (or that overflow the kernels'
// 32-bit element counts) before anything is allocated.
void check_size_limits(const BertConfig& c, const std::string& source) {
  auto matrix = [&](const char* a, long long rows, const char* b, long long cols) {
    if (rows * cols > INT32_MAX)
      throw Error(source + ": " + a + " x " + b + " = " + std::to_string(rows) + " x " + std::to_string(cols) +
                  " = " + std::to_string(rows * cols) + " weights in one matrix, more than the limit " +
                  std::to_string(INT32_MAX));
  };
  matrix("vocab_size", c.vocab_size, "hidden_size", c.hidden_size);
  matrix("intermediate_size", c.intermediate_size, "hidden_size", c.hidden_size);
  matrix("max_position_embeddings", c.max_position_embeddings, "hidden_size", c.hidden_size);
  matrix("hidden_size", c.hidden_size, "hidden_size", c.hidden_size);
  const long long params = c.non_embedding_parameters() +
                           (static_cast<long long>(c.vocab_size) + c.max_position_embeddings + c.type_vocab_size) *
                               c.hidden_size;
  const uint64_t bytes = static_cast<uint64_t>(params) * 4, memory = io::physical_memory_bytes();
  if (memory && bytes > memory)
    throw Error(source + ": the model would have " + std::to_string(params) + " parameters (" +
                std::to_string(bytes >> 20) + " MiB of float32 weights), more than this machine's memory (" +
                std::to_string(memory >> 20) + " MiB)");
}

constexpr EnumNames<Family, 5> kFamilyNames{{{{Family::Bert, "bert"},
                                             {Family::Roberta, "roberta"},
                                             {Family::XlmRoberta, "xlm-roberta"},
                                             {Family::Electra, "electra"},
                                             {Family::DistilBert, "distilbert"}}}};

// DistilBertConfig's names of BERT's fields (HF maps hidden_size to dim, and so on).
constexpr std::pair<const char*, const char*> kDistilBertFields[] = {
    {"hidden_size", "dim"},
    {"num_hidden_layers", "n_layers"},
    {"num_attention_heads", "n_heads"},
    {"intermediate_size", "hidden_dim"},
    {"hidden_act", "activation"},
    {"hidden_dropout_prob", "dropout"},
    {"attention_probs_dropout_prob", "attention_dropout"},
    {"classifier_dropout", "seq_classif_dropout"}};

// The config.json name of BERT's field `key` in family f.
const char* field_name(Family f, const char* key) {
  if (f == Family::DistilBert)
    for (const auto& [bert, own] : kDistilBertFields)
      if (std::string_view(key) == bert) return own;
  return key;
}

// The values from_json read, each within what the model computes; `rest`: the fields it kept
// verbatim (position_embedding_type, sinusoidal_pos_embds). Errors name the family's field.
void check_values(const BertConfig& c, const json& rest, const std::string& source) {
  const Family f = c.family;
  auto F = [f](const char* key) { return field_name(f, key); };
  if (c.hidden_act != "gelu")
    throw Error(source + ": " + F("hidden_act") + " '" + c.hidden_act + "' is not supported (only 'gelu')");
  require_positive(c.vocab_size, "vocab_size", source);
  require_positive(c.hidden_size, F("hidden_size"), source);
  require_positive(c.num_attention_heads, F("num_attention_heads"), source);
  require_positive(c.intermediate_size, F("intermediate_size"), source);
  require_positive(c.max_position_embeddings, "max_position_embeddings", source);
  if (f != Family::DistilBert) require_positive(c.type_vocab_size, "type_vocab_size", source);
  if (f == Family::Electra) require_positive(c.embedding_size, "embedding_size", source);
  if (c.num_hidden_layers < 0)
    throw Error(source + ": field '" + F("num_hidden_layers") + "' is " + std::to_string(c.num_hidden_layers) +
                "; it must be >= 0");
  if (c.hidden_size % c.num_attention_heads)
    throw Error(source + ": " + F("hidden_size") + " " + std::to_string(c.hidden_size) +
                " is not a positive multiple of " + F("num_attention_heads") + " " +
                std::to_string(c.num_attention_heads));
  if (c.max_sequence_length() <= 0)
    throw Error(source + ": max_position_embeddings " + std::to_string(c.max_position_embeddings) +
                " leaves no position for a token (RoBERTa's positions start at pad_token_id + 1 = " +
                std::to_string(c.position_offset()) + ")");
  if (auto sin = rest.find("sinusoidal_pos_embds"); f == Family::DistilBert && sin != rest.end() && *sin == true)
    throw Error(source + ": sinusoidal_pos_embds true is not supported (only learned position embeddings)");
  if (c.pad_token_id < 0 || c.pad_token_id >= c.vocab_size)
    throw Error(source + ": field 'pad_token_id' is " + std::to_string(c.pad_token_id) + ", outside [0, vocab_size " +
                std::to_string(c.vocab_size) + ")");
  if (!(c.layer_norm_eps > 0.f) || !std::isfinite(c.layer_norm_eps))
    throw Error(source + ": field 'layer_norm_eps' is " + std::to_string(c.layer_norm_eps) +
                "; it must be a positive number (every LayerNorm would divide by zero or a negative)");
  if (!(c.initializer_range >= 0.f) || !std::isfinite(c.initializer_range))
    throw Error(source + ": field 'initializer_range' is " + std::to_string(c.initializer_range) + "; it must be >= 0");
  require_probability(c.hidden_dropout_prob, F("hidden_dropout_prob"), source);
  require_probability(c.attention_probs_dropout_prob, F("attention_probs_dropout_prob"), source);
  if (c.classifier_dropout >= 0.f) require_probability(c.classifier_dropout, F("classifier_dropout"), source);
  check_size_limits(c, source);
  if (auto pe = rest.find("position_embedding_type");
      pe != rest.end() && pe->is_string() && *pe != "absolute")
    throw Error(source + ": position_embedding_type '" + pe->get<std::string>() +
                "' is not supported (only 'absolute')");
}

constexpr EnumNames<ProblemType, 3> kProblemTypeNames{{{{ProblemType::Regression, "regression"},
                                                      {ProblemType::SingleLabel, "single_label_classification"},
                                                      {ProblemType::MultiLabel, "multi_label_classification"}}}};

}  // namespace

Family parse_family(const std::string& model_type) {
  try {
    return kFamilyNames.parse(model_type);
  } catch (const Error&) {
    std::string list;
    for (const auto& [family, name] : kFamilyNames.entries) list += (list.empty() ? "" : ", ") + std::string(name);
    throw Error("model_type \"" + model_type + "\" is not supported (supported: " + list + ")");
  }
}

const char* family_model_type(Family f) { return kFamilyNames.name(f); }

std::string BertConfig::classifier_architecture(bool per_token) const {
  const char* head = per_token ? "ForTokenClassification" : "ForSequenceClassification";
  switch (family) {
    case Family::Roberta: return std::string("Roberta") + head;
    case Family::XlmRoberta: return std::string("XLMRoberta") + head;
    case Family::Electra: return std::string("Electra") + head;
    case Family::DistilBert: return std::string("DistilBert") + head;
    case Family::Bert: break;
  }
  return std::string("Bert") + head;
}

bool BertConfig::is_token_classifier() const {
  return architectures.size() == 1 && architectures[0].ends_with("ForTokenClassification");
}

ProblemType parse_problem_type(const std::string& name) { return kProblemTypeNames.parse(name); }

const char* problem_type_name(ProblemType t) { return t == ProblemType::Unset ? "" : kProblemTypeNames.name(t); }

void BertConfig::set_num_labels(int n) {
  id2label.clear();
  for (int i = 0; i < n; ++i) id2label[i] = "LABEL_" + std::to_string(i);
}

long long BertConfig::non_embedding_parameters() const {
  long long h = hidden_size, f = intermediate_size;
  long long layer = 4 * (h * h + h) + 2 * (h * f) + f + h + 4 * h;  // attn, ffn, 2 LayerNorms
  long long n = num_labels(), e = embedding_width();
  // As HF's num_parameters(exclude_embeddings=True): only nn.Embedding tables
  // are left out, so the embedding LayerNorm (and ELECTRA's projection), the pooler
  // (or the head's dense) and the classifier count.
  const long long project = e != h ? e * h + h : 0;
  return layer * num_hidden_layers + 2 * e + project + (h * h + h) + (h * n + n);
}

BertConfig BertConfig::from_json(const json& in, const std::string& source) {
  if (!in.is_object()) throw Error(source + ": expected a JSON object");
  json j = in;
  BertConfig c;
  if (auto mt = j.find("model_type"); mt != j.end()) {
    if (!mt->is_string()) throw Error(source + ": model_type " + shown(*mt) + " is not supported");
    try {
      c.family = parse_family(mt->get<std::string>());
    } catch (const Error& e) {
      throw Error(source + ": " + e.what());
    }
    j.erase(mt);  // to_json writes it back
  }
  // HF's defaults where they differ from BERT's: DistilBertConfig's 6 layers and
  // seq_classif_dropout 0.2, ElectraConfig's embedding_size 128.
  const Family f = c.family;
  if (f == Family::DistilBert) c.num_hidden_layers = 6, c.classifier_dropout = 0.2f, c.type_vocab_size = 0;
  if (f == Family::Electra) c.embedding_size = 128;
  auto F = [f](const char* key) { return field_name(f, key); };
  take(j, "vocab_size", c.vocab_size, source);
  take(j, F("hidden_size"), c.hidden_size, source);
  take(j, F("num_hidden_layers"), c.num_hidden_layers, source);
  take(j, F("num_attention_heads"), c.num_attention_heads, source);
  take(j, F("intermediate_size"), c.intermediate_size, source);
  take(j, F("hidden_act"), c.hidden_act, source);
  take(j, F("hidden_dropout_prob"), c.hidden_dropout_prob, source);
  take(j, F("attention_probs_dropout_prob"), c.attention_probs_dropout_prob, source);
  take(j, "max_position_embeddings", c.max_position_embeddings, source);
  if (f != Family::DistilBert) {  // DistilBERT: no token types, LayerNorm eps 1e-12 fixed
    take(j, "type_vocab_size", c.type_vocab_size, source);
    take(j, "layer_norm_eps", c.layer_norm_eps, source);
  }
  if (f == Family::Electra) take(j, "embedding_size", c.embedding_size, source);
  take(j, "initializer_range", c.initializer_range, source);
  take(j, "pad_token_id", c.pad_token_id, source);
  take(j, F("classifier_dropout"), c.classifier_dropout, source);
  take(j, "architectures", c.architectures, source);
  std::string problem;
  take(j, "problem_type", problem, source);
  if (!problem.empty()) {
    try {
      c.problem_type = parse_problem_type(problem);
    } catch (const Error& e) {
      throw Error(source + ": field 'problem_type' " + e.what());
    }
  }
  if (auto it = j.find("id2label"); it != j.end()) {
    if (!it->is_object()) throw Error(source + ": field 'id2label' must be an object");
    if (it->empty()) throw Error(source + ": field 'id2label' is empty; a classifier needs at least one label");
    for (auto& [k, v] : it->items()) {
      size_t used = 0;
      int id = -1;
      try {
        id = std::stoi(k, &used);
      } catch (const std::exception&) {
      }
      if (used != k.size() || id < 0 || !v.is_string())
        throw Error(source + ": id2label entry '" + quote_excerpt(k, 40) + "' is not \"<int >= 0>\": \"<name>\"");
      c.id2label[id] = v.get<std::string>();
    }
    const int n = static_cast<int>(c.id2label.size());
    if (c.id2label.rbegin()->first != n - 1)
      throw Error(source + ": id2label must number its labels 0.." + std::to_string(n - 1));
    // HF only warns and takes id2label's count: a hand-edited num_labels 2 beside three names
    // silently made a three-way classifier.
    if (auto nl = j.find("num_labels"); nl != j.end() && !(nl->is_number_integer() && *nl == n))
      throw Error(source + ": field 'num_labels' is " + shown(*nl) + " but id2label names " + std::to_string(n) +
                  " labels; remove num_labels or make them agree");
    j.erase(it);
    j.erase("label2id");
  } else if (j.contains("num_labels")) {
    int n = 0;
    take(j, "num_labels", n, source);
    // A cap, not a model rule: a classifier over more labels than this is not a BERT
    // fine-tuning job, and building id2label/label2id for ~10^6 of them took 47 s under the
    // fuzzer (tests/fixtures/fuzz/config_many_labels.json).
    if (n <= 0 || n > kMaxNumLabels)
      throw Error(source + ": field 'num_labels' is " + std::to_string(n) + "; it must lie in [1, " +
                  std::to_string(kMaxNumLabels) + "]");
    c.set_num_labels(n);
  }
  j.erase("num_labels");

  check_values(c, j, source);
  c.extra = std::move(j);
  return c;
}

BertConfig BertConfig::load(const fs::path& path) {
  fs::path file = fs::is_directory(path) ? path / "config.json" : path;
  std::string text = io::read_text_file(file);  // a directory without config.json: "cannot read DIR/config.json"
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    throw Error(file.string() + ": not valid JSON (" + io::json_error_position(e) + ")");
  }
  return from_json(j, file.string());
}

// The double whose shortest decimal is the float's, so config.json says 0.1 (as HF
// writes it) rather than 0.10000000149011612, and reads back to the same float.
static double as_written(float f) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, f);
  return ec == std::errc() ? std::strtod(std::string(buf, end).c_str(), nullptr) : double(f);
}

json BertConfig::to_json() const {
  json j = extra;
  auto F = [this](const char* key) { return field_name(family, key); };
  j["model_type"] = family_model_type(family);
  j["vocab_size"] = vocab_size;
  j[F("hidden_size")] = hidden_size;
  j[F("num_hidden_layers")] = num_hidden_layers;
  j[F("num_attention_heads")] = num_attention_heads;
  j[F("intermediate_size")] = intermediate_size;
  j[F("hidden_act")] = hidden_act;
  j[F("hidden_dropout_prob")] = as_written(hidden_dropout_prob);
  j[F("attention_probs_dropout_prob")] = as_written(attention_probs_dropout_prob);
  j["max_position_embeddings"] = max_position_embeddings;
  if (family != Family::DistilBert) {
    j["type_vocab_size"] = type_vocab_size;
    j["layer_norm_eps"] = as_written(layer_norm_eps);
  }
  if (family == Family::Electra) j["embedding_size"] = embedding_width();
  j["initializer_range"] = as_written(initializer_range);
  j["pad_token_id"] = pad_token_id;
  j[F("classifier_dropout")] = classifier_dropout < 0 ? json(nullptr) : json(as_written(classifier_dropout));
  if (!architectures.empty()) j["architectures"] = architectures;
  json id2 = json::object(), l2i = json::object();
  int n = num_labels();
  for (int i = 0; i < n; ++i) {
    const std::string name = label_name(i);
    id2[std::to_string(i)] = name;
    l2i[name] = i;
  }
  j["id2label"] = id2;
  j["label2id"] = l2i;
  if (problem_type != ProblemType::Unset) j["problem_type"] = problem_type_name(problem_type);
  return j;
}

ProblemType BertConfig::resolved_problem_type() const {
  if (problem_type != ProblemType::Unset) return problem_type;
  return num_labels() == 1 ? ProblemType::Regression : ProblemType::SingleLabel;
}

std::string BertConfig::label_name(int id) const {
  auto it = id2label.find(id);
  return it != id2label.end() ? it->second : "LABEL_" + std::to_string(id);
}

void BertConfig::save(const fs::path& path) const {
  io::write_file_atomic(path, to_json().dump(2) + "\n");
}

void require_max_length_fits(int max_length, const BertConfig& config, const std::string& where) {
  if (max_length <= config.max_sequence_length()) return;
  const std::string tail = where.empty() ? "" : ", " + where;
  if (config.position_offset() > 0)
    throw Error("--max-length " + std::to_string(max_length) + " exceeds the model's longest sequence (" +
                std::to_string(config.max_sequence_length()) + " = max_position_embeddings " +
                std::to_string(config.max_position_embeddings) + " - pad_token_id - 1" + tail + ")");
  throw Error("--max-length " + std::to_string(max_length) + " exceeds the model's max_position_embeddings (" +
              std::to_string(config.max_position_embeddings) + tail + ")");
}

std::string pair_token_type_problem(const BertConfig& config, const std::string& model) {
  if (!config.reads_token_types() || config.type_vocab_size >= 2) return "";
  return model + " has type_vocab_size " + std::to_string(config.type_vocab_size) +
         ", no token type for a pair's second text";
}

void require_pair_token_type(const BertConfig& config, const std::string& model) {
  if (const std::string problem = pair_token_type_problem(config, model); !problem.empty())
    throw Error("--text-pair-column: " + problem);
}

}  // namespace bertune::model
