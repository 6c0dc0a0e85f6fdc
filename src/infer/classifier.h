#pragma once
// A classifier directory loaded and ready to classify texts: the model (fp32, int8
// directory, or quantized while loading: load_inference_model), its tokenizer, the
// longest sequence both take, and its label names. What eval, predict and serve run;
// texts are tokenized, truncated and batched exactly as `predict` does.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "infer/model_dir.h"
#include "kernels/ops.h"
#include "model/bert.h"
#include "text/tokenizer.h"

namespace bertune::infer {

// One text's (or sentence pair's) tokens, as `predict` encodes them.
struct TokenIds {
  std::vector<int32_t> ids;             // [CLS] ... [SEP]; a pair [CLS] a [SEP] b [SEP]
  std::vector<int32_t> token_type_ids;  // a pair's segments (0, then 1); empty: all 0
  size_t size() const { return ids.size(); }
};

// A model directory without a classification head gets a random one (seed 42), which
// makes every answer meaningless.
enum class UntrainedHead {
  Refuse,  // Error naming the missing tensors
  Warn,    // a warning on stderr naming them
  Allow,   // no word about it
};

struct ClassifierOptions {
  std::string tokenizer;  // tokenizer directory (default: the model's own files, else klue's)
  // Texts are truncated to max_length tokens. Unless max_length_given, it is a default
  // that a model with fewer positions lowers to max_position_embeddings; given (--max-length),
  // more than the model's positions is an Error, as train refuses it.
  int max_length = 128;
  bool max_length_given = false;
  // Quantize an fp32 model's encoder linears while loading (the same weights and answers
  // as loading its `bertune quantize` output). An int8 directory is int8 without it.
  bool int8 = false;
  kernels::Device device = kernels::Device::CPU;
  UntrainedHead untrained_head = UntrainedHead::Refuse;
};

class Classifier {
 public:
  static std::unique_ptr<Classifier> load(const std::filesystem::path& dir, const ClassifierOptions& options = {});
  ~Classifier();
  // An int8 directory (or --int8): encoder linears run the int8 kernels.
  bool int8_weights() const { return weights_.int8_weights(); }
  model::BertModel& model() { return *weights_.model; }
  const model::BertModel& model() const { return *weights_.model; }
  const text::Tokenizer& tokenizer() const { return tokenizer_; }

  // [CLS] ... [SEP] ids of each text, as `predict` tokenizes them; with text_pairs (one per
  // text) each pair's [CLS] a [SEP] b [SEP] and token types. Thread-safe (const).
  std::vector<TokenIds> tokenize(const std::vector<std::string>& texts,
                                 const std::vector<std::string>& text_pairs = {}) const;
  // Why a sentence pair does not fit the model (a BERT of one token type), naming it `name`;
  // "" when it does (model::pair_token_type_problem).
  std::string pair_problem(const std::string& name) const;
  // Logits [n, num_labels()] of the sequences run as ONE packed batch (no padding,
  // dropout off), shortest first as `predict` batches them; rows in the given order.
  // Not thread-safe: one caller at a time (the batching worker).
  std::vector<float> logits(const std::vector<const TokenIds*>& sequences);

  int num_labels() const { return num_labels_; }
  // How the logits are read (config.json's problem_type; unset: HF's rule on num_labels).
  model::ProblemType problem_type() const;
  int max_length() const { return max_length_; }
  // id2label of config.json, in id order (LABEL_i where the config has none).
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Throws Error unless there is exactly one name per label.
  void set_label_names(std::vector<std::string> names);

 private:
  Classifier() = default;
  InferenceModel weights_;
  text::Tokenizer tokenizer_;
  int num_labels_ = 0, max_length_ = 0;
  std::vector<std::string> label_names_;
};

}  // namespace bertune::infer
