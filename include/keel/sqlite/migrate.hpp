// keel/sqlite/migrate.hpp: numbered schema migrations, each in its own transaction.
//
// Part of <keel/sqlite.hpp>.
//
//     constexpr std::string_view kMigrations[] = {
//         "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)",   // version 1
//         "ALTER TABLE users ADD COLUMN email TEXT",                           // version 2
//     };
//     KEEL_TRY_ASSIGN(int version, keel::sqlite::migrate(conn, kMigrations));  // 2
//
// migrations[i] is version i + 1. The versions applied are rows of a
// `schema_version` table (version, applied_at). Each pending migration runs in
// its own write transaction together with the insert of its row, so a failing
// migration leaves nothing of itself behind while the earlier ones stay. The
// version is read again inside each transaction, so two processes migrating at
// once apply each migration once. Running migrate again changes nothing.
//
// A migration may hold several statements separated by ';' but must not
// BEGIN/COMMIT itself, nor run statements SQLite refuses inside a transaction
// (VACUUM, changing journal_mode).
#pragma once

#include <keel/result.hpp>
#include <keel/sqlite/error.hpp>
#include <keel/sqlite/pool.hpp>
#include <keel/sqlite/transaction.hpp>

#include <SQLiteCpp/Statement.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>

namespace keel::sqlite {

namespace detail {
inline constexpr std::string_view kSchemaVersionTable =
    "CREATE TABLE IF NOT EXISTS schema_version ("
    "version INTEGER PRIMARY KEY, "
    "applied_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')))";

inline Result<int> read_schema_version(PooledConnection& conn) {
  return try_sql(
      [&]() -> Result<int> {
        if (!conn->tableExists("schema_version")) return 0;
        return static_cast<int>(
            conn->execAndGet("SELECT COALESCE(MAX(version), 0) FROM schema_version").getInt64());
      },
      "SELECT MAX(version) FROM schema_version");
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
/// context (earlier versions stay applied). A database at a version above
/// migrations.size() (written by newer code) is Errc::config. conn must not
/// be inside a transaction.
[[nodiscard]] inline Result<int> migrate(PooledConnection& conn,
                                         std::span<const std::string_view> migrations) {
  if (!conn) return fail(Errc::invalid_argument, "migrate on an empty PooledConnection");
  if (conn.in_transaction())
    return fail(Errc::invalid_argument, "migrate needs a connection outside a transaction");
  if (migrations.size() > 1'000'000) return fail(Errc::invalid_argument, "too many migrations");
  const int target = static_cast<int>(migrations.size());
  KEEL_TRY(transaction(conn, [&](PooledConnection& c) -> Result<void> {
             if (c->tableExists("schema_version")) return {};
             return c.exec(detail::kSchemaVersionTable).transform([](int) {});
           }).context("creating the schema_version table"));
  KEEL_TRY_ASSIGN(int current, detail::read_schema_version(conn));
  if (current > target) {
    return fail(Errc::config, "the database is at schema version {}, newer than the {} migrations known here",
                current, target);
  }
  auto& log = detail::ConnAccess::pool(conn)->log();
  for (int v = current + 1; v <= target; ++v) {
    auto applied = transaction(conn, [&](PooledConnection& c) -> Result<bool> {
      KEEL_TRY_ASSIGN(int now, detail::read_schema_version(c));
      if (now >= v) return false;  // another process got there first
      if (now != v - 1) return fail(Errc::config, "schema version is {}, expected {}", now, v - 1);
      KEEL_TRY(c.exec(migrations[static_cast<std::size_t>(v - 1)]));
      KEEL_TRY_ASSIGN(SQLite::Statement & ins,
                      c.prepare_cached("INSERT INTO schema_version(version) VALUES (?)"));
      return try_sql([&] {
        ins.bind(1, v);
        ins.exec();
        return true;
      });
    });
    if (!applied)
      return std::move(applied).error().context(fmt::format("applying migration {} of {}", v, target));
    if (*applied) log.debug("keel::sqlite: applied migration {} of {}", v, target);
  }
  return target;
}

}  // namespace keel::sqlite
