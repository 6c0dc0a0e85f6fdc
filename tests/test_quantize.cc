// `bertune quantize`: the int8 directory it writes, read back, and served.
#include <gtest/gtest.h>

#include <cmath>

#include <nlohmann/json.hpp>

#include "infer/classifier.h"
#include "infer/quantize.h"
#include "quant/int8_model.h"
#include "serve_fixture.h"
#include "util/error.h"

using Json = nlohmann::json;
using namespace bertune;
using namespace bertune::testing;

namespace {

struct QuantizeTest : ::testing::Test {
  fs::path dir = fs::temp_directory_path() / ("bertune_quantize_test_" + std::to_string(::getpid()));
  fs::path model;
  void SetUp() override {
    fs::remove_all(dir);
    model = write_tiny_classifier(dir / "model");
  }
  void TearDown() override { fs::remove_all(dir); }
};

TEST_F(QuantizeTest, WritesInt8EncoderLinearsWithinHalfAStep) {
  const fs::path out = dir / "int8";
  ASSERT_EQ(wait_exit(spawn({"quantize", "--model", model.string(), "--output", out.string()}, dir / "q.log")), 0)
      << slurp(dir / "q.log");
  EXPECT_NE(slurp(dir / "q.log").find("12 linear weights int8"), std::string::npos) << slurp(dir / "q.log");
  EXPECT_TRUE(quant::is_int8_model_dir(out));
  EXPECT_FALSE(quant::is_int8_model_dir(model));
  const Json config = Json::parse(slurp(out / "config.json"));
  EXPECT_EQ(config["id2label"], Json::parse(slurp(model / "config.json"))["id2label"]);
  EXPECT_EQ(config[quant::kConfigMarker]["quantized_weights"].size(), 12u);
  EXPECT_TRUE(fs::exists(out / "vocab.txt"));
  // 12 I8 weights and their scales; every other tensor bit-identical to the fp32 model.
  auto m = quant::read_int8_safetensors(out / "model.safetensors");
  auto original = io::read_safetensors(model / "model.safetensors");
  ASSERT_EQ(m.int8.size(), 12u);
  ASSERT_EQ(m.fp32.size(), original.size());
  for (const auto& [name, t] : original) {
    ASSERT_TRUE(m.fp32.count(name)) << name;
    const auto& got = m.fp32.at(name);
    ASSERT_EQ(got.shape, t.shape) << name;
    if (!m.int8.count(name)) {
      EXPECT_EQ(got.data, t.data) << name;
      continue;
    }
    EXPECT_TRUE(quant::is_quantized_weight(name, t.shape));
    const auto& w = m.int8.at(name);
    for (int o = 0; o < w.out; ++o)
      for (int k = 0; k < w.in; ++k) {
        const size_t i = size_t(o) * w.in + k;
        ASSERT_LE(std::fabs(got.data[i] - t.data[i]), w.scale[o] * 0.5f * 1.001f) << name << " " << o << "," << k;
      }
  }
  // The fused QKV of layer 0 equals quantizing the stacked fp32 weights (per-row scales).
  auto linears = quant::encoder_int8_linears(m, 2);
  ASSERT_EQ(linears.size(), 8u);
  std::vector<float> stacked;
  for (const char* part : {"query", "key", "value"}) {
    const auto& t = original.at(std::string("bert.encoder.layer.0.attention.self.") + part + ".weight");
    stacked.insert(stacked.end(), t.data.begin(), t.data.end());
  }
  auto direct = kernels::quantize_linear(stacked.data(), 96, 32);
  EXPECT_EQ(linears[0].q, direct.q);
  EXPECT_EQ(linears[0].scale, direct.scale);
  EXPECT_EQ(linears[0].packed, direct.packed);
  EXPECT_EQ(linears[2].out, 64);  // intermediate [I, H]
  EXPECT_THROW(quant::encoder_int8_linears(m, 3), Error);
  EXPECT_FALSE(m.int8.count("classifier.weight"));
  EXPECT_FALSE(m.int8.count("bert.pooler.dense.weight"));
}

TEST_F(QuantizeTest, RefusesBadInputWithoutWritingAnything) {
  const fs::path out = dir / "int8";
  fs::create_directories(out);
  EXPECT_EQ(wait_exit(spawn({"quantize", "--model", model.string(), "--output", out.string()}, dir / "q.log")), 1);
  EXPECT_NE(slurp(dir / "q.log").find("exists"), std::string::npos) << slurp(dir / "q.log");
  EXPECT_TRUE(fs::is_empty(out));
  const fs::path out2 = dir / "int8b";
  EXPECT_EQ(wait_exit(spawn({"quantize", "--model", (dir / "missing").string(), "--output", out2.string()},
                                    dir / "q2.log")),
            1);
  EXPECT_FALSE(fs::exists(out2));
  // A quantized directory is not quantized again.
  ASSERT_EQ(wait_exit(spawn({"quantize", "--model", model.string(), "--output", out2.string()}, dir / "q3.log")), 0);
  EXPECT_EQ(wait_exit(spawn({"quantize", "--model", out2.string(), "--output", (dir / "c").string()},
                                    dir / "q4.log")),
            1);
  EXPECT_NE(slurp(dir / "q4.log").find("already quantized"), std::string::npos);
  // A torn file is an Error naming it.
  std::string bytes = slurp(out2 / "model.safetensors");
  io::write_file_atomic(dir / "torn.safetensors", bytes.substr(0, bytes.size() / 2));
  try {
    quant::read_int8_safetensors(dir / "torn.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("torn.safetensors"), std::string::npos) << e.what();
  }
}

// The int8 directory serves: answers close to the fp32 model's, but not identical
// (the int8 kernels really run: weights and activations quantized).
TEST_F(QuantizeTest, Int8DirectoryServes) {
  const fs::path out = dir / "int8";
  ASSERT_EQ(wait_exit(spawn({"quantize", "--model", model.string(), "--output", out.string()}, dir / "q.log")), 0);
  const std::vector<std::string> texts = {"정말 재밌어요", "시간 아까움. 최악의 영화", "그냥 그랬다"};
  auto ask = [&](const fs::path& m, std::vector<std::string> flags = {}) {
    ServerProcess server(m, dir / "serve.log", flags);
    auto c = server.client();
    auto r = c.Post("/v1/classify", Json{{"texts", texts}}.dump(), "application/json");
    if (!r || r->status != 200) throw std::runtime_error("no answer: " + slurp(dir / "serve.log"));
    return Json::parse(r->body)["predictions"];
  };
  Json fp32 = ask(model), int8 = ask(out);
  bool any_difference = false;
  for (size_t i = 0; i < texts.size(); ++i)
    for (int l = 0; l < 2; ++l) {
      const double a = fp32[i]["logits"][l], b = int8[i]["logits"][l];
      EXPECT_NEAR(a, b, 0.05 * std::max(1.0, std::fabs(a))) << texts[i];
      any_difference |= a != b;
    }
  EXPECT_TRUE(any_difference);
  // `serve --int8` on the fp32 directory quantizes the same way at load: the same bits.
  EXPECT_EQ(ask(model, {"--int8"}), int8);
}

// In process: the int8 directory's forward differs from an fp32 forward over the very
// same dequantized weights (so activations are quantized too: the int8 kernels run),
// while staying close to it.
TEST_F(QuantizeTest, Int8ClassifierRunsTheInt8Kernels) {
  const fs::path out = dir / "int8";
  infer::quantize_model_dir(model, out);
  auto c = infer::Classifier::load(out);
  EXPECT_TRUE(c->int8_weights());
  auto ids = c->tokenize({"정말 재밌어요", "시간 아까움. 최악의 영화"});
  auto int8_logits = c->logits({&ids[0], &ids[1]});

  model::BertModel fp32(model::BertConfig::load(out), model::Task::SequenceClassification);
  fp32.load_state_dict(quant::read_int8_safetensors(out / "model.safetensors").fp32);
  model::Batch batch = model::Batch::packed({ids[0].ids, ids[1].ids});
  fp32.forward(batch, /*train=*/false);
  std::vector<float> dequantized(fp32.logits(), fp32.logits() + 4);
  EXPECT_NE(int8_logits, dequantized);
  for (int i = 0; i < 4; ++i) EXPECT_NEAR(int8_logits[i], dequantized[i], 0.05 * std::max(1.f, std::fabs(dequantized[i])));
  c.reset();  // the binding goes with it: the same weights are fp32 again
  fp32.forward(batch, false);
  EXPECT_EQ(std::vector<float>(fp32.logits(), fp32.logits() + 4), dequantized);
}

}  // namespace
