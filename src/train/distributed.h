#pragma once
// Data-parallel training over MPI: `mpirun -np N bertune train|pretrain ...` (docs/distributed.md).
//
// Every rank runs the same loop on its share of each global batch; TrainStep hands the
// gradient buffer to MpiGradientReduction (in-place MPI_Allreduce, fp32, in buckets overlapping
// the backward with --ddp-bucket-cap-mb) or on GPUs to NcclGradientReduction, so the norm,
// the clip, AdamW and the non-finite guard see the same summed gradients on every rank and
// decide the same. Rank 0 alone writes (logs, checkpoints, final/) and prints; the others
// wait for it at a barrier after each checkpoint.
//
// On GPUs (--device cuda, --ddp-backend nccl) each rank takes the GPU of its local rank
// (OMPI_COMM_WORLD_LOCAL_RANK / SLURM_LOCALID modulo the GPUs) and the gradients are summed with
// NCCL on the GPU (world_gradient_reduction below).
//
// Without mpirun (no OMPI_COMM_WORLD_SIZE / PMI_SIZE / PMIX_RANK in the environment), or in
// a build without MPI (BERTUNE_MPI=OFF), the world is one rank and nothing here calls MPI:
// one process, exactly as without this file.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <span>
#include <string>
#include <vector>

#include "infer/evaluate.h"
#include "train/options.h"
#include "train/step.h"

namespace bertune::train {

struct World {
  int rank = 0;
  int size = 1;
  bool writer() const { return rank == 0; }  // writes the files, prints
};

// Whether this build can run across processes (linked with MPI).
bool mpi_built();
// The world this process belongs to. The first call initialises MPI when the process was
// started by mpirun / srun (and finalises it at exit); an Error when it was but this build
// has no MPI.
const World& world();

// After an error on this rank: ends every rank of a started world of more than one (MPI_Abort
// with `exit_code`), since the others would wait for this one forever; nothing otherwise.
void abort_world(int exit_code);
// Waits until every rank has arrived (nothing on one rank).
void barrier();
// Every rank's `value` must be the same (a hash of the options, say): an Error on every
// rank naming `what` otherwise.
void check_same_on_every_rank(uint64_t value, const std::string& what);
// Whether `flag` is true on any rank (a logical or over the world; the flag itself on one).
// Every rank must call it at the same point.
bool on_any_rank(bool flag);
// FNV-1a 64 of a string.
uint64_t fnv1a64(const std::string& s);

// Checks that every rank has the same `options_json` (a clear error on every rank otherwise),
// then makes the options global: the batch (and --max-tokens-per-batch) of one rank times
// the world's size, so the sampler, the step count, the schedule and a checkpoint's resume
// fingerprint are those of one process running the global batch; each rank then takes its
// share of every batch (rank_share). Nothing changes for a world of one.
void join_world(TrainOptions& o, const std::string& options_json);
// The per-device batch of the options join_world made global.
int per_device_batch(const TrainOptions& o);
// Dropout across ranks: every rank has the same seed, and its share of a global batch draws
// the masks its elements have in the whole batch (model::Batch::dropout_place): the place
// after `before`, the examples of the ranks before it built as one batch, with `heads`
// attention heads. Packed batches (the global batch is the ranks' packed shares end to end):
// every sample gets the masks of one process running the global batch, at any world size.
// Padded batches: each rank's elements get masks no other rank draws (the shares are padded
// to their own longest, so the layout differs from one process's).
model::Batch::DropoutPlace dropout_place_after(const model::Batch& before, int heads);
// This rank's share of one global batch (rank_share with `lengths`), built by `build`, placed
// after the shares of the ranks before it (dropout_place_after); an empty Batch for an empty share.
model::Batch rank_batch(const std::vector<size_t>& batch, const std::vector<int>* lengths, int heads,
                        const std::function<model::Batch(const std::vector<size_t>&)>& build);

// Where console output goes: `stream` on rank 0 (and in a world of one), nowhere on the others.
std::FILE* console(std::FILE* stream);
// The banner's line for a world of more than one rank (nothing for one).
void print_world(std::FILE* out, int64_t global_batch);

// The world's gradient reduction; nullptr for a world of one (unless --ddp-backend nccl).
// --ddp-backend (o.ddp_backend; its default: nccl for --device cuda, mpi on the CPU):
//  mpi:  MPI_Allreduce of host memory. --ddp-bucket-cap-mb > 0 (MiB): the layers' and the
//        head's gradients are summed in buckets of at least that size, each started
//        (MPI_Iallreduce) as soon as the backward has finished it, overlapping the rest of the
//        backward; 0: the whole buffer once, after the backward.
//  nccl: ncclAllReduce of GPU memory on the compute stream, once after the backward, with a
//        watchdog (--ddp-timeout); the communicator bootstrapped over MPI (rank 0's id sent with
//        MPI_Bcast), or of one rank without mpirun (a test of the path on one GPU).
GradientReduction* world_gradient_reduction(const TrainOptions& o);
// This rank's part of an evaluation (infer::evaluate's shard: its batches, then an
// MPI_Allreduce of the logits); nullptr for a world of one.
const infer::EvalShard* world_eval_shard();

// Rank `rank`'s share of one global batch `batch` (example indices in training order) among
// `ranks`: consecutive slices, so the ranks' shares laid end to end are the batch. Balanced
// by count (sizes differ by at most one, the first ranks larger), or with `lengths` (tokens
// per example; packed batches, --max-tokens-per-batch) balanced by tokens: the cut after
// rank r lies where the running token sum first reaches (r + 1) / ranks of the total. A
// share may be empty (a batch with fewer examples than ranks).
std::vector<size_t> rank_share(const std::vector<size_t>& batch, int rank, int ranks,
                               const std::vector<int>* lengths = nullptr);
// Where rank_share's slice lies in `batch`: [begin, end).
struct ShareRange {
  size_t begin = 0, end = 0;
};
ShareRange rank_share_range(const std::vector<size_t>& batch, int rank, int ranks,
                            const std::vector<int>* lengths = nullptr);

}  // namespace bertune::train
