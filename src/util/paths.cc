#include "util/paths.h"

#include <cstdlib>

#include "util/error.h"

namespace bertune {
namespace fs = std::filesystem;

fs::path shared_dir() {
  if (const char* env = std::getenv("BERTUNE_SHARED"); env && *env && fs::is_directory(env))
    return fs::path(env);
  for (const fs::path& c : {fs::current_path() / ".." / "shared", fs::current_path() / "shared",
                            fs::path(BERTUNE_SOURCE_DIR) / ".." / "shared"}) {
    std::error_code ec;
    if (fs::is_directory(c, ec)) return fs::weakly_canonical(c);
  }
  return {};
}

fs::path shared_path(const std::string& relative) {
  fs::path root = shared_dir();
  if (root.empty())
    throw Error("cannot find the shared/ folder (set BERTUNE_SHARED, or run beside ../shared) for " +
                relative);
  fs::path p = root / relative;
  if (!fs::exists(p)) throw Error("missing " + p.string());
  return p;
}

fs::path shipped_models_dir() {
  if (const char* env = std::getenv("BERTUNE_MODELS"); env && *env) return fs::path(env);
  return fs::path(BERTUNE_SOURCE_DIR) / "models";
}

fs::path cache_dir() {
  if (const char* env = std::getenv("BERTUNE_CACHE"); env && *env) return fs::path(env);
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "bertune";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "bertune";
  return fs::current_path() / "cache";
}

}  // namespace bertune
