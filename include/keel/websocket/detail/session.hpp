// keel/websocket/detail/session.hpp: the machinery of keel::ws::Client:
// the connection loop (attempts, backoff, events), one open connection's
// reader, writer, heartbeat and closing handshakes, and the send and flush
// bookkeeping. Not part of the API.
#pragma once

#include <keel/websocket/detail/net.hpp>  // first: it configures Asio's coroutines

#include <keel/backoff.hpp>
#include <keel/channel.hpp>
#include <keel/channel/asio.hpp>
#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/websocket/config.hpp>
#include <keel/websocket/detail/http_connect.hpp>
#include <keel/websocket/detail/outcome.hpp>
#include <keel/websocket/detail/resolve.hpp>
#include <keel/websocket/detail/time_budget.hpp>
#include <keel/websocket/detail/tls.hpp>
#include <keel/websocket/event.hpp>
#include <keel/websocket/proxy.hpp>
#include <keel/websocket/url.hpp>

#include <fmt/format.h>

#include <boost/asio/bind_executor.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <exception>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// g++ 12 at -O1 and above reports -Wmismatched-new-delete on Asio's
// coroutine frames (their class-specific operator new/delete pair is
// correct; the warning is a known false positive for coroutine frames).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace keel::ws::detail {

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
    std::optional<TimeBudget> connecting;
    connecting.emplace(strand_, cfg_.connect_timeout, [this] {
      if (abort_io_) abort_io_();
    });
    const TimeBudget& whole = *connecting;
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
      ec = co_await resolve(strand_, first_hop, endpoints, abort_io_);
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
      ec = co_await connect_any(strand_, lowest, std::move(endpoints), abort_io_);
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
          const std::string& name = cfg_.tls.server_name.empty() ? url.host : cfg_.tls.server_name;
          prepare_tls(ws->next_layer().native_handle(), name, cfg_.tls.verify_peer);
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
        const TimeBudget d(strand_, cfg_.handshake_timeout, abort_io_);
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
        // While the pump is writing a burst, let it (and the application)
        // run before the read is armed again: that read would mostly find
        // the socket empty (a wasted recvmsg before the reactor waits), and
        // the writes would be spread between the replies, so the peer gets
        // them one by one. Not when idle: a lone reply is read at once.
        if (writing_) co_await net::post(strand_, net::use_awaitable);
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
    const TimeBudget d(strand_, cfg_.close_timeout, [this] {
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
      writing_ = true;
      co_await ws.async_write(net::buffer(r->data), redirect(ec));
      writing_ = false;
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
  bool writing_ = false;  // the pump's write is in flight (the reader yields to it)
  std::uint32_t missed_pongs_ = 0;
  // The inbound byte budget: the running payload total of the events sent
  // on the event channel, and that total after each of the last ones.
  std::uint64_t pushed_ = 0;
  std::uint64_t pushed_bytes_ = 0;
  std::vector<std::uint64_t> push_marks_;
};

}  // namespace keel::ws::detail

#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic pop
#endif
