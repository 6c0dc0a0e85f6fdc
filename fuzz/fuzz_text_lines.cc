// One-text-per-line input (tokenize/predict --input), gzip detection and
// decompression included.
#include "data/dataset.h"
#include "fuzz_common.h"
#include "io/read_file.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  BERTUNE_FUZZ_BODY({
    auto path = bertune::fuzz::write_scratch("lines.txt", data, size);
    for (const auto& line : bertune::data::read_text_lines(path))
      if (bertune::data::find_invalid_utf8(line) != std::string_view::npos) __builtin_trap();
    if (bertune::io::is_gzip(bertune::fuzz::as_text(data, size)))
      bertune::io::gunzip(bertune::fuzz::as_text(data, size), path);
  })
}
