#pragma once
// Hugging Face BERT tokenization, exact: BasicTokenizer (clean text, CJK
// splitting, punctuation splitting, optional lowercasing / accent stripping)
// followed by greedy longest-match-first WordPiece. Loaded from a tokenizer
// directory: vocab.txt + tokenizer_config.json, or tokenizer.json with a
// WordPiece model.
#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace bertune::text {

struct BasicTokenizerOptions {
  bool do_lower_case = false;
  bool tokenize_chinese_chars = true;
  int strip_accents = -1;  // -1: null (follow do_lower_case), 0: false, 1: true
  std::vector<std::string> never_split;
};

// Splits text into words the way HF's BasicTokenizer does. Shared by the
// WordPiece encoder and the vocabulary trainer.
class BasicTokenizer {
 public:
  explicit BasicTokenizer(BasicTokenizerOptions options = {});
  std::vector<std::string> split(std::string_view text) const;
  const BasicTokenizerOptions& options() const { return options_; }

 private:
  BasicTokenizerOptions options_;
};

struct Encoding {
  std::vector<int32_t> ids;             // with [CLS] ... [SEP] when add_special_tokens
  std::vector<int32_t> token_type_ids;  // filled only when asked for
  std::vector<int8_t> attention_mask;   // all 1 (no padding here; batching pads)
};

struct EncodeOptions {
  bool add_special_tokens = true;
  int max_length = 0;  // 0: no truncation; else the last kept id is [SEP]
  bool return_token_type_ids = false;
};

class Tokenizer {
 public:
  // A directory with vocab.txt (+ tokenizer_config.json) or tokenizer.json.
  static Tokenizer load(const std::filesystem::path& dir);
  static Tokenizer from_vocab(std::vector<std::string> vocab, BasicTokenizerOptions options);

  Encoding encode(std::string_view text, const EncodeOptions& options = {}) const;
  // Both cores: texts are split across threads, order kept.
  std::vector<Encoding> encode_batch(const std::vector<std::string>& texts,
                                     const EncodeOptions& options = {}, int threads = 0) const;
  std::vector<std::string> tokenize(std::string_view text) const;  // WordPiece pieces, no specials
  std::string id_to_token(int32_t id) const { return vocab_.at(static_cast<size_t>(id)); }
  int32_t token_to_id(std::string_view token) const;  // -1 when absent

  size_t vocab_size() const { return vocab_.size(); }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t mask_id() const { return mask_id_; }
  const BasicTokenizer& basic() const { return basic_; }

 private:
  // Implementation detail owned by the tokenizer work; may change freely.
  std::vector<std::string> vocab_;
  std::unordered_map<std::string, int32_t> index_;
  BasicTokenizer basic_;
  int32_t pad_id_ = 0, unk_id_ = 1, cls_id_ = 2, sep_id_ = 3, mask_id_ = 4;
  int max_input_chars_per_word_ = 100;
};

}  // namespace bertune::text
