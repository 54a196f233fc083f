// keel/vault.hpp: an encrypted credential store (keel::crypto::CredentialStore)
// over a keel::sqlite pool (target keel::vault: keel::crypto + keel::sqlite).
//
//     KEEL_TRY_ASSIGN(auto pool, keel::sqlite::Pool::open({.path = "vault.db"}));
//     KEEL_TRY_ASSIGN(auto store, keel::crypto::CredentialStore::open_or_create(pool, password));
//     KEEL_TRY(store.put("db/password", "s3cret"));
//     KEEL_TRY_ASSIGN(auto secret, store.get("db/password"));
//
// See <keel/vault/store.hpp> for the format, thread-safety and guarantees,
// and docs/crypto.md for the threat model.
#pragma once

#include <keel/vault/store.hpp>
