/*
 * AVX2 + FMA + F16C vector math shared by la_avx2.c, conv_avx2.c and gates_avx2.c (private;
 * include only from files compiled with the avx2 flags of registry.inc): 8 fp32 lanes per
 * __m256. io-dtype loads, bf16 rounding, exp and SiLU (the polynomials of vec_poly.h, as in
 * vec_avx512.h), and the vx_* vocabulary that conv_simd_body.h and gates_simd_body.h are
 * written in.
 * AVX2 has no 16-bit masked loads: partial vectors go through a small zeroed stack buffer.
 */
#ifndef LINATTN_VEC_AVX2_H
#define LINATTN_VEC_AVX2_H

#include <immintrin.h>
#include <stdint.h>
#include <string.h>

#include "linattn.h"
#include "vec_poly.h"

#define VEC_INLINE static inline __attribute__((always_inline))

/* ------------------------------------------------------------------ loads */

/* 8 elements of an io-dtype array as fp32. */
VEC_INLINE __m256 load8(const void* p, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) return _mm256_loadu_ps((const float*)p);
  __m128i h = _mm_loadu_si128((const __m128i*)p);
  if (dt == LINATTN_DTYPE_F16) return _mm256_cvtph_ps(h);
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(h), 16));
}

static inline size_t vec_esize(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 4u : 2u; }

/* First n (< 8 allowed) elements, the rest 0. */
VEC_INLINE __m256 load8_part(const char* p, int64_t n, linattn_dtype dt) {
  if (n >= 8) return load8(p, dt);
  _Alignas(32) char buf[32] = {0};
  memcpy(buf, p, (size_t)n * vec_esize(dt));
  return load8(buf, dt);
}

/* ------------------------------------------------------------------ 16-bit rounding */

/* fp32 -> bf16 bits, round to nearest even; NaN -> quiet NaN with the sign and top payload
 * bits (src/convert.h for every input). */
VEC_INLINE __m128i f32_to_bf16_8(__m256 x) {
  const __m256i b = _mm256_castps_si256(x);
  const __m256i hi = _mm256_srli_epi32(b, 16);
  const __m256i bias = _mm256_add_epi32(_mm256_and_si256(hi, _mm256_set1_epi32(1)), _mm256_set1_epi32(0x7fff));
  const __m256i r = _mm256_srli_epi32(_mm256_add_epi32(b, bias), 16);
  const __m256i q = _mm256_or_si256(hi, _mm256_set1_epi32(0x40));
  const __m256i nan = _mm256_castps_si256(_mm256_cmp_ps(x, x, _CMP_UNORD_Q));
  const __m256i m = _mm256_blendv_epi8(r, q, nan);
  return _mm_packus_epi32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
}

/* bf16 round to nearest even on 32-bit lanes: u + 0x7fff + lsb (high half = the result).
 * No NaN case: see bf16_round_bits in vec_avx512.h (for NaNs computed from 16-bit T inputs,
 * whose low 16 bits are zero, so the add cannot carry and the result equals src/convert.h's). */
VEC_INLINE __m256i bf16_round_bits8(__m256 v) {
  __m256i u = _mm256_castps_si256(v);
  __m256i lsb = _mm256_and_si256(_mm256_srli_epi32(u, 16), _mm256_set1_epi32(1));
  return _mm256_add_epi32(_mm256_add_epi32(u, _mm256_set1_epi32(0x7fff)), lsb);
}

VEC_INLINE __m128i pack16(__m256i r) { /* 8 x 32-bit lanes holding 16-bit values -> 8 x 16-bit */
  return _mm256_castsi256_si128(_mm256_permute4x64_epi64(_mm256_packus_epi32(r, r), 0x08));
}

/* ------------------------------------------------------------------ exp, SiLU */

/* ((((c0 r + c1) r + c2) r + c3) r + c4) r + c5, one FMA per step. */
VEC_INLINE __m256 horner8(__m256 r, float c0, float c1, float c2, float c3, float c4, float c5) {
  __m256 y = _mm256_set1_ps(c0);
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c1));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c2));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c3));
  y = _mm256_fmadd_ps(y, r, _mm256_set1_ps(c4));
  return _mm256_fmadd_ps(y, r, _mm256_set1_ps(c5));
}

/* exp(x): as exp16 in vec_avx512.h, with 2^n applied as two exact power-of-two factors
 * 2^(n>>1) * 2^(n - (n>>1)) (each inside the normal range for n in [-150, 129]), so overflow
 * gives inf and underflow 0 (FTZ) without special cases. */
VEC_INLINE __m256 exp8(__m256 x) {
  x = _mm256_min_ps(_mm256_set1_ps(89.0f), _mm256_max_ps(_mm256_set1_ps(-104.0f), x));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(VEC_LOG2E)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VEC_LN2_HI), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(VEC_LN2_LO), r);
  __m256 y = horner8(r, VEC_EXP_P0, VEC_EXP_P1, VEC_EXP_P2, VEC_EXP_P3, VEC_EXP_P4, VEC_EXP_P5);
  y = _mm256_fmadd_ps(y, _mm256_mul_ps(r, r), _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i ni = _mm256_cvtps_epi32(n);
  const __m256i n1 = _mm256_srai_epi32(ni, 1);
  const __m256i n2 = _mm256_sub_epi32(ni, n1);
  const __m256i bias = _mm256_set1_epi32(127);
  const __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
  const __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
  return _mm256_mul_ps(_mm256_mul_ps(y, s1), s2);
}

/* v / (1 + exp(-v)): n = round(-t log2 e) by the 1.5 * 2^23 trick (t = v clamped to
 * [-104, 104]), r' = t + n ln2 (Cody-Waite, two FMAs), exp(-r') by the SiLU polynomial of
 * vec_poly.h, and 2^n applied as two exact power-of-two factors (n in [-150, 150]) so that
 * overflow gives inf and underflow rounds once. NaN propagates through v. */
VEC_INLINE __m256 silu8(__m256 v) {
  const __m256 magic = _mm256_set1_ps(12582912.0f);
  __m256 t = _mm256_max_ps(_mm256_set1_ps(-104.0f), v); /* operand order keeps NaN */
  t = _mm256_min_ps(_mm256_set1_ps(104.0f), t);
  __m256 nm = _mm256_fmadd_ps(t, _mm256_set1_ps(-VEC_LOG2E), magic);
  __m256 n = _mm256_sub_ps(nm, magic);
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(VEC_LN2_HI), t);
  r = _mm256_fmadd_ps(n, _mm256_set1_ps(VEC_LN2_LO), r);
  __m256 q = horner8(r, VEC_SILU_Q0, VEC_SILU_Q1, VEC_SILU_Q2, VEC_SILU_Q3, VEC_SILU_Q4, VEC_SILU_Q5);
  __m256i ni = _mm256_sub_epi32(_mm256_castps_si256(nm), _mm256_castps_si256(magic));
  __m256i h1 = _mm256_srai_epi32(ni, 1), h2 = _mm256_sub_epi32(ni, h1);
  __m256 s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h1, _mm256_set1_epi32(127)), 23));
  __m256 s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(h2, _mm256_set1_epi32(127)), 23));
  __m256 e = _mm256_mul_ps(_mm256_mul_ps(q, s1), s2);
  return _mm256_div_ps(v, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
}

/* SiLU of a value rounded to a 16-bit T: silu8 with silu_t16's steps (vec_avx512.h: one
 * Cody-Waite FMA, the doubled polynomial scaled by 2^(n-1) built from the magic's bits,
 * clamped to 0 below and inf above, 1 + e in one FMA). After rounding to T it gives silu8's
 * bits for every fp16 and bf16 input (tests/test_conv_kernels.c enumerates them all). */
VEC_INLINE __m256 silu8_t16(__m256 v) {
  __m256 t = _mm256_max_ps(_mm256_set1_ps(-104.0f), v); /* as in silu8 */
  t = _mm256_min_ps(_mm256_set1_ps(104.0f), t);
  __m256 nm = _mm256_fmadd_ps(t, _mm256_set1_ps(-VEC_LOG2E), _mm256_set1_ps(VEC_SILU_MAGIC));
  __m256 n = _mm256_sub_ps(nm, _mm256_set1_ps(VEC_SILU_MAGIC));
  __m256 r = _mm256_fmadd_ps(n, _mm256_set1_ps(VEC_SILU_LN2), t);
  __m256 q = horner8(r, 2.0f * VEC_SILU_Q0, 2.0f * VEC_SILU_Q1, 2.0f * VEC_SILU_Q2, 2.0f * VEC_SILU_Q3,
                      2.0f * VEC_SILU_Q4, 2.0f * VEC_SILU_Q5);
  __m256i b = _mm256_max_epi32(_mm256_castps_si256(nm), _mm256_set1_epi32(VEC_SILU_MAGIC_BITS - 126));
  b = _mm256_min_epi32(b, _mm256_set1_epi32(VEC_SILU_MAGIC_BITS + 129));
  const __m256 half_pow2n = _mm256_castsi256_ps(_mm256_slli_epi32(b, 23)); /* 2^(n-1), 0 or inf */
  return _mm256_div_ps(v, _mm256_fmadd_ps(q, half_pow2n, _mm256_set1_ps(1.0f)));
}

/* ------------------------------------------------------------------ vocabulary of the bodies */

/* The names conv_simd_body.h and gates_simd_body.h are written in (vec_avx512.h defines the
 * same with 16 lanes). *_n forms take n valid lanes (n >= VX_LANES: all); partial loads read
 * only the first n elements and give 0 beyond, partial stores write only the first n. */
#define VX_LANES 8
typedef __m256 vxf;
VEC_INLINE vxf vx_zero(void) { return _mm256_setzero_ps(); }
VEC_INLINE vxf vx_set1(float x) { return _mm256_set1_ps(x); }
VEC_INLINE vxf vx_fma(vxf a, vxf b, vxf c) { return _mm256_fmadd_ps(a, b, c); }
VEC_INLINE vxf vx_add(vxf a, vxf b) { return _mm256_add_ps(a, b); }
VEC_INLINE vxf vx_sub(vxf a, vxf b) { return _mm256_sub_ps(a, b); }
VEC_INLINE vxf vx_mul(vxf a, vxf b) { return _mm256_mul_ps(a, b); }
VEC_INLINE vxf vx_div(vxf a, vxf b) { return _mm256_div_ps(a, b); }
VEC_INLINE vxf vx_load(const void* p, linattn_dtype dt) { return load8(p, dt); }
VEC_INLINE vxf vx_load_n(const void* p, int64_t n, linattn_dtype dt) { return load8_part((const char*)p, n, dt); }
/* fp32 from a scratch array padded so that a whole vector is in bounds: lanes from n on are
 * whatever follows (only the lanes below n are used) */
VEC_INLINE vxf vx_loadf_padded(const float* p, int64_t n) {
  (void)n;
  return _mm256_loadu_ps(p);
}
VEC_INLINE void vx_storef(float* p, vxf x) { _mm256_storeu_ps(p, x); }
VEC_INLINE void vx_sfence(void) { _mm_sfence(); }
VEC_INLINE void vx_streamf(float* p, vxf x) { _mm256_stream_ps(p, x); }
VEC_INLINE float vx_hsum(vxf v) { /* fixed pairwise order: 8 -> 4 -> 2 -> 1 */
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}
VEC_INLINE vxf vx_exp(vxf x) { return exp8(x); }
VEC_INLINE vxf vx_silu(vxf x) { return silu8(x); }
VEC_INLINE vxf vx_silu_t16(vxf x) { return silu8_t16(x); }
/* the value of round_f16(x) / of round_bf16(x) (no NaN case, see bf16_round_bits8) as fp32 */
VEC_INLINE vxf vx_round_f16(vxf x) { return _mm256_cvtph_ps(_mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
VEC_INLINE vxf vx_round_bf16(vxf x) {
  return _mm256_castsi256_ps(_mm256_and_si256(bf16_round_bits8(x), _mm256_set1_epi32((int)0xffff0000u)));
}

/* Stores the first n of 16-bit lanes h (n >= 8: all 8). */
VEC_INLINE void vx_store16_n(void* p, int64_t n, __m128i h) {
  if (n >= 8) {
    _mm_storeu_si128((__m128i*)p, h);
    return;
  }
  _Alignas(16) uint16_t buf[8];
  _mm_store_si128((__m128i*)buf, h);
  memcpy(p, buf, (size_t)n * 2u);
}
VEC_INLINE void vx_storef_n(float* p, int64_t n, vxf x) {
  if (n >= 8) {
    _mm256_storeu_ps(p, x);
    return;
  }
  _Alignas(32) float buf[8];
  _mm256_store_ps(buf, x);
  memcpy(p, buf, (size_t)n * 4u);
}
/* x rounded to fp16 (nearest even) */
VEC_INLINE void vx_store_f16_n(void* p, int64_t n, vxf x) {
  vx_store16_n(p, n, _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
/* x rounded to bf16 with src/convert.h's NaN rule */
VEC_INLINE void vx_store_bf16_n(void* p, int64_t n, vxf x) { vx_store16_n(p, n, f32_to_bf16_8(x)); }
/* x rounded to bf16 without the NaN case (bf16_round_bits8: for values computed from 16-bit
 * inputs) */
VEC_INLINE void vx_store_bf16_rne_n(void* p, int64_t n, vxf x) {
  vx_store16_n(p, n, pack16(_mm256_srli_epi32(bf16_round_bits8(x), 16)));
}
/* x rounded to T (bf16: convert.h's NaN rule) */
VEC_INLINE void vx_store_n(void* p, int64_t n, vxf x, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) vx_storef_n((float*)p, n, x);
  else if (dt == LINATTN_DTYPE_F16) vx_store_f16_n(p, n, x);
  else vx_store_bf16_n(p, n, x);
}

#endif /* LINATTN_VEC_AVX2_H */
