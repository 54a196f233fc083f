// keel/simd.hpp: SIMD byte search over string_view and byte spans.
//
// memchr and friends for protocol and log parsers: the first/last position of
// a byte, of any of two or three bytes, of any byte of a set; how many times a
// byte occurs; where a substring starts (forwards, backwards, or ignoring
// ASCII case); many needles at once; and a range over every match.
//
//     std::string_view text = read_all();
//     std::size_t lines = keel::simd::count(text, '\n');
//     std::size_t key = keel::simd::find_icase(text, "content-length:");
//     keel::simd::MultiFinder levels({"ERROR", "WARN"});
//     auto [pos, which] = levels.find(text);
//     for (std::size_t eol : keel::simd::matches(text, '\n')) on_line_end(eol);
//
// Every function returns a position or keel::simd::npos (equal to
// std::string_view::npos), and has an overload taking std::span<const std::byte>.
//
// Dispatch: the best of AVX-512BW, AVX2, SSE2 and portable scalar code (eight
// bytes at a time) is chosen once, on first use, from CPUID and XGETBV (the OS
// must save the wide registers); aarch64 builds use NEON. On this library's
// measurements AVX-512 is only chosen by default where it is faster (see
// kPreferAvx512 below and docs/simd.md); `active_isa()` names the choice.
// Each kernel is then called through a pointer resolved on its first call, as
// a dynamic linker resolves an ifunc. The environment variable
// KEEL_SIMD=scalar|sse2|avx2|avx512|neon, read once at that first use, forces
// a level the CPU supports (a level it lacks falls back to the best it has),
// so one machine can test every path. Haystacks under 32 bytes (64 for find
// of one byte) take an inlined path (SSE2, part of x86-64, and eight-byte
// words) before any dispatch.
//
// Thread-safety: all functions are pure and may be called from any thread;
// the one-time choice of kernels is a thread-safe static initialisation, and
// a MultiFinder is immutable once built.
//
// Guarantees: no read ever leaves [data, data + size): tails are handled with
// overlapping loads or AVX-512 masked loads, so ASan sees no over-read and a
// haystack flush against an unmapped page is safe. Substring search (find,
// rfind, find_icase) is linear in the haystack for every input (a rare-byte
// SIMD prefilter whose verification work is bounded, then Crochemore-Perrin
// Two-Way); MultiFinder::find is O(n + longest needle). Nothing here
// allocates or throws, except building a MultiFinder (which allocates its
// tables). Bytes compare as unsigned (0x80-0xff work with a signed char).
// Needs the standard library only.
#pragma once

#include <keel/detail/simd_arm.hpp>
#include <keel/detail/simd_core.hpp>
#include <keel/detail/simd_multi.hpp>
#include <keel/detail/simd_x86.hpp>

#include <atomic>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <initializer_list>
#include <iterator>
#include <ranges>
#include <span>
#include <string_view>

namespace keel::simd {

namespace detail {

/// Whether AVX-512 is chosen by default on a CPU that has it. Measured on an
/// Intel Xeon (see docs/simd.md): the 512-bit kernels are faster there.
/// KEEL_SIMD=avx2 selects the 256-bit ones.
inline constexpr bool kPreferAvx512 = true;

/// Haystacks shorter than this skip the dispatch.
inline constexpr std::size_t kShort = 32;
/// find() of one byte inlines SSE2 up to this many bytes (a 64-byte record or
/// cache line is a common case, where a call costs as much as the search).
inline constexpr std::size_t kShortFind = 64;

/// The best level the CPU supports (neon on aarch64, scalar on other builds).
inline Isa supported_isa() noexcept {
#ifdef KEEL_SIMD_X86
  static const Isa isa = detect_isa();
  return isa;
#elif defined(KEEL_SIMD_NEON)
  return Isa::neon;
#else
  return Isa::scalar;
#endif
}

/// "scalar", "sse2", "avx2" or "avx512" to a level; anything else to nothing.
constexpr bool parse_isa(std::string_view s, Isa& out) noexcept {
  for (Isa i : {Isa::scalar, Isa::sse2, Isa::avx2, Isa::avx512, Isa::neon}) {
    if (s == to_string(i)) {
      out = i;
      return true;
    }
  }
  return false;
}

/// The kernels of `want`, or of the best supported level below it (on
/// aarch64: scalar for scalar, neon for every other name).
inline const Kernels& kernels_for(Isa want) noexcept {
#ifdef KEEL_SIMD_NEON
  return want == Isa::scalar ? kScalarKernels : kNeonKernels;
#else
  Isa isa = want;
  if (static_cast<int>(isa) > static_cast<int>(supported_isa())) isa = supported_isa();
#ifdef KEEL_SIMD_X86
  switch (isa) {
    case Isa::avx512:
      return has_vbmi() ? kAvx512VbmiKernels : kAvx512Kernels;
    case Isa::avx2:
      return kAvx2Kernels;
    case Isa::sse2:
      return kSse2Kernels;
    case Isa::scalar:
    case Isa::neon:
      break;
  }
#endif
  return kScalarKernels;
#endif
}

inline Isa choose_isa() noexcept {
  Isa isa = supported_isa();
  if (isa == Isa::avx512 && !kPreferAvx512) isa = Isa::avx2;
  if (const char* env = std::getenv("KEEL_SIMD"); env != nullptr) {  // NOLINT(concurrency-mt-unsafe)
    Isa forced{};
    if (parse_isa(env, forced)) isa = forced;
  }
  return kernels_for(isa).isa;
}

/// The kernels in use: null until the first call chooses them.
inline std::atomic<const Kernels*> g_active{nullptr};

[[gnu::noinline, gnu::cold]] inline const Kernels& choose_active() noexcept {
  static const Kernels& k = kernels_for(choose_isa());  // once, thread-safe
  // Relaxed: the tables are constant-initialised data, nothing to publish;
  // a thread that still sees null takes this path and gets the same table.
  g_active.store(&k, std::memory_order_relaxed);
  return k;
}

/// The kernels in use, chosen on first call. The fast path is one load and a
/// predictable branch before the indirect call (no function-static guard).
inline const Kernels& active() noexcept {
  // Relaxed: see choose_active().
  if (const Kernels* k = g_active.load(std::memory_order_relaxed); k != nullptr) [[likely]]
    return *k;
  return choose_active();
}

/// One kernel called the way a dynamic linker's ifunc resolves a symbol: a
/// pointer that starts at a resolver, which on the first call looks up the
/// kernel of the chosen level, stores it in the pointer and calls it; every
/// later call is one load and a direct call through it, with no table or null
/// check in between.
template <auto Member>
struct Direct;
template <class R, class... A, R (*Kernels::*Member)(A...)>
struct Direct<Member> {
  using Fn = R (*)(A...);
  static R resolve(A... a) {
    const Fn f = active().*Member;
    // Relaxed: the kernels are code and constant data, nothing to publish; a
    // thread that still sees the resolver resolves again, to the same kernel.
    ptr.store(f, std::memory_order_relaxed);
    return f(a...);
  }
  static inline std::atomic<Fn> ptr{&resolve};
  static R call(A... a) {
    // Relaxed: see resolve().
    return ptr.load(std::memory_order_relaxed)(a...);
  }
};

inline const uchar* bytes(std::string_view s) noexcept {
  return reinterpret_cast<const uchar*>(s.data());
}
inline const uchar* bytes(std::span<const std::byte> s) noexcept {
  return reinterpret_cast<const uchar*>(s.data());
}
constexpr uchar u8(char c) noexcept {
  return static_cast<uchar>(c);
}
constexpr uchar u8(std::byte c) noexcept {
  return static_cast<uchar>(c);
}

// The short path: SSE2 for 16-31 bytes, eight-byte words below.
inline std::size_t short_find(const uchar* p, std::size_t n, uchar c) noexcept {
#ifdef KEEL_SIMD_X86
  if (n >= 16) {  // 16-64 bytes: the first and the last 32 (or 16), overlapping
    const __m128i v = _mm_set1_epi8(static_cast<char>(c));
    const auto eq16 = [&](std::size_t at) {
      return static_cast<std::uint32_t>(
          _mm_movemask_epi8(_mm_cmpeq_epi8(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + at)), v)));
    };
    if (n < 32) {
      const std::uint32_t m = eq16(0) | eq16(n - 16) << (n - 16);
      return m != 0 ? static_cast<std::size_t>(std::countr_zero(m)) : npos;
    }
    const std::uint32_t head = eq16(0) | eq16(16) << 16;
    if (head != 0) return static_cast<std::size_t>(std::countr_zero(head));
    const std::uint32_t tail = eq16(n - 32) | eq16(n - 16) << 16;
    return tail != 0 ? n - 32 + static_cast<std::size_t>(std::countr_zero(tail)) : npos;
  }
#endif
  return scalar_find(p, n, c);
}
inline std::size_t short_rfind(const uchar* p, std::size_t n, uchar c) noexcept {
#ifdef KEEL_SIMD_X86
  if (n >= 16) return sse2::rfind(p, n, c);
#endif
  return scalar_rfind(p, n, c);
}
inline std::size_t short_any2(const uchar* p, std::size_t n, uchar a, uchar b) noexcept {
#ifdef KEEL_SIMD_X86
  if (n >= 16) return sse2::find_any2(p, n, a, b);
#endif
  return scalar_find_any2(p, n, a, b);
}
inline std::size_t short_any3(const uchar* p, std::size_t n, uchar a, uchar b, uchar c) noexcept {
#ifdef KEEL_SIMD_X86
  if (n >= 16) return sse2::find_any3(p, n, a, b, c);
#endif
  return scalar_find_any3(p, n, a, b, c);
}
inline std::size_t short_count(const uchar* p, std::size_t n, uchar c) noexcept {
#ifdef KEEL_SIMD_X86
  if (n >= 16) return sse2::count(p, n, c);
#endif
  return scalar_count(p, n, c);
}

inline std::size_t find_byte(const uchar* p, std::size_t n, uchar c) noexcept {
  return n <= kShortFind ? short_find(p, n, c) : Direct<&Kernels::find>::call(p, n, c);
}
inline std::size_t rfind_byte(const uchar* p, std::size_t n, uchar c) noexcept {
  return n < kShort ? short_rfind(p, n, c) : Direct<&Kernels::rfind>::call(p, n, c);
}
inline std::size_t any2(const uchar* p, std::size_t n, uchar a, uchar b) noexcept {
  return n < kShort ? short_any2(p, n, a, b) : Direct<&Kernels::find_any2>::call(p, n, a, b);
}
inline std::size_t any3(const uchar* p, std::size_t n, uchar a, uchar b, uchar c) noexcept {
  return n < kShort ? short_any3(p, n, a, b, c) : Direct<&Kernels::find_any3>::call(p, n, a, b, c);
}
inline std::size_t count_byte(const uchar* p, std::size_t n, uchar c) noexcept {
  return n < kShort ? short_count(p, n, c) : Direct<&Kernels::count>::call(p, n, c);
}
inline std::size_t find_in_set(const uchar* p, std::size_t n, const ByteSet& set) noexcept {
  const uchar* list = ByteSetAccess::list(set);
  switch (set.size()) {
    case 0:
      return npos;
    case 1:
      return find_byte(p, n, list[0]);
    case 2:
      return any2(p, n, list[0], list[1]);
    case 3:
      return any3(p, n, list[0], list[1], list[2]);
    default:
      break;
  }
#ifdef KEEL_SIMD_X86
  if (n < kShort) {
    if (n >= 16 && set.size() <= ByteSetAccess::list_max()) return sse2::find_set(p, n, set);
    return scalar_find_set(p, n, set);
  }
#endif
  return Direct<&Kernels::find_set>::call(p, n, set);
}
inline std::size_t find_substring(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  if (m == 0) return 0;
  if (m > n) return npos;
  if (m == 1) return find_byte(p, n, s[0]);
  return n < kShort ? scalar_find_sub(p, n, s, m) : Direct<&Kernels::find_sub>::call(p, n, s, m);
}
inline std::size_t rfind_substring(const uchar* p, std::size_t n, const uchar* s, std::size_t m) noexcept {
  if (m == 0) return n;
  if (m > n) return npos;
  if (m == 1) return rfind_byte(p, n, s[0]);
  return n < kShort ? scalar_rfind_sub(p, n, s, m) : Direct<&Kernels::rfind_sub>::call(p, n, s, m);
}
inline std::size_t find_substring_icase(const uchar* p, std::size_t n, const uchar* s,
                                        std::size_t m) noexcept {
  if (m == 0) return 0;
  if (m > n) return npos;
  if (m == 1) {
    const uchar c = s[0];
    return is_alpha(c) ? any2(p, n, static_cast<uchar>(c | 0x20u), static_cast<uchar>(c & 0xdfu))
                       : find_byte(p, n, c);
  }
  return n < kShort ? scalar_find_icase(p, n, s, m) : Direct<&Kernels::find_icase>::call(p, n, s, m);
}
inline MatchBlock next_match_block(const uchar* p, std::size_t n, uchar c, std::size_t from) noexcept {
#ifdef KEEL_SIMD_X86
  if (n - from <= 64) return sse2::next_block(p, n, c, from);
#endif
  return Direct<&Kernels::next_block>::call(p, n, c, from);
}

}  // namespace detail

/// Name of the kernels in use: "avx512", "avx2", "sse2", "neon" or "scalar".
[[nodiscard]] inline std::string_view active_isa() noexcept {
  return to_string(detail::active().isa);
}
/// The best level this CPU and OS support, whatever KEEL_SIMD says.
[[nodiscard]] inline Isa supported_isa() noexcept {
  return detail::supported_isa();
}

// ------------------------------------------------------------ one byte ---

/// Position of the first `c` in `hay`, or npos (memchr).
[[nodiscard]] inline std::size_t find(std::string_view hay, char c) noexcept {
  return detail::find_byte(detail::bytes(hay), hay.size(), detail::u8(c));
}
[[nodiscard]] inline std::size_t find(std::span<const std::byte> hay, std::byte c) noexcept {
  return detail::find_byte(detail::bytes(hay), hay.size(), detail::u8(c));
}

/// Position of the last `c` in `hay`, or npos (memrchr).
[[nodiscard]] inline std::size_t rfind(std::string_view hay, char c) noexcept {
  return detail::rfind_byte(detail::bytes(hay), hay.size(), detail::u8(c));
}
[[nodiscard]] inline std::size_t rfind(std::span<const std::byte> hay, std::byte c) noexcept {
  return detail::rfind_byte(detail::bytes(hay), hay.size(), detail::u8(c));
}

/// Position of the first byte equal to `a` or `b` (or `c`), or npos.
[[nodiscard]] inline std::size_t find_any(std::string_view hay, char a, char b) noexcept {
  return detail::any2(detail::bytes(hay), hay.size(), detail::u8(a), detail::u8(b));
}
[[nodiscard]] inline std::size_t find_any(std::string_view hay, char a, char b, char c) noexcept {
  return detail::any3(detail::bytes(hay), hay.size(), detail::u8(a), detail::u8(b), detail::u8(c));
}
[[nodiscard]] inline std::size_t find_any(std::span<const std::byte> hay, std::byte a, std::byte b) noexcept {
  return detail::any2(detail::bytes(hay), hay.size(), detail::u8(a), detail::u8(b));
}
[[nodiscard]] inline std::size_t find_any(std::span<const std::byte> hay, std::byte a, std::byte b,
                                          std::byte c) noexcept {
  return detail::any3(detail::bytes(hay), hay.size(), detail::u8(a), detail::u8(b), detail::u8(c));
}

/// Position of the first byte of `hay` that is in `set`, or npos (strcspn).
[[nodiscard]] inline std::size_t find_first_of(std::string_view hay, const ByteSet& set) noexcept {
  return detail::find_in_set(detail::bytes(hay), hay.size(), set);
}
[[nodiscard]] inline std::size_t find_first_of(std::string_view hay, std::string_view set) noexcept {
  return find_first_of(hay, ByteSet(set));
}
[[nodiscard]] inline std::size_t find_first_of(std::span<const std::byte> hay, const ByteSet& set) noexcept {
  return detail::find_in_set(detail::bytes(hay), hay.size(), set);
}
[[nodiscard]] inline std::size_t find_first_of(std::span<const std::byte> hay,
                                               std::span<const std::byte> set) noexcept {
  ByteSet s;
  for (std::byte b : set) s.insert(detail::u8(b));
  return find_first_of(hay, s);
}

/// Number of bytes of `hay` equal to `c`.
[[nodiscard]] inline std::size_t count(std::string_view hay, char c) noexcept {
  return detail::count_byte(detail::bytes(hay), hay.size(), detail::u8(c));
}
[[nodiscard]] inline std::size_t count(std::span<const std::byte> hay, std::byte c) noexcept {
  return detail::count_byte(detail::bytes(hay), hay.size(), detail::u8(c));
}

// ----------------------------------------------------------- substring ---

/// Position of the first occurrence of `needle` in `hay`, or npos; 0 for an
/// empty needle (as std::string_view::find). Linear time for every input.
[[nodiscard]] inline std::size_t find(std::string_view hay, std::string_view needle) noexcept {
  return detail::find_substring(detail::bytes(hay), hay.size(), detail::bytes(needle), needle.size());
}
[[nodiscard]] inline std::size_t find(std::span<const std::byte> hay,
                                      std::span<const std::byte> needle) noexcept {
  return detail::find_substring(detail::bytes(hay), hay.size(), detail::bytes(needle), needle.size());
}

/// Position of the last occurrence of `needle` in `hay`, or npos; hay.size()
/// for an empty needle (as std::string_view::rfind). Linear time.
[[nodiscard]] inline std::size_t rfind(std::string_view hay, std::string_view needle) noexcept {
  return detail::rfind_substring(detail::bytes(hay), hay.size(), detail::bytes(needle), needle.size());
}
[[nodiscard]] inline std::size_t rfind(std::span<const std::byte> hay,
                                       std::span<const std::byte> needle) noexcept {
  return detail::rfind_substring(detail::bytes(hay), hay.size(), detail::bytes(needle), needle.size());
}

/// Position of the first occurrence of `needle` in `hay` ignoring ASCII case
/// ('A'-'Z' equal 'a'-'z'; every other byte, 0x80-0xff included, compares
/// exactly), or npos; 0 for an empty needle. Linear time for every input.
[[nodiscard]] inline std::size_t find_icase(std::string_view hay, std::string_view needle) noexcept {
  return detail::find_substring_icase(detail::bytes(hay), hay.size(), detail::bytes(needle), needle.size());
}
[[nodiscard]] inline std::size_t find_icase(std::span<const std::byte> hay,
                                            std::span<const std::byte> needle) noexcept {
  return detail::find_substring_icase(detail::bytes(hay), hay.size(), detail::bytes(needle), needle.size());
}

// ------------------------------------------------------- many needles ---

/// How MultiFinder compares letters.
enum class Case : unsigned char {
  sensitive,         ///< bytes compare exactly
  ascii_insensitive  ///< 'A'-'Z' equal 'a'-'z'; other bytes compare exactly
};

/// A match of MultiFinder: where it starts and which needle it is (its index
/// in the list the finder was built from). `pos == npos` when there is none.
struct MultiMatch {
  std::size_t pos = npos;
  std::size_t index = npos;
  [[nodiscard]] constexpr explicit operator bool() const noexcept { return pos != npos; }
  friend constexpr bool operator==(const MultiMatch&, const MultiMatch&) noexcept = default;
};

/// Searches for many literal needles at once. Built once (it copies what it
/// needs from the needles, which need not outlive it), then searched any
/// number of times from any number of threads (const and allocation-free).
///
///     keel::simd::MultiFinder finder({"error", "warn", "fatal"});
///     auto [pos, index] = finder.find(line);            // leftmost match
///     for (keel::simd::MultiMatch m : finder.matches(text)) count[m.index]++;
///
/// The leftmost match wins; of needles starting at the same position, the one
/// with the lowest index (so list a longer needle before its prefixes to
/// prefer it). Up to 64 needles, candidates come from a SIMD nibble-table
/// filter (Teddy) on AVX2, AVX-512 and NEON, verified through a trie; more
/// needles, or SSE2 and scalar levels, or a filter that keeps failing, use an
/// Aho-Corasick automaton. A search is O(n + longest needle). Memory is about
/// 4 bytes x (total needle bytes) x (distinct needle bytes).
class MultiFinder {
 public:
  /// No needles: every search finds nothing.
  MultiFinder() = default;
  /// From any range of things convertible to std::string_view (a vector or
  /// span of string_view or std::string, an array of literals).
  template <std::ranges::forward_range R>
  requires std::convertible_to<std::ranges::range_reference_t<R>, std::string_view>
  explicit MultiFinder(R&& needles, Case c = Case::sensitive)
      : plan_(static_cast<std::size_t>(std::ranges::distance(needles)), Nth<R>{std::ranges::begin(needles)},
              c == Case::ascii_insensitive) {}
  MultiFinder(std::initializer_list<std::string_view> needles, Case c = Case::sensitive)
      : MultiFinder(std::span<const std::string_view>(needles.begin(), needles.size()), c) {}

  /// Number of needles.
  [[nodiscard]] std::size_t size() const noexcept { return plan_.size(); }
  /// Length of needle `index`.
  [[nodiscard]] std::size_t needle_size(std::size_t index) const noexcept { return plan_.length(index); }

  /// The leftmost match starting at or after `from` (lowest needle index on
  /// equal starts), or {npos, npos}. An empty needle matches at `from`.
  [[nodiscard]] MultiMatch find(std::string_view hay, std::size_t from = 0) const noexcept {
    return find_at(detail::bytes(hay), hay.size(), from);
  }
  [[nodiscard]] MultiMatch find(std::span<const std::byte> hay, std::size_t from = 0) const noexcept {
    return find_at(detail::bytes(hay), hay.size(), from);
  }

  /// Non-overlapping matches, left to right: each search resumes where the
  /// previous match ended (one byte later after an empty match).
  class Range;
  [[nodiscard]] Range matches(std::string_view hay) const noexcept;

 private:
  template <class R>
  struct Nth {
    std::ranges::iterator_t<R> first;
    std::string_view operator()(std::size_t i) const {
      return std::string_view(*std::ranges::next(first, static_cast<std::ranges::range_difference_t<R>>(i)));
    }
  };

  MultiMatch find_at(const detail::uchar* p, std::size_t n, std::size_t from) const noexcept {
    if (from > n || plan_.size() == 0) return {};
    std::size_t walked = 0;
    if (plan_.has_empty()) return {from, plan_.verify(p, n, from, walked)};
    if (n - from < plan_.min_len()) return {};
    const auto teddy = detail::active().teddy_block;
    if (teddy != nullptr && plan_.has_teddy()) {
      std::size_t spent = 0;
      for (std::size_t pos = from;;) {
        const detail::MatchBlock b = teddy(p, n, pos, plan_.teddy());
        if (b.base == npos) return {};
        for (std::uint64_t m = b.mask; m != 0; m &= m - 1) {
          const std::size_t at = b.base + static_cast<std::size_t>(std::countr_zero(m));
          if (at + plan_.min_len() > n) return {};  // no needle fits from here on
          if (!plan_.may_start(p, at)) continue;
          const std::uint32_t index = plan_.verify(p, n, at, walked);
          if (index != detail::MultiPlan::kNone) return {at, index};
          spent += walked;
          if (detail::verify_budget_spent(spent, at - from)) return automaton(p, n, at + 1);
        }
        pos = b.base + 64;
      }
    }
    return automaton(p, n, from);
  }
  MultiMatch automaton(const detail::uchar* p, std::size_t n, std::size_t from) const noexcept {
    const std::size_t at = plan_.leftmost_start(p, n, from);
    if (at == npos) return {};
    std::size_t walked = 0;
    return {at, plan_.verify(p, n, at, walked)};
  }

  detail::MultiPlan plan_;
};

/// The range of MultiFinder::matches: a forward range of MultiMatch. It refers
/// to the finder and the haystack; both must outlive the iteration.
class MultiFinder::Range {
 public:
  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::forward_iterator_tag;
    using value_type = MultiMatch;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = MultiMatch;

    iterator() noexcept = default;
    [[nodiscard]] MultiMatch operator*() const noexcept { return cur_; }
    iterator& operator++() noexcept {
      const std::size_t len = f_->needle_size(cur_.index);
      cur_ = f_->find(hay_, cur_.pos + (len == 0 ? 1 : len));
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept { return a.cur_ == b.cur_; }
    friend bool operator==(const iterator& a, std::default_sentinel_t) noexcept { return !a.cur_; }

   private:
    friend class Range;
    iterator(const MultiFinder* f, std::string_view hay) noexcept : f_(f), hay_(hay), cur_(f->find(hay)) {}
    const MultiFinder* f_ = nullptr;
    std::string_view hay_;
    MultiMatch cur_;
  };

  Range(const MultiFinder* f, std::string_view hay) noexcept : f_(f), hay_(hay) {}
  [[nodiscard]] iterator begin() const noexcept { return iterator(f_, hay_); }
  [[nodiscard]] iterator end() const noexcept { return iterator(); }

 private:
  const MultiFinder* f_;
  std::string_view hay_;
};

inline MultiFinder::Range MultiFinder::matches(std::string_view hay) const noexcept {
  return Range(this, hay);
}

// ------------------------------------------------------------- matches ---

/// Every position of one byte, in increasing order, as a forward range.
/// Each step consumes the current 64-position comparison mask before loading
/// more, so iterating costs about one compare per 64 bytes plus one step per
/// match. The range refers to the haystack; it must outlive the iteration.
class MatchRange {
 public:
  class iterator {
   public:
    using iterator_concept = std::forward_iterator_tag;
    using iterator_category = std::forward_iterator_tag;
    using value_type = std::size_t;
    using difference_type = std::ptrdiff_t;
    using pointer = void;
    using reference = std::size_t;

    iterator() noexcept = default;
    [[nodiscard]] std::size_t operator*() const noexcept {
      return base_ + static_cast<std::size_t>(std::countr_zero(mask_));
    }
    iterator& operator++() noexcept {
      mask_ &= mask_ - 1;
      if (mask_ == 0 && base_ != npos) load(base_ + 64);
      return *this;
    }
    iterator operator++(int) noexcept {
      iterator old = *this;
      ++*this;
      return old;
    }
    friend bool operator==(const iterator& a, const iterator& b) noexcept {
      return a.base_ == b.base_ && a.mask_ == b.mask_;
    }
    friend bool operator==(const iterator& a, std::default_sentinel_t) noexcept { return a.mask_ == 0; }

   private:
    friend class MatchRange;
    iterator(const detail::uchar* p, std::size_t n, detail::uchar c) noexcept : p_(p), n_(n), c_(c) {
      load(0);
    }
    void load(std::size_t from) noexcept {
      const detail::MatchBlock b =
          from < n_ ? detail::next_match_block(p_, n_, c_, from) : detail::MatchBlock{npos, 0};
      base_ = b.base;
      mask_ = b.mask;
    }
    const detail::uchar* p_ = nullptr;
    std::size_t n_ = 0;
    std::size_t base_ = npos;  // position of bit 0 of mask_; npos at the end
    std::uint64_t mask_ = 0;
    detail::uchar c_ = 0;
  };

  MatchRange() noexcept = default;
  MatchRange(const detail::uchar* p, std::size_t n, detail::uchar c) noexcept : p_(p), n_(n), c_(c) {}

  [[nodiscard]] iterator begin() const noexcept { return iterator(p_, n_, c_); }
  [[nodiscard]] iterator end() const noexcept { return iterator(); }

 private:
  const detail::uchar* p_ = nullptr;
  std::size_t n_ = 0;
  detail::uchar c_ = 0;
};

/// A range over every position of `c` in `hay`:
/// `for (std::size_t pos : keel::simd::matches(hay, '\n'))`.
[[nodiscard]] inline MatchRange matches(std::string_view hay, char c) noexcept {
  return MatchRange(detail::bytes(hay), hay.size(), detail::u8(c));
}
[[nodiscard]] inline MatchRange matches(std::span<const std::byte> hay, std::byte c) noexcept {
  return MatchRange(detail::bytes(hay), hay.size(), detail::u8(c));
}

}  // namespace keel::simd

template <>
inline constexpr bool std::ranges::enable_borrowed_range<keel::simd::MatchRange> = true;
template <>
inline constexpr bool std::ranges::enable_borrowed_range<keel::simd::MultiFinder::Range> = true;
