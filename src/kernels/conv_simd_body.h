/*
 * The CausalConvWithState prefill paths written once over the vector vocabulary of
 * vec_avx2.h / vec_avx512.h (VX_LANES, vxf, vx_*); included by conv_avx2.c and conv_avx512.c
 * after they define their configuration:
 *
 *   CONV_CF_BATCH        vectors summed, then finished, per round of the K = 4 row loop
 *   CONV_CL_ROWS(dt, act) time steps per column tile of channels_last_k4 (<= CONV_CL_ROWS_MAX)
 *   CONV_CF_STREAM       1: channels-first fp32 rows of a streamed output (conv_params.stream_rows)
 *                        leave with non-temporal stores
 *   CONV_CL_LEAD_ALWAYS  1: channels-last columns always start at an output vector boundary;
 *                        0: only when the output streams
 *   CONV_CF_SHIFT        1: the ISA file defines conv_cf_k4_shifted (channels-first K = 4,
 *                        dilation 1 with each input converted once, taps shifted in registers)
 *   CONV_SPLIT_TYPED     1: the decode and the prefill of each (dtype, activation) are
 *                        separate functions; 0: all inlined into the entry point
 *   conv_cl_stream(p, dt)  channels-last fp32 outputs leave with non-temporal stores
 *   CONV_FN(name)        the ISA suffix of the entry points conv_run_<isa>, conv_scratch_<isa>
 *   CONV_SILU_TABLE      1: the ISA file defines CONV_ACT_SILU_TABLE (an activation value of
 *                        its own: SiLU of 16-bit T by table lookup), conv_silu_table_t16(acc, dt)
 *                        (T bits of the SiLU of round_T(acc)) and conv_silu_table_use(p) (the
 *                        unit runs with that activation); default 0
 * and define, after the include, the hooks declared below (conv_load_padded,
 * conv_weights_tap_major, conv_decode, conv_decode_in_place) and their conv_kernel. Decode
 * (L = 1) is ISA-specific (docs/algorithms.md, 5.1): each ISA file has its own.
 *
 * Bound by memory traffic (2K flops per element), so: one pass, each input loaded and converted
 * once where possible, bias / rounding to T / SiLU / conversion fused before the single store.
 *
 * channels-first (B, C, L): one channel row at a time, VX_LANES time steps per vector. The
 *   first vectors take their early taps from past_state (conv_load_padded), the first one ends
 *   where the output's vectors are aligned, so no store splits a line. K = 4: CONV_CF_BATCH
 *   vectors summed, then finished (their rounding / SiLU / conversion chains overlap), then
 *   two vectors per step, then one, then the partial tail. The input, one contiguous stream, is
 *   prefetched conv_params.cf_prefetch bytes ahead (past the 4 KiB pages that bound the
 *   hardware prefetchers; docs/tuning.md, conv.cf_prefetch_bytes).
 * channels-last (B, L, C), K = 4, dilation 1: tiles of CONV_CL_ROWS(dt, act) time steps swept over
 *   whole rows in VX_LANES-channel columns, weights and history in registers, a column's
 *   outputs finished together (channels_last_k4). Other K / dilation: one time row at a time
 *   with row pointers into input, past_state or a zero row (channels_last_block).
 * The per-element arithmetic is the same in every path (conv_common.h), so results do not
 * depend on the channel split, the thread count, or how a sequence is cut into calls.
 */
#ifndef VX_LANES
#error "include the ISA's vec header and define the configuration before conv_simd_body.h"
#endif
#ifndef CONV_SILU_TABLE
#define CONV_SILU_TABLE 0
#endif

/* Hooks of the ISA file. padded[pos + i] for the first n lanes i (0 where the past is absent;
 * pos + i < S reads prow, else xrow[pos + i - S]), 0 beyond n: */
VEC_INLINE vxf conv_load_padded(const char* prow, const char* xrow, int64_t pos, int64_t S, int64_t n,
                                linattn_dtype dt);
/* wt[j * ncp + c] = wsrc[c * K + j] for c < nc, 0 for nc <= c < ncp: */
VEC_INLINE void conv_weights_tap_major(const conv_params* p, const float* wsrc, int64_t nc, float* wt);
/* The ISA's decode: runs the unit and returns true where it applies, else false: */
VEC_INLINE bool conv_decode(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                            linattn_dtype dt, linattn_activation act);
/* The unit is a decode that reads weights and bias in place (needs no scratch): */
VEC_INLINE bool conv_decode_in_place(const conv_params* p);

/* acc + bias. For fp16 the ONNX reference's conv is an fp16 matmul followed by an fp16 bias
 * add, so the sum is rounded to fp16 first (the fp32 add of two fp16 values is exact and is
 * rounded again by the store); bf16 and fp32 round once. */
VEC_INLINE vxf conv_add_bias(vxf acc, vxf bias, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) acc = vx_round_f16(acc);
  return vx_add(acc, bias);
}

/* Rounds the fp32 conv result to T, applies the activation, stores the first n lanes as T.
 * nt: a full fp32 vector at a vector-aligned address goes out with a non-temporal store (large
 * outputs: no read for ownership of the output lines); any other store is a normal one. bf16
 * rounds without a NaN case (bf16_round_bits: NaNs here come from 16-bit inputs). */
VEC_INLINE void conv_finish_store(char* dst, int64_t n, vxf acc, linattn_dtype dt, linattn_activation act, bool nt) {
#if CONV_SILU_TABLE
  if (act == CONV_ACT_SILU_TABLE) { /* the same T bits, looked up (16-bit T only) */
    vx_store16_n(dst, n, conv_silu_table_t16(acc, dt));
    return;
  }
#endif
  const bool silu = act == LINATTN_ACTIVATION_SILU;
  if (dt == LINATTN_DTYPE_F32) {
    if (silu) acc = vx_silu(acc);
    if (nt && n >= VX_LANES && ((uintptr_t)dst & (VX_LANES * 4u - 1u)) == 0) vx_streamf((float*)dst, acc);
    else vx_storef_n((float*)dst, n, acc);
  } else if (dt == LINATTN_DTYPE_F16) {
    if (silu) acc = vx_silu_t16(vx_round_f16(acc));
    vx_store_f16_n(dst, n, acc);
  } else {
    if (silu) acc = vx_silu_t16(vx_round_bf16(acc));
    vx_store_bf16_rne_n(dst, n, acc);
  }
}

/* Non-temporal stores for a streamed output, in fp32 only: 16-bit vectors are half lines, and
 * streaming them was slower in both layouts (docs/tuning.md, conv_stream_full_lines). */
VEC_INLINE bool conv_stream_full_lines(const conv_params* p, linattn_dtype dt) {
  return dt == LINATTN_DTYPE_F32 && p->stream_output;
}

/* ------------------------------------------------------------------ weights, bias */

/* fp32 weights of channels [c0, c0 + nc) in the (C, K) layout: the caller's array for fp32,
 * else converted into buf (K * ncp floats, so whole vectors fit). */
static const float* conv_weights_f32(const conv_params* p, int64_t c0, int64_t nc, float* buf) {
  const int64_t K = p->K;
  if (p->dtype == LINATTN_DTYPE_F32) return (const float*)p->w + c0 * K;
  const char* src = conv_at(p->w, c0 * K, 2);
  const int64_t n = nc * K;
  for (int64_t i = 0; i < n; i += VX_LANES) vx_storef(buf + i, vx_load_n(src + i * 2, n - i, p->dtype));
  return buf;
}

/* fp32 bias of channels [c0, c0 + nc), zeros when absent (bias has ncp floats). */
static void conv_bias_f32(const conv_params* p, int64_t c0, int64_t nc, float* bias) {
  const size_t es = conv_esize(p->dtype);
  for (int64_t c = 0; c < nc; c += VX_LANES)
    vx_storef(bias + c, p->bias ? vx_load_n(conv_at(p->bias, c0 + c, es), nc - c, p->dtype) : vx_zero());
}

/* ------------------------------------------------------------------ channels-first */

#if CONV_CF_SHIFT
/* Channels-first K = 4, dilation 1, from t0 (>= VX_LANES, t0 + VX_LANES <= L) while whole
 * vectors remain; returns the next t0. */
VEC_INLINE int64_t conv_cf_k4_shifted(const char* xrow, char* yrow, int64_t t0, int64_t L, const float* wf, vxf bias,
                                      bool has_bias, bool nt, int64_t pf, bool bf16_pairs, linattn_dtype dt,
                                      linattn_activation act);
#endif

/* Prefetches the input lines of CONV_CF_BATCH vectors from p + ahead (conv_params.cf_prefetch):
 * a hint, which never faults, so the address may lie past the row (computed as an integer). */
VEC_INLINE void conv_cf_prefetch(const char* p, int64_t ahead, size_t es) {
  const uintptr_t a = (uintptr_t)p + (uintptr_t)ahead;
  for (size_t o = 0; o < VX_LANES * CONV_CF_BATCH * es; o += 64) __builtin_prefetch((const void*)(a + o), 0, 3);
}

/* K = 4 taps in registers from t0 (all taps in the input, t0 >= S): CONV_CF_BATCH vectors per
 * round (each round prefetching pf bytes ahead when pf > 0), then two per step; returns the
 * next t0. */
VEC_INLINE int64_t channels_first_k4(const char* xs, char* yrow, int64_t t0, int64_t L, int64_t d, const float* wf,
                                     vxf bias, bool has_bias, bool nt, int64_t pf, linattn_dtype dt,
                                     linattn_activation act) {
  const size_t es = conv_esize(dt);
  const vxf w0 = vx_set1(wf[0]), w1 = vx_set1(wf[1]), w2 = vx_set1(wf[2]), w3 = vx_set1(wf[3]);
  const int64_t e1 = d * (int64_t)es, e2 = 2 * e1, e3 = 3 * e1;
  for (; t0 + VX_LANES * CONV_CF_BATCH <= L; t0 += VX_LANES * CONV_CF_BATCH) {
    vxf u[CONV_CF_BATCH];
    if (pf) conv_cf_prefetch(xs + e3 + t0 * (int64_t)es, pf, es);
    for (int i = 0; i < CONV_CF_BATCH; ++i) {
      const char* a = xs + (t0 + VX_LANES * i) * (int64_t)es;
      u[i] = vx_fma(w0, vx_load(a, dt), vx_zero());
      u[i] = vx_fma(w1, vx_load(a + e1, dt), u[i]);
      u[i] = vx_fma(w2, vx_load(a + e2, dt), u[i]);
      u[i] = vx_fma(w3, vx_load(a + e3, dt), u[i]);
      if (has_bias) u[i] = conv_add_bias(u[i], bias, dt);
    }
    for (int i = 0; i < CONV_CF_BATCH; ++i)
      conv_finish_store(yrow + (t0 + VX_LANES * i) * (int64_t)es, VX_LANES, u[i], dt, act, nt);
  }
  for (; t0 + 2 * VX_LANES <= L; t0 += 2 * VX_LANES) {
    const char* a = xs + t0 * (int64_t)es;
    const char* a2 = a + VX_LANES * (int64_t)es;
    vxf u = vx_fma(w0, vx_load(a, dt), vx_zero());
    vxf v = vx_fma(w0, vx_load(a2, dt), vx_zero());
    u = vx_fma(w1, vx_load(a + e1, dt), u);
    v = vx_fma(w1, vx_load(a2 + e1, dt), v);
    u = vx_fma(w2, vx_load(a + e2, dt), u);
    v = vx_fma(w2, vx_load(a2 + e2, dt), v);
    u = vx_fma(w3, vx_load(a + e3, dt), u);
    v = vx_fma(w3, vx_load(a2 + e3, dt), v);
    if (has_bias) u = conv_add_bias(u, bias, dt), v = conv_add_bias(v, bias, dt);
    conv_finish_store(yrow + t0 * (int64_t)es, VX_LANES, u, dt, act, false);
    conv_finish_store(yrow + (t0 + VX_LANES) * (int64_t)es, VX_LANES, v, dt, act, false);
  }
  return t0;
}

VEC_INLINE void channels_first_row(const conv_params* p, int64_t b, int64_t c, const float* wf, linattn_dtype dt,
                                   linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, S = p->S, L = p->L;
  const char* xrow = conv_at(p->x, b * p->x_sb + c * p->x_sc, es);
  char* yrow = (char*)p->y + (b * p->y_sb + c * p->y_sc) * (int64_t)es;
  const char* prow = p->past ? conv_at(p->past, b * p->s_sb + c * p->s_sc, es) : NULL;
  const bool has_bias = p->bias != NULL;
  const vxf bias = vx_set1(has_bias ? linattn_load_f32(p->bias, c, dt) : 0.0f);
  /* the shifted K = 4 loop reads the previous vector's inputs: the head runs up to t0 >= VX_LANES */
  const bool shift = CONV_CF_SHIFT && K == 4 && d == 1;
  /* Output vectors start at a vector boundary of y (numpy buffers start 16 bytes into a cache
   * line): the first head vector takes the `lead` steps up to it, so the later stores are whole
   * vectors, never split, and a streamed output can leave with non-temporal stores. */
  const int64_t lead = conv_lead_to_boundary(yrow, es, VX_LANES * es);
  const bool nt = CONV_CF_STREAM && conv_stream_full_lines(p, dt) && p->stream_rows;
  int64_t t0 = 0;
  for (int64_t w; t0 < L && (t0 < S || (shift && t0 < VX_LANES)); t0 += w) { /* head: taps may read past_state */
    w = t0 == 0 && lead > 0 ? lead : VX_LANES;
    const int64_t n = L - t0 < w ? L - t0 : w;
    vxf acc = vx_zero();
    for (int64_t j = 0; j < K; ++j) acc = vx_fma(vx_set1(wf[j]), conv_load_padded(prow, xrow, t0 + j * d, S, n, dt), acc);
    if (has_bias) acc = conv_add_bias(acc, bias, dt);
    conv_finish_store(yrow + t0 * (int64_t)es, n, acc, dt, act, false);
  }
  const char* xs = xrow - S * (int64_t)es; /* padded position q is xs[q] for q >= S */
#if CONV_CF_SHIFT
  if (shift && t0 >= VX_LANES && t0 + VX_LANES <= L)
    t0 = conv_cf_k4_shifted(xrow, yrow, t0, L, wf, bias, has_bias, nt, p->cf_prefetch, p->cf_bf16_pairs, dt, act);
#endif
  if (K == 4) t0 = channels_first_k4(xs, yrow, t0, L, d, wf, bias, has_bias, nt, p->cf_prefetch, dt, act);
  for (; t0 + VX_LANES <= L; t0 += VX_LANES) { /* other K, and the last whole vectors */
    vxf acc = vx_zero();
    for (int64_t j = 0; j < K; ++j) acc = vx_fma(vx_set1(wf[j]), vx_load(xs + (t0 + j * d) * (int64_t)es, dt), acc);
    if (has_bias) acc = conv_add_bias(acc, bias, dt);
    conv_finish_store(yrow + t0 * (int64_t)es, VX_LANES, acc, dt, act, false);
  }
  if (t0 < L) {
    vxf acc = vx_zero();
    for (int64_t j = 0; j < K; ++j)
      acc = vx_fma(vx_set1(wf[j]), vx_load_n(xs + (t0 + j * d) * (int64_t)es, L - t0, dt), acc);
    if (has_bias) acc = conv_add_bias(acc, bias, dt);
    conv_finish_store(yrow + t0 * (int64_t)es, L - t0, acc, dt, act, false);
  }
  conv_cf_write_present(p, b, c);
}

/* ------------------------------------------------------------------ channels-last */

#if CONV_SILU_TABLE
/* The ISA file's full and half tiles of channels_last_k4 with the SiLU by lookup: channels
 * [v0, v1) (2 VX_LANES at a time, v0 < v1) of the n steps from t0, n = CONV_CL_ROWS(dt,
 * CONV_ACT_SILU_TABLE) or half of it, the same bits as channels_last_k4_column's. */
VEC_INLINE void conv_cl_k4_table_lines(const conv_params* p, int64_t b, int64_t c0, const conv_scratch_layout* s,
                                       int64_t ncp, int64_t t0, int64_t n, int64_t v0, int64_t v1, linattn_dtype dt);
#endif

/* The inputs of R (a constant) time steps loaded first, then the accumulators summed, then all
 * finished and stored: the rows' rounding / SiLU chains overlap (as CONV_CF_BATCH does for
 * channels-first), and every load of the column precedes its stores, so no load waits behind a
 * store to an aliasing address (rows 4 KiB apart). h[0..2]: the three previous rows. */
VEC_INLINE void channels_last_k4_rows(const char* xp, char* yp, int64_t xst, int64_t yst, vxf* h, vxf w0, vxf w1,
                                      vxf w2, vxf w3, vxf bias, bool has_bias, int R, int64_t nv, bool nt,
                                      linattn_dtype dt, linattn_activation act) {
  vxf acc[CONV_CL_ROWS_MAX];
  for (int i = 0; i < R; ++i) h[i + 3] = vx_load_n(xp + i * xst, nv, dt);
  for (int i = 0; i < R; ++i) {
    acc[i] = vx_fma(w0, h[i], vx_zero());
    acc[i] = vx_fma(w1, h[i + 1], acc[i]);
    acc[i] = vx_fma(w2, h[i + 2], acc[i]);
    acc[i] = vx_fma(w3, h[i + 3], acc[i]);
    if (has_bias) acc[i] = conv_add_bias(acc[i], bias, dt);
  }
  for (int i = 0; i < R; ++i) conv_finish_store(yp + i * yst, nv, acc[i], dt, act, nt);
}

/* One column tile of channels_last_k4: channels [v, v + nv) (nv = VX_LANES when full, a
 * constant) of the n <= CONV_CL_ROWS(dt, act) time steps from t0: a full or a half tile through
 * channels_last_k4_rows, a shorter one row by row. */
VEC_INLINE void channels_last_k4_column(const conv_params* p, int64_t b, int64_t c0, const conv_scratch_layout* s,
                                        int64_t ncp, int64_t t0, int64_t n, int64_t v, int64_t nv, bool full, bool nt,
                                        linattn_dtype dt, linattn_activation act) {
  if (full) nv = VX_LANES;
  const size_t es = conv_esize(dt);
  const int64_t xst = p->x_st * (int64_t)es, yst = p->y_st * (int64_t)es, o = v * (int64_t)es;
  const bool has_bias = p->bias != NULL;
  const char* xp = conv_at(p->x, b * p->x_sb + t0 * p->x_st + c0 + v, es);
  char* yp = (char*)p->y + (b * p->y_sb + t0 * p->y_st + c0 + v) * (int64_t)es;
  const vxf w0 = vx_loadf_padded(s->wt + v, nv), w1 = vx_loadf_padded(s->wt + ncp + v, nv);
  const vxf w2 = vx_loadf_padded(s->wt + 2 * ncp + v, nv), w3 = vx_loadf_padded(s->wt + 3 * ncp + v, nv);
  const vxf bias = has_bias ? vx_loadf_padded(s->bias + v, nv) : vx_zero();
  const int rows = CONV_CL_ROWS(dt, act);
  vxf h[CONV_CL_ROWS_MAX + 3]; /* h[i] = padded row t0 + i */
  if (t0 >= p->S) { /* the three previous rows are input rows */
    for (int i = 0; i < 3; ++i) h[i] = vx_load_n(xp - (3 - i) * xst, nv, dt);
  } else {
    for (int i = 0; i < 3; ++i) h[i] = vx_load_n(conv_cl_padded_row(p, b, c0, t0 + i, s->zero) + o, nv, dt);
  }
  if (n == rows) {
    channels_last_k4_rows(xp, yp, xst, yst, h, w0, w1, w2, w3, bias, has_bias, rows, nv, nt, dt, act);
    return;
  }
  if (rows >= 4 && n == rows / 2) {
    channels_last_k4_rows(xp, yp, xst, yst, h, w0, w1, w2, w3, bias, has_bias, rows / 2, nv, nt, dt, act);
    return;
  }
  for (int64_t i = 0; i < n; ++i) { /* the last, partial tile */
    const vxf x3 = vx_load_n(xp + i * xst, nv, dt);
    vxf acc = vx_fma(w0, h[0], vx_zero());
    acc = vx_fma(w1, h[1], acc);
    acc = vx_fma(w2, h[2], acc);
    acc = vx_fma(w3, x3, acc);
    if (has_bias) acc = conv_add_bias(acc, bias, dt);
    conv_finish_store(yp + i * yst, nv, acc, dt, act, nt);
    h[0] = h[1], h[1] = h[2], h[2] = x3;
  }
}

/* Channels-last, K = 4, dilation 1. Per tile of CONV_CL_ROWS(dt, act) time steps, a sweep over the
 * unit's channels in VX_LANES-channel columns: weights, bias and the three previous inputs in
 * registers, each input loaded and converted once, the output stored directly. The driver gives
 * these families whole rows (conv_kernel.cl_whole_rows): each tile then reads CONV_CL_ROWS(dt, act)
 * long contiguous row streams, which the hardware prefetchers follow; 4 KiB row pieces and
 * software prefetches of the next tile were slower (docs/tuning.md, channels_last_k4 whole
 * rows). Columns start where output vectors are aligned (CONV_CL_LEAD_ALWAYS, or when
 * streaming): the first one takes the channels up to that boundary (numpy buffers start 16
 * bytes into a cache line), so that the others store whole vectors and may stream them. */
VEC_INLINE void channels_last_k4(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                                 linattn_dtype dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t L = p->L, ncp = conv_ncp(nc);
  const bool nt = conv_cl_stream(p, dt);
  const uintptr_t vbytes = VX_LANES * es, y0 = (uintptr_t)p->y + (uintptr_t)((b * p->y_sb + c0) * (int64_t)es);
  const int64_t lead0 = CONV_CL_LEAD_ALWAYS || nt ? (int64_t)((vbytes - y0 % vbytes) % vbytes / es) : 0;
  const int64_t lead = lead0 < nc ? lead0 : nc;
  const int64_t full_end = lead + (nc - lead) / VX_LANES * VX_LANES;
  const int64_t rows = CONV_CL_ROWS(dt, act), half = rows >= 4 ? rows / 2 : rows;
  for (int64_t t0 = 0, n; t0 < L; t0 += n) {
    n = L - t0 >= rows ? rows : L - t0 >= half ? half : L - t0; /* full tiles, a half tile, the rest */
    if (lead > 0) channels_last_k4_column(p, b, c0, s, ncp, t0, n, 0, lead, false, nt, dt, act);
    int64_t v = lead;
#if CONV_SILU_TABLE
    if (act == CONV_ACT_SILU_TABLE && (n == rows || n == half)) { /* whole lines of 2 VX_LANES channels, pipelined */
      if (v < full_end && ((y0 + (uintptr_t)(v * (int64_t)es)) & (2 * vbytes - 1)) != 0) {
        channels_last_k4_column(p, b, c0, s, ncp, t0, n, v, VX_LANES, true, nt, dt, act);
        v += VX_LANES;
      }
      const int64_t vend = v + (full_end - v) / (2 * VX_LANES) * (2 * VX_LANES);
      if (v < vend) conv_cl_k4_table_lines(p, b, c0, s, ncp, t0, n, v, vend, dt);
      v = vend;
    }
#endif
    for (; v < full_end; v += VX_LANES)
      channels_last_k4_column(p, b, c0, s, ncp, t0, n, v, VX_LANES, true, nt, dt, act);
    if (full_end < nc) channels_last_k4_column(p, b, c0, s, ncp, t0, n, full_end, nc - full_end, false, nt, dt, act);
  }
  conv_cl_write_present(p, b, c0, nc);
}

/* Any K and dilation: one time row at a time, row pointers into input, past_state or a zero
 * row; K = 4 with the four rows' pointers held. */
VEC_INLINE void channels_last_block(const conv_params* p, int64_t b, int64_t c0, int64_t nc,
                                    const conv_scratch_layout* s, linattn_dtype dt, linattn_activation act) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, L = p->L, ncp = conv_ncp(nc);
  const bool has_bias = p->bias != NULL, nt = conv_cl_stream(p, dt);
  const char* rows[16];
  const int64_t kmax = K <= 16 ? K : 16; /* taps beyond 16 take the generic row lookup */
  for (int64_t t = 0; t < L; ++t) {
    char* yrow = (char*)p->y + (b * p->y_sb + t * p->y_st + c0) * (int64_t)es;
    for (int64_t j = 0; j < kmax; ++j) rows[j] = conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
    int64_t v = 0;
    if (K == 4) {
      const char *r0 = rows[0], *r1 = rows[1], *r2 = rows[2], *r3 = rows[3];
      const float* w = s->wt;
      for (; v + VX_LANES <= nc; v += VX_LANES) {
        const int64_t o = v * (int64_t)es;
        vxf acc = vx_fma(vx_loadf_padded(w + v, VX_LANES), vx_load(r0 + o, dt), vx_zero());
        acc = vx_fma(vx_loadf_padded(w + ncp + v, VX_LANES), vx_load(r1 + o, dt), acc);
        acc = vx_fma(vx_loadf_padded(w + 2 * ncp + v, VX_LANES), vx_load(r2 + o, dt), acc);
        acc = vx_fma(vx_loadf_padded(w + 3 * ncp + v, VX_LANES), vx_load(r3 + o, dt), acc);
        if (has_bias) acc = conv_add_bias(acc, vx_loadf_padded(s->bias + v, VX_LANES), dt);
        conv_finish_store(yrow + o, VX_LANES, acc, dt, act, nt);
      }
    }
    for (; v < nc; v += VX_LANES) {
      const int64_t o = v * (int64_t)es;
      vxf acc = vx_zero();
      for (int64_t j = 0; j < K; ++j) {
        const char* r = j < 16 ? rows[j] : conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
        acc = vx_fma(vx_loadf_padded(s->wt + j * ncp + v, VX_LANES), vx_load_n(r + o, nc - v, dt), acc);
      }
      if (has_bias) acc = conv_add_bias(acc, vx_loadf_padded(s->bias + v, VX_LANES), dt);
      conv_finish_store(yrow + o, nc - v, acc, dt, act, false);
    }
  }
  conv_cl_write_present(p, b, c0, nc);
}

/* ------------------------------------------------------------------ entry */

/* The prefill paths of a unit (the ISA's decode did not apply). */
VEC_INLINE void conv_prefill_typed(const conv_params* p, int64_t b, int64_t c0, int64_t nc,
                                   const conv_scratch_layout* s, linattn_dtype dt, linattn_activation act) {
  const int64_t K = p->K;
  if (!p->channels_last) {
    const float* wsrc = conv_weights_f32(p, c0, nc, s->wc); /* (C, K) fp32 */
    for (int64_t c = c0; c < c0 + nc; ++c) channels_first_row(p, b, c, wsrc + (c - c0) * K, dt, act);
    return;
  }
  if (!p->weights_ready) { /* a packed call's next sequence on the same channels has them */
    conv_bias_f32(p, c0, nc, s->bias);
    conv_weights_tap_major(p, conv_weights_f32(p, c0, nc, s->wc), nc, s->wt);
  }
  if (!p->past) memset(s->zero, 0, (size_t)nc * conv_esize(dt));
  if (K == 4 && p->dilation == 1)
    channels_last_k4(p, b, c0, nc, s, dt, act);
  else
    channels_last_block(p, b, c0, nc, s, dt, act);
}

#if CONV_SPLIT_TYPED
/* The decode and the prefill of each (dtype, activation) are functions of their own, so that
 * each is register-allocated alone: all inlined into one entry, they spilled more in their hot
 * loops (docs/tuning.md, CONV_SPLIT_TYPED). conv_decode_<DT>_<ACT> runs the
 * ISA's decode where it applies and returns whether it did. */
#define CONV_TYPED_FNS(DT, ACT)                                                                          \
  static __attribute__((noinline)) bool conv_decode_##DT##_##ACT(const conv_params* p, int64_t b, int64_t c0, \
                                                                 int64_t nc, const conv_scratch_layout* s) { \
    return conv_decode(p, b, c0, nc, s, DT, ACT);                                                       \
  }                                                                                                     \
  static __attribute__((noinline)) void conv_prefill_##DT##_##ACT(const conv_params* p, int64_t b, int64_t c0, \
                                                                  int64_t nc, const conv_scratch_layout* s) { \
    conv_prefill_typed(p, b, c0, nc, s, DT, ACT);                                                       \
  }
CONV_TYPED_FNS(LINATTN_DTYPE_F32, LINATTN_ACTIVATION_NONE)
CONV_TYPED_FNS(LINATTN_DTYPE_F32, LINATTN_ACTIVATION_SILU)
CONV_TYPED_FNS(LINATTN_DTYPE_F16, LINATTN_ACTIVATION_NONE)
CONV_TYPED_FNS(LINATTN_DTYPE_F16, LINATTN_ACTIVATION_SILU)
CONV_TYPED_FNS(LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_NONE)
CONV_TYPED_FNS(LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_SILU)
#if CONV_SILU_TABLE
CONV_TYPED_FNS(LINATTN_DTYPE_F16, CONV_ACT_SILU_TABLE)
CONV_TYPED_FNS(LINATTN_DTYPE_BF16, CONV_ACT_SILU_TABLE)
#endif
#define CONV_RUN_SPLIT(p, b, c0, nc, s, DT, ACT)                                          \
  do {                                                                                    \
    if (!conv_decode_##DT##_##ACT(p, b, c0, nc, s)) conv_prefill_##DT##_##ACT(p, b, c0, nc, s); \
  } while (0)
#else
#define CONV_RUN_SPLIT(p, b, c0, nc, s, DT, ACT)                                                  \
  do {                                                                                            \
    if (!conv_decode(p, b, c0, nc, s, DT, ACT)) conv_prefill_typed(p, b, c0, nc, s, DT, ACT); \
  } while (0)
#endif

static void CONV_FN(conv_run)(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch) {
  conv_scratch_layout s = conv_scratch_split(p, nc, scratch);
#if CONV_SILU_TABLE
  if (conv_silu_table_use(p)) {
    if (p->dtype == LINATTN_DTYPE_F16) CONV_RUN_SPLIT(p, b, c0, nc, &s, LINATTN_DTYPE_F16, CONV_ACT_SILU_TABLE);
    else CONV_RUN_SPLIT(p, b, c0, nc, &s, LINATTN_DTYPE_BF16, CONV_ACT_SILU_TABLE);
    return; /* 16-bit T: no non-temporal stores to fence */
  }
#endif
  CONV_RUN_TYPED(CONV_RUN_SPLIT, p, b, c0, nc, &s);
  if (conv_stream_full_lines(p, p->dtype)) vx_sfence(); /* order the non-temporal stores before the caller's next access */
}

static size_t CONV_FN(conv_scratch)(const conv_params* p, int64_t nc) {
  return conv_decode_in_place(p) ? 0 : conv_vector_scratch_bytes(p, nc);
}
