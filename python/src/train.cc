// The training side for bertune.TrainingArguments and bertune.Trainer
// (python/bertune/training.py): THE options table (train/options.h), the run of
// `bertune train` (train::run_training) watched by the Python callbacks, and the evaluation
// of a model directory on a dataset as `bertune eval` runs it.
#include <csignal>
#include <optional>
#include <string>
#include <vector>

#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include "data/dataset.h"
#include "data/tagged.h"
#include "infer/batching.h"
#include "infer/classifier.h"
#include "infer/evaluate.h"
#include "infer/tagged.h"
#include "train/distributed.h"
#include "native.h"
#include "train/options.h"
#include "train/prepare.h"
#include "train/trainer.h"
#include "util/error.h"

namespace bertune::python {

namespace {

using Json = nlohmann::json;

// TrainingArguments(**kwargs) as options: the table's keys (and HF's older aliases).
train::TrainOptions options_from(const std::string& kwargs_json) {
  train::TrainOptions o;
  train::apply_options_json(o, Json::parse(kwargs_json), "TrainingArguments");
  train::validate(o);
  return o;
}

// TrainingArguments(**kwargs) checked as `bertune train` checks its flags, before the Trainer
// names the model: every option as JSON.
std::string resolve_options(const std::string& kwargs_json) {
  train::TrainOptions o;
  train::apply_options_json(o, Json::parse(kwargs_json), "TrainingArguments");
  const bool model_given = !o.model.empty() || !o.model_config.empty();
  if (!model_given) o.model = "model";  // the Trainer's (model=...), checked when it runs
  train::validate(o);
  if (!model_given) o.model.clear();
  return o.to_json().dump();
}

// The table, for TrainingArguments' names, defaults and help: (key, default as JSON, help, type).
py::list option_fields() {
  static const train::TrainOptions defaults;
  py::list out;
  for (const auto& f : train::train_option_fields())
    out.append(py::make_tuple(f.key, f.get(defaults).dump(), f.help, f.type_name));
  return out;
}

// Evaluation arrays as transformers' Trainer gives them to compute_metrics: logits [n, k] and
// labels [n]; token classification (positions > 0) logits [n, positions, k] and labels
// [n, positions] (-100 where a position has no label).
std::pair<py::array_t<float>, py::array_t<int32_t>> eval_arrays(const std::vector<float>& logits,
                                                               const std::vector<int32_t>& labels, size_t positions) {
  if (positions == 0) {
    const py::ssize_t n = static_cast<py::ssize_t>(labels.size());
    return {py::array_t<float>({n, n ? static_cast<py::ssize_t>(logits.size()) / n : py::ssize_t(0)}, logits.data()),
            py::array_t<int32_t>(n, labels.data())};
  }
  const auto t = static_cast<py::ssize_t>(positions);
  const py::ssize_t n = static_cast<py::ssize_t>(labels.size()) / t;
  return {py::array_t<float>({n, t, n ? static_cast<py::ssize_t>(logits.size()) / (n * t) : py::ssize_t(0)},
                             logits.data()),
          py::array_t<int32_t>({n, t}, labels.data())};
}

// The Python callbacks, called with the GIL at each event of the loop. `target` has
// on_step_end(step), on_log(json), on_evaluate(json, logits, labels) -> json | None,
// on_epoch_end(epoch), on_save(path), each answering whether to stop; wants_logits.
class PythonObserver : public train::LoopObserver {
 public:
  explicit PythonObserver(py::object target) : target_(std::move(target)) {
    py::gil_scoped_acquire gil;
    wants_logits_ = target_.attr("wants_logits").cast<bool>();
  }

  bool on_step_end(int64_t step) override {
    return call([&] {
      // Ctrl-C: Python's handler only marks the signal; it runs here, at a step boundary.
      if (PyErr_CheckSignals() != 0) throw py::error_already_set();
      return target_.attr("on_step_end")(step).cast<bool>();
    });
  }
  bool on_log(const Json& record) override {
    return call([&] { return target_.attr("on_log")(record.dump()).cast<bool>(); });
  }
  bool wants_eval_logits() const override { return wants_logits_; }
  bool on_evaluate(Json& metrics, const std::vector<float>& logits, const std::vector<int32_t>& labels,
                   size_t positions) override {
    return call([&] {
      auto [l, y] = eval_arrays(logits, labels, positions);
      py::tuple answer = target_.attr("on_evaluate")(metrics.dump(), l, y);
      metrics = Json::parse(answer[0].cast<std::string>());
      return answer[1].cast<bool>();
    });
  }
  bool on_epoch_end(double epoch) override {
    return call([&] { return target_.attr("on_epoch_end")(epoch).cast<bool>(); });
  }
  bool on_save(const std::filesystem::path& checkpoint) override {
    return call([&] { return target_.attr("on_save")(checkpoint.string()).cast<bool>(); });
  }

 private:
  // A callback with the GIL. KeyboardInterrupt (Ctrl-C, in a callback or between steps) stops
  // the run as SIGINT does in `bertune train`: at this step boundary, naming the last checkpoint.
  template <class Fn>
  bool call(Fn fn) {
    py::gil_scoped_acquire gil;
    try {
      return fn();
    } catch (py::error_already_set& e) {
      if (!e.matches(PyExc_KeyboardInterrupt)) throw;
      throw Interrupted("interrupted by KeyboardInterrupt", SIGINT);
    }
  }

  py::object target_;
  bool wants_logits_ = false;
};

// Trainer.train(): `bertune train` with these options; datasets in memory as JSONL text.
// Returns {summary, log_history, best_model_checkpoint, final_model_dir}.
std::string train_run(const std::string& kwargs_json, std::optional<std::string> train_rows,
                      std::optional<std::string> eval_rows, std::optional<std::string> test_rows, py::object observer) {
  std::optional<PythonObserver> watcher;
  if (!observer.is_none()) watcher.emplace(observer);
  Json out;
  {
    py::gil_scoped_release release;
    train::TrainOptions o = options_from(kwargs_json);
    o.train_rows = std::move(train_rows);
    o.eval_rows = std::move(eval_rows);
    o.test_rows = std::move(test_rows);
    train::TrainResult r = train::run_training(o, stdout, watcher ? &*watcher : nullptr);
    out = {{"summary", r.summary.to_json()},
           {"log_history", r.state.log_history},
           {"final_model_dir", r.final_model_dir.string()},
           {"best_model_checkpoint", r.state.best_model_checkpoint ? Json(*r.state.best_model_checkpoint) : Json()}};
  }
  return out.dump();
}

struct Evaluation {
  std::string record;  // HF's metrics under `prefix` (eval_loss, eval_accuracy, ...), JSON
  py::array_t<float> logits;    // [n, k]; token classification [n, positions, k]
  py::array_t<int32_t> labels;  // [n], -1 for unlabelled examples; token classification [n, positions], -100 unlabelled
  bool labelled = false;        // every example has its label (or tags): metrics were computed
};

// Trainer.evaluate() / predict(): the model directory on a dataset (rows in memory, else
// the file), batched as the trainer's evaluation batches (the data's order).
Evaluation evaluate(const std::string& model_dir, const std::string& kwargs_json, std::optional<std::string> rows,
                    const std::string& file, const std::string& prefix) {
  infer::EvalResult er;
  infer::TokenizedData t;
  bool tagged = false;
  {
    py::gil_scoped_release release;
    const train::TrainOptions o = options_from(kwargs_json);
    kernels::set_precision(o.device, train::resolve_precision(o.device, o.precision));
    infer::ClassifierOptions co;
    co.tokenizer = o.tokenizer;
    co.max_length = o.max_length;
    co.device = o.device;
    co.untrained_head = infer::UntrainedHead::Warn;
    auto c = infer::Classifier::load(model_dir, co);
    tagged = c->model().task() == model::Task::TokenClassification;
    if (tagged) {  // tagged sentences (JSONL rows {"tokens", "tags"}, else the file)
      const data::TaggedDataset d = train::read_tagged_split(file, rows);
      if (d.size() == 0) throw Error(file + ": no sentences");
      if (d.sentences.front().tags.empty())
        throw Error(file + ": sentences without tags; Trainer.evaluate/predict of a token classifier compare its "
                    "tags with the true ones (pipeline(\"ner\") tags untagged text)");
      t = infer::tokenize_tagged(d, c->tokenizer(), c->max_length(), infer::label_ids(c->model().config()));
    } else {
      data::ReadOptions ro;
      ro.text_column = o.text_column;
      ro.text_pair_column = o.text_pair_column;
      ro.label_column = o.label_column;
      infer::set_label_options(ro, c->model().config());
      const data::Dataset d = train::read_split(file, rows, ro);
      if (d.size() == 0) throw Error(file + ": no examples");
      t = infer::tokenize(d, c->tokenizer(), c->max_length(), o.threads);
    }
    er = infer::evaluate(c->model(), t, o.per_device_eval_batch_size, o.padding, c->max_length(),
                         c->tokenizer().pad_id(), /*keep_logits=*/true);
  }
  if (tagged) {  // transformers' shapes: logits [n, positions, k], labels [n, positions] (-100: none)
    auto [logits, labels] = eval_arrays(er.logits, infer::padded_token_labels(t, er.positions), er.positions);
    return {er.record(prefix).dump(), std::move(logits), std::move(labels), true};
  }
  auto [logits, labels] = eval_arrays(er.logits, t.labels, 0);
  Json record = t.labelled() ? er.record(prefix) : Json{{prefix + "runtime", er.runtime}};
  return {record.dump(), std::move(logits), std::move(labels), t.labelled()};
}

}  // namespace

void bind_train(py::module_& m) {
  m.def("mpi_built", &train::mpi_built, "Whether this build trains across processes (mpirun): linked with MPI.");
  m.def("option_fields", &option_fields, "The training options table: (key, default JSON, help, type) each.");
  m.def("resolve_options", &resolve_options, py::arg("kwargs_json"),
        "Every option after TrainingArguments' checks, as JSON (training_args.json).");
  m.def("train", &train_run, py::arg("kwargs_json"), py::arg("train_rows"), py::arg("eval_rows"),
        py::arg("test_rows"), py::arg("observer"));
  py::class_<Evaluation>(m, "Evaluation")
      .def_readonly("record", &Evaluation::record)
      .def_readonly("logits", &Evaluation::logits)
      .def_readonly("labelled", &Evaluation::labelled)
      .def_readonly("labels", &Evaluation::labels);
  m.def("evaluate", &evaluate, py::arg("model_dir"), py::arg("kwargs_json"), py::arg("rows"), py::arg("file"),
        py::arg("prefix"));
}

}  // namespace bertune::python
