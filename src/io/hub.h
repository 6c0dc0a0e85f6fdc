#pragma once
// Model names as from_pretrained takes them: a local directory, or a Hugging
// Face hub id ("klue/bert-base") fetched once into cache_dir()/hub/<id>/.
#include <filesystem>
#include <functional>
#include <string>

namespace bertune::io {

// An existing directory is returned as is. Otherwise `name` must be a hub id
// (owner/name of letters, digits, '-', '_', '.'); its files are downloaded
// from <endpoint>/<id>/resolve/main/<file> — config.json and vocab.txt
// (required), tokenizer_config.json, special_tokens_map.json, tokenizer.json
// (optional), model.safetensors or else pytorch_model.bin — each to a
// temporary file renamed into place, so an interrupted fetch resumes with
// the files still missing. The endpoint is https://huggingface.co unless
// $BERTUNE_HF_ENDPOINT (or $HF_ENDPOINT) says otherwise (a file:// mirror
// works). Offline: Error naming the URL and suggesting a local directory.
std::filesystem::path resolve_model(const std::string& name_or_dir,
                                    const std::function<void(const std::string&)>& log = {});

}  // namespace bertune::io
