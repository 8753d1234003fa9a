/*
 * Allocation failure paths, through the allocator hooks of linattn_context_options: a hook that
 * fails the Nth allocation, for every N a successful run makes.
 *  - linattn_context_create (1..4 threads, built-in pool or host parallel-for) returns
 *    LINATTN_ERROR_OUT_OF_MEMORY with a message, sets *context to NULL and frees every block
 *    it had obtained;
 *  - LinearAttention / CausalConvWithState calls with workspace == NULL return
 *    LINATTN_ERROR_OUT_OF_MEMORY, leave outputs untouched and free everything, and the next
 *    call on the same context succeeds with the same bits as before;
 *  - calls given a caller workspace allocate nothing; context_destroy frees everything; every
 *    free gets a pointer the hook returned; alignments are powers of two <= 4096.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linattn.h"
#include "testkit.h"

/* ------------------------------------------------------------------ the hook */

#define MAX_LIVE 256

typedef struct hook {
  pthread_mutex_t lock;
  long calls;      /* allocations requested so far */
  long fail_at;    /* 1-based call number that returns NULL (0: never) */
  long live;
  void* ptrs[MAX_LIVE];
  long bad_frees, bad_alignments;
} hook;

static void* hook_alloc(void* user, size_t size, size_t alignment) {
  hook* h = (hook*)user;
  pthread_mutex_lock(&h->lock);
  const long n = ++h->calls;
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > 4096) h->bad_alignments++;
  void* p = NULL;
  if (n != h->fail_at) {
    size_t a = alignment < sizeof(void*) ? sizeof(void*) : alignment;
    if (posix_memalign(&p, a, size ? size : 1) != 0) p = NULL;
    if (p) {
      int slot = -1;
      for (int i = 0; i < MAX_LIVE && slot < 0; i++)
        if (!h->ptrs[i]) slot = i;
      if (slot < 0) tk_fatal("hook: more than %d live blocks", MAX_LIVE);
      h->ptrs[slot] = p;
      h->live++;
    }
  }
  pthread_mutex_unlock(&h->lock);
  return p;
}

static void hook_free(void* user, void* p) {
  hook* h = (hook*)user;
  if (!p) return;
  pthread_mutex_lock(&h->lock);
  int found = 0;
  for (int i = 0; i < MAX_LIVE && !found; i++)
    if (h->ptrs[i] == p) h->ptrs[i] = NULL, found = 1;
  if (found) {
    h->live--;
    free(p);
  } else {
    h->bad_frees++;
  }
  pthread_mutex_unlock(&h->lock);
}

static void hook_init(hook* h) {
  memset(h, 0, sizeof *h);
  pthread_mutex_init(&h->lock, NULL);
}

static long hook_calls(hook* h) {
  pthread_mutex_lock(&h->lock);
  long n = h->calls;
  pthread_mutex_unlock(&h->lock);
  return n;
}
static long hook_live(hook* h) {
  pthread_mutex_lock(&h->lock);
  long n = h->live;
  pthread_mutex_unlock(&h->lock);
  return n;
}

static void serial_parallel_for(void* host, linattn_task_fn task, void* arg, size_t n) {
  (void)host;
  for (size_t i = 0; i < n; i++) task(arg, i);
}

static linattn_status create(hook* h, int threads, int host, linattn_context** ctx) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = threads;
  o.alloc = hook_alloc;
  o.free = hook_free;
  o.alloc_user = h;
  if (host) o.parallel_for = serial_parallel_for;
  return linattn_context_create(&o, ctx);
}

/* ------------------------------------------------------------------ context creation */

static void test_context_create(int threads, int host) {
  hook h;
  hook_init(&h);
  tk_context("context_create, %d threads, %s", threads, host ? "host parallel-for" : "built-in pool");
  linattn_context* ctx = NULL;
  linattn_status st = create(&h, threads, host, &ctx);
  if (!tk_check(st == LINATTN_SUCCESS && ctx, "create failed: %s", linattn_last_error())) return;
  const long needed = h.calls;
  tk_check(needed >= 1, "context_create made no allocation through the hook");
  linattn_context_destroy(ctx);
  tk_check(h.live == 0, "%ld blocks live after context_destroy", h.live);
  for (long n = 1; n <= needed; n++) {
    hook_init(&h);
    h.fail_at = n;
    ctx = (linattn_context*)&h; /* must be overwritten */
    st = create(&h, threads, host, &ctx);
    tk_context("context_create, %d threads, %s, allocation %ld of %ld fails", threads,
               host ? "host parallel-for" : "built-in pool", n, needed);
    tk_check(st == LINATTN_ERROR_OUT_OF_MEMORY, "status %s (%s)", linattn_status_string(st), linattn_last_error());
    tk_check(ctx == NULL, "*context not NULL after a failed create");
    tk_check(linattn_last_error()[0] != '\0', "no error message");
    tk_check(h.live == 0, "%ld blocks leaked", h.live);
    tk_check(h.bad_frees == 0 && h.bad_alignments == 0, "bad frees %ld, bad alignments %ld", h.bad_frees, h.bad_alignments);
    if (st == LINATTN_SUCCESS && ctx) linattn_context_destroy(ctx);
  }
  tk_note("context_create with %d threads (%s): %ld allocations, each failure handled", threads,
          host ? "host parallel-for" : "built-in pool", needed);
}

/* ------------------------------------------------------------------ calls */

typedef struct call {
  const char* name;
  int conv;
  linattn_linear_attention_desc la;
  linattn_causal_conv_desc cv;
  linattn_tensor in[6];
  const linattn_tensor* inp[6];
  int nin; /* inputs passed (negative: LinearAttention without past_state) */
  linattn_tensor out, present;
  size_t out_bytes, present_bytes;
} call;

static void* values(tk_rng* r, linattn_dtype dt, int64_t n) {
  void* p = tk_xmalloc((size_t)(n > 0 ? n : 1) * tk_dtype_size(dt));
  for (int64_t i = 0; i < n; i++) tk_store(p, i, dt, tk_uniform_range(r, -0.5, 0.5));
  return p;
}

static linattn_tensor t3(void* data, linattn_dtype dt, int64_t a, int64_t b, int64_t c) {
  const int64_t d[3] = {a, b, c};
  return linattn_make_tensor(data, dt, 3, d);
}

static call make_la_call(tk_rng* r, const char* name, linattn_dtype dt, linattn_dtype sdt, int with_past, int64_t dv) {
  call c;
  memset(&c, 0, sizeof c);
  c.name = name;
  const int64_t B = 2, T = 5, H = 3, dk = 8;
  linattn_linear_attention_desc_init(&c.la);
  c.la.q_num_heads = c.la.kv_num_heads = H;
  c.in[0] = t3(values(r, dt, B * T * H * dk), dt, B, T, H * dk);
  c.in[1] = t3(values(r, dt, B * T * H * dk), dt, B, T, H * dk);
  c.in[2] = t3(values(r, dt, B * T * H * dv), dt, B, T, H * dv);
  const int64_t sd[4] = {B, H, dk, dv};
  c.in[3] = linattn_make_tensor(values(r, sdt, B * H * dk * dv), sdt, 4, sd);
  c.in[4] = t3(values(r, dt, B * T * H), dt, B, T, H);
  c.in[5] = t3(values(r, dt, B * T * H), dt, B, T, H);
  c.nin = with_past ? 6 : -6; /* inp[] is bound by call_bind(): the struct is returned by value */
  c.out = t3(NULL, dt, B, T, H * dv);
  c.present = linattn_make_tensor(NULL, sdt, 4, sd);
  c.out_bytes = (size_t)(B * T * H * dv) * tk_dtype_size(dt);
  c.present_bytes = (size_t)(B * H * dk * dv) * tk_dtype_size(sdt);
  return c;
}

static call make_conv_call(tk_rng* r, const char* name, linattn_dtype dt, int64_t C, int64_t L) {
  call c;
  memset(&c, 0, sizeof c);
  c.name = name;
  c.conv = 1;
  const int64_t B = 2, K = 4;
  linattn_causal_conv_desc_init(&c.cv);
  c.cv.activation = LINATTN_ACTIVATION_SILU;
  c.in[0] = t3(values(r, dt, B * C * L), dt, B, C, L);
  c.in[1] = t3(values(r, dt, C * K), dt, C, 1, K);
  const int64_t bd[1] = {C};
  c.in[2] = linattn_make_tensor(values(r, dt, C), dt, 1, bd);
  c.in[3] = t3(values(r, dt, B * C * (K - 1)), dt, B, C, K - 1);
  c.nin = 4;
  c.out = t3(NULL, dt, B, C, L);
  c.present = t3(NULL, dt, B, C, K - 1);
  c.out_bytes = (size_t)(B * C * L) * tk_dtype_size(dt);
  c.present_bytes = (size_t)(B * C * (K - 1)) * tk_dtype_size(dt);
  return c;
}

static void call_bind(call* c) {
  const int n = c->nin < 0 ? -c->nin : c->nin;
  for (int i = 0; i < 6; i++) c->inp[i] = i < n ? &c->in[i] : NULL;
  if (c->nin < 0) c->inp[3] = NULL;
}

static linattn_status run_call(linattn_context* ctx, call* c, void* out, void* present, void* ws, size_t ws_size) {
  memset(out, 0xA5, c->out_bytes);
  memset(present, 0xA5, c->present_bytes);
  c->out.data = out;
  c->present.data = present;
  if (c->conv)
    return linattn_causal_conv_with_state(ctx, &c->cv, c->inp[0], c->inp[1], c->inp[2], c->inp[3], &c->out, &c->present, ws,
                                          ws_size);
  return linattn_linear_attention(ctx, &c->la, c->inp[0], c->inp[1], c->inp[2], c->inp[3], c->inp[4], c->inp[5], &c->out,
                                  &c->present, ws, ws_size);
}

static size_t workspace_size(linattn_context* ctx, call* c) {
  size_t n = 0;
  linattn_status st;
  if (c->conv)
    st = linattn_causal_conv_with_state_workspace_size(ctx, &c->cv, c->inp[0], c->inp[1], c->inp[2], c->inp[3], &c->out,
                                                       &c->present, &n);
  else
    st = linattn_linear_attention_workspace_size(ctx, &c->la, c->inp[0], c->inp[1], c->inp[2], c->inp[3], c->inp[4],
                                                 c->inp[5], &c->out, &c->present, &n);
  tk_check(st == LINATTN_SUCCESS, "workspace_size: %s", linattn_last_error());
  return n;
}

static int untouched(const void* p, size_t n) {
  const unsigned char* c = (const unsigned char*)p;
  for (size_t i = 0; i < n; i++)
    if (c[i] != 0xA5) return 0;
  return 1;
}

static void test_call(call* c, int threads, int host) {
  hook h;
  hook_init(&h);
  linattn_context* ctx = NULL;
  tk_context("%s, %d threads, %s", c->name, threads, host ? "host parallel-for" : "built-in pool");
  if (!tk_check(create(&h, threads, host, &ctx) == LINATTN_SUCCESS, "create: %s", linattn_last_error())) return;
  unsigned char* out = (unsigned char*)tk_xmalloc(c->out_bytes + 1);
  unsigned char* present = (unsigned char*)tk_xmalloc(c->present_bytes + 1);
  unsigned char* base_out = (unsigned char*)tk_xmalloc(c->out_bytes + 1);
  unsigned char* base_present = (unsigned char*)tk_xmalloc(c->present_bytes + 1);
  const long live0 = hook_live(&h);
  long before = hook_calls(&h);
  linattn_status st = run_call(ctx, c, base_out, base_present, NULL, 0);
  tk_check(st == LINATTN_SUCCESS, "call: %s", linattn_last_error());
  const long needed = hook_calls(&h) - before;
  tk_check(hook_live(&h) == live0, "call leaked %ld blocks", hook_live(&h) - live0);
  const size_t ws = workspace_size(ctx, c);
  tk_check((ws == 0) == (needed == 0), "workspace_size %zu but the call made %ld allocations", ws, needed);

  for (long n = 1; n <= needed; n++) {
    tk_context("%s, %d threads, %s, allocation %ld of %ld fails", c->name, threads, host ? "host parallel-for" : "built-in pool",
               n, needed);
    before = hook_calls(&h);
    pthread_mutex_lock(&h.lock);
    h.fail_at = before + n;
    pthread_mutex_unlock(&h.lock);
    st = run_call(ctx, c, out, present, NULL, 0);
    tk_check(st == LINATTN_ERROR_OUT_OF_MEMORY, "status %s (%s)", linattn_status_string(st), linattn_last_error());
    tk_check(linattn_last_error()[0] != '\0', "no error message");
    tk_check(untouched(out, c->out_bytes) && untouched(present, c->present_bytes), "outputs written by a failed call");
    tk_check(hook_live(&h) == live0, "%ld blocks leaked", hook_live(&h) - live0);
    pthread_mutex_lock(&h.lock);
    h.fail_at = 0;
    pthread_mutex_unlock(&h.lock);
    st = run_call(ctx, c, out, present, NULL, 0);
    tk_check(st == LINATTN_SUCCESS, "call after the failure: %s", linattn_last_error());
    tk_check(memcmp(out, base_out, c->out_bytes) == 0 && memcmp(present, base_present, c->present_bytes) == 0,
             "call after the failure gives different bits");
  }
  /* a caller workspace: no allocation at all */
  tk_context("%s, %d threads, %s, caller workspace", c->name, threads, host ? "host parallel-for" : "built-in pool");
  void* wsp = tk_aligned_alloc(64, ws ? (ws + 63) / 64 * 64 : 64);
  before = hook_calls(&h);
  st = run_call(ctx, c, out, present, wsp, ws);
  tk_check(st == LINATTN_SUCCESS, "call with workspace: %s", linattn_last_error());
  tk_check(hook_calls(&h) == before, "call with a caller workspace allocated %ld blocks", hook_calls(&h) - before);
  tk_check(memcmp(out, base_out, c->out_bytes) == 0, "caller workspace gives different bits");
  tk_aligned_free(wsp);

  linattn_context_destroy(ctx);
  tk_check(h.live == 0, "%ld blocks live after context_destroy", h.live);
  tk_check(h.bad_frees == 0 && h.bad_alignments == 0, "bad frees %ld, bad alignments %ld", h.bad_frees, h.bad_alignments);
  tk_note("%-36s %d threads %-17s: %ld allocation(s) per call (workspace %zu bytes), each failure handled", c->name, threads,
          host ? "host parallel-for" : "built-in pool", needed, ws);
  free(out);
  free(present);
  free(base_out);
  free(base_present);
}

int main(void) {
  tk_begin("allocation failures through the context allocator hooks");
  for (int threads = 1; threads <= 4; threads++) {
    test_context_create(threads, 0);
    test_context_create(threads, 1);
  }
  {
    tk_context("hooks: alloc without free");
    linattn_context_options o;
    linattn_context_options_init(&o);
    o.alloc = hook_alloc;
    linattn_context* ctx = NULL;
    tk_check(linattn_context_create(&o, &ctx) == LINATTN_ERROR_INVALID_ARGUMENT && ctx == NULL,
             "alloc hook without free hook accepted");
  }
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  call calls[5];
  calls[0] = make_la_call(&r, "LinearAttention f32, f32 state", LINATTN_DTYPE_F32, LINATTN_DTYPE_F32, 1, 40);
  calls[1] = make_la_call(&r, "LinearAttention f16, f16 state", LINATTN_DTYPE_F16, LINATTN_DTYPE_F16, 1, 40);
  calls[2] = make_la_call(&r, "LinearAttention bf16, no past", LINATTN_DTYPE_BF16, LINATTN_DTYPE_BF16, 0, 130);
  calls[3] = make_conv_call(&r, "CausalConvWithState f32", LINATTN_DTYPE_F32, 40, 9);
  calls[4] = make_conv_call(&r, "CausalConvWithState bf16", LINATTN_DTYPE_BF16, 70, 3);
  for (int i = 0; i < 5; i++) {
    call_bind(&calls[i]);
    test_call(&calls[i], 1, 0);
    test_call(&calls[i], 2, 0);
    test_call(&calls[i], 3, 1);
  }
  for (int i = 0; i < 5; i++)
    for (int j = 0; j < 6; j++) free(calls[i].in[j].data);
  return tk_finish();
}
