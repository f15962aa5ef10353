// `specula serve`: an OpenAI-compatible HTTP server with continuous batching and speculative
// decoding. SIGTERM/SIGINT stop accepting requests and let the running ones finish for up to
// --shutdown-timeout seconds (then end them with an error), then exit 0; a second signal exits at
// once with status 1.
#include <atomic>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <map>
#include <thread>

#include "specula/base/thread_pool.h"
#include "specula/formats/generation_config.h"
#include "specula/models/gemma4.h"
#include "specula/models/gemma4_assistant.h"
#include "specula/server/http_server.h"
#include "specula/server/openai_api.h"
#include "specula/spec/mtp_drafter.h"
#include "specula/tokenizer/tokenizer.h"
#include "specula/tokenizer/tokenizer_gguf.h"
#include "src/cli/commands.h"
#include "src/cli/drafters.h"

namespace specula::cli {
namespace {

struct ServeFlags {
  std::string model, draft, host = "127.0.0.1", api_key, alias;
  int port = 8080;
  int parallel = 4;
  int queue = 32;
  int threads = 0;
  int ctx_size = 0;
  int draft_max = 3;
  std::string draft_policy = "auto";
  DrafterFlags drafter;
  int prefill_rows = 256;
  long cache_ram_mb = 1024;
  size_t max_body = size_t{1} << 20;
  int max_connections = 256;
  double idle_timeout = 30, read_timeout = 15, write_timeout = 30, shutdown_timeout = 30;
};

Status CheckSeconds(const char* flag, double v) {
  if (!(v > 0 && v <= 86400))
    return Error(std::string(flag) + ": must be in (0, 86400] seconds (got " + std::to_string(v) +
                 ")");
  return OkStatus();
}

Status CheckFlags(const ServeFlags& f) {
  if (f.port < 0 || f.port > 65535)
    return Error("--port: must be in [0, 65535] (got " + std::to_string(f.port) + ")");
  if (f.parallel < 1 || f.parallel > 256)
    return Error("--parallel: must be in [1, 256] (got " + std::to_string(f.parallel) + ")");
  if (f.queue < 0 || f.queue > 4096)
    return Error("--queue: must be in [0, 4096] (got " + std::to_string(f.queue) + ")");
  if (Status s = CheckThreadsAndContext(f.threads, f.ctx_size); !s.ok()) return s;
  if (f.draft_max < 1 || f.draft_max > server::kMaxDraftMax) {
    return Error("--draft-max: must be in [1, " + std::to_string(server::kMaxDraftMax) + "] (got " +
                 std::to_string(f.draft_max) + ")");
  }
  if (f.prefill_rows < 1) return Error("--prefill-rows: must be >= 1");
  if (f.cache_ram_mb < 0 || f.cache_ram_mb > (1L << 30))
    return Error("--cache-ram: must be in [0, 2^30] MB (got " + std::to_string(f.cache_ram_mb) +
                 ")");
  if (Result<std::string> kind = ResolveDrafter(f.drafter, !f.draft.empty()); !kind.ok())
    return kind.status();
  if (Result<std::unique_ptr<DraftPolicy>> p = MakeDraftPolicy(f.draft_policy, 1); !p.ok())
    return p.status();
  if (f.max_connections < 1 || f.max_connections > 65536) {
    return Error("--max-connections: must be in [1, 65536] (got " +
                 std::to_string(f.max_connections) + ")");
  }
  for (const auto& [flag, v] : {std::pair{"--idle-timeout", f.idle_timeout},
                                {"--read-timeout", f.read_timeout},
                                {"--write-timeout", f.write_timeout},
                                {"--shutdown-timeout", f.shutdown_timeout}}) {
    if (Status s = CheckSeconds(flag, v); !s.ok()) return s;
  }
  return OkStatus();
}

// What the server answers with: the target, its generation defaults and tokenizer, and with
// --draft the assistant and its drafter.
struct Loaded {
  std::unique_ptr<Gemma4Model> model;
  GenerationConfig generation;
  std::unique_ptr<Tokenizer> tokenizer;
  std::unique_ptr<Gemma4Assistant> assistant;
  // The drafters requests may name: lookup always, model, hybrid and tree with an assistant.
  std::unique_ptr<MtpDrafter> model_drafter;
  std::unique_ptr<NgramDrafter> lookup_drafter;
  std::unique_ptr<HybridDrafter> hybrid_drafter;
  std::unique_ptr<MtpTreeDrafter> tree_drafter;
  std::map<std::string, Drafter*> drafters;
  Drafter* default_drafter = nullptr;  // --drafter (model with -md); null: plain by default
};

Result<Loaded> Load(const ServeFlags& f) {
  Loaded l;
  Result<Target> target = LoadTarget(f.model, /*with_tokenizer=*/true);
  if (!target.ok()) return target.status();
  l.model = std::move(target->model);
  l.generation = std::move(target->generation);
  l.tokenizer = std::move(target->tokenizer);
  Result<std::unique_ptr<Gemma4Assistant>> assistant = LoadAssistant(f.draft, *l.model);
  if (!assistant.ok()) return assistant.status();
  l.assistant = std::move(*assistant);
  Result<std::string> kind = ResolveDrafter(f.drafter, l.assistant != nullptr);
  if (!kind.ok()) return kind.status();
  const NgramOptions ngram{.min_n = f.drafter.lookup_min, .max_n = f.drafter.lookup_max};
  l.lookup_drafter = std::make_unique<NgramDrafter>(ngram);
  l.drafters["lookup"] = l.lookup_drafter.get();
  if (l.assistant) {
    l.model_drafter = std::make_unique<MtpDrafter>(*l.assistant);
    HybridOptions hybrid;
    hybrid.ngram = ngram;
    l.hybrid_drafter = std::make_unique<HybridDrafter>(*l.model_drafter, hybrid);
    l.drafters["model"] = l.model_drafter.get();
    l.drafters["hybrid"] = l.hybrid_drafter.get();
    l.tree_drafter = std::make_unique<MtpTreeDrafter>(*l.assistant, f.drafter.tree);
    l.drafters["tree"] = l.tree_drafter.get();
  }
  if (!kind->empty()) l.default_drafter = l.drafters.at(*kind);
  return l;
}

// Signals are taken by one thread (sigwait), so every thread started after this inherits the mask.
sigset_t BlockStopSignals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);  // a client that hangs up must not kill the server
  return signals;
}

// --alias, else the checkpoint's directory name (empty for a path such as "/").
std::string ModelName(const ServeFlags& f) {
  return !f.alias.empty() ? f.alias
                          : std::filesystem::path(f.model).lexically_normal().filename().string();
}

server::ServerConfig ServerConfigOf(const ServeFlags& f, const std::string& name,
                                    bool have_drafter) {
  return {.host = f.host,
          .port = f.port,
          .api_key = f.api_key,
          .model_name = name.empty() ? "gemma4" : name,
          .max_body_bytes = f.max_body,
          .have_drafter = have_drafter,
          .draft_max = f.draft_max,
          .draft_policy = f.draft_policy,
          .max_connections = f.max_connections,
          .idle_timeout_s = f.idle_timeout,
          .read_timeout_s = f.read_timeout,
          .write_timeout_s = f.write_timeout,
          .shutdown_timeout_s = f.shutdown_timeout};
}

// Runs the server until it stops. The first signal starts a graceful shutdown; a second one ends
// the process at once. The waiter polls so that it can be joined when the server stops without a
// signal.
void ServeUntilStopped(server::HttpServer& http, const sigset_t& signals, double shutdown_timeout) {
  std::atomic<bool> stopped{false};
  std::thread waiter([&] {
    const timespec poll{.tv_sec = 0, .tv_nsec = 100'000'000};
    bool shutting_down = false;
    while (!stopped.load()) {
      const int sig = sigtimedwait(&signals, nullptr, &poll);
      if (sig < 0) continue;
      if (shutting_down) {
        std::fprintf(stderr, "specula serve: second signal: exiting now\n");
        std::_Exit(1);
      }
      std::fprintf(stderr,
                   "specula serve: %s: finishing running requests (up to %.0f s; signal again to "
                   "exit now)\n",
                   sig == SIGTERM ? "SIGTERM" : "SIGINT", shutdown_timeout);
      shutting_down = true;
      http.Shutdown();
    }
  });
  http.Run();
  stopped.store(true);
  waiter.join();
}

int Run(const ServeFlags& f) {
  if (Status s = CheckFlags(f); !s.ok()) return Fail(s.message());
  Result<Loaded> loaded = Load(f);
  if (!loaded.ok()) return Fail(loaded.status().message());
  Gemma4Model& model = *loaded->model;
  Drafter* drafter = loaded->default_drafter;
  const Gemma4Config& cfg = model.config();
  const int context = ContextSize(f.ctx_size, cfg.max_position_embeddings);

  const sigset_t signals = BlockStopSignals();
  ThreadPool pool(ThreadCount(f.threads));
  server::Scheduler scheduler(model, drafter, pool,
                              {.parallel = f.parallel,
                               .queue_max = f.queue,
                               .context = context,
                               .prefill_rows = f.prefill_rows,
                               .cache_bytes = static_cast<size_t>(f.cache_ram_mb) << 20});
  const std::string name = ModelName(f);
  server::HttpServer http(ServerConfigOf(f, name, drafter != nullptr),
                          {.tokenizer = loaded->tokenizer.get(),
                           .generation = &loaded->generation,
                           .vocab_size = cfg.vocab_size,
                           .scheduler = &scheduler,
                           .drafters = loaded->drafters});
  Result<int> port = http.Bind();
  if (!port.ok()) return Fail(port.status().message());
  std::fprintf(stderr,
               "specula serve: listening on http://%s:%d (model %s%s, parallel %d, context %d, "
               "threads %d)\n",
               f.host.c_str(), *port, name.c_str(), drafter ? ", speculative" : "", f.parallel,
               context, pool.num_threads());
  std::fflush(stderr);
  ServeUntilStopped(http, signals, f.shutdown_timeout);
  std::fprintf(stderr, "specula serve: stopped\n");
  return 0;
}

}  // namespace

Runner AddServe(CLI::App& app) {
  auto f = std::make_shared<ServeFlags>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "OpenAI-compatible HTTP server (continuous batching, speculative decoding)");
  cmd->add_option("-m,--model", f->model, "target checkpoint directory")->required();
  cmd->add_option("--draft", f->draft,
                  "MTP assistant checkpoint directory (also -md); enables speculative decoding");
  AddDrafterFlags(*cmd, f->drafter);
  cmd->add_option("--host", f->host, "address to bind (default 127.0.0.1: this machine only)");
  cmd->add_option("--port", f->port, "port (default 8080; 0 = any free port, printed at startup)");
  cmd->add_option("--parallel", f->parallel, "sequences decoded at once (default 4)");
  cmd->add_option("--queue", f->queue,
                  "requests that may wait beyond --parallel; more get 503 (default 32)");
  cmd->add_option("--api-key", f->api_key, "require 'Authorization: Bearer KEY'");
  cmd->add_option("--alias", f->alias,
                  "model name reported to clients (default: the directory name)");
  cmd->add_option("-t,--threads", f->threads, "compute threads (default: physical cores)");
  cmd->add_option("-c,--ctx-size", f->ctx_size,
                  "context per sequence (default min(4096, model maximum))");
  cmd->add_option("--draft-max", f->draft_max,
                  "longest draft per round, the default of a request's draft_max (default 3)");
  cmd->add_option("--draft-policy", f->draft_policy,
                  "fixed (always draft_max) | adaptive | auto (default: the K up to draft_max that "
                  "maximises expected tokens per second, from the engine's measured pass costs)");
  cmd->add_option("--prefill-rows", f->prefill_rows,
                  "prompt rows per round shared by new requests (default 256)");
  cmd->add_option("--cache-ram", f->cache_ram_mb,
                  "prompt cache copies in MB: a request resumes the longest prompt prefix seen "
                  "before (least recently used out first; 0 = no copies, each slot still resumes "
                  "its own last conversation; default 1024)");
  cmd->add_option("--max-body", f->max_body,
                  "largest request body in bytes; larger get 413 (default 1 MiB)");
  cmd->add_option("--max-connections", f->max_connections,
                  "open client connections; beyond, idle or slow ones are closed first (default "
                  "256)");
  cmd->add_option("--idle-timeout", f->idle_timeout,
                  "seconds a kept-alive connection may wait for its next request (default 30)");
  cmd->add_option("--read-timeout", f->read_timeout,
                  "seconds for a request's header and body to arrive (default 15)");
  cmd->add_option("--write-timeout", f->write_timeout,
                  "seconds for each response write; slower readers are cut off (default 30)");
  cmd->add_option("--shutdown-timeout", f->shutdown_timeout,
                  "seconds running requests get after SIGTERM before they end with an error "
                  "(default 30)");
  return [f] {
    if (f->model.empty()) return Fail("serve: -m/--model is required");
    return Run(*f);
  };
}

}  // namespace specula::cli
