#include "quant/int8_model.h"

#include <unistd.h>

#include <cstring>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/read_file.h"
#include "util/error.h"

namespace bertune::quant {
namespace fs = std::filesystem;
using Json = nlohmann::json;

bool is_quantized_weight(const std::string& name, const std::vector<int64_t>& shape) {
  if (shape.size() != 2 || !name.ends_with(".weight")) return false;
  LayerLinears distil;
  distil.layer_prefix = "distilbert.transformer.layer.";
  distil.query = "attention.q_lin", distil.key = "attention.k_lin", distil.value = "attention.v_lin";
  distil.attn_out = "attention.out_lin", distil.ffn_in = "ffn.lin1", distil.ffn_out = "ffn.lin2";
  LayerLinears bert, roberta, electra;
  roberta.layer_prefix = "roberta.encoder.layer.";
  electra.layer_prefix = "electra.encoder.layer.";
  for (const LayerLinears* n : {&bert, &roberta, &electra, &distil}) {
    if (!name.starts_with(n->layer_prefix)) continue;
    for (const std::string* module : {&n->query, &n->key, &n->value, &n->attn_out, &n->ffn_in, &n->ffn_out})
      if (name.ends_with("." + *module + ".weight")) return true;
  }
  return false;
}

bool is_int8_model_dir(const fs::path& dir) {
  std::error_code ec;
  if (!fs::exists(dir / "config.json", ec)) return false;
  try {
    return Json::parse(io::read_file(dir / "config.json")).contains(kConfigMarker);
  } catch (const Json::exception&) {
    return false;
  }
}

namespace {

struct Entry {
  std::string name, dtype;
  std::vector<int64_t> shape;
  std::string bytes;
};

// safetensors: u64 header length, JSON header, data; offsets relative to the data.
std::string serialize(const std::vector<Entry>& entries, const std::map<std::string, std::string>& metadata) {
  Json header = Json::object();
  header["__metadata__"] = metadata;
  size_t offset = 0;
  for (const auto& e : entries) {
    header[e.name] = {{"dtype", e.dtype}, {"shape", e.shape}, {"data_offsets", {offset, offset + e.bytes.size()}}};
    offset += e.bytes.size();
  }
  std::string h = header.dump();
  while ((h.size() + 8) % 8 != 0) h.push_back(' ');  // data aligned to 8 bytes
  std::string out(8, '\0');
  const uint64_t n = h.size();
  std::memcpy(out.data(), &n, 8);  // little-endian hosts only, as the reader
  out += h;
  for (const auto& e : entries) out += e.bytes;
  return out;
}

template <class T>
std::string raw(const T* data, size_t n) {
  return std::string(reinterpret_cast<const char*>(data), n * sizeof(T));
}

}  // namespace

QuantizeReport write_int8_model_dir(const fs::path& model, const Json& config, const std::vector<TensorRef>& tensors,
                                    const std::vector<fs::path>& tokenizer_files, const fs::path& output) {
  QuantizeReport report;
  std::vector<Entry> entries;
  Json quantized_names = Json::array();
  for (const TensorRef& t : tensors) {
    size_t numel = 1;
    for (auto d : t.shape) numel *= static_cast<size_t>(d);
    report.fp32_bytes += numel * 4;
    if (!is_quantized_weight(t.name, t.shape)) {
      entries.push_back({t.name, "F32", t.shape, raw(t.data, numel)});
      report.kept++;
      continue;
    }
    auto q = kernels::quantize_linear(t.data, static_cast<int>(t.shape[0]), static_cast<int>(t.shape[1]));
    entries.push_back({t.name, "I8", t.shape, raw(q.q.data(), q.q.size())});
    entries.push_back({t.name + "_scale", "F32", {t.shape[0]}, raw(q.scale.data(), q.scale.size())});
    quantized_names.push_back(t.name);
    report.quantized++;
  }
  for (const auto& e : entries) report.int8_bytes += e.bytes.size();
  Json out_config = config;
  out_config[kConfigMarker] = {{"weights", "int8, symmetric, per output channel (scale = max|W[o,:]| / 127)"},
                               {"activations", "int8, symmetric, per row, computed at run time"},
                               {"quantized_weights", quantized_names},
                               {"source", model.string()}};

  // Staged beside the output and published whole (io::write_directory_atomic): "--output q/"
  // once staged inside q/ itself, deleted it with the staging and failed to rename.
  io::write_directory_atomic(output, [&](const fs::path& tmp) {
    io::write_file_atomic(tmp / "config.json", out_config.dump(2) + "\n");
    io::write_file_atomic(tmp / "model.safetensors",
                          serialize(entries, {{"format", "pt"}, {kConfigMarker, "int8-per-channel"}}));
    for (const fs::path& f : tokenizer_files) io::write_file_atomic(tmp / f.filename(), io::read_file(f));
  });
  return report;
}

Int8Model read_int8_safetensors(const fs::path& file) {
  const std::string bytes = io::read_file(file);
  auto fail = [&](const std::string& what) { return Error(file.string() + ": " + what); };
  if (bytes.size() < 8) throw fail("too short for a safetensors header");
  uint64_t header_len = 0;
  std::memcpy(&header_len, bytes.data(), 8);
  if (header_len > bytes.size() - 8) throw fail("header length " + std::to_string(header_len) + " past the end");
  Json header;
  try {
    header = Json::parse(bytes.substr(8, header_len));
  } catch (const Json::exception& e) {
    throw fail(std::string("bad header: ") + e.what());
  }
  const size_t data_start = 8 + header_len, data_size = bytes.size() - data_start;
  Int8Model m;
  std::map<std::string, std::pair<std::vector<int64_t>, std::vector<int8_t>>> int8;
  for (const auto& [name, e] : header.items()) {
    if (name == "__metadata__") continue;
    try {
      const std::string dtype = e.at("dtype");
      const auto shape = e.at("shape").get<std::vector<int64_t>>();
      const auto off = e.at("data_offsets").get<std::vector<size_t>>();
      size_t numel = 1;
      for (auto d : shape) {
        if (d < 0) throw fail(name + ": negative dimension");
        numel *= static_cast<size_t>(d);
      }
      const size_t width = dtype == "I8" ? 1 : dtype == "F32" ? 4 : 0;
      if (width == 0) throw fail(name + ": dtype " + dtype + " (an int8 model holds I8 and F32 only)");
      if (off.size() != 2 || off[0] > off[1] || off[1] > data_size || off[1] - off[0] != numel * width)
        throw fail(name + ": data_offsets do not match its shape");
      const char* p = bytes.data() + data_start + off[0];
      if (width == 1) {
        int8[name] = {shape, std::vector<int8_t>(p, p + numel)};
      } else {
        HostTensor t;
        t.shape = shape;
        t.data.resize(numel);
        std::memcpy(t.data.data(), p, numel * 4);
        m.fp32[name] = std::move(t);
      }
    } catch (const Json::exception& ex) {
      throw fail(name + ": bad header entry: " + ex.what());
    }
  }
  for (auto& [name, entry] : int8) {
    auto& [shape, q] = entry;
    auto scale_it = m.fp32.find(name + "_scale");
    if (shape.size() != 2 || scale_it == m.fp32.end() || scale_it->second.data.size() != static_cast<size_t>(shape[0]))
      throw fail(name + ": an I8 weight needs a 2-D shape and an F32 " + name + "_scale with one value per row");
    kernels::QuantizedLinear w;
    w.out = static_cast<int>(shape[0]);
    w.in = static_cast<int>(shape[1]);
    w.q = std::move(q);
    w.scale = scale_it->second.data;
    kernels::pack_quantized_linear(w);
    HostTensor deq;  // what an fp32 forward of this model computes with
    deq.shape = shape;
    deq.data.resize(w.q.size());
    for (int o = 0; o < w.out; ++o)
      for (int k = 0; k < w.in; ++k) deq.data[size_t(o) * w.in + k] = w.scale[o] * w.q[size_t(o) * w.in + k];
    m.fp32.erase(scale_it);
    m.fp32[name] = std::move(deq);
    m.int8[name] = std::move(w);
  }
  return m;
}

std::vector<kernels::QuantizedLinear> encoder_int8_linears(const Int8Model& m, int num_layers,
                                                           const LayerLinears& names) {
  auto get = [&](const std::string& name) -> const kernels::QuantizedLinear& {
    auto it = m.int8.find(name);
    if (it == m.int8.end()) throw Error("int8 model: " + name + " is not quantized");
    return it->second;
  };
  std::vector<kernels::QuantizedLinear> out;
  for (int l = 0; l < num_layers; ++l) {
    const std::string p = names.layer_prefix + std::to_string(l) + ".";
    kernels::QuantizedLinear qkv;
    for (const std::string* part : {&names.query, &names.key, &names.value}) {
      const auto& w = get(p + *part + ".weight");
      if (qkv.out == 0) qkv.in = w.in;
      if (w.in != qkv.in) throw Error("int8 model: " + p + *part + ".weight has a different width");
      qkv.out += w.out;
      qkv.q.insert(qkv.q.end(), w.q.begin(), w.q.end());
      qkv.scale.insert(qkv.scale.end(), w.scale.begin(), w.scale.end());
    }
    kernels::pack_quantized_linear(qkv);
    out.push_back(std::move(qkv));
    for (const std::string* module : {&names.attn_out, &names.ffn_in, &names.ffn_out})
      out.push_back(get(p + *module + ".weight"));
  }
  return out;
}

kernels::QuantizedLinear slice_rows(const kernels::QuantizedLinear& w, int begin, int end) {
  if (begin < 0 || end > w.out || begin >= end)
    throw Error("quant::slice_rows: rows [" + std::to_string(begin) + ", " + std::to_string(end) + ") of " +
                std::to_string(w.out));
  kernels::QuantizedLinear s;
  s.in = w.in;
  s.out = end - begin;
  s.q.assign(w.q.begin() + ptrdiff_t(begin) * w.in, w.q.begin() + ptrdiff_t(end) * w.in);
  s.scale.assign(w.scale.begin() + begin, w.scale.begin() + end);
  kernels::pack_quantized_linear(s);
  return s;
}

}  // namespace bertune::quant
