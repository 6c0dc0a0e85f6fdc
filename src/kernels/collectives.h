#pragma once
// Sums across processes on GPUs: NCCL, for data-parallel training (train/distributed.cc,
// docs/distributed.md). libnccl is opened with dlopen at its first use, as cuBLASLt is
// (kernels/gpu/cublaslt_loader.cu): a bertune built with NCCL starts and runs where no libnccl
// is installed, and only these calls then fail, naming the library and why.
//
// Implemented in kernels/gpu/nccl_gpu.cu when the build found nccl.h (BERTUNE_NCCL);
// otherwise every call but nccl_missing() throws an Error saying why the build has no NCCL.
#include <array>
#include <cstddef>
#include <cstdint>
#include <string>

namespace bertune::kernels {

// Why this build has no NCCL (the CUDA backend, and nccl.h found at configure time); "" when
// it has.
std::string nccl_missing();
inline bool nccl_built() { return nccl_missing().empty(); }

// ncclUniqueId: made by one rank (nccl_unique_id), handed to every rank (MPI_Bcast), which
// then joins the communicator with it.
using NcclId = std::array<char, 128>;
NcclId nccl_unique_id();

// Makes GPU `index` modulo the number of GPUs this process's device (cudaSetDevice), before
// anything else touches CUDA; returns the GPU chosen.
int select_gpu(int index);

// Where the communicator's queued sums stand, read from any thread: `queued` batches of sums
// marked (NcclCommunicator::mark), `finished` of them done on the GPU (in order), and NCCL's
// asynchronous error ("" when none).
struct CollectiveProgress {
  uint64_t queued = 0, finished = 0;
  std::string error;
};

// One rank's member of a communicator of `ranks` (ncclCommInitRank: it returns once every
// rank has joined). The sums are queued on the compute stream (the training thread's, as
// every kernel of kernels/gpu), in place, and nothing waits for them.
class NcclCommunicator {
 public:
  NcclCommunicator(const NcclId& id, int rank, int ranks);
  ~NcclCommunicator();  // ncclCommDestroy
  NcclCommunicator(const NcclCommunicator&) = delete;
  NcclCommunicator& operator=(const NcclCommunicator&) = delete;

  void sum(float* device, size_t n);   // ncclAllReduce, ncclFloat32, ncclSum
  void sum(double* device, size_t n);  // ncclFloat64
  // Ends a batch of sums: progress() counts it finished once the GPU has done them.
  void mark();
  // Thread-safe (the watchdog's thread calls it while the training thread queues sums).
  CollectiveProgress progress();
  // ncclCommAbort: ends the queued and running sums (from any thread); the communicator is
  // then unusable.
  void abort();

 private:
  struct Impl;
  Impl* impl_;
};

}  // namespace bertune::kernels
