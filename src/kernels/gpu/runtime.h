#pragma once
// The CUDA runtime seam: the only functions host code outside kernels/gpu/ may
// call to reach a GPU. Implemented in kernels/gpu/runtime_gpu.cu, which is
// compiled only when CMake found nvcc (BERTUNE_CUDA defined); a build without
// CUDA has no definitions, so every caller guards its use with
// `#ifdef BERTUNE_CUDA` and otherwise reports "built without CUDA" itself.
//
// All pointers named `device` are device memory allocated by malloc_bytes();
// all calls are on one stream (the default per-thread stream of bertune's
// training thread), so they are ordered without explicit synchronisation.
// Errors (no driver, out of memory, a failed launch) throw bertune::Error
// naming the CUDA call and cudaGetErrorString().
#include <cstddef>
#include <cstdint>
#include <string>

namespace bertune::kernels::gpu {

// True when a CUDA device is usable (driver present, >= 1 device, the
// device's compute capability is one this build has code for). Otherwise
// false with `why` saying what is missing (no driver / no device / ...).
bool available(std::string* why);
// e.g. "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)"
std::string device_description();

void* malloc_bytes(size_t bytes);          // never null; throws Error when out of memory
void free_bytes(void* device) noexcept;    // null is fine
void copy_to_device(void* device, const void* host, size_t bytes);
void copy_to_host(void* host, const void* device, size_t bytes);  // waits for the stream
void copy_on_device(void* dst, const void* src, size_t bytes);
void fill_zero(void* device, size_t bytes);
void synchronize();  // waits for all work on the stream; throws on an asynchronous error

// Row gather / scatter for the model's edges (e.g. [CLS] rows into the pooler):
// dst[r] = src[rows[r]]  for r < n_rows, rows of `width` floats (rows: device int32[n_rows])
void gather_rows(float* dst, const float* src, const int32_t* rows, int n_rows, int width);
// dst[rows[r]] += src[r]
void scatter_add_rows(float* dst, const float* src, const int32_t* rows, int n_rows, int width);

}  // namespace bertune::kernels::gpu
