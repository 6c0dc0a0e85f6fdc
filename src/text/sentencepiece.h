#pragma once
// SentencePiece tokenization (libsentencepiece) with the ids and special tokens
// of transformers' XLMRobertaTokenizer: the fairseq dictionary puts <s>=0,
// <pad>=1, </s>=2, <unk>=3 first, every other piece is its SentencePiece id + 1,
// and <mask> is the last id (pieces + 1). Tokenizer::load uses it for a
// directory with sentencepiece.bpe.model; Tokenizer adds <s> a </s> around it.
#include <cstdint>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace sentencepiece {
class SentencePieceProcessor;
}

namespace bertune::text {

class SentencePieceBackend {
 public:
  // The fairseq ids of the special tokens (XLMRobertaTokenizer.fairseq_tokens_to_ids).
  static constexpr int32_t kBos = 0, kPad = 1, kEos = 2, kUnk = 3;
  static constexpr int32_t kFairseqOffset = 1;

  // Reads a SentencePiece model file; a missing, unreadable or corrupt one is an
  // Error naming the file.
  explicit SentencePieceBackend(const std::filesystem::path& model_file);
  ~SentencePieceBackend();
  SentencePieceBackend(const SentencePieceBackend&) = delete;
  SentencePieceBackend& operator=(const SentencePieceBackend&) = delete;

  // convert_ids_to_tokens(range(vocab_size)): <s> <pad> </s> <unk>, the pieces from
  // SentencePiece id 3 on, <mask>.
  const std::vector<std::string>& vocabulary() const { return vocab_; }
  int32_t mask_id() const { return static_cast<int32_t>(vocab_.size()) - 1; }

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

  std::unique_ptr<sentencepiece::SentencePieceProcessor> sp_;
  std::vector<std::string> vocab_;
  std::vector<std::string> specials_;  // <s> </s> <unk> <pad> <mask>, longest match wins
  std::vector<int32_t> special_ids_;
};

}  // namespace bertune::text
