// keel/vault/store.hpp: an encrypted credential store in a SQLite database
// (through a keel::sqlite pool), unlocked with a password.
//
//     KEEL_TRY_ASSIGN(auto pool, keel::sqlite::Pool::open(
//                                    keel::crypto::CredentialStore::pool_config("vault.db")));
//     auto store = keel::crypto::CredentialStore::open_or_create(pool, password);
//     if (!store) return store.error();          // wrong password: Errc::auth_failed
//     KEEL_TRY(store->put("db/password", "s3cret"));
//     KEEL_TRY_ASSIGN(auto secret, store->get("db/password"));   // SecretBytes
//     KEEL_TRY(store->rotate(new_password));     // re-encrypts everything, all or nothing
//
// Layout: two tables, keel_vault_meta (one row: format, a random 16-byte
// store id, the KDF and its parameters, the salt, a key-check envelope, a
// key epoch and the seal counter) and keel_vault_secrets (name, envelope,
// updated_at). They are created by the store itself, not by
// keel::sqlite::migrate, so they can share a database with an application's
// own migrations. Each secret is sealed (see aead.hpp) with AAD =
// "keel-vault\x01" | store id | name, so a row copied to another name or
// into another store fails to open instead of decrypting. New vaults derive
// their key with Argon2id (64 MiB, t=3, p=1; format 2); vaults made with
// PBKDF2-SHA256 (format 1) keep opening, and rotate() may move a vault from
// one KDF (or cost) to another. See <keel/vault/kdf.hpp>.
//
// Files: pool_config() creates the database 0600 whatever the umask (SQLite
// gives its -wal and -shm files the same mode). Opening a vault refuses a
// file that group or others may write (Errc::config) and takes read access
// away from group and others when a file (or its -wal or -shm) has it. Every
// connection the store uses runs with secure_delete=ON (deleted records are
// overwritten with zeros in the file) and synchronous=FULL (a committed put,
// remove or rotate survives power loss; both stay set on those pooled
// connections, so give a vault its own pool when the application's writes
// should keep synchronous=NORMAL); remove(), rotate() and a put() that
// replaces a record end with a TRUNCATE checkpoint, so the old envelopes
// leave the write-ahead log as well.
//
// Thread-safety: a CredentialStore may be used from any number of threads;
// put/get/remove/list run concurrently (through the pool), rotate excludes
// them while it runs. Several processes may share a store file: a put from a
// process that still holds the key from before another process's rotate is
// refused (the key epoch is checked inside the write transaction), and that
// process must open the store again.
//
// Guarantees: a wrong password fails at open with Errc::auth_failed; a
// damaged vault gives Errc::data_loss: a record that was edited, swapped or
// truncated (never wrong plaintext), metadata that does not parse, or secret
// rows without the metadata row (open_or_create never makes a new vault over
// them). rotate is one transaction: killed half-way, the old password still
// opens everything. Secrets never reach the database file or the log in
// clear. Not protected: names (stored in clear, to allow lookup and
// listing), record count and sizes, timestamps, copies of the files taken
// before a remove or rotate (rotation does not revoke them: whoever holds
// such a copy and the old password reads the old secrets), and an attacker
// who can read this process's memory while the store is open. See
// docs/crypto.md.
#pragma once

#include <keel/crypto/aead.hpp>
#include <keel/crypto/key.hpp>
#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/sqlite.hpp>
#include <keel/vault/kdf.hpp>

#include <SQLiteCpp/Statement.h>
#include <sqlite3.h>
#include <sys/stat.h>

#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
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
  /// The KDF and its cost for create() and rotate() (Argon2id, 64 MiB, t=3,
  /// p=1 by default; KdfParams::pbkdf2() for FIPS). open() uses what the
  /// database records.
  KdfParams kdf{};
  /// The store warns (at warn level) once its key has sealed this many records,
  /// and again every 2^20 seals after; rotate() starts a new count. AES-GCM with
  /// random nonces must stay well below 2^32 seals per key.
  std::uint64_t seal_warn_threshold = kSealWarnThreshold;
  /// Called during rotate() after each record is re-encrypted (done, total).
  std::function<void(std::size_t, std::size_t)> on_rotate_progress;
  /// Where the store logs (debug: opens, rotations; warn: the seal counter,
  /// loosened file modes, a checkpoint that could not finish).
  /// Empty: keel::default_logger(). Secrets and passwords are never logged.
  keel::Logger logger;

  /// Errc::config for KDF parameters a new key may not use.
  [[nodiscard]] Result<void> validate() const { return kdf.validate(); }
};

/// What a vault holds, readable without its password (CredentialStore::info).
struct StoreInfo {
  std::int64_t format = 0;       ///< 1: PBKDF2 only; 2: Argon2id or PBKDF2
  KdfParams kdf{};               ///< the KDF and cost the current key was derived with
  std::uint64_t records = 0;     ///< secrets stored
  std::uint64_t seal_count = 0;  ///< envelopes sealed under the current key
  std::int64_t key_epoch = 0;    ///< 1, plus one per rotation
  std::string created_at;        ///< ISO 8601, UTC
  std::string rotated_at;        ///< empty if never rotated
};

/// Bytes in a store id.
inline constexpr std::size_t kStoreIdSize = 16;
/// Longest record name put() accepts.
inline constexpr std::size_t kMaxNameSize = 1024;
/// The mode pool_config() creates vault files with.
inline constexpr std::uint32_t kVaultFileMode = 0600;

namespace detail {

/// Format 1: PBKDF2 only (older keel). Format 2: the kdf column may name Argon2id.
inline constexpr std::int64_t kVaultFormatPbkdf2 = 1;
inline constexpr std::int64_t kVaultFormat = 2;
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

/// The format a vault whose key uses `p` is written in.
[[nodiscard]] constexpr std::int64_t format_for(const KdfParams& p) noexcept {
  return p.kdf == Kdf::pbkdf2 ? kVaultFormatPbkdf2 : kVaultFormat;
}

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
  std::int64_t format = 0;
  std::array<std::uint8_t, kStoreIdSize> store_id{};
  std::vector<std::uint8_t> salt;
  KdfParams kdf{};
  std::vector<std::uint8_t> key_check;
  std::int64_t key_epoch = 0;
  std::uint64_t seal_count = 0;
};

/// Validates a meta row read from an untrusted file: Errc::config for a
/// format newer than this build, Errc::data_loss (with what is wrong) for
/// anything else this version did not write.
[[nodiscard]] inline Result<Meta> parse_meta(const RawMeta& raw) {
  if (raw.format > kVaultFormat) {
    return fail(Errc::config, "vault format {} is newer than this build reads (up to {}): upgrade keel",
                raw.format, kVaultFormat);
  }
  if (raw.format < kVaultFormatPbkdf2) return fail(Errc::data_loss, "damaged vault: format {}", raw.format);
  if (raw.store_id.size() != kStoreIdSize) return fail(Errc::data_loss, "damaged vault: bad store id");
  KEEL_TRY_ASSIGN(auto kdf, parse_kdf_column(raw.kdf, raw.iterations));
  if (raw.format == kVaultFormatPbkdf2 && kdf.kdf != Kdf::pbkdf2) {
    return fail(Errc::data_loss, "damaged vault: format 1 with KDF {}", to_string(kdf.kdf));
  }
  if (raw.salt.empty() || raw.salt.size() > kMaxSaltSize) {
    return fail(Errc::data_loss, "damaged vault: salt of {} bytes", raw.salt.size());
  }
  if (raw.key_check.size() != kEnvelopeOverhead + kKeyCheckPlain.size()) {
    return fail(Errc::data_loss, "damaged vault: bad key-check value");
  }
  if (raw.key_epoch < 1 || raw.seal_count < 0) return fail(Errc::data_loss, "damaged vault: bad counters");
  Meta m;
  m.format = raw.format;
  std::copy(raw.store_id.begin(), raw.store_id.end(), m.store_id.begin());
  m.salt = raw.salt;
  m.kdf = kdf;
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
/// the fuzz target exercises. Any failure is Errc::data_loss: a record that
/// does not open under the key that opened the key check was damaged, moved
/// from another name or store, or written by someone else.
[[nodiscard]] inline Result<SecretBytes> open_record(const SecretKey& key,
                                                     std::span<const std::uint8_t> store_id,
                                                     std::string_view name,
                                                     std::span<const std::uint8_t> envelope) {
  auto plain = keel::crypto::open(key, envelope, record_aad(store_id, name));
  if (!plain) {
    return fail(Errc::data_loss,
                "record \"{}\" is damaged: it fails to open (edited, moved from another name or store, or "
                "written under another key): {}",
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
    return fail(Errc::data_loss, "damaged vault: key-check value: {}", plain.error().message());
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

/// Reads the meta row; Errc::not_found when the database holds no vault,
/// Errc::data_loss when it holds a damaged one.
[[nodiscard]] inline Result<Meta> read_meta(sqlite::PooledConnection& c) {
  return sqlite::try_sql([&]() -> Result<Meta> {
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

[[nodiscard]] inline Result<void> check_new_password(std::string_view password) {
  if (password.empty()) return fail(Errc::invalid_argument, "a vault password cannot be empty");
  return {};
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

}  // namespace detail

/// An encrypted name -> secret store in a SQLite database. Movable; see the
/// header overview for files, thread-safety and guarantees.
class CredentialStore {
 public:
  /// A pool configuration for a vault file: created 0600 whatever the umask
  /// (and so its -wal and -shm), secure_delete=ON, synchronous=FULL, a small
  /// pool (one to four connections).
  [[nodiscard]] static sqlite::PoolConfig pool_config(std::string path) {
    sqlite::PoolConfig pc;
    pc.path = std::move(path);
    pc.file_mode = kVaultFileMode;
    pc.synchronous = "FULL";
    pc.pragmas = {"secure_delete = ON"};
    pc.min_idle = 1;
    pc.max_size = 4;
    return pc;
  }

  /// Makes a new vault in the pool's database: random store id and salt, the
  /// key derived with config.kdf. Errc::already_exists if the database holds a
  /// vault, Errc::data_loss if it holds secret rows without one,
  /// Errc::invalid_argument for an empty password, Errc::config for weak KDF
  /// parameters or a file others may write.
  [[nodiscard]] static Result<CredentialStore> create(sqlite::Pool pool, std::string_view password,
                                                      StoreConfig config = {}) {
    KEEL_TRY(detail::check_new_password(password).context("creating a vault"));
    KEEL_TRY(config.validate().context("creating a vault"));
    auto st = std::make_unique<State>(std::move(pool), std::move(config));
    {
      KEEL_TRY_ASSIGN(auto conn, st->checkout());
      KEEL_TRY(detail::secure_files(conn, st->log()).context("creating a vault"));
    }
    std::array<std::uint8_t, 16> salt{};
    KEEL_TRY(random_fill(st->id));
    KEEL_TRY(random_fill(salt));
    KEEL_TRY_ASSIGN(auto key, derive_vault_key(password, salt, st->cfg.kdf).context("creating a vault"));
    KEEL_TRY_ASSIGN(auto check, seal(key, as_bytes(detail::kKeyCheckPlain), detail::check_aad(st->id)));
    KEEL_TRY_ASSIGN(auto conn, st->checkout());
    auto made = sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<void> {
      KEEL_TRY(c.exec(detail::kVaultSchema));
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
                               detail::format_for(st->cfg.kdf), std::span<const std::uint8_t>(st->id),
                               detail::kdf_column(st->cfg.kdf), std::span<const std::uint8_t>(salt),
                               static_cast<std::int64_t>(st->cfg.kdf.iterations),
                               std::span<const std::uint8_t>(check)));
      return {};
    });
    if (!made) return std::move(made).error().context("creating a vault");
    st->key = std::move(key);
    st->epoch = 1;
    st->log().debug("keel::crypto: created a vault ({})", describe(st->cfg.kdf));
    return CredentialStore(std::move(st));
  }

  /// Opens the vault in the pool's database: Errc::not_found if there is
  /// none, Errc::data_loss if it is damaged, Errc::config if it was written by
  /// a newer keel or others may write its file, Errc::auth_failed for a wrong
  /// password.
  [[nodiscard]] static Result<CredentialStore> open(sqlite::Pool pool, std::string_view password,
                                                    StoreConfig config = {}) {
    auto st = std::make_unique<State>(std::move(pool), std::move(config));
    KEEL_TRY_ASSIGN(auto conn, st->checkout());
    KEEL_TRY_ASSIGN(auto meta, detail::read_meta(conn).context("opening a vault"));
    KEEL_TRY(detail::secure_files(conn, st->log()).context("opening a vault"));
    conn.release();
    // Stored parameters may predate today's minimums: honour them (bounded).
    KEEL_TRY_ASSIGN(
        auto key,
        derive_vault_key(password, meta.salt, meta.kdf, KdfPolicy::existing_data).context("opening a vault"));
    KEEL_TRY(detail::verify_key(key, meta).context("opening a vault"));
    if (!meta.kdf.validate()) {
      st->log().warn("keel::crypto: this vault's key uses {}, below today's minimum; rotate() to upgrade",
                     describe(meta.kdf));
    }
    st->id = meta.store_id;
    st->key = std::move(key);
    st->epoch = meta.key_epoch;
    st->log().debug("keel::crypto: opened a vault ({})", describe(meta.kdf));
    return CredentialStore(std::move(st));
  }

  /// open(), or create() when the database holds no vault yet. A database
  /// with secret rows but no vault metadata is damaged (Errc::data_loss), not
  /// empty: no new vault is made over it.
  [[nodiscard]] static Result<CredentialStore> open_or_create(sqlite::Pool pool, std::string_view password,
                                                              StoreConfig config = {}) {
    auto opened = open(pool, password, config);
    if (opened || opened.error().code() != Errc::not_found) return opened;
    auto made = create(pool, password, config);
    if (!made && made.error().code() == Errc::already_exists)
      return open(std::move(pool), password, std::move(config));
    return made;
  }

  /// True when the pool's database holds a vault (no password needed);
  /// Errc::data_loss for a damaged one.
  [[nodiscard]] static Result<bool> exists(const sqlite::Pool& pool) {
    KEEL_TRY_ASSIGN(auto conn, pool.get());
    auto meta = detail::read_meta(conn);
    if (meta) return true;
    if (meta.error().code() == Errc::not_found) return false;
    return std::move(meta).error();
  }

  /// The vault's format, KDF, record and seal counts (no password needed).
  [[nodiscard]] static Result<StoreInfo> info(const sqlite::Pool& pool) {
    KEEL_TRY_ASSIGN(auto conn, pool.get());
    KEEL_TRY_ASSIGN(auto meta, detail::read_meta(conn));
    StoreInfo out;
    out.format = meta.format;
    out.kdf = meta.kdf;
    out.seal_count = meta.seal_count;
    out.key_epoch = meta.key_epoch;
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

  /// Stores `secret` under `name`, replacing what was there (the replaced
  /// envelope is then checkpointed out of the write-ahead log).
  [[nodiscard]] Result<void> put(std::string_view name, std::span<const std::uint8_t> secret) {
    KEEL_TRY(detail::check_name(name));
    std::shared_lock lock(state_->mu);
    KEEL_TRY_ASSIGN(auto env, seal(*state_->key, secret, detail::record_aad(state_->id, name)));
    KEEL_TRY_ASSIGN(auto conn, state_->checkout());
    bool replaced = false;
    KEEL_TRY_ASSIGN(std::int64_t seals,
                    sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<std::int64_t> {
                      KEEL_TRY(check_epoch(c));
                      KEEL_TRY_ASSIGN(auto had,
                                      sqlite::query_optional<std::int64_t>(
                                          c, "SELECT 1 FROM keel_vault_secrets WHERE name = ?", name));
                      replaced = had.has_value();
                      KEEL_TRY(sqlite::execute(c,
                                               "INSERT INTO keel_vault_secrets (name, envelope) VALUES "
                                               "(?, ?) ON CONFLICT(name) DO UPDATE SET envelope = "
                                               "excluded.envelope, updated_at = excluded.updated_at",
                                               name, std::span<const std::uint8_t>(env)));
                      return bump_seals(c, 1);
                    }).context(fmt::format("storing \"{}\"", name)));
    if (replaced) (void)state_->truncate_wal(conn);
    warn_seals(static_cast<std::uint64_t>(seals));
    return {};
  }
  [[nodiscard]] Result<void> put(std::string_view name, std::string_view secret) {
    return put(name, as_bytes(secret));
  }

  /// The secret stored under `name`: Errc::not_found if there is none,
  /// Errc::data_loss if its row was damaged or moved.
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
    KEEL_TRY_ASSIGN(auto found, sqlite::query_optional<std::int64_t>(
                                    conn, "SELECT 1 FROM keel_vault_secrets WHERE name = ?", name));
    return found.has_value();
  }

  /// Deletes the secret named `name` (Errc::not_found if there is none); its
  /// envelope is overwritten in the file and checkpointed out of the log.
  [[nodiscard]] Result<void> remove(std::string_view name) {
    KEEL_TRY(detail::check_name(name));
    KEEL_TRY_ASSIGN(auto conn, state_->checkout());
    KEEL_TRY(sqlite::transaction(conn, [&](sqlite::PooledConnection& c) -> Result<void> {
      KEEL_TRY_ASSIGN(int n, sqlite::execute(c, "DELETE FROM keel_vault_secrets WHERE name = ?", name));
      if (n == 0) return fail(Errc::not_found, "no secret named \"{}\"", name);
      return {};
    }));
    (void)state_->truncate_wal(conn);
    return {};
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

  /// Re-keys the vault under `new_password` with config.kdf (fresh salt).
  [[nodiscard]] Result<void> rotate(std::string_view new_password) {
    return rotate(new_password, state_->cfg.kdf);
  }

  /// Re-keys the vault under `new_password` with `kdf` (fresh salt; a vault
  /// may move between Argon2id and PBKDF2, or to a higher cost): every record
  /// is opened with the old key and sealed with the new one in a single write
  /// transaction, so either all records and the key check change or nothing
  /// does; then the old envelopes are checkpointed out of the write-ahead log.
  /// A record that fails to open aborts the rotation (Errc::data_loss,
  /// nothing changed). Other users of this object wait. Copies of the files
  /// taken before the rotation still open with the old password.
  [[nodiscard]] Result<void> rotate(std::string_view new_password, const KdfParams& kdf) {
    KEEL_TRY(detail::check_new_password(new_password).context("rotating"));
    KEEL_TRY(kdf.validate().context("rotating"));
    std::array<std::uint8_t, 16> salt{};
    KEEL_TRY(random_fill(salt));
    KEEL_TRY_ASSIGN(auto new_key, derive_vault_key(new_password, salt, kdf).context("rotating"));
    KEEL_TRY_ASSIGN(auto check,
                    seal(new_key, as_bytes(detail::kKeyCheckPlain), detail::check_aad(state_->id)));
    std::unique_lock lock(state_->mu);
    KEEL_TRY_ASSIGN(auto conn, state_->checkout());
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
          KEEL_TRY(sqlite::execute(
              c,
              "UPDATE keel_vault_meta SET format = ?, kdf = ?, salt = ?, iterations = ?, "
              "key_check = ?, key_epoch = key_epoch + 1, seal_count = ?, "
              "rotated_at = strftime('%Y-%m-%dT%H:%M:%fZ', 'now') WHERE id = 1",
              detail::format_for(kdf), detail::kdf_column(kdf), std::span<const std::uint8_t>(salt),
              static_cast<std::int64_t>(kdf.iterations), std::span<const std::uint8_t>(check),
              static_cast<std::int64_t>(rows.size() + 1)));
          return rows.size();
        }).context("rotating the vault key"));
    state_->key = std::move(new_key);
    ++state_->epoch;
    (void)state_->truncate_wal(conn);
    state_->log().debug("keel::crypto: rotated the vault key ({} records re-encrypted, {})", count,
                        describe(kdf));
    return {};
  }

  /// Checkpoints the write-ahead log into the database file and truncates it
  /// to zero bytes (remove and rotate do this themselves). Errc::busy if a
  /// reader kept it from finishing within busy_timeout.
  [[nodiscard]] Result<void> checkpoint() {
    KEEL_TRY_ASSIGN(auto conn, state_->checkout());
    return state_->truncate_wal(conn);
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
    keel::Logger log() const { return keel::resolve_logger(cfg.logger); }

    /// A connection with the pragmas every write of the store needs, whatever
    /// the pool was configured with: deleted content overwritten, commits
    /// durable across power loss.
    [[nodiscard]] Result<sqlite::PooledConnection> checkout() const {
      KEEL_TRY_ASSIGN(auto conn, pool.get());
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
        log().warn(
            "keel::crypto: could not truncate the vault's write-ahead log (old envelopes stay in "
            "it until the next checkpoint): {}",
            e);
        return e;
      }
      return {};
    }

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
    KEEL_TRY_ASSIGN(auto epoch, sqlite::query_optional<std::int64_t>(
                                    c, "SELECT key_epoch FROM keel_vault_meta WHERE id = 1"));
    if (!epoch) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
    if (*epoch != state_->epoch) {
      return fail(Errc::auth_failed, "the vault was re-keyed by another process; open it again");
    }
    return {};
  }

  [[nodiscard]] static Result<std::int64_t> bump_seals(sqlite::PooledConnection& c, std::int64_t n) {
    KEEL_TRY_ASSIGN(auto total, sqlite::query_optional<std::int64_t>(
                                    c,
                                    "UPDATE keel_vault_meta SET seal_count = seal_count + ? WHERE id = 1 "
                                    "RETURNING seal_count",
                                    n));
    if (!total) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
    return *total;
  }

  void warn_seals(std::uint64_t total) const {
    const auto t = state_->cfg.seal_warn_threshold;
    if (t == 0 || total < t) return;
    if (total == t || (total - t) % (std::uint64_t{1} << 20U) == 0) {
      state_->log().warn(
          "keel::crypto: this vault's key has sealed {} records; rotate() it (AES-GCM random nonces must "
          "stay well below 2^32 per key)",
          total);
    }
  }

  std::unique_ptr<State> state_;
};

}  // namespace keel::crypto
