// keel/postgres/pool.hpp: a pool of PostgreSQL connections (libpq).
//
// Part of <keel/postgres.hpp> (see there for the overview). Pool, Connection
// and PooledConnection (PoolConfig and PoolStats: <keel/postgres/config.hpp>); transactions, migrations and
// LISTEN build on them.
//
//     auto pool = keel::pg::Pool::open({.conninfo = "host=db dbname=app user=app"});
//     if (!pool) return pool.error();
//     KEEL_TRY_ASSIGN(auto conn, pool->get());                      // RAII checkout
//     KEEL_TRY_ASSIGN(auto rows, conn.exec("SELECT name FROM users WHERE id = $1", 42));
//     KEEL_TRY_ASSIGN(std::string name, rows.get<std::string>(0, 0));
//
// Thread-safety: Pool is a handle to shared state; every Pool member may be
// called from any thread, and copies share the same connections. A
// PooledConnection (and the Rows and Statements it gives) belongs to one
// thread at a time; it may be moved to another thread.
#pragma once

#include <keel/backoff.hpp>
#include <keel/postgres/config.hpp>
#include <keel/postgres/error.hpp>
#include <keel/postgres/types.hpp>
#include <keel/result.hpp>

#include <libpq-fe.h>
#include <poll.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

namespace keel::pg {

class Connection;
class Pool;
class PooledConnection;
class Statement;

namespace detail {
struct ConnAccess;
class PoolState;

using Clock = std::chrono::steady_clock;

/// A statement prepared on one connection under a generated name.
struct Prepared {
  std::string sql;
  std::string name;
  bool valid = true;  // false once deallocated or found stale
};

/// A per-connection LRU of prepared statements, keyed by SQL text.
class StatementCache {
 public:
  explicit StatementCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  /// The entry for sql, most recent first; nullptr when not cached.
  std::shared_ptr<Prepared> find(std::string_view sql) {
    auto it = index_.find(sql);
    if (it == index_.end()) return nullptr;
    lru_.splice(lru_.begin(), lru_, it->second);
    return *it->second;
  }
  /// Adds a prepared statement; returns the one evicted (to deallocate), if any.
  std::shared_ptr<Prepared> add(std::shared_ptr<Prepared> p) {
    lru_.push_front(std::move(p));
    index_.emplace(std::string_view(lru_.front()->sql), lru_.begin());
    if (lru_.size() <= capacity_) return nullptr;
    auto old = std::move(lru_.back());
    index_.erase(std::string_view(old->sql));
    lru_.pop_back();
    old->valid = false;
    return old;
  }
  /// Forgets one statement (stale or gone on the server).
  void erase(std::string_view sql) {
    auto it = index_.find(sql);
    if (it == index_.end()) return;
    (*it->second)->valid = false;
    lru_.erase(it->second);
    index_.erase(it);
  }
  void clear() noexcept {
    for (auto& p : lru_) p->valid = false;
    index_.clear();
    lru_.clear();
  }
  [[nodiscard]] std::size_t size() const noexcept { return lru_.size(); }
  [[nodiscard]] std::uint64_t misses() const noexcept { return misses_; }
  void count_miss() noexcept { ++misses_; }

 private:
  std::list<std::shared_ptr<Prepared>> lru_;
  std::unordered_map<std::string_view, std::list<std::shared_ptr<Prepared>>::iterator> index_;
  std::size_t capacity_;
  std::uint64_t misses_ = 0;
};

/// One pooled connection: the libpq handle, its statement cache and bookkeeping.
struct Conn {
  Conn(PGconn* handle, std::uint64_t conn_id, std::size_t cache_capacity)
      : pg(handle), id(conn_id), created(Clock::now()), last_used(created), cache(cache_capacity) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    cache.clear();
    if (pg != nullptr) PQfinish(pg);
  }

  PGconn* pg;
  std::uint64_t id;
  Clock::time_point created;
  Clock::time_point last_used;
  StatementCache cache;
  std::uint64_t next_statement = 1;
  int savepoint_depth = 0;
  bool broken = false;
  std::string scratch;  // NUL-terminated copy of the SQL for libpq, reused
};

inline const char* c_sql(Conn& c, std::string_view sql) {
  c.scratch.assign(sql);
  return c.scratch.c_str();
}

/// Waits until fd is ready for `events` or the deadline passes; false on timeout.
inline bool wait_socket(int fd, short events, Clock::time_point deadline) {
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, static_cast<int>(std::min<long long>(left, 1'000'000)));
    if (r > 0) return true;
    if (r < 0 && errno != EINTR) return true;  // let libpq report the socket error
  }
}

/// A result's outcome: the Rows, or the Error (marking the connection broken
/// when libpq says it is gone).
inline Result<Rows> check_result(Conn& c, PGresult* res, std::string_view sql) {
  if (res != nullptr) {
    switch (PQresultStatus(res)) {
      case PGRES_COMMAND_OK:
      case PGRES_TUPLES_OK:
      case PGRES_EMPTY_QUERY:
        return Rows(res);
      case PGRES_COPY_IN:
      case PGRES_COPY_OUT:
      case PGRES_COPY_BOTH:
        PQclear(res);
        c.broken = true;  // mid-COPY: not reusable
        return fail(Errc::invalid_argument, "`{}` started a COPY; use copy_in()", sql_excerpt(sql));
      default:
        break;
    }
  }
  Error e = result_error(res, c.pg, sql);
  if (res != nullptr) PQclear(res);
  if (PQstatus(c.pg) == CONNECTION_BAD) c.broken = true;
  return unexpected<Error>(std::move(e));
}

/// Reads every result of the command in flight; returns the last (libpq's
/// PQexec semantics) or the first error.
inline Result<Rows> collect(Conn& c, std::string_view sql) {
  PGresult* last = nullptr;
  PGresult* err = nullptr;
  while (PGresult* r = PQgetResult(c.pg)) {
    const auto st = PQresultStatus(r);
    if (st == PGRES_COPY_IN || st == PGRES_COPY_OUT || st == PGRES_COPY_BOTH) {
      if (last != nullptr) PQclear(last);
      if (err != nullptr) PQclear(err);
      return check_result(c, r, sql);
    }
    if ((st == PGRES_FATAL_ERROR || st == PGRES_BAD_RESPONSE || st == PGRES_NONFATAL_ERROR) &&
        err == nullptr) {
      err = r;
      continue;
    }
    if (last != nullptr) PQclear(last);
    last = r;
  }
  if (err != nullptr) {
    if (last != nullptr) PQclear(last);
    return check_result(c, err, sql);
  }
  return check_result(c, last, sql);
}

/// True for the errors that mean a cached statement must be prepared again:
/// its plan went stale (0A000 "cached plan must not change result type") or
/// the server no longer has it (26000).
inline bool is_stale_statement(const Error& e) {
  const auto s = sqlstate(e);
  return (s == "0A000" && e.message().find("cached plan") != std::string_view::npos) || s == "26000";
}

}  // namespace detail

/// A prepared statement from a connection's cache (see
/// Connection::prepare_cached). A small handle: valid while the connection
/// it came from is checked out; executing it after the cache evicted it
/// prepares it again.
class Statement {
 public:
  /// Runs the statement with these parameters ($1, $2, ... in order).
  template <class... Args>
  [[nodiscard]] Result<Rows> exec(const Args&... args);
  /// The SQL text.
  [[nodiscard]] std::string_view sql() const noexcept {
    return p_ ? std::string_view(p_->sql) : std::string_view();
  }
  /// The server-side name it was prepared under.
  [[nodiscard]] std::string_view name() const noexcept {
    return p_ ? std::string_view(p_->name) : std::string_view();
  }

 private:
  friend class Connection;
  Statement(Connection* c, std::shared_ptr<detail::Prepared> p) noexcept : conn_(c), p_(std::move(p)) {}
  Connection* conn_ = nullptr;
  std::shared_ptr<detail::Prepared> p_;
};

/// A connection's query interface (the base of PooledConnection, and what
/// PoolConfig::on_connect receives). Use from one thread at a time.
class Connection {
 public:
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  /// Runs one statement with parameters ($1, $2, ...; see types.hpp), or,
  /// without parameters, one or more statements separated by ';' (the
  /// result of the last is returned).
  template <class... Args>
  [[nodiscard]] Result<Rows> exec(std::string_view sql, const Args&... args) {
    if (!c_) return fail(Errc::invalid_argument, "exec on an empty connection");
    if constexpr (sizeof...(Args) == 0) {
      return detail::check_result(*c_, PQexec(c_->pg, detail::c_sql(*c_, sql)), sql);
    } else {
      const detail::Params<sizeof...(Args)> p(args...);
      return detail::check_result(*c_,
                                  PQexecParams(c_->pg, detail::c_sql(*c_, sql), p.count(), p.oid_data(),
                                               p.value_data(), p.length_data(), p.format_data(), 0),
                                  sql);
    }
  }

  /// The statement for sql from this connection's LRU cache, prepared on a
  /// miss (parameter types are inferred by the server from the SQL). A plan
  /// the server reports stale (after ALTER TABLE, ...) is prepared again: at
  /// once outside a transaction, by the retry of transaction() inside one.
  [[nodiscard]] Result<Statement> prepare_cached(std::string_view sql) {
    if (!c_) return fail(Errc::invalid_argument, "prepare_cached on an empty connection");
    if (auto p = c_->cache.find(sql)) return Statement(this, std::move(p));
    c_->cache.count_miss();
    auto p = std::make_shared<detail::Prepared>();
    p->sql.assign(sql);
    p->name = fmt::format("keel_s{}", c_->next_statement++);
    KEEL_TRY(detail::check_result(*c_, PQprepare(c_->pg, p->name.c_str(), p->sql.c_str(), 0, nullptr), sql)
                 .context("preparing a statement"));
    if (auto old = c_->cache.add(p)) deallocate(*old);
    return Statement(this, std::move(p));
  }
  /// Statements currently in this connection's cache.
  [[nodiscard]] std::size_t cached_statements() const noexcept { return c_ ? c_->cache.size() : 0; }

  /// The server process serving this connection (for pg_terminate_backend, logs).
  [[nodiscard]] int backend_pid() const noexcept { return c_ ? PQbackendPID(c_->pg) : 0; }
  /// The connection's number within its pool (for logs).
  [[nodiscard]] std::uint64_t id() const noexcept { return c_ ? c_->id : 0; }
  /// True while a transaction (or savepoint) is open, or failed and not yet rolled back.
  [[nodiscard]] bool in_transaction() const noexcept {
    if (!c_) return false;
    const auto s = PQtransactionStatus(c_->pg);
    return s == PQTRANS_INTRANS || s == PQTRANS_INERROR;
  }
  /// False once the server or the network dropped the connection.
  [[nodiscard]] bool healthy() const noexcept {
    return c_ && !c_->broken && PQstatus(c_->pg) == CONNECTION_OK;
  }
  /// The libpq handle, for what keel does not wrap. Leave it idle (no query
  /// in flight, no pipeline, no COPY) and do not close it.
  [[nodiscard]] PGconn* native_handle() const noexcept { return c_ ? c_->pg : nullptr; }

 protected:
  Connection() noexcept = default;
  explicit Connection(detail::Conn* c) noexcept : c_(c) {}
  ~Connection() = default;

  detail::Conn* c_ = nullptr;

 private:
  friend class Statement;
  friend struct detail::ConnAccess;
  friend class detail::PoolState;

  void deallocate(detail::Prepared& p) {
    const std::string sql = "DEALLOCATE " + p.name;
    PQclear(PQexec(c_->pg, sql.c_str()));
  }

  template <std::size_t N>
  Result<Rows> run_prepared(detail::Prepared& p, const detail::Params<N>& params) {
    return detail::check_result(*c_,
                                PQexecPrepared(c_->pg, p.name.c_str(), params.count(), params.value_data(),
                                               params.length_data(), params.format_data(), 0),
                                p.sql);
  }

  template <std::size_t N>
  Result<Rows> exec_statement(std::shared_ptr<detail::Prepared>& p, const detail::Params<N>& params) {
    if (!c_) return fail(Errc::invalid_argument, "a Statement of an empty connection");
    if (!p->valid) {
      auto again = prepare_cached(p->sql);
      if (!again) return std::move(again).error();
      p = again->p_;
    }
    auto r = run_prepared(*p, params);
    if (r || !detail::is_stale_statement(r.error())) return r;
    // The plan is stale (or gone): forget it; outside a transaction the
    // failed statement changed nothing, so prepare and run it once more.
    const std::string sql = p->sql;
    c_->cache.erase(sql);
    if (PQtransactionStatus(c_->pg) != PQTRANS_IDLE) {
      return std::move(r).context("the cached plan was stale and has been dropped (retry the transaction)");
    }
    auto again = prepare_cached(sql);
    if (!again) return std::move(again).error();
    p = again->p_;
    return run_prepared(*p, params);
  }
};

template <class... Args>
Result<Rows> Statement::exec(const Args&... args) {
  if (conn_ == nullptr || !p_) return fail(Errc::invalid_argument, "exec on an empty Statement");
  const detail::Params<sizeof...(Args)> p(args...);
  return conn_->exec_statement(p_, p);
}

namespace detail {

/// The state a Pool's handles, its connections, its listeners and its
/// maintenance thread share.
class PoolState {
 public:
  explicit PoolState(PoolConfig config) : cfg_(std::move(config)), backoff_(cfg_.reconnect_backoff) {}
  PoolState(const PoolState&) = delete;
  PoolState& operator=(const PoolState&) = delete;

  [[nodiscard]] const PoolConfig& config() const noexcept { return cfg_; }

  /// Validates the configuration and opens the first connections (at least
  /// one, so a wrong address or password fails at open).
  Result<void> start() {
    KEEL_TRY(cfg_.validate());
    const std::size_t first = std::max<std::size_t>(cfg_.min_idle, 1);
    {
      const std::lock_guard lock(mu_);
      size_ = first;
    }
    for (std::size_t i = 0; i < first; ++i) {
      auto c = open_connection(Clock::now() + cfg_.connect_timeout);
      if (!c) {
        const std::lock_guard lock(mu_);
        size_ -= first - i;
        return std::move(c).error();
      }
      const std::lock_guard lock(mu_);
      idle_.push_back(std::move(*c));
    }
    return {};
  }

  /// Checks a connection out, waiting until the deadline.
  Result<std::unique_ptr<Conn>> acquire(Clock::duration timeout) {
    const auto start = Clock::now();
    const auto deadline = start + timeout;
    std::unique_lock lock(mu_);
    bool waited = false;
    for (;;) {
      if (closed_) return fail(Errc::closed, "the pool is closed");
      while (!idle_.empty()) {
        std::unique_ptr<Conn> c = std::move(idle_.back());
        idle_.pop_back();
        ++in_use_;
        lock.unlock();
        if (usable(*c)) {
          lock.lock();
          checked_out(start, waited);
          return c;
        }
        c.reset();  // closes the dead connection outside the lock
        lock.lock();
        --in_use_;
        --size_;
        ++closed_count_;
        ++broken_;
      }
      const auto now = Clock::now();
      if (size_ < cfg_.max_size) {
        if (last_failure_ && (now < retry_at_ || probing_)) {
          // The last attempt failed: one attempt at a time, on the backoff
          // schedule. Waiting cannot help bad credentials or configuration:
          // fail at once. Otherwise wait for the backoff, the attempt in
          // flight, or a returned connection until the deadline, then report
          // the last failure.
          if (!last_failure_->is_transient() || now >= deadline) {
            Error e = *last_failure_;
            return unexpected<Error>(std::move(e).context(
                probing_
                    ? std::string("another connection attempt is under way")
                    : fmt::format(
                          "not retried yet ({} ms of backoff left)",
                          std::chrono::duration_cast<std::chrono::milliseconds>(retry_at_ - now).count())));
          }
          if (!waited) {
            waited = true;
            ++waits_;
          }
          cv_.wait_until(lock, probing_ ? deadline : std::min(retry_at_, deadline));
          continue;
        }
        if (last_failure_) probing_ = true;
        ++size_;
        ++in_use_;
        lock.unlock();
        const auto open_deadline =
            timeout.count() > 0 ? std::min(deadline, now + cfg_.connect_timeout) : now + cfg_.connect_timeout;
        auto c = open_connection(open_deadline);
        lock.lock();
        if (!c) {
          --size_;
          --in_use_;
          lock.unlock();
          cv_.notify_one();
          lock.lock();
          if (c.error().is_transient() && Clock::now() < deadline && !closed_) {
            if (!waited) {
              waited = true;
              ++waits_;
            }
            continue;  // waits out the backoff, then tries again
          }
          return std::move(c).error();
        }
        if (closed_) {
          --size_;
          --in_use_;
          ++closed_count_;
          lock.unlock();
          return fail(Errc::closed, "the pool is closed");
        }
        checked_out(start, waited);
        return c;
      }
      if (now >= deadline) {
        ++timeouts_;
        record_wait(now - start);
        return fail(Errc::timeout, "no connection became free within {} ms (max_size {})",
                    std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count(), cfg_.max_size);
      }
      if (!waited) {
        waited = true;
        ++waits_;
      }
      cv_.wait_until(lock, deadline);
    }
  }

  /// Takes a connection back: rolls back what it left open, then makes it
  /// idle (or closes it when it is broken, too old, or the pool closed).
  void release(std::unique_ptr<Conn> c) noexcept {
    if (!c) return;
    if (!c->broken && PQstatus(c->pg) == CONNECTION_OK) {
      switch (PQtransactionStatus(c->pg)) {
        case PQTRANS_IDLE:
          break;
        case PQTRANS_INTRANS:
        case PQTRANS_INERROR: {
          PGresult* r = PQexec(c->pg, "ROLLBACK");
          if (PQresultStatus(r) != PGRES_COMMAND_OK || PQtransactionStatus(c->pg) != PQTRANS_IDLE)
            c->broken = true;
          PQclear(r);
          break;
        }
        default:  // a query, COPY or pipeline still in flight
          c->broken = true;
      }
      if (PQpipelineStatus(c->pg) != PQ_PIPELINE_OFF) c->broken = true;
    } else {
      c->broken = true;
    }
    c->savepoint_depth = 0;
    const auto now = Clock::now();
    std::unique_lock lock(mu_);
    --in_use_;
    if (closed_ || c->broken || (cfg_.max_lifetime.count() > 0 && now - c->created >= cfg_.max_lifetime)) {
      --size_;
      ++closed_count_;
      if (c->broken) ++broken_;
      const bool closed = closed_;
      lock.unlock();
      cv_.notify_one();
      if (!closed) wake_maintenance();
      c.reset();
      return;
    }
    c->last_used = now;
    idle_.push_back(std::move(c));
    lock.unlock();
    cv_.notify_one();
  }

  /// Closes idle connections, fails waiters with Errc::closed, tells
  /// listeners to stop; connections checked out close when they come back.
  void close() noexcept {
    std::vector<std::unique_ptr<Conn>> idle;
    {
      const std::lock_guard lock(mu_);
      if (closed_) return;
      closed_ = true;
      idle.swap(idle_);
      size_ -= idle.size();
      closed_count_ += idle.size();
    }
    stopping_.store(true, std::memory_order_release);  // release: pairs with listeners' acquire load
    cv_.notify_all();
    maint_cv_.notify_all();
    idle.clear();
  }
  [[nodiscard]] bool stopping() const noexcept {
    return stopping_.load(std::memory_order_acquire);  // acquire: see close()'s writes before stopping
  }

  [[nodiscard]] PoolStats stats() const {
    const std::lock_guard lock(mu_);
    PoolStats s;
    s.size = size_;
    s.idle = idle_.size();
    s.in_use = in_use_;
    s.max_size = cfg_.max_size;
    s.gets = gets_;
    s.waits = waits_;
    s.timeouts = timeouts_;
    s.longest_wait = longest_wait_;
    s.opened = opened_;
    s.closed = closed_count_;
    s.connect_attempts = attempts_;
    s.connect_failures = failures_;
    s.broken = broken_;
    return s;
  }

  /// The maintenance loop (run by the pool's thread until close()).
  void maintain() noexcept {
    std::unique_lock lock(mu_);
    while (!closed_) {
      maint_cv_.wait_for(lock, cfg_.maintenance_interval, [&] { return closed_ || maint_wake_; });
      maint_wake_ = false;
      if (closed_) break;
      lock.unlock();
      maintain_once();
      lock.lock();
    }
  }

  /// One pass: retire idle connections past idle_timeout (keeping min_idle),
  /// max_lifetime or dead, then open connections up to min_idle idle (unless
  /// the last attempt failed and its backoff has not passed).
  void maintain_once() noexcept {
    std::vector<std::unique_ptr<Conn>> retired;
    std::size_t need = 0;
    {
      const std::lock_guard lock(mu_);
      if (closed_) return;
      const auto now = Clock::now();
      for (auto it = idle_.begin(); it != idle_.end();) {
        Conn& c = **it;
        const bool too_old = cfg_.max_lifetime.count() > 0 && now - c.created >= cfg_.max_lifetime;
        const bool unused = cfg_.idle_timeout.count() > 0 && now - c.last_used >= cfg_.idle_timeout &&
                            idle_.size() > cfg_.min_idle;
        const bool dead = PQstatus(c.pg) != CONNECTION_OK;
        if (too_old || unused || dead) {
          if (dead) ++broken_;
          retired.push_back(std::move(*it));
          it = idle_.erase(it);
          --size_;
          ++closed_count_;
        } else {
          ++it;
        }
      }
      if (idle_.size() < cfg_.min_idle && now >= retry_at_ && !probing_) {
        need = std::min(cfg_.min_idle - idle_.size(), cfg_.max_size - size_);
        if (last_failure_ && need > 0) {
          need = 1;  // after a failure, one attempt at a time
          probing_ = true;
        }
        size_ += need;
      }
    }
    retired.clear();
    for (std::size_t i = 0; i < need; ++i) {
      auto c = open_connection(Clock::now() + cfg_.connect_timeout);
      std::unique_lock lock(mu_);
      if (!c || closed_) {
        size_ -= need - i;
        if (c) ++closed_count_;
        lock.unlock();
        cv_.notify_all();
        return;
      }
      c.value()->last_used = Clock::now();
      idle_.push_back(std::move(*c));
      lock.unlock();
      cv_.notify_one();
    }
  }

  void wake_maintenance() noexcept {
    {
      const std::lock_guard lock(mu_);
      maint_wake_ = true;
    }
    maint_cv_.notify_one();
  }

  /// Opens and sets up one connection (no lock held), bounded by the deadline.
  /// Records the outcome for the reconnect backoff.
  Result<std::unique_ptr<Conn>> open_connection(Clock::time_point deadline) {
    std::uint64_t id = 0;
    {
      const std::lock_guard lock(mu_);
      id = next_id_++;
      ++attempts_;
    }
    auto c = connect(id, deadline);
    {
      const std::lock_guard lock(mu_);
      probing_ = false;
      if (c) {
        ++opened_;
        backoff_.reset();
        retry_at_ = {};
        last_failure_.reset();
      } else {
        ++failures_;
        retry_at_ = Clock::now() + backoff_.next();
        last_failure_ = c.error();
      }
    }
    cv_.notify_all();  // waiters for the attempt's outcome
    return c;
  }

  /// A bare libpq connection for a listener (not counted in the pool), set
  /// up as the pool's are.
  Result<std::unique_ptr<Conn>> open_dedicated(Clock::time_point deadline) {
    std::uint64_t id = 0;
    {
      const std::lock_guard lock(mu_);
      id = next_id_++;
    }
    return connect(id, deadline);
  }

  void add_listener(std::thread t) {
    const std::lock_guard lock(mu_);
    listeners_.push_back(std::move(t));
  }
  void join_listeners() noexcept {
    std::vector<std::thread> ts;
    {
      const std::lock_guard lock(mu_);
      ts.swap(listeners_);
    }
    for (auto& t : ts) {
      if (t.joinable()) t.join();
    }
  }

 private:
  void checked_out(Clock::time_point start, bool waited) {
    ++gets_;
    if (waited) record_wait(Clock::now() - start);
  }
  void record_wait(Clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    if (ns > longest_wait_) longest_wait_ = ns;
  }

  /// Can this idle connection be handed out? Reads what the server sent
  /// while it was idle (a termination notice), and pings it when it was idle
  /// longer than health_check_after.
  bool usable(Conn& c) noexcept {
    if (c.broken || PQstatus(c.pg) != CONNECTION_OK) return false;
    const int fd = PQsocket(c.pg);
    pollfd p{fd, POLLIN, 0};
    if (fd < 0) return false;
    if (::poll(&p, 1, 0) != 0) {
      // Something arrived while idle: a notice, a notification, or the
      // server saying goodbye (then the read finds the connection closed).
      if (PQconsumeInput(c.pg) == 0 || PQstatus(c.pg) != CONNECTION_OK) return false;
      while (PGnotify* n = PQnotifies(c.pg)) PQfreemem(n);
      // A termination notice arrives before the end of the stream: make
      // sure with a round trip.
      return ping(c, Clock::now() + cfg_.connect_timeout);
    }
    if (cfg_.health_check_after.count() > 0 && Clock::now() - c.last_used >= cfg_.health_check_after) {
      return ping(c, Clock::now() + cfg_.connect_timeout);
    }
    return true;
  }

  /// An empty query, answered within the deadline.
  static bool ping(Conn& c, Clock::time_point deadline) noexcept {
    if (PQsendQuery(c.pg, "") == 0) return false;
    for (;;) {
      if (PQconsumeInput(c.pg) == 0) return false;
      if (PQisBusy(c.pg) == 0) break;
      if (!wait_socket(PQsocket(c.pg), POLLIN, deadline)) return false;
    }
    bool ok = true;
    while (PGresult* r = PQgetResult(c.pg)) {
      if (PQresultStatus(r) != PGRES_EMPTY_QUERY) ok = false;
      PQclear(r);
    }
    return ok && PQstatus(c.pg) == CONNECTION_OK;
  }

  Result<std::unique_ptr<Conn>> connect(std::uint64_t id, Clock::time_point deadline) {
    PGconn* pg = PQconnectStart(cfg_.conninfo.c_str());
    if (pg == nullptr)
      return fail(Errc::resource_exhausted, "out of memory starting a PostgreSQL connection");
    auto c = std::make_unique<Conn>(pg, id, cfg_.statement_cache_capacity);
    if (PQstatus(pg) == CONNECTION_BAD) return connect_error(*c);
    // Server notices (NOTICE, WARNING) are not errors; libpq would print them to stderr.
    PQsetNoticeProcessor(
        pg, [](void*, const char*) {}, nullptr);
    PostgresPollingStatusType st = PGRES_POLLING_WRITING;
    for (;;) {
      if (st == PGRES_POLLING_OK) break;
      if (st == PGRES_POLLING_FAILED) return connect_error(*c);
      const short ev = st == PGRES_POLLING_READING ? POLLIN : POLLOUT;
      if (!wait_socket(PQsocket(pg), ev, deadline)) {
        return fail(Errc::unavailable, "connecting to PostgreSQL ({}) took longer than {} ms", where(),
                    cfg_.connect_timeout.count());
      }
      st = PQconnectPoll(pg);
    }
    Connection view(c.get());
    if (auto r = view.exec("SET DateStyle = ISO"); !r) {
      return std::move(r).error().context(fmt::format("setting up a connection to {}", where()));
    }
    if (cfg_.on_connect) {
      if (auto r = cfg_.on_connect(view); !r) {
        return std::move(r).error().context(fmt::format("running on_connect for {}", where()));
      }
    }
    return c;
  }

  Error connect_error(Conn& c) const {
    std::string msg = trim_message(PQerrorMessage(c.pg));
    const Errc kind = errc_for_connect_message(msg);  // before msg is moved from
    return Error(kind, std::move(msg)).context(fmt::format("connecting to {}", where()));
  }

  /// Where the pool connects, for messages (never the password).
  [[nodiscard]] std::string where() const {
    std::string out;
    char* err = nullptr;
    PQconninfoOption* opts = PQconninfoParse(cfg_.conninfo.c_str(), &err);
    if (err != nullptr) PQfreemem(err);
    if (opts == nullptr) return "PostgreSQL";
    std::string host;
    std::string port;
    std::string db;
    for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
      if (o->val == nullptr) continue;
      const std::string_view k = o->keyword;
      if (k == "host" || (k == "hostaddr" && host.empty())) host = o->val;
      if (k == "port") port = o->val;
      if (k == "dbname") db = o->val;
    }
    PQconninfoFree(opts);
    out = fmt::format("host={} port={} dbname={}", host.empty() ? "(default)" : host,
                      port.empty() ? "(default)" : port, db.empty() ? "(default)" : db);
    return out;
  }

  const PoolConfig cfg_;

  mutable std::mutex mu_;
  std::condition_variable cv_;               // a connection came back, a backoff passed, or the pool closed
  std::vector<std::unique_ptr<Conn>> idle_;  // back = most recently returned (LIFO keeps them warm)
  std::size_t size_ = 0;                     // open + being opened
  std::size_t in_use_ = 0;
  bool closed_ = false;
  std::uint64_t next_id_ = 1;
  std::uint64_t gets_ = 0;
  std::uint64_t waits_ = 0;
  std::uint64_t timeouts_ = 0;
  std::uint64_t opened_ = 0;
  std::uint64_t closed_count_ = 0;
  std::uint64_t attempts_ = 0;
  std::uint64_t failures_ = 0;
  std::uint64_t broken_ = 0;
  std::chrono::nanoseconds longest_wait_{0};
  Backoff backoff_;
  Clock::time_point retry_at_{};       // no connection attempt before this (after a failure)
  std::optional<Error> last_failure_;  // why the last attempt failed
  bool probing_ = false;               // an attempt after a failure is under way
  std::condition_variable maint_cv_;
  bool maint_wake_ = false;
  std::vector<std::thread> listeners_;
  std::atomic<bool> stopping_{false};
};

/// What Pool handles share: closes the pool and stops its threads when the
/// last handle goes. Checked-out connections keep PoolState alive, not this.
class PoolOwner {
 public:
  explicit PoolOwner(std::shared_ptr<PoolState> state) : state_(std::move(state)) {
    thread_ = std::thread([s = state_.get()] { s->maintain(); });
  }
  PoolOwner(const PoolOwner&) = delete;
  PoolOwner& operator=(const PoolOwner&) = delete;
  ~PoolOwner() {
    state_->close();
    if (thread_.joinable()) thread_.join();
    state_->join_listeners();
  }
  [[nodiscard]] const std::shared_ptr<PoolState>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<PoolState> state_;
  std::thread thread_;
};

}  // namespace detail

/// A connection checked out of a Pool; goes back when destroyed (after any
/// open transaction is rolled back). Move-only; one thread at a time.
class PooledConnection : public Connection {
 public:
  PooledConnection() noexcept = default;
  PooledConnection(PooledConnection&& o) noexcept
      : Connection(o.owned_.get()), pool_(std::move(o.pool_)), owned_(std::move(o.owned_)) {
    o.c_ = nullptr;
  }
  PooledConnection& operator=(PooledConnection&& o) noexcept {
    if (this != &o) {
      give_back();
      pool_ = std::move(o.pool_);
      owned_ = std::move(o.owned_);
      c_ = owned_.get();
      o.c_ = nullptr;
    }
    return *this;
  }
  ~PooledConnection() { give_back(); }

  /// False once moved from, reset or discarded.
  explicit operator bool() const noexcept { return owned_ != nullptr; }

  /// Returns the connection to the pool now (as the destructor would),
  /// leaving this handle empty, like the channel handles' reset().
  void reset() noexcept { give_back(); }
  /// The former name of reset() (unlike unique_ptr::release, it never let
  /// go of the connection without returning it).
  [[deprecated("use reset()")]] void release() noexcept { reset(); }
  /// Closes the connection instead of returning it; the pool opens a fresh
  /// one when needed.
  void discard() noexcept {
    if (owned_) owned_->broken = true;
    give_back();
  }

 private:
  friend class Pool;
  friend struct detail::ConnAccess;

  PooledConnection(std::shared_ptr<detail::PoolState> pool, std::unique_ptr<detail::Conn> conn) noexcept
      : Connection(conn.get()), pool_(std::move(pool)), owned_(std::move(conn)) {}

  void give_back() noexcept {
    c_ = nullptr;
    if (owned_) pool_->release(std::move(owned_));
    pool_.reset();
  }

  std::shared_ptr<detail::PoolState> pool_;
  std::unique_ptr<detail::Conn> owned_;
};

/// A pool of connections to one PostgreSQL database. Copies share the pool;
/// it closes when the last copy goes (connections still checked out close
/// when they come back).
class Pool {
 public:
  /// Opens the pool: validates config (Errc::config), opens min_idle
  /// connections (at least one, so a wrong address, database or password
  /// fails here: Errc::unavailable, not_found, auth_failed), and starts the
  /// maintenance thread.
  [[nodiscard]] static Result<Pool> open(PoolConfig config) {
    auto state = std::make_shared<detail::PoolState>(std::move(config));
    auto started = state->start();
    if (!started) return std::move(started).error().context("opening a keel::pg pool");
    return Pool(std::make_shared<detail::PoolOwner>(std::move(state)));
  }

  /// A connection, waiting up to connection_timeout (see get_for).
  [[nodiscard]] Result<PooledConnection> get() const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    return get_for(state().config().connection_timeout);
  }

  /// A connection, waiting up to `timeout` (zero: only what is available
  /// now). Errc::timeout when max_size stay checked out; Errc::unavailable
  /// (the last connection error) when the server stays unreachable;
  /// Errc::auth_failed at once when it refuses the credentials; Errc::closed
  /// after close().
  template <class Rep, class Period>
  [[nodiscard]] Result<PooledConnection> get_for(std::chrono::duration<Rep, Period> timeout) const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    const auto t = std::max(std::chrono::duration_cast<detail::Clock::duration>(timeout),
                            detail::Clock::duration::zero());
    auto c = state().acquire(t);
    if (!c) return std::move(c).error();
    return PooledConnection(owner_->state(), std::move(*c));
  }
  /// get_for until a point in time.
  template <class Clock, class Duration>
  [[nodiscard]] Result<PooledConnection> get_until(std::chrono::time_point<Clock, Duration> deadline) const {
    return get_for(deadline - Clock::now());
  }

  /// Size, idle, in use, waits, timeouts, connection attempts and failures.
  [[nodiscard]] PoolStats stats() const { return owner_ ? state().stats() : PoolStats{}; }
  /// The configuration. Precondition: not moved from.
  [[nodiscard]] const PoolConfig& config() const noexcept { return state().config(); }

  /// Closes the pool for every copy: idle connections close now, waiters and
  /// later get() calls fail with Errc::closed, listeners stop (their
  /// receivers see Errc::closed), checked-out connections close when they
  /// come back.
  void close() noexcept {
    if (owner_) state().close();
  }

 private:
  friend struct detail::ConnAccess;
  explicit Pool(std::shared_ptr<detail::PoolOwner> owner) noexcept : owner_(std::move(owner)) {}
  [[nodiscard]] detail::PoolState& state() const noexcept { return *owner_->state(); }

  std::shared_ptr<detail::PoolOwner> owner_;
};

namespace detail {
/// How transaction(), migrate() and listen() reach the internals.
struct ConnAccess {
  static Conn* conn(const Connection& c) noexcept { return c.c_; }
  static const std::shared_ptr<PoolOwner>& owner(const Pool& p) noexcept { return p.owner_; }
};
}  // namespace detail

}  // namespace keel::pg
