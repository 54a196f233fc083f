// keel::simd on aarch64 (NEON), cross-compiled and run under qemu-user by the
// simd.aarch64 ctest test. RapidCheck is not available for the target, so
// every function is compared with a naive loop over seeded random haystacks
// at every length 0-300 and a spread of offsets, through the NEON and scalar
// kernel tables and the public API, plus guard pages and MultiFinder.
// Correctness only: qemu says nothing about speed.
#define CATCH_CONFIG_MAIN
#include <keel/simd.hpp>

#include <sys/mman.h>
#include <unistd.h>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <cstring>
#include <random>
#include <string>
#include <string_view>
#include <vector>

namespace ks = keel::simd;
using uchar = unsigned char;
using ks::npos;

namespace {

const uchar* u(std::string_view s) {
  return reinterpret_cast<const uchar*>(s.data());
}
char lower(char c) {
  return c >= 'A' && c <= 'Z' ? static_cast<char>(c | 0x20) : c;
}
bool eq_at(std::string_view h, std::size_t i, std::string_view s, bool icase) {
  if (s.size() > h.size() - i) return false;
  for (std::size_t j = 0; j < s.size(); ++j) {
    if (icase ? lower(h[i + j]) != lower(s[j]) : h[i + j] != s[j]) return false;
  }
  return true;
}
std::size_t naive_set(std::string_view h, std::string_view set) {
  for (std::size_t i = 0; i < h.size(); ++i) {
    if (set.find(h[i]) != std::string_view::npos) return i;
  }
  return npos;
}
std::size_t naive_sub(std::string_view h, std::string_view s, bool icase = false) {
  for (std::size_t i = 0; i + s.size() <= h.size(); ++i) {
    if (eq_at(h, i, s, icase)) return i;
  }
  return npos;
}
std::size_t naive_rsub(std::string_view h, std::string_view s) {
  if (s.size() > h.size()) return npos;
  for (std::size_t i = h.size() - s.size() + 1; i-- > 0;) {
    if (eq_at(h, i, s, false)) return i;
  }
  return npos;
}
std::size_t naive_count(std::string_view h, char c) {
  std::size_t n = 0;
  for (char x : h) n += x == c ? 1u : 0u;
  return n;
}
ks::MultiMatch naive_multi(std::string_view h, const std::vector<std::string>& needles, std::size_t from,
                           bool icase) {
  for (std::size_t i = from; i <= h.size(); ++i) {
    for (std::size_t k = 0; k < needles.size(); ++k) {
      if (eq_at(h, i, needles[k], icase)) return {i, k};
    }
  }
  return {};
}

struct Failures {
  std::size_t count = 0;
  std::string first;
  void check(bool ok, const std::string& what) {
    if (!ok && count++ == 0) first = what;
  }
};

std::string all_bytes() {
  std::string s;
  for (int i = 0; i < 256; ++i) s += static_cast<char>(i);
  return s;
}

void check_kernels(Failures& f, const ks::detail::Kernels& k, std::string_view h, std::mt19937& rng,
                   std::string_view alphabet) {
  const auto pick = [&] { return alphabet[rng() % alphabet.size()]; };
  const char c = h.empty() || rng() % 4 == 0 ? pick() : h[rng() % h.size()];
  const char c2 = pick(), c3 = pick();
  const std::size_t n = h.size();
  const uchar* p = u(h);
  const std::string tag = std::string(ks::to_string(k.isa)) + " len " + std::to_string(n);
  const auto uc = static_cast<uchar>(c);
  f.check(k.find(p, n, uc) == h.find(c), "find " + tag);
  f.check(k.rfind(p, n, uc) == h.rfind(c), "rfind " + tag);
  f.check(k.count(p, n, uc) == naive_count(h, c), "count " + tag);
  const char two[] = {c, c2}, three[] = {c, c2, c3};
  f.check(k.find_any2(p, n, uc, static_cast<uchar>(c2)) == naive_set(h, {two, 2}), "any2 " + tag);
  f.check(k.find_any3(p, n, uc, static_cast<uchar>(c2), static_cast<uchar>(c3)) == naive_set(h, {three, 3}),
          "any3 " + tag);
  std::string set;
  for (std::size_t i = rng() % 40; i > 0; --i) set += pick();
  f.check(k.find_set(p, n, ks::ByteSet(set)) == naive_set(h, set), "set " + tag);
  std::string needle;
  if (n > 0 && rng() % 2 == 0) {
    needle = std::string(h.substr(rng() % n, rng() % 21));
  } else {
    for (std::size_t i = rng() % 8; i > 0; --i) needle += pick();
  }
  f.check(k.find_sub(p, n, u(needle), needle.size()) == naive_sub(h, needle), "find_sub " + tag);
  f.check(k.rfind_sub(p, n, u(needle), needle.size()) == naive_rsub(h, needle), "rfind_sub " + tag);
  for (char& ch : needle) {
    if (rng() % 2 == 0 && lower(ch) != ch)
      ch = lower(ch);
    else if (rng() % 2 == 0 && ch >= 'a' && ch <= 'z')
      ch = static_cast<char>(ch ^ 0x20);
  }
  f.check(k.find_icase(p, n, u(needle), needle.size()) == naive_sub(h, needle, true), "find_icase " + tag);
  std::size_t seen = 0;
  for (std::size_t from = 0;;) {
    const auto b = k.next_block(p, n, uc, from);
    if (b.base == npos) break;
    for (std::uint64_t m = b.mask; m != 0; m &= m - 1) {
      const std::size_t at = b.base + static_cast<std::size_t>(__builtin_ctzll(m));
      f.check(at < n && h[at] == c, "next_block " + tag);
      ++seen;
    }
    from = b.base + 64;
  }
  f.check(seen == naive_count(h, c), "next_block count " + tag);
}

void check_multi(Failures& f, std::string_view h, std::mt19937& rng, std::string_view alphabet) {
  std::vector<std::string> needles(1 + rng() % (rng() % 4 == 0 ? 70 : 8));
  for (auto& s : needles) {
    const std::size_t len = 1 + rng() % (rng() % 3 == 0 ? 20 : 4);
    if (!h.empty() && rng() % 2 == 0) {
      s = std::string(h.substr(rng() % h.size(), len));
    } else {
      for (std::size_t i = 0; i < len; ++i) s += alphabet[rng() % alphabet.size()];
    }
  }
  const bool icase = rng() % 3 == 0;
  const ks::MultiFinder finder(needles, icase ? ks::Case::ascii_insensitive : ks::Case::sensitive);
  std::size_t from = 0;
  for (ks::MultiMatch m : finder.matches(h)) {
    f.check(m == naive_multi(h, needles, from, icase), "multi len " + std::to_string(h.size()));
    from = m.pos + std::max<std::size_t>(needles[m.index].size(), 1);
  }
  f.check(!naive_multi(h, needles, from, icase), "multi end len " + std::to_string(h.size()));
}

}  // namespace

TEST_CASE("the NEON kernels are chosen and KEEL_SIMD=scalar forces scalar") {
  const char* env = std::getenv("KEEL_SIMD");
  const bool scalar = env != nullptr && std::string_view(env) == "scalar";
  CHECK(ks::active_isa() == (scalar ? "scalar" : "neon"));
  CHECK(ks::supported_isa() == ks::Isa::neon);
  CHECK(ks::detail::kernels_for(ks::Isa::avx2).isa == ks::Isa::neon);
}

TEST_CASE("NEON and scalar kernels and the public API match naive loops at every length 0-300") {
  std::mt19937 rng(2024);
  Failures f;
  alignas(64) static char buf[64 + 320];
  const std::string alphabets[] = {"ab", "aAbB\xe9", all_bytes()};
  for (const std::string& alphabet : alphabets) {
    for (std::size_t len = 0; len <= 300; ++len) {
      for (std::size_t off = len % 7; off < 64; off += 7) {
        for (std::size_t i = 0; i < len; ++i) buf[off + i] = alphabet[rng() % alphabet.size()];
        const std::string_view h(buf + off, len);
        for (ks::Isa isa : {ks::Isa::neon, ks::Isa::scalar})
          check_kernels(f, ks::detail::kernels_for(isa), h, rng, alphabet);
        const char c = alphabet[rng() % alphabet.size()];
        f.check(ks::find(h, c) == h.find(c) && ks::rfind(h, c) == h.rfind(c) &&
                    ks::count(h, c) == naive_count(h, c),
                "api bytes len " + std::to_string(len));
        if (off % 3 == 0) check_multi(f, h, rng, alphabet);
      }
    }
  }
  INFO(f.first);
  CHECK(f.count == 0);
}

TEST_CASE("no read crosses into a guard page (NEON)") {
  const auto page = static_cast<std::size_t>(sysconf(_SC_PAGESIZE));
  void* mem = mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  REQUIRE(mem != MAP_FAILED);
  auto* base = static_cast<char*>(mem);
  REQUIRE(mprotect(base, page, PROT_NONE) == 0);
  REQUIRE(mprotect(base + 2 * page, page, PROT_NONE) == 0);
  char* mid = base + page;
  std::mt19937 rng(5);
  for (std::size_t i = 0; i < page; ++i) mid[i] = "aAb"[rng() % 3];
  Failures f;
  for (std::size_t n = 0; n <= 300; ++n) {
    for (const char* start : {mid, mid + page - n}) {
      const std::string_view h(start, n);
      check_kernels(f, ks::detail::kernels_for(ks::Isa::neon), h, rng, "aAb");
      check_multi(f, h, rng, "aAb");
    }
  }
  munmap(mem, 3 * page);
  INFO(f.first);
  CHECK(f.count == 0);
}

TEST_CASE("adversarial inputs stay correct (NEON)") {
  const std::string hay(100000, 'a');
  const std::string with = hay + "b";
  for (std::size_t m : {2u, 17u, 300u}) {
    const std::string aab = std::string(m - 1, 'a') + "b";
    CHECK(ks::find(hay, aab) == npos);
    CHECK(ks::find(with, aab) == with.size() - m);
    CHECK(ks::rfind(with, aab) == with.size() - m);
    CHECK(ks::find_icase(with, std::string(m - 1, 'A') + "B") == with.size() - m);
    CHECK(ks::MultiFinder({aab, std::string(m, 'c')}).find(with) == ks::MultiMatch{with.size() - m, 0});
  }
}
