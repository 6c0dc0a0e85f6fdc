#pragma once
// The one place the serving code touches the inference API (train::load_classifier,
// train::load_tokenizer_for, train::tokenize, BertModel::forward / logits): when those
// signatures change, only classifier.cc changes.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

namespace bertune::model {
class BertModel;
}
namespace bertune::kernels {
class Int8Binding;
}
namespace bertune::text {
class Tokenizer;
}

namespace bertune::serve {

using TokenIds = std::vector<int32_t>;

class Classifier {
 public:
  // Loads the model directory (HF layout) and its tokenizer (`tokenizer` overrides the
  // model's own files). Texts are truncated to min(max_length, max_position_embeddings)
  // tokens, exactly as `bertune predict` does. An int8 directory (`bertune quantize`)
  // loads too: the model holds the dequantized weights (scale * q) and its encoder
  // linears run the int8 kernels through a kernels::Int8Binding.
  // int8: quantize an fp32 model's encoder linears while loading (the same weights and
  // answers as loading its `bertune quantize` output).
  static std::unique_ptr<Classifier> load(const std::filesystem::path& dir, const std::string& tokenizer = "",
                                          int max_length = 128, bool int8 = false);
  ~Classifier();
  // An int8 directory: encoder linears run the int8 kernels.
  bool int8_weights() const { return int8_weights_; }

  // [CLS] ... [SEP] ids of each text, as `predict` tokenizes them. Thread-safe (const).
  std::vector<TokenIds> tokenize(const std::vector<std::string>& texts) const;
  // Logits [n, num_labels()] of the sequences run as ONE packed batch (no padding,
  // dropout off), shortest first as `predict` batches them; rows in the given order.
  // Not thread-safe: one caller at a time (the batching worker).
  std::vector<float> logits(const std::vector<const TokenIds*>& sequences);

  int num_labels() const { return num_labels_; }
  int max_length() const { return max_length_; }
  // id2label of config.json, in id order (LABEL_i where the config has none).
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Throws Error unless there is exactly one name per label.
  void set_label_names(std::vector<std::string> names);
  // The same softmax `predict` prints (so probabilities match it bitwise).
  static std::vector<float> softmax(const float* logits, int n);
  static int argmax(const float* values, int n);

 private:
  Classifier() = default;
  std::unique_ptr<model::BertModel> model_;
  std::unique_ptr<text::Tokenizer> tokenizer_;
  std::unique_ptr<kernels::Int8Binding> int8_;  // after model_: unbound before the model goes
  int num_labels_ = 0, max_length_ = 0;
  bool int8_weights_ = false;
  std::vector<std::string> label_names_;
};

}  // namespace bertune::serve
