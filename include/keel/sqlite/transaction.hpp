// keel/sqlite/transaction.hpp: transactions that commit on success and roll back
// on error or exception.
//
// Part of <keel/sqlite.hpp>.
//
//     auto id = keel::sqlite::transaction(conn, [&](keel::sqlite::PooledConnection& c) ->
//     keel::Result<std::int64_t> {
//       KEEL_TRY(c.exec("INSERT INTO users(name) VALUES ('ada')"));
//       return c->getLastInsertRowid();
//     });
//     auto n = keel::sqlite::transaction(conn, count_users, keel::sqlite::read_only);
//
// Write transactions start with BEGIN IMMEDIATE, after taking the pool's
// in-process write lock: writers of one pool queue on a mutex (woken at once
// when the previous one commits) instead of polling SQLite's file lock, and
// a plain BEGIN that later writes (which fails with SQLITE_BUSY at once, whatever
// busy_timeout says) never happens. Writers from other processes are waited
// out by busy_timeout, then by retries until connection_timeout; only after
// that does Errc::busy reach the caller.
//
// Read-only transactions (`read_only`) start with BEGIN DEFERRED, take no
// write lock, see one consistent snapshot, and run with `PRAGMA query_only`
// so a write inside one fails instead of taking the write lock.
//
// A transaction on a connection already inside one becomes a SAVEPOINT: its
// work is undone on failure, kept (and committed with the outer one) on
// success. A read-only one nested in a write one runs with query_only for
// its duration: it cannot write either.
//
// A write transaction on a connection with a statement still mid-step is
// refused at once (Errc::invalid_argument): that statement's snapshot would
// make BEGIN IMMEDIATE fail with SQLITE_BUSY_SNAPSHOT, which no wait cures
// and which is never retried. In a split pool (PoolConfig::readers), the
// Pool overloads take get_writer() / get_reader(); the writer connection
// holds the write lock while checked out, and a reader refuses write
// transactions.
//
// Thread-safety: as for the connection: one thread at a time per connection.
#pragma once

#include <keel/result.hpp>
#include <keel/sqlite/error.hpp>
#include <keel/sqlite/pool.hpp>

#include <sqlite3.h>

#include <algorithm>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <type_traits>
#include <utility>

namespace keel::sqlite {

/// Tag for transaction(): reads only (BEGIN DEFERRED, query_only, no write lock).
struct ReadOnly {
  explicit constexpr ReadOnly() = default;
};
inline constexpr ReadOnly read_only{};

namespace detail {

enum class TxKind : std::uint8_t { write, read };

/// Worth waiting out: another connection holds a lock. Not SQLITE_BUSY_SNAPSHOT:
/// this connection's own read snapshot is too old to write from, and waiting
/// never makes it newer.
inline bool is_busy(int rc) noexcept {
  if (rc == SQLITE_BUSY_SNAPSHOT) return false;
  return (rc & 0xff) == SQLITE_BUSY || (rc & 0xff) == SQLITE_LOCKED;
}

/// A statement on `h` that is still mid-step (it holds a read snapshot), or null.
inline sqlite3_stmt* busy_statement(sqlite3* h) noexcept {
  for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
    if (sqlite3_stmt_busy(s) != 0) return s;
  }
  return nullptr;
}

/// One transaction (or savepoint) on a connection; rolls back unless committed.
class TxScope {
 public:
  TxScope(PooledConnection& c, TxKind kind) noexcept
      : conn_(ConnAccess::conn(c)), pool_(ConnAccess::pool(c)), kind_(kind) {}
  TxScope(const TxScope&) = delete;
  TxScope& operator=(const TxScope&) = delete;
  ~TxScope() {
    rollback();
    release_writer();
  }

  Result<void> begin() {
    sqlite3* h = conn_->db.getHandle();
    if (sqlite3_get_autocommit(h) == 0) {
      savepoint_ = ++conn_->savepoint_depth;
      const std::string sql = fmt::format("SAVEPOINT keel_sp_{}", savepoint_);
      if (sqlite3_exec(h, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        --conn_->savepoint_depth;
        return last_error(h, sql).context("opening a nested transaction");
      }
      active_ = true;
      // A read-only transaction nested in a write one stays read-only: the
      // connection refuses writes until the savepoint ends.
      if (kind_ == TxKind::read && sqlite3_db_readonly(h, "main") == 0 && !conn_->query_only) {
        if (conn_->run(TxStmt::query_only_on) != SQLITE_DONE) {
          Error e = conn_->run_error(TxStmt::query_only_on);
          rollback();
          return e;
        }
        conn_->query_only = true;
        set_query_only_ = true;
      }
      return {};
    }
    if (kind_ == TxKind::write && conn_->reader) {
      return fail(Errc::invalid_argument,
                  "a write transaction on a read-only connection (use get_writer() in a split pool)");
    }
    if (kind_ == TxKind::write) {
      // A statement left mid-step holds a read snapshot: BEGIN IMMEDIATE
      // would fail with SQLITE_BUSY_SNAPSHOT as soon as anyone else commits,
      // and no amount of waiting fixes that. Refuse before taking the lock.
      if (sqlite3_stmt* s = busy_statement(h); s != nullptr) {
        const char* text = sqlite3_sql(s);
        return fail(Errc::invalid_argument,
                    "a statement is still mid-step on this connection (`{}`); reset it or step it to the end "
                    "before starting a write transaction",
                    detail::sql_excerpt(text != nullptr ? text : ""));
      }
    }
    const auto timeout = pool_->config().connection_timeout;
    const auto deadline = Clock::now() + timeout;
    if (kind_ == TxKind::write && !conn_->owns_write_lock) {
      if (!pool_->writer().try_lock_until(deadline)) {
        return fail(Errc::busy, "no write lock on {} within {} ms (another transaction holds it)",
                    pool_->config().path, timeout.count());
      }
      holds_writer_ = true;
      if (auto r = run_until(TxStmt::begin_immediate, deadline); !r) {
        release_writer();
        return r;
      }
    } else if (kind_ == TxKind::write) {
      KEEL_TRY(run_until(TxStmt::begin_immediate, deadline));  // the writer of a split pool: lock held
    } else if (conn_->reader) {
      KEEL_TRY(run_until(TxStmt::begin_deferred, deadline));  // query_only is always on
    } else {
      KEEL_TRY(run_until(TxStmt::begin_deferred, deadline));
      if (conn_->run(TxStmt::query_only_on) != SQLITE_DONE) {
        Error e = conn_->run_error(TxStmt::query_only_on);
        conn_->run(TxStmt::rollback);
        return e;
      }
      conn_->query_only = true;
    }
    active_ = true;
    return {};
  }

  Result<void> commit() {
    if (!active_) return {};
    sqlite3* h = conn_->db.getHandle();
    if (savepoint_ > 0) {
      const std::string sql = fmt::format("RELEASE keel_sp_{}", savepoint_);
      if (sqlite3_exec(h, sql.c_str(), nullptr, nullptr, nullptr) != SQLITE_OK) {
        Error e = last_error(h, sql);
        rollback();
        return e;
      }
      --conn_->savepoint_depth;
      end_query_only();
      active_ = false;
      return {};
    }
    if (sqlite3_get_autocommit(h) != 0) {
      rollback();
      return fail(Errc::database,
                  "the transaction was committed or rolled back inside the transaction function");
    }
    auto r = run_until(TxStmt::commit, Clock::now() + pool_->config().connection_timeout);
    if (!r) {
      rollback();
      return r;
    }
    finish();
    return {};
  }

  void rollback() noexcept {
    if (!active_) return;
    sqlite3* h = conn_->db.getHandle();
    if (savepoint_ > 0) {
      const std::string sql = fmt::format("ROLLBACK TO keel_sp_{0}; RELEASE keel_sp_{0}", savepoint_);
      sqlite3_exec(h, sql.c_str(), nullptr, nullptr, nullptr);
      --conn_->savepoint_depth;
      end_query_only();
      active_ = false;
      return;
    }
    if (sqlite3_get_autocommit(h) == 0 && conn_->run(TxStmt::rollback) != SQLITE_DONE &&
        sqlite3_get_autocommit(h) == 0) {
      pool_->log().warn("keel::sqlite: ROLLBACK failed on connection {}: {}", conn_->id, conn_->last_message);
      conn_->broken = true;  // closed instead of reused when it goes back
    }
    finish();
  }

 private:
  void finish() noexcept {
    if (kind_ == TxKind::read && !conn_->reader) {
      conn_->run(TxStmt::query_only_off);
      conn_->query_only = false;
    }
    release_writer();
    active_ = false;
  }
  void end_query_only() noexcept {
    if (!set_query_only_) return;
    conn_->run(TxStmt::query_only_off);
    conn_->query_only = false;
    set_query_only_ = false;
  }
  void release_writer() noexcept {
    if (holds_writer_) pool_->writer().unlock();
    holds_writer_ = false;
  }

  /// Runs BEGIN/COMMIT, retrying SQLITE_BUSY (another process holding the
  /// lock past busy_timeout) with growing pauses until the deadline.
  Result<void> run_until(TxStmt which, Clock::time_point deadline) {
    auto pause = std::chrono::milliseconds(1);
    for (;;) {
      const int rc = conn_->run(which);
      if (rc == SQLITE_DONE) return {};
      if (!is_busy(rc) || Clock::now() + pause >= deadline) return conn_->run_error(which);
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
  }

  Conn* conn_;
  PoolState* pool_;
  TxKind kind_;
  bool holds_writer_ = false;
  int savepoint_ = 0;  // > 0: a nested transaction, this savepoint's number
  bool active_ = false;
  bool set_query_only_ = false;  // a nested read-only savepoint turned query_only on
};

template <class F>
decltype(auto) invoke_tx_fn(F& fn, PooledConnection& conn) {
  if constexpr (std::is_invocable_v<F&, PooledConnection&>) {
    return std::invoke(fn, conn);
  } else {
    return std::invoke(fn);
  }
}

template <class F>
using tx_result_t =
    std::remove_cvref_t<decltype(invoke_tx_fn(std::declval<F&>(), std::declval<PooledConnection&>()))>;

template <class R, class F>
R run_transaction(PooledConnection& conn, TxKind kind, F& fn) {
  static_assert(detail::is_result_v<R>, "transaction: fn must return a keel::Result");
  if (!conn)
    return R(unexpected<Error>(Error(Errc::invalid_argument, "transaction on an empty PooledConnection")));
  TxScope scope(conn, kind);
  if (auto b = scope.begin(); !b) {
    return R(unexpected<Error>(std::move(b).error().context(
        kind == TxKind::write ? "starting a write transaction" : "starting a read transaction")));
  }
  std::optional<R> out;
#if KEEL_HAS_EXCEPTIONS
  try {
    out.emplace(invoke_tx_fn(fn, conn));
  } catch (const SQLite::Exception& ex) {
    // SQLiteCpp's exceptions stop here as Errors; any other exception goes on
    // after `scope` rolls back.
    scope.rollback();
    return R(unexpected<Error>(from_exception(ex).context("in a transaction (rolled back)")));
  }
#else
  out.emplace(invoke_tx_fn(fn, conn));
#endif
  if (!out->has_value()) {
    scope.rollback();
    return std::move(*out);
  }
  if (auto c = scope.commit(); !c) return R(unexpected<Error>(std::move(c).error().context("committing")));
  return std::move(*out);
}

}  // namespace detail

/// Runs fn(conn) in a write transaction (BEGIN IMMEDIATE behind the pool's
/// write lock): commits when fn's Result holds a value, rolls back when it
/// holds an error or fn throws, and returns fn's Result. A SQLite::Exception
/// from fn becomes an Error (Errc::database, busy, ...); other exceptions go
/// on after the rollback. A failure to begin or commit is returned as an
/// Error (Errc::busy if the lock stayed taken past connection_timeout). fn may
/// also take no argument.
template <class F>
auto transaction(PooledConnection& conn, F&& fn) -> detail::tx_result_t<F> {
  return detail::run_transaction<detail::tx_result_t<F>>(conn, detail::TxKind::write, fn);
}

/// Runs fn(conn) in a read-only transaction: one consistent snapshot, no
/// write lock taken, writes inside fail (PRAGMA query_only).
template <class F>
auto transaction(PooledConnection& conn, F&& fn, ReadOnly /*tag*/) -> detail::tx_result_t<F> {
  return detail::run_transaction<detail::tx_result_t<F>>(conn, detail::TxKind::read, fn);
}

/// Checks a connection out of pool (get_writer()) and runs a write transaction on it.
template <class F>
auto transaction(const Pool& pool, F&& fn) -> detail::tx_result_t<F> {
  using R = detail::tx_result_t<F>;
  auto conn = pool.get_writer();
  if (!conn) return R(unexpected<Error>(std::move(conn).error()));
  return detail::run_transaction<R>(*conn, detail::TxKind::write, fn);
}

/// Checks a connection out of pool (get_reader()) and runs a read-only
/// transaction on it.
template <class F>
auto transaction(const Pool& pool, F&& fn, ReadOnly /*tag*/) -> detail::tx_result_t<F> {
  using R = detail::tx_result_t<F>;
  auto conn = pool.get_reader();
  if (!conn) return R(unexpected<Error>(std::move(conn).error()));
  return detail::run_transaction<R>(*conn, detail::TxKind::read, fn);
}

}  // namespace keel::sqlite
