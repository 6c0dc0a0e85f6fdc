#pragma once
// `bertune quantize`: an fp32 classifier directory, loaded as inference loads it, written
// out in bertune's int8 format (quant/int8_model.h).
#include <filesystem>

#include "quant/int8_model.h"

namespace bertune::infer {

// Reads an fp32 model directory and writes the int8 one (beside `output`, then renamed:
// it appears whole or not at all). Refuses an output that exists unless `overwrite`, an
// int8 source, and a model without a trained classification head.
quant::QuantizeReport quantize_model_dir(const std::filesystem::path& model, const std::filesystem::path& output,
                                         bool overwrite = false);

}  // namespace bertune::infer
