// keel/vault/sqlite_backend.hpp: a CredentialStore's rows in a SQLite
// database through a keel::sqlite pool (part of <keel/vault.hpp>; internal).
//
// Tables keel_vault_meta and keel_vault_secrets (see kVaultSchema), created
// by the store itself. Writers are serialized by SQLite's write lock (the
// pool's BEGIN IMMEDIATE); every connection the store writes through runs
// with secure_delete=ON and synchronous=FULL, and remove, rotate and a
// replacing put end with a TRUNCATE checkpoint.
#pragma once

#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/sqlite.hpp>
#include <keel/vault/backend.hpp>
#include <keel/vault/record.hpp>

#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::crypto::detail {

inline constexpr std::string_view kVaultSchema =
    "CREATE TABLE IF NOT EXISTS keel_vault_meta ("
    " id INTEGER PRIMARY KEY CHECK (id = 1),"
    " format INTEGER NOT NULL,"
    " store_id BLOB NOT NULL,"
    " kdf TEXT NOT NULL,"
    " salt BLOB NOT NULL,"
    " iterations INTEGER NOT NULL,"
    " key_check BLOB NOT NULL,"
    " key_epoch INTEGER NOT NULL DEFAULT 1,"
    " seal_count INTEGER NOT NULL DEFAULT 0,"
    " created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),"
    " rotated_at TEXT);"
    "CREATE TABLE IF NOT EXISTS keel_vault_secrets ("
    " name TEXT PRIMARY KEY NOT NULL,"
    " envelope BLOB NOT NULL,"
    " updated_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')));";

[[nodiscard]] inline std::vector<std::uint8_t> column_bytes(const SQLite::Column& c) {
  const auto* p = static_cast<const std::uint8_t*>(c.getBlob());
  const int n = c.getBytes();
  if (p == nullptr || n <= 0) return {};
  return {p, p + n};
}

inline void bind_blob(SQLite::Statement& st, int index, std::span<const std::uint8_t> b) {
  static constexpr std::uint8_t kNone = 0;
  st.bind(index, b.empty() ? static_cast<const void*>(&kNone) : b.data(), static_cast<int>(b.size()));
}

/// Secret rows in a database whose metadata row is gone: Errc::data_loss
/// (never a new vault over them); Errc::not_found when there is nothing at all.
[[nodiscard]] inline Result<void> no_meta(sqlite::PooledConnection& c, std::string_view what) {
  if (c->tableExists("keel_vault_secrets")) {
    const auto rows = c->execAndGet("SELECT COUNT(*) FROM keel_vault_secrets").getInt64();
    if (rows > 0) {
      return fail(Errc::data_loss,
                  "damaged vault: {} secret records but {}; refusing to create a new vault over them", rows,
                  what);
    }
  }
  return fail(Errc::not_found, "no keel vault in this database");
}

/// Reads the meta row (unvalidated); Errc::not_found when the database holds
/// no vault, Errc::data_loss when it holds secret rows without one.
[[nodiscard]] inline Result<RawMeta> read_meta(sqlite::PooledConnection& c) {
  return sqlite::try_sql([&]() -> Result<RawMeta> {
    if (!c->tableExists("keel_vault_meta")) {
      KEEL_TRY(no_meta(c, "no metadata table"));
    }
    KEEL_TRY_ASSIGN(SQLite::Statement & st,
                    c.prepare_cached("SELECT format, store_id, kdf, salt, iterations, key_check, key_epoch, "
                                     "seal_count FROM keel_vault_meta WHERE id = 1"));
    if (!st.executeStep()) {
      st.reset();
      KEEL_TRY(no_meta(c, "no metadata row"));
    }
    RawMeta raw;
    raw.format = st.getColumn(0).getInt64();
    raw.store_id = column_bytes(st.getColumn(1));
    raw.kdf = st.getColumn(2).getString();
    raw.salt = column_bytes(st.getColumn(3));
    raw.iterations = st.getColumn(4).getInt64();
    raw.key_check = column_bytes(st.getColumn(5));
    raw.key_epoch = st.getColumn(6).getInt64();
    raw.seal_count = st.getColumn(7).getInt64();
    st.reset();
    return raw;
  });
}

/// Refuses a vault file (or its -wal or -shm) that group or others may write,
/// and takes read access away from group and others where they have it.
[[nodiscard]] inline Result<void> secure_files(sqlite::PooledConnection& c, const keel::Logger& log) {
  const char* main = sqlite3_db_filename(c.handle(), "main");
  if (main == nullptr || *main == '\0') return {};  // in memory
  sqlite3_vfs* vfs = nullptr;
  if (sqlite3_file_control(c.handle(), "main", SQLITE_FCNTL_VFS_POINTER, &vfs) == SQLITE_OK &&
      vfs != nullptr && vfs->zName != nullptr && std::string_view(vfs->zName) == "memdb") {
    return {};  // a ":memory:" pool: its pages never reach a file
  }
  const std::string path(main);
  for (const char* suffix : {"", "-wal", "-shm"}) {
    const std::string f = path + suffix;
    struct stat st {};
    if (::lstat(f.c_str(), &st) != 0) {
      if (errno == ENOENT && *suffix != '\0') continue;
      return fail(Errc::io, "cannot stat {}: {}", f, std::strerror(errno));
    }
    if (!S_ISREG(st.st_mode)) return fail(Errc::config, "{} is not a regular file", f);
    const auto mode = static_cast<std::uint32_t>(st.st_mode) & 0777U;
    if ((mode & 0022U) != 0) {
      return fail(Errc::config,
                  "{} may be written by group or others (mode {:04o}); refusing to use it as a vault "
                  "(chmod 600 it if its content is trusted)",
                  f, mode);
    }
    if ((mode & 0044U) != 0) {
      if (::chmod(f.c_str(), mode & 0700U) != 0) {
        return fail(Errc::config, "{} may be read by group or others (mode {:04o}) and chmod failed: {}", f,
                    mode, std::strerror(errno));
      }
      log.warn("keel::crypto: {} was readable by group or others (mode {:04o}); now {:04o}", f, mode,
               mode & 0700U);
    }
  }
  return {};
}

/// The SQLite backend.
class SqliteBackend final : public VaultBackend {
 public:
  explicit SqliteBackend(sqlite::Pool pool) : pool_(std::move(pool)) {}

  Result<void> prepare(const keel::Logger& log) override {
    log_ = log;
    KEEL_TRY_ASSIGN(auto conn, checkout());
    return secure_files(conn, log_);
  }

  Result<MetaRow> read_meta() override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    return detail::read_meta(conn);
  }

  Result<Extra> read_extra() override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    Extra out;
    KEEL_TRY_ASSIGN(std::int64_t n,
                    sqlite::query_one<std::int64_t>(conn, "SELECT COUNT(*) FROM keel_vault_secrets"));
    out.records = static_cast<std::uint64_t>(n);
    KEEL_TRY_ASSIGN(out.created_at, sqlite::query_one<std::string>(
                                        conn, "SELECT created_at FROM keel_vault_meta WHERE id = 1"));
    KEEL_TRY_ASSIGN(auto rotated, sqlite::query_one<std::optional<std::string>>(
                                      conn, "SELECT rotated_at FROM keel_vault_meta WHERE id = 1"));
    out.rotated_at = rotated.value_or("");
    return out;
  }

  Result<void> create(std::span<const std::uint8_t> store_id, const KeyRow& row) override {
    KEEL_TRY_ASSIGN(auto conn, checkout());
    return sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<void> {
      KEEL_TRY(c.exec(kVaultSchema));
      KEEL_TRY_ASSIGN(std::int64_t n,
                      sqlite::query_one<std::int64_t>(c, "SELECT COUNT(*) FROM keel_vault_meta"));
      if (n != 0) return fail(Errc::already_exists, "this database already holds a keel vault");
      KEEL_TRY_ASSIGN(std::int64_t rows,
                      sqlite::query_one<std::int64_t>(c, "SELECT COUNT(*) FROM keel_vault_secrets"));
      if (rows != 0) {
        return fail(Errc::data_loss,
                    "damaged vault: {} secret records but no metadata row; refusing to create a new vault "
                    "over them",
                    rows);
      }
      KEEL_TRY(sqlite::execute(c,
                               "INSERT INTO keel_vault_meta (id, format, store_id, kdf, salt, iterations, "
                               "key_check, seal_count) VALUES (1, ?, ?, ?, ?, ?, ?, 1)",
                               row.format, store_id, row.kdf, row.salt, row.iterations, row.key_check));
      return {};
    });
  }

  Result<std::int64_t> put(std::string_view name, std::span<const std::uint8_t> env,
                           std::int64_t epoch) override {
    KEEL_TRY_ASSIGN(auto conn, checkout());
    bool replaced = false;
    KEEL_TRY_ASSIGN(
        std::int64_t seals,
        sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<std::int64_t> {
          KEEL_TRY(check_epoch(c, epoch));
          KEEL_TRY_ASSIGN(auto had, sqlite::query_optional<std::int64_t>(
                                        c, "SELECT 1 FROM keel_vault_secrets WHERE name = ?", name));
          replaced = had.has_value();
          KEEL_TRY(sqlite::execute(c,
                                   "INSERT INTO keel_vault_secrets (name, envelope) VALUES "
                                   "(?, ?) ON CONFLICT(name) DO UPDATE SET envelope = "
                                   "excluded.envelope, updated_at = excluded.updated_at",
                                   name, env));
          KEEL_TRY_ASSIGN(auto total, sqlite::query_optional<std::int64_t>(
                                          c,
                                          "UPDATE keel_vault_meta SET seal_count = seal_count + 1 "
                                          "WHERE id = 1 RETURNING seal_count"));
          if (!total) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
          return *total;
        }));
    if (replaced) (void)truncate_wal(conn);
    return seals;
  }

  Result<StoredRecord> get(std::string_view name) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    return sqlite::try_sql([&]() -> Result<StoredRecord> {
      // One statement, one snapshot: the envelope and the epoch it was sealed under.
      KEEL_TRY_ASSIGN(SQLite::Statement & q,
                      conn.prepare_cached("SELECT (SELECT key_epoch FROM keel_vault_meta WHERE id = 1), "
                                          "envelope FROM keel_vault_secrets WHERE name = ?"));
      q.bind(1, std::string(name));
      if (!q.executeStep()) {
        q.reset();
        return fail(Errc::not_found, "no secret named \"{}\"", name);
      }
      StoredRecord out;
      if (!q.getColumn(0).isNull()) out.key_epoch = q.getColumn(0).getInt64();
      out.envelope = column_bytes(q.getColumn(1));
      q.reset();
      return out;
    });
  }

  Result<bool> contains(std::string_view name) override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    KEEL_TRY_ASSIGN(auto found, sqlite::query_optional<std::int64_t>(
                                    conn, "SELECT 1 FROM keel_vault_secrets WHERE name = ?", name));
    return found.has_value();
  }

  Result<void> remove(std::string_view name) override {
    KEEL_TRY_ASSIGN(auto conn, checkout());
    KEEL_TRY(sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<void> {
      KEEL_TRY_ASSIGN(int n, sqlite::execute(c, "DELETE FROM keel_vault_secrets WHERE name = ?", name));
      if (n == 0) return fail(Errc::not_found, "no secret named \"{}\"", name);
      return {};
    }));
    (void)truncate_wal(conn);
    return {};
  }

  Result<std::vector<std::string>> list() override {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    return sqlite::try_sql([&]() -> Result<std::vector<std::string>> {
      KEEL_TRY_ASSIGN(SQLite::Statement & q,
                      conn.prepare_cached("SELECT name FROM keel_vault_secrets ORDER BY name"));
      std::vector<std::string> out;
      while (q.executeStep()) out.push_back(q.getColumn(0).getString());
      q.reset();
      return out;
    });
  }

  Result<std::size_t> rotate(std::int64_t epoch, const KeyRow& row, const Reseal& reseal,
                             const Progress& progress) override {
    KEEL_TRY_ASSIGN(auto conn, checkout());
    KEEL_TRY_ASSIGN(
        std::size_t count, sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<std::size_t> {
          KEEL_TRY(check_epoch(c, epoch));
          std::vector<std::pair<std::string, std::vector<std::uint8_t>>> rows;
          {
            KEEL_TRY_ASSIGN(SQLite::Statement & q,
                            c.prepare_cached("SELECT name, envelope FROM keel_vault_secrets"));
            while (q.executeStep())
              rows.emplace_back(q.getColumn(0).getString(), column_bytes(q.getColumn(1)));
            q.reset();
          }
          KEEL_TRY_ASSIGN(SQLite::Statement & up,
                          c.prepare_cached("UPDATE keel_vault_secrets SET envelope = ?, updated_at = "
                                           "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE name = ?"));
          for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto& [name, env] = rows[i];
            KEEL_TRY_ASSIGN(auto fresh, reseal(name, env));
            up.reset();
            bind_blob(up, 1, fresh);
            up.bind(2, name);
            up.exec();
            if (progress) progress(i + 1, rows.size());
          }
          up.reset();
          KEEL_TRY(
              sqlite::execute(c,
                              "UPDATE keel_vault_meta SET format = ?, kdf = ?, salt = ?, iterations = ?, "
                              "key_check = ?, key_epoch = key_epoch + 1, seal_count = ?, "
                              "rotated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = 1",
                              row.format, row.kdf, row.salt, row.iterations, row.key_check,
                              static_cast<std::int64_t>(rows.size() + 1)));
          return rows.size();
        }));
    (void)truncate_wal(conn);
    return count;
  }

  Result<void> checkpoint() override {
    KEEL_TRY_ASSIGN(auto conn, checkout());
    return truncate_wal(conn);
  }

 private:
  /// A connection with the pragmas every write of the store needs, whatever
  /// the pool was configured with: deleted content overwritten, commits
  /// durable across power loss.
  [[nodiscard]] Result<sqlite::PooledConnection> checkout() const {
    KEEL_TRY_ASSIGN(auto conn, pool_.get());
    KEEL_TRY_ASSIGN(auto on, sqlite::query_one<std::int64_t>(conn, "PRAGMA secure_delete = 1"));
    if (on != 1) return fail(Errc::database, "this SQLite build refuses secure_delete");
    KEEL_TRY(sqlite::execute(conn, "PRAGMA synchronous = FULL"));
    return conn;
  }

  /// TRUNCATE checkpoint: the log's old frames leave the disk.
  Result<void> truncate_wal(sqlite::PooledConnection& conn) const {
    int log_frames = 0;
    int done = 0;
    const int rc =
        sqlite3_wal_checkpoint_v2(conn.handle(), nullptr, SQLITE_CHECKPOINT_TRUNCATE, &log_frames, &done);
    if (rc != SQLITE_OK) {
      auto e = sqlite::last_error(conn.handle(), "wal_checkpoint(TRUNCATE)");
      keel::resolve_logger(log_).warn(
          "keel::crypto: could not truncate the vault's write-ahead log (old envelopes stay in "
          "it until the next checkpoint): {}",
          e);
      return e;
    }
    return {};
  }

  // Inside a write transaction: refuse to write under a key another process
  // has rotated away from.
  [[nodiscard]] static Result<void> check_epoch(sqlite::PooledConnection& c, std::int64_t expected) {
    KEEL_TRY_ASSIGN(auto epoch, sqlite::query_optional<std::int64_t>(
                                    c, "SELECT key_epoch FROM keel_vault_meta WHERE id = 1"));
    if (!epoch) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
    if (*epoch != expected) return fail(Errc::auth_failed, "{}", kRekeyed);
    return {};
  }

  sqlite::Pool pool_;
  keel::Logger log_;
};

}  // namespace keel::crypto::detail
