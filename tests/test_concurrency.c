/*
 * Determinism and concurrency.
 *  1. Thread-count determinism: for every available ISA, outputs and states are bit-identical
 *     for 1..8 threads of the built-in pool, for a host parallel-for running tasks on real
 *     threads (1..8), and for a host parallel-for running them serially in reverse order.
 *  2. Concurrent calls on one context (allowed by linattn.h: a call that finds the built-in pool
 *     busy runs alone on its calling thread): 8 caller threads share one context with a 4-thread
 *     pool (and, separately, one with a threaded host parallel-for), run a mix of
 *     LinearAttention and CausalConvWithState calls and deliberately invalid calls; every
 *     result is bit-identical to the serial one and every error message stays on its thread.
 *  3. Contexts created and destroyed on several threads at once.
 * Meant to run under ThreadSanitizer too (make tsan). LINATTN_CONCURRENCY_ITERS sets the
 * number of calls per caller thread in part 2 (default 24).
 */
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linattn.h"
#include "testkit.h"

#if defined(__x86_64__) || defined(_M_X64)
#include <immintrin.h>
/* The fast kernels set FTZ/DAZ for the duration of a call: the caller's mode must come back. */
static unsigned fp_mode(void) { return _mm_getcsr(); }
#else
static unsigned fp_mode(void) { return 0; }
#endif

/* ------------------------------------------------------------------ problems */

typedef struct problem {
  const char* name;
  int is_conv;
  linattn_linear_attention_desc la;
  linattn_causal_conv_desc cv;
  /* LA: 0 q, 1 k, 2 v, 3 past, 4 decay, 5 beta; conv: 0 input, 1 weight, 2 bias, 3 past */
  linattn_tensor in[6];
  int has_in[6];
  linattn_tensor out_tmpl, present_tmpl; /* data NULL; shapes and dtypes */
  size_t out_bytes, present_bytes;
} problem;

static void* alloc_values(tk_rng* r, linattn_dtype dt, int64_t n, double lo, double hi) {
  void* p = tk_xmalloc((size_t)(n > 0 ? n : 1) * tk_dtype_size(dt));
  for (int64_t i = 0; i < n; i++) tk_store(p, i, dt, tk_uniform_range(r, lo, hi));
  return p;
}

static linattn_tensor tensor(void* data, linattn_dtype dt, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  const int64_t dims[4] = {d0, d1, d2, d3};
  return linattn_make_tensor(data, dt, rank, dims);
}

static size_t tensor_bytes(const linattn_tensor* t) { return (size_t)tk_numel_dims(t->rank, t->dims) * tk_dtype_size(t->dtype); }

/* LinearAttention problem: packed tensors, keys normalised per head. */
static problem make_la(tk_rng* r, const char* name, linattn_update_rule rule, int64_t B, int64_t T, int64_t Hq,
                       int64_t Hkv, int64_t dk, int64_t dv, int per_key, linattn_dtype dt, int with_past, linattn_dtype sdt) {
  problem p;
  memset(&p, 0, sizeof p);
  p.name = name;
  linattn_linear_attention_desc_init(&p.la);
  p.la.update_rule = rule;
  p.la.q_num_heads = Hq;
  p.la.kv_num_heads = Hkv;
  const int gated = rule == LINATTN_UPDATE_GATED || rule == LINATTN_UPDATE_GATED_DELTA;
  const int delta = rule == LINATTN_UPDATE_DELTA || rule == LINATTN_UPDATE_GATED_DELTA;
  p.in[0] = tensor(alloc_values(r, dt, B * T * Hq * dk, -1, 1), dt, 3, B, T, Hq * dk, 0);
  double* kv = tk_dalloc(B * T * Hkv * dk);
  tk_fill_normal(r, kv, B * T * Hkv * dk, 1.0);
  tk_normalise_rows(kv, B * T * Hkv, dk);
  void* kd = tk_xmalloc((size_t)(B * T * Hkv * dk) * tk_dtype_size(dt));
  for (int64_t i = 0; i < B * T * Hkv * dk; i++) tk_store(kd, i, dt, kv[i]);
  free(kv);
  p.in[1] = tensor(kd, dt, 3, B, T, Hkv * dk, 0);
  p.in[2] = tensor(alloc_values(r, dt, B * T * Hkv * dv, -1, 1), dt, 3, B, T, Hkv * dv, 0);
  p.in[3] = tensor(alloc_values(r, sdt, B * Hkv * dk * dv, -0.5, 0.5), sdt, 4, B, Hkv, dk, dv);
  const int64_t gw = per_key ? Hkv * dk : Hkv;
  p.in[4] = tensor(alloc_values(r, dt, B * T * gw, -0.5, 0), dt, 3, B, T, gw, 0);
  p.in[5] = tensor(alloc_values(r, dt, B * T * Hkv, 0, 1), dt, 3, B, T, Hkv, 0);
  p.has_in[0] = p.has_in[1] = p.has_in[2] = 1;
  p.has_in[3] = with_past;
  p.has_in[4] = gated;
  p.has_in[5] = delta;
  const int64_t oh = Hq > Hkv ? Hq : Hkv;
  p.out_tmpl = tensor(NULL, dt, 3, B, T, oh * dv, 0);
  p.present_tmpl = tensor(NULL, sdt, 4, B, Hkv, dk, dv);
  p.out_bytes = tensor_bytes(&p.out_tmpl);
  p.present_bytes = tensor_bytes(&p.present_tmpl);
  return p;
}

static problem make_conv(tk_rng* r, const char* name, int64_t B, int64_t C, int64_t L, int64_t K, int64_t dil,
                         int channels_last, linattn_activation act, linattn_dtype dt) {
  problem p;
  memset(&p, 0, sizeof p);
  p.name = name;
  p.is_conv = 1;
  linattn_causal_conv_desc_init(&p.cv);
  p.cv.activation = act;
  p.cv.dilation = dil;
  p.cv.channels_last = channels_last;
  const int64_t S = (K - 1) * dil;
  if (channels_last) {
    p.in[0] = tensor(alloc_values(r, dt, B * L * C, -2, 2), dt, 3, B, L, C, 0);
    p.in[3] = tensor(alloc_values(r, dt, B * S * C, -2, 2), dt, 3, B, S, C, 0);
  } else {
    p.in[0] = tensor(alloc_values(r, dt, B * C * L, -2, 2), dt, 3, B, C, L, 0);
    p.in[3] = tensor(alloc_values(r, dt, B * C * S, -2, 2), dt, 3, B, C, S, 0);
  }
  p.in[1] = tensor(alloc_values(r, dt, C * K, -1, 1), dt, 3, C, 1, K, 0);
  p.in[2] = tensor(alloc_values(r, dt, C, -1, 1), dt, 1, C, 0, 0, 0);
  p.has_in[0] = p.has_in[1] = p.has_in[2] = p.has_in[3] = 1;
  p.out_tmpl = p.in[0];
  p.out_tmpl.data = NULL;
  p.present_tmpl = p.in[3];
  p.present_tmpl.data = NULL;
  p.out_bytes = tensor_bytes(&p.out_tmpl);
  p.present_bytes = tensor_bytes(&p.present_tmpl);
  return p;
}

static void free_problem(problem* p) {
  for (int i = 0; i < 6; i++) free(p->in[i].data);
}

/* Runs p on ctx into out/present (poisoned first). */
static linattn_status run_problem(linattn_context* ctx, const problem* p, void* out, void* present) {
  memset(out, 0xFF, p->out_bytes); /* NaN in every dtype: finite problems never produce it */
  memset(present, 0xFF, p->present_bytes);
  linattn_tensor o = p->out_tmpl, s = p->present_tmpl;
  o.data = out;
  s.data = present;
  const linattn_tensor* in[6];
  for (int i = 0; i < 6; i++) in[i] = p->has_in[i] ? &p->in[i] : NULL;
  if (p->is_conv)
    return linattn_causal_conv_with_state(ctx, &p->cv, in[0], in[1], in[2], in[3], &o, &s, NULL, 0);
  return linattn_linear_attention(ctx, &p->la, in[0], in[1], in[2], in[3], in[4], in[5], &o, &s, NULL, 0);
}

/* A deliberately invalid call: value's batch dimension differs from query's / the weight's
 * middle dimension is 2. Must fail, name that argument and leave the outputs untouched. */
static linattn_status run_invalid(linattn_context* ctx, const problem* p, void* out, void* present) {
  memset(out, 0x5A, p->out_bytes);
  memset(present, 0x5A, p->present_bytes);
  linattn_tensor o = p->out_tmpl, s = p->present_tmpl;
  o.data = out;
  s.data = present;
  const linattn_tensor* in[6];
  linattn_tensor bad = p->in[p->is_conv ? 1 : 2];
  if (p->is_conv) bad.dims[1] = 2;
  else bad.dims[0] += 1;
  for (int i = 0; i < 6; i++) in[i] = p->has_in[i] ? &p->in[i] : NULL;
  in[p->is_conv ? 1 : 2] = &bad;
  if (p->is_conv)
    return linattn_causal_conv_with_state(ctx, &p->cv, in[0], in[1], in[2], in[3], &o, &s, NULL, 0);
  return linattn_linear_attention(ctx, &p->la, in[0], in[1], in[2], in[3], in[4], in[5], &o, &s, NULL, 0);
}

static int all_bytes(const void* p, size_t n, unsigned char b) {
  const unsigned char* c = (const unsigned char*)p;
  for (size_t i = 0; i < n; i++)
    if (c[i] != b) return 0;
  return 1;
}

/* ------------------------------------------------------------------ host parallel-for */

typedef struct host_pool {
  int threads;              /* threads used per region, including the caller */
  atomic_long regions;      /* statistics */
  atomic_long max_tasks;
  atomic_long bad_tasks;    /* tasks not run exactly once */
} host_pool;

typedef struct host_region {
  linattn_task_fn task;
  void* arg;
  size_t n;
  atomic_size_t next;
  atomic_int* seen;         /* per task: times run (must end at exactly 1) */
} host_region;

static void* host_worker(void* vp) {
  host_region* r = (host_region*)vp;
  for (;;) {
    size_t i = atomic_fetch_add(&r->next, 1);
    if (i >= r->n) break;
    atomic_fetch_add(&r->seen[i], 1);
    r->task(r->arg, i);
  }
  return NULL;
}

/* Starts fresh threads per region (simple, and TSan sees real concurrency). */
static void host_threads_parallel_for(void* host, linattn_task_fn task, void* arg, size_t n) {
  host_pool* hp = (host_pool*)host;
  atomic_fetch_add(&hp->regions, 1);
  long prev = atomic_load(&hp->max_tasks);
  while ((long)n > prev && !atomic_compare_exchange_weak(&hp->max_tasks, &prev, (long)n)) {
  }
  host_region r;
  r.task = task;
  r.arg = arg;
  r.n = n;
  atomic_init(&r.next, 0);
  r.seen = (atomic_int*)tk_xcalloc(n ? n : 1, sizeof(atomic_int));
  int nt = hp->threads < (int)n ? hp->threads : (int)n;
  pthread_t th[16];
  int started = 0;
  for (int i = 1; i < nt && i < 16; i++)
    if (pthread_create(&th[started], NULL, host_worker, &r) == 0) started++;
  host_worker(&r);
  for (int i = 0; i < started; i++) pthread_join(th[i], NULL);
  for (size_t i = 0; i < n; i++)
    if (atomic_load(&r.seen[i]) != 1) atomic_fetch_add(&hp->bad_tasks, 1);
  free(r.seen);
}

static void host_serial_reverse(void* host, linattn_task_fn task, void* arg, size_t n) {
  (void)host;
  for (size_t i = n; i-- > 0;) task(arg, i);
}

static linattn_context* make_context(linattn_isa isa, int threads, linattn_parallel_for_fn pf, void* pf_data) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.isa = isa;
  o.num_threads = threads;
  o.parallel_for = pf;
  o.parallel_for_data = pf_data;
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(&o, &ctx);
  if (st != LINATTN_SUCCESS) tk_fatal("context_create(%s, %d threads): %s", linattn_isa_name(isa), threads, linattn_last_error());
  return ctx;
}

/* ------------------------------------------------------------------ part 1: determinism */

#define NPROB 5

typedef struct baseline {
  unsigned char* out[NPROB];
  unsigned char* present[NPROB];
} baseline;

static void check_same(const problem* p, const baseline* base, int pi, const void* out, const void* present, const char* what) {
  tk_check(memcmp(out, base->out[pi], p->out_bytes) == 0, "%s: %s output differs from 1 thread", p->name, what);
  tk_check(memcmp(present, base->present[pi], p->present_bytes) == 0, "%s: %s present_state differs from 1 thread", p->name,
           what);
}

static void determinism(const problem* probs, linattn_isa isa) {
  baseline base;
  linattn_context* one = make_context(isa, 1, NULL, NULL);
  for (int pi = 0; pi < NPROB; pi++) {
    const problem* p = &probs[pi];
    base.out[pi] = (unsigned char*)tk_xmalloc(p->out_bytes + 1);
    base.present[pi] = (unsigned char*)tk_xmalloc(p->present_bytes + 1);
    tk_context("determinism, %s, %s, 1 thread", linattn_isa_name(isa), p->name);
    linattn_status st = run_problem(one, p, base.out[pi], base.present[pi]);
    tk_check(st == LINATTN_SUCCESS, "call failed: %s", linattn_last_error());
    /* all-ones (NaN) is not what any of these finite problems produce: all written */
    int written = 1;
    const size_t es = tk_dtype_size(p->out_tmpl.dtype);
    for (size_t i = 0; i + es <= p->out_bytes; i += es)
      if (all_bytes(base.out[pi] + i, es, 0xFF)) written = 0;
    tk_check(written, "output not fully written");
  }
  linattn_context_destroy(one);
  unsigned char* out = (unsigned char*)tk_xmalloc(1 << 20);
  unsigned char* present = (unsigned char*)tk_xmalloc(1 << 20);
  host_pool hp;
  for (int variant = 0; variant < 3; variant++) {
    for (int threads = 1; threads <= 8; threads++) {
      if (variant == 0 && threads == 1) continue;
      if (variant == 2 && threads != 3 && threads != 8) continue;
      hp.threads = threads;
      atomic_init(&hp.regions, 0);
      atomic_init(&hp.max_tasks, 0);
      atomic_init(&hp.bad_tasks, 0);
      linattn_context* ctx = variant == 0   ? make_context(isa, threads, NULL, NULL)
                             : variant == 1 ? make_context(isa, threads, host_threads_parallel_for, &hp)
                                            : make_context(isa, threads, host_serial_reverse, NULL);
      const char* vname = variant == 0 ? "built-in pool" : variant == 1 ? "host threads" : "host serial reversed";
      for (int pi = 0; pi < NPROB; pi++) {
        const problem* p = &probs[pi];
        tk_context("determinism, %s, %s, %s, %d threads", linattn_isa_name(isa), p->name, vname, threads);
        const unsigned mode = fp_mode();
        linattn_status st = run_problem(ctx, p, out, present);
        tk_check(fp_mode() == mode, "floating-point control word changed by the call (0x%x -> 0x%x)", mode, fp_mode());
        if (tk_check(st == LINATTN_SUCCESS, "call failed: %s", linattn_last_error())) check_same(p, &base, pi, out, present, vname);
      }
      if (variant == 1)
        tk_check(atomic_load(&hp.max_tasks) <= threads, "host parallel-for got %ld tasks with num_threads %d",
                 atomic_load(&hp.max_tasks), threads);
      if (variant == 1)
        tk_check(atomic_load(&hp.bad_tasks) == 0, "host parallel-for: %ld tasks not run exactly once",
                 atomic_load(&hp.bad_tasks));
      if (variant == 1 && threads >= 2)
        tk_check(atomic_load(&hp.regions) > 0, "host parallel-for never used with %d threads", threads);
      linattn_context_destroy(ctx);
    }
  }
  free(out);
  free(present);
  for (int pi = 0; pi < NPROB; pi++) {
    free(base.out[pi]);
    free(base.present[pi]);
  }
}

/* ------------------------------------------------------------------ part 2: concurrent callers */

typedef struct caller_arg {
  linattn_context* ctx;
  const problem* probs;
  const baseline* base;
  int id, iters;
  atomic_int* go;
  int failures;
  char first_failure[256];
} caller_arg;

static void* caller(void* vp) {
  caller_arg* a = (caller_arg*)vp;
  unsigned char* out = (unsigned char*)malloc(1 << 20);
  unsigned char* present = (unsigned char*)malloc(1 << 20);
  while (!atomic_load(a->go)) sched_yield();
  for (int it = 0; it < a->iters; it++) {
    const int pi = (a->id + it) % NPROB;
    const problem* p = &a->probs[pi];
    const char* fail = NULL;
    if ((it + a->id) % 4 == 3) {
      linattn_status st = run_invalid(a->ctx, p, out, present);
      const char* msg = linattn_last_error();
      const char* want = p->is_conv ? "weight" : "value";
      if (st != LINATTN_ERROR_INVALID_ARGUMENT) fail = "invalid call did not fail";
      else if (strstr(msg, want) == NULL) fail = "error message does not name the argument (other thread's message?)";
      else if (!all_bytes(out, p->out_bytes, 0x5A) || !all_bytes(present, p->present_bytes, 0x5A))
        fail = "failed call wrote its outputs";
    } else {
      linattn_status st = run_problem(a->ctx, p, out, present);
      if (st != LINATTN_SUCCESS) fail = "call failed";
      else if (linattn_last_error()[0] != '\0') fail = "successful call left an error message";
      else if (memcmp(out, a->base->out[pi], p->out_bytes) != 0) fail = "output differs from the serial result";
      else if (memcmp(present, a->base->present[pi], p->present_bytes) != 0) fail = "present_state differs from the serial result";
    }
    if (fail && a->failures++ == 0)
      snprintf(a->first_failure, sizeof a->first_failure, "caller %d, call %d (%s): %s", a->id, it, p->name, fail);
  }
  free(out);
  free(present);
  return NULL;
}

static void concurrent_callers(const problem* probs, linattn_context* ctx, const char* what, int ncallers, int iters) {
  baseline base;
  linattn_context* one = make_context(linattn_context_isa(ctx), 1, NULL, NULL);
  for (int pi = 0; pi < NPROB; pi++) {
    base.out[pi] = (unsigned char*)tk_xmalloc(probs[pi].out_bytes + 1);
    base.present[pi] = (unsigned char*)tk_xmalloc(probs[pi].present_bytes + 1);
    if (run_problem(one, &probs[pi], base.out[pi], base.present[pi]) != LINATTN_SUCCESS) tk_fatal("serial call failed");
  }
  linattn_context_destroy(one);
  pthread_t th[16];
  caller_arg args[16];
  atomic_int go;
  atomic_init(&go, 0);
  for (int i = 0; i < ncallers; i++) {
    memset(&args[i], 0, sizeof args[i]);
    args[i].ctx = ctx;
    args[i].probs = probs;
    args[i].base = &base;
    args[i].id = i;
    args[i].iters = iters;
    args[i].go = &go;
    if (pthread_create(&th[i], NULL, caller, &args[i]) != 0) tk_fatal("pthread_create");
  }
  atomic_store(&go, 1);
  int failures = 0;
  for (int i = 0; i < ncallers; i++) {
    pthread_join(th[i], NULL);
    tk_context("concurrent callers, %s, caller %d", what, i);
    tk_check(args[i].failures == 0, "%d failures, first: %s", args[i].failures, args[i].first_failure);
    failures += args[i].failures;
  }
  tk_note("%d callers x %d calls on one context (%s, %s, %d threads): %d failures", ncallers, iters, what,
          linattn_isa_name(linattn_context_isa(ctx)), (int)linattn_context_num_threads(ctx), failures);
  for (int pi = 0; pi < NPROB; pi++) {
    free(base.out[pi]);
    free(base.present[pi]);
  }
}

/* ------------------------------------------------------------------ part 3: contexts on threads */

static void* context_churn(void* vp) {
  int* failures = (int*)vp;
  for (int i = 0; i < 8; i++) {
    linattn_context_options o;
    linattn_context_options_init(&o);
    o.num_threads = 1 + (i % 3);
    linattn_context* ctx = NULL;
    if (linattn_context_create(&o, &ctx) != LINATTN_SUCCESS || !ctx) {
      (*failures)++;
      continue;
    }
    if (linattn_context_num_threads(ctx) != o.num_threads) (*failures)++;
    linattn_context_destroy(ctx);
  }
  return NULL;
}

int main(void) {
  tk_begin("determinism across thread counts, concurrent calls on one context");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  problem probs[NPROB];
  probs[0] = make_la(&r, "gated_delta per-key GQA f32", LINATTN_UPDATE_GATED_DELTA, 2, 19, 6, 3, 24, 100, 1,
                     LINATTN_DTYPE_F32, 1, LINATTN_DTYPE_F32);
  probs[1] = make_la(&r, "gated per-head bf16, state bf16", LINATTN_UPDATE_GATED, 3, 7, 5, 5, 16, 33, 0, LINATTN_DTYPE_BF16,
                     0, LINATTN_DTYPE_BF16);
  probs[2] = make_la(&r, "delta f16 io, f32 state", LINATTN_UPDATE_DELTA, 1, 11, 2, 1, 32, 130, 0, LINATTN_DTYPE_F16, 1,
                     LINATTN_DTYPE_F32);
  probs[3] = make_conv(&r, "conv silu f32", 2, 300, 33, 4, 1, 0, LINATTN_ACTIVATION_SILU, LINATTN_DTYPE_F32);
  probs[4] = make_conv(&r, "conv channels-last f16 dilation 2", 3, 77, 5, 3, 2, 1, LINATTN_ACTIVATION_NONE, LINATTN_DTYPE_F16);

  linattn_isa isas[8];
  const int nisa = tk_available_isas(isas, 8);
  const double t0 = tk_seconds();
  for (int i = 0; i < nisa; i++) determinism(probs, isas[i]);
  tk_note("determinism: %d ISAs x (pool 2..8, host threads 1..8, host serial reversed 3 and 8 threads) x %d problems "
          "(%.1f s)", nisa, NPROB, tk_seconds() - t0);

  int iters = 24;
  const char* env = getenv("LINATTN_CONCURRENCY_ITERS");
  if (env && atoi(env) > 0) iters = atoi(env);
  const double t1 = tk_seconds();
  {
    linattn_context* ctx = make_context(LINATTN_ISA_AUTO, 4, NULL, NULL);
    concurrent_callers(probs, ctx, "built-in pool", 8, iters);
    linattn_context_destroy(ctx);
  }
  {
    host_pool hp;
    hp.threads = 3;
    atomic_init(&hp.regions, 0);
    atomic_init(&hp.max_tasks, 0);
    atomic_init(&hp.bad_tasks, 0);
    linattn_context* ctx = make_context(LINATTN_ISA_AUTO, 3, host_threads_parallel_for, &hp);
    concurrent_callers(probs, ctx, "host threads", 6, iters / 2 > 0 ? iters / 2 : 1);
    tk_context("concurrent callers, host threads");
    tk_check(atomic_load(&hp.bad_tasks) == 0, "host parallel-for: %ld tasks not run exactly once", atomic_load(&hp.bad_tasks));
    linattn_context_destroy(ctx);
  }
  {
    linattn_context* ctx = make_context(LINATTN_ISA_REFERENCE, 2, NULL, NULL);
    concurrent_callers(probs, ctx, "built-in pool", 4, iters / 4 > 0 ? iters / 4 : 1);
    linattn_context_destroy(ctx);
  }
  tk_note("concurrent callers: %.1f s", tk_seconds() - t1);

  pthread_t th[4];
  int failures[4] = {0, 0, 0, 0};
  for (int i = 0; i < 4; i++)
    if (pthread_create(&th[i], NULL, context_churn, &failures[i]) != 0) tk_fatal("pthread_create");
  for (int i = 0; i < 4; i++) {
    pthread_join(th[i], NULL);
    tk_context("contexts created and destroyed on 4 threads at once, thread %d", i);
    tk_check(failures[i] == 0, "%d context failures", failures[i]);
  }
  for (int i = 0; i < NPROB; i++) free_problem(&probs[i]);
  return tk_finish();
}
