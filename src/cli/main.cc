// Entry point: registers the subcommands, runs the chosen one, and turns every
// failure into a message and an exit code (the contract in util/error.h).
#include <cctype>
#include <cstdio>
#include <exception>
#include <algorithm>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/errors.h"
#include "io/atomic_file.h"
#include "kernels/cpu_runtime.h"
#include "train/distributed.h"
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

// The name nearest to `word`, or "" when none is a near miss (edit distance under 3).
std::string nearest_name(const std::string& word, const std::vector<std::string>& names) {
  std::string nearest;
  size_t best = 3;
  for (const auto& n : names)
    if (size_t d = edit_distance(word, n); d < best) best = d, nearest = n;
  return nearest;
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
    const std::string nearest = nearest_name(word, names);
    std::string list;
    for (const auto& n : names) list += (list.empty() ? "" : ", ") + n;
    throw bertune::Error("unknown command '" + word + "' for '" + path + "'" +
                         (nearest.empty() ? "" : "; did you mean '" + nearest + "'?") + " (commands: " + list +
                         "; see " + path + " --help)");
  }
}

// CLI11 reports a flag given twice as "--lr: At Most 1 required but received 2". An option
// takes one value (a typo'd script, a pasted command line: which was meant is a guess), so a
// repeated one is refused by name, with the values: "--learning-rate given twice (3e-5,
// then 5e-5); give it once". Empty when no option of the parsed commands is repeated.
std::string repeated_option(const CLI::App& app) {
  for (const CLI::Option* opt : app.get_options()) {
    if (opt->get_positional() || opt->count() < 2 || opt->get_items_expected_max() != 1 ||
        opt->get_multi_option_policy() != CLI::MultiOptionPolicy::Throw)
      continue;
    std::string values;
    for (const std::string& v : opt->results()) values += (values.empty() ? "" : ", then ") + v;
    const std::string times = opt->count() == 2 ? "twice" : std::to_string(opt->count()) + " times";
    return opt->get_name() + " given " + times + " (" + values + "); give it once";
  }
  for (const CLI::App* sub : app.get_subcommands()) {
    std::string found = repeated_option(*sub);
    if (!found.empty()) return found;
  }
  return {};
}

// CLI11 checks required options and subcommands before unknown ones: `predict --modle D x`
// said "--model is required", `bertune --versoin` "A subcommand is required". After a failed
// parse the first option that no parsed command knows is named, with the nearest option of
// that command: "unknown option --modle for 'bertune predict' (did you mean --model?)".
// Empty when every option was known.
std::string unknown_option(const CLI::App& app, const std::string& path) {
  for (const std::string& word : app.remaining()) {
    if (word.size() < 2 || word[0] != '-' || std::isdigit(static_cast<unsigned char>(word[1])) || word[1] == '.')
      continue;  // a positional value, or a negative number
    const std::string name = word.substr(0, word.find('='));
    std::vector<std::string> names;
    for (const CLI::Option* opt : app.get_options()) {
      for (const std::string& l : opt->get_lnames()) names.push_back("--" + l);
      for (const std::string& s : opt->get_snames()) names.push_back("-" + s);
    }
    const std::string nearest = nearest_name(name, names);
    return "unknown option " + name + " for '" + path + "'" +
           (nearest.empty() ? "" : " (did you mean " + nearest + "?)");
  }
  for (const CLI::App* sub : app.get_subcommands()) {
    std::string found = unknown_option(*sub, path + " " + sub->get_name());
    if (!found.empty()) return found;
  }
  return {};
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
  } catch (const CLI::ArgumentMismatch& e) {
    const std::string repeated = repeated_option(app);
    app.exit(repeated.empty() ? e : CLI::ArgumentMismatch(repeated));
    return bertune::kExitUserError;
  } catch (const CLI::ParseError& e) {
    // --help and --version exit 0; every usage mistake is a user error (1),
    // not CLI11's own codes (105-115).
    if (e.get_exit_code() == 0) return app.exit(e) == 0 ? bertune::kExitOk : bertune::kExitUserError;
    const std::string unknown = unknown_option(app, "bertune");
    app.exit(unknown.empty() ? e : CLI::ExtrasError(unknown, CLI::ExitCodes::ExtrasError));
    return bertune::kExitUserError;
  } catch (...) {
    const bertune::cli::Failure f = bertune::cli::describe_failure(std::current_exception());
    std::fprintf(stderr, "%s\n", f.message.c_str());
    bertune::train::abort_world(f.exit_code);  // under mpirun: the other ranks end too
    return f.exit_code;
  }
  return bertune::kExitOk;
}
