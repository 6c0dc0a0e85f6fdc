#pragma once
// Named option sets: the reference notebook's four training runs, and the main job.
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace bertune::train {

struct Preset {
  std::string name;
  std::string description;
  nlohmann::json options;  // config-file keys; flags given with the preset override them
};

const std::vector<Preset>& presets();
const Preset& find_preset(const std::string& name);  // Error listing the names

}  // namespace bertune::train
