#pragma once
// Names for the integer labels of a known dataset, so a model trained on it can write
// a readable id2label into config.json (and `serve` / `predict` answer "positive"
// rather than "LABEL_1").
#include <filesystem>
#include <map>
#include <string>

namespace bertune::data {

// NSMC (the Naver sentiment movie corpus): 0 = negative, 1 = positive, as in the
// Hugging Face `nsmc` dataset's ClassLabel.
const std::map<int, std::string>& nsmc_label_names();

// The label names of a data file when it is recognisably NSMC (a TSV whose header is
// exactly "id<TAB>document<TAB>label"); empty otherwise. Reads the first line only.
std::map<int, std::string> known_label_names(const std::filesystem::path& data_file);

}  // namespace bertune::data
