/*
 * AVX-512 (F/BW/VL/DQ) fused LinearAttention kernel: the vector vocabulary for
 * la_simd_body.h with 16 fp32 lanes, column panels of 2 zmm (32 columns). Conversions and exp
 * come from vec_avx512.h (shared with conv_avx512.c): fp16 via vcvtph2ps / vcvtps2ph (round to
 * nearest even), bf16 by shifts and an integer round-to-nearest-even that keeps NaNs.
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "la_common.h"
#include "vec_avx512.h"

#define LA_VL 16
#define LA_FN(name) name##_avx512
typedef __m512 vf;

static inline vf v_zero(void) { return _mm512_setzero_ps(); }
static inline vf v_set1(float x) { return _mm512_set1_ps(x); }
static inline vf v_load(const float* p) { return _mm512_loadu_ps(p); }
static inline void v_store(float* p, vf x) { _mm512_storeu_ps(p, x); }
static inline void v_stream(float* p, vf x) { _mm512_stream_ps(p, x); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm512_fmadd_ps(a, b, c); }
static inline vf v_mul(vf a, vf b) { return _mm512_mul_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm512_sub_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm512_div_ps(a, b); }
/* 1 if every lane is in [lo, hi] (NaN is not) */
static inline int v_in_range(vf x, float lo, float hi) {
  const __mmask16 a = _mm512_cmp_ps_mask(x, _mm512_set1_ps(lo), _CMP_GE_OQ);
  const __mmask16 b = _mm512_cmp_ps_mask(x, _mm512_set1_ps(hi), _CMP_LE_OQ);
  return (uint16_t)(a & b) == 0xffffu;
}
static inline float v_hsum(vf x) {
  /* fixed pairwise order: 16 -> 8 -> 4 -> 2 -> 1 */
  __m256 h = _mm256_add_ps(_mm512_castps512_ps256(x), _mm512_extractf32x8_ps(x, 1));
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}
static inline void v_prefetch(const void* p) { _mm_prefetch((const char*)p, _MM_HINT_T0); }
/* PREFETCHW (every AVX-512 CPU has PRFCHW): the line arrives writable, no second request
 * when the store comes */
static inline void v_prefetch_w(const void* p) { __asm__ volatile("prefetchw %0" : : "m"(*(const char*)p)); }
static inline void v_sfence(void) { _mm_sfence(); }
/* prefetcht0 by inline asm: GCC 12 -O3 emits none for v_prefetch in the panel sweeps
 * (docs/tuning.md, la.decode_overlap); used by the overlapped decode sweeps only */
#define LA_PREFETCH_L1 1
static inline __attribute__((always_inline)) void v_prefetch_l1(const void* p) {
  __asm__ volatile("prefetcht0 %0" : : "m"(*(const char*)p));
}

static inline vf v_load_io(const void* p, linattn_dtype dt, int n) {
  return n == LA_VL ? load16(p, dt) : load16_maskz(p, lanes16(n), dt);
}

static inline void v_store_io(void* p, linattn_dtype dt, vf x, int n) {
  if (dt == LINATTN_DTYPE_F32) {
    if (n == LA_VL) _mm512_storeu_ps(p, x);
    else _mm512_mask_storeu_ps(p, lanes16(n), x);
    return;
  }
  const __m256i h = dt == LINATTN_DTYPE_F16 ? _mm512_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                                            : f32_to_bf16_16(x);
  if (n == LA_VL) _mm256_storeu_si256((__m256i*)p, h);
  else _mm256_mask_storeu_epi16(p, lanes16(n), h);
}

static inline vf v_exp(vf x) { return exp16(x); }

/* Panels of 2 zmm (32 columns): with the 128 x 32 fp32 state block (16 KiB) the panel, its
 * staged tokens and the outputs fit Zen 4's 32 KiB L1D, which 64-column panels (32 KiB) do not
 * (docs/tuning.md, LA_WMAX (la_avx512.c)). Registers: p 2 + u 2 + s 2*NQ (<= 16) + broadcasts, within 32 zmm. */
#define LA_WMAX(G) 2
/* 32 zmm: a lock-step tile (per-key decay, or per-head decay folded out) is staged in one burst
 * with the rows of d_k = 64 or 128 in registers (la_stage_tile_per_key_nv, la_stage_tile_fold_nv;
 * docs/tuning.md, LA_STAGE_TILE). */
#define LA_STAGE_TILE 1
/* Decode (no packed copy): one or two heads take whole 128-column rows (8 zmm) or 64
 * columns, so the state streams from memory as contiguous rows. */
#define LA_WMAX_DECODE(G) ((G) == 1 ? 8 : (G) == 2 ? 4 : 2)
/* Decode panels whose update sweep may also sum the next panel's p and s (la_tuning.decode_overlap):
 * u, p, s (NQ + 2 rows of W) plus the row and the next row, W * (NQ + 4) <= 24 of the 32 zmm. */
#define LA_DECODE_OVERLAP(NQ, W) ((W) * ((NQ) + 4) <= 24)

/* The panels to instantiate, (heads per group, vectors): la_simd_panels.h checks that these are
 * the widths la_setup picks with the LA_WMAX above. */
#define LA_PANELS(X) \
  X(1, 1) X(1, 2) X(1, 4) X(1, 8) X(2, 1) X(2, 2) X(2, 4) X(3, 1) X(3, 2) X(4, 1) X(4, 2) X(8, 1) X(8, 2)

/* Two-token panels (la_panel_pairs, run where la_tuning.sweep_tokens is 2): 4 zmm for one head
 * (16 accumulators, both tokens' u, the rows), 2 for two; la_tuning.pair_vectors 2 caps both at 2. */
#define LA_WMAX_PAIR(G) ((G) == 1 ? 4 : 2)
#define LA_PAIR_PANELS(X) X(1, 1) X(1, 2) X(1, 4) X(2, 1) X(2, 2)

/* bf16 state rows of the decode sweep (la_panel_decode) stored through vcvtneps2bf16 where the
 * CPU has AVX512-BF16 (la_bf16_store_native): one conversion instead of the integer rounding,
 * the same bits as src/convert.h for every value the sweep stores (round to nearest even, NaN
 * to (bits >> 16) | 0x40); it reads fp32 subnormals as zero, and the kernels store none (they
 * run with FTZ, and every stored row is an FMA result). Inline asm: the file is compiled without
 * -mavx512bf16, the instruction runs only after the CPUID check. */
#define LA_BF16_STORE_NATIVE 1
static inline __attribute__((always_inline)) void v_store_bf16_native(void* p, vf x) {
  __m256i h;
  __asm__("vcvtneps2bf16 %1, %0" : "=v"(h) : "v"(x));
  _mm256_storeu_si256((__m256i*)p, h);
}
static int la_bf16_store_native(void) { return __builtin_cpu_supports("avx512bf16"); }

/* la_tuning.decode_half_convert: conversion forms that cost fewer uops on the ports of the FMAs
 * of the Intel cores (docs/tuning.md, la.decode_half_convert); the same rounding, the same bits.
 * fp16 state rows of the decode sweeps are stored by vcvtps2ph to memory (SD 5): the packing to
 * 16-bit words then rides the store, one uop fewer than converting to a register. */
#define LA_F16_STORE_MEM 1
static inline __attribute__((always_inline)) void v_store_f16_mem(void* p, vf x) {
  __asm__("vcvtps2ph $8, %1, %0" : "=m"(*(__m256i_u*)p) : "v"(x));
}
/* bf16 state rows of the decode sweeps in column pairs (where la_bf16_store_native):
 * the two vectors of each 32-column group hold its even and its odd
 * columns, so widening 32 elements is one masked load (the odd ones already sit in the high words)
 * and one shift (the even ones), and storing them is one vcvtne2ps2bf16 (the rounding of
 * vcvtneps2bf16) and one word permute back to memory order. Every column keeps its arithmetic. */
#define LA_BF16_PAIRS 1
static inline __attribute__((always_inline)) vf v_load_bf16_even(const void* p) {
  return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_loadu_si512(p), 16));
}
static inline __attribute__((always_inline)) vf v_load_bf16_odd(const void* p) {
  return _mm512_castsi512_ps(_mm512_maskz_loadu_epi16(0xaaaaaaaau, p));
}
static inline __attribute__((always_inline)) void v_store_bf16_pair(void* p, vf even, vf odd) {
  const __m512i to_mem = _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8,
                                          23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  __m512i h; /* words 0..15: the even columns, 16..31: the odd ones */
  __asm__("vcvtne2ps2bf16 %2, %1, %0" : "=v"(h) : "v"(odd), "v"(even));
  _mm512_storeu_si512(p, _mm512_permutexvar_epi16(to_mem, h));
}
/* columns 0..15 (a) and 16..31 (b) of a group to its even and odd columns, and back */
static inline __attribute__((always_inline)) void v_to_pair(vf a, vf b, vf* even, vf* odd) {
  const __m512i e = _mm512_set_epi32(30, 28, 26, 24, 22, 20, 18, 16, 14, 12, 10, 8, 6, 4, 2, 0);
  const __m512i o = _mm512_set_epi32(31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1);
  *even = _mm512_permutex2var_ps(a, e, b);
  *odd = _mm512_permutex2var_ps(a, o, b);
}
static inline __attribute__((always_inline)) void v_from_pair(vf even, vf odd, vf* a, vf* b) {
  const __m512i lo = _mm512_set_epi32(23, 7, 22, 6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
  const __m512i hi = _mm512_set_epi32(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8);
  *a = _mm512_permutex2var_ps(even, lo, odd);
  *b = _mm512_permutex2var_ps(even, hi, odd);
}

/* The output finiteness scan (la_kernel.outputs_finite): the unsigned maximum of the magnitude
 * bits (sign cleared) of 16 fp32 or 32 16-bit elements a vector, one compare with limit at the
 * end. A row's tail is a zero-masked load: a zero lane fails only for limit 0, where the
 * element loaded with it fails too. */
VEC_INLINE __m512i la_max_mag32(const uint32_t* o, int64_t n, __m512i m) {
  const __m512i mag = _mm512_set1_epi32(0x7fffffff);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_loadu_si512(o + j), mag));
  if (j < n) m = _mm512_max_epu32(m, _mm512_and_si512(_mm512_maskz_loadu_epi32(lanes16(n - j), o + j), mag));
  return m;
}
VEC_INLINE __m512i la_max_mag16(const uint16_t* o, int64_t n, __m512i m) {
  const __m512i mag = _mm512_set1_epi16(0x7fff);
  int64_t j = 0;
  for (; j + 32 <= n; j += 32) m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(o + j), mag));
  if (j < n) {
    const __mmask32 tail = (__mmask32)((1ull << (n - j)) - 1u);
    m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_maskz_loadu_epi16(tail, o + j), mag));
  }
  return m;
}
static bool la_outputs_finite_avx512(linattn_dtype io_dtype, uint32_t limit, const la_unit* u, int64_t t0,
                                     int64_t t1) {
  if (t1 <= t0 || u->n_q <= 0 || u->ncols <= 0) return true;
  const la_scan_rows s = la_scan_rows_of(u, t0, t1);
  __m512i m = _mm512_setzero_si512();
  if (io_dtype == LINATTN_DTYPE_F32) {
    const uint32_t* o = (const uint32_t*)u->out + t0 * u->out_token_stride;
    for (int64_t t = 0; t < s.tokens; t++)
      for (int64_t h = 0; h < s.heads; h++) m = la_max_mag32(o + t * s.token_stride + h * s.head_stride, s.len, m);
    return _mm512_cmpge_epu32_mask(m, _mm512_set1_epi32((int32_t)limit)) == 0;
  }
  const uint16_t* o = (const uint16_t*)u->out + t0 * u->out_token_stride;
  for (int64_t t = 0; t < s.tokens; t++)
    for (int64_t h = 0; h < s.heads; h++) m = la_max_mag16(o + t * s.token_stride + h * s.head_stride, s.len, m);
  return _mm512_cmpge_epu16_mask(m, _mm512_set1_epi16((int16_t)limit)) == 0;
}
#define LA_OUTPUTS_FINITE la_outputs_finite_avx512

#include "la_simd_body.h"
#include "la_simd_panels.h"

const la_kernel linattn_la_avx512 = LA_SIMD_KERNEL("avx512");
