// SentencePiece tokenizers (src/text/sentencepiece.h) behind text::Tokenizer: XLM-R's
// sentencepiece.bpe.model against transformers 4.30.2's XLMRobertaTokenizer, the fairseq ids,
// special tokens in text, bad files, and the CLI (tokenize, train, predict) on such a directory.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <nlohmann/json.hpp>
#include <utf8proc.h>
#include <string>
#include <tuple>
#include <vector>

#include "io/atomic_file.h"
#include "text/tokenizer.h"
#include "util/paths.h"
#include "run_cli.h"
#include "serve_fixture.h"
#include "test_support.h"
#include "train_fixture.h"

namespace fs = std::filesystem;
using namespace bertune;
using text::Tokenizer;

namespace {

fs::path xlmr_model_file() { return shared_path("golden/tokenizer/xlmr_nsmc_unigram.model"); }

// A tokenizer directory as XLM-R ships it: sentencepiece.bpe.model (+ tokenizer_config.json).
struct XlmrDir : TempDir {
  explicit XlmrDir(const std::string& name) : TempDir(name) {
    fs::copy_file(xlmr_model_file(), path / "sentencepiece.bpe.model");
    file("tokenizer_config.json", R"({"tokenizer_class": "XLMRobertaTokenizer", "model_max_length": 512})");
  }
};

const Tokenizer& xlmr() {
  static const XlmrDir dir("xlmr_tok");
  static const Tokenizer t = Tokenizer::load(dir.path);
  return t;
}

std::vector<nlohmann::json> golden_lines() {
  std::ifstream in(shared_path("golden/tokenizer/xlmr_nsmc.jsonl"));
  std::vector<nlohmann::json> out;
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line));
  return out;
}

}  // namespace

// xlmr_nsmc.jsonl: XLMRobertaTokenizer (transformers 4.30.2) over xlmr_nsmc_unigram.model on NSMC
// reviews: 3000 single texts (ids and tokens) and 3000 pairs tok(a, b, truncation=True,
// max_length=M) for M = 16, 40, 128. Every line, id for id.
TEST(SentencePieceGolden, MatchesXlmRobertaTokenizer430) {
  const auto cases = golden_lines();
  ASSERT_EQ(cases.size(), 6000u);
  std::vector<std::string> texts, pair_a, pair_b;
  std::vector<const nlohmann::json*> singles, pairs;
  for (const auto& c : cases) {
    if (c.contains("text_pair")) pairs.push_back(&c), pair_a.push_back(c["text"]), pair_b.push_back(c["text_pair"]);
    else singles.push_back(&c), texts.push_back(c["text"]);
  }
  ASSERT_EQ(singles.size(), 3000u);
  size_t matched = 0, truncated = 0;
  const auto batch = xlmr().encode_batch(texts, {}, 2);
  for (size_t i = 0; i < singles.size(); ++i) {
    const auto want_ids = (*singles[i])["ids"].get<std::vector<int32_t>>();
    const auto want_tokens = (*singles[i])["tokens"].get<std::vector<std::string>>();
    const auto one = xlmr().encode(texts[i]);
    // tokenize() gives SentencePiece's pieces (an unknown one as its text, which
    // convert_tokens_to_ids makes <unk>); the golden tokens are convert_ids_to_tokens(ids).
    std::vector<int32_t> piece_ids = {0};
    for (const std::string& piece : xlmr().tokenize(texts[i])) {
      const int32_t id = xlmr().token_to_id(piece);
      piece_ids.push_back(id < 0 ? xlmr().unk_id() : id);
    }
    piece_ids.push_back(2);
    std::vector<std::string> names;
    for (int32_t id : one.ids) names.push_back(xlmr().id_to_token(id));
    EXPECT_EQ(one.ids, want_ids) << texts[i];
    EXPECT_EQ(piece_ids, want_ids) << "tokenize: " << texts[i];
    EXPECT_EQ(names, want_tokens) << texts[i];
    EXPECT_EQ(batch[i].ids, want_ids) << "encode_batch: " << texts[i];
    matched += one.ids == want_ids && piece_ids == want_ids && names == want_tokens && batch[i].ids == want_ids;
  }
  for (int max_length : {16, 40, 128}) {
    std::vector<std::string> a, b;
    std::vector<std::vector<int32_t>> want;
    for (size_t i = 0; i < pairs.size(); ++i)
      if ((*pairs[i])["max_length"] == max_length)
        a.push_back(pair_a[i]), b.push_back(pair_b[i]), want.push_back((*pairs[i])["ids"]);
    ASSERT_EQ(want.size(), 1000u) << max_length;
    text::EncodeOptions o;
    o.max_length = max_length;
    const auto pair_batch = xlmr().encode_batch(a, b, o, 2);
    for (size_t i = 0; i < want.size(); ++i) {
      const auto one = xlmr().encode_pair(a[i], b[i], o);
      EXPECT_EQ(one.ids, want[i]) << "max_length " << max_length << ": " << a[i] << " | " << b[i];
      EXPECT_EQ(one.token_type_ids, std::vector<int32_t>(one.ids.size(), 0)) << a[i];
      EXPECT_EQ(pair_batch[i].ids, want[i]) << "encode_batch, max_length " << max_length;
      matched += one.ids == want[i] && pair_batch[i].ids == want[i] &&
                 one.token_type_ids == std::vector<int32_t>(one.ids.size(), 0);
      truncated += static_cast<int>(want[i].size()) == max_length;
    }
  }
  EXPECT_EQ(matched, 6000u);
  EXPECT_GT(truncated, 1000u);  // the truncation rule is exercised, not just the layout
}

// The fairseq dictionary: <s> <pad> </s> <unk>, then SentencePiece's pieces one id up, <mask> last.
TEST(SentencePiece, FairseqIdsAndSpecialTokens) {
  const Tokenizer& t = xlmr();
  ASSERT_EQ(t.vocab_size(), 8002u);  // 8000 pieces + <pad> + <mask>
  EXPECT_EQ(t.cls_id(), 0);
  EXPECT_EQ(t.pad_id(), 1);
  EXPECT_EQ(t.sep_id(), 2);
  EXPECT_EQ(t.unk_id(), 3);
  EXPECT_EQ(t.mask_id(), 8001);
  for (const char* name : {"<s>", "<pad>", "</s>", "<unk>"})
    EXPECT_EQ(t.id_to_token(t.token_to_id(name)), name);
  EXPECT_EQ(t.id_to_token(8001), "<mask>");
  EXPECT_EQ(t.token_to_id("<mask>"), 8001);
  EXPECT_EQ(t.id_to_token(4), "▁");  // SentencePiece id 3
  EXPECT_EQ(t.token_to_id("▁"), 4);
  EXPECT_EQ(t.token_to_id("no such piece"), -1);

  // A special token in the text is one token; the pieces around it are those of the stretches alone.
  auto ids_of = [&](const std::string& text) { return t.encode(text, {.add_special_tokens = false}).ids; };
  std::vector<int32_t> want = ids_of("재밌다");
  want.push_back(8001);
  const std::vector<int32_t> rest = ids_of("최고");
  want.insert(want.end(), rest.begin(), rest.end());
  EXPECT_EQ(ids_of("재밌다 <mask> 최고"), want);
  EXPECT_EQ(t.tokenize("a</s>b").at(1), "</s>");
  EXPECT_EQ(ids_of("<s><pad></s><unk><mask>"), (std::vector<int32_t>{0, 1, 2, 3, 8001}));
  // Text SentencePiece does not know: one <unk> (fairseq id 3), the piece's own text in tokenize().
  EXPECT_EQ(ids_of("\xF0\x9F\x98\x82"), (std::vector<int32_t>{4, 3}));  // ▁ + an emoji
  EXPECT_EQ(t.tokenize("\xF0\x9F\x98\x82"), (std::vector<std::string>{"▁", "\xF0\x9F\x98\x82"}));
}

TEST(SentencePiece, PairLayoutAndLimits) {
  const Tokenizer& t = xlmr();
  const auto a = t.encode("재밌다").ids;  // <s> pieces </s>
  auto e = t.encode_pair("재밌다", "재밌다");
  std::vector<int32_t> want = a;
  want.push_back(2);
  want.insert(want.end(), a.begin() + 1, a.end());  // <s> a </s> + </s> + b </s>
  EXPECT_EQ(e.ids, want);
  EXPECT_EQ(e.token_type_ids, std::vector<int32_t>(want.size(), 0));
  text::EncodeOptions o;
  o.max_length = 4;  // both texts cut away: <s> </s></s> </s>
  EXPECT_EQ(t.encode_pair("재밌다", "재밌다", o).ids, (std::vector<int32_t>{0, 2, 2, 2}));
  o.max_length = 3;
  const std::string msg = error_of([&] { t.encode_pair("a", "b", o); });
  EXPECT_TRUE(contains(msg, "max_length 3 leaves no room for a pair's 4 special tokens")) << msg;
  EXPECT_TRUE(contains(error_of([&] { t.encode_batch({"a"}, {"b"}, o); }), "max_length 3"));
  // One text under the same limit: <s> a piece </s>.
  EXPECT_EQ(t.encode("재밌다 최고", o).ids.size(), 3u);
  EXPECT_EQ(t.encode("재밌다 최고", o).ids.back(), 2);
}

// Any bytes (invalid UTF-8, specials run together, whitespace alone): ids stay in the vocabulary,
// a truncated encoding stays within max_length and ends with </s>.
TEST(SentencePiece, ArbitraryBytesStayInRange) {
  const Tokenizer& t = xlmr();
  const std::string alphabet[] = {"a", " ", "\t", "\xE3\x80\x80", "<s>", "</s>", "<mask>", "<pad>", "<unk>", "영화",
                                  "\xFF", "\x80", "\xED\x9F", "\xC3", "\u00A0", "ㅋ", "!", "\xEF\xBF\xBD"};
  uint64_t state = 12345;
  auto next = [&] { return (state = state * 6364136223846793005ull + 1442695040888963407ull) >> 33; };
  auto random_text = [&] {
    std::string text;
    for (uint64_t n = next() % 12; n > 0; --n) text += alphabet[next() % std::size(alphabet)];
    return text;
  };
  text::EncodeOptions o;
  o.max_length = 6;
  for (int i = 0; i < 3000; ++i) {
    const std::string a = random_text(), b = random_text();
    for (const auto& e : {t.encode(a), t.encode(a, o), t.encode_pair(a, b, o)}) {
      for (int32_t id : e.ids) ASSERT_TRUE(id >= 0 && static_cast<size_t>(id) < t.vocab_size()) << a << " | " << b;
      ASSERT_EQ(e.ids.front(), 0);
      ASSERT_EQ(e.ids.back(), 2);
    }
    ASSERT_LE(t.encode_pair(a, b, o).ids.size(), 6u);
    ASSERT_LE(t.encode(a, o).ids.size(), 6u);
  }
}

TEST(SentencePiece, BadFilesNameTheFile) {
  TempDir tmp("spm_bad");
  tmp.file("sentencepiece.bpe.model", "this is not a SentencePiece model");
  std::string msg = error_of([&] { Tokenizer::load(tmp.path); });
  EXPECT_TRUE(contains(msg, (tmp.path / "sentencepiece.bpe.model").string())) << msg;
  // Truncated: the model's first half.
  const std::string bytes = io::read_file(xlmr_model_file());
  tmp.file("sentencepiece.bpe.model", bytes.substr(0, bytes.size() / 2));
  msg = error_of([&] { Tokenizer::load(tmp.path); });
  EXPECT_TRUE(contains(msg, (tmp.path / "sentencepiece.bpe.model").string())) << msg;
  msg = error_of([&] { Tokenizer::load_sentencepiece(tmp.path / "missing.model"); });
  EXPECT_TRUE(contains(msg, "missing.model")) << msg;

  // Another class over the same file (CamemBERT numbers its pieces otherwise).
  fs::copy_file(xlmr_model_file(), tmp.path / "sentencepiece.bpe.model", fs::copy_options::overwrite_existing);
  tmp.file("tokenizer_config.json", R"({"tokenizer_class": "CamembertTokenizer"})");
  msg = error_of([&] { Tokenizer::load(tmp.path); });
  EXPECT_TRUE(contains(msg, "tokenizer_config.json: tokenizer_class is \"CamembertTokenizer\"")) << msg;
  fs::remove(tmp.path / "tokenizer_config.json");
  EXPECT_EQ(Tokenizer::load(tmp.path).vocab_size(), 8002u);

  // spiece.model is read as AlbertTokenizer only: another class (T5's) is refused naming what is supported.
  TempDir t5("spm_t5");
  fs::copy_file(xlmr_model_file(), t5.path / "spiece.model");
  EXPECT_TRUE(text::is_tokenizer_dir(t5.path));
  t5.file("tokenizer_config.json", R"({"tokenizer_class": "T5Tokenizer"})");
  msg = error_of([&] { Tokenizer::load(t5.path); });
  EXPECT_TRUE(contains(msg, "tokenizer_config.json: tokenizer_class is \"T5Tokenizer\"; spiece.model is read as "
                            "AlbertTokenizer only (supported: AlbertTokenizer, AlbertTokenizerFast)")) << msg;
}

TEST(SentencePiece, ModelFileTravelsWithTheTokenizer) {
  XlmrDir dir("spm_files");
  EXPECT_TRUE(text::is_tokenizer_dir(dir.path));
  const auto files = text::tokenizer_files(dir.path);
  EXPECT_NE(std::find(files.begin(), files.end(), dir.path / "sentencepiece.bpe.model"), files.end());
  // The model file itself loads too.
  EXPECT_EQ(Tokenizer::load(dir.path / "sentencepiece.bpe.model").encode("굳 ㅋ").ids,
            (std::vector<int32_t>{0, 2116, 331, 2}));
}

// `bertune tokenize` on the directory prints the reference's ids and tokens.
TEST(SentencePieceCli, TokenizePrintsGoldenIds) {
  XlmrDir dir("spm_cli");
  std::string lines;
  std::vector<nlohmann::json> cases;
  for (const auto& c : golden_lines())
    if (!c.contains("text_pair") && cases.size() < 200) cases.push_back(c), lines += c["text"].get<std::string>() + "\n";
  dir.file("in.txt", lines);
  auto r = run_cli("tokenize --tokenizer " + dir.path.string() + " --input " + (dir.path / "in.txt").string() +
                   " --output " + (dir.path / "out.jsonl").string());
  ASSERT_EQ(r.status, 0) << r.output;
  std::ifstream in(dir.path / "out.jsonl");
  size_t i = 0;
  for (std::string line; std::getline(in, line); ++i) {
    ASSERT_LT(i, cases.size());
    const auto out = nlohmann::json::parse(line);
    EXPECT_EQ(out["ids"], cases[i]["ids"]) << i;
    EXPECT_EQ(out["tokens"], cases[i]["tokens"]) << i;
  }
  EXPECT_EQ(i, cases.size());
}

// train with --tokenizer on the directory, a tiny BERT-layout model over its 8002 ids; the
// trained model directory (and its int8 one) carries the model file, and predict tokenizes with it.
TEST(SentencePieceCli, TrainAndPredictWithXlmrTokenizer) {
  TinyTrainDir files("spm_train");
  XlmrDir tok("spm_train_tok");
  const NsmcRows nsmc = nsmc_train_rows(64);
  std::string body = nsmc.header + "\n";
  for (const std::string& line : nsmc.rows) body += line + "\n";
  io::write_file_atomic(files.dir / "train.tsv", body);
  io::write_file_atomic(files.dir / "tiny.json", R"({"vocab_size": 8002, "hidden_size": 32, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64})");
  const std::string out = (files.dir / "out").string();
  auto r = run_cli("train --model-config " + (files.dir / "tiny.json").string() + " --tokenizer " + tok.path.string() +
                   " --train-file " + (files.dir / "train.tsv").string() +
                   " --max-length 32 --max-steps 2 --save-strategy no --eval-strategy no --threads 2 --output-dir " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  EXPECT_TRUE(fs::is_regular_file(fs::path(out) / "final" / "sentencepiece.bpe.model"));
  EXPECT_FALSE(fs::exists(fs::path(out) / "final" / "vocab.txt"));
  auto p = run_cli("predict --model " + out + "/final '재밌다 최고'");
  ASSERT_EQ(p.status, 0) << p.output;
  EXPECT_TRUE(contains(p.output, "probs")) << p.output;
  // Its int8 directory carries the model file too, and predicts with it.
  const std::string q8 = out + "/q8";
  auto q = run_cli("quantize --model " + out + "/final --output " + q8);
  ASSERT_EQ(q.status, 0) << q.output;
  EXPECT_TRUE(fs::is_regular_file(fs::path(q8) / "sentencepiece.bpe.model"));
  p = run_cli("predict --model " + q8 + " '재밌다 최고'");
  ASSERT_EQ(p.status, 0) << p.output;
  EXPECT_TRUE(contains(p.output, "probs")) << p.output;

  // A model whose embeddings are smaller than the tokenizer's ids is refused before training.
  io::write_file_atomic(files.dir / "small.json", R"({"vocab_size": 8001, "hidden_size": 32, "num_hidden_layers": 1,
    "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64})");
  r = run_cli("train --model-config " + (files.dir / "small.json").string() + " --tokenizer " + tok.path.string() +
              " --train-file " + (files.dir / "train.tsv").string() + " --max-length 32 --max-steps 1 --output-dir " + out + "2");
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "8002")) << r.output;
}

namespace {

// Code points [start, end) of UTF-8 text.
std::string cp_slice(const std::string& text, size_t start, size_t end) {
  size_t cp = 0, from = 0;
  for (size_t b = 0; b <= text.size(); ++b) {
    if (b < text.size() && (static_cast<unsigned char>(text[b]) & 0xC0) == 0x80) continue;  // inside a code point
    if (cp == start) from = b;
    if (cp == end) return text.substr(from, b - from);
    ++cp;
  }
  return "<out of range>";
}

std::string nfkc(const std::string& s) {
  utf8proc_uint8_t* out = utf8proc_NFKC(reinterpret_cast<const utf8proc_uint8_t*>(s.c_str()));
  std::string r = out ? reinterpret_cast<const char*>(out) : "";
  std::free(out);
  return r;
}

}  // namespace

// Offsets as XLMRobertaTokenizerFast reports them: a piece's "▁" is not part of its span
// ("▁이" in "뭐야 이" covers "이" only), NFKC-normalised pieces cover the original characters
// (the "▁ᄏ" of "ㅋ"), and over the golden texts every piece's ids are the reference's and its
// span is the piece's text without the "▁".
TEST(SentencePiece, OffsetsLeaveOutTheMetaspace) {
  auto spans = [](const std::string& text) {
    std::vector<std::pair<size_t, size_t>> out;
    for (const auto& p : xlmr().encode_with_offsets(text)) out.push_back({p.start, p.end});
    return out;
  };
  using Spans = std::vector<std::pair<size_t, size_t>>;
  // ▁뭐야 ▁이 ▁평점 들은 (the golden tokens of a review starting so)
  EXPECT_EQ(spans("뭐야 이 평점들은"), (Spans{{0, 2}, {3, 4}, {5, 7}, {7, 9}}));
  EXPECT_EQ(spans("굳 ㅋ"), (Spans{{0, 1}, {2, 3}}));  // ▁굳 ▁ᄏ
  EXPECT_EQ(spans("  굳   ㅋ "), (Spans{{2, 3}, {6, 7}}));

  size_t pieces = 0, same = 0;
  std::string examples;  // piece=covered text, of the pieces that differ
  for (const auto& c : golden_lines()) {
    if (c.contains("text_pair") || pieces > 20000) continue;
    const std::string text = c["text"];
    const auto got = xlmr().encode_with_offsets(text);
    const auto ids = c["ids"].get<std::vector<int32_t>>();
    const auto tokens = c["tokens"].get<std::vector<std::string>>();
    ASSERT_EQ(got.size() + 2, ids.size()) << text;
    for (size_t i = 0; i < got.size(); ++i) {
      ASSERT_EQ(got[i].id, ids[i + 1]) << text;
      ASSERT_LT(got[i].start, got[i].end) << text << " piece " << i;
      const std::string covered = cp_slice(text, got[i].start, got[i].end);
      EXPECT_NE(covered.front(), ' ') << text << " piece " << i;
      std::string piece = tokens[i + 1];
      if (piece.starts_with("▁")) piece.erase(0, std::string("▁").size());
      // A lone "▁" covers the next word's first character; other pieces their text, as
      // SentencePiece normalised it (NFKC: the ᄏ of ㅋ).
      const bool lone = piece.empty() && got[i].end - got[i].start == 1;
      ++pieces;
      const bool alike = lone || ids[i + 1] == xlmr().unk_id() || covered == piece || nfkc(covered) == piece;
      same += alike;
      if (!alike && examples.size() < 2000) examples += piece + "=" + covered + " ";
    }
  }
  ASSERT_GT(pieces, 10000u);
  EXPECT_EQ(same, pieces) << examples;
}

// A tiny XLM-R token classifier: predict's and serve's entity spans carry the fast tokenizer's
// offsets (no "▁", no leading space) and the text they span as their word; "first" joins the
// pieces of a word (a piece continues one unless a space is just before it).
TEST(SentencePieceCli, XlmrTaggerSpansAreTheTextsCharacters) {
  TinyTrainDir files("spm_tagger");
  XlmrDir tok("spm_tagger_tok");
  io::write_file_atomic(files.dir / "tags.jsonl",
                        "{\"tokens\": [\"뭐야\", \"이\", \"평점들은\"], \"tags\": [\"O\", \"B-PS\", \"I-PS\"]}\n"
                        "{\"tokens\": [\"굳\", \"ㅋ\"], \"tags\": [\"B-PS\", \"O\"]}\n");
  io::write_file_atomic(files.dir / "xlmr.json", R"({"model_type": "xlm-roberta", "vocab_size": 8002,
    "hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64,
    "max_position_embeddings": 66, "type_vocab_size": 1, "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2})");
  const std::string out = (files.dir / "out").string();
  auto r = run_cli("train --task token-classification --model-config " + (files.dir / "xlmr.json").string() +
                   " --tokenizer " + tok.path.string() + " --train-file " + (files.dir / "tags.jsonl").string() +
                   " --max-length 32 --max-steps 1 --save-strategy no --threads 2 --output-dir " + out);
  ASSERT_EQ(r.status, 0) << r.output;
  const std::string tagger = biased_model(files.dir / "all_b_ps", out + "/final", "B-PS");
  const std::string text = "뭐야 이 평점들은 굳 ㅋ";
  auto predict = [&](const std::string& aggregation) {
    auto p = run_cli("predict --aggregation-strategy " + aggregation + " --model " + tagger + " '" + text + "'");
    EXPECT_EQ(p.status, 0) << p.output;
    nlohmann::json spans = nlohmann::json::parse(p.output.substr(p.output.find('[')));
    std::vector<std::tuple<std::string, size_t, size_t>> got;
    for (const auto& s : spans) got.emplace_back(s.at("word"), s.at("start"), s.at("end"));
    return std::make_pair(got, spans);
  };
  using Words = std::vector<std::tuple<std::string, size_t, size_t>>;
  // Every piece B-PS: a span each, over its characters without the "▁"; ㅋ as written.
  const auto [simple, simple_json] = predict("simple");
  EXPECT_EQ(simple, (Words{{"뭐야", 0, 2}, {"이", 3, 4}, {"평점", 5, 7}, {"들은", 7, 9}, {"굳", 10, 11}, {"ㅋ", 12, 13}}));
  for (const auto& s : simple_json) EXPECT_EQ(s.at("entity_group"), "PS");
  EXPECT_EQ(predict("first").first,
            (Words{{"뭐야", 0, 2}, {"이", 3, 4}, {"평점들은", 5, 9}, {"굳", 10, 11}, {"ㅋ", 12, 13}}));
  const auto none = predict("none").second;  // the pieces themselves, as the pipeline's word
  ASSERT_EQ(none.size(), 6u);
  EXPECT_EQ(none[1].at("word"), "▁이");
  EXPECT_EQ(none[1].at("start"), 3);

  bertune::testing::ServerProcess server(tagger, files.dir / "serve.log");
  auto c = server.client();
  auto served = c.Post("/", nlohmann::json{{"inputs", text}}.dump(), "application/json");
  ASSERT_TRUE(served);
  ASSERT_EQ(served->status, 200) << served->body;
  const auto answer = nlohmann::json::parse(served->body);
  ASSERT_EQ(answer.size(), simple_json.size());
  for (size_t i = 0; i < answer.size(); ++i)
    for (const char* key : {"entity_group", "word", "start", "end"}) EXPECT_EQ(answer[i].at(key), simple_json[i].at(key));
  EXPECT_EQ(server.terminate(), 0);
}

namespace {

// The test model as ALBERT ships a tokenizer: spiece.model (+ tokenizer_config.json).
struct AlbertDir : TempDir {
  AlbertDir(const std::string& name, const std::string& config) : TempDir(name) {
    fs::copy_file(xlmr_model_file(), path / "spiece.model");
    if (!config.empty()) file("tokenizer_config.json", config);
  }
};

// The pieces of a golden XLM-R token without the fairseq offset: <unk> is SentencePiece's 0.
int32_t spiece_id(int32_t fairseq_id) { return fairseq_id == 3 ? 0 : fairseq_id - 1; }

// Whether AlbertTokenizer's preprocessing or digit-comma split would touch the golden case:
// `` or '' in the text, or a piece (beyond its "▁") ending in a digit and ",".
bool albert_rewrites(const nlohmann::json& c) {
  const std::string text = c["text"];
  if (text.find("``") != std::string::npos || text.find("''") != std::string::npos) return true;
  for (const std::string& t : c["tokens"].get<std::vector<std::string>>())
    if (t.size() >= 2 && t.back() == ',' && std::isdigit(static_cast<unsigned char>(t[t.size() - 2]))) return true;
  return false;
}

}  // namespace

// spiece.model as AlbertTokenizer reads it (transformers 4.30.2): the SentencePiece ids
// themselves, so every golden piece's id is its fairseq id - 1 (<unk>: 0); [CLS] [SEP] <pad>
// [MASK], which the model lacks, added after its 8000 pieces in that order (_add_tokens:
// len(self) + i); [CLS] a [SEP] and [CLS] a [SEP] b [SEP] with token types 0 then 1. With
// keep_accents and without lower-casing the preprocessing leaves NSMC text to SentencePiece.
TEST(Spiece, MatchesTheGoldenSegmentation) {
  AlbertDir dir("spiece_golden", R"({"tokenizer_class": "AlbertTokenizer", "do_lower_case": false, "keep_accents": true})");
  const Tokenizer t = Tokenizer::load(dir.path);
  EXPECT_EQ(t.vocab_size(), 8004u);
  EXPECT_EQ(t.unk_id(), 0);
  EXPECT_EQ(t.cls_id(), 8000);
  EXPECT_EQ(t.sep_id(), 8001);
  EXPECT_EQ(t.pad_id(), 8002);
  EXPECT_EQ(t.mask_id(), 8003);
  for (const char* name : {"[CLS]", "[SEP]", "<pad>", "[MASK]", "<unk>"}) EXPECT_EQ(t.id_to_token(t.token_to_id(name)), name);
  size_t compared = 0;
  std::vector<std::vector<int32_t>> singles;
  std::vector<std::string> texts;
  for (const auto& c : golden_lines()) {
    if (c.contains("text_pair") || albert_rewrites(c)) continue;
    std::vector<int32_t> want = {t.cls_id()};
    const auto golden = c["ids"].get<std::vector<int32_t>>();
    for (size_t i = 1; i + 1 < golden.size(); ++i) want.push_back(spiece_id(golden[i]));
    want.push_back(t.sep_id());
    const auto got = t.encode(c["text"].get<std::string>(), {.return_token_type_ids = true});
    ASSERT_EQ(got.ids, want) << c["text"];
    EXPECT_EQ(got.token_type_ids, std::vector<int32_t>(want.size(), 0));
    singles.push_back(want), texts.push_back(c["text"]);
    ++compared;
  }
  EXPECT_GT(compared, 2900u);
  // Pairs: [CLS] a [SEP] b [SEP], b's types 1; longest_first truncation takes a token at a
  // time off the longer side (the second on a tie).
  for (size_t i = 0; i + 1 < 400; i += 2) {
    const std::vector<int32_t> a(singles[i].begin() + 1, singles[i].end() - 1),
        b(singles[i + 1].begin() + 1, singles[i + 1].end() - 1);
    for (int max_length : {0, 12}) {
      size_t na = a.size(), nb = b.size();
      while (max_length > 0 && na + nb + 3 > size_t(max_length)) (na > nb ? na : nb)--;
      std::vector<int32_t> want = {t.cls_id()};
      want.insert(want.end(), a.begin(), a.begin() + ptrdiff_t(na));
      want.push_back(t.sep_id());
      const size_t first = want.size();
      want.insert(want.end(), b.begin(), b.begin() + ptrdiff_t(nb));
      want.push_back(t.sep_id());
      const auto got = t.encode_pair(texts[i], texts[i + 1], {.max_length = max_length});
      ASSERT_EQ(got.ids, want) << texts[i] << " | " << texts[i + 1] << " max_length " << max_length;
      std::vector<int32_t> types(want.size(), 1);
      std::fill(types.begin(), types.begin() + ptrdiff_t(first), 0);
      EXPECT_EQ(got.token_type_ids, types);
    }
  }
}

// AlbertTokenizer's preprocess_text and _tokenize (transformers 4.30.2 tokenization_albert.py),
// its defaults (do_lower_case, remove_space, no keep_accents) against a directory that turns
// them off: each case follows from one line of that code.
TEST(Spiece, PreprocessesAsAlbertTokenizer) {
  AlbertDir plain("spiece_defaults", "");
  AlbertDir kept("spiece_kept", R"({"do_lower_case": false, "remove_space": false, "keep_accents": true})");
  const Tokenizer t = Tokenizer::load(plain.path), k = Tokenizer::load(kept.path);
  auto ids = [](const Tokenizer& tok, const std::string& s) { return tok.encode(s, {.add_special_tokens = false}).ids; };
  // `if self.do_lower_case: outputs = outputs.lower()`; the special [MASK] is not lowered away.
  EXPECT_EQ(ids(t, "GDNTOP Class"), ids(t, "gdntop class"));
  EXPECT_NE(ids(k, "GDNTOP Class"), ids(k, "gdntop class"));
  EXPECT_EQ(ids(t, "GOOD [MASK]").back(), t.mask_id());
  // `unicodedata.normalize("NFKD", ...)` then dropping `unicodedata.combining(c)`: é reads as e,
  // the ligature ﬁ as fi, a Hangul syllable as its jamo; keep_accents leaves them.
  EXPECT_EQ(ids(t, "café ﬁ"), ids(t, "cafe fi"));
  EXPECT_NE(ids(k, "café"), ids(k, "cafe"));
  EXPECT_EQ(ids(t, "굳"), ids(t, "\xE1\x84\x80\xE1\x85\xAE\xE1\x86\xAE"));  // U+1100 U+116E U+11AE
  EXPECT_EQ(ids(k, "굳"), std::vector<int32_t>{2115});                        // ▁굳: golden 2116 - 1
  // `.replace("``", '"').replace("''", '"')`, with or without the other options.
  EXPECT_EQ(ids(t, "``굳''"), ids(t, "\"굳\""));
  EXPECT_EQ(ids(k, "``굳''"), ids(k, "\"굳\""));
  // `" ".join(inputs.strip().split())`.
  EXPECT_EQ(ids(t, " \t굳\n   ㅋ "), ids(t, "굳 ㅋ"));

  // _tokenize: a piece ending in a digit and "," is re-encoded without it (and without "▁"s),
  // the "▁" the re-encoding adds is dropped when the piece had none, then "," follows. The test
  // model has no such piece: "▁10," and "10," are added (score 0, preferred to its own).
  std::string bytes = io::read_file(xlmr_model_file());
  for (const std::string piece : {"▁10,", "10,"}) {  // ModelProto.pieces += {piece, score 0}
    std::string entry(1, '\x0A');  // field 1 (piece), then field 2 (score, a float)
    entry += static_cast<char>(piece.size());
    entry += piece;
    entry += '\x15';
    entry.append(4, '\0');
    bytes += '\x0A';  // ModelProto field 1 (pieces)
    bytes += static_cast<char>(entry.size());
    bytes += entry;
  }
  AlbertDir commas("spiece_commas", R"({"do_lower_case": false, "keep_accents": true})");
  commas.file("spiece.model", bytes);
  XlmrDir plain_xlmr("spiece_commas_xlmr");
  plain_xlmr.file("sentencepiece.bpe.model", bytes);
  const Tokenizer a = Tokenizer::load(commas.path), x = Tokenizer::load(plain_xlmr.path);
  // SentencePiece itself gives the pieces (as XLMRobertaTokenizer, which does not split them).
  EXPECT_EQ(x.tokenize("10,"), std::vector<std::string>{"▁10,"});
  EXPECT_EQ(x.tokenize("a10,"), (std::vector<std::string>{"▁a", "10,"}));
  auto id = [&](const std::string& piece) {
    const int32_t i = a.token_to_id(piece);
    return i < 0 ? a.unk_id() : i;
  };
  // "▁10," -> EncodeAsPieces("10") = ▁10, then ",".
  EXPECT_EQ(ids(a, "10,"), (std::vector<int32_t>{id("▁10"), id(",")}));
  // "10," (no "▁") -> ▁10 loses its "▁": 10, then ",".
  EXPECT_EQ(ids(a, "a10,"), (std::vector<int32_t>{id("▁a"), id("10"), id(",")}));
  EXPECT_EQ(a.tokenize("a10,"), (std::vector<std::string>{"▁a", "10", ","}));
}
