// model.safetensors (header JSON and data area) from arbitrary bytes.
#include "fuzz_common.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  BERTUNE_FUZZ_BODY({
    auto path = bertune::fuzz::write_scratch("model.safetensors", data, size);
    std::map<std::string, std::string> metadata;
    auto tensors = bertune::io::read_safetensors(path, &metadata);
    for (auto& [name, t] : tensors) {
      size_t n = 1;
      for (int64_t d : t.shape) n *= static_cast<size_t>(d);
      if (n != t.data.size()) __builtin_trap();  // shape and data must agree
    }
  })
}
