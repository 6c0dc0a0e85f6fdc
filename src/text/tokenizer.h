#pragma once
// Hugging Face BERT tokenization, exact: BasicTokenizer (clean text, CJK
// splitting, punctuation splitting, optional lowercasing / accent stripping)
// followed by greedy longest-match-first WordPiece. Loaded from a tokenizer
// directory: vocab.txt + tokenizer_config.json, or tokenizer.json with a
// WordPiece model. A directory with sentencepiece.bpe.model is tokenized as
// XLMRobertaTokenizer does instead, one with spiece.model as AlbertTokenizer does
// (text/sentencepiece.h), behind the same front.
#include <bitset>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "text/token_map.h"

namespace bertune::text {

class SentencePieceBackend;

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
  // BasicTokenizer.tokenize(text) of transformers 4.30: the words WordPiece
  // would see (never_split words kept whole).
  std::vector<std::string> split(std::string_view text) const;
  const BasicTokenizerOptions& options() const { return options_; }

 private:
  BasicTokenizerOptions options_;
};

// The special tokens a tokenizer directory names (tokenizer_config.json,
// special_tokens_map.json or tokenizer.json's added_tokens).
struct SpecialTokens {
  std::string unk = "[UNK]", sep = "[SEP]", pad = "[PAD]", cls = "[CLS]", mask = "[MASK]";
  std::vector<std::string> additional;
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
  // A directory with vocab.txt (+ tokenizer_config.json), sentencepiece.bpe.model,
  // tokenizer.json or spiece.model, looked for in that order.
  static Tokenizer load(const std::filesystem::path& dir);
  // The formats, explicitly (load() prefers vocab.txt, which is what the
  // slow reference tokenizer reads).
  static Tokenizer load_vocab_txt(const std::filesystem::path& dir);
  static Tokenizer load_tokenizer_json(const std::filesystem::path& file);
  // XLMRobertaTokenizer over a SentencePiece model (sentencepiece.bpe.model): fairseq ids,
  // <s> a </s> and <s> a </s></s> b </s>, token types all 0; AlbertTokenizer over spiece.model
  // (options from tokenizer_config.json beside it): the model's ids, [CLS] a [SEP] and
  // [CLS] a [SEP] b [SEP], token types 0 then 1 (text/sentencepiece.cc).
  static Tokenizer load_sentencepiece(const std::filesystem::path& model_file);
  static Tokenizer from_vocab(std::vector<std::string> vocab, BasicTokenizerOptions options,
                              SpecialTokens specials = {});

  Encoding encode(std::string_view text, const EncodeOptions& options = {}) const;
  // A sentence pair as HF's tok(text, text_pair) encodes it: [CLS] a [SEP] b [SEP], token
  // types (always filled) 0 up to and including the first [SEP], 1 after (XLM-R:
  // <s> a </s></s> b </s>, all 0). max_length truncates 'longest_first': a token at a
  // time off the longer side, the second on a tie.
  Encoding encode_pair(std::string_view text, std::string_view text_pair, const EncodeOptions& options = {}) const;
  // Both cores: texts are split across threads, order kept.
  std::vector<Encoding> encode_batch(const std::vector<std::string>& texts,
                                     const EncodeOptions& options = {}, int threads = 0) const;
  // Pairs (texts[i], text_pairs[i]) with encode_pair; text_pairs empty: encode each text alone.
  std::vector<Encoding> encode_batch(const std::vector<std::string>& texts, const std::vector<std::string>& text_pairs,
                                     const EncodeOptions& options = {}, int threads = 0) const;
  // encode(text) without [CLS]/[SEP], each piece with the characters of `text` it came
  // from: code-point offsets [start, end) as Python's str indexes them, what a fast
  // tokenizer's offset_mapping gives (a continuation piece covers its part of the word
  // without "##"; an [UNK] word the whole word). Special tokens written in the text are
  // tokenized as words. SentencePiece: XLMRobertaTokenizerFast's offsets, without the "▁"
  // (SentencePieceBackend::pieces_with_offsets).
  struct Piece {
    int32_t id;
    size_t start, end;
  };
  std::vector<Piece> encode_with_offsets(std::string_view text) const;
  // What HF's tokenize() returns: WordPiece (or SentencePiece) pieces (special tokens
  // found in the text included), no [CLS]/[SEP] added.
  std::vector<std::string> tokenize(std::string_view text) const;
  std::string id_to_token(int32_t id) const { return vocab_.at(static_cast<size_t>(id)); }
  int32_t token_to_id(std::string_view token) const;  // -1 when absent

  size_t vocab_size() const { return vocab_.size(); }
  int32_t pad_id() const { return pad_id_; }
  int32_t unk_id() const { return unk_id_; }
  int32_t cls_id() const { return cls_id_; }
  int32_t sep_id() const { return sep_id_; }
  int32_t mask_id() const { return mask_id_; }
  const BasicTokenizer& basic() const { return basic_; }
  // SentencePiece splits the text: no continuing-subword prefix marks a word's later pieces.
  bool is_sentencepiece() const { return sentencepiece_ != nullptr; }

 private:
  // Implementation detail owned by the tokenizer work; may change freely.
  friend struct TokenizerImpl;
  // How encode_pair lays out [CLS] a [SEP]... b [SEP]: the separators between a and b, b's token type.
  struct PairLayout {
    int middle_seps = 1;      // XLM-R: 2 (<s> a </s></s> b </s>)
    int32_t second_type = 1;  // XLM-R: 0
  };
  PairLayout pair_layout_;
  std::shared_ptr<const SentencePieceBackend> sentencepiece_;  // set: it splits text, not WordPiece
  std::vector<Piece> sentencepiece_offsets(std::string_view text) const;  // text/sentencepiece.cc
  std::vector<std::string> vocab_;
  TokenMap index_;         // every token, verbatim
  TokenMap continuation_;  // tokens that start with the prefix, keyed without it
  std::string continuing_prefix_ = "##";
  BasicTokenizer basic_;
  SpecialTokens specials_;
  std::vector<std::string> special_texts_;  // all_special_tokens, split out of raw text whole
  std::vector<int32_t> special_text_ids_;
  std::bitset<256> special_first_byte_;  // first bytes of special_texts_: most text skips the trie
  WordSet never_split_config_;  // basic_tokenizer.never_split: kept whole, looked up as is
  WordSet never_split_all_;     // + the special tokens: kept whole by the basic tokenizer
  int32_t pad_id_ = 0, unk_id_ = 1, cls_id_ = 2, sep_id_ = 3, mask_id_ = 4;
  int max_input_chars_per_word_ = 100;
};

// The files of a tokenizer directory, under Hugging Face's names: the ones present in `dir`
// (regular files), in the order vocab.txt, tokenizer_config.json, special_tokens_map.json,
// tokenizer.json, sentencepiece.bpe.model, spiece.model. A directory is a tokenizer when it
// has vocab.txt, tokenizer.json, sentencepiece.bpe.model or spiece.model.
std::vector<std::filesystem::path> tokenizer_files(const std::filesystem::path& dir);
bool is_tokenizer_dir(const std::filesystem::path& dir);

}  // namespace bertune::text
