#pragma once
// The training options as command-line flags: every TrainOptions field from the options
// table (train/options.h) as --flag-name, plus --config FILE and --preset NAME. Shared by
// train, run, compare and bench train, so each binds the same flags the same way.
#include <map>
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "train/options.h"

namespace bertune::cli {

struct TrainFlags {
  std::map<std::string, std::string> values;  // config key -> string as typed
  std::map<std::string, CLI::Option*> cli;    // config key -> its flag, to ask whether it was given
  std::string config_file;
  std::string preset;
  bool given(const std::string& key) const;
};

// Registers the flags on `cmd`; with_preset: also --preset NAME.
void add_train_flags(CLI::App* cmd, TrainFlags& flags, bool with_preset = true);

// The options of `preset_name` as a JSON base (empty name: none), the way every command
// starts from a preset: its own --model replaces the preset's model_config. announce: print
// the preset's description (and a note when it starts from random initialisation).
nlohmann::json preset_base(const std::string& preset_name, const TrainFlags& flags, bool announce);

// base (a preset's options, command defaults), then the config file, then the flags given;
// validated. Throws Error naming the flag or key.
train::TrainOptions resolve_train_flags(const TrainFlags& flags, const nlohmann::json& base = {});

}  // namespace bertune::cli
