// The choice of gemm()'s provider: forced by the environment, or timed per shape class and
// cached (gemm_choice.h).
#include "kernels/cpu/gemm_choice.h"

#include <fcntl.h>
#include <omp.h>
#include <sys/file.h>
#include <unistd.h>
#if defined(__x86_64__)
#include <cpuid.h>
#endif

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <fstream>
#include <memory>
#include <sstream>
#include <vector>

#include <nlohmann/json.hpp>

#include "util/error.h"
#include "util/paths.h"

namespace bertune::kernels::cpu {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;

constexpr int kCacheFormat = 3;
constexpr double kTinyFlop = 1 << 22;          // below: the default provider, untimed
constexpr double kBuiltinTimedFlop = 1 << 28;  // above: the builtin (5-10x slower) is not timed
constexpr double kMaxCalibrationFlop = 8e9;    // a class's rows shrink to stay under this

const GemmProvider& default_provider() {
  for (const GemmProvider& p : gemm_providers())
    if (p.available) return p;
  return builtin_gemm_provider();
}

// "AMD EPYC family 26 model 2 stepping 1": the model name alone does not tell Zen 4 from 5.
std::string cpu_identity() {
  std::string name = "?";
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("model name", 0) == 0 && line.find(':') != std::string::npos) {
      name = line.substr(line.find(':') + 2);
      break;
    }
#if defined(__x86_64__)
  unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (__get_cpuid(1, &eax, &ebx, &ecx, &edx)) {
    unsigned family = (eax >> 8) & 0xf, model = (eax >> 4) & 0xf;
    if (family == 0xf) family += (eax >> 20) & 0xff;
    if (family >= 6) model |= (eax >> 12) & 0xf0;
    name += " family " + std::to_string(family) + " model " + std::to_string(model) + " stepping " +
            std::to_string(eax & 0xf);
  }
#endif
  return name;
}

std::string libraries_identity() {
  std::string s;
  for (const GemmProvider& p : gemm_providers())
    if (p.available) s += (s.empty() ? "" : "; ") + std::string(p.name) + ": " + p.version;
  return s;
}

uint64_t fnv1a(const std::string& s) {
  uint64_t h = 1469598103934665603ull;
  for (unsigned char c : s) h = (h ^ c) * 1099511628211ull;
  return h;
}

// The token count a Linear's GEMM varies with: K for the weight gradient (TN), else M.
bool rows_are_k(bool ta, bool tb) { return ta && !tb; }
int row_bucket(int rows) { return rows < 512 ? 256 : rows < 2048 ? 1024 : 4096; }

std::string class_key(bool ta, bool tb, int d1, int d2, int rows) {
  std::string pair = std::string(ta ? "T" : "N") + (tb ? "T" : "N");
  if (rows_are_k(ta, tb))
    return pair + " M=" + std::to_string(d1) + " N=" + std::to_string(d2) + " K~" + std::to_string(rows);
  return pair + " N=" + std::to_string(d1) + " K=" + std::to_string(d2) + " M~" + std::to_string(rows);
}

// An exclusive flock on `path` for the object's life; locked() false when it cannot be had.
class FileLock {
 public:
  explicit FileLock(const fs::path& path) : fd_(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644)) {
    if (fd_ >= 0 && ::flock(fd_, LOCK_EX) != 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }
  ~FileLock() {
    if (fd_ >= 0) ::close(fd_);  // closing releases the lock
  }
  FileLock(const FileLock&) = delete;
  FileLock& operator=(const FileLock&) = delete;
  bool locked() const { return fd_ >= 0; }

 private:
  int fd_;
};

void fill(std::vector<float>& v, uint32_t seed) {
  for (float& x : v) {
    seed = seed * 1664525u + 1013904223u;
    x = float(seed >> 8) / float(1u << 24) * 2.f - 1.f;
  }
}

double time_call(const GemmProvider& p, bool ta, bool tb, int M, int N, int K, const std::vector<float>& A,
                 const std::vector<float>& B, std::vector<float>& C) {
  const int lda = ta ? M : K, ldb = tb ? K : N;
  auto t0 = std::chrono::steady_clock::now();
  p.run(ta, tb, M, N, K, 1.f, A.data(), lda, B.data(), ldb, 0.f, C.data(), N);
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

bool announced = false;  // the one line on stderr per process (under choosers_mu)
std::mutex choosers_mu;

}  // namespace

GemmMode parse_gemm_mode(const char* gemm, const char* no_blas, const char* blas_path) {
  GemmMode mode;
  std::string name = gemm ? gemm : "";
  if (!name.empty()) {
    mode.reason = "BERTUNE_GEMM=" + name;
  } else if (no_blas && *no_blas && std::string(no_blas) != "0") {
    name = "builtin";
    mode.reason = "BERTUNE_NO_BLAS=" + std::string(no_blas);
  } else if (blas_path && *blas_path) {
    name = "openblas";
    mode.reason = "BERTUNE_BLAS=" + std::string(blas_path);
  }
  if (name.empty() || name == "auto") return mode;
  const GemmProvider* p = find_gemm_provider(name);
  if (!p)
    mode.error = mode.reason + ": unknown GEMM provider (one of auto, openblas, onednn, blis, builtin)";
  else if (!p->available)
    mode.error = mode.reason + ": " + name + " is not available: " + p->missing;
  else
    mode.forced = p;
  return mode;
}

const GemmMode& gemm_mode() {
  static const GemmMode mode =
      parse_gemm_mode(std::getenv("BERTUNE_GEMM"), std::getenv("BERTUNE_NO_BLAS"), std::getenv("BERTUNE_BLAS"));
  return mode;
}

GemmChooser::GemmChooser(fs::path cache_dir, int threads)
    : dir_(std::move(cache_dir)), threads_(threads), cpu_(cpu_identity()), libraries_(libraries_identity()) {
  char name[64];
  std::snprintf(name, sizeof name, "gemm-%dt-%016llx.json", threads_,
                static_cast<unsigned long long>(fnv1a(cpu_ + "\n" + libraries_)));
  path_ = dir_ / name;
}

int GemmChooser::measured() const {
  std::lock_guard<std::mutex> g(mu_);
  return measured_;
}

int GemmChooser::loaded() const {
  std::lock_guard<std::mutex> g(mu_);
  return loaded_;
}

// A file that does not parse, has another format, or names another CPU, thread count or
// library set is not trusted: its classes are timed again and the file rewritten.
void GemmChooser::read_cache() {
  std::error_code ec;
  if (!fs::exists(path_, ec)) return;
  std::ifstream in(path_);
  json j = json::parse(in, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    cache_note_ = "it did not parse";
    return;
  }
  if (j.value("format", 0) != kCacheFormat || j.value("cpu", "") != cpu_ || j.value("threads", 0) != threads_ ||
      j.value("libraries", "") != libraries_ || !j.contains("classes") || !j["classes"].is_object()) {
    cache_note_ = "it was written for another CPU, thread count or library set";
    return;
  }
  for (const auto& [key, c] : j["classes"].items()) {
    if (table_.count(key) || !c.is_object() || !c.contains("provider") || !c["provider"].is_string()) continue;
    const GemmProvider* p = find_gemm_provider(c["provider"].get<std::string>());
    if (!p || !p->available) continue;  // time it again
    Choice choice{p->name, {}};
    if (c.contains("gflops") && c["gflops"].is_object())
      for (const auto& [name, g] : c["gflops"].items())
        if (g.is_number()) choice.gflops[name] = g.get<double>();
    table_[key] = std::move(choice);
    ++loaded_;
  }
}

void GemmChooser::write_cache() const {
  json classes = json::object();
  for (const auto& [key, c] : table_) classes[key] = {{"provider", c.provider}, {"gflops", c.gflops}};
  json j = {{"format", kCacheFormat}, {"cpu", cpu_}, {"threads", threads_}, {"libraries", libraries_},
            {"classes", classes}};
  const fs::path tmp = path_.string() + ".tmp." + std::to_string(::getpid());
  {
    std::ofstream out(tmp, std::ios::trunc);
    out << j.dump(1) << "\n";
    if (!out.flush()) {
      std::error_code ec;
      fs::remove(tmp, ec);
      return;  // not cached: the next process times again
    }
  }
  std::error_code ec;
  fs::rename(tmp, path_, ec);
  if (ec) fs::remove(tmp, ec);
}

// Times every available provider on the class's shape (the builtin only where it is
// small): one warm-up call each, then three rounds alternating the providers. The mean
// counts, not the best round: a library that is fastest alone and far slower whenever
// anything else wants the cores shows it in the mean. A provider whose threads spin
// (GemmProvider::spins) is timed on one thread only.
GemmChooser::Choice GemmChooser::measure(bool ta, bool tb, int d1, int d2, int rows) const {
  while (rows > 64 && 2.0 * rows * d1 * d2 > kMaxCalibrationFlop) rows /= 2;
  const int M = rows_are_k(ta, tb) ? d1 : rows, N = rows_are_k(ta, tb) ? d2 : d1;
  const int K = rows_are_k(ta, tb) ? rows : d2;
  const double flop = 2.0 * M * N * K;
  std::vector<const GemmProvider*> timed;
  for (const GemmProvider& p : gemm_providers())
    if (p.available && (!p.spins || threads_ == 1) &&
        (&p != &builtin_gemm_provider() || flop <= kBuiltinTimedFlop || timed.empty()))
      timed.push_back(&p);
  std::vector<float> A(size_t(M) * K), B(size_t(K) * N), C(size_t(M) * N);
  fill(A, 1);
  fill(B, 2);
  constexpr int kRounds = 3;
  std::vector<double> total(timed.size(), 0.0);
  for (int round = 0; round <= kRounds; ++round)  // round 0 warms up
    for (size_t i = 0; i < timed.size(); ++i) {
      const double s = time_call(*timed[i], ta, tb, M, N, K, A, B, C);
      if (round > 0) total[i] += s;
    }
  Choice choice;
  const size_t win = size_t(std::min_element(total.begin(), total.end()) - total.begin());
  choice.provider = timed[win]->name;
  for (size_t i = 0; i < timed.size(); ++i) choice.gflops[timed[i]->name] = flop * kRounds / total[i] / 1e9;
  return choice;
}

const GemmProvider& GemmChooser::choose(bool ta, bool tb, int M, int N, int K) {
  const int rows = row_bucket(rows_are_k(ta, tb) ? K : M);
  const int d1 = rows_are_k(ta, tb) ? M : N, d2 = rows_are_k(ta, tb) ? N : K;
  const std::string key = class_key(ta, tb, d1, d2, rows);
  std::lock_guard<std::mutex> g(mu_);
  if (auto it = table_.find(key); it != table_.end()) return *find_gemm_provider(it->second.provider);
  // Other processes may be timing the same class: the file lock makes one of them do it
  // and the others read its answer.
  std::error_code ec;
  fs::create_directories(dir_, ec);
  FileLock lock(path_.string() + ".lock");
  if (lock.locked()) read_cache();
  if (auto it = table_.find(key); it != table_.end()) return *find_gemm_provider(it->second.provider);
  {
    std::lock_guard<std::mutex> once(choosers_mu);
    if (!announced) {
      std::string where = lock.locked() ? "cached in " + path_.string() : "not cached: cannot lock " + path_.string();
      if (!cache_note_.empty()) where += " (the file there was not used: " + cache_note_ + ")";
      std::fprintf(stderr, "bertune: timing the fp32 GEMM providers on this CPU (%d threads), once per shape class; %s\n",
                   threads_, where.c_str());
      announced = true;
    }
  }
  table_[key] = measure(ta, tb, d1, d2, rows);
  ++measured_;
  if (lock.locked()) write_cache();
  return *find_gemm_provider(table_[key].provider);
}

std::string GemmChooser::summary() const {
  std::lock_guard<std::mutex> g(mu_);
  std::map<std::string, int> count;
  for (const auto& [key, c] : table_) ++count[c.provider];
  std::vector<std::pair<int, std::string>> order;
  for (const auto& [name, n] : count) order.emplace_back(-n, name);
  std::sort(order.begin(), order.end());
  std::string s;
  for (const auto& [n, name] : order)
    s += (s.empty() ? "" : ", ") + name + " for " + std::to_string(-n) + (n == -1 ? " shape class" : " shape classes");
  if (s.empty()) return "no shape class met yet (cache " + path_.string() + ")";
  const char* how = measured_ == 0 ? "cached" : loaded_ == 0 ? "calibrated" : "calibrated and cached";
  return s + " (" + how + ": " + std::to_string(measured_) + " timed now, " + std::to_string(loaded_) +
         " read from " + path_.string() + ")";
}

namespace {

// One chooser per thread count, for the process's life.
GemmChooser& chooser_for(int threads) {
  static std::map<int, std::unique_ptr<GemmChooser>> choosers;
  static std::mutex mu;
  std::lock_guard<std::mutex> g(mu);
  auto& c = choosers[threads];
  if (!c) c = std::make_unique<GemmChooser>(cache_dir(), threads);
  return *c;
}

}  // namespace

const GemmProvider& gemm_provider_for(bool ta, bool tb, int M, int N, int K) {
  const GemmMode& mode = gemm_mode();
  if (mode.forced) return *mode.forced;
  if (omp_in_parallel()) return mode.error.empty() ? default_provider() : builtin_gemm_provider();
  if (!mode.error.empty()) throw Error(mode.error);
  if (2.0 * M * N * K < kTinyFlop) return default_provider();
  return chooser_for(omp_get_max_threads()).choose(ta, tb, M, N, K);
}

std::string gemm_choice_description() {
  const GemmMode& mode = gemm_mode();
  if (!mode.error.empty()) return "none: " + mode.error;
  if (mode.forced) return std::string(mode.forced->name) + " (forced by " + mode.reason + "): " + mode.forced->version;
  return "auto, chosen by measurement per shape class: " + chooser_for(omp_get_max_threads()).summary() +
         "; other calls " + default_provider().name + "; providers: " + libraries_identity();
}

}  // namespace bertune::kernels::cpu
