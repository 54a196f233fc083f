// keel/postgres/migrate.hpp: numbered schema migrations, each in its own
// transaction, safe when several processes migrate at once.
//
// Part of <keel/postgres.hpp>.
//
//     constexpr std::string_view kMigrations[] = {
//         "CREATE TABLE users (id bigserial PRIMARY KEY, name text NOT NULL)",   // version 1
//         "ALTER TABLE users ADD COLUMN email text",                             // version 2
//     };
//     KEEL_TRY_ASSIGN(int version, keel::pg::migrate(conn, kMigrations));     // 2
//
// migrations[i] is version i + 1. Applied versions are rows of a
// `keel_schema_version` table (version, checksum, applied_at). The run holds
// a connection-level advisory lock (pg_advisory_lock), so processes migrating at once
// take turns and each version is applied once. Each pending migration runs
// in its own transaction together with the insert of its row (PostgreSQL's
// DDL is transactional): a failing migration leaves nothing of itself behind
// while the earlier ones stay. Each applied version's checksum (FNV-1a 64 of
// its text) is compared with the code's: a migration edited after it was
// applied is Errc::config, as is a database at a version newer than the
// code knows. Running migrate again changes nothing.
//
// A migration may hold several statements separated by ';' (no parameters)
// but must not BEGIN/COMMIT itself nor run what PostgreSQL refuses inside a
// transaction block (CREATE INDEX CONCURRENTLY, CREATE DATABASE, VACUUM).
#pragma once

#include <keel/postgres/error.hpp>
#include <keel/postgres/pool.hpp>
#include <keel/postgres/transaction.hpp>
#include <keel/result.hpp>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

namespace keel::pg {

namespace detail {
/// The advisory lock key migrate() holds ("keelmigr" as 8 ASCII bytes).
inline constexpr std::int64_t kMigrateLockKey = 0x6b65656c6d696772;

inline constexpr std::string_view kSchemaVersionTable =
    "CREATE TABLE IF NOT EXISTS keel_schema_version ("
    "version integer PRIMARY KEY, "
    "checksum text NOT NULL, "
    "applied_at timestamptz NOT NULL DEFAULT now())";

/// FNV-1a 64 of a migration's text, as 16 hex digits.
[[nodiscard]] inline std::string migration_checksum(std::string_view text) {
  std::uint64_t h = 0xcbf29ce484222325ULL;
  for (const char ch : text) {
    h ^= static_cast<std::uint8_t>(ch);
    h *= 0x100000001b3ULL;
  }
  return fmt::format("{:016x}", h);
}

/// Releases the advisory lock when the run ends, however it ends.
class AdvisoryUnlock {
 public:
  explicit AdvisoryUnlock(Connection& c) noexcept : c_(c) {}
  AdvisoryUnlock(const AdvisoryUnlock&) = delete;
  AdvisoryUnlock& operator=(const AdvisoryUnlock&) = delete;
  ~AdvisoryUnlock() {
    if (c_.healthy()) (void)c_.exec("SELECT pg_advisory_unlock($1)", kMigrateLockKey);
  }

 private:
  Connection& c_;
};
}  // namespace detail

/// The schema version recorded by migrate() (0 for a database it never touched).
[[nodiscard]] inline Result<int> schema_version(Connection& conn) {
  KEEL_TRY_ASSIGN(Rows t, conn.exec("SELECT to_regclass('keel_schema_version') IS NOT NULL"));
  KEEL_TRY_ASSIGN(bool exists, t.scalar<bool>());
  if (!exists) return 0;
  KEEL_TRY_ASSIGN(Rows v, conn.exec("SELECT COALESCE(MAX(version), 0) FROM keel_schema_version"));
  return v.scalar<int>();
}

/// Applies the migrations the database has not seen yet, in order, each in
/// its own transaction, under an advisory lock; returns the version reached
/// (migrations.size()). A failing migration gives its Error with "applying
/// migration N of M" in the context (earlier versions stay applied). conn
/// must not be inside a transaction.
[[nodiscard]] inline Result<int> migrate(Connection& conn, std::span<const std::string_view> migrations) {
  if (detail::ConnAccess::conn(conn) == nullptr)
    return fail(Errc::invalid_argument, "migrate on an empty connection");
  if (conn.in_transaction())
    return fail(Errc::invalid_argument, "migrate needs a connection outside a transaction");
  if (migrations.size() > 1'000'000) return fail(Errc::invalid_argument, "too many migrations");
  const int target = static_cast<int>(migrations.size());
  KEEL_TRY(
      conn.exec("SELECT pg_advisory_lock($1)", detail::kMigrateLockKey).context("taking the migration lock"));
  const detail::AdvisoryUnlock unlock(conn);
  // IF NOT EXISTS still races on the catalog between connections; the lock above orders them.
  KEEL_TRY(conn.exec(detail::kSchemaVersionTable).context("creating the keel_schema_version table"));
  KEEL_TRY_ASSIGN(Rows applied,
                  conn.exec("SELECT version, checksum FROM keel_schema_version ORDER BY version"));
  int current = 0;
  for (std::size_t i = 0; i < applied.size(); ++i) {
    KEEL_TRY_ASSIGN(int v, applied.get<int>(i, 0));
    KEEL_TRY_ASSIGN(std::string_view sum, applied.get<std::string_view>(i, 1));
    current = v > current ? v : current;
    if (v > target) continue;
    if (v < 1) return fail(Errc::config, "keel_schema_version holds version {}", v);
    const auto expected = detail::migration_checksum(migrations[static_cast<std::size_t>(v - 1)]);
    if (sum != expected) {
      return fail(Errc::config,
                  "migration {} changed after it was applied (checksum {} in the database, {} here)", v, sum,
                  expected);
    }
  }
  if (current > target) {
    return fail(Errc::config, "the database is at schema version {}, newer than the {} migrations known here",
                current, target);
  }
  for (int v = current + 1; v <= target; ++v) {
    const auto text = migrations[static_cast<std::size_t>(v - 1)];
    auto r = transaction(conn, [&](Connection& c) -> Result<void> {
      KEEL_TRY(c.exec(text));
      KEEL_TRY(c.exec("INSERT INTO keel_schema_version(version, checksum) VALUES ($1, $2)", v,
                      detail::migration_checksum(text)));
      return {};
    });
    if (!r) return std::move(r).error().context(fmt::format("applying migration {} of {}", v, target));
  }
  return target;
}

}  // namespace keel::pg
