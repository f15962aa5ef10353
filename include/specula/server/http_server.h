// `specula serve`: the OpenAI-compatible HTTP/1.1 front end over a Scheduler.
//   POST /v1/completions, POST /v1/chat/completions (stream: true -> Server-Sent Events)
//   GET /v1/models, GET /health, GET /metrics (Prometheus text)
//
// One I/O thread serves every connection (Boost.Beast on Asio coroutines), so slow or idle clients
// cost a socket and a few kilobytes, never a thread. Every phase of a connection has a deadline,
// the number of connections is capped (idle and slow ones are evicted first), bodies are checked
// against the size limit and the API key before they are read, and the prompt is tokenized on a
// separate thread so that no request holds up the others.
#pragma once

#include <map>
#include <memory>
#include <string>

#include "specula/base/status.h"
#include "specula/formats/generation_config.h"
#include "specula/server/scheduler.h"
#include "specula/tokenizer/tokenizer.h"

namespace specula::server {

struct ServerConfig {
  std::string host = "127.0.0.1";
  int port = 8080;              // 0: any free port (printed at startup)
  std::string api_key = "";     // non-empty: /v1/* and /metrics need "Authorization: Bearer KEY"
  std::string model_name = "";  // reported by /v1/models and in responses
  size_t max_body_bytes = 1 << 20;    // larger bodies get 413
  bool have_drafter = false;          // speculative decoding by default (the default drafter)
  int draft_max = 3;                  // per-request default
  std::string draft_policy = "auto";  // fixed | adaptive | auto (see MakeDraftPolicy)

  // Connections beyond this evict the longest-waiting idle or unfinished one; with none, 503.
  int max_connections = 256;
  size_t max_header_bytes = 16 << 10;  // larger headers get 431
  double idle_timeout_s = 30;          // a kept-alive connection with no request is closed
  double read_timeout_s = 15;          // a request's header and body, from its first byte
  double write_timeout_s = 30;         // each response write (a client that stops reading)
  double shutdown_timeout_s = 30;      // running requests' time to finish after Shutdown()
};

struct ServerDeps {
  const Tokenizer* tokenizer = nullptr;
  const GenerationConfig* generation = nullptr;
  int vocab_size = 0;
  Scheduler* scheduler = nullptr;
  // The drafters a request may name ("drafter"); the scheduler's own serves requests naming none.
  std::map<std::string, Drafter*> drafters;
};

class HttpServer {
 public:
  HttpServer(const ServerConfig& config, const ServerDeps& deps);
  ~HttpServer();

  // Binds the socket; returns the bound port (useful with port 0).
  Result<int> Bind();
  // Serves until Shutdown() has finished; returns once every request has ended.
  void Run();
  // Closes the listener and every connection not inside a request, answers new completions on
  // open connections with 503, lets running requests finish for up to shutdown_timeout_s, then
  // ends the rest with an error. Returns at once; safe to call from any thread (again: no effect).
  void Shutdown();

  struct Impl;

 private:
  std::unique_ptr<Impl> impl_;
};

}  // namespace specula::server
