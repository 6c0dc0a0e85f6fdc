#include "cli/commands.h"

namespace bertune::cli {

void add_run_command(CLI::App& app) {
  auto* run = app.add_subcommand("run", "Run the main job on the built-in defaults");
  run->callback([] {});
}

}  // namespace bertune::cli
