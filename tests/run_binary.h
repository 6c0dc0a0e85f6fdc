#pragma once
// Helpers of the end-to-end tests: run the real bertune binary (what users run) with its
// stdout and stderr in a log file, and read what it wrote.
#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>

#include <cstdint>
#include <filesystem>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

#include "io/atomic_file.h"
#include "train/report.h"

extern char** environ;

// Starts `bertune ARGS...` with stdout and stderr going to `log` (stdout to `out` when given).
inline pid_t spawn(const std::vector<std::string>& args, const std::filesystem::path& log,
                   const std::filesystem::path& out = {}) {
  std::vector<std::string> all = {BERTUNE_BINARY};
  all.insert(all.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : all) argv.push_back(a.data());
  argv.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  posix_spawn_file_actions_addopen(&fa, 2, log.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
  if (out.empty()) posix_spawn_file_actions_adddup2(&fa, 2, 1);
  else posix_spawn_file_actions_addopen(&fa, 1, out.c_str(), O_WRONLY, 0);
  pid_t pid = 0;
  int rc = posix_spawn(&pid, BERTUNE_BINARY, &fa, nullptr, argv.data(), environ);
  posix_spawn_file_actions_destroy(&fa);
  if (rc != 0) throw std::runtime_error("cannot spawn " + std::string(BERTUNE_BINARY));
  return pid;
}

// The exit status, or -1 when a signal ended the process.
inline int wait_exit(pid_t pid) {
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

inline int run(const std::vector<std::string>& args, const std::filesystem::path& log) {
  return wait_exit(spawn(args, log));
}

inline std::string slurp(const std::filesystem::path& p) {
  return std::filesystem::exists(p) ? bertune::io::read_file(p) : "";
}

// `key` of every log.jsonl record that has it, by step.
inline std::map<int64_t, double> metric_by_step(const std::filesystem::path& log, const char* key) {
  std::map<int64_t, double> m;
  if (!std::filesystem::exists(log)) return m;
  for (const auto& r : bertune::train::JsonlLog::read(log))
    if (r.contains(key)) m[r["step"].get<int64_t>()] = r[key].get<double>();
  return m;
}
