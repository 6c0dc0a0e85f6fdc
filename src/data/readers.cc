// TSV / CSV / JSONL readers. Each reads the whole file into memory and walks
// it once; fields are string_views into that buffer until a row is accepted,
// so a 150K-row NSMC split costs one allocation per kept document.
#include <algorithm>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <limits>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <vector>

#include "data/dataset.h"
#include "io/read_file.h"
#include "util/error.h"

namespace bertune::data {
namespace fs = std::filesystem;

size_t find_invalid_utf8(std::string_view s) {
  const auto* p = reinterpret_cast<const unsigned char*>(s.data());
  const size_t n = s.size();
  size_t i = 0;
  while (i < n) {
    unsigned char c = p[i];
    if (c < 0x80) {
      ++i;
      // ASCII fast path, eight bytes at a time, entered only after an ASCII
      // byte: NSMC is mostly Hangul with short ASCII runs between words.
      while (i + 8 <= n) {
        uint64_t chunk;
        std::memcpy(&chunk, p + i, 8);
        if (chunk & 0x8080808080808080ULL) break;
        i += 8;
      }
      continue;
    }
    // Hangul syllables and most CJK: a three-byte form whose lead byte
    // needs no second-byte range check (not E0 overlongs, not ED surrogates).
    if (c >= 0xe1 && c != 0xed && c <= 0xef && i + 3 <= n && (p[i + 1] & 0xc0) == 0x80 &&
        (p[i + 2] & 0xc0) == 0x80) {
      i += 3;
      continue;
    }
    size_t len;
    unsigned char lo = 0x80, hi = 0xbf;  // allowed range of the second byte
    if (c >= 0xc2 && c <= 0xdf) {
      len = 2;
    } else if (c >= 0xe0 && c <= 0xef) {
      len = 3;
      if (c == 0xe0) lo = 0xa0;       // overlong
      else if (c == 0xed) hi = 0x9f;  // UTF-16 surrogates
    } else if (c >= 0xf0 && c <= 0xf4) {
      len = 4;
      if (c == 0xf0) lo = 0x90;       // overlong
      else if (c == 0xf4) hi = 0x8f;  // past U+10FFFF
    } else {
      return i;  // continuation byte without a lead, 0xc0/0xc1, 0xf5..0xff
    }
    if (i + len > n) return i;
    if (p[i + 1] < lo || p[i + 1] > hi) return i;
    for (size_t k = 2; k < len; ++k)
      if ((p[i + k] & 0xc0) != 0x80) return i;
    i += len;
  }
  return std::string_view::npos;
}

size_t count_code_points(std::string_view s) {
  size_t count = 0;
  for (char c : s) count += (static_cast<unsigned char>(c) & 0xc0) != 0x80;
  return count;
}

void require_utf8(std::string_view text, const std::string& where) {
  if (size_t at = find_invalid_utf8(text); at != std::string_view::npos)
    throw Error(where + ": invalid UTF-8 at byte " + std::to_string(at) +
                " (convert the text to UTF-8, e.g. iconv -f cp949 -t utf-8)");
}

std::vector<std::string> read_text_lines(const fs::path& path) {
  std::string all = io::read_text_file(path);
  std::vector<std::string> lines;
  size_t begin = 0;
  int64_t number = 0;
  while (begin < all.size()) {
    size_t end = all.find('\n', begin);
    if (end == std::string::npos) end = all.size();
    size_t stop = end;
    if (stop > begin && all[stop - 1] == '\r') --stop;
    ++number;
    std::string_view line(all.data() + begin, stop - begin);
    require_utf8(line, path.string() + ":" + std::to_string(number));
    lines.emplace_back(line);
    begin = end + 1;
  }
  return lines;
}

Format parse_format(std::string_view name) {
  if (name == "auto") return Format::Auto;
  if (name == "tsv") return Format::Tsv;
  if (name == "csv") return Format::Csv;
  if (name == "jsonl" || name == "json") return Format::Jsonl;
  throw Error("unknown data format '" + std::string(name) + "' (expected auto, tsv, csv or jsonl)");
}

const char* format_name(Format format) {
  switch (format) {
    case Format::Auto: return "auto";
    case Format::Tsv: return "tsv";
    case Format::Csv: return "csv";
    case Format::Jsonl: return "jsonl";
  }
  return "?";
}

Format resolve_format(const fs::path& path, Format format) {
  if (format != Format::Auto) return format;
  // "reviews.csv.gz": the format is that of the name without .gz (read_text_file decompresses).
  std::string ext = path.extension().string();
  if (ext == ".gz" || ext == ".GZ") ext = path.stem().extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == ".csv") return Format::Csv;
  if (ext == ".jsonl" || ext == ".json" || ext == ".ndjson") return Format::Jsonl;
  return Format::Tsv;  // .tsv, .txt (NSMC's ratings_*.txt) and anything else
}

std::string describe_skipped(const Dataset& d, size_t max_listed) {
  if (d.skipped.empty()) return {};
  std::string s = "skipped " + std::to_string(d.skipped.size()) + " bad row" +
                  (d.skipped.size() == 1 ? "" : "s") + " of " + d.source.string() + ":";
  for (size_t i = 0; i < d.skipped.size() && i < max_listed; ++i)
    s += (i ? "; line " : " line ") + std::to_string(d.skipped[i].line) + ": " + d.skipped[i].problem;
  if (d.skipped.size() > max_listed) s += "; ...";
  return s;
}

namespace {

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r')) s.remove_suffix(1);
  return s;
}

// Python's int() accepts surrounding whitespace and a sign; so do we.
bool parse_int(std::string_view s, int64_t& out) {
  s = trim(s);
  bool negative = false;
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) {
    negative = s.front() == '-';
    s.remove_prefix(1);
  }
  if (s.empty() || s.size() > 18) return false;
  int64_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return false;
    v = v * 10 + (c - '0');
  }
  out = negative ? -v : v;
  return true;
}

// An integer as parse_int reads it, of any length.
bool is_digits(std::string_view s) {
  s = trim(s);
  if (!s.empty() && (s.front() == '+' || s.front() == '-')) s.remove_prefix(1);
  return !s.empty() && s.find_first_not_of("0123456789") == std::string_view::npos;
}

std::string shorten(std::string_view s) {
  constexpr size_t kMax = 40;
  if (s.size() <= kMax) return std::string(s);
  size_t cut = kMax;
  while (cut > 0 && (static_cast<unsigned char>(s[cut]) & 0xc0) == 0x80) --cut;  // keep UTF-8 whole
  return std::string(s.substr(0, cut)) + "...";
}

// Collects rows, and decides for each bad one whether to stop or skip.
class RowSink {
 public:
  RowSink(const fs::path& path, const ReadOptions& options, Dataset& out)
      : path_(path), options_(options), out_(out) {}

  [[noreturn]] void fatal(int64_t line, const std::string& problem) const {
    throw Error(path_.string() + ":" + std::to_string(line) + ": " + problem);
  }

  void bad(int64_t line, std::string problem) {
    if (!options_.skip_bad_rows) fatal(line, problem);
    out_.skipped.push_back({line, std::move(problem)});
  }

  bool labelled() const { return !options_.label_column.empty(); }

  // Checks a label given as text; returns false (after reporting) when bad.
  bool check_label_text(int64_t line, std::string_view text, Example& e) {
    if (options_.label_kind == LabelKind::Score) return check_score_text(line, text, e);
    if (options_.label_kind == LabelKind::LabelSet) {
      e.targets.assign(size_t(std::max(options_.num_labels, 0)), 0.f);
      if (trim(text).empty()) return true;  // no label applies
      for (size_t start = 0;;) {
        const size_t comma = text.find(',', start);
        if (!add_label_of_set(line, text.substr(start, comma == std::string_view::npos ? comma : comma - start), e))
          return false;
        if (comma == std::string_view::npos) return true;
        start = comma + 1;
      }
    }
    return check_class_text(line, text, e.label);
  }

  bool check_score_text(int64_t line, std::string_view text, Example& e) {
    const std::string_view t = trim(text);
    float v = 0.f;
    auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), v);
    if (t.empty() || ec != std::errc() || end != t.data() + t.size() || !std::isfinite(v)) {
      bad(line, "label '" + shorten(text) + "' in column '" + options_.label_column +
                    "' is not a finite number (a regression label)");
      return false;
    }
    e.targets.assign(1, v);
    return true;
  }

  // One label of a multi-label set, by name or id: sets its target to 1.
  bool add_label_of_set(int64_t line, std::string_view written, Example& e) {
    const std::string_view name = trim(written);
    const auto& names = options_.label_names;
    int64_t id = -1;
    if (auto it = std::find(names.begin(), names.end(), name); it != names.end())
      id = it - names.begin();
    else if (!parse_int(name, id))
      id = -1;
    if (id < 0 || id >= options_.num_labels) {
      std::string known;
      for (size_t i = 0; i < names.size() && i < 10; ++i) known += (i ? ", " : "") + names[i];
      if (names.size() > 10) known += ", ...";
      bad(line, "label '" + shorten(name) + "' in column '" + options_.label_column + "' is neither a label id in [0, " +
                    std::to_string(options_.num_labels) + ") nor a label name" +
                    (known.empty() ? std::string() : " (" + known + ")"));
      return false;
    }
    e.targets[size_t(id)] = 1.f;
    return true;
  }

  // A JSONL label of a Score or LabelSet file; returns false (after reporting) when bad.
  bool check_label_json(int64_t line, const nlohmann::json& l, Example& e) {
    if (l.is_string()) return check_label_text(line, l.get_ref<const std::string&>(), e);
    if (options_.label_kind == LabelKind::Score && l.is_number()) {
      const double v = l.get<double>();
      if (std::isfinite(float(v))) {
        e.targets.assign(1, float(v));
        return true;
      }
    }
    if (options_.label_kind == LabelKind::LabelSet && l.is_array()) {
      const bool numbers = !l.empty() && std::all_of(l.begin(), l.end(), [](const auto& v) { return v.is_number(); });
      if (numbers) return check_target_vector(line, l, e);
      e.targets.assign(size_t(std::max(options_.num_labels, 0)), 0.f);
      for (const auto& v : l) {
        if (!v.is_string()) {
          bad(line, "label list in key '" + options_.label_column + "' holds " + shorten(v.dump()) +
                        ": a list is of label names (strings) or of num_labels numbers in [0, 1]");
          return false;
        }
        if (!add_label_of_set(line, v.get_ref<const std::string&>(), e)) return false;
      }
      return true;
    }
    bad(line, "label " + shorten(l.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)) + " in key '" +
                  options_.label_column + "' is not " +
                  (options_.label_kind == LabelKind::Score ? "a finite number (a regression label)"
                                                           : "a list of labels (multi-label)"));
    return false;
  }

  // [0, 1, 1, 0]: one number in [0, 1] per label.
  bool check_target_vector(int64_t line, const nlohmann::json& l, Example& e) {
    if (static_cast<int>(l.size()) != options_.num_labels) {
      bad(line, "label list in key '" + options_.label_column + "' has " + std::to_string(l.size()) +
                    " numbers; the model has " + std::to_string(options_.num_labels) + " labels");
      return false;
    }
    e.targets.clear();
    for (const auto& v : l) {
      const double x = v.get<double>();
      if (!(x >= 0.0 && x <= 1.0)) {
        bad(line, "label list in key '" + options_.label_column + "' holds " + shorten(v.dump()) +
                      ", outside [0, 1]");
        return false;
      }
      e.targets.push_back(float(x));
    }
    return true;
  }

  bool check_class_text(int64_t line, std::string_view text, int& label) {
    int64_t v;
    if (!parse_int(text, v)) {
      if (is_digits(text)) return out_of_range(line, text);  // more digits than any label has
      bad(line, "label '" + shorten(text) + "' in column '" + options_.label_column +
                    "' is not an integer");
      return false;
    }
    return check_label_value(line, v, label);
  }

  bool check_label_value(int64_t line, int64_t v, int& label) {
    if (v < 0 || (options_.num_labels > 0 && v >= options_.num_labels)) return out_of_range(line, std::to_string(v));
    label = static_cast<int>(v);
    return true;
  }

  // "label 99999999999999999999 outside [0, 2)": the label as the file writes it.
  bool out_of_range(int64_t line, std::string_view written) {
    std::string range = options_.num_labels > 0 ? "[0, " + std::to_string(options_.num_labels) + ")" : "[0, inf)";
    bad(line, "label " + shorten(trim(written)) + " outside " + range);
    return false;
  }

  void add(int64_t line, std::string_view text, Example& e) {
    if (size_t at = find_invalid_utf8(text); at != std::string_view::npos) {
      bad(line, "invalid UTF-8 in column '" + options_.text_column + "' at byte " +
                    std::to_string(at) + " of the field");
      return;
    }
    e.text = std::string(text);
    e.line = line;
    e.text_pair = std::move(pair_);
    out_.examples.push_back(std::move(e));
  }

  bool paired() const { return !options_.text_pair_column.empty(); }

  // The row's second text, kept for the next add(); false (after reporting) when it is
  // empty or not UTF-8: a pair with nothing on one side is no pair.
  bool take_pair(int64_t line, std::string_view pair) {
    const std::string& column = options_.text_pair_column;
    if (pair.empty()) {
      bad(line, "empty text pair in column '" + column + "'");
      return false;
    }
    if (size_t at = find_invalid_utf8(pair); at != std::string_view::npos) {
      bad(line, "invalid UTF-8 in column '" + column + "' at byte " + std::to_string(at) + " of the field");
      return false;
    }
    pair_.assign(pair);
    return true;
  }

  const ReadOptions& options() const { return options_; }

 private:
  const fs::path& path_;
  const ReadOptions& options_;
  Dataset& out_;
  std::string pair_;  // take_pair's text, moved into the next example
};

// Where the named columns sit in a header; missing columns are fatal because
// no row could ever be read.
struct ColumnIndex {
  size_t text = 0, label = 0, pair = 0;
};

ColumnIndex locate_columns(const std::vector<std::string>& header, RowSink& sink, int64_t line) {
  auto find = [&](const std::string& name) -> size_t {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return i;
    std::string found;
    for (size_t i = 0; i < header.size() && i < 20; ++i) found += (i ? ", " : "") + ("'" + shorten(header[i]) + "'");
    if (header.size() > 20) found += ", ... (" + std::to_string(header.size()) + " columns)";
    sink.fatal(line, "no column '" + name + "' in the header (columns: " + found + ")");
  };
  ColumnIndex c;
  c.text = find(sink.options().text_column);
  if (sink.labelled()) c.label = find(sink.options().label_column);
  if (sink.paired()) c.pair = find(sink.options().text_pair_column);
  return c;
}

std::string_view strip_bom(std::string_view data) {
  if (data.substr(0, 3) == "\xEF\xBB\xBF") data.remove_prefix(3);
  return data;
}

// One physical line at a time, without its LF or CRLF.
class LineCursor {
 public:
  explicit LineCursor(std::string_view data) : data_(data) {}
  bool next(std::string_view& line) {
    if (pos_ >= data_.size()) return false;
    const char* start = data_.data() + pos_;
    const void* nl = std::memchr(start, '\n', data_.size() - pos_);
    size_t len = nl ? static_cast<size_t>(static_cast<const char*>(nl) - start) : data_.size() - pos_;
    pos_ += len + (nl ? 1 : 0);
    line = std::string_view(start, len);
    if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
    ++line_number_;
    return true;
  }
  int64_t line_number() const { return line_number_; }

 private:
  std::string_view data_;
  size_t pos_ = 0;
  int64_t line_number_ = 0;
};

void split_tabs(std::string_view line, std::vector<std::string_view>& fields) {
  fields.clear();
  size_t start = 0;
  for (;;) {
    size_t tab = line.find('\t', start);
    if (tab == std::string_view::npos) {
      fields.push_back(line.substr(start));
      return;
    }
    fields.push_back(line.substr(start, tab - start));
    start = tab + 1;
  }
}

void read_tsv(std::string_view data, RowSink& sink, const fs::path& path) {
  LineCursor cursor(data);
  std::string_view line;
  if (!cursor.next(line)) throw Error(path.string() + ": empty file (expected a header line)");
  std::vector<std::string_view> fields;
  split_tabs(line, fields);
  std::vector<std::string> header(fields.begin(), fields.end());
  ColumnIndex col = locate_columns(header, sink, 1);

  while (cursor.next(line)) {
    int64_t n = cursor.line_number();
    if (line.empty() && header.size() > 1) continue;  // blank line, as pandas skips it
    split_tabs(line, fields);
    if (fields.size() != header.size()) {
      sink.bad(n, "expected " + std::to_string(header.size()) + " tab-separated fields, found " +
                      std::to_string(fields.size()));
      continue;
    }
    Example e;
    if (sink.labelled() && !sink.check_label_text(n, fields[col.label], e)) continue;
    if (sink.paired() && !sink.take_pair(n, fields[col.pair])) continue;
    sink.add(n, fields[col.text], e);
  }
}

// RFC 4180 records. Fields are copied into reused buffers because quoted
// fields need their doubled quotes undone.
class CsvCursor {
 public:
  explicit CsvCursor(std::string_view data) : data_(data) {}

  // Reads the next record into fields. Returns false at end of input.
  // problem is set (and the record should be rejected) on malformed quoting;
  // an unterminated quote swallows the rest of the file.
  bool next(std::vector<std::string>& fields, size_t& count, std::string& problem) {
    problem.clear();
    count = 0;
    if (pos_ >= data_.size()) return false;
    record_line_ = line_;
    for (;;) {
      if (count == fields.size()) fields.emplace_back();
      std::string& field = fields[count++];
      field.clear();
      bool quoted = pos_ < data_.size() && data_[pos_] == '"';
      if (quoted) {
        ++pos_;
        for (;;) {
          size_t q = data_.find('"', pos_);
          if (q == std::string_view::npos) {
            problem = "unterminated quoted field (opened on line " + std::to_string(record_line_) +
                      ", runs to the end of the file)";
            count_newlines(pos_, data_.size());
            pos_ = data_.size();
            return true;
          }
          field.append(data_.substr(pos_, q - pos_));
          count_newlines(pos_, q);
          pos_ = q + 1;
          if (pos_ < data_.size() && data_[pos_] == '"') {  // "" inside quotes
            field.push_back('"');
            ++pos_;
            continue;
          }
          break;
        }
        if (pos_ < data_.size() && !at_field_end()) {
          if (problem.empty())
            problem = "unexpected text after the closing quote of field " + std::to_string(count);
          // Keep scanning to the field's end so the next record starts in step.
        }
      }
      while (pos_ < data_.size() && !at_field_end()) {
        size_t stop = data_.find_first_of(",\r\n", pos_);
        if (stop == std::string_view::npos) stop = data_.size();
        field.append(data_.substr(pos_, stop - pos_));
        pos_ = stop;
        if (pos_ < data_.size() && data_[pos_] == '\r' && !at_field_end()) field.push_back(data_[pos_++]);
      }
      if (pos_ >= data_.size()) return true;
      if (data_[pos_] == ',') {
        ++pos_;
        continue;
      }
      // CRLF or LF ends the record.
      if (data_[pos_] == '\r') ++pos_;
      ++pos_;
      ++line_;
      return true;
    }
  }
  int64_t record_line() const { return record_line_; }

 private:
  bool at_field_end() const {
    char c = data_[pos_];
    if (c == ',' || c == '\n') return true;
    return c == '\r' && pos_ + 1 < data_.size() && data_[pos_ + 1] == '\n';
  }
  void count_newlines(size_t from, size_t to) {
    for (size_t i = from; i < to; ++i) line_ += data_[i] == '\n';
  }
  std::string_view data_;
  size_t pos_ = 0;
  int64_t line_ = 1, record_line_ = 1;
};

void read_csv(std::string_view data, RowSink& sink, const fs::path& path) {
  CsvCursor cursor(data);
  std::vector<std::string> fields;
  size_t count;
  std::string problem;
  if (!cursor.next(fields, count, problem)) throw Error(path.string() + ": empty file (expected a header line)");
  if (!problem.empty()) sink.fatal(1, "header: " + problem);
  std::vector<std::string> header(fields.begin(), fields.begin() + static_cast<long>(count));
  ColumnIndex col = locate_columns(header, sink, 1);

  while (cursor.next(fields, count, problem)) {
    int64_t n = cursor.record_line();
    if (!problem.empty()) {
      sink.bad(n, problem);
      continue;
    }
    if (count == 1 && fields[0].empty() && header.size() > 1) continue;  // blank line
    if (count != header.size()) {
      sink.bad(n, "expected " + std::to_string(header.size()) + " comma-separated fields, found " +
                      std::to_string(count));
      continue;
    }
    Example e;
    if (sink.labelled() && !sink.check_label_text(n, fields[col.label], e)) continue;
    if (sink.paired() && !sink.take_pair(n, fields[col.pair])) continue;
    sink.add(n, fields[col.text], e);
  }
}

// nlohmann's DOM builder that also keeps how the row wrote the label when it is a number
// beyond 64-bit integers (99999999999999999999 is a double, 1e+20, to the library).
class JsonRowParser : public nlohmann::detail::json_sax_dom_parser<nlohmann::json> {
  using Base = nlohmann::detail::json_sax_dom_parser<nlohmann::json>;

 public:
  JsonRowParser(nlohmann::json& row, const std::string& label_key) : Base(row), label_key_(label_key) {}
  bool start_object(std::size_t n) { return ++depth_, Base::start_object(n); }
  bool end_object() { return --depth_, Base::end_object(); }
  bool key(std::string& k) {
    at_label_ = depth_ == 1 && k == label_key_;
    return Base::key(k);
  }
  bool number_float(double v, const std::string& written) {
    if (at_label_ && depth_ == 1) label_written = written;
    return Base::number_float(v, written);
  }
  std::string label_written;  // the label's text when it was read as a double

 private:
  const std::string& label_key_;
  int depth_ = 0;
  bool at_label_ = false;
};

// The string under `key` of a JSONL row, or null (reported as a bad row) when it is absent
// or not a string.
const std::string* string_key(const nlohmann::json& row, const std::string& key, RowSink& sink, int64_t n) {
  auto it = row.find(key);
  if (it == row.end()) {
    sink.bad(n, "no key '" + key + "'");
    return nullptr;
  }
  if (!it->is_string()) {
    sink.bad(n, "'" + key + "' is " + it->type_name() + ", not a string");
    return nullptr;
  }
  return &it->get_ref<const std::string&>();
}

void read_jsonl(std::string_view data, RowSink& sink) {
  using nlohmann::json;
  const ReadOptions& opt = sink.options();
  LineCursor cursor(data);
  std::string_view line;
  while (cursor.next(line)) {
    int64_t n = cursor.line_number();
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;  // blank line
    if (size_t at = find_invalid_utf8(line); at != std::string_view::npos) {
      sink.bad(n, "invalid UTF-8 at byte " + std::to_string(at) + " of the line");
      continue;
    }
    if (n == 1 && line.find_first_not_of(" \t") != std::string_view::npos &&
        line[line.find_first_not_of(" \t")] == '[')
      sink.fatal(n, "starts a JSON array; expected JSON Lines (one object per line)");
    json row;
    JsonRowParser parser(row, opt.label_column);
    try {
      json::sax_parse(line, &parser);
    } catch (const json::exception& e) {
      // nlohmann's message starts "[json.exception.parse_error.101] parse error at line 1, column 7: ..."
      // nlohmann quotes what it last read, which can be the whole line: cut it.
      std::string what = e.what();
      if (size_t colon = what.find("column"); colon != std::string::npos) what = what.substr(colon);
      sink.bad(n, "bad JSON (" + quote_excerpt(what, 160) + ")");
      continue;
    }
    if (!row.is_object()) {
      sink.bad(n, std::string("expected a JSON object, found ") + row.type_name());
      continue;
    }
    const std::string* text = string_key(row, opt.text_column, sink, n);
    if (!text) continue;
    Example e;
    int& label = e.label;
    if (sink.labelled()) {
      auto l = row.find(opt.label_column);
      if (l == row.end()) {
        sink.bad(n, "no key '" + opt.label_column + "'");
        continue;
      }
      if (opt.label_kind != LabelKind::Class) {
        if (!sink.check_label_json(n, *l, e)) continue;
      } else if (l->is_number_unsigned() && l->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        sink.out_of_range(n, l->dump());
        continue;
      } else if (l->is_number_integer()) {
        if (!sink.check_label_value(n, l->get<int64_t>(), label)) continue;
      } else if (l->is_number_float() && is_digits(parser.label_written)) {
        sink.out_of_range(n, parser.label_written);  // an integer too long for 64 bits
        continue;
      } else if (l->is_string()) {
        if (!sink.check_label_text(n, l->get_ref<const std::string&>(), e)) continue;
      } else {
        const std::string written = l->is_number_float() && !parser.label_written.empty()
                                        ? parser.label_written  // 1.50 as written, not 1.5
                                        : l->dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
        sink.bad(n, "label " + shorten(written) + " in key '" + opt.label_column + "' is not an integer");
        continue;
      }
    }
    if (sink.paired()) {
      const std::string* pair = string_key(row, opt.text_pair_column, sink, n);
      if (!pair || !sink.take_pair(n, *pair)) continue;
    }
    sink.add(n, *text, e);
  }
}

}  // namespace

Dataset read_dataset(const fs::path& path, const ReadOptions& options) {
  if (options.text_column.empty()) throw Error("no text column given for " + path.string());
  std::string contents = io::read_text_file(path);  // .gz transparently; a directory is an Error
  return parse_dataset(contents, path, options);
}

Dataset parse_dataset(std::string_view contents, const fs::path& path, const ReadOptions& options) {
  if (options.text_column.empty()) throw Error("no text column given for " + path.string());
  if (options.text_pair_column == options.text_column)
    throw Error(path.string() + ": the pair column '" + options.text_pair_column +
                "' is the text column too; a sentence pair reads its second text from another column");
  Dataset d;
  d.source = path;
  std::string_view data = strip_bom(contents);
  // A binary file (a model, an archive) would otherwise end in an error that
  // quotes its bytes to the terminal.
  if (const void* nul = std::memchr(data.data(), '\0', std::min<size_t>(data.size(), 8192)))
    throw Error(path.string() + ": binary data (a NUL byte at offset " +
                std::to_string(static_cast<const char*>(nul) - data.data()) + "), not a text table");
  // One row per line for TSV/JSONL (an upper bound for CSV): no regrowth.
  d.examples.reserve(static_cast<size_t>(std::count(data.begin(), data.end(), '\n')) + 1);
  RowSink sink(path, options, d);
  switch (resolve_format(path, options.format)) {
    case Format::Csv: read_csv(data, sink, path); break;
    case Format::Jsonl: read_jsonl(data, sink); break;
    default: read_tsv(data, sink, path); break;
  }
  return d;
}

}  // namespace bertune::data
