/*
 * LinearAttention micro-kernels, unit by unit: every fused family of the kernel registry
 * (src/kernels/registry.inc) that this build and CPU run is called directly through its
 * la_kernel.run on la_units built here, and compared with the reference kernel (src/ref) and
 * with the float64 oracle (tests/common).
 *
 * Axes (balanced samplers, seed printed): rule, decay kind, io dtype, GQA group size n_q
 * (1, 2, 3, 4, 8 and 12: more than one register group), d_k, unit width (tails), T around
 * tile boundaries (32) and 0, state in (absent / separate / in place), log-decay regime
 * (U(-1,0), 0, -20, half the key dims 0 and half -20, -1e-6, U(0,0.05) growing), beta regime
 * (U(0,1), 0, 1). Per case:
 *   - outputs and state_out poisoned with NaN (also their stride gaps and the scratch);
 *     every logical element must be written, no gap element touched, state_in untouched;
 *   - error vs the reference kernel and vs float64: err <= E (+ ulp_T(|ref|) for f16/bf16
 *     outputs, one rounding of an fp32 value that is within E), E = 3e-5 max(max|ref|,
 *     0.01 scale max|v|) + 64 u M, M the largest magnitude of the terms summed (the float64
 *     recurrence on absolute values, magnitudes(); see compare() for why). Normalised
 *     keys, beta in [0,1], decay <= 0: the recurrence is contractive and fp32 error vs float64
 *     stays near 1e-6 (docs algorithms.md 4.3);
 *   - bit-identity: the same unit split into column ranges (halves, 37 + rest, 64 + rest,
 *     3 + middle + 17)
 *     gives the same bits as one unit; in place == separate state; absent state == explicit
 *     zero state; f16/bf16 io: output == round_T(output of the f32-io call on the widened
 *     inputs), state identical (conversion happens in the tile, arithmetic is the same).
 * Closing line "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "oracle.h"
#include "testkit.h"

#define MAX_FAMILIES 16

typedef struct family {
  linattn_isa isa;
  const la_kernel* k;
} family;

/* The fused families this build and CPU run: every family of the kernel registry but the
 * reference (the oracle here). */
static int find_families(family* out, int max) {
  int n = 0;
  for (int isa = LINATTN_ISA_REFERENCE + 1; isa <= linattn_isa_count() && n < max; isa++) {
    const kernel_table* kt = linattn_kernels_for_isa((linattn_isa)isa);
    if (kt) out[n++] = (family){kt->isa, kt->la};
  }
  return n;
}

/* ------------------------------------------------------------------ cases */

enum { ST_ABSENT, ST_SEPARATE, ST_INPLACE, ST_KINDS };
enum { G_MILD, G_ZERO, G_STRONG, G_MIXED, G_TINY, G_GROW, G_KINDS };
enum { B_UNIFORM, B_ZERO, B_ONE, B_KINDS };
static const char* st_names[] = {"absent", "separate", "inplace"};
static const char* g_names[] = {"mild", "zero", "-20", "mixed", "-1e-6", "U(0,0.05)"};
static const char* b_names[] = {"U(0,1)", "0", "1"};
static const char* rule_names[] = {"?", "linear", "gated", "delta", "gated_delta"};

typedef struct la_case {
  linattn_update_rule rule;
  la_decay_kind decay_kind;
  linattn_dtype dt;
  int nq;
  int64_t dk, nc, T;
  int st, gm, bm;
  double scale; /* float64 as the operator layer resolves it (1/sqrt(d_k) or a float attribute) */
} la_case;

/* One unit's inputs: io arrays with padded strides plus the double values they hold. */
typedef struct la_inputs {
  la_case c;
  void *q, *k, *v, *decay, *beta;
  int64_t qts, qhs, kts, vts, dts, bts;
  int64_t ots, ohs, ld, out_elems;
  float* state_in; /* d_k x ld (NULL when absent) */
  double *dq, *dkey, *dv, *ddecay, *dbeta, *dstate; /* packed, oracle layouts */
  double mag_out, mag_state; /* largest magnitude of the terms summed into an output / the state */
} la_inputs;

static size_t esz(linattn_dtype dt) { return tk_dtype_size(dt); }

static void* io_alloc(linattn_dtype dt, int64_t n) { return tk_xcalloc((size_t)(n > 0 ? n : 1), esz(dt)); }

static void make_inputs(tk_rng* r, const la_case* c, la_inputs* in) {
  memset(in, 0, sizeof *in);
  in->c = *c;
  const int64_t T = c->T, dk = c->dk, nc = c->nc, nq = c->nq;
  const linattn_dtype dt = c->dt;
  in->qhs = dk + tk_below(r, 3);
  in->qts = nq * in->qhs + tk_below(r, 5);
  in->kts = dk + tk_below(r, 4);
  in->vts = nc + tk_below(r, 4);
  in->dts = (c->decay_kind == LA_DECAY_PER_KEY ? dk : 1) + tk_below(r, 3);
  in->bts = 1 + tk_below(r, 3);
  in->ohs = nc + tk_below(r, 3);
  in->ots = nq * in->ohs + tk_below(r, 4);
  in->ld = nc + tk_below(r, 2) * (1 + tk_below(r, 20));
  in->out_elems = T * in->ots + 8;
  in->q = io_alloc(dt, T * in->qts + 8);
  in->k = io_alloc(dt, T * in->kts + 8);
  in->v = io_alloc(dt, T * in->vts + 8);
  in->decay = io_alloc(dt, T * in->dts + 8);
  in->beta = io_alloc(dt, T * in->bts + 8);
  in->dq = tk_dalloc(T * nq * dk + 1);
  in->dkey = tk_dalloc(T * dk + 1);
  in->dv = tk_dalloc(T * nc + 1);
  in->ddecay = tk_dalloc(T * dk + 1);
  in->dbeta = tk_dalloc(T + 1);
  in->dstate = tk_dalloc(dk * nc + 1);

  for (int64_t t = 0; t < T; t++) {
    /* keys: unit direction times a norm in [0.7, 1.3] (beta |k|^2 <= 2 keeps delta contractive) */
    double* kd = in->dkey + t * dk;
    tk_fill_normal(r, kd, dk, 1.0);
    tk_normalise_rows(kd, 1, dk);
    const double kn = tk_uniform_range(r, 0.7, 1.3);
    for (int64_t i = 0; i < dk; i++) kd[i] = tk_store(in->k, t * in->kts + i, dt, kd[i] * kn);
    for (int64_t h = 0; h < nq; h++) {
      double* qd = in->dq + (t * nq + h) * dk;
      tk_fill_normal(r, qd, dk, 1.0);
      tk_normalise_rows(qd, 1, dk);
      for (int64_t i = 0; i < dk; i++) qd[i] = tk_store(in->q, t * in->qts + h * in->qhs + i, dt, qd[i]);
    }
    for (int64_t j = 0; j < nc; j++) in->dv[t * nc + j] = tk_store(in->v, t * in->vts + j, dt, tk_normal(r));
    const int64_t nd = c->decay_kind == LA_DECAY_PER_KEY ? dk : 1;
    for (int64_t i = 0; i < nd; i++) {
      double g = 0;
      switch (c->gm) {
        case G_MILD: g = tk_uniform_range(r, -1.0, 0.0); break;
        case G_ZERO: g = 0.0; break;
        case G_STRONG: g = -20.0; break;
        case G_MIXED: g = (nd > 1 ? (i & 1) : tk_below(r, 2)) ? -20.0 : 0.0; break;
        case G_TINY: g = -1e-6; break;
        case G_GROW: g = tk_uniform_range(r, 0.0, 0.05); break; /* a > 1: the op allows it */
      }
      in->ddecay[t * nd + i] = tk_store(in->decay, t * in->dts + i, dt, g);
    }
    double b = c->bm == B_ZERO ? 0.0 : c->bm == B_ONE ? 1.0 : tk_uniform(r);
    in->dbeta[t] = tk_store(in->beta, t * in->bts, dt, b);
  }
  if (c->st != ST_ABSENT) {
    in->state_in = tk_aligned_alloc(64, sizeof(float) * (size_t)(dk * in->ld + 16));
    for (int64_t i = 0; i < dk * in->ld + 16; i++) in->state_in[i] = NAN;
    for (int64_t i = 0; i < dk; i++)
      for (int64_t j = 0; j < nc; j++) {
        const float s = (float)(0.5 * tk_normal(r));
        in->state_in[i * in->ld + j] = s;
        in->dstate[i * nc + j] = s;
      }
  }
}

static void free_inputs(la_inputs* in) {
  free(in->q); free(in->k); free(in->v); free(in->decay); free(in->beta);
  free(in->dq); free(in->dkey); free(in->dv); free(in->ddecay); free(in->dbeta); free(in->dstate);
  if (in->state_in) tk_aligned_free(in->state_in);
}

static int g_plain_cases; /* cases whose plain-staging comparison applied */
static int g_fold_cases;  /* prefill cases with a per-head decay that ran the folded staging */
static int g_split_cases; /* decodes without the delta rule compared with their split sweeps */

static la_params make_params(const la_case* c) {
  la_params p;
  memset(&p, 0, sizeof p);
  p.gated = c->rule == LINATTN_UPDATE_GATED || c->rule == LINATTN_UPDATE_GATED_DELTA;
  p.delta = c->rule == LINATTN_UPDATE_DELTA || c->rule == LINATTN_UPDATE_GATED_DELTA;
  p.decay_kind = p.gated ? c->decay_kind : LA_DECAY_NONE;
  p.beta_kind = p.delta ? LA_BETA_PER_HEAD : LA_BETA_NONE;
  p.io_dtype = c->dt;
  p.T = c->T;
  p.d_k = c->dk;
  p.d_v = c->nc;
  p.scale = (float)c->scale;
  p.scale_f64 = c->scale;
  return p;
}

/* Result of one run: output in io dtype (with stride gaps) and the fp32 state. */
typedef struct la_result {
  void* out;
  float* state;       /* d_k x ld */
  float* state_in_copy;
} la_result;

static void result_alloc(const la_inputs* in, la_result* res) {
  const linattn_dtype dt = in->c.dt;
  res->out = io_alloc(dt, in->out_elems);
  const uint32_t pb = tk_poison_bits(dt);
  for (int64_t i = 0; i < in->out_elems; i++) {
    if (dt == LINATTN_DTYPE_F32) ((uint32_t*)res->out)[i] = pb;
    else ((uint16_t*)res->out)[i] = (uint16_t)pb;
  }
  res->state = tk_aligned_alloc(64, sizeof(float) * (size_t)(in->c.dk * in->ld + 16));
  for (int64_t i = 0; i < in->c.dk * in->ld + 16; i++) res->state[i] = NAN;
  res->state_in_copy = NULL;
}

static void result_free(la_result* res) {
  free(res->out);
  tk_aligned_free(res->state);
  free(res->state_in_copy);
}

/* Runs kernel k over the unit's columns split at the given boundaries (cuts ascending, last =
 * nc). st: state mode; zero_state: pass an explicit all-zero state instead of absent. */
static int g_chain_primed; /* decode chain (la_kernel.run_chain): units whose first panel the previous one summed */
static int g_half_chain_primed; /* the same for 16-bit states (la_params.decode_half_chain) */
static int g_pair_one_pass_cases; /* AVX-512 decodes without the delta rule whose bf16 state can run in pairs */

/* chain: the units run by k->run_chain, each set up (and its first panel summed) during the
 * previous one, two scratches alternating as the operator does (la_run_chain) */
static void run_units_as(const la_kernel* k, const la_params* p, const la_inputs* in, int st, const int64_t* cuts,
                         int ncuts, la_result* res, int chain) {
  const la_case* c = &in->c;
  const linattn_dtype dt = c->dt;
  /* a 16-bit state (p->state_dtype): state_in rounded to it by src/convert.h; res->state holds
   * its rows of 16-bit elements at the same element stride ld */
  const bool half = p->state_dtype == LINATTN_DTYPE_F16 || p->state_dtype == LINATTN_DTYPE_BF16;
  uint16_t* hin = NULL;
  uint16_t* hres = (uint16_t*)(void*)res->state;
  if (half && st != ST_ABSENT) {
    hin = tk_aligned_alloc(64, sizeof(uint16_t) * (size_t)(c->dk * in->ld + 16));
    for (int64_t i = 0; i < c->dk * in->ld; i++) linattn_store_f32(hin, i, p->state_dtype, in->state_in[i]);
  }
  if (st == ST_INPLACE) {
    for (int64_t i = 0; i < c->dk; i++)
      if (half) memcpy(hres + i * in->ld, hin + i * in->ld, sizeof(uint16_t) * (size_t)c->nc);
      else memcpy(res->state + i * in->ld, in->state_in + i * in->ld, sizeof(float) * (size_t)c->nc);
  }
  la_unit units[4];
  unsigned char* scr[2] = {NULL, NULL};
  int primed = 0;
  int64_t c0 = 0;
  for (int s = 0; s < ncuts; s++) {
    const int64_t c1 = cuts[s];
    la_unit u;
    memset(&u, 0, sizeof u);
    u.q = in->q;
    u.q_token_stride = in->qts;
    u.q_head_stride = in->qhs;
    u.n_q = c->nq;
    u.k = in->k;
    u.k_token_stride = in->kts;
    u.v = (const char*)in->v + (size_t)c0 * esz(dt);
    u.v_token_stride = in->vts;
    if (p->gated) {
      u.decay = in->decay;
      u.decay_token_stride = in->dts;
    }
    if (p->delta) {
      u.beta = in->beta;
      u.beta_token_stride = in->bts;
    }
    u.out = (char*)res->out + (size_t)c0 * esz(dt);
    u.out_token_stride = in->ots;
    u.out_head_stride = in->ohs;
    u.state_in = st == ST_ABSENT ? NULL : st == ST_INPLACE ? res->state + c0 : in->state_in + c0;
    u.state_out = res->state + c0;
    if (half) {
      u.state_in_h = st == ST_ABSENT ? NULL : st == ST_INPLACE ? hres + c0 : hin + c0;
      u.state_out_h = hres + c0;
    }
    u.ld_state = in->ld;
    u.col0 = c0;
    u.ncols = c1 - c0;
    const size_t sb = k->scratch_bytes(p, u.ncols);
    if (chain) {
      if (s < 2) { /* sized for the whole head: serves every block */
        const size_t sw = k->scratch_bytes(p, c->nc);
        scr[s] = tk_aligned_alloc(64, sw + 64);
        memset(scr[s], 0xff, sw + 64); /* NaN pattern: reading unwritten scratch shows */
      }
      units[s] = u;
      c0 = c1;
      continue;
    }
    unsigned char* scratch = tk_aligned_alloc(64, sb + 64);
    memset(scratch, 0xff, sb + 64); /* NaN pattern: reading unwritten scratch shows */
    k->run(p, &u, scratch);
    tk_aligned_free(scratch);
    c0 = c1;
  }
  for (int s = 0; chain && s < ncuts; s++) {
    const int i = s & 1, more = s + 1 < ncuts;
    primed = k->run_chain(p, &units[s], scr[i], primed, more ? &units[s + 1] : NULL, more ? scr[i ^ 1] : NULL);
    if (p->state_dtype == LINATTN_DTYPE_F16 || p->state_dtype == LINATTN_DTYPE_BF16) g_half_chain_primed += primed;
    else g_chain_primed += primed;
  }
  for (int i = 0; i < 2; i++)
    if (scr[i]) tk_aligned_free(scr[i]);
  if (hin) tk_aligned_free(hin);
}

static void run_units(const la_kernel* k, const la_params* p, const la_inputs* in, int st, const int64_t* cuts,
                      int ncuts, la_result* res) {
  run_units_as(k, p, in, st, cuts, ncuts, res, 0);
}

static double out_at(const la_inputs* in, const void* out, int64_t t, int64_t h, int64_t j) {
  return tk_load(out, t * in->ots + h * in->ohs + j, in->c.dt);
}

/* Magnitude oracle (float64): the recurrence run on the absolute values of the terms each
 * state element and output sums, M = a M + |k| m_u^T with m_u = |v| (or beta (|v| + |k|^T |S|)
 * with the delta rule, |S| the exact decayed state), output magnitude |scale| |q|^T M. The
 * rounding error of any summation order is a multiple of u times these sums, not of the
 * result, which can cancel to far below its terms (d_k = 1: s0 + sum k_t v_t close to 0).
 * With the delta rule the error carried from earlier tokens goes through the contractive
 * (I - beta k k^T), so it is bounded by the decayed magnitude, not by a growing |k|^T M. */
static void magnitudes(const la_params* p, la_inputs* in) {
  const la_case* c = &in->c;
  const int64_t T = c->T, dk = c->dk, nc = c->nc, nq = c->nq;
  double* S = tk_dalloc(dk * nc + 1);
  double* M = tk_dalloc(dk * nc + 1);
  double* mu = tk_dalloc(nc + 1);
  double* u = tk_dalloc(nc + 1);
  for (int64_t i = 0; i < dk * nc; i++) {
    S[i] = c->st == ST_ABSENT ? 0.0 : in->dstate[i];
    M[i] = fabs(S[i]);
  }
  double mo = 0;
  for (int64_t t = 0; t < T; t++) {
    const double* k = in->dkey + t * dk;
    if (p->gated)
      for (int64_t i = 0; i < dk; i++) {
        const double a = exp(in->ddecay[t * (p->decay_kind == LA_DECAY_PER_KEY ? dk : 1) +
                                        (p->decay_kind == LA_DECAY_PER_KEY ? i : 0)]);
        for (int64_t j = 0; j < nc; j++) S[i * nc + j] *= a, M[i * nc + j] *= a;
      }
    for (int64_t j = 0; j < nc; j++) {
      const double v = in->dv[t * nc + j];
      u[j] = v;
      mu[j] = fabs(v);
      if (p->delta) {
        double r = 0, mr = 0;
        for (int64_t i = 0; i < dk; i++) r += k[i] * S[i * nc + j], mr += fabs(k[i] * S[i * nc + j]);
        u[j] = in->dbeta[t] * (v - r);
        mu[j] = in->dbeta[t] * (fabs(v) + mr);
      }
    }
    for (int64_t i = 0; i < dk; i++)
      for (int64_t j = 0; j < nc; j++) S[i * nc + j] += k[i] * u[j], M[i * nc + j] += fabs(k[i]) * mu[j];
    for (int64_t h = 0; h < nq; h++) {
      const double* q = in->dq + (t * nq + h) * dk;
      for (int64_t j = 0; j < nc; j++) {
        double m = 0;
        for (int64_t i = 0; i < dk; i++) m += fabs(q[i]) * M[i * nc + j];
        mo = fmax(mo, fabs(c->scale) * m);
      }
    }
  }
  double ms = 0;
  for (int64_t i = 0; i < dk * nc; i++) ms = fmax(ms, M[i]);
  in->mag_out = mo;
  in->mag_state = ms;
  free(S); free(M); free(mu); free(u);
}

/* Worst relative error (err / max|oracle|) of fp32-io outputs vs float64, per family, for the
 * closing notes. */
static double g_worst_f64[MAX_FAMILIES];
static int g_fam_index;

/* Checks a family result against ref (reference kernel) and the oracle values. */
static void compare(const char* what, const la_inputs* in, const la_result* got, const double* want_out,
                    const double* want_state, bool want_is_f64) {
  const la_case* c = &in->c;
  const int64_t T = c->T, nq = c->nq, nc = c->nc, dk = c->dk;
  double mo = 0, ms = 0;
  for (int64_t i = 0; i < T * nq * nc; i++) mo = fmax(mo, fabs(want_out[i]));
  for (int64_t i = 0; i < dk * nc; i++) ms = fmax(ms, fabs(want_state[i]));
  /* Relative to the largest result, with a floor at the size of one token's contribution
   * (scale * max|v|, keys and queries being unit vectors): outputs that cancel to far below
   * their terms (strong decay, beta 0) carry the absolute fp32 error of those terms. 3e-5 leaves
   * room for the growing-decay regime (log-decay up to +0.05 per token), where the fused
   * kernels' reassociation is amplified with T. Plus 64 u times the largest magnitude of the
   * summed terms (magnitudes()): a result that cancels (a state element s0 + sum k v close to
   * 0) carries the rounding of its terms, which max|ref| does not see. */
  double vmax = 0;
  for (int64_t i = 0; i < T * nc; i++) vmax = fmax(vmax, fabs(in->dv[i]));
  const double floor_o = 1e-2 * fabs(c->scale) * vmax, u64 = 64 * 0x1p-24;
  const double Eo = 3e-5 * fmax(mo, floor_o) + u64 * in->mag_out + 1e-30, Es = 3e-5 * ms + u64 * in->mag_state + 1e-30;
  int64_t bad = 0, unwritten = 0;
  double worst = 0;
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < nq; h++)
      for (int64_t j = 0; j < nc; j++) {
        const double g = out_at(in, got->out, t, h, j), w = want_out[(t * nq + h) * nc + j];
        if (isnan(g)) { unwritten++; continue; }
        double tol = Eo + (c->dt == LINATTN_DTYPE_F32 ? 0.0 : tk_ulp(w, c->dt));
        if (!want_is_f64 && c->dt != LINATTN_DTYPE_F32) tol += tk_ulp(w, c->dt); /* both rounded */
        const double e = fabs(g - w);
        if (!(e <= tol)) bad++;
        if (e / (mo + 1e-30) > worst) worst = e / (mo + 1e-30);
      }
  if (want_is_f64 && c->dt == LINATTN_DTYPE_F32 && worst > g_worst_f64[g_fam_index]) g_worst_f64[g_fam_index] = worst;
  tk_check(unwritten == 0, "%s: %lld output elements not written (NaN)", what, (long long)unwritten);
  tk_check(bad == 0, "%s: %lld output elements off, worst err %.3g of max|ref| %.3g", what, (long long)bad, worst, mo);
  int64_t sbad = 0;
  double sworst = 0;
  for (int64_t i = 0; i < dk; i++)
    for (int64_t j = 0; j < nc; j++) {
      const double g = got->state[i * in->ld + j], w = want_state[i * nc + j];
      const double e = fabs(g - w);
      if (!(e <= Es)) sbad++;
      if (e / (ms + 1e-30) > sworst) sworst = e / (ms + 1e-30);
    }
  tk_check(sbad == 0, "%s: %lld state elements off, worst err %.3g of max %.3g", what, (long long)sbad, sworst, ms);
}

/* Gaps of the output (stride padding) and state rows (ld > nc) must keep the poison. */
static void check_gaps(const char* what, const la_inputs* in, const la_result* got) {
  const la_case* c = &in->c;
  const uint32_t pb = tk_poison_bits(c->dt);
  int64_t touched = 0;
  for (int64_t i = 0; i < in->out_elems; i++) {
    const int64_t t = i / in->ots, r = i % in->ots, h = r / in->ohs, j = r % in->ohs;
    const bool logical = t < c->T && h < c->nq && j < c->nc;
    if (logical) continue;
    const uint32_t b = c->dt == LINATTN_DTYPE_F32 ? ((const uint32_t*)got->out)[i] : ((const uint16_t*)got->out)[i];
    if (b != pb) touched++;
  }
  for (int64_t i = 0; i < c->dk * in->ld + 16; i++) {
    const bool logical = i < c->dk * in->ld && i % in->ld < c->nc;
    if (!logical && !isnan(got->state[i])) touched++;
  }
  tk_check(touched == 0, "%s: %lld elements outside the unit written", what, (long long)touched);
}

static int64_t bits_differ_out(const la_inputs* in, const void* a, const void* b, int64_t* first) {
  const la_case* c = &in->c;
  int64_t n = 0;
  *first = -1;
  for (int64_t t = 0; t < c->T; t++)
    for (int64_t h = 0; h < c->nq; h++)
      for (int64_t j = 0; j < c->nc; j++) {
        const int64_t o = t * in->ots + h * in->ohs + j;
        const bool d = c->dt == LINATTN_DTYPE_F32 ? ((const uint32_t*)a)[o] != ((const uint32_t*)b)[o]
                                                  : ((const uint16_t*)a)[o] != ((const uint16_t*)b)[o];
        if (d) {
          if (*first < 0) *first = (t * c->nq + h) * c->nc + j;
          n++;
        }
      }
  return n;
}

static int64_t bits_differ_state(const la_inputs* in, const float* a, const float* b) {
  int64_t n = 0;
  for (int64_t i = 0; i < in->c.dk; i++)
    n += memcmp(a + i * in->ld, b + i * in->ld, sizeof(float) * (size_t)in->c.nc) != 0;
  return n;
}

/* The same for states of 16-bit elements (run_units_as with a half state). */
static int64_t bits_differ_hstate(const la_inputs* in, const float* a, const float* b) {
  const uint16_t *ha = (const uint16_t*)(const void*)a, *hb = (const uint16_t*)(const void*)b;
  int64_t n = 0;
  for (int64_t i = 0; i < in->c.dk; i++)
    n += memcmp(ha + i * in->ld, hb + i * in->ld, sizeof(uint16_t) * (size_t)in->c.nc) != 0;
  return n;
}

/* ------------------------------------------------------------------ one case */

static void run_case(tk_rng* r, const family* fams, int nfam, const la_case* c) {
  la_inputs in;
  make_inputs(r, c, &in);
  const la_params p = make_params(c);
  magnitudes(&p, &in);
  const int64_t T = c->T, nq = c->nq, nc = c->nc, dk = c->dk;
  const int64_t whole[1] = {nc};

  /* reference kernel */
  la_result ref;
  result_alloc(&in, &ref);
  run_units(&linattn_la_reference, &p, &in, c->st, whole, 1, &ref);
  double* rout = tk_dalloc(T * nq * nc + 1);
  double* rstate = tk_dalloc(dk * nc + 1);
  for (int64_t t = 0; t < T; t++)
    for (int64_t h = 0; h < nq; h++)
      for (int64_t j = 0; j < nc; j++) rout[(t * nq + h) * nc + j] = out_at(&in, ref.out, t, h, j);
  for (int64_t i = 0; i < dk; i++)
    for (int64_t j = 0; j < nc; j++) rstate[i * nc + j] = ref.state[i * in.ld + j];

  /* float64 oracle: B = 1, H_kv = 1, H_q = n_q */
  double* oout = tk_dalloc(T * nq * nc + 1);
  double* ostate = tk_dalloc(dk * nc + 1);
  oracle_la o;
  memset(&o, 0, sizeof o);
  o.rule = c->rule;
  o.B = 1; o.T = T; o.Hq = nq; o.Hkv = 1; o.Nk = 1; o.dk = dk; o.dv = nc;
  o.scale = c->scale;
  o.decay_kind = p.gated ? (c->decay_kind == LA_DECAY_PER_KEY ? ORACLE_DECAY_PER_KEY : ORACLE_DECAY_PER_HEAD)
                         : ORACLE_DECAY_NONE;
  o.beta_kind = p.delta ? ORACLE_BETA_PER_HEAD : ORACLE_BETA_NONE;
  o.q = in.dq; o.k = in.dkey; o.v = in.dv;
  o.past = c->st == ST_ABSENT ? NULL : in.dstate;
  o.decay = p.gated ? in.ddecay : NULL;
  o.beta = p.delta ? in.dbeta : NULL;
  o.out = oout; o.state = ostate;
  oracle_linear_attention(&o);

  for (int f = 0; f < nfam; f++) {
    const la_kernel* k = fams[f].k;
    g_fam_index = f;
    char what[64];
    la_result got;
    result_alloc(&in, &got);
    run_units(k, &p, &in, c->st, whole, 1, &got);
    snprintf(what, sizeof what, "%s vs reference", k->name);
    compare(what, &in, &got, rout, rstate, false);
    snprintf(what, sizeof what, "%s vs float64", k->name);
    compare(what, &in, &got, oout, ostate, true);
    snprintf(what, sizeof what, "%s gaps", k->name);
    check_gaps(what, &in, &got);

    /* two tokens per sweep (la_tuning.sweep_tokens = 2, the intel-avx512 tuning; families
     * without two-token panels run one token per sweep): other summation order, same bounds */
    if (T > 1) {
      la_params p2 = p;
      p2.sweep_tokens = 2;
      la_result pr;
      result_alloc(&in, &pr);
      run_units(k, &p2, &in, c->st, whole, 1, &pr);
      snprintf(what, sizeof what, "%s 2-token vs reference", k->name);
      compare(what, &in, &pr, rout, rstate, false);
      snprintf(what, sizeof what, "%s 2-token vs float64", k->name);
      compare(what, &in, &pr, oout, ostate, true);
      snprintf(what, sizeof what, "%s 2-token gaps", k->name);
      check_gaps(what, &in, &pr);
      /* staging specialised for plain fp32 inputs (la_tuning.stage_plain): the bits of the
       * general staging, with one and two tokens per sweep */
      for (int sweep = 1; sweep <= 2; sweep++) {
        la_params pp = sweep == 1 ? p : p2;
        pp.stage_plain = 1;
        la_result sr;
        result_alloc(&in, &sr);
        run_units(k, &pp, &in, c->st, whole, 1, &sr);
        const la_result* ref = sweep == 1 ? &got : &pr;
        int64_t first;
        const int64_t nd = bits_differ_out(&in, ref->out, sr.out, &first);
        const int64_t ns = bits_differ_state(&in, ref->state, sr.state);
        tk_check(nd == 0 && ns == 0, "%s: plain staging (%d-token) differs: %lld outputs, %lld state rows", k->name,
                 sweep, (long long)nd, (long long)ns);
        result_free(&sr);
        /* with GatedDeltaNet's q/k L2 norm (la_stage_slot's PLAIN 3 case): the general staging's bits */
        la_params pl = pp;
        pl.qk_l2_norm = true;
        pl.l2_eps = LA_L2_NORM_EPS;
        la_result lg, lp;
        result_alloc(&in, &lg);
        result_alloc(&in, &lp);
        pl.stage_plain = 0;
        run_units(k, &pl, &in, c->st, whole, 1, &lg);
        pl.stage_plain = 1;
        run_units(k, &pl, &in, c->st, whole, 1, &lp);
        const int64_t nl = bits_differ_out(&in, lg.out, lp.out, &first);
        const int64_t nls = bits_differ_state(&in, lg.state, lp.state);
        tk_check(nl == 0 && nls == 0, "%s: plain staging with L2 norm (%d-token) differs: %lld outputs, %lld state rows",
                 k->name, sweep, (long long)nl, (long long)nls);
        result_free(&lg);
        result_free(&lp);
      }
      if (c->dt == LINATTN_DTYPE_F32 && dk % 16 == 0) g_plain_cases++;
      /* per-head decay folded out of the staged rows (la_tuning.fold_head_decay, two-token
       * sweeps): other rounding, the same bounds; with the general and the plain staging */
      for (int plain = 0; plain <= 1; plain++) {
        la_params pf = p2;
        pf.fold_head_decay = 1;
        pf.stage_plain = plain;
        la_result fr;
        result_alloc(&in, &fr);
        run_units(k, &pf, &in, c->st, whole, 1, &fr);
        snprintf(what, sizeof what, "%s fold%s vs reference", k->name, plain ? " plain" : "");
        compare(what, &in, &fr, rout, rstate, false);
        snprintf(what, sizeof what, "%s fold%s vs float64", k->name, plain ? " plain" : "");
        compare(what, &in, &fr, oout, ostate, true);
        snprintf(what, sizeof what, "%s fold%s gaps", k->name, plain ? " plain" : "");
        check_gaps(what, &in, &fr);
        result_free(&fr);
      }
      if (p.gated && c->decay_kind == LA_DECAY_PER_HEAD && T >= 8 && nq <= 2) g_fold_cases++;
      result_free(&pr);
    }
    if (c->st == ST_SEPARATE) {
      int64_t changed = 0;
      for (int64_t i = 0; i < dk; i++)
        for (int64_t j = 0; j < nc; j++) changed += in.state_in[i * in.ld + j] != (float)in.dstate[i * nc + j];
      tk_check(changed == 0, "%s: state_in modified (%lld elements)", k->name, (long long)changed);
    }

    /* decode into a separate state: non-temporal stores give the same bits as ordinary ones */
    if (T == 1 && c->st == ST_SEPARATE) {
      la_params ps = p;
      ps.stream_state = true;
      la_result sr;
      result_alloc(&in, &sr);
      run_units(k, &ps, &in, c->st, whole, 1, &sr);
      int64_t first;
      const int64_t nd = bits_differ_out(&in, got.out, sr.out, &first);
      const int64_t ns = bits_differ_state(&in, got.state, sr.state);
      tk_check(nd == 0 && ns == 0, "%s: streaming stores differ from ordinary ones: %lld outputs, %lld state rows",
               k->name, (long long)nd, (long long)ns);
      result_free(&sr);
    }

    /* decode panels capped at 2 or 4 vectors (la_tuning.decode_vectors), each update sweep
     * summing the next panel's p and s (la_tuning.decode_overlap); they apply in place (a
     * separate state, also with streaming stores, keeps the default panels): every column's
     * arithmetic is the same, so the bits of the default panels */
    /* Without the delta rule a decode reads each row once (la_decode_one_pass); with
     * la_params.decode_split the read and update sweeps stay apart: the same bits, under the
     * default panels and each panel configuration above. */
    /* la_params.decode_one_pass_prefetch (an L1 prefetch in the one pass of an fp32 state) on
     * and off under each of these: prefetches only, the same bits. */
    if (T == 1) {
      for (int cfg = -1; cfg < 6; cfg++)
        for (int v = 0; v < 4; v++) {
          const int split = v & 1, pf = v >> 1;
          if (cfg < 0 && split == 0 && pf == p.decode_one_pass_prefetch) continue; /* that is got */
          la_params pd = p;
          pd.decode_one_pass_prefetch = pf;
          if (cfg >= 0) {
            pd.decode_vectors = cfg & 1 ? 4 : 2;
            pd.decode_overlap = cfg >> 1 & 1;
            pd.stream_state = cfg >= 4;
          }
          pd.decode_split = split;
          if (pd.stream_state && c->st != ST_SEPARATE) continue;
          la_result dr;
          result_alloc(&in, &dr);
          run_units(k, &pd, &in, c->st, whole, 1, &dr);
          int64_t first;
          const int64_t nd = bits_differ_out(&in, got.out, dr.out, &first);
          const int64_t ns = bits_differ_state(&in, got.state, dr.state);
          tk_check(nd == 0 && ns == 0,
                   "%s: decode panels of %d vectors (overlap %d, streaming %d, split sweeps %d, one-pass prefetch %d) "
                   "differ: %lld outputs, %lld state rows",
                   k->name, pd.decode_vectors, pd.decode_overlap, (int)pd.stream_state, split, pf, (long long)nd,
                   (long long)ns);
          if (split && !pf && !p.delta) g_split_cases++;
          result_free(&dr);
        }
    }

    /* decode chain (la_kernel.run_chain, la_tuning.decode_chain): the column blocks of the head
     * as consecutive units, each unit's last update sweep summing the next one's first panel
     * (in place or from zeros, 2- and 4-vector panels with the overlap; separate states and
     * other widths run unchained): the bits of the whole unit */
    if (T == 1 && k->run_chain) {
      int64_t cuts[4][4];
      int nc_cuts[4], ncs = 0;
      cuts[ncs][0] = nc, nc_cuts[ncs++] = 1;
      if (nc >= 2) cuts[ncs][0] = nc / 2, cuts[ncs][1] = nc, nc_cuts[ncs++] = 2;
      if (nc > 64) cuts[ncs][0] = 64, cuts[ncs][1] = nc, nc_cuts[ncs++] = 2;
      if (nc > 96) cuts[ncs][0] = 32, cuts[ncs][1] = 64, cuts[ncs][2] = 96, cuts[ncs][3] = nc, nc_cuts[ncs++] = 4;
      for (int cfg = 0; cfg < 2; cfg++)
        for (int s = 0; s < ncs; s++) {
          la_params pc = p;
          pc.decode_vectors = cfg ? 4 : 2;
          pc.decode_overlap = 1;
          la_result cr;
          result_alloc(&in, &cr);
          run_units_as(k, &pc, &in, c->st, cuts[s], nc_cuts[s], &cr, 1);
          int64_t first;
          const int64_t nd = bits_differ_out(&in, got.out, cr.out, &first);
          const int64_t ns = bits_differ_state(&in, got.state, cr.state);
          tk_check(nd == 0 && ns == 0, "%s: decode chain of %d units (%d-vector panels) differs: %lld outputs, %lld state rows",
                   k->name, nc_cuts[s], pc.decode_vectors, (long long)nd, (long long)ns);
          result_free(&cr);
        }
    }

    /* decode chain of a 16-bit state (la_params.decode_half_chain; in place or from zeros, fp16
     * and bf16, with and without decode_half_convert's forms): the column blocks of the head as
     * chained units against the whole unit without the chain, outputs and state bit for bit (a
     * separate state runs unchained: compared too) */
    if (T == 1 && k->run_chain) {
      int64_t cuts[5][4];
      int nc_cuts[5], ncs = 0;
      cuts[ncs][0] = nc, nc_cuts[ncs++] = 1;
      if (nc >= 2) cuts[ncs][0] = nc / 2, cuts[ncs][1] = nc, nc_cuts[ncs++] = 2;
      if (nc > 64) cuts[ncs][0] = 64, cuts[ncs][1] = nc, nc_cuts[ncs++] = 2;
      if (nc > 128) cuts[ncs][0] = 128, cuts[ncs][1] = nc, nc_cuts[ncs++] = 2;
      if (nc > 96) cuts[ncs][0] = 32, cuts[ncs][1] = 64, cuts[ncs][2] = 96, cuts[ncs][3] = nc, nc_cuts[ncs++] = 4;
      const linattn_dtype sds[2] = {LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
      for (int si = 0; si < 2; si++)
        for (int hc = 0; hc < 2; hc++) {
          la_params ph = p;
          ph.state_dtype = sds[si];
          ph.decode_half_convert = hc;
          ph.decode_vectors = 4;
          ph.decode_overlap = 1;
          la_result hw;
          result_alloc(&in, &hw);
          run_units(k, &ph, &in, c->st, whole, 1, &hw);
          for (int s = 0; s < ncs; s++) {
            la_params pc = ph;
            pc.decode_half_chain = 1;
            la_result cr;
            result_alloc(&in, &cr);
            run_units_as(k, &pc, &in, c->st, cuts[s], nc_cuts[s], &cr, 1);
            int64_t first;
            const int64_t nd = bits_differ_out(&in, hw.out, cr.out, &first);
            const int64_t ns = bits_differ_hstate(&in, hw.state, cr.state);
            tk_check(nd == 0 && ns == 0,
                     "%s: %s-state decode chain of %d units (half_convert %d) differs: %lld outputs, %lld state rows",
                     k->name, tk_dtype_str(sds[si]), nc_cuts[s], hc, (long long)nd, (long long)ns);
            result_free(&cr);
          }
          result_free(&hw);
        }
    }

    /* decode_half_convert's forms on a 16-bit state (bf16 in column pairs where AVX512-BF16
     * stores it: la_panel_decode_pairs with the delta rule, la_decode_one_pass without it; fp16
     * stored by vcvtps2ph to memory): the bits of the plain forms (decode_half_convert 0), with
     * the one pass and with the two sweeps (decode_split), under the ISA's decode panels and
     * 4-vector ones; outputs and state bit for bit */
    if (T == 1) {
      const linattn_dtype sds[2] = {LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
      for (int si = 0; si < 2; si++)
        for (int dv = 0; dv < 2; dv++) {
          la_params ph = p;
          ph.state_dtype = sds[si];
          ph.decode_vectors = dv ? 4 : 0;
          la_result plain;
          result_alloc(&in, &plain);
          run_units(k, &ph, &in, c->st, whole, 1, &plain);
          for (int split = 0; split < 2; split++) {
            la_params pc = ph;
            pc.decode_half_convert = 1;
            pc.decode_split = split;
            la_result hr;
            result_alloc(&in, &hr);
            run_units(k, &pc, &in, c->st, whole, 1, &hr);
            int64_t first;
            const int64_t nd = bits_differ_out(&in, plain.out, hr.out, &first);
            const int64_t ns = bits_differ_hstate(&in, plain.state, hr.state);
            tk_check(nd == 0 && ns == 0,
                     "%s: %s-state decode with half_convert (%d-vector panels, split sweeps %d) differs: %lld "
                     "outputs (first %lld), %lld state rows",
                     k->name, tk_dtype_str(sds[si]), pc.decode_vectors, split, (long long)nd, (long long)first,
                     (long long)ns);
            result_free(&hr);
          }
          result_free(&plain);
        }
      if (!p.delta && nq <= 8 && nc % 32 == 0 && strcmp(k->name, "avx512") == 0) g_pair_one_pass_cases++;
    }

    /* column splits: bit-identical to the whole unit */
    int64_t splits[4][3];
    int nsplit = 0, ncut[4];
    if (nc >= 2) { splits[nsplit][0] = nc / 2; splits[nsplit][1] = nc; ncut[nsplit++] = 2; }
    if (nc > 37) { splits[nsplit][0] = 37; splits[nsplit][1] = nc; ncut[nsplit++] = 2; }
    if (nc > 64) { splits[nsplit][0] = 64; splits[nsplit][1] = nc; ncut[nsplit++] = 2; }
    if (nc > 20) { splits[nsplit][0] = 3; splits[nsplit][1] = nc - 17; splits[nsplit][2] = nc; ncut[nsplit++] = 3; }
    for (int s = 0; s < nsplit; s++) {
      la_result sp;
      result_alloc(&in, &sp);
      run_units(k, &p, &in, c->st, splits[s], ncut[s], &sp);
      int64_t first;
      const int64_t nd = bits_differ_out(&in, got.out, sp.out, &first);
      const int64_t ns = bits_differ_state(&in, got.state, sp.state);
      tk_check(nd == 0 && ns == 0, "%s: split at %lld/%lld differs from one unit: %lld outputs (first %lld), %lld state rows",
               k->name, (long long)splits[s][0], (long long)splits[s][1], (long long)nd, (long long)first, (long long)ns);
      result_free(&sp);
    }

    /* state modes: in place == separate; absent == explicit zeros */
    {
      la_inputs* alt = &in;
      la_result other;
      result_alloc(&in, &other);
      float* saved = in.state_in;
      float* zeros = NULL;
      int st2;
      if (c->st == ST_ABSENT) {
        zeros = tk_aligned_alloc(64, sizeof(float) * (size_t)(dk * in.ld + 16));
        memset(zeros, 0, sizeof(float) * (size_t)(dk * in.ld + 16));
        alt->state_in = zeros;
        st2 = ST_SEPARATE;
      } else {
        st2 = c->st == ST_SEPARATE ? ST_INPLACE : ST_SEPARATE;
      }
      run_units(k, &p, alt, st2, whole, 1, &other);
      int64_t first;
      const int64_t nd = bits_differ_out(&in, got.out, other.out, &first);
      const int64_t ns = bits_differ_state(&in, got.state, other.state);
      tk_check(nd == 0 && ns == 0, "%s: state %s vs %s differ: %lld outputs, %lld state rows", k->name,
               st_names[c->st], c->st == ST_ABSENT ? "zeros" : st_names[st2], (long long)nd, (long long)ns);
      alt->state_in = saved;
      if (zeros) tk_aligned_free(zeros);
      result_free(&other);
    }

    /* f16/bf16 io == round_T(f32 io on the widened inputs) */
    if (c->dt != LINATTN_DTYPE_F32) {
      la_case c32 = *c;
      c32.dt = LINATTN_DTYPE_F32;
      la_inputs w = in;
      w.c = c32;
      const int64_t lens[5] = {T * in.qts + 8, T * in.kts + 8, T * in.vts + 8, T * in.dts + 8, T * in.bts + 8};
      const void* srcs[5] = {in.q, in.k, in.v, in.decay, in.beta};
      void* dsts[5];
      for (int a = 0; a < 5; a++) {
        float* d = io_alloc(LINATTN_DTYPE_F32, lens[a]);
        for (int64_t i = 0; i < lens[a]; i++) d[i] = (float)tk_load(srcs[a], i, c->dt);
        dsts[a] = d;
      }
      w.q = dsts[0]; w.k = dsts[1]; w.v = dsts[2]; w.decay = dsts[3]; w.beta = dsts[4];
      la_params p32 = p;
      p32.io_dtype = LINATTN_DTYPE_F32;
      la_result r32;
      result_alloc(&w, &r32);
      run_units(k, &p32, &w, c->st, whole, 1, &r32);
      int64_t nd = 0;
      for (int64_t t = 0; t < T; t++)
        for (int64_t h = 0; h < nq; h++)
          for (int64_t j = 0; j < nc; j++) {
            const double want = tk_round(out_at(&w, r32.out, t, h, j), c->dt);
            const double g = out_at(&in, got.out, t, h, j);
            const uint32_t bw = tk_encode(want, c->dt), bg = tk_encode(g, c->dt);
            nd += bw != bg;
          }
      const int64_t ns = bits_differ_state(&in, got.state, r32.state);
      tk_check(nd == 0 && ns == 0, "%s: %s io != round(f32 io): %lld outputs, %lld state rows", k->name,
               tk_dtype_str(c->dt), (long long)nd, (long long)ns);
      result_free(&r32);
      for (int a = 0; a < 5; a++) free(dsts[a]);
    }
    result_free(&got);
  }
  free(rout); free(rstate); free(oout); free(ostate);
  result_free(&ref);
  free_inputs(&in);
}

static void describe(const la_case* c) {
  tk_context("%s decay=%s io=%s n_q=%d d_k=%lld ncols=%lld T=%lld state=%s g=%s beta=%s scale=%g",
             rule_names[c->rule], c->decay_kind == LA_DECAY_PER_KEY ? "per_key" : "per_head", tk_dtype_str(c->dt),
             c->nq, (long long)c->dk, (long long)c->nc, (long long)c->T, st_names[c->st], g_names[c->gm],
             b_names[c->bm], (double)c->scale);
}

int main(int argc, char** argv) {
  tk_begin("test_la_kernels");
  const uint64_t seed = tk_seed();
  tk_rng r;
  tk_rng_init(&r, seed);
  family fams[MAX_FAMILIES];
  const int nfam = find_families(fams, MAX_FAMILIES);
  if (linattn_isa_count() > MAX_FAMILIES) tk_fatal("%d kernel families: raise MAX_FAMILIES", linattn_isa_count());
  for (int f = 0; f < nfam; f++) tk_note("family %s, block_cols %lld", fams[f].k->name, (long long)fams[f].k->block_cols);
  /* case count: argv[1], else LINATTN_TEST_CASES, else 700 (150 in a reduced run: the balanced
   * axes still take every value) */
  const char* env_cases = getenv("LINATTN_TEST_CASES");
  int ncases = argc > 1 ? atoi(argv[1]) : env_cases && *env_cases ? atoi(env_cases) : tk_reduced() ? 150 : 700;

  static const int nqs[] = {1, 2, 3, 4, 8, 1, 2, 12};
  static const int64_t dks[] = {1, 7, 13, 16, 17, 31, 64, 80, 128};
  static const int64_t ncs[] = {1, 7, 13, 16, 17, 31, 64, 80, 128, 37, 100, 48};
  static const int64_t Ts[] = {0, 1, 2, 15, 16, 17, 31, 32, 33, 63, 64, 65, 129};
  static const linattn_dtype dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  tk_axis a_rule, a_dk_kind, a_dt, a_nq, a_dk, a_nc, a_T, a_st, a_g, a_b;
  tk_axis_init(&a_rule, 4); tk_axis_init(&a_dk_kind, 2); tk_axis_init(&a_dt, 3);
  tk_axis_init(&a_nq, 8); tk_axis_init(&a_dk, 9); tk_axis_init(&a_nc, 12); tk_axis_init(&a_T, 13);
  tk_axis_init(&a_st, ST_KINDS); tk_axis_init(&a_g, G_KINDS); tk_axis_init(&a_b, B_KINDS);

  /* Targeted cases first: the model shapes (d = 128) for every rule and decay kind, decode
   * and prefill, GQA 1/2/4; then the balanced random matrix. */
  int done = 0;
  for (int rule = 1; rule <= 4; rule++)
    for (int dkind = 1; dkind <= 2; dkind++)
      for (int gi = 0; gi < 3; gi++) {
        const bool gated = rule == LINATTN_UPDATE_GATED || rule == LINATTN_UPDATE_GATED_DELTA;
        if (!gated && dkind == 2) continue;
        la_case c = {(linattn_update_rule)rule, (la_decay_kind)dkind, dts[gi], gi == 0 ? 1 : gi * 2,
                     128, 128, gi == 2 ? 1 : 65, gi == 1 ? ST_INPLACE : ST_SEPARATE, G_MILD, B_UNIFORM,
                     1.0 / sqrt(128.0)};
        describe(&c);
        run_case(&r, fams, nfam, &c);
        done++;
      }
  /* Decode with d_v = 64 and 128 (Mamba-2 / RWKV-6 and Qwen heads: one 4- or 8-vector panel
   * per unit), 80 (4 + 1 vectors), 160 and 200 (several panels of one width under
   * la_tuning.decode_vectors, then a partial vector; one and two query heads per state), 256
   * (its halves: chained units of 128 columns), separate and in place, every rule. */
  static const int64_t decode_shapes[][3] = {{128, 64, 1}, {64, 64, 1}, {128, 80, 1}, {64, 128, 1},
                                             {128, 160, 1}, {64, 200, 2}, {128, 256, 1}};
  for (int rule = 1; rule <= 4; rule++)
    for (int si = 0; si < 7; si++) {
      la_case c = {(linattn_update_rule)rule, si & 1 ? LA_DECAY_PER_KEY : LA_DECAY_PER_HEAD, LINATTN_DTYPE_F32,
                   (int)decode_shapes[si][2],
                   decode_shapes[si][0], decode_shapes[si][1], 1, si < 2 || si == 5 ? ST_SEPARATE : ST_INPLACE, G_MILD,
                   B_UNIFORM, 1.0};
      describe(&c);
      run_case(&r, fams, nfam, &c);
      done++;
    }

  /* Decode without the delta rule (one pass) of RWKV-6-like (per-key decay, d_k = 64) and
   * Mamba-2-like (per-head decay, d_k = 128) heads and the linear rule: d_v = 64 and 128, one, two
   * and four query heads per state, separate, in place and from zeros (the 16-bit-state forms
   * above, bf16 in column pairs among them). */
  for (int rule = 1; rule <= 2; rule++)
    for (int si = 0; si < 2; si++)
      for (int nv = 0; nv < 2; nv++)
        for (int gi = 0; gi < 3; gi++)
          for (int st = 0; st < ST_KINDS; st++) {
            la_case c = {(linattn_update_rule)rule, si ? LA_DECAY_PER_HEAD : LA_DECAY_PER_KEY, LINATTN_DTYPE_F32,
                         1 << gi, si ? 128 : 64, nv ? 128 : 64, 1, st, G_MILD, B_UNIFORM, 1.0 / sqrt(64.0)};
            if (rule == LINATTN_UPDATE_LINEAR && si) continue; /* no decay: the d_k = 128 shape once */
            describe(&c);
            run_case(&r, fams, nfam, &c);
            done++;
          }

  /* store policy (linattn_state_stores): both sides of AUTO's threshold, half the LLC */
  tk_context("la_stream_choice");
  tk_check(!la_stream_choice(LINATTN_STATE_STORES_AUTO, 16.0 * (1 << 20), (size_t)32 << 20), "auto at LLC/2: cached");
  tk_check(la_stream_choice(LINATTN_STATE_STORES_AUTO, 16.0 * (1 << 20) + 1, (size_t)32 << 20), "auto above LLC/2: streaming");
  tk_check(!la_stream_choice(LINATTN_STATE_STORES_CACHED, 1e12, (size_t)32 << 20), "cached: never streams");
  tk_check(la_stream_choice(LINATTN_STATE_STORES_STREAMING, 64.0, (size_t)32 << 20), "streaming: always");

  for (int n = 0; n < ncases; n++) {
    la_case c;
    c.rule = (linattn_update_rule)(1 + tk_axis_next(&a_rule, &r));
    c.decay_kind = (la_decay_kind)(1 + tk_axis_next(&a_dk_kind, &r));
    c.dt = dts[tk_axis_next(&a_dt, &r)];
    c.nq = nqs[tk_axis_next(&a_nq, &r)];
    c.dk = dks[tk_axis_next(&a_dk, &r)];
    c.nc = ncs[tk_axis_next(&a_nc, &r)];
    c.T = Ts[tk_axis_next(&a_T, &r)];
    c.st = tk_axis_next(&a_st, &r);
    c.gm = tk_axis_next(&a_g, &r);
    c.bm = tk_axis_next(&a_b, &r);
    c.scale = tk_below(&r, 3) ? 1.0 / sqrt((double)c.dk) : (double)0.7f;
    /* keep the work per case small: long T only with modest sizes */
    if (c.T > 64 && c.dk * c.nc * c.nq > 128 * 64 * 2) c.T = 33;
    describe(&c);
    run_case(&r, fams, nfam, &c);
    done++;
  }
  tk_note("%d cases, %d families", done, nfam);
  /* the plain staging ran (la_setup takes it for fp32 inputs with d_k a multiple of the
   * vector length) */
  tk_check(g_plain_cases > 0, "no case took the plain staging");
  tk_check(g_fold_cases > 0, "no prefill case with a per-head decay ran the folded staging");
  tk_check(g_split_cases > 0, "no decode without the delta rule compared its one pass with the split sweeps");
  tk_note("decodes without the delta rule on the AVX-512 family with whole 32-column groups: %d", g_pair_one_pass_cases);
  /* the chain ran where the AVX-512 family (LA_DECODE_OVERLAP) is tested */
  bool has_avx512 = false;
  for (int f = 0; f < nfam; f++) has_avx512 |= strcmp(fams[f].k->name, "avx512") == 0;
  tk_check(!has_avx512 || g_chain_primed > 0, "no decode chain summed a next unit's first panel");
  tk_check(!has_avx512 || g_half_chain_primed > 0, "no decode chain of a 16-bit state summed a next unit's first panel");
  tk_check(!has_avx512 || g_pair_one_pass_cases > 0, "no AVX-512 decode without the delta rule compared its 16-bit forms");
  tk_note("decode chain of 16-bit states: %d units primed by the previous one", g_half_chain_primed);
  tk_note("decode chain: %d units primed by the previous one", g_chain_primed);
  for (int f = 0; f < nfam; f++)
    tk_note("%s: worst fp32 output error vs float64 %.2e of max|ref|", fams[f].k->name, g_worst_f64[f]);
  return tk_finish();
}
