// keel/crypto.hpp: AES-256-GCM envelopes and PBKDF2 keys (target
// keel::crypto, on OpenSSL 3 only). The encrypted credential store built on
// them is <keel/vault.hpp> (target keel::vault).
//
//     namespace kc = keel::crypto;
//     KEEL_TRY_ASSIGN(auto key, kc::SecretKey::random());
//     KEEL_TRY_ASSIGN(auto env, kc::seal(key, kc::as_bytes("s3cret"), kc::as_bytes("db/password")));
//     KEEL_TRY_ASSIGN(auto plain, kc::open(key, env, kc::as_bytes("db/password")));
//
// The parts: <keel/crypto/key.hpp> (SecretKey, SecretBytes, random_bytes,
// derive_key) and <keel/crypto/aead.hpp> (seal, open; the envelope format).
// See docs/crypto.md for the threat model, what is and is not protected,
// and key rotation.
//
// Thread-safety and guarantees: see each part's overview.
#pragma once

#include <keel/crypto/aead.hpp>
#include <keel/crypto/key.hpp>
