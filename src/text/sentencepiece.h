#pragma once
// SentencePiece tokenization (libsentencepiece) with the ids and special tokens of
// transformers' XLMRobertaTokenizer (sentencepiece.bpe.model): the fairseq dictionary puts
// <s>=0, <pad>=1, </s>=2, <unk>=3 first, every other piece is its SentencePiece id + 1, and
// <mask> is the last id (pieces + 1); Tokenizer adds <s> a </s> around it. Or of
// AlbertTokenizer (spiece.model): the SentencePiece ids themselves, [CLS] [SEP] <pad> <unk>
// [MASK] looked up in the model (one it lacks appended after its pieces, in that order, as
// the slow tokenizer adds it), the text preprocessed first and a piece ending in digit+","
// split; Tokenizer adds [CLS] a [SEP] around it.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace bertune::text {

// AlbertTokenizer's preprocess_text options (tokenizer_config.json), its defaults.
struct AlbertOptions {
  bool do_lower_case = true;
  bool remove_space = true;
  bool keep_accents = false;
};

class SentencePieceBackend {
 public:
  // The fairseq ids of the special tokens (XLMRobertaTokenizer.fairseq_tokens_to_ids).
  static constexpr int32_t kBos = 0, kPad = 1, kEos = 2, kUnk = 3;
  static constexpr int32_t kFairseqOffset = 1;
  // The special tokens, in the order special_id takes them.
  enum Special { kCls, kSep, kUnkToken, kPadToken, kMask };

  // Reads a SentencePiece model file; a missing, unreadable or corrupt one is an
  // Error naming the file. `albert` set: AlbertTokenizer's ids and preprocessing, else
  // XLMRobertaTokenizer's.
  explicit SentencePieceBackend(const std::filesystem::path& model_file,
                                std::optional<AlbertOptions> albert = std::nullopt);
  ~SentencePieceBackend();
  SentencePieceBackend(const SentencePieceBackend&) = delete;
  SentencePieceBackend& operator=(const SentencePieceBackend&) = delete;

  // convert_ids_to_tokens(range(vocab_size)): XLM-R: <s> <pad> </s> <unk>, the pieces from
  // SentencePiece id 3 on, <mask>; ALBERT: the pieces, then the specials the model lacks.
  const std::vector<std::string>& vocabulary() const { return vocab_; }
  const std::string& special_text(Special s) const { return specials_[s]; }
  int32_t special_id(Special s) const { return special_ids_[s]; }
  int32_t mask_id() const { return special_ids_[kMask]; }
  bool albert() const { return albert_.has_value(); }
  // AlbertTokenizer.preprocess_text: whitespace runs as one space (remove_space), `` and ''
  // as ", NFKD without combining marks (unless keep_accents), lower case (do_lower_case).
  std::string preprocess(std::string_view text) const;

  // PreTrainedTokenizer.tokenize + convert_tokens_to_ids of transformers 4.30 on one
  // text: the special tokens are split out whole (<mask> takes the whitespace
  // before it, the others the whitespace on both sides), every other stretch is
  // encoded by SentencePiece. Calls emit(token, id) for each token in order.
  void pieces(std::string_view text, const std::function<void(std::string_view, int32_t)>& emit) const;

  // The same tokens, each with the characters of `text` it covers: code-point offsets
  // [start, end) as XLMRobertaTokenizerFast's offset_mapping gives them. A piece's "▁" is not
  // part of its span (the fast tokenizer splits on whitespace and prefixes each word with a
  // "▁" aligned to the word's first character), so "▁world" in "Hello world" is [6, 11), and
  // a piece that is "▁" alone covers the first character of the word after it.
  void pieces_with_offsets(std::string_view text,
                           const std::function<void(int32_t id, size_t start, size_t end)>& emit) const;

 private:
  int32_t piece_id(const std::string& piece) const;  // _convert_token_to_id
  // tokens_trie.split and the stripping around special tokens: stretch(begin, end) for each
  // stretch of `text` SentencePiece encodes, special(k, begin, end) for each special token
  // (specials_[k]), byte offsets into `text`, in order.
  void split(std::string_view text, const std::function<void(size_t, size_t)>& stretch,
             const std::function<void(size_t, size_t, size_t)>& special) const;

  // AlbertTokenizer._tokenize of one stretch: preprocessed, encoded, digit-comma pieces split.
  void albert_pieces(std::string_view stretch, std::vector<std::string>& out) const;

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::optional<AlbertOptions> albert_;
  std::vector<std::string> vocab_;
  std::vector<std::string> specials_;  // by Special: <s> </s> <unk> <pad> <mask> ([CLS] ...); longest match wins
  std::vector<int32_t> special_ids_;
};

}  // namespace bertune::text
