#pragma once
#include <filesystem>
#include <string>

namespace bertune {

// The project's shared/ folder (NSMC data, model configs, golden files):
// $BERTUNE_SHARED, else ../shared or shared/ in the working directory, else (for
// a binary that runs from its build tree) ../shared beside the source tree.
// Empty path when none exists.
std::filesystem::path shared_dir();

// shared_dir()/relative, or throws Error saying where it looked.
std::filesystem::path shared_path(const std::string& relative);

// The models shipped with bertune (models/<name>/): $BERTUNE_MODELS, else
// ../share/bertune/models beside the executable (an installation: bin/bertune),
// else, for a binary that runs from its build tree, models/ in its source tree.
std::filesystem::path shipped_models_dir();

// Where downloads are cached: $BERTUNE_CACHE, else $XDG_CACHE_HOME/bertune,
// else ~/.cache/bertune.
std::filesystem::path cache_dir();

}  // namespace bertune
