#pragma once
// The watchdog of the collectives of data-parallel training (train/distributed.cc): NCCL's on
// the GPU, and the host's blocking MPI calls.
//
// A rank that dies ends the job through mpirun (it ends the others when one exits with an
// error or a signal); a rank that hangs (stuck, or its GPU or network stalled) leaves the others
// inside an all-reduce that never finishes: on the GPU, where no MPI call sees it, or in a
// blocking MPI call on the host, which waits as long as the stopped rank does. So a thread
// looks every poll interval at a probe of the collectives (how many queued batches of sums the
// GPU has finished and NCCL's asynchronous error; or how many blocking MPI calls have
// returned), and calls `fire` with the reason when NCCL reports an error, or when collectives
// are under way and none has finished for `timeout_s` seconds (--ddp-timeout). On every rank of
// a stalled job the probe stalls alike, so each ends itself within the timeout plus a poll; fire
// ends the process (with NCCL, ncclCommAbort first; then a non-zero exit), and mpirun the rest.
// It is called at most once.
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <string>
#include <thread>

namespace bertune::train {

struct WatchdogProbe {
  bool busy = false;      // collectives queued and not all finished (or a communicator joining)
  uint64_t progress = 0;  // how many have finished: any change is progress
  std::string error;      // non-empty: fire now with it
  std::string stalled;    // the message's subject (empty: "no GPU collective has finished")
};

class Watchdog {
 public:
  // poll_s <= 0: a tenth of the timeout, at most a second.
  Watchdog(double timeout_s, std::function<WatchdogProbe()> probe, std::function<void(const std::string&)> fire,
           double poll_s = 0);
  ~Watchdog();  // stops the thread
  Watchdog(const Watchdog&) = delete;
  Watchdog& operator=(const Watchdog&) = delete;

 private:
  void run();
  double timeout_s_, poll_s_;
  std::function<WatchdogProbe()> probe_;
  std::function<void(const std::string&)> fire_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false;
  std::thread thread_;
};

}  // namespace bertune::train
