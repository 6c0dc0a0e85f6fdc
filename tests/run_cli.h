#pragma once
// Runs `bertune ARGS` through the shell (so ARGS may hold redirections and quotes) and
// returns its exit status and combined stdout + stderr.
#include <sys/wait.h>

#include <cstdio>
#include <string>

#include "test_support.h"

struct CliResult {
  int status;          // exit code, or 128 + signal when killed
  std::string output;  // stdout and stderr
};

inline CliResult run_cli(const std::string& args) {
  std::string cmd = std::string(BERTUNE_BINARY) + " " + args + " 2>&1";
  CliResult r{0, ""};
  std::FILE* p = popen(cmd.c_str(), "r");
  char buf[4096];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  int st = pclose(p);
  r.status = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
  return r;
}
