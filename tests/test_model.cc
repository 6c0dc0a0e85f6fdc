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

#include "golden_bert.h"
#include "io/safetensors.h"
#include "model/bert.h"
#include "train/distributed.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "util/error.h"
#include "util/paths.h"

using namespace bertune;
using model::Batch;
using model::BertConfig;
using model::BertModel;
using model::Task;

using namespace golden_bert;

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

// The whole classification case as tests/test_gpu_golden.cc runs it on CUDA, here on the
// CPU: the shared check itself is exercised on every machine.
TEST(BertGolden, ClassificationCaseAsTheDeviceTestRunsIt) { expect_classification_case(kernels::Device::CPU); }

TEST(BertGolden, ThreeAdamWStepsMatchTheTrainer) {
  expect_three_adamw_steps(kernels::Device::CPU, train::AdamWVariant::Torch, "adamw.json", "after_adamw.safetensors");
}

TEST(BertGolden, ThreeAdamWHfStepsMatchTheTrainer) {
  expect_three_adamw_steps(kernels::Device::CPU, train::AdamWVariant::HF, "adamw_hf.json", "after_adamw_hf.safetensors");
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

// problem_type regression (num_labels 1, MSE on float labels) and
// multi_label_classification (BCE-with-logits on 0/1 vectors of 4): shared/golden/families.
TEST(BertGolden, RegressionMatchesHuggingFace) { expect_sequence_case(kernels::Device::CPU, family_inputs("bert_regression")); }

TEST(BertGolden, MultiLabelMatchesHuggingFace) { expect_sequence_case(kernels::Device::CPU, family_inputs("bert_multilabel")); }

TEST(BertGolden, RegressionThreeAdamWStepsMatchTheTrainer) {
  expect_three_adamw_steps(kernels::Device::CPU, family_inputs("bert_regression"), train::AdamWVariant::Torch,
                           "adamw.json", "after_adamw.safetensors");
}

TEST(BertGolden, MultiLabelThreeAdamWStepsMatchTheTrainer) {
  expect_three_adamw_steps(kernels::Device::CPU, family_inputs("bert_multilabel"), train::AdamWVariant::Torch,
                           "adamw.json", "after_adamw.safetensors");
}

// Without problem_type in config.json the model decides as HF at the first loss: num_labels
// 1 -> regression, float targets -> multi-label, integer labels -> single-label; and the
// decision is kept in config() (a saved config.json carries it). A batch that contradicts
// a set problem_type is refused by name.
TEST(BertModelApi, ProblemTypeIsDecidedAsHuggingFaceDoes) {
  using model::ProblemType;
  for (const char* name : {"bert_regression", "bert_multilabel"}) {
    Golden g = family_inputs(name);
    const ProblemType want = g.config.problem_type;
    g.config.problem_type = ProblemType::Unset;
    BertModel m(g.config, Task::SequenceClassification);
    m.load_state_dict(g.tensors("init.safetensors"));
    EXPECT_TRUE(std::isnan(m.forward(Batch::packed(g.sequences), false)));  // no labels: undecided
    EXPECT_EQ(m.config().problem_type, ProblemType::Unset) << name;
    expect_loss(m.forward(g.batch(-1), false), g.tensors("forward.safetensors"), name);
    EXPECT_EQ(m.config().problem_type, want) << name;
    EXPECT_EQ(m.config().to_json()["problem_type"], model::problem_type_name(want)) << name;
  }
  auto g = classification_inputs();
  BertModel single(g.config, Task::SequenceClassification);
  single.forward(g.batch(-1), false);
  EXPECT_EQ(single.config().problem_type, ProblemType::SingleLabel);
  Batch floats = g.batch(-1);
  floats.labels.clear();
  floats.targets.assign(size_t(floats.num_sequences()) * 2, 0.f);
  try {
    single.forward(floats, false);
    ADD_FAILURE() << "float targets accepted by a single-label classifier";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("problem_type single_label_classification needs integer labels"), std::string::npos) << e.what();
  }
  floats.targets.pop_back();
  BertModel multi(g.config, Task::SequenceClassification);
  EXPECT_THROW(multi.forward(floats, false), Error);  // 9 targets for 5 x 2
  floats.targets.push_back(std::nanf(""));
  EXPECT_THROW(multi.forward(floats, false), Error);  // not finite
}

TEST(BertGolden, MaskedLMMatchesHuggingFace) { expect_masked_lm_case(kernels::Device::CPU); }

// Sentence pairs (shared/golden/families/bert_pair): [CLS] a [SEP] b [SEP] with token type 1
// on the second segment; packed, padded to the longest and to 24, and inference.
TEST(BertGolden, SentencePairCase) { expect_sequence_case(kernels::Device::CPU, family_inputs("bert_pair")); }

TEST(BertGolden, SentencePairThreeAdamWSteps) {
  expect_three_adamw_steps(kernels::Device::CPU, family_inputs("bert_pair"), train::AdamWVariant::Torch, "adamw.json",
                           "after_adamw.safetensors", 1e-5f, 5e-5f);
}

// Token classification (shared/golden/families/bert_tokencls, BertForTokenClassification): a
// label per token, -100 on [CLS]/[SEP] and one word piece; logits of the labelled rows,
// mean cross-entropy over them, every gradient, packed and padded to 16 and 24; without
// labels a logit row per token.
TEST(BertGolden, TokenClassificationCase) {
  const Golden g = family_inputs("bert_tokencls");
  ASSERT_EQ(g.task, Task::TokenClassification);
  expect_sequence_case(kernels::Device::CPU, g);
}

TEST(BertGolden, TokenClassificationThreeAdamWSteps) {
  expect_three_adamw_steps(kernels::Device::CPU, family_inputs("bert_tokencls"), train::AdamWVariant::Torch,
                           "adamw.json", "after_adamw.safetensors", 1e-5f, 5e-5f);
}

// The token-classification layout is HF's: the encoder and classifier.*, no pooler; a BERT
// checkpoint's pooler is left unused and the classifier initialised.
TEST(BertGolden, TokenClassificationLayoutHasNoPooler) {
  const Golden g = family_inputs("bert_tokencls");
  BertModel m(g.config, Task::TokenClassification);
  EXPECT_THROW(m.param("bert.pooler.dense.weight"), bertune::Error);
  EXPECT_EQ(m.param("classifier.weight").shape, (std::vector<int64_t>{g.config.num_labels(), 64}));
  const Golden seq = family_inputs("bert_pair");
  BertConfig config = seq.config;
  config.set_num_labels(g.config.num_labels());
  BertModel from_seq(config, Task::TokenClassification);
  TensorMap init = seq.tensors("init.safetensors");
  init.erase("classifier.weight");
  init.erase("classifier.bias");
  auto report = from_seq.load_state_dict(init);
  std::sort(report.initialised.begin(), report.initialised.end());
  std::sort(report.unused.begin(), report.unused.end());
  EXPECT_EQ(report.initialised, (std::vector<std::string>{"classifier.bias", "classifier.weight"}));
  EXPECT_EQ(report.unused, (std::vector<std::string>{"bert.pooler.dense.bias", "bert.pooler.dense.weight"}));
}

// The token types reach the embeddings: without them the same ids give other logits.
TEST(BertGolden, SentencePairTokenTypesChangeTheLogits) {
  auto g = family_inputs("bert_pair");
  ASSERT_EQ(g.token_type_ids.size(), g.sequences.size());
  BertModel m(g.config, Task::SequenceClassification);
  m.load_state_dict(g.tensors("init.safetensors"));
  const TensorMap forward = g.tensors("forward.safetensors");
  const auto& logits = forward.at("logits");
  m.forward(g.batch(-1, /*labelled=*/false), false);  // with them: HF's logits
  EXPECT_LE(max_abs_diff(m.logits(), logits.data.data(), logits.data.size()), 1e-4f);
  Batch untyped = g.batch(-1, /*labelled=*/false);
  untyped.token_type_ids.clear();
  m.forward(untyped, false);
  EXPECT_GT(max_abs_diff(m.logits(), logits.data.data(), logits.data.size()), 1e-3f);
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

TEST(BertFiniteDifferences, ReplacedTokenDetectionHeadEveryRow) {
  BertModel m = tiny_random_model(Task::ReplacedTokenDetection, 0.1f);
  Batch batch = Batch::packed({{2, 4, 9, 3}, {2, 17, 4, 4, 3}});
  batch.labels = {0, 1, 0, 0, 0, 0, 1, 1, 0};
  finite_difference_check(m, batch);
}

TEST(BertFiniteDifferences, ReplacedTokenDetectionHeadPaddedSomeRows) {
  BertModel m = tiny_random_model(Task::ReplacedTokenDetection, 0.f);
  Batch batch = Batch::padded({{2, 5, 9, 3}, {2, 17, 3}}, 5, 0);
  batch.labels = {0, 1, 1, 0, -100, 0, -100, 1, -100, -100};  // pad rows and two real ones without a target
  finite_difference_check(m, batch);
}

// ELECTRA's discriminator loss is the mean binary cross-entropy of a sigmoid logit z per
// token: log(1 + e^z) - y z. Our head's two logits must give exactly that with z = l1 - l0.
TEST(BertModelApi, ReplacedTokenDetectionLossIsElectrasSigmoidCrossEntropy) {
  BertModel m = tiny_random_model(Task::ReplacedTokenDetection, 0.f);
  Batch batch = Batch::packed({{2, 4, 9, 3}, {2, 17, 4, 4, 3}});
  batch.labels = {0, 1, -100, 0, 0, 1, 1, 1, 0};
  const float loss = m.forward(batch, false);
  ASSERT_EQ(m.logits_rows(), 8);  // the labelled rows
  ASSERT_EQ(m.logits_cols(), 2);
  double want = 0;
  for (int r = 0; r < m.logits_rows(); ++r) {
    const double z = double(m.logits()[2 * r + 1]) - m.logits()[2 * r];
    const int y = batch.labels[m.logit_token_rows()[r]];
    ASSERT_NE(y, -100);
    want += std::log1p(std::exp(z)) - y * z;
  }
  EXPECT_NEAR(loss, want / 8, 1e-6);
  const TensorShapes shapes = bert_checkpoint_shapes(m.config(), Task::ReplacedTokenDetection);
  EXPECT_EQ(shapes.at("discriminator_predictions.dense.weight"), (std::vector<int64_t>{16, 16}));
  EXPECT_EQ(shapes.at("discriminator_predictions.classifier.weight"), (std::vector<int64_t>{2, 16}));
  EXPECT_FALSE(shapes.count("cls.predictions.bias"));
  batch.labels[0] = 2;
  EXPECT_THROW(m.forward(batch, false), Error);  // only 0, 1 or -100
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

// A batch split in two (two ranks' shares of a data-parallel step): the second part, placed
// after the first (Batch::dropout_place), draws the masks its rows, sequences and attention
// probabilities have in the whole batch, so its logits are the whole batch's; unplaced, it
// draws the first part's masks.
TEST(BertDropout, APlacedPartDrawsTheMasksOfTheWholeBatch) {
  BertModel m = tiny_random_model(Task::SequenceClassification, 0.3f);
  const std::vector<std::vector<int32_t>> seqs = {{2, 5, 9, 3}, {2, 17, 3}, {2, 8, 8, 6, 3}, {2, 11, 3}};
  const int C = m.config().num_labels();
  auto logits_of = [&](const Batch& b) {
    m.set_dropout_step(10);
    m.forward(b, true);
    return std::vector<float>(m.logits(), m.logits() + size_t(b.num_sequences()) * C);
  };
  const auto whole = logits_of(Batch::packed(seqs, {1, 0, 1, 0}));
  const Batch first = Batch::packed({seqs[0], seqs[1]}, {1, 0});
  Batch second = Batch::packed({seqs[2], seqs[3]}, {1, 0});
  const auto unplaced = logits_of(second);
  second.dropout_place = train::dropout_place_after(first, m.config().num_attention_heads);
  EXPECT_EQ(second.dropout_place.rows, 7u);
  EXPECT_EQ(second.dropout_place.sequences, 2u);
  EXPECT_EQ(second.dropout_place.probs, uint64_t(m.config().num_attention_heads) * (16 + 9));
  const auto a = logits_of(first), b = logits_of(second);
  double worst = 0, unplaced_gap = 0;
  for (int i = 0; i < 2 * C; ++i) {
    worst = std::max({worst, double(std::fabs(a[i] - whole[i])), double(std::fabs(b[i] - whole[2 * C + i]))});
    unplaced_gap = std::max(unplaced_gap, double(std::fabs(unplaced[i] - whole[2 * C + i])));
  }
  EXPECT_LE(worst, 1e-5);
  EXPECT_GT(unplaced_gap, 1e-3);
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
