// keel/sqlite/pool.hpp: a pool of SQLite connections (the r2d2 pattern).
//
// Part of <keel/sqlite.hpp> (see there for the overview). PoolConfig, Pool,
// PooledConnection and PoolStats; transactions and migrations build on them.
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

#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/sqlite/error.hpp>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Statement.h>
#include <fcntl.h>
#include <sqlite3.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <bit>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

namespace keel::sqlite {

/// How a Pool opens and keeps its connections. Durations of zero disable the
/// corresponding limit.
struct PoolConfig {
  /// A file path, ":memory:" (one in-memory database shared by every
  /// connection of this pool, through SQLite's memdb VFS), or a "file:" URI.
  std::string path;
  /// Most connections open at once (checked out + idle).
  std::size_t max_size = 8;
  /// Idle connections kept open and ready (opened at Pool::open, topped up by
  /// the maintenance thread; never more than max_size in all).
  std::size_t min_idle = 2;
  /// How long get() waits for a connection before Errc::timeout. Also bounds
  /// how long a write transaction waits for the write lock. Keep it larger
  /// than busy_timeout.
  std::chrono::milliseconds connection_timeout{10'000};
  /// An idle connection unused this long is closed (min_idle are kept).
  std::chrono::milliseconds idle_timeout{std::chrono::minutes(10)};
  /// A connection older than this is closed when it is next idle.
  std::chrono::milliseconds max_lifetime{std::chrono::minutes(30)};
  /// How often the maintenance thread retires and tops up connections.
  std::chrono::milliseconds maintenance_interval{1'000};

  // Pragmas. journal_mode is set once, when the pool opens; the others run on
  // every new connection. An empty string leaves SQLite's default.
  std::string journal_mode = "WAL";
  std::string synchronous = "NORMAL";
  bool foreign_keys = true;
  std::chrono::milliseconds busy_timeout{5'000};
  std::int64_t cache_size = -20'000;     ///< negative: KiB (here 20 MB); positive: pages
  std::int64_t mmap_size = 256LL << 20;  ///< bytes of memory-mapped I/O; 0 disables
  std::vector<std::string> pragmas{};    ///< more, run on each new connection: "temp_store = MEMORY"
  /// PRAGMA journal_size_limit on each connection: after a checkpoint resets
  /// the write-ahead log, its file is cut back to at most this many bytes.
  /// Negative: no limit (SQLite's default).
  std::int64_t journal_size_limit = 64LL << 20;
  /// When the -wal file has grown past this many bytes, the maintenance
  /// thread runs a TRUNCATE checkpoint on an idle connection (waiting up to
  /// busy_timeout for readers to move on to the newest snapshot). SQLite's
  /// own automatic checkpoints never reset the log while readers keep
  /// overlapping, so without this it grows without bound. 0 disables.
  std::int64_t wal_checkpoint_bytes = 64LL << 20;
  /// Prepared statements kept per connection by prepare_cached (LRU); at least 1.
  std::size_t statement_cache_capacity = 64;
  /// At each checkout of a connection with cached statements, drop the cache
  /// if the schema changed since the connection last looked (SQLiteCpp keeps
  /// a statement's column-name map across SQLite's re-prepare, so
  /// getColumn("name") could read another column). In WAL mode this compares
  /// the WAL index header in shared memory (no system call, no transaction) and reads PRAGMA
  /// schema_version (a short read transaction) only when something was
  /// committed since; in other journal modes it reads it at every such
  /// checkout. A change made while a connection is checked out is seen at its
  /// next checkout. Turn it off only when the schema never changes while the
  /// pool is open, from any connection or process.
  bool check_schema = true;
  /// Open the database read-only (no journal_mode change; writes fail).
  bool read_only = false;
  /// 0: every connection reads and writes (max_size of them). N > 0: a
  /// read/write split: one writer connection, handed out in arrival order
  /// (get_writer(), write transactions, get()), plus N read-only connections
  /// (opened SQLITE_OPEN_READONLY, PRAGMA query_only = ON; get_reader(),
  /// read-only transactions), all opened at Pool::open, so readers never
  /// wait behind the writer. max_size and min_idle are then not used.
  std::size_t readers = 0;
  /// Permission bits for a database file the pool creates (0: SQLite's
  /// default, 0644 less the umask). The file is made with exactly these bits
  /// whatever the umask, before SQLite opens it; SQLite gives the -wal and
  /// -shm files the database file's mode, so 0600 keeps all three private.
  /// An existing file keeps its mode. Ignored for ":memory:" and "file:" URIs.
  std::uint32_t file_mode = 0;
  /// Runs on each new connection after the pragmas (register functions,
  /// attach databases, ...); an error fails the open.
  std::function<Result<void>(SQLite::Database&)> on_connect{};
  /// Where the pool logs (debug: opens/closes; warn: faults). Empty: keel::default_logger()
  /// (keel::log::adapt() turns an spdlog logger into one).
  keel::Logger logger{};

  /// Errc::config (saying which field) for a configuration Pool::open refuses.
  [[nodiscard]] Result<void> validate() const {
    if (path.empty()) return fail(Errc::config, "PoolConfig::path is empty");
    if (max_size == 0) return fail(Errc::config, "PoolConfig::max_size must be at least 1");
    if (readers == 0 && min_idle > max_size) {
      return fail(Errc::config, "PoolConfig::min_idle ({}) exceeds max_size ({})", min_idle, max_size);
    }
    if (connection_timeout.count() < 0 || busy_timeout.count() < 0 || idle_timeout.count() < 0 ||
        max_lifetime.count() < 0 || maintenance_interval.count() <= 0) {
      return fail(Errc::config, "PoolConfig durations must not be negative (maintenance_interval > 0)");
    }
    if (busy_timeout.count() > 0x7fffffff) return fail(Errc::config, "PoolConfig::busy_timeout is too large");
    for (const auto* p : {&journal_mode, &synchronous}) {
      const bool plain = std::all_of(p->begin(), p->end(), [](char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
      });
      if (!plain) return fail(Errc::config, "pragma value \"{}\" is not a plain word", *p);
    }
    if (statement_cache_capacity == 0)
      return fail(Errc::config, "PoolConfig::statement_cache_capacity must be at least 1");
    if (readers > 0 && read_only) return fail(Errc::config, "PoolConfig::readers needs a writable database");
    if (readers > 1024) return fail(Errc::config, "PoolConfig::readers ({}) is more than 1024", readers);
    if (wal_checkpoint_bytes < 0)
      return fail(Errc::config, "PoolConfig::wal_checkpoint_bytes must not be negative");
    if (file_mode > 0777)
      return fail(Errc::config, "PoolConfig::file_mode {:o} is not a permission mode", file_mode);
    return {};
  }
};

/// A snapshot of a pool's counters.
struct PoolStats {
  std::size_t size = 0;                      ///< connections open or being opened
  std::size_t idle = 0;                      ///< ready in the pool
  std::size_t in_use = 0;                    ///< checked out
  std::size_t max_size = 0;                  ///< the configured limit
  std::uint64_t gets = 0;                    ///< successful get() calls
  std::uint64_t waits = 0;                   ///< get() calls that had to wait
  std::uint64_t timeouts = 0;                ///< get() calls that gave up (Errc::timeout)
  std::chrono::nanoseconds longest_wait{0};  ///< the longest a get() waited
  std::uint64_t opened = 0;                  ///< connections opened over the pool's life
  std::uint64_t closed = 0;                  ///< connections closed (retired, discarded, at close)
  std::uint64_t wal_bytes = 0;               ///< size of the -wal file at the last maintenance pass
  std::uint64_t checkpoint_lag_frames = 0;   ///< log frames not yet in the database after the last checkpoint
  std::uint64_t checkpoints = 0;             ///< TRUNCATE checkpoints run by the maintenance thread
  std::uint64_t checkpoint_failures = 0;     ///< ... that readers or writers kept from finishing
};

class Pool;
class PooledConnection;

namespace detail {
struct ConnAccess;

using Clock = std::chrono::steady_clock;

/// A per-connection LRU of prepared statements. The map's keys view the SQL
/// held by the list nodes, which never move.
class StatementCache {
 public:
  explicit StatementCache(std::size_t capacity) : capacity_(capacity == 0 ? 1 : capacity) {}
  StatementCache(const StatementCache&) = delete;
  StatementCache& operator=(const StatementCache&) = delete;

  /// The statement for sql, prepared on db if it is not cached, reset and with
  /// its bindings cleared. Throws SQLite::Exception.
  SQLite::Statement& get(SQLite::Database& db, std::string_view sql) {
    // The most recent statement first: a connection often runs the same one
    // again, and a comparison is cheaper than hashing the SQL.
    if (!lru_.empty() && lru_.front().sql == sql) return fresh(lru_.front().stmt);
    if (auto it = index_.find(sql); it != index_.end()) {
      lru_.splice(lru_.begin(), lru_, it->second);  // most recent first; iterators stay valid
      return fresh(it->second->stmt);
    }
    ++misses_;
    lru_.emplace_front(db, sql);  // prepares (may throw; then nothing was added)
    try {
      index_.emplace(std::string_view(lru_.front().sql), lru_.begin());
    } catch (...) {
      lru_.pop_front();
      throw;
    }
    if (lru_.size() > capacity_) {
      index_.erase(std::string_view(lru_.back().sql));
      lru_.pop_back();
    }
    return lru_.front().stmt;
  }
  [[nodiscard]] std::size_t size() const noexcept { return lru_.size(); }
  [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
  [[nodiscard]] std::uint64_t misses() const noexcept { return misses_; }
  void clear() noexcept {
    index_.clear();
    lru_.clear();
  }

 private:
  static SQLite::Statement& fresh(SQLite::Statement& st) {
    // tryReset: reset() would rethrow the error of the statement's last
    // failed step, which is history here.
    (void)st.tryReset();
    st.clearBindings();
    return st;
  }

  struct Entry {
    Entry(SQLite::Database& db, std::string_view s) : sql(s), stmt(db, sql) {}
    std::string sql;
    SQLite::Statement stmt;
  };
  std::list<Entry> lru_;
  std::unordered_map<std::string_view, std::list<Entry>::iterator> index_;
  std::size_t capacity_;
  std::uint64_t misses_ = 0;
};

/// The transaction-control statements, prepared once per connection.
enum class TxStmt : std::uint8_t {
  begin_immediate,
  begin_deferred,
  commit,
  rollback,
  query_only_on,
  query_only_off
};
inline constexpr std::size_t kTxStmtCount = 6;

/// The 48-byte header of a WAL index, as 32-bit words.
using WalHeader = std::array<std::uint32_t, 12>;
/// The size of one region of a WAL index in shared memory (SQLite's WALINDEX_PGSZ).
inline constexpr int kWalIndexRegion = 32768;

/// One pooled connection: the database, its statement cache and bookkeeping.
struct Conn {
  Conn(SQLite::Database&& database, std::uint64_t conn_id, std::size_t cache_capacity)
      : db(std::move(database)),
        id(conn_id),
        created(Clock::now()),
        last_used(created),
        cache(cache_capacity) {}
  Conn(const Conn&) = delete;
  Conn& operator=(const Conn&) = delete;
  ~Conn() {
    // Every statement must be finalized before SQLiteCpp closes the handle.
    cache.clear();
    for (auto*& s : tx) {
      sqlite3_finalize(s);
      s = nullptr;
    }
    sqlite3_finalize(schema_stmt);
  }

  /// Drops the statement cache when the schema changed since this
  /// connection last looked (another connection or process ran DDL, or this
  /// one did): SQLite re-prepares a statement after a schema change, but
  /// SQLiteCpp keeps the column-name map it built before, so getColumn("name")
  /// could read another column. Run at every checkout.
  ///
  /// In WAL mode it first compares the write-ahead log's index header (in
  /// shared memory; every commit, from any connection or process, rewrites
  /// it) with the one seen at the last look: unchanged, nothing was committed,
  /// so the schema did not change and no transaction is needed. Otherwise it
  /// reads PRAGMA schema_version (a short read transaction).
  /// `always`: look even with nothing cached (when the connection opens, so
  /// its first statements need not be dropped at the next checkout).
  int check_schema(bool always = false) noexcept {
    // Nothing cached, nothing to go stale. Statements cached from now on were
    // prepared against a schema at least as new as schema_version: if it has
    // moved by the next look they are dropped (perhaps needlessly, never
    // wrongly); with no version known yet they are dropped once.
    if (!always && cache.size() == 0) return SQLITE_OK;
    WalHeader now{};
    // Read before the schema: a commit between the two leaves an older header
    // recorded, so the next look reads the schema again.
    const bool have_header = read_wal_header(now);
    if (have_header && header_known && now == seen_header) return SQLITE_OK;
    sqlite3* h = db.getHandle();
    if (schema_stmt == nullptr) {
      const int rc = sqlite3_prepare_v3(h, "PRAGMA schema_version", -1, SQLITE_PREPARE_PERSISTENT,
                                        &schema_stmt, nullptr);
      if (rc != SQLITE_OK) return rc;
    }
    const int rc = sqlite3_step(schema_stmt);
    if (rc == SQLITE_ROW) {
      const auto v = sqlite3_column_int64(schema_stmt, 0);
      if (v != schema_version) {
        cache.clear();
        schema_version = v;
      }
    }
    sqlite3_reset(schema_stmt);
    header_known = have_header && rc == SQLITE_ROW;
    if (header_known) seen_header = now;
    return rc == SQLITE_ROW ? SQLITE_OK : rc;
  }

  /// Finds the files behind the WAL fast path of check_schema(); called once
  /// the connection is configured. Leaves them null unless the connection is
  /// in WAL mode with its index in shared memory.
  void watch_wal(bool wal_mode) noexcept {
    db_file = nullptr;
    wal_file = nullptr;
    header_known = false;
    if (!wal_mode) return;
    sqlite3* h = db.getHandle();
    sqlite3_file* main = nullptr;
    sqlite3_file* journal = nullptr;
    if (sqlite3_file_control(h, "main", SQLITE_FCNTL_FILE_POINTER, &main) != SQLITE_OK ||
        sqlite3_file_control(h, "main", SQLITE_FCNTL_JOURNAL_POINTER, &journal) != SQLITE_OK)
      return;
    if (main == nullptr || main->pMethods == nullptr || main->pMethods->iVersion < 2 ||
        main->pMethods->xShmMap == nullptr || journal == nullptr || journal->pMethods == nullptr)
      return;
    db_file = main;
    wal_file = journal;  // the WAL's file while the connection stays in WAL mode
  }

  /// The WAL index header (the first of its two copies: SQLite writes the
  /// second, then this one). False when there is none to trust: not in WAL
  /// mode (any more), inside a transaction (a snapshot), or not initialised.
  bool read_wal_header(WalHeader& out) noexcept {
    if (wal_file == nullptr) return false;
    sqlite3* h = db.getHandle();
    if (sqlite3_get_autocommit(h) == 0) return false;
    // Still the same WAL: a connection that left WAL mode has a rollback
    // journal here instead (and would create a -shm file if mapped).
    sqlite3_file* journal = nullptr;
    if (sqlite3_file_control(h, "main", SQLITE_FCNTL_JOURNAL_POINTER, &journal) != SQLITE_OK ||
        journal != wal_file)
      return false;
    void volatile* region = nullptr;
    if (db_file->pMethods->xShmMap(db_file, 0, kWalIndexRegion, 0, &region) != SQLITE_OK || region == nullptr)
      return false;
    const auto* words = static_cast<const volatile std::uint32_t*>(region);
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = words[i];
    // iVersion 3007000 and isInit (the byte after iChange) set: a header
    // SQLite wrote, in the format read here (native byte order).
    constexpr unsigned kInitShift = std::endian::native == std::endian::little ? 0U : 24U;
    return out[0] == 3007000U && ((out[3] >> kInitShift) & 0xffU) == 1U;
  }

  /// Steps one of the transaction-control statements; returns the SQLite code
  /// (SQLITE_DONE on success).
  int run(TxStmt which) noexcept {
    static constexpr std::array<const char*, kTxStmtCount> kSql = {
        "BEGIN IMMEDIATE", "BEGIN DEFERRED",        "COMMIT",
        "ROLLBACK",        "PRAGMA query_only = 1", "PRAGMA query_only = 0"};
    const auto i = static_cast<std::size_t>(which);
    if (tx[i] == nullptr) {
      const int rc =
          sqlite3_prepare_v3(db.getHandle(), kSql[i], -1, SQLITE_PREPARE_PERSISTENT, &tx[i], nullptr);
      if (rc != SQLITE_OK) {
        last_code = sqlite3_extended_errcode(db.getHandle());
        last_message = sqlite3_errmsg(db.getHandle());
        return rc;
      }
    }
    int rc = sqlite3_step(tx[i]);
    while (rc == SQLITE_ROW) rc = sqlite3_step(tx[i]);
    if (rc != SQLITE_DONE) {
      // Kept for the caller's Error: the reset below may replace the handle's message.
      last_code = sqlite3_extended_errcode(db.getHandle());
      last_message = sqlite3_errmsg(db.getHandle());
    }
    sqlite3_reset(tx[i]);
    return rc;
  }
  /// The error of the last failed run().
  [[nodiscard]] Error run_error(TxStmt which) const {
    return make_error(last_code, last_message, sql_of(which));
  }
  static const char* sql_of(TxStmt which) noexcept {
    switch (which) {
      case TxStmt::begin_immediate:
        return "BEGIN IMMEDIATE";
      case TxStmt::begin_deferred:
        return "BEGIN DEFERRED";
      case TxStmt::commit:
        return "COMMIT";
      case TxStmt::rollback:
        return "ROLLBACK";
      case TxStmt::query_only_on:
        return "PRAGMA query_only = 1";
      case TxStmt::query_only_off:
        return "PRAGMA query_only = 0";
    }
    return "";
  }

  SQLite::Database db;  // declared first: destroyed last
  std::uint64_t id;
  Clock::time_point created;
  Clock::time_point last_used;
  StatementCache cache;
  std::array<sqlite3_stmt*, kTxStmtCount> tx{};
  sqlite3_stmt* schema_stmt = nullptr;
  std::int64_t schema_version = -1;  // as of the last look; -1: not read yet
  sqlite3_file* db_file = nullptr;   // the database file, whose shared memory holds the WAL index
  sqlite3_file* wal_file = nullptr;  // the WAL's file (null: no WAL fast path)
  WalHeader seen_header{};           // the WAL index header at the last schema read
  bool header_known = false;         // seen_header is valid
  int savepoint_depth = 0;
  bool query_only = false;       // PRAGMA query_only is on (a read-only transaction or savepoint)
  bool reader = false;           // a read-only connection of a split pool: query_only always on
  bool owns_write_lock = false;  // checked out by get_writer() of a split pool: holds the write lock
  bool broken = false;
  int last_code = SQLITE_OK;
  std::string last_message;
};

/// The pool's in-process write lock: a fair (first come, first served)
/// mutex with a deadline. Fair, so a writer that commits and at once begins
/// again cannot starve the others, or the maintenance thread's checkpoint.
/// (Not std::timed_mutex: its try_lock_until goes through
/// pthread_mutex_clocklock, which ThreadSanitizer does not see.)
class WriteLock {
 public:
  /// Takes the lock in arrival order, waiting until the deadline; false if it
  /// did not get it.
  bool try_lock_until(Clock::time_point deadline) {
    std::unique_lock lock(mu_);
    const std::uint64_t ticket = next_++;
    if (!cv_.wait_until(lock, deadline, [&] { return serving_ == ticket; })) {
      abandoned_.push_back(ticket);  // skipped when its turn comes
      return false;
    }
    return true;
  }
  void unlock() noexcept {
    {
      const std::lock_guard lock(mu_);
      ++serving_;
      for (auto it = std::find(abandoned_.begin(), abandoned_.end(), serving_); it != abandoned_.end();
           it = std::find(abandoned_.begin(), abandoned_.end(), serving_)) {
        abandoned_.erase(it);
        ++serving_;
      }
    }
    cv_.notify_all();  // each waiter checks its own ticket
  }
  /// Waiters and the holder, if any.
  [[nodiscard]] std::uint64_t queued() const {
    const std::lock_guard lock(mu_);
    return next_ - serving_ - abandoned_.size();
  }

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::uint64_t next_ = 0;                // the next ticket to hand out
  std::uint64_t serving_ = 0;             // the ticket that holds the lock (== next_: free)
  std::vector<std::uint64_t> abandoned_;  // tickets whose waiters gave up (few: timeouts are rare)
};

/// The state a Pool's handles, its connections and its maintenance thread share.
/// What a PoolState's connections are for.
enum class Role : std::uint8_t {
  any,     ///< read and write (no split)
  writer,  ///< the one writer connection of a split pool
  reader,  ///< read-only connections of a split pool
};

class PoolState {
 public:
  explicit PoolState(PoolConfig config, Role role = Role::any) : cfg_(std::move(config)), role_(role) {
    log_ = keel::resolve_logger(cfg_.logger);
  }
  [[nodiscard]] Role role() const noexcept { return role_; }
  /// The name SQLite opens (the memdb URI for ":memory:").
  [[nodiscard]] const std::string& name() const noexcept { return name_; }
  PoolState(const PoolState&) = delete;
  PoolState& operator=(const PoolState&) = delete;
  ~PoolState() { anchor_.reset(); }

  [[nodiscard]] const PoolConfig& config() const noexcept { return cfg_; }
  [[nodiscard]] const keel::Logger& log() const noexcept { return log_; }
  WriteLock& writer() noexcept { return writer_; }

  /// Validates the configuration, works out the name and flags, opens the
  /// first connection (setting journal_mode) and the rest of min_idle.
  Result<void> start() {
    KEEL_TRY(cfg_.validate());
    if (cfg_.connection_timeout <= cfg_.busy_timeout) {
      log_->warn("keel::sqlite: connection_timeout ({} ms) should exceed busy_timeout ({} ms)",
                 cfg_.connection_timeout.count(), cfg_.busy_timeout.count());
    }
    flags_ = (cfg_.read_only ? SQLITE_OPEN_READONLY : (SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE)) |
             SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
    if (cfg_.path == ":memory:") {
      // One database per pool that every connection sees: the memdb VFS
      // shares a database between the connections of a process when its name
      // starts with '/'. (Shared-cache ":memory:" would also share it, but
      // shared cache reports table locks as SQLITE_LOCKED, which the busy
      // handler never waits out.) An anchor connection keeps it alive.
      static std::atomic<std::uint64_t> counter{0};
      // relaxed: only uniqueness matters.
      const auto n = counter.fetch_add(1, std::memory_order_relaxed);
      name_ = fmt::format("file:/keel-memdb-{}-{}?vfs=memdb", static_cast<const void*>(this), n);
      memory_ = true;
    } else {
      name_ = cfg_.path;
      if (cfg_.file_mode != 0 && !cfg_.read_only && !cfg_.path.starts_with("file:")) {
        KEEL_TRY(create_private(cfg_.path, cfg_.file_mode));
      }
    }

    KEEL_TRY_ASSIGN(auto first, open_connection(true));
    if (!memory_ && !cfg_.read_only) {
      const char* file = sqlite3_db_filename(first->db.getHandle(), "main");
      if (file != nullptr && *file != '\0') wal_path_ = std::string(file) + "-wal";
    }
    if (memory_) {
      KEEL_TRY_ASSIGN(auto anchor, open_connection(false));
      anchor_ = std::move(anchor);
    }
    const std::size_t warm = std::max<std::size_t>(cfg_.min_idle, 1);
    idle_.reserve(cfg_.max_size + 1);  // release() never allocates
    std::vector<std::unique_ptr<Conn>> conns;
    conns.push_back(std::move(first));
    while (conns.size() < warm) {
      KEEL_TRY_ASSIGN(auto c, open_connection(false));
      conns.push_back(std::move(c));
    }
    {
      const std::lock_guard lock(mu_);
      size_ = conns.size();
      for (auto& c : conns) idle_.push_back(std::move(c));
    }
    log_->debug("keel::sqlite: pool opened on {} ({} connections, max {})", cfg_.path, warm, cfg_.max_size);
    return {};
  }

  /// Checks a connection out, waiting until `deadline`; `start` is now (the
  /// caller has usually just read the clock).
  Result<std::unique_ptr<Conn>> acquire(Clock::time_point deadline, Clock::time_point start = Clock::now()) {
    const auto timeout = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline > start ? deadline - start : Clock::duration::zero());
    std::vector<std::unique_ptr<Conn>> expired;  // closed after the lock is released
    std::unique_lock lock(mu_);
    bool waited = false;
    auto now = start;
    for (;;) {
      if (closed_) return fail(Errc::closed, "the pool on {} is closed", cfg_.path);
      while (!idle_.empty()) {
        std::unique_ptr<Conn> c = std::move(idle_.back());
        idle_.pop_back();
        if (cfg_.max_lifetime.count() > 0 && now - c->created >= cfg_.max_lifetime) {
          --size_;
          ++closed_count_;
          expired.push_back(std::move(c));
          continue;
        }
        checked_out(start, waited);
        lock.unlock();
        expired.clear();
        return c;
      }
      if (size_ < cfg_.max_size) {
        ++size_;
        lock.unlock();
        expired.clear();
        auto c = open_connection(false);
        lock.lock();
        if (!c) {
          --size_;
          lock.unlock();
          cv_.notify_one();  // someone else may open one, or take a returned one
          return std::move(c).error().context(fmt::format("checking out a connection to {}", cfg_.path));
        }
        if (closed_) {
          --size_;
          ++closed_count_;
          lock.unlock();
          return fail(Errc::closed, "the pool on {} is closed", cfg_.path);
        }
        checked_out(start, waited);
        return c;
      }
      now = Clock::now();
      if (now >= deadline) {
        ++timeouts_;
        record_wait(now - start);
        lock.unlock();
        log_->warn("keel::sqlite: no connection to {} free after {} ms ({} in use)", cfg_.path,
                   timeout.count(), cfg_.max_size);
        return fail(Errc::timeout, "no connection to {} became free within {} ms (max_size {})", cfg_.path,
                    timeout.count(), cfg_.max_size);
      }
      if (!waited) {
        waited = true;
        ++waits_;
      }
      cv_.wait_until(lock, deadline);
      now = Clock::now();
    }
  }

  /// Takes a connection back: rolls back an open transaction, resets
  /// statements left mid-step, then makes it idle (or closes it).
  void release(std::unique_ptr<Conn> c) noexcept {
    if (!c) return;
    const bool unlock_writer = c->owns_write_lock;
    c->owns_write_lock = false;
    release_conn(std::move(c));
    if (unlock_writer) writer_.unlock();  // after the connection is idle again, for the next in line
  }

  void release_conn(std::unique_ptr<Conn> c) noexcept {
    sqlite3* h = c->db.getHandle();
    if (sqlite3_get_autocommit(h) == 0) {
      log_->warn("keel::sqlite: connection {} returned with an open transaction; rolling it back", c->id);
      for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
        if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
      }
      if (c->run(TxStmt::rollback) != SQLITE_DONE && sqlite3_get_autocommit(h) == 0) c->broken = true;
      if (!c->reader) {
        sqlite3_exec(h, "PRAGMA query_only = 0", nullptr, nullptr, nullptr);
        c->query_only = false;
      }
    } else {
      for (sqlite3_stmt* s = sqlite3_next_stmt(h, nullptr); s != nullptr; s = sqlite3_next_stmt(h, s)) {
        if (sqlite3_stmt_busy(s) != 0) sqlite3_reset(s);
      }
    }
    c->savepoint_depth = 0;
    const auto now = Clock::now();
    std::unique_lock lock(mu_);
    --in_use_;
    if (closed_ || c->broken || (cfg_.max_lifetime.count() > 0 && now - c->created >= cfg_.max_lifetime)) {
      --size_;
      ++closed_count_;
      const bool closed = closed_;
      lock.unlock();
      cv_.notify_one();
      if (!closed) wake_maintenance();
      log_->debug("keel::sqlite: closing connection {}", c->id);
      c.reset();
      return;
    }
    c->last_used = now;
    idle_.push_back(std::move(c));
    lock.unlock();
    cv_.notify_one();
  }

  /// Closes idle connections, fails waiters with Errc::closed; connections
  /// checked out are closed when they come back.
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
    cv_.notify_all();
    wake_maintenance();
    idle.clear();
    log_->debug("keel::sqlite: pool on {} closed", cfg_.path);
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
    s.wal_bytes = wal_bytes_;
    s.checkpoint_lag_frames = checkpoint_lag_;
    s.checkpoints = checkpoints_;
    s.checkpoint_failures = checkpoint_failures_;
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

  /// One maintenance pass: retire idle connections past idle_timeout (keeping
  /// min_idle) or max_lifetime, then open connections up to min_idle idle.
  void maintain_once() noexcept {
    std::vector<std::unique_ptr<Conn>> retired;
    std::size_t need = 0;
    {
      const std::lock_guard lock(mu_);
      if (closed_) return;
      const auto now = Clock::now();
      // idle_ front holds the least recently used.
      for (auto it = idle_.begin(); it != idle_.end();) {
        Conn& c = **it;
        const bool too_old = cfg_.max_lifetime.count() > 0 && now - c.created >= cfg_.max_lifetime;
        const bool unused = cfg_.idle_timeout.count() > 0 && now - c.last_used >= cfg_.idle_timeout &&
                            idle_.size() > cfg_.min_idle;
        if (too_old || unused) {
          retired.push_back(std::move(*it));
          it = idle_.erase(it);
          --size_;
          ++closed_count_;
        } else {
          ++it;
        }
      }
      if (idle_.size() < cfg_.min_idle) {
        need = std::min(cfg_.min_idle - idle_.size(), cfg_.max_size - size_);
        size_ += need;
      }
    }
    if (!retired.empty())
      log_->debug("keel::sqlite: retiring {} idle connections to {}", retired.size(), cfg_.path);
    retired.clear();
    checkpoint_if_large();
    for (std::size_t i = 0; i < need; ++i) {
      auto c = open_connection(false);
      std::unique_lock lock(mu_);
      if (!c || closed_) {
        size_ -= need - i;
        if (c) ++closed_count_;
        lock.unlock();
        if (!c) log_->warn("keel::sqlite: could not top up the pool: {}", c.error());
        cv_.notify_all();
        return;  // c (if any) closes here, outside the lock
      }
      c.value()->last_used = Clock::now();
      idle_.push_back(std::move(*c));
      lock.unlock();
      cv_.notify_one();
    }
  }

  /// Runs a TRUNCATE checkpoint on an idle connection when the -wal file has
  /// passed wal_checkpoint_bytes (from the maintenance thread).
  void checkpoint_if_large() noexcept {
    if (cfg_.wal_checkpoint_bytes <= 0 || wal_path_.empty()) return;
    struct stat st {};
    const std::uint64_t size =
        ::stat(wal_path_.c_str(), &st) == 0 ? static_cast<std::uint64_t>(st.st_size) : std::uint64_t{0};
    {
      const std::lock_guard lock(mu_);
      wal_bytes_ = size;
      if (closed_ || size < static_cast<std::uint64_t>(cfg_.wal_checkpoint_bytes)) return;
    }
    // In line with this process's writers (the lock is fair), so they cannot
    // keep the checkpoint from SQLite's write lock; the lock first, then an
    // idle connection (a split pool's writer holds the lock while it holds
    // its connection).
    if (!writer_.try_lock_until(Clock::now() + cfg_.busy_timeout)) return;
    std::unique_ptr<Conn> c;
    {
      const std::lock_guard lock(mu_);
      if (!closed_ && !idle_.empty()) {
        c = std::move(idle_.back());
        idle_.pop_back();
        ++in_use_;
      }
    }
    if (!c) {
      writer_.unlock();
      return;
    }
    int log_frames = 0;
    int done = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(c->db.getHandle(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &done);
    writer_.unlock();
    std::uint64_t failures = 0;
    {
      const std::lock_guard lock(mu_);
      if (rc == SQLITE_OK) {
        ++checkpoints_;
        consecutive_failures_ = 0;
        checkpoint_lag_ = 0;
        wal_bytes_ = 0;
      } else {
        ++checkpoint_failures_;
        failures = ++consecutive_failures_;
        checkpoint_lag_ = log_frames > done ? static_cast<std::uint64_t>(log_frames - done) : 0;
      }
    }
    if (rc == SQLITE_OK) {
      log_->debug("keel::sqlite: checkpointed and truncated the {}-byte write-ahead log of {}", size,
                  cfg_.path);
    } else if (failures == 3 || (failures > 3 && failures % 60 == 0)) {
      log_->warn(
          "keel::sqlite: the write-ahead log of {} is {} bytes and {} checkpoints in a row could not "
          "finish ({}): a reader or writer keeps an old snapshot open",
          cfg_.path, size, failures, sqlite3_errmsg(c->db.getHandle()));
    }
    release(std::move(c));
  }

  void wake_maintenance() noexcept {
    {
      const std::lock_guard lock(mu_);
      maint_wake_ = true;
    }
    maint_cv_.notify_one();
  }

 private:
  void checked_out(Clock::time_point start, bool waited) {
    ++in_use_;
    ++gets_;
    if (waited) record_wait(Clock::now() - start);
  }
  void record_wait(Clock::duration d) {
    const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d);
    if (ns > longest_wait_) longest_wait_ = ns;
  }

  /// Creates `path` with exactly `mode` (not less the umask) unless it exists.
  static Result<void> create_private(const std::string& path, std::uint32_t mode) {
    const int fd =
        ::open(path.c_str(), O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, static_cast<mode_t>(mode));
    if (fd < 0) {
      if (errno == EEXIST) return {};
      return fail(Errc::io, "creating {}: {}", path, std::strerror(errno));
    }
    const int rc = ::fchmod(fd, static_cast<mode_t>(mode));  // the umask took bits away at open
    const int err = errno;
    ::close(fd);
    if (rc != 0) return fail(Errc::io, "setting the mode of {}: {}", path, std::strerror(err));
    return {};
  }

  /// Opens and configures one connection (no lock held).
  Result<std::unique_ptr<Conn>> open_connection(bool first) {
    std::uint64_t id = 0;
    {
      const std::lock_guard lock(mu_);
      id = next_id_++;
    }
    std::string step = "opening";
    try {
      SQLite::Database db(name_, flags_, static_cast<int>(cfg_.busy_timeout.count()));
      auto c = std::make_unique<Conn>(std::move(db), id, cfg_.statement_cache_capacity);
      c->reader = role_ == Role::reader;
      c->query_only = c->reader;
      auto& d = c->db;
      if (first) {
        // Reading the schema makes a file that is not a database fail here, at open.
        step = "reading the schema of";
        (void)d.execAndGet("SELECT count(*) FROM sqlite_master").getInt64();
        if (!cfg_.read_only && !cfg_.journal_mode.empty()) {
          step = "setting journal_mode on";
          const std::string mode = d.execAndGet("PRAGMA journal_mode = " + cfg_.journal_mode).getString();
          log_->debug("keel::sqlite: journal_mode is {} on {}", mode, cfg_.path);
        }
      }
      step = "setting pragmas on";
      std::string p;
      if (!cfg_.synchronous.empty()) p += "PRAGMA synchronous = " + cfg_.synchronous + ";";
      p += cfg_.foreign_keys ? "PRAGMA foreign_keys = ON;" : "PRAGMA foreign_keys = OFF;";
      p += fmt::format("PRAGMA cache_size = {};", cfg_.cache_size);
      if (!memory_) p += fmt::format("PRAGMA mmap_size = {};", cfg_.mmap_size);
      if (!memory_) p += fmt::format("PRAGMA journal_size_limit = {};", cfg_.journal_size_limit);
      for (const auto& extra : cfg_.pragmas) p += "PRAGMA " + extra + ";";
      d.exec(p);
      if (cfg_.on_connect) {
        step = "running on_connect for";
        auto r = cfg_.on_connect(d);
        if (!r) return std::move(r).error().context(fmt::format("{} {}", step, cfg_.path));
      }
      if (cfg_.check_schema) {
        // After a read transaction (this one), a connection in WAL mode has its WAL open.
        if (c->check_schema(true) != SQLITE_OK) {
          return last_error(d.getHandle(), "PRAGMA schema_version")
              .context(fmt::format("reading the schema version of {}", cfg_.path));
        }
        step = "reading journal_mode of";
        std::string mode = d.execAndGet("PRAGMA journal_mode").getString();
        std::transform(mode.begin(), mode.end(), mode.begin(), [](char ch) {
          return ch >= 'A' && ch <= 'Z' ? static_cast<char>(ch - 'A' + 'a') : ch;
        });
        if (!memory_) c->watch_wal(mode == "wal");
      }
      {
        const std::lock_guard lock(mu_);
        ++opened_;
      }
      log_->debug("keel::sqlite: opened connection {} to {}", id, cfg_.path);
      return c;
    } catch (const SQLite::Exception& ex) {
      log_->warn("keel::sqlite: {} {} failed: {}", step, cfg_.path, ex.what());
      return from_exception(ex).context(fmt::format("{} SQLite database {}", step, cfg_.path));
    } catch (const std::bad_alloc&) {
      return fail(Errc::resource_exhausted, "out of memory {} {}", step, cfg_.path);
    }
  }

  const PoolConfig cfg_;
  const Role role_;
  keel::Logger log_;
  std::string name_;
  int flags_ = 0;
  bool memory_ = false;
  std::unique_ptr<Conn> anchor_;  // keeps a :memory: database alive

  mutable std::mutex mu_;
  std::condition_variable cv_;               // a connection came back (or the pool closed)
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
  std::chrono::nanoseconds longest_wait_{0};
  std::string wal_path_;  // empty: in memory or read-only
  std::uint64_t wal_bytes_ = 0;
  std::uint64_t checkpoint_lag_ = 0;
  std::uint64_t checkpoints_ = 0;
  std::uint64_t checkpoint_failures_ = 0;
  std::uint64_t consecutive_failures_ = 0;
  std::condition_variable maint_cv_;
  bool maint_wake_ = false;

  WriteLock writer_;  // the single in-process writer path (see transaction())
};

/// What Pool handles share: closes the pool and stops its thread when the last
/// handle goes. Checked-out connections keep PoolState alive, not this.
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
  }
  [[nodiscard]] const std::shared_ptr<PoolState>& state() const noexcept { return state_; }

 private:
  std::shared_ptr<PoolState> state_;
  std::thread thread_;
};

}  // namespace detail

/// A connection checked out of a Pool; goes back when destroyed (after any
/// open transaction is rolled back). `*` and `->` give the SQLite::Database.
/// Move-only. Use from one thread at a time.
class PooledConnection {
 public:
  PooledConnection() noexcept = default;
  PooledConnection(PooledConnection&&) noexcept = default;
  PooledConnection& operator=(PooledConnection&& other) noexcept {
    if (this != &other) {
      give_back();
      pool_ = std::move(other.pool_);
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
  /// False once moved from, released or discarded.
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

  /// Returns the connection to the pool now (as the destructor would).
  void release() noexcept { give_back(); }
  /// Closes the connection instead of returning it (after an error that may
  /// have left it unusable); the pool opens a fresh one when needed.
  void discard() noexcept {
    if (conn_) conn_->broken = true;
    give_back();
  }

 private:
  friend class Pool;
  friend struct detail::ConnAccess;

  PooledConnection(std::shared_ptr<detail::PoolState> pool, std::unique_ptr<detail::Conn> conn) noexcept
      : pool_(std::move(pool)), conn_(std::move(conn)) {}

  void give_back() noexcept {
    if (conn_) pool_->release(std::move(conn_));
    pool_.reset();
  }

  std::shared_ptr<detail::PoolState> pool_;
  std::unique_ptr<detail::Conn> conn_;
};

namespace detail {
/// A steady-clock deadline `d` from now (a negative `d`: now; a huge one: a
/// century, so no arithmetic overflows).
template <class Rep, class Period>
[[nodiscard]] Clock::time_point deadline_after(std::chrono::duration<Rep, Period> d,
                                               Clock::time_point now = Clock::now()) noexcept {
  if (d <= d.zero()) return now;
  constexpr auto kCentury = std::chrono::hours(24 * 365 * 100);
  if (d >= kCentury) return now + kCentury;
  return now + std::chrono::ceil<Clock::duration>(d);
}
/// `tp` as a steady-clock deadline.
template <class C, class D>
[[nodiscard]] Clock::time_point steady_deadline(std::chrono::time_point<C, D> tp) noexcept {
  if constexpr (std::is_same_v<C, Clock>) {
    return std::chrono::time_point_cast<Clock::duration>(tp);
  } else {
    return deadline_after(tp - C::now());
  }
}
}  // namespace detail

/// A pool of SQLite connections to one database. Copies share the pool; it
/// closes when the last copy goes (connections still checked out close when
/// they come back).
class Pool {
 public:
  /// Opens the pool: validates config, opens min_idle connections (at least
  /// one, so a bad path or a file that is not a database fails here), sets
  /// journal_mode, and starts the maintenance thread. With config.readers > 0
  /// it opens the writer connection and then every reader connection.
  [[nodiscard]] static Result<Pool> open(PoolConfig config) {
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

  /// A connection for anything, waiting up to connection_timeout for one to
  /// come back when max_size are checked out (then Errc::timeout).
  /// Errc::closed after close(). In a split pool: the writer (get_writer()).
  [[nodiscard]] Result<PooledConnection> get() const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    return get_for(cfg_->connection_timeout);
  }
  /// get() with its own timeout (zero: only what is available right now).
  template <class Rep, class Period>
  [[nodiscard]] Result<PooledConnection> get_for(std::chrono::duration<Rep, Period> timeout) const {
    if (readers_) return get_writer_for(timeout);
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    const auto now = detail::Clock::now();  // read once: the deadline and the wait statistics
    return checkout(*owner_, detail::deadline_after(timeout, now), now);
  }
  /// get() with a deadline.
  template <class C, class D>
  [[nodiscard]] Result<PooledConnection> get_until(std::chrono::time_point<C, D> deadline) const {
    if (readers_) return get_writer_until(deadline);
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    return checkout(*owner_, detail::steady_deadline(deadline));
  }

  /// The connection to write with. In a split pool: the one writer
  /// connection, handed out in arrival order (the pool's write lock is held
  /// while it is checked out, so write transactions on it never wait again);
  /// otherwise the same as get().
  [[nodiscard]] Result<PooledConnection> get_writer() const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    return get_writer_for(cfg_->connection_timeout);
  }
  template <class Rep, class Period>
  [[nodiscard]] Result<PooledConnection> get_writer_for(std::chrono::duration<Rep, Period> timeout) const {
    return get_writer_until(detail::deadline_after(timeout));
  }
  template <class C, class D>
  [[nodiscard]] Result<PooledConnection> get_writer_until(std::chrono::time_point<C, D> deadline) const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    const auto until = detail::steady_deadline(deadline);
    if (!readers_) return checkout(*owner_, until);
    detail::PoolState& st = state();
    if (!st.writer().try_lock_until(until)) {
      return fail(Errc::timeout, "the writer connection to {} did not become free in time", cfg_->path);
    }
    auto c = st.acquire(until);
    if (!c) {
      st.writer().unlock();
      return std::move(c).error();
    }
    (*c)->owns_write_lock = true;  // unlocked when the connection comes back
    return checked(PooledConnection(owner_->state(), std::move(*c)));
  }

  /// A connection to read with. In a split pool: one of the read-only
  /// connections, never waiting behind the writer; otherwise the same as get().
  [[nodiscard]] Result<PooledConnection> get_reader() const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    return get_reader_for(cfg_->connection_timeout);
  }
  template <class Rep, class Period>
  [[nodiscard]] Result<PooledConnection> get_reader_for(std::chrono::duration<Rep, Period> timeout) const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    const auto now = detail::Clock::now();
    return checkout(readers_ ? *readers_ : *owner_, detail::deadline_after(timeout, now), now);
  }
  template <class C, class D>
  [[nodiscard]] Result<PooledConnection> get_reader_until(std::chrono::time_point<C, D> deadline) const {
    if (!owner_) return fail(Errc::closed, "the pool was moved from");
    return checkout(readers_ ? *readers_ : *owner_, detail::steady_deadline(deadline));
  }

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

  static Result<PooledConnection> checkout(const detail::PoolOwner& owner, detail::Clock::time_point until,
                                           detail::Clock::time_point now = detail::Clock::now()) {
    auto c = owner.state()->acquire(until, now);
    if (!c) return std::move(c).error();
    return checked(PooledConnection(owner.state(), std::move(*c)));
  }
  // Drops a connection's statement cache when the schema changed since it
  // last looked (see Conn::check_schema).
  static Result<PooledConnection> checked(PooledConnection conn) {
    if (conn.pool_->config().check_schema && conn.conn_->check_schema() != SQLITE_OK) {
      Error e = last_error(conn.handle(), "PRAGMA schema_version");
      conn.discard();
      return std::move(e).context("checking out a connection");
    }
    return conn;
  }

  std::shared_ptr<const PoolConfig> cfg_;
  std::shared_ptr<detail::PoolOwner> owner_;    // every connection, or a split pool's writer
  std::shared_ptr<detail::PoolOwner> readers_;  // a split pool's readers
};

namespace detail {
/// How transaction() and migrate() reach a PooledConnection's internals.
struct ConnAccess {
  static Conn* conn(const PooledConnection& c) noexcept { return c.conn_.get(); }
  static PoolState* pool(const PooledConnection& c) noexcept { return c.pool_.get(); }
};
}  // namespace detail

}  // namespace keel::sqlite
