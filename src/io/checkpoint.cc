#include "io/checkpoint.h"

#include <algorithm>
#include <map>
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

std::vector<TensorInfo> list_one_file(const fs::path& path) {
  std::string name = path.filename().string();
  if (ends_with(name, ".safetensors")) return list_safetensors(path);
  if (ends_with(name, ".bin") || ends_with(name, ".pt") || ends_with(name, ".pth")) return list_torch_bin(path);
  throw Error(path.string() + ": unknown weights format (expected .safetensors or .bin)");
}

// {"metadata": ..., "weight_map": {tensor: shard file}}, as save_pretrained
// writes for large models. Shard names must be plain files beside the index.
// Returns shard path -> the tensors it must hold.
std::map<fs::path, std::set<std::string>> read_shard_index(const fs::path& index) {
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
  std::map<fs::path, std::set<std::string>> out;
  for (auto& [file, names] : shards) {
    fs::path shard = index.parent_path() / file;
    if (!fs::exists(shard)) throw Error(where + ": shard " + shard.string() + " is missing");
    out.emplace(shard, std::move(names));
  }
  return out;
}

TensorMap read_sharded(const fs::path& index) {
  TensorMap all;
  for (const auto& [shard, names] : read_shard_index(index)) {
    TensorMap part = read_one_file(shard);
    for (auto& [name, t] : part) {
      if (!names.count(name)) continue;  // the index decides which shard owns a tensor
      all.emplace(name, std::move(t));
    }
  }
  return all;
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

std::vector<TensorInfo> list_state_dict(const fs::path& path) {
  std::vector<TensorInfo> all;
  if (ends_with(path.filename().string(), ".index.json")) {
    for (const auto& [shard, names] : read_shard_index(path))
      for (TensorInfo& t : list_one_file(shard))
        if (names.count(t.name)) all.push_back(std::move(t));
  } else {
    all = list_one_file(path);
  }
  for (TensorInfo& t : all) t.name = normalize_tensor_name(t.name);
  std::sort(all.begin(), all.end(), [](const TensorInfo& a, const TensorInfo& b) { return a.name < b.name; });
  return all;
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

std::vector<std::string> check_shapes(const TensorMap& tensors, const TensorShapes& expected,
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

void require_replaceable_model_directory(const fs::path& dir, std::string_view role) {
  std::error_code ec;
  if (!fs::is_directory(fs::symlink_status(dir, ec)) || fs::is_empty(dir, ec)) return;
  bool config = false, weights = false;
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    config |= name == "config.json";
    weights |= (name.starts_with("model") && name.ends_with(".safetensors")) ||
               (name.starts_with("pytorch_model") && name.ends_with(".bin"));
    names.push_back(name);
  }
  if (config && weights) return;
  std::sort(names.begin(), names.end());
  std::string found;
  for (size_t i = 0; i < names.size() && i < 3; ++i) found += (i ? ", " : "") + names[i];
  if (names.size() > 3) found += ", ... (" + std::to_string(names.size()) + " entries)";
  throw Error((role.empty() ? "" : std::string(role) + " ") + dir.string() + " holds " + found +
              ", not a model (config.json and weights); refusing to replace it (name a new or empty directory)");
}

void write_model_directory(const fs::path& dir, const json& config, const std::vector<TensorRef>& tensors,
                           const std::vector<fs::path>& extra_files, DType dtype, const std::vector<Int64Ref>& buffers) {
  require_replaceable_model_directory(dir);
  for (const auto& f : extra_files) {
    if (!fs::is_regular_file(f)) throw Error("save_pretrained: " + f.string() + " is not a file");
    if (f.filename() == "config.json" || f.filename() == "model.safetensors")
      throw Error("save_pretrained: extra file " + f.string() + " would overwrite the model's own");
  }
  json j = config;
  j["torch_dtype"] = torch_dtype_name(dtype);  // what the weights file holds
  write_directory_atomic(dir, [&](const fs::path& staging) {
    write_file_atomic(staging / "config.json", j.dump(2) + "\n");
    write_safetensors(staging / "model.safetensors", tensors, {{"format", "pt"}}, dtype, buffers);
    for (const auto& f : extra_files) write_file_atomic(staging / f.filename(), read_file(f));
  });
}

}  // namespace bertune::io
