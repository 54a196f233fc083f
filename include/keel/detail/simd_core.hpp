// keel/detail/simd_core.hpp: the portable half of <keel/simd.hpp>.
//
// Not part of the API except for the names re-exported by <keel/simd.hpp>
// (npos, Isa, ByteSet). Holds the word-at-a-time (SWAR) scalar kernels used
// when no SIMD level is available or KEEL_SIMD=scalar, the Two-Way substring
// search every level falls back to, the rare-byte heuristic of the substring
// prefilter, and the table of kernels the dispatcher picks from.
#pragma once

#include <algorithm>
#include <bit>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace keel::simd {

/// Returned by every search when nothing matches.
inline constexpr std::size_t npos = static_cast<std::size_t>(-1);

/// The instruction-set levels keel::simd can run its kernels on: scalar, then
/// the x86-64 levels lowest first, and neon on aarch64 (the only level there
/// besides scalar).
enum class Isa : unsigned char { scalar = 0, sse2 = 1, avx2 = 2, avx512 = 3, neon = 4 };

/// "scalar", "sse2", "avx2", "avx512" or "neon".
[[nodiscard]] constexpr std::string_view to_string(Isa isa) noexcept {
  switch (isa) {
    case Isa::neon:
      return "neon";
    case Isa::sse2:
      return "sse2";
    case Isa::avx2:
      return "avx2";
    case Isa::avx512:
      return "avx512";
    case Isa::scalar:
      break;
  }
  return "scalar";
}

namespace detail {
struct ByteSetAccess;
}

/// A set of bytes for find_first_of. Build it once and reuse it when the same
/// set is searched for many times (the string_view overload builds one per
/// call). Any number of bytes works; up to 16 distinct bytes is the case every
/// SIMD level handles without a table walk, and AVX2/AVX-512 handle any size.
class ByteSet {
 public:
  constexpr ByteSet() noexcept = default;
  constexpr explicit ByteSet(std::string_view bytes) noexcept {
    for (char c : bytes) insert(static_cast<unsigned char>(c));
  }

  /// Adds a byte (no effect when already present).
  constexpr void insert(unsigned char b) noexcept {
    if (contains(b)) return;
    bits_[b >> 6] |= std::uint64_t{1} << (b & 63u);
    const unsigned lo = b & 15u;
    const unsigned hi = static_cast<unsigned>(b >> 4);
    if (hi < 8) {
      low_half_[lo] = static_cast<unsigned char>(low_half_[lo] | (1u << hi));
    } else {
      high_half_[lo] = static_cast<unsigned char>(high_half_[lo] | (1u << (hi - 8)));
    }
    if (size_ < kListMax) list_[size_] = b;
    ++size_;
  }
  [[nodiscard]] constexpr bool contains(unsigned char b) const noexcept {
    return ((bits_[b >> 6] >> (b & 63u)) & 1u) != 0;
  }
  /// Number of distinct bytes.
  [[nodiscard]] constexpr std::size_t size() const noexcept { return size_; }
  [[nodiscard]] constexpr bool empty() const noexcept { return size_ == 0; }

 private:
  friend struct detail::ByteSetAccess;
  static constexpr std::size_t kListMax = 16;
  std::uint64_t bits_[4] = {0, 0, 0, 0};
  // Nibble tables for the PSHUFB lookup: bit h of low_half_[lo] says byte
  // (h << 4 | lo) is in the set for h < 8; high_half_ does the same for h >= 8.
  unsigned char low_half_[16] = {};
  unsigned char high_half_[16] = {};
  unsigned char list_[kListMax] = {};  // the first 16 distinct bytes, in insertion order
  std::size_t size_ = 0;
};

namespace detail {

using uchar = unsigned char;

struct ByteSetAccess {
  static const uchar* low_half(const ByteSet& s) noexcept { return s.low_half_; }
  static const uchar* high_half(const ByteSet& s) noexcept { return s.high_half_; }
  static const uchar* list(const ByteSet& s) noexcept { return s.list_; }
  static constexpr std::size_t list_max() noexcept { return ByteSet::kListMax; }
};

// 1 << (nibble & 7) for the second shuffle of the set lookup.
alignas(16) inline constexpr uchar kBitOfNibble[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                                       1, 2, 4, 8, 16, 32, 64, 128};

/// A run of up to 64 match bits: bit i stands for position base + i.
struct MatchBlock {
  std::size_t base;
  std::uint64_t mask;
};

struct TeddyTables;

/// The kernels of one ISA level. Kernels get haystacks of any length.
struct Kernels {
  Isa isa;
  std::size_t (*find)(const uchar* p, std::size_t n, uchar c);
  std::size_t (*rfind)(const uchar* p, std::size_t n, uchar c);
  std::size_t (*find_any2)(const uchar* p, std::size_t n, uchar a, uchar b);
  std::size_t (*find_any3)(const uchar* p, std::size_t n, uchar a, uchar b, uchar c);
  std::size_t (*find_set)(const uchar* p, std::size_t n, const ByteSet& set);
  std::size_t (*count)(const uchar* p, std::size_t n, uchar c);
  std::size_t (*find_sub)(const uchar* p, std::size_t n, const uchar* s, std::size_t m);
  // First window at or after `from` holding a match: {npos, 0} when none.
  MatchBlock (*next_block)(const uchar* p, std::size_t n, uchar c, std::size_t from);
  // Last occurrence of a substring (n for an empty one), or npos.
  std::size_t (*rfind_sub)(const uchar* p, std::size_t n, const uchar* s, std::size_t m);
  // First ASCII case-insensitive occurrence, or npos.
  std::size_t (*find_icase)(const uchar* p, std::size_t n, const uchar* s, std::size_t m);
  // First block of Teddy candidate starts at or after `from`: {npos, 0} when
  // none. Null on levels without a byte shuffle (multi-needle search then
  // runs its automaton).
  MatchBlock (*teddy_block)(const uchar* p, std::size_t n, std::size_t from, const TeddyTables& t);
};

// ------------------------------------------------------------------ SWAR ---
// Eight bytes at a time in a 64-bit word, loaded with memcpy (never past n).

inline constexpr std::uint64_t kOnes = 0x0101010101010101ull;
inline constexpr std::uint64_t kHighs = 0x8080808080808080ull;
inline constexpr bool kLittle = std::endian::native == std::endian::little;

inline std::uint64_t load64(const uchar* p) noexcept {
  std::uint64_t w;
  std::memcpy(&w, p, 8);
  return w;
}

/// 0x80 in every byte of w that is zero, 0 elsewhere (exact: no borrow
/// between bytes, so the highest marker is as trustworthy as the lowest).
constexpr std::uint64_t zero_bytes(std::uint64_t w) noexcept {
  const std::uint64_t low7 = ~kHighs;
  return ~(((w & low7) + low7) | w | low7);
}
constexpr std::uint64_t eq_bytes(std::uint64_t w, uchar c) noexcept {
  return zero_bytes(w ^ (kOnes * c));
}

/// Byte index (in memory order) of the first / last marker in a nonzero mask.
inline std::size_t first_marker(std::uint64_t m) noexcept {
  if constexpr (kLittle) {
    return static_cast<std::size_t>(std::countr_zero(m)) / 8;
  } else {
    return static_cast<std::size_t>(std::countl_zero(m)) / 8;
  }
}
inline std::size_t last_marker(std::uint64_t m) noexcept {
  if constexpr (kLittle) {
    return 7 - static_cast<std::size_t>(std::countl_zero(m)) / 8;
  } else {
    return 7 - static_cast<std::size_t>(std::countr_zero(m)) / 8;
  }
}
/// Gathers the 8 marker bits of a little-endian word into bits 0-7.
inline std::uint64_t gather_markers(std::uint64_t m) noexcept {
  if constexpr (!kLittle) m = __builtin_bswap64(m);
  return ((m >> 7) * 0x0102040810204080ull) >> 56;
}

template <class Match>
inline std::size_t swar_find(const uchar* p, std::size_t n, Match match) noexcept {
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    if (const std::uint64_t m = match.word(load64(p + i))) return i + first_marker(m);
  }
  for (; i < n; ++i) {
    if (match.byte(p[i])) return i;
  }
  return npos;
}

template <class Match>
inline std::size_t swar_rfind(const uchar* p, std::size_t n, Match match) noexcept {
  std::size_t i = n;
  for (; i >= 8; i -= 8) {
    if (const std::uint64_t m = match.word(load64(p + i - 8))) return i - 8 + last_marker(m);
  }
  while (i > 0) {
    --i;
    if (match.byte(p[i])) return i;
  }
  return npos;
}

struct Eq1 {
  uchar a;
  std::uint64_t word(std::uint64_t w) const noexcept { return eq_bytes(w, a); }
  bool byte(uchar x) const noexcept { return x == a; }
};
struct Eq2 {
  uchar a, b;
  std::uint64_t word(std::uint64_t w) const noexcept { return eq_bytes(w, a) | eq_bytes(w, b); }
  bool byte(uchar x) const noexcept { return x == a || x == b; }
};
struct Eq3 {
  uchar a, b, c;
  std::uint64_t word(std::uint64_t w) const noexcept {
    return eq_bytes(w, a) | eq_bytes(w, b) | eq_bytes(w, c);
  }
  bool byte(uchar x) const noexcept { return x == a || x == b || x == c; }
};

// Scalar kernels (also the portable build's only kernels).
inline std::size_t scalar_find(const uchar* p, std::size_t n, uchar c) noexcept {
  return swar_find(p, n, Eq1{c});
}
inline std::size_t scalar_rfind(const uchar* p, std::size_t n, uchar c) noexcept {
  return swar_rfind(p, n, Eq1{c});
}
inline std::size_t scalar_find_any2(const uchar* p, std::size_t n, uchar a, uchar b) noexcept {
  return swar_find(p, n, Eq2{a, b});
}
inline std::size_t scalar_find_any3(const uchar* p, std::size_t n, uchar a, uchar b, uchar c) noexcept {
  return swar_find(p, n, Eq3{a, b, c});
}
inline std::size_t scalar_find_set(const uchar* p, std::size_t n, const ByteSet& set) noexcept {
  for (std::size_t i = 0; i < n; ++i) {
    if (set.contains(p[i])) return i;
  }
  return npos;
}
inline std::size_t scalar_count(const uchar* p, std::size_t n, uchar c) noexcept {
  std::size_t total = 0;
  std::size_t i = 0;
  for (; i + 8 <= n; i += 8) total += static_cast<std::size_t>(std::popcount(eq_bytes(load64(p + i), c)));
  for (; i < n; ++i) total += p[i] == c ? 1u : 0u;
  return total;
}
/// Match bits of p[from, min(from + 64, n)).
inline std::uint64_t scalar_window(const uchar* p, std::size_t n, uchar c, std::size_t from) noexcept {
  const std::size_t len = std::min<std::size_t>(64, n - from);
  std::uint64_t mask = 0;
  std::size_t i = 0;
  if constexpr (kLittle) {
    for (; i + 8 <= len; i += 8) mask |= gather_markers(eq_bytes(load64(p + from + i), c)) << i;
  }
  for (; i < len; ++i) mask |= std::uint64_t{p[from + i] == c} << i;
  return mask;
}
inline MatchBlock scalar_next_block(const uchar* p, std::size_t n, uchar c, std::size_t from) noexcept {
  for (; from < n; from += 64) {
    if (const std::uint64_t m = scalar_window(p, n, c, from)) return {from, m};
  }
  return {npos, 0};
}

// --------------------------------------------------------------- Two-Way ---
// Crochemore and Perrin's Two-Way string matching: O(n + m) time, O(1) space.
// The needle is split at a critical factorisation x = u v (found from the
// maximal suffixes under both byte orders); v is matched left to right, then u
// right to left, and shifts use the period so no byte is examined more than a
// constant number of times.

struct MaxSuffix {
  std::ptrdiff_t pos;     // the suffix starts at pos + 1
  std::ptrdiff_t period;  // period of that suffix
};

/// ASCII lower case: 'A'-'Z' to 'a'-'z', every other byte unchanged.
constexpr uchar fold(uchar b) noexcept {
  return static_cast<uchar>(static_cast<unsigned>(b - 'A') < 26u ? b | 0x20u : b);
}
constexpr bool is_alpha(uchar b) noexcept {
  return static_cast<unsigned>((b | 0x20u) - 'a') < 26u;
}

// Byte views Two-Way runs over: the bytes as they are, reversed (index i is
// the i-th byte from the end, for searching backwards), or ASCII-folded.
struct Forward {
  const uchar* p;
  uchar operator[](std::ptrdiff_t i) const noexcept { return p[i]; }
};
struct Backward {
  const uchar* end;  // one past the last byte
  uchar operator[](std::ptrdiff_t i) const noexcept { return end[-1 - i]; }
};
struct Folded {
  const uchar* p;
  uchar operator[](std::ptrdiff_t i) const noexcept { return fold(p[i]); }
};

/// Maximal suffix of s under the byte order (reversed = true: the opposite order).
template <class S>
inline MaxSuffix max_suffix(const S& s, std::ptrdiff_t m, bool reversed) noexcept {
  std::ptrdiff_t best = -1;  // start of the current best suffix, minus one
  std::ptrdiff_t j = 0;      // candidate compared against it
  std::ptrdiff_t k = 1;      // offset inside the comparison
  std::ptrdiff_t period = 1;
  while (j + k < m) {
    const uchar a = s[j + k];
    const uchar b = s[best + k];
    const bool smaller = reversed ? a > b : a < b;
    if (smaller) {
      j += k;
      k = 1;
      period = j - best;
    } else if (a == b) {
      if (k != period) {
        ++k;
      } else {
        j += period;
        k = 1;
      }
    } else {
      best = j;
      j = best + 1;
      k = period = 1;
    }
  }
  return {best, period};
}

/// First occurrence of s[0, m) in p[0, n) as seen through the views, or npos.
template <class H, class S>
inline std::size_t two_way_view(const H& p, std::size_t n_, const S& s, std::size_t m_) noexcept {
  if (m_ == 0) return 0;
  if (m_ > n_) return npos;
  const auto n = static_cast<std::ptrdiff_t>(n_);
  const auto m = static_cast<std::ptrdiff_t>(m_);
  const MaxSuffix a = max_suffix(s, m, false);
  const MaxSuffix b = max_suffix(s, m, true);
  const std::ptrdiff_t ell = a.pos > b.pos ? a.pos : b.pos;  // critical position
  std::ptrdiff_t period = a.pos > b.pos ? a.period : b.period;

  bool periodic = true;  // s[0, ell] == s[period, period + ell]
  for (std::ptrdiff_t i = 0; i <= ell && periodic; ++i) periodic = s[i] == s[i + period];
  if (periodic) {
    // Periodic needle: remember how much of the left part is known to match.
    std::ptrdiff_t memory = -1;
    for (std::ptrdiff_t j = 0; j <= n - m;) {
      std::ptrdiff_t i = std::max(ell, memory) + 1;
      while (i < m && s[i] == p[i + j]) ++i;
      if (i >= m) {
        i = ell;
        while (i > memory && s[i] == p[i + j]) --i;
        if (i <= memory) return static_cast<std::size_t>(j);
        j += period;
        memory = m - period - 1;
      } else {
        j += i - ell;
        memory = -1;
      }
    }
  } else {
    period = std::max(ell + 1, m - ell - 1) + 1;
    for (std::ptrdiff_t j = 0; j <= n - m;) {
      std::ptrdiff_t i = ell + 1;
      while (i < m && s[i] == p[i + j]) ++i;
      if (i >= m) {
        i = ell;
        while (i >= 0 && s[i] == p[i + j]) --i;
        if (i < 0) return static_cast<std::size_t>(j);
        j += period;
      } else {
        j += i - ell;
      }
    }
  }
  return npos;
}

/// First occurrence of s[0, m) in p[0, n), or npos (0 for m == 0).
inline std::size_t two_way(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  return two_way_view(Forward{p}, n, Forward{s}, m);
}
/// Last occurrence of s[0, m) in p[0, n), or npos (n for m == 0).
inline std::size_t two_way_last(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  const std::size_t r = two_way_view(Backward{p + n}, n, Backward{s + m}, m);
  return r == npos ? npos : n - r - m;
}
/// First ASCII case-insensitive occurrence of s[0, m) in p[0, n), or npos.
inline std::size_t two_way_icase(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  return two_way_view(Folded{p}, n, Folded{s}, m);
}

/// p[0, m) equals s[0, m): eight-byte words (the last one overlapping the one
/// before), four-byte halves below eight bytes. Inline, so verifying a
/// candidate costs no call.
[[gnu::always_inline]] inline bool equal_bytes(const uchar* p, const uchar* s, std::size_t m) noexcept {
  if (m >= 8) {
    for (std::size_t i = 0; i + 8 < m; i += 8) {
      if (load64(p + i) != load64(s + i)) return false;
    }
    return load64(p + m - 8) == load64(s + m - 8);
  }
  if (m >= 4) {
    std::uint32_t a0, b0, a1, b1;
    std::memcpy(&a0, p, 4);
    std::memcpy(&b0, s, 4);
    std::memcpy(&a1, p + m - 4, 4);
    std::memcpy(&b1, s + m - 4, 4);
    return ((a0 ^ b0) | (a1 ^ b1)) == 0;
  }
  for (std::size_t i = 0; i < m; ++i) {
    if (p[i] != s[i]) return false;
  }
  return true;
}

/// p[0, m) equals s[0, m) ignoring ASCII case.
inline bool equal_icase(const uchar* p, const uchar* s, std::size_t m) noexcept {
  std::size_t i = 0;
  // Eight bytes at a time: equal words need no folding; otherwise fold both.
  for (; i + 8 <= m; i += 8) {
    std::uint64_t a, b;
    std::memcpy(&a, p + i, 8);
    std::memcpy(&b, s + i, 8);
    if (a == b) continue;
    for (std::size_t j = i; j < i + 8; ++j) {
      if (fold(p[j]) != fold(s[j])) return false;
    }
  }
  for (; i < m; ++i) {
    if (fold(p[i]) != fold(s[i])) return false;
  }
  return true;
}

// ------------------------------------------------------------- rare bytes ---
// How common a byte is in typical text and binary data (0 = rarest). The
// substring prefilter looks for the two rarest needle bytes, so a guess that
// is roughly right keeps false candidates few; a wrong guess only costs speed.
inline constexpr auto kByteCommonness = [] {
  struct Table {
    uchar v[256];
  } t{};
  for (unsigned b = 0; b < 256; ++b) t.v[b] = 8;       // control bytes, unlisted high bytes
  for (unsigned b = 0x80; b < 0xc0; ++b) t.v[b] = 40;  // UTF-8 continuation bytes
  for (unsigned b = 0xc2; b < 0xf0; ++b) t.v[b] = 30;  // UTF-8 lead bytes
  // Most common first; each earlier byte scores higher.
  constexpr std::string_view order =
      " etaoinsrhldcumfpgwybv,.k\n\"-_x0/1=:2j;()q3z<>'954867*#{}[]\t"
      "ETASIORNCLDMPHBFUGWYVKJXQZ&!?|+%@$\\~^`\r";
  for (std::size_t i = 0; i < order.size(); ++i) {
    t.v[static_cast<uchar>(order[i])] = static_cast<uchar>(255 - i * 2);
  }
  t.v[0x00] = 200;  // zero and 0xff fill binary formats
  t.v[0xff] = 150;
  return t;
}();

struct RarePair {
  std::size_t i1, i2;  // positions in the needle; i1 != i2 when m >= 2
};

/// The two needle positions holding the rarest bytes (the same byte may sit
/// at both: "p?p" is rarer in text than "p" and "l" four apart). Needs
/// m >= 2. With Icase, a letter is as common as its commoner case.
template <bool Icase = false>
inline RarePair rare_pair(const uchar* s, std::size_t m) noexcept {
  const auto rank = [](uchar b) -> unsigned {
    if constexpr (Icase) {
      if (is_alpha(b)) return std::max(kByteCommonness.v[b | 0x20u], kByteCommonness.v[b & ~0x20u & 0xffu]);
    }
    return kByteCommonness.v[b];
  };
  // One pass: i1 is the rarest so far, i2 the rarest of the others (the old
  // i1 when a rarer byte comes). Ranks stay in registers, no load chain.
  std::size_t i1 = 0;
  std::size_t i2 = 1;
  unsigned r1 = rank(s[0]);
  unsigned r2 = 256;
  for (std::size_t i = 1; i < m; ++i) {
    const unsigned r = rank(s[i]);
    if (r < r1) {
      i2 = i1;
      r2 = r1;
      i1 = i;
      r1 = r;
    } else if (r < r2) {
      i2 = i;
      r2 = r;
    }
  }
  return {i1, i2};
}

/// Bytes the prefilter may spend verifying candidates before the search hands
/// over to Two-Way: linear in what was scanned, so no input is quadratic.
inline bool verify_budget_spent(std::size_t spent, std::size_t scanned) noexcept {
  return spent > 4 * scanned + 512;
}

/// Scalar substring search: rare byte via the SWAR find, then the second rare
/// byte, then memcmp; Two-Way once verification costs too much. m >= 2.
inline std::size_t scalar_find_sub(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  if (m == 0) return 0;
  if (m > n) return npos;
  if (m == 1) return scalar_find(p, n, s[0]);
  const RarePair r = rare_pair(s, m);
  const uchar b1 = s[r.i1];
  const uchar b2 = s[r.i2];
  const std::size_t last = n - m;  // last possible start
  std::size_t spent = 0;
  std::size_t start = 0;
  while (start <= last) {
    const std::size_t hit = scalar_find(p + start + r.i1, last - start + 1, b1);
    if (hit == npos) return npos;
    const std::size_t cand = start + hit;
    if (p[cand + r.i2] == b2 && equal_bytes(p + cand, s, m)) return cand;
    spent += m;
    if (verify_budget_spent(spent, cand)) {
      const std::size_t rest = two_way(p + cand + 1, n - cand - 1, s, m);
      return rest == npos ? npos : cand + 1 + rest;
    }
    start = cand + 1;
  }
  return npos;
}

/// Scalar reverse substring search: the last occurrence, n for m == 0.
inline std::size_t scalar_rfind_sub(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  if (m == 0) return n;
  if (m > n) return npos;
  if (m == 1) return scalar_rfind(p, n, s[0]);
  const RarePair r = rare_pair(s, m);
  const uchar b1 = s[r.i1];
  const uchar b2 = s[r.i2];
  const std::size_t last = n - m;
  std::size_t spent = 0;
  std::size_t end = last + 1;  // starts >= end are done
  while (end > 0) {
    const std::size_t cand = scalar_rfind(p + r.i1, end, b1);
    if (cand == npos) return npos;
    if (p[cand + r.i2] == b2 && equal_bytes(p + cand, s, m)) return cand;
    spent += m;
    if (verify_budget_spent(spent, last - cand)) return two_way_last(p, cand + m - 1, s, m);
    end = cand;
  }
  return npos;
}

/// Scalar ASCII case-insensitive substring search.
inline std::size_t scalar_find_icase(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  if (m == 0) return 0;
  if (m > n) return npos;
  const RarePair r = m == 1 ? RarePair{0, 0} : rare_pair<true>(s, m);
  const uchar b1 = fold(s[r.i1]);
  const uchar b2 = fold(s[r.i2]);
  const uchar u1 = is_alpha(b1) ? static_cast<uchar>(b1 & ~0x20u) : b1;
  const std::size_t last = n - m;
  std::size_t spent = 0;
  std::size_t start = 0;
  while (start <= last) {
    const std::size_t hit = swar_find(p + start + r.i1, last - start + 1, Eq2{b1, u1});
    if (hit == npos) return npos;
    const std::size_t cand = start + hit;
    if (fold(p[cand + r.i2]) == b2 && equal_icase(p + cand, s, m)) return cand;
    spent += m;
    if (verify_budget_spent(spent, cand)) {
      const std::size_t rest = two_way_icase(p + cand + 1, n - cand - 1, s, m);
      return rest == npos ? npos : cand + 1 + rest;
    }
    start = cand + 1;
  }
  return npos;
}

// ----------------------------------------------------------------- Teddy ---
// Candidate starts of a multi-needle search: each needle sits in one of eight
// buckets; for fingerprint byte j (the needle's first k <= 3 bytes), lo[j][x]
// has the bits of the buckets holding a needle whose byte j has low nibble x,
// hi[j][x] the same for the high nibble. A start is a candidate when, for
// every j, the two lookups of the byte at start + j share a bucket bit.
struct TeddyTables {
  uchar lo[3][16];
  uchar hi[3][16];
  uchar lo2[3][16];  // buckets 8-15 when fat
  uchar hi2[3][16];
  // The same bucket bits by whole byte, for a 128-entry lookup (AVX-512
  // VBMI): entry x has the buckets of bytes x and x | 0x80, which share the
  // seven index bits; the extra candidates that folding admits are rejected
  // by verification like any other.
  uchar full[3][128];
  uchar full2[3][128];  // buckets 8-15 when fat
  std::size_t k;        // fingerprint bytes, 1-3; every needle is at least k long
  bool fat;             // 16 buckets (many needles): fewer needles share a bit
};

/// Candidate bits of starts [from, min(from + 64, n - k + 1)). Needs from + k <= n.
inline std::uint64_t scalar_teddy_window(const uchar* p, std::size_t n, std::size_t from,
                                         const TeddyTables& t) noexcept {
  const std::size_t len = std::min<std::size_t>(64, n - t.k + 1 - from);
  std::uint64_t mask = 0;
  for (std::size_t i = 0; i < len; ++i) {
    unsigned acc = 0xff;
    unsigned acc2 = t.fat ? 0xffu : 0u;
    for (std::size_t j = 0; j < t.k; ++j) {
      const uchar x = p[from + i + j];
      acc &= static_cast<unsigned>(t.lo[j][x & 15u] & t.hi[j][x >> 4]);
      acc2 &= static_cast<unsigned>(t.lo2[j][x & 15u] & t.hi2[j][x >> 4]);
    }
    mask |= std::uint64_t{(acc | acc2) != 0} << i;
  }
  return mask;
}
inline MatchBlock scalar_teddy_block(const uchar* p, std::size_t n, std::size_t from,
                                     const TeddyTables& t) noexcept {
  for (; from + t.k <= n; from += 64) {
    if (const std::uint64_t m = scalar_teddy_window(p, n, from, t)) return {from, m};
  }
  return {npos, 0};
}

// The narrower level of the SSE2 kernels, under the names the vector kernels use.
namespace scalar {
inline std::size_t find_sub(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  return scalar_find_sub(p, n, s, m);
}
inline std::size_t rfind_sub(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  return scalar_rfind_sub(p, n, s, m);
}
inline std::size_t find_icase(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  return scalar_find_icase(p, n, s, m);
}
}  // namespace scalar

inline constexpr Kernels kScalarKernels = {
    Isa::scalar,  scalar_find,     scalar_rfind,      scalar_find_any2, scalar_find_any3,  scalar_find_set,
    scalar_count, scalar_find_sub, scalar_next_block, scalar_rfind_sub, scalar_find_icase, nullptr,
};

}  // namespace detail
}  // namespace keel::simd
