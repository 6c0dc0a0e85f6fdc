#include "infer/model_dir.h"

#include <cmath>
#include <map>

#include "infer/metrics.h"
#include "model/config.h"
#include "model/pretrained.h"
#include "quant/int8_model.h"
#include "util/error.h"
#include "util/paths.h"

namespace bertune::infer {
namespace fs = std::filesystem;

void require_finite(const TensorMap& tensors, const std::string& file) {
  const std::string* first = nullptr;
  size_t bad_tensors = 0;
  for (const auto& [name, t] : tensors)
    if (count_non_finite(t.data.data(), t.data.size()) != 0 && bad_tensors++ == 0) first = &name;
  if (!first) return;
  const auto& data = tensors.at(*first).data;
  size_t nan = 0, inf = 0;
  for (float v : data) (std::isnan(v) ? nan : inf) += count_non_finite(&v, 1);
  std::string what;
  if (nan) what = std::to_string(nan) + " NaN";
  if (inf) what += (what.empty() ? "" : " and ") + std::to_string(inf) + " infinite";
  std::string more;
  if (bad_tensors > 1) more = " (and " + std::to_string(bad_tensors - 1) + " more tensors)";
  throw Error(file + ": tensor " + *first + " holds " + what + " value" + (nan + inf > 1 ? "s" : "") + more +
              "; a model with non-finite weights answers nothing meaningful (retrain it, or use an earlier "
              "checkpoint)");
}

namespace {
// A token classifier saved as one stays one; every other checkpoint gets a sequence head.
// Names that class in config.architectures.
model::Task classifier_task(model::BertConfig& config) {
  const bool tokens = config.is_token_classifier();
  config.architectures = {config.classifier_architecture(tokens)};
  return tokens ? model::Task::TokenClassification : model::Task::SequenceClassification;
}
}  // namespace

std::unique_ptr<model::BertModel> load_classifier(const fs::path& dir, uint64_t head_seed,
                                                  std::vector<std::string>* initialised, kernels::Device device) {
  model::PretrainedTensors pt = model::load_pretrained_tensors(dir);
  require_finite(pt.tensors, pt.weights_file.string());
  const model::Task task = classifier_task(pt.config);
  auto m = std::make_unique<model::BertModel>(pt.config, task, device, model::Init::Zeros);  // loaded next
  auto report = m->load_state_dict(pt.tensors, head_seed);
  if (initialised) *initialised = report.initialised;
  return m;
}

namespace {
// The int8 linears' names of the model's family (quant::LayerLinears from model::encoder_names).
quant::LayerLinears int8_layer_linears(const model::BertConfig& config) {
  const model::EncoderNames n = model::encoder_names(config);
  quant::LayerLinears l;
  l.layer_prefix = n.layer_prefix;
  l.query = n.query, l.key = n.key, l.value = n.value;
  l.attn_out = n.attn_out, l.ffn_in = n.ffn_in, l.ffn_out = n.ffn_out;
  return l;
}

// Binds each layer's fused QKV (the query weight pointer starts the fused [3H, H]
// buffer), attention output, intermediate and output dense, in encoder_int8_linears'
// order. The last layer's [CLS]-only forward (BertModel::set_last_layer_cls_only) splits
// its QKV into the query rows ([H, H] at the same pointer) and the key+value rows
// ([2H, H] at row H): bound too.
// The binding is keyed by the pointer the model passes to linear_forward: its own
// parameter memory (params() + offset), not a host view of it (state_dict).
std::unique_ptr<kernels::Int8Binding> bind_int8(const model::BertModel& m,
                                                std::vector<kernels::QuantizedLinear> linears) {
  std::map<std::string, const float*> by_name;
  for (const auto& p : m.param_info()) by_name[p.name] = m.params() + p.offset;
  auto binding = std::make_unique<kernels::Int8Binding>();
  const int layers = m.config().num_hidden_layers, H = m.config().hidden_size;
  const model::EncoderNames n = model::encoder_names(m.config());
  for (int l = 0; l < layers; ++l) {
    const std::string p = n.layer(l);
    const float* qkv = by_name.at(p + n.query + ".weight");
    if (l == layers - 1) {
      const auto& fused = linears.at(4 * l);
      binding->bind(qkv, quant::slice_rows(fused, 0, H));
      binding->bind(qkv + size_t(H) * H, quant::slice_rows(fused, H, 3 * H));
    }
    const char* modules[] = {n.query, n.attn_out, n.ffn_in, n.ffn_out};
    for (int j = 0; j < 4; ++j)
      binding->bind(by_name.at(p + modules[j] + ".weight"), std::move(linears.at(4 * l + j)));
  }
  return binding;
}

InferenceModel load_int8_dir(const fs::path& dir) {
  auto config = model::BertConfig::load(dir);
  const model::Task task = classifier_task(config);
  InferenceModel r;
  r.model = std::make_unique<model::BertModel>(config, task, kernels::Device::CPU, model::Init::Zeros);  // loaded next
  auto int8 = quant::read_int8_safetensors(dir / "model.safetensors");
  require_finite(int8.fp32, (dir / "model.safetensors").string());  // a NaN scale dequantizes to NaN
  auto report = r.model->load_state_dict(int8.fp32, 42);
  if (!report.initialised.empty())
    throw Error(dir.string() + ": int8 model lacks " + report.initialised.front() + " (quantize a classifier)");
  r.int8 = bind_int8(*r.model, quant::encoder_int8_linears(int8, config.num_hidden_layers, int8_layer_linears(config)));
  return r;
}

}  // namespace

InferenceModel load_inference_model(const fs::path& dir, bool int8, kernels::Device device) {
  const bool int8_dir = quant::is_int8_model_dir(dir);
  if ((int8 || int8_dir) && device != kernels::Device::CPU)
    throw Error(std::string(int8_dir ? dir.string() + ": an int8 model" : "--int8") +
                " runs on the CPU only (the int8 kernels have no " + kernels::device_name(device) +
                " backend); use --device cpu" + (int8_dir ? ", or the fp32 model on " + std::string(kernels::device_name(device)) : ""));
  // An int8 model ignores --precision: its int8 linears multiply in int8, and the rest (pooler,
  // head) stays fp32 as `bertune quantize` measured it.
  if (int8 || int8_dir) kernels::set_precision(kernels::Device::CPU, kernels::Precision::FP32);
  if (int8_dir) return load_int8_dir(dir);
  InferenceModel r;
  r.model = load_classifier(dir, /*head_seed=*/42, &r.initialised, device);
  if (int8) {
    quant::Int8Model m;
    for (const auto& t : r.model->state_dict())
      if (quant::is_quantized_weight(t.name, t.shape))
        m.int8[t.name] = kernels::quantize_linear(t.data, static_cast<int>(t.shape[0]), static_cast<int>(t.shape[1]));
    r.int8 = bind_int8(*r.model, quant::encoder_int8_linears(m, r.model->config().num_hidden_layers,
                                                             int8_layer_linears(r.model->config())));
  }
  return r;
}

model::PretrainedTensors load_weights_to_train(const std::string& dir, const std::string& purpose) {
  if (quant::is_int8_model_dir(dir))
    throw Error(dir + " is an int8 model written by `bertune quantize`; " + purpose +
                " needs the fp32 model it was made from");
  return model::load_pretrained_tensors(dir);
}

fs::path default_tokenizer_dir() { return shared_path("models/klue-bert-base"); }

fs::path tokenizer_dir_for(const fs::path& model_dir, const std::string& fallback) {
  if (!fallback.empty()) return fallback;
  if (text::is_tokenizer_dir(model_dir)) return model_dir;
  return default_tokenizer_dir();
}

text::Tokenizer load_tokenizer_for(const fs::path& model_dir, const std::string& fallback) {
  return text::Tokenizer::load(tokenizer_dir_for(model_dir, fallback));
}

}  // namespace bertune::infer
