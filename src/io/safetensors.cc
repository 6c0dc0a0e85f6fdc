#include "io/safetensors.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <bit>
#include <cerrno>
#include <cstring>
#include <set>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/half.h"
#include "io/json_error.h"
#include "util/error.h"

namespace bertune::io {
namespace fs = std::filesystem;
using nlohmann::json;

static_assert(std::endian::native == std::endian::little,
              "safetensors data is little-endian; this reader copies it as is");

namespace {

// The reference reader refuses headers above 100 MB; a real BERT header is ~20 KB.
constexpr uint64_t kMaxHeaderBytes = 100'000'000;

// Read-only view of a whole file. mmap keeps a 400 MB checkpoint from being
// held twice (file bytes + converted floats) during a load.
class MappedFile {
 public:
  explicit MappedFile(const fs::path& path) : path_(path) {
    fd_ = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd_ < 0) throw Error("cannot open " + path.string() + ": " + std::strerror(errno));
    struct stat st {};
    if (::fstat(fd_, &st) != 0 || !S_ISREG(st.st_mode)) {
      ::close(fd_);
      throw Error(path.string() + ": not a regular file");
    }
    size_ = static_cast<uint64_t>(st.st_size);
    if (size_ > 0) {
      void* p = ::mmap(nullptr, size_, PROT_READ, MAP_PRIVATE, fd_, 0);
      if (p == MAP_FAILED) {
        ::close(fd_);
        throw Error("cannot map " + path.string() + ": " + std::strerror(errno));
      }
      data_ = static_cast<const uint8_t*>(p);
    }
  }
  ~MappedFile() {
    if (data_) ::munmap(const_cast<uint8_t*>(data_), size_);
    if (fd_ >= 0) ::close(fd_);
  }
  MappedFile(const MappedFile&) = delete;
  MappedFile& operator=(const MappedFile&) = delete;
  const uint8_t* data() const { return data_; }
  uint64_t size() const { return size_; }

 private:
  fs::path path_;
  int fd_ = -1;
  const uint8_t* data_ = nullptr;
  uint64_t size_ = 0;
};

struct DTypeInfo {
  const char* name;
  int itemsize;
  bool floating;  // converted to float; the rest are validated and skipped
};

// Every dtype the reference format defines, so a valid file with e.g. a BOOL
// mask buffer is accepted (and the buffer skipped) rather than refused.
constexpr DTypeInfo kDTypes[] = {
    {"F64", 8, true},      {"F32", 4, true},      {"F16", 2, true},  {"BF16", 2, true},
    {"I64", 8, false},     {"I32", 4, false},     {"I16", 2, false}, {"I8", 1, false},
    {"U64", 8, false},     {"U32", 4, false},     {"U16", 2, false}, {"U8", 1, false},
    {"BOOL", 1, false},    {"F8_E4M3", 1, false}, {"F8_E5M2", 1, false},
};

const DTypeInfo* find_dtype(const std::string& name) {
  for (const auto& d : kDTypes)
    if (name == d.name) return &d;
  return nullptr;
}

struct Entry {
  std::string name;
  const DTypeInfo* dtype;
  std::vector<int64_t> shape;
  uint64_t begin, end;
};

// "[2,4]", as the header JSON writes it.
std::string header_shape_text(const std::vector<int64_t>& shape) {
  std::string s = "[";
  for (size_t i = 0; i < shape.size(); ++i) s += (i ? "," : "") + std::to_string(shape[i]);
  return s + "]";
}

// Reads a non-negative integer that fits in uint64 from a JSON number.
bool as_u64(const json& v, uint64_t& out) {
  if (v.is_number_unsigned()) {
    out = v.get<uint64_t>();
    return true;
  }
  if (v.is_number_integer() && v.get<int64_t>() >= 0) {
    out = static_cast<uint64_t>(v.get<int64_t>());
    return true;
  }
  return false;
}

Entry parse_entry(const std::string& where, const std::string& name, const json& v,
                  uint64_t data_size) {
  const std::string at = where + ": tensor '" + name + "'";
  if (!v.is_object()) throw Error(at + ": header entry is not an object");
  auto dt = v.find("dtype");
  auto sh = v.find("shape");
  auto off = v.find("data_offsets");
  if (dt == v.end() || !dt->is_string()) throw Error(at + ": missing or non-string 'dtype'");
  if (sh == v.end() || !sh->is_array()) throw Error(at + ": missing or non-array 'shape'");
  if (off == v.end() || !off->is_array() || off->size() != 2)
    throw Error(at + ": 'data_offsets' must be an array [begin, end]");

  Entry e{name, find_dtype(dt->get<std::string>()), {}, 0, 0};
  if (!e.dtype) throw Error(at + ": unknown dtype '" + dt->get<std::string>() + "'");

  uint64_t numel = 1;
  for (const auto& d : *sh) {
    uint64_t n;
    if (!as_u64(d, n) || n > static_cast<uint64_t>(INT64_MAX))
      throw Error(at + ": shape " + sh->dump() + " has a negative or non-integer dimension");
    if (__builtin_mul_overflow(numel, n, &numel))
      throw Error(at + ": shape " + sh->dump() + " overflows");
    e.shape.push_back(static_cast<int64_t>(n));
  }
  uint64_t nbytes;
  if (__builtin_mul_overflow(numel, static_cast<uint64_t>(e.dtype->itemsize), &nbytes))
    throw Error(at + ": shape " + sh->dump() + " overflows");

  if (!as_u64((*off)[0], e.begin) || !as_u64((*off)[1], e.end) || e.begin > e.end)
    throw Error(at + ": data_offsets " + off->dump() + " are not 0 <= begin <= end");
  if (e.end > data_size)
    throw Error(at + ": data_offsets " + off->dump() + " run past the data area (" +
                std::to_string(data_size) + " bytes)");
  if (e.end - e.begin != nbytes)
    throw Error(at + ": " + e.dtype->name + " " + header_shape_text(e.shape) + " needs " +
                std::to_string(nbytes) + " bytes but data_offsets " + off->dump() + " span " +
                std::to_string(e.end - e.begin));
  return e;
}

void convert_to_float(const Entry& e, const uint8_t* src, float* dst) {
  size_t n = (e.end - e.begin) / e.dtype->itemsize;
  if (n == 0) return;  // empty tensors have no buffer to copy into
  std::string_view name = e.dtype->name;
  // memcpy per element: the data area is not guaranteed to be aligned.
  if (name == "F32") {
    std::memcpy(dst, src, n * 4);
  } else if (name == "F16") {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = half_to_float(h);
    }
  } else if (name == "BF16") {
    for (size_t i = 0; i < n; ++i) {
      uint16_t h;
      std::memcpy(&h, src + 2 * i, 2);
      dst[i] = bf16_to_float(h);
    }
  } else {  // F64
    for (size_t i = 0; i < n; ++i) {
      double d;
      std::memcpy(&d, src + 8 * i, 8);
      dst[i] = static_cast<float>(d);
    }
  }
}

}  // namespace

namespace {

// The validated header of a mapped safetensors file: every entry (by name), and where
// the data area starts.
std::vector<Entry> read_header(const MappedFile& file, const std::string& where,
                               std::map<std::string, std::string>* metadata, const uint8_t** data_area_out) {
  if (file.size() < 8)
    throw Error(where + ": " + std::to_string(file.size()) +
                " bytes is too short for a safetensors file (8-byte header length missing)");
  uint64_t header_len;
  std::memcpy(&header_len, file.data(), 8);
  if (header_len > file.size() - 8)
    throw Error(where + ": header length " + std::to_string(header_len) +
                " runs past the end of the file (" + std::to_string(file.size()) +
                " bytes) — truncated or not a safetensors file");
  if (header_len > kMaxHeaderBytes)
    throw Error(where + ": header length " + std::to_string(header_len) +
                " exceeds the 100 MB limit");
  const uint8_t* data_area = file.data() + 8 + header_len;
  const uint64_t data_size = file.size() - 8 - header_len;

  // The JSON library keeps the last of duplicate keys silently; two entries
  // with one name are a broken file, so catch them while parsing.
  std::string duplicate;
  std::set<std::string> seen;
  json::parser_callback_t on_key = [&](int depth, json::parse_event_t event, json& parsed) {
    if (depth == 1 && event == json::parse_event_t::key && duplicate.empty()) {
      auto key = parsed.get<std::string>();
      if (!seen.insert(key).second) duplicate = key;
    }
    return true;
  };
  json header;
  try {
    const char* text = reinterpret_cast<const char*>(file.data() + 8);
    header = json::parse(text, text + header_len, on_key);
  } catch (const json::exception& e) {
    throw Error(where + ": header is not valid JSON (" + json_error_position(e) + ")");
  }
  if (!duplicate.empty()) throw Error(where + ": tensor '" + duplicate + "' appears twice");
  if (!header.is_object()) throw Error(where + ": header is not a JSON object");

  std::vector<Entry> entries;
  for (auto& [name, value] : header.items()) {
    if (name == "__metadata__") {
      if (!value.is_object()) throw Error(where + ": __metadata__ is not an object");
      for (auto& [k, v] : value.items()) {
        if (!v.is_string())
          throw Error(where + ": __metadata__ entry '" + k + "' is not a string");
        if (metadata) (*metadata)[k] = v.get<std::string>();
      }
      continue;
    }
    entries.push_back(parse_entry(where, name, value, data_size));
  }

  // Two tensors sharing bytes would alias silently; refuse. Zero-sized
  // tensors occupy no bytes and cannot overlap anything.
  std::vector<const Entry*> by_offset;
  for (const auto& e : entries)
    if (e.end > e.begin) by_offset.push_back(&e);
  std::sort(by_offset.begin(), by_offset.end(),
            [](const Entry* a, const Entry* b) { return a->begin < b->begin; });
  for (size_t i = 1; i < by_offset.size(); ++i)
    if (by_offset[i]->begin < by_offset[i - 1]->end)
      throw Error(where + ": tensors '" + by_offset[i - 1]->name + "' and '" +
                  by_offset[i]->name + "' overlap (bytes " +
                  std::to_string(by_offset[i]->begin) + ".." +
                  std::to_string(by_offset[i - 1]->end) + ")");

  *data_area_out = data_area;
  return entries;
}

}  // namespace

TensorMap read_safetensors(const fs::path& path, std::map<std::string, std::string>* metadata) {
  const std::string where = path.string();
  MappedFile file(path);
  const uint8_t* data_area = nullptr;
  const std::vector<Entry> entries = read_header(file, where, metadata, &data_area);
  TensorMap out;
  for (const auto& e : entries) {
    if (!e.dtype->floating) continue;  // integer buffers such as position_ids
    HostTensor t;
    t.shape = e.shape;
    t.data.resize((e.end - e.begin) / e.dtype->itemsize);
    convert_to_float(e, data_area + e.begin, t.data.data());
    out.emplace(e.name, std::move(t));
  }
  return out;
}

std::vector<TensorInfo> list_safetensors(const fs::path& path) {
  MappedFile file(path);
  const uint8_t* data_area = nullptr;
  std::vector<TensorInfo> out;
  for (const Entry& e : read_header(file, path.string(), nullptr, &data_area))
    out.push_back({e.name, e.dtype->name, e.shape});
  return out;
}

// float16 tops out at 65504: a larger weight would become inf silently.
void require_fits_float16(const std::string& where, const TensorRef& t, uint64_t n) {
  for (uint64_t i = 0; i < n; ++i)
    if (!(std::fabs(t.data[i]) <= 65504.f))
      throw Error(where + ": tensor '" + t.name + "' holds " + std::to_string(t.data[i]) + " at element " +
                  std::to_string(i) + ", outside float16's range (|x| <= 65504); save as bfloat16 or float32");
}

const char* torch_dtype_name(DType dtype) {
  return dtype == DType::F32 ? "float32" : dtype == DType::F16 ? "float16" : "bfloat16";
}

DType parse_torch_dtype(const std::string& name) {
  for (DType d : {DType::F32, DType::F16, DType::BF16})
    if (name == torch_dtype_name(d)) return d;
  throw Error("dtype '" + name + "' is not one of float32|float16|bfloat16");
}

void write_safetensors(const fs::path& path, const std::vector<TensorRef>& tensors,
                       const std::map<std::string, std::string>& metadata, DType dtype,
                       const std::vector<Int64Ref>& buffers) {
  const std::string where = path.string();
  const char* dtype_name = dtype == DType::F32 ? "F32" : dtype == DType::F16 ? "F16" : "BF16";
  const uint64_t itemsize = dtype == DType::F32 ? 4 : 2;

  // Same layout as the reference serializer: the I64 buffers, then the one float dtype, each
  // sorted by name; offsets follow that order; __metadata__ comes first.
  std::vector<const TensorRef*> order;
  for (const auto& t : tensors) order.push_back(&t);
  std::sort(order.begin(), order.end(),
            [](const TensorRef* a, const TensorRef* b) { return a->name < b->name; });
  std::vector<const Int64Ref*> int_order;
  for (const auto& b : buffers) int_order.push_back(&b);
  std::sort(int_order.begin(), int_order.end(), [](const Int64Ref* a, const Int64Ref* b) { return a->name < b->name; });

  std::string header = "{";
  if (!metadata.empty()) header += "\"__metadata__\":" + json(metadata).dump() + ",";
  uint64_t offset = 0;
  std::set<std::string> names;
  // Checks the entry and appends it to the header; returns its element count.
  auto entry = [&](const std::string& name, const std::vector<int64_t>& shape, const void* data, const char* type,
                   uint64_t size) {
    if (name.empty() || name == "__metadata__") throw Error(where + ": invalid tensor name '" + name + "'");
    if (!names.insert(name).second) throw Error(where + ": tensor '" + name + "' given twice");
    uint64_t n = 1;
    for (auto d : shape) {
      if (d < 0) throw Error(where + ": tensor '" + name + "' has a negative dimension");
      n *= static_cast<uint64_t>(d);
    }
    if (n > 0 && !data) throw Error(where + ": tensor '" + name + "' has no data");
    header += json(name).dump() + ":{\"dtype\":\"" + type + "\",\"shape\":" + json(shape).dump() +
              ",\"data_offsets\":[" + std::to_string(offset) + "," + std::to_string(offset + n * size) + "]},";
    offset += n * size;
    return n;
  };
  std::vector<uint64_t> int_counts, counts;
  for (const Int64Ref* b : int_order) int_counts.push_back(entry(b->name, b->shape, b->data, "I64", 8));
  for (const TensorRef* t : order) {
    const uint64_t n = entry(t->name, t->shape, t->data, dtype_name, itemsize);
    if (dtype == DType::F16) require_fits_float16(where, *t, n);  // before anything is written
    counts.push_back(n);
  }
  if (header.back() == ',') header.pop_back();  // the last entry's, or the metadata's
  header += "}";
  header.resize((header.size() + 7) / 8 * 8, ' ');  // data area starts 8-byte aligned

  AtomicFile file(path);
  uint64_t header_len = header.size();
  file.write(&header_len, 8);
  file.write(header);
  for (size_t i = 0; i < int_order.size(); ++i) file.write(int_order[i]->data, int_counts[i] * 8);
  std::vector<uint16_t> chunk;
  for (size_t i = 0; i < order.size(); ++i) {
    const float* src = order[i]->data;
    uint64_t n = counts[i];
    if (dtype == DType::F32) {
      file.write(src, n * 4);
      continue;
    }
    constexpr uint64_t kChunk = 1 << 16;
    for (uint64_t b = 0; b < n; b += kChunk) {
      uint64_t m = std::min(kChunk, n - b);
      chunk.resize(m);
      for (uint64_t k = 0; k < m; ++k)
        chunk[k] = dtype == DType::F16 ? float_to_half(src[b + k]) : float_to_bf16(src[b + k]);
      file.write(chunk.data(), m * 2);
    }
  }
  file.commit();
}

}  // namespace bertune::io
