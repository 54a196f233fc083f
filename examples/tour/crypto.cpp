// The crypto section of keel-tour: AES-256-GCM envelopes that refuse any
// tampering, and an encrypted credential store with a wrong-password check
// and key rotation.
#include <keel/crypto.hpp>
#include <keel/sqlite.hpp>
#include <keel/vault.hpp>

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <string>

#include "tour.hpp"

namespace kc = keel::crypto;

bool tour::crypto() {
  auto key = kc::SecretKey::random();
  if (!key) return false;
  fmt::print("a key prints redacted: {}\n", *key);

  auto env = kc::seal(*key, kc::as_bytes("launch code 0000"), kc::as_bytes("silo-7"));
  if (!env) return false;
  fmt::print("seal(16 bytes, aad \"silo-7\") -> {}-byte envelope (0x{:02x} | nonce | ciphertext | tag)\n",
             env->size(), (*env)[0]);
  auto back = kc::open(*key, *env, kc::as_bytes("silo-7"));
  if (!back) return false;
  fmt::print("open with the same aad -> \"{}\"\n", std::string(back->begin(), back->end()));
  auto other_aad = kc::open(*key, *env, kc::as_bytes("silo-8"));
  (*env)[20] ^= 0x01;
  auto flipped = kc::open(*key, *env, kc::as_bytes("silo-7"));
  if (other_aad || flipped) return false;
  fmt::print("open with aad \"silo-8\" -> {}\n", other_aad.error());
  fmt::print("open after one flipped bit -> {}\n", flipped.error());

  // A credential store in an in-memory database (a file path in real use).
  keel::sqlite::PoolConfig pc;
  pc.path = ":memory:";
  auto pool = keel::sqlite::Pool::open(pc);
  if (!pool) {
    fmt::print("opening the pool: {}\n", pool.error());
    return false;
  }
  kc::StoreConfig cfg;
  // Argon2id at its least cost, quick for the tour (the default: 64 MiB, t=3).
  cfg.kdf = kc::KdfParams::argon2id(kc::kArgon2MinMemoryKib, kc::kArgon2MinPasses);
  auto store = kc::CredentialStore::create(*pool, "tour password", cfg);
  if (!store) {
    fmt::print("creating the store: {}\n", store.error());
    return false;
  }
  if (!store->put("db/password", "s3cret") || !store->put("api/token", "t0ken")) return false;
  auto names = store->list();
  if (!names) return false;
  fmt::print("store holds: {}\n", fmt::join(*names, ", "));
  auto wrong = kc::CredentialStore::open(*pool, "not the password", cfg);
  if (wrong) return false;
  fmt::print("open with a wrong password -> {}\n", wrong.error());
  if (!store->rotate("new tour password")) return false;
  auto reopened = kc::CredentialStore::open(*pool, "new tour password", cfg);
  if (!reopened) return false;
  auto secret = reopened->get("db/password");
  if (!secret || secret->view() != "s3cret") return false;
  fmt::print("after rotate, the new password opens it: db/password = {} ({} bytes)\n", *secret,
             secret->size());
  return true;
}
