// Vocabulary training: tokenizers' BPE/WordPiece trainer semantics on small
// cases worked out from its source, then the whole `vocab train` path.
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>
#include <zlib.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "text/tokenizer.h"
#include "text/vocab_trainer.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace bertune;
using text::TrainedVocab;
using text::VocabTrainerOptions;
using text::WordCounts;

namespace {

fs::path fresh_dir(const std::string& name) {
  fs::path d = fs::temp_directory_path() / ("bertune_vocab_test_" + name);
  fs::remove_all(d);
  fs::create_directories(d);
  return d;
}

// A small mixed Korean / English corpus, one document per line.
std::string small_corpus() {
  std::string text;
  const char* lines[] = {
      "이 영화 정말 재밌어요! 배우들 연기가 최고.",
      "재미없어요... 시간 낭비였다 ㅠㅠ",
      "This movie was great, really great acting.",
      "정말 최고의 영화, 다시 보고 싶다",
      "배우들 연기 최고 ㅋㅋㅋ 강추합니다",
      "the acting was not great but the movie was fun",
      "스토리가 너무 뻔해서 재미없음",
      "영화관에서 봤는데 정말 감동적이었어요 2번 봤음",
  };
  for (int rep = 0; rep < 3; ++rep)
    for (const char* l : lines) text += std::string(l) + "\n";
  return text;
}

VocabTrainerOptions plain_bpe(uint64_t min_frequency) {
  VocabTrainerOptions o;
  o.vocab_size = 30000;
  o.min_frequency = min_frequency;
  o.limit_alphabet = 0;
  o.special_tokens = {};
  o.continuing_prefix = "";
  return o;
}

}  // namespace

// tokenizers' own unit test of BpeTrainer (bpe/trainer.rs, test_train): no
// specials, no prefix, min_frequency 2. Its expected vocabulary: the sorted
// characters, then 're' (count 3), then 'are' and 'is' (both 2: the smaller
// id pair (a, re) = (8, 22) wins over (i, s) = (13, 18)).
TEST(VocabTrainer, MatchesTokenizersBpeTrainerTest) {
  WordCounts counts = {{"roses", 1}, {"are", 2},  {"red", 1}, {"voilets", 1},
                       {"blue", 1},  {"BERT", 1}, {"is", 2},  {"big", 1},
                       {"and", 1},   {"so", 1},   {"GPT-2", 1}};
  TrainedVocab v = text::train_wordpiece(counts, plain_bpe(2));
  std::vector<std::string> expected = {"-", "2", "B", "E", "G", "P", "R", "T", "a",
                                       "b", "d", "e", "g", "i", "l", "n", "o", "r",
                                       "s", "t", "u", "v", "re", "are", "is"};
  EXPECT_EQ(v.tokens, expected);
  EXPECT_EQ(v.merges, 3u);
}

// The WordPiece form of the same algorithm, worked by hand from tokenizers'
// trainer (pair counts weighted by word counts, ties to the smaller id pair,
// the "##" of the right part dropped when merging):
//   hug×10 pug×5 pun×12 bun×4 hugs×5
//   ids 0-4 specials, 5-11 b g h n p s u, 12-15 ##g ##n ##s ##u
//   (##u,##g)=20 → ##ug; (##u,##n)=16 → ##un; (h,##ug)=15 → hug;
//   (p,##un)=12 → pun; tie at 5: (p,##ug)=(9,16) < (hug,##s)=(18,14) → pug,
//   then hugs; bun (4) only when min_frequency allows it.
// tokenizers would give the same tokens; only its ids 12-15 (the "##" forms)
// follow its HashMap's order instead of code points.
TEST(VocabTrainer, WordPieceMergesInTokenizersOrder) {
  WordCounts counts = {{"hug", 10}, {"pug", 5}, {"pun", 12}, {"bun", 4}, {"hugs", 5}};
  VocabTrainerOptions o;
  o.min_frequency = 0;
  o.limit_alphabet = 0;
  TrainedVocab v = text::train_wordpiece(counts, o);
  std::vector<std::string> expected = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "b",
                                       "g",     "h",     "n",     "p",     "s",      "u",
                                       "##g",   "##n",   "##s",   "##u",   "##ug",   "##un",
                                       "hug",   "pun",   "pug",   "hugs",  "bun"};
  EXPECT_EQ(v.tokens, expected);
  EXPECT_EQ(v.continuation_forms, 4u);

  o.min_frequency = 5;  // bun's pair occurs 4 times: training stops before it
  v = text::train_wordpiece(counts, o);
  EXPECT_EQ(v.tokens.size(), expected.size() - 1);
  EXPECT_EQ(v.tokens.back(), "hugs");
  EXPECT_NE(v.stop_reason.find("min frequency"), std::string::npos) << v.stop_reason;

  o.min_frequency = 0;
  o.vocab_size = 21;  // vocab_size caps the merges
  v = text::train_wordpiece(counts, o);
  ASSERT_EQ(v.tokens.size(), 21u);
  EXPECT_EQ(v.tokens.back(), "pug");
}

// Word::merge in tokenizers merges left to right without overlap: "aaaaa"
// with (a, a) (ids 0, 0) becomes aa aa a, leaving (aa, aa) = (1, 1) and
// (aa, a) = (1, 0), both 3 times; the smaller pair (aa, a) wins → aa aaa,
// then (aa, aaa) → aaaaa. ("aaaa" would appear if merges overlapped or the
// tie went the other way.)
TEST(VocabTrainer, OverlappingPairsMergeLeftToRight) {
  TrainedVocab v = text::train_wordpiece({{"aaaaa", 3}}, plain_bpe(1));
  std::vector<std::string> expected = {"a", "aa", "aaa", "aaaaa"};
  EXPECT_EQ(v.tokens, expected);
}

TEST(VocabTrainer, LimitAlphabetKeepsMostFrequentCharacters) {
  // x: 10, y: 6 (+ its word), z: 1. Limit 2 drops z; the word "yz" keeps y.
  WordCounts counts = {{"x", 10}, {"y", 5}, {"yz", 1}};
  VocabTrainerOptions o = plain_bpe(1);
  o.limit_alphabet = 2;
  TrainedVocab v = text::train_wordpiece(counts, o);
  EXPECT_EQ(v.alphabet_size, 2u);
  EXPECT_EQ(v.alphabet_dropped, 1u);
  std::vector<std::string> expected = {"x", "y"};  // nothing left to merge
  EXPECT_EQ(v.tokens, expected);

  // Equal counts: the lower code point stays (our fixed order; tokenizers
  // leaves this to an unstable sort).
  v = text::train_wordpiece({{"b", 3}, {"a", 3}, {"c", 3}}, o);
  EXPECT_EQ(v.tokens, (std::vector<std::string>{"a", "b"}));
}

TEST(VocabTrainer, DroppedFirstCharacterStillMakesContinuations) {
  // z is cut; in "zy" the y is still not the word's first character, so it
  // is "##y" (tokenizers decides first/continuation on the original word).
  WordCounts counts = {{"zy", 1}, {"y", 9}, {"x", 9}};
  VocabTrainerOptions o;
  o.limit_alphabet = 2;
  o.min_frequency = 100;
  TrainedVocab v = text::train_wordpiece(counts, o);
  std::vector<std::string> expected = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                       "x",     "y",     "##y"};
  EXPECT_EQ(v.tokens, expected);
}

TEST(VocabTrainer, VocabSizeBelowInitialVocabularyIsAnError) {
  WordCounts counts = {{"hug", 10}, {"pug", 5}};
  VocabTrainerOptions o;  // 5 specials + h p u g + ##u ##g = 11
  o.vocab_size = 10;
  try {
    text::train_wordpiece(counts, o);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    std::string m = e.what();
    EXPECT_NE(m.find("--vocab-size 10"), std::string::npos) << m;
    EXPECT_NE(m.find("11"), std::string::npos) << m;
  }
  o.vocab_size = 11;
  EXPECT_EQ(text::train_wordpiece(counts, o).tokens.size(), 11u);
}

TEST(VocabTrainer, CountingDoesNotDependOnThreads) {
  std::string corpus = small_corpus();
  text::BasicTokenizer basic;
  text::WordSplitter split = [&](std::string_view line, std::vector<std::string>& out) {
    for (auto& w : basic.split(line)) out.push_back(std::move(w));
  };
  WordCounts one = text::count_words(corpus, split, 1);
  EXPECT_EQ(one.at("최고"), 2u * 3);  // "최고." and "최고 ㅋㅋㅋ"; "최고의" is another word
  EXPECT_EQ(one.at("."), 5u * 3);
  for (int t : {2, 3, 7}) EXPECT_EQ(text::count_words(corpus, split, t), one) << t << " threads";
}

TEST(VocabTrain, RoundTripThroughFiles) {
  fs::path dir = fresh_dir("roundtrip");
  fs::path corpus = dir / "corpus.txt";
  io::write_file_atomic(corpus, small_corpus());
  VocabTrainerOptions o;
  o.vocab_size = 150;
  o.min_frequency = 1;
  o.limit_alphabet = 0;
  TrainedVocab v = text::train_vocab_files({corpus}, o, false, 2, dir / "out");
  ASSERT_EQ(v.tokens.size(), 150u);
  ASSERT_TRUE(fs::exists(dir / "out" / "vocab.txt"));
  ASSERT_TRUE(fs::exists(dir / "out" / "tokenizer_config.json"));
  // tokenizer.json's WordPiece vocab is vocab.txt, id for id.
  auto tj = nlohmann::json::parse(io::read_file(dir / "out" / "tokenizer.json"));
  ASSERT_EQ(tj["model"]["vocab"].size(), v.tokens.size());
  for (size_t i = 0; i < v.tokens.size(); ++i) EXPECT_EQ(tj["model"]["vocab"][v.tokens[i]], i);
  EXPECT_EQ(tj["normalizer"]["lowercase"], false);
  text::Tokenizer from_json = text::Tokenizer::load(dir / "out" / "tokenizer.json");
  EXPECT_EQ(from_json.vocab_size(), 150u);

  text::Tokenizer tok = text::Tokenizer::load(dir / "out");
  EXPECT_EQ(tok.vocab_size(), 150u);
  const char* specials[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
  for (int i = 0; i < 5; ++i) EXPECT_EQ(tok.id_to_token(i), specials[i]);
  EXPECT_EQ(tok.unk_id(), 1);
  EXPECT_EQ(tok.cls_id(), 2);
  EXPECT_EQ(tok.sep_id(), 3);

  // Every character is in the alphabet, so nothing in the corpus is [UNK].
  std::string text = small_corpus();
  size_t pos = 0, pieces = 0;
  while (pos < text.size()) {
    size_t nl = text.find('\n', pos);
    text::Encoding e = tok.encode(std::string_view(text).substr(pos, nl - pos));
    for (int32_t id : e.ids) EXPECT_NE(id, tok.unk_id());
    EXPECT_EQ(from_json.encode(std::string_view(text).substr(pos, nl - pos)).ids, e.ids);
    pieces += e.ids.size();
    pos = nl + 1;
  }
  EXPECT_GT(pieces, 0u);

  // Same bytes on another run, with another thread count, and from gzip.
  fs::path gz = dir / "corpus.txt.gz";
  gzFile f = gzopen(gz.c_str(), "wb");
  ASSERT_TRUE(f);
  std::string c = small_corpus();
  ASSERT_EQ(gzwrite(f, c.data(), static_cast<unsigned>(c.size())), static_cast<int>(c.size()));
  gzclose(f);
  text::train_vocab_files({corpus}, o, false, 1, dir / "again");
  text::train_vocab_files({gz}, o, false, 3, dir / "gz");
  std::string first = io::read_file(dir / "out" / "vocab.txt");
  EXPECT_EQ(io::read_file(dir / "again" / "vocab.txt"), first);
  EXPECT_EQ(io::read_file(dir / "gz" / "vocab.txt"), first);
  fs::remove_all(dir);
}

TEST(VocabTrain, LimitAlphabetMakesRareCharactersUnknown) {
  fs::path dir = fresh_dir("limit");
  fs::path corpus = dir / "corpus.txt";
  io::write_file_atomic(corpus, small_corpus() + "뷁\n");  // one rare syllable
  VocabTrainerOptions o;
  o.vocab_size = 200;
  o.min_frequency = 1;
  o.limit_alphabet = 0;
  TrainedVocab all = text::train_vocab_files({corpus}, o, false, 2, dir / "all");
  o.limit_alphabet = all.alphabet_size - 1;
  TrainedVocab cut = text::train_vocab_files({corpus}, o, false, 2, dir / "cut");
  EXPECT_EQ(cut.alphabet_dropped, 1u);
  text::Tokenizer with = text::Tokenizer::load(dir / "all");
  text::Tokenizer without = text::Tokenizer::load(dir / "cut");
  EXPECT_GE(with.token_to_id("뷁"), 0);
  EXPECT_EQ(without.token_to_id("뷁"), -1);
  EXPECT_EQ(without.tokenize("뷁"), std::vector<std::string>{"[UNK]"});
  fs::remove_all(dir);
}

TEST(VocabTrain, MinFrequencyStopsMerging) {
  fs::path dir = fresh_dir("minfreq");
  fs::path corpus = dir / "corpus.txt";
  io::write_file_atomic(corpus, small_corpus());
  VocabTrainerOptions o;
  o.vocab_size = 5000;
  o.limit_alphabet = 0;
  o.min_frequency = 1;
  TrainedVocab low = text::train_vocab_files({corpus}, o, false, 2, dir / "low");
  o.min_frequency = 7;  // each line is there 3 times: pairs of one or two lines stop
  TrainedVocab high = text::train_vocab_files({corpus}, o, false, 2, dir / "high");
  EXPECT_LT(high.tokens.size(), low.tokens.size());
  EXPECT_LT(high.tokens.size(), 5000u);
  EXPECT_NE(high.stop_reason.find("min frequency"), std::string::npos);
  EXPECT_EQ(low.tokens.size() - low.merges, high.tokens.size() - high.merges)
      << "same initial vocabulary";
  fs::remove_all(dir);
}

TEST(VocabTrain, BadArgumentsWriteNothing) {
  fs::path dir = fresh_dir("bad");
  VocabTrainerOptions o;
  try {
    text::train_vocab_files({dir / "missing.txt"}, o, false, 2, dir / "out");
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("missing.txt"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(dir / "out"));

  io::write_file_atomic(dir / "corpus.txt", small_corpus());
  o.vocab_size = 20;  // far below the alphabet
  EXPECT_THROW(text::train_vocab_files({dir / "corpus.txt"}, o, false, 2, dir / "out"), Error);
  EXPECT_FALSE(fs::exists(dir / "out"));

  // Through the CLI: exit status 1 and a message naming the file.
  std::string cmd = std::string(BERTUNE_BINARY) + " vocab train --corpus " +
                    (dir / "nope.txt").string() + " --output " + (dir / "cli").string() + " 2> " +
                    (dir / "err.txt").string();
  int rc = std::system(cmd.c_str());
  EXPECT_TRUE(WIFEXITED(rc) && WEXITSTATUS(rc) == 1) << rc;
  EXPECT_NE(io::read_file(dir / "err.txt").find("nope.txt"), std::string::npos);
  EXPECT_FALSE(fs::exists(dir / "cli"));
  fs::remove_all(dir);
}

// [UNK] rate = [UNK] pieces / all pieces without [CLS]/[SEP]; a word with an
// unknown character is one [UNK] (WordPiece gives up on the whole word).
TEST(VocabEval, CoverageCountsPiecesBetweenSpecials) {
  std::vector<std::string> vocab = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]",
                                    "영화", "##가", "좋", "##다", "!"};
  text::Tokenizer tok = text::Tokenizer::from_vocab(vocab, {});
  std::vector<std::string> docs = {"영화가 좋다!", "영화 뷁다", ""};
  // doc 1: 영화 ##가 좋 ##다 ! (5); doc 2: 영화 [UNK] (2); doc 3: nothing.
  text::CoverageStats st = text::measure_coverage(tok, docs, 2);
  EXPECT_EQ(st.documents, 3u);
  EXPECT_EQ(st.tokens, 7u);
  EXPECT_EQ(st.unk_tokens, 1u);
  EXPECT_EQ(st.docs_with_unk, 1u);
  EXPECT_DOUBLE_EQ(st.unk_rate(), 1.0 / 7);
  EXPECT_DOUBLE_EQ(st.mean_tokens_per_doc(), (7.0 + 2 * 3) / 3);
}
