/*
 * GatedRMSNorm and LinearAttentionGate against float64 oracles, for every ISA the CPU runs:
 * random shapes (head sizes that are and are not multiples of 16, rank 1..4, empty tensors),
 * every dtype, both activations, random epsilon; outputs NaN-poisoned and checked written;
 * in-place calls; 1 vs 4 threads give the same bits; bad arguments are reported with the
 * argument's name and leave the outputs untouched.
 *
 * Tolerance. The library computes in fp32 and rounds once to T. Relative fp32 error of the
 * norm: the sum of squares (C terms, <= C 2^-24), halved by the square root, plus the sqrt,
 * division, products and the exp / sigmoid (a few 2^-24): (C + 16) 2^-24 |ref| in all, plus
 * one spacing of T at |ref|. The gate: a + dt_bias is rounded once in fp32 (softplus' slope
 * <= 1: 2^-24 (|a| + |dt_bias|) |decay_scale| absolute), softplus and the product a few 2^-24
 * relative, plus one spacing of T.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

static const linattn_dtype dtypes[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
static const double EPS32 = 5.9604644775390625e-8; /* 2^-24 */

static double sigmoid64(double z) { return 1.0 / (1.0 + exp(-z)); }
static double softplus64(double v) { return v > 0 ? v + log1p(exp(-v)) : log1p(exp(v)); }

/* ------------------------------------------------------------------ GatedRMSNorm */

static void rms_case(linattn_context* ctx, linattn_context* ctx4, tk_rng* r, linattn_dtype dt, bool silu, int32_t rank,
                     const int64_t* dims, int64_t C, bool inplace) {
  tk_context("gated_rms_norm %s %s rank %d last %lld C %lld%s", tk_dtype_str(dt), silu ? "silu" : "sigmoid",
             (int)rank, (long long)dims[rank - 1], (long long)C, inplace ? " in-place" : "");
  const int64_t n = tk_numel_dims(rank, dims);
  tk_tensor x = tk_alloc(dt, rank, dims), g = tk_alloc(dt, rank, dims), y = tk_alloc(dt, rank, dims);
  tk_tensor y4 = tk_alloc(dt, rank, dims), s = tk_alloc(dt, 1, &C);
  double* xd = tk_dalloc(n > 0 ? n : 1);
  double* gd = tk_dalloc(n > 0 ? n : 1);
  double* sd = tk_dalloc(C);
  const double xs = exp(tk_uniform_range(r, -3, 3)); /* overall magnitude: the norm must cancel it */
  tk_fill_normal(r, xd, n, xs);
  tk_fill_normal(r, gd, n, 3.0);
  tk_fill_normal(r, sd, C, 1.0);
  tk_fill(&x, xd);
  tk_fill(&g, gd);
  tk_fill(&s, sd);
  linattn_gated_rms_norm_desc d;
  linattn_gated_rms_norm_desc_init(&d);
  d.activation = silu ? LINATTN_GATE_SILU : LINATTN_GATE_SIGMOID;
  d.epsilon = (float)(tk_uniform(r) < 0.5 ? 1e-6 : 1e-5 * xs * xs);
  tk_poison(&y);
  tk_poison(&y4);
  linattn_tensor tx = tk_desc(&x), tg = tk_desc(&g), ts = tk_desc(&s), ty = tk_desc(&y), ty4 = tk_desc(&y4);
  if (inplace) tk_copy(&y, &x);
  linattn_status st = linattn_gated_rms_norm(ctx, &d, inplace ? &ty : &tx, &ts, &tg, &ty);
  tk_check(st == LINATTN_SUCCESS, "status %s: %s", linattn_status_string(st), linattn_last_error());
  st = linattn_gated_rms_norm(ctx4, &d, &tx, &ts, &tg, &ty4);
  tk_check(st == LINATTN_SUCCESS, "4 threads: status %s", linattn_status_string(st));
  tk_check(tk_count_nan(&y) == 0, "%lld output elements not written", (long long)tk_count_nan(&y));
  int64_t first = -1;
  tk_check(tk_bits_differ(&y, &y4, &first) == 0, "1 vs 4 threads differ (first at %lld)", (long long)first);
  const double eps = (double)d.epsilon;
  int64_t bad = 0;
  double worst = 0;
  for (int64_t row = 0; row < n / C; row++) {
    double ss = 0;
    for (int64_t i = 0; i < C; i++) ss += xd[row * C + i] * xd[row * C + i];
    const double inv = 1.0 / sqrt(ss / (double)C + eps);
    for (int64_t i = 0; i < C; i++) {
      const int64_t k = row * C + i;
      const double z = gd[k];
      const double ref = xd[k] * inv * sd[i] * (silu ? z * sigmoid64(z) : sigmoid64(z));
      const double got = tk_get(&y, k);
      const double bound = (double)(C + 16) * EPS32 * fabs(ref) + tk_ulp(ref, dt) + 1e-30;
      const double err = fabs(got - ref);
      if (!(err <= bound)) {
        if (bad++ == 0) tk_note("  first bad: row %lld col %lld got %.9g ref %.9g", (long long)row, (long long)i, got, ref);
      }
      if (err / bound > worst) worst = err / bound;
    }
  }
  tk_check(bad == 0, "%lld of %lld elements outside the bound (worst err/bound %.3g)", (long long)bad, (long long)n,
           worst);
  free(xd);
  free(gd);
  free(sd);
  tk_free(&x);
  tk_free(&g);
  tk_free(&y);
  tk_free(&y4);
  tk_free(&s);
}

/* ------------------------------------------------------------------ LinearAttentionGate */

/* linattn_linear_attention_gate_packed on the same call as (rows, H) pointers: the bits of the
 * tensor entry (want_decay, want_beta), in place too. */
static void packed_gate_case(linattn_context* ctx, linattn_dtype dt, int64_t n, int64_t H, const tk_tensor* a,
                             const tk_tensor* b, const tk_tensor* bias, const tk_tensor* scale, bool with_beta,
                             bool inplace, const tk_tensor* want_decay, const tk_tensor* want_beta) {
  const int64_t dims[2] = {n / H, H};
  tk_tensor decay = tk_alloc(dt, 2, dims), beta = tk_alloc(dt, 2, dims);
  tk_poison(&decay);
  tk_poison(&beta);
  const size_t bytes = (size_t)n * linattn_dtype_size(dt);
  if (inplace && n > 0) {
    memcpy(decay.data, a->data, bytes);
    if (with_beta) memcpy(beta.data, b->data, bytes);
  }
  const void* in_a = inplace ? decay.data : a->data;
  const void* in_b = with_beta && inplace ? beta.data : b->data;
  linattn_status st = linattn_linear_attention_gate_packed(ctx, dt, n / H, H, in_a, (const float*)bias->data,
                                                           (const float*)scale->data, with_beta ? in_b : NULL,
                                                           decay.data, with_beta ? beta.data : NULL);
  tk_check(st == LINATTN_SUCCESS, "packed: status %s: %s", linattn_status_string(st), linattn_last_error());
  /* the same bytes whatever the shape the tensor call saw */
  tk_check(n == 0 || memcmp(decay.data, want_decay->data, bytes) == 0, "packed: decay bits differ from the tensor call");
  if (with_beta)
    tk_check(n == 0 || memcmp(beta.data, want_beta->data, bytes) == 0, "packed: beta bits differ from the tensor call");
  else
    tk_check(tk_count_nan(&beta) == n, "packed: beta written although not requested");
  tk_free(&decay);
  tk_free(&beta);
}

static void gate_case(linattn_context* ctx, linattn_context* ctx4, tk_rng* r, linattn_dtype dt, int32_t rank,
                      const int64_t* dims, bool with_beta, bool inplace) {
  const int64_t H = dims[rank - 1];
  tk_context("linear_attention_gate %s rank %d H %lld beta %d%s", tk_dtype_str(dt), (int)rank, (long long)H,
             (int)with_beta, inplace ? " in-place" : "");
  const int64_t n = tk_numel_dims(rank, dims);
  tk_tensor a = tk_alloc(dt, rank, dims), b = tk_alloc(dt, rank, dims), decay = tk_alloc(dt, rank, dims);
  tk_tensor beta = tk_alloc(dt, rank, dims), decay4 = tk_alloc(dt, rank, dims), beta4 = tk_alloc(dt, rank, dims);
  tk_tensor bias = tk_alloc(LINATTN_DTYPE_F32, 1, &H), scale = tk_alloc(LINATTN_DTYPE_F32, 1, &H);
  double* ad = tk_dalloc(n > 0 ? n : 1);
  double* bd = tk_dalloc(n > 0 ? n : 1);
  double* biasd = tk_dalloc(H);
  double* scaled = tk_dalloc(H);
  tk_fill_normal(r, ad, n, 4.0);
  tk_fill_normal(r, bd, n, 4.0);
  tk_fill_normal(r, biasd, H, 1.0);
  for (int64_t h = 0; h < H; h++) scaled[h] = -exp(tk_uniform_range(r, -3, 2)); /* -exp(A_log) */
  if (n > 0) ad[0] = 60.0; /* softplus in its linear range, and its exp far below */
  if (n > 1) ad[1] = -60.0;
  tk_fill(&a, ad);
  tk_fill(&b, bd);
  tk_fill(&bias, biasd);
  tk_fill(&scale, scaled);
  tk_poison(&decay);
  tk_poison(&beta);
  tk_poison(&decay4);
  tk_poison(&beta4);
  if (inplace) {
    tk_copy(&decay, &a);
    if (with_beta) tk_copy(&beta, &b);
  }
  linattn_tensor ta = tk_desc(&a), tb = tk_desc(&b), tdecay = tk_desc(&decay), tbeta = tk_desc(&beta);
  linattn_tensor tbias = tk_desc(&bias), tscale = tk_desc(&scale), td4 = tk_desc(&decay4), tb4 = tk_desc(&beta4);
  linattn_status st = linattn_linear_attention_gate(ctx, inplace ? &tdecay : &ta, &tbias, &tscale,
                                                    with_beta ? (inplace ? &tbeta : &tb) : NULL, &tdecay,
                                                    with_beta ? &tbeta : NULL);
  tk_check(st == LINATTN_SUCCESS, "status %s: %s", linattn_status_string(st), linattn_last_error());
  st = linattn_linear_attention_gate(ctx4, &ta, &tbias, &tscale, with_beta ? &tb : NULL, &td4, with_beta ? &tb4 : NULL);
  tk_check(st == LINATTN_SUCCESS, "4 threads: status %s", linattn_status_string(st));
  tk_check(tk_count_nan(&decay) == 0, "decay: %lld elements not written", (long long)tk_count_nan(&decay));
  int64_t first = -1;
  tk_check(tk_bits_differ(&decay, &decay4, &first) == 0, "decay: 1 vs 4 threads differ");
  if (with_beta) {
    tk_check(tk_count_nan(&beta) == 0, "beta: %lld elements not written", (long long)tk_count_nan(&beta));
    tk_check(tk_bits_differ(&beta, &beta4, &first) == 0, "beta: 1 vs 4 threads differ");
  } else {
    tk_check(tk_count_nan(&beta) == n, "beta written although not requested");
  }
  packed_gate_case(ctx, dt, n, H, &a, &b, &bias, &scale, with_beta, inplace, &decay4, &beta4);
  int64_t bad = 0;
  for (int64_t k = 0; k < n; k++) {
    const int64_t h = k % H;
    const double ref = scaled[h] * softplus64(ad[k] + biasd[h]);
    const double bound = EPS32 * (fabs(ad[k]) + fabs(biasd[h])) * fabs(scaled[h]) + 8 * EPS32 * fabs(ref) +
                         tk_ulp(ref, dt) + 1e-37;
    const double got = tk_get(&decay, k);
    if (!(fabs(got - ref) <= bound) && bad++ == 0)
      tk_note("  first bad decay: %lld got %.9g ref %.9g", (long long)k, got, ref);
    if (with_beta) {
      const double rb = sigmoid64(bd[k]), gb = tk_get(&beta, k);
      if (!(fabs(gb - rb) <= 8 * EPS32 * rb + tk_ulp(rb, dt) + 1e-37) && bad++ == 0)
        tk_note("  first bad beta: %lld got %.9g ref %.9g", (long long)k, gb, rb);
    }
  }
  tk_check(bad == 0, "%lld elements outside the bound", (long long)bad);
  free(ad);
  free(bd);
  free(biasd);
  free(scaled);
  tk_free(&a);
  tk_free(&b);
  tk_free(&decay);
  tk_free(&beta);
  tk_free(&decay4);
  tk_free(&beta4);
  tk_free(&bias);
  tk_free(&scale);
}

/* ------------------------------------------------------------------ errors */

static bool expect_error(linattn_status st, const char* name) {
  return st == LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), name) != NULL;
}

/* The packed entry refuses what the tensor entry refuses on the same (rows, H) call, with its
 * message: the message of each bad call is compared with the tensor call's. */
static void packed_error_cases(linattn_context* ctx, const tk_tensor* x, const tk_tensor* g, const tk_tensor* y,
                               const tk_tensor* v8) {
  char want[512];
  const int64_t xd[2] = {3, 8}, h8 = 8;
  float* xf = (float*)x->data;
  float* yf = (float*)y->data;
  const float* vf = (const float*)v8->data;
  struct {
    const char* what;
    const void *a, *b;
    const float *bias, *scale;
    void *decay, *beta;
  } cases[] = {
      {"beta = a", xf, g->data, vf, vf, yf, xf},
      {"decay = b", xf, g->data, vf, vf, g->data, NULL},
      {"decay overlaps a", xf, NULL, vf, vf, xf + 1, NULL},
      {"decay overlaps dt_bias", xf, NULL, (const float*)(yf + 4), vf, yf, NULL},
      {"beta without b", xf, NULL, vf, vf, yf, g->data},
      {"a NULL", NULL, NULL, vf, vf, yf, NULL},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const linattn_tensor ta = linattn_make_tensor((void*)(uintptr_t)cases[i].a, LINATTN_DTYPE_F32, 2, xd),
                         tb = linattn_make_tensor((void*)(uintptr_t)cases[i].b, LINATTN_DTYPE_F32, 2, xd),
                         td = linattn_make_tensor(cases[i].decay, LINATTN_DTYPE_F32, 2, xd),
                         tbe = linattn_make_tensor(cases[i].beta, LINATTN_DTYPE_F32, 2, xd),
                         tbias = linattn_make_tensor((void*)(uintptr_t)cases[i].bias, LINATTN_DTYPE_F32, 1, &h8),
                         tscale = linattn_make_tensor((void*)(uintptr_t)cases[i].scale, LINATTN_DTYPE_F32, 1, &h8);
    const linattn_status st_t = linattn_linear_attention_gate(ctx, &ta, &tbias, &tscale, cases[i].b ? &tb : NULL, &td,
                                                              cases[i].beta ? &tbe : NULL);
    snprintf(want, sizeof want, "%s", linattn_last_error());
    const linattn_status st_p = linattn_linear_attention_gate_packed(ctx, LINATTN_DTYPE_F32, 3, 8, cases[i].a,
                                                                     cases[i].bias, cases[i].scale, cases[i].b,
                                                                     cases[i].decay, cases[i].beta);
    tk_check(st_t == LINATTN_ERROR_INVALID_ARGUMENT && st_p == st_t && !strcmp(linattn_last_error(), want),
             "packed, %s: status %d / %d, message '%s' / '%s'", cases[i].what, (int)st_p, (int)st_t,
             linattn_last_error(), want);
  }
  tk_check(linattn_linear_attention_gate_packed(ctx, LINATTN_DTYPE_F32, 3, 0, xf, vf, vf, NULL, yf, NULL) ==
                   LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "a: last dimension H"),
           "packed, H = 0: %s", linattn_last_error());
  tk_check(linattn_linear_attention_gate_packed(NULL, LINATTN_DTYPE_F32, 3, 8, xf, vf, vf, NULL, yf, NULL) ==
                   LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "context"),
           "packed, context NULL: %s", linattn_last_error());
}

static void error_cases(linattn_context* ctx) {
  tk_context("bad arguments");
  const int64_t xd[2] = {3, 8}, c4 = 4, c3 = 3, h8 = 8, h5 = 5;
  tk_tensor x = tk_alloc(LINATTN_DTYPE_F32, 2, xd), g = tk_alloc(LINATTN_DTYPE_F32, 2, xd);
  tk_tensor y = tk_alloc(LINATTN_DTYPE_F32, 2, xd), gh = tk_alloc(LINATTN_DTYPE_F16, 2, xd);
  tk_tensor s4 = tk_alloc(LINATTN_DTYPE_F32, 1, &c4), s3 = tk_alloc(LINATTN_DTYPE_F32, 1, &c3);
  tk_tensor v8 = tk_alloc(LINATTN_DTYPE_F32, 1, &h8), v5 = tk_alloc(LINATTN_DTYPE_F32, 1, &h5);
  tk_tensor v8h = tk_alloc(LINATTN_DTYPE_F16, 1, &h8);
  double vals[24];
  for (int i = 0; i < 24; i++) vals[i] = i * 0.25 - 2;
  tk_fill(&x, vals);
  tk_fill(&g, vals);
  tk_fill(&s4, vals);
  tk_fill(&v8, vals);
  tk_fill(&v5, vals);
  tk_poison(&y);
  linattn_tensor tx = tk_desc(&x), tg = tk_desc(&g), ty = tk_desc(&y), tgh = tk_desc(&gh), ts4 = tk_desc(&s4),
                 ts3 = tk_desc(&s3), tv8 = tk_desc(&v8), tv5 = tk_desc(&v5), tv8h = tk_desc(&v8h);
  linattn_gated_rms_norm_desc d;
  linattn_gated_rms_norm_desc_init(&d);
  tk_check(expect_error(linattn_gated_rms_norm(ctx, &d, &tx, &ts3, &tg, &ty), "multiple of the scale length"),
           "C not dividing the last axis: %s", linattn_last_error());
  tk_check(expect_error(linattn_gated_rms_norm(ctx, &d, &tx, &ts4, &tgh, &ty), "gate"), "gate dtype: %s",
           linattn_last_error());
  tk_check(expect_error(linattn_gated_rms_norm(ctx, &d, &tx, &ts4, NULL, &ty), "gate"), "gate NULL");
  tk_check(expect_error(linattn_gated_rms_norm(ctx, &d, &tx, &ts4, &tg, &ts4), "y"), "y shape: %s",
           linattn_last_error());
  d.activation = LINATTN_GATE_INVALID;
  tk_check(expect_error(linattn_gated_rms_norm(ctx, &d, &tx, &ts4, &tg, &ty), "activation"), "activation");
  linattn_gated_rms_norm_desc_init(&d);
  d.epsilon = -1.0f;
  tk_check(expect_error(linattn_gated_rms_norm(ctx, &d, &tx, &ts4, &tg, &ty), "epsilon"), "epsilon");
  linattn_tensor ty_part = ty;
  ty_part.data = (float*)x.data + 1; /* partial overlap with x */
  linattn_gated_rms_norm_desc_init(&d);
  tk_check(expect_error(linattn_gated_rms_norm(ctx, &d, &tx, &ts4, &tg, &ty_part), "overlaps"), "overlap: %s",
           linattn_last_error());
  tk_check(expect_error(linattn_linear_attention_gate(ctx, &tx, &tv5, &tv8, NULL, &ty, NULL), "dt_bias"),
           "dt_bias length: %s", linattn_last_error());
  tk_check(expect_error(linattn_linear_attention_gate(ctx, &tx, &tv8, &tv8h, NULL, &ty, NULL), "decay_scale"),
           "decay_scale dtype: %s", linattn_last_error());
  tk_check(expect_error(linattn_linear_attention_gate(ctx, &tx, &tv8, &tv8, NULL, &ty, &tg), "b"),
           "beta without b: %s", linattn_last_error());
  tk_check(expect_error(linattn_linear_attention_gate(ctx, &tx, &tv8, &tv8, &tgh, &ty, NULL), "b"), "b dtype: %s",
           linattn_last_error());
  packed_error_cases(ctx, &x, &g, &y, &v8);
  tk_check(tk_count_nan(&y) == 24, "outputs written by a failed call");
  /* empty tensors with data == NULL are not "the same buffer" (found by fuzz_gates: a valid
   * call with a, b, decay and beta all (0, 8) and NULL was refused as beta sharing a's buffer) */
  const int64_t ed[2] = {0, 8};
  const linattn_tensor e0 = linattn_make_tensor(NULL, LINATTN_DTYPE_F32, 2, ed);
  tk_check(linattn_linear_attention_gate(ctx, &e0, &tv8, &tv8, &e0, &e0, &e0) == LINATTN_SUCCESS,
           "empty gate call with NULL buffers: %s", linattn_last_error());
  tk_check(linattn_gated_rms_norm(ctx, &d, &e0, &ts4, &e0, &e0) == LINATTN_SUCCESS, "empty GatedRMSNorm with NULL buffers: %s",
           linattn_last_error());
  tk_check(linattn_gate_activation_from_string("swish") == LINATTN_GATE_SILU &&
               linattn_gate_activation_from_string("silu") == LINATTN_GATE_SILU &&
               linattn_gate_activation_from_string("sigmoid") == LINATTN_GATE_SIGMOID &&
               linattn_gate_activation_from_string("relu") == LINATTN_GATE_INVALID,
           "activation names");
  tk_free(&x);
  tk_free(&g);
  tk_free(&y);
  tk_free(&gh);
  tk_free(&s4);
  tk_free(&s3);
  tk_free(&v8);
  tk_free(&v5);
  tk_free(&v8h);
}

int main(void) {
  tk_begin("test_gates");
  uint64_t seed = tk_seed();
  const int cases = tk_case_count(120, 30);
  linattn_isa isas[8];
  const int nisa = tk_available_isas(isas, 8);
  for (int ii = 0; ii < nisa; ii++) {
    linattn_context* ctx = tk_context_create(isas[ii], 1);
    linattn_context* ctx4 = tk_context_create(isas[ii], 4);
    tk_rng r;
    tk_rng_init(&r, seed * 131 + (uint64_t)isas[ii]);
    static const int64_t Cs[] = {1, 7, 16, 33, 64, 128, 256};
    for (int k = 0; k < cases; k++) {
      const linattn_dtype dt = dtypes[k % 3];
      const int32_t rank = 1 + (int32_t)tk_below(&r, 4);
      const int64_t C = Cs[tk_below(&r, 7)];
      int64_t dims[4];
      for (int32_t i = 0; i < rank - 1; i++) dims[i] = tk_below(&r, 5) + (k % 17 == 0 ? 0 : 1);
      dims[rank - 1] = C * (1 + tk_below(&r, 4));
      if (k % 10 == 9 && rank >= 2) dims[0] = 200; /* prefill-sized: threads really split */
      rms_case(ctx, ctx4, &r, dt, (k & 1) != 0, rank, dims, C, k % 7 == 3);
      int64_t gd[4];
      for (int32_t i = 0; i < rank; i++) gd[i] = i == rank - 1 ? 1 + tk_below(&r, 40) : dims[i];
      if (k % 10 == 9 && rank >= 2) gd[0] = 2000;
      gate_case(ctx, ctx4, &r, dt, rank, gd, k % 4 != 1, k % 5 == 2);
    }
    if (ii == 0) error_cases(ctx);
    linattn_context_destroy(ctx);
    linattn_context_destroy(ctx4);
  }
  return tk_finish();
}
