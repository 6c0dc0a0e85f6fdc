#include <gtest/gtest.h>

#include <filesystem>

#include "io/atomic_file.h"
#include "model/config.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;

TEST(AtomicFile, ReplacesWholeOrNotAtAll) {
  fs::path dir = fs::temp_directory_path() / "bertune_atomic_test";
  fs::remove_all(dir);
  fs::path target = dir / "out.txt";
  io::write_file_atomic(target, "first");
  EXPECT_EQ(io::read_file(target), "first");
  {
    io::AtomicFile f(target);
    f.write("second, never committed");
  }  // destroyed without commit: old contents stay, no temp file left
  EXPECT_EQ(io::read_file(target), "first");
  EXPECT_EQ(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}), 1);
  fs::remove_all(dir);
}

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
