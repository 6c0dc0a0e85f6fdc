#include "cli/commands.h"

namespace bertune::cli {

void add_vocab_commands(CLI::App& app) {
  // Filled in by the vocab work.
  (void)app;
}

}  // namespace bertune::cli
