// A build without NCCL: kernels/collectives.h's calls say so (with NCCL, kernels/gpu/nccl_gpu.cu
// defines them instead).
#include "kernels/collectives.h"

#ifndef BERTUNE_NCCL
#include "util/error.h"

namespace bertune::kernels {

std::string nccl_missing() {
#ifdef BERTUNE_CUDA
  return "this bertune was built without NCCL (nccl.h was not found at configure time; docs/distributed.md)";
#else
  return "this bertune was built without CUDA, so without NCCL (docs/gpu.md)";
#endif
}

namespace {
[[noreturn]] void no_nccl() { throw Error(nccl_missing()); }
}  // namespace

NcclId nccl_unique_id() { no_nccl(); }
int select_gpu(int) { no_nccl(); }
struct NcclCommunicator::Impl {};
NcclCommunicator::NcclCommunicator(const NcclId&, int, int) : impl_(nullptr) { no_nccl(); }
NcclCommunicator::~NcclCommunicator() = default;
void NcclCommunicator::sum(float*, size_t) { no_nccl(); }
void NcclCommunicator::sum(double*, size_t) { no_nccl(); }
void NcclCommunicator::mark() { no_nccl(); }
CollectiveProgress NcclCommunicator::progress() { no_nccl(); }
void NcclCommunicator::abort() {}

}  // namespace bertune::kernels
#endif
