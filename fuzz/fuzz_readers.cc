// TSV / CSV / JSONL readers and the tagged (token classification) reader on arbitrary bytes.
// The first byte picks the reader and the format, whether bad rows are skipped, and whether a
// label column is read.
#include "data/dataset.h"
#include "data/tagged.h"
#include "fuzz_common.h"

namespace {

// What read_tagged promises: sentences of 1..kMaxSentenceTokens non-empty, valid UTF-8
// tokens, a line per token, and tags either absent or one per token.
void check_tagged(const bertune::data::TaggedDataset& d) {
  using namespace bertune::data;
  for (const auto& s : d.sentences) {
    if (s.tokens.empty() || s.tokens.size() > kMaxSentenceTokens || s.lines.size() != s.tokens.size() ||
        (!s.tags.empty() && s.tags.size() != s.tokens.size()))
      __builtin_trap();
    for (const auto& t : s.tokens)
      if (t.empty() || find_invalid_utf8(t) != std::string_view::npos) __builtin_trap();
    for (const auto& t : s.tags)
      if (t.empty() || find_invalid_utf8(t) != std::string_view::npos) __builtin_trap();
  }
  tag_set(d);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using namespace bertune::data;
  const uint8_t mode = data[0];
  const std::string_view contents = bertune::fuzz::as_text(data + 1, size - 1);
  if (mode & 32) {  // tagged: CoNLL columns, or JSONL by the name
    BERTUNE_FUZZ_BODY(check_tagged(parse_tagged(contents, (mode & 1) ? "fuzz.jsonl" : "fuzz.tsv")))
  }
  ReadOptions o;
  o.format = (mode & 3) == 0 ? Format::Tsv : (mode & 3) == 1 ? Format::Csv : Format::Jsonl;
  o.skip_bad_rows = mode & 4;
  if (mode & 8) o.label_column = "";
  o.num_labels = (mode & 16) ? 0 : 2;
  BERTUNE_FUZZ_BODY({
    Dataset d = parse_dataset(contents, "fuzz.input", o);
    for (const auto& e : d.examples)
      if (find_invalid_utf8(e.text) != std::string_view::npos) __builtin_trap();  // promised valid
    describe_skipped(d);
    if (d.size() > 1) shuffle_select(d, 42, static_cast<int64_t>(d.size() / 2));
  })
}
