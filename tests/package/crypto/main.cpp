// A user of keel::crypto alone: seal and open, no SQLite anywhere.
#include <keel/crypto.hpp>

#include <fmt/format.h>

#include <string_view>

int main() {
  namespace kc = keel::crypto;
  auto key = kc::SecretKey::random();
  if (!key) return 1;
  auto env = kc::seal(*key, kc::as_bytes("s3cret"), kc::as_bytes("db/password"));
  if (!env) return 1;
  auto plain = kc::open(*key, *env, kc::as_bytes("db/password"));
  if (!plain || std::string_view(reinterpret_cast<const char*>(plain->data()), plain->size()) != "s3cret")
    return 1;
  if (kc::open(*key, *env, kc::as_bytes("other"))) return 1;  // wrong aad must fail
  fmt::print("keel crypto consumer: {} byte envelope\n", env->size());
  return 0;
}
