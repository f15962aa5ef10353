#include "src/server/http_connection.h"

#include <poll.h>

#include <boost/asio/experimental/awaitable_operators.hpp>
#include <variant>

namespace specula::server {
namespace {

using net::experimental::awaitable_operators::operator||;

// Bytes a client may send ahead (pipelined requests) while its request runs; beyond this the
// server stops reading until it answers.
constexpr size_t kMaxReadAhead = 64 << 10;

// True when the peer has shut its side (or the socket failed), even with unread bytes queued.
bool PeerClosed(tcp::socket& socket) {
  pollfd p{.fd = socket.native_handle(), .events = POLLRDHUP, .revents = 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

// Returns true once the client has closed or reset the connection. Past kMaxReadAhead bytes it
// stops reading and checks four times a second whether the peer has closed.
awaitable<bool> WatchHangup(Connection& c) {
  tcp::socket& socket = c.stream.socket();
  for (;;) {
    if (c.buffer.size() >= kMaxReadAhead) {
      net::steady_timer tick(socket.get_executor());
      for (;;) {
        if (PeerClosed(socket)) co_return true;
        tick.expires_after(std::chrono::milliseconds(250));
        if (const auto [ec] = co_await tick.async_wait(kNoThrow); ec) co_return false;
      }
    }
    const auto [ec] = co_await socket.async_wait(tcp::socket::wait_read, kNoThrow);
    if (ec) co_return ec != net::error::operation_aborted;
    beast::error_code read_ec;
    const size_t available = socket.available(read_ec);
    if (read_ec || available == 0) co_return true;  // readable with nothing to read: EOF or reset
    const size_t n = socket.read_some(
        c.buffer.prepare(std::min(available, kMaxReadAhead - c.buffer.size())), read_ec);
    if (read_ec) co_return true;
    c.buffer.commit(n);
  }
}

}  // namespace

Clock::duration Seconds(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

bool SameSecret(std::string_view given, std::string_view expected) {
  unsigned char diff = given.size() == expected.size() ? 0 : 1;
  for (size_t i = 0; i < expected.size(); ++i)
    diff |= static_cast<unsigned char>(expected[i] ^ (i < given.size() ? given[i] : 0));
  return diff == 0;
}

Response MakeResponse(http::status status, std::string body, std::string_view content_type,
                      unsigned version, bool keep_alive) {
  Response res{status, version};
  res.set(http::field::server, "specula");
  res.set(http::field::content_type, content_type);
  res.keep_alive(keep_alive);
  res.body() = std::move(body);
  res.prepare_payload();
  return res;
}

Response JsonResponse(http::status status, const Json& body, unsigned version, bool keep_alive) {
  return MakeResponse(status, Dump(body), "application/json", version, keep_alive);
}

Response ErrorResponse(const ApiError& e, unsigned version, bool keep_alive) {
  return MakeResponse(static_cast<http::status>(e.status), ErrorBody(e), "application/json",
                      version, keep_alive);
}

ApiError ServerError(int status, std::string message) {
  return {.status = status, .message = std::move(message), .param = "", .type = "server_error"};
}

void Connection::Close() {
  phase = Phase::kClosed;
  beast::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);
  stream.close();
}

void Waker::Notify() {
  if (pending_.exchange(true)) return;
  net::post(timer_.get_executor(), [self = shared_from_this()] { self->timer_.cancel(); });
}

awaitable<void> Waker::Wait() {
  if (pending_.exchange(false)) co_return;
  timer_.expires_at(Clock::time_point::max());
  co_await timer_.async_wait(kNoThrow);
}

awaitable<bool> WaitForNews(Connection& c, Waker& waker) {
  const std::variant<std::monostate, bool> first = co_await (waker.Wait() || WatchHangup(c));
  co_return first.index() == 0 || !std::get<1>(first);
}

awaitable<bool> EventStream::Begin() {
  http::response<http::empty_body> res{http::status::ok, version_};
  res.set(http::field::server, "specula");
  res.set(http::field::content_type, "text/event-stream");
  res.set(http::field::cache_control, "no-cache");
  res.keep_alive(keep_alive_);
  if (version_ >= 11) res.chunked(true);
  http::response_serializer<http::empty_body> sr{res};
  c_.stream.expires_after(Seconds(write_timeout_s_));
  c_.writing_since = Clock::now();
  const auto [ec, n] = co_await http::async_write_header(c_.stream, sr, kNoThrow);
  c_.writing_since = Clock::time_point::max();
  co_return !ec;
}

awaitable<bool> EventStream::Send(std::string event) {
  c_.stream.expires_after(Seconds(write_timeout_s_));
  c_.writing_since = Clock::now();
  beast::error_code ec;
  if (version_ < 11) {
    std::tie(ec, std::ignore) = co_await net::async_write(c_.stream, net::buffer(event), kNoThrow);
  } else {
    std::tie(ec, std::ignore) =
        co_await net::async_write(c_.stream, http::make_chunk(net::buffer(event)), kNoThrow);
  }
  c_.writing_since = Clock::time_point::max();
  co_return !ec;
}

awaitable<bool> EventStream::End() {
  if (version_ < 11) co_return false;
  c_.stream.expires_after(Seconds(write_timeout_s_));
  const auto [ec, n] = co_await net::async_write(c_.stream, http::make_chunk_last(), kNoThrow);
  co_return !ec && keep_alive_;
}

}  // namespace specula::server
