/*
 * linattn_varlen_linear_attention (packed ragged batches, state pools):
 *  1. bad input: each row breaks one thing of a valid call and expects the status, a message
 *     naming the argument and every buffer untouched (also through _workspace_size);
 *  2. random ragged batches (lengths 0 and 1 among them; pools with permuted state_indices and
 *     unnamed slots; has_initial_state; past_state absent; present_state separate, in place or
 *     absent; every update rule, per-head and per-key decay, GQA and ORT's inverse GQA; q/k/v as
 *     views of one fused projection or separate; f32/f16/bf16 with an f32 or T-typed state) on
 *     every kernel family against the sequential decomposition: each sequence alone through
 *     linattn_linear_attention (B = 1, past_state = its slot, or NULL without an initial state),
 *     which must give the same bits; pool slots no sequence names untouched; 1 and 2 threads
 *     identical.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errcheck.h"
#include "internal.h"
#include "testkit.h"

/* ------------------------------------------------------------------ bad input */

enum { LQ, LK, LV, LPAST, LDECAY, LBETA, LOUT, LPRES, LNT };

typedef struct lcall {
  linattn_linear_attention_desc desc;
  linattn_varlen_batch batch;
  int32_t cu[4], idx[3], cc[3];
  uint8_t has[3];
  linattn_tensor t[LNT];
  const linattn_tensor* p[LNT];
} lcall;

/* gated_delta, 2 heads of d_k = d_v = 4, sequences of 3 and 2 tokens, states (2, 2, 4, 4). */
static void build_valid(lcall* c) {
  memset(c, 0, sizeof *c);
  linattn_linear_attention_desc_init(&c->desc);
  c->desc.q_num_heads = 2;
  c->desc.kv_num_heads = 2;
  c->desc.update_rule = LINATTN_UPDATE_GATED_DELTA;
  const int32_t cu[3] = {0, 3, 5};
  memcpy(c->cu, cu, sizeof cu);
  c->batch.batch_size = 2;
  c->batch.cu_seqlens = c->cu;
  const linattn_dtype f = LINATTN_DTYPE_F32;
  const int64_t xd[2] = {5, 8}, gd[2] = {5, 2}, sd[4] = {2, 2, 4, 4};
  const int slot[LNT] = {0, 1, 2, 3, 4, 5, 6, 7};
  for (int i = 0; i < LNT; i++) {
    const bool state = i == LPAST || i == LPRES, gate = i == LDECAY || i == LBETA;
    c->t[i] = linattn_make_tensor(ec_slots[slot[i]], f, state ? 4 : 2, state ? sd : gate ? gd : xd);
    c->p[i] = &c->t[i];
  }
}

static linattn_status lrun(linattn_context* ctx, lcall* c, const linattn_varlen_batch* batch, bool ws_query) {
  const linattn_tensor* const* p = c->p;
  if (ws_query) {
    size_t ws = 0;
    return linattn_varlen_linear_attention_workspace_size(ctx, &c->desc, batch, p[LQ], p[LK], p[LV], p[LPAST],
                                                          p[LDECAY], p[LBETA], p[LOUT], p[LPRES], &ws);
  }
  return linattn_varlen_linear_attention(ctx, &c->desc, batch, p[LQ], p[LK], p[LV], p[LPAST], p[LDECAY], p[LBETA],
                                         p[LOUT], p[LPRES], NULL, 0);
}

typedef struct bad_row {
  const char* name;
  void (*breaks)(lcall* c);
  const char* needle;
} bad_row;

static void b_cu_start(lcall* c) { c->cu[0] = 1; }
static void b_cu_end(lcall* c) { c->cu[2] = 4; }
static void b_cu_end_over(lcall* c) { c->cu[2] = 6; }
static void b_cu_decreasing(lcall* c) { c->cu[1] = 6; }
static void b_cu_null(lcall* c) { c->batch.cu_seqlens = NULL; }
static void b_batch_negative(lcall* c) { c->batch.batch_size = -1; }
static void b_capture(lcall* c) { c->batch.capture_count = c->cc; }
static void b_pool_out_of_range(lcall* c) { c->idx[0] = 2; c->idx[1] = 0; c->batch.state_indices = c->idx; }
static void b_pool_negative(lcall* c) { c->idx[0] = -1; c->idx[1] = 0; c->batch.state_indices = c->idx; }
static void b_pool_duplicate(lcall* c) { c->idx[0] = 1; c->idx[1] = 1; c->batch.state_indices = c->idx; }
static void b_pool_without_states(lcall* c) {
  c->idx[0] = 1; c->idx[1] = 0; c->batch.state_indices = c->idx;
  c->p[LPAST] = c->p[LPRES] = NULL;
}
static void b_state_count(lcall* c) { c->t[LPAST].dims[0] = 3; } /* 3 states for 2 sequences, no indices */
static void b_state_shape(lcall* c) { c->t[LPAST].dims[3] = 3; }
static void b_pool_shapes_differ(lcall* c) {
  c->idx[0] = 1; c->idx[1] = 0; c->batch.state_indices = c->idx;
  c->t[LPRES].dims[0] = 3; /* past_state pool has 2 */
}
static void b_present_dtype(lcall* c) { c->t[LPRES].dtype = LINATTN_DTYPE_F16; }
static void b_key_rows(lcall* c) { c->t[LK].dims[0] = 4; }
static void b_decay_rows(lcall* c) { c->t[LDECAY].dims[0] = 6; }
static void b_query_rank(lcall* c) { c->t[LQ].rank = 3; c->t[LQ].dims[0] = 1; c->t[LQ].dims[1] = 5; c->t[LQ].dims[2] = 8; }
static void b_output_width(lcall* c) { c->t[LOUT].dims[1] = 6; }
static void b_out_overlaps(lcall* c) { c->t[LOUT].data = ec_slots[0]; }
static void b_present_overlaps(lcall* c) { c->t[LPRES].data = ec_slots[6]; }
static void b_window(lcall* c) { c->desc.state_window = 2; }
static void b_decay_missing(lcall* c) { c->p[LDECAY] = NULL; }

static const bad_row bad_rows[] = {
    {"cu_seqlens[0] != 0", b_cu_start, "cu_seqlens"},
    {"cu_seqlens end < total", b_cu_end, "cu_seqlens"},
    {"cu_seqlens end > total", b_cu_end_over, "cu_seqlens"},
    {"cu_seqlens decreasing", b_cu_decreasing, "cu_seqlens"},
    {"cu_seqlens NULL", b_cu_null, "cu_seqlens"},
    {"batch_size negative", b_batch_negative, "batch_size"},
    {"capture_count given", b_capture, "capture_count"},
    {"slot out of range", b_pool_out_of_range, "state_indices"},
    {"slot negative", b_pool_negative, "state_indices"},
    {"slot duplicate", b_pool_duplicate, "state_indices"},
    {"state_indices without a pool", b_pool_without_states, "state_indices"},
    {"past_state count != batch", b_state_count, "past_state"},
    {"past_state shape", b_state_shape, "past_state"},
    {"present_state pool size != past_state's", b_pool_shapes_differ, "present_state"},
    {"present_state dtype", b_present_dtype, "present_state"},
    {"key rows != total_tokens", b_key_rows, "key"},
    {"decay rows != total_tokens", b_decay_rows, "decay"},
    {"query rank 3", b_query_rank, "query"},
    {"output width", b_output_width, "output"},
    {"output overlaps query", b_out_overlaps, "output"},
    {"present_state overlaps output", b_present_overlaps, "present_state"},
    {"state_window", b_window, "state_window"},
    {"decay missing", b_decay_missing, "decay"},
};

static void test_bad_input(linattn_context* ctx) {
  lcall c;
  build_valid(&c);
  ec_zero();
  for (int q = 0; q < 2; q++)
    ec_expect("valid call", q ? "workspace_size" : "run", lrun(ctx, &c, &c.batch, q), LINATTN_SUCCESS, NULL);
  build_valid(&c);
  c.idx[0] = 1, c.idx[1] = 0, c.batch.state_indices = c.idx;
  c.has[0] = 0, c.has[1] = 1, c.batch.has_initial_state = c.has;
  ec_expect("valid call with a pool", "run", lrun(ctx, &c, &c.batch, false), LINATTN_SUCCESS, NULL);
  for (size_t r = 0; r < sizeof bad_rows / sizeof bad_rows[0]; r++)
    for (int q = 0; q < 2; q++) {
      build_valid(&c);
      bad_rows[r].breaks(&c);
      ec_fill_pattern();
      ec_expect(bad_rows[r].name, q ? "workspace_size" : "run", lrun(ctx, &c, &c.batch, q),
                LINATTN_ERROR_INVALID_ARGUMENT, bad_rows[r].needle);
    }
  for (int q = 0; q < 2; q++) {
    build_valid(&c);
    ec_fill_pattern();
    ec_expect("batch NULL", q ? "workspace_size" : "run", lrun(ctx, &c, NULL, q), LINATTN_ERROR_INVALID_ARGUMENT,
              "batch");
  }
}

/* ------------------------------------------------------------------ sequential decomposition */

/* A token-major input: a (rows, width) view at column col of an owner with row stride ld. */
typedef struct lin {
  tk_tensor* owner;
  int64_t col, ld, width;
} lin;

typedef struct lcase {
  linattn_dtype dt, sdt;
  linattn_linear_attention_desc desc;
  int64_t Hkv, dk, dv, nk, B, N, total, Wo;
  bool per_key, beta_one, pool, has_flags, has_past, in_place, want_present, fused;
  bool nan_equal; /* any NaN matches any NaN (non-finite inputs: payloads may differ) */
  int32_t *cu, *idx;
  uint8_t* has;
  tk_tensor fused_buf, sep[3], decay, beta, past;
  lin q, k, v;
} lcase;

static void fill_view(tk_rng* r, const lin* in, int64_t rows, double lo, double hi, int64_t norm_d) {
  const int64_t d[2] = {rows, in->width}, st[2] = {in->ld, 1};
  tk_tensor t = tk_view(in->owner, in->col, 2, d, st);
  const int64_t n = rows * in->width;
  double* vals = tk_dalloc(n);
  if (lo < hi) tk_fill_uniform(r, vals, n, lo, hi);
  else tk_fill_normal(r, vals, n, 1.0);
  if (norm_d > 0) tk_normalise_rows(vals, n / norm_d, norm_d);
  tk_fill(&t, vals);
  free(vals);
}

static void make_heads(tk_rng* r, lcase* v) {
  /* {q heads, kv heads, key heads, contrib} */
  static const int64_t heads[][4] = {{2, 2, 2, 0}, {4, 2, 2, 0}, {3, 1, 1, 0}, {1, 2, 2, 1}, {2, 4, 2, 1}, {1, 1, 1, 0}};
  static const int64_t dks[] = {3, 8, 32, 64}, dvs[] = {5, 16, 64, 160};
  static const linattn_update_rule rules[] = {LINATTN_UPDATE_LINEAR, LINATTN_UPDATE_GATED, LINATTN_UPDATE_DELTA,
                                              LINATTN_UPDATE_GATED_DELTA};
  const int64_t* h = heads[tk_below(r, 6)];
  linattn_linear_attention_desc_init(&v->desc);
  v->desc.q_num_heads = h[0];
  v->desc.kv_num_heads = h[1];
  v->desc.flags = h[3] ? LINATTN_LA_ORT_CONTRIB : 0;
  v->desc.update_rule = rules[tk_below(r, 4)];
  v->desc.scale = tk_below(r, 2) ? 0.0f : 0.7f;
  v->Hkv = h[1];
  v->nk = h[2];
  v->dk = dks[tk_below(r, 4)];
  v->dv = dvs[tk_below(r, 4)];
  v->Wo = (h[0] > h[1] ? h[0] : h[1]) * v->dv;
}

static void alloc_case(tk_rng* r, lcase* v);

/* fixed (optional): a decode token beside one-tile requests, fp32 state in place, wide heads:
 * the kernel scratch is sized for the longest request and must serve the one-token one too. */
static void make_case_as(tk_rng* r, lcase* v, linattn_dtype dt, bool fixed) {
  memset(v, 0, sizeof *v);
  static const int64_t lens[] = {0, 1, 1, 2, 5, 17, 64, 70, 1, 300};
  static const int64_t fixed_lens[] = {1, 2, 1, 2};
  v->dt = dt;
  v->sdt = fixed || tk_below(r, 2) ? LINATTN_DTYPE_F32 : dt;
  make_heads(r, v);
  if (fixed) {
    v->desc.q_num_heads = v->desc.kv_num_heads = v->Hkv = v->nk = 2;
    v->desc.flags = 0;
    v->dk = 8;
    v->dv = 160;
    v->Wo = 2 * v->dv;
  }
  v->B = fixed ? 4 : tk_below(r, 6);
  v->per_key = tk_below(r, 2);
  v->beta_one = tk_below(r, 3) == 0;
  v->pool = !fixed && tk_below(r, 2);
  v->has_flags = tk_below(r, 2);
  v->has_past = fixed || tk_below(r, 5) != 0;
  v->in_place = v->has_past && (fixed || tk_below(r, 2));
  v->want_present = v->in_place || tk_below(r, 4) != 0 || (v->pool && !v->has_past);
  v->fused = tk_below(r, 2);
  v->N = v->B + (v->pool ? tk_below(r, 4) : 0);
  v->cu = tk_xcalloc((size_t)v->B + 1, sizeof(int32_t));
  v->idx = tk_xcalloc((size_t)v->N + 1, sizeof(int32_t));
  v->has = tk_xcalloc((size_t)v->B + 1, 1);
  for (int64_t i = 0; i < v->B; i++) {
    int64_t len = fixed ? fixed_lens[i] : lens[tk_below(r, 10)];
    if (len == 300 && tk_below(r, 3)) len = 33; /* keep the long sequences rare */
    v->cu[i + 1] = v->cu[i] + (int32_t)len;
    v->has[i] = (uint8_t)tk_below(r, 2);
  }
  v->total = v->cu[v->B];
  int perm[16];
  for (int i = 0; i < (int)v->N; i++) perm[i] = i;
  tk_shuffle(r, perm, (int)v->N);
  for (int64_t i = 0; i < v->B; i++) v->idx[i] = perm[i];
  alloc_case(r, v);
}

/* Inputs and the state pool of a case whose shape and batch are set, filled at random. */
static void alloc_case(tk_rng* r, lcase* v) {
  const linattn_dtype dt = v->dt;
  const int64_t W[3] = {v->desc.q_num_heads * v->dk, v->nk * v->dk, v->Hkv * v->dv};
  lin* ins[3] = {&v->q, &v->k, &v->v};
  if (v->fused) {
    const int64_t fd[2] = {v->total, W[0] + W[1] + W[2] + 3};
    v->fused_buf = tk_alloc(dt, 2, fd);
    for (int i = 0; i < 3; i++) *ins[i] = (lin){&v->fused_buf, i == 0 ? 0 : i == 1 ? W[0] : W[0] + W[1], fd[1], W[i]};
  } else {
    for (int i = 0; i < 3; i++) {
      const int64_t d[2] = {v->total, W[i]};
      v->sep[i] = tk_alloc(dt, 2, d);
      *ins[i] = (lin){&v->sep[i], 0, W[i], W[i]};
    }
  }
  fill_view(r, &v->q, v->total, 0, 0, 0);
  fill_view(r, &v->k, v->total, 0, 0, v->dk); /* unit keys keep the delta rules' states bounded */
  fill_view(r, &v->v, v->total, 0, 0, 0);
  const int64_t gd[2] = {v->total, v->per_key ? v->Hkv * v->dk : v->Hkv}, bd[2] = {v->total, v->beta_one ? 1 : v->Hkv};
  v->decay = tk_alloc(dt, 2, gd);
  v->beta = tk_alloc(dt, 2, bd);
  fill_view(r, &(lin){&v->decay, 0, gd[1], gd[1]}, v->total, -0.6, 0.0, 0);
  fill_view(r, &(lin){&v->beta, 0, bd[1], bd[1]}, v->total, 0.05, 1.0, 0);
  const int64_t sd[4] = {v->N, v->Hkv, v->dk, v->dv};
  v->past = tk_alloc(v->sdt, 4, sd);
  const int64_t n = tk_numel(&v->past);
  double* vals = tk_dalloc(n);
  tk_fill_normal(r, vals, n, 0.5);
  tk_fill(&v->past, vals);
  free(vals);
}

static void free_case(lcase* v) {
  free(v->cu); free(v->idx); free(v->has);
  tk_free(&v->fused_buf);
  for (int i = 0; i < 3; i++) tk_free(&v->sep[i]);
  tk_free(&v->decay); tk_free(&v->beta); tk_free(&v->past);
}

static bool gated(const lcase* v) {
  return v->desc.update_rule == LINATTN_UPDATE_GATED || v->desc.update_rule == LINATTN_UPDATE_GATED_DELTA;
}
static bool delta(const lcase* v) {
  return v->desc.update_rule == LINATTN_UPDATE_DELTA || v->desc.update_rule == LINATTN_UPDATE_GATED_DELTA;
}

/* rows [t0, t0 + rows) of a token-major input as a rank-`rank` tensor ((rows, w) or (1, rows, w)) */
static tk_tensor rows_of(const lin* in, int64_t t0, int64_t rows, int32_t rank) {
  const int64_t d3[3] = {1, rows, in->width}, s3[3] = {rows * in->ld, in->ld, 1};
  return tk_view(in->owner, in->col + t0 * in->ld, rank, rank == 3 ? d3 : d3 + 1, rank == 3 ? s3 : s3 + 1);
}

/* The packed call; out and present are allocated here (poisoned, or present = past in place).
 * The workspace given is short_by bytes under the queried size (*ws_out: that size). */
static linattn_status run_packed_ws(linattn_context* ctx, const lcase* v, tk_tensor* out, tk_tensor* present,
                                    size_t short_by, size_t* ws_out) {
  const int64_t od[2] = {v->total, v->Wo};
  *out = tk_alloc(v->dt, 2, od);
  tk_poison(out);
  *present = tk_alloc(v->sdt, 4, v->past.dims);
  if (v->in_place) tk_copy(present, &v->past);
  else tk_poison(present);
  linattn_varlen_batch b = {v->B, v->cu, NULL, v->pool ? v->idx : NULL, v->has_flags ? v->has : NULL};
  tk_tensor q = rows_of(&v->q, 0, v->total, 2), k = rows_of(&v->k, 0, v->total, 2), vv = rows_of(&v->v, 0, v->total, 2);
  linattn_tensor tq = tk_desc(&q), tk = tk_desc(&k), tv = tk_desc(&vv), tg = tk_desc(&v->decay), tb = tk_desc(&v->beta);
  linattn_tensor tp = tk_desc(&v->past), to = tk_desc(out), tpr = tk_desc(present);
  const linattn_tensor* past = v->in_place ? &tpr : v->has_past ? &tp : NULL;
  size_t ws = 0;
  linattn_status st = linattn_varlen_linear_attention_workspace_size(ctx, &v->desc, &b, &tq, &tk, &tv, past,
                                                                     gated(v) ? &tg : NULL, delta(v) ? &tb : NULL, &to,
                                                                     v->want_present ? &tpr : NULL, &ws);
  if (st) return st;
  if (ws_out) *ws_out = ws;
  void* work = ws ? tk_aligned_alloc(64, ws) : NULL;
  if (work) memset(work, 0xff, ws);
  st = linattn_varlen_linear_attention(ctx, &v->desc, &b, &tq, &tk, &tv, past, gated(v) ? &tg : NULL,
                                       delta(v) ? &tb : NULL, &to, v->want_present ? &tpr : NULL, work,
                                       ws > short_by ? ws - short_by : ws);
  tk_aligned_free(work);
  return st;
}

static linattn_status run_packed(linattn_context* ctx, const lcase* v, tk_tensor* out, tk_tensor* present) {
  return run_packed_ws(ctx, v, out, present, 0, NULL);
}

/* Sequence i alone through the dense operator: its output rows and state must equal the packed
 * call's bits. Returns the mismatching elements of the output and of the state. */
static void check_sequence(linattn_context* ctx, const lcase* v, int64_t i, const tk_tensor* out,
                           const tk_tensor* present, int64_t* bad_out, int64_t* bad_state) {
  const int64_t t0 = v->cu[i], len = v->cu[i + 1] - t0, slot = v->pool ? v->idx[i] : i;
  const bool reads = v->has_past && (!v->has_flags || v->has[i]);
  const int64_t sd[4] = {1, v->Hkv, v->dk, v->dv}, od[3] = {1, len, v->Wo};
  const int64_t slot_elems = v->Hkv * v->dk * v->dv;
  const size_t ses = tk_dtype_size(v->sdt), es = tk_dtype_size(v->dt);
  tk_tensor st_in = tk_alloc(v->sdt, 4, sd), st_out = tk_alloc(v->sdt, 4, sd), y = tk_alloc(v->dt, 3, od);
  memcpy(st_in.data, (const char*)v->past.data + slot * slot_elems * ses, (size_t)slot_elems * ses);
  const bool in_place = v->in_place && reads; /* the dense call updates the state in place too */
  if (in_place) tk_copy(&st_out, &st_in);
  tk_tensor q = rows_of(&v->q, t0, len, 3), k = rows_of(&v->k, t0, len, 3), vv = rows_of(&v->v, t0, len, 3);
  const lin g = {(tk_tensor*)&v->decay, 0, v->decay.dims[1], v->decay.dims[1]};
  const lin b = {(tk_tensor*)&v->beta, 0, v->beta.dims[1], v->beta.dims[1]};
  tk_tensor gt = rows_of(&g, t0, len, 3), bt = rows_of(&b, t0, len, 3);
  linattn_tensor tq = tk_desc(&q), tk = tk_desc(&k), tv = tk_desc(&vv), tg = tk_desc(&gt), tb = tk_desc(&bt);
  linattn_tensor tsi = tk_desc(&st_in), tso = tk_desc(&st_out), ty = tk_desc(&y);
  if (linattn_linear_attention(ctx, &v->desc, &tq, &tk, &tv, in_place ? &tso : reads ? &tsi : NULL, gated(v) ? &tg : NULL,
                               delta(v) ? &tb : NULL, &ty, &tso, NULL, 0))
    tk_fatal("dense call failed: %s", linattn_last_error());
  for (int64_t t = 0; t < len; t++)
    for (int64_t j = 0; j < v->Wo; j++)
      if (memcmp((const char*)y.data + (t * v->Wo + j) * es, (const char*)out->data + ((t0 + t) * v->Wo + j) * es, es) &&
          !(v->nan_equal && tk_load(y.data, t * v->Wo + j, v->dt) != tk_load(y.data, t * v->Wo + j, v->dt) &&
            tk_load(out->data, (t0 + t) * v->Wo + j, v->dt) != tk_load(out->data, (t0 + t) * v->Wo + j, v->dt)))
        (*bad_out)++;
  if (v->want_present)
    for (int64_t e = 0; e < slot_elems; e++)
      if (memcmp((const char*)st_out.data + e * ses, (const char*)present->data + (slot * slot_elems + e) * ses, ses) &&
          !(v->nan_equal && tk_load(st_out.data, e, v->sdt) != tk_load(st_out.data, e, v->sdt) &&
            tk_load(present->data, slot * slot_elems + e, v->sdt) != tk_load(present->data, slot * slot_elems + e, v->sdt)))
        (*bad_state)++;
  tk_free(&st_in); tk_free(&st_out); tk_free(&y);
}

static void check_sequential(linattn_context* ctx, const lcase* v, const tk_tensor* out, const tk_tensor* present) {
  int64_t bad_out = 0, bad_state = 0, bad_slots = 0;
  for (int64_t i = 0; i < v->B; i++) check_sequence(ctx, v, i, out, present, &bad_out, &bad_state);
  /* pool slots no sequence names: untouched (still poison, or the initial values in place) */
  const int64_t slot_elems = v->Hkv * v->dk * v->dv;
  const size_t ses = tk_dtype_size(v->sdt);
  for (int64_t slot = 0; slot < v->N; slot++) {
    bool named = false;
    for (int64_t i = 0; i < v->B; i++) named |= (v->pool ? v->idx[i] : i) == slot;
    if (named) continue;
    for (int64_t e = slot * slot_elems; e < (slot + 1) * slot_elems; e++) {
      uint32_t bits = 0;
      memcpy(&bits, (const char*)present->data + e * ses, ses);
      if (v->in_place ? memcmp((const char*)v->past.data + e * ses, (const char*)present->data + e * ses, ses) != 0
                      : bits != tk_poison_bits(v->sdt))
        bad_slots++;
    }
  }
  tk_check(bad_out == 0, "output: %lld elements differ from the sequential decomposition", (long long)bad_out);
  tk_check(bad_state == 0, "present_state: %lld elements differ from the sequential decomposition", (long long)bad_state);
  tk_check(bad_slots == 0, "pool slots no sequence names: %lld elements written", (long long)bad_slots);
}

static void test_sequential(tk_rng* r) {
  linattn_isa isas[8];
  const int n_isa = tk_available_isas(isas, 8);
  const int cases = tk_case_count(40, 8);
  static const linattn_dtype dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  for (int k = 0; k < n_isa; k++) {
    linattn_context* ctx = tk_context_create(isas[k], 1);
    linattn_context* ctx2 = tk_context_create(isas[k], 2);
    for (int n = 0; n < cases; n++) {
      lcase v;
      make_case_as(r, &v, dts[n % 3], n == 0);
      tk_context("%s case %d: %s state %s rule %d Hq=%lld Hkv=%lld nk=%lld dk=%lld dv=%lld B=%lld total=%lld "
                 "per_key=%d pool=%d N=%lld has=%d past=%d in_place=%d present=%d fused=%d",
                 linattn_isa_name(isas[k]), n, tk_dtype_str(v.dt), tk_dtype_str(v.sdt), (int)v.desc.update_rule,
                 (long long)v.desc.q_num_heads, (long long)v.Hkv, (long long)v.nk, (long long)v.dk, (long long)v.dv,
                 (long long)v.B, (long long)v.total, v.per_key, v.pool, (long long)v.N, v.has_flags, v.has_past,
                 v.in_place, v.want_present, v.fused);
      tk_tensor out, present, out2, present2;
      if (run_packed(ctx, &v, &out, &present)) tk_fatal("packed call failed: %s", linattn_last_error());
      check_sequential(ctx, &v, &out, &present);
      if (run_packed(ctx2, &v, &out2, &present2)) tk_fatal("packed call failed: %s", linattn_last_error());
      int64_t first;
      tk_check(tk_bits_differ(&out, &out2, &first) == 0 && tk_bits_differ(&present, &present2, &first) == 0,
               "2 threads give other bits than 1");
      tk_free(&out); tk_free(&present); tk_free(&out2); tk_free(&present2);
      free_case(&v);
    }
    linattn_context_destroy(ctx);
    linattn_context_destroy(ctx2);
  }
}

/* Infinities in the inputs: the fast kernels' units with non-finite outputs are recomputed by the
 * reference kernel under the dense operator's rules (an in-place fp32 state a unit reads is copied
 * first in calls of 256 tokens or more; below that the fast result stands; a unit starting from
 * zeros is always recomputed). The packed call must follow them per sequence: in place and not,
 * sequences of 300 / 260 tokens and short ones, with and without an initial state. */
static void test_non_finite(tk_rng* r) {
  linattn_isa isas[8];
  const int n_isa = tk_available_isas(isas, 8);
  static const int32_t lens[4] = {300, 5, 7, 260};
  static const uint8_t has[4] = {1, 1, 0, 0};
  for (int k = 0; k < n_isa; k++) {
    linattn_context* ctx = tk_context_create(isas[k], 1);
    for (int in_place = 0; in_place < 2; in_place++) {
      lcase v;
      memset(&v, 0, sizeof v);
      v.dt = v.sdt = LINATTN_DTYPE_F32;
      linattn_linear_attention_desc_init(&v.desc);
      v.desc.q_num_heads = v.desc.kv_num_heads = 2;
      v.Hkv = v.nk = 2;
      v.dk = 16, v.dv = 16, v.Wo = 32;
      v.B = 4, v.N = 6;
      v.pool = v.has_flags = v.has_past = v.want_present = true;
      v.in_place = in_place;
      v.nan_equal = true;
      v.cu = tk_xcalloc(5, sizeof(int32_t));
      v.idx = tk_xcalloc(6, sizeof(int32_t));
      v.has = tk_xcalloc(4, 1);
      static const int32_t slots[4] = {4, 0, 5, 2};
      for (int i = 0; i < 4; i++) v.cu[i + 1] = v.cu[i] + lens[i], v.idx[i] = slots[i], v.has[i] = has[i];
      v.total = v.cu[4];
      alloc_case(r, &v);
      for (int i = 0; i < 4; i++) /* an infinite value in each sequence */
        tk_store(v.sep[2].data, (v.cu[i] + lens[i] / 2) * v.v.ld + 3, v.dt, INFINITY);
      tk_context("%s non-finite inputs, in_place=%d", linattn_isa_name(isas[k]), in_place);
      tk_tensor out, present;
      if (run_packed(ctx, &v, &out, &present)) tk_fatal("packed call failed: %s", linattn_last_error());
      check_sequential(ctx, &v, &out, &present);
      tk_free(&out); tk_free(&present);
      free_case(&v);
    }
    linattn_context_destroy(ctx);
  }
}

/* la.decode_chain on a packed decode (fp32, and with la.decode_half_chain fp16 and bf16 pools
 * updated in place, delta rules): the units of consecutive one-token sequences that read their
 * state run as one chain across heads and sequences; a sequence without a token or starting from
 * zeros runs alone. Chained (1 and 2 threads) against unchained (the tuning's decode_chain and
 * decode_half_chain off), bit for bit, and against the dense operator per sequence; a workspace
 * one byte short of the queried size is refused. */
static int g_chain_short_runs; /* calls refused a workspace one byte short of the chain's */

static void test_decode_chain(tk_rng* r) {
  linattn_isa isas[8];
  const int n_isa = tk_available_isas(isas, 8);
  static const int64_t shapes[][3] = {{2, 128, 128}, {3, 64, 64}, {2, 32, 160}, {4, 128, 64}}; /* Hkv, dk, dv */
  static const int32_t lens[2][6] = {{1, 1, 1, 1, 1, 1}, {1, 1, 0, 1, 1, 1}};
  static const uint8_t has[2][6] = {{1, 1, 1, 1, 1, 1}, {1, 0, 1, 1, 1, 0}};
  linattn_tuning on = *linattn_tuning_by_name("intel-avx512"), off = on;
  on.la.decode_chain = on.la.decode_half_chain = 1;
  off.la.decode_chain = off.la.decode_half_chain = 0;
  static const linattn_dtype sdts[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  for (int k = 0; k < n_isa; k++) {
    linattn_context* ctx1 = tk_context_create(isas[k], 1);
    linattn_context* ctx2 = tk_context_create(isas[k], 2);
    const bool chains = ctx1->kernels->la->run_chain != NULL;
    const linattn_tuning* const own = ctx1->tuning;
    for (int n = 0; n < 48; n++) {
      const int64_t* sh = shapes[n % 4];
      const int pat = (n / 4) % 2;
      lcase v;
      memset(&v, 0, sizeof v);
      v.dt = LINATTN_DTYPE_F32;
      v.sdt = sdts[n / 16];
      linattn_linear_attention_desc_init(&v.desc);
      v.desc.q_num_heads = v.desc.kv_num_heads = sh[0];
      v.desc.update_rule = n / 8 % 2 ? LINATTN_UPDATE_GATED_DELTA : LINATTN_UPDATE_DELTA;
      v.Hkv = v.nk = sh[0];
      v.dk = sh[1], v.dv = sh[2], v.Wo = sh[0] * sh[2];
      v.B = 6, v.N = 8;
      v.per_key = tk_below(r, 2);
      v.fused = tk_below(r, 2);
      v.pool = v.has_flags = v.has_past = v.in_place = v.want_present = true;
      v.cu = tk_xcalloc(7, sizeof(int32_t));
      v.idx = tk_xcalloc(9, sizeof(int32_t));
      v.has = tk_xcalloc(7, 1);
      int perm[8] = {0, 1, 2, 3, 4, 5, 6, 7};
      tk_shuffle(r, perm, 8);
      for (int i = 0; i < 6; i++) v.cu[i + 1] = v.cu[i] + lens[pat][i], v.idx[i] = perm[i], v.has[i] = has[pat][i];
      v.total = v.cu[6];
      alloc_case(r, &v);
      if (pat == 1 && n % 2) { /* infinite values: the sequence from zeros is recomputed, chained or not */
        v.nan_equal = true;
        for (int i = 0; i < 2; i++) tk_store(v.v.owner->data, v.cu[i] * v.v.ld + v.v.col + 3, v.dt, INFINITY);
      }
      tk_context("%s decode chain case %d: state %s rule %d Hkv=%lld dk=%lld dv=%lld pattern %d per_key=%d fused=%d",
                 linattn_isa_name(isas[k]), n, tk_dtype_str(v.sdt), (int)v.desc.update_rule, (long long)v.Hkv,
                 (long long)v.dk, (long long)v.dv, pat, v.per_key, v.fused);
      tk_tensor out0, st0, out[2], st[2];
      size_t ws_off = 0, ws_on = 0;
      ctx1->tuning = &off;
      if (run_packed_ws(ctx1, &v, &out0, &st0, 0, &ws_off)) tk_fatal("packed call failed: %s", linattn_last_error());
      ctx1->tuning = ctx2->tuning = &on;
      if (run_packed_ws(ctx1, &v, &out[0], &st[0], 0, &ws_on)) tk_fatal("packed call failed: %s", linattn_last_error());
      if (run_packed_ws(ctx2, &v, &out[1], &st[1], 0, NULL)) tk_fatal("packed call failed: %s", linattn_last_error());
      /* the chain's second scratch per task is in the queried size where the ISA's kernel chains;
       * one byte short of it the call is refused, outputs untouched */
      tk_check(!chains || ws_on > ws_off, "decode chain not planned: workspace %zu with it, %zu without", ws_on, ws_off);
      const int runs = 2;
      {
        tk_tensor os, ss;
        const linattn_status s1 = run_packed_ws(ctx1, &v, &os, &ss, 1, NULL);
        int64_t first = -1;
        tk_check(s1 == LINATTN_ERROR_WORKSPACE_TOO_SMALL, "workspace one byte short of the chain's: %s",
                 linattn_status_string(s1));
        tk_check(tk_count_nan(&os) == tk_numel(&os) && tk_bits_differ(&ss, &v.past, &first) == 0,
                 "workspace one byte short: outputs untouched (state element %lld)", (long long)first);
        g_chain_short_runs++;
        tk_free(&os); tk_free(&ss);
      }
      static const char* const what[2] = {"chained, 1 thread", "chained, 2 threads"};
      for (int i = 0; i < runs; i++) {
        int64_t first = -1;
        tk_check(tk_bits_differ(&out[i], &out0, &first) == 0, "%s: output differs from unchained (element %lld)",
                 what[i], (long long)first);
        tk_check(tk_bits_differ(&st[i], &st0, &first) == 0, "%s: state differs from unchained (element %lld)",
                 what[i], (long long)first);
      }
      check_sequential(ctx1, &v, &out[0], &st[0]);
      ctx1->tuning = ctx2->tuning = own;
      tk_free(&out0); tk_free(&st0);
      for (int i = 0; i < runs; i++) tk_free(&out[i]), tk_free(&st[i]);
      free_case(&v);
    }
    linattn_context_destroy(ctx1);
    linattn_context_destroy(ctx2);
  }
  tk_note("decode chain: %d packed calls refused a workspace one byte short", g_chain_short_runs);
}

int main(void) {
  tk_begin("varlen_la");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  ec_init();
  linattn_context* ctx = tk_context_create(LINATTN_ISA_AUTO, 1);
  test_bad_input(ctx);
  linattn_context_destroy(ctx);
  ec_free();
  test_sequential(&r);
  test_non_finite(&r);
  test_decode_chain(&r);
  return tk_finish();
}
