/*
 * Thread-count independence: for both ops and every available ISA, results must be
 * bit-identical for 1, 2, 3 and 7 threads with the built-in pool, with a host parallel_for
 * that runs the tasks in reverse order on the caller, and with a host parallel_for that runs
 * them on its own pthreads. Shapes include B * H_kv = 1 (only column splits available) and
 * realistic conv channel counts. Finally several threads share one pooled context at once
 * (the pool is busy for all but one of them; the others run inline) and must still get the
 * single-thread bits.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

/* ------------------------------------------------------------------ host parallel-fors */

static atomic_long host_calls, host_tasks;

static void host_reverse(void* host_data, linattn_task_fn task, void* arg, size_t n) {
  (void)host_data;
  atomic_fetch_add(&host_calls, 1);
  atomic_fetch_add(&host_tasks, (long)n);
  for (size_t i = n; i-- > 0;) task(arg, i);
}

typedef struct pt_job {
  linattn_task_fn task;
  void* arg;
  size_t n;
  atomic_size_t next;
} pt_job;

static void* pt_worker(void* p) {
  pt_job* j = (pt_job*)p;
  for (;;) {
    size_t i = atomic_fetch_add(&j->next, 1);
    if (i >= j->n) break;
    j->task(j->arg, i);
  }
  return NULL;
}

/* Runs the tasks on freshly started pthreads (max_threads from host_data), pulling indices
 * from a shared counter; the caller only waits. */
static void host_pthreads(void* host_data, linattn_task_fn task, void* arg, size_t n) {
  int max_threads = *(const int*)host_data;
  atomic_fetch_add(&host_calls, 1);
  atomic_fetch_add(&host_tasks, (long)n);
  pt_job job = {task, arg, n, 0};
  pthread_t th[16];
  int nt = (int)(n < (size_t)max_threads ? n : (size_t)max_threads);
  if (nt > 16) nt = 16;
  int started = 0;
  for (int i = 0; i < nt; i++)
    if (pthread_create(&th[i], NULL, pt_worker, &job) == 0) started++;
    else break;
  if (started == 0) pt_worker(&job); /* could not start threads: run here */
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
}

enum { MODE_POOL, MODE_HOST_REVERSE, MODE_HOST_PTHREADS };
static const char* mode_names[] = {"pool", "host-reverse", "host-pthreads"};
static int host_thread_counts[8];

static linattn_context* make_ctx(linattn_isa isa, int mode, int threads) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.isa = isa;
  o.num_threads = threads;
  /* store policies change speed only: the pool contexts cover all three against the base */
  if (mode == MODE_POOL) o.state_stores = threads == 2 ? LINATTN_STATE_STORES_STREAMING
                                          : threads == 3 ? LINATTN_STATE_STORES_CACHED : LINATTN_STATE_STORES_AUTO;
  if (mode == MODE_HOST_REVERSE) {
    o.parallel_for = host_reverse;
  } else if (mode == MODE_HOST_PTHREADS) {
    host_thread_counts[threads & 7] = threads;
    o.parallel_for = host_pthreads;
    o.parallel_for_data = &host_thread_counts[threads & 7];
  }
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(&o, &ctx);
  if (st != LINATTN_SUCCESS) tk_fatal("context_create(%s, %d threads): %s", mode_names[mode], threads, linattn_last_error());
  tk_check(linattn_context_num_threads(ctx) == threads, "context reports %d threads, asked %d",
           (int)linattn_context_num_threads(ctx), threads);
  return ctx;
}

/* ------------------------------------------------------------------ problems */

typedef struct la_problem {
  const char* name;
  int64_t B, T, Hq, Hkv, Nk, dk, dv;
  linattn_update_rule rule;
  int decay_kind; /* 1 per head, 2 per key */
  linattn_dtype tdt, sdt;
  uint32_t flags;
  bool past;
} la_problem;

static const la_problem la_problems[] = {
    {"B*H_kv=1 d128 gated_delta", 1, 64, 1, 1, 1, 128, 128, LINATTN_UPDATE_GATED_DELTA, 1, LINATTN_DTYPE_F32, LINATTN_DTYPE_F32, 0, true},
    {"B*H_kv=1 decode d128x256 per-key", 1, 1, 2, 1, 1, 128, 256, LINATTN_UPDATE_GATED_DELTA, 2, LINATTN_DTYPE_BF16, LINATTN_DTYPE_F32, 0, true},
    {"GQA 4/2 B2 d64 gated", 2, 33, 4, 2, 2, 64, 64, LINATTN_UPDATE_GATED, 2, LINATTN_DTYPE_F16, LINATTN_DTYPE_F16, 0, true},
    {"odd 3 heads d13x7 delta", 3, 17, 3, 3, 3, 13, 7, LINATTN_UPDATE_DELTA, 0, LINATTN_DTYPE_F32, LINATTN_DTYPE_BF16, 0, false},
    {"ORT inverse GQA + separate keys", 1, 10, 2, 4, 2, 32, 96, LINATTN_UPDATE_GATED_DELTA, 1, LINATTN_DTYPE_F32, LINATTN_DTYPE_F32,
     LINATTN_LA_ORT_CONTRIB, true},
    {"linear B1 H5 d16x80", 1, 40, 5, 5, 5, 16, 80, LINATTN_UPDATE_LINEAR, 0, LINATTN_DTYPE_F32, LINATTN_DTYPE_F32, 0, true},
    {"decode B2 H5 d128x64 gated", 2, 1, 5, 5, 5, 128, 64, LINATTN_UPDATE_GATED, 1, LINATTN_DTYPE_F32, LINATTN_DTYPE_F32, 0, true},
    {"decode B1 H4 d128 gated_delta", 1, 1, 4, 4, 4, 128, 128, LINATTN_UPDATE_GATED_DELTA, 1, LINATTN_DTYPE_F32, LINATTN_DTYPE_F32, 0, true},
};

typedef struct la_bufs {
  tk_tensor q, k, v, past, decay, beta, out, present;
} la_bufs;

static void la_make(const la_problem* p, tk_rng* r, la_bufs* b) {
  memset(b, 0, sizeof *b);
  int64_t Hout = p->Hq > p->Hkv ? p->Hq : p->Hkv;
  int64_t qd[3] = {p->B, p->T, p->Hq * p->dk}, kd[3] = {p->B, p->T, p->Nk * p->dk}, vd[3] = {p->B, p->T, p->Hkv * p->dv};
  int64_t od[3] = {p->B, p->T, Hout * p->dv}, sd[4] = {p->B, p->Hkv, p->dk, p->dv};
  int64_t gd[3] = {p->B, p->T, p->decay_kind == 2 ? p->Hkv * p->dk : p->Hkv}, bd[3] = {p->B, p->T, p->Hkv};
  b->q = tk_alloc(p->tdt, 3, qd);
  b->k = tk_alloc(p->tdt, 3, kd);
  b->v = tk_alloc(p->tdt, 3, vd);
  b->out = tk_alloc(p->tdt, 3, od);
  b->present = tk_alloc(p->sdt, 4, sd);
  tk_tensor* in[3] = {&b->q, &b->k, &b->v};
  for (int i = 0; i < 3; i++) {
    int64_t n = tk_numel(in[i]);
    double* v = tk_dalloc(n);
    tk_fill_normal(r, v, n, 1.0);
    if (i == 1) tk_normalise_rows(v, n / p->dk, p->dk);
    tk_fill(in[i], v);
    free(v);
  }
  if (p->past) {
    b->past = tk_alloc(p->sdt, 4, sd);
    double* v = tk_dalloc(tk_numel(&b->past));
    tk_fill_normal(r, v, tk_numel(&b->past), 0.5);
    tk_fill(&b->past, v);
    free(v);
  }
  bool gated = p->rule == LINATTN_UPDATE_GATED || p->rule == LINATTN_UPDATE_GATED_DELTA;
  bool delta = p->rule == LINATTN_UPDATE_DELTA || p->rule == LINATTN_UPDATE_GATED_DELTA;
  if (gated) {
    b->decay = tk_alloc(p->tdt, 3, gd);
    double* v = tk_dalloc(tk_numel(&b->decay));
    tk_fill_uniform(r, v, tk_numel(&b->decay), -1, 0);
    tk_fill(&b->decay, v);
    free(v);
  }
  if (delta) {
    b->beta = tk_alloc(p->tdt, 3, bd);
    double* v = tk_dalloc(tk_numel(&b->beta));
    tk_fill_uniform(r, v, tk_numel(&b->beta), 0, 1);
    tk_fill(&b->beta, v);
    free(v);
  }
}

static void la_free(la_bufs* b) {
  tk_free(&b->q); tk_free(&b->k); tk_free(&b->v); tk_free(&b->past); tk_free(&b->decay); tk_free(&b->beta);
  tk_free(&b->out); tk_free(&b->present);
}

static linattn_status la_run(linattn_context* ctx, const la_problem* p, const la_bufs* b, const tk_tensor* out,
                             const tk_tensor* present) {
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.update_rule = p->rule;
  d.q_num_heads = p->Hq;
  d.kv_num_heads = p->Hkv;
  d.flags = p->flags;
  linattn_tensor q = tk_desc(&b->q), k = tk_desc(&b->k), v = tk_desc(&b->v), pa = tk_desc(&b->past);
  linattn_tensor g = tk_desc(&b->decay), be = tk_desc(&b->beta), o = tk_desc(out), s = tk_desc(present);
  return linattn_linear_attention(ctx, &d, &q, &k, &v, b->past.data ? &pa : NULL, b->decay.data ? &g : NULL,
                                  b->beta.data ? &be : NULL, &o, &s, NULL, 0);
}

typedef struct conv_problem {
  const char* name;
  int64_t B, C, L, K, dilation;
  bool bias, past, silu, channels_last;
  linattn_dtype dt;
} conv_problem;

static const conv_problem conv_problems[] = {
    {"decode C6144 k4", 1, 6144, 1, 4, 1, false, true, true, false, LINATTN_DTYPE_F32},
    {"prefill C8192 L17 bf16 channels_last", 1, 8192, 17, 4, 1, true, true, true, true, LINATTN_DTYPE_BF16},
    /* unit widths follow the thread count (whole rows on one thread, C not a multiple of 16) */
    {"prefill B2 C6152 L29 f32 channels_last", 2, 6152, 29, 4, 1, false, true, true, true, LINATTN_DTYPE_F32},
    {"C1 L50", 1, 1, 50, 4, 1, true, false, false, false, LINATTN_DTYPE_F32},
    {"B3 C100 L64 dil2 f16", 3, 100, 64, 3, 2, true, true, false, false, LINATTN_DTYPE_F16},
    {"B2 C33 L5 dil3 channels_last", 2, 33, 5, 4, 3, false, true, true, true, LINATTN_DTYPE_F32},
};

typedef struct conv_bufs {
  tk_tensor x, w, bias, past, out, present;
} conv_bufs;

static void conv_make(const conv_problem* p, tk_rng* r, conv_bufs* b) {
  memset(b, 0, sizeof *b);
  int64_t S = (p->K - 1) * p->dilation;
  int64_t xd[3] = {p->B, p->channels_last ? p->L : p->C, p->channels_last ? p->C : p->L};
  int64_t sd[3] = {p->B, p->channels_last ? S : p->C, p->channels_last ? p->C : S};
  int64_t wd[3] = {p->C, 1, p->K}, bd[1] = {p->C};
  b->x = tk_alloc(p->dt, 3, xd);
  b->out = tk_alloc(p->dt, 3, xd);
  b->w = tk_alloc(p->dt, 3, wd);
  b->present = tk_alloc(p->dt, 3, sd);
  if (p->bias) b->bias = tk_alloc(p->dt, 1, bd);
  if (p->past) b->past = tk_alloc(p->dt, 3, sd);
  tk_tensor* in[4] = {&b->x, &b->w, &b->bias, &b->past};
  for (int i = 0; i < 4; i++) {
    if (!in[i]->data) continue;
    int64_t n = tk_numel(in[i]);
    double* v = tk_dalloc(n);
    tk_fill_normal(r, v, n, 1.0);
    tk_fill(in[i], v);
    free(v);
  }
}

static void conv_free(conv_bufs* b) {
  tk_free(&b->x); tk_free(&b->w); tk_free(&b->bias); tk_free(&b->past); tk_free(&b->out); tk_free(&b->present);
}

static linattn_status conv_run(linattn_context* ctx, const conv_problem* p, const conv_bufs* b, const tk_tensor* out,
                               const tk_tensor* present) {
  linattn_causal_conv_desc d;
  linattn_causal_conv_desc_init(&d);
  d.activation = p->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  d.dilation = p->dilation;
  d.channels_last = p->channels_last;
  linattn_tensor x = tk_desc(&b->x), w = tk_desc(&b->w), bi = tk_desc(&b->bias), pa = tk_desc(&b->past);
  linattn_tensor o = tk_desc(out), s = tk_desc(present);
  return linattn_causal_conv_with_state(ctx, &d, &x, &w, b->bias.data ? &bi : NULL, b->past.data ? &pa : NULL, &o, &s,
                                        NULL, 0);
}

/* ------------------------------------------------------------------ comparisons */

static void compare(const char* what, const tk_tensor* got, const tk_tensor* want) {
  int64_t first, n = tk_bits_differ(got, want, &first);
  tk_check(n == 0 && tk_count_nan(got) == 0, "%s: %lld elements differ from the 1-thread result (first %lld), %lld NaN",
           what, (long long)n, (long long)first, (long long)tk_count_nan(got));
}

static const int thread_counts[] = {2, 3, 7};

static void test_isa(linattn_isa isa, tk_rng* r) {
  linattn_context* base = make_ctx(isa, MODE_POOL, 1);
  linattn_context* ctxs[3][3];
  for (int m = 0; m < 3; m++)
    for (int t = 0; t < 3; t++) ctxs[m][t] = make_ctx(isa, m, thread_counts[t]);
  long calls_before = atomic_load(&host_calls);

  for (size_t pi = 0; pi < sizeof la_problems / sizeof la_problems[0]; pi++) {
    const la_problem* p = &la_problems[pi];
    la_bufs b;
    la_make(p, r, &b);
    tk_context("LinearAttention %s isa=%s", p->name, linattn_isa_name(isa));
    tk_poison(&b.out);
    tk_poison(&b.present);
    if (!tk_check(la_run(base, p, &b, &b.out, &b.present) == LINATTN_SUCCESS, "1-thread call: %s", linattn_last_error())) {
      la_free(&b);
      continue;
    }
    for (int m = 0; m < 3; m++)
      for (int t = 0; t < 3; t++) {
        tk_context("LinearAttention %s isa=%s %s threads=%d", p->name, linattn_isa_name(isa), mode_names[m],
                   thread_counts[t]);
        tk_tensor out = tk_alloc(b.out.dtype, 3, b.out.dims), st = tk_alloc(b.present.dtype, 4, b.present.dims);
        tk_poison(&out);
        tk_poison(&st);
        if (tk_check(la_run(ctxs[m][t], p, &b, &out, &st) == LINATTN_SUCCESS, "call: %s", linattn_last_error())) {
          compare("output", &out, &b.out);
          compare("present_state", &st, &b.present);
        }
        tk_free(&out);
        tk_free(&st);
      }
    la_free(&b);
  }

  for (size_t pi = 0; pi < sizeof conv_problems / sizeof conv_problems[0]; pi++) {
    const conv_problem* p = &conv_problems[pi];
    conv_bufs b;
    conv_make(p, r, &b);
    tk_context("CausalConvWithState %s isa=%s", p->name, linattn_isa_name(isa));
    tk_poison(&b.out);
    tk_poison(&b.present);
    if (!tk_check(conv_run(base, p, &b, &b.out, &b.present) == LINATTN_SUCCESS, "1-thread call: %s",
                  linattn_last_error())) {
      conv_free(&b);
      continue;
    }
    for (int m = 0; m < 3; m++)
      for (int t = 0; t < 3; t++) {
        tk_context("CausalConvWithState %s isa=%s %s threads=%d", p->name, linattn_isa_name(isa), mode_names[m],
                   thread_counts[t]);
        tk_tensor out = tk_alloc(b.out.dtype, 3, b.out.dims), st = tk_alloc(b.present.dtype, 3, b.present.dims);
        tk_poison(&out);
        tk_poison(&st);
        if (tk_check(conv_run(ctxs[m][t], p, &b, &out, &st) == LINATTN_SUCCESS, "call: %s", linattn_last_error())) {
          compare("output", &out, &b.out);
          compare("present_state", &st, &b.present);
        }
        tk_free(&out);
        tk_free(&st);
      }
    conv_free(&b);
  }
  /* Large problems with several threads must actually reach the host's parallel-for. */
  tk_context("isa=%s host parallel_for use", linattn_isa_name(isa));
  tk_check(atomic_load(&host_calls) > calls_before, "the host parallel_for was never called");
  linattn_context_destroy(base);
  for (int m = 0; m < 3; m++)
    for (int t = 0; t < 3; t++) linattn_context_destroy(ctxs[m][t]);
}

/* ------------------------------------------------------------------ concurrent callers */

typedef struct caller {
  linattn_context* ctx;
  const la_problem* p;
  la_bufs* b;
  tk_tensor out, st;
  int reps;
  int failures;
} caller;

static void* caller_main(void* arg) {
  caller* c = (caller*)arg;
  for (int i = 0; i < c->reps; i++) {
    if (la_run(c->ctx, c->p, c->b, &c->out, &c->st) != LINATTN_SUCCESS) c->failures++;
    if (tk_bits_differ(&c->out, &c->b->out, NULL) || tk_bits_differ(&c->st, &c->b->present, NULL)) c->failures++;
  }
  return NULL;
}

static void test_concurrent_callers(tk_rng* r) {
  enum { NCALLERS = 3 };
  linattn_context* shared = make_ctx(LINATTN_ISA_AUTO, MODE_POOL, 2);
  linattn_context* single = make_ctx(LINATTN_ISA_AUTO, MODE_POOL, 1);
  la_bufs b[NCALLERS];
  caller c[NCALLERS];
  pthread_t th[NCALLERS];
  for (int i = 0; i < NCALLERS; i++) {
    const la_problem* p = &la_problems[i % 3];
    la_make(p, r, &b[i]);
    tk_context("concurrent callers: reference run %d", i);
    tk_check(la_run(single, p, &b[i], &b[i].out, &b[i].present) == LINATTN_SUCCESS, "%s", linattn_last_error());
    c[i] = (caller){shared, p, &b[i], tk_alloc(b[i].out.dtype, 3, b[i].out.dims),
                    tk_alloc(b[i].present.dtype, 4, b[i].present.dims), 6, 0};
  }
  for (int i = 0; i < NCALLERS; i++)
    if (pthread_create(&th[i], NULL, caller_main, &c[i]) != 0) tk_fatal("pthread_create failed");
  for (int i = 0; i < NCALLERS; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < NCALLERS; i++) {
    tk_context("concurrent callers on one 2-thread context: caller %d (%s)", i, c[i].p->name);
    tk_check(c[i].failures == 0, "%d of %d concurrent calls failed or differed from the 1-thread bits", c[i].failures,
             c[i].reps);
    tk_free(&c[i].out);
    tk_free(&c[i].st);
    la_free(&b[i]);
  }
  linattn_context_destroy(shared);
  linattn_context_destroy(single);
}

/* ------------------------------------------------------------------ thread-local errors */

static char thread_first_msg[256], thread_msg[256];

static void* error_thread(void* arg) {
  (void)arg;
  snprintf(thread_first_msg, sizeof thread_first_msg, "%s", linattn_last_error());
  linattn_linear_attention(NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0);
  snprintf(thread_msg, sizeof thread_msg, "%s", linattn_last_error());
  return NULL;
}

static void test_error_is_thread_local(void) {
  tk_context("linattn_last_error is thread-local");
  linattn_causal_conv_desc d;
  linattn_causal_conv_desc_init(&d);
  linattn_status st = linattn_causal_conv_with_state(NULL, &d, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0);
  char mine[256];
  snprintf(mine, sizeof mine, "%s", linattn_last_error());
  tk_check(st != LINATTN_SUCCESS && mine[0], "failing conv call gave no message");
  pthread_t th;
  if (pthread_create(&th, NULL, error_thread, NULL) != 0) tk_fatal("pthread_create failed");
  pthread_join(th, NULL);
  tk_check(thread_first_msg[0] == 0, "a new thread starts with message \"%s\", expected \"\"", thread_first_msg);
  tk_check(thread_msg[0] != 0, "the other thread's failing call left no message");
  tk_check(strcmp(mine, linattn_last_error()) == 0, "this thread's message changed to \"%s\" (was \"%s\")",
           linattn_last_error(), mine);
}

int main(void) {
  tk_begin("test_threads");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  double t0 = tk_seconds();
  linattn_isa isas[8];
  int n = tk_available_isas(isas, 8);
  for (int i = 0; i < n; i++) {
    double t1 = tk_seconds();
    test_isa(isas[i], &r);
    tk_note("isa %-9s %.2f s", linattn_isa_name(isas[i]), tk_seconds() - t1);
  }
  test_concurrent_callers(&r);
  test_error_is_thread_local();
  tk_note("host parallel_for: %ld calls, %ld tasks; total %.2f s", atomic_load(&host_calls), atomic_load(&host_tasks),
          tk_seconds() - t0);
  return tk_finish();
}
