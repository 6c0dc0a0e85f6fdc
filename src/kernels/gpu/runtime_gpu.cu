// kernels/gpu/runtime.h on the CUDA runtime: device discovery, memory, copies
// and the row gather/scatter the model uses at its edges.
#include <cuda_runtime.h>

#include <cstdio>
#include <string>

#include "kernels/gpu/cuda_check.cuh"
#include "kernels/gpu/runtime.h"

namespace bertune::kernels::gpu {
namespace {

// The SASS in this build is sm_90a; the compute_90 PTX lets the driver compile
// for any device of compute capability >= 9.0. Older devices have no code here.
constexpr int kMinMajor = 9;

__global__ void gather_rows_kernel(float* dst, const float* src, const int32_t* rows, int n_rows,
                                   int width) {
  size_t total = size_t(n_rows) * width;
  for (size_t e = blockIdx.x * size_t(blockDim.x) + threadIdx.x; e < total;
       e += size_t(gridDim.x) * blockDim.x) {
    size_t r = e / width, c = e % width;
    dst[e] = src[size_t(rows[r]) * width + c];
  }
}

// Rows may repeat, so the adds are atomic.
__global__ void scatter_add_rows_kernel(float* dst, const float* src, const int32_t* rows,
                                        int n_rows, int width) {
  size_t total = size_t(n_rows) * width;
  for (size_t e = blockIdx.x * size_t(blockDim.x) + threadIdx.x; e < total;
       e += size_t(gridDim.x) * blockDim.x) {
    size_t r = e / width, c = e % width;
    atomicAdd(dst + size_t(rows[r]) * width + c, src[e]);
  }
}

}  // namespace

bool available(std::string* why) {
  auto say = [&](const std::string& reason) {
    if (why) *why = reason;
    return false;
  };
  int driver = 0;
  cudaError_t e = cudaDriverGetVersion(&driver);
  if (e != cudaSuccess || driver == 0)
    return say("no CUDA driver (libcuda.so not found or not loadable)");
  int runtime = 0;
  cudaRuntimeGetVersion(&runtime);
  if (driver < runtime)
    return say("the CUDA driver supports CUDA " + std::to_string(driver / 1000) + "." +
               std::to_string(driver % 1000 / 10) + ", this build needs " +
               std::to_string(runtime / 1000) + "." + std::to_string(runtime % 1000 / 10));
  int count = 0;
  e = cudaGetDeviceCount(&count);
  if (e != cudaSuccess) return say(std::string("cudaGetDeviceCount: ") + cudaGetErrorString(e));
  if (count == 0) return say("no CUDA device");
  int device = 0;  // the one selected (a rank's, under mpirun), 0 when none was
  e = cudaGetDevice(&device);
  if (e != cudaSuccess) return say(std::string("cudaGetDevice: ") + cudaGetErrorString(e));
  cudaDeviceProp prop{};
  e = cudaGetDeviceProperties(&prop, device);
  if (e != cudaSuccess) return say(std::string("cudaGetDeviceProperties: ") + cudaGetErrorString(e));
  if (prop.major < kMinMajor)
    return say(std::string(prop.name) + " has compute capability " + std::to_string(prop.major) +
               "." + std::to_string(prop.minor) + "; this build has code for 9.0 and later only");
  if (why) why->clear();
  return true;
}

std::string device_description() {  // the selected device (a rank's, under mpirun)
  int device = 0;
  BERTUNE_CUDA_CHECK(cudaGetDevice(&device));
  cudaDeviceProp prop{};
  BERTUNE_CUDA_CHECK(cudaGetDeviceProperties(&prop, device));
  char gib[32];
  std::snprintf(gib, sizeof gib, "%.1f", double(prop.totalGlobalMem) / (1ull << 30));
  return std::string(prop.name) + " (sm_" + std::to_string(prop.major) + std::to_string(prop.minor) +
         ", " + gib + " GiB)";
}

void* malloc_bytes(size_t bytes) {
  void* p = nullptr;
  // A zero-byte request still gets a distinct non-null pointer (never null, as promised).
  cudaError_t e = cudaMallocAsync(&p, bytes == 0 ? 1 : bytes, stream());
  if (e != cudaSuccess) {
    cudaGetLastError();  // clear the sticky-free error state before throwing
    throw Error("CUDA: cudaMallocAsync of " + std::to_string(bytes) + " bytes failed: " +
                cudaGetErrorString(e));
  }
  return p;
}

void free_bytes(void* device) noexcept {
  if (device) cudaFreeAsync(device, stream());  // errors here surface at the next check
}

void copy_to_device(void* device, const void* host, size_t bytes) {
  if (bytes == 0) return;
  BERTUNE_CUDA_CHECK(cudaMemcpyAsync(device, host, bytes, cudaMemcpyHostToDevice, stream()));
}

void copy_to_host(void* host, const void* device, size_t bytes) {
  if (bytes == 0) return;
  BERTUNE_CUDA_CHECK(cudaMemcpyAsync(host, device, bytes, cudaMemcpyDeviceToHost, stream()));
  BERTUNE_CUDA_CHECK(cudaStreamSynchronize(stream()));
}

void copy_on_device(void* dst, const void* src, size_t bytes) {
  if (bytes == 0) return;
  BERTUNE_CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, stream()));
}

void fill_zero(void* device, size_t bytes) {
  if (bytes == 0) return;
  BERTUNE_CUDA_CHECK(cudaMemsetAsync(device, 0, bytes, stream()));
}

void synchronize() { BERTUNE_CUDA_CHECK(cudaStreamSynchronize(stream())); }

void gather_rows(float* dst, const float* src, const int32_t* rows, int n_rows, int width) {
  if (n_rows <= 0 || width <= 0) return;
  size_t n = size_t(n_rows) * width;
  gather_rows_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dst, src, rows, n_rows, width);
  check_launch("gather_rows_kernel");
}

void scatter_add_rows(float* dst, const float* src, const int32_t* rows, int n_rows, int width) {
  if (n_rows <= 0 || width <= 0) return;
  size_t n = size_t(n_rows) * width;
  scatter_add_rows_kernel<<<grid_for(n), kThreads, 0, stream()>>>(dst, src, rows, n_rows, width);
  check_launch("scatter_add_rows_kernel");
}

}  // namespace bertune::kernels::gpu
