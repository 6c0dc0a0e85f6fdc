// End-to-end tests of `bertune pretrain` on a tiny random model: the real binary is spawned
// (and killed). Its output must fine-tune with `bertune train --model`.
#include <gtest/gtest.h>

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zlib.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <map>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "train/report.h"
#include "util/paths.h"
#include "train_fixture.h"

namespace fs = std::filesystem;
using Json = nlohmann::json;
using namespace bertune;

namespace {

// 900 review texts from the NSMC training file as a gzipped corpus, a tiny config over the
// klue vocabulary, and a small labelled file for the fine-tuning check.
// Sentence pairs: each review with the next one in pairs.jsonl ({"a", "b"}), and 64 of them
// labelled (the first review's label) in labelled_pairs.jsonl.
struct Fixture : TinyTrainDir {
  fs::path corpus, labelled, pairs, labelled_pairs;
  size_t pair_count = 0;
  Fixture() : TinyTrainDir("pretrain_test") {
    const NsmcRows nsmc = nsmc_train_rows(900);
    std::string text;
    std::ofstream lab(dir / "labelled.tsv"), pj(dir / "pairs.jsonl"), lpj(dir / "labelled_pairs.jsonl");
    lab << nsmc.header << "\n";
    std::string previous;
    for (size_t i = 0; i < nsmc.rows.size(); ++i) {
      const std::string& line = nsmc.rows[i];
      const size_t a = line.find('\t'), b = line.rfind('\t');
      const std::string review = line.substr(a + 1, b - a - 1);
      text += review + "\n";
      if (i < 64) lab << line << "\n";
      if (i % 2 == 1 && !previous.empty() && !review.empty()) {
        pj << Json{{"a", previous}, {"b", review}}.dump() << "\n";
        ++pair_count;
        if (i < 130) lpj << Json{{"a", previous}, {"b", review}, {"label", std::stoi(line.substr(b + 1))}}.dump() << "\n";
      }
      previous = review;
    }
    pairs = dir / "pairs.jsonl";
    labelled_pairs = dir / "labelled_pairs.jsonl";
    corpus = dir / "corpus.txt.gz";
    gzFile f = gzopen(corpus.c_str(), "wb");
    gzwrite(f, text.data(), static_cast<unsigned>(text.size()));
    gzclose(f);
    labelled = dir / "labelled.tsv";
  }
  // Two fine-tuning steps of a pretrained directory on the labelled file, into dir/ft.
  std::vector<std::string> finetune_args(const fs::path& model_dir) const {
    return {"train", "--model", model_dir.string(), "--train-file", labelled.string(), "--max-length", "64",
            "--per-device-train-batch-size", "16", "--max-steps", "2", "--output-dir", (dir / "ft").string(),
            "--threads", "2"};
  }
  std::vector<std::string> args(const fs::path& out) const {
    return {"pretrain", "--model-config", config.string(), "--tokenizer",
            shared_path("models/klue-bert-base").string(), "--train-file", corpus.string(), "--max-length", "64",
            "--per-device-train-batch-size", "8", "--learning-rate", "1e-3", "--warmup-ratio", "0.1",
            "--logging-steps", "1", "--validation-reviews", "60", "--output-dir", out.string(), "--threads", "2"};
  }
  // args() over the sentence pairs.
  std::vector<std::string> pair_args(const fs::path& out) const {
    auto a = args(out);
    a[std::find(a.begin(), a.end(), "--train-file") - a.begin() + 1] = pairs.string();
    a.insert(a.end(), {"--text-column", "a", "--text-pair-column", "b"});
    return a;
  }
};

}  // namespace

// A short run: the log, the held-out evaluation, and an HF BertForMaskedLM directory that
// `bertune train --model` fine-tunes (classifier initialised, cls.* unused).
TEST(PretrainRun, WritesAMaskedLmModelThatFineTunes) {
  Fixture fx;
  const fs::path out = fx.dir / "pt";
  auto a = fx.args(out);
  a.insert(a.end(), {"--max-steps", "10", "--eval-strategy", "steps", "--eval-steps", "5", "--save-steps", "5"});
  ASSERT_EQ(run(a, fx.dir / "pt.txt"), 0) << slurp(fx.dir / "pt.txt");
  const std::string console = slurp(fx.dir / "pt.txt");
  EXPECT_NE(console.find("Running masked-LM pretraining"), std::string::npos) << console;
  EXPECT_NE(console.find("Held-out MLM (60 reviews, attention across reviews, as trained)"), std::string::npos)
      << console;
  EXPECT_NE(console.find("Held-out MLM (60 reviews, attention within reviews)"), std::string::npos) << console;
  EXPECT_EQ(metric_by_step(out / "log.jsonl", "final_eval_within_loss").size(), 1u);
  // The last scheduled evaluation (step 10) and the final one in the run's mode agree.
  EXPECT_DOUBLE_EQ(metric_by_step(out / "log.jsonl", "final_eval_across_loss").at(10),
                   metric_by_step(out / "log.jsonl", "eval_loss").at(10));
  const auto losses = metric_by_step(out / "log.jsonl", "loss");
  ASSERT_EQ(losses.size(), 10u);
  for (const auto& [step, loss] : losses) EXPECT_TRUE(std::isfinite(loss) && loss > 0) << step;
  // Ten steps at 1e-3 from a uniform start over 32K ids: the loss goes down.
  EXPECT_LT(losses.at(10), losses.at(1));
  const auto eval = metric_by_step(out / "log.jsonl", "eval_loss");
  ASSERT_EQ(eval.size(), 2u);
  EXPECT_TRUE(eval.count(5) && eval.count(10));
  EXPECT_TRUE(fs::exists(out / "checkpoint-5" / "optimizer.safetensors"));

  // Resuming under other masking would continue another run: refused, naming both.
  auto other = a;
  other.insert(other.end(), {"--resume-from-checkpoint", "last", "--whole-word-mask"});
  EXPECT_EQ(run(other, fx.dir / "other.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "other.txt").find("\"whole_word_mask\":true"), std::string::npos) << slurp(fx.dir / "other.txt");

  const fs::path final_dir = out / "final";
  const Json config = Json::parse(slurp(final_dir / "config.json"));
  EXPECT_EQ(config["architectures"], Json::array({"BertForMaskedLM"}));
  EXPECT_TRUE(fs::exists(final_dir / "vocab.txt"));
  const auto weights = io::read_safetensors(final_dir / "model.safetensors");
  EXPECT_TRUE(weights.count("cls.predictions.bias"));
  EXPECT_TRUE(weights.count("bert.embeddings.word_embeddings.weight"));
  EXPECT_FALSE(weights.count("classifier.weight"));

  ASSERT_EQ(run(fx.finetune_args(final_dir), fx.dir / "ft.txt"), 0) << slurp(fx.dir / "ft.txt");
  const std::string ft_console = slurp(fx.dir / "ft.txt");
  EXPECT_NE(ft_console.find("newly initialized: ["), std::string::npos) << ft_console;
  EXPECT_NE(ft_console.find("classifier.weight"), std::string::npos) << ft_console;
  EXPECT_NE(ft_console.find("were not used when initializing BertForSequenceClassification: [cls.predictions"),
            std::string::npos)
      << ft_console;
  // The encoder came from the pretrained directory, not from a fresh initialisation.
  const auto tuned = io::read_safetensors(fx.dir / "ft" / "final" / "model.safetensors");
  const auto& before = weights.at("bert.encoder.layer.1.output.dense.weight").data;
  const auto& after = tuned.at("bert.encoder.layer.1.output.dense.weight").data;
  ASSERT_EQ(before.size(), after.size());
  double moved = 0;
  for (size_t i = 0; i < before.size(); ++i) moved = std::max(moved, std::fabs(double(before[i]) - after[i]));
  EXPECT_LT(moved, 0.01) << "two steps at 5e-5 move a weight by at most ~1e-4";

  // Shipped as float16 under models/nsmc-bert-small, `bertune run` fine-tunes it by default.
  const fs::path models = fx.dir / "models";
  ASSERT_EQ(run({"checkpoint", "convert", final_dir.string(), (models / "nsmc-bert-small").string(), "--dtype",
                 "float16"},
                fx.dir / "convert.txt"),
            0)
      << slurp(fx.dir / "convert.txt");
  const std::vector<std::string> main_job = {"run", "--train-file", fx.labelled.string(), "--test-file",
                                             fx.labelled.string(), "--validation-split", "16", "--max-steps", "2",
                                             "--eval-steps", "1", "--save-steps", "1", "--threads", "2",
                                             "--output-dir", (fx.dir / "main").string()};
  setenv("BERTUNE_MODELS", models.c_str(), 1);
  const int main_rc = run(main_job, fx.dir / "main.txt");
  setenv("BERTUNE_MODELS", (fx.dir / "no-models").c_str(), 1);
  const int missing_rc = run(main_job, fx.dir / "missing.txt");
  unsetenv("BERTUNE_MODELS");
  const std::string main_console = slurp(fx.dir / "main.txt");
  ASSERT_EQ(main_rc, 0) << main_console;
  EXPECT_NE(main_console.find("MAIN JOB: test accuracy"), std::string::npos) << main_console;
  EXPECT_NE(main_console.find((models / "nsmc-bert-small").string()), std::string::npos) << main_console;
  EXPECT_NE(main_console.find("newly initialized: ["), std::string::npos) << main_console;
  EXPECT_EQ(missing_rc, 1);
  EXPECT_NE(slurp(fx.dir / "missing.txt").find("nsmc-bert-small is missing"), std::string::npos)
      << slurp(fx.dir / "missing.txt");
  EXPECT_EQ(run({"run", "--from-scratch", "--model", final_dir.string()}, fx.dir / "both.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "both.txt").find("cannot be combined with --model"), std::string::npos);
}

// Killed mid-run and resumed (twice), the loss curve equals the uninterrupted run's:
// same sequences, masks, dropout, learning rates and optimizer state. Exercised with
// gradient accumulation, whole-word masking and within-review attention; `more` adds flags
// (the ELECTRA objective: the generator's weights, moments and samples resume too).
void expect_resume_matches_uninterrupted(const std::vector<std::string>& more, bool pairs = false) {
  Fixture fx;
  auto args = [&](const fs::path& out, bool resume) {
    auto a = pairs ? fx.pair_args(out) : fx.args(out);
    for (const char* s : {"--train-reviews", "300", "--num-train-epochs", "2", "--gradient-accumulation-steps", "2",
                          "--whole-word-mask",
                          "--review-attention", "within", "--save-steps", "3", "--save-total-limit", "2",
                          "--eval-strategy", "epoch"})
      a.push_back(s);
    a.insert(a.end(), more.begin(), more.end());
    if (resume) a.insert(a.end(), {"--resume-from-checkpoint", "last"});
    return a;
  };
  const fs::path full = fx.dir / "full", killed = fx.dir / "killed";
  ASSERT_EQ(run(args(full, false), fx.dir / "full.txt"), 0) << slurp(fx.dir / "full.txt");
  const auto expected = metric_by_step(full / "log.jsonl", "loss");
  ASSERT_GE(expected.size(), 10u);
  const size_t n = expected.size();
  // Kill 1: right after step n/3. Kill 2: inside the save of a checkpoint (every 3 steps) at
  // about 2n/3, before it is published: the last resume starts from the one before.
  const size_t first = n / 3, second = (2 * n / 3 + 2) / 3 * 3;
  ASSERT_TRUE(run_until_killed(args(killed, false), "after-step:" + std::to_string(first), fx.dir / "k1.txt"))
      << slurp(fx.dir / "k1.txt");
  EXPECT_EQ(metric_by_step(killed / "log.jsonl", "loss").size(), first);
  ASSERT_TRUE(run_until_killed(args(killed, true), "in-save:" + std::to_string(second), fx.dir / "k2.txt"))
      << slurp(fx.dir / "k2.txt");
  EXPECT_EQ(metric_by_step(killed / "log.jsonl", "loss").size(), second);
  EXPECT_FALSE(fs::exists(killed / ("checkpoint-" + std::to_string(second))));
  EXPECT_TRUE(fs::exists(killed / ("checkpoint-" + std::to_string(second - 3))));
  ASSERT_EQ(run(args(killed, true), fx.dir / "k3.txt"), 0) << slurp(fx.dir / "k3.txt");
  EXPECT_NE(slurp(fx.dir / "k3.txt").find("Resuming from"), std::string::npos);
  const auto got = metric_by_step(killed / "log.jsonl", "loss");
  ASSERT_EQ(got.size(), n);
  for (const auto& [step, loss] : expected) {
    ASSERT_TRUE(got.count(step)) << "step " << step << " missing after resume";
    EXPECT_EQ(got.at(step), loss) << "step " << step;
  }
  const auto eval_a = metric_by_step(full / "log.jsonl", "eval_loss"), eval_b = metric_by_step(killed / "log.jsonl", "eval_loss");
  ASSERT_EQ(eval_a.size(), 2u);  // one per epoch
  EXPECT_EQ(eval_a, eval_b);
  for (const char* key : {"generator_loss", "discriminator_loss", "eval_rtd_accuracy"})  // ELECTRA's parts
    EXPECT_EQ(metric_by_step(full / "log.jsonl", key), metric_by_step(killed / "log.jsonl", key)) << key;
}

TEST(PretrainRun, ResumeAfterKillMatchesUninterrupted) { expect_resume_matches_uninterrupted({}); }

TEST(PretrainRun, PairResumeAfterKillMatchesUninterrupted) { expect_resume_matches_uninterrupted({}, true); }

// Pretraining on sentence pairs trains the second token type (a run on single texts never
// touches it) and saves a model that `train --text-pair-column` fine-tunes.
TEST(PretrainRun, PairsTrainTheSecondTokenTypeAndFineTuneAsPairs) {
  Fixture fx;
  auto single = fx.args(fx.dir / "single");
  auto paired = fx.pair_args(fx.dir / "paired");
  for (auto* a : {&single, &paired}) a->insert(a->end(), {"--max-steps", "3"});
  ASSERT_EQ(run(single, fx.dir / "single.txt"), 0) << slurp(fx.dir / "single.txt");
  ASSERT_EQ(run(paired, fx.dir / "paired.txt"), 0) << slurp(fx.dir / "paired.txt");
  const std::string console = slurp(fx.dir / "paired.txt");
  EXPECT_NE(console.find("Sentence pairs = " + std::to_string(fx.pair_count - 60) + " for training"), std::string::npos)
      << console;
  EXPECT_NE(console.find("Held-out MLM (60 pairs, attention across reviews, as trained)"), std::string::npos)
      << console;
  const char* types = "bert.embeddings.token_type_embeddings.weight";
  const auto single_weights = io::read_safetensors(fx.dir / "single" / "final" / "model.safetensors");
  const auto paired_weights = io::read_safetensors(fx.dir / "paired" / "final" / "model.safetensors");
  const auto& a = single_weights.at(types).data;
  const auto& b = paired_weights.at(types).data;
  ASSERT_EQ(a.size(), 64u);  // 2 types x hidden 32, the same initialisation (seed)
  double moved = 0;
  for (size_t i = 32; i < 64; ++i) moved = std::max(moved, std::fabs(double(a[i]) - b[i]));
  EXPECT_GT(moved, 1e-4) << "token type 1 was never trained";

  auto ft = fx.finetune_args(fx.dir / "paired" / "final");
  ft[std::find(ft.begin(), ft.end(), "--train-file") - ft.begin() + 1] = fx.labelled_pairs.string();
  ft.insert(ft.end(), {"--text-column", "a", "--text-pair-column", "b"});
  ASSERT_EQ(run(ft, fx.dir / "ft.txt"), 0) << slurp(fx.dir / "ft.txt");
  EXPECT_TRUE(fs::exists(fx.dir / "ft" / "final" / "model.safetensors"));

  auto missing = fx.pair_args(fx.dir / "never");
  missing.back() = "hypothesis";
  EXPECT_EQ(run(missing, fx.dir / "missing.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "missing.txt").find("hypothesis"), std::string::npos) << slurp(fx.dir / "missing.txt");
  const fs::path one_type = fx.dir / "one_type.json";
  io::write_file_atomic(one_type, R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64, "type_vocab_size": 1})");
  auto single_type = fx.pair_args(fx.dir / "never");
  single_type[std::find(single_type.begin(), single_type.end(), "--model-config") - single_type.begin() + 1] =
      one_type.string();
  EXPECT_EQ(run(single_type, fx.dir / "one_type.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "one_type.txt").find("--text-pair-column: the model has type_vocab_size 1"),
            std::string::npos)
      << slurp(fx.dir / "one_type.txt");
  auto alone = fx.args(fx.dir / "never");
  alone.insert(alone.end(), {"--text-column", "a"});
  EXPECT_EQ(run(alone, fx.dir / "alone.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "alone.txt").find("give --text-pair-column too"), std::string::npos)
      << slurp(fx.dir / "alone.txt");
  EXPECT_FALSE(fs::exists(fx.dir / "never"));
}

// --objective mlm-nsp: BERT's masked LM + next-sentence prediction on sentence pairs, each pair
// its own attention sequence. The log and the final figures carry the next-sentence loss and
// accuracy; final/ is a BertForPreTraining directory with HF's names (the pooler and
// cls.seq_relationship trained from their fresh initialisation), which `train` fine-tunes on
// pairs with the pooler kept. Without pairs or per-pair attention it refuses, naming the flag.
TEST(PretrainRun, NextSentencePredictionWritesABertForPreTrainingThatFineTunes) {
  Fixture fx;
  auto a = fx.pair_args(fx.dir / "nsp");
  a.insert(a.end(), {"--objective", "mlm-nsp", "--review-attention", "within", "--max-steps", "4",
                     "--eval-strategy", "steps", "--eval-steps", "2"});
  ASSERT_EQ(run(a, fx.dir / "nsp.txt"), 0) << slurp(fx.dir / "nsp.txt");
  const std::string console = slurp(fx.dir / "nsp.txt");
  EXPECT_NE(console.find("Running masked-LM + next-sentence pretraining"), std::string::npos) << console;
  EXPECT_NE(console.find("Held-out next-sentence prediction (60 pairs, half of them random): loss "), std::string::npos)
      << console;
  EXPECT_NE(console.find("Saved the pretrained model (BertForPreTraining)"), std::string::npos) << console;
  EXPECT_EQ(console.find("attention across reviews"), std::string::npos) << console;  // labels need per-pair attention
  bool logged = false;
  std::ifstream log(fx.dir / "nsp" / "log.jsonl");
  for (std::string line; std::getline(log, line);) {
    const Json r = Json::parse(line);
    if (!r.contains("eval_nsp_accuracy")) continue;
    logged = true;
    EXPECT_GE(r["eval_nsp_accuracy"].get<double>(), 0.0);
    EXPECT_LE(r["eval_nsp_accuracy"].get<double>(), 1.0);
    EXPECT_GT(r["eval_nsp_loss"].get<double>(), 0.0);
  }
  EXPECT_TRUE(logged) << "no eval_nsp_accuracy in " << (fx.dir / "nsp" / "log.jsonl");
  const fs::path final_dir = fx.dir / "nsp" / "final";
  EXPECT_EQ(Json::parse(slurp(final_dir / "config.json"))["architectures"], Json::array({"BertForPreTraining"}));
  const auto w = io::read_safetensors(final_dir / "model.safetensors");
  ASSERT_TRUE(w.count("cls.seq_relationship.weight"));
  EXPECT_EQ(w.at("cls.seq_relationship.weight").shape, (std::vector<int64_t>{2, 32}));
  EXPECT_EQ(w.at("cls.seq_relationship.bias").shape, (std::vector<int64_t>{2}));
  for (const char* n : {"bert.pooler.dense.weight", "bert.pooler.dense.bias", "cls.predictions.bias",
                        "cls.predictions.transform.dense.weight", "cls.predictions.transform.LayerNorm.weight"})
    EXPECT_TRUE(w.count(n)) << n;
  EXPECT_FALSE(w.count("cls.predictions.decoder.weight"));  // tied to the word embeddings, as HF saves it
  // Trained: the bias of the two classes started at 0.
  EXPECT_GT(std::fabs(w.at("cls.seq_relationship.bias").data[0]), 0.f);

  auto ft = fx.finetune_args(final_dir);
  ft[std::find(ft.begin(), ft.end(), "--train-file") - ft.begin() + 1] = fx.labelled_pairs.string();
  ft.insert(ft.end(), {"--text-column", "a", "--text-pair-column", "b"});
  ASSERT_EQ(run(ft, fx.dir / "ft.txt"), 0) << slurp(fx.dir / "ft.txt");
  const std::string ft_console = slurp(fx.dir / "ft.txt");
  // The pooler kept: only the classifier is new.
  EXPECT_NE(ft_console.find("are newly initialized: [classifier.weight, classifier.bias]"), std::string::npos)
      << ft_console;
  EXPECT_TRUE(fs::exists(fx.dir / "ft" / "final" / "model.safetensors"));

  auto across = fx.pair_args(fx.dir / "never");
  across.insert(across.end(), {"--objective", "mlm-nsp"});
  EXPECT_EQ(run(across, fx.dir / "across.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "across.txt").find("give --review-attention within"), std::string::npos)
      << slurp(fx.dir / "across.txt");
  auto single = fx.args(fx.dir / "never");
  single.insert(single.end(), {"--objective", "mlm-nsp", "--review-attention", "within"});
  EXPECT_EQ(run(single, fx.dir / "single.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "single.txt").find("needs sentence pairs"), std::string::npos) << slurp(fx.dir / "single.txt");
  EXPECT_FALSE(fs::exists(fx.dir / "never"));
}

TEST(PretrainRun, ElectraResumeAfterKillMatchesUninterrupted) {
  expect_resume_matches_uninterrupted({"--objective", "electra", "--generator-layers", "1"});
}

// ELECTRA: a generator and a discriminator sharing embeddings, written as transformers'
// ElectraForPreTraining and ElectraForMaskedLM; either fine-tunes as an ELECTRA classifier.
TEST(PretrainRun, ElectraWritesADiscriminatorThatFineTunes) {
  Fixture fx;
  const fs::path out = fx.dir / "electra";
  auto a = fx.args(out);
  a.insert(a.end(), {"--objective", "electra", "--max-steps", "10", "--eval-strategy", "steps", "--eval-steps", "5",
                     "--save-steps", "5"});
  ASSERT_EQ(run(a, fx.dir / "electra.txt"), 0) << slurp(fx.dir / "electra.txt");
  const std::string console = slurp(fx.dir / "electra.txt");
  EXPECT_NE(console.find("Running ELECTRA (replaced-token detection) pretraining"), std::string::npos) << console;
  EXPECT_EQ(console.find("masked-LM pretraining"), std::string::npos) << console;
  EXPECT_NE(console.find("Objective = ELECTRA replaced-token detection: generator 1 layers"), std::string::npos)
      << console;
  EXPECT_NE(console.find("Held-out discriminator (attention across reviews)"), std::string::npos) << console;
  const fs::path log = out / "log.jsonl";
  const auto loss = metric_by_step(log, "loss"), gen = metric_by_step(log, "generator_loss"),
             disc = metric_by_step(log, "discriminator_loss"), replaced = metric_by_step(log, "replaced_fraction");
  ASSERT_EQ(loss.size(), 10u);
  ASSERT_EQ(disc.size(), 10u);
  for (const auto& [step, l] : loss) {
    // one micro-batch per step: the logged loss is this step's generator + 50 x discriminator
    EXPECT_NEAR(l, gen.at(step) + 50 * disc.at(step), 1e-4 * l) << step;
    EXPECT_GT(replaced.at(step), 0.0) << "an untrained generator's samples mostly differ from the originals";
  }
  EXPECT_LT(loss.at(10), loss.at(1));
  EXPECT_LT(gen.at(10), gen.at(1));
  const auto rtd = metric_by_step(log, "eval_rtd_accuracy");
  ASSERT_EQ(rtd.size(), 2u);
  for (const auto& [step, acc] : rtd) EXPECT_TRUE(acc > 0 && acc <= 1) << step;
  for (const char* f : {"model.safetensors", "optimizer.safetensors", "generator.safetensors",
                        "generator_optimizer.safetensors"})
    EXPECT_TRUE(fs::exists(out / "checkpoint-5" / f)) << f;

  // Resuming an ELECTRA run as a masked LM would continue another run: refused.
  auto mlm = fx.args(out);
  mlm.insert(mlm.end(), {"--max-steps", "10", "--resume-from-checkpoint", "last"});
  EXPECT_EQ(run(mlm, fx.dir / "as-mlm.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "as-mlm.txt").find("\"objective\":\"electra\""), std::string::npos)
      << slurp(fx.dir / "as-mlm.txt");

  // final/: ELECTRA's two models as transformers lays them out, each loadable alone.
  const fs::path discriminator = out / "final" / "discriminator", generator = out / "final" / "generator";
  const Json d_config = Json::parse(slurp(discriminator / "config.json"));
  EXPECT_EQ(d_config["model_type"], "electra");
  EXPECT_EQ(d_config["architectures"], Json::array({"ElectraForPreTraining"}));
  EXPECT_EQ(d_config["num_hidden_layers"], 2) << "the discriminator's shape, not the generator's";
  EXPECT_EQ(d_config["embedding_size"], d_config["hidden_size"]);
  const Json g_config = Json::parse(slurp(generator / "config.json"));
  EXPECT_EQ(g_config["model_type"], "electra");
  EXPECT_EQ(g_config["architectures"], Json::array({"ElectraForMaskedLM"}));
  EXPECT_EQ(g_config["num_hidden_layers"], 1);
  const int64_t H = d_config["hidden_size"], I = d_config["intermediate_size"], V = d_config["vocab_size"],
                P = d_config["max_position_embeddings"], TT = d_config["type_vocab_size"],
                gI = g_config["intermediate_size"];
  // The names and shapes of transformers' ElectraForPreTraining / ElectraForMaskedLM state dicts.
  auto electra_shapes = [&](int layers, int64_t inner) {
    std::map<std::string, std::vector<int64_t>> s{{"electra.embeddings.word_embeddings.weight", {V, H}},
                                                  {"electra.embeddings.position_embeddings.weight", {P, H}},
                                                  {"electra.embeddings.token_type_embeddings.weight", {TT, H}},
                                                  {"electra.embeddings.LayerNorm.weight", {H}},
                                                  {"electra.embeddings.LayerNorm.bias", {H}}};
    for (int l = 0; l < layers; ++l) {
      const std::string p = "electra.encoder.layer." + std::to_string(l) + ".";
      for (const char* m : {"attention.self.query", "attention.self.key", "attention.self.value", "attention.output.dense"})
        s[p + m + ".weight"] = {H, H}, s[p + m + ".bias"] = {H};
      for (const char* m : {"attention.output.LayerNorm", "output.LayerNorm"})
        s[p + m + ".weight"] = {H}, s[p + m + ".bias"] = {H};
      s[p + "intermediate.dense.weight"] = {inner, H}, s[p + "intermediate.dense.bias"] = {inner};
      s[p + "output.dense.weight"] = {H, inner}, s[p + "output.dense.bias"] = {H};
    }
    return s;
  };
  auto saved_shapes = [](const fs::path& dir) {
    std::map<std::string, std::vector<int64_t>> s;
    for (const auto& [name, t] : io::read_safetensors(dir / "model.safetensors")) s[name] = t.shape;
    return s;
  };
  auto d_expected = electra_shapes(2, I);
  d_expected.insert({{"discriminator_predictions.dense.weight", {H, H}}, {"discriminator_predictions.dense.bias", {H}},
                     {"discriminator_predictions.dense_prediction.weight", {1, H}},
                     {"discriminator_predictions.dense_prediction.bias", {1}}});
  EXPECT_EQ(saved_shapes(discriminator), d_expected);
  auto g_expected = electra_shapes(1, gI);
  g_expected.insert({{"generator_predictions.dense.weight", {H, H}}, {"generator_predictions.dense.bias", {H}},
                     {"generator_predictions.LayerNorm.weight", {H}}, {"generator_predictions.LayerNorm.bias", {H}},
                     {"generator_lm_head.weight", {V, H}}, {"generator_lm_head.bias", {V}}});
  EXPECT_EQ(saved_shapes(generator), g_expected);
  bool position_ids = false;  // ElectraForMaskedLM's buffer, beside the generator's weights only
  for (const auto& t : io::list_safetensors(generator / "model.safetensors"))
    position_ids |= t.name == "electra.embeddings.position_ids" && t.dtype == "I64" && t.shape == std::vector<int64_t>{1, P};
  EXPECT_TRUE(position_ids);
  const auto d_weights = io::read_safetensors(discriminator / "model.safetensors"),
             g_weights = io::read_safetensors(generator / "model.safetensors");
  for (const char* shared : {"electra.embeddings.word_embeddings.weight", "electra.embeddings.LayerNorm.weight"})
    EXPECT_EQ(d_weights.at(shared).data, g_weights.at(shared).data) << shared << " is shared in pretraining";
  for (const fs::path& dir : {discriminator, generator}) EXPECT_TRUE(fs::exists(dir / "vocab.txt")) << dir;

  auto inspect = run({"checkpoint", "inspect", discriminator.string()}, fx.dir / "inspect.txt");
  EXPECT_EQ(inspect, 0);
  EXPECT_NE(slurp(fx.dir / "inspect.txt").find("electra, vocab"), std::string::npos) << slurp(fx.dir / "inspect.txt");
  EXPECT_NE(slurp(fx.dir / "inspect.txt").find(", ElectraForPreTraining"), std::string::npos)
      << slurp(fx.dir / "inspect.txt");

  // Either fine-tunes as an ElectraForSequenceClassification: the pretraining head dropped,
  // the classification head new.
  ASSERT_EQ(run(fx.finetune_args(discriminator), fx.dir / "ft.txt"), 0) << slurp(fx.dir / "ft.txt");
  const std::string ft = slurp(fx.dir / "ft.txt");
  EXPECT_NE(ft.find("were not used when initializing ElectraForSequenceClassification: [discriminator_predictions"),
            std::string::npos) << ft;
  EXPECT_NE(ft.find("Some weights of ElectraForSequenceClassification were not initialized from the model checkpoint "
                    "at " + discriminator.string() + " and are newly initialized: [classifier.dense"),
            std::string::npos) << ft;
  EXPECT_EQ(Json::parse(slurp(fx.dir / "ft" / "final" / "config.json"))["architectures"],
            Json::array({"ElectraForSequenceClassification"}));
  fs::remove_all(fx.dir / "ft");
  ASSERT_EQ(run(fx.finetune_args(generator), fx.dir / "ft-g.txt"), 0) << slurp(fx.dir / "ft-g.txt");
  EXPECT_NE(slurp(fx.dir / "ft-g.txt").find("were not used when initializing ElectraForSequenceClassification: "
                                            "[generator_lm_head.bias, generator_lm_head.weight, generator_predictions"),
            std::string::npos) << slurp(fx.dir / "ft-g.txt");
  // final/ itself holds two models: the error names them.
  fs::remove_all(fx.dir / "ft");
  EXPECT_EQ(run(fx.finetune_args(out / "final"), fx.dir / "ft-final.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "ft-final.txt").find("holds ELECTRA's two pretrained models; give " + discriminator.string()),
            std::string::npos) << slurp(fx.dir / "ft-final.txt");

  auto bad = fx.args(fx.dir / "never");
  bad.insert(bad.end(), {"--objective", "gan"});
  EXPECT_EQ(run(bad, fx.dir / "bad.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "bad.txt").find("--objective: 'gan' is not one of mlm|mlm-nsp|electra"), std::string::npos)
      << slurp(fx.dir / "bad.txt");
}

// --model continues pretraining a model directory (HF run_mlm's --model_name_or_path): its
// encoder and MLM head are where the run starts — at a vanishing learning rate they come out
// as they went in — and its tokenizer is the default. A directory without an MLM head (a
// fine-tuned classifier) gets one initialised afresh, and the banner names it and what went unused.
TEST(PretrainRun, ContinuesFromAModelDirectory) {
  Fixture fx;
  auto a = fx.args(fx.dir / "first");
  a.insert(a.end(), {"--max-steps", "2"});
  ASSERT_EQ(run(a, fx.dir / "first.txt"), 0) << slurp(fx.dir / "first.txt");
  const fs::path start = fx.dir / "first" / "final";
  auto continued = [&](const fs::path& model, const fs::path& out, const char* lr) {
    auto b = fx.args(out);
    b.erase(b.begin() + 1, b.begin() + 5);  // --model-config CONFIG --tokenizer DIR
    b.insert(b.begin() + 1, {"--model", model.string()});
    b[std::find(b.begin(), b.end(), "--learning-rate") - b.begin() + 1] = lr;
    b.insert(b.end(), {"--max-steps", "1"});
    return b;
  };
  ASSERT_EQ(run(continued(start, fx.dir / "second", "1e-30"), fx.dir / "second.txt"), 0) << slurp(fx.dir / "second.txt");
  const std::string console = slurp(fx.dir / "second.txt");
  EXPECT_NE(console.find("Model = " + start.string() + " ("), std::string::npos) << console;
  EXPECT_NE(console.find("its pretrained weights"), std::string::npos) << console;
  EXPECT_EQ(console.find("Newly initialised"), std::string::npos) << console;
  const auto before = io::read_safetensors(start / "model.safetensors");
  const auto after = io::read_safetensors(fx.dir / "second" / "final" / "model.safetensors");
  ASSERT_EQ(before.size(), after.size());
  for (const auto& [name, t] : before) {
    ASSERT_TRUE(after.count(name)) << name;
    const auto& x = t.data;
    const auto& y = after.at(name).data;
    ASSERT_EQ(x.size(), y.size()) << name;
    for (size_t i = 0; i < x.size(); ++i) ASSERT_NEAR(y[i], x[i], 1e-6 * (1 + std::fabs(x[i]))) << name << " " << i;
  }

  ASSERT_EQ(run(fx.finetune_args(start), fx.dir / "ft.txt"), 0) << slurp(fx.dir / "ft.txt");
  ASSERT_EQ(run(continued(fx.dir / "ft" / "final", fx.dir / "third", "1e-3"), fx.dir / "third.txt"), 0)
      << slurp(fx.dir / "third.txt");
  const std::string third = slurp(fx.dir / "third.txt");
  EXPECT_NE(third.find("Newly initialised (not in " + (fx.dir / "ft" / "final").string() + "): cls.predictions"),
            std::string::npos)
      << third;
  EXPECT_NE(third.find("Not used (of " + (fx.dir / "ft" / "final").string() + "): "), std::string::npos) << third;
  EXPECT_NE(third.find("classifier.weight"), std::string::npos) << third;
}

TEST(PretrainRun, BadInputFailsClearlyAndWritesNothing) {
  Fixture fx;
  const fs::path out = fx.dir / "never";
  const fs::path bad = fx.dir / "bad.txt";
  io::write_file_atomic(bad, "좋은 영화\n\n나쁜 \xFF 영화\n");
  auto a = fx.args(out);
  a[std::find(a.begin(), a.end(), "--train-file") - a.begin() + 1] = bad.string();
  EXPECT_EQ(run(a, fx.dir / "bad.log"), 1);
  EXPECT_NE(slurp(fx.dir / "bad.log").find(bad.string() + ":3: invalid UTF-8"), std::string::npos)
      << slurp(fx.dir / "bad.log");
  auto b = fx.args(out);
  b.insert(b.end(), {"--review-attention", "sideways"});
  EXPECT_EQ(run(b, fx.dir / "bad2.log"), 1);
  EXPECT_NE(slurp(fx.dir / "bad2.log").find("--review-attention: 'sideways' is not one of across|within"),
            std::string::npos)
      << slurp(fx.dir / "bad2.log");
  auto c = fx.args(out);
  c[std::find(c.begin(), c.end(), "--validation-reviews") - c.begin() + 1] = "5000";
  EXPECT_EQ(run(c, fx.dir / "bad3.log"), 1);
  EXPECT_NE(slurp(fx.dir / "bad3.log").find("at least one must remain for training"), std::string::npos) << slurp(fx.dir / "bad3.log");
  auto e = fx.args(out);
  e[std::find(e.begin(), e.end(), "--validation-reviews") - e.begin() + 1] = "0";
  e.insert(e.end(), {"--eval-strategy", "steps"});
  EXPECT_EQ(run(e, fx.dir / "bad5.log"), 1);
  EXPECT_NE(slurp(fx.dir / "bad5.log").find("give --validation-reviews N > 0"), std::string::npos)
      << slurp(fx.dir / "bad5.log");
  auto d = fx.args(out);
  d.erase(d.begin() + 1, d.begin() + 3);  // no --model-config
  EXPECT_EQ(run(d, fx.dir / "bad4.log"), 1);
  EXPECT_NE(slurp(fx.dir / "bad4.log").find("give exactly one of --model DIR (pretrained) or --model-config"),
            std::string::npos)
      << slurp(fx.dir / "bad4.log");
  EXPECT_FALSE(fs::exists(out)) << "a rejected run must not create its output dir";
}

// bench pretrain times the pretraining step on the run's own batches and writes nothing.
TEST(PretrainRun, BenchReportsTokensPerSecondWithSpread) {
  Fixture fx;
  const fs::path out = fx.dir / "bench-out";
  auto a = fx.args(out);
  a[0] = "pretrain";
  a.insert(a.begin(), "bench");
  a.insert(a.end(), {"--steps", "2", "--warmup", "1", "--repeat", "2", "--json"});
  ASSERT_EQ(run(a, fx.dir / "bench.txt"), 0) << slurp(fx.dir / "bench.txt");
  const std::string text = slurp(fx.dir / "bench.txt");
  const Json j = Json::parse(text.substr(text.find('{')));
  EXPECT_EQ(j["bench"], "pretrain");
  ASSERT_EQ(j["runs_real_tokens_per_s"].size(), 2u);
  EXPECT_GT(j["real_tokens_per_s"].get<double>(), 0);
  EXPECT_GT(j["timed_real_tokens_per_run"].get<int64_t>(), 2 * 8);  // two steps of 8 sequences
  EXPECT_LE(j["spread"]["min"].get<double>(), j["spread"]["max"].get<double>());
  EXPECT_FALSE(fs::exists(out)) << "bench writes nothing";
}

TEST(PretrainRun, NonFiniteLossStopsAndNamesTheLastGoodCheckpoint) {
  Fixture fx;
  const fs::path out = fx.dir / "nan";
  auto a = fx.args(out);
  a[std::find(a.begin(), a.end(), "--learning-rate") - a.begin() + 1] = "1e30";
  a[std::find(a.begin(), a.end(), "--warmup-ratio") - a.begin() + 1] = "0";
  a.insert(a.end(), {"--max-steps", "20", "--save-steps", "1"});
  ASSERT_EQ(run(a, fx.dir / "nan.txt"), 3) << slurp(fx.dir / "nan.txt");
  const std::string console = slurp(fx.dir / "nan.txt");
  EXPECT_NE(console.find("step skipped, weights unchanged"), std::string::npos) << console;
  EXPECT_NE(console.find("3 steps in a row had a non-finite loss or gradient"), std::string::npos) << console;
  EXPECT_NE(console.find("The last good checkpoint is " + (out / "checkpoint-1").string()), std::string::npos)
      << console;
  EXPECT_FALSE(fs::exists(out / "final"));
}

// --model-config may be an "electra" config for --objective electra (its embeddings of the
// hidden width: what the pretraining trains); the final discriminator keeps its fields.
// Other pairings are refused before anything is written, naming the config and the fix.
TEST(PretrainRun, ElectraConfigsAreTakenWhereTheyFit) {
  Fixture fx;
  auto with_config = [&](const std::string& name, const std::string& extra) {
    const fs::path c = fx.dir / name;
    io::write_file_atomic(c, R"({"model_type": "electra", "vocab_size": 32000, "hidden_size": 32,
      "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "summary_type": "first")" + extra + "}");
    return c;
  };
  auto args = [&](const fs::path& config, const fs::path& out, const char* objective) {
    auto a = fx.args(out);
    a[std::find(a.begin(), a.end(), "--model-config") - a.begin() + 1] = config.string();
    a.insert(a.end(), {"--objective", objective, "--max-steps", "2", "--save-strategy", "no"});
    return a;
  };
  const fs::path wide = with_config("wide.json", R"(, "embedding_size": 32)");
  ASSERT_EQ(run(args(wide, fx.dir / "ok", "electra"), fx.dir / "ok.txt"), 0) << slurp(fx.dir / "ok.txt");
  const Json saved = Json::parse(slurp(fx.dir / "ok" / "final" / "discriminator" / "config.json"));
  EXPECT_EQ(saved["model_type"], "electra");
  EXPECT_EQ(saved["embedding_size"], 32);
  EXPECT_EQ(saved["summary_type"], "first") << "the config's other fields are kept";

  const fs::path narrow = with_config("narrow.json", R"(, "embedding_size": 16)");
  EXPECT_EQ(run(args(narrow, fx.dir / "never", "electra"), fx.dir / "narrow.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "narrow.txt").find("--model-config " + narrow.string() + ": embedding_size 16 differs from "
                                              "hidden_size 32"), std::string::npos) << slurp(fx.dir / "narrow.txt");
  EXPECT_EQ(run(args(wide, fx.dir / "never", "mlm"), fx.dir / "mlm.txt"), 1);
  EXPECT_NE(slurp(fx.dir / "mlm.txt").find("--objective mlm trains a BertForMaskedLM; give a \"bert\" config (an "
                                           "\"electra\" one pretrains with --objective electra)"),
            std::string::npos) << slurp(fx.dir / "mlm.txt");
  EXPECT_FALSE(fs::exists(fx.dir / "never"));
}
