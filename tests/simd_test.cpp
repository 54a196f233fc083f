#include <keel/simd.hpp>  // first: the header stands alone

#include <rapidcheck/catch.h>
#include <catch2/catch.hpp>

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <bit>
#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include "test_support.hpp"

namespace ks = keel::simd;
using ks::Isa;
using ks::npos;
using Kernels = ks::detail::Kernels;
using uchar = unsigned char;

namespace {

// Sanitizers (TSan in particular) are slow: walk fewer offsets and lengths
// there, keeping every case well under 20 s on two busy cores.
#define KEEL_TEST_SLOW (KEEL_TEST_TSAN ? 2 : KEEL_TEST_ASAN ? 1 : 0)
constexpr std::size_t kOffsetStep = KEEL_TEST_SLOW == 2 ? 11 : KEEL_TEST_SLOW == 1 ? 5 : 1;
constexpr std::size_t kAllIsaLengthStep = KEEL_TEST_SLOW == 0 ? 1 : 3;  // the in-process all-ISA run
constexpr std::size_t kLongest = KEEL_TEST_SLOW == 0 ? 300000 : 70000;

// ----------------------------------------------------------- naive twins ---
std::size_t naive_find(std::string_view h, char c) {
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (h[i] == c) return i;
  }
  return npos;
}
std::size_t naive_rfind(std::string_view h, char c) {
  for (std::size_t i = h.size(); i > 0; --i) {
    if (h[i - 1] == c) return i - 1;
  }
  return npos;
}
std::size_t naive_set(std::string_view h, std::string_view set) {
  for (std::size_t i = 0; i < h.size(); ++i) {
    for (char s : set) {
      if (h[i] == s) return i;
    }
  }
  return npos;
}
std::size_t naive_count(std::string_view h, char c) {
  std::size_t n = 0;
  for (char x : h) n += x == c ? 1u : 0u;
  return n;
}
std::size_t naive_sub(std::string_view h, std::string_view s) {
  if (s.size() > h.size()) return npos;
  for (std::size_t i = 0; i + s.size() <= h.size(); ++i) {
    if (h.substr(i, s.size()) == s) return i;
  }
  return npos;
}
std::size_t naive_icase(std::string_view h, std::string_view s);
std::size_t naive_rsub(std::string_view h, std::string_view s);
std::vector<std::size_t> naive_matches(std::string_view h, char c) {
  std::vector<std::size_t> out;
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (h[i] == c) out.push_back(i);
  }
  return out;
}

const uchar* u(std::string_view s) {
  return reinterpret_cast<const uchar*>(s.data());
}

// Collects mismatches instead of asserting each of the millions of checks.
struct Failures {
  std::size_t count = 0;
  std::string first;
  // `what` builds the message, only on failure (the checks run millions of times).
  template <class What>
  void check(bool ok, What&& what) {
    if (ok) return;
    if (count++ == 0) {
      if constexpr (std::is_invocable_v<What>) {
        first = what();
      } else {
        first = std::string(what);
      }
    }
  }
};
#define KEEL_EXPECT_ALL(f)    \
  do {                        \
    INFO((f).first);          \
    REQUIRE((f).count == 0u); \
  } while (false)

std::string describe(const char* fn, std::string_view h, std::size_t got, std::size_t want) {
  std::string s = std::string(fn) + " len=" + std::to_string(h.size()) + " got=" + std::to_string(got) +
                  " want=" + std::to_string(want) + " isa=" + std::string(ks::active_isa()) + " hay=";
  for (char ch : h.substr(0, 80)) {
    const auto c = static_cast<uchar>(ch);
    s += c >= 32 && c < 127 ? std::string(1, static_cast<char>(c)) : "\\x" + std::to_string(c);
  }
  return s;
}

// Checks every function on one haystack through one kernel table (or the
// public API when k is null).
void check_all(Failures& f, std::string_view h, const Kernels* k, std::mt19937& rng,
               std::string_view alphabet) {
  const auto pick = [&] { return alphabet[rng() % alphabet.size()]; };
  const char c = h.empty() || rng() % 4 == 0 ? pick() : h[rng() % h.size()];
  const char c2 = pick();
  const char c3 = pick();
  const auto n = h.size();
  const uchar uc = static_cast<uchar>(c);
  if (k == nullptr) {
    f.check(ks::find(h, c) == naive_find(h, c),
            [&] { return describe("find", h, ks::find(h, c), naive_find(h, c)); });
    f.check(ks::rfind(h, c) == naive_rfind(h, c),
            [&] { return describe("rfind", h, ks::rfind(h, c), naive_rfind(h, c)); });
    f.check(ks::count(h, c) == naive_count(h, c),
            [&] { return describe("count", h, ks::count(h, c), naive_count(h, c)); });
    const char two[] = {c, c2};
    const char three[] = {c, c2, c3};
    f.check(ks::find_any(h, c, c2) == naive_set(h, {two, 2}),
            [&] { return describe("find_any2", h, ks::find_any(h, c, c2), 0); });
    f.check(ks::find_any(h, c2, c3, c) == naive_set(h, {three, 3}),
            [&] { return describe("find_any3", h, ks::find_any(h, c2, c3, c), 0); });
    std::string set;
    const std::size_t set_size = rng() % 20;
    for (std::size_t i = 0; i < set_size; ++i) set += pick();
    f.check(ks::find_first_of(h, set) == naive_set(h, set),
            [&] { return describe("find_first_of", h, 0, 0) + " set=" + set; });
    // A needle cut from the haystack (found) or made up (maybe not).
    std::string needle;
    if (n > 0 && rng() % 2 == 0) {
      const std::size_t at = rng() % n;
      needle = std::string(h.substr(at, 1 + rng() % 12));
    } else {
      const std::size_t len = rng() % 10;
      for (std::size_t i = 0; i < len; ++i) needle += pick();
    }
    f.check(ks::find(h, needle) == naive_sub(h, needle), [&] {
      return describe("find(substring)", h, ks::find(h, needle), naive_sub(h, needle)) + " needle=" + needle;
    });
    std::vector<std::size_t> got;
    for (std::size_t pos : ks::matches(h, c)) got.push_back(pos);
    f.check(got == naive_matches(h, c),
            [&] { return describe("matches", h, got.size(), naive_matches(h, c).size()); });
    return;
  }
  const uchar* p = u(h);
  f.check(k->find(p, n, uc) == naive_find(h, c),
          [&] { return describe("k.find", h, k->find(p, n, uc), naive_find(h, c)); });
  f.check(k->rfind(p, n, uc) == naive_rfind(h, c),
          [&] { return describe("k.rfind", h, k->rfind(p, n, uc), naive_rfind(h, c)); });
  f.check(k->count(p, n, uc) == naive_count(h, c),
          [&] { return describe("k.count", h, k->count(p, n, uc), naive_count(h, c)); });
  const char two[] = {c, c2};
  const char three[] = {c, c2, c3};
  f.check(k->find_any2(p, n, uc, static_cast<uchar>(c2)) == naive_set(h, {two, 2}),
          [&] { return describe("k.any2", h, 0, 0); });
  f.check(k->find_any3(p, n, static_cast<uchar>(c3), static_cast<uchar>(c2), uc) == naive_set(h, {three, 3}),
          [&] { return describe("k.any3", h, 0, 0); });
  std::string set;
  const std::size_t set_size = rng() % 40;
  for (std::size_t i = 0; i < set_size; ++i) set += pick();
  f.check(k->find_set(p, n, ks::ByteSet(set)) == naive_set(h, set),
          [&] { return describe("k.find_set", h, 0, 0); });
  std::string needle;
  if (n > 0 && rng() % 2 == 0) {
    const std::size_t at = rng() % n;
    needle = std::string(h.substr(at, 1 + rng() % 40));
  } else {
    const std::size_t len = rng() % 10;
    for (std::size_t i = 0; i < len; ++i) needle += pick();
  }
  const std::size_t sub = k->find_sub(p, n, u(needle), needle.size());
  f.check(sub == naive_sub(h, needle),
          [&] { return describe("k.find_sub", h, sub, naive_sub(h, needle)) + " needle=" + needle; });
  const std::size_t rsub = k->rfind_sub(p, n, u(needle), needle.size());
  f.check(rsub == naive_rsub(h, needle),
          [&] { return describe("k.rfind_sub", h, rsub, naive_rsub(h, needle)) + " needle=" + needle; });
  std::string folded = needle;
  for (char& ch : folded) {
    if (rng() % 2 == 0 && ((ch | 0x20) >= 'a' && (ch | 0x20) <= 'z')) ch = static_cast<char>(ch ^ 0x20);
  }
  const std::size_t icase = k->find_icase(p, n, u(folded), folded.size());
  f.check(icase == naive_icase(h, folded),
          [&] { return describe("k.find_icase", h, icase, naive_icase(h, folded)) + " needle=" + folded; });
  std::vector<std::size_t> got;
  for (std::size_t from = 0;;) {
    const auto b = k->next_block(p, n, uc, from);
    if (b.base == npos) break;
    for (std::uint64_t m = b.mask; m != 0; m &= m - 1) {
      got.push_back(b.base + static_cast<std::size_t>(__builtin_ctzll(m)));
    }
    from = b.base + 64;
  }
  f.check(got == naive_matches(h, c),
          [&] { return describe("k.next_block", h, got.size(), naive_matches(h, c).size()); });
}

std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
  return s;
}

// The alphabets of the differential runs: two letters (dense matches and
// many substring candidates), every byte value (signedness), and text.
const std::array<std::string, 3>& alphabets() {
  static const std::array<std::string, 3> a = {std::string("ab"), all_bytes(),
                                               std::string("the quick brown fox\n\r\t,;:\"\xc3\xa9")};
  return a;
}

// The kernel levels of this architecture, lowest first.
std::vector<Isa> all_levels() {
#if defined(__aarch64__)
  return {Isa::scalar, Isa::neon};
#else
  return {Isa::scalar, Isa::sse2, Isa::avx2, Isa::avx512};
#endif
}

std::vector<Isa> supported_levels() {
  std::vector<Isa> out;
  for (Isa i : all_levels()) {
    if (static_cast<int>(i) <= static_cast<int>(ks::supported_isa())) out.push_back(i);
  }
  return out;
}

// The kernel table of every supported level, and on x86 the AVX-512 table
// the dispatcher passes over on this CPU (plain or VBMI: Teddy differs).
std::vector<std::pair<std::string, const Kernels*>> kernel_tables() {
  std::vector<std::pair<std::string, const Kernels*>> out;
  for (Isa isa : supported_levels()) out.emplace_back(ks::to_string(isa), &ks::detail::kernels_for(isa));
#ifdef KEEL_SIMD_X86
  if (ks::supported_isa() == Isa::avx512) {
    const Kernels* picked = &ks::detail::kernels_for(Isa::avx512);
    if (picked != &ks::detail::kAvx512Kernels) out.emplace_back("avx512 plain", &ks::detail::kAvx512Kernels);
    if (ks::detail::has_vbmi() && picked != &ks::detail::kAvx512VbmiKernels) {
      out.emplace_back("avx512 vbmi", &ks::detail::kAvx512VbmiKernels);
    }
  }
#endif
  return out;
}

// Every length 0-300 at every offset 0-63 from a 64-byte boundary.
void differential(const Kernels* k, std::uint32_t seed, std::size_t len_step = 1) {
  std::mt19937 rng(seed);
  Failures f;
  alignas(64) static char buf[64 + 320];
  for (const std::string& alphabet : alphabets()) {
    for (std::size_t len = 0; len <= 300; len += len_step) {
      for (std::size_t off = (len % kOffsetStep); off < 64; off += kOffsetStep) {
        for (std::size_t i = 0; i < len; ++i) buf[off + i] = alphabet[rng() % alphabet.size()];
        check_all(f, std::string_view(buf + off, len), k, rng, alphabet);
      }
    }
  }
  KEEL_EXPECT_ALL(f);
}

}  // namespace

TEST_CASE("active isa names the level in use and honours KEEL_SIMD", "[simd][isa]") {
  const std::string_view active = ks::active_isa();
  const Isa supported = ks::supported_isa();
  WARN("simd: active kernels " << active << ", CPU supports up to " << ks::to_string(supported));
  for (Isa i : all_levels()) {
    if (static_cast<int>(i) > static_cast<int>(supported)) {
      WARN("simd: skipping the " << ks::to_string(i) << " kernels: this CPU/OS does not support them");
    }
  }
  CHECK(
      (active == "scalar" || active == "sse2" || active == "avx2" || active == "avx512" || active == "neon"));
  if (const char* env = std::getenv("KEEL_SIMD"); env != nullptr) {
    Isa forced{};
    REQUIRE(ks::detail::parse_isa(env, forced));
    const Isa expect = static_cast<int>(forced) <= static_cast<int>(supported) ? forced : supported;
    if (expect != forced)
      WARN("simd: KEEL_SIMD=" << env << " not supported here; testing " << ks::to_string(expect));
    CHECK(active == ks::to_string(expect));
  } else {
#if defined(__aarch64__)
    // NEON is part of AArch64: without KEEL_SIMD the NEON kernels run (ctest
    // relies on it and forces only the scalar level again on this architecture).
    CHECK(active == "neon");
#endif
  }
  Isa parsed{};
  CHECK_FALSE(ks::detail::parse_isa("avx1024", parsed));
  CHECK(ks::to_string(Isa::avx2) == "avx2");
}

TEST_CASE("public API matches naive loops at every length 0-300 and offset 0-63", "[simd][isa]") {
  differential(nullptr, 1234);
}

TEST_CASE("every supported ISA's kernels match naive loops", "[simd]") {
  for (Isa isa : supported_levels()) REQUIRE(ks::detail::kernels_for(isa).isa == isa);
  for (const auto& [name, k] : kernel_tables()) {
    INFO("kernels " << name);
    differential(k, 99 + static_cast<std::uint32_t>(k->isa), kAllIsaLengthStep);
  }
}

TEST_CASE("long haystacks: matches near the end, dense, and absent", "[simd][isa]") {
  std::mt19937 rng(7);
  Failures f;
  for (std::size_t n : {std::size_t{1000}, std::size_t{4096}, std::size_t{65537}, kLongest}) {
    std::string h(n, 'x');
    h[n - 1] = 'y';
    h[n / 2 + 3] = '\n';
    for (Isa isa : supported_levels()) {
      const Kernels& k = ks::detail::kernels_for(isa);
      f.check(k.find(u(h), n, 'y') == n - 1, "find end");
      f.check(k.rfind(u(h), n, '\n') == n / 2 + 3, "rfind mid");
      f.check(k.find(u(h), n, 'z') == npos, "find absent");
      f.check(k.count(u(h), n, 'x') == n - 2, "count dense");
      f.check(k.find_any3(u(h), n, 'q', 'y', 'w') == n - 1, "any3 end");
      f.check(k.find_set(u(h), n, ks::ByteSet("abcdefgy")) == n - 1, "set end");
    }
    for (int rep = 0; rep < 3; ++rep) check_all(f, h, nullptr, rng, "xy\n");
  }
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("bytes 0x80-0xff work through a signed char", "[simd]") {
  std::string h(100, '\x7f');
  h[70] = '\xff';
  h[80] = '\x80';
  CHECK(ks::find(h, '\xff') == 70);
  CHECK(ks::rfind(h, '\x80') == 80);
  CHECK(ks::find_any(h, '\x80', '\xff') == 70);
  CHECK(ks::find_first_of(h, "\x90\x80") == 80);
  CHECK(ks::count(h, '\x7f') == 98);
  CHECK(ks::find(h, "\x7f\x80\x7f") == 79);
}

TEST_CASE("find_first_of with sets of every size up to 256", "[simd]") {
  std::mt19937 rng(3);
  Failures f;
  std::string h(500, '\0');
  for (auto& c : h) c = static_cast<char>(rng());
  for (std::size_t size = 0; size <= 256; ++size) {
    std::string set;
    for (std::size_t i = 0; i < size; ++i) set += static_cast<char>(rng());
    ks::ByteSet bs(set);
    for (Isa isa : supported_levels()) {
      const Kernels& k = ks::detail::kernels_for(isa);
      for (std::size_t start : {0u, 200u, 470u}) {
        const std::string_view sub = std::string_view(h).substr(start);
        f.check(k.find_set(u(sub), sub.size(), bs) == naive_set(sub, set),
                [&] { return "set size " + std::to_string(size); });
      }
    }
    f.check(ks::find_first_of(h, set) == naive_set(h, set),
            [&] { return "api set size " + std::to_string(size); });
  }
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("ByteSet counts distinct bytes", "[simd]") {
  constexpr ks::ByteSet set(std::string_view("aab\0c\xff", 6));
  static_assert(set.size() == 5);
  static_assert(set.contains('\0') && set.contains(0xff) && !set.contains('d'));
  CHECK(ks::ByteSet().empty());
  CHECK(ks::find_first_of("hello", ks::ByteSet()) == npos);
}

TEST_CASE("no read crosses into a guard page at either end", "[simd][isa]") {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void* mem = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  auto* base = static_cast<char*>(mem);
  REQUIRE(mprotect(base, page, PROT_NONE) == 0);
  REQUIRE(mprotect(base + 2 * page, page, PROT_NONE) == 0);
  char* mid = base + page;
  std::memset(mid, 'a', page);
  std::mt19937 rng(11);
  Failures f;
  std::vector<std::size_t> lengths;
  for (std::size_t n = 0; n <= 300; ++n) lengths.push_back(n);
  lengths.push_back(page);
  for (std::size_t n : lengths) {
    for (const char* start : {mid, mid + page - n}) {  // flush with the page before, then the page after
      const std::string_view h(start, n);
      for (Isa isa : supported_levels()) {
        const Kernels& k = ks::detail::kernels_for(isa);
        f.check(k.find(u(h), n, 'z') == npos, "find");
        f.check(k.rfind(u(h), n, 'z') == npos, "rfind");
        f.check(k.count(u(h), n, 'a') == n, "count");
        f.check(k.find_any3(u(h), n, 'x', 'y', 'z') == npos, "any3");
        f.check(k.find_set(u(h), n, ks::ByteSet("wxyz0123")) == npos, "set");
        f.check(k.next_block(u(h), n, 'b', 0).base == npos, "next_block");
      }
      for (const auto& [name, k] : kernel_tables()) {
        // Rare bytes 1, 2 and 7 apart, the same value or two.
        for (const char* needle : {"aab", "abaaaab", "baaaaaaab"}) {
          const std::size_t m = std::strlen(needle);
          f.check(k->find_sub(u(h), n, u(needle), m) == npos, [&] { return name + " sub " + needle; });
          f.check(k->rfind_sub(u(h), n, u(needle), m) == npos, [&] { return name + " rsub " + needle; });
        }
      }
      check_all(f, h, nullptr, rng, "ab");
    }
  }
  munmap(mem, 3 * page);
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("substring search is correct on adversarial and periodic inputs", "[simd][isa]") {
  Failures f;
  // "aaa...ab" needles in runs of 'a' (the quadratic case of naive search).
  const std::string hay(200000, 'a');
  for (std::size_t m : {2u, 3u, 16u, 33u, 100u, 1000u}) {
    const std::string needle = std::string(m - 1, 'a') + "b";
    f.check(ks::find(hay, needle) == npos, [&] { return "aaab absent m=" + std::to_string(m); });
    const std::string with = hay + "b";
    f.check(ks::find(with, needle) == with.size() - m, [&] { return "aaab at end m=" + std::to_string(m); });
    const std::string needle2 = "b" + std::string(m - 1, 'a');
    f.check(ks::find(with, needle2) == npos, [&] { return "baaa absent m=" + std::to_string(m); });
  }
  // Periodic needles and haystacks built from the same period, with a
  // mismatch late in the needle so every candidate verifies far.
  for (std::string unit : {"ab", "aab", "abcabd", "abababac"}) {
    std::string h;
    while (h.size() < 50000) h += unit;
    std::string needle;
    while (needle.size() < 300) needle += unit;
    const std::string miss = needle + "Z";
    f.check(ks::find(h, needle) == naive_sub(h, needle), [&] { return "periodic " + unit; });
    f.check(ks::find(h, miss) == npos, [&] { return "periodic miss " + unit; });
    const std::string h2 = h + miss;
    f.check(ks::find(h2, miss) == h.size(), [&] { return "periodic found at end " + unit; });
    for (const auto& [name, k] : kernel_tables()) {
      f.check(k->find_sub(u(h2), h2.size(), u(miss), miss.size()) == h.size(),
              [&] { return name + " kernel periodic " + unit; });
    }
  }
  f.check(ks::find("abc", "") == 0, "empty needle");
  f.check(ks::find("", "") == 0, "empty both");
  f.check(ks::find("", "a") == npos, "empty hay");
  f.check(ks::find("ab", "abc") == npos, "needle longer");
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("substring search finds a match in any block of a long haystack, both ways", "[simd][isa]") {
  // Haystacks of 200-3200 bytes at every alignment, so the prefilter's
  // groups of blocks, their candidate bits and the blocks after them are all
  // exercised: text over a few letters where a needle of 8 or more bytes
  // occurs about once (the match can sit in any block) and over "ab" where
  // candidates fail often enough to hand over to Two-Way.
  std::mt19937 rng(23);
  Failures f;
  std::string buf(3200 + 64, 'a');
  for (int round = 0; round < 400; ++round) {
    const std::size_t off = rng() % 64;
    const std::size_t n = 200 + rng() % 3000;
    const std::string_view alphabet = round % 3 == 2 ? "ab" : "aaaaaaabbbcd";
    for (std::size_t i = 0; i < n; ++i) buf[off + i] = alphabet[rng() % alphabet.size()];
    const std::string_view h(buf.data() + off, n);
    const std::size_t m = round % 3 == 2 ? 2 + rng() % 20 : 8 + rng() % 24;
    std::string needle;
    if (rng() % 4 != 0) {
      needle = std::string(h.substr(rng() % (n - m + 1), m));
    } else {
      for (std::size_t i = 0; i < m; ++i) needle += alphabet[rng() % alphabet.size()];
    }
    const std::size_t fwd = naive_sub(h, needle);
    const std::size_t bwd = naive_rsub(h, needle);
    f.check(ks::find(h, needle) == fwd, [&] { return describe("find", h, ks::find(h, needle), fwd); });
    f.check(ks::rfind(h, needle) == bwd, [&] { return describe("rfind", h, ks::rfind(h, needle), bwd); });
    for (const auto& [name, k] : kernel_tables()) {
      const std::size_t got = k->find_sub(u(h), n, u(needle), m);
      const std::size_t rgot = k->rfind_sub(u(h), n, u(needle), m);
      f.check(got == fwd, [&] { return name + " " + describe("k.find_sub", h, got, fwd); });
      f.check(rgot == bwd, [&] { return name + " " + describe("k.rfind_sub", h, rgot, bwd); });
    }
  }
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("substring search with the same rare byte twice, or two different ones, across groups",
          "[simd][isa]") {
  // "q?q" needles (the rare pair is one byte value, a one-instruction pair
  // test on AVX-512) and "q??z" needles (two values), 1 to 8 apart, each planted at every
  // 97th start of haystacks that cross several groups of 16 blocks, with
  // decoys holding one rare byte or both at the wrong distance.
  Failures f;
  for (const std::string needle :
       {"qaqee", "eqaqe", "qaaz", "eeqaazee", "qeeeeeeq", "qaaaaaaz", "zaaaaaaq", "qaaaaaaaz", "qeeeeeeeq"}) {
    for (std::size_t n : {std::size_t{1023}, std::size_t{1024 + 77}, std::size_t{3 * 1024 + 5}}) {
      std::string h(n, 'e');
      for (std::size_t i = 0; i < n; i += 7) h[i] = 'q';
      for (std::size_t i = 3; i < n; i += 11) h[i] = 'z';
      for (std::size_t at = 0; at + needle.size() <= n; at += 97) {
        std::string g = h;
        g.replace(at, needle.size(), needle);
        const std::size_t fwd = naive_sub(g, needle);
        const std::size_t bwd = naive_rsub(g, needle);
        for (const auto& [name, k] : kernel_tables()) {
          const std::size_t got = k->find_sub(u(g), n, u(needle), needle.size());
          const std::size_t rgot = k->rfind_sub(u(g), n, u(needle), needle.size());
          f.check(got == fwd, [&] {
            return name + " find " + needle + " at " + std::to_string(at) + ": " + std::to_string(got) +
                   " want " + std::to_string(fwd);
          });
          f.check(rgot == bwd, [&] {
            return name + " rfind " + needle + " at " + std::to_string(at) + ": " + std::to_string(rgot) +
                   " want " + std::to_string(bwd);
          });
        }
      }
    }
  }
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("Two-Way matches naive search", "[simd]") {
  rc::prop("two_way == naive", [] {
    const auto alphabet = *rc::gen::element(std::string("ab"), std::string("abc"), std::string("abcdefgh"));
    const auto hlen = *rc::gen::inRange<std::size_t>(0, 200);
    const auto nlen = *rc::gen::inRange<std::size_t>(1, 20);
    std::string h, s;
    for (std::size_t i = 0; i < hlen; ++i) h += *rc::gen::elementOf(alphabet);
    for (std::size_t i = 0; i < nlen; ++i) s += *rc::gen::elementOf(alphabet);
    RC_ASSERT(ks::detail::two_way(u(h), h.size(), u(s), s.size()) == naive_sub(h, s));
  });
}

TEST_CASE("properties: every function agrees with its naive twin", "[simd][isa]") {
  rc::prop("random haystacks over small alphabets", [] {
    const auto alphabet = *rc::gen::element(std::string("ab"), std::string("\n\r ab\xff"), all_bytes());
    const auto hlen = *rc::gen::inRange<std::size_t>(0, 400);
    std::string h;
    for (std::size_t i = 0; i < hlen; ++i) h += *rc::gen::elementOf(alphabet);
    const char c = *rc::gen::elementOf(alphabet);
    const char d = *rc::gen::elementOf(alphabet);
    const char e = *rc::gen::elementOf(alphabet);
    const auto set = *rc::gen::container<std::string>(rc::gen::elementOf(alphabet));
    const auto needle = *rc::gen::container<std::string>(rc::gen::elementOf(alphabet));
    const char two[] = {c, d};
    const char three[] = {c, d, e};
    RC_ASSERT(ks::find(h, c) == naive_find(h, c));
    RC_ASSERT(ks::rfind(h, c) == naive_rfind(h, c));
    RC_ASSERT(ks::count(h, c) == naive_count(h, c));
    RC_ASSERT(ks::find_any(h, c, d) == naive_set(h, {two, 2}));
    RC_ASSERT(ks::find_any(h, c, d, e) == naive_set(h, {three, 3}));
    RC_ASSERT(ks::find_first_of(h, set) == naive_set(h, set));
    RC_ASSERT(ks::find(h, needle) == naive_sub(h, needle));
    std::vector<std::size_t> got;
    for (std::size_t pos : ks::matches(h, c)) got.push_back(pos);
    RC_ASSERT(got == naive_matches(h, c));
  });
}

TEST_CASE("span<const std::byte> overloads agree with string_view ones", "[simd]") {
  const std::string text = "GET /index.html HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n";
  const auto bytes = std::as_bytes(std::span(text.data(), text.size()));
  const auto b = [](char c) { return static_cast<std::byte>(c); };
  CHECK(ks::find(bytes, b('\r')) == ks::find(text, '\r'));
  CHECK(ks::rfind(bytes, b('\n')) == text.size() - 1);
  CHECK(ks::find_any(bytes, b(':'), b('\r')) == ks::find_any(text, ':', '\r'));
  CHECK(ks::find_any(bytes, b(':'), b('/'), b('x')) == ks::find_any(text, ':', '/', 'x'));
  CHECK(ks::count(bytes, b('\n')) == 4);
  const std::string set = "*:";
  CHECK(ks::find_first_of(bytes, std::as_bytes(std::span(set.data(), set.size()))) ==
        ks::find_first_of(text, set));
  const std::string needle = "Host:";
  CHECK(ks::find(bytes, std::as_bytes(std::span(needle.data(), needle.size()))) == text.find(needle));
  std::size_t lines = 0;
  for (std::size_t pos : ks::matches(bytes, b('\n'))) {
    CHECK(text[pos] == '\n');
    ++lines;
  }
  CHECK(lines == 4);
}

TEST_CASE("matches is a forward range", "[simd]") {
  const std::string h = std::string(130, '.') + "x" + std::string(70, '.') + "x";
  auto r = ks::matches(h, 'x');
  auto it = r.begin();
  auto copy = it;
  REQUIRE(it != r.end());
  CHECK(*it == 130);
  CHECK(*it++ == 130);
  CHECK(*copy == 130);  // copies are independent
  CHECK(*it == 201);
  ++it;
  CHECK(it == r.end());
  CHECK(it == std::default_sentinel);
  static_assert(std::forward_iterator<ks::MatchRange::iterator>);
  CHECK(ks::matches("", 'x').begin() == ks::matches("", 'x').end());
  CHECK(static_cast<std::size_t>(std::distance(r.begin(), r.end())) == 2);
}

// ------------------------------------------ icase, rfind, MultiFinder ---
namespace {

char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c;
}
std::size_t naive_icase(std::string_view h, std::string_view s) {
  if (s.size() > h.size()) return npos;
  for (std::size_t i = 0; i + s.size() <= h.size(); ++i) {
    bool ok = true;
    for (std::size_t j = 0; j < s.size() && ok; ++j) ok = lower(h[i + j]) == lower(s[j]);
    if (ok) return i;
  }
  return npos;
}
std::size_t naive_rsub(std::string_view h, std::string_view s) {
  if (s.size() > h.size()) return npos;
  for (std::size_t i = h.size() - s.size() + 1; i-- > 0;) {
    if (h.substr(i, s.size()) == s) return i;
  }
  return npos;
}
ks::MultiMatch naive_multi(std::string_view h, const std::vector<std::string>& needles, std::size_t from,
                           bool icase) {
  for (std::size_t i = from; i <= h.size(); ++i) {
    for (std::size_t k = 0; k < needles.size(); ++k) {
      const std::string_view s = needles[k];
      if (s.size() > h.size() - i) continue;
      const std::string_view at = h.substr(i, s.size());
      if (icase ? naive_icase(at, s) == 0 : at == s) return {i, k};
    }
  }
  return {};
}
std::vector<ks::MultiMatch> naive_multi_all(std::string_view h, const std::vector<std::string>& needles,
                                            bool icase) {
  std::vector<ks::MultiMatch> out;
  for (std::size_t from = 0;;) {
    const ks::MultiMatch m = naive_multi(h, needles, from, icase);
    if (!m) break;
    out.push_back(m);
    from = m.pos + std::max<std::size_t>(needles[m.index].size(), 1);
  }
  return out;
}
std::vector<ks::MultiMatch> all_of(const ks::MultiFinder& f, std::string_view h) {
  std::vector<ks::MultiMatch> out;
  for (ks::MultiMatch m : f.matches(h)) out.push_back(m);
  return out;
}

// Random case flips of a string.
std::string flip_case(std::string s, std::mt19937& rng) {
  for (char& c : s) {
    if (std::isalpha(static_cast<unsigned char>(c)) != 0 && rng() % 2 == 0) c = static_cast<char>(c ^ 0x20);
  }
  return s;
}

// Checks find_icase, rfind(substring) and MultiFinder on one haystack.
void check_more(Failures& f, std::string_view h, std::mt19937& rng, std::string_view alphabet) {
  const auto pick = [&] { return alphabet[rng() % alphabet.size()]; };
  const auto make_needle = [&](std::size_t max_len) {
    std::string needle;
    if (!h.empty() && rng() % 2 == 0) {
      needle = std::string(h.substr(rng() % h.size(), rng() % (max_len + 1)));
    } else {
      const std::size_t len = rng() % (max_len + 1);
      for (std::size_t i = 0; i < len; ++i) needle += pick();
    }
    return needle;
  };
  const std::string needle = flip_case(make_needle(20), rng);
  f.check(ks::find_icase(h, needle) == naive_icase(h, needle), [&] {
    return describe("find_icase", h, ks::find_icase(h, needle), naive_icase(h, needle)) + " needle=" + needle;
  });
  const std::string rneedle = make_needle(20);
  f.check(ks::rfind(h, rneedle) == naive_rsub(h, rneedle), [&] {
    return describe("rfind(substring)", h, ks::rfind(h, rneedle), naive_rsub(h, rneedle)) +
           " needle=" + rneedle;
  });
  std::vector<std::string> needles(1 + rng() % (rng() % 4 == 0 ? 70 : 8));
  for (auto& s : needles) s = make_needle(rng() % 3 == 0 ? 20 : 4);
  if (rng() % 4 != 0) {  // empty needles match everywhere: keep them rarer
    for (auto& s : needles) {
      if (s.empty()) s = std::string(1, pick());
    }
  }
  const bool icase = rng() % 3 == 0;
  if (icase) {
    for (auto& s : needles) s = flip_case(s, rng);
  }
  const ks::MultiFinder finder(needles, icase ? ks::Case::ascii_insensitive : ks::Case::sensitive);
  const auto want = naive_multi_all(h, needles, icase);
  const auto got = all_of(finder, h);
  f.check(got == want, [&] {
    std::string s =
        describe("MultiFinder", h, got.size(), want.size()) + " icase=" + std::to_string(icase) + " needles=";
    for (const auto& n : needles) s += "[" + n + "]";
    for (std::size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
      if (!(got[i] == want[i])) {
        s += " first diff #" + std::to_string(i) + " got " + std::to_string(got[i].pos) + "/" +
             std::to_string(got[i].index) + " want " + std::to_string(want[i].pos) + "/" +
             std::to_string(want[i].index);
        break;
      }
    }
    return s;
  });
}

// Every length 0-300 at every offset 0-63, as differential() does.
void differential_more(std::uint32_t seed) {
  std::mt19937 rng(seed);
  Failures f;
  alignas(64) static char buf[64 + 320];
  const std::array<std::string, 3> alpha = {std::string("aB"), std::string("abAB\xc3\xe3 "), all_bytes()};
  for (const std::string& alphabet : alpha) {
    for (std::size_t len = 0; len <= 300; ++len) {
      for (std::size_t off = (len % kOffsetStep); off < 64; off += kOffsetStep) {
        for (std::size_t i = 0; i < len; ++i) buf[off + i] = alphabet[rng() % alphabet.size()];
        check_more(f, std::string_view(buf + off, len), rng, alphabet);
      }
    }
  }
  KEEL_EXPECT_ALL(f);
}

}  // namespace

TEST_CASE("find_icase, rfind(substring) and MultiFinder match naive loops at every length and offset",
          "[simd][isa]") {
  differential_more(4321);
}

TEST_CASE("properties: find_icase, rfind(substring) and MultiFinder agree with naive twins", "[simd][isa]") {
  rc::prop("random haystacks 0-300 over small alphabets, needles 0-20, 1-70 needles", [] {
    const auto alphabet =
        *rc::gen::element(std::string("ab"), std::string("aAbB"), std::string("xyXY\xe9\xc9 "), all_bytes());
    const auto hlen = *rc::gen::inRange<std::size_t>(0, 301);
    std::string h;
    for (std::size_t i = 0; i < hlen; ++i) h += *rc::gen::elementOf(alphabet);
    const auto needle_gen = rc::gen::container<std::string>(rc::gen::elementOf(alphabet));
    const auto small = [&] {
      std::string s = *needle_gen;
      if (s.size() > 20) s.resize(20);
      return s;
    };
    const std::string needle = small();
    RC_ASSERT(ks::find_icase(h, needle) == naive_icase(h, needle));
    RC_ASSERT(ks::rfind(h, needle) == naive_rsub(h, needle));
    const auto count = *rc::gen::inRange<std::size_t>(1, 71);
    std::vector<std::string> needles;
    for (std::size_t i = 0; i < count; ++i) needles.push_back(small());
    const bool icase = *rc::gen::arbitrary<bool>();
    const ks::MultiFinder finder(needles, icase ? ks::Case::ascii_insensitive : ks::Case::sensitive);
    RC_ASSERT(all_of(finder, h) == naive_multi_all(h, needles, icase));
    const auto from = *rc::gen::inRange<std::size_t>(0, hlen + 2);
    RC_ASSERT(finder.find(h, from) == naive_multi(h, needles, from, icase));
  });
}

TEST_CASE("find_icase, rfind and MultiFinder never read past a guard page", "[simd][isa]") {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void* mem = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  auto* base = static_cast<char*>(mem);
  REQUIRE(mprotect(base, page, PROT_NONE) == 0);
  REQUIRE(mprotect(base + 2 * page, page, PROT_NONE) == 0);
  char* mid = base + page;
  std::mt19937 rng(17);
  for (std::size_t i = 0; i < page; ++i) mid[i] = "aAb"[rng() % 3];
  Failures f;
  const ks::MultiFinder finder({"aab", "bbb", "AbA"});
  const ks::MultiFinder one({"b"});
  for (std::size_t n = 0; n <= 300; ++n) {
    for (const char* start : {mid, mid + page - n}) {
      const std::string_view h(start, n);
      for (std::string_view s : {"ab", "aAbaB", "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", "b"}) {
        f.check(ks::find_icase(h, s) == naive_icase(h, s), "find_icase");
        f.check(ks::rfind(h, s) == naive_rsub(h, s), "rfind");
      }
      f.check(finder.find(h) == naive_multi(h, {"aab", "bbb", "AbA"}, 0, false), "multi");
      f.check(all_of(one, h).size() == naive_count(h, 'b'), "multi one");
      check_more(f, h, rng, "aAb");
    }
  }
  munmap(mem, 3 * page);
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("find_icase, rfind and MultiFinder stay linear on adversarial inputs", "[simd][isa]") {
  // Correctness here; the work is bounded by construction (see the header).
  Failures f;
  const std::string hay(200000, 'a');
  const std::string with = hay + "b";
  for (std::size_t m : {2u, 3u, 16u, 33u, 100u, 1000u}) {
    const std::string aab = std::string(m - 1, 'a') + "b";
    const std::string baa = "b" + std::string(m - 1, 'a');
    const std::string upper = std::string(m - 1, 'A') + "B";
    f.check(ks::find_icase(hay, upper) == npos, "icase absent");
    f.check(ks::find_icase(with, upper) == with.size() - m, "icase at end");
    f.check(ks::rfind(hay, baa) == npos, "rfind absent");
    f.check(ks::rfind("b" + hay, baa) == 0, "rfind at start");
    f.check(ks::rfind(with, aab) == with.size() - m, "rfind at end");
    const ks::MultiFinder finder({aab, std::string(m, 'c'), baa});
    f.check(!finder.find(hay), "multi absent");
    f.check(finder.find(with) == ks::MultiMatch{with.size() - m, 0}, "multi at end");
    const ks::MultiFinder shortest_last({std::string(m, 'a'), "a"});
    f.check(all_of(shortest_last, hay).size() == hay.size() / m + hay.size() % m, "dense matches");
  }
  // More needles than the SIMD filter takes.
  std::vector<std::string> many;
  for (std::size_t i = 0; i < 200; ++i)
    many.push_back(std::string(1 + i % 30, 'a') + static_cast<char>('b' + i % 20));
  const ks::MultiFinder big(many);
  f.check(!big.find(hay), "many absent");
  f.check(big.find(with) == naive_multi(with, many, 0, false), "many at end");
  KEEL_EXPECT_ALL(f);
}

TEST_CASE("MultiFinder: construction forms, ties, empty needles and ranges", "[simd]") {
  const std::vector<std::string_view> views = {"abc", "ab", "b"};
  const ks::MultiFinder from_vector(views);
  CHECK(from_vector.find("xxabcx") == ks::MultiMatch{2, 0});
  const ks::MultiFinder tie({"ab", "abc"});
  CHECK(tie.find("xabc") == ks::MultiMatch{1, 0});  // equal starts: lowest index
  const std::vector<std::string> strings = {"needle", "hay"};
  const ks::MultiFinder from_strings(strings);
  CHECK(from_strings.find("a haystack with a needle") == ks::MultiMatch{2, 1});
  CHECK(from_strings.size() == 2);
  CHECK(from_strings.needle_size(0) == 6);
  const std::array<std::string_view, 2> arr = {"x", "y"};
  CHECK(ks::MultiFinder(std::span(arr)).find("aay") == ks::MultiMatch{2, 1});
  CHECK(!ks::MultiFinder().find("abc"));
  const ks::MultiFinder empty({"zz", ""});
  CHECK(empty.find("abc") == ks::MultiMatch{0, 1});
  CHECK(all_of(empty, "ab").size() == 3);  // 0, 1, 2
  const ks::MultiFinder icase({"Hello", "WORLD"}, ks::Case::ascii_insensitive);
  CHECK(icase.find("say hELLo world") == ks::MultiMatch{4, 0});
  const auto m = all_of(icase, "world HELLO");
  REQUIRE(m.size() == 2);
  CHECK(m[1] == ks::MultiMatch{6, 0});
  static_assert(std::forward_iterator<ks::MultiFinder::Range::iterator>);
  CHECK(ks::find_icase("Content-LENGTH: 5", "content-length:") == 0);
  CHECK(ks::find_icase("\xc3\xa9t\xc3\xa9", "\xc3\x89") == npos);  // bytes >= 0x80 compare exactly
  CHECK(ks::rfind("abcabc", "") == 6);
  CHECK(ks::rfind("abcabc", "bc") == 4);
}

// Every Teddy kernel this CPU can run (the nibble form at each level and the
// VBMI byte-permute form) reports every start where some needle's fingerprint
// bytes match, and no start whose fingerprint runs past the end.
TEST_CASE("every Teddy kernel passes every start whose fingerprint matches a needle", "[simd]") {
  using ks::detail::MatchBlock;
  using ks::detail::TeddyTables;
  using Teddy = MatchBlock (*)(const ks::detail::uchar*, std::size_t, std::size_t, const TeddyTables&);
  std::vector<std::pair<const char*, Teddy>> kernels = {{"scalar", ks::detail::scalar_teddy_block}};
#ifdef KEEL_SIMD_X86
  if (static_cast<int>(ks::supported_isa()) >= static_cast<int>(Isa::avx2)) {
    kernels.emplace_back("avx2", ks::detail::avx2::teddy_block);
  }
  if (ks::supported_isa() == Isa::avx512) {
    kernels.emplace_back("avx512", ks::detail::avx512::teddy_block);
    if (ks::detail::has_vbmi()) kernels.emplace_back("avx512 vbmi", ks::detail::avx512::teddy_block_vbmi);
  }
#endif
  rc::prop("candidates cover the fingerprint matches", [&] {
    const std::string alphabet = *rc::gen::element(std::string("abAB"), std::string("ab\x80\xe1\xc1zZ"));
    const bool icase = *rc::gen::arbitrary<bool>();
    const auto count = *rc::gen::inRange<std::size_t>(1, 65);
    std::vector<std::string> needles(count);
    for (auto& s : needles) {
      const auto len = *rc::gen::inRange<std::size_t>(1, 6);
      for (std::size_t i = 0; i < len; ++i) s += *rc::gen::elementOf(alphabet);
    }
    const ks::detail::MultiPlan plan(
        count, [&](std::size_t i) { return std::string_view(needles[i]); }, icase);
    RC_ASSERT(plan.has_teddy());
    const TeddyTables& t = plan.teddy();
    const auto hlen = *rc::gen::inRange<std::size_t>(0, 300);
    std::string h;
    for (std::size_t i = 0; i < hlen; ++i) h += *rc::gen::elementOf(alphabet);
    const auto same = [&](char a, char b) {
      const auto x = static_cast<unsigned char>(a), y = static_cast<unsigned char>(b);
      return icase ? ks::detail::fold(x) == ks::detail::fold(y) : x == y;
    };
    std::vector<bool> want(hlen, false);
    for (std::size_t at = 0; at + t.k <= hlen; ++at) {
      for (const auto& s : needles) {
        bool all = true;
        for (std::size_t j = 0; j < t.k; ++j) all = all && same(h[at + j], s[j]);
        if (all) want[at] = true;
      }
    }
    for (const auto& [name, teddy] : kernels) {
      std::vector<bool> got(hlen, false);
      for (std::size_t pos = 0;;) {
        const MatchBlock b = teddy(u(h), hlen, pos, t);
        if (b.base == npos) break;
        RC_ASSERT(b.base >= pos);
        for (std::uint64_t m = b.mask; m != 0; m &= m - 1) {
          const std::size_t at = b.base + static_cast<std::size_t>(std::countr_zero(m));
          RC_ASSERT(at + t.k <= hlen);
          got[at] = true;
        }
        pos = b.base + 64;
      }
      for (std::size_t at = 0; at < hlen; ++at) {
        if (want[at] && !got[at]) RC_FAIL(std::string(name) + " missed start " + std::to_string(at));
      }
    }
  });
}
