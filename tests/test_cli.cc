// The command line as users run it: the exit-code contract (0 ok, 1 user error, 2 internal
// bug, 3 non-finite guard, 130 SIGINT, 143 SIGTERM), errors that name their cause, and the
// refusal of inputs and options that would give a wrong result with exit 0. Most cases spawn
// the real binary.
#include <gtest/gtest.h>

#include "run_cli.h"
#include "test_support.h"
#include "train_fixture.h"

#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "cli/errors.h"
#include "io/atomic_file.h"
#include "kernels/cpu_runtime.h"
#include "quant/int8_model.h"
#include "text/vocab_trainer.h"
#include "util/error.h"
#include "util/paths.h"
#include "util/threads.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

const std::string kNoInternal = "internal error";

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

// ---------------------------------------------------------------- arguments and option values

// CLI11 read a positional argument written "[a, b]" as the list a, b: `tokenize '[PAD]'`
// tokenized PAD, `predict M '[정말, 최악]'` classified two texts. One argument is one text.
TEST(Arguments, PositionalTextStartingWithABracketIsOneText) {
  TempDir tmp("bracket_texts");
  auto pad = run_cli("tokenize '[PAD]'");
  EXPECT_EQ(pad.status, 0) << pad.output;
  EXPECT_EQ(pad.output, run_cli("tokenize --input " + tmp.file("pad.txt", "[PAD]\n").string()).output);
  EXPECT_NE(pad.output, run_cli("tokenize PAD").output);
  auto list = run_cli("tokenize '[정말, 최악]' '[a,b]' c");
  EXPECT_EQ(list.status, 0) << list.output;
  EXPECT_EQ(std::count(list.output.begin(), list.output.end(), '\n'), 3) << list.output;
  EXPECT_TRUE(contains(list.output, "\"[\", \"정말\", \",\", \"최악\", \"]\"")) << list.output;
  // Options and `--` around the texts work as before.
  auto mixed = run_cli("tokenize --max-length 4 '[x]' -- --not-an-option");
  EXPECT_EQ(mixed.status, 0) << mixed.output;
  EXPECT_EQ(std::count(mixed.output.begin(), mixed.output.end(), '\n'), 2) << mixed.output;
  EXPECT_TRUE(contains(run_cli("tokenize --help").output, "texts TEXT ...")) << run_cli("tokenize --help").output;
}

// A repeated option was "--threads: At Most 1 required but received 2". Which value was meant
// is a guess, so the option is named with both values, exit 1.
TEST(Arguments, RepeatedOptionIsNamedWithItsValues) {
  auto tok = run_cli("tokenize --threads 2 --threads 3 x");
  EXPECT_EQ(tok.status, 1) << tok.output;
  EXPECT_TRUE(contains(tok.output, "--threads given twice (2, then 3); give it once")) << tok.output;
  auto train = run_cli("train --learning-rate 3e-5 --output-dir x --learning-rate 5e-5 --learning-rate 1e-4");
  EXPECT_EQ(train.status, 1) << train.output;
  EXPECT_TRUE(contains(train.output, "--learning-rate given 3 times (3e-5, then 5e-5, then 1e-4); give it once"))
      << train.output;
  EXPECT_FALSE(contains(train.output, "At Most")) << train.output;
  auto alias = run_cli("train --eval-strategy steps --evaluation-strategy no --output-dir x");
  EXPECT_EQ(alias.status, 1) << alias.output;
  EXPECT_TRUE(contains(alias.output, "--eval-strategy given twice (steps, then --evaluation-strategy no)"))
      << alias.output;
  // Options that collect several values still do.
  EXPECT_EQ(run_cli("tokenize a b c").status, 0);
}

// `tokenize --max-length -1` said "not in range 0.000000 to 1797693...858368.000000" (309
// digits). Ranges are integers, open ones named only by their lower end.
TEST(Arguments, RangeMessagesSpeakIntegers) {
  auto neg = run_cli("tokenize --max-length -1 x");
  EXPECT_EQ(neg.status, 1) << neg.output;
  EXPECT_TRUE(contains(neg.output, "--max-length: must be a non-negative integer (got -1)")) << neg.output;
  EXPECT_LT(neg.output.size(), 200u) << neg.output;
  auto threads = run_cli("tokenize --threads -2 x");
  EXPECT_TRUE(contains(threads.output, "--threads: must be a non-negative integer (got -2)")) << threads.output;
  auto text = run_cli("tokenize --max-length 1.5 x");
  EXPECT_TRUE(contains(text.output, "--max-length: must be a non-negative integer (got 1.5)")) << text.output;
  auto huge = run_cli("tokenize --max-length 99999999999 x");
  EXPECT_TRUE(contains(huge.output, "--max-length: must be at most 2147483647 (got 99999999999)")) << huge.output;
  auto vocab = run_cli("vocab train --corpus x --output y --threads 300");
  EXPECT_EQ(vocab.status, 1) << vocab.output;
  EXPECT_TRUE(contains(vocab.output, "--threads: must be an integer from 1 to 256 (got 300)")) << vocab.output;
  EXPECT_FALSE(contains(vocab.output, ".000000")) << vocab.output;
  EXPECT_EQ(run_cli("tokenize --max-length 0 --threads +1 x").status, 0);
}

// `bertune --versoin` said "A subcommand is required" and `predict --modle D x` "--model is
// required": CLI11 checks those before unknown options. The unknown one is named first, with
// the nearest option of its command.
TEST(Arguments, UnknownOptionIsNamedBeforeMissingOnes) {
  auto version = run_cli("--versoin");
  EXPECT_EQ(version.status, 1) << version.output;
  EXPECT_TRUE(contains(version.output, "unknown option --versoin for 'bertune' (did you mean --version?)"))
      << version.output;
  EXPECT_FALSE(contains(version.output, "A subcommand is required")) << version.output;
  auto predict = run_cli("predict --modle D x");
  EXPECT_EQ(predict.status, 1) << predict.output;
  EXPECT_TRUE(contains(predict.output, "unknown option --modle for 'bertune predict' (did you mean --model?)"))
      << predict.output;
  EXPECT_FALSE(contains(predict.output, "is required")) << predict.output;
  auto stats = run_cli("data stats --tokn-limit=5 --no-tokens");
  EXPECT_EQ(stats.status, 1) << stats.output;
  EXPECT_TRUE(contains(stats.output, "unknown option --tokn-limit for 'bertune data stats' (did you mean "
                                     "--token-limit?)")) << stats.output;
  auto far = run_cli("tokenize --zzzzzz x");
  EXPECT_EQ(far.status, 1) << far.output;
  EXPECT_TRUE(contains(far.output, "unknown option --zzzzzz for 'bertune tokenize'")) << far.output;
  EXPECT_FALSE(contains(far.output, "did you mean")) << far.output;
  EXPECT_EQ(run_cli("--version").status, 0);
}

// `data stats --token-limit -1` counted every document as over the limit and exited 0; so
// did `vocab eval --threads -1` run. Counts that mean nothing are refused by name.
TEST(Arguments, MeaninglessCountsAreRefused) {
  for (const char* limit : {"-1", "0"}) {
    auto r = run_cli(std::string("data stats --no-tokens --token-limit ") + limit);
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_TRUE(contains(r.output, std::string("--token-limit: must be a positive integer (got ") + limit + ")")) << r.output;
  }
  auto eval = run_cli("vocab eval --tokenizer x --threads -1");
  EXPECT_EQ(eval.status, 1) << eval.output;
  EXPECT_TRUE(contains(eval.output, "--threads: must be a non-negative integer (got -1)")) << eval.output;
}

// quantize read config.json with the JSON library alone: a UTF-16 config (a Windows editor's
// "Unicode") was a parse error at column 1 instead of the encoding and its conversion.
TEST(Arguments, QuantizeNamesAUtf16Config) {
  TempDir tmp("cli_quantize_utf16");
  std::string utf16 = "\xFF\xFE";
  for (char c : std::string("{\"hidden_size\": 32}")) utf16 += std::string{c, '\0'};
  fs::create_directories(tmp.path / "m");
  io::write_file_atomic(tmp.path / "m" / "config.json", utf16);
  auto r = run_cli("quantize --model " + (tmp.path / "m").string() + " --output " + (tmp.path / "q").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "config.json is UTF-16 (little-endian, with a byte-order mark) text; convert it"))
      << r.output;
  EXPECT_FALSE(fs::exists(tmp.path / "q"));
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

// ---------------------------------------------------------------- commands on a trained model

namespace {

// 120 NSMC training reviews, a header-only file, an empty file, and the tiny classifier of
// tests/train_fixture.h trained for two steps on them: built once for the suite.
class CliOnTinyModel : public ::testing::Test {
 protected:
  static inline std::unique_ptr<TinyTrainDir> files;
  static inline fs::path dir;
  static void SetUpTestSuite() {
    files = std::make_unique<TinyTrainDir>("cli_tiny_model");
    dir = files->dir;
    const NsmcRows nsmc = nsmc_train_rows(120);
    std::string body;
    for (const std::string& line : nsmc.rows) body += line + "\n";
    io::write_file_atomic(dir / "train.tsv", nsmc.header + "\n" + body);
    io::write_file_atomic(dir / "header.tsv", nsmc.header + "\n");
    io::write_file_atomic(dir / "empty.txt", "");
    auto r = run_cli(train_args("model") + " --eval-strategy no");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { files.reset(); }
  static std::string path(const std::string& name) { return (dir / name).string(); }
  static std::string train_args(const std::string& out) {
    return "train --model-config " + path("tiny.json") + " --train-file " + path("train.tsv") +
           " --max-length 32 --max-steps 2 --save-strategy no --threads 2 --output-dir " + path(out);
  }
  static std::string model() { return path("model/final"); }
};

}  // namespace

// D05: `eval --data` of a file with a header and no rows printed accuracy 0.0000 over
// "examples 0" and exited 0.
TEST_F(CliOnTinyModel, EvalOfAFileWithoutRowsIsAnError) {
  auto r = run_cli("eval --model " + model() + " --data " + path("header.tsv"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "header.tsv: no examples to evaluate")) << r.output;
}

// D33, D36: a header-only --eval-file / --test-file was evaluated as 0 examples (accuracy 0,
// entering the best-model choice) and the run exited 0.
TEST_F(CliOnTinyModel, TrainWithEmptyEvalOrTestFileIsRefusedBeforeTraining) {
  auto eval = run_cli(train_args("e") + " --eval-file " + path("header.tsv") + " --eval-strategy steps --eval-steps 1");
  EXPECT_EQ(eval.status, 1) << eval.output;
  EXPECT_TRUE(contains(eval.output, "header.tsv: no evaluation examples")) << eval.output;
  auto test = run_cli(train_args("t") + " --eval-strategy no --test-file " + path("header.tsv"));
  EXPECT_EQ(test.status, 1) << test.output;
  EXPECT_TRUE(contains(test.output, "header.tsv: no test examples")) << test.output;
  EXPECT_FALSE(fs::exists(dir / "e" / "final"));
  EXPECT_FALSE(fs::exists(dir / "t" / "final"));
}

// D34, D35: `eval --samples 0` and `--samples -5` evaluated the whole file; more than the
// file holds claimed a subset it did not take (as `data --samples`, these are errors now).
TEST_F(CliOnTinyModel, EvalSamplesOutOfRangeAreErrors) {
  for (const char* n : {"0", "-5"}) {
    auto r = run_cli("eval --model " + model() + " --data " + path("train.tsv") + " --samples " + n);
    EXPECT_EQ(r.status, 1) << n << r.output;
    EXPECT_TRUE(contains(r.output, std::string("--samples: must be positive (got ") + n + ")")) << r.output;
  }
  auto more = run_cli("eval --model " + model() + " --data " + path("train.tsv") + " --samples 1000");
  EXPECT_EQ(more.status, 1) << more.output;
  EXPECT_TRUE(contains(more.output, "--samples 1000: " + path("train.tsv") + " has only 120 examples")) << more.output;
  EXPECT_EQ(run_cli("eval --model " + model() + " --data " + path("train.tsv") + " --samples 10").status, 0);
}

// D24: `predict --input EMPTY` printed nothing and exited 0, like a finished job.
TEST_F(CliOnTinyModel, PredictOnAnEmptyInputIsAnError) {
  for (const char* f : {"empty.txt", "header.tsv"}) {
    auto r = run_cli("predict --model " + model() + " --input " + path(f));
    EXPECT_EQ(r.status, 1) << f << r.output;
    EXPECT_TRUE(contains(r.output, path(f) + ": no texts to predict")) << r.output;
  }
}

// D31: `predict/eval --threads -1` ran on all cores; train refuses it.
TEST_F(CliOnTinyModel, NegativeThreadsAreRefusedByInferenceToo) {
  auto r = run_cli("predict --model " + model() + " --threads -1 좋아요");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--threads: must not be negative")) << r.output;
}

// --aggregation-strategy shapes a token classifier's entity spans; a sequence classifier has none.
TEST_F(CliOnTinyModel, AggregationStrategyIsForTokenClassifiers) {
  auto r = run_cli("predict --model " + model() + " --aggregation-strategy first 좋아요");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--aggregation-strategy: " + model() + " is a sequence classifier")) << r.output;
}

// K11: `tokenize --input F --output F` replaced the user's data file with its tokens (exit 0);
// the same for predict. Any spelling of the same file is refused before anything is written.
TEST_F(CliOnTinyModel, OutputThatIsTheInputIsRefused) {
  fs::copy_file(dir / "train.tsv", dir / "mine.tsv", fs::copy_options::overwrite_existing);
  const std::string before = io::read_file(dir / "mine.tsv");
  auto tok = run_cli("tokenize --input " + path("mine.tsv") + " --output " + (dir / "." / "mine.tsv").string());
  EXPECT_EQ(tok.status, 1) << tok.output;
  EXPECT_TRUE(contains(tok.output, "writing it would destroy the input")) << tok.output;
  auto pred = run_cli("predict --model " + model() + " --input " + path("mine.tsv") + " --output " + path("mine.tsv"));
  EXPECT_EQ(pred.status, 1) << pred.output;
  EXPECT_TRUE(contains(pred.output, "--output " + path("mine.tsv") + " is --input")) << pred.output;
  EXPECT_EQ(io::read_file(dir / "mine.tsv"), before);
}

// `quantize --output DIR/` staged inside DIR itself: a fresh DIR/ always failed ("cannot
// rename"), and `--model M --output M/ --overwrite` deleted the model directory M.
TEST_F(CliOnTinyModel, QuantizeOutputWithATrailingSlash) {
  auto fresh = run_cli("quantize --model " + model() + " --output " + path("q8") + "/");
  EXPECT_EQ(fresh.status, 0) << fresh.output;
  EXPECT_TRUE(quant::is_int8_model_dir(dir / "q8"));
  EXPECT_EQ(run_cli("predict --model " + path("q8") + " 좋아요").status, 0);  // predict reads int8 directories
  auto again = run_cli("quantize --model " + model() + " --output " + path("q8") + "/ --overwrite");
  EXPECT_EQ(again.status, 0) << again.output;
  auto self = run_cli("quantize --model " + model() + " --output " + model() + "/ --overwrite");
  EXPECT_EQ(self.status, 1) << self.output;
  EXPECT_TRUE(contains(self.output, "writing it would destroy the input")) << self.output;
  EXPECT_TRUE(fs::exists(dir / "model" / "final" / "model.safetensors"));
  EXPECT_EQ(run_cli("predict --model " + model() + " 좋아요").status, 0);
}

// Unsigned options: CLI11 turned "-1" into the type's largest value — a vocabulary of every
// word (exit 0), a shuffle seed of 2^64-1, a server without a body limit.
TEST_F(CliOnTinyModel, NegativeValuesOfUnsignedOptionsAreRefused) {
  for (const std::string& args :
       {"vocab train --corpus " + path("train.tsv") + " --vocab-size -1 --output " + path("v1"),
        "vocab train --corpus " + path("train.tsv") + " --min-frequency -3 --output " + path("v2"),
        "vocab train --corpus " + path("train.tsv") + " --limit-alphabet -3 --output " + path("v3"),
        "data head --samples 2 --data-seed -1 " + path("train.tsv"),
        "eval --model " + model() + " --data " + path("train.tsv") + " --samples 2 --data-seed -1",
        "serve --model " + model() + " --host 999.1.1.1 --port 0 --max-body-bytes -1"}) {
    auto r = run_cli(args);
    EXPECT_EQ(r.status, 1) << args << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "must not be negative (got -")) << r.output;
  }
  EXPECT_FALSE(fs::exists(dir / "v1"));
}

// K23: `bench gemm --repeat 0` printed "best 0.0 GFLOP/s" as a measurement.
TEST_F(CliOnTinyModel, BenchGemmWithoutRepeatsIsAnError) {
  auto r = run_cli("bench gemm --repeat 0");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--repeat must be positive (got 0)")) << r.output;
}

// P12: `vocab train` (and `pretrain`, same reader) trained on the first part of a truncated
// .gz corpus and exited 0; `data head` already said "the gzip stream is truncated".
TEST_F(CliOnTinyModel, TruncatedGzipCorpusIsAnError) {
  std::ifstream in(shared_path("data/nsmc/unlabeled.txt.gz"), std::ios::binary);
  std::string head(3000, '\0');
  ASSERT_TRUE(in.read(head.data(), static_cast<std::streamsize>(head.size())));
  io::write_file_atomic(dir / "cut.txt.gz", head);
  auto r = run_cli("vocab train --corpus " + path("cut.txt.gz") + " --vocab-size 1000 --output " + path("vcut"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "cut.txt.gz: the gzip stream is truncated or corrupt")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "vcut"));
  auto p = run_cli("pretrain --model-config " + path("tiny.json") + " --train-file " + path("cut.txt.gz") +
                   " --max-length 32 --max-steps 1 --threads 2 --output-dir " + path("pcut"));
  EXPECT_EQ(p.status, 1) << p.output;
  EXPECT_TRUE(contains(p.output, "the gzip stream is truncated or corrupt")) << p.output;
}

// predict read a text written "[a, b]" as two texts (CLI11's list syntax).
TEST_F(CliOnTinyModel, PredictTakesABracketedTextAsOneText) {
  auto r = run_cli("predict --model " + model() + " '[정말, 최악]'");
  EXPECT_EQ(r.status, 0) << r.output;
  EXPECT_EQ(std::count(r.output.begin(), r.output.end(), '\n'), 1) << r.output;
  auto two = run_cli("predict --model " + model() + " '[정말' '최악]'");
  EXPECT_EQ(std::count(two.output.begin(), two.output.end(), '\n'), 2) << two.output;
}

// `run --model-config x` said "the shipped model  is missing": with --model-config the run
// starts from that architecture, so a missing file is named as what it is.
TEST_F(CliOnTinyModel, RunNamesAMissingModelConfig) {
  auto r = run_cli("run --model-config " + path("nope.json") + " --output-dir " + path("run1"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "cannot open --model-config " + path("nope.json") + ": No such file or directory"))
      << r.output;
  EXPECT_FALSE(contains(r.output, "shipped model")) << r.output;
  EXPECT_FALSE(fs::exists(dir / "run1"));
}

// compare sets padding, evaluation, saving and resumption itself in every mode; given as flags
// they were dropped without a word.
TEST_F(CliOnTinyModel, CompareRefusesFlagsItDoesNotHonour) {
  const std::string base = "compare --model-config " + path("tiny.json") + " --train-file " + path("train.tsv") +
                           " --max-length 32 --max-steps 1 --threads 2 --output-dir " + path("cmp");
  for (const auto& [flag, why] : std::vector<std::pair<std::string, std::string>>{
           {"--padding longest", "--padding is not used: compare trains once in each padding mode"},
           {"--resume-from-checkpoint " + path("cmp"), "--resume-from-checkpoint is not used: every mode trains from the start"},
           {"--save-strategy steps", "--save-strategy is not used: no mode saves checkpoints"},
           {"--test-file " + path("train.tsv"), "--test-file is not used"},
           {"--group-by-length", "--group-by-length is not used"}}) {
    auto r = run_cli(base + " " + flag);
    EXPECT_EQ(r.status, 1) << flag << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, "bertune: error: compare: " + why)) << r.output;
  }
  EXPECT_FALSE(fs::exists(dir / "cmp"));
}

// `pretrain` on texts too short for its --mlm-probability masked nothing in most steps and
// reported a loss of 0.000000 for the run. Refused up front; a step that still draws no
// token says so.
TEST_F(CliOnTinyModel, PretrainWithNothingToMaskIsRefused) {
  const std::string base = "pretrain --model-config " + path("tiny.json") +
                           " --max-length 32 --threads 2 --validation-reviews 0 --eval-strategy no --save-strategy no";
  io::write_file_atomic(dir / "two.txt", "좋다\n별로\n");
  auto shorts = run_cli(base + " --train-file " + path("two.txt") + " --max-steps 2 --output-dir " + path("pt1"));
  EXPECT_EQ(shorts.status, 1) << shorts.output;
  EXPECT_TRUE(contains(shorts.output, "--mlm-probability 0.15 selects 0.45 tokens in an average step (" +
                                      path("two.txt") + " has 3.0 maskable tokens per step): most steps would have "
                                      "nothing to predict")) << shorts.output;
  auto rare = run_cli(base + " --train-file " + path("train.tsv") + " --mlm-probability 1e-6 --max-steps 2 "
                      "--output-dir " + path("pt2"));
  EXPECT_EQ(rare.status, 1) << rare.output;
  EXPECT_TRUE(contains(rare.output, "most steps would have nothing to predict")) << rare.output;
  EXPECT_TRUE(contains(run_cli(base + " --train-file " + path("train.tsv") + " --mlm-probability 0 --output-dir " +
                               path("pt3")).output, "--mlm-probability: must lie in (0, 1)"));
  EXPECT_FALSE(fs::exists(dir / "pt1" / "final"));
  // Ten one-token reviews: 1.5 tokens expected per step, so some steps draw none, and say so.
  io::write_file_atomic(dir / "ten.txt", "가\n나\n다\n라\n마\n바\n사\n아\n자\n차\n");
  auto few = run_cli(base + " --train-file " + path("ten.txt") + " --max-steps 12 --output-dir " + path("pt4"));
  EXPECT_EQ(few.status, 0) << few.output;
  EXPECT_TRUE(contains(few.output, "warning: an optimizer step (epoch ")) << few.output;
  EXPECT_TRUE(contains(few.output, "had no token selected for prediction (logged as loss 0)")) << few.output;
}
