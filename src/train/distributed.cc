#include "train/distributed.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <limits>

#include <unistd.h>

#include <array>
#include <atomic>
#include <memory>

#include "kernels/collectives.h"
#include "kernels/ops.h"
#include "train/watchdog.h"
#include "util/error.h"

#ifdef BERTUNE_WITH_MPI
#include <mpi.h>
#endif

namespace bertune::train {

namespace {

// mpirun (Open MPI), or srun / another PMI launcher, sets these in every rank's environment.
bool launched_by_mpi() {
  for (const char* v : {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"})
    if (const char* s = std::getenv(v); s != nullptr && *s != 0) return true;
  return false;
}

#ifdef BERTUNE_WITH_MPI
void check_mpi(int rc, const char* call) {
  if (rc == MPI_SUCCESS) return;
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(rc, text, &n);
  throw Error(std::string(call) + " failed: " + std::string(text, static_cast<size_t>(n)));
}

// The host's blocking MPI calls, counted for the watchdog join_world starts: one that has not
// returned for --ddp-timeout seconds (another rank stopped or hangs) ends this rank.
std::atomic<uint64_t> mpi_calls_started{0}, mpi_calls_returned{0};
std::atomic<const char*> mpi_call_name{""};

template <typename F>
void blocking_mpi(const char* call, F f) {
  mpi_call_name.store(call);
  mpi_calls_started.fetch_add(1);
  const int rc = f();
  mpi_calls_returned.fetch_add(1);
  check_mpi(rc, call);
}

WatchdogProbe mpi_probe() {
  const uint64_t returned = mpi_calls_returned.load();
  const bool busy = mpi_calls_started.load() > returned;
  return {busy, returned, "", busy ? std::string(mpi_call_name.load()) + " has not returned" : ""};
}

// On the watchdog's thread: says why and exits; mpirun then ends the other ranks.
[[noreturn]] void end_mpi_job(const std::string& why) {
  std::fprintf(stderr, "bertune: error: rank %d of %d: %s; ending the job\n", world().rank, world().size,
               why.c_str());
  std::fflush(nullptr);
  std::_Exit(kExitInternalError);
}

void finalize_at_exit() {
  int finalized = 0;
  MPI_Finalized(&finalized);
  if (!finalized) MPI_Finalize();
}

bool mpi_started = false;
class MpiGradientReduction;
MpiGradientReduction* the_reduction = nullptr;  // world_gradient_reduction's, once made

// Open MPI's default choice for an all-reduce of tens of megabytes among few ranks (its fixed
// decision table) ran a step of the small model 2.8x slower on one 2-core machine than its ring
// algorithm (bench/mpi_vs_threads.sh). Ask for the segmented ring unless the user chose: MCA
// parameters are read from the environment by MPI_Init; other MPIs ignore these names.
// The non-blocking all-reduce of the gradient buckets (libnbc) takes its binomial tree (a reduce
// to rank 0, then a broadcast) for fewer than 4 ranks or in place, which is both here: ask for
// its ring likewise, unless the user chose.
void prefer_ring_allreduce() {
  setenv("OMPI_MCA_coll_libnbc_iallreduce_algorithm", "1", /*overwrite=*/0);
  if (std::getenv("OMPI_MCA_coll_tuned_allreduce_algorithm")) return;
  setenv("OMPI_MCA_coll_tuned_use_dynamic_rules", "1", /*overwrite=*/0);
  setenv("OMPI_MCA_coll_tuned_allreduce_algorithm", "5", /*overwrite=*/0);
}

World init_mpi() {
  prefer_ring_allreduce();
  check_mpi(MPI_Init(nullptr, nullptr), "MPI_Init");
  mpi_started = true;
  std::atexit(finalize_at_exit);
  // A rank that fails ends the job: MPI_ERRORS_ARE_FATAL aborts every rank on an MPI error,
  // and mpirun ends the others when one exits with an error or dies.
  MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
  World w;
  MPI_Comm_rank(MPI_COMM_WORLD, &w.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &w.size);
  return w;
}

// MPI counts are int: [0, n) in chunks of at most 2^31 - 1 values, f(first, count) each.
template <typename F>
void for_each_mpi_chunk(size_t n, F f) {
  constexpr size_t kChunk = std::numeric_limits<int>::max();
  for (size_t at = 0; at < n; at += kChunk) f(at, static_cast<int>(std::min(kChunk, n - at)));
}

// Every rank's data[0, n) summed in place on every rank.
void sum_floats_over_world(float* data, size_t n, const char* call) {
  for_each_mpi_chunk(n, [&](size_t at, int count) {
    blocking_mpi(call, [&] { return MPI_Allreduce(MPI_IN_PLACE, data + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD); });
  });
}

// Every rank's values summed in place on every rank (a few: loss sums and counts).
void sum_doubles_over_world(std::span<double> values, const char* call) {
  blocking_mpi(call, [&] {
    return MPI_Allreduce(MPI_IN_PLACE, values.data(), static_cast<int>(values.size()), MPI_DOUBLE, MPI_SUM,
                         MPI_COMM_WORLD);
  });
}

// sum_over_workers: the gradients in place, then {loss sum, micro-batches} in one more call.
// With touched rows (the word embeddings): the ranks' touched flags are OR-ed (one small
// all-reduce), and of that block only the rows some rank touched are summed, packed; the
// rest of the buffer is summed in place around it. A rank's untouched rows are zero, so the
// sums are those of the whole buffer, on a fraction of the bytes (a batch of 32 reviews
// touches ~2 % of a 32,000-token vocabulary, which is 70 % of the small model's gradient).
//
// With buckets (--ddp-bucket-cap-mb > 0) the part above the embeddings (the layers and the
// head) is cut, top-down at the model's ready offsets, into buckets of at least the cap (a
// layer larger than the cap is a bucket of its own), and each bucket's MPI_Iallreduce starts
// as soon as the backward has finished it, with an MPI_Testall after each layer to move the
// started ones on (Open MPI progresses a non-blocking collective only inside MPI calls).
// sum_over_workers starts the buckets not started yet, waits for all of them, then sums the
// embeddings' part as above. Every rank starts the same buckets in the same order.
class MpiGradientReduction : public GradientReduction {
 public:
  explicit MpiGradientReduction(int workers) : workers_(workers) {}
  // Buckets of at least `mb` MiB (0: none, the whole buffer after the backward).
  void set_bucket_cap(double mb) {
    cap_mb_ = std::max(0.0, mb);
    cap_ = cap_mb_ == 0 ? 0 : std::max<size_t>(1, static_cast<size_t>(cap_mb_ * 1024 * 1024 / sizeof(float)));
    buckets_.clear();
  }
  // The banner's words for it.
  std::string describe() const {
    if (buckets_.empty()) return "once, after the backward";
    char cap[32];
    std::snprintf(cap, sizeof cap, "%g", cap_mb_);
    return std::to_string(buckets_.size()) + " bucket" + (buckets_.size() == 1 ? "" : "s") + " of >= " + cap +
           " MiB (--ddp-bucket-cap-mb), overlapping the backward; then the embeddings";
  }
  int workers() const override { return workers_; }
  void sum_counts(std::span<double> values) override { sum_doubles_over_world(values, "MPI_Allreduce (loss counts)"); }
  bool overlaps() const override { return cap_ > 0; }
  void gradient_layout(std::vector<size_t> ready, size_t n) override {
    buckets_.clear();
    layout_n_ = n;
    size_t hi = n;
    for (size_t i = 0; i < ready.size(); ++i) {
      if (ready[i] > hi) throw Error("gradient buckets: the ready offsets do not decrease");
      if (hi - ready[i] >= cap_ || (i + 1 == ready.size() && ready[i] < hi)) {
        buckets_.push_back({ready[i], hi});
        hi = ready[i];
      }
    }
  }
  void gradients_ready(float* grads, size_t from) override {
    while (started_ < buckets_.size() && buckets_[started_].from >= from) start(grads, buckets_[started_++]);
    if (requests_.empty()) return;
    int done = 0;
    check_mpi(MPI_Testall(static_cast<int>(requests_.size()), requests_.data(), &done, MPI_STATUSES_IGNORE),
              "MPI_Testall (gradient buckets)");
    if (done) requests_.clear();
  }
  void touched_rows(TouchedRows rows) override { touched_ = std::move(rows); }
  void sum_over_workers(float* grads, size_t n, double& loss_sum, double& micro_batches) override {
    if (!buckets_.empty()) {  // the buckets not started yet, then every bucket's end
      if (n != layout_n_)
        throw Error("gradient buckets: laid out for " + std::to_string(layout_n_) + " values, summing " +
                    std::to_string(n));
      while (started_ < buckets_.size()) start(grads, buckets_[started_++]);
      blocking_mpi("MPI_Waitall (gradient buckets)", [&] {
        return MPI_Waitall(static_cast<int>(requests_.size()), requests_.data(), MPI_STATUSES_IGNORE);
      });
      requests_.clear();
      started_ = 0;
      n = buckets_.back().from;  // what is left: the embeddings
    }
    const size_t block = static_cast<size_t>(touched_.rows) * touched_.cols;
    if (touched_.rows > 0 && touched_.offset + block <= n) {
      sum_floats_over_world(grads, touched_.offset, "MPI_Allreduce (gradients)");
      sum_touched_rows(grads + touched_.offset);
      sum_floats_over_world(grads + touched_.offset + block, n - touched_.offset - block, "MPI_Allreduce (gradients)");
    } else {
      sum_floats_over_world(grads, n, "MPI_Allreduce (gradients)");
    }
    touched_ = {};
    double sums[2] = {loss_sum, micro_batches};  // a NaN loss stays NaN: every rank skips together
    sum_doubles_over_world(sums, "MPI_Allreduce (loss)");
    loss_sum = sums[0];
    micro_batches = sums[1];
  }

 private:
  int workers_;
  TouchedRows touched_;
  std::vector<float> packed_;
  struct Bucket {
    size_t from = 0, to = 0;  // [from, to) of the gradient buffer
  };
  double cap_mb_ = 0;
  size_t cap_ = 0;  // floats; 0: no buckets
  size_t layout_n_ = 0;
  std::vector<Bucket> buckets_;  // top-down: the order the backward finishes them
  size_t started_ = 0;           // this step's buckets started so far
  std::vector<MPI_Request> requests_;

  // The bucket's in-place MPI_Iallreduce.
  void start(float* grads, const Bucket& b) {
    for_each_mpi_chunk(b.to - b.from, [&](size_t at, int count) {
      requests_.emplace_back();
      check_mpi(MPI_Iallreduce(MPI_IN_PLACE, grads + b.from + at, count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD,
                               &requests_.back()),
                "MPI_Iallreduce (gradients)");
    });
  }

  // The rows of `block` ([touched_.rows, touched_.cols]) that any rank touched, summed.
  void sum_touched_rows(float* block) {
    blocking_mpi("MPI_Allreduce (touched rows)", [&] {
      return MPI_Allreduce(MPI_IN_PLACE, touched_.touched.data(), touched_.rows, MPI_UNSIGNED_CHAR, MPI_BOR,
                           MPI_COMM_WORLD);
    });
    const size_t cols = static_cast<size_t>(touched_.cols);
    packed_.clear();
    for (int r = 0; r < touched_.rows; ++r)
      if (touched_.touched[r]) packed_.insert(packed_.end(), block + r * cols, block + (r + 1) * cols);
    sum_floats_over_world(packed_.data(), packed_.size(), "MPI_Allreduce (gradients)");
    const float* from = packed_.data();
    for (int r = 0; r < touched_.rows; ++r)
      if (touched_.touched[r]) {
        std::copy(from, from + cols, block + r * cols);
        from += cols;
      }
  }
};
#endif

// This process's index among the ranks of its machine, which picks its GPU (modulo their
// number): Open MPI's, Slurm's or MPICH's variable; 0 without one.
int local_rank() {
  for (const char* v : {"OMPI_COMM_WORLD_LOCAL_RANK", "SLURM_LOCALID", "MPI_LOCALRANKID"})
    if (const char* s = std::getenv(v); s != nullptr && *s != 0) return std::atoi(s);
  return 0;
}

// The gradients summed with NCCL on the GPU (--ddp-backend nccl), as llm.c and torch DDP do:
// rank 0 makes the communicator's id (ncclGetUniqueId), MPI_Bcast hands it to every rank (no
// MPI in a world of one), and each joins (ncclCommInitRank) on the GPU join_world chose. Each
// step, after the backward, the whole fp32 gradient buffer (the word embeddings whole: no
// touched-rows packing on the GPU) and the step's loss sum (one double, where the device step
// keeps it) are summed in place by ncclAllReduce (ncclSum) on the compute stream, so the norm,
// the clip, AdamW and the non-finite skip that follow on the device see the sums on every rank
// and decide the same, with nothing waiting. The micro-batches' loss counts are summed on the
// host over MPI before the forwards (the denominators are set there). A Watchdog (--ddp-timeout)
// ends the rank when a sum stays unfinished that long or NCCL reports an error.
class NcclGradientReduction : public GradientReduction {
 public:
  NcclGradientReduction(int rank, int workers, double timeout_s) : rank_(rank), workers_(workers) {
    kernels::NcclId id{};
    if (rank == 0) id = kernels::nccl_unique_id();
#ifdef BERTUNE_WITH_MPI
    if (workers > 1)
      blocking_mpi("MPI_Bcast (NCCL id)",
                   [&] { return MPI_Bcast(id.data(), static_cast<int>(id.size()), MPI_BYTE, 0, MPI_COMM_WORLD); });
#endif
    watchdog_ = std::make_unique<Watchdog>(timeout_s, [this] { return probe(); },
                                           [this](const std::string& why) { end_job(why); });
    comm_ = std::make_unique<kernels::NcclCommunicator>(id, rank, workers);
    joined_.store(comm_.get());
  }
  // Made once per process; shut_down runs at exit (every rank has finished the same sums),
  // before the CUDA runtime's own teardown (registered earlier, so run later): the watchdog
  // stops, then ncclCommDestroy.
  void shut_down() {
    watchdog_.reset();
    joined_.store(nullptr);
    comm_.reset();
  }
  int workers() const override { return workers_; }
  void sum_counts(std::span<double> values) override {
#ifdef BERTUNE_WITH_MPI
    if (workers_ > 1) sum_doubles_over_world(values, "MPI_Allreduce (loss counts)");
#endif
  }
  bool sums_on(kernels::Device d) const override { return d == kernels::Device::CUDA; }
  void sum_over_workers(float*, size_t, double&, double&) override {
    throw Error("--ddp-backend nccl sums GPU memory (--device cuda), not the host's");
  }
  void sum_on_device(float* grads, size_t n, double* loss_sum) override {
    comm_->sum(grads, n);
    comm_->sum(loss_sum, 1);  // a NaN stays NaN: every rank skips the update together
    comm_->mark();
  }
  std::string describe() const {
    return "ncclAllReduce (fp32, ncclSum) of the whole gradient on the GPU, once after the backward";
  }

 private:
  int rank_, workers_;
  std::unique_ptr<kernels::NcclCommunicator> comm_;
  std::atomic<kernels::NcclCommunicator*> joined_{nullptr};  // comm_ once ncclCommInitRank returned
  std::unique_ptr<Watchdog> watchdog_;

  // Joining is busy until it returns; then the queued sums.
  WatchdogProbe probe() {
    kernels::NcclCommunicator* c = joined_.load();
    if (c == nullptr) return {true, 0, "", ""};
    const kernels::CollectiveProgress p = c->progress();
    return {p.finished < p.queued, p.finished, p.error, ""};
  }
  // On the watchdog's thread: says why, aborts the communicator (an alarm ends the process
  // should that hang), and exits; mpirun then ends the other ranks.
  [[noreturn]] void end_job(const std::string& why) {
    std::fprintf(stderr, "bertune: error: rank %d of %d: %s; ending the job\n", rank_, workers_, why.c_str());
    std::fflush(nullptr);
    alarm(10);
    if (kernels::NcclCommunicator* c = joined_.load()) c->abort();
    std::_Exit(kExitInternalError);
  }
};

NcclGradientReduction* the_nccl_made = nullptr;  // the process's one, once made
NcclGradientReduction* the_nccl = nullptr;       // world_gradient_reduction's last answer

// The backend the options name, or the device's: nccl on a GPU, mpi on the CPU.
std::string backend_of(const TrainOptions& o) {
  if (!o.ddp_backend.empty()) return o.ddp_backend;
  return o.device == kernels::Device::CPU ? "mpi" : "nccl";
}

}  // namespace

bool mpi_built() {
#ifdef BERTUNE_WITH_MPI
  return true;
#else
  return false;
#endif
}

const World& world() {
  static const World w = [] {
    if (!launched_by_mpi()) return World{};
#ifdef BERTUNE_WITH_MPI
    return init_mpi();
#else
    throw Error("started by mpirun, but this bertune was built without MPI (configure with -DBERTUNE_MPI=ON; "
                "docs/distributed.md)");
#endif
  }();
  return w;
}

void abort_world(int exit_code) {
#ifdef BERTUNE_WITH_MPI
  if (!mpi_started || world().size == 1) return;
  std::fflush(nullptr);
  MPI_Abort(MPI_COMM_WORLD, exit_code);
#else
  (void)exit_code;
#endif
}

void barrier() {
  if (world().size == 1) return;
#ifdef BERTUNE_WITH_MPI
  blocking_mpi("MPI_Barrier", [] { return MPI_Barrier(MPI_COMM_WORLD); });
#endif
}

uint64_t fnv1a64(const std::string& s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

void check_same_on_every_rank(uint64_t value, const std::string& what) {
  const World& w = world();
  if (w.size == 1) return;
#ifdef BERTUNE_WITH_MPI
  // The smallest and the largest value (as -v and v): equal only when every rank has the same.
  uint64_t v[2] = {~value, value};
  blocking_mpi("MPI_Allreduce (check)",
               [&] { return MPI_Allreduce(MPI_IN_PLACE, v, 2, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD); });
  if (~v[0] != value || v[1] != value)
    throw Error("rank " + std::to_string(w.rank) + " of " + std::to_string(w.size) + ": " + what +
                " differ between the ranks (every rank must be started with the same command line)");
#endif
}

bool on_any_rank(bool flag) {
  if (world().size == 1) return flag;
#ifdef BERTUNE_WITH_MPI
  int v = flag ? 1 : 0;
  blocking_mpi("MPI_Allreduce (stop)", [&] { return MPI_Allreduce(MPI_IN_PLACE, &v, 1, MPI_INT, MPI_LOR, MPI_COMM_WORLD); });
  return v != 0;
#else
  return flag;
#endif
}

GradientReduction* world_gradient_reduction(const TrainOptions& o) {
  the_nccl = nullptr;
  if (backend_of(o) == "nccl" && (world().size > 1 || o.ddp_backend == "nccl")) {
    static NcclGradientReduction* const reduction = [&] {  // one communicator per process, kept
      auto* r = new NcclGradientReduction(world().rank, world().size, o.ddp_timeout);
      std::atexit([] { the_nccl_made->shut_down(); });
      return the_nccl_made = r;
    }();
    the_nccl = reduction;
    return reduction;
  }
  if (world().size == 1) return nullptr;
  const double bucket_cap_mb = o.ddp_bucket_cap_mb;
#ifdef BERTUNE_WITH_MPI
  static MpiGradientReduction reduction(world().size);
  reduction.set_bucket_cap(bucket_cap_mb);
  the_reduction = &reduction;
  return &reduction;
#else
  (void)bucket_cap_mb;
  return nullptr;
#endif
}

const infer::EvalShard* world_eval_shard() {
  if (world().size == 1) return nullptr;
#ifdef BERTUNE_WITH_MPI
  static const infer::EvalShard shard{world().rank, world().size, [](float* logits, size_t n) {
                                        sum_floats_over_world(logits, n, "MPI_Allreduce (evaluation logits)");
                                      }};
  return &shard;
#else
  return nullptr;
#endif
}

void join_world(TrainOptions& o, const std::string& options_json) {
  const World& w = world();
  if (w.size == 1) return;
#ifdef BERTUNE_WITH_MPI
  static std::unique_ptr<Watchdog> watchdog;  // the host's MPI calls; made anew for another timeout
  static double watchdog_timeout = 0;
  if (!watchdog || watchdog_timeout != o.ddp_timeout) {
    watchdog.reset();
    watchdog = std::make_unique<Watchdog>(o.ddp_timeout, mpi_probe, end_mpi_job);
    watchdog_timeout = o.ddp_timeout;
  }
#endif
  check_same_on_every_rank(fnv1a64(options_json), "the options");
  if (o.device != kernels::Device::CPU) {  // NCCL (validate() refused --ddp-backend mpi there)
    if (backend_of(o) != "nccl") throw Error("--ddp-backend " + backend_of(o) + ": not with --device cuda");
    kernels::select_gpu(local_rank());  // before anything else touches the GPU
  }
  o.per_device_train_batch_size *= w.size;
  o.max_tokens_per_batch *= w.size;
}

int per_device_batch(const TrainOptions& o) { return o.per_device_train_batch_size / world().size; }

std::FILE* console(std::FILE* stream) {
  if (world().writer()) return stream;
  static std::FILE* const null = std::fopen("/dev/null", "w");
  return null != nullptr ? null : stream;
}

void print_world(std::FILE* out, int64_t global_batch) {
  const World& w = world();
  if (w.size == 1 && the_nccl == nullptr) return;
  std::fprintf(out, "  World size = %d %s, global batch = %lld\n", w.size,
               w.size == 1 ? "process (no mpirun)" : "processes (MPI)", static_cast<long long>(global_batch));
  if (the_nccl != nullptr) {
    std::fprintf(out, "  Gradients summed = %s\n", the_nccl->describe().c_str());
    return;
  }
#ifdef BERTUNE_WITH_MPI
  if (the_reduction != nullptr) std::fprintf(out, "  Gradients summed = %s\n", the_reduction->describe().c_str());
#endif
}

model::Batch::DropoutPlace dropout_place_after(const model::Batch& before, int heads) {
  model::Batch::DropoutPlace place;
  place.rows = static_cast<uint64_t>(before.num_rows());
  place.sequences = static_cast<uint64_t>(before.num_sequences());
  for (int b = 0; b < before.num_sequences(); ++b) {
    const uint64_t span = static_cast<uint64_t>(before.offsets[b + 1] - before.offsets[b]);
    place.probs += static_cast<uint64_t>(heads) * span * span;
  }
  return place;
}

model::Batch rank_batch(const std::vector<size_t>& batch, const std::vector<int>* lengths, int heads,
                        const std::function<model::Batch(const std::vector<size_t>&)>& build) {
  const World& w = world();
  const ShareRange share = rank_share_range(batch, w.rank, w.size, lengths);
  if (share.begin == share.end) return {};
  const auto at = [&](size_t i) { return batch.begin() + static_cast<std::ptrdiff_t>(i); };
  model::Batch mine = build(std::vector<size_t>(at(share.begin), at(share.end)));
  if (share.begin > 0) mine.dropout_place = dropout_place_after(build(std::vector<size_t>(at(0), at(share.begin))), heads);
  return mine;
}

ShareRange rank_share_range(const std::vector<size_t>& batch, int rank, int ranks, const std::vector<int>* lengths) {
  if (ranks <= 0 || rank < 0 || rank >= ranks)
    throw Error("rank_share: rank " + std::to_string(rank) + " of " + std::to_string(ranks));
  const size_t n = batch.size();
  auto cut = [&](int r) -> size_t {  // where rank r's share starts
    if (lengths == nullptr) {
      const size_t base = n / ranks, extra = n % ranks;
      return static_cast<size_t>(r) * base + std::min<size_t>(r, extra);
    }
    if (r == 0) return 0;
    int64_t total = 0;
    for (size_t i : batch) total += (*lengths)[i];
    const double target = static_cast<double>(total) * r / ranks;
    int64_t prefix = 0;
    size_t best = 0;
    double best_gap = target;
    for (size_t i = 0; i < n; ++i) {  // the prefix [0, i + 1) nearest to the target
      prefix += (*lengths)[batch[i]];
      const double gap = std::fabs(static_cast<double>(prefix) - target);
      if (gap < best_gap) best = i + 1, best_gap = gap;
    }
    return best;
  };
  const size_t from = cut(rank), to = rank + 1 == ranks ? n : std::max(from, cut(rank + 1));
  return {from, std::max(from, to)};
}

std::vector<size_t> rank_share(const std::vector<size_t>& batch, int rank, int ranks,
                               const std::vector<int>* lengths) {
  const ShareRange r = rank_share_range(batch, rank, ranks, lengths);
  return std::vector<size_t>(batch.begin() + static_cast<std::ptrdiff_t>(r.begin),
                             batch.begin() + static_cast<std::ptrdiff_t>(r.end));
}

}  // namespace bertune::train
