/*
 * libFuzzer target for the elementwise gates of ONNX Runtime's Gated DeltaNet layer:
 * linattn_gated_rms_norm and linattn_linear_attention_gate (also built as a corpus-replay
 * program). Same three modes as fuzz_linear_attention.c (valid / invalid / arbitrary). Neither
 * operator has a workspace or a size query: a case whose tensors are too large to back is run
 * only when it must be refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

/* GatedRMSNorm: x, scale, gate -> y. LinearAttentionGate: a, dt_bias, decay_scale, b -> decay, beta. */
enum { X, S, G, B, Y, Z, NT };
static const char* const rms_names[NT] = {"x", "scale", "gate", "(unused)", "y", "(unused)"};
static const char* const lag_names[NT] = {"a", "dt_bias", "decay_scale", "b", "decay", "beta"};

typedef struct gt_case {
  bool lag; /* LinearAttentionGate, else GatedRMSNorm */
  linattn_gated_rms_norm_desc desc;
  int rank;
  int64_t dims[4], C; /* x / a dims; C = scale length (RMS) or H (gate) */
  linattn_dtype dt;
  bool has_beta;
  int alias; /* 0 none, 1 y = x / decay = a, 2 y = gate / beta = b */
  int isa, threads, host;
  bool desc_null, ctx_null;
  int expect;
  const char* what;
  int xmode;
  uint64_t seed;
  double* vals[NT];
  fz_call call;
} gt_case;

static void set_like(fz_tensor* t, int rank, const int64_t* dims) {
  t->d.rank = rank;
  for (int i = 0; i < 4; i++) t->d.dims[i] = i < rank ? dims[i] : 0;
  memset(t->d.strides, 0, sizeof t->d.strides);
}

static void set_vec(fz_tensor* t, int64_t n) {
  t->d.rank = 1;
  t->d.dims[0] = n;
  t->d.dims[1] = t->d.dims[2] = t->d.dims[3] = 0;
  memset(t->d.strides, 0, sizeof t->d.strides);
}

static int64_t rows_of(const gt_case* c) {
  int64_t n = 1;
  for (int i = 0; i + 1 < c->rank; i++) n *= c->dims[i];
  return n;
}

static void build_valid(gt_case* c, fz_reader* r) {
  static const int64_t Cc[] = {1, 2, 3, 4, 5, 8, 16, 17, 32, 33, 64, 65, 128};
  static const int64_t lead[] = {1, 2, 3, 0, 1, 4, 7};
  memset(c, 0, sizeof *c);
  c->lag = fz_chance(r, 50);
  linattn_gated_rms_norm_desc_init(&c->desc);
  c->desc.activation = fz_chance(r, 50) ? LINATTN_GATE_SIGMOID : LINATTN_GATE_SILU;
  c->desc.epsilon = (float[]){1e-5f, 1e-6f, 0.0f, 0.1f}[fz_pick(r, 4)];
  c->rank = 1 + fz_pick(r, 4);
  c->C = Cc[fz_pick(r, 13)];
  const int64_t heads = 1 + fz_pick(r, 3);
  for (int i = 0; i + 1 < c->rank; i++) c->dims[i] = lead[fz_pick(r, 7)];
  c->dims[c->rank - 1] = c->lag ? c->C : c->C * heads;
  while (rows_of(c) * c->dims[c->rank - 1] * 4 > FZ_BYTE_BUDGET / 2) {
    int big = 0;
    for (int i = 1; i + 1 < c->rank; i++)
      if (c->dims[i] > c->dims[big]) big = i;
    if (c->rank > 1 && c->dims[big] > 1) c->dims[big] = (c->dims[big] + 1) / 2;
    else break;
  }
  c->dt = fz_dtypes[fz_pick(r, 3)];
  c->has_beta = c->lag && fz_chance(r, 70);
  c->alias = fz_pick(r, 3);
  if (c->alias == 2 && c->lag && !c->has_beta) c->alias = 0;
  c->isa = fz_pick_isa(r);
  c->threads = fz_pick_threads(r);
  c->host = fz_chance(r, 15);
  c->xmode = fz_pick(r, 3);
  c->seed = fz_u32(r);
  c->expect = EXPECT_VALID;
  c->what = "valid";

  fz_call* k = &c->call;
  fz_init_tensors(k, NT, c->lag ? lag_names : rms_names, 1u << Y | 1u << Z, c->dt);
  set_like(&k->t[X], c->rank, c->dims);
  set_like(&k->t[Y], c->rank, c->dims);
  if (c->lag) {
    set_vec(&k->t[S], c->C);
    set_vec(&k->t[G], c->C);
    k->t[S].d.dtype = k->t[G].d.dtype = LINATTN_DTYPE_F32;
    set_like(&k->t[B], c->rank, c->dims);
    set_like(&k->t[Z], c->rank, c->dims);
    k->t[B].passed = c->has_beta || fz_chance(r, 30); /* b without beta is ignored */
    k->t[Z].passed = c->has_beta;
    if (c->alias == 1) k->t[Y].share_with = X;
    if (c->alias == 2) k->t[Z].share_with = B;
  } else {
    set_vec(&k->t[S], c->C);
    set_like(&k->t[G], c->rank, c->dims);
    k->t[B].passed = k->t[Z].passed = false;
    if (c->alias) k->t[Y].share_with = c->alias == 1 ? X : G;
  }
  fz_null_empty(k, true, r);
}

static const char* perturb(gt_case* c, fz_reader* r, int id) {
  fz_tensor* t = c->call.t;
  const int last = c->rank - 1;
  switch (id) {
    case 0: {
      const int i = (int[]){X, S, G, Y}[fz_pick(r, 4)];
      fz_unshare(t, NT, i);
      t[i].passed = false;
      return "required tensor NULL";
    }
    case 1: {
      const int i = (int[]){S, G, B, Y, Z}[fz_pick(r, 5)];
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.dtype = fz_other_dtype(t[i].d.dtype, r, LINATTN_DTYPE_F16);
      return "dtype differs";
    }
    case 2: {
      const int i = (int[]){G, B, Y, Z}[fz_pick(r, 4)];
      if (!t[i].passed || (c->lag && i == G)) return NULL; /* decay_scale: case 3 */
      fz_unshare(t, NT, i);
      t[i].d.dims[fz_pick(r, c->rank)] += 1;
      return "shape differs from x / a";
    }
    case 3: {
      const int i = c->lag ? (fz_chance(r, 50) ? S : G) : S;
      const bool longer = fz_chance(r, 50) || c->lag; /* dt_bias / decay_scale may have any rank */
      /* a longer scale that still divides the width is valid */
      if (!c->lag && longer && c->dims[last] % (c->C + 1) == 0) return NULL;
      fz_unshare(t, NT, i);
      if (longer) t[i].d.dims[0] += 1;
      else set_like(&t[i], 2, (int64_t[]){1, c->C});
      return "scale / dt_bias / decay_scale shape wrong";
    }
    case 4:
      if (c->lag) {
        for (int i = X; i < NT; i++)
          if (i != S && i != G) fz_unshare(t, NT, i), t[i].d.dims[last] = 0, memset(t[i].d.strides, 0, sizeof t[i].d.strides);
        return "H = 0";
      }
      fz_unshare(t, NT, S);
      t[S].d.dims[0] = 0;
      return "scale empty";
    case 5: {
      const int i = (int[]){X, Y, G}[fz_pick(r, 3)];
      fz_unshare(t, NT, i);
      t[i].d.rank = fz_chance(r, 50) ? 0 : 5;
      return "rank outside 1..4";
    }
    case 6:
      if (c->lag) return NULL;
      if (fz_chance(r, 50)) c->desc.epsilon = fz_chance(r, 50) ? -1e-3f : NAN;
      else c->desc.activation = (linattn_gate_activation)(fz_chance(r, 50) ? 0 : 3);
      return "epsilon or activation invalid";
    case 7: { /* gates take packed tensors only */
      const int i = (int[]){X, G, Y}[fz_pick(r, 3)];
      if (c->lag && i == G) return NULL;
      if (fz_numel(&t[i].d) < 2) return NULL;
      fz_unshare(t, NT, i);
      const bool inner = c->rank == 1 || t[i].d.dims[0] < 2 || fz_chance(r, 50);
      int64_t s = 1;
      for (int a = c->rank - 1; a >= 0; a--) {
        t[i].d.strides[a] = inner ? 2 * s : s + (a == 0 && a < c->rank - 1 ? 1 : 0);
        s *= t[i].d.dims[a] > 0 ? t[i].d.dims[a] : 1;
      }
      if (!inner && c->rank > 1) t[i].d.strides[0] = s / (t[i].d.dims[0] > 0 ? t[i].d.dims[0] : 1) + 1;
      return inner ? "innermost stride 2" : "padded outer stride";
    }
    case 8: { /* partial overlap of an output with an input */
      const int o = c->lag && c->has_beta && fz_chance(r, 50) ? Z : Y;
      const int i = c->lag ? (int[]){X, S, G, B}[fz_pick(r, 4)] : (int[]){X, S, G}[fz_pick(r, 3)];
      if (!t[i].passed || fz_numel(&t[i].d) < 2 || fz_numel(&t[o].d) < 1) return NULL;
      for (int j = 0; j < NT; j++)
        if (t[j].share_with == o) t[j].share_with = -1;
      t[o].share_with = i;
      t[o].share_offset = 1;
      t[o].null_data = false;
      return "output partially overlaps an input";
    }
    case 9: /* the outputs' only allowed buffers */
      if (c->lag) {
        if (!c->has_beta || fz_numel(&t[Z].d) < 1) return NULL;
        const int which = fz_pick(r, 3);
        if (which == 0) t[Z].share_with = X;
        else if (which == 1) fz_unshare(t, NT, Y), t[Z].share_with = Y;
        else t[Y].share_with = B, fz_unshare(t, NT, Z);
        t[which == 2 ? Y : Z].share_offset = 0;
        t[which == 2 ? Y : Z].null_data = false;
        if (which == 1) t[Y].null_data = false;
        return which == 0 ? "beta on a's buffer" : which == 1 ? "beta on decay's buffer" : "decay on b's buffer";
      }
      if (c->C != fz_numel(&t[Y].d) || c->rank != 1 || c->C < 1) return NULL;
      t[Y].share_with = S;
      t[Y].share_offset = 0;
      t[Y].null_data = false;
      return "y on scale's buffer";
    case 10:
      if (!c->lag || !c->has_beta) return NULL;
      fz_unshare(t, NT, B);
      t[B].passed = false;
      return "beta without b";
    case 11: {
      if (rows_of(c) < 1 || c->dims[last] < 1) return NULL;
      for (int i = X; i < NT; i++) {
        if (i == S || (i == G && c->lag) || !t[i].passed) continue;
        fz_unshare(t, NT, i);
        t[i].d.dims[0] = (int64_t)1 << 62;
        memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      }
      return "element count or size overflows";
    }
    case 12:
      c->ctx_null = true;
      if (!c->lag && fz_chance(r, 50)) c->ctx_null = false, c->desc_null = true;
      return c->ctx_null ? "context NULL" : "desc NULL";
    case 13: {
      const int i = fz_pick(r, NT);
      if (!t[i].passed || fz_numel(&t[i].d) <= 0) return NULL;
      fz_unshare(t, NT, i);
      t[i].null_data = true;
      return "NULL data with elements";
    }
    default:
      return NULL;
  }
}
#define NUM_PERTURBATIONS 14

static void mutate(gt_case* c, fz_reader* r) {
  fz_tensor* t = c->call.t;
  const int n = 1 + fz_pick(r, 3);
  for (int m = 0; m < n; m++) {
    const int i = fz_pick(r, NT + 1);
    if (i == NT) {
      if (fz_chance(r, 50)) c->desc.activation = (linattn_gate_activation)fz_pick(r, 4);
      else c->desc.epsilon = (float[]){-1.0f, 0.0f, 1e30f, INFINITY}[fz_pick(r, 4)];
      continue;
    }
    if (!c->lag && (i == B || i == Z)) continue; /* not arguments of GatedRMSNorm */
    if (fz_mutate_tensor(t, NT, i, r) && (t[i].share_with == i || (!c->lag && (t[i].share_with == B || t[i].share_with == Z))))
      t[i].share_with = -1;
  }
}

FZ_NOCOV static bool make_values(gt_case* c) {
  fz_rng g = {c->seed};
  for (int i = 0; i < NT; i++) c->vals[i] = NULL;
  for (int i = 0; i < NT; i++) {
    int64_t n;
    c->vals[i] = fz_values_alloc(&c->call.t[i], &n);
    if (!c->vals[i]) return false;
    for (int64_t e = 0; e < n; e++) {
      double v = fz_xmode_value(&g, c->xmode, 30.0, 2.0); /* softplus and sigmoid tails */
      if (c->lag && i == G) v = -fabs(v) - 0.01; /* decay_scale = -exp(A_log) < 0 */
      c->vals[i][e] = v;
    }
  }
  return true;
}

FZ_NOCOV static double value_of(void* user, int tensor, int64_t index) { return ((gt_case*)user)->vals[tensor][index]; }

FZ_NOCOV static double sigmoid(double x) { return 1.0 / (1.0 + exp(-x)); }

/* |got - want| within a few fp32 roundings of the terms plus one rounding to the output dtype */
FZ_NOCOV static void expect_close(const char* what, const char* name, int64_t e, double got, double want, double mag,
                                  linattn_dtype dt) {
  if (isnan(want)) {
    FZ_CHECK(isnan(got), "%s: %s[%lld] = %.9g, expected NaN", what, name, (long long)e, got);
    return;
  }
  if (!isfinite(want) || fabs(want) > 0.5 * fz_dtype_max(dt)) return;
  const double tol = 3e-6 * mag + fz_ulp(want, dt) + 1e-35;
  FZ_CHECK(fabs(got - want) <= tol, "%s: %s[%lld] = %.9g, expected %.9g (tol %.3g)", what, name, (long long)e, got, want, tol);
}

/* float64 oracle on the inputs as they were (outputs may be their buffers) */
FZ_NOCOV static void check_oracle(const gt_case* c, const fz_call* k, const fz_instance* in, const char* what) {
  fz_instance pristine;
  fz_instance_make(k, &pristine);
  const int64_t n = fz_numel(&k->t[X].d), C = c->C;
  if (!c->lag) {
    for (int64_t r0 = 0; r0 < n; r0 += C) {
      double ss = 0;
      for (int64_t j = 0; j < C; j++) ss += fz_get(k, &pristine, X, r0 + j) * fz_get(k, &pristine, X, r0 + j);
      const double inv = 1.0 / sqrt(ss / (double)C + (double)c->desc.epsilon);
      for (int64_t j = 0; j < C; j++) {
        const double x = fz_get(k, &pristine, X, r0 + j), z = fz_get(k, &pristine, G, r0 + j);
        const double act = c->desc.activation == LINATTN_GATE_SILU ? z * sigmoid(z) : sigmoid(z);
        const double want = x * inv * fz_get(k, &pristine, S, j) * act;
        expect_close(what, "y", r0 + j, fz_get(k, in, Y, r0 + j), want, fabs(want) + 1e-30, c->dt);
      }
    }
  } else {
    for (int64_t e = 0; e < n; e++) {
      const int64_t h = e % C;
      const double x = fz_get(k, &pristine, X, e) + fz_get(k, &pristine, S, h);
      const double sp = x > 0 ? x + log1p(exp(-x)) : log1p(exp(x));
      const double want = fz_get(k, &pristine, G, h) * sp;
      expect_close(what, "decay", e, fz_get(k, in, Y, e), want, fabs(want) + fabs(fz_get(k, &pristine, G, h) * x), c->dt);
      if (c->has_beta) {
        const double bw = sigmoid(fz_get(k, &pristine, B, e));
        expect_close(what, "beta", e, fz_get(k, in, Z, e), bw, bw, c->dt);
      }
    }
  }
  fz_instance_free(k, &pristine);
}

static int gt_expect; /* the current case's expectation, for run() */

FZ_NOCOV static linattn_status run(const void* user, linattn_context* ctx, const fz_call* k, fz_instance* in, int ws_mode,
                                   size_t* need_out) {
  const gt_case* c = (const gt_case*)user;
  (void)ws_mode;
  if (need_out) *need_out = 0;
  /* no size query: an unbacked tensor is passed only to a call that must refuse it before
   * touching any memory */
  if (fz_query_only && gt_expect != EXPECT_INVALID) {
    fz_call_skipped = true;
    return LINATTN_SUCCESS;
  }
  if (c->ctx_null) ctx = NULL;
  if (c->lag)
    return linattn_linear_attention_gate(ctx, fz_arg(k, in, X), fz_arg(k, in, S), fz_arg(k, in, G), fz_arg(k, in, B),
                                         fz_arg(k, in, Y), fz_arg(k, in, Z));
  return linattn_gated_rms_norm(ctx, c->desc_null ? NULL : &c->desc, fz_arg(k, in, X), fz_arg(k, in, S), fz_arg(k, in, G),
                                fz_arg(k, in, Y));
}

FZ_NOCOV static const char* perturb_case(void* c, fz_reader* r, int id) { return perturb((gt_case*)c, r, id); }
FZ_NOCOV static void mutate_case(void* c, fz_reader* r) { mutate((gt_case*)c, r); }
FZ_NOCOV static void oracle_case(const void* c, const fz_call* k, const fz_instance* in, const char* what) {
  check_oracle((const gt_case*)c, k, in, what);
}

static const gt_case* current_case;
FZ_NOCOV static void describe_case(char* buf, size_t size) {
  const gt_case* c = current_case;
  snprintf(buf, size, "%s act %d eps %g rank %d C %lld beta %d alias %d isa %s threads %d host %d xmode %d seed %llu |",
           c->lag ? "LinearAttentionGate" : "GatedRMSNorm", (int)c->desc.activation, (double)c->desc.epsilon, c->rank,
           (long long)c->C, (int)c->has_beta, c->alias, linattn_isa_name((linattn_isa)c->isa), c->threads, c->host,
           c->xmode, (unsigned long long)c->seed);
  for (int i = 0; i < NT; i++)
    fz_describe_tensor(buf, size, c->lag ? lag_names[i] : rms_names[i], c->call.t[i].passed, &c->call.t[i].d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz_reader r = {data, size, 0};
  gt_case c;
  build_valid(&c, &r);
  uint8_t tail[64];
  fz_reader rm = fz_tail_reader(data, size, tail, sizeof tail);
  fz_choose_mode(&c, &rm, NUM_PERTURBATIONS, perturb_case, mutate_case, &c.expect, &c.what);
  gt_expect = c.expect;
  fz_case_name = c.what;
  fz_call* k = &c.call;
  current_case = &c;
  fz_case_describe = describe_case;
  fz_verbose_case();
  fz_layout(k);
  /* Raw mutations may lay an input over another's bytes: a 16-bit view of fp32 data holds NaNs
   * of any payload, and an elementwise op carries the payload to its output, which may then
   * equal the "unwritten" poison (found after 573,042 executions). Such outputs are not checked
   * for poison (they are still compared with the reference kernels and checked for stray writes). */
  for (int i = 0; i < NT; i++)
    for (int j = 0; j < NT; j++)
      if (i != j && !k->t[i].is_output && !k->t[j].is_output && k->t[i].region >= 0 && k->t[i].region == k->t[j].region)
        for (int o = 0; o < NT; o++)
          if (k->t[o].is_output) k->t[o].aliased = true;
  if (make_values(&c)) {
    fz_make_template(k, value_of, &c);
    fz_target t = {.c = &c, .call = k, .expect = c.expect, .isa = c.isa, .threads = c.threads, .host = c.host,
                   .ws_mode = WS_NULL, .run = run, .oracle = oracle_case, .oracle_on_chosen = true, .rel = 3e-6,
                   .rel_lowp = 8e-3, .ulps = 2.0, .atol = 0.0};
    fz_run_case(&t);
    fz_free_template(k);
  }
  for (int i = 0; i < NT; i++) free(c.vals[i]);
  return 0;
}
