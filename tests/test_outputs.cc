// What bertune writes outside the training loop: outputs are regular files (or whole
// directories) replaced atomically, never a link, device, FIFO or the command's own input;
// a full disk leaves the old output or none, and errors name the user's path, never a
// temporary one; results lost on a full standard output are an error, not exit 0.
#include <gtest/gtest.h>

#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/read_file.h"
#include "quant/int8_model.h"
#include "run_binary.h"
#include "run_cli.h"
#include "test_support.h"
#include "text/vocab_trainer.h"
#include "train_fixture.h"
#include "util/error.h"
#include "util/signals.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

// "-> target" for a symlink, the file type otherwise: what a refused output must still be.
std::string describe_path(const fs::path& p) {
  struct stat st;
  if (::lstat(p.c_str(), &st) != 0) return "absent";
  if (S_ISLNK(st.st_mode)) return "-> " + fs::read_symlink(p).string();
  return std::to_string(st.st_mode & S_IFMT);
}

// Runs `bertune ARGS` with every file it writes limited to `bytes` (RLIMIT_FSIZE, SIGXFSZ
// ignored): a write past it fails with EFBIG, as a write onto a full disk fails with ENOSPC.
int run_with_file_limit(const std::vector<std::string>& args, rlim_t bytes, const fs::path& log) {
  struct rlimit old;
  ::getrlimit(RLIMIT_FSIZE, &old);
  struct rlimit lim = {bytes, old.rlim_max};
  auto* old_handler = ::signal(SIGXFSZ, SIG_IGN);
  ::setrlimit(RLIMIT_FSIZE, &lim);
  const pid_t pid = spawn(args, log);
  ::setrlimit(RLIMIT_FSIZE, &old);
  ::signal(SIGXFSZ, old_handler);
  return wait_exit(pid);
}

// Every entry of a directory with its bytes, to show it did not change.
std::map<std::string, std::string> snapshot(const fs::path& dir) {
  std::map<std::string, std::string> m;
  for (const auto& e : fs::directory_iterator(dir)) m[e.path().filename().string()] = io::read_file(e.path());
  return m;
}

}  // namespace

// ---------------------------------------------------------------- the output rule, in one place

// `--output LINK` / a device / a FIFO was replaced by a regular file (the link's target kept
// its old contents, /dev/null became a file). Now every AtomicFile refuses them, naming them.
TEST(OutputRule, NonRegularTargetsAreRefusedNotReplaced) {
  TempDir dir("out_rule");
  const fs::path data = dir.file("data.txt", "keep me\n");
  fs::create_symlink(data, dir.path / "link.txt");
  fs::create_symlink("/dev/null", dir.path / "null-link");
  fs::create_symlink(dir.path / "nowhere", dir.path / "dangling");
  ASSERT_EQ(::mkfifo((dir.path / "fifo").c_str(), 0644), 0);
  fs::create_directory(dir.path / "folder");
  std::vector<std::pair<std::string, std::string>> cases = {
      {"link.txt", "a symbolic link"}, {"null-link", "a symbolic link"}, {"dangling", "a symbolic link"},
      {"fifo", "a FIFO"},              {"folder", "a directory"}};
  // A socket, and (as root) a character device node of its own.
  const fs::path sock = dir.path / "sock";
  int fd = ::socket(AF_UNIX, SOCK_STREAM, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  if (fd >= 0 && ::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0) cases.push_back({"sock", "a socket"});
  if (::mknod((dir.path / "null-dev").c_str(), S_IFCHR | 0666, makedev(1, 3)) == 0)
    cases.push_back({"null-dev", "a character device"});
  for (const auto& [name, kind] : cases) {
    SCOPED_TRACE(name);
    const fs::path p = dir.path / name;
    const std::string before = describe_path(p);
    const std::string e = error_of([&] { io::write_file_atomic(p, "new\n"); });
    EXPECT_TRUE(contains(e, p.string() + " is " + kind)) << e;
    EXPECT_FALSE(contains(e, ".tmp")) << e;
    const std::string role = error_of([&] { io::require_replaceable_file(p, "--output"); });
    EXPECT_TRUE(contains(role, "--output " + p.string() + " is " + kind)) << role;
    EXPECT_EQ(describe_path(p), before);
  }
  if (fd >= 0) ::close(fd);
  EXPECT_EQ(io::read_file(data), "keep me\n");
  // Absent and regular files are written as before; no temporary file stays behind.
  io::write_file_atomic(dir.path / "new.txt", "1");
  io::write_file_atomic(data, "2");
  EXPECT_EQ(io::read_file(data), "2");
  for (const auto& e : fs::directory_iterator(dir.path)) EXPECT_FALSE(contains(e.path().string(), ".tmp")) << e.path();
  // A directory output may not be a link either: replacing it would swap the link for a directory.
  fs::create_symlink(dir.path / "folder", dir.path / "folder-link");
  const std::string d = error_of([&] { io::write_directory_atomic(dir.path / "folder-link/", [](const fs::path&) {}); });
  EXPECT_TRUE(contains(d, (dir.path / "folder-link").string() + " is a symbolic link")) << d;
  EXPECT_TRUE(fs::is_symlink(dir.path / "folder-link"));
}

// `tokenize -o OUT` stopped by SIGTERM/SIGINT while writing left OUT.tmp.PID.N behind: the
// temporary file of every AtomicFile is now removed by the signal watcher.
TEST(OutputRuleDeathTest, SignalMidWriteRemovesTheTemporaryFile) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir dir("out_signal");
  const fs::path target = dir.path / "tokens.jsonl";
  EXPECT_EXIT(
      {
        util::install_signal_handlers();
        io::AtomicFile f(target);
        f.write(std::string(1 << 20, 'x'));
        ::kill(::getpid(), SIGTERM);
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::exit(0);
      },
      ::testing::ExitedWithCode(143), "removed unfinished .*tokens\\.jsonl\\.tmp\\.");
  EXPECT_TRUE(fs::is_empty(dir.path));
}

// `vocab train` stopped by SIGINT sent while it started ran on and wrote its vocabulary (with
// SIGINT ignored, as a shell starts a background job) or died without the watcher's exit code.
// The signals are blocked before bertune re-executes itself (kernels::configure_thread_policy),
// so one sent while the new image loads waits for the watcher: exit 130, nothing written.
TEST(VocabOutput, SignalWhileStartingStopsWithItsExitCode) {
  TempDir dir("vocab_signal");
  std::string text;
  for (int i = 0; i < 20000; ++i) text += "좋은 영화 " + std::to_string(i) + " 그냥 그래요\n";
  const fs::path corpus = dir.file("corpus.txt", text);
  const char* policy = std::getenv("OMP_WAIT_POLICY");
  const std::string saved = policy ? policy : "";
  ::unsetenv("OMP_WAIT_POLICY");  // so the binary re-executes itself with it set
  const pid_t pid = spawn({"vocab", "train", "--corpus", corpus.string(), "--output", (dir.path / "v").string(),
                           "--vocab-size", "3000", "--threads", "1"},
                          dir.path / "log");
  if (policy) ::setenv("OMP_WAIT_POLICY", saved.c_str(), 1);
  // Until the re-executed image is loading (its environment holds the policy).
  const fs::path environ_file = "/proc/" + std::to_string(pid) + "/environ";
  for (int i = 0; i < 200000 && !contains(slurp(environ_file), "OMP_WAIT_POLICY=passive"); ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(50));
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid), 130) << slurp(dir.path / "log");
  EXPECT_TRUE(contains(slurp(dir.path / "log"), "interrupted by SIGINT")) << slurp(dir.path / "log");
  EXPECT_FALSE(fs::exists(dir.path / "v"));
  for (const auto& e : fs::directory_iterator(dir.path)) EXPECT_FALSE(contains(e.path().string(), ".tmp")) << e.path();
}

// `vocab train` said nothing until it had written its vocabulary, so a user (or a script) could
// not tell a long merge from a hang, and a SIGINT sent once it spoke came too late. It reports
// each corpus counted and the merge starting; SIGINT during the merge: exit 130, nothing written.
TEST(VocabOutput, ReportsProgressAndStopsMidMerge) {
  TempDir dir("vocab_merge_signal");
  std::mt19937 rng(7);
  std::string text;
  auto syllable = [&] {  // a random Hangul syllable (U+AC00..U+D7A3), UTF-8
    const unsigned cp = 0xAC00 + rng() % 11172;
    return std::string{static_cast<char>(0xE0 | (cp >> 12)), static_cast<char>(0x80 | ((cp >> 6) & 0x3F)),
                       static_cast<char>(0x80 | (cp & 0x3F))};
  };
  for (int line = 0; line < 40000; ++line) {
    for (int w = 0; w < 8; ++w) {
      for (unsigned k = 0, n = 2 + rng() % 4; k < n; ++k) text += syllable();
      text += ' ';
    }
    text += '\n';
  }
  const fs::path corpus = dir.file("corpus.txt", text);
  const pid_t pid = spawn({"vocab", "train", "--corpus", corpus.string(), "--output", (dir.path / "v").string(),
                           "--vocab-size", "60000", "--limit-alphabet", "12000", "--threads", "1"},
                          dir.path / "log");
  for (int i = 0; i < 600000 && !contains(slurp(dir.path / "log"), "merging to 60000 tokens"); ++i)
    std::this_thread::sleep_for(std::chrono::microseconds(100));
  const std::string said = slurp(dir.path / "log");
  EXPECT_TRUE(contains(said, "counted " + corpus.string() + ": 320000 words")) << said;
  ASSERT_TRUE(contains(said, "merging to 60000 tokens")) << said;
  ::kill(pid, SIGINT);
  EXPECT_EQ(wait_exit(pid), 130) << slurp(dir.path / "log");
  EXPECT_FALSE(contains(slurp(dir.path / "log"), "wrote ")) << slurp(dir.path / "log");
  EXPECT_FALSE(fs::exists(dir.path / "v"));
  for (const auto& e : fs::directory_iterator(dir.path)) EXPECT_FALSE(contains(e.path().string(), ".tmp")) << e.path();
}

// Errors from inside a staged directory named <dir>.tmp-PID/...; they name <dir>/... now.
TEST(OutputRule, ErrorsNameTheUsersPathNotTheStagingOne) {
  TempDir dir("out_names");
  const fs::path out = dir.path / "vocab";
  const std::string e = error_of([&] {
    io::write_directory_atomic(out, [](const fs::path& staging) {
      throw Error("cannot write " + (staging / "tokenizer.json").string() + ": No space left on device");
    });
  });
  EXPECT_EQ(e, "cannot write " + (out / "tokenizer.json").string() + ": No space left on device");
  EXPECT_FALSE(fs::exists(out));
}

// An output directory replaced whole must not hold the input: `quantize --model runs/x/final
// --output runs/x --overwrite` read the model, then deleted it with runs/x.
TEST(OutputRule, OutputDirectoryHoldingTheInputIsRefused) {
  TempDir dir("out_holds");
  const fs::path in = dir.file("sub/deeper/in.txt", "x");
  for (const fs::path& out : {dir.path / "sub", dir.path / "sub" / "deeper", dir.path / "sub" / "." / "deeper/"}) {
    const std::string e = error_of([&] { io::require_distinct_paths(in, "--input", out, "--output"); });
    EXPECT_TRUE(contains(e, "--output " + out.string() + " holds --input " + in.string())) << e;
  }
  EXPECT_EQ(error_of([&] { io::require_distinct_paths(in, "--input", dir.path / "other", "--output"); }), "");
  fs::create_directory(dir.path / "other");
  EXPECT_EQ(error_of([&] { io::require_distinct_paths(in, "--input", dir.path / "other", "--output"); }), "");
}

// ---------------------------------------------------------------- vocab train

// `vocab train` counted a corpus with invalid UTF-8 after dropping the bad bytes, where every
// other reader refuses it naming FILE:LINE.
TEST(VocabOutput, InvalidUtf8CorpusIsRefusedWithItsLine) {
  TempDir dir("vocab_utf8");
  const fs::path corpus = dir.file("corpus.txt", "좋은 영화\n그냥 그래요\nbad \xff\xfe byte\n");
  text::VocabTrainerOptions o;
  o.vocab_size = 100;
  const std::string e = error_of([&] { text::train_vocab_files({corpus}, o, false, 1, dir.path / "v"); });
  EXPECT_TRUE(contains(e, corpus.string() + ":3: invalid UTF-8 at byte 4")) << e;
  EXPECT_FALSE(fs::exists(dir.path / "v"));
  const fs::path gz = dir.file("corpus.txt.gz", gzip("ok\n\xc3\x28\n"));  // through gzip too
  const std::string g = error_of([&] { text::train_vocab_files({gz}, o, false, 1, dir.path / "v"); });
  EXPECT_TRUE(contains(g, gz.string() + ":2: invalid UTF-8 at byte 0")) << g;
}

// The output directory is replaced whole, so one holding anything but a vocabulary (or the
// corpus itself) is refused before training.
TEST(VocabOutput, ExistingOutputHoldingOtherFilesIsRefused) {
  TempDir dir("vocab_existing");
  const fs::path corpus = dir.file("corpus.txt", "좋은 영화 좋은 영화\n그냥 그래요\n");
  text::VocabTrainerOptions o;
  o.vocab_size = 60;
  o.min_frequency = 1;
  dir.file("model/model.safetensors", "weights");
  const std::string e = error_of([&] { text::train_vocab_files({corpus}, o, false, 1, dir.path / "model"); });
  EXPECT_TRUE(contains(e, "holds model.safetensors, which is not a vocabulary file")) << e;
  EXPECT_EQ(io::read_file(dir.path / "model" / "model.safetensors"), "weights");
  const fs::path inside = dir.file("v/vocab.txt", "좋은 영화\n");
  const std::string c = error_of([&] { text::train_vocab_files({inside}, o, false, 1, dir.path / "v"); });
  EXPECT_TRUE(contains(c, "--output " + (dir.path / "v").string() + " holds --corpus")) << c;
  // A previous vocabulary is replaced whole.
  text::train_vocab_files({corpus}, o, false, 1, dir.path / "again");
  text::train_vocab_files({corpus}, o, false, 1, dir.path / "again");
  EXPECT_EQ(snapshot(dir.path / "again").size(), 4u);
}

// On a full disk `vocab train` left a folder holding only vocab.txt, which loads and splits
// text differently. Now the folder appears whole or not at all, and an old one stays as it was.
TEST(VocabOutput, FullDiskLeavesNoPartialFolder) {
  TempDir dir("vocab_full");
  std::string text;
  for (const auto& row : nsmc_train_rows(300).rows) text += row.substr(row.find('\t') + 1) + "\n";
  const fs::path corpus = dir.file("corpus.txt", text);
  const auto args = [&](const fs::path& out) {
    return std::vector<std::string>{"vocab", "train", "--corpus", corpus.string(), "--vocab-size", "1500",
                                    "--min-frequency", "1", "--output", out.string()};
  };
  ASSERT_EQ(run(args(dir.path / "full"), dir.path / "log"), 0) << slurp(dir.path / "log");
  const auto files = snapshot(dir.path / "full");
  const size_t vocab = files.at("vocab.txt").size(), whole = files.at("tokenizer.json").size();
  ASSERT_LT(vocab + 1000, whole);
  // Room for vocab.txt and the two small files, not for tokenizer.json.
  const rlim_t limit = vocab + 500;
  EXPECT_EQ(run_with_file_limit(args(dir.path / "fresh"), limit, dir.path / "log"), 1);
  const std::string log = slurp(dir.path / "log");
  EXPECT_TRUE(contains(log, "cannot write " + (dir.path / "fresh" / "tokenizer.json").string() + ": File too large"))
      << log;
  EXPECT_FALSE(contains(log, ".tmp")) << log;
  EXPECT_FALSE(fs::exists(dir.path / "fresh"));
  // Over an earlier vocabulary: that one is left exactly as it was.
  fs::rename(dir.path / "full", dir.path / "old");
  EXPECT_EQ(run_with_file_limit(args(dir.path / "old"), limit, dir.path / "log"), 1) << slurp(dir.path / "log");
  EXPECT_EQ(snapshot(dir.path / "old"), files);
  for (const auto& e : fs::directory_iterator(dir.path)) EXPECT_FALSE(contains(e.path().string(), ".tmp")) << e.path();
}

// ---------------------------------------------------------------- commands on a trained model

namespace {

// The tiny classifier of tests/train_fixture.h, trained for one step on 60 NSMC reviews, and
// its int8 copy (`bertune quantize`): built once for the suite.
class OutputsOnModel : public ::testing::Test {
 protected:
  static inline std::unique_ptr<TinyTrainDir> files;
  static void SetUpTestSuite() {
    files = std::make_unique<TinyTrainDir>("outputs_model");
    const NsmcRows nsmc = nsmc_train_rows(60);
    std::string body = nsmc.header + "\n";
    for (const std::string& line : nsmc.rows) body += line + "\n";
    io::write_file_atomic(files->dir / "train.tsv", body);
    auto r = run_cli("train --model-config " + path("tiny.json") + " --train-file " + path("train.tsv") +
                     " --max-length 32 --max-steps 1 --save-strategy no --eval-strategy no --threads 2 --output-dir " +
                     path("run"));
    ASSERT_EQ(r.status, 0) << r.output;
    auto q = run_cli("quantize --model " + model() + " --output " + path("q8"));
    ASSERT_EQ(q.status, 0) << q.output;
  }
  static void TearDownTestSuite() { files.reset(); }
  static std::string path(const std::string& name) { return (files->dir / name).string(); }
  static std::string model() { return path("run/final"); }
};

}  // namespace

// `checkpoint convert` of an int8 model wrote "25 tensors" — every int8 weight dropped — and a
// model that does not load; in place it replaced the model with that. Now it is refused before
// anything is written, and an in-place convert of a float model keeps it loading and predicting alike.
TEST_F(OutputsOnModel, ConvertRefusesInt8AndConvertsInPlaceSafely) {
  const auto q8 = snapshot(path("q8"));
  for (const std::string& out : {path("q8-float"), path("q8")}) {
    auto r = run_cli("checkpoint convert " + path("q8") + " " + out);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_TRUE(contains(r.output, path("q8") + " is an int8 model (bertune quantize)")) << r.output;
  }
  EXPECT_FALSE(fs::exists(path("q8-float")));
  EXPECT_EQ(snapshot(path("q8")), q8);
  const std::string texts = "\"정말 재밌어요\" \"최악의 영화\"";
  auto before = run_cli("predict --model " + path("q8") + " " + texts);
  ASSERT_EQ(before.status, 0) << before.output;

  fs::copy(model(), path("copy"));
  auto fp = run_cli("predict --model " + path("copy") + " " + texts);
  ASSERT_EQ(fp.status, 0) << fp.output;
  auto conv = run_cli("checkpoint convert " + path("copy") + " " + path("copy") + "/");
  EXPECT_EQ(conv.status, 0) << conv.output;
  EXPECT_EQ(run_cli("predict --model " + path("copy") + " " + texts).output, fp.output);
  EXPECT_EQ(snapshot(path("copy")).size(), snapshot(model()).size());  // every file kept
  // Into a directory that holds the source: refused, the source kept.
  auto up = run_cli("checkpoint convert " + path("copy") + " " + files->dir.string());
  EXPECT_EQ(up.status, 1) << up.output;
  EXPECT_TRUE(contains(up.output, "holds input")) << up.output;
}

// `checkpoint inspect` listed only the float tensors: the int8 weights of a quantized model
// and integer buffers were missing. Every tensor is listed with its dtype now.
// `predict` of one text with --batch-size 2000000000 was refused for needing "about more than
// 2^64 bytes": a batch is never more texts than there are, and what cannot fit says so plainly.
TEST_F(OutputsOnModel, PredictPlansMemoryForTheTextsItHas) {
  auto one = run_cli("predict --model " + model() + " --batch-size 2000000000 좋아요");
  EXPECT_EQ(one.status, 0) << one.output;
  EXPECT_TRUE(contains(one.output, "\"label\"")) << one.output;
  io::write_file_atomic(path("two.txt"), "좋아요\n별로\n");
  auto file = run_cli("predict --model " + model() + " --batch-size 2000000000 --input " + path("two.txt"));
  EXPECT_EQ(file.status, 0) << file.output;
  // Texts beyond any memory: refused before loading, in words.
  ScopedEnv cap("BERTUNE_MAX_MEMORY", "1M");
  auto capped = run_cli("predict --model " + model() + " --batch-size 2000000000 좋아요");
  EXPECT_EQ(capped.status, 1) << capped.output;
  EXPECT_TRUE(contains(capped.output, "predict: needs about ")) << capped.output;
  EXPECT_TRUE(contains(capped.output, "activations (1 texts of ")) << capped.output;
}

TEST_F(OutputsOnModel, InspectListsEveryTensorWithItsDtype) {
  const auto listed = io::list_state_dict(fs::path(path("q8")) / "model.safetensors");
  size_t i8 = 0;
  for (const auto& t : listed) i8 += t.dtype == "I8";
  EXPECT_EQ(i8, 2u * 6);  // 2 layers, 6 linears each
  auto r = run_cli("checkpoint inspect " + path("q8"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "bert.encoder.layer.0.attention.self.query.weight")) << r.output;
  EXPECT_TRUE(contains(r.output, " I8 ")) << r.output;
  EXPECT_TRUE(contains(r.output, std::to_string(listed.size()) + " tensors (")) << r.output;
  EXPECT_TRUE(contains(r.output, "12 I8")) << r.output;

  // An I32 buffer beside an F32 weight, written by hand.
  const std::string header = R"({"ids":{"dtype":"I32","shape":[2],"data_offsets":[0,8]},)"
                             R"("w":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  std::string bytes(8, '\0');
  const uint64_t n = header.size();
  std::memcpy(bytes.data(), &n, 8);
  bytes += header + std::string(12, '\0');
  io::write_file_atomic(path("ints.safetensors"), bytes);
  auto ints = run_cli("checkpoint inspect " + path("ints.safetensors"));
  EXPECT_EQ(ints.status, 0) << ints.output;
  EXPECT_TRUE(contains(ints.output, "I32   [2]")) << ints.output;
  EXPECT_TRUE(contains(ints.output, "2 tensors (1 F32, 1 I32), 3 parameters")) << ints.output;
}

// `--output` onto a symlink or FIFO replaced it with a regular file (predict, tokenize, plot);
// every writing command refuses it before its work, and `-` is standard output.
TEST_F(OutputsOnModel, OutputsOntoLinksAndFifosAreRefused) {
  io::write_file_atomic(path("target.txt"), "keep\n");
  fs::create_symlink(path("target.txt"), path("link.jsonl"));
  fs::create_symlink(path("target.txt"), path("link.png"));
  ASSERT_EQ(::mkfifo(path("fifo.jsonl").c_str(), 0644), 0);
  io::write_file_atomic(path("table.tsv"), "step\tloss\n1\t2.5\n2\t2.0\n");
  for (const std::string& out : {path("link.jsonl"), path("fifo.jsonl")}) {
    for (const std::string& cmd : {"predict --model " + model() + " 좋아요 --output " + out,
                                   "tokenize --tokenizer " + model() + " 좋아요 --output " + out}) {
      auto r = run_cli(cmd);
      EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
      EXPECT_TRUE(contains(r.output, "--output " + out + " is a ")) << r.output;
    }
  }
  auto plot = run_cli("plot " + path("table.tsv") + " --out " + path("link.png") + " --x step --y loss");
  EXPECT_EQ(plot.status, 1) << plot.output;
  EXPECT_TRUE(contains(plot.output, "--out " + path("link.png") + " is a symbolic link")) << plot.output;
  auto q = run_cli("quantize --model " + model() + " --output " + path("link.png") + " --overwrite");
  EXPECT_EQ(q.status, 1) << q.output;
  EXPECT_EQ(io::read_file(path("target.txt")), "keep\n");
  EXPECT_TRUE(fs::is_symlink(path("link.jsonl")) && fs::is_symlink(path("link.png")));
  EXPECT_TRUE(fs::is_fifo(path("fifo.jsonl")));
  auto dash = run_cli("predict --model " + model() + " 좋아요 --output -");
  EXPECT_EQ(dash.status, 0) << dash.output;
  EXPECT_TRUE(contains(dash.output, "\"label\"")) << dash.output;
  EXPECT_FALSE(fs::exists("-"));
}

// `predict --model D --output D/config.json` replaced the model's config with predictions (exit 0);
// an output that is a file inside the model or tokenizer directory is refused, nothing written.
// `quantize --overwrite` deleted a --output directory of unrelated files: it replaces only a model.
TEST_F(OutputsOnModel, OutputsOntoTheCommandsOwnInputsAreRefused) {
  const auto before = snapshot(model());
  for (const char* name : {"config.json", "model.safetensors"}) {
    const std::string out = model() + "/" + name;
    ASSERT_TRUE(fs::exists(out)) << out;
    for (const std::string& cmd : {"predict --model " + model() + " 좋아요 --output " + out,
                                   "predict --model " + path("q8") + " --tokenizer " + model() + " 좋아요 --output " + out,
                                   "tokenize --tokenizer " + model() + " 좋아요 --output " + out}) {
      auto r = run_cli(cmd);
      EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
      EXPECT_TRUE(contains(r.output, "--output " + out + " is a file inside ")) << r.output;
    }
  }
  EXPECT_EQ(snapshot(model()), before);
  auto fresh = run_cli("predict --model " + model() + " 좋아요 --output " + model() + "/predictions.jsonl");
  EXPECT_EQ(fresh.status, 0) << fresh.output;  // a new file beside the model replaces nothing
  fs::remove(model() + "/predictions.jsonl");

  fs::create_directories(path("mine"));
  io::write_file_atomic(path("mine") + "/notes.txt", "mine\n");
  auto q = run_cli("quantize --model " + model() + " --output " + path("mine") + " --overwrite");
  EXPECT_EQ(q.status, 1) << q.output;
  EXPECT_TRUE(contains(q.output, "--output " + path("mine") + " holds notes.txt, not a model")) << q.output;
  EXPECT_EQ(io::read_file(path("mine") + "/notes.txt"), "mine\n");
  for (int i = 0; i < 2; ++i) {  // an int8 model it wrote is replaced
    auto again = run_cli("quantize --model " + model() + " --output " + path("q8-again") + " --overwrite");
    EXPECT_EQ(again.status, 0) << again.output;
  }
}

// `predict > /dev/full` (and every command printing results) exited 0 with the results lost.
TEST_F(OutputsOnModel, FullStandardOutputIsAnError) {
  // A full device node of the test's own (char 1:7, as /dev/full), never the system's.
  const std::string full = path("full-dev");
  if (::mknod(full.c_str(), S_IFCHR | 0666, makedev(1, 7)) != 0)
    GTEST_SKIP() << "cannot create a device node (mknod needs CAP_MKNOD): " << std::strerror(errno);
  const std::string data = path("train.tsv");
  for (const std::vector<std::string>& args : std::vector<std::vector<std::string>>{
           {"predict", "--model", model(), "좋아요"},
           {"eval", "--json", "--model", model(), "--data", data},
           {"data", "head", data},
           {"data", "stats", "--no-tokens", data},
           {"tokenize", "--tokenizer", model(), "좋아요"},
           {"checkpoint", "inspect", model()},
           {"vocab", "eval", "--tokenizer", model(), "--data", data}}) {
    const std::string log = path("stderr.txt");
    const int status = wait_exit(spawn(args, log, full));  // every write fails with ENOSPC
    EXPECT_EQ(status, 1) << args[0] << " " << args[1] << "\n" << slurp(log);
    EXPECT_TRUE(contains(slurp(log), "bertune: error: cannot write to standard output: No space left on device"))
        << args[0] << " " << args[1] << "\n" << slurp(log);
  }
}
