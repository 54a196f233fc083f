// keel/sqlite/migrate.hpp: numbered schema migrations, each in its own
// transaction, checked against what was applied, and reversible when given
// their inverse.
//
// Part of <keel/sqlite.hpp>.
//
//     constexpr std::string_view kMigrations[] = {
//         "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",   // version 1
//         "ALTER TABLE users ADD COLUMN email TEXT",                           // version 2
//     };
//     KEEL_TRY_ASSIGN(int version, keel::sqlite::migrate(conn, kMigrations));  // 2
//
//     constexpr keel::sqlite::Migration kReversible[] = {
//         {.up = "CREATE TABLE t (x)", .down = "DROP TABLE t"},
//     };
//     KEEL_TRY(keel::sqlite::migrate_to(conn, kReversible, 0));              // back to an empty schema
//
// migrations[i] is version i + 1. The versions applied are rows of a
// `schema_version` table (version, applied_at, checksum). Each pending
// migration runs in its own write transaction together with the insert of its
// row, so a failing migration leaves nothing of itself behind while the
// earlier ones stay. The version is read again inside each transaction, so two
// processes migrating at once apply each migration once. Running migrate again
// changes nothing.
//
// Checks: the checksum of each migration's text (64-bit FNV-1a: it detects
// edits, it is not a cryptographic hash) is stored when it is applied; a later
// run whose text for an applied version differs fails with Errc::config
// before applying anything (edit history by adding a migration, never by
// changing one). A database at a version above the migrations known here
// (written by newer code) is Errc::config too. Versions applied before
// checksums existed get theirs recorded on the next run.
//
// Foreign keys: a migration runs with foreign-key enforcement off (switched
// off on the connection before its transaction, since inside one SQLite
// ignores the change), so SQLite's 12-step table rebuild (create the new
// table, copy, drop the old, rename) does not fire ON DELETE actions on the
// child rows. Before commit, `PRAGMA foreign_key_check` must find nothing:
// a violation fails the migration (rolled back) with an error naming the
// table. Enforcement is restored afterwards, whatever happened.
//
// A migration may hold several statements separated by ';' but must not
// BEGIN/COMMIT itself, nor run statements SQLite refuses inside a transaction
// (VACUUM, changing journal_mode).
#pragma once

#include <keel/result.hpp>
#include <keel/sqlite/error.hpp>
#include <keel/sqlite/pool.hpp>
#include <keel/sqlite/query.hpp>
#include <keel/sqlite/transaction.hpp>

#include <SQLiteCpp/Statement.h>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keel::sqlite {

/// One migration: its SQL and, optionally, the SQL that undoes it (for
/// migrate_to going down).
struct Migration {
  std::string_view up;
  std::string_view down{};
};

namespace detail {
inline constexpr std::string_view kSchemaVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, "
    "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')), "
    "checksum TEXT)";

/// The checksum stored for a migration's text.
[[nodiscard]] inline std::string migration_checksum(std::string_view sql) {
  std::uint64_t h = 0xcbf29ce484222325ULL;  // FNV-1a 64
  for (const char c : sql) {
    h ^= static_cast<std::uint8_t>(c);
    h *= 0x100000001b3ULL;
  }
  return fmt::format("fnv1a64:{:016x}", h);
}

inline Result<int> read_schema_version(PooledConnection& conn) {
  return try_sql(
      [&]() -> Result<int> {
        if (!conn->tableExists("schema_version")) return 0;
        return static_cast<int>(
            conn->execAndGet("SELECT COALESCE(MAX(version), 0) FROM schema_version").getInt64());
      },
      "SELECT MAX(version) FROM schema_version");
}

/// Foreign-key enforcement off on a connection for a scope (outside any
/// transaction), back to what it was at the end.
class ForeignKeysOff {
 public:
  explicit ForeignKeysOff(PooledConnection& c) : c_(c) {}
  ForeignKeysOff(const ForeignKeysOff&) = delete;
  ForeignKeysOff& operator=(const ForeignKeysOff&) = delete;
  ~ForeignKeysOff() {
    if (was_on_) (void)c_.exec("PRAGMA foreign_keys = ON");
  }
  Result<void> start() {
    KEEL_TRY_ASSIGN(std::int64_t on, query_one<std::int64_t>(c_, "PRAGMA foreign_keys"));
    if (on == 0) return {};
    KEEL_TRY(c_.exec("PRAGMA foreign_keys = OFF"));
    was_on_ = true;
    return {};
  }

 private:
  PooledConnection& c_;
  bool was_on_ = false;
};

/// Inside a migration's transaction: Errc::database naming the first table
/// with a row whose parent is missing.
inline Result<void> check_foreign_keys(PooledConnection& c) {
  return try_sql([&]() -> Result<void> {
    SQLite::Statement q(*c, "PRAGMA foreign_key_check");
    if (!q.executeStep()) return {};
    const std::string table = q.getColumn(0).getString();
    const std::string parent = q.getColumn(2).getString();
    const auto rowid = q.getColumn(1).isNull() ? std::string("?") : q.getColumn(1).getString();
    return fail(Errc::database,
                "foreign key violation after the migration: a row of table \"{}\" (rowid {}) refers to a "
                "missing row of \"{}\"",
                table, rowid, parent);
  });
}

/// Runs one migration step (up to `version`, or down from it) in its own
/// write transaction with foreign keys off; false when another process had
/// already done it.
inline Result<bool> run_step(PooledConnection& conn, int version, std::string_view sql, bool up,
                             const std::string& checksum) {
  ForeignKeysOff fk(conn);
  KEEL_TRY(fk.start());
  return transaction(conn, [&](PooledConnection& c) -> Result<bool> {
    KEEL_TRY_ASSIGN(int now, read_schema_version(c));
    if (up) {
      if (now >= version) return false;  // another process got there first
      if (now != version - 1)
        return fail(Errc::config, "schema version is {}, expected {}", now, version - 1);
    } else {
      if (now < version) return false;
      if (now != version) return fail(Errc::config, "schema version is {}, expected {}", now, version);
    }
    if (!sql.empty()) KEEL_TRY(c.exec(sql));
    KEEL_TRY(check_foreign_keys(c));
    if (up) {
      KEEL_TRY(execute(c, "INSERT INTO schema_version(version, checksum) VALUES (?, ?)", version, checksum));
    } else {
      KEEL_TRY(execute(c, "DELETE FROM schema_version WHERE version = ?", version));
    }
    return true;
  });
}

/// Creates schema_version (or adds its checksum column), then compares the
/// recorded checksums of versions 1..min(current, known) with `ups`.
inline Result<int> prepare_versions(PooledConnection& conn, std::span<const std::string> checksums) {
  if (!conn) return fail(Errc::invalid_argument, "migrate on an empty PooledConnection");
  if (conn.in_transaction())
    return fail(Errc::invalid_argument, "migrate needs a connection outside a transaction");
  auto made = transaction(conn, [&](PooledConnection& c) -> Result<void> {
    if (!c->tableExists("schema_version")) return c.exec(kSchemaVersionTable).transform([](int) {});
    KEEL_TRY_ASSIGN(auto has, query_optional<std::int64_t>(
                                  c,
                                  "SELECT 1 FROM pragma_table_info('schema_version') WHERE name = "
                                  "'checksum'"));
    if (!has) KEEL_TRY(c.exec("ALTER TABLE schema_version ADD COLUMN checksum TEXT"));
    return {};
  });
  if (!made) return std::move(made).error().context("creating the schema_version table");
  KEEL_TRY_ASSIGN(int current, read_schema_version(conn));
  const int known = static_cast<int>(checksums.size());
  if (current > known) {
    return fail(Errc::config, "the database is at schema version {}, newer than the {} migrations known here",
                current, known);
  }
  // Applied versions: same text as when they were applied.
  auto checked = transaction(conn, [&](PooledConnection& c) -> Result<void> {
    return try_sql([&]() -> Result<void> {
      SQLite::Statement q(*c, "SELECT version, checksum FROM schema_version ORDER BY version");
      std::vector<int> unrecorded;
      while (q.executeStep()) {
        const int v = q.getColumn(0).getInt();
        if (v < 1 || v > known) continue;
        if (q.getColumn(1).isNull()) {
          unrecorded.push_back(v);
          continue;
        }
        const std::string stored = q.getColumn(1).getString();
        if (stored != checksums[static_cast<std::size_t>(v - 1)]) {
          return fail(Errc::config,
                      "migration {} was changed after it was applied (checksum {} recorded, {} now); "
                      "add a new migration instead of editing an applied one",
                      v, stored, checksums[static_cast<std::size_t>(v - 1)]);
        }
      }
      q.reset();
      for (const int v : unrecorded) {
        KEEL_TRY(execute(c, "UPDATE schema_version SET checksum = ? WHERE version = ?",
                         checksums[static_cast<std::size_t>(v - 1)], v));
      }
      return {};
    });
  });
  if (!checked) return std::move(checked).error().context("checking the applied migrations");
  return current;
}

template <class GetUp, class GetDown>
Result<int> migrate_impl(PooledConnection& conn, std::size_t count, int target, GetUp up, GetDown down) {
  if (count > 1'000'000) return fail(Errc::invalid_argument, "too many migrations");
  const int known = static_cast<int>(count);
  if (target < 0 || target > known) {
    return fail(Errc::invalid_argument, "target version {} is outside 0..{}", target, known);
  }
  std::vector<std::string> sums;
  sums.reserve(count);
  for (std::size_t i = 0; i < count; ++i) sums.push_back(migration_checksum(up(i)));
  KEEL_TRY_ASSIGN(int current, prepare_versions(conn, sums));
  auto& log = ConnAccess::pool(conn)->log();
  for (int v = current + 1; v <= target; ++v) {
    const auto i = static_cast<std::size_t>(v - 1);
    auto applied = run_step(conn, v, up(i), true, sums[i]);
    if (!applied)
      return std::move(applied).error().context(fmt::format("applying migration {} of {}", v, known));
    if (*applied) log.debug("keel::sqlite: applied migration {} of {}", v, known);
  }
  for (int v = current; v > target; --v) {
    const auto i = static_cast<std::size_t>(v - 1);
    const std::optional<std::string_view> inverse = down(i);
    if (!inverse) return fail(Errc::config, "migration {} has no down migration; cannot go below it", v);
    auto undone = run_step(conn, v, *inverse, false, sums[i]);
    if (!undone) return std::move(undone).error().context(fmt::format("undoing migration {}", v));
    if (*undone) log.debug("keel::sqlite: undid migration {}", v);
  }
  return target;
}

}  // namespace detail

/// The schema version recorded by migrate() (0 for a database it never touched).
[[nodiscard]] inline Result<int> schema_version(PooledConnection& conn) {
  if (!conn) return fail(Errc::invalid_argument, "schema_version on an empty PooledConnection");
  return detail::read_schema_version(conn);
}

/// Applies the migrations the database has not seen yet, in order, each in
/// its own transaction; returns the version reached (migrations.size()).
/// A failing migration gives its Error with "applying migration N" in the
/// context (earlier versions stay applied). Errc::config for a database at a
/// version above migrations.size() or an applied migration whose text
/// changed. conn must not be inside a transaction.
[[nodiscard]] inline Result<int> migrate(PooledConnection& conn,
                                         std::span<const std::string_view> migrations) {
  return detail::migrate_impl(
      conn, migrations.size(), static_cast<int>(std::min<std::size_t>(migrations.size(), 1'000'001)),
      [&](std::size_t i) { return migrations[i]; },
      [](std::size_t) -> std::optional<std::string_view> { return std::nullopt; });
}

/// migrate() for migrations that may carry their inverse.
[[nodiscard]] inline Result<int> migrate(PooledConnection& conn, std::span<const Migration> migrations) {
  return detail::migrate_impl(
      conn, migrations.size(), static_cast<int>(std::min<std::size_t>(migrations.size(), 1'000'001)),
      [&](std::size_t i) { return migrations[i].up; },
      [&](std::size_t i) -> std::optional<std::string_view> {
        if (migrations[i].down.empty()) return std::nullopt;
        return migrations[i].down;
      });
}

/// Moves the schema to `version` (0..migrations.size()): up through the
/// pending migrations, or down through the applied ones' `down` SQL, newest
/// first, each step in its own transaction. Errc::config when a step down has
/// no `down`, and for the same reasons as migrate(). Returns `version`.
[[nodiscard]] inline Result<int> migrate_to(PooledConnection& conn, std::span<const Migration> migrations,
                                            int version) {
  return detail::migrate_impl(
      conn, migrations.size(), version, [&](std::size_t i) { return migrations[i].up; },
      [&](std::size_t i) -> std::optional<std::string_view> {
        if (migrations[i].down.empty()) return std::nullopt;
        return migrations[i].down;
      });
}

}  // namespace keel::sqlite
