// config.json: read as transformers reads it, written back the same, and every field checked
// with an error that names the file and the field before anything is allocated.
#include <gtest/gtest.h>

#include "run_cli.h"
#include "test_support.h"

#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

#include "model/config.h"
#include "text/tokenizer.h"
#include "util/error.h"
#include "util/json_fields.h"
#include "util/limits.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;

namespace {
std::string config_error(const std::string& json_text) {
  return error_of([&] { model::BertConfig::from_json(nlohmann::json::parse(json_text), "cfg.json"); });
}
}  // namespace

TEST(BertConfig, ReadsKlueConfigAndRoundTrips) {
  auto c = model::BertConfig::load(shared_path("models/klue-bert-base"));
  EXPECT_EQ(c.vocab_size, 32000);
  EXPECT_EQ(c.hidden_size, 768);
  EXPECT_EQ(c.num_labels(), 2);
  // BERT-base: 85,054,464 in the 12 layers + embedding LayerNorm + pooler + 2-way head.
  EXPECT_EQ(c.non_embedding_parameters(), 85054464LL + 1536 + 590592 + 1538);
  auto again = model::BertConfig::from_json(c.to_json());
  EXPECT_EQ(again.to_json(), c.to_json());
}

TEST(BertConfig, RejectsBadFieldsByName) {
  nlohmann::json j = {{"hidden_size", 100}, {"num_attention_heads", 12}};
  try {
    model::BertConfig::from_json(j, "x/config.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("x/config.json"), std::string::npos);
    EXPECT_NE(std::string(e.what()).find("hidden_size"), std::string::npos);
  }
}

TEST(BertConfig, DirectoryAndMissingConfig) {
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

TEST(ConfigJson, UnsupportedOrInvalidValuesAreRefusedNamingTheField) {
  EXPECT_EQ(config_error(R"({"model_type": "gpt2"})"),
            "cfg.json: model_type \"gpt2\" is not supported (supported: bert, roberta, xlm-roberta, electra, distilbert)");
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

// Every family's golden config.json reads into its Family and writes back in its own field
// names (DistilBERT: dim, n_layers, ...; ELECTRA: embedding_size), reading back the same.
TEST(ConfigJson, FamiliesRoundTripInTheirOwnFieldNames) {
  struct Case {
    const char* dir;
    model::Family family;
    const char* architecture;
  };
  for (const Case& c : {Case{"roberta_seqcls", model::Family::Roberta, "RobertaForSequenceClassification"},
                        Case{"electra_seqcls", model::Family::Electra, "ElectraForSequenceClassification"},
                        Case{"distilbert_seqcls", model::Family::DistilBert, "DistilBertForSequenceClassification"}}) {
    auto config = model::BertConfig::load(shared_path(std::string("golden/families/") + c.dir));
    EXPECT_EQ(config.family, c.family) << c.dir;
    EXPECT_EQ(config.classifier_architecture(), c.architecture);
    EXPECT_EQ(config.hidden_size, 64) << c.dir;
    EXPECT_EQ(config.num_hidden_layers, 2) << c.dir;
    EXPECT_EQ(config.num_attention_heads, 4) << c.dir;
    EXPECT_EQ(config.intermediate_size, 128) << c.dir;
    const nlohmann::json j = config.to_json();
    EXPECT_EQ(j["model_type"], model::family_model_type(c.family));
    EXPECT_EQ(model::BertConfig::from_json(j).to_json(), j) << c.dir;
  }
  auto distil = model::BertConfig::load(shared_path("golden/families/distilbert_seqcls"));
  const nlohmann::json j = distil.to_json();
  for (const char* own : {"dim", "n_layers", "n_heads", "hidden_dim", "activation", "dropout", "attention_dropout",
                          "seq_classif_dropout", "sinusoidal_pos_embds"})
    EXPECT_TRUE(j.contains(own)) << own;
  for (const char* bert : {"hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size",
                           "hidden_act", "hidden_dropout_prob", "type_vocab_size", "classifier_dropout"})
    EXPECT_FALSE(j.contains(bert)) << bert;
  EXPECT_FALSE(distil.reads_token_types());
  auto electra = model::BertConfig::load(shared_path("golden/families/electra_seqcls"));
  EXPECT_EQ(electra.embedding_width(), 32);
  EXPECT_EQ(electra.to_json()["embedding_size"], 32);
  auto roberta = model::BertConfig::load(shared_path("golden/families/roberta_seqcls"));
  EXPECT_EQ(roberta.position_offset(), 2);  // pad_token_id 1 + 1
  EXPECT_EQ(roberta.max_sequence_length(), 64);
  EXPECT_EQ(config_error(R"({"model_type": "roberta", "max_position_embeddings": 2, "pad_token_id": 1})"),
            "cfg.json: max_position_embeddings 2 leaves no position for a token (RoBERTa's positions start at "
            "pad_token_id + 1 = 2)");
  EXPECT_EQ(config_error(R"({"model_type": "distilbert", "sinusoidal_pos_embds": true})"),
            "cfg.json: sinusoidal_pos_embds true is not supported (only learned position embeddings)");
  EXPECT_EQ(config_error(R"({"model_type": "distilbert", "dim": 100, "n_heads": 12})"),
            "cfg.json: dim 100 is not a positive multiple of n_heads 12");
  EXPECT_EQ(config_error(R"({"model_type": "distilbert", "hidden_dim": 0})"),
            "cfg.json: field 'hidden_dim' is 0; it must be positive");
  EXPECT_EQ(config_error(R"({"model_type": "electra", "embedding_size": 0})"),
            "cfg.json: field 'embedding_size' is 0; it must be positive");
  auto e = error_of([] { model::require_max_length_fits(65, model::BertConfig::load(shared_path("golden/families/roberta_seqcls"))); });
  EXPECT_EQ(e, "--max-length 65 exceeds the model's longest sequence (64 = max_position_embeddings 66 - "
               "pad_token_id - 1)");
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

// Fuzz finding 3 (fuzz_config, 10-min run): num_labels 932000 took 47 s to build the label
// maps; it is refused at once with the limit.
TEST(ConfigJson, HugeNumLabelsIsRefusedWithTheLimit) {
  auto e = error_of([] { model::BertConfig::load(fuzz_fixture("config_many_labels.json")); });
  EXPECT_TRUE(contains(e, "field 'num_labels' is 932000; it must lie in [1, 65536]")) << e;
}

// fuzz_config: a number too large for a double made nlohmann throw out_of_range
// (not parse_error), which escaped as "internal error" (exit 2).
TEST(ConfigJson, NumberOverflowIsAnError) {
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

// C11: num_labels 2 beside an id2label of three names trained a three-way classifier without
// a word (HF warns and takes id2label's count). Agreeing fields are still fine.
TEST(ConfigJson, NumLabelsThatDisagreesWithId2labelIsRefused) {
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
