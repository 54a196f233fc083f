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

#include <keel/websocket/detail/net.hpp>  // first: it configures Asio's coroutines

#include <keel/channel.hpp>
#include <keel/result.hpp>
#include <keel/websocket/config.hpp>
#include <keel/websocket/detail/runner.hpp>
#include <keel/websocket/detail/session.hpp>
#include <keel/websocket/detail/tls.hpp>
#include <keel/websocket/event.hpp>
#include <keel/websocket/proxy.hpp>
#include <keel/websocket/url.hpp>

#include <boost/asio/any_io_executor.hpp>

#include <chrono>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>

// g++ 12 at -O1 and above reports -Wmismatched-new-delete on Asio's
// coroutine frames (their class-specific operator new/delete pair is
// correct; the warning is a known false positive for coroutine frames).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace keel::ws {

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
      auto ch = keel::make_channel<Event>(1);
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
    KEEL_TRY_ASSIGN(auto out, keel::make_fenced_channel<Message>(config.send_queue_capacity));
    KEEL_TRY_ASSIGN(auto ev, keel::make_fenced_channel<Event>(config.event_queue_capacity));
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
