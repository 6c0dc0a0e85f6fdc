#pragma once
// Test helpers for `bertune serve`: a tiny random classifier directory written with the
// library's own APIs, and a server process spawned on a free port.
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include "io/atomic_file.h"
#include "io/safetensors.h"
#include "model/bert.h"
#include "model/config.h"
#include "http_client.h"
#include "util/paths.h"
#include "run_binary.h"


namespace bertune::testing {

namespace fs = std::filesystem;

// config.json (id2label negative/positive unless `label_names` is false), model.safetensors
// from a seeded random init (a wide initializer_range so different texts get clearly
// different logits), and klue's tokenizer files.
// `names` (id2label) and `problem` (config.json's problem_type) set the head: one label for
// regression, one per name otherwise.
inline fs::path write_tiny_classifier(const fs::path& dir, bool label_names = true, uint64_t seed = 7,
                                      model::ProblemType problem = model::ProblemType::Unset,
                                      const std::vector<std::string>& names = {"negative", "positive"},
                                      int type_vocab_size = 2) {
  fs::create_directories(dir);
  model::BertConfig config;
  config.vocab_size = 32000;
  config.hidden_size = 32;
  config.num_hidden_layers = 2;
  config.num_attention_heads = 2;
  config.intermediate_size = 64;
  config.max_position_embeddings = 64;
  config.type_vocab_size = type_vocab_size;
  config.initializer_range = 0.2f;
  config.architectures = {"BertForSequenceClassification"};
  if (label_names)
    for (size_t i = 0; i < names.size(); ++i) config.id2label[static_cast<int>(i)] = names[i];
  config.problem_type = problem;
  model::BertModel m(config, model::Task::SequenceClassification);
  m.init_weights(seed);
  config.save(dir / "config.json");
  io::write_safetensors(dir / "model.safetensors", m.state_dict());
  for (const char* f : {"vocab.txt", "tokenizer_config.json", "special_tokens_map.json"})
    io::write_file_atomic(dir / f, io::read_file(shared_path(std::string("models/klue-bert-base/") + f)));
  return dir;
}


// `bertune serve --port 0 ...`: waits for the port on its log and for GET /health == 200.
struct ServerProcess {
  pid_t pid = -1;
  int port = 0;
  fs::path log;

  ServerProcess(const fs::path& model, const fs::path& log_path, std::vector<std::string> extra = {}) : log(log_path) {
    std::vector<std::string> args = {"serve", "--model", model.string(), "--port", "0", "--threads", "2"};
    args.insert(args.end(), extra.begin(), extra.end());
    pid = spawn(args, log);
    const std::regex listening("listening on http://127\\.0\\.0\\.1:([0-9]+)");
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    std::smatch m;
    while (port == 0) {
      std::string text = slurp(log);
      if (std::regex_search(text, m, listening)) port = std::stoi(m[1]);
      else if (std::chrono::steady_clock::now() > deadline || waitpid(pid, nullptr, WNOHANG) == pid)
        throw std::runtime_error("server did not start: " + text);
      else std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    HttpClient c = client();
    for (;;) {
      auto r = c.Get("/health");
      if (r && r->status == 200) break;
      if (std::chrono::steady_clock::now() > deadline) throw std::runtime_error("never ready: " + slurp(log));
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
  HttpClient client() const {
    HttpClient c("127.0.0.1", port);
    c.set_read_timeout(30, 0);
    return c;
  }
  // SIGTERM, then the exit status (-1 when killed by a signal).
  int terminate() {
    if (pid <= 0) return -1;
    kill(pid, SIGTERM);
    int rc = wait_exit(pid);
    pid = -1;
    return rc;
  }
  ~ServerProcess() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
  }
};

}  // namespace bertune::testing
