#include "model/pretrained.h"

#include "io/checkpoint.h"
#include "model/bert.h"
#include "model/heads.h"
#include "util/error.h"

namespace bertune::model {
namespace fs = std::filesystem;

namespace {

std::string guess_architecture(const BertConfig& config, const std::vector<TensorRef>& tensors) {
  for (const auto& t : tensors)
    if (t.name.rfind("cls.seq_relationship.", 0) == 0) return "BertForPreTraining";
  for (const auto& t : tensors) {
    if (t.name.rfind("classifier.", 0) == 0) return config.classifier_architecture();
    if (t.name.rfind("cls.predictions.", 0) == 0) return "BertForMaskedLM";
  }
  switch (config.family) {
    case Family::Roberta: return "RobertaModel";
    case Family::XlmRoberta: return "XLMRobertaModel";
    case Family::Electra: return "ElectraModel";
    case Family::DistilBert: return "DistilBertModel";
    case Family::Bert: break;
  }
  return "BertModel";
}

// `train` writes checkpoint-N/ and final/ into its output directory, each a model directory;
// the output directory itself holds no config.json.
void refuse_training_output_dir(const fs::path& dir) {
  std::error_code ec;
  if (fs::exists(dir / "config.json", ec)) return;
  // ELECTRA pretraining's final/ holds two model directories.
  if (fs::exists(dir / "discriminator" / "config.json", ec) && fs::exists(dir / "generator" / "config.json", ec))
    throw Error(dir.string() + " holds ELECTRA's two pretrained models; give " + (dir / "discriminator").string() +
                " (the model ELECTRA keeps) or " + (dir / "generator").string());
  bool run_dir = fs::is_directory(dir / "final", ec);
  for (fs::directory_iterator it(dir, ec), end; !run_dir && !ec && it != end; it.increment(ec))
    run_dir = it->path().filename().string().rfind("checkpoint-", 0) == 0 && it->is_directory(ec);
  const fs::path final_dir = fs::exists(dir / "final" / "discriminator" / "config.json", ec)
                                 ? dir / "final" / "discriminator" : dir / "final";
  if (run_dir)
    throw Error(dir.string() + " is a training output directory; give " + final_dir.string() +
                " (or a checkpoint-N inside it)");
}

}  // namespace

PretrainedTensors load_pretrained_tensors(const fs::path& dir) {
  refuse_training_output_dir(dir);
  PretrainedTensors out;
  out.config = BertConfig::load(dir / "config.json");
  out.weights_file = io::find_weights(dir);
  out.tensors = io::read_state_dict(out.weights_file);
  // Union of every head's names: a MaskedLM checkpoint loaded for
  // classification still has to agree with the config where it overlaps.
  TensorShapes expected = bert_checkpoint_shapes(out.config, Task::SequenceClassification);
  // BertForPreTraining's: BertForMaskedLM's, the pooler and cls.seq_relationship.
  if (out.config.family == Family::Bert) expected.merge(bert_checkpoint_shapes(out.config, Task::PreTraining));
  // The head's output checked last, so that its error can say what disagrees: the label count.
  const std::string out_proj = SequenceClassificationHead::spec_of(out.config).out;
  TensorShapes head;
  for (const std::string& name : {out_proj + ".weight", out_proj + ".bias"}) head.insert(expected.extract(name));
  io::check_shapes(out.tensors, expected, out.weights_file.string());
  try {
    io::check_shapes(out.tensors, head, out.weights_file.string());
  } catch (const Error& e) {
    throw Error(std::string(e.what()) + ": config.json's num_labels/id2label (" +
                std::to_string(out.config.num_labels()) +
                " labels) do not match the weights' classification head; make id2label list the labels "
                "the model was trained with");
  }
  return out;
}

void save_pretrained(const fs::path& dir, const BertConfig& config, const std::vector<TensorRef>& tensors,
                     const std::vector<fs::path>& extra_files, io::DType dtype,
                     const std::vector<io::Int64Ref>& buffers) {
  BertConfig c = config;
  if (c.architectures.empty()) c.architectures = {guess_architecture(c, tensors)};
  io::write_model_directory(dir, c.to_json(), tensors, extra_files, dtype, buffers);
}

}  // namespace bertune::model
