/*
 * What the A/B harnesses (conv_ab.c, la_ab.c) share: loading a build of the library with dlopen and
 * a one-thread context on it, data helpers, the per-pair alternated timing with its statistics, and
 * the command line. Each harness keeps its operator's symbols, cases, buffers and bits sweep.
 * Define AB_PROG (the prefix of error messages, e.g. "conv-ab") before including.
 */
#ifndef LINATTN_AB_COMMON_H
#define LINATTN_AB_COMMON_H

#ifndef AB_PROG
#error "define AB_PROG before including ab_common.h"
#endif

#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linattn.h"

#define AB_MAX_CASES 64

/* The symbols every harness needs from one build, and its context. */
typedef struct ab_lib {
  void* handle;
  void (*options_init)(linattn_context_options*);
  linattn_status (*context_create)(const linattn_context_options*, linattn_context**);
  void (*context_destroy)(linattn_context*);
  int (*isa_from_name)(const char*);
  const char* (*last_error)(void);
  linattn_context* ctx;
} ab_lib;

static void* ab_sym(void* h, const char* path, const char* name) {
  void* f = dlsym(h, name);
  if (!f) {
    fprintf(stderr, AB_PROG ": %s lacks %s\n", path, name);
    exit(2);
  }
  return f;
}

static int ab_isa_from_enum_name(const char* isa) {
  static const char* const names[] = {"auto", "reference", "scalar", "avx2", "avx512", "neon"};
  for (int i = 0; i < (int)(sizeof names / sizeof names[0]); i++)
    if (!strcmp(isa, names[i])) return i;
  return -1;
}

/* Private (RTLD_LOCAL), so the two builds' symbols never mix; one thread, the named ISA. */
static void ab_open(ab_lib* l, const char* path, const char* isa) {
  l->handle = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (!l->handle) {
    fprintf(stderr, AB_PROG ": %s\n", dlerror());
    exit(2);
  }
  *(void**)&l->options_init = ab_sym(l->handle, path, "linattn_context_options_init");
  *(void**)&l->context_create = ab_sym(l->handle, path, "linattn_context_create");
  *(void**)&l->context_destroy = ab_sym(l->handle, path, "linattn_context_destroy");
  /* Optional: builds older than linattn_isa_from_name take the public enum's names. */
  *(void**)&l->isa_from_name = dlsym(l->handle, "linattn_isa_from_name");
  *(void**)&l->last_error = ab_sym(l->handle, path, "linattn_last_error");
  linattn_context_options o;
  l->options_init(&o);
  o.num_threads = 1;
  const int id = l->isa_from_name ? l->isa_from_name(isa) : ab_isa_from_enum_name(isa);
  if (id < 0) {
    fprintf(stderr, AB_PROG ": unknown ISA %s\n", isa);
    exit(2);
  }
  o.isa = (linattn_isa)id;
  if (l->context_create(&o, &l->ctx) != LINATTN_SUCCESS) {
    fprintf(stderr, AB_PROG ": %s: context: %s\n", path, l->last_error());
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

static void* xalloc(size_t n) {
  void* p = aligned_alloc(64, (n + 63) / 64 * 64 + 64);
  if (!p) {
    fprintf(stderr, AB_PROG ": out of memory\n");
    exit(2);
  }
  return p;
}

/* The harnesses link neither build: their own copies of the header helpers they need. */
static size_t dtype_size(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 4 : 2; }
static const char* dtype_name(linattn_dtype dt) {
  return dt == LINATTN_DTYPE_F32 ? "f32" : dt == LINATTN_DTYPE_F16 ? "f16" : "bf16";
}
static linattn_dtype dtype_parse(const char* s) {
  return !strcmp(s, "f32") ? LINATTN_DTYPE_F32 : !strcmp(s, "f16") ? LINATTN_DTYPE_F16
       : !strcmp(s, "bf16") ? LINATTN_DTYPE_BF16 : LINATTN_DTYPE_INVALID;
}
static linattn_tensor tensor(void* data, linattn_dtype dt, int32_t rank, const int64_t* dims) {
  linattn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data, t.dtype = dt, t.rank = rank;
  for (int i = 0; i < rank; ++i) t.dims[i] = dims[i];
  return t;
}

static uint64_t fnv(uint64_t h, const void* p, size_t n) { /* FNV-1a, from 0xcbf29ce484222325 */
  for (size_t i = 0; i < n; ++i) h = (h ^ ((const unsigned char*)p)[i]) * 0x100000001b3ull;
  return h;
}

/* ------------------------------------------------------------------ time */

static inline double clock_ns(clockid_t id) {
  struct timespec ts;
  clock_gettime(id, &ts);
  return 1e9 * (double)ts.tv_sec + (double)ts.tv_nsec;
}
static inline double wall_ns(void) { return clock_ns(CLOCK_MONOTONIC); }
static inline double thread_ns(void) { return clock_ns(CLOCK_THREAD_CPUTIME_ID); }

static int cmp_double(const void* x, const void* y) {
  const double a = *(const double*)x, b = *(const double*)y;
  return a < b ? -1 : a > b;
}

static double quantile(double* v, int n, double q) {
  qsort(v, (size_t)n, sizeof *v, cmp_double);
  return v[(int)(q * (n - 1) + 0.5)];
}

/* Warms up with 3 calls of each build, then alternates A (run(arg, 0)) and B (run(arg, 1)), the
 * order flipped every pair, each call timed alone by clock (prepare(arg), if any, runs untimed
 * before each), for at least 20 pairs and then until max_pairs or the wall-clock budget. Prints,
 * after the caller's case label, the pair count, the medians, the median per-pair ratio B / A with
 * its quartiles and the ratio of the 10th-percentile times. */
static void ab_alternate(void (*run)(void* arg, int use_b), void (*prepare)(void* arg), double (*clock)(void),
                         void* arg, int max_pairs, double budget_s, int us_width) {
  for (int i = 0; i < 3; ++i) run(arg, 0), run(arg, 1);
  double* ta = malloc(sizeof(double) * (size_t)max_pairs * 3);
  double *tb = ta + max_pairs, *ratio = tb + max_pairs;
  const double end = wall_ns() + budget_s * 1e9;
  int n = 0;
  for (; n < max_pairs && (n < 20 || wall_ns() < end); ++n) {
    for (int half = 0; half < 2; half++) {
      const int use_b = (n & 1) ^ half;
      if (prepare) prepare(arg);
      const double t0 = clock();
      run(arg, use_b);
      const double dt = clock() - t0;
      if (use_b) tb[n] = dt;
      else ta[n] = dt;
    }
    ratio[n] = tb[n] / ta[n];
  }
  const double q1 = quantile(ratio, n, 0.25), q2 = quantile(ratio, n, 0.5), q3 = quantile(ratio, n, 0.75);
  const double ma = quantile(ta, n, 0.5) * 1e-3, mb = quantile(tb, n, 0.5) * 1e-3;
  const double fa = quantile(ta, n, 0.1), fb = quantile(tb, n, 0.1);
  printf("%6d pairs  A %*.2f us  B %*.2f us  B/A %.3f (%.3f-%.3f)  p10 %.3f\n", n, us_width, ma, us_width, mb, q2,
         q1, q3, fb / fa);
  fflush(stdout);
  free(ta);
}

/* ------------------------------------------------------------------ command line */

typedef struct ab_opts {
  const char* isa;
  int max_pairs, time_it, bits_it, ncases;
  double budget;
} ab_opts;

/* A.so B.so [--isa NAME] [--pairs N] [--budget SEC] [--case SPEC]... [--no-time] [--no-bits];
 * parse(cases, i, SPEC) fills the harness's case i, returning nonzero on a bad SPEC. Without
 * --case, the defaults. Exits with 2 on a bad command line. */
static ab_opts ab_parse_args(int argc, char** argv, const char* case_usage, const char* case_want,
                             int (*parse)(void* cases, int i, const char* spec), void* cases,
                             const char* const* defaults, int ndefaults) {
  ab_opts o = {"auto", 20000, 1, 1, 0, 3.0};
  if (argc < 3) {
    fprintf(stderr, "usage: %s A.so B.so [--isa NAME] [--pairs N] [--budget SEC] [--case %s]... "
                    "[--no-time] [--no-bits]\n", argv[0], case_usage);
    exit(2);
  }
  for (int i = 3; i < argc; ++i) {
    if (!strcmp(argv[i], "--isa") && i + 1 < argc) o.isa = argv[++i];
    else if (!strcmp(argv[i], "--pairs") && i + 1 < argc) o.max_pairs = atoi(argv[++i]);
    else if (!strcmp(argv[i], "--budget") && i + 1 < argc) o.budget = atof(argv[++i]);
    else if (!strcmp(argv[i], "--no-time")) o.time_it = 0;
    else if (!strcmp(argv[i], "--no-bits")) o.bits_it = 0; /* timing only, e.g. repeated rounds */
    else if (!strcmp(argv[i], "--case") && i + 1 < argc && o.ncases < AB_MAX_CASES) {
      if (parse(cases, o.ncases++, argv[++i]) != 0) {
        fprintf(stderr, AB_PROG ": bad case %s (want %s)\n", argv[i], case_want);
        exit(2);
      }
    } else {
      fprintf(stderr, AB_PROG ": unknown argument %s\n", argv[i]);
      exit(2);
    }
  }
  if (o.max_pairs < 20) o.max_pairs = 20;
  if (o.ncases == 0)
    for (int i = 0; i < ndefaults && i < AB_MAX_CASES; ++i) parse(cases, o.ncases++, defaults[i]);
  return o;
}

#endif
