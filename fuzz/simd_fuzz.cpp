// libFuzzer target: every keel::simd function, through every kernel level the
// CPU supports, against its naive twin. Input layout:
//   byte 0-2   the search bytes a, b, c
//   byte 3     needle length (mod 64) taken from the end of the rest
//   byte 4     set length (mod 40) taken from the start of the rest
//   the rest   the haystack (the needle and set are copied out of it)
// The needle is also searched case-insensitively and backwards, and cut into
// up to 70 needles (at bytes equal to c) for MultiFinder, both case modes.
// The haystack is copied to an exactly sized heap block so ASan flags any
// read past its end.
#include <keel/simd.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string_view>
#include <vector>

namespace {

namespace ks = keel::simd;
using uchar = unsigned char;

void require(bool ok) {
  if (!ok) std::abort();
}

std::size_t naive_find(const uchar* p, std::size_t n, uchar c) {
  for (std::size_t i = 0; i < n; ++i) {
    if (p[i] == c) return i;
  }
  return ks::npos;
}
std::size_t naive_rfind(const uchar* p, std::size_t n, uchar c) {
  for (std::size_t i = n; i > 0; --i) {
    if (p[i - 1] == c) return i - 1;
  }
  return ks::npos;
}
std::size_t naive_set(const uchar* p, std::size_t n, const uchar* s, std::size_t k) {
  for (std::size_t i = 0; i < n; ++i) {
    for (std::size_t j = 0; j < k; ++j) {
      if (p[i] == s[j]) return i;
    }
  }
  return ks::npos;
}
std::size_t naive_count(const uchar* p, std::size_t n, uchar c) {
  std::size_t total = 0;
  for (std::size_t i = 0; i < n; ++i) total += p[i] == c ? 1u : 0u;
  return total;
}
std::size_t naive_sub(const uchar* p, std::size_t n, const uchar* s, std::size_t m) {
  if (m == 0) return 0;
  if (m > n) return ks::npos;
  for (std::size_t i = 0; i + m <= n; ++i) {
    if (std::memcmp(p + i, s, m) == 0) return i;
  }
  return ks::npos;
}

uchar lower(uchar x) {
  return x >= 'A' && x <= 'Z' ? static_cast<uchar>(x | 0x20) : x;
}
bool eq_at(const uchar* p, const uchar* s, std::size_t m, bool icase) {
  for (std::size_t j = 0; j < m; ++j) {
    if (icase ? lower(p[j]) != lower(s[j]) : p[j] != s[j]) return false;
  }
  return true;
}
std::size_t naive_icase(const uchar* p, std::size_t n, const uchar* s, std::size_t m) {
  if (m > n) return ks::npos;
  for (std::size_t i = 0; i + m <= n; ++i) {
    if (eq_at(p + i, s, m, true)) return i;
  }
  return ks::npos;
}
std::size_t naive_rsub(const uchar* p, std::size_t n, const uchar* s, std::size_t m) {
  if (m > n) return ks::npos;
  for (std::size_t i = n - m + 1; i-- > 0;) {
    if (eq_at(p + i, s, m, false)) return i;
  }
  return ks::npos;
}
ks::MultiMatch naive_multi(const uchar* p, std::size_t n, const std::vector<std::string_view>& needles,
                           std::size_t from, bool icase) {
  for (std::size_t i = from; i <= n; ++i) {
    for (std::size_t k = 0; k < needles.size(); ++k) {
      const std::size_t m = needles[k].size();
      if (m <= n - i && eq_at(p + i, reinterpret_cast<const uchar*>(needles[k].data()), m, icase))
        return {i, k};
    }
  }
  return {};
}

void check_multi(const uchar* p, std::size_t n, const std::vector<std::string_view>& needles, bool icase) {
  const ks::MultiFinder finder(needles, icase ? ks::Case::ascii_insensitive : ks::Case::sensitive);
  const std::string_view h(reinterpret_cast<const char*>(p), n);
  std::size_t from = 0;
  for (ks::MultiMatch got : finder.matches(h)) {
    const ks::MultiMatch want = naive_multi(p, n, needles, from, icase);
    require(got == want);
    from = got.pos + std::max<std::size_t>(needles[got.index].size(), 1);
  }
  require(!naive_multi(p, n, needles, from, icase));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  if (size < 5) return 0;
  const uchar a = data[0], b = data[1], c = data[2];
  const std::size_t rest = size - 5;
  const std::size_t m = std::min<std::size_t>(data[3] % 64, rest);
  const std::size_t k = std::min<std::size_t>(data[4] % 40, rest);
  const std::size_t n = rest;
  auto hay = std::make_unique<uchar[]>(n == 0 ? 1 : n);
  if (n != 0) std::memcpy(hay.get(), data + 5, n);
  const uchar* p = hay.get();
  const std::vector<uchar> needle(p + n - m, p + n);
  const std::vector<uchar> set_bytes(p, p + k);
  ks::ByteSet set;
  for (uchar x : set_bytes) set.insert(x);
  const uchar two[] = {a, b};
  const uchar three[] = {a, b, c};

  const std::size_t want_find = naive_find(p, n, a);
  const std::size_t want_rfind = naive_rfind(p, n, a);
  const std::size_t want_any2 = naive_set(p, n, two, 2);
  const std::size_t want_any3 = naive_set(p, n, three, 3);
  const std::size_t want_set = naive_set(p, n, set_bytes.data(), k);
  const std::size_t want_count = naive_count(p, n, a);
  const std::size_t want_sub = naive_sub(p, n, needle.data(), m);
  const std::size_t want_rsub = naive_rsub(p, n, needle.data(), m);
  const std::size_t want_icase = naive_icase(p, n, needle.data(), m);

  for (ks::Isa isa : {ks::Isa::scalar, ks::Isa::sse2, ks::Isa::avx2, ks::Isa::avx512}) {
    const auto& kern = ks::detail::kernels_for(isa);
    require(kern.find(p, n, a) == want_find);
    require(kern.rfind(p, n, a) == want_rfind);
    require(kern.find_any2(p, n, a, b) == want_any2);
    require(kern.find_any3(p, n, a, b, c) == want_any3);
    require(kern.find_set(p, n, set) == want_set);
    require(kern.count(p, n, a) == want_count);
    require(kern.find_sub(p, n, needle.data(), m) == want_sub);
    require(kern.rfind_sub(p, n, needle.data(), m) == want_rsub);
    require(kern.find_icase(p, n, needle.data(), m) == want_icase);
    std::size_t seen = 0;
    for (std::size_t from = 0;;) {
      const auto blk = kern.next_block(p, n, a, from);
      if (blk.base == ks::npos) break;
      for (std::uint64_t bits = blk.mask; bits != 0; bits &= bits - 1) {
        const std::size_t pos = blk.base + static_cast<std::size_t>(__builtin_ctzll(bits));
        require(pos < n && p[pos] == a);
        ++seen;
      }
      from = blk.base + 64;
    }
    require(seen == want_count);
  }

  const std::string_view h(reinterpret_cast<const char*>(p), n);
  const std::string_view nd(reinterpret_cast<const char*>(needle.data()), m);
  const auto ch = [](uchar x) { return static_cast<char>(x); };
  require(ks::find(h, ch(a)) == want_find);
  require(ks::rfind(h, ch(a)) == want_rfind);
  require(ks::find_any(h, ch(a), ch(b)) == want_any2);
  require(ks::find_any(h, ch(a), ch(b), ch(c)) == want_any3);
  require(ks::find_first_of(h, set) == want_set);
  require(ks::count(h, ch(a)) == want_count);
  require(ks::find(h, nd) == want_sub);
  require(ks::rfind(h, nd) == want_rsub);
  require(ks::find_icase(h, nd) == want_icase);
  std::size_t prev = ks::npos, seen = 0;
  for (std::size_t pos : ks::matches(h, ch(a))) {
    require(pos < n && p[pos] == a && (prev == ks::npos || pos > prev));
    prev = pos;
    ++seen;
  }
  require(seen == want_count);

  // MultiFinder: the needle region cut at bytes equal to c (empty pieces
  // included), at most 70 needles, through the active kernels (the CI runs
  // the fuzzers once; KEEL_SIMD picks another level).
  std::vector<std::string_view> needles;
  const auto* nd_bytes = reinterpret_cast<const char*>(needle.data());
  std::size_t piece = 0;
  for (std::size_t i = 0; i <= m && needles.size() < 70; ++i) {
    if (i == m || needle[i] == c) {
      needles.emplace_back(nd_bytes + piece, i - piece);
      piece = i + 1;
    }
  }
  check_multi(p, n, needles, false);
  check_multi(p, n, needles, true);
  return 0;
}
