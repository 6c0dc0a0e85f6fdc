#include "cli/commands.h"

namespace bertune::cli {

void add_bench_commands(CLI::App& app) {
  // Filled in by the bench work.
  (void)app;
}

}  // namespace bertune::cli
