// ELECTRA's pieces (train/electra.h) on a tiny random model: the discriminator's batch built
// from the generator's samples, the generator's config, and one step of both models.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/read_file.h"
#include "io/safetensors.h"
#include "model/bert.h"
#include "model/electra_pretrained.h"
#include "model/pretrained.h"
#include "train/electra.h"
#include "train/optimizer.h"
#include "util/error.h"

using namespace bertune;
namespace fs = std::filesystem;
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

// The discriminator can learn what ELECTRA asks of it, from context alone: each sequence is
// one token repeated, with two rows replaced by other tokens of the same vocabulary, so no
// token is suspicious by itself — only its disagreement with its neighbours gives it away.
// Predicting "original" everywhere scores 6/8 of the rows; the test asks for most replaced
// rows found. It fails if the replaced ids or their labels do not reach the head through
// attention (e.g. labels misaligned with rows, or the head reading the wrong rows).
// The loss sits at the base rate's entropy (0.54) for ~350 steps, then falls to ~0.01 within
// 200 (lr 1e-3 or 2e-3 alike): detection from context starts with a plateau, as the real
// pretraining's discriminator loss does (docs/pretraining.md, ELECTRA). 800 steps leave margin.
TEST(Electra, DiscriminatorLearnsToSpotReplacementsFromContext) {
  BertConfig c = tiny_config();
  c.hidden_size = 32;
  c.num_attention_heads = 4;
  c.intermediate_size = 64;
  BertModel discriminator(c, Task::ReplacedTokenDetection);
  discriminator.init_weights(11);
  train::AdamW opt(discriminator, {});
  uint64_t state = 12345;
  auto next = [&state](int n) {  // a small LCG: the data need not be good random numbers
    state = state * 6364136223846793005ull + 1442695040888963407ull;
    return static_cast<int>((state >> 33) % static_cast<uint64_t>(n));
  };
  auto make_batch = [&](int sequences) {
    std::vector<std::vector<int32_t>> seqs;
    std::vector<int32_t> labels;
    for (int s = 0; s < sequences; ++s) {
      const int32_t token = 5 + next(20);
      std::vector<int32_t> seq(8, token), seq_labels(8, 0);
      for (int k = 0; k < 2; ++k) {
        const int row = next(8);
        int32_t other = 5 + next(19);
        if (other >= token) ++other;  // any token of the same range but the repeated one
        seq[row] = other;
        seq_labels[row] = 1;
      }
      seqs.push_back(seq);
      labels.insert(labels.end(), seq_labels.begin(), seq_labels.end());
    }
    return Batch::packed(seqs, labels);
  };
  for (int step = 0; step < 800; ++step) {
    ASSERT_TRUE(std::isfinite(discriminator.forward(make_batch(16), /*train=*/true)));
    discriminator.backward();
    opt.step(1e-3);
  }
  const Batch test = make_batch(64);
  discriminator.forward(test, /*train=*/false);
  ASSERT_EQ(discriminator.logits_rows(), test.num_rows());
  int replaced = 0, found = 0, originals = 0, kept = 0;
  for (int t = 0; t < test.num_rows(); ++t) {
    const float* z = discriminator.logits() + 2 * t;
    const bool says_replaced = z[1] > z[0];
    if (test.labels[t] == 1) replaced += 1, found += says_replaced;
    else originals += 1, kept += !says_replaced;
  }
  EXPECT_GT(found, replaced * 8 / 10) << found << " of " << replaced << " replaced rows found";
  EXPECT_GT(kept, originals * 9 / 10) << kept << " of " << originals << " original rows kept";
}

// ---------------------------------------------------------------- the saved ELECTRA checkpoints

namespace {

// The encoder's last hidden state (T, H) of an ELECTRA checkpoint, row by token row: the
// checkpoint's encoder under a token classifier whose classifier is the identity.
std::vector<std::vector<float>> hidden_states(const model::ElectraCheckpoint& ck, const Batch& batch) {
  BertConfig c = ck.config;
  const int H = c.hidden_size;
  c.set_num_labels(H);
  BertModel encoder(c, Task::TokenClassification);
  encoder.load_state_dict(ck.tensors, 0);
  float* w = encoder.params() + encoder.param("classifier.weight").offset;
  std::fill(w, w + size_t(H) * H, 0.f);
  for (int i = 0; i < H; ++i) w[size_t(i) * H + i] = 1.f;
  std::fill_n(encoder.params() + encoder.param("classifier.bias").offset, H, 0.f);
  encoder.forward(batch, /*train=*/false);
  std::vector<std::vector<float>> rows(batch.num_rows());
  for (int r = 0; r < encoder.logits_rows(); ++r)
    rows[encoder.logit_token_rows()[r]].assign(encoder.logits() + size_t(r) * H, encoder.logits() + size_t(r + 1) * H);
  return rows;
}

// y = W x + b of a checkpoint's Linear (W [out, in]), in double.
std::vector<double> linear(const model::ElectraCheckpoint& ck, const std::string& module, const std::vector<double>& x) {
  const HostTensor &w = ck.tensors.at(module + ".weight"), &b = ck.tensors.at(module + ".bias");
  const size_t out = w.shape[0], in = w.shape[1];
  std::vector<double> y(out);
  for (size_t o = 0; o < out; ++o) {
    double acc = b.data[o];
    for (size_t i = 0; i < in; ++i) acc += double(w.data[o * in + i]) * x[i];
    y[o] = acc;
  }
  return y;
}

double gelu(double x) { return 0.5 * x * (1.0 + std::erf(x / std::sqrt(2.0))); }

TensorShapes shapes_of(const TensorMap& m) {
  TensorShapes s;
  for (const auto& [name, t] : m) s[name] = t.shape;
  return s;
}

// The names and shapes transformers' ElectraModel gives an encoder of config c (E = H: no
// embeddings_project).
TensorShapes electra_encoder_shapes(const BertConfig& c) {
  const int64_t V = c.vocab_size, H = c.hidden_size, I = c.intermediate_size;
  TensorShapes s{{"electra.embeddings.word_embeddings.weight", {V, H}},
                 {"electra.embeddings.position_embeddings.weight", {c.max_position_embeddings, H}},
                 {"electra.embeddings.token_type_embeddings.weight", {c.type_vocab_size, H}},
                 {"electra.embeddings.LayerNorm.weight", {H}},
                 {"electra.embeddings.LayerNorm.bias", {H}}};
  for (int l = 0; l < c.num_hidden_layers; ++l) {
    const std::string p = "electra.encoder.layer." + std::to_string(l) + ".";
    for (const char* m : {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"})
      s[p + m + ".weight"] = {H, H}, s[p + m + ".bias"] = {H};
    for (const char* m : {"attention.output.LayerNorm", "output.LayerNorm"}) s[p + m + ".weight"] = {H}, s[p + m + ".bias"] = {H};
    s[p + "intermediate.dense.weight"] = {I, H}, s[p + "intermediate.dense.bias"] = {I};
    s[p + "output.dense.weight"] = {H, I}, s[p + "output.dense.bias"] = {H};
  }
  return s;
}

}  // namespace

// ElectraForPreTraining's one logit per token is dense_prediction(GELU(dense(h))) on the
// encoder's hidden state h; computed so by hand from the saved tensors, it equals the trained
// discriminator's two logits' difference (its "replaced" probability, softmax(z)[1]).
TEST(ElectraCheckpoint, DiscriminatorIsElectraForPreTraining) {
  const BertConfig d = tiny_config();
  BertModel discriminator(d, Task::ReplacedTokenDetection);
  discriminator.init_weights(3);
  float* cls_bias = discriminator.params() + discriminator.param("discriminator_predictions.classifier.bias").offset;
  cls_bias[0] = 0.25f, cls_bias[1] = -0.5f;  // a bias that shows in the difference
  const model::ElectraCheckpoint ck = model::electra_discriminator_checkpoint(d, discriminator.state_dict());
  EXPECT_EQ(ck.config.family, model::Family::Electra);
  EXPECT_EQ(ck.config.embedding_size, d.hidden_size);
  EXPECT_EQ(ck.config.architectures, std::vector<std::string>{"ElectraForPreTraining"});
  TensorShapes expected = electra_encoder_shapes(d);
  const int64_t H = d.hidden_size;
  expected.insert({{"discriminator_predictions.dense.weight", {H, H}}, {"discriminator_predictions.dense.bias", {H}},
                   {"discriminator_predictions.dense_prediction.weight", {1, H}},
                   {"discriminator_predictions.dense_prediction.bias", {1}}});
  EXPECT_EQ(shapes_of(ck.tensors), expected);

  const Batch batch = Batch::padded({{2, 7, 4, 9, 3}, {2, 4, 11, 3}}, 6, 0);
  discriminator.forward(batch, /*train=*/false);
  const auto h = hidden_states(ck, batch);
  ASSERT_GT(discriminator.logits_rows(), 0);
  for (int r = 0; r < discriminator.logits_rows(); ++r) {
    const int t = discriminator.logit_token_rows()[r];
    ASSERT_EQ(h[t].size(), size_t(H)) << t;
    std::vector<double> a = linear(ck, "discriminator_predictions.dense", {h[t].begin(), h[t].end()});
    for (double& x : a) x = gelu(x);
    const double logit = linear(ck, "discriminator_predictions.dense_prediction", a)[0];
    const float* z = discriminator.logits() + 2 * r;
    EXPECT_NEAR(logit, double(z[1]) - z[0], 1e-4) << "row " << t;
  }
}

// ElectraForMaskedLM's logits are generator_lm_head(LayerNorm(GELU(dense(h)))), the head tied
// to the word embeddings; by hand from the saved tensors they equal the trained generator's.
TEST(ElectraCheckpoint, GeneratorIsElectraForMaskedLM) {
  const BertConfig g = train::generator_config(tiny_config(), 1, 8);
  BertModel generator(g, Task::MaskedLM);
  generator.init_weights(4);
  float* bias = generator.params() + generator.param("cls.predictions.bias").offset;
  for (int v = 0; v < g.vocab_size; ++v) bias[v] = 0.01f * v;
  const model::ElectraCheckpoint ck = model::electra_generator_checkpoint(g, generator.state_dict());
  EXPECT_EQ(ck.config.architectures, std::vector<std::string>{"ElectraForMaskedLM"});
  EXPECT_EQ(ck.config.num_hidden_layers, 1);
  TensorShapes expected = electra_encoder_shapes(g);
  const int64_t H = g.hidden_size, V = g.vocab_size;
  expected.insert({{"generator_predictions.dense.weight", {H, H}}, {"generator_predictions.dense.bias", {H}},
                   {"generator_predictions.LayerNorm.weight", {H}}, {"generator_predictions.LayerNorm.bias", {H}},
                   {"generator_lm_head.weight", {V, H}}, {"generator_lm_head.bias", {V}}});
  EXPECT_EQ(shapes_of(ck.tensors), expected);
  EXPECT_EQ(ck.tensors.at("generator_lm_head.weight").data, ck.tensors.at("electra.embeddings.word_embeddings.weight").data);

  const Batch batch = Batch::padded({{2, 7, 4, 9, 3}, {2, 4, 11, 3}}, 6, 0);
  generator.forward(batch, /*train=*/false);
  const auto h = hidden_states(ck, batch);
  const HostTensor &ln_g = ck.tensors.at("generator_predictions.LayerNorm.weight"),
                   &ln_b = ck.tensors.at("generator_predictions.LayerNorm.bias");
  ASSERT_GT(generator.logits_rows(), 0);
  for (int r = 0; r < generator.logits_rows(); ++r) {
    const int t = generator.logit_token_rows()[r];
    std::vector<double> a = linear(ck, "generator_predictions.dense", {h[t].begin(), h[t].end()});
    double mean = 0, var = 0;
    for (double& x : a) mean += (x = gelu(x)) / H;
    for (double x : a) var += (x - mean) * (x - mean) / H;
    for (int64_t i = 0; i < H; ++i) a[i] = (a[i] - mean) / std::sqrt(var + g.layer_norm_eps) * ln_g.data[i] + ln_b.data[i];
    const std::vector<double> logits = linear(ck, "generator_lm_head", a);
    for (int64_t v = 0; v < V; ++v)
      ASSERT_NEAR(logits[v], generator.logits()[size_t(r) * V + v], 1e-4) << "row " << t << " token " << v;
  }
}

// The generator's directory holds electra.embeddings.position_ids as I64 [1, P] = 0..P-1
// (transformers 4.30.2's ElectraForMaskedLM warns when it is missing; ElectraForPreTraining
// ignores it, so the discriminator's has none), and it loads back with the buffer skipped.
TEST(ElectraCheckpoint, GeneratorDirectoryHoldsPositionIdsAsInt64) {
  const fs::path dir = fs::temp_directory_path() / ("bertune_electra_position_ids_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  const BertConfig d = tiny_config(), g = train::generator_config(d, 1, 8);
  BertModel generator(g, Task::MaskedLM), discriminator(d, Task::ReplacedTokenDetection);
  generator.init_weights(4);
  discriminator.init_weights(5);
  const model::ElectraCheckpoint gen = model::electra_generator_checkpoint(g, generator.state_dict()),
                                 disc = model::electra_discriminator_checkpoint(d, discriminator.state_dict());
  model::save_pretrained(dir / "generator", gen.config, gen.refs(), {}, io::DType::F32, gen.buffers());
  model::save_pretrained(dir / "discriminator", disc.config, disc.refs(), {}, io::DType::F32, disc.buffers());

  const fs::path file = dir / "generator" / "model.safetensors";
  std::vector<io::TensorInfo> listed = io::list_safetensors(file);
  auto it = std::find_if(listed.begin(), listed.end(),
                         [](const io::TensorInfo& t) { return t.name == "electra.embeddings.position_ids"; });
  ASSERT_NE(it, listed.end());
  EXPECT_EQ(it->dtype, "I64");
  EXPECT_EQ(it->shape, (std::vector<int64_t>{1, g.max_position_embeddings}));
  // The values, from the file's bytes: u64 header length, JSON header, data.
  const std::string bytes = io::read_file(file);
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  const auto offsets = nlohmann::json::parse(bytes.substr(8, header_len))
                           .at("electra.embeddings.position_ids").at("data_offsets").get<std::vector<size_t>>();
  ASSERT_EQ(offsets[1] - offsets[0], 8u * g.max_position_embeddings);
  std::vector<int64_t> ids(g.max_position_embeddings);
  std::memcpy(ids.data(), bytes.data() + 8 + header_len + offsets[0], offsets[1] - offsets[0]);
  for (int i = 0; i < g.max_position_embeddings; ++i) EXPECT_EQ(ids[i], i);
  for (const auto& t : io::list_safetensors(dir / "discriminator" / "model.safetensors"))
    EXPECT_NE(t.name, "electra.embeddings.position_ids");

  // Loaded back: every float tensor as saved (the I64 data before them shifts no offset wrong),
  // the buffer skipped, and the directory starts an ELECTRA classifier.
  const model::PretrainedTensors loaded = model::load_pretrained_tensors(dir / "generator");
  EXPECT_EQ(loaded.tensors.count("electra.embeddings.position_ids"), 0u);
  ASSERT_EQ(loaded.tensors.size(), gen.tensors.size());
  for (const auto& [name, t] : gen.tensors) EXPECT_EQ(loaded.tensors.at(name).data, t.data) << name;
  BertModel classifier(loaded.config, Task::SequenceClassification, kernels::Device::CPU, model::Init::Zeros);
  const model::LoadReport report = classifier.load_state_dict(loaded.tensors, 1);
  for (const auto& name : report.unused) EXPECT_EQ(name.find("position_ids"), std::string::npos) << name;
  fs::remove_all(dir);
}

TEST(ElectraCheckpoint, RefusesWhatItCannotName) {
  const BertConfig d = tiny_config();
  BertModel classifier(d, Task::SequenceClassification);
  EXPECT_THROW(model::electra_discriminator_checkpoint(d, classifier.state_dict()), Error);  // bert.pooler, classifier
  BertConfig electra = d;
  electra.family = model::Family::Electra;
  BertModel discriminator(d, Task::ReplacedTokenDetection);
  EXPECT_THROW(model::electra_discriminator_checkpoint(electra, discriminator.state_dict()), Error);
}
