#pragma once
// A training run, prepared: every input read and checked, the model built and (on resume)
// restored — and nothing written yet. `bertune train` and `bertune bench train` hand it to the
// classification objective (train/trainer.h), to train or time its step: the same thing.
#include <chrono>
#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "data/dataset.h"
#include "data/tagged.h"
#include "model/bert.h"
#include "text/tokenizer.h"
#include "infer/batching.h"
#include "train/checkpoint.h"
#include "train/optimizer.h"
#include "train/options.h"
#include "train/run_dir.h"
#include "train/state.h"
#include "train/step.h"

namespace bertune::train {

struct PreparedRun {
  TrainOptions options;
  std::chrono::steady_clock::time_point started;
  RunDirPlan run_dir;  // the output directory's plan; run_dir.resume_dir empty: a fresh run

  model::BertConfig config;
  std::filesystem::path tokenizer_dir;
  text::Tokenizer tokenizer;
  std::string model_description;  // for the banner: --model, or the config and "random initialisation"
  std::vector<std::string> initialised;  // head tensors --model lacked, freshly initialised
  std::vector<std::string> unused;       // tensors of --model this model has no use for (an MLM head: cls.*)
  // --ignore-mismatched-sizes: head tensors of --model with another shape, initialised afresh, as
  // HF lists them ("- classifier.weight: found shape torch.Size([2, 64]) in the checkpoint and ...").
  std::vector<std::string> mismatched;

  std::filesystem::path train_path;
  infer::TokenizedData train, eval;
  bool have_eval = false;
  data::Dataset test_set;             // tokenized at the end, when the model is final
  data::TaggedDataset tagged_test;    // the same for --task token-classification
  std::vector<int> sampling_lengths;  // what LengthGroupedSampler reads: len(input_ids)
  nlohmann::json fingerprint;

  // Steps as Trainer computes them (drop_last=False, no gradient accumulation); with
  // --max-tokens-per-batch epoch 0's, each epoch then having its own count (epochs).
  int64_t steps_per_epoch = 0;
  EpochSizes epochs;
  LrSchedule schedule;  // total_steps = max_steps
  TrainerState state;   // fresh, or as the checkpoint left it
  RunState run;

  std::unique_ptr<model::BertModel> model;
  std::unique_ptr<AdamW> optimizer;

  infer::BatchLayout layout() const { return {options.padding, options.max_length, tokenizer.pad_id()}; }
  // The batches of epoch `epoch` (0-based), in training order.
  std::vector<std::vector<size_t>> epoch_batches(int64_t epoch) const;
};

// Throws Error for bad input; writes nothing.
PreparedRun prepare_run(const TrainOptions& options);

// A split's examples (or tagged sentences): the rows handed over in memory (JSONL, the Python
// Trainer's; `file` then only names them in messages), else the file.
data::Dataset read_split(const std::filesystem::path& file, const std::optional<std::string>& rows,
                         const data::ReadOptions& ro);
data::TaggedDataset read_tagged_split(const std::filesystem::path& file, const std::optional<std::string>& rows);

}  // namespace bertune::train
