// keel/crypto/aead.hpp: AES-256-GCM envelopes, `seal` and `open`.
//
//     auto key = keel::crypto::SecretKey::random();
//     auto env = keel::crypto::seal(*key, keel::crypto::as_bytes("attack at dawn"),
//                                   keel::crypto::as_bytes("msg-42"));   // aad: the context
//     auto back = keel::crypto::open(*key, *env, keel::crypto::as_bytes("msg-42"));
//     // any other aad, key or a single changed bit: Errc::auth_failed, no plaintext
//
// The envelope is `0x01 | nonce (12 bytes, random) | ciphertext | tag (16
// bytes)`: 29 bytes of overhead, the ciphertext as long as the plaintext.
// The AAD is authenticated but not stored: open must be given the same one.
//
// Thread-safety: seal and open may be called from any number of threads at
// once, with the same key or different ones. Each thread keeps its own
// fetched EVP_CIPHER and EVP_CIPHER_CTX (made on first use, freed at thread
// exit) and its own batch of random nonces (refilled from RAND_bytes every 64
// seals, and discarded in a child process after fork(), so a parent and
// child never draw the same nonce).
//
// Guarantees: open never returns plaintext unless the tag verifies; anything
// malformed (short, unknown version) gives Errc::invalid_argument, anything
// that fails authentication (tampered, truncated past the header, wrong key,
// wrong aad) gives Errc::auth_failed, and neither crashes or reads out of
// bounds. Nonces are random, so one key should seal fewer than 2^32
// envelopes (NIST SP 800-38D); SecretKey counts its seals and keel warns
// through keel::default_logger() at 2^30.
#pragma once

#include <keel/crypto/key.hpp>
#include <keel/logger.hpp>
#include <keel/result.hpp>

#include <openssl/evp.h>
#include <pthread.h>

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string_view>
#include <vector>

namespace keel::crypto {

/// The first byte of every envelope this version writes.
inline constexpr std::uint8_t kEnvelopeVersion = 0x01;
/// AES-GCM nonce (IV) bytes.
inline constexpr std::size_t kNonceSize = 12;
/// AES-GCM tag bytes.
inline constexpr std::size_t kTagSize = 16;
/// Envelope bytes beyond the plaintext: version, nonce, tag.
inline constexpr std::size_t kEnvelopeOverhead = 1 + kNonceSize + kTagSize;
/// seal() logs a warning when a SecretKey reaches this many seals: with random
/// 96-bit nonces one key must stay well under 2^32 envelopes.
inline constexpr std::uint64_t kSealWarnThreshold = std::uint64_t{1} << 30U;

/// A string's bytes as the span seal/open take (no copy).
[[nodiscard]] inline std::span<const std::uint8_t> as_bytes(std::string_view s) noexcept {
  return {reinterpret_cast<const std::uint8_t*>(s.data()), s.size()};
}

namespace detail {

// EVP takes int lengths; feed longer inputs in pieces of this size.
inline constexpr std::size_t kEvpChunk = std::size_t{1} << 30U;

/// The per-thread cipher and context. Made on first use in each thread.
struct ThreadCipher {
  EVP_CIPHER* cipher = nullptr;
  EVP_CIPHER_CTX* ctx = nullptr;
  ThreadCipher() = default;
  ThreadCipher(const ThreadCipher&) = delete;
  ThreadCipher& operator=(const ThreadCipher&) = delete;
  ~ThreadCipher() { reset(); }
  void reset() noexcept {
    EVP_CIPHER_CTX_free(ctx);  // the GCM provider context is cleansed on free
    EVP_CIPHER_free(cipher);
    ctx = nullptr;
    cipher = nullptr;
  }
};

inline ThreadCipher& thread_cipher_slot() {
  thread_local ThreadCipher tc;
  return tc;
}

[[nodiscard]] inline Result<EVP_CIPHER_CTX*> thread_ctx() {
  ThreadCipher& tc = thread_cipher_slot();
  if (tc.ctx != nullptr) return tc.ctx;
  const ErrorMark mark;
  tc.cipher = EVP_CIPHER_fetch(nullptr, "AES-256-GCM", nullptr);
  if (tc.cipher == nullptr) return fail(Errc::crypto, "fetching AES-256-GCM: {}", mark.message());
  tc.ctx = EVP_CIPHER_CTX_new();
  if (tc.ctx == nullptr) {
    tc.reset();
    return fail(Errc::resource_exhausted, "EVP_CIPHER_CTX_new failed");
  }
  // Bind the cipher once; later calls pass only key and nonce, which keeps
  // the provider context (no allocation per call).
  if (EVP_CipherInit_ex2(tc.ctx, tc.cipher, nullptr, nullptr, 1, nullptr) != 1) {
    auto msg = mark.message();
    tc.reset();
    return fail(Errc::crypto, "EVP_CipherInit_ex2: {}", msg);
  }
  return tc.ctx;
}

/// Bumped in the child after fork(): every thread-local nonce batch made
/// before it is stale there.
inline std::atomic<std::uint64_t>& fork_generation() noexcept {
  static std::atomic<std::uint64_t> gen{0};
  return gen;
}
inline void on_fork_child() noexcept {
  // relaxed: the child runs single-threaded right after fork; the same thread
  // reads it next.
  fork_generation().fetch_add(1, std::memory_order_relaxed);
}

inline constexpr std::size_t kNonceBatch = 64;

struct NonceBatch {
  std::array<std::uint8_t, kNonceSize * kNonceBatch> bytes{};
  std::size_t next = kNonceBatch;  // empty
  std::uint64_t generation = 0;
};

/// The next random nonce from this thread's batch.
[[nodiscard]] inline Result<void> next_nonce(std::uint8_t* out) {
  [[maybe_unused]] static const int registered = pthread_atfork(nullptr, nullptr, &on_fork_child);
  thread_local NonceBatch batch;
  // relaxed: see on_fork_child.
  const std::uint64_t gen = fork_generation().load(std::memory_order_relaxed);
  if (batch.next == kNonceBatch || batch.generation != gen) {
    const ErrorMark mark;
    if (RAND_bytes(batch.bytes.data(), static_cast<int>(batch.bytes.size())) != 1) {
      batch.next = kNonceBatch;
      return fail(Errc::crypto, "RAND_bytes failed: {}", mark.message());
    }
    batch.next = 0;
    batch.generation = gen;
  }
  std::memcpy(out, batch.bytes.data() + batch.next * kNonceSize, kNonceSize);
  // Never hand the same nonce out twice, even if a later refill fails.
  std::memset(batch.bytes.data() + batch.next * kNonceSize, 0, kNonceSize);
  ++batch.next;
  return {};
}

[[nodiscard]] inline bool feed_aad(EVP_CIPHER_CTX* ctx, std::span<const std::uint8_t> aad) noexcept {
  for (std::size_t off = 0; off < aad.size(); off += kEvpChunk) {
    const std::size_t n = std::min(kEvpChunk, aad.size() - off);
    int outl = 0;
    if (EVP_CipherUpdate(ctx, nullptr, &outl, aad.data() + off, static_cast<int>(n)) != 1) return false;
  }
  return true;
}

[[nodiscard]] inline bool feed_data(EVP_CIPHER_CTX* ctx, const std::uint8_t* in, std::size_t len,
                                    std::uint8_t* out) noexcept {
  for (std::size_t off = 0; off < len; off += kEvpChunk) {
    const std::size_t n = std::min(kEvpChunk, len - off);
    int outl = 0;
    if (EVP_CipherUpdate(ctx, out + off, &outl, in + off, static_cast<int>(n)) != 1) return false;
    if (static_cast<std::size_t>(outl) != n) return false;  // GCM is a stream mode
  }
  return true;
}

}  // namespace detail

/// seal() into a caller-owned buffer: `out` is resized to the envelope (its
/// capacity is reused, so a loop that keeps one buffer allocates nothing per
/// call). `out` must not overlap the inputs. On error `out` is left empty.
[[nodiscard]] inline Result<void> seal_into(const SecretKey& key, std::span<const std::uint8_t> plaintext,
                                            std::span<const std::uint8_t> aad,
                                            std::vector<std::uint8_t>& out) {
  out.clear();
  KEEL_TRY_ASSIGN(EVP_CIPHER_CTX * ctx, detail::thread_ctx());
  out.resize(kEnvelopeOverhead + plaintext.size());
  std::uint8_t* nonce = out.data() + 1;
  std::uint8_t* body = nonce + kNonceSize;
  std::uint8_t* tag = body + plaintext.size();
  out[0] = kEnvelopeVersion;
  if (auto n = detail::next_nonce(nonce); !n) {
    out.clear();
    return std::move(n).error();
  }
  int outl = 0;
  const detail::ErrorMark mark;
  if (EVP_CipherInit_ex2(ctx, nullptr, key.expose_secret().data(), nonce, 1, nullptr) != 1 ||
      !detail::feed_aad(ctx, aad) || !detail::feed_data(ctx, plaintext.data(), plaintext.size(), body) ||
      EVP_CipherFinal_ex(ctx, tag, &outl) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_GET_TAG, static_cast<int>(kTagSize), tag) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    out.clear();
    return fail(Errc::crypto, "AES-256-GCM seal failed: {}", mark.message());
  }
  if (key.count_seal() == kSealWarnThreshold) {
    keel::default_logger().warn(
        "keel::crypto: a key has sealed {} envelopes; rotate it well before 2^32 (random-nonce limit)",
        kSealWarnThreshold);
  }
  return {};
}

/// Encrypts and authenticates `plaintext`, binding `aad` (authenticated, not
/// stored), under a fresh random nonce. Returns the envelope
/// `0x01 | nonce | ciphertext | tag`.
[[nodiscard]] inline Result<std::vector<std::uint8_t>> seal(const SecretKey& key,
                                                            std::span<const std::uint8_t> plaintext,
                                                            std::span<const std::uint8_t> aad = {}) {
  std::vector<std::uint8_t> out;
  KEEL_TRY(seal_into(key, plaintext, aad, out));
  return out;
}

/// open() into a caller-owned buffer: `out` is resized to the plaintext (its
/// capacity is reused). `out` must not overlap the inputs. On any error `out`
/// is wiped and left empty: it never holds unauthenticated plaintext.
[[nodiscard]] inline Result<void> open_into(const SecretKey& key, std::span<const std::uint8_t> envelope,
                                            std::span<const std::uint8_t> aad,
                                            std::vector<std::uint8_t>& out) {
  // The caller's buffer may hold an earlier plaintext: wipe it before it is
  // shrunk, overwritten or (when too small) freed.
  OPENSSL_cleanse(out.data(), out.size());
  out.clear();
  if (envelope.size() < kEnvelopeOverhead) {
    return fail(Errc::invalid_argument, "envelope is {} bytes, shorter than the {}-byte minimum",
                envelope.size(), kEnvelopeOverhead);
  }
  if (envelope[0] != kEnvelopeVersion) {
    return fail(Errc::invalid_argument, "unknown envelope version 0x{:02x}", envelope[0]);
  }
  KEEL_TRY_ASSIGN(EVP_CIPHER_CTX * ctx, detail::thread_ctx());
  const std::size_t len = envelope.size() - kEnvelopeOverhead;
  const std::uint8_t* nonce = envelope.data() + 1;
  const std::uint8_t* body = nonce + kNonceSize;
  std::array<std::uint8_t, kTagSize> tag{};
  std::memcpy(tag.data(), body + len, kTagSize);
  if (out.capacity() < len) std::vector<std::uint8_t>().swap(out);  // already wiped; freed, not copied
  out.resize(len);
  int outl = 0;
  std::array<std::uint8_t, 16> final_block{};
  const detail::ErrorMark mark;
  if (EVP_CipherInit_ex2(ctx, nullptr, key.expose_secret().data(), nonce, 0, nullptr) != 1 ||
      !detail::feed_aad(ctx, aad) || !detail::feed_data(ctx, body, len, out.data()) ||
      EVP_CIPHER_CTX_ctrl(ctx, EVP_CTRL_AEAD_SET_TAG, static_cast<int>(kTagSize), tag.data()) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    out.clear();
    return fail(Errc::crypto, "AES-256-GCM open failed: {}", mark.message());
  }
  if (EVP_CipherFinal_ex(ctx, final_block.data(), &outl) != 1) {
    OPENSSL_cleanse(out.data(), out.size());
    out.clear();
    return fail(Errc::auth_failed,
                "envelope failed authentication (wrong key, wrong context or damaged data)");
  }
  return {};
}

/// Verifies and decrypts an envelope made by seal() with the same key and aad.
/// Errc::invalid_argument for an envelope shorter than 29 bytes or of an
/// unknown version; Errc::auth_failed when authentication fails (wrong key,
/// wrong aad, any modified byte). Never returns unauthenticated plaintext.
[[nodiscard]] inline Result<std::vector<std::uint8_t>> open(const SecretKey& key,
                                                            std::span<const std::uint8_t> envelope,
                                                            std::span<const std::uint8_t> aad = {}) {
  std::vector<std::uint8_t> out;
  KEEL_TRY(open_into(key, envelope, aad, out));
  return out;
}

/// Frees this thread's cached cipher context (which holds the expanded key
/// of the last seal/open) now rather than at thread exit. The next seal or
/// open makes a new one.
inline void clear_thread_cache() noexcept {
  detail::thread_cipher_slot().reset();
}

}  // namespace keel::crypto
