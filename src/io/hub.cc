#include "io/hub.h"

#include <cstdlib>
#include <regex>

#include "io/download.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::io {
namespace fs = std::filesystem;

namespace {

std::string hub_endpoint() {
  for (const char* var : {"BERTUNE_HF_ENDPOINT", "HF_ENDPOINT"})
    if (const char* v = std::getenv(var); v && *v) {
      std::string s = v;
      while (!s.empty() && s.back() == '/') s.pop_back();
      return s;
    }
  return "https://huggingface.co";
}

bool valid_hub_id(const std::string& id) {
  // Same characters the hub allows; ".." or a leading "." could escape the cache.
  static const std::regex pattern(R"(^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$)");
  return std::regex_match(id, pattern) && id.find("..") == std::string::npos;
}

}  // namespace

fs::path resolve_model(const std::string& name, const std::function<void(const std::string&)>& log) {
  if (fs::is_directory(name)) return fs::path(name);
  bool looks_like_path = name.empty() || name[0] == '/' || name[0] == '.' || name[0] == '~' ||
                         name.find('\\') != std::string::npos;
  if (looks_like_path || !valid_hub_id(name))
    throw Error("model '" + name + "': no such directory, and not a hub id like klue/bert-base");

  const fs::path dir = cache_dir() / "hub" / name;
  const std::string base = hub_endpoint() + "/" + name + "/resolve/main/";
  const std::string hint = "no network? download the model files into a directory and pass its path, "
                           "or copy them into " + dir.string();
  auto say = [&](const std::string& s) {
    if (log) log(s);
  };
  // Fetches one file unless present; false when the hub does not have it.
  auto fetch = [&](const std::string& file, bool required) {
    if (fs::is_regular_file(dir / file)) return true;
    say("fetching " + base + file);
    FetchOptions o;
    o.missing_ok = !required;
    bool got = fetch_to_file(base + file, dir / file, o, hint);
    if (!got) say(base + file + ": not on the hub, skipped");
    return got;
  };

  // Weights come last, so their presence means every earlier file was
  // fetched (or found absent): a cached model then needs no network at all.
  auto have = [&](const char* f) { return fs::is_regular_file(dir / f); };
  if (have("config.json") && have("vocab.txt") && (have("model.safetensors") || have("pytorch_model.bin")))
    return dir;
  fetch("config.json", true);
  fetch("vocab.txt", true);
  for (const char* f : {"tokenizer_config.json", "special_tokens_map.json", "tokenizer.json"}) fetch(f, false);
  if (!fetch("model.safetensors", false) && !fetch("pytorch_model.bin", false))
    throw Error("model '" + name + "': the hub has neither " + base + "model.safetensors nor " + base +
                "pytorch_model.bin");
  return dir;
}

}  // namespace bertune::io
