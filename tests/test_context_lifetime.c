/*
 * Context lifetime with several threads (include/linattn.h, linattn_context_close/_destroy):
 *  1. destroy while another thread is inside a call on the built-in pool, and on a host
 *     parallel-for: destroy waits for that call, which completes with the bits of a run on a
 *     fresh one-thread context, and the call's workspace is freed before the context's memory;
 *  2. close while several threads loop calls: every call either succeeds with the right bits or
 *     fails with "context: closed" and its outputs untouched; a call that starts after close
 *     returned always fails; destroy afterwards;
 *  3. on a closed context every entry point fails with outputs untouched; close is idempotent.
 * A hang (the pool's workers joined under a running region) ends the suite through alarm().
 * Meant to run under ThreadSanitizer and ASan too: freed memory touched shows there.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "linattn.h"
#include "testkit.h"

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void on_alarm(int sig) {
  (void)sig;
  static const char msg[] = "FAIL: test_context_lifetime timed out (a call or destroy hangs)\n";
  (void)!write(2, msg, sizeof msg - 1);
  _exit(1);
}

/* ------------------------------------------------------------------ one LinearAttention problem */

typedef struct problem {
  linattn_linear_attention_desc desc;
  tk_tensor q, k, v, past, out, present;
} problem;

static problem make_problem(tk_rng* r, int64_t T, int64_t H, int64_t d) {
  problem p;
  memset(&p, 0, sizeof p);
  linattn_linear_attention_desc_init(&p.desc);
  p.desc.update_rule = LINATTN_UPDATE_LINEAR;
  p.desc.q_num_heads = H;
  p.desc.kv_num_heads = H;
  const int64_t io[3] = {1, T, H * d}, st[4] = {1, H, d, d};
  p.q = tk_alloc(LINATTN_DTYPE_F32, 3, io);
  p.k = tk_alloc(LINATTN_DTYPE_F32, 3, io);
  p.v = tk_alloc(LINATTN_DTYPE_F32, 3, io);
  p.past = tk_alloc(LINATTN_DTYPE_F32, 4, st);
  p.out = tk_alloc(LINATTN_DTYPE_F32, 3, io);
  p.present = tk_alloc(LINATTN_DTYPE_F32, 4, st);
  double* vals = (double*)malloc(sizeof(double) * (size_t)(T * H * d));
  if (!vals) tk_fatal("out of memory");
  tk_fill_uniform(r, vals, T * H * d, -1, 1);
  tk_fill(&p.q, vals);
  tk_fill_normal(r, vals, T * H * d, 1.0);
  tk_normalise_rows(vals, T * H, d);
  tk_fill(&p.k, vals);
  tk_fill_uniform(r, vals, T * H * d, -1, 1);
  tk_fill(&p.v, vals);
  tk_fill_uniform(r, vals, H * d * d, -1, 1);
  tk_fill(&p.past, vals);
  free(vals);
  return p;
}

static void free_problem(problem* p) {
  tk_free(&p->q);
  tk_free(&p->k);
  tk_free(&p->v);
  tk_free(&p->past);
  tk_free(&p->out);
  tk_free(&p->present);
}

/* Runs p into out/present (poisoned first). */
static linattn_status run(linattn_context* ctx, const problem* p, tk_tensor* out, tk_tensor* present) {
  tk_poison(out);
  tk_poison(present);
  const linattn_tensor q = tk_desc(&p->q), k = tk_desc(&p->k), v = tk_desc(&p->v), past = tk_desc(&p->past);
  const linattn_tensor o = tk_desc(out), s = tk_desc(present);
  return linattn_linear_attention(ctx, &p->desc, &q, &k, &v, &past, NULL, NULL, &o, &s, NULL, 0);
}

/* Outputs and state bit-identical to the baseline (p->out, p->present). */
static bool same_bits(const problem* p, const tk_tensor* out, const tk_tensor* present) {
  int64_t first;
  return tk_bits_differ(&p->out, out, &first) == 0 && tk_bits_differ(&p->present, present, &first) == 0;
}

static bool untouched(const tk_tensor* t) { return tk_count_nan(t) == tk_numel(t); }

static void baseline(problem* p, linattn_isa isa) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 1;
  o.isa = isa;
  linattn_context* ctx = NULL;
  if (linattn_context_create(&o, &ctx) != LINATTN_SUCCESS) tk_fatal("context: %s", linattn_last_error());
  tk_check(run(ctx, p, &p->out, &p->present) == LINATTN_SUCCESS, "baseline run: %s", linattn_last_error());
  linattn_context_destroy(ctx);
}

/* ------------------------------------------------------------------ hooks that see a call in flight */

/* Allocator hook: once armed, the first allocation is the workspace of the call in flight.
 * Every allocation and free takes a ticket, so the test can order the call's end (its workspace
 * freed) against the context's own frees. */
typedef struct watch {
  atomic_int armed;
  atomic_int in_call;      /* the workspace was allocated (a call is in flight) */
  atomic_long ticket;
  atomic_uintptr_t workspace;
  atomic_long workspace_freed; /* ticket of the workspace's free, 0 = not yet */
  atomic_long first_other_free; /* ticket of the first other free after arming */
  int delay_ms;            /* host parallel-for: sleep inside the region before running tasks */
} watch;

static void* watch_alloc(void* user, size_t size, size_t alignment) {
  watch* w = (watch*)user;
  void* p = NULL;
  if (posix_memalign(&p, alignment < sizeof(void*) ? sizeof(void*) : alignment, size ? size : 1) != 0) return NULL;
  atomic_fetch_add(&w->ticket, 1);
  int one = 1;
  if (atomic_load(&w->armed) && atomic_compare_exchange_strong(&w->armed, &one, 0)) {
    atomic_store(&w->workspace, (uintptr_t)p);
    atomic_store(&w->in_call, 1);
  }
  return p;
}

static void watch_free(void* user, void* ptr) {
  watch* w = (watch*)user;
  const long t = atomic_fetch_add(&w->ticket, 1) + 1;
  if ((uintptr_t)ptr == atomic_load(&w->workspace)) {
    atomic_store(&w->workspace_freed, t);
  } else {
    long zero = 0;
    atomic_compare_exchange_strong(&w->first_other_free, &zero, t);
  }
  free(ptr);
}

/* Host parallel-for that signals it is inside the region, then waits before running the tasks
 * on the calling thread: the window in which destroy is called. */
static void slow_parallel_for(void* host, linattn_task_fn task, void* arg, size_t n) {
  watch* w = (watch*)host;
  atomic_store(&w->in_call, 1);
  sleep_ms(w->delay_ms);
  for (size_t i = 0; i < n; i++) task(arg, i);
}

typedef struct one_call {
  linattn_context* ctx;
  const problem* p;
  tk_tensor out, present;
  linattn_status status;
  char message[256];
} one_call;

static void* one_call_main(void* vp) {
  one_call* c = (one_call*)vp;
  c->status = run(c->ctx, c->p, &c->out, &c->present);
  snprintf(c->message, sizeof c->message, "%s", linattn_last_error());
  return NULL;
}

/* Part 1: destroy while a call is in flight (built-in pool, or the slow host parallel-for). */
static void destroy_during_call(const problem* p, linattn_isa isa, bool host_pf) {
  tk_context("destroy during a call: %s, %s", linattn_isa_name(isa), host_pf ? "host parallel-for" : "built-in pool");
  watch w;
  memset(&w, 0, sizeof w);
  w.delay_ms = 50;
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 2;
  o.isa = isa;
  o.alloc = watch_alloc;
  o.free = watch_free;
  o.alloc_user = &w;
  if (host_pf) {
    o.parallel_for = slow_parallel_for;
    o.parallel_for_data = &w;
  }
  linattn_context* ctx = NULL;
  if (linattn_context_create(&o, &ctx) != LINATTN_SUCCESS) tk_fatal("context: %s", linattn_last_error());
  one_call c;
  memset(&c, 0, sizeof c);
  c.ctx = ctx;
  c.p = p;
  const int64_t io[3] = {p->out.dims[0], p->out.dims[1], p->out.dims[2]};
  c.out = tk_alloc(LINATTN_DTYPE_F32, 3, io);
  c.present = tk_alloc(LINATTN_DTYPE_F32, 4, p->present.dims);
  atomic_store(&w.armed, 1);
  pthread_t th;
  if (pthread_create(&th, NULL, one_call_main, &c) != 0) tk_fatal("pthread_create failed");
  while (!atomic_load(&w.in_call)) sleep_ms(1);
  if (!host_pf) sleep_ms(2); /* into the parallel region (the call lasts far longer) */
  linattn_context_destroy(ctx);
  const long destroyed_at = atomic_load(&w.first_other_free);
  pthread_join(th, NULL);
  tk_check(c.status == LINATTN_SUCCESS, "the call in flight failed: %s", c.message);
  tk_check(same_bits(p, &c.out, &c.present), "the call in flight gave other bits than a one-thread run");
  const long ws_freed = atomic_load(&w.workspace_freed);
  tk_check(ws_freed > 0 && destroyed_at > ws_freed,
           "destroy freed the context (ticket %ld) before the call in flight ended (workspace freed at %ld)",
           destroyed_at, ws_freed);
  tk_free(&c.out);
  tk_free(&c.present);
}

/* ------------------------------------------------------------------ part 2: close under load */

typedef struct looper {
  linattn_context* ctx;
  const problem* p;
  atomic_int* closed_returned;
  atomic_int* successes;
  int ok_bits, refused_ok, late_success, refused;
} looper;

static void* looper_main(void* vp) {
  looper* l = (looper*)vp;
  const int64_t io[3] = {l->p->out.dims[0], l->p->out.dims[1], l->p->out.dims[2]};
  tk_tensor out = tk_alloc(LINATTN_DTYPE_F32, 3, io), present = tk_alloc(LINATTN_DTYPE_F32, 4, l->p->present.dims);
  l->ok_bits = l->refused_ok = 1;
  for (;;) {
    const int after_close = atomic_load(l->closed_returned);
    const linattn_status st = run(l->ctx, l->p, &out, &present);
    if (st == LINATTN_SUCCESS) {
      if (after_close) l->late_success = 1;
      if (!same_bits(l->p, &out, &present)) l->ok_bits = 0;
      atomic_fetch_add(l->successes, 1);
      continue;
    }
    l->refused = 1;
    if (st != LINATTN_ERROR_INVALID_ARGUMENT || !strstr(linattn_last_error(), "context: closed") || !untouched(&out) ||
        !untouched(&present))
      l->refused_ok = 0;
    break;
  }
  tk_free(&out);
  tk_free(&present);
  return NULL;
}

static void close_under_load(const problem* p, linattn_isa isa, int pool_threads) {
  tk_context("close while 4 threads call: %s, %d pool threads", linattn_isa_name(isa), pool_threads);
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = pool_threads;
  o.isa = isa;
  linattn_context* ctx = NULL;
  if (linattn_context_create(&o, &ctx) != LINATTN_SUCCESS) tk_fatal("context: %s", linattn_last_error());
  atomic_int closed_returned = 0, successes = 0;
  enum { N = 4 };
  looper l[N];
  pthread_t th[N];
  for (int i = 0; i < N; i++) {
    l[i] = (looper){ctx, p, &closed_returned, &successes, 0, 0, 0, 0};
    if (pthread_create(&th[i], NULL, looper_main, &l[i]) != 0) tk_fatal("pthread_create failed");
  }
  while (atomic_load(&successes) < 2 * N) sleep_ms(1);
  linattn_context_close(ctx);
  atomic_store(&closed_returned, 1);
  for (int i = 0; i < N; i++) pthread_join(th[i], NULL);
  for (int i = 0; i < N; i++) {
    tk_check(l[i].ok_bits, "thread %d: a successful call gave other bits than a one-thread run", i);
    tk_check(l[i].refused && l[i].refused_ok,
             "thread %d: the first call on the closed context must fail with INVALID_ARGUMENT, \"context: closed\" "
             "and untouched outputs", i);
    tk_check(!l[i].late_success, "thread %d: a call that started after close returned succeeded", i);
  }
  linattn_context_close(ctx); /* idempotent */
  linattn_context_destroy(ctx);
}

/* ------------------------------------------------------------------ part 3: a closed context */

static void closed_context_refuses(const problem* p) {
  tk_context("calls on a closed context");
  linattn_context_close(NULL);
  linattn_context* ctx = NULL;
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 3;
  if (linattn_context_create(&o, &ctx) != LINATTN_SUCCESS) tk_fatal("context: %s", linattn_last_error());
  linattn_context_close(ctx);
  linattn_context_close(ctx);
  tk_check(linattn_context_num_threads(ctx) == 3, "num_threads readable after close");
  const int64_t io[3] = {p->out.dims[0], p->out.dims[1], p->out.dims[2]};
  tk_tensor out = tk_alloc(LINATTN_DTYPE_F32, 3, io), present = tk_alloc(LINATTN_DTYPE_F32, 4, p->present.dims);
  linattn_status st = run(ctx, p, &out, &present);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "context: closed"),
           "linear_attention on a closed context: status %d, message '%s'", (int)st, linattn_last_error());
  tk_check(untouched(&out) && untouched(&present), "linear_attention on a closed context wrote its outputs");
  const linattn_tensor q = tk_desc(&p->q), k = tk_desc(&p->k), v = tk_desc(&p->v), o_t = tk_desc(&out);
  size_t ws = 12345;
  st = linattn_linear_attention_workspace_size(ctx, &p->desc, &q, &k, &v, NULL, NULL, NULL, &o_t, NULL, &ws);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ws == 12345 && strstr(linattn_last_error(), "context: closed"),
           "linear_attention_workspace_size on a closed context: status %d, message '%s'", (int)st,
           linattn_last_error());
  /* conv: input (1, 4, 8), weight (4, 1, 3), output (1, 4, 8); values are never read */
  float x[32], w[12], y[32];
  for (int i = 0; i < 32; i++) x[i] = (float)i, y[i] = -7.0f;
  for (int i = 0; i < 12; i++) w[i] = 1.0f;
  const int64_t xd[3] = {1, 4, 8}, wd[3] = {4, 1, 3};
  const linattn_tensor xt = linattn_make_tensor(x, LINATTN_DTYPE_F32, 3, xd);
  const linattn_tensor wt = linattn_make_tensor(w, LINATTN_DTYPE_F32, 3, wd);
  const linattn_tensor yt = linattn_make_tensor(y, LINATTN_DTYPE_F32, 3, xd);
  linattn_causal_conv_desc cd;
  linattn_causal_conv_desc_init(&cd);
  st = linattn_causal_conv_with_state(ctx, &cd, &xt, &wt, NULL, NULL, &yt, NULL, NULL, 0);
  bool y_untouched = true;
  for (int i = 0; i < 32; i++) y_untouched &= y[i] == -7.0f;
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && y_untouched && strstr(linattn_last_error(), "context: closed"),
           "causal_conv_with_state on a closed context: status %d, message '%s'", (int)st, linattn_last_error());
  ws = 12345;
  st = linattn_causal_conv_with_state_workspace_size(ctx, &cd, &xt, &wt, NULL, NULL, &yt, NULL, &ws);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ws == 12345,
           "causal_conv_with_state_workspace_size on a closed context: status %d", (int)st);
  /* the other operators: the closed context is reported before their arguments are looked at */
  linattn_gated_rms_norm_desc nd;
  linattn_gated_rms_norm_desc_init(&nd);
  st = linattn_gated_rms_norm(ctx, &nd, &xt, &wt, &xt, &yt);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "context: closed"),
           "gated_rms_norm on a closed context: status %d, message '%s'", (int)st, linattn_last_error());
  st = linattn_linear_attention_gate(ctx, &xt, NULL, NULL, &xt, &yt, &yt);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "context: closed"),
           "linear_attention_gate on a closed context: status %d, message '%s'", (int)st, linattn_last_error());
  linattn_varlen_conv_desc vd;
  linattn_varlen_conv_desc_init(&vd);
  const int32_t cu[2] = {0, 8};
  linattn_varlen_batch vb = {1, cu, NULL, NULL, NULL};
  st = linattn_varlen_causal_conv_with_state(ctx, &vd, &vb, &xt, &wt, NULL, &xt, NULL, NULL, &yt, NULL, NULL, NULL, 0);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "context: closed"),
           "varlen_causal_conv_with_state on a closed context: status %d, message '%s'", (int)st, linattn_last_error());
  ws = 12345;
  st = linattn_varlen_causal_conv_with_state_workspace_size(ctx, &vd, &vb, &xt, &wt, NULL, &xt, NULL, NULL, &yt, NULL,
                                                            NULL, &ws);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ws == 12345,
           "varlen_causal_conv_with_state_workspace_size on a closed context: status %d", (int)st);
  linattn_gated_delta_net_desc gd;
  linattn_gated_delta_net_desc_init(&gd);
  st = linattn_gated_delta_net(ctx, &gd, &xt, &xt, &xt, cu, 2, NULL, NULL, NULL, NULL, NULL, NULL, &yt, NULL, NULL,
                               NULL, 0);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "context: closed"),
           "gated_delta_net on a closed context: status %d, message '%s'", (int)st, linattn_last_error());
  ws = 12345;
  st = linattn_gated_delta_net_workspace_size(ctx, &gd, &xt, &xt, &xt, cu, 2, NULL, NULL, NULL, NULL, NULL, NULL, &yt,
                                              NULL, NULL, &ws);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ws == 12345,
           "gated_delta_net_workspace_size on a closed context: status %d", (int)st);
  linattn_varlen_batch lb = {1, cu, NULL, NULL, NULL};
  st = linattn_varlen_linear_attention(ctx, &p->desc, &lb, &xt, &xt, &xt, NULL, NULL, NULL, &yt, NULL, NULL, 0);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && strstr(linattn_last_error(), "context: closed"),
           "varlen_linear_attention on a closed context: status %d, message '%s'", (int)st, linattn_last_error());
  ws = 12345;
  st = linattn_varlen_linear_attention_workspace_size(ctx, &p->desc, &lb, &xt, &xt, &xt, NULL, NULL, NULL, &yt, NULL,
                                                      &ws);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ws == 12345,
           "varlen_linear_attention_workspace_size on a closed context: status %d", (int)st);
  y_untouched = true;
  for (int i = 0; i < 32; i++) y_untouched &= y[i] == -7.0f;
  tk_check(y_untouched, "an operator on a closed context wrote its output");
  /* the same conv on an open context succeeds (the refusal above is the closed context's) */
  linattn_context* open_ctx = NULL;
  if (linattn_context_create(NULL, &open_ctx) != LINATTN_SUCCESS) tk_fatal("context: %s", linattn_last_error());
  st = linattn_causal_conv_with_state(open_ctx, &cd, &xt, &wt, NULL, NULL, &yt, NULL, NULL, 0);
  tk_check(st == LINATTN_SUCCESS, "the same conv on an open context: %s", linattn_last_error());
  linattn_context_destroy(open_ctx);
  linattn_context_destroy(ctx);
  tk_free(&out);
  tk_free(&present);
}

int main(void) {
  tk_begin("test_context_lifetime");
  signal(SIGALRM, on_alarm);
  /* LINATTN_TEST_ALARM (seconds) lengthens the hang alarm where everything runs slower (qemu) */
  const char* alarm_env = getenv("LINATTN_TEST_ALARM");
  const long alarm_s = alarm_env ? strtol(alarm_env, NULL, 10) : 0;
  alarm(alarm_s > 0 ? (unsigned)alarm_s : TK_SLOW_BUILD ? 600 : 120);
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  /* sanitizers and reduced runs (qemu, LINATTN_TEST_REDUCED) are 10-30x slower: a shorter call
   * lasts as long there */
  const bool slow = TK_SLOW_BUILD || tk_reduced();
  problem big = make_problem(&r, slow ? 512 : 8192, 4, 64);
  problem small = make_problem(&r, 64, 4, 32);
  const linattn_isa isas[] = {LINATTN_ISA_REFERENCE, LINATTN_ISA_SCALAR, LINATTN_ISA_AVX2, LINATTN_ISA_AVX512,
                              LINATTN_ISA_NEON};
  for (size_t i = 0; i < sizeof isas / sizeof isas[0]; i++) {
    if (!linattn_isa_available(isas[i])) continue;
    baseline(&big, isas[i]);
    baseline(&small, isas[i]);
    for (int rep = 0; rep < (slow ? 1 : 3); rep++) destroy_during_call(&big, isas[i], false);
    destroy_during_call(&big, isas[i], true);
    close_under_load(&small, isas[i], 1);
    close_under_load(&small, isas[i], 3);
  }
  closed_context_refuses(&small);
  free_problem(&big);
  free_problem(&small);
  return tk_finish();
}
