// keel/postgres/listen.hpp: LISTEN/NOTIFY as a keel channel.
//
// Part of <keel/postgres.hpp>.
//
//     KEEL_TRY_ASSIGN(auto rx, keel::pg::listen(pool, "jobs"));
//     while (auto n = rx.recv()) {
//       if (n->gap) { rescan(); continue; }      // reconnected: notifications may have been missed
//       handle(n->payload);
//     }
//
// listen() opens a dedicated connection (not one of the pool's max_size),
// runs LISTEN on it and starts a thread that forwards each notification to
// the returned Receiver, in the order the server delivered them. When the
// connection drops (server restart, pg_terminate_backend, network), the
// thread reconnects on the pool's reconnect_backoff schedule, listens again,
// and then sends one Notification with `gap = true`: notifications sent
// while it was away are lost (PostgreSQL does not keep them for absent
// listeners), so the receiver should re-read whatever state they announce.
// The thread stops, and the connection closes, when every Receiver is gone
// or the pool closes (the receivers then drain and see Errc::closed).
// A full channel makes the thread wait (backpressure): the server keeps the
// rest queued for this connection meanwhile.
//
// Thread-safety: the Receiver is a keel channel receiver (any thread).
#pragma once

#include <keel/channel.hpp>
#include <keel/postgres/error.hpp>
#include <keel/postgres/pool.hpp>
#include <keel/result.hpp>

#include <libpq-fe.h>
#include <poll.h>

#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

namespace keel::pg {

/// One notification (NOTIFY channel, 'payload').
struct Notification {
  std::string channel;  ///< the channel it was sent on
  std::string payload;  ///< "" when NOTIFY had none
  int backend_pid = 0;  ///< the server process of the connection that sent it
  /// True for the marker sent after a reconnect (payload empty): anything
  /// sent while the listener was disconnected was missed.
  bool gap = false;
};

/// How listen() buffers.
struct ListenOptions {
  /// Notifications buffered in the channel before the listener waits (at least 1).
  std::size_t capacity = 1024;

  /// Errc::config for a capacity of 0, or success.
  [[nodiscard]] Result<void> validate() const {
    if (capacity == 0) return fail(Errc::config, "ListenOptions::capacity must be at least 1");
    return {};
  }
};

namespace detail {

class Listener {
 public:
  Listener(std::shared_ptr<PoolState> pool, std::string channel, std::unique_ptr<Conn> conn,
           Sender<Notification> tx) noexcept
      : pool_(std::move(pool)), channel_(std::move(channel)), conn_(std::move(conn)), tx_(std::move(tx)) {}

  /// The LISTEN statement for a channel name (quoted as an identifier).
  static Result<std::string> listen_sql(PGconn* pg, std::string_view channel) {
    char* q = PQescapeIdentifier(pg, channel.data(), channel.size());
    if (q == nullptr)
      return fail(Errc::invalid_argument, "bad channel name: {}", trim_message(PQerrorMessage(pg)));
    std::string sql = std::string("LISTEN ") + q;
    PQfreemem(q);
    return sql;
  }

  static Result<void> subscribe(Conn& c, std::string_view channel) {
    KEEL_TRY_ASSIGN(std::string sql, listen_sql(c.pg, channel));
    PGresult* r = PQexec(c.pg, sql.c_str());
    if (r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK) {
      PQclear(r);
      return {};
    }
    auto e = check_result(c, r, sql);
    return unexpected<Error>(std::move(e).error());
  }

  void run() noexcept {
    Backoff backoff(pool_->config().reconnect_backoff);
    while (live()) {
      if (!conn_) {
        auto c = pool_->open_dedicated(Clock::now() + pool_->config().connect_timeout);
        if (c && subscribe(**c, channel_)) {
          conn_ = std::move(*c);
          backoff.reset();
          if (!deliver(Notification{channel_, {}, 0, true})) return;
          continue;
        }
        pause(backoff.next());
        continue;
      }
      if (!pump()) conn_.reset();  // dropped: reconnect on the next turn
    }
  }

 private:
  [[nodiscard]] bool live() const noexcept { return !pool_->stopping() && !tx_.is_closed(); }

  void pause(std::chrono::milliseconds d) const noexcept {
    const auto until = Clock::now() + d;
    while (live() && Clock::now() < until) {
      std::this_thread::sleep_for(
          std::min<Clock::duration>(until - Clock::now(), std::chrono::milliseconds(50)));
    }
  }

  /// Waits for input (up to 100 ms, so closing is noticed) and forwards what
  /// arrived. False when the connection is gone.
  bool pump() noexcept {
    PGconn* pg = conn_->pg;
    const int fd = PQsocket(pg);
    if (fd < 0) return false;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, 100);
    if (r < 0 && errno != EINTR) return false;
    if (r > 0) {
      if (PQconsumeInput(pg) == 0) return false;
      while (PGnotify* n = PQnotifies(pg)) {
        Notification out{n->relname != nullptr ? n->relname : "", n->extra != nullptr ? n->extra : "",
                         n->be_pid, false};
        PQfreemem(n);
        if (!deliver(std::move(out))) return true;  // receivers gone: run() ends
      }
    }
    return PQstatus(pg) == CONNECTION_OK;
  }

  /// Sends with backpressure, checking now and then that someone still listens.
  bool deliver(Notification n) noexcept {
    while (live()) {
      auto s = tx_.send_for(std::move(n), std::chrono::milliseconds(100));
      if (s) return true;
      if (s.error().code() != Errc::timeout) return false;
      n = std::move(s.error()).into_inner();
    }
    return false;
  }

  std::shared_ptr<PoolState> pool_;
  std::string channel_;
  std::unique_ptr<Conn> conn_;
  Sender<Notification> tx_;
};

}  // namespace detail

/// Listens on `channel` over a dedicated connection; notifications arrive on
/// the returned Receiver (see the header for reconnects and gaps). Fails
/// when the first connection or the LISTEN fails.
[[nodiscard]] inline Result<Receiver<Notification>> listen(const Pool& pool, std::string_view channel,
                                                           ListenOptions opts = {}) {
  const auto& owner = detail::ConnAccess::owner(pool);
  if (!owner) return fail(Errc::closed, "the pool was moved from");
  if (channel.empty()) return fail(Errc::invalid_argument, "listen: empty channel name");
  KEEL_TRY(opts.validate());
  auto state = owner->state();
  if (state->stopping()) return fail(Errc::closed, "the pool is closed");
  KEEL_TRY_ASSIGN(auto chan, make_channel<Notification>(opts.capacity));
  KEEL_TRY_ASSIGN(auto conn, state->open_dedicated(detail::Clock::now() + state->config().connect_timeout));
  KEEL_TRY(detail::Listener::subscribe(*conn, channel).context(fmt::format("listening on \"{}\"", channel)));
  auto listener =
      std::make_shared<detail::Listener>(state, std::string(channel), std::move(conn), std::move(chan.first));
  state->add_listener(std::thread([listener] { listener->run(); }));
  return std::move(chan.second);
}

}  // namespace keel::pg
