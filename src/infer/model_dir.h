#pragma once
// THE way eval, predict, serve and quantize read a classifier directory for inference: an
// fp32 model directory (HF layout: model.safetensors, pytorch_model.bin or sharded; F32,
// F16 or BF16 weights), an int8 directory written by `bertune quantize`, or an fp32
// directory quantized while loading (`--int8`). The last two give the same weights and
// the same answers. And the tokenizer that goes with a model.
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "model/bert.h"
#include "model/pretrained.h"
#include "text/tokenizer.h"
#include "util/tensor.h"

namespace bertune::infer {

// The fp32 weights of an HF directory in a classification model (every one finite:
// require_finite), the head initialised
// with `head_seed` when the checkpoint lacks it, as from_pretrained(num_labels=2) does (the
// names of the fresh tensors go to `initialised`).
std::unique_ptr<model::BertModel> load_classifier(const std::filesystem::path& dir, uint64_t head_seed,
                                                  std::vector<std::string>* initialised = nullptr,
                                                  kernels::Device device = kernels::Device::CPU);

// Throws Error naming `file` and the first tensor (by name) holding NaN or infinite
// values, with how many: a model with them answers label 0 with null probabilities for
// every text. One pass over the weights, the exponent bits only.
void require_finite(const TensorMap& tensors, const std::string& file);

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
// device: where the fp32 model lives. The int8 kernels are CPU-only, so int8 (the flag or
// an int8 directory) on any other device is an Error, raised before anything is read.
InferenceModel load_inference_model(const std::filesystem::path& dir, bool int8 = false,
                                    kernels::Device device = kernels::Device::CPU);

// The fp32 weights a training run starts from (`purpose`: "training", "pretraining"): an int8
// directory written by `bertune quantize` is refused, naming the fp32 model it needs.
model::PretrainedTensors load_weights_to_train(const std::string& dir, const std::string& purpose);

// The tokenizer for a model: `fallback` when given, else the model's own files, else klue's.
std::filesystem::path tokenizer_dir_for(const std::filesystem::path& model_dir, const std::string& fallback = "");
text::Tokenizer load_tokenizer_for(const std::filesystem::path& model_dir, const std::string& fallback = "");
std::filesystem::path default_tokenizer_dir();  // klue/bert-base's in shared/

}  // namespace bertune::infer
