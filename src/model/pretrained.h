#pragma once
// Hugging Face BERT directories (config.json + weights), loaded and saved the
// way transformers' from_pretrained / save_pretrained do. The file formats
// are io's (io/checkpoint.h); what a BERT checkpoint must hold comes from the
// model's one layout (bert_tensor_layout).
#include <filesystem>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"
#include "util/tensor.h"

namespace bertune::model {

struct PretrainedTensors {
  BertConfig config;
  TensorMap tensors;
  std::filesystem::path weights_file;
};

// config.json + weights of an HF directory, with every tensor named like a
// BERT parameter (of either head) checked against the config's shapes.
PretrainedTensors load_pretrained_tensors(const std::filesystem::path& dir);

// Writes an HF directory that transformers' from_pretrained loads:
// config.json (architectures from config.architectures, or guessed from the
// tensor names: classifier.* -> BertForSequenceClassification, cls.seq_relationship.* ->
// BertForPreTraining, other cls.* -> BertForMaskedLM, else BertModel), model.safetensors with metadata
// {"format": "pt"}, and `extra_files` (tokenizer files, ...) copied in. The
// directory appears whole or not at all; see io::write_model_directory.
void save_pretrained(const std::filesystem::path& dir, const BertConfig& config,
                     const std::vector<TensorRef>& tensors,
                     const std::vector<std::filesystem::path>& extra_files = {},
                     io::DType dtype = io::DType::F32, const std::vector<io::Int64Ref>& buffers = {});

}  // namespace bertune::model
