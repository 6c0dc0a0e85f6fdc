#pragma once
// Hugging Face model directories: config.json + model.safetensors (or
// pytorch_model.bin, or sharded *.index.json), read and written the way
// transformers' from_pretrained / save_pretrained expect.
//
// This layer checks files against themselves and against config.json
// (shapes by tensor name). Mapping names onto the engine's parameter buffer,
// and deciding which missing tensors are fine (a fresh classifier head), is
// the model's job.
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "io/safetensors.h"
#include "model/config.h"

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

// The weights file in an HF directory, in from_pretrained's order of
// preference: model.safetensors, model.safetensors.index.json,
// pytorch_model.bin, pytorch_model.bin.index.json. Error lists what it tried.
std::filesystem::path find_weights(const std::filesystem::path& dir);

enum class Head { None, SequenceClassification, MaskedLM };

// Name -> shape of every parameter of BertModel (+ head) for `config`, with
// HF names ("bert.encoder.layer.0.attention.self.query.weight", Linear weights
// [out, in]). MaskedLM has no pooler and includes the tied decoder weight.
std::map<std::string, std::vector<int64_t>> expected_bert_shapes(const model::BertConfig& config,
                                                                 Head head);

// Every tensor in `tensors` whose name `expected` knows (also without the
// "bert." prefix, as BertModel checkpoints name them) must have that shape;
// otherwise Error: "<where>: tensor X has shape [..], config.json says [..]".
// Returns the expected names that are absent (the caller decides if that is
// fine, e.g. a classifier head not yet trained).
std::vector<std::string> check_shapes(const TensorMap& tensors,
                                      const std::map<std::string, std::vector<int64_t>>& expected,
                                      const std::string& where);

struct PretrainedTensors {
  model::BertConfig config;
  TensorMap tensors;
  std::filesystem::path weights_file;
};

// config.json + weights of an HF directory, with every tensor named like a
// BERT parameter checked against the config's shapes.
PretrainedTensors load_pretrained_tensors(const std::filesystem::path& dir);

// Writes an HF directory that transformers' from_pretrained loads:
// config.json (architectures from config.architectures, or guessed from the
// tensor names: classifier.* -> BertForSequenceClassification, cls.* ->
// BertForMaskedLM, else BertModel) and model.safetensors with metadata
// {"format": "pt"}; `extra_files` (tokenizer files, ...) are copied in.
//
// The directory appears whole or not at all: everything is written and
// fsync'ed in <dir>.tmp-<pid>/, then swapped into place with one atomic
// renameat2(RENAME_EXCHANGE) and the old copy removed. Where the filesystem
// cannot exchange, the old directory is renamed to <dir>.old-<pid> first; a
// crash between those two renames leaves no <dir>, but both complete copies
// (.old-<pid> and .tmp-<pid>) on disk. An existing <dir> without config.json
// is refused rather than replaced.
void save_pretrained(const std::filesystem::path& dir, const model::BertConfig& config,
                     const std::vector<TensorRef>& tensors,
                     const std::vector<std::filesystem::path>& extra_files = {});

}  // namespace bertune::io
