// keel/websocket/client.hpp: the WebSocket client with heartbeat and
// reconnect (part of keel::websocket; include <keel/websocket.hpp>).
//
//     auto client = keel::ws::Client::start({.url = "ws://127.0.0.1:9000/echo"});
//     if (!client) return client.error();                 // bad URL or config
//     (void)client->send({"hello"});                      // queued; goes out once connected
//     while (auto ev = client->next_event_for(5s)) {      // connected, message, ...
//       if (ev->kind == keel::ws::EventKind::message) fmt::print("{}\n", ev->data);
//     }
//     client->close();                                    // clean close, bounded by close_timeout
//
// Threading: every connection runs on one strand, either of the caller's
// executor (start(executor, config)) or of an io_context on a thread the
// client owns (start(config)). send(), try_send(), send_for(), flush(),
// stats(), the event functions and close() may be called from any thread.
//
// Guarantees:
// - Messages accepted by send() go out in the order they were accepted (per
//   sending thread), after the on_connect messages; what is accepted while
//   disconnected waits in the queue for the next connection.
// - A message being written when the connection died may be lost (it is not
//   sent again: at most once). close() drops what is still queued. flush()
//   succeeds only when everything accepted before it was written.
// - A peer that answers no ping is declared dead no later than
//   ping_interval x (max_missed_pongs + 1) after its last pong.
// - Events arrive in order through a bounded keel channel; when it is full,
//   or its message events hold more than inbound_budget bytes, the client
//   stops reading (backpressure) and does not count missed pongs.
// - Every closing handshake (ours, the peer's, or Beast's on a protocol
//   error) ends within close_timeout; the disconnected event carries the
//   close code the peer sent, or the one the client sent.
//   The channel is closed after the last event (after close() or gave_up).
// - close() returns after the connection is closed (close handshake bounded
//   by close_timeout) whatever the state; on_connect never runs after that.
//   On a thread that runs the client's own executor it only starts the
//   close (waiting there would block it); the event channel closes when done.
#pragma once

#include <keel/backoff.hpp>
#include <keel/channel.hpp>
#include <keel/channel/asio.hpp>
#include <keel/detail/cpu_relax.hpp>
#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/websocket/event.hpp>
#include <keel/websocket/proxy.hpp>
#include <keel/websocket/url.hpp>

#include <netdb.h>
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
// Boost 1.74's Asio enables co_await for clang only with <experimental/coroutine>
// (libc++); clang 14+ with libstdc++ has C++20 <coroutine>, which Asio can use.
#if defined(__clang__) && defined(__cpp_impl_coroutine) && !defined(BOOST_ASIO_HAS_CO_AWAIT) && \
    __has_include(<coroutine>)
#define BOOST_ASIO_HAS_CO_AWAIT 1
#define BOOST_ASIO_HAS_STD_COROUTINE 1
#endif

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/read_until.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

// g++ 12 at -O1 and above reports -Wmismatched-new-delete on Asio's
// coroutine frames (their class-specific operator new/delete pair is
// correct; the warning is a known false positive for coroutine frames).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace keel::ws {

namespace detail {

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
// close with its own Deadline, and basic_stream's per-operation timer
// bookkeeping would cost every read and write.
using PlainWs = websocket::stream<tcp::socket>;
using TlsWs = websocket::stream<beast::ssl_stream<tcp::socket>>;
using ErrorCode = boost::system::error_code;

inline auto redirect(ErrorCode& ec) {
  return net::redirect_error(net::use_awaitable, ec);
}

// Note: no class-type prvalue (Event{...}, std::to_string(...)) appears inside
// a co_await expression in this file: g++ 12 mis-handles such temporaries
// (their storage is freed early). Name them first, then co_await.

// Calls on_expire (on the strand) if `d` passes before the Deadline is
// destroyed. The handler may outlive the Deadline, so it checks a shared flag.
class Deadline {
 public:
  template <class F>
  Deadline(const Strand& strand, std::chrono::milliseconds d, F on_expire)
      : timer_(strand), live_(std::make_shared<bool>(true)), fired_(std::make_shared<bool>(false)) {
    timer_.expires_after(d);
    timer_.async_wait([live = live_, fired = fired_, f = std::move(on_expire)](const ErrorCode& ec) mutable {
      if (!ec && *live) {
        *fired = true;
        f();
      }
    });
  }
  Deadline(const Deadline&) = delete;
  Deadline& operator=(const Deadline&) = delete;
  ~Deadline() {
    *live_ = false;
    timer_.cancel();
  }
  [[nodiscard]] bool fired() const noexcept { return *fired_; }

 private:
  net::steady_timer timer_;
  std::shared_ptr<bool> live_;
  std::shared_ptr<bool> fired_;
};

inline constexpr std::size_t kWriteBufferBytes = 64U * 1024;

// How one connection attempt ended.
struct Outcome {
  bool opened = false;
  bool fatal = false;      // do not retry: give up at once (on_connect threw)
  bool permanent = false;  // no retry can mend it (HTTP 401, a refused certificate...)
  Clock::time_point opened_at{};
  std::string reason;
  std::uint16_t close_code = 0;
  std::uint16_t http_status = 0;
  Errc error = Errc::io;
};

// One open connection's shared bookkeeping (strand only).
struct SessionCtl : std::enable_shared_from_this<SessionCtl> {
  explicit SessionCtl(const Strand& s) : children_done(s), heartbeat(s), close_timer(s), close_watch(s) {}
  bool over = false;          // the session is ending; the first reason wins
  bool closing = false;       // a close handshake was started by us
  bool peer_closing = false;  // the peer's close frame arrived (Beast answers it)
  bool ping_in_flight = false;
  std::string reason;
  std::uint16_t close_code = 0;
  Errc error = Errc::io;
  int children = 0;  // writer, heartbeat, ping, close operations still running
  net::steady_timer children_done;
  net::steady_timer heartbeat;
  net::steady_timer close_timer;  // bounds the peer's closing handshake
  net::steady_timer close_watch;  // bounds one Beast starts on a protocol error
};

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

class State : public std::enable_shared_from_this<State> {
 public:
  // `serial`: ex runs its handlers one at a time (a one-thread io_context);
  // otherwise the client makes a strand of it.
  State(net::any_io_executor ex, bool serial, ClientConfig cfg, Url url, std::optional<net::ssl::context> ssl,
        std::pair<Sender<Message>, Receiver<Message>> out, std::pair<Sender<Event>, Receiver<Event>> ev)
      : cfg_(std::move(cfg)),
        url_(std::move(url)),
        log_url_(url_.redacted()),
        log_(keel::resolve_logger(cfg_.logger)),
        ioc_(io_context_of(ex)),
        strand_(serial || is_strand(ex) ? std::move(ex) : Strand(net::make_strand(std::move(ex)))),
        ssl_(std::move(ssl)),
        out_tx_(std::move(out.first)),
        out_rx_(std::move(out.second)),
        ev_tx_(std::move(ev.first)),
        ev_rx_(std::move(ev.second)),
        pump_timer_(strand_),
        retry_timer_(strand_),
        event_timer_(strand_),
        push_marks_(std::max(ev_rx_.capacity(), cfg_.event_queue_capacity) + 1, 0) {}

  // ---- any thread ----

  void launch() {
    if (url_.secure) {
      spawn_pump<TlsWs>();
    } else {
      spawn_pump<PlainWs>();
    }
    net::co_spawn(strand_, run(), [self = shared_from_this()](const std::exception_ptr& e) {
      if (e) {
        std::string why = "internal failure";
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          why = fmt::format("internal failure: {}", ex.what());
        } catch (...) {
        }
        self->log_->warn("websocket {}: {}", self->log_url_, why);
        // The application learns that the client ended (when there is room).
        if (self->ev_tx_.try_send(Event{.kind = EventKind::gave_up, .reason = std::move(why)}))
          self->record_push(0);
        self->finish();
      }
    });
  }

  void request_stop() {
    if (stop_requested_.exchange(true)) return;  // seq_cst: a plain flag read by senders and flush
    {
      // Nothing runs the strand any more once run() has finished (an own
      // io_context has returned): a posted handler would only linger.
      const std::lock_guard lock(done_mu_);
      if (finished_) return;
    }
    net::post(strand_, [self = shared_from_this()] { self->on_stop(); });
  }

  // The writer is woken by the send queue itself (keel::asio::async_recv):
  // a send only counts the message for flush() and stats().
  SendResult<Message> accept(SendResult<Message> r) {
    // relaxed: a counter; flush() orders its reads through done_mu_.
    if (!r) accepted_.fetch_sub(1, std::memory_order_relaxed);
    return r;
  }
  // relaxed: as above (counted before the push so queued never underflows).
  void pre_accept() { accepted_.fetch_add(1, std::memory_order_relaxed); }

  // Waits until the messages accepted so far are written or dropped; fails
  // if one of them was dropped (each drop is reported to one flush).
  Result<void> flush_until(Clock::time_point deadline) {
    const auto target = accepted_.load(std::memory_order_acquire);
    // seq_cst, with the seq_cst load of done_ below: pairs with note_done's
    // seq_cst increment of done_ and load of flushers_, so either this
    // flush sees the count reach its target or note_done sees the flusher
    // and notifies (it locks done_mu_ first, so the notify cannot fall
    // between our check and our wait).
    flushers_.fetch_add(1, std::memory_order_seq_cst);
    std::unique_lock lock(done_mu_);
    const bool ok = done_cv_.wait_until(
        lock, deadline, [&] { return finished_ || done_.load(std::memory_order_seq_cst) >= target; });
    flushers_.fetch_sub(1, std::memory_order_relaxed);  // relaxed: a stale count costs one lock
    const auto done = done_.load(std::memory_order_acquire);
    if (!ok) return fail(Errc::timeout, "flush: {} messages still queued", target - done);
    // Messages [flush_base_, target) are this flush's to report.
    std::uint64_t lost = done < target ? target - done : 0;
    for (const auto& [begin, end] : drop_ranges_) {
      const auto b = std::max(begin, flush_base_);
      const auto e = std::min(end, target);
      if (b < e) lost += e - b;
    }
    flush_base_ = std::max(flush_base_, target);
    std::erase_if(drop_ranges_, [&](const auto& r) { return r.second <= flush_base_; });
    if (lost == 0) return {};
    if (finished_) return fail(Errc::closed, "flush: client closed with {} messages unsent", lost);
    return fail(Errc::io, "flush: {} messages dropped (connection lost while writing)", lost);
  }

  // Waits until run() has finished, at most `d`; true if it has.
  bool wait_finished(std::chrono::milliseconds d) {
    std::unique_lock lock(done_mu_);
    return done_cv_.wait_for(lock, d, [&] { return finished_; });
  }

  [[nodiscard]] ClientStats stats() const noexcept {
    ClientStats s;
    s.connected = connected_.load(std::memory_order_relaxed);
    s.messages_sent = sent_.load(std::memory_order_relaxed);
    s.messages_dropped = dropped_.load(std::memory_order_relaxed);
    s.inbound_bytes = inbound_bytes_.load(std::memory_order_relaxed);
    s.messages_received = received_.load(std::memory_order_relaxed);
    s.connections = connections_.load(std::memory_order_relaxed);
    s.reconnects = reconnects_.load(std::memory_order_relaxed);
    const auto a = accepted_.load(std::memory_order_relaxed);
    const auto d = done_.load(std::memory_order_relaxed);
    s.queued = a > d ? a - d : 0;
    return s;
  }

  [[nodiscard]] std::string subprotocol() {
    const std::lock_guard lock(subprotocol_mu_);
    return subprotocol_;
  }

  // The caller's io_context was stopped: nothing runs the client's handlers.
  [[nodiscard]] bool context_stopped() const noexcept { return ioc_ != nullptr && ioc_->stopped(); }

  // True on a thread that runs the client's strand, or the io_context under
  // it: waiting there for the client to finish would block what it needs.
  // (A strand running here means its io_context is running here too; only
  // a strand over some other execution context needs asking itself.)
  [[nodiscard]] bool running_here() const noexcept {
    if (ioc_ != nullptr) return ioc_->get_executor().running_in_this_thread();
    const auto* s = strand_.target<net::strand<net::any_io_executor>>();
    return s != nullptr && s->running_in_this_thread();
  }

  ClientConfig cfg_;
  Url url_;
  std::string log_url_;  // url_ with its query values redacted, for logs
  keel::Logger log_;
  net::io_context* ioc_;  // the io_context under the executor, when it is one (else null)
  Strand strand_;
  std::optional<net::ssl::context> ssl_;
  Sender<Message> out_tx_;
  Receiver<Message> out_rx_;
  Sender<Event> ev_tx_;
  Receiver<Event> ev_rx_;
  std::atomic<bool> connected_{false};

 private:
  // ---- strand only from here ----

  void on_stop() {
    stopping_ = true;
    retry_timer_.cancel();
    event_timer_.cancel();
    if (graceful_close_) {
      graceful_close_();
    } else if (abort_io_) {
      abort_io_();
    }
  }

  [[nodiscard]] bool stopping() const noexcept { return stopping_; }

  // Counts messages written or dropped; wakes flush() callers only when
  // there are any (the common case, no flush waiting, takes no lock).
  void note_done() {
    done_.fetch_add(1, std::memory_order_seq_cst);  // seq_cst: see flush()
    if (flushers_.load(std::memory_order_seq_cst) == 0) return;
    { const std::lock_guard lock(done_mu_); }  // a flusher is checking or waiting, not in between
    done_cv_.notify_all();
  }

  // Counts `n` accepted messages as settled without being written (rare:
  // a failed write, or close). Only the strand settles messages, so the
  // next n positions in send order are these.
  // `finishing`: these are the last ones, and the client has ended (in the
  // same step, so a flush woken by them sees both).
  void note_dropped(std::uint64_t n, bool finishing = false) {
    if (n == 0 && !finishing) return;
    {
      const std::lock_guard lock(done_mu_);
      if (n != 0) {
        const auto begin = done_.load(std::memory_order_relaxed);  // relaxed: under done_mu_
        drop_ranges_.emplace_back(begin, begin + n);
        dropped_.fetch_add(n, std::memory_order_relaxed);  // relaxed: a counter
        done_.fetch_add(n, std::memory_order_seq_cst);     // seq_cst: see flush()
      }
      if (finishing) finished_ = true;
    }
    done_cv_.notify_all();
  }

 public:
  // Strand only: the event channel got one more event of `bytes` payload.
  void record_push(std::size_t bytes) noexcept {
    ++pushed_;
    pushed_bytes_ += bytes;
    push_marks_[pushed_ % push_marks_.size()] = pushed_bytes_;
    inbound_bytes_.store(queued_bytes(), std::memory_order_relaxed);  // relaxed: a statistic
  }

 private:
  // Strand only: payload bytes of the events still in the channel. Only the
  // strand sends on it, in order, so they are the last size() sent; their
  // bytes are the running total minus the total before them.
  [[nodiscard]] std::uint64_t queued_bytes() const noexcept {
    const std::uint64_t in = std::min<std::uint64_t>(ev_rx_.size(), pushed_);
    return pushed_bytes_ - push_marks_[(pushed_ - in) % push_marks_.size()];
  }

  void finish() {
    if (finished_flag_) return;
    finished_flag_ = true;
    connected_.store(false, std::memory_order_relaxed);
    out_rx_.close();  // blocked and later senders get Errc::closed
    std::uint64_t dropped = 0;
    while (out_rx_.try_recv()) ++dropped;
    if (dropped != 0) log_->debug("websocket {}: dropped {} queued messages on close", log_url_, dropped);
    ev_tx_.close();        // the application drains what is buffered, then gets Errc::closed
    pump_timer_.cancel();  // a pump holding a message drops it and ends
    note_dropped(dropped, true);
  }

  // Hands an event to the application; waits (without blocking the strand)
  // while the channel is full, unless the client is stopping.
  net::awaitable<void> emit(Event e, SessionCtl* ctl = nullptr) {
    auto wait = std::chrono::milliseconds(1);
    for (;;) {
      const std::size_t bytes = e.kind == EventKind::message ? e.data.size() : 0;
      auto r = ev_tx_.try_send(std::move(e));
      if (r) {
        record_push(bytes);
        co_return;
      }
      if (r.error().code() != Errc::full || stopping_) co_return;  // closed: nobody listens
      e = std::move(r).error().into_inner();
      if (ctl != nullptr) reader_blocked_ = true;
      event_timer_.expires_after(wait);
      ErrorCode ec;
      co_await event_timer_.async_wait(redirect(ec));
      wait = std::min(wait * 2, std::chrono::milliseconds(16));
    }
  }

  net::awaitable<void> run() {
    auto self = shared_from_this();
    Backoff backoff(cfg_.backoff);
    std::uint32_t failures = 0;
    std::uint32_t attempts = 0;
    while (!stopping_) {
      Outcome out;
      const std::uint32_t attempt_no = attempts++;
      if (url_.secure) {
        out = co_await attempt<TlsWs>(attempt_no);
      } else {
        out = co_await attempt<PlainWs>(attempt_no);
      }
      if (stopping_) break;
      if (out.opened && Clock::now() - out.opened_at >= cfg_.stable_after) {
        backoff.reset();
        failures = 0;
      }
      const bool unlimited = cfg_.max_retries == kUnlimitedRetries;
      if (out.fatal || out.permanent || (!unlimited && failures >= cfg_.max_retries)) {
        if (out.fatal || out.permanent) {
          log_->warn("websocket {}: giving up: {}", log_url_, out.reason);
        } else {
          log_->warn("websocket {}: giving up after {} retries: {}", log_url_, failures, out.reason);
        }
        Event e{.kind = EventKind::gave_up,
                .reason = out.reason,
                .error = out.fatal ? Errc::internal : out.error,
                .http_status = out.http_status,
                .permanent = out.fatal || out.permanent};
        co_await emit(std::move(e));
        break;
      }
      ++failures;
      const auto delay = backoff.next();
      reconnects_.fetch_add(1, std::memory_order_relaxed);
      log_->debug("websocket {}: reconnect attempt {} in {} ms ({})", log_url_, failures, delay.count(),
                  out.reason);
      Event e{.kind = EventKind::reconnecting,
              .reason = out.reason,
              .attempt = failures,
              .delay = delay,
              .error = out.error,
              .http_status = out.http_status};
      co_await emit(std::move(e));
      if (stopping_) break;
      retry_timer_.expires_after(delay);
      ErrorCode ec;
      co_await retry_timer_.async_wait(redirect(ec));
    }
    finish();
  }

  template <class Ws>
  std::unique_ptr<Ws> make_stream() {
    if constexpr (std::is_same_v<Ws, TlsWs>) {
      return std::make_unique<Ws>(strand_, *ssl_);
    } else {
      return std::make_unique<Ws>(strand_);
    }
  }

  static std::string describe(const ErrorCode& ec) { return ec.message(); }

  // How a failed step is reported: the Errc a program tests, and whether
  // retrying can help.
  static void classify(Outcome& out, const ErrorCode& ec) {
    out.error = Errc::io;
    if (ec == beast::error::timeout || ec == net::error::timed_out) {
      out.error = Errc::timeout;
    } else if (ec == net::error::host_not_found) {
      out.error = Errc::not_found;  // the name does not exist: no retry brings it
      out.permanent = true;
    } else if (ec == net::error::host_not_found_try_again || ec == net::error::connection_refused ||
               ec == net::error::connection_reset || ec == net::error::network_unreachable ||
               ec == net::error::host_unreachable || ec == net::error::eof) {
      out.error = Errc::unavailable;
    } else if (ec.category() == net::error::get_ssl_category()) {
      out.error = Errc::crypto;
      if (ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == SSL_R_CERTIFICATE_VERIFY_FAILED)
        out.permanent = true;  // a certificate does not mend itself
    } else if (ec == websocket::condition::handshake_failed ||
               ec == websocket::condition::protocol_violation) {
      out.error = Errc::protocol;
    }
  }

  // An HTTP status that refused the upgrade: 4xx are the client's fault
  // (a token, a path) and permanent, but for 408 and 429; 5xx are the
  // server's and transient.
  static void classify_http(Outcome& out, unsigned status) {
    out.http_status = static_cast<std::uint16_t>(status);
    out.error = status == 401 || status == 403   ? Errc::auth_failed
                : status == 404 || status == 410 ? Errc::not_found
                : status >= 500                  ? Errc::unavailable
                                                 : Errc::protocol;
    out.permanent = status >= 400 && status < 500 && status != 408 && status != 429;
  }

  // Name resolution on a thread of its own, so that close() can abandon a
  // getaddrinfo that hangs (asio's resolver would make the io_context's
  // destruction wait for it). The result comes back through a post to the
  // strand, unless the attempt abandoned it first.
  struct Lookup {
    std::mutex mu;
    bool abandoned = false;  // guarded by mu
    ErrorCode ec;
    std::vector<tcp::endpoint> endpoints;
  };

  net::awaitable<ErrorCode> resolve(const Url& url, std::vector<tcp::endpoint>& out) {
    ErrorCode ec;
    if (const auto addr = net::ip::make_address(url.host, ec); !ec) {
      out.emplace_back(addr, url.port);  // an IP literal needs no lookup
      co_return ErrorCode{};
    }
    auto lookup = std::make_shared<Lookup>();
    net::steady_timer done(strand_);
    done.expires_at(Clock::time_point::max());
    struct Abandon {  // however this frame ends (even destroyed unrun), the thread posts nothing after
      std::shared_ptr<Lookup> l;
      ~Abandon() {
        const std::lock_guard lock(l->mu);
        l->abandoned = true;
      }
    } const abandon{lookup};
    abort_io_ = [&done] { done.cancel(); };
    try {
      std::thread([lookup, host = url.host, port = url.port, strand = strand_, timer = &done] {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_ADDRCONFIG;
        addrinfo* res = nullptr;
        const int rc = ::getaddrinfo(host.c_str(), nullptr, &hints, &res);
        ErrorCode e;
        std::vector<tcp::endpoint> eps;
        if (rc == EAI_NONAME) {
          e = net::error::host_not_found;
        } else if (rc == EAI_AGAIN) {
          e = net::error::host_not_found_try_again;
        } else if (rc != 0) {
          e = net::error::no_recovery;
        } else {
          for (auto* p = res; p != nullptr; p = p->ai_next) {
            if (p->ai_family == AF_INET) {
              const auto* a = reinterpret_cast<const sockaddr_in*>(p->ai_addr);
              eps.emplace_back(net::ip::address_v4(ntohl(a->sin_addr.s_addr)), port);
            } else if (p->ai_family == AF_INET6) {
              const auto* a = reinterpret_cast<const sockaddr_in6*>(p->ai_addr);
              net::ip::address_v6::bytes_type b;
              std::memcpy(b.data(), a->sin6_addr.s6_addr, b.size());
              eps.emplace_back(net::ip::address_v6(b, a->sin6_scope_id), port);
            }
          }
          ::freeaddrinfo(res);
          if (eps.empty()) e = net::error::host_not_found;
        }
        const std::lock_guard lock(lookup->mu);
        if (lookup->abandoned) return;
        lookup->ec = e;
        lookup->endpoints = std::move(eps);
        net::post(strand, [lookup, timer] {
          const std::lock_guard l(lookup->mu);
          if (!lookup->abandoned) timer->cancel();
        });
      }).detach();
    } catch (const std::system_error&) {
      abort_io_ = nullptr;
      co_return ErrorCode(net::error::no_memory);
    }
    ErrorCode ignored;
    co_await done.async_wait(redirect(ignored));
    abort_io_ = nullptr;
    const std::lock_guard lock(lookup->mu);
    lookup->abandoned = true;  // the thread posts nothing more: `done` may go
    if (lookup->endpoints.empty() && !lookup->ec) co_return ErrorCode(net::error::operation_aborted);
    out = std::move(lookup->endpoints);
    co_return lookup->ec;
  }

  // Happy Eyeballs (RFC 8305), simplified: addresses alternate between the
  // families (the resolver's first first); the next one is tried when the
  // previous has failed or after 250 ms, while the earlier ones keep
  // trying; the first to connect wins and the others are closed.
  net::awaitable<ErrorCode> connect_any(tcp::socket& sock, std::vector<tcp::endpoint> eps) {
    if (eps.empty()) co_return ErrorCode(net::error::host_not_found);
    {
      std::vector<tcp::endpoint> v6;
      std::vector<tcp::endpoint> v4;
      for (auto& e : eps) (e.address().is_v6() ? v6 : v4).push_back(e);
      const bool six_first = eps.front().address().is_v6();
      auto& a = six_first ? v6 : v4;
      auto& b = six_first ? v4 : v6;
      eps.clear();
      for (std::size_t i = 0; i < std::max(a.size(), b.size()); ++i) {
        if (i < a.size()) eps.push_back(a[i]);
        if (i < b.size()) eps.push_back(b[i]);
      }
    }
    struct Race {
      explicit Race(const Strand& s) : wake(s) {}
      std::vector<std::unique_ptr<tcp::socket>> socks;
      int running = 0;
      int winner = -1;
      bool over = false;
      ErrorCode last;
      net::steady_timer wake;
    };
    auto race = std::make_shared<Race>(strand_);
    auto close_all = [race] {
      race->over = true;
      for (auto& s : race->socks) {
        ErrorCode ignored;
        if (s) s->close(ignored);
      }
      race->wake.cancel();
    };
    abort_io_ = close_all;
    constexpr auto kStagger = std::chrono::milliseconds(250);
    for (std::size_t i = 0; i <= eps.size() && race->winner < 0 && !race->over; ++i) {
      if (i < eps.size()) {
        race->socks.push_back(std::make_unique<tcp::socket>(strand_));
        auto& s = *race->socks.back();
        ++race->running;
        const int me = static_cast<int>(i);
        s.async_connect(eps[i], [race, me](const ErrorCode& e) {
          --race->running;
          if (!e && race->winner < 0 && !race->over) {
            race->winner = me;
          } else if (e) {
            race->last = e;
          }
          race->wake.cancel();
        });
      }
      // Wait for a result, or (with addresses left) at most the stagger.
      const bool more = i + 1 < eps.size();
      for (;;) {
        if (race->winner >= 0 || race->over || race->running == 0) break;
        race->wake.expires_after(more ? kStagger : std::chrono::hours(24));
        ErrorCode timer_ec;
        co_await race->wake.async_wait(redirect(timer_ec));
        if (!timer_ec) break;  // the stagger passed: start the next one too
      }
    }
    abort_io_ = nullptr;
    ErrorCode result = race->last ? race->last : ErrorCode(net::error::operation_aborted);
    if (race->winner >= 0 && !race->over) {
      sock = std::move(*race->socks[static_cast<std::size_t>(race->winner)]);
      result = {};
    }
    race->over = true;
    for (auto& s : race->socks) {
      ErrorCode ignored;
      if (s && s->is_open()) s->close(ignored);  // the losers (their handlers still run, and see `over`)
    }
    co_return result;
  }

  // The HTTP CONNECT exchange with a proxy on `sock`: afterwards the socket
  // is a tunnel to `url`'s host and port.
  net::awaitable<ErrorCode> tunnel(tcp::socket& sock, const ProxyEndpoint& proxy, const Url& url,
                                   Outcome& out) {
    ErrorCode ec;
    const std::string authority = url.host_header_for_url();
    std::string req =
        fmt::format("CONNECT {0} HTTP/1.1\r\nHost: {0}\r\nUser-Agent: keel-websocket\r\n", authority);
    if (!proxy.user.empty())
      req += "Proxy-Authorization: Basic " + keel::ws::detail::base64(proxy.user + ":" + proxy.password) +
             "\r\n";
    req += "\r\n";
    co_await net::async_write(sock, net::buffer(req), redirect(ec));
    if (ec) co_return ec;
    std::string head;
    const auto n =
        co_await net::async_read_until(sock, net::dynamic_buffer(head, 16 * 1024), "\r\n\r\n", redirect(ec));
    if (ec) co_return ec;
    // "HTTP/1.1 200 Connection established"
    unsigned status = 0;
    if (head.size() > 12 && head.rfind("HTTP/1.", 0) == 0 && head[8] == ' ') {
      for (std::size_t i = 9; i < 12; ++i) {
        if (head[i] < '0' || head[i] > '9') {
          status = 0;
          break;
        }
        status = status * 10 + static_cast<unsigned>(head[i] - '0');
      }
    }
    if (status == 0) co_return ErrorCode(net::error::invalid_argument);  // not an HTTP reply
    // (A refusal may carry a body; a tunnel must not: what follows is the peer's.)
    if (status >= 200 && status <= 299 && n != head.size()) co_return ErrorCode(net::error::invalid_argument);
    if (status < 200 || status > 299) {
      classify_http(out, status);
      if (status == 407) {
        out.error = Errc::auth_failed;
        out.permanent = true;
      }
      co_return ErrorCode(net::error::connection_refused);
    }
    co_return ErrorCode{};
  }

  template <class Ws>
  net::awaitable<Outcome> attempt(std::uint32_t attempt_no) {
    Outcome out;
    ErrorCode ec;
    struct Reset {  // the abort hooks must not outlive what they point to
      State* s;
      ~Reset() {
        s->abort_io_ = nullptr;
        s->graceful_close_ = nullptr;
      }
    };
    const Reset reset{this};

    // 0. what this attempt sends: the config's URL and headers, or what the
    // per-attempt hook makes of them
    Url url = url_;
    HandshakeRequest req;
    if (cfg_.before_connect) {
      req.url = cfg_.url;
      req.headers = cfg_.headers;
      req.attempt = attempt_no;
      Result<void> r;
      try {
        r = cfg_.before_connect(req);
      } catch (const std::exception& e) {
        r = fail(Errc::internal, "before_connect threw: {}", e.what());
      } catch (...) {
        r = fail(Errc::internal, "before_connect threw");
      }
      if (r) {
        if (auto u = Url::parse(req.url); !u) {
          r = std::move(u).error().context("before_connect url");
        } else if (u->secure != url_.secure) {
          r = fail(Errc::config, "before_connect cannot change the URL's scheme");
        } else {
          url = std::move(*u);
          r = ClientConfig::validate_headers(req.headers).context("before_connect headers");
        }
      }
      if (!r) {
        out.reason = fmt::format("before_connect: {}", r.error());
        out.error = r.error().code();
        log_->warn("websocket {}: {}", log_url_, out.reason);
        co_return out;
      }
    }
    const auto& headers = cfg_.before_connect ? req.headers : cfg_.headers;

    // One bound for all of it: resolve, connect, TLS and the upgrade (and
    // the same again for each redirect followed).
    // (Ended before the connection opens: an optional, reset below.)
    std::optional<Deadline> connecting;
    connecting.emplace(strand_, cfg_.connect_timeout, [this] {
      if (abort_io_) abort_io_();
    });
    const Deadline& whole = *connecting;
    std::unique_ptr<Ws> ws;
    websocket::response_type res;
    for (std::uint32_t hop = 0;; ++hop) {
      const std::string shown = url.redacted();
      // 1. resolve (the proxy's name, when going through one)
      auto via = proxy_for(url, cfg_.proxy);
      if (!via) {
        out.error = Errc::config;
        out.permanent = true;
        out.reason = fmt::format("proxy: {}", via.error().message());
        log_->warn("websocket {}: {}", shown, out.reason);
        co_return out;
      }
      Url first_hop = url;
      if (*via) {
        first_hop.host = (*via)->host;
        first_hop.port = (*via)->port;
        log_->debug("websocket {}: through proxy {}", shown, (*via)->to_string());
      }
      std::vector<tcp::endpoint> endpoints;
      ec = co_await resolve(first_hop, endpoints);
      if (whole.fired()) ec = beast::error::timeout;
      if (stopping_) co_return out;
      if (ec) {
        classify(out, ec);
        if (*via) out.permanent = false;  // the proxy's name: maybe a transient failure of its own
        out.reason = fmt::format("resolving {}{}: {}", first_hop.host, *via ? " (proxy)" : "", describe(ec));
        log_->warn("websocket {}: {}", shown, out.reason);
        co_return out;
      }

      // 2. TCP connect and TLS handshake
      ws = make_stream<Ws>();
      auto& lowest = beast::get_lowest_layer(*ws);
      const char* step = "connecting";
      ec = co_await connect_any(lowest, std::move(endpoints));
      abort_io_ = [&lowest] {
        ErrorCode ignored;
        lowest.shutdown(tcp::socket::shutdown_both, ignored);
        lowest.close(ignored);
      };
      if (!ec && (whole.fired() || stopping_)) ec = net::error::operation_aborted;
      if (!ec) {
        ErrorCode ignored;  // small messages go out at once (no Nagle delay)
        lowest.set_option(tcp::no_delay(true), ignored);
      }
      if (!ec && *via) {
        step = "proxy CONNECT";
        ec = co_await tunnel(lowest, **via, url, out);
        if (!ec && (whole.fired() || stopping_)) ec = net::error::operation_aborted;
        if (ec && out.http_status != 0) {
          out.reason = fmt::format("proxy {} refused CONNECT to {}:{} with HTTP {}", (*via)->to_string(),
                                   url.host, url.port, out.http_status);
          log_->warn("websocket {}: {}", shown, out.reason);
          co_return out;
        }
      }
      if constexpr (std::is_same_v<Ws, TlsWs>) {
        if (!ec && !stopping_) {
          step = "TLS handshake";
          auto* ssl = ws->next_layer().native_handle();
          const std::string& name = cfg_.tls.server_name.empty() ? url.host : cfg_.tls.server_name;
          ErrorCode addr_ec;
          const auto addr = net::ip::make_address(name, addr_ec);
          if (addr_ec) SSL_set_tlsext_host_name(ssl, name.c_str());  // SNI carries names, not addresses
          if (cfg_.tls.verify_peer) {
            X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
            if (!addr_ec) {
              X509_VERIFY_PARAM_set1_ip_asc(param, name.c_str());
            } else {
              X509_VERIFY_PARAM_set_hostflags(param, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
              X509_VERIFY_PARAM_set1_host(param, name.c_str(), name.size());
            }
          }
          (void)addr;
          co_await ws->next_layer().async_handshake(net::ssl::stream_base::client, redirect(ec));
        }
      }
      if (whole.fired()) ec = beast::error::timeout;
      if (stopping_) co_return out;
      if (ec) {
        classify(out, ec);
        out.reason = fmt::format("{} to {}:{}: {}", step, first_hop.host, first_hop.port, describe(ec));
        log_->warn("websocket {}: {}", shown, out.reason);
        co_return out;
      }

      // 3. the HTTP upgrade (also under handshake_timeout)
      ws->set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                     websocket::stream_base::none(), false});
      ws->set_option(websocket::stream_base::decorator([this, &headers](websocket::request_type& r) {
        r.set(beast::http::field::user_agent, "keel-websocket");
        for (const auto& [name, value] : headers) r.set(name, value);
        if (!cfg_.subprotocols.empty()) {
          std::string list;
          for (const auto& p : cfg_.subprotocols) list += (list.empty() ? "" : ", ") + p;
          r.set(beast::http::field::sec_websocket_protocol, list);
        }
      }));
      ws->read_message_max(cfg_.max_message_size);
      // Messages go out in frames of at most 64 KiB, masked into a buffer of
      // that size: a message up to 64 KiB is one frame and one socket write
      // (Beast's default is 4 KiB frames: 16 writes, 16 frame headers for the
      // peer to parse), and between the frames of a larger one Beast lets a
      // ping, a pong or a close through, so a big message on a slow link does
      // not hold the heartbeat back until it is all written.
      ws->auto_fragment(true);
      ws->write_buffer_bytes(kWriteBufferBytes);
      res = {};
      {
        const Deadline d(strand_, cfg_.handshake_timeout, abort_io_);
        const std::string host = url.host_header();
        co_await ws->async_handshake(res, host, url.target, redirect(ec));
        if (d.fired() || whole.fired()) ec = beast::error::timeout;
      }
      if (stopping_) co_return out;
      if (ec == websocket::error::upgrade_declined) {
        const unsigned status = res.result_int();
        const bool redirect_status = status == 301 || status == 302 || status == 307 || status == 308;
        if (redirect_status && hop < cfg_.max_redirects) {
          const auto loc = res[beast::http::field::location];
          auto next = url.follow(std::string_view(loc.data(), loc.size()));
          if (next && next->secure == url.secure) {
            log_->debug("websocket {}: HTTP {} redirect to {}", shown, status, next->redacted());
            url = std::move(*next);
            continue;
          }
          classify_http(out, status);
          out.error = Errc::protocol;
          out.permanent = true;
          out.reason = next ? fmt::format("HTTP {} redirect to another scheme refused", status)
                            : fmt::format("HTTP {} redirect to a bad location", status);
          log_->warn("websocket {}: {}", shown, out.reason);
          co_return out;
        }
        classify_http(out, status);
        if (redirect_status) {
          out.error = Errc::protocol;
          out.permanent = true;
        }
        out.reason = redirect_status ? fmt::format("handshake declined with HTTP {} (more than {} redirects)",
                                                   status, cfg_.max_redirects)
                                     : fmt::format("handshake declined with HTTP {}", status);
        log_->warn("websocket {}: {}", shown, out.reason);
        co_return out;
      }
      if (ec) {
        classify(out, ec);
        out.reason = fmt::format("handshake: {}", describe(ec));
        log_->warn("websocket {}: {}", shown, out.reason);
        co_return out;
      }
      break;
    }
    connecting.reset();  // open: connect_timeout no longer applies
    // The subprotocol: one of those offered, or none.
    std::string chosen;
    {
      const auto p = res[beast::http::field::sec_websocket_protocol];
      chosen.assign(p.data(), p.size());
    }
    if (!chosen.empty() &&
        std::find(cfg_.subprotocols.begin(), cfg_.subprotocols.end(), chosen) == cfg_.subprotocols.end()) {
      out.error = Errc::protocol;
      out.permanent = true;
      out.reason = fmt::format("server chose subprotocol \"{}\", which was not offered", chosen);
      log_->warn("websocket {}: {}", url.redacted(), out.reason);
      ErrorCode ignored;
      beast::get_lowest_layer(*ws).close(ignored);
      co_return out;
    }
    {
      const std::lock_guard lock(subprotocol_mu_);
      subprotocol_ = chosen;
    }

    // 4. open
    out.opened = true;
    out.opened_at = Clock::now();
    connected_.store(true, std::memory_order_relaxed);
    connections_.fetch_add(1, std::memory_order_relaxed);
    log_->debug("websocket {}: connected", log_url_);
    {
      Event e{.kind = EventKind::connected, .subprotocol = std::move(chosen)};
      co_await emit(std::move(e));
    }
    std::vector<Message> first;
    std::string hook_failure;
    if (cfg_.on_connect && !stopping_) {
      try {
        first = cfg_.on_connect();
      } catch (const std::exception& e) {
        hook_failure = fmt::format("on_connect threw: {}", e.what());
      } catch (...) {
        hook_failure = "on_connect threw a non-std exception";
      }
      if (!hook_failure.empty()) {
        log_->warn("websocket {}: {}; closing and giving up", log_url_, hook_failure);
        out.fatal = true;
        first.clear();
      }
    }
    co_await session(*ws, std::move(first), out);
    if (out.fatal) out.reason = std::move(hook_failure);
    connected_.store(false, std::memory_order_relaxed);
    log_->debug("websocket {}: disconnected: {}", log_url_, out.reason);
    Event gone{.kind = EventKind::disconnected,
               .reason = out.reason,
               .close_code = out.close_code,
               .error = out.error};
    co_await emit(std::move(gone));
    co_return out;
  }

  // Ends the session with `reason` (the first one wins) and cuts the socket
  // unless a clean close is under way.
  void end_session(SessionCtl& ctl, std::string reason, std::uint16_t code, bool cut, Errc error = Errc::io) {
    if (!ctl.over) {
      ctl.over = true;
      ctl.reason = std::move(reason);
      ctl.close_code = code;
      ctl.error = error;
    }
    ctl.heartbeat.cancel();
    ctl.close_timer.cancel();
    ctl.close_watch.cancel();
    if (live_ctl_ == &ctl) {  // the pump writes no more on this connection
      live_ctl_ = nullptr;
      live_ws_ = nullptr;
    }
    if (cut && abort_io_) abort_io_();
  }

  void child_done(SessionCtl& ctl) {
    if (--ctl.children == 0) ctl.children_done.cancel();
  }

  template <class Aw>
  void spawn_child(const std::shared_ptr<SessionCtl>& ctl, Aw&& aw) {
    ++ctl->children;
    net::co_spawn(strand_, std::forward<Aw>(aw),
                  [self = shared_from_this(), ctl](const std::exception_ptr& e) {
                    if (e) self->end_session(*ctl, "internal failure", 0, true);
                    self->child_done(*ctl);
                  });
  }

  // The close code Beast sent when it failed the connection with `ec`.
  static std::uint16_t sent_close_code(const ErrorCode& ec) noexcept {
    if (ec == websocket::error::message_too_big)
      return static_cast<std::uint16_t>(websocket::close_code::too_big);
    if (ec == websocket::error::bad_frame_payload)
      return static_cast<std::uint16_t>(websocket::close_code::bad_payload);
    if (ec == websocket::condition::protocol_violation)
      return static_cast<std::uint16_t>(websocket::close_code::protocol_error);
    return 0;
  }

  template <class Ws>
  static std::string peer_close_text(const Ws& ws) {
    const auto& r = ws.reason();
    const auto code = static_cast<std::uint16_t>(r.code);
    return r.reason.empty() ? fmt::format("closed by peer (code {})", code)
                            : fmt::format("closed by peer (code {}: {})", code,
                                          std::string_view(r.reason.data(), r.reason.size()));
  }

  // The peer's close frame arrived: Beast answers it and waits for the peer
  // to end TCP. A peer that never does is cut after close_timeout, and the
  // event still reports its close code and reason.
  template <class Ws>
  void on_peer_close(Ws& ws, const std::shared_ptr<SessionCtl>& ctl) {
    if (ctl->peer_closing || ctl->over) return;
    ctl->peer_closing = true;
    if (ctl->closing) return;  // our close_op has its own bound
    ctl->close_timer.expires_after(cfg_.close_timeout);
    ctl->close_timer.async_wait([self = shared_from_this(), ctl, text = peer_close_text(ws),
                                 code = static_cast<std::uint16_t>(ws.reason().code)](const ErrorCode& ec) {
      if (ec || ctl->over) return;
      self->log_->warn("websocket {}: peer did not end TCP within close_timeout after its close frame",
                       self->log_url_);
      self->end_session(*ctl, text + "; TCP cut after close_timeout", code, true, Errc::closed);
    });
  }

  // A closing handshake Beast starts by itself (it fails the connection on
  // a protocol error, 1002/1007/1009) has no callback: this child looks
  // every close_timeout / 4 and cuts a connection that stayed in the closing
  // state (not open, still being read) for close_timeout at most.
  template <class Ws>
  net::awaitable<void> close_watch(Ws& ws, std::shared_ptr<SessionCtl> ctl) {
    const auto period =
        std::max<std::chrono::milliseconds>(cfg_.close_timeout / 4, std::chrono::milliseconds(1));
    std::optional<Clock::time_point> closing_since;
    ErrorCode ec;
    for (;;) {
      ctl->close_watch.expires_after(period);
      co_await ctl->close_watch.async_wait(redirect(ec));
      if (ctl->over || ctl->closing || ctl->peer_closing) co_return;  // those have their own bounds
      if (ws.is_open()) {
        closing_since.reset();
        continue;
      }
      // It went into closing up to one period before we saw it.
      if (!closing_since) closing_since = Clock::now();
      if (Clock::now() - *closing_since + period >= cfg_.close_timeout) {
        log_->warn("websocket {}: closing handshake not finished within close_timeout; cutting", log_url_);
        end_session(*ctl, "protocol error: the peer did not finish the closing handshake", 0, true,
                    Errc::protocol);
        co_return;
      }
    }
  }

  // The reader pauses while the message events waiting for the application
  // hold more than inbound_budget bytes.
  net::awaitable<void> wait_budget(SessionCtl& ctl) {
    auto wait = std::chrono::milliseconds(1);
    reader_blocked_ = true;
    while (!stopping_ && !ctl.over && queued_bytes() > cfg_.inbound_budget) {
      event_timer_.expires_after(wait);
      ErrorCode ec;
      co_await event_timer_.async_wait(redirect(ec));
      wait = std::min(wait * 2, std::chrono::milliseconds(16));
    }
    inbound_bytes_.store(queued_bytes(), std::memory_order_relaxed);  // relaxed: a statistic
    reader_blocked_ = false;
  }

  template <class Ws>
  net::awaitable<void> session(Ws& ws, std::vector<Message> first, Outcome& out) {
    auto ctl = std::make_shared<SessionCtl>(strand_);
    missed_pongs_ = 0;
    reader_blocked_ = false;
    ws.control_callback([this, &ws, c = ctl.get()](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::pong) {
        missed_pongs_ = 0;
      } else if (kind == websocket::frame_type::close) {
        on_peer_close(ws, c->shared_from_this());
      }
    });
    graceful_close_ = [this, ctl, &ws] {
      if (ctl->over || ctl->closing || ctl->peer_closing) return;
      ctl->closing = true;
      spawn_child(ctl, close_op(ws, ctl));
    };
    spawn_child(ctl, writer(ws, std::move(first), ctl));  // then hands over to the pump
    spawn_child(ctl, heartbeat(ws, ctl));
    spawn_child(ctl, close_watch(ws, ctl));
    if (stopping_ || out.fatal) graceful_close_();

    beast::flat_buffer buffer;
    ErrorCode ec;
    bool internal_failure = false;
    try {
      for (;;) {
        co_await ws.async_read(buffer, redirect(ec));
        if (ec) break;
        received_.fetch_add(1, std::memory_order_relaxed);
        Event e{.kind = EventKind::message, .binary = ws.got_binary()};
        e.data = beast::buffers_to_string(buffer.data());
        buffer.consume(buffer.size());
        const std::size_t bytes = e.data.size();
        // The common case without a coroutine call: there is room.
        auto sent = ev_tx_.try_send(std::move(e));
        if (sent) {
          record_push(bytes);
        } else if (sent.error().code() == Errc::full && !stopping_) {
          Event back = std::move(sent).error().into_inner();
          co_await emit(std::move(back), ctl.get());
          reader_blocked_ = false;
        }
        if (queued_bytes() > cfg_.inbound_budget) co_await wait_budget(*ctl);
      }
    } catch (...) {
      // Whatever went wrong, the children still use `ws`: wait for them below.
      internal_failure = true;
    }
    if (internal_failure) {
      log_->warn("websocket {}: internal failure while reading", log_url_);
      end_session(*ctl, "internal failure while reading", 0, true, Errc::internal);
    } else if (ec == websocket::error::closed) {
      const auto code = static_cast<std::uint16_t>(ws.reason().code);
      end_session(*ctl, ctl->closing ? std::string("closed by client") : peer_close_text(ws), code, true,
                  Errc::closed);
    } else if (ec == websocket::error::message_too_big) {
      log_->warn("websocket {}: inbound message larger than {} bytes", log_url_, cfg_.max_message_size);
      end_session(*ctl, fmt::format("message larger than max_message_size ({} bytes)", cfg_.max_message_size),
                  sent_close_code(ec), true, Errc::protocol);
    } else if (const auto sent_code = sent_close_code(ec); sent_code != 0) {
      log_->warn("websocket {}: protocol error from peer: {}", log_url_, describe(ec));
      end_session(*ctl, fmt::format("protocol error: {}", describe(ec)), sent_code, true, Errc::protocol);
    } else {
      if (!ctl->over && !stopping_) log_->warn("websocket {}: read failed: {}", log_url_, describe(ec));
      end_session(*ctl, stopping_ ? std::string("closed by client") : fmt::format("read: {}", describe(ec)),
                  0, true, stopping_ ? Errc::closed : Errc::io);
    }
    while (ctl->children > 0) {
      ctl->children_done.expires_at(Clock::time_point::max());
      ErrorCode ignored;
      co_await ctl->children_done.async_wait(redirect(ignored));
    }
    ws.control_callback();
    out.reason = ctl->reason;
    out.close_code = ctl->close_code;
    out.error = ctl->error;
  }

  template <class Ws>
  net::awaitable<void> close_op(Ws& ws, std::shared_ptr<SessionCtl> ctl) {
    ErrorCode ec;
    const Deadline d(strand_, cfg_.close_timeout, [this] {
      if (abort_io_) abort_io_();
    });
    co_await ws.async_close(websocket::close_code::normal, redirect(ec));
    if (!ctl->over)
      end_session(*ctl, "closed by client", static_cast<std::uint16_t>(websocket::close_code::normal), false,
                  Errc::closed);
  }

  // Writes the on_connect messages, then opens the connection to the pump.
  template <class Ws>
  net::awaitable<void> writer(Ws& ws, std::vector<Message> first, std::shared_ptr<SessionCtl> ctl) {
    ErrorCode ec;
    for (auto& m : first) {
      if (ctl->over || stopping_) co_return;
      ws.text(!m.binary);
      co_await ws.async_write(net::buffer(m.data), redirect(ec));
      if (ec) {
        if (!ctl->closing) end_session(*ctl, fmt::format("write: {}", describe(ec)), 0, true);
        co_return;
      }
      sent_.fetch_add(1, std::memory_order_relaxed);
    }
    if (ctl->over || stopping_) co_return;
    live_ctl_ = ctl.get();
    live_ws_ = &ws;
    pump_timer_.cancel();  // a pump holding a message may write it now
  }

  template <class Ws>
  void spawn_pump() {
    net::co_spawn(strand_, pump<Ws>(), [self = shared_from_this()](const std::exception_ptr& e) {
      if (e) {
        self->log_->warn("websocket {}: send pump failed", self->log_url_);
        self->request_stop();
      }
    });
  }

  // A connection is open to the pump (its on_connect messages are out) and
  // the client is not stopping.
  [[nodiscard]] bool live() const noexcept { return live_ws_ != nullptr && !stopping_; }

  // Until live(); false once the client has finished.
  net::awaitable<bool> wait_live() {
    ErrorCode ec;
    while (!live()) {
      if (finished_flag_) co_return false;
      pump_timer_.expires_at(Clock::time_point::max());
      co_await pump_timer_.async_wait(redirect(ec));
    }
    co_return true;
  }

  // The one consumer of the send queue, for the client's whole life. While a
  // connection is open it drains the queue with try_recv, and sleeps in
  // keel::asio::async_recv when the queue is empty (a send wakes it through
  // the channel; the completion runs on the strand). While none is open it
  // takes nothing out, so the queue holds send_queue_capacity messages;
  // only a message received just as the connection dropped is held here
  // (one more) until the next connection has sent its on_connect messages.
  // Order is kept across reconnects. It ends when finish() closes the queue.
  template <class Ws>
  net::awaitable<void> pump() {
    auto self = shared_from_this();
    ErrorCode ec;
    for (;;) {
      // (wait_live() only when not live: a coroutine call per message is not free)
      if (!live() && !co_await wait_live()) co_return;
      auto r = out_rx_.try_recv();
      if (!r && r.error().code() == Errc::empty) {
        r = co_await keel::asio::async_recv(out_rx_, net::use_awaitable);
      }
      if (!r) co_return;  // closed by finish(), which counted what was left
      if (!live() && !co_await wait_live()) {
        note_dropped(1);  // dropped on close, like the rest of the queue
        co_return;
      }
      auto& ws = *static_cast<Ws*>(live_ws_);
      const auto ctl = live_ctl_->shared_from_this();
      // Each message is written as soon as it is taken (TCP_NODELAY): no
      // TCP_CORK around bursts, which measured slower (the peer could not
      // start on a burst before its end; see docs/websocket.md).
      ++ctl->children;  // the session waits for this write before it drops the stream
      ws.text(!r->binary);
      co_await ws.async_write(net::buffer(r->data), redirect(ec));
      if (!ec) {
        sent_.fetch_add(1, std::memory_order_relaxed);  // before note_done: a flush that returns sees it
        note_done();
      } else {
        note_dropped(1);  // maybe partly written: never sent again (at most once)
      }
      if (ec && !ctl->closing) {  // (our close handshake ends the session by itself)
        if (!ctl->over) log_->warn("websocket {}: write failed: {}", log_url_, describe(ec));
        end_session(*ctl, fmt::format("write: {}", describe(ec)), 0, true);
      }
      child_done(*ctl);
    }
  }

  template <class Ws>
  net::awaitable<void> heartbeat(Ws& ws, std::shared_ptr<SessionCtl> ctl) {
    if (cfg_.ping_interval.count() <= 0) co_return;
    auto next = Clock::now();
    ErrorCode ec;
    for (;;) {
      next += cfg_.ping_interval;
      ctl->heartbeat.expires_at(next);
      co_await ctl->heartbeat.async_wait(redirect(ec));
      if (ctl->over || stopping_) co_return;
      if (ctl->peer_closing || !ws.is_open()) continue;  // closing: bounded by close_timeout instead
      if (reader_blocked_) missed_pongs_ = 0;            // pongs are only seen while reading
      if (missed_pongs_ >= cfg_.max_missed_pongs) {
        log_->warn("websocket {}: no pong for {} pings, peer is dead", log_url_, missed_pongs_);
        end_session(*ctl, fmt::format("peer unresponsive: no pong for {} pings", missed_pongs_), 0, true,
                    Errc::timeout);
        co_return;
      }
      if (!ctl->ping_in_flight) {
        ctl->ping_in_flight = true;
        ++ctl->children;
        ws.async_ping({}, [self = shared_from_this(), ctl](const ErrorCode& e) {
          ctl->ping_in_flight = false;
          if (e && !ctl->over && !ctl->closing) {
            self->end_session(*ctl, fmt::format("ping: {}", e.message()), 0, true);
          }
          self->child_done(*ctl);
        });
      }
      ++missed_pongs_;
    }
  }

  // cross-thread
  std::atomic<bool> stop_requested_{false};
  std::atomic<std::uint64_t> accepted_{0};
  std::atomic<std::uint64_t> done_{0};
  std::atomic<std::uint32_t> flushers_{0};  // flush() calls waiting
  std::atomic<std::uint64_t> sent_{0};
  std::atomic<std::uint64_t> dropped_{0};
  std::atomic<std::uint64_t> inbound_bytes_{0};
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool finished_ = false;  // guarded by done_mu_
  // Send positions [first, second) settled without being written, not yet
  // reported by a flush; flush_base_: positions below it were reported.
  std::vector<std::pair<std::uint64_t, std::uint64_t>> drop_ranges_;  // guarded by done_mu_
  std::uint64_t flush_base_ = 0;                                      // guarded by done_mu_

 public:
  std::mutex close_mu_;  // one Client::close() at a time waits and joins

 private:
  // strand only
  net::steady_timer pump_timer_;  // wakes a pump that waits for a connection
  net::steady_timer retry_timer_;
  net::steady_timer event_timer_;
  std::function<void()> abort_io_;        // cuts the current resolve or socket
  std::function<void()> graceful_close_;  // starts a close handshake on the open connection
  std::mutex subprotocol_mu_;
  std::string subprotocol_;         // guarded by subprotocol_mu_: the last connection's
  SessionCtl* live_ctl_ = nullptr;  // the open connection the pump writes on,
  void* live_ws_ = nullptr;         // once its on_connect messages are out
  bool stopping_ = false;
  bool finished_flag_ = false;
  bool reader_blocked_ = false;
  std::uint32_t missed_pongs_ = 0;
  // The inbound byte budget: the running payload total of the events sent
  // on the event channel, and that total after each of the last ones.
  std::uint64_t pushed_ = 0;
  std::uint64_t pushed_bytes_ = 0;
  std::vector<std::uint64_t> push_marks_;
};

// The io_context and thread of a client that runs on its own thread.
struct Runner {
  net::io_context ioc{1};
  std::thread thread;
  std::atomic<bool> orphaned{false};  // the thread deletes this Runner when run() returns
};

// io_context::run(), except that the thread keeps polling for `spin` after
// its last handler before it sleeps in the reactor (ClientConfig::busy_poll):
// a send, or the peer's reply, that comes within `spin` is picked up without
// the kernel having to wake this thread.
inline void run_busy(net::io_context& ioc, std::chrono::microseconds spin) {
  auto idle_since = Clock::now();
  for (;;) {
    if (ioc.poll() != 0) {
      idle_since = Clock::now();
      continue;
    }
    if (ioc.stopped()) return;  // out of work, or stop(): as run() would return
    if (Clock::now() - idle_since < spin) {
      for (int i = 0; i < 16; ++i) keel::detail::cpu_relax();
      continue;
    }
    if (ioc.run_one() == 0) return;
    idle_since = Clock::now();
  }
}

inline Result<net::ssl::context> make_tls_context(const TlsConfig& tls) {
  try {
    net::ssl::context ctx(net::ssl::context::tls_client);
    SSL_CTX_set_min_proto_version(ctx.native_handle(), TLS1_2_VERSION);
    if (tls.verify_peer) {
      ctx.set_verify_mode(net::ssl::verify_peer);
      if (!tls.ca_file.empty()) ctx.load_verify_file(tls.ca_file);
      if (!tls.ca_pem.empty()) ctx.add_certificate_authority(net::buffer(tls.ca_pem));
      if (tls.ca_file.empty() && tls.ca_pem.empty()) ctx.set_default_verify_paths();
    } else {
      ctx.set_verify_mode(net::ssl::verify_none);
    }
    return ctx;
  } catch (const boost::system::system_error& e) {
    return fail(Errc::config, "TLS setup: {}", e.what());
  }
}

}  // namespace detail

/// A WebSocket client that keeps one connection alive: heartbeat, reconnect
/// with full-jitter backoff, a bounded send queue and an event channel.
/// Movable, not copyable; the destructor calls close().
class Client {
 public:
  /// Starts a client on a thread of its own. Returns at once (the connection
  /// is made in the background; watch the events); fails only on a bad URL
  /// (Errc::invalid_argument) or config (Errc::config).
  [[nodiscard]] static Result<Client> start(ClientConfig config) {
    auto runner = std::make_unique<detail::Runner>();
    const auto spin = config.busy_poll;
    KEEL_TRY_ASSIGN(auto state, make_state(runner->ioc.get_executor(), true, std::move(config)));
    Client c;
    c.state_ = std::move(state);
    c.state_->launch();
    runner->thread = std::thread([r = runner.get(), log = c.state_->log_, spin] {
      try {
        if (spin.count() > 0) {
          detail::run_busy(r->ioc, spin);
        } else {
          r->ioc.run();
        }
      } catch (const std::exception& e) {
        log->warn("websocket: io thread stopped: {}", e.what());
      }
      // acquire: pairs with the release in ~Client on this very thread (a
      // Client destroyed by one of its own handlers hands the runner over).
      if (r->orphaned.load(std::memory_order_acquire)) delete r;
    });
    c.runner_ = std::move(runner);
    return c;
  }

  /// Starts a client on the caller's executor (all its work runs on a strand
  /// of it, or on the executor itself when it is a strand already). Keep the
  /// execution context running until the client has finished (close() has
  /// returned, or the event channel has closed).
  [[nodiscard]] static Result<Client> start(boost::asio::any_io_executor executor, ClientConfig config) {
    KEEL_TRY_ASSIGN(auto state, make_state(std::move(executor), false, std::move(config)));
    Client c;
    c.state_ = std::move(state);
    c.state_->launch();
    return c;
  }

  Client(Client&&) noexcept = default;
  Client& operator=(Client&& other) noexcept {
    if (this != &other) {
      close();
      runner_ = std::move(other.runner_);
      state_ = std::move(other.state_);
    }
    return *this;
  }
  Client(const Client&) = delete;
  Client& operator=(const Client&) = delete;
  ~Client() {
    if (state_ && runner_ && state_->running_here()) {
      // Destroyed by a handler on its own I/O thread: that thread cannot be
      // joined from itself, and the io_context it runs cannot be destroyed
      // under it. Start the close; the thread frees the runner when it ends.
      state_->request_stop();
      runner_->orphaned.store(true, std::memory_order_release);  // release: read by the thread at its end
      runner_->thread.detach();
      (void)runner_.release();
      return;
    }
    close();
  }

  /// Queues a message, waiting while the queue is full (backpressure).
  /// Errc::closed after close() or gave_up; the message comes back in the error.
  SendResult<Message> send(Message m) {
    if (!state_) return {Error(Errc::closed), std::move(m)};
    state_->pre_accept();
    return state_->accept(state_->out_tx_.send(std::move(m)));
  }
  /// Queues a text message (waits while the queue is full).
  SendResult<Message> send(std::string_view text) { return send(Message{std::string(text)}); }

  /// Queues a message without waiting: Errc::full or Errc::closed.
  SendResult<Message> try_send(Message m) {
    if (!state_) return {Error(Errc::closed), std::move(m)};
    state_->pre_accept();
    return state_->accept(state_->out_tx_.try_send(std::move(m)));
  }

  /// Queues a message, waiting at most `timeout` for room: Errc::timeout.
  template <class Rep, class Period>
  SendResult<Message> send_for(Message m, std::chrono::duration<Rep, Period> timeout) {
    if (!state_) return {Error(Errc::closed), std::move(m)};
    state_->pre_accept();
    return state_->accept(state_->out_tx_.send_for(std::move(m), timeout));
  }

  /// Waits until every message accepted before the call has been written to
  /// a socket, at most `timeout`. Errc::timeout when some are still queued;
  /// Errc::io when some were dropped (the connection died while they were
  /// being written: they may or may not have reached the peer); Errc::closed
  /// when the client ended with some unsent. A dropped message is reported
  /// to one flush (the first that covers it), not to every later one.
  template <class Rep, class Period>
  Result<void> flush(std::chrono::duration<Rep, Period> timeout) {
    if (!state_) return fail(Errc::closed, "client closed");
    return state_->flush_until(detail::deadline_after(timeout));
  }
  /// flush() with a deadline on any clock.
  template <class C, class D>
  Result<void> flush_until(std::chrono::time_point<C, D> deadline) {
    if (!state_) return fail(Errc::closed, "client closed");
    return state_->flush_until(detail::to_steady(deadline));
  }

  /// The event channel (a keel::Receiver; copy it to read from elsewhere).
  /// It closes after the last event (after close() or gave_up). A moved-from
  /// Client hands out a closed, empty channel.
  [[nodiscard]] Receiver<Event>& events() noexcept { return state_ ? state_->ev_rx_ : closed_events(); }
  /// The next event, waiting; Errc::closed after the last one.
  [[nodiscard]] Result<Event> next_event() { return events().recv(); }
  /// The next event, waiting at most `timeout`: Errc::timeout.
  template <class Rep, class Period>
  [[nodiscard]] Result<Event> next_event_for(std::chrono::duration<Rep, Period> timeout) {
    return events().recv_for(timeout);
  }
  /// The next event, waiting until `deadline`: Errc::timeout.
  template <class C, class D>
  [[nodiscard]] Result<Event> next_event_until(std::chrono::time_point<C, D> deadline) {
    return events().recv_until(detail::to_steady(deadline));
  }
  /// The next event if there is one: Errc::empty.
  [[nodiscard]] Result<Event> try_next_event() { return events().try_recv(); }

  /// Closes: a clean close handshake if open (bounded by close_timeout), or
  /// abandons the connect or retry under way; drops what is still queued.
  /// Returns once the connection is gone. Idempotent. Called on a thread
  /// that runs the client's executor (a handler or coroutine on the caller's
  /// io_context, on_connect), it only starts the close, since waiting there
  /// would block the work it waits for: the event channel closes when the
  /// client has finished.
  void close() {
    if (!state_) return;
    state_->request_stop();
    if (state_->running_here()) return;
    // Two threads closing at once: the second waits for the first, then
    // finds the thread joined.
    const std::lock_guard lock(state_->close_mu_);
    const auto bound = state_->cfg_.close_timeout + std::chrono::milliseconds(2000);
    if (runner_) {
      if (runner_->thread.get_id() == std::this_thread::get_id()) {
        runner_->thread.detach();
        (void)runner_.release();  // cannot destroy the io_context from its own thread
        return;
      }
      if (!state_->wait_finished(bound)) {
        state_->log_->warn("websocket {}: close did not finish in time; stopping", state_->log_url_);
        runner_->ioc.stop();
        state_->out_rx_.close();  // the send pump's pending receive must not outlive the io_context
      }
      if (runner_->thread.joinable()) runner_->thread.join();
    } else if (state_->context_stopped()) {
      // Nothing will run the close. End both queues, so that the writer's
      // pending receive (and an application's async_recv on the events),
      // which hold the client's state, are released with the io_context
      // instead of waiting in the channels forever.
      state_->out_rx_.close();
      state_->ev_tx_.close();
    } else {
      (void)state_->wait_finished(bound);
    }
  }

  [[nodiscard]] bool is_connected() const noexcept { return state_ && state_->connected_.load(); }
  [[nodiscard]] ClientStats stats() const noexcept { return state_ ? state_->stats() : ClientStats{}; }
  /// The subprotocol the server chose on the last connection (empty: none).
  [[nodiscard]] std::string subprotocol() const { return state_ ? state_->subprotocol() : std::string(); }

  /// The URL connected to (an empty Url for a moved-from Client).
  [[nodiscard]] const Url& url() const noexcept {
    static const Url none{};
    return state_ ? state_->url_ : none;
  }

 private:
  Client() = default;

  static Receiver<Event>& closed_events() noexcept {
    static Receiver<Event> rx = [] {
      auto ch = keel::detail::make_channel_checked<Event>(1, false);
      ch->first.close();
      return std::move(ch->second);
    }();
    return rx;
  }

  static Result<std::shared_ptr<detail::State>> make_state(boost::asio::any_io_executor ex, bool serial,
                                                           ClientConfig config) {
    KEEL_TRY_ASSIGN(auto url, Url::parse(config.url).context("websocket client url"));
    KEEL_TRY(config.validate().context("websocket client config"));
    std::optional<boost::asio::ssl::context> ssl;
    if (url.secure) {
      KEEL_TRY_ASSIGN(auto ctx, detail::make_tls_context(config.tls));
      ssl.emplace(std::move(ctx));
    }
    // Fenced wake-ups: the send pump and an application awaiting events with
    // keel::asio::async_recv re-arm a waiter after nearly every message, and
    // a membarrier(2) per arm (the default channel's waiter half, which
    // interrupts every other running thread of the process) would cost more
    // than a fence on each send and event.
    KEEL_TRY_ASSIGN(auto out, keel::detail::make_channel_checked<Message>(config.send_queue_capacity, true));
    KEEL_TRY_ASSIGN(auto ev, keel::detail::make_channel_checked<Event>(config.event_queue_capacity, true));
    return std::make_shared<detail::State>(std::move(ex), serial, std::move(config), std::move(url),
                                           std::move(ssl), std::move(out), std::move(ev));
  }

  // Declared first so it is destroyed last: the state's timers belong to its io_context.
  std::unique_ptr<detail::Runner> runner_;
  std::shared_ptr<detail::State> state_;
};

}  // namespace keel::ws

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
