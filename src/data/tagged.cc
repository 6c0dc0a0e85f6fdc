#include "data/tagged.h"

#include <algorithm>
#include <set>

#include <nlohmann/json.hpp>

#include "data/dataset.h"
#include "io/read_file.h"
#include "util/error.h"

namespace bertune::data {
namespace fs = std::filesystem;

namespace {

std::string where(const fs::path& path, int64_t line) { return path.string() + ":" + std::to_string(line); }

// "token\ttag" (the last tab), else "token tag" (the last run of spaces).
void split_column_line(std::string_view line, const fs::path& path, int64_t number, TaggedSentence& s) {
  size_t cut = line.rfind('\t');
  size_t tag_at = cut == std::string_view::npos ? 0 : cut + 1;
  if (cut == std::string_view::npos) {
    const size_t end = line.find_last_not_of(' ');
    cut = line.rfind(' ', end);
    if (cut == std::string_view::npos)
      throw Error(where(path, number) + ": a token and its tag separated by a tab or a space, got '" +
                  std::string(line.substr(0, 40)) + "'");
    tag_at = cut + 1;
    line = line.substr(0, end + 1);
    cut = line.find_last_not_of(' ', cut) + 1;  // the spaces between token and tag
  }
  const std::string_view token = line.substr(0, cut), tag = line.substr(tag_at);
  if (token.empty()) throw Error(where(path, number) + ": empty token");
  if (tag.empty() || tag.find_first_of(" \t") != std::string_view::npos)
    throw Error(where(path, number) + ": bad tag '" + std::string(tag.substr(0, 40)) + "'");
  s.lines.push_back(number);
  s.tokens.emplace_back(token);
  s.tags.emplace_back(tag);
}

void read_columns(std::string_view data, const fs::path& path, TaggedDataset& d) {
  TaggedSentence s;
  auto end_sentence = [&] {
    if (!s.tokens.empty()) d.sentences.push_back(std::move(s));
    s = TaggedSentence{};
  };
  int64_t number = 0;
  for (size_t begin = 0; begin < data.size();) {
    size_t end = data.find('\n', begin);
    if (end == std::string_view::npos) end = data.size();
    std::string_view line = data.substr(begin, end - begin);
    begin = end + 1;
    ++number;
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    require_utf8(line, where(path, number));
    if (line.empty()) {
      end_sentence();
    } else if (line.substr(0, 3) != "## ") {
      split_column_line(line, path, number, s);
    }
  }
  end_sentence();
}

std::vector<std::string> string_list(const nlohmann::json& row, const char* key, const std::string& at) {
  const auto it = row.find(key);
  if (it == row.end()) return {};
  if (!it->is_array()) throw Error(at + ": \"" + key + "\" must be a list of strings");
  std::vector<std::string> out;
  for (const auto& v : *it) {
    if (!v.is_string() || v.get_ref<const std::string&>().empty())
      throw Error(at + ": \"" + key + "\" must hold non-empty strings");
    require_utf8(v.get_ref<const std::string&>(), at);
    out.push_back(v.get<std::string>());
  }
  return out;
}

void read_jsonl(std::string_view data, const fs::path& path, TaggedDataset& d) {
  int64_t number = 0;
  for (size_t begin = 0; begin < data.size();) {
    size_t end = data.find('\n', begin);
    if (end == std::string_view::npos) end = data.size();
    const std::string_view line = data.substr(begin, end - begin);
    begin = end + 1;
    ++number;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const std::string at = where(path, number);
    nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object()) throw Error(at + ": not a JSON object");
    TaggedSentence s;
    s.tokens = string_list(row, "tokens", at);
    if (!row.contains("tokens")) throw Error(at + ": no \"tokens\"");
    s.lines.assign(s.tokens.size(), number);
    s.tags = string_list(row, "tags", at);
    if (row.contains("tags") && s.tags.size() != s.tokens.size())
      throw Error(at + ": " + std::to_string(s.tags.size()) + " tags for " + std::to_string(s.tokens.size()) +
                  " tokens");
    if (s.tokens.empty()) throw Error(at + ": no tokens");
    d.sentences.push_back(std::move(s));
  }
}

}  // namespace

TaggedDataset read_tagged(const fs::path& path) { return parse_tagged(io::read_text_file(path), path); }

TaggedDataset parse_tagged(std::string_view contents, const fs::path& path) {
  TaggedDataset d;
  d.source = path;
  if (contents.substr(0, 3) == "\xEF\xBB\xBF") contents.remove_prefix(3);
  if (contents.find('\0') != std::string_view::npos) throw Error(path.string() + ": binary data, not tagged text");
  if (resolve_format(path, Format::Auto) == Format::Jsonl)
    read_jsonl(contents, path, d);
  else
    read_columns(contents, path, d);
  return d;
}

std::vector<std::string> tag_set(const TaggedDataset& d) {
  std::set<std::string> tags;
  for (const auto& s : d.sentences) tags.insert(s.tags.begin(), s.tags.end());
  return {tags.begin(), tags.end()};
}

}  // namespace bertune::data
