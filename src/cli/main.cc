#include <cstdio>
#include <exception>

#include "cli/commands.h"
#include "kernels/ops.h"
#include "util/error.h"

int main(int argc, char** argv) {
  bertune::kernels::configure_thread_policy(argv);
  CLI::App app{"bertune — fine-tune, evaluate and serve BERT text classifiers natively"};
  app.set_version_flag("--version", std::string("bertune ") + BERTUNE_VERSION);
  app.require_subcommand(1);
  bertune::cli::add_run_command(app);
  bertune::cli::add_train_commands(app);
  bertune::cli::add_data_commands(app);
  bertune::cli::add_tokenize_commands(app);
  bertune::cli::add_vocab_commands(app);
  bertune::cli::add_bench_commands(app);
  bertune::cli::add_checkpoint_commands(app);
  bertune::cli::add_serve_command(app);
  bertune::cli::add_quantize_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  } catch (const bertune::Error& e) {
    std::fprintf(stderr, "bertune: error: %s\n", e.what());
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bertune: internal error: %s\n", e.what());
    return 2;
  }
  return 0;
}
