// keel/crypto/key.hpp: key material that cleans up after itself, random
// bytes, and password-based key derivation (PBKDF2-HMAC-SHA256).
//
//     auto salt = keel::crypto::random_bytes(16);                 // Result<std::vector<uint8_t>>
//     auto key = keel::crypto::derive_key("hunter2", *salt);      // 600,000 iterations
//     if (!key) return key.error();
//     fmt::print("{}\n", *key);                                   // "SecretKey(***)"
//     auto fresh = keel::crypto::SecretKey::random();             // 32 bytes from the CSPRNG
//
// Thread-safety: all functions may be called from any thread. A SecretKey is
// a value; one object may be read (sealed/opened with) from several threads
// at once, but moving it needs external synchronisation.
//
// Guarantees: a SecretKey or SecretBytes is wiped with OPENSSL_cleanse when
// destroyed and when moved from; it cannot be copied (a compile error), and it
// formats (fmt, ostream, JSON) only as a redacted placeholder. derive_key
// refuses weak parameters for new keys (salt < 16 bytes, < 100,000
// iterations) but opens data made with weaker stored parameters when asked to
// with KdfPolicy::existing_data.
#pragma once

#include <keel/result.hpp>

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <climits>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <ostream>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace keel::crypto {

/// Bytes in an AES-256 key.
inline constexpr std::size_t kKeySize = 32;
/// OWASP's 2023 figure for PBKDF2-HMAC-SHA256, the default for new keys.
inline constexpr std::uint32_t kDefaultIterations = 600'000;
/// The fewest iterations derive_key accepts for a new key.
inline constexpr std::uint32_t kMinIterations = 100'000;
/// The most iterations derive_key accepts at all (a stored count above this is
/// treated as damage or a denial-of-service attempt, not honoured).
inline constexpr std::uint32_t kMaxIterations = 100'000'000;
/// The shortest salt derive_key accepts for a new key.
inline constexpr std::size_t kMinSaltSize = 16;

namespace detail {
/// Keeps keel's OpenSSL errors apart from the caller's. OpenSSL keeps one error
/// queue per thread, shared with whatever else the program does with OpenSSL;
/// a mark is set on construction, message() reads the newest error raised
/// since (not the caller's older ones), and the destructor pops exactly what
/// was added after the mark, leaving the caller's queue as it found it.
class ErrorMark {
 public:
  ErrorMark() noexcept {
    const char* file = nullptr;
    int line = 0;
    before_ = ERR_peek_last_error_all(&file, &line, nullptr, nullptr, nullptr);
    before_file_ = file;
    before_line_ = line;
    // An empty queue (the usual case) needs no mark: whatever is on it at the
    // end is ours to clear.
    if (before_ != 0) marked_ = ERR_set_mark() == 1;
  }
  ErrorMark(const ErrorMark&) = delete;
  ErrorMark& operator=(const ErrorMark&) = delete;
  ~ErrorMark() {
    if (marked_) {
      (void)ERR_pop_to_mark();
    } else if (before_ == 0 && ERR_peek_error() != 0) {
      ERR_clear_error();
    }
  }

  /// The newest error raised since construction, as text.
  [[nodiscard]] std::string message() const {
    const char* file = nullptr;
    int line = 0;
    const unsigned long e = ERR_peek_last_error_all(&file, &line, nullptr, nullptr, nullptr);
    if (e == 0 || (e == before_ && file == before_file_ && line == before_line_)) {
      return "no OpenSSL error detail";
    }
    std::array<char, 256> buf{};
    ERR_error_string_n(e, buf.data(), buf.size());
    return std::string(buf.data());
  }

 private:
  unsigned long before_ = 0;
  const char* before_file_ = nullptr;
  int before_line_ = 0;
  bool marked_ = false;
};
}  // namespace detail

/// `n` bytes from OpenSSL's CSPRNG (RAND_bytes). Errc::crypto if the
/// generator fails (it never returns predictable bytes silently).
[[nodiscard]] inline Result<std::vector<std::uint8_t>> random_bytes(std::size_t n) {
  std::vector<std::uint8_t> out(n);
  const detail::ErrorMark mark;
  std::size_t done = 0;
  while (done < n) {
    const std::size_t chunk = std::min<std::size_t>(n - done, INT_MAX);
    if (RAND_bytes(out.data() + done, static_cast<int>(chunk)) != 1) {
      return fail(Errc::crypto, "RAND_bytes failed: {}", mark.message());
    }
    done += chunk;
  }
  return out;
}

/// Fills `out` from the CSPRNG.
[[nodiscard]] inline Result<void> random_fill(std::span<std::uint8_t> out) {
  const detail::ErrorMark mark;
  std::size_t done = 0;
  while (done < out.size()) {
    const std::size_t chunk = std::min<std::size_t>(out.size() - done, INT_MAX);
    if (RAND_bytes(out.data() + done, static_cast<int>(chunk)) != 1) {
      return fail(Errc::crypto, "RAND_bytes failed: {}", mark.message());
    }
    done += chunk;
  }
  return {};
}

/// A 256-bit key: move-only, wiped on destruction and on move-from, never
/// printed. Read the bytes only through expose_secret(), a name easy to grep
/// for in review.
class SecretKey {
 public:
  /// Errc::invalid_argument unless `bytes` is exactly 32 bytes long.
  [[nodiscard]] static Result<SecretKey> from_bytes(std::span<const std::uint8_t> bytes) {
    if (bytes.size() != kKeySize) {
      return fail(Errc::invalid_argument, "a SecretKey is {} bytes, got {}", kKeySize, bytes.size());
    }
    SecretKey k;
    std::memcpy(k.bytes_.data(), bytes.data(), kKeySize);
    return k;
  }
  /// A fresh key from the CSPRNG.
  [[nodiscard]] static Result<SecretKey> random() {
    SecretKey k;
    const detail::ErrorMark mark;
    if (RAND_priv_bytes(k.bytes_.data(), static_cast<int>(kKeySize)) != 1) {
      return fail(Errc::crypto, "RAND_priv_bytes failed: {}", mark.message());
    }
    return k;
  }

  SecretKey(const SecretKey&) = delete;
  SecretKey& operator=(const SecretKey&) = delete;
  SecretKey(SecretKey&& other) noexcept
      : bytes_(other.bytes_), seals_(other.seals_.load(std::memory_order_relaxed)) {
    other.wipe();
  }
  SecretKey& operator=(SecretKey&& other) noexcept {
    if (this != &other) {
      bytes_ = other.bytes_;
      // relaxed: the counter is a statistic; moving needs external sync anyway.
      seals_.store(other.seals_.load(std::memory_order_relaxed), std::memory_order_relaxed);
      other.wipe();
    }
    return *this;
  }
  ~SecretKey() { OPENSSL_cleanse(bytes_.data(), bytes_.size()); }

  /// The raw key bytes. Do not log, print or store them unencrypted.
  [[nodiscard]] std::span<const std::uint8_t, kKeySize> expose_secret() const noexcept { return bytes_; }

  /// How many envelopes were sealed with this key object (for the 2^32
  /// random-nonce limit of AES-GCM; see docs/crypto.md).
  [[nodiscard]] std::uint64_t seal_count() const noexcept {
    // relaxed: a statistic; no other memory is published through it.
    return seals_.load(std::memory_order_relaxed);
  }
  /// Counts one seal and returns the new total (used by seal()).
  std::uint64_t count_seal() const noexcept {
    // relaxed: only atomicity of the increment matters.
    return seals_.fetch_add(1, std::memory_order_relaxed) + 1;
  }

  /// Constant-time comparison.
  friend bool operator==(const SecretKey& a, const SecretKey& b) noexcept {
    return CRYPTO_memcmp(a.bytes_.data(), b.bytes_.data(), kKeySize) == 0;
  }

  friend std::ostream& operator<<(std::ostream& os, const SecretKey& /*unused*/) {
    return os << "SecretKey(***)";
  }

 private:
  SecretKey() = default;
  void wipe() noexcept {
    OPENSSL_cleanse(bytes_.data(), bytes_.size());
    // relaxed: see seal_count().
    seals_.store(0, std::memory_order_relaxed);
  }

  std::array<std::uint8_t, kKeySize> bytes_{};
  mutable std::atomic<std::uint64_t> seals_{0};
};

/// nlohmann::json (found by ADL, no dependency here): a SecretKey serialises
/// only as the redacted placeholder.
template <class BasicJson>
void to_json(BasicJson& j, const SecretKey& /*unused*/) {
  j = "SecretKey(***)";
}

/// A byte string that is wiped on destruction: what CredentialStore::get
/// returns. Move-only; redacted when printed.
class SecretBytes {
 public:
  SecretBytes() = default;
  /// Takes ownership of `bytes` without copying them.
  explicit SecretBytes(std::vector<std::uint8_t>&& bytes) noexcept : bytes_(std::move(bytes)) {}
  SecretBytes(const SecretBytes&) = delete;
  SecretBytes& operator=(const SecretBytes&) = delete;
  SecretBytes(SecretBytes&& other) noexcept : bytes_(std::move(other.bytes_)) { other.bytes_.clear(); }
  SecretBytes& operator=(SecretBytes&& other) noexcept {
    if (this != &other) {
      wipe();
      bytes_ = std::move(other.bytes_);
      other.bytes_.clear();
    }
    return *this;
  }
  ~SecretBytes() { wipe(); }

  /// An empty buffer that holds up to `capacity` bytes and never reallocates
  /// (a growing buffer would leave partial copies behind in freed memory):
  /// fill it with try_append / try_push_back. Errc::resource_exhausted if the
  /// memory cannot be had.
  [[nodiscard]] static Result<SecretBytes> with_capacity(std::size_t capacity) {
    SecretBytes s;
#if KEEL_HAS_EXCEPTIONS
    try {
      s.bytes_.reserve(capacity);
    } catch (const std::exception&) {
      return fail(Errc::resource_exhausted, "cannot reserve {} bytes for a secret", capacity);
    }
#else
    s.bytes_.reserve(capacity);
#endif
    return s;
  }
  /// Bytes this buffer holds without reallocating.
  [[nodiscard]] std::size_t capacity() const noexcept {
    return bytes_.capacity();
  }
  /// Appends `b` if it fits in capacity(); false (and nothing appended) if not.
  [[nodiscard]] bool try_append(std::span<const std::uint8_t> b) noexcept {
    if (b.size() > bytes_.capacity() - bytes_.size()) return false;
    bytes_.insert(bytes_.end(), b.begin(), b.end());  // within capacity: no allocation
    return true;
  }
  /// Appends one byte if it fits in capacity().
  [[nodiscard]] bool try_push_back(std::uint8_t b) noexcept {
    if (bytes_.size() == bytes_.capacity()) return false;
    bytes_.push_back(b);
    return true;
  }
  /// Removes the last byte (wiped). Precondition: not empty.
  void pop_back() noexcept {
    bytes_.back() = 0;
    bytes_.pop_back();
  }
  /// Wipes the bytes and empties the buffer; the capacity stays.
  void clear() noexcept {
    wipe();
  }

  [[nodiscard]] std::span<const std::uint8_t> expose_secret() const noexcept {
    return bytes_;
  }
  /// The bytes as text (no copy).
  [[nodiscard]] std::string_view view() const noexcept {
    return {reinterpret_cast<const char*>(bytes_.data()), bytes_.size()};
  }
  [[nodiscard]] std::size_t size() const noexcept {
    return bytes_.size();
  }
  [[nodiscard]] bool empty() const noexcept {
    return bytes_.empty();
  }

  friend bool operator==(const SecretBytes& a, const SecretBytes& b) noexcept {
    return a.bytes_.size() == b.bytes_.size() &&
           (a.bytes_.empty() || CRYPTO_memcmp(a.bytes_.data(), b.bytes_.data(), a.bytes_.size()) == 0);
  }
  friend std::ostream& operator<<(std::ostream& os, const SecretBytes& s) {
    return os << "SecretBytes(" << s.size() << " bytes, ***)";
  }

 private:
  void wipe() noexcept {
    if (!bytes_.empty()) OPENSSL_cleanse(bytes_.data(), bytes_.size());
    bytes_.clear();
  }
  std::vector<std::uint8_t> bytes_;
};

template <class BasicJson>
void to_json(BasicJson& j, const SecretBytes& /*unused*/) {
  j = "SecretBytes(***)";
}

/// Raw PBKDF2-HMAC-SHA256 into `out` (any length), with no policy on salt or
/// iteration count beyond 1 <= iterations <= kMaxIterations: for
/// interoperability and known-answer tests. New keys should use derive_key.
[[nodiscard]] inline Result<void> pbkdf2_hmac_sha256(std::string_view password,
                                                     std::span<const std::uint8_t> salt,
                                                     std::uint32_t iterations, std::span<std::uint8_t> out) {
  if (iterations < 1 || iterations > kMaxIterations) {
    return fail(Errc::invalid_argument, "PBKDF2 iteration count {} outside 1..{}", iterations,
                kMaxIterations);
  }
  if (out.empty() || out.size() > INT_MAX || password.size() > INT_MAX || salt.size() > INT_MAX) {
    return fail(Errc::invalid_argument, "PBKDF2 lengths out of range");
  }
  // A null pointer with length 0 is not accepted by every OpenSSL version.
  static constexpr char kEmpty = 0;
  static constexpr std::uint8_t kEmptySalt = 0;
  const char* pw = password.empty() ? &kEmpty : password.data();
  const std::uint8_t* s = salt.empty() ? &kEmptySalt : salt.data();
  const detail::ErrorMark mark;
  if (PKCS5_PBKDF2_HMAC(pw, static_cast<int>(password.size()), s, static_cast<int>(salt.size()),
                        static_cast<int>(iterations), EVP_sha256(), static_cast<int>(out.size()),
                        out.data()) != 1) {
    return fail(Errc::crypto, "PKCS5_PBKDF2_HMAC failed: {}", mark.message());
  }
  return {};
}

/// Whether derive_key enforces today's minimums (new keys) or accepts the
/// parameters stored with existing data (still bounded by kMaxIterations).
enum class KdfPolicy : std::uint8_t { new_key, existing_data };

/// PBKDF2-HMAC-SHA256 of `password` and `salt` into a 32-byte SecretKey.
/// With KdfPolicy::new_key (the default): Errc::invalid_argument for a salt
/// under 16 bytes or fewer than 100,000 iterations.
[[nodiscard]] inline Result<SecretKey> derive_key(std::string_view password,
                                                  std::span<const std::uint8_t> salt,
                                                  std::uint32_t iterations = kDefaultIterations,
                                                  KdfPolicy policy = KdfPolicy::new_key) {
  if (policy == KdfPolicy::new_key) {
    if (salt.size() < kMinSaltSize) {
      return fail(Errc::invalid_argument, "salt is {} bytes; new keys need at least {} random bytes",
                  salt.size(), kMinSaltSize);
    }
    if (iterations < kMinIterations) {
      return fail(Errc::invalid_argument,
                  "{} PBKDF2 iterations is too few for a new key (minimum {}, default {})", iterations,
                  kMinIterations, kDefaultIterations);
    }
  }
  std::array<std::uint8_t, kKeySize> buf{};
  auto r = pbkdf2_hmac_sha256(password, salt, iterations, buf);
  if (!r) {
    OPENSSL_cleanse(buf.data(), buf.size());
    return std::move(r).error();
  }
  auto key = SecretKey::from_bytes(buf);
  OPENSSL_cleanse(buf.data(), buf.size());
  return key;
}

}  // namespace keel::crypto

template <>
struct fmt::formatter<keel::crypto::SecretKey> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const keel::crypto::SecretKey& /*unused*/, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::formatter<std::string_view>::format("SecretKey(***)", ctx);
  }
};

template <>
struct fmt::formatter<keel::crypto::SecretBytes> : fmt::formatter<std::string_view> {
  template <class FormatContext>
  auto format(const keel::crypto::SecretBytes& s, FormatContext& ctx) const -> decltype(ctx.out()) {
    return fmt::format_to(ctx.out(), "SecretBytes({} bytes, ***)", s.size());
  }
};
