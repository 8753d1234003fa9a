/*
 * Soak test (scripts/test-soak, run by .ci/run): a long run of decode steps (T = 1) of one
 * Qwen3.5-0.8B-shaped Gated DeltaNet layer through the C API, both states carried in place:
 *
 *   x (1, 6144, 1) -> CausalConvWithState (k 4, SiLU, no bias; conv state (1, 6144, 3) in place)
 *     -> q | k | v = channels [0, 2048) | [2048, 4096) | [4096, 6144) of the conv output
 *     -> q, k L2-normalised per head of 128 (the model's own step between the two ops, done
 *        here in float64 and rounded to the activation dtype)
 *     -> LinearAttention gated_delta, 16 heads of 128, per-head decay and beta (the decay of a
 *        head spans fast to slow memory), recurrent state (1, 16, 128, 128) in place.
 *
 * Both ops run on the full layer with 2 threads. Every CHECK_EVERY steps:
 *  - conv: that step's output against float64 from the last 4 inputs, and the state, which must
 *    hold exactly the last 3 inputs;
 *  - LinearAttention: the state and that step's output of ORACLE_HEADS heads (a subsample: a
 *    float64 recurrence of all 16 heads would take most of the time budget) against a float64
 *    recurrence carried from step 0 on the same inputs as the kernel (q, k, v, decay, beta as
 *    rounded to the activation dtype).
 * Errors are max|got - ref| / max|ref| over the checked tensor; the maxima over the run are
 * printed. Resident memory is read after the first check (everything allocated) and at the end;
 * growth beyond RSS_GROWTH_LIMIT fails (a leak of one small block per step would exceed it).
 *
 * Usage: linattn-soak [steps] (default 100000); LINATTN_SOAK_DTYPES (default "f32,bf16").
 * Prints "soak: N passed, N failed" (testkit) and exits non-zero on failure.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "linattn.h"
#include "testkit.h"

enum { HEADS = 16, DK = 128, DV = 128, TAPS = 4, CHANNELS = 2 * HEADS * DK + HEADS * DV, CHECK_EVERY = 1000 };
static const int oracle_heads[] = {0, 15}; /* head 15 has the slowest decay (longest memory) */
#define NUM_ORACLE_HEADS ((int)(sizeof oracle_heads / sizeof oracle_heads[0]))
#define RSS_GROWTH_LIMIT (1024.0 * 1024.0)

/* Error bounds (max|diff| / max|ref|). fp32: the fused kernels' rounding is ~1e-6 relative and
 * does not grow with the number of steps for a contractive recurrence (decay < 1, unit keys,
 * beta <= 1): 1e-4 leaves a wide margin. bf16: the outputs are rounded once (2^-9 relative),
 * but the bf16 state is rounded at every step and those roundings add up like a random walk over
 * the memory of the slowest head (decay ~0.01 per step: ~100 steps), about sqrt(100) 2^-9 = 2e-2
 * of an element; 5e-2 bounds that. A wrong head, a stale or undecayed state gives O(1) errors.
 * The conv has one rounding of a 4-term sum. */
static double la_bound(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 1e-4 : 5e-2; }
static double conv_bound(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 1e-5 : 8e-3; }

static double resident_bytes(void) {
  long pages = 0, resident = 0;
  FILE* f = fopen("/proc/self/statm", "r");
  if (!f) return -1.0;
  if (fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
  fclose(f);
  return resident < 0 ? -1.0 : (double)resident * (double)sysconf(_SC_PAGESIZE);
}

static double softplus(double x) { return x > 20.0 ? x : log1p(exp(x)); }

/* Element i of a packed f32 or bf16 array (the testkit's accessors handle any layout and dtype,
 * too slowly for the tens of thousands of elements a step touches). */
static inline double load(const void* base, int64_t i, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) return ((const float*)base)[i];
  const uint32_t bits = (uint32_t)((const uint16_t*)base)[i] << 16;
  float f;
  memcpy(&f, &bits, 4);
  return f;
}
/* Stores x rounded to dt (via fp32, nearest even; no NaN or inf here) and returns the stored value. */
static inline double store(void* base, int64_t i, linattn_dtype dt, double x) {
  float f = (float)x;
  if (dt == LINATTN_DTYPE_F32) {
    ((float*)base)[i] = f;
    return f;
  }
  uint32_t bits;
  memcpy(&bits, &f, 4);
  bits = (bits + 0x7fffu + ((bits >> 16) & 1u)) & 0xffff0000u;
  ((uint16_t*)base)[i] = (uint16_t)(bits >> 16);
  memcpy(&f, &bits, 4);
  return f;
}

typedef struct soak_layer {
  linattn_dtype dt;
  linattn_context* ctx;
  tk_tensor x, conv_w, conv_state, y, q, k, decay, beta, o, state;
  linattn_tensor v_view;                 /* v: channels [4096, 6144) of the conv output */
  double history[TAPS][CHANNELS];        /* the last TAPS inputs as stored (row TAPS-1 newest) */
  double decay_scale[HEADS];             /* decay = -decay_scale * softplus(N(0,1) + 0.5) */
  double* oracle_state;                  /* (NUM_ORACLE_HEADS, DK, DV) float64 */
  double max_conv_err, max_la_state_err, max_la_out_err;
} soak_layer;

static void layer_init(soak_layer* L, linattn_dtype dt, tk_rng* rng) {
  memset(L, 0, sizeof *L);
  L->dt = dt;
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 2;
  if (linattn_context_create(&o, &L->ctx) != LINATTN_SUCCESS) tk_fatal("context_create: %s", linattn_last_error());
  const int64_t xd[3] = {1, CHANNELS, 1}, wd[3] = {CHANNELS, 1, TAPS}, sd[3] = {1, CHANNELS, TAPS - 1};
  const int64_t qd[3] = {1, 1, HEADS * DK}, hd[3] = {1, 1, HEADS}, std4[4] = {1, HEADS, DK, DV};
  L->x = tk_alloc(dt, 3, xd);
  L->conv_w = tk_alloc(dt, 3, wd);
  L->conv_state = tk_alloc(dt, 3, sd);
  L->y = tk_alloc(dt, 3, xd);
  L->q = tk_alloc(dt, 3, qd);
  L->k = tk_alloc(dt, 3, qd);
  L->decay = tk_alloc(dt, 3, hd);
  L->beta = tk_alloc(dt, 3, hd);
  L->o = tk_alloc(dt, 3, qd);
  L->state = tk_alloc(dt, 4, std4);
  L->v_view = linattn_make_tensor((char*)L->y.data + (size_t)(2 * HEADS * DK) * tk_dtype_size(dt), dt, 3, qd);
  for (int64_t i = 0; i < CHANNELS * TAPS; i++) tk_set(&L->conv_w, i, tk_normal(rng) / sqrt((double)TAPS));
  for (int64_t i = 0; i < CHANNELS * (TAPS - 1); i++) tk_set(&L->conv_state, i, 0.0);
  for (int64_t i = 0; i < HEADS * DK * DV; i++) tk_set(&L->state, i, 0.0);
  for (int h = 0; h < HEADS; h++) L->decay_scale[h] = 0.1 * exp(log(16.0) * h / (HEADS - 1.0));
  L->decay_scale[HEADS - 1] = 0.01;
  L->oracle_state = (double*)calloc((size_t)NUM_ORACLE_HEADS * DK * DV, sizeof(double));
  if (!L->oracle_state) tk_fatal("out of memory");
}

static void layer_free(soak_layer* L) {
  tk_tensor* ts[] = {&L->x, &L->conv_w, &L->conv_state, &L->y, &L->q, &L->k, &L->decay, &L->beta, &L->o, &L->state};
  for (size_t i = 0; i < sizeof ts / sizeof ts[0]; i++) tk_free(ts[i]);
  free(L->oracle_state);
  linattn_context_destroy(L->ctx);
}

/* One decode step of both ops; false (after a failed check) if a call fails. */
static bool layer_step(soak_layer* L, tk_rng* rng) {
  memmove(L->history[0], L->history[1], sizeof(double) * CHANNELS * (TAPS - 1));
  for (int64_t c = 0; c < CHANNELS; c++) L->history[TAPS - 1][c] = store(L->x.data, c, L->dt, tk_uniform_range(rng, -2.0, 2.0));
  linattn_causal_conv_desc cd;
  linattn_causal_conv_desc_init(&cd);
  cd.activation = LINATTN_ACTIVATION_SILU;
  const linattn_tensor x = tk_desc(&L->x), w = tk_desc(&L->conv_w), cs = tk_desc(&L->conv_state), y = tk_desc(&L->y);
  linattn_status st = linattn_causal_conv_with_state(L->ctx, &cd, &x, &w, NULL, &cs, &y, &cs, NULL, 0);
  if (!tk_check(st == LINATTN_SUCCESS, "conv step failed: %s", linattn_last_error())) return false;

  for (int part = 0; part < 2; part++) { /* q, k: per-head L2 normalisation of the conv output */
    tk_tensor* dst = part == 0 ? &L->q : &L->k;
    for (int h = 0; h < HEADS; h++) {
      const int64_t c0 = (int64_t)part * HEADS * DK + (int64_t)h * DK;
      double ss = 0.0, yv[DK];
      for (int i = 0; i < DK; i++) yv[i] = load(L->y.data, c0 + i, L->dt), ss += yv[i] * yv[i];
      const double inv = 1.0 / sqrt(ss + 1e-6);
      for (int i = 0; i < DK; i++) store(dst->data, (int64_t)h * DK + i, L->dt, yv[i] * inv);
    }
  }
  for (int h = 0; h < HEADS; h++) {
    store(L->decay.data, h, L->dt, -L->decay_scale[h] * softplus(tk_normal(rng) + 0.5));
    store(L->beta.data, h, L->dt, 1.0 / (1.0 + exp(-tk_normal(rng))));
  }
  linattn_linear_attention_desc ld;
  linattn_linear_attention_desc_init(&ld);
  ld.q_num_heads = ld.kv_num_heads = HEADS;
  const linattn_tensor q = tk_desc(&L->q), k = tk_desc(&L->k), g = tk_desc(&L->decay), b = tk_desc(&L->beta);
  const linattn_tensor o = tk_desc(&L->o), s = tk_desc(&L->state);
  st = linattn_linear_attention(L->ctx, &ld, &q, &k, &L->v_view, &s, &g, &b, &o, &s, NULL, 0);
  return tk_check(st == LINATTN_SUCCESS, "LinearAttention step failed: %s", linattn_last_error());
}

/* The float64 recurrence of the oracle heads over this step's inputs (as the kernel read them):
 * S = a S + k u^T with u = beta (v - a S^T k); returns nothing, the output is formed at checks. */
static void oracle_step(soak_layer* L) {
  double p[DV], kk[DK];
  for (int oh = 0; oh < NUM_ORACLE_HEADS; oh++) {
    const int h = oracle_heads[oh];
    double* S = L->oracle_state + (size_t)oh * DK * DV;
    const double a = exp(load(L->decay.data, h, L->dt)), be = load(L->beta.data, h, L->dt);
    for (int i = 0; i < DK; i++) kk[i] = load(L->k.data, (int64_t)h * DK + i, L->dt);
    for (int j = 0; j < DV; j++) p[j] = 0.0;
    for (int i = 0; i < DK; i++)
      for (int j = 0; j < DV; j++) p[j] += S[i * DV + j] * kk[i];
    for (int j = 0; j < DV; j++) p[j] = be * (load(L->v_view.data, (int64_t)h * DV + j, L->dt) - a * p[j]);
    for (int i = 0; i < DK; i++)
      for (int j = 0; j < DV; j++) S[i * DV + j] = a * S[i * DV + j] + kk[i] * p[j];
  }
}

static double rel_err(double max_diff, double max_ref) { return max_diff / (max_ref > 0.0 ? max_ref : 1.0); }

static void check_conv(soak_layer* L, long step) {
  double max_diff = 0.0, max_ref = 0.0;
  bool state_exact = true;
  for (int64_t c = 0; c < CHANNELS; c++) {
    double acc = 0.0;
    for (int j = 0; j < TAPS; j++) acc += tk_get(&L->conv_w, c * TAPS + j) * L->history[j][c];
    const double pre = tk_round(acc, L->dt), ref = pre / (1.0 + exp(-pre));
    const double d = fabs(tk_get(&L->y, c) - ref);
    if (!(d <= max_diff)) max_diff = isnan(d) ? INFINITY : d;
    if (fabs(ref) > max_ref) max_ref = fabs(ref);
    for (int j = 0; j < TAPS - 1; j++)
      if (tk_get(&L->conv_state, c * (TAPS - 1) + j) != L->history[j + 1][c]) state_exact = false;
  }
  const double err = rel_err(max_diff, max_ref);
  if (err > L->max_conv_err) L->max_conv_err = err;
  tk_check(err <= conv_bound(L->dt), "step %ld: conv output error %.3g > %.3g", step, err, conv_bound(L->dt));
  tk_check(state_exact, "step %ld: conv state does not hold the last %d inputs", step, TAPS - 1);
}

static void check_la(soak_layer* L, long step) {
  const double scale = 1.0 / sqrt((double)DK);
  double sd = 0.0, sr = 0.0, od = 0.0, orf = 0.0;
  for (int oh = 0; oh < NUM_ORACLE_HEADS; oh++) {
    const int h = oracle_heads[oh];
    const double* S = L->oracle_state + (size_t)oh * DK * DV;
    for (int64_t e = 0; e < DK * DV; e++) {
      const double d = fabs(tk_get(&L->state, (int64_t)h * DK * DV + e) - S[e]);
      if (!(d <= sd)) sd = isnan(d) ? INFINITY : d;
      if (fabs(S[e]) > sr) sr = fabs(S[e]);
    }
    for (int j = 0; j < DV; j++) { /* o = scale S^T q with the updated state */
      double ref = 0.0;
      for (int i = 0; i < DK; i++) ref += S[i * DV + j] * tk_get(&L->q, (int64_t)h * DK + i);
      ref *= scale;
      const double d = fabs(tk_get(&L->o, (int64_t)h * DV + j) - ref);
      if (!(d <= od)) od = isnan(d) ? INFINITY : d;
      if (fabs(ref) > orf) orf = fabs(ref);
    }
  }
  const double se = rel_err(sd, sr), oe = rel_err(od, orf), bound = la_bound(L->dt);
  if (se > L->max_la_state_err) L->max_la_state_err = se;
  if (oe > L->max_la_out_err) L->max_la_out_err = oe;
  tk_check(se <= bound, "step %ld: recurrent state error %.3g > %.3g (max|ref| %.3g)", step, se, bound, sr);
  tk_check(oe <= bound, "step %ld: output error %.3g > %.3g (max|ref| %.3g)", step, oe, bound, orf);
}

static void soak(linattn_dtype dt, long steps, uint64_t seed) {
  soak_layer* L = (soak_layer*)calloc(1, sizeof *L);
  if (!L) tk_fatal("out of memory");
  tk_rng rng;
  tk_rng_init(&rng, seed);
  const double rss_start = resident_bytes();
  layer_init(L, dt, &rng);
  double rss_warm = -1.0, t0 = tk_seconds();
  long step = 0;
  for (step = 1; step <= steps; step++) {
    if (!layer_step(L, &rng)) break;
    oracle_step(L);
    if (step % CHECK_EVERY == 0 || step == steps) {
      check_conv(L, step);
      check_la(L, step);
      if (rss_warm < 0.0) rss_warm = resident_bytes();
      if (tk_failed() > 0) break;
    }
  }
  const double rss_end = resident_bytes(), secs = tk_seconds() - t0;
  tk_note("%s: %ld decode steps in %.1f s (%.0f us/step incl. checks; conv C %d k %d + gated_delta H %d d %d, "
          "2 threads, states in place; float64 oracle on heads 0 and 15 of %d)",
          tk_dtype_str(dt), step - 1, secs, 1e6 * secs / (double)(step > 1 ? step - 1 : 1), CHANNELS, TAPS, HEADS, DK,
          HEADS);
  tk_note("%s: max relative error: conv output %.3g (bound %.3g), recurrent state %.3g, output %.3g (bound %.3g)",
          tk_dtype_str(dt), L->max_conv_err, conv_bound(dt), L->max_la_state_err, L->max_la_out_err, la_bound(dt));
  tk_note("%s: resident memory: %.1f MiB at start, %.1f MiB after step %d, %.1f MiB at the end (growth %+.0f KiB)",
          tk_dtype_str(dt), rss_start / 1048576.0, rss_warm / 1048576.0, CHECK_EVERY, rss_end / 1048576.0,
          (rss_end - rss_warm) / 1024.0);
  tk_check(rss_warm > 0.0 && rss_end - rss_warm <= RSS_GROWTH_LIMIT,
           "%s: resident memory grew by %.0f KiB (limit %.0f KiB)", tk_dtype_str(dt), (rss_end - rss_warm) / 1024.0,
           RSS_GROWTH_LIMIT / 1024.0);
  layer_free(L);
  free(L);
}

int main(int argc, char** argv) {
  const long steps = argc > 1 ? atol(argv[1]) : 100000;
  const char* dtypes = getenv("LINATTN_SOAK_DTYPES");
  if (!dtypes) dtypes = "f32,bf16";
  tk_begin("soak");
  const uint64_t seed = tk_seed();
  if (steps < 1) tk_fatal("steps must be positive (got %ld)", steps);
  if (strstr(dtypes, "f32")) soak(LINATTN_DTYPE_F32, steps, seed);
  if (strstr(dtypes, "bf16")) soak(LINATTN_DTYPE_BF16, steps, seed + 1);
  return tk_finish();
}
