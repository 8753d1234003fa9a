/*
 * AVX-512 (F/BW/VL/DQ + F16C + FMA) vector math shared by la_avx512.c, conv_avx512.c and
 * gates_avx512.c (private; include only from files compiled with the avx512 flags of
 * registry.inc): 16 fp32 lanes per __m512. io-dtype loads, bf16 rounding, exp and SiLU, and the
 * vx_* vocabulary that conv_simd_body.h and gates_simd_body.h are written in.
 *
 * bf16 is rounded with integer round-to-nearest-even, bit-identical to src/convert.h, not with
 * vcvtneps2bf16: that needs AVX512-BF16 and flushes fp32 subnormal inputs to zero.
 */
#ifndef LINATTN_VEC_AVX512_H
#define LINATTN_VEC_AVX512_H

#include <immintrin.h>
#include <stdint.h>

#include "linattn.h"
#include "vec_poly.h"


#define VEC_INLINE static inline __attribute__((always_inline))

/* The first n lanes (none for n <= 0, all for n >= 16). */
static inline __mmask16 lanes16(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* ------------------------------------------------------------------ loads */

/* Word i of the low half to the high word of lane i, low words zero: one vpermw instead of
 * vpmovzxwd + vpslld. */
VEC_INLINE __m512 bf16_widen(__m256i h) {
  const __m512i to_high = _mm512_set_epi16(15, 0, 14, 0, 13, 0, 12, 0, 11, 0, 10, 0, 9, 0, 8, 0,
                                           7, 0, 6, 0, 5, 0, 4, 0, 3, 0, 2, 0, 1, 0, 0, 0);
  return _mm512_castsi512_ps(_mm512_maskz_permutexvar_epi16(0xaaaaaaaau, to_high, _mm512_castsi256_si512(h)));
}

/* 16 elements of an io-dtype array as fp32. */
VEC_INLINE __m512 load16(const void* p, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) return _mm512_loadu_ps(p);
  __m256i h = _mm256_loadu_si256((const __m256i*)p);
  return dt == LINATTN_DTYPE_F16 ? _mm512_cvtph_ps(h) : bf16_widen(h);
}

/* Masked-off lanes read nothing (no fault) and are 0. */
VEC_INLINE __m512 load16_maskz(const void* p, __mmask16 m, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) return _mm512_maskz_loadu_ps(m, p);
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return dt == LINATTN_DTYPE_F16 ? _mm512_cvtph_ps(h) : bf16_widen(h);
}

VEC_INLINE __m512 load16_m(const void* p, __mmask16 m, linattn_dtype dt) {
  return m == 0xffff ? load16(p, dt) : load16_maskz(p, m, dt);
}

/* ------------------------------------------------------------------ bf16 rounding */

/* fp32 -> bf16 bits, round to nearest even; NaN -> quiet NaN with the sign and top payload
 * bits (src/convert.h for every input). */
VEC_INLINE __m256i f32_to_bf16_16(__m512 x) {
  const __m512i b = _mm512_castps_si512(x);
  const __m512i hi = _mm512_srli_epi32(b, 16);
  const __m512i bias = _mm512_add_epi32(_mm512_and_si512(hi, _mm512_set1_epi32(1)), _mm512_set1_epi32(0x7fff));
  __m512i r = _mm512_srli_epi32(_mm512_add_epi32(b, bias), 16);
  const __mmask16 nan = _mm512_cmp_ps_mask(x, x, _CMP_UNORD_Q);
  r = _mm512_mask_or_epi32(r, nan, hi, _mm512_set1_epi32(0x40));
  return _mm512_cvtepi32_epi16(r);
}

/* bf16 round to nearest even, on 32-bit lanes: u + 0x7fff + lsb, then drop the low half (the
 * lsb as a k-mask and a masked add: one instruction fewer than shift, and, add).
 * No NaN case, unlike f32_to_bf16_16, for values whose NaNs came out of an fp32 operation on
 * 16-bit T inputs (the conv kernels): such a NaN is quiet and carries a payload from a bf16
 * input or the default NaN, whose low 16 bits are zero, so the add cannot carry out of the
 * mantissa and the result is (u >> 16), which equals convert.h's (u >> 16) | 0x40. */
VEC_INLINE __m512i bf16_round_bits(__m512 v) {
  const __m512i u = _mm512_castps_si512(v);
  const __mmask16 odd = _mm512_test_epi32_mask(u, _mm512_set1_epi32(0x10000)); /* lsb of the bf16 */
  const __m512i r = _mm512_add_epi32(u, _mm512_set1_epi32(0x7fff));
  return _mm512_mask_add_epi32(r, odd, r, _mm512_set1_epi32(1));
}
/* The high words of the 16 lanes (the bf16 bits after bf16_round_bits), in order: one vpermw
 * instead of vpsrld + vpmovdw. */
VEC_INLINE __m256i bf16_high_words(__m512i r) {
  const __m512i odd_words = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                             31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi16(odd_words, r));
}
VEC_INLINE __m512 bf16_round(__m512 v) { /* value of round_bf16(v) as fp32 */
  return _mm512_castsi512_ps(_mm512_and_si512(bf16_round_bits(v), _mm512_set1_epi32((int)0xffff0000u)));
}

/* ------------------------------------------------------------------ exp, SiLU */

/* ((((c0 r + c1) r + c2) r + c3) r + c4) r + c5, one FMA per step. */
VEC_INLINE __m512 horner16(__m512 r, float c0, float c1, float c2, float c3, float c4, float c5) {
  __m512 y = _mm512_set1_ps(c0);
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c1));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c2));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c3));
  y = _mm512_fmadd_ps(y, r, _mm512_set1_ps(c4));
  return _mm512_fmadd_ps(y, r, _mm512_set1_ps(c5));
}

/* exp(x): x = n ln2 + r (Cody-Waite), |r| <= ln2/2, the degree-6 polynomial of vec_poly.h,
 * scaled by 2^n with vscalefps (overflow -> inf, underflow -> 0 under FTZ). x is clamped to
 * [-104, 89] first so -inf gives 0 and +inf gives inf; NaN stays NaN (max/min return their
 * second operand when one is NaN). */
VEC_INLINE __m512 exp16(__m512 x) {
  x = _mm512_min_ps(_mm512_set1_ps(89.0f), _mm512_max_ps(_mm512_set1_ps(-104.0f), x));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(VEC_LOG2E)),
                                        _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(VEC_LN2_HI), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(VEC_LN2_LO), r);
  __m512 y = horner16(r, VEC_EXP_P0, VEC_EXP_P1, VEC_EXP_P2, VEC_EXP_P3, VEC_EXP_P4, VEC_EXP_P5);
  y = _mm512_fmadd_ps(y, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_scalef_ps(y, n);
}

/* v / (1 + exp(-v)). exp(-v) = 2^n p(r'), n = round(-v log2 e), r' = v + n ln2 = -r (Cody-Waite,
 * two FMAs); p evaluates exp(-r') with the SiLU polynomial of vec_poly.h. scalef applies 2^n
 * with overflow to inf and underflow to 0. The clamp keeps r' meaningful for huge |v| (results
 * there are already v, -0 or NaN for -inf). Relative error vs float64 SiLU <= 3e-7 (tested). */
VEC_INLINE __m512 silu16(__m512 v) {
  /* t = sign(v) min(|v|, 120) in one vrangeps; NaN becomes 120, harmless: v itself is divided */
  __m512 t = _mm512_range_ps(v, _mm512_set1_ps(120.0f), 0x02);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(-VEC_LOG2E)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(VEC_LN2_HI), t);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(VEC_LN2_LO), r);
  __m512 q = horner16(r, VEC_SILU_Q0, VEC_SILU_Q1, VEC_SILU_Q2, VEC_SILU_Q3, VEC_SILU_Q4, VEC_SILU_Q5);
  __m512 e = _mm512_scalef_ps(q, n);
  return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* SiLU of a value rounded to a 16-bit T (fp16 or bf16): the exp polynomial of silu16 with a
 * shorter chain around it. n comes from one FMA with a magic constant whose low bits then hold
 * n, r' = t + n ln2 takes one FMA (ln2 as one fp32 constant), and e = 2^n q is one vscalefps
 * (overflow to inf, underflow to 0, as in silu16). Not silu16's fp32 bits for every input (the
 * single-constant reduction moves some by an ulp), but after rounding to T it gives silu16's
 * bits for each of the 65,536 fp16 and the 65,536 bf16 inputs (tests/test_conv_kernels.c
 * enumerates them all): only for 16-bit T. The division stays: on the Intel Xeon a reciprocal
 * (vrcp14ps) with a correction step gives the same T bits but was slower (docs/tuning.md,
 * silu_t16). */
VEC_INLINE __m512 silu_t16(__m512 v) {
  __m512 t = _mm512_range_ps(v, _mm512_set1_ps(120.0f), 0x02); /* as in silu16 */
  __m512 nm = _mm512_fmadd_ps(t, _mm512_set1_ps(-VEC_LOG2E), _mm512_set1_ps(VEC_SILU_MAGIC));
  __m512 n = _mm512_sub_ps(nm, _mm512_set1_ps(VEC_SILU_MAGIC));
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(VEC_SILU_LN2), t);
  __m512 q = horner16(r, VEC_SILU_Q0, VEC_SILU_Q1, VEC_SILU_Q2, VEC_SILU_Q3, VEC_SILU_Q4, VEC_SILU_Q5);
  return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), _mm512_scalef_ps(q, n)));
}

/* SiLU of a 16-bit T by table: tab[h] holds the T bits of silu_t16 of the T value with bits h,
 * rounded to T, for all 65,536 h, plus one padding entry. The 16 lanes' indices (T bits,
 * zero-extended) take one vpgatherdd of 32-bit reads at a 2-byte scale: each lane's low word is
 * its entry (the high word, the next entry, is discarded). */
#define SILU_TABLE_ENTRIES (65536 + 32)
VEC_INLINE __m512i silu_table_gather(__m512i idx, const uint16_t* tab) {
  return _mm512_i32gather_epi32(idx, (const void*)tab, 2);
}
/* The low words of the 16 lanes, in order (vpermw: one shuffle uop, where vpmovdw takes two). */
VEC_INLINE __m256i low_words16(__m512i r) {
  const __m512i even_words = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
                                              30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  return _mm512_castsi512_si256(_mm512_permutexvar_epi16(even_words, r));
}
/* The fp16 bits of silu_t16(round_f16(v)) rounded to fp16, from tab (see above). */
VEC_INLINE __m256i silu_table_f16(__m512 v, const uint16_t* tab) {
  const __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  return low_words16(silu_table_gather(_mm512_cvtepu16_epi32(h), tab));
}
/* The bf16 bits of silu_t16(round_bf16(v)) rounded to bf16 (bf16_round_bits, no NaN case), from tab. */
VEC_INLINE __m512i silu_table_bf16_lanes(__m512 v, const uint16_t* tab) { /* the entry in each lane's low word */
  return silu_table_gather(_mm512_srli_epi32(bf16_round_bits(v), 16), tab);
}
VEC_INLINE __m256i silu_table_bf16(__m512 v, const uint16_t* tab) { return low_words16(silu_table_bf16_lanes(v, tab)); }

/* ------------------------------------------------------------------ vocabulary of the bodies */

/* The names conv_simd_body.h and gates_simd_body.h are written in (vec_avx2.h defines the same
 * with 8 lanes). *_n forms take n valid lanes (n >= VX_LANES: all) as a k-mask: partial loads
 * read only the first n elements and give 0 beyond, partial stores write only the first n. */
#define VX_LANES 16
typedef __m512 vxf;
VEC_INLINE vxf vx_zero(void) { return _mm512_setzero_ps(); }
VEC_INLINE vxf vx_set1(float x) { return _mm512_set1_ps(x); }
VEC_INLINE vxf vx_fma(vxf a, vxf b, vxf c) { return _mm512_fmadd_ps(a, b, c); }
VEC_INLINE vxf vx_add(vxf a, vxf b) { return _mm512_add_ps(a, b); }
VEC_INLINE vxf vx_sub(vxf a, vxf b) { return _mm512_sub_ps(a, b); }
VEC_INLINE vxf vx_mul(vxf a, vxf b) { return _mm512_mul_ps(a, b); }
VEC_INLINE vxf vx_div(vxf a, vxf b) { return _mm512_div_ps(a, b); }
VEC_INLINE vxf vx_load(const void* p, linattn_dtype dt) { return load16(p, dt); }
VEC_INLINE vxf vx_load_n(const void* p, int64_t n, linattn_dtype dt) {
  return n >= 16 ? load16(p, dt) : load16_maskz(p, lanes16(n), dt);
}
/* fp32 from a padded scratch array: masked all the same (lanes from n on are 0) */
VEC_INLINE vxf vx_loadf_padded(const float* p, int64_t n) {
  return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes16(n), p);
}
VEC_INLINE void vx_storef(float* p, vxf x) { _mm512_storeu_ps(p, x); }
VEC_INLINE void vx_sfence(void) { _mm_sfence(); }
VEC_INLINE void vx_streamf(float* p, vxf x) { _mm512_stream_ps(p, x); }
VEC_INLINE float vx_hsum(vxf v) { return _mm512_reduce_add_ps(v); }
VEC_INLINE vxf vx_exp(vxf x) { return exp16(x); }
VEC_INLINE vxf vx_silu(vxf x) { return silu16(x); }
VEC_INLINE vxf vx_silu_t16(vxf x) { return silu_t16(x); }
/* the value of round_f16(x) / of round_bf16(x) (no NaN case, see bf16_round_bits) as fp32 */
VEC_INLINE vxf vx_round_f16(vxf x) { return _mm512_cvtph_ps(_mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)); }
VEC_INLINE vxf vx_round_bf16(vxf x) { return bf16_round(x); }

VEC_INLINE void vx_store16_n(void* p, int64_t n, __m256i h) {
  if (n >= 16) _mm256_storeu_si256((__m256i*)p, h);
  else _mm256_mask_storeu_epi16(p, lanes16(n), h);
}
VEC_INLINE void vx_storef_n(float* p, int64_t n, vxf x) {
  if (n >= 16) _mm512_storeu_ps(p, x);
  else _mm512_mask_storeu_ps(p, lanes16(n), x);
}
VEC_INLINE void vx_store_f16_n(void* p, int64_t n, vxf x) {
  vx_store16_n(p, n, _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}
VEC_INLINE void vx_store_bf16_n(void* p, int64_t n, vxf x) { vx_store16_n(p, n, f32_to_bf16_16(x)); }
VEC_INLINE void vx_store_bf16_rne_n(void* p, int64_t n, vxf x) { vx_store16_n(p, n, bf16_high_words(bf16_round_bits(x))); }
VEC_INLINE void vx_store_n(void* p, int64_t n, vxf x, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) vx_storef_n((float*)p, n, x);
  else if (dt == LINATTN_DTYPE_F16) vx_store_f16_n(p, n, x);
  else vx_store_bf16_n(p, n, x);
}

#endif /* LINATTN_VEC_AVX512_H */
