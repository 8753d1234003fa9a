/*
 * CausalConvWithState, AVX-512 (F/BW/VL/DQ + F16C + FMA) family: conv_simd_body.h over
 * vec_avx512.h's 16 lanes (the prefill paths, shared with conv_avx2.c; tails and taps reaching
 * into past_state are k-masked loads and stores), plus what only this ISA has:
 *
 * channels-first K = 4, dilation 1 (conv_cf_k4_shifted): taps 0..2 are the current vector
 *   shifted in from the previous one (valignd), so each input is converted once; fp32 outputs
 *   larger than the last-level cache (conv_params.stream_rows) leave with non-temporal stores;
 *   bf16 as even and odd steps without shuffles where conv_params.cf_bf16_pairs asks for it.
 * 16-bit SiLU by table lookup (conv_params.silu_table): in the channels-first K = 4 loops and the
 *   channels-last K = 4 full tiles (whole 64-byte lines per row there), each batch's gathers are
 *   issued during the next batch's sums (conv_cf_k4_table, conv_cl_k4_table_lines).
 * decode (L = 1): 16 channels per zmm. Weights (C, K) and the channels-first state (C, S) are
 *   de-interleaved in registers with vpermt2ps (constant tables for K = 4, dilation 1, where
 *   16-bit states are de-interleaved as raw words before widening);
 *   present_state is the state moved by one position with the input appended. K = 4 reads
 *   weights and bias in place, so that path needs no scratch (a decode call allocates nothing).
 *   Several sequences of a packed decode (conv_kernel.run_seqs): the weights of 256 channels
 *   prepared once, then each sequence over them (docs/tuning.md, conv.decode_seqs).
 * Both rest on two-source cross-lane permutes that AVX2 lacks (docs/algorithms.md, conv kernels).
 * bf16 is rounded with integer RNE (like src/convert.h), not vcvtneps2bf16, which flushes
 * subnormals and needs AVX512-BF16.
 */
#include <immintrin.h>
#include <pthread.h>

#include "conv_common.h"
#include "vec_avx512.h"

#define AI static inline __attribute__((always_inline))

typedef linattn_dtype dtype_t;

/* ------------------------------------------------------------------ configuration */

/* eight vectors summed, then finished: their rounding / SiLU / conversion chains overlap, which
 * 16-bit T, bound by that arithmetic, gains most from (docs/tuning.md, CONV_CF_BATCH) */
#define CONV_CF_BATCH 8
/* Time steps per column tile of channels_last_k4: 8 for fp32, 6 for 16-bit T, whose longer
 * finish (round trip to T, SiLU, conversion) leaves fewer registers and more time per column
 * (docs/tuning.md, CONV_CL_ROWS); 12 for 16-bit T with the SiLU by lookup, whose finish is
 * short (docs/tuning.md, conv.silu_table). */
#define CONV_CL_ROWS(dt, act) ((dt) == LINATTN_DTYPE_F32 ? 8 : (act) == CONV_ACT_SILU_TABLE ? 12 : 6)
#define CONV_CL_ROWS_MAX 12
/* channels-first fp32 rows of an output larger than the LLC (conv_params.stream_rows) streamed */
#define CONV_CF_STREAM 1
/* channels-last columns always from an output vector boundary: full columns are whole lines */
#define CONV_CL_LEAD_ALWAYS 1
/* channels-first K = 4, dilation 1 through conv_cf_k4_shifted (docs/tuning.md, CONV_CF_SHIFT) */
#define CONV_CF_SHIFT 1
/* decode and prefill of each dtype / activation register-allocated alone: inlined into one
 * entry, the prefill rows spilled more and were slower (docs/tuning.md, CONV_SPLIT_TYPED) */
#define CONV_SPLIT_TYPED 1
#define CONV_FN(name) name##_avx512

/* Non-temporal stores for a streamed output (conv_params.stream_output), in fp32 only, where a
 * 16-lane vector is a whole cache line (docs/tuning.md, conv_stream_full_lines). */
AI bool conv_cl_stream(const conv_params* p, dtype_t dt) { return dt == LINATTN_DTYPE_F32 && p->stream_output; }

/* ------------------------------------------------------------------ SiLU table (conv.silu_table) */

/* The SiLU of a 16-bit T takes a value already rounded to T, so its T result is a function of
 * 16 bits: per dtype a table of all 65,536 results (128 KiB), filled once per process by the
 * vector path itself (silu_t16 on the value, rounded to T as conv_finish_store rounds), so a
 * lookup gives its bits by construction. The vector path's bits for tiny values depend on the
 * caller's MXCSR (FTZ, DAZ, rounding mode): the tables are filled under the default control
 * bits and used only under them (conv_silu_table_use), else the vector path runs. */
#define CONV_SILU_TABLE 1
#define CONV_ACT_SILU_TABLE ((linattn_activation)16) /* not a public activation: SiLU by lookup */
#define MXCSR_CONTROL 0xe040u /* rounding mode (bits 13-14), FTZ (15), DAZ (6); 0 by default */

static uint16_t g_silu_f16[SILU_TABLE_ENTRIES] __attribute__((aligned(64)));
static uint16_t g_silu_bf16[SILU_TABLE_ENTRIES] __attribute__((aligned(64)));
static pthread_once_t g_silu_once = PTHREAD_ONCE_INIT;

static void silu_tables_fill(void) {
  const unsigned saved = _mm_getcsr();
  _mm_setcsr(saved & ~MXCSR_CONTROL);
  for (int h = 0; h < 65536; h += 16) {
    const __m256i bits = _mm256_add_epi16(_mm256_set1_epi16((short)h),
                                          _mm256_setr_epi16(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15));
    const __m512 sf = silu_t16(_mm512_cvtph_ps(bits)); /* conv_finish_store's fp16 SiLU */
    _mm256_storeu_si256((__m256i*)(g_silu_f16 + h), _mm512_cvtps_ph(sf, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    const __m512 sb = silu_t16(bf16_widen(bits)); /* and its bf16 one */
    _mm256_storeu_si256((__m256i*)(g_silu_bf16 + h), bf16_high_words(bf16_round_bits(sb)));
  }
  _mm_setcsr(saved);
}

/* The unit's 16-bit SiLU by lookup: asked for, and the tables' floating-point mode in force. */
AI bool conv_silu_table_use(const conv_params* p) {
  if (!p->silu_table || p->activation != LINATTN_ACTIVATION_SILU || p->dtype == LINATTN_DTYPE_F32) return false;
  if ((_mm_getcsr() & MXCSR_CONTROL) != 0) return false;
  pthread_once(&g_silu_once, silu_tables_fill);
  return true;
}

AI __m256i conv_silu_table_t16(__m512 acc, dtype_t dt) {
  return dt == LINATTN_DTYPE_F16 ? silu_table_f16(acc, g_silu_f16) : silu_table_bf16(acc, g_silu_bf16);
}

#include "conv_simd_body.h"

/* ------------------------------------------------------------------ hooks of the body */

/* padded[pos + i]: the lanes before S from past_state, the others from the input, each by a
 * masked load (masked-off lanes are never touched, so a base outside the row is harmless) */
AI __m512 conv_load_padded(const char* prow, const char* xrow, int64_t pos, int64_t S, int64_t n, dtype_t dt) {
  const size_t es = conv_esize(dt);
  const __mmask16 m = lanes16(n), mp = lanes16(S - pos) & m, mx = m & (__mmask16)~lanes16(S - pos);
  __m512 tap = prow ? load16_maskz((const char*)((uintptr_t)prow + (uintptr_t)(pos * (int64_t)es)), mp, dt)
                    : _mm512_setzero_ps();
  __m512 tx = load16_maskz((const char*)((uintptr_t)xrow + (uintptr_t)((pos - S) * (int64_t)es)), mx, dt);
  return _mm512_mask_mov_ps(tap, mx, tx);
}

/* The K = 4 channels-first sum of one vector (its inputs cur, the 16 before them prev: taps 0..2
 * are cur shifted in from prev) with the bias, before the activation. */
AI __m512 conv_cf_k4_sum(__m512i cur, __m512i prev, __m512 w0, __m512 w1, __m512 w2, __m512 w3, __m512 bias,
                         bool has_bias, dtype_t dt) {
  __m512 u = _mm512_fmadd_ps(w0, _mm512_castsi512_ps(_mm512_alignr_epi32(cur, prev, 13)), _mm512_setzero_ps());
  u = _mm512_fmadd_ps(w1, _mm512_castsi512_ps(_mm512_alignr_epi32(cur, prev, 14)), u);
  u = _mm512_fmadd_ps(w2, _mm512_castsi512_ps(_mm512_alignr_epi32(cur, prev, 15)), u);
  u = _mm512_fmadd_ps(w3, _mm512_castsi512_ps(cur), u);
  return has_bias ? conv_add_bias(u, bias, dt) : u;
}

/* One vector of conv_cf_k4_shifted from t0, prev holding the 16 inputs before it; returns
 * this vector's inputs (the next one's prev). */
AI __m512i conv_cf_k4_one(const char* xrow, char* yrow, int64_t t0, __m512i prev, const float* wf, __m512 bias,
                          bool has_bias, dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  __m512i cur = _mm512_castps_si512(load16(xrow + t0 * (int64_t)es, dt));
  const __m512 u = conv_cf_k4_sum(cur, prev, _mm512_set1_ps(wf[0]), _mm512_set1_ps(wf[1]), _mm512_set1_ps(wf[2]),
                                  _mm512_set1_ps(wf[3]), bias, has_bias, dt);
  conv_finish_store(yrow + t0 * (int64_t)es, 16, u, dt, act, false);
  return cur;
}

/* bf16 channels-first K = 4, dilation 1, 32 steps per 64-byte load split into its even and odd
 * steps (lane i: steps 2i and 2i + 1): a bf16 is the high half of its fp32, so the odd steps
 * are the dwords with the low half cleared and the even ones the dwords shifted left by 16 (no
 * shuffle-port uop, where a vpermw widening takes one per 16 steps). Along the stream of even
 * steps E and odd steps O, y[2i] = w0 O[i-2] + w1 E[i-1] + w2 O[i-1] + w3 E[i] and
 * y[2i+1] = w0 E[i-1] + w1 O[i-1] + w2 E[i] + w3 O[i]: three valignd per 32 steps instead of
 * six, the same products summed in the same order as conv_cf_k4_shifted, so the same bits. The
 * two finished halves are interleaved back by one shift and one vpternlogd (the high words of
 * the odd lanes, the even lanes' high words moved down). From t0 (t0 >= 16) while whole
 * rounds remain, from where y is 64-byte aligned; returns the next t0. */
/* The even and odd steps' sums of conv_cf_k4_bf16_pairs for the 32 steps of d, ep and op the
 * previous 32's even and odd steps (then moved on to d's). */
AI void bf16_pairs_sums(__m512i d, __m512i* ep, __m512i* op, const __m512 w[4], __m512 bias, bool has_bias,
                        __m512* ue, __m512* uo) {
  const __m512i hi_half = _mm512_set1_epi32((int)0xffff0000u);
  const __m512i e = _mm512_slli_epi32(d, 16), o = _mm512_and_si512(d, hi_half);
  const __m512 e1 = _mm512_castsi512_ps(_mm512_alignr_epi32(e, *ep, 15));
  const __m512 o1 = _mm512_castsi512_ps(_mm512_alignr_epi32(o, *op, 15));
  const __m512 o2 = _mm512_castsi512_ps(_mm512_alignr_epi32(o, *op, 14));
  __m512 a = _mm512_fmadd_ps(w[0], o2, _mm512_setzero_ps()), b = _mm512_fmadd_ps(w[0], e1, _mm512_setzero_ps());
  a = _mm512_fmadd_ps(w[1], e1, a);
  b = _mm512_fmadd_ps(w[1], o1, b);
  a = _mm512_fmadd_ps(w[2], o1, a);
  b = _mm512_fmadd_ps(w[2], _mm512_castsi512_ps(e), b);
  a = _mm512_fmadd_ps(w[3], _mm512_castsi512_ps(e), a);
  b = _mm512_fmadd_ps(w[3], _mm512_castsi512_ps(o), b);
  if (has_bias) a = _mm512_add_ps(a, bias), b = _mm512_add_ps(b, bias);
  *ep = e, *op = o, *ue = a, *uo = b;
}

/* conv_cf_k4_bf16_pairs with the SiLU by lookup, software-pipelined as conv_cf_k4_table is: each
 * round's indices formed after its sums, its gathers issued during the next round's sums. */
AI int64_t conv_cf_k4_bf16_pairs_table(const char* xrow, char* yrow, int64_t t0, int64_t L, const __m512 w[4],
                                       __m512 bias, bool has_bias, int64_t pf, __m512i ep, __m512i op) {
  enum { PAIRS = CONV_CF_BATCH / 2 };
  const __m512i hi_half = _mm512_set1_epi32((int)0xffff0000u);
  if (t0 + 32 * PAIRS > L) return t0;
  __m512i ie[PAIRS], io[PAIRS];
  for (int i = 0; i < PAIRS; ++i) {
    __m512 ue, uo;
    bf16_pairs_sums(_mm512_loadu_si512(xrow + (t0 + 32 * i) * 2), &ep, &op, w, bias, has_bias, &ue, &uo);
    ie[i] = _mm512_srli_epi32(bf16_round_bits(ue), 16), io[i] = _mm512_srli_epi32(bf16_round_bits(uo), 16);
  }
  int64_t tp = t0;
  for (t0 += 32 * PAIRS; t0 + 32 * PAIRS <= L; t0 += 32 * PAIRS) {
    if (pf) conv_cf_prefetch(xrow + t0 * 2, pf, 2);
    for (int i = 0; i < PAIRS; ++i) { /* the entries in the low words: the odd ones moved up */
      const __m512i re = silu_table_gather(ie[i], g_silu_bf16);
      const __m512i ro = _mm512_slli_epi32(silu_table_gather(io[i], g_silu_bf16), 16);
      _mm512_store_si512(yrow + (tp + 32 * i) * 2, _mm512_ternarylogic_epi32(hi_half, ro, re, 0xca));
      __m512 ue, uo;
      bf16_pairs_sums(_mm512_loadu_si512(xrow + (t0 + 32 * i) * 2), &ep, &op, w, bias, has_bias, &ue, &uo);
      ie[i] = _mm512_srli_epi32(bf16_round_bits(ue), 16), io[i] = _mm512_srli_epi32(bf16_round_bits(uo), 16);
    }
    tp = t0;
  }
  for (int i = 0; i < PAIRS; ++i) {
    const __m512i re = silu_table_gather(ie[i], g_silu_bf16);
    const __m512i ro = _mm512_slli_epi32(silu_table_gather(io[i], g_silu_bf16), 16);
    _mm512_store_si512(yrow + (tp + 32 * i) * 2, _mm512_ternarylogic_epi32(hi_half, ro, re, 0xca));
  }
  return t0;
}

AI int64_t conv_cf_k4_bf16_pairs(const char* xrow, char* yrow, int64_t t0, int64_t L, const float* wf, __m512 bias,
                                 bool has_bias, int64_t pf, linattn_activation act) {
  enum { PAIRS = CONV_CF_BATCH / 2 };
  if ((((uintptr_t)yrow + (uintptr_t)(t0 * 2)) & 63u) != 0) return t0;
  const __m512 w0 = _mm512_set1_ps(wf[0]), w1 = _mm512_set1_ps(wf[1]);
  const __m512 w2 = _mm512_set1_ps(wf[2]), w3 = _mm512_set1_ps(wf[3]);
  const __m512i hi_half = _mm512_set1_epi32((int)0xffff0000u);
  /* the 16 steps before t0 in the upper 8 dwords (the lower 8 are neither read nor used) */
  const __m512i before = _mm512_maskz_loadu_epi32(0xff00, xrow + (t0 - 32) * 2);
  __m512i ep = _mm512_slli_epi32(before, 16), op = _mm512_and_si512(before, hi_half);
  if (act == CONV_ACT_SILU_TABLE) {
    const __m512 w[4] = {w0, w1, w2, w3};
    return conv_cf_k4_bf16_pairs_table(xrow, yrow, t0, L, w, bias, has_bias, pf, ep, op);
  }
  for (; t0 + 32 * PAIRS <= L; t0 += 32 * PAIRS) {
    __m512 ue[PAIRS], uo[PAIRS];
    if (pf) conv_cf_prefetch(xrow + t0 * 2, pf, 2);
    for (int i = 0; i < PAIRS; ++i) {
      const __m512i d = _mm512_loadu_si512(xrow + (t0 + 32 * i) * 2);
      const __m512i e = _mm512_slli_epi32(d, 16), o = _mm512_and_si512(d, hi_half);
      const __m512 e1 = _mm512_castsi512_ps(_mm512_alignr_epi32(e, ep, 15));
      const __m512 o1 = _mm512_castsi512_ps(_mm512_alignr_epi32(o, op, 15));
      const __m512 o2 = _mm512_castsi512_ps(_mm512_alignr_epi32(o, op, 14));
      ue[i] = _mm512_fmadd_ps(w0, o2, _mm512_setzero_ps());
      uo[i] = _mm512_fmadd_ps(w0, e1, _mm512_setzero_ps());
      ue[i] = _mm512_fmadd_ps(w1, e1, ue[i]);
      uo[i] = _mm512_fmadd_ps(w1, o1, uo[i]);
      ue[i] = _mm512_fmadd_ps(w2, o1, ue[i]);
      uo[i] = _mm512_fmadd_ps(w2, _mm512_castsi512_ps(e), uo[i]);
      ue[i] = _mm512_fmadd_ps(w3, _mm512_castsi512_ps(e), ue[i]);
      uo[i] = _mm512_fmadd_ps(w3, _mm512_castsi512_ps(o), uo[i]);
      if (has_bias) ue[i] = _mm512_add_ps(ue[i], bias), uo[i] = _mm512_add_ps(uo[i], bias);
      ep = e, op = o;
    }
    for (int i = 0; i < PAIRS; ++i) {
      __m512 ve = ue[i], vo = uo[i];
      if (act == CONV_ACT_SILU_TABLE) { /* the entries in the low words: the odd ones moved up */
        const __m512i re = silu_table_bf16_lanes(ve, g_silu_bf16);
        const __m512i ro = _mm512_slli_epi32(silu_table_bf16_lanes(vo, g_silu_bf16), 16);
        _mm512_store_si512(yrow + (t0 + 32 * i) * 2, _mm512_ternarylogic_epi32(hi_half, ro, re, 0xca));
        continue;
      }
      if (act == LINATTN_ACTIVATION_SILU) ve = silu_t16(bf16_round(ve)), vo = silu_t16(bf16_round(vo));
      const __m512i re = _mm512_srli_epi32(bf16_round_bits(ve), 16), ro = bf16_round_bits(vo);
      /* (ro & 0xffff0000) | re: bit-select with hi_half as the selector */
      _mm512_store_si512(yrow + (t0 + 32 * i) * 2, _mm512_ternarylogic_epi32(hi_half, ro, re, 0xca));
    }
  }
  return t0;
}

/* The table index of the SiLU by lookup (conv.silu_table): the T bits of acc rounded to T, as
 * silu_table_f16 / silu_table_bf16_lanes form it, and the T results of 16 such indices. */
AI __m512i conv_table_index(__m512 acc, dtype_t dt) {
  return dt == LINATTN_DTYPE_F16 ? _mm512_cvtepu16_epi32(_mm512_cvtps_ph(acc, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC))
                                 : _mm512_srli_epi32(bf16_round_bits(acc), 16);
}
AI __m256i conv_table_lookup(__m512i idx, dtype_t dt) {
  return low_words16(silu_table_gather(idx, dt == LINATTN_DTYPE_F16 ? g_silu_f16 : g_silu_bf16));
}

/* conv_cf_k4_shifted's batches with the SiLU by lookup, software-pipelined: each batch's table
 * indices are formed right after its sums, and its gathers issued during the next batch's sums,
 * one per vector. A gather whose indices were just computed stalled the sums around it; one
 * whose indices are a batch old overlaps them (docs/tuning.md, conv.silu_table, pipelined
 * lookups). Per element the same operations as conv_finish_store's, so the same bits. From t0
 * while whole batches remain; returns the next t0 and the last vector's inputs in *prev. */
AI int64_t conv_cf_k4_table(const char* xrow, char* yrow, int64_t t0, int64_t L, const __m512 w[4], __m512 bias,
                            bool has_bias, int64_t pf, __m512i* prev_io, dtype_t dt) {
  enum { NB = CONV_CF_BATCH };
  if (t0 + 16 * NB > L) return t0;
  __m512i prev = *prev_io, idx[NB];
  for (int i = 0; i < NB; ++i) { /* the first batch: sums and indices only */
    const __m512i cur = _mm512_castps_si512(load16(xrow + (t0 + 16 * i) * 2, dt));
    idx[i] = conv_table_index(conv_cf_k4_sum(cur, prev, w[0], w[1], w[2], w[3], bias, has_bias, dt), dt);
    prev = cur;
  }
  int64_t tp = t0; /* the batch whose indices are pending */
  for (t0 += 16 * NB; t0 + 16 * NB <= L; t0 += 16 * NB) {
    if (pf) conv_cf_prefetch(xrow + t0 * 2, pf, 2);
    for (int i = 0; i < NB; ++i) {
      _mm256_storeu_si256((__m256i*)(yrow + (tp + 16 * i) * 2), conv_table_lookup(idx[i], dt));
      const __m512i cur = _mm512_castps_si512(load16(xrow + (t0 + 16 * i) * 2, dt));
      idx[i] = conv_table_index(conv_cf_k4_sum(cur, prev, w[0], w[1], w[2], w[3], bias, has_bias, dt), dt);
      prev = cur;
    }
    tp = t0;
  }
  for (int i = 0; i < NB; ++i) _mm256_storeu_si256((__m256i*)(yrow + (tp + 16 * i) * 2), conv_table_lookup(idx[i], dt));
  *prev_io = prev;
  return t0;
}

/* Channels-first K = 4, dilation 1: each input converted once, taps 0..2 the current vector
 * shifted in from the previous one; CONV_CF_BATCH vectors summed, then finished. */
AI int64_t conv_cf_k4_shifted(const char* xrow, char* yrow, int64_t t0, int64_t L, const float* wf, __m512 bias,
                              bool has_bias, bool nt, int64_t pf, bool pairs, dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  if (dt == LINATTN_DTYPE_BF16 && pairs && L - t0 >= 16 * CONV_CF_BATCH + 16) {
    if ((((uintptr_t)yrow + (uintptr_t)(t0 * 2)) & 63u) != 0) { /* one vector up to a line boundary */
      (void)conv_cf_k4_one(xrow, yrow, t0, _mm512_castps_si512(load16(xrow + (t0 - 16) * 2, dt)), wf, bias, has_bias,
                           dt, act);
      t0 += 16;
    }
    t0 = conv_cf_k4_bf16_pairs(xrow, yrow, t0, L, wf, bias, has_bias, pf, act);
    if (t0 + 16 > L) return t0;
  }
  const __m512 w0 = _mm512_set1_ps(wf[0]), w1 = _mm512_set1_ps(wf[1]);
  const __m512 w2 = _mm512_set1_ps(wf[2]), w3 = _mm512_set1_ps(wf[3]);
  __m512i prev = _mm512_castps_si512(load16(xrow + (t0 - 16) * (int64_t)es, dt));
  if (act == CONV_ACT_SILU_TABLE) {
    const __m512 w[4] = {w0, w1, w2, w3};
    t0 = conv_cf_k4_table(xrow, yrow, t0, L, w, bias, has_bias, pf, &prev, dt);
  }
  for (; t0 + 16 * CONV_CF_BATCH <= L; t0 += 16 * CONV_CF_BATCH) {
    __m512 u[CONV_CF_BATCH];
    if (pf) conv_cf_prefetch(xrow + t0 * (int64_t)es, pf, es);
    for (int i = 0; i < CONV_CF_BATCH; ++i) {
      __m512i cur = _mm512_castps_si512(load16(xrow + (t0 + 16 * i) * (int64_t)es, dt));
      u[i] = conv_cf_k4_sum(cur, prev, w0, w1, w2, w3, bias, has_bias, dt);
      prev = cur;
    }
    for (int i = 0; i < CONV_CF_BATCH; ++i) conv_finish_store(yrow + (t0 + 16 * i) * (int64_t)es, 16, u[i], dt, act, nt);
  }
  for (; t0 + 16 <= L; t0 += 16) prev = conv_cf_k4_one(xrow, yrow, t0, prev, wf, bias, has_bias, dt, act);
  return t0;
}

/* Channels [v, v + 32) of a full channels-last tile with the SiLU by lookup (one 64-byte line of
 * each 16-bit row: both halves of a line are used together, so rows whose stride is a multiple of
 * 4 KiB, which share one L1 set, are not evicted between the halves): the tile's rows summed and
 * their table indices formed in idx (row i: idx[2i], idx[2i + 1]); with store, the previous
 * lines' pending lookups (idx as given, rows at yprev) go out one row per row in between. */
AI void conv_cl_table_line(const conv_params* p, int64_t b, int64_t c0, const conv_scratch_layout* s, int64_t ncp,
                           int64_t t0, int ROWS, int64_t v, __m512i* idx, bool store, char* yprev, dtype_t dt) {
  const int64_t xst = p->x_st * 2, yst = p->y_st * 2;
  const char* xp = conv_at(p->x, b * p->x_sb + t0 * p->x_st + c0 + v, 2);
  const bool has_bias = p->bias != NULL;
  __m512 w[2][4], bias[2], h[2][3];
  for (int k = 0; k < 2; ++k) {
    for (int j = 0; j < 4; ++j) w[k][j] = _mm512_loadu_ps(s->wt + j * ncp + v + 16 * k);
    bias[k] = has_bias ? _mm512_loadu_ps(s->bias + v + 16 * k) : _mm512_setzero_ps();
    for (int j = 0; j < 3; ++j) /* the three previous rows: input rows, or past / zero rows */
      h[k][j] = load16((t0 >= p->S ? xp - (3 - j) * xst : conv_cl_padded_row(p, b, c0, t0 + j, s->zero) + v * 2) + 32 * k, dt);
  }
  for (int i = 0; i < ROWS; ++i)
    for (int k = 0; k < 2; ++k) {
      if (store) _mm256_storeu_si256((__m256i*)(yprev + i * yst + 32 * k), conv_table_lookup(idx[2 * i + k], dt));
      const __m512 x3 = load16(xp + i * xst + 32 * k, dt);
      __m512 acc = _mm512_fmadd_ps(w[k][0], h[k][0], _mm512_setzero_ps());
      acc = _mm512_fmadd_ps(w[k][1], h[k][1], acc);
      acc = _mm512_fmadd_ps(w[k][2], h[k][2], acc);
      acc = _mm512_fmadd_ps(w[k][3], x3, acc);
      if (has_bias) acc = conv_add_bias(acc, bias[k], dt);
      idx[2 * i + k] = conv_table_index(acc, dt);
      h[k][0] = h[k][1], h[k][1] = h[k][2], h[k][2] = x3;
    }
}

/* The lines of a tile of ROWS (a constant) steps software-pipelined as conv_cf_k4_table is, each
 * line's gathers issued during the next line's sums. */
AI void conv_cl_table_lines_rows(const conv_params* p, int64_t b, int64_t c0, const conv_scratch_layout* s,
                                 int64_t ncp, int64_t t0, int ROWS, int64_t v0, int64_t v1, dtype_t dt) {
  const int64_t yst = p->y_st * 2;
  char* y = (char*)p->y + (b * p->y_sb + t0 * p->y_st + c0) * 2;
  __m512i idx[2 * CONV_CL_ROWS_MAX];
  conv_cl_table_line(p, b, c0, s, ncp, t0, ROWS, v0, idx, false, NULL, dt);
  for (int64_t v = v0 + 32; v < v1; v += 32)
    conv_cl_table_line(p, b, c0, s, ncp, t0, ROWS, v, idx, true, y + (v - 32) * 2, dt);
  for (int i = 0; i < ROWS; ++i)
    for (int k = 0; k < 2; ++k)
      _mm256_storeu_si256((__m256i*)(y + (v1 - 32) * 2 + i * yst + 32 * k), conv_table_lookup(idx[2 * i + k], dt));
}

/* conv_simd_body.h's hook: a full tile, or a half one */
AI void conv_cl_k4_table_lines(const conv_params* p, int64_t b, int64_t c0, const conv_scratch_layout* s, int64_t ncp,
                               int64_t t0, int64_t n, int64_t v0, int64_t v1, dtype_t dt) {
  enum { ROWS = CONV_CL_ROWS(LINATTN_DTYPE_F16, CONV_ACT_SILU_TABLE) };
  if (n == ROWS) conv_cl_table_lines_rows(p, b, c0, s, ncp, t0, ROWS, v0, v1, dt);
  else conv_cl_table_lines_rows(p, b, c0, s, ncp, t0, ROWS / 2, v0, v1, dt);
}

/* ------------------------------------------------------------------ decode (L = 1) */

/* De-interleaving 16 channels' values that sit `stride` floats apart (weights (C, K), state
 * (C, S)): lane c of the result is flat[c * stride + off] of registers R[0..] holding the
 * group's contiguous values. One vpermt2ps per register pair that holds a wanted lane. */
typedef struct deint_plan {
  __m512i idx;
  int p0, p1;            /* first and last register pair holding a wanted lane */
  __mmask16 lanes[32];   /* lanes[p - p0]: lanes taken from pair p (stride <= 64) */
} deint_plan;

static void deint_make(deint_plan* d, int64_t stride, int64_t off) {
  int32_t idx[16];
  memset(d->lanes, 0, sizeof d->lanes);
  d->p0 = (int)(off >> 5);
  d->p1 = (int)((15 * stride + off) >> 5);
  for (int c = 0; c < 16; ++c) {
    const int64_t f = c * stride + off;
    idx[c] = (int32_t)(f & 31);
    d->lanes[(f >> 5) - d->p0] |= (__mmask16)(1u << c);
  }
  d->idx = _mm512_loadu_si512(idx);
}

AI __m512 deint_apply(const deint_plan* d, const __m512* R) {
  __m512 r = _mm512_permutex2var_ps(R[2 * d->p0], d->idx, R[2 * d->p0 + 1]);
  for (int q = d->p0 + 1; q <= d->p1; ++q)
    if (d->lanes[q - d->p0]) r = _mm512_mask_mov_ps(r, d->lanes[q - d->p0], _mm512_permutex2var_ps(R[2 * q], d->idx, R[2 * q + 1]));
  return r;
}

#define DECODE_MAX_K 16

/* Loads n (<= 16 * nregs) contiguous T values as fp32 registers R[0..], zero beyond n, plus
 * one zero register so that every pair R[2q], R[2q + 1] exists. */
AI void load_block(__m512* R, int64_t nregs, const char* src, int64_t n, dtype_t dt) {
  const size_t es = conv_esize(dt);
  for (int64_t r = 0; r < nregs; ++r) R[r] = load16_maskz(src + 16 * r * (int64_t)es, lanes16(n - 16 * r), dt);
  R[nregs] = _mm512_setzero_ps();
}

/* Decode across channels, 16 per zmm: y = f(sum_j w[j] padded[j*d]) with padded = past then x.
 * Weights (C, K) and, channels-first, the state (C, S) are de-interleaved in registers.
 * channels-first: present = the unit's state block moved left one element, x appended at
 * every channel's end. channels-last: rows shift up one, x becomes the last row, group by
 * group after the group's reads (in-place safe). Preconditions: K <= DECODE_MAX_K; channels-
 * first S <= CONV_TILE_MAX_S, packed state, x_sc = y_sc = 1. */
AI void decode_block(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const float* wsrc,
                     const conv_scratch_layout* s, dtype_t dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, S = p->S;
  const bool cl = p->channels_last, has_bias = p->bias != NULL;
  const char* x = conv_at(p->x, b * p->x_sb + c0 * p->x_sc, es);
  char* y = (char*)p->y + (b * p->y_sb + c0 * p->y_sc) * (int64_t)es;
  const char* past = p->past ? conv_at(p->past, b * p->s_sb + c0 * p->s_sc, es) : NULL;
  deint_plan wplan[DECODE_MAX_K], splan[DECODE_MAX_K];
  for (int64_t j = 0; j < K; ++j) deint_make(&wplan[j], K, j);
  if (!cl)
    for (int64_t j = 0; j + 1 < K; ++j) deint_make(&splan[j], S, j * d);
  __m512 W[DECODE_MAX_K + 2], P[CONV_TILE_MAX_S + 2];
  for (int64_t v = 0; v < nc; v += 16) {
    const int64_t nv = nc - v < 16 ? nc - v : 16;
    const __mmask16 m = lanes16(nv);
    load_block(W, K, (const char*)(wsrc + v * K), nv * K, LINATTN_DTYPE_F32);
    if (!cl && past) load_block(P, S, past + v * S * (int64_t)es, nv * S, dt);
    __m512 acc = _mm512_setzero_ps();
    for (int64_t j = 0; j + 1 < K; ++j) {
      __m512 tap;
      if (cl)
        tap = past ? load16_maskz(past + (j * d * p->s_st + v) * (int64_t)es, m, dt) : _mm512_setzero_ps();
      else
        tap = past ? deint_apply(&splan[j], P) : _mm512_setzero_ps();
      acc = _mm512_fmadd_ps(deint_apply(&wplan[j], W), tap, acc);
    }
    acc = _mm512_fmadd_ps(deint_apply(&wplan[K - 1], W), load16_maskz(x + v * (int64_t)es, m, dt), acc);
    if (has_bias) acc = conv_add_bias(acc, _mm512_loadu_ps(s->bias + v), dt);
    conv_finish_store(y + v * (int64_t)es, nv, acc, dt, act, false);
    if (cl && p->present && S > 0) { /* raw copies: rows s <- s + 1, last row <- x */
      char* pr = (char*)p->present + (b * p->s_sb + c0 + v) * (int64_t)es;
      const int64_t rs = p->s_st * (int64_t)es;
      for (int64_t q = 0; q < S; ++q) {
        const char* src = q + 1 < S ? (past ? past + (q + 1) * rs + v * (int64_t)es : NULL) : x + v * (int64_t)es;
        if (es == 4) {
          __m512 t = src ? _mm512_maskz_loadu_ps(m, src) : _mm512_setzero_ps();
          _mm512_mask_storeu_ps(pr + q * rs, m, t);
        } else {
          __m256i t = src ? _mm256_maskz_loadu_epi16(m, src) : _mm256_setzero_si256();
          _mm256_mask_storeu_epi16(pr + q * rs, m, t);
        }
      }
    }
  }
  if (cl || !p->present || S == 0) return;
  /* channels-first present[c][s] = padded[c][1 + s]: the block moved left by one element, then
   * x written at each channel's last position */
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

/* Full-width loads/stores unless n < 16 (k-masked stores cost more on some cores). */
AI __m512 loadf_n(const void* p, int64_t n) {
  return n >= 16 ? _mm512_loadu_ps(p) : _mm512_maskz_loadu_ps(lanes16(n), p);
}
AI void storef_n(void* p, __m512 v, int64_t n) {
  if (n >= 16) _mm512_storeu_ps(p, v); else _mm512_mask_storeu_ps(p, lanes16(n), v);
}

/* Groups whose SiLU and store decode_k4 defers, so that their long dependency chains overlap
 * (docs/tuning.md, DECODE_DEFER). */
#define DECODE_DEFER 16

/* Decode for K = 4, dilation 1 (S = 3), the common case, with every table a constant:
 * weights: 16 channels x 4 taps = W0..W3, tap j of channel c at flat 4c + j;
 * state (channels-first): 16 x 3 = P0..P2, entry s of channel c at flat 3c + s;
 * present (channels-first): new flat f = old flat f + 1, except f = 3c + 2 which takes x[c].
 * 16-bit states are moved as raw 16-bit lanes, so present is a bit-exact copy.
 * The steps below are one loop body split by what they move; all inline into decode_k4_range. */

/* Step 1: the caller's (C, 4) weights of a 16-channel group, converted in registers (no scratch,
 * no allocation) and transposed to tap-major in two rounds of two-source permutes: A/B hold
 * channels 0-7, Cw/D channels 8-15, (tap 0 | tap 1) and (tap 2 | tap 3). */
AI void decode_k4_weights(const char* wv, int64_t nv, dtype_t dt, __m512 wj[4]) {
  const size_t es = conv_esize(dt);
  const __m512i tp_even = _mm512_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28, 1, 5, 9, 13, 17, 21, 25, 29);
  const __m512i tp_odd = _mm512_add_epi32(tp_even, _mm512_set1_epi32(2));
  const __m512i tp_lo = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
  const __m512i tp_hi = _mm512_add_epi32(tp_lo, _mm512_set1_epi32(8));
  const __m512 W0 = load16_m(wv, lanes16(4 * nv), dt), W1 = load16_m(wv + 16 * (int64_t)es, lanes16(4 * nv - 16), dt);
  const __m512 W2 = load16_m(wv + 32 * (int64_t)es, lanes16(4 * nv - 32), dt);
  const __m512 W3 = load16_m(wv + 48 * (int64_t)es, lanes16(4 * nv - 48), dt);
  const __m512 A = _mm512_permutex2var_ps(W0, tp_even, W1), B = _mm512_permutex2var_ps(W0, tp_odd, W1);
  const __m512 Cw = _mm512_permutex2var_ps(W2, tp_even, W3), D = _mm512_permutex2var_ps(W2, tp_odd, W3);
  wj[0] = _mm512_permutex2var_ps(A, tp_lo, Cw);
  wj[1] = _mm512_permutex2var_ps(A, tp_hi, Cw);
  wj[2] = _mm512_permutex2var_ps(B, tp_lo, D);
  wj[3] = _mm512_permutex2var_ps(B, tp_hi, D);
}

/* The 16-bit lane masks of a channels-first state group's 3 * nv entries, in two 32-lane halves. */
AI __mmask32 decode_k4_state_mask16(int64_t nv, int half) {
  if (half == 0) return 3 * nv >= 32 ? 0xffffffffu : (__mmask32)((1u << (3 * nv)) - 1u);
  return 3 * nv <= 32 ? 0u : (__mmask32)((1u << (3 * nv - 32)) - 1u);
}

/* The first n 16-bit lanes from p, zero beyond (plain loads when all are wanted: a zeroing
 * masked load costs an extra vector uop). */
AI __m512i load32x16_n(const char* p, int64_t n) {
  if (n >= 32) return _mm512_loadu_si512(p);
  return _mm512_maskz_loadu_epi16(n <= 0 ? 0u : (__mmask32)((1u << n) - 1u), p);
}
AI __m256i load16x16_n(const char* p, int64_t n) {
  return n >= 16 ? _mm256_loadu_si256((const __m256i*)p) : _mm256_maskz_loadu_epi16(lanes16(n), p);
}

/* AVX512-VBMI byte permutes for the 16-bit state moves (conv_params.decode_vbmi: the CPU has
 * them and the tuning asks for them). Inline assembly, because these helpers are inlined into
 * functions compiled for the AVX-512 family's baseline (F/BW/VL/DQ), where the VBMI intrinsics
 * are unavailable; they run only where decode_vbmi is set. A word permute's table becomes a byte
 * table (word index w -> bytes 2w, 2w + 1) and a word mask a byte mask (each bit twice, written
 * out as constants). */
AI __m512i vbmi_bytes_of_words(__m512i w) {
  return _mm512_add_epi16(_mm512_mullo_epi16(w, _mm512_set1_epi16(514)), _mm512_set1_epi16(256));
}
AI __m256i vbmi_bytes_of_words256(__m256i w) {
  return _mm256_add_epi16(_mm256_mullo_epi16(w, _mm256_set1_epi16(514)), _mm256_set1_epi16(256));
}
/* vpermt2b: byte i of the result is byte idx[i] & 127 of (a, b) */
AI __m512i vbmi_permutex2var(__m512i a, __m512i idx, __m512i b) {
  __asm__("vpermt2b %2, %1, %0" : "+v"(a) : "v"(idx), "v"(b));
  return a;
}
AI __m512i vbmi_maskz_permutex2var(__mmask64 k, __m512i a, __m512i idx, __m512i b) {
  __asm__("vpermt2b %2, %1, %0%{%3%}%{z%}" : "+v"(a) : "v"(idx), "v"(b), "Yk"(k));
  return a;
}
/* vpermb merge-masked: lanes in k take table[idx], the others keep src */
AI __m512i vbmi_mask_permutexvar(__m512i src, __mmask64 k, __m512i idx, __m512i table) {
  __asm__("vpermb %2, %1, %0%{%3%}" : "+v"(src) : "v"(idx), "v"(table), "Yk"(k));
  return src;
}
AI __m256i vbmi_mask_permutexvar256(__m256i src, __mmask32 k, __m256i idx, __m256i table) {
  __asm__("vpermb %2, %1, %0%{%3%}" : "+v"(src) : "v"(idx), "v"(table), "Yk"(k));
  return src;
}

/* Step 2, channels-first: the three taps of the group's 3 * nv state entries (entry s of channel
 * c at flat 3c + s; a missing past gives zeros). fp32: registers P0..P2 (flat 16r + e), two
 * vpermt2ps per tap. 16-bit: the raw lanes Q0 (flats 0-31) and Q1 (32-47) de-interleaved
 * before widening, two word permutes in all (the cross-lane work is what this decode pays over
 * the channels-last one): bf16 then widens by a shift or a mask within each 32-bit lane, f16
 * through vcvtph2ps. */
AI void decode_k4_state_cf(const char* sv, const char* xv, int64_t nv, dtype_t dt, bool vbmi, __m512 P[3],
                           __m512 tap[3]) {
  tap[0] = tap[1] = tap[2] = _mm512_setzero_ps();
  if (!sv) return;
  if (conv_esize(dt) == 4) {
    const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    const __m512i three = _mm512_add_epi32(lane, _mm512_add_epi32(lane, lane));
    P[0] = loadf_n(sv, 3 * nv);
    P[1] = loadf_n(sv + 64, 3 * nv - 16);
    P[2] = loadf_n(sv + 128, 3 * nv - 32);
    for (int q = 0; q < 3; ++q) { /* lanes with 3c + q >= 32 come from P2, merged into the P0/P1 permute */
      const __m512i idx = _mm512_add_epi32(three, _mm512_set1_epi32(q));
      const __mmask16 hi = q == 2 ? 0xfc00 : 0xf800;
      tap[q] = _mm512_mask_permutex2var_ps(_mm512_permutex2var_ps(P[0], idx, P[1]), hi,
                                           _mm512_or_si512(idx, _mm512_set1_epi32(16)), P[2]);
    }
    return;
  }
  const __m512i Q0 = load32x16_n(sv, 3 * nv);
  const __m512i Q1 = _mm512_castsi256_si512(load16x16_n(sv + 64, 3 * nv - 32)); /* upper half never indexed */
  if (dt == LINATTN_DTYPE_BF16) {
    /* 32-bit lane c = (flat 3c, flat 3c + 1) for taps 0 and 1, (0, flat 3c + 2) for tap 2: a
     * bf16 in a lane's high half is its fp32 value */
    const __m512i pair01 = _mm512_set_epi16(46, 45, 43, 42, 40, 39, 37, 36, 34, 33, 31, 30, 28, 27, 25, 24, 22, 21, 19,
                                            18, 16, 15, 13, 12, 10, 9, 7, 6, 4, 3, 1, 0);
    const __m512i pair2 = _mm512_set_epi16(47, 0, 44, 0, 41, 0, 38, 0, 35, 0, 32, 0, 29, 0, 26, 0, 23, 0, 20, 0, 17, 0,
                                           14, 0, 11, 0, 8, 0, 5, 0, 2, 0);
    const __m512i G = vbmi ? vbmi_permutex2var(Q0, vbmi_bytes_of_words(pair01), Q1)
                           : _mm512_permutex2var_epi16(Q0, pair01, Q1);
    tap[0] = _mm512_castsi512_ps(_mm512_slli_epi32(G, 16));
    tap[1] = _mm512_castsi512_ps(_mm512_and_si512(G, _mm512_set1_epi32((int)0xffff0000u)));
    const __m512i H = vbmi ? vbmi_maskz_permutex2var(0xccccccccccccccccull, Q0, vbmi_bytes_of_words(pair2), Q1)
                           : _mm512_maskz_permutex2var_epi16(0xaaaaaaaau, Q0, pair2, Q1);
    tap[2] = _mm512_castsi512_ps(H);
  } else {
    /* taps 0 | 1 in one register's 256-bit halves, tap 2 in another's low half */
    const __m512i idx01 = _mm512_set_epi16(46, 43, 40, 37, 34, 31, 28, 25, 22, 19, 16, 13, 10, 7, 4, 1, 45, 42, 39, 36,
                                           33, 30, 27, 24, 21, 18, 15, 12, 9, 6, 3, 0);
    const __m512i idx2 = _mm512_set_epi16(0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 47, 44, 41, 38, 35, 32, 29,
                                          26, 23, 20, 17, 14, 11, 8, 5, 2);
    /* VBMI: tap 2 and the present's flats 32-47 (state flat f + 1, x in every third) from one
     * byte permute, with x in the upper half of Q1 (in P[0] for decode_k4_present_cf16) */
    const __m512i idx2p = _mm512_set_epi16(63, 47, 46, 62, 44, 43, 61, 41, 40, 60, 38, 37, 59, 35, 34, 58, 47, 44, 41, 38,
                                           35, 32, 29, 26, 23, 20, 17, 14, 11, 8, 5, 2);
    const __m512i T01 = vbmi ? vbmi_permutex2var(Q0, vbmi_bytes_of_words(idx01), Q1)
                             : _mm512_permutex2var_epi16(Q0, idx01, Q1);
    const __m512i Q1X = _mm512_inserti64x4(Q1, load16x16_n(xv, nv), 1);
    const __m512i T2 = vbmi ? vbmi_permutex2var(Q0, vbmi_bytes_of_words(idx2p), Q1X)
                            : _mm512_permutex2var_epi16(Q0, idx2, Q1);
    if (vbmi) P[0] = _mm512_castsi512_ps(T2);
    tap[0] = _mm512_cvtph_ps(_mm512_castsi512_si256(T01));
    if (vbmi) { /* tap 1 converted from a stack copy: a store instead of a shuffle-port extract */
      __m512i spill;
      _mm512_store_si512(&spill, T01);
      __asm__("vcvtph2ps %1, %0" : "=v"(tap[1]) : "m"(*((const __m256i*)&spill + 1)));
    } else {
      tap[1] = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(T01, 1));
    }
    tap[2] = _mm512_cvtph_ps(_mm512_castsi512_si256(T2));
  }
}

/* Step 3, channels-last: present rows 0 <- 1, 1 <- 2, 2 <- x, moved raw. */
AI void decode_k4_present_cl(char* pv, const char* sv, const char* xv, int64_t rs, int64_t nv, __mmask16 m, size_t es) {
  if (es == 4) { /* full-width unless the group is partial (see loadf_n) */
    const __m512 r1 = sv ? loadf_n(sv + rs, nv) : _mm512_setzero_ps();
    const __m512 r2 = sv ? loadf_n(sv + 2 * rs, nv) : _mm512_setzero_ps();
    const __m512 rx = loadf_n(xv, nv);
    storef_n(pv, r1, nv);
    storef_n(pv + rs, r2, nv);
    storef_n(pv + 2 * rs, rx, nv);
  } else if (nv == 16) {
    const __m256i r1 = sv ? _mm256_loadu_si256((const __m256i*)(sv + rs)) : _mm256_setzero_si256();
    const __m256i r2 = sv ? _mm256_loadu_si256((const __m256i*)(sv + 2 * rs)) : _mm256_setzero_si256();
    const __m256i rx = _mm256_loadu_si256((const __m256i*)xv);
    _mm256_storeu_si256((__m256i*)pv, r1);
    _mm256_storeu_si256((__m256i*)(pv + rs), r2);
    _mm256_storeu_si256((__m256i*)(pv + 2 * rs), rx);
  } else {
    const __m256i r1 = sv ? _mm256_maskz_loadu_epi16(m, sv + rs) : _mm256_setzero_si256();
    const __m256i r2 = sv ? _mm256_maskz_loadu_epi16(m, sv + 2 * rs) : _mm256_setzero_si256();
    const __m256i rx = _mm256_maskz_loadu_epi16(m, xv);
    _mm256_mask_storeu_epi16(pv, m, r1);
    _mm256_mask_storeu_epi16(pv + rs, m, r2);
    _mm256_mask_storeu_epi16(pv + 2 * rs, m, rx);
  }
}

/* Step 3, channels-first: present flat f = past flat f + 1 for f % 3 != 2, x[c] at f = 3c + 2.
 * fp32: the state registers P moved one lane (one shift per register pair; loading the state
 * again one element on, as 16-bit does, measured slower), x put into its lanes by one
 * single-source permute per register. */
AI void decode_k4_present_cf32(char* pv, const char* xv, const __m512 P[3], int64_t nv) {
  const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
  const __m512i inc = _mm512_add_epi32(lane, _mm512_set1_epi32(1));
  const __m512i xsel0 = _mm512_setr_epi32(0, 0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3, 4, 4, 4);
  const __m512i xsel1 = _mm512_setr_epi32(5, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8, 8, 9, 9, 9, 10);
  const __m512i xsel2 = _mm512_setr_epi32(10, 10, 11, 11, 11, 12, 12, 12, 13, 13, 13, 14, 14, 14, 15, 15);
  const __mmask16 xm0 = 0x4924, xm1 = 0x2492, xm2 = 0x9249; /* flat % 3 == 2 */
  const __m512 X = loadf_n(xv, nv);
  const __m512 Z = _mm512_setzero_ps();
  const __m512 N0 = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(P[0], inc, P[1]), xm0, xsel0, X);
  const __m512 N1 = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(P[1], inc, P[2]), xm1, xsel1, X);
  const __m512 N2 = _mm512_mask_permutexvar_ps(_mm512_permutex2var_ps(P[2], inc, Z), xm2, xsel2, X);
  storef_n(pv, N0, 3 * nv);
  storef_n(pv + 64, N1, 3 * nv - 16);
  storef_n(pv + 128, N2, 3 * nv - 32);
}

/* 16-bit: the moved part loaded once more, one element on (3 * nv - 1 entries; with `more`, the
 * unit's next group follows and its first element is read too, so whole groups need no masked
 * load; in place these loads never meet an earlier group's stores), x put in by one
 * single-source permute per register (flats 0-31, then 32-47); no two-source word permutes. */
AI void decode_k4_present_cf16(char* pv, const char* sv, const char* xv, int64_t nv, bool more, bool vbmi, bool f16,
                               __m512 t2p) {
  const __m512i xsel0 = _mm512_set_epi16(10, 10, 9, 9, 9, 8, 8, 8, 7, 7, 7, 6, 6, 6, 5, 5, 5, 4, 4, 4, 3, 3, 3, 2, 2, 2,
                                         1, 1, 1, 0, 0, 0);
  const __m256i xsel1 = _mm256_set_epi16(15, 15, 15, 14, 14, 14, 13, 13, 13, 12, 12, 12, 11, 11, 11, 10);
  const __mmask32 xm0 = 0x24924924u;
  const __mmask16 xm1 = 0x9249;
  const int64_t n = 3 * nv - 1;
  const __m256i X = load16x16_n(xv, nv);
  const __m512i M0 = sv ? load32x16_n(sv + 2, n) : _mm512_setzero_si512();
  const __m256i M1 = !sv         ? _mm256_setzero_si256()
                     : more      ? _mm256_loadu_si256((const __m256i*)(sv + 66))
                                 : _mm256_maskz_loadu_epi16(lanes16(n - 32), sv + 66);
  const __m512i X0 = _mm512_zextsi256_si512(X);
  const __m512i N0 = vbmi ? vbmi_mask_permutexvar(M0, 0x0c30c30c30c30c30ull, vbmi_bytes_of_words(xsel0), X0)
                          : _mm512_mask_permutexvar_epi16(M0, xm0, xsel0, X0);
  _mm512_mask_storeu_epi16(pv, decode_k4_state_mask16(nv, 0), N0);
  if (vbmi && f16 && sv) { /* flats 32-47 from decode_k4_state_cf's permute, its upper half */
    _mm512_mask_storeu_epi16(pv + 32, decode_k4_state_mask16(nv, 1) << 16, _mm512_castps_si512(t2p));
    return;
  }
  /* 256-bit store: a 512-bit one would span the next group's state, which (in place) is
   * read next and would wait for this store to complete */
  _mm256_mask_storeu_epi16(pv + 64, (__mmask16)decode_k4_state_mask16(nv, 1),
                           vbmi ? vbmi_mask_permutexvar256(M1, 0xc30c30c3u, vbmi_bytes_of_words256(xsel1), X)
                                : _mm256_mask_permutexvar_epi16(M1, xm1, xsel1, X));
}

AI void decode_k4_range(const conv_params* p, int64_t b, int64_t c0, int64_t nc, dtype_t dt, linattn_activation act,
                        bool cl, bool vbmi, int64_t vbeg, int64_t vend, bool full, __m512* pend, int64_t* pend_v,
                        int* npend_io) {
  const size_t es = conv_esize(dt);
  const bool has_bias = p->bias != NULL;
  const char* x = conv_at(p->x, b * p->x_sb + c0 * p->x_sc, es);
  char* y = (char*)p->y + (b * p->y_sb + c0 * p->y_sc) * (int64_t)es;
  const char* past = p->past ? conv_at(p->past, b * p->s_sb + c0 * p->s_sc, es) : NULL;
  char* pres = p->present ? (char*)p->present + (b * p->s_sb + c0 * p->s_sc) * (int64_t)es : NULL;
  const char* wbase = conv_at(p->w, c0 * 4, es);
  const char* bbase = has_bias ? conv_at(p->bias, c0, es) : NULL;
  int npend = *npend_io;
  for (int64_t v = vbeg; v < vend; v += 16) {
    const int64_t nv = full ? 16 : nc - v < 16 ? nc - v : 16; /* full: every mask a constant */
    const __mmask16 m = lanes16(nv);
    const char* xv = x + v * (int64_t)es;
    __m512 wj[4], tap[3];
    __m512 P[3] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()}; /* fp32 state as loaded */
    decode_k4_weights(wbase + 4 * v * (int64_t)es, nv, dt, wj);
    const char* sv = past ? past + (cl ? v : 3 * v) * (int64_t)es : NULL;
    if (cl) {
      for (int q = 0; q < 3; ++q) tap[q] = sv ? load16_m(sv + q * p->s_st * (int64_t)es, m, dt) : _mm512_setzero_ps();
    } else {
      decode_k4_state_cf(sv, xv, nv, dt, vbmi, P, tap);
    }
    __m512 acc = _mm512_setzero_ps();
    for (int j = 0; j < 4; ++j) acc = _mm512_fmadd_ps(wj[j], j < 3 ? tap[j] : load16_m(xv, m, dt), acc);
    if (has_bias) acc = conv_add_bias(acc, load16_maskz(bbase + v * (int64_t)es, m, dt), dt);
    /* the rounding, SiLU and store wait until DECODE_DEFER groups are summed: their long
     * dependency chains then overlap instead of stalling each group (same bits) */
    pend[npend] = acc;
    pend_v[npend++] = v;
    if (npend == DECODE_DEFER) {
      for (int g = 0; g < npend; ++g)
        conv_finish_store(y + pend_v[g] * (int64_t)es, full ? 16 : nc - pend_v[g], pend[g], dt, act, false);
      npend = 0;
    }
    if (!pres) continue;
    if (cl)
      decode_k4_present_cl(pres + v * (int64_t)es, sv, xv, p->s_st * (int64_t)es, nv, m, es);
    else if (es == 4)
      decode_k4_present_cf32(pres + 3 * v * 4, xv, P, nv);
    else
      decode_k4_present_cf16(pres + 3 * v * 2, sv, xv, nv, v + 16 < nc, vbmi, dt == LINATTN_DTYPE_F16, P[0]);
  }
  *npend_io = npend;
}

/* Whole 16-channel groups with constant masks (plain loads and stores), then the partial one. */
AI void decode_k4_layout(const conv_params* p, int64_t b, int64_t c0, int64_t nc, dtype_t dt, linattn_activation act,
                         bool cl, bool vbmi) {
  __m512 pend[DECODE_DEFER];
  int64_t pend_v[DECODE_DEFER];
  int npend = 0;
  const int64_t nfull = nc & ~(int64_t)15;
  decode_k4_range(p, b, c0, nc, dt, act, cl, vbmi, 0, nfull, true, pend, pend_v, &npend);
  if (nfull < nc) decode_k4_range(p, b, c0, nc, dt, act, cl, vbmi, nfull, nc, false, pend, pend_v, &npend);
  const size_t es = conv_esize(dt);
  char* y = (char*)p->y + (b * p->y_sb + c0 * p->y_sc) * (int64_t)es;
  for (int g = 0; g < npend; ++g) conv_finish_store(y + pend_v[g] * (int64_t)es, nc - pend_v[g], pend[g], dt, act, false);
}

/* Each layout's loop compiled alone (its branches and register use its own). */
AI void decode_k4(const conv_params* p, int64_t b, int64_t c0, int64_t nc, dtype_t dt, linattn_activation act) {
  if (p->channels_last)
    decode_k4_layout(p, b, c0, nc, dt, act, true, false);
  else if (conv_esize(dt) == 2 && p->decode_vbmi)
    decode_k4_layout(p, b, c0, nc, dt, act, false, true);
  else
    decode_k4_layout(p, b, c0, nc, dt, act, false, false);
}

/* ------------------------------------------------------------------ several sequences */

/* One problem of conv_run_seqs: its pointers at the unit's channel 0. */
typedef struct decode_seq {
  const char* x;
  char* y;
  const char* past;
  char* pres;
} decode_seq;

/* Channels per span of decode_k4_seqs_range: its weight groups prepared into a stack buffer (5 KiB
 * of fp32, in L1), then each sequence runs the whole span, so that each one's rows are read in
 * runs of this length (interleaving the sequences group by group left too many streams for the
 * hardware prefetchers once the states outgrow L2). */
#define DECODE_SEQS_SPAN 256

/* decode_k4_range over n sequences: each 16-channel group's weights (four loads and six
 * two-source permutes, the conversions of 16-bit weights too) and bias are prepared once for all
 * of them, then each sequence's group runs exactly as decode_k4_range runs it (same bits); the
 * finishes are deferred by DECODE_DEFER across sequences and groups alike. */
AI void decode_k4_seqs_range(const decode_seq* q, int64_t n, const char* wbase, const char* bbase, int64_t s_st,
                             int64_t nc, dtype_t dt, linattn_activation act, bool cl, bool vbmi, int64_t vbeg,
                             int64_t vend, bool full, __m512* pend, char** pend_y, int64_t* pend_n, int* npend_io) {
  const size_t es = conv_esize(dt);
  int npend = *npend_io;
  __m512 wbuf[DECODE_SEQS_SPAN / 16][5]; /* taps 0-3, bias */
  for (int64_t v0 = vbeg; v0 < vend; v0 += DECODE_SEQS_SPAN) {
    const int64_t v1 = vend - v0 < DECODE_SEQS_SPAN ? vend : v0 + DECODE_SEQS_SPAN;
    for (int64_t v = v0; v < v1; v += 16) {
      const int64_t nv = full ? 16 : nc - v < 16 ? nc - v : 16;
      __m512* wg = wbuf[(v - v0) / 16];
      decode_k4_weights(wbase + 4 * v * (int64_t)es, nv, dt, wg);
      wg[4] = bbase ? load16_maskz(bbase + v * (int64_t)es, lanes16(nv), dt) : _mm512_setzero_ps();
    }
    for (int64_t i = 0; i < n; ++i)
      for (int64_t v = v0; v < v1; v += 16) {
        const int64_t nv = full ? 16 : nc - v < 16 ? nc - v : 16;
        const __mmask16 m = lanes16(nv);
        const __m512* wj = wbuf[(v - v0) / 16];
        const char* xv = q[i].x + v * (int64_t)es;
        const char* sv = q[i].past ? q[i].past + (cl ? v : 3 * v) * (int64_t)es : NULL;
        __m512 tap[3];
        __m512 P[3] = {_mm512_setzero_ps(), _mm512_setzero_ps(), _mm512_setzero_ps()};
        if (cl) {
          for (int r = 0; r < 3; ++r) tap[r] = sv ? load16_m(sv + r * s_st * (int64_t)es, m, dt) : _mm512_setzero_ps();
        } else {
          decode_k4_state_cf(sv, xv, nv, dt, vbmi, P, tap);
        }
        __m512 acc = _mm512_setzero_ps();
        for (int j = 0; j < 4; ++j) acc = _mm512_fmadd_ps(wj[j], j < 3 ? tap[j] : load16_m(xv, m, dt), acc);
        if (bbase) acc = conv_add_bias(acc, wj[4], dt);
        pend[npend] = acc;
        pend_y[npend] = q[i].y + v * (int64_t)es;
        pend_n[npend++] = nv;
        if (npend == DECODE_DEFER) { /* in the whole groups' range every pending group is whole */
          for (int g = 0; g < npend; ++g) conv_finish_store(pend_y[g], full ? 16 : pend_n[g], pend[g], dt, act, false);
          npend = 0;
        }
        char* pres = q[i].pres;
        if (!pres) continue;
        if (cl)
          decode_k4_present_cl(pres + v * (int64_t)es, sv, xv, s_st * (int64_t)es, nv, m, es);
        else if (es == 4)
          decode_k4_present_cf32(pres + 3 * v * 4, xv, P, nv);
        else
          decode_k4_present_cf16(pres + 3 * v * 2, sv, xv, nv, v + 16 < nc, vbmi, dt == LINATTN_DTYPE_F16, P[0]);
      }
  }
  *npend_io = npend;
}

/* Whole groups with constant masks, then the partial one. */
AI void decode_k4_seqs_layout(const conv_params* p, const decode_seq* q, int64_t n, int64_t nc, dtype_t dt,
                              linattn_activation act, bool cl, bool vbmi) {
  __m512 pend[DECODE_DEFER];
  char* pend_y[DECODE_DEFER];
  int64_t pend_n[DECODE_DEFER];
  int npend = 0;
  const int64_t nfull = nc & ~(int64_t)15;
  const char* bbase = p->bias ? (const char*)p->bias : NULL;
  decode_k4_seqs_range(q, n, (const char*)p->w, bbase, p->s_st, nc, dt, act, cl, vbmi, 0, nfull, true, pend, pend_y,
                       pend_n, &npend);
  if (nfull < nc)
    decode_k4_seqs_range(q, n, (const char*)p->w, bbase, p->s_st, nc, dt, act, cl, vbmi, nfull, nc, false, pend,
                         pend_y, pend_n, &npend);
  for (int g = 0; g < npend; ++g) conv_finish_store(pend_y[g], pend_n[g], pend[g], dt, act, false);
}

#define DECODE_SEQS_TYPED(DT, ACT)                                                                              \
  static __attribute__((noinline)) void decode_k4_seqs_##DT##_##ACT(const conv_params* p, const decode_seq* q, \
                                                                    int64_t n, int64_t nc) {                  \
    if (p->channels_last)                                                                                     \
      decode_k4_seqs_layout(p, q, n, nc, DT, ACT, true, false);                                               \
    else if (conv_esize(DT) == 2 && p->decode_vbmi)                                                           \
      decode_k4_seqs_layout(p, q, n, nc, DT, ACT, false, true);                                               \
    else                                                                                                      \
      decode_k4_seqs_layout(p, q, n, nc, DT, ACT, false, false);                                              \
  }
DECODE_SEQS_TYPED(LINATTN_DTYPE_F32, LINATTN_ACTIVATION_NONE)
DECODE_SEQS_TYPED(LINATTN_DTYPE_F32, LINATTN_ACTIVATION_SILU)
DECODE_SEQS_TYPED(LINATTN_DTYPE_F16, LINATTN_ACTIVATION_NONE)
DECODE_SEQS_TYPED(LINATTN_DTYPE_F16, LINATTN_ACTIVATION_SILU)
DECODE_SEQS_TYPED(LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_NONE)
DECODE_SEQS_TYPED(LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_SILU)
DECODE_SEQS_TYPED(LINATTN_DTYPE_F16, CONV_ACT_SILU_TABLE)
DECODE_SEQS_TYPED(LINATTN_DTYPE_BF16, CONV_ACT_SILU_TABLE)
#undef DECODE_SEQS_TYPED
#define DECODE_SEQS_RUN(p, q, n, nc, unused, DT, ACT) decode_k4_seqs_##DT##_##ACT(p, q, n, nc)

/* Sequences per decode_k4_seqs call (the pointer table is on the stack). */
#define DECODE_SEQS_MAX 32

/* tap-major [K][ncp], 16 channels at a time (de-interleaved in registers for K <= DECODE_MAX_K) */
AI void conv_weights_tap_major(const conv_params* p, const float* wsrc, int64_t nc, float* wt) {
  const int64_t K = p->K, ncp = conv_ncp(nc);
  if (K > DECODE_MAX_K) {
    for (int64_t j = 0; j < K; ++j)
      for (int64_t c = 0; c < ncp; ++c) wt[j * ncp + c] = c < nc ? wsrc[c * K + j] : 0.0f;
    return;
  }
  deint_plan plan[DECODE_MAX_K];
  __m512 W[DECODE_MAX_K + 2];
  for (int64_t j = 0; j < K; ++j) deint_make(&plan[j], K, j);
  for (int64_t v = 0; v < ncp; v += 16) {
    load_block(W, K, (const char*)(wsrc + v * K), (nc - v < 16 ? nc - v : 16) * K, LINATTN_DTYPE_F32);
    for (int64_t j = 0; j < K; ++j) _mm512_storeu_ps(wt + j * ncp + v, deint_apply(&plan[j], W));
  }
}

/* ------------------------------------------------------------------ entry */

/* Decode across channels (L = 1): channels-last, or channels-first with packed rows and state. */
static inline bool decode_applies(const conv_params* p) {
  return p->L == 1 && p->K <= DECODE_MAX_K &&
         (p->channels_last || (p->x_sc == 1 && p->y_sc == 1 && p->S <= CONV_TILE_MAX_S && p->s_st == 1 && p->s_sc == p->S));
}
static inline bool decode_k4_applies(const conv_params* p) { return decode_applies(p) && p->K == 4 && p->dilation == 1; }

/* decode_k4 reads weights and bias in place: it needs no scratch, so a decode call allocates nothing */
AI bool conv_decode_in_place(const conv_params* p) { return decode_k4_applies(p); }

AI bool conv_decode(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s, dtype_t dt,
                    linattn_activation act) {
  if (decode_k4_applies(p)) {
    decode_k4(p, b, c0, nc, dt, act);
    return true;
  }
  if (!decode_applies(p)) return false;
  conv_bias_f32(p, c0, nc, s->bias);
  decode_block(p, b, c0, nc, conv_weights_f32(p, c0, nc, s->wc), s, dt, act);
  return true;
}

/* conv_kernel.run_seqs: the K = 4 decodes through decode_k4_seqs when every problem is one and
 * they share what that reads once (weights, bias, dtype, activation, layout, state strides) */
static bool decode_seqs_apply(const conv_params* ps, int64_t n) {
  if (n < 2) return false;
  for (int64_t i = 0; i < n; ++i) {
    const conv_params* p = &ps[i];
    if (!decode_k4_applies(p) || p->dtype != ps[0].dtype || p->activation != ps[0].activation ||
        p->channels_last != ps[0].channels_last || p->w != ps[0].w || p->bias != ps[0].bias ||
        p->s_st != ps[0].s_st || p->decode_vbmi != ps[0].decode_vbmi)
      return false;
  }
  return true;
}

static void conv_run_seqs_avx512(const conv_params* ps, int64_t n, int64_t nc, void* scratch) {
  if (!decode_seqs_apply(ps, n)) {
    for (int64_t i = 0; i < n; ++i) conv_run_avx512(&ps[i], 0, 0, nc, scratch);
    return;
  }
  for (int64_t i0 = 0; i0 < n; i0 += DECODE_SEQS_MAX) {
    const int64_t m = n - i0 < DECODE_SEQS_MAX ? n - i0 : DECODE_SEQS_MAX;
    decode_seq q[DECODE_SEQS_MAX];
    for (int64_t i = 0; i < m; ++i) {
      const conv_params* p = &ps[i0 + i];
      q[i] = (decode_seq){(const char*)p->x, (char*)p->y, (const char*)p->past, (char*)p->present};
    }
    if (!conv_silu_table_use(ps))
      CONV_RUN_TYPED(DECODE_SEQS_RUN, ps, q, m, nc, NULL);
    else if (ps->dtype == LINATTN_DTYPE_F16)
      DECODE_SEQS_RUN(ps, q, m, nc, NULL, LINATTN_DTYPE_F16, CONV_ACT_SILU_TABLE);
    else
      DECODE_SEQS_RUN(ps, q, m, nc, NULL, LINATTN_DTYPE_BF16, CONV_ACT_SILU_TABLE);
  }
}

/* ------------------------------------------------------------------ state transpose */

/* A group is one zmm of elements: 16 fp32 or 32 16-bit channels. Loads and stores of n
 * elements (clamped to [0, lanes]) k-masked unless full. */
AI __m512i tr_load(const char* p, int64_t n, size_t es, bool full) {
  if (full) return _mm512_loadu_si512(p);
  if (n <= 0) return _mm512_setzero_si512();
  if (es == 4) return _mm512_maskz_loadu_epi32((__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u), p);
  return _mm512_maskz_loadu_epi16((__mmask32)(n >= 32 ? 0xffffffffu : (1u << n) - 1u), p);
}
AI void tr_store(char* p, int64_t n, __m512i v, size_t es, bool full) {
  if (full) _mm512_storeu_si512(p, v);
  else if (n <= 0) return;
  else if (es == 4) _mm512_mask_storeu_epi32(p, (__mmask16)(n >= 16 ? 0xffffu : (1u << n) - 1u), v);
  else _mm512_mask_storeu_epi16(p, (__mmask32)(n >= 32 ? 0xffffffffu : (1u << n) - 1u), v);
}

/* Output vector o from input pairs (2q, 2q + 1) by two-source permutes, pair q > 0 blended in
 * on the lanes it supplies. */
typedef struct tr_consts {
  __m512i idx[CONV_TR_MAX_S][CONV_TR_MAX_S / 2];
  __mmask32 from[CONV_TR_MAX_S][CONV_TR_MAX_S / 2];
} tr_consts;

AI void tr_consts_make(tr_consts* t, int64_t S, size_t es, bool deint) {
  const int lanes = es == 4 ? 16 : 32;
  conv_tr_plan pl;
  conv_tr_plan_make(&pl, S, lanes, deint);
  for (int64_t o = 0; o < S; ++o)
    for (int64_t q = 0; 2 * q < S; ++q) {
      _Alignas(64) uint32_t i32[16] = {0};
      _Alignas(64) uint16_t i16[32] = {0};
      __mmask32 m = 0;
      for (int i = 0; i < lanes; ++i) {
        if (pl.vec[o][i] / 2 != q) continue;
        const uint32_t x = (uint32_t)(pl.lane[o][i] + (pl.vec[o][i] & 1) * lanes);
        if (es == 4) i32[i] = x;
        else i16[i] = (uint16_t)x;
        m |= (__mmask32)1u << i;
      }
      t->idx[o][q] = es == 4 ? _mm512_load_si512(i32) : _mm512_load_si512(i16);
      t->from[o][q] = m;
    }
}

AI __m512i tr_perm2(__m512i a, __m512i idx, __m512i b, size_t es) {
  return es == 4 ? _mm512_permutex2var_epi32(a, idx, b) : _mm512_permutex2var_epi16(a, idx, b);
}

/* Channels [c, c + n) (n = lanes when full) of the block. */
AI void tr_group(char* restrict d, const char* restrict s, int64_t c, int64_t n, int64_t S, int64_t src_ld,
                 int64_t dst_ld, size_t es, bool deint, bool full, const tr_consts* t) {
  const int64_t lanes = es == 4 ? 16 : 32, e = (int64_t)es;
  __m512i in[CONV_TR_MAX_S];
  for (int64_t j = 0; j < S; ++j)
    in[j] = deint ? tr_load(s + (c * S + j * lanes) * e, n * S - j * lanes, es, full)
                  : tr_load(s + (j * src_ld + c) * e, n, es, full);
  for (int64_t o = 0; o < S; ++o) {
    __m512i v = tr_perm2(in[0], t->idx[o][0], S > 1 ? in[1] : in[0], es);
    for (int64_t q = 1; 2 * q < S; ++q) {
      const __m512i u = tr_perm2(in[2 * q], t->idx[o][q], 2 * q + 1 < S ? in[2 * q + 1] : in[2 * q], es);
      v = es == 4 ? _mm512_mask_blend_epi32((__mmask16)t->from[o][q], v, u) : _mm512_mask_blend_epi16(t->from[o][q], v, u);
    }
    if (deint) tr_store(d + (o * dst_ld + c) * e, n, v, es, full);
    else tr_store(d + (c * S + o * lanes) * e, n * S - o * lanes, v, es, full);
  }
}

AI void tr_block(char* restrict d, const char* restrict s, int64_t S, int64_t n, int64_t src_ld, int64_t dst_ld,
                 size_t es, bool deint) {
  tr_consts t;
  tr_consts_make(&t, S, es, deint);
  const int64_t lanes = es == 4 ? 16 : 32;
  int64_t c = 0;
  for (; c + lanes <= n; c += lanes) tr_group(d, s, c, lanes, S, src_ld, dst_ld, es, deint, true, &t);
  if (c < n) tr_group(d, s, c, n - c, S, src_ld, dst_ld, es, deint, false, &t);
}

/* tr_block with constant element size, direction and (in the usual cases, 1..4) S */
#define TR_BLOCK_S(ES, DEINT)                                                              \
  static void tr_block_##ES##_##DEINT(char* restrict d, const char* restrict s, int64_t S, int64_t n, \
                                      int64_t src_ld, int64_t dst_ld) {                   \
    switch (S) {                                                                           \
      case 1: tr_block(d, s, 1, n, src_ld, dst_ld, ES, DEINT); break;                      \
      case 2: tr_block(d, s, 2, n, src_ld, dst_ld, ES, DEINT); break;                      \
      case 3: tr_block(d, s, 3, n, src_ld, dst_ld, ES, DEINT); break;                      \
      case 4: tr_block(d, s, 4, n, src_ld, dst_ld, ES, DEINT); break;                      \
      default: tr_block(d, s, S, n, src_ld, dst_ld, ES, DEINT); break;                     \
    }                                                                                      \
  }
TR_BLOCK_S(4, 1)
TR_BLOCK_S(4, 0)
TR_BLOCK_S(2, 1)
TR_BLOCK_S(2, 0)
#undef TR_BLOCK_S

/* conv_kernel.transpose: a contiguous (n, S) block to S rows (de-interleave) or back
 * (interleave) for S <= CONV_TR_MAX_S, else the portable loop. */
static void conv_transpose_avx512(void* restrict dst, const void* restrict src, int64_t rows, int64_t cols,
                                  int64_t src_ld, int64_t dst_ld, size_t es) {
  const bool deint = cols <= CONV_TR_MAX_S && src_ld == cols;
  if (!deint && !(rows <= CONV_TR_MAX_S && dst_ld == rows)) {
    linattn_conv_transpose(dst, src, rows, cols, src_ld, dst_ld, es);
    return;
  }
  const int64_t S = deint ? cols : rows, n = deint ? rows : cols;
  if (S <= 0 || n <= 0) return;
  if (es == 4) (deint ? tr_block_4_1 : tr_block_4_0)(dst, src, S, n, src_ld, dst_ld);
  else (deint ? tr_block_2_1 : tr_block_2_0)(dst, src, S, n, src_ld, dst_ld);
}

const conv_kernel linattn_conv_avx512 = {
    .name = "avx512",
    .run = conv_run_avx512,
    .run_seqs = conv_run_seqs_avx512,
    .transpose = conv_transpose_avx512,
    .scratch_bytes = conv_scratch_avx512,
    .block_channels = 1024,
    .cl_whole_rows = true,
};
