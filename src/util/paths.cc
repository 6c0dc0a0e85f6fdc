#include "util/paths.h"

#include <cstdlib>
#include <vector>

#include "util/error.h"

namespace bertune {
namespace fs = std::filesystem;

namespace {

// The folder of the running executable (Linux: /proc/self/exe); empty when unknown.
fs::path executable_dir() {
  std::error_code ec;
  fs::path exe = fs::read_symlink("/proc/self/exe", ec);
  return ec ? fs::path() : exe.parent_path();
}

// True when the running executable is one the build tree made (build/bertune,
// build/bertune_tests, build-fuzz/fuzz/fuzz_*): only then do the source tree's
// models/ and ../shared stand in for an installation's share/. An installation
// anywhere else, even below the build tree, never sees the source tree.
bool running_from_build_tree() {
  const fs::path exe = executable_dir();
  if (exe.empty()) return false;
  std::error_code ec;
  const fs::path build = fs::weakly_canonical(BERTUNE_BUILD_DIR, ec);
  return !ec && !build.empty() && (exe == build || exe.parent_path() == build);
}

}  // namespace

fs::path shared_dir() {
  if (const char* env = std::getenv("BERTUNE_SHARED"); env && *env && fs::is_directory(env))
    return fs::path(env);
  std::vector<fs::path> candidates = {fs::current_path() / ".." / "shared", fs::current_path() / "shared"};
  if (running_from_build_tree()) candidates.push_back(fs::path(BERTUNE_SOURCE_DIR) / ".." / "shared");
  for (const fs::path& c : candidates) {
    std::error_code ec;
    if (fs::is_directory(c, ec)) return fs::weakly_canonical(c);
  }
  return {};
}

fs::path shared_path(const std::string& relative) {
  fs::path root = shared_dir();
  if (root.empty())
    throw Error("cannot find the shared/ folder for " + relative +
                ": set BERTUNE_SHARED to it, or run beside ../shared (the NSMC data alone can come from "
                "`bertune download nsmc`, into " + (cache_dir() / "nsmc").string() + ")");
  fs::path p = root / relative;
  if (!fs::exists(p)) throw Error("missing " + p.string());
  return p;
}

fs::path shipped_models_dir() {
  if (const char* env = std::getenv("BERTUNE_MODELS"); env && *env) return fs::path(env);
  const fs::path exe = executable_dir();
  const fs::path installed = exe.empty() ? fs::path() : (exe / ".." / "share" / "bertune" / "models").lexically_normal();
  std::error_code ec;
  if (!installed.empty() && fs::is_directory(installed, ec)) return installed;
  if (running_from_build_tree() || installed.empty()) return fs::path(BERTUNE_SOURCE_DIR) / "models";
  return installed;  // missing: the error that follows names where the model belongs
}

fs::path cache_dir() {
  if (const char* env = std::getenv("BERTUNE_CACHE"); env && *env) return fs::path(env);
  if (const char* xdg = std::getenv("XDG_CACHE_HOME"); xdg && *xdg) return fs::path(xdg) / "bertune";
  if (const char* home = std::getenv("HOME"); home && *home) return fs::path(home) / ".cache" / "bertune";
  return fs::current_path() / "cache";
}

}  // namespace bertune
