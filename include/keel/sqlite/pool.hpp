// keel/sqlite/pool.hpp: a pool of SQLite connections (the r2d2 pattern).
//
// Part of <keel/sqlite.hpp> (see there for the overview). Pool and
// PooledConnection (PoolConfig and PoolStats are in <keel/sqlite/config.hpp>,
// included here); transactions and migrations build on them.
//
//     auto pool = keel::sqlite::Pool::open({.path = "app.db"});
//     if (!pool) return pool.error();
//     KEEL_TRY_ASSIGN(auto conn, pool->get());           // RAII checkout
//     KEEL_TRY_ASSIGN(SQLite::Statement& st, conn.prepare_cached("SELECT name FROM users WHERE id = ?"));
//     KEEL_TRY_ASSIGN(std::string name, keel::sqlite::try_sql([&] {   // SQLiteCpp throws:
//       st.bind(1, 42);                                                  // keep its calls
//       return st.executeStep() ? st.getColumn(0).getString() : std::string();  // inside try_sql
//     }));
//
// Thread-safety: Pool is a handle to shared state; every Pool member may be
// called from any thread, and copies of a Pool share the same connections. A
// PooledConnection (and the SQLite::Database and statements it gives) belongs
// to one thread at a time; it may be moved to another thread.
#pragma once

#include <keel/detail/sqlite_clock.hpp>
#include <keel/detail/sqlite_connection.hpp>
#include <keel/detail/sqlite_maintenance.hpp>
#include <keel/detail/sqlite_pool_state.hpp>
#include <keel/result.hpp>
#include <keel/sqlite/config.hpp>
#include <keel/sqlite/error.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

namespace keel::sqlite {

class PooledConnection;
namespace detail {
struct ConnAccess;
}  // namespace detail

/// A pool of SQLite connections to one database. Copies share the pool; it
/// closes when the last copy goes (connections still checked out close when
/// they come back). Timeouts take any std::chrono::duration, deadlines any
/// clock's time_point.
class Pool {
 public:
  /// Opens the pool: validates config, opens min_idle connections (at least
  /// one, so a bad path or a file that is not a database fails here), sets
  /// journal_mode, and starts the maintenance thread. With config.readers > 0
  /// it opens the writer connection and then every reader connection.
  [[nodiscard]] static Result<Pool> open(PoolConfig config);

  /// A connection for anything, waiting up to connection_timeout for one to
  /// come back when max_size are checked out (then Errc::timeout).
  /// Errc::closed after close(). In a split pool: the writer (get_writer()).
  [[nodiscard]] Result<PooledConnection> get() const;
  /// get() with its own timeout (zero: only what is available right now).
  template <class Rep, class Period>
  [[nodiscard]] Result<PooledConnection> get_for(std::chrono::duration<Rep, Period> timeout) const;
  /// get() with a deadline.
  template <class C, class D>
  [[nodiscard]] Result<PooledConnection> get_until(std::chrono::time_point<C, D> deadline) const;

  /// The connection to write with. In a split pool: the one writer
  /// connection, handed out in arrival order (the pool's write lock is held
  /// while it is checked out, so write transactions on it never wait again);
  /// otherwise the same as get().
  [[nodiscard]] Result<PooledConnection> get_writer() const;
  template <class Rep, class Period>
  [[nodiscard]] Result<PooledConnection> get_writer_for(std::chrono::duration<Rep, Period> timeout) const;
  template <class C, class D>
  [[nodiscard]] Result<PooledConnection> get_writer_until(std::chrono::time_point<C, D> deadline) const;

  /// A connection to read with. In a split pool: one of the read-only
  /// connections, never waiting behind the writer; otherwise the same as get().
  [[nodiscard]] Result<PooledConnection> get_reader() const;
  template <class Rep, class Period>
  [[nodiscard]] Result<PooledConnection> get_reader_for(std::chrono::duration<Rep, Period> timeout) const;
  template <class C, class D>
  [[nodiscard]] Result<PooledConnection> get_reader_until(std::chrono::time_point<C, D> deadline) const;

  /// True for a read/write split pool (PoolConfig::readers > 0).
  [[nodiscard]] bool split() const noexcept { return readers_ != nullptr; }
  /// Size, idle, in use, waits, timeouts, longest wait, checkpoints (in a
  /// split pool: the writer's).
  [[nodiscard]] PoolStats stats() const { return owner_ ? state().stats() : PoolStats{}; }
  /// A split pool's reader connections' counters (empty otherwise).
  [[nodiscard]] PoolStats reader_stats() const { return readers_ ? readers_->state()->stats() : PoolStats{}; }
  /// The configuration. Precondition: not moved from.
  [[nodiscard]] const PoolConfig& config() const noexcept { return *cfg_; }

  /// Closes the pool for every copy: idle connections close now, waiters and
  /// later get() calls fail with Errc::closed, checked-out connections close
  /// when they come back.
  void close() noexcept {
    if (owner_) state().close();
    if (readers_) readers_->state()->close();
  }

 private:
  Pool(std::shared_ptr<const PoolConfig> cfg, std::shared_ptr<detail::PoolOwner> owner,
       std::shared_ptr<detail::PoolOwner> readers) noexcept
      : cfg_(std::move(cfg)), owner_(std::move(owner)), readers_(std::move(readers)) {}
  [[nodiscard]] detail::PoolState& state() const noexcept { return *owner_->state(); }

  static Result<PooledConnection> checkout(const detail::PoolOwner& owner, detail::WaitLimit limit);
  static Result<PooledConnection> checked(detail::PoolState* pool, std::unique_ptr<detail::Conn>&& conn);

  std::shared_ptr<const PoolConfig> cfg_;
  std::shared_ptr<detail::PoolOwner> owner_;    // every connection, or a split pool's writer
  std::shared_ptr<detail::PoolOwner> readers_;  // a split pool's readers
};

/// A connection checked out of a Pool; goes back when destroyed (after any
/// open transaction is rolled back) or at reset(). `*` and `->` give the
/// SQLite::Database. Move-only. Use from one thread at a time.
class PooledConnection {
 public:
  PooledConnection() noexcept = default;
  PooledConnection(PooledConnection&& other) noexcept
      : pool_(std::exchange(other.pool_, nullptr)), conn_(std::move(other.conn_)) {}
  PooledConnection& operator=(PooledConnection&& other) noexcept {
    if (this != &other) {
      give_back();
      pool_ = std::exchange(other.pool_, nullptr);
      conn_ = std::move(other.conn_);
    }
    return *this;
  }
  PooledConnection(const PooledConnection&) = delete;
  PooledConnection& operator=(const PooledConnection&) = delete;
  ~PooledConnection() { give_back(); }

  /// The connection. Precondition: holds one (operator bool).
  [[nodiscard]] SQLite::Database& operator*() const noexcept {
    KEEL_ASSERT(conn_ != nullptr);
    return conn_->db;
  }
  [[nodiscard]] SQLite::Database* operator->() const noexcept {
    KEEL_ASSERT(conn_ != nullptr);
    return &conn_->db;
  }
  [[nodiscard]] SQLite::Database& db() const noexcept { return **this; }
  /// The raw sqlite3 handle (for the C API).
  [[nodiscard]] sqlite3* handle() const noexcept { return conn_ ? conn_->db.getHandle() : nullptr; }
  /// False once moved from, reset or discarded.
  explicit operator bool() const noexcept { return conn_ != nullptr; }
  /// The connection's number within its pool (for logs).
  [[nodiscard]] std::uint64_t id() const noexcept { return conn_ ? conn_->id : 0; }
  /// True while a transaction (or savepoint) is open on this connection.
  [[nodiscard]] bool in_transaction() const noexcept {
    return conn_ != nullptr && sqlite3_get_autocommit(conn_->db.getHandle()) == 0;
  }

  /// A statement from this connection's LRU cache (prepared on a miss), reset
  /// and with its bindings cleared. The reference stays valid until the
  /// connection goes back to the pool or statement_cache_capacity other
  /// statements have been prepared since; do not keep it longer.
  [[nodiscard]] Result<std::reference_wrapper<SQLite::Statement>> prepare_cached(std::string_view sql) {
    if (!conn_) return fail(Errc::invalid_argument, "prepare_cached on an empty PooledConnection");
    try {
      return std::ref(conn_->cache.get(conn_->db, sql));
    } catch (const SQLite::Exception& ex) {
      return from_exception(ex, sql).context("preparing a statement");
    }
  }
  /// Statements currently in this connection's cache.
  [[nodiscard]] std::size_t cached_statements() const noexcept { return conn_ ? conn_->cache.size() : 0; }

  /// Runs one or more SQL statements (no results); returns the rows changed by the last.
  [[nodiscard]] Result<int> exec(std::string_view sql) {
    if (!conn_) return fail(Errc::invalid_argument, "exec on an empty PooledConnection");
    try {
      return conn_->db.exec(std::string(sql));
    } catch (const SQLite::Exception& ex) {
      return from_exception(ex, sql);
    }
  }

  /// Returns the connection to the pool now (as the destructor would) and
  /// leaves this handle empty, like a channel handle's reset().
  void reset() noexcept { give_back(); }
  /// The old name of reset() (it returns the connection to the pool, unlike
  /// unique_ptr::release, which gives up ownership without freeing).
  [[deprecated("use reset()")]] void release() noexcept { give_back(); }
  /// Closes the connection instead of returning it (after an error that may
  /// have left it unusable); the pool opens a fresh one when needed.
  void discard() noexcept {
    if (conn_) conn_->broken = true;
    give_back();
  }

 private:
  friend class Pool;
  friend struct detail::ConnAccess;

  PooledConnection(detail::PoolState* pool, std::unique_ptr<detail::Conn>&& conn) noexcept
      : pool_(pool), conn_(std::move(conn)) {}

  void give_back() noexcept {
    if (conn_) pool_->release(std::move(conn_));  // empties conn_
    pool_ = nullptr;
  }

  detail::PoolState* pool_ = nullptr;  // kept alive by conn_ (detail::Conn::pool)
  std::unique_ptr<detail::Conn> conn_;
};

// ---- Pool's members ---------------------------------------------------------

inline Result<Pool> Pool::open(PoolConfig config) {
  KEEL_TRY(config.validate().context("opening a keel::sqlite pool"));
  auto user = std::make_shared<const PoolConfig>(config);
  if (config.readers == 0) {
    auto state = std::make_shared<detail::PoolState>(std::move(config));
    auto started = state->start();
    if (!started) return std::move(started).error().context("opening a keel::sqlite pool");
    return Pool(std::move(user), std::make_shared<detail::PoolOwner>(std::move(state)), nullptr);
  }
  PoolConfig wc = config;
  wc.readers = 0;
  wc.max_size = 1;
  wc.min_idle = 1;
  auto writer = std::make_shared<detail::PoolState>(std::move(wc), detail::Role::writer);
  auto started = writer->start();
  if (!started) return std::move(started).error().context("opening a keel::sqlite pool (writer)");
  auto writer_owner = std::make_shared<detail::PoolOwner>(std::move(writer));
  PoolConfig rc = config;
  rc.path = writer_owner->state()->name();  // the memdb name for ":memory:"
  rc.readers = 0;
  rc.read_only = true;
  rc.max_size = config.readers;
  rc.min_idle = config.readers;
  rc.file_mode = 0;
  rc.on_connect = config.on_connect;
  rc.pragmas.emplace_back("query_only = ON");
  auto reader = std::make_shared<detail::PoolState>(std::move(rc), detail::Role::reader);
  started = reader->start();
  if (!started) return std::move(started).error().context("opening a keel::sqlite pool (readers)");
  return Pool(std::move(user), std::move(writer_owner),
              std::make_shared<detail::PoolOwner>(std::move(reader)));
}

inline Result<PooledConnection> Pool::get() const {
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  return get_for(cfg_->connection_timeout);
}

template <class Rep, class Period>
Result<PooledConnection> Pool::get_for(std::chrono::duration<Rep, Period> timeout) const {
  if (readers_) return get_writer_for(timeout);
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  return checkout(*owner_, detail::WaitLimit::after(detail::timeout_of(timeout)));
}

template <class C, class D>
Result<PooledConnection> Pool::get_until(std::chrono::time_point<C, D> deadline) const {
  if (readers_) return get_writer_until(deadline);
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  return checkout(*owner_, detail::WaitLimit::until(detail::steady_deadline(deadline)));
}

inline Result<PooledConnection> Pool::get_writer() const {
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  return get_writer_for(cfg_->connection_timeout);
}

template <class Rep, class Period>
Result<PooledConnection> Pool::get_writer_for(std::chrono::duration<Rep, Period> timeout) const {
  return get_writer_until(detail::deadline_after(timeout));
}

template <class C, class D>
Result<PooledConnection> Pool::get_writer_until(std::chrono::time_point<C, D> deadline) const {
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  const auto until = detail::steady_deadline(deadline);
  if (!readers_) return checkout(*owner_, detail::WaitLimit::until(until));
  detail::PoolState& st = state();
  if (!st.writer().try_lock_until(until)) {
    return fail(Errc::timeout, "the writer connection to {} did not become free in time", cfg_->path);
  }
  auto c = st.acquire(detail::WaitLimit::until(until));
  if (!c) {
    st.writer().unlock();
    return std::move(c).error();
  }
  (*c)->owns_write_lock = true;  // unlocked when the connection comes back
  return checked(&st, std::move(*c));
}

inline Result<PooledConnection> Pool::get_reader() const {
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  return get_reader_for(cfg_->connection_timeout);
}

template <class Rep, class Period>
Result<PooledConnection> Pool::get_reader_for(std::chrono::duration<Rep, Period> timeout) const {
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  return checkout(readers_ ? *readers_ : *owner_, detail::WaitLimit::after(detail::timeout_of(timeout)));
}

template <class C, class D>
Result<PooledConnection> Pool::get_reader_until(std::chrono::time_point<C, D> deadline) const {
  if (!owner_) return fail(Errc::closed, "the pool was moved from");
  return checkout(readers_ ? *readers_ : *owner_,
                  detail::WaitLimit::until(detail::steady_deadline(deadline)));
}

inline Result<PooledConnection> Pool::checkout(const detail::PoolOwner& owner, detail::WaitLimit limit) {
  detail::PoolState* st = owner.state().get();
  auto c = st->acquire(limit);
  if (!c) return std::move(c).error();
  return checked(st, std::move(*c));
}

// Hands a connection just taken from `pool` out, after dropping its statement
// cache when the schema changed since it last looked (see
// detail::Conn::check_schema). Works on the Conn, not on a PooledConnection
// passed by value: a checkout then moves it only into its Result.
inline Result<PooledConnection> Pool::checked(detail::PoolState* pool, std::unique_ptr<detail::Conn>&& conn) {
  if (pool->config().check_schema && conn->check_schema() != SQLITE_OK) {
    Error e = last_error(conn->db.getHandle(), "PRAGMA schema_version");
    conn->broken = true;  // closed instead of going back idle
    pool->release(std::move(conn));
    return std::move(e).context("checking out a connection");
  }
  return Result<PooledConnection>(PooledConnection(pool, std::move(conn)));
}

namespace detail {
/// How transaction() and migrate() reach a PooledConnection's internals.
struct ConnAccess {
  static Conn* conn(const PooledConnection& c) noexcept { return c.conn_.get(); }
  static PoolState* pool(const PooledConnection& c) noexcept { return c.pool_; }
};
}  // namespace detail

}  // namespace keel::sqlite
