#pragma once
// The Hugging Face golden cases of shared/golden/bert and the BERT sequence classifiers of
// shared/golden/families (sentence pairs, regression, multi-label; transformers 4.30.2, torch 1.13.1) as
// checks on a BertModel on any device: tests/test_model.cc runs them on the CPU,
// tests/test_gpu_golden.cc on CUDA. Every check reads the model through its host-readable
// accessors (logits, hidden_state, state_dict, grad_dict), which copy off a GPU.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <map>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/bert.h"
#include "numeric_compare.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "util/paths.h"

namespace golden_bert {

using bertune::TensorMap;
using bertune::model::Batch;
using bertune::model::BertConfig;
using bertune::model::BertModel;

inline std::filesystem::path golden(const std::string& name) { return bertune::shared_path("golden/bert/" + name); }

inline nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

inline TensorMap read_tensors(const std::string& name) { return bertune::io::read_safetensors(golden(name)); }

// A classification golden case (a label per sequence, or per token): its inputs, and where
// its files lie.
struct Golden {
  BertConfig config;
  bertune::model::Task task = bertune::model::Task::SequenceClassification;
  std::vector<std::vector<int32_t>> sequences;
  std::vector<std::vector<int32_t>> token_type_ids;  // per sequence (sentence pairs); empty: all 0
  std::vector<int32_t> labels;  // single-label classification
  std::vector<float> targets;   // regression, multi-label: float labels [B] or [B, num_labels]
  std::vector<std::vector<int32_t>> token_labels;  // token classification: per sequence, -100 ignored
  std::filesystem::path dir;    // file NAME of the case is dir / (prefix + NAME)
  std::string prefix;

  std::filesystem::path file(const std::string& name) const { return dir / (prefix + name); }
  TensorMap tensors(const std::string& name) const { return bertune::io::read_safetensors(file(name)); }
  // The batch, labelled or not: packed (pad_to < 0), padded to the longest (0) or to pad_to;
  // token types of pad rows 0, as HF pads them.
  Batch batch(int pad_to, bool labelled = true) const {
    const std::vector<int32_t> l = labelled ? labels : std::vector<int32_t>{};
    Batch b = pad_to < 0 ? Batch::packed(sequences, l) : Batch::padded(sequences, pad_to, config.pad_token_id, l);
    if (labelled) b.targets = targets;
    if (labelled && !token_labels.empty()) {  // a label per row, -100 on pad rows
      b.labels.assign(b.input_ids.size(), -100);
      for (int s = 0; s < b.num_sequences(); ++s)
        std::copy(token_labels[s].begin(), token_labels[s].end(), b.labels.begin() + b.offsets[s]);
    }
    if (token_type_ids.empty()) return b;
    b.token_type_ids.assign(b.input_ids.size(), 0);
    for (int s = 0; s < b.num_sequences(); ++s)
      std::copy(token_type_ids[s].begin(), token_type_ids[s].end(), b.token_type_ids.begin() + b.offsets[s]);
    return b;
  }
};

inline Golden classification_inputs() {
  Golden g;
  g.dir = bertune::shared_path("golden/bert");
  g.prefix = "tiny_";
  g.config = BertConfig::load(g.file("config.json"));
  auto j = read_json(g.file("inputs.json"));
  g.sequences = j["sequences"].get<std::vector<std::vector<int32_t>>>();
  if (j["token_type_ids"].is_array())  // shared/golden/bert writes "all zero"
    g.token_type_ids = j["token_type_ids"].get<std::vector<std::vector<int32_t>>>();
  g.labels = j["labels"].get<std::vector<int32_t>>();
  return g;
}

// shared/golden/families/NAME (bert_pair, bert_regression, bert_multilabel, bert_tokencls,
// roberta_seqcls, electra_seqcls, distilbert_seqcls): integer labels (single-label), or float
// labels, one per sequence or a 0/1 list per sequence, flattened row-major; a label per token
// for BertForTokenClassification; the token types of sentence pairs.
inline Golden family_inputs(const std::string& name) {
  Golden g;
  g.dir = bertune::shared_path("golden/families/" + name);
  g.config = BertConfig::load(g.file("config.json"));
  auto j = read_json(g.file("inputs.json"));
  g.sequences = j["sequences"].get<std::vector<std::vector<int32_t>>>();
  if (j["token_type_ids"].is_array()) g.token_type_ids = j["token_type_ids"].get<std::vector<std::vector<int32_t>>>();
  if (g.config.architectures == std::vector<std::string>{"BertForTokenClassification"}) {
    g.task = bertune::model::Task::TokenClassification;
    g.token_labels = j["labels"].get<std::vector<std::vector<int32_t>>>();
    return g;
  }
  for (const auto& l : j["labels"]) {
    if (l.is_number_integer())
      g.labels.push_back(l.get<int32_t>());
    else if (l.is_array())
      for (const auto& v : l) g.targets.push_back(v.get<float>());
    else
      g.targets.push_back(l.get<float>());
  }
  return g;
}

// What a comparison with the golden files allows. The defaults are the fp32 bounds every
// device is held to; bf16_tolerance() below the bf16 ones.
struct Tolerance {
  float logits_abs = 1e-4f;     // logits, max |ours - HF|
  float hidden_abs = 1e-4f;     // hidden states (LayerNorm outputs, O(1)), max |ours - HF|
  float loss_rel = 1e-5f;       // the loss, relative
  float grad_rel = 1e-3f;       // each gradient tensor: max |ours - HF| <= grad_rel * max |HF|
  float zero_grad_abs = 1e-7f;  // gradients zero in exact arithmetic (key biases): absolute
};

// The bf16 bounds (--precision bf16, on CUDA and on the CPU; tests/test_gpu_golden.cc's header
// says where they come from).
inline Tolerance bf16_tolerance() {
  return {.logits_abs = 5e-3f, .hidden_abs = 1.5e-2f, .loss_rel = 2e-3f, .grad_rel = 3e-2f, .zero_grad_abs = 1e-5f};
}
inline Tolerance bf16_masked_lm_tolerance() {  // its logits are larger (the tied decoder over the vocabulary)
  Tolerance t = bf16_tolerance();
  t.logits_abs = 2e-2f;
  return t;
}

using numeric_compare::max_abs;
using numeric_compare::max_abs_diff;

// Rows of a padded activation that hold real tokens, packed end to end.
inline std::vector<float> real_rows(const float* x, const Batch& b, int H) {
  std::vector<float> out;
  for (int s = 0; s < b.num_sequences(); ++s)
    out.insert(out.end(), x + size_t(b.offsets[s]) * H, x + size_t(b.offsets[s] + b.lengths[s]) * H);
  return out;
}

// For every token row of the batch, its index among the real (non-pad) rows, or -1.
inline std::vector<int> real_row_of_token(const Batch& b) {
  std::vector<int> real(b.num_rows(), -1);
  int next = 0;
  for (int s = 0; s < b.num_sequences(); ++s)
    for (int i = 0; i < b.lengths[s]; ++i) real[b.offsets[s] + i] = next++;
  return real;
}

// The logits against HF's: a sequence head's one row per sequence; a per-token head's rows
// (logit_token_rows: the labelled tokens, or every row without labels) each against HF's
// row of that token (HF's logits: every real token, sequences concatenated).
inline void expect_logits(const BertModel& m, const Batch& batch, const TensorMap& ref, const char* mode,
                          const Tolerance& tol = {}) {
  const auto& logits = ref.at("logits");
  const int C = m.logits_cols();
  float err = 0.f;
  if (m.task() == bertune::model::Task::SequenceClassification) {
    ASSERT_EQ(size_t(m.logits_rows()) * C, logits.data.size());
    err = max_abs_diff(m.logits(), logits.data.data(), logits.data.size());
  } else {
    // The head computes the labelled rows only, or every row (pad rows too) without labels.
    const auto& token_rows = m.logit_token_rows();
    const std::vector<int> real = real_row_of_token(batch);
    const bool labelled = !batch.labels.empty();
    const int want = labelled ? static_cast<int>(std::count_if(batch.labels.begin(), batch.labels.end(),
                                                               [](int32_t l) { return l != -100; }))
                              : batch.num_rows();
    ASSERT_EQ(m.logits_rows(), want) << mode;
    ASSERT_EQ(static_cast<int>(token_rows.size()), want) << mode;
    size_t compared = 0;
    for (size_t r = 0; r < token_rows.size(); ++r) {
      if (labelled) {
        ASSERT_NE(batch.labels[token_rows[r]], -100) << mode;
      }
      if (real[token_rows[r]] < 0) continue;  // a pad row: HF's logits have none
      const float* hf = logits.data.data() + size_t(real[token_rows[r]]) * C;
      err = std::max(err, max_abs_diff(m.logits() + r * C, hf, C));
      ++compared;
    }
    if (!labelled) {
      ASSERT_EQ(compared * C, logits.data.size()) << mode;
    }
  }
  std::printf("[%s] logits max |err| = %.3g over %d rows\n", mode, err, m.logits_rows());
  EXPECT_LE(err, tol.logits_abs) << mode;
}

inline void expect_logits_and_hidden(const BertModel& m, const Batch& batch, const TensorMap& ref, const char* mode,
                                     const Tolerance& tol = {}) {
  const int H = m.config().hidden_size;
  expect_logits(m, batch, ref, mode, tol);
  for (int i = 0; i <= m.config().num_hidden_layers; ++i) {
    const auto& h = ref.at("hidden_states." + std::to_string(i));
    auto ours = real_rows(m.hidden_state(i), batch, H);
    ASSERT_EQ(ours.size(), h.data.size());
    float e = max_abs_diff(ours.data(), h.data.data(), ours.size());
    std::printf("[%s] hidden_states.%d max |err| = %.3g\n", mode, i, e);
    EXPECT_LE(e, tol.hidden_abs) << mode << " hidden_states." << i;
  }
}

inline void expect_loss(float loss, const TensorMap& ref, const char* mode, const Tolerance& tol = {}) {
  const float want = ref.at("loss").data[0];
  std::printf("[%s] loss %.8f vs %.8f rel err %.3g\n", mode, loss, want, std::fabs(loss - want) / want);
  EXPECT_NEAR(loss, want, tol.loss_rel * want) << mode;
}

// Every gradient in `ref`: max |ours - ref| <= grad_rel * max |ref|. Key biases get a
// mathematically zero gradient (softmax ignores a per-row shift); both sides hold fp32
// noise there (~1e-10), checked in absolute terms instead.
inline void expect_grads(const BertModel& m, const TensorMap& ref, const char* mode, const Tolerance& tol = {}) {
  float worst = 0.f;
  std::string worst_name;
  std::map<std::string, const float*> ours;
  for (const auto& t : m.grad_dict()) ours[t.name] = t.data;
  for (const auto& [name, t] : ref) {
    const auto& p = m.param(name);
    ASSERT_EQ(p.shape, t.shape) << name;
    const float* g = ours.at(name);
    float scale = max_abs(t.data.data(), t.data.size());
    float err = max_abs_diff(g, t.data.data(), t.data.size());
    if (scale < 1e-7f) {
      std::printf("[%s] grad %-55s zero in exact arithmetic: max|err| %.3g\n", mode, name.c_str(), err);
      EXPECT_LE(err, tol.zero_grad_abs) << mode << " " << name;
      continue;
    }
    float rel = err / scale;
    if (rel > worst) worst = rel, worst_name = name;
    std::printf("[%s] grad %-55s max|err| %.3g  rel-to-max %.3g\n", mode, name.c_str(), err, rel);
    EXPECT_LE(err, tol.grad_rel * scale) << mode << " " << name;
  }
  std::printf("[%s] worst gradient error relative to tensor max: %.3g (%s)\n", mode, worst, worst_name.c_str());
}

// A classification golden case on `device` (a label per sequence, or per token): a packed
// training forward (logits, every hidden state, loss) and its gradients; padded to the
// longest (16) and to 24 (the same logits and gradients, pad rows computed and masked); a
// training forward with the [CLS]-only last layer (on for a sequence head only); an
// inference forward without labels.
inline void expect_sequence_case(bertune::kernels::Device device, const Golden& g, const Tolerance& tol = {}) {
  BertModel m(g.config, g.task, device);
  auto report = m.load_state_dict(g.tensors("init.safetensors"));
  EXPECT_TRUE(report.initialised.empty());
  // Every hidden state, the last layer's included (the [CLS]-only training saving has its
  // own golden checks in test_model.cc); the inference forward below uses the saving.
  m.set_last_layer_cls_only(false);
  auto ref = g.tensors("forward.safetensors");
  auto grads = g.tensors("grads.safetensors");
  for (int pad_to : {-1, 0, 24}) {  // packed, longest (16), a fixed max_length
    Batch batch = g.batch(pad_to);
    const std::string mode = pad_to < 0 ? "packed" : pad_to == 0 ? "padded-longest" : "padded-24";
    float loss = m.forward(batch, /*train=*/true);
    expect_logits_and_hidden(m, batch, ref, mode.c_str(), tol);
    expect_loss(loss, ref, mode.c_str(), tol);
    m.zero_grad();
    m.backward();
    expect_grads(m, grads, mode.c_str(), tol);
  }
  m.set_last_layer_cls_only(true);
  expect_loss(m.forward(g.batch(-1), /*train=*/true), ref, "cls-only", tol);
  m.zero_grad();
  m.backward();
  expect_grads(m, grads, "cls-only", tol);
  // inference's [CLS]-only last layer (its own CUDA kernel)
  float loss = m.forward(g.batch(-1, /*labelled=*/false), /*train=*/false);  // no labels: no loss
  EXPECT_TRUE(std::isnan(loss));
  expect_logits(m, g.batch(-1, /*labelled=*/false), ref, "inference", tol);
}

inline void expect_classification_case(bertune::kernels::Device device, const Tolerance& tol = {}) {
  expect_sequence_case(device, classification_inputs(), tol);
}

// The masked-LM golden case, packed then padded to the longest: logits of the labelled
// rows, loss, every gradient, and the unlabelled (inference) forward over all rows.
inline void expect_masked_lm_case(bertune::kernels::Device device, const Tolerance& tol = {}) {
  using bertune::model::Task;
  BertConfig config = BertConfig::load(golden("tiny_config.json"));
  auto j = read_json(golden("tiny_mlm_inputs.json"));
  auto seqs = j["input_sequences"].get<std::vector<std::vector<int32_t>>>();
  auto labels = j["labels"].get<std::vector<std::vector<int32_t>>>();
  auto init = read_tensors("tiny_mlm_init.safetensors");
  auto ref = read_tensors("tiny_mlm_forward.safetensors");
  auto grads = read_tensors("tiny_mlm_grads.safetensors");
  BertModel m(config, Task::MaskedLM, device);
  auto report = m.load_state_dict(init);
  EXPECT_TRUE(report.initialised.empty());
  EXPECT_TRUE(report.unused.empty()) << report.unused.front();
  for (int pad_to : {-1, 0}) {  // packed, then padded to the longest
    Batch batch = pad_to < 0 ? Batch::packed(seqs) : Batch::padded(seqs, 0, 0);
    for (int s = 0; s < batch.num_sequences(); ++s) {
      batch.labels.insert(batch.labels.end(), labels[s].begin(), labels[s].end());
      int pad = batch.offsets[s + 1] - batch.offsets[s] - batch.lengths[s];
      batch.labels.insert(batch.labels.end(), pad, -100);
    }
    const char* mode = pad_to < 0 ? "mlm-packed" : "mlm-padded";
    float loss = m.forward(batch, true);
    expect_logits(m, batch, ref, mode, tol);  // the labelled rows only
    expect_loss(loss, ref, mode, tol);
    m.zero_grad();
    m.backward();
    expect_grads(m, grads, mode, tol);
    // Without labels (inference) the head computes every row, as HF does.
    Batch unlabelled = batch;
    unlabelled.labels.clear();
    m.forward(unlabelled, false);
    expect_logits(m, unlabelled, ref, mode, tol);
  }
}

// Three steps of the trainer's own TrainStep (train/step.h) against the golden run of case
// g made with the same optimizer: torch.optim.AdamW (--optim adamw_torch, adamw.*) or
// transformers.AdamW (--optim adamw_hf, the default, tiny_adamw_hf.*). weights_abs bounds
// tensors with a real gradient; key biases follow fp32 noise (below).
// tiny_grad > 0: elements whose HF gradient (grads.safetensors) is nonzero and at most tiny_grad in size,
// near Adam's eps (1e-8), are held to noise_abs too: their update lr m / (sqrt(v) + eps) turns
// with the gradient's fp32 rounding (~1e-9 here) in both implementations.
inline void expect_three_adamw_steps(bertune::kernels::Device device, const Golden& g,
                                     bertune::train::AdamWVariant variant, const char* json_file,
                                     const char* weights_file, float weights_abs = 5e-6f, float noise_abs = 5e-5f,
                                     float tiny_grad = 0.f) {
  namespace train = bertune::train;
  auto steps = read_json(g.file(json_file));
  auto after = g.tensors(weights_file);
  BertModel m(g.config, g.task, device);
  m.load_state_dict(g.tensors("init.safetensors"));
  train::AdamW opt(m, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .variant = variant});
  train::TrainStep train_step(m, opt, {train::Schedule::Linear, 1e-3, 2, 10}, /*max_grad_norm=*/1.0);
  Batch batch = g.batch(-1);
  m.zero_grad();
  const char* tag = train::adamw_variant_name(variant);
  for (int step = 0; step < 3; ++step) {
    train::StepOutcome r = train_step.run(batch, step);  // norm 1.16 > 1 at steps 0-1: clipped
    ASSERT_TRUE(r.finite);
    double want_loss = steps["loss_before_each_step"][step];
    double want_lr = steps["lr_of_each_step"][step];
    double want_norm = steps["grad_norm_before_clip"][step];
    std::printf("[%s] step %d loss %.8f (ref %.8f) lr %.6g (ref %.6g) norm %.8f (ref %.8f)\n", tag, step, r.loss,
                want_loss, r.lr, want_lr, r.grad_norm, want_norm);
    EXPECT_NEAR(r.loss, want_loss, 1e-5 * want_loss);
    EXPECT_NEAR(r.lr, want_lr, 1e-12);
    EXPECT_NEAR(r.grad_norm, want_norm, 1e-5 * want_norm);
  }
  // Adam's first steps move every weight by about lr * sign(m): elements whose
  // true gradient is ~0 (key biases: softmax ignores them) follow fp32 noise
  // in both implementations, hence an absolute bound well below one update.
  float worst = 0.f, worst_real = 0.f;
  std::string worst_name, worst_real_name;
  const TensorMap grads = tiny_grad > 0.f ? g.tensors("grads.safetensors") : TensorMap{};
  size_t tiny = 0;
  for (const auto& p : m.state_dict()) {
    const auto& t = after.at(p.name);
    const bool noise_driven =
        p.name.find("key.bias") != std::string::npos || p.name.find("k_lin.bias") != std::string::npos;
    float err = 0.f;  // elements with a real gradient
    for (size_t k = 0; k < t.data.size(); ++k) {
      const float e = std::fabs(p.data[k] - t.data[k]);
      if (e > worst) worst = e, worst_name = p.name;
      const float gk = tiny_grad > 0.f ? std::fabs(grads.at(p.name).data[k]) : 0.f;
      if (gk > 0.f && gk <= tiny_grad) {  // an exact 0 (an unseen embedding row) decays only: exact
        ++tiny;
        EXPECT_LE(e, noise_abs) << tag << " " << p.name << "[" << k << "], gradient near eps";
        continue;
      }
      err = std::max(err, e);
    }
    if (!noise_driven && err > worst_real) worst_real = err, worst_real_name = p.name;
    EXPECT_LE(err, noise_driven ? noise_abs : weights_abs) << tag << " " << p.name;
  }
  std::printf("[%s] weights after 3 steps: worst max |err| %.3g in %s (one update ~1e-3); "
              "%.3g in %s among tensors with a real gradient; %zu elements with |gradient| <= %.3g\n",
              tag, worst, worst_name.c_str(), worst_real, worst_real_name.c_str(), tiny, tiny_grad);
}

// The same on the classification case of shared/golden/bert.
inline void expect_three_adamw_steps(bertune::kernels::Device device, bertune::train::AdamWVariant variant,
                                     const char* json_file, const char* weights_file, float weights_abs = 5e-6f,
                                     float noise_abs = 5e-5f) {
  expect_three_adamw_steps(device, classification_inputs(), variant, json_file, weights_file, weights_abs,
                           noise_abs);
}

}  // namespace golden_bert
