// The training step on CUDA without host waits (train/step.h launch/collect, the device-decided
// AdamW of kernels/ops.h) against the same steps on the CPU, in fp32 (ctest label `gpu`;
// SKIPPED with the reason without a GPU). tests/test_device_step.cc holds the same path to the
// host step bit for bit on the CPU; here the CUDA kernels run it.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "gpu_harness.h"
#include "kernels/memory.h"
#include "model/bert.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "util/paths.h"

using namespace bertune;
using namespace bertune::train;
using kernels::Device;

namespace {

struct Trio {
  std::unique_ptr<model::BertModel> model;
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<TrainStep> step;
};

Trio make(Device d) {
  const model::BertConfig config = model::BertConfig::load(shared_path("golden/bert/tiny_config.json"));
  Trio t;
  t.model = std::make_unique<model::BertModel>(config, model::Task::SequenceClassification, d);
  t.model->init_weights(5);
  t.model->set_dropout_seed(9);
  t.opt = std::make_unique<AdamW>(*t.model, AdamWOptions{.weight_decay = 0.01});
  t.step = std::make_unique<TrainStep>(*t.model, *t.opt, LrSchedule{Schedule::Linear, 1e-3, 2, 10}, 1.0);
  return t;
}

std::vector<float> weights(const model::BertModel& m) {
  std::vector<float> out;
  for (const auto& t : m.state_dict()) {
    size_t n = 1;
    for (int64_t s : t.shape) n *= size_t(s);
    out.insert(out.end(), t.data, t.data + n);
  }
  return out;
}

struct Fp32Scope {
  Fp32Scope() { kernels::set_precision(Device::CUDA, kernels::Precision::FP32); }
};

}  // namespace

// Five steps launched back to back (nothing read in between), then one collect: the CPU's
// losses, norms and weights.
TEST(GpuStep, LaunchedStepsMatchTheCpu) {
  BERTUNE_REQUIRE_GPU();
  Fp32Scope fp32;
  Trio cpu = make(Device::CPU), gpu = make(Device::CUDA);
  const model::Batch batch = model::Batch::packed({{2, 40, 41, 42, 3}, {2, 50, 3}, {2, 60, 61, 62, 63, 64, 3}}, {1, 0, 1});
  std::vector<StepOutcome> want;
  for (int64_t s = 0; s < 5; ++s) {
    want.push_back(cpu.step->run(batch, s));
    gpu.step->launch(batch, s);
  }
  const std::vector<StepOutcome> got = gpu.step->collect();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_TRUE(got[i].finite);
    EXPECT_NEAR(got[i].loss, want[i].loss, 1e-5 * want[i].loss) << i;
    EXPECT_NEAR(got[i].grad_norm, want[i].grad_norm, 1e-5 * want[i].grad_norm) << i;
    EXPECT_EQ(got[i].lr, want[i].lr) << i;
  }
  gpu_test::expect_close("weights after 5 steps", weights(*gpu.model), weights(*cpu.model), gpu_test::kFp32Sum);
  EXPECT_EQ(gpu.opt->steps_done(), 5);
}

// A NaN loss on the device: the update is skipped there (weights and the step count stay),
// and the collected outcome says so.
TEST(GpuStep, NonFiniteStepIsSkippedOnTheDevice) {
  BERTUNE_REQUIRE_GPU();
  Fp32Scope fp32;
  Trio gpu = make(Device::CUDA);
  const auto& p = gpu.model->param("classifier.bias");
  const float nan = NAN;
  kernels::copy_to_device(Device::CUDA, gpu.model->params() + p.offset, &nan, sizeof nan);
  const std::vector<float> before = weights(*gpu.model);
  const model::Batch batch = model::Batch::packed({{2, 40, 41, 42, 3}}, {1});
  gpu.step->launch(batch, 0);
  const StepOutcome got = gpu.step->collect().front();
  EXPECT_FALSE(got.finite);
  const std::vector<float> after = weights(*gpu.model);
  ASSERT_EQ(after.size(), before.size());
  EXPECT_EQ(std::memcmp(after.data(), before.data(), after.size() * sizeof(float)), 0);
  EXPECT_EQ(gpu.opt->steps_done(), 0);
}
