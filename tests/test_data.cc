#include <gtest/gtest.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <string>

#include "data/dataset.h"
#include "data/numpy_random.h"
#include "util/error.h"
#include "util/paths.h"

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
