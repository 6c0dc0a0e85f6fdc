// `bertune train`, `eval`, `predict` and `checkpoint inspect` on tiny RoBERTa, ELECTRA and
// DistilBERT model directories (the golden cases' config.json and initial weights beside the
// first 512 entries of the klue vocabulary): the saved model carries the family's tensor
// names, config fields and architectures, and reloads into the same predictions.
#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "infer/classifier.h"
#include "io/checkpoint.h"
#include "io/safetensors.h"
#include "model/bert.h"
#include "quant/int8_model.h"
#include "run_cli.h"
#include "serve_fixture.h"
#include "test_support.h"
#include "train_fixture.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {

struct FamilyDir {
  const char* golden;        // shared/golden/families/<golden>
  const char* model_type;
  const char* architecture;  // HF's class of the saved classifier
  const char* tensor;        // a tensor only this family names so
};

constexpr FamilyDir kFamilies[] = {
    {"roberta_seqcls", "roberta", "RobertaForSequenceClassification", "classifier.out_proj.weight"},
    {"electra_seqcls", "electra", "ElectraForSequenceClassification", "electra.embeddings_project.weight"},
    {"distilbert_seqcls", "distilbert", "DistilBertForSequenceClassification",
     "distilbert.transformer.layer.1.ffn.lin2.weight"},
};

// Letters of the vocabulary's first 512 entries, spaced so each is one token; labels 0 / 1.
std::string tiny_tsv() {
  std::string body = "document\tlabel\n";
  const char* texts[] = {"a b c d", "x y z", "a c e g i", "z y x w v", "b d f", "w u s q"};
  for (int i = 0; i < 24; ++i) body += std::string(texts[i % 6]) + "\t" + std::to_string(i % 2) + "\n";
  return body;
}

class FamilyCli : public ::testing::Test {
 protected:
  static inline std::unique_ptr<TinyTrainDir> files;
  static void SetUpTestSuite() {
    files = std::make_unique<TinyTrainDir>("family_cli");
    io::write_file_atomic(files->dir / "data.tsv", tiny_tsv());
    std::ifstream klue(shared_path("models/klue-bert-base/vocab.txt"));
    std::string vocab;
    std::string line;
    for (int i = 0; i < 512 && std::getline(klue, line); ++i) vocab += line + "\n";
    for (const FamilyDir& f : kFamilies) {
      const fs::path golden = shared_path(std::string("golden/families/") + f.golden), dir = files->dir / f.model_type;
      fs::create_directories(dir);
      fs::copy_file(golden / "config.json", dir / "config.json");
      fs::copy_file(golden / "init.safetensors", dir / "model.safetensors");
      io::write_file_atomic(dir / "vocab.txt", vocab);
    }
  }
  static void TearDownTestSuite() { files.reset(); }
  static std::string path(const std::string& name) { return (files->dir / name).string(); }
};

}  // namespace

TEST_F(FamilyCli, TrainEvalPredictAndInspectEachFamily) {
  for (const FamilyDir& f : kFamilies) {
    SCOPED_TRACE(f.model_type);
    const std::string model = path(f.model_type), out = path(std::string(f.model_type) + "_run");
    auto inspect = run_cli("checkpoint inspect " + model);
    ASSERT_EQ(inspect.status, 0) << inspect.output;
    EXPECT_TRUE(contains(inspect.output, std::string("model.safetensors: ") + f.model_type + ", vocab 512")) << inspect.output;
    EXPECT_TRUE(contains(inspect.output, f.tensor)) << inspect.output;

    auto train = run_cli("train --model " + model + " --train-file " + path("data.tsv") +
                         " --max-length 16 --max-steps 3 --learning-rate 1e-3 --save-strategy no --threads 2"
                         " --per-device-train-batch-size 8 --output-dir " + out);
    ASSERT_EQ(train.status, 0) << train.output;
    const fs::path final_dir = fs::path(out) / "final";
    const auto config = nlohmann::json::parse(io::read_text_file(final_dir / "config.json"));
    EXPECT_EQ(config["model_type"], f.model_type);
    EXPECT_EQ(config["architectures"], nlohmann::json::array({f.architecture}));
    // Exactly the tensors of the HF directory it was made from, nothing missing or extra.
    const TensorMap saved = io::read_state_dict(final_dir / "model.safetensors"),
                    init = io::read_state_dict(fs::path(model) / "model.safetensors");
    ASSERT_EQ(saved.size(), init.size());
    for (const auto& [name, t] : init) {
      ASSERT_TRUE(saved.count(name)) << name;
      EXPECT_EQ(saved.at(name).shape, t.shape) << name;
    }

    auto eval = run_cli("eval --json --model " + final_dir.string() + " --data " + path("data.tsv") + " --max-length 16");
    ASSERT_EQ(eval.status, 0) << eval.output;
    const auto metrics = json_lines(eval.output).at(0);
    EXPECT_TRUE(std::isfinite(metrics["eval_loss"].get<double>())) << eval.output;
    // Padding to max_length changes nothing but rounding (RoBERTa's pad rows: the pad's position).
    auto padded = run_cli("eval --json --padding max_length --model " + final_dir.string() + " --data " +
                          path("data.tsv") + " --max-length 16");
    ASSERT_EQ(padded.status, 0) << padded.output;
    EXPECT_NEAR(json_lines(padded.output).at(0)["eval_loss"].get<double>(), metrics["eval_loss"].get<double>(),
                1e-5 * metrics["eval_loss"].get<double>());

    // The default --max-length 128 lowers itself to what the positions encode (RoBERTa: 66 - 2).
    auto predict = run_cli("predict --model " + final_dir.string() + " --input " + path("data.tsv"));
    ASSERT_EQ(predict.status, 0) << predict.output;
    const auto rows = json_lines(predict.output);
    ASSERT_EQ(rows.size(), 24u);
    const size_t labels = std::string(f.model_type) == "roberta" ? 3u : 2u;
    EXPECT_EQ(rows[0]["probs"].size(), labels);
    std::string letters;
    for (int i = 0; i < 100; ++i) letters += std::string(1, char('a' + i % 26)) + " ";
    io::write_file_atomic(files->dir / "long.tsv", "document\tlabel\n" + letters + "\t0\n");
    auto long_text = run_cli("predict --model " + final_dir.string() + " --input " + path("long.tsv"));
    EXPECT_EQ(long_text.status, 0) << long_text.output;
  }
}

// A sentence pair on RoBERTa (one token type) runs with type 0 throughout; on DistilBERT (none) too.
TEST_F(FamilyCli, PairsOnModelsWithoutTokenTypesUseTypeZero) {
  io::write_file_atomic(files->dir / "pairs.tsv", "a\tb\tlabel\na b\tc d\t0\nx y\tz w\t1\na c\te g\t0\nz y\tx w\t1\n");
  for (const char* family : {"roberta", "distilbert"}) {
    auto train = run_cli("train --model " + path(family) + " --train-file " + path("pairs.tsv") +
                         " --text-column a --text-pair-column b --max-length 16 --max-steps 2 --save-strategy no"
                         " --threads 2 --output-dir " + path(std::string(family) + "_pairs"));
    EXPECT_EQ(train.status, 0) << family << ": " << train.output;
  }
}

// Token classification on every family: the saved directory is <Family>ForTokenClassification
// with the family's encoder names and classifier.*, and eval and predict run on it.
TEST_F(FamilyCli, TokenClassificationOnEachFamily) {
  io::write_file_atomic(files->dir / "tags.jsonl",
                        "{\"tokens\": [\"a\", \"b\", \"c\", \"d\"], \"tags\": [\"B-X\", \"I-X\", \"O\", \"O\"]}\n"
                        "{\"tokens\": [\"x\", \"y\", \"z\"], \"tags\": [\"O\", \"B-Y\", \"O\"]}\n"
                        "{\"tokens\": [\"w\", \"a\", \"b\"], \"tags\": [\"O\", \"B-X\", \"I-X\"]}\n");
  const std::string classes[] = {"RobertaForTokenClassification", "ElectraForTokenClassification",
                                 "DistilBertForTokenClassification"};
  const std::string args = " --train-file " + path("tags.jsonl") +
                           " --max-length 16 --max-steps 2 --learning-rate 1e-3 --save-strategy no --threads 2";
  // As from_pretrained: a sequence classifier's classifier.weight of another shape (DistilBERT's
  // head has one) is refused by name, not silently replaced.
  auto mismatch = run_cli("train --task token-classification --model " + path("distilbert") + args +
                          " --output-dir " + path("distilbert_mismatch"));
  EXPECT_EQ(mismatch.status, 1) << mismatch.output;
  EXPECT_TRUE(contains(mismatch.output, "classifier.weight has shape [2, 64]")) << mismatch.output;
  for (size_t k = 0; k < std::size(kFamilies); ++k) {
    const FamilyDir& f = kFamilies[k];
    SCOPED_TRACE(f.model_type);
    // The encoder alone, as a base checkpoint (klue/roberta-base, ...) holds it.
    const fs::path base = path(std::string(f.model_type) + "_base");
    fs::create_directories(base);
    for (const char* file : {"config.json", "vocab.txt"}) fs::copy_file(fs::path(path(f.model_type)) / file, base / file);
    const TensorMap all = io::read_state_dict(fs::path(path(f.model_type)) / "model.safetensors");
    std::vector<TensorRef> encoder;
    for (const auto& [name, t] : all)
      if (name.rfind(std::string(f.model_type) + ".", 0) == 0) encoder.push_back({name, t.shape, t.data.data()});
    io::write_safetensors(base / "model.safetensors", encoder);
    const std::string out = path(std::string(f.model_type) + "_tokens");
    auto train = run_cli("train --task token-classification --model " + base.string() + args + " --output-dir " + out);
    ASSERT_EQ(train.status, 0) << train.output;
    const fs::path final_dir = fs::path(out) / "final";
    const auto config = nlohmann::json::parse(io::read_text_file(final_dir / "config.json"));
    EXPECT_EQ(config["model_type"], f.model_type);
    EXPECT_EQ(config["architectures"], nlohmann::json::array({classes[k]}));
    const TensorMap saved = io::read_state_dict(final_dir / "model.safetensors");
    EXPECT_EQ(saved.at("classifier.weight").shape, (std::vector<int64_t>{4, 64}));  // B-X I-X B-Y O
    const std::string encoder_tensor = std::string(f.model_type) + ".embeddings.word_embeddings.weight";
    EXPECT_TRUE(saved.count(encoder_tensor)) << encoder_tensor;
    auto eval = run_cli("eval --json --model " + final_dir.string() + " --data " + path("tags.jsonl") +
                        " --max-length 16");
    ASSERT_EQ(eval.status, 0) << eval.output;
    EXPECT_TRUE(json_lines(eval.output).at(0).contains("eval_f1")) << eval.output;
    auto predict = run_cli("predict --model " + final_dir.string() + " \"a b c d\"");
    ASSERT_EQ(predict.status, 0) << predict.output;
    EXPECT_TRUE(nlohmann::json::parse(predict.output.substr(predict.output.find('['))).is_array()) << predict.output;
  }
}

// int8 quantization of each family: the encoder linears are stored int8 (DistilBERT's q_lin,
// k_lin, v_lin, out_lin, ffn.lin1/lin2 too; its pre_classifier stays fp32) and run on the int8
// kernels, within a few percent of the dequantized fp32 model.
TEST_F(FamilyCli, QuantizeEachFamily) {
  for (const char* family : {"roberta", "electra", "distilbert"}) {
    SCOPED_TRACE(family);
    const fs::path out = path(std::string(family) + "_q8");
    auto r = run_cli("quantize --model " + path(family) + " --output " + out.string());
    ASSERT_EQ(r.status, 0) << r.output;
    auto c = infer::Classifier::load(out);
    EXPECT_TRUE(c->int8_weights());
    auto ids = c->tokenize({"a b c d", "x y z w v"});
    auto int8_logits = c->logits({&ids[0], &ids[1]});
    model::BertModel fp32(model::BertConfig::load(out), model::Task::SequenceClassification);
    fp32.load_state_dict(quant::read_int8_safetensors(out / "model.safetensors").fp32);
    fp32.forward(model::Batch::packed({ids[0].ids, ids[1].ids}), /*train=*/false);
    const size_t n = int8_logits.size();
    ASSERT_EQ(n, size_t(fp32.logits_rows()) * fp32.logits_cols());
    const std::vector<float> dequantized(fp32.logits(), fp32.logits() + n);
    EXPECT_NE(int8_logits, dequantized);
    for (size_t i = 0; i < n; ++i)
      EXPECT_NEAR(int8_logits[i], dequantized[i], 0.05 * std::max(1.f, std::fabs(dequantized[i])));
  }
  const auto header = nlohmann::json::parse(io::read_text_file(path("distilbert_q8") + "/config.json"));
  const auto quantized = header.at(quant::kConfigMarker).at("quantized_weights");
  EXPECT_EQ(quantized.size(), 2u * 6u) << "2 layers of q_lin, k_lin, v_lin, out_lin, ffn.lin1, ffn.lin2";
  for (const char* name : {"distilbert.transformer.layer.0.attention.q_lin.weight",
                           "distilbert.transformer.layer.1.attention.out_lin.weight",
                           "distilbert.transformer.layer.1.ffn.lin2.weight"})
    EXPECT_TRUE(std::find(quantized.begin(), quantized.end(), name) != quantized.end()) << name;
  EXPECT_TRUE(std::find(quantized.begin(), quantized.end(), "pre_classifier.weight") == quantized.end());
}

// A DistilBERT trained on the tiny set, quantized: predict labels every row as the fp32 model
// does with probabilities close to its, eval gives its accuracy, and serve answers from it.
TEST_F(FamilyCli, QuantizedTrainedDistilBertPredictsAsTheFp32One) {
  const std::string out = path("distilbert_trained");
  auto train = run_cli("train --model " + path("distilbert") + " --train-file " + path("data.tsv") +
                       " --max-length 16 --max-steps 30 --learning-rate 1e-3 --save-strategy no --threads 2"
                       " --per-device-train-batch-size 8 --output-dir " + out);
  ASSERT_EQ(train.status, 0) << train.output;
  const std::string fp32 = out + "/final", int8 = path("distilbert_trained_q8");
  auto q = run_cli("quantize --model " + fp32 + " --output " + int8);
  ASSERT_EQ(q.status, 0) << q.output;
  auto predict = [&](const std::string& model) {
    auto r = run_cli("predict --model " + model + " --input " + path("data.tsv"));
    EXPECT_EQ(r.status, 0) << r.output;
    return json_lines(r.output);
  };
  const auto a = predict(fp32), b = predict(int8);
  ASSERT_EQ(a.size(), 24u);
  ASSERT_EQ(b.size(), a.size());
  std::set<std::string> labels;
  for (size_t i = 0; i < a.size(); ++i) {
    EXPECT_EQ(b[i]["label"], a[i]["label"]) << i;
    labels.insert(a[i]["label"].dump());
    for (size_t l = 0; l < a[i]["probs"].size(); ++l)
      EXPECT_NEAR(b[i]["probs"][l].get<double>(), a[i]["probs"][l].get<double>(), 0.02) << i;
  }
  EXPECT_EQ(labels.size(), 2u) << "a model that predicts one label would show little";
  auto eval = [&](const std::string& model) {
    auto r = run_cli("eval --json --model " + model + " --data " + path("data.tsv") + " --max-length 16");
    EXPECT_EQ(r.status, 0) << r.output;
    return json_lines(r.output).at(0);
  };
  EXPECT_EQ(eval(int8)["eval_accuracy"], eval(fp32)["eval_accuracy"]);
  bertune::testing::ServerProcess server(int8, files->dir / "distilbert_q8_serve.log");
  auto c = server.client();
  auto served = c.Post("/v1/classify", nlohmann::json{{"texts", {"a b c d", "x y z"}}}.dump(), "application/json");
  ASSERT_TRUE(served);
  ASSERT_EQ(served->status, 200) << served->body;
  const auto answers = nlohmann::json::parse(served->body).at("predictions");
  ASSERT_EQ(answers.size(), 2u);
  EXPECT_EQ(answers[0]["label"], b[0]["label"]);  // rows 0 and 1 of data.tsv
  EXPECT_EQ(answers[1]["label"], b[1]["label"]);
  EXPECT_EQ(server.terminate(), 0);
}

// ELECTRA's pretraining checkpoints as transformers writes them (ElectraForPreTraining: the
// discriminator's dense + dense_prediction; ElectraForMaskedLM: generator_predictions of the
// embedding width and generator_lm_head) start a sequence or a token classifier: the
// pretraining head is left unused, the classification head made new, both said by name.
TEST_F(FamilyCli, ElectraPretrainingCheckpointsStartClassifiers) {
  const fs::path golden = shared_path("golden/families/electra_seqcls");
  nlohmann::json config = nlohmann::json::parse(io::read_text_file(golden / "config.json"));
  const int64_t E = config["embedding_size"], H = config["hidden_size"], V = config["vocab_size"];
  TensorMap encoder = io::read_state_dict(golden / "init.safetensors");
  std::erase_if(encoder, [](const auto& kv) { return kv.first.rfind("classifier.", 0) == 0; });
  auto tensor = [](std::vector<int64_t> shape) {
    HostTensor t;
    t.shape = std::move(shape);
    t.data.assign(t.numel(), 0.01f);
    return t;
  };
  const std::pair<const char*, TensorMap> heads[] = {
      {"ElectraForPreTraining",
       {{"discriminator_predictions.dense.weight", tensor({H, H})}, {"discriminator_predictions.dense.bias", tensor({H})},
        {"discriminator_predictions.dense_prediction.weight", tensor({1, H})},
        {"discriminator_predictions.dense_prediction.bias", tensor({1})}}},
      {"ElectraForMaskedLM",
       {{"generator_predictions.dense.weight", tensor({E, H})}, {"generator_predictions.dense.bias", tensor({E})},
        {"generator_predictions.LayerNorm.weight", tensor({E})}, {"generator_predictions.LayerNorm.bias", tensor({E})},
        {"generator_lm_head.weight", tensor({V, E})}, {"generator_lm_head.bias", tensor({V})}}}};
  std::string tagged;
  for (int i = 0; i < 16; ++i) tagged += "a\tB-PS\nb\tI-PS\nc\tO\n\n";
  io::write_file_atomic(files->dir / "tagged.tsv", tagged);
  for (const auto& [architecture, head] : heads) {
    SCOPED_TRACE(architecture);
    const fs::path dir = files->dir / architecture;
    fs::create_directories(dir);
    config["architectures"] = {architecture};
    config.erase("id2label");
    config.erase("label2id");
    io::write_file_atomic(dir / "config.json", config.dump(2));
    fs::copy_file(files->dir / "electra" / "vocab.txt", dir / "vocab.txt");
    TensorMap weights = encoder;
    weights.insert(head.begin(), head.end());
    std::vector<TensorRef> refs;
    for (const auto& [name, t] : weights) refs.push_back({name, t.shape, t.data.data()});
    io::write_safetensors(dir / "model.safetensors", refs);
    const std::string unused = "[" + head.begin()->first;  // the first of the sorted names

    auto inspect = run_cli("checkpoint inspect " + dir.string());
    EXPECT_TRUE(contains(inspect.output, std::string("electra, vocab 512, hidden 64, embedding 32")) &&
                contains(inspect.output, std::string(", ") + architecture))
        << inspect.output;
    const std::string common = " --max-length 16 --max-steps 2 --save-strategy no --threads 2 --output-dir ";
    auto seq = run_cli("train --model " + dir.string() + " --train-file " + path("data.tsv") + common +
                       path(std::string(architecture) + "_seq"));
    ASSERT_EQ(seq.status, 0) << seq.output;
    EXPECT_TRUE(contains(seq.output, "were not used when initializing ElectraForSequenceClassification: " + unused))
        << seq.output;
    EXPECT_TRUE(contains(seq.output, std::string("Some weights of ElectraForSequenceClassification were not "
                                                 "initialized from the model checkpoint at ") +
                                         dir.string() + " and are newly initialized: [classifier.dense.weight"))
        << seq.output;
    auto tok = run_cli("train --task token-classification --model " + dir.string() + " --train-file " +
                       path("tagged.tsv") + common + path(std::string(architecture) + "_tok"));
    ASSERT_EQ(tok.status, 0) << tok.output;
    EXPECT_TRUE(contains(tok.output, "were not used when initializing ElectraForTokenClassification: " + unused))
        << tok.output;
    EXPECT_TRUE(contains(tok.output, std::string("newly initialized: [classifier.weight, classifier.bias]")))
        << tok.output;
  }
}
