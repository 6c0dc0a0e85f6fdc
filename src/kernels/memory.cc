#include "kernels/memory.h"

#include <sys/mman.h>

#include <cstdlib>
#include <cstring>
#include <limits>
#include <new>

#include "util/enum_names.h"
#include "util/error.h"
#ifdef BERTUNE_CUDA
#include "kernels/gpu/runtime.h"
#endif

namespace bertune::kernels {
namespace {

constexpr size_t kHostAlignment = 64;
// Host buffers of kHugeMin bytes and up (parameters, gradients, AdamW moments, the activation
// arena: hundreds of MB, streamed every step) start on a 2 MiB boundary and are advised to the
// kernel's transparent huge pages (THP "madvise" mode, the common default): one page fault
// and one TLB entry per 2 MiB instead of per 4 KiB. Advice only: without THP nothing changes.
constexpr size_t kHugePage = size_t(2) << 20;
constexpr size_t kHugeMin = size_t(8) << 20;

void* host_alloc(size_t bytes) {
  const size_t align = bytes >= kHugeMin ? kHugePage : kHostAlignment;
  const size_t rounded = (bytes + align - 1) / align * align;  // aligned_alloc wants a multiple
  void* p = std::aligned_alloc(align, rounded);
  if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
  if (align == kHugePage) madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

[[noreturn]] void no_cuda_build() {
  throw Error(
      "--device cuda: this bertune was built without CUDA (nvcc was not found when it was built); "
      "rebuild on a machine with the CUDA toolkit, or use --device cpu");
}

}  // namespace

namespace {
constexpr EnumNames<Device, 2> kDeviceNames{{{{Device::CPU, "cpu"}, {Device::CUDA, "cuda"}}}};
}  // namespace

Device parse_device(const std::string& name) { return kDeviceNames.parse(name); }
const char* device_flag_name(Device d) { return kDeviceNames.name(d); }

void require_device(Device d) {
  if (d == Device::CPU) return;
#ifdef BERTUNE_CUDA
  std::string why;
  if (!gpu::available(&why)) throw Error("--device cuda: no usable GPU: " + why + "; use --device cpu");
#else
  no_cuda_build();
#endif
}

// ---------------------------------------------------------------- Storage

Storage::Storage(Device d, size_t bytes) : device_(d) {
  if (bytes == 0) return;
  if (d == Device::CPU) {
    data_ = host_alloc(bytes);
    std::memset(data_, 0, bytes);
  } else {
#ifdef BERTUNE_CUDA
    data_ = gpu::malloc_bytes(bytes);
    try {
      gpu::fill_zero(data_, bytes);
    } catch (...) {
      gpu::free_bytes(data_);
      throw;
    }
#else
    no_cuda_build();
#endif
  }
  bytes_ = bytes;
}

Storage::Storage(Storage&& o) noexcept : device_(o.device_), data_(o.data_), bytes_(o.bytes_) {
  o.data_ = nullptr;
  o.bytes_ = 0;
}

Storage& Storage::operator=(Storage&& o) noexcept {
  if (this != &o) {
    release();
    device_ = o.device_;
    data_ = o.data_;
    bytes_ = o.bytes_;
    o.data_ = nullptr;
    o.bytes_ = 0;
  }
  return *this;
}

void Storage::release() noexcept {
  if (!data_) return;
  if (device_ == Device::CPU) {
    std::free(data_);
  } else {
#ifdef BERTUNE_CUDA
    gpu::free_bytes(data_);
#endif
  }
  data_ = nullptr;
  bytes_ = 0;
}

size_t device_buffer_bytes(size_t n, size_t size_of) {
  if (size_of != 0 && n > std::numeric_limits<size_t>::max() / size_of)
    throw Error("device buffer of " + std::to_string(n) + " values of " + std::to_string(size_of) +
                " bytes: the size overflows");
  return n * size_of;
}

// ---------------------------------------------------------------- device ops
// The CPU bodies are plain memcpy / memset; a CUDA body is the runtime's.

#ifdef BERTUNE_CUDA
#define CUDA_OR_FAIL(call) return call
#else
#define CUDA_OR_FAIL(call) no_cuda_build()
#endif

void copy_to_device(Device d, void* dst, const void* host, size_t bytes) {
  if (bytes == 0) return;
  if (d == Device::CPU) {
    std::memcpy(dst, host, bytes);
    return;
  }
  CUDA_OR_FAIL(gpu::copy_to_device(dst, host, bytes));
}

void copy_to_host(Device d, void* host, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (d == Device::CPU) {
    std::memcpy(host, src, bytes);
    return;
  }
  CUDA_OR_FAIL(gpu::copy_to_host(host, src, bytes));
}

void copy_on_device(Device d, void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  if (d == Device::CPU) {
    std::memcpy(dst, src, bytes);
    return;
  }
  CUDA_OR_FAIL(gpu::copy_on_device(dst, src, bytes));
}

void fill_zero(Device d, void* dst, size_t bytes) {
  if (bytes == 0) return;
  if (d == Device::CPU) {
    std::memset(dst, 0, bytes);
    return;
  }
  CUDA_OR_FAIL(gpu::fill_zero(dst, bytes));
}

void gather_rows(Device d, float* dst, const float* src, const int32_t* rows, int n_rows, int width) {
  if (n_rows < 0 || width < 0) throw Error("kernels::gather_rows: negative size");
  if (d == Device::CPU) {
    for (int r = 0; r < n_rows; ++r)
      std::memcpy(dst + size_t(r) * width, src + size_t(rows[r]) * width, size_t(width) * sizeof(float));
    return;
  }
  CUDA_OR_FAIL(gpu::gather_rows(dst, src, rows, n_rows, width));
}

void scatter_add_rows(Device d, float* dst, const float* src, const int32_t* rows, int n_rows,
                      int width) {
  if (n_rows < 0 || width < 0) throw Error("kernels::scatter_add_rows: negative size");
  if (d == Device::CPU) {
    for (int r = 0; r < n_rows; ++r) {
      float* out = dst + size_t(rows[r]) * width;
      const float* in = src + size_t(r) * width;
      for (int i = 0; i < width; ++i) out[i] += in[i];
    }
    return;
  }
  CUDA_OR_FAIL(gpu::scatter_add_rows(dst, src, rows, n_rows, width));
}

#undef CUDA_OR_FAIL

}  // namespace bertune::kernels
