// Copying a keel::crypto::SecretKey must not compile: a key has one owner,
// and every copy is another place the secret has to be wiped from.
#include <keel/crypto.hpp>

#include <cstdint>
#include <utility>
#include <vector>

int use() {
  const std::vector<std::uint8_t> bytes(32, 1);
  auto key = keel::crypto::SecretKey::from_bytes(bytes);
  if (!key) return 1;
#if KEEL_MISUSE
  keel::crypto::SecretKey copy = *key;  // misuse: copy constructor is deleted
#else
  keel::crypto::SecretKey copy = std::move(*key);  // moving is fine (and wipes the source)
#endif
  return copy.expose_secret()[0];
}
