#pragma once
// The whole run's memory, estimated before the model is built and refused (exit 1) when it
// is more than the process can have (util/limits.h: MemAvailable, the cgroup's limit,
// BERTUNE_MAX_MEMORY): the parameters, their gradients and AdamW's two moments (16 bytes a
// parameter), the activation arena at the run's largest batch (model/footprint.h), and what
// evaluating adds. What the process holds already (the data, the tokenizer, a pretrained
// model being loaded) is measured, not estimated. CPU runs only: on a GPU the model lives in
// device memory.
#include <cstdint>
#include <string>
#include <vector>

#include "infer/batching.h"
#include "model/footprint.h"
#include "train/options.h"
#include "util/limits.h"

namespace bertune::train {

// The largest of `batches` (example indices into `lengths`) as the model computes them under
// `padding`: the most sequences, rows and attention probabilities any one of them has.
model::BatchShape largest_batch(const std::vector<std::vector<size_t>>& batches, const std::vector<int>& lengths,
                                infer::Padding padding, int max_length, const model::BertConfig& config,
                                model::Task task);
// Consecutive batches of `batch_size` (evaluation order).
std::vector<std::vector<size_t>> consecutive_batches(size_t n, int batch_size);

// One trained model: its parameters, gradients and AdamW moments, and the arena of its
// largest training or evaluation forward (one arena serves both). `who` names the model in
// the parts ("" or "generator ").
void add_trained_model(util::MemoryNeed& need, const model::BertConfig& config, model::Task task,
                       const model::BatchShape& train_batch, const model::BatchShape& eval_batch,
                       const std::string& who = "");

// The classification metrics of one evaluation: a labels x labels confusion matrix, and its
// copy in the evaluation's log record.
void add_evaluation_metrics(util::MemoryNeed& need, int num_labels);

// On the CPU: util::require_memory(need, command).
void require_training_memory(const util::MemoryNeed& need, const TrainOptions& o, const std::string& command);

// eval, predict, serve, before the classifier in model_dir is loaded: its weights (and the
// checkpoint read into them), the arena of a batch of `batch_size` texts of `max_length`
// tokens, and with `metrics` the evaluation's confusion matrix. A directory whose config.json
// cannot be read is left to the loader to name. `command` starts the message.
void require_inference_memory(const std::string& model_dir, int batch_size, int max_length, bool metrics,
                              const std::string& command);

}  // namespace bertune::train
