/*
 * linattn-conv-ab: two builds of the library in one process, CausalConvWithState call by call.
 *
 *   linattn-conv-ab A.so B.so [--isa NAME] [--pairs N] [--budget SEC] [--case SPEC]... [--no-time]
 *                   [--no-bits]
 *
 * Each .so is dlopen'ed privately (RTLD_LOCAL), so the two builds' symbols never mix. Two phases:
 *  1. bits: a sweep of shapes (dtype, layout, K, dilation, bias, past, activation, odd C and L)
 *     on fresh random inputs, each build writing its own output and present_state; every byte
 *     must agree. Prints the count and an FNV-1a hash of all of A's outputs.
 *  2. time: per case, the two builds alternate on the same buffers (the state updated in place,
 *     as in a decode loop), the order of each pair flipped every pair; each call is timed alone.
 *     Prints the median time of each, the median of the per-pair ratios B / A with its quartiles
 *     (a ratio above 1: B slower) and the ratio of the two 10th-percentile times (p10: less
 *     sensitive to preemption on a loaded machine, for calls long enough to be interrupted).
 *     CONV_AB_FLUSH_MIB=N puts an N MiB memcpy before each timed call and prints the byte time at
 *     its best copy rate; CONV_AB_CPU_TIME=1 times by thread CPU time instead of wall time.
 * SPEC: cf|cl, f32|f16|bf16, L, C (K = 4, SiLU, no bias, B = 1), e.g. "cl,f16,1,6144".
 * Without --case: the AVX-512 / AVX2 rows of docs/benchmarks.md's shared-body A/B.
 * SPEC v, f32|f16|bf16, B, C: a packed decode (VarlenCausalConvWithState, B one-token sequences,
 * ORT's (B, C, 3) state in place) against the dense channels-last decode of the same tokens
 * ((B, 1, C), (B, 3, C) state in place), K = 4, SiLU, no bias: first each build's packed output
 * and state bits compared, then the four calls (A packed, A dense, B packed, B dense) alternated
 * in a rotating order, each timed alone by thread CPU time; prints the medians, each build's
 * packed / dense ratio of the medians and of the per-round ratios, and packed B / A
 * (docs/benchmarks.md, "Packed conv decode").
 * SPEC p, f32|f16|bf16, T, C: a packed prefill, as linattn-bench's VarlenConv prefill rows (4
 * sequences of 40/30/20/10 % of T tokens, ORT's (4, C, 3) state in place) against one dense
 * channels-last call on the same tokens ((1, T, C), (1, 3, C) state in place), K = 4, SiLU, no
 * bias; compared and timed as the packed decode (docs/packed-and-windowed-states.md).
 */
#define _GNU_SOURCE
#define AB_PROG "conv-ab"
#include "ab_common.h"

#include <stdbool.h>

typedef struct lib {
  ab_lib ab;
  void (*vdesc_init)(linattn_varlen_conv_desc*);
  linattn_status (*varlen)(linattn_context*, const linattn_varlen_conv_desc*, const linattn_varlen_batch*,
                           const linattn_tensor*, const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                           const linattn_tensor*, const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                           const linattn_tensor*, void*, size_t);
  void (*desc_init)(linattn_causal_conv_desc*);
  linattn_status (*conv)(linattn_context*, const linattn_causal_conv_desc*, const linattn_tensor*,
                         const linattn_tensor*, const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                         const linattn_tensor*, void*, size_t);
  linattn_status (*conv_ws)(linattn_context*, const linattn_causal_conv_desc*, const linattn_tensor*,
                            const linattn_tensor*, const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                            const linattn_tensor*, size_t*);
} lib;

static void lib_open(lib* l, const char* path, const char* isa) {
  ab_open(&l->ab, path, isa);
  *(void**)&l->desc_init = ab_sym(l->ab.handle, path, "linattn_causal_conv_desc_init");
  *(void**)&l->conv = ab_sym(l->ab.handle, path, "linattn_causal_conv_with_state");
  *(void**)&l->conv_ws = ab_sym(l->ab.handle, path, "linattn_causal_conv_with_state_workspace_size");
  *(void**)&l->vdesc_init = ab_sym(l->ab.handle, path, "linattn_varlen_conv_desc_init");
  *(void**)&l->varlen = ab_sym(l->ab.handle, path, "linattn_varlen_causal_conv_with_state");
}

/* ------------------------------------------------------------------ data */

/* Values of magnitude 2^-4 .. 2^2 with random sign and mantissa, written directly as T bits. */
static void fill(void* p, size_t n, linattn_dtype dt, uint64_t* s) {
  for (size_t i = 0; i < n; ++i) {
    const uint64_t r = rng_next(s);
    const uint32_t sign = (uint32_t)(r >> 63), e = (uint32_t)(r >> 40) % 7; /* 0..6 -> 2^-4 .. 2^2 */
    if (dt == LINATTN_DTYPE_F32) {
      const uint32_t u = sign << 31 | (123u + e) << 23 | ((uint32_t)r & 0x7fffffu);
      memcpy((char*)p + 4 * i, &u, 4);
    } else if (dt == LINATTN_DTYPE_F16) {
      const uint16_t u = (uint16_t)(sign << 15 | (11u + e) << 10 | ((uint32_t)r & 0x3ffu));
      memcpy((char*)p + 2 * i, &u, 2);
    } else {
      const uint16_t u = (uint16_t)(sign << 15 | (123u + e) << 7 | ((uint32_t)r & 0x7fu));
      memcpy((char*)p + 2 * i, &u, 2);
    }
  }
}

/* One call's tensors: x, w, bias, past, y, present (present == past when in_place). */
typedef struct conv_case {
  linattn_dtype dt;
  int packed; /* 1: the packed decode against the dense channels-last one (B sequences, L = 1);
               * 2: the packed prefill (4 sequences, L = T tokens in all) against one dense call */
  int channels_last, silu, has_bias, has_past, in_place;
  int64_t B, C, L, K, d;
} conv_case;

typedef struct conv_bufs {
  linattn_tensor x, w, bias, past, y, present;
  void *xb, *wb, *bb, *pb, *yb, *qb;
  size_t ny, ns, es;
} conv_bufs;

static void bufs_make(conv_bufs* t, const conv_case* c, uint64_t* seed) {
  const size_t es = dtype_size(c->dt);
  const int64_t S = (c->K - 1) * c->d;
  const size_t nx = (size_t)(c->B * c->C * c->L), ns = (size_t)(c->B * c->C * S);
  int64_t xd[3] = {c->B, c->C, c->L}, sd[3] = {c->B, c->C, S}, wd[3] = {c->C, 1, c->K}, bd[1] = {c->C};
  if (c->channels_last) xd[1] = c->L, xd[2] = c->C, sd[1] = S, sd[2] = c->C;
  memset(t, 0, sizeof *t);
  t->es = es, t->ny = nx, t->ns = ns;
  /* 16 bytes into a line, as numpy buffers are */
  t->xb = xalloc(nx * es + 16), t->yb = xalloc(nx * es + 16);
  t->wb = xalloc((size_t)(c->C * c->K) * es), t->bb = xalloc((size_t)c->C * es);
  t->pb = xalloc(ns * es + 16), t->qb = xalloc(ns * es + 16);
  fill((char*)t->xb + 16, nx, c->dt, seed);
  fill(t->wb, (size_t)(c->C * c->K), c->dt, seed);
  fill(t->bb, (size_t)c->C, c->dt, seed);
  fill((char*)t->pb + 16, ns, c->dt, seed);
  memset(t->yb, 0xa5, nx * es + 16);
  memset(t->qb, 0xa5, ns * es + 16);
  t->x = tensor((char*)t->xb + 16, c->dt, 3, xd);
  t->y = tensor((char*)t->yb + 16, c->dt, 3, xd);
  t->w = tensor(t->wb, c->dt, 3, wd);
  t->bias = tensor(t->bb, c->dt, 1, bd);
  t->past = tensor((char*)t->pb + 16, c->dt, 3, sd);
  t->present = c->in_place ? t->past : tensor((char*)t->qb + 16, c->dt, 3, sd);
}

static void bufs_free(conv_bufs* t) {
  free(t->xb), free(t->yb), free(t->wb), free(t->bb), free(t->pb), free(t->qb);
}

typedef struct call {
  linattn_causal_conv_desc desc;
  void* ws;
  size_t ws_bytes;
} call;

static void call_make(call* k, lib* l, const conv_case* c, const conv_bufs* t) {
  l->desc_init(&k->desc);
  k->desc.activation = c->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  k->desc.channels_last = c->channels_last;
  k->desc.dilation = c->d;
  k->ws_bytes = 0;
  if (l->conv_ws(l->ab.ctx, &k->desc, &t->x, &t->w, c->has_bias ? &t->bias : NULL, c->has_past ? &t->past : NULL,
                 &t->y, &t->present, &k->ws_bytes) != LINATTN_SUCCESS) {
    fprintf(stderr, "conv-ab: workspace: %s\n", l->ab.last_error());
    exit(2);
  }
  k->ws = k->ws_bytes ? xalloc(k->ws_bytes) : NULL;
}

static void call_run(const call* k, lib* l, const conv_case* c, const conv_bufs* t) {
  if (l->conv(l->ab.ctx, &k->desc, &t->x, &t->w, c->has_bias ? &t->bias : NULL, c->has_past ? &t->past : NULL, &t->y,
              &t->present, k->ws, k->ws_bytes) != LINATTN_SUCCESS) {
    fprintf(stderr, "conv-ab: call: %s\n", l->ab.last_error());
    exit(2);
  }
}

/* ------------------------------------------------------------------ phase 1: bits */

static int bits(lib* a, lib* b, uint64_t* hash_out) {
  static const linattn_dtype dts[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  static const int64_t Ls[] = {1, 2, 3, 5, 17, 33, 64, 100, 512};
  static const int64_t Cs[] = {1, 7, 16, 37, 130, 1029};
  static const int64_t Ks[][2] = {{4, 1}, {4, 2}, {3, 1}, {2, 1}, {5, 3}};
  uint64_t seed = 1, hash = 0xcbf29ce484222325ull;
  int cases = 0, bad = 0;
  for (int di = 0; di < 3; ++di)
    for (size_t li = 0; li < sizeof Ls / sizeof Ls[0]; ++li)
      for (size_t ci = 0; ci < sizeof Cs / sizeof Cs[0]; ++ci)
        for (size_t ki = 0; ki < sizeof Ks / sizeof Ks[0]; ++ki)
          for (int v = 0; v < 4; ++v) { /* layout x activation; bias and past vary with the seed */
            const uint64_t r = rng_next(&seed);
            conv_case c = {dts[di], 0, v & 1, v >> 1, (int)(r & 1), (int)((r >> 1) % 4 != 0), 0,
                           1 + (int64_t)((r >> 3) % 2), Cs[ci], Ls[li], Ks[ki][0], Ks[ki][1]};
            if (c.C * c.L * c.B > (1 << 20)) c.B = 1;
            conv_bufs ta, tb;
            uint64_t sa = r, sb = r;
            bufs_make(&ta, &c, &sa);
            bufs_make(&tb, &c, &sb);
            call ka, kb;
            call_make(&ka, a, &c, &ta);
            call_make(&kb, b, &c, &tb);
            call_run(&ka, a, &c, &ta);
            call_run(&kb, b, &c, &tb);
            const size_t ny = ta.ny * ta.es + 16, ns = ta.ns * ta.es + 16;
            if (memcmp(ta.yb, tb.yb, ny) != 0 || memcmp(ta.qb, tb.qb, ns) != 0) {
              if (bad++ < 10)
                fprintf(stderr, "conv-ab: bits differ: %s %s L=%lld C=%lld K=%lld d=%lld bias=%d past=%d silu=%d B=%lld\n",
                        c.channels_last ? "cl" : "cf", dtype_name(c.dt), (long long)c.L, (long long)c.C,
                        (long long)c.K, (long long)c.d, c.has_bias, c.has_past, c.silu, (long long)c.B);
            }
            hash = fnv(fnv(hash, ta.yb, ny), ta.qb, ns);
            ++cases;
            free(ka.ws), free(kb.ws);
            bufs_free(&ta), bufs_free(&tb);
          }
  *hash_out = hash;
  printf("bits: %d cases, %d differ, hash of A's outputs %016llx\n", cases, bad, (unsigned long long)hash);
  return bad;
}

/* ------------------------------------------------------------------ phase 2: time */

typedef struct timed_arg {
  lib* l[2]; /* A, B */
  const conv_case* c;
  conv_bufs t; /* shared by A and B */
  call k[2];
} timed_arg;

static void run_one(void* arg, int use_b) {
  timed_arg* x = arg;
  call_run(&x->k[use_b], x->l[use_b], x->c, &x->t);
}

/* CONV_AB_FLUSH_MIB=N: a memcpy of N MiB before each timed call (evicts the conv's data; its
 * best time gives the run's copy rate, bytes read + written); CONV_AB_CPU_TIME=1: each call
 * timed by thread CPU time instead of wall time (docs/benchmarks.md's L = 4096 conv figures). */
static struct {
  char *src, *dst;
  size_t bytes;
  double best_ns;
} g_flush;

static void flush_caches(void* arg) {
  (void)arg;
  const double t0 = wall_ns();
  memcpy(g_flush.dst, g_flush.src, g_flush.bytes);
  const double dt = wall_ns() - t0;
  if (g_flush.best_ns == 0 || dt < g_flush.best_ns) g_flush.best_ns = dt;
}

static void timed(lib* a, lib* b, const conv_case* c, int max_pairs, double budget_s) {
  uint64_t seed = 7;
  timed_arg x = {.l = {a, b}, .c = c};
  bufs_make(&x.t, c, &seed);
  for (int i = 0; i < 2; ++i) call_make(&x.k[i], x.l[i], c, &x.t);
  const char* fl = getenv("CONV_AB_FLUSH_MIB");
  const char* cpu = getenv("CONV_AB_CPU_TIME");
  const bool flush = fl && atoi(fl) > 0, cpu_time = cpu && atoi(cpu) > 0;
  if (flush && !g_flush.src) {
    g_flush.bytes = (size_t)atoi(fl) << 20;
    g_flush.src = malloc(g_flush.bytes), g_flush.dst = malloc(g_flush.bytes);
    if (!g_flush.src || !g_flush.dst) exit(2);
    memset(g_flush.src, 1, g_flush.bytes), memset(g_flush.dst, 2, g_flush.bytes);
  }
  printf("%s %-4s L=%-5lld C=%-5lld ", c->channels_last ? "cl" : "cf", dtype_name(c->dt), (long long)c->L,
         (long long)c->C);
  ab_alternate(run_one, flush ? flush_caches : NULL, cpu_time ? thread_ns : wall_ns, &x, max_pairs, budget_s, 10);
  if (flush) { /* byte time: input + output + weights + both states at the best copy rate */
    const double rate = 2.0 * (double)g_flush.bytes / g_flush.best_ns; /* bytes per ns */
    const double bytes = (double)((x.t.ny * 2 + x.t.ns * 2) * x.t.es) + (double)(c->C * c->K * (int64_t)x.t.es);
    printf("    copy %.2f GB/s, byte time %.2f us\n", rate, bytes / rate * 1e-3);
  }
  free(x.k[0].ws), free(x.k[1].ws);
  bufs_free(&x.t);
}

/* ------------------------------------------------------------------ packed decode */

typedef struct packed_arg {
  lib* l[2];
  const conv_case* c;
  linattn_varlen_conv_desc vd;
  linattn_causal_conv_desc dd;
  linattn_varlen_batch batch;
  int32_t* cu;
  int64_t nseq, total, dense_B; /* sequences, packed tokens; dense batch (dense tokens: total / dense_B) */
  /* packed (total, C) rows and (nseq, C, 3) state; dense (dense_B, total / dense_B, C), (dense_B, 3, C) */
  linattn_tensor x, y, w, vs, dx, dy, ds;
  void *xb, *yb, *wb, *vsb, *dsb;
} packed_arg;

static void packed_make(packed_arg* a, const conv_case* c, uint64_t* seed) {
  static const int share[4] = {40, 30, 20, 10}; /* linattn-bench's VarlenConv prefill split */
  const bool prefill = c->packed == 2;
  a->c = c;
  a->nseq = prefill ? 4 : c->B, a->total = prefill ? c->L : c->B, a->dense_B = prefill ? 1 : c->B;
  const size_t es = dtype_size(c->dt), n = (size_t)(a->total * c->C), ns = (size_t)(a->nseq * c->C);
  const size_t nds = (size_t)(a->dense_B * c->C);
  a->cu = malloc(sizeof(int32_t) * (size_t)(a->nseq + 1));
  a->cu[0] = 0;
  for (int64_t i = 0; i < a->nseq; ++i)
    a->cu[i + 1] = !prefill ? (int32_t)(i + 1)
                 : i == a->nseq - 1 ? (int32_t)a->total : a->cu[i] + (int32_t)(a->total * share[i] / 100);
  a->batch = (linattn_varlen_batch){a->nseq, a->cu, NULL, NULL, NULL};
  a->xb = xalloc(n * es), a->yb = xalloc(n * es), a->wb = xalloc((size_t)(4 * c->C) * es);
  a->vsb = xalloc(3 * ns * es), a->dsb = xalloc(3 * nds * es);
  fill(a->xb, n, c->dt, seed), fill(a->wb, (size_t)(4 * c->C), c->dt, seed);
  fill(a->vsb, 3 * ns, c->dt, seed), fill(a->dsb, 3 * nds, c->dt, seed);
  const int64_t xd[2] = {a->total, c->C}, wd[3] = {c->C, 1, 4}, vsd[3] = {a->nseq, c->C, 3},
                dxd[3] = {a->dense_B, a->total / a->dense_B, c->C}, dsd[3] = {a->dense_B, 3, c->C};
  a->x = tensor(a->xb, c->dt, 2, xd), a->y = tensor(a->yb, c->dt, 2, xd), a->w = tensor(a->wb, c->dt, 3, wd);
  a->vs = tensor(a->vsb, c->dt, 3, vsd);
  a->dx = tensor(a->xb, c->dt, 3, dxd), a->dy = tensor(a->yb, c->dt, 3, dxd), a->ds = tensor(a->dsb, c->dt, 3, dsd);
}

static void packed_free(packed_arg* a) { free(a->cu), free(a->xb), free(a->yb), free(a->wb), free(a->vsb), free(a->dsb); }

/* call 0: A packed, 1: A dense, 2: B packed, 3: B dense (each reads and updates its state in place) */
static void packed_call(packed_arg* a, int k) {
  lib* l = a->l[k >> 1];
  linattn_status st;
  if (k & 1) {
    l->desc_init(&a->dd);
    a->dd.activation = LINATTN_ACTIVATION_SILU, a->dd.channels_last = 1;
    st = l->conv(l->ab.ctx, &a->dd, &a->dx, &a->w, NULL, &a->ds, &a->dy, &a->ds, NULL, 0);
  } else {
    l->vdesc_init(&a->vd);
    a->vd.activation = LINATTN_ACTIVATION_SILU;
    st = l->varlen(l->ab.ctx, &a->vd, &a->batch, &a->x, &a->w, NULL, &a->vs, NULL, NULL, &a->y, &a->vs, NULL, NULL, 0);
  }
  if (st != LINATTN_SUCCESS) {
    fprintf(stderr, "conv-ab: packed case: %s\n", l->ab.last_error());
    exit(2);
  }
}

/* Each build's packed output and state from the same inputs, byte for byte. */
static int packed_bits(packed_arg* a) {
  const size_t es = dtype_size(a->c->dt), n = (size_t)(a->total * a->c->C) * es, ns = (size_t)(a->nseq * a->c->C) * es;
  unsigned char* keep = malloc(3 * ns);
  unsigned char* ya = malloc(n + 3 * ns);
  unsigned char* sa = ya + n;
  memcpy(keep, a->vsb, 3 * ns);
  packed_call(a, 0);
  memcpy(ya, a->yb, n), memcpy(sa, a->vsb, 3 * ns);
  memcpy(a->vsb, keep, 3 * ns);
  memset(a->yb, 0xa5, n);
  packed_call(a, 2);
  const int bad = memcmp(ya, a->yb, n) != 0 || memcmp(sa, a->vsb, 3 * ns) != 0;
  free(keep), free(ya);
  return bad;
}

static void timed_packed(lib* a, lib* b, const conv_case* c, int max_rounds, double budget_s) {
  uint64_t seed = 7;
  packed_arg x = {.l = {a, b}};
  packed_make(&x, c, &seed);
  const int bad = packed_bits(&x);
  for (int i = 0; i < 3; ++i)
    for (int k = 0; k < 4; ++k) packed_call(&x, k);
  double* t = malloc(sizeof(double) * (size_t)max_rounds * 7);
  double *ra = t + 4 * (size_t)max_rounds, *rb = ra + max_rounds, *rp = rb + max_rounds;
  const double end = wall_ns() + budget_s * 1e9;
  int n = 0;
  for (; n < max_rounds && (n < 20 || wall_ns() < end); ++n) {
    double tk[4];
    for (int j = 0; j < 4; ++j) { /* rotating order: each call in each position */
      const int k = (j + n) & 3;
      const double t0 = thread_ns();
      packed_call(&x, k);
      tk[k] = thread_ns() - t0;
    }
    for (int k = 0; k < 4; ++k) t[k * (size_t)max_rounds + n] = tk[k];
    ra[n] = tk[0] / tk[1], rb[n] = tk[2] / tk[3], rp[n] = tk[2] / tk[0];
  }
  double med[4];
  for (int k = 0; k < 4; ++k) med[k] = quantile(t + k * (size_t)max_rounds, n, 0.5) * 1e-3;
  printf("packed %-4s %s=%-4lld C=%-5lld bits %s  %d rounds  A packed %.2f dense-cl %.2f us  B packed %.2f dense-cl %.2f us"
         "  packed/dense A %.3f B %.3f (per round %.3f, %.3f)  packed B/A %.3f  dense B/A %.3f\n",
         dtype_name(c->dt), c->packed == 2 ? "T" : "B", (long long)(c->packed == 2 ? c->L : c->B), (long long)c->C,
         bad ? "DIFFER" : "same", n, med[0], med[1], med[2], med[3],
         med[0] / med[1], med[2] / med[3], quantile(ra, n, 0.5), quantile(rb, n, 0.5), quantile(rp, n, 0.5),
         med[3] / med[1]);
  fflush(stdout);
  free(t);
  packed_free(&x);
}

static int parse_case(const char* s, conv_case* c) {
  char layout[8], dt[8];
  long long L, C;
  if (sscanf(s, "%7[^,],%7[^,],%lld,%lld", layout, dt, &L, &C) != 4 || L < 1 || C < 1) return -1;
  memset(c, 0, sizeof *c);
  if (!strcmp(layout, "v") || !strcmp(layout, "p")) { /* v: L is the sequence count; p: the token count */
    const bool prefill = layout[0] == 'p';
    if (prefill && L < 4) return -1; /* four sequences of at least one token */
    c->dt = dtype_parse(dt);
    c->packed = prefill ? 2 : 1, c->silu = 1, c->has_past = 1, c->in_place = 1, c->C = C, c->K = 4, c->d = 1;
    c->B = prefill ? 4 : L, c->L = prefill ? L : 1;
    return c->dt == LINATTN_DTYPE_INVALID ? -1 : 0;
  }
  c->channels_last = strcmp(layout, "cl") == 0;
  if (!c->channels_last && strcmp(layout, "cf") != 0) return -1;
  c->dt = dtype_parse(dt);
  if (c->dt == LINATTN_DTYPE_INVALID) return -1;
  c->silu = 1, c->has_past = 1, c->in_place = 1, c->B = 1, c->C = C, c->L = L, c->K = 4, c->d = 1;
  return 0;
}

static int parse_case_at(void* cases, int i, const char* s) { return parse_case(s, (conv_case*)cases + i); }

int main(int argc, char** argv) {
  static const char* const defaults[] = {"cl,f16,1,6144", "cf,f32,512,6144", "cf,bf16,512,6144", "cl,f16,512,6144",
                                         "cf,f16,512,6144", "cl,f32,512,6144", "cl,bf16,512,6144", "cf,f16,1,6144",
                                         "cl,f32,1,6144", "cl,bf16,1,6144"};
  conv_case cases[AB_MAX_CASES];
  const ab_opts o = ab_parse_args(argc, argv, "cf|cl,f32|f16|bf16,L,C", "cf|cl,f32|f16|bf16,L,C or v,DT,B,C or p,DT,T,C", parse_case_at,
                                  cases, defaults, (int)(sizeof defaults / sizeof defaults[0]));
  lib a, b;
  lib_open(&a, argv[1], o.isa);
  lib_open(&b, argv[2], o.isa);
  printf("A %s\nB %s\nISA %s, 1 thread, K = 4, SiLU, no bias, B = 1, state in place\n", argv[1], argv[2], o.isa);
  uint64_t hash;
  const int bad = o.bits_it ? bits(&a, &b, &hash) : 0;
  if (o.time_it)
    for (int i = 0; i < o.ncases; ++i) {
      if (cases[i].packed) timed_packed(&a, &b, &cases[i], o.max_pairs, o.budget);
      else timed(&a, &b, &cases[i], o.max_pairs, o.budget);
    }
  a.ab.context_destroy(a.ab.ctx), b.ab.context_destroy(b.ab.ctx);
  return bad ? 1 : 0;
}
