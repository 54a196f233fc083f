// keel/detail/simd_x86.hpp: SSE2, AVX2 and AVX-512BW kernels and CPU detection.
//
// Not part of the API. Each level's operations are defined in its own
// namespace with a function target attribute (so no -mavx2 is needed and one
// binary carries all levels), then the shared kernels in simd_kernels.inc are
// compiled there. SSE2 is part of x86-64, so its kernels need no attribute and
// inline into any caller (the short-input path uses them).
#pragma once

#include <keel/detail/simd_core.hpp>

#if (defined(__x86_64__) || defined(_M_X64)) && (defined(__GNUC__) || defined(__clang__)) && \
    !defined(KEEL_SIMD_NO_X86)
#define KEEL_SIMD_X86 1

#include <cpuid.h>
#include <immintrin.h>

namespace keel::simd::detail {

// ------------------------------------------------------------------ SSE2 ---
namespace sse2 {
#define KEEL_SIMD_FN inline
#define KEEL_SIMD_NARROWER scalar
inline constexpr std::size_t W = 16;
using V = __m128i;
using M = __m128i;
KEEL_SIMD_FN V load(const uchar* p) {
  return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
}
KEEL_SIMD_FN V splat(uchar c) {
  return _mm_set1_epi8(static_cast<char>(c));
}
KEEL_SIMD_FN V zero() {
  return _mm_setzero_si128();
}
KEEL_SIMD_FN M eq(V a, V b) {
  return _mm_cmpeq_epi8(a, b);
}
KEEL_SIMD_FN M mor(M a, M b) {
  return _mm_or_si128(a, b);
}
KEEL_SIMD_FN M mand(M a, M b) {
  return _mm_and_si128(a, b);
}
KEEL_SIMD_FN V vor(V a, V b) {
  return _mm_or_si128(a, b);
}
KEEL_SIMD_FN std::uint64_t bits(M m) {
  return static_cast<std::uint32_t>(_mm_movemask_epi8(m));
}
KEEL_SIMD_FN bool any(M m) {
  return _mm_movemask_epi8(m) != 0;
}
KEEL_SIMD_FN V sub8(V a, V b) {
  return _mm_sub_epi8(a, b);
}
KEEL_SIMD_FN std::size_t hsum8(V a) {
  const V s = _mm_sad_epu8(a, _mm_setzero_si128());
  return static_cast<std::size_t>(_mm_cvtsi128_si64(s)) +
         static_cast<std::size_t>(_mm_cvtsi128_si64(_mm_unpackhi_epi64(s, s)));
}
#include <keel/detail/simd_kernels.inc>
#undef KEEL_SIMD_NARROWER
#undef KEEL_SIMD_FN
}  // namespace sse2

// ------------------------------------------------------------------ AVX2 ---
namespace avx2 {
#define KEEL_SIMD_FN __attribute__((target("avx2,bmi,popcnt"))) inline
#define KEEL_SIMD_SHUFFLE 1
#define KEEL_SIMD_NARROWER sse2
inline constexpr std::size_t W = 32;
using V = __m256i;
using M = __m256i;
KEEL_SIMD_FN V load(const uchar* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}
KEEL_SIMD_FN V splat(uchar c) {
  return _mm256_set1_epi8(static_cast<char>(c));
}
KEEL_SIMD_FN V splat16(const uchar* t) {
  return _mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}
KEEL_SIMD_FN V zero() {
  return _mm256_setzero_si256();
}
KEEL_SIMD_FN M eq(V a, V b) {
  return _mm256_cmpeq_epi8(a, b);
}
KEEL_SIMD_FN M mor(M a, M b) {
  return _mm256_or_si256(a, b);
}
KEEL_SIMD_FN M mand(M a, M b) {
  return _mm256_and_si256(a, b);
}
KEEL_SIMD_FN V vor(V a, V b) {
  return _mm256_or_si256(a, b);
}
KEEL_SIMD_FN V vand(V a, V b) {
  return _mm256_and_si256(a, b);
}
KEEL_SIMD_FN V vxor(V a, V b) {
  return _mm256_xor_si256(a, b);
}
KEEL_SIMD_FN V srl4(V a) {
  return _mm256_srli_epi16(a, 4);
}
KEEL_SIMD_FN V shuffle(V table, V idx) {
  return _mm256_shuffle_epi8(table, idx);
}
KEEL_SIMD_FN M test_nz(V a, V b) {
  const V both = _mm256_and_si256(a, b);
  return _mm256_xor_si256(_mm256_cmpeq_epi8(both, _mm256_setzero_si256()), _mm256_set1_epi8(-1));
}
KEEL_SIMD_FN std::uint64_t bits(M m) {
  return static_cast<std::uint32_t>(_mm256_movemask_epi8(m));
}
KEEL_SIMD_FN bool any(M m) {
  return _mm256_movemask_epi8(m) != 0;
}
KEEL_SIMD_FN V sub8(V a, V b) {
  return _mm256_sub_epi8(a, b);
}
KEEL_SIMD_FN std::size_t hsum8(V a) {
  const V s = _mm256_sad_epu8(a, _mm256_setzero_si256());
  return static_cast<std::size_t>(_mm256_extract_epi64(s, 0)) +
         static_cast<std::size_t>(_mm256_extract_epi64(s, 1)) +
         static_cast<std::size_t>(_mm256_extract_epi64(s, 2)) +
         static_cast<std::size_t>(_mm256_extract_epi64(s, 3));
}
#include <keel/detail/simd_kernels.inc>
#undef KEEL_SIMD_SHUFFLE
#undef KEEL_SIMD_NARROWER
#undef KEEL_SIMD_FN
}  // namespace avx2

// --------------------------------------------------------------- AVX-512 ---
namespace avx512 {
#define KEEL_SIMD_FN __attribute__((target("avx512f,avx512bw,avx2,bmi,popcnt"))) inline
#define KEEL_SIMD_SHUFFLE 1
#define KEEL_SIMD_MASKED 1
#define KEEL_SIMD_NARROWER avx2
inline constexpr std::size_t W = 64;
using V = __m512i;
using M = std::uint64_t;  // a __mmask64
KEEL_SIMD_FN V load(const uchar* p) {
  return _mm512_loadu_si512(static_cast<const void*>(p));
}
/// Loads p[0, n) for n < 64, zero above; masked lanes never fault.
KEEL_SIMD_FN V load_n(const uchar* p, std::size_t n) {
  const std::uint64_t keep = (std::uint64_t{1} << n) - 1;
  return _mm512_maskz_loadu_epi8(static_cast<__mmask64>(keep), static_cast<const void*>(p));
}
KEEL_SIMD_FN V splat(uchar c) {
  return _mm512_set1_epi8(static_cast<char>(c));
}
KEEL_SIMD_FN V splat16(const uchar* t) {
  return _mm512_maskz_broadcast_i32x4(static_cast<__mmask16>(0xffff),
                                      _mm_loadu_si128(reinterpret_cast<const __m128i*>(t)));
}
KEEL_SIMD_FN M eq(V a, V b) {
  return _mm512_cmpeq_epi8_mask(a, b);
}
KEEL_SIMD_FN M mor(M a, M b) {
  return a | b;
}
KEEL_SIMD_FN M mand(M a, M b) {
  return a & b;
}
KEEL_SIMD_FN V vor(V a, V b) {
  return _mm512_or_si512(a, b);
}
KEEL_SIMD_FN V vand(V a, V b) {
  return _mm512_and_si512(a, b);
}
KEEL_SIMD_FN V vxor(V a, V b) {
  return _mm512_xor_si512(a, b);
}
KEEL_SIMD_FN V srl4(V a) {
  return _mm512_srli_epi16(a, 4);
}
KEEL_SIMD_FN V shuffle(V table, V idx) {
  return _mm512_shuffle_epi8(table, idx);
}
KEEL_SIMD_FN M test_nz(V a, V b) {
  return _mm512_test_epi8_mask(a, b);
}
// The substring prefilter's pair test without a compare per byte: a compare
// into a mask register runs on one execution port, these bitwise operations on
// two. pair_diff is zero exactly in the lanes where a == va and b == vb
// (ternary-logic 0xf6 computes x | (y ^ z)); vmin keeps a zero lane of
// either input; zeros turns the zero lanes into a mask.
#define KEEL_SIMD_PAIR_DIFF 1
KEEL_SIMD_FN V pair_diff(V a, V va, V b, V vb) {
  return _mm512_ternarylogic_epi64(_mm512_xor_si512(a, va), b, vb, 0xf6);
}
// The same when both bytes are one value v: (a ^ v) | (b ^ v) is a single
// ternary-logic operation (0x7e is zero only where a == b == v).
KEEL_SIMD_FN V pair_diff_same(V a, V b, V v) {
  return _mm512_ternarylogic_epi64(a, b, v, 0x7e);
}
KEEL_SIMD_FN V vmin(V a, V b) {
  return _mm512_min_epu8(a, b);
}
KEEL_SIMD_FN M zeros(V a) {
  return _mm512_testn_epi8_mask(a, a);
}
KEEL_SIMD_FN std::uint64_t bits(M m) {
  return m;
}
KEEL_SIMD_FN bool any(M m) {
  return m != 0;
}
#include <keel/detail/simd_kernels.inc>
#undef KEEL_SIMD_PAIR_DIFF
#undef KEEL_SIMD_MASKED

// Teddy with VBMI: one two-table byte permute (vpermi2b) per fingerprint byte
// looks up its bucket bits in a 128-entry table, where the nibble form needs
// two shuffles, a shift and three ANDs.
#define KEEL_SIMD_VBMI_FN __attribute__((target("avx512f,avx512bw,avx512vbmi,avx2,bmi,popcnt"))) inline
template <std::size_t K, bool Fat>
KEEL_SIMD_VBMI_FN MatchBlock teddy_vbmi_k(const uchar* p, std::size_t n, std::size_t from,
                                          const TeddyTables& t) {
  if (from + K > n) return {npos, 0};
  const std::size_t last = n - K;  // last start whose fingerprint fits
  if (last < 63) return scalar_teddy_block(p, n, from, t);
  V a[K], b[K], a2[K], b2[K];
  for (std::size_t j = 0; j < K; ++j) {
    a[j] = _mm512_loadu_si512(static_cast<const void*>(t.full[j]));
    b[j] = _mm512_loadu_si512(static_cast<const void*>(t.full[j] + 64));
    if constexpr (Fat) {
      a2[j] = _mm512_loadu_si512(static_cast<const void*>(t.full2[j]));
      b2[j] = _mm512_loadu_si512(static_cast<const void*>(t.full2[j] + 64));
    }
  }
  for (; from <= last; from += 64) {
    const std::size_t base = from + 63 <= last ? from : last - 63;
    const uchar* q = p + base;
    V x = load(q);
    V acc = _mm512_permutex2var_epi8(a[0], x, b[0]);
    V acc2 = Fat ? _mm512_permutex2var_epi8(a2[0], x, b2[0]) : acc;
    for (std::size_t j = 1; j < K; ++j) {
      x = load(q + j);
      acc = _mm512_and_si512(acc, _mm512_permutex2var_epi8(a[j], x, b[j]));
      if constexpr (Fat) acc2 = _mm512_and_si512(acc2, _mm512_permutex2var_epi8(a2[j], x, b2[j]));
    }
    if constexpr (Fat) acc = _mm512_or_si512(acc, acc2);
    if (const std::uint64_t m = _mm512_test_epi8_mask(acc, acc) >> (from - base)) return {from, m};
  }
  return {npos, 0};
}
KEEL_SIMD_VBMI_FN MatchBlock teddy_block_vbmi(const uchar* p, std::size_t n, std::size_t from,
                                              const TeddyTables& t) {
  switch (t.k + (t.fat ? 3 : 0)) {
    case 1:
      return teddy_vbmi_k<1, false>(p, n, from, t);
    case 2:
      return teddy_vbmi_k<2, false>(p, n, from, t);
    case 3:
      return teddy_vbmi_k<3, false>(p, n, from, t);
    case 4:
      return teddy_vbmi_k<1, true>(p, n, from, t);
    case 5:
      return teddy_vbmi_k<2, true>(p, n, from, t);
    default:
      return teddy_vbmi_k<3, true>(p, n, from, t);
  }
}
#undef KEEL_SIMD_VBMI_FN
#undef KEEL_SIMD_SHUFFLE
#undef KEEL_SIMD_NARROWER
#undef KEEL_SIMD_FN
}  // namespace avx512

inline constexpr Kernels kSse2Kernels = {
    Isa::sse2,   sse2::find,     sse2::rfind,      sse2::find_any2, sse2::find_any3,  sse2::find_set,
    sse2::count, sse2::find_sub, sse2::next_block, sse2::rfind_sub, sse2::find_icase, nullptr,
};
inline constexpr Kernels kAvx2Kernels = {
    Isa::avx2,   avx2::find,     avx2::rfind,      avx2::find_any2, avx2::find_any3,  avx2::find_set,
    avx2::count, avx2::find_sub, avx2::next_block, avx2::rfind_sub, avx2::find_icase, avx2::teddy_block,
};
inline constexpr Kernels kAvx512Kernels = {
    Isa::avx512,        avx512::find,      avx512::rfind,      avx512::find_any2,
    avx512::find_any3,  avx512::find_set,  avx512::count,      avx512::find_sub,
    avx512::next_block, avx512::rfind_sub, avx512::find_icase, avx512::teddy_block,
};
/// AVX-512 with VBMI: the same kernels but Teddy's.
inline constexpr Kernels kAvx512VbmiKernels = {
    Isa::avx512,        avx512::find,      avx512::rfind,      avx512::find_any2,
    avx512::find_any3,  avx512::find_set,  avx512::count,      avx512::find_sub,
    avx512::next_block, avx512::rfind_sub, avx512::find_icase, avx512::teddy_block_vbmi,
};

/// Whether the CPU has AVX-512 VBMI (the byte permutes); asked only once
/// AVX-512 itself is known to be usable.
inline bool has_vbmi() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid_count(7, 0, &a, &b, &c, &d) == 0) return false;
  return (c & (1u << 1)) != 0;
}

/// The best level this CPU and OS support: CPUID for the instructions and
/// XGETBV for the OS saving the wider registers (AVX state for AVX2, opmask
/// and ZMM state for AVX-512).
inline Isa detect_isa() noexcept {
  unsigned a = 0, b = 0, c = 0, d = 0;
  if (__get_cpuid(1, &a, &b, &c, &d) == 0) return Isa::sse2;
  const bool popcnt = (c & (1u << 23)) != 0;
  const bool osxsave = (c & (1u << 27)) != 0;
  const bool avx = (c & (1u << 28)) != 0;
  if (!popcnt || !osxsave || !avx) return Isa::sse2;
  unsigned xcr0_lo = 0, xcr0_hi = 0;
  __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0u));
  const std::uint64_t xcr0 = (std::uint64_t{xcr0_hi} << 32) | xcr0_lo;
  if ((xcr0 & 0x6) != 0x6) return Isa::sse2;  // XMM and YMM state
  unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
  if (__get_cpuid_count(7, 0, &a7, &b7, &c7, &d7) == 0) return Isa::sse2;
  const bool bmi1 = (b7 & (1u << 3)) != 0;
  const bool has_avx2 = (b7 & (1u << 5)) != 0;
  const bool avx512f = (b7 & (1u << 16)) != 0;
  const bool avx512bw = (b7 & (1u << 30)) != 0;
  if (!has_avx2 || !bmi1) return Isa::sse2;
  if (avx512f && avx512bw && (xcr0 & 0xe6) == 0xe6) return Isa::avx512;  // + opmask, ZMM0-31
  return Isa::avx2;
}

}  // namespace keel::simd::detail

#endif
