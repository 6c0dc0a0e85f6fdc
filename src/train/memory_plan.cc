#include "train/memory_plan.h"

#include <algorithm>
#include <filesystem>

#include "util/error.h"

namespace bertune::train {

model::BatchShape largest_batch(const std::vector<std::vector<size_t>>& batches, const std::vector<int>& lengths,
                                infer::Padding padding, int max_length, const model::BertConfig& config,
                                model::Task task) {
  model::BatchShape s;
  const int64_t heads = config.num_attention_heads;
  for (const std::vector<size_t>& batch : batches) {
    int64_t longest = 0, rows = 0, probs = 0;
    for (size_t i : batch) longest = std::max<int64_t>(longest, lengths[i]);
    for (size_t i : batch) {
      const int64_t span = padding == infer::Padding::Packed    ? lengths[i]
                           : padding == infer::Padding::Longest ? longest
                                                                : max_length;
      rows += span;
      probs += heads * span * span;
    }
    s.sequences = std::max<int64_t>(s.sequences, static_cast<int64_t>(batch.size()));
    s.rows = std::max(s.rows, rows);
    s.prob_entries = std::max(s.prob_entries, probs);
  }
  s.logit_rows = task == model::Task::SequenceClassification ? s.sequences : s.rows;
  return s;
}

std::vector<std::vector<size_t>> consecutive_batches(size_t n, int batch_size) {
  std::vector<std::vector<size_t>> batches;
  for (size_t first = 0; first < n; first += static_cast<size_t>(batch_size)) {
    batches.emplace_back();
    for (size_t i = first; i < std::min(n, first + static_cast<size_t>(batch_size)); ++i) batches.back().push_back(i);
  }
  return batches;
}

void add_trained_model(util::MemoryNeed& need, const model::BertConfig& config, model::Task task,
                       const model::BatchShape& train_batch, const model::BatchShape& eval_batch,
                       const std::string& who) {
  const uint64_t params = model::parameter_bytes(config, task);
  const std::string smaller = "a smaller model (num_hidden_layers " + std::to_string(config.num_hidden_layers) +
                              ", hidden_size " + std::to_string(config.hidden_size) + ", intermediate_size " +
                              std::to_string(config.intermediate_size) + ", vocab_size " +
                              std::to_string(config.vocab_size) +
                              (task == model::Task::SequenceClassification
                                   ? ", " + std::to_string(config.num_labels()) + " labels)"
                                   : std::string(")"));
  need.add(who + "parameters", params, smaller);
  need.add(who + "gradients", params, smaller);
  need.add(who + "AdamW moments", 2 * params, smaller);
  const uint64_t train_arena = model::activation_bytes(config, task, train_batch, /*train=*/true, false);
  const uint64_t eval_arena =
      eval_batch.sequences > 0 ? model::activation_bytes(config, task, eval_batch, /*train=*/false, false) : 0;
  if (train_arena >= eval_arena)
    need.add(who + "activations (" + std::to_string(train_batch.sequences) + " sequences, " +
                 std::to_string(train_batch.rows) + " tokens)",
             train_arena,
             "lower --per-device-train-batch-size or --max-length (each of the " +
                 std::to_string(config.num_hidden_layers) + " layers keeps its activations for the backward pass)");
  else
    need.add(who + "evaluation activations (" + std::to_string(eval_batch.sequences) + " sequences, " +
                 std::to_string(eval_batch.rows) + " tokens)",
             eval_arena, "lower --per-device-eval-batch-size or --max-length");
}

void add_evaluation_metrics(util::MemoryNeed& need, int num_labels) {
  const auto n = static_cast<uint64_t>(num_labels);
  need.add("a " + std::to_string(n) + " x " + std::to_string(n) + " confusion matrix", n * n * (8 + 16),
           "a model with fewer labels (every evaluation counts a labels x labels confusion matrix)");
}

void require_training_memory(const util::MemoryNeed& need, const TrainOptions& o, const std::string& command) {
  if (o.device == kernels::Device::CPU) util::require_memory(need, command);
}

void require_inference_memory(const std::string& model_dir, int batch_size, int max_length, bool metrics,
                              const std::string& command) {
  if (batch_size < 1 || max_length < 1) return;  // the command names those
  model::BertConfig config;
  try {
    config = model::BertConfig::load(std::filesystem::path(model_dir) / "config.json");
  } catch (const Error&) {
    return;  // the loader says what is wrong with the directory
  }
  if (config.id2label.empty()) config.set_num_labels(2);  // as the loader makes it
  const model::Task task = model::Task::SequenceClassification;
  const int length = std::min(max_length, config.max_sequence_length());
  const uint64_t weights = model::parameter_bytes(config, task);
  util::MemoryNeed need;
  need.add("weights", weights, "a smaller model");
  need.add("the checkpoint read into them", weights, "a smaller model");
  need.add("activations (" + std::to_string(batch_size) + " texts of " + std::to_string(length) + " tokens)",
           model::activation_bytes(config, task, model::uniform_batch(config, task, batch_size, length), false, false),
           "lower --batch-size or --max-length");
  if (metrics) add_evaluation_metrics(need, config.num_labels());
  util::require_memory(need, command);
}

}  // namespace bertune::train
