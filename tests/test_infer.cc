// The inference path of eval / predict / serve: the last layer computed for
// the [CLS] rows only, sorted-by-length batching that keeps input order, and the one
// loader that reads fp32, int8 (`bertune quantize`) and quantize-on-load (--int8) models.
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <fstream>
#include <map>
#include <random>
#include <sstream>

#include <nlohmann/json.hpp>

#include "infer/evaluate.h"
#include "infer/model_dir.h"
#include "io/safetensors.h"
#include "kernels/ops.h"
#include "model/bert.h"
#include "numeric_compare.h"
#include "serve_fixture.h"
#include "util/error.h"
#include "util/paths.h"

using namespace bertune;
using namespace bertune::testing;
using model::Batch;
using model::BertConfig;
using model::BertModel;
using model::Task;
using Json = nlohmann::json;

namespace {

using numeric_compare::max_abs_diff;

float max_abs(const std::vector<float>& x) { return numeric_compare::max_abs(x.data(), x.size()); }

std::vector<float> eval_logits(BertModel& m, const Batch& batch, bool cls_only) {
  m.set_last_layer_cls_only(cls_only);
  m.forward(batch, /*train=*/false);
  return std::vector<float>(m.logits(), m.logits() + size_t(m.logits_rows()) * m.logits_cols());
}

// Fast (last layer on [CLS] rows) and full logits of one batch: equal within 1e-5, and
// not trivially (the logits are far from zero and differ between sequences).
void expect_fast_equals_full(BertModel& m, const Batch& batch, const std::string& what) {
  auto full = eval_logits(m, batch, false);
  auto fast = eval_logits(m, batch, true);
  ASSERT_EQ(fast.size(), full.size()) << what;
  const float err = max_abs_diff(fast.data(), full.data(), full.size());
  std::printf("[%s] fast vs full logits: max |diff| %.3g (max |logit| %.3g)\n", what.c_str(), err, max_abs(full));
  EXPECT_LE(err, 1e-5f) << what;
  EXPECT_GT(max_abs(full), 1e-3f) << what;
}

std::filesystem::path golden(const std::string& name) { return shared_path("golden/bert/" + name); }

TEST(FastInference, ClsOnlyLastLayerEqualsFullLayerOnTheGoldenModel) {
  BertConfig config = BertConfig::load(golden("tiny_config.json"));
  std::ifstream in(golden("tiny_inputs.json"));
  auto seqs = Json::parse(in)["sequences"].get<std::vector<std::vector<int32_t>>>();
  BertModel m(config, Task::SequenceClassification);
  m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  const auto ref = io::read_safetensors(golden("tiny_forward.safetensors")).at("logits");
  expect_fast_equals_full(m, Batch::packed(seqs), "golden packed");
  expect_fast_equals_full(m, Batch::padded(seqs, 0, config.pad_token_id), "golden padded-longest");
  expect_fast_equals_full(m, Batch::padded(seqs, 24, config.pad_token_id), "golden padded-24");
  // And still Hugging Face's logits (the default is the fast path).
  m.set_last_layer_cls_only(true);
  m.forward(Batch::packed(seqs), false);
  EXPECT_LE(max_abs_diff(m.logits(), ref.data.data(), ref.data.size()), 1e-4f);
}

// Random models of 1 and 3 layers, sequences of 1 to 40 tokens (a lone [CLS] included),
// packed and padded, several heads: the fast path never reads a row it skipped.
TEST(FastInference, ClsOnlyLastLayerEqualsFullLayerOnRandomShapes) {
  std::mt19937 rng(5);
  for (int layers : {1, 3}) {
    BertConfig config;
    config.vocab_size = 300;
    config.hidden_size = 48;
    config.num_hidden_layers = layers;
    config.num_attention_heads = 3;
    config.intermediate_size = 80;
    config.max_position_embeddings = 64;
    config.initializer_range = 0.2f;
    BertModel m(config, Task::SequenceClassification);
    m.init_weights(11 + layers);
    std::vector<std::vector<int32_t>> seqs;
    for (int len : {1, 7, 40, 2, 13, 33, 5}) {
      std::vector<int32_t> s(len);
      for (auto& t : s) t = 1 + int32_t(rng() % 299);
      seqs.push_back(s);
    }
    const std::string tag = std::to_string(layers) + " layer(s)";
    expect_fast_equals_full(m, Batch::packed(seqs), tag + " packed");
    expect_fast_equals_full(m, Batch::padded(seqs, 0, 0), tag + " padded-longest");
    expect_fast_equals_full(m, Batch::padded(seqs, 48, 0), tag + " padded-48");
  }
}

// Training forwards follow the switch too (tests/test_cls_train.cc compares losses and
// gradients): on, the last layer's other rows are not computed, so hidden_state(L) refuses;
// off, every row is there.
TEST(FastInference, TrainingForwardFollowsTheSwitch) {
  BertConfig config = BertConfig::load(golden("tiny_config.json"));
  std::ifstream in(golden("tiny_inputs.json"));
  auto j = Json::parse(in);
  auto seqs = j["sequences"].get<std::vector<std::vector<int32_t>>>();
  auto labels = j["labels"].get<std::vector<int32_t>>();
  BertModel m(config, Task::SequenceClassification);
  m.load_state_dict(io::read_safetensors(golden("tiny_init.safetensors")));
  std::vector<float> logits[2];
  for (int on = 0; on < 2; ++on) {
    m.set_last_layer_cls_only(on == 1);
    m.forward(Batch::packed(seqs, labels), /*train=*/true);
    logits[on].assign(m.logits(), m.logits() + 10);
    if (on)
      EXPECT_THROW(m.hidden_state(config.num_hidden_layers), Error);
    else
      EXPECT_NO_THROW(m.hidden_state(config.num_hidden_layers));
    EXPECT_NO_THROW(m.hidden_state(config.num_hidden_layers - 1));
  }
  EXPECT_LE(max_abs_diff(logits[0].data(), logits[1].data(), 10), 1e-5f);
}

struct InferDir : ::testing::Test {
  fs::path dir = fs::temp_directory_path() / ("bertune_infer_test_" + std::to_string(::getpid()));
  fs::path model;
  void SetUp() override {
    fs::remove_all(dir);
    model = write_tiny_classifier(dir / "model");
  }
  void TearDown() override { fs::remove_all(dir); }
};

// The int8 fast path too: Q of the [CLS] rows and K|V of all rows run the int8 kernels on
// slices of the fused QKV weight (per-row scales and per-row activation quantization make
// that the same arithmetic as the fused GEMM's rows).
TEST_F(InferDir, ClsOnlyLastLayerEqualsFullLayerWithInt8Weights) {
  auto loaded = infer::load_inference_model(model, /*int8=*/true);
  ASSERT_TRUE(loaded.int8_weights());
  std::vector<std::vector<int32_t>> seqs = {{2, 100, 200, 300, 3}, {2, 3}, {2, 5, 6, 7, 8, 9, 10, 11, 3}};
  expect_fast_equals_full(*loaded.model, Batch::packed(seqs), "int8 packed");
  expect_fast_equals_full(*loaded.model, Batch::padded(seqs, 0, 0), "int8 padded");
  auto fp32 = infer::load_inference_model(model, /*int8=*/false);
  EXPECT_FALSE(fp32.int8_weights());
  auto a = eval_logits(*loaded.model, Batch::packed(seqs), true);
  auto b = eval_logits(*fp32.model, Batch::packed(seqs), true);
  EXPECT_GT(max_abs_diff(a.data(), b.data(), a.size()), 0.f) << "int8 weights must change the logits";
}

// A whole int8 model (Int8Binding routes its linears) on the oneDNN kernel gives the
// portable kernel's logits bit for bit: packed rows across the kernel's 256-row chunks,
// the [CLS]-only last layer and the full one.
TEST_F(InferDir, OnednnInt8KernelGivesThePortableLogits) {
  if (const char* why = kernels::onednn_int8_unavailable()) GTEST_SKIP() << "the onednn kernel cannot run here: " << why;
  auto loaded = infer::load_inference_model(model, /*int8=*/true);
  ASSERT_TRUE(loaded.int8_weights());
  std::vector<std::vector<int32_t>> seqs;
  std::mt19937 rng(5);
  for (int i = 0; i < 14; ++i) {  // about 350 rows
    std::vector<int32_t> ids = {2};
    for (int k = 0, n = 3 + int(rng() % 40); k < n; ++k) ids.push_back(5 + int32_t(rng() % 30000));
    ids.push_back(3);
    seqs.push_back(ids);
  }
  for (bool cls_only : {true, false}) {
    kernels::set_int8_kernel(kernels::Int8Kernel::Portable);
    auto portable = eval_logits(*loaded.model, Batch::packed(seqs), cls_only);
    kernels::set_int8_kernel(kernels::Int8Kernel::Onednn);
    auto onednn = eval_logits(*loaded.model, Batch::packed(seqs), cls_only);
    kernels::set_int8_kernel(kernels::Int8Kernel::Auto);
    EXPECT_EQ(portable, onednn) << "cls_only " << cls_only;
    EXPECT_GT(max_abs(portable), 1e-3f);
  }
}

// The int8 kernels are CPU-only: the loader refuses int8 on any other device before it
// reads the weights.
TEST_F(InferDir, Int8OnCudaIsRefusedByTheLoader) {
  try {
    infer::load_inference_model(model, /*int8=*/true, kernels::Device::CUDA);
    FAIL() << "int8 on CUDA must be refused";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("--int8 runs on the CPU only"), std::string::npos) << e.what();
  }
}

// Sorted batches (eval, predict): the same predictions and logits, in input order, as
// sequential batches; each equal to that text classified alone.
TEST_F(InferDir, SortedByLengthEvaluationKeepsInputOrder) {
  auto loaded = infer::load_inference_model(model);
  BertModel& m = *loaded.model;
  infer::TokenizedData data;
  std::mt19937 rng(3);
  for (int i = 0; i < 23; ++i) {
    std::vector<int32_t> ids = {2};
    const int len = 1 + int(rng() % 30);
    for (int k = 0; k < len; ++k) ids.push_back(5 + int32_t(rng() % 30000));
    ids.push_back(3);
    data.ids.push_back(ids);
    data.lengths.push_back(int(ids.size()));
    data.labels.push_back(i % 2);
  }
  auto seq = infer::evaluate(m, data, 4, infer::Padding::Packed, 64, 0, true, false);
  auto sorted = infer::evaluate(m, data, 4, infer::Padding::Packed, 64, 0, true, true);
  EXPECT_EQ(seq.predictions, sorted.predictions);
  ASSERT_EQ(seq.logits.size(), sorted.logits.size());
  EXPECT_LE(max_abs_diff(seq.logits.data(), sorted.logits.data(), seq.logits.size()), 1e-5f);
  EXPECT_NEAR(seq.metrics.loss, sorted.metrics.loss, 1e-6);
  for (size_t i = 0; i < data.size(); ++i) {
    m.forward(Batch::packed({data.ids[i]}), false);
    EXPECT_LE(max_abs_diff(m.logits(), sorted.logits.data() + 2 * i, 2), 1e-5f) << "text " << i;
  }
}

// An evaluation split across two ranks (data-parallel training): each rank runs every other
// batch, the logits are summed over the ranks (here in turn, in one process), and the result is
// one process's evaluation exactly: the same logits, bit for bit, and the same metrics.
TEST_F(InferDir, EvaluationSplitAcrossRanksEqualsOneProcess) {
  auto loaded = infer::load_inference_model(model);
  BertModel& m = *loaded.model;
  infer::TokenizedData data;
  std::mt19937 rng(5);
  for (int i = 0; i < 21; ++i) {  // 6 batches of 4 (the last of 1): 3 on each rank
    std::vector<int32_t> ids = {2};
    for (int k = 0, len = 1 + int(rng() % 30); k < len; ++k) ids.push_back(5 + int32_t(rng() % 30000));
    ids.push_back(3);
    data.ids.push_back(ids);
    data.lengths.push_back(int(ids.size()));
    data.labels.push_back(i % 3 == 0);
  }
  const auto whole = infer::evaluate(m, data, 4, infer::Padding::Packed, 64, 0, true);
  std::vector<float> rank0_logits;
  infer::EvalShard rank0{0, 2, [&](float* logits, size_t n) { rank0_logits.assign(logits, logits + n); }};
  infer::EvalShard rank1{1, 2, [&](float* logits, size_t n) {
                           ASSERT_EQ(n, rank0_logits.size());
                           for (size_t i = 0; i < n; ++i) logits[i] += rank0_logits[i];
                         }};
  const auto part0 = infer::evaluate(m, data, 4, infer::Padding::Packed, 64, 0, true, false, &rank0);
  const auto part1 = infer::evaluate(m, data, 4, infer::Padding::Packed, 64, 0, true, false, &rank1);
  EXPECT_EQ(part0.steps, 3);
  EXPECT_EQ(part1.steps, 3);
  // Rank 0 alone has the rows of batches 0, 2, 4 and zeros for the rest (examples 4-7 are batch 1).
  EXPECT_EQ(rank0_logits[4 * 2], 0.f);
  EXPECT_NE(rank0_logits[0], 0.f);
  ASSERT_EQ(part1.logits.size(), whole.logits.size());
  for (size_t i = 0; i < whole.logits.size(); ++i) EXPECT_EQ(part1.logits[i], whole.logits[i]) << "logit " << i;
  EXPECT_EQ(part1.predictions, whole.predictions);
  EXPECT_EQ(part1.metrics.accuracy, whole.metrics.accuracy);
  EXPECT_EQ(part1.metrics.loss, whole.metrics.loss);
}

// The logits of each JSON line `predict` wrote (warnings, if any, are plain text).
std::vector<std::vector<float>> predicted_logits(const std::string& out) {
  std::vector<std::vector<float>> rows;
  std::istringstream in(out);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '{') rows.push_back(Json::parse(line)["logits"].get<std::vector<float>>());
  return rows;
}

// BERTUNE_INT8_KERNEL=onednn where the kernel cannot run (a build without oneDNN, or oneDNN
// held to AVX2, whose u8 x s8 products saturate): predict says why on stderr, runs the
// automatic choice, and gives the portable kernel's logits.
TEST_F(InferDir, Int8KernelOnednnWhereItCannotRunFallsBackWithTheReason) {
  const fs::path data = dir / "texts.tsv";
  {
    std::ofstream f(data);
    f << "id\tdocument\tlabel\n0\t정말 재밌어요 배우들 연기가 좋았다\t1\n1\t시간 아까움\t0\n";
  }
  auto predict = [&](const std::map<std::string, std::string>& env, const std::string& name) {
    for (const auto& [k, v] : env) setenv(k.c_str(), v.c_str(), 1);
    const fs::path log = dir / (name + ".log");
    EXPECT_EQ(run({"predict", "--model", model.string(), "--int8", "--input", data.string()}, log), 0) << slurp(log);
    for (const auto& [k, v] : env) unsetenv(k.c_str());
    return slurp(log);
  };
  const std::string portable = predict({{"BERTUNE_INT8_KERNEL", "portable"}}, "portable");
  std::string expected_reason, out;
  if (const char* why = kernels::onednn_int8_unavailable()) {  // this build or CPU: as it is
    expected_reason = why;
    out = predict({{"BERTUNE_INT8_KERNEL", "onednn"}}, "onednn");
  } else {  // oneDNN held to AVX2 (no VNNI)
    expected_reason = "oneDNN runs without VNNI here";
    out = predict({{"BERTUNE_INT8_KERNEL", "onednn"}, {"ONEDNN_MAX_CPU_ISA", "AVX2"}}, "onednn-avx2");
  }
  EXPECT_NE(out.find("BERTUNE_INT8_KERNEL=onednn: " + expected_reason), std::string::npos) << out;
  EXPECT_NE(out.find("; using "), std::string::npos) << out;
  ASSERT_EQ(predicted_logits(portable).size(), 2u) << portable;
  EXPECT_EQ(predicted_logits(out), predicted_logits(portable));
}

// `eval` / `predict` on an int8 directory equal `--int8` on the fp32 one (the same
// weights, the same kernels), and stay near fp32 without being equal to it.
TEST_F(InferDir, EvalAndPredictLoadInt8DirectoriesLikeInt8Flag) {
  const fs::path int8 = dir / "int8";
  ASSERT_EQ(run({"quantize", "--model", model.string(), "--output", int8.string()}, dir / "q.log"), 0)
      << slurp(dir / "q.log");
  const fs::path data = dir / "data.tsv";
  {
    std::ofstream f(data);
    f << "id\tdocument\tlabel\n";
    const char* texts[] = {"정말 재밌어요", "시간 아까움", "배우들 연기가 좋았다 다시 보고 싶다", "별로",
                           "그냥 그랬음 중간에 잠들었다", "최고의 영화!!", "스토리가 엉망", "음악이 좋다"};
    for (int i = 0; i < 8; ++i) f << i << "\t" << texts[i] << "\t" << i % 2 << "\n";
  }
  auto eval = [&](const fs::path& m, bool flag) {
    std::vector<std::string> args = {"eval", "--model", m.string(), "--data", data.string(), "--json", "--threads", "2"};
    if (flag) args.push_back("--int8");
    const fs::path log = dir / "eval.log";
    EXPECT_EQ(run(args, log), 0) << slurp(log);
    std::string out = slurp(log);
    return Json::parse(out.substr(out.rfind("\n{") + 1));
  };
  auto predict = [&](const fs::path& m, bool flag) {
    std::vector<std::string> args = {"predict", "--model", m.string(), "--input", data.string(), "--threads", "2"};
    if (flag) args.push_back("--int8");
    const fs::path log = dir / "predict.log";
    EXPECT_EQ(run(args, log), 0) << slurp(log);
    return predicted_logits(slurp(log));
  };
  const Json e_fp32 = eval(model, false), e_dir = eval(int8, false), e_flag = eval(model, true);
  EXPECT_EQ(e_dir["eval_loss"], e_flag["eval_loss"]);
  EXPECT_EQ(e_dir["eval_accuracy"], e_flag["eval_accuracy"]);
  EXPECT_NE(e_dir["eval_loss"], e_fp32["eval_loss"]);
  EXPECT_NEAR(e_dir["eval_loss"].get<double>(), e_fp32["eval_loss"].get<double>(), 0.05);
  const auto p_fp32 = predict(model, false), p_dir = predict(int8, false), p_flag = predict(model, true);
  ASSERT_EQ(p_fp32.size(), 8u);
  EXPECT_EQ(p_dir, p_flag);
  float worst = 0.f, scale = 0.f;
  for (size_t i = 0; i < p_fp32.size(); ++i) {
    worst = std::max(worst, max_abs_diff(p_fp32[i].data(), p_dir[i].data(), 2));
    scale = std::max(scale, max_abs(p_fp32[i]));
  }
  std::printf("int8 vs fp32 logits: max |diff| %.3g, max |logit| %.3g\n", worst, scale);
  EXPECT_GT(worst, 0.f);
  EXPECT_LE(worst, 0.05f * scale + 1e-3f);
}

}  // namespace
