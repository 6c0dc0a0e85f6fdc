#pragma once
// Runs `bertune ARGS` through the shell (so ARGS may hold redirections and quotes) and
// returns its exit status and combined stdout + stderr.
#include <sys/wait.h>

#include <cstdio>
#include <sstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

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

// The lines of a command's output that are JSON objects (`eval --json`, `predict`), parsed.
inline std::vector<nlohmann::json> json_lines(const std::string& text) {
  std::vector<nlohmann::json> out;
  std::stringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (!line.empty() && line.front() == '{') out.push_back(nlohmann::json::parse(line));
  return out;
}
