// trainer_state.json (resume reads it) from arbitrary bytes; an accepted state
// must save and load again. bertune_state.json: fuzz_bertune_state.cc.
#include "fuzz_common.h"
#include "train/state.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  BERTUNE_FUZZ_BODY({
    auto path = bertune::fuzz::write_scratch("trainer_state.json", data, size);
    auto s = bertune::train::TrainerState::load(path);
    bertune::train::TrainerState::from_json(s.to_json());
  })
}
