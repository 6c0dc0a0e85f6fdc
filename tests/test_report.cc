#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "io/atomic_file.h"
#include "train/report.h"

namespace fs = std::filesystem;
using namespace bertune;
using namespace bertune::train;

TEST(JsonlLog, AppendsWholeLinesAndTruncatesOnResume) {
  fs::path dir = fs::temp_directory_path() / "bertune_jsonl_test";
  fs::remove_all(dir);
  fs::path f = dir / "log.jsonl";
  {
    JsonlLog log(f);
    for (int s = 10; s <= 50; s += 10) log.append({{"loss", 0.1 * s}, {"step", s}});
  }
  {
    std::ofstream torn(f, std::ios::app);
    torn << "{\"loss\": 0.";  // what a kill -9 mid-write could leave
  }
  auto all = JsonlLog::read(f);
  ASSERT_EQ(all.size(), 5u);  // the torn line is not a record
  JsonlLog::truncate_after(f, 30);
  auto kept = JsonlLog::read(f);
  ASSERT_EQ(kept.size(), 3u);
  EXPECT_EQ(kept.back()["step"], 30);
  EXPECT_EQ(io::read_file(f).back(), '\n');
  fs::remove_all(dir);
}

TEST(Report, DurationAndSummaryText) {
  EXPECT_EQ(format_duration(5.25), "5.2s");
  EXPECT_EQ(format_duration(3725), "1:02:05");
  TrainSummary s;
  s.global_step = 375;
  s.training_loss = 0.5;
  s.total_flos = 6.0 * 1000 * 128 * 3 * 85e6;
  s.padding_fraction = 0.25;
  auto t = s.to_text();
  EXPECT_NE(t.find("global_step=375"), std::string::npos);
  EXPECT_NE(t.find("padding 25.0%"), std::string::npos);
  EXPECT_DOUBLE_EQ(s.to_json()["total_flos"].get<double>(), 6.0 * 1000 * 128 * 3 * 85e6);
}
