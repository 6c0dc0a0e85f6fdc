#include <gtest/gtest.h>

#include <filesystem>

#include "io/atomic_file.h"
#include "train/plot.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace bertune;
using namespace bertune::train;

TEST(Png, EncodesAndDecodesPixelsExactly) {
  std::vector<uint8_t> rgb(7 * 3 * 3);
  for (size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<uint8_t>(i * 37);
  std::string png = encode_png(rgb, 7, 3);
  int w = 0, h = 0;
  EXPECT_EQ(decode_png_rgb(png, &w, &h), rgb);
  EXPECT_EQ(w, 7);
  EXPECT_EQ(h, 3);
  png[40] ^= 1;  // corrupt IDAT data: the CRC must catch it
  EXPECT_THROW(decode_png_rgb(png, &w, &h), Error);
}

TEST(Png, ChartDrawsEverySeriesColour) {
  fs::path f = fs::temp_directory_path() / "bertune_plot_test.png";
  std::vector<Panel> panels = {
      {"Train time per epoch", "seconds", {{"max_length", {300, 298}, 0xD62728}, {"packed", {40, 41}, 0x2CA02C}}},
      {"Eval accuracy", "accuracy", {{"max_length", {0.71, 0.78}, 0xD62728}, {"packed", {0.72, 0.79}, 0x2CA02C}}}};
  write_line_charts_png(f, panels, "epoch", 300, 200);
  int w = 0, h = 0;
  auto rgb = decode_png_rgb(io::read_file(f), &w, &h);
  EXPECT_EQ(w, 600);
  EXPECT_EQ(h, 260);
  auto count = [&](uint32_t c) {
    size_t n = 0;
    for (size_t i = 0; i + 2 < rgb.size(); i += 3)
      n += rgb[i] == (c >> 16) && rgb[i + 1] == ((c >> 8) & 0xff) && rgb[i + 2] == (c & 0xff);
    return n;
  };
  EXPECT_GT(count(0xD62728), 100u);
  EXPECT_GT(count(0x2CA02C), 100u);
  fs::remove(f);
}
