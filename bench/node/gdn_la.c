/*
 * linattn-gdn-la: GatedDeltaNet against the plain gated_delta LinearAttention it runs on, the
 * library calls alone, one thread.
 *
 *   linattn-gdn-la [T,T,...] [f32,f16,bf16] [H] [d] [rounds x 64 tokens] [both|gdn|la]
 *
 * GatedDeltaNet: one request of T tokens, q/k/v (T, H, d), softplus gate with a_log / dt_bias,
 * beta sigmoid, qk_l2_norm, fp32 decay and beta, V-major state (1, H, d, d), separate
 * final_state (Qwen3.5's layer as ONNX Runtime's GatedDeltaNet runs it).
 * LinearAttention: the same recurrence on pre-normalised inputs (q, k divided by their norms,
 * the log-decay and beta computed beforehand in float64 and given in the activation dtype),
 * K-major state, com.microsoft form, separate present_state.
 * The two calls alternate, each round timed in thread CPU time (CLOCK_THREAD_CPUTIME_ID: a
 * preempted call is not charged the other process's time); prints the medians, the minima and
 * GDN/LA of the medians, and the largest difference of the two outputs relative to the largest
 * output (they compute the same function in a different order of operations), and a hash of
 * GatedDeltaNet's output and final state bits (to tell whether a change kept them).
 * Rounds: max(9, rounds x 64 / T), rounds default 400. gdn / la: only that call (for a profiler).
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "convert.h"
#include "linattn.h"

static double thread_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static double gauss(unsigned* seed) { /* sum of 4 uniforms, variance 1 */
  double s = 0.0;
  for (int i = 0; i < 4; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    s += (double)(*seed >> 8) / 16777216.0 - 0.5;
  }
  return s * sqrt(3.0);
}

static void* xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) {
    fprintf(stderr, "out of memory\n");
    exit(2);
  }
  return p;
}

/* n doubles to dtype dt (round to nearest even, as the library's conversions). */
static void* to_dtype(const double* x, size_t n, linattn_dtype dt) {
  void* p = xmalloc(n * linattn_dtype_size(dt));
  for (size_t i = 0; i < n; i++) linattn_store_f32(p, (int64_t)i, dt, (float)x[i]);
  return p;
}

static uint64_t fnv1a(uint64_t h, const void* p, size_t n) {
  for (size_t i = 0; i < n; i++) h = (h ^ ((const unsigned char*)p)[i]) * 1099511628211ull;
  return h;
}

static int compare_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

static double median(double* v, int n) {
  qsort(v, (size_t)n, sizeof *v, compare_double);
  return v[n / 2];
}

static linattn_dtype dtype_of(const char* s) {
  if (!strcmp(s, "f32")) return LINATTN_DTYPE_F32;
  if (!strcmp(s, "f16")) return LINATTN_DTYPE_F16;
  if (!strcmp(s, "bf16")) return LINATTN_DTYPE_BF16;
  fprintf(stderr, "dtype %s: expected f32, f16 or bf16\n", s);
  exit(2);
}

static void check(linattn_status s) {
  if (s != LINATTN_SUCCESS) {
    fprintf(stderr, "%s\n", linattn_last_error());
    exit(1);
  }
}

static void run_case(linattn_context* ctx, int64_t T, const char* dts, int64_t H, int64_t d, int rounds64, int which) {
  const linattn_dtype dt = dtype_of(dts);
  const size_t nx = (size_t)(T * H * d), ng = (size_t)(T * H), ns = (size_t)(H * d * d);
  unsigned seed = (unsigned)(T * 7919 + (int64_t)dt);
  double *q = xmalloc(nx * 8), *k = xmalloc(nx * 8), *v = xmalloc(nx * 8);
  double *x = xmalloc(ng * 8), *b = xmalloc(ng * 8), *s0 = xmalloc(ns * 8);
  float *a_log = xmalloc((size_t)H * 4), *dt_bias = xmalloc((size_t)H * 4);
  for (size_t i = 0; i < nx; i++) q[i] = gauss(&seed), k[i] = gauss(&seed), v[i] = gauss(&seed);
  for (size_t i = 0; i < ng; i++) x[i] = gauss(&seed), b[i] = gauss(&seed);
  for (size_t i = 0; i < ns; i++) s0[i] = 0.1 * gauss(&seed);
  for (int64_t h = 0; h < H; h++) a_log[h] = (float)(0.5 * gauss(&seed)), dt_bias[h] = (float)gauss(&seed);
  /* GatedDeltaNet inputs: q/k/v rounded to dt; decay, beta, state fp32 */
  void *gq = to_dtype(q, nx, dt), *gk = to_dtype(k, nx, dt), *gv = to_dtype(v, nx, dt);
  float *gx = to_dtype(x, ng, LINATTN_DTYPE_F32), *gb = to_dtype(b, ng, LINATTN_DTYPE_F32);
  float* gs = to_dtype(s0, ns, LINATTN_DTYPE_F32);
  /* LinearAttention inputs from the same rounded values */
  double *nq = xmalloc(nx * 8), *nk = xmalloc(nx * 8), *lg = xmalloc(ng * 8), *lb = xmalloc(ng * 8), *ks = xmalloc(ns * 8);
  for (size_t r = 0; r < (size_t)(T * H); r++) {
    double sq = 0.0, sk = 0.0;
    for (int64_t i = 0; i < d; i++) {
      const double a = linattn_load_f32(gq, (int64_t)r * d + i, dt), c = linattn_load_f32(gk, (int64_t)r * d + i, dt);
      sq += a * a, sk += c * c;
    }
    for (int64_t i = 0; i < d; i++) {
      nq[r * d + i] = linattn_load_f32(gq, (int64_t)r * d + i, dt) / sqrt(sq + 1e-12);
      nk[r * d + i] = linattn_load_f32(gk, (int64_t)r * d + i, dt) / sqrt(sk + 1e-12);
    }
  }
  for (size_t i = 0; i < ng; i++) {
    const int64_t h = (int64_t)i % H;
    const double xi = (double)gx[i] + dt_bias[h];
    lg[i] = -exp((double)a_log[h]) * (xi > 20 ? xi : log1p(exp(xi)));
    lb[i] = 1.0 / (1.0 + exp(-(double)gb[i]));
  }
  for (int64_t h = 0; h < H; h++)
    for (int64_t r = 0; r < d; r++)
      for (int64_t c = 0; c < d; c++) ks[(h * d + c) * d + r] = gs[(h * d + r) * d + c];
  void *lq = to_dtype(nq, nx, dt), *lk = to_dtype(nk, nx, dt), *ldc = to_dtype(lg, ng, dt), *lbt = to_dtype(lb, ng, dt);
  float* lst = to_dtype(ks, ns, LINATTN_DTYPE_F32);
  void *go = calloc(nx, 4), *lo = calloc(nx, 4);
  if (!go || !lo) exit(2);
  float *gfin = xmalloc(ns * 4), *lpres = xmalloc(ns * 4);

  const int32_t cu[2] = {0, (int32_t)T};
  const int64_t rows[3] = {T, H, d}, gate[2] = {T, H}, st[4] = {1, H, d, d}, per_head[1] = {H};
  const int64_t la_rows[3] = {1, T, H * d}, la_gate[3] = {1, T, H};
  linattn_tensor tq = linattn_make_tensor(gq, dt, 3, rows), tk = linattn_make_tensor(gk, dt, 3, rows);
  linattn_tensor tv = linattn_make_tensor(gv, dt, 3, rows), to = linattn_make_tensor(go, dt, 3, rows);
  linattn_tensor tx = linattn_make_tensor(gx, LINATTN_DTYPE_F32, 2, gate), tb = linattn_make_tensor(gb, LINATTN_DTYPE_F32, 2, gate);
  linattn_tensor ts = linattn_make_tensor(gs, LINATTN_DTYPE_F32, 4, st), tf = linattn_make_tensor(gfin, LINATTN_DTYPE_F32, 4, st);
  linattn_tensor ta = linattn_make_tensor(a_log, LINATTN_DTYPE_F32, 1, per_head);
  linattn_tensor tt = linattn_make_tensor(dt_bias, LINATTN_DTYPE_F32, 1, per_head);
  linattn_tensor uq = linattn_make_tensor(lq, dt, 3, la_rows), uk = linattn_make_tensor(lk, dt, 3, la_rows);
  linattn_tensor uv = linattn_make_tensor(gv, dt, 3, la_rows), uo = linattn_make_tensor(lo, dt, 3, la_rows);
  linattn_tensor ud = linattn_make_tensor(ldc, dt, 3, la_gate), ub = linattn_make_tensor(lbt, dt, 3, la_gate);
  linattn_tensor us = linattn_make_tensor(lst, LINATTN_DTYPE_F32, 4, st), up = linattn_make_tensor(lpres, LINATTN_DTYPE_F32, 4, st);
  linattn_linear_attention_desc la;
  linattn_linear_attention_desc_init(&la);
  la.q_num_heads = la.kv_num_heads = H;
  la.flags = LINATTN_LA_ORT_CONTRIB;
  linattn_gated_delta_net_desc g;
  linattn_gated_delta_net_desc_init(&g);
  g.gate_activation = LINATTN_GDN_GATE_SOFTPLUS;
  g.beta_activation = LINATTN_GDN_BETA_SIGMOID;
  g.qk_l2_norm = 1;

  int rounds = (int)(rounds64 * (int64_t)64 / T);
  if (rounds < 9) rounds = 9;
  double *tg = xmalloc((size_t)rounds * 8), *tl = xmalloc((size_t)rounds * 8);
  for (int r = -2 - rounds / 10; r < rounds; r++) { /* the first tenth warms caches and workspaces */
    double t0 = thread_ns();
    if (which != 2)
      check(linattn_gated_delta_net(ctx, &g, &tq, &tk, &tv, cu, 2, &tx, &tb, &ts, &ta, &tt, NULL, &to, &tf, NULL, NULL, 0));
    double t1 = thread_ns();
    if (which != 1) check(linattn_linear_attention(ctx, &la, &uq, &uk, &uv, &us, &ud, &ub, &uo, &up, NULL, 0));
    double t2 = thread_ns();
    if (r >= 0) tg[r] = t1 - t0, tl[r] = t2 - t1;
  }
  double diff = 0.0, amax = 0.0;
  for (size_t i = 0; i < nx; i++) {
    const double a = linattn_load_f32(go, (int64_t)i, dt), c = linattn_load_f32(lo, (int64_t)i, dt);
    diff = fabs(a - c) > diff ? fabs(a - c) : diff;
    amax = fabs(c) > amax ? fabs(c) : amax;
  }
  const double mg = median(tg, rounds), ml = median(tl, rounds);
  const uint64_t bits = fnv1a(fnv1a(14695981039346656037ull, go, nx * linattn_dtype_size(dt)), gfin, ns * 4);
  printf("%-5s %5lld %6d %12.1f %12.1f %10.1f %10.1f %7.3f %9.1e %016llx\n", dts, (long long)T, rounds, mg / 1e3,
         ml / 1e3, tg[0] / 1e3, tl[0] / 1e3, mg / ml, diff / (amax > 0 ? amax : 1), (unsigned long long)bits);
  fflush(stdout);
  free(q), free(k), free(v), free(x), free(b), free(s0), free(a_log), free(dt_bias), free(gq), free(gk), free(gv);
  free(gx), free(gb), free(gs), free(nq), free(nk), free(lg), free(lb), free(ks), free(lq), free(lk), free(ldc);
  free(lbt), free(lst), free(go), free(lo), free(gfin), free(lpres), free(tg), free(tl);
}

int main(int argc, char** argv) {
  const char* Ts = argc > 1 ? argv[1] : "64,512,4096";
  const char* dts = argc > 2 ? argv[2] : "f32,f16,bf16";
  const int64_t H = argc > 3 ? atoll(argv[3]) : 16, d = argc > 4 ? atoll(argv[4]) : 128;
  const int rounds64 = argc > 5 ? atoi(argv[5]) : 400;
  const int which = argc > 6 ? (!strcmp(argv[6], "gdn") ? 1 : !strcmp(argv[6], "la") ? 2 : 0) : 0;
  if (H < 1 || d < 1 || rounds64 < 1) {
    fprintf(stderr, "usage: %s [T,T,...] [f32,f16,bf16] [H] [d] [rounds]\n", argv[0]);
    return 2;
  }
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 1;
  linattn_context* ctx = NULL;
  check(linattn_context_create(&o, &ctx));
  printf("# GatedDeltaNet vs LinearAttention, %lld heads of %lld, 1 thread, thread CPU time in us\n", (long long)H,
         (long long)d);
  printf("%-5s %5s %6s %12s %12s %10s %10s %7s %9s %16s\n", "dtype", "T", "rounds", "GDN median", "LA median",
         "GDN min", "LA min", "GDN/LA", "out diff", "GDN bits");
  char dbuf[64];
  snprintf(dbuf, sizeof dbuf, "%s", dts);
  char* dsave = NULL;
  for (char* ds = strtok_r(dbuf, ",", &dsave); ds; ds = strtok_r(NULL, ",", &dsave)) {
    char tbuf[128];
    snprintf(tbuf, sizeof tbuf, "%s", Ts);
    char* save = NULL;
    for (char* t = strtok_r(tbuf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
      const int64_t T = atoll(t);
      if (T < 1) continue;
      run_case(ctx, T, ds, H, d, rounds64, which);
    }
  }
  linattn_context_destroy(ctx);
  return 0;
}
