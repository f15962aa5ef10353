// The transport of `specula serve`, below the routes: one client connection's state, the waker that
// carries engine news to the I/O thread, the watch that notices a client hanging up while its
// request runs, and the Server-Sent Events writer. Everything here runs on the one I/O thread
// (but Waker::Notify) and reports I/O errors as values, never as exceptions.
#pragma once

#include <atomic>
#include <boost/asio.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>

#include "specula/server/http_server.h"
#include "specula/server/openai_api.h"

namespace specula::server {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using net::awaitable;
using tcp = net::ip::tcp;
using Clock = std::chrono::steady_clock;
using Request = http::request<http::string_body>;
using Response = http::response<http::string_body>;

// An exception escaping a connection's coroutine would end the process.
inline constexpr auto kNoThrow = net::as_tuple(net::use_awaitable);

Clock::duration Seconds(double s);

// Constant-time comparison: a secret must not leak through response timing.
bool SameSecret(std::string_view given, std::string_view expected);

Response MakeResponse(http::status status, std::string body, std::string_view content_type,
                      unsigned version, bool keep_alive);
Response JsonResponse(http::status status, const Json& body, unsigned version, bool keep_alive);
Response ErrorResponse(const ApiError& e, unsigned version, bool keep_alive);
ApiError ServerError(int status, std::string message);

// One client connection. It lives in the frame of the coroutine serving it; the server's list
// points to it so that the connection limit and shutdown can reach it.
struct Connection {
  // kIdle: waiting for a request; kReading: inside one; kBusy: answering; kClosing: lingering
  // after the last response; kClosed: the socket is gone.
  enum class Phase { kIdle, kReading, kBusy, kClosing, kClosed };

  explicit Connection(tcp::socket socket, size_t max_buffered = kMaxBuffered)
      : stream(std::move(socket)), buffer(max_buffered) {}
  void Enter(Phase p) {
    phase = p;
    since = Clock::now();
  }
  // Cancels whatever the connection waits for; its coroutine then ends.
  void Close();

  // Bytes read and not yet parsed: a header being read, the start of a pipelined next request. The
  // cap also bounds what the parser holds that no limit of its own counts (chunk extensions,
  // trailers).
  static constexpr size_t kMaxBuffered = 96 << 10;

  beast::tcp_stream stream;
  beast::flat_buffer buffer;
  Phase phase = Phase::kIdle;
  Clock::time_point since = Clock::now();
  // When the response write in progress began (max(): none): a client that does not read stalls
  // it, and a stalled writer may be evicted at the connection limit.
  Clock::time_point writing_since = Clock::time_point::max();
  bool completing = false;   // answering a completion request (from its parsing to its end)
  std::shared_ptr<Job> job;  // the completion's job once submitted
  bool abandoned = false;    // shutdown ran out of time for the running request
};

// Wakes a coroutine on the I/O thread from the engine thread. A notification that arrives while
// nobody waits is kept, so none is lost; a wake-up may be spurious.
class Waker : public std::enable_shared_from_this<Waker> {
 public:
  explicit Waker(const net::any_io_executor& ex) : timer_(ex, Clock::time_point::max()) {}
  void Notify();           // any thread
  awaitable<void> Wait();  // the I/O thread

 private:
  net::steady_timer timer_;
  std::atomic<bool> pending_{false};
};

// Waits for the waker; false if the client closed or reset the connection first. Bytes the client
// sends meanwhile (a pipelined next request) are kept in the connection's buffer.
awaitable<bool> WaitForNews(Connection& c, Waker& waker);

// A Server-Sent Events body: chunked (HTTP/1.1), or plain bytes until the close (HTTP/1.0). Each
// call returns false once the client is gone or too slow (write_timeout_s).
class EventStream {
 public:
  EventStream(Connection& c, double write_timeout_s, unsigned version, bool keep_alive)
      : c_(c),
        write_timeout_s_(write_timeout_s),
        version_(version),
        keep_alive_(keep_alive && version >= 11) {}

  awaitable<bool> Begin();
  // (By value: the coroutine runs after the caller's temporaries are gone.)
  awaitable<bool> Send(std::string event);
  // Ends the body; true if the connection may serve another request.
  awaitable<bool> End();

 private:
  Connection& c_;
  double write_timeout_s_;
  unsigned version_;
  bool keep_alive_;
};

}  // namespace specula::server
