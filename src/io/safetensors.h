#pragma once
// safetensors: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then raw little-endian data.
// Reading converts F32/F16/BF16 to float; integer buffers (e.g.
// bert.embeddings.position_ids, I64) are skipped. Every header field is
// validated before any data is touched: hostile files give an Error.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "util/tensor.h"

namespace bertune::io {

// The tensor types are the project's plain ones (util/tensor.h), below io and model both.
enum class DType { F32, F16, BF16 };
const char* torch_dtype_name(DType dtype);         // "float32" | "float16" | "bfloat16" (config.json's torch_dtype)
DType parse_torch_dtype(const std::string& name);  // the inverse; Error naming the choices

TensorMap read_safetensors(const std::filesystem::path& path,
                           std::map<std::string, std::string>* metadata = nullptr);

// One tensor as a weights file stores it, whatever its dtype: what `checkpoint inspect` lists.
struct TensorInfo {
  std::string name;
  std::string dtype;  // safetensors' names: "F32", "F16", "BF16", "I64", "I32", "I8", "BOOL", ...
  std::vector<int64_t> shape;
};
// Every tensor of the file, integer ones included, by name; validated as read_safetensors.
std::vector<TensorInfo> list_safetensors(const std::filesystem::path& path);
// An integer buffer saved beside the weights (ElectraForMaskedLM's position_ids): I64, as torch
// stores it.
struct Int64Ref {
  std::string name;
  std::vector<int64_t> shape;
  const int64_t* data;
};
// Atomic; F16 refuses values beyond its range. `buffers` go first (I64: the reference
// serializer orders by item size, then name), then `tensors` in `dtype`.
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                       DType dtype = DType::F32, const std::vector<Int64Ref>& buffers = {});

}  // namespace bertune::io
