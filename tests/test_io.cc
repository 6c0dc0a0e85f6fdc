// Checkpoint files: safetensors, pytorch_model.bin, HF directories.
// Reference data: the HF-written golden files in shared/golden/bert and the
// torch.save fixtures in tests/fixtures/io (make_fixtures.py).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/half.h"
#include "io/safetensors.h"
#include "util/error.h"
#include "util/paths.h"

namespace fs = std::filesystem;
using namespace bertune;
using nlohmann::json;

namespace {

fs::path fresh_temp_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() / ("bertune_test_io_" + name);
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

[[maybe_unused]] fs::path fixture(const std::string& name) {
  return fs::path(BERTUNE_SOURCE_DIR) / "tests" / "fixtures" / "io" / name;
}

void write_bytes(const fs::path& p, const std::string& bytes) {
  std::ofstream out(p, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}

// A safetensors file from a raw header string and a data area, so a test can
// build exactly the broken bytes it wants.
std::string safetensors_bytes(const std::string& header, const std::string& data,
                              uint64_t claimed_len = UINT64_MAX) {
  uint64_t n = claimed_len == UINT64_MAX ? header.size() : claimed_len;
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);
  return out + header + data;
}

// Expects `fn` to throw bertune::Error whose message contains every fragment.
void expect_error(const std::function<void()>& fn, std::vector<std::string> fragments) {
  try {
    fn();
    ADD_FAILURE() << "no error; expected one mentioning '" << fragments.at(0) << "'";
  } catch (const Error& e) {
    std::string msg = e.what();
    for (const auto& f : fragments)
      EXPECT_NE(msg.find(f), std::string::npos) << "message: " << msg << "\nmissing: " << f;
  }
}

}  // namespace

// ---------------------------------------------------------------- safetensors

TEST(Safetensors, ReadsHuggingFaceWrittenFile) {
  std::map<std::string, std::string> meta;
  auto tensors = io::read_safetensors(shared_path("golden/bert/tiny_init.safetensors"), &meta);
  EXPECT_EQ(meta.at("format"), "pt");
  // 42 tensors in the header; the I64 position_ids buffer is skipped.
  EXPECT_EQ(tensors.size(), 41u);
  EXPECT_EQ(tensors.count("bert.embeddings.position_ids"), 0u);
  const auto& w = tensors.at("bert.embeddings.word_embeddings.weight");
  ASSERT_EQ(w.shape, (std::vector<int64_t>{512, 64}));
  ASSERT_EQ(w.data.size(), 512u * 64u);
  // Values as Python's struct/torch.frombuffer read them from the same file.
  EXPECT_EQ(w.data[0], 0x1.348f0cp-4f);
  EXPECT_EQ(w.data[1], 0x1.978b1cp-5f);
  EXPECT_EQ(w.data[2], -0x1.c58c6ep-6f);
  EXPECT_FLOAT_EQ(w.data[511 * 64 + 62], 0.03072209842503071f);
  EXPECT_FLOAT_EQ(w.data[511 * 64 + 63], -0.072781041264534f);
  EXPECT_EQ(tensors.at("bert.encoder.layer.1.attention.self.query.weight").shape,
            (std::vector<int64_t>{64, 64}));
}

TEST(Safetensors, RewriteIsByteIdenticalToReferenceSerializer) {
  // tiny_grads holds only F32 tensors, so writing what we read must reproduce
  // the file the Python safetensors package wrote, byte for byte.
  fs::path src = shared_path("golden/bert/tiny_grads.safetensors");
  std::map<std::string, std::string> meta;
  auto tensors = io::read_safetensors(src, &meta);
  std::vector<io::TensorRef> refs;
  for (auto& [name, t] : tensors) refs.push_back({name, t.shape, t.data.data()});
  std::reverse(refs.begin(), refs.end());  // the writer orders by name itself
  fs::path dir = fresh_temp_dir("rewrite");
  io::write_safetensors(dir / "again.safetensors", refs, meta);
  EXPECT_TRUE(io::read_file(dir / "again.safetensors") == io::read_file(src));
  fs::remove_all(dir);
}

TEST(Safetensors, HalfAndBFloat16RoundTrip) {
  std::vector<float> values = {0.f, -0.f, 1.f, -2.5f, 65504.f, 1e-7f, 3.14159265f, 1e30f, -1e-40f};
  fs::path dir = fresh_temp_dir("half");
  for (auto dtype : {io::DType::F16, io::DType::BF16, io::DType::F32}) {
    fs::path p = dir / "t.safetensors";
    io::write_safetensors(p, {{"x", {3, 3}, values.data()}, {"empty", {0, 4}, nullptr}}, {},
                          dtype);
    std::map<std::string, std::string> meta;
    auto t = io::read_safetensors(p, &meta);
    EXPECT_TRUE(meta.empty());
    EXPECT_EQ(t.at("empty").shape, (std::vector<int64_t>{0, 4}));
    ASSERT_EQ(t.at("x").data.size(), values.size());
    for (size_t i = 0; i < values.size(); ++i) {
      float expect = dtype == io::DType::F16    ? io::half_to_float(io::float_to_half(values[i]))
                     : dtype == io::DType::BF16 ? io::bf16_to_float(io::float_to_bf16(values[i]))
                                                : values[i];
      EXPECT_EQ(std::memcmp(&t.at("x").data[i], &expect, 4), 0) << i;
    }
  }
  fs::remove_all(dir);
}

TEST(Safetensors, WriterRefusesDuplicateNames) {
  float v = 1.f;
  fs::path dir = fresh_temp_dir("dup_write");
  expect_error([&] { io::write_safetensors(dir / "d.safetensors", {{"a", {1}, &v}, {"a", {1}, &v}}); },
               {"'a'", "twice"});
  EXPECT_FALSE(fs::exists(dir / "d.safetensors"));
  fs::remove_all(dir);
}

TEST(Safetensors, HostileFilesGiveClearErrors) {
  fs::path dir = fresh_temp_dir("hostile");
  fs::path p = dir / "bad.safetensors";
  auto check = [&](const std::string& bytes, std::vector<std::string> fragments) {
    write_bytes(p, bytes);
    fragments.insert(fragments.begin(), p.string());
    expect_error([&] { io::read_safetensors(p); }, fragments);
  };
  const std::string eight_floats(32, '\0');
  const std::string ok_entry = R"("a":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]})";

  check("", {"too short"});
  check(std::string("\x10\0\0", 3), {"too short"});
  // Header length past the end of the file (and absurdly large).
  check(safetensors_bytes("{}", "", 1000), {"header length 1000", "past the end"});
  check(safetensors_bytes("{}", "", UINT64_MAX - 1), {"past the end"});
  // Header cut short: the JSON is incomplete.
  check(safetensors_bytes("{" + ok_entry, eight_floats), {"not valid JSON"});
  check(safetensors_bytes("[1,2]", ""), {"not a JSON object"});
  check(safetensors_bytes("{\"a\":[]}", ""), {"'a'", "not an object"});
  check(safetensors_bytes(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", "abcd"),
        {"'a'", "unknown dtype 'Q7'"});
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[-2,4],"data_offsets":[0,32]}})",
                          eight_floats),
        {"'a'", "negative"});
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,32]}})",
                          eight_floats),
        {"'a'", "non-integer"});
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,32]}})",
                          eight_floats),
        {"'a'", "overflows"});
  // Shape disagrees with the span of bytes.
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[3,4],"data_offsets":[0,32]}})",
                          eight_floats),
        {"'a'", "needs 48 bytes", "span 32"});
  check(safetensors_bytes(R"({"a":{"dtype":"F16","shape":[2,4],"data_offsets":[0,32]}})",
                          eight_floats),
        {"'a'", "F16 [2,4] needs 16 bytes"});
  // Offsets out of range, reversed, malformed.
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[2,4],"data_offsets":[0,32]}})",
                          std::string(31, '\0')),
        {"'a'", "past the data area (31 bytes)"});
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[8,0]}})",
                          eight_floats),
        {"'a'", "begin <= end"});
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[0]}})",
                          eight_floats),
        {"'a'", "data_offsets"});
  check(safetensors_bytes(R"({"a":{"shape":[0],"data_offsets":[0,0]}})", ""), {"'a'", "dtype"});
  // Overlapping tensors, including an integer buffer that is otherwise skipped.
  check(safetensors_bytes(R"({"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},)"
                          R"("b":{"dtype":"I64","shape":[2],"data_offsets":[8,24]}})",
                          eight_floats),
        {"'a' and 'b' overlap"});
  check(safetensors_bytes(R"({"b":{"dtype":"I64","shape":[4],"data_offsets":[0,40]}})",
                          std::string(48, '\0')),
        {"'b'", "needs 32 bytes"});
  check(safetensors_bytes("{" + ok_entry + "," + ok_entry + "}", eight_floats),
        {"'a' appears twice"});
  check(safetensors_bytes(R"({"__metadata__":{"format":1}})", ""), {"__metadata__", "format"});
  check(safetensors_bytes(R"({"__metadata__":"pt"})", ""), {"__metadata__"});
  // Invalid UTF-8 inside the header.
  check(safetensors_bytes("{\"a\xff\":{}}", ""), {"not valid JSON"});
  // A directory, and a missing file.
  expect_error([&] { io::read_safetensors(dir); }, {dir.string()});
  expect_error([&] { io::read_safetensors(dir / "none.safetensors"); }, {"none.safetensors"});

  // The same bytes with a sane header are accepted: the checks above fail for
  // the reason named, not because the helper builds bad files.
  write_bytes(p, safetensors_bytes("{" + ok_entry + "}", eight_floats));
  EXPECT_EQ(io::read_safetensors(p).at("a").data.size(), 8u);
  fs::remove_all(dir);
}
