#include "data/label_names.h"

#include <fstream>

namespace bertune::data {

const std::map<int, std::string>& nsmc_label_names() {
  static const std::map<int, std::string> names = {{0, "negative"}, {1, "positive"}};
  return names;
}

std::map<int, std::string> known_label_names(const std::filesystem::path& data_file) {
  std::ifstream in(data_file, std::ios::binary);
  std::string header;
  if (!in || !std::getline(in, header)) return {};
  if (header.starts_with("\xEF\xBB\xBF")) header.erase(0, 3);  // BOM, as the reader drops it
  if (!header.empty() && header.back() == '\r') header.pop_back();
  if (header == "id\tdocument\tlabel") return nsmc_label_names();
  return {};
}

}  // namespace bertune::data
