// The BERT tokenizer (clean-up, CJK split, lower-casing / accent stripping,
// WordPiece) on arbitrary bytes, invalid UTF-8 included. Uses the klue vocab
// under $BERTUNE_SHARED (or ../shared) when present, else a small built-in one;
// the first byte picks the BasicTokenizer options and max_length.
#include <cstdlib>

#include "fuzz_common.h"
#include "text/tokenizer.h"

namespace {
const bertune::text::Tokenizer& tokenizer(int variant) {
  static const bertune::text::Tokenizer tokenizers[4] = {
      [] {
        const char* shared = std::getenv("BERTUNE_SHARED");
        std::filesystem::path dir =
            std::filesystem::path(shared ? shared : BERTUNE_SOURCE_DIR "/../shared") / "models/klue-bert-base";
        if (std::filesystem::exists(dir / "vocab.txt")) return bertune::text::Tokenizer::load(dir);
        return bertune::text::Tokenizer::from_vocab({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##b"}, {});
      }(),
      bertune::text::Tokenizer::from_vocab({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "영화", "##는", "e", "##́", "x"},
                                           {true, true, -1, {"[MASK]"}}),
      bertune::text::Tokenizer::from_vocab({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "가", "##나", "ab", "##c"},
                                           {false, false, 1, {}}),
      bertune::text::Tokenizer::from_vocab({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "i", "##ng", "中"},
                                           {true, true, 0, {}}),
  };
  return tokenizers[variant & 3];
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  const auto& tok = tokenizer(data[0]);
  std::string_view text = bertune::fuzz::as_text(data + 1, size - 1);
  BERTUNE_FUZZ_BODY({
    bertune::text::EncodeOptions o;
    o.max_length = (data[0] >> 2) & 1 ? 2 + (data[0] >> 3) : 0;
    auto e = tok.encode(text, o);
    if (o.max_length && static_cast<int>(e.ids.size()) > o.max_length) __builtin_trap();
    for (int32_t id : e.ids)
      if (id < 0 || static_cast<size_t>(id) >= tok.vocab_size()) __builtin_trap();
    tok.tokenize(text);
    tok.basic().split(text);
  })
}
