#pragma once
// Hugging Face model directories: config.json + model.safetensors (or
// pytorch_model.bin, or sharded *.index.json), read and written the way
// transformers' from_pretrained / save_pretrained expect.
//
// This layer knows file formats, not models: it checks files against
// themselves and against a name -> shape table it is handed. What a BERT
// checkpoint must hold, and which missing tensors are fine (a fresh
// classifier head), is the model's (model/pretrained.h).
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "util/tensor.h"

namespace bertune::io {

// Old (TF-converted) checkpoints call LayerNorm parameters gamma/beta;
// from_pretrained renames them on load. We rename a trailing ".gamma" to
// ".weight" and ".beta" to ".bias" (HF replaces the substring anywhere; no
// BERT name has it elsewhere).
std::string normalize_tensor_name(const std::string& name);

// One weights file (.safetensors or .bin) or a sharded index
// (*.safetensors.index.json / *.bin.index.json), names normalised.
// Floating tensors only; integer buffers are validated and skipped.
TensorMap read_state_dict(const std::filesystem::path& path);

// The same files' tensors with their dtypes, every one (int8 weights, integer buffers such
// as position_ids too), names normalised, by name: what `checkpoint inspect` lists.
std::vector<TensorInfo> list_state_dict(const std::filesystem::path& path);

// The weights file in an HF directory, in from_pretrained's order of
// preference: model.safetensors, model.safetensors.index.json,
// pytorch_model.bin, pytorch_model.bin.index.json. Error lists what it tried.
std::filesystem::path find_weights(const std::filesystem::path& dir);

// Every tensor in `tensors` whose name `expected` knows (also without the
// "bert." prefix, as BertModel checkpoints name them) must have that shape;
// otherwise Error: "<where>: tensor X has shape [..], config.json says [..]".
// Returns the expected names that are absent (the caller decides if that is
// fine, e.g. a classifier head not yet trained).
std::vector<std::string> check_shapes(const TensorMap& tensors, const TensorShapes& expected,
                                      const std::string& where);

// A model directory output (convert, quantize) replaces only a model: an existing `dir` must be
// empty or hold config.json and weights (model*.safetensors, pytorch_model*.bin). Anything
// else is the user's and is refused, naming `role` and a few of the entries found there.
void require_replaceable_model_directory(const std::filesystem::path& dir, std::string_view role = {});

// Writes an HF model directory that transformers' from_pretrained loads:
// `config` as config.json ("torch_dtype" set to what the weights file holds),
// model.safetensors with metadata {"format": "pt"}, and `extra_files`
// (tokenizer files, ...) copied in. The directory appears whole or not at
// all (write_directory_atomic). Refused before anything is written: an
// existing <dir> that is not empty and has no config.json (not a model, so
// not ours to replace), an extra file that is missing or would overwrite
// config.json / model.safetensors. `buffers`: integer buffers saved beside the weights (I64).
void write_model_directory(const std::filesystem::path& dir, const nlohmann::json& config,
                           const std::vector<TensorRef>& tensors,
                           const std::vector<std::filesystem::path>& extra_files = {},
                           DType dtype = DType::F32, const std::vector<Int64Ref>& buffers = {});

}  // namespace bertune::io
