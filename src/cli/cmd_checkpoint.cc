// `bertune checkpoint inspect|convert`: look inside a weights file or HF
// directory, and turn pytorch_model.bin (or any readable checkpoint) into a
// directory with model.safetensors that transformers' from_pretrained loads.
#include <cstdio>
#include <filesystem>
#include <string>

#include "cli/commands.h"
#include "io/checkpoint.h"
#include "io/hub.h"
#include "model/pretrained.h"
#include "text/tokenizer.h"
#include "util/error.h"

namespace bertune::cli {
namespace fs = std::filesystem;

namespace {

void log_line(const std::string& s) { std::fprintf(stderr, "bertune: %s\n", s.c_str()); }

void run_inspect(const fs::path& path) {
  TensorMap tensors;
  if (fs::is_directory(path)) {
    auto loaded = model::load_pretrained_tensors(path);
    const auto& c = loaded.config;
    std::printf("%s: vocab %d, hidden %d, layers %d, heads %d, intermediate %d, labels %d\n",
                loaded.weights_file.string().c_str(), c.vocab_size, c.hidden_size, c.num_hidden_layers,
                c.num_attention_heads, c.intermediate_size, c.num_labels());
    tensors = std::move(loaded.tensors);
  } else {
    tensors = io::read_state_dict(path);
  }
  int64_t total = 0;
  for (const auto& [name, t] : tensors) {
    std::string shape;
    for (auto d : t.shape) shape += (shape.empty() ? "" : ", ") + std::to_string(d);
    std::printf("%-60s [%s]\n", name.c_str(), shape.c_str());
    total += t.numel();
  }
  std::printf("%zu tensors, %lld parameters\n", tensors.size(), static_cast<long long>(total));
}

void run_convert(const fs::path& in, const fs::path& out, io::DType dtype) {
  if (!fs::is_directory(in)) throw Error(in.string() + ": expected an HF model directory");
  auto loaded = model::load_pretrained_tensors(in);
  std::vector<TensorRef> refs;
  for (const auto& [name, t] : loaded.tensors) refs.push_back({name, t.shape, t.data.data()});
  // Tokenizer files travel with the model so the output directory is usable alone.
  model::save_pretrained(out, loaded.config, refs, text::tokenizer_files(in), dtype);
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
