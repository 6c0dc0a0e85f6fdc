#include <gtest/gtest.h>
#include <unistd.h>
#include <utf8proc.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "text/tokenizer.h"
#include "text/unk_rate.h"
#include "text/unicode.h"
#include "util/error.h"
#include "util/paths.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace bertune;
using text::Tokenizer;

namespace {

const Tokenizer& klue() {
  static const Tokenizer t = Tokenizer::load(shared_path("models/klue-bert-base"));
  return t;
}

struct GoldenCase {
  std::string text;
  std::vector<std::string> tokens;
  std::vector<int32_t> ids;
};

std::vector<GoldenCase> read_golden(const std::string& name) {
  fs::path path = shared_path("golden/tokenizer/" + name);
  std::ifstream in(path);
  std::vector<GoldenCase> out;
  std::string line;
  while (std::getline(in, line)) {
    auto j = nlohmann::json::parse(line);
    out.push_back({j["text"], j["tokens"], j["ids"]});
  }
  return out;
}

// Checks every golden case id for id and token for token; returns how many matched.
size_t check_golden(const Tokenizer& tok, const std::vector<GoldenCase>& cases, const std::string& name) {
  size_t matched = 0;
  std::vector<std::string> texts;
  for (const auto& c : cases) texts.push_back(c.text);
  auto batch = tok.encode_batch(texts);
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& c = cases[i];
    std::vector<std::string> tokens = tok.tokenize(c.text);
    tokens.insert(tokens.begin(), "[CLS]");
    tokens.push_back("[SEP]");
    const auto one = tok.encode(c.text);
    bool ok = one.ids == c.ids && tokens == c.tokens && batch[i].ids == c.ids;
    EXPECT_EQ(one.ids, c.ids) << name << " line " << i + 1 << ": " << c.text;
    EXPECT_EQ(tokens, c.tokens) << name << " line " << i + 1 << ": " << c.text;
    EXPECT_EQ(batch[i].ids, c.ids) << name << " line " << i + 1 << " (encode_batch)";
    matched += ok;
  }
  return matched;
}

fs::path temp_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("bertune_tok_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

}  // namespace

TEST(TokenizerGolden, MatchesTransformers430OnAllCases) {
  auto nsmc = read_golden("klue_nsmc_train_5000.jsonl");
  auto tricky = read_golden("klue_tricky.jsonl");
  ASSERT_EQ(nsmc.size(), 5000u);
  ASSERT_EQ(tricky.size(), 66u);
  size_t matched = check_golden(klue(), nsmc, "klue_nsmc_train_5000.jsonl") +
                   check_golden(klue(), tricky, "klue_tricky.jsonl");
  EXPECT_EQ(matched, 5066u);
}

// klue_pairs.jsonl: tok(text, text_pair, truncation=True, max_length=M) of transformers 4.30's
// BertTokenizer for M = 24, 48, 128 ('longest_first'; either side the longer one), id for id.
TEST(TokenizerGolden, PairsMatchTransformers430) {
  std::ifstream in(shared_path("golden/tokenizer/klue_pairs.jsonl"));
  std::string line;
  std::vector<nlohmann::json> cases;
  while (std::getline(in, line)) cases.push_back(nlohmann::json::parse(line));
  ASSERT_EQ(cases.size(), 6000u);
  size_t matched = 0, truncated = 0;
  for (int max_length : {24, 48, 128}) {
    std::vector<std::string> texts, pairs;
    std::vector<const nlohmann::json*> these;
    for (const auto& c : cases)
      if (c["max_length"] == max_length) texts.push_back(c["text"]), pairs.push_back(c["text_pair"]), these.push_back(&c);
    ASSERT_EQ(these.size(), 2000u) << max_length;
    text::EncodeOptions o;
    o.max_length = max_length;
    const auto batch = klue().encode_batch(texts, pairs, o, 2);
    for (size_t i = 0; i < these.size(); ++i) {
      const auto want_ids = (*these[i])["ids"].get<std::vector<int32_t>>();
      const auto want_types = (*these[i])["token_type_ids"].get<std::vector<int32_t>>();
      const auto one = klue().encode_pair(texts[i], pairs[i], o);
      EXPECT_EQ(one.ids, want_ids) << "max_length " << max_length << ": " << texts[i] << " | " << pairs[i];
      EXPECT_EQ(one.token_type_ids, want_types) << "max_length " << max_length << ": " << texts[i];
      EXPECT_EQ(batch[i].ids, want_ids) << "encode_batch, max_length " << max_length;
      EXPECT_EQ(batch[i].token_type_ids, want_types) << "encode_batch, max_length " << max_length;
      matched += one.ids == want_ids && one.token_type_ids == want_types && batch[i].ids == want_ids &&
                 batch[i].token_type_ids == want_types;
      truncated += static_cast<int>(want_ids.size()) == max_length;
    }
  }
  EXPECT_EQ(matched, 6000u);
  EXPECT_GT(truncated, 1000u);  // the truncation rule is exercised, not just the layout
}

TEST(Tokenizer, PairLayoutAndLimits) {
  // [CLS] a [SEP] b [SEP]; a tie in length loses its token from the second text.
  const auto a = klue().encode("재밌다ㅋㅋ!!", {}).ids;  // [CLS] 5 pieces [SEP]
  text::EncodeOptions o;
  auto e = klue().encode_pair("재밌다ㅋㅋ!!", "재밌다ㅋㅋ!!", o);
  std::vector<int32_t> want = a;
  want.insert(want.end(), a.begin() + 1, a.end());
  EXPECT_EQ(e.ids, want);
  EXPECT_EQ(e.token_type_ids, (std::vector<int32_t>{0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1}));
  o.max_length = 12;  // one too many: a tie, the second text gives it up
  e = klue().encode_pair("재밌다ㅋㅋ!!", "재밌다ㅋㅋ!!", o);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 7478, 2062, 4692, 5, 5, 3, 7478, 2062, 4692, 5, 3}));
  o.max_length = 3;  // both texts cut away entirely
  EXPECT_EQ(klue().encode_pair("재밌다", "재밌다", o).ids, (std::vector<int32_t>{2, 3, 3}));
  o.max_length = 2;
  EXPECT_NE(error_of([&] { klue().encode_pair("a", "b", o); }).find("max_length 2"), std::string::npos);
  EXPECT_NE(error_of([&] { klue().encode_batch({"a"}, {"b", "c"}); }).find("text pairs"), std::string::npos);
}

TEST(TokenizerGolden, TokenizerJsonGivesTheSameResults) {
  const fs::path dir = shared_path("models/klue-bert-base");
  Tokenizer from_json = Tokenizer::load_tokenizer_json(dir / "tokenizer.json");
  EXPECT_EQ(from_json.vocab_size(), klue().vocab_size());
  for (int32_t id = 0; id < static_cast<int32_t>(klue().vocab_size()); ++id)
    ASSERT_EQ(from_json.id_to_token(id), klue().id_to_token(id)) << id;
  // And through the same golden cases, so the options read from
  // tokenizer.json (normalizer, prefix, unk) are shown to agree too.
  auto tricky = read_golden("klue_tricky.jsonl");
  EXPECT_EQ(check_golden(from_json, tricky, "klue_tricky.jsonl via tokenizer.json"), tricky.size());
  auto nsmc = read_golden("klue_nsmc_train_5000.jsonl");
  nsmc.resize(500);
  EXPECT_EQ(check_golden(from_json, nsmc, "klue_nsmc_train_5000.jsonl via tokenizer.json"), 500u);
}

TEST(Tokenizer, SpecialIdsOfKlue) {
  EXPECT_EQ(klue().vocab_size(), 32000u);
  EXPECT_EQ(klue().pad_id(), 0);
  EXPECT_EQ(klue().unk_id(), 1);
  EXPECT_EQ(klue().cls_id(), 2);
  EXPECT_EQ(klue().sep_id(), 3);
  EXPECT_EQ(klue().mask_id(), 4);
  EXPECT_EQ(klue().token_to_id("[MASK]"), 4);
  EXPECT_EQ(klue().token_to_id("##요"), 2182);
  EXPECT_EQ(klue().token_to_id("no such token"), -1);
}

TEST(Tokenizer, TruncationKeepsSepLast) {
  const std::string text = "아 더빙.. 진짜 짜증나네요 목소리";  // 11 pieces + [CLS] [SEP]
  auto full = klue().encode(text);
  ASSERT_EQ(full.ids.size(), 13u);
  for (int max_len : {2, 3, 8, 12, 13, 14, 512}) {
    text::EncodeOptions o;
    o.max_length = max_len;
    auto e = klue().encode(text, o);
    const size_t want = std::min<size_t>(static_cast<size_t>(max_len), full.ids.size());
    ASSERT_EQ(e.ids.size(), want) << max_len;
    EXPECT_EQ(e.ids.front(), klue().cls_id());
    EXPECT_EQ(e.ids.back(), klue().sep_id());
    for (size_t i = 0; i + 1 < want; ++i) EXPECT_EQ(e.ids[i], full.ids[i]) << max_len;
    EXPECT_EQ(e.attention_mask, std::vector<int8_t>(want, 1));
  }
  text::EncodeOptions one;
  one.max_length = 1;
  EXPECT_NE(error_of([&] { klue().encode(text, one); }).find("max_length"), std::string::npos);
}

TEST(Tokenizer, TokenTypeIdsAndNoSpecials) {
  text::EncodeOptions o;
  o.return_token_type_ids = true;
  auto e = klue().encode("재밌다ㅋㅋ!!", o);
  EXPECT_EQ(e.ids, (std::vector<int32_t>{2, 7478, 2062, 4692, 5, 5, 3}));
  EXPECT_EQ(e.token_type_ids, std::vector<int32_t>(7, 0));
  EXPECT_TRUE(klue().encode("재밌다").token_type_ids.empty());

  text::EncodeOptions bare;
  bare.add_special_tokens = false;
  EXPECT_EQ(klue().encode("재밌다ㅋㅋ!!", bare).ids, (std::vector<int32_t>{7478, 2062, 4692, 5, 5}));
  bare.max_length = 2;
  EXPECT_EQ(klue().encode("재밌다ㅋㅋ!!", bare).ids, (std::vector<int32_t>{7478, 2062}));
}

TEST(Tokenizer, BatchKeepsOrderOnAnyThreadCount) {
  std::vector<std::string> texts;
  for (int i = 0; i < 3000; ++i) texts.push_back(std::to_string(i) + "점 영화 ㅋㅋ" + std::string(i % 7, '!'));
  auto one = klue().encode_batch(texts, {}, 1);
  auto two = klue().encode_batch(texts, {}, 2);
  ASSERT_EQ(one.size(), texts.size());
  for (size_t i = 0; i < texts.size(); ++i) {
    EXPECT_EQ(one[i].ids, klue().encode(texts[i]).ids);
    EXPECT_EQ(two[i].ids, one[i].ids);
  }
}

// The reference options that klue does not exercise, on a vocabulary built
// here. Expected outputs follow transformers 4.30's BertTokenizer rules.
TEST(Tokenizer, LowercaseAndAccentOptions) {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "cafe", "café", "CAFÉ",
                                    "Cafe", "naive", "##s", "i", "##\xCC\x87", "straße", "οδος", "οδοσ", "!", "["};
  auto make = [&](bool lower, int strip) {
    text::BasicTokenizerOptions o;
    o.do_lower_case = lower;
    o.strip_accents = strip;
    return Tokenizer::from_vocab(vocab, o);
  };
  auto tokens = [](const Tokenizer& t, std::string_view s) { return t.tokenize(s); };
  using V = std::vector<std::string>;

  // do_lower_case with strip_accents null: lowercase and strip accents.
  Tokenizer lower = make(true, -1);
  EXPECT_EQ(tokens(lower, "CAFÉ Cafés naïve!"), (V{"cafe", "cafe", "##s", "naive", "!"}));
  EXPECT_EQ(tokens(lower, "İ"), (V{"i"}));  // "i̇" lowercased, the dot (Mn) stripped
  // do_lower_case, strip_accents false: lowercase only.
  Tokenizer lower_keep = make(true, 0);
  EXPECT_EQ(tokens(lower_keep, "CAFÉ"), (V{"café"}));
  EXPECT_EQ(tokens(lower_keep, "İ"), (V{"i", "##\xCC\x87"}));
  // No lowercasing, strip_accents true: accents go, case stays.
  Tokenizer strip_only = make(false, 1);
  EXPECT_EQ(tokens(strip_only, "CAFÉ Café"), (V{"[UNK]", "Cafe"}));
  // Neither: the text is matched as is.
  Tokenizer plain = make(false, -1);
  EXPECT_EQ(tokens(plain, "CAFÉ Café café"), (V{"CAFÉ", "[UNK]", "café"}));
  // Special tokens survive lowercasing; look-alikes in another case do not.
  EXPECT_EQ(tokens(lower, "[MASK]cafe [mask]"), (V{"[MASK]", "cafe", "[", "[UNK]", "[UNK]"}));
  // tokenize() lowercases one character at a time, so no final sigma.
  EXPECT_EQ(tokens(lower, "ΟΔΟΣ"), (V{"οδοσ"}));
  // The basic tokenizer on its own lowercases whole words (Python str.lower).
  EXPECT_EQ(lower.basic().split("ΟΔΟΣ ΣΑ"), (V{"οδος", "σα"}));
}

TEST(Tokenizer, NeverSplitAndLongWords) {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "##a", "<",
                                    ">", "b", "##b", "<ab>"};
  text::BasicTokenizerOptions o;
  o.never_split = {"<ab>", "<zz>"};
  Tokenizer t = Tokenizer::from_vocab(vocab, o);
  using V = std::vector<std::string>;
  EXPECT_EQ(t.tokenize("<ab> <ab>a <zz>"), (V{"<ab>", "<", "a", "##b", ">", "a", "<zz>"}));
  EXPECT_EQ(t.encode("<zz>").ids, (std::vector<int32_t>{2, 1, 3}));  // kept whole, unknown id
  EXPECT_EQ(t.basic().split("<ab> , x<ab>"), (V{"<ab>", ",", "x", "<", "ab", ">"}));
  EXPECT_EQ(t.tokenize(std::string(100, 'a')).size(), 100u);
  EXPECT_EQ(t.tokenize(std::string(101, 'a')), (V{"[UNK]"}));
  EXPECT_EQ(t.tokenize("abc ab"), (V{"[UNK]", "a", "##b"}));  // one bad piece: the whole word
}

TEST(Tokenizer, BasicSplitMatchesReferenceRules) {
  text::BasicTokenizer basic;
  using V = std::vector<std::string>;
  EXPECT_EQ(basic.split(" 漢字와\t한글,混用 \xE2\x80\x8B!"),
            (V{"漢", "字", "와", "한글", ",", "混", "用", "!"}));
  EXPECT_EQ(basic.split("a\xE2\x80\xA8" "b"), (V{"a", "b"}));  // U+2028: Python's split() separates
  EXPECT_EQ(basic.split("x\x01y\xEF\xBF\xBDz"), (V{"xyz"}));    // controls and U+FFFD dropped
  EXPECT_EQ(basic.split("bad\xFF" "utf8"), (V{"badutf8"}));      // malformed bytes: as U+FFFD
  EXPECT_TRUE(basic.split(" \t\n").empty());
  text::BasicTokenizerOptions keep_cjk;
  keep_cjk.tokenize_chinese_chars = false;
  EXPECT_EQ(text::BasicTokenizer(keep_cjk).split("漢字와 한글"), (V{"漢字와", "한글"}));
}

TEST(Tokenizer, UnicodeTablesMatchLinkedUtf8proc) {
  // The table of characters Python 3.11 does not know was generated against
  // this utf8proc; a different one needs scripts/gen_unicode_gaps.py rerun.
  EXPECT_STREQ(utf8proc_unicode_version(), text::unicode::gap_table_utf8proc_version());
  EXPECT_TRUE(text::unicode::is_unassigned_in_reference(0x1F6DC));  // Unicode 15 wireless symbol
  EXPECT_FALSE(text::unicode::is_unassigned_in_reference(0xAC00));
  EXPECT_EQ(text::unicode::classify(0x1F6DC), text::unicode::kDrop);
  EXPECT_EQ(text::unicode::classify(0x1F602), text::unicode::kWord);  // emoji (So)
}

TEST(Tokenizer, BadDirectoriesNameTheFile) {
  EXPECT_NE(error_of([] { Tokenizer::load("/nonexistent/tok"); }).find("/nonexistent/tok"), std::string::npos);

  fs::path empty = temp_dir("empty");
  EXPECT_NE(error_of([&] { Tokenizer::load(empty); }).find("neither vocab.txt nor tokenizer.json"),
            std::string::npos);

  fs::path bad_config = temp_dir("badcfg");
  io::write_file_atomic(bad_config / "vocab.txt", "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n");
  io::write_file_atomic(bad_config / "tokenizer_config.json", "{\"do_lower_case\": ");
  EXPECT_NE(error_of([&] { Tokenizer::load(bad_config); }).find("tokenizer_config.json"), std::string::npos);
  io::write_file_atomic(bad_config / "tokenizer_config.json", "{\"do_lower_case\": \"yes\"}");
  std::string msg = error_of([&] { Tokenizer::load(bad_config); });
  EXPECT_NE(msg.find("tokenizer_config.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("do_lower_case"), std::string::npos) << msg;

  fs::path no_unk = temp_dir("nounk");
  io::write_file_atomic(no_unk / "vocab.txt", "a\nb\n");
  EXPECT_NE(error_of([&] { Tokenizer::load(no_unk); }).find("[UNK]"), std::string::npos);

  fs::path bad_json = temp_dir("badjson");
  io::write_file_atomic(bad_json / "tokenizer.json", "{\"model\": {\"type\": \"BPE\", \"vocab\": {}}}");
  msg = error_of([&] { Tokenizer::load(bad_json); });
  EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << msg;
  EXPECT_NE(msg.find("WordPiece"), std::string::npos) << msg;
  io::write_file_atomic(bad_json / "tokenizer.json", "[1, 2");
  EXPECT_NE(error_of([&] { Tokenizer::load(bad_json); }).find("tokenizer.json"), std::string::npos);

  // vocab.txt with no config: HF's BertTokenizer defaults (lowercasing on).
  fs::path bare = temp_dir("bare");
  io::write_file_atomic(bare / "vocab.txt", "[PAD]\r\n[UNK]\r\n[CLS]\r\n[SEP]\r\n[MASK]\r\nhello\r\n");
  Tokenizer t = Tokenizer::load(bare);
  EXPECT_EQ(t.encode("HeLLo").ids, (std::vector<int32_t>{2, 5, 3}));
  for (const auto& d : {empty, bad_config, no_unk, bad_json, bare}) fs::remove_all(d);
}

// The CLI end to end: golden texts in, the reference's ids and tokens out.
TEST(TokenizeCli, WritesGoldenJsonl) {
  auto cases = read_golden("klue_nsmc_train_5000.jsonl");
  cases.resize(200);
  fs::path dir = temp_dir("cli");
  std::string lines;
  for (const auto& c : cases) lines += c.text + "\n";  // NSMC documents hold no newlines
  io::write_file_atomic(dir / "in.txt", lines);
  const std::string bin = BERTUNE_BINARY;
  const std::string tok_dir = shared_path("models/klue-bert-base").string();
  auto run = [&](const std::string& extra) {
    std::string cmd = "'" + bin + "' tokenize --tokenizer '" + tok_dir + "' --input '" + (dir / "in.txt").string() +
                      "' --output '" + (dir / "out.jsonl").string() + "' " + extra;
    EXPECT_EQ(std::system(cmd.c_str()), 0) << cmd;
    std::vector<nlohmann::json> out;
    std::ifstream in(dir / "out.jsonl");
    std::string line;
    while (std::getline(in, line)) out.push_back(nlohmann::json::parse(line));
    return out;
  };
  auto out = run("");
  ASSERT_EQ(out.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    EXPECT_EQ(out[i]["ids"].get<std::vector<int32_t>>(), cases[i].ids) << i;
    EXPECT_EQ(out[i]["tokens"].get<std::vector<std::string>>(), cases[i].tokens) << i;
  }
  auto truncated = run("--max-length 8");
  ASSERT_EQ(truncated.size(), cases.size());
  for (size_t i = 0; i < cases.size(); ++i) {
    auto ids = truncated[i]["ids"].get<std::vector<int32_t>>();
    std::vector<int32_t> want = cases[i].ids;
    if (want.size() > 8) {
      want.resize(7);
      want.push_back(3);
    }
    EXPECT_EQ(ids, want) << i;
  }
  // A missing input names the file and leaves no output behind.
  fs::remove(dir / "out.jsonl");
  std::string cmd = "'" + bin + "' tokenize --input '" + (dir / "missing.txt").string() + "' --output '" +
                    (dir / "out.jsonl").string() + "' 2> '" + (dir / "err.txt").string() + "'";
  EXPECT_NE(std::system(cmd.c_str()), 0);
  EXPECT_NE(io::read_file(dir / "err.txt").find("missing.txt"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "out.jsonl"));
  fs::remove_all(dir);
}

TEST(Tokenizer, VocabTxtThatIsADirectory) {
  TempDir tmp("vocab_dir");
  fs::create_directories(tmp.path / "vocab.txt");
  auto e = error_of([&] { text::Tokenizer::load(tmp.path); });
  EXPECT_TRUE(contains(e, "vocab.txt is a directory; expected a file")) << e;
}

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
