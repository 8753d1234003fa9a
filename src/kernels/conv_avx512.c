/*
 * CausalConvWithState, AVX-512 (F/BW/VL/DQ + F16C + FMA) family.
 *
 * channels-first (B, C, L): one channel row at a time, 16 time steps per zmm; the first
 *   ceil(S/16) vectors take their early taps from past_state with masked loads, the last
 *   vector is masked; taps are unaligned loads of the same row (L1 hits after the first).
 * channels-last (B, L, C): one time row at a time, 16 channels per zmm; each tap is a row
 *   pointer into input, past_state or a zero row; weights transposed to fp32 [K][nc] once.
 * decode (L = 1, channels-first, packed (B, C, 1)): 16 channels per zmm, weights and past taps
 *   gathered, then the block's state shifted by one element and the input appended.
 * bf16 is rounded with integer RNE (NaN kept like src/convert.h), not vcvtneps2bf16, which
 * flushes subnormals.
 */
#include <immintrin.h>

#include "conv_common.h"

#define AI static inline __attribute__((always_inline))

typedef linattn_dtype dtype_t;

static inline __mmask16 lanes16(int64_t n) {
  return n >= 16 ? (__mmask16)0xffff : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

/* ------------------------------------------------------------------ loads / stores */

AI __m512 bf16_widen(__m256i h) { return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16)); }

AI __m512 load16(const char* p, dtype_t dt) {
  if (dt == LINATTN_DTYPE_F32) return _mm512_loadu_ps(p);
  __m256i h = _mm256_loadu_si256((const __m256i*)p);
  return dt == LINATTN_DTYPE_F16 ? _mm512_cvtph_ps(h) : bf16_widen(h);
}

/* Masked-off lanes read nothing (no fault) and are 0. */
AI __m512 load16_maskz(const char* p, __mmask16 m, dtype_t dt) {
  if (dt == LINATTN_DTYPE_F32) return _mm512_maskz_loadu_ps(m, p);
  __m256i h = _mm256_maskz_loadu_epi16(m, p);
  return dt == LINATTN_DTYPE_F16 ? _mm512_cvtph_ps(h) : bf16_widen(h);
}

/* bf16 round to nearest even, on 32-bit lanes: u + 0x7fff + lsb, then drop the low half.
 * No NaN case is needed here, unlike src/convert.h: every NaN reaching this point came out of
 * an fp32 operation (so it is quiet) and carries a payload from a bf16 input or the default
 * NaN, whose low 16 bits are zero, so the add cannot carry out of the mantissa and the result
 * is (u >> 16), which equals convert.h's (u >> 16) | 0x40 for a quiet NaN. */
AI __m512i bf16_round_bits(__m512 v) {
  __m512i u = _mm512_castps_si512(v);
  __m512i lsb = _mm512_and_si512(_mm512_srli_epi32(u, 16), _mm512_set1_epi32(1));
  return _mm512_add_epi32(_mm512_add_epi32(u, _mm512_set1_epi32(0x7fff)), lsb);
}
AI __m512 bf16_round(__m512 v) { /* value of round_bf16(v) as fp32 */
  return _mm512_castsi512_ps(_mm512_and_si512(bf16_round_bits(v), _mm512_set1_epi32((int)0xffff0000u)));
}

/* v / (1 + exp(-v)). exp(-v) = 2^n p(r'), n = round(-v log2 e), r' = v + n ln2 = -r (Cody-Waite,
 * two FMAs); p evaluates exp(-r') as a degree-5 polynomial in r' (minimax for exp on
 * [-ln2/2, ln2/2], signs of the odd terms flipped; max relative error 1.9e-7 including fp32
 * Horner rounding). scalef applies 2^n with overflow to inf and underflow to 0. The clamp
 * keeps r' meaningful for huge |v| (results there are already v, -0 or NaN for -inf).
 * Relative error vs float64 SiLU <= 3e-7 (tested). */
AI __m512 silu16(__m512 v) {
  /* t = sign(v) min(|v|, 120) in one vrangeps; NaN becomes 120, harmless: v itself is divided */
  __m512 t = _mm512_range_ps(v, _mm512_set1_ps(120.0f), 0x02);
  __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(t, _mm512_set1_ps(-1.44269504088896341f)),
                                  _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fmadd_ps(n, _mm512_set1_ps(0.693359375f), t);
  r = _mm512_fmadd_ps(n, _mm512_set1_ps(-2.12194440e-4f), r);
  __m512 q = _mm512_set1_ps(-0.008297647349536419f);
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.04191543161869049f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(-0.16667574644088745f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(0.49998894333839417f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(-0.9999997019767761f));
  q = _mm512_fmadd_ps(q, r, _mm512_set1_ps(1.0000001192092896f));
  __m512 e = _mm512_scalef_ps(q, n);
  return _mm512_div_ps(v, _mm512_add_ps(_mm512_set1_ps(1.0f), e));
}

/* Rounds the fp32 conv result to T, applies the activation, stores the masked lanes as T. */
AI void finish_store16(char* dst, __mmask16 m, __m512 acc, dtype_t dt, linattn_activation act) {
  const bool silu = act == LINATTN_ACTIVATION_SILU;
  if (dt == LINATTN_DTYPE_F32) {
    if (silu) acc = silu16(acc);
    if (m == 0xffff) _mm512_storeu_ps(dst, acc); else _mm512_mask_storeu_ps(dst, m, acc);
  } else if (dt == LINATTN_DTYPE_F16) {
    __m256i h = _mm512_cvtps_ph(acc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (silu) h = _mm512_cvtps_ph(silu16(_mm512_cvtph_ps(h)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    if (m == 0xffff) _mm256_storeu_si256((__m256i*)dst, h); else _mm256_mask_storeu_epi16(dst, m, h);
  } else {
    if (silu) acc = silu16(bf16_round(acc));
    __m256i h = _mm512_cvtepi32_epi16(_mm512_srli_epi32(bf16_round_bits(acc), 16));
    if (m == 0xffff) _mm256_storeu_si256((__m256i*)dst, h); else _mm256_mask_storeu_epi16(dst, m, h);
  }
}

/* ------------------------------------------------------------------ weights */

/* fp32 weights of channels [c0, c0 + nc) in the (C, K) layout: the caller's array for fp32,
 * else converted into buf (nc * K floats). */
static const float* weights_f32(const conv_params* p, int64_t c0, int64_t nc, float* buf) {
  const int64_t K = p->K;
  if (p->dtype == LINATTN_DTYPE_F32) return (const float*)p->w + c0 * K;
  const size_t es = 2;
  const char* src = conv_at(p->w, c0 * K, es);
  int64_t n = nc * K, i = 0;
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(buf + i, load16(src + i * es, p->dtype));
  if (i < n) _mm512_mask_storeu_ps(buf + i, lanes16(n - i), load16_maskz(src + i * es, lanes16(n - i), p->dtype));
  return buf;
}

static void bias_f32(const conv_params* p, int64_t c0, int64_t nc, float* bias) {
  const size_t es = conv_esize(p->dtype);
  for (int64_t c = 0; c < nc; c += 16) {
    __m512 v = p->bias ? load16_maskz(conv_at(p->bias, c0 + c, es), lanes16(nc - c), p->dtype) : _mm512_setzero_ps();
    _mm512_storeu_ps(bias + c, v); /* bias has ncp floats */
  }
}

/* ------------------------------------------------------------------ channels-first */

AI void channels_first_row(const conv_params* p, int64_t b, int64_t c, const float* wf, dtype_t dt,
                           linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, S = p->S, L = p->L;
  const char* xrow = conv_at(p->x, b * p->x_sb + c * p->x_sc, es);
  char* yrow = (char*)p->y + (b * p->y_sb + c * p->y_sc) * (int64_t)es;
  const char* prow = p->past ? conv_at(p->past, b * p->s_sb + c * p->s_sc, es) : NULL;
  const bool has_bias = p->bias != NULL;
  const __m512 bias = _mm512_set1_ps(has_bias ? linattn_load_f32(p->bias, c, dt) : 0.0f);
  int64_t t0 = 0;
  for (; t0 < L && t0 < S; t0 += 16) { /* head: lanes with t + j*d < S read past_state */
    __mmask16 m = lanes16(L - t0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < K; ++j) {
      int64_t pos = t0 + j * d;
      __mmask16 mp = lanes16(S - pos) & m, mx = m & (__mmask16)~lanes16(S - pos);
      /* masked-off lanes are never touched, so the (possibly out-of-row) base is harmless */
      __m512 tap = prow ? load16_maskz((const char*)((uintptr_t)prow + (uintptr_t)(pos * (int64_t)es)), mp, dt)
                        : _mm512_setzero_ps();
      __m512 tx = load16_maskz((const char*)((uintptr_t)xrow + (uintptr_t)((pos - S) * (int64_t)es)), mx, dt);
      tap = _mm512_mask_mov_ps(tap, mx, tx);
      acc = _mm512_fmadd_ps(_mm512_set1_ps(wf[j]), tap, acc);
    }
    if (has_bias) acc = _mm512_add_ps(acc, bias);
    finish_store16(yrow + t0 * (int64_t)es, m, acc, dt, act);
  }
  const char* xs = xrow - S * (int64_t)es; /* padded position t + j*d is xs[t + j*d] for t >= S */
  if (K == 4 && d == 1 && t0 >= 16 && t0 + 16 <= L) {
    /* each input converted once: taps 0..2 are the current vector shifted in from the previous */
    const __m512 w0 = _mm512_set1_ps(wf[0]), w1 = _mm512_set1_ps(wf[1]);
    const __m512 w2 = _mm512_set1_ps(wf[2]), w3 = _mm512_set1_ps(wf[3]);
    __m512i prev = _mm512_castps_si512(load16(xrow + (t0 - 16) * (int64_t)es, dt));
    for (; t0 + 16 <= L; t0 += 16) {
      __m512i cur = _mm512_castps_si512(load16(xrow + t0 * (int64_t)es, dt));
      __m512 u = _mm512_fmadd_ps(w0, _mm512_castsi512_ps(_mm512_alignr_epi32(cur, prev, 13)), _mm512_setzero_ps());
      u = _mm512_fmadd_ps(w1, _mm512_castsi512_ps(_mm512_alignr_epi32(cur, prev, 14)), u);
      u = _mm512_fmadd_ps(w2, _mm512_castsi512_ps(_mm512_alignr_epi32(cur, prev, 15)), u);
      u = _mm512_fmadd_ps(w3, _mm512_castsi512_ps(cur), u);
      if (has_bias) u = _mm512_add_ps(u, bias);
      finish_store16(yrow + t0 * (int64_t)es, 0xffff, u, dt, act);
      prev = cur;
    }
  }
  if (K == 4) { /* the common kernel size: taps in registers, two vectors per iteration */
    const __m512 w0 = _mm512_set1_ps(wf[0]), w1 = _mm512_set1_ps(wf[1]);
    const __m512 w2 = _mm512_set1_ps(wf[2]), w3 = _mm512_set1_ps(wf[3]);
    const int64_t e1 = d * (int64_t)es, e2 = 2 * e1, e3 = 3 * e1;
    for (; t0 + 32 <= L; t0 += 32) {
      const char* a = xs + t0 * (int64_t)es;
      const char* a2 = a + 16 * (int64_t)es;
      __m512 u = _mm512_fmadd_ps(w0, load16(a, dt), _mm512_setzero_ps());
      __m512 v = _mm512_fmadd_ps(w0, load16(a2, dt), _mm512_setzero_ps());
      u = _mm512_fmadd_ps(w1, load16(a + e1, dt), u);
      v = _mm512_fmadd_ps(w1, load16(a2 + e1, dt), v);
      u = _mm512_fmadd_ps(w2, load16(a + e2, dt), u);
      v = _mm512_fmadd_ps(w2, load16(a2 + e2, dt), v);
      u = _mm512_fmadd_ps(w3, load16(a + e3, dt), u);
      v = _mm512_fmadd_ps(w3, load16(a2 + e3, dt), v);
      if (has_bias) u = _mm512_add_ps(u, bias), v = _mm512_add_ps(v, bias);
      finish_store16(yrow + t0 * (int64_t)es, 0xffff, u, dt, act);
      finish_store16(yrow + (t0 + 16) * (int64_t)es, 0xffff, v, dt, act);
    }
  }
  for (; t0 + 16 <= L; t0 += 16) {
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < K; ++j)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(wf[j]), load16(xs + (t0 + j * d) * (int64_t)es, dt), acc);
    if (has_bias) acc = _mm512_add_ps(acc, bias);
    finish_store16(yrow + t0 * (int64_t)es, 0xffff, acc, dt, act);
  }
  if (t0 < L) {
    __mmask16 m = lanes16(L - t0);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < K; ++j)
      acc = _mm512_fmadd_ps(_mm512_set1_ps(wf[j]), load16_maskz(xs + (t0 + j * d) * (int64_t)es, m, dt), acc);
    if (has_bias) acc = _mm512_add_ps(acc, bias);
    finish_store16(yrow + t0 * (int64_t)es, m, acc, dt, act);
  }
  conv_cf_write_present(p, b, c);
}

/* Decode across channels: packed (B, C, 1) input/output, packed (B, C, S) state, S <= tile. */
AI void channels_first_decode(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const float* wsrc,
                              const conv_scratch_layout* s, dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, S = p->S;
  const char* x = conv_at(p->x, b * p->x_sb + c0 * p->x_sc, es);
  char* y = (char*)p->y + (b * p->y_sb + c0 * p->y_sc) * (int64_t)es;
  const char* past = p->past ? conv_at(p->past, b * p->s_sb + c0 * p->s_sc, es) : NULL;
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i widx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)K));
  const __m512i sidx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)S));
  for (int64_t v = 0; v < nc; v += 16) {
    __mmask16 m = lanes16(nc - v);
    const float* wv = wsrc + v * K;
    const float* pv = NULL;
    if (past && S > 0) {
      if (dt == LINATTN_DTYPE_F32) {
        pv = (const float*)past + v * S;
      } else { /* widen this group's state to fp32 once, then gather from L1 */
        const char* src = past + v * S * (int64_t)es;
        int64_t n = (nc - v < 16 ? nc - v : 16) * S, i = 0;
        for (; i + 16 <= n; i += 16) _mm512_storeu_ps(s->tile + i, load16(src + i * (int64_t)es, dt));
        if (i < n) _mm512_storeu_ps(s->tile + i, load16_maskz(src + i * (int64_t)es, lanes16(n - i), dt));
        pv = s->tile;
      }
    }
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j < K - 1; ++j) {
      __m512 wj = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(widx, _mm512_set1_epi32((int)j)), wv, 4);
      __m512 tap = pv ? _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(sidx, _mm512_set1_epi32((int)(j * d))), pv, 4)
                      : _mm512_setzero_ps();
      acc = _mm512_fmadd_ps(wj, tap, acc);
    }
    __m512 wl = _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m, _mm512_add_epi32(widx, _mm512_set1_epi32((int)(K - 1))), wv, 4);
    acc = _mm512_fmadd_ps(wl, load16_maskz(x + v * (int64_t)es, m, dt), acc);
    if (p->bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(s->bias + v));
    finish_store16(y + v * (int64_t)es, m, acc, dt, act);
  }
  if (!p->present || S == 0) return;
  /* present[c][s] = padded[c][1 + s]: the block shifted left by one element, then x appended */
  char* pres = (char*)p->present + (b * p->s_sb + c0 * p->s_sc) * (int64_t)es;
  size_t n = (size_t)(nc * S);
  if (past)
    memmove(pres, past + es, (n - 1) * es);
  else
    memset(pres, 0, n * es);
  if (es == 4) {
    for (int64_t c = 0; c < nc; ++c) memcpy(pres + ((c + 1) * S - 1) * 4, x + c * 4, 4);
  } else {
    for (int64_t c = 0; c < nc; ++c) memcpy(pres + ((c + 1) * S - 1) * 2, x + c * 2, 2);
  }
}

/* ------------------------------------------------------------------ channels-last */

AI __m512 load16_m(const char* p, __mmask16 m, dtype_t dt) {
  return m == 0xffff ? load16(p, dt) : load16_maskz(p, m, dt);
}

/* Channels-last, K = 4, dilation 1: per 16-channel column and tile of CL_TILE steps, weights,
 * bias and the three previous inputs stay in registers, so each input is loaded and converted
 * once. Rows are C elements apart, so the next tile's lines are prefetched, one per step. */
#define CL_TILE 32
AI void channels_last_k4(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                         dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t L = p->L, ncp = conv_ncp(nc);
  const int64_t xst = p->x_st * (int64_t)es, yst = p->y_st * (int64_t)es;
  const bool has_bias = p->bias != NULL;
  const char* xb = conv_at(p->x, b * p->x_sb + c0, es);
  char* yb = (char*)p->y + (b * p->y_sb + c0) * (int64_t)es;
  for (int64_t t0 = 0; t0 < L; t0 += CL_TILE) {
    const int64_t t1 = L - t0 < CL_TILE ? L : t0 + CL_TILE;
    const int64_t pf = (L - t1 < CL_TILE ? L - t1 : CL_TILE); /* rows of the next tile */
    for (int64_t v = 0; v < nc; v += 16) {
      const __mmask16 m = lanes16(nc - v);
      const int64_t o = v * (int64_t)es;
      const __m512 w0 = _mm512_loadu_ps(s->wt + v), w1 = _mm512_loadu_ps(s->wt + ncp + v);
      const __m512 w2 = _mm512_loadu_ps(s->wt + 2 * ncp + v), w3 = _mm512_loadu_ps(s->wt + 3 * ncp + v);
      const __m512 bias = _mm512_loadu_ps(s->bias + v);
      __m512 h0 = load16_m(conv_cl_padded_row(p, b, c0, t0, s->zero) + o, m, dt);
      __m512 h1 = load16_m(conv_cl_padded_row(p, b, c0, t0 + 1, s->zero) + o, m, dt);
      __m512 h2 = load16_m(conv_cl_padded_row(p, b, c0, t0 + 2, s->zero) + o, m, dt);
      const char* xp = xb + t0 * xst + o;
      char* yp = yb + t0 * yst + o;
      for (int64_t t = t0; t < t1; ++t, xp += xst, yp += yst) {
        if (t - t0 < pf) _mm_prefetch(xp + CL_TILE * xst, _MM_HINT_T0);
        const __m512 cur = load16_m(xp, m, dt);
        __m512 acc = _mm512_fmadd_ps(w0, h0, _mm512_setzero_ps());
        acc = _mm512_fmadd_ps(w1, h1, acc);
        acc = _mm512_fmadd_ps(w2, h2, acc);
        acc = _mm512_fmadd_ps(w3, cur, acc);
        if (has_bias) acc = _mm512_add_ps(acc, bias);
        finish_store16(yp, m, acc, dt, act);
        h0 = h1, h1 = h2, h2 = cur;
      }
    }
  }
  conv_cl_write_present(p, b, c0, nc);
}

AI void channels_last_block(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                            dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, L = p->L, ncp = conv_ncp(nc);
  const char* rows[16];
  const bool has_bias = p->bias != NULL;
  const int64_t kmax = K <= 16 ? K : 16; /* taps beyond 16 take the generic row lookup */
  for (int64_t t = 0; t < L; ++t) {
    char* yrow = (char*)p->y + (b * p->y_sb + t * p->y_st + c0) * (int64_t)es;
    for (int64_t j = 0; j < kmax; ++j) rows[j] = conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
    int64_t v = 0;
    if (K == 4) {
      const char *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3];
      const float* w = s->wt;
      for (; v + 16 <= nc; v += 16) {
        const int64_t o = v * (int64_t)es;
        __m512 acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + v), load16(r0 + o, dt), _mm512_setzero_ps());
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + ncp + v), load16(r1 + o, dt), acc);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + 2 * ncp + v), load16(r2 + o, dt), acc);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + 3 * ncp + v), load16(r3 + o, dt), acc);
        if (has_bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(s->bias + v));
        finish_store16(yrow + o, 0xffff, acc, dt, act);
      }
    }
    for (; v < nc; v += 16) {
      const __mmask16 m = lanes16(nc - v);
      const int64_t o = v * (int64_t)es;
      __m512 acc = _mm512_setzero_ps();
      for (int64_t j = 0; j < K; ++j) {
        const char* r = j < 16 ? rows[j] : conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
        acc = _mm512_fmadd_ps(_mm512_loadu_ps(s->wt + j * ncp + v), load16_maskz(r + o, m, dt), acc);
      }
      if (has_bias) acc = _mm512_add_ps(acc, _mm512_loadu_ps(s->bias + v));
      finish_store16(yrow + o, m, acc, dt, act);
    }
  }
  conv_cl_write_present(p, b, c0, nc);
}

/* ------------------------------------------------------------------ entry */

AI void run_typed(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s, dtype_t dt,
                  linattn_activation act) {
  const int64_t K = p->K;
  const float* wsrc = weights_f32(p, c0, nc, s->wc); /* (C, K) fp32 */
  bias_f32(p, c0, nc, s->bias);
  if (p->channels_last) { /* transpose to tap-major [K][ncp] with gathers, 16 channels at a time */
    const int64_t ncp = conv_ncp(nc);
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i widx = _mm512_mullo_epi32(lane, _mm512_set1_epi32((int)K));
    for (int64_t v = 0; v < ncp; v += 16) {
      __mmask16 m = lanes16(nc - v);
      for (int64_t j = 0; j < K; ++j)
        _mm512_storeu_ps(s->wt + j * ncp + v,
                         _mm512_mask_i32gather_ps(_mm512_setzero_ps(), m,
                                                  _mm512_add_epi32(widx, _mm512_set1_epi32((int)j)), wsrc + v * K, 4));
    }
    if (!p->past) memset(s->zero, 0, (size_t)nc * conv_esize(dt));
    if (K == 4 && p->dilation == 1)
      channels_last_k4(p, b, c0, nc, s, dt, act);
    else
      channels_last_block(p, b, c0, nc, s, dt, act);
    return;
  }
  if (p->L == 1 && p->x_sc == 1 && p->y_sc == 1 && p->S <= CONV_TILE_MAX_S && p->s_st == 1 && p->s_sc == p->S) {
    channels_first_decode(p, b, c0, nc, wsrc, s, dt, act);
    return;
  }
  for (int64_t c = c0; c < c0 + nc; ++c) channels_first_row(p, b, c, wsrc + (c - c0) * K, dt, act);
}

static void conv_run_avx512(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch) {
  conv_scratch_layout s = conv_scratch_split(p, nc, scratch);
  const bool silu = p->activation == LINATTN_ACTIVATION_SILU;
  switch (p->dtype) {
    case LINATTN_DTYPE_F16:
      if (silu) run_typed(p, b, c0, nc, &s, LINATTN_DTYPE_F16, LINATTN_ACTIVATION_SILU);
      else run_typed(p, b, c0, nc, &s, LINATTN_DTYPE_F16, LINATTN_ACTIVATION_NONE);
      break;
    case LINATTN_DTYPE_BF16:
      if (silu) run_typed(p, b, c0, nc, &s, LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_SILU);
      else run_typed(p, b, c0, nc, &s, LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_NONE);
      break;
    default:
      if (silu) run_typed(p, b, c0, nc, &s, LINATTN_DTYPE_F32, LINATTN_ACTIVATION_SILU);
      else run_typed(p, b, c0, nc, &s, LINATTN_DTYPE_F32, LINATTN_ACTIVATION_NONE);
      break;
  }
}

static size_t conv_scratch_avx512(const conv_params* p, int64_t nc) { return conv_vector_scratch_bytes(p, nc); }

const conv_kernel linattn_conv_avx512 = {
    .name = "avx512",
    .run = conv_run_avx512,
    .scratch_bytes = conv_scratch_avx512,
    .block_channels = 256,
};
