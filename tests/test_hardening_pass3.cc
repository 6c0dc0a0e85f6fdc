// Issue #8, third careless-user pass (docs/HARDENING.md, "Third pass"): each test is a case
// that crashed or gave exit 0 with a wrong result before its fix. The real binary is run on a
// tiny model trained once for the whole file.
#include <gtest/gtest.h>

#include "run_cli.h"

#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/read_file.h"
#include "model/config.h"
#include "quant/int8_model.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

using Result = CliResult;


// 120 NSMC training reviews, a header-only file, an empty file, and a tiny classifier
// (config of tests/test_trainer.cc) trained for two steps on them: built once.
class Pass3 : public ::testing::Test {
 protected:
  static inline fs::path dir;
  static void SetUpTestSuite() {
    dir = fs::temp_directory_path() / ("bertune_pass3_" + std::to_string(::getpid()));
    fs::remove_all(dir);
    fs::create_directories(dir);
    std::ifstream in(shared_path("data/nsmc/ratings_train.txt"));
    std::string header, line, body;
    std::getline(in, header);
    for (int i = 0; i < 120 && std::getline(in, line); ++i) body += line + "\n";
    io::write_file_atomic(dir / "train.tsv", header + "\n" + body);
    io::write_file_atomic(dir / "header.tsv", header + "\n");
    io::write_file_atomic(dir / "empty.txt", "");
    io::write_file_atomic(dir / "tiny.json", R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64})");
    auto r = run_cli(train_args("model") + " --eval-strategy no");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { fs::remove_all(dir); }
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
TEST_F(Pass3, EvalOfAFileWithoutRowsIsAnError) {
  auto r = run_cli("eval --model " + model() + " --data " + path("header.tsv"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "header.tsv: no examples to evaluate")) << r.output;
}

// D33, D36: a header-only --eval-file / --test-file was evaluated as 0 examples (accuracy 0,
// entering the best-model choice) and the run exited 0.
TEST_F(Pass3, TrainWithEmptyEvalOrTestFileIsRefusedBeforeTraining) {
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
TEST_F(Pass3, EvalSamplesOutOfRangeAreErrors) {
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
TEST_F(Pass3, PredictOnAnEmptyInputIsAnError) {
  for (const char* f : {"empty.txt", "header.tsv"}) {
    auto r = run_cli("predict --model " + model() + " --input " + path(f));
    EXPECT_EQ(r.status, 1) << f << r.output;
    EXPECT_TRUE(contains(r.output, path(f) + ": no texts to predict")) << r.output;
  }
}

// D31: `predict/eval --threads -1` ran on all cores; train refuses it.
TEST_F(Pass3, NegativeThreadsAreRefusedByInferenceToo) {
  auto r = run_cli("predict --model " + model() + " --threads -1 좋아요");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--threads: must not be negative")) << r.output;
}

// K11: `tokenize --input F --output F` replaced the user's data file with its tokens (exit 0);
// the same for predict. Any spelling of the same file is refused before anything is written.
TEST_F(Pass3, OutputThatIsTheInputIsRefused) {
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
TEST_F(Pass3, QuantizeOutputWithATrailingSlash) {
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
TEST_F(Pass3, NegativeValuesOfUnsignedOptionsAreRefused) {
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
TEST_F(Pass3, BenchGemmWithoutRepeatsIsAnError) {
  auto r = run_cli("bench gemm --repeat 0");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--repeat must be positive (got 0)")) << r.output;
}

// P12: `vocab train` (and `pretrain`, same reader) trained on the first part of a truncated
// .gz corpus and exited 0; `data head` already said "the gzip stream is truncated".
TEST_F(Pass3, TruncatedGzipCorpusIsAnError) {
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

// C11: num_labels 2 beside an id2label of three names trained a three-way classifier without
// a word (HF warns and takes id2label's count). Agreeing fields are still fine.
TEST(Pass3Config, NumLabelsThatDisagreesWithId2labelIsRefused) {
  auto error = [](const char* text) {
    try {
      model::BertConfig::from_json(nlohmann::json::parse(text), "cfg.json");
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error(R"({"num_labels": 2, "id2label": {"0": "neg", "1": "pos", "2": "meh"}})"),
            "cfg.json: field 'num_labels' is 2 but id2label names 3 labels; remove num_labels or make them agree");
  EXPECT_EQ(error(R"({"num_labels": 3, "id2label": {"0": "neg", "1": "pos", "2": "meh"}})"), "");
  EXPECT_EQ(error(R"({"id2label": {"0": "neg", "1": "pos"}})"), "");
}
