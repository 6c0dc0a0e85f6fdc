#pragma once
// Plain named tensors on the host: what checkpoint files hold (io reads and
// writes them) and what the model loads from and saves to (model). They live
// here, below both, so that neither has to include the other.
#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace bertune {

// An owned float tensor, row-major.
struct HostTensor {
  std::vector<int64_t> shape;
  std::vector<float> data;
  int64_t numel() const {
    int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
  }
};

// A state dict: tensor name -> tensor.
using TensorMap = std::map<std::string, HostTensor>;

// Tensor name -> shape, e.g. what a model expects a checkpoint to hold.
using TensorShapes = std::map<std::string, std::vector<int64_t>>;

// A tensor to write: the caller keeps `data` alive during the call.
struct TensorRef {
  std::string name;
  std::vector<int64_t> shape;
  const float* data;
};

// "[512, 64]", for error messages.
inline std::string shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? ", " : "") + std::to_string(shape[i]);
  return s + "]";
}

}  // namespace bertune
