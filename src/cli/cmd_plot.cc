// `bertune plot TABLE.tsv --out CHART.png|CHART.svg --x COLUMN --y COLUMN[,COLUMN...]`: a line
// chart of a tab-separated table with a header row (e.g. the pretraining curve of
// scripts/pretrain-curve), drawn by the same renderer as `bertune compare`.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "cli/commands.h"
#include "cli/validators.h"
#include "io/atomic_file.h"
#include "io/read_file.h"
#include "train/plot.h"
#include "util/error.h"

namespace bertune::cli {
namespace {

struct Table {
  std::vector<std::string> header;
  std::vector<std::vector<std::string>> rows;
  size_t column(const std::string& name, const std::string& file) const {
    for (size_t i = 0; i < header.size(); ++i)
      if (header[i] == name) return i;
    std::string present;
    for (const std::string& h : header) present += (present.empty() ? "'" : ", '") + h + "'";
    throw Error(file + ":1: no column '" + name + "' in the header (columns: " + present + ")");
  }
};

Table read_table(const std::string& file) {
  std::istringstream in(io::read_text_file(file));  // UTF-16 named, .gz read
  Table t;
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    auto cells = split_list(line, '\t');
    if (t.header.empty()) {
      t.header = std::move(cells);
    } else if (cells.size() != t.header.size()) {
      throw Error(file + ":" + std::to_string(n) + ": " + std::to_string(cells.size()) + " cells, the header has " +
                  std::to_string(t.header.size()));
    } else {
      t.rows.push_back(std::move(cells));
    }
  }
  if (t.rows.empty()) throw Error(file + ": no data rows under the header");
  return t;
}

double number(const std::string& cell, const std::string& file, size_t row) {
  try {
    size_t used = 0;
    double v = std::stod(cell, &used);
    if (used == cell.size()) return v;
  } catch (const std::exception&) {
  }
  throw Error(file + ":" + std::to_string(row + 2) + ": '" + cell + "' is not a number");
}

struct PlotArgs {
  std::string table, out, x, y, title;
};

// Refused before any work: an --out whose extension names no chart format, or one that is the
// input table itself; a --y without a column ("", "a,,b": a chart without that series).
void check_args(const PlotArgs& a) {
  const std::vector<std::string> ys = split_list(a.y);
  if (ys.empty() || std::find(ys.begin(), ys.end(), "") != ys.end())
    throw Error("--y '" + a.y + "': an empty column name; give --y COLUMN[,COLUMN...]");
  if (!train::chart_format(a.out))
    throw Error("--out " + a.out + ": the extension picks the chart format; use .png or .svg");
  std::error_code ec;
  if (std::filesystem::equivalent(a.table, a.out, ec))
    throw Error("--out " + a.out + ": that is the input table; write the chart to another file");
  io::require_replaceable_file(a.out, "--out");
}

void run_plot(const PlotArgs& a) {
  check_args(a);
  const Table t = read_table(a.table);
  const size_t x = t.column(a.x, a.table);
  train::Panel panel{a.title.empty() ? a.y : a.title, a.y, {}};
  const uint32_t colours[] = {0x1f77b4, 0xd62728, 0x2ca02c, 0x9467bd, 0xff7f0e};
  std::vector<std::string> ticks;
  for (const auto& row : t.rows) ticks.push_back(row[x]);
  for (const std::string& name : split_list(a.y)) {
    const size_t col = t.column(name, a.table);
    train::Series s{name, {}, colours[panel.series.size() % 5]};
    for (size_t r = 0; r < t.rows.size(); ++r) s.y.push_back(number(t.rows[r][col], a.table, r));
    panel.series.push_back(std::move(s));
  }
  train::write_line_charts(a.out, {panel}, a.x, 760, 440, ticks);
  std::printf("wrote %s (%zu points)\n", a.out.c_str(), t.rows.size());
}

}  // namespace

void add_plot_command(CLI::App& app) {
  auto args = std::make_shared<PlotArgs>();
  auto* cmd = app.add_subcommand("plot", "Draw a line chart (PNG or SVG) of a tab-separated table with a header row");
  cmd->add_option("table", args->table, "TSV file, header row first")->required();
  cmd->add_option("--out", args->out, "chart to write: .png or .svg (the extension picks the format)")->required();
  cmd->add_option("--x", args->x, "column of the x tick labels (points are evenly spaced)")->required();
  cmd->add_option("--y", args->y, "column(s) to draw, comma-separated")->required();
  cmd->add_option("--title", args->title, "chart title (default: the y columns)");
  cmd->callback([args] { run_plot(*args); });
}

}  // namespace bertune::cli
