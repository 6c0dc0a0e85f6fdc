#include "train/run_dir.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <fstream>
#include <random>
#include <set>
#include <thread>

#include "io/atomic_file.h"
#include "io/json_error.h"
#include "train/checkpoint.h"
#include "train/state.h"
#include "train/distributed.h"
#include "util/error.h"

namespace bertune::train {
namespace fs = std::filesystem;
using Json = nlohmann::json;

namespace {

// What a run leaves at the top of its output directory.
struct DirContents {
  std::string run_id;               // bertune_run.json's; "" when there is none
  std::vector<fs::path> checkpoints;  // checkpoint-<step>/, oldest first
  std::vector<fs::path> results;      // final/, a non-empty log.jsonl, trainer_state.json
  std::vector<fs::path> start_files;  // training_args.json, pretrain_args.json, bertune_run.json, an empty log

  bool holds_run() const { return !checkpoints.empty() || !results.empty(); }
  std::vector<fs::path> all() const {
    std::vector<fs::path> a = checkpoints;
    a.insert(a.end(), results.begin(), results.end());
    a.insert(a.end(), start_files.begin(), start_files.end());
    return a;
  }
  // "checkpoint-80, checkpoint-84, final/, log.jsonl"
  std::string names() const {
    std::string s;
    for (const fs::path& p : all()) {
      if (p.filename() == kRunFile) continue;
      std::error_code ec;
      s += (s.empty() ? "" : ", ") + p.filename().string() + (fs::is_directory(p, ec) ? "/" : "");
    }
    return s;
  }
};

DirContents contents_of(const fs::path& dir) {
  DirContents c;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return c;
  c.run_id = output_dir_run_id(dir);
  c.checkpoints = sorted_checkpoints(dir, std::nullopt);
  if (fs::exists(dir / "final", ec)) c.results.push_back(dir / "final");
  const fs::path log = dir / "log.jsonl";
  if (fs::exists(log, ec)) (fs::file_size(log, ec) > 0 ? c.results : c.start_files).push_back(log);
  if (fs::exists(dir / "trainer_state.json", ec)) c.results.push_back(dir / "trainer_state.json");
  for (const char* f : {"training_args.json", "pretrain_args.json", kRunFile})
    if (fs::exists(dir / f, ec)) c.start_files.push_back(dir / f);
  return c;
}

// The directory's run: its bertune_run.json's, else the one run id its checkpoints carry
// (a checkpoint copied into a new directory); "" when none carries one. Error when the
// checkpoints of a directory without bertune_run.json name several runs.
std::string run_of(const DirContents& c, const fs::path& dir) {
  if (!c.run_id.empty()) return c.run_id;
  std::set<std::string> ids;
  for (const fs::path& p : c.checkpoints)
    if (std::string id = checkpoint_run_id(p); !id.empty()) ids.insert(id);
  if (ids.size() > 1)
    throw Error(dir.string() + " holds the checkpoints of " + std::to_string(ids.size()) +
                " runs and no " + kRunFile + " naming its own: move all but one run's checkpoint-<step> "
                "directories elsewhere");
  return ids.empty() ? std::string() : *ids.begin();
}

std::string run_name(const std::string& id) { return id.empty() ? std::string("an earlier run") : "run " + id; }

// --overwrite-output-dir: the directory's outputs are moved aside at the run's start.
void set_aside(RunDirPlan& plan, const DirContents& held) {
  plan.previous_outputs = held.all();
  plan.previous_run_id = run_of(held, plan.output_dir);
  if (plan.previous_run_id.empty()) plan.previous_run_id = new_run_id();
}

void plan_fresh(RunDirPlan& plan, const DirContents& held, bool overwrite) {
  plan.run_id = new_run_id();
  if (!held.holds_run()) return;  // at most the start files of a run that logged nothing: replaced
  if (overwrite) return set_aside(plan, held);
  const std::string id = run_of(held, plan.output_dir);
  throw Error("--output-dir " + plan.output_dir.string() + " already holds the outputs of " + run_name(id) + " (" +
              held.names() + "); " +
              (held.checkpoints.empty() ? std::string("it has no checkpoint to continue from. Pass ")
                                        : std::string("pass --resume-from-checkpoint last to continue it, or ")) +
              "--overwrite-output-dir to start a new run there (they move to " +
              (plan.output_dir / ("previous-run-" + (id.empty() ? std::string("<new id>") : id))).string() +
              "/), or choose another --output-dir");
}

bool same_directory(const fs::path& a, const fs::path& b) {
  std::error_code ec;
  return fs::weakly_canonical(a, ec) == fs::weakly_canonical(b, ec);
}

// A resume continues the checkpoint's run, in a directory that holds no other run.
void plan_resume(RunDirPlan& plan, const DirContents& held, bool overwrite) {
  const std::string ckpt_run = checkpoint_run_id(plan.resume_dir);
  const bool inside = same_directory(plan.resume_dir.parent_path(), plan.output_dir);
  const std::string dir_run = run_of(held, plan.output_dir);
  bool same = false;
  if (inside) {
    // A checkpoint from before run ids counts as its directory's run.
    same = ckpt_run.empty() || dir_run.empty() || ckpt_run == dir_run;
  } else {
    // From elsewhere: into a directory without a run, or one the same run continued into.
    same = !held.holds_run() ||
           (!ckpt_run.empty() && ckpt_run == dir_run && (!held.run_id.empty() || held.results.empty()));
  }
  plan.run_id = !ckpt_run.empty() ? ckpt_run : !dir_run.empty() ? dir_run : new_run_id();
  if (same) return;
  const std::string what = "--resume-from-checkpoint " + plan.resume_dir.string() + ": the checkpoint belongs to " +
                           run_name(ckpt_run) + ", but --output-dir " + plan.output_dir.string() +
                           " holds the outputs of " + run_name(dir_run);
  if (inside)
    throw Error(what + (held.run_id.empty() ? std::string() : std::string(" (its ") + kRunFile + ")") +
                "; a run continues only from its own checkpoints: resume one of " + run_name(dir_run) +
                ", or copy this checkpoint into a new --output-dir and resume it there");
  if (!overwrite)
    throw Error(what + " (" + held.names() +
                "); pass --overwrite-output-dir to move them aside (to previous-run-<id>/), or choose another "
                "--output-dir");
  set_aside(plan, held);
}

std::string utc_now() {
  const std::time_t t = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

// previous-run-<id>/, or previous-run-<id>-2/ ... when that exists.
fs::path previous_run_dir(const RunDirPlan& plan) {
  const fs::path base = plan.output_dir / ("previous-run-" + plan.previous_run_id);
  fs::path dir = base;
  std::error_code ec;
  for (int n = 2; fs::exists(dir, ec); ++n) dir = base.string() + "-" + std::to_string(n);
  return dir;
}

void move_previous_outputs(const RunDirPlan& plan) {
  std::string names;
  for (const fs::path& p : plan.previous_outputs)
    if (p.filename() != kRunFile) names += (names.empty() ? "" : ", ") + p.filename().string();
  if (plan.discard_previous) {
    for (const fs::path& p : plan.previous_outputs) fs::remove_all(p);
    std::fprintf(stderr, "--overwrite-output-dir: deleted the outputs of run %s in %s (%s)\n",
                 plan.previous_run_id.c_str(), plan.output_dir.c_str(), names.c_str());
    return;
  }
  const fs::path dest = previous_run_dir(plan);
  fs::create_directory(dest);
  for (const fs::path& p : plan.previous_outputs) fs::rename(p, dest / p.filename());
  io::fsync_directory(plan.output_dir);
  std::fprintf(stderr, "--overwrite-output-dir: moved the outputs of run %s (%s) to %s/\n",
               plan.previous_run_id.c_str(), names.c_str(), dest.c_str());
}

// The pid the holder of `lock_file` wrote there (it writes it right after locking).
std::string lock_holder(const fs::path& lock_file) {
  for (int tries = 0; tries < 50; ++tries) {
    std::ifstream in(lock_file);
    long long pid = 0;
    if (in >> pid && pid > 0) return std::to_string(pid);
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return "unknown";
}

}  // namespace

OutputDirLock::OutputDirLock(const fs::path& output_dir) {
  const fs::path file = output_dir / kLockFile;
  fd_ = ::open(file.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd_ < 0) throw Error(file.string() + ": cannot open the output directory's lock: " + std::strerror(errno));
  if (::flock(fd_, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    ::close(fd_);
    fd_ = -1;
    if (err == EWOULDBLOCK)
      throw Error(output_dir.string() + " is in use by another bertune run (pid " + lock_holder(file) + ")");
    std::fprintf(stderr, "bertune: warning: %s: cannot lock (%s); nothing keeps another run out of %s\n",
                 file.c_str(), std::strerror(err), output_dir.c_str());
    return;
  }
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(fd_, 0) != 0 || ::pwrite(fd_, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    std::fprintf(stderr, "bertune: warning: %s: cannot write the pid: %s\n", file.c_str(), std::strerror(errno));
}

OutputDirLock::~OutputDirLock() {
  if (fd_ >= 0) ::close(fd_);  // the kernel also drops the lock when the process ends, however it ends
}

std::string new_run_id() {
  std::random_device rd;
  const uint64_t id = (static_cast<uint64_t>(rd()) << 32) ^ rd();
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016llx", static_cast<unsigned long long>(id));
  return buf;
}

std::string checkpoint_run_id(const fs::path& checkpoint_dir) {
  const fs::path file = checkpoint_dir / "bertune_state.json";
  std::error_code ec;
  if (!fs::exists(file, ec)) return {};
  try {
    const Json j = io::read_json_file(file);
    if (j.is_object() && j.contains("run_id") && j["run_id"].is_string()) return j["run_id"].get<std::string>();
  } catch (const Error&) {
  }
  return {};
}

std::string output_dir_run_id(const fs::path& output_dir) {
  const fs::path file = output_dir / kRunFile;
  std::error_code ec;
  if (!fs::exists(file, ec)) return {};
  const Json j = io::read_json_file(file);
  if (!j.is_object() || !j.contains("run_id") || !j["run_id"].is_string() || j["run_id"].get<std::string>().empty())
    throw Error(file.string() + ": field \"run_id\" is missing or not a string (the file says which run owns " +
                output_dir.string() + ")");
  return j["run_id"].get<std::string>();
}

bool checkpoint_of_run(const fs::path& checkpoint_dir, const std::string& run_id) {
  const std::string id = checkpoint_run_id(checkpoint_dir);
  return id.empty() || id == run_id;
}

RunDirPlan plan_run_dir(const TrainOptions& o) {
  RunDirPlan plan;
  plan.output_dir = o.output_dir;
  plan.discard_previous = o.discard_previous_run;
  std::error_code ec;
  // Under mpirun rank 0 alone holds the directory (the other ranks write nothing there).
  if (world().writer() && fs::is_directory(plan.output_dir, ec))
    plan.lock = std::make_shared<OutputDirLock>(plan.output_dir);
  const DirContents held = contents_of(plan.output_dir);
  if (o.resume_from_checkpoint.empty()) {
    plan_fresh(plan, held, o.overwrite_output_dir);
  } else {
    plan.resume_dir = resolve_resume_dir(o.resume_from_checkpoint, plan.output_dir);
    plan_resume(plan, held, o.overwrite_output_dir);
  }
  return plan;
}

void claim_run_dir(const RunDirPlan& plan) {
  fs::create_directories(plan.output_dir);
  // Two runs that planned on a directory that was not there yet: the second stops here, at the
  // lock while the first runs, or at what the first left once it has ended.
  if (!plan.lock) {
    plan.lock = std::make_shared<OutputDirLock>(plan.output_dir);
    const DirContents now = contents_of(plan.output_dir);
    if (now.holds_run() || (!now.run_id.empty() && now.run_id != plan.run_id))
      throw Error("--output-dir " + plan.output_dir.string() + " was taken by another bertune run after this one " +
                  "looked at it (" + (now.holds_run() ? now.names() : std::string(kRunFile)) +
                  "); start again to see what that run left there");
  }
  if (!plan.previous_outputs.empty()) move_previous_outputs(plan);
  remove_interrupted_saves(plan.output_dir);
  if (output_dir_run_id(plan.output_dir) != plan.run_id)
    io::write_file_atomic(plan.output_dir / kRunFile,
                          Json{{"run_id", plan.run_id}, {"started", utc_now()}}.dump(2) + "\n");
}

}  // namespace bertune::train
