#include "io/checkpoint.h"

#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/json_error.h"
#include "io/torch_pickle.h"
#include "util/error.h"

namespace bertune::io {
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

TensorMap read_one_file(const fs::path& path) {
  std::string name = path.filename().string();
  if (ends_with(name, ".safetensors")) return read_safetensors(path);
  if (ends_with(name, ".bin") || ends_with(name, ".pt") || ends_with(name, ".pth"))
    return read_torch_bin(path);
  throw Error(path.string() + ": unknown weights format (expected .safetensors or .bin)");
}

TensorMap normalized(TensorMap in, const std::string& where) {
  TensorMap out;
  for (auto& [name, t] : in) {
    std::string fixed = normalize_tensor_name(name);
    if (!out.emplace(fixed, std::move(t)).second)
      throw Error(where + ": tensors '" + name + "' and '" + fixed + "' both present");
  }
  return out;
}

// {"metadata": ..., "weight_map": {tensor: shard file}}, as save_pretrained
// writes for large models. Shard names must be plain files beside the index.
TensorMap read_sharded(const fs::path& index) {
  const std::string where = index.string();
  json j;
  try {
    j = json::parse(read_file(index));
  } catch (const json::exception& e) {
    throw Error(where + ": not valid JSON (" + json_error_position(e) + ")");
  }
  if (!j.is_object() || !j.contains("weight_map") || !j["weight_map"].is_object())
    throw Error(where + ": no 'weight_map' object");
  std::map<std::string, std::set<std::string>> shards;  // file -> tensors it must hold
  for (auto& [tensor, file] : j["weight_map"].items()) {
    if (!file.is_string()) throw Error(where + ": weight_map entry '" + tensor + "' is not a file name");
    std::string f = file.get<std::string>();
    if (f.empty() || f.find('/') != std::string::npos || f == "." || f == "..")
      throw Error(where + ": shard '" + f + "' is not a plain file name beside the index");
    shards[f].insert(tensor);
  }
  TensorMap all;
  for (const auto& [file, names] : shards) {
    fs::path shard = index.parent_path() / file;
    if (!fs::exists(shard)) throw Error(where + ": shard " + shard.string() + " is missing");
    TensorMap part = read_one_file(shard);
    for (auto& [name, t] : part) {
      if (!names.count(name)) continue;  // the index decides which shard owns a tensor
      all.emplace(name, std::move(t));
    }
  }
  return all;
}

std::string guess_architecture(const std::vector<TensorRef>& tensors) {
  for (const auto& t : tensors) {
    if (t.name.rfind("classifier.", 0) == 0) return "BertForSequenceClassification";
    if (t.name.rfind("cls.predictions.", 0) == 0) return "BertForMaskedLM";
  }
  return "BertModel";
}

// Exchanges two directory entries atomically (Linux renameat2). False when
// the filesystem or kernel cannot; errno says why.
bool exchange_paths(const fs::path& a, const fs::path& b) {
#ifdef RENAME_EXCHANGE
  return ::renameat2(AT_FDCWD, a.c_str(), AT_FDCWD, b.c_str(), RENAME_EXCHANGE) == 0;
#else
  errno = ENOSYS;
  return false;
#endif
}

}  // namespace

std::string normalize_tensor_name(const std::string& name) {
  if (ends_with(name, ".gamma")) return name.substr(0, name.size() - 6) + ".weight";
  if (ends_with(name, ".beta")) return name.substr(0, name.size() - 5) + ".bias";
  return name;
}

TensorMap read_state_dict(const fs::path& path) {
  std::string name = path.filename().string();
  if (ends_with(name, ".index.json")) return normalized(read_sharded(path), path.string());
  return normalized(read_one_file(path), path.string());
}

fs::path find_weights(const fs::path& dir) {
  static const char* kCandidates[] = {"model.safetensors", "model.safetensors.index.json",
                                      "pytorch_model.bin", "pytorch_model.bin.index.json"};
  if (!fs::is_directory(dir)) throw Error(dir.string() + ": not a directory");
  std::string tried;
  for (const char* c : kCandidates) {
    if (fs::is_regular_file(dir / c)) return dir / c;
    tried += std::string(tried.empty() ? "" : ", ") + c;
  }
  throw Error(dir.string() + ": no weights file found (looked for " + tried + ")");
}

std::map<std::string, std::vector<int64_t>> expected_bert_shapes(const model::BertConfig& c,
                                                                 Head head) {
  const int64_t h = c.hidden_size, f = c.intermediate_size, v = c.vocab_size;
  std::map<std::string, std::vector<int64_t>> s;
  auto linear = [&](const std::string& p, int64_t out, int64_t in) {
    s[p + ".weight"] = {out, in};
    s[p + ".bias"] = {out};
  };
  auto layer_norm = [&](const std::string& p) {
    s[p + ".weight"] = {h};
    s[p + ".bias"] = {h};
  };
  s["bert.embeddings.word_embeddings.weight"] = {v, h};
  s["bert.embeddings.position_embeddings.weight"] = {c.max_position_embeddings, h};
  s["bert.embeddings.token_type_embeddings.weight"] = {c.type_vocab_size, h};
  layer_norm("bert.embeddings.LayerNorm");
  for (int i = 0; i < c.num_hidden_layers; ++i) {
    std::string p = "bert.encoder.layer." + std::to_string(i) + ".";
    linear(p + "attention.self.query", h, h);
    linear(p + "attention.self.key", h, h);
    linear(p + "attention.self.value", h, h);
    linear(p + "attention.output.dense", h, h);
    layer_norm(p + "attention.output.LayerNorm");
    linear(p + "intermediate.dense", f, h);
    linear(p + "output.dense", h, f);
    layer_norm(p + "output.LayerNorm");
  }
  if (head != Head::MaskedLM) linear("bert.pooler.dense", h, h);  // MLM is built without a pooler
  if (head == Head::SequenceClassification) linear("classifier", c.num_labels(), h);
  if (head == Head::MaskedLM) {
    linear("cls.predictions.transform.dense", h, h);
    layer_norm("cls.predictions.transform.LayerNorm");
    s["cls.predictions.bias"] = {v};
    linear("cls.predictions.decoder", v, h);  // tied to word_embeddings, bias to cls.predictions.bias
  }
  return s;
}

std::vector<std::string> check_shapes(const TensorMap& tensors,
                                      const std::map<std::string, std::vector<int64_t>>& expected,
                                      const std::string& where) {
  std::set<std::string> found;
  for (const auto& [name, t] : tensors) {
    auto it = expected.find(name);
    if (it == expected.end()) it = expected.find("bert." + name);  // BertModel checkpoints
    if (it == expected.end()) continue;
    if (t.shape != it->second)
      throw Error(where + ": tensor " + name + " has shape " + shape_text(t.shape) +
                  ", config.json says " + shape_text(it->second));
    found.insert(it->first);
  }
  std::vector<std::string> missing;
  for (const auto& [name, shape] : expected)
    if (!found.count(name)) missing.push_back(name);
  return missing;
}

PretrainedTensors load_pretrained_tensors(const fs::path& dir) {
  PretrainedTensors out;
  out.config = model::BertConfig::load(dir / "config.json");
  out.weights_file = find_weights(dir);
  out.tensors = read_state_dict(out.weights_file);
  // Union of every head's names: a MaskedLM checkpoint loaded for
  // classification still has to agree with the config where it overlaps.
  auto expected = expected_bert_shapes(out.config, Head::SequenceClassification);
  expected.merge(expected_bert_shapes(out.config, Head::MaskedLM));
  // A classifier of another label count is a config mismatch too, but HF can
  // re-initialise it (ignore_mismatched_sizes); leave that decision to the caller.
  expected.erase("classifier.weight");
  expected.erase("classifier.bias");
  check_shapes(out.tensors, expected, out.weights_file.string());
  return out;
}

void save_pretrained(const fs::path& dir_in, const model::BertConfig& config,
                     const std::vector<TensorRef>& tensors, const std::vector<fs::path>& extra_files) {
  // Normalise "out/" to "out" so the temporary directory sits beside it.
  fs::path dir = dir_in.has_filename() ? dir_in : dir_in.parent_path();
  if (dir.empty()) throw Error("save_pretrained: empty directory name");
  if (fs::exists(dir)) {
    if (!fs::is_directory(dir)) throw Error(dir.string() + " exists and is not a directory");
    if (!fs::is_empty(dir) && !fs::exists(dir / "config.json"))
      throw Error(dir.string() + " exists and does not look like a saved model (no config.json); "
                  "refusing to replace it");
  }
  for (const auto& f : extra_files) {
    if (!fs::is_regular_file(f)) throw Error("save_pretrained: " + f.string() + " is not a file");
    if (f.filename() == "config.json" || f.filename() == "model.safetensors")
      throw Error("save_pretrained: extra file " + f.string() + " would overwrite the model's own");
  }

  const std::string pid = std::to_string(::getpid());
  fs::path tmp = dir, old = dir;
  tmp += ".tmp-" + pid;
  old += ".old-" + pid;
  fs::remove_all(tmp);
  fs::create_directories(tmp);
  try {
    model::BertConfig c = config;
    if (c.architectures.empty()) c.architectures = {guess_architecture(tensors)};
    json j = c.to_json();
    if (!j.contains("torch_dtype")) j["torch_dtype"] = "float32";
    write_file_atomic(tmp / "config.json", j.dump(2) + "\n");
    write_safetensors(tmp / "model.safetensors", tensors, {{"format", "pt"}});
    for (const auto& f : extra_files) write_file_atomic(tmp / f.filename(), read_file(f));
    fsync_directory(tmp);
  } catch (...) {
    std::error_code ec;
    fs::remove_all(tmp, ec);
    throw;
  }

  fs::path parent = dir.has_parent_path() ? dir.parent_path() : fs::path(".");
  if (!fs::exists(dir)) {
    fs::rename(tmp, dir);
  } else if (exchange_paths(tmp, dir)) {
    fsync_directory(parent);
    fs::remove_all(tmp);  // now holds the previous model
  } else {
    // No atomic exchange here: between these two renames <dir> is absent,
    // but both complete copies are on disk under .old-/.tmp- names.
    fs::remove_all(old);
    fs::rename(dir, old);
    fs::rename(tmp, dir);
    fsync_directory(parent);
    fs::remove_all(old);
  }
  fsync_directory(parent);
}

}  // namespace bertune::io
