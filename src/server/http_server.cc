#include "specula/server/http_server.h"

#include <cstdio>
#include <list>
#include <sstream>

#include "specula/base/sysinfo.h"
#include "src/server/completion.h"
#include "src/server/http_connection.h"
#include "src/server/webchat.h"

namespace specula::server {
namespace {

constexpr size_t kReadChunk = 8 << 10;

// What reading a request gave: a request, a refusal to send before closing (bad syntax, no route,
// no key, too large, too slow), or neither (the client left). A refusal ends the connection, since
// an unread body would be taken for the next request.
struct Incoming {
  std::optional<Request> request;
  std::optional<ApiError> refusal;
};

// Runs on the preparation thread (a coroutine so that co_spawn can put it there).
awaitable<std::optional<ApiError>> Prepare(const CompletionContext& ctx, std::string_view body,
                                           Endpoint endpoint, PreparedCompletion* out) {
  co_return PrepareCompletion(ctx, body, endpoint, out);
}

enum class Route { kNone, kPage, kScript, kHealth, kModels, kMetrics, kCompletions, kChat };

struct RouteEntry {
  std::string_view path;
  http::verb method;
  Route route;
  bool needs_key;
};
constexpr RouteEntry kRoutes[] = {
    {"/", http::verb::get, Route::kPage, false},  // the page holds no secret; its requests do
    {"/webchat.js", http::verb::get, Route::kScript, false},
    {"/health", http::verb::get, Route::kHealth, false},
    {"/v1/models", http::verb::get, Route::kModels, true},
    {"/metrics", http::verb::get, Route::kMetrics, true},
    {"/v1/completions", http::verb::post, Route::kCompletions, true},
    {"/v1/chat/completions", http::verb::post, Route::kChat, true},
};

// The path of an origin-form target ("/v1/models?x") or an absolute-form one
// ("http://host/v1/models"), which RFC 9112 §3.2.2 says a server must accept too.
std::string_view PathOf(std::string_view target) {
  if (target.starts_with("http://") || target.starts_with("https://")) {
    const size_t slash = target.find('/', target.find("//") + 2);
    target = slash == std::string_view::npos ? "/" : target.substr(slash);
  }
  return target.substr(0, target.find('?'));
}

const RouteEntry* FindRoute(std::string_view target) {
  const std::string_view path = PathOf(target);
  for (const RouteEntry& r : kRoutes) {
    if (r.path == path) return &r;
  }
  return nullptr;
}

// One line per finished request on stderr: what an operator greps for.
void LogRequest(const CompletionInfo& info, Job& job, int delivered) {
  const GenerateStats& g = job.result.gen.stats;
  const SpecStats& s = job.result.spec;
  const double seconds = NowSeconds() - job.t_submit;
  std::fprintf(stderr,
               "specula serve: %s prompt %d (cached %d) generated %d in %.3f s, drafts accepted "
               "%ld/%ld, stop %s\n",
               info.id.c_str(), g.prompt_tokens, g.cached_tokens, delivered, seconds, s.accepted,
               s.drafted, StopReasonName(job.result.gen.stop));
}

}  // namespace

struct HttpServer::Impl {
  Impl(const ServerConfig& c, const ServerDeps& d)
      : config(c),
        deps(d),
        completion{.tokenizer = d.tokenizer,
                   .generation = d.generation,
                   .vocab_size = d.vocab_size,
                   .context = d.scheduler->options().context,
                   .model_name = c.model_name,
                   .have_drafter = c.have_drafter,
                   .drafters = d.drafters,
                   .draft_max = c.draft_max,
                   .draft_policy = c.draft_policy} {}

  const ServerConfig config;
  const ServerDeps deps;
  const CompletionContext completion;
  net::io_context ioc{1};
  tcp::acceptor acceptor{ioc};
  net::thread_pool prep{1};  // tokenizes prompts, so that a long one holds up no other client
  std::atomic<bool> shutdown_requested{false};
  // The I/O thread's own state.
  std::list<Connection*> connections;
  bool draining = false;
  long next_id = 0;
  long refused_connections = 0, evicted_connections = 0, timed_out_reads = 0;

  awaitable<void> Accept();
  awaitable<void> Refuse(tcp::socket socket);
  bool EvictOne();
  awaitable<void> Serve(tcp::socket socket);
  awaitable<void> Linger(Connection& c);
  awaitable<Incoming> ReadRequest(Connection& c);
  std::optional<ApiError> ReadError(const Connection& c, beast::error_code ec);
  std::optional<ApiError> Screen(const http::request_parser<http::empty_body>& head) const;
  awaitable<bool> Send(Connection& c, Response res, double timeout_s = 0);
  awaitable<bool> Handle(Connection& c, const Request& req);
  awaitable<bool> Complete(Connection& c, const Request& req, Endpoint endpoint);
  awaitable<bool> Follow(Connection& c, Job& job, Waker& waker, CompletionText& text,
                         const CompletionInfo& info, EventStream* events, std::string* gathered);
  awaitable<void> Drain();
  awaitable<void> WaitUntilNoConnections(Clock::time_point deadline);
  std::string MetricsText() const;
  size_t OpenConnections() const {
    return static_cast<size_t>(std::count_if(connections.begin(), connections.end(), [](auto* c) {
      return c->phase != Connection::Phase::kClosing && c->phase != Connection::Phase::kClosed;
    }));
  }
};

awaitable<void> HttpServer::Impl::Accept() {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(kNoThrow);
    if (!acceptor.is_open()) co_return;
    if (ec) {  // e.g. out of file descriptors: pause instead of spinning
      net::steady_timer pause(ioc, std::chrono::milliseconds(50));
      co_await pause.async_wait(kNoThrow);
      continue;
    }
    if (OpenConnections() >= static_cast<size_t>(config.max_connections) && !EvictOne()) {
      ++refused_connections;
      net::co_spawn(ioc, Refuse(std::move(socket)), net::detached);
      continue;
    }
    net::co_spawn(ioc, Serve(std::move(socket)), net::detached);
  }
}

// Every connection is inside a request: tell the newcomer so, briefly, and close.
awaitable<void> HttpServer::Impl::Refuse(tcp::socket socket) {
  Connection c(std::move(socket));
  co_await Send(
      c,
      ErrorResponse(ServerError(503, "the server is at its connection limit, retry later"), 11,
                    false),
      2.0);
  c.Close();
}

// Frees a slot for a new connection. Slots held by running completions whose clients keep up are
// never taken; the others go in this order, each tier oldest first: a connection that has waited
// for or sat inside its request for over a second (idle or slow clients); one answering something
// other than a completion (a client pipelining cheap requests); one whose completion's write has
// been stalled over two seconds (a client that stopped reading its stream); last, a connection
// idle or reading for under a second. That last tier spares a keep-alive client between two quick
// requests, which would otherwise lose its connection, request already sent, to any newcomer.
bool HttpServer::Impl::EvictOne() {
  using Phase = Connection::Phase;
  const Clock::time_point now = Clock::now();
  const Clock::time_point stalled = now - std::chrono::seconds(2);
  const Clock::time_point settled = now - std::chrono::seconds(1);
  const auto tier = [&](const Connection& c) {
    if (c.phase == Phase::kIdle || c.phase == Phase::kReading) return c.since < settled ? 0 : 3;
    if (c.phase == Phase::kBusy && !c.completing) return 1;
    if (c.phase == Phase::kBusy && c.writing_since < stalled) return 2;
    return 4;  // not evictable
  };
  Connection* victim = nullptr;
  int victim_tier = 4;
  for (Connection* c : connections) {
    const int t = tier(*c);
    if (t < victim_tier || (t == victim_tier && t < 4 && c->since < victim->since)) {
      victim = c;
      victim_tier = t;
    }
  }
  if (victim == nullptr) return false;
  ++evicted_connections;
  if (victim->job) victim->job->cancel.store(true);
  victim->Close();
  return true;
}

awaitable<void> HttpServer::Impl::Serve(tcp::socket socket) {
  Connection c(std::move(socket));
  const auto self = connections.insert(connections.end(), &c);
  try {
    while (!draining && c.phase != Connection::Phase::kClosed) {
      Incoming in = co_await ReadRequest(c);
      if (in.refusal) {
        Response res = ErrorResponse(*in.refusal, 11, false);
        co_await Send(c, std::move(res), std::min(2.0, config.write_timeout_s));
      }
      if (!in.request) break;
      c.Enter(Connection::Phase::kBusy);
      c.completing = false;
      if (!co_await Handle(c, *in.request)) break;
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "specula serve: connection dropped: %s\n", e.what());
  }
  if (c.job) c.job->cancel.store(true);  // the engine frees the sequence at its next round
  if (c.phase != Connection::Phase::kClosed) co_await Linger(c);
  connections.erase(self);
}

// Closes our side, then reads and drops what the client still sends, for up to two seconds,
// before the socket goes: closing with unread bytes (the rest of a refused upload, a pipelined
// request) makes the kernel send a reset, and a reset makes the client's kernel discard the
// response it has not read yet. The sink is fixed, so a flood costs time, not memory.
awaitable<void> HttpServer::Impl::Linger(Connection& c) {
  c.Enter(Connection::Phase::kClosing);
  beast::error_code ignored;
  c.stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
  c.stream.expires_after(std::chrono::seconds(2));
  std::array<char, 16 << 10> sink;
  while (c.phase == Connection::Phase::kClosing) {
    const auto [ec, n] = co_await c.stream.async_read_some(net::buffer(sink), kNoThrow);
    if (ec) break;
  }
  c.Close();
}

// Refusals a request header alone decides: before a body is read, so that an unauthenticated or
// oversized upload costs the server nothing.
std::optional<ApiError> HttpServer::Impl::Screen(
    const http::request_parser<http::empty_body>& head) const {
  const http::request_header<>& h = head.get();
  // HTTP/1.1 requests carry exactly one Host (RFC 9112 §3.2).
  if (h.version() >= 11 && h.count(http::field::host) != 1)
    return ApiError{.status = 400, .message = "an HTTP/1.1 request needs exactly one Host header"};
  const RouteEntry* route = FindRoute(h.target());
  if (route == nullptr) {
    std::string target(h.target().substr(0, 200));
    if (h.target().size() > 200) target += "...";
    return ApiError{.status = 404,
                    .message = "no route for " + std::string(h.method_string()) + " " + target};
  }
  if (route->method != h.method()) {
    return ApiError{.status = 405,
                    .message = std::string(route->path) + " takes " +
                               std::string(http::to_string(route->method)),
                    .param = ""};
  }
  if (route->needs_key && !config.api_key.empty()) {
    const auto it = h.find(http::field::authorization);
    if (it == h.end() || !SameSecret(it->value(), "Bearer " + config.api_key)) {
      return ApiError{.status = 401,
                      .message = "invalid or missing API key (Authorization: Bearer ...)",
                      .param = "",
                      .type = "authentication_error"};
    }
  }
  // A transfer coding other than chunked alone is not decoded (RFC 9112 §6.1: 501).
  if (const auto te = h.find(http::field::transfer_encoding);
      te != h.end() && !(head.chunked() && beast::iequals(te->value(), "chunked"))) {
    return ApiError{.status = 501, .message = "only the chunked transfer coding is supported"};
  }
  // Routes that take no body refuse one rather than read it.
  if (route->method == http::verb::get &&
      (head.chunked() || head.content_length().value_or(0) > 0)) {
    return ApiError{.status = 400, .message = std::string(route->path) + " takes no body"};
  }
  if (head.content_length().value_or(0) > config.max_body_bytes) {
    return ApiError{
        .status = 413,
        .message = "the request body exceeds " + std::to_string(config.max_body_bytes) + " bytes"};
  }
  return std::nullopt;
}

std::optional<ApiError> HttpServer::Impl::ReadError(const Connection& c, beast::error_code ec) {
  if (ec == http::error::end_of_stream || ec == net::error::eof ||
      c.phase == Connection::Phase::kClosed)
    return std::nullopt;
  if (ec == beast::error::timeout) {
    ++timed_out_reads;
    return ApiError{.status = 408, .message = "the request did not arrive in time"};
  }
  if (ec == http::error::header_limit)
    return ApiError{.status = 431, .message = "the request header is too large"};
  if (ec == http::error::buffer_overflow) {
    return ApiError{.status = 400,
                    .message =
                        "the request holds more unparsed bytes than the server keeps (a "
                        "chunk extension or trailer without end?)"};
  }
  if (ec == http::error::body_limit) {
    return ApiError{
        .status = 413,
        .message = "the request body exceeds " + std::to_string(config.max_body_bytes) + " bytes"};
  }
  if (ec.category() == net::error::get_system_category()) return std::nullopt;  // reset, ...
  return ApiError{.status = 400, .message = "malformed HTTP request: " + ec.message()};
}

awaitable<Incoming> HttpServer::Impl::ReadRequest(Connection& c) {
  if (c.buffer.size() == 0) {
    c.Enter(Connection::Phase::kIdle);
    c.stream.expires_after(Seconds(config.idle_timeout_s));
    const auto [ec, n] = co_await c.stream.async_read_some(c.buffer.prepare(kReadChunk), kNoThrow);
    if (ec) co_return Incoming{};
    c.buffer.commit(n);
  }
  c.Enter(Connection::Phase::kReading);
  c.stream.expires_after(Seconds(config.read_timeout_s));
  http::request_parser<http::empty_body> head;
  head.header_limit(static_cast<uint32_t>(config.max_header_bytes));
  if (const auto [ec, n] = co_await http::async_read_header(c.stream, c.buffer, head, kNoThrow);
      ec) {
    co_return Incoming{.request = std::nullopt, .refusal = ReadError(c, ec)};
  }
  if (std::optional<ApiError> e = Screen(head))
    co_return Incoming{.request = std::nullopt, .refusal = std::move(e)};

  http::request_parser<http::string_body> full{std::move(head)};
  full.body_limit(config.max_body_bytes);
  if (full.get().version() >= 11 &&
      beast::iequals(full.get()[http::field::expect], "100-continue")) {
    http::response<http::empty_body> go_on{http::status::continue_, 11};
    c.stream.expires_after(Seconds(config.write_timeout_s));
    if (const auto [ec, n] = co_await http::async_write(c.stream, go_on, kNoThrow); ec)
      co_return Incoming{};
    c.stream.expires_after(Seconds(config.read_timeout_s));
  }
  if (const auto [ec, n] = co_await http::async_read(c.stream, c.buffer, full, kNoThrow); ec)
    co_return Incoming{.request = std::nullopt, .refusal = ReadError(c, ec)};
  c.stream.expires_never();
  co_return Incoming{.request = full.release(), .refusal = std::nullopt};
}

awaitable<bool> HttpServer::Impl::Send(Connection& c, Response res, double timeout_s) {
  c.stream.expires_after(Seconds(timeout_s > 0 ? timeout_s : config.write_timeout_s));
  c.writing_since = Clock::now();
  const auto [ec, n] = co_await http::async_write(c.stream, res, kNoThrow);
  c.writing_since = Clock::time_point::max();
  c.stream.expires_never();
  co_return !ec && res.keep_alive();
}

// Answers one request; true if the connection may serve another.
awaitable<bool> HttpServer::Impl::Handle(Connection& c, const Request& req) {
  const unsigned version = req.version();
  const bool keep = req.keep_alive() && !draining;
  // (Responses are built before co_await: GCC 12 cannot keep braced string literals alive across
  // a suspension in one expression.)
  const Route route = FindRoute(req.target())->route;  // Screen() made sure there is one
  switch (route) {
    case Route::kPage:
    case Route::kScript: {
      const bool page = route == Route::kPage;
      Response res = MakeResponse(
          http::status::ok, std::string(page ? WebChatPage() : WebChatScript()),
          page ? "text/html; charset=utf-8" : "text/javascript; charset=utf-8", version, keep);
      res.set("Content-Security-Policy", kWebChatPolicy);
      res.set("X-Content-Type-Options", "nosniff");
      res.set(http::field::cache_control, "no-cache");
      co_return co_await Send(c, std::move(res));
    }
    case Route::kHealth: {
      const Json status = {{"status", draining ? "shutting down" : "ok"}};
      Response res = JsonResponse(draining ? http::status::service_unavailable : http::status::ok,
                                  status, version, keep);
      co_return co_await Send(c, std::move(res));
    }
    case Route::kModels: {
      const Json model = {{"id", config.model_name},
                          {"object", "model"},
                          {"created", 0},
                          {"owned_by", "specula"},
                          {"speculative", config.have_drafter}};
      const Json list = {{"object", "list"}, {"data", Json::array({model})}};
      co_return co_await Send(c, JsonResponse(http::status::ok, list, version, keep));
    }
    case Route::kMetrics: {
      Response res =
          MakeResponse(http::status::ok, MetricsText(), "text/plain; version=0.0.4", version, keep);
      co_return co_await Send(c, std::move(res));
    }
    case Route::kCompletions:
      co_return co_await Complete(c, req, Endpoint::kCompletions);
    case Route::kChat:
      co_return co_await Complete(c, req, Endpoint::kChat);
    case Route::kNone:
      break;
  }
  co_return false;
}

// Follows a submitted job to its end. Text that is safe to show is streamed as events (`events`)
// or gathered (`gathered`). Returns false when the client went away (the job is then cancelled).
awaitable<bool> HttpServer::Impl::Follow(Connection& c, Job& job, Waker& waker,
                                         CompletionText& text, const CompletionInfo& info,
                                         EventStream* events, std::string* gathered) {
  size_t seen = 0;
  const bool marked = events != nullptr && text.marked();
  for (;;) {
    std::vector<int> fresh;
    std::vector<TokenOrigin> origins;
    bool done;
    {
      std::lock_guard<std::mutex> lock(job.mu);
      fresh.assign(job.tokens.begin() + static_cast<long>(seen), job.tokens.end());
      origins.assign(job.origins.begin() + static_cast<long>(seen), job.origins.end());
      seen = job.tokens.size();
      done = job.done;
    }
    StreamDelta delta{.token_origins = marked ? Json::array() : Json(nullptr)};
    Json* marks = marked ? &delta.token_origins : nullptr;
    delta.text = text.Add(fresh, origins, marks);
    if (done) delta.text += text.Finish(marks);
    if (text.stopped()) job.cancel.store(true);  // the rest would be cut anyway
    if (events == nullptr) {
      *gathered += delta.text;
    } else if (!delta.text.empty() || (marks && !marks->empty())) {
      const std::string chunk = StreamChunk(info, delta);
      if (!co_await events->Send(chunk)) break;
    }
    if (done) co_return true;
    if (!co_await WaitForNews(c, waker)) break;
  }
  job.cancel.store(true);
  co_return false;
}

awaitable<bool> HttpServer::Impl::Complete(Connection& c, const Request& req, Endpoint endpoint) {
  c.completing = true;
  const unsigned version = req.version();
  const bool keep = req.keep_alive();
  if (draining) {
    co_return co_await Send(
        c, ErrorResponse(ServerError(503, "the server is shutting down"), version, false));
  }
  PreparedCompletion p;
  std::optional<ApiError> error;
  try {
    error = co_await net::co_spawn(prep, Prepare(completion, req.body(), endpoint, &p),
                                   net::use_awaitable);
  } catch (const std::exception& e) {
    error = ServerError(500, std::string("preparing the request failed: ") + e.what());
  }
  if (error) co_return co_await Send(c, ErrorResponse(*error, version, keep));
  if (c.phase == Connection::Phase::kClosed) co_return false;
  Job& job = *p.job;
  const auto waker = std::make_shared<Waker>(ioc.get_executor());
  job.on_update = [waker] { waker->Notify(); };
  if (draining || !deps.scheduler->Submit(p.job)) {
    const std::string why = draining ? "the server is shutting down"
                                     : "the server is busy: the request queue is full, retry later";
    co_return co_await Send(c, ErrorResponse(ServerError(503, why), version, keep));
  }
  c.job = p.job;
  const CompletionInfo info{
      .id = (endpoint == Endpoint::kChat ? "chatcmpl-" : "cmpl-") + std::to_string(next_id++),
      .model = config.model_name,
      .created = static_cast<long>(std::time(nullptr)),
      .endpoint = endpoint};
  CompletionText text(*deps.tokenizer, p.request, job.options.base.stop_ids);
  const CompletionRequest& cr = p.request;

  // What ended the job: an engine failure or the shutdown deadline make it an error.
  const auto outcome = [&]() -> std::optional<ApiError> {
    std::lock_guard<std::mutex> lock(job.mu);
    if (!job.error.empty()) return ServerError(500, job.error);
    if (c.abandoned) return ServerError(503, "the server shut down before the request finished");
    return std::nullopt;
  };
  const auto usage = [&] {
    return CompletionUsage{
        .prompt_tokens = static_cast<int>(job.prompt.size()),
        .cached_tokens = job.result.gen.stats.cached_tokens,
        .completion_tokens = text.tokens(),
        .accepted_draft_tokens = text.draft_tokens(),
        .rejected_draft_tokens = job.result.spec.drafted - job.result.spec.accepted};
  };
  const auto report = [&] {
    return CompletionReport{.usage = usage(),
                            .speculative = SpeculativeBlock(job.options.draft_max > 0,
                                                            job.options.draft_max, job.result.spec),
                            .timings = TimingsBlock(job.result.gen.stats)};
  };

  if (!cr.stream) {
    std::string all;
    const bool present = co_await Follow(c, job, *waker, text, info, nullptr, &all);
    c.job.reset();
    if (!present) co_return false;
    if (const std::optional<ApiError> e = outcome())
      co_return co_await Send(c, ErrorResponse(*e, version, keep && !draining));
    LogRequest(info, job, text.tokens());
    const Json body =
        CompletionResponse(info, all, FinishReason(text.stopped(), job.result.gen.stop), report());
    co_return co_await Send(c, JsonResponse(http::status::ok, body, version, keep && !draining));
  }

  EventStream events(c, config.write_timeout_s, version, keep);
  if (!co_await events.Begin()) co_return false;
  // The chat stream opens with the assistant's role.
  // (Built before co_await: GCC 12 loses a braced temporary across the suspension.)
  const std::string role_chunk = StreamChunk(info, {.first = true});
  if (endpoint == Endpoint::kChat && !co_await events.Send(role_chunk)) co_return false;
  const bool present = co_await Follow(c, job, *waker, text, info, &events, nullptr);
  c.job.reset();
  if (!present) co_return false;
  if (const std::optional<ApiError> e = outcome()) {
    // An error event, then the end of the stream: no finish_reason, no [DONE].
    if (!co_await events.Send("data: " + ErrorBody(*e) + "\n\n")) co_return false;
    co_return co_await events.End() && !draining;
  }
  LogRequest(info, job, text.tokens());
  if (!co_await events.Send(
          StreamFinalChunk(info, FinishReason(text.stopped(), job.result.gen.stop), report())))
    co_return false;
  if (cr.include_usage && !co_await events.Send(StreamUsageChunk(info, usage()))) co_return false;
  if (!co_await events.Send(std::string(kStreamDone))) co_return false;
  co_return co_await events.End() && !draining;
}

awaitable<void> HttpServer::Impl::WaitUntilNoConnections(Clock::time_point deadline) {
  net::steady_timer tick(ioc);
  while (!connections.empty() && Clock::now() < deadline) {
    tick.expires_after(std::chrono::milliseconds(20));
    co_await tick.async_wait(kNoThrow);
  }
}

// Shutdown: close what waits for a request, give running requests shutdown_timeout_s, then end
// them with an error and close what is left.
awaitable<void> HttpServer::Impl::Drain() {
  draining = true;
  beast::error_code ignored;
  acceptor.close(ignored);
  for (Connection* c : connections) {
    if (c->phase != Connection::Phase::kBusy) c->Close();
  }
  co_await WaitUntilNoConnections(Clock::now() + Seconds(config.shutdown_timeout_s));
  if (!connections.empty()) {
    std::fprintf(stderr, "specula serve: %zu request(s) still running after %.0f s: ending them\n",
                 connections.size(), config.shutdown_timeout_s);
    for (Connection* c : connections) {
      c->abandoned = true;
      if (c->job) c->job->cancel.store(true);
    }
    // Cancelled sequences end at the engine's next round; then their error goes out.
    co_await WaitUntilNoConnections(Clock::now() + std::chrono::seconds(2));
    for (Connection* c : connections) c->Close();
    co_await WaitUntilNoConnections(Clock::now() + std::chrono::seconds(1));
  }
  ioc.stop();
}

std::string HttpServer::Impl::MetricsText() const {
  const MetricsSnapshot m = deps.scheduler->Metrics();
  std::ostringstream o;
  auto metric = [&](const char* name, const char* type, const char* help, double v) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " " << type << "\n"
      << name << " " << v << "\n";
  };
  auto histogram = [&](const char* name, const char* help, const Histogram& h) {
    o << "# HELP " << name << " " << help << "\n# TYPE " << name << " histogram\n";
    long cumulative = 0;
    for (size_t i = 0; i < h.counts.size(); ++i) {
      cumulative += h.counts[i];
      o << name << "_bucket{le=\"";
      if (i < h.bounds.size()) {
        o << h.bounds[i];
      } else {
        o << "+Inf";
      }
      o << "\"} " << cumulative << "\n";
    }
    o << name << "_sum " << h.sum << "\n" << name << "_count " << h.count << "\n";
  };
  histogram("specula_time_to_first_token_seconds",
            "From a request's submission to its first generated token.", m.time_to_first_token);
  histogram("specula_inter_token_latency_seconds",
            "Between consecutive generated tokens of a request (a round's accepted drafts arrive "
            "together).",
            m.inter_token);
  histogram("specula_request_duration_seconds", "From a request's submission to its end.",
            m.request_duration);
  metric("specula_requests_total", "counter", "Completion requests accepted.",
         static_cast<double>(m.requests));
  metric("specula_generated_tokens_total", "counter", "Tokens generated.",
         static_cast<double>(m.totals.generated));
  metric("specula_spec_draft_tokens_total", "counter", "Draft tokens proposed.",
         static_cast<double>(m.totals.drafted));
  metric("specula_spec_accepted_tokens_total", "counter", "Draft tokens accepted.",
         static_cast<double>(m.totals.accepted));
  metric("specula_spec_tree_rounds_total", "counter",
         "Verify rounds that checked a token tree (of all draft rounds).",
         static_cast<double>(m.totals.tree_rounds));
  o << "# HELP specula_spec_tokens_by_source_total Draft tokens proposed and accepted, by the "
       "drafter that proposed them (model: the MTP assistant; lookup: prompt lookup).\n"
    << "# TYPE specula_spec_tokens_by_source_total counter\n";
  const long lookup_d = m.totals.lookup_drafted, lookup_a = m.totals.lookup_accepted;
  for (const auto& [source, drafted, accepted] :
       {std::tuple{"model", m.totals.drafted - lookup_d, m.totals.accepted - lookup_a},
        std::tuple{"lookup", lookup_d, lookup_a}}) {
    o << "specula_spec_tokens_by_source_total{source=\"" << source << "\",verdict=\"drafted\"} "
      << drafted << "\n"
      << "specula_spec_tokens_by_source_total{source=\"" << source << "\",verdict=\"accepted\"} "
      << accepted << "\n";
  }
  o << "# HELP specula_spec_accepted_tokens_per_pos_total Draft tokens accepted at each draft "
       "position (1 = first).\n"
    << "# TYPE specula_spec_accepted_tokens_per_pos_total counter\n";
  for (size_t i = 0; i < m.totals.accepted_per_position.size(); ++i) {
    o << "specula_spec_accepted_tokens_per_pos_total{position=\"" << i + 1 << "\"} "
      << m.totals.accepted_per_position[i] << "\n";
  }
  metric("specula_prompt_cache_hit_tokens_total", "counter",
         "Prompt tokens resumed (from a slot or a prompt-cache copy).",
         static_cast<double>(m.totals.prompt_cached));
  metric("specula_prompt_cache_miss_tokens_total", "counter", "Prompt tokens computed.",
         static_cast<double>(m.totals.prompt_tokens - m.totals.prompt_cached));
  metric("specula_prompt_cache_bytes", "gauge", "Bytes the prompt cache holds.",
         static_cast<double>(m.prompt_cache_bytes));
  metric("specula_heap_bytes_in_use", "gauge",
         "Bytes of the C heap in use (-1: not known on this C library).", HeapBytesInUse());
  metric("specula_target_forwards_total", "counter", "Target model forward passes.",
         static_cast<double>(m.totals.target_forwards));
  metric("specula_queue_depth", "gauge", "Requests waiting for a decoding slot.", m.queue_depth);
  metric("specula_running_sequences", "gauge", "Sequences decoding.", m.running);
  metric("specula_decode_tokens_per_second", "gauge",
         "Generated tokens per second over the last seconds.", m.decode_tok_per_s);
  metric("specula_http_connections", "gauge", "Open client connections.",
         static_cast<double>(OpenConnections()));
  metric("specula_http_connections_refused_total", "counter",
         "Connections turned away at the connection limit.",
         static_cast<double>(refused_connections));
  metric("specula_http_connections_evicted_total", "counter",
         "Idle or slow connections closed to make room for new ones.",
         static_cast<double>(evicted_connections));
  metric("specula_http_read_timeouts_total", "counter",
         "Requests whose header and body did not arrive in time.",
         static_cast<double>(timed_out_reads));
  return o.str();
}

HttpServer::HttpServer(const ServerConfig& config, const ServerDeps& deps)
    : impl_(std::make_unique<Impl>(config, deps)) {}

HttpServer::~HttpServer() = default;

Result<int> HttpServer::Bind() {
  Impl& m = *impl_;
  const Status failed =
      Error("--host/--port: cannot listen on " + m.config.host + ":" +
            std::to_string(m.config.port) + " (in use, or not an address of this machine)");
  tcp::resolver resolver(m.ioc);
  beast::error_code ec;
  const auto endpoints =
      resolver.resolve(m.config.host, std::to_string(m.config.port), tcp::resolver::passive, ec);
  if (ec) return failed;
  for (const auto& entry : endpoints) {
    tcp::acceptor& a = m.acceptor;
    if (a.is_open()) a.close(ec);
    a.open(entry.endpoint().protocol(), ec);
    if (ec) continue;
    a.set_option(net::socket_base::reuse_address(true), ec);
    a.bind(entry.endpoint(), ec);
    if (ec) continue;
    a.listen(net::socket_base::max_listen_connections, ec);
    if (!ec) return static_cast<int>(a.local_endpoint().port());
  }
  return failed;
}

void HttpServer::Run() {
  Impl& m = *impl_;
  net::co_spawn(m.ioc, m.Accept(), net::detached);
  m.ioc.run();
  // Every job has been answered or cancelled; once the engine has let go of them, no callback
  // reaches the I/O context any more and the server can be destroyed.
  m.deps.scheduler->Drain();
  m.prep.join();
}

void HttpServer::Shutdown() {
  if (impl_->shutdown_requested.exchange(true)) return;
  net::co_spawn(impl_->ioc, impl_->Drain(), net::detached);
}

}  // namespace specula::server
