/* Check counting, failure printing, seeds and the RNG. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "testkit.h"

static int64_t g_passed, g_failed;
static char g_context[512];
static int g_context_printed;
static const char* g_suite = "test";
enum { MAX_PRINTED_FAILURES = 200 };

void tk_begin(const char* suite) {
  g_suite = suite;
  printf("== %s (linattn %s)\n", suite, linattn_version_string());
  fflush(stdout);
}

void tk_context(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(g_context, sizeof g_context, fmt, ap);
  va_end(ap);
  g_context_printed = 0;
}

bool tk_check(bool ok, const char* fmt, ...) {
  if (ok) {
    g_passed++;
    return true;
  }
  g_failed++;
  if (g_failed <= MAX_PRINTED_FAILURES) {
    if (!g_context_printed && g_context[0]) {
      printf("  in case: %s\n", g_context);
      g_context_printed = 1;
    }
    va_list ap;
    va_start(ap, fmt);
    printf("  FAIL: ");
    vprintf(fmt, ap);
    printf("\n");
    va_end(ap);
  } else if (g_failed == MAX_PRINTED_FAILURES + 1) {
    printf("  (further failures not printed)\n");
  }
  fflush(stdout);
  return false;
}

void tk_note(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vprintf(fmt, ap);
  va_end(ap);
  printf("\n");
  fflush(stdout);
}

int64_t tk_failed(void) { return g_failed; }
int64_t tk_passed(void) { return g_passed; }

int tk_finish(void) {
  printf("%lld passed, %lld failed\n", (long long)g_passed, (long long)g_failed);
  fflush(stdout);
  return g_failed == 0 && g_passed > 0 ? 0 : 1;
}

void tk_fatal(const char* fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  printf("FATAL: ");
  vprintf(fmt, ap);
  printf("\n");
  va_end(ap);
  g_failed++;
  tk_finish();
  exit(1);
}

int tk_reduced(void) {
  const char* env = getenv("LINATTN_TEST_REDUCED");
  return env && *env && strcmp(env, "0") != 0;
}

int tk_case_count(int fast_default, int slow_default) {
  const char* env = getenv("LINATTN_TEST_CASES");
  if (env && atoi(env) > 0) return atoi(env);
  return TK_SLOW_BUILD || tk_reduced() ? slow_default : fast_default;
}

double tk_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ------------------------------------------------------------------ rng (xoshiro256**) */

static uint64_t splitmix64(uint64_t* x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

uint64_t tk_seed(void) {
  static int have;
  static uint64_t seed;
  if (!have) {
    const char* env = getenv("LINATTN_TEST_SEED");
    if (env && *env) {
      seed = strtoull(env, NULL, 0);
    } else {
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      uint64_t x = (uint64_t)ts.tv_sec * 1000000007ull ^ (uint64_t)ts.tv_nsec ^ ((uint64_t)getpid() << 32);
      seed = splitmix64(&x) & 0xffffffffffffull;
    }
    have = 1;
    printf("seed %llu (reproduce with LINATTN_TEST_SEED=%llu)\n", (unsigned long long)seed,
           (unsigned long long)seed);
    fflush(stdout);
  }
  return seed;
}

void tk_rng_init(tk_rng* r, uint64_t seed) {
  uint64_t x = seed;
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t tk_next(tk_rng* r) {
  uint64_t* s = r->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double tk_uniform(tk_rng* r) { return (double)(tk_next(r) >> 11) * 0x1.0p-53; }

double tk_uniform_range(tk_rng* r, double lo, double hi) { return lo + (hi - lo) * tk_uniform(r); }

double tk_normal(tk_rng* r) {
  double u1 = tk_uniform(r), u2 = tk_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

int64_t tk_below(tk_rng* r, int64_t n) { return n <= 1 ? 0 : (int64_t)(tk_next(r) % (uint64_t)n); }

void tk_shuffle(tk_rng* r, int* a, int n) {
  for (int i = n - 1; i > 0; i--) {
    int j = (int)tk_below(r, i + 1);
    int t = a[i];
    a[i] = a[j];
    a[j] = t;
  }
}

void tk_axis_init(tk_axis* a, int n) {
  if (n < 1 || n > 64) tk_fatal("tk_axis_init: bad size %d", n);
  a->n = n;
  a->pos = n; /* forces a shuffle on first use */
  for (int i = 0; i < n; i++) a->perm[i] = i;
}

int tk_axis_next(tk_axis* a, tk_rng* r) {
  if (a->pos >= a->n) {
    tk_shuffle(r, a->perm, a->n);
    a->pos = 0;
  }
  return a->perm[a->pos++];
}
