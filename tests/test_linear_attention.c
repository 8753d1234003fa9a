/*
 * LinearAttention against the float64 oracle (tests/common/oracle.c), for every ISA the CPU
 * runs. The axes (rule, decay kind, beta kind, T dtype, S dtype, GQA layout, past state,
 * head sizes, token count, data mode, variant) are drawn with balanced samplers: each value of
 * each axis appears equally often and combinations are random (seed printed).
 *
 * Every case: poison outputs with NaN, call, check all written, compare with the oracle fed
 * the dtype-rounded inputs. Then one variant checks bit-identity with the base call:
 * in-place state (or explicit zero past == absent past), split into two calls (vs a split
 * oracle), strided views into one fused buffer, caller workspace, present_state not wanted.
 *
 * Tolerances (err = |got - ref|, M = max|ref| over the tensor):
 *   The library computes in fp32 on the same rounded inputs; with normalised keys, beta in
 *   [0,1) and decay in [-1,0] the recurrence is contractive and its fp32 error measured against
 *   float64 is below 1e-6 M (docs/algorithms.md 4.3), so E = 1e-5 M leaves a 10x margin.
 *   f32 output:   err <= E.
 *   f16/bf16 output: the fp32 value o' (|o' - ref| <= E) is rounded once to T:
 *     |round_T(o') - ref| <= ulp_T(o')/2 + E <= ulp_T(ref) + E (o' may sit one binade up);
 *     we allow 2 ulp_T(|ref|) + E to cover the scale being rounded to fp32.
 *   present_state: fp32 during the call and rounded once to S at the end, so
 *     err <= ulp_S(|ref|) + E_state (0 ulp for S = f32), E_state = 1e-5 max|ref state|.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "testkit.h"

enum { GQA_EQUAL, GQA_GROUP2, GQA_GROUP4, GQA_MQA, GQA_INVERSE, GQA_SEPARATE_KEYS, GQA_KINDS };
enum { V_INPLACE, V_SPLIT, V_STRIDED, V_WORKSPACE, V_NO_PRESENT, V_KINDS };
enum { DATA_NORMAL, DATA_NORMAL2, DATA_EXTREME_DECAY, DATA_EXTREME_BETA, DATA_KINDS };

static const int64_t token_counts[] = {0, 1, 2, 17, 64, 65, 300};
static const int64_t head_sizes[][2] = {{13, 7}, {7, 13}, {8, 8}, {16, 32}, {1, 3},
                                        {33, 17}, {17, 48}, {64, 64}, {128, 128}, {64, 128}};
enum { N_TOKEN_COUNTS = 7, N_HEAD_SIZES = 10, FIRST_BIG_HEAD = 7 };
static const linattn_dtype dtypes[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
static const char* gqa_names[] = {"equal", "group2", "group4", "mqa", "inverse", "separate_keys"};
static const char* variant_names[] = {"inplace", "split", "strided", "workspace", "no_present"};
static const char* rule_names[] = {"?", "linear", "gated", "delta", "gated_delta"};

typedef struct la_case {
  int index;
  linattn_update_rule rule;
  int decay_kind, beta_kind;
  linattn_dtype tdt, sdt;
  int gqa;
  uint32_t flags;
  int64_t B, T, Hq, Hkv, Nk, dk, dv;
  bool past;
  float scale;
  int64_t chunk_size;
  int data_mode;
  int variant;
  bool null_empty; /* pass data == NULL for zero-element tensors */
} la_case;

typedef struct la_data {
  tk_tensor q, k, v, past, decay, beta, out, present;
  double *qd, *kd, *vd, *pastd, *decayd, *betad;
  double *out_ref, *out_mag, *state_ref;
} la_data;

static bool is_gated(linattn_update_rule r) { return r == LINATTN_UPDATE_GATED || r == LINATTN_UPDATE_GATED_DELTA; }
static bool is_delta(linattn_update_rule r) { return r == LINATTN_UPDATE_DELTA || r == LINATTN_UPDATE_GATED_DELTA; }
static int64_t out_heads(const la_case* c) { return c->Hq > c->Hkv ? c->Hq : c->Hkv; }
static int64_t decay_width(const la_case* c) { return c->decay_kind == ORACLE_DECAY_PER_KEY ? c->Hkv * c->dk : c->Hkv; }
static int64_t beta_width(const la_case* c) { return c->beta_kind == ORACLE_BETA_SHARED ? 1 : c->Hkv; }

static void describe(const la_case* c, linattn_isa isa, int threads) {
  tk_context("#%d isa=%s threads=%d rule=%s decay=%d beta=%d T=%s S=%s gqa=%s(Hq=%lld Hkv=%lld Nk=%lld) "
             "flags=%u B=%lld tokens=%lld dk=%lld dv=%lld past=%d scale=%g data=%d variant=%s",
             c->index, linattn_isa_name(isa), threads, rule_names[c->rule], c->decay_kind, c->beta_kind,
             tk_dtype_str(c->tdt), tk_dtype_str(c->sdt), gqa_names[c->gqa], (long long)c->Hq,
             (long long)c->Hkv, (long long)c->Nk, c->flags, (long long)c->B, (long long)c->T,
             (long long)c->dk, (long long)c->dv, c->past, (double)c->scale, c->data_mode,
             variant_names[c->variant]);
}

typedef struct axes {
  tk_axis rule, decay, beta, tdt, sdt, gqa, past, tokens, heads, data, variant;
} axes;

static void axes_init(axes* a) {
  tk_axis_init(&a->rule, 4);
  tk_axis_init(&a->decay, 2);
  tk_axis_init(&a->beta, 2);
  tk_axis_init(&a->tdt, 3);
  tk_axis_init(&a->sdt, 3);
  tk_axis_init(&a->gqa, GQA_KINDS);
  tk_axis_init(&a->past, 2);
  tk_axis_init(&a->tokens, N_TOKEN_COUNTS);
  tk_axis_init(&a->heads, N_HEAD_SIZES);
  tk_axis_init(&a->data, DATA_KINDS);
  tk_axis_init(&a->variant, V_KINDS);
}

static la_case draw_case(axes* a, tk_rng* r, int index) {
  la_case c;
  memset(&c, 0, sizeof c);
  c.index = index;
  c.rule = (linattn_update_rule)(1 + tk_axis_next(&a->rule, r));
  int dk_ = tk_axis_next(&a->decay, r), bk = tk_axis_next(&a->beta, r);
  c.decay_kind = is_gated(c.rule) ? 1 + dk_ : ORACLE_DECAY_NONE;
  c.beta_kind = is_delta(c.rule) ? 1 + bk : ORACLE_BETA_NONE;
  c.tdt = dtypes[tk_axis_next(&a->tdt, r)];
  c.sdt = dtypes[tk_axis_next(&a->sdt, r)];
  c.gqa = tk_axis_next(&a->gqa, r);
  c.past = tk_axis_next(&a->past, r) != 0;
  c.T = token_counts[tk_axis_next(&a->tokens, r)];
  int hs = tk_axis_next(&a->heads, r);
  c.dk = head_sizes[hs][0];
  c.dv = head_sizes[hs][1];
  c.data_mode = tk_axis_next(&a->data, r);
  c.variant = tk_axis_next(&a->variant, r);
  c.B = 1 + tk_below(r, 3);
  c.flags = tk_below(r, 2) ? LINATTN_LA_ORT_CONTRIB : 0;
  switch (c.gqa) {
    case GQA_EQUAL: c.Hkv = 1 + tk_below(r, 3); c.Hq = c.Hkv; break;
    case GQA_GROUP2: c.Hkv = 1 + tk_below(r, 2); c.Hq = 2 * c.Hkv; break;
    case GQA_GROUP4: c.Hkv = 1 + tk_below(r, 2); c.Hq = 4 * c.Hkv; break;
    case GQA_MQA: c.Hkv = 1; c.Hq = tk_below(r, 2) ? 3 : 8; break;
    case GQA_INVERSE: c.Hq = 1 + tk_below(r, 2); c.Hkv = c.Hq * (2 + tk_below(r, 2)); break;
    default: {
      static const int64_t sep[][3] = {{2, 4, 2}, {1, 3, 1}, {4, 4, 2}, {4, 2, 1}, {2, 6, 3}};
      int i = (int)tk_below(r, 5);
      c.Hq = sep[i][0];
      c.Hkv = sep[i][1];
      c.Nk = sep[i][2];
    }
  }
  if (c.gqa >= GQA_INVERSE) c.flags = LINATTN_LA_ORT_CONTRIB;
  if (!c.Nk) c.Nk = c.Hkv;
  if (hs >= FIRST_BIG_HEAD) { /* realistic head sizes: keep the case cheap */
    c.B = 1;
    if (c.T > 65) c.T = 65;
    if (c.Hkv > 2 || c.Hq > 4) {
      c.Hq = c.gqa == GQA_INVERSE ? 1 : 2;
      c.Hkv = 2;
      c.Nk = c.gqa == GQA_SEPARATE_KEYS ? 1 : 2;
      if (c.gqa == GQA_GROUP4 || c.gqa == GQA_MQA) { c.Hkv = 1; c.Nk = 1; c.Hq = 4; }
    }
  } else if (c.T == 300 && c.dk * c.dv > 400) {
    c.B = 1;
  }
  static const float scales[] = {0.0f, 0.0f, 0.25f, -0.5f, 1.0f};
  c.scale = scales[tk_below(r, 5)];
  static const int64_t chunks[] = {64, 1, 16, 100};
  c.chunk_size = chunks[tk_below(r, 4)];
  c.null_empty = tk_below(r, 2) != 0;
  return c;
}

static linattn_linear_attention_desc make_desc(const la_case* c) {
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.update_rule = c->rule;
  d.q_num_heads = c->Hq;
  d.kv_num_heads = c->Hkv;
  d.scale = c->scale;
  d.chunk_size = c->chunk_size;
  d.flags = c->flags;
  return d;
}

static void make_data(const la_case* c, tk_rng* r, la_data* d) {
  memset(d, 0, sizeof *d);
  const int64_t B = c->B, T = c->T;
  int64_t qdims[3] = {B, T, c->Hq * c->dk}, kdims[3] = {B, T, c->Nk * c->dk}, vdims[3] = {B, T, c->Hkv * c->dv};
  int64_t odims[3] = {B, T, out_heads(c) * c->dv}, sdims[4] = {B, c->Hkv, c->dk, c->dv};
  int64_t gdims[3] = {B, T, decay_width(c)}, bdims[3] = {B, T, beta_width(c)};
  d->q = tk_alloc(c->tdt, 3, qdims);
  d->k = tk_alloc(c->tdt, 3, kdims);
  d->v = tk_alloc(c->tdt, 3, vdims);
  d->out = tk_alloc(c->tdt, 3, odims);
  d->present = tk_alloc(c->sdt, 4, sdims);
  d->qd = tk_dalloc(tk_numel(&d->q));
  d->kd = tk_dalloc(tk_numel(&d->k));
  d->vd = tk_dalloc(tk_numel(&d->v));
  d->out_ref = tk_dalloc(tk_numel(&d->out));
  d->out_mag = tk_dalloc(tk_numel(&d->out));
  d->state_ref = tk_dalloc(tk_numel(&d->present));
  tk_fill_normal(r, d->qd, tk_numel(&d->q), 1.0);
  tk_fill_normal(r, d->kd, tk_numel(&d->k), 1.0);
  tk_normalise_rows(d->kd, B * T * c->Nk, c->dk);
  tk_fill_normal(r, d->vd, tk_numel(&d->v), 1.0);
  tk_fill(&d->q, d->qd);
  tk_fill(&d->k, d->kd);
  tk_fill(&d->v, d->vd);
  if (c->past) {
    d->past = tk_alloc(c->sdt, 4, sdims);
    d->pastd = tk_dalloc(tk_numel(&d->past));
    tk_fill_normal(r, d->pastd, tk_numel(&d->past), 0.5);
    tk_fill(&d->past, d->pastd);
  }
  if (c->decay_kind) {
    d->decay = tk_alloc(c->tdt, 3, gdims);
    int64_t n = tk_numel(&d->decay);
    d->decayd = tk_dalloc(n);
    tk_fill_uniform(r, d->decayd, n, -1.0, 0.0);
    if (c->data_mode == DATA_EXTREME_DECAY) {
      static const double special[] = {0.0, -20.0, -1e-6, -5.0};
      for (int64_t i = 0; i < n; i++)
        if (tk_below(r, 2)) d->decayd[i] = special[tk_below(r, 4)];
    }
    tk_fill(&d->decay, d->decayd);
  }
  if (c->beta_kind) {
    d->beta = tk_alloc(c->tdt, 3, bdims);
    int64_t n = tk_numel(&d->beta);
    d->betad = tk_dalloc(n);
    tk_fill_uniform(r, d->betad, n, 0.0, 1.0);
    if (c->data_mode == DATA_EXTREME_BETA)
      for (int64_t i = 0; i < n; i++)
        if (tk_below(r, 2)) d->betad[i] = tk_below(r, 2) ? 0.0 : 1.0;
    tk_fill(&d->beta, d->betad);
  }
}

static void free_data(la_data* d) {
  tk_free(&d->q); tk_free(&d->k); tk_free(&d->v); tk_free(&d->past); tk_free(&d->decay);
  tk_free(&d->beta); tk_free(&d->out); tk_free(&d->present);
  free(d->qd); free(d->kd); free(d->vd); free(d->pastd); free(d->decayd); free(d->betad);
  free(d->out_ref); free(d->out_mag); free(d->state_ref);
}

static double resolved_scale(const la_case* c) {
  return c->scale == 0.0f ? 1.0 / sqrt((double)c->dk) : (double)c->scale;
}

/* Oracle over tokens [t0, t0 + n) of the case's data, from the given past (NULL = zeros). */
static void run_oracle(const la_case* c, const la_data* d, int64_t t0, int64_t n, const double* past,
                       double* out, double* out_mag, double* state) {
  const int64_t B = c->B, T = c->T;
  const int64_t w[5] = {c->Hq * c->dk, c->Nk * c->dk, c->Hkv * c->dv, decay_width(c), beta_width(c)};
  const double* src[5] = {d->qd, d->kd, d->vd, d->decayd, d->betad};
  double* sl[5] = {0};
  for (int a = 0; a < 5; a++) {
    if (!src[a]) continue;
    sl[a] = tk_dalloc(B * n * w[a]);
    for (int64_t b = 0; b < B; b++)
      if (n) memcpy(sl[a] + b * n * w[a], src[a] + (b * T + t0) * w[a], sizeof(double) * (size_t)(n * w[a]));
  }
  oracle_la p = {.rule = c->rule, .B = B, .T = n, .Hq = c->Hq, .Hkv = c->Hkv, .Nk = c->Nk, .dk = c->dk,
                 .dv = c->dv, .scale = resolved_scale(c), .decay_kind = c->decay_kind,
                 .beta_kind = c->beta_kind, .q = sl[0], .k = sl[1], .v = sl[2], .past = past,
                 .decay = sl[3], .beta = sl[4], .out = out, .state = state, .out_mag = out_mag};
  oracle_linear_attention(&p);
  for (int a = 0; a < 5; a++) free(sl[a]);
}

/* One tk_check for a whole tensor: err <= ulps * ulp_dt(|ref|) + rel * (max|ref| + mag), where
 * mag (NULL: 0) is the element's sum of |terms|: an output far below the magnitude of its terms
 * (q.k cancelling) carries the rounding of those terms, not of its own size. */
static void check_close(const char* what, const tk_tensor* got, const double* ref, const double* mag,
                        linattn_dtype dt, double ulps, double rel) {
  int64_t n = tk_numel(got);
  double maxref = 0;
  for (int64_t i = 0; i < n; i++) maxref = fmax(maxref, fabs(ref[i]));
  int64_t worst = -1;
  double worst_ratio = 0, worst_got = 0;
  for (int64_t i = 0; i < n; i++) {
    double g = tk_get(got, i);
    double bound = ulps * tk_ulp(ref[i], dt) + rel * (maxref + (mag ? mag[i] : 0.0)) + 1e-30;
    double err = fabs(g - ref[i]);
    double ratio = isnan(err) ? INFINITY : err / bound;
    if (ratio > worst_ratio) {
      worst_ratio = ratio;
      worst = i;
      worst_got = g;
    }
  }
  tk_check(worst_ratio <= 1.0, "%s: element %lld got %.9g want %.9g (err %.3g = %.3g x bound, max|ref| %.3g)",
           what, (long long)worst, worst_got, worst >= 0 ? ref[worst] : 0.0,
           worst >= 0 ? fabs(worst_got - ref[worst]) : 0.0, worst_ratio, maxref);
}

static void check_output(const char* what, const la_case* c, const tk_tensor* out, const double* ref,
                         const double* mag) {
  check_close(what, out, ref, mag, c->tdt, c->tdt == LINATTN_DTYPE_F32 ? 0.0 : 2.0, 1e-5);
}

static void check_state(const char* what, const la_case* c, const tk_tensor* st, const double* ref) {
  check_close(what, st, ref, NULL, c->sdt, c->sdt == LINATTN_DTYPE_F32 ? 0.0 : 1.0, 1e-5);
}

static linattn_tensor desc_of(const la_case* c, const tk_tensor* t) {
  linattn_tensor d = tk_desc(t);
  if (c->null_empty && tk_numel(t) == 0) d.data = NULL;
  return d;
}

/* The library call with tensors (past/decay/beta/present may be NULL). */
static linattn_status call_la(linattn_context* ctx, const la_case* c, const tk_tensor* q, const tk_tensor* k,
                              const tk_tensor* v, const tk_tensor* past, const tk_tensor* decay,
                              const tk_tensor* beta, const tk_tensor* out, const tk_tensor* present,
                              void* ws, size_t ws_size) {
  linattn_linear_attention_desc desc = make_desc(c);
  linattn_tensor tq = desc_of(c, q), tk_ = desc_of(c, k), tv = desc_of(c, v), tout = desc_of(c, out);
  linattn_tensor tp, tg, tb, ts;
  if (past) tp = tk_desc(past);
  if (decay) tg = desc_of(c, decay);
  if (beta) tb = desc_of(c, beta);
  if (present) ts = tk_desc(present);
  linattn_status st = linattn_linear_attention(ctx, &desc, &tq, &tk_, &tv, past ? &tp : NULL,
                                               decay ? &tg : NULL, beta ? &tb : NULL, &tout,
                                               present ? &ts : NULL, ws, ws_size);
  tk_check(st == LINATTN_SUCCESS, "linattn_linear_attention returned %s: %s", linattn_status_string(st),
           linattn_last_error());
  return st;
}

static const tk_tensor* opt(const tk_tensor* t) { return t->data ? t : NULL; }

static void check_bits(const char* what, const tk_tensor* a, const tk_tensor* b) {
  int64_t first;
  int64_t n = tk_bits_differ(a, b, &first);
  tk_check(n == 0, "%s: %lld elements differ in bits from the base call (first %lld: %.9g vs %.9g)", what,
           (long long)n, (long long)first, first >= 0 ? tk_get(a, first) : 0.0, first >= 0 ? tk_get(b, first) : 0.0);
}

/* ------------------------------------------------------------------ variants */

static int g_short_workspace_runs; /* in-place calls given a workspace one byte short (refused) */

static void variant_inplace(linattn_context* ctx, const la_case* c, la_data* d) {
  /* past present: present == past buffer. Past absent: explicit zero past must equal absent. */
  int64_t sdims[4] = {c->B, c->Hkv, c->dk, c->dv};
  tk_tensor st = tk_alloc(c->sdt, 4, sdims), out = tk_alloc(c->tdt, 3, d->out.dims);
  if (c->past) {
    tk_copy(&st, &d->past);
  } else {
    for (int64_t i = 0; i < tk_numel(&st); i++) tk_set(&st, i, 0.0);
  }
  tk_poison(&out);
  if (call_la(ctx, c, &d->q, &d->k, &d->v, &st, opt(&d->decay), opt(&d->beta), &out, &st, NULL, 0) ==
      LINATTN_SUCCESS) {
    check_bits(c->past ? "in-place output" : "explicit-zero-past output", &out, &d->out);
    check_bits(c->past ? "in-place state" : "explicit-zero-past state", &st, &d->present);
  }
  /* a caller's workspace one byte short of the queried size: WORKSPACE_TOO_SMALL, the output
   * and the in-place state untouched (a decode that would chain its units, la_tuning.decode_chain,
   * does not fall back to running unchained in less than it reported) */
  if (c->past) {
    tk_copy(&st, &d->past);
    tk_poison(&out);
    linattn_linear_attention_desc desc = make_desc(c);
    linattn_tensor tq = desc_of(c, &d->q), tk_ = desc_of(c, &d->k), tv = desc_of(c, &d->v);
    linattn_tensor tout = desc_of(c, &out), ts = tk_desc(&st), tg, tb;
    if (c->decay_kind) tg = desc_of(c, &d->decay);
    if (c->beta_kind) tb = desc_of(c, &d->beta);
    size_t ws = 0;
    linattn_status s1 = linattn_linear_attention_workspace_size(ctx, &desc, &tq, &tk_, &tv, &ts,
                                                                c->decay_kind ? &tg : NULL, c->beta_kind ? &tb : NULL,
                                                                &tout, &ts, &ws);
    if (tk_check(s1 == LINATTN_SUCCESS, "in-place workspace_size: %s", linattn_status_string(s1)) && ws > 0) {
      unsigned char* buf = (unsigned char*)tk_aligned_alloc(64, ws);
      memset(buf, 0xff, ws);
      linattn_status s2 = linattn_linear_attention(ctx, &desc, &tq, &tk_, &tv, &ts, c->decay_kind ? &tg : NULL,
                                                   c->beta_kind ? &tb : NULL, &tout, &ts, buf, ws - 1);
      g_short_workspace_runs++;
      tk_check(s2 == LINATTN_ERROR_WORKSPACE_TOO_SMALL, "in-place call, workspace one byte short: %s",
               linattn_status_string(s2));
      check_bits("in-place state after a workspace one byte short (untouched)", &st, &d->past);
      tk_check(tk_count_nan(&out) == tk_numel(&out), "output after a workspace one byte short: %lld of %lld elements written",
               (long long)(tk_numel(&out) - tk_count_nan(&out)), (long long)tk_numel(&out));
      tk_aligned_free(buf);
    }
  }
  tk_free(&st);
  tk_free(&out);
}

static void variant_split(linattn_context* ctx, const la_case* c, la_data* d, tk_rng* r) {
  const int64_t T = c->T, B = c->B, T1 = tk_below(r, T + 1), T2 = T - T1;
  int64_t sdims[4] = {B, c->Hkv, c->dk, c->dv};
  tk_tensor mid = tk_alloc(c->sdt, 4, sdims), fin = tk_alloc(c->sdt, 4, sdims);
  tk_tensor out = tk_alloc(c->tdt, 3, d->out.dims);
  tk_poison(&out);
  tk_poison(&mid);
  tk_poison(&fin);
  /* token-range views of every T-typed tensor */
  const tk_tensor* src[6] = {&d->q, &d->k, &d->v, opt(&d->decay), opt(&d->beta), &out};
  tk_tensor part[2][6];
  for (int p = 0; p < 2; p++)
    for (int a = 0; a < 6; a++) {
      if (!src[a]) continue;
      int64_t W = src[a]->dims[2];
      int64_t dims[3] = {B, p ? T2 : T1, W}, strides[3] = {T * W, W, 1};
      part[p][a] = tk_view(src[a], p ? T1 * W : 0, 3, dims, strides);
    }
  bool ok = call_la(ctx, c, &part[0][0], &part[0][1], &part[0][2], opt(&d->past), src[3] ? &part[0][3] : NULL,
                    src[4] ? &part[0][4] : NULL, &part[0][5], &mid, NULL, 0) == LINATTN_SUCCESS;
  ok = ok && call_la(ctx, c, &part[1][0], &part[1][1], &part[1][2], &mid, src[3] ? &part[1][3] : NULL,
                     src[4] ? &part[1][4] : NULL, &part[1][5], &fin, NULL, 0) == LINATTN_SUCCESS;
  if (ok) {
    int64_t ow = d->out.dims[2], ns = tk_numel(&mid);
    double *o1 = tk_dalloc(B * T1 * ow), *o2 = tk_dalloc(B * T2 * ow), *s1 = tk_dalloc(ns), *s2 = tk_dalloc(ns);
    double *oref = tk_dalloc(B * T * ow), *m1 = tk_dalloc(B * T1 * ow), *m2 = tk_dalloc(B * T2 * ow);
    double* mref = tk_dalloc(B * T * ow);
    /* split oracle: part 2 starts from the state the library actually stored (rounded to S;
     * checked separately against the oracle's part-1 state), so both parts get the
     * one-rounding bounds */
    double* mid_got = tk_dalloc(ns);
    run_oracle(c, d, 0, T1, d->pastd, o1, m1, s1);
    tk_read(&mid, mid_got);
    run_oracle(c, d, T1, T2, mid_got, o2, m2, s2);
    free(mid_got);
    for (int64_t b = 0; b < B; b++) {
      if (T1) memcpy(oref + b * T * ow, o1 + b * T1 * ow, sizeof(double) * (size_t)(T1 * ow));
      if (T2) memcpy(oref + (b * T + T1) * ow, o2 + b * T2 * ow, sizeof(double) * (size_t)(T2 * ow));
      if (T1) memcpy(mref + b * T * ow, m1 + b * T1 * ow, sizeof(double) * (size_t)(T1 * ow));
      if (T2) memcpy(mref + (b * T + T1) * ow, m2 + b * T2 * ow, sizeof(double) * (size_t)(T2 * ow));
    }
    char what[64];
    snprintf(what, sizeof what, "split output (T1=%lld)", (long long)T1);
    tk_check(tk_count_nan(&out) == 0 && tk_count_nan(&mid) == 0 && tk_count_nan(&fin) == 0,
             "split: outputs not fully written");
    check_output(what, c, &out, oref, mref);
    check_state("split intermediate state", c, &mid, s1);
    check_state("split final state", c, &fin, s2);
    free(o1); free(o2); free(s1); free(s2); free(oref); free(m1); free(m2); free(mref);
  }
  tk_free(&mid);
  tk_free(&fin);
  tk_free(&out);
}

static void variant_strided(linattn_context* ctx, const la_case* c, la_data* d, tk_rng* r) {
  /* q, k, v, decay, beta as column ranges of one fused (B, T + 1, W) buffer with gaps */
  const int64_t B = c->B, T = c->T;
  const tk_tensor* src[5] = {&d->q, &d->k, &d->v, opt(&d->decay), opt(&d->beta)};
  int64_t off[5], W = 0;
  for (int a = 0; a < 5; a++) {
    off[a] = W;
    if (src[a]) W += src[a]->dims[2] + 1 + tk_below(r, 3);
  }
  int64_t fdims[3] = {B, T + 1, W};
  tk_tensor fused = tk_alloc(c->tdt, 3, fdims);
  tk_poison(&fused);
  tk_tensor view[5];
  for (int a = 0; a < 5; a++) {
    if (!src[a]) continue;
    int64_t strides[3] = {(T + 1) * W, W, 1};
    view[a] = tk_view(&fused, off[a], 3, src[a]->dims, strides);
    view[a].packed = false;
    tk_copy(&view[a], src[a]);
  }
  int64_t pad[3] = {0, 1 + tk_below(r, 2), 3};
  tk_tensor out = tk_alloc_padded(c->tdt, 3, d->out.dims, pad);
  tk_poison(&out);
  tk_tensor st = tk_alloc(c->sdt, 4, d->present.dims);
  tk_poison(&st);
  size_t fbytes = (size_t)tk_numel(&fused) * tk_dtype_size(c->tdt);
  unsigned char* snapshot = (unsigned char*)tk_xmalloc(fbytes);
  memcpy(snapshot, fused.data, fbytes);
  if (call_la(ctx, c, &view[0], &view[1], &view[2], opt(&d->past), src[3] ? &view[3] : NULL,
              src[4] ? &view[4] : NULL, &out, &st, NULL, 0) == LINATTN_SUCCESS) {
    check_bits("strided output", &out, &d->out);
    check_bits("strided state", &st, &d->present);
    tk_check(tk_count_gap_writes(&out) == 0, "strided output: %lld writes into the gaps",
             (long long)tk_count_gap_writes(&out));
    tk_check(memcmp(snapshot, fused.data, fbytes) == 0, "strided inputs were modified");
  }
  free(snapshot);
  tk_free(&fused);
  tk_free(&out);
  tk_free(&st);
}

static void variant_workspace(linattn_context* ctx, const la_case* c, la_data* d) {
  linattn_linear_attention_desc desc = make_desc(c);
  linattn_tensor tq = desc_of(c, &d->q), tk_ = desc_of(c, &d->k), tv = desc_of(c, &d->v);
  linattn_tensor tout = desc_of(c, &d->out), ts = tk_desc(&d->present), tp, tg, tb;
  if (c->past) tp = tk_desc(&d->past);
  if (c->decay_kind) tg = desc_of(c, &d->decay);
  if (c->beta_kind) tb = desc_of(c, &d->beta);
  size_t ws = (size_t)-1, ws2 = (size_t)-2;
  linattn_status st = linattn_linear_attention_workspace_size(ctx, &desc, &tq, &tk_, &tv, c->past ? &tp : NULL,
                                                              c->decay_kind ? &tg : NULL, c->beta_kind ? &tb : NULL,
                                                              &tout, &ts, &ws);
  linattn_status st2 = linattn_linear_attention_workspace_size(ctx, &desc, &tq, &tk_, &tv, c->past ? &tp : NULL,
                                                               c->decay_kind ? &tg : NULL, c->beta_kind ? &tb : NULL,
                                                               &tout, &ts, &ws2);
  if (!tk_check(st == LINATTN_SUCCESS && st2 == LINATTN_SUCCESS && ws == ws2 && ws < ((size_t)1 << 40),
                "workspace_size: %s (%s), sizes %zu / %zu", linattn_status_string(st), linattn_last_error(), ws, ws2))
    return;
  unsigned char* buf = (unsigned char*)tk_aligned_alloc(64, ws ? ws : 64);
  memset(buf, 0xff, ws ? ws : 64); /* NaN bytes: the kernels must not read stale scratch */
  tk_tensor out = tk_alloc(c->tdt, 3, d->out.dims), sto = tk_alloc(c->sdt, 4, d->present.dims);
  tk_poison(&out);
  tk_poison(&sto);
  if (call_la(ctx, c, &d->q, &d->k, &d->v, opt(&d->past), opt(&d->decay), opt(&d->beta), &out, &sto, buf, ws) ==
      LINATTN_SUCCESS) {
    check_bits("caller-workspace output", &out, &d->out);
    check_bits("caller-workspace state", &sto, &d->present);
  }
  tk_aligned_free(buf);
  tk_free(&out);
  tk_free(&sto);
}

static void variant_no_present(linattn_context* ctx, const la_case* c, la_data* d) {
  tk_tensor out = tk_alloc(c->tdt, 3, d->out.dims);
  tk_poison(&out);
  if (call_la(ctx, c, &d->q, &d->k, &d->v, opt(&d->past), opt(&d->decay), opt(&d->beta), &out, NULL, NULL, 0) ==
      LINATTN_SUCCESS)
    check_bits("output without present_state", &out, &d->out);
  tk_free(&out);
}

/* ------------------------------------------------------------------ coverage */

/* How often each value of each axis was actually run (after the shape caps), per ISA. */
enum { COV_RULE, COV_DECAY, COV_BETA, COV_TDT, COV_SDT, COV_GQA, COV_PAST, COV_TOKENS, COV_HEADS, COV_VARIANT, COV_AXES };
static const char* cov_axis_names[] = {"rule", "decay(0/head/key)", "beta(0/head/shared)", "T dtype", "S dtype",
                                       "gqa", "past", "tokens", "head sizes", "variant"};
static const int cov_sizes[] = {4, 3, 3, 3, 3, GQA_KINDS, 2, N_TOKEN_COUNTS, N_HEAD_SIZES, V_KINDS};
static int64_t coverage[COV_AXES][16];

static int dtype_index(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 0 : dt == LINATTN_DTYPE_F16 ? 1 : 2; }

static void count_coverage(const la_case* c) {
  coverage[COV_RULE][c->rule - 1]++;
  coverage[COV_DECAY][c->decay_kind]++;
  coverage[COV_BETA][c->beta_kind]++;
  coverage[COV_TDT][dtype_index(c->tdt)]++;
  coverage[COV_SDT][dtype_index(c->sdt)]++;
  coverage[COV_GQA][c->gqa]++;
  coverage[COV_PAST][c->past]++;
  for (int i = 0; i < N_TOKEN_COUNTS; i++) coverage[COV_TOKENS][i] += token_counts[i] == c->T;
  for (int i = 0; i < N_HEAD_SIZES; i++) coverage[COV_HEADS][i] += head_sizes[i][0] == c->dk && head_sizes[i][1] == c->dv;
  coverage[COV_VARIANT][c->variant]++;
}

/* Every value of every axis must have run several times on this ISA. */
static void report_coverage(linattn_isa isa, int cases) {
  char line[256];
  tk_context("coverage isa=%s", linattn_isa_name(isa));
  for (int a = 0; a < COV_AXES; a++) {
    int n = 0;
    int64_t least = INT64_MAX;
    for (int v = 0; v < cov_sizes[a]; v++) {
      n += snprintf(line + n, sizeof line - (size_t)n, " %lld", (long long)coverage[a][v]);
      if (coverage[a][v] < least) least = coverage[a][v];
    }
    tk_note("  %-20s%s", cov_axis_names[a], line);
    int64_t need = cases / cov_sizes[a] / 4; /* balanced samplers give ~cases / size */
    if (need < 1) need = 1;
    tk_check(least >= need, "axis %s: a value ran only %lld times (want >= %lld)", cov_axis_names[a], (long long)least,
             (long long)need);
  }
  memset(coverage, 0, sizeof coverage);
}

/* ------------------------------------------------------------------ one case */

static void run_case(linattn_context* ctx, linattn_isa isa, int threads, const la_case* c, tk_rng* r) {
  describe(c, isa, threads);
  count_coverage(c);
  la_data d;
  make_data(c, r, &d);
  run_oracle(c, &d, 0, c->T, d.pastd, d.out_ref, d.out_mag, d.state_ref);

  /* shape inference agrees */
  {
    linattn_linear_attention_desc desc = make_desc(c);
    int64_t od[3] = {0}, sd[4] = {0};
    linattn_status st = linattn_linear_attention_infer_shapes(&desc, d.q.dims, d.k.dims, d.v.dims, od, sd);
    tk_check(st == LINATTN_SUCCESS && od[0] == c->B && od[1] == c->T && od[2] == out_heads(c) * c->dv &&
                 sd[0] == c->B && sd[1] == c->Hkv && sd[2] == c->dk && sd[3] == c->dv,
             "infer_shapes: %s (%s) out (%lld,%lld,%lld) state (%lld,%lld,%lld,%lld)", linattn_status_string(st),
             linattn_last_error(), (long long)od[0], (long long)od[1], (long long)od[2], (long long)sd[0],
             (long long)sd[1], (long long)sd[2], (long long)sd[3]);
  }

  tk_poison(&d.out);
  tk_poison(&d.present);
  unsigned char* past_snapshot = NULL;
  size_t past_bytes = c->past ? (size_t)tk_numel(&d.past) * tk_dtype_size(c->sdt) : 0;
  if (c->past) {
    past_snapshot = (unsigned char*)tk_xmalloc(past_bytes + 1);
    memcpy(past_snapshot, d.past.data, past_bytes);
  }
  if (call_la(ctx, c, &d.q, &d.k, &d.v, opt(&d.past), opt(&d.decay), opt(&d.beta), &d.out, &d.present, NULL, 0) ==
      LINATTN_SUCCESS) {
    tk_check(tk_count_nan(&d.out) == 0, "output: %lld elements not written (NaN)", (long long)tk_count_nan(&d.out));
    tk_check(tk_count_nan(&d.present) == 0, "present_state: %lld elements not written (NaN)",
             (long long)tk_count_nan(&d.present));
    if (c->past) tk_check(memcmp(past_snapshot, d.past.data, past_bytes) == 0, "past_state was modified");
    check_output("output", c, &d.out, d.out_ref, d.out_mag);
    check_state("present_state", c, &d.present, d.state_ref);
    if (c->T == 0) { /* the state passes through unchanged: exact bits, or zeros */
      int64_t bad = 0;
      if (c->past) {
        bad = tk_bits_differ(&d.present, &d.past, NULL);
      } else {
        for (int64_t i = 0; i < tk_numel(&d.present); i++) bad += tk_get(&d.present, i) != 0.0;
      }
      tk_check(bad == 0, "T = 0: present_state differs from %s in %lld elements", c->past ? "past_state" : "zeros",
               (long long)bad);
    }
    switch (c->variant) {
      case V_INPLACE: variant_inplace(ctx, c, &d); break;
      case V_SPLIT: variant_split(ctx, c, &d, r); break;
      case V_STRIDED: variant_strided(ctx, c, &d, r); break;
      case V_WORKSPACE: variant_workspace(ctx, c, &d); break;
      default: variant_no_present(ctx, c, &d); break;
    }
  }
  free(past_snapshot);
  free_data(&d);
}

int main(void) {
  tk_begin("test_linear_attention");
  uint64_t seed = tk_seed();
  int cases_per_isa = tk_case_count(500, 100);
  linattn_isa isas[8];
  int nisa = tk_available_isas(isas, 8);
  double t_start = tk_seconds();
  for (int ii = 0; ii < nisa; ii++) {
    double t0 = tk_seconds();
    linattn_context* ctx1 = tk_context_create(isas[ii], 1);
    /* 2 threads with streaming stores: decode cases into a separate present_state meet the
     * oracle under both store kinds (1 thread: AUTO, ordinary stores at these sizes) */
    linattn_context* ctx2 = NULL;
    {
      linattn_context_options o;
      linattn_context_options_init(&o);
      o.isa = isas[ii];
      o.num_threads = 2;
      o.state_stores = LINATTN_STATE_STORES_STREAMING;
      if (linattn_context_create(&o, &ctx2) != LINATTN_SUCCESS) tk_fatal("context_create: %s", linattn_last_error());
    }
    tk_check(linattn_context_isa(ctx1) == isas[ii], "context isa %s, asked %s", linattn_isa_name(linattn_context_isa(ctx1)),
             linattn_isa_name(isas[ii]));
    tk_rng r;
    tk_rng_init(&r, seed * 31 + (uint64_t)isas[ii]);
    axes a;
    axes_init(&a);
    int64_t failed_before = tk_failed();
    for (int i = 0; i < cases_per_isa; i++) {
      la_case c = draw_case(&a, &r, i);
      int threads = (i & 1) ? 2 : 1;
      run_case(threads == 1 ? ctx1 : ctx2, isas[ii], threads, &c, &r);
    }
    /* decodes that chain their units (la_tuning.decode_chain, decode_half_chain): in place, delta
     * rules, several heads per task, every state dtype; variant_inplace compares the in-place
     * (chained) call with the separate present_state (unchained) bit for bit */
    for (int i = 0; i < 24; i++) {
      la_case c = draw_case(&a, &r, cases_per_isa + i);
      c.rule = i % 2 ? LINATTN_UPDATE_GATED_DELTA : LINATTN_UPDATE_DELTA;
      c.decay_kind = i % 2 ? 1 + (i / 2) % 2 : ORACLE_DECAY_NONE;
      c.beta_kind = 1 + (i / 4) % 2;
      c.sdt = dtypes[(i / 8) % 3];
      c.T = 1;
      c.past = true;
      c.variant = V_INPLACE;
      c.gqa = GQA_EQUAL;
      c.flags = 0;
      c.B = 1 + i % 2;
      c.Hq = c.Hkv = c.Nk = 2 + (i / 3) % 2;
      c.dk = c.dv = i % 3 ? 128 : 64;
      run_case(i % 4 < 2 ? ctx1 : ctx2, isas[ii], i % 4 < 2 ? 1 : 2, &c, &r);
    }
    report_coverage(isas[ii], cases_per_isa);
    linattn_context_destroy(ctx1);
    linattn_context_destroy(ctx2);
    tk_note("isa %-9s %d cases, %lld failed checks, %.2f s", linattn_isa_name(isas[ii]), cases_per_isa,
            (long long)(tk_failed() - failed_before), tk_seconds() - t0);
  }
  tk_note("total %.2f s", tk_seconds() - t_start);
  tk_note("in-place calls refused a workspace one byte short: %d", g_short_workspace_runs);
  return tk_finish();
}
