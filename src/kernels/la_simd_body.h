/*
 * The fused LinearAttention kernel written once over a small vector vocabulary; included by
 * la_avx512.c, la_avx2.c (each compiled with its ISA flags), la_neon.c (AArch64 Advanced SIMD)
 * and la_scalar.c (GNU C generic vectors, no intrinsics) after they define:
 *
 *   LA_VL                       fp32 lanes per vector
 *   vf                          the vector type
 *   v_zero, v_set1, v_load, v_store, v_stream, v_fma(a,b,c)=a*b+c, v_mul, v_sub, v_hsum,
 *   v_exp (<= 2 ulp, 0 below the normal range, inf above, NaN kept), v_prefetch, v_prefetch_w
 *     (for writing), v_sfence,
 *   v_load_io(ptr, dtype, n) / v_store_io(ptr, dtype, x, n): n in [1, LA_VL] valid lanes,
 *     the rest zero / not written; fp16 via F16C or FCVTL/FCVTN, bf16 by shifts, fp32 -> bf16 rounding to
 *     nearest even with NaN kept (src/convert.h semantics)
 *   LA_WMAX(nq_group)           vectors per column panel for a group of that many heads
 *   LA_FN(name)                 ISA suffix for the file's symbols
 * and then include la_simd_panels.h, which instantiates the panels (checked against la_setup).
 *
 * Work per unit (algorithm: la_common.h). The unit's columns are cut into panels of W vectors
 * (the last partial vector is padded with zero columns in a scratch copy, so the hot loops
 * never mask). Tokens are staged in tiles (LA_TILE_TOKENS): q, k, v converted, decay
 * products, k.(scale q). Each panel then runs the tile's tokens with p, s, u held in
 * registers; between tiles they are parked in the panel's carry.
 *
 * Decay fold (gated rules). Within a segment of tokens s0..e of a tile the panel holds
 * S~ = S / C (rows divided by C_t = a_s0 ... a_t, elementwise for per-key decay), so
 *   S~_t = S~_{t-1} + (k_t / C_t) u_t^T               one FMA per element, no decay multiply,
 *   p_t = S~_{t-1}^T (C_t .* k_t),  s_t,h = S~_{t-1}^T (C_t .* scale q_t,h)
 * and the segment's last token writes the true state, S_e = C_e .* S~_{e-1} + k_e u_e^T (the
 * plain decayed update with a = C_e). A segment ends at the tile's last token and wherever C
 * leaves [2^-LA_FOLD_EXP, 2^LA_FOLD_EXP] (strong decay: that token uses the direct form, so
 * k / C never overflows and nothing is divided by a tiny C). The sweep then costs 3 FP ops per
 * element (update, p, s) instead of 4. Rounding differs from the step-by-step decay only by
 * the rounding of the running product C (one rounding per token, as the direct form has).
 */
#ifndef LA_VL
#error "define the vector vocabulary before including la_simd_body.h"
#endif

#define LA_GMAX 8     /* heads per register group */
#define LA_WCAP 8     /* most vectors per panel (LA_WMAX, LA_WMAX_DECODE <= LA_WCAP) */
#define LA_PACK_MIN_T 8 /* tokens from which panels work on a packed copy of their state */
#define LA_KQ_STRIDE 16
#define LA_PAIR_GMAX 2 /* most heads per group of the two-token sweep (registers) */
#ifndef LA_WMAX_PAIR
#define LA_WMAX_PAIR(G) LA_WMAX(G) /* vectors per two-token panel */
#endif
#define LA_FOLD_EXP 60 /* segment while 2^-60 <= C <= 2^60 */
/* Decode panels whose update sweep may also sum the next panel's p and s (la_last_update): the
 * ISA file allows the (NQ, W) whose registers hold u, p, s, the row and the next row. Only the
 * families that define it apply la_tuning.decode_vectors and decode_overlap (measured on them). */
#ifdef LA_DECODE_OVERLAP
#define LA_DECODE_TUNED 1
#else
#define LA_DECODE_OVERLAP(NQ, W) 0
#define LA_DECODE_TUNED 0
#endif
/* Decode panels whose last update sweep may sum the next unit's first panel (la_run_chain): those
 * of the overlap, and a 16-bit state's whole 128-column rows of one head (la_tuning.decode_half_chain:
 * the rows stay 8 vectors wide, u is read from memory by the FMAs) */
#define LA_DECODE_CHAINS(NQ, W, SD) (LA_DECODE_OVERLAP(NQ, W) || (LA_DECODE_TUNED && (SD) != 0 && (NQ) == 1 && (W) == 8))
#ifndef LA_PREFETCH_L1
#define v_prefetch_l1(p) v_prefetch(p) /* reached only by the overlapped decode (LA_DECODE_OVERLAP) */
#define LA_HAS_PREFETCH_L1 0
#else
#define LA_HAS_PREFETCH_L1 1
#endif
/* Prefill prefetches the rows of q, k, v, decay, beta (when staging) and out (when writing)
 * this many tokens ahead: with several heads a head's row is one piece of a token row of
 * H heads, a new page every token or two, which the hardware prefetchers do not follow. */
#define LA_PREFETCH_TOKENS 4 /* the least that covers the latency (docs/tuning.md, LA_PREFETCH_TOKENS) */
#ifndef LA_STAGE_TILE
#define LA_STAGE_TILE 0 /* lock-step tiles staged in one burst (la_stage_tile) */
#endif

typedef struct LA_FN(la_panel) {
  const void* src;  /* state rows entering the next token (state_in, then dst) */
  void* dst;        /* state rows written (state_out, or a packed fp32 copy in scratch); in the
                     * state's own dtype when not packed */
  int64_t ld;
  int64_t col;      /* first column within the unit */
  int W;            /* vectors */
  int valid;        /* valid columns (W * LA_VL except the tail panel) */
  int stream;       /* T == 1 and separate, aligned state_out: non-temporal stores */
  float* carry;     /* p then s, parked between tiles */
  int packed;       /* dst is the panel's block of the packed copy */
  int stages;       /* first panel: stages one token of the next tile per token it runs */
  int overlap;      /* decode: the update sweep also sums the next panel's p and s (LA_UPD_NEXT) */
  int primed;       /* decode: p and s already summed by the previous panel, in carry */
  int prefetches;   /* last panel: prefetches the rows of the caller's next step (J->pf) */
  int half_convert; /* decode of a 16-bit state: la_tuning.decode_half_convert's forms apply (f16:
                     * SD 5; bf16: in column pairs, SD 4, la_panel_decode_pairs and, without
                     * the delta rule, la_decode_one_pass) */
  int one_pass_pf;  /* the one pass of an fp32 state, not streamed, prefetches its rows to L1 by
                     * v_prefetch_l1 (la_tuning.decode_one_pass_prefetch; where LA_PREFETCH_L1) */
} LA_FN(la_panel);

/* One staged tile, slot-major (slot i = token t0 + i). */
typedef struct LA_FN(la_tile) {
  float* k;         /* update key: k / C mid-segment, k at a segment end */
  float* a;         /* C (decay products; the direct update's factor at a segment end) */
  float* kt;        /* k as given (for extra head groups) */
  float *ak, *aq;   /* C .* k, C .* scale q_h (retrieval and readout weights) */
  float *kq, *beta; /* k . scale q_h; beta */
  float* v;         /* slots x ncp values of the unit's columns */
  int* seg_end;     /* token ends a segment: direct update with a = C */
  /* Two-token sweeps (la_job.pair): weights and corrections of a slot j run as the second
   * token of a pair, whose sweep reads the state X before slot j - 1's update:
   *   p_j = X^T akx_j + cx_j u_{j-1},  s_j,h = X^T aqx_j,h + dx_j,h u_{j-1}
   * with akx = f .* ak, aqx = f .* aq, f = slot j - 1's decay factor a when it ends a segment
   * (else 1: akx, aqx are then ak, aq themselves, not stored; la_pair_scaled), cx = k_{j-1} . ak_j
   * and dx = k_{j-1} . aq_j,h (k_{j-1}: the update key). */
  float *akx, *aqx, *cx, *dx;
  /* Per-head decay folded out of the rows (la_job.fold): the slot keeps k and scale q as
   * given, ak, akx alias k and aq, aqx alias aq, and three scalars per slot apply the decay to
   * the per-token vectors instead: fs[3 sl] = C (p and s summed with k, scale q are scaled by
   * it), fs[3 sl + 1] = f C (the pair's look-ahead sums: f as in akx), fs[3 sl + 2] = the
   * factor of u in the update (1 / C inside a segment, 1 at its end); cx, dx as above. */
  float* fs;
} LA_FN(la_tile);

/* Staging in progress: the next tile is staged one token at a time between the first
 * panel's tokens, so its cache misses overlap the sweeps of the current tile. */
typedef struct LA_FN(la_stager) {
  LA_FN(la_tile) * buf;
  int64_t t0, n, nst, next; /* tile tokens t0 .. t0 + n - 1, nst slots, next slot to stage */
  int seg_start;
  float c_head;
  int l1_prefetch; /* the tile bursts (la_stage_tile) prefetch the input rows to L1 ahead of
                    * the slots: not where the previous lock-step step prefetched them to L2
                    * (la_tiles). Slot by slot (la_stage_slot) they always do. */
} LA_FN(la_stager);

typedef struct LA_FN(la_job) {
  const la_params* p;
  const la_unit* u;
  int64_t T, dk, dkp, nc;
  int nq, G;        /* query heads of the unit; heads per register group */
  int64_t ncp;      /* columns rounded up to vectors */
  LA_FN(la_tile) tiles[2];
  const LA_FN(la_tile) * cur; /* the tile the panels run */
  LA_FN(la_stager) * st;
  float *xaq, *xkq; /* an extra head group (n_q > 8) of one token */
  float* pack;      /* d_k x ncp: panels copied to contiguous blocks (see la_run_unit) */
  float* carry;     /* per panel */
  float* ones;      /* dkp ones: the decay factor of a token inside a segment */
  int pair;         /* run tokens two per sweep (la_panel_pairs) */
  LA_FN(la_panel) * panels;
  int npanels;
  la_step_next pf; /* rows of the caller's next step, prefetched by the last panel (n = 0: none) */
  int vdirect;     /* V-major state, few tokens: la_vmajor_tokens on the state rows, no panels */
  int stage_plain; /* la_stage_slot's PLAIN case applies */
  int fold;        /* per-head decay folded out of the staged rows (la_tile.fs; pairs only) */
  int burst;       /* la_stage_tile's bursts apply: 4 or 8 vectors per row, else 0 */
  struct LA_FN(la_job) * chain; /* decode chain (la_run_chain): the next unit's job, whose first
                                 * panel's sums the last panel's update sweep adds up; else NULL */
} LA_FN(la_job);

typedef LA_FN(la_panel) la_panel_t;
typedef LA_FN(la_job) la_job_t;
typedef LA_FN(la_tile) la_tile_t;
typedef LA_FN(la_stager) la_stager_t;

/* Everything a unit needs to resume between calls of la_step: kept at the end of the scratch
 * (run keeps it on its stack and the rest of the layout as it was), so one scratch per unit
 * makes a unit resumable (la_kernel.step). */
typedef struct LA_FN(la_resume) {
  la_job_t J;
  la_stager_t st;
  int gi, dc, dl, sd, can_stream;
} LA_FN(la_resume);
typedef LA_FN(la_resume) la_resume_t;

/* Whether every panel of a unit works on a packed fp32 copy of its state (see la_setup). */
static inline int LA_FN(la_packs_all)(const la_params* p) {
  return p->T >= LA_PACK_MIN_T || p->state_v_major || (la_state_half(p) && p->T > 1);
}

/* The scratch holds only what a call of p->T tokens uses: a call of one tile (decode) stages at
 * most T slots into one tile and parks no carry; without packed copies of every panel only the
 * tail panel is packed. */
static size_t LA_FN(la_layout)(const la_params* p, int64_t ncols, void* scratch, la_job_t* J) {
  la_arena ar = {(char*)scratch, 0};
  const int64_t dkp = (p->d_k + LA_VL - 1) / LA_VL * LA_VL;
  const int one_tile = p->T <= LA_TILE_TOKENS;
  const int64_t slots = one_tile ? p->T : LA_TILE_TOKENS + 1;
  const int64_t maxpanels = ncols / LA_VL + 2;
  J->dkp = dkp;
  J->ncp = (ncols + LA_VL - 1) / LA_VL * LA_VL;
  for (int b = 0; b < 2 - one_tile; b++) { /* one tile: tiles[1] is never staged */
    la_tile_t* Tl = &J->tiles[b];
    Tl->k = la_arena_floats(&ar, slots * dkp);
    Tl->a = la_arena_floats(&ar, slots * dkp);
    Tl->kt = la_arena_floats(&ar, slots * dkp);
    Tl->ak = la_arena_floats(&ar, slots * dkp);
    Tl->seg_end = (int*)la_arena_floats(&ar, slots);
    Tl->aq = la_arena_floats(&ar, slots * LA_GMAX * dkp);
    Tl->kq = la_arena_floats(&ar, slots * LA_KQ_STRIDE);
    Tl->beta = la_arena_floats(&ar, slots);
    Tl->v = la_arena_floats(&ar, slots * J->ncp);
    const int64_t pslots = la_pair_tokens(p) ? slots : 0;
    Tl->akx = la_arena_floats(&ar, pslots * dkp);
    Tl->aqx = la_arena_floats(&ar, pslots * LA_PAIR_GMAX * dkp);
    Tl->cx = la_arena_floats(&ar, pslots);
    Tl->dx = la_arena_floats(&ar, pslots * LA_KQ_STRIDE);
    Tl->fs = la_arena_floats(&ar, pslots * 3);
  }
  J->ones = la_arena_floats(&ar, dkp);
  J->xaq = la_arena_floats(&ar, LA_GMAX * dkp);
  J->xkq = la_arena_floats(&ar, LA_KQ_STRIDE);
  J->pack = la_arena_floats(&ar, p->d_k * (LA_FN(la_packs_all)(p) ? J->ncp : LA_VL));
  /* one tile parks nothing, except decode's next-panel sums (la_last_update): one carry, kept
   * for every one-tile T so that a scratch sized for T tokens serves any call of fewer */
  const int64_t carries = one_tile ? (p->decode_overlap ? 1 : 0) : maxpanels;
  J->carry = la_arena_floats(&ar, carries * (1 + LA_GMAX) * LA_WCAP * LA_VL);
  J->panels = (la_panel_t*)la_arena_floats(&ar, maxpanels * (int64_t)((sizeof(la_panel_t) + 3) / 4));
  la_arena_floats(&ar, (int64_t)((sizeof(la_resume_t) + 3) / 4)); /* la_step's resume record, last */
  return ar.used;
}

static size_t LA_FN(la_scratch)(const la_params* p, int64_t ncols) {
  la_job_t J;
  return LA_FN(la_layout)(p, ncols, NULL, &J);
}

/* ------------------------------------------------------------------ staging */

/* ---- GatedDeltaNet staging (q/k L2 norm, fused gates, beta sigmoid, transition capture) ---- */

/* 1 / |x| (la_params.l2_eps under the root) of a d_k row of io_dtype elements; with conv, the
 * row converted to fp32 into conv (dkp floats, padding 0) on the way, so that a half-precision
 * row is read and converted once (an fp32 row is cheaper to read twice than to copy). */
static inline __attribute__((always_inline)) float LA_FN(la_l2_inv_row_as)(const la_job_t* J, const void* row, float* conv,
                                                                           const int PLAIN) {
  const linattn_dtype dt = PLAIN ? LINATTN_DTYPE_F32 : J->p->io_dtype;
  vf acc = v_zero();
  for (int64_t i = 0; i < J->dkp; i += LA_VL) {
    const int n = PLAIN || J->dk - i >= LA_VL ? LA_VL : (int)(J->dk - i);
    const vf x = v_load_io(la_io_at(row, i, dt), dt, n);
    if (conv) v_store(conv + i, x);
    acc = v_fma(x, x, acc);
  }
  return la_l2_inv(J->p, v_hsum(acc));
}

/* Per-key decay of token t through the fused gate: the log-space g of the d_k rows into g
 * (padding lanes 0, so exp gives 1). */
static void LA_FN(la_gate_row)(const la_job_t* J, const void* gt, float* g) {
  const la_params* p = J->p;
  for (int64_t i = 0; i < J->dk; i++) g[i] = la_gate_log_decay(p, J->u, linattn_load_f32(gt, i, la_gate_dtype(p)), i);
  for (int64_t i = J->dk; i < J->dkp; i++) g[i] = 0.0f;
}

/* The first n of LA_VL lanes of x to dst. */
static inline void LA_FN(la_store_lanes)(float* dst, vf x, int n) {
  float tmp[LA_VL];
  v_store(tmp, x);
  memcpy(dst, tmp, sizeof(float) * (size_t)n);
}

/* Capture of token t's update u (the panel's valid columns), see la_unit.cap_delta. */
static void LA_FN(la_capture_delta)(const la_job_t* J, const la_panel_t* P, int64_t t, const vf* u, int W) {
  float* dst = J->u->cap_delta + t * J->u->cap_delta_stride + P->col;
  for (int j = 0; j < W; j++) {
    const int n = P->valid - j * LA_VL;
    if (n > 0) LA_FN(la_store_lanes)(dst + j * LA_VL, u[j], n < LA_VL ? n : LA_VL);
  }
}

/* aq_h = C .* scale q_t,h (zero for padding heads) and kq_h = k . scale q_t,h for heads
 * h0 .. h0 + G - 1 of token t, given the staged C (a) and k (as given) of that token; a NULL:
 * aq_h = scale q_t,h (la_job.fold). */
static inline __attribute__((always_inline)) void LA_FN(la_stage_heads_as)(const la_job_t* J, int64_t t, const float* a,
                                                                          const float* k, int h0, float* aq, float* kq,
                                                                          const int PLAIN) {
  const la_params* p = J->p;
  const la_unit* u = J->u;
  const linattn_dtype dt = PLAIN ? LINATTN_DTYPE_F32 : p->io_dtype;
  const int l2 = PLAIN ? PLAIN == 3 : p->qk_l2_norm;
  const vf sc_plain = v_set1(p->scale);
  for (int h = 0; h < J->G; h++) {
    float* aqh = aq + (int64_t)h * J->dkp;
    if (h0 + h >= J->nq) {
      for (int64_t i = 0; i < J->dkp; i += LA_VL) v_store(aqh + i, v_zero());
      kq[h] = 0.0f;
      continue;
    }
    const void* qt = la_io_at(u->q, t * u->q_token_stride + (int64_t)(h0 + h) * u->q_head_stride, dt);
    vf acc = v_zero();
    const int qconv = l2 && dt != LINATTN_DTYPE_F32; /* q converted into aqh by the norm's pass */
    const vf sc = l2 ? v_set1(p->scale * LA_FN(la_l2_inv_row_as)(J, qt, qconv ? aqh : NULL, PLAIN)) : sc_plain;
    for (int64_t i = 0; i < J->dkp; i += LA_VL) {
      const int n = PLAIN || J->dk - i >= LA_VL ? LA_VL : (int)(J->dk - i);
      const vf qs = v_mul(sc, qconv ? v_load(aqh + i) : v_load_io(la_io_at(qt, i, dt), dt, n));
      acc = v_fma(v_load(k + i), qs, acc);
      v_store(aqh + i, p->gated && a ? v_mul(v_load(a + i), qs) : qs);
    }
    kq[h] = v_hsum(acc);
  }
}

static void LA_FN(la_stage_heads)(const la_job_t* J, int64_t t, const float* a, const float* k, int h0,
                                  float* aq, float* kq) {
  LA_FN(la_stage_heads_as)(J, t, a, k, h0, aq, kq, 0);
}

/* Prefetches the lines of [p, p + bytes) (la_line_first: rows need not start on a line). */
static inline void LA_FN(la_prefetch_lines)(const void* p, int64_t bytes) {
  for (uintptr_t a = la_line_first(p), e = la_line_end(p, bytes); a < e; a += 64) v_prefetch((const void*)a);
}

/* Prefetches the input rows of token t (all of the unit's heads and columns). Inlined where a
 * call would cost more than the prefetches: every vector register is the caller's to save. */
static inline __attribute__((always_inline)) void LA_FN(la_prefetch_inputs_as)(const la_job_t* J, int64_t t) {
  const la_params* p = J->p;
  const la_unit* u = J->u;
  const linattn_dtype dt = p->io_dtype;
  const int64_t esz = dt == LINATTN_DTYPE_F32 ? 4 : 2;
  for (int h = 0; h < J->nq; h++)
    LA_FN(la_prefetch_lines)(la_io_at(u->q, t * u->q_token_stride + (int64_t)h * u->q_head_stride, dt), J->dk * esz);
  LA_FN(la_prefetch_lines)(la_io_at(u->k, t * u->k_token_stride, dt), J->dk * esz);
  LA_FN(la_prefetch_lines)(la_io_at(u->v, t * u->v_token_stride, dt), J->nc * esz);
  const linattn_dtype gd = la_gate_dtype(p);
  if (p->gated)
    LA_FN(la_prefetch_lines)(la_io_at(u->decay, t * u->decay_token_stride, gd),
                             (p->decay_kind == LA_DECAY_PER_KEY ? J->dk : 1) * (gd == LINATTN_DTYPE_F32 ? 4 : 2));
  if (p->delta) v_prefetch(la_io_at(u->beta, t * u->beta_token_stride, gd));
}

static void LA_FN(la_prefetch_inputs)(const la_job_t* J, int64_t t) { LA_FN(la_prefetch_inputs_as)(J, t); }

/* Prefetches for writing the output rows of token t (all of the unit's heads and columns). */
static void LA_FN(la_prefetch_out)(const la_job_t* J, int64_t t) {
  const la_unit* u = J->u;
  const linattn_dtype dt = J->p->io_dtype;
  const int64_t bytes = J->nc * (dt == LINATTN_DTYPE_F32 ? 4 : 2);
  for (int h = 0; h < J->nq; h++) {
    const void* o = la_io_at(u->out, t * u->out_token_stride + (int64_t)h * u->out_head_stride, dt);
    for (uintptr_t a = la_line_first(o), e = la_line_end(o, bytes); a < e; a += 64) v_prefetch_w((const void*)a);
  }
}

/* Whether slot sl (>= 1) has its own la_tile.akx / aqx rows: only where slot sl - 1 ends a
 * decay segment. Elsewhere its factor is 1 and those rows would be copies of ak / aq (x * 1 is
 * exact), so the pair sweeps read ak / aq instead. */
static inline int LA_FN(la_pair_scaled)(const la_job_t* J, const la_tile_t* Tl, int64_t sl) {
  return J->p->gated && Tl->seg_end[sl - 1];
}

/* la_stage_pair with the decay folded out (la_job.fold): no rows, the scalars cx, dx and the
 * look-ahead scale fs[3 sl + 1] (the values of la_stage_pair up to rounding:
 * cx = (1 / C or 1)_{sl-1} C_sl k_{sl-1} . k_sl, likewise dx with scale q). */
static void LA_FN(la_stage_pair_fold)(const la_job_t* J, la_tile_t* Tl, int64_t sl) {
  const int64_t dkp = J->dkp;
  const float* kp = Tl->k + (sl - 1) * dkp;
  const float* kn = Tl->k + sl * dkp;
  float* fs = Tl->fs;
  const float w = fs[3 * sl - 1] * fs[3 * sl]; /* u's factor of slot sl - 1, C of slot sl */
  fs[3 * sl + 1] = (Tl->seg_end[sl - 1] ? fs[3 * sl - 3] : 1.0f) * fs[3 * sl];
  vf c = v_zero();
  for (int64_t i = 0; i < dkp; i += LA_VL) c = v_fma(v_load(kp + i), v_load(kn + i), c);
  Tl->cx[sl] = w * v_hsum(c);
  for (int h = 0; h < J->G; h++) {
    const float* aq = Tl->aq + (sl * J->G + h) * dkp;
    vf d = v_zero();
    for (int64_t i = 0; i < dkp; i += LA_VL) d = v_fma(v_load(kp + i), v_load(aq + i), d);
    Tl->dx[sl * LA_KQ_STRIDE + h] = w * v_hsum(d);
  }
}

/* The two-token values of slot sl (la_tile.akx: stored only where la_pair_scaled), from slots
 * sl - 1 and sl. */
static void LA_FN(la_stage_pair)(const la_job_t* J, la_tile_t* Tl, int64_t sl) {
  const int64_t dkp = J->dkp;
  const float* kp = Tl->k + (sl - 1) * dkp; /* update key of slot sl - 1 */
  const int scaled = LA_FN(la_pair_scaled)(J, Tl, sl);
  const float* fp = Tl->a + (sl - 1) * dkp;
  const float* ak = Tl->ak + sl * dkp;
  float* akx = Tl->akx + sl * dkp;
  vf c = v_zero();
  for (int64_t i = 0; i < dkp; i += LA_VL) {
    const vf a = v_load(ak + i);
    c = v_fma(v_load(kp + i), a, c);
    if (scaled) v_store(akx + i, v_mul(v_load(fp + i), a));
  }
  Tl->cx[sl] = v_hsum(c);
  for (int h = 0; h < J->G; h++) {
    const float* aq = Tl->aq + (sl * J->G + h) * dkp;
    float* aqx = Tl->aqx + (sl * J->G + h) * dkp;
    vf d = v_zero();
    for (int64_t i = 0; i < dkp; i += LA_VL) {
      const vf a = v_load(aq + i);
      d = v_fma(v_load(kp + i), a, d);
      if (scaled) v_store(aqx + i, v_mul(v_load(fp + i), a));
    }
    Tl->dx[sl * LA_KQ_STRIDE + h] = v_hsum(d);
  }
}

/* Starts staging tokens t0 .. t0 + nst - 1 into slots 0 .. nst - 1 of buf; n = tokens of the
 * tile (nst is n, or n + 1 with the next tile's first token, whose weights the tile's last
 * sweep accumulates). */
static void LA_FN(la_stage_begin)(la_stager_t* st, la_tile_t* buf, int64_t t0, int64_t n, int64_t nst) {
  st->buf = buf;
  st->t0 = t0;
  st->n = n;
  st->nst = nst;
  st->next = 0;
  st->seg_start = 1;
  st->c_head = 1.0f;
  st->l1_prefetch = 1;
}

/* Stages the next slot of the tile in progress. PLAIN (la_job.stage_plain): fp32 inputs, decay
 * and beta, d_k a multiple of LA_VL, no fused gate or capture, so the dtype and lane choices
 * fold away (2: per-key decay, 1: not, 3: q/k L2 norm and no per-key decay); the same
 * arithmetic either way. */
static inline __attribute__((always_inline)) void LA_FN(la_stage_slot)(const la_job_t* J, const int PLAIN,
                                                                       const int FOLD) {
  la_stager_t* st = J->st;
  const la_params* p = J->p;
  const la_unit* u = J->u;
  const linattn_dtype dt = PLAIN ? LINATTN_DTYPE_F32 : p->io_dtype;
  const int64_t dkp = J->dkp, sl = st->next++, t = st->t0 + sl;
  la_tile_t* Tl = st->buf;
  const int per_key = PLAIN ? PLAIN == 2 : p->gated && p->decay_kind == LA_DECAY_PER_KEY;
  const float hi = (float)(1ull << LA_FOLD_EXP), lo = 1.0f / hi;
  /* Only within the tile being staged: in lock-step the next tile is staged after every other
   * unit's turn, by when the lines would be evicted. */
  if (sl == 0)
    for (int64_t i = 1; i < LA_PREFETCH_TOKENS && i < st->nst; i++) LA_FN(la_prefetch_inputs)(J, t + i);
  if (sl + LA_PREFETCH_TOKENS < st->nst) LA_FN(la_prefetch_inputs)(J, t + LA_PREFETCH_TOKENS);
  float* ks = Tl->k + sl * dkp;
  /* Two-token sweeps without extra head groups read a slot's k as given (kt) only while it is
   * staged, and C (a) only where the slot ends a segment: such rows go to J->xaq (free then,
   * and in L1) instead of the tile, which is larger than L1. */
  const int slot_rows = !J->pair || J->nq > LA_GMAX;
  float* cs = Tl->a + sl * dkp;
  /* fold: k as given is the update key row itself (u carries the 1 / C) */
  const int fold = FOLD; /* la_job.fold */
  float* kts = fold ? ks : slot_rows ? Tl->kt + sl * dkp : J->xaq;
  float* aks = Tl->ak + sl * dkp;
  const void* kt = la_io_at(u->k, t * u->k_token_stride, dt);
  const linattn_dtype gd = PLAIN ? LINATTN_DTYPE_F32 : la_gate_dtype(p);
  const void* gt = p->gated ? la_io_at(u->decay, t * u->decay_token_stride, gd) : NULL;
  /* GatedDeltaNet: fused gate (per-key log-decays through aks as a temporary, overwritten
   * below), key normalisation, capture of this token's decay and key */
  const int gate_row = !PLAIN && per_key && p->gate != LA_GATE_NONE;
  const int l2 = PLAIN ? PLAIN == 3 : p->qk_l2_norm;
  if (gate_row) LA_FN(la_gate_row)(J, gt, aks);
  const int kconv = l2 && dt != LINATTN_DTYPE_F32; /* k converted into kts by the norm's pass */
  const vf kscale = v_set1(l2 ? LA_FN(la_l2_inv_row_as)(J, kt, kconv ? kts : NULL, PLAIN) : 1.0f);
  const int cap = !PLAIN && t < u->cap_tokens;
  float* cap_decay = cap && u->cap_decay ? u->cap_decay + t * u->cap_decay_stride : NULL;
  int in_range = 1;
  float a_head = 1.0f;
  if (p->gated && !per_key) {
    a_head = expf(la_gate_log_decay(p, u, linattn_load_f32(gt, 0, gd), 0));
    st->c_head = st->seg_start ? a_head : st->c_head * a_head;
    in_range = st->c_head >= lo && st->c_head <= hi;
  }
  if (cap_decay && !per_key) cap_decay[0] = a_head;
  if (!slot_rows && !per_key && p->gated && in_range && sl + 1 < st->n && !J->vdirect) cs = J->xaq + dkp;
  const vf ch = v_set1(st->c_head);
  for (int64_t i = 0; i < dkp; i += LA_VL) {
    const int nv = PLAIN || J->dk - i >= LA_VL ? LA_VL : (int)(J->dk - i);
    vf kv = kconv ? v_load(kts + i) : v_load_io(la_io_at(kt, i, dt), dt, nv);
    if (l2) kv = v_mul(kv, kscale);
    vf cv = ch;
    if (per_key) {
      /* padding lanes: exp(0) = 1 */
      const vf av = v_exp(gate_row ? v_load(aks + i) : v_load_io(la_io_at(gt, i, gd), gd, nv));
      cv = st->seg_start ? av : v_mul(v_load(cs - dkp + i), av);
      in_range &= v_in_range(cv, lo, hi);
      if (cap_decay) LA_FN(la_store_lanes)(cap_decay + i, av, nv);
    }
    v_store(kts + i, kv);
    v_store(cs + i, cv);
    if (!fold) v_store(aks + i, p->gated ? v_mul(cv, kv) : kv);
  }
  if (cap && u->cap_key) memcpy(u->cap_key + t * u->cap_key_stride, kts, sizeof(float) * (size_t)J->dk);
  LA_FN(la_stage_heads_as)(J, t, fold ? NULL : cs, kts, 0, Tl->aq + sl * J->G * dkp, Tl->kq + sl * LA_KQ_STRIDE, PLAIN);
  /* the tile's last token always ends a segment: the next tile starts from the true state */
  const int end = !p->gated || !in_range || sl + 1 >= st->n || J->vdirect;
  Tl->seg_end[sl] = end;
  if (fold) {
    Tl->fs[3 * sl] = st->c_head;
    Tl->fs[3 * sl + 1] = st->c_head;
    Tl->fs[3 * sl + 2] = end ? 1.0f : 1.0f / st->c_head;
  } else if (end) {
    for (int64_t i = 0; i < dkp; i += LA_VL) v_store(ks + i, v_load(kts + i));
  } else if (per_key) {
    for (int64_t i = 0; i < dkp; i += LA_VL) v_store(ks + i, v_div(v_load(kts + i), v_load(cs + i)));
  } else {
    const vf rc = v_set1(1.0f / st->c_head);
    for (int64_t i = 0; i < dkp; i += LA_VL) v_store(ks + i, v_mul(v_load(kts + i), rc));
  }
  st->seg_start = end;
  Tl->beta[sl] = la_beta_at(p, u, t);
  if (J->pair && sl > 0) {
    if (fold) LA_FN(la_stage_pair_fold)(J, Tl, sl);
    else LA_FN(la_stage_pair)(J, Tl, sl);
  }
  /* v of the whole tile up front: no exposed cache miss at the head of each sweep's
   * dependency chain. */
  const void* vt = la_io_at(u->v, t * u->v_token_stride, dt);
  float* vs = Tl->v + sl * J->ncp;
  for (int64_t c = 0; c < J->ncp; c += LA_VL) {
    const int nv = J->nc - c < LA_VL ? (int)(J->nc - c) : LA_VL;
    v_store(vs + c, v_load_io(la_io_at(vt, c, dt), dt, nv));
  }
}

/* Stages the next slot of the tile in progress, if any. */
static __attribute__((noinline)) void LA_FN(la_stage_next)(const la_job_t* J) {
  if (J->st->next >= J->st->nst) return;
  if (J->fold) {
    if (!J->stage_plain) LA_FN(la_stage_slot)(J, 0, 1);
    else if (J->p->qk_l2_norm) LA_FN(la_stage_slot)(J, 3, 1);
    else LA_FN(la_stage_slot)(J, 1, 1);
  } else if (!J->stage_plain) LA_FN(la_stage_slot)(J, 0, 0);
  else if (J->p->gated && J->p->decay_kind == LA_DECAY_PER_KEY) LA_FN(la_stage_slot)(J, 2, 0);
  else if (J->p->qk_l2_norm) LA_FN(la_stage_slot)(J, 3, 0);
  else LA_FN(la_stage_slot)(J, 1, 0);
}

#if LA_STAGE_TILE
/* Parts of the tile bursts below (la_stage_tile_per_key_nv, la_stage_tile_fold_nv), inlined
 * into their slot loop so that no call spills the rows held in registers. */

/* The L1 prefetches of la_stage_slot at slot sl of nst (token t), where st->l1_prefetch
 * (pf, read once by the burst: stores may alias it). */
static inline __attribute__((always_inline)) void LA_FN(la_burst_prefetch)(const la_job_t* J, int64_t t, int64_t sl,
                                                                           int64_t nst, const int pf) {
  if (!pf) return;
  if (sl == 0)
    for (int64_t i = 1; i < LA_PREFETCH_TOKENS && i < nst; i++) LA_FN(la_prefetch_inputs)(J, t + i);
  if (sl + LA_PREFETCH_TOKENS < nst) LA_FN(la_prefetch_inputs_as)(J, t + LA_PREFETCH_TOKENS);
}

/* la_stage_heads_as with k, and C unless folded (c NULL), of NV vectors in registers:
 * aq_h = C .* scale q_h (or scale q_h), kq_h = k . scale q_h; q of dtype DT. */
static inline __attribute__((always_inline)) void LA_FN(la_burst_heads)(const la_job_t* J, const la_tile_t* Tl, int64_t t,
                                                                        int64_t sl, const vf* k, const vf* c, const int NV,
                                                                        const linattn_dtype DT, const int ONE) {
  const la_unit* u = J->u;
  const int64_t dkp = J->dkp;
  const int G = ONE ? 1 : J->G, nq = ONE ? 1 : J->nq;
  const vf sc = v_set1(J->p->scale);
  for (int h = 0; h < G; h++) {
    float* aq = Tl->aq + (sl * G + h) * dkp;
    if (h >= nq) {
      for (int j = 0; j < NV; j++) v_store(aq + j * LA_VL, v_zero());
      Tl->kq[sl * LA_KQ_STRIDE + h] = 0.0f;
      continue;
    }
    const void* qt = la_io_at(u->q, t * u->q_token_stride + (int64_t)h * u->q_head_stride, DT);
    vf acc = v_zero();
    for (int j = 0; j < NV; j++) {
      const vf qs = v_mul(sc, v_load_io(la_io_at(qt, j * LA_VL, DT), DT, LA_VL));
      acc = v_fma(k[j], qs, acc);
      v_store(aq + j * LA_VL, c ? v_mul(c[j], qs) : qs);
    }
    Tl->kq[sl * LA_KQ_STRIDE + h] = v_hsum(acc);
  }
}

/* The v row (dtype DT) of token t into slot sl (whole vectors; a masked tail where d_v is not a
 * multiple). */
static inline __attribute__((always_inline)) void LA_FN(la_burst_v)(const la_job_t* J, const la_tile_t* Tl, int64_t t,
                                                                    int64_t sl, const linattn_dtype DT) {
  const void* vt = la_io_at(J->u->v, t * J->u->v_token_stride, DT);
  float* vs = Tl->v + sl * J->ncp;
  const int64_t nc = J->nc; /* read once: a vector store may alias any field */
  int64_t col = 0;
  for (; col + LA_VL <= nc; col += LA_VL) v_store(vs + col, v_load_io(la_io_at(vt, col, DT), DT, LA_VL));
  if (col < nc) v_store(vs + col, v_load_io(la_io_at(vt, col, DT), DT, (int)(nc - col)));
}

/* The per-key case of la_stage_slot (no fused gate, key norm or capture, not folded) for a whole
 * tile at once, with d_k = NV vectors and inputs of dtype DT: the lock-step burst of la_tiles.
 * Slot by slot as la_stage_next would, but with no call in the slot loop (every vector register
 * is the caller's to save across one), so that a slot's decay product C and update key stay in
 * registers for the next slot (its product and la_stage_pair's sums); k as given is stored only
 * where another head group reads it, C only where that or a segment end needs it. ONE: one
 * query head (G = nq = 1) as a constant. The operations and their order are those of
 * la_stage_slot and la_stage_pair, so are the bits. */
static inline __attribute__((always_inline)) void LA_FN(la_stage_tile_per_key_nv)(const la_job_t* J, const int NV,
                                                                                  const linattn_dtype DT, const int ONE) {
  la_stager_t* st = J->st;
  const la_params* p = J->p;
  const la_unit* u = J->u;
  const la_tile_t Tl = *st->buf;
  const int64_t dkp = J->dkp, t0 = st->t0, n = st->n, nst = st->nst;
  const int G = ONE ? 1 : J->G, nq = ONE ? 1 : J->nq, pair = J->pair, delta = p->delta, vdirect = J->vdirect;
  const int pf = st->l1_prefetch;
  const int slot_rows = !pair || nq > LA_GMAX;
  const int64_t kts = u->k_token_stride, gts = u->decay_token_stride;
  const float hi = (float)(1ull << LA_FOLD_EXP), lo = 1.0f / hi;
  vf c[8], kp[8]; /* C and the update key of the slot before (NV <= 8; fixed sizes, not VLAs,
                   * so that they can live in registers) */
  for (int j = 0; j < NV; j++) c[j] = kp[j] = v_zero();
  int seg_start = st->seg_start;
  for (int64_t sl = st->next; sl < nst; sl++) {
    const int64_t t = t0 + sl;
    LA_FN(la_burst_prefetch)(J, t, sl, nst, pf);
    const void* kt = la_io_at(u->k, t * kts, DT);
    const void* gt = la_io_at(u->decay, t * gts, DT);
    float* cs = Tl.a + sl * dkp;
    vf k[8], ak[8];
    int in_range = 1;
    for (int j = 0; j < NV; j++) {
      k[j] = v_load_io(la_io_at(kt, j * LA_VL, DT), DT, LA_VL);
      const vf av = v_exp(v_load_io(la_io_at(gt, j * LA_VL, DT), DT, LA_VL));
      c[j] = seg_start ? av : v_mul(c[j], av);
      in_range &= v_in_range(c[j], lo, hi);
      if (slot_rows) v_store(Tl.kt + sl * dkp + j * LA_VL, k[j]);
      ak[j] = v_mul(c[j], k[j]);
      v_store(Tl.ak + sl * dkp + j * LA_VL, ak[j]);
    }
    LA_FN(la_burst_heads)(J, &Tl, t, sl, k, c, NV, DT, ONE);
    const int end = !in_range || sl + 1 >= n || vdirect;
    /* the two-token sweeps read C only where a segment ends (la_stage_slot stores it for the
     * next slot's product, which c holds here) */
    if (slot_rows || end)
      for (int j = 0; j < NV; j++) v_store(cs + j * LA_VL, c[j]);
    Tl.seg_end[sl] = end;
    Tl.beta[sl] = delta ? la_beta_at(p, u, t) : 1.0f;
    if (pair && sl > 0) { /* la_stage_pair, with kp and ak from registers */
      const int scaled = seg_start; /* the slot before ended a segment (la_pair_scaled) */
      const float* fp = cs - dkp;
      vf cx = v_zero();
      for (int j = 0; j < NV; j++) {
        cx = v_fma(kp[j], ak[j], cx);
        if (scaled) v_store(Tl.akx + sl * dkp + j * LA_VL, v_mul(v_load(fp + j * LA_VL), ak[j]));
      }
      Tl.cx[sl] = v_hsum(cx);
      for (int h = 0; h < G; h++) {
        const float* aq = Tl.aq + (sl * G + h) * dkp;
        float* aqx = Tl.aqx + (sl * G + h) * dkp;
        vf d = v_zero();
        for (int j = 0; j < NV; j++) {
          const vf a = v_load(aq + j * LA_VL);
          d = v_fma(kp[j], a, d);
          if (scaled) v_store(aqx + j * LA_VL, v_mul(v_load(fp + j * LA_VL), a));
        }
        Tl.dx[sl * LA_KQ_STRIDE + h] = v_hsum(d);
      }
    }
    for (int j = 0; j < NV; j++) {
      kp[j] = end ? k[j] : v_div(k[j], c[j]);
      v_store(Tl.k + sl * dkp + j * LA_VL, kp[j]);
    }
    seg_start = end;
    LA_FN(la_burst_v)(J, &Tl, t, sl, DT);
  }
  st->next = nst;
  st->seg_start = seg_start;
}

/* The per-head decay case of la_stage_slot folded out of the rows (la_job.fold; no fused gate,
 * key norm or capture) for a whole tile at once, with d_k = NV vectors and inputs of dtype DT, as
 * la_stage_tile_per_key_nv: the tile's decay products and segment ends first (scalars; expf is
 * a call, which would spill the rows), then the slots with the previous slot's k in registers
 * for la_stage_pair_fold's sums. Same operations in the same order, same bits. */
static inline __attribute__((always_inline)) void LA_FN(la_stage_tile_fold_nv)(const la_job_t* J, const int NV,
                                                                               const linattn_dtype DT) {
  la_stager_t* st = J->st;
  const la_params* p = J->p;
  const la_unit* u = J->u;
  const la_tile_t Tl = *st->buf;
  const int64_t dkp = J->dkp, t0 = st->t0, n = st->n, nst = st->nst;
  const int G = J->G, nq = J->nq, pair = J->pair, delta = p->delta, pf = st->l1_prefetch;
  const int slot_rows = !pair || nq > LA_GMAX;
  const int64_t kts = u->k_token_stride, gts = u->decay_token_stride;
  const float hi = (float)(1ull << LA_FOLD_EXP), lo = 1.0f / hi;
  float chead[LA_TILE_TOKENS + 1];
  int ends[LA_TILE_TOKENS + 1];
  int seg_start = st->seg_start;
  float c_head = st->c_head;
  for (int64_t sl = st->next; sl < nst; sl++) {
    const float a_head = expf(la_gate_log_decay(p, u, linattn_load_f32(u->decay, (t0 + sl) * gts, DT), 0));
    c_head = seg_start ? a_head : c_head * a_head;
    const int in_range = c_head >= lo && c_head <= hi;
    chead[sl] = c_head;
    ends[sl] = seg_start = !in_range || sl + 1 >= n || J->vdirect;
  }
  vf kp[8]; /* k of the slot before (NV <= 8) */
  for (int j = 0; j < NV; j++) kp[j] = v_zero();
  for (int64_t sl = st->next; sl < nst; sl++) {
    const int64_t t = t0 + sl;
    LA_FN(la_burst_prefetch)(J, t, sl, nst, pf);
    const float c = chead[sl];
    const int end = ends[sl];
    /* C is read back only where the slot ends a segment or other head groups need it */
    const int c_row = slot_rows || end;
    const void* kt = la_io_at(u->k, t * kts, DT);
    const vf ch = v_set1(c);
    vf k[8];
    for (int j = 0; j < NV; j++) {
      k[j] = v_load_io(la_io_at(kt, j * LA_VL, DT), DT, LA_VL);
      v_store(Tl.k + sl * dkp + j * LA_VL, k[j]);
      if (c_row) v_store(Tl.a + sl * dkp + j * LA_VL, ch);
    }
    LA_FN(la_burst_heads)(J, &Tl, t, sl, k, NULL, NV, DT, 0);
    Tl.seg_end[sl] = end;
    float* fs = Tl.fs;
    fs[3 * sl] = c;
    fs[3 * sl + 1] = c;
    fs[3 * sl + 2] = end ? 1.0f : 1.0f / c;
    Tl.beta[sl] = delta ? la_beta_at(p, u, t) : 1.0f;
    if (pair && sl > 0) { /* la_stage_pair_fold, with the k of both slots from registers */
      const float w = fs[3 * sl - 1] * fs[3 * sl];
      fs[3 * sl + 1] = (ends[sl - 1] ? fs[3 * sl - 3] : 1.0f) * fs[3 * sl];
      vf cx = v_zero();
      for (int j = 0; j < NV; j++) cx = v_fma(kp[j], k[j], cx);
      Tl.cx[sl] = w * v_hsum(cx);
      for (int h = 0; h < G; h++) {
        const float* aq = Tl.aq + (sl * G + h) * dkp;
        vf d = v_zero();
        for (int j = 0; j < NV; j++) d = v_fma(kp[j], v_load(aq + j * LA_VL), d);
        Tl.dx[sl * LA_KQ_STRIDE + h] = w * v_hsum(d);
      }
    }
    for (int j = 0; j < NV; j++) kp[j] = k[j];
    LA_FN(la_burst_v)(J, &Tl, t, sl, DT);
  }
  st->next = nst;
  st->seg_start = seg_start;
  st->c_head = c_head;
}
#endif

/* Stages the whole tile in progress (lock-step, la_tiles): la_stage_tile_per_key_nv or
 * la_stage_tile_fold_nv where the ISA enables them (LA_STAGE_TILE: 32 vector registers, so that
 * the rows of 4 or 8 vectors stay in them), else slot by slot. */
static void LA_FN(la_stage_tile)(const la_job_t* J) {
#if LA_STAGE_TILE
  const linattn_dtype dt = J->p->io_dtype;
  const int nv = J->st->next == 0 ? J->burst : 0, per_key = !J->fold;
  /* one query head per unit (rwkv6-7b): its own fp32 copy, without the head-group loops */
  const int one = J->G == 1 && J->nq == 1 && dt == LINATTN_DTYPE_F32;
#define LA_BURST(FN, NV, ...)                                                                  \
  do {                                                                                         \
    if (dt == LINATTN_DTYPE_F32) LA_FN(FN)(J, NV, LINATTN_DTYPE_F32, ##__VA_ARGS__);           \
    else if (dt == LINATTN_DTYPE_F16) LA_FN(FN)(J, NV, LINATTN_DTYPE_F16, ##__VA_ARGS__);      \
    else LA_FN(FN)(J, NV, LINATTN_DTYPE_BF16, ##__VA_ARGS__);                                  \
    return;                                                                                    \
  } while (0)
  if (per_key && nv == 4 && one) {
    LA_FN(la_stage_tile_per_key_nv)(J, 4, LINATTN_DTYPE_F32, 1);
    return;
  }
  if (per_key && nv == 4) LA_BURST(la_stage_tile_per_key_nv, 4, 0);
  if (per_key && nv == 8) LA_BURST(la_stage_tile_per_key_nv, 8, 0);
  if (!per_key && nv == 4) LA_BURST(la_stage_tile_fold_nv, 4);
  if (!per_key && nv == 8) LA_BURST(la_stage_tile_fold_nv, 8);
#undef LA_BURST
#endif
  while (J->st->next < J->st->nst) LA_FN(la_stage_next)(J);
}

/* ------------------------------------------------------------------ the sweep */

#ifndef LA_DECODE_REV
#define LA_DECODE_REV 1
#endif
enum { LA_ACC = 0, LA_UPD_ACC = 1, LA_UPD = 2, LA_UPD_NEXT = 3, LA_ACC_UPD = 4 };
/* The one pass of a 16-bit state under decode_half_convert (LA_ACC_UPD of SD 4, bf16 in column
 * pairs, and SD 5, fp16) prefetches its rows this far ahead to L1, once per line (GCC keeps no
 * v_prefetch there; docs/tuning.md, la.decode_half_convert) */
#define LA_HALF_PF_ROWS 16
#define LA_HALF_PF(SD, MODE) (((SD) == 4 || (SD) == 5) && (MODE) == LA_ACC_UPD)
/* PREFETCH 4 (the one pass of an fp32 state under la_tuning.decode_one_pass_prefetch): the same
 * L1 prefetch, as far ahead (docs/tuning.md, la.decode_one_pass_prefetch) */
#define LA_ONE_PASS_PF(SD, MODE, PREFETCH) (LA_HALF_PF(SD, MODE) || ((MODE) == LA_ACC_UPD && (PREFETCH) == 4))
#define LA_PF_ROWS(SD, MODE, PREFETCH) (LA_ONE_PASS_PF(SD, MODE, PREFETCH) ? LA_HALF_PF_ROWS : 8)
/* The chain's update sweeps (and a chained unit's last one): rows last to first for fp32
 * (LA_DECODE_REV), first to last for a 16-bit state (measured faster: docs/tuning.md,
 * la.decode_half_chain). Either order gives the same bits. */
#define LA_CHAIN_REV(SD) ((SD) ? 0 : LA_DECODE_REV)
/* Vector j of a row of esz-byte elements starts a 64-byte line (or a smaller vector that does):
 * the overlapped decode prefetches once per line (a 16-bit row's vectors are half lines). */
#define LA_LINE_START(j, esz) ((LA_VL * (esz) >= 64) || ((j) * LA_VL * (esz)) % 64 == 0)

/* State element kinds of the sweeps (compile-time SD): 0 fp32, 1 fp16, 2 bf16 (la_params.state_dtype),
 * 3 bf16 stored by the ISA's own conversion (LA_BF16_STORE_NATIVE), and where a decode panel has
 * half_convert, 4 bf16 in column pairs (LA_BF16_PAIRS) and 5 fp16 stored by v_store_f16_mem
 * (LA_F16_STORE_MEM). A half-precision state is
 * converted as its rows are loaded, and rounded to nearest even as they are stored. */
#define LA_SD_SIZE(SD) ((SD) ? 2 : 4)
#define LA_SD_DTYPE(SD) ((SD) == 1 || (SD) == 5 ? LINATTN_DTYPE_F16 : (SD) >= 2 ? LINATTN_DTYPE_BF16 : LINATTN_DTYPE_F32)
#ifdef LA_BF16_STORE_NATIVE
#define LA_SD_KINDS 3
#else
#define LA_SD_KINDS 2
#define v_store_bf16_native(p, x) v_store_io(p, LINATTN_DTYPE_BF16, x, LA_VL) /* never instantiated */
#endif
static inline __attribute__((always_inline)) vf LA_FN(la_load_state)(const char* p, const int SD) {
  return SD ? v_load_io(p, LA_SD_DTYPE(SD), LA_VL) : v_load((const float*)(const void*)p);
}
/* Vector j of a state row. SD 4 (LA_BF16_PAIRS): bf16 in column pairs, vector 2g holding the even
 * and 2g + 1 the odd columns of the row's 32-column group g. */
static inline __attribute__((always_inline)) vf LA_FN(la_load_row)(const char* row, int j, const int SD) {
#ifdef LA_BF16_PAIRS
  if (SD == 4) return j & 1 ? v_load_bf16_odd(row + (j - 1) * LA_VL * 2) : v_load_bf16_even(row + j * LA_VL * 2);
#endif
  return LA_FN(la_load_state)(row + j * LA_VL * LA_SD_SIZE(SD), SD);
}
static inline __attribute__((always_inline)) void LA_FN(la_store_state)(char* p, vf x, const int SD) {
  if (SD == 3) v_store_bf16_native(p, x);
#ifdef LA_F16_STORE_MEM
  else if (SD == 5) v_store_f16_mem(p, x);
#endif
  else if (SD) v_store_io(p, LA_SD_DTYPE(SD), x, LA_VL);
  else v_store((float*)(void*)p, x);
}

/* Retrieval and readout of state row i (x): p += x ak_i (delta rules), s_h += x aq_h,i. A macro,
 * not an inline function: the three sweeps that use it then compile exactly as when each wrote
 * it out (an always_inline function changed GCC's register allocation of the sweeps). */
#define LA_ACC_ROW(x, ak, aq, aq_stride, i, p, s, NQ, W, DELTA)      \
  do {                                                              \
    if (DELTA) {                                                    \
      const vf b_ = v_set1((ak)[i]);                                \
      _Pragma("GCC unroll 8") for (int j_ = 0; j_ < (W); j_++)      \
        (p)[j_] = v_fma((x)[j_], b_, (p)[j_]);                      \
    }                                                               \
    _Pragma("GCC unroll 8") for (int h_ = 0; h_ < (NQ); h_++) {     \
      const vf b_ = v_set1((aq)[h_ * (aq_stride) + (i)]);           \
      _Pragma("GCC unroll 8") for (int j_ = 0; j_ < (W); j_++)      \
        (s)[h_][j_] = v_fma((x)[j_], b_, (s)[h_][j_]);              \
    }                                                               \
  } while (0)

/* One pass over the d_k rows of a panel.
 *   LA_ACC:      x = src row;                        p += x ak_i, s_h += x aq_h,i
 *   LA_UPD_ACC:  x = a_i src row + k_i u, dst = x;   p += x ak_i, s_h += x aq_h,i
 *   LA_UPD:      x = a_i src row + k_i u, dst = x (streamed when STREAM)
 *   LA_UPD_NEXT: LA_UPD, and y = the next panel's src row (W vectors further, not yet
 *                updated): p += y ak_i, s_h += y aq_h,i (that panel's LA_ACC sums; decode)
 *   LA_ACC_UPD:  x = src row; dst = a_i x + k_i u;   s_h += x aq_h,i (no delta: u does not
 *                depend on the sums; LA_ACC then LA_UPD in one pass, decode)
 * (a_i src row is just src row when DECAY is 0: not gated, or inside a folded segment)
 * src and dst rows hold elements of kind SD (LA_SD_SIZE); ld counts elements.
 * PREFETCH: 1 the loaded rows 8 ahead, to L1; 2 (first panel of an overlapped decode) also the
 * rest of each row to L2; 3 (LA_UPD, last panel of an overlapped decode) the rows 8 ahead, writable.
 * (LA_ACC_UPD of SD 4 and 5, and of SD 0 with PREFETCH 4, prefetches LA_HALF_PF_ROWS ahead, by v_prefetch_l1.)
 * All arguments that select code are compile-time constants after inlining. */
static inline __attribute__((always_inline)) void LA_FN(la_sweep_at)(
    const void* src, void* dst, int64_t ld, int64_t dk, const float* a, const float* k, const float* ak,
    const float* aq, int64_t aq_stride, const vf* u, vf* p, vf s[][LA_WCAP], const int NQ, const int W,
    const int DECAY, const int DELTA, const int MODE, const int STREAM, const int PREFETCH, const int SD,
    const int64_t next_off, const int REV) {
  const int64_t esz = LA_SD_SIZE(SD);
  for (int64_t i = 0; i < dk; i++) {
    vf x[LA_WCAP];
    if (MODE == LA_ACC || MODE == LA_UPD_NEXT || MODE == LA_ACC_UPD) {
      /* LA_UPD_NEXT: the next panel's row, loaded before the update's stores */
      const char* sr = (const char*)src + i * ld * esz + (MODE == LA_UPD_NEXT ? next_off : 0);
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) x[j] = LA_FN(la_load_row)(sr, j, SD);
      /* overlapped decode, 16-bit one pass: an L1 prefetch the compiler keeps */
      if (PREFETCH == 2 || MODE == LA_UPD_NEXT || LA_ONE_PASS_PF(SD, MODE, PREFETCH)) {
#pragma GCC unroll 8
        for (int j = 0; j < W; j++)
          if (LA_LINE_START(j, esz)) v_prefetch_l1(sr + (LA_PF_ROWS(SD, MODE, PREFETCH) * ld + j * LA_VL) * esz);
      } else if (PREFETCH) {
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) v_prefetch(sr + (8 * ld + j * LA_VL) * esz);
      }
      if (PREFETCH == 2) { /* the next panel's part of the row, to L2: whole rows stream from DRAM */
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) __builtin_prefetch(sr + (8 * ld + (W + j) * LA_VL) * esz, 0, 2);
      }
    }
    if (MODE != LA_ACC) {
      /* REV (LA_UPD, LA_UPD_NEXT): rows updated last to first (the sums keep their order) */
      const int64_t r = REV ? dk - 1 - i : i;
      const char* sr = (const char*)src + r * ld * esz;
      char* dr = (char*)dst + r * ld * esz;
      vf y[LA_WCAP];
      if (!STREAM && (MODE == LA_UPD_NEXT || PREFETCH == 3)) {
        /* overlapped decode: this panel's rows 8 ahead, writable (their lines have mostly left
         * the L1 since the panel's read: 16 rows per L1 set at a 512-byte row stride) */
#pragma GCC unroll 8
        for (int j = 0; j < W; j++)
          if (LA_LINE_START(j, esz)) v_prefetch_w(dr + ((REV ? -8 : 8) * ld + j * LA_VL) * esz);
      }
      const vf kb = v_set1(k[r]);
      if (MODE == LA_ACC_UPD) { /* the row loaded above */
        const vf ab = v_set1(DECAY ? a[i] : 1.0f);
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) y[j] = v_fma(kb, u[j], DECAY ? v_mul(x[j], ab) : x[j]);
      } else if (DECAY) {
        const vf ab = v_set1(a[r]);
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) y[j] = v_fma(kb, u[j], v_mul(LA_FN(la_load_row)(sr, j, SD), ab));
      } else {
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) y[j] = v_fma(kb, u[j], LA_FN(la_load_row)(sr, j, SD));
      }
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) {
        if (STREAM) v_stream((float*)(void*)(dr + j * LA_VL * esz), y[j]);
#ifdef LA_BF16_PAIRS
        else if (SD == 4) {
          if (j & 1) v_store_bf16_pair(dr + (j - 1) * LA_VL * 2, y[j - 1], y[j]);
        }
#endif
        else LA_FN(la_store_state)(dr + j * LA_VL * esz, y[j], SD);
      }
      if (MODE == LA_UPD_ACC) {
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) x[j] = y[j];
      }
    }
    if (MODE != LA_UPD) LA_ACC_ROW(x, ak, aq, aq_stride, i, p, s, NQ, W, DELTA);
  }
}

/* la_sweep_at whose LA_UPD_NEXT rows are the next panel's (W vectors further). */
static inline __attribute__((always_inline)) void LA_FN(la_sweep)(
    const void* src, void* dst, int64_t ld, int64_t dk, const float* a, const float* k, const float* ak,
    const float* aq, int64_t aq_stride, const vf* u, vf* p, vf s[][LA_WCAP], const int NQ, const int W,
    const int DECAY, const int DELTA, const int MODE, const int STREAM, const int PREFETCH, const int SD) {
  LA_FN(la_sweep_at)(src, dst, ld, dk, a, k, ak, aq, aq_stride, u, p, s, NQ, W, DECAY, DELTA, MODE, STREAM, PREFETCH,
                     SD, (int64_t)W * LA_VL * LA_SD_SIZE(SD), 0);
}

/* One pass over the d_k rows of a panel that applies the update of NU (1 or 2) tokens and
 * accumulates from the rows it writes:
 *   x = row; x = a1_i x + k1_i u1 (a1_i x is x when D1 is 0); NU == 2: x = a2_i x + k2_i u2;
 *   dst = x;  ACC: p += x ak_i, s_h += x aq_h,i;  LOOK: pb += x akx_i, sb_h += x aqx_h,i
 * The arithmetic of x is that of NU consecutive la_sweep updates: only where the state is
 * kept between them differs (a register instead of the panel). */
static inline __attribute__((always_inline)) void LA_FN(la_sweep_multi)(
    const float* src, float* dst, int64_t ld, int64_t dk, const float* a1, const float* k1, const vf* u1,
    const float* a2, const float* k2, const vf* u2, const float* ak, const float* aq, const float* akx,
    const float* aqx, int64_t aq_stride, vf* p, vf s[][LA_WCAP], vf* pb, vf sb[][LA_WCAP], const int NQ,
    const int W, const int NU, const int D1, const int D2, const int DELTA, const int ACC, const int LOOK) {
  for (int64_t i = 0; i < dk; i++) {
    const float* sr = src + i * ld;
    float* dr = dst + i * ld;
    vf x[LA_WCAP];
    const vf kb1 = v_set1(k1[i]);
    if (D1) {
      const vf ab = v_set1(a1[i]);
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) x[j] = v_fma(kb1, u1[j], v_mul(v_load(sr + j * LA_VL), ab));
    } else {
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) x[j] = v_fma(kb1, u1[j], v_load(sr + j * LA_VL));
    }
    if (NU == 2) {
      const vf kb2 = v_set1(k2[i]);
      if (D2) {
        const vf ab = v_set1(a2[i]);
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) x[j] = v_fma(kb2, u2[j], v_mul(x[j], ab));
      } else {
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) x[j] = v_fma(kb2, u2[j], x[j]);
      }
    }
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) v_store(dr + j * LA_VL, x[j]);
    if (ACC) LA_ACC_ROW(x, ak, aq, aq_stride, i, p, s, NQ, W, DELTA);
    if (LOOK) LA_ACC_ROW(x, akx, aqx, aq_stride, i, pb, sb, NQ, W, DELTA);
  }
}

static inline int LA_FN(la_lanes)(const la_panel_t* P, int j) {
  const int n = P->valid - j * LA_VL;
  return n < LA_VL ? n : LA_VL;
}

/* o_h = s_h + kq_h u for heads [h0, h0 + NQ) that exist, written to token t's output rows. */
static inline __attribute__((always_inline)) void LA_FN(la_write_out)(const la_job_t* J, const la_panel_t* P,
                                                                      int64_t t, int h0, const float* kq,
                                                                      const vf* u, vf s[][LA_WCAP], const int NQ,
                                                                      const int W) {
  const la_unit* un = J->u;
  const linattn_dtype dt = J->p->io_dtype;
#pragma GCC unroll 8
  for (int h = 0; h < NQ; h++) {
    if (h0 + h >= J->nq) break;
    void* ot = la_io_at_mut(un->out, t * un->out_token_stride + (int64_t)(h0 + h) * un->out_head_stride + P->col, dt);
    const vf kb = v_set1(kq[h]);
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) v_store_io(la_io_at_mut(ot, j * LA_VL, dt), dt, v_fma(kb, u[j], s[h][j]), LA_FN(la_lanes)(P, j));
  }
}

/* The prefetches a panel issues at token t (slot tl of n) of its tile. Always inlined: as a call
 * it spills the panel's accumulators every token (docs/tuning.md, la.stage_plain on Zen 4). */
static inline __attribute__((always_inline)) void LA_FN(la_token_prefetch)(const la_job_t* J, const la_panel_t* P,
                                                                           int64_t tl, int64_t n, int64_t t) {
  const int64_t T = J->T;
  if (P->prefetches && J->pf.n > 0) {
    /* The next step's input rows, two tokens' per token: the same prefetches issued at once
     * (~1000 lines) fill the miss queues, and the loads behind them wait. By the last panel, so
     * that the rows are fetched shortly before they are staged (fewer are evicted meanwhile);
     * two per token, so that they are done by the panel's middle (figures: docs/tuning.md,
     * la_token_prefetch). */
    for (int64_t i = 2 * tl; i < 2 * tl + 2 && i < J->pf.n; i++)
      la_prefetch_unit_rows(J->p, J->pf.u, J->pf.t0 + i);
    if (tl + 1 == n)
      for (int64_t i = 2 * n; i < J->pf.n; i++) la_prefetch_unit_rows(J->p, J->pf.u, J->pf.t0 + i);
  }
  if (P->stages && T > 1) {
    /* The first panel prefetches whole output rows (its lines and the other panels'), for
     * writing, within the tile like the inputs: written lines no longer wait for their reads
     * in the store queue, behind which the state stores pile up. */
    if (tl == 0)
      for (int64_t i = 0; i < LA_PREFETCH_TOKENS && i < n; i++) LA_FN(la_prefetch_out)(J, t + i);
    if (tl + LA_PREFETCH_TOKENS < n) LA_FN(la_prefetch_out)(J, t + LA_PREFETCH_TOKENS);
  }
}

/* Query heads beyond the first group of 8 (n_q > 8) at token t (slot tl): each further group
 * reads the old state S_{t-1} before the update overwrites it. */
static inline __attribute__((always_inline)) void LA_FN(la_extra_heads)(const la_job_t* J, const la_panel_t* P,
                                                                        int64_t t, int64_t tl, const vf* u, vf* p,
                                                                        const int W, const int DECAY, const int SD) {
  const la_tile_t* Tl = J->cur;
  const int64_t dkp = J->dkp;
  for (int h0 = LA_GMAX; h0 < J->nq; h0 += LA_GMAX) {
    vf xs[LA_GMAX][LA_WCAP];
    LA_FN(la_stage_heads)(J, t, Tl->a + tl * dkp, Tl->kt + tl * dkp, h0, J->xaq, J->xkq);
#pragma GCC unroll 8
    for (int h = 0; h < LA_GMAX; h++)
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) xs[h][j] = v_zero();
    LA_FN(la_sweep)(P->src, P->dst, P->ld, J->dk, NULL, NULL, NULL, J->xaq, dkp, u, p, xs, LA_GMAX, W, DECAY, 0,
                    LA_ACC, 0, 0, SD);
    LA_FN(la_write_out)(J, P, t, h0, J->xkq, u, xs, LA_GMAX, W);
  }
}

#define LA_ZERO_ACC(p, s)                                \
  do {                                                   \
    _Pragma("GCC unroll 8") for (int j = 0; j < W; j++) { \
      p[j] = v_zero();                                   \
      _Pragma("GCC unroll 8") for (int h = 0; h < NQ; h++) s[h][j] = v_zero(); \
    }                                                    \
  } while (0)

/* The panel's p and s parked in P->carry between tiles, and taken back. */
#define LA_STORE_CARRY(P, p, s)                                                             \
  do {                                                                                      \
    _Pragma("GCC unroll 8") for (int j = 0; j < W; j++) v_store((P)->carry + j * LA_VL, (p)[j]); \
    _Pragma("GCC unroll 8") for (int h = 0; h < NQ; h++)                                    \
      _Pragma("GCC unroll 8") for (int j = 0; j < W; j++)                                   \
        v_store((P)->carry + ((h + 1) * LA_WCAP + j) * LA_VL, (s)[h][j]);                    \
  } while (0)
#define LA_LOAD_CARRY(P, p, s)                                                              \
  do {                                                                                      \
    _Pragma("GCC unroll 8") for (int j = 0; j < W; j++) (p)[j] = v_load((P)->carry + j * LA_VL); \
    _Pragma("GCC unroll 8") for (int h = 0; h < NQ; h++)                                    \
      _Pragma("GCC unroll 8") for (int j = 0; j < W; j++)                                   \
        (s)[h][j] = v_load((P)->carry + ((h + 1) * LA_WCAP + j) * LA_VL);                    \
  } while (0)

/* The update sweep of the call's last token (a, k: its factors and key, u its values). A decode
 * panel with P->overlap also sums the next panel's p and s from that panel's old rows in the same
 * pass, in the order of that panel's own LA_ACC sweep (the same bits), and parks them in the
 * carry for it (P[1].primed): the next panel's reads from L2 overlap this panel's stores. */
static inline __attribute__((always_inline)) void LA_FN(la_last_update)(const la_job_t* J, la_panel_t* P,
                                                                        const float* a, const float* k,
                                                                        const vf* u, vf* p, vf s[][LA_WCAP],
                                                                        const int NQ, const int W,
                                                                        const int DECAY, const int DELTA,
                                                                        const int SD) {
  const la_tile_t* Tl = J->cur;
  const int64_t dk = J->dk, ld = P->ld;
  if (LA_DECODE_OVERLAP(NQ, W) && P->overlap) {
    LA_ZERO_ACC(p, s);
    if (SD == 0 && P->stream)
      LA_FN(la_sweep)(P->src, P->dst, ld, dk, a, k, Tl->ak, Tl->aq, J->dkp, u, p, s, NQ, W, DECAY, DELTA, LA_UPD_NEXT, 1, 1, SD);
    else
      LA_FN(la_sweep_at)(P->src, P->dst, ld, dk, a, k, Tl->ak, Tl->aq, J->dkp, u, p, s, NQ, W, DECAY, DELTA, LA_UPD_NEXT, 0, 1,
                         SD, (int64_t)W * LA_VL * LA_SD_SIZE(SD), LA_DECODE_REV);
    LA_STORE_CARRY(P + 1, p, s);
    P[1].primed = 1;
  } else if (SD == 0 && P->stream) {
    LA_FN(la_sweep)(P->src, P->dst, ld, dk, a, k, NULL, NULL, 0, u, p, s, NQ, W, DECAY, DELTA, LA_UPD, 1, 0, SD);
  } else if (LA_DECODE_CHAINS(NQ, W, SD) && J->chain && P == J->panels + J->npanels - 1) {
    /* decode chain: the next unit's first panel (same width, row stride and heads), summed with
     * that unit's staged weights, as its own first read sweep would (la_run_chain) */
    la_job_t* Jn = J->chain;
    la_panel_t* Pn = &Jn->panels[0];
    const la_tile_t* Tn = &Jn->tiles[0];
    const int64_t off = (int64_t)((uintptr_t)Pn->src - (uintptr_t)P->src);
    LA_ZERO_ACC(p, s);
    LA_FN(la_sweep_at)(P->src, P->dst, ld, dk, a, k, Tn->ak, Tn->aq, Jn->dkp, u, p, s, NQ, W, DECAY, DELTA,
                       LA_UPD_NEXT, 0, 1, SD, off, LA_CHAIN_REV(SD));
    LA_STORE_CARRY(Pn, p, s);
    Pn->primed = 1;
  } else if (LA_DECODE_CHAINS(NQ, W, SD) && P->primed) { /* the last panel of an overlapped or chained decode */
    LA_FN(la_sweep_at)(P->src, P->dst, ld, dk, a, k, NULL, NULL, 0, u, p, s, NQ, W, DECAY, DELTA, LA_UPD, 0, 3, SD, 0,
                       LA_CHAIN_REV(SD));
  } else {
    LA_FN(la_sweep)(P->src, P->dst, ld, dk, a, k, NULL, NULL, 0, u, p, s, NQ, W, DECAY, DELTA, LA_UPD, 0, 0, SD);
  }
}

/* The one token of a decode call (T == 1) without the delta rule, elements of kind SD: u = v does
 * not depend on the sums, so one pass reads each row once, sums s from it and writes the updated
 * row (LA_ACC_UPD): the operations of the read sweep and then the update sweep, in their order.
 * Not for more than LA_GMAX query heads (la_extra_heads reads the old rows again), nor where
 * la_params.decode_split asks for the two sweeps. SD 4 (bf16 in column pairs, P->half_convert):
 * u enters in the sweep's column order and s leaves in memory order; the decay and k are per
 * row, so each column's operations are those of the plain order. */
static inline __attribute__((always_inline)) void LA_FN(la_decode_one_pass)(const la_job_t* J, la_panel_t* P,
                                                                            const int NQ, const int W,
                                                                            const int DECAY, const int SD) {
  const la_tile_t* Tl = J->cur;
  vf p[LA_WCAP], s[LA_GMAX][LA_WCAP], u[LA_WCAP];
  LA_ZERO_ACC(p, s);
#pragma GCC unroll 8
  for (int j = 0; j < W; j++) u[j] = v_load(Tl->v + P->col + j * LA_VL);
  if (J->u->cap_tokens > 0 && J->u->cap_delta) LA_FN(la_capture_delta)(J, P, 0, u, W);
  LA_FN(la_token_prefetch)(J, P, 0, 1, 0);
#ifdef LA_BF16_PAIRS
  if (SD == 4) {
#pragma GCC unroll 4
    for (int j = 0; j + 1 < W; j += 2) v_to_pair(u[j], u[j + 1], &u[j], &u[j + 1]);
  }
#endif
  if (SD == 0 && P->stream)
    LA_FN(la_sweep)(P->src, P->dst, P->ld, J->dk, Tl->a, Tl->k, Tl->ak, Tl->aq, J->dkp, u, p, s, NQ, W, DECAY, 0,
                    LA_ACC_UPD, 1, 1, SD);
  else if (SD == 0 && P->one_pass_pf)
    LA_FN(la_sweep)(P->src, P->dst, P->ld, J->dk, Tl->a, Tl->k, Tl->ak, Tl->aq, J->dkp, u, p, s, NQ, W, DECAY, 0,
                    LA_ACC_UPD, 0, 4, SD);
  else
    LA_FN(la_sweep)(P->src, P->dst, P->ld, J->dk, Tl->a, Tl->k, Tl->ak, Tl->aq, J->dkp, u, p, s, NQ, W, DECAY, 0,
                    LA_ACC_UPD, 0, 1, SD);
#ifdef LA_BF16_PAIRS
  if (SD == 4) { /* u again in memory order (v itself), s back to it */
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) u[j] = v_load(Tl->v + P->col + j * LA_VL);
#pragma GCC unroll 4
    for (int j = 0; j + 1 < W; j += 2)
#pragma GCC unroll 8
      for (int h = 0; h < NQ; h++) v_from_pair(s[h][j], s[h][j + 1], &s[h][j], &s[h][j + 1]);
  }
#endif
  LA_FN(la_write_out)(J, P, 0, 0, Tl->kq, u, s, NQ, W);
  if (P->stages) LA_FN(la_stage_next)(J);
  P->src = P->dst;
}
#define LA_ONE_PASS(J, DELTA, NQ) \
  (!(DELTA) && (J)->T == 1 && !(J)->p->decode_split && !((NQ) == LA_GMAX && (J)->nq > LA_GMAX))

/* Runs tokens t0 .. t0 + n - 1 (staged in slots 0 .. n, slot n = token t0 + n if it exists)
 * over one panel. */
static inline __attribute__((always_inline)) void LA_FN(la_panel_tokens)(const la_job_t* J, la_panel_t* P,
                                                                         int64_t t0, int64_t n, const int NQ,
                                                                         const int W, const int DECAY,
                                                                         const int DELTA) {
  const int64_t dk = J->dk, dkp = J->dkp, T = J->T, ld = P->ld;
  const int64_t aqs = (int64_t)NQ * dkp; /* aq slot stride (J->G == NQ) */
  const la_tile_t* Tl = J->cur;
  if (LA_ONE_PASS(J, DELTA, NQ)) {
    LA_FN(la_decode_one_pass)(J, P, NQ, W, DECAY, 0);
    return;
  }
  vf p[LA_WCAP], s[LA_GMAX][LA_WCAP], u[LA_WCAP];
  if (t0 == 0 && !P->primed) {
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) p[j] = v_zero();
#pragma GCC unroll 8
    for (int h = 0; h < NQ; h++)
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) s[h][j] = v_zero();
    if (LA_DECODE_OVERLAP(NQ, W) && P->overlap) /* decode: whole rows from memory */
      LA_FN(la_sweep)(P->src, P->dst, ld, dk, NULL, NULL, Tl->ak, Tl->aq, dkp, u, p, s, NQ, W, DECAY, DELTA, LA_ACC, 0, 2, 0);
    else
      LA_FN(la_sweep)(P->src, P->dst, ld, dk, NULL, NULL, Tl->ak, Tl->aq, dkp, u, p, s, NQ, W, DECAY, DELTA, LA_ACC, 0, 1, 0);
  } else {
    LA_LOAD_CARRY(P, p, s);
  }
  for (int64_t tl = 0; tl < n; tl++) {
    const int64_t t = t0 + tl;
    const float* vt = Tl->v + tl * J->ncp + P->col;
    const vf bb = v_set1(Tl->beta[tl]);
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) {
      const vf vv = v_load(vt + j * LA_VL);
      u[j] = DELTA ? v_mul(bb, v_sub(vv, p[j])) : vv;
    }
    if (t < J->u->cap_tokens && J->u->cap_delta) LA_FN(la_capture_delta)(J, P, t, u, W); /* GatedDeltaNet */
    LA_FN(la_token_prefetch)(J, P, tl, n, t);
    LA_FN(la_write_out)(J, P, t, 0, Tl->kq + tl * LA_KQ_STRIDE, u, s, NQ, W);
    if (P->stages) LA_FN(la_stage_next)(J);
    if (NQ == LA_GMAX && J->nq > LA_GMAX) LA_FN(la_extra_heads)(J, P, t, tl, u, p, W, DECAY, 0);
    const float* a = Tl->a + tl * dkp;
    const float* k = Tl->k + tl * dkp;
    if (t + 1 < T) {
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) p[j] = v_zero();
#pragma GCC unroll 8
      for (int h = 0; h < NQ; h++)
#pragma GCC unroll 8
        for (int j = 0; j < W; j++) s[h][j] = v_zero();
      const float* akn = Tl->ak + (tl + 1) * dkp;
      const float* aqn = Tl->aq + (tl + 1) * aqs;
      if (DECAY && Tl->seg_end[tl])
        LA_FN(la_sweep)(P->src, P->dst, ld, dk, a, k, akn, aqn, dkp, u, p, s, NQ, W, 1, DELTA, LA_UPD_ACC, 0, 0, 0);
      else
        LA_FN(la_sweep)(P->src, P->dst, ld, dk, a, k, akn, aqn, dkp, u, p, s, NQ, W, 0, DELTA, LA_UPD_ACC, 0, 0, 0);
    } else {
      LA_FN(la_last_update)(J, P, a, k, u, p, s, NQ, W, DECAY, DELTA, 0);
    }
    P->src = P->dst;
  }
  if (t0 + n < T) {
    LA_STORE_CARRY(P, p, s);
  }
}

/* ------------------------------------------------------------------ V-major decode (GatedDeltaNet) */

/* Few tokens on a V-major state (la_params.state_v_major, T < LA_PACK_MIN_T): each value column j
 * is a contiguous row of d_k floats, so a token is two short passes per row instead of a
 * transposed copy of the state into panels and back: p_j = S_j . (a k), s_j = S_j . (a scale q)
 * (first pass), u_j = beta (v_j - p_j) (v_j for non-delta rules), o_j = s_j + (k . scale q) u_j,
 * then S_j = a .* S_j + k u_j (second pass, the row still in L1). Every staged token ends a
 * segment (vdirect), so the tile holds a_t and k_t themselves. */
static void LA_FN(la_vmajor_tokens)(const la_job_t* J, int64_t t0, int64_t n) {
  const la_params* p = J->p;
  const la_unit* un = J->u;
  const la_tile_t* Tl = J->cur;
  const int64_t dk = J->dk, dkp = J->dkp, ld = un->ld_state, nc = J->nc;
  const linattn_dtype dt = p->io_dtype;
  float* obuf = J->pack; /* one output row of the unit */
  for (int64_t tl = 0; tl < n; tl++) {
    const int64_t t = t0 + tl;
    const float *a = Tl->a + tl * dkp, *k = Tl->k + tl * dkp, *ak = Tl->ak + tl * dkp, *aq = Tl->aq + tl * J->G * dkp;
    const float* vt = Tl->v + tl * J->ncp;
    const float kq = Tl->kq[tl * LA_KQ_STRIDE], beta = Tl->beta[tl];
    const int cap = t < un->cap_tokens && un->cap_delta;
    const int64_t dkf = dk / LA_VL * LA_VL; /* full vectors; the rest (dk % LA_VL) masked */
    const int tail = (int)(dk - dkf);
    for (int64_t j = 0; j < nc; j++) {
      const float* src = t == 0 ? (un->state_in ? un->state_in + j * ld : NULL) : un->state_out + j * ld;
      float* dst = un->state_out + j * ld;
      vf pacc = v_zero(), sacc = v_zero();
      if (src) {
        for (int64_t i = 0; i < dkf; i += LA_VL) {
          const vf x = v_load(src + i);
          pacc = v_fma(x, v_load(ak + i), pacc);
          sacc = v_fma(x, v_load(aq + i), sacc);
        }
        if (tail) {
          const vf x = v_load_io(src + dkf, LINATTN_DTYPE_F32, tail);
          pacc = v_fma(x, v_load(ak + dkf), pacc);
          sacc = v_fma(x, v_load(aq + dkf), sacc);
        }
      }
      const float uj = p->delta ? beta * (vt[j] - v_hsum(pacc)) : vt[j];
      obuf[j] = v_hsum(sacc) + kq * uj;
      if (cap) un->cap_delta[t * un->cap_delta_stride + j] = uj;
      const vf ub = v_set1(uj);
      if (src) {
        for (int64_t i = 0; i < dkf; i += LA_VL) v_store(dst + i, v_fma(v_load(a + i), v_load(src + i), v_mul(v_load(k + i), ub)));
      } else {
        for (int64_t i = 0; i < dkf; i += LA_VL) v_store(dst + i, v_mul(v_load(k + i), ub));
      }
      if (tail) {
        const vf ku = v_mul(v_load(k + dkf), ub);
        const vf y = src ? v_fma(v_load(a + dkf), v_load_io(src + dkf, LINATTN_DTYPE_F32, tail), ku) : ku;
        v_store_io(dst + dkf, LINATTN_DTYPE_F32, y, tail);
      }
    }
    void* ot = la_io_at_mut(un->out, t * un->out_token_stride, dt);
    for (int64_t j = 0; j < nc; j += LA_VL)
      v_store_io(la_io_at_mut(ot, j, dt), dt, v_load_io(obuf + j, LINATTN_DTYPE_F32, nc - j < LA_VL ? (int)(nc - j) : LA_VL),
                 nc - j < LA_VL ? (int)(nc - j) : LA_VL);
  }
}

/* u of slot tl: beta (v - p) for delta rules, else v. */
static inline __attribute__((always_inline)) void LA_FN(la_token_u)(const la_job_t* J, const la_panel_t* P,
                                                                    int64_t tl, const vf* p, vf* u, const int W,
                                                                    const int DELTA) {
  const la_tile_t* Tl = J->cur;
  const float* vt = Tl->v + tl * J->ncp + P->col;
  const vf bb = v_set1(Tl->beta[tl]);
#pragma GCC unroll 8
  for (int j = 0; j < W; j++) {
    const vf vv = v_load(vt + j * LA_VL);
    u[j] = DELTA ? v_mul(bb, v_sub(vv, p[j])) : vv;
  }
}

/* la_job.fold: the sums of a sweep with the rows k and scale q times their slot's scalar. */
#define LA_SCALE_ACC(p, s, g)                                                  \
  do {                                                                         \
    const vf g_ = v_set1(g);                                                   \
    _Pragma("GCC unroll 8") for (int j = 0; j < W; j++) {                      \
      (p)[j] = v_mul(g_, (p)[j]);                                              \
      _Pragma("GCC unroll 8") for (int h = 0; h < NQ; h++) (s)[h][j] = v_mul(g_, (s)[h][j]); \
    }                                                                          \
  } while (0)
/* The u the update of slot sl applies: u itself, or with la_job.fold u times fs[3 sl + 2]. */
#define LA_FOLD_U(dst, src, sl)                                                \
  do {                                                                         \
    const vf r_ = v_set1(FOLD ? Tl->fs[3 * (sl) + 2] : 1.0f);                  \
    _Pragma("GCC unroll 8") for (int j = 0; j < W; j++)                        \
      (dst)[j] = FOLD ? v_mul(r_, (src)[j]) : (src)[j];                        \
  } while (0)

/* In la_panel_pairs: the sweep of NU tokens (a1, k1, u; then a2, k2, u2) from slot tl that also
 * accumulates the sums of the token after them (slot tl + NU) and, when a pair follows, that
 * pair's second token's partial sums (slot tl + NU + 1); dec: the updates multiply by their
 * decay factors. The tile's last sweep accumulates nothing (last_a1, last_d1, last_d2: its
 * factors). Each branch is its own specialisation of la_sweep_multi. */
#define LA_PAIR_SWEEP(NU, dec, a2, k2, u2, last_a1, last_d1, last_d2)                                           \
  do {                                                                                                        \
    const float* akn = Tl->ak + (tl + (NU)) * dkp;                                                            \
    const float* aqn = Tl->aq + (tl + (NU)) * NQ * dkp;                                                       \
    if (tl + (NU) + 1 < n) {                                                                                  \
      const int xs = LA_FN(la_pair_scaled)(J, Tl, tl + (NU) + 1);                                             \
      const float* akx = (xs ? Tl->akx : Tl->ak) + (tl + (NU) + 1) * dkp;                                     \
      const float* aqx = (xs ? Tl->aqx : Tl->aq) + (tl + (NU) + 1) * NQ * dkp;                                \
      LA_ZERO_ACC(p, s);                                                                                      \
      LA_ZERO_ACC(pb, sb);                                                                                    \
      if (dec)                                                                                                \
        LA_FN(la_sweep_multi)(P->src, P->dst, ld, dk, a1, k1, uf, a2, k2, u2, akn, aqn, akx, aqx, aqs, p, s, pb, \
                              sb, NQ, W, NU, 1, (NU) == 2, DELTA, 1, 1);                                      \
      else                                                                                                    \
        LA_FN(la_sweep_multi)(P->src, P->dst, ld, dk, a1, k1, uf, a2, k2, u2, akn, aqn, akx, aqx, aqs, p, s, pb, \
                              sb, NQ, W, NU, 0, 0, DELTA, 1, 1);                                              \
      if (FOLD) {                                                                                             \
        LA_SCALE_ACC(p, s, Tl->fs[3 * (tl + (NU))]);                                                          \
        LA_SCALE_ACC(pb, sb, Tl->fs[3 * (tl + (NU) + 1) + 1]);                                                \
      }                                                                                                       \
    } else if (t + (NU) < T) {                                                                                \
      LA_ZERO_ACC(p, s);                                                                                      \
      if (dec)                                                                                                \
        LA_FN(la_sweep_multi)(P->src, P->dst, ld, dk, a1, k1, uf, a2, k2, u2, akn, aqn, NULL, NULL, aqs, p, s,   \
                              pb, sb, NQ, W, NU, 1, (NU) == 2, DELTA, 1, 0);                                  \
      else                                                                                                    \
        LA_FN(la_sweep_multi)(P->src, P->dst, ld, dk, a1, k1, uf, a2, k2, u2, akn, aqn, NULL, NULL, aqs, p, s,   \
                              pb, sb, NQ, W, NU, 0, 0, DELTA, 1, 0);                                          \
      if (FOLD) LA_SCALE_ACC(p, s, Tl->fs[3 * (tl + (NU))]);                                                  \
    } else {                                                                                                  \
      LA_FN(la_sweep_multi)(P->src, P->dst, ld, dk, last_a1, k1, uf, a2, k2, u2, NULL, NULL, NULL, NULL, aqs, p, \
                            s, pb, sb, NQ, W, NU, last_d1, last_d2, DELTA, 0, 0);                             \
    }                                                                                                         \
  } while (0)

/* la_panel_tokens with two tokens per sweep where it can (la_job.pair; DECAY 2: a per-head
 * decay folded out of the staged rows, la_job.fold): the first token of
 * the tile runs alone and also accumulates the second token of the first pair; then pairs
 * (each also accumulating the second token of the next pair); a token left over runs alone.
 * Half the state loads and stores of one sweep per token: the stores bound the one-token
 * sweep on cores with two FMA pipes. p and s of a pair's second token are those of the
 * state before the pair plus the first token's rank-1 term (la_tile.akx): the same value as
 * one sweep per token gives, summed in another order. */
static inline __attribute__((always_inline)) void LA_FN(la_panel_pairs)(const la_job_t* J, la_panel_t* P,
                                                                        int64_t t0, int64_t n, const int NQ,
                                                                        const int W, const int DECAY,
                                                                        const int DELTA) {
  const int64_t dk = J->dk, dkp = J->dkp, T = J->T, ld = P->ld;
  const int64_t aqs = dkp; /* head stride within a slot's aq, aqx */
  const int FOLD = DECAY == 2; /* per-head decay folded out of the rows (la_job.fold) */
  const la_tile_t* Tl = J->cur;
  vf p[LA_WCAP], s[LA_PAIR_GMAX][LA_WCAP], pb[LA_WCAP], sb[LA_PAIR_GMAX][LA_WCAP], u[LA_WCAP], u2[LA_WCAP];
  vf uf[LA_WCAP], u2f[LA_WCAP]; /* the u that the updates apply (LA_FOLD_U) */
  if (t0 == 0) {
    LA_ZERO_ACC(p, s);
    LA_FN(la_sweep)(P->src, P->dst, ld, dk, NULL, NULL, Tl->ak, Tl->aq, dkp, u, p, s, NQ, W, DECAY, DELTA, LA_ACC, 0, 1, 0);
    if (FOLD) LA_SCALE_ACC(p, s, Tl->fs[0]);
  } else {
    LA_LOAD_CARRY(P, p, s);
  }
  int64_t tl = 0;
  while (tl < n) {
    const int64_t t = t0 + tl;
    LA_FN(la_token_u)(J, P, tl, p, u, W, DELTA);
    LA_FN(la_token_prefetch)(J, P, tl, n, t);
    LA_FN(la_write_out)(J, P, t, 0, Tl->kq + tl * LA_KQ_STRIDE, u, s, NQ, W);
    if (P->stages) LA_FN(la_stage_next)(J);
    const float* a1 = Tl->a + tl * dkp;
    const float* k1 = Tl->k + tl * dkp;
    const int d1 = DECAY && Tl->seg_end[tl];
    if (tl == 0 || tl + 1 >= n) {
      /* one token; with a pair next, also its second token's partial sums */
      LA_FOLD_U(uf, u, tl);
      LA_PAIR_SWEEP(1, d1, NULL, NULL, NULL, d1 ? a1 : J->ones, 1, 0);
      P->src = P->dst;
      tl += 1;
      continue;
    }
    /* a pair: complete the second token from its partial sums and the first token's u */
    const vf cb = v_set1(Tl->cx[tl + 1]);
#pragma GCC unroll 8
    for (int j = 0; j < W; j++) p[j] = v_fma(cb, u[j], pb[j]);
#pragma GCC unroll 8
    for (int h = 0; h < NQ; h++) {
      const vf db = v_set1(Tl->dx[(tl + 1) * LA_KQ_STRIDE + h]);
#pragma GCC unroll 8
      for (int j = 0; j < W; j++) s[h][j] = v_fma(db, u[j], sb[h][j]);
    }
    LA_FN(la_token_u)(J, P, tl + 1, p, u2, W, DELTA);
    LA_FN(la_token_prefetch)(J, P, tl + 1, n, t + 1);
    LA_FN(la_write_out)(J, P, t + 1, 0, Tl->kq + (tl + 1) * LA_KQ_STRIDE, u2, s, NQ, W);
    if (P->stages) LA_FN(la_stage_next)(J);
    /* inside a segment both updates skip the decay; otherwise each multiplies by its factor
     * (J->ones inside the segment: x * 1 is exact) */
    const int dec = d1 || (DECAY && Tl->seg_end[tl + 1]);
    const float* a2 = DECAY && Tl->seg_end[tl + 1] ? Tl->a + (tl + 1) * dkp : J->ones;
    if (DECAY && !d1) a1 = J->ones;
    const float* k2 = Tl->k + (tl + 1) * dkp;
    LA_FOLD_U(uf, u, tl);
    LA_FOLD_U(u2f, u2, tl + 1);
    LA_PAIR_SWEEP(2, dec, a2, k2, u2f, a1, DECAY, DECAY);
    P->src = P->dst;
    tl += 2;
  }
  if (t0 + n < T) {
    LA_STORE_CARRY(P, p, s);
  }
}

/* The one token of a decode call (T == 1) over an unpacked panel of a half-precision state
 * (SD 1 fp16, 2 bf16): the sweeps load the rows in that dtype straight into fp32 registers and
 * store the new rows rounded once, with the arithmetic of la_panel_tokens at T == 1. */
static inline __attribute__((always_inline)) void LA_FN(la_panel_decode)(const la_job_t* J, la_panel_t* P,
                                                                         const int NQ, const int W, const int DECAY,
                                                                         const int DELTA, const int SD) {
  const int64_t dk = J->dk, dkp = J->dkp, ld = P->ld;
  const la_tile_t* Tl = J->cur;
  if (LA_ONE_PASS(J, DELTA, NQ)) {
    LA_FN(la_decode_one_pass)(J, P, NQ, W, DECAY, SD);
    return;
  }
  vf p[LA_WCAP], s[LA_GMAX][LA_WCAP], u[LA_WCAP];
  if (P->primed) {
    LA_LOAD_CARRY(P, p, s);
  } else {
    LA_ZERO_ACC(p, s);
    LA_FN(la_sweep)(P->src, P->dst, ld, dk, NULL, NULL, Tl->ak, Tl->aq, dkp, u, p, s, NQ, W, DECAY, DELTA, LA_ACC, 0, 1, SD);
  }
  LA_FN(la_token_u)(J, P, 0, p, u, W, DELTA);
  if (J->u->cap_tokens > 0 && J->u->cap_delta) LA_FN(la_capture_delta)(J, P, 0, u, W);
  LA_FN(la_token_prefetch)(J, P, 0, 1, 0);
  LA_FN(la_write_out)(J, P, 0, 0, Tl->kq, u, s, NQ, W);
  if (P->stages) LA_FN(la_stage_next)(J);
  if (NQ == LA_GMAX && J->nq > LA_GMAX) LA_FN(la_extra_heads)(J, P, 0, 0, u, p, W, DECAY, SD);
  LA_FN(la_last_update)(J, P, Tl->a, Tl->k, u, p, s, NQ, W, DECAY, DELTA, SD);
  P->src = P->dst;
}

#ifdef LA_BF16_PAIRS
/* la_panel_decode with the delta rule on a bf16 state in column pairs (SD 4, P->half_convert: W
 * even, full vectors, at most LA_GMAX query heads, no carried sums): v enters in the sweeps'
 * column order, and u and s leave in memory order for the outputs. Each column's operations
 * are those of la_panel_decode, in the same order. */
#define LA_PAIRS_OK(NQ, W, DL, SD) ((SD) == 3 && (DL) && (W) % 2 == 0)
static inline __attribute__((always_inline)) void LA_FN(la_panel_decode_pairs)(const la_job_t* J, la_panel_t* P,
                                                                               const int NQ, const int W,
                                                                               const int DECAY) {
  const la_tile_t* Tl = J->cur;
  vf p[LA_WCAP], s[LA_GMAX][LA_WCAP], u[LA_WCAP], v[LA_WCAP];
  if (P->primed) { /* summed in pair order by the previous unit's last update sweep (la_last_update) */
    LA_LOAD_CARRY(P, p, s);
  } else {
    LA_ZERO_ACC(p, s);
    LA_FN(la_sweep)(P->src, P->dst, P->ld, J->dk, NULL, NULL, Tl->ak, Tl->aq, J->dkp, u, p, s, NQ, W, DECAY, 1, LA_ACC,
                    0, 1, 4);
  }
  LA_FN(la_token_u)(J, P, 0, p, v, W, 0); /* v in memory order */
  const vf bb = v_set1(Tl->beta[0]);
#pragma GCC unroll 4
  for (int j = 0; j < W; j += 2) {
    vf ve, vo;
    v_to_pair(v[j], v[j + 1], &ve, &vo);
    u[j] = v_mul(bb, v_sub(ve, p[j]));
    u[j + 1] = v_mul(bb, v_sub(vo, p[j + 1]));
    v_from_pair(u[j], u[j + 1], &v[j], &v[j + 1]); /* v: u in memory order */
#pragma GCC unroll 8
    for (int h = 0; h < NQ; h++) v_from_pair(s[h][j], s[h][j + 1], &s[h][j], &s[h][j + 1]);
  }
  if (J->u->cap_tokens > 0 && J->u->cap_delta) LA_FN(la_capture_delta)(J, P, 0, v, W);
  LA_FN(la_token_prefetch)(J, P, 0, 1, 0);
  LA_FN(la_write_out)(J, P, 0, 0, Tl->kq, v, s, NQ, W);
  if (P->stages) LA_FN(la_stage_next)(J);
  LA_FN(la_last_update)(J, P, Tl->a, Tl->k, u, p, s, NQ, W, DECAY, 1, 4);
  P->src = P->dst;
}
/* the one pass without the delta rule (la_decode_one_pass) in column pairs: the same conditions */
#define LA_ONE_PASS_PAIRS_OK(NQ, W, DL, SD) ((SD) == 3 && !(DL) && (W) % 2 == 0)
#else
#define LA_PAIRS_OK(NQ, W, DL, SD) 0
#define LA_ONE_PASS_PAIRS_OK(NQ, W, DL, SD) 0
#endif
#ifdef LA_F16_STORE_MEM
#define LA_F16_MEM_OK(SD) ((SD) == 1)
#else
#define LA_F16_MEM_OK(SD) 0
#endif
#ifdef LA_BF16_PAIRS
#define LA_DECODE_PAIRS(J, P, NQ, W, DC) LA_FN(la_panel_decode_pairs)(J, P, NQ, (W) & ~1, DC)
#else
#define LA_DECODE_PAIRS(J, P, NQ, W, DC) ((void)0)
#endif

/* ------------------------------------------------------------------ instantiation */

typedef void (*LA_FN(la_panel_fn))(const la_job_t* J, la_panel_t* P, int64_t t0, int64_t n);

#define LA_PANEL_NAME(NQ, W, DC, DL) LA_FN(la_panel_##NQ##_##W##_##DC##_##DL)
#define LA_DEFINE_PANEL(NQ, W, DC, DL)                                                                   \
  static void LA_PANEL_NAME(NQ, W, DC, DL)(const la_job_t* J, la_panel_t* P, int64_t t0, int64_t n) { \
    LA_FN(la_panel_tokens)(J, P, t0, n, NQ, W, DC, DL);                                                \
  }
#define LA_DEFINE_PANELS(NQ, W) \
  LA_DEFINE_PANEL(NQ, W, 0, 0) LA_DEFINE_PANEL(NQ, W, 0, 1) LA_DEFINE_PANEL(NQ, W, 1, 0) LA_DEFINE_PANEL(NQ, W, 1, 1)
#define LA_PAIR_NAME(NQ, W, DC, DL) LA_FN(la_pair_##NQ##_##W##_##DC##_##DL)
#define LA_DEFINE_PAIR(NQ, W, DC, DL)                                                                  \
  static void LA_PAIR_NAME(NQ, W, DC, DL)(const la_job_t* J, la_panel_t* P, int64_t t0, int64_t n) { \
    LA_FN(la_panel_pairs)(J, P, t0, n, NQ, W, DC, DL);                                               \
  }
#define LA_DEFINE_PAIRS(NQ, W)                                                                          \
  LA_DEFINE_PAIR(NQ, W, 0, 0) LA_DEFINE_PAIR(NQ, W, 0, 1) LA_DEFINE_PAIR(NQ, W, 1, 0) LA_DEFINE_PAIR(NQ, W, 1, 1) \
  LA_DEFINE_PAIR(NQ, W, 2, 0) LA_DEFINE_PAIR(NQ, W, 2, 1)
#define LA_PAIR_ENTRY(NQ, W)                                                      \
  [(NQ) - 1][W] = {{LA_PAIR_NAME(NQ, W, 0, 0), LA_PAIR_NAME(NQ, W, 0, 1)},           \
                   {LA_PAIR_NAME(NQ, W, 1, 0), LA_PAIR_NAME(NQ, W, 1, 1)},           \
                   {LA_PAIR_NAME(NQ, W, 2, 0), LA_PAIR_NAME(NQ, W, 2, 1)}},
#define LA_DECODE_NAME(NQ, W, DC, DL, SD) LA_FN(la_decode_##NQ##_##W##_##DC##_##DL##_##SD)
#define LA_DEFINE_DECODE(NQ, W, DC, DL, SD)                                                                 \
  static void LA_DECODE_NAME(NQ, W, DC, DL, SD)(const la_job_t* J, la_panel_t* P, int64_t t0, int64_t n) { \
    (void)t0;                                                                                             \
    (void)n;                                                                                              \
    if (LA_PAIRS_OK(NQ, W, DL, SD) && P->half_convert) LA_DECODE_PAIRS(J, P, NQ, W, DC);                  \
    else if (LA_ONE_PASS_PAIRS_OK(NQ, W, DL, SD) && P->half_convert && LA_ONE_PASS(J, DL, NQ))            \
      LA_FN(la_decode_one_pass)(J, P, NQ, W, DC, 4);                                                      \
    else if (LA_F16_MEM_OK(SD) && P->half_convert) LA_FN(la_panel_decode)(J, P, NQ, W, DC, DL, 5);       \
    else LA_FN(la_panel_decode)(J, P, NQ, W, DC, DL, SD);                                                 \
  }
#define LA_DEFINE_DECODES_SD(NQ, W, SD)                                                               \
  LA_DEFINE_DECODE(NQ, W, 0, 0, SD) LA_DEFINE_DECODE(NQ, W, 0, 1, SD) LA_DEFINE_DECODE(NQ, W, 1, 0, SD) \
  LA_DEFINE_DECODE(NQ, W, 1, 1, SD)
#ifdef LA_BF16_STORE_NATIVE
#define LA_DEFINE_DECODES(NQ, W) \
  LA_DEFINE_DECODES_SD(NQ, W, 1) LA_DEFINE_DECODES_SD(NQ, W, 2) LA_DEFINE_DECODES_SD(NQ, W, 3)
#define LA_DECODE_ENTRY(NQ, W) LA_DECODE_ENTRY_SD(NQ, W, 1) LA_DECODE_ENTRY_SD(NQ, W, 2) LA_DECODE_ENTRY_SD(NQ, W, 3)
#else
#define LA_DEFINE_DECODES(NQ, W) LA_DEFINE_DECODES_SD(NQ, W, 1) LA_DEFINE_DECODES_SD(NQ, W, 2)
#define LA_DECODE_ENTRY(NQ, W) LA_DECODE_ENTRY_SD(NQ, W, 1) LA_DECODE_ENTRY_SD(NQ, W, 2)
#endif
#define LA_DECODE_ENTRY_SD(NQ, W, SD)                                                             \
  [(SD) - 1][LA_GROUP_INDEX(NQ)][W] = {{LA_DECODE_NAME(NQ, W, 0, 0, SD), LA_DECODE_NAME(NQ, W, 0, 1, SD)}, \
                                      {LA_DECODE_NAME(NQ, W, 1, 0, SD), LA_DECODE_NAME(NQ, W, 1, 1, SD)}},
/* The panel functions of an ISA file: one token per sweep, [group index][W][decay][delta];
 * two tokens per sweep, [heads - 1][W][decay: 0, 1, 2 folded][delta] (NULL pair or entry: not
 * instantiated);
 * the decode of a half-precision state in place, [SD - 1][group index][W][decay][delta]. */
typedef struct LA_FN(la_tables) {
  LA_FN(la_panel_fn) const (*one)[LA_WCAP + 1][2][2];
  LA_FN(la_panel_fn) const (*pair)[LA_WCAP + 1][3][2];
  LA_FN(la_panel_fn) const (*decode)[5][LA_WCAP + 1][2][2]; /* [LA_SD_KINDS] */
} LA_FN(la_tables);
typedef LA_FN(la_tables) la_tables_t;


/* ------------------------------------------------------------------ the unit */

static int LA_FN(la_group_index)(int G) { return LA_GROUP_INDEX(G); }

/* V-major state rows (value columns) src[j * ld + i], j < valid, into the packed panel
 * dst[i * width + j] (columns valid .. width zero): the transposition rides along the copy every
 * prefill panel makes anyway. */
static void LA_FN(la_pack_v_major)(float* dst, int width, const float* src, int64_t ld, int64_t dk, int valid) {
  if (valid < width)
    for (int64_t i = 0; i < dk; i++) memset(dst + i * width + valid, 0, sizeof(float) * (size_t)(width - valid));
  la_transpose(dst, width, src, ld, valid, dk);
}

/* Copies the entering state of panel P (zeros when absent) into its packed fp32 block, widening
 * a half-precision state as it is loaded; columns valid .. width stay zero. */
static void LA_FN(la_pack_panel)(const la_params* p, const la_unit* u, la_panel_t* P) {
  const int width = P->W * LA_VL;
  const int64_t dk = p->d_k, ld = u->ld_state;
  float* dst = (float*)P->dst;
  if (p->state_v_major && u->state_in) {
    LA_FN(la_pack_v_major)(dst, width, u->state_in + P->col * ld, ld, dk, P->valid);
    return;
  }
  const linattn_dtype sd = p->state_dtype;
  for (int64_t i = 0; i < dk; i++) {
    float* row = dst + i * width;
    if (!u->state_in) {
      memset(row, 0, sizeof(float) * (size_t)width);
    } else if (la_state_half(p)) {
      const uint16_t* src = u->state_in_h + i * ld + P->col;
      for (int c = 0; c < width; c += LA_VL) {
        const int n = P->valid - c;
        v_store(row + c, n <= 0 ? v_zero() : v_load_io(src + c, sd, n < LA_VL ? n : LA_VL));
      }
    } else {
      memcpy(row, u->state_in + i * ld + P->col, sizeof(float) * (size_t)P->valid);
      if (P->valid < width) memset(row + P->valid, 0, sizeof(float) * (size_t)(width - P->valid));
    }
  }
}

/* Whether la_params.decode_vectors and decode_overlap apply: a family that defines
 * LA_DECODE_OVERLAP, an fp32 state updated in place (or from zeros); a separate present_state
 * and a half-precision state keep the ISA's panels (docs/tuning.md, la.decode_vectors). */
static int LA_FN(la_decode_tuned)(const la_params* p, const la_unit* u) {
  return LA_DECODE_TUNED && !la_state_half(p) && (!u->state_in || u->state_in == u->state_out);
}

/* Whether a decode of a 16-bit state may chain (la_params.decode_half_chain): in place or from
 * zeros, on a family with the tuned decode. Its panels stay the ISA's (no overlap within a unit). */
static int LA_FN(la_half_chains)(const la_params* p, const la_unit* u) {
  return LA_DECODE_TUNED && la_state_half(p) && p->decode_half_chain && (!u->state_in || u->state_in == u->state_out);
}

/* Most vectors per decode panel: the ISA's LA_WMAX_DECODE, capped where la_decode_tuned by
 * la_params.decode_vectors (2, 4 or 8; rounded down to one of them, whose panels
 * la_simd_panels.h instantiates). */
static int LA_FN(la_decode_wmax)(const la_params* p, const la_unit* u, int G) {
  const int w = LA_WMAX_DECODE(G), cap = LA_FN(la_decode_tuned)(p, u) ? p->decode_vectors : 0;
  if (cap <= 0 || cap >= w) return w;
  return cap >= 4 ? 4 : 2;
}

/* Vectors per two-token panel: at most 2 with la_tuning.pair_vectors 2 (a 32 KiB L1D). Either
 * width gives the same bits. */
static int LA_FN(la_pair_wmax)(const la_params* p, int G) {
  const int w = LA_WMAX_PAIR(G);
  return p->pair_vectors == 2 && w > 2 ? 2 : w;
}

/* Sets up the resumable job of a unit in its scratch (T > 0): layout, panels (packed state
 * copies), and with stage_ahead the first tile staged (see la_tiles). */
static void LA_FN(la_setup)(const la_params* p, const la_unit* u, void* scratch, la_resume_t* R,
                            const int stage_ahead, const la_tables_t* tb) {
  la_job_t* Jp = &R->J;
  LA_FN(la_layout)(p, u->ncols, scratch, Jp);
#define J (*Jp)
  J.p = p;
  J.u = u;
  J.T = p->T;
  J.dk = p->d_k;
  J.nc = u->ncols;
  J.nq = u->n_q < 1 ? 1 : u->n_q;
  J.G = la_group_heads(J.nq);
  R->gi = LA_FN(la_group_index)(J.G);
  /* Few tokens (decode): no packed copy, and the widest panels the registers allow, so the
   * state is read as long contiguous rows (DRAM streams) rather than narrow strided columns. */
  /* A V-major state (GatedDeltaNet) is always worked on in packed panels: transposed as each
   * panel's rows are copied in, and back in la_finish. */
  /* A half-precision state is converted into the packed copy whenever a token's state feeds
   * another token's (T > 1): the state stays fp32 within the call. */
  const int pack_all = LA_FN(la_packs_all)(p);
  J.vdirect = p->state_v_major && J.T < LA_PACK_MIN_T && J.nq == 1;
  J.stage_plain = p->stage_plain && p->io_dtype == LINATTN_DTYPE_F32 && la_gate_dtype(p) == LINATTN_DTYPE_F32 &&
                  p->gate == LA_GATE_NONE && J.dk % LA_VL == 0 && u->cap_tokens <= 0 &&
                  !(p->qk_l2_norm && p->gated && p->decay_kind == LA_DECAY_PER_KEY);
  /* two tokens per sweep where the tuning asks for it and the panels exist (prefill only; the
   * transition capture is written by the one-token sweep) */
  J.pair = la_pair_tokens(p) && J.T >= LA_PACK_MIN_T && J.G <= LA_PAIR_GMAX && J.nq <= LA_PAIR_GMAX &&
           tb->pair != NULL && !(u->cap_tokens > 0 && u->cap_delta);
  /* per-head decay folded out of the staged rows (la_tuning.fold_head_decay): two-token
   * sweeps only; the rows the sweeps would read as C .* k, C .* scale q are k and scale q */
  J.fold = p->fold_head_decay && J.pair && p->gated && p->decay_kind != LA_DECAY_PER_KEY && !J.vdirect;
  if (J.fold)
    for (int b = 0; b < 2; b++) {
      J.tiles[b].ak = J.tiles[b].akx = J.tiles[b].k;
      J.tiles[b].aqx = J.tiles[b].aq;
    }
  /* la_stage_tile's bursts: stage_plain's conditions but the dtypes (inputs, decay and beta of one
   * dtype), gated, no key norm, and a per-key decay or a folded per-head one */
  J.burst = 0;
  if (LA_STAGE_TILE && p->stage_plain && la_gate_dtype(p) == p->io_dtype && p->gate == LA_GATE_NONE &&
      !p->qk_l2_norm && J.dk % LA_VL == 0 && u->cap_tokens <= 0 && p->gated &&
      (J.fold || p->decay_kind == LA_DECAY_PER_KEY))
    J.burst = J.dkp == 4 * LA_VL ? 4 : J.dkp == 8 * LA_VL ? 8 : 0;
  const int wmax = J.pair     ? LA_FN(la_pair_wmax)(p, J.G)
                   : pack_all ? LA_WMAX(J.G)
                              : LA_FN(la_decode_wmax)(p, u, J.G);
  const int64_t ld = u->ld_state, dk = p->d_k;

  /* Panels: full vectors in widths wmax, then 2, then 1; the partial vector last. For prefill
   * each panel works on a contiguous copy (row stride W vectors): with the state's own row
   * stride (d_v floats, a multiple of 512 B) a panel's rows fall into few L1 sets and evict
   * each other. Decode (few tokens) works in place and streams the new state out. */
  const int64_t nfull = J.nc / LA_VL, tail = J.nc % LA_VL;
  int64_t col = 0, left = nfull;
  int np = 0;
  const int can_stream = p->stream_state && !la_state_half(p) && p->T == 1 && u->state_in && u->state_in != u->state_out &&
                         ((uintptr_t)u->state_out % (LA_VL * 4)) == 0 && (ld * 4) % (LA_VL * 4) == 0;
  R->can_stream = can_stream;
  while (!J.vdirect && (left > 0 || (tail && col < J.nc))) {
    /* widths LA_WMAX(G), 2 and 1, and for decode LA_WMAX_DECODE(G) and 4 when that is wider
     * (la_simd_panels.h checks that the ISA file instantiates each): d_v = 64 heads (RWKV-6, Mamba-2) then read whole 256-byte
     * rows instead of two interleaved half-row panels, which a cold state pays for (docs/tuning.md,
     * LA_WMAX_DECODE) */
    const int w = LA_PANEL_WIDTH(left, wmax, !pack_all);
    la_panel_t* P = &J.panels[np];
    P->col = col;
    P->W = w;
    P->valid = left > 0 ? w * LA_VL : (int)tail;
    P->carry = J.carry + (J.T <= LA_TILE_TOKENS ? 0 : (int64_t)np * (1 + LA_GMAX) * LA_WCAP * LA_VL);
    P->packed = pack_all || left == 0;
    P->stages = np == 0;
    P->prefetches = 0;
    if (P->packed) {
      P->ld = w * LA_VL;
      P->dst = J.pack + (pack_all ? dk * col : 0); /* else the one packed panel: the tail */
      P->src = P->dst;
      P->stream = 0;
      LA_FN(la_pack_panel)(p, u, P);
    } else {
      const size_t esz = la_state_esz(p);
      P->ld = ld;
      P->dst = (char*)u->state_out + (size_t)col * esz;
      P->src = u->state_in ? (const char*)u->state_in + (size_t)col * esz : P->dst;
      P->stream = can_stream;
      if (!u->state_in)
        for (int64_t i = 0; i < dk; i++) memset((char*)P->dst + (size_t)(i * ld) * esz, 0, esz * (size_t)(w * LA_VL));
    }
    col += P->valid;
    left -= left > 0 ? w : 0;
    np++;
  }
  J.npanels = np;
  if (np > 0) J.panels[np - 1].prefetches = 1;
  /* decode: a panel's update sweep sums the next panel's p and s where both are rows of the
   * state of one width (la_last_update); the heads beyond a group of 8 keep their own sweeps */
  const int overlap = p->decode_overlap && J.T == 1 && J.nq <= LA_GMAX && LA_FN(la_decode_tuned)(p, u);
  for (int i = 0; i < np; i++) {
    la_panel_t* P = &J.panels[i];
    P->primed = 0;
    P->overlap = overlap && i + 1 < np && !P->packed && !P[1].packed && P[1].W == P->W;
  }
  for (int64_t i = 0; i < J.dkp; i += LA_VL) v_store(J.ones + i, v_set1(1.0f));

  R->sd = p->state_dtype == LINATTN_DTYPE_F16 ? 1 : p->state_dtype == LINATTN_DTYPE_BF16 ? 2 : 0;
#ifdef LA_BF16_STORE_NATIVE
  if (R->sd == 2 && la_bf16_store_native()) R->sd = 3;
#endif
  for (int i = 0; i < np; i++) {
    la_panel_t* P = &J.panels[i];
    P->half_convert = p->decode_half_convert && J.T == 1 && !P->packed &&
                      (R->sd == 1 || (R->sd == 3 && J.nq <= LA_GMAX && P->W % 2 == 0 && P->valid == P->W * LA_VL));
    P->one_pass_pf = LA_HAS_PREFETCH_L1 && p->decode_one_pass_prefetch && J.T == 1 && R->sd == 0;
  }
  R->dc = p->gated ? 1 : 0;
  R->dl = p->delta ? 1 : 0;
  J.st = &R->st;
  J.pf = (la_step_next){NULL, 0, 0, 0};
  J.chain = NULL;
  if (stage_ahead) {
    int64_t n = J.T < LA_TILE_TOKENS ? J.T : LA_TILE_TOKENS;
    LA_FN(la_stage_begin)(J.st, &J.tiles[0], 0, n, n + (n < J.T ? 1 : 0));
    while (J.st->next < J.st->nst) LA_FN(la_stage_next)(&J);
  }
#undef J
}

/* Runs the tiles of tokens [t_begin, t_end) (t_begin a multiple of LA_TILE_TOKENS, t_end one
 * or T): the same tiles, in the same order, as one pass over all T tokens.
 * stage_ahead (one pass, la_run_unit): the first panel stages the next tile while it runs the
 * current one, overlapping the staging's cache misses with the sweeps. Otherwise (lock-step,
 * la_step_unit) each tile is staged just before its panels run: a tile staged ahead would wait
 * through every other unit's turn and come back from L3 (docs/tuning.md, la_tiles); the rows
 * are in L2 by then, prefetched during the previous step. Staged values are the same either way. */
static void LA_FN(la_tiles)(la_resume_t* R, int64_t t_begin, int64_t t_end, const int stage_ahead,
                            const la_step_next* next, const la_tables_t* tb) {
  la_job_t* Jp = &R->J;
  la_stager_t* st = &R->st;
  const int np = Jp->npanels, gi = R->gi, dc = R->dc, dl = R->dl;
  const int64_t T = Jp->T;
  for (int64_t t0 = t_begin; t0 < t_end; t0 += LA_TILE_TOKENS) {
    const int64_t tile = t0 / LA_TILE_TOKENS;
    const int64_t n = T - t0 < LA_TILE_TOKENS ? T - t0 : LA_TILE_TOKENS;
    const int64_t t1 = t0 + n, n1 = T - t1 < LA_TILE_TOKENS ? T - t1 : LA_TILE_TOKENS;
    if (!stage_ahead) {
      Jp->cur = &Jp->tiles[0];
      LA_FN(la_stage_begin)(st, &Jp->tiles[0], t0, n, n + (t1 < T ? 1 : 0));
      /* The bursts stage rows the previous step prefetched to L2 (every step but the first
       * unit's first) without L1 prefetches, which evict each other: token rows a multiple
       * of 4 KiB apart share the L1 sets (docs/tuning.md, la_stager.l1_prefetch). */
      st->l1_prefetch = !(next && next->prefetch);
      LA_FN(la_stage_tile)(Jp);
      st->next = st->nst = 0; /* the panels stage nothing of this unit */
      /* the last tile's last panel prefetches the rows the caller's next step stages */
      Jp->pf = next && next->prefetch && t1 >= t_end ? *next : (la_step_next){NULL, 0, 0, 0};
    } else {
      Jp->cur = &Jp->tiles[tile & 1];
      if (t1 < T) LA_FN(la_stage_begin)(st, &Jp->tiles[(tile + 1) & 1], t1, n1, n1 + (t1 + n1 < T ? 1 : 0));
      else st->next = st->nst = 0;
    }
    if (Jp->vdirect) LA_FN(la_vmajor_tokens)(Jp, t0, n);
    for (int i = 0; i < np; i++) {
      la_panel_t* P = &Jp->panels[i];
      if (Jp->pair) tb->pair[Jp->G - 1][P->W][Jp->fold ? 2 : dc][dl](Jp, P, t0, n);
      else if (!P->packed && la_state_half(Jp->p)) tb->decode[R->sd - 1][gi][P->W][dc][dl](Jp, P, t0, n);
      else tb->one[gi][P->W][dc][dl](Jp, P, t0, n);
    }
    while (st->next < st->nst) LA_FN(la_stage_next)(Jp);
  }
  Jp->pf = (la_step_next){NULL, 0, 0, 0};
}

/* Writes the rows of a packed panel to state_out, rounding once to a half-precision state. */
static void LA_FN(la_unpack_panel)(const la_params* p, const la_unit* u, const la_panel_t* P) {
  const float* src = (const float*)P->dst;
  const int64_t ld = u->ld_state;
  if (p->state_v_major) {
    la_transpose(u->state_out + P->col * ld, ld, src, P->ld, p->d_k, P->valid);
    return;
  }
  for (int64_t r = 0; r < p->d_k; r++) {
    if (!la_state_half(p)) {
      memcpy(u->state_out + r * ld + P->col, src + r * P->ld, sizeof(float) * (size_t)P->valid);
      continue;
    }
    uint16_t* dst = u->state_out_h + r * ld + P->col;
    for (int c = 0; c < P->valid; c += LA_VL)
      v_store_io(dst + c, p->state_dtype, v_load(src + r * P->ld + c), P->valid - c < LA_VL ? P->valid - c : LA_VL);
  }
}

/* Writes the packed panels back to state_out. */
static void LA_FN(la_finish)(const la_resume_t* R) {
  const la_job_t* Jp = &R->J;
  for (int i = 0; i < Jp->npanels; i++)
    if (Jp->panels[i].packed) LA_FN(la_unpack_panel)(Jp->p, Jp->u, &Jp->panels[i]);
  if (R->can_stream) v_sfence();
}

static void LA_FN(la_run_unit)(const la_params* p, const la_unit* u, void* scratch,
                               const la_tables_t* tb) {
  if (p->T <= 0) {
    la_copy_state_only(p, u);
    return;
  }
  linattn_fpenv env;
  linattn_fpenv_enter_ftz(&env);
  la_resume_t R;
  LA_FN(la_setup)(p, u, scratch, &R, 1, tb);
  LA_FN(la_tiles)(&R, 0, p->T, 1, NULL, tb);
  LA_FN(la_finish)(&R);
  linattn_fpenv_leave(&env);
}

/* Whether the decode of job J can sum the first panel of job Jn (the next unit, set up) in its
 * last panel's update sweep: both decodes of a state in place (fp32: la_decode_tuned, with the
 * overlap; 16-bit: la_half_chains), with the delta rule (no one-pass decode), the same heads, and
 * panels of the same width, row stride and element kind (a 16-bit state's half_convert forms). */
static int LA_FN(la_chains)(const la_job_t* J, const la_job_t* Jn) {
  const la_params* p = J->p;
  if (!p->decode_overlap || J->T != 1 || !p->delta || J->pair || J->vdirect || Jn->vdirect) return 0;
  if (J->nq > LA_GMAX || J->nq != Jn->nq || J->G != Jn->G || J->dkp != Jn->dkp || J->npanels < 1 || Jn->npanels < 1)
    return 0;
  const int half = la_state_half(p);
  if (half ? !LA_FN(la_half_chains)(p, J->u) || !LA_FN(la_half_chains)(p, Jn->u)
           : !LA_FN(la_decode_tuned)(p, J->u) || !LA_FN(la_decode_tuned)(p, Jn->u))
    return 0;
  const la_panel_t *P = &J->panels[J->npanels - 1], *Pn = &Jn->panels[0];
  return !P->packed && !Pn->packed && !P->stream && !Pn->stream && P->W == Pn->W && P->ld == Pn->ld &&
         P->half_convert == Pn->half_convert &&
         (half ? LA_DECODE_CHAINS(J->G, P->W, 1) : LA_DECODE_OVERLAP(J->G, P->W));
}

/* la_kernel.run_chain: la_run_unit for a decode (T == 1), where the unit's job may already be set
 * up by the previous call (primed: its first panel's sums carried), and, given the next unit
 * (next, its scratch nscratch), sets that one up too and sums its first panel in this unit's last
 * update sweep (la_last_update); returns 1 when it did (the next call passes primed = 1). The
 * sums are those of the next unit's own first read sweep: the same bits as la_run. */
static int LA_FN(la_run_chain_unit)(const la_params* p, const la_unit* u, void* scratch, int primed,
                                    const la_unit* next, void* nscratch, const la_tables_t* tb) {
  if (p->T != 1 || (!primed && !next)) {
    LA_FN(la_run_unit)(p, u, scratch, tb);
    return 0;
  }
  linattn_fpenv env;
  linattn_fpenv_enter_ftz(&env);
  const size_t rbytes = (sizeof(la_resume_t) + 63u) & ~(size_t)63u;
  la_resume_t* R = (la_resume_t*)((char*)scratch + LA_FN(la_scratch)(p, u->ncols) - rbytes);
  if (!primed) LA_FN(la_setup)(p, u, scratch, R, 1, tb);
  R->J.p = p;
  R->J.u = u;
  R->J.st = &R->st;
  R->J.chain = NULL;
  la_resume_t* Rn = NULL;
  if (next && LA_DECODE_TUNED && p->decode_overlap && p->delta && (!la_state_half(p) || p->decode_half_chain)) {
    Rn = (la_resume_t*)((char*)nscratch + LA_FN(la_scratch)(p, next->ncols) - rbytes);
    LA_FN(la_setup)(p, next, nscratch, Rn, 1, tb);
    if (LA_FN(la_chains)(&R->J, &Rn->J)) R->J.chain = &Rn->J;
  }
  LA_FN(la_tiles)(R, 0, p->T, 1, NULL, tb);
  LA_FN(la_finish)(R);
  R->J.chain = NULL;
  linattn_fpenv_leave(&env);
  return Rn && Rn->J.panels[0].primed;
}

/* la_kernel.step: advances a unit over tokens [t0, t1) with its whole job kept in scratch
 * (t0 == 0 sets it up, t1 == T writes the final state), prefetching next's rows. p and u may
 * be fresh copies with the same contents at each call. */
static void LA_FN(la_step_unit)(const la_params* p, const la_unit* u, void* scratch, int64_t t0, int64_t t1,
                                const la_step_next* next, const la_tables_t* tb) {
  if (p->T <= 0) {
    la_copy_state_only(p, u);
    return;
  }
  linattn_fpenv env;
  linattn_fpenv_enter_ftz(&env);
  const size_t rbytes = (sizeof(la_resume_t) + 63u) & ~(size_t)63u;
  la_resume_t* R = (la_resume_t*)((char*)scratch + LA_FN(la_scratch)(p, u->ncols) - rbytes);
  if (t0 == 0) LA_FN(la_setup)(p, u, scratch, R, 0, tb);
  R->J.p = p;
  R->J.u = u;
  R->J.st = &R->st;
  LA_FN(la_tiles)(R, t0, t1, 0, next, tb);
  if (t1 >= p->T) LA_FN(la_finish)(R);
  linattn_fpenv_leave(&env);
}
