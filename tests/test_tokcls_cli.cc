// Token classification from the command line (--task token-classification): a tiny tagger
// trained a few steps on KLUE-NER sentences (CoNLL columns, one character per line), its saved
// directory (BertForTokenClassification, the training file's tags), then eval and predict
// (entity spans with character offsets); the errors a tagged file or the task option give.
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <memory>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "data/tagged.h"
#include "infer/entities.h"
#include "infer/model_dir.h"
#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "run_cli.h"
#include "serve_fixture.h"
#include "test_support.h"
#include "train_fixture.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

// The first `n` sentences of KLUE-NER's training file, comments kept.
std::string klue_ner_sentences(size_t n) {
  std::ifstream in(shared_path("data/klue/ner_train.tsv"));
  std::string out;
  size_t sentences = 0;
  for (std::string line; std::getline(in, line);) {
    out += line + "\n";
    if (line.empty() && ++sentences == n) break;
  }
  return out;
}

class TokenCli : public ::testing::Test {
 protected:
  static inline std::unique_ptr<TinyTrainDir> files;
  static inline std::string train_output;
  static void SetUpTestSuite() {
    files = std::make_unique<TinyTrainDir>("tokcls_cli");
    io::write_file_atomic(files->dir / "ner.tsv", klue_ner_sentences(40));
    auto r = run_cli(train_args("model") + " --eval-file " + path("ner.tsv") + " --eval-strategy steps --eval-steps 4");
    train_output = r.output;
    ASSERT_EQ(r.status, 0) << r.output;
  }
  static void TearDownTestSuite() { files.reset(); }
  static std::string path(const std::string& name) { return (files->dir / name).string(); }
  static std::string train_args(const std::string& out, const std::string& train_file = "ner.tsv") {
    return "train --task token-classification --model-config " + files->config.string() + " --train-file " +
           path(train_file) + " --max-length 48 --max-steps 4 --learning-rate 1e-3 --save-strategy no --threads 2 "
           "--output-dir " + path(out);
  }
  static std::string model() { return path("model/final"); }
};

}  // namespace

// The saved directory is what transformers loads as BertForTokenClassification: its
// architectures, id2label = the training file's tags sorted, classifier.* and no pooler.
TEST_F(TokenCli, SavedModelIsABertForTokenClassification) {
  // The evaluations logged the entity metrics, and training_args.json holds the task.
  bool logged = false;
  for (const auto& r : train::JsonlLog::read(files->dir / "model" / "log.jsonl"))
    logged |= r.contains("eval_f1") && r.contains("eval_precision") && r.contains("eval_recall");
  EXPECT_TRUE(logged) << train_output;
  EXPECT_EQ(nlohmann::json::parse(std::ifstream(files->dir / "model" / "training_args.json")).at("task"),
            "token-classification");
  const auto config = nlohmann::json::parse(std::ifstream(fs::path(model()) / "config.json"));
  EXPECT_EQ(config.at("architectures"), nlohmann::json::array({"BertForTokenClassification"}));
  const auto tags = data::tag_set(data::read_tagged(path("ner.tsv")));
  ASSERT_GT(tags.size(), 3u);
  for (size_t i = 0; i < tags.size(); ++i) {
    EXPECT_EQ(config.at("id2label").at(std::to_string(i)), tags[i]);
    EXPECT_EQ(config.at("label2id").at(tags[i]), static_cast<int>(i));
  }
  const TensorMap weights = io::read_safetensors(fs::path(model()) / "model.safetensors");
  EXPECT_EQ(weights.at("classifier.weight").shape, (std::vector<int64_t>{static_cast<int64_t>(tags.size()), 32}));
  EXPECT_EQ(weights.count("bert.pooler.dense.weight"), 0u);
}

TEST_F(TokenCli, EvalReportsEntityMetrics) {
  auto r = run_cli("eval --json --model " + model() + " --data " + path("ner.tsv") + " --max-length 48");
  ASSERT_EQ(r.status, 0) << r.output;
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  for (const char* key : {"eval_loss", "eval_precision", "eval_recall", "eval_f1", "eval_accuracy"}) {
    ASSERT_TRUE(j.contains(key)) << key << ": " << r.output;
    if (std::string(key) != "eval_loss") {
      EXPECT_GE(j.at(key).get<double>(), 0.0) << key;
      EXPECT_LE(j.at(key).get<double>(), 1.0) << key;
    }
  }
  EXPECT_GT(j.at("eval_loss").get<double>(), 0.0);
  EXPECT_GT(j.at("eval_accuracy").get<double>(), 0.0);  // most characters are O
}

// predict: a JSON list of spans per line, each with character offsets into its line.
TEST_F(TokenCli, PredictGivesSpansWithCharacterOffsets) {
  io::write_file_atomic(files->dir / "texts.txt", "경찰은 또 성매매 알선 자금을 관리한 박씨의 딸과\n서울에서 만났다.\n");
  auto r = run_cli("predict --model " + model() + " --input " + path("texts.txt"));
  ASSERT_EQ(r.status, 0) << r.output;
  std::stringstream in(r.output);
  std::vector<nlohmann::json> lines;
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '[') lines.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(lines.size(), 2u) << r.output;
  const auto tags = data::tag_set(data::read_tagged(path("ner.tsv")));
  for (const auto& spans : lines)
    for (const auto& s : spans) {
      for (const char* key : {"entity_group", "score", "word", "start", "end"}) ASSERT_TRUE(s.contains(key)) << s;
      EXPECT_LT(s.at("start").get<int>(), s.at("end").get<int>());
      EXPECT_NE(s.at("entity_group"), "O");
      EXPECT_TRUE(std::find(tags.begin(), tags.end(), "B-" + s.at("entity_group").get<std::string>()) != tags.end() ||
                  std::find(tags.begin(), tags.end(), "I-" + s.at("entity_group").get<std::string>()) != tags.end())
          << s;
    }
}

TEST_F(TokenCli, BadTagLineAndBadOptionsAreRefused) {
  io::write_file_atomic(files->dir / "bad.tsv", "경\tB-OG\n찰\n");
  auto r = run_cli(train_args("bad_out", "bad.tsv"));
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_NE(r.output.find(path("bad.tsv") + ":2: a token and its tag separated by a tab or a space"), std::string::npos)
      << r.output;
  auto task = run_cli("train --task ner --model-config " + files->config.string() + " --train-file " +
                      path("ner.tsv") + " --output-dir " + path("task_out"));
  EXPECT_EQ(task.status, 1) << task.output;
  EXPECT_NE(task.output.find("--task: 'ner' is not one of sequence-classification|token-classification"),
            std::string::npos)
      << task.output;
  // A metric the task does not report cannot pick the best model.
  auto mse = run_cli(train_args("mse_out") + " --metric-for-best-model mse");
  EXPECT_EQ(mse.status, 1) << mse.output;
  EXPECT_NE(mse.output.find("--metric-for-best-model mse is not a metric of --task token-classification "
                            "(loss|precision|recall|f1|accuracy)"),
            std::string::npos)
      << mse.output;
  auto pairs = run_cli(train_args("pair_out") + " --text-pair-column b");
  EXPECT_EQ(pairs.status, 1) << pairs.output;
  EXPECT_NE(pairs.output.find("--text-pair-column does not apply"), std::string::npos) << pairs.output;
  // eval and predict of a tagger refuse the text-column flags instead of passing over them.
  for (const char* flag : {"--text-column b", "--text-pair-column b"}) {
    auto eval = run_cli("eval --model " + model() + " --data " + path("ner.tsv") + " " + flag);
    EXPECT_EQ(eval.status, 1) << eval.output;
    EXPECT_NE(eval.output.find(std::string(flag).substr(0, std::string(flag).find(' ')) + ": " + model() +
                               " is a token classifier"),
              std::string::npos)
        << eval.output;
  }
  io::write_file_atomic(files->dir / "pairs.tsv", "a\tb\n경찰\t박씨\n");
  auto predict = run_cli("predict --model " + model() + " --input " + path("pairs.tsv") + " --text-column a --text-pair-column b");
  EXPECT_EQ(predict.status, 1) << predict.output;
  EXPECT_NE(predict.output.find("--text-pair-column: " + model() + " is a token classifier, which tags single texts"),
            std::string::npos)
      << predict.output;
  // A table of texts is not tagged data: its middle column holds spaces.
  io::write_file_atomic(files->dir / "table.tsv", "id\tdocument\tlabel\n1\t정말 재밌어요\t1\n");
  auto table = run_cli(train_args("table_out", "table.tsv"));
  EXPECT_EQ(table.status, 1) << table.output;
  EXPECT_NE(table.output.find(path("table.tsv") + ":2: a middle column holds text with spaces"), std::string::npos)
      << table.output;
}

// data stats --task token-classification: sentences, words and tag counts of the file (JSON),
// and the table options refused rather than passed over.
TEST_F(TokenCli, DataStatsCountsSentencesWordsAndTags) {
  auto r = run_cli("data stats --json --task token-classification --token-limit 32 " + path("ner.tsv"));
  ASSERT_EQ(r.status, 0) << r.output;
  const data::TaggedDataset d = data::read_tagged(files->dir / "ner.tsv");
  size_t words = 0, persons = 0;
  for (const auto& sentence : d.sentences) {
    words += sentence.tokens.size();
    persons += std::count(sentence.tags.begin(), sentence.tags.end(), "B-PS");
  }
  const auto j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_EQ(j["sentences"], d.size());
  EXPECT_EQ(j["words"], words);
  EXPECT_EQ(j["tag_counts"]["B-PS"], persons);
  EXPECT_GT(j["over_token_limit"].get<int>(), 0) << r.output;
  EXPECT_GT(j["words_past_token_limit"].get<int>(), 0) << r.output;
  // data head: the first sentences' words and tags, each with the line it starts on.
  auto head = run_cli("data head --json -n 2 --task token-classification " + path("ner.tsv"));
  ASSERT_EQ(head.status, 0) << head.output;
  const auto first = json_lines(head.output);
  ASSERT_EQ(first.size(), 2u) << head.output;
  EXPECT_EQ(first[1]["tokens"], d.sentences[1].tokens);
  EXPECT_EQ(first[1]["tags"], d.sentences[1].tags);
  EXPECT_EQ(first[1]["line"], d.sentences[1].lines.front());
  auto text_column = run_cli("data stats --task token-classification --text-column a " + path("ner.tsv"));
  EXPECT_EQ(text_column.status, 1) << text_column.output;
  EXPECT_NE(text_column.output.find("--text-column: --task token-classification reads tagged data"), std::string::npos)
      << text_column.output;
  io::write_file_atomic(files->dir / "stats_table.tsv", "id\tdocument\tlabel\n1\t정말 재밌어요\t1\n");
  auto table = run_cli("data stats --task token-classification " + path("stats_table.tsv"));
  EXPECT_EQ(table.status, 1) << table.output;
}

// serve answers what predict prints: the spans of a text for an "inputs" string, a list of
// span lists for a list of texts, and {"predictions": [...]} on /v1/classify. A model that
// tags every piece I-PS gives one PS span over the whole text.
TEST_F(TokenCli, ServeAnswersPredictsSpans) {
  const std::string text = "경찰은 또 박씨의 딸과 서울에서 만났다.";  // 22 characters
  const std::string tagger = biased_model(files->dir / "all_ps", model(), "I-PS");
  auto p = run_cli("predict --model " + tagger + " \"" + text + "\"");
  ASSERT_EQ(p.status, 0) << p.output;
  const auto predicted = nlohmann::json::parse(p.output.substr(p.output.find('[')));
  ASSERT_EQ(predicted.size(), 1u) << predicted;
  EXPECT_EQ(predicted[0].at("entity_group"), "PS");
  EXPECT_EQ(predicted[0].at("start"), 0);
  EXPECT_EQ(predicted[0].at("end"), 22);
  EXPECT_NEAR(predicted[0].at("score").get<double>(), 1.0, 1e-6);
  bertune::testing::ServerProcess server(tagger, files->dir / "serve.log");
  auto c = server.client();
  auto one = c.Post("/", nlohmann::json{{"inputs", text}}.dump(), "application/json");
  ASSERT_TRUE(one);
  ASSERT_EQ(one->status, 200) << one->body;
  EXPECT_EQ(nlohmann::json::parse(one->body), predicted);
  auto many = c.Post("/", nlohmann::json{{"inputs", {text, "만났다"}}}.dump(), "application/json");
  ASSERT_TRUE(many);
  ASSERT_EQ(many->status, 200) << many->body;
  const auto both = nlohmann::json::parse(many->body);
  ASSERT_EQ(both.size(), 2u);
  // In a batch of two the same text's scores may differ in the last bits.
  ASSERT_EQ(both[0].size(), predicted.size());
  for (size_t i = 0; i < predicted.size(); ++i) {
    for (const char* key : {"entity_group", "word", "start", "end"}) EXPECT_EQ(both[0][i].at(key), predicted[i].at(key));
    const double a = both[0][i].at("score"), b = predicted[i].at("score");
    EXPECT_NEAR(a, b, 1e-5);
  }
  auto v1 = c.Post("/v1/classify", nlohmann::json{{"texts", {text}}}.dump(), "application/json");
  ASSERT_TRUE(v1);
  ASSERT_EQ(v1->status, 200) << v1->body;
  EXPECT_EQ(nlohmann::json::parse(v1->body).at("predictions").at(0), predicted);
  EXPECT_EQ(server.terminate(), 0);
}

// aggregation_strategy, as the pipeline takes it: predict's --aggregation-strategy and the
// "parameters" of POST / give the same records; "none" one per piece (entity, index, ...);
// an unknown strategy is refused naming the flag or the field.
TEST_F(TokenCli, PredictAndServeTakeTheAggregationStrategy) {
  const std::string text = "경찰은 또 박씨의 딸과";
  const std::string tagger = biased_model(files->dir / "all_ps_agg", model(), "I-PS");
  auto none = run_cli("predict --aggregation-strategy none --model " + tagger + " \"" + text + "\"");
  ASSERT_EQ(none.status, 0) << none.output;
  const auto pieces = nlohmann::json::parse(none.output.substr(none.output.find('[')));
  ASSERT_GT(pieces.size(), 1u) << pieces;
  for (size_t i = 0; i < pieces.size(); ++i) {
    EXPECT_EQ(pieces[i].at("entity"), "I-PS") << pieces[i];
    EXPECT_EQ(pieces[i].at("index"), i + 1) << "the piece's row after [CLS]";
    EXPECT_FALSE(pieces[i].contains("entity_group"));
  }
  EXPECT_EQ(pieces.front().at("start"), 0);
  EXPECT_EQ(pieces.back().at("end"), 12);
  auto first = run_cli("predict --aggregation-strategy FIRST --model " + tagger + " \"" + text + "\"");
  ASSERT_EQ(first.status, 0) << first.output;
  const auto words = nlohmann::json::parse(first.output.substr(first.output.find('[')));
  ASSERT_EQ(words.size(), 1u) << words;  // every word I-PS: one PS group
  EXPECT_EQ(words[0].at("entity_group"), "PS");
  EXPECT_EQ(words[0].at("end"), 12);

  auto bad = run_cli("predict --aggregation-strategy longest --model " + tagger + " x");
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_NE(bad.output.find("--aggregation-strategy: 'longest' is not one of none|simple|first|average|max"),
            std::string::npos) << bad.output;

  bertune::testing::ServerProcess server(tagger, files->dir / "serve_agg.log");
  auto c = server.client();
  auto post = [&](const nlohmann::json& parameters) {
    auto r = c.Post("/", nlohmann::json{{"inputs", text}, {"parameters", parameters}}.dump(), "application/json");
    EXPECT_TRUE(r);
    return r ? std::make_pair(r->status, nlohmann::json::parse(r->body)) : std::make_pair(0, nlohmann::json());
  };
  const auto [none_status, served] = post({{"aggregation_strategy", "none"}});
  ASSERT_EQ(none_status, 200) << served;
  ASSERT_EQ(served.size(), pieces.size()) << served;
  for (size_t i = 0; i < pieces.size(); ++i)
    for (const char* key : {"entity", "index", "word", "start", "end"}) EXPECT_EQ(served[i].at(key), pieces[i].at(key));
  const auto [ignored_status, ignored] = post({{"aggregation_strategy", "none"}, {"ignore_labels", {"I-PS"}}});
  EXPECT_EQ(ignored_status, 200);
  EXPECT_EQ(ignored, nlohmann::json::array()) << "every piece's label ignored";
  const auto [bad_status, refused] = post({{"aggregation_strategy", "longest"}});
  EXPECT_EQ(bad_status, 400);
  EXPECT_EQ(refused.at("error").at("kind"), "bad_parameter") << refused;
  EXPECT_NE(refused.at("error").at("message").get<std::string>().find("\"aggregation_strategy\""), std::string::npos)
      << refused;
  const auto [top_k_status, top_k] = post({{"top_k", 1}});
  EXPECT_EQ(top_k_status, 400);
  EXPECT_NE(top_k.at("error").at("message").get<std::string>().find("unknown field \"top_k\""), std::string::npos)
      << top_k;
  EXPECT_EQ(server.terminate(), 0);
}

// quantize takes a token classifier: the int8 directory loads as one (ForTokenClassification,
// not a sequence head it lacks) and tags the training sentences' pieces as the float model does.
TEST_F(TokenCli, QuantizedTaggerTagsAsTheFloatOne) {
  auto q = run_cli("quantize --model " + model() + " --output " + path("q8"));
  ASSERT_EQ(q.status, 0) << q.output;
  std::vector<std::string> texts;
  for (const auto& s : data::read_tagged(path("ner.tsv")).sentences) {
    std::string text;
    for (const auto& t : s.tokens) text += t;
    texts.push_back(text);
  }
  auto tags = [&](const std::string& dir) {
    const infer::InferenceModel m = infer::load_inference_model(dir, /*int8=*/false, kernels::Device::CPU);
    EXPECT_EQ(m.model->task(), model::Task::TokenClassification);
    const text::Tokenizer tok = infer::load_tokenizer_for(dir, "");
    std::vector<std::string> labels;  // every piece's, O too
    for (const auto& spans : infer::predict_entities(*m.model, tok, texts, 48, 8, {infer::Aggregation::None, {}}))
      for (const auto& s : spans) labels.push_back(s.entity_group);
    return std::make_pair(labels, m.int8_weights());
  };
  const auto [fp32, fp32_is_int8] = tags(model());
  const auto [int8, int8_is_int8] = tags(path("q8"));
  EXPECT_FALSE(fp32_is_int8);
  EXPECT_TRUE(int8_is_int8);
  ASSERT_EQ(fp32.size(), int8.size());
  size_t same = 0;
  for (size_t i = 0; i < fp32.size(); ++i) same += fp32[i] == int8[i];
  const std::set<std::string> distinct(fp32.begin(), fp32.end());
  EXPECT_GE(distinct.size(), 2u) << "agreement on a single tag would show little";
  EXPECT_GE(same * 100, fp32.size() * 98) << same << " of " << fp32.size() << " pieces tagged alike";
}

// A tagger started from one with another tag count: its classifier.* shapes differ. Refused by
// name with both shapes and the flag; with --ignore-mismatched-sizes initialised afresh and
// listed as from_pretrained(ignore_mismatched_sizes=True) lists them.
TEST_F(TokenCli, IgnoreMismatchedSizesReinitialisesTheHead) {
  io::write_file_atomic(files->dir / "three_tags.tsv", "경\tB-PS\n찰\tI-PS\n은\tO\n\n박\tB-PS\n씨\tO\n\n");
  const size_t n = data::tag_set(data::read_tagged(path("ner.tsv"))).size();
  ASSERT_NE(n, 3u);
  const std::string args = "train --task token-classification --model " + model() + " --train-file " +
                           path("three_tags.tsv") + " --max-length 16 --max-steps 1 --save-strategy no --threads 2 ";
  auto refused = run_cli(args + "--output-dir " + path("mismatch_refused"));
  EXPECT_EQ(refused.status, 1) << refused.output;
  const std::string found = "[" + std::to_string(n) + ", 32]";
  EXPECT_NE(refused.output.find("tensor classifier.weight has shape " + found + ", the BertForTokenClassification "
                                "being trained needs [3, 32] (3 labels); pass --ignore-mismatched-sizes"),
            std::string::npos)
      << refused.output;
  auto r = run_cli(args + "--ignore-mismatched-sizes --output-dir " + path("mismatch_out"));
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_NE(r.output.find("Some weights of BertForTokenClassification were not initialized from the model checkpoint at " +
                          model() + " and are newly initialized because the shapes did not match:\n"
                          "- classifier.weight: found shape torch.Size(" + found +
                          ") in the checkpoint and torch.Size([3, 32]) in the model instantiated\n"
                          "- classifier.bias: found shape torch.Size([" + std::to_string(n) +
                          "]) in the checkpoint and torch.Size([3]) in the model instantiated"),
            std::string::npos)
      << r.output;
  EXPECT_EQ(r.output.find("newly initialized: ["), std::string::npos) << "mismatched, not missing: " << r.output;
  const TensorMap weights = io::read_safetensors(fs::path(path("mismatch_out")) / "final" / "model.safetensors");
  EXPECT_EQ(weights.at("classifier.weight").shape, (std::vector<int64_t>{3, 32}));
}
