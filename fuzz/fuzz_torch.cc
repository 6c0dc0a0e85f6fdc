// pytorch_model.bin: the first byte chooses the restricted pickle VM on raw
// bytes (data.pkl) or the whole torch.save zip reader.
#include "fuzz_common.h"
#include "io/torch_pickle.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  BERTUNE_FUZZ_BODY({
    if (data[0] & 1) {
      bertune::io::parse_state_dict_pickle(bertune::fuzz::as_text(data + 1, size - 1), "data.pkl");
    } else {
      auto path = bertune::fuzz::write_scratch("pytorch_model.bin", data + 1, size - 1);
      bertune::io::read_torch_bin(path);
    }
  })
}
