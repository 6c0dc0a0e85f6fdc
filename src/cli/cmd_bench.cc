#include "cli/commands.h"

namespace bertune::cli {

void add_bench_engine_commands(CLI::App& bench);  // bench train | pretrain | gemm (bench_engine.cc)

void add_bench_commands(CLI::App& app) {
  auto* bench = app.add_subcommand("bench", "Speed benchmarks");
  bench->require_subcommand(1);
  add_bench_engine_commands(*bench);
}

}  // namespace bertune::cli
