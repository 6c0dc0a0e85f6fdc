#include "infer/quantize.h"

#include <nlohmann/json.hpp>

#include "infer/model_dir.h"
#include "io/atomic_file.h"
#include "io/checkpoint.h"
#include "io/json_error.h"
#include "io/read_file.h"
#include "text/tokenizer.h"
#include "util/error.h"

namespace bertune::infer {
namespace fs = std::filesystem;
using Json = nlohmann::json;

quant::QuantizeReport quantize_model_dir(const fs::path& model, const fs::path& output, bool overwrite) {
  if (quant::is_int8_model_dir(model)) throw Error("--model: " + model.string() + " is already quantized");
  std::error_code ec;
  if (fs::exists(output, ec) && !overwrite)
    throw Error("--output: " + output.string() + " exists (pass --overwrite to replace it)");
  // By any spelling (ck/final/, ./ck/final, a symlink): the fp32 model would be replaced.
  io::require_distinct_paths(model, "--model", output, "--output");
  io::require_replaceable_directory(output, "--output");
  io::require_replaceable_model_directory(output, "--output");  // not a directory of the user's files
  // Everything is read and validated before the first write.
  const Json config = io::read_json_file(model / "config.json");
  std::vector<std::string> initialised;
  const auto classifier = load_classifier(model, /*head_seed=*/42, &initialised);
  if (!initialised.empty())
    throw Error("--model: " + model.string() + " has no classification head (" + initialised.front() +
                "); quantize a fine-tuned classifier");
  return quant::write_int8_model_dir(model, config, classifier->state_dict(), text::tokenizer_files(model), output);
}

}  // namespace bertune::infer
