// `bertune run`: the main job on built-in defaults — README command 1. By default it
// fine-tunes bertune's own pretrained model (models/nsmc-bert-small, train preset
// "main-pretrained"); `--from-scratch` runs the previous main job:
// 1. A WordPiece vocabulary (32,000) trained on the unlabelled NSMC reviews
//    (shared/data/nsmc/unlabeled.txt.gz, which excludes the test split): a
//    from-scratch model gains more from a vocabulary of its own domain than
//    from klue's general one — on the validation split it is about a point
//    more accurate at equal steps, with 25% fewer tokens per review.
// 2. A small BERT (4 layers, hidden 256) from random initialisation on the
//    NSMC training reviews less a 5,000-review validation split, best
//    checkpoint by validation accuracy, then one evaluation on the 50,000 test
//    reviews (train preset "main"; any train flag overrides, and --tokenizer
//    or --model skip step 1).
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <thread>

#include "cli/commands.h"
#include "cli/train_flags.h"
#include "io/read_file.h"
#include "text/vocab_trainer.h"
#include "train/presets.h"
#include "train/trainer.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::cli {
namespace {

// Trains the main job's vocabulary once; later runs reuse it.
std::filesystem::path main_job_vocab(const std::filesystem::path& dir, int threads) {
  if (std::filesystem::exists(dir / "vocab.txt")) {
    std::fprintf(stderr, "bertune run: reusing the vocabulary in %s\n", dir.string().c_str());
    return dir;
  }
  text::VocabTrainerOptions options;
  options.vocab_size = 32000;
  options.min_frequency = 2;
  options.limit_alphabet = 3000;  // Korean needs thousands of syllables; 1,000 leaves 1.35% [UNK]
  std::filesystem::path corpus = shared_path("data/nsmc/unlabeled.txt.gz");
  std::fprintf(stderr, "bertune run: training a 32,000-token WordPiece vocabulary on %s\n",
               corpus.string().c_str());
  auto start = std::chrono::steady_clock::now();
  text::train_vocab_files({corpus}, options, /*lowercase=*/false, threads, dir);
  std::fprintf(stderr, "bertune run: vocabulary written to %s in %.1f s\n", dir.string().c_str(),
               std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count());
  return dir;
}

}  // namespace

void add_run_command(CLI::App& app) {
  auto* run = app.add_subcommand(
      "run", "Run the main job: fine-tune bertune's pretrained small Korean BERT on NSMC, report test accuracy");
  auto flags = std::make_shared<TrainFlags>();
  auto from_scratch = std::make_shared<bool>(false);
  run->add_flag("--from-scratch", *from_scratch,
                "the previous main job: an NSMC vocabulary and a random initialisation instead of models/" +
                    std::string(train::kShippedModel));
  add_train_flags(run, *flags, /*with_preset=*/false);
  run->callback([flags, from_scratch] {
    auto start = std::chrono::steady_clock::now();
    if (*from_scratch && flags->given("model"))
      throw Error("--from-scratch starts from a random initialisation: it cannot be combined with --model");
    const char* preset = *from_scratch ? "main" : "main-pretrained";
    train::TrainOptions options = resolve_train_flags(*flags, preset_base(preset, *flags, /*announce=*/false));
    if (*from_scratch && !flags->given("tokenizer")) {
      std::filesystem::path vocab_dir = options.output_dir + "-vocab";
      int threads = options.threads > 0 ? options.threads : static_cast<int>(std::thread::hardware_concurrency());
      options.tokenizer = main_job_vocab(vocab_dir, threads).string();
    }
    // --model-config: a random initialisation of that architecture, as `train --preset main-pretrained`
    // reads it; the shipped model is then not used, and a missing config is named as such.
    if (flags->given("model_config")) io::require_readable_file(options.model_config, "--model-config");
    else if (!*from_scratch && !flags->given("model") && !std::filesystem::is_directory(options.model))
      throw Error("the shipped model " + options.model + " is missing (BERTUNE_MODELS moves it); "
                  "`bertune run --from-scratch` runs without it");
    std::fprintf(stderr, "bertune run: %s\n", train::find_preset(preset).description.c_str());
    auto result = train::run_training(options, stdout);
    double minutes = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count() / 60;
    if (result.test)
      std::printf("\nMAIN JOB: test accuracy %.4f on %lld NSMC test reviews (macro-F1 %.4f), %.1f minutes in all\n",
                  result.test->metrics.accuracy, static_cast<long long>(result.test->metrics.count),
                  result.test->metrics.macro_f1, minutes);
  });
}

}  // namespace bertune::cli
