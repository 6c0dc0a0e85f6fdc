// `bertune run`: the main job on built-in defaults — README command 1. A small BERT
// (4 layers, hidden 256, klue vocab) trained from random initialisation on the NSMC training
// reviews less a 5,000-review validation split, best checkpoint by validation accuracy, then
// one evaluation on the 50,000 test reviews (train preset "main"; any train flag overrides).
#include <cstdio>
#include <memory>

#include "cli/commands.h"
#include "train/presets.h"
#include "train/trainer.h"

namespace bertune::cli {

void add_run_command(CLI::App& app) {
  auto* run = app.add_subcommand("run", "Run the main job: train a small BERT on NSMC, report test accuracy");
  auto raw = std::make_shared<train::RawOptions>();
  train::add_train_option_flags(run, *raw);
  run->callback([raw] {
    const auto& preset = train::find_preset("main");
    nlohmann::json base = preset.options;
    base["preset"] = preset.name;
    if (raw->cli.at("model")->count() > 0) base.erase("model_config");
    std::fprintf(stderr, "bertune run: %s\n", preset.description.c_str());
    auto result = train::run_training(train::resolve_train_options(*raw, base), stdout);
    if (result.test)
      std::printf("\nMAIN JOB: test accuracy %.4f on %lld NSMC test reviews (macro-F1 %.4f)\n",
                  result.test->metrics.accuracy, static_cast<long long>(result.test->metrics.count),
                  result.test->metrics.macro_f1);
  });
}

}  // namespace bertune::cli
