// bertune quantize: an int8 copy of a classifier directory (src/infer/quantize.h, src/quant/int8_model.h).
#include <cstdio>

#include "cli/commands.h"
#include "infer/quantize.h"

namespace bertune::cli {

void add_quantize_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("quantize", "Write an int8 copy of a classifier: encoder linear weights int8 per "
                                             "output channel + fp32 scales");
  struct Options {
    std::string model, output;
    bool overwrite = false;
  };
  auto o = std::make_shared<Options>();
  cmd->add_option("--model", o->model, "fp32 classifier directory (HF layout)")->required();
  cmd->add_option("--output", o->output, "directory to write (whole or not at all)")->required();
  cmd->add_flag("--overwrite", o->overwrite, "replace --output when it exists");
  cmd->callback([o] {
    auto r = infer::quantize_model_dir(o->model, o->output, o->overwrite);
    std::printf("%s: %d linear weights int8, %d tensors fp32; weights %.1f MB -> %.1f MB\n", o->output.c_str(),
                r.quantized, r.kept, r.fp32_bytes / 1e6, r.int8_bytes / 1e6);
  });
}

}  // namespace bertune::cli
