#include "train/plot.h"

#include <zlib.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <map>

#include "io/atomic_file.h"
#include "util/error.h"

namespace bertune::train {

namespace {

void put_u32(std::string& s, uint32_t v) {
  for (int i = 3; i >= 0; --i) s.push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}
uint32_t get_u32(const std::string& s, size_t at) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v = (v << 8) | static_cast<uint8_t>(s.at(at + i));
  return v;
}

void chunk(std::string& png, const char type[4], const std::string& data) {
  put_u32(png, static_cast<uint32_t>(data.size()));
  std::string body(type, 4);
  body += data;
  png += body;
  put_u32(png, static_cast<uint32_t>(crc32(0, reinterpret_cast<const Bytef*>(body.data()), body.size())));
}

// 5x7 glyphs, one byte per row, bit 4 = leftmost pixel.
const std::map<char, std::array<uint8_t, 7>>& font() {
  static const std::map<char, std::array<uint8_t, 7>> f = {
      {'0', {0x0E, 0x11, 0x13, 0x15, 0x19, 0x11, 0x0E}}, {'1', {0x04, 0x0C, 0x04, 0x04, 0x04, 0x04, 0x0E}},
      {'2', {0x0E, 0x11, 0x01, 0x02, 0x04, 0x08, 0x1F}}, {'3', {0x1F, 0x02, 0x04, 0x02, 0x01, 0x11, 0x0E}},
      {'4', {0x02, 0x06, 0x0A, 0x12, 0x1F, 0x02, 0x02}}, {'5', {0x1F, 0x10, 0x1E, 0x01, 0x01, 0x11, 0x0E}},
      {'6', {0x06, 0x08, 0x10, 0x1E, 0x11, 0x11, 0x0E}}, {'7', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x08, 0x08}},
      {'8', {0x0E, 0x11, 0x11, 0x0E, 0x11, 0x11, 0x0E}}, {'9', {0x0E, 0x11, 0x11, 0x0F, 0x01, 0x02, 0x0C}},
      {'A', {0x0E, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}}, {'B', {0x1E, 0x11, 0x11, 0x1E, 0x11, 0x11, 0x1E}},
      {'C', {0x0E, 0x11, 0x10, 0x10, 0x10, 0x11, 0x0E}}, {'D', {0x1C, 0x12, 0x11, 0x11, 0x11, 0x12, 0x1C}},
      {'E', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x1F}}, {'F', {0x1F, 0x10, 0x10, 0x1E, 0x10, 0x10, 0x10}},
      {'G', {0x0E, 0x11, 0x10, 0x17, 0x11, 0x11, 0x0F}}, {'H', {0x11, 0x11, 0x11, 0x1F, 0x11, 0x11, 0x11}},
      {'I', {0x0E, 0x04, 0x04, 0x04, 0x04, 0x04, 0x0E}}, {'J', {0x07, 0x02, 0x02, 0x02, 0x02, 0x12, 0x0C}},
      {'K', {0x11, 0x12, 0x14, 0x18, 0x14, 0x12, 0x11}}, {'L', {0x10, 0x10, 0x10, 0x10, 0x10, 0x10, 0x1F}},
      {'M', {0x11, 0x1B, 0x15, 0x15, 0x11, 0x11, 0x11}}, {'N', {0x11, 0x11, 0x19, 0x15, 0x13, 0x11, 0x11}},
      {'O', {0x0E, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'P', {0x1E, 0x11, 0x11, 0x1E, 0x10, 0x10, 0x10}},
      {'Q', {0x0E, 0x11, 0x11, 0x11, 0x15, 0x12, 0x0D}}, {'R', {0x1E, 0x11, 0x11, 0x1E, 0x14, 0x12, 0x11}},
      {'S', {0x0F, 0x10, 0x10, 0x0E, 0x01, 0x01, 0x1E}}, {'T', {0x1F, 0x04, 0x04, 0x04, 0x04, 0x04, 0x04}},
      {'U', {0x11, 0x11, 0x11, 0x11, 0x11, 0x11, 0x0E}}, {'V', {0x11, 0x11, 0x11, 0x11, 0x11, 0x0A, 0x04}},
      {'W', {0x11, 0x11, 0x11, 0x15, 0x15, 0x15, 0x0A}}, {'X', {0x11, 0x11, 0x0A, 0x04, 0x0A, 0x11, 0x11}},
      {'Y', {0x11, 0x11, 0x11, 0x0A, 0x04, 0x04, 0x04}}, {'Z', {0x1F, 0x01, 0x02, 0x04, 0x08, 0x10, 0x1F}},
      {'.', {0x00, 0x00, 0x00, 0x00, 0x00, 0x0C, 0x0C}}, {'-', {0x00, 0x00, 0x00, 0x1F, 0x00, 0x00, 0x00}},
      {'+', {0x00, 0x04, 0x04, 0x1F, 0x04, 0x04, 0x00}}, {'(', {0x02, 0x04, 0x08, 0x08, 0x08, 0x04, 0x02}},
      {')', {0x08, 0x04, 0x02, 0x02, 0x02, 0x04, 0x08}}, {'%', {0x18, 0x19, 0x02, 0x04, 0x08, 0x13, 0x03}},
      {'/', {0x00, 0x01, 0x02, 0x04, 0x08, 0x10, 0x00}}, {':', {0x00, 0x0C, 0x0C, 0x00, 0x0C, 0x0C, 0x00}},
      {',', {0x00, 0x00, 0x00, 0x00, 0x0C, 0x04, 0x08}}, {'_', {0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x1F}},
      {'=', {0x00, 0x00, 0x1F, 0x00, 0x1F, 0x00, 0x00}}, {' ', {0, 0, 0, 0, 0, 0, 0}},
  };
  return f;
}

struct Canvas {
  int w, h;
  std::vector<uint8_t> px;
  Canvas(int w_, int h_) : w(w_), h(h_), px(static_cast<size_t>(w_) * h_ * 3, 255) {}
  void set(int x, int y, uint32_t rgb) {
    if (x < 0 || y < 0 || x >= w || y >= h) return;
    uint8_t* p = &px[(static_cast<size_t>(y) * w + x) * 3];
    p[0] = (rgb >> 16) & 0xff, p[1] = (rgb >> 8) & 0xff, p[2] = rgb & 0xff;
  }
  void rect(int x0, int y0, int x1, int y1, uint32_t rgb) {
    for (int y = y0; y <= y1; ++y)
      for (int x = x0; x <= x1; ++x) set(x, y, rgb);
  }
  void line(int x0, int y0, int x1, int y1, uint32_t rgb, int thick = 1) {
    int dx = std::abs(x1 - x0), dy = -std::abs(y1 - y0), sx = x0 < x1 ? 1 : -1, sy = y0 < y1 ? 1 : -1, err = dx + dy;
    for (;;) {
      rect(x0 - thick / 2, y0 - thick / 2, x0 + (thick - 1) / 2, y0 + (thick - 1) / 2, rgb);
      if (x0 == x1 && y0 == y1) break;
      int e2 = 2 * err;
      if (e2 >= dy) err += dy, x0 += sx;
      if (e2 <= dx) err += dx, y0 += sy;
    }
  }
  // Text at scale s; returns the width drawn.
  int text(int x, int y, const std::string& s, uint32_t rgb, int scale = 2) {
    int cx = x;
    for (char c : s) {
      char u = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      auto it = font().find(u);
      if (it != font().end())
        for (int r = 0; r < 7; ++r)
          for (int col = 0; col < 5; ++col)
            if (it->second[r] & (0x10 >> col)) rect(cx + col * scale, y + r * scale, cx + col * scale + scale - 1, y + r * scale + scale - 1, rgb);
      cx += 6 * scale;
    }
    return cx - x;
  }
  static int text_width(const std::string& s, int scale = 2) { return static_cast<int>(s.size()) * 6 * scale; }
};

std::string tick_label(double v, double step) {
  char buf[32];
  int decimals = step >= 1 ? 0 : std::min(4, static_cast<int>(std::ceil(-std::log10(step))));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
  return buf;
}

double nice_step(double range, int target) {
  double raw = range / target, mag = std::pow(10.0, std::floor(std::log10(raw))), f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

}  // namespace

std::string encode_png(const std::vector<uint8_t>& rgb, int width, int height) {
  std::string raw;
  raw.reserve(static_cast<size_t>(height) * (width * 3 + 1));
  for (int y = 0; y < height; ++y) {
    raw.push_back(0);  // filter: none
    raw.append(reinterpret_cast<const char*>(&rgb[static_cast<size_t>(y) * width * 3]), static_cast<size_t>(width) * 3);
  }
  uLongf size = compressBound(raw.size());
  std::string z(size, '\0');
  if (compress2(reinterpret_cast<Bytef*>(z.data()), &size, reinterpret_cast<const Bytef*>(raw.data()), raw.size(), 9) != Z_OK)
    throw Error("PNG: deflate failed");
  z.resize(size);
  std::string png("\x89PNG\r\n\x1a\n", 8);
  std::string ihdr;
  put_u32(ihdr, static_cast<uint32_t>(width));
  put_u32(ihdr, static_cast<uint32_t>(height));
  ihdr += std::string("\x08\x02\x00\x00\x00", 5);  // 8-bit RGB, deflate, no filter method, no interlace
  chunk(png, "IHDR", ihdr);
  chunk(png, "IDAT", z);
  chunk(png, "IEND", "");
  return png;
}

std::vector<uint8_t> decode_png_rgb(const std::string& png, int* width, int* height) {
  if (png.size() < 33 || png.compare(0, 8, std::string("\x89PNG\r\n\x1a\n", 8)) != 0) throw Error("not a PNG");
  size_t at = 8;
  std::string z;
  int w = 0, h = 0;
  while (at + 12 <= png.size()) {
    uint32_t len = get_u32(png, at);
    std::string type = png.substr(at + 4, 4);
    if (at + 12 + len > png.size()) throw Error("PNG: chunk past the end");
    uint32_t crc = get_u32(png, at + 8 + len);
    if (crc != crc32(0, reinterpret_cast<const Bytef*>(png.data() + at + 4), len + 4)) throw Error("PNG: bad CRC in " + type);
    if (type == "IHDR") w = static_cast<int>(get_u32(png, at + 8)), h = static_cast<int>(get_u32(png, at + 12));
    if (type == "IDAT") z += png.substr(at + 8, len);
    at += 12 + len;
  }
  std::string raw(static_cast<size_t>(h) * (w * 3 + 1), '\0');
  uLongf size = raw.size();
  if (uncompress(reinterpret_cast<Bytef*>(raw.data()), &size, reinterpret_cast<const Bytef*>(z.data()), z.size()) != Z_OK)
    throw Error("PNG: inflate failed");
  std::vector<uint8_t> rgb;
  for (int y = 0; y < h; ++y) rgb.insert(rgb.end(), raw.begin() + y * (w * 3 + 1) + 1, raw.begin() + (y + 1) * (w * 3 + 1));
  *width = w;
  *height = h;
  return rgb;
}

void write_line_charts_png(const std::filesystem::path& path, const std::vector<Panel>& panels,
                           const std::string& x_label, int pw, int ph,
                           const std::vector<std::string>& x_tick_labels) {
  const int legend_h = 60;
  Canvas c(pw * static_cast<int>(panels.size()), ph + legend_h);
  const uint32_t ink = 0x222222, grid = 0xE3E3E3, axis = 0x555555;
  size_t max_points = 0;
  for (const auto& p : panels)
    for (const auto& s : p.series) max_points = std::max(max_points, s.y.size());
  const int n = std::max<int>(2, static_cast<int>(max_points));

  for (size_t pi = 0; pi < panels.size(); ++pi) {
    const Panel& p = panels[pi];
    const int ox = static_cast<int>(pi) * pw;
    const int left = ox + 90, right = ox + pw - 30, top = 70, bottom = ph - 60;
    double lo = INFINITY, hi = -INFINITY;
    for (const auto& s : p.series)
      for (double v : s.y)
        if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
    if (!std::isfinite(lo)) lo = 0, hi = 1;
    if (hi - lo < 1e-9) lo -= 0.5 * std::max(1e-3, std::fabs(lo) * 0.05), hi += 0.5 * std::max(1e-3, std::fabs(hi) * 0.05);
    double step = nice_step(hi - lo, 5);
    lo = std::floor(lo / step) * step;
    hi = std::ceil(hi / step) * step;
    auto X = [&](double i) { return left + static_cast<int>(std::lround((i - 1) / (n - 1) * (right - left))); };
    auto Y = [&](double v) { return bottom - static_cast<int>(std::lround((v - lo) / (hi - lo) * (bottom - top))); };
    c.text(ox + (pw - Canvas::text_width(p.title)) / 2, 15, p.title, ink);
    for (double v = lo; v <= hi + step * 0.5; v += step) {
      c.line(left, Y(v), right, Y(v), grid);
      std::string t = tick_label(v, step);
      c.text(left - 8 - Canvas::text_width(t), Y(v) - 7, t, axis);
    }
    for (int i = 1; i <= n; ++i) {
      c.line(X(i), top, X(i), bottom, grid);
      std::string t = static_cast<size_t>(i) <= x_tick_labels.size() ? x_tick_labels[i - 1] : std::to_string(i);
      c.text(X(i) - Canvas::text_width(t) / 2, bottom + 8, t, axis);
    }
    c.line(left, top, left, bottom, axis);
    c.line(left, bottom, right, bottom, axis);
    c.text(left + (right - left - Canvas::text_width(x_label)) / 2, bottom + 30, x_label, ink);
    // y label, written horizontally above the axis (the 5x7 font has no rotation)
    c.text(ox + 10, top - 30, p.y_label, axis);
    for (const auto& s : p.series) {
      int px = -1, py = -1;
      for (size_t i = 0; i < s.y.size(); ++i) {
        if (!std::isfinite(s.y[i])) { px = -1; continue; }
        int x = X(static_cast<double>(i + 1)), y = Y(s.y[i]);
        if (px >= 0) c.line(px, py, x, y, s.rgb, 3);
        c.rect(x - 4, y - 4, x + 4, y + 4, s.rgb);
        px = x, py = y;
      }
    }
  }
  // Legend: the series of the first panel (all panels share them).
  if (!panels.empty()) {
    int x = 20;
    const int y = ph + 20;
    for (const auto& s : panels[0].series) {
      c.rect(x, y + 2, x + 24, y + 11, s.rgb);
      x += 32 + c.text(x + 32, y, s.name, ink) + 30;
    }
  }
  io::write_file_atomic(path, encode_png(c.px, c.w, c.h));
}

}  // namespace bertune::train
