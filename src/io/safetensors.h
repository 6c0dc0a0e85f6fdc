#pragma once
// safetensors: an 8-byte little-endian header length, a JSON header
// {name: {dtype, shape, data_offsets}}, then raw little-endian data.
// Reading converts F32/F16/BF16 to float; integer buffers (e.g.
// bert.embeddings.position_ids, I64) are skipped. Every header field is
// validated before any data is touched: hostile files give an Error.
#include <cstdint>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

namespace bertune::io {

struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

using TensorMap = std::map<std::string, HostTensor>;

enum class DType { F32, F16, BF16 };

// A tensor to write: the caller keeps `data` alive during the call.
struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};

TensorMap read_safetensors(const std::filesystem::path& path,
                           std::map<std::string, std::string>* metadata = nullptr);
void write_safetensors(const std::filesystem::path& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata = {{"format", "pt"}},
                       DType dtype = DType::F32);  // atomic

}  // namespace bertune::io
