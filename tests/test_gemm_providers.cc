// The fp32 GEMM providers (OpenBLAS, oneDNN, BLIS, builtin) against the builtin and a
// double-precision reference, and the choice among them: BERTUNE_GEMM, the calibration
// cache (written once, reused, distrusted when corrupt or foreign) and its agreement
// across processes.
#include <gtest/gtest.h>

#include <cmath>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "kernels/cpu/cpu.h"
#include "kernels/cpu/gemm_choice.h"
#include "kernels/cpu/gemm_providers.h"
#include "kernels/cpu_runtime.h"
#include "numeric_compare.h"
#include "op_reference.h"
#include "run_binary.h"
#include "run_cli.h"
#include "test_support.h"
#include "util/paths.h"

using namespace bertune;
namespace fs = std::filesystem;
using numeric_compare::randn;

namespace {

template <typename T>
double max_diff(const std::vector<float>& a, const std::vector<T>& b) {
  double m = 0;
  for (size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(double(a[i]) - double(b[i])));
  return m;
}

class GemmProviderTest : public ::testing::TestWithParam<std::string> {};

fs::path fresh_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("gemm_choice_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

nlohmann::json read_json(const fs::path& p) {
  std::ifstream in(p);
  return nlohmann::json::parse(in);
}

}  // namespace

// Odd shapes, M or N = 1, K = 0, all four transpose pairs, alpha and beta, leading
// dimensions wider than the matrices: each provider equals the builtin and the reference.
TEST_P(GemmProviderTest, MatchesBuiltinAndReference) {
  const kernels::cpu::GemmProvider* p = kernels::cpu::find_gemm_provider(GetParam());
  ASSERT_NE(p, nullptr);
  if (!p->available) GTEST_SKIP() << GetParam() << " is not available: " << p->missing;
  struct Shape { int M, N, K; };
  for (Shape s : {Shape{1, 1, 1}, Shape{1, 37, 19}, Shape{29, 1, 23}, Shape{7, 13, 0}, Shape{33, 17, 64},
                  Shape{96, 200, 130}, Shape{67, 131, 257}})
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (float alpha : {1.f, -0.75f})
          for (float beta : {0.f, 1.f, 0.5f}) {
            const int lda = (ta ? s.M : s.K) + 3, ldb = (tb ? s.K : s.N) + 1, ldc = s.N + 2;
            const auto A = randn(size_t(ta ? std::max(s.K, 1) : s.M) * lda, 1);
            const auto B = randn(size_t(tb ? s.N : std::max(s.K, 1)) * ldb, 2);
            const auto C0 = randn(size_t(s.M) * ldc, 3);
            auto builtin = C0, got = C0;
            const auto want = op_reference::gemm(ta, tb, s.M, s.N, s.K, alpha, A, lda, B, ldb, beta, C0, ldc);
            kernels::cpu::gemm_builtin(ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta,
                                       builtin.data(), ldc);
            kernels::gemm_with(GetParam(), ta, tb, s.M, s.N, s.K, alpha, A.data(), lda, B.data(), ldb, beta,
                               got.data(), ldc);
            const float tol = 1e-5f * std::sqrt(float(std::max(s.K, 1))) * 4;
            EXPECT_LE(max_diff(got, want), tol) << GetParam() << " M" << s.M << " N" << s.N << " K" << s.K << " ta"
                                                << ta << " tb" << tb << " alpha" << alpha << " beta" << beta;
            EXPECT_LE(max_diff(got, builtin), 2 * tol) << GetParam() << " against the builtin";
            for (int i = 0; i < s.M; ++i)  // the padding between rows of C is left alone
              for (int j = s.N; j < ldc; ++j) ASSERT_EQ(got[size_t(i) * ldc + j], C0[size_t(i) * ldc + j]);
          }
}

INSTANTIATE_TEST_SUITE_P(Providers, GemmProviderTest, ::testing::Values("openblas", "onednn", "blis", "builtin"),
                         [](const auto& info) { return info.param; });

TEST(GemmProviders, UnknownOrMissingProviderIsAClearError) {
  std::vector<float> a(4), b(4), c(4);
  EXPECT_TRUE(contains(error_of([&] { kernels::gemm_with("fast", false, false, 2, 2, 2, 1.f, a.data(), 2, b.data(),
                                                          2, 0.f, c.data(), 2); }),
                       "one of openblas, onednn, blis, builtin"));
  for (const auto& l : kernels::gemm_libraries())
    if (!l.available) {
      EXPECT_FALSE(l.missing.empty()) << l.name;
      EXPECT_TRUE(contains(error_of([&] { kernels::gemm_with(l.name, false, false, 2, 2, 2, 1.f, a.data(), 2,
                                                             b.data(), 2, 0.f, c.data(), 2); }),
                           l.missing));
    }
}

TEST(GemmMode, EnvironmentForcesOrRefuses) {
  using kernels::cpu::parse_gemm_mode;
  EXPECT_EQ(parse_gemm_mode(nullptr, nullptr, nullptr).forced, nullptr);  // auto
  EXPECT_EQ(parse_gemm_mode("auto", nullptr, nullptr).forced, nullptr);
  EXPECT_TRUE(parse_gemm_mode("auto", nullptr, nullptr).error.empty());
  const auto builtin = parse_gemm_mode("builtin", nullptr, nullptr);
  ASSERT_NE(builtin.forced, nullptr);
  EXPECT_STREQ(builtin.forced->name, "builtin");
  EXPECT_EQ(builtin.reason, "BERTUNE_GEMM=builtin");
  const auto no_blas = parse_gemm_mode(nullptr, "1", nullptr);
  ASSERT_NE(no_blas.forced, nullptr);
  EXPECT_STREQ(no_blas.forced->name, "builtin");
  EXPECT_EQ(parse_gemm_mode(nullptr, "0", nullptr).forced, nullptr);
  const auto unknown = parse_gemm_mode("fastest", nullptr, nullptr);
  EXPECT_EQ(unknown.forced, nullptr);
  EXPECT_TRUE(contains(unknown.error, "BERTUNE_GEMM=fastest: unknown GEMM provider (one of auto, openblas, onednn, "
                                      "blis, builtin)"))
      << unknown.error;
  for (const auto& l : kernels::gemm_libraries()) {
    const auto m = parse_gemm_mode(l.name.c_str(), nullptr, nullptr);
    if (l.available) {
      ASSERT_NE(m.forced, nullptr) << l.name;
      EXPECT_EQ(m.forced->name, l.name);
    } else {
      EXPECT_EQ(m.forced, nullptr);
      EXPECT_TRUE(contains(m.error, l.name + " is not available: " + l.missing)) << m.error;
    }
  }
}

TEST(GemmMode, UnknownProviderStopsTheCommand) {
  ScopedEnv gemm("BERTUNE_GEMM", "fastest");
  auto r = run_cli("bench gemm --repeat 1 --rows 64");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "BERTUNE_GEMM=fastest: unknown GEMM provider")) << r.output;
}

TEST(GemmChoice, CacheIsWrittenOnceThenReused) {
  const fs::path dir = fresh_dir("reuse");
  kernels::cpu::GemmChooser first(dir, 1);
  const std::string chosen = first.choose(false, true, 300, 96, 64).name;
  EXPECT_EQ(first.measured(), 1);
  ASSERT_TRUE(fs::exists(first.cache_path()));
  EXPECT_EQ(first.choose(false, true, 400, 96, 64).name, chosen);  // the same class: 256-row bucket
  EXPECT_EQ(first.measured(), 1);
  const auto j = read_json(first.cache_path());
  EXPECT_EQ(j["threads"], 1);
  ASSERT_EQ(j["classes"].size(), 1u);
  EXPECT_EQ(j["classes"].begin().value()["provider"], chosen);

  const auto written = fs::last_write_time(first.cache_path());
  kernels::cpu::GemmChooser second(dir, 1);
  EXPECT_EQ(second.choose(false, true, 300, 96, 64).name, chosen);
  EXPECT_EQ(second.measured(), 0);
  EXPECT_EQ(second.loaded(), 1);
  EXPECT_EQ(fs::last_write_time(second.cache_path()), written);
  EXPECT_TRUE(contains(second.summary(), "cached")) << second.summary();

  kernels::cpu::GemmChooser other_threads(dir, 2);  // another thread count: its own file
  EXPECT_NE(other_threads.cache_path(), first.cache_path());
  fs::remove_all(dir);
}

TEST(GemmChoice, CorruptOrForeignCacheIsTimedAgain) {
  const fs::path dir = fresh_dir("distrust");
  kernels::cpu::GemmChooser first(dir, 1);
  first.choose(true, false, 96, 64, 300);  // TN: the token count is K
  ASSERT_EQ(first.measured(), 1);
  const fs::path path = first.cache_path();
  auto good = read_json(path);
  EXPECT_TRUE(contains(good["classes"].begin().key(), "TN M=96 N=64 K~256")) << good.dump();

  { std::ofstream(path) << "{\"format\": 1, \"classes\": {"; }  // cut short
  kernels::cpu::GemmChooser after_corrupt(dir, 1);
  after_corrupt.choose(true, false, 96, 64, 300);
  EXPECT_EQ(after_corrupt.measured(), 1);
  EXPECT_EQ(after_corrupt.loaded(), 0);
  EXPECT_EQ(read_json(path)["cpu"], good["cpu"]);  // rewritten whole

  auto foreign = good;
  foreign["cpu"] = "Another CPU family 6 model 85 stepping 4";
  foreign["classes"].begin().value()["provider"] = "builtin";
  { std::ofstream(path) << foreign.dump(); }
  kernels::cpu::GemmChooser after_foreign(dir, 1);
  after_foreign.choose(true, false, 96, 64, 300);
  EXPECT_EQ(after_foreign.measured(), 1);
  EXPECT_EQ(read_json(path)["cpu"], good["cpu"]);

  auto unknown = good;  // a provider name this bertune does not have
  unknown["classes"].begin().value()["provider"] = "mkl";
  { std::ofstream(path) << unknown.dump(); }
  kernels::cpu::GemmChooser after_unknown(dir, 1);
  EXPECT_NE(std::string(after_unknown.choose(true, false, 96, 64, 300).name), "mkl");
  EXPECT_EQ(after_unknown.measured(), 1);
  fs::remove_all(dir);
}

// Two processes that start at once with an empty cache make the same choices: whichever
// holds the file lock times a class, the other reads its answer; no class is timed twice.
TEST(GemmChoice, TwoProcessesAtOnceAgree) {
  const fs::path dir = fresh_dir("processes");
  ScopedEnv cache("BERTUNE_CACHE", (dir / "cache").string());
  ScopedEnv gemm("BERTUNE_GEMM", "auto");  // the test environment forces one provider
  const std::string config = shared_path("models/bert-small-klue/config.json").string();
  const std::vector<std::string> args = {"bench", "gemm", "--threads", "1", "--repeat", "1", "--rows", "300",
                                         "--model-config", config, "--json"};
  std::ofstream(dir / "a.json").flush();  // spawn's stdout file must exist
  std::ofstream(dir / "b.json").flush();
  pid_t a = spawn(args, dir / "a.log", dir / "a.json");
  pid_t b = spawn(args, dir / "b.log", dir / "b.json");
  ASSERT_EQ(wait_exit(a), 0) << slurp(dir / "a.log");
  ASSERT_EQ(wait_exit(b), 0) << slurp(dir / "b.log");
  const auto ja = nlohmann::json::parse(slurp(dir / "a.json")), jb = nlohmann::json::parse(slurp(dir / "b.json"));
  ASSERT_EQ(ja["cases"].size(), 12u);
  for (size_t i = 0; i < ja["cases"].size(); ++i) EXPECT_EQ(ja["cases"][i]["chosen"], jb["cases"][i]["chosen"]) << i;
  const std::regex timed("([0-9]+) timed now");
  int timed_classes = 0;
  for (const auto* j : {&ja, &jb}) {
    std::smatch m;
    const std::string backend = (*j)["gemm_backend"];
    ASSERT_TRUE(std::regex_search(backend, m, timed)) << backend;
    timed_classes += std::stoi(m[1]);
  }
  EXPECT_EQ(timed_classes, 12);
  EXPECT_TRUE(contains(slurp(dir / "a.log") + slurp(dir / "b.log"), "timing the fp32 GEMM providers"));
  int files = 0;
  for (const auto& e : fs::directory_iterator(dir / "cache")) files += e.path().extension() == ".json";
  EXPECT_EQ(files, 1);
  fs::remove_all(dir);
}
