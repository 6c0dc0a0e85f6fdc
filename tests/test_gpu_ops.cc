// Every CUDA op body (kernels/gpu/) against the CPU body on the same random
// inputs, through the ops.h fronts, on shapes that include ragged packed
// batches and sizes that are no multiple of a warp or block. The `gpu` ctest
// label; without CUDA or a usable GPU each test reports itself skipped with the
// reason. Tolerances: gpu_harness.h (kFp32: 1e-5 relative + 1e-6 of the
// tensor's largest magnitude + 1e-6; kFp32Sum: 1e-5 of the largest magnitude
// for sums over many rows in atomic order; kGelu: 1e-5 absolute for the CPU's
// erf approximation; dropout, scale and zeroed gradients bitwise).
#include <gtest/gtest.h>

#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "gpu_harness.h"
#include "kernels/ops.h"
#include "util/error.h"

using namespace bertune;
using kernels::Device;
using gpu_test::DeviceArray;
using gpu_test::expect_close;
using gpu_test::randn;

namespace {

struct RowShape {
  int T, H;
};
// Rows of a ragged packed batch (T from the batch), and plain sizes around warp
// and block edges. H: BERT-base, the small model, and sizes no multiple of 32.
std::vector<RowShape> row_shapes() {
  std::vector<RowShape> shapes = {{1, 32}, {7, 100}, {33, 256}, {130, 768}, {64, 1030}};
  auto packed = gpu_test::random_packed_batch(11, 37, 60, 4);
  shapes.push_back({packed.rows(), 256});
  return shapes;
}

const std::vector<size_t> kSizes = {1, 31, 1000, 65537, 3 * 1000 * 1000 + 7};

}  // namespace

TEST(GpuRuntime, AvailableGivesAReasonWhenNot) {
#ifndef BERTUNE_CUDA
  GTEST_SKIP() << gpu_test::gpu_missing();
#else
  std::string why = "unchanged";
  bool ok = kernels::gpu::available(&why);
  if (ok) {
    EXPECT_TRUE(why.empty());
    std::printf("GPU: %s\n", kernels::gpu::device_description().c_str());
  } else {
    EXPECT_FALSE(why.empty());
    EXPECT_NE(why, "unchanged");
    std::printf("no GPU: %s\n", why.c_str());
  }
#endif
}

// Without a usable GPU a CUDA op is an Error (never a crash or a silent no-op).
TEST(GpuRuntime, CudaOpWithoutGpuIsAnError) {
  if (gpu_test::gpu_missing().empty()) GTEST_SKIP() << "a GPU is usable here";
  EXPECT_THROW(kernels::scale(Device::CUDA, nullptr, 16, 2.f), Error);
}

TEST(GpuRuntime, Int8IsCpuOnly) {
  std::vector<float> W(4 * 8, 0.5f);
  auto q = kernels::quantize_linear(W.data(), 4, 8);
  try {
    kernels::linear_int8_forward(Device::CUDA, nullptr, nullptr, q, nullptr, 2);
    ADD_FAILURE() << "linear_int8_forward on CUDA did not throw";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("int8 inference is CPU-only"), std::string::npos) << e.what();
  }
}

TEST(GpuRuntime, CopiesFillGatherScatter) {
#ifndef BERTUNE_CUDA
  GTEST_SKIP() << gpu_test::gpu_missing();  // the runtime functions exist only in a CUDA build
#else
  BERTUNE_REQUIRE_GPU();
  const int rows = 50, width = 33;
  auto src = randn(size_t(rows) * width, 1);
  DeviceArray<float> d_src(src), d_copy = DeviceArray<float>::poisoned(src.size());
  kernels::gpu::copy_on_device(d_copy.data(), d_src.data(), src.size() * sizeof(float));
  EXPECT_EQ(d_copy.download(), src);
  kernels::gpu::fill_zero(d_copy.data(), src.size() * sizeof(float));
  EXPECT_EQ(d_copy.download(), std::vector<float>(src.size(), 0.f));

  auto picks = gpu_test::random_ints(80, 2, 0, rows - 1);  // repeats: the scatter must add
  DeviceArray<int32_t> d_picks(picks);
  auto gathered = DeviceArray<float>::poisoned(picks.size() * width);
  kernels::gpu::gather_rows(gathered.data(), d_src.data(), d_picks.data(), int(picks.size()), width);
  std::vector<float> want_gather(picks.size() * width), want_scatter = src;
  for (size_t r = 0; r < picks.size(); ++r)
    for (int c = 0; c < width; ++c) {
      want_gather[r * width + c] = src[size_t(picks[r]) * width + c];
      want_scatter[size_t(picks[r]) * width + c] += want_gather[r * width + c];
    }
  EXPECT_EQ(gathered.download(), want_gather);
  kernels::gpu::scatter_add_rows(d_src.data(), gathered.data(), d_picks.data(), int(picks.size()), width);
  expect_close("scatter_add_rows", d_src.download(), want_scatter, gpu_test::kFp32Sum);
  kernels::gpu::synchronize();
#endif
}

TEST(GpuOps, DropoutReproducesCpuMasks) {
  BERTUNE_REQUIRE_GPU();
  for (size_t n : kSizes)
    for (float p : {0.f, 0.1f, 0.5f}) {
      auto x = randn(n, uint32_t(n) + 3);
      auto drop = kernels::Dropout::make(42, n, 7, p);
      std::vector<float> want(n);
      kernels::dropout_forward(Device::CPU, want.data(), x.data(), n, drop);
      DeviceArray<float> dx(x), dy = DeviceArray<float>::poisoned(n);
      kernels::dropout_forward(Device::CUDA, dy.data(), dx.data(), n, drop);
      expect_close("dropout_forward p=" + std::to_string(p), dy.download(), want, gpu_test::kExact);
      kernels::dropout_backward(Device::CUDA, dx.data(), dx.data(), n, drop);  // in place
      kernels::dropout_backward(Device::CPU, x.data(), x.data(), n, drop);
      expect_close("dropout_backward in place", dx.download(), x, gpu_test::kExact);
    }
}

TEST(GpuOps, GeluAndTanh) {
  BERTUNE_REQUIRE_GPU();
  for (size_t n : kSizes) {
    auto x = randn(n, uint32_t(n), 3.f), dy = randn(n, uint32_t(n) + 1);
    DeviceArray<float> d_x(x), d_dy(dy);
    std::vector<float> want(n);
    auto out = DeviceArray<float>::poisoned(n);
    kernels::gelu_forward(Device::CPU, want.data(), x.data(), n);
    kernels::gelu_forward(Device::CUDA, out.data(), d_x.data(), n);
    expect_close("gelu_forward", out.download(), want, gpu_test::kGelu);
    kernels::gelu_backward(Device::CPU, want.data(), dy.data(), x.data(), n);
    kernels::gelu_backward(Device::CUDA, out.data(), d_dy.data(), d_x.data(), n);
    expect_close("gelu_backward", out.download(), want, gpu_test::kGelu);
    kernels::tanh_forward(Device::CPU, want.data(), x.data(), n);
    kernels::tanh_forward(Device::CUDA, out.data(), d_x.data(), n);
    expect_close("tanh_forward", out.download(), want, gpu_test::kFp32);
    auto y = want;  // tanh(x): backward works from the output
    DeviceArray<float> d_y(y);
    kernels::tanh_backward(Device::CPU, want.data(), dy.data(), y.data(), n);
    kernels::tanh_backward(Device::CUDA, out.data(), d_dy.data(), d_y.data(), n);
    expect_close("tanh_backward", out.download(), want, gpu_test::kFp32);
  }
}

TEST(GpuOps, BiasGelu) {
  BERTUNE_REQUIRE_GPU();
  for (auto [T, N] : row_shapes()) {
    size_t n = size_t(T) * N;
    auto u = randn(n, T + N, 2.f), b = randn(N, T);
    DeviceArray<float> d_u(u), d_b(b), d_g = DeviceArray<float>::poisoned(n);
    std::vector<float> g(n);
    kernels::bias_gelu_forward(Device::CPU, u.data(), g.data(), b.data(), T, N);
    kernels::bias_gelu_forward(Device::CUDA, d_u.data(), d_g.data(), d_b.data(), T, N);
    expect_close("bias_gelu u", d_u.download(), u, gpu_test::kFp32);
    expect_close("bias_gelu g", d_g.download(), g, gpu_test::kGelu);
  }
}

TEST(GpuOps, LayerNormForwardBackward) {
  BERTUNE_REQUIRE_GPU();
  for (auto [T, H] : row_shapes()) {
    size_t n = size_t(T) * H;
    auto x = randn(n, T, 2.f), gamma = randn(H, H), beta = randn(H, H + 1);
    auto dout = randn(n, T + 5);
    // the gradients accumulate: start both from the same non-zero values
    auto dgamma = randn(H, 9), dbeta = randn(H, 10);
    std::vector<float> out(n), mean(T), rstd(T), dx(n);
    kernels::layernorm_forward(Device::CPU, out.data(), mean.data(), rstd.data(), x.data(),
                               gamma.data(), beta.data(), T, H, 1e-12f);
    DeviceArray<float> d_x(x), d_gamma(gamma), d_beta(beta), d_dout(dout), d_dgamma(dgamma), d_dbeta(dbeta);
    auto d_out = DeviceArray<float>::poisoned(n), d_mean = DeviceArray<float>::poisoned(T),
         d_rstd = DeviceArray<float>::poisoned(T), d_dx = DeviceArray<float>::poisoned(n);
    kernels::layernorm_forward(Device::CUDA, d_out.data(), d_mean.data(), d_rstd.data(), d_x.data(),
                               d_gamma.data(), d_beta.data(), T, H, 1e-12f);
    std::string at = " T=" + std::to_string(T) + " H=" + std::to_string(H);
    expect_close("layernorm out" + at, d_out.download(), out, gpu_test::kFp32);
    expect_close("layernorm mean" + at, d_mean.download(), mean, gpu_test::kFp32);
    expect_close("layernorm rstd" + at, d_rstd.download(), rstd, gpu_test::kFp32);
    // backward from the CPU's saved statistics, so only the backward differs
    DeviceArray<float> c_mean(mean), c_rstd(rstd);
    kernels::layernorm_backward(Device::CPU, dx.data(), dgamma.data(), dbeta.data(), dout.data(),
                                x.data(), mean.data(), rstd.data(), gamma.data(), T, H);
    kernels::layernorm_backward(Device::CUDA, d_dx.data(), d_dgamma.data(), d_dbeta.data(),
                                d_dout.data(), d_x.data(), c_mean.data(), c_rstd.data(),
                                d_gamma.data(), T, H);
    expect_close("layernorm dx" + at, d_dx.download(), dx, gpu_test::kFp32);
    expect_close("layernorm dgamma" + at, d_dgamma.download(), dgamma, gpu_test::kFp32Sum);
    expect_close("layernorm dbeta" + at, d_dbeta.download(), dbeta, gpu_test::kFp32Sum);
  }
}

TEST(GpuOps, DropoutResidualLayerNorm) {
  BERTUNE_REQUIRE_GPU();
  for (auto [T, H] : row_shapes())
    for (float p : {0.f, 0.1f}) {
      size_t n = size_t(T) * H;
      auto y = randn(n, T), res = randn(n, T + 1), gamma = randn(H, 3),
           beta = randn(H, 4);
      auto drop = kernels::Dropout::make(5, T, H, p);
      std::vector<float> out(n), s(n), mean(T), rstd(T);
      kernels::dropout_residual_layernorm_forward(Device::CPU, out.data(), s.data(), mean.data(),
                                                  rstd.data(), y.data(), res.data(), gamma.data(),
                                                  beta.data(), T, H, 1e-12f, drop);
      DeviceArray<float> d_y(y), d_res(res), d_gamma(gamma), d_beta(beta);
      auto d_out = DeviceArray<float>::poisoned(n), d_s = DeviceArray<float>::poisoned(n),
           d_mean = DeviceArray<float>::poisoned(T), d_rstd = DeviceArray<float>::poisoned(T);
      kernels::dropout_residual_layernorm_forward(Device::CUDA, d_out.data(), d_s.data(), d_mean.data(),
                                                  d_rstd.data(), d_y.data(), d_res.data(),
                                                  d_gamma.data(), d_beta.data(), T, H, 1e-12f, drop);
      // s = y * mask + residual (nvcc may fuse the two into one rounding)
      expect_close("dropout_residual s", d_s.download(), s, gpu_test::kFp32);
      expect_close("dropout_residual_layernorm out", d_out.download(), out, gpu_test::kFp32);
      expect_close("dropout_residual_layernorm rstd", d_rstd.download(), rstd, gpu_test::kFp32);
      expect_close("dropout_residual_layernorm mean", d_mean.download(), mean, gpu_test::kFp32);
    }
}

TEST(GpuOps, EmbeddingsOverPackedBatch) {
  BERTUNE_REQUIRE_GPU();
  for (int H : {32, 100, 768}) {
    auto batch = gpu_test::random_packed_batch(H, 40, 128, 1);
    const int T = batch.rows(), V = 50, P = 128, TT = 2;  // a small vocabulary: ids repeat
    auto ids = gpu_test::random_ints(T, 1, 0, V - 1), types = gpu_test::random_ints(T, 2, 0, TT - 1);
    auto word = randn(size_t(V) * H, 3), pos = randn(size_t(P) * H, 4),
         tt = randn(size_t(TT) * H, 5), dout = randn(size_t(T) * H, 6);
    for (bool with_types : {true, false}) {
      const int32_t* types_cpu = with_types ? types.data() : nullptr;
      std::vector<float> out(size_t(T) * H);
      kernels::embeddings_forward(Device::CPU, out.data(), ids.data(), batch.positions.data(),
                                  types_cpu, word.data(), pos.data(), tt.data(), T, H);
      DeviceArray<int32_t> d_ids(ids), d_pos_ids(batch.positions), d_types(types);
      DeviceArray<float> d_word(word), d_pos(pos), d_tt(tt), d_dout(dout);
      auto d_out = DeviceArray<float>::poisoned(out.size());
      kernels::embeddings_forward(Device::CUDA, d_out.data(), d_ids.data(), d_pos_ids.data(),
                                  with_types ? d_types.data() : nullptr, d_word.data(), d_pos.data(),
                                  d_tt.data(), T, H);
      expect_close("embeddings_forward", d_out.download(), out, gpu_test::kFp32);
      // backward accumulates into the tables: start from their values
      std::vector<float> dword = word, dpos = pos, dtt = tt;
      kernels::embeddings_backward(Device::CPU, dword.data(), dpos.data(), dtt.data(), dout.data(),
                                   ids.data(), batch.positions.data(), types_cpu, T, H);
      kernels::embeddings_backward(Device::CUDA, d_word.data(), d_pos.data(), d_tt.data(),
                                   d_dout.data(), d_ids.data(), d_pos_ids.data(),
                                   with_types ? d_types.data() : nullptr, T, H);
      expect_close("embeddings_backward word", d_word.download(), dword, gpu_test::kFp32Sum);
      expect_close("embeddings_backward position", d_pos.download(), dpos, gpu_test::kFp32Sum);
      expect_close("embeddings_backward token_type", d_tt.download(), dtt, gpu_test::kFp32Sum);
    }
  }
}

TEST(GpuOps, CrossEntropy) {
  BERTUNE_REQUIRE_GPU();
  struct Case { int N, C; };
  for (Case c : {Case{1, 2}, Case{32, 2}, Case{256, 3}, Case{1000, 32000}, Case{5, 1}}) {
    auto logits = randn(size_t(c.N) * c.C, c.N + c.C, 4.f);
    auto labels = gpu_test::random_ints(c.N, c.C, 0, c.C - 1);
    for (int i = 0; i < c.N; i += 3) labels[i] = -100;  // ignored rows (MLM), the first among them
    std::vector<float> probs(logits.size()), dlogits(logits.size());
    int counted = -1, d_counted = -1;
    float loss = kernels::cross_entropy_forward(Device::CPU, probs.data(), logits.data(), labels.data(),
                                                c.N, c.C, &counted);
    DeviceArray<float> d_logits(logits);
    DeviceArray<int32_t> d_labels(labels);
    auto d_probs = DeviceArray<float>::poisoned(probs.size()), d_dl = DeviceArray<float>::poisoned(probs.size());
    float d_loss = kernels::cross_entropy_forward(Device::CUDA, d_probs.data(), d_logits.data(),
                                                  d_labels.data(), c.N, c.C, &d_counted);
    EXPECT_EQ(d_counted, counted);
    EXPECT_NEAR(d_loss, loss, 1e-5 * (std::fabs(loss) + 1e-3)) << "N=" << c.N << " C=" << c.C;
    expect_close("cross_entropy probs", d_probs.download(), probs, gpu_test::kFp32);
    kernels::cross_entropy_backward(Device::CPU, dlogits.data(), probs.data(), labels.data(), c.N, c.C, counted);
    DeviceArray<float> c_probs(probs);  // the CPU's probs: only the backward differs
    kernels::cross_entropy_backward(Device::CUDA, d_dl.data(), c_probs.data(), d_labels.data(), c.N,
                                    c.C, counted);
    expect_close("cross_entropy dlogits", d_dl.download(), dlogits, gpu_test::kFp32);
  }
}

TEST(GpuOps, SumSquaresAndScale) {
  BERTUNE_REQUIRE_GPU();
  for (size_t n : kSizes) {
    auto x = randn(n, uint32_t(n) + 8);
    DeviceArray<float> d_x(x);
    double want = kernels::sum_squares(Device::CPU, x.data(), n);
    EXPECT_NEAR(kernels::sum_squares(Device::CUDA, d_x.data(), n), want, 1e-5 * want) << n;
    DeviceArray<double> total(std::vector<double>{1.5});  // accumulates onto what is there
    kernels::sum_squares_accumulate(Device::CUDA, total.data(), d_x.data(), n);
    kernels::sum_squares_accumulate(Device::CUDA, total.data(), d_x.data(), n);
    EXPECT_NEAR(total.download()[0], 1.5 + 2 * want, 1e-5 * want) << n;
    kernels::scale(Device::CPU, x.data(), n, -0.37f);
    kernels::scale(Device::CUDA, d_x.data(), n, -0.37f);
    expect_close("scale", d_x.download(), x, gpu_test::kExact);
    auto y = randn(n, uint32_t(n) + 9);
    DeviceArray<float> d_y(y);
    kernels::add_scaled(Device::CPU, y.data(), x.data(), n, 2.5f);
    kernels::add_scaled(Device::CUDA, d_y.data(), d_x.data(), n, 2.5f);
    expect_close("add_scaled", d_y.download(), y, gpu_test::kFp32);
  }
}

namespace {

kernels::AdamWStep adamw_coefficients(bool torch_form, int step) {
  const double lr = 3e-4, b1 = 0.9, b2 = 0.999, wd = 0.01;
  const double bc1 = 1 - std::pow(b1, step), bc2 = 1 - std::pow(b2, step);
  kernels::AdamWStep s{};
  s.beta1 = float(b1);
  s.one_minus_beta1 = float(1 - b1);
  s.beta2 = float(b2);
  s.one_minus_beta2 = float(1 - b2);
  s.eps = 1e-8f;
  s.step_size = torch_form ? float(lr / bc1) : float(lr * std::sqrt(bc2) / bc1);
  s.bias2_sqrt = torch_form ? float(std::sqrt(bc2)) : 1.f;
  s.pre_decay = torch_form ? float(1 - lr * wd) : 1.f;
  s.post_decay = torch_form ? 0.f : float(-lr * wd);
  return s;
}

}  // namespace

TEST(GpuOps, AdamWSingleAndRangesWithDeviceClip) {
  BERTUNE_REQUIRE_GPU();
  const size_t n = 1000003;
  // decay / no-decay ranges as the model lays parameters out, with a gap left untouched
  std::vector<kernels::AdamWRange> ranges = {{0, 768, false}, {768, 600000, true},
                                             {600000, 600100, false}, {600200, n, true}};
  for (bool torch_form : {true, false})
    for (float max_norm : {0.f, 1.f}) {
      auto p = randn(n, 1), m = randn(n, 2, 0.01f), v = randn(n, 3, 0.01f);
      for (auto& e : v) e = std::fabs(e);
      DeviceArray<float> d_p(p), d_m(m), d_v(v);
      for (int step = 1; step <= 3; ++step) {
        auto g = randn(n, 10 + step, 0.5f);
        DeviceArray<float> d_g(g);
        auto s = adamw_coefficients(torch_form, step), no_decay = s;
        no_decay.pre_decay = 1.f;
        no_decay.post_decay = 0.f;
        s.grad_scale = no_decay.grad_scale = 0.5f;  // e.g. 1 / accumulation steps
        double host_sumsq = kernels::sum_squares(Device::CPU, g.data(), n);
        DeviceArray<double> d_sumsq(std::vector<double>{0.0});
        kernels::sum_squares_accumulate(Device::CUDA, d_sumsq.data(), d_g.data(), n);
        s.max_grad_norm = no_decay.max_grad_norm = max_norm;
        auto s_cpu = s, nd_cpu = no_decay;
        s_cpu.clip_sum_squares = nd_cpu.clip_sum_squares = &host_sumsq;
        s.clip_sum_squares = no_decay.clip_sum_squares = d_sumsq.data();
        kernels::adamw_update_ranges(Device::CPU, p.data(), g.data(), m.data(), v.data(),
                                     ranges.data(), int(ranges.size()), s_cpu, nd_cpu, true);
        kernels::adamw_update_ranges(Device::CUDA, d_p.data(), d_g.data(), d_m.data(), d_v.data(),
                                     ranges.data(), int(ranges.size()), s, no_decay, true);
        expect_close("adamw_update_ranges g (zeroed, gap kept)", d_g.download(), g, gpu_test::kExact);
      }
      expect_close("adamw p", d_p.download(), p, gpu_test::kFp32);
      expect_close("adamw m", d_m.download(), m, gpu_test::kFp32);
      expect_close("adamw v", d_v.download(), v, gpu_test::kFp32);
      // the single-range form
      auto g = randn(n, 99, 0.5f);
      DeviceArray<float> d_g(g);
      auto s = adamw_coefficients(torch_form, 4);
      kernels::adamw_update(Device::CPU, p.data(), g.data(), m.data(), v.data(), n, s, false);
      kernels::adamw_update(Device::CUDA, d_p.data(), d_g.data(), d_m.data(), d_v.data(), n, s, false);
      expect_close("adamw_update p", d_p.download(), p, gpu_test::kFp32);
      expect_close("adamw_update g (kept)", d_g.download(), g, gpu_test::kExact);
    }
}

// ---- the fronts: what a CUDA call may rely on, checked on any machine -------------------

TEST(OpFronts, AttentionMetadataIsCheckedOnHostCopies) {
  auto batch = gpu_test::random_packed_batch(3, 5, 20, 2);
  auto shape = batch.shape(2, 8);
  EXPECT_NO_THROW(kernels::check_attention_metadata(shape, batch.offsets.data(), batch.lengths.data(),
                                                    batch.prob_offsets.data()));
  auto lengths = batch.lengths;
  lengths[1] = batch.offsets[2] - batch.offsets[1] + 1;  // longer than its span
  try {
    kernels::check_attention_metadata(shape, batch.offsets.data(), lengths.data(), batch.prob_offsets.data(),
                                      "upload");
    ADD_FAILURE() << "a length beyond its span passed";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("upload: sequence 1 has length"), std::string::npos) << e.what();
  }
  shape.max_length = batch.max_length + 1;
  EXPECT_THROW(kernels::check_attention_metadata(shape, batch.offsets.data(), batch.lengths.data(),
                                                 batch.prob_offsets.data()),
               Error);
  // a CUDA call must name the longest span: the front cannot read offsets there
  shape = batch.shape(2, 8);
  shape.max_length = 0;
  try {
    kernels::attention_forward(Device::CUDA, nullptr, nullptr, nullptr, shape, kernels::Dropout{});
    ADD_FAILURE() << "a CUDA attention call without max_length passed the front";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("max_length must be set"), std::string::npos) << e.what();
  }
}

// Without a usable GPU, CUDA calls whose arrays point at unmapped addresses end in an
// Error from dispatch or the CUDA runtime: the fronts never dereference them (a
// front that read labels or offsets would crash here instead).
TEST(OpFronts, CudaFrontsReadNoArgumentMemory) {
  if (gpu_test::gpu_missing().empty()) GTEST_SKIP() << "a GPU is usable here: launching on bad pointers is not a test";
  const auto* bad_i32 = reinterpret_cast<const int32_t*>(uintptr_t(16));
  const auto* bad_i64 = reinterpret_cast<const int64_t*>(uintptr_t(16));
  auto* bad_f = reinterpret_cast<float*>(uintptr_t(16));
  int counted = 0;
  EXPECT_THROW(kernels::cross_entropy_forward(Device::CUDA, bad_f, bad_f, bad_i32, 8, 2, &counted), Error);
  kernels::AttentionShape shape{bad_i32, bad_i32, 4, 2, 8, bad_i64, 16};
  EXPECT_THROW(kernels::attention_forward(Device::CUDA, bad_f, bad_f, bad_f, shape, kernels::Dropout{}), Error);
  EXPECT_THROW(kernels::embeddings_forward(Device::CUDA, bad_f, bad_i32, bad_i32, bad_i32, bad_f, bad_f, bad_f, 4, 8),
               Error);
}

TEST(OpFronts, AdamWRangesAndHostClipMatchSeparateCallsOnCpu) {
  const size_t n = 5000;
  std::vector<kernels::AdamWRange> ranges = {{0, 100, false}, {100, 3000, true}, {3100, n, true}};
  auto s = adamw_coefficients(true, 2), nd = s;
  nd.pre_decay = 1.f;
  auto g = randn(n, 7), p = randn(n, 8), m = randn(n, 9, 0.01f), v = m;
  for (auto& e : v) e = std::fabs(e);
  double sumsq = kernels::sum_squares(Device::CPU, g.data(), n);
  const float max_norm = 1.f;
  float coef = max_norm / (float(std::sqrt(sumsq)) + 1e-6f);
  ASSERT_LT(coef, 1.f);  // clipping is active
  // expected: one adamw_update per range with grad_scale = coef
  auto p2 = p, g2 = g, m2 = m, v2 = v;
  for (const auto& r : ranges) {
    auto c = r.decay ? s : nd;
    c.grad_scale = coef;
    kernels::adamw_update(Device::CPU, p2.data() + r.begin, g2.data() + r.begin, m2.data() + r.begin,
                          v2.data() + r.begin, r.end - r.begin, c, true);
  }
  s.clip_sum_squares = nd.clip_sum_squares = &sumsq;
  s.max_grad_norm = nd.max_grad_norm = max_norm;
  kernels::adamw_update_ranges(Device::CPU, p.data(), g.data(), m.data(), v.data(), ranges.data(),
                               int(ranges.size()), s, nd, true);
  EXPECT_EQ(p, p2);
  EXPECT_EQ(g, g2);
  EXPECT_EQ(m, m2);
  EXPECT_EQ(v, v2);
  EXPECT_NE(g[3050], 0.f);  // the gap between ranges is untouched
  double total = 0.5;
  kernels::sum_squares_accumulate(Device::CPU, &total, g2.data(), 100);
  EXPECT_EQ(total, 0.5 + kernels::sum_squares(Device::CPU, g2.data(), 100));
  std::vector<kernels::AdamWRange> overlapping = {{0, 200, true}, {100, 300, false}};
  EXPECT_THROW(kernels::adamw_update_ranges(Device::CPU, p.data(), g.data(), m.data(), v.data(),
                                            overlapping.data(), 2, s, nd, true),
               Error);
}
