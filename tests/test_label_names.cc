#include <gtest/gtest.h>

#include <unistd.h>

#include <filesystem>

#include "data/label_names.h"
#include "io/atomic_file.h"
#include "util/paths.h"

using namespace bertune;
namespace fs = std::filesystem;

TEST(LabelNames, NsmcFilesNameTheirLabels) {
  auto names = data::known_label_names(shared_path("data/nsmc/ratings_test.txt"));
  ASSERT_EQ(names.size(), 2u);
  EXPECT_EQ(names[0], "negative");
  EXPECT_EQ(names[1], "positive");
}

TEST(LabelNames, OtherFilesHaveNone) {
  const fs::path dir = fs::temp_directory_path() / ("bertune_labels_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  io::write_file_atomic(dir / "a.tsv", "id\ttext\tlabel\n1\tx\t0\n");
  io::write_file_atomic(dir / "b.tsv", "\xEF\xBB\xBFid\tdocument\tlabel\r\n1\tx\t0\r\n");
  EXPECT_TRUE(data::known_label_names(dir / "a.tsv").empty());
  EXPECT_EQ(data::known_label_names(dir / "b.tsv").size(), 2u);  // BOM and CRLF as the reader takes them
  EXPECT_TRUE(data::known_label_names(dir / "missing.tsv").empty());
  fs::remove_all(dir);
}
