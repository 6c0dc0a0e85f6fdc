// Issue #8: no crash, no silent wrong result, errors that name the cause, and
// the exit-code contract (0 ok, 1 user error, 2 internal bug, 3 non-finite
// guard, 130 SIGINT, 143 SIGTERM). Most cases spawn the real binary, so what
// is tested is what users run.
#include <gtest/gtest.h>

#include "run_cli.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <thread>

#include <nlohmann/json.hpp>

#include "cli/errors.h"
#include "data/dataset.h"
#include "io/atomic_file.h"
#include "io/json_error.h"
#include "io/read_file.h"
#include "io/safetensors.h"
#include "io/torch_pickle.h"
#include "kernels/cpu_runtime.h"
#include "model/config.h"
#include "text/tokenizer.h"
#include "text/unk_rate.h"
#include "text/vocab_trainer.h"
#include "train/options.h"
#include "train/run_state.h"
#include "train/state.h"
#include "util/error.h"
#include "util/json_fields.h"
#include "util/limits.h"
#include "util/paths.h"
#include "util/signals.h"
#include "util/threads.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

using Result = CliResult;

std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}


struct TempDir {
  fs::path path;
  explicit TempDir(const std::string& name)
      : path(fs::temp_directory_path() / ("bertune_harden_" + name + "_" + std::to_string(::getpid()))) {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~TempDir() { fs::remove_all(path); }
  fs::path file(const std::string& name, const std::string& contents) const {
    io::write_file_atomic(path / name, contents);
    return path / name;
  }
};

fs::path data_fixture(const std::string& name) {
  return fs::path(BERTUNE_SOURCE_DIR) / "tests" / "fixtures" / "data" / name;
}

std::string gzip(const std::string& text) {
  uLongf cap = compressBound(static_cast<uLong>(text.size())) + 32;
  std::string out(cap, '\0');
  z_stream z{};
  deflateInit2(&z, 6, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);  // +16: gzip wrapper
  z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(text.data()));
  z.avail_in = static_cast<uInt>(text.size());
  z.next_out = reinterpret_cast<Bytef*>(out.data());
  z.avail_out = static_cast<uInt>(out.size());
  deflate(&z, Z_FINISH);
  out.resize(z.total_out);
  deflateEnd(&z);
  return out;
}

template <typename F>
std::string error_of(F&& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

const std::string kNoInternal = "internal error";

}  // namespace

// ---------------------------------------------------------------- exit codes

TEST(ExitCodes, UnknownCommandIsNamedWithTheNearestOne) {
  auto r = run_cli("trian");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "unknown command 'trian'")) << r.output;
  EXPECT_TRUE(contains(r.output, "did you mean 'train'?")) << r.output;
  auto sub = run_cli("data statz x");
  EXPECT_EQ(sub.status, 1) << sub.output;
  EXPECT_TRUE(contains(sub.output, "unknown command 'statz' for 'bertune data'; did you mean 'stats'?"))
      << sub.output;
  auto far = run_cli("frobnicate");
  EXPECT_EQ(far.status, 1);
  EXPECT_TRUE(contains(far.output, "unknown command 'frobnicate'")) << far.output;
  EXPECT_FALSE(contains(far.output, "did you mean")) << far.output;
}

TEST(ExitCodes, UsageErrorsAreOneHelpIsZero) {
  EXPECT_EQ(run_cli("--help").status, 0);
  EXPECT_EQ(run_cli("tokenize --help").status, 0);
  auto help = run_cli("--help");
  EXPECT_TRUE(contains(help.output, "Exit codes: 0 ok, 1 user/data error")) << help.output;
  auto bad = run_cli("tokenize --max-length notanumber x");  // CLI11 alone would exit 105
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_EQ(run_cli("data head --no-such-flag").status, 1);
}

TEST(ExitCodes, FailureMapping) {
  auto code = [](auto&& thrower) {
    try {
      thrower();
    } catch (...) {
      return cli::describe_failure(std::current_exception());
    }
    return cli::Failure{-1, ""};
  };
  EXPECT_EQ(code([] { throw Error("bad flag"); }).exit_code, 1);
  EXPECT_EQ(code([] { throw NonFiniteStop("loss nan"); }).exit_code, 3);
  EXPECT_EQ(code([] { throw Interrupted("stop", SIGINT); }).exit_code, 130);
  EXPECT_EQ(code([] { throw Interrupted("stop", SIGTERM); }).exit_code, 143);
  auto internal = code([] { throw std::logic_error("index bug"); });
  EXPECT_EQ(internal.exit_code, 2);
  EXPECT_EQ(internal.message, "bertune: internal error: index bug");
  auto fs_error = code([] {
    throw fs::filesystem_error("cannot create directories", fs::path("out/x"),
                               std::make_error_code(std::errc::read_only_file_system));
  });
  EXPECT_EQ(fs_error.exit_code, 1);
  EXPECT_EQ(fs_error.message, "bertune: error: cannot create directories out/x: Read-only file system");
}

// An output directory that is a file: a user mistake, named as such.
TEST(ExitCodes, OutputPathUnderAFileIsAUserError) {
  TempDir tmp("outfile");
  fs::path file = tmp.file("plain", "x");
  auto r = run_cli("tokenize --output " + (file / "sub" / "out.jsonl").string() + " hello");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_FALSE(contains(r.output, kNoInternal)) << r.output;
  EXPECT_TRUE(contains(r.output, (file / "sub").string())) << r.output;
  EXPECT_TRUE(contains(r.output, "Not a directory")) << r.output;
  // /proc/self is not writable by anyone, root included.
  auto ro = run_cli("tokenize --output /proc/self/bertune_out/x.jsonl hello");
  EXPECT_EQ(ro.status, 1) << ro.output;
  EXPECT_FALSE(contains(ro.output, kNoInternal)) << ro.output;
}

namespace {
// Whether /proc/PID/status shows SIGINT and SIGTERM blocked (SigBlk bit n-1).
bool signals_blocked(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("SigBlk:", 0) == 0) {
      unsigned long long mask = std::stoull(line.substr(7), nullptr, 16);
      const unsigned long long want = (1ull << (SIGINT - 1)) | (1ull << (SIGTERM - 1));
      return (mask & want) == want;
    }
  return false;
}
}  // namespace

// SIGINT / SIGTERM: 130 / 143, whatever the command was doing (here: blocked
// opening a FIFO that nobody writes).
TEST(ExitCodes, SignalsExit130And143) {
  TempDir tmp("signals");
  const fs::path fifo = tmp.path / "fifo.tsv";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  for (int sig : {SIGINT, SIGTERM}) {
    pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      int devnull = ::open("/dev/null", O_WRONLY);
      ::dup2(devnull, 1);
      ::dup2(devnull, 2);
      ::execl(BERTUNE_BINARY, BERTUNE_BINARY, "data", "head", fifo.c_str(), static_cast<char*>(nullptr));
      ::_exit(99);
    }
    // Wait until bertune has installed its handling (both signals blocked in
    // the main thread); slow starts (ASan, a loaded machine) must not race it.
    for (int i = 0; i < 2000 && !signals_blocked(pid); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    ASSERT_TRUE(signals_blocked(pid)) << "bertune never blocked SIGINT/SIGTERM";
    std::this_thread::sleep_for(std::chrono::milliseconds(100));  // into open()
    ::kill(pid, sig);
    int status = 0;
    ::waitpid(pid, &status, 0);
    ASSERT_TRUE(WIFEXITED(status)) << "killed by signal " << WTERMSIG(status);
    EXPECT_EQ(WEXITSTATUS(status), 128 + sig);
  }
}

// A temporary path guarded by TempPathGuard is removed when a signal ends the
// process, and the exit code is 128 + signal.
TEST(SignalsDeathTest, TemporaryPathsRemovedOnSignal) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp("guard");
  const fs::path unfinished = tmp.path / "checkpoint-7.tmp-123";
  EXPECT_EXIT(
      {
        util::install_signal_handlers();
        fs::create_directories(unfinished);
        io::write_file_atomic(unfinished / "model.safetensors", "partial");
        util::TempPathGuard guard(unfinished);
        ::kill(::getpid(), SIGTERM);
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::exit(0);
      },
      ::testing::ExitedWithCode(143), "removed unfinished .*checkpoint-7.tmp-123");
  EXPECT_FALSE(fs::exists(unfinished));
}

// Inside StopAtSafePoint the first signal only asks the loop to stop; the
// loop's throw_if_stop_requested() unwinds, and the guards clean up.
TEST(SignalsDeathTest, SafePointStopUnwindsAndCleansUp) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp("safepoint");
  const fs::path unfinished = tmp.path / "checkpoint-9.tmp-1";
  EXPECT_EXIT(
      {
        util::install_signal_handlers();
        util::StopAtSafePoint scope;
        try {
          fs::create_directories(unfinished);
          util::TempPathGuard guard(unfinished);
          ::kill(::getpid(), SIGINT);
          for (int i = 0; i < 500 && util::stop_signal() == 0; ++i)
            std::this_thread::sleep_for(std::chrono::milliseconds(10));
          util::throw_if_stop_requested();
          std::exit(5);  // not reached when the flag was set
        } catch (const Interrupted& e) {
          std::fprintf(stderr, "caught %s; dir %s\n", e.what(), fs::exists(unfinished) ? "kept" : "removed");
          std::exit(e.exit_code());
        }
      },
      ::testing::ExitedWithCode(130), "caught interrupted by SIGINT; dir removed");
}

// Third pass: a closed terminal (SIGHUP) killed a training run mid-save and left
// checkpoint-N.tmp-PID/ behind; it is handled as SIGINT/SIGTERM are (exit 129).
TEST(SignalsDeathTest, HangupRemovesTemporaryPathsToo) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  TempDir tmp("hangup");
  const fs::path unfinished = tmp.path / "checkpoint-3.tmp-77";
  EXPECT_EXIT(
      {
        util::install_signal_handlers();
        fs::create_directories(unfinished);
        util::TempPathGuard guard(unfinished);
        ::kill(::getpid(), SIGHUP);
        std::this_thread::sleep_for(std::chrono::seconds(10));
        std::exit(0);
      },
      ::testing::ExitedWithCode(129), "interrupted by SIGHUP; removed unfinished .*checkpoint-3.tmp-77");
  EXPECT_FALSE(fs::exists(unfinished));
}

TEST(SignalsGuard, ReleasedPathIsKept) {
  TempDir tmp("release");
  fs::path kept = tmp.path / "kept", dropped = tmp.path / "dropped";
  fs::create_directories(kept);
  fs::create_directories(dropped);
  {
    util::TempPathGuard a(kept), b(dropped);
    a.release();
  }
  EXPECT_TRUE(fs::exists(kept));
  EXPECT_FALSE(fs::exists(dropped));
}

// ---------------------------------------------------------------- threads

TEST(Threads, AbsurdThreadCountsAreRefusedNotCrashed) {
  EXPECT_EQ(util::checked_thread_count(0), util::hardware_threads());
  EXPECT_EQ(util::checked_thread_count(3), 3);
  EXPECT_TRUE(contains(error_of([] { kernels::set_num_threads(100000); }), "--threads 100000: at most 256"));
  auto r = run_cli("tokenize --threads 100000 hello");  // was SIGSEGV inside libgomp
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--threads 100000: at most 256 threads")) << r.output;
  EXPECT_EQ(run_cli("tokenize --threads 256 hello").status, 0);
  auto words = error_of([] { text::count_words("a b", [](std::string_view, std::vector<std::string>&) {}, 100000); });
  EXPECT_TRUE(contains(words, "at most 256")) << words;
}

// ---------------------------------------------------------------- files

TEST(InputFiles, DirectoryGivenAsFileIsNamed) {
  TempDir tmp("dir_as_file");
  const std::string dir = tmp.path.string();
  EXPECT_EQ(error_of([&] { data::read_dataset(tmp.path); }), dir + " is a directory; expected a file");
  for (const std::string& cmd : {"data stats --no-tokens " + dir, "data head " + dir, "tokenize --input " + dir,
                                 "tokenize --input " + dir + " --format tsv"}) {
    auto r = run_cli(cmd);
    EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, dir + " is a directory; expected a file")) << cmd << "\n" << r.output;
  }
  auto missing = run_cli("data head " + dir + "/nope.tsv");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.output, "nope.tsv: No such file or directory")) << missing.output;
}

TEST(InputFiles, VocabTxtThatIsADirectory) {
  TempDir tmp("vocab_dir");
  fs::create_directories(tmp.path / "vocab.txt");
  auto e = error_of([&] { text::Tokenizer::load(tmp.path); });
  EXPECT_TRUE(contains(e, "vocab.txt is a directory; expected a file")) << e;
}

TEST(InputFiles, ConfigDirectoryAndMissingConfig) {
  TempDir tmp("config_dir");
  auto e = error_of([&] { model::BertConfig::load(tmp.path); });  // an HF dir without config.json
  EXPECT_TRUE(contains(e, "config.json: No such file or directory")) << e;
  fs::create_directories(tmp.path / "opts");
  auto r = run_cli("train --config " + (tmp.path / "opts").string() + " --model-config x.json --output-dir " +
                   (tmp.path / "out").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "opts is a directory; expected a file")) << r.output;
  EXPECT_FALSE(contains(r.output, "not valid JSON")) << r.output;
  EXPECT_FALSE(fs::exists(tmp.path / "out"));  // nothing written before validation
}

TEST(InputFiles, GzipDataIsReadTransparently) {
  TempDir tmp("gz");
  const std::string tsv = io::read_file(data_fixture("good.tsv"));
  const std::string csv = io::read_file(data_fixture("good.csv"));
  fs::path tsv_gz = tmp.file("good.tsv.gz", gzip(tsv)), csv_gz = tmp.file("good.csv.gz", gzip(csv));
  fs::path odd_name = tmp.file("ratings.txt", gzip(tsv));  // gzip whatever the name
  data::Dataset plain = data::read_dataset(data_fixture("good.tsv"));
  for (const fs::path& p : {tsv_gz, odd_name}) {
    data::Dataset d = data::read_dataset(p);
    ASSERT_EQ(d.size(), plain.size()) << p;
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d.examples[i].text, plain.examples[i].text);
  }
  EXPECT_EQ(data::read_dataset(csv_gz).size(), data::read_dataset(data_fixture("good.csv")).size());
  auto head = run_cli("data head -n 2 " + tsv_gz.string());
  EXPECT_EQ(head.status, 0) << head.output;
  EXPECT_TRUE(contains(head.output, "재밌다 정말")) << head.output;
  // A truncated download: an error naming the file, not binary on the terminal.
  std::string gz = gzip(tsv);
  fs::path cut = tmp.file("cut.tsv.gz", gz.substr(0, gz.size() / 2));
  EXPECT_EQ(error_of([&] { data::read_dataset(cut); }),
            cut.string() + ": cannot decompress gzip data: the gzip stream is truncated");
  // tokenize --input reads gzip too.
  fs::path lines = tmp.file("lines.txt.gz", gzip("좋다\n별로\n"));
  auto tok = run_cli("tokenize --input " + lines.string());
  EXPECT_EQ(tok.status, 0) << tok.output;
  EXPECT_EQ(std::count(tok.output.begin(), tok.output.end(), '\n'), 2) << tok.output;
}

// A 5 MB bad line is not copied into the error.
TEST(InputFiles, HugeBadLinesAreCutInErrors) {
  TempDir tmp("hugeline");
  const std::string big(5 << 20, 'x');
  fs::path jsonl = tmp.file("big.jsonl", "{\"document\": \"a\", \"label\": 1}\n{\"document\": " + big + "}\n");
  auto e = error_of([&] { data::read_dataset(jsonl); });
  EXPECT_TRUE(contains(e, "big.jsonl:2: bad JSON")) << e.substr(0, 300);
  EXPECT_LT(e.size(), 600u) << e.substr(0, 300);
  fs::path header = tmp.file("big.tsv", big + "\n");  // no 'document' column: the header is listed
  auto h = error_of([&] { data::read_dataset(header); });
  EXPECT_TRUE(contains(h, "no column 'document'")) << h.substr(0, 300);
  EXPECT_LT(h.size(), 600u);
  fs::path label = tmp.file("label.tsv", "id\tdocument\tlabel\n1\tok\t" + big + "\n");
  auto l = error_of([&] { data::read_dataset(label); });
  EXPECT_TRUE(contains(l, "label.tsv:2: label 'xxx")) << l.substr(0, 300);
  EXPECT_LT(l.size(), 600u);
  EXPECT_EQ(quote_excerpt(std::string(100, 'a'), 10), "aaaaaaaaaa... (100 bytes)");
  EXPECT_EQ(quote_excerpt("가나다", 4), "가... (9 bytes)");  // never inside a UTF-8 sequence
}

// Invalid UTF-8 used to be dropped silently by the tokenizer, gluing words.
TEST(InputFiles, InvalidUtf8IsAnErrorNamingTheLine) {
  TempDir tmp("utf8");
  fs::path lines = tmp.file("lines.txt", "좋다\nab\xff" "cd\n");
  auto r = run_cli("tokenize --input " + lines.string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, lines.string() + ":2: invalid UTF-8 at byte 2")) << r.output;
  auto arg = run_cli("tokenize ok " + quote("ab\xc3(cd"));
  EXPECT_EQ(arg.status, 1) << arg.output;
  EXPECT_TRUE(contains(arg.output, "text 2: invalid UTF-8 at byte 2")) << arg.output;
  EXPECT_EQ(data::read_text_lines(tmp.file("ok.txt", "a\r\nb\n")), (std::vector<std::string>{"a", "b"}));
}

// ---------------------------------------------------------------- config.json

namespace {
std::string config_error(const std::string& json_text) {
  return error_of([&] { model::BertConfig::from_json(nlohmann::json::parse(json_text), "cfg.json"); });
}
}  // namespace

TEST(ConfigJson, UnsupportedOrInvalidValuesAreRefusedNamingTheField) {
  EXPECT_EQ(config_error(R"({"model_type": "gpt2"})"), "cfg.json: model_type \"gpt2\" is not supported (only \"bert\")");
  EXPECT_EQ(config_error(R"({"model_type": "bert"})"), "");
  EXPECT_EQ(config_error(R"({"num_labels": 0})"), "cfg.json: field 'num_labels' is 0; it must lie in [1, 65536]");
  EXPECT_TRUE(contains(config_error(R"({"id2label": {}})"), "'id2label' is empty"));
  EXPECT_TRUE(contains(config_error(R"({"layer_norm_eps": -1})"), "field 'layer_norm_eps' is -1"));
  EXPECT_TRUE(contains(config_error(R"({"layer_norm_eps": 0})"), "must be a positive number"));
  EXPECT_EQ(config_error(R"({"hidden_size": 2147483648})"),
            "cfg.json: field 'hidden_size' is 2147483648, outside the 32-bit range [-2147483648, 2147483647]");
  EXPECT_EQ(config_error(R"({"hidden_size": 1.5})"), "cfg.json: field 'hidden_size' is 1.5, not an integer");
  EXPECT_EQ(config_error(R"({"vocab_size": "big"})"), "cfg.json: field 'vocab_size' must be an integer (found \"big\")");
  EXPECT_EQ(config_error(R"({"intermediate_size": 0})"), "cfg.json: field 'intermediate_size' is 0; it must be positive");
  EXPECT_TRUE(contains(config_error(R"({"hidden_dropout_prob": 1})"), "field 'hidden_dropout_prob' is 1.0"));
  EXPECT_TRUE(contains(config_error(R"({"attention_probs_dropout_prob": -0.1})"), "must lie in [0, 1)"));
  EXPECT_TRUE(contains(config_error(R"({"pad_token_id": 40000, "vocab_size": 100})"), "'pad_token_id' is 40000"));
  EXPECT_TRUE(contains(config_error(R"({"id2label": {"0": "neg", "x": "pos"}})"), "id2label entry 'x'"));
  auto ok = model::BertConfig::from_json(nlohmann::json::parse(R"({"num_labels": 3, "model_type": "bert"})"));
  EXPECT_EQ(ok.num_labels(), 3);
  EXPECT_EQ(ok.to_json()["model_type"], "bert");
}

// Resource limits: refused with the number and the limit before allocating.
TEST(ConfigJson, AbsurdSizesAreRefusedBeforeAllocating) {
  auto e = config_error(R"({"vocab_size": 1000000000000})");
  EXPECT_TRUE(contains(e, "'vocab_size' is 1000000000000, outside the 32-bit range")) << e;
  auto big = config_error(R"({"vocab_size": 2000000000, "hidden_size": 768})");
  EXPECT_TRUE(contains(big, "vocab_size x hidden_size = 2000000000 x 768 = 1536000000000 weights in one matrix, "
                            "more than the limit 2147483647"))
      << big;
  auto mem = config_error(R"({"vocab_size": 30000, "hidden_size": 4096, "intermediate_size": 16384,
                              "num_attention_heads": 64, "num_hidden_layers": 100000})");
  EXPECT_TRUE(contains(mem, "parameters (")) << mem;
  EXPECT_TRUE(contains(mem, "more than this machine's memory")) << mem;
  auto batch = error_of([] { util::require_fits_memory(1000000000ull * 512, 4, "--per-device-eval-batch-size 1000000000"); });
  EXPECT_TRUE(contains(batch, "--per-device-eval-batch-size 1000000000: 512000000000 x 4 bytes")) << batch;
  EXPECT_EQ(error_of([] { util::require_fits_memory(1000, 4, "ok"); }), "");
}

TEST(ConfigJson, NoRawJsonLibraryText) {
  TempDir tmp("json_text");
  fs::path bad = tmp.file("config.json", "{\"hidden_size\": 12,, }");
  auto e = error_of([&] { model::BertConfig::load(bad); });
  EXPECT_TRUE(contains(e, "config.json: not valid JSON (line 1, column 20: syntax error")) << e;
  EXPECT_FALSE(contains(e, "[json.exception")) << e;
  fs::path tok = tmp.file("tokenizer.json", "[1, 2");
  auto t = error_of([&] { text::Tokenizer::load_tokenizer_json(tok); });
  EXPECT_FALSE(contains(t, "[json.exception")) << t;
  EXPECT_TRUE(contains(t, "tokenizer.json: not valid JSON")) << t;
  nlohmann::json state = {{"epoch", 1.0}};
  EXPECT_EQ(error_of([&] { json_field<int64_t>(state, "global_step", "trainer_state.json"); }),
            "trainer_state.json: missing field \"global_step\"");
  EXPECT_EQ(error_of([&] { json_field<int64_t>(state, "epoch", "trainer_state.json"); }),
            "trainer_state.json: field \"epoch\" must be an integer (found 1.0)");
}

// ---------------------------------------------------------------- options

namespace {
std::string options_error(nlohmann::json j) {
  j["model_config"] = "c.json";
  j["output_dir"] = "o";
  return error_of([&] { train::train_options_from_json(j, "opts.json"); });
}
}  // namespace

TEST(TrainOptionsHardening, TorchRangesAndSignsAreChecked) {
  EXPECT_EQ(options_error({}), "");
  EXPECT_EQ(options_error({{"adam_beta1", 1.5}}), "--adam-beta1: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"adam_beta2", -0.5}}), "--adam-beta2: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"adam_epsilon", -1}}), "--adam-epsilon: must not be negative");
  EXPECT_EQ(options_error({{"hidden_dropout", 1}}), "--hidden-dropout: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"attention_dropout", 1}}), "--attention-dropout: must lie in [0, 1)");
  EXPECT_EQ(options_error({{"train_samples", -5}}), "--train-samples: must be positive (or -1 for all)");
  EXPECT_EQ(options_error({{"eval_samples", -2}}), "--eval-samples: must be positive (or -1 for all)");
  EXPECT_TRUE(contains(options_error({{"threads", 100000}}), "at most 256"));
  // int fields: no silent wrap to a negative number, no 1.5 -> 1.
  EXPECT_EQ(options_error({{"per_device_train_batch_size", 2147483648ll}}),
            "opts.json: per_device_train_batch_size: 2147483648 is out of range [-2147483648, 2147483647]");
  EXPECT_EQ(options_error({{"per_device_train_batch_size", "99999999999"}}),
            "opts.json: per_device_train_batch_size: '99999999999' is out of range [-2147483648, 2147483647]");
  EXPECT_EQ(options_error({{"per_device_train_batch_size", 1.5}}), "opts.json: per_device_train_batch_size: 1.5 is not an integer");
  EXPECT_EQ(options_error({{"logging_steps", "99999999999999999999"}}),
            "opts.json: logging_steps: '99999999999999999999' is out of range [-9223372036854775808, 9223372036854775807]");
}

// ---------------------------------------------------------------- [UNK] rate

TEST(UnkRate, WarnsWhenMostTokensAreUnknown) {
  const auto tok = text::Tokenizer::from_vocab({"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "good", "movie"},
                                               text::BasicTokenizerOptions{});
  std::vector<std::string> texts(10, "good movie 영화 좋다");
  auto rate = text::unk_rate(tok, tok.encode_batch(texts));
  EXPECT_EQ(rate.tokens, 40u);  // [CLS] and [SEP] not counted
  EXPECT_EQ(rate.unk, 20u);
  auto w = text::unk_warning(rate, "tok/");
  ASSERT_TRUE(w.has_value());
  EXPECT_TRUE(contains(*w, "50.0% of the tokens of the first batch are [UNK] (20 of 40)")) << *w;
  std::vector<std::string> fine(10, "good movie good movie");
  EXPECT_FALSE(text::unk_warning(text::unk_rate(tok, tok.encode_batch(fine)), "tok/").has_value());
}

// --samples past the end used to be accepted while the header claimed N rows.
TEST(DataCliHardening, SamplesAndLabelsOutOfRange) {
  const std::string good = data_fixture("good.tsv").string();
  auto more = run_cli("data stats --no-tokens --samples 100 " + good);
  EXPECT_EQ(more.status, 1) << more.output;
  EXPECT_TRUE(contains(more.output, "--samples 100: " + good + " has only 5 rows")) << more.output;
  auto negative = run_cli("data head --samples -5 " + good);
  EXPECT_EQ(negative.status, 1) << negative.output;
  EXPECT_TRUE(contains(negative.output, "--samples: must be positive (got -5)")) << negative.output;
  auto labels = run_cli("data head --num-labels 0 " + good);
  EXPECT_EQ(labels.status, 1) << labels.output;
  EXPECT_TRUE(contains(labels.output, "--num-labels: must be positive")) << labels.output;
  EXPECT_EQ(run_cli("data head -n -1 " + good).status, 1);
  EXPECT_EQ(run_cli("data head --samples 5 " + good).status, 0);
}

TEST(InputFiles, BinaryFileIsNamedNotQuoted) {
  auto e = error_of([] { data::read_dataset(BERTUNE_BINARY); });
  EXPECT_TRUE(contains(e, ": binary data (a NUL byte at offset ")) << e;
  EXPECT_EQ(e.find("ELF"), std::string::npos) << e;
}

// ---------------------------------------------------------------- fuzz findings

namespace {
fs::path fuzz_fixture(const std::string& name) {
  return fs::path(BERTUNE_SOURCE_DIR) / "tests" / "fixtures" / "fuzz" / name;
}
}  // namespace

// fuzz_config: a number too large for a double made nlohmann throw out_of_range
// (not parse_error), which escaped as "internal error" (exit 2).
// Fuzz finding 3 (fuzz_config, 10-min run): num_labels 932000 took 47 s to build the label
// maps; it is refused at once with the limit.
TEST(FuzzRegressions, HugeNumLabelsIsRefusedWithTheLimit) {
  auto e = error_of([] { model::BertConfig::load(fuzz_fixture("config_many_labels.json")); });
  EXPECT_TRUE(contains(e, "field 'num_labels' is 932000; it must lie in [1, 65536]")) << e;
}

TEST(FuzzRegressions, ConfigNumberOverflowIsAnError) {
  auto e = error_of([] { model::BertConfig::load(fuzz_fixture("config_number_overflow.json")); });
  EXPECT_TRUE(contains(e, "config_number_overflow.json: not valid JSON (number overflow parsing '77777")) << e;
  EXPECT_FALSE(contains(e, "[json.exception")) << e;
  TempDir tmp("overflow");
  fs::path opts = tmp.file("opts.json", R"({"learning_rate": 1e999})");
  auto r = run_cli("train --config " + opts.string() + " --model-config x.json --output-dir " +
                   (tmp.path / "out").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "opts.json: not valid JSON (number overflow parsing '1e999')")) << r.output;
}

// fuzz_trainer_state: the same overflow in trainer_state.json (read on resume).
TEST(FuzzRegressions, TrainerStateNumberOverflowIsAnError) {
  auto e = error_of([] { train::TrainerState::load(fuzz_fixture("trainer_state_number_overflow.json")); });
  EXPECT_TRUE(contains(e, "trainer_state_number_overflow.json: not valid JSON (number overflow parsing")) << e;
  TempDir tmp("state_fields");
  fs::path state = tmp.file("trainer_state.json", R"({"epoch": 1.0})");
  EXPECT_EQ(error_of([&] { train::TrainerState::load(state); }), state.string() + ": missing field \"global_step\"");
}

// Fuzz finding (fuzz_torch, CI's 30-s smoke): a pickle that appends memoised lists to
// themselves made a shared_ptr cycle that leaked. Under ASan (scripts/test-sanitize, leak
// detection on) this test fails without the cycle breaking in PickleMachine's destructor.
// The second reproducer overwrites the memo slot of a list that contains itself.
TEST(FuzzRegressions, PickleSelfReferenceDoesNotLeak) {
  for (const char* name : {"torch_pickle_self_cycle.bin", "torch_pickle_overwritten_memo_cycle.bin"}) {
    const std::string bytes = io::read_file(fuzz_fixture(name));
    ASSERT_GT(bytes.size(), 1u);
    const std::string pickle = bytes.substr(1);  // the fuzz target's selector byte: 1 = raw data.pkl
    const std::string e = error_of([&] { io::parse_state_dict_pickle(pickle, "data.pkl"); });
    EXPECT_TRUE(contains(e, "data.pkl")) << name << ": " << e;  // refused with a message, never a crash
  }
}

// A safetensors header may claim any shape; nothing is allocated from the
// claim: it must match the bytes present.
TEST(ResourceLimits, SafetensorsHugeShapeClaimIsRefused) {
  TempDir tmp("st_huge");
  auto file_with = [&](const std::string& header, size_t data_bytes) {
    std::string bytes(8, '\0');
    uint64_t n = header.size();
    std::memcpy(bytes.data(), &n, 8);
    return tmp.file("m.safetensors", bytes + header + std::string(data_bytes, '\0'));
  };
  auto huge = file_with(R"({"w":{"dtype":"F32","shape":[1000000000,1000000000],"data_offsets":[0,16]}})", 16);
  auto e = error_of([&] { io::read_safetensors(huge); });
  EXPECT_TRUE(contains(e, "tensor 'w': F32 [1000000000,1000000000] needs 4000000000000000000 bytes")) << e;
  auto overflow = file_with(R"({"w":{"dtype":"F32","shape":[4294967296,4294967296,16],"data_offsets":[0,16]}})", 16);
  EXPECT_TRUE(contains(error_of([&] { io::read_safetensors(overflow); }), "overflows"));
}

// ---------------------------------------------------------------- bertune_state.json (resume)

namespace {
nlohmann::json run_state_with(const std::string& key, const nlohmann::json& value) {
  train::RunState r;
  r.optimizer_steps = 3;
  r.skipped_steps = 1;
  r.epoch_index = 1;
  nlohmann::json j = r.to_json();
  j[key] = value;
  return j;
}
}  // namespace

// A hand-edited or corrupted bertune_state.json was believed: negative counts went into
// AdamW's bias correction and the loss windows (no run writes them).
TEST(ResumeState, CountsOutsideWhatARunWritesAreRefused) {
  auto refused = [](const std::string& key, const nlohmann::json& v) {
    return error_of([&] { train::RunState::from_json(run_state_with(key, v), "ck/bertune_state.json"); });
  };
  EXPECT_EQ(refused("optimizer_steps", -5),
            "ck/bertune_state.json: field \"optimizer_steps\" is -5; it counts, so it must be >= 0");
  EXPECT_TRUE(contains(refused("run_loss_steps", -1), "field \"run_loss_steps\" is -1"));
  EXPECT_TRUE(contains(refused("early_stopping_counter", -2), "field \"early_stopping_counter\" is -2"));
  EXPECT_TRUE(contains(refused("nonfinite_streak", 3), "field \"nonfinite_streak\" is 3; a saved run has 0, 1 or 2"));
  EXPECT_TRUE(contains(refused("log_loss_sum", std::numeric_limits<double>::infinity()),
                       "field \"log_loss_sum\" must be a finite number"));
  EXPECT_TRUE(contains(refused("real_tokens", 10), "real_tokens 10 exceeds processed_tokens 0"));
  EXPECT_EQ(refused("samples", 7), "");  // the base itself is accepted
}

// The collapse detector compares metric i with prediction hash i; a state with fewer hashes
// than metrics made the next evaluation read past the hashes (heap overflow under ASan).
TEST(ResumeState, CollapseHistoryOfUnequalLengthsIsRefused) {
  auto j = run_state_with("collapse", {{"prediction_hashes", nlohmann::json::array()}, {"metrics", {0.5, 0.5}}});
  EXPECT_EQ(error_of([&] { train::RunState::from_json(j, "s.json"); }),
            "s.json: field \"collapse\" has 0 prediction hashes but 2 metrics");
  auto not_ours = run_state_with("collapse", "x");
  EXPECT_EQ(error_of([&] { train::RunState::from_json(not_ours, "s.json"); }),
            "s.json: field \"collapse\" is not what bertune writes");
}

// epoch_index * steps_per_epoch + batch_in_epoch wrapped (signed overflow, UB): epoch 2^62 of
// 4 steps "agreed" with global_step 1, and the resumed run started at epoch 2^62.
TEST(ResumeState, DataPositionThatOverflowsIsInconsistent) {
  train::TrainerState state;
  state.global_step = 1;
  train::RunState run;
  run.optimizer_steps = 1;
  run.epoch_index = int64_t{1} << 62;
  run.batch_in_epoch = 1;
  auto e = error_of([&] { train::check_resume_consistent("out/checkpoint-1", state, run, 4); });
  EXPECT_TRUE(contains(e, "inconsistent checkpoint")) << e;
  EXPECT_TRUE(contains(e, "the data position is epoch 4611686018427387904, batch 1 of 4")) << e;
  run.epoch_index = 0;
  EXPECT_EQ(error_of([&] { train::check_resume_consistent("out/checkpoint-1", state, run, 4); }), "");
}

// What the fuzz target reads first: another run's fingerprint is named, not believed.
TEST(ResumeState, AnotherRunsFingerprintIsRefusedNamingBoth) {
  TempDir tmp("run_state_fp");
  auto j = run_state_with("samples", 0);
  j["fingerprint"] = {{"seed", 1}};
  tmp.file("bertune_state.json", j.dump());
  auto e = error_of([&] { train::read_run_state(tmp.path, {{"seed", 2}}); });
  EXPECT_TRUE(contains(e, "was made with {\"seed\":1} but this run has {\"seed\":2}")) << e;
  tmp.file("bertune_state.json", "[1, 2]");
  EXPECT_TRUE(contains(error_of([&] { train::read_run_state(tmp.path, {{"seed", 2}}); }),
                       "bertune_state.json: expected a JSON object, found array"));
}

// fuzz_bertune_state finding (second run): a prediction hash beyond 2^64 parsed as a double
// and was converted to uint64_t (undefined; UBSan's report, a garbage hash in release).
TEST(FuzzRegressions, BertuneStateHashOverflowIsAnError) {
  const fs::path f = fuzz_fixture("bertune_state_hash_overflow.json");
  EXPECT_EQ(error_of([&] { train::RunState::from_json(io::read_json_file(f), "s.json"); }),
            "s.json: field \"collapse\" is not what bertune writes");
}
