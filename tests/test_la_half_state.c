/*
 * LinearAttention with an fp16 / bf16 state (past_state / present_state of dtype S): the kernels
 * read and write the half-precision state themselves. Oracle: the same call with an fp32 state
 * holding the widened past_state, its present_state rounded to S to nearest even (src/convert.h,
 * an independent scalar conversion): the arithmetic between the load and the store is fp32 in
 * both, so outputs and present_state must agree bit for bit. (test_linear_attention checks the
 * half-precision state against the float64 oracle with the rounding bound.)
 * Every ISA of the registry, decode (T = 1), short calls and prefill, every update rule, GQA
 * groups of 1, 2, 3 and more than 8 query heads per state, partial vectors; state separate, in place
 * (present == past), absent past, no present; outputs and present poisoned (NaN) first; past
 * left untouched when not in place; some state entries zero or subnormal in S.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "testkit.h"

enum { M_SEPARATE, M_INPLACE, M_NO_PAST, M_NO_PRESENT, M_COUNT };
static const char* const mode_names[M_COUNT] = {"separate", "in-place", "no-past", "no-present"};

typedef struct hs_shape {
  int64_t Hq, Hkv, dk, dv;
} hs_shape;

typedef struct hs_case {
  linattn_update_rule rule;
  bool per_key; /* decay (B, T, H_kv * d_k) */
  hs_shape sh;
  int64_t B, T;
  linattn_dtype io, sd;
  int mode;
} hs_case;

typedef struct hs_data {
  tk_tensor q, k, v, decay, beta, past, past32;
} hs_data;

static bool gated(const hs_case* c) { return c->rule == LINATTN_UPDATE_GATED || c->rule == LINATTN_UPDATE_GATED_DELTA; }
static bool delta(const hs_case* c) { return c->rule == LINATTN_UPDATE_DELTA || c->rule == LINATTN_UPDATE_GATED_DELTA; }
static int64_t out_heads(const hs_case* c) { return c->sh.Hq > c->sh.Hkv ? c->sh.Hq : c->sh.Hkv; }

static void fill_random(tk_tensor* t, tk_rng* r, double lo, double hi) {
  const int64_t n = tk_numel(t);
  double* v = tk_dalloc(n + 1);
  tk_fill_uniform(r, v, n, lo, hi);
  tk_fill(t, v);
  free(v);
}

/* A random state in S, some entries +-0 or subnormal in S, and its exact fp32 copy. */
static void make_state(const hs_case* c, tk_rng* r, hs_data* d) {
  const int64_t dims[4] = {c->B, c->sh.Hkv, c->sh.dk, c->sh.dv};
  d->past = tk_alloc(c->sd, 4, dims);
  d->past32 = tk_alloc(LINATTN_DTYPE_F32, 4, dims);
  const double tiny = c->sd == LINATTN_DTYPE_F16 ? 0x1p-20 : 0x1p-130; /* subnormal in S */
  for (int64_t i = 0; i < tk_numel(&d->past); i++) {
    const int64_t pick = tk_below(r, 16);
    const double x = pick == 0 ? 0.0 : pick == 1 ? -0.0 : pick == 2 ? tiny * tk_uniform_range(r, -3, 3)
                                                                     : tk_uniform_range(r, -1, 1);
    tk_set(&d->past32, i, tk_set(&d->past, i, x));
  }
}

static void make_data(const hs_case* c, tk_rng* r, hs_data* d) {
  memset(d, 0, sizeof *d);
  const int64_t B = c->B, T = c->T;
  const int64_t nk = c->sh.Hkv; /* key heads */
  const int64_t qd[3] = {B, T, c->sh.Hq * c->sh.dk}, kd[3] = {B, T, nk * c->sh.dk}, vd[3] = {B, T, c->sh.Hkv * c->sh.dv};
  d->q = tk_alloc(c->io, 3, qd);
  d->k = tk_alloc(c->io, 3, kd);
  d->v = tk_alloc(c->io, 3, vd);
  fill_random(&d->q, r, -1, 1);
  fill_random(&d->k, r, -0.3, 0.3);
  fill_random(&d->v, r, -1, 1);
  if (gated(c)) {
    const int64_t gd[3] = {B, T, c->sh.Hkv * (c->per_key ? c->sh.dk : 1)};
    d->decay = tk_alloc(c->io, 3, gd);
    fill_random(&d->decay, r, -0.7, 0.0);
  }
  if (delta(c)) {
    const int64_t bd[3] = {B, T, c->sh.Hkv};
    d->beta = tk_alloc(c->io, 3, bd);
    fill_random(&d->beta, r, 0.0, 1.0);
  }
  make_state(c, r, d);
}

static void free_data(hs_data* d) {
  tk_free(&d->q); tk_free(&d->k); tk_free(&d->v); tk_free(&d->decay); tk_free(&d->beta);
  tk_free(&d->past); tk_free(&d->past32);
}

static linattn_status call_la(linattn_context* ctx, const hs_case* c, const hs_data* d, const tk_tensor* past,
                              const tk_tensor* out, const tk_tensor* present) {
  linattn_linear_attention_desc desc;
  linattn_linear_attention_desc_init(&desc);
  desc.update_rule = c->rule;
  desc.q_num_heads = c->sh.Hq;
  desc.kv_num_heads = c->sh.Hkv;
  const linattn_tensor tq = tk_desc(&d->q), tkk = tk_desc(&d->k), tv = tk_desc(&d->v), to = tk_desc(out);
  linattn_tensor tg, tb, tp, ts;
  if (gated(c)) tg = tk_desc(&d->decay);
  if (delta(c)) tb = tk_desc(&d->beta);
  if (past) tp = tk_desc(past);
  if (present) ts = tk_desc(present);
  return linattn_linear_attention(ctx, &desc, &tq, &tkk, &tv, past ? &tp : NULL, gated(c) ? &tg : NULL,
                                  delta(c) ? &tb : NULL, &to, present ? &ts : NULL, NULL, 0);
}

/* The fp32 state, rounded to S to nearest even by src/convert.h. */
static void narrow_state(const tk_tensor* s32, tk_tensor* s) {
  for (int64_t i = 0; i < tk_numel(s32); i++)
    linattn_store_f32(s->data, i, s->dtype, ((const float*)s32->data)[i]);
}

static void run_case(linattn_context* ctx, const hs_case* c, tk_rng* r) {
  tk_context("isa=%s rule=%d per_key=%d Hq=%lld Hkv=%lld dk=%lld dv=%lld B=%lld T=%lld io=%s S=%s %s",
             linattn_isa_name(linattn_context_isa(ctx)), (int)c->rule, (int)c->per_key, (long long)c->sh.Hq,
             (long long)c->sh.Hkv, (long long)c->sh.dk, (long long)c->sh.dv, (long long)c->B, (long long)c->T,
             tk_dtype_str(c->io), tk_dtype_str(c->sd), mode_names[c->mode]);
  hs_data d;
  make_data(c, r, &d);
  const int64_t od[3] = {c->B, c->T, out_heads(c) * c->sh.dv};
  tk_tensor out = tk_alloc(c->io, 3, od), want_out = tk_alloc(c->io, 3, od);
  tk_tensor present = tk_alloc(c->sd, 4, d.past.dims), want = tk_alloc(c->sd, 4, d.past.dims);
  tk_tensor present32 = tk_alloc(LINATTN_DTYPE_F32, 4, d.past.dims);
  const bool has_past = c->mode != M_NO_PAST, has_present = c->mode != M_NO_PRESENT;
  /* the oracle: fp32 state in and out, then rounded to S */
  tk_poison(&want_out);
  tk_poison(&present32);
  if (call_la(ctx, c, &d, has_past ? &d.past32 : NULL, &want_out, &present32) != LINATTN_SUCCESS)
    tk_fatal("fp32-state call failed: %s", linattn_last_error());
  narrow_state(&present32, &want);
  /* the call under test */
  tk_tensor snapshot = tk_alloc(c->sd, 4, d.past.dims);
  tk_copy(&snapshot, &d.past);
  tk_tensor* dst = c->mode == M_INPLACE ? &d.past : &present;
  tk_poison(&out);
  if (c->mode != M_INPLACE) tk_poison(&present);
  const linattn_status st = call_la(ctx, c, &d, has_past ? &d.past : NULL, &out, has_present ? dst : NULL);
  if (tk_check(st == LINATTN_SUCCESS, "call failed: %s", linattn_last_error())) {
    int64_t first, bad = tk_bits_differ(&out, &want_out, &first);
    tk_check(bad == 0, "output: %lld elements differ from the fp32-state call (first %lld: %g vs %g)",
             (long long)bad, (long long)first, first >= 0 ? tk_get(&out, first) : 0.0,
             first >= 0 ? tk_get(&want_out, first) : 0.0);
    if (has_present) {
      bad = tk_bits_differ(dst, &want, &first);
      tk_check(bad == 0, "present_state: %lld elements differ from the rounded fp32 state (first %lld: %a vs %a)",
               (long long)bad, (long long)first, first >= 0 ? tk_get(dst, first) : 0.0,
               first >= 0 ? tk_get(&want, first) : 0.0);
    }
    if (c->mode != M_INPLACE)
      tk_check(tk_bits_differ(&d.past, &snapshot, NULL) == 0, "past_state was modified");
  }
  tk_free(&snapshot);
  tk_free(&out); tk_free(&want_out); tk_free(&present); tk_free(&want); tk_free(&present32);
  free_data(&d);
}

static const linattn_update_rule rules[4] = {LINATTN_UPDATE_LINEAR, LINATTN_UPDATE_GATED, LINATTN_UPDATE_DELTA,
                                             LINATTN_UPDATE_GATED_DELTA};

/* Every rule, S, T dtype and state mode over one shape; batch 1 and 2 alternate over Ts (bmax 1:
 * batch 1 only). */
static void run_shape(linattn_context* ctx, const hs_shape* sh, const int64_t* Ts, int nT, int bmax, tk_rng* r) {
  const linattn_dtype sds[2] = {LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  for (int ri = 0; ri < 4; ri++)
    for (int si = 0; si < 2; si++)
      for (int io = 0; io < 2; io++)
        for (int ti = 0; ti < nT; ti++)
          for (int m = 0; m < M_COUNT; m++) {
            hs_case c = {rules[ri], (ri + ti + m) % 2 == 1, *sh, bmax > 1 ? 1 + (ti % 2) : 1, Ts[ti],
                         io ? sds[si] : LINATTN_DTYPE_F32, sds[si], m};
            run_case(ctx, &c, r);
          }
}

int main(void) {
  tk_begin("test_la_half_state");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  const hs_shape shapes[] = {
      {2, 2, 128, 128}, /* decode-wide panels */
      {4, 2, 64, 40},   /* GQA 2, partial vectors */
      {10, 1, 32, 48},  /* more than 8 query heads per state */
      {3, 1, 16, 7},    /* GQA 3, fewer columns than a vector */
      {2, 2, 16, 160},  /* heads split into column blocks (d_v above the kernels' block) */
  };
  /* decode, a short call (no packed copy for an fp32 state), prefill over two tiles, and on the
   * first shape long enough for the lock-step split; the first shape again with 2 threads.
   * Most of the time goes to the first shape (128 x 128 states, each element filled, poisoned
   * and compared), so a reduced run (qemu, LINATTN_TEST_REDUCED) takes T = 1, 3 and 33 (two
   * tiles) with 1 thread, and T = 1 and the lock-step T = 65 (64 + 1) with batch 1 with 2
   * threads: the same paths with fewer first-shape states. */
  const bool reduced = tk_reduced();
  const int64_t Ts[] = {1, 3, 40, 70}, Ts_reduced[] = {1, 3, 33}, Ts_reduced_mt[] = {1, 65};
  linattn_isa isas[8];
  const int nisa = tk_available_isas(isas, 8);
  for (int ii = 0; ii < nisa; ii++) {
    for (int threads = 1; threads <= 2; threads++) {
      linattn_context* ctx = tk_context_create(isas[ii], threads);
      for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        if (threads == 2 && s > 0) continue;
        if (!reduced) run_shape(ctx, &shapes[s], Ts, s == 0 ? 4 : 3, 2, &r);
        else if (threads == 1) run_shape(ctx, &shapes[s], Ts_reduced, 3, 2, &r);
        else run_shape(ctx, &shapes[s], Ts_reduced_mt, 2, 1, &r);
      }
      linattn_context_destroy(ctx);
    }
    tk_note("isa %s done", linattn_isa_name(isas[ii]));
  }
  return tk_finish();
}
