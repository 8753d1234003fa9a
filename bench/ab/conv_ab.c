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
 * SPEC: cf|cl, f32|f16|bf16, L, C (K = 4, SiLU, no bias, B = 1), e.g. "cl,f16,1,6144".
 * Without --case: the AVX-512 / AVX2 rows of docs/benchmarks.md's shared-body A/B.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linattn.h"

typedef struct lib {
  void* handle;
  void (*options_init)(linattn_context_options*);
  linattn_status (*context_create)(const linattn_context_options*, linattn_context**);
  void (*context_destroy)(linattn_context*);
  int (*isa_from_name)(const char*);
  void (*desc_init)(linattn_causal_conv_desc*);
  linattn_status (*conv)(linattn_context*, const linattn_causal_conv_desc*, const linattn_tensor*,
                         const linattn_tensor*, const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                         const linattn_tensor*, void*, size_t);
  linattn_status (*conv_ws)(linattn_context*, const linattn_causal_conv_desc*, const linattn_tensor*,
                            const linattn_tensor*, const linattn_tensor*, const linattn_tensor*, const linattn_tensor*,
                            const linattn_tensor*, size_t*);
  const char* (*last_error)(void);
  linattn_context* ctx;
} lib;

static void* sym(void* h, const char* path, const char* name) {
  void* f = dlsym(h, name);
  if (!f) {
    fprintf(stderr, "conv-ab: %s lacks %s\n", path, name);
    exit(2);
  }
  return f;
}

static void lib_open(lib* l, const char* path, const char* isa) {
  l->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!l->handle) {
    fprintf(stderr, "conv-ab: %s\n", dlerror());
    exit(2);
  }
  *(void**)&l->options_init = sym(l->handle, path, "linattn_context_options_init");
  *(void**)&l->context_create = sym(l->handle, path, "linattn_context_create");
  *(void**)&l->context_destroy = sym(l->handle, path, "linattn_context_destroy");
  *(void**)&l->isa_from_name = sym(l->handle, path, "linattn_isa_from_name");
  *(void**)&l->desc_init = sym(l->handle, path, "linattn_causal_conv_desc_init");
  *(void**)&l->conv = sym(l->handle, path, "linattn_causal_conv_with_state");
  *(void**)&l->conv_ws = sym(l->handle, path, "linattn_causal_conv_with_state_workspace_size");
  *(void**)&l->last_error = sym(l->handle, path, "linattn_last_error");
  linattn_context_options o;
  l->options_init(&o);
  o.num_threads = 1;
  const int id = l->isa_from_name(isa);
  if (id < 0) {
    fprintf(stderr, "conv-ab: unknown ISA %s\n", isa);
    exit(2);
  }
  o.isa = (linattn_isa)id;
  if (l->context_create(&o, &l->ctx) != LINATTN_SUCCESS) {
    fprintf(stderr, "conv-ab: %s: context: %s\n", path, l->last_error());
    exit(2);
  }
}

/* ------------------------------------------------------------------ data */

static uint64_t rng_next(uint64_t* s) { /* splitmix64 */
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

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

static void* xalloc(size_t n) {
  void* p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, "conv-ab: out of memory\n");
    exit(2);
  }
  return p;
}

/* The harness links neither build: its own copies of the two header helpers it needs. */
static size_t dtype_size(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 4 : 2; }
static const char* dtype_name(linattn_dtype dt) {
  return dt == LINATTN_DTYPE_F32 ? "f32" : dt == LINATTN_DTYPE_F16 ? "f16" : "bf16";
}
static linattn_tensor tensor(void* data, linattn_dtype dt, int32_t rank, const int64_t* dims) {
  linattn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data, t.dtype = dt, t.rank = rank;
  for (int i = 0; i < rank; ++i) t.dims[i] = dims[i];
  return t;
}

/* One call's tensors: x, w, bias, past, y, present (present == past when in_place). */
typedef struct conv_case {
  linattn_dtype dt;
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
  if (l->conv_ws(l->ctx, &k->desc, &t->x, &t->w, c->has_bias ? &t->bias : NULL, c->has_past ? &t->past : NULL,
                 &t->y, &t->present, &k->ws_bytes) != LINATTN_SUCCESS) {
    fprintf(stderr, "conv-ab: workspace: %s\n", l->last_error());
    exit(2);
  }
  k->ws = k->ws_bytes ? xalloc(k->ws_bytes) : NULL;
}

static void call_run(const call* k, lib* l, const conv_case* c, const conv_bufs* t) {
  if (l->conv(l->ctx, &k->desc, &t->x, &t->w, c->has_bias ? &t->bias : NULL, c->has_past ? &t->past : NULL, &t->y,
              &t->present, k->ws, k->ws_bytes) != LINATTN_SUCCESS) {
    fprintf(stderr, "conv-ab: call: %s\n", l->last_error());
    exit(2);
  }
}

static uint64_t fnv(uint64_t h, const void* p, size_t n) {
  for (size_t i = 0; i < n; ++i) h = (h ^ ((const unsigned char*)p)[i]) * 0x100000001b3ull;
  return h;
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
            conv_case c = {dts[di], v & 1, v >> 1, (int)(r & 1), (int)((r >> 1) % 4 != 0), 0,
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

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return 1e9 * (double)ts.tv_sec + (double)ts.tv_nsec;
}

static int cmp_double(const void* x, const void* y) {
  const double a = *(const double*)x, b = *(const double*)y;
  return a < b ? -1 : a > b;
}

static double quantile(double* v, int n, double q) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[(int)(q * (n - 1) + 0.5)];
}

static void timed(lib* a, lib* b, const conv_case* c, int max_pairs, double budget_s) {
  uint64_t seed = 7;
  conv_bufs t;
  bufs_make(&t, c, &seed);
  call ka, kb;
  call_make(&ka, a, c, &t);
  call_make(&kb, b, c, &t);
  for (int i = 0; i < 3; ++i) call_run(&ka, a, c, &t), call_run(&kb, b, c, &t); /* warm up */
  double* ta = malloc(sizeof(double) * (size_t)max_pairs * 3);
  double *tb = ta + max_pairs, *ratio = tb + max_pairs;
  const double end = now_ns() + budget_s * 1e9;
  int n = 0;
  for (; n < max_pairs && (n < 20 || now_ns() < end); ++n) {
    double t0, t1, t2;
    if (n & 1) {
      t0 = now_ns(), call_run(&kb, b, c, &t), t1 = now_ns(), call_run(&ka, a, c, &t), t2 = now_ns();
      tb[n] = t1 - t0, ta[n] = t2 - t1;
    } else {
      t0 = now_ns(), call_run(&ka, a, c, &t), t1 = now_ns(), call_run(&kb, b, c, &t), t2 = now_ns();
      ta[n] = t1 - t0, tb[n] = t2 - t1;
    }
    ratio[n] = tb[n] / ta[n];
  }
  const double q1 = quantile(ratio, n, 0.25), q2 = quantile(ratio, n, 0.5), q3 = quantile(ratio, n, 0.75);
  const double ma = quantile(ta, n, 0.5) * 1e-3, mb = quantile(tb, n, 0.5) * 1e-3;
  const double fa = quantile(ta, n, 0.1), fb = quantile(tb, n, 0.1);
  printf("%s %-4s L=%-5lld C=%-5lld %6d pairs  A %10.2f us  B %10.2f us  B/A %.3f (%.3f-%.3f)  p10 %.3f\n",
         c->channels_last ? "cl" : "cf", dtype_name(c->dt), (long long)c->L, (long long)c->C, n, ma, mb, q2,
         q1, q3, fb / fa);
  fflush(stdout);
  free(ta), free(ka.ws), free(kb.ws);
  bufs_free(&t);
}

static int parse_case(const char* s, conv_case* c) {
  char layout[8], dt[8];
  long long L, C;
  if (sscanf(s, "%7[^,],%7[^,],%lld,%lld", layout, dt, &L, &C) != 4 || L < 1 || C < 1) return -1;
  memset(c, 0, sizeof *c);
  c->channels_last = strcmp(layout, "cl") == 0;
  if (!c->channels_last && strcmp(layout, "cf") != 0) return -1;
  c->dt = !strcmp(dt, "f32") ? LINATTN_DTYPE_F32 : !strcmp(dt, "f16") ? LINATTN_DTYPE_F16
        : !strcmp(dt, "bf16") ? LINATTN_DTYPE_BF16 : LINATTN_DTYPE_INVALID;
  if (c->dt == LINATTN_DTYPE_INVALID) return -1;
  c->silu = 1, c->has_past = 1, c->in_place = 1, c->B = 1, c->C = C, c->L = L, c->K = 4, c->d = 1;
  return 0;
}

int main(int argc, char** argv) {
  static const char* defaults[] = {"cl,f16,1,6144", "cf,f32,512,6144", "cf,bf16,512,6144", "cl,f16,512,6144",
                                   "cf,f16,512,6144", "cl,f32,512,6144", "cl,bf16,512,6144", "cf,f16,1,6144",
                                   "cl,f32,1,6144", "cl,bf16,1,6144"};
  const char* isa = "auto";
  int max_pairs = 20000, time_it = 1, bits_it = 1, ncases = 0;
  double budget = 3.0;
  conv_case cases[64];
  if (argc < 3) {
    fprintf(stderr, "usage: %s A.so B.so [--isa NAME] [--pairs N] [--budget SEC] [--case cf|cl,f32|f16|bf16,L,C]... "
                    "[--no-time] [--no-bits]\n", argv[0]);
    return 2;
  }
  for (int i = 3; i < argc; ++i) {
    if (!strcmp(argv[i], "--isa") && i + 1 < argc) isa = argv[++i];
    else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) max_pairs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--budget") && i + 1 < argc) budget = atof(argv[++i]);
    else if (!strcmp(argv[i], "--no-time")) time_it = 0;
    else if (!strcmp(argv[i], "--no-bits")) bits_it = 0; /* timing only, e.g. repeated rounds */
    else if (!strcmp(argv[i], "--case") && i + 1 < argc && ncases < 64) {
      if (parse_case(argv[++i], &cases[ncases++]) != 0) {
        fprintf(stderr, "conv-ab: bad case %s (want cf|cl,f32|f16|bf16,L,C)\n", argv[i]);
        return 2;
      }
    } else {
      fprintf(stderr, "conv-ab: unknown argument %s\n", argv[i]);
      return 2;
    }
  }
  if (max_pairs < 20) max_pairs = 20;
  if (ncases == 0)
    for (size_t i = 0; i < sizeof defaults / sizeof defaults[0]; ++i) parse_case(defaults[i], &cases[ncases++]);
  lib a, b;
  lib_open(&a, argv[1], isa);
  lib_open(&b, argv[2], isa);
  printf("A %s\nB %s\nISA %s, 1 thread, K = 4, SiLU, no bias, B = 1, state in place\n", argv[1], argv[2], isa);
  uint64_t hash;
  const int bad = bits_it ? bits(&a, &b, &hash) : 0;
  if (time_it)
    for (int i = 0; i < ncases; ++i) timed(&a, &b, &cases[i], max_pairs, budget);
  a.context_destroy(a.ctx), b.context_destroy(b.ctx);
  return bad ? 1 : 0;
}
