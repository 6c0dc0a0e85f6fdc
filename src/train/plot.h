#pragma once
// Line charts for `bertune compare` and `bertune plot`, drawn with cairo and written as PNG or
// SVG: the output path's extension (.png, .svg) picks the format.
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

namespace bertune::train {

struct Series {
  std::string name;
  std::vector<double> y;  // y[i] belongs to x = i + 1 (epoch); NaN: no point
  uint32_t rgb = 0;
};

struct Panel {
  std::string title;
  std::string y_label;
  std::vector<Series> series;
};

enum class ChartFormat { kPng, kSvg };

// The format PATH's extension names (.png or .svg, any case), or nullopt for any other.
std::optional<ChartFormat> chart_format(const std::filesystem::path& path);

// Panels side by side, shared legend below; point i sits at x = i + 1, labelled i + 1 or
// x_tick_labels[i] (e.g. minutes, when the points are evenly spaced in them). The image is
// panel_width * panels wide and panel_height + 60 high (pixels for PNG, points for SVG). The
// file is written atomically; an extension other than .png or .svg throws an Error naming it.
// In the SVG cairo draws the text as glyph outlines; the titles, axis labels and series names
// are also written as plain text in its <title> and <desc>.
void write_line_charts(const std::filesystem::path& path, const std::vector<Panel>& panels,
                       const std::string& x_label, int panel_width = 560, int panel_height = 400,
                       const std::vector<std::string>& x_tick_labels = {});

}  // namespace bertune::train
