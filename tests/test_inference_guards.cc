// What inference refuses rather than answer meaninglessly: weights holding NaN or Inf
// (predict, eval, quantize, serve refuse to load them), logits that overflow with finite
// weights (predict/eval exit 1, serve answers 500 non_finite), a model without a trained
// head in serve; and the Hugging Face Inference API's text-classification "parameters".
#include <gtest/gtest.h>

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "infer/classifier.h"
#include "infer/metrics.h"
#include "infer/model_dir.h"
#include "infer/predictions.h"
#include "serve/hf_api.h"
#include "serve_fixture.h"
#include "util/error.h"

using Json = nlohmann::json;
using namespace bertune;
using namespace bertune::testing;

namespace {

const float kNaN = std::numeric_limits<float>::quiet_NaN();
const float kInf = std::numeric_limits<float>::infinity();

// Rewrites `dir`/model.safetensors with `edit` applied to its tensors.
template <class Edit>
void edit_weights(const fs::path& dir, Edit edit) {
  TensorMap tensors = io::read_safetensors(dir / "model.safetensors");
  edit(tensors);
  std::vector<TensorRef> refs;
  for (const auto& [name, t] : tensors) refs.push_back({name, t.shape, t.data.data()});
  io::write_safetensors(dir / "model.safetensors", refs);
}

// Overwrites float `index` of tensor `name` in a safetensors file in place (any file the
// format allows, I8 tensors beside it included).
void poke_float(const fs::path& file, const std::string& name, size_t index, float value) {
  std::string bytes = io::read_file(file);
  uint64_t header = 0;
  std::memcpy(&header, bytes.data(), 8);
  const Json meta = Json::parse(bytes.substr(8, header));
  ASSERT_EQ(meta.at(name).at("dtype"), "F32");
  const size_t at = 8 + header + meta.at(name).at("data_offsets")[0].get<size_t>() + 4 * index;
  std::memcpy(bytes.data() + at, &value, 4);
  io::write_file_atomic(file, bytes);
}

// `bertune ARGS` that must end by itself (a command refusing its model; serve refusing to
// start): killed after 120 s, which reads as -1, rather than waited for forever.
int run_to_exit(const std::vector<std::string>& args, const fs::path& log) {
  const pid_t pid = spawn(args, log);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  int status = 0;
  while (waitpid(pid, &status, WNOHANG) != pid) {
    if (std::chrono::steady_clock::now() > deadline) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
      return -1;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Json post(HttpClient& c, const std::string& path, const std::string& body, int* status) {
  auto r = c.Post(path, body, "application/json");
  if (!r) throw std::runtime_error("no answer from " + path);
  *status = r->status;
  return Json::parse(r->body);
}

struct GuardTest : ::testing::Test {
  fs::path dir = fs::temp_directory_path() / ("bertune_guard_test_" + std::to_string(::getpid()));
  void SetUp() override { fs::remove_all(dir); }
  void TearDown() override { fs::remove_all(dir); }
  fs::path log(const std::string& name) const { return dir / (name + ".log"); }
  // An NSMC TSV of `texts` (labels alternate), for eval.
  fs::path write_tsv(const std::vector<std::string>& texts) const {
    std::string tsv = "id\tdocument\tlabel\n";
    for (size_t i = 0; i < texts.size(); ++i) tsv += std::to_string(i) + "\t" + texts[i] + "\t" + std::to_string(i % 2) + "\n";
    io::write_file_atomic(dir / "data.tsv", tsv);
    return dir / "data.tsv";
  }
};

TEST(NonFinite, CountedByExponentBits) {
  const std::vector<float> v = {0.f, -0.f, FLT_MAX, -FLT_MAX, FLT_MIN / 4, kNaN, kInf, -kInf, -kNaN, 1.f};
  EXPECT_EQ(infer::count_non_finite(v.data(), v.size()), 4u);
  EXPECT_EQ(infer::count_non_finite(v.data(), 5), 0u);
  const std::vector<float> logits = {1.f, 2.f, 3.f, 4.f, 5.f, kInf, kNaN, 0.f};
  EXPECT_EQ(infer::first_non_finite_row(logits.data(), 4, 2), 2);
  EXPECT_EQ(infer::first_non_finite_row(logits.data(), 2, 2), -1);
}

TEST(NonFinite, RequireFiniteNamesFileTensorAndCounts) {
  TensorMap t;
  t["a.weight"] = {{4}, {1.f, 2.f, 3.f, 4.f}};
  EXPECT_NO_THROW(infer::require_finite(t, "m/model.safetensors"));
  t["b.weight"] = {{3}, {kNaN, 1.f, kNaN}};
  t["c.bias"] = {{2}, {kInf, -kInf}};
  try {
    infer::require_finite(t, "m/model.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("m/model.safetensors: tensor b.weight holds 2 NaN values (and 1 more tensors)"),
              std::string::npos)
        << e.what();
  }
  t.erase("b.weight");
  try {
    infer::require_finite(t, "m/model.safetensors");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tensor c.bias holds 2 infinite values;"), std::string::npos) << e.what();
  }
}

// NaN weights: every command that loads the model for inference refuses it, naming the
// file and tensor; quantize writes nothing; serve does not start.
TEST_F(GuardTest, NaNWeightsAreRefusedByEveryInferenceCommand) {
  const fs::path model = write_tiny_classifier(dir / "model");
  const std::string tensor = "bert.encoder.layer.1.attention.self.query.weight";
  edit_weights(model, [&](TensorMap& t) {
    for (int i = 0; i < 12; ++i) t.at(tensor).data[static_cast<size_t>(i) * 7] = kNaN;
  });
  const std::string expected = (model / "model.safetensors").string() + ": tensor " + tensor + " holds 12 NaN values";
  const fs::path data = write_tsv({"좋아요", "별로"});
  const fs::path out = dir / "int8";
  const std::vector<std::vector<std::string>> commands = {
      {"predict", "--model", model.string(), "좋아요"},
      {"predict", "--model", model.string(), "--int8", "좋아요"},
      {"eval", "--model", model.string(), "--data", data.string()},
      {"quantize", "--model", model.string(), "--output", out.string()},
      {"serve", "--model", model.string(), "--port", "0"},
  };
  for (const auto& args : commands) {
    EXPECT_EQ(run_to_exit(args, log("nan")), 1) << args[0] << ": " << slurp(log("nan"));
    EXPECT_NE(slurp(log("nan")).find(expected), std::string::npos) << args[0] << ": " << slurp(log("nan"));
    EXPECT_EQ(slurp(log("nan")).find("\"probs\""), std::string::npos) << args[0];
  }
  EXPECT_FALSE(fs::exists(out)) << "quantize must write nothing";

  // An int8 directory whose scale went NaN dequantizes to NaN weights: refused the same way.
  const fs::path good = write_tiny_classifier(dir / "good");
  ASSERT_EQ(run({"quantize", "--model", good.string(), "--output", out.string()}, log("q")), 0) << slurp(log("q"));
  poke_float(out / "model.safetensors", tensor + "_scale", 3, kInf);
  EXPECT_EQ(run({"predict", "--model", out.string(), "좋아요"}, log("int8")), 1) << slurp(log("int8"));
  EXPECT_NE(slurp(log("int8")).find("int8/model.safetensors: tensor " + tensor), std::string::npos)
      << slurp(log("int8"));
}

// Finite weights whose logits overflow on some texts only. A probe copy of the tiny model
// with one label per pooled dimension (an identity head) shows each text's pooled output;
// the pooled dimension that separates the texts best is then saturated at +-1 around a
// threshold between them (its pooler row scaled up), and logit 0 = 2e38 * p + 2e38 is
// +inf for the texts above it, 0 for those below. Which texts overflow is found in
// process, through the same classifier the commands run.
struct OverflowTest : GuardTest {
  fs::path model;
  std::vector<std::string> texts;  // finite ones first, then one that overflows
  size_t bad = 0;                  // index of the first that overflows
  const std::vector<std::string> pool = {"정말 재밌어요", "시간 아까움. 최악의 영화", "배우들 연기가 좋았다",
                                         "그냥 그랬다", "아 더빙.. 진짜 짜증나네요 목소리", "평점이 너무 낮네요 ㅋㅋ",
                                         "다시 보고 싶은 영화", "연기도 음악도 좋았다", "지루했다", "최고"};

  std::vector<std::vector<float>> logits_of(const fs::path& m) const {
    auto classifier = infer::Classifier::load(m);
    std::vector<std::vector<float>> out;
    for (const auto& text : pool) {
      auto ids = classifier->tokenize({text});
      out.push_back(classifier->logits({&ids[0]}));
    }
    return out;
  }

  void SetUp() override {
    GuardTest::SetUp();
    const fs::path probe = write_tiny_classifier(dir / "probe");
    Json config = Json::parse(io::read_file(probe / "config.json"));
    const int H = config["hidden_size"];
    config["id2label"] = Json::object();
    config.erase("label2id");
    for (int i = 0; i < H; ++i) config["id2label"][std::to_string(i)] = "p" + std::to_string(i);
    io::write_file_atomic(probe / "config.json", config.dump());
    edit_weights(probe, [&](TensorMap& t) {
      t["classifier.weight"] = {{H, H}, std::vector<float>(size_t(H) * H, 0.f)};
      for (int i = 0; i < H; ++i) t["classifier.weight"].data[size_t(i) * H + i] = 1.f;
      t["classifier.bias"] = {{H}, std::vector<float>(H, 0.f)};
    });
    const auto pooled = logits_of(probe);  // [text][dimension]
    int dim = 0;
    float threshold = 0, gap = 0;
    for (int d = 0; d < H; ++d) {
      std::vector<float> v;
      for (const auto& p : pooled) v.push_back(p[d]);
      std::sort(v.begin(), v.end());
      for (size_t k = 3; k + 3 < v.size(); ++k)  // a threshold with 3 texts or more on each side
        if (v[k] - v[k - 1] > gap) gap = v[k] - v[k - 1], threshold = (v[k] + v[k - 1]) / 2, dim = d;
    }
    ASSERT_GT(gap, 1e-3f);
    model = write_tiny_classifier(dir / "overflow");
    edit_weights(model, [&](TensorMap& t) {
      // tanh(s * (a - atanh(threshold))) = +-1: the sign of pooled[dim] - threshold.
      const float s = 1e5f / gap;
      auto& w = t.at("bert.pooler.dense.weight");
      for (int k = 0; k < H; ++k) w.data[size_t(dim) * H + k] *= s;
      auto& b = t.at("bert.pooler.dense.bias").data[size_t(dim)];
      b = s * (b - std::atanh(threshold));
      auto& c = t.at("classifier.weight");
      std::fill(c.data.begin(), c.data.end(), 0.f);
      c.data[size_t(dim)] = 2e38f;
      t.at("classifier.bias").data = {2e38f, 0.f};
    });
    std::vector<std::string> finite, overflowing;
    const auto logits = logits_of(model);
    for (size_t i = 0; i < pool.size(); ++i) (std::isfinite(logits[i][0]) ? finite : overflowing).push_back(pool[i]);
    ASSERT_GE(finite.size(), 3u);
    ASSERT_GE(overflowing.size(), 3u);
    texts = finite;
    bad = texts.size();
    texts.push_back(overflowing[0]);
  }
};

TEST_F(OverflowTest, PredictAndEvalExitOneNamingTheText) {
  std::vector<std::string> args = {"predict", "--model", model.string()};
  args.insert(args.end(), texts.begin(), texts.end());
  EXPECT_EQ(run(args, log("predict")), 1) << slurp(log("predict"));
  const std::string printed = slurp(log("predict"));
  EXPECT_NE(printed.find("text " + std::to_string(bad + 1) + ": the model's logits ["), std::string::npos) << printed;
  EXPECT_NE(printed.find("inf"), std::string::npos) << printed;
  EXPECT_EQ(printed.find("\"probs\""), std::string::npos) << "nothing printed for the finite texts: " << printed;

  // One text a line in a file: named by its line; --output is not written.
  std::string lines;
  for (const auto& t : texts) lines += t + "\n";
  io::write_file_atomic(dir / "texts.txt", lines);
  EXPECT_EQ(run({"predict", "--model", model.string(), "--input", (dir / "texts.txt").string(), "--output",
                 (dir / "out.jsonl").string()},
                log("predict_file")),
            1);
  EXPECT_NE(slurp(log("predict_file")).find("texts.txt:" + std::to_string(bad + 1) + ": the model's logits"),
            std::string::npos)
      << slurp(log("predict_file"));
  EXPECT_FALSE(fs::exists(dir / "out.jsonl"));

  const fs::path data = write_tsv(texts);  // a header line, then one text a line
  for (const char* json : {"", "--json"}) {
    std::vector<std::string> eval = {"eval", "--model", model.string(), "--data", data.string()};
    if (*json) eval.push_back(json);
    EXPECT_EQ(run(eval, log("eval")), 1) << slurp(log("eval"));
    EXPECT_NE(slurp(log("eval")).find("data.tsv:" + std::to_string(bad + 2) + ": the model's logits"),
              std::string::npos)
        << slurp(log("eval"));
  }
  // Without the overflowing text everything answers.
  args.pop_back();
  EXPECT_EQ(run(args, log("finite")), 0) << slurp(log("finite"));
}

TEST_F(OverflowTest, ServeAnswers500NonFiniteAndCountsIt) {
  ServerProcess server(model, log("serve"));
  auto c = server.client();
  int status = 0;
  Json j = post(c, "/v1/classify", Json{{"texts", texts}}.dump(), &status);
  EXPECT_EQ(status, 500) << j.dump();
  EXPECT_EQ(j["error"]["kind"], "non_finite") << j.dump();
  EXPECT_NE(j["error"]["message"].get<std::string>().find("\"texts\"[" + std::to_string(bad) + "]"), std::string::npos)
      << j.dump();
  j = post(c, "/", Json{{"inputs", texts.back()}}.dump(), &status);
  EXPECT_EQ(status, 500) << j.dump();
  EXPECT_EQ(j["error"]["kind"], "non_finite") << j.dump();
  EXPECT_NE(j["error"]["message"].get<std::string>().find("\"inputs\"[0]"), std::string::npos) << j.dump();
  // The finite texts still answer.
  j = post(c, "/", Json{{"inputs", texts[0]}}.dump(), &status);
  EXPECT_EQ(status, 200) << j.dump();
  EXPECT_TRUE(j[0][0]["score"].is_number()) << j.dump();
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  for (const char* line : {"bertune_errors_total{kind=\"non_finite\"} 2",
                           "bertune_requests_total{endpoint=\"/v1/classify\",code=\"500\"} 1",
                           "bertune_requests_total{endpoint=\"/\",code=\"500\"} 1"})
    EXPECT_NE(m->body.find(line), std::string::npos) << line << "\n" << m->body;
  EXPECT_EQ(server.terminate(), 0);
  EXPECT_NE(slurp(server.log).find("POST /: \"inputs\"[0]: the model's logits are not finite"), std::string::npos)
      << slurp(server.log);
}

// serve refuses a model without a trained head as predict does, unless
// --allow-untrained-head (then it warns and answers).
TEST_F(GuardTest, ServeRefusesAnUntrainedHead) {
  const fs::path model = write_tiny_classifier(dir / "headless");
  edit_weights(model, [](TensorMap& t) {
    t.erase("classifier.weight");
    t.erase("classifier.bias");
  });
  EXPECT_EQ(run_to_exit({"serve", "--model", model.string(), "--port", "0"}, log("serve")), 1) << slurp(log("serve"));
  const std::string refusal = model.string() + " has no trained classification head (missing: classifier.";
  EXPECT_NE(slurp(log("serve")).find(refusal), std::string::npos) << slurp(log("serve"));
  EXPECT_EQ(run({"predict", "--model", model.string(), "좋아요"}, log("predict")), 1);
  EXPECT_NE(slurp(log("predict")).find(refusal), std::string::npos) << slurp(log("predict"));

  ServerProcess server(model, log("allowed"), {"--allow-untrained-head"});
  auto c = server.client();
  int status = 0;
  Json j = post(c, "/", R"({"inputs": "좋아요"})", &status);
  EXPECT_EQ(status, 200) << j.dump();
  EXPECT_EQ(server.terminate(), 0);
  EXPECT_NE(slurp(server.log).find("predictions are meaningless"), std::string::npos) << slurp(server.log);
}

// --- The Hugging Face Inference API's text-classification parameters ---

TEST(HfParameters, ParsedAsThePipelineTakesThem) {
  using serve::ScoreFunction;
  auto p = serve::parse_parameters(Json::parse(R"({"top_k": 1, "function_to_apply": "SIGMOID"})"));
  EXPECT_EQ(p.top_k, 1);
  EXPECT_EQ(p.function_to_apply, ScoreFunction::Sigmoid);
  // What huggingface_hub sends for unset arguments: nothing, or null.
  p = serve::parse_parameters(Json::parse(R"({"top_k": null, "function_to_apply": null})"));
  EXPECT_FALSE(p.top_k.has_value());
  EXPECT_FALSE(p.function_to_apply.has_value());
  EXPECT_FALSE(serve::parse_parameters(Json()).top_k.has_value());
  EXPECT_FALSE(serve::parse_parameters(Json::object()).top_k.has_value());
  EXPECT_EQ(serve::parse_parameters(Json::parse(R"({"top_k": 99})")).top_k, 99);
  EXPECT_EQ(serve::parse_parameters(Json::parse(R"({"function_to_apply": "none"})")).function_to_apply,
            ScoreFunction::None);
  // The pipeline's default by problem type; unset: by the number of labels.
  using infer::ProblemType;
  EXPECT_EQ(infer::default_score_function(ProblemType::Unset, 2), ScoreFunction::Softmax);
  EXPECT_EQ(infer::default_score_function(ProblemType::Unset, 1), ScoreFunction::Sigmoid);
  EXPECT_EQ(infer::default_score_function(ProblemType::SingleLabel, 1), ScoreFunction::Softmax);
  EXPECT_EQ(infer::default_score_function(ProblemType::MultiLabel, 3), ScoreFunction::Sigmoid);
  EXPECT_EQ(infer::default_score_function(ProblemType::Regression, 1), ScoreFunction::None);
  const std::vector<std::pair<const char*, const char*>> bad = {
      {R"({"top_k": 0})", "\"top_k\": expected an integer of at least 1, got 0"},
      {R"({"top_k": -2})", "\"top_k\": expected an integer of at least 1, got -2"},
      {R"({"top_k": 1.5})", "\"top_k\": expected an integer of at least 1, got 1.5"},
      {R"({"top_k": "1"})", "\"top_k\": expected an integer of at least 1, got string"},
      {R"({"top_k": true})", "\"top_k\": expected an integer of at least 1, got boolean"},
      {R"({"function_to_apply": "relu"})", "\"function_to_apply\": expected \"softmax\", \"sigmoid\" or \"none\", got \"relu\""},
      {R"({"function_to_apply": 1})", "\"function_to_apply\": expected \"softmax\", \"sigmoid\" or \"none\", got number"},
      {R"({"temperature": 1})", "unknown field \"temperature\""},
      {R"([1])", "\"parameters\": expected an object, got array"},
  };
  for (const auto& [body, message] : bad) {
    try {
      serve::parse_parameters(Json::parse(body));
      ADD_FAILURE() << body << ": no error";
    } catch (const serve::ParameterError& e) {
      EXPECT_NE(std::string(e.what()).find(message), std::string::npos) << body << " -> " << e.what();
    }
  }
}

TEST(HfParameters, ScoresSortedAndCut) {
  const std::vector<std::string> labels = {"a", "b", "c"};
  const float logits[] = {0.5f, 2.0f, -1.0f};
  serve::TextClassificationParameters p;
  Json all = serve::label_scores(logits, labels, p);  // softmax, every label, best first
  ASSERT_EQ(all.size(), 3u);
  const auto probs = infer::softmax(logits, 3);
  EXPECT_EQ(all[0], (Json{{"label", "b"}, {"score", probs[1]}}));
  EXPECT_EQ(all[1], (Json{{"label", "a"}, {"score", probs[0]}}));
  EXPECT_EQ(all[2], (Json{{"label", "c"}, {"score", probs[2]}}));
  p.top_k = 2;
  EXPECT_EQ(serve::label_scores(logits, labels, p), (Json{all[0], all[1]}));
  p.function_to_apply = serve::ScoreFunction::None;
  EXPECT_EQ(serve::label_scores(logits, labels, p),
            (Json{{{"label", "b"}, {"score", 2.0f}}, {{"label", "a"}, {"score", 0.5f}}}));
  p.function_to_apply = serve::ScoreFunction::Sigmoid;
  p.top_k = 10;
  Json s = serve::label_scores(logits, labels, p);
  ASSERT_EQ(s.size(), 3u);
  EXPECT_EQ(s[2]["label"], "c");
  EXPECT_NEAR(s[2]["score"].get<double>(), 1.0 / (1.0 + std::exp(1.0)), 1e-7);
  // Equal scores keep label order.
  const float tie[] = {1.f, 1.f, 1.f};
  Json t = serve::label_scores(tie, labels, {});
  EXPECT_EQ(t[0]["label"], "a");
  EXPECT_EQ(t[2]["label"], "c");
  // A multi-label model's default is the sigmoid, a regression model's the raw score.
  EXPECT_EQ(serve::label_scores(logits, labels, {}, serve::ProblemType::MultiLabel), s);
  const float score[] = {3.25f};
  EXPECT_EQ(serve::label_scores(score, {"LABEL_0"}, {}, serve::ProblemType::Regression),
            (Json{{{"label", "LABEL_0"}, {"score", 3.25f}}}));
}

// What predict writes and /v1/classify answers for one text, by problem type.
TEST(Predictions, RecordFollowsTheProblemType) {
  using infer::ProblemType;
  const std::vector<std::string> labels = {"a", "b", "c"};
  const float logits[] = {0.5f, 2.0f, -1.0f};
  const Json single = infer::prediction_record(logits, labels, ProblemType::SingleLabel);
  EXPECT_EQ(single["label"], 1);
  EXPECT_EQ(single["label_name"], "b");
  EXPECT_EQ(single["probs"], Json(infer::softmax(logits, 3)));
  EXPECT_EQ(single["logits"], Json(std::vector<float>(logits, logits + 3)));
  EXPECT_EQ(infer::prediction_record(logits, labels, ProblemType::Unset), single);
  const Json multi = infer::prediction_record(logits, labels, ProblemType::MultiLabel);
  ASSERT_EQ(multi.size(), 3u);
  EXPECT_EQ(multi[0]["label"], "b");
  EXPECT_NEAR(multi[0]["score"].get<double>(), 1.0 / (1.0 + std::exp(-2.0)), 1e-7);
  EXPECT_EQ(multi[2]["label"], "c");
  const float score[] = {-0.75f};
  EXPECT_EQ(infer::prediction_record(score, {"LABEL_0"}, ProblemType::Regression), (Json{{"score", -0.75f}}));
}

// Over HTTP: top_k=1 returns one label, for one input and for a list; function_to_apply
// "none" gives the logits /v1/classify reports; bad values are a 400 naming the field.
TEST_F(GuardTest, HfParametersOverHttp) {
  const fs::path model = write_tiny_classifier(dir / "model");
  ServerProcess server(model, log("serve"));
  auto c = server.client();
  int status = 0;
  const Json all = post(c, "/", R"({"inputs": "정말 재밌어요"})", &status);
  ASSERT_EQ(status, 200) << all.dump();
  ASSERT_EQ(all[0].size(), 2u);
  Json one = post(c, "/", R"({"inputs": "정말 재밌어요", "parameters": {"top_k": 1}})", &status);
  ASSERT_EQ(status, 200) << one.dump();
  EXPECT_EQ(one, (Json{{all[0][0]}})) << one.dump();
  Json two = post(c, "/", R"({"inputs": ["정말 재밌어요", "지루했다"], "parameters": {"top_k": 1}})", &status);
  ASSERT_EQ(status, 200) << two.dump();
  ASSERT_TRUE(two.is_array() && two.size() == 2 && two[0].size() == 1 && two[1].size() == 1) << two.dump();
  EXPECT_EQ(two[0][0]["label"], all[0][0]["label"]);
  // The nulls an unset client argument may become, and the default function named.
  Json same = post(c, "/", R"({"inputs": "정말 재밌어요", "parameters": {"top_k": null, "function_to_apply": "softmax"}})",
                   &status);
  EXPECT_EQ(same, all);
  const Json classified = post(c, "/v1/classify", R"({"text": "정말 재밌어요"})", &status);
  const Json raw =
      post(c, "/", R"({"inputs": "정말 재밌어요", "parameters": {"function_to_apply": "none"}})", &status);
  ASSERT_EQ(status, 200) << raw.dump();
  for (const auto& s : raw[0]) {
    const int label = s["label"] == "positive" ? 1 : 0;
    EXPECT_EQ(s["score"], classified["predictions"][0]["logits"][label]) << raw.dump();
  }
  for (const char* params : {R"({"top_k": 0})", R"({"top_k": "1"})", R"({"function_to_apply": "relu"})",
                             R"({"temperature": 0.5})", R"("top_k=1")"}) {
    Json e = post(c, "/", std::string(R"({"inputs": "좋다", "parameters": )") + params + "}", &status);
    EXPECT_EQ(status, 400) << params << " -> " << e.dump();
    EXPECT_EQ(e["error"]["kind"], "bad_parameter") << e.dump();
    const std::string message = e["error"]["message"];
    EXPECT_EQ(message.rfind("\"parameters\"", 0), 0u) << message;
  }
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_NE(m->body.find("bertune_errors_total{kind=\"bad_parameter\"} 5"), std::string::npos) << m->body;
  EXPECT_EQ(server.terminate(), 0);
}

// A regression model answers its score, a multi-label one every label's sigmoid, on both
// routes, with the same numbers predict writes.
TEST_F(GuardTest, RegressionAndMultiLabelAnswersFollowTheProblemType) {
  using model::ProblemType;
  const fs::path reg = write_tiny_classifier(dir / "reg", true, 7, ProblemType::Regression, {"similarity"});
  const fs::path multi = write_tiny_classifier(dir / "multi", true, 7, ProblemType::MultiLabel, {"a", "b", "c"});
  for (const fs::path& model : {reg, multi}) {
    SCOPED_TRACE(model.filename().string());
    const bool regression = model == reg;
    ASSERT_EQ(run({"predict", "--model", model.string(), "좋다"}, log("predict")), 0) << slurp(log("predict"));
    const Json predicted = Json::parse(slurp(log("predict")));
    ServerProcess server(model, log("serve"));
    auto c = server.client();
    int status = 0;
    const Json classified = post(c, "/v1/classify", R"({"texts": ["좋다"]})", &status);
    ASSERT_EQ(status, 200) << classified.dump();
    EXPECT_EQ(classified["predictions"][0], predicted);
    const Json answer = post(c, "/", R"({"inputs": "좋다"})", &status);
    ASSERT_EQ(status, 200) << answer.dump();
    ASSERT_TRUE(answer.is_array() && answer.size() == 1u) << answer.dump();
    const Json& hf = answer[0];  // the API's list of one input's label list
    if (regression) {
      ASSERT_TRUE(predicted.is_object() && predicted["score"].is_number()) << predicted;
      EXPECT_EQ(hf, (Json{{{"label", "similarity"}, {"score", predicted["score"]}}}));
    } else {
      ASSERT_TRUE(predicted.is_array() && predicted.size() == 3u) << predicted;
      EXPECT_EQ(hf, predicted);  // sigmoid scores, best first
      double sum = 0;
      for (const auto& s : hf) sum += s["score"].get<double>();
      EXPECT_GT(std::abs(sum - 1.0), 1e-3) << "independent sigmoids, not a softmax: " << hf.dump();
    }
    EXPECT_EQ(server.terminate(), 0);
  }
}

// JSON's grammar allows 1e999; no double holds it. The body is the client's fault (400
// bad_json naming the number), not an internal error, wherever the number sits.
TEST_F(GuardTest, NumberPastDoubleRangeIsBadJson) {
  const fs::path model = write_tiny_classifier(dir / "model");
  ServerProcess server(model, log("serve"));
  auto c = server.client();
  const std::pair<const char*, const char*> bodies[] = {{"/v1/classify", R"({"texts": 1e999})"},
                                                        {"/v1/classify", R"({"texts": ["a"], "x": 1e999})"},
                                                        {"/", R"({"inputs": -1e999})"},
                                                        {"/", R"({"inputs": "a", "parameters": {"top_k": 1e400}})"}};
  for (const auto& [path, body] : bodies) {
    int status = 0;
    Json e = post(c, path, body, &status);
    EXPECT_EQ(status, 400) << body << " -> " << e.dump();
    EXPECT_EQ(e["error"]["kind"], "bad_json") << e.dump();
    const std::string message = e["error"]["message"];
    EXPECT_EQ(message.rfind("body is not usable JSON: ", 0), 0u) << message;
    EXPECT_NE(message.find("number overflow parsing"), std::string::npos) << message;
  }
  int status = 0;
  post(c, "/", R"({"inputs": "좋다"})", &status);
  EXPECT_EQ(status, 200);
  EXPECT_EQ(server.terminate(), 0);
  EXPECT_EQ(slurp(server.log).find("internal"), std::string::npos) << slurp(server.log);
}

// --max-length past the model's positions: refused by every inference command as train
// refuses it (the default, 128, still lowers itself to a 64-position model's 64).
TEST_F(GuardTest, MaxLengthPastTheModelsPositionsIsRefused) {
  const fs::path model = write_tiny_classifier(dir / "model");
  const fs::path data = write_tsv({"좋아요", "별로"});
  const std::string expected = "--max-length 1000 exceeds the model's max_position_embeddings (64";
  const std::vector<std::vector<std::string>> commands = {
      {"predict", "--model", model.string(), "--max-length", "1000", "좋아요"},
      {"eval", "--model", model.string(), "--data", data.string(), "--max-length", "1000"},
      {"serve", "--model", model.string(), "--port", "0", "--max-length", "1000"},
      {"train", "--model", model.string(), "--train-file", data.string(), "--output-dir", (dir / "run").string(),
       "--max-length", "1000", "--max-steps", "1"},
  };
  for (const auto& args : commands) {
    EXPECT_EQ(run_to_exit(args, log("long")), 1) << args[0] << ": " << slurp(log("long"));
    EXPECT_NE(slurp(log("long")).find(expected), std::string::npos) << args[0] << ": " << slurp(log("long"));
  }
  EXPECT_EQ(run({"predict", "--model", model.string(), "좋아요"}, log("default")), 0) << slurp(log("default"));
}

// A train output directory given as the model, and an int8 directory given to train: each
// named for what it is, with the directory to give instead.
TEST_F(GuardTest, RunDirectoryAndInt8DirectoryAreNamed) {
  const fs::path run_dir = dir / "run";
  write_tiny_classifier(run_dir / "final");
  fs::create_directories(run_dir / "checkpoint-2");
  EXPECT_EQ(run_to_exit({"predict", "--model", run_dir.string(), "좋아요"}, log("run")), 1);
  EXPECT_NE(slurp(log("run")).find(run_dir.string() + " is a training output directory; give " +
                                   (run_dir / "final").string() + " (or a checkpoint-N inside it)"),
            std::string::npos)
      << slurp(log("run"));

  const fs::path int8 = dir / "int8";
  ASSERT_EQ(run({"quantize", "--model", (run_dir / "final").string(), "--output", int8.string()}, log("q")), 0)
      << slurp(log("q"));
  const fs::path data = write_tsv({"좋아요", "별로"});
  EXPECT_EQ(run_to_exit({"train", "--model", int8.string(), "--train-file", data.string(), "--output-dir",
                         (dir / "out").string(), "--max-length", "32", "--max-steps", "1"},
                        log("train")),
            1);
  EXPECT_NE(slurp(log("train")).find(int8.string() +
                                     " is an int8 model written by `bertune quantize`; training needs the fp32 "
                                     "model it was made from"),
            std::string::npos)
      << slurp(log("train"));
  EXPECT_FALSE(fs::exists(dir / "out"));
  EXPECT_EQ(run({"predict", "--model", int8.string(), "좋아요"}, log("predict")), 0) << slurp(log("predict"));
}

}  // namespace
