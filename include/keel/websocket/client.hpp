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
//   sent again: at most once). close() drops what is still queued.
// - A peer that answers no ping is declared dead no later than
//   ping_interval x (max_missed_pongs + 1) after its last pong.
// - Events arrive in order through a bounded keel channel; when it is full
//   the client stops reading (backpressure) and does not count missed pongs.
//   The channel is closed after the last event (after close() or gave_up).
// - close() returns after the connection is closed (close handshake bounded
//   by close_timeout) whatever the state; on_connect never runs after that.
//   On a thread that runs the client's own executor it only starts the
//   close (waiting there would block it); the event channel closes when done.
#pragma once

#include <keel/channel/asio.hpp>
#include <keel/backoff.hpp>
#include <keel/channel.hpp>
#include <keel/detail/cpu_relax.hpp>
#include <keel/log.hpp>
#include <keel/result.hpp>
#include <keel/websocket/event.hpp>
#include <keel/websocket/url.hpp>

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
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
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
  Clock::time_point opened_at{};
  std::string reason;
  std::uint16_t close_code = 0;
};

// One open connection's shared bookkeeping (strand only).
struct SessionCtl : std::enable_shared_from_this<SessionCtl> {
  explicit SessionCtl(const Strand& s) : children_done(s), heartbeat(s) {}
  bool over = false;     // the session is ending; the first reason wins
  bool closing = false;  // a close handshake was started by us
  bool ping_in_flight = false;
  std::string reason;
  std::uint16_t close_code = 0;
  int children = 0;  // writer, heartbeat, ping, close operations still running
  net::steady_timer children_done;
  net::steady_timer heartbeat;
};

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
        log_(cfg_.logger ? cfg_.logger : keel::log::logger()),
        ioc_(io_context_of(ex)),
        strand_(serial || is_strand(ex) ? std::move(ex) : Strand(net::make_strand(std::move(ex)))),
        ssl_(std::move(ssl)),
        out_tx_(std::move(out.first)),
        out_rx_(std::move(out.second)),
        ev_tx_(std::move(ev.first)),
        ev_rx_(std::move(ev.second)),
        pump_timer_(strand_),
        retry_timer_(strand_),
        event_timer_(strand_) {}

  // ---- any thread ----

  void launch() {
    if (url_.secure) {
      spawn_pump<TlsWs>();
    } else {
      spawn_pump<PlainWs>();
    }
    net::co_spawn(strand_, run(), [self = shared_from_this()](const std::exception_ptr& e) {
      if (e) {
        try {
          std::rethrow_exception(e);
        } catch (const std::exception& ex) {
          self->log_->warn("websocket {}: internal failure: {}", self->url_.to_string(), ex.what());
        } catch (...) {
          self->log_->warn("websocket {}: internal failure", self->url_.to_string());
        }
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

  Result<void> flush(std::chrono::milliseconds timeout) {
    const auto target = accepted_.load(std::memory_order_acquire);
    const auto deadline = Clock::now() + timeout;
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
    if (!ok) return fail(Errc::timeout, "flush: {} messages still queued", target - done_.load());
    if (done_.load(std::memory_order_acquire) < target) return fail(Errc::closed, "client closed");
    return {};
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
    s.messages_received = received_.load(std::memory_order_relaxed);
    s.connections = connections_.load(std::memory_order_relaxed);
    s.reconnects = reconnects_.load(std::memory_order_relaxed);
    const auto a = accepted_.load(std::memory_order_relaxed);
    const auto d = done_.load(std::memory_order_relaxed);
    s.queued = a > d ? a - d : 0;
    return s;
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
  std::shared_ptr<spdlog::logger> log_;
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
  void note_done(std::uint64_t n = 1) {
    done_.fetch_add(n, std::memory_order_seq_cst);  // seq_cst: see flush()
    if (flushers_.load(std::memory_order_seq_cst) == 0) return;
    { const std::lock_guard lock(done_mu_); }  // a flusher is checking or waiting, not in between
    done_cv_.notify_all();
  }

  void finish() {
    if (finished_flag_) return;
    finished_flag_ = true;
    connected_.store(false, std::memory_order_relaxed);
    out_rx_.close();  // blocked and later senders get Errc::closed
    std::uint64_t dropped = 0;
    while (out_rx_.try_recv()) ++dropped;
    if (dropped != 0)
      log_->debug("websocket {}: dropped {} queued messages on close", url_.to_string(), dropped);
    ev_tx_.close();        // the application drains what is buffered, then gets Errc::closed
    pump_timer_.cancel();  // a pump holding a message drops it and ends
    {
      const std::lock_guard lock(done_mu_);
      done_.fetch_add(dropped, std::memory_order_release);
      finished_ = true;
    }
    done_cv_.notify_all();
  }

  // Hands an event to the application; waits (without blocking the strand)
  // while the channel is full, unless the client is stopping.
  net::awaitable<void> emit(Event e, SessionCtl* ctl = nullptr) {
    auto wait = std::chrono::milliseconds(1);
    for (;;) {
      auto r = ev_tx_.try_send(std::move(e));
      if (r || r.error().code() != Errc::full || stopping_) co_return;  // closed: nobody listens
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
    while (!stopping_) {
      Outcome out;
      if (url_.secure) {
        out = co_await attempt<TlsWs>();
      } else {
        out = co_await attempt<PlainWs>();
      }
      if (stopping_) break;
      if (out.opened && Clock::now() - out.opened_at >= cfg_.stable_after) {
        backoff.reset();
        failures = 0;
      }
      if (cfg_.max_retries != 0 && failures >= cfg_.max_retries) {
        log_->warn("websocket {}: giving up after {} retries: {}", url_.to_string(), failures, out.reason);
        Event e{.kind = EventKind::gave_up, .reason = out.reason};
        co_await emit(std::move(e));
        break;
      }
      ++failures;
      const auto delay = backoff.next();
      reconnects_.fetch_add(1, std::memory_order_relaxed);
      log_->debug("websocket {}: reconnect attempt {} in {} ms ({})", url_.to_string(), failures,
                  delay.count(), out.reason);
      Event e{.kind = EventKind::reconnecting, .reason = out.reason, .attempt = failures, .delay = delay};
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

  template <class Ws>
  net::awaitable<Outcome> attempt() {
    Outcome out;
    ErrorCode ec;
    struct Reset {  // the abort hooks must not outlive what they point to
      State* s;
      ~Reset() {
        s->abort_io_ = nullptr;
        s->graceful_close_ = nullptr;
      }
    };

    // 1. resolve
    tcp::resolver resolver(strand_);
    tcp::resolver::results_type endpoints;
    {
      const Reset reset{this};
      abort_io_ = [&resolver] { resolver.cancel(); };
      const Deadline d(strand_, cfg_.connect_timeout, [&resolver] { resolver.cancel(); });
      const std::string service = std::to_string(url_.port);
      endpoints = co_await resolver.async_resolve(url_.host, service, redirect(ec));
      if (d.fired()) ec = beast::error::timeout;
    }
    if (stopping_) co_return out;
    if (ec) {
      out.reason = fmt::format("resolving {}: {}", url_.host, describe(ec));
      log_->warn("websocket {}: {}", url_.to_string(), out.reason);
      co_return out;
    }

    // 2. TCP connect and TLS handshake, under connect_timeout
    auto ws = make_stream<Ws>();
    const Reset reset{this};
    auto& lowest = beast::get_lowest_layer(*ws);
    abort_io_ = [&lowest] {
      ErrorCode ignored;
      lowest.shutdown(tcp::socket::shutdown_both, ignored);
      lowest.close(ignored);
    };
    const char* step = "connecting";
    {
      const Deadline d(strand_, cfg_.connect_timeout, abort_io_);
      co_await net::async_connect(lowest, endpoints, redirect(ec));
      if (!ec) {
        ErrorCode ignored;  // small messages go out at once (no Nagle delay)
        lowest.set_option(tcp::no_delay(true), ignored);
      }
      if constexpr (std::is_same_v<Ws, TlsWs>) {
        if (!ec && !stopping_) {
          step = "TLS handshake";
          auto* ssl = ws->next_layer().native_handle();
          const std::string& name = cfg_.tls.server_name.empty() ? url_.host : cfg_.tls.server_name;
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
      if (d.fired()) ec = beast::error::timeout;
    }
    if (stopping_) co_return out;
    if (ec) {
      out.reason = fmt::format("{} to {}:{}: {}", step, url_.host, url_.port, describe(ec));
      log_->warn("websocket {}: {}", url_.to_string(), out.reason);
      co_return out;
    }

    // 3. the HTTP upgrade, under handshake_timeout
    ws->set_option(websocket::stream_base::timeout{websocket::stream_base::none(),
                                                   websocket::stream_base::none(), false});
    ws->set_option(websocket::stream_base::decorator([this](websocket::request_type& req) {
      req.set(beast::http::field::user_agent, "keel-websocket");
      for (const auto& [name, value] : cfg_.headers) req.set(name, value);
    }));
    ws->read_message_max(cfg_.max_message_size);
    // One masked frame per message, masked into a buffer large enough that a
    // message up to 64 KiB goes out in a single socket write (Beast's default
    // is 4 KiB frames: 16 writes, 16 frame headers for the peer to parse).
    ws->auto_fragment(false);
    ws->write_buffer_bytes(kWriteBufferBytes);
    websocket::response_type res;
    {
      const Deadline d(strand_, cfg_.handshake_timeout, abort_io_);
      const std::string host = url_.host_header();
      co_await ws->async_handshake(res, host, url_.target, redirect(ec));
      if (d.fired()) ec = beast::error::timeout;
    }
    if (stopping_) co_return out;
    if (ec) {
      out.reason = ec == websocket::error::upgrade_declined
                       ? fmt::format("handshake declined with HTTP {}", res.result_int())
                       : fmt::format("handshake: {}", describe(ec));
      log_->warn("websocket {}: {}", url_.to_string(), out.reason);
      co_return out;
    }

    // 4. open
    out.opened = true;
    out.opened_at = Clock::now();
    connected_.store(true, std::memory_order_relaxed);
    connections_.fetch_add(1, std::memory_order_relaxed);
    log_->debug("websocket {}: connected", url_.to_string());
    {
      Event e{.kind = EventKind::connected};
      co_await emit(std::move(e));
    }
    std::vector<Message> first;
    if (cfg_.on_connect && !stopping_) {
      try {
        first = cfg_.on_connect();
      } catch (const std::exception& e) {
        log_->warn("websocket {}: on_connect threw: {}", url_.to_string(), e.what());
      }
    }
    co_await session(*ws, std::move(first), out);
    connected_.store(false, std::memory_order_relaxed);
    log_->debug("websocket {}: disconnected: {}", url_.to_string(), out.reason);
    Event gone{.kind = EventKind::disconnected, .reason = out.reason, .close_code = out.close_code};
    co_await emit(std::move(gone));
    co_return out;
  }

  // Ends the session with `reason` (the first one wins) and cuts the socket
  // unless a clean close is under way.
  void end_session(SessionCtl& ctl, std::string reason, std::uint16_t code, bool cut) {
    if (!ctl.over) {
      ctl.over = true;
      ctl.reason = std::move(reason);
      ctl.close_code = code;
    }
    ctl.heartbeat.cancel();
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

  template <class Ws>
  net::awaitable<void> session(Ws& ws, std::vector<Message> first, Outcome& out) {
    auto ctl = std::make_shared<SessionCtl>(strand_);
    missed_pongs_ = 0;
    reader_blocked_ = false;
    ws.control_callback([this](websocket::frame_type kind, beast::string_view) {
      if (kind == websocket::frame_type::pong) missed_pongs_ = 0;
    });
    graceful_close_ = [this, ctl, &ws] {
      if (ctl->over || ctl->closing) return;
      ctl->closing = true;
      spawn_child(ctl, close_op(ws, ctl));
    };
    spawn_child(ctl, writer(ws, std::move(first), ctl));  // then hands over to the pump
    spawn_child(ctl, heartbeat(ws, ctl));
    if (stopping_) graceful_close_();

    beast::flat_buffer buffer;
    ErrorCode ec;
    for (;;) {
      co_await ws.async_read(buffer, redirect(ec));
      if (ec) break;
      received_.fetch_add(1, std::memory_order_relaxed);
      Event e{.kind = EventKind::message, .binary = ws.got_binary()};
      e.data = beast::buffers_to_string(buffer.data());
      buffer.consume(buffer.size());
      // The common case without a coroutine call: there is room.
      auto sent = ev_tx_.try_send(std::move(e));
      if (!sent && sent.error().code() == Errc::full && !stopping_) {
        Event back = std::move(sent).error().into_inner();
        co_await emit(std::move(back), ctl.get());
        reader_blocked_ = false;
      }
    }
    if (ec == websocket::error::closed) {
      const auto& r = ws.reason();
      const auto code = static_cast<std::uint16_t>(r.code);
      end_session(*ctl,
                  ctl->closing       ? std::string("closed by client")
                  : r.reason.empty() ? fmt::format("closed by peer (code {})", code)
                                     : fmt::format("closed by peer (code {}: {})", code,
                                                   std::string_view(r.reason.data(), r.reason.size())),
                  code, true);
    } else if (ec == websocket::error::message_too_big) {
      log_->warn("websocket {}: inbound message larger than {} bytes", url_.to_string(),
                 cfg_.max_message_size);
      end_session(*ctl, fmt::format("message larger than max_message_size ({} bytes)", cfg_.max_message_size),
                  static_cast<std::uint16_t>(websocket::close_code::too_big), true);
    } else {
      if (!ctl->over && !stopping_)
        log_->warn("websocket {}: read failed: {}", url_.to_string(), describe(ec));
      end_session(*ctl, stopping_ ? std::string("closed by client") : fmt::format("read: {}", describe(ec)),
                  0, true);
    }
    while (ctl->children > 0) {
      ctl->children_done.expires_at(Clock::time_point::max());
      ErrorCode ignored;
      co_await ctl->children_done.async_wait(redirect(ignored));
    }
    ws.control_callback();
    out.reason = ctl->reason;
    out.close_code = ctl->close_code;
  }

  template <class Ws>
  net::awaitable<void> close_op(Ws& ws, std::shared_ptr<SessionCtl> ctl) {
    ErrorCode ec;
    const Deadline d(strand_, cfg_.close_timeout, [this] {
      if (abort_io_) abort_io_();
    });
    co_await ws.async_close(websocket::close_code::normal, redirect(ec));
    if (!ctl->over)
      end_session(*ctl, "closed by client", static_cast<std::uint16_t>(websocket::close_code::normal), false);
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
        self->log_->warn("websocket {}: send pump failed", self->url_.to_string());
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
        note_done();  // dropped on close, like the rest of the queue
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
      note_done();
      if (!ec) {
        sent_.fetch_add(1, std::memory_order_relaxed);
      } else if (!ctl->closing) {  // (our close handshake ends the session by itself)
        if (!ctl->over) log_->warn("websocket {}: write failed: {}", url_.to_string(), describe(ec));
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
      if (reader_blocked_) missed_pongs_ = 0;  // pongs are only seen while reading
      if (missed_pongs_ >= cfg_.max_missed_pongs) {
        log_->warn("websocket {}: no pong for {} pings, peer is dead", url_.to_string(), missed_pongs_);
        end_session(*ctl, fmt::format("peer unresponsive: no pong for {} pings", missed_pongs_), 0, true);
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
  std::atomic<std::uint64_t> received_{0};
  std::atomic<std::uint64_t> connections_{0};
  std::atomic<std::uint64_t> reconnects_{0};
  std::mutex done_mu_;
  std::condition_variable done_cv_;
  bool finished_ = false;  // guarded by done_mu_

  // strand only
  net::steady_timer pump_timer_;  // wakes a pump that waits for a connection
  net::steady_timer retry_timer_;
  net::steady_timer event_timer_;
  std::function<void()> abort_io_;        // cuts the current resolve or socket
  std::function<void()> graceful_close_;  // starts a close handshake on the open connection
  SessionCtl* live_ctl_ = nullptr;        // the open connection the pump writes on,
  void* live_ws_ = nullptr;               // once its on_connect messages are out
  bool stopping_ = false;
  bool finished_flag_ = false;
  bool reader_blocked_ = false;
  std::uint32_t missed_pongs_ = 0;
};

// The io_context and thread of a client that runs on its own thread.
struct Runner {
  net::io_context ioc{1};
  std::thread thread;
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
  ~Client() { close(); }

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

  /// Waits until every message accepted before the call has been written
  /// (or dropped), at most `timeout`: Errc::timeout; Errc::closed when the
  /// client ended with messages unsent.
  Result<void> flush(std::chrono::milliseconds timeout) {
    if (!state_) return fail(Errc::closed, "client closed");
    return state_->flush(timeout);
  }

  /// The event channel (a keel::Receiver; copy it to read from elsewhere).
  /// It closes after the last event (after close() or gave_up).
  [[nodiscard]] Receiver<Event>& events() noexcept { return state_->ev_rx_; }
  /// The next event, waiting; Errc::closed after the last one.
  [[nodiscard]] Result<Event> next_event() { return state_->ev_rx_.recv(); }
  /// The next event, waiting at most `timeout`: Errc::timeout.
  template <class Rep, class Period>
  [[nodiscard]] Result<Event> next_event_for(std::chrono::duration<Rep, Period> timeout) {
    return state_->ev_rx_.recv_for(timeout);
  }
  /// The next event if there is one: Errc::empty.
  [[nodiscard]] Result<Event> try_next_event() { return state_->ev_rx_.try_recv(); }

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
    const auto bound = state_->cfg_.close_timeout + std::chrono::milliseconds(2000);
    if (runner_) {
      if (runner_->thread.get_id() == std::this_thread::get_id()) {
        runner_->thread.detach();
        (void)runner_.release();  // cannot destroy the io_context from its own thread
        return;
      }
      if (!state_->wait_finished(bound)) {
        state_->log_->warn("websocket {}: close did not finish in time; stopping", state_->url_.to_string());
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
  [[nodiscard]] const Url& url() const noexcept { return state_->url_; }

 private:
  Client() = default;

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
