// keel/vault/store.hpp: an encrypted credential store in a SQLite database
// (through a keel::sqlite pool) or, with <keel/vault/postgres.hpp>, in a
// PostgreSQL database (through a keel::pg pool), unlocked with a password.
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
// own migrations; see <keel/vault/record.hpp> for the bytes, which are the
// same over PostgreSQL. Each secret is sealed (see aead.hpp) with AAD =
// "keel-vault\x01" | store id | name, so a row copied to another name or
// into another store fails to open instead of decrypting. New vaults derive
// their key with Argon2id (64 MiB, t=3, p=1; format 2); vaults made with
// PBKDF2-SHA256 (format 1) keep opening, and rotate() may move a vault from
// one KDF (or cost) to another. See <keel/vault/kdf.hpp>.
//
// Files (SQLite): pool_config() creates the database 0600 whatever the umask (SQLite
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
// refused (the key epoch is checked inside the write transaction), and so is
// a get() that reads a record re-sealed by such a rotate (Errc::auth_failed
// both times: that process must open the store again).
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
#include <keel/vault/backend.hpp>
#include <keel/vault/config.hpp>
#include <keel/vault/kdf.hpp>
#include <keel/vault/record.hpp>
#include <keel/vault/sqlite_backend.hpp>

#include <array>
#include <concepts>
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

namespace detail {

/// A pool type the store can use besides sqlite::Pool: it provides
/// make_vault_backend(pool) -> std::unique_ptr<VaultBackend>, found by
/// argument-dependent lookup (<keel/vault/postgres.hpp> does for keel::pg::Pool;
/// see <keel/vault/backend.hpp>).
template <class P>
concept VaultPool = !std::same_as<std::remove_cvref_t<P>, sqlite::Pool> && requires(const P& p) {
  { make_vault_backend(p) } -> std::convertible_to<std::unique_ptr<VaultBackend>>;
};

}  // namespace detail

/// An encrypted name -> secret store in a SQLite (or PostgreSQL) database.
/// Movable; see the header overview for files, thread-safety and guarantees.
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
    return create_in(std::make_unique<detail::SqliteBackend>(std::move(pool)), password, std::move(config));
  }

  /// Opens the vault in the pool's database: Errc::not_found if there is
  /// none, Errc::data_loss if it is damaged, Errc::config if it was written by
  /// a newer keel or others may write its file, Errc::auth_failed for a wrong
  /// password.
  [[nodiscard]] static Result<CredentialStore> open(sqlite::Pool pool, std::string_view password,
                                                    StoreConfig config = {}) {
    return open_in(std::make_unique<detail::SqliteBackend>(std::move(pool)), password, std::move(config));
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
    detail::SqliteBackend db(pool);
    return exists_in(db);
  }

  /// The vault's format, KDF, record and seal counts (no password needed).
  [[nodiscard]] static Result<StoreInfo> info(const sqlite::Pool& pool) {
    detail::SqliteBackend db(pool);
    return info_in(db);
  }

  /// create, open, open_or_create, exists and info over another kind of pool
  /// (keel::pg::Pool with <keel/vault/postgres.hpp>): the same record format,
  /// AAD, errors and rotation semantics.
  template <detail::VaultPool P>
  [[nodiscard]] static Result<CredentialStore> create(const P& pool, std::string_view password,
                                                      StoreConfig config = {}) {
    return create_in(make_vault_backend(pool), password, std::move(config));
  }
  template <detail::VaultPool P>
  [[nodiscard]] static Result<CredentialStore> open(const P& pool, std::string_view password,
                                                    StoreConfig config = {}) {
    return open_in(make_vault_backend(pool), password, std::move(config));
  }
  template <detail::VaultPool P>
  [[nodiscard]] static Result<CredentialStore> open_or_create(const P& pool, std::string_view password,
                                                              StoreConfig config = {}) {
    auto opened = open(pool, password, config);
    if (opened || opened.error().code() != Errc::not_found) return opened;
    auto made = create(pool, password, config);
    if (!made && made.error().code() == Errc::already_exists) return open(pool, password, std::move(config));
    return made;
  }
  template <detail::VaultPool P>
  [[nodiscard]] static Result<bool> exists(const P& pool) {
    auto db = make_vault_backend(pool);
    return exists_in(*db);
  }
  template <detail::VaultPool P>
  [[nodiscard]] static Result<StoreInfo> info(const P& pool) {
    auto db = make_vault_backend(pool);
    return info_in(*db);
  }

  /// Stores `secret` under `name`, replacing what was there (over SQLite the
  /// replaced envelope is then checkpointed out of the write-ahead log).
  [[nodiscard]] Result<void> put(std::string_view name, std::span<const std::uint8_t> secret) {
    KEEL_TRY(detail::check_name(name));
    std::shared_lock lock(state_->mu);
    KEEL_TRY_ASSIGN(auto env, seal(*state_->key, secret, detail::record_aad(state_->id, name)));
    KEEL_TRY_ASSIGN(std::int64_t seals,
                    state_->db->put(name, env, state_->epoch).context(fmt::format("storing \"{}\"", name)));
    warn_seals(static_cast<std::uint64_t>(seals));
    return {};
  }
  [[nodiscard]] Result<void> put(std::string_view name, std::string_view secret) {
    return put(name, as_bytes(secret));
  }

  /// The secret stored under `name`: Errc::not_found if there is none,
  /// Errc::data_loss if its row was damaged or moved, Errc::auth_failed if
  /// another process re-keyed the vault since this store opened it.
  [[nodiscard]] Result<SecretBytes> get(std::string_view name) const {
    KEEL_TRY(detail::check_name(name));
    std::shared_lock lock(state_->mu);
    KEEL_TRY_ASSIGN(auto rec, state_->db->get(name));
    if (!rec.key_epoch) return fail(Errc::data_loss, "damaged vault: the metadata row is gone");
    if (*rec.key_epoch != state_->epoch) return fail(Errc::auth_failed, "{}", VaultBackend::kRekeyed);
    return detail::open_record(*state_->key, state_->id, name, rec.envelope);
  }

  /// True when a secret named `name` exists.
  [[nodiscard]] Result<bool> contains(std::string_view name) const {
    KEEL_TRY(detail::check_name(name));
    return state_->db->contains(name);
  }

  /// Deletes the secret named `name` (Errc::not_found if there is none); over
  /// SQLite its envelope is overwritten in the file and checkpointed out of
  /// the log.
  [[nodiscard]] Result<void> remove(std::string_view name) {
    KEEL_TRY(detail::check_name(name));
    return state_->db->remove(name);
  }

  /// Every name, sorted (byte order).
  [[nodiscard]] Result<std::vector<std::string>> list() const { return state_->db->list(); }

  /// Re-keys the vault under `new_password` with config.kdf (fresh salt).
  [[nodiscard]] Result<void> rotate(std::string_view new_password) {
    return rotate(new_password, state_->cfg.kdf);
  }

  /// Re-keys the vault under `new_password` with `kdf` (fresh salt; a vault
  /// may move between Argon2id and PBKDF2, or to a higher cost): every record
  /// is opened with the old key and sealed with the new one in a single write
  /// transaction, so either all records and the key check change or nothing
  /// does; then (over SQLite) the old envelopes are checkpointed out of the
  /// write-ahead log. A record that fails to open aborts the rotation
  /// (Errc::data_loss, nothing changed). Other users of this object wait;
  /// other processes' writes wait for the transaction (SQLite's write lock, or
  /// PostgreSQL's lock on the metadata row) and are then refused as re-keyed.
  /// Copies of the files taken before the rotation still open with the old
  /// password.
  [[nodiscard]] Result<void> rotate(std::string_view new_password, const KdfParams& kdf) {
    KEEL_TRY(detail::check_new_password(new_password).context("rotating"));
    KEEL_TRY(kdf.validate().context("rotating"));
    std::array<std::uint8_t, 16> salt{};
    KEEL_TRY(random_fill(salt));
    KEEL_TRY_ASSIGN(auto new_key, derive_vault_key(new_password, salt, kdf).context("rotating"));
    KEEL_TRY_ASSIGN(auto check,
                    seal(new_key, as_bytes(detail::kKeyCheckPlain), detail::check_aad(state_->id)));
    std::unique_lock lock(state_->mu);
    const auto kdf_text = detail::kdf_column(kdf);
    const VaultBackend::KeyRow row{.format = detail::format_for(kdf),
                                   .kdf = kdf_text,
                                   .salt = salt,
                                   .iterations = static_cast<std::int64_t>(kdf.iterations),
                                   .key_check = check};
    const VaultBackend::Reseal reseal =
        [&](std::string_view name, std::span<const std::uint8_t> env) -> Result<std::vector<std::uint8_t>> {
      KEEL_TRY_ASSIGN(auto plain, detail::open_record(*state_->key, state_->id, name, env));
      return seal(new_key, plain.expose_secret(), detail::record_aad(state_->id, name));
    };
    KEEL_TRY_ASSIGN(std::size_t count,
                    state_->db->rotate(state_->epoch, row, reseal, state_->cfg.on_rotate_progress)
                        .context("rotating the vault key"));
    state_->key = std::move(new_key);
    ++state_->epoch;
    state_->log().debug("keel::crypto: rotated the vault key ({} records re-encrypted, {})", count,
                        describe(kdf));
    return {};
  }

  /// Over SQLite: checkpoints the write-ahead log into the database file and
  /// truncates it to zero bytes (remove and rotate do this themselves);
  /// Errc::busy if a reader kept it from finishing within busy_timeout. Over
  /// PostgreSQL: nothing to do (the server owns its log).
  [[nodiscard]] Result<void> checkpoint() { return state_->db->checkpoint(); }

  /// The store's random id (part of every record's AAD).
  [[nodiscard]] std::span<const std::uint8_t, kStoreIdSize> id() const noexcept { return state_->id; }

  /// Envelopes sealed under the current key, as recorded in the database.
  [[nodiscard]] Result<std::uint64_t> seal_count() const {
    KEEL_TRY_ASSIGN(auto meta, read_meta(*state_->db));
    return meta.seal_count;
  }

 private:
  struct State {
    State(std::unique_ptr<VaultBackend> b, StoreConfig c) : db(std::move(b)), cfg(std::move(c)) {}
    keel::Logger log() const { return keel::resolve_logger(cfg.logger); }

    std::unique_ptr<VaultBackend> db;
    StoreConfig cfg;
    std::array<std::uint8_t, kStoreIdSize> id{};
    std::optional<SecretKey> key;
    std::int64_t epoch = 0;
    mutable std::shared_mutex mu;  // shared: put/get; exclusive: rotate (swaps key)
  };

  explicit CredentialStore(std::unique_ptr<State> st) noexcept : state_(std::move(st)) {}

  [[nodiscard]] static Result<CredentialStore> create_in(std::unique_ptr<VaultBackend> db,
                                                         std::string_view password, StoreConfig config) {
    KEEL_TRY(detail::check_new_password(password).context("creating a vault"));
    KEEL_TRY(config.validate().context("creating a vault"));
    auto st = std::make_unique<State>(std::move(db), std::move(config));
    KEEL_TRY(st->db->prepare(st->log()).context("creating a vault"));
    std::array<std::uint8_t, 16> salt{};
    KEEL_TRY(random_fill(st->id));
    KEEL_TRY(random_fill(salt));
    KEEL_TRY_ASSIGN(auto key, derive_vault_key(password, salt, st->cfg.kdf).context("creating a vault"));
    KEEL_TRY_ASSIGN(auto check, seal(key, as_bytes(detail::kKeyCheckPlain), detail::check_aad(st->id)));
    const auto kdf_text = detail::kdf_column(st->cfg.kdf);
    const VaultBackend::KeyRow row{.format = detail::format_for(st->cfg.kdf),
                                   .kdf = kdf_text,
                                   .salt = salt,
                                   .iterations = static_cast<std::int64_t>(st->cfg.kdf.iterations),
                                   .key_check = check};
    KEEL_TRY(st->db->create(st->id, row).context("creating a vault"));
    st->key = std::move(key);
    st->epoch = 1;
    st->log().debug("keel::crypto: created a vault ({})", describe(st->cfg.kdf));
    return CredentialStore(std::move(st));
  }

  [[nodiscard]] static Result<CredentialStore> open_in(std::unique_ptr<VaultBackend> db,
                                                       std::string_view password, StoreConfig config) {
    auto st = std::make_unique<State>(std::move(db), std::move(config));
    KEEL_TRY_ASSIGN(auto meta, read_meta(*st->db).context("opening a vault"));
    KEEL_TRY(st->db->prepare(st->log()).context("opening a vault"));
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

  // The backend's metadata row, validated (the backend stores bytes only).
  [[nodiscard]] static Result<detail::Meta> read_meta(VaultBackend& db) {
    KEEL_TRY_ASSIGN(auto raw, db.read_meta());
    return detail::parse_meta(raw);
  }

  [[nodiscard]] static Result<bool> exists_in(VaultBackend& db) {
    auto meta = read_meta(db);
    if (meta) return true;
    if (meta.error().code() == Errc::not_found) return false;
    return std::move(meta).error();
  }

  [[nodiscard]] static Result<StoreInfo> info_in(VaultBackend& db) {
    KEEL_TRY_ASSIGN(auto meta, read_meta(db));
    KEEL_TRY_ASSIGN(auto extra, db.read_extra());
    StoreInfo out;
    out.format = meta.format;
    out.kdf = meta.kdf;
    out.seal_count = meta.seal_count;
    out.key_epoch = meta.key_epoch;
    out.records = extra.records;
    out.created_at = std::move(extra.created_at);
    out.rotated_at = std::move(extra.rotated_at);
    return out;
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
