// vocab.txt (with the default tokenizer_config) loaded from arbitrary bytes,
// then used to encode a fixed Korean/English text.
#include "fuzz_common.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  BERTUNE_FUZZ_BODY({
    bertune::fuzz::write_scratch("vocab.txt", data, size);
    auto tok = bertune::text::Tokenizer::load_vocab_txt(bertune::fuzz::scratch_dir());
    auto e = tok.encode("아 더빙.. 진짜 짜증나네요 [MASK] unaffable ##ing", {true, 16, true});
    for (int32_t id : e.ids) tok.id_to_token(id);
  })
}
