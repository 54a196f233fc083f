// keel/vault/kdf.hpp: the password-to-key derivations a CredentialStore can
// use, and how their parameters are written beside the salt.
//
//     keel::crypto::KdfParams p;                                 // Argon2id, 64 MiB, t=3, p=1
//     KEEL_TRY_ASSIGN(auto key, keel::crypto::derive_vault_key("pw", salt, p));
//     keel::crypto::KdfParams fips = keel::crypto::KdfParams::pbkdf2();  // 600,000 iterations
//     fmt::print("{}\n", keel::crypto::describe(p));             // "argon2id m=65536 KiB t=3 p=1"
//
// Argon2id (RFC 9106, through libargon2) is the default for new vaults:
// memory-hard, so a GPU or ASIC guessing passwords pays in memory as well as
// time. PBKDF2-HMAC-SHA256 (through OpenSSL) stays for deployments that need
// a FIPS-approved derivation. New keys must meet minimums (Argon2id: 19 MiB,
// t=2, as OWASP's lowest profile; PBKDF2: 100,000 iterations); parameters
// stored with existing data are honoured down to 1 but bounded above
// (Argon2id: 4 GiB, t=1000, p=64), so a damaged or hostile file cannot make
// opening it take hours or all memory.
//
// Thread-safety: pure functions; derive_vault_key may run on several threads
// at once (each Argon2id derivation allocates its own memory).
#pragma once

#include <keel/crypto/key.hpp>
#include <keel/result.hpp>

#include <argon2.h>
#include <fmt/format.h>

#include <array>
#include <charconv>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <utility>

namespace keel::crypto {

/// The key-derivation functions a CredentialStore knows.
enum class Kdf : std::uint8_t {
  argon2id,  ///< Argon2id v1.3 (the default for new vaults)
  pbkdf2,    ///< PBKDF2-HMAC-SHA256 (FIPS deployments)
};

/// Argon2id's defaults for new keys: 64 MiB, 3 passes, 1 lane.
inline constexpr std::uint32_t kArgon2DefaultMemoryKib = 64U * 1024U;
inline constexpr std::uint32_t kArgon2DefaultPasses = 3;
inline constexpr std::uint32_t kArgon2DefaultLanes = 1;
/// The least a new key may use (OWASP's lowest Argon2id profile).
inline constexpr std::uint32_t kArgon2MinMemoryKib = 19U * 1024U;
inline constexpr std::uint32_t kArgon2MinPasses = 2;
/// The most any stored parameters may ask for.
inline constexpr std::uint32_t kArgon2MaxMemoryKib = 4U * 1024U * 1024U;
inline constexpr std::uint32_t kArgon2MaxPasses = 1000;
inline constexpr std::uint32_t kArgon2MaxLanes = 64;

/// A KDF and its cost parameters. `iterations` is PBKDF2's count or
/// Argon2id's number of passes (t); memory_kib and lanes are Argon2id's m and p
/// (zero for PBKDF2).
struct KdfParams {
  Kdf kdf = Kdf::argon2id;
  std::uint32_t iterations = kArgon2DefaultPasses;
  std::uint32_t memory_kib = kArgon2DefaultMemoryKib;
  std::uint32_t lanes = kArgon2DefaultLanes;

  /// Argon2id with the given cost.
  [[nodiscard]] static constexpr KdfParams argon2id(std::uint32_t memory_kib = kArgon2DefaultMemoryKib,
                                                    std::uint32_t passes = kArgon2DefaultPasses,
                                                    std::uint32_t lanes = kArgon2DefaultLanes) noexcept {
    return {Kdf::argon2id, passes, memory_kib, lanes};
  }
  /// PBKDF2-HMAC-SHA256 with the given iteration count.
  [[nodiscard]] static constexpr KdfParams pbkdf2(std::uint32_t iterations = kDefaultIterations) noexcept {
    return {Kdf::pbkdf2, iterations, 0, 0};
  }

  /// Errc::config for parameters below today's minimums for a new key (or
  /// above the bounds).
  [[nodiscard]] Result<void> validate() const {
    if (kdf == Kdf::pbkdf2) {
      if (iterations < kMinIterations || iterations > kMaxIterations) {
        return fail(Errc::config, "PBKDF2 needs {}..{} iterations for a new key, got {}", kMinIterations,
                    kMaxIterations, iterations);
      }
      return {};
    }
    if (memory_kib < kArgon2MinMemoryKib || memory_kib > kArgon2MaxMemoryKib) {
      return fail(Errc::config, "Argon2id needs {}..{} KiB of memory for a new key, got {}",
                  kArgon2MinMemoryKib, kArgon2MaxMemoryKib, memory_kib);
    }
    if (iterations < kArgon2MinPasses || iterations > kArgon2MaxPasses) {
      return fail(Errc::config, "Argon2id needs {}..{} passes for a new key, got {}", kArgon2MinPasses,
                  kArgon2MaxPasses, iterations);
    }
    if (lanes < 1 || lanes > kArgon2MaxLanes) {
      return fail(Errc::config, "Argon2id needs 1..{} lanes, got {}", kArgon2MaxLanes, lanes);
    }
    if (memory_kib < 8 * lanes) return fail(Errc::config, "Argon2id needs at least 8 KiB per lane");
    return {};
  }

  friend bool operator==(const KdfParams&, const KdfParams&) = default;
};

/// "argon2id" or "pbkdf2".
[[nodiscard]] constexpr std::string_view to_string(Kdf k) noexcept {
  return k == Kdf::argon2id ? "argon2id" : "pbkdf2";
}

/// A KDF named "argon2id" or "pbkdf2"; Errc::invalid_argument otherwise.
[[nodiscard]] inline Result<Kdf> parse_kdf(std::string_view name) {
  if (name == "argon2id") return Kdf::argon2id;
  if (name == "pbkdf2") return Kdf::pbkdf2;
  return fail(Errc::invalid_argument, "unknown KDF \"{}\" (argon2id or pbkdf2)", name);
}

/// One line for people: "argon2id m=65536 KiB t=3 p=1", "pbkdf2-sha256 600000 iterations".
[[nodiscard]] inline std::string describe(const KdfParams& p) {
  if (p.kdf == Kdf::pbkdf2) return fmt::format("pbkdf2-sha256 {} iterations", p.iterations);
  return fmt::format("argon2id m={} KiB t={} p={}", p.memory_kib, p.iterations, p.lanes);
}

namespace detail {

inline constexpr std::string_view kPbkdf2Name = "pbkdf2-hmac-sha256";
inline constexpr std::string_view kArgon2Prefix = "argon2id$v=19$";

/// The text stored in the vault's `kdf` column: "pbkdf2-hmac-sha256" (the
/// count is in `iterations`) or "argon2id$v=19$m=65536,p=1" (t is in
/// `iterations`).
[[nodiscard]] inline std::string kdf_column(const KdfParams& p) {
  if (p.kdf == Kdf::pbkdf2) return std::string(kPbkdf2Name);
  return fmt::format("{}m={},p={}", kArgon2Prefix, p.memory_kib, p.lanes);
}

[[nodiscard]] inline bool take_u32(std::string_view& s, std::string_view key, std::uint32_t& out) {
  if (!s.starts_with(key)) return false;
  s.remove_prefix(key.size());
  const auto* end = s.data() + s.size();
  const auto r = std::from_chars(s.data(), end, out);
  if (r.ec != std::errc() || r.ptr == s.data() || s.front() == '0') return false;  // no leading zeros
  s.remove_prefix(static_cast<std::size_t>(r.ptr - s.data()));
  return true;
}

/// Reads the `kdf` column and `iterations` back, from an untrusted file:
/// Errc::data_loss for anything this version did not write or that is out
/// of the bounds (see the overview).
[[nodiscard]] inline Result<KdfParams> parse_kdf_column(std::string_view text, std::int64_t iterations) {
  if (iterations < 1) return fail(Errc::data_loss, "damaged vault: {} KDF iterations", iterations);
  if (text == kPbkdf2Name) {
    if (iterations > static_cast<std::int64_t>(kMaxIterations)) {
      return fail(Errc::data_loss, "damaged vault: {} PBKDF2 iterations", iterations);
    }
    return KdfParams::pbkdf2(static_cast<std::uint32_t>(iterations));
  }
  std::string_view s = text;
  KdfParams p = KdfParams::argon2id();
  if (!s.starts_with(kArgon2Prefix)) {
    return fail(Errc::data_loss, "damaged vault: unknown KDF \"{}\"", text.substr(0, 64));
  }
  s.remove_prefix(kArgon2Prefix.size());
  if (!take_u32(s, "m=", p.memory_kib) || !s.starts_with(',')) {
    return fail(Errc::data_loss, "damaged vault: bad Argon2id parameters");
  }
  s.remove_prefix(1);
  if (!take_u32(s, "p=", p.lanes) || !s.empty()) {
    return fail(Errc::data_loss, "damaged vault: bad Argon2id parameters");
  }
  if (iterations > kArgon2MaxPasses || p.memory_kib > kArgon2MaxMemoryKib || p.lanes < 1 ||
      p.lanes > kArgon2MaxLanes || p.memory_kib < 8 * p.lanes) {
    return fail(Errc::data_loss, "damaged vault: Argon2id parameters out of bounds");
  }
  p.iterations = static_cast<std::uint32_t>(iterations);
  return p;
}

}  // namespace detail

/// Derives a 32-byte key from `password` and `salt` with `params`. With
/// KdfPolicy::new_key (the default) the parameters must pass
/// params.validate() (else Errc::config) and the salt be at least 16 bytes
/// (Errc::invalid_argument); with KdfPolicy::existing_data only the upper
/// bounds apply. Errc::resource_exhausted when Argon2id cannot get its memory.
[[nodiscard]] inline Result<SecretKey> derive_vault_key(std::string_view password,
                                                        std::span<const std::uint8_t> salt,
                                                        const KdfParams& params,
                                                        KdfPolicy policy = KdfPolicy::new_key) {
  if (policy == KdfPolicy::new_key) {
    KEEL_TRY(params.validate());
    if (salt.size() < kMinSaltSize) {
      return fail(Errc::invalid_argument, "salt is {} bytes; new keys need at least {} random bytes",
                  salt.size(), kMinSaltSize);
    }
  }
  if (params.kdf == Kdf::pbkdf2) return derive_key(password, salt, params.iterations, policy);
  if (params.iterations < 1 || params.iterations > kArgon2MaxPasses || params.lanes < 1 ||
      params.lanes > kArgon2MaxLanes || params.memory_kib < 8 * params.lanes ||
      params.memory_kib > kArgon2MaxMemoryKib) {
    return fail(Errc::invalid_argument, "Argon2id parameters out of bounds ({})", describe(params));
  }
  if (salt.size() < ARGON2_MIN_SALT_LENGTH) {
    return fail(Errc::invalid_argument, "Argon2id needs a salt of at least {} bytes", ARGON2_MIN_SALT_LENGTH);
  }
  std::array<std::uint8_t, kKeySize> buf{};
  static constexpr char kEmpty = 0;
  const int rc = argon2id_hash_raw(params.iterations, params.memory_kib, params.lanes,
                                   password.empty() ? &kEmpty : password.data(), password.size(), salt.data(),
                                   salt.size(), buf.data(), buf.size());
  if (rc != ARGON2_OK) {
    OPENSSL_cleanse(buf.data(), buf.size());
    return fail(rc == ARGON2_MEMORY_ALLOCATION_ERROR ? Errc::resource_exhausted : Errc::crypto,
                "Argon2id failed: {}", argon2_error_message(rc));
  }
  auto key = SecretKey::from_bytes(buf);
  OPENSSL_cleanse(buf.data(), buf.size());
  return key;
}

}  // namespace keel::crypto
