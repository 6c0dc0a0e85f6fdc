// `bertune serve`: the real binary on a free loopback port, driven over loopback sockets.
// Every endpoint, every class of bad input, routing under concurrency, bitwise equality
// with `bertune predict`, and graceful shutdown. Plus the batching worker on its own.
#include <gtest/gtest.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <cmath>
#include <map>
#include <mutex>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "serve/batcher.h"
#include "serve_fixture.h"
#include "test_support.h"
#include "util/error.h"

using Json = nlohmann::json;
using namespace bertune;
using namespace bertune::testing;

namespace {

const std::vector<std::string> kTexts = {"정말 재밌어요",         "시간 아까움. 최악의 영화",
                                         "배우들 연기가 좋았다", "그냥 그랬다",
                                         "아 더빙.. 진짜 짜증나네요 목소리", "",
                                         "평점이 너무 낮네요 ㅋㅋ", "다시 보고 싶은 영화"};

struct ServeTest : ::testing::Test {
  static inline fs::path dir, model;
  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("bertune_serve_test_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    model = write_tiny_classifier(dir / "model");
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }

  // `bertune predict` on the texts: one JSON record per text.
  static std::vector<Json> predict(const std::vector<std::string>& texts, const fs::path& m = model) {
    std::vector<std::string> args = {"predict", "--model", m.string(), "--threads", "2"};
    args.insert(args.end(), texts.begin(), texts.end());
    const fs::path log = dir / "predict.txt";
    int rc = wait_exit(spawn(args, log));
    if (rc != 0) throw std::runtime_error("predict failed: " + slurp(log));
    std::vector<Json> out;
    std::istringstream lines(slurp(log));
    std::string line;
    while (std::getline(lines, line)) out.push_back(Json::parse(line));
    return out;
  }
};

Json post(HttpClient& c, const std::string& path, const std::string& body, int* status) {
  auto r = c.Post(path, body, "application/json");
  if (!r) throw std::runtime_error("no answer to POST " + path);
  *status = r->status;
  return Json::parse(r->body);
}

// The error answer's kind, checking its shape and status on the way.
std::string error_kind(HttpClient& c, const std::string& path, const std::string& body, int expect_status) {
  int status = 0;
  Json j = post(c, path, body, &status);
  EXPECT_EQ(status, expect_status) << body.substr(0, 200) << " -> " << j.dump();
  EXPECT_TRUE(j["error"]["message"].is_string()) << j.dump();
  return j["error"]["kind"].get<std::string>();
}

// Sets an environment variable for the processes spawned in a scope.
// With the same batch composition the server computes exactly what `predict` does: one
// text per request against one `predict` per text, and all texts in one request against
// one `predict` of all of them. (OpenBLAS picks kernels by matrix size, so the same text
// in a batch of 1 and of 8 may differ in the last bits; the builtin GEMM does not — see
// the concurrency test below.)
TEST_F(ServeTest, ClassifyAnswersExactlyWhatPredictPrints) {
  auto expected = predict(kTexts);
  ASSERT_EQ(expected.size(), kTexts.size());
  ServerProcess server(model, dir / "serve_exact.log");
  auto c = server.client();
  for (size_t i = 0; i < kTexts.size(); ++i) {
    const Json alone = predict({kTexts[i]})[0];
    int status = 0;
    Json j = post(c, "/v1/classify", Json{{"text", kTexts[i]}}.dump(), &status);
    ASSERT_EQ(status, 200) << j.dump();
    ASSERT_EQ(j["predictions"].size(), 1u);
    const Json& p = j["predictions"][0];
    EXPECT_EQ(p["logits"], alone["logits"]) << kTexts[i];
    EXPECT_EQ(p["probs"], alone["probs"]) << kTexts[i];
    EXPECT_EQ(p["label"], alone["label"]);
    EXPECT_EQ(p["label_name"], alone["label_name"]);
    EXPECT_EQ(p["label_name"], p["label"] == 1 ? "positive" : "negative");
    EXPECT_EQ(j["model"], model.string());
    EXPECT_GE(j["elapsed_ms"].get<double>(), 0.0);
  }
  int status = 0;
  Json all = post(c, "/v1/classify", Json{{"texts", kTexts}}.dump(), &status);
  ASSERT_EQ(status, 200) << all.dump();
  ASSERT_EQ(all["predictions"].size(), kTexts.size());
  for (size_t i = 0; i < kTexts.size(); ++i) {
    EXPECT_EQ(all["predictions"][i]["logits"], expected[i]["logits"]) << i;
    EXPECT_EQ(all["predictions"][i]["probs"], expected[i]["probs"]) << i;
  }
  EXPECT_EQ(server.terminate(), 0) << slurp(server.log);
}

// Sentence pairs, as /v1/classify's [text, text_pair] lists and the HF API's {text, text_pair}:
// the answers of `predict --input` on the same pairs, bit for bit (same batch composition).
TEST_F(ServeTest, SentencePairsAnswerWhatPredictPrints) {
  const std::vector<std::pair<std::string, std::string>> pairs = {
      {kTexts[0], kTexts[1]}, {kTexts[2], kTexts[3]}, {kTexts[4], kTexts[7]}};
  std::string tsv = "premise\thypothesis\n";
  Json items = Json::array();
  for (const auto& [a, b] : pairs) tsv += a + "\t" + b + "\n", items.push_back({a, b});
  io::write_file_atomic(dir / "pairs.tsv", tsv);
  const fs::path log = dir / "predict_pairs.txt";
  ASSERT_EQ(wait_exit(spawn({"predict", "--model", model.string(), "--threads", "2", "--input", (dir / "pairs.tsv").string(),
                             "--text-column", "premise", "--text-pair-column", "hypothesis"},
                            log)),
            0)
      << slurp(log);
  std::vector<Json> expected;
  std::istringstream lines(slurp(log));
  for (std::string line; std::getline(lines, line);) expected.push_back(Json::parse(line));
  ASSERT_EQ(expected.size(), pairs.size());
  ServerProcess server(model, dir / "serve_pairs.log");
  auto c = server.client();
  int status = 0;
  Json all = post(c, "/v1/classify", Json{{"texts", items}}.dump(), &status);
  ASSERT_EQ(status, 200) << all.dump();
  for (size_t i = 0; i < pairs.size(); ++i) EXPECT_EQ(all["predictions"][i]["logits"], expected[i]["logits"]) << i;
  // A pair is not its first text alone.
  Json first = post(c, "/v1/classify", Json{{"texts", {pairs[0].first}}}.dump(), &status);
  EXPECT_NE(first["predictions"][0]["logits"], all["predictions"][0]["logits"]);
  Json hf = post(c, "/", Json{{"inputs", {{"text", pairs[0].first}, {"text_pair", pairs[0].second}}}}.dump(), &status);
  ASSERT_EQ(status, 200) << hf.dump();
  ASSERT_TRUE(hf.is_array() && hf.size() == 1 && hf[0].size() == 2) << hf.dump();
  const auto& probs = expected[0]["probs"];  // a batch of one: equal to float rounding
  EXPECT_NEAR(hf[0][0]["score"].get<double>(), std::max(probs[0].get<double>(), probs[1].get<double>()), 1e-5);
  EXPECT_EQ(error_kind(c, "/v1/classify", R"({"texts": [["a", ""]]})", 400), "empty");
  EXPECT_EQ(server.terminate(), 0) << slurp(server.log);
}

// A BERT of one token type has none for a pair's second text: the request is refused (400,
// naming type_vocab_size) before it reaches a batch, and the server goes on answering texts.
TEST_F(ServeTest, PairsOnAModelOfOneTokenTypeAreTheClientsError) {
  const fs::path one_type =
      write_tiny_classifier(dir / "one_type", true, 7, model::ProblemType::Unset, {"negative", "positive"}, 1);
  ServerProcess server(one_type, dir / "serve_one_type.log");
  auto c = server.client();
  int status = 0;
  Json refused = post(c, "/v1/classify", R"({"texts": [["a", "b"]]})", &status);
  EXPECT_EQ(status, 400) << refused.dump();
  EXPECT_EQ(refused["error"]["kind"], "bad_request") << refused.dump();
  EXPECT_NE(refused["error"]["message"].get<std::string>().find("has type_vocab_size 1, no token type for a pair"),
            std::string::npos)
      << refused.dump();
  EXPECT_EQ(error_kind(c, "/", R"({"inputs": {"text": "a", "text_pair": "b"}})", 400), "bad_request");
  Json single = post(c, "/v1/classify", R"({"texts": ["a"]})", &status);
  EXPECT_EQ(status, 200) << single.dump();
  EXPECT_EQ(server.terminate(), 0) << slurp(server.log);
}

TEST_F(ServeTest, HuggingFaceInferenceApiShape) {
  auto expected = predict({kTexts[0]});
  ServerProcess server(model, dir / "serve_hf.log");
  auto c = server.client();
  int status = 0;
  Json one = post(c, "/", R"({"inputs": "정말 재밌어요"})", &status);
  ASSERT_EQ(status, 200) << one.dump();
  ASSERT_TRUE(one.is_array() && one.size() == 1 && one[0].size() == 2) << one.dump();
  // Best score first, labels by name, scores = predict's probs.
  EXPECT_GE(one[0][0]["score"].get<double>(), one[0][1]["score"].get<double>());
  const auto& probs = expected[0]["probs"];
  const int best = probs[1].get<double>() > probs[0].get<double>() ? 1 : 0;
  EXPECT_EQ(one[0][0]["label"], best == 1 ? "positive" : "negative");
  EXPECT_EQ(one[0][0]["score"], probs[best]);
  EXPECT_EQ(one[0][1]["score"], probs[1 - best]);

  Json two = post(c, "/", Json{{"inputs", {kTexts[0], kTexts[1]}}, {"options", {{"wait_for_model", true}}}}.dump(),
                  &status);
  ASSERT_EQ(status, 200) << two.dump();
  ASSERT_EQ(two.size(), 2u);
  // A batch of two: same labels in the same order, scores equal to float rounding.
  for (int k = 0; k < 2; ++k) {
    EXPECT_EQ(two[0][k]["label"], one[0][k]["label"]);
    EXPECT_NEAR(two[0][k]["score"].get<double>(), one[0][k]["score"].get<double>(), 1e-5);
  }
  std::set<std::string> labels;
  for (const auto& s : two[1]) labels.insert(s["label"].get<std::string>());
  EXPECT_EQ(labels, (std::set<std::string>{"negative", "positive"}));
  EXPECT_EQ(server.terminate(), 0);
}

TEST_F(ServeTest, LabelNamesFlagAndDefaultNames) {
  const fs::path plain = write_tiny_classifier(dir / "plain", /*label_names=*/false);
  {
    ServerProcess server(plain, dir / "serve_plain.log");
    auto c = server.client();
    int status = 0;
    Json j = post(c, "/v1/classify", R"({"text": "좋다"})", &status);
    ASSERT_EQ(status, 200) << j.dump();
    const int label = j["predictions"][0]["label"];
    EXPECT_EQ(j["predictions"][0]["label_name"], "LABEL_" + std::to_string(label));
  }
  {
    ServerProcess server(plain, dir / "serve_named.log", {"--label-names", "bad,good"});
    auto c = server.client();
    int status = 0;
    Json j = post(c, "/v1/classify", R"({"text": "좋다"})", &status);
    ASSERT_EQ(status, 200) << j.dump();
    EXPECT_EQ(j["predictions"][0]["label_name"], j["predictions"][0]["label"] == 1 ? "good" : "bad");
  }
  // A wrong number of names is refused at start, naming the flag.
  const fs::path log = dir / "serve_badnames.log";
  EXPECT_EQ(wait_exit(spawn({"serve", "--model", plain.string(), "--port", "0", "--label-names", "a,b,c"}, log)),
            1);
  EXPECT_NE(slurp(log).find("--label-names: 3 names given, the model has 2 labels"), std::string::npos) << slurp(log);
  EXPECT_EQ(wait_exit(spawn({"serve", "--model", (dir / "nonexistent").string(), "--port", "0"}, log)), 1);
  EXPECT_NE(slurp(log).find("is not a directory"), std::string::npos) << slurp(log);
}

TEST_F(ServeTest, HealthAndMetrics) {
  ServerProcess server(model, dir / "serve_metrics.log", {"--max-texts", "4"});
  auto c = server.client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(Json::parse(h->body)["status"], "ok");
  int status = 0;
  post(c, "/v1/classify", Json{{"texts", {kTexts[0], kTexts[1], kTexts[2]}}}.dump(), &status);
  ASSERT_EQ(status, 200);
  error_kind(c, "/v1/classify", "{", 400);
  error_kind(c, "/v1/classify", Json{{"texts", {"a", "b", "c", "d", "e"}}}.dump(), 413);
  auto m = c.Get("/metrics");
  ASSERT_TRUE(m);
  ASSERT_EQ(m->status, 200);
  const std::string& t = m->body;
  for (const char* line : {"bertune_ready 1", "bertune_requests_total{endpoint=\"/v1/classify\",code=\"200\"} 1",
                           "bertune_requests_total{endpoint=\"/v1/classify\",code=\"400\"} 1",
                           "bertune_requests_total{endpoint=\"/v1/classify\",code=\"413\"} 1",
                           "bertune_errors_total{kind=\"bad_json\"} 1", "bertune_errors_total{kind=\"too_many_texts\"} 1",
                           "bertune_texts_total 3", "bertune_batch_size_count", "bertune_queue_seconds_bucket{le=\"+Inf\"} 3",
                           "bertune_request_latency_seconds_count 3", "bertune_tokens_per_second",
                           "# TYPE bertune_batch_size histogram"})
    EXPECT_NE(t.find(line), std::string::npos) << line << "\n" << t;
  EXPECT_EQ(server.terminate(), 0);
}

TEST_F(ServeTest, BadInputGetsAClear4xxAndTheServerKeepsAnswering) {
  ServerProcess server(model, dir / "serve_bad.log",
                       {"--max-texts", "16", "--max-body-bytes", "65536", "--body-timeout", "1"});
  auto c = server.client();
  EXPECT_EQ(error_kind(c, "/v1/classify", "{\"texts\": [\"a\",", 400), "bad_json");
  EXPECT_EQ(error_kind(c, "/v1/classify", "", 400), "bad_json");
  EXPECT_EQ(error_kind(c, "/v1/classify", "[1, 2]", 400), "bad_type");
  EXPECT_EQ(error_kind(c, "/v1/classify", R"({"texts": "one string"})", 400), "bad_type");
  EXPECT_EQ(error_kind(c, "/v1/classify", R"({"texts": ["ok", 3]})", 400), "bad_type");
  EXPECT_EQ(error_kind(c, "/v1/classify", R"({"text": null})", 400), "bad_type");
  EXPECT_EQ(error_kind(c, "/v1/classify", R"({"texts": []})", 400), "empty");
  EXPECT_EQ(error_kind(c, "/v1/classify", R"({"txt": ["a"]})", 400), "bad_field");
  EXPECT_EQ(error_kind(c, "/v1/classify", R"({"text": "a", "texts": ["b"]})", 400), "bad_field");
  EXPECT_EQ(error_kind(c, "/", R"({"input": "a"})", 400), "bad_field");
  EXPECT_EQ(error_kind(c, "/", R"({"inputs": 7})", 400), "bad_type");
  EXPECT_EQ(error_kind(c, "/", R"({"inputs": []})", 400), "empty");
  EXPECT_EQ(error_kind(c, "/v1/classify", "{\"text\": \"\xff\xfe bad\"}", 400), "invalid_utf8");
  EXPECT_EQ(error_kind(c, "/v1/classify", "{\"text\": \"\xed\xa0\x80\"}", 400), "invalid_utf8");  // a surrogate
  EXPECT_EQ(error_kind(c, "/v1/classify", Json{{"texts", std::vector<std::string>(10000, "x")}}.dump(), 413),
            "too_many_texts");
  {
    int status = 0;
    Json j = post(c, "/v1/classify", Json{{"text", std::string(100000, 'a')}}.dump(), &status);
    EXPECT_EQ(status, 413);
    EXPECT_EQ(j["error"]["kind"], "payload_too_large");
    EXPECT_NE(j["error"]["message"].get<std::string>().find("65536 bytes"), std::string::npos) << j.dump();
  }
  {
    auto r = c.Get("/v1/classify");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 405);
    r = c.Get("/nope");
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 404);
    EXPECT_EQ(Json::parse(r->body)["error"]["kind"], "not_found");
  }
  // Clients that promise a body and hang up, or stall past --body-timeout.
  for (int stall : {0, 1}) {
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(static_cast<uint16_t>(server.port));
    inet_pton(AF_INET, "127.0.0.1", &addr.sin_addr);
    ASSERT_EQ(connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
    std::string head = "POST /v1/classify HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{\"texts\": [\"";
    ASSERT_EQ(send(fd, head.data(), head.size(), 0), static_cast<ssize_t>(head.size()));
    if (stall) std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    close(fd);
  }
  // Still serving, with the right answer.
  int status = 0;
  Json j = post(c, "/v1/classify", R"({"text": "정말 재밌어요"})", &status);
  EXPECT_EQ(status, 200) << j.dump();
  EXPECT_EQ(j["predictions"][0]["logits"], predict({"정말 재밌어요"})[0]["logits"]);
  EXPECT_EQ(c.Get("/health")->status, 200);
  EXPECT_EQ(server.terminate(), 0) << slurp(server.log);
}

// Many clients at once, each with its own texts: every answer carries the caller's own
// texts' logits. With the builtin GEMM the packed forward does not depend on its batch
// neighbours, so the answers equal `predict` bitwise; with OpenBLAS (kernels chosen by
// matrix size) they agree to float rounding, which is still far below the difference
// between any two of these texts.
void concurrent_routing(const fs::path& model, const std::vector<Json>& expected, const fs::path& log, bool exact) {
  ServerProcess server(model, log, {"--max-batch", "8", "--max-wait-ms", "20", "--batch-wait", "always"});
  constexpr int kClients = 12, kRounds = 6;
  std::atomic<int> mismatches{0}, failures{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < kClients; ++t)
    clients.emplace_back([&, t] {
      auto c = server.client();
      for (int r = 0; r < kRounds; ++r) {
        // 1 to 3 texts, different for each client and round.
        std::vector<size_t> picks;
        for (int k = 0; k <= (t + r) % 3; ++k) picks.push_back((t * 3 + r * 5 + k) % kTexts.size());
        Json body = {{"texts", Json::array()}};
        for (size_t p : picks) body["texts"].push_back(kTexts[p]);
        auto res = c.Post("/v1/classify", body.dump(), "application/json");
        if (!res || res->status != 200) {
          failures++;
          continue;
        }
        Json j = Json::parse(res->body);
        for (size_t k = 0; k < picks.size(); ++k) {
          const Json& got = j["predictions"][k]["logits"];
          const Json& want = expected[picks[k]]["logits"];
          bool same = exact ? got == want : true;
          for (size_t l = 0; l < want.size() && !exact; ++l)
            same &= std::abs(got[l].get<double>() - want[l].get<double>()) < 1e-5;
          mismatches += !same;
        }
      }
    });
  for (auto& t : clients) t.join();
  EXPECT_EQ(failures, 0);
  EXPECT_EQ(mismatches, 0);
  // Batches of more than one text did happen (the point of the test).
  auto m = server.client().Get("/metrics");
  ASSERT_TRUE(m);
  std::smatch count, le1;
  ASSERT_TRUE(std::regex_search(m->body, count, std::regex("bertune_batch_size_count ([0-9]+)")));
  ASSERT_TRUE(std::regex_search(m->body, le1, std::regex("bertune_batch_size_bucket\\{le=\"1\"\\} ([0-9]+)")));
  EXPECT_LT(std::stoi(le1[1]), std::stoi(count[1])) << m->body;
  ASSERT_TRUE(std::regex_search(m->body, count, std::regex("bertune_batch_size_bucket\\{le=\"8\"\\} ([0-9]+)")));
  std::smatch total;
  ASSERT_TRUE(std::regex_search(m->body, total, std::regex("bertune_batch_size_bucket\\{le=\"\\+Inf\"\\} ([0-9]+)")));
  EXPECT_EQ(count[1], total[1]) << "a batch exceeded --max-batch 8";
  EXPECT_EQ(server.terminate(), 0);
}

TEST_F(ServeTest, ConcurrentRequestsAreBatchedAndRoutedBack) {
  auto expected = predict(kTexts);
  // The texts' logits are far apart compared with the tolerance: routing errors show.
  for (size_t i = 1; i < expected.size(); ++i)
    ASSERT_GT(std::abs(expected[i]["logits"][0].get<double>() - expected[i - 1]["logits"][0].get<double>()), 1e-3);
  concurrent_routing(model, expected, dir / "serve_conc.log", /*exact=*/false);
}

TEST_F(ServeTest, ConcurrentAnswersEqualPredictBitwiseWithTheBuiltinGemm) {
  ScopedEnv no_blas("BERTUNE_NO_BLAS", "1");
  concurrent_routing(model, predict(kTexts), dir / "serve_conc_exact.log", /*exact=*/true);
}

// SIGTERM while requests wait in the batch window: they are answered, then exit 0 and
// the port is closed.
TEST_F(ServeTest, SigtermFinishesInFlightRequestsThenExitsZero) {
  ServerProcess server(model, dir / "serve_term.log", {"--max-batch", "64", "--max-wait-ms", "3000", "--batch-wait", "always"});
  const int port = server.port;
  std::atomic<int> ok{0};
  std::vector<std::thread> clients;
  for (int t = 0; t < 4; ++t)
    clients.emplace_back([&] {
      auto c = server.client();
      auto r = c.Post("/v1/classify", R"({"text": "정말 재밌어요"})", "application/json");
      if (r && r->status == 200 && Json::parse(r->body)["predictions"].size() == 1) ok++;
    });
  // Wait until the server holds all four (queued, or already answered).
  auto c = server.client();
  const std::regex depth("bertune_queue_depth ([0-9]+)"), done("bertune_texts_total ([0-9]+)");
  for (int accepted = 0; accepted < 4;) {
    auto m = c.Get("/metrics");
    std::smatch a, b;
    ASSERT_TRUE(m && std::regex_search(m->body, a, depth) && std::regex_search(m->body, b, done));
    accepted = std::stoi(a[1]) + std::stoi(b[1]);
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(server.terminate(), 0) << slurp(server.log);
  for (auto& t : clients) t.join();
  EXPECT_EQ(ok, 4) << slurp(server.log);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(10));
  HttpClient after("127.0.0.1", port);
  after.set_connection_timeout(1, 0);
  EXPECT_FALSE(after.Get("/health"));
  EXPECT_NE(slurp(server.log).find("SIGTERM"), std::string::npos);
}

// ---- the transport: busy port, pipelining, framing, slow clients, connection cap ----

// The exit status of a process, or -2 after `seconds` (then it is killed).
int wait_exit_within(pid_t pid, double seconds) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  while (std::chrono::steady_clock::now() < deadline) {
    int status = 0;
    if (waitpid(pid, &status, WNOHANG) == pid) return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  kill(pid, SIGKILL);
  waitpid(pid, nullptr, 0);
  return -2;
}

std::string classify_request(const std::string& text, bool close = false) {
  const std::string body = Json{{"text", text}}.dump();
  return "POST /v1/classify HTTP/1.1\r\nHost: t\r\nContent-Length: " + std::to_string(body.size()) + "\r\n" +
         (close ? "Connection: close\r\n" : "") + "\r\n" + body;
}

// A second server on a port in use refuses to start, naming the port; the first one
// keeps every request.
TEST_F(ServeTest, ASecondServerOnABusyPortIsRefused) {
  ServerProcess server(model, dir / "serve_busy1.log");
  const std::string port = std::to_string(server.port);
  const fs::path log = dir / "serve_busy2.log";
  const int rc = wait_exit_within(spawn({"serve", "--model", model.string(), "--port", port}, log), 60);
  EXPECT_EQ(rc, 1) << slurp(log);
  EXPECT_NE(slurp(log).find("cannot listen on 127.0.0.1:" + port + ": port " + port + " is in use"), std::string::npos)
      << slurp(log);
  EXPECT_EQ(slurp(log).find("ready"), std::string::npos) << slurp(log);
  EXPECT_EQ(server.terminate(), 0);
}

// Requests pipelined on one connection are all answered, in order; so is a request
// followed by a half-close (the client's end of sending, not of reading).
TEST_F(ServeTest, PipelinedRequestsAreAnsweredInOrder) {
  ServerProcess server(model, dir / "serve_pipe.log");
  auto c = server.client();
  std::vector<Json> alone;
  for (int i = 0; i < 3; ++i) {
    int status = 0;
    alone.push_back(post(c, "/v1/classify", Json{{"text", kTexts[i]}}.dump(), &status));
    ASSERT_EQ(status, 200);
  }
  const std::string pipelined = "GET /health HTTP/1.1\r\nHost: t\r\n\r\n" + classify_request(kTexts[0]) + "\r\n" +
                                classify_request(kTexts[1]) + "HEAD /health HTTP/1.1\r\n\r\n" +
                                classify_request(kTexts[2], /*close=*/true);
  for (bool byte_by_byte : {false, true}) {
    std::string bytes;
    if (!byte_by_byte) {
      bytes = http_exchange(server.port, pipelined);
    } else {  // the same bytes in 7-byte pieces
      int fd = connect_loopback(server.port);
      ASSERT_GE(fd, 0);
      for (size_t i = 0; i < pipelined.size(); i += 7) {
        ASSERT_TRUE(send_all(fd, pipelined.substr(i, 7)));
        std::this_thread::sleep_for(std::chrono::microseconds(200));
      }
      bytes = read_until_close(fd, 10);
      close(fd);
    }
    auto answers = parse_responses(bytes, /*head=*/{3});
    ASSERT_EQ(answers.size(), 5u) << bytes;
    EXPECT_EQ(answers[0].status, 200);
    EXPECT_EQ(Json::parse(answers[0].body)["status"], "ok");
    for (int k : {1, 2, 4}) {
      ASSERT_EQ(answers[k].status, 200) << answers[k].body;
      const int i = k == 4 ? 2 : k - 1;
      EXPECT_EQ(Json::parse(answers[k].body)["predictions"][0]["logits"], alone[i]["predictions"][0]["logits"]) << k;
    }
    EXPECT_EQ(answers[3].status, 200);
    EXPECT_EQ(answers[3].body, "");  // HEAD: the headers alone
    EXPECT_EQ(answers[4].header("connection"), "close");
  }
  // Half-closed after a complete request: answered, then closed.
  auto half = parse_responses(http_exchange(server.port, classify_request(kTexts[1]), /*half_close=*/true));
  ASSERT_EQ(half.size(), 1u);
  EXPECT_EQ(Json::parse(half[0].body)["predictions"][0]["logits"], alone[1]["predictions"][0]["logits"]);
  EXPECT_EQ(server.terminate(), 0);
}

// Framing errors get their own status and a JSON error; a wrong method on a known path
// is 405 with Allow; chunked bodies and "Expect: 100-continue" work.
TEST_F(ServeTest, MalformedFramingAndWrongMethods) {
  ServerProcess server(model, dir / "serve_framing.log", {"--max-body-bytes", "1000"});
  auto one = [&](const std::string& bytes) {
    auto answers = parse_responses(http_exchange(server.port, bytes));
    if (answers.size() != 1) throw std::runtime_error("expected one answer to " + bytes.substr(0, 80));
    return answers[0];
  };
  struct Case {
    std::string bytes;
    int status;
    std::string kind, message;
  };
  const std::string post = "POST /v1/classify HTTP/1.1\r\nHost: t\r\n";
  for (const Case& k : std::vector<Case>{
           {post + "Content-Length: -5\r\n\r\n", 400, "bad_content_length", "invalid Content-Length \"-5\""},
           {post + "Content-Length: 4\r\nContent-Length: 5\r\n\r\n{}{}}", 400, "bad_content_length",
            "conflicting Content-Length"},
           {post + "Content-Length: 5000\r\n\r\n", 413, "payload_too_large", "limit of 1000 bytes"},
           {post + "Transfer-Encoding: gzip\r\n\r\n", 501, "unsupported_transfer_encoding", "not supported"},
           {"GARBAGE\r\n\r\n", 400, "bad_request", "malformed request line"},
           {"GET /health HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n", 431, "header_too_large", "limit"},
           {"GET /health HTTP/3.0\r\n\r\n", 505, "http_version_not_supported", "not supported"},
           {"PUT /health HTTP/1.1\r\n\r\n", 405, "method_not_allowed", "use GET for /health"},
           {"DELETE /v1/classify HTTP/1.1\r\n\r\n", 405, "method_not_allowed", "use POST for /v1/classify"},
           {"POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", 405, "method_not_allowed", "use GET for /metrics"},
       }) {
    HttpResult r = one(k.bytes);
    EXPECT_EQ(r.status, k.status) << k.bytes.substr(0, 80) << " -> " << r.body;
    Json j = Json::parse(r.body);
    EXPECT_EQ(j["error"]["kind"], k.kind) << r.body;
    EXPECT_NE(j["error"]["message"].get<std::string>().find(k.message), std::string::npos) << r.body;
    if (k.status == 405) {
      EXPECT_EQ(r.header("allow"), k.bytes[0] == 'D' ? "POST" : "GET, HEAD");
    } else {
      EXPECT_EQ(r.header("connection"), "close");
    }
  }
  // Chunked, with Expect: 100-continue (the interim answer comes first).
  const std::string body = Json{{"text", kTexts[0]}}.dump();
  const std::string chunked = post + "Transfer-Encoding: chunked\r\nExpect: 100-continue\r\nConnection: close\r\n\r\n";
  int fd = connect_loopback(server.port);
  ASSERT_TRUE(send_all(fd, chunked));
  char interim[64] = {};
  ASSERT_GT(recv(fd, interim, sizeof interim - 1, 0), 0);
  EXPECT_EQ(std::string(interim), "HTTP/1.1 100 Continue\r\n\r\n");
  char size[16];
  std::snprintf(size, sizeof size, "%zx", body.size() - 3);
  ASSERT_TRUE(send_all(fd, std::string(size) + "\r\n" + body.substr(0, body.size() - 3) + "\r\n3\r\n" +
                               body.substr(body.size() - 3) + "\r\n0\r\n\r\n"));
  auto answers = parse_responses(read_until_close(fd, 10));
  close(fd);
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 200) << answers[0].body;
  EXPECT_EQ(Json::parse(answers[0].body)["predictions"][0]["logits"], predict({kTexts[0]})[0]["logits"]);
  auto m = server.client().Get("/metrics");
  ASSERT_TRUE(m);
  for (const char* line : {"bertune_requests_total{endpoint=\"/v1/classify\",code=\"400\"} 2",
                           "bertune_requests_total{endpoint=\"/health\",code=\"405\"} 1",
                           "bertune_requests_total{endpoint=\"/health\",code=\"431\"} 1",
                           "bertune_errors_total{kind=\"bad_content_length\"} 2"})
    EXPECT_NE(m->body.find(line), std::string::npos) << line << "\n" << m->body;
  EXPECT_EQ(server.terminate(), 0);
}

// 128 clients trickling header bytes: other clients are answered at once, the trickling
// ones are dropped after --header-timeout, and SIGTERM ends the server at once although
// trickling clients are connected.
TEST_F(ServeTest, SlowClientsStarveNobodyAndDoNotDelayShutdown) {
  ServerProcess server(model, dir / "serve_slow.log", {"--header-timeout", "3"});
  std::vector<int> slow;
  for (int i = 0; i < 128; ++i) {
    int fd = connect_loopback(server.port);
    ASSERT_GE(fd, 0);
    ASSERT_TRUE(send_all(fd, "POST /v1/classify HTTP/1.1\r\n"));
    slow.push_back(fd);
  }
  std::atomic<bool> trickle{true};
  std::thread trickler([&] {  // one more header byte per client every 200 ms
    while (trickle) {
      for (int fd : slow) send(fd, "X", 1, MSG_NOSIGNAL | MSG_DONTWAIT);
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
  });
  auto c = server.client();
  for (int i = 0; i < 10; ++i) {
    const auto t0 = std::chrono::steady_clock::now();
    int status = 0;
    post(c, "/v1/classify", Json{{"text", kTexts[i % kTexts.size()]}}.dump(), &status);
    EXPECT_EQ(status, 200);
    EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  }
  // Past the header deadline every trickling client has been answered 408 and closed.
  std::this_thread::sleep_for(std::chrono::milliseconds(3500));
  int closed = 0;
  for (int fd : slow) {
    auto answers = parse_responses(read_until_close(fd, 2));
    closed += answers.size() == 1 && answers[0].status == 408;
  }
  EXPECT_EQ(closed, 128);
  trickle = false;
  trickler.join();
  for (int fd : slow) close(fd);
  // New trickling clients, then SIGTERM: the server does not wait for them.
  slow.clear();
  for (int i = 0; i < 16; ++i) {
    slow.push_back(connect_loopback(server.port));
    send_all(slow.back(), "GET /health HTTP/1.1\r\nHo");
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(server.terminate(), 0) << slurp(server.log);
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::seconds(2));
  for (int fd : slow) close(fd);
}

// Beyond --max-connections a client is told 503 with a JSON reason, and it is counted.
TEST_F(ServeTest, ConnectionsBeyondTheLimitGet503) {
  ServerProcess server(model, dir / "serve_cap.log", {"--max-connections", "3"});
  std::vector<int> held;
  for (int i = 0; i < 3; ++i) held.push_back(connect_loopback(server.port));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto answers = parse_responses(http_exchange(server.port, "GET /health HTTP/1.1\r\n\r\n"));
  ASSERT_EQ(answers.size(), 1u);
  EXPECT_EQ(answers[0].status, 503);
  Json j = Json::parse(answers[0].body);
  EXPECT_EQ(j["error"]["kind"], "too_many_connections");
  EXPECT_NE(j["error"]["message"].get<std::string>().find("the limit is 3 (--max-connections)"), std::string::npos);
  for (int fd : held) close(fd);
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  auto m = server.client().Get("/metrics");
  ASSERT_TRUE(m);
  EXPECT_EQ(m->status, 200);
  EXPECT_NE(m->body.find("bertune_errors_total{kind=\"too_many_connections\"} 1"), std::string::npos) << m->body;
  EXPECT_NE(m->body.find("bertune_open_connections 1"), std::string::npos) << m->body;
  EXPECT_EQ(server.terminate(), 0);
}

// ---- the batching worker alone, with a fake model ----------------------------------

TEST(Batcher, RoutesRowsBackAndRespectsMaxBatch) {
  std::mutex mu;
  std::vector<size_t> sizes;
  // logits row = (first id, length): identifies the text it came from.
  auto run = [&](const std::vector<const serve::TokenIds*>& seqs) {
    std::lock_guard lock(mu);
    sizes.push_back(seqs.size());
    std::vector<float> out;
    for (auto* s : seqs) {
      out.push_back(static_cast<float>(s->ids[0]));
      out.push_back(static_cast<float>(s->size()));
    }
    return out;
  };
  serve::BatcherOptions o;
  o.max_batch = 5;
  o.max_wait = std::chrono::milliseconds(30);
  o.compute_threads = 1;
  o.wait_only_when_arriving = false;
  serve::Batcher b(run, 2, o, nullptr);
  std::atomic<int> wrong{0};
  std::vector<std::thread> callers;
  for (int t = 0; t < 8; ++t)
    callers.emplace_back([&, t] {
      for (int r = 0; r < 5; ++r) {
        std::vector<serve::TokenIds> texts;
        const int n = 1 + (t + r) % 4;
        for (int k = 0; k < n; ++k) texts.push_back({std::vector<int32_t>(1 + k, 1000 * t + 10 * r + k), {}});
        auto logits = b.classify(texts);
        for (int k = 0; k < n; ++k)
          if (logits[2 * k] != 1000 * t + 10 * r + k || logits[2 * k + 1] != 1 + k) wrong++;
      }
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(wrong, 0);
  size_t total = 0, multi = 0;
  for (size_t s : sizes) {
    EXPECT_LE(s, 5u);
    total += s;
    multi += s > 1;
  }
  int expected = 0;
  for (int t = 0; t < 8; ++t)
    for (int r = 0; r < 5; ++r) expected += 1 + (t + r) % 4;
  EXPECT_EQ(total, static_cast<size_t>(expected));
  EXPECT_GT(multi, 0u);
}

TEST(Batcher, WaitsAtMostMaxWaitAndPropagatesErrors) {
  serve::BatcherOptions o;
  o.max_batch = 64;
  o.max_wait = std::chrono::milliseconds(50);
  o.compute_threads = 1;
  o.wait_only_when_arriving = false;
  bool fail = false;
  serve::Batcher b(
      [&](const std::vector<const serve::TokenIds*>& seqs) {
        if (fail) throw Error("forward failed");
        return std::vector<float>(seqs.size() * 2, 1.f);
      },
      2, o, nullptr);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(b.classify({{{1, 2, 3}, {}}}).size(), 2u);  // alone: runs when the window closes
  const auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_GE(waited, std::chrono::milliseconds(45));
  EXPECT_LT(waited, std::chrono::milliseconds(1000));
  fail = true;
  EXPECT_THROW(b.classify({{{1}, {}}, {{2}, {}}}), Error);
  fail = false;
  EXPECT_EQ(b.classify({{{1}, {}}}).size(), 2u);  // still working after a failed batch
  b.stop();
  EXPECT_THROW(b.classify({{{1}, {}}}), Error);
}

// The default policy: a lone request runs at once; one announced request still on its
// way holds the batch (up to max_wait) and joins it.
TEST(Batcher, WaitsOnlyForAnnouncedArrivals) {
  serve::BatcherOptions o;
  o.max_batch = 64;
  o.max_wait = std::chrono::milliseconds(2000);
  o.compute_threads = 1;
  std::mutex mu;
  std::vector<size_t> sizes;
  serve::Batcher b(
      [&](const std::vector<const serve::TokenIds*>& seqs) {
        std::lock_guard lock(mu);
        sizes.push_back(seqs.size());
        return std::vector<float>(seqs.size() * 2, 1.f);
      },
      2, o, nullptr);
  auto t0 = std::chrono::steady_clock::now();
  b.classify({{{1}, {}}});
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));  // not the 2 s window
  std::thread late;
  {
    serve::Batcher::Arrival arriving(b);  // announced: the next batch waits for it
    std::thread first([&] { b.classify({{{2}, {}}}); });
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    late = std::thread([&] { arriving.classify({{{3}, {}}}); });
    first.join();
    late.join();
  }
  ASSERT_EQ(sizes.size(), 2u);
  EXPECT_EQ(sizes[1], 2u);  // {2} waited for {3}
  // A withdrawn announcement (a request refused before queueing) releases the wait.
  auto refused = std::make_unique<serve::Batcher::Arrival>(b);
  std::thread t([&] { b.classify({{{4}, {}}}); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  t0 = std::chrono::steady_clock::now();
  refused.reset();
  t.join();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, std::chrono::milliseconds(1000));
  EXPECT_EQ(sizes.size(), 3u);
}

}  // namespace
