// tokenizer.json loaded from arbitrary bytes, then used to encode.
#include "fuzz_common.h"
#include "text/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  BERTUNE_FUZZ_BODY({
    auto path = bertune::fuzz::write_scratch("tokenizer.json", data, size);
    auto tok = bertune::text::Tokenizer::load_tokenizer_json(path);
    auto e = tok.encode("아 더빙.. 진짜 짜증나네요 [MASK] unaffable", {});
    for (int32_t id : e.ids) tok.id_to_token(id);
  })
}
