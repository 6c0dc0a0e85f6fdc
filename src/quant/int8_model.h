#pragma once
// bertune's int8 model directory (`bertune quantize`): config.json with a
// "bertune_quantization" object, and model.safetensors where every encoder linear
// weight "X.weight" is stored as I8 [out, in] beside "X.weight_scale" F32 [out]
// (W ~= scale[o] * q[o, :]); everything else (embeddings, LayerNorms, biases, pooler,
// classifier) stays F32. Tokenizer files are copied. Transformers cannot load the I8
// weights; bertune recognises the directory by the config marker.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "kernels/ops.h"

namespace bertune::quant {

inline constexpr const char* kConfigMarker = "bertune_quantization";

// The int8 linears of an encoder layer: the layers' prefix (+ N + "." = layer N's) and the
// modules after it. BERT's (RoBERTa's, ELECTRA's: "roberta.", "electra." prefixes) by default;
// DistilBERT's: distilbert.transformer.layer., attention.q_lin/k_lin/v_lin/out_lin, ffn.lin1/lin2.
struct LayerLinears {
  std::string layer_prefix = "bert.encoder.layer.";
  std::string query = "attention.self.query", key = "attention.self.key", value = "attention.self.value";
  std::string attn_out = "attention.output.dense", ffn_in = "intermediate.dense", ffn_out = "output.dense";
};

// Encoder linear weights (query/key/value, attention output, FFN in and out) of BERT,
// RoBERTa, ELECTRA and DistilBERT: the ones quantized. The pooler, DistilBERT's
// pre_classifier and the classifier stay fp32.
bool is_quantized_weight(const std::string& name, const std::vector<int64_t>& shape);

bool is_int8_model_dir(const std::filesystem::path& dir);

struct QuantizeReport {
  int quantized = 0, kept = 0;
  size_t fp32_bytes = 0, int8_bytes = 0;  // model.safetensors payload before / after
};

// Writes the int8 directory of the fp32 classifier in `model`: `tensors` (its state_dict)
// with every encoder linear weight quantized, config.json = `config` (the source's) with
// the marker added, and `tokenizer_files` (the model's, text::tokenizer_files) copied under
// their names. Staged beside `output`,
// then renamed: it appears whole or not at all, replacing an `output` that exists.
// infer::quantize_model_dir (`bertune quantize`) loads and checks the source first.
QuantizeReport write_int8_model_dir(const std::filesystem::path& model, const nlohmann::json& config,
                                    const std::vector<TensorRef>& tensors,
                                    const std::vector<std::filesystem::path>& tokenizer_files,
                                    const std::filesystem::path& output);

struct Int8Model {
  TensorMap fp32;  // the F32 tensors, plus every quantized weight dequantized (scale * q)
  std::map<std::string, kernels::QuantizedLinear> int8;  // by weight name, packed for the kernels
};
// model.safetensors of an int8 directory. Throws Error naming the file and tensor.
Int8Model read_int8_safetensors(const std::filesystem::path& file);

// The encoder's int8 linears in the order BertModel computes them: for each layer l,
// the fused [Q; K; V] projection ([3H, H]: query, key, value rows stacked, as
// BertModel fuses them — per-row scales make stacking exact), the attention output,
// the FFN in and out. Throws Error when one is missing.
std::vector<kernels::QuantizedLinear> encoder_int8_linears(const Int8Model& m, int num_layers,
                                                           const LayerLinears& names = {});

// Rows [begin, end) of a quantized weight (per-row scales make slicing exact), packed.
kernels::QuantizedLinear slice_rows(const kernels::QuantizedLinear& w, int begin, int end);

}  // namespace bertune::quant
