#pragma once
// `bertune pretrain`'s flags, shared by `bertune bench pretrain` (cmd_pretrain.cc).
#include <string>

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include "cli/train_flags.h"
#include "train/pretrainer.h"

namespace bertune::cli {

struct PretrainFlags {
  TrainFlags train;
  train::PretrainOptions options;
  std::string attention = "across";
  std::string objective = "mlm";
};

void add_pretrain_flags(CLI::App* cmd, PretrainFlags& flags);
// The options the flags give, over `base` (defaults under the flags). Throws Error naming the flag.
train::PretrainOptions resolve_pretrain_flags(const PretrainFlags& flags, const nlohmann::json& base = {});

}  // namespace bertune::cli
