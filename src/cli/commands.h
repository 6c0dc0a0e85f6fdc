#pragma once
// Each area of the tool registers its own subcommands on the root app, so the
// CLI stays a thin layer over the library and areas do not edit each other.
#include <CLI/CLI.hpp>

namespace bertune::cli {

void add_data_commands(CLI::App& app);      // data stats|head, download
void add_tokenize_commands(CLI::App& app);  // tokenize
void add_vocab_commands(CLI::App& app);     // vocab train
void add_bench_commands(CLI::App& app);     // bench tokenize|train|pretrain|gemm
void add_run_command(CLI::App& app);        // run: the main job on built-in defaults
void add_checkpoint_commands(CLI::App& app);  // checkpoint inspect|convert
void add_train_commands(CLI::App& app);     // train, eval, predict, compare
void add_pretrain_command(CLI::App& app);   // pretrain: masked-LM pretraining on plain text
void add_serve_command(CLI::App& app);      // serve
void add_quantize_command(CLI::App& app);   // quantize
void add_plot_command(CLI::App& app);       // plot: a line chart of a TSV table

}  // namespace bertune::cli
