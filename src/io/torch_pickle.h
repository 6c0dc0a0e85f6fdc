#pragma once
// pytorch_model.bin: what torch.save (torch >= 1.6) writes for a state_dict.
// A zip archive holding <archive>/data.pkl (a pickle of an OrderedDict of
// tensors) and <archive>/data/<key> (one raw little-endian storage each).
//
// The pickle is interpreted by a small stack machine that knows only the
// opcodes and globals a state_dict uses (OrderedDict, _rebuild_tensor_v2,
// _rebuild_parameter, torch.*Storage). Nothing in the file is ever executed:
// any other callable is refused with an Error naming it. Every length, index
// and stride is bounds-checked against the bytes actually present.
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include "io/safetensors.h"

namespace bertune::io {

// One tensor as the pickle describes it, before its storage is read.
struct PickledTensor {
  std::string name;          // state_dict key
  std::string storage_type;  // "FloatStorage", "HalfStorage", "LongStorage", ...
  std::string storage_key;   // file name under <archive>/data/
  int64_t storage_numel = 0; // elements in the whole storage
  int64_t storage_offset = 0;
  std::vector<int64_t> shape, stride;
};

// Runs the restricted pickle machine over data.pkl's bytes. `where` names the
// file in error messages. Exposed so tests can feed it hand-built pickles.
std::vector<PickledTensor> parse_state_dict_pickle(std::string_view pickle,
                                                   const std::string& where);

// Reads a torch.save zip. Floating tensors (float32/64, float16, bfloat16)
// are converted to float, copied out through their strides; integer and bool
// tensors (e.g. position_ids) are validated and skipped, as in
// read_safetensors. A pre-1.6 (non-zip) file gives an Error asking for a
// re-save with a newer torch.
TensorMap read_torch_bin(const std::filesystem::path& path);

// Every tensor of the file with its dtype (integer ones included), by name; storages unread.
std::vector<TensorInfo> list_torch_bin(const std::filesystem::path& path);

}  // namespace bertune::io
