#include "cli/commands.h"

namespace bertune::cli {

void add_data_commands(CLI::App& app) {
  // Filled in by the data work.
  (void)app;
}

}  // namespace bertune::cli
