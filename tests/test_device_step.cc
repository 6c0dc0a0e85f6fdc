// The training step decided on the device (train/step.h launch/collect, AdamW::step_on_device,
// kernels::adamw_update_device and cross_entropy_loss_accumulate), run on the CPU where every
// "device" pointer is host memory: it must give the host step's bits — loss, gradient norm,
// weights, moments and step count — for single and accumulated steps, clipped or not, and
// skip a non-finite step the same way. The CUDA kernel runs the same plan (kernels/adamw_math.h);
// tests/test_gpu_golden.cc holds it to Hugging Face on a GPU.
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <vector>

#include "model/bert.h"
#include "train/optimizer.h"
#include "train/step.h"
#include "util/paths.h"

using namespace bertune;
using namespace bertune::train;

namespace {

struct StepRun {
  std::unique_ptr<model::BertModel> model;
  std::unique_ptr<AdamW> opt;
  std::unique_ptr<TrainStep> step;
};

StepRun make_run(AdamWVariant variant, double max_norm, bool on_device) {
  const model::BertConfig config = model::BertConfig::load(shared_path("golden/bert/tiny_config.json"));
  StepRun r;
  r.model = std::make_unique<model::BertModel>(config, model::Task::SequenceClassification);
  r.model->init_weights(5);
  r.model->set_dropout_seed(9);
  r.opt = std::make_unique<AdamW>(*r.model, AdamWOptions{.weight_decay = 0.01, .variant = variant});
  r.step = std::make_unique<TrainStep>(*r.model, *r.opt, LrSchedule{Schedule::Linear, 1e-3, 2, 10}, max_norm);
  r.step->set_decide_on_device(on_device);
  return r;
}

std::vector<float> flat(const std::vector<TensorRef>& tensors) {
  std::vector<float> out;
  for (const auto& t : tensors) {
    size_t n = 1;
    for (int64_t d : t.shape) n *= size_t(d);
    out.insert(out.end(), t.data, t.data + n);
  }
  return out;
}

void expect_same_bits(const std::vector<float>& a, const std::vector<float>& b, const char* what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  EXPECT_EQ(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)), 0) << what << " differ";
}

std::vector<model::Batch> micro_batches(int k) {
  std::vector<model::Batch> out;
  out.push_back(model::Batch::packed({{2, 40, 41, 42, 3}, {2, 50, 3}}, {1, 0}));
  if (k > 1) out.push_back(model::Batch::packed({{2, 60, 61, 3}, {2, 70, 71, 72, 73, 3}}, {0, 1}));
  return out;
}

}  // namespace

TEST(DeviceStep, IsTheHostStepBitForBit) {
  for (AdamWVariant variant : {AdamWVariant::HF, AdamWVariant::Torch})
    for (double max_norm : {0.0, 1.0, 1e-3})  // unclipped, the default, clipped hard
      for (int k : {1, 2}) {
        SCOPED_TRACE(std::string(adamw_variant_name(variant)) + " max_norm " + std::to_string(max_norm) + " k " +
                     std::to_string(k));
        StepRun host = make_run(variant, max_norm, false), device = make_run(variant, max_norm, true);
        const auto batches = micro_batches(k);
        for (int64_t s = 0; s < 3; ++s) {
          const StepOutcome want = host.step->run(std::span<const model::Batch>(batches), s);
          device.step->launch(std::span<const model::Batch>(batches), s);
          ASSERT_EQ(device.step->pending(), 1u);
          const std::vector<StepOutcome> got = device.step->collect();
          ASSERT_EQ(got.size(), 1u);
          EXPECT_TRUE(want.finite && got[0].finite);
          EXPECT_EQ(got[0].loss, want.loss);
          EXPECT_EQ(got[0].grad_norm, want.grad_norm);
          EXPECT_EQ(got[0].lr, want.lr);
          EXPECT_EQ(got[0].step, s);
        }
        expect_same_bits(flat(device.model->state_dict()), flat(host.model->state_dict()), "weights");
        expect_same_bits(flat(device.opt->state_dict()), flat(host.opt->state_dict()), "moments");
        expect_same_bits(flat(device.model->grad_dict()), flat(host.model->grad_dict()), "gradients (zeroed)");
        EXPECT_EQ(device.opt->steps_done(), 3);
        EXPECT_EQ(host.opt->steps_done(), 3);
      }
}

// Steps launched back to back are collected together, in order, with the outcomes run() gives.
TEST(DeviceStep, LaunchedStepsAreCollectedInOrder) {
  StepRun host = make_run(AdamWVariant::HF, 1.0, false), device = make_run(AdamWVariant::HF, 1.0, true);
  const auto batches = micro_batches(1);
  std::vector<StepOutcome> want;
  for (int64_t s = 0; s < 5; ++s) {
    want.push_back(host.step->run(batches.front(), s));
    device.step->launch(batches.front(), s);
  }
  EXPECT_EQ(device.step->pending(), 5u);
  const std::vector<StepOutcome> got = device.step->collect();
  EXPECT_EQ(device.step->pending(), 0u);
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i].loss, want[i].loss) << i;
    EXPECT_EQ(got[i].grad_norm, want[i].grad_norm) << i;
    EXPECT_EQ(got[i].step, int64_t(i));
  }
  expect_same_bits(flat(device.model->state_dict()), flat(host.model->state_dict()), "weights");
}

// A non-finite loss: the device skips the update (weights, moments and the step count stay),
// zeroes the gradients, and the collected outcome says so; the next finite step is update 1.
TEST(DeviceStep, SkipsANonFiniteStepAsTheHostDoes) {
  StepRun host = make_run(AdamWVariant::HF, 1.0, false), device = make_run(AdamWVariant::HF, 1.0, true);
  const auto batches = micro_batches(1);
  for (StepRun* r : {&host, &device}) {  // a NaN weight in the classifier: the loss is NaN
    const auto& p = r->model->param("classifier.bias");
    float nan = NAN;
    std::memcpy(r->model->params() + p.offset, &nan, sizeof nan);
  }
  const std::vector<float> before = flat(device.model->state_dict());
  const StepOutcome want = host.step->run(batches.front(), 0);
  device.step->launch(batches.front(), 0);
  const StepOutcome got = device.step->collect().front();
  EXPECT_FALSE(want.finite);
  EXPECT_FALSE(got.finite);
  EXPECT_FALSE(std::isfinite(got.loss));
  expect_same_bits(flat(device.model->state_dict()), before, "weights after a skipped step");
  expect_same_bits(flat(device.model->grad_dict()), std::vector<float>(before.size(), 0.f), "gradients");
  EXPECT_EQ(device.opt->steps_done(), 0);
  EXPECT_EQ(host.opt->steps_done(), 0);
  for (StepRun* r : {&host, &device}) {  // repaired: the next step is update number 1 on both
    const auto& p = r->model->param("classifier.bias");
    std::memset(r->model->params() + p.offset, 0, sizeof(float));
  }
  const StepOutcome want1 = host.step->run(batches.front(), 1);
  device.step->launch(batches.front(), 1);
  const StepOutcome got1 = device.step->collect().front();
  EXPECT_TRUE(want1.finite && got1.finite);
  EXPECT_EQ(got1.loss, want1.loss);
  expect_same_bits(flat(device.model->state_dict()), flat(host.model->state_dict()), "weights");
  EXPECT_EQ(device.opt->steps_done(), 1);
}

// The loss sink: forward adds the loss where it was computed and returns NaN.
TEST(DeviceStep, ForwardWithALossSinkAddsTheLoss) {
  StepRun r = make_run(AdamWVariant::HF, 1.0, false);
  const auto batches = micro_batches(2);
  const float a = r.model->forward(batches[0], false), b = r.model->forward(batches[1], false);
  double sink = 0.5;
  EXPECT_TRUE(std::isnan(r.model->forward(batches[0], false, &sink)));
  EXPECT_TRUE(std::isnan(r.model->forward(batches[1], false, &sink)));
  EXPECT_EQ(sink, 0.5 + double(a) + double(b));
}
