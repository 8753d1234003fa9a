/*
 * linattn_varlen_causal_conv_with_state (packed ragged batches, state pools):
 *  1. bad input: each row breaks one thing of a valid call and expects the status, a message
 *     naming the argument and every buffer untouched (also through _workspace_size);
 *  2. random ragged batches (length-0 sequences, pools with state_indices, has_initial_state,
 *     both state layouts, in place, capture) on every kernel family against the sequential
 *     decomposition: each sequence alone through linattn_causal_conv_with_state (channels_last,
 *     one token per call), which must give the same bits; state_update against the input rows;
 *     pool slots no sequence names untouched; 1 and 3 threads identical.
 *  3. state_window (CausalConvWithState, LinearAttention; the operator's window driver): output
 *     and slot W - 1 against the window-0 call (conv: bits; LA: fp32 rounding), slots below
 *     W - T zeros, in place, on every kernel family (also run under the sanitizers).
 * Correctness against ONNX Runtime's own kernel: tests/python/test_varlen_conv.py; the window
 * slots against the sequential decomposition: tests/python/test_state_window.py.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errcheck.h"
#include "testkit.h"

/* ------------------------------------------------------------------ bad input */

enum { VX, VW, VB, VSIN, VOUT, VSOUT, VUPD, VKD };

typedef struct vcall {
  linattn_varlen_conv_desc desc;
  linattn_varlen_batch batch;
  int32_t cu[4], cc[3], idx[3];
  linattn_tensor t[8];
  const linattn_tensor* p[8];
} vcall;

static void build_valid(vcall* c) {
  memset(c, 0, sizeof *c);
  linattn_varlen_conv_desc_init(&c->desc);
  c->desc.activation = LINATTN_ACTIVATION_SILU;
  c->desc.state_update_capacity = 2;
  const int32_t cu[3] = {0, 3, 5};
  memcpy(c->cu, cu, sizeof cu);
  c->cc[0] = 1; c->cc[1] = 5;
  c->batch.batch_size = 2;
  c->batch.cu_seqlens = c->cu;
  c->batch.capture_count = c->cc;
  const linattn_dtype f = LINATTN_DTYPE_F32;
  int64_t xd[2] = {5, 5}, bd[1] = {5};
  c->t[VX] = linattn_make_tensor(ec_slots[0], f, 2, xd);
  c->t[VW] = ec_tensor3(1, f, 5, 1, 4);
  c->t[VB] = linattn_make_tensor(ec_slots[2], f, 1, bd);
  c->t[VSIN] = ec_tensor3(3, f, 2, 5, 3);
  c->t[VOUT] = linattn_make_tensor(ec_slots[4], f, 2, xd);
  c->t[VSOUT] = ec_tensor3(5, f, 2, 5, 3);
  c->t[VUPD] = ec_tensor3(6, f, 2, 2, 5);
  c->t[VKD] = ec_tensor3(7, f, 5, 2, 5);
  for (int i = 0; i < 7; i++) c->p[i] = &c->t[i];
  c->p[VKD] = NULL;
}

static linattn_status vrun(linattn_context* ctx, vcall* c, bool ws_query) {
  if (ws_query) {
    size_t ws = 0;
    return linattn_varlen_causal_conv_with_state_workspace_size(ctx, &c->desc, &c->batch, c->p[VX], c->p[VW], c->p[VB],
                                                                 c->p[VSIN], c->p[VKD], NULL, c->p[VOUT], c->p[VSOUT],
                                                                 c->p[VUPD], &ws);
  }
  return linattn_varlen_causal_conv_with_state(ctx, &c->desc, &c->batch, c->p[VX], c->p[VW], c->p[VB], c->p[VSIN],
                                               c->p[VKD], NULL, c->p[VOUT], c->p[VSOUT], c->p[VUPD], NULL, 0);
}

typedef struct bad_row {
  const char* name;
  void (*breaks)(vcall* c);
  linattn_status want;
  const char* needle;
} bad_row;

static void b_kernel_delta(vcall* c) { c->p[VKD] = &c->t[VKD]; }
static void b_cu_start(vcall* c) { c->cu[0] = 1; }
static void b_cu_end(vcall* c) { c->cu[2] = 4; }
static void b_cu_decreasing(vcall* c) { c->cu[1] = 6; }
static void b_cu_null(vcall* c) { c->batch.cu_seqlens = NULL; }
static void b_capture_missing(vcall* c) { c->batch.capture_count = NULL; }
static void b_capture_without_capacity(vcall* c) { c->desc.state_update_capacity = 0; c->p[VUPD] = NULL; }
static void b_capacity_9(vcall* c) { c->desc.state_update_capacity = 9; }
static void b_pool_out_of_range(vcall* c) { c->idx[0] = 2; c->idx[1] = 0; c->batch.state_indices = c->idx; }
static void b_pool_negative(vcall* c) { c->idx[0] = -1; c->idx[1] = 0; c->batch.state_indices = c->idx; }
static void b_pool_duplicate(vcall* c) { c->idx[0] = 1; c->idx[1] = 1; c->batch.state_indices = c->idx; }
static void b_state_null(vcall* c) { c->p[VSIN] = NULL; }
static void b_state_layout(vcall* c) { c->desc.state_channels_last = 1; } /* (2, 5, 3) is not (N, 3, 5) */
static void b_state_count(vcall* c) { c->t[VSIN] = ec_tensor3(3, LINATTN_DTYPE_F32, 3, 5, 3); }
static void b_update_shape(vcall* c) { c->t[VUPD] = ec_tensor3(6, LINATTN_DTYPE_F32, 2, 3, 5); }
static void b_out_overlaps_input(vcall* c) { c->t[VOUT].data = ec_slots[0]; }
static void b_final_overlaps_update(vcall* c) { c->t[VSOUT].data = ec_slots[6]; }
static void b_dtype(vcall* c) { c->t[VSIN].dtype = LINATTN_DTYPE_F16; }
static void b_batch_null(vcall* c) { (void)c; }
static void b_activation(vcall* c) { c->desc.activation = (linattn_activation)7; }

static const bad_row bad_rows[] = {
    {"kernel_delta (CUDA dynamic mode)", b_kernel_delta, LINATTN_ERROR_UNSUPPORTED, "kernel_delta"},
    {"cu_seqlens[0] != 0", b_cu_start, LINATTN_ERROR_INVALID_ARGUMENT, "cu_seqlens"},
    {"cu_seqlens end != total", b_cu_end, LINATTN_ERROR_INVALID_ARGUMENT, "cu_seqlens"},
    {"cu_seqlens decreasing", b_cu_decreasing, LINATTN_ERROR_INVALID_ARGUMENT, "cu_seqlens"},
    {"cu_seqlens NULL", b_cu_null, LINATTN_ERROR_INVALID_ARGUMENT, "cu_seqlens"},
    {"capacity without capture_count", b_capture_missing, LINATTN_ERROR_INVALID_ARGUMENT, "capture_count"},
    {"capture_count without capacity", b_capture_without_capacity, LINATTN_ERROR_INVALID_ARGUMENT, "capture_count"},
    {"capacity 9", b_capacity_9, LINATTN_ERROR_INVALID_ARGUMENT, "state_update_capacity"},
    {"pool index out of range", b_pool_out_of_range, LINATTN_ERROR_INVALID_ARGUMENT, "state_indices"},
    {"pool index negative", b_pool_negative, LINATTN_ERROR_INVALID_ARGUMENT, "state_indices"},
    {"pool index duplicate", b_pool_duplicate, LINATTN_ERROR_INVALID_ARGUMENT, "state_indices"},
    {"initial_state NULL", b_state_null, LINATTN_ERROR_INVALID_ARGUMENT, "initial_state"},
    {"state layout", b_state_layout, LINATTN_ERROR_INVALID_ARGUMENT, "initial_state"},
    {"state count != batch", b_state_count, LINATTN_ERROR_INVALID_ARGUMENT, "initial_state"},
    {"state_update shape", b_update_shape, LINATTN_ERROR_INVALID_ARGUMENT, "state_update"},
    {"output overlaps input", b_out_overlaps_input, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"final_state overlaps state_update", b_final_overlaps_update, LINATTN_ERROR_INVALID_ARGUMENT, "final_state"},
    {"state dtype", b_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "initial_state"},
    {"batch NULL", b_batch_null, LINATTN_ERROR_INVALID_ARGUMENT, "batch"},
    {"activation", b_activation, LINATTN_ERROR_INVALID_ARGUMENT, "activation"},
};

static void test_bad_input(linattn_context* ctx) {
  vcall c;
  build_valid(&c);
  ec_zero();
  for (int q = 0; q < 2; q++) ec_expect("valid call", q ? "workspace_size" : "run", vrun(ctx, &c, q), LINATTN_SUCCESS, NULL);
  for (size_t r = 0; r < sizeof bad_rows / sizeof bad_rows[0]; r++) {
    for (int q = 0; q < 2; q++) {
      build_valid(&c);
      bad_rows[r].breaks(&c);
      ec_fill_pattern();
      linattn_status st;
      if (bad_rows[r].breaks == b_batch_null) {
        st = q ? linattn_varlen_causal_conv_with_state_workspace_size(ctx, &c.desc, NULL, c.p[VX], c.p[VW], c.p[VB],
                                                                       c.p[VSIN], NULL, NULL, c.p[VOUT], c.p[VSOUT],
                                                                       c.p[VUPD], &(size_t){0})
               : linattn_varlen_causal_conv_with_state(ctx, &c.desc, NULL, c.p[VX], c.p[VW], c.p[VB], c.p[VSIN], NULL,
                                                       NULL, c.p[VOUT], c.p[VSOUT], c.p[VUPD], NULL, 0);
      } else {
        st = vrun(ctx, &c, q);
      }
      ec_expect(bad_rows[r].name, q ? "workspace_size" : "run", st, bad_rows[r].want, bad_rows[r].needle);
    }
  }
}

/* ------------------------------------------------------------------ sequential decomposition */

typedef struct vcase {
  linattn_dtype dt;
  int64_t B, C, K, dil, S, N, total, cap;
  bool bias, state_cl, pool, has_flags, in_place, silu;
  int32_t *cu, *cc, *idx;
  uint8_t* has;
  tk_tensor x, w, b, s_in;
} vcase;

/* decode: a packed decode (sequences of 0 or 1 tokens, up to 40 of them, mostly K = 4 and
 * dilation 1: the kernels' multi-sequence path, conv.decode_seqs). */
static void make_case(tk_rng* r, vcase* v, linattn_dtype dt, bool decode) {
  memset(v, 0, sizeof *v);
  /* 13, 21: a half tile after full ones in the channels-last kernels (fp32 AVX-512: 8 + 4 + 1,
   * 16 + 4 + 1; 16-bit with the SiLU table: 12 + 1, 12 + 6 + 3) */
  static const int64_t lens[] = {0, 1, 1, 1, 2, 3, 4, 9, 13, 21, 33, 130};
  static const int64_t chans[] = {1, 5, 16, 33, 100, 1100};
  v->dt = dt;
  v->B = decode ? tk_below(r, 41) : tk_below(r, 6);
  v->C = chans[tk_below(r, 6)];
  v->K = decode && tk_below(r, 4) ? 4 : 1 + tk_below(r, 5);
  v->dil = decode && tk_below(r, 4) ? 1 : 1 + tk_below(r, 3);
  v->S = (v->K - 1) * v->dil;
  v->cap = tk_below(r, 3) == 0 ? 0 : 1 + tk_below(r, 8);
  v->bias = tk_below(r, 2);
  v->state_cl = tk_below(r, 2);
  v->pool = tk_below(r, 2);
  v->has_flags = tk_below(r, 2);
  v->in_place = tk_below(r, 2);
  v->silu = tk_below(r, 2);
  v->N = v->B + (v->pool ? tk_below(r, 4) : 0);
  v->cu = tk_xcalloc((size_t)v->B + 1, sizeof(int32_t));
  v->cc = tk_xcalloc((size_t)v->B + 1, sizeof(int32_t));
  v->idx = tk_xcalloc((size_t)v->N + 1, sizeof(int32_t));
  v->has = tk_xcalloc((size_t)v->B + 1, 1);
  for (int64_t i = 0; i < v->B; i++) {
    v->cu[i + 1] = v->cu[i] + (int32_t)(decode ? tk_below(r, 8) != 0 : lens[tk_below(r, (int64_t)(sizeof lens / sizeof lens[0]))]);
    v->cc[i] = (int32_t)tk_below(r, 12) - 2;
    v->has[i] = (uint8_t)tk_below(r, 2);
  }
  v->total = v->cu[v->B];
  int perm[64 + 4];
  for (int i = 0; i < (int)v->N; i++) perm[i] = i;
  tk_shuffle(r, perm, (int)v->N);
  for (int64_t i = 0; i < v->B; i++) v->idx[i] = perm[i];
  int64_t xd[2] = {v->total, v->C}, wd[3] = {v->C, 1, v->K}, bd[1] = {v->C};
  int64_t sd[3] = {v->N, v->state_cl ? v->S : v->C, v->state_cl ? v->C : v->S};
  v->x = tk_alloc(dt, 2, xd);
  v->w = tk_alloc(dt, 3, wd);
  v->b = tk_alloc(dt, 1, bd);
  v->s_in = tk_alloc(dt, 3, sd);
  tk_tensor* all[] = {&v->x, &v->w, &v->b, &v->s_in};
  for (int i = 0; i < 4; i++) {
    int64_t n = tk_numel(all[i]);
    double* vals = tk_dalloc(n);
    tk_fill_normal(r, vals, n, 1.0);
    tk_fill(all[i], vals);
    free(vals);
  }
}

static void free_case(vcase* v) {
  free(v->cu); free(v->cc); free(v->idx); free(v->has);
  tk_free(&v->x); tk_free(&v->w); tk_free(&v->b); tk_free(&v->s_in);
}

/* Runs the packed call; out, s_out and upd are allocated here (poisoned first). */
static linattn_status run_packed(linattn_context* ctx, const vcase* v, tk_tensor* out, tk_tensor* s_out, tk_tensor* upd) {
  int64_t xd[2] = {v->total, v->C}, ud[3] = {v->B, v->cap, v->C};
  *out = tk_alloc(v->dt, 2, xd);
  tk_poison(out);
  *s_out = tk_alloc(v->dt, 3, v->s_in.dims);
  if (v->in_place) tk_copy(s_out, &v->s_in); else tk_poison(s_out);
  *upd = tk_alloc(v->dt, 3, ud);
  tk_poison(upd);
  linattn_varlen_conv_desc d;
  linattn_varlen_conv_desc_init(&d);
  d.activation = v->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  d.dilation = v->dil;
  d.state_update_capacity = v->cap;
  d.state_channels_last = v->state_cl;
  linattn_varlen_batch b = {v->B, v->cu, v->cap ? v->cc : NULL, v->pool ? v->idx : NULL, v->has_flags ? v->has : NULL};
  linattn_tensor tx = tk_desc(&v->x), tw = tk_desc(&v->w), tb = tk_desc(&v->b), tsi = tk_desc(&v->s_in);
  linattn_tensor to = tk_desc(out), tso = tk_desc(s_out), tu = tk_desc(upd);
  return linattn_varlen_causal_conv_with_state(ctx, &d, &b, &tx, &tw, v->bias ? &tb : NULL, v->in_place ? &tso : &tsi,
                                               NULL, NULL, &to, &tso, v->cap ? &tu : NULL, NULL, 0);
}

/* The expected results: each sequence alone, token by token, through the dense operator. */
static void check_sequential(linattn_context* ctx, const vcase* v, const tk_tensor* out, const tk_tensor* s_out,
                             const tk_tensor* upd) {
  const size_t es = tk_dtype_size(v->dt);
  linattn_causal_conv_desc d;
  linattn_causal_conv_desc_init(&d);
  d.activation = v->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  d.dilation = v->dil;
  d.channels_last = 1;
  int64_t sd[3] = {1, v->S, v->C}, td[3] = {1, 1, v->C};
  tk_tensor st = tk_alloc(v->dt, 3, sd), y = tk_alloc(v->dt, 3, td), xt = tk_alloc(v->dt, 3, td);
  int64_t bad_out = 0, bad_state = 0, bad_upd = 0, bad_slots = 0;
  for (int64_t i = 0; i < v->B; i++) {
    const int64_t slot = v->pool ? v->idx[i] : i;
    const bool has = !v->has_flags || v->has[i];
    for (int64_t s = 0; s < v->S; s++)
      for (int64_t c = 0; c < v->C; c++) {
        const int64_t src = slot * v->S * v->C + (v->state_cl ? s * v->C + c : c * v->S + s);
        memcpy((char*)st.data + (s * v->C + c) * es, has ? (char*)v->s_in.data + src * es : (char*)"\0\0\0\0", es);
      }
    for (int64_t t = v->cu[i]; t < v->cu[i + 1]; t++) {
      memcpy(xt.data, (char*)v->x.data + t * v->C * es, (size_t)v->C * es);
      linattn_tensor a = tk_desc(&xt), w = tk_desc(&v->w), b = tk_desc(&v->b), s = tk_desc(&st), o = tk_desc(&y);
      if (linattn_causal_conv_with_state(ctx, &d, &a, &w, v->bias ? &b : NULL, &s, &o, &s, NULL, 0))
        tk_fatal("dense call failed: %s", linattn_last_error());
      if (memcmp(y.data, (char*)out->data + t * v->C * es, (size_t)v->C * es)) bad_out++;
    }
    for (int64_t s = 0; s < v->S; s++)
      for (int64_t c = 0; c < v->C; c++) {
        const int64_t dst = slot * v->S * v->C + (v->state_cl ? s * v->C + c : c * v->S + s);
        if (memcmp((char*)st.data + (s * v->C + c) * es, (char*)s_out->data + dst * es, es)) bad_state++;
      }
    const int64_t len = v->cu[i + 1] - v->cu[i];
    int64_t n = v->cc[i] < 0 ? 0 : v->cc[i];
    if (n > v->cap) n = v->cap;
    if (n > len) n = len;
    for (int64_t j = 0; j < v->cap; j++)
      for (int64_t c = 0; c < v->C; c++) {
        const double got = tk_load(upd->data, (i * v->cap + j) * v->C + c, v->dt);
        const double want = j < n ? tk_load(v->x.data, (v->cu[i] + j) * v->C + c, v->dt) : 0.0;
        if (!(got == want)) bad_upd++;
      }
  }
  /* pool slots no sequence names: untouched (still poison, or the initial values in place) */
  for (int64_t slot = 0; slot < v->N; slot++) {
    bool named = false;
    for (int64_t i = 0; i < v->B; i++) named |= (v->pool ? v->idx[i] : i) == slot;
    if (named) continue;
    const int64_t n = v->S * v->C, o = slot * n;
    for (int64_t e = 0; e < n; e++) {
      const void* want = v->in_place ? (const char*)v->s_in.data + (o + e) * es : NULL;
      uint32_t bits = 0;
      memcpy(&bits, (char*)s_out->data + (o + e) * es, es);
      if (want ? memcmp(want, (char*)s_out->data + (o + e) * es, es) != 0 : bits != tk_poison_bits(v->dt)) bad_slots++;
    }
  }
  tk_check(bad_out == 0, "output: %lld tokens differ from the sequential decomposition", (long long)bad_out);
  tk_check(bad_state == 0, "final_state: %lld elements differ", (long long)bad_state);
  tk_check(bad_upd == 0, "state_update: %lld elements differ from the captured input rows", (long long)bad_upd);
  tk_check(bad_slots == 0, "pool slots no sequence names: %lld elements written", (long long)bad_slots);
  tk_free(&st); tk_free(&y); tk_free(&xt);
}

static void test_sequential(tk_rng* r, const char* tune) {
  linattn_isa isas[8];
  const int n_isa = tk_available_isas(isas, 8);
  const int cases = tk_case_count(60, 12) + tk_case_count(30, 6);
  static const linattn_dtype dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  for (int k = 0; k < n_isa; k++) {
    linattn_context* ctx = tk_context_create(isas[k], 1);
    linattn_context* ctx3 = tk_context_create(isas[k], 3);
    for (int n = 0; n < cases; n++) {
      vcase v;
      make_case(r, &v, dts[n % 3], n >= tk_case_count(60, 12));
      tk_context("%s tuning %s case %d: %s B=%lld C=%lld K=%lld dil=%lld cap=%lld pool=%d has=%d state_cl=%d in_place=%d",
                 linattn_isa_name(isas[k]), tune, n, tk_dtype_str(v.dt), (long long)v.B, (long long)v.C, (long long)v.K,
                 (long long)v.dil, (long long)v.cap, v.pool, v.has_flags, v.state_cl, v.in_place);
      tk_tensor out, s_out, upd, out3, s_out3, upd3;
      if (run_packed(ctx, &v, &out, &s_out, &upd)) tk_fatal("packed call failed: %s", linattn_last_error());
      check_sequential(ctx, &v, &out, &s_out, &upd);
      if (run_packed(ctx3, &v, &out3, &s_out3, &upd3)) tk_fatal("packed call failed: %s", linattn_last_error());
      int64_t first;
      tk_check(tk_bits_differ(&out, &out3, &first) == 0 && tk_bits_differ(&s_out, &s_out3, &first) == 0 &&
                   tk_bits_differ(&upd, &upd3, &first) == 0,
               "3 threads give other bits than 1");
      tk_free(&out); tk_free(&s_out); tk_free(&upd); tk_free(&out3); tk_free(&s_out3); tk_free(&upd3);
      free_case(&v);
    }
    linattn_context_destroy(ctx);
    linattn_context_destroy(ctx3);
  }
}

/* ------------------------------------------------------------------ state_window */

static void fill_random(tk_rng* r, tk_tensor* t, double sigma) {
  const int64_t n = tk_numel(t);
  double* v = tk_dalloc(n);
  tk_fill_normal(r, v, n, sigma);
  tk_fill(t, v);
  free(v);
}

/* The windowed call, with the library's own workspace or (caller_ws) one of exactly the size its
 * query gives: the window driver must fit its inner calls into what it asked for (a conv whose
 * window-0 query was taken without the states needed more, found by fuzz_causal_conv). */
static linattn_status conv_window_call(linattn_context* ctx, const linattn_causal_conv_desc* d, const linattn_tensor* x,
                                       const linattn_tensor* w, const linattn_tensor* past, const linattn_tensor* y,
                                       const linattn_tensor* pres, bool caller_ws) {
  size_t need = 0;
  linattn_status st = linattn_causal_conv_with_state_workspace_size(ctx, d, x, w, NULL, past, y, pres, &need);
  if (st || !caller_ws) return st ? st : linattn_causal_conv_with_state(ctx, d, x, w, NULL, past, y, pres, NULL, 0);
  void* ws = tk_aligned_alloc(64, need ? need : 1);
  st = linattn_causal_conv_with_state(ctx, d, x, w, NULL, past, y, pres, ws, need);
  tk_aligned_free(ws);
  return st;
}

static void test_conv_window(linattn_context* ctx, tk_rng* r, int W, int64_t L, bool cl, bool in_place, bool caller_ws) {
  const int64_t B = 2, C = 21, K = 4, S = 3;
  const linattn_dtype dt = LINATTN_DTYPE_BF16;
  int64_t xd[3] = {B, cl ? L : C, cl ? C : L}, wd[3] = {C, 1, K}, sd[3] = {B, cl ? S : C, cl ? C : S};
  int64_t pd[4] = {W, sd[0], sd[1], sd[2]};
  tk_tensor x = tk_alloc(dt, 3, xd), w = tk_alloc(dt, 3, wd), past = tk_alloc(dt, 4, pd), pres = tk_alloc(dt, 4, pd);
  tk_tensor y0 = tk_alloc(dt, 3, xd), y1 = tk_alloc(dt, 3, xd), s0 = tk_alloc(dt, 3, sd);
  fill_random(r, &x, 1.0);
  fill_random(r, &w, 0.5);
  fill_random(r, &past, 1.0);
  tk_poison(&y1);
  if (in_place) tk_copy(&pres, &past); else tk_poison(&pres);
  const int64_t slot = B * C * S;
  const size_t es = tk_dtype_size(dt);
  linattn_causal_conv_desc d;
  linattn_causal_conv_desc_init(&d);
  d.activation = LINATTN_ACTIVATION_SILU;
  d.channels_last = cl;
  linattn_tensor tx = tk_desc(&x), tw = tk_desc(&w), ty0 = tk_desc(&y0), ty1 = tk_desc(&y1), ts0 = tk_desc(&s0);
  linattn_tensor last = linattn_make_tensor((char*)past.data + (W - 1) * slot * (int64_t)es, dt, 3, sd);
  if (linattn_causal_conv_with_state(ctx, &d, &tx, &tw, NULL, &last, &ty0, &ts0, NULL, 0))
    tk_fatal("conv: %s", linattn_last_error());
  d.state_window = W;
  linattn_tensor tp = tk_desc(&past), tq = tk_desc(&pres);
  if (conv_window_call(ctx, &d, &tx, &tw, in_place ? &tq : &tp, &ty1, &tq, caller_ws))
    tk_fatal("windowed conv: %s", linattn_last_error());
  int64_t first;
  tk_check(tk_bits_differ(&y0, &y1, &first) == 0, "conv window: output differs from the window-0 call");
  tk_check(memcmp((char*)pres.data + (W - 1) * slot * (int64_t)es, s0.data, (size_t)slot * es) == 0,
           "conv window: slot W-1 differs from the window-0 state");
  int64_t nonzero = 0;
  for (int64_t j = 0; j < W - L && j < W - 1; j++)
    for (int64_t e = 0; e < slot; e++) nonzero += tk_load(pres.data, j * slot + e, dt) != 0.0;
  tk_check(nonzero == 0, "conv window: %lld elements of the slots below W - L are not zero", (long long)nonzero);
  tk_free(&x); tk_free(&w); tk_free(&past); tk_free(&pres); tk_free(&y0); tk_free(&y1); tk_free(&s0);
}

/* The fuzz case: no past_state, W = 8 > L = 1, dilation 2, a caller workspace of exactly the
 * queried size; the output and slot W - 1 must be those of the window-0 call. */
static void test_conv_window_no_past(linattn_context* ctx, tk_rng* r, bool cl) {
  const int64_t W = 8, B = 1, C = 16, K = 4, L = 1, S = 6;
  const linattn_dtype dt = LINATTN_DTYPE_BF16;
  int64_t xd[3] = {B, cl ? L : C, cl ? C : L}, wd[3] = {C, 1, K}, sd[3] = {B, cl ? S : C, cl ? C : S};
  int64_t pd[4] = {W, sd[0], sd[1], sd[2]};
  tk_tensor x = tk_alloc(dt, 3, xd), w = tk_alloc(dt, 3, wd), pres = tk_alloc(dt, 4, pd);
  tk_tensor y0 = tk_alloc(dt, 3, xd), y1 = tk_alloc(dt, 3, xd), s0 = tk_alloc(dt, 3, sd);
  fill_random(r, &x, 1.0);
  fill_random(r, &w, 0.5);
  tk_poison(&y1);
  tk_poison(&pres);
  linattn_causal_conv_desc d;
  linattn_causal_conv_desc_init(&d);
  d.dilation = 2;
  d.channels_last = cl;
  linattn_tensor tx = tk_desc(&x), tw = tk_desc(&w), ty0 = tk_desc(&y0), ty1 = tk_desc(&y1), ts0 = tk_desc(&s0);
  if (linattn_causal_conv_with_state(ctx, &d, &tx, &tw, NULL, NULL, &ty0, &ts0, NULL, 0))
    tk_fatal("conv: %s", linattn_last_error());
  d.state_window = W;
  linattn_tensor tq = tk_desc(&pres);
  const linattn_status st = conv_window_call(ctx, &d, &tx, &tw, NULL, &ty1, &tq, true);
  tk_check(st == LINATTN_SUCCESS, "windowed conv without past_state, caller workspace: %s", linattn_last_error());
  int64_t first;
  if (st == LINATTN_SUCCESS) {
    tk_check(tk_bits_differ(&y0, &y1, &first) == 0, "conv window without past: output differs from the window-0 call");
    const int64_t slot = B * C * S;
    tk_check(memcmp((char*)pres.data + (W - 1) * slot * (int64_t)tk_dtype_size(dt), s0.data, (size_t)slot * tk_dtype_size(dt)) == 0,
             "conv window without past: slot W-1 differs from the window-0 state");
  }
  tk_free(&x); tk_free(&w); tk_free(&pres); tk_free(&y0); tk_free(&y1); tk_free(&s0);
}

static linattn_status la_window_call(linattn_context* ctx, const linattn_linear_attention_desc* d, const linattn_tensor* q,
                                     const linattn_tensor* k, const linattn_tensor* v, const linattn_tensor* past,
                                     const linattn_tensor* g, const linattn_tensor* b, const linattn_tensor* o,
                                     const linattn_tensor* pres, bool caller_ws) {
  size_t need = 0;
  linattn_status st = linattn_linear_attention_workspace_size(ctx, d, q, k, v, past, g, b, o, pres, &need);
  if (st || !caller_ws) return st ? st : linattn_linear_attention(ctx, d, q, k, v, past, g, b, o, pres, NULL, 0);
  void* ws = tk_aligned_alloc(64, need ? need : 1);
  st = linattn_linear_attention(ctx, d, q, k, v, past, g, b, o, pres, ws, need);
  tk_aligned_free(ws);
  return st;
}

static void test_la_window(linattn_context* ctx, tk_rng* r, int W, int64_t T, bool in_place, bool caller_ws) {
  const int64_t B = 2, H = 2, dk = 16, dv = 16;
  const linattn_dtype dt = LINATTN_DTYPE_F16;
  int64_t qd[3] = {B, T, H * dk}, gd[3] = {B, T, H}, sd[4] = {B, H, dk, dv}, wd[4] = {W * B, H, dk, dv};
  tk_tensor q = tk_alloc(dt, 3, qd), k = tk_alloc(dt, 3, qd), v = tk_alloc(dt, 3, qd), g = tk_alloc(dt, 3, gd);
  tk_tensor b = tk_alloc(dt, 3, gd), o0 = tk_alloc(dt, 3, qd), o1 = tk_alloc(dt, 3, qd);
  tk_tensor past = tk_alloc(LINATTN_DTYPE_F32, 4, wd), pres = tk_alloc(LINATTN_DTYPE_F32, 4, wd);
  tk_tensor s0 = tk_alloc(LINATTN_DTYPE_F32, 4, sd);
  fill_random(r, &q, 1.0);
  fill_random(r, &k, 0.25);
  fill_random(r, &v, 1.0);
  fill_random(r, &past, 0.1);
  const int64_t ng = tk_numel(&g);
  double* vals = tk_dalloc(ng);
  tk_fill_uniform(r, vals, ng, -1.0, 0.0);
  tk_fill(&g, vals);
  tk_fill_uniform(r, vals, ng, 0.0, 1.0);
  tk_fill(&b, vals);
  free(vals);
  tk_poison(&o1);
  if (in_place) tk_copy(&pres, &past); else tk_poison(&pres);
  const int64_t slot = B * H * dk * dv;
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.q_num_heads = d.kv_num_heads = H;
  linattn_tensor tq = tk_desc(&q), tk_ = tk_desc(&k), tv = tk_desc(&v), tg = tk_desc(&g), tb = tk_desc(&b);
  linattn_tensor to0 = tk_desc(&o0), to1 = tk_desc(&o1), ts0 = tk_desc(&s0);
  linattn_tensor last = linattn_make_tensor((float*)past.data + (W - 1) * slot, LINATTN_DTYPE_F32, 4, sd);
  if (linattn_linear_attention(ctx, &d, &tq, &tk_, &tv, &last, &tg, &tb, &to0, &ts0, NULL, 0))
    tk_fatal("LA: %s", linattn_last_error());
  d.state_window = W;
  linattn_tensor tp = tk_desc(&past), tr = tk_desc(&pres);
  if (la_window_call(ctx, &d, &tq, &tk_, &tv, in_place ? &tr : &tp, &tg, &tb, &to1, &tr, caller_ws))
    tk_fatal("windowed LA: %s", linattn_last_error());
  int64_t bad_o = 0, bad_s = 0, nonzero = 0;
  for (int64_t e = 0; e < tk_numel(&o0); e++) {
    const double a = tk_load(o0.data, e, dt), c = tk_load(o1.data, e, dt);
    bad_o += !(fabs(a - c) <= 1e-2 * fabs(a) + 1e-3);
  }
  for (int64_t e = 0; e < slot; e++) {
    const double a = ((float*)s0.data)[e], c = ((float*)pres.data)[(W - 1) * slot + e];
    bad_s += !(fabs(a - c) <= 1e-5 * fabs(a) + 1e-6);
  }
  for (int64_t j = 0; j < W - T && j < W - 1; j++)
    for (int64_t e = 0; e < slot; e++) nonzero += ((float*)pres.data)[j * slot + e] != 0.0f;
  tk_check(bad_o == 0, "LA window: %lld outputs off the window-0 call", (long long)bad_o);
  tk_check(bad_s == 0, "LA window: %lld elements of slot W-1 off the window-0 state", (long long)bad_s);
  tk_check(nonzero == 0, "LA window: %lld elements of the slots below W - T are not zero", (long long)nonzero);
  tk_free(&q); tk_free(&k); tk_free(&v); tk_free(&g); tk_free(&b); tk_free(&o0); tk_free(&o1);
  tk_free(&past); tk_free(&pres); tk_free(&s0);
}

static void test_windows(tk_rng* r) {
  linattn_isa isas[8];
  const int n_isa = tk_available_isas(isas, 8);
  static const int Ws[] = {1, 3, 8};
  static const int64_t Ls[] = {0, 1, 2, 5, 70};
  for (int k = 0; k < n_isa; k++) {
    linattn_context* ctx = tk_context_create(isas[k], 2);
    for (int wi = 0; wi < 3; wi++)
      for (int li = 0; li < 5; li++)
        for (int m = 0; m < 8; m++) {
          tk_context("%s window W=%d T=%lld %s%s%s", linattn_isa_name(isas[k]), Ws[wi], (long long)Ls[li],
                     m & 1 ? "channels-last" : "channels-first", m & 2 ? " in place" : "", m & 4 ? " caller workspace" : "");
          test_conv_window(ctx, r, Ws[wi], Ls[li], m & 1, m & 2, m & 4);
          if (!(m & 1)) test_la_window(ctx, r, Ws[wi], Ls[li], m & 2, m & 4);
        }
    tk_context("%s window without past_state, caller workspace", linattn_isa_name(isas[k]));
    test_conv_window_no_past(ctx, r, false);
    test_conv_window_no_past(ctx, r, true);
    linattn_context_destroy(ctx);
  }
}

int main(void) {
  tk_begin("varlen_conv");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  ec_init();
  linattn_context* ctx = tk_context_create(LINATTN_ISA_AUTO, 1);
  test_bad_input(ctx);
  linattn_context_destroy(ctx);
  ec_free();
  /* every tuning entry (the packed decode's sequences per unit differ): the same bits as the
   * dense operator's, sequence by sequence */
  static const char* const tunes[] = {"zen4", "intel-avx512"};
  const char* env = getenv("LINATTN_TUNE");
  char* saved = env ? strdup(env) : NULL;
  for (int t = 0; t < 2; t++) {
    setenv("LINATTN_TUNE", tunes[t], 1);
    test_sequential(&r, tunes[t]);
  }
  if (saved) setenv("LINATTN_TUNE", saved, 1);
  else unsetenv("LINATTN_TUNE");
  free(saved);
  test_windows(&r);
  return tk_finish();
}
