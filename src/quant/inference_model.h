#pragma once
// THE way eval, predict and serve load a classifier for inference: an fp32 model
// directory (HF layout), an int8 directory written by `bertune quantize`, or an fp32
// directory quantized while loading (`--int8`). The last two give the same weights
// and the same answers.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "model/bert.h"

namespace bertune::quant {

struct InferenceModel {
  std::unique_ptr<model::BertModel> model;
  // Routes the encoder's linear_forward calls to the int8 kernels while it lives.
  // Declared after `model`, so it is destroyed (unbound) before the weights go.
  std::unique_ptr<kernels::Int8Binding> int8;
  bool int8_weights() const { return int8 != nullptr; }
  // fp32 directories only: head tensors absent from the checkpoint, freshly
  // initialised (seed 42) as from_pretrained does. The caller decides whether to refuse.
  std::vector<std::string> initialised;
};

// int8: quantize an fp32 model's encoder linears on load (no effect on an int8 directory,
// which is int8 already). An int8 directory without a classifier head is an Error.
InferenceModel load_inference_model(const std::filesystem::path& dir, bool int8 = false);

// Rows [begin, end) of a quantized weight (per-row scales make slicing exact), packed.
kernels::QuantizedLinear slice_rows(const kernels::QuantizedLinear& w, int begin, int end);

}  // namespace bertune::quant
