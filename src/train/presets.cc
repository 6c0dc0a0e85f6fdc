#include "train/presets.h"

#include "data/dataset.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::train {
namespace {

// NSMC's test split: from shared/, else where `bertune download nsmc` puts it (the
// run's error then says how to get it).
std::string nsmc_test_file() {
  try {
    return data::nsmc_path("test").string();
  } catch (const Error&) {
    return (cache_dir() / "nsmc" / "ratings_test.txt").string();
  }
}

}  // namespace

const std::vector<Preset>& presets() {
  using Json = nlohmann::json;
  // The notebook tokenized with padding='max_length', max_length=128, evaluated and saved
  // every epoch and logged every 10 steps; runs 1-2 kept TrainingArguments' other defaults.
  static const std::vector<Preset> all = [] {
    const std::string klue = "models/klue-bert-base";
    Json common = {{"model_config", (shared_dir() / klue / "config.json").string()},
                   {"tokenizer", (shared_dir() / klue).string()},
                   {"max_length", 128},
                   {"padding", "max_length"},
                   {"data_seed", 42},
                   {"seed", 42},
                   {"eval_strategy", "epoch"},
                   {"save_strategy", "epoch"},
                   {"logging_steps", 10}};
    auto with = [&](Json extra) {
      Json j = common;
      j.update(extra);
      return j;
    };
    std::vector<Preset> p;
    p.push_back({"notebook-1", "notebook run 1: klue/bert-base, 1,000 train / 200 eval, 3 epochs, defaults",
                 with({{"train_samples", 1000}, {"eval_samples", 200}, {"num_train_epochs", 3},
                       {"output_dir", "runs/notebook-1"}})});
    p.push_back({"notebook-2", "notebook run 2: 1,000 / 200, 5 epochs, batch 16, lr 3e-5",
                 with({{"train_samples", 1000}, {"eval_samples", 200}, {"num_train_epochs", 5},
                       {"per_device_train_batch_size", 16}, {"per_device_eval_batch_size", 16},
                       {"learning_rate", 3e-5}, {"output_dir", "runs/notebook-2"}})});
    Json run3 = {{"train_samples", 10000}, {"eval_samples", 2000}, {"num_train_epochs", 10},
                 {"per_device_train_batch_size", 32}, {"per_device_eval_batch_size", 32},
                 {"learning_rate", 1e-5}, {"load_best_model_at_end", true},
                 {"metric_for_best_model", "accuracy"}, {"early_stopping_patience", 3},
                 {"early_stopping_threshold", 0.01}, {"output_dir", "runs/notebook-3"}};
    p.push_back({"notebook-3",
                 "notebook run 3: 10,000 / 2,000, 10 epochs, batch 32, lr 1e-5, best by accuracy, "
                 "early stopping 3 / 0.01",
                 with(run3)});
    Json run4 = run3;
    run4["padding"] = "longest";
    run4["group_by_length"] = true;
    run4["output_dir"] = "runs/notebook-4";
    p.push_back({"notebook-4", "notebook run 4: run 3 with dynamic padding (DataCollatorWithPadding) + group_by_length",
                 with(run4)});
    // The main job: a small BERT from scratch on all NSMC training reviews but a 5,000-review
    // validation split, best checkpoint by accuracy, then the 50,000 test reviews once.
    p.push_back({"main",  // `bertune run --from-scratch`
                 "main job: 4-layer BERT (hidden 256) from random initialisation on NSMC (`bertune run --from-scratch` gives it an NSMC vocabulary), "
                 "validation split 5,000, best by accuracy, then the 50,000 test reviews",
                 Json{{"model_config", (shared_dir() / "models/bert-small-klue/config.json").string()},
                      {"tokenizer", (shared_dir() / klue).string()},
                      {"max_length", 64},
                      {"padding", "packed"},
                      {"validation_split", 5000},
                      {"data_seed", 42},
                      {"seed", 42},
                      {"num_train_epochs", 2},
                      {"per_device_train_batch_size", 32},
                      {"per_device_eval_batch_size", 128},
                      {"learning_rate", 3e-4},
                      {"weight_decay", 0.01},
                      {"warmup_ratio", 0.06},
                      {"eval_strategy", "steps"},
                      {"save_strategy", "steps"},
                      {"eval_steps", 1000},
                      {"save_steps", 1000},
                      {"save_total_limit", 2},
                      {"load_best_model_at_end", true},
                      {"metric_for_best_model", "accuracy"},
                      {"logging_steps", 200},
                      {"test_file", nsmc_test_file()},
                      {"output_dir", "runs/main-scratch"}}});
    // The default main job: the same run, starting from bertune's own pretrained model
    // (models/nsmc-bert-small: MLM on the unlabeled NSMC reviews, docs/pretraining.md) at the
    // fine-tuning learning rate chosen on the validation split.
    Json pretrained = p.back().options;
    pretrained.erase("model_config");
    pretrained.erase("tokenizer");  // the model directory carries its own
    pretrained["model"] = (shipped_models_dir() / kShippedModel).string();
    pretrained["learning_rate"] = kShippedModelLearningRate;
    pretrained["output_dir"] = "runs/main";
    p.push_back({"main-pretrained",
                 std::string("main job: fine-tune bertune's own pretrained 4-layer BERT (models/") + kShippedModel +
                     ", masked-LM pretraining on the unlabeled NSMC reviews) on NSMC, validation split 5,000, "
                     "best by accuracy, then the 50,000 test reviews",
                 pretrained});
    return p;
  }();
  return all;
}

const Preset& find_preset(const std::string& name) {
  std::string names;
  for (const auto& p : presets()) {
    if (p.name == name) return p;
    names += (names.empty() ? "" : "|") + p.name;
  }
  throw Error("--preset: '" + name + "' is not one of " + names);
}

}  // namespace bertune::train
