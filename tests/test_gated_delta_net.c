/*
 * linattn_gated_delta_net (ONNX Runtime's com.microsoft GatedDeltaNet) through the C API, for every
 * kernel family this CPU runs, against a float64 sequential oracle written here from the operator's
 * specification (tests/python/test_gated_delta_net.py compares with ONNX Runtime itself):
 *  1. random ragged batches (lengths 0 .. 80: decode, short and lock-step prefill requests), every
 *     update rule, gate (none / softplus / sigmoid, per-head or per-key dt_bias), beta sigmoid, q/k
 *     L2 norm, per-head and per-key decay, decay/beta in f32 or the activation type, capture, state
 *     absent / separate / in place, f32 / f16 / bf16; outputs NaN-poisoned first, so an unwritten
 *     element fails;
 *  2. 1 and 3 threads give the same bits;
 *  3. bad input: a status naming the argument, outputs untouched;
 *  4. state replay of the captured transitions equals the state after those tokens;
 *  5. shape inference;
 *  1b. qk_l2_norm_eps (ORT's 1e-12, fla's 1e-6, 0) on rows small enough for it to matter;
 *  6. non-finite values (infinities in any input, overflowing keys, decays or states, NaN
 *     betas): NaN / +-inf exactly where the reference ISA has them, every ISA, 1 and 2 threads,
 *     separate state and in place (300 tokens);
 *  7. la.fold_head_decay on the AVX-512 family (check_fold).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"
#include "testkit.h"

typedef struct gcase {
  int64_t B, lens[4], Hq, grp, dk, dv;
  linattn_update_rule rule;
  linattn_gdn_gate gate;
  int beta_sigmoid, l2, per_key, dt_bias_per_key, cap, state_mode; /* 0 none, 1 separate, 2 in place */
  linattn_dtype dt, gdt;
  int has_eps;     /* desc.qk_l2_norm_eps = eps, else desc_init's (ORT's 1e-12) */
  float eps;
  double qk_scale; /* > 0: q and k drawn at this scale */
  double al_off;   /* added to every a_log (large: strong gates) */
} gcase;

typedef struct gdata {
  int64_t T, Hv, dw, su_row;
  int32_t cu[5], capc[4];
  double *q, *k, *v, *g, *b, *s0, *al, *db; /* float64 values the op sees (already rounded) */
  void *qx, *kx, *vx, *gx, *bx, *ox;        /* the op's buffers */
  float *s0x, *finx, *sux, *alx, *dbx;
} gdata;

static void* xcalloc(size_t n, size_t sz) {
  void* p = calloc(n ? n : 1, sz);
  if (!p) tk_fatal("out of memory");
  return p;
}

/* Fills n values of dtype dt from a normal distribution times sc (plus off): the op's buffer and
 * the float64 copy of what it holds. */
static void fill(tk_rng* r, linattn_dtype dt, int64_t n, double sc, double off, double* dst, void** buf) {
  *buf = xcalloc((size_t)n, tk_dtype_size(dt));
  for (int64_t i = 0; i < n; i++) {
    const double x = tk_round(off + sc * tk_normal(r), dt);
    dst[i] = x;
    if (dt == LINATTN_DTYPE_F32) ((float*)*buf)[i] = (float)x;
    else ((uint16_t*)*buf)[i] = (uint16_t)tk_encode(x, dt);
  }
}

static bool gated(linattn_update_rule r) { return r == LINATTN_UPDATE_GATED || r == LINATTN_UPDATE_GATED_DELTA; }
static bool delta(linattn_update_rule r) { return r == LINATTN_UPDATE_DELTA || r == LINATTN_UPDATE_GATED_DELTA; }

static void make_data(tk_rng* r, const gcase* c, gdata* d) {
  memset(d, 0, sizeof *d);
  d->T = 0;
  d->cu[0] = 0;
  for (int64_t b = 0; b < c->B; b++) d->cu[b + 1] = d->cu[b] + (int32_t)c->lens[b];
  d->T = d->cu[c->B];
  d->Hv = c->Hq * c->grp;
  const int64_t T = d->T, Hq = c->Hq, Hv = d->Hv, dk = c->dk, dv = c->dv;
  d->dw = c->per_key ? Hv * dk : Hv;
  d->su_row = c->cap * (d->dw + Hq * dk + Hv * dv);
  d->q = xcalloc((size_t)(T * Hq * dk), 8);
  d->k = xcalloc((size_t)(T * Hq * dk), 8);
  d->v = xcalloc((size_t)(T * Hv * dv), 8);
  d->g = xcalloc((size_t)(T * d->dw), 8);
  d->b = xcalloc((size_t)(T * Hv), 8);
  d->s0 = xcalloc((size_t)(c->B * Hv * dv * dk), 8);
  d->al = xcalloc((size_t)Hv, 8);
  d->db = xcalloc((size_t)(Hv * dk), 8);
  /* without the L2 norm the delta rules need short keys to stay bounded */
  const double qks = c->qk_scale > 0 ? c->qk_scale : c->l2 ? 1.0 : 1.0 / sqrt((double)dk);
  fill(r, c->dt, T * Hq * dk, qks, 0.0, d->q, &d->qx);
  fill(r, c->dt, T * Hq * dk, qks, 0.0, d->k, &d->kx);
  fill(r, c->dt, T * Hv * dv, 1.0, 0.0, d->v, &d->vx);
  if (c->gate == LINATTN_GDN_GATE_NONE) fill(r, c->gdt, T * d->dw, 0.1, -0.2, d->g, &d->gx);
  else fill(r, c->gdt, T * d->dw, 1.5, 0.0, d->g, &d->gx);
  fill(r, c->gdt, T * Hv, c->beta_sigmoid ? 2.0 : 0.2, c->beta_sigmoid ? 0.0 : 0.5, d->b, &d->bx);
  void* tmp;
  fill(r, LINATTN_DTYPE_F32, c->B * Hv * dv * dk, 0.3, 0.0, d->s0, &tmp);
  d->s0x = tmp;
  fill(r, LINATTN_DTYPE_F32, Hv, 0.5, c->al_off, d->al, &tmp);
  d->alx = tmp;
  fill(r, LINATTN_DTYPE_F32, Hv * dk, 1.0, 0.0, d->db, &tmp);
  d->dbx = tmp;
  for (int64_t b = 0; b < c->B; b++) d->capc[b] = (int32_t)tk_below(r, 11) - 1;
  d->ox = xcalloc((size_t)(T * Hv * dv), tk_dtype_size(c->dt));
  d->finx = xcalloc((size_t)(c->B * Hv * dv * dk), 4);
  d->sux = xcalloc((size_t)(c->B * d->su_row), 4);
}

static void free_data(gdata* d) {
  void* ps[] = {d->q, d->k, d->v, d->g, d->b, d->s0, d->al, d->db, d->qx, d->kx, d->vx, d->gx, d->bx, d->ox,
                d->s0x, d->finx, d->sux, d->alx, d->dbx};
  for (size_t i = 0; i < sizeof ps / sizeof ps[0]; i++) free(ps[i]);
}

/* Float64 oracle: output (T, Hv, dv), final state (B, Hv, dv, dk), capture (NaN = not captured). */
static void oracle(const gcase* c, const gdata* d, double* out, double* fin, double* su) {
  const int64_t Hq = c->Hq, Hv = d->Hv, dk = c->dk, dv = c->dv, grp = c->grp;
  const double scale = 1.0 / sqrt((double)dk);
  const double eps = c->has_eps ? (double)c->eps : 1e-12;
  double* S = xcalloc((size_t)(dk * dv), 8);
  double *qn = xcalloc((size_t)dk, 8), *kn = xcalloc((size_t)dk, 8), *a = xcalloc((size_t)dk, 8), *u = xcalloc((size_t)dv, 8);
  for (int64_t i = 0; i < c->B * d->su_row; i++) su[i] = NAN;
  for (int64_t r = 0; r < c->B; r++)
    for (int64_t h = 0; h < Hv; h++) {
      const int64_t hq = h / grp;
      for (int64_t j = 0; j < dv; j++)
        for (int64_t i = 0; i < dk; i++) S[i * dv + j] = c->state_mode ? d->s0[((r * Hv + h) * dv + j) * dk + i] : 0.0;
      const int64_t len = d->cu[r + 1] - d->cu[r];
      int64_t ncap = d->capc[r] < 0 ? 0 : d->capc[r];
      if (ncap > c->cap) ncap = c->cap;
      if (ncap > len) ncap = len;
      for (int64_t t = d->cu[r]; t < d->cu[r + 1]; t++) {
        double nq = 0, nk = 0;
        for (int64_t i = 0; i < dk; i++) {
          qn[i] = d->q[(t * Hq + hq) * dk + i];
          kn[i] = d->k[(t * Hq + hq) * dk + i];
          nq += qn[i] * qn[i];
          nk += kn[i] * kn[i];
        }
        if (c->l2)
          for (int64_t i = 0; i < dk; i++) qn[i] /= sqrt(nq + eps), kn[i] /= sqrt(nk + eps);
        for (int64_t i = 0; i < dk; i++) {
          double g = 0.0;
          if (gated(c->rule)) {
            double x = d->g[t * d->dw + (c->per_key ? h * dk + i : h)];
            if (c->gate != LINATTN_GDN_GATE_NONE) {
              x += d->db[c->dt_bias_per_key ? h * dk + i : h];
              if (c->gate == LINATTN_GDN_GATE_SOFTPLUS) g = -exp(d->al[h]) * (x > 20 ? x : log1p(exp(x)));
              else g = -5.0 / (1.0 + exp(-exp(d->al[h]) * x));
            } else {
              g = x;
            }
          }
          a[i] = exp(g);
        }
        const double bt = c->beta_sigmoid ? 1.0 / (1.0 + exp(-d->b[t * Hv + h])) : d->b[t * Hv + h];
        for (int64_t j = 0; j < dv; j++) {
          double p = 0;
          for (int64_t i = 0; i < dk; i++) p += a[i] * S[i * dv + j] * kn[i];
          const double vv = d->v[(t * Hv + h) * dv + j];
          u[j] = delta(c->rule) ? bt * (vv - p) : vv;
          double o = 0;
          for (int64_t i = 0; i < dk; i++) {
            S[i * dv + j] = a[i] * S[i * dv + j] + kn[i] * u[j];
            o += S[i * dv + j] * qn[i];
          }
          out[(t * Hv + h) * dv + j] = scale * o;
        }
        const int64_t lt = t - d->cu[r];
        if (lt < ncap) {
          double* row = su + r * d->su_row;
          if (c->per_key)
            for (int64_t i = 0; i < dk; i++) row[lt * d->dw + h * dk + i] = a[i];
          else
            row[lt * d->dw + h] = a[0];
          for (int64_t i = 0; i < dk; i++) row[c->cap * d->dw + (lt * Hq + hq) * dk + i] = kn[i];
          for (int64_t j = 0; j < dv; j++) row[c->cap * (d->dw + Hq * dk) + (lt * Hv + h) * dv + j] = u[j];
        }
      }
      for (int64_t j = 0; j < dv; j++)
        for (int64_t i = 0; i < dk; i++) fin[((r * Hv + h) * dv + j) * dk + i] = S[i * dv + j];
    }
  free(S), free(qn), free(kn), free(a), free(u);
}

typedef struct gtensors {
  linattn_tensor q, k, v, g, b, s0, al, db, o, fin, su;
} gtensors;

static void tensors(const gcase* c, gdata* d, gtensors* t) {
  const int64_t T = d->T, Hv = d->Hv;
  t->q = linattn_make_tensor(d->qx, c->dt, 3, (int64_t[]){T, c->Hq, c->dk});
  t->k = linattn_make_tensor(d->kx, c->dt, 3, (int64_t[]){T, c->Hq, c->dk});
  t->v = linattn_make_tensor(d->vx, c->dt, 3, (int64_t[]){T, Hv, c->dv});
  t->g = c->per_key ? linattn_make_tensor(d->gx, c->gdt, 3, (int64_t[]){T, Hv, c->dk})
                    : linattn_make_tensor(d->gx, c->gdt, 2, (int64_t[]){T, Hv});
  t->b = linattn_make_tensor(d->bx, c->gdt, 2, (int64_t[]){T, Hv});
  t->s0 = linattn_make_tensor(d->s0x, LINATTN_DTYPE_F32, 4, (int64_t[]){c->B, Hv, c->dv, c->dk});
  t->al = linattn_make_tensor(d->alx, LINATTN_DTYPE_F32, 1, (int64_t[]){Hv});
  t->db = c->dt_bias_per_key ? linattn_make_tensor(d->dbx, LINATTN_DTYPE_F32, 2, (int64_t[]){Hv, c->dk})
                             : linattn_make_tensor(d->dbx, LINATTN_DTYPE_F32, 1, (int64_t[]){Hv});
  t->o = linattn_make_tensor(d->ox, c->dt, 3, (int64_t[]){T, Hv, c->dv});
  t->fin = linattn_make_tensor(c->state_mode == 2 ? (void*)d->s0x : (void*)d->finx, LINATTN_DTYPE_F32, 4,
                               (int64_t[]){c->B, Hv, c->dv, c->dk});
  t->su = linattn_make_tensor(d->sux, LINATTN_DTYPE_F32, 2, (int64_t[]){c->B, d->su_row});
}

static linattn_status call(linattn_context* ctx, const gcase* c, gdata* d, const gtensors* t) {
  linattn_gated_delta_net_desc desc;
  linattn_gated_delta_net_desc_init(&desc);
  desc.update_rule = c->rule;
  desc.gate_activation = c->gate;
  desc.beta_activation = c->beta_sigmoid ? LINATTN_GDN_BETA_SIGMOID : LINATTN_GDN_BETA_NONE;
  desc.qk_l2_norm = c->l2;
  desc.state_update_capacity = c->cap;
  if (c->has_eps) desc.qk_l2_norm_eps = c->eps;
  return linattn_gated_delta_net(ctx, &desc, &t->q, &t->k, &t->v, d->cu, c->B + 1, gated(c->rule) ? &t->g : NULL,
                                 delta(c->rule) ? &t->b : NULL, c->state_mode ? &t->s0 : NULL,
                                 c->gate != LINATTN_GDN_GATE_NONE ? &t->al : NULL, c->gate != LINATTN_GDN_GATE_NONE ? &t->db : NULL,
                                 c->cap ? d->capc : NULL, &t->o, &t->fin, c->cap ? &t->su : NULL, NULL, 0);
}

static double get_out(const gcase* c, const gdata* d, int64_t i) {
  if (c->dt == LINATTN_DTYPE_F32) return ((const float*)d->ox)[i];
  return tk_decode(((const uint16_t*)d->ox)[i], c->dt);
}

static void random_case(tk_rng* r, gcase* c) {
  memset(c, 0, sizeof *c);
  c->B = 1 + tk_below(r, 4);
  for (int64_t b = 0; b < c->B; b++) {
    const int64_t kind = tk_below(r, 4);
    c->lens[b] = kind == 0 ? tk_below(r, 2) : kind == 1 ? 1 + tk_below(r, 9) : kind == 2 ? 8 + tk_below(r, 40) : 64 + tk_below(r, 20);
  }
  c->Hq = 1 + tk_below(r, 2);
  c->grp = 1 + tk_below(r, 2);
  /* 40 and 24: 8 mod 16, so the V-major transposes (16 x 16 tiles of 8 x 8 blocks) have half tiles */
  const int64_t dks[] = {1, 5, 16, 32, 40, 64}, dvs[] = {1, 7, 16, 24, 33, 40, 64};
  c->dk = dks[tk_below(r, 6)];
  c->dv = dvs[tk_below(r, 7)];
  c->rule = (linattn_update_rule)(1 + tk_below(r, 4));
  c->per_key = gated(c->rule) ? (int)tk_below(r, 2) : 0;
  c->gate = gated(c->rule) ? (linattn_gdn_gate)(1 + tk_below(r, 3)) : LINATTN_GDN_GATE_NONE;
  c->dt_bias_per_key = c->per_key && c->gate != LINATTN_GDN_GATE_NONE && tk_below(r, 2);
  c->beta_sigmoid = (int)tk_below(r, 2);
  c->l2 = (int)tk_below(r, 2);
  c->cap = tk_below(r, 2) ? (int)tk_below(r, 9) : 0;
  c->state_mode = (int)tk_below(r, 3);
  const linattn_dtype dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  c->dt = dts[tk_below(r, 3)];
  c->gdt = tk_below(r, 2) ? LINATTN_DTYPE_F32 : c->dt;
}

/* 1. against the oracle */
static void check_case(linattn_context* ctx, const char* isa, const gcase* c, tk_rng* r) {
  gdata d;
  make_data(r, c, &d);
  gtensors t;
  tensors(c, &d, &t);
  const int64_t no = d.T * d.Hv * c->dv, ns = c->B * d.Hv * c->dv * c->dk, nu = c->B * d.su_row;
  double *eo = xcalloc((size_t)no, 8), *es = xcalloc((size_t)ns, 8), *eu = xcalloc((size_t)nu, 8);
  oracle(c, &d, eo, es, eu);
  for (int64_t i = 0; i < no; i++) {
    if (c->dt == LINATTN_DTYPE_F32) ((float*)d.ox)[i] = NAN;
    else ((uint16_t*)d.ox)[i] = 0x7e00;
  }
  for (int64_t i = 0; i < ns; i++) d.finx[i] = NAN;
  for (int64_t i = 0; i < nu; i++) d.sux[i] = NAN;
  tk_context("%s B=%lld lens=%lld,%lld,%lld,%lld Hq=%lld grp=%lld dk=%lld dv=%lld rule=%d gate=%d bsig=%d l2=%d per_key=%d "
             "dtb_key=%d cap=%d state=%d dt=%s gdt=%s",
             isa, (long long)c->B, (long long)c->lens[0], (long long)c->lens[1], (long long)c->lens[2], (long long)c->lens[3],
             (long long)c->Hq, (long long)c->grp, (long long)c->dk, (long long)c->dv, (int)c->rule, (int)c->gate,
             c->beta_sigmoid, c->l2, c->per_key, c->dt_bias_per_key, c->cap, c->state_mode, tk_dtype_str(c->dt),
             tk_dtype_str(c->gdt));
  const linattn_status st = call(ctx, c, &d, &t);
  if (tk_check(st == LINATTN_SUCCESS, "status %s: %s", linattn_status_string(st), linattn_last_error())) {
    const double tol = c->dt == LINATTN_DTYPE_F32 ? 2e-4 : c->dt == LINATTN_DTYPE_F16 ? 2e-2 : 8e-2;
    double mo = 1, ms = 1, eo_max = 0, es_max = 0, eu_max = 0;
    for (int64_t i = 0; i < no; i++) mo = tk_max(mo, fabs(eo[i]));
    for (int64_t i = 0; i < ns; i++) ms = tk_max(ms, fabs(es[i]));
    int unwritten = 0;
    for (int64_t i = 0; i < no; i++) {
      const double a = get_out(c, &d, i);
      unwritten += !isfinite(a);
      eo_max = tk_max(eo_max, fabs(a - eo[i]));
    }
    const float* fs = c->state_mode == 2 ? d.s0x : d.finx;
    for (int64_t i = 0; i < ns; i++) {
      unwritten += !isfinite(fs[i]);
      es_max = tk_max(es_max, fabs(fs[i] - es[i]));
    }
    for (int64_t i = 0; i < nu; i++) {
      if (isnan(eu[i])) unwritten += d.sux[i] != 0.0f; /* slots past the captured prefix: 0 */
      else eu_max = tk_max(eu_max, fabs(d.sux[i] - eu[i]));
    }
    tk_check(unwritten == 0, "%d elements unwritten or not zeroed", unwritten);
    tk_check(eo_max <= tol * mo, "output: max err %.3e > %.3e", eo_max, tol * mo);
    tk_check(es_max <= tol * ms, "final_state: max err %.3e > %.3e", es_max, tol * ms);
    tk_check(eu_max <= tol * ms, "state_update: max err %.3e", eu_max);
  }
  free(eo), free(es), free(eu);
  free_data(&d);
}

/* 2. threads: the same bits */
static void check_threads(tk_rng* r) {
  gcase c = {.B = 3, .lens = {70, 1, 9}, .Hq = 2, .grp = 2, .dk = 32, .dv = 40, .rule = LINATTN_UPDATE_GATED_DELTA,
             .gate = LINATTN_GDN_GATE_SOFTPLUS, .beta_sigmoid = 1, .l2 = 1, .cap = 3, .state_mode = 1,
             .dt = LINATTN_DTYPE_F32, .gdt = LINATTN_DTYPE_F32};
  gdata d;
  make_data(r, &c, &d);
  gtensors t;
  tensors(&c, &d, &t);
  const size_t no = (size_t)(d.T * d.Hv * c.dv) * 4, ns = (size_t)(c.B * d.Hv * c.dv * c.dk) * 4, nu = (size_t)(c.B * d.su_row) * 4;
  char* ref = xcalloc(no + ns + nu, 1);
  tk_context("threads");
  for (int threads = 1; threads <= 3; threads += 2) {
    linattn_context_options o;
    linattn_context_options_init(&o);
    o.num_threads = threads;
    linattn_context* ctx;
    if (linattn_context_create(&o, &ctx)) tk_fatal("context: %s", linattn_last_error());
    tk_check(call(ctx, &c, &d, &t) == LINATTN_SUCCESS, "status: %s", linattn_last_error());
    if (threads == 1) {
      memcpy(ref, d.ox, no), memcpy(ref + no, d.finx, ns), memcpy(ref + no + ns, d.sux, nu);
    } else {
      tk_check(!memcmp(ref, d.ox, no) && !memcmp(ref + no, d.finx, ns) && !memcmp(ref + no + ns, d.sux, nu),
               "3 threads differ from 1 thread");
    }
    linattn_context_destroy(ctx);
  }
  free(ref);
  free_data(&d);
}

/* 3. bad input */
static void expect_bad(linattn_context* ctx, const gcase* c, gdata* d, const gtensors* t, const char* needle,
                       const char* what) {
  const size_t no = (size_t)(d->T * d->Hv * c->dv) * 4, ns = (size_t)(c->B * d->Hv * c->dv * c->dk) * 4;
  memset(d->ox, 0x5a, no);
  memset(d->finx, 0x5a, ns);
  tk_context("bad input: %s", what);
  const linattn_status st = call(ctx, c, d, t);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT, "status %s", linattn_status_string(st));
  tk_check(strstr(linattn_last_error(), needle) != NULL, "message '%s' does not name '%s'", linattn_last_error(), needle);
  int touched = 0;
  for (size_t i = 0; i < no; i++) touched |= ((unsigned char*)d->ox)[i] != 0x5a;
  for (size_t i = 0; i < ns; i++) touched |= ((unsigned char*)d->finx)[i] != 0x5a;
  tk_check(!touched, "outputs written on error");
}

static void check_bad_input(linattn_context* ctx, tk_rng* r) {
  gcase c = {.B = 2, .lens = {3, 4}, .Hq = 1, .grp = 2, .dk = 8, .dv = 4, .rule = LINATTN_UPDATE_GATED_DELTA,
             .gate = LINATTN_GDN_GATE_NONE, .cap = 2, .state_mode = 1, .dt = LINATTN_DTYPE_F32, .gdt = LINATTN_DTYPE_F32};
  gdata d;
  make_data(r, &c, &d);
  gtensors t;
  tensors(&c, &d, &t);
  d.cu[0] = 1;
  expect_bad(ctx, &c, &d, &t, "cu_seqlens", "cu_seqlens[0] != 0");
  d.cu[0] = 0, d.cu[2] = 6;
  expect_bad(ctx, &c, &d, &t, "cu_seqlens", "cu_seqlens[B] != T");
  d.cu[2] = 7, d.cu[1] = 8;
  expect_bad(ctx, &c, &d, &t, "cu_seqlens", "decreasing cu_seqlens");
  d.cu[1] = 3;
  gcase c2 = c;
  c2.cap = 9;
  expect_bad(ctx, &c2, &d, &t, "state_update_capacity", "capacity 9");
  linattn_gated_delta_net_desc desc;
  linattn_gated_delta_net_desc_init(&desc);
  desc.state_update_capacity = 0;
  tk_context("bad input: capture_count without capacity");
  tk_check(linattn_gated_delta_net(ctx, &desc, &t.q, &t.k, &t.v, d.cu, 3, &t.g, &t.b, &t.s0, NULL, NULL, d.capc, &t.o, &t.fin,
                                   NULL, NULL, 0) == LINATTN_ERROR_INVALID_ARGUMENT &&
               strstr(linattn_last_error(), "capture_count"),
           "capture_count without capacity: %s", linattn_last_error());
  desc.state_update_capacity = 2;
  tk_check(linattn_gated_delta_net(ctx, &desc, &t.q, &t.k, &t.v, d.cu, 3, &t.g, &t.b, &t.s0, NULL, NULL, NULL, &t.o, &t.fin,
                                   &t.su, NULL, 0) == LINATTN_ERROR_INVALID_ARGUMENT &&
               strstr(linattn_last_error(), "capture_count"),
           "capacity without capture_count: %s", linattn_last_error());
  gcase c4 = c;
  c4.l2 = 1, c4.has_eps = 1, c4.eps = -1e-6f;
  expect_bad(ctx, &c4, &d, &t, "qk_l2_norm_eps", "negative qk_l2_norm_eps");
  c4.eps = NAN;
  expect_bad(ctx, &c4, &d, &t, "qk_l2_norm_eps", "NaN qk_l2_norm_eps");
  c4.eps = INFINITY;
  expect_bad(ctx, &c4, &d, &t, "qk_l2_norm_eps", "infinite qk_l2_norm_eps");
  /* a K-major (B, H_v, d_k, d_v) state */
  gtensors t2 = t;
  t2.s0 = linattn_make_tensor(d.s0x, LINATTN_DTYPE_F32, 4, (int64_t[]){c.B, d.Hv, c.dk, c.dv});
  expect_bad(ctx, &c, &d, &t2, "V-major", "K-major initial_state");
  /* a_log / dt_bias descriptors of a rank outside [0, 4] (found by fuzz_gated_delta_net: their
   * own rank was trusted, and rank 5 read past dims[]) */
  gcase c3 = c;
  c3.gate = LINATTN_GDN_GATE_SOFTPLUS;
  const int32_t bad_ranks[] = {5, -1, 1000};
  for (int i = 0; i < 3; i++) {
    t2 = t;
    t2.al.rank = bad_ranks[i];
    expect_bad(ctx, &c3, &d, &t2, "a_log: rank", "a_log of an invalid rank");
    t2 = t;
    t2.db.rank = bad_ranks[i];
    expect_bad(ctx, &c3, &d, &t2, "dt_bias: rank", "dt_bias of an invalid rank");
  }
  free_data(&d);
}

/* 4. replay of the capture: the state after the first kept tokens of a request */
static void check_replay(linattn_context* ctx, tk_rng* r) {
  for (int per_key = 0; per_key < 2; per_key++) {
    gcase c = {.B = 1, .lens = {6}, .Hq = 2, .grp = 2, .dk = 8, .dv = 5, .rule = LINATTN_UPDATE_GATED_DELTA,
               .gate = LINATTN_GDN_GATE_NONE, .per_key = per_key, .cap = 4, .state_mode = 1, .dt = LINATTN_DTYPE_F32,
               .gdt = LINATTN_DTYPE_F32};
    gdata d;
    make_data(r, &c, &d);
    d.capc[0] = 4;
    gtensors t;
    tensors(&c, &d, &t);
    tk_context("replay per_key=%d", per_key);
    tk_check(call(ctx, &c, &d, &t) == LINATTN_SUCCESS, "status: %s", linattn_last_error());
    for (int keep = 1; keep <= 4; keep++) {
      gcase ck = c;
      ck.lens[0] = keep;
      ck.cap = 0;
      const int64_t ns = d.Hv * c.dv * c.dk, no = 6 * d.Hv * c.dv;
      double *eo = xcalloc((size_t)no, 8), *es = xcalloc((size_t)ns, 8), *eu = xcalloc(1, 8);
      gdata dd = d;
      dd.cu[1] = keep;
      dd.su_row = 0;
      oracle(&ck, &dd, eo, es, eu);
      float* dst = xcalloc((size_t)ns, 4);
      const linattn_tensor src = linattn_make_tensor(d.s0x, LINATTN_DTYPE_F32, 3, (int64_t[]){d.Hv, c.dv, c.dk});
      const linattn_tensor cap = linattn_make_tensor(d.sux, LINATTN_DTYPE_F32, 1, (int64_t[]){d.su_row});
      const linattn_tensor out = linattn_make_tensor(dst, LINATTN_DTYPE_F32, 3, (int64_t[]){d.Hv, c.dv, c.dk});
      tk_check(linattn_gated_delta_net_state_replay(&src, &cap, c.Hq, 4, keep, &out) == LINATTN_SUCCESS, "replay: %s",
               linattn_last_error());
      double err = 0;
      for (int64_t i = 0; i < ns; i++) err = tk_max(err, fabs(dst[i] - es[i]));
      tk_check(err < 1e-4, "replay keep=%d: max err %.3e", keep, err);
      free(eo), free(es), free(eu), free(dst);
    }
    free_data(&d);
  }
}

/* 5. shape inference agrees with the shapes the call accepts */
static void check_infer_shapes(void) {
  linattn_gated_delta_net_desc desc;
  linattn_gated_delta_net_desc_init(&desc);
  desc.state_update_capacity = 3;
  int32_t orank;
  int64_t od[4], fd[4], ud[2];
  tk_context("infer_shapes");
  const int64_t q[3] = {10, 2, 16}, v[3] = {10, 4, 8}, s0[4] = {3, 4, 8, 16};
  tk_check(linattn_gated_delta_net_infer_shapes(&desc, 3, q, q, v, NULL, 4, 1, &orank, od, fd, ud) == LINATTN_SUCCESS,
           "separate: %s", linattn_last_error());
  tk_check(orank == 3 && od[0] == 10 && od[1] == 4 && od[2] == 8, "output dims");
  tk_check(fd[0] == 3 && fd[1] == 4 && fd[2] == 8 && fd[3] == 16, "final_state dims");
  tk_check(ud[0] == 3 && ud[1] == 3 * (4 * 16 + 2 * 16 + 4 * 8), "state_update dims (per-key decay)");
  const int64_t qp[2] = {10, 2 * 2 * 16 + 4 * 8};
  tk_check(linattn_gated_delta_net_infer_shapes(&desc, 2, qp, NULL, NULL, s0, 0, 0, &orank, od, fd, ud) == LINATTN_SUCCESS,
           "packed: %s", linattn_last_error());
  tk_check(orank == 3 && od[0] == 10 && od[1] == 4 && od[2] == 8 && fd[0] == 3 && ud[1] == 3 * (4 + 32 + 32), "packed dims");
  const int64_t vbad[3] = {10, 3, 8};
  tk_check(linattn_gated_delta_net_infer_shapes(&desc, 3, q, q, vbad, NULL, 4, 0, &orank, od, fd, ud) ==
                   LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "num_heads_v"),
           "H_v not a multiple of H_q: %s", linattn_last_error());
}

/* 6. non-finite values: every ISA gives NaN / +-inf exactly where the reference kernel family
 * does (the spec: onnx.reference's order of operations), finite values close to it. */

/* a and e are both NaN, the same infinity, or finite and close (e from the reference ISA). */
static bool same_class(double a, double e) {
  if (isnan(e) || isnan(a)) return isnan(e) && isnan(a);
  if (isinf(e) || isinf(a)) return a == e;
  return fabs(a - e) <= 1e-2 * fabs(e) + 1e-2;
}

static void set_value(void* buf, linattn_dtype dt, int64_t i, double x) {
  if (dt == LINATTN_DTYPE_F32) ((float*)buf)[i] = (float)x;
  else ((uint16_t*)buf)[i] = (uint16_t)tk_encode(x, dt);
}

static double get_value(const void* buf, linattn_dtype dt, int64_t i) {
  if (dt == LINATTN_DTYPE_F32) return ((const float*)buf)[i];
  return tk_decode(((const uint16_t*)buf)[i], dt);
}

/* Makes request r's values non-finite or overflowing the way `where` says (token t of it):
 * 0 +-inf in q, 1 +-inf in k, 2 +-inf in v, 3 +-inf in initial_state, 4 a log-decay of +inf
 * (gate none), 5 keys of 1e30 without the L2 norm (k u^T overflows fp32), 6 a state of 4.25e37
 * whose q . S overflows fp32 before the scale (the fast kernels scale q first), 7 NaN in beta. */
static void poison_inputs(tk_rng* r, const gcase* c, gdata* d, int where, int64_t req) {
  const int64_t Hq = c->Hq, Hv = d->Hv, dk = c->dk, dv = c->dv;
  const int64_t t = d->cu[req] + tk_below(r, c->lens[req]);
  const double inf = tk_below(r, 2) ? INFINITY : -INFINITY;
  switch (where) {
    case 0: set_value(d->qx, c->dt, t * Hq * dk + tk_below(r, Hq * dk), inf); break;
    case 1: set_value(d->kx, c->dt, t * Hq * dk + tk_below(r, Hq * dk), inf); break;
    case 2: set_value(d->vx, c->dt, t * Hv * dv + tk_below(r, Hv * dv), inf); break;
    case 3: d->s0x[req * Hv * dv * dk + tk_below(r, Hv * dv * dk)] = (float)inf; break;
    case 4: set_value(d->gx, c->gdt, t * d->dw + tk_below(r, d->dw), INFINITY); break;
    case 5:
      for (int64_t i = 0; i < Hq * dk; i++) set_value(d->kx, c->dt, t * Hq * dk + i, 1e30);
      break;
    case 6:
      for (int64_t i = 0; i < Hv * dv * dk; i++) d->s0x[req * Hv * dv * dk + i] = i < dv * dk ? 4.25e37f : 1.0f;
      for (int64_t i = d->cu[req] * Hq * dk; i < d->cu[req + 1] * Hq * dk; i++) set_value(d->qx, c->dt, i, 1.0);
      break;
    default: set_value(d->bx, c->gdt, t * Hv + tk_below(r, Hv), NAN); break;
  }
}

static void check_non_finite(tk_rng* r) {
  linattn_isa isas[8];
  const int n_isa = tk_available_isas(isas, 8);
  linattn_context* ref = tk_context_create(LINATTN_ISA_REFERENCE, 1);
  static const int64_t long_lens[3] = {9, 100, 300}; /* decode-like, lock-step prefill, entry copy in place */
  for (int k = 0; k < n_isa; k++) {
    if (isas[k] == LINATTN_ISA_REFERENCE) continue;
    linattn_context* ctxs[2] = {tk_context_create(isas[k], 1), tk_context_create(isas[k], 2)};
    for (int li = 0; li < 3; li++)
      for (int where = 0; where < 8; where++)
        for (int di = 0; di < 2; di++)
          for (int in_place = 0; in_place < 2; in_place++) {
            if (in_place && long_lens[li] < 256) continue; /* as LinearAttention: in place, from 256 tokens */
            gcase c = {.B = 2, .lens = {long_lens[li], 5}, .Hq = 2, .grp = 2, .dk = 16, .dv = 20,
                       .rule = LINATTN_UPDATE_GATED_DELTA, .gate = LINATTN_GDN_GATE_SOFTPLUS, .beta_sigmoid = 1,
                       .l2 = 1, .cap = 3, .state_mode = in_place ? 2 : 1,
                       .dt = di ? LINATTN_DTYPE_BF16 : LINATTN_DTYPE_F32, .gdt = LINATTN_DTYPE_F32};
            if (where == 4) c.gate = LINATTN_GDN_GATE_NONE;
            if (where == 5 || where == 6) c.l2 = 0;
            if (where == 6) c.rule = LINATTN_UPDATE_LINEAR, c.gate = LINATTN_GDN_GATE_NONE;
            gdata d;
            make_data(r, &c, &d);
            d.capc[0] = d.capc[1] = 3;
            poison_inputs(r, &c, &d, where, 0);
            if (!in_place) poison_inputs(r, &c, &d, where, 1); /* a short request in place keeps the fast result */
            gtensors t;
            tensors(&c, &d, &t);
            const int64_t no = d.T * d.Hv * c.dv, ns = c.B * d.Hv * c.dv * c.dk, nu = c.B * d.su_row;
            const size_t osz = (size_t)no * tk_dtype_size(c.dt);
            float* s0 = xcalloc((size_t)ns, 4);
            memcpy(s0, d.s0x, (size_t)ns * 4);
            void* eo = xcalloc((size_t)no, tk_dtype_size(c.dt));
            float *es = xcalloc((size_t)ns, 4), *eu = xcalloc((size_t)nu, 4);
            tk_context("non-finite %s T=%lld where=%d dt=%s in_place=%d", linattn_isa_name(isas[k]), (long long)d.T,
                       where, tk_dtype_str(c.dt), in_place);
            if (!tk_check(call(ref, &c, &d, &t) == LINATTN_SUCCESS, "reference: %s", linattn_last_error())) goto next;
            memcpy(eo, d.ox, osz);
            memcpy(es, in_place ? d.s0x : d.finx, (size_t)ns * 4);
            memcpy(eu, d.sux, (size_t)nu * 4);
            for (int run = 0; run < 2; run++) { /* 1 and 2 threads */
              memcpy(d.s0x, s0, (size_t)ns * 4);
              memset(d.ox, 0xff, osz);
              memset(d.finx, 0xff, (size_t)ns * 4);
              memset(d.sux, 0xff, (size_t)nu * 4);
              if (!tk_check(call(ctxs[run], &c, &d, &t) == LINATTN_SUCCESS, "status: %s", linattn_last_error())) continue;
              const float* fs = in_place ? d.s0x : d.finx;
              int64_t bad[3] = {0, 0, 0}, first[3] = {-1, -1, -1};
              for (int64_t i = 0; i < no; i++)
                if (!same_class(get_value(d.ox, c.dt, i), get_value(eo, c.dt, i)) && bad[0]++ == 0) first[0] = i;
              for (int64_t i = 0; i < ns; i++)
                if (!same_class(fs[i], es[i]) && bad[1]++ == 0) first[1] = i;
              for (int64_t i = 0; i < nu; i++)
                if (!same_class(d.sux[i], eu[i]) && bad[2]++ == 0) first[2] = i;
              tk_check(bad[0] == 0, "%d threads: %lld outputs differ from the reference ISA in NaN/inf/value, first #%lld: %g vs %g",
                       run + 1, (long long)bad[0], (long long)first[0], first[0] >= 0 ? get_value(d.ox, c.dt, first[0]) : 0.0,
                       first[0] >= 0 ? get_value(eo, c.dt, first[0]) : 0.0);
              tk_check(bad[1] == 0, "%d threads: %lld final_state elements differ, first #%lld: %g vs %g", run + 1,
                       (long long)bad[1], (long long)first[1], first[1] >= 0 ? fs[first[1]] : 0.0,
                       first[1] >= 0 ? es[first[1]] : 0.0);
              tk_check(bad[2] == 0, "%d threads: %lld state_update elements differ, first #%lld: %g vs %g", run + 1,
                       (long long)bad[2], (long long)first[2], first[2] >= 0 ? d.sux[first[2]] : 0.0,
                       first[2] >= 0 ? eu[first[2]] : 0.0);
            }
          next:
            free(s0), free(eo), free(es), free(eu);
            free_data(&d);
          }
    linattn_context_destroy(ctxs[0]);
    linattn_context_destroy(ctxs[1]);
  }
  linattn_context_destroy(ref);
}

/* 7. la.fold_head_decay: prefill with a per-head gate keeps k and scale q in the tile and the
 * decay scalars scale the sums and u (other rounding). On the AVX-512 family with the field on
 * and off: against the float64 oracle (check_case: outputs poisoned, every element), mild gates
 * (segments span the tile) and strong ones (a_log + 3: the decay product leaves the fold range
 * within a few tokens, segments end mid-tile), ragged requests of 203 / 50 / 9 tokens
 * (lock-step, one pass, one-token sweeps); 1 and 2 threads and two calls the same bits; on and
 * off other bits where the fold applies (per-head gate, no capture: shows it ran) and the same
 * bits where it does not (per-key decay; every request capturing). */
static int fold_run(linattn_isa isa, int fold, int threads, const gcase* c, gdata* d, const gtensors* t, char* dst) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = threads;
  o.isa = isa;
  linattn_context* ctx;
  if (linattn_context_create(&o, &ctx)) return 0;
  linattn_tuning tu = *linattn_tuning_by_name("intel-avx512");
  tu.la.fold_head_decay = fold;
  ctx->tuning = &tu;
  const size_t no = (size_t)(d->T * d->Hv * c->dv) * tk_dtype_size(c->dt), ns = (size_t)(c->B * d->Hv * c->dv * c->dk) * 4,
               nu = (size_t)(c->B * d->su_row) * 4;
  float* fin = c->state_mode == 2 ? d->s0x : d->finx;
  memset(d->ox, 0xff, no), memset(d->sux, 0xff, nu);
  if (c->state_mode != 2) memset(d->finx, 0xff, ns);
  tk_check(call(ctx, c, d, t) == LINATTN_SUCCESS, "status: %s", linattn_last_error());
  memcpy(dst, d->ox, no), memcpy(dst + no, fin, ns), memcpy(dst + no + ns, d->sux, nu);
  linattn_context_destroy(ctx);
  return 1;
}

static void check_fold(tk_rng* r) {
  const linattn_isa isa = LINATTN_ISA_AVX512;
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 1;
  o.isa = isa;
  linattn_context* ctx[2];
  if (linattn_context_create(&o, &ctx[0])) {
    tk_note("fold: no AVX-512 here, skipped");
    return;
  }
  if (linattn_context_create(&o, &ctx[1])) tk_fatal("context: %s", linattn_last_error());
  linattn_tuning tu[2] = {*linattn_tuning_by_name("intel-avx512"), *linattn_tuning_by_name("intel-avx512")};
  tu[0].la.fold_head_decay = 0;
  tu[1].la.fold_head_decay = 1;
  ctx[0]->tuning = &tu[0];
  ctx[1]->tuning = &tu[1];
  int folded = 0;
  for (int kind = 0; kind < 4; kind++) /* 0, 1 per-head gate (mild, strong); 2 per-key; 3 capture */
    for (int di = 0; di < 2; di++) {
      const linattn_dtype dt = di ? LINATTN_DTYPE_BF16 : LINATTN_DTYPE_F32;
      gcase c = {.B = 3, .lens = {203, 50, 9}, .Hq = 2, .grp = 2, .dk = 64, .dv = 48, .rule = LINATTN_UPDATE_GATED_DELTA,
                 .gate = LINATTN_GDN_GATE_SOFTPLUS, .beta_sigmoid = 1, .l2 = 1, .per_key = kind == 2,
                 .cap = kind == 3 ? 4 : 0, .state_mode = 1 + di, .dt = dt, .gdt = LINATTN_DTYPE_F32,
                 .al_off = kind == 1 ? 3.0 : 0.0};
      if (di && kind == 0) c.rule = LINATTN_UPDATE_GATED, c.dk = 128, c.dv = 128, c.Hq = 1;
      for (int f = 0; f < 2; f++) check_case(ctx[f], f ? "avx512 fold" : "avx512 no fold", &c, r);
      gdata d;
      make_data(r, &c, &d);
      for (int b = 0; b < 3; b++) d.capc[b] = kind == 3 ? 2 + b : -1;
      gtensors t;
      tensors(&c, &d, &t);
      const size_t n = (size_t)(d.T * d.Hv * c.dv) * tk_dtype_size(dt) + (size_t)(c.B * d.Hv * c.dv * c.dk) * 4 +
                       (size_t)(c.B * d.su_row) * 4;
      char *on1 = xcalloc(n, 1), *on2 = xcalloc(n, 1), *on1b = xcalloc(n, 1), *off = xcalloc(n, 1);
      float* s0 = xcalloc((size_t)(c.B * d.Hv * c.dv * c.dk), 4);
      memcpy(s0, d.s0x, (size_t)(c.B * d.Hv * c.dv * c.dk) * 4); /* in place (state_mode 2): each run from s0 */
      char* outs[4] = {on1, on2, on1b, off};
      const int folds[4] = {1, 1, 1, 0}, threads[4] = {1, 2, 1, 1};
      tk_context("fold kind %d dt %s", kind, tk_dtype_str(dt));
      for (int i = 0; i < 4; i++) {
        memcpy(d.s0x, s0, (size_t)(c.B * d.Hv * c.dv * c.dk) * 4);
        if (!fold_run(isa, folds[i], threads[i], &c, &d, &t, outs[i])) tk_fatal("context: %s", linattn_last_error());
      }
      tk_check(!memcmp(on1, on2, n), "fold on: 1 and 2 threads differ");
      tk_check(!memcmp(on1, on1b, n), "fold on: two calls differ");
      /* A strong gate (kind 1) leaves a state made of the last few tokens, and bf16 output hides
       * the small differences: there fold on and off can give the same bits (1 seed in ~60), so
       * that case counts only for its accuracy (check_case). */
      if (kind == 0 || (kind == 1 && !di)) folded += memcmp(on1, off, n) != 0;
      else if (kind >= 2) tk_check(!memcmp(on1, off, n), "fold on and off differ where the fold does not apply");
      free(on1), free(on2), free(on1b), free(off), free(s0);
      free_data(&d);
    }
  tk_check(folded == 3, "fold on and off gave other bits in %d of 3 per-head cases (the fold did not run)", folded);
  linattn_context_destroy(ctx[0]);
  linattn_context_destroy(ctx[1]);
}

int main(void) {
  tk_begin("test_gated_delta_net");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  const int cases = tk_case_count(150, 25);
  linattn_isa isas[8];
  const int n_isa = tk_available_isas(isas, 8);
  for (int i = 0; i < n_isa; i++) {
    const linattn_isa isa = isas[i];
    linattn_context_options o;
    linattn_context_options_init(&o);
    o.num_threads = 1;
    o.isa = isa;
    linattn_context* ctx;
    if (linattn_context_create(&o, &ctx)) tk_fatal("context: %s", linattn_last_error());
    for (int n = 0; n < cases; n++) {
      gcase c;
      random_case(&r, &c);
      check_case(ctx, linattn_isa_name(isa), &c, &r);
    }
    /* d_v = 0: no value columns, but the capture still holds the decay factors and the keys
     * (found by fuzz_gated_delta_net: no unit ran, and both stayed 0) */
    for (int rule = 1; rule <= 4; rule++) {
      gcase z = {.B = 2, .lens = {5, 3}, .Hq = 1, .grp = 2, .dk = 16, .dv = 0, .rule = (linattn_update_rule)rule,
                 .gate = gated((linattn_update_rule)rule) ? LINATTN_GDN_GATE_SOFTPLUS : LINATTN_GDN_GATE_NONE,
                 .per_key = rule == 2, .l2 = 1, .cap = 4, .state_mode = rule % 3, .dt = LINATTN_DTYPE_BF16,
                 .gdt = LINATTN_DTYPE_F32};
      check_case(ctx, linattn_isa_name(isa), &z, &r);
    }
    /* qk_l2_norm_eps: q and k rows of |x|^2 ~ 1.6e-7, where fla's 1e-6, ORT's 1e-12 and 0 give
     * different norms (and outputs several times apart) */
    static const float epss[3] = {1e-12f, 1e-6f, 0.0f};
    for (int e = 0; e < 3; e++) {
      gcase ce = {.B = 2, .lens = {70, 3}, .Hq = 2, .grp = 2, .dk = 16, .dv = 24, .rule = LINATTN_UPDATE_GATED_DELTA,
                  .gate = LINATTN_GDN_GATE_SOFTPLUS, .beta_sigmoid = 1, .l2 = 1, .cap = 2, .state_mode = 1,
                  .dt = LINATTN_DTYPE_F32, .gdt = LINATTN_DTYPE_F32, .has_eps = 1, .eps = epss[e], .qk_scale = 1e-4};
      check_case(ctx, linattn_isa_name(isa), &ce, &r);
    }
    if (isa == LINATTN_ISA_REFERENCE) {
      check_bad_input(ctx, &r);
      check_replay(ctx, &r);
    }
    linattn_context_destroy(ctx);
  }
  check_threads(&r);
  check_infer_shapes();
  check_non_finite(&r);
  check_fold(&r);
  return tk_finish();
}
