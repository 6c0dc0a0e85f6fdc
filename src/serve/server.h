#pragma once
// `bertune serve`: an HTTP/1.1 server (serve/http.h) around one classifier with dynamic
// batching. Endpoints:
//   POST /v1/classify  {"texts": [..]} | {"text": ".."}
//        -> {"predictions": [{"label", "label_name", "probs", "logits"}], "model", "elapsed_ms"}
//   POST /             the Hugging Face Inference API: {"inputs": ".." | [..], "parameters":
//        {"top_k", "function_to_apply"}} -> [[{"label", "score"}, ...], ...] (one list per
//        input, best score first; serve/hf_api.h)
//   GET  /health       200 once the model is loaded (503 while loading or shutting down)
//   GET  /metrics      Prometheus text format
// Client errors answer {"error": {"kind", "message"}} with a 4xx status and never stop
// the server; a wrong method on a known path is 405 with an Allow header. SIGTERM /
// SIGINT: stop accepting, drop idle and half-sent requests, finish what is in flight,
// return 0.
#include <cstddef>
#include <string>
#include <vector>

#include "kernels/ops.h"

namespace bertune::serve {

struct ServeOptions {
  std::string model, tokenizer;
  std::string host = "127.0.0.1";
  int port = 8080;  // 0: any free port (printed on stderr)
  int threads = 0;  // compute threads of the model (0: all cores)
  int max_batch = 64;
  double max_wait_ms = 5;
  // "arriving": wait for a fuller batch only while other requests are being read (a lone
  // client is never delayed); "always": wait out max_wait_ms unless the batch fills.
  std::string batch_wait = "arriving";
  int max_length = 128;
  bool max_length_given = false;  // past the model's positions: an error (else lowered to them)
  int max_texts = 256;                // texts in one request
  size_t max_body_bytes = 1 << 20;    // request body
  int http_threads = 128;             // requests handled at once
  int max_connections = 512;          // open at once (more: 503)
  // Seconds: a request's headers from its first byte, its body after the headers, an
  // idle keep-alive connection, a client taking its answer. A slower client is dropped.
  double header_timeout_s = 10, body_timeout_s = 30, idle_timeout_s = 15, write_timeout_s = 30;
  std::vector<std::string> label_names;  // overrides config.json's id2label
  bool int8 = false;                     // quantize an fp32 model's encoder linears at load
  // What the GEMMs multiply in (--precision; bf16 needs avx512_bf16 or AMX-BF16 and oneDNN).
  kernels::Precision precision = kernels::Precision::FP32;
  bool allow_untrained_head = false;     // serve a model without a trained head (else: Error)
};

// Runs until SIGTERM / SIGINT. Throws Error for bad options or a model that cannot load.
int run_server(const ServeOptions& options);

}  // namespace bertune::serve
