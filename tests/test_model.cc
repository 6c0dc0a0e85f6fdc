// BERT forward/backward/optimizer against Hugging Face (transformers 4.30.2,
// torch 1.13.1) golden outputs in shared/golden/bert, plus finite-difference
// gradient checks of every layer type on a tiny random model.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <numeric>

#include <nlohmann/json.hpp>

#include "io/safetensors.h"
#include "model/bert.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "util/error.h"
#include "util/paths.h"

using namespace bertune;
using model::Batch;
using model::BertConfig;
using model::BertModel;
using model::Task;

namespace {

std::filesystem::path golden(const std::string& name) { return shared_path("golden/bert/" + name); }

nlohmann::json read_json(const std::filesystem::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

struct Golden {
  BertConfig config;
  std::vector<std::vector<int32_t>> sequences;
  std::vector<int32_t> labels;
};

Golden classification_inputs() {
  Golden g;
  g.config = BertConfig::load(golden("tiny_config.json"));
  auto j = read_json(golden("tiny_inputs.json"));
  g.sequences = j["sequences"].get<std::vector<std::vector<int32_t>>>();
  g.labels = j["labels"].get<std::vector<int32_t>>();
  return g;
}

float max_abs(const float* x, size_t n) {
  float m = 0.f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(x[i]));
  return m;
}

float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0.f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i] - b[i]));
  return m;
}

// Rows of a padded activation that hold real tokens, packed end to end.
std::vector<float> real_rows(const float* x, const Batch& b, int H) {
  std::vector<float> out;
  for (int s = 0; s < b.num_sequences(); ++s)
    out.insert(out.end(), x + size_t(b.offsets[s]) * H, x + size_t(b.offsets[s] + b.lengths[s]) * H);
  return out;
}

// For every token row of the batch, its index among the real (non-pad) rows, or -1.
std::vector<int> real_row_of_token(const Batch& b) {
  std::vector<int> real(b.num_rows(), -1);
  int next = 0;
  for (int s = 0; s < b.num_sequences(); ++s)
    for (int i = 0; i < b.lengths[s]; ++i) real[b.offsets[s] + i] = next++;
  return real;
}

void expect_logits_and_hidden(const BertModel& m, const Batch& batch, const TensorMap& ref,
                              const char* mode) {
  const int H = m.config().hidden_size;
  const auto& logits = ref.at("logits");
  ASSERT_EQ(size_t(m.logits_rows()) * m.logits_cols(), logits.data.size());
  float err = max_abs_diff(m.logits(), logits.data.data(), logits.data.size());
  std::printf("[%s] logits max |err| = %.3g\n", mode, err);
  EXPECT_LE(err, 1e-4f) << mode;
  for (int i = 0; i <= m.config().num_hidden_layers; ++i) {
    const auto& h = ref.at("hidden_states." + std::to_string(i));
    auto ours = real_rows(m.hidden_state(i), batch, H);
    ASSERT_EQ(ours.size(), h.data.size());
    float e = max_abs_diff(ours.data(), h.data.data(), ours.size());
    std::printf("[%s] hidden_states.%d max |err| = %.3g\n", mode, i, e);
    EXPECT_LE(e, 1e-4f) << mode << " hidden_states." << i;
  }
}

// Every gradient in `ref`: max |ours - ref| <= 1e-3 * max |ref|. Key biases
// get a mathematically zero gradient (softmax ignores a per-row shift); both
// sides hold fp32 noise there (~1e-10), checked in absolute terms instead.
void expect_grads(const BertModel& m, const TensorMap& ref, const char* mode) {
  float worst = 0.f;
  std::string worst_name;
  for (const auto& [name, t] : ref) {
    const auto& p = m.param(name);
    ASSERT_EQ(p.shape, t.shape) << name;
    const float* g = m.grads() + p.offset;
    float scale = max_abs(t.data.data(), t.data.size());
    float err = max_abs_diff(g, t.data.data(), t.data.size());
    if (scale < 1e-7f) {
      std::printf("[%s] grad %-55s zero in exact arithmetic: max|err| %.3g\n", mode, name.c_str(), err);
      EXPECT_LE(err, 1e-7f) << mode << " " << name;
      continue;
    }
    float rel = err / scale;
    if (rel > worst) worst = rel, worst_name = name;
    std::printf("[%s] grad %-55s max|err| %.3g  rel-to-max %.3g\n", mode, name.c_str(), err, rel);
    EXPECT_LE(err, 1e-3f * scale) << mode << " " << name;
  }
  std::printf("[%s] worst gradient error relative to tensor max: %.3g (%s)\n", mode, worst,
              worst_name.c_str());
}

}  // namespace

TEST(BertGolden, ForwardMatchesHuggingFacePacked) {
  auto g = classification_inputs();
  BertModel m(g.config, Task::SequenceClassification);
  auto report = m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  EXPECT_TRUE(report.initialised.empty());
  auto ref = io::read_safetensors(golden("tiny_forward.safetensors"));
  Batch batch = Batch::packed(g.sequences, g.labels);
  m.set_last_layer_cls_only(false);  // every hidden state, the last layer's included
  float loss = m.forward(batch, /*train=*/true);
  expect_logits_and_hidden(m, batch, ref, "packed");
  float want = ref.at("loss").data[0];
  std::printf("[packed] loss %.8f vs %.8f rel err %.3g\n", loss, want, std::fabs(loss - want) / want);
  EXPECT_NEAR(loss, want, 1e-5f * want);
  m.set_last_layer_cls_only(true);  // the default: the last layer on the [CLS] rows only
  loss = m.forward(batch, /*train=*/true);
  EXPECT_LE(max_abs_diff(m.logits(), ref.at("logits").data.data(), 10), 1e-4f);
  EXPECT_NEAR(loss, want, 1e-5f * want);
}

TEST(BertGolden, EvalForwardKeepsNoActivationsButSameLogits) {
  auto g = classification_inputs();
  BertModel m(g.config, Task::SequenceClassification);
  m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  auto ref = io::read_safetensors(golden("tiny_forward.safetensors"));
  Batch batch = Batch::packed(g.sequences);  // no labels: no loss
  float loss = m.forward(batch, /*train=*/false);
  EXPECT_TRUE(std::isnan(loss));
  EXPECT_LE(max_abs_diff(m.logits(), ref.at("logits").data.data(), 10), 1e-4f);
  EXPECT_THROW(m.backward(), Error);
}

TEST(BertGolden, GradientsMatchHuggingFacePacked) {
  auto g = classification_inputs();
  BertModel m(g.config, Task::SequenceClassification);
  m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  const auto grads = io::read_safetensors(golden("tiny_grads.safetensors"));
  for (bool cls_only : {false, true}) {  // all rows of the last layer, or its [CLS] rows only
    m.set_last_layer_cls_only(cls_only);
    m.forward(Batch::packed(g.sequences, g.labels), true);
    m.zero_grad();
    m.backward();
    expect_grads(m, grads, cls_only ? "packed cls-only" : "packed");
  }
}

TEST(BertGolden, PaddedModeGivesTheSameLogitsAndGradients) {
  auto g = classification_inputs();
  BertModel m(g.config, Task::SequenceClassification);
  m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  auto ref = io::read_safetensors(golden("tiny_forward.safetensors"));
  auto grads = io::read_safetensors(golden("tiny_grads.safetensors"));
  for (int pad_to : {0, 24}) {  // longest (16) and a fixed max_length
    for (bool cls_only : {false, true}) {  // all rows of the last layer, or its [CLS] rows only
      Batch batch = Batch::padded(g.sequences, pad_to, g.config.pad_token_id, g.labels);
      ASSERT_EQ(batch.num_rows(), 5 * (pad_to ? pad_to : 16));
      std::string mode = std::string(pad_to ? "padded-24" : "padded-longest") + (cls_only ? " cls-only" : "");
      m.set_last_layer_cls_only(cls_only);
      float loss = m.forward(batch, true);
      if (cls_only)
        EXPECT_LE(max_abs_diff(m.logits(), ref.at("logits").data.data(), 10), 1e-4f);
      else
        expect_logits_and_hidden(m, batch, ref, mode.c_str());
      EXPECT_NEAR(loss, ref.at("loss").data[0], 1e-5f * ref.at("loss").data[0]);
      m.zero_grad();
      m.backward();
      expect_grads(m, grads, mode.c_str());
    }
  }
}

// Three steps of the trainer's own TrainStep (train/step.h) against the golden run made
// with the same optimizer: torch.optim.AdamW (--optim adamw_torch, tiny_adamw.*) or
// transformers.AdamW (--optim adamw_hf, the default, tiny_adamw_hf.*).
static void expect_three_adamw_steps(train::AdamWVariant variant, const char* json_file, const char* weights_file) {
  auto g = classification_inputs();
  auto steps = read_json(golden(json_file));
  auto after = io::read_safetensors(golden(weights_file));
  BertModel m(g.config, Task::SequenceClassification);
  m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  train::AdamW opt(m, {.beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .weight_decay = 0.01, .variant = variant});
  train::TrainStep train_step(m, opt, {train::Schedule::Linear, 1e-3, 2, 10}, /*max_grad_norm=*/1.0);
  Batch batch = Batch::packed(g.sequences, g.labels);
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
  for (const auto& p : m.param_info()) {
    const auto& t = after.at(p.name);
    float err = max_abs_diff(m.params() + p.offset, t.data.data(), p.numel);
    if (err > worst) worst = err, worst_name = p.name;
    bool noise_driven = p.name.find("key.bias") != std::string::npos;
    if (!noise_driven && err > worst_real) worst_real = err, worst_real_name = p.name;
    EXPECT_LE(err, noise_driven ? 5e-5f : 5e-6f) << tag << " " << p.name;
  }
  std::printf("[%s] weights after 3 steps: worst max |err| %.3g in %s (one update ~1e-3); "
              "%.3g in %s among tensors with a real gradient\n",
              tag, worst, worst_name.c_str(), worst_real, worst_real_name.c_str());
}

TEST(BertGolden, ThreeAdamWStepsMatchTheTrainer) {
  expect_three_adamw_steps(train::AdamWVariant::Torch, "tiny_adamw.json", "tiny_after_adamw.safetensors");
}

TEST(BertGolden, ThreeAdamWHfStepsMatchTheTrainer) {
  expect_three_adamw_steps(train::AdamWVariant::HF, "tiny_adamw_hf.json", "tiny_after_adamw_hf.safetensors");
}

// The two forms really differ: the torch form does not reproduce the adamw_hf golden run.
TEST(BertGolden, AdamWFormsAreDistinguishedByTheGolden) {
  auto g = classification_inputs();
  auto after_hf = io::read_safetensors(golden("tiny_after_adamw_hf.safetensors"));
  BertModel m(g.config, Task::SequenceClassification);
  m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  train::AdamW opt(m, {.weight_decay = 0.01, .variant = train::AdamWVariant::Torch});
  train::TrainStep train_step(m, opt, {train::Schedule::Linear, 1e-3, 2, 10}, 1.0);
  Batch batch = Batch::packed(g.sequences, g.labels);
  m.zero_grad();
  for (int step = 0; step < 3; ++step) train_step.run(batch, step);
  float worst = 0.f;
  for (const auto& p : m.param_info())
    worst = std::max(worst, max_abs_diff(m.params() + p.offset, after_hf.at(p.name).data.data(), p.numel));
  EXPECT_GT(worst, 5e-5f) << "adamw_torch should not match the adamw_hf golden run";
}

TEST(BertGolden, MaskedLMMatchesHuggingFace) {
  BertConfig config = BertConfig::load(golden("tiny_config.json"));
  auto j = read_json(golden("tiny_mlm_inputs.json"));
  auto seqs = j["input_sequences"].get<std::vector<std::vector<int32_t>>>();
  auto labels = j["labels"].get<std::vector<std::vector<int32_t>>>();
  auto init = io::read_safetensors(golden("tiny_mlm_init.safetensors"));
  auto ref = io::read_safetensors(golden("tiny_mlm_forward.safetensors"));
  auto grads = io::read_safetensors(golden("tiny_mlm_grads.safetensors"));
  BertModel m(config, Task::MaskedLM);
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
    // The head computes only the labelled rows: compare each with HF's row.
    const auto& token_rows = m.logit_token_rows();
    const std::vector<int> real = real_row_of_token(batch);
    int selected = 0;
    for (int32_t l : batch.labels) selected += l != -100;
    ASSERT_EQ(static_cast<int>(token_rows.size()), selected) << mode;
    ASSERT_EQ(m.logits_rows(), selected) << mode;
    float err = 0.f;
    for (size_t r = 0; r < token_rows.size(); ++r) {
      ASSERT_NE(batch.labels[token_rows[r]], -100) << mode;
      const float* hf = ref.at("logits").data.data() + size_t(real[token_rows[r]]) * config.vocab_size;
      err = std::max(err, max_abs_diff(m.logits() + r * config.vocab_size, hf, config.vocab_size));
    }
    std::printf("[%s] logits max |err| %.3g over %d selected rows, loss %.8f vs %.8f\n", mode, err, selected,
                loss, ref.at("loss").data[0]);
    EXPECT_LE(err, 1e-4f);
    EXPECT_NEAR(loss, ref.at("loss").data[0], 1e-5f * ref.at("loss").data[0]);
    m.zero_grad();
    m.backward();
    expect_grads(m, grads, mode);
    // Without labels (inference) the head computes every row, as HF does.
    Batch unlabelled = batch;
    unlabelled.labels.clear();
    m.forward(unlabelled, false);
    ASSERT_EQ(m.logits_rows(), unlabelled.num_rows()) << mode;
    auto all = real_rows(m.logits(), unlabelled, config.vocab_size);
    ASSERT_EQ(all.size(), ref.at("logits").data.size());
    EXPECT_LE(max_abs_diff(all.data(), ref.at("logits").data.data(), all.size()), 1e-4f) << mode;
  }
}

TEST(BertModelApi, LoadChecksShapesAndInitialisesMissingHead) {
  auto g = classification_inputs();
  auto tensors = io::read_safetensors(golden("tiny_init.safetensors"));
  {
    BertConfig three = g.config;
    three.set_num_labels(3);
    BertModel m(three, Task::SequenceClassification);
    try {
      m.load_state_dict(tensors);
      FAIL() << "a 2-label classifier loaded into a 3-label model";
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "tensor classifier.weight has shape [2, 64], config says [3, 64]");
    }
  }
  tensors.erase("classifier.weight");
  tensors.erase("classifier.bias");
  BertModel m(g.config, Task::SequenceClassification);
  auto report = m.load_state_dict(tensors, 7);
  EXPECT_EQ(report.initialised, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  const auto& w = m.param("classifier.weight");
  float sd = 0;
  for (size_t i = 0; i < w.numel; ++i) sd += m.params()[w.offset + i] * m.params()[w.offset + i];
  sd = std::sqrt(sd / w.numel);
  EXPECT_GT(sd, 0.01f);
  EXPECT_LT(sd, 0.03f);
  EXPECT_EQ(max_abs(m.params() + m.param("classifier.bias").offset, 2), 0.f);

  tensors.erase("bert.encoder.layer.1.output.dense.weight");
  EXPECT_THROW(m.load_state_dict(tensors), Error);
}

TEST(BertModelApi, ParametersAndCheckpointShapesComeFromOneLayout) {
  auto g = classification_inputs();
  const int64_t H = g.config.hidden_size;
  for (Task task : {Task::SequenceClassification, Task::MaskedLM}) {
    SCOPED_TRACE(task == Task::MaskedLM ? "MaskedLM" : "SequenceClassification");
    BertModel m(g.config, task);
    const auto layout = model::bert_tensor_layout(g.config, task);
    std::vector<std::pair<std::string, std::vector<int64_t>>> stored, params;
    size_t tied = 0;
    for (const auto& spec : layout) {
      if (spec.tied_to.empty()) {
        stored.emplace_back(spec.name, spec.shape);
      } else {  // stands for a stored tensor of the same shape
        ++tied;
        EXPECT_EQ(m.param(spec.tied_to).shape, spec.shape) << spec.name;
      }
    }
    for (const auto& p : m.param_info()) params.emplace_back(p.name, p.shape);
    EXPECT_EQ(params, stored);  // same tensors, same order
    EXPECT_EQ(tied, task == Task::MaskedLM ? 2u : 0u);
    auto shapes = model::bert_checkpoint_shapes(g.config, task);
    EXPECT_EQ(shapes.size(), layout.size());
    for (const auto& spec : layout) EXPECT_EQ(shapes.at(spec.name), spec.shape) << spec.name;
    // Q, K and V sit back to back: one [3H, H] matrix, one [3H] bias.
    const std::string q = "bert.encoder.layer.1.attention.self.";
    EXPECT_EQ(m.param(q + "key.weight").offset, m.param(q + "query.weight").offset + H * H);
    EXPECT_EQ(m.param(q + "value.weight").offset, m.param(q + "key.weight").offset + H * H);
    EXPECT_EQ(m.param(q + "value.bias").offset, m.param(q + "query.bias").offset + 2 * H);
  }
  // A classifier does not use an MLM checkpoint's tied decoder: reported unused.
  BertModel cls(g.config, Task::SequenceClassification);
  auto report = cls.load_state_dict(io::read_safetensors(golden("tiny_mlm_init.safetensors")));
  EXPECT_NE(std::find(report.unused.begin(), report.unused.end(), "cls.predictions.decoder.weight"),
            report.unused.end());
}

TEST(BertModelApi, InitIsHuggingFaceStyleAndSeeded) {
  BertConfig c = BertConfig::load(golden("tiny_config.json"));
  BertModel a(c, Task::SequenceClassification), b(c, Task::SequenceClassification);
  a.init_weights(123);
  b.init_weights(123);
  EXPECT_EQ(0, std::memcmp(a.params(), b.params(), a.num_params() * sizeof(float)));
  b.init_weights(124);
  EXPECT_NE(0, std::memcmp(a.params(), b.params(), a.num_params() * sizeof(float)));
  const auto& word = a.param("bert.embeddings.word_embeddings.weight");
  const float* w = a.params() + word.offset;
  EXPECT_EQ(max_abs(w + c.pad_token_id * c.hidden_size, c.hidden_size), 0.f);  // padding_idx
  double sum = 0, sq = 0;
  for (size_t i = 0; i < word.numel; ++i) sum += w[i], sq += double(w[i]) * w[i];
  EXPECT_NEAR(sum / word.numel, 0.0, 1e-3);
  EXPECT_NEAR(std::sqrt(sq / word.numel), 0.02 * std::sqrt(511.0 / 512.0), 1e-3);
  const float* ln = a.params() + a.param("bert.encoder.layer.0.output.LayerNorm.weight").offset;
  EXPECT_EQ(ln[0], 1.f);
  EXPECT_EQ(max_abs(a.params() + a.param("bert.encoder.layer.0.output.dense.bias").offset, 64), 0.f);
  // decay groups as the HF Trainer makes them
  EXPECT_FALSE(a.param("bert.embeddings.LayerNorm.weight").decay);
  EXPECT_FALSE(a.param("classifier.bias").decay);
  EXPECT_TRUE(a.param("bert.encoder.layer.0.attention.self.query.weight").decay);
}

TEST(Schedules, MatchTransformersLambdas) {
  using train::Schedule;
  // get_linear_schedule_with_warmup(warmup 2, total 10)
  EXPECT_DOUBLE_EQ(train::learning_rate(Schedule::Linear, 1e-3, 0, 2, 10), 0.0);
  EXPECT_DOUBLE_EQ(train::learning_rate(Schedule::Linear, 1e-3, 1, 2, 10), 5e-4);
  EXPECT_DOUBLE_EQ(train::learning_rate(Schedule::Linear, 1e-3, 6, 2, 10), 1e-3 * 4 / 8);
  EXPECT_DOUBLE_EQ(train::learning_rate(Schedule::Linear, 1e-3, 12, 2, 10), 0.0);
  // get_cosine_schedule_with_warmup: half a cosine from warmup to total
  EXPECT_NEAR(train::learning_rate(Schedule::Cosine, 1e-3, 6, 2, 10), 0.5e-3, 1e-15);
  EXPECT_NEAR(train::learning_rate(Schedule::Cosine, 1e-3, 10, 2, 10), 0.0, 1e-15);
  EXPECT_DOUBLE_EQ(train::learning_rate(Schedule::ConstantWithWarmup, 1e-3, 1, 4, 10), 2.5e-4);
  EXPECT_DOUBLE_EQ(train::learning_rate(Schedule::Constant, 1e-3, 1, 4, 10), 1e-3);
  EXPECT_THROW(train::parse_schedule("polynomial"), Error);
}

// ---------------------------------------------------------------- finite differences

namespace {

// A tiny random model whose LayerNorm parameters and biases are moved off
// 1/0 so that every path carries gradient.
BertModel tiny_random_model(Task task, float dropout) {
  BertConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 24;
  c.max_position_embeddings = 16;
  c.hidden_dropout_prob = dropout;
  c.attention_probs_dropout_prob = dropout;
  c.initializer_range = 0.3f;
  BertModel m(c, task);
  m.init_weights(5);
  uint64_t s = 99;
  for (size_t i = 0; i < m.num_params(); ++i) {
    s = s * 6364136223846793005ull + 1442695040888963407ull;
    m.params()[i] += 0.1f * (float((s >> 40) & 0xFFFF) / 65536.f - 0.5f);
  }
  return m;
}

// Central differences on a sample of each tensor, compared to backward().
void finite_difference_check(BertModel& m, const Batch& batch) {
  m.set_dropout_step(0);
  m.forward(batch, true);
  m.zero_grad();
  m.backward();
  std::vector<float> analytic(m.grads(), m.grads() + m.num_params());
  const float eps = 1e-2f;
  for (const auto& p : m.param_info()) {
    float worst = 0.f, gmax = max_abs(analytic.data() + p.offset, p.numel);
    int checked = 0;
    for (size_t i = 0; i < p.numel; i += 1 + p.numel / 23) {
      float& w = m.params()[p.offset + i];
      float orig = w;
      w = orig + eps;
      m.set_dropout_step(0);
      double up = m.forward(batch, true);
      w = orig - eps;
      m.set_dropout_step(0);
      double down = m.forward(batch, true);
      w = orig;
      float fd = float((up - down) / (2.0 * eps));
      float an = analytic[p.offset + i];
      worst = std::max(worst, std::fabs(fd - an));
      EXPECT_NEAR(fd, an, 3e-3f + 3e-2f * std::fabs(an)) << p.name << "[" << i << "]";
      ++checked;
    }
    std::printf("[fd] %-50s checked %2d  max |fd - analytic| %.2g (grad max %.2g)\n",
                p.name.c_str(), checked, worst, gmax);
  }
}

}  // namespace

TEST(BertFiniteDifferences, ClassifierEveryLayerTypeWithDropout) {
  BertModel m = tiny_random_model(Task::SequenceClassification, 0.1f);
  Batch batch = Batch::packed({{2, 5, 9, 3}, {2, 17, 3}, {2, 30, 31, 32, 33, 8, 3}}, {1, 0, 1});
  batch.token_type_ids = {0, 0, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1};
  finite_difference_check(m, batch);
}

TEST(BertFiniteDifferences, ClassifierPaddedMode) {
  BertModel m = tiny_random_model(Task::SequenceClassification, 0.f);
  Batch batch = Batch::padded({{2, 5, 9, 3}, {2, 17, 3}}, 6, 0, {1, 0});
  finite_difference_check(m, batch);
}

TEST(BertFiniteDifferences, MaskedLMHead) {
  BertModel m = tiny_random_model(Task::MaskedLM, 0.f);
  Batch batch = Batch::packed({{2, 4, 9, 3}, {2, 17, 4, 4, 3}});
  batch.labels = {-100, 7, -100, -100, -100, -100, 11, 12, -100};
  finite_difference_check(m, batch);
}

TEST(BertDropout, MasksAreReproducibleAndStepDependent) {
  BertModel m = tiny_random_model(Task::SequenceClassification, 0.3f);
  Batch batch = Batch::packed({{2, 5, 9, 3}, {2, 17, 3}}, {1, 0});
  m.set_dropout_seed(1);
  m.set_dropout_step(10);
  float a = m.forward(batch, true);
  EXPECT_EQ(m.dropout_step(), 11u);
  float b = m.forward(batch, true);  // step 11: other masks
  m.set_dropout_step(10);
  float c = m.forward(batch, true);
  float eval1 = m.forward(batch, false), eval2 = m.forward(batch, false);
  EXPECT_EQ(a, c);
  EXPECT_NE(a, b);
  EXPECT_EQ(eval1, eval2);
  EXPECT_NE(a, eval1);
}

TEST(BertModelApi, RejectsBadBatchesByName) {
  BertModel m = tiny_random_model(Task::SequenceClassification, 0.f);
  Batch bad = Batch::packed({{2, 50, 3}}, {0});
  try {
    m.forward(bad, false);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("token id 50 at row 1"), std::string::npos) << e.what();
  }
  Batch too_long = Batch::packed({std::vector<int32_t>(17, 5)});
  EXPECT_THROW(m.forward(too_long, false), Error);
  Batch labels = Batch::packed({{2, 3}}, {0, 1});
  EXPECT_THROW(m.forward(labels, false), Error);
}
