#include "train/plot.h"

#include <cairo-svg.h>
#include <cairo.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <memory>
#include <numbers>

#include "io/atomic_file.h"
#include "util/error.h"

namespace bertune::train {

namespace {

constexpr int kLegendHeight = 60;
constexpr uint32_t kInk = 0x222222, kAxis = 0x555555, kGrid = 0xE3E3E3;
constexpr double kTitleSize = 15, kLabelSize = 13, kTickSize = 11, kLegendSize = 12;

using Surface = std::unique_ptr<cairo_surface_t, decltype(&cairo_surface_destroy)>;
using Context = std::unique_ptr<cairo_t, decltype(&cairo_destroy)>;

cairo_status_t append_bytes(void* out, const unsigned char* data, unsigned int size) {
  static_cast<std::string*>(out)->append(reinterpret_cast<const char*>(data), size);
  return CAIRO_STATUS_SUCCESS;
}

void check(cairo_status_t status, const std::filesystem::path& path) {
  if (status != CAIRO_STATUS_SUCCESS)
    throw Error(path.string() + ": drawing the chart failed: " + cairo_status_to_string(status));
}

void colour(cairo_t* cr, uint32_t rgb) {
  cairo_set_source_rgb(cr, ((rgb >> 16) & 0xff) / 255.0, ((rgb >> 8) & 0xff) / 255.0, (rgb & 0xff) / 255.0);
}

void font(cairo_t* cr, double size, bool bold = false) {
  cairo_select_font_face(cr, "sans-serif", CAIRO_FONT_SLANT_NORMAL, bold ? CAIRO_FONT_WEIGHT_BOLD : CAIRO_FONT_WEIGHT_NORMAL);
  cairo_set_font_size(cr, size);
}

double text_width(cairo_t* cr, const std::string& s) {
  cairo_text_extents_t e;
  cairo_text_extents(cr, s.c_str(), &e);
  return e.x_advance;
}

// Text in the current font whose baseline starts at x - align * width (align 0: left, 0.5:
// centred, 1: right).
void text(cairo_t* cr, double x, double baseline, const std::string& s, double align, uint32_t rgb) {
  colour(cr, rgb);
  cairo_move_to(cr, x - align * text_width(cr, s), baseline);
  cairo_show_text(cr, s.c_str());
}

void line(cairo_t* cr, double x0, double y0, double x1, double y1, uint32_t rgb, double width) {
  colour(cr, rgb);
  cairo_set_line_width(cr, width);
  cairo_move_to(cr, x0, y0);
  cairo_line_to(cr, x1, y1);
  cairo_stroke(cr);
}

void dot(cairo_t* cr, double x, double y, uint32_t rgb) {
  colour(cr, rgb);
  cairo_arc(cr, x, y, 4, 0, 2 * std::numbers::pi);
  cairo_fill(cr);
}

std::string tick_label(double v, double step) {
  char buf[32];
  int decimals = step >= 1 ? 0 : std::min(4, static_cast<int>(std::ceil(-std::log10(step) - 1e-9)));
  std::snprintf(buf, sizeof buf, "%.*f", decimals, std::fabs(v) < step * 1e-6 ? 0.0 : v);
  return buf;
}

double nice_step(double range, int target) {
  double raw = range / target, mag = std::pow(10.0, std::floor(std::log10(raw))), f = raw / mag;
  return (f <= 1 ? 1 : f <= 2 ? 2 : f <= 5 ? 5 : 10) * mag;
}

// The y axis of a panel: [lo, hi] in whole steps around every finite value.
struct YAxis {
  double lo, hi, step;
};

YAxis y_axis(const Panel& p) {
  double lo = INFINITY, hi = -INFINITY;
  for (const auto& s : p.series)
    for (double v : s.y)
      if (std::isfinite(v)) lo = std::min(lo, v), hi = std::max(hi, v);
  if (!std::isfinite(lo)) lo = 0, hi = 1;
  if (hi - lo < 1e-9) lo -= 0.5 * std::max(1e-3, std::fabs(lo) * 0.05), hi += 0.5 * std::max(1e-3, std::fabs(hi) * 0.05);
  const double step = nice_step(hi - lo, 5);
  return {std::floor(lo / step + 1e-9) * step, std::ceil(hi / step - 1e-9) * step, step};
}

// Everything a panel's drawing shares: the plot area and the maps from data to it.
struct Frame {
  double left, right, top, bottom;
  int n;  // points along x (at least 2)
  YAxis y;
  double X(double i) const { return left + (i - 1) / (n - 1) * (right - left); }
  double Y(double v) const { return bottom - (v - y.lo) / (y.hi - y.lo) * (bottom - top); }
};

std::string x_tick(int i, const std::vector<std::string>& labels) {
  return static_cast<size_t>(i) <= labels.size() ? labels[i - 1] : std::to_string(i);
}

// The plot area of the panel at ox: room on the left for the rotated y label and the widest
// y tick, on the right for half the last x tick, below for the x ticks and the x label.
Frame frame(cairo_t* cr, const Panel& p, double ox, int pw, int ph, int n, const std::vector<std::string>& ticks) {
  Frame f{0, 0, 44, ph - 58.0, n, y_axis(p)};
  font(cr, kTickSize);
  double widest = 0;
  for (double v = f.y.lo; v <= f.y.hi + f.y.step * 0.5; v += f.y.step) widest = std::max(widest, text_width(cr, tick_label(v, f.y.step)));
  f.left = ox + 14 + kLabelSize + 10 + widest + 8;
  f.right = ox + pw - std::max(24.0, text_width(cr, x_tick(n, ticks)) / 2 + 10);
  return f;
}

void draw_y_axis(cairo_t* cr, const Panel& p, const Frame& f, double ox) {
  font(cr, kTickSize);
  for (double v = f.y.lo; v <= f.y.hi + f.y.step * 0.5; v += f.y.step) {
    line(cr, f.left, f.Y(v), f.right, f.Y(v), kGrid, 1);
    text(cr, f.left - 8, f.Y(v) + 0.36 * kTickSize, tick_label(v, f.y.step), 1, kAxis);
  }
  font(cr, kLabelSize);
  cairo_save(cr);
  cairo_translate(cr, ox + 14 + kLabelSize, (f.top + f.bottom) / 2);
  cairo_rotate(cr, -std::numbers::pi / 2);
  text(cr, 0, 0, p.y_label, 0.5, kInk);
  cairo_restore(cr);
}

// X ticks at every point (where they stay apart), labelled at every k-th one so that no two
// labels touch.
void draw_x_axis(cairo_t* cr, const Frame& f, const std::string& x_label, const std::vector<std::string>& ticks) {
  font(cr, kTickSize);
  double widest = 0;
  for (int i = 1; i <= f.n; ++i) widest = std::max(widest, text_width(cr, x_tick(i, ticks)));
  const double spacing = (f.right - f.left) / (f.n - 1);
  const int k = std::max(1, static_cast<int>(std::ceil((widest + 12) / spacing)));
  for (int i = 1; i <= f.n; ++i) {
    const bool labelled = (i - 1) % k == 0;
    if (labelled) line(cr, f.X(i), f.top, f.X(i), f.bottom, kGrid, 1);
    if (labelled || spacing >= 4) line(cr, f.X(i), f.bottom, f.X(i), f.bottom + (labelled ? 5 : 3), kAxis, 1);
    if (labelled) text(cr, f.X(i), f.bottom + 8 + kTickSize, x_tick(i, ticks), 0.5, kAxis);
  }
  line(cr, f.left, f.top, f.left, f.bottom, kAxis, 1);
  line(cr, f.left, f.bottom, f.right, f.bottom, kAxis, 1);
  font(cr, kLabelSize);
  text(cr, (f.left + f.right) / 2, f.bottom + 8 + kTickSize + 10 + kLabelSize, x_label, 0.5, kInk);
}

// Each series as a polyline broken at NaN; dots on the points where they stay apart (and on
// any point with no neighbour, which no line would show).
void draw_series(cairo_t* cr, const Panel& p, const Frame& f) {
  const bool dots = (f.right - f.left) / (f.n - 1) >= 10;
  cairo_set_line_join(cr, CAIRO_LINE_JOIN_ROUND);
  for (const auto& s : p.series) {
    auto finite = [&](size_t i) { return i < s.y.size() && std::isfinite(s.y[i]); };
    for (size_t i = 0; i < s.y.size(); ++i) {
      if (!finite(i)) continue;
      if (finite(i + 1)) line(cr, f.X(i + 1.0), f.Y(s.y[i]), f.X(i + 2.0), f.Y(s.y[i + 1]), s.rgb, 2.5);
      if (dots || ((i == 0 || !finite(i - 1)) && !finite(i + 1))) dot(cr, f.X(i + 1.0), f.Y(s.y[i]), s.rgb);
    }
  }
}

// The series of the first panel (all panels share them), in a row under the panels.
void draw_legend(cairo_t* cr, const std::vector<Series>& series, int y) {
  font(cr, kLegendSize);
  double x = 24;
  for (const auto& s : series) {
    line(cr, x, y, x + 28, y, s.rgb, 2.5);
    dot(cr, x + 14, y, s.rgb);
    text(cr, x + 36, y + 0.36 * kLegendSize, s.name, 0, kInk);
    x += 36 + text_width(cr, s.name) + 28;
  }
}

void draw_charts(cairo_t* cr, const std::vector<Panel>& panels, const std::string& x_label, int pw, int ph,
                 const std::vector<std::string>& ticks) {
  colour(cr, 0xFFFFFF);
  cairo_paint(cr);
  size_t max_points = 0;
  for (const auto& p : panels)
    for (const auto& s : p.series) max_points = std::max(max_points, s.y.size());
  const int n = std::max<int>(2, static_cast<int>(max_points));
  for (size_t pi = 0; pi < panels.size(); ++pi) {
    const double ox = static_cast<double>(pi) * pw;
    const Frame f = frame(cr, panels[pi], ox, pw, ph, n, ticks);
    font(cr, kTitleSize, true);
    text(cr, ox + pw / 2.0, 14 + kTitleSize, panels[pi].title, 0.5, kInk);
    draw_y_axis(cr, panels[pi], f, ox);
    draw_x_axis(cr, f, x_label, ticks);
    draw_series(cr, panels[pi], f);
  }
  if (!panels.empty()) draw_legend(cr, panels[0].series, ph + kLegendHeight / 2);
}

std::string xml_escaped(const std::string& s) {
  std::string out;
  for (char c : s) {
    if (c == '&') out += "&amp;";
    else if (c == '<') out += "&lt;";
    else if (c == '>') out += "&gt;";
    else out += c;
  }
  return out;
}

// cairo draws SVG text as glyph outlines: the words go into <title> and <desc> as well, so the
// file can be searched and read out.
void add_svg_text(std::string& svg, const std::vector<Panel>& panels, const std::string& x_label) {
  std::string title, desc = "x: " + x_label;
  for (const auto& p : panels) {
    title += (title.empty() ? "" : "; ") + p.title;
    desc += "; " + p.title + ", y: " + p.y_label + ", series:";
    for (const auto& s : p.series) desc += " " + s.name;
  }
  const size_t svg_tag = svg.find("<svg"), end = svg_tag == std::string::npos ? svg_tag : svg.find('>', svg_tag);
  if (end == std::string::npos) throw Error("cairo wrote an SVG without an <svg> element");
  svg.insert(end + 1, "\n<title>" + xml_escaped(title) + "</title>\n<desc>" + xml_escaped(desc) + "</desc>");
}

}  // namespace

std::optional<ChartFormat> chart_format(const std::filesystem::path& path) {
  std::string ext = path.extension().string();
  for (char& c : ext) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  if (ext == ".png") return ChartFormat::kPng;
  if (ext == ".svg") return ChartFormat::kSvg;
  return std::nullopt;
}

void write_line_charts(const std::filesystem::path& path, const std::vector<Panel>& panels,
                       const std::string& x_label, int pw, int ph,
                       const std::vector<std::string>& x_tick_labels) {
  const auto format = chart_format(path);
  if (!format) throw Error(path.string() + ": a chart is written as .png or .svg (named by the extension)");
  const int w = pw * static_cast<int>(std::max<size_t>(1, panels.size())), h = ph + kLegendHeight;
  std::string bytes;
  Surface surface(*format == ChartFormat::kSvg ? cairo_svg_surface_create_for_stream(append_bytes, &bytes, w, h)
                                               : cairo_image_surface_create(CAIRO_FORMAT_RGB24, w, h),
                  cairo_surface_destroy);
  check(cairo_surface_status(surface.get()), path);
  {
    Context cr(cairo_create(surface.get()), cairo_destroy);
    draw_charts(cr.get(), panels, x_label, pw, ph, x_tick_labels);
    check(cairo_status(cr.get()), path);
  }
  if (*format == ChartFormat::kPng) check(cairo_surface_write_to_png_stream(surface.get(), append_bytes, &bytes), path);
  cairo_surface_finish(surface.get());
  check(cairo_surface_status(surface.get()), path);
  if (*format == ChartFormat::kSvg) add_svg_text(bytes, panels, x_label);
  io::write_file_atomic(path, bytes);
}

}  // namespace bertune::train
