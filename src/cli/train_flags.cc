#include "cli/train_flags.h"

#include <algorithm>
#include <cstdio>

#include "io/json_error.h"
#include "train/presets.h"
#include "util/error.h"

namespace bertune::cli {
using Json = nlohmann::json;

bool TrainFlags::given(const std::string& key) const {
  auto it = cli.find(key);
  return it != cli.end() && it->second && it->second->count() > 0;
}

void add_train_flags(CLI::App* cmd, TrainFlags& flags, bool with_preset, const std::vector<std::string>& only) {
  auto wanted = [&](const std::string& key) { return only.empty() || std::find(only.begin(), only.end(), key) != only.end(); };
  if (with_preset) cmd->add_option("--preset", flags.preset, "start from a preset's options (main-pretrained, main, notebook-1..4)");
  cmd->add_option("--config", flags.config_file, "JSON file of options (keys as TrainingArguments); flags override");
  static const train::TrainOptions defaults;
  for (const auto& f : train::train_option_fields()) {
    if (f.key == "preset" || !wanted(f.key)) continue;  // --preset picks the preset
    std::string& slot = flags.values[f.key];
    const std::string flag = train::option_flag(f.key);
    CLI::Option* opt = f.is_flag ? cmd->add_flag(flag + "{true}", slot, f.help) : cmd->add_option(flag, slot, f.help);
    if (!f.is_flag) {
      // Help shows HF's default; the value itself is only read when the flag is given.
      const Json d = f.get(defaults);
      opt->type_name(f.type_name);
      if (!d.is_null() && !(d.is_string() && d.get<std::string>().empty()))
        opt->default_str(d.is_string() ? d.get<std::string>() : d.dump());
    }
    flags.cli[f.key] = opt;
  }
  // HF's older spelling.
  if (wanted("eval_strategy"))
    flags.cli["evaluation_strategy"] =
      cmd->add_option("--evaluation-strategy", flags.values["evaluation_strategy"], "alias of --eval-strategy");
}

Json preset_base(const std::string& preset_name, const TrainFlags& flags, bool announce) {
  if (preset_name.empty()) return Json::object();
  const auto& p = train::find_preset(preset_name);
  Json base = p.options;
  base["preset"] = p.name;
  const bool own_model = flags.given("model");
  if (own_model) base.erase("model_config");
  if (flags.given("model_config")) base.erase("model");  // a random initialisation was asked for
  if (announce) {
    std::fprintf(stderr, "preset %s: %s\n", p.name.c_str(), p.description.c_str());
    if (!own_model && base.contains("model_config") && p.name != "main")
      std::fprintf(stderr,
                   "note: starting from RANDOM INITIALISATION of the architecture (pretrained klue/bert-base weights "
                   "are not available here); pass --model DIR with downloaded weights to run the notebook's "
                   "fine-tuning itself\n");
  }
  return base;
}

train::TrainOptions resolve_train_flags(const TrainFlags& flags, const Json& base) {
  // The alias is the same option: both given is an option given twice.
  if (flags.given("eval_strategy") && flags.given("evaluation_strategy"))
    throw Error("--eval-strategy given twice (" + flags.values.at("eval_strategy") + ", then --evaluation-strategy " +
                flags.values.at("evaluation_strategy") + "); give it once");
  train::TrainOptions o;
  train::apply_options_json(o, base, "preset");
  if (!flags.config_file.empty()) train::apply_options_json(o, io::read_json_file(flags.config_file), flags.config_file);
  for (const auto& [key, opt] : flags.cli) {
    if (!opt || opt->count() == 0) continue;
    train::find_train_option(key)->set(o, Json(flags.values.at(key)), train::option_flag(key));
  }
  train::validate(o);
  return o;
}

}  // namespace bertune::cli
