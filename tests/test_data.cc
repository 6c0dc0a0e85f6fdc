#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <map>
#include <set>
#include <string>
#include <sys/wait.h>

#include "data/dataset.h"
#include "data/download.h"
#include "data/numpy_random.h"
#include "data/sha256.h"
#include "data/stats.h"
#include "io/atomic_file.h"
#include "io/json_error.h"
#include "model/config.h"
#include "text/vocab_trainer.h"
#include "util/error.h"
#include "util/paths.h"
#include "run_cli.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace bertune;
using namespace bertune::data;

namespace {

fs::path fixture(const std::string& name) {
  return fs::path(BERTUNE_SOURCE_DIR) / "tests" / "fixtures" / "data" / name;
}

// The error read_dataset throws for a file, or "" when it reads cleanly.
std::string read_error(const fs::path& path, ReadOptions options = {}) {
  try {
    read_dataset(path, options);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

std::string lines_of(const Dataset& d) {
  std::string s;
  for (const BadRow& b : d.skipped) s += std::to_string(b.line) + " ";
  return s;
}

std::string texts_of(const Dataset& d) {
  std::string s;
  for (const Example& e : d.examples) s += "[" + e.text + "]";
  return s;
}

ReadOptions skipping(ReadOptions o = {}) {
  o.skip_bad_rows = true;
  return o;
}

}  // namespace

// ---------------------------------------------------------------- formats

TEST(DataTsv, KeepsLiteralQuotesAndEmptyDocuments) {
  Dataset d = read_dataset(fixture("good.tsv"));
  ASSERT_EQ(d.size(), 5u);
  // csv.QUOTE_NONE: quotes are text, commas are text.
  EXPECT_EQ(d.examples[1].text, "\"\"\"영화 최고\"\"\"");
  EXPECT_EQ(d.examples[2].text, "");
  EXPECT_EQ(d.examples[3].text, "\"따옴표, 쉼표\"");
  EXPECT_EQ(d.examples[4].text, "😀 emoji ok");
  EXPECT_EQ(d.examples[0].label, 1);
  EXPECT_EQ(d.examples[2].label, 0);
  EXPECT_EQ(d.examples[0].line, 2);
  EXPECT_EQ(d.examples[4].line, 6);
  EXPECT_TRUE(d.skipped.empty());
}

TEST(DataTsv, DropsBomAndCrlf) {
  Dataset d = read_dataset(fixture("bom_crlf.tsv"));
  ASSERT_EQ(d.size(), 2u);  // the BOM would otherwise hide the 'id' column; CR would spoil the label
  EXPECT_EQ(d.examples[0].text, "첫째");
  EXPECT_EQ(d.examples[1].text, "둘째 \"q\"");
  EXPECT_EQ(d.examples[1].label, 1);
}

TEST(DataTsv, UnlabelledModeAndSingleColumnBlankLines) {
  ReadOptions o;
  o.label_column = "";
  Dataset d = read_dataset(fixture("unlabelled.tsv"), o);
  ASSERT_EQ(d.size(), 3u);  // single column: the blank line is an empty document
  EXPECT_EQ(texts_of(d), "[first][][third \"q\"]");
  for (const Example& e : d.examples) EXPECT_EQ(e.label, -1);
  // A labelled file read without labels ignores the label column.
  Dataset g = read_dataset(fixture("good.tsv"), o);
  ASSERT_EQ(g.size(), 5u);
  EXPECT_EQ(g.examples[0].label, -1);
}

TEST(DataTsv, ColumnsByHeaderName) {
  ReadOptions o;
  o.text_column = "id";  // any column can be the text
  Dataset d = read_dataset(fixture("good.tsv"), o);
  EXPECT_EQ(texts_of(d), "[1][2][3][4][5]");
}

TEST(DataCsv, Rfc4180QuotingAsPythonCsvReadsIt) {
  // Expected values are what Python's csv.reader gives for this file.
  Dataset d = read_dataset(fixture("good.csv"));
  ASSERT_EQ(d.size(), 7u);
  EXPECT_EQ(d.examples[0].text, "plain");
  EXPECT_EQ(d.examples[1].text, "comma, inside");
  EXPECT_EQ(d.examples[2].text, "doubled \"quote\"");
  EXPECT_EQ(d.examples[3].text, "two\nlines");
  EXPECT_EQ(d.examples[4].text, "");
  EXPECT_EQ(d.examples[5].text, "crlf\r\ninside");
  EXPECT_EQ(d.examples[6].text, "last no newline");
  EXPECT_EQ(d.examples[6].label, 0);
  // Line numbers: a record's first line.
  EXPECT_EQ(d.examples[3].line, 5);
  EXPECT_EQ(d.examples[4].line, 7);
  EXPECT_EQ(d.examples[5].line, 8);
  EXPECT_EQ(d.examples[6].line, 10);
}

TEST(DataJsonl, ObjectsWithIntegerOrStringLabels) {
  ReadOptions o;
  o.text_column = "text";
  Dataset d = read_dataset(fixture("good.jsonl"), o);
  ASSERT_EQ(d.size(), 3u);  // blank and whitespace-only lines are not rows
  EXPECT_EQ(d.examples[0].text, "첫 문장");
  EXPECT_EQ(d.examples[1].text, "\"quoted\" and \xC3\xA9");
  EXPECT_EQ(d.examples[1].label, 1);
  EXPECT_EQ(d.examples[2].text, "");
  EXPECT_EQ(d.examples[2].line, 5);
}

TEST(DataFormat, ChosenByExtensionOrOption) {
  EXPECT_EQ(resolve_format("a/b.csv", Format::Auto), Format::Csv);
  EXPECT_EQ(resolve_format("a/b.JSONL", Format::Auto), Format::Jsonl);
  EXPECT_EQ(resolve_format("ratings_train.txt", Format::Auto), Format::Tsv);
  EXPECT_EQ(resolve_format("x.csv", Format::Tsv), Format::Tsv);
  EXPECT_EQ(parse_format("jsonl"), Format::Jsonl);
  EXPECT_THROW(parse_format("xml"), Error);
  // A CSV read as TSV finds a single column named "id,document,label".
  ReadOptions o;
  o.format = Format::Tsv;
  EXPECT_NE(read_error(fixture("good.csv"), o).find("no column 'document'"), std::string::npos);
}

// ---------------------------------------------------------------- bad input

struct BadCase {
  const char* file;
  int64_t line;         // first bad line
  const char* problem;  // part of the message
  size_t kept;          // rows kept with skip_bad_rows
  const char* skipped;  // lines skipped
};

class DataBadRows : public ::testing::TestWithParam<BadCase> {};

TEST_P(DataBadRows, StopsWithFileAndLineOrSkipsAndCounts) {
  const BadCase& c = GetParam();
  ReadOptions o;
  if (std::string(c.file).ends_with(".jsonl")) o.text_column = "text";
  std::string err = read_error(fixture(c.file), o);
  std::string where = fixture(c.file).string() + ":" + std::to_string(c.line) + ": ";
  EXPECT_EQ(err.rfind(where, 0), 0u) << err;
  EXPECT_NE(err.find(c.problem), std::string::npos) << err;

  Dataset d = read_dataset(fixture(c.file), skipping(o));
  EXPECT_EQ(d.size(), c.kept);
  EXPECT_EQ(lines_of(d), c.skipped);
  EXPECT_NE(describe_skipped(d).find("line " + std::to_string(c.line) + ": "), std::string::npos);
}

INSTANTIATE_TEST_SUITE_P(
    Data, DataBadRows,
    ::testing::Values(
        BadCase{"bad_fields.tsv", 3, "expected 3 tab-separated fields, found 4", 2, "3 "},
        BadCase{"bad_label.tsv", 3, "label 'positive' in column 'label' is not an integer", 2, "3 "},
        BadCase{"label_range.tsv", 3, "label 2 outside [0, 2)", 2, "3 5 "},
        BadCase{"bad_utf8.tsv", 3, "invalid UTF-8 in column 'document' at byte 4", 2, "3 5 "},
        BadCase{"unterminated.csv", 3, "unterminated quoted field (opened on line 3", 1, "3 "},
        BadCase{"text_after_quote.csv", 3, "unexpected text after the closing quote", 2, "3 "},
        BadCase{"bad_json.jsonl", 2, "bad JSON", 2, "2 4 5 6 7 "}),
    [](const auto& info) {
      std::string n = info.param.file;
      for (char& ch : n)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return n;
    });

TEST(DataPairs, SecondTextFromItsColumnInEveryFormat) {
  ReadOptions o;
  o.text_column = "premise";
  o.text_pair_column = "hypothesis";
  const std::pair<const char*, std::string> files[] = {
      {"nli.tsv", "premise\thypothesis\tlabel\n비가 온다\t날씨가 맑다\t2\n영화가 길다\t영화가 짧지 않다\t0\n"},
      {"nli.csv", "premise,hypothesis,label\n비가 온다,날씨가 맑다,2\n영화가 길다,\"영화가 짧지, 않다\",0\n"},
      {"nli.jsonl", "{\"premise\": \"비가 온다\", \"hypothesis\": \"날씨가 맑다\", \"label\": 2}\n"
                    "{\"premise\": \"영화가 길다\", \"hypothesis\": \"영화가 짧지 않다\", \"label\": 0}\n"}};
  o.num_labels = 3;
  for (const auto& [name, contents] : files) {
    Dataset d = parse_dataset(contents, name, o);
    ASSERT_EQ(d.size(), 2u) << name;
    EXPECT_EQ(d.examples[0].text, "비가 온다") << name;
    EXPECT_EQ(d.examples[0].text_pair, "날씨가 맑다") << name;
    EXPECT_EQ(d.examples[0].label, 2) << name;
    EXPECT_EQ(d.examples[1].text_pair.rfind("영화가 짧지", 0), 0u) << name;
  }
  o.text_pair_column.clear();  // the same file read as single texts
  EXPECT_EQ(parse_dataset(files[0].second, "nli.tsv", o).examples[0].text_pair, "");
}

TEST(DataPairs, EmptyOrMissingPairIsAnErrorNamingFileAndLine) {
  ReadOptions o;
  o.text_column = "premise";
  o.text_pair_column = "hypothesis";
  o.label_column = "";
  auto error = [&](const std::string& contents, const std::string& name) {
    try {
      parse_dataset(contents, name, o);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string();
  };
  EXPECT_EQ(error("premise\thypothesis\na\tb\nc\t\n", "p.tsv"), "p.tsv:3: empty text pair in column 'hypothesis'");
  EXPECT_EQ(error("premise,hypothesis\na,b\n\"c\",\"\"\n", "p.csv"), "p.csv:3: empty text pair in column 'hypothesis'");
  EXPECT_EQ(error("{\"premise\": \"a\"}\n", "p.jsonl"), "p.jsonl:1: no key 'hypothesis'");
  EXPECT_EQ(error("{\"premise\": \"a\", \"hypothesis\": null}\n", "p.jsonl"),
            "p.jsonl:1: 'hypothesis' is null, not a string");
  EXPECT_EQ(error("{\"premise\": \"a\", \"hypothesis\": \"\"}\n", "p.jsonl"),
            "p.jsonl:1: empty text pair in column 'hypothesis'");
  EXPECT_EQ(error("premise\tlabel\na\t1\n", "p.tsv").rfind("p.tsv:1: no column 'hypothesis' in the header", 0), 0u);
  o.text_pair_column = "premise";  // a pair of a text with itself: a mistyped column, refused
  EXPECT_EQ(error("premise\thypothesis\na\tb\n", "p.tsv"),
            "p.tsv: the pair column 'premise' is the text column too; a sentence pair reads its second text from "
            "another column");
  o.text_pair_column = "hypothesis";
  o.skip_bad_rows = true;  // skipped and listed, the good rows kept with their own pairs
  Dataset d = parse_dataset("premise\thypothesis\na\tb\nc\t\ne\tf\n", "p.tsv", o);
  EXPECT_EQ(texts_of(d), "[a][e]");
  EXPECT_EQ(d.examples[1].text_pair, "f");
  EXPECT_EQ(lines_of(d), "3 ");
}

TEST(DataBadInput, JsonlProblemsNamed) {
  ReadOptions o = skipping();
  o.text_column = "text";
  Dataset d = read_dataset(fixture("bad_json.jsonl"), o);
  ASSERT_EQ(d.skipped.size(), 5u);
  EXPECT_NE(d.skipped[1].problem.find("expected a JSON object, found array"), std::string::npos);
  EXPECT_NE(d.skipped[2].problem.find("'text' is number, not a string"), std::string::npos);
  EXPECT_NE(d.skipped[3].problem.find("label 1.5 in key 'label' is not an integer"), std::string::npos);
  EXPECT_NE(d.skipped[4].problem.find("no key 'text'"), std::string::npos);
}

TEST(DataBadInput, JsonArrayIsNotJsonLines) {
  ReadOptions o = skipping();
  o.text_column = "text";
  std::string err = read_error(fixture("array.json"), o);
  EXPECT_NE(err.find("array.json:1: starts a JSON array; expected JSON Lines"), std::string::npos) << err;
}

TEST(DataBadInput, MissingColumnIsFatalEvenWhenSkipping) {
  std::string where = fixture("missing_column.tsv").string() + ":1: ";
  for (bool skip : {false, true}) {
    ReadOptions o;
    o.skip_bad_rows = skip;
    std::string err = read_error(fixture("missing_column.tsv"), o);
    EXPECT_EQ(err.rfind(where, 0), 0u) << err;
    EXPECT_NE(err.find("no column 'document' in the header (columns: 'id', 'text', 'label')"),
              std::string::npos)
        << err;
  }
  EXPECT_NE(read_error(fixture("does_not_exist.tsv")).find("cannot open"), std::string::npos);
}

TEST(DataUtf8, ValidatorRejectsEveryIllFormedKind) {
  EXPECT_EQ(find_invalid_utf8("plain ascii long enough for the fast path"), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("한국어 😀 é"), std::string_view::npos);
  EXPECT_EQ(find_invalid_utf8("\xF4\x8F\xBF\xBF"), std::string_view::npos);  // U+10FFFF
  EXPECT_EQ(find_invalid_utf8("ab\x80"), 2u);                                // lone continuation
  EXPECT_EQ(find_invalid_utf8("\xC0\xAF"), 0u);                              // overlong '/'
  EXPECT_EQ(find_invalid_utf8("\xE0\x80\xAF"), 0u);                          // overlong
  EXPECT_EQ(find_invalid_utf8("\xED\xA0\x80"), 0u);                          // surrogate D800
  EXPECT_EQ(find_invalid_utf8("\xF4\x90\x80\x80"), 0u);                      // > U+10FFFF
  EXPECT_EQ(find_invalid_utf8("12345678\xEA\xB0"), 8u);                      // truncated at end
  EXPECT_EQ(find_invalid_utf8("\xFF"), 0u);
  EXPECT_EQ(count_code_points("한국어 😀"), 5u);
}

// ---------------------------------------------------------------- NSMC itself

TEST(DataNsmc, TrainSplitAsHuggingFaceLoadsIt) {
  auto t0 = std::chrono::steady_clock::now();
  Dataset d = read_dataset(nsmc_path("train"));
  double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
  ASSERT_EQ(d.size(), 150000u);
  size_t neg = 0, pos = 0, empty = 0, quoted = 0;
  for (const Example& e : d.examples) {
    (e.label == 0 ? neg : pos)++;
    empty += e.text.empty();
    quoted += e.text.find('"') != std::string::npos;
  }
  EXPECT_EQ(neg, 75173u);
  EXPECT_EQ(pos, 74827u);
  EXPECT_EQ(empty, 5u);
  EXPECT_EQ(quoted, 623u);  // README: 623 documents hold literal double quotes
  EXPECT_EQ(d.examples[0].text, "아 더빙.. 진짜 짜증나네요 목소리");
  EXPECT_EQ(d.examples[0].label, 0);
  EXPECT_EQ(d.examples[0].line, 2);
  EXPECT_EQ(d.examples.back().line, 150001);
  std::printf("[ info ] read NSMC train in %.1f ms (not a benchmark)\n", ms);
}

TEST(DataNsmc, TestSplitAsHuggingFaceLoadsIt) {
  Dataset d = read_dataset(nsmc_path("test"));
  ASSERT_EQ(d.size(), 50000u);
  size_t neg = 0, pos = 0, empty = 0;
  for (const Example& e : d.examples) {
    (e.label == 0 ? neg : pos)++;
    empty += e.text.empty();
  }
  EXPECT_EQ(neg, 24827u);
  EXPECT_EQ(pos, 25173u);
  EXPECT_EQ(empty, 3u);
}

TEST(DataNsmc, UnknownSplitNamed) {
  EXPECT_THROW(nsmc_path("validation"), Error);
}

// ---------------------------------------------------------------- subsets

namespace {
nlohmann::json permutations_fixture() {
  std::ifstream in(fixture("permutations.json"));
  return nlohmann::json::parse(in);
}

std::string u128_decimal(unsigned __int128 v) {
  std::string s;
  do {
    s.insert(s.begin(), static_cast<char>('0' + static_cast<int>(v % 10)));
    v /= 10;
  } while (v);
  return s;
}
}  // namespace

TEST(DataNumpyRandom, Pcg64SeedingAndRawStreamMatchNumpy) {
  nlohmann::json fx = permutations_fixture();
  ASSERT_FALSE(fx["raw"].empty());
  for (const auto& r : fx["raw"]) {
    uint64_t seed = r["seed"].get<uint64_t>();
    Pcg64 rng(seed);
    EXPECT_EQ(u128_decimal(rng.state()), r["state"].get<std::string>()) << "seed " << seed;
    EXPECT_EQ(u128_decimal(rng.increment()), r["inc"].get<std::string>()) << "seed " << seed;
    for (const auto& v : r["random_raw"])
      EXPECT_EQ(std::to_string(rng.next_uint64()), v.get<std::string>()) << "seed " << seed;
  }
}

TEST(DataNumpyRandom, PermutationMatchesNumpyDefaultRng) {
  nlohmann::json fx = permutations_fixture();
  ASSERT_GE(fx["cases"].size(), 10u);
  for (const auto& c : fx["cases"]) {
    size_t n = c["n"].get<size_t>();
    uint64_t seed = c["seed"].get<uint64_t>();
    std::vector<size_t> perm = shuffled_indices(n, seed);
    ASSERT_EQ(perm.size(), n);
    std::vector<size_t> first(perm.begin(), perm.begin() + std::min<size_t>(n, 20));
    std::vector<size_t> last(perm.end() - std::min<size_t>(n, 5), perm.end());
    EXPECT_EQ(first, c["first"].get<std::vector<size_t>>()) << "n=" << n << " seed=" << seed;
    EXPECT_EQ(last, c["last"].get<std::vector<size_t>>()) << "n=" << n << " seed=" << seed;
    uint64_t sum = 0;  // sum of (position + 1) * (index + 1) mod 2^64, as the generator script
    for (size_t i = 0; i < n; ++i) sum += static_cast<uint64_t>(i + 1) * static_cast<uint64_t>(perm[i] + 1);
    EXPECT_EQ(sum, c["checksum"].get<uint64_t>()) << "n=" << n << " seed=" << seed;
  }
}

TEST(DataNumpyRandom, Next32BuffersTheHighHalf) {
  Pcg64 a(7), b(7);
  uint64_t whole = a.next_uint64();
  EXPECT_EQ(b.next_uint32(), static_cast<uint32_t>(whole));
  EXPECT_EQ(b.next_uint32(), static_cast<uint32_t>(whole >> 32));
  EXPECT_EQ(b.next_uint32(), static_cast<uint32_t>(a.next_uint64()));
}

TEST(DataSubset, ShuffleSelectTakesThePermutationPrefix) {
  Dataset d = read_dataset(fixture("good.csv"));
  Dataset s = shuffle_select(d, 42, 3);
  ASSERT_EQ(s.size(), 3u);
  std::vector<size_t> order = shuffled_indices(d.size(), 42);
  for (size_t i = 0; i < 3; ++i) EXPECT_EQ(s.examples[i].line, d.examples[order[i]].line);
  // Same seed, same rows; n past the end (or negative) keeps everything, shuffled.
  EXPECT_EQ(texts_of(shuffle_select(d, 42, 3)), texts_of(s));
  Dataset all = shuffle_select(d, 42, -1);
  EXPECT_EQ(all.size(), d.size());
  EXPECT_EQ(texts_of(shuffle_select(d, 42, 100)), texts_of(all));
  EXPECT_NE(texts_of(shuffle_select(d, 43, -1)), texts_of(all));
  std::set<int64_t> lines;
  for (const Example& e : all.examples) lines.insert(e.line);
  EXPECT_EQ(lines.size(), d.size());
}

TEST(DataSubset, NsmcSeed42PicksTheNotebooksRows) {
  // np.random.default_rng(42).permutation(150000) starts 149993, 68942, ...
  // (permutations.json), so train.shuffle(seed=42).select(range(2)) holds
  // the documents on file lines 149995 and 68944.
  Dataset d = read_dataset(nsmc_path("train"));
  Dataset s = shuffle_select(d, 42, 2);
  ASSERT_EQ(s.size(), 2u);
  EXPECT_EQ(s.examples[0].line, 149993 + 2);
  EXPECT_EQ(s.examples[1].line, 68942 + 2);
}

// ---------------------------------------------------------------- stats

TEST(DataStats, NsmcFiguresMatchNumpy) {
  std::ifstream in(fixture("nsmc_stats.json"));
  nlohmann::json ref = nlohmann::json::parse(in);
  struct Case {
    const char* key;
    Dataset d;
  };
  Dataset train = read_dataset(nsmc_path("train"));
  Case cases[] = {{"train", train},
                  {"test", read_dataset(nsmc_path("test"))},
                  {"train_seed42_1000", shuffle_select(train, 42, 1000)}};
  for (const Case& c : cases) {
    const nlohmann::json& r = ref[c.key];
    DatasetStats s = compute_stats(c.d);
    nlohmann::json j = stats_to_json(s);
    EXPECT_EQ(j["rows"], r["rows"]) << c.key;
    EXPECT_EQ(j["label_counts"], r["label_counts"]) << c.key;
    EXPECT_EQ(j["empty_documents"], r["empty_documents"]) << c.key;
    for (const char* f : {"min", "p50", "p90", "p95", "p99", "max", "mean"})
      EXPECT_NEAR(j["length_chars"][f].get<double>(), r["length_chars"][f].get<double>(), 1e-9) << c.key << " " << f;
    EXPECT_FALSE(s.tokens.has_value());
  }
}

TEST(DataStats, PercentileInterpolatesLikeNumpy) {
  // np.percentile([1, 2, 3, 4, 10], [50, 90, 95, 99]) = 3, 7.6, 8.8, 9.76
  std::vector<int64_t> v = {1, 2, 3, 4, 10};
  EXPECT_DOUBLE_EQ(percentile(v, 50), 3.0);
  EXPECT_NEAR(percentile(v, 90), 7.6, 1e-12);
  EXPECT_NEAR(percentile(v, 95), 8.8, 1e-12);
  EXPECT_NEAR(percentile(v, 99), 9.76, 1e-12);
  DatasetStats s = compute_stats(read_dataset(fixture("good.tsv")), {5, 9, 2, 130, 129}, 128);
  ASSERT_TRUE(s.tokens.has_value());
  EXPECT_EQ(s.over_token_limit, 2u);
  EXPECT_EQ(s.tokens->max, 130);
  EXPECT_EQ(s.chars.max, 11);  // """영화 최고""": 11 code points, 17 bytes
  EXPECT_EQ(s.chars.min, 0);
  EXPECT_EQ(count_code_points("😀 emoji ok"), 10u);
  EXPECT_THROW(compute_stats(read_dataset(fixture("good.tsv")), {1, 2}), Error);
}

// ---------------------------------------------------------------- SHA-256

TEST(DataSha256, KnownVectors) {
  // FIPS 180-4 / NIST CSRC examples.
  EXPECT_EQ(sha256_hex(""), "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");
  Sha256 million;
  std::string chunk(997, 'a');  // odd chunks cross block boundaries
  size_t left = 1000000;
  while (left) {
    size_t n = std::min(left, chunk.size());
    million.update(chunk.data(), n);
    left -= n;
  }
  EXPECT_EQ(million.hex_digest(), "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0");
  // 55/56/64 bytes: the padding edge cases.
  EXPECT_EQ(sha256_hex(std::string(55, 'a')), "9f4390f8d30c2dd92ec9f095b65e2b9ae9b0a925a5258e241c9f1e910f734318");
  EXPECT_EQ(sha256_hex(std::string(56, 'a')), "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a");
  EXPECT_EQ(sha256_hex(std::string(64, 'a')), "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb");
}

TEST(DataSha256, NsmcFilesMatchPublishedDigests) {
  // The digests built into `bertune download nsmc` are the ones in SHA256SUMS,
  // and hashing the real files gives them.
  std::ifstream sums(shared_path("data/nsmc/SHA256SUMS"));
  std::map<std::string, std::string> published;
  std::string digest, name;
  while (sums >> digest >> name) published[name] = digest;
  ASSERT_EQ(nsmc_files().size(), 2u);
  for (const RemoteFile& f : nsmc_files()) {
    EXPECT_EQ(published[f.name], f.sha256) << f.name;
    EXPECT_EQ(sha256_file(shared_path("data/nsmc/" + f.name)), f.sha256) << f.name;
  }
}

// ---------------------------------------------------------------- download

namespace {
void write_text(const fs::path& p, const std::string& s) {
  fs::create_directories(p.parent_path());
  std::ofstream(p, std::ios::binary) << s;
}

std::string read_text(const fs::path& p) { return io::read_file(p); }

size_t entries(const fs::path& dir) {
  return static_cast<size_t>(std::distance(fs::directory_iterator(dir), fs::directory_iterator{}));
}

std::string download_error(const std::vector<RemoteFile>& files, const DownloadOptions& o) {
  try {
    download_verified(files, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(DataDownload, FetchesVerifiesAndThenLeavesAlone) {
  TempDir tmp("download_ok");
  write_text(tmp.path / "mirror" / "a.txt", "hello\n");
  std::vector<RemoteFile> files = {{"a.txt", sha256_hex("hello\n")}};
  DownloadOptions o;
  o.url_base = "file://" + (tmp.path / "mirror").string() + "/";
  o.target_dir = tmp.path / "cache";
  auto got = download_verified(files, o);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].status, FileStatus::Downloaded);
  EXPECT_EQ(read_text(tmp.path / "cache" / "a.txt"), "hello\n");
  EXPECT_EQ(entries(tmp.path / "cache"), 1u);  // no temporary left behind
  // Present and verified: nothing is fetched, so even an unreachable source is fine.
  o.url_base = "http://127.0.0.1:1";
  got = download_verified(files, o);
  EXPECT_EQ(got[0].status, FileStatus::AlreadyPresent);
}

TEST(DataDownload, OfflineFailureNamesTheUrl) {
  TempDir tmp("download_offline");
  DownloadOptions o;
  o.url_base = "http://127.0.0.1:1/nsmc";  // nothing listens on port 1: as offline as it gets, instantly
  o.target_dir = tmp.path / "cache";
  std::string err = download_error({{"ratings_train.txt", std::string(64, '0')}}, o);
  EXPECT_NE(err.find("cannot download http://127.0.0.1:1/nsmc/ratings_train.txt"), std::string::npos) << err;
  EXPECT_FALSE(fs::exists(o.target_dir / "ratings_train.txt"));
  EXPECT_EQ(entries(o.target_dir), 0u);
  // A missing file on the mirror is an error too, not an empty download.
  o.url_base = "file://" + tmp.path.string();
  err = download_error({{"nope.txt", std::string(64, '0')}}, o);
  EXPECT_NE(err.find("nope.txt"), std::string::npos) << err;
  EXPECT_EQ(entries(o.target_dir), 0u);
}

TEST(DataDownload, BadDigestNeverReplacesWhatWasThere) {
  TempDir tmp("download_bad");
  write_text(tmp.path / "mirror" / "a.txt", "tampered\n");
  write_text(tmp.path / "cache" / "a.txt", "an old partial fil");
  DownloadOptions o;
  o.url_base = "file://" + (tmp.path / "mirror").string();
  o.target_dir = tmp.path / "cache";
  std::vector<RemoteFile> files = {{"a.txt", sha256_hex("hello\n")}};
  std::string err = download_error(files, o);
  EXPECT_NE(err.find("has sha256 " + sha256_hex("tampered\n") + ", expected " + sha256_hex("hello\n")),
            std::string::npos)
      << err;
  EXPECT_EQ(read_text(tmp.path / "cache" / "a.txt"), "an old partial fil");
  EXPECT_EQ(entries(tmp.path / "cache"), 1u);
  // A good file stays untouched whatever the mirror holds.
  write_text(tmp.path / "cache" / "a.txt", "hello\n");
  EXPECT_EQ(download_verified(files, o)[0].status, FileStatus::AlreadyPresent);
  EXPECT_EQ(read_text(tmp.path / "cache" / "a.txt"), "hello\n");
}

TEST(DataDownload, NsmcFromAMirrorIntoTheCache) {
  TempDir tmp("download_nsmc");
  DownloadOptions o;
  o.url_base = "file://" + shared_path("data/nsmc").string();
  o.target_dir = tmp.path / "nsmc";
  auto got = download_nsmc(o);
  ASSERT_EQ(got.size(), 2u);
  for (const auto& f : got) EXPECT_EQ(f.status, FileStatus::Downloaded);
  EXPECT_EQ(read_dataset(o.target_dir / "ratings_test.txt").size(), 50000u);
  EXPECT_EQ(download_nsmc(o)[1].status, FileStatus::AlreadyPresent);
}

// ---------------------------------------------------------------- CLI

TEST(DataCli, HeadStatsAndDownloadOffline) {
  auto head = run_cli("data head " + fixture("good.tsv").string() + " -n 2");
  EXPECT_EQ(head.status, 0) << head.output;
  EXPECT_NE(head.output.find("재밌다 정말"), std::string::npos) << head.output;
  EXPECT_NE(head.output.find("(2 of 5 rows)"), std::string::npos) << head.output;

  auto subset = run_cli("data head --json -n 2 --samples 2 --data-seed 42 " + fixture("good.csv").string());
  EXPECT_EQ(subset.status, 0) << subset.output;
  std::vector<size_t> order = shuffled_indices(7, 42);
  Dataset csv = read_dataset(fixture("good.csv"));
  EXPECT_NE(subset.output.find("\"line\":" + std::to_string(csv.examples[order[0]].line)), std::string::npos)
      << subset.output;

  auto stats = run_cli("data stats --no-tokens --json " + fixture("good.tsv").string());
  ASSERT_EQ(stats.status, 0) << stats.output;
  nlohmann::json j = nlohmann::json::parse(stats.output);
  EXPECT_EQ(j["rows"], 5);
  EXPECT_EQ(j["empty_documents"], 1);
  EXPECT_EQ(j["label_counts"]["1"], 3);

  auto tokens = run_cli("data stats --json " + fixture("good.tsv").string());  // klue tokenizer by default
  ASSERT_EQ(tokens.status, 0) << tokens.output;
  j = nlohmann::json::parse(tokens.output);
  EXPECT_EQ(j["length_tokens"]["count"], 5);
  EXPECT_EQ(j["length_tokens"]["min"], 2);  // the empty document: [CLS] [SEP]
  EXPECT_EQ(j["over_token_limit"], 0);

  auto bad = run_cli("data stats --no-tokens " + fixture("bad_label.tsv").string());
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("bad_label.tsv:3: label 'positive'"), std::string::npos) << bad.output;
  auto skipped = run_cli("data stats --no-tokens --skip-bad-rows " + fixture("bad_label.tsv").string());
  EXPECT_EQ(skipped.status, 0);
  EXPECT_NE(skipped.output.find("skipped 1 bad row"), std::string::npos) << skipped.output;

  TempDir tmp("cli_download");
  auto offline = run_cli("download nsmc --cache-dir " + tmp.path.string() + " --url-base http://127.0.0.1:1/e9t");
  EXPECT_EQ(offline.status, 1);
  EXPECT_NE(offline.output.find("cannot download http://127.0.0.1:1/e9t/ratings_train.txt"), std::string::npos)
      << offline.output;
}

// Regression scores and label sets read as train reads them: a score distribution, and how
// many rows each label applies to.
TEST(DataCli, StatsAndHeadReadScoresAndLabelSets) {
  TempDir tmp("cli_label_kinds");
  io::write_file_atomic(tmp.path / "sts.jsonl", "{\"a\": \"x\", \"label\": 4.5}\n{\"a\": \"y\", \"label\": 0.5}\n"
                                                "{\"a\": \"z\", \"label\": 2}\n");
  const std::string sts = " --text-column a --no-tokens " + (tmp.path / "sts.jsonl").string();
  auto plain = run_cli("data stats" + sts);
  EXPECT_EQ(plain.status, 1);
  EXPECT_NE(plain.output.find("sts.jsonl:1: label 4.5"), std::string::npos) << plain.output;
  auto scores = run_cli("data stats --json --problem-type regression" + sts);
  ASSERT_EQ(scores.status, 0) << scores.output;
  nlohmann::json j = nlohmann::json::parse(scores.output);
  EXPECT_EQ(j["label_scores"]["count"], 3);
  EXPECT_DOUBLE_EQ(j["label_scores"]["min"].get<double>(), 0.5);
  EXPECT_DOUBLE_EQ(j["label_scores"]["p50"].get<double>(), 2.0);
  EXPECT_DOUBLE_EQ(j["label_scores"]["mean"].get<double>(), 7.0 / 3);
  EXPECT_TRUE(j["label_counts"].empty()) << j;
  auto text = run_cli("data stats --problem-type regression" + sts);
  EXPECT_NE(text.output.find("score"), std::string::npos) << text.output;

  io::write_file_atomic(tmp.path / "tags.tsv", "document\ttags\nfine\tsports,arts\nok\t\nyes\tarts\n");
  const std::string tags = " --label-column tags --no-tokens --problem-type multi_label_classification "
                           "--label-names sports,politics,arts " + (tmp.path / "tags.tsv").string();
  auto sets = run_cli("data stats --json" + tags);
  ASSERT_EQ(sets.status, 0) << sets.output;
  j = nlohmann::json::parse(sets.output);
  EXPECT_EQ(j["label_counts"], (nlohmann::json{{"-1", 1}, {"0", 1}, {"2", 2}}));
  auto head = run_cli("data head --json --label-column tags --problem-type multi_label_classification "
                 "--label-names sports,politics,arts " + (tmp.path / "tags.tsv").string());
  ASSERT_EQ(head.status, 0) << head.output;
  EXPECT_NE(head.output.find("\"label\":[1.0,0.0,1.0]"), std::string::npos) << head.output;
  auto bad = run_cli("data stats --json --problem-type regresion" + sts);
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("--problem-type: "), std::string::npos) << bad.output;
  bad = run_cli("data stats --label-names a,b" + sts);
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.output.find("--label-names: names the labels of multi_label_classification data only"),
            std::string::npos) << bad.output;
}

TEST(DataStats, TokenLengthsMatchHuggingFaceTokenizer) {
  // Golden: transformers' BertTokenizer ids (with [CLS]/[SEP], untruncated)
  // for 5,000 NSMC documents; our lengths and their summary must agree.
  ReadOptions o;
  o.format = Format::Jsonl;
  o.text_column = "text";
  o.label_column = "";
  fs::path golden = shared_path("golden/tokenizer/klue_nsmc_train_5000.jsonl");
  Dataset d = read_dataset(golden, o);
  ASSERT_EQ(d.size(), 5000u);
  std::vector<int64_t> expected;
  std::ifstream in(golden);
  for (std::string line; std::getline(in, line);)
    if (!line.empty()) expected.push_back(static_cast<int64_t>(nlohmann::json::parse(line)["ids"].size()));
  ASSERT_EQ(expected.size(), d.size());
  std::vector<int64_t> got = token_lengths(d, text::Tokenizer::load(shared_path("models/klue-bert-base")));
  EXPECT_EQ(got, expected);
  DatasetStats s = compute_stats(d, got, 64);
  ASSERT_TRUE(s.tokens.has_value());
  LengthSummary want = summarize_lengths(expected);
  EXPECT_EQ(s.tokens->p99, want.p99);
  EXPECT_EQ(s.tokens->max, want.max);
  EXPECT_EQ(s.over_token_limit,
            static_cast<size_t>(std::count_if(expected.begin(), expected.end(), [](int64_t n) { return n > 64; })));
}

// ---------------------------------------------------------------- files users get wrong

namespace {
std::string quote(const std::string& s) {
  std::string q = "'";
  for (char c : s) q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}
}  // namespace

TEST(DataFiles, DirectoryGivenAsFileIsNamed) {
  TempDir tmp("dir_as_file");
  const std::string dir = tmp.path.string();
  EXPECT_EQ(error_of([&] { data::read_dataset(tmp.path); }), dir + " is a directory; expected a file");
  for (const std::string& cmd : {"data stats --no-tokens " + dir, "data head " + dir, "tokenize --input " + dir,
                                 "tokenize --input " + dir + " --format tsv"}) {
    auto r = run_cli(cmd);
    EXPECT_EQ(r.status, 1) << cmd << "\n" << r.output;
    EXPECT_TRUE(contains(r.output, dir + " is a directory; expected a file")) << cmd << "\n" << r.output;
  }
  auto missing = run_cli("data head " + dir + "/nope.tsv");
  EXPECT_EQ(missing.status, 1);
  EXPECT_TRUE(contains(missing.output, "nope.tsv: No such file or directory")) << missing.output;
}

TEST(DataFiles, GzipDataIsReadTransparently) {
  TempDir tmp("gz");
  const std::string tsv = io::read_file(fixture("good.tsv"));
  const std::string csv = io::read_file(fixture("good.csv"));
  fs::path tsv_gz = tmp.file("good.tsv.gz", gzip(tsv)), csv_gz = tmp.file("good.csv.gz", gzip(csv));
  fs::path odd_name = tmp.file("ratings.txt", gzip(tsv));  // gzip whatever the name
  data::Dataset plain = data::read_dataset(fixture("good.tsv"));
  for (const fs::path& p : {tsv_gz, odd_name}) {
    data::Dataset d = data::read_dataset(p);
    ASSERT_EQ(d.size(), plain.size()) << p;
    for (size_t i = 0; i < d.size(); ++i) EXPECT_EQ(d.examples[i].text, plain.examples[i].text);
  }
  EXPECT_EQ(data::read_dataset(csv_gz).size(), data::read_dataset(fixture("good.csv")).size());
  auto head = run_cli("data head -n 2 " + tsv_gz.string());
  EXPECT_EQ(head.status, 0) << head.output;
  EXPECT_TRUE(contains(head.output, "재밌다 정말")) << head.output;
  // A truncated download: an error naming the file, not binary on the terminal.
  std::string gz = gzip(tsv);
  fs::path cut = tmp.file("cut.tsv.gz", gz.substr(0, gz.size() / 2));
  EXPECT_EQ(error_of([&] { data::read_dataset(cut); }),
            cut.string() + ": cannot decompress gzip data: the gzip stream is truncated");
  // tokenize --input reads gzip too.
  fs::path lines = tmp.file("lines.txt.gz", gzip("좋다\n별로\n"));
  auto tok = run_cli("tokenize --input " + lines.string());
  EXPECT_EQ(tok.status, 0) << tok.output;
  EXPECT_EQ(std::count(tok.output.begin(), tok.output.end(), '\n'), 2) << tok.output;
}

// A 5 MB bad line is not copied into the error.
TEST(DataFiles, HugeBadLinesAreCutInErrors) {
  TempDir tmp("hugeline");
  const std::string big(5 << 20, 'x');
  fs::path jsonl = tmp.file("big.jsonl", "{\"document\": \"a\", \"label\": 1}\n{\"document\": " + big + "}\n");
  auto e = error_of([&] { data::read_dataset(jsonl); });
  EXPECT_TRUE(contains(e, "big.jsonl:2: bad JSON")) << e.substr(0, 300);
  EXPECT_LT(e.size(), 600u) << e.substr(0, 300);
  fs::path header = tmp.file("big.tsv", big + "\n");  // no 'document' column: the header is listed
  auto h = error_of([&] { data::read_dataset(header); });
  EXPECT_TRUE(contains(h, "no column 'document'")) << h.substr(0, 300);
  EXPECT_LT(h.size(), 600u);
  fs::path label = tmp.file("label.tsv", "id\tdocument\tlabel\n1\tok\t" + big + "\n");
  auto l = error_of([&] { data::read_dataset(label); });
  EXPECT_TRUE(contains(l, "label.tsv:2: label 'xxx")) << l.substr(0, 300);
  EXPECT_LT(l.size(), 600u);
  EXPECT_EQ(quote_excerpt(std::string(100, 'a'), 10), "aaaaaaaaaa... (100 bytes)");
  EXPECT_EQ(quote_excerpt("가나다", 4), "가... (9 bytes)");  // never inside a UTF-8 sequence
}

// Invalid UTF-8 used to be dropped silently by the tokenizer, gluing words.
TEST(DataFiles, InvalidUtf8IsAnErrorNamingTheLine) {
  TempDir tmp("utf8");
  fs::path lines = tmp.file("lines.txt", "좋다\nab\xff" "cd\n");
  auto r = run_cli("tokenize --input " + lines.string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, lines.string() + ":2: invalid UTF-8 at byte 2")) << r.output;
  auto arg = run_cli("tokenize ok " + quote("ab\xc3(cd"));
  EXPECT_EQ(arg.status, 1) << arg.output;
  EXPECT_TRUE(contains(arg.output, "text 2: invalid UTF-8 at byte 2")) << arg.output;
  EXPECT_EQ(data::read_text_lines(tmp.file("ok.txt", "a\r\nb\n")), (std::vector<std::string>{"a", "b"}));
}

TEST(DataFiles, BinaryFileIsNamedNotQuoted) {
  auto e = error_of([] { data::read_dataset(BERTUNE_BINARY); });
  EXPECT_TRUE(contains(e, ": binary data (a NUL byte at offset ")) << e;
  EXPECT_EQ(e.find("ELF"), std::string::npos) << e;
}

// --samples past the end used to be accepted while the header claimed N rows.
TEST(DataCli, SamplesAndLabelsOutOfRange) {
  const std::string good = fixture("good.tsv").string();
  auto more = run_cli("data stats --no-tokens --samples 100 " + good);
  EXPECT_EQ(more.status, 1) << more.output;
  EXPECT_TRUE(contains(more.output, "--samples 100: " + good + " has only 5 rows")) << more.output;
  auto negative = run_cli("data head --samples -5 " + good);
  EXPECT_EQ(negative.status, 1) << negative.output;
  EXPECT_TRUE(contains(negative.output, "--samples: must be positive (got -5)")) << negative.output;
  auto labels = run_cli("data head --num-labels 0 " + good);
  EXPECT_EQ(labels.status, 1) << labels.output;
  EXPECT_TRUE(contains(labels.output, "--num-labels: must be positive")) << labels.output;
  EXPECT_EQ(run_cli("data head -n -1 " + good).status, 1);
  EXPECT_EQ(run_cli("data head --samples 5 " + good).status, 0);
}

// A JSONL label too long for 64 bits was quoted as nlohmann's double, "1e+20"; one past
// INT64_MAX read as a negative number. The label is quoted as the file writes it.
TEST(DataJsonl, HugeLabelsAreQuotedAsWritten) {
  TempDir tmp("hugelabel");
  fs::path f = tmp.file("l.jsonl", "{\"document\": \"a\", \"label\": 1}\n"
                                   "{\"document\": \"b\", \"label\": 99999999999999999999}\n"
                                   "{\"document\": \"c\", \"label\": 18446744073709551615}\n"
                                   "{\"document\": \"d\", \"label\": \"99999999999999999999\"}\n"
                                   "{\"document\": \"e\", \"label\": 1.50}\n"
                                   "{\"document\": \"f\", \"label\": -12345678901234567890123}\n");
  ReadOptions o = skipping();
  o.num_labels = 2;
  Dataset d = read_dataset(f, o);
  ASSERT_EQ(d.skipped.size(), 5u) << lines_of(d);
  EXPECT_EQ(d.skipped[0].problem, "label 99999999999999999999 outside [0, 2)");
  EXPECT_EQ(d.skipped[1].problem, "label 18446744073709551615 outside [0, 2)");
  EXPECT_EQ(d.skipped[2].problem, "label 99999999999999999999 outside [0, 2)");
  EXPECT_EQ(d.skipped[3].problem, "label 1.50 in key 'label' is not an integer");
  EXPECT_EQ(d.skipped[4].problem, "label -12345678901234567890123 outside [0, 2)");
  EXPECT_EQ(read_error(f), f.string() + ":2: label 99999999999999999999 outside [0, 2)");
  // The same in a TSV column.
  fs::path tsv = tmp.file("l.tsv", "id\tdocument\tlabel\n1\ta\t99999999999999999999\n");
  ReadOptions any_label;
  any_label.num_labels = 0;
  EXPECT_EQ(read_error(tsv, any_label), tsv.string() + ":2: label 99999999999999999999 outside [0, inf)");
}

namespace {

// UTF-8 text (code points below U+10000) as UTF-16 or UTF-32 code units.
std::string widen(const std::string& utf8, int unit_bytes, bool little_endian) {
  std::string out;
  for (size_t i = 0; i < utf8.size();) {
    const auto c = static_cast<unsigned char>(utf8[i]);
    uint32_t cp = c;
    int len = 1;
    if (c >= 0xe0) cp = c & 0x0f, len = 3;
    else if (c >= 0xc0) cp = c & 0x1f, len = 2;
    for (int k = 1; k < len; ++k) cp = (cp << 6) | (static_cast<unsigned char>(utf8[i + k]) & 0x3f);
    i += static_cast<size_t>(len);
    for (int b = 0; b < unit_bytes; ++b) {
      const int shift = 8 * (little_endian ? b : unit_bytes - 1 - b);
      out.push_back(static_cast<char>((cp >> shift) & 0xff));
    }
  }
  return out;
}

}  // namespace

// A UTF-16 export (Excel's "Unicode text", PowerShell's default) was called "binary data" by
// the table readers and "invalid UTF-8" by the others. Every reader names the encoding and
// the conversion, with or without a byte-order mark, gzip or not.
TEST(DataFiles, Utf16AndUtf32AreNamedWithTheConversion) {
  TempDir tmp("utf16");
  const std::string table = "id\tdocument\tlabel\n1\t가 재밌다 정말\t1\n2\t별로 가가가\t0\n";
  struct Case {
    std::string name, bytes, said;
  };
  const std::vector<Case> cases = {
      {"le_bom.tsv", std::string("\xFF\xFE") + widen(table, 2, true), "UTF-16 (little-endian, with a byte-order mark)"},
      {"be_bom.tsv", std::string("\xFE\xFF") + widen(table, 2, false), "UTF-16 (big-endian, with a byte-order mark)"},
      {"le.tsv", widen(table, 2, true), "UTF-16LE (no byte-order mark)"},
      {"be.tsv", widen(table, 2, false), "UTF-16BE (no byte-order mark)"},
      {"u32.tsv", std::string("\xFF\xFE\0\0", 4) + widen(table, 4, true), "UTF-32 (little-endian"},
      {"le.tsv.gz", gzip(widen(table, 2, true)), "UTF-16LE"},
  };
  for (const Case& c : cases) {
    const fs::path f = tmp.file(c.name, c.bytes);
    const std::string e = read_error(f);
    EXPECT_TRUE(contains(e, f.string() + " is " + c.said)) << c.name << ": " << e;
    EXPECT_TRUE(contains(e, "convert it to UTF-8 (e.g. iconv -f UTF-")) << e;
    EXPECT_TRUE(contains(error_of([&] { read_text_lines(f); }), " is " + c.said)) << c.name;
    EXPECT_TRUE(contains(error_of([&] { text::read_corpus_file(f); }), " is " + c.said)) << c.name;
  }
  ReadOptions jsonl;
  jsonl.format = Format::Jsonl;
  const fs::path j = tmp.file("d.jsonl", std::string("\xFF\xFE") + widen("{\"document\": \"좋다\", \"label\": 1}\n", 2, true));
  EXPECT_TRUE(contains(read_error(j, jsonl), "d.jsonl is UTF-16")) << read_error(j, jsonl);
  const fs::path csv = tmp.file("d.csv", widen("document,label\n좋다,1\n", 2, true));
  EXPECT_TRUE(contains(read_error(csv), "d.csv is UTF-16LE")) << read_error(csv);
  // Configs: config.json (BertConfig) and --config files (read_json_file).
  const fs::path config = tmp.file("config.json", std::string("\xFF\xFE") + widen("{\"hidden_size\": 32}", 2, true));
  EXPECT_TRUE(contains(error_of([&] { model::BertConfig::load(config); }), "config.json is UTF-16"));
  EXPECT_TRUE(contains(error_of([&] { io::read_json_file(config); }), "config.json is UTF-16"));
  // The command line says the same, with exit 1.
  auto r = run_cli("data head " + (tmp.path / "le.tsv").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "le.tsv is UTF-16LE (no byte-order mark) text; convert it to UTF-8 (e.g. iconv -f "
                                 "UTF-16LE -t UTF-8 ")) << r.output;
  // UTF-8 text, Hangul with U+xx00 syllables (가 is AC00) included, is read as before; a
  // binary file is still binary.
  EXPECT_EQ(read_dataset(tmp.file("ok.tsv", table)).size(), 2u);
  EXPECT_TRUE(contains(error_of([] { data::read_dataset(BERTUNE_BINARY); }), ": binary data")) ;
}

namespace {

// `bytes` zeros as a gzip file, compressed in 1 MiB pieces (no buffer of the whole).
std::string gzip_of_zeros(size_t bytes) {
  std::string out;
  const std::string chunk(1 << 20, '\0');
  char buf[1 << 16];
  z_stream z{};
  deflateInit2(&z, 9, Z_DEFLATED, 15 + 16, 8, Z_DEFAULT_STRATEGY);
  for (size_t done = 0; done < bytes || z.avail_in > 0;) {
    const size_t n = std::min(chunk.size(), bytes - done);
    z.next_in = reinterpret_cast<Bytef*>(const_cast<char*>(chunk.data()));
    z.avail_in = static_cast<uInt>(n);
    done += n;
    const int flush = done == bytes ? Z_FINISH : Z_NO_FLUSH;
    do {
      z.next_out = reinterpret_cast<Bytef*>(buf);
      z.avail_out = sizeof buf;
      deflate(&z, flush);
      out.append(buf, sizeof buf - z.avail_out);
    } while (z.avail_out == 0);
    if (flush == Z_FINISH) break;
  }
  deflateEnd(&z);
  return out;
}

// Sets an environment variable for the scope.
}  // namespace

// A 100 KB gzip file that unpacks to 100 MB (or to gigabytes) was read whole, up to the
// machine's memory. Reading stops past 100 times the compressed size (64 MiB at least),
// naming the file and the limit; BERTUNE_GZIP_MAX_RATIO moves it.
TEST(DataFiles, GzipBombStopsAtTheExpansionLimit) {
  TempDir tmp("gzbomb");
  const fs::path bomb = tmp.file("bomb.txt.gz", gzip_of_zeros(100u << 20));
  ASSERT_LT(fs::file_size(bomb), 1u << 20);
  for (const std::string& e : {error_of([&] { io::read_text_file(bomb); }),
                               error_of([&] { text::read_corpus_file(bomb); })}) {
    EXPECT_TRUE(contains(e, bomb.string() + ": gzip data of 0.1 MB decompresses to more than 67.1 MB (100 times its "
                            "size; at least 67.1 MB is always allowed); reading stopped")) << e;
    EXPECT_TRUE(contains(e, "BERTUNE_GZIP_MAX_RATIO=N (0: no limit)")) << e;
  }
  auto r = run_cli("vocab train --corpus " + bomb.string() + " --output " + (tmp.path / "v").string());
  EXPECT_EQ(r.status, 1) << r.output;
  EXPECT_TRUE(contains(r.output, "decompresses to more than")) << r.output;
  {
    ScopedEnv unlimited("BERTUNE_GZIP_MAX_RATIO", "0");
    EXPECT_EQ(io::read_text_file(bomb).size(), 100u << 20);
  }
  {
    ScopedEnv bad("BERTUNE_GZIP_MAX_RATIO", "lots");
    EXPECT_TRUE(contains(error_of([&] { io::read_text_file(bomb); }), "BERTUNE_GZIP_MAX_RATIO='lots' is not a whole"));
  }
  // The limit: 100 times the compressed size, 64 MiB at least; NSMC's unlabeled reviews
  // (21.5 MB that decompress to 56.2 MB, 2.6 times) are far inside it.
  EXPECT_EQ(io::gzip_expansion_limit(1000), 64ull << 20);
  EXPECT_EQ(io::gzip_expansion_limit(21450503), 2145050300u);
  EXPECT_EQ(text::read_corpus_file(shared_path("data/nsmc/unlabeled.txt.gz")).size(), 56177350u);
}

// ---------------------------------------------------------------- regression and multi-label labels

namespace {
std::string parse_error(const std::string& contents, const std::string& name, const ReadOptions& o) {
  try {
    parse_dataset(contents, name, o);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}
}  // namespace

TEST(DataLabels, RegressionScoresInTsvAndJsonl) {
  ReadOptions o;
  o.label_kind = LabelKind::Score;
  o.num_labels = 1;
  auto d = parse_dataset("document\tlabel\na\t3.5\nb\t -2 \nc\t1e-1\n", "s.tsv", o);
  ASSERT_EQ(d.size(), 3u);
  EXPECT_EQ(d.examples[0].targets, std::vector<float>{3.5f});
  EXPECT_EQ(d.examples[1].targets, std::vector<float>{-2.f});
  EXPECT_EQ(d.examples[2].targets, std::vector<float>{0.1f});
  auto j = parse_dataset("{\"document\": \"a\", \"label\": 4.25}\n{\"document\": \"b\", \"label\": \"7\"}\n", "s.jsonl", o);
  EXPECT_EQ(j.examples[0].targets, std::vector<float>{4.25f});
  EXPECT_EQ(j.examples[1].targets, std::vector<float>{7.f});
  EXPECT_EQ(parse_error("document\tlabel\na\t1\nb\thigh\n", "s.tsv", o),
            "s.tsv:3: label 'high' in column 'label' is not a finite number (a regression label)");
  EXPECT_NE(parse_error("document\tlabel\na\tnan\n", "s.tsv", o).find("s.tsv:2: label 'nan'"), std::string::npos);
  EXPECT_EQ(parse_error("{\"document\": \"a\", \"label\": [1]}\n", "s.jsonl", o),
            "s.jsonl:1: label [1] in key 'label' is not a finite number (a regression label)");
}

TEST(DataLabels, MultiLabelSetsByNameIdOrVector) {
  ReadOptions o;
  o.label_kind = LabelKind::LabelSet;
  o.num_labels = 3;
  o.label_names = {"sports", "politics", "arts"};
  auto d = parse_dataset("document\tlabel\na\tsports,arts\nb\t1\nc\t\nd\t 2 , politics \n", "m.tsv", o);
  ASSERT_EQ(d.size(), 4u);
  EXPECT_EQ(d.examples[0].targets, (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(d.examples[1].targets, (std::vector<float>{0, 1, 0}));
  EXPECT_EQ(d.examples[2].targets, (std::vector<float>{0, 0, 0}));  // an empty field: no label applies
  EXPECT_EQ(d.examples[3].targets, (std::vector<float>{0, 1, 1}));
  auto j = parse_dataset(
      "{\"document\": \"a\", \"label\": [0, 1, 1]}\n{\"document\": \"b\", \"label\": [\"arts\", \"0\"]}\n"
      "{\"document\": \"c\", \"label\": \"politics\"}\n{\"document\": \"d\", \"label\": []}\n",
      "m.jsonl", o);
  ASSERT_EQ(j.size(), 4u);
  EXPECT_EQ(j.examples[0].targets, (std::vector<float>{0, 1, 1}));
  EXPECT_EQ(j.examples[1].targets, (std::vector<float>{1, 0, 1}));
  EXPECT_EQ(j.examples[2].targets, (std::vector<float>{0, 1, 0}));
  EXPECT_EQ(j.examples[3].targets, (std::vector<float>{0, 0, 0}));
  EXPECT_EQ(parse_error("document\tlabel\na\tsports\nb\tsports,music\n", "m.tsv", o),
            "m.tsv:3: label 'music' in column 'label' is neither a label id in [0, 3) nor a label name "
            "(sports, politics, arts)");
  EXPECT_NE(parse_error("document\tlabel\na\t3\n", "m.tsv", o).find("m.tsv:2: label '3'"), std::string::npos);
  EXPECT_EQ(parse_error("{\"document\": \"a\", \"label\": [0, 1]}\n", "m.jsonl", o),
            "m.jsonl:1: label list in key 'label' has 2 numbers; the model has 3 labels");
  EXPECT_EQ(parse_error("{\"document\": \"a\", \"label\": [0, 2, 1]}\n", "m.jsonl", o),
            "m.jsonl:1: label list in key 'label' holds 2, outside [0, 1]");
  EXPECT_EQ(parse_error("{\"document\": \"a\", \"label\": 1}\n", "m.jsonl", o),
            "m.jsonl:1: label 1 in key 'label' is not a list of labels (multi-label)");
  // skip_bad_rows lists the row and keeps the others
  o.skip_bad_rows = true;
  auto s = parse_dataset("document\tlabel\na\tsports\nb\tmusic\nc\tarts\n", "m.tsv", o);
  EXPECT_EQ(s.size(), 2u);
  EXPECT_EQ(lines_of(s), "3 ");
}
