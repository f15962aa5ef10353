// `specula serve`: the OpenAI-compatible HTTP front end (cpp-httplib) over a Scheduler.
//   POST /v1/completions, POST /v1/chat/completions (stream: true -> Server-Sent Events)
//   GET /v1/models, GET /health, GET /metrics (Prometheus text)
#pragma once

#include <atomic>
#include <memory>
#include <string>

#include "specula/base/status.h"
#include "specula/formats/generation_config.h"
#include "specula/server/scheduler.h"
#include "specula/tokenizer/tokenizer.h"

namespace specula::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;         // 0: any free port (printed at startup)
  std::string api_key;     // non-empty: /v1/* and /metrics need "Authorization: Bearer KEY"
  std::string model_name;  // reported by /v1/models and in responses
  size_t max_body_bytes = 1 << 20;  // larger bodies get 413
  bool have_drafter = false;        // speculative decoding available
  int draft_max = 3;                // per-request default
};

struct ServerDeps {
  const Tokenizer* tokenizer = nullptr;
  const GenerationConfig* generation = nullptr;
  int vocab_size = 0;
  Scheduler* scheduler = nullptr;
};

class HttpServer {
 public:
  HttpServer(const ServerConfig& config, const ServerDeps& deps);
  ~HttpServer();

  // Binds the socket; returns the bound port (useful with port 0).
  Result<int> Bind();
  // Serves until Shutdown(); returns after in-flight requests have been answered.
  void Run();
  // Stops accepting new completions (503), lets running ones finish, then stops the listener.
  // Safe to call from any thread, once.
  void Shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace specula::server
