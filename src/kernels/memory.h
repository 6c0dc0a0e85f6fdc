#pragma once
// Memory that lives on a Device, and the few ops that move it.
//
// The model and the optimizer own every float they compute on through
// DeviceBuffer, so the same code runs with its tensors on the CPU or on a GPU:
//   CPU   64-byte-aligned host memory (a cache line, an AVX-512 vector)
//   CUDA  gpu::malloc_bytes (kernels/gpu/runtime.h), only in a build with CUDA
// Both start zeroed, as the std::vector<float> they replace did.
//
// Host code reads device memory only through copy_to_host / host_view, at the
// edges (logging, metrics, save); on the CPU those are free (no copy).
#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "kernels/ops.h"

namespace bertune::kernels {

// "cpu" | "cuda" (what --device takes) and back; Error "'x' is not one of cpu|cuda".
Device parse_device(const std::string& name);
const char* device_flag_name(Device d);

// Throws Error (a user error: exit 1) unless this build can compute on `d` on
// this machine, with a message naming what is missing: a build without CUDA,
// or a CUDA build on a machine without a usable GPU (gpu::available()'s reason).
void require_device(Device d);

// Untyped, owned, zero-filled device memory. Move-only.
class Storage {
 public:
  Storage() = default;
  Storage(Device d, size_t bytes);
  ~Storage() { release(); }
  Storage(Storage&& o) noexcept;
  Storage& operator=(Storage&& o) noexcept;
  Storage(const Storage&) = delete;
  Storage& operator=(const Storage&) = delete;

  void* data() const { return data_; }
  size_t bytes() const { return bytes_; }
  Device device() const { return device_; }

 private:
  void release() noexcept;
  Device device_ = Device::CPU;
  void* data_ = nullptr;
  size_t bytes_ = 0;
};

// n zeroed values of T on one device.
template <typename T>
class DeviceBuffer {
 public:
  DeviceBuffer() = default;
  DeviceBuffer(Device d, size_t n) : storage_(d, checked_bytes(n)), size_(n) {}
  DeviceBuffer(DeviceBuffer&& o) noexcept : storage_(std::move(o.storage_)), size_(std::exchange(o.size_, 0)) {}
  DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
    storage_ = std::move(o.storage_);
    size_ = std::exchange(o.size_, 0);
    return *this;
  }

  T* data() { return static_cast<T*>(storage_.data()); }
  const T* data() const { return static_cast<const T*>(storage_.data()); }
  size_t size() const { return size_; }
  bool empty() const { return size_ == 0; }
  Device device() const { return storage_.device(); }

 private:
  static size_t checked_bytes(size_t n);
  Storage storage_;
  size_t size_ = 0;
};

// ---- moving bytes (every pointer of device `d`, unless named host) --------
void copy_to_device(Device d, void* dst, const void* host, size_t bytes);
void copy_to_host(Device d, void* host, const void* src, size_t bytes);
void copy_on_device(Device d, void* dst, const void* src, size_t bytes);  // no overlap
void fill_zero(Device d, void* dst, size_t bytes);

// dst[r] = src[rows[r]] for r < n_rows, rows of `width` floats (rows on device d).
void gather_rows(Device d, float* dst, const float* src, const int32_t* rows, int n_rows, int width);
// dst[rows[r]] += src[r] (rows must not repeat).
void scatter_add_rows(Device d, float* dst, const float* src, const int32_t* rows, int n_rows,
                      int width);

// n values at `src` (device d) readable on the host: on the CPU `src` itself
// (no copy), elsewhere a copy into `scratch`, valid until scratch changes.
template <typename T>
const T* host_view(Device d, const T* src, size_t n, std::vector<T>& scratch) {
  if (d == Device::CPU) return src;
  scratch.resize(n);
  copy_to_host(d, scratch.data(), src, n * sizeof(T));
  return scratch.data();
}

// ---- DeviceBuffer ----------------------------------------------------------
size_t device_buffer_bytes(size_t n, size_t size_of);  // n * size_of; Error when it overflows

template <typename T>
size_t DeviceBuffer<T>::checked_bytes(size_t n) {
  return device_buffer_bytes(n, sizeof(T));
}

}  // namespace bertune::kernels
