// bertune serve: HTTP classification with dynamic batching (src/serve/).
#include <sstream>

#include "cli/commands.h"
#include "cli/validators.h"
#include "serve/server.h"
#include "train/memory_plan.h"
#include "train/options.h"

namespace bertune::cli {

void add_serve_command(CLI::App& app) {
  auto* cmd = app.add_subcommand("serve", "Serve a classifier over HTTP (POST /v1/classify, POST /, GET /health, "
                                          "GET /metrics) with dynamic batching");
  auto o = std::make_shared<serve::ServeOptions>();
  auto label_names = std::make_shared<std::string>();
  cmd->add_option("--model", o->model, "model directory (HF layout)")->required();
  cmd->add_option("--tokenizer", o->tokenizer, "tokenizer directory (default: the model's)");
  cmd->add_option("--host", o->host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", o->port, "port (0: any free port, printed on stderr)")->capture_default_str();
  cmd->add_option("--threads", o->threads, "compute threads of the model (0: all cores)")->capture_default_str();
  cmd->add_option("--max-batch", o->max_batch, "texts per forward pass")->capture_default_str();
  cmd->add_option("--max-wait-ms", o->max_wait_ms, "how long the oldest queued text waits for a fuller batch")
      ->capture_default_str();
  cmd->add_option("--batch-wait", o->batch_wait,
                  "arriving: wait for a fuller batch only while other requests are being read; always: wait out "
                  "--max-wait-ms")
      ->capture_default_str();
  cmd->add_option("--max-length", o->max_length, "truncate texts to this many tokens")
      ->capture_default_str()
      ->each([o](const std::string&) { o->max_length_given = true; });
  cmd->add_option("--max-texts", o->max_texts, "texts per request (more: 413)")->capture_default_str();
  // Unsigned: CLI11 alone would turn -1 into "no limit".
  cmd->add_option("--max-body-bytes", o->max_body_bytes, "request body size (more: 413)")
      ->capture_default_str()
      ->check(not_negative());
  cmd->add_option("--http-threads", o->http_threads, "requests handled at once")->capture_default_str();
  cmd->add_option("--max-connections", o->max_connections, "client connections open at once (more: 503)")
      ->capture_default_str();
  cmd->add_option("--header-timeout", o->header_timeout_s, "seconds for a request's headers, from its first byte")
      ->capture_default_str();
  cmd->add_option("--body-timeout", o->body_timeout_s, "seconds for a request's body, after its headers")
      ->capture_default_str();
  cmd->add_option("--idle-timeout", o->idle_timeout_s, "seconds a keep-alive connection may wait for its next request")
      ->capture_default_str();
  cmd->add_option("--write-timeout", o->write_timeout_s, "seconds a client may take to read its answer")
      ->capture_default_str();
  cmd->add_flag("--int8", o->int8, "quantize the encoder's linear layers to int8 at load (as `bertune quantize`)");
  cmd->add_flag("--allow-untrained-head", o->allow_untrained_head,
                "serve a model without a trained classifier head (a random one is made: answers are meaningless)");
  cmd->add_option("--label-names", *label_names, "comma-separated label names (override config.json's id2label)");
  auto precision = std::make_shared<std::string>();
  cmd->add_option("--precision", *precision, train::find_train_option("precision")->help)->type_name("fp32|bf16");
  cmd->callback([o, label_names, precision] {
    o->precision = train::resolve_precision(kernels::Device::CPU, parse_precision_flag(*precision));
    o->label_names = split_list(*label_names);
    train::require_inference_memory(o->model, o->max_batch, o->max_length, /*metrics=*/false, "serve");
    serve::run_server(*o);
  });
}

}  // namespace bertune::cli
