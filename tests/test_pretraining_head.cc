// BertForPreTraining (Task::PreTraining): the masked LM plus next-sentence prediction on the
// pooled [CLS] rows. Its loss is HF's (MLM mean + NSP mean, the NSP logits
// seq_relationship(tanh(pooler(h_cls))) computed here on the host from the model's own last
// hidden state), its gradient is the sum of the two losses' and agrees with central finite
// differences through the head and the encoder, and its checkpoint carries HF's names.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <random>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/read_file.h"
#include "io/safetensors.h"
#include "model/bert.h"
#include "model/pretrained.h"
#include "numeric_compare.h"
#include "util/error.h"

using namespace bertune;
using model::Batch;
using model::BertConfig;
using model::BertModel;
using model::Task;
using namespace numeric_compare;
namespace fs = std::filesystem;

namespace {

BertConfig tiny_config() {
  BertConfig c;
  c.vocab_size = 60;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.max_position_embeddings = 32;
  c.hidden_dropout_prob = 0.f;
  c.attention_probs_dropout_prob = 0.f;
  c.initializer_range = 0.2f;
  return c;
}

// Random weights, LayerNorms and biases off 1 / 0, so that every path carries gradient.
BertModel random_pretraining_model() {
  BertModel m(tiny_config(), Task::PreTraining);
  m.init_weights(5);
  std::mt19937 rng(6);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (size_t i = 0; i < m.num_params(); ++i) m.params()[i] += u(rng);
  return m;
}

// Three pairs [CLS] a [SEP] b [SEP] (token types 0 / 1), packed one attention sequence each,
// a masked-LM label on every third real token, next-sentence labels 0 1 1.
Batch pair_batch(bool mlm_labels, bool nsp_labels) {
  const std::vector<std::vector<int32_t>> a = {{7, 8, 9}, {10, 11}, {12, 13, 14, 15}};
  const std::vector<std::vector<int32_t>> b = {{20, 21}, {22, 23, 24}, {25}};
  std::vector<std::vector<int32_t>> seqs;
  std::vector<int32_t> types;
  for (size_t i = 0; i < a.size(); ++i) {
    std::vector<int32_t> s = {2};
    s.insert(s.end(), a[i].begin(), a[i].end());
    s.push_back(3);
    types.insert(types.end(), s.size(), 0);       // [CLS] a [SEP]
    s.insert(s.end(), b[i].begin(), b[i].end());
    s.push_back(3);
    types.insert(types.end(), b[i].size() + 1, 1);  // b [SEP]
    seqs.push_back(s);
  }
  Batch batch = Batch::packed(seqs);
  batch.token_type_ids = types;
  batch.labels.assign(batch.input_ids.size(), -100);
  if (mlm_labels)
    for (size_t t = 1; t < batch.input_ids.size(); t += 3)
      if (batch.input_ids[t] > 3) batch.labels[t] = (batch.input_ids[t] * 7) % 60;
  if (nsp_labels) batch.next_sentence_labels = {0, 1, 1};
  return batch;
}

std::vector<float> step_gradient(BertModel& m, const Batch& batch, float* loss) {
  m.zero_grad();
  *loss = m.forward(batch, /*train=*/true);
  m.backward();
  return std::vector<float>(m.grads(), m.grads() + m.num_params());
}

}  // namespace

// The loss is MaskedLM's on the same weights plus the next-sentence cross-entropy of HF's
// BertPreTrainingHeads, computed here from the last hidden state's [CLS] rows.
TEST(PreTrainingHead, LossIsMaskedLmPlusHfNextSentenceCrossEntropy) {
  BertModel m = random_pretraining_model();
  const BertConfig& c = m.config();
  const int H = c.hidden_size, L = c.num_hidden_layers;
  const Batch batch = pair_batch(true, true);
  ASSERT_EQ(batch.token_type_ids.size(), batch.input_ids.size());
  const float loss = m.forward(batch, /*train=*/true);

  // HF: pooled = tanh(h_cls W_p^T + b_p); logits = pooled W_s^T + b_s; mean cross-entropy.
  const float* h = m.hidden_state(L);
  auto param = [&](const std::string& name) { return m.params() + m.param(name).offset; };
  const float *wp = param("bert.pooler.dense.weight"), *bp = param("bert.pooler.dense.bias");
  const float *ws = param("cls.seq_relationship.weight"), *bs = param("cls.seq_relationship.bias");
  double nsp = 0;
  for (int s = 0; s < batch.num_sequences(); ++s) {
    const float* cls = h + size_t(batch.offsets[s]) * H;
    std::vector<double> pooled(H);
    for (int o = 0; o < H; ++o) {
      double z = bp[o];
      for (int i = 0; i < H; ++i) z += double(wp[o * H + i]) * cls[i];
      pooled[o] = std::tanh(z);
    }
    double logit[2];
    for (int k = 0; k < 2; ++k) {
      logit[k] = bs[k];
      for (int i = 0; i < H; ++i) logit[k] += double(ws[k * H + i]) * pooled[i];
      EXPECT_NEAR(m.next_sentence_logits()[2 * s + k], logit[k], 1e-5 * (1 + std::fabs(logit[k]))) << s << " " << k;
    }
    const double top = std::max(logit[0], logit[1]);
    const double lse = top + std::log(std::exp(logit[0] - top) + std::exp(logit[1] - top));
    nsp += lse - logit[batch.next_sentence_labels[s]];
  }
  nsp /= batch.num_sequences();
  EXPECT_NEAR(m.next_sentence_loss(), nsp, 1e-5 * nsp);
  EXPECT_GT(nsp, 0.05);

  BertModel mlm(c, Task::MaskedLM, kernels::Device::CPU, model::Init::Zeros);
  TensorMap weights;
  for (const TensorRef& t : m.state_dict())
    weights[t.name] = {t.shape, std::vector<float>(t.data, t.data + HostTensor{t.shape, {}}.numel())};
  mlm.load_state_dict(weights);
  Batch mlm_batch = batch;
  mlm_batch.next_sentence_labels.clear();
  const float mlm_loss = mlm.forward(mlm_batch, /*train=*/true);
  EXPECT_GT(mlm_loss, 1.0f);
  EXPECT_NEAR(loss, mlm_loss + nsp, 2e-6 * loss);

  // No next-sentence labels: the masked LM's loss alone; logits still computed.
  EXPECT_NEAR(m.forward(mlm_batch, false), mlm_loss, 2e-6 * mlm_loss);
  EXPECT_EQ(m.next_sentence_loss(), 0.f);
  Batch bad = batch;
  bad.next_sentence_labels = {0, 2, 1};
  EXPECT_THROW(m.forward(bad, false), Error);
  bad.next_sentence_labels = {0, 1};
  EXPECT_THROW(m.forward(bad, false), Error);
  EXPECT_THROW(mlm.forward(batch, false), Error);  // next-sentence labels for a BertForMaskedLM
}

// d (MLM + NSP) = d MLM + d NSP, tensor by tensor; the NSP gradient reaches the pooler, the
// seq_relationship and the encoder (down to the embeddings) and agrees with central finite
// differences there.
TEST(PreTrainingHead, NextSentenceGradientMatchesFiniteDifferences) {
  BertModel m = random_pretraining_model();
  float both_loss = 0, mlm_loss = 0, nsp_loss = 0;
  const Batch both = pair_batch(true, true), mlm_only = pair_batch(true, false), nsp_only = pair_batch(false, true);
  const std::vector<float> g_both = step_gradient(m, both, &both_loss);
  const std::vector<float> g_mlm = step_gradient(m, mlm_only, &mlm_loss);
  const std::vector<float> g_nsp = step_gradient(m, nsp_only, &nsp_loss);
  EXPECT_NEAR(both_loss, mlm_loss + nsp_loss, 2e-6 * both_loss);
  // Within 1e-5 of each tensor's largest gradient (the two sides sum the same products in
  // other orders); tensors whose gradient is zero in exact arithmetic (the key biases: softmax
  // ignores a per-row shift) hold float noise, bounded against the largest gradient of all.
  const float global = max_abs(g_both.data(), g_both.size());
  for (const auto& p : m.param_info()) {
    const float scale = max_abs(g_both.data() + p.offset, p.numel);
    float err = 0;
    for (size_t i = 0; i < p.numel; ++i)
      err = std::max(err, std::fabs(g_both[p.offset + i] - g_mlm[p.offset + i] - g_nsp[p.offset + i]));
    EXPECT_LE(err, 1e-5f * (scale < 1e-6f * global ? global : scale)) << p.name;
  }
  for (const char* name : {"cls.seq_relationship.weight", "bert.pooler.dense.weight",
                           "bert.encoder.layer.1.attention.self.query.weight", "bert.encoder.layer.0.output.dense.weight",
                           "bert.embeddings.word_embeddings.weight"}) {
    const model::ParamInfo& p = m.param(name);
    EXPECT_GT(max_abs(g_nsp.data() + p.offset, p.numel), 1e-4f) << name << ": no next-sentence gradient";
  }
  // The MLM-only batch puts no gradient on the next-sentence tensors.
  for (const char* name : {"cls.seq_relationship.weight", "cls.seq_relationship.bias", "bert.pooler.dense.weight"}) {
    const model::ParamInfo& p = m.param(name);
    EXPECT_EQ(max_abs(g_mlm.data() + p.offset, p.numel), 0.f) << name;
  }

  // Central differences of the next-sentence loss (eval forward: no dropout, the same loss), at
  // the largest-gradient element of each tensor and at two seeded others.
  const float eps = 1e-2f;
  std::mt19937 rng(9);
  int checked = 0;
  for (const char* name : {"cls.seq_relationship.weight", "cls.seq_relationship.bias", "bert.pooler.dense.weight",
                           "bert.pooler.dense.bias", "bert.encoder.layer.1.output.dense.weight",
                           "bert.encoder.layer.0.attention.self.key.weight",
                           "bert.embeddings.token_type_embeddings.weight"}) {
    const model::ParamInfo& p = m.param(name);
    const float* g = g_nsp.data() + p.offset;
    std::vector<size_t> at = {size_t(std::max_element(g, g + p.numel, [](float x, float y) {
                                         return std::fabs(x) < std::fabs(y);
                                       }) - g)};
    for (int k = 0; k < 2; ++k) at.push_back(rng() % p.numel);
    for (size_t i : at) {
      float& w = m.params()[p.offset + i];
      const float saved = w;
      w = saved + eps;
      const double up = m.forward(nsp_only, false);
      w = saved - eps;
      const double down = m.forward(nsp_only, false);
      w = saved;
      const double fd = (up - down) / (2 * eps);
      EXPECT_NEAR(g[i], fd, 2e-4 + 2e-2 * std::fabs(fd)) << name << "[" << i << "]";
      ++checked;
    }
    EXPECT_GT(std::fabs(g[at[0]]), 1e-3f) << name;
  }
  EXPECT_EQ(checked, 21);
}

// HF's BertForPreTraining names: BertForMaskedLM's tensors, bert.pooler.dense and
// cls.seq_relationship [2, H]. Saved, the directory says BertForPreTraining, holds every stored
// tensor (the tied decoder not), loads back whole, and loads as a sequence classifier with the
// pooler kept, only the classifier new and only cls.* unused.
TEST(PreTrainingHead, CheckpointHasHfNamesAndLoadsAsAClassifier) {
  const BertConfig c = tiny_config();
  const TensorShapes pre = model::bert_checkpoint_shapes(c, Task::PreTraining);
  TensorShapes want = model::bert_checkpoint_shapes(c, Task::MaskedLM);
  want["bert.pooler.dense.weight"] = {16, 16};
  want["bert.pooler.dense.bias"] = {16};
  want["cls.seq_relationship.weight"] = {2, 16};
  want["cls.seq_relationship.bias"] = {2};
  EXPECT_EQ(pre, want);
  for (const char* n : {"cls.predictions.decoder.weight", "cls.predictions.decoder.bias", "cls.predictions.bias",
                        "cls.predictions.transform.dense.weight", "cls.predictions.transform.LayerNorm.bias"})
    EXPECT_TRUE(pre.count(n)) << n;

  BertModel m = random_pretraining_model();
  const fs::path dir = fs::temp_directory_path() / ("bertune_pretraining_head_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  BertConfig saved = m.config();
  saved.architectures.clear();  // guessed from the names
  model::save_pretrained(dir, saved, m.state_dict());
  const auto config = nlohmann::json::parse(io::read_file(dir / "config.json"));
  EXPECT_EQ(config.at("architectures"), nlohmann::json::array({"BertForPreTraining"}));
  const TensorMap file = io::read_safetensors(dir / "model.safetensors");
  std::set<std::string> names;
  for (const auto& [name, t] : file) names.insert(name);
  std::set<std::string> stored;
  for (const auto& p : m.param_info()) stored.insert(p.name);
  EXPECT_EQ(names, stored);
  EXPECT_FALSE(names.count("cls.predictions.decoder.weight"));

  const model::PretrainedTensors loaded = model::load_pretrained_tensors(dir);
  BertModel again(loaded.config, Task::PreTraining, kernels::Device::CPU, model::Init::Zeros);
  const model::LoadReport whole = again.load_state_dict(loaded.tensors);
  EXPECT_TRUE(whole.initialised.empty());
  EXPECT_TRUE(whole.unused.empty());
  for (const auto& p : m.param_info())
    EXPECT_EQ(max_abs_diff(again.params() + again.param(p.name).offset, m.params() + p.offset, p.numel), 0.f) << p.name;

  BertConfig cls_config = loaded.config;
  cls_config.set_num_labels(3);
  BertModel classifier(cls_config, Task::SequenceClassification, kernels::Device::CPU, model::Init::Zeros);
  const model::LoadReport r = classifier.load_state_dict(loaded.tensors);
  EXPECT_EQ(r.initialised, (std::vector<std::string>{"classifier.weight", "classifier.bias"}));
  for (const std::string& n : r.unused) EXPECT_EQ(n.rfind("cls.", 0), 0u) << n;
  EXPECT_EQ(r.unused.size(), 7u);  // cls.predictions.bias, its transform's 4, cls.seq_relationship's 2
  const auto& pool = classifier.param("bert.pooler.dense.weight");
  EXPECT_EQ(std::vector<float>(classifier.params() + pool.offset, classifier.params() + pool.offset + pool.numel),
            file.at("bert.pooler.dense.weight").data);
  fs::remove_all(dir);
}
