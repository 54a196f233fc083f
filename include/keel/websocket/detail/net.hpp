// keel/websocket/detail/net.hpp: the Asio and Beast names the WebSocket
// client's machinery is written in, and small helpers on executors and
// steady-clock deadlines. Not part of the API.
#pragma once

// Boost 1.74's Asio enables co_await for clang only with <experimental/coroutine>
// (libc++); clang 14+ with libstdc++ has C++20 <coroutine>, which Asio can use.
// Defined before any Asio header that declares awaitables: include this header
// first.
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(BOOST_ASIO_HAS_CO_AWAIT) && \
    __has_include(<coroutine>)
#define BOOST_ASIO_HAS_CO_AWAIT 1
#define BOOST_ASIO_HAS_STD_COROUTINE 1
#endif

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <chrono>
#include <cstddef>
#include <type_traits>

namespace keel::ws::detail {

namespace net = boost::asio;
namespace beast = boost::beast;
namespace websocket = boost::beast::websocket;
using tcp = boost::asio::ip::tcp;
using Clock = std::chrono::steady_clock;
// What every handler of a client runs on: a strand of the caller's executor,
// or the executor of the client's own single-threaded io_context (one thread
// is a strand already; a strand on top would add a queue hop per completion).
using Strand = net::any_io_executor;
// Plain sockets, not beast::tcp_stream: keel bounds connect, handshake and
// close with its own TimeBudget, and basic_stream's per-operation timer
// bookkeeping would cost every read and write.
using PlainWs = websocket::stream<tcp::socket>;
using TlsWs = websocket::stream<beast::ssl_stream<tcp::socket>>;
using ErrorCode = boost::system::error_code;

inline auto redirect(ErrorCode& ec) {
  return net::redirect_error(net::use_awaitable, ec);
}

// Note: no class-type prvalue (Event{...}, std::to_string(...)) appears inside
// a co_await expression in the client's coroutines: g++ 12 mis-handles such
// temporaries (their storage is freed early). Name them first, then co_await.

/// Frames of outgoing messages are at most this large (and masked into a
/// buffer of this size).
inline constexpr std::size_t kWriteBufferBytes = 64U * 1024;

// A point `d` from now, saturating instead of overflowing for huge durations.
template <class Rep, class Period>
Clock::time_point deadline_after(std::chrono::duration<Rep, Period> d) noexcept {
  const auto now = Clock::now();
  if (d <= std::chrono::duration<Rep, Period>::zero()) return now;
  using Sec = std::chrono::duration<double>;
  if (std::chrono::duration_cast<Sec>(d) >= std::chrono::duration_cast<Sec>(Clock::time_point::max() - now))
    return Clock::time_point::max();
  return now + std::chrono::ceil<Clock::duration>(d);
}
// The same for a deadline on any clock.
template <class C, class D>
Clock::time_point to_steady(std::chrono::time_point<C, D> t) noexcept {
  if constexpr (std::is_same_v<C, Clock>) {
    return std::chrono::time_point_cast<Clock::duration>(t);
  } else {
    return deadline_after(t - C::now());
  }
}

// The io_context an executor (or a strand of one) belongs to, or null.
inline net::io_context* io_context_of(const net::any_io_executor& ex) noexcept {
  if (const auto* e = ex.target<net::io_context::executor_type>()) return &e->context();
  if (const auto* s = ex.target<net::strand<net::io_context::executor_type>>())
    return &s->get_inner_executor().context();
  if (const auto* s = ex.target<net::strand<net::any_io_executor>>())
    if (const auto* e = s->get_inner_executor().target<net::io_context::executor_type>())
      return &e->context();
  return nullptr;
}

// A strand already serialises its handlers: the client uses it as it is.
inline bool is_strand(const net::any_io_executor& ex) noexcept {
  return ex.target<net::strand<net::io_context::executor_type>>() != nullptr ||
         ex.target<net::strand<net::any_io_executor>>() != nullptr;
}

}  // namespace keel::ws::detail
