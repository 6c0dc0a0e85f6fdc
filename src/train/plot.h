#pragma once
// A small line-chart renderer for `bertune compare`, written straight to PNG (zlib does the
// deflate and CRC), so the picture needs no plotting stack. Text uses a built-in 5x7 font,
// upper case.
#include <cstdint>
#include <filesystem>
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

// Panels side by side, shared legend below; point i sits at x = i + 1, labelled i + 1 or
// x_tick_labels[i] (e.g. minutes, when the points are evenly spaced in them).
void write_line_charts_png(const std::filesystem::path& path, const std::vector<Panel>& panels,
                           const std::string& x_label, int panel_width = 560, int panel_height = 400,
                           const std::vector<std::string>& x_tick_labels = {});

// RGB8 image -> PNG bytes (color type 2, no interlace), and the reverse for tests.
std::string encode_png(const std::vector<uint8_t>& rgb, int width, int height);
std::vector<uint8_t> decode_png_rgb(const std::string& png, int* width, int* height);

}  // namespace bertune::train
