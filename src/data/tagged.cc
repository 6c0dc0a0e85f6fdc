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

// CoNLL columns: the token is the first field, the tag the last; the columns between them
// (CoNLL-2003's part of speech and chunk: "EU NNP B-NP B-ORG") are not read. A line holding a
// tab is split at tabs, so a space character is a token (KLUE-NER's " \tO"); a line without
// one at runs of spaces.
void split_column_line(std::string_view line, const fs::path& path, int64_t number, TaggedSentence& s) {
  std::string_view token, tag;
  if (const size_t tab = line.find('\t'); tab != std::string_view::npos) {
    token = line.substr(0, tab);
    const size_t last_tab = line.rfind('\t');
    tag = line.substr(last_tab + 1);
    // A middle column with a space is no CoNLL column: a table of texts read as tagged data.
    const std::string_view middle = last_tab > tab ? line.substr(tab + 1, last_tab - tab - 1) : std::string_view();
    if (middle.find(' ') != std::string_view::npos)
      throw Error(where(path, number) + ": a middle column holds text with spaces ('" +
                  quote_excerpt(std::string(middle), 40) +
                  "'): a tagged file has a token and its tag per line (is this a table of texts?)");
  } else {
    const size_t end = line.find_last_not_of(' ');
    const size_t last_space = end == std::string_view::npos ? end : line.rfind(' ', end);
    if (last_space == std::string_view::npos)
      throw Error(where(path, number) + ": a token and its tag separated by a tab or a space, got '" +
                  quote_excerpt(std::string(line), 40) + "'");
    token = line.substr(0, line.find(' '));
    tag = line.substr(last_space + 1, end - last_space);
  }
  if (token.empty()) throw Error(where(path, number) + ": empty token");
  if (tag.empty() || tag.find_first_of(" \t") != std::string_view::npos)
    throw Error(where(path, number) + ": bad tag '" + quote_excerpt(std::string(tag), 40) + "'");
  if (s.tokens.size() >= kMaxSentenceTokens)
    throw Error(where(path, number) + ": a sentence of more than " + std::to_string(kMaxSentenceTokens) +
                " tokens (from line " + std::to_string(s.lines.front()) +
                "): a blank line ends each sentence of a tagged file");
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
    if (line.empty() || line.substr(0, 10) == "-DOCSTART-") {  // CoNLL-2003's document marks end a sentence
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

TaggedDataset parse_tagged(std::string_view contents, const fs::path& path, bool jsonl) {
  TaggedDataset d;
  d.source = path;
  if (contents.substr(0, 3) == "\xEF\xBB\xBF") contents.remove_prefix(3);
  if (contents.find('\0') != std::string_view::npos) throw Error(path.string() + ": binary data, not tagged text");
  if (jsonl || resolve_format(path, Format::Auto) == Format::Jsonl)
    read_jsonl(contents, path, d);
  else
    read_columns(contents, path, d);
  return d;
}

TaggedDataset select_sentences(const TaggedDataset& d, uint64_t seed, int64_t n, const std::string& flag) {
  if (n < 0 || static_cast<size_t>(n) > d.size())
    throw Error(flag + " " + std::to_string(n) + ": " + d.source.string() + " has only " + std::to_string(d.size()) +
                " sentences");
  TaggedDataset some;
  some.source = d.source;
  const std::vector<size_t> order = shuffled_indices(d.size(), seed);
  for (int64_t i = 0; i < n; ++i) some.sentences.push_back(d.sentences[order[static_cast<size_t>(i)]]);
  return some;
}

std::vector<std::string> tag_set(const TaggedDataset& d) {
  std::set<std::string> tags;
  for (const auto& s : d.sentences) tags.insert(s.tags.begin(), s.tags.end());
  return {tags.begin(), tags.end()};
}

}  // namespace bertune::data
