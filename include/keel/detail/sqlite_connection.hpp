// keel/detail/sqlite_connection.hpp: one pooled SQLite connection (Conn):
// the database, its statement cache, its transaction-control statements and
// the schema check run at checkout. Not part of the API.
#pragma once

#include <keel/detail/sqlite_clock.hpp>
#include <keel/detail/sqlite_statement_cache.hpp>
#include <keel/sqlite/error.hpp>

#include <SQLiteCpp/Database.h>
#include <sqlite3.h>

#include <array>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <string_view>
#include <utility>

namespace keel::sqlite::detail {

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

/// The 48-byte header of a WAL index, as 64-bit words (it starts a region,
/// which is page-aligned).
using WalHeader = std::array<std::uint64_t, 6>;

/// Where a connection's WAL index is mapped, learnt by watching its database
/// file's shared-memory calls rather than asking for it at every checkout.
///
/// SQLite maps the WAL index with the database file's xShmMap and keeps the
/// address of each region for as long as its WAL stays open (wal.c caches
/// them in apWiData and calls xShmMap again only for a region it has not
/// mapped); a mapping ends only with that file's xShmUnmap (the WAL closes:
/// journal_mode leaves WAL, or the connection closes). ShmWatch is a copy of
/// the file's method table, installed in its place, whose xShmMap records
/// region 0 and whose xShmUnmap and xClose forget it before calling the
/// originals; every other method is the original. So `region0` is non-null
/// exactly while it is mapped, and reading it costs no call into SQLite, no
/// lock and no system call. (SQLite's own recover extension swaps a live
/// file's method table the same way.)
struct ShmWatch {
  sqlite3_io_methods methods{};  // first: the file's pMethods points here
  const sqlite3_io_methods* original = nullptr;
  const volatile std::uint64_t* region0 = nullptr;  // the WAL index header; null: not mapped

  static ShmWatch& of(sqlite3_file* f) noexcept {
    // methods is the first member of this standard-layout struct.
    return *reinterpret_cast<ShmWatch*>(const_cast<sqlite3_io_methods*>(f->pMethods));
  }
  static int shm_map(sqlite3_file* f, int region, int size, int extend, void volatile** pp) {
    ShmWatch& w = of(f);
    const int rc = w.original->xShmMap(f, region, size, extend, pp);
    if (region == 0)
      w.region0 =
          rc == SQLITE_OK && *pp != nullptr ? static_cast<const volatile std::uint64_t*>(*pp) : nullptr;
    return rc;
  }
  static int shm_unmap(sqlite3_file* f, int delete_flag) {
    ShmWatch& w = of(f);
    w.region0 = nullptr;
    return w.original->xShmUnmap(f, delete_flag);
  }
  static int close(sqlite3_file* f) {
    ShmWatch& w = of(f);
    w.region0 = nullptr;
    return w.original->xClose(f);
  }

  /// Installs a watch on `db`'s main database file; null when its methods
  /// have no shared memory (not a unix-like VFS, or the memdb VFS).
  /// Not in shared-cache mode (connections there share one file, which none
  /// of them could own): the pool opens with SQLITE_OPEN_PRIVATECACHE, and a
  /// "cache=shared" URI gets no watch.
  static std::unique_ptr<ShmWatch> install(sqlite3* db) noexcept {
    const char* name = sqlite3_db_filename(db, "main");
    if (name == nullptr) return nullptr;
    const char* cache = sqlite3_uri_parameter(name, "cache");
    if (cache != nullptr && std::string_view(cache) != "private") return nullptr;
    sqlite3_file* f = nullptr;
    if (sqlite3_file_control(db, "main", SQLITE_FCNTL_FILE_POINTER, &f) != SQLITE_OK || f == nullptr)
      return nullptr;
    const sqlite3_io_methods* m = f->pMethods;
    if (m == nullptr || m->iVersion < 2 || m->xShmMap == nullptr || m->xShmUnmap == nullptr ||
        m->xClose == nullptr ||
        m->xShmMap == &shm_map)  // already watched (a shared cache): leave it to its owner
      return nullptr;
    auto w = std::unique_ptr<ShmWatch>(new (std::nothrow) ShmWatch);
    if (!w) return nullptr;
    w->methods = *m;
    w->methods.xShmMap = &shm_map;
    w->methods.xShmUnmap = &shm_unmap;
    w->methods.xClose = &close;
    w->original = m;
    f->pMethods = &w->methods;
    return w;
  }
};

class PoolState;

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

  /// Watches the database file's shared memory for the WAL fast path of
  /// check_schema() (see ShmWatch). Call right after the open, before the
  /// first statement, so SQLite's own first mapping of the WAL index is seen.
  void watch_shm() noexcept { shm = ShmWatch::install(db.getHandle()); }

  /// The WAL index header (the first of its two copies: SQLite writes the
  /// second, then this one). False when there is none to trust: no WAL index
  /// mapped (not in WAL mode, or not any more), inside a transaction (a
  /// snapshot), or not initialised.
  bool read_wal_header(WalHeader& out) const noexcept {
    if (shm == nullptr) return false;
    const volatile std::uint64_t* words = shm->region0;
    if (words == nullptr || sqlite3_get_autocommit(db.getHandle()) == 0) return false;
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = words[i];
    // iVersion (bytes 0-3) 3007000 and isInit (byte 12, after iChange) set: a
    // header SQLite wrote, in the format read here (native byte order).
    constexpr bool kLittle = std::endian::native == std::endian::little;
    const auto version = static_cast<std::uint32_t>(kLittle ? out[0] : out[0] >> 32U);
    const auto init = static_cast<std::uint8_t>(out[1] >> (kLittle ? 32U : 24U));
    return version == 3007000U && init == 1U;
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

  // Declared before db: destroyed after it, so the file's methods stay valid while it closes.
  std::unique_ptr<ShmWatch> shm;
  SQLite::Database db;
  std::uint64_t id;
  Clock::time_point created;
  Clock::time_point last_used;
  StatementCache cache;
  std::array<sqlite3_stmt*, kTxStmtCount> tx{};
  sqlite3_stmt* schema_stmt = nullptr;
  std::int64_t schema_version = -1;  // as of the last look; -1: not read yet
  WalHeader seen_header{};           // the WAL index header at the last schema read
  bool header_known = false;         // seen_header is valid
  int savepoint_depth = 0;
  bool query_only = false;       // PRAGMA query_only is on (a read-only transaction or savepoint)
  bool reader = false;           // a read-only connection of a split pool: query_only always on
  bool owns_write_lock = false;  // checked out by get_writer() of a split pool: holds the write lock
  bool broken = false;
  int last_code = SQLITE_OK;
  std::string last_message;
  // The pool it belongs to, kept alive while the connection is (checked out
  // or idle; close() drops the idle ones). Null for a :memory: pool's anchor.
  std::shared_ptr<PoolState> pool;
};

}  // namespace keel::sqlite::detail
