// libFuzzer target: the CredentialStore's decoding of what it reads from a
// database file, which an attacker may have written: the metadata row
// (detail::parse_meta, with the KDF name and parameters, then the key
// check) and a secret's row (detail::open_record). Never a crash; a random
// row never opens.
//
// Input layout (each field: a length byte, then that many bytes):
//   format(8 bytes LE) store_id kdf salt iterations(8 bytes LE) key_check name envelope
#include <keel/crypto.hpp>
#include <keel/vault.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <span>
#include <string>
#include <vector>

namespace {

struct Reader {
  std::span<const std::uint8_t> in;
  std::vector<std::uint8_t> field() {
    if (in.empty()) return {};
    const std::size_t n = std::min<std::size_t>(in[0], in.size() - 1);
    std::vector<std::uint8_t> out(in.begin() + 1, in.begin() + 1 + static_cast<std::ptrdiff_t>(n));
    in = in.subspan(1 + n);
    return out;
  }
  std::int64_t integer() {
    std::int64_t v = 0;
    const auto f = field();
    if (!f.empty()) std::memcpy(&v, f.data(), std::min(f.size(), sizeof v));
    return v;
  }
};

const keel::crypto::SecretKey& fuzz_key() {
  static const keel::crypto::SecretKey key = [] {
    std::vector<std::uint8_t> b(32, 0x17);
    return std::move(keel::crypto::SecretKey::from_bytes(b).value());
  }();
  return key;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace kc = keel::crypto;
  Reader r{std::span<const std::uint8_t>(data, size)};
  kc::detail::RawMeta raw;
  raw.format = r.integer();
  raw.store_id = r.field();
  const auto kdf = r.field();
  raw.kdf.assign(kdf.begin(), kdf.end());
  raw.salt = r.field();
  raw.iterations = r.integer();
  raw.key_check = r.field();
  raw.key_epoch = 1;
  const auto name_bytes = r.field();
  const std::string name(name_bytes.begin(), name_bytes.end());
  const auto envelope = r.field();

  if (auto meta = kc::detail::parse_meta(raw)) {
    // Do not run a huge KDF per input: check the key with the fixed key.
    auto ok = kc::detail::verify_key(fuzz_key(), *meta);
    if (ok) std::abort();  // a forged key check
    auto rec = kc::detail::open_record(fuzz_key(), meta->store_id, name, envelope);
    if (rec) std::abort();  // a forged record
  }
  std::uint8_t id[kc::kStoreIdSize] = {};
  auto rec = kc::detail::open_record(fuzz_key(), id, name, envelope);
  if (rec) std::abort();
  return 0;
}
