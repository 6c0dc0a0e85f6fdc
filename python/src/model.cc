// infer::Classifier for bertune.AutoModelFor{Sequence,Token}Classification
// (python/bertune/modeling.py): a model directory loaded as eval, predict and serve load
// it, run on padded numpy batches as HF's model(input_ids, attention_mask, token_type_ids).
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>
#include <pybind11/stl/filesystem.h>

#include "infer/classifier.h"
#include "infer/entities.h"
#include "infer/predictions.h"
#include "model/pretrained.h"
#include "native.h"
#include "text/tokenizer.h"
#include "train/options.h"
#include "util/error.h"

namespace bertune::python {

namespace {

using IntArray = py::array_t<int64_t, py::array::c_style | py::array::forcecast>;

struct Model {
  std::unique_ptr<infer::Classifier> classifier;
  std::filesystem::path dir;

  bool token_classifier() const { return classifier->model().task() == model::Task::TokenClassification; }
};

// The real tokens of each row of a right-padded [B, T] batch (attention_mask 1s, then 0s),
// packed as the model runs them.
model::Batch packed_batch(const IntArray& ids, const IntArray* mask, const IntArray* types) {
  if (ids.ndim() != 2) throw Error("input_ids: expected a [batch, length] array, got " + std::to_string(ids.ndim()) + " dimensions");
  const py::ssize_t B = ids.shape(0), T = ids.shape(1);
  if (B == 0 || T == 0) throw Error("input_ids: an empty batch [" + std::to_string(B) + ", " + std::to_string(T) + "]");
  for (const auto& [a, name] : {std::pair{mask, "attention_mask"}, std::pair{types, "token_type_ids"}})
    if (a && (a->ndim() != 2 || a->shape(0) != B || a->shape(1) != T))
      throw Error(std::string(name) + ": expected the shape of input_ids [" + std::to_string(B) + ", " +
                  std::to_string(T) + "]");
  model::Batch batch;
  batch.offsets.push_back(0);
  for (py::ssize_t b = 0; b < B; ++b) {
    py::ssize_t n = T;
    if (mask) {
      n = 0;
      while (n < T && mask->at(b, n) != 0) ++n;
      for (py::ssize_t t = n; t < T; ++t)
        if (mask->at(b, t) != 0)
          throw Error("attention_mask: row " + std::to_string(b) + " has a 1 after a 0; only right padding (HF's " +
                      "padding_side=\"right\") is supported");
    }
    if (n == 0) throw Error("attention_mask: row " + std::to_string(b) + " has no token");
    for (py::ssize_t t = 0; t < n; ++t) {
      batch.input_ids.push_back(static_cast<int32_t>(ids.at(b, t)));
      if (types) batch.token_type_ids.push_back(static_cast<int32_t>(types->at(b, t)));
    }
    batch.lengths.push_back(static_cast<int32_t>(n));
    batch.offsets.push_back(static_cast<int32_t>(batch.input_ids.size()));
  }
  return batch;
}

// Logits: [B, num_labels] for sequence classification, [B, T, num_labels] for token
// classification (0 at padding, as the padded rows' values mean nothing).
py::array_t<float> forward(Model& m, const IntArray& ids, std::optional<IntArray> mask, std::optional<IntArray> types) {
  model::Batch batch = packed_batch(ids, mask ? &*mask : nullptr, types ? &*types : nullptr);
  const py::ssize_t B = ids.shape(0), T = ids.shape(1), C = m.classifier->num_labels();
  const bool tokens = m.token_classifier();
  std::vector<py::ssize_t> shape = tokens ? std::vector<py::ssize_t>{B, T, C} : std::vector<py::ssize_t>{B, C};
  py::array_t<float> out(shape);
  float* o = out.mutable_data();
  {
    py::gil_scoped_release release;
    auto& model = m.classifier->model();
    for (const int32_t id : batch.input_ids)
      if (id < 0 || id >= model.config().vocab_size)
        throw Error("input_ids: id " + std::to_string(id) + " is outside the model's vocabulary (vocab_size " +
                    std::to_string(model.config().vocab_size) + ")");
    const int types = std::max(model.config().type_vocab_size, 1);  // none (DistilBERT): all 0
    for (const int32_t t : batch.token_type_ids)
      if (t < 0 || t >= types)
        throw Error("token_type_ids: " + std::to_string(t) + " is outside the model's type_vocab_size " +
                    std::to_string(types));
    model.forward(batch, /*train=*/false);
    const float* logits = model.logits();
    if (!tokens) {
      std::copy(logits, logits + B * C, o);
    } else {
      std::fill(o, o + B * T * C, 0.0f);
      for (py::ssize_t b = 0; b < B; ++b)
        std::copy(logits + batch.offsets[b] * C, logits + batch.offsets[b + 1] * C, o + b * T * C);
    }
  }
  return out;
}

// precision: what the process's GEMMs on that device multiply in from now on ("": the
// device's default), as --precision.
Model load(const std::filesystem::path& dir, const std::string& device, bool int8, int max_length,
           const std::string& tokenizer, const std::string& precision) {
  infer::ClassifierOptions options;
  options.tokenizer = tokenizer;
  options.device = device_from_name(device);
  std::optional<kernels::Precision> asked;
  if (!precision.empty()) asked = kernels::parse_precision(precision);
  kernels::set_precision(options.device, train::resolve_precision(options.device, asked));
  options.int8 = int8;
  options.untrained_head = infer::UntrainedHead::Warn;  // HF warns, and trains the fresh head
  if (max_length > 0) {
    options.max_length = max_length;
    options.max_length_given = true;
  }
  return Model{infer::Classifier::load(dir, options), dir};
}

// model.save_pretrained(dir): config.json, model.safetensors and the tokenizer's files.
void save(const Model& m, const std::filesystem::path& dir) {
  if (m.classifier->int8_weights())
    throw Error("save_pretrained: an int8 model is written by `bertune quantize`, not saved again");
  std::vector<std::filesystem::path> extra;
  for (const auto& f : text::tokenizer_files(infer::tokenizer_dir_for(m.dir))) extra.push_back(f);
  const auto& model = m.classifier->model();
  model::save_pretrained(dir, model.config(), model.state_dict(), extra);
}

// pipeline("text-classification")(texts): each text's labels with their scores, best first,
// the first top_k (0: every label), as predict and serve score them; a JSON array per text.
// function_to_apply: "" (the model's problem type decides), softmax, sigmoid or none.
std::string classify(Model& m, const std::vector<std::string>& texts, const std::vector<std::string>& pairs,
                     int top_k, const std::string& function_to_apply, int batch_size) {
  infer::Classifier& c = *m.classifier;
  if (m.token_classifier()) throw Error(m.dir.string() + " is a token classifier; text-classification needs a "
                                        "sequence classifier");
  const int k = c.num_labels();
  infer::ScoreFunction f = infer::default_score_function(c.problem_type(), k);
  if (!function_to_apply.empty()) {
    const auto named = infer::score_function_named(function_to_apply);
    if (!named) throw Error("function_to_apply: '" + function_to_apply + "' is not one of softmax|sigmoid|none");
    f = *named;
  }
  if (batch_size < 1) throw Error("batch_size: must be at least 1");
  const int vocab = c.model().config().vocab_size;
  if (static_cast<int>(c.tokenizer().vocab_size()) > vocab)  // ids past the embeddings: refused, as train does
    throw Error("the tokenizer has " + std::to_string(c.tokenizer().vocab_size()) + " tokens but the model's " +
                "vocab_size is " + std::to_string(vocab) + " (pass the model's own tokenizer)");
  const std::vector<infer::TokenIds> encoded = c.tokenize(texts, pairs);
  nlohmann::json out = nlohmann::json::array();
  for (size_t start = 0; start < encoded.size(); start += static_cast<size_t>(batch_size)) {
    std::vector<const infer::TokenIds*> batch;
    for (size_t i = start; i < std::min(encoded.size(), start + batch_size); ++i) batch.push_back(&encoded[i]);
    const std::vector<float> logits = c.logits(batch);
    for (size_t r = 0; r < batch.size(); ++r)
      out.push_back(infer::label_scores(logits.data() + r * k, c.label_names(), f, top_k > 0 ? top_k : k));
  }
  return out.dump();
}

// pipeline("token-classification")(texts): each text's entities, as predict and serve give them
// (infer/entities.h): a JSON array of records per text.
std::string entities(Model& m, const std::vector<std::string>& texts, const std::string& aggregation_strategy,
                     const std::vector<std::string>& ignore_labels, int batch_size) {
  infer::Classifier& c = *m.classifier;
  if (!m.token_classifier())
    throw Error(m.dir.string() + " is a sequence classifier; token-classification needs a token classifier");
  if (batch_size < 1) throw Error("batch_size: must be at least 1");
  infer::EntityOptions options;
  try {
    options.aggregation = infer::parse_aggregation(aggregation_strategy);
  } catch (const Error& e) {
    throw Error(std::string("aggregation_strategy: ") + e.what());
  }
  options.ignore_labels = ignore_labels;
  nlohmann::json out = nlohmann::json::array();
  for (const auto& spans : infer::predict_entities(c.model(), c.tokenizer(), texts, c.max_length(), batch_size, options))
    out.push_back(infer::spans_json(spans, options.aggregation));
  return out.dump();
}

}  // namespace

void bind_model(py::module_& m) {
  py::class_<Model>(m, "Model")
      .def_static("load", &load, py::arg("dir"), py::arg("device") = "cpu", py::arg("int8") = false,
                  py::arg("max_length") = 0, py::arg("tokenizer") = "", py::arg("precision") = "",
                  py::call_guard<py::gil_scoped_release>())
      .def("forward", &forward, py::arg("input_ids"), py::arg("attention_mask") = py::none(),
           py::arg("token_type_ids") = py::none())
      .def("classify", &classify, py::arg("texts"), py::arg("pairs"), py::arg("top_k"),
           py::arg("function_to_apply") = "", py::arg("batch_size") = 32, py::call_guard<py::gil_scoped_release>())
      .def("entities", &entities, py::arg("texts"), py::arg("aggregation_strategy") = "none",
           py::arg("ignore_labels") = std::vector<std::string>{"O"}, py::arg("batch_size") = 32,
           py::call_guard<py::gil_scoped_release>())
      .def("save_pretrained", &save, py::arg("dir"), py::call_guard<py::gil_scoped_release>())
      .def_property_readonly("config_json", [](const Model& m) { return m.classifier->model().config().to_json().dump(); })
      .def_property_readonly("token_classifier", &Model::token_classifier)
      .def_property_readonly("num_labels", [](const Model& m) { return m.classifier->num_labels(); })
      .def_property_readonly("label_names", [](const Model& m) { return m.classifier->label_names(); })
      .def_property_readonly("int8", [](const Model& m) { return m.classifier->int8_weights(); })
      .def_property_readonly("device", [](const Model& m) { return std::string(kernels::device_name(m.classifier->model().device())); })
      .def_property_readonly("dir", [](const Model& m) { return m.dir; });
}

}  // namespace bertune::python
