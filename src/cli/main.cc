// Entry point: registers the subcommands, runs the chosen one, and turns every
// failure into a message and an exit code (the contract in util/error.h).
#include <cstdio>
#include <exception>
#include <algorithm>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/errors.h"
#include "io/atomic_file.h"
#include "kernels/cpu_runtime.h"
#include "util/error.h"
#include "util/signals.h"

namespace {

size_t edit_distance(const std::string& a, const std::string& b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t up = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] != b[j - 1])});
      diagonal = up;
    }
  }
  return row[b.size()];
}

// CLI11 reports `bertune trian` as "A subcommand is required"; walk the
// command words ourselves and name the unknown one with the nearest match.
void check_command_words(CLI::App& app, int argc, char** argv) {
  CLI::App* level = &app;
  std::string path = "bertune";
  for (int i = 1; i < argc; ++i) {
    const std::string word = argv[i];
    if (word.empty() || word[0] == '-') return;  // options: CLI11 checks them
    std::vector<std::string> names;
    CLI::App* next = nullptr;
    for (CLI::App* sub : level->get_subcommands([](CLI::App*) { return true; })) {
      names.push_back(sub->get_name());
      if (sub->get_name() == word) next = sub;
    }
    if (next) {
      level = next;
      path += " " + word;
      continue;
    }
    if (names.empty() || level->get_require_subcommand_min() == 0) return;  // a positional argument
    std::string nearest;
    size_t best = 3;  // suggest only near misses
    for (const auto& n : names)
      if (size_t d = edit_distance(word, n); d < best) best = d, nearest = n;
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw bertune::Error("unknown command '" + word + "' for '" + path + "'" +
                         (nearest.empty() ? "" : "; did you mean '" + nearest + "'?") + " (commands: " + list +
                         "; see " + path + " --help)");
  }
}

}  // namespace

int main(int argc, char** argv) {
  bertune::util::block_stop_signals();  // kept blocked across the re-exec below: none is lost meanwhile
  bertune::kernels::configure_thread_policy(argv);
  bertune::util::install_signal_handlers();
  CLI::App app{"bertune — fine-tune, evaluate and serve BERT text classifiers natively"};
  app.set_version_flag("--version", std::string("bertune ") + BERTUNE_VERSION);
  app.require_subcommand(1);
  app.footer(
      "Exit codes: 0 ok, 1 user/data error, 2 internal bug, 3 stopped by the non-finite guard, "
      "130 SIGINT, 143 SIGTERM.");
  bertune::cli::add_run_command(app);
  bertune::cli::add_train_commands(app);
  bertune::cli::add_pretrain_command(app);
  bertune::cli::add_data_commands(app);
  bertune::cli::add_tokenize_commands(app);
  bertune::cli::add_vocab_commands(app);
  bertune::cli::add_bench_commands(app);
  bertune::cli::add_checkpoint_commands(app);
  bertune::cli::add_serve_command(app);
  bertune::cli::add_plot_command(app);
  bertune::cli::add_quantize_command(app);
  try {
    check_command_words(app, argc, argv);
    app.parse(argc, argv);
    bertune::io::flush_standard_output();  // results lost to a full disk or closed pipe are no success
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage mistake is a user error (1),
    // not CLI11's own codes (105-115).
    int code = app.exit(e);
    return code == 0 ? bertune::kExitOk : bertune::kExitUserError;
  } catch (...) {
    const bertune::cli::Failure f = bertune::cli::describe_failure(std::current_exception());
    std::fprintf(stderr, "%s\n", f.message.c_str());
    return f.exit_code;
  }
  return bertune::kExitOk;
}
