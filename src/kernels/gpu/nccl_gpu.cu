// kernels/collectives.h on NCCL. Compiled in a build whose configure found nccl.h
// (BERTUNE_NCCL); otherwise this file is empty and kernels/collectives.cc says "no NCCL".
//
// libnccl is not linked: the functions used here are looked up in libnccl.so.2, opened with
// dlopen at the first call (by its soname: LD_LIBRARY_PATH, the run path, the loader's cache;
// then from the directory the configure found it in), as cuBLASLt is (cublaslt_loader.cu).
// A missing library is an Error naming it and dlerror()'s reason.
#ifdef BERTUNE_NCCL
#include <dlfcn.h>
#include <nccl.h>

#include <cstring>
#include <mutex>
#include <string>
#include <vector>

#include "kernels/collectives.h"
#include "kernels/gpu/cuda_check.cuh"

#define BERTUNE_STR2(x) #x
#define BERTUNE_STR(x) BERTUNE_STR2(x)

namespace bertune::kernels {

namespace {

constexpr const char* kSoname = "libnccl.so." BERTUNE_STR(NCCL_MAJOR);

// The functions of nccl.h used here, resolved from the library once.
struct Nccl {
  decltype(&ncclGetUniqueId) get_unique_id = nullptr;
  decltype(&ncclCommInitRank) comm_init_rank = nullptr;
  decltype(&ncclAllReduce) all_reduce = nullptr;
  decltype(&ncclCommDestroy) comm_destroy = nullptr;
  decltype(&ncclCommAbort) comm_abort = nullptr;
  decltype(&ncclCommGetAsyncError) comm_get_async_error = nullptr;
  decltype(&ncclGetErrorString) get_error_string = nullptr;
  decltype(&ncclGetLastError) get_last_error = nullptr;
  std::string failure;  // why the library could not be used
};

const Nccl& nccl() {
  static const Nccl lib = [] {
    Nccl l;
    void* h = dlopen(kSoname, RTLD_NOW | RTLD_LOCAL);
#ifdef BERTUNE_NCCL_DIR
    if (!h) h = dlopen((std::string(BERTUNE_NCCL_DIR) + "/" + kSoname).c_str(), RTLD_NOW | RTLD_LOCAL);
#endif
    if (!h) {
      const char* why = dlerror();
      l.failure = std::string(kSoname) + " could not be loaded (" + (why ? why : "not found") + ")";
      return l;
    }
    auto get = [&](auto& fn, const char* name) {
      fn = reinterpret_cast<std::remove_reference_t<decltype(fn)>>(dlsym(h, name));
      if (!fn && l.failure.empty()) l.failure = std::string(kSoname) + " has no " + name;
    };
    get(l.get_unique_id, "ncclGetUniqueId");
    get(l.comm_init_rank, "ncclCommInitRank");
    get(l.all_reduce, "ncclAllReduce");
    get(l.comm_destroy, "ncclCommDestroy");
    get(l.comm_abort, "ncclCommAbort");
    get(l.comm_get_async_error, "ncclCommGetAsyncError");
    get(l.get_error_string, "ncclGetErrorString");
    get(l.get_last_error, "ncclGetLastError");
    return l;
  }();
  if (!lib.failure.empty()) throw Error("NCCL: " + lib.failure);
  return lib;
}

std::string nccl_error(ncclResult_t rc, ncclComm_t comm) {
  const Nccl& l = nccl();
  std::string s = l.get_error_string(rc);
  const char* last = l.get_last_error(comm);
  if (last != nullptr && *last != 0) s += std::string(": ") + last;
  return s;
}

void check_nccl(ncclResult_t rc, const char* call, ncclComm_t comm = nullptr) {
  if (rc != ncclSuccess) throw Error(std::string("NCCL: ") + call + " failed: " + nccl_error(rc, comm));
}

}  // namespace

std::string nccl_missing() { return ""; }

NcclId nccl_unique_id() {
  ncclUniqueId id;
  check_nccl(nccl().get_unique_id(&id), "ncclGetUniqueId");
  NcclId out;
  static_assert(sizeof id == sizeof out);
  std::memcpy(out.data(), &id, sizeof id);
  return out;
}

int select_gpu(int index) {
  int count = 0;
  BERTUNE_CUDA_CHECK(cudaGetDeviceCount(&count));
  if (count < 1) throw Error("CUDA: no GPU to select");
  const int device = index % count;
  BERTUNE_CUDA_CHECK(cudaSetDevice(device));
  return device;
}

// The queued batches of sums are followed by a ring of CUDA events (one per mark()); progress()
// finds the finished ones by cudaEventQuery, oldest first. A full ring (kRing marks none of
// which the GPU has reached) makes mark() wait for the oldest.
struct NcclCommunicator::Impl {
  static constexpr uint64_t kRing = 64;
  ncclComm_t comm = nullptr;
  int device = 0;
  std::mutex mutex;  // the ring and its counts
  std::vector<cudaEvent_t> events;
  uint64_t queued = 0, finished = 0;
  std::string error;

  void advance() {  // under the mutex
    while (finished < queued) {
      const cudaError_t e = cudaEventQuery(events[finished % kRing]);
      if (e == cudaErrorNotReady) return;
      if (e != cudaSuccess) {
        error = std::string("CUDA: cudaEventQuery failed: ") + cudaGetErrorString(e);
        return;
      }
      ++finished;
    }
  }
};

// A blocking communicator (ncclCommInitRank), watched from the host (train/watchdog.h), not
// NCCL's non-blocking mode: that one launches from NCCL's own threads, where the
// cudaStreamPerThread handle every sum is queued on would name those threads' streams instead
// of the training thread's.
NcclCommunicator::NcclCommunicator(const NcclId& id, int rank, int ranks) : impl_(new Impl) {
  try {
    BERTUNE_CUDA_CHECK(cudaGetDevice(&impl_->device));
    ncclUniqueId nid;
    std::memcpy(&nid, id.data(), sizeof nid);
    check_nccl(nccl().comm_init_rank(&impl_->comm, ranks, nid, rank), "ncclCommInitRank");
    impl_->events.resize(Impl::kRing);
    for (cudaEvent_t& e : impl_->events) BERTUNE_CUDA_CHECK(cudaEventCreateWithFlags(&e, cudaEventDisableTiming));
  } catch (...) {
    if (impl_->comm != nullptr) nccl().comm_destroy(impl_->comm);
    delete impl_;
    throw;
  }
}

NcclCommunicator::~NcclCommunicator() {
  if (impl_->comm != nullptr) nccl().comm_destroy(impl_->comm);
  for (cudaEvent_t e : impl_->events) cudaEventDestroy(e);
  delete impl_;
}

void NcclCommunicator::sum(float* device, size_t n) {
  check_nccl(nccl().all_reduce(device, device, n, ncclFloat32, ncclSum, impl_->comm, gpu::stream()),
             "ncclAllReduce (float32)", impl_->comm);
}

void NcclCommunicator::sum(double* device, size_t n) {
  check_nccl(nccl().all_reduce(device, device, n, ncclFloat64, ncclSum, impl_->comm, gpu::stream()),
             "ncclAllReduce (float64)", impl_->comm);
}

void NcclCommunicator::mark() {
  cudaEvent_t oldest = nullptr;
  {
    std::lock_guard<std::mutex> lock(impl_->mutex);
    impl_->advance();
    if (impl_->queued - impl_->finished == Impl::kRing) oldest = impl_->events[impl_->finished % Impl::kRing];
  }
  if (oldest != nullptr) BERTUNE_CUDA_CHECK(cudaEventSynchronize(oldest));
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->advance();
  BERTUNE_CUDA_CHECK(cudaEventRecord(impl_->events[impl_->queued % Impl::kRing], gpu::stream()));
  ++impl_->queued;
}

CollectiveProgress NcclCommunicator::progress() {
  thread_local bool device_set = false;  // the watchdog's thread: the communicator's GPU
  if (!device_set) device_set = cudaSetDevice(impl_->device) == cudaSuccess;
  std::lock_guard<std::mutex> lock(impl_->mutex);
  impl_->advance();
  CollectiveProgress p{impl_->queued, impl_->finished, impl_->error};
  ncclResult_t async = ncclSuccess;
  const ncclResult_t rc = nccl().comm_get_async_error(impl_->comm, &async);
  if (rc != ncclSuccess) async = rc;
  if (async != ncclSuccess && async != ncclInProgress && p.error.empty())
    p.error = "NCCL: " + nccl_error(async, impl_->comm);
  return p;
}

void NcclCommunicator::abort() {
  if (impl_->comm != nullptr) nccl().comm_abort(impl_->comm);
  impl_->comm = nullptr;
}

}  // namespace bertune::kernels
#endif
