// `bertune checkpoint inspect|convert`: look inside a weights file or HF
// directory, and turn pytorch_model.bin (or any readable checkpoint) into a
// directory with model.safetensors that transformers' from_pretrained loads.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <map>
#include <string>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "io/hub.h"
#include "io/atomic_file.h"
#include "io/read_file.h"
#include "model/pretrained.h"
#include "quant/int8_model.h"
#include "text/tokenizer.h"
#include "util/error.h"

namespace bertune::cli {
namespace fs = std::filesystem;

namespace {

void log_line(const std::string& s) { std::fprintf(stderr, "bertune: %s\n", s.c_str()); }

// Every tensor the file holds with its dtype and shape — int8 weights and integer buffers
// (position_ids) too, which the float loaders skip — then the count per dtype.
void run_inspect(const fs::path& path) {
  fs::path weights = path;
  if (fs::is_directory(path)) {
    const auto c = model::BertConfig::load(path);
    weights = io::find_weights(path);
    const std::string embedding =
        c.embedding_width() != c.hidden_size ? ", embedding " + std::to_string(c.embedding_width()) : "";
    std::string architectures;  // config.json's: the class transformers builds
    for (const auto& a : c.architectures) architectures += (architectures.empty() ? ", " : " ") + a;
    std::printf("%s: %s, vocab %d, hidden %d%s, layers %d, heads %d, intermediate %d, labels %d%s%s\n",
                weights.string().c_str(), model::family_model_type(c.family), c.vocab_size, c.hidden_size,
                embedding.c_str(), c.num_hidden_layers, c.num_attention_heads, c.intermediate_size, c.num_labels(),
                architectures.c_str(), quant::is_int8_model_dir(path) ? ", int8 (bertune quantize)" : "");
  }
  const std::vector<io::TensorInfo> tensors = io::list_state_dict(weights);
  int64_t total = 0;
  std::map<std::string, size_t> per_dtype;
  for (const auto& t : tensors) {
    int64_t numel = 1;
    std::string shape;
    for (auto d : t.shape) {
      shape += (shape.empty() ? "" : ", ") + std::to_string(d);
      numel *= d;
    }
    std::printf("%-60s %-5s [%s]\n", t.name.c_str(), t.dtype.c_str(), shape.c_str());
    total += numel;
    per_dtype[t.dtype]++;
  }
  std::string dtypes;
  for (const auto& [dtype, n] : per_dtype) dtypes += (dtypes.empty() ? "" : ", ") + std::to_string(n) + " " + dtype;
  std::printf("%zu tensors (%s), %lld parameters\n", tensors.size(), dtypes.c_str(), static_cast<long long>(total));
}

// Refused before anything is read into memory or written: a directory whose weights hold
// int8 tensors (`bertune quantize` output). They have no float form here, so a converted copy
// would lack every quantized weight — and, converted in place, replace the model with it.
void require_float_weights(const fs::path& in) {
  if (quant::is_int8_model_dir(in))
    throw Error(in.string() + " is an int8 model (bertune quantize): checkpoint convert writes float weights "
                "only; convert the float model it was quantized from");
  const fs::path weights = io::find_weights(in);
  for (const auto& t : io::list_state_dict(weights))
    if (t.dtype == "I8" || t.dtype == "U8")
      throw Error(weights.string() + ": tensor " + t.name + " is " + t.dtype +
                  "; checkpoint convert writes float weights only and would drop it");
}

// The files of IN that a converted copy carries: the tokenizer's, so the output is usable
// alone, and — converting in place, where OUT replaces IN whole — every other file that is
// not config.json or weights (training_args.json, a README).
std::vector<fs::path> files_to_carry(const fs::path& in, bool in_place) {
  std::vector<fs::path> files = text::tokenizer_files(in);
  if (!in_place) return files;
  for (const auto& e : fs::directory_iterator(in)) {
    const std::string name = e.path().filename().string();
    const bool weights = name.starts_with("model") || name.starts_with("pytorch_model") || name == "config.json";
    if (e.is_regular_file() && !weights && std::find(files.begin(), files.end(), e.path()) == files.end())
      files.push_back(e.path());
  }
  return files;
}

void run_convert(const fs::path& in, const fs::path& out, io::DType dtype) {
  if (!fs::is_directory(in)) throw Error(in.string() + ": expected an HF model directory");
  require_float_weights(in);
  // In place (OUT is IN) is safe: the copy is staged beside OUT and renamed over it whole.
  std::error_code ec;
  const bool in_place = fs::equivalent(in, out, ec);
  if (!in_place) io::require_distinct_paths(in, "input", out, "output");
  io::require_replaceable_directory(out, "output");
  auto loaded = model::load_pretrained_tensors(in);
  std::vector<TensorRef> refs;
  for (const auto& [name, t] : loaded.tensors) refs.push_back({name, t.shape, t.data.data()});
  model::save_pretrained(out, loaded.config, refs, files_to_carry(in, in_place), dtype);
  std::printf("wrote %s (%zu tensors from %s, as %s)\n", out.string().c_str(), refs.size(),
              loaded.weights_file.filename().string().c_str(), io::torch_dtype_name(dtype));
}

}  // namespace

void add_checkpoint_commands(CLI::App& app) {
  auto* cmd = app.add_subcommand("checkpoint", "Inspect or convert model checkpoints");
  cmd->require_subcommand(1);

  auto* inspect = cmd->add_subcommand("inspect", "List the tensors of a weights file or HF directory");
  static std::string inspect_path;
  inspect->add_option("path", inspect_path, "model.safetensors, pytorch_model.bin, *.index.json or a directory")
      ->required();
  inspect->callback([] { run_inspect(inspect_path); });

  auto* convert = cmd->add_subcommand(
      "convert", "Write an HF directory with model.safetensors from any readable checkpoint directory");
  static std::string convert_in, convert_out, convert_dtype = "float32";
  convert->add_option("input", convert_in, "HF directory (config.json + weights) or hub id")->required();
  convert->add_option("output", convert_out, "Directory to write (replaced whole if it holds a model)")
      ->required();
  convert->add_option("--dtype", convert_dtype,
                      "weights as float32 | float16 | bfloat16 (half the size; loaders cast back to float32)")
      ->capture_default_str();
  convert->callback([] {
    const io::DType dtype = io::parse_torch_dtype(convert_dtype);  // before anything is read or written
    run_convert(io::resolve_model(convert_in, log_line), convert_out, dtype);
  });

  auto* fetch = cmd->add_subcommand("fetch", "Download a hub model (e.g. klue/bert-base) into the cache");
  static std::string fetch_id;
  fetch->add_option("model", fetch_id, "Hub id or local directory")->required();
  fetch->callback([] { std::printf("%s\n", io::resolve_model(fetch_id, log_line).string().c_str()); });
}

}  // namespace bertune::cli
