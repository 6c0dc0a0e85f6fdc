// TSV / CSV / JSONL readers on arbitrary bytes. The first byte picks the
// format, whether bad rows are skipped, and whether a label column is read.
#include "data/dataset.h"
#include "fuzz_common.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 1) return 0;
  using namespace bertune::data;
  ReadOptions o;
  const uint8_t mode = data[0];
  o.format = (mode & 3) == 0 ? Format::Tsv : (mode & 3) == 1 ? Format::Csv : Format::Jsonl;
  o.skip_bad_rows = mode & 4;
  if (mode & 8) o.label_column = "";
  o.num_labels = (mode & 16) ? 0 : 2;
  BERTUNE_FUZZ_BODY({
    Dataset d = parse_dataset(bertune::fuzz::as_text(data + 1, size - 1), "fuzz.input", o);
    for (const auto& e : d.examples)
      if (find_invalid_utf8(e.text) != std::string_view::npos) __builtin_trap();  // promised valid
    describe_skipped(d);
    if (d.size() > 1) shuffle_select(d, 42, static_cast<int64_t>(d.size() / 2));
  })
}
