#include <cairo.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <cstring>
#include <vector>

#include "io/atomic_file.h"
#include "run_cli.h"
#include "train/plot.h"
#include "util/error.h"

namespace fs = std::filesystem;
using namespace bertune;
using namespace bertune::train;

namespace {

struct PlotDir {
  fs::path path = fs::temp_directory_path() / ("bertune_plot_" + std::to_string(::getpid()));
  PlotDir() {
    fs::remove_all(path);
    fs::create_directories(path);
  }
  ~PlotDir() { fs::remove_all(path); }
};

const std::vector<Panel> kPanels = {
    {"Train time per epoch", "seconds", {{"max_length", {300, 298}, 0xD62728}, {"packed", {40, 41}, 0x2CA02C}}},
    {"Eval accuracy", "accuracy & F1", {{"max_length", {0.71, 0.78}, 0xD62728}, {"packed", {0.72, 0.79}, 0x2CA02C}}}};

// True when every element of XML text is closed in order (declarations, comments and
// self-closing tags aside), attribute quotes pair up and every '&' starts an entity; why: the
// first fault.
bool well_formed(const std::string& xml, std::string* why) {
  std::vector<std::string> open;
  int roots = 0;
  for (size_t at = 0; at < xml.size();) {
    const size_t lt = xml.find('<', at);
    for (size_t amp = xml.find('&', at); amp < std::min(lt, xml.size()); amp = xml.find('&', amp + 1)) {
      const size_t semi = xml.find(';', amp);
      const std::string entity = xml.substr(amp + 1, semi == std::string::npos ? 0 : semi - amp - 1);
      if (entity != "amp" && entity != "lt" && entity != "gt" && entity != "quot" && entity != "apos" &&
          (entity.empty() || entity[0] != '#'))
        return *why = "bare '&' at byte " + std::to_string(amp), false;
    }
    if (lt == std::string::npos) break;
    const bool special = xml.compare(lt, 2, "<?") == 0 || xml.compare(lt, 2, "<!") == 0;
    const char* closer = xml.compare(lt, 4, "<!--") == 0 ? "-->" : xml.compare(lt, 2, "<?") == 0 ? "?>" : ">";
    size_t gt = lt + 1;
    for (char quote = 0; gt < xml.size() && (quote || xml.compare(gt, std::strlen(closer), closer) != 0); ++gt)
      if (!special && (xml[gt] == '"' || xml[gt] == '\'')) quote = quote == xml[gt] ? 0 : quote ? quote : xml[gt];
    if (gt >= xml.size()) return *why = "unclosed tag at byte " + std::to_string(lt), false;
    at = gt + std::strlen(closer);
    if (special) continue;
    const std::string tag = xml.substr(lt + 1, gt - lt - 1);
    const std::string name = tag.substr(tag[0] == '/', tag.find_first_of(" \t\r\n/", 1) - (tag[0] == '/'));
    if (tag[0] == '/') {
      if (open.empty() || open.back() != name) return *why = "</" + name + "> closes nothing open", false;
      open.pop_back();
    } else {
      roots += open.empty();
      if (tag.back() != '/') open.push_back(name);
    }
  }
  if (!open.empty()) return *why = "<" + open.back() + "> never closed", false;
  if (roots != 1) return *why = std::to_string(roots) + " root elements", false;
  return true;
}

}  // namespace

TEST(Chart, PngDecodesWithEverySeriesColour) {
  PlotDir dir;
  const fs::path f = dir.path / "chart.png";
  write_line_charts(f, kPanels, "epoch", 300, 200);
  cairo_surface_t* png = cairo_image_surface_create_from_png(f.c_str());
  ASSERT_EQ(cairo_surface_status(png), CAIRO_STATUS_SUCCESS) << cairo_status_to_string(cairo_surface_status(png));
  EXPECT_EQ(cairo_image_surface_get_width(png), 600);
  EXPECT_EQ(cairo_image_surface_get_height(png), 260);
  auto count = [&](uint32_t rgb) {
    size_t n = 0;
    const unsigned char* data = cairo_image_surface_get_data(png);
    for (int y = 0; y < cairo_image_surface_get_height(png); ++y) {
      const auto* row = reinterpret_cast<const uint32_t*>(data + y * cairo_image_surface_get_stride(png));
      for (int x = 0; x < cairo_image_surface_get_width(png); ++x) n += (row[x] & 0xFFFFFF) == rgb;
    }
    return n;
  };
  EXPECT_GT(count(0xD62728), 100u);
  EXPECT_GT(count(0x2CA02C), 100u);
  EXPECT_GT(count(0x222222), 100u);  // the text
  EXPECT_EQ(count(0x1F77B4), 0u);    // a colour no series has
  cairo_surface_destroy(png);
}

TEST(Chart, SvgIsWellFormedAndCarriesItsText) {
  PlotDir dir;
  const fs::path f = dir.path / "chart.SVG";
  write_line_charts(f, kPanels, "epoch", 300, 200);
  const std::string svg = io::read_file(f);
  std::string why;
  EXPECT_TRUE(well_formed(svg, &why)) << why;
  EXPECT_EQ(svg.rfind("<?xml", 0), 0u);
  EXPECT_TRUE(contains(svg, "width=\"600pt\" height=\"260pt\""));
  EXPECT_TRUE(contains(svg, "<title>Train time per epoch; Eval accuracy</title>"));
  for (const char* text : {"x: epoch", "y: seconds", "y: accuracy &amp; F1", "series: max_length packed"})
    EXPECT_TRUE(contains(svg, text)) << text;
  // The words themselves are drawn as glyphs: one per visible character of the text.
  size_t glyphs = 0;
  for (size_t at = svg.find("xlink:href=\"#glyph"); at != std::string::npos; at = svg.find("xlink:href=\"#glyph", at + 1))
    ++glyphs;
  EXPECT_GT(glyphs, std::string("Train time per epochEval accuracysecondsaccuracy&F1epochepochmax_lengthpacked").size());
  EXPECT_TRUE(contains(svg, "rgb(83.921569%,15.294118%,15.686275%)"));  // the 0xD62728 series
  // Not a single well-formedness check passes everything:
  EXPECT_FALSE(well_formed("<svg><g></svg></g>", &why));
  EXPECT_FALSE(well_formed("<svg><desc>a & b</desc></svg>", &why));
}

TEST(Chart, RefusesAnExtensionThatNamesNoFormat) {
  PlotDir dir;
  for (const char* name : {"chart.jpg", "chart", "chart.png.tmp"}) {
    try {
      write_line_charts(dir.path / name, kPanels, "epoch");
      ADD_FAILURE() << name << " was accepted";
    } catch (const Error& e) {
      EXPECT_TRUE(contains(e.what(), name)) << e.what();
      EXPECT_TRUE(contains(e.what(), ".png or .svg")) << e.what();
    }
    EXPECT_FALSE(fs::exists(dir.path / name));
  }
  EXPECT_EQ(chart_format("a/b.PNG"), ChartFormat::kPng);
  EXPECT_EQ(chart_format("b.svg"), ChartFormat::kSvg);
  EXPECT_EQ(chart_format("png"), std::nullopt);
}

TEST(Chart, PlotCommandWritesPngAndSvgAndNamesTheFlagOnABadOut) {
  PlotDir dir;
  const fs::path table = dir.path / "curve.tsv";
  io::write_file_atomic(table, "minutes\tstep\tval_accuracy\n0\t0\t0.8140\n12\t500\t0.8176\n23\t1000\tnan\n31\t1500\t0.8224\n");
  for (const char* out : {"curve.png", "curve.svg"}) {
    auto r = run_cli("plot " + table.string() + " --out " + (dir.path / out).string() + " --x minutes --y step,val_accuracy");
    EXPECT_EQ(r.status, 0) << r.output;
    EXPECT_TRUE(contains(r.output, "(4 points)")) << r.output;
    EXPECT_GT(fs::file_size(dir.path / out), 1000u);
  }
  auto bad = run_cli("plot " + table.string() + " --out " + (dir.path / "curve.jpg").string() + " --x minutes --y step");
  EXPECT_EQ(bad.status, 1) << bad.output;
  EXPECT_TRUE(contains(bad.output, "--out " + (dir.path / "curve.jpg").string())) << bad.output;
  EXPECT_TRUE(contains(bad.output, ".png or .svg")) << bad.output;
  EXPECT_FALSE(fs::exists(dir.path / "curve.jpg"));
  size_t files = 0;
  for ([[maybe_unused]] const auto& e : fs::directory_iterator(dir.path)) ++files;
  EXPECT_EQ(files, 3u);  // the table and the two charts: no temporary file left behind
}

TEST(Chart, PlotCommandNeverOverwritesItsInput) {
  PlotDir dir;
  const std::string tsv = "step\tloss\n5\t2.5\n10\t2.1\n";
  const fs::path table = dir.path / "table.svg";  // a table under a chart's name
  io::write_file_atomic(table, tsv);
  fs::create_hard_link(table, dir.path / "link.png");
  for (const fs::path out : {table, dir.path / "." / "table.svg", dir.path / "link.png"}) {
    auto r = run_cli("plot " + table.string() + " --out " + out.string() + " --x step --y loss");
    EXPECT_EQ(r.status, 1) << r.output;
    EXPECT_TRUE(contains(r.output, "--out " + out.string() + ": that is the input table")) << r.output;
    EXPECT_EQ(io::read_file(table), tsv);
  }
}

// `plot --y ""` wrote a chart without a series and exited 0; a --y column not in the table
// was named without those that are; a UTF-16 table was "1 cells, the header has 3".
TEST(Chart, PlotCommandNamesEmptyAndUnknownColumnsAndUtf16Tables) {
  PlotDir dir;
  const fs::path table = dir.path / "curve.tsv";
  io::write_file_atomic(table, "step\tloss\tacc\n5\t2.5\t0.1\n10\t2.1\t0.2\n");
  const std::string out = (dir.path / "c.svg").string();
  for (const std::string& y : {"''", "loss,,acc", "loss,"}) {
    auto r = run_cli("plot " + table.string() + " --out " + out + " --x step --y " + y);
    EXPECT_EQ(r.status, 1) << y << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "--y '")) << r.output;
    EXPECT_TRUE(contains(r.output, "an empty column name")) << r.output;
    EXPECT_FALSE(fs::exists(out)) << y;
  }
  auto unknown = run_cli("plot " + table.string() + " --out " + out + " --x step --y los");
  EXPECT_EQ(unknown.status, 1) << unknown.output;
  EXPECT_TRUE(contains(unknown.output, "no column 'los' in the header (columns: 'step', 'loss', 'acc')"))
      << unknown.output;
  std::string utf16 = "\xFF\xFE";
  for (char c : std::string("step\tloss\n5\t2.5\n")) utf16 += std::string{c, '\0'};
  io::write_file_atomic(dir.path / "u16.tsv", utf16);
  auto wide = run_cli("plot " + (dir.path / "u16.tsv").string() + " --out " + out + " --x step --y loss");
  EXPECT_EQ(wide.status, 1) << wide.output;
  EXPECT_TRUE(contains(wide.output, "u16.tsv is UTF-16 (little-endian, with a byte-order mark) text; convert it"))
      << wide.output;
  EXPECT_FALSE(fs::exists(out));
}
