// The oneDNN int8 kernel (BERTUNE_INT8_KERNEL=onednn; builds with BERTUNE_WITH_ONEDNN only):
// the integer GEMM runs on oneDNN's int8 matmul primitive, the rest is ours, so the bits
// are the other kernels' bits:
// - activations quantized per row (the AVX2 quantizer) straight into the GEMM's u8 input
//   (q + 128, the VNNI kernel's shift), one pass per row while it is in L1;
// - matmul u8 [rows, in] x s8 [in, out] -> s32 per chunk of 256 rows, the weights
//   reordered once into oneDNN's blocked layout (kept in QuantizedLinear::onednn);
// - the epilogue per chunk, while its int32 sums are in cache: y = fma(float(acc -
//   128 * sum_k q[o, k]), row_scale * scale[o], b[o]), the same fma as every other kernel.
// The int32 sums are exact only where oneDNN multiplies with VNNI (vpdpbusd): on an
// AVX2-only ISA it uses vpmaddubsw, whose int16 pair sums saturate (255 * 127 * 2 > 2^15).
// So the kernel runs only where oneDNN's effective ISA has VNNI (AVX-512 VNNI or
// AVX-VNNI; ONEDNN_MAX_CPU_ISA lowers it), and is refused otherwise.
//
// Primitives are made per row count (oneDNN's int8 brgemm takes no run-time row count),
// on first use, and kept; the scratchpad is the caller's (thread-local), so one primitive
// serves several threads at once.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <map>
#include <tuple>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#ifdef BERTUNE_WITH_ONEDNN
#include <oneapi/dnnl/dnnl.hpp>
#endif

#include "kernels/cpu/int8_cpu.h"
#include "util/error.h"

namespace bertune::kernels::cpu {

#ifdef BERTUNE_WITH_ONEDNN
namespace {

constexpr int kChunkRows = 256;  // rows per GEMM call: its int32 output stays in cache
constexpr int kRowStep = 16;     // a last chunk's rows are padded to a multiple of this
constexpr size_t kParallelWork = 1 << 16;

int round_up(int v, int m) { return (v + m - 1) / m * m; }

dnnl::engine& cpu_engine() {
  static dnnl::engine e(dnnl::engine::kind::cpu, 0);
  return e;
}

using dt = dnnl::memory::data_type;
using tag = dnnl::memory::format_tag;

// u8 [rows, in] x s8 [in, out] in the layout oneDNN chooses -> s32 [rows, out].
struct Gemm {
  dnnl::matmul primitive;
  dnnl::memory::desc src, weights, dst;
  size_t scratch_bytes = 0;
};

Gemm make_gemm(int rows, int in, int out) {
  Gemm g;
  g.src = dnnl::memory::desc({rows, in}, dt::u8, tag::ab);
  g.dst = dnnl::memory::desc({rows, out}, dt::s32, tag::ab);
  dnnl::primitive_attr attr;
  attr.set_scratchpad_mode(dnnl::scratchpad_mode::user);
  auto pd = dnnl::matmul::primitive_desc(
      dnnl::matmul::desc(g.src, dnnl::memory::desc({in, out}, dt::s8, tag::any), g.dst), attr, cpu_engine());
  g.weights = pd.weights_desc();
  g.scratch_bytes = pd.scratchpad_desc().get_size();
  g.primitive = dnnl::matmul(pd);
  return g;
}

// One primitive per (rows, in, out): rows is kChunkRows or a multiple of kRowStep below it,
// so a model makes a few per linear shape, once.
const Gemm& gemm_for(int rows, int in, int out) {
  static std::mutex mu;
  static std::map<std::tuple<int, int, int>, std::unique_ptr<const Gemm>> gemms;
  std::lock_guard lock(mu);
  auto& g = gemms[{rows, in, out}];
  if (!g) {
    try {
      g = std::make_unique<const Gemm>(make_gemm(rows, in, out));
    } catch (const dnnl::error& e) {
      gemms.erase({rows, in, out});
      throw Error("int8 kernel onednn: no u8 x s8 matmul for [" + std::to_string(out) + ", " + std::to_string(in) +
                  "]: " + e.what());
    }
  }
  return *g;
}

// q reordered once into the layout of the full-chunk primitive.
struct PackedWeights {
  dnnl::memory::desc desc;
  std::vector<uint8_t> bytes;
};

std::shared_ptr<const PackedWeights> packed_weights(const QuantizedLinear& w) {
  return w.onednn.get<PackedWeights>([&] {
    auto p = std::make_shared<PackedWeights>();
    p->desc = gemm_for(kChunkRows, w.in, w.out).weights;
    p->bytes.resize(p->desc.get_size());
    dnnl::memory from({{w.in, w.out}, dt::s8, tag::ba}, cpu_engine(), const_cast<int8_t*>(w.q.data()));
    dnnl::memory to(p->desc, cpu_engine(), p->bytes.data());
    dnnl::stream stream(cpu_engine());
    dnnl::reorder(from, to).execute(stream, from, to);
    stream.wait();
    return std::shared_ptr<const PackedWeights>(std::move(p));
  });
}

// Per-thread buffers: no allocation per call once warm.
struct Scratch {
  std::vector<uint8_t> a;        // [T padded to kRowStep, in] u8 activations (pad rows 0)
  std::vector<float> scales;     // [T]
  std::vector<int32_t> c;        // [kChunkRows, out] one chunk's sums
  std::vector<uint8_t> dnnl;     // the primitive's scratchpad
  std::vector<uint8_t> weights;  // q in a primitive's own layout, where it differs (not seen)
};
Scratch& scratch() {
  static thread_local Scratch s;
  return s;
}

void quantize_to_u8(const float* x, int T, int in, Scratch& s) {
  const int padded = round_up(T, kRowStep);
  s.a.resize(size_t(padded) * in);
  std::fill(s.a.begin() + size_t(T) * in, s.a.end(), uint8_t(0));
  s.scales.resize(T);
#pragma omp parallel for schedule(static) if (size_t(T) * in > kParallelWork)
  for (int t = 0; t < T; ++t) {
    uint8_t* row = s.a.data() + size_t(t) * in;
    s.scales[t] = quantize_row_avx2(x + size_t(t) * in, in, reinterpret_cast<int8_t*>(row));
    for (int k = 0; k < in; ++k) row[k] ^= 0x80;  // q + 128
  }
}

// y [rows, out] from the chunk's int32 sums c.
void epilogue(float* y, const int32_t* c, const QuantizedLinear& w, const float* b, int rows,
              const float* row_scales) {
  const int out = w.out;
  const int32_t* comp = w.compensation.data();
  const float* wscale = w.scale.data();
#pragma omp parallel for schedule(static) if (size_t(rows) * out > kParallelWork / 4)
  for (int t = 0; t < rows; ++t) {
    float* yr = y + size_t(t) * out;
    const int32_t* acc = c + size_t(t) * out;
    const float rs = row_scales[t];
    if (b) {
      for (int o = 0; o < out; ++o) yr[o] = std::fma(static_cast<float>(acc[o] - comp[o]), rs * wscale[o], b[o]);
    } else {
      for (int o = 0; o < out; ++o) yr[o] = std::fma(static_cast<float>(acc[o] - comp[o]), rs * wscale[o], 0.f);
    }
  }
}

// c = a x weights for one chunk.
void run_gemm(const Gemm& g, const uint8_t* a, const PackedWeights& packed, const QuantizedLinear& w, int32_t* c,
              Scratch& s) {
  static thread_local dnnl::stream stream(cpu_engine());
  auto& engine = cpu_engine();
  void* wp = const_cast<uint8_t*>(packed.bytes.data());
  if (g.weights != packed.desc) {  // a layout of its own for this row count: reorder for it
    s.weights.resize(g.weights.get_size());
    dnnl::memory from({{w.in, w.out}, dt::s8, tag::ba}, engine, const_cast<int8_t*>(w.q.data()));
    dnnl::memory to(g.weights, engine, s.weights.data());
    dnnl::reorder(from, to).execute(stream, from, to);
    wp = s.weights.data();
  }
  s.dnnl.resize(g.scratch_bytes);
  dnnl::memory src(g.src, engine, const_cast<uint8_t*>(a)), weights(g.weights, engine, wp), dst(g.dst, engine, c);
  dnnl::memory pad({{dnnl::memory::dim(g.scratch_bytes)}, dt::u8, tag::a}, engine, s.dnnl.data());
  g.primitive.execute(stream, {{DNNL_ARG_SRC, src}, {DNNL_ARG_WEIGHTS, weights}, {DNNL_ARG_DST, dst},
                               {DNNL_ARG_SCRATCHPAD, pad}});
  stream.wait();
}

}  // namespace

const char* onednn_int8_unavailable() {
  static const std::string why = [] {
    const int isa = static_cast<int>(dnnl::get_effective_cpu_isa());
    const int avx512_vnni = static_cast<int>(dnnl::cpu_isa::avx512_core_vnni);
    const int avx_vnni = static_cast<int>(dnnl::cpu_isa::avx2_vnni);
    const bool vnni = (isa & avx512_vnni) == avx512_vnni || (isa & avx_vnni) == avx_vnni;
    return vnni ? std::string()
                : std::string("oneDNN runs without VNNI here (this CPU, or ONEDNN_MAX_CPU_ISA), where its u8 x s8 "
                              "products saturate");
  }();
  return why.empty() ? nullptr : why.c_str();
}

void forward_onednn(float* y, const float* x, const QuantizedLinear& w, const float* b, int T) {
  Scratch& s = scratch();
  auto packed = packed_weights(w);
  quantize_to_u8(x, T, w.in, s);
  s.c.resize(size_t(std::min(round_up(T, kRowStep), kChunkRows)) * w.out);
  for (int t0 = 0; t0 < T; t0 += kChunkRows) {
    const int rows = std::min(kChunkRows, T - t0);
    const Gemm& g = gemm_for(round_up(rows, kRowStep), w.in, w.out);
    run_gemm(g, s.a.data() + size_t(t0) * w.in, *packed, w, s.c.data(), s);
    epilogue(y + size_t(t0) * w.out, s.c.data(), w, b, rows, s.scales.data() + t0);
  }
}

#else  // a build without oneDNN: never chosen (onednn_int8_unavailable() says why)

const char* onednn_int8_unavailable() {
  return "this build has no oneDNN (configure with -DBERTUNE_ONEDNN=ON where libdnnl-dev is installed)";
}
void forward_onednn(float*, const float*, const QuantizedLinear&, const float*, int) {
  throw Error(std::string("int8 kernel onednn: ") + onednn_int8_unavailable());
}

#endif

}  // namespace bertune::kernels::cpu
