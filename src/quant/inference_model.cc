#include "quant/inference_model.h"

#include <map>

#include "model/config.h"
#include "quant/int8_model.h"
#include "train/evaluate.h"
#include "util/error.h"

namespace bertune::quant {
namespace fs = std::filesystem;

kernels::QuantizedLinear slice_rows(const kernels::QuantizedLinear& w, int begin, int end) {
  if (begin < 0 || end > w.out || begin >= end)
    throw Error("quant::slice_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                std::to_string(w.out));
  kernels::QuantizedLinear s;
  s.in = w.in;
  s.out = end - begin;
  s.q.assign(w.q.begin() + ptrdiff_t(begin) * w.in, w.q.begin() + ptrdiff_t(end) * w.in);
  s.scale.assign(w.scale.begin() + begin, w.scale.begin() + end);
  kernels::pack_quantized_linear(s);
  return s;
}

namespace {

// Binds each layer's fused QKV (the query weight pointer starts the fused [3H, H]
// buffer), attention output, intermediate and output dense, in encoder_int8_linears'
// order. The last layer's classifier-only forward splits its QKV into the query rows
// ([H, H] at the same pointer) and the key+value rows ([2H, H] at row H): bound too.
// The binding is keyed by the pointer the model passes to linear_forward: its own
// parameter memory (params() + offset), not a host view of it (state_dict).
std::unique_ptr<kernels::Int8Binding> bind_int8(const model::BertModel& m,
                                                std::vector<kernels::QuantizedLinear> linears) {
  std::map<std::string, const float*> by_name;
  for (const auto& p : m.param_info()) by_name[p.name] = m.params() + p.offset;
  auto binding = std::make_unique<kernels::Int8Binding>();
  const int layers = m.config().num_hidden_layers, H = m.config().hidden_size;
  for (int l = 0; l < layers; ++l) {
    const std::string p = "bert.encoder.layer." + std::to_string(l) + ".";
    const float* qkv = by_name.at(p + "attention.self.query.weight");
    if (l == layers - 1) {
      const auto& fused = linears.at(4 * l);
      binding->bind(qkv, slice_rows(fused, 0, H));
      binding->bind(qkv + size_t(H) * H, slice_rows(fused, H, 3 * H));
    }
    const char* names[] = {"attention.self.query.weight", "attention.output.dense.weight",
                           "intermediate.dense.weight", "output.dense.weight"};
    for (int j = 0; j < 4; ++j) binding->bind(by_name.at(p + names[j]), std::move(linears.at(4 * l + j)));
  }
  return binding;
}

InferenceModel load_int8_dir(const fs::path& dir) {
  auto config = model::BertConfig::load(dir);
  config.architectures = {"BertForSequenceClassification"};
  InferenceModel r;
  r.model = std::make_unique<model::BertModel>(config, model::Task::SequenceClassification,
                                                kernels::Device::CPU, model::Init::Zeros);  // loaded next
  auto int8 = read_int8_safetensors(dir / "model.safetensors");
  auto report = r.model->load_state_dict(int8.fp32, 42);
  if (!report.initialised.empty())
    throw Error(dir.string() + ": int8 model lacks " + report.initialised.front() + " (quantize a classifier)");
  r.int8 = bind_int8(*r.model, encoder_int8_linears(int8, config.num_hidden_layers));
  return r;
}

}  // namespace

InferenceModel load_inference_model(const fs::path& dir, bool int8, kernels::Device device) {
  const bool int8_dir = is_int8_model_dir(dir);
  if ((int8 || int8_dir) && device != kernels::Device::CPU)
    throw Error(std::string(int8_dir ? dir.string() + ": an int8 model" : "--int8") +
                " runs on the CPU only (the int8 kernels have no " + kernels::device_name(device) +
                " backend); use --device cpu" + (int8_dir ? ", or the fp32 model on " + std::string(kernels::device_name(device)) : ""));
  if (int8_dir) return load_int8_dir(dir);
  InferenceModel r;
  r.model = train::load_classifier(dir, /*head_seed=*/42, &r.initialised, nullptr, device);
  if (int8) {
    Int8Model m;
    for (const auto& t : r.model->state_dict())
      if (is_quantized_weight(t.name, t.shape))
        m.int8[t.name] = kernels::quantize_linear(t.data, static_cast<int>(t.shape[0]), static_cast<int>(t.shape[1]));
    r.int8 = bind_int8(*r.model, encoder_int8_linears(m, r.model->config().num_hidden_layers));
  }
  return r;
}

}  // namespace bertune::quant
