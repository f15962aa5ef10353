#include "specula/server/http_server.h"

#include <httplib.h>

#include <algorithm>
#include <chrono>
#include <sstream>
#include <thread>

#include "specula/server/openai_api.h"

namespace specula::server {

namespace {

void SendJson(httplib::Response& res, int status, const std::string& body) {
  res.status = status;
  res.set_content(body, "application/json");
}

void SendError(httplib::Response& res, const ApiError& e) { SendJson(res, e.status, ErrorBody(e)); }

const char* FinishReason(StopReason r) { return r == StopReason::kStopToken ? "stop" : "length"; }

// Constant-time comparison: the key must not leak through response timing.
bool SameSecret(const std::string& a, const std::string& b) {
  unsigned char diff = a.size() == b.size() ? 0 : 1;
  for (size_t i = 0; i < a.size(); ++i)
    diff |= static_cast<unsigned char>(a[i] ^ b[i % std::max<size_t>(1, b.size())]);
  return diff == 0;
}

}  // namespace

struct HttpServer::Impl {
  ServerConfig config;
  ServerDeps deps;
  httplib::Server svr;
  std::atomic<bool> draining{false};
  std::atomic<long> next_id{0};

  bool Authorized(const httplib::Request& req, httplib::Response& res) {
    if (config.api_key.empty()) return true;
    const std::string h = req.get_header_value("Authorization");
    const std::string prefix = "Bearer ";
    if (h.rfind(prefix, 0) == 0 && SameSecret(h.substr(prefix.size()), config.api_key)) return true;
    SendError(res, {.status = 401,
                    .message = "invalid or missing API key (Authorization: Bearer ...)",
                    .param = "",
                    .type = "authentication_error"});
    return false;
  }

  // Turns a parsed request into a job; errors name the field.
  std::optional<ApiError> MakeJob(const CompletionRequest& cr, Job* job) {
    const Tokenizer& tok = *deps.tokenizer;
    const GenerationConfig& gen = *deps.generation;
    const int context = deps.scheduler->options().context;
    std::vector<int>& prompt = job->prompt;
    std::vector<int> stop_ids = gen.eos_token_ids;
    if (cr.endpoint == Endpoint::kChat) {
      prompt = tok.Encode(RenderGemma4Chat(cr.messages, /*add_generation_prompt=*/true));
      if (const std::optional<int> eot = tok.TokenId("<turn|>")) stop_ids.push_back(*eot);
    } else if (!cr.prompt_ids.empty()) {
      prompt = cr.prompt_ids;
      for (int id : prompt) {
        if (id >= deps.vocab_size) {
          return ApiError{.message = "prompt token id " + std::to_string(id) +
                                     " is out of range [0, " + std::to_string(deps.vocab_size) +
                                     ")",
                          .param = "prompt"};
        }
      }
    } else {
      prompt.push_back(gen.bos_token_id);
      const std::vector<int> body = tok.Encode(cr.prompt);
      prompt.insert(prompt.end(), body.begin(), body.end());
    }
    const std::string param = cr.endpoint == Endpoint::kChat ? "messages" : "prompt";
    const int n = static_cast<int>(prompt.size());
    if (n >= context) {
      return ApiError{.message = "the prompt has " + std::to_string(n) +
                                 " tokens; the context is " + std::to_string(context),
                      .param = param};
    }
    // OpenAI's completions default is 16 tokens; chat runs to a stop or the end of the context.
    const int max_tokens = cr.max_tokens.value_or(
        cr.endpoint == Endpoint::kChat ? context - n : std::min(16, context - n));
    if (max_tokens > context - n) {
      return ApiError{.message = "max_tokens " + std::to_string(max_tokens) + " + the prompt's " +
                                 std::to_string(n) + " tokens exceed the context of " +
                                 std::to_string(context),
                      .param = "max_tokens"};
    }
    GenerateOptions& base = job->options.base;
    base.max_new_tokens = max_tokens;
    base.stop_ids = stop_ids;
    // Sampling defaults come from generation_config.json; request fields override them.
    SamplingParams& sp = base.sampling;
    if (gen.do_sample) {
      sp.temperature = gen.temperature.value_or(1.0f);
      sp.top_k = gen.top_k.value_or(0);
      sp.top_p = gen.top_p.value_or(1.0f);
      sp.min_p = gen.min_p.value_or(0.0f);
    }
    if (cr.temperature) sp.temperature = *cr.temperature;
    if (cr.top_k) sp.top_k = *cr.top_k;
    if (cr.top_p) sp.top_p = *cr.top_p;
    if (cr.min_p) sp.min_p = *cr.min_p;
    sp.seed = cr.seed.value_or(
        static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
    if (Status s = sp.Validate(); !s.ok()) return ApiError{.message = s.message(), .param = ""};
    const bool spec = cr.speculative.value_or(config.have_drafter);
    if (spec && !config.have_drafter) {
      return ApiError{
          .message = "speculative decoding needs a drafter: start the server with -md DIR",
          .param = "speculative"};
    }
    job->options.draft_max = spec ? cr.draft_max.value_or(config.draft_max) : 0;
    return std::nullopt;
  }

  struct Outcome {
    std::string finish_reason;
    CompletionUsage usage;
    Json speculative;
    bool client_gone = false;
  };

  // Follows a submitted job: decodes its tokens, applies stop strings, hands text to `emit` (which
  // returns false when the client has gone), and waits for the engine to release the sequence.
  Outcome Follow(Job& job, const CompletionRequest& cr,
                 const std::function<bool(const std::string&)>& emit) {
    StreamDecoder decoder(*deps.tokenizer);
    StopMatcher stops(cr.stop);
    Outcome o;
    size_t seen = 0, counted = 0;
    bool stopped = false;
    const std::vector<int>& stop_ids = job.options.base.stop_ids;
    for (;;) {
      std::vector<int> fresh;
      bool done;
      {
        std::unique_lock<std::mutex> lock(job.mu);
        job.cv.wait(lock, [&] { return job.done || job.tokens.size() > seen; });
        fresh.assign(job.tokens.begin() + static_cast<long>(seen), job.tokens.end());
        seen = job.tokens.size();
        done = job.done;
      }
      std::string text;
      for (int t : fresh) {
        if (stopped) break;
        ++counted;
        if (std::find(stop_ids.begin(), stop_ids.end(), t) != stop_ids.end())
          continue;  // not shown
        text += stops.Push(decoder.Push(t));
        stopped = stops.stopped();
      }
      if (done && !stopped) text += stops.Push(decoder.Flush()) + stops.Flush();
      if (!text.empty() && !o.client_gone && !emit(text)) o.client_gone = true;
      if ((stopped || o.client_gone) && !job.cancel.load()) job.cancel.store(true);
      if (done) break;
    }
    o.finish_reason = stopped ? "stop" : FinishReason(job.result.gen.stop);
    o.usage = {
        .prompt_tokens = static_cast<int>(job.prompt.size()),
        .completion_tokens = static_cast<int>(stopped ? counted : job.result.gen.ids.size())};
    o.speculative =
        SpeculativeBlock(job.options.draft_max > 0, job.options.draft_max, job.result.spec);
    return o;
  }

  void Complete(const httplib::Request& req, httplib::Response& res, Endpoint endpoint) {
    if (!Authorized(req, res)) return;
    auto cr = std::make_shared<CompletionRequest>();
    if (auto e = ParseCompletionRequest(req.body, endpoint, cr.get())) return SendError(res, *e);
    auto job = std::make_shared<Job>();
    if (auto e = MakeJob(*cr, job.get())) return SendError(res, *e);
    if (draining.load() || !deps.scheduler->Submit(job)) {
      const std::string why = draining.load()
                                  ? "the server is shutting down"
                                  : "the server is busy: the request queue is full, retry later";
      return SendError(res, {.status = 503, .message = why, .param = "", .type = "server_error"});
    }
    CompletionInfo info{
        .id = (endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++),
        .model = config.model_name,
        .created = static_cast<long>(std::time(nullptr)),
        .endpoint = endpoint};
    if (!cr->stream) {
      std::string text;
      const Outcome o = Follow(*job, *cr, [&](const std::string& t) {
        text += t;
        return true;
      });
      if (!job->error.empty())
        return SendError(
            res, {.status = 500, .message = job->error, .param = "", .type = "server_error"});
      return SendJson(
          res, 200, Dump(CompletionResponse(info, text, o.finish_reason, o.usage, o.speculative)));
    }
    res.set_header("Cache-Control", "no-cache");
    res.set_chunked_content_provider(
        "text/event-stream",
        [this, job, cr, info](size_t, httplib::DataSink& sink) {
          auto write = [&](const std::string& s) { return sink.write(s.data(), s.size()); };
          // The chat stream opens with the assistant role (a failed write shows up below too).
          if (info.endpoint == Endpoint::kChat)
            write(StreamChunk(info, "", nullptr, /*first=*/true));
          const Outcome o = Follow(*job, *cr, [&](const std::string& t) {
            return write(StreamChunk(info, t, nullptr, false));
          });
          if (o.client_gone) return false;
          write(StreamFinalChunk(info, o.finish_reason, o.usage, o.speculative));
          if (cr->include_usage) write(StreamUsageChunk(info, o.usage));
          write(std::string(kStreamDone));
          sink.done();
          return true;
        },
        [job](bool success) {
          if (!success) job->cancel.store(true);  // the connection broke: free the sequence
        });
  }

  std::string MetricsText() const {
    const MetricsSnapshot m = deps.scheduler->Metrics();
    std::ostringstream o;
    auto metric = [&](const char* name, const char* type, const char* help, double v) {
      o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
        << name << " " << v << "\n";
    };
    metric("specula_requests_total", "counter", "Completion requests accepted.",
           static_cast<double>(m.requests));
    metric("specula_generated_tokens_total", "counter", "Tokens generated.",
           static_cast<double>(m.generated));
    metric("specula_spec_draft_tokens_total", "counter", "Draft tokens proposed.",
           static_cast<double>(m.drafted));
    metric("specula_spec_accepted_tokens_total", "counter", "Draft tokens accepted.",
           static_cast<double>(m.accepted));
    o << "# HELP specula_spec_accepted_tokens_per_pos_total Draft tokens accepted at each draft "
         "position (1 = first).\n"
      << "# TYPE specula_spec_accepted_tokens_per_pos_total counter\n";
    for (size_t i = 0; i < m.accepted_per_position.size(); ++i) {
      o << "specula_spec_accepted_tokens_per_pos_total{position=\"" << i + 1 << "\"} "
        << m.accepted_per_position[i] << "\n";
    }
    metric("specula_target_forwards_total", "counter", "Target model forward passes.",
           static_cast<double>(m.target_forwards));
    metric("specula_queue_depth", "gauge", "Requests waiting for a decoding slot.", m.queue_depth);
    metric("specula_running_sequences", "gauge", "Sequences decoding.", m.running);
    metric("specula_decode_tokens_per_second", "gauge",
           "Generated tokens per second over the last seconds.", m.decode_tok_per_s);
    return o.str();
  }

  void Routes() {
    svr.set_payload_max_length(config.max_body_bytes);
    svr.Post("/v1/completions", [this](const httplib::Request& q, httplib::Response& r) {
      Complete(q, r, Endpoint::kCompletions);
    });
    svr.Post("/v1/chat/completions", [this](const httplib::Request& q, httplib::Response& r) {
      Complete(q, r, Endpoint::kChat);
    });
    svr.Get("/v1/models", [this](const httplib::Request& q, httplib::Response& r) {
      if (!Authorized(q, r)) return;
      const Json model = {{"id", config.model_name},
                          {"object", "model"},
                          {"created", 0},
                          {"owned_by", "specula"},
                          {"speculative", config.have_drafter}};
      SendJson(r, 200, Dump(Json{{"object", "list"}, {"data", Json::array({model})}}));
    });
    svr.Get("/health", [this](const httplib::Request&, httplib::Response& r) {
      if (draining.load()) return SendJson(r, 503, Json{{"status", "shutting down"}}.dump());
      SendJson(r, 200, Json{{"status", "ok"}}.dump());
    });
    svr.Get("/metrics", [this](const httplib::Request& q, httplib::Response& r) {
      if (!Authorized(q, r)) return;
      r.set_content(MetricsText(), "text/plain; version=0.0.4");
    });
    // Statuses httplib sets itself (404, 413, ...) get an OpenAI-style body too.
    svr.set_error_handler([this](const httplib::Request& q, httplib::Response& r) {
      if (!r.body.empty()) return;
      std::string msg = "HTTP " + std::to_string(r.status);
      if (r.status == 404) msg = "no route for " + q.method + " " + q.path;
      if (r.status == 413)
        msg = "the request body exceeds " + std::to_string(config.max_body_bytes) + " bytes";
      SendError(r, {.status = r.status,
                    .message = msg,
                    .param = "",
                    .type = r.status >= 500 ? "server_error" : "invalid_request_error"});
    });
    svr.set_exception_handler(
        [](const httplib::Request&, httplib::Response& r, std::exception_ptr ep) {
          std::string msg = "internal error";
          try {
            std::rethrow_exception(ep);
          } catch (const std::exception& e) {
            msg = e.what();
          } catch (...) {
          }
          SendError(r, {.status = 500, .message = msg, .param = "", .type = "server_error"});
        });
    // Every queued request holds an HTTP worker while it waits, so the pool must be larger than
    // the scheduler's capacity (httplib's API takes ownership of a raw pointer here).
    const size_t workers = static_cast<size_t>(deps.scheduler->options().parallel +
                                               deps.scheduler->options().queue_max + 4);
    svr.new_task_queue = [workers] { return new httplib::ThreadPool(workers); };
  }
};

HttpServer::HttpServer(const ServerConfig& config, const ServerDeps& deps)
    : impl_(std::make_unique<Impl>()) {
  impl_->config = config;
  impl_->deps = deps;
  impl_->Routes();
}

HttpServer::~HttpServer() = default;

Result<int> HttpServer::Bind() {
  Impl& m = *impl_;
  const int port = m.config.port == 0
                       ? m.svr.bind_to_any_port(m.config.host)
                       : (m.svr.bind_to_port(m.config.host, m.config.port) ? m.config.port : -1);
  if (port <= 0)
    return Error("--host/--port: cannot listen on " + m.config.host + ":" +
                 std::to_string(m.config.port) + " (in use, or not an address of this machine)");
  return port;
}

void HttpServer::Run() { impl_->svr.listen_after_bind(); }

void HttpServer::Shutdown() {
  impl_->draining.store(true);
  impl_->deps.scheduler->Drain();
  // A signal can arrive between Bind() and Run(); stop() only stops a running listener.
  while (!impl_->svr.is_running()) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  impl_->svr.stop();
}

}  // namespace specula::server
