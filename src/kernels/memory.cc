#include "kernels/memory.h"

#include <sys/mman.h>

#include <cstdint>
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

// Under AddressSanitizer every buffer stays on the heap, where the sanitizer's redzones catch a
// write past its end (a mapping's rounding slack would hide one).
#if defined(__SANITIZE_ADDRESS__)
constexpr bool kHeapOnly = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kHeapOnly = true;
#else
constexpr bool kHeapOnly = false;
#endif
#else
constexpr bool kHeapOnly = false;
#endif

size_t host_rounded(size_t bytes) { return bytes >= kHugeMin ? (bytes + kHugePage - 1) / kHugePage * kHugePage : bytes; }

// A host allocation whose bytes read zero. Large ones are fresh anonymous mappings, zero by the
// kernel's guarantee and never written here: a page is faulted in (and zeroed) only when it is
// first used, so a buffer that is never touched (an inference model's gradients) costs nothing,
// and growing a buffer does not zero it twice. Small ones come from the heap and are cleared
// (under AddressSanitizer, all of them).
void* host_alloc(size_t bytes) {
  if (kHeapOnly || bytes < kHugeMin) {
    const size_t align = bytes >= kHugeMin ? kHugePage : kHostAlignment;
    const size_t rounded = (bytes + align - 1) / align * align;  // aligned_alloc wants a multiple
    void* p = std::aligned_alloc(align, rounded);
    if (!p) throw std::bad_alloc();
#ifdef MADV_HUGEPAGE
    if (align == kHugePage) madvise(p, rounded, MADV_HUGEPAGE);
#endif
    std::memset(p, 0, bytes);
    return p;
  }
  const size_t rounded = host_rounded(bytes), span = rounded + kHugePage;
  void* raw = mmap(nullptr, span, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED) throw std::bad_alloc();
  const uintptr_t lo = reinterpret_cast<uintptr_t>(raw);
  const uintptr_t at = (lo + kHugePage - 1) / kHugePage * kHugePage;  // the 2 MiB boundary
  if (at > lo) munmap(raw, at - lo);
  if (const size_t tail = lo + span - (at + rounded)) munmap(reinterpret_cast<void*>(at + rounded), tail);
  void* p = reinterpret_cast<void*>(at);
#ifdef MADV_HUGEPAGE
  madvise(p, rounded, MADV_HUGEPAGE);
#endif
  return p;
}

void host_free(void* p, size_t bytes) noexcept {
  if (kHeapOnly || bytes < kHugeMin)
    std::free(p);
  else
    munmap(p, host_rounded(bytes));
}

[[noreturn, maybe_unused]] void no_cuda_build() {
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
    data_ = host_alloc(bytes);  // reads zero
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
    host_free(data_, bytes_);
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
