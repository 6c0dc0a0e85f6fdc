// ELECTRA's pieces (train/electra.h) on a tiny random model: the discriminator's batch built
// from the generator's samples, the generator's config, and one step of both models.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <vector>

#include "model/bert.h"
#include "train/electra.h"
#include "train/optimizer.h"
#include "util/error.h"

using namespace bertune;
using model::Batch;
using model::BertConfig;
using model::BertModel;
using model::Task;

namespace {

BertConfig tiny_config() {
  BertConfig c;
  c.vocab_size = 30;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 24;
  c.max_position_embeddings = 16;
  c.hidden_dropout_prob = 0.f;
  c.attention_probs_dropout_prob = 0.f;
  return c;
}

// Two sequences padded to 6: [CLS] a [MASK] b [SEP] | [CLS] [MASK] c [SEP], rows 2 and 7 selected.
Batch masked_batch() {
  Batch b = Batch::padded({{2, 7, 4, 9, 3}, {2, 4, 11, 3}}, 6, 0);
  b.labels.assign(b.input_ids.size(), -100);
  b.labels[2] = 8;   // the original under the first [MASK]
  b.labels[7] = 12;  // and under the second
  return b;
}

}  // namespace

TEST(Electra, GeneratorSharesTheEmbeddingShapeWithFewerLayers) {
  const BertConfig d = tiny_config();
  const BertConfig g = train::generator_config(d, 1, 8);
  EXPECT_EQ(g.num_hidden_layers, 1);
  EXPECT_EQ(g.intermediate_size, 8);
  EXPECT_EQ(g.hidden_size, d.hidden_size);
  EXPECT_EQ(g.vocab_size, d.vocab_size);
  EXPECT_THROW(train::generator_config(d, 0, 8), Error);
}

TEST(Electra, ReplacedTokenBatchLabelsWhatTheSamplesChanged) {
  BertModel generator(train::generator_config(tiny_config(), 1, 8), Task::MaskedLM);
  const Batch masked = masked_batch();
  generator.forward(masked, /*train=*/false);
  ASSERT_EQ(generator.logits_rows(), 2);
  int64_t replaced = -1;
  const Batch fake = train::replaced_token_batch(masked, generator, 7, 3, &replaced);
  ASSERT_EQ(fake.input_ids.size(), masked.input_ids.size());
  int64_t ones = 0;
  for (size_t t = 0; t < fake.labels.size(); ++t) {
    const bool pad = t == 5 || t >= 10;  // rows past each sequence's length
    if (pad) {
      EXPECT_EQ(fake.labels[t], -100) << t;
      continue;
    }
    const int32_t original = masked.labels[t] != -100 ? masked.labels[t] : masked.input_ids[t];
    EXPECT_EQ(fake.labels[t], fake.input_ids[t] != original ? 1 : 0) << t;
    if (t != 2 && t != 7) {
      EXPECT_EQ(fake.input_ids[t], masked.input_ids[t]) << "unselected rows keep their token";
    }
    ones += fake.labels[t] == 1;
  }
  EXPECT_EQ(replaced, ones);
  // Pure in (seed, draw, row): the same draw again gives the same tokens, other draws others.
  EXPECT_EQ(train::replaced_token_batch(masked, generator, 7, 3).input_ids, fake.input_ids);
  bool some_other = false;
  for (uint64_t draw = 4; draw < 40 && !some_other; ++draw)
    some_other = train::replaced_token_batch(masked, generator, 7, draw).input_ids != fake.input_ids;
  EXPECT_TRUE(some_other);
}

// A generator whose logits put all mass on one token samples that token.
TEST(Electra, SamplesFollowTheGeneratorsDistribution) {
  BertModel generator(train::generator_config(tiny_config(), 1, 8), Task::MaskedLM);
  float* bias = generator.params() + generator.param("cls.predictions.bias").offset;
  bias[17] = 1000.f;
  const Batch masked = masked_batch();
  generator.forward(masked, false);
  const Batch fake = train::replaced_token_batch(masked, generator, 1, 1);
  EXPECT_EQ(fake.input_ids[2], 17);
  EXPECT_EQ(fake.input_ids[7], 17);
  EXPECT_EQ(fake.labels[2], 1);
}

TEST(Electra, StepTrainsBothAndKeepsTheEmbeddingsShared) {
  const BertConfig d = tiny_config();
  BertModel generator(train::generator_config(d, 1, 8), Task::MaskedLM);
  BertModel discriminator(d, Task::ReplacedTokenDetection);
  generator.init_weights(2);
  discriminator.init_weights(3);
  train::AdamW g_opt(generator, {}), d_opt(discriminator, {});
  train::LrSchedule schedule{train::Schedule::Constant, 1e-2, 0, 10};
  train::ElectraStep step(generator, g_opt, discriminator, d_opt, schedule, 1.0, 50.0, 5);
  const size_t emb_end = discriminator.param("bert.embeddings.LayerNorm.bias").offset + d.hidden_size;
  const std::vector<float> d_before(discriminator.params(), discriminator.params() + discriminator.num_params());
  const std::vector<float> g_before(generator.params(), generator.params() + generator.num_params());
  const Batch masked = masked_batch();
  train::StepOutcome first{};
  for (int s = 0; s < 5; ++s) {
    const train::StepOutcome r = step.run(masked, s);
    ASSERT_TRUE(r.finite);
    EXPECT_NEAR(r.loss, step.last_losses().generator + 50 * step.last_losses().discriminator, 1e-3 * r.loss);
    if (s == 0) first = r;
  }
  EXPECT_GT(first.grad_norm, 0);
  step.share_embeddings();
  EXPECT_TRUE(std::equal(generator.params(), generator.params() + emb_end, discriminator.params()));
  // Both moved: the discriminator's head and embeddings, the generator's encoder.
  auto moved = [](const float* now, const std::vector<float>& before, size_t from, size_t to) {
    float m = 0;
    for (size_t i = from; i < to; ++i) m = std::max(m, std::fabs(now[i] - before[i]));
    return m;
  };
  EXPECT_GT(moved(discriminator.params(), d_before, 0, emb_end), 0.f);
  const auto& head = discriminator.param("discriminator_predictions.classifier.weight");
  EXPECT_GT(moved(discriminator.params(), d_before, head.offset, head.offset + head.numel), 0.f);
  const auto& q = generator.param("bert.encoder.layer.0.attention.self.query.weight");
  EXPECT_GT(moved(generator.params(), g_before, q.offset, q.offset + q.numel), 0.f);
  // The gradients were consumed.
  EXPECT_EQ(*std::max_element(generator.grads(), generator.grads() + generator.num_params()), 0.f);
  EXPECT_EQ(*std::max_element(discriminator.grads(), discriminator.grads() + discriminator.num_params()), 0.f);
}
