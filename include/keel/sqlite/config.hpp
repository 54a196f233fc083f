// keel/sqlite/config.hpp: what a keel::sqlite::Pool is given (PoolConfig)
// and what it reports (PoolStats).
//
//     keel::sqlite::PoolConfig cfg{.path = "app.db", .max_size = 4};
//     KEEL_TRY(cfg.validate());   // Errc::config, naming the field (Pool::open checks it too)
//
// Part of <keel/sqlite.hpp>; <keel/sqlite/pool.hpp> includes it.
#pragma once

#include <keel/logger.hpp>
#include <keel/result.hpp>

#include <SQLiteCpp/Database.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <string>
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
  /// the WAL index header in shared memory (no system call, no transaction)
  /// and reads PRAGMA schema_version (a short read transaction) only when
  /// something was committed since; in other journal modes it reads it at
  /// every such checkout. A change made while a connection is checked out is seen at its
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

/// A snapshot of a pool's counters. Checkouts that find an idle connection
/// take no lock, so while they run, `size`, `idle` and `in_use` are each read
/// at a slightly different moment and need not add up; they do once the pool
/// is quiet.
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

}  // namespace keel::sqlite
