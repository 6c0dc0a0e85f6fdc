#pragma once
// The fixture of the end-to-end training tests: slices of the NSMC training reviews, a tiny
// BERT config over the klue vocabulary (every run takes a second or two), a temporary
// directory holding them, and a run of the real binary that SIGKILLs itself mid-training.
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstddef>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "io/atomic_file.h"
#include "io/safetensors.h"
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

// A TinyTrainDir with train.tsv (the first n_train NSMC training reviews) and eval.tsv (the
// n_eval after them).
struct TinyNsmcDir : TinyTrainDir {
  std::filesystem::path train, eval;
  TinyNsmcDir(const std::string& name, size_t n_train, size_t n_eval)
      : TinyTrainDir(name), train(dir / "train.tsv"), eval(dir / "eval.tsv") {
    const NsmcRows nsmc = nsmc_train_rows(n_train + n_eval);
    std::ofstream tr(train), ev(eval);
    tr << nsmc.header << "\n";
    ev << nsmc.header << "\n";
    for (size_t i = 0; i < nsmc.rows.size(); ++i) (i < n_train ? tr : ev) << nsmc.rows[i] << "\n";
  }
};

inline size_t count_loss_records(const std::filesystem::path& log) {
  size_t n = 0;
  for (const auto& r : bertune::train::JsonlLog::read(log)) n += r.contains("loss");
  return n;
}

// Runs the binary until the training loop's kill hook (BERTUNE_TEST_KILL=after-step:N |
// in-save:N, train/loop.h) SIGKILLs it at that exact point — no timing involved. Returns
// whether it died so.
inline bool run_until_killed(const std::vector<std::string>& args, const std::string& point,
                             const std::filesystem::path& console) {
  ::setenv("BERTUNE_TEST_KILL", point.c_str(), 1);
  const pid_t pid = spawn(args, console);
  ::unsetenv("BERTUNE_TEST_KILL");
  int status = 0;
  waitpid(pid, &status, 0);
  return WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL;
}

// Whether a save of `checkpoint` (e.g. "checkpoint-36") was cut short in `out`: its temporary
// directory is there.
inline bool has_interrupted_save(const std::filesystem::path& out, const std::string& checkpoint) {
  for (const auto& e : std::filesystem::directory_iterator(out))
    if (e.path().filename().string().rfind(checkpoint + ".tmp-", 0) == 0) return true;
  return false;
}

// A trained token classifier (`from`) copied to `dir` with its classifier's bias pushed to
// `tag`: every piece predicts it.
inline std::string biased_model(const std::filesystem::path& dir, const std::string& from, const std::string& tag) {
  namespace fs = std::filesystem;
  fs::create_directories(dir);
  for (const auto& f : fs::directory_iterator(from)) fs::copy_file(f.path(), dir / f.path().filename());
  const auto config = nlohmann::json::parse(std::ifstream(dir / "config.json"));
  bertune::TensorMap weights = bertune::io::read_safetensors(dir / "model.safetensors");
  weights.at("classifier.bias").data.at(config.at("label2id").at(tag).get<size_t>()) = 100.f;
  std::vector<bertune::TensorRef> refs;
  for (const auto& [name, t] : weights) refs.push_back({name, t.shape, t.data.data()});
  fs::remove(dir / "model.safetensors");
  bertune::io::write_safetensors(dir / "model.safetensors", refs);
  return dir.string();
}
