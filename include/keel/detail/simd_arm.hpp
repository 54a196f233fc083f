// keel/detail/simd_arm.hpp: the NEON kernels (aarch64).
//
// Not part of the API. NEON (Advanced SIMD) is part of every aarch64 CPU, so
// these kernels need no detection and no target attribute: they are the
// shared kernels of simd_kernels.inc over 16-byte vectors. NEON has no
// movemask; bits() folds a compare result into a 16-bit mask by keeping one
// weight bit per byte and adding each half across lanes. The byte table
// lookup (TBL) yields 0 for indexes >= 16, as PSHUFB does for indexes with
// bit 7 set, so the set and Teddy lookups work unchanged.
#pragma once

#include <keel/detail/simd_core.hpp>

#if defined(__aarch64__) && (defined(__GNUC__) || defined(__clang__)) && !defined(KEEL_SIMD_NO_NEON)
#define KEEL_SIMD_NEON 1

#include <arm_neon.h>

namespace keel::simd::detail {

namespace neon {
#define KEEL_SIMD_FN inline
#define KEEL_SIMD_SHUFFLE 1
#define KEEL_SIMD_NARROWER scalar
inline constexpr std::size_t W = 16;
using V = uint8x16_t;
using M = uint8x16_t;
KEEL_SIMD_FN V load(const uchar* p) {
  return vld1q_u8(p);
}
KEEL_SIMD_FN V splat(uchar c) {
  return vdupq_n_u8(c);
}
KEEL_SIMD_FN V splat16(const uchar* t) {
  return vld1q_u8(t);
}
KEEL_SIMD_FN V zero() {
  return vdupq_n_u8(0);
}
KEEL_SIMD_FN M eq(V a, V b) {
  return vceqq_u8(a, b);
}
KEEL_SIMD_FN M mor(M a, M b) {
  return vorrq_u8(a, b);
}
KEEL_SIMD_FN M mand(M a, M b) {
  return vandq_u8(a, b);
}
KEEL_SIMD_FN V vor(V a, V b) {
  return vorrq_u8(a, b);
}
KEEL_SIMD_FN V vand(V a, V b) {
  return vandq_u8(a, b);
}
KEEL_SIMD_FN V vxor(V a, V b) {
  return veorq_u8(a, b);
}
KEEL_SIMD_FN V srl4(V a) {
  return vshrq_n_u8(a, 4);
}
KEEL_SIMD_FN V shuffle(V table, V idx) {
  return vqtbl1q_u8(table, idx);
}
KEEL_SIMD_FN M test_nz(V a, V b) {
  return vtstq_u8(a, b);
}
KEEL_SIMD_FN std::uint64_t bits(M m) {
  alignas(16) static constexpr uchar kWeights[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                                     1, 2, 4, 8, 16, 32, 64, 128};
  const uint8x16_t t = vandq_u8(m, vld1q_u8(kWeights));
  return static_cast<std::uint64_t>(vaddv_u8(vget_low_u8(t))) |
         static_cast<std::uint64_t>(vaddv_u8(vget_high_u8(t))) << 8;
}
KEEL_SIMD_FN bool any(M m) {
  return vmaxvq_u8(m) != 0;
}
KEEL_SIMD_FN V sub8(V a, V b) {
  return vsubq_u8(a, b);
}
KEEL_SIMD_FN std::size_t hsum8(V a) {
  return static_cast<std::size_t>(vaddlvq_u8(a));
}
#include <keel/detail/simd_kernels.inc>
#undef KEEL_SIMD_NARROWER
#undef KEEL_SIMD_SHUFFLE
#undef KEEL_SIMD_FN
}  // namespace neon

inline constexpr Kernels kNeonKernels = {
    Isa::neon,   neon::find,     neon::rfind,      neon::find_any2, neon::find_any3,  neon::find_set,
    neon::count, neon::find_sub, neon::next_block, neon::rfind_sub, neon::find_icase, neon::teddy_block,
};

}  // namespace keel::simd::detail

#endif
