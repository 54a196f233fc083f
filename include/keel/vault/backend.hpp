// keel/vault/backend.hpp: where a CredentialStore keeps its rows: the
// interface a storage backend implements (part of <keel/vault.hpp>).
//
// CredentialStore does the cryptography (key derivation, the key check,
// sealing and opening records, AAD, validating the metadata, rotation) once;
// a backend only stores and fetches bytes and provides the locking that
// makes a put or a rotation atomic across processes. Everything it is handed
// is opaque to it: envelopes are sealed, the key-check value is sealed, the
// salt and KDF column are stored as given and returned unchanged.
//
// keel ships two: SQLite (CredentialStore's sqlite::Pool overloads) and
// PostgreSQL (<keel/vault/postgres.hpp>, target keel::vault_postgres). To keep
// a vault anywhere else, derive from VaultBackend and declare, in the
// namespace of your pool (or handle) type P,
//
//     std::unique_ptr<keel::crypto::VaultBackend> make_vault_backend(const P&);
//
// CredentialStore::create/open/open_or_create/exists/info(pool, ...) then
// accept a P (found by argument-dependent lookup).
//
// What a backend must guarantee:
// - Every write that seals with the store's key (put, rotate) runs in one
//   transaction that first locks the metadata row against other writers and
//   compares its key epoch with the one the caller passes: a mismatch
//   (another process rotated the key) is Errc::auth_failed with the message
//   kRekeyed and nothing is written.
// - create and rotate are all or nothing; a failure (or a crash) half-way
//   leaves the vault as it was.
// - get returns the envelope and the key epoch read in one snapshot, so a
//   record re-sealed by a concurrent rotate is never paired with the old
//   epoch.
// - Thread-safety: the store calls one backend object from any number of
//   threads at once (rotate excluded by the store itself from its own
//   put/get); a backend serializes or pools its connections as it needs.
#pragma once

#include <keel/logger.hpp>
#include <keel/result.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keel::crypto {

/// The storage seam of a CredentialStore (see the header overview).
class VaultBackend {
 public:
  /// The metadata row as stored, read back unchanged; the store validates it
  /// (a damaged or foreign row is Errc::data_loss there, not in the backend).
  struct MetaRow {
    std::int64_t format = 0;
    std::vector<std::uint8_t> store_id;
    std::string kdf;
    std::vector<std::uint8_t> salt;
    std::int64_t iterations = 0;
    std::vector<std::uint8_t> key_check;
    std::int64_t key_epoch = 0;   ///< 1 at create, plus one per rotate
    std::int64_t seal_count = 0;  ///< 1 at create, plus one per put; records + 1 after rotate
  };

  /// The key material of a metadata row (what create writes and rotate
  /// replaces); store every field as given.
  struct KeyRow {
    std::int64_t format = 0;
    std::string kdf;
    std::span<const std::uint8_t> salt;
    std::int64_t iterations = 0;
    std::span<const std::uint8_t> key_check;
  };

  /// A stored record with the key epoch read in the same snapshot.
  struct StoredRecord {
    std::vector<std::uint8_t> envelope;
    std::optional<std::int64_t> key_epoch;  ///< empty: the metadata row is gone
  };

  /// What CredentialStore::info() needs beyond the metadata row.
  struct Extra {
    std::uint64_t records = 0;
    std::string created_at;  ///< ISO 8601, UTC
    std::string rotated_at;  ///< empty if never rotated
  };

  /// Re-seals one record during a rotation (supplied by the store): the
  /// envelope under the old key in, the envelope under the new key out.
  using Reseal = std::function<Result<std::vector<std::uint8_t>>(std::string_view name,
                                                                 std::span<const std::uint8_t> env)>;
  /// Called after each record is re-sealed (done, total); may be empty.
  using Progress = std::function<void(std::size_t, std::size_t)>;

  /// The message of the Errc::auth_failed a write returns when the key epoch
  /// moved under the caller.
  static constexpr std::string_view kRekeyed = "the vault was re-keyed by another process; open it again";

  VaultBackend() = default;
  VaultBackend(const VaultBackend&) = delete;
  VaultBackend& operator=(const VaultBackend&) = delete;
  virtual ~VaultBackend() = default;

  /// Checks made before a vault is created or opened (file modes for SQLite);
  /// `log` is the store's logger, for warnings.
  [[nodiscard]] virtual Result<void> prepare(const keel::Logger& log) = 0;
  /// The metadata row: Errc::not_found when there is no vault, Errc::data_loss
  /// when secret rows exist without it.
  [[nodiscard]] virtual Result<MetaRow> read_meta() = 0;
  /// Counts and timestamps for info().
  [[nodiscard]] virtual Result<Extra> read_extra() = 0;
  /// Creates the tables and the metadata row (epoch 1, seal count 1) in one
  /// transaction: Errc::already_exists if a vault is there, Errc::data_loss if
  /// secret rows are there without one.
  [[nodiscard]] virtual Result<void> create(std::span<const std::uint8_t> store_id, const KeyRow& row) = 0;
  /// Inserts or replaces a record and raises the seal counter by one, in one
  /// transaction, if the key epoch is still `epoch`; returns the seal counter
  /// after it.
  [[nodiscard]] virtual Result<std::int64_t> put(std::string_view name, std::span<const std::uint8_t> env,
                                                 std::int64_t epoch) = 0;
  /// A record and the key epoch, read together; Errc::not_found when absent.
  [[nodiscard]] virtual Result<StoredRecord> get(std::string_view name) = 0;
  /// True when a record named `name` exists.
  [[nodiscard]] virtual Result<bool> contains(std::string_view name) = 0;
  /// Deletes a record; Errc::not_found when absent.
  [[nodiscard]] virtual Result<void> remove(std::string_view name) = 0;
  /// Every name, in byte order.
  [[nodiscard]] virtual Result<std::vector<std::string>> list() = 0;
  /// In one transaction, if the key epoch is still `epoch`: every record
  /// re-sealed through `reseal` (an error from it aborts the transaction and
  /// is returned), the key material replaced by `row`, the epoch raised by
  /// one, the seal counter set to records + 1. Returns the records. Records
  /// must not be added or removed by others while it runs.
  [[nodiscard]] virtual Result<std::size_t> rotate(std::int64_t epoch, const KeyRow& row,
                                                   const Reseal& reseal, const Progress& progress) = 0;
  /// Moves replaced and deleted bytes out of logs where the backend can (may
  /// do nothing).
  [[nodiscard]] virtual Result<void> checkpoint() = 0;
};

}  // namespace keel::crypto
