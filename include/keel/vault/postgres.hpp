// keel/vault/postgres.hpp: the credential store (keel::crypto::CredentialStore)
// over a keel::pg pool, so several machines share one vault (target
// keel::vault_postgres: keel::vault + keel::postgres).
//
//     KEEL_TRY_ASSIGN(auto pool, keel::pg::Pool::open({.conninfo = "host=db dbname=app user=app"}));
//     KEEL_TRY_ASSIGN(auto store, keel::crypto::CredentialStore::open_or_create(pool, password));
//     KEEL_TRY(store.put("db/password", "s3cret"));
//     KEEL_TRY_ASSIGN(auto secret, store.get("db/password"));
//
// Everything CredentialStore does over SQLite it does here with the same
// bytes: the same two tables (keel_vault_meta, keel_vault_secrets, in the
// connection's search_path; blobs as bytea, names as text in "C" collation),
// the same envelopes, AAD, key check, KDF columns and errors. Rows copied
// from a SQLite vault open here with the same password, and back.
//
// Across processes and machines:
// - put() and rotate() lock the metadata row (SELECT ... FOR UPDATE) in a
//   READ COMMITTED transaction and check the key epoch under that lock, so
//   they run one after another: a put that waited for another process's
//   rotate is refused (Errc::auth_failed, "re-keyed by another process";
//   that process opens the store again with the new password) and nothing
//   it sealed under the old key is written. A rotate re-seals every record
//   present when it took the lock (it locks them too), so after it commits
//   every record opens with the new key.
// - remove() locks only its record; get(), contains(), list() and info()
//   take no lock: while a rotate runs they see the vault as it was before
//   it (old envelopes, old epoch), and after it commits the new one. A
//   get() in a process still holding the old key then fails with
//   Errc::auth_failed (the epoch is read with the record), never with wrong
//   plaintext or a false "damaged" error.
//
// What changes from SQLite: there are no files for the store to secure
// (access is the server's: roles, pg_hba.conf, TLS in the conninfo); and
// PostgreSQL keeps old row versions until VACUUM and its write-ahead log,
// base backups and replicas keep the old envelopes longer: remove() and
// rotate() do not erase them from the server's storage (checkpoint() does
// nothing here). Whoever can read those and knows an old password reads the
// old secrets, as with a copy of a SQLite vault taken before a rotation.
//
// A record name must be valid text in the database's encoding (any name is
// over SQLite); a name PostgreSQL refuses is Errc::invalid_argument.
//
// Thread-safety: as over SQLite; the pool may be shared with the
// application (the store sets nothing on its connections).
#pragma once

#include <keel/postgres.hpp>
#include <keel/result.hpp>
#include <keel/vault.hpp>
#include <keel/vault/backend.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::crypto::pg_detail {

/// The PostgreSQL schema: the SQLite one's columns, blobs as bytea.
inline constexpr std::string_view kPgVaultSchema =
    "CREATE TABLE IF NOT EXISTS keel_vault_meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " format BIGINT NOT NULL,"
    " store_id BYTEA NOT NULL,"
    " kdf TEXT NOT NULL,"
    " salt BYTEA NOT NULL,"
    " iterations BIGINT NOT NULL,"
    " key_check BYTEA NOT NULL,"
    " key_epoch BIGINT NOT NULL DEFAULT 1,"
    " seal_count BIGINT NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'),"
    " rotated_at TEXT);"
    "CREATE TABLE IF NOT EXISTS keel_vault_secrets ("
    " name TEXT COLLATE \"C\" PRIMARY KEY NOT NULL,"
    " envelope BYTEA NOT NULL,"
    " updated_at TEXT NOT NULL DEFAULT to_char(now() AT TIME ZONE 'UTC', "
    "'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'));";

inline constexpr std::string_view kPgNow =
    "to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')";

/// The PostgreSQL backend: stores the bytes CredentialStore hands it (see
/// <keel/vault/backend.hpp> for the contract).
class PgBackend final : public VaultBackend {
 public:
  explicit PgBackend(pg::Pool pool) : pool_(std::move(pool)) {}

  Result<void> prepare(const keel::Logger& /*log*/) override { return {}; }

  Result<MetaRow> read_meta() override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    KEEL_TRY_ASSIGN(auto tables, conn.exec("SELECT to_regclass('keel_vault_meta') IS NOT NULL, "
                                           "to_regclass('keel_vault_secrets') IS NOT NULL"));
    KEEL_TRY_ASSIGN(bool has_meta, tables.get<bool>(0, 0));
    KEEL_TRY_ASSIGN(bool has_secrets, tables.get<bool>(0, 1));
    if (has_meta) {
      KEEL_TRY_ASSIGN(auto r,
                      conn.exec("SELECT format, store_id, kdf, salt, iterations, key_check, key_epoch, "
                                "seal_count FROM keel_vault_meta WHERE id = 1"));
      if (!r.empty()) {
        MetaRow raw;
        KEEL_TRY_ASSIGN(raw.format, r.get<std::int64_t>(0, 0));
        KEEL_TRY_ASSIGN(raw.store_id, r.get<std::vector<std::uint8_t>>(0, 1));
        KEEL_TRY_ASSIGN(raw.kdf, r.get<std::string>(0, 2));
        KEEL_TRY_ASSIGN(raw.salt, r.get<std::vector<std::uint8_t>>(0, 3));
        KEEL_TRY_ASSIGN(raw.iterations, r.get<std::int64_t>(0, 4));
        KEEL_TRY_ASSIGN(raw.key_check, r.get<std::vector<std::uint8_t>>(0, 5));
        KEEL_TRY_ASSIGN(raw.key_epoch, r.get<std::int64_t>(0, 6));
        KEEL_TRY_ASSIGN(raw.seal_count, r.get<std::int64_t>(0, 7));
        return raw;
      }
    }
    if (has_secrets) {
      KEEL_TRY_ASSIGN(auto n, conn.exec("SELECT COUNT(*) FROM keel_vault_secrets"));
      KEEL_TRY_ASSIGN(std::int64_t rows, n.get<std::int64_t>(0, 0));
      if (rows > 0) {
        return fail(Errc::data_loss,
                    "damaged vault: {} secret records but {}; refusing to create a new vault over them", rows,
                    has_meta ? "no metadata row" : "no metadata table");
      }
    }
    return fail(Errc::not_found, "no keel vault in this database");
  }

  Result<Extra> read_extra() override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    KEEL_TRY_ASSIGN(auto r,
                    conn.exec("SELECT (SELECT COUNT(*) FROM keel_vault_secrets), created_at, rotated_at "
                              "FROM keel_vault_meta WHERE id = 1"));
    if (r.empty()) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
    Extra out;
    KEEL_TRY_ASSIGN(std::int64_t n, r.get<std::int64_t>(0, 0));
    out.records = static_cast<std::uint64_t>(n);
    KEEL_TRY_ASSIGN(out.created_at, r.get<std::string>(0, 1));
    KEEL_TRY_ASSIGN(auto rotated, r.get<std::optional<std::string>>(0, 2));
    out.rotated_at = rotated.value_or("");
    return out;
  }

  Result<void> create(std::span<const std::uint8_t> store_id, const KeyRow& row) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    return pg::transaction(conn, [&](pg::PooledConnection& c) -> Result<void> {
      // Two processes creating the tables at once would race in the catalog.
      KEEL_TRY(c.exec("SELECT pg_advisory_xact_lock(7516626331214737769)"));
      KEEL_TRY(c.exec(kPgVaultSchema));
      KEEL_TRY_ASSIGN(auto m, c.exec("SELECT COUNT(*) FROM keel_vault_meta"));
      KEEL_TRY_ASSIGN(std::int64_t n, m.get<std::int64_t>(0, 0));
      if (n != 0) return fail(Errc::already_exists, "this database already holds a keel vault");
      KEEL_TRY_ASSIGN(auto s, c.exec("SELECT COUNT(*) FROM keel_vault_secrets"));
      KEEL_TRY_ASSIGN(std::int64_t rows, s.get<std::int64_t>(0, 0));
      if (rows != 0) {
        return fail(Errc::data_loss,
                    "damaged vault: {} secret records but no metadata row; refusing to create a new vault "
                    "over them",
                    rows);
      }
      KEEL_TRY(
          c.exec("INSERT INTO keel_vault_meta (id, format, store_id, kdf, salt, iterations, key_check, "
                 "seal_count) VALUES (1, $1, $2, $3, $4, $5, $6, 1)",
                 row.format, store_id, row.kdf, row.salt, row.iterations, row.key_check));
      return {};
    });
  }

  Result<std::int64_t> put(std::string_view name, std::span<const std::uint8_t> env,
                           std::int64_t epoch) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    return pg::transaction(conn, [&](pg::PooledConnection& c) -> Result<std::int64_t> {
      KEEL_TRY(lock_epoch(c, epoch));
      KEEL_TRY_ASSIGN(auto up, c.prepare_cached(upsert_sql()));
      KEEL_TRY(up.exec(name, env));
      KEEL_TRY_ASSIGN(auto total,
                      c.exec("UPDATE keel_vault_meta SET seal_count = seal_count + 1 WHERE id = 1 "
                             "RETURNING seal_count"));
      if (total.empty()) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
      return total.get<std::int64_t>(0, 0);
    });
  }

  Result<StoredRecord> get(std::string_view name) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    // One statement, one snapshot: the envelope and the epoch it was sealed under.
    KEEL_TRY_ASSIGN(auto q,
                    conn.prepare_cached("SELECT (SELECT key_epoch FROM keel_vault_meta WHERE id = 1), "
                                        "envelope FROM keel_vault_secrets WHERE name = $1"));
    KEEL_TRY_ASSIGN(auto r, q.exec(name));
    if (r.empty()) return fail(Errc::not_found, "no secret named \"{}\"", name);
    StoredRecord out;
    KEEL_TRY_ASSIGN(out.key_epoch, r.get<std::optional<std::int64_t>>(0, 0));
    KEEL_TRY_ASSIGN(out.envelope, r.get<std::vector<std::uint8_t>>(0, 1));
    return out;
  }

  Result<bool> contains(std::string_view name) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    KEEL_TRY_ASSIGN(auto r, conn.exec("SELECT 1 FROM keel_vault_secrets WHERE name = $1", name));
    return !r.empty();
  }

  Result<void> remove(std::string_view name) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    KEEL_TRY_ASSIGN(auto r, conn.exec("DELETE FROM keel_vault_secrets WHERE name = $1", name));
    if (r.affected() == 0) return fail(Errc::not_found, "no secret named \"{}\"", name);
    return {};
  }

  Result<std::vector<std::string>> list() override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    KEEL_TRY_ASSIGN(auto r, conn.exec("SELECT name FROM keel_vault_secrets ORDER BY name"));
    std::vector<std::string> out;
    out.reserve(r.size());
    for (std::size_t i = 0; i < r.size(); ++i) {
      KEEL_TRY_ASSIGN(auto n, r.get<std::string>(i, 0));
      out.push_back(std::move(n));
    }
    return out;
  }

  Result<std::size_t> rotate(std::int64_t epoch, const KeyRow& row, const Reseal& reseal,
                             const Progress& progress) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    return pg::transaction(conn, [&](pg::PooledConnection& c) -> Result<std::size_t> {
      KEEL_TRY(lock_epoch(c, epoch));
      // Every record present now, locked: a concurrent remove waits for the commit.
      KEEL_TRY_ASSIGN(auto rows, c.exec("SELECT name, envelope FROM keel_vault_secrets FOR UPDATE"));
      KEEL_TRY_ASSIGN(auto up, c.prepare_cached(std::string("UPDATE keel_vault_secrets SET envelope = $1, "
                                                            "updated_at = ") +
                                                std::string(kPgNow) + " WHERE name = $2"));
      for (std::size_t i = 0; i < rows.size(); ++i) {
        KEEL_TRY_ASSIGN(auto name, rows.get<std::string>(i, 0));
        KEEL_TRY_ASSIGN(auto env, rows.get<std::vector<std::uint8_t>>(i, 1));
        KEEL_TRY_ASSIGN(auto fresh, reseal(name, env));
        KEEL_TRY(up.exec(fresh, name));
        if (progress) progress(i + 1, rows.size());
      }
      KEEL_TRY(
          c.exec(std::string("UPDATE keel_vault_meta SET format = $1, kdf = $2, salt = $3, iterations = $4, "
                             "key_check = $5, key_epoch = key_epoch + 1, seal_count = $6, rotated_at = ") +
                     std::string(kPgNow) + " WHERE id = 1",
                 row.format, row.kdf, row.salt, row.iterations, row.key_check,
                 static_cast<std::int64_t>(rows.size() + 1)));
      return rows.size();
    });
  }

  Result<void> checkpoint() override { return {}; }

 private:
  [[nodiscard]] static std::string upsert_sql() {
    return std::string(
               "INSERT INTO keel_vault_secrets (name, envelope) VALUES ($1, $2) ON CONFLICT (name) DO "
               "UPDATE SET envelope = excluded.envelope, updated_at = ") +
           std::string(kPgNow);
  }

  // Inside a write transaction: lock the metadata row (writers queue here)
  // and refuse to write under a key another process has rotated away from.
  [[nodiscard]] static Result<void> lock_epoch(pg::PooledConnection& c, std::int64_t expected) {
    KEEL_TRY_ASSIGN(auto r, c.exec("SELECT key_epoch FROM keel_vault_meta WHERE id = 1 FOR UPDATE"));
    if (r.empty()) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
    KEEL_TRY_ASSIGN(std::int64_t epoch, r.get<std::int64_t>(0, 0));
    if (epoch != expected) return fail(Errc::auth_failed, "{}", kRekeyed);
    return {};
  }

  pg::Pool pool_;
};

}  // namespace keel::crypto::pg_detail

namespace keel::pg {

/// Lets keel::crypto::CredentialStore's create, open, open_or_create, exists
/// and info take a keel::pg::Pool (found by argument-dependent lookup).
[[nodiscard]] inline std::unique_ptr<keel::crypto::VaultBackend> make_vault_backend(const Pool& pool) {
  return std::make_unique<keel::crypto::pg_detail::PgBackend>(pool);
}

}  // namespace keel::pg
