/*
 * Per-microarchitecture tuning (src/tuning.c, docs/tuning.md):
 *  - the entry for this CPU is chosen from its identification, the same in every process: two
 *    child processes running the same LinearAttention prefill give identical bits;
 *  - every named entry (LINATTN_TUNE) agrees with the float64 oracle within the bounds the
 *    kernel tests use, on fresh random inputs (the entries differ in summation order);
 *  - an unknown LINATTN_TUNE is refused by linattn_context_create with a message naming it;
 *  - every entry, both store choices of conv.cf_stream_min_bytes and the input prefetch
 *    (conv.cf_prefetch_bytes) on and off give the same
 *    CausalConvWithState bits for a channels-first fp32 output large enough to stream, every
 *    element written and within the float64 oracle's bound;
 *  - la.pair_vectors 2 and 0 give the same LinearAttention bits (check_pair_vectors);
 *  - la.fold_head_decay on (other bits), in the 4-vector (intel-avx512) and 2-vector (zen4) pair
 *    panels: within the reference kernel's bound, and the same bits on 1 and 2 threads and in
 *    two calls (check_fold_head_decay).
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "internal.h"
#include "linattn.h"
#include "oracle.h"
#include "testkit.h"

enum { B = 1, T = 83, H = 3, DK = 128, DV = 112 }; /* T: whole tiles, a partial one, odd counts */

typedef struct problem {
  float *q, *k, *v, *g, *beta, *state0;
  double *dq, *dk, *dv, *dg, *dbeta, *dstate0;
} problem;

static float* fill(tk_rng* r, double* d, int64_t n, double lo, double hi, int unit_rows, int64_t row) {
  float* f = (float*)malloc(sizeof(float) * (size_t)n);
  for (int64_t i = 0; i < n; i++) f[i] = (float)tk_uniform_range(r, lo, hi);
  if (unit_rows)
    for (int64_t i0 = 0; i0 < n; i0 += row) {
      double s = 0;
      for (int64_t j = 0; j < row; j++) s += (double)f[i0 + j] * f[i0 + j];
      for (int64_t j = 0; j < row; j++) f[i0 + j] = (float)(f[i0 + j] / sqrt(s));
    }
  for (int64_t i = 0; i < n; i++) d[i] = f[i];
  return f;
}

static void make_problem(problem* P, uint64_t seed) {
  tk_rng r;
  tk_rng_init(&r, seed);
  const int64_t nq = (int64_t)B * T * H * DK, nv = (int64_t)B * T * H * DV, ng = (int64_t)B * T * H * DK;
  const int64_t nb = (int64_t)B * T * H, ns = (int64_t)B * H * DK * DV;
  P->dq = tk_dalloc(nq); P->dk = tk_dalloc(nq); P->dv = tk_dalloc(nv); P->dg = tk_dalloc(ng);
  P->dbeta = tk_dalloc(nb); P->dstate0 = tk_dalloc(ns);
  P->q = fill(&r, P->dq, nq, -1, 1, 1, DK);
  P->k = fill(&r, P->dk, nq, -1, 1, 1, DK);
  P->v = fill(&r, P->dv, nv, -1, 1, 0, 1);
  /* per-key log-decay; a few strongly decaying keys end folded segments mid-tile */
  P->g = fill(&r, P->dg, ng, -0.3, -0.01, 0, 1);
  for (int64_t i = 0; i < ng; i += 97) { P->g[i] = -9.0f; P->dg[i] = -9.0; }
  P->beta = fill(&r, P->dbeta, nb, 0.1, 0.9, 0, 1);
  P->state0 = fill(&r, P->dstate0, ns, -0.05, 0.05, 0, 1);
}

static void free_problem(problem* P) {
  free(P->q); free(P->k); free(P->v); free(P->g); free(P->beta); free(P->state0);
  free(P->dq); free(P->dk); free(P->dv); free(P->dg); free(P->dbeta); free(P->dstate0);
}

/* Runs kimi-style gated_delta with per-key decay under the context's tuning; out and state are
 * written (state starts from state0). */
static linattn_status run_la(const problem* P, float* out, float* state) {
  linattn_context* ctx = NULL;
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 1;
  linattn_status st = linattn_context_create(&o, &ctx);
  if (st != LINATTN_SUCCESS) return st;
  memcpy(state, P->state0, sizeof(float) * B * H * DK * DV);
  const int64_t qd[3] = {B, T, H * DK}, vd[3] = {B, T, H * DV}, bd[3] = {B, T, H}, sd[4] = {B, H, DK, DV};
  linattn_tensor q = linattn_make_tensor(P->q, LINATTN_DTYPE_F32, 3, qd);
  linattn_tensor k = linattn_make_tensor(P->k, LINATTN_DTYPE_F32, 3, qd);
  linattn_tensor v = linattn_make_tensor(P->v, LINATTN_DTYPE_F32, 3, vd);
  linattn_tensor g = linattn_make_tensor(P->g, LINATTN_DTYPE_F32, 3, qd);
  linattn_tensor b = linattn_make_tensor(P->beta, LINATTN_DTYPE_F32, 3, bd);
  linattn_tensor y = linattn_make_tensor(out, LINATTN_DTYPE_F32, 3, vd);
  linattn_tensor s = linattn_make_tensor(state, LINATTN_DTYPE_F32, 4, sd);
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.q_num_heads = H;
  d.kv_num_heads = H;
  st = linattn_linear_attention(ctx, &d, &q, &k, &v, &s, &g, &b, &y, &s, NULL, 0);
  linattn_context_destroy(ctx);
  return st;
}

enum { NOUT = B * T * H * DV, NSTATE = B * H * DK * DV };

/* Runs the problem in a child process (a fresh tuning choice) and returns its bytes. */
static int run_in_child(const problem* P, float* out, float* state) {
  int fd[2];
  if (pipe(fd) != 0) return -1;
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    close(fd[0]);
    float* o = (float*)malloc(sizeof(float) * NOUT);
    float* s = (float*)malloc(sizeof(float) * NSTATE);
    const int ok = run_la(P, o, s) == LINATTN_SUCCESS;
    const char* tune = linattn_tuning_for_cpu()->name;
    size_t len = strlen(tune);
    int good = write(fd[1], &ok, sizeof ok) == (ssize_t)sizeof ok &&
               write(fd[1], &len, sizeof len) == (ssize_t)sizeof len &&
               write(fd[1], tune, len) == (ssize_t)len &&
               write(fd[1], o, sizeof(float) * NOUT) == (ssize_t)(sizeof(float) * NOUT) &&
               write(fd[1], s, sizeof(float) * NSTATE) == (ssize_t)(sizeof(float) * NSTATE);
    _exit(good && ok ? 0 : 1);
  }
  close(fd[1]);
  int ok = 0;
  size_t len = 0;
  char name[64] = {0};
  size_t got = 0;
  got += (size_t)read(fd[0], &ok, sizeof ok);
  got += (size_t)read(fd[0], &len, sizeof len);
  if (len < sizeof name) got += (size_t)read(fd[0], name, len);
  for (size_t want = sizeof(float) * NOUT, n = 0; n < want;) {
    ssize_t r = read(fd[0], (char*)out + n, want - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  for (size_t want = sizeof(float) * NSTATE, n = 0; n < want;) {
    ssize_t r = read(fd[0], (char*)state + n, want - n);
    if (r <= 0) break;
    n += (size_t)r;
  }
  close(fd[0]);
  int status = 0;
  waitpid(pid, &status, 0);
  tk_note("child process tuning: %s", name);
  return WIFEXITED(status) && WEXITSTATUS(status) == 0 && ok ? 0 : -1;
}

/* max |got - ref| / max |ref| over outputs and over the state */
static void check_vs_oracle(const char* what, const float* out, const float* state, const double* oout,
                            const double* ostate) {
  double eo = 0, mo = 0, es = 0, ms = 0;
  for (int64_t i = 0; i < NOUT; i++) {
    eo = tk_max(eo, fabs(out[i] - oout[i]));
    mo = tk_max(mo, fabs(oout[i]));
  }
  for (int64_t i = 0; i < NSTATE; i++) {
    es = tk_max(es, fabs(state[i] - ostate[i]));
    ms = tk_max(ms, fabs(ostate[i]));
  }
  /* the fp32 bound of test_la_kernels (a few ulp of max|ref| per d_k-term sum) */
  tk_check(eo <= 1e-5 * mo && es <= 1e-5 * ms, "%s: vs float64 output %.3g, state %.3g of max|ref|", what, eo / mo,
           es / ms);
}

/* Channels-first fp32 conv: a 25.2 MB output (at least CONV_STREAM_MIN_BYTES, so the tuning's
 * conv.cf_stream_min_bytes decides ordinary or streamed rows: intel-avx512 streams it, zen4 only
 * under a smaller LLC); L odd for partial lines. */
enum { CONV_C = 1536, CONV_L = 4099, CONV_K = 4, CONV_S = CONV_K - 1 };
#define CONV_N ((int64_t)CONV_C * CONV_L)

typedef struct conv_problem {
  float *x, *w, *past;
  double* ref; /* float64 oracle output */
  double* mag; /* sum of |terms| per output, for the bound */
} conv_problem;

static void make_conv_problem(conv_problem* P, uint64_t seed) {
  tk_rng r;
  tk_rng_init(&r, seed);
  P->x = (float*)malloc(sizeof(float) * CONV_N);
  P->w = (float*)malloc(sizeof(float) * CONV_C * CONV_K);
  P->past = (float*)malloc(sizeof(float) * CONV_C * CONV_S);
  P->ref = tk_dalloc(CONV_N);
  P->mag = tk_dalloc(CONV_N);
  for (int64_t i = 0; i < CONV_N; i++) P->x[i] = (float)tk_uniform_range(&r, -2, 2);
  for (int64_t i = 0; i < CONV_C * CONV_K; i++) P->w[i] = (float)tk_uniform_range(&r, -1, 1);
  for (int64_t i = 0; i < CONV_C * CONV_S; i++) P->past[i] = (float)tk_uniform_range(&r, -2, 2);
  for (int64_t c = 0; c < CONV_C; c++)
    for (int64_t l = 0; l < CONV_L; l++) {
      double s = 0, m = 0;
      for (int64_t j = 0; j < CONV_K; j++) {
        const int64_t t = l - (CONV_K - 1 - j);
        const double xv = t >= 0 ? P->x[c * CONV_L + t] : P->past[c * CONV_S + CONV_S + t];
        s += (double)P->w[c * CONV_K + j] * xv;
        m += fabs((double)P->w[c * CONV_K + j] * xv);
      }
      P->ref[c * CONV_L + l] = s / (1.0 + exp(-s));
      P->mag[c * CONV_L + l] = m;
    }
}

static void free_conv_problem(conv_problem* P) {
  free(P->x); free(P->w); free(P->past); free(P->ref); free(P->mag);
}

/* Runs the conv under tuning t (NULL: the context's own); y poisoned first. */
static linattn_status run_conv(const conv_problem* P, const linattn_tuning* t, float* y) {
  for (int64_t i = 0; i < CONV_N; i++) y[i] = NAN;
  linattn_context_options opt;
  linattn_context_options_init(&opt);
  opt.num_threads = 2;
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(&opt, &ctx);
  if (st != LINATTN_SUCCESS) return st;
  if (t) ctx->tuning = t;
  const int64_t xd[3] = {1, CONV_C, CONV_L}, wd[3] = {CONV_C, 1, CONV_K}, sd[3] = {1, CONV_C, CONV_S};
  const linattn_tensor x = linattn_make_tensor(P->x, LINATTN_DTYPE_F32, 3, xd);
  const linattn_tensor w = linattn_make_tensor(P->w, LINATTN_DTYPE_F32, 3, wd);
  const linattn_tensor past = linattn_make_tensor(P->past, LINATTN_DTYPE_F32, 3, sd);
  const linattn_tensor out = linattn_make_tensor(y, LINATTN_DTYPE_F32, 3, xd);
  linattn_causal_conv_desc desc;
  linattn_causal_conv_desc_init(&desc);
  desc.activation = LINATTN_ACTIVATION_SILU;
  size_t ws_size = 0;
  st = linattn_causal_conv_with_state_workspace_size(ctx, &desc, &x, &w, NULL, &past, &out, NULL, &ws_size);
  void* ws = ws_size ? aligned_alloc(64, (ws_size + 63) / 64 * 64) : NULL;
  if (st == LINATTN_SUCCESS)
    st = linattn_causal_conv_with_state(ctx, &desc, &x, &w, NULL, &past, &out, NULL, ws, ws_size);
  free(ws);
  linattn_context_destroy(ctx);
  return st;
}

static void check_conv_vs_oracle(const char* what, const conv_problem* P, const float* y) {
  int64_t bad = 0, first = -1;
  for (int64_t i = 0; i < CONV_N; i++) {
    const double bound = 1e-5 * P->mag[i] + 1e-6 * fabs(P->ref[i]) + 1e-30;
    if (!(fabs((double)y[i] - P->ref[i]) <= bound)) {
      if (first < 0) first = i;
      bad++;
    }
  }
  tk_check(bad == 0, "%s: conv output written and within the float64 oracle's bound (%lld bad, first at %lld)", what,
           (long long)bad, (long long)first);
}

/* Every entry, and the two store choices forced, give the same conv bits. */
static void check_conv_tunings(const char* const* names, size_t num_names) {
  conv_problem P;
  make_conv_problem(&P, tk_seed() + 7);
  float* first = (float*)malloc(sizeof(float) * CONV_N);
  float* y = (float*)malloc(sizeof(float) * CONV_N);
  /* the two store choices, each without and with the input prefetch */
  enum { NFORCED = 4 };
  linattn_tuning forced[NFORCED];
  for (int i = 0; i < NFORCED; i++) {
    forced[i] = *linattn_tuning_for_cpu();
    forced[i].conv.cf_stream_min_bytes = i % 2 ? 1 : INT64_MAX; /* streamed rows (the output exceeds the floor) or not */
    forced[i].conv.cf_prefetch_bytes = i < 2 ? 0 : 4096;
  }
  const char* forced_names[NFORCED] = {"ordinary conv stores", "streamed conv rows", "ordinary stores, prefetch",
                                       "streamed rows, prefetch"};
  for (size_t i = 0; i < num_names + NFORCED; i++) {
    const linattn_tuning* t = i < num_names ? linattn_tuning_by_name(names[i]) : &forced[i - num_names];
    const char* what = i < num_names ? names[i] : forced_names[i - num_names];
    const linattn_status st = run_conv(&P, t, i == 0 ? first : y);
    tk_check(st == LINATTN_SUCCESS, "%s: conv runs (%s)", what, linattn_last_error());
    if (i == 0) {
      check_conv_vs_oracle(what, &P, first);
      continue;
    }
    tk_check(!memcmp(first, y, sizeof(float) * CONV_N), "%s: the same conv bits as %s", what, names[0]);
  }
  free(first); free(y);
  free_conv_problem(&P);
}

/* Shapes for the fields that change only the two-token panels (la.pair_vectors) or the per-head
 * decay's place (la.fold_head_decay): H heads over several tiles (a partial last one), so
 * lock-step groups of 8 + 1 units (1 thread) and 5 + 4 (2 threads). */
typedef struct pair_case {
  const char* name;
  linattn_update_rule rule;
  int64_t dk, dv;
  int per_key;
} pair_case;
enum { PC_H = 9, PC_T = 203 };

static void pair_store(void* p, size_t i, linattn_dtype dt, float x) {
  if (dt == LINATTN_DTYPE_F32) { ((float*)p)[i] = x; return; }
  uint32_t u;
  memcpy(&u, &x, 4);
  ((uint16_t*)p)[i] = (uint16_t)(u >> 16); /* truncation: every run reads the same values */
}

static float pair_load(const void* p, size_t i, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) return ((const float*)p)[i];
  uint32_t u = (uint32_t)((const uint16_t*)p)[i] << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

/* Runs the case under tuning t (NULL: the context's own) on isa; out poisoned first, state from s0.
 * Returns the context's status too: the caller skips an ISA this CPU or build lacks (aarch64). */
static linattn_status run_pair_t(const pair_case* c, int64_t nt, linattn_dtype dt, void* const in[5],
                                   const float* s0, const linattn_tuning* t, linattn_isa isa, int threads, void* out,
                                   float* state) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.isa = isa;
  o.num_threads = threads;
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(&o, &ctx);
  if (st != LINATTN_SUCCESS) return st;
  if (t) ctx->tuning = t;
  const size_t nstate = (size_t)PC_H * c->dk * c->dv;
  memcpy(state, s0, sizeof(float) * nstate);
  memset(out, 0xff, (size_t)nt * PC_H * c->dv * linattn_dtype_size(dt)); /* NaN in fp32 and bf16 */
  const int64_t gw = c->per_key ? PC_H * c->dk : PC_H;
  const int64_t qd[3] = {1, nt, PC_H * c->dk}, vd[3] = {1, nt, PC_H * c->dv}, gd[3] = {1, nt, gw},
                bd[3] = {1, nt, PC_H}, sd[4] = {1, PC_H, c->dk, c->dv};
  linattn_tensor q = linattn_make_tensor(in[0], dt, 3, qd), k = linattn_make_tensor(in[1], dt, 3, qd),
                 v = linattn_make_tensor(in[2], dt, 3, vd), g = linattn_make_tensor(in[3], dt, 3, gd),
                 b = linattn_make_tensor(in[4], dt, 3, bd), y = linattn_make_tensor(out, dt, 3, vd),
                 s = linattn_make_tensor(state, LINATTN_DTYPE_F32, 4, sd);
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.q_num_heads = PC_H;
  d.kv_num_heads = PC_H;
  d.update_rule = c->rule;
  st = linattn_linear_attention(ctx, &d, &q, &k, &v, &s, &g, c->rule == LINATTN_UPDATE_GATED_DELTA ? &b : NULL, &y,
                                &s, NULL, 0);
  linattn_context_destroy(ctx);
  return st;
}

static linattn_status run_pair(const pair_case* c, linattn_dtype dt, void* const in[5], const float* s0,
                                 const linattn_tuning* t, linattn_isa isa, int threads, void* out, float* state) {
  return run_pair_t(c, PC_T, dt, in, s0, t, isa, threads, out, state);
}

/* A field that only narrows the two-token panels: the entry `on` against `off`
 * (the same entry with the field cleared) bit for bit, and `on` against the reference kernel. */
static void check_same_bits_case(const pair_case* c, const linattn_tuning* on_t, const linattn_tuning* off_t,
                                 const char* field, linattn_dtype dt, int threads, tk_rng* r) {
  const int64_t nq = (int64_t)PC_T * PC_H * c->dk, nv = (int64_t)PC_T * PC_H * c->dv;
  const int64_t ng = c->per_key ? nq : (int64_t)PC_T * PC_H, nb = (int64_t)PC_T * PC_H;
  const size_t es = linattn_dtype_size(dt), nstate = (size_t)PC_H * c->dk * c->dv;
  const int64_t n[5] = {nq, nq, nv, ng, nb};
  const double lo[5] = {-0.1, -0.1, -1, -0.3, 0.1}, hi[5] = {0.1, 0.1, 1, -0.01, 0.9};
  void* in[5];
  for (int i = 0; i < 5; i++) {
    in[i] = malloc((size_t)n[i] * es);
    for (int64_t e = 0; e < n[i]; e++) pair_store(in[i], (size_t)e, dt, (float)tk_uniform_range(r, lo[i], hi[i]));
  }
  float* s0 = (float*)malloc(sizeof(float) * nstate);
  for (size_t e = 0; e < nstate; e++) s0[e] = (float)tk_uniform_range(r, -0.05, 0.05);
  void *o_on = malloc((size_t)nv * es), *o_off = malloc((size_t)nv * es), *o_ref = malloc((size_t)nv * es);
  float *s_on = malloc(sizeof(float) * nstate), *s_off = malloc(sizeof(float) * nstate),
        *s_ref = malloc(sizeof(float) * nstate);
  const linattn_tuning on = *on_t, off = *off_t;
  const char* dn = dt == LINATTN_DTYPE_F32 ? "f32" : "bf16";
  const linattn_status sa = run_pair(c, dt, in, s0, &on, LINATTN_ISA_AVX512, threads, o_on, s_on);
  if (sa == LINATTN_ERROR_UNSUPPORTED) {
    tk_note("%s: no AVX-512 here, skipped", c->name);
  } else {
    const linattn_status sb = run_pair(c, dt, in, s0, &off, LINATTN_ISA_AVX512, threads, o_off, s_off);
    const linattn_status sr = run_pair(c, dt, in, s0, NULL, LINATTN_ISA_REFERENCE, threads, o_ref, s_ref);
    tk_check(sa == LINATTN_SUCCESS && sb == LINATTN_SUCCESS && sr == LINATTN_SUCCESS, "%s %s: runs (%s)", c->name,
             dn, linattn_last_error());
    tk_check(!memcmp(o_on, o_off, (size_t)nv * es) && !memcmp(s_on, s_off, sizeof(float) * nstate),
             "%s %s, %d thread(s): %s %s gives the bits of the entry without it", c->name, dn, threads, on.name,
             field);
    double eo = 0, mo = 0, es2 = 0, ms = 0;
    for (int64_t e = 0; e < nv; e++) {
      const double a = pair_load(o_on, (size_t)e, dt), b = pair_load(o_ref, (size_t)e, dt);
      eo = isnan(a) || isnan(eo) ? NAN : tk_max(eo, fabs(a - b));
      mo = tk_max(mo, fabs(b));
    }
    for (size_t e = 0; e < nstate; e++) {
      es2 = isnan(s_on[e]) || isnan(es2) ? NAN : tk_max(es2, fabs(s_on[e] - s_ref[e]));
      ms = tk_max(ms, fabs(s_ref[e]));
    }
    const double bound = dt == LINATTN_DTYPE_F32 ? 1e-5 : 1e-2; /* bf16 outputs: a rounding of each */
    tk_check(eo <= bound * mo && es2 <= 1e-5 * ms, "%s %s: vs reference output %.3g, state %.3g of max|ref|",
             c->name, dn, eo / mo, es2 / ms);
  }
  for (int i = 0; i < 5; i++) free(in[i]);
  free(s0); free(o_on); free(o_off); free(o_ref); free(s_on); free(s_off); free(s_ref);
}

/* la.fold_head_decay: with a per-head decay the tile keeps k and scale q as given and the decay
 * scalars scale the sums and u instead (other rounding). The field on, on the AVX-512 kernel:
 * every output and state element within the reference kernel's bound (outputs poisoned first),
 * the same bits on 1 and 2 threads (lock-step groups 8 + 1 and 5 + 4) and in a second call;
 * mild decays and strong ones (C leaves the fold range within a tile: segment ends mid-tile),
 * T = 203 (lock-step, a partial last tile) and T = 50 (one pass per unit, no lock-step). */
static void check_fold_case(const pair_case* c, const char* entry, int64_t T, double glo, double ghi, tk_rng* r) {
  const int64_t nq = (int64_t)PC_T * PC_H * c->dk, nv = (int64_t)PC_T * PC_H * c->dv;
  const int64_t ng = (int64_t)PC_T * PC_H, nb = (int64_t)PC_T * PC_H;
  const size_t nstate = (size_t)PC_H * c->dk * c->dv;
  const int64_t n[5] = {nq, nq, nv, ng, nb};
  const double lo[5] = {-0.1, -0.1, -1, glo, 0.1}, hi[5] = {0.1, 0.1, 1, ghi, 0.9};
  void* in[5];
  for (int i = 0; i < 5; i++) {
    in[i] = malloc((size_t)n[i] * 4);
    for (int64_t e = 0; e < n[i]; e++)
      pair_store(in[i], (size_t)e, LINATTN_DTYPE_F32, (float)tk_uniform_range(r, lo[i], hi[i]));
  }
  float* s0 = (float*)malloc(sizeof(float) * nstate);
  for (size_t e = 0; e < nstate; e++) s0[e] = (float)tk_uniform_range(r, -0.05, 0.05);
  float *o1 = malloc((size_t)nv * 4), *o2 = malloc((size_t)nv * 4), *o3 = malloc((size_t)nv * 4),
        *oref = malloc((size_t)nv * 4);
  float *s1 = malloc(sizeof(float) * nstate), *s2 = malloc(sizeof(float) * nstate),
        *s3 = malloc(sizeof(float) * nstate), *sref = malloc(sizeof(float) * nstate);
  linattn_tuning on = *linattn_tuning_by_name(entry);
  on.la.fold_head_decay = 1;
  const linattn_dtype dt = LINATTN_DTYPE_F32;
  /* T < PC_T: the first T tokens of the same (token-major) inputs */
  const int64_t nv_t = T * PC_H * c->dv;
  const linattn_status sa = run_pair_t(c, T, dt, in, s0, &on, LINATTN_ISA_AVX512, 1, o1, s1);
  if (sa == LINATTN_ERROR_UNSUPPORTED) {
    tk_note("%s: no AVX-512 here, skipped", c->name);
  } else {
    const linattn_status sb = run_pair_t(c, T, dt, in, s0, &on, LINATTN_ISA_AVX512, 2, o2, s2);
    const linattn_status sc = run_pair_t(c, T, dt, in, s0, &on, LINATTN_ISA_AVX512, 1, o3, s3);
    const linattn_status sr = run_pair_t(c, T, dt, in, s0, NULL, LINATTN_ISA_REFERENCE, 1, oref, sref);
    tk_check(sa == LINATTN_SUCCESS && sb == LINATTN_SUCCESS && sc == LINATTN_SUCCESS && sr == LINATTN_SUCCESS,
             "fold %s T %lld: runs (%s)", c->name, (long long)T, linattn_last_error());
    tk_check(!memcmp(o1, o2, (size_t)nv_t * 4) && !memcmp(s1, s2, sizeof(float) * nstate),
             "fold %s T %lld g [%g, %g]: 1 and 2 threads give the same bits", c->name, (long long)T, glo, ghi);
    tk_check(!memcmp(o1, o3, (size_t)nv_t * 4) && !memcmp(s1, s3, sizeof(float) * nstate),
             "fold %s T %lld g [%g, %g]: two calls give the same bits", c->name, (long long)T, glo, ghi);
    double eo = 0, mo = 0, es = 0, ms = 0;
    for (int64_t e = 0; e < nv_t; e++) {
      eo = isnan(o1[e]) || isnan(eo) ? NAN : tk_max(eo, fabs((double)o1[e] - oref[e]));
      mo = tk_max(mo, fabs(oref[e]));
    }
    for (size_t e = 0; e < nstate; e++) {
      es = isnan(s1[e]) || isnan(es) ? NAN : tk_max(es, fabs((double)s1[e] - sref[e]));
      ms = tk_max(ms, fabs(sref[e]));
    }
    tk_check(eo <= 1e-5 * mo && es <= 1e-5 * ms, "fold %s T %lld g [%g, %g]: vs reference output %.3g, state %.3g of max|ref|",
             c->name, (long long)T, glo, ghi, eo / mo, es / ms);
  }
  for (int i = 0; i < 5; i++) free(in[i]);
  free(s0); free(o1); free(o2); free(o3); free(oref); free(s1); free(s2); free(s3); free(sref);
}

static void check_fold_head_decay(void) {
  const pair_case cases[] = {
      {"qwen-like gated delta d 128", LINATTN_UPDATE_GATED_DELTA, 128, 128, 0},
      {"mamba-like gated d_k 128, d_v 64", LINATTN_UPDATE_GATED, 128, 64, 0},
      {"gated delta d_k 64, d_v 48", LINATTN_UPDATE_GATED_DELTA, 64, 48, 0},
  };
  const char* entries[] = {"intel-avx512", "zen4"}; /* 4-vector and 2-vector pair panels */
  tk_rng r;
  tk_rng_init(&r, tk_seed() + 12);
  for (size_t e = 0; e < 2; e++)
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
      check_fold_case(&cases[i], entries[e], PC_T, -0.3, -0.01, &r);
      check_fold_case(&cases[i], entries[e], PC_T, -12.0, -4.0, &r); /* C below 2^-60 within 4-15 tokens */
      check_fold_case(&cases[i], entries[e], 50, -0.3, -0.01, &r);
      check_fold_case(&cases[i], entries[e], 50, -12.0, -4.0, &r);
    }
}

/* la.pair_vectors 2 (zen4): two-token panels of 2 vectors where the ISA takes 4 (one head per
 * group), the same bits as the ISA's width, on d = 128 heads (two panels instead of one per
 * 64 columns) and d_v <= 64 ones, fp32 and bf16 activations; with the per-head decay folded (zen4) and not. */
static void check_pair_vectors(void) {
  const pair_case cases[] = {
      {"qwen-like gated delta d 128", LINATTN_UPDATE_GATED_DELTA, 128, 128, 0},
      {"kda-like gated delta d 128, per-key", LINATTN_UPDATE_GATED_DELTA, 128, 128, 1},
      {"mamba-like d_k 128, d_v 64", LINATTN_UPDATE_GATED, 128, 64, 0},
      {"rwkv-like d 64, per-key", LINATTN_UPDATE_GATED, 64, 64, 1},
      {"gated delta d_k 64, d_v 48, per-key", LINATTN_UPDATE_GATED_DELTA, 64, 48, 1},
  };
  tk_check(linattn_tuning_by_name("zen4")->la.pair_vectors == 2 && linattn_tuning_by_name("zen4")->la.sweep_tokens == 2,
           "zen4 sweeps two tokens in 2-vector panels");
  tk_rng r;
  tk_rng_init(&r, tk_seed() + 13);
  const linattn_dtype dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_BF16};
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
    for (int di = 0; di < 2; di++)
      for (int fold = 0; fold <= 1; fold++) {
        linattn_tuning on = *linattn_tuning_by_name("zen4"), off = on;
        on.la.fold_head_decay = off.la.fold_head_decay = fold;
        off.la.pair_vectors = 0;
        check_same_bits_case(&cases[i], &on, &off, "la.pair_vectors", dts[di], 1 + fold, &r);
      }
}

/* la.decode_chain under state_window: the window runs its single-token ranges in place on an fp32
 * state in its own workspace, so its size query must include the chain's second scratch. Chain on
 * against off, bit for bit, in the queried workspace; one byte short of it: WORKSPACE_TOO_SMALL
 * with outputs untouched (the call never runs with less than it reported). */
enum { WC_H = 4, WC_D = 64, WC_T = 3, WC_W = 4 };

static linattn_status run_window(const linattn_tuning* t, void* const in[5], const float* past, float* out,
                                 float* present, size_t short_by, size_t* ws_out) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.isa = LINATTN_ISA_AVX512;
  o.num_threads = 1;
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(&o, &ctx);
  if (st != LINATTN_SUCCESS) return st;
  ctx->tuning = t;
  memset(out, 0xff, sizeof(float) * WC_T * WC_H * WC_D);
  memset(present, 0xff, sizeof(float) * WC_W * WC_H * WC_D * WC_D);
  const int64_t qd[3] = {1, WC_T, WC_H * WC_D}, gd[3] = {1, WC_T, WC_H}, sd[4] = {WC_W, WC_H, WC_D, WC_D};
  linattn_tensor q = linattn_make_tensor(in[0], LINATTN_DTYPE_F32, 3, qd),
                 k = linattn_make_tensor(in[1], LINATTN_DTYPE_F32, 3, qd),
                 v = linattn_make_tensor(in[2], LINATTN_DTYPE_F32, 3, qd),
                 g = linattn_make_tensor(in[3], LINATTN_DTYPE_F32, 3, gd),
                 b = linattn_make_tensor(in[4], LINATTN_DTYPE_F32, 3, gd),
                 y = linattn_make_tensor(out, LINATTN_DTYPE_F32, 3, qd),
                 ps = linattn_make_tensor((void*)past, LINATTN_DTYPE_F32, 4, sd),
                 pr = linattn_make_tensor(present, LINATTN_DTYPE_F32, 4, sd);
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.q_num_heads = d.kv_num_heads = WC_H;
  d.update_rule = LINATTN_UPDATE_GATED_DELTA;
  d.state_window = WC_W;
  size_t ws = 0;
  st = linattn_linear_attention_workspace_size(ctx, &d, &q, &k, &v, &ps, &g, &b, &y, &pr, &ws);
  if (st == LINATTN_SUCCESS) {
    *ws_out = ws;
    void* work = tk_aligned_alloc(64, ws);
    st = linattn_linear_attention(ctx, &d, &q, &k, &v, &ps, &g, &b, &y, &pr, work, ws - short_by);
    tk_aligned_free(work);
  }
  linattn_context_destroy(ctx);
  return st;
}

static void check_window_chain(void) {
  tk_rng r;
  tk_rng_init(&r, tk_seed() + 13);
  const size_t nq = (size_t)WC_T * WC_H * WC_D, ng = (size_t)WC_T * WC_H, ns = (size_t)WC_W * WC_H * WC_D * WC_D;
  const size_t n[5] = {nq, nq, nq, ng, ng};
  const double lo[5] = {-0.1, -0.1, -1, -0.3, 0.1}, hi[5] = {0.1, 0.1, 1, -0.01, 0.9};
  void* in[5];
  for (int i = 0; i < 5; i++) {
    float* a = (float*)malloc(sizeof(float) * n[i]);
    for (size_t e = 0; e < n[i]; e++) a[e] = (float)tk_uniform_range(&r, lo[i], hi[i]);
    in[i] = a;
  }
  float* past = (float*)malloc(sizeof(float) * ns);
  for (size_t e = 0; e < ns; e++) past[e] = (float)tk_uniform_range(&r, -0.05, 0.05);
  float *o_on = malloc(sizeof(float) * nq), *o_off = malloc(sizeof(float) * nq), *o_short = malloc(sizeof(float) * nq);
  float *s_on = malloc(sizeof(float) * ns), *s_off = malloc(sizeof(float) * ns), *s_short = malloc(sizeof(float) * ns);
  linattn_tuning on = *linattn_tuning_by_name("intel-avx512"), off = on;
  on.la.decode_chain = 1;
  off.la.decode_chain = 0;
  size_t ws_on = 0, ws_off = 0, ws_short = 0;
  const linattn_status sa = run_window(&on, in, past, o_on, s_on, 0, &ws_on);
  if (sa == LINATTN_ERROR_UNSUPPORTED) {
    tk_note("window decode chain: no AVX-512 here, skipped");
  } else {
    const linattn_status sb = run_window(&off, in, past, o_off, s_off, 0, &ws_off);
    const linattn_status sc = run_window(&on, in, past, o_short, s_short, 1, &ws_short);
    tk_check(sa == LINATTN_SUCCESS && sb == LINATTN_SUCCESS, "window runs in its queried workspace (%s)",
             linattn_last_error());
    tk_check(ws_on > ws_off, "window workspace holds the decode chain: %zu with it, %zu without", ws_on, ws_off);
    tk_check(!memcmp(o_on, o_off, sizeof(float) * nq) && !memcmp(s_on, s_off, sizeof(float) * ns),
             "window: decode chain on and off give the same bits");
    bool untouched = true;
    for (size_t e = 0; e < nq; e++) untouched &= ((uint32_t*)o_short)[e] == 0xffffffffu;
    for (size_t e = 0; e < ns; e++) untouched &= ((uint32_t*)s_short)[e] == 0xffffffffu;
    tk_check(sc == LINATTN_ERROR_WORKSPACE_TOO_SMALL && untouched,
             "window, workspace one byte short: %s, outputs untouched %d", linattn_status_string(sc), (int)untouched);
  }
  for (int i = 0; i < 5; i++) free(in[i]);
  free(past); free(o_on); free(o_off); free(o_short); free(s_on); free(s_off); free(s_short);
}

int main(void) {
  tk_begin("tuning");
  const linattn_tuning* cpu = linattn_tuning_for_cpu();
  tk_check(cpu != NULL && cpu == linattn_tuning_for_cpu(), "the CPU's entry is chosen once, the same each time");
  tk_note("this CPU's tuning: %s", cpu ? cpu->name : "?");
  const char* names[] = {"zen4", "intel-avx512"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    const linattn_tuning* t = linattn_tuning_by_name(names[i]);
    tk_check(t && !strcmp(t->name, names[i]), "entry %s exists", names[i]);
  }
  tk_check(linattn_tuning_by_name("no-such-core") == NULL, "an unknown name has no entry");

  /* unknown LINATTN_TUNE: refused, message names the variable and the value */
  setenv("LINATTN_TUNE", "no-such-core", 1);
  linattn_context* ctx = NULL;
  const linattn_status st = linattn_context_create(NULL, &ctx);
  tk_check(st == LINATTN_ERROR_UNSUPPORTED && ctx == NULL && strstr(linattn_last_error(), "LINATTN_TUNE") &&
               strstr(linattn_last_error(), "no-such-core"),
           "LINATTN_TUNE=no-such-core refused (%d: %s)", (int)st, linattn_last_error());
  if (ctx) linattn_context_destroy(ctx);
  unsetenv("LINATTN_TUNE");

  problem P;
  make_problem(&P, tk_seed());
  double* oout = tk_dalloc(NOUT);
  double* ostate = tk_dalloc(NSTATE);
  oracle_la o;
  memset(&o, 0, sizeof o);
  o.rule = LINATTN_UPDATE_GATED_DELTA;
  o.B = B; o.T = T; o.Hq = H; o.Hkv = H; o.Nk = H; o.dk = DK; o.dv = DV;
  o.scale = 1.0 / sqrt((double)DK);
  o.decay_kind = ORACLE_DECAY_PER_KEY;
  o.beta_kind = ORACLE_BETA_PER_HEAD;
  o.q = P.dq; o.k = P.dk; o.v = P.dv; o.past = P.dstate0; o.decay = P.dg; o.beta = P.dbeta;
  o.out = oout; o.state = ostate;
  oracle_linear_attention(&o);

  /* two processes, default tuning: the same bits */
  float* out_a = (float*)malloc(sizeof(float) * NOUT);
  float* out_b = (float*)malloc(sizeof(float) * NOUT);
  float* st_a = (float*)malloc(sizeof(float) * NSTATE);
  float* st_b = (float*)malloc(sizeof(float) * NSTATE);
  for (int64_t i = 0; i < NOUT; i++) out_a[i] = out_b[i] = NAN;
  const int ra = run_in_child(&P, out_a, st_a), rb = run_in_child(&P, out_b, st_b);
  tk_check(ra == 0 && rb == 0, "child processes ran");
  if (ra == 0 && rb == 0) {
    tk_check(!memcmp(out_a, out_b, sizeof(float) * NOUT) && !memcmp(st_a, st_b, sizeof(float) * NSTATE),
             "two processes give the same bits");
    check_vs_oracle("child process", out_a, st_a, oout, ostate);
  }

  /* every entry, by LINATTN_TUNE, against the oracle; and repeatable within the process */
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
    setenv("LINATTN_TUNE", names[i], 1);
    for (int64_t j = 0; j < NOUT; j++) out_a[j] = out_b[j] = NAN;
    const linattn_status s1 = run_la(&P, out_a, st_a), s2 = run_la(&P, out_b, st_b);
    tk_check(s1 == LINATTN_SUCCESS && s2 == LINATTN_SUCCESS, "%s: runs (%s)", names[i], linattn_last_error());
    check_vs_oracle(names[i], out_a, st_a, oout, ostate);
    tk_check(!memcmp(out_a, out_b, sizeof(float) * NOUT) && !memcmp(st_a, st_b, sizeof(float) * NSTATE),
             "%s: two calls give the same bits", names[i]);
  }
  unsetenv("LINATTN_TUNE");
  check_conv_tunings(names, sizeof names / sizeof names[0]);
  check_pair_vectors();
  check_fold_head_decay();
  check_window_chain();
  free(out_a); free(out_b); free(st_a); free(st_b);
  free(oout); free(ostate);
  free_problem(&P);
  return tk_finish();
}
