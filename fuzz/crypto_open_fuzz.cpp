// libFuzzer target: keel::crypto::open on arbitrary envelopes and aad.
// Input: [aad length byte][aad][envelope]. Property: never crashes, never
// reads out of bounds, and only an envelope that authenticates opens (for a
// random input that means: it fails with auth_failed or invalid_argument).
// Also seals the input and checks the round trip.
#include <keel/crypto.hpp>

#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <span>
#include <vector>

namespace {
const keel::crypto::SecretKey& fuzz_key() {
  static const keel::crypto::SecretKey key = [] {
    std::vector<std::uint8_t> b(32, 0x5c);
    return std::move(keel::crypto::SecretKey::from_bytes(b).value());
  }();
  return key;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  namespace kc = keel::crypto;
  const std::span<const std::uint8_t> in(data, size);
  const std::size_t aad_len = in.empty() ? 0 : std::min<std::size_t>(in[0], in.size() - 1);
  const auto aad = in.empty() ? in : in.subspan(1, aad_len);
  const auto envelope = in.empty() ? in : in.subspan(1 + aad_len);

  auto r = kc::open(fuzz_key(), envelope, aad);
  if (r) {
    // Only possible if the fuzzer forged a GCM tag: a real bug.
    std::abort();
  }
  if (r.error().code() != keel::Errc::auth_failed && r.error().code() != keel::Errc::invalid_argument)
    std::abort();

  // Round trip: whatever we seal opens to itself.
  auto env = kc::seal(fuzz_key(), envelope, aad);
  if (!env) std::abort();
  auto back = kc::open(fuzz_key(), *env, aad);
  if (!back || !std::equal(back->begin(), back->end(), envelope.begin(), envelope.end())) std::abort();
  return 0;
}
