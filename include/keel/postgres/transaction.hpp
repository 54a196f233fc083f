// keel/postgres/transaction.hpp: transactions that commit on success, roll
// back on error or exception, and retry serialization failures and deadlocks.
//
// Part of <keel/postgres.hpp>.
//
//     auto r = keel::pg::transaction(conn, [&](keel::pg::PooledConnection& c) -> keel::Result<void> {
//       KEEL_TRY(c.exec("UPDATE accounts SET balance = balance - $1 WHERE id = $2", 10, from));
//       KEEL_TRY(c.exec("UPDATE accounts SET balance = balance + $1 WHERE id = $2", 10, to));
//       return {};
//     }, {.isolation = keel::pg::Isolation::serializable});
//
// fn(conn) runs between BEGIN (with the options' isolation level, READ ONLY
// and DEFERRABLE) and COMMIT. When fn's Result, or the COMMIT, fails with
// SQLSTATE 40001 (serialization_failure) or 40P01 (deadlock_detected), the
// transaction is rolled back and fn runs again after a full-jitter pause,
// up to TxOptions::max_attempts runs in all; the error of the last run comes
// back with "gave up after N attempts" in its context. fn must therefore be
// safe to run more than once (no side effects outside the database, or
// idempotent ones). Any other error, or an exception (which goes on), rolls
// back and ends it. A transaction on a connection already inside one
// becomes a SAVEPOINT (its options are ignored, and it is not retried on its
// own: the outermost transaction retries).
//
// Thread-safety: as for the connection.
#pragma once

#include <keel/backoff.hpp>
#include <keel/postgres/error.hpp>
#include <keel/postgres/pool.hpp>
#include <keel/result.hpp>

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace keel::pg {

/// SQL transaction isolation levels (PostgreSQL runs read uncommitted as read committed).
enum class Isolation : std::uint8_t { read_committed, repeatable_read, serializable };

/// How transaction() begins and retries.
struct TxOptions {
  Isolation isolation = Isolation::read_committed;
  /// BEGIN ... READ ONLY: writes inside fail (SQLSTATE 25006).
  bool read_only = false;
  /// With serializable + read_only: wait for a snapshot that can never fail
  /// with a serialization error (for long reports).
  bool deferrable = false;
  /// Runs of fn in all when it keeps failing with 40001/40P01 (1: no retry).
  std::uint32_t max_attempts = 10;
  /// Pauses between runs (full jitter).
  BackoffPolicy backoff{
      .initial = std::chrono::milliseconds(2), .factor = 2.0, .max = std::chrono::milliseconds(250)};

  /// Errc::config naming the first bad field, or success.
  [[nodiscard]] Result<void> validate() const {
    if (max_attempts == 0) return fail(Errc::config, "TxOptions::max_attempts must be at least 1");
    if (auto b = backoff.validate(); !b)
      return fail(Errc::config, "TxOptions::backoff: {}", b.error().message());
    return {};
  }
};

namespace detail {

inline std::string begin_sql(const TxOptions& o) {
  std::string s = "BEGIN ISOLATION LEVEL ";
  switch (o.isolation) {
    case Isolation::read_committed:
      s += "READ COMMITTED";
      break;
    case Isolation::repeatable_read:
      s += "REPEATABLE READ";
      break;
    case Isolation::serializable:
      s += "SERIALIZABLE";
      break;
  }
  s += o.read_only ? " READ ONLY" : " READ WRITE";
  if (o.deferrable) s += " DEFERRABLE";
  return s;
}

/// Runs a transaction-control statement; the connection's error otherwise.
inline Result<void> control(Conn& c, const char* sql) {
  PGresult* r = PQexec(c.pg, sql);
  if (r != nullptr && PQresultStatus(r) == PGRES_COMMAND_OK) {
    PQclear(r);
    return {};
  }
  auto e = check_result(c, r, sql);
  return unexpected<Error>(std::move(e).error());
}

/// Rolls back whatever is open; a connection where that fails is marked broken.
inline void rollback_all(Conn& c) noexcept {
  if (PQstatus(c.pg) != CONNECTION_OK) {
    c.broken = true;
    return;
  }
  if (PQtransactionStatus(c.pg) == PQTRANS_IDLE) return;
  PGresult* r = PQexec(c.pg, "ROLLBACK");
  if (PQresultStatus(r) != PGRES_COMMAND_OK || PQtransactionStatus(c.pg) != PQTRANS_IDLE) c.broken = true;
  PQclear(r);
  c.savepoint_depth = 0;
}

template <class F, class C>
decltype(auto) invoke_tx_fn(F& fn, C& conn) {
  if constexpr (std::is_invocable_v<F&, C&>) {
    return std::invoke(fn, conn);
  } else {
    return std::invoke(fn);
  }
}

// SFINAE-friendly: an fn that takes neither C& nor nothing removes the overload.
template <class F, class C>
using tx_result_t =
    std::remove_cvref_t<typename std::conditional_t<std::is_invocable_v<F&, C&>, std::invoke_result<F&, C&>,
                                                    std::invoke_result<F&>>::type>;

/// Rolls back on scope exit unless disarmed (an exception leaving fn).
class RollbackGuard {
 public:
  RollbackGuard(Conn& c, int savepoint) noexcept : c_(c), savepoint_(savepoint) {}
  RollbackGuard(const RollbackGuard&) = delete;
  RollbackGuard& operator=(const RollbackGuard&) = delete;
  ~RollbackGuard() {
    if (armed_) undo();
  }
  void disarm() noexcept { armed_ = false; }
  void undo() noexcept {
    armed_ = false;
    if (savepoint_ == 0) {
      rollback_all(c_);
      return;
    }
    if (PQstatus(c_.pg) != CONNECTION_OK) {
      c_.broken = true;
      return;
    }
    const std::string sql =
        fmt::format("ROLLBACK TO SAVEPOINT keel_sp_{0}; RELEASE SAVEPOINT keel_sp_{0}", savepoint_);
    PQclear(PQexec(c_.pg, sql.c_str()));
    --c_.savepoint_depth;
  }

 private:
  Conn& c_;
  int savepoint_;
  bool armed_ = true;
};

template <class R, class C, class F>
R run_savepoint(Conn& c, C& conn, F& fn) {
  const int sp = ++c.savepoint_depth;
  if (auto b = control(c, fmt::format("SAVEPOINT keel_sp_{}", sp).c_str()); !b) {
    --c.savepoint_depth;
    return R(unexpected<Error>(std::move(b).error().context("opening a nested transaction")));
  }
  RollbackGuard guard(c, sp);
  R out = invoke_tx_fn(fn, conn);
  if (!out.has_value()) {
    guard.undo();
    return out;
  }
  guard.disarm();
  if (auto r = control(c, fmt::format("RELEASE SAVEPOINT keel_sp_{}", sp).c_str()); !r) {
    --c.savepoint_depth;
    return R(unexpected<Error>(std::move(r).error().context("releasing a nested transaction")));
  }
  --c.savepoint_depth;
  return out;
}

template <class R, class C, class F>
R run_transaction(C& conn, const TxOptions& opts, F& fn) {
  static_assert(keel::detail::is_result_v<R>, "transaction: fn must return a keel::Result");
  Conn* c = ConnAccess::conn(conn);
  if (c == nullptr)
    return R(unexpected<Error>(Error(Errc::invalid_argument, "transaction on an empty connection")));
  if (auto v = opts.validate(); !v) return R(unexpected<Error>(std::move(v).error()));
  if (PQtransactionStatus(c->pg) != PQTRANS_IDLE) return run_savepoint<R>(*c, conn, fn);
  const std::string begin = begin_sql(opts);
  Backoff backoff(opts.backoff);
  for (std::uint32_t attempt = 1;; ++attempt) {
    std::optional<Error> err;
    if (auto b = control(*c, begin.c_str()); !b) {
      return R(unexpected<Error>(std::move(b).error().context("starting a transaction")));
    }
    {
      RollbackGuard guard(*c, 0);
      R out = invoke_tx_fn(fn, conn);
      if (out.has_value()) {
        guard.disarm();
        if (PQtransactionStatus(c->pg) == PQTRANS_INERROR) {
          // fn ignored a failed statement; COMMIT would silently roll back.
          rollback_all(*c);
          return R(
              unexpected<Error>(Error(Errc::database,
                                      "a statement failed inside the transaction function but it returned "
                                      "success; rolled back")));
        }
        if (PQtransactionStatus(c->pg) != PQTRANS_INTRANS) {
          rollback_all(*c);
          return R(unexpected<Error>(
              Error(Errc::database,
                    "the transaction was committed or rolled back inside the transaction function")));
        }
        auto committed = control(*c, "COMMIT");
        if (committed) return out;
        rollback_all(*c);
        err.emplace(std::move(committed).error().context("committing"));
      } else {
        guard.undo();
        err.emplace(std::move(out).error());
      }
    }
    const bool retry = (is_retryable_sqlstate(sqlstate(*err)) || is_stale_statement(*err)) &&
                       PQstatus(c->pg) == CONNECTION_OK && !c->broken;
    if (!retry) return R(unexpected<Error>(std::move(*err)));
    if (attempt >= opts.max_attempts) {
      return R(unexpected<Error>(std::move(*err).context(fmt::format("gave up after {} attempts", attempt))));
    }
    std::this_thread::sleep_for(backoff.next());
  }
}

}  // namespace detail

/// Runs fn(conn) in a transaction (see the header): commits when fn's Result
/// holds a value, rolls back on an error or exception, retries 40001/40P01.
/// fn takes the connection (or nothing) and returns a keel::Result.
template <class F>
auto transaction(PooledConnection& conn, F&& fn, const TxOptions& opts = {})
    -> detail::tx_result_t<F, PooledConnection> {
  return detail::run_transaction<detail::tx_result_t<F, PooledConnection>>(conn, opts, fn);
}

/// The same on a Connection (as given to PoolConfig::on_connect).
template <class F>
auto transaction(Connection& conn, F&& fn, const TxOptions& opts = {}) -> detail::tx_result_t<F, Connection> {
  return detail::run_transaction<detail::tx_result_t<F, Connection>>(conn, opts, fn);
}

/// Checks a connection out of pool and runs the transaction on it.
template <class F>
auto transaction(const Pool& pool, F&& fn, const TxOptions& opts = {})
    -> detail::tx_result_t<F, PooledConnection> {
  using R = detail::tx_result_t<F, PooledConnection>;
  auto conn = pool.get();
  if (!conn) return R(unexpected<Error>(std::move(conn).error()));
  return detail::run_transaction<R>(*conn, opts, fn);
}

}  // namespace keel::pg
