// keel/vault/store.hpp: an encrypted credential store in a SQLite database
// (through a keel::sqlite pool), unlocked with a password.
//
//     auto pool = keel::sqlite::Pool::open({.path = "vault.db"});
//     auto store = keel::crypto::CredentialStore::open_or_create(*pool, password);
//     if (!store) return store.error();          // wrong password: Errc::auth_failed
//     KEEL_TRY(store->put("db/password", "s3cret"));
//     KEEL_TRY_ASSIGN(auto secret, store->get("db/password"));   // SecretBytes
//     KEEL_TRY(store->rotate(new_password));     // re-encrypts everything, all or nothing
//
// Layout: two tables, keel_vault_meta (one row: format, a random 16-byte
// store id, the KDF name, salt and iteration count, a key-check envelope, a
// key epoch and the seal counter) and keel_vault_secrets (name, envelope,
// updated_at). They are created by the store itself, not by
// keel::sqlite::migrate, so they can share a database with an application's
// own migrations. Each secret is sealed (see aead.hpp) with AAD =
// "keel-vault\x01" | store id | name, so a row copied to another name or
// into another store fails authentication instead of decrypting.
//
// Thread-safety: a CredentialStore may be used from any number of threads;
// put/get/remove/list run concurrently (through the pool), rotate excludes
// them while it runs. Several processes may share a store file: a put from a
// process that still holds the key from before another process's rotate is
// refused (the key epoch is checked inside the write transaction), and that
// process must open the store again.
//
// Guarantees: a wrong password fails at open with Errc::auth_failed; a
// record that was edited, swapped or damaged gives Errc::auth_failed, never
// wrong plaintext; rotate is one transaction: killed half-way, the old
// password still opens everything. Secrets never reach the database file or
// the log in clear. Not protected: names (stored in clear, to allow lookup
// and listing), record count and sizes, timestamps, and an attacker who can
// read this process's memory while the store is open. See docs/crypto.md.
#pragma once

#include <keel/crypto/aead.hpp>
#include <keel/crypto/key.hpp>
#include <keel/log.hpp>
#include <keel/result.hpp>
#include <keel/sqlite.hpp>

#include <SQLiteCpp/Statement.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::crypto {

/// How a CredentialStore derives keys and reports.
struct StoreConfig {
  /// PBKDF2 iterations for create() and rotate() (at least kMinIterations).
  /// open() uses the count stored in the database.
  std::uint32_t iterations = kDefaultIterations;
  /// The store warns (at warn level) once its key has sealed this many records,
  /// and again every 2^20 seals after; rotate() starts a new count. AES-GCM with
  /// random nonces must stay well below 2^32 seals per key.
  std::uint64_t seal_warn_threshold = kSealWarnThreshold;
  /// Called during rotate() after each record is re-encrypted (done, total).
  std::function<void(std::size_t, std::size_t)> on_rotate_progress;
  /// Where the store logs (debug: opens, rotations; warn: the seal counter).
  /// Null: keel::log::logger(). Secrets and passwords are never logged.
  std::shared_ptr<spdlog::logger> logger;
};

/// Bytes in a store id.
inline constexpr std::size_t kStoreIdSize = 16;
/// Longest record name put() accepts.
inline constexpr std::size_t kMaxNameSize = 1024;

namespace detail {

inline constexpr std::int64_t kVaultFormat = 1;
inline constexpr std::string_view kVaultKdf = "pbkdf2-hmac-sha256";
inline constexpr std::string_view kKeyCheckPlain = "keel-vault key check v1";
inline constexpr std::size_t kMaxSaltSize = 1024;

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

/// The meta row as read from the database, not yet validated.
struct RawMeta {
  std::int64_t format = 0;
  std::vector<std::uint8_t> store_id;
  std::string kdf;
  std::vector<std::uint8_t> salt;
  std::int64_t iterations = 0;
  std::vector<std::uint8_t> key_check;
  std::int64_t key_epoch = 0;
  std::int64_t seal_count = 0;
};

/// The meta row, validated.
struct Meta {
  std::array<std::uint8_t, kStoreIdSize> store_id{};
  std::vector<std::uint8_t> salt;
  std::uint32_t iterations = 0;
  std::vector<std::uint8_t> key_check;
  std::int64_t key_epoch = 0;
  std::uint64_t seal_count = 0;
};

/// Validates a meta row read from an untrusted file: Errc::invalid_argument
/// (with what is wrong) for anything this version did not write.
[[nodiscard]] inline Result<Meta> parse_meta(const RawMeta& raw) {
  if (raw.format != kVaultFormat) {
    return fail(Errc::invalid_argument, "unsupported vault format {} (this build reads format {})",
                raw.format, kVaultFormat);
  }
  if (raw.store_id.size() != kStoreIdSize) return fail(Errc::invalid_argument, "damaged vault: bad store id");
  if (raw.kdf != kVaultKdf) return fail(Errc::invalid_argument, "damaged vault: unknown KDF \"{}\"", raw.kdf);
  if (raw.salt.empty() || raw.salt.size() > kMaxSaltSize) {
    return fail(Errc::invalid_argument, "damaged vault: salt of {} bytes", raw.salt.size());
  }
  if (raw.iterations < 1 || raw.iterations > static_cast<std::int64_t>(kMaxIterations)) {
    return fail(Errc::invalid_argument, "damaged vault: {} KDF iterations", raw.iterations);
  }
  if (raw.key_check.size() != kEnvelopeOverhead + kKeyCheckPlain.size()) {
    return fail(Errc::invalid_argument, "damaged vault: bad key-check value");
  }
  if (raw.key_epoch < 1 || raw.seal_count < 0)
    return fail(Errc::invalid_argument, "damaged vault: bad counters");
  Meta m;
  std::copy(raw.store_id.begin(), raw.store_id.end(), m.store_id.begin());
  m.salt = raw.salt;
  m.iterations = static_cast<std::uint32_t>(raw.iterations);
  m.key_check = raw.key_check;
  m.key_epoch = raw.key_epoch;
  m.seal_count = static_cast<std::uint64_t>(raw.seal_count);
  return m;
}

/// AAD binding a record to its store and name.
[[nodiscard]] inline std::vector<std::uint8_t> record_aad(std::span<const std::uint8_t> store_id,
                                                          std::string_view name) {
  constexpr std::string_view kPrefix = "keel-vault\x01";
  std::vector<std::uint8_t> aad;
  aad.reserve(kPrefix.size() + store_id.size() + name.size());
  aad.insert(aad.end(), kPrefix.begin(), kPrefix.end());
  aad.insert(aad.end(), store_id.begin(), store_id.end());
  aad.insert(aad.end(), name.begin(), name.end());
  return aad;
}

/// AAD of the key-check value.
[[nodiscard]] inline std::vector<std::uint8_t> check_aad(std::span<const std::uint8_t> store_id) {
  constexpr std::string_view kPrefix = "keel-vault-check\x01";
  std::vector<std::uint8_t> aad(kPrefix.begin(), kPrefix.end());
  aad.insert(aad.end(), store_id.begin(), store_id.end());
  return aad;
}

/// Opens one stored record (a row of keel_vault_secrets): the row decoding
/// the fuzz target exercises.
[[nodiscard]] inline Result<SecretBytes> open_record(const SecretKey& key,
                                                     std::span<const std::uint8_t> store_id,
                                                     std::string_view name,
                                                     std::span<const std::uint8_t> envelope) {
  auto plain = keel::crypto::open(key, envelope, record_aad(store_id, name));
  if (!plain) {
    return fail(plain.error().code(),
                "record \"{}\" failed to open: damaged, moved from another name or store, or written under "
                "another key ({})",
                name, plain.error().message());
  }
  return SecretBytes(std::move(*plain));
}

/// Checks the key-check value: Errc::auth_failed for a wrong password.
[[nodiscard]] inline Result<void> verify_key(const SecretKey& key, const Meta& meta) {
  auto plain = keel::crypto::open(key, meta.key_check, check_aad(meta.store_id));
  if (!plain) {
    if (plain.error().code() == Errc::auth_failed) {
      return fail(Errc::auth_failed, "wrong password for this vault (key check failed)");
    }
    return std::move(plain).error();
  }
  const SecretBytes wipe_me(std::move(*plain));
  if (wipe_me.view() != kKeyCheckPlain) return fail(Errc::auth_failed, "wrong password for this vault");
  return {};
}

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

/// Reads the meta row; Errc::not_found when the database holds no vault.
[[nodiscard]] inline Result<Meta> read_meta(sqlite::PooledConnection& c) {
  return sqlite::try_sql([&]() -> Result<Meta> {
    if (!c->tableExists("keel_vault_meta")) return fail(Errc::not_found, "no keel vault in this database");
    KEEL_TRY_ASSIGN(SQLite::Statement & st,
                    c.prepare_cached("SELECT format, store_id, kdf, salt, iterations, key_check, key_epoch, "
                                     "seal_count FROM keel_vault_meta WHERE id = 1"));
    if (!st.executeStep()) return fail(Errc::not_found, "no keel vault in this database (empty metadata)");
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
    return parse_meta(raw);
  });
}

[[nodiscard]] inline Result<void> check_name(std::string_view name) {
  if (name.empty()) return fail(Errc::invalid_argument, "a record name cannot be empty");
  if (name.size() > kMaxNameSize) {
    return fail(Errc::invalid_argument, "a record name is at most {} bytes, got {}", kMaxNameSize,
                name.size());
  }
  if (name.find('\0') != std::string_view::npos) {
    return fail(Errc::invalid_argument, "a record name cannot contain a NUL byte");
  }
  return {};
}

}  // namespace detail

/// An encrypted name -> secret store in a SQLite database. Movable; see the
/// header overview for thread-safety and guarantees.
class CredentialStore {
 public:
  /// Makes a new vault in the pool's database (Errc::already_exists if it has
  /// one): random store id and salt, PBKDF2 with config.iterations.
  [[nodiscard]] static Result<CredentialStore> create(sqlite::Pool pool, std::string_view password,
                                                      StoreConfig config = {}) {
    auto st = std::make_unique<State>(std::move(pool), std::move(config));
    std::array<std::uint8_t, 16> salt{};
    KEEL_TRY(random_fill(st->id));
    KEEL_TRY(random_fill(salt));
    KEEL_TRY_ASSIGN(auto key, derive_key(password, salt, st->cfg.iterations).context("creating a vault"));
    KEEL_TRY_ASSIGN(auto check, seal(key, as_bytes(detail::kKeyCheckPlain), detail::check_aad(st->id)));
    KEEL_TRY_ASSIGN(auto conn, st->pool.get());
    auto made = sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<void> {
      KEEL_TRY(c.exec(detail::kVaultSchema));
      KEEL_TRY_ASSIGN(SQLite::Statement & q, c.prepare_cached("SELECT COUNT(*) FROM keel_vault_meta"));
      q.executeStep();
      const auto n = q.getColumn(0).getInt64();
      q.reset();
      if (n != 0) return fail(Errc::already_exists, "this database already holds a keel vault");
      KEEL_TRY_ASSIGN(SQLite::Statement & ins,
                      c.prepare_cached("INSERT INTO keel_vault_meta (id, format, store_id, kdf, salt, "
                                       "iterations, key_check, seal_count) VALUES (1, ?, ?, ?, ?, ?, ?, 1)"));
      ins.bind(1, detail::kVaultFormat);
      detail::bind_blob(ins, 2, st->id);
      ins.bind(3, std::string(detail::kVaultKdf));
      detail::bind_blob(ins, 4, salt);
      ins.bind(5, static_cast<std::int64_t>(st->cfg.iterations));
      detail::bind_blob(ins, 6, check);
      ins.exec();
      return {};
    });
    if (!made) return std::move(made).error().context("creating a vault");
    st->key = std::move(key);
    st->epoch = 1;
    st->log().debug("keel::crypto: created a vault ({} PBKDF2 iterations)", st->cfg.iterations);
    return CredentialStore(std::move(st));
  }

  /// Opens the vault in the pool's database: Errc::not_found if there is
  /// none, Errc::invalid_argument if its metadata is damaged, Errc::auth_failed
  /// for a wrong password.
  [[nodiscard]] static Result<CredentialStore> open(sqlite::Pool pool, std::string_view password,
                                                    StoreConfig config = {}) {
    auto st = std::make_unique<State>(std::move(pool), std::move(config));
    KEEL_TRY_ASSIGN(auto conn, st->pool.get());
    KEEL_TRY_ASSIGN(auto meta, detail::read_meta(conn).context("opening a vault"));
    conn.release();
    // Stored parameters may predate today's minimums: honour them (bounded).
    KEEL_TRY_ASSIGN(auto key, derive_key(password, meta.salt, meta.iterations, KdfPolicy::existing_data)
                                  .context("opening a vault"));
    KEEL_TRY(detail::verify_key(key, meta).context("opening a vault"));
    if (meta.iterations < kMinIterations) {
      st->log().warn("keel::crypto: this vault uses {} PBKDF2 iterations; rotate() to upgrade to {}",
                     meta.iterations, st->cfg.iterations);
    }
    st->id = meta.store_id;
    st->key = std::move(key);
    st->epoch = meta.key_epoch;
    st->log().debug("keel::crypto: opened a vault");
    return CredentialStore(std::move(st));
  }

  /// open(), or create() when the database holds no vault yet.
  [[nodiscard]] static Result<CredentialStore> open_or_create(sqlite::Pool pool, std::string_view password,
                                                              StoreConfig config = {}) {
    auto opened = open(pool, password, config);
    if (opened || opened.error().code() != Errc::not_found) return opened;
    auto made = create(pool, password, config);
    if (!made && made.error().code() == Errc::already_exists)
      return open(std::move(pool), password, std::move(config));
    return made;
  }

  /// True when the pool's database holds a vault (no password needed).
  [[nodiscard]] static Result<bool> exists(const sqlite::Pool& pool) {
    KEEL_TRY_ASSIGN(auto conn, pool.get());
    auto meta = detail::read_meta(conn);
    if (meta) return true;
    if (meta.error().code() == Errc::not_found) return false;
    return std::move(meta).error();
  }

  /// Stores `secret` under `name`, replacing what was there.
  [[nodiscard]] Result<void> put(std::string_view name, std::span<const std::uint8_t> secret) {
    KEEL_TRY(detail::check_name(name));
    std::shared_lock lock(state_->mu);
    KEEL_TRY_ASSIGN(auto env, seal(*state_->key, secret, detail::record_aad(state_->id, name)));
    KEEL_TRY_ASSIGN(auto conn, state_->pool.get());
    KEEL_TRY_ASSIGN(std::int64_t seals,
                    sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<std::int64_t> {
                      KEEL_TRY(check_epoch(c));
                      KEEL_TRY_ASSIGN(
                          SQLite::Statement & up,
                          c.prepare_cached("INSERT INTO keel_vault_secrets (name, envelope) VALUES "
                                           "(?, ?) ON CONFLICT(name) DO UPDATE SET envelope = "
                                           "excluded.envelope, updated_at = excluded.updated_at"));
                      up.bind(1, std::string(name));
                      detail::bind_blob(up, 2, env);
                      up.exec();
                      return bump_seals(c, 1);
                    }).context(fmt::format("storing \"{}\"", name)));
    warn_seals(static_cast<std::uint64_t>(seals));
    return {};
  }
  [[nodiscard]] Result<void> put(std::string_view name, std::string_view secret) {
    return put(name, as_bytes(secret));
  }

  /// The secret stored under `name`: Errc::not_found if there is none,
  /// Errc::auth_failed if its row was damaged or moved.
  [[nodiscard]] Result<SecretBytes> get(std::string_view name) const {
    KEEL_TRY(detail::check_name(name));
    std::shared_lock lock(state_->mu);
    KEEL_TRY_ASSIGN(auto conn, state_->pool.get());
    KEEL_TRY_ASSIGN(auto env, sqlite::try_sql([&]() -> Result<std::vector<std::uint8_t>> {
                      KEEL_TRY_ASSIGN(
                          SQLite::Statement & q,
                          conn.prepare_cached("SELECT envelope FROM keel_vault_secrets WHERE name = ?"));
                      q.bind(1, std::string(name));
                      if (!q.executeStep()) return fail(Errc::not_found, "no secret named \"{}\"", name);
                      auto bytes = detail::column_bytes(q.getColumn(0));
                      q.reset();
                      return bytes;
                    }));
    return detail::open_record(*state_->key, state_->id, name, env);
  }

  /// True when a secret named `name` exists.
  [[nodiscard]] Result<bool> contains(std::string_view name) const {
    KEEL_TRY(detail::check_name(name));
    KEEL_TRY_ASSIGN(auto conn, state_->pool.get());
    return sqlite::try_sql([&]() -> Result<bool> {
      KEEL_TRY_ASSIGN(SQLite::Statement & q,
                      conn.prepare_cached("SELECT 1 FROM keel_vault_secrets WHERE name = ?"));
      q.bind(1, std::string(name));
      const bool found = q.executeStep();
      q.reset();
      return found;
    });
  }

  /// Deletes the secret named `name` (Errc::not_found if there is none).
  [[nodiscard]] Result<void> remove(std::string_view name) {
    KEEL_TRY(detail::check_name(name));
    KEEL_TRY_ASSIGN(auto conn, state_->pool.get());
    return sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<void> {
      KEEL_TRY_ASSIGN(SQLite::Statement & del,
                      c.prepare_cached("DELETE FROM keel_vault_secrets WHERE name = ?"));
      del.bind(1, std::string(name));
      if (del.exec() == 0) return fail(Errc::not_found, "no secret named \"{}\"", name);
      return {};
    });
  }

  /// Every name, sorted.
  [[nodiscard]] Result<std::vector<std::string>> list() const {
    KEEL_TRY_ASSIGN(auto conn, state_->pool.get());
    return sqlite::try_sql([&]() -> Result<std::vector<std::string>> {
      KEEL_TRY_ASSIGN(SQLite::Statement & q,
                      conn.prepare_cached("SELECT name FROM keel_vault_secrets ORDER BY name"));
      std::vector<std::string> out;
      while (q.executeStep()) out.push_back(q.getColumn(0).getString());
      q.reset();
      return out;
    });
  }

  /// Re-keys the vault under `new_password` (fresh salt, config.iterations):
  /// every record is opened with the old key and sealed with the new one in a
  /// single write transaction, so either all records and the key check change
  /// or nothing does. A record that fails to open aborts the rotation
  /// (Errc::auth_failed, nothing changed). Other users of this object wait.
  [[nodiscard]] Result<void> rotate(std::string_view new_password) {
    std::array<std::uint8_t, 16> salt{};
    KEEL_TRY(random_fill(salt));
    KEEL_TRY_ASSIGN(auto new_key, derive_key(new_password, salt, state_->cfg.iterations).context("rotating"));
    KEEL_TRY_ASSIGN(auto check,
                    seal(new_key, as_bytes(detail::kKeyCheckPlain), detail::check_aad(state_->id)));
    std::unique_lock lock(state_->mu);
    KEEL_TRY_ASSIGN(auto conn, state_->pool.get());
    KEEL_TRY_ASSIGN(
        std::size_t count,
        sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<std::size_t> {
          KEEL_TRY(check_epoch(c));
          std::vector<std::pair<std::string, std::vector<std::uint8_t>>> rows;
          {
            KEEL_TRY_ASSIGN(SQLite::Statement & q,
                            c.prepare_cached("SELECT name, envelope FROM keel_vault_secrets"));
            while (q.executeStep()) {
              rows.emplace_back(q.getColumn(0).getString(), detail::column_bytes(q.getColumn(1)));
            }
            q.reset();
          }
          KEEL_TRY_ASSIGN(SQLite::Statement & up,
                          c.prepare_cached("UPDATE keel_vault_secrets SET envelope = ?, updated_at = "
                                           "strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE name = ?"));
          for (std::size_t i = 0; i < rows.size(); ++i) {
            const auto& [name, env] = rows[i];
            KEEL_TRY_ASSIGN(auto plain, detail::open_record(*state_->key, state_->id, name, env));
            KEEL_TRY_ASSIGN(auto fresh,
                            seal(new_key, plain.expose_secret(), detail::record_aad(state_->id, name)));
            up.reset();
            detail::bind_blob(up, 1, fresh);
            up.bind(2, name);
            up.exec();
            if (state_->cfg.on_rotate_progress) state_->cfg.on_rotate_progress(i + 1, rows.size());
          }
          up.reset();
          KEEL_TRY_ASSIGN(SQLite::Statement & meta,
                          c.prepare_cached("UPDATE keel_vault_meta SET salt = ?, iterations = ?, "
                                           "key_check = ?, key_epoch = key_epoch + 1, seal_count = ?, "
                                           "rotated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') "
                                           "WHERE id = 1"));
          detail::bind_blob(meta, 1, salt);
          meta.bind(2, static_cast<std::int64_t>(state_->cfg.iterations));
          detail::bind_blob(meta, 3, check);
          meta.bind(4, static_cast<std::int64_t>(rows.size() + 1));
          meta.exec();
          return rows.size();
        }).context("rotating the vault key"));
    state_->key = std::move(new_key);
    ++state_->epoch;
    state_->log().debug("keel::crypto: rotated the vault key ({} records re-encrypted)", count);
    return {};
  }

  /// The store's random id (part of every record's AAD).
  [[nodiscard]] std::span<const std::uint8_t, kStoreIdSize> id() const noexcept { return state_->id; }

  /// Envelopes sealed under the current key, as recorded in the database.
  [[nodiscard]] Result<std::uint64_t> seal_count() const {
    KEEL_TRY_ASSIGN(auto conn, state_->pool.get());
    KEEL_TRY_ASSIGN(auto meta, detail::read_meta(conn));
    return meta.seal_count;
  }

 private:
  struct State {
    State(sqlite::Pool p, StoreConfig c) : pool(std::move(p)), cfg(std::move(c)) {}
    spdlog::logger& log() const { return cfg.logger ? *cfg.logger : *keel::log::logger(); }

    sqlite::Pool pool;
    StoreConfig cfg;
    std::array<std::uint8_t, kStoreIdSize> id{};
    std::optional<SecretKey> key;
    std::int64_t epoch = 0;
    mutable std::shared_mutex mu;  // shared: put/get; exclusive: rotate (swaps key)
  };

  explicit CredentialStore(std::unique_ptr<State> st) noexcept : state_(std::move(st)) {}

  // Inside a write transaction: refuse to write under a key another process
  // has rotated away from.
  [[nodiscard]] Result<void> check_epoch(sqlite::PooledConnection& c) const {
    KEEL_TRY_ASSIGN(SQLite::Statement & q,
                    c.prepare_cached("SELECT key_epoch FROM keel_vault_meta WHERE id = 1"));
    if (!q.executeStep()) return fail(Errc::not_found, "the vault metadata is gone");
    const auto epoch = q.getColumn(0).getInt64();
    q.reset();
    if (epoch != state_->epoch) {
      return fail(Errc::auth_failed, "the vault was re-keyed by another process; open it again");
    }
    return {};
  }

  [[nodiscard]] static Result<std::int64_t> bump_seals(sqlite::PooledConnection& c, std::int64_t n) {
    KEEL_TRY_ASSIGN(SQLite::Statement & up,
                    c.prepare_cached("UPDATE keel_vault_meta SET seal_count = seal_count + ? WHERE id = 1 "
                                     "RETURNING seal_count"));
    up.bind(1, n);
    if (!up.executeStep()) return fail(Errc::not_found, "the vault metadata is gone");
    const auto total = up.getColumn(0).getInt64();
    up.reset();
    return total;
  }

  void warn_seals(std::uint64_t total) const {
    const auto t = state_->cfg.seal_warn_threshold;
    if (t == 0 || total < t) return;
    if (total == t || (total - t) % (std::uint64_t{1} << 20U) == 0) {
      state_->log().warn(
          "keel::crypto: this vault's key has sealed {} records; rotate() it (AES-GCM random nonces must "
          "stay "
          "well below 2^32 per key)",
          total);
    }
  }

  std::unique_ptr<State> state_;
};

}  // namespace keel::crypto
