// keel/vault/config.hpp: keel::crypto::StoreConfig, what a CredentialStore
// is created, opened and rotated with (the KDF and its cost, the seal-count
// warning, progress and logging hooks).
//
//     keel::crypto::StoreConfig cfg;                        // Argon2id, 64 MiB, t=3, p=1
//     cfg.kdf = keel::crypto::KdfParams::pbkdf2();          // for FIPS
//     if (auto ok = cfg.validate(); !ok) return ok.error(); // Errc::config
//
// Part of <keel/vault.hpp>; a plain struct, safe to copy between threads.
#pragma once

#include <keel/crypto/aead.hpp>
#include <keel/logger.hpp>
#include <keel/result.hpp>
#include <keel/vault/kdf.hpp>

#include <cstddef>
#include <cstdint>
#include <functional>

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

}  // namespace keel::crypto
