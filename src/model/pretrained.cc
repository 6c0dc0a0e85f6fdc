#include "model/pretrained.h"

#include "io/checkpoint.h"
#include "model/bert.h"

namespace bertune::model {
namespace fs = std::filesystem;

namespace {

std::string guess_architecture(const std::vector<TensorRef>& tensors) {
  for (const auto& t : tensors) {
    if (t.name.rfind("classifier.", 0) == 0) return "BertForSequenceClassification";
    if (t.name.rfind("cls.predictions.", 0) == 0) return "BertForMaskedLM";
  }
  return "BertModel";
}

}  // namespace

PretrainedTensors load_pretrained_tensors(const fs::path& dir) {
  PretrainedTensors out;
  out.config = BertConfig::load(dir / "config.json");
  out.weights_file = io::find_weights(dir);
  out.tensors = io::read_state_dict(out.weights_file);
  // Union of every head's names: a MaskedLM checkpoint loaded for
  // classification still has to agree with the config where it overlaps.
  TensorShapes expected = bert_checkpoint_shapes(out.config, Task::SequenceClassification);
  expected.merge(bert_checkpoint_shapes(out.config, Task::MaskedLM));
  // A classifier of another label count is a config mismatch too, but HF can
  // re-initialise it (ignore_mismatched_sizes); leave that decision to the caller.
  expected.erase("classifier.weight");
  expected.erase("classifier.bias");
  io::check_shapes(out.tensors, expected, out.weights_file.string());
  return out;
}

void save_pretrained(const fs::path& dir, const BertConfig& config, const std::vector<TensorRef>& tensors,
                     const std::vector<fs::path>& extra_files, io::DType dtype) {
  BertConfig c = config;
  if (c.architectures.empty()) c.architectures = {guess_architecture(tensors)};
  io::write_model_directory(dir, c.to_json(), tensors, extra_files, dtype);
}

}  // namespace bertune::model
