// The memory seam (kernels/memory.h): device-owned buffers, the ops that move
// their bytes, and --device: the CPU bodies here, what a build without CUDA (or
// a CUDA build on a machine without a GPU) says when asked for one, and the
// model's and the optimizer's host views (zero-copy on the CPU).
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <functional>
#include <string>
#include <vector>

#include "kernels/memory.h"
#include "model/bert.h"
#include "train/optimizer.h"
#include "train/options.h"
#include "util/error.h"
#ifdef BERTUNE_CUDA
#include "kernels/gpu/runtime.h"
#endif
#include "run_binary.h"
#include "test_support.h"

namespace fs = std::filesystem;
using namespace bertune;
using kernels::Device;

namespace {

// What --device cuda must say in this build on this machine; empty when a GPU is usable.
std::string expected_cuda_refusal() {
#ifdef BERTUNE_CUDA
  std::string why;
  if (kernels::gpu::available(&why)) return "";
  return why;
#else
  return "this bertune was built without CUDA (nvcc was not found when it was built); "
         "rebuild on a machine with the CUDA toolkit, or use --device cpu";
#endif
}

model::BertConfig tiny_config() {
  model::BertConfig c;
  c.vocab_size = 40;
  c.hidden_size = 16;
  c.num_hidden_layers = 2;
  c.num_attention_heads = 2;
  c.intermediate_size = 32;
  c.max_position_embeddings = 16;
  return c;
}

}  // namespace

TEST(DeviceBuffer, CpuMemoryIsZeroedAlignedAndMoves) {
  kernels::DeviceBuffer<float> a(Device::CPU, 1000);
  ASSERT_EQ(a.size(), 1000u);
  EXPECT_EQ(a.device(), Device::CPU);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(a.data()) % 64, 0u);
  for (size_t i = 0; i < a.size(); ++i) ASSERT_EQ(a.data()[i], 0.f) << i;
  a.data()[999] = 7.f;
  float* p = a.data();
  kernels::DeviceBuffer<float> b = std::move(a);
  EXPECT_EQ(b.data(), p);  // moved, not copied
  EXPECT_EQ(b.data()[999], 7.f);
  EXPECT_TRUE(a.empty());
  EXPECT_EQ(a.data(), nullptr);
  kernels::DeviceBuffer<int32_t> odd(Device::CPU, 3);  // not a multiple of the alignment
  EXPECT_EQ(odd.data()[2], 0);
  EXPECT_EQ(kernels::DeviceBuffer<float>(Device::CPU, 0).data(), nullptr);
  EXPECT_TRUE(contains(error_of([] { kernels::DeviceBuffer<double>(Device::CPU, SIZE_MAX / 4); }),
                       "the size overflows"));
}

// A large host buffer (parameters, moments, the activation arena) starts on a 2 MiB boundary and
// is advised to transparent huge pages: where the kernel offers them on advice (THP "madvise" or
// "always"), its mapping reads THPeligible 1 in /proc/self/smaps.
TEST(DeviceBuffer, LargeCpuBuffersAreHugePageAlignedAndAdvised) {
  kernels::DeviceBuffer<float> big(Device::CPU, size_t(16) << 20);  // 64 MiB
  const uintptr_t at = reinterpret_cast<uintptr_t>(big.data());
  EXPECT_EQ(at % (uintptr_t(2) << 20), 0u);
  EXPECT_EQ(big.data()[big.size() - 1], 0.f);
  std::ifstream mode_file("/sys/kernel/mm/transparent_hugepage/enabled");
  std::string mode((std::istreambuf_iterator<char>(mode_file)), std::istreambuf_iterator<char>());
  if (mode.empty() || mode.find("[never]") != std::string::npos)
    GTEST_SKIP() << "this kernel offers no transparent huge pages: the alignment is all there is to see";
  std::ifstream smaps("/proc/self/smaps");
  std::string line;
  bool inside = false;
  int eligible = -1;
  while (std::getline(smaps, line)) {
    uintptr_t lo = 0, hi = 0;
    if (std::sscanf(line.c_str(), "%lx-%lx ", &lo, &hi) == 2 && line.find(':') > line.find(' ')) {
      inside = lo <= at && at < hi;
      continue;
    }
    if (inside && line.rfind("THPeligible:", 0) == 0) eligible = std::atoi(line.c_str() + 12);
  }
  EXPECT_EQ(eligible, 1) << "transparent_hugepage/enabled: " << mode;
}

// Large host buffers are fresh mappings: zero without being written, charged to the process only
// where they are touched, and zero again when allocated after one that was written.
TEST(DeviceBuffer, LargeCpuBuffersReadZeroAndCostNothingUntilTouched) {
  const auto resident_mb = [] {
    std::ifstream statm("/proc/self/statm");
    long pages = 0, resident = 0;
    statm >> pages >> resident;
    return double(resident) * double(sysconf(_SC_PAGESIZE)) / double(1 << 20);
  };
#if defined(__SANITIZE_ADDRESS__)
  GTEST_SKIP() << "sanitizer builds keep every buffer on the checked heap, cleared on allocation";
#endif
  const double before = resident_mb();
  {
    kernels::DeviceBuffer<float> untouched(Device::CPU, size_t(64) << 20);  // 256 MiB
    EXPECT_LT(resident_mb() - before, 32.0) << "a 256 MiB buffer nobody wrote is already resident";
    kernels::DeviceBuffer<float> written(Device::CPU, size_t(4) << 20);  // 16 MiB
    std::fill(written.data(), written.data() + written.size(), 7.f);
  }
  kernels::DeviceBuffer<float> again(Device::CPU, size_t(4) << 20);
  for (size_t i = 0; i < again.size(); i += 4093) ASSERT_EQ(again.data()[i], 0.f) << "at " << i;
  EXPECT_EQ(again.data()[again.size() - 1], 0.f);
  kernels::DeviceBuffer<float> small(Device::CPU, 1000);  // from the heap, cleared
  for (size_t i = 0; i < small.size(); ++i) ASSERT_EQ(small.data()[i], 0.f);
}

TEST(DeviceBuffer, CopiesAndFillOnTheCpu) {
  std::vector<float> host = {1, 2, 3, 4, 5, 6};
  kernels::DeviceBuffer<float> a(Device::CPU, 6), b(Device::CPU, 6);
  kernels::copy_to_device(Device::CPU, a.data(), host.data(), 6 * sizeof(float));
  kernels::copy_on_device(Device::CPU, b.data(), a.data(), 6 * sizeof(float));
  std::vector<float> back(6, -1.f);
  kernels::copy_to_host(Device::CPU, back.data(), b.data(), 6 * sizeof(float));
  EXPECT_EQ(back, host);
  kernels::fill_zero(Device::CPU, b.data() + 2, 3 * sizeof(float));
  kernels::copy_to_host(Device::CPU, back.data(), b.data(), 6 * sizeof(float));
  EXPECT_EQ(back, (std::vector<float>{1, 2, 0, 0, 0, 6}));
  // host_view: on the CPU the memory itself, scratch untouched.
  std::vector<float> scratch;
  EXPECT_EQ(kernels::host_view(Device::CPU, static_cast<const float*>(a.data()), 6, scratch), a.data());
  EXPECT_TRUE(scratch.empty());
}

TEST(DeviceBuffer, GatherAndScatterAddRows) {
  const int width = 3;
  std::vector<float> src(5 * width);
  for (size_t i = 0; i < src.size(); ++i) src[i] = float(i);
  std::vector<int32_t> rows = {4, 0, 2};
  std::vector<float> gathered(3 * width, -1.f);
  kernels::gather_rows(Device::CPU, gathered.data(), src.data(), rows.data(), 3, width);
  EXPECT_EQ(gathered, (std::vector<float>{12, 13, 14, 0, 1, 2, 6, 7, 8}));
  std::vector<float> dst(5 * width, 1.f);
  kernels::scatter_add_rows(Device::CPU, dst.data(), gathered.data(), rows.data(), 3, width);
  EXPECT_EQ(dst, (std::vector<float>{1, 2, 3, 1, 1, 1, 7, 8, 9, 1, 1, 1, 13, 14, 15}));
  EXPECT_TRUE(contains(error_of([&] { kernels::gather_rows(Device::CPU, dst.data(), src.data(), rows.data(), -1, 3); }),
                       "negative size"));
}

TEST(DeviceFlag, ParsesAndNamesTheChoices) {
  EXPECT_EQ(kernels::parse_device("cpu"), Device::CPU);
  EXPECT_EQ(kernels::parse_device("cuda"), Device::CUDA);
  EXPECT_STREQ(kernels::device_flag_name(Device::CUDA), "cuda");
  EXPECT_TRUE(contains(error_of([] { kernels::parse_device("gpu"); }), "'gpu' is not one of cpu|cuda"));
  EXPECT_NO_THROW(kernels::require_device(Device::CPU));
  // One options-table entry: config key, JSON, and validation.
  nlohmann::json j = {{"model_config", "c.json"}, {"output_dir", "o"}};
  EXPECT_EQ(train::train_options_from_json(j).to_json().at("device"), "cpu");
  j["device"] = "tpu";
  EXPECT_TRUE(contains(error_of([&] { train::train_options_from_json(j); }), "device: 'tpu' is not one of cpu|cuda"));
}

// Every way to ask for CUDA says the same thing when it is not there: the flag check, a
// buffer, and a model (a library user who skips the flag check).
TEST(DeviceFlag, CudaWithoutCudaOrGpuIsAClearUserError) {
  const std::string why = expected_cuda_refusal();
  if (why.empty()) GTEST_SKIP() << "a usable GPU is present: the refusal cannot be reached here";
  EXPECT_TRUE(contains(error_of([] { kernels::require_device(Device::CUDA); }), why));
  nlohmann::json j = {{"model_config", "c.json"}, {"output_dir", "o"}, {"device", "cuda"}};
  EXPECT_TRUE(contains(error_of([&] { train::train_options_from_json(j); }), why));
#ifndef BERTUNE_CUDA
  EXPECT_TRUE(contains(error_of([] { kernels::DeviceBuffer<float>(Device::CUDA, 4); }), why));
  EXPECT_TRUE(contains(error_of([] { model::BertModel(tiny_config(), model::Task::SequenceClassification, Device::CUDA); }),
                       why));
#endif
}

// On the CPU the host views are the model's and the optimizer's own memory: no copy.
TEST(ModelMemory, HostViewsAreZeroCopyOnTheCpu) {
  model::BertModel m(tiny_config(), model::Task::SequenceClassification);
  m.init_weights(3);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(m.params()) % 64, 0u);
  const auto sd = m.state_dict();
  const auto gd = m.grad_dict();
  ASSERT_EQ(sd.size(), m.param_info().size());
  for (size_t i = 0; i < sd.size(); ++i) {
    EXPECT_EQ(sd[i].data, m.params() + m.param_info()[i].offset) << sd[i].name;
    EXPECT_EQ(gd[i].data, m.grads() + m.param_info()[i].offset) << gd[i].name;
  }
  model::Batch batch = model::Batch::packed({{2, 5, 7, 3}, {2, 9, 3}}, {1, 0});
  m.forward(batch, /*train=*/true);
  const float* logits = m.logits();
  m.backward();
  m.forward(batch, /*train=*/true);
  EXPECT_EQ(m.logits(), logits);  // the arena itself, not a copy
  EXPECT_EQ(m.hidden_state(0), m.hidden_state(0));
  train::AdamW opt(m, {});
  m.backward();
  opt.step(1e-3);
  const auto osd = opt.state_dict();
  ASSERT_EQ(osd.size(), 2 * sd.size());
  // The moments moved (a real step happened) and are readable on the host.
  double moved = 0;
  for (size_t i = 0; i < m.param_info()[0].numel; ++i) moved += std::abs(osd[1].data[i]);
  EXPECT_GT(moved, 0.0);
}

// Batch metadata is validated on the host, before it is placed where the kernels read it.
TEST(ModelMemory, LabelsAreCheckedOnTheHost) {
  model::BertModel m(tiny_config(), model::Task::SequenceClassification);
  model::Batch batch = model::Batch::packed({{2, 5, 3}}, {2});
  EXPECT_TRUE(contains(error_of([&] { m.forward(batch, true); }), "forward: label 2 of row 0 is outside [0, 2)"));
  batch.labels = {-100};  // ignore_index is allowed
  EXPECT_NO_THROW(m.forward(batch, true));
}

// The binary: --device on train, bench train, run, eval and predict, refused with exit 1
// and the reason before anything is read or written.
TEST(DeviceFlag, EveryCommandRefusesCudaItCannotUse) {
  const std::string why = expected_cuda_refusal();
  if (why.empty()) GTEST_SKIP() << "a usable GPU is present: the refusal cannot be reached here";
  const fs::path dir = fs::temp_directory_path() / ("bertune_device_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "out").string(), missing = (dir / "missing").string();
  const std::vector<std::vector<std::string>> commands = {
      {"train", "--model-config", missing, "--output-dir", out, "--device", "cuda"},
      {"bench", "train", "--model-config", missing, "--device", "cuda"},
      {"run", "--output-dir", out, "--tokenizer", missing, "--device", "cuda"},
      {"eval", "--model", missing, "--data", missing, "--device", "cuda"},
      {"predict", "--model", missing, "--device", "cuda", "some text"},
  };
  for (const auto& args : commands) {
    const fs::path log = dir / "log.txt";
    EXPECT_EQ(run(args, log), 1) << args[0] << ": " << slurp(log);
    EXPECT_TRUE(contains(slurp(log), "bertune: error: --device cuda: ")) << args[0] << ": " << slurp(log);
    EXPECT_TRUE(contains(slurp(log), why)) << args[0] << ": " << slurp(log);
  }
  EXPECT_FALSE(fs::exists(out)) << "a refused run must not create its output dir";
  const fs::path log = dir / "bad.txt";
  EXPECT_EQ(run({"eval", "--model", missing, "--data", missing, "--device", "tpu"}, log), 1);
  EXPECT_TRUE(contains(slurp(log), "--device: 'tpu' is not one of cpu|cuda")) << slurp(log);
  fs::remove_all(dir);
}

// int8 inference is CPU-only: --int8 with --device cuda is refused on eval and predict
// with the reason, GPU or not (the check comes before the device is probed).
TEST(DeviceFlag, Int8WithCudaIsRefused) {
  const fs::path dir = fs::temp_directory_path() / ("bertune_int8_device_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string missing = (dir / "missing").string();
  const std::vector<std::vector<std::string>> commands = {
      {"eval", "--model", missing, "--data", missing, "--int8", "--device", "cuda"},
      {"predict", "--model", missing, "--int8", "--device", "cuda", "some text"},
  };
  for (const auto& args : commands) {
    const fs::path log = dir / "log.txt";
    EXPECT_EQ(run(args, log), 1) << args[0] << ": " << slurp(log);
    EXPECT_TRUE(contains(slurp(log), "bertune: error: --int8: int8 inference runs on the CPU only"))
        << args[0] << ": " << slurp(log);
  }
  fs::remove_all(dir);
}

// --precision: one options-table entry (flag, config key, training_args.json); the default
// follows the device (bf16 on cuda, fp32 on cpu); tf32/bf16 on the CPU is a user error that
// names the flag.
TEST(PrecisionFlag, ParsesResolvesPerDeviceAndRefusesReducedPrecisionOnTheCpu) {
  EXPECT_EQ(kernels::parse_precision("fp32"), kernels::Precision::FP32);
  EXPECT_EQ(kernels::parse_precision("tf32"), kernels::Precision::TF32);
  EXPECT_EQ(kernels::parse_precision("bf16"), kernels::Precision::BF16);
  EXPECT_STREQ(kernels::precision_name(kernels::Precision::BF16), "bf16");
  EXPECT_TRUE(contains(error_of([] { kernels::parse_precision("fp16"); }), "'fp16' is not one of fp32|tf32|bf16"));
  EXPECT_EQ(kernels::default_precision(Device::CPU), kernels::Precision::FP32);
  EXPECT_EQ(kernels::default_precision(Device::CUDA), kernels::Precision::BF16);
  EXPECT_EQ(train::resolve_precision(Device::CUDA, std::nullopt), kernels::Precision::BF16);
  EXPECT_EQ(train::resolve_precision(Device::CUDA, kernels::Precision::TF32), kernels::Precision::TF32);
  EXPECT_NO_THROW(kernels::set_precision(Device::CPU, kernels::Precision::FP32));
  EXPECT_TRUE(contains(error_of([] { kernels::set_precision(Device::CPU, kernels::Precision::TF32); }),
                       "tf32 needs a GPU"));
  ::setenv("BERTUNE_TEST_CPU_WITHOUT_BF16", "1", 1);  // a CPU without avx512_bf16 / AMX-BF16
  EXPECT_TRUE(contains(error_of([] { kernels::set_precision(Device::CPU, kernels::Precision::BF16); }),
                       "bf16 GEMMs on the CPU need a CPU with avx512_bf16 or AMX-BF16"));

  nlohmann::json j = {{"model_config", "c.json"}, {"output_dir", "o"}};
  EXPECT_EQ(train::train_options_from_json(j).to_json().at("precision"), "fp32");  // resolved for the CPU
  j["precision"] = "fp32";
  EXPECT_EQ(train::train_options_from_json(j).precision, kernels::Precision::FP32);
  j["precision"] = "tf32";
  EXPECT_EQ(error_of([&] { train::train_options_from_json(j); }),
            "--precision tf32: needs --device cuda (the CPU computes fp32 or bf16); use --precision fp32 or drop it");
  j["precision"] = "bf16";
  EXPECT_TRUE(contains(error_of([&] { train::train_options_from_json(j); }),
                       "--precision bf16: bf16 GEMMs on the CPU need a CPU with avx512_bf16 or AMX-BF16"));
  ::unsetenv("BERTUNE_TEST_CPU_WITHOUT_BF16");
  j["precision"] = "fp16";
  EXPECT_TRUE(contains(error_of([&] { train::train_options_from_json(j); }), "precision: 'fp16' is not one of fp32|tf32|bf16"));
}

// The binary: --precision on train, pretrain, bench train, run, eval, predict and serve; bf16 on
// a CPU without avx512_bf16 / AMX-BF16 (simulated) is refused with exit 1 naming the flag and
// what is missing, before anything is read or written; tf32 on the CPU likewise.
TEST(PrecisionFlag, EveryCommandRefusesBf16WhereTheCpuLacksIt) {
  const fs::path dir = fs::temp_directory_path() / ("bertune_precision_test_" + std::to_string(::getpid()));
  fs::create_directories(dir);
  const std::string out = (dir / "out").string(), missing = (dir / "missing").string();
  const std::vector<std::vector<std::string>> commands = {
      {"train", "--model-config", missing, "--output-dir", out, "--precision", "bf16"},
      {"bench", "train", "--model-config", missing, "--precision", "bf16"},
      {"run", "--output-dir", out, "--tokenizer", missing, "--precision", "bf16"},
      {"eval", "--model", missing, "--data", missing, "--precision", "bf16"},
      {"predict", "--model", missing, "--precision", "bf16", "some text"},
      {"pretrain", "--model-config", missing, "--output-dir", out, "--precision", "bf16"},
      {"serve", "--model", missing, "--port", "0", "--precision", "bf16"},
  };
  ::setenv("BERTUNE_TEST_CPU_WITHOUT_BF16", "1", 1);
  for (const auto& args : commands) {
    const fs::path log = dir / "log.txt";
    EXPECT_EQ(run(args, log), 1) << args[0] << ": " << slurp(log);
    EXPECT_TRUE(contains(slurp(log), "bertune: error: --precision bf16: bf16 GEMMs on the CPU need a CPU with "
                                     "avx512_bf16 or AMX-BF16"))
        << args[0] << ": " << slurp(log);
  }
  ::unsetenv("BERTUNE_TEST_CPU_WITHOUT_BF16");
  EXPECT_FALSE(fs::exists(out)) << "a refused run must not create its output dir";
  const fs::path tf32 = dir / "tf32.txt";
  EXPECT_EQ(run({"serve", "--model", missing, "--precision", "tf32"}, tf32), 1);
  EXPECT_TRUE(contains(slurp(tf32), "--precision tf32: needs --device cuda")) << slurp(tf32);
  const fs::path log = dir / "bad.txt";
  EXPECT_EQ(run({"predict", "--model", missing, "--precision", "fp16", "x"}, log), 1);
  EXPECT_TRUE(contains(slurp(log), "--precision: 'fp16' is not one of fp32|tf32|bf16")) << slurp(log);
  fs::remove_all(dir);
}
