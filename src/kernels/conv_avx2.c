/*
 * CausalConvWithState, AVX2 + FMA + F16C family: the structure of conv_avx512.c with 8 lanes.
 * channels-first vectorised along time (taps are unaligned loads), channels-last K = 4 /
 * dilation 1 by column tiles over whole rows (other K: row by row), decode (L = 1) across
 * channels with gathers (AVX2 has no two-source permute). AVX2 has no 16-bit masked loads,
 * so partial vectors (tails, taps reaching into past_state) go through a small stack buffer;
 * the arithmetic on them is the same vector code, so every element gets the same bits.
 */
#include <immintrin.h>

#include "conv_common.h"
#include "vec_avx2.h"

#define AI static inline __attribute__((always_inline))

typedef linattn_dtype dtype_t;

/* ------------------------------------------------------------------ weights, bias, stores */

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

/* acc + bias; fp16 rounds the sum first (see add_bias16 in conv_avx512.c). */
AI __m256 add_bias8(__m256 acc, __m256 bias, dtype_t dt) {
  if (dt == LINATTN_DTYPE_F16) acc = _mm256_cvtph_ps(_mm256_cvtps_ph(acc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
  return _mm256_add_ps(acc, bias);
}

/* Rounds to T, activation, stores the first n (<= 8) lanes as T. */
AI void finish_store8(char* dst, int64_t n, __m256 acc, dtype_t dt, linattn_activation act) {
  const bool silu = act == LINATTN_ACTIVATION_SILU;
  _Alignas(32) char buf[32];
  if (dt == LINATTN_DTYPE_F32) {
    if (silu) acc = silu8(acc);
    if (n >= 8) { _mm256_storeu_ps((float*)dst, acc); return; }
    _mm256_store_ps((float*)buf, acc);
  } else {
    __m128i h;
    if (dt == LINATTN_DTYPE_F16) {
      h = _mm256_cvtps_ph(acc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      if (silu) h = _mm256_cvtps_ph(silu8_t16(_mm256_cvtph_ps(h)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    } else {
      if (silu) acc = silu8_t16(_mm256_castsi256_ps(_mm256_and_si256(bf16_round_bits8(acc), _mm256_set1_epi32((int)0xffff0000u))));
      h = pack16(_mm256_srli_epi32(bf16_round_bits8(acc), 16));
    }
    if (n >= 8) { _mm_storeu_si128((__m128i*)dst, h); return; }
    _mm_store_si128((__m128i*)buf, h);
  }
  memcpy(dst, buf, (size_t)n * conv_esize(dt));
}

static inline __m256i lanes8(int64_t n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32((int)(n < 8 ? n : 8)), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

/* ------------------------------------------------------------------ weights */

static const float* weights_f32(const conv_params* p, int64_t c0, int64_t nc, float* buf) {
  const int64_t K = p->K;
  if (p->dtype == LINATTN_DTYPE_F32) return (const float*)p->w + c0 * K;
  const char* src = conv_at(p->w, c0 * K, 2);
  const int64_t n = nc * K;
  for (int64_t i = 0; i < n; i += 8) _mm256_storeu_ps(buf + i, load8_part(src + i * 2, n - i, p->dtype));
  return buf; /* buf has K * ncp >= n rounded up to 8 floats */
}

static void bias_f32(const conv_params* p, int64_t c0, int64_t nc, float* bias) {
  const size_t es = conv_esize(p->dtype);
  for (int64_t c = 0; c < nc; c += 8)
    _mm256_storeu_ps(bias + c, p->bias ? load8_part(conv_at(p->bias, c0 + c, es), nc - c, p->dtype) : _mm256_setzero_ps());
}

/* ------------------------------------------------------------------ channels-first */

#define CF_BATCH 8 /* vectors per round of the K = 4 row loop */

AI void channels_first_row(const conv_params* p, int64_t b, int64_t c, const float* wf, dtype_t dt,
                           linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, S = p->S, L = p->L;
  const char* xrow = conv_at(p->x, b * p->x_sb + c * p->x_sc, es);
  char* yrow = (char*)p->y + (b * p->y_sb + c * p->y_sc) * (int64_t)es;
  const char* prow = p->past ? conv_at(p->past, b * p->s_sb + c * p->s_sc, es) : NULL;
  const bool has_bias = p->bias != NULL;
  const __m256 bias = _mm256_set1_ps(has_bias ? linattn_load_f32(p->bias, c, dt) : 0.0f);
  /* The first vector ends where the output's vectors are aligned (as in conv_avx512.c), so no
   * store splits a line. No stream (conv_avx512.c streams fp32 rows above the LLC size): this
   * family is bound by arithmetic there, and streaming did not pay (docs/tuning.md, AVX2
   * channels-first prefill). */
  const int64_t lead = conv_lead_to_boundary(yrow, es, 8u * es);
  int64_t t0 = 0;
  for (int64_t w; t0 < L && t0 < S; t0 += w) { /* head: taps may read past_state; gather lane by lane */
    w = t0 == 0 && lead > 0 ? lead : 8;
    const int64_t n = L - t0 < w ? L - t0 : w;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < K; ++j) {
      _Alignas(32) char buf[32] = {0};
      for (int64_t i = 0; i < n; ++i) {
        const int64_t pos = t0 + i + j * d;
        const char* src = pos >= S ? xrow + (pos - S) * (int64_t)es : prow ? prow + pos * (int64_t)es : NULL;
        if (src) memcpy(buf + i * (int64_t)es, src, es);
      }
      acc = _mm256_fmadd_ps(_mm256_set1_ps(wf[j]), load8(buf, dt), acc);
    }
    if (has_bias) acc = add_bias8(acc, bias, dt);
    finish_store8(yrow + t0 * (int64_t)es, n, acc, dt, act);
  }
  const char* xs = xrow - S * (int64_t)es; /* padded position q is xs[q] for q >= S */
  if (K == 4) {
    const __m256 w0 = _mm256_set1_ps(wf[0]), w1 = _mm256_set1_ps(wf[1]);
    const __m256 w2 = _mm256_set1_ps(wf[2]), w3 = _mm256_set1_ps(wf[3]);
    const int64_t e1 = d * (int64_t)es, e2 = 2 * e1, e3 = 3 * e1;
    /* eight vectors summed, then finished: their rounding / SiLU / conversion chains overlap
     * (CF_BATCH of conv_avx512.c; docs/tuning.md, CF_BATCH) */
    for (; t0 + 8 * CF_BATCH <= L; t0 += 8 * CF_BATCH) {
      __m256 u[CF_BATCH];
      for (int i = 0; i < CF_BATCH; ++i) {
        const char* a = xs + (t0 + 8 * i) * (int64_t)es;
        u[i] = _mm256_fmadd_ps(w0, load8(a, dt), _mm256_setzero_ps());
        u[i] = _mm256_fmadd_ps(w1, load8(a + e1, dt), u[i]);
        u[i] = _mm256_fmadd_ps(w2, load8(a + e2, dt), u[i]);
        u[i] = _mm256_fmadd_ps(w3, load8(a + e3, dt), u[i]);
        if (has_bias) u[i] = add_bias8(u[i], bias, dt);
      }
      for (int i = 0; i < CF_BATCH; ++i) finish_store8(yrow + (t0 + 8 * i) * (int64_t)es, 8, u[i], dt, act);
    }
    for (; t0 + 16 <= L; t0 += 16) {
      const char* a = xs + t0 * (int64_t)es;
      const char* a2 = a + 8 * (int64_t)es;
      __m256 u = _mm256_fmadd_ps(w0, load8(a, dt), _mm256_setzero_ps());
      __m256 v = _mm256_fmadd_ps(w0, load8(a2, dt), _mm256_setzero_ps());
      u = _mm256_fmadd_ps(w1, load8(a + e1, dt), u);
      v = _mm256_fmadd_ps(w1, load8(a2 + e1, dt), v);
      u = _mm256_fmadd_ps(w2, load8(a + e2, dt), u);
      v = _mm256_fmadd_ps(w2, load8(a2 + e2, dt), v);
      u = _mm256_fmadd_ps(w3, load8(a + e3, dt), u);
      v = _mm256_fmadd_ps(w3, load8(a2 + e3, dt), v);
      if (has_bias) u = add_bias8(u, bias, dt), v = add_bias8(v, bias, dt);
      finish_store8(yrow + t0 * (int64_t)es, 8, u, dt, act);
      finish_store8(yrow + (t0 + 8) * (int64_t)es, 8, v, dt, act);
    }
  }
  for (; t0 < L; t0 += 8) { /* remaining full vectors and the tail */
    const int64_t n = L - t0;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t j = 0; j < K; ++j)
      acc = _mm256_fmadd_ps(_mm256_set1_ps(wf[j]), load8_part(xs + (t0 + j * d) * (int64_t)es, n, dt), acc);
    if (has_bias) acc = add_bias8(acc, bias, dt);
    finish_store8(yrow + t0 * (int64_t)es, n, acc, dt, act);
  }
  conv_cf_write_present(p, b, c);
}

/* K = 4, dilation 1 with a past state: whole 8-channel groups without gathers (the scheme
 * of decode_k4 in conv_avx512.c): the weights and bias read in place (16-bit T converted
 * per group) and transposed in registers, taps taken from the state's three registers by
 * permutes and blends, the present by shifts and blends of the raw state; same bits.
 * Channels [0, nfast) of the block at c0, nfast a multiple of 8. */

/* The group's present: new flat f = old f + 1, except f = 3c + 2 <- x[c]; sv the group's 24 past
 * values (S2 its third register as fp32), xv its 8 inputs, X those as fp32. Called after the
 * group's reads, so in-place safe. */
AI void decode_k4_present8(char* pv, const char* sv, const char* xv, __m256 S2, __m256 X, size_t es) {
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
  } else { /* raw 16-bit values: shifted by one element across the three 8-value chunks */
    /* 16-bit present: x[c] of the group's raw x lands in flat 3c + 2 (the same lanes) */
    const __m128i xh0 = _mm_setr_epi8(0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 2, 3, 0, 0, 0, 0);
    const __m128i xh1 = _mm_setr_epi8(4, 5, 0, 0, 0, 0, 6, 7, 0, 0, 0, 0, 8, 9, 0, 0);
    const __m128i xh2 = _mm_setr_epi8(0, 0, 10, 11, 0, 0, 0, 0, 12, 13, 0, 0, 0, 0, 14, 15);
    const __m128i Q0 = _mm_loadu_si128((const __m128i*)sv), Q1 = _mm_loadu_si128((const __m128i*)(sv + 16));
    const __m128i Q2 = _mm_loadu_si128((const __m128i*)(sv + 32));
    const __m128i XR = _mm_loadu_si128((const __m128i*)xv);
    const __m128i N0 = _mm_blend_epi16(_mm_alignr_epi8(Q1, Q0, 2), _mm_shuffle_epi8(XR, xh0), 0x24);
    const __m128i N1 = _mm_blend_epi16(_mm_alignr_epi8(Q2, Q1, 2), _mm_shuffle_epi8(XR, xh1), 0x49);
    const __m128i N2 = _mm_blend_epi16(_mm_srli_si128(Q2, 2), _mm_shuffle_epi8(XR, xh2), 0x92);
    _mm_storeu_si128((__m128i*)pv, N0);
    _mm_storeu_si128((__m128i*)(pv + 16), N1);
    _mm_storeu_si128((__m128i*)(pv + 32), N2);
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
    const __m256 S0 = load8(sv, dt), S1 = load8(sv + 8 * es, dt), S2 = load8(sv + 16 * es, dt);
    /* q = 0: flats 0 3 6 | 9 12 15 | 18 21 -> S0 lanes 0-2, S1 3-5, S2 6-7 */
    const __m256 tap0 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(S0, sq0), _mm256_permutevar8x32_ps(S1, sq0), 0x38),
                                        _mm256_permutevar8x32_ps(S2, sq0), 0xc0);
    /* q = 1: flats 1 4 7 | 10 13 | 16 19 22 -> S0 0-2, S1 3-4, S2 5-7 */
    const __m256 tap1 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(S0, sq1), _mm256_permutevar8x32_ps(S1, sq1), 0x18),
                                        _mm256_permutevar8x32_ps(S2, sq1), 0xe0);
    /* q = 2: flats 2 5 | 8 11 14 | 17 20 23 -> S0 0-1, S1 2-4, S2 5-7 */
    const __m256 tap2 = _mm256_blend_ps(_mm256_blend_ps(_mm256_permutevar8x32_ps(S0, sq2), _mm256_permutevar8x32_ps(S1, sq2), 0x1c),
                                        _mm256_permutevar8x32_ps(S2, sq2), 0xe0);
    const __m256 X = load8(x + v * (int64_t)es, dt);
    __m256 acc = _mm256_fmadd_ps(w0, tap0, _mm256_setzero_ps());
    acc = _mm256_fmadd_ps(w1, tap1, acc);
    acc = _mm256_fmadd_ps(w2, tap2, acc);
    acc = _mm256_fmadd_ps(w3, X, acc);
    if (bk) acc = add_bias8(acc, load8(bk + v * (int64_t)es, dt), dt);
    if (pres) decode_k4_present8(pres + 3 * v * (int64_t)es, sv, x + v * (int64_t)es, S2, X, es);
    finish_store8(y + v * (int64_t)es, 8, acc, dt, act);
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
  const float* wrest = weights_f32(p, c0 + v0, nc - v0, s->wc); /* from channel v0 */
  bias_f32(p, c0 + v0, nc - v0, s->bias + v0);
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
    if (p->bias) acc = add_bias8(acc, _mm256_loadu_ps(s->bias + v), dt);
    finish_store8(y + v * (int64_t)es, n, acc, dt, act);
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

/* ------------------------------------------------------------------ channels-last */

/* Time steps per column tile of channels_last_k4: 4 keeps weights, bias, history and
 * accumulators within the 16 ymm registers, which 8 steps spill (docs/tuning.md, CL_ROWS). */
#define CL_ROWS 4

/* fp32 result of a full 8-lane group, activation applied, streamed to an aligned dst
 * (conv_params.stream_output: no read for ownership of the output lines). */
AI void finish_stream8_f32(char* dst, __m256 acc, linattn_activation act) {
  if (act == LINATTN_ACTIVATION_SILU) acc = silu8(acc);
  _mm256_stream_ps((float*)dst, acc);
}

/* One column tile of channels_last_k4: channels [v, v + nv) (nv = 8 when full, a constant)
 * of the n <= CL_ROWS time steps from t0: inputs loaded, accumulators summed, then all
 * finished and stored (the rows' rounding / SiLU chains overlap; every load of the column
 * precedes its stores). nt: full columns of an fp32 streamed output at 32-byte aligned rows. */
AI void channels_last_k4_column(const conv_params* p, int64_t b, int64_t c0, const conv_scratch_layout* s,
                                int64_t ncp, int64_t t0, int64_t n, int64_t v, int64_t nv, bool full, bool nt,
                                dtype_t dt, linattn_activation act) {
  if (full) nv = 8;
  const size_t es = conv_esize(dt);
  const int64_t xst = p->x_st * (int64_t)es, yst = p->y_st * (int64_t)es, o = v * (int64_t)es;
  const bool has_bias = p->bias != NULL;
  const char* xp = conv_at(p->x, b * p->x_sb + t0 * p->x_st + c0 + v, es);
  char* yp = (char*)p->y + (b * p->y_sb + t0 * p->y_st + c0 + v) * (int64_t)es;
  const __m256 w0 = _mm256_loadu_ps(s->wt + v), w1 = _mm256_loadu_ps(s->wt + ncp + v);
  const __m256 w2 = _mm256_loadu_ps(s->wt + 2 * ncp + v), w3 = _mm256_loadu_ps(s->wt + 3 * ncp + v);
  const __m256 bias = has_bias ? _mm256_loadu_ps(s->bias + v) : _mm256_setzero_ps();
  __m256 h[CL_ROWS + 3]; /* h[i] = padded row t0 + i */
  if (t0 >= p->S) { /* the three previous rows are input rows */
    for (int i = 0; i < 3; ++i) h[i] = load8_part(xp - (3 - i) * xst, nv, dt);
  } else {
    for (int i = 0; i < 3; ++i) h[i] = load8_part(conv_cl_padded_row(p, b, c0, t0 + i, s->zero) + o, nv, dt);
  }
  if (n == CL_ROWS) {
    __m256 acc[CL_ROWS];
    for (int i = 0; i < CL_ROWS; ++i) h[i + 3] = load8_part(xp + i * xst, nv, dt);
    for (int i = 0; i < CL_ROWS; ++i) {
      acc[i] = _mm256_fmadd_ps(w0, h[i], _mm256_setzero_ps());
      acc[i] = _mm256_fmadd_ps(w1, h[i + 1], acc[i]);
      acc[i] = _mm256_fmadd_ps(w2, h[i + 2], acc[i]);
      acc[i] = _mm256_fmadd_ps(w3, h[i + 3], acc[i]);
      if (has_bias) acc[i] = add_bias8(acc[i], bias, dt);
    }
    if (nt && full && dt == LINATTN_DTYPE_F32) {
      for (int i = 0; i < CL_ROWS; ++i) finish_stream8_f32(yp + i * yst, acc[i], act);
    } else {
      for (int i = 0; i < CL_ROWS; ++i) finish_store8(yp + i * yst, nv, acc[i], dt, act);
    }
    return;
  }
  for (int64_t i = 0; i < n; ++i) { /* the last, partial tile */
    const __m256 x3 = load8_part(xp + i * xst, nv, dt);
    __m256 acc = _mm256_fmadd_ps(w0, h[0], _mm256_setzero_ps());
    acc = _mm256_fmadd_ps(w1, h[1], acc);
    acc = _mm256_fmadd_ps(w2, h[2], acc);
    acc = _mm256_fmadd_ps(w3, x3, acc);
    if (has_bias) acc = add_bias8(acc, bias, dt);
    finish_store8(yp + i * yst, nv, acc, dt, act);
    h[0] = h[1], h[1] = h[2], h[2] = x3;
  }
}

/* Channels-last, K = 4, dilation 1: the scheme of channels_last_k4 in conv_avx512.c with 8
 * lanes (tiles of time steps swept over the unit's channels, whole rows from the driver, in
 * 8-channel columns; weights and the three previous inputs in registers; a column's outputs
 * finished together). fp32 outputs larger than the caches (conv_params.stream_output) leave
 * with non-temporal stores when the rows keep the columns 32-byte aligned (docs/tuning.md, AVX2
 * channels_last_k4); the first column takes the channels up to that boundary. */
AI void channels_last_k4(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                         dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t L = p->L, ncp = conv_ncp(nc);
  const uintptr_t y0 = (uintptr_t)p->y + (uintptr_t)((b * p->y_sb + c0) * (int64_t)es);
  const bool nt = dt == LINATTN_DTYPE_F32 && p->stream_output && (p->y_st * 4) % 32 == 0;
  const int64_t lead0 = nt ? (int64_t)((32u - y0 % 32u) % 32u / 4u) : 0;
  const int64_t lead = lead0 < nc ? lead0 : nc;
  const int64_t full_end = lead + (nc - lead) / 8 * 8;
  for (int64_t t0 = 0; t0 < L; t0 += CL_ROWS) {
    const int64_t n = L - t0 < CL_ROWS ? L - t0 : CL_ROWS;
    if (lead > 0) channels_last_k4_column(p, b, c0, s, ncp, t0, n, 0, lead, false, false, dt, act);
    for (int64_t v = lead; v < full_end; v += 8) channels_last_k4_column(p, b, c0, s, ncp, t0, n, v, 8, true, nt, dt, act);
    if (full_end < nc) channels_last_k4_column(p, b, c0, s, ncp, t0, n, full_end, nc - full_end, false, false, dt, act);
  }
  conv_cl_write_present(p, b, c0, nc);
}

AI void channels_last_block(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                            dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, L = p->L, ncp = conv_ncp(nc);
  const bool has_bias = p->bias != NULL;
  const char* rows[16];
  const int64_t kmax = K <= 16 ? K : 16;
  for (int64_t t = 0; t < L; ++t) {
    char* yrow = (char*)p->y + (b * p->y_sb + t * p->y_st + c0) * (int64_t)es;
    for (int64_t j = 0; j < kmax; ++j) rows[j] = conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
    int64_t v = 0;
    if (K == 4) {
      const char *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3];
      const float* w = s->wt;
      for (; v + 8 <= nc; v += 8) {
        const int64_t o = v * (int64_t)es;
        __m256 acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + v), load8(r0 + o, dt), _mm256_setzero_ps());
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + ncp + v), load8(r1 + o, dt), acc);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + 2 * ncp + v), load8(r2 + o, dt), acc);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + 3 * ncp + v), load8(r3 + o, dt), acc);
        if (has_bias) acc = add_bias8(acc, _mm256_loadu_ps(s->bias + v), dt);
        finish_store8(yrow + o, 8, acc, dt, act);
      }
    }
    for (; v < nc; v += 8) {
      const int64_t n = nc - v;
      const int64_t o = v * (int64_t)es;
      __m256 acc = _mm256_setzero_ps();
      for (int64_t j = 0; j < K; ++j) {
        const char* r = j < 16 ? rows[j] : conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(s->wt + j * ncp + v), load8_part(r + o, n, dt), acc);
      }
      if (has_bias) acc = add_bias8(acc, _mm256_loadu_ps(s->bias + v), dt);
      finish_store8(yrow + o, n, acc, dt, act);
    }
  }
  conv_cl_write_present(p, b, c0, nc);
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
    if (bias) acc = add_bias8(acc, load8_part(bias + o, n, dt), dt);
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
    finish_store8(y + o, n, acc, dt, act);
  }
}

/* ------------------------------------------------------------------ entry */

static inline bool cl_decode_k4_applies(const conv_params* p) {
  return p->channels_last && p->L == 1 && p->K == 4 && p->dilation == 1 && p->past;
}

AI void run_typed(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s, dtype_t dt,
                  linattn_activation act) {
  const int64_t K = p->K;
  if (cl_decode_k4_applies(p)) {
    channels_last_decode_k4(p, b, c0, nc, dt, act); /* weights and bias read in place */
    return;
  }
  if (!p->channels_last && p->L == 1 && p->x_sc == 1 && p->y_sc == 1 && p->S <= CONV_TILE_MAX_S && p->s_st == 1 &&
      p->s_sc == p->S) {
    channels_first_decode(p, b, c0, nc, s, dt, act); /* converts the weights it needs itself */
    return;
  }
  const float* wsrc = weights_f32(p, c0, nc, s->wc); /* (C, K) fp32 */
  bias_f32(p, c0, nc, s->bias);
  if (p->channels_last) { /* transpose to tap-major [K][ncp] with gathers */
    const int64_t ncp = conv_ncp(nc);
    const __m256i widx = _mm256_mullo_epi32(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7), _mm256_set1_epi32((int)K));
    for (int64_t v = 0; v < ncp; v += 8) {
      const __m256 m = _mm256_castsi256_ps(lanes8(nc - v));
      for (int64_t j = 0; j < K; ++j)
        _mm256_storeu_ps(s->wt + j * ncp + v,
                         _mm256_mask_i32gather_ps(_mm256_setzero_ps(), wsrc + v * K,
                                                  _mm256_add_epi32(widx, _mm256_set1_epi32((int)j)), m, 4));
    }
    if (!p->past) memset(s->zero, 0, (size_t)nc * conv_esize(dt));
    if (K == 4 && p->dilation == 1)
      channels_last_k4(p, b, c0, nc, s, dt, act);
    else
      channels_last_block(p, b, c0, nc, s, dt, act);
    return;
  }

  for (int64_t c = c0; c < c0 + nc; ++c) channels_first_row(p, b, c, wsrc + (c - c0) * K, dt, act);
}

static void conv_run_avx2(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch) {
  conv_scratch_layout s = conv_scratch_split(p, nc, scratch);
  CONV_RUN_TYPED(run_typed, p, b, c0, nc, &s);
  if (p->stream_output && p->channels_last && p->dtype == LINATTN_DTYPE_F32)
    _mm_sfence(); /* order the non-temporal stores before the caller's next access */
}

/* channels_last_decode_k4 reads weights and bias in place: no scratch, a decode call allocates nothing */
static size_t conv_scratch_avx2(const conv_params* p, int64_t nc) {
  return cl_decode_k4_applies(p) ? 0 : conv_vector_scratch_bytes(p, nc);
}

const conv_kernel linattn_conv_avx2 = {
    .name = "avx2",
    .run = conv_run_avx2,
    .scratch_bytes = conv_scratch_avx2,
    .block_channels = 1024,
    .cl_whole_rows = true,
};
