/*
 * AArch64 Advanced SIMD helpers shared by la_neon.c and conv_neon.c (private): io-dtype
 * loads/stores of 4 lanes converted in registers, rounding to the io dtype, and a vector exp.
 *
 * Conversions match src/convert.h bit for bit on every non-NaN value and keep NaNs NaN:
 *  - f16 -> f32: FCVTL (exact; FPCR.FZ does not apply to half-precision conversions).
 *  - f32 -> f16: FCVTN, round to nearest even under the default FPCR rounding mode.
 *  - bf16 <-> f32: integer shifts, the same RNE + quiet-NaN rule as linattn_f32_to_bf16.
 */
#ifndef LINATTN_NEON_UTIL_H
#define LINATTN_NEON_UTIL_H

#include <arm_neon.h>
#include <stdint.h>

#include "linattn.h"

#define NEON_INLINE static inline __attribute__((always_inline))

NEON_INLINE float32x4_t neon_bf16_to_f32(uint16x4_t h) { return vreinterpretq_f32_u32(vshll_n_u16(h, 16)); }

NEON_INLINE uint16x4_t neon_f32_to_bf16(float32x4_t v) {
  const uint32x4_t u = vreinterpretq_u32_f32(v);
  const uint32x4_t is_nan = vcgtq_u32(vandq_u32(u, vdupq_n_u32(0x7fffffffu)), vdupq_n_u32(0x7f800000u));
  const uint32x4_t lsb = vandq_u32(vshrq_n_u32(u, 16), vdupq_n_u32(1u));
  const uint32x4_t rounded = vaddq_u32(u, vaddq_u32(lsb, vdupq_n_u32(0x7fffu)));
  const uint32x4_t quiet = vorrq_u32(u, vdupq_n_u32(0x00400000u));
  return vshrn_n_u32(vbslq_u32(is_nan, quiet, rounded), 16);
}

NEON_INLINE float32x4_t neon_f16_to_f32(uint16x4_t h) { return vcvt_f32_f16(vreinterpret_f16_u16(h)); }
NEON_INLINE uint16x4_t neon_f32_to_f16(float32x4_t v) { return vreinterpret_u16_f16(vcvt_f16_f32(v)); }

/* 4 consecutive elements of an io-dtype array starting at element i, as fp32. */
NEON_INLINE float32x4_t neon_load4(const void* base, int64_t i, const linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) return neon_f16_to_f32(vld1_u16((const uint16_t*)base + i));
  if (dt == LINATTN_DTYPE_BF16) return neon_bf16_to_f32(vld1_u16((const uint16_t*)base + i));
  return vld1q_f32((const float*)base + i);
}

/* Stores 4 fp32 lanes to elements [i, i + 4) of an io-dtype array, rounding to nearest even. */
NEON_INLINE void neon_store4(void* base, int64_t i, const linattn_dtype dt, float32x4_t v) {
  if (dt == LINATTN_DTYPE_F16)
    vst1_u16((uint16_t*)base + i, neon_f32_to_f16(v));
  else if (dt == LINATTN_DTYPE_BF16)
    vst1_u16((uint16_t*)base + i, neon_f32_to_bf16(v));
  else
    vst1q_f32((float*)base + i, v);
}

/* The value an io-dtype tensor would hold (round to dt and widen back). */
NEON_INLINE float32x4_t neon_round4(float32x4_t v, const linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) return neon_f16_to_f32(neon_f32_to_f16(v));
  if (dt == LINATTN_DTYPE_BF16) return neon_bf16_to_f32(neon_f32_to_bf16(v));
  return v;
}

/* exp(x) within 1 ulp over the normal range (docs/algorithms.md, section 4.3). Cody-Waite reduction x = n ln2 + r, |r| <= ln2/2, then the degree-7
 * Taylor polynomial of e^r by Horner with FMA (truncation below 1e-8 relative).
 * exp(-inf) = 0, exp(+inf) = inf, NaN -> NaN (FMIN/FMAX propagate NaN). 2^n is applied in two
 * halves so results down to the subnormal range stay correct when FTZ is off. */
NEON_INLINE float32x4_t neon_exp4(float32x4_t x) {
  x = vminq_f32(vmaxq_f32(x, vdupq_n_f32(-150.0f)), vdupq_n_f32(89.0f));
  const float32x4_t n = vrndnq_f32(vmulq_n_f32(x, 1.44269504088896341f));
  float32x4_t r = vfmsq_f32(x, n, vdupq_n_f32(0.693359375f));  /* ln2 high part (exact n * hi) */
  r = vfmsq_f32(r, n, vdupq_n_f32(-2.12194440e-4f));             /* ln2 low part */
  float32x4_t poly = vdupq_n_f32(1.0f / 5040.0f);
  poly = vfmaq_f32(vdupq_n_f32(1.0f / 720.0f), poly, r);
  poly = vfmaq_f32(vdupq_n_f32(1.0f / 120.0f), poly, r);
  poly = vfmaq_f32(vdupq_n_f32(1.0f / 24.0f), poly, r);
  poly = vfmaq_f32(vdupq_n_f32(1.0f / 6.0f), poly, r);
  poly = vfmaq_f32(vdupq_n_f32(0.5f), poly, r);
  poly = vfmaq_f32(vdupq_n_f32(1.0f), poly, r);
  poly = vfmaq_f32(vdupq_n_f32(1.0f), poly, r);
  const int32x4_t ni = vcvtq_s32_f32(n);
  const int32x4_t n1 = vshrq_n_s32(ni, 1);
  const int32x4_t n2 = vsubq_s32(ni, n1);
  const float32x4_t s1 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n1, vdupq_n_s32(127)), 23));
  const float32x4_t s2 = vreinterpretq_f32_s32(vshlq_n_s32(vaddq_s32(n2, vdupq_n_s32(127)), 23));
  return vmulq_f32(vmulq_f32(poly, s1), s2);
}

#endif /* LINATTN_NEON_UTIL_H */
