// Sentence pairs from the command line (--text-pair-column): a tiny 3-label classifier trained
// a few steps on pairs of NSMC reviews, then eval and predict on the same pairs; the errors a
// pair file or a pair option can give.
#include <gtest/gtest.h>

#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/read_file.h"
#include "run_cli.h"
#include "test_support.h"
#include "train_fixture.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

// Column `k` of a tab-separated NSMC row (id, document, label).
std::string field(const std::string& row, int k) {
  std::vector<std::string> f;
  std::stringstream in(row);
  for (std::string s; std::getline(in, s, '\t');) f.push_back(s);
  return k < static_cast<int>(f.size()) ? f[k] : "";
}

// About 60 pairs (premise, hypothesis) of consecutive NSMC reviews with 3 labels (the sum of their
// sentiments), a 3-label tiny config, and a model trained on them for a few steps.
class PairCli : public ::testing::Test {
 protected:
  static inline std::unique_ptr<TinyTrainDir> files;
  static inline fs::path dir;
  static inline size_t count = 0;  // pairs in pairs.tsv
  static void SetUpTestSuite() {
    files = std::make_unique<TinyTrainDir>("pair_cli");
    dir = files->dir;
    const NsmcRows nsmc = nsmc_train_rows(121);
    std::string body = "premise\thypothesis\tlabel\n";
    for (size_t i = 0; i + 1 < nsmc.rows.size(); i += 2) {
      const std::string a = field(nsmc.rows[i], 1), b = field(nsmc.rows[i + 1], 1);
      if (a.empty() || b.empty()) continue;
      ++count;
      body += a + "\t" + b + "\t" + std::to_string(std::stoi(field(nsmc.rows[i], 2)) + std::stoi(field(nsmc.rows[i + 1], 2))) + "\n";
    }
    io::write_file_atomic(dir / "pairs.tsv", body);
    io::write_file_atomic(dir / "tiny3.json", R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "id2label": {"0": "negative", "1": "mixed", "2": "positive"}})");
    auto r = run_cli(train_args("model") + " --eval-file " + path("pairs.tsv") + " --eval-strategy steps --eval-steps 4");
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { files.reset(); }
  static std::string path(const std::string& name) { return (dir / name).string(); }
  static std::string train_args(const std::string& out, const std::string& train_file = "pairs.tsv") {
    return "train --model-config " + path("tiny3.json") + " --train-file " + path(train_file) +
           " --text-column premise --text-pair-column hypothesis --max-length 24 --max-steps 4 --learning-rate 1e-3"
           " --save-strategy no --threads 2 --output-dir " + path(out);
  }
  static std::string model() { return path("model/final"); }
  static std::string pair_flags() { return " --text-column premise --text-pair-column hypothesis"; }
};

}  // namespace

TEST_F(PairCli, TrainEvalAndPredictReadBothTexts) {
  auto eval = run_cli("eval --json --model " + model() + " --data " + path("pairs.tsv") + pair_flags() + " --max-length 24");
  ASSERT_EQ(eval.status, 0) << eval.output;
  const auto metrics = json_lines(eval.output).at(0);
  int64_t evaluated = 0;
  for (const auto& row : metrics["eval_confusion_matrix"])
    for (const auto& n : row) evaluated += n.get<int64_t>();
  EXPECT_EQ(evaluated, static_cast<int64_t>(count)) << eval.output;
  ASSERT_GT(count, 50u);
  // Padding changes nothing but rounding: pad rows carry token type 0 and are masked.
  const double loss = metrics["eval_loss"].get<double>();
  auto padded = run_cli("eval --json --padding max_length --model " + model() + " --data " + path("pairs.tsv") +
                        pair_flags() + " --max-length 24");
  ASSERT_EQ(padded.status, 0) << padded.output;
  EXPECT_NEAR(json_lines(padded.output).at(0)["eval_loss"].get<double>(), loss, 1e-5 * loss);

  // The second text is read: the premise alone gives other logits.
  auto pairs = run_cli("predict --model " + model() + " --input " + path("pairs.tsv") + pair_flags());
  ASSERT_EQ(pairs.status, 0) << pairs.output;
  auto single = run_cli("predict --model " + model() + " --input " + path("pairs.tsv") + " --text-column premise");
  ASSERT_EQ(single.status, 0) << single.output;
  const auto p = json_lines(pairs.output), s = json_lines(single.output);
  ASSERT_EQ(p.size(), count);
  ASSERT_EQ(s.size(), count);
  EXPECT_EQ(p[0]["probs"].size(), 3u);
  EXPECT_NE(p[0]["logits"], s[0]["logits"]);
}

TEST_F(PairCli, EmptyPairCellIsAnErrorNamingFileAndLine) {
  io::write_file_atomic(dir / "holey.tsv", "premise\thypothesis\tlabel\n재밌다\t좋다\t2\n지루하다\t\t0\n");
  auto r = run_cli(train_args("holey", "holey.tsv"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, path("holey.tsv") + ":3: empty text pair in column 'hypothesis'")) << r.output;
  auto missing = run_cli("eval --model " + model() + " --data " + path("pairs.tsv") +
                         " --text-column premise --text-pair-column second");
  EXPECT_EQ(missing.status, 1) << missing.output;
  EXPECT_TRUE(contains(missing.output, "no column 'second' in the header")) << missing.output;
}

TEST_F(PairCli, PairsComeFromAFileNotFromArguments) {
  auto r = run_cli("predict --model " + model() + pair_flags() + " 재밌다 좋다");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "--text-pair-column reads pairs from --input FILE")) << r.output;
  auto short_max = run_cli("predict --model " + model() + " --input " + path("pairs.tsv") + pair_flags() +
                           " --max-length 2");
  EXPECT_EQ(short_max.status, 1) << short_max.output;
  EXPECT_TRUE(contains(short_max.output, "at least 3 for sentence pairs")) << short_max.output;
}

// A model with one token type has none for a second text: train, eval and predict say so
// instead of failing inside the forward.
TEST_F(PairCli, OneTokenTypeModelRefusesPairs) {
  io::write_file_atomic(dir / "one_type.json", R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 1,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 1,
      "id2label": {"0": "negative", "1": "mixed", "2": "positive"}})");
  const std::string single = "train --model-config " + path("one_type.json") + " --train-file " + path("pairs.tsv") +
                             " --text-column premise --max-length 24 --max-steps 1 --save-strategy no --threads 2"
                             " --output-dir " + path("one_type");
  auto pairs = run_cli(single + "-pairs --text-pair-column hypothesis");
  EXPECT_EQ(pairs.status, 1) << pairs.output;
  EXPECT_TRUE(contains(pairs.output, "--text-pair-column: the model has type_vocab_size 1")) << pairs.output;
  ASSERT_EQ(run_cli(single).status, 0);
  auto eval = run_cli("eval --model " + path("one_type/final") + " --data " + path("pairs.tsv") + pair_flags());
  EXPECT_EQ(eval.status, 1) << eval.output;
  EXPECT_TRUE(contains(eval.output, "has type_vocab_size 1, no token type for a pair's second text")) << eval.output;
}

// RoBERTa (one token type) and DistilBERT (none) read no token types: pairs are type 0
// throughout, as transformers encodes them; train, eval and predict all take them.
TEST_F(PairCli, FamiliesWithoutTokenTypesTakePairsOnEveryPath) {
  const std::string common = R"("vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
      "intermediate_size": 64, "max_position_embeddings": 64, "id2label": {"0": "negative", "1": "mixed", "2": "positive"})";
  io::write_file_atomic(dir / "roberta1.json", R"({"model_type": "roberta", "pad_token_id": 1, "type_vocab_size": 1, )" +
                                                   common + "}");
  io::write_file_atomic(dir / "distil.json", R"({"model_type": "distilbert", )" + common + "}");
  for (const std::string family : {"roberta1", "distil"}) {
    auto train = run_cli("train --model-config " + path(family + ".json") + " --train-file " + path("pairs.tsv") +
                         pair_flags() + " --max-length 24 --max-steps 1 --save-strategy no --threads 2 --output-dir " +
                         path(family + "_out"));
    ASSERT_EQ(train.status, 0) << family << ": " << train.output;
    const std::string m = path(family + "_out/final");
    auto eval = run_cli("eval --json --model " + m + " --data " + path("pairs.tsv") + pair_flags() + " --max-length 24");
    EXPECT_EQ(eval.status, 0) << family << ": " << eval.output;
    auto predict = run_cli("predict --model " + m + " --input " + path("pairs.tsv") + pair_flags() + " --max-length 24");
    EXPECT_EQ(predict.status, 0) << family << ": " << predict.output;
    EXPECT_EQ(json_lines(predict.output).size(), count) << family << ": " << predict.output;
  }
}

// --num-labels N: as from_pretrained(num_labels=N), a config that names another number of labels
// gets LABEL_0..N-1 (NLI's three from a config of two); one naming N keeps its names.
TEST_F(PairCli, NumLabelsSetsTheHeadsLabels) {
  io::write_file_atomic(dir / "tiny2.json", R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64})");
  const std::string common = " --train-file " + path("pairs.tsv") + pair_flags() +
                             " --max-length 24 --max-steps 1 --save-strategy no --threads 2 --output-dir ";
  auto r = run_cli("train --model-config " + path("tiny2.json") + " --num-labels 3" + common + path("three"));
  ASSERT_EQ(r.status, 0) << r.output;
  auto config = nlohmann::json::parse(io::read_file(dir / "three/final/config.json"));
  EXPECT_EQ(config["id2label"], (nlohmann::json{{"0", "LABEL_0"}, {"1", "LABEL_1"}, {"2", "LABEL_2"}}));
  EXPECT_EQ(config["problem_type"], "single_label_classification");
  // Without it the two-label config meets label 2 and says so.
  r = run_cli("train --model-config " + path("tiny2.json") + common + path("two"));
  EXPECT_EQ(r.status, 1) << r.output;
  r = run_cli("train --model " + model() + " --num-labels 3" + common + path("same"));
  ASSERT_EQ(r.status, 0) << r.output;
  config = nlohmann::json::parse(io::read_file(dir / "same/final/config.json"));
  EXPECT_EQ(config["id2label"]["1"], "mixed");
  r = run_cli("train --model-config " + path("tiny2.json") + " --num-labels -2" + common + path("bad"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find("--num-labels: must be at least 1"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "bad"));
}
