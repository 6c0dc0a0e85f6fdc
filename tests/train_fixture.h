#pragma once
// The fixture of the end-to-end training tests: slices of the NSMC training reviews, a tiny
// BERT config over the klue vocabulary (every run takes a second or two), a temporary
// directory holding them, and a run of the real binary that is SIGKILLed mid-training.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "io/atomic_file.h"
#include "train/report.h"
#include "util/paths.h"
#include "run_binary.h"

// The header and the first `n` rows of the NSMC training file (id, document, label).
struct NsmcRows {
  std::string header;
  std::vector<std::string> rows;
};

inline NsmcRows nsmc_train_rows(size_t n) {
  std::ifstream in(bertune::shared_path("data/nsmc/ratings_train.txt"));
  NsmcRows r;
  std::getline(in, r.header);
  for (std::string line; r.rows.size() < n && std::getline(in, line);) r.rows.push_back(line);
  return r;
}

// A temporary directory bertune_NAME_PID holding tiny.json, a 2-layer BERT of width 32 over
// the klue vocabulary; removed with everything in it when the object goes.
struct TinyTrainDir {
  std::filesystem::path dir, config;
  explicit TinyTrainDir(const std::string& name)
      : dir(std::filesystem::temp_directory_path() / ("bertune_" + name + "_" + std::to_string(::getpid()))),
        config(dir / "tiny.json") {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    bertune::io::write_file_atomic(config, R"({"vocab_size": 32000, "hidden_size": 32, "num_hidden_layers": 2,
      "num_attention_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64,
      "hidden_dropout_prob": 0.1, "attention_probs_dropout_prob": 0.1})");
  }
  TinyTrainDir(const TinyTrainDir&) = delete;
  TinyTrainDir& operator=(const TinyTrainDir&) = delete;
  ~TinyTrainDir() { std::filesystem::remove_all(dir); }
};

inline size_t count_loss_records(const std::filesystem::path& log) {
  size_t n = 0;
  for (const auto& r : bertune::train::JsonlLog::read(log)) n += r.contains("loss");
  return n;
}

// Starts a run and SIGKILLs it once `after` loss records are logged (+ delay). Returns
// whether the kill landed before the run finished on its own.
inline bool run_and_kill(const std::vector<std::string>& args, const std::filesystem::path& out, size_t after,
                         int delay_ms, const std::filesystem::path& console) {
  pid_t pid = spawn(args, console);
  int status = 0;
  for (;;) {
    if (waitpid(pid, &status, WNOHANG) == pid) return false;  // finished first
    if (count_loss_records(out / "log.jsonl") >= after) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(2));
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(delay_ms));
  kill(pid, SIGKILL);
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status);
}

// The same, killing as soon as `after` loss records are logged.
inline bool run_and_kill(const std::vector<std::string>& args, const std::filesystem::path& out, size_t after,
                         const std::filesystem::path& console) {
  return run_and_kill(args, out, after, 0, console);
}
