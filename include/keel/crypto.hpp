// keel/crypto.hpp: AES-256-GCM envelopes, PBKDF2 keys and an encrypted
// credential store (target keel::crypto, on OpenSSL 3 and keel::sqlite).
//
//     namespace kc = keel::crypto;
//     KEEL_TRY_ASSIGN(auto key, kc::SecretKey::random());
//     KEEL_TRY_ASSIGN(auto env, kc::seal(key, kc::as_bytes("s3cret"), kc::as_bytes("db/password")));
//     KEEL_TRY_ASSIGN(auto plain, kc::open(key, env, kc::as_bytes("db/password")));
//     KEEL_TRY_ASSIGN(auto store, kc::CredentialStore::open_or_create(pool, password));
//     KEEL_TRY(store.put("db/password", "s3cret"));
//
// The parts: <keel/crypto/key.hpp> (SecretKey, SecretBytes, random_bytes,
// derive_key), <keel/crypto/aead.hpp> (seal, open; the envelope format) and
// <keel/crypto/store.hpp> (CredentialStore). See docs/crypto.md for the
// threat model, what is and is not protected, and key rotation.
//
// Thread-safety and guarantees: see each part's overview.
#pragma once

#include <keel/crypto/aead.hpp>
#include <keel/crypto/key.hpp>
#include <keel/crypto/store.hpp>
