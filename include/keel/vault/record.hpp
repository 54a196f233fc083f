// keel/vault/record.hpp: the vault's record format, the same over every
// storage backend (part of <keel/vault.hpp>).
//
// A vault is one metadata row (format, a random 16-byte store id, the KDF
// and its parameters, the salt, a key-check envelope, a key epoch and the
// seal counter) and one row per secret (name, envelope). Each secret is
// sealed (see <keel/crypto/aead.hpp>) with AAD = "keel-vault\x01" | store id |
// name, and the key check with AAD = "keel-vault-check\x01" | store id, so a
// row copied to another name or into another store fails to open instead of
// decrypting. The bytes are the same whether the rows live in SQLite or in
// PostgreSQL: a row copied from one to the other opens with the same password.
#pragma once

#include <keel/crypto/aead.hpp>
#include <keel/crypto/key.hpp>
#include <keel/result.hpp>
#include <keel/vault/backend.hpp>
#include <keel/vault/kdf.hpp>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::crypto {

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

/// The format a vault whose key uses `p` is written in.
[[nodiscard]] constexpr std::int64_t format_for(const KdfParams& p) noexcept {
  return p.kdf == Kdf::pbkdf2 ? kVaultFormatPbkdf2 : kVaultFormat;
}

/// The meta row as read from the database, not yet validated.
using RawMeta = VaultBackend::MetaRow;

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

}  // namespace detail

}  // namespace keel::crypto
