/*
 * The lock-step prefill path of the operator layer (a task advances its heads together, one
 * token tile at a time) engages from T = 64 tokens (LA_LOCKSTEP_MIN_TOKENS in
 * src/api/linear_attention.c). It must give the same bits as the per-head path: one call over
 * T = 1024 (lock-step) == calls over 64 (lock-step, at the threshold), 32 tokens at a time up
 * to 512 (per head, below it) and 512 (lock-step); every split falls on a kernel tile
 * boundary. It must also agree with the reference kernels. Shape: Qwen3.5-0.8B (H = 16,
 * d = 128), gated_delta, per-head and per-key decay, every fast ISA, 1 and 2 threads, f32
 * and bf16 activations; and H = 9, whose lock-step groups are uneven (1 thread: 8 + 1 units,
 * the last alone; 2 threads: 4 and 5), so each step prefetches for a next step that may be
 * in the same round, the next round or none.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linattn.h"
#include "testkit.h"

enum { D = 128, FIRST = 64, SHORT = 32 };
static int H = 16; /* heads (q = kv) of the case being run */
/* T of the one call and where its last split starts: 1024 and 512; a reduced run (qemu,
 * LINATTN_TEST_REDUCED) takes 192 and 128, the same paths (64 at the threshold, 32-token calls
 * per head below it, then 64 lock-step tokens) on a sixth of the data. */
static int64_t TT = 1024, HALF = 512;

/* Sanitizer builds (and qemu via LINATTN_TEST_CASES) run one configuration per ISA: the
 * path is the same, the data larger than the sanitizers like. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define LOCKSTEP_QUICK 1
#else
#define LOCKSTEP_QUICK 0
#endif

/* max |a - b| (NaN propagates: any NaN gives NaN) and max |b|. Kept out of line and plain:
 * gcc 12 for aarch64 crashes vectorising these reductions when inlined into main. */
__attribute__((noinline)) static void max_abs_diff(const double* a, const double* b, size_t n, double* diff,
                                                   double* bmax) {
  double d = 0, m = 0;
  for (size_t i = 0; i < n; i++) {
    const double e = fabs(a[i] - b[i]);
    if (!(e <= d)) d = e;
    if (fabs(b[i]) > m) m = fabs(b[i]);
  }
  *diff = d;
  *bmax = m;
}

static double as_double(const void* p, size_t i, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) return ((const float*)p)[i];
  uint32_t u = (uint32_t)((const uint16_t*)p)[i] << 16;
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static void fill(tk_rng* r, float* x, size_t n, double sd) {
  for (size_t i = 0; i < n; i++) x[i] = (float)(sd * tk_normal(r));
}

static void normalise_rows(float* x, size_t rows) {
  for (size_t i = 0; i < rows; i++) {
    double ss = 0;
    for (int j = 0; j < D; j++) ss += (double)x[i * D + j] * x[i * D + j];
    for (int j = 0; j < D; j++) x[i * D + j] = (float)(x[i * D + j] / sqrt(ss));
  }
}

/* Runs tokens [t0, t0 + n) with the state carried in `state` (in place). Activations are
 * converted to dt in a packed copy. */
static linattn_status run(linattn_context* ctx, bool per_key, linattn_dtype dt, const float* q, const float* k,
                          const float* v, const float* g, const float* b, int64_t t0, int64_t n, float* state,
                          void* out) {
  const size_t es = linattn_dtype_size(dt);
  const int64_t gw = per_key ? H * D : H;
  void* buf[5];
  const float* src[5] = {q, k, v, g, b};
  const int64_t width[5] = {H * D, H * D, H * D, gw, H};
  for (int i = 0; i < 5; i++) {
    buf[i] = malloc((size_t)(n * width[i]) * es);
    for (int64_t e = 0; e < n * width[i]; e++) {
      float f = src[i][t0 * width[i] + e];
      if (dt == LINATTN_DTYPE_F32) ((float*)buf[i])[e] = f;
      else { /* bf16 by truncation is fine here: both paths see the same values */
        uint32_t u; memcpy(&u, &f, 4); ((uint16_t*)buf[i])[e] = (uint16_t)(u >> 16);
      }
    }
  }
  int64_t qd[3] = {1, n, H * D}, gd[3] = {1, n, gw}, bd[3] = {1, n, H}, sd[4] = {1, H, D, D};
  linattn_tensor tq = linattn_make_tensor(buf[0], dt, 3, qd), tk = linattn_make_tensor(buf[1], dt, 3, qd),
                 tv = linattn_make_tensor(buf[2], dt, 3, qd), tg = linattn_make_tensor(buf[3], dt, 3, gd),
                 tb = linattn_make_tensor(buf[4], dt, 3, bd), to = linattn_make_tensor(out, dt, 3, qd),
                 ts = linattn_make_tensor(state, LINATTN_DTYPE_F32, 4, sd);
  linattn_linear_attention_desc desc;
  linattn_linear_attention_desc_init(&desc);
  desc.q_num_heads = H;
  desc.kv_num_heads = H;
  linattn_status st = linattn_linear_attention(ctx, &desc, &tq, &tk, &tv, &ts, &tg, &tb, &to, &ts, NULL, 0);
  for (int i = 0; i < 5; i++) free(buf[i]);
  return st;
}

int main(void) {
  tk_begin("test_la_lockstep");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  const int quick = LOCKSTEP_QUICK || getenv("LINATTN_TEST_CASES") != NULL;
  if (tk_reduced()) TT = 192, HALF = 128;
  tk_note("T = %lld, split 64 + %lld x 32 + %lld", (long long)TT, (long long)((HALF - FIRST) / SHORT),
          (long long)(TT - HALF));
  const int heads[] = {16, 9};
  for (int hi = 0; hi < (quick ? 1 : 2); hi++) {
    H = heads[hi];
    const size_t nqk = (size_t)TT * H * D;
    float *q = malloc(nqk * 4), *k = malloc(nqk * 4), *v = malloc(nqk * 4), *g = malloc(nqk * 4);
    float* b = malloc((size_t)TT * H * 4);
    fill(&r, q, nqk, 1.0); normalise_rows(q, (size_t)TT * H);
    fill(&r, k, nqk, 1.0); normalise_rows(k, (size_t)TT * H);
    fill(&r, v, nqk, 1.0);
    for (size_t i = 0; i < nqk; i++) g[i] = (float)(-0.2 * tk_uniform(&r));
    for (size_t i = 0; i < (size_t)TT * H; i++) b[i] = (float)tk_uniform(&r);
    const size_t ns = (size_t)H * D * D;
    float *s_one = malloc(ns * 4), *s_two = malloc(ns * 4), *s_ref = malloc(ns * 4);
    float *o_one = malloc(nqk * 4), *o_two = malloc(nqk * 4), *o_ref = malloc(nqk * 4);

    const linattn_dtype dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_BF16};
    for (int per_key = 0; per_key < (quick ? 1 : 2); per_key++)
      for (int di = 0; di < (quick ? 1 : 2); di++) {
        const linattn_dtype dt = dts[di];
        const size_t es = linattn_dtype_size(dt);
        linattn_context_options ro;
        linattn_context_options_init(&ro);
        ro.isa = LINATTN_ISA_REFERENCE;
        ro.num_threads = 2;
        linattn_context* rctx;
        if (linattn_context_create(&ro, &rctx)) tk_fatal("reference context: %s", linattn_last_error());
        memset(s_ref, 0, ns * 4);
        tk_check(run(rctx, per_key, dt, q, k, v, g, b, 0, TT, s_ref, o_ref) == LINATTN_SUCCESS, "reference call: %s",
                 linattn_last_error());
        linattn_context_destroy(rctx);
        double* da = malloc(nqk * sizeof(double));
        double* db = malloc(nqk * sizeof(double));
        for (int isa = LINATTN_ISA_REFERENCE + 1; isa <= linattn_isa_count(); isa++) { /* every fused family */
          if (!linattn_isa_available((linattn_isa)isa)) continue;
          for (int threads = quick ? 2 : 1; threads <= 2; threads++) {
            tk_context("H %d, isa %s, %s decay, %s, %d thread(s)", H, linattn_isa_name((linattn_isa)isa),
                       per_key ? "per-key" : "per-head", linattn_dtype_name(dt), threads);
            linattn_context_options o;
            linattn_context_options_init(&o);
            o.isa = (linattn_isa)isa;
            o.num_threads = threads;
            linattn_context* ctx;
            if (linattn_context_create(&o, &ctx)) tk_fatal("context: %s", linattn_last_error());
            memset(s_one, 0, ns * 4);
            memset(s_two, 0, ns * 4);
            memset(o_one, 0xff, nqk * es); /* NaN */
            memset(o_two, 0xff, nqk * es);
            tk_check(run(ctx, per_key, dt, q, k, v, g, b, 0, TT, s_one, o_one) == LINATTN_SUCCESS, "one call: %s",
                     linattn_last_error());
            bool split_ok = run(ctx, per_key, dt, q, k, v, g, b, 0, FIRST, s_two, o_two) == LINATTN_SUCCESS;
            for (int64_t t0 = FIRST; t0 < HALF && split_ok; t0 += SHORT)
              split_ok = run(ctx, per_key, dt, q, k, v, g, b, t0, SHORT, s_two,
                             (char*)o_two + (size_t)t0 * H * D * es) == LINATTN_SUCCESS;
            split_ok = split_ok && run(ctx, per_key, dt, q, k, v, g, b, HALF, TT - HALF, s_two,
                                       (char*)o_two + (size_t)HALF * H * D * es) == LINATTN_SUCCESS;
            tk_check(split_ok, "split calls: %s", linattn_last_error());
            tk_check(memcmp(o_one, o_two, nqk * es) == 0, "output: one call differs from the split calls (bits)");
            tk_check(memcmp(s_one, s_two, ns * 4) == 0, "state: one call differs from the split calls (bits)");
            double serr, smax, oerr, omax;
            for (size_t i = 0; i < ns; i++) { da[i] = s_one[i]; db[i] = s_ref[i]; }
            max_abs_diff(da, db, ns, &serr, &smax);
            tk_check(serr <= 1e-5 * smax, "state vs reference kernels: %.3g of max %.3g", serr, smax);
            for (size_t i = 0; i < nqk; i++) { da[i] = as_double(o_one, i, dt); db[i] = as_double(o_ref, i, dt); }
            max_abs_diff(da, db, nqk, &oerr, &omax);
            /* bf16: both sides are bf16 roundings of fp32 values within 1e-5 max: one bf16 spacing,
             * which below max is at most 2^(floor(log2 max) - 7) <= max * 2^-7 */
            const double otol = dt == LINATTN_DTYPE_F32 ? 1e-5 * omax : 1e-5 * omax + omax * 0x1p-7;
            tk_check(oerr <= otol, "output vs reference kernels: %.3g of max %.3g", oerr, omax);
            linattn_context_destroy(ctx);
          }
        }
        free(da);
        free(db);
      }
    free(q); free(k); free(v); free(g); free(b);
    free(s_one); free(s_two); free(s_ref); free(o_one); free(o_two); free(o_ref);
  }
  return tk_finish();
}
