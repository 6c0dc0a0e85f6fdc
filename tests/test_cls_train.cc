// Training with the last layer computed for the [CLS] rows only
// (BertModel::set_last_layer_cls_only, the default) gives a training step the loss and
// gradients of the full layer — dropout on and off (the [CLS] rows draw the full layer's
// masks), packed and padded batches — and its kernels (first-query attention forward and
// backward, dropout_rows) agree with the full ones on the rows they compute.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include "kernels/ops.h"
#include "model/bert.h"
#include "numeric_compare.h"

using namespace bertune;
using kernels::Device;
using model::Batch;
using model::BertConfig;
using model::BertModel;
using model::Task;
using namespace numeric_compare;

namespace {

// Sequences of the lengths given, random ids in [1, vocab), a [CLS]-like 2 first.
std::vector<std::vector<int32_t>> random_sequences(const std::vector<int>& lengths, int vocab, uint32_t seed) {
  std::mt19937 rng(seed);
  std::vector<std::vector<int32_t>> seqs;
  for (int len : lengths) {
    std::vector<int32_t> s(len);
    for (auto& t : s) t = 1 + int32_t(rng() % uint32_t(vocab - 1));
    s[0] = 2;
    seqs.push_back(s);
  }
  return seqs;
}

// A random model whose LayerNorms and biases are off 1 / 0, so every path carries gradient.
BertModel random_model(int layers, float dropout, uint64_t seed) {
  BertConfig c;
  c.vocab_size = 120;
  c.hidden_size = 48;
  c.num_hidden_layers = layers;
  c.num_attention_heads = 3;
  c.intermediate_size = 80;
  c.max_position_embeddings = 64;
  c.hidden_dropout_prob = dropout;
  c.attention_probs_dropout_prob = dropout;
  c.initializer_range = 0.2f;
  BertModel m(c, Task::SequenceClassification);
  m.init_weights(seed);
  std::mt19937 rng(uint32_t(seed) + 1);
  std::uniform_real_distribution<float> u(-0.05f, 0.05f);
  for (size_t i = 0; i < m.num_params(); ++i) m.params()[i] += u(rng);
  return m;
}

struct StepResult {
  float loss = 0.f;
  std::vector<float> logits, grads;
  uint64_t next_dropout_step = 0;
};

// One training step's forward and backward at a fixed dropout seed and step.
StepResult training_step(BertModel& m, const Batch& batch, bool cls_only) {
  m.set_last_layer_cls_only(cls_only);
  m.set_dropout_seed(17);
  m.set_dropout_step(5);
  StepResult r;
  r.loss = m.forward(batch, /*train=*/true);
  r.logits.assign(m.logits(), m.logits() + size_t(m.logits_rows()) * m.logits_cols());
  r.next_dropout_step = m.dropout_step();
  m.zero_grad();
  m.backward();
  r.grads.assign(m.grads(), m.grads() + m.num_params());
  return r;
}

// Loss and logits within 4e-6 relative (measured: up to 2.1e-6 on the logits); every gradient
// tensor within 1e-5 of its largest element (measured: at most ~4e-6 — the two paths sum the
// same products in other orders, GEMMs over B rows instead of T, and float32 rounding grows
// through the layers below; a wrong dropout mask would be O(1)). Tensors whose gradient is zero in exact arithmetic
// (the key biases: softmax ignores a per-row shift) hold float noise on both sides,
// bounded in absolute terms instead.
void expect_same_step(BertModel& m, const Batch& batch, const std::string& what) {
  const StepResult full = training_step(m, batch, false), fast = training_step(m, batch, true);
  EXPECT_EQ(fast.next_dropout_step, full.next_dropout_step) << what;
  const float loss_rel = std::fabs(fast.loss - full.loss) / std::fabs(full.loss);
  EXPECT_LE(loss_rel, 4e-6f) << what << ": loss " << fast.loss << " vs " << full.loss;
  EXPECT_LE(max_abs_diff(fast.logits.data(), full.logits.data(), full.logits.size()),
            4e-6f * max_abs(full.logits.data(), full.logits.size()))
      << what;
  const float global = max_abs(full.grads.data(), full.grads.size());
  float worst = 0.f;
  std::string worst_name;
  for (const auto& p : m.param_info()) {
    const float* a = fast.grads.data() + p.offset;
    const float* b = full.grads.data() + p.offset;
    const float scale = max_abs(b, p.numel), err = max_abs_diff(a, b, p.numel);
    if (scale < 1e-6f * global) {
      EXPECT_LE(err, 1e-5f * global) << what << " " << p.name;
      continue;
    }
    EXPECT_LE(err, 1e-5f * scale) << what << " " << p.name << " max |grad| " << scale;
    if (err / scale > worst) worst = err / scale, worst_name = p.name;
  }
  std::printf("[%s] loss %.9g vs %.9g (rel %.2g); worst gradient error %.2g of its tensor's max (%s)\n",
              what.c_str(), fast.loss, full.loss, loss_rel, worst, worst_name.c_str());
  EXPECT_GT(global, 1e-4f) << what;  // not trivially equal
}

}  // namespace

TEST(ClsOnlyTraining, StepEqualsTheFullLastLayer) {
  const std::vector<int> lengths = {1, 7, 40, 2, 13, 33, 5};  // a lone [CLS] included
  for (int layers : {1, 3}) {
    for (float dropout : {0.f, 0.3f}) {
      BertModel m = random_model(layers, dropout, 11 + layers);
      const auto seqs = random_sequences(lengths, m.config().vocab_size, 3 + layers);
      const std::vector<int32_t> labels = {0, 1, 1, 0, 1, 0, 0};
      const std::string tag = std::to_string(layers) + " layer(s), dropout " + std::to_string(dropout).substr(0, 3);
      expect_same_step(m, Batch::packed(seqs, labels), tag + ", packed");
      expect_same_step(m, Batch::padded(seqs, 0, 0, labels), tag + ", padded-longest");
      expect_same_step(m, Batch::padded(seqs, 48, 0, labels), tag + ", padded-48");
    }
  }
}

// Dropout really reaches the last layer: other masks (another step) give another loss,
// and the [CLS]-only path follows the full one there too.
TEST(ClsOnlyTraining, DropoutMasksOfTheLastLayerMatter) {
  BertModel m = random_model(1, 0.3f, 4);
  const auto seqs = random_sequences({9, 4, 17}, m.config().vocab_size, 8);
  const Batch batch = Batch::packed(seqs, {1, 0, 1});
  float loss[2][2];
  for (int cls_only = 0; cls_only < 2; ++cls_only) {
    m.set_last_layer_cls_only(cls_only == 1);
    for (int step = 0; step < 2; ++step) {
      m.set_dropout_step(100 + step);
      loss[cls_only][step] = m.forward(batch, true);
    }
  }
  EXPECT_NE(loss[0][0], loss[0][1]);
  EXPECT_NEAR(loss[1][0], loss[0][0], 1e-6f * loss[0][0]);
  EXPECT_NEAR(loss[1][1], loss[0][1], 1e-6f * loss[0][1]);
}

// The kernels against attention_forward / attention_backward on the first row of each
// sequence (dctx zero on every other row, as the loss makes it), dropout on and off,
// packed and padded spans.
TEST(ClsOnlyTraining, FirstQueryAttentionMatchesTheFullAttention) {
  const int nh = 3, hd = 8, H = nh * hd, T = 19;
  std::vector<int32_t> offsets = {0, 5, 14, 15, 19}, lengths = {5, 6, 1, 2};
  std::vector<int64_t> prob_offsets = {0};
  const int B = 4;
  for (int b = 0; b < B; ++b) {
    const int n = offsets[b + 1] - offsets[b];
    prob_offsets.push_back(prob_offsets.back() + int64_t(nh) * n * n);
  }
  kernels::AttentionShape shape{offsets.data(), lengths.data(), B, nh, hd, prob_offsets.data()};
  const auto qkv = randn(size_t(T) * 3 * H, 30), dctx_cls = randn(size_t(B) * H, 31);
  std::vector<float> q(size_t(B) * H), kv(size_t(T) * 2 * H), dctx(size_t(T) * H, 0.f);
  for (int t = 0; t < T; ++t)
    std::copy_n(qkv.begin() + size_t(t) * 3 * H + H, 2 * H, kv.begin() + size_t(t) * 2 * H);
  for (int b = 0; b < B; ++b) {
    std::copy_n(qkv.begin() + size_t(offsets[b]) * 3 * H, H, q.begin() + size_t(b) * H);
    std::copy_n(dctx_cls.begin() + size_t(b) * H, H, dctx.begin() + size_t(offsets[b]) * H);
  }
  for (float p : {0.f, 0.25f}) {
    const auto drop = kernels::Dropout::make(3, 1, 4, p);
    std::vector<float> ctx(size_t(T) * H), probs(prob_offsets.back()), dqkv(size_t(T) * 3 * H);
    kernels::attention_forward(Device::CPU, ctx.data(), probs.data(), qkv.data(), shape, drop);
    kernels::attention_backward(Device::CPU, dqkv.data(), dctx.data(), qkv.data(), probs.data(), shape, drop);
    std::vector<float> fctx(size_t(B) * H), fprobs(size_t(nh) * T), dq(size_t(B) * H), dkv(size_t(T) * 2 * H);
    kernels::attention_first_query_forward(Device::CPU, fctx.data(), fprobs.data(), q.data(), kv.data(), shape, drop);
    kernels::attention_first_query_backward(Device::CPU, dq.data(), dkv.data(), dctx_cls.data(), q.data(),
                                            kv.data(), fprobs.data(), shape, drop);
    float e_ctx = 0.f, e_probs = 0.f, e_dq = 0.f, e_dkv = 0.f;
    for (int b = 0; b < B; ++b) {
      const int o = offsets[b], n = offsets[b + 1] - o;
      e_ctx = std::max(e_ctx, max_abs_diff(&fctx[size_t(b) * H], &ctx[size_t(o) * H], H));
      e_dq = std::max(e_dq, max_abs_diff(&dq[size_t(b) * H], &dqkv[size_t(o) * 3 * H], H));
      for (int h = 0; h < nh; ++h)
        e_probs = std::max(e_probs, max_abs_diff(&fprobs[size_t(o) * nh + size_t(h) * n],
                                                 &probs[prob_offsets[b] + int64_t(h) * n * n], n));
    }
    for (int t = 0; t < T; ++t)
      e_dkv = std::max(e_dkv, max_abs_diff(&dkv[size_t(t) * 2 * H], &dqkv[size_t(t) * 3 * H + H], 2 * H));
    std::printf("[p=%.2f] first query vs full: ctx %.2g probs %.2g dq %.2g dkv %.2g\n", p, e_ctx, e_probs, e_dq,
                e_dkv);
    EXPECT_LE(e_ctx, 1e-5f);
    EXPECT_LE(e_probs, 1e-6f);
    EXPECT_LE(e_dq, 1e-5f);
    EXPECT_LE(e_dkv, 1e-5f);
    EXPECT_GT(max_abs(dkv.data(), dkv.size()), 1e-2f);
  }
  std::vector<float> none(size_t(B) * H);  // inference: no probs kept
  kernels::attention_first_query_forward(Device::CPU, none.data(), nullptr, q.data(), kv.data(), shape);
  EXPECT_THROW(kernels::attention_first_query_backward(Device::CPU, none.data(), none.data(), none.data(), q.data(),
                                                       kv.data(), nullptr, shape, {}),
               std::exception);
}

TEST(ClsOnlyTraining, DropoutRowsDrawsTheRowsMasksInPlace) {
  const int T = 12, W = 10;
  const auto x = randn(size_t(T) * W, 40);
  const auto drop = kernels::Dropout::make(9, 2, 3, 0.4f);
  std::vector<float> full(x.size());
  kernels::dropout_forward(Device::CPU, full.data(), x.data(), x.size(), drop);
  const std::vector<int32_t> rows = {0, 3, 4, 11};
  std::vector<float> picked;
  for (int r : rows) picked.insert(picked.end(), x.begin() + size_t(r) * W, x.begin() + size_t(r + 1) * W);
  kernels::dropout_rows(Device::CPU, picked.data(), picked.data(), rows.data(), int(rows.size()), W, drop);
  for (size_t i = 0; i < rows.size(); ++i)
    for (int j = 0; j < W; ++j) EXPECT_EQ(picked[i * W + j], full[size_t(rows[i]) * W + j]) << i << "," << j;
}
