// config.json from arbitrary bytes; an accepted config must round-trip.
#include "fuzz_common.h"
#include "model/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  BERTUNE_FUZZ_BODY({
    auto path = bertune::fuzz::write_scratch("config.json", data, size);
    auto c = bertune::model::BertConfig::load(path);
    auto again = bertune::model::BertConfig::from_json(c.to_json(), "round trip");
    if (again.to_json() != c.to_json()) __builtin_trap();
    c.non_embedding_parameters();
  })
}
