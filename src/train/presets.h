#pragma once
// Named option sets: the reference notebook's four training runs, and the main job (from
// bertune's pretrained model, and from scratch).
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bertune::train {

struct Preset {
  std::string name;
  std::string description;
  nlohmann::json options;  // config-file keys; flags given with the preset override them
};

// The pretrained model `bertune run` fine-tunes by default (models/<this>/), and
// the fine-tuning learning rate chosen for it on the validation split (docs/pretraining.md).
inline constexpr const char* kShippedModel = "nsmc-bert-small";
inline constexpr double kShippedModelLearningRate = 1e-4;  // best of 1e-4 / 2e-4 / 3e-4 on validation (docs/pretraining.md)

const std::vector<Preset>& presets();
const Preset& find_preset(const std::string& name);  // Error listing the names

}  // namespace bertune::train
