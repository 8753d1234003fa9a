/*
 * The kernels' scratch contract (src/internal.h): a scratch sized for T tokens serves any call
 * of fewer. The packed operators size one scratch for their longest request, GatedDeltaNet for
 * its longest sequence, so a kernel whose scratch_bytes shrinks as T grows (7802e46: the decode
 * overlap's carry reserved for T = 1 only) writes past the workspace for a shorter request.
 *  1. scratch_bytes of every LinearAttention kernel (the reference and every family this build
 *     and CPU run) under every tuning entry (src/tuning.c, iterated) is non-decreasing in
 *     T = 0..300, 511, 512, 513, 1024, 4096, over a grid of la_params: io dtypes, state dtypes,
 *     cached and streaming state stores, every rule and decay kind, GatedDeltaNet's V-major
 *     state with and without the q/k norm and the fused gates (in both gate dtypes), d_k x d_v
 *     from 1 x 1 to 200 x 200 (8, 64, 128, 160, 200 and odd sizes) and the unit widths the
 *     operators cut (block_cols and the tail). The same for the conv kernels in L = 1..300,
 *     511-513, 1024, 4096 (kernels never see L = 0), and the L = 0 size, with which
 *     varlen_conv.c sizes a task's scratch for sequences of any length, covers every L.
 *  2. Without a sanitizer: each kernel runs a unit of T tokens in a scratch of the smallest size
 *     scratch_bytes gives any longer call (T < T_max, every T_max of the list above at once),
 *     at the start of a buffer whose bytes after it, up to past the size T itself would ask for,
 *     are canaries. The canaries must survive, and the output, the state and the capture must
 *     equal bit for bit a run in a scratch of exactly scratch_bytes(T) (guarded too, filled with
 *     another pattern, so that a result depending on unwritten scratch also shows). Kernels
 *     with a step also run the unit in step_tokens pieces in the smaller scratch (the lock-step
 *     path). Cases: targeted ones (the 7802e46 shape, GatedDeltaNet decode, half-precision
 *     states, streaming stores) and balanced random ones; state from zeros, separate or in
 *     place; GQA groups of 1 to 8 heads; the GatedDeltaNet capture.
 * Closing line "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testkit.h"

#define MAX_FAMILIES 16
#define MAX_TUNINGS 16

typedef struct family {
  const char* name;
  const la_kernel* la;
  const conv_kernel* conv;
} family;

/* The reference kernels and every family this build and CPU run (registry order). */
static int find_families(family* out, int max) {
  int n = 0;
  for (int isa = LINATTN_ISA_REFERENCE; isa <= linattn_isa_count() && n < max; isa++) {
    const kernel_table* kt = linattn_kernels_for_isa((linattn_isa)isa);
    if (kt) out[n++] = (family){linattn_isa_name(kt->isa), kt->la, kt->conv};
  }
  return n;
}

static int find_tunings(const linattn_tuning** out, int max) {
  int n = 0;
  for (size_t i = 0; linattn_tuning_at(i) && n < max; i++) out[n++] = linattn_tuning_at(i);
  return n;
}

/* Token counts of the size sweep: every T up to 300 (ten tiles, the pack threshold, the
 * lock-step threshold), tile boundaries further out, one long call. */
static int64_t g_sweep[320];
static int g_nsweep;

static void make_sweep(void) {
  for (int64_t t = 0; t <= 300; t++) g_sweep[g_nsweep++] = t;
  static const int64_t more[] = {511, 512, 513, 1024, 4096};
  for (size_t i = 0; i < sizeof more / sizeof more[0]; i++) g_sweep[g_nsweep++] = more[i];
}

/* ------------------------------------------------------------------ LinearAttention params */

/* GatedDeltaNet's extensions of la_params (gated_delta_net.c): V-major fp32 state, then the
 * q/k norm, then the fused gates (softplus with beta sigmoid in the io dtype, or sigmoid in
 * fp32, the pre-computed gates' dtype). */
enum { GDN_NONE, GDN_VMAJOR, GDN_NORM, GDN_SOFTPLUS, GDN_SIGMOID, GDN_KINDS };
static const char* gdn_names[] = {"LinearAttention", "gdn V-major", "gdn +norm", "gdn +norm softplus/sigmoid-beta",
                                  "gdn sigmoid gate f32"};
/* rule and decay kind */
static const struct { linattn_update_rule rule; la_decay_kind dkind; const char* name; } g_rules[] = {
    {LINATTN_UPDATE_LINEAR, LA_DECAY_NONE, "linear"},
    {LINATTN_UPDATE_GATED, LA_DECAY_PER_HEAD, "gated/head"},
    {LINATTN_UPDATE_GATED, LA_DECAY_PER_KEY, "gated/key"},
    {LINATTN_UPDATE_DELTA, LA_DECAY_NONE, "delta"},
    {LINATTN_UPDATE_GATED_DELTA, LA_DECAY_PER_HEAD, "gated_delta/head"},
    {LINATTN_UPDATE_GATED_DELTA, LA_DECAY_PER_KEY, "gated_delta/key"},
};
enum { NRULES = sizeof g_rules / sizeof g_rules[0] };
static const linattn_dtype g_dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
static const int64_t g_shapes[][2] = {{1, 1},   {7, 13},   {8, 8},    {8, 160},   {13, 200},  {16, 24},  {33, 17},
                                      {64, 64}, {64, 200}, {128, 128}, {128, 160}, {160, 200}, {200, 64}, {200, 200}};
enum { NSHAPES = sizeof g_shapes / sizeof g_shapes[0] };

typedef struct la_cfg {
  int rule;             /* index into g_rules */
  linattn_dtype io, sdt;
  bool stream;          /* stream_state: a separate fp32 state_out */
  int gdn;
  int64_t dk, dv, ncols;
} la_cfg;

/* The la_params an operator builds for cfg under tuning t for a call of T tokens: the four
 * la_tuning fields LinearAttention copies, sweep_tokens only for GatedDeltaNet. */
static la_params make_params(const la_cfg* c, const linattn_tuning* t, int64_t T) {
  la_params p;
  memset(&p, 0, sizeof p);
  p.gated = g_rules[c->rule].rule == LINATTN_UPDATE_GATED || g_rules[c->rule].rule == LINATTN_UPDATE_GATED_DELTA;
  p.delta = g_rules[c->rule].rule == LINATTN_UPDATE_DELTA || g_rules[c->rule].rule == LINATTN_UPDATE_GATED_DELTA;
  p.decay_kind = g_rules[c->rule].dkind;
  p.beta_kind = p.delta ? LA_BETA_PER_HEAD : LA_BETA_NONE;
  p.io_dtype = c->io;
  p.T = T;
  p.d_k = c->dk;
  p.d_v = c->dv;
  p.scale = 1.0f / sqrtf((float)c->dk);
  p.scale_f64 = p.scale;
  p.stream_state = c->stream;
  p.state_dtype = c->sdt;
  p.sweep_tokens = t->la.sweep_tokens;
  p.fold_head_decay = t->la.fold_head_decay;
  if (c->gdn == GDN_NONE) {
    p.stage_plain = t->la.stage_plain;
    p.decode_vectors = t->la.decode_vectors;
    p.decode_overlap = t->la.decode_overlap;
    p.decode_half_convert = t->la.decode_half_convert;
    p.decode_one_pass_prefetch = t->la.decode_one_pass_prefetch;
    return p;
  }
  p.state_v_major = true;
  p.l2_eps = 1e-6f;
  p.gate_lower_bound = -5.0f;
  p.qk_l2_norm = c->gdn >= GDN_NORM && c->gdn != GDN_SIGMOID;
  p.gate_dtype = c->gdn == GDN_SOFTPLUS ? c->io : LINATTN_DTYPE_F32;
  if (p.gated && c->gdn == GDN_SOFTPLUS) p.gate = LA_GATE_SOFTPLUS;
  if (p.gated && c->gdn == GDN_SIGMOID) p.gate = LA_GATE_SIGMOID;
  p.beta_sigmoid = c->gdn == GDN_SOFTPLUS;
  return p;
}

static void describe_cfg(char* buf, size_t n, const la_cfg* c) {
  snprintf(buf, n, "%s %s io %s state %s%s d_k %lld d_v %lld ncols %lld", gdn_names[c->gdn], g_rules[c->rule].name,
           tk_dtype_str(c->io), tk_dtype_str(c->sdt), c->stream ? " streaming" : "", (long long)c->dk,
           (long long)c->dv, (long long)c->ncols);
}

/* The unit widths an operator cuts d_v into for kernel k: block_cols and the last block. */
static int unit_widths(const la_kernel* k, int64_t dv, int64_t* w) {
  const int64_t bc = k->block_cols <= 0 || k->block_cols > dv ? dv : k->block_cols;
  w[0] = bc;
  return dv % bc ? (w[1] = dv % bc, 2) : 1;
}

/* ------------------------------------------------------------------ 1. sizes */

/* First T of the sweep at which size(T) < size(previous T), or -1. */
static int64_t la_first_shrink(const la_kernel* k, const la_cfg* c, const linattn_tuning* t, size_t* before,
                               size_t* after) {
  size_t prev = 0;
  for (int i = 0; i < g_nsweep; i++) {
    const la_params p = make_params(c, t, g_sweep[i]);
    const size_t sb = k->scratch_bytes(&p, c->ncols);
    if (i > 0 && sb < prev) {
      *before = prev;
      *after = sb;
      return g_sweep[i];
    }
    prev = sb;
  }
  return -1;
}

static void check_la_sizes(const family* fams, int nfam, const linattn_tuning* const* tun, int ntun) {
  /* state kinds: fp32 cached, fp32 streaming (a separate state_out), fp16, bf16 */
  for (int f = 0; f < nfam; f++)
    for (int ti = 0; ti < ntun; ti++) {
      int64_t cfgs = 0, bad = 0;
      for (int st = 0; st < 4; st++)
        for (int gdn = 0; gdn < GDN_KINDS; gdn++) {
          if (gdn != GDN_NONE && st != 0) continue; /* V-major states are fp32, GatedDeltaNet never streams */
          for (int r = 0; r < NRULES; r++)
            for (int io = 0; io < 3; io++)
              for (int s = 0; s < NSHAPES; s++) {
                la_cfg c = {r, g_dts[io], st < 2 ? LINATTN_DTYPE_F32 : g_dts[st - 1], st == 1, gdn, g_shapes[s][0],
                            g_shapes[s][1], 0};
                int64_t w[2];
                const int nw = unit_widths(fams[f].la, c.dv, w);
                for (int wi = 0; wi < nw; wi++) {
                  c.ncols = w[wi];
                  size_t before = 0, after = 0;
                  const int64_t T = la_first_shrink(fams[f].la, &c, tun[ti], &before, &after);
                  cfgs++;
                  if (T >= 0) {
                    bad++;
                    char d[200];
                    describe_cfg(d, sizeof d, &c);
                    tk_check(false, "%s, tuning %s, %s: scratch_bytes shrinks at T = %lld (%zu -> %zu bytes)",
                             fams[f].name, tun[ti]->name, d, (long long)T, before, after);
                  }
                }
              }
        }
      tk_check(bad == 0 && cfgs > 0, "LinearAttention %s, tuning %s: scratch_bytes non-decreasing in T = 0..%lld for %lld "
               "parameter sets (%lld shrink)", fams[f].name, tun[ti]->name, (long long)g_sweep[g_nsweep - 1],
               (long long)cfgs, (long long)bad);
    }
}

/* ------------------------------------------------------------------ conv params */

typedef struct conv_cfg {
  linattn_dtype dt;
  bool cl, past, present, bias, stream;
  int in_place; /* present == past */
  int64_t K, dil, nc;
  linattn_activation act;
} conv_cfg;

/* The conv_params of a dense call (causal_conv.c) of one batch of nc channels and L tokens,
 * packed (channels-first (C, L) rows, or channels-last (L, C)); pointers left NULL. */
static conv_params conv_make_params(const conv_cfg* c, int64_t L) {
  conv_params p;
  memset(&p, 0, sizeof p);
  p.dtype = c->dt;
  p.activation = c->act;
  p.channels_last = c->cl;
  p.B = 1;
  p.C = c->nc;
  p.L = L;
  p.K = c->K;
  p.dilation = c->dil;
  p.S = (c->K - 1) * c->dil;
  p.x_sb = p.y_sb = c->nc * L;
  p.x_sc = p.y_sc = c->cl ? 1 : L;
  p.x_st = p.y_st = c->cl ? c->nc : 1;
  p.s_sb = p.S * c->nc;
  p.s_sc = c->cl ? 1 : p.S;
  p.s_st = c->cl ? c->nc : 1;
  p.stream_output = p.stream_rows = c->stream;
  return p;
}

/* Sizes take pointers only as present/absent: any non-NULL address stands for a tensor. */
static char g_dummy[64];

static void conv_set_presence(conv_params* p, const conv_cfg* c) {
  p->past = c->past ? g_dummy : NULL;
  p->present = c->present ? g_dummy : NULL;
  p->bias = c->bias ? g_dummy : NULL;
}

static void describe_conv(char* buf, size_t n, const conv_cfg* c) {
  snprintf(buf, n, "conv %s %s K %lld dilation %lld nc %lld past %d present %d%s bias %d act %d stream %d",
           tk_dtype_str(c->dt), c->cl ? "channels-last" : "channels-first", (long long)c->K, (long long)c->dil,
           (long long)c->nc, c->past, c->present, c->in_place ? " (in place)" : "", c->bias, (int)c->act, c->stream);
}

static void check_conv_sizes(const family* fams, int nfam) {
  static const int64_t ncs[] = {1, 16, 17, 64, 100, 1024};
  for (int f = 0; f < nfam; f++) {
    const conv_kernel* k = fams[f].conv;
    int64_t cfgs = 0, bad = 0, varlen_bad = 0;
    for (int dt = 0; dt < 3; dt++)
      for (int64_t K = 1; K <= 5; K++)
        for (int64_t dil = 1; dil <= 2; dil++)
          for (size_t ni = 0; ni < sizeof ncs / sizeof ncs[0]; ni++) {
            /* varlen_conv.c: one size for every sequence, from channels-last params of L = 0
             * without states (varlen_resolve), whatever layout and length a unit then has */
            conv_cfg vc = {g_dts[dt], true, false, false, false, false, 0, K, dil, ncs[ni], LINATTN_ACTIVATION_NONE};
            conv_params vp = conv_make_params(&vc, 0);
            const size_t varlen_bytes = k->scratch_bytes(&vp, ncs[ni]);
            for (int v = 0; v < 64; v++) { /* layout, past, present, bias, streaming, activation */
              conv_cfg c = {g_dts[dt], v & 1, (v >> 1) & 1, (v >> 2) & 1, (v >> 3) & 1, (v >> 4) & 1, 0, K, dil,
                            ncs[ni], (v >> 5) & 1 ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE};
              size_t prev = 0, before = 0, after = 0, worst = 0;
              int64_t shrink = -1;
              for (int i = 1; i < g_nsweep; i++) { /* L >= 1 */
                conv_params p = conv_make_params(&c, g_sweep[i]);
                conv_set_presence(&p, &c);
                const size_t sb = k->scratch_bytes(&p, c.nc);
                if (i > 1 && sb < prev && shrink < 0) shrink = g_sweep[i], before = prev, after = sb;
                if (sb > worst) worst = sb;
                prev = sb;
              }
              cfgs++;
              char d[200];
              if (shrink >= 0) {
                bad++;
                describe_conv(d, sizeof d, &c);
                tk_check(false, "%s %s: scratch_bytes shrinks at L = %lld (%zu -> %zu bytes)", fams[f].name, d,
                         (long long)shrink, before, after);
              }
              if (worst > varlen_bytes) {
                varlen_bad++;
                describe_conv(d, sizeof d, &c);
                tk_check(false, "%s %s: needs %zu bytes, more than the %zu of varlen_conv.c's L = 0 sizing",
                         fams[f].name, d, worst, varlen_bytes);
              }
            }
          }
    tk_check(bad == 0 && cfgs > 0, "conv %s: scratch_bytes non-decreasing in L = 1..%lld for %lld parameter sets (%lld shrink)",
             fams[f].name, (long long)g_sweep[g_nsweep - 1], (long long)cfgs, (long long)bad);
    tk_check(varlen_bad == 0, "conv %s: the L = 0 size of varlen_conv.c covers every L and layout (%lld short)",
             fams[f].name, (long long)varlen_bad);
  }
}

/* ------------------------------------------------------------------ guarded scratch */

enum { CANARY_TAIL = 256 };

/* A scratch of `bytes` at the start of a 64-byte aligned buffer whose bytes from `bytes` up to
 * reach + CANARY_TAIL are canaries (reach: the most a kernel could address by its own size). */
typedef struct guard {
  unsigned char* buf;
  size_t bytes, end;
} guard;

static unsigned char canary_byte(size_t i) { return (unsigned char)(0x5c ^ (i * 131u + (i >> 8))); }

static void guard_make(guard* g, size_t bytes, size_t reach, unsigned char fill) {
  g->bytes = bytes;
  g->end = (bytes > reach ? bytes : reach) + CANARY_TAIL;
  g->buf = tk_aligned_alloc(64, (g->end + 63) / 64 * 64);
  memset(g->buf, fill, bytes);
  for (size_t i = bytes; i < g->end; i++) g->buf[i] = canary_byte(i);
}

/* Bytes past the scratch that changed. */
static size_t guard_damage(const guard* g, size_t* first) {
  size_t n = 0;
  *first = 0;
  for (size_t i = g->bytes; i < g->end; i++)
    if (g->buf[i] != canary_byte(i)) {
      if (!n) *first = i;
      n++;
    }
  return n;
}

static void guard_free(guard* g) { tk_aligned_free(g->buf); }

/* The smallest scratch_bytes of any sweep length above T (what any longer call would give). */
static size_t la_floor_above(const la_kernel* k, const la_cfg* c, const linattn_tuning* t, int64_t T) {
  size_t best = SIZE_MAX;
  for (int i = 0; i < g_nsweep; i++)
    if (g_sweep[i] > T) {
      const la_params p = make_params(c, t, g_sweep[i]);
      const size_t sb = k->scratch_bytes(&p, c->ncols);
      if (sb < best) best = sb;
    }
  return best;
}

/* ------------------------------------------------------------------ 2. LinearAttention runs */

enum { ST_ZEROS, ST_SEPARATE, ST_INPLACE };
static const char* st_names[] = {"zeros", "separate", "in place"};

typedef struct la_run_case {
  la_cfg c;
  int st, nq;
  int64_t cap; /* GatedDeltaNet capture of the first cap tokens (0: none) */
  int64_t tmax; /* tokens of the inputs: the longest run */
} la_run_case;

/* One unit's inputs for tmax tokens, and the buffers a run writes. */
typedef struct la_data {
  void *q, *k, *v, *decay, *beta;
  float dt_bias[256];
  float gate_coef;
  int64_t ld, state_elems, out_elems, dw;
  void* state0; /* the entering state (state dtype) */
} la_data;

typedef struct la_out {
  void* out;
  void* state;
  float *cap_decay, *cap_key, *cap_delta;
} la_out;

static size_t sesz(linattn_dtype dt) { return tk_dtype_size(dt); }

static void* random_io(tk_rng* r, linattn_dtype dt, int64_t n, double lo, double hi, double norm) {
  void* a = tk_xcalloc((size_t)(n > 0 ? n : 1), sesz(dt));
  for (int64_t i = 0; i < n; i++) tk_store(a, i, dt, norm * tk_uniform_range(r, lo, hi));
  return a;
}

static void la_data_make(tk_rng* r, const la_run_case* rc, la_data* d) {
  const la_cfg* c = &rc->c;
  const int64_t T = rc->tmax, dk = c->dk, nc = c->ncols;
  const linattn_dtype gdt = c->gdn == GDN_NONE ? c->io : c->gdn == GDN_SOFTPLUS ? c->io : LINATTN_DTYPE_F32;
  const bool raw_gates = c->gdn == GDN_SOFTPLUS || c->gdn == GDN_SIGMOID;
  const double kn = 1.0 / sqrt((double)dk); /* |k| about 1: the delta rule stays contractive */
  memset(d, 0, sizeof *d);
  d->q = random_io(r, c->io, T * rc->nq * dk, -1, 1, kn * 1.7);
  d->k = random_io(r, c->io, T * dk, -1, 1, kn * 1.7);
  d->v = random_io(r, c->io, T * nc, -1, 1, 1.0);
  d->dw = g_rules[c->rule].dkind == LA_DECAY_PER_KEY ? dk : 1;
  d->decay = raw_gates ? random_io(r, gdt, T * d->dw, -2, 2, 1.0) : random_io(r, gdt, T * d->dw, -0.5, 0, 1.0);
  /* every 97th per-key log-decay (every 13th per-head one) -45, below 2^-60: the decay product
   * leaves the range the kernels divide by, so decay segments end inside tiles, not only at
   * their ends */
  const int64_t every = d->dw > 1 ? 97 : 13;
  if (!raw_gates)
    for (int64_t i = every - 1; i < T * d->dw; i += every) tk_store(d->decay, i, gdt, -45.0);
  d->beta = c->gdn == GDN_SOFTPLUS ? random_io(r, gdt, T, -2, 2, 1.0) : random_io(r, gdt, T, 0, 1, 1.0);
  for (int64_t i = 0; i < dk && i < 256; i++) d->dt_bias[i] = (float)tk_uniform_range(r, -0.5, 0.5);
  d->gate_coef = c->gdn == GDN_SOFTPLUS ? -expf((float)tk_uniform_range(r, -1, 1)) : expf((float)tk_uniform_range(r, -1, 1));
  /* K-major rows of ncols (+ a gap) or V-major columns of d_k (as GatedDeltaNet passes them) */
  d->ld = c->gdn != GDN_NONE ? dk : nc + tk_below(r, 3);
  d->state_elems = (c->gdn != GDN_NONE ? nc : dk) * d->ld;
  d->state0 = random_io(r, c->sdt, d->state_elems, -0.5, 0.5, 1.0);
  d->out_elems = T * rc->nq * nc;
}

static void la_data_free(la_data* d) {
  free(d->q); free(d->k); free(d->v); free(d->decay); free(d->beta); free(d->state0);
}

static void la_out_make(const la_run_case* rc, const la_data* d, la_out* o) {
  const int64_t T = rc->tmax;
  o->out = tk_xcalloc((size_t)(d->out_elems + 1), sesz(rc->c.io));
  o->state = tk_xcalloc((size_t)(d->state_elems + 1), sesz(rc->c.sdt));
  o->cap_decay = tk_xcalloc((size_t)(T * d->dw + 1), sizeof(float));
  o->cap_key = tk_xcalloc((size_t)(T * rc->c.dk + 1), sizeof(float));
  o->cap_delta = tk_xcalloc((size_t)(T * rc->c.ncols + 1), sizeof(float));
}

static void la_out_free(la_out* o) {
  free(o->out); free(o->state); free(o->cap_decay); free(o->cap_key); free(o->cap_delta);
}

/* Every byte of the outputs poisoned; the state copied in (in place) or poisoned. */
static void la_out_reset(const la_run_case* rc, const la_data* d, la_out* o) {
  const int64_t T = rc->tmax;
  memset(o->out, 0xff, (size_t)(d->out_elems + 1) * sesz(rc->c.io));
  if (rc->st == ST_INPLACE) memcpy(o->state, d->state0, (size_t)d->state_elems * sesz(rc->c.sdt));
  else memset(o->state, 0xff, (size_t)d->state_elems * sesz(rc->c.sdt));
  memset(o->cap_decay, 0xff, sizeof(float) * (size_t)(T * d->dw + 1));
  memset(o->cap_key, 0xff, sizeof(float) * (size_t)(T * rc->c.dk + 1));
  memset(o->cap_delta, 0xff, sizeof(float) * (size_t)(T * rc->c.ncols + 1));
}

static la_unit make_unit(const la_run_case* rc, const la_params* p, const la_data* d, la_out* o) {
  const la_cfg* c = &rc->c;
  la_unit u;
  memset(&u, 0, sizeof u);
  u.q = d->q;
  u.q_token_stride = rc->nq * c->dk;
  u.q_head_stride = c->dk;
  u.n_q = rc->nq;
  u.k = d->k;
  u.k_token_stride = c->dk;
  u.v = d->v;
  u.v_token_stride = c->ncols;
  if (p->gated) u.decay = d->decay, u.decay_token_stride = d->dw;
  if (p->delta) u.beta = d->beta, u.beta_token_stride = 1;
  u.out = o->out;
  u.out_token_stride = rc->nq * c->ncols;
  u.out_head_stride = c->ncols;
  u.state_in = rc->st == ST_ZEROS ? NULL : rc->st == ST_INPLACE ? o->state : d->state0;
  u.state_out = o->state;
  u.ld_state = d->ld;
  u.col0 = 0;
  u.ncols = c->ncols;
  if (p->gate != LA_GATE_NONE) {
    u.gate_coef = d->gate_coef;
    u.dt_bias = d->dt_bias;
    u.dt_bias_per_key = p->decay_kind == LA_DECAY_PER_KEY && c->dk <= 256;
  }
  if (rc->cap > 0) {
    u.cap_tokens = rc->cap < p->T ? rc->cap : p->T;
    u.cap_decay = o->cap_decay;
    u.cap_decay_stride = d->dw;
    u.cap_key = o->cap_key;
    u.cap_key_stride = c->dk;
    u.cap_delta = o->cap_delta;
    u.cap_delta_stride = c->ncols;
  }
  return u;
}

/* Runs the unit (T = p->T) in scratch g, whole or (steps) in step_tokens pieces. */
static void la_run(const la_kernel* k, const la_params* p, const la_run_case* rc, const la_data* d, la_out* o,
                   guard* g, bool steps) {
  la_out_reset(rc, d, o);
  const la_unit u = make_unit(rc, p, d, o);
  if (!steps) {
    k->run(p, &u, g->buf);
    return;
  }
  for (int64_t t0 = 0; t0 < p->T; t0 += k->step_tokens) {
    const int64_t t1 = t0 + k->step_tokens < p->T ? t0 + k->step_tokens : p->T;
    k->step(p, &u, g->buf, t0, t1, NULL);
  }
}

/* Bytes of two runs' outputs that differ (everything a run may write, gaps included). */
static int64_t la_out_differ(const la_run_case* rc, const la_data* d, const la_out* a, const la_out* b) {
  const int64_t T = rc->tmax;
  int64_t n = 0;
  n += memcmp(a->out, b->out, (size_t)(d->out_elems + 1) * sesz(rc->c.io)) != 0;
  n += memcmp(a->state, b->state, (size_t)d->state_elems * sesz(rc->c.sdt)) != 0;
  n += memcmp(a->cap_decay, b->cap_decay, sizeof(float) * (size_t)(T * d->dw + 1)) != 0;
  n += memcmp(a->cap_key, b->cap_key, sizeof(float) * (size_t)(T * rc->c.dk + 1)) != 0;
  n += memcmp(a->cap_delta, b->cap_delta, sizeof(float) * (size_t)(T * rc->c.ncols + 1)) != 0;
  return n;
}

/* Token counts of the runs: every T up to the pack threshold and one past it, then around the
 * tile boundaries (the 7802e46 class: one-tile calls beside longer ones) and the lock-step
 * threshold (64). */
static const int64_t g_run_T[] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 15, 16, 17, 31, 32, 33, 34, 47, 63, 64, 65, 66};
enum { NRUN_T = sizeof g_run_T / sizeof g_run_T[0] };

/* The whole check of one case on kernel k under tuning t; returns false on a failure. */
static bool la_check_runs(tk_rng* r, const la_kernel* k, const char* fam, const linattn_tuning* t, la_run_case rc) {
  rc.tmax = g_run_T[NRUN_T - 1];
  la_data d;
  la_data_make(r, &rc, &d);
  la_out exact, small;
  la_out_make(&rc, &d, &exact);
  la_out_make(&rc, &d, &small);
  char desc[240];
  describe_cfg(desc, sizeof desc, &rc.c);
  bool ok = true;
  for (int i = 0; i < NRUN_T && ok; i++) {
    const int64_t T = g_run_T[i];
    const la_params p = make_params(&rc.c, t, T);
    const size_t need = k->scratch_bytes(&p, rc.c.ncols), floor = la_floor_above(k, &rc.c, t, T);
    tk_context("%s, tuning %s, %s, state %s, n_q %d, capture %lld, T = %lld (scratch %zu, smallest longer %zu)", fam,
               t->name, desc, st_names[rc.st], rc.nq, (long long)rc.cap, (long long)T, need, floor);
    guard ge, gs;
    guard_make(&ge, need, need, 0xff);
    guard_make(&gs, floor, need, 0xa5);
    la_run(k, &p, &rc, &d, &exact, &ge, false);
    la_run(k, &p, &rc, &d, &small, &gs, false);
    size_t first;
    size_t dmg = guard_damage(&ge, &first);
    ok &= tk_check(dmg == 0, "exact scratch: %zu bytes past scratch_bytes(T) = %zu written (first at %zu)", dmg, need, first);
    dmg = guard_damage(&gs, &first);
    ok &= tk_check(dmg == 0, "scratch sized for a longer call (%zu bytes): %zu bytes past it written (first at %zu)", floor,
                   dmg, first);
    int64_t nd = la_out_differ(&rc, &d, &exact, &small);
    ok &= tk_check(nd == 0, "scratch sized for a longer call: %lld of output/state/capture differ from the exact scratch", (long long)nd);
    if (k->step && T > 0) {
      memset(gs.buf, 0xa5, floor);
      la_run(k, &p, &rc, &d, &small, &gs, true);
      dmg = guard_damage(&gs, &first);
      ok &= tk_check(dmg == 0, "step by %lld, longer call's scratch: %zu bytes past it written (first at %zu)",
                     (long long)k->step_tokens, dmg, first);
      nd = la_out_differ(&rc, &d, &exact, &small);
      ok &= tk_check(nd == 0, "step by %lld, longer call's scratch: %lld of output/state/capture differ from run",
                     (long long)k->step_tokens, (long long)nd);
    }
    guard_free(&ge);
    guard_free(&gs);
  }
  la_out_free(&exact);
  la_out_free(&small);
  la_data_free(&d);
  return ok;
}

/* Runs a case on every family (the GatedDeltaNet extensions: those with handles_gdn) under
 * every tuning; the unit width is each kernel's (its block or the tail). */
static int64_t g_la_runs;
static double g_la_seconds[MAX_FAMILIES];

static void la_case_all(tk_rng* r, const family* fams, int nfam, const linattn_tuning* const* tun, int ntun,
                        la_run_case rc, bool tail) {
  for (int f = 0; f < nfam; f++) {
    const la_kernel* k = fams[f].la;
    if (rc.c.gdn != GDN_NONE && !k->handles_gdn) continue;
    int64_t w[2];
    const int nw = unit_widths(k, rc.c.dv, w);
    rc.c.ncols = tail && nw > 1 ? w[1] : w[0];
    const double t0 = tk_seconds();
    /* the reference kernel reads no la_tuning field (src/ref): one entry, it is the slowest */
    for (int ti = 0; ti < (k == &linattn_la_reference ? 1 : ntun); ti++) {
      la_check_runs(r, k, fams[f].name, tun[ti], rc);
      g_la_runs++;
    }
    g_la_seconds[f] += tk_seconds() - t0;
  }
}

static void check_la_runs(tk_rng* r, const family* fams, int nfam, const linattn_tuning* const* tun, int ntun) {
  const linattn_dtype F32 = LINATTN_DTYPE_F32, F16 = LINATTN_DTYPE_F16, BF16 = LINATTN_DTYPE_BF16;
  /* targeted: the 7802e46 shape (d_k 8, d_v 160, fp32 state in place, both unit widths);
   * GatedDeltaNet with norm, gates and capture; half-precision states in place; streaming */
  const struct { la_cfg c; int st, nq; int64_t cap; bool tail; } fixed[] = {
      {{4, F32, F32, false, GDN_NONE, 8, 160, 0}, ST_INPLACE, 1, 0, false},
      {{4, F32, F32, false, GDN_NONE, 8, 160, 0}, ST_INPLACE, 2, 0, true},
      {{5, BF16, F32, false, GDN_SOFTPLUS, 128, 128, 0}, ST_INPLACE, 1, 5, false},
      {{4, F16, F32, false, GDN_SIGMOID, 64, 160, 0}, ST_SEPARATE, 2, 64, true},
      {{2, F32, F16, false, GDN_NONE, 64, 64, 0}, ST_INPLACE, 1, 0, false},
      {{5, BF16, BF16, false, GDN_NONE, 128, 200, 0}, ST_INPLACE, 4, 0, true},
      {{3, F32, F32, true, GDN_NONE, 128, 160, 0}, ST_SEPARATE, 1, 0, false},
      {{0, F32, F32, false, GDN_NONE, 200, 64, 0}, ST_ZEROS, 8, 0, false},
      /* per-key decay, fp32: the lock-step tiles staged in one burst (la_stage_tile_per_key_nv,
       * AVX-512: d_k 64 and 128) against run's slot by slot, one and two heads (two-token
       * sweeps) and three (one-token sweeps) */
      {{2, F32, F32, false, GDN_NONE, 64, 64, 0}, ST_INPLACE, 1, 0, false},
      {{2, F32, F32, false, GDN_NONE, 64, 40, 0}, ST_SEPARATE, 2, 0, false},
      {{5, F32, F32, false, GDN_NONE, 128, 128, 0}, ST_SEPARATE, 2, 0, true},
      {{5, F32, F32, false, GDN_NONE, 64, 160, 0}, ST_ZEROS, 3, 0, false},
      /* per-head decay, fp32 (la_stage_tile_fold_nv, decay folded out with two-token sweeps) */
      {{4, F32, F32, false, GDN_NONE, 128, 128, 0}, ST_INPLACE, 1, 0, false},
      {{1, F32, F32, false, GDN_NONE, 128, 64, 0}, ST_SEPARATE, 2, 0, true},
      {{4, F32, F32, false, GDN_NONE, 64, 64, 0}, ST_ZEROS, 3, 0, false},
      /* the same bursts with 16-bit inputs */
      {{2, F16, F32, false, GDN_NONE, 64, 64, 0}, ST_INPLACE, 1, 0, false},
      {{5, BF16, BF16, false, GDN_NONE, 128, 128, 0}, ST_SEPARATE, 2, 0, true},
      {{4, BF16, F32, false, GDN_NONE, 128, 64, 0}, ST_INPLACE, 1, 0, false},
      {{1, F16, F16, false, GDN_NONE, 64, 160, 0}, ST_SEPARATE, 2, 0, false},
  };
  for (size_t i = 0; i < sizeof fixed / sizeof fixed[0]; i++) {
    la_run_case rc = {fixed[i].c, fixed[i].st, fixed[i].nq, fixed[i].cap, 0};
    la_case_all(r, fams, nfam, tun, ntun, rc, fixed[i].tail);
  }
  /* balanced random cases over the same axes */
  static const int nqs[] = {1, 2, 3, 8};
  const int cases = tk_case_count(16, 4);
  tk_axis a_rule, a_io, a_st, a_mode, a_gdn, a_nq, a_shape;
  tk_axis_init(&a_rule, NRULES); tk_axis_init(&a_io, 3); tk_axis_init(&a_st, 3); tk_axis_init(&a_mode, 4);
  tk_axis_init(&a_gdn, GDN_KINDS); tk_axis_init(&a_nq, 4); tk_axis_init(&a_shape, NSHAPES);
  for (int n = 0; n < cases; n++) {
    la_run_case rc;
    memset(&rc, 0, sizeof rc);
    rc.c.rule = tk_axis_next(&a_rule, r);
    rc.c.io = g_dts[tk_axis_next(&a_io, r)];
    rc.c.sdt = g_dts[tk_axis_next(&a_st, r)];
    const int mode = tk_axis_next(&a_mode, r); /* zeros, separate, in place, separate streaming */
    rc.st = mode == 3 ? ST_SEPARATE : mode;
    rc.c.stream = mode == 3 && rc.c.sdt == F32;
    rc.c.gdn = tk_axis_next(&a_gdn, r);
    if (rc.c.gdn != GDN_NONE) rc.c.sdt = F32, rc.c.stream = false;
    rc.nq = nqs[tk_axis_next(&a_nq, r)];
    const int s = tk_axis_next(&a_shape, r);
    rc.c.dk = g_shapes[s][0];
    rc.c.dv = g_shapes[s][1];
    rc.cap = rc.c.gdn != GDN_NONE && tk_below(r, 2) ? 1 + tk_below(r, 70) : 0;
    la_case_all(r, fams, nfam, tun, ntun, rc, tk_below(r, 2));
  }
}

/* ------------------------------------------------------------------ 2. conv runs */

typedef struct conv_data {
  void *x, *w, *bias, *past;
  int64_t x_elems, s_elems;
} conv_data;

/* Runs channels [0, nc) of a call of L tokens in scratch g (x, w, bias, past from d; the
 * output and present state into y and present, poisoned first). */
static void conv_run(const conv_kernel* k, const conv_cfg* c, int64_t L, const conv_data* d, void* y, void* present,
                     guard* g) {
  const size_t es = sesz(c->dt);
  conv_params p = conv_make_params(c, L);
  memset(y, 0xff, (size_t)(c->nc * L) * es);
  p.x = d->x;
  p.w = d->w;
  p.bias = c->bias ? d->bias : NULL;
  p.y = y;
  if (c->in_place) memcpy(present, d->past, (size_t)d->s_elems * es);
  else memset(present, 0xff, (size_t)d->s_elems * es);
  p.past = !c->past ? NULL : c->in_place ? present : d->past;
  p.present = c->present ? present : NULL;
  k->run(&p, 0, 0, c->nc, g->buf);
}

static bool conv_check_runs(tk_rng* r, const conv_kernel* k, const char* fam, const conv_cfg* c) {
  static const int64_t Ls[] = {1, 2, 3, 4, 5, 8, 17, 33, 65};
  const int64_t S = (c->K - 1) * c->dil, nc = c->nc;
  const size_t es = sesz(c->dt);
  char desc[240];
  describe_conv(desc, sizeof desc, c);
  conv_data d;
  d.x_elems = nc * Ls[sizeof Ls / sizeof Ls[0] - 1];
  d.s_elems = nc * S;
  d.w = random_io(r, c->dt, nc * c->K, -1, 1, 1.0);
  d.bias = random_io(r, c->dt, nc, -1, 1, 1.0);
  d.past = random_io(r, c->dt, d.s_elems, -2, 2, 1.0);
  d.x = random_io(r, c->dt, d.x_elems, -2, 2, 1.0);
  void* y[2] = {tk_xcalloc((size_t)d.x_elems + 1, es), tk_xcalloc((size_t)d.x_elems + 1, es)};
  void* pres[2] = {tk_xcalloc((size_t)d.s_elems + 1, es), tk_xcalloc((size_t)d.s_elems + 1, es)};
  bool ok = true;
  for (size_t i = 0; i < sizeof Ls / sizeof Ls[0] && ok; i++) {
    const int64_t L = Ls[i];
    conv_params p = conv_make_params(c, L);
    conv_set_presence(&p, c);
    const size_t need = k->scratch_bytes(&p, nc);
    size_t floor = SIZE_MAX;
    for (int j = 0; j < g_nsweep; j++)
      if (g_sweep[j] > L) {
        conv_params pl = conv_make_params(c, g_sweep[j]);
        conv_set_presence(&pl, c);
        const size_t sb = k->scratch_bytes(&pl, nc);
        if (sb < floor) floor = sb;
      }
    tk_context("%s %s, L = %lld (scratch %zu, smallest longer %zu)", fam, desc, (long long)L, need, floor);
    guard ge, gs;
    guard_make(&ge, need, need, 0xff);
    guard_make(&gs, floor, need, 0xa5);
    conv_run(k, c, L, &d, y[0], pres[0], &ge);
    conv_run(k, c, L, &d, y[1], pres[1], &gs);
    size_t first;
    size_t dmg = guard_damage(&ge, &first);
    ok &= tk_check(dmg == 0, "exact scratch: %zu bytes past scratch_bytes(L) = %zu written (first at %zu)", dmg, need, first);
    dmg = guard_damage(&gs, &first);
    ok &= tk_check(dmg == 0, "scratch sized for a longer call (%zu bytes): %zu bytes past it written (first at %zu)", floor,
                   dmg, first);
    const bool same = !memcmp(y[0], y[1], (size_t)(nc * L) * es) && !memcmp(pres[0], pres[1], (size_t)d.s_elems * es);
    ok &= tk_check(same, "scratch sized for a longer call: output or present state differ from the exact scratch");
    guard_free(&ge);
    guard_free(&gs);
  }
  free(d.w); free(d.bias); free(d.past); free(d.x);
  free(y[0]); free(y[1]); free(pres[0]); free(pres[1]);
  return ok;
}

/* Every dtype, layout, tap count 1-5, dilation 1-2 and state mode (none, past only, separate
 * present, in place); channel count, bias, activation and streaming stores drawn. */
static void check_conv_runs(tk_rng* r, const family* fams, int nfam) {
  static const int64_t ncs[] = {1, 16, 17, 64, 100};
  for (int dt = 0; dt < 3; dt++)
    for (int cl = 0; cl < 2; cl++)
      for (int64_t K = 1; K <= 5; K++)
        for (int64_t dil = 1; dil <= 2; dil++)
          for (int st = 0; st < 4; st++) {
            conv_cfg c;
            memset(&c, 0, sizeof c);
            c.dt = g_dts[dt];
            c.cl = cl;
            c.K = K;
            c.dil = dil;
            c.past = st >= 1;
            c.present = st >= 2;
            c.in_place = st == 3;
            c.bias = tk_below(r, 2);
            c.stream = tk_below(r, 4) == 0;
            c.act = tk_below(r, 2) ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
            c.nc = ncs[tk_below(r, 5)];
            for (int f = 0; f < nfam; f++) conv_check_runs(r, fams[f].conv, fams[f].name, &c);
          }
}

int main(void) {
  tk_begin("test_kernel_scratch");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  make_sweep();
  family fams[MAX_FAMILIES];
  const int nfam = find_families(fams, MAX_FAMILIES);
  if (linattn_isa_count() > MAX_FAMILIES) tk_fatal("%d kernel families: raise MAX_FAMILIES", linattn_isa_count());
  const linattn_tuning* tun[MAX_TUNINGS];
  const int ntun = find_tunings(tun, MAX_TUNINGS);
  if (linattn_tuning_at(MAX_TUNINGS)) tk_fatal("more than %d tuning entries: raise MAX_TUNINGS", MAX_TUNINGS);
  for (int f = 0; f < nfam; f++) tk_note("family %s", fams[f].name);
  tk_context("tuning table");
  tk_check(ntun >= 2, "the tuning table has its entries (%d)", ntun);
  for (int i = 0; i < ntun; i++) {
    tk_note("tuning %s", tun[i]->name);
    tk_check(linattn_tuning_by_name(tun[i]->name) == tun[i] && strstr(linattn_tuning_names(), tun[i]->name),
             "entry %s found by name and listed in the LINATTN_TUNE message", tun[i]->name);
  }

  double t0 = tk_seconds();
  tk_context("sizes");
  check_la_sizes(fams, nfam, tun, ntun);
  check_conv_sizes(fams, nfam);
  tk_note("sizes: %.1f s", tk_seconds() - t0);
  t0 = tk_seconds();
  check_la_runs(&r, fams, nfam, tun, ntun);
  tk_note("LinearAttention runs: %lld (kernel, tuning, case), each over %d token counts, %.1f s", (long long)g_la_runs,
          NRUN_T, tk_seconds() - t0);
  for (int f = 0; f < nfam; f++) tk_note("  %s: %.1f s", fams[f].name, g_la_seconds[f]);
  t0 = tk_seconds();
  check_conv_runs(&r, fams, nfam);
  tk_note("conv runs: %.1f s", tk_seconds() - t0);
  return tk_finish();
}
