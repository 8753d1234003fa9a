/* Small helpers of linattn-bench: clock, aligned buffers, deterministic random data. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"
#include "convert.h"

double bench_now(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

double bench_thread_cpu(void) {
  struct timespec ts;
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void* bench_alloc(size_t bytes) {
  size_t n = (bytes + 63) / 64 * 64;
  if (n == 0) n = 64;
  void* p = aligned_alloc(64, n);
  if (!p) {
    fprintf(stderr, "linattn-bench: out of memory allocating %zu bytes\n", bytes);
    exit(2);
  }
  memset(p, 0, n); /* touch every page now, not inside a timed call */
  return p;
}

void bench_free(void* p) { free(p); }

static uint64_t splitmix64(uint64_t* s) {
  uint64_t z = (*s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

double bench_uniform(bench_rng* r) { return (double)(splitmix64(&r->s) >> 11) * 0x1.0p-53; }

double bench_normal(bench_rng* r) {
  double u1 = bench_uniform(r), u2 = bench_uniform(r);
  if (u1 < 1e-300) u1 = 1e-300;
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

void bench_store(void* base, size_t i, linattn_dtype dt, float v) {
  switch (dt) {
    case LINATTN_DTYPE_F16: ((uint16_t*)base)[i] = linattn_f32_to_f16(v); break;
    case LINATTN_DTYPE_BF16: ((uint16_t*)base)[i] = linattn_f32_to_bf16(v); break;
    default: ((float*)base)[i] = v; break;
  }
}

const char* bench_dtype_name(linattn_dtype dt) {
  switch (dt) {
    case LINATTN_DTYPE_F32: return "f32";
    case LINATTN_DTYPE_F16: return "f16";
    case LINATTN_DTYPE_BF16: return "bf16";
    default: return "?";
  }
}

int bench_dtype_from_name(const char* s, linattn_dtype* dt) {
  if (!strcmp(s, "f32") || !strcmp(s, "float32")) *dt = LINATTN_DTYPE_F32;
  else if (!strcmp(s, "f16") || !strcmp(s, "float16")) *dt = LINATTN_DTYPE_F16;
  else if (!strcmp(s, "bf16") || !strcmp(s, "bfloat16")) *dt = LINATTN_DTYPE_BF16;
  else return -1;
  return 0;
}

int bench_cold_slots(double slot_bytes, size_t llc_bytes) {
  double target = 2.0 * (double)llc_bytes;
  double n = ceil(target / (slot_bytes > 1.0 ? slot_bytes : 1.0));
  if (n < 2) n = 2;
  if (n > 4096) n = 4096;
  return (int)n;
}

int* bench_slot_positions(int n, uint64_t seed) {
  int* perm = (int*)malloc((size_t)n * sizeof(int));
  if (!perm) {
    fprintf(stderr, "linattn-bench: out of memory\n");
    exit(2);
  }
  for (int i = 0; i < n; i++) perm[i] = i;
  bench_rng r = {seed ^ 0x5eedu};
  for (int i = n - 1; i > 0; i--) {
    int j = (int)(bench_uniform(&r) * (i + 1));
    int t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
  return perm;
}
