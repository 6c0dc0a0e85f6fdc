#include "cli/commands.h"

namespace bertune::cli {

void add_tokenize_commands(CLI::App& app) {
  // Filled in by the tokenize work.
  (void)app;
}

}  // namespace bertune::cli
