// keel/vault/backend.hpp: where a CredentialStore keeps its rows (part of
// <keel/vault.hpp>; internal).
//
// CredentialStore does the cryptography (key derivation, the key check,
// sealing and opening records, AAD, rotation) once; a backend only stores
// and fetches the bytes of the record format (see record.hpp) and provides
// the locking that makes a put or a rotation atomic across processes. The
// SQLite backend is in sqlite_backend.hpp (target keel::vault), the
// PostgreSQL one in <keel/vault/postgres.hpp> (target keel::vault_postgres).
//
// Every write that seals with the store's key (put, rotate) runs in one
// transaction that first locks the metadata row against other writers and
// compares its key epoch with the one the caller holds: a mismatch (another
// process rotated the key) is Errc::auth_failed and nothing is written.
#pragma once

#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/vault/record.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace keel::crypto::detail {

/// The key material of a metadata row (what create writes and rotate replaces).
struct KeyRow {
  std::int64_t format = 0;
  std::string kdf;  // kdf_column()
  std::span<const std::uint8_t> salt;
  std::int64_t iterations = 0;
  std::span<const std::uint8_t> key_check;
};

/// A stored record with the key epoch read in the same snapshot.
struct StoredRecord {
  std::vector<std::uint8_t> envelope;
  std::optional<std::int64_t> key_epoch;  // empty: the metadata row is gone
};

/// What info() needs beyond the metadata row.
struct MetaExtra {
  std::uint64_t records = 0;
  std::string created_at;
  std::string rotated_at;
};

/// Re-seals one record during a rotation: the envelope under the old key in,
/// the envelope under the new key out.
using Reseal = std::function<Result<std::vector<std::uint8_t>>(std::string_view name,
                                                               std::span<const std::uint8_t> env)>;
/// Called after each record is re-sealed (done, total).
using Progress = std::function<void(std::size_t, std::size_t)>;

/// The storage seam. Thread-safe: the store calls it from any thread.
class VaultBackend {
 public:
  VaultBackend() = default;
  VaultBackend(const VaultBackend&) = delete;
  VaultBackend& operator=(const VaultBackend&) = delete;
  virtual ~VaultBackend() = default;

  /// Checks made before a vault is created or opened (file modes for SQLite).
  [[nodiscard]] virtual Result<void> prepare(const keel::Logger& log) = 0;
  /// The metadata row: Errc::not_found when there is no vault, Errc::data_loss
  /// when it is damaged or secret rows exist without it.
  [[nodiscard]] virtual Result<Meta> read_meta() = 0;
  /// Counts and timestamps for info().
  [[nodiscard]] virtual Result<MetaExtra> read_extra() = 0;
  /// Creates the tables and the metadata row (epoch 1, seal count 1) in one
  /// transaction: Errc::already_exists if a vault is there, Errc::data_loss if
  /// secret rows are there without one.
  [[nodiscard]] virtual Result<void> create(std::span<const std::uint8_t> store_id, const KeyRow& row) = 0;
  /// Inserts or replaces a record if the key epoch is still `epoch`; returns
  /// the seal counter after it.
  [[nodiscard]] virtual Result<std::int64_t> put(std::string_view name, std::span<const std::uint8_t> env,
                                                 std::int64_t epoch) = 0;
  /// A record and the key epoch, read together; Errc::not_found when absent.
  [[nodiscard]] virtual Result<StoredRecord> get(std::string_view name) = 0;
  [[nodiscard]] virtual Result<bool> contains(std::string_view name) = 0;
  /// Errc::not_found when absent.
  [[nodiscard]] virtual Result<void> remove(std::string_view name) = 0;
  /// Every name, in byte order.
  [[nodiscard]] virtual Result<std::vector<std::string>> list() = 0;
  /// In one transaction, if the key epoch is still `epoch`: every record
  /// re-sealed through `reseal`, the key material replaced by `row`, the epoch
  /// raised by one, the seal counter set to records + 1. Returns the records.
  [[nodiscard]] virtual Result<std::size_t> rotate(std::int64_t epoch, const KeyRow& row,
                                                   const Reseal& reseal, const Progress& progress) = 0;
  /// Moves replaced and deleted bytes out of logs where the backend can.
  [[nodiscard]] virtual Result<void> checkpoint() = 0;
};

/// The message of the Errc::auth_failed for a key epoch that moved under the caller.
inline constexpr std::string_view kRekeyed = "the vault was re-keyed by another process; open it again";

}  // namespace keel::crypto::detail
