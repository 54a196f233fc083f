// keel/crypto/store.hpp: moved. CredentialStore is now in <keel/vault.hpp>
// (target keel::vault). This forwarding header stays for one release.
#pragma once
#pragma message("<keel/crypto/store.hpp> is deprecated: include <keel/vault.hpp> (target keel::vault)")

#include <keel/vault.hpp>
