/*
 * CausalConvWithState, AVX2 + FMA + F16C family: conv_simd_body.h over vec_avx2.h's 8 lanes
 * (the prefill paths, shared with conv_avx512.c), plus this family's decode (L = 1) across
 * channels: K = 4 / dilation 1 groups by in-register permutes and blends (16-bit states by
 * in-lane byte shuffles of the raw words), other K by gathers
 * (AVX2 has no two-source permute; docs/algorithms.md, conv kernels). AVX2 has no 16-bit
 * masked loads, so partial vectors (tails, taps reaching into past_state) go through a small
 * stack buffer; the arithmetic on them is the same vector code, so every element gets the
 * same bits.
 */
#include <immintrin.h>

#include "conv_common.h"
#include "vec_avx2.h"

#define AI static inline __attribute__((always_inline))

typedef linattn_dtype dtype_t;

/* ------------------------------------------------------------------ configuration */

/* eight vectors summed, then finished: their rounding / SiLU / conversion chains overlap
 * (docs/tuning.md, CONV_CF_BATCH) */
#define CONV_CF_BATCH 8
/* Time steps per column tile of channels_last_k4: 4 keeps weights, bias, history and
 * accumulators within the 16 ymm registers, which 8 steps spill (docs/tuning.md, CONV_CL_ROWS). */
#define CONV_CL_ROWS(dt, act) 4
#define CONV_CL_ROWS_MAX 4
/* No stream of channels-first rows: this family is bound by arithmetic there, and streaming
 * did not pay (docs/tuning.md, CONV_CF_STREAM). */
#define CONV_CF_STREAM 0
/* Channels-last columns aligned only for a streamed output: partial vectors cost a stack
 * buffer round trip here. */
#define CONV_CL_LEAD_ALWAYS 0
/* No taps shifted in registers: vpalignr works within 128-bit lanes, so taps are unaligned
 * loads. */
#define CONV_CF_SHIFT 0
/* all six specialisations inlined into the entry (but the channels-last fp32 decode, see
 * channels_last_decode): split, the channels-first fp32 decode was slower and the prefill rows
 * no faster (docs/tuning.md, CONV_SPLIT_TYPED) */
#define CONV_SPLIT_TYPED 0
#define CONV_FN(name) name##_avx2

/* fp32 outputs larger than the caches (conv_params.stream_output) leave with non-temporal
 * stores when the rows keep the columns 32-byte aligned (docs/tuning.md, conv_cl_stream). */
AI bool conv_cl_stream(const conv_params* p, dtype_t dt) {
  return dt == LINATTN_DTYPE_F32 && p->stream_output && (p->y_st * 4) % 32 == 0;
}

#include "conv_simd_body.h"

/* ------------------------------------------------------------------ hooks of the body */

/* padded[pos + i], lane by lane through a stack buffer (no 16-bit masked loads) */
AI __m256 conv_load_padded(const char* prow, const char* xrow, int64_t pos, int64_t S, int64_t n, dtype_t dt) {
  const size_t es = conv_esize(dt);
  _Alignas(32) char buf[32] = {0};
  for (int64_t i = 0; i < n; ++i) {
    const int64_t q = pos + i;
    const char* src = q >= S ? xrow + (q - S) * (int64_t)es : prow ? prow + q * (int64_t)es : NULL;
    if (src) memcpy(buf + i * (int64_t)es, src, es);
  }
  return load8(buf, dt);
}

static inline __m256i lanes8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* tap-major [K][ncp] with gathers */
AI void conv_weights_tap_major(const conv_params* p, const float* wsrc, int64_t nc, float* wt) {
  const int64_t K = p->K, ncp = conv_ncp(nc);
  const __m256i widx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)K));
  for (int64_t v = 0; v < ncp; v += 8) {
    const __m256 m = _mm256_castsi256_ps(lanes8(nc - v));
    for (int64_t j = 0; j < K; ++j)
      _mm256_storeu_ps(wt + j * ncp + v, _mm256_mask_i32gather_ps(_mm256_setzero_ps(), wsrc + v * K,
                                                                  _mm256_add_epi32(widx, _mm256_set1_epi32((int)j)), m, 4));
  }
}

/* ------------------------------------------------------------------ decode (L = 1) */

/* The (8 channels, 4 taps) weights at wv (T, channel-major: 32 values) as four fp32 tap
 * vectors w_j (lane c = channel c's tap j): a 4 x 8 transpose in registers. */
AI void weights8x4_tap_major(const void* wv, dtype_t dt, __m256* w0, __m256* w1, __m256* w2, __m256* w3) {
  const __m256i to_nat = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7); /* lanes (0,2,4,6,1,3,5,7) -> natural */
  const size_t es = conv_esize(dt);
  const char* wb = (const char*)wv;
  const __m256 R0 = load8(wb, dt), R1 = load8(wb + 8 * es, dt);
  const __m256 R2 = load8(wb + 16 * es, dt), R3 = load8(wb + 24 * es, dt);
  const __m256 t0 = _mm256_unpacklo_ps(R0, R1), t1 = _mm256_unpackhi_ps(R0, R1);
  const __m256 t2 = _mm256_unpacklo_ps(R2, R3), t3 = _mm256_unpackhi_ps(R2, R3);
  *w0 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0x44), to_nat);
  *w1 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t0, t2, 0xee), to_nat);
  *w2 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0x44), to_nat);
  *w3 = _mm256_permutevar8x32_ps(_mm256_shuffle_ps(t1, t3, 0xee), to_nat);
}


/* K = 4, dilation 1 with a past state: whole 8-channel groups without gathers (the scheme
 * of decode_k4 in conv_avx512.c): the weights and bias read in place (16-bit T converted
 * per group) and transposed in registers, taps taken from the state's three registers by
 * permutes and blends, the present by shifts and blends of the raw state; same bits.
 * Channels [0, nfast) of the block at c0, nfast a multiple of 8. */

/* The group's present: new flat f = old f + 1, except f = 3c + 2 <- x[c]; sv the group's 24 past
 * values (S2 its third register as fp32), xv its 8 inputs, X those as fp32. Called after the
 * group's reads, so in-place safe. */
AI void decode_k4_present8(char* pv, const char* sv, const char* xv, __m256 S2, __m256 X, size_t es, bool more) {
  if (es == 4) {
    /* present lanes taking x: flat 3c + 2 -> N0 lanes 2, 5 (x 0, 1); N1 lanes 0, 3, 6 (x 2-4); N2 lanes 1, 4, 7 (x 5-7) */
    const __m256i xs0 = _mm256_setr_epi32(0, 0, 0, 0, 0, 1, 0, 0);
    const __m256i xs1 = _mm256_setr_epi32(2, 0, 0, 3, 0, 0, 4, 0);
    const __m256i xs2 = _mm256_setr_epi32(0, 5, 0, 0, 6, 0, 0, 7);
    const __m256i up1 = _mm256_setr_epi32(1, 2, 3, 4, 5, 6, 7, 7);
    const float* sf = (const float*)sv;
    const __m256 N0 = _mm256_blend_ps(_mm256_loadu_ps(sf + 1), _mm256_permutevar8x32_ps(X, xs0), 0x24);
    const __m256 N1 = _mm256_blend_ps(_mm256_loadu_ps(sf + 9), _mm256_permutevar8x32_ps(X, xs1), 0x49);
    const __m256 N2 = _mm256_blend_ps(_mm256_permutevar8x32_ps(S2, up1), _mm256_permutevar8x32_ps(X, xs2), 0x92);
    _mm256_storeu_ps((float*)pv, N0);
    _mm256_storeu_ps((float*)pv + 8, N1);
    _mm256_storeu_ps((float*)pv + 16, N2);
  } else { /* raw 16-bit values, loaded one element on (the third chunk shifted: it ends the group) */
    /* x[c] of the group's raw x to flat 3c + 2 (the other lanes zero), merged by and/or, which
     * leave the shuffle port to the shuffles */
    const __m128i xh0 = _mm_setr_epi8(-1, -1, -1, -1, 0, 1, -1, -1, -1, -1, 2, 3, -1, -1, -1, -1);
    const __m128i xh1 = _mm_setr_epi8(4, 5, -1, -1, -1, -1, 6, 7, -1, -1, -1, -1, 8, 9, -1, -1);
    const __m128i xh2 = _mm_setr_epi8(-1, -1, 10, 11, -1, -1, -1, -1, 12, 13, -1, -1, -1, -1, 14, 15);
    const __m128i keep0 = _mm_setr_epi16(-1, -1, 0, -1, -1, 0, -1, -1);
    const __m128i keep1 = _mm_setr_epi16(0, -1, -1, 0, -1, -1, 0, -1);
    const __m128i keep2 = _mm_setr_epi16(-1, 0, -1, -1, 0, -1, -1, 0);
    const __m128i XR = _mm_loadu_si128((const __m128i*)xv);
    const __m128i M0 = _mm_loadu_si128((const __m128i*)(sv + 2)), M1 = _mm_loadu_si128((const __m128i*)(sv + 18));
    /* the last chunk read one element past the group when a next group follows in the unit
     * (that element, not yet written, is replaced by x), else shifted: no shuffle */
    const __m128i M2 = more ? _mm_loadu_si128((const __m128i*)(sv + 34))
                            : _mm_srli_si128(_mm_loadu_si128((const __m128i*)(sv + 32)), 2);
    _mm_storeu_si128((__m128i*)pv, _mm_or_si128(_mm_and_si128(M0, keep0), _mm_shuffle_epi8(XR, xh0)));
    _mm_storeu_si128((__m128i*)(pv + 16), _mm_or_si128(_mm_and_si128(M1, keep1), _mm_shuffle_epi8(XR, xh1)));
    _mm_storeu_si128((__m128i*)(pv + 32), _mm_or_si128(_mm_and_si128(M2, keep2), _mm_shuffle_epi8(XR, xh2)));
  }
}

/* The three taps (lane c = flat 3c + q) of a group's 24 raw 16-bit state values at sv, picked by
 * in-lane byte shuffles from windows that plain loads place in each 128-bit lane, before
 * widening (fp32 permutes after widening cost three times the shuffles). bf16: 32-bit lane c =
 * (flat 3c, flat 3c + 1) and (0, flat 3c + 2); a bf16 in a lane's high half is its fp32 value.
 * f16: taps 0 | 1 in one register's 128-bit halves, tap 2 in another's, then vcvtph2ps. */
AI void decode_k4_taps16(const char* sv, dtype_t dt, __m256* tap0, __m256* tap1, __m256* tap2) {
  if (dt == LINATTN_DTYPE_BF16) {
    /* lane 0 (channels 0-3) from flats 0-7 and 4-11, lane 1 (channels 4-7) from 12-19 and 16-23:
     * the same byte pattern in both lanes */
    const __m256i A = _mm256_loadu2_m128i((const __m128i*)(sv + 24), (const __m128i*)sv);
    const __m256i B = _mm256_loadu2_m128i((const __m128i*)(sv + 32), (const __m128i*)(sv + 8));
    const __m256i pa = _mm256_setr_epi8(0, 1, 2, 3, 6, 7, 8, 9, 12, 13, 14, 15, -1, -1, -1, -1, 0, 1, 2, 3, 6, 7, 8, 9,
                                        12, 13, 14, 15, -1, -1, -1, -1);
    const __m256i pb = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 10, 11, 12, 13, -1, -1, -1, -1,
                                        -1, -1, -1, -1, -1, -1, -1, -1, 10, 11, 12, 13);
    const __m256i qa = _mm256_setr_epi8(-1, -1, 4, 5, -1, -1, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 4, 5, -1,
                                        -1, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i qb = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 8, 9, -1, -1, 14, 15, -1, -1, -1, -1,
                                        -1, -1, -1, -1, -1, -1, 8, 9, -1, -1, 14, 15);
    const __m256i G = _mm256_or_si256(_mm256_shuffle_epi8(A, pa), _mm256_shuffle_epi8(B, pb));
    *tap0 = _mm256_castsi256_ps(_mm256_slli_epi32(G, 16));
    *tap1 = _mm256_castsi256_ps(_mm256_and_si256(G, _mm256_set1_epi32((int)0xffff0000u)));
    *tap2 = _mm256_castsi256_ps(_mm256_or_si256(_mm256_shuffle_epi8(A, qa), _mm256_shuffle_epi8(B, qb)));
  } else {
    /* flats 0-7, 8-15, 16-23 in both lanes (broadcast loads) */
    const __m256i W0 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)sv));
    const __m256i W1 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(sv + 16)));
    const __m256i W2 = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i*)(sv + 32)));
    /* lane 0: tap 0 = flats 0 3 6 | 9 12 15 | 18 21; lane 1: tap 1 = flats 1 4 7 | 10 13 | 16 19 22 */
    const __m256i s0 = _mm256_setr_epi8(0, 1, 6, 7, 12, 13, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 8, 9, 14, 15,
                                        -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m256i s1 = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, 2, 3, 8, 9, 14, 15, -1, -1, -1, -1, -1, -1, -1, -1, -1,
                                        -1, 4, 5, 10, 11, -1, -1, -1, -1, -1, -1);
    const __m256i s2 = _mm256_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 4, 5, 10, 11, -1, -1, -1, -1,
                                        -1, -1, -1, -1, -1, -1, 0, 1, 6, 7, 12, 13);
    /* tap 2 = flats 2 5 | 8 11 14 | 17 20 23 (lane 0; lane 1 unused) */
    const __m128i r0 = _mm_setr_epi8(4, 5, 10, 11, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1, -1);
    const __m128i r1 = _mm_setr_epi8(-1, -1, -1, -1, 0, 1, 6, 7, 12, 13, -1, -1, -1, -1, -1, -1);
    const __m128i r2 = _mm_setr_epi8(-1, -1, -1, -1, -1, -1, -1, -1, -1, -1, 2, 3, 8, 9, 14, 15);
    const __m256i T01 = _mm256_or_si256(_mm256_or_si256(_mm256_shuffle_epi8(W0, s0), _mm256_shuffle_epi8(W1, s1)),
                                        _mm256_shuffle_epi8(W2, s2));
    const __m128i T2 = _mm_or_si128(_mm_or_si128(_mm_shuffle_epi8(_mm256_castsi256_si128(W0), r0),
                                                 _mm_shuffle_epi8(_mm256_castsi256_si128(W1), r1)),
                                    _mm_shuffle_epi8(_mm256_castsi256_si128(W2), r2));
    *tap0 = _mm256_cvtph_ps(_mm256_castsi256_si128(T01));
    *tap1 = _mm256_cvtph_ps(_mm256_extracti128_si256(T01, 1));
    *tap2 = _mm256_cvtph_ps(T2);
  }
}

AI void decode_k4_groups(const conv_params* p, int64_t b, int64_t c0, int64_t nfast, dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const char* x = conv_at(p->x, b * p->x_sb + c0 * p->x_sc, es);
  char* y = (char*)p->y + (b * p->y_sb + c0 * p->y_sc) * (int64_t)es;
  const char* past = conv_at(p->past, b * p->s_sb + c0 * p->s_sc, es);
  const char* wk = conv_at(p->w, c0 * 4, es);
  const char* bk = p->bias ? conv_at(p->bias, c0, es) : NULL;
  char* pres = p->present ? (char*)p->present + (b * p->s_sb + c0 * p->s_sc) * (int64_t)es : NULL;
  /* tap q of channel c is flat 3c + q of the group's 24 values: register (3c + q) / 8, lane (3c + q) % 8 */
  const __m256i sq0 = _mm256_setr_epi32(0, 3, 6, 1, 4, 7, 2, 5);
  const __m256i sq1 = _mm256_setr_epi32(1, 4, 7, 2, 5, 0, 3, 6);
  const __m256i sq2 = _mm256_setr_epi32(2, 5, 0, 3, 6, 1, 4, 7);
  for (int64_t v = 0; v < nfast; v += 8) {
    __m256 w0, w1, w2, w3;
    weights8x4_tap_major(wk + 4 * v * (int64_t)es, dt, &w0, &w1, &w2, &w3);
    const char* sv = past + 3 * v * (int64_t)es;
    __m256 tap0, tap1, tap2, S2 = _mm256_setzero_ps(); /* S2: the fp32 present's third register */
    if (es == 4) {
      const __m256 S0 = _mm256_loadu_ps((const float*)sv), S1 = _mm256_loadu_ps((const float*)sv + 8);
      S2 = _mm256_loadu_ps((const float*)sv + 16);
      /* q = 0: flats 0 3 6 | 9 12 15 | 18 21 -> S0 lanes 0-2, S1 3-5, S2 6-7 */
      tap0 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(S0, sq0), _mm256_permutevar8x32_ps(S1, sq0), 0x38),
                             _mm256_permutevar8x32_ps(S2, sq0), 0xc0);
      /* q = 1: flats 1 4 7 | 10 13 | 16 19 22 -> S0 0-2, S1 3-4, S2 5-7 */
      tap1 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(S0, sq1), _mm256_permutevar8x32_ps(S1, sq1), 0x18),
                             _mm256_permutevar8x32_ps(S2, sq1), 0xe0);
      /* q = 2: flats 2 5 | 8 11 14 | 17 20 23 -> S0 0-1, S1 2-4, S2 5-7 */
      tap2 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(S0, sq2), _mm256_permutevar8x32_ps(S1, sq2), 0x1c),
                             _mm256_permutevar8x32_ps(S2, sq2), 0xe0);
    } else {
      decode_k4_taps16(sv, dt, &tap0, &tap1, &tap2);
    }
    const __m256 X = load8(x + v * (int64_t)es, dt);
    __m256 acc = _mm256_fmadd_ps(w0, tap0, _mm256_setzero_ps());
    acc = _mm256_fmadd_ps(w1, tap1, acc);
    acc = _mm256_fmadd_ps(w2, tap2, acc);
    acc = _mm256_fmadd_ps(w3, X, acc);
    if (bk) acc = conv_add_bias(acc, load8(bk + v * (int64_t)es, dt), dt);
    if (pres) decode_k4_present8(pres + 3 * v * (int64_t)es, sv, x + v * (int64_t)es, S2, X, es, v + 8 < nfast);
    conv_finish_store(y + v * (int64_t)es, 8, acc, dt, act, false);
  }
}

/* Any K and dilation: channels [v0, nc) of the block at c0, gathering taps from fp32 copies of the
 * weights (s->wc), bias (s->bias) and, for 16-bit states, of each group's state (s->tile). */
AI void decode_gather(const conv_params* p, int64_t b, int64_t c0, int64_t nc, int64_t v0, const conv_scratch_layout* s,
                      dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, S = p->S;
  const char* x = conv_at(p->x, b * p->x_sb + c0 * p->x_sc, es);
  char* y = (char*)p->y + (b * p->y_sb + c0 * p->y_sc) * (int64_t)es;
  const char* past = p->past ? conv_at(p->past, b * p->s_sb + c0 * p->s_sc, es) : NULL;
  const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  const __m256i widx = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)K));
  const __m256i sidx = _mm256_mullo_epi32(lane, _mm256_set1_epi32((int)S));
  const float* wrest = conv_weights_f32(p, c0 + v0, nc - v0, s->wc); /* from channel v0 */
  conv_bias_f32(p, c0 + v0, nc - v0, s->bias + v0);
  for (int64_t v = v0; v < nc; v += 8) {
    const int64_t n = nc - v < 8 ? nc - v : 8;
    const __m256 m = _mm256_castsi256_ps(lanes8(n));
    const float* wv = wrest + (v - v0) * K;
    const float* pv = NULL;
    if (past && S > 0) {
      if (dt == LINATTN_DTYPE_F32) {
        pv = (const float*)past + v * S;
      } else {
        const char* src = past + v * S * (int64_t)es;
        const int64_t ne = n * S;
        for (int64_t i = 0; i < ne; i += 8) _mm256_storeu_ps(s->tile + i, load8_part(src + i * (int64_t)es, ne - i, dt));
        pv = s->tile;
      }
    }
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < K - 1; ++j) {
      __m256 wj = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), wv, _mm256_add_epi32(widx, _mm256_set1_epi32((int)j)), m, 4);
      __m256 tap = pv ? _mm256_mask_i32gather_ps(_mm256_setzero_ps(), pv, _mm256_add_epi32(sidx, _mm256_set1_epi32((int)(j * d))), m, 4)
                      : _mm256_setzero_ps();
      acc = _mm256_fmadd_ps(wj, tap, acc);
    }
    __m256 wl = _mm256_mask_i32gather_ps(_mm256_setzero_ps(), wv, _mm256_add_epi32(widx, _mm256_set1_epi32((int)(K - 1))), m, 4);
    acc = _mm256_fmadd_ps(wl, load8_part(x + v * (int64_t)es, n, dt), acc);
    if (p->bias) acc = conv_add_bias(acc, _mm256_loadu_ps(s->bias + v), dt);
    conv_finish_store(y + v * (int64_t)es, n, acc, dt, act, false);
  }
}

/* The present of channels [v0, nc) of the block at c0: the state shifted by one, x last. */
AI void decode_present_rest(const conv_params* p, int64_t b, int64_t c0, int64_t nc, int64_t v0, size_t es) {
  const int64_t S = p->S;
  char* pres = (char*)p->present + (b * p->s_sb + c0 * p->s_sc) * (int64_t)es + v0 * S * (int64_t)es;
  const char* past = p->past ? conv_at(p->past, b * p->s_sb + c0 * p->s_sc, es) + v0 * S * (int64_t)es : NULL;
  const char* x = conv_at(p->x, b * p->x_sb + c0 * p->x_sc, es) + v0 * (int64_t)es;
  const int64_t nr = nc - v0;
  const size_t ne = (size_t)(nr * S);
  if (past)
    memmove(pres, past + es, (ne - 1) * es);
  else
    memset(pres, 0, ne * es);
  if (es == 4) {
    for (int64_t c = 0; c < nr; ++c) memcpy(pres + ((c + 1) * S - 1) * 4, x + c * 4, 4);
  } else {
    for (int64_t c = 0; c < nr; ++c) memcpy(pres + ((c + 1) * S - 1) * 2, x + c * 2, 2);
  }
}

/* Decode across channels: packed (B, C, 1) input/output, packed (B, C, S) state, S <= tile.
 * Whole 8-channel groups of the K = 4 case first, then the rest (all channels otherwise). */
AI void channels_first_decode(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                              dtype_t dt, linattn_activation act) {
  const bool k4 = p->K == 4 && p->dilation == 1 && p->past != NULL;
  const int64_t nfast = k4 ? (nc & ~(int64_t)7) : 0;
  if (k4) decode_k4_groups(p, b, c0, nfast, dt, act);
  if (nfast == nc) return; /* present written group by group */
  decode_gather(p, b, c0, nc, nfast, s, dt, act);
  if (p->present && p->S > 0) decode_present_rest(p, b, c0, nc, nfast, conv_esize(dt));
}

/* Channels-last decode, K = 4, dilation 1, with a past state: 8 channels per step, the
 * weights (read in place, converted per group for 16-bit T) transposed in registers (as in
 * channels_first_decode), the taps the state's rows, the bias read in place; present rows
 * 0 <- 1, 1 <- 2, 2 <- x copied raw, group by group after the group's reads (in-place safe).
 * The partial last group goes through zero-padded copies. Same bits as channels_last_k4. */
AI void channels_last_decode_k4(const conv_params* p, int64_t b, int64_t c0, int64_t nc, dtype_t dt,
                                linattn_activation act) {
  const size_t es = conv_esize(dt);
  const char* x = conv_at(p->x, b * p->x_sb + c0, es);
  char* y = (char*)p->y + (b * p->y_sb + c0) * (int64_t)es;
  const char* past = conv_at(p->past, b * p->s_sb + c0, es);
  char* pres = p->present ? (char*)p->present + (b * p->s_sb + c0) * (int64_t)es : NULL;
  const char* w = conv_at(p->w, c0 * 4, es);
  const char* bias = p->bias ? conv_at(p->bias, c0, es) : NULL;
  const int64_t rs = p->s_st * (int64_t)es;
  for (int64_t v = 0; v < nc; v += 8) {
    const int64_t n = nc - v < 8 ? nc - v : 8;
    const int64_t o = v * (int64_t)es;
    _Alignas(32) char wb[128], sb[3][32], xb[32];
    const char *wv = w + 4 * o, *r0 = past + o, *r1 = past + rs + o, *r2 = past + 2 * rs + o, *xv = x + o;
    if (n < 8) { /* zero-padded copies of the partial group */
      memset(wb, 0, sizeof wb), memset(sb, 0, sizeof sb), memset(xb, 0, sizeof xb);
      memcpy(wb, wv, (size_t)n * 4 * es);
      memcpy(sb[0], r0, (size_t)n * es), memcpy(sb[1], r1, (size_t)n * es), memcpy(sb[2], r2, (size_t)n * es);
      memcpy(xb, xv, (size_t)n * es);
      wv = wb, r0 = sb[0], r1 = sb[1], r2 = sb[2], xv = xb;
    }
    __m256 w0, w1, w2, w3;
    weights8x4_tap_major(wv, dt, &w0, &w1, &w2, &w3);
    __m256 acc = _mm256_fmadd_ps(w0, load8(r0, dt), _mm256_setzero_ps());
    acc = _mm256_fmadd_ps(w1, load8(r1, dt), acc);
    acc = _mm256_fmadd_ps(w2, load8(r2, dt), acc);
    acc = _mm256_fmadd_ps(w3, load8(xv, dt), acc);
    if (bias) acc = conv_add_bias(acc, load8_part(bias + o, n, dt), dt);
    if (pres) {
      if (n == 8 && es == 4) {
        const __m256 h1 = _mm256_loadu_ps((const float*)r1), h2 = _mm256_loadu_ps((const float*)r2);
        const __m256 X = _mm256_loadu_ps((const float*)xv);
        _mm256_storeu_ps((float*)(pres + o), h1), _mm256_storeu_ps((float*)(pres + rs + o), h2);
        _mm256_storeu_ps((float*)(pres + 2 * rs + o), X);
      } else if (n == 8) {
        const __m128i h1 = _mm_loadu_si128((const __m128i*)r1), h2 = _mm_loadu_si128((const __m128i*)r2);
        const __m128i X = _mm_loadu_si128((const __m128i*)xv);
        _mm_storeu_si128((__m128i*)(pres + o), h1), _mm_storeu_si128((__m128i*)(pres + rs + o), h2);
        _mm_storeu_si128((__m128i*)(pres + 2 * rs + o), X);
      } else {
        memcpy(pres + o, sb[1], (size_t)n * es), memcpy(pres + rs + o, sb[2], (size_t)n * es);
        memcpy(pres + 2 * rs + o, xb, (size_t)n * es);
      }
    }
    conv_finish_store(y + o, n, acc, dt, act, false);
  }
}

/* ------------------------------------------------------------------ entry */

/* channels_last_decode_k4 reads weights and bias in place: no scratch, a decode call allocates nothing */
AI bool conv_decode_in_place(const conv_params* p) {
  return p->channels_last && p->L == 1 && p->K == 4 && p->dilation == 1 && p->past;
}

/* The channels-last fp32 decode is a function of its own per activation, register-allocated
 * alone: inlined into the entry with all other paths, its loop reloaded more SiLU constants and
 * pointers from the stack. The 16-bit ones and the channels-first decode stay inlined: split
 * out, the entry's other loops were allocated differently and ran slower (docs/tuning.md,
 * channels_last_decode_k4 fp32 split). */
static __attribute__((noinline)) void cl_decode_f32(const conv_params* p, int64_t b, int64_t c0, int64_t nc) {
  channels_last_decode_k4(p, b, c0, nc, LINATTN_DTYPE_F32, LINATTN_ACTIVATION_NONE);
}
static __attribute__((noinline)) void cl_decode_f32_silu(const conv_params* p, int64_t b, int64_t c0, int64_t nc) {
  channels_last_decode_k4(p, b, c0, nc, LINATTN_DTYPE_F32, LINATTN_ACTIVATION_SILU);
}

AI void channels_last_decode(const conv_params* p, int64_t b, int64_t c0, int64_t nc, dtype_t dt,
                             linattn_activation act) {
  if (dt == LINATTN_DTYPE_F32) (act == LINATTN_ACTIVATION_SILU ? cl_decode_f32_silu : cl_decode_f32)(p, b, c0, nc);
  else channels_last_decode_k4(p, b, c0, nc, dt, act);
}

AI bool conv_decode(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s, dtype_t dt,
                    linattn_activation act) {
  if (conv_decode_in_place(p)) {
    channels_last_decode(p, b, c0, nc, dt, act);
    return true;
  }
  if (!p->channels_last && p->L == 1 && p->x_sc == 1 && p->y_sc == 1 && p->S <= CONV_TILE_MAX_S && p->s_st == 1 &&
      p->s_sc == p->S) {
    channels_first_decode(p, b, c0, nc, s, dt, act); /* converts the weights it needs itself */
    return true;
  }
  return false;
}

CONV_SEQS_EACH(conv_run_seqs_avx2, conv_run_avx2)

/* ------------------------------------------------------------------ state transpose */

/* 8 elements of es bytes as 32-bit lanes / back (whole groups only: no 16-bit masked moves) */
AI __m256i tr_load8(const char* p, size_t es) {
  return es == 4 ? _mm256_loadu_si256((const __m256i*)p) : _mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i*)p));
}
AI void tr_store8(char* p, __m256i v, size_t es) {
  if (es == 4) _mm256_storeu_si256((__m256i*)p, v);
  else _mm_storeu_si128((__m128i*)p, _mm_packus_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1)));
}

/* The whole groups of 8 channels through the plan's permutes and blends; returns how many
 * channels they covered. S is a constant in the usual cases (1..4). */
AI int64_t tr_groups(char* restrict d, const char* restrict s, int64_t S, int64_t n_all, int64_t src_ld,
                     int64_t dst_ld, size_t es, bool deint) {
  conv_tr_plan pl;
  conv_tr_plan_make(&pl, S, 8, deint);
  __m256i idx[CONV_TR_MAX_S], sel[CONV_TR_MAX_S][CONV_TR_MAX_S];
  for (int64_t o = 0; o < S; ++o) {
    idx[o] = _mm256_loadu_si256((const __m256i*)pl.lane[o]);
    const __m256i from = _mm256_loadu_si256((const __m256i*)pl.vec[o]);
    for (int64_t j = 0; j < S; ++j) sel[o][j] = _mm256_cmpeq_epi32(from, _mm256_set1_epi32((int)j));
  }
  const int64_t e = (int64_t)es, n_full = n_all / 8 * 8;
  for (int64_t c = 0; c < n_full; c += 8) {
    __m256i in[CONV_TR_MAX_S];
    for (int64_t j = 0; j < S; ++j) in[j] = tr_load8(deint ? s + (c * S + j * 8) * e : s + (j * src_ld + c) * e, es);
    for (int64_t o = 0; o < S; ++o) {
      __m256i v = _mm256_setzero_si256();
      for (int64_t j = 0; j < S; ++j) v = _mm256_blendv_epi8(v, _mm256_permutevar8x32_epi32(in[j], idx[o]), sel[o][j]);
      tr_store8(deint ? d + (o * dst_ld + c) * e : d + (c * S + o * 8) * e, v, es);
    }
  }
  return n_full;
}

/* conv_kernel.transpose: a contiguous (n, S) block to S rows (de-interleave) or back
 * (interleave) for S <= CONV_TR_MAX_S in groups of 8 channels, the last < 8 channels (and
 * other shapes) by the portable loop. */
static void conv_transpose_avx2(void* restrict dst, const void* restrict src, int64_t rows, int64_t cols,
                                int64_t src_ld, int64_t dst_ld, size_t es) {
  const bool deint = cols <= CONV_TR_MAX_S && src_ld == cols;
  if (!deint && !(rows <= CONV_TR_MAX_S && dst_ld == rows)) {
    linattn_conv_transpose(dst, src, rows, cols, src_ld, dst_ld, es);
    return;
  }
  const int64_t S = deint ? cols : rows, n = deint ? rows : cols, e = (int64_t)es;
  if (S <= 0 || n <= 0) return;
  int64_t done;
  switch (S) {
    case 1: done = tr_groups(dst, src, 1, n, src_ld, dst_ld, es, deint); break;
    case 2: done = tr_groups(dst, src, 2, n, src_ld, dst_ld, es, deint); break;
    case 3: done = tr_groups(dst, src, 3, n, src_ld, dst_ld, es, deint); break;
    case 4: done = tr_groups(dst, src, 4, n, src_ld, dst_ld, es, deint); break;
    default: done = tr_groups(dst, src, S, n, src_ld, dst_ld, es, deint); break;
  }
  if (done == n) return;
  if (deint)
    linattn_conv_transpose((char*)dst + done * e, (const char*)src + done * S * e, n - done, S, src_ld, dst_ld, es);
  else
    linattn_conv_transpose((char*)dst + done * S * e, (const char*)src + done * e, S, n - done, src_ld, dst_ld, es);
}

const conv_kernel linattn_conv_avx2 = {
    .name = "avx2",
    .run = conv_run_avx2,
    .run_seqs = conv_run_seqs_avx2,
    .transpose = conv_transpose_avx2,
    .scratch_bytes = conv_scratch_avx2,
    .block_channels = 1024,
    .cl_whole_rows = true,
};
