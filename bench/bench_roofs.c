/*
 * The machine's roofs, measured in the same run as the kernels: single-thread fp32 FMA peak
 * (a register-resident loop of independent FMA chains, widest vector ISA the CPU has) and copy
 * bandwidth (memcpy, bytes read + bytes written) for working sets that sit in L2, in L3 and in
 * DRAM, with the run's thread count.
 */
#define _GNU_SOURCE
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "bench.h"

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define BENCH_X86 1
#endif

/* ------------------------------------------------------------------ FMA peak */

static volatile float fma_seed = 1.0f, fma_mul = 0.999999f, fma_add = 1e-7f;

/* Each loop keeps its accumulators in registers: enough independent chains to cover FMA
 * latency x issue width on current cores. Returns the flops executed. */
#ifdef BENCH_X86
__attribute__((target("avx512f"), noinline)) static double fma_loop_avx512(long iters, float* sink) {
  /* distinct start values read at run time: the compiler cannot merge the chains */
  const float s0 = fma_seed;
  __m512 a = _mm512_set1_ps(fma_mul), b = _mm512_set1_ps(fma_add);
  __m512 c0 = _mm512_set1_ps(s0), c1 = _mm512_set1_ps(s0 + 1), c2 = _mm512_set1_ps(s0 + 2);
  __m512 c3 = _mm512_set1_ps(s0 + 3), c4 = _mm512_set1_ps(s0 + 4), c5 = _mm512_set1_ps(s0 + 5);
  __m512 c6 = _mm512_set1_ps(s0 + 6), c7 = _mm512_set1_ps(s0 + 7), c8 = _mm512_set1_ps(s0 + 8);
  __m512 c9 = _mm512_set1_ps(s0 + 9), c10 = _mm512_set1_ps(s0 + 10), c11 = _mm512_set1_ps(s0 + 11);
  __m512 c12 = _mm512_set1_ps(s0 + 12), c13 = _mm512_set1_ps(s0 + 13), c14 = _mm512_set1_ps(s0 + 14);
  __m512 c15 = _mm512_set1_ps(s0 + 15);
  for (long i = 0; i < iters; i++) {
    c0 = _mm512_fmadd_ps(c0, a, b); c1 = _mm512_fmadd_ps(c1, a, b);
    c2 = _mm512_fmadd_ps(c2, a, b); c3 = _mm512_fmadd_ps(c3, a, b);
    c4 = _mm512_fmadd_ps(c4, a, b); c5 = _mm512_fmadd_ps(c5, a, b);
    c6 = _mm512_fmadd_ps(c6, a, b); c7 = _mm512_fmadd_ps(c7, a, b);
    c8 = _mm512_fmadd_ps(c8, a, b); c9 = _mm512_fmadd_ps(c9, a, b);
    c10 = _mm512_fmadd_ps(c10, a, b); c11 = _mm512_fmadd_ps(c11, a, b);
    c12 = _mm512_fmadd_ps(c12, a, b); c13 = _mm512_fmadd_ps(c13, a, b);
    c14 = _mm512_fmadd_ps(c14, a, b); c15 = _mm512_fmadd_ps(c15, a, b);
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)),
                                     _mm512_add_ps(_mm512_add_ps(c12, c13), _mm512_add_ps(c14, c15))));
  *sink = _mm512_reduce_add_ps(s);
  return (double)iters * 16 * 16 * 2;
}

__attribute__((target("avx2,fma"), noinline)) static double fma_loop_avx2(long iters, float* sink) {
  const float s0 = fma_seed;
  __m256 a = _mm256_set1_ps(fma_mul), b = _mm256_set1_ps(fma_add);
  __m256 c0 = _mm256_set1_ps(s0), c1 = _mm256_set1_ps(s0 + 1), c2 = _mm256_set1_ps(s0 + 2);
  __m256 c3 = _mm256_set1_ps(s0 + 3), c4 = _mm256_set1_ps(s0 + 4), c5 = _mm256_set1_ps(s0 + 5);
  __m256 c6 = _mm256_set1_ps(s0 + 6), c7 = _mm256_set1_ps(s0 + 7), c8 = _mm256_set1_ps(s0 + 8);
  __m256 c9 = _mm256_set1_ps(s0 + 9), c10 = _mm256_set1_ps(s0 + 10), c11 = _mm256_set1_ps(s0 + 11);
  for (long i = 0; i < iters; i++) {
    c0 = _mm256_fmadd_ps(c0, a, b); c1 = _mm256_fmadd_ps(c1, a, b);
    c2 = _mm256_fmadd_ps(c2, a, b); c3 = _mm256_fmadd_ps(c3, a, b);
    c4 = _mm256_fmadd_ps(c4, a, b); c5 = _mm256_fmadd_ps(c5, a, b);
    c6 = _mm256_fmadd_ps(c6, a, b); c7 = _mm256_fmadd_ps(c7, a, b);
    c8 = _mm256_fmadd_ps(c8, a, b); c9 = _mm256_fmadd_ps(c9, a, b);
    c10 = _mm256_fmadd_ps(c10, a, b); c11 = _mm256_fmadd_ps(c11, a, b);
  }
  __m256 s = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(c0, c1), _mm256_add_ps(c2, c3)),
                           _mm256_add_ps(_mm256_add_ps(c4, c5), _mm256_add_ps(c6, c7)));
  s = _mm256_add_ps(s, _mm256_add_ps(_mm256_add_ps(c8, c9), _mm256_add_ps(c10, c11)));
  float t[8];
  _mm256_storeu_ps(t, s);
  *sink = t[0] + t[1] + t[2] + t[3] + t[4] + t[5] + t[6] + t[7];
  return (double)iters * 12 * 8 * 2;
}
#endif

/* Portable fallback (NEON on aarch64 through the compiler's vector extension). */
typedef float bench_v4 __attribute__((vector_size(16)));
__attribute__((noinline)) static double fma_loop_generic(long iters, float* sink) {
  const float m = fma_mul, d = fma_add, s0 = fma_seed;
  bench_v4 a = {m, m, m, m}, b = {d, d, d, d};
  bench_v4 c[8];
  for (int j = 0; j < 8; j++) c[j] = (bench_v4){s0 + j, s0 + j, s0 + j, s0 + j};
  for (long i = 0; i < iters; i++)
    for (int j = 0; j < 8; j++) c[j] = c[j] * a + b; /* contracted to FMA where the target has it */
  bench_v4 s = c[0] + c[1] + c[2] + c[3] + c[4] + c[5] + c[6] + c[7];
  *sink = s[0] + s[1] + s[2] + s[3];
  return (double)iters * 8 * 4 * 2;
}

typedef double (*fma_loop_fn)(long, float*);

static fma_loop_fn pick_fma_loop(const char** name) {
#ifdef BENCH_X86
  __builtin_cpu_init();
  if (__builtin_cpu_supports("avx512f")) { *name = "avx512"; return fma_loop_avx512; }
  if (__builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) { *name = "avx2"; return fma_loop_avx2; }
#endif
  *name = "generic-128bit";
  return fma_loop_generic;
}

static double measure_fma_peak(double seconds, const char** name) {
  fma_loop_fn fn = pick_fma_loop(name);
  float sink = 0;
  long iters = 1000;
  /* calibrate to ~seconds/5 per sample, then keep the best of 5 samples */
  for (;;) {
    double t0 = bench_now();
    fn(iters, &sink);
    double dt = bench_now() - t0;
    if (dt > seconds / 20 || iters > (1L << 40)) break;
    iters *= 4;
  }
  double best = 0;
  for (int r = 0; r < 5; r++) {
    double t0 = bench_now();
    double fl = fn(iters, &sink);
    double dt = bench_now() - t0;
    if (dt > 0 && fl / dt > best) best = fl / dt;
  }
  if (sink == 12345.0f) fprintf(stderr, " "); /* keeps the result alive */
  return best * 1e-9;
}

/* ------------------------------------------------------------------ copy bandwidth */

typedef struct copy_job {
  char* src;
  char* dst;
  size_t bytes;
  long iters;
  pthread_barrier_t* start;
} copy_job;

static void* copy_worker(void* arg) {
  copy_job* j = (copy_job*)arg;
  pthread_barrier_wait(j->start);
  for (long i = 0; i < j->iters; i++) {
    memcpy(j->dst, j->src, j->bytes);
    j->src[(size_t)i % j->bytes] ^= 1; /* keep the copy from being hoisted */
  }
  return NULL;
}

/* GB/s of (read + write) bytes with `threads` threads, each copying its own `bytes` buffer. */
static double measure_copy_bw(int threads, size_t bytes, double seconds) {
  copy_job jobs[64];
  pthread_t tid[64];
  if (threads > 64) threads = 64;
  for (int t = 0; t < threads; t++) {
    jobs[t].src = (char*)bench_alloc(bytes);
    jobs[t].dst = (char*)bench_alloc(bytes);
    memset(jobs[t].src, 1 + t, bytes);
  }
  /* one untimed copy per thread (warm caches / TLB), then calibrate the iteration count */
  double t0 = bench_now();
  memcpy(jobs[0].dst, jobs[0].src, bytes);
  memcpy(jobs[0].dst, jobs[0].src, bytes);
  double one = (bench_now() - t0) / 2;
  long iters = (long)(seconds / 3 / (one > 1e-7 ? one : 1e-7));
  if (iters < 2) iters = 2;
  double best = 0;
  for (int rep = 0; rep < 3; rep++) {
    pthread_barrier_t start;
    pthread_barrier_init(&start, NULL, (unsigned)threads);
    for (int t = 0; t < threads; t++) {
      jobs[t].bytes = bytes;
      jobs[t].iters = iters;
      jobs[t].start = &start;
    }
    for (int t = 1; t < threads; t++) pthread_create(&tid[t], NULL, copy_worker, &jobs[t]);
    double s = bench_now();
    copy_worker(&jobs[0]);
    for (int t = 1; t < threads; t++) pthread_join(tid[t], NULL);
    double dt = bench_now() - s;
    pthread_barrier_destroy(&start);
    double gbs = 2.0 * (double)bytes * (double)iters * threads / dt * 1e-9;
    if (gbs > best) best = gbs;
  }
  for (int t = 0; t < threads; t++) {
    bench_free(jobs[t].src);
    bench_free(jobs[t].dst);
  }
  return best;
}

/* ------------------------------------------------------------------ description */

static int read_sysfs_line(const char* path, char* buf, size_t n) {
  FILE* f = fopen(path, "r");
  if (!f) return -1;
  int ok = fgets(buf, (int)n, f) != NULL;
  fclose(f);
  return ok ? 0 : -1;
}

/* Size of the data/unified cache of the given level seen by CPU 0 (0 if unknown). */
static size_t read_cache_sysfs(int level) {
  for (int index = 0; index < 10; index++) {
    char path[128], buf[64];
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/level", index);
    if (read_sysfs_line(path, buf, sizeof buf)) break;
    if (atoi(buf) != level) continue;
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/type", index);
    if (read_sysfs_line(path, buf, sizeof buf) || !strncmp(buf, "Instruction", 11)) continue;
    snprintf(path, sizeof path, "/sys/devices/system/cpu/cpu0/cache/index%d/size", index);
    if (read_sysfs_line(path, buf, sizeof buf)) continue;
    char* end;
    size_t v = (size_t)strtoull(buf, &end, 10);
    if (*end == 'K') v <<= 10;
    else if (*end == 'M') v <<= 20;
    return v;
  }
  return 0;
}

void bench_machine_describe(bench_machine* m) {
  memset(m, 0, sizeof *m);
  snprintf(m->cpu, sizeof m->cpu, "unknown");
  FILE* f = fopen("/proc/cpuinfo", "r");
  if (f) {
    char line[512];
    while (fgets(line, sizeof line, f)) {
      if (!strncmp(line, "model name", 10)) {
        char* c = strchr(line, ':');
        if (c) {
          c++;
          while (*c == ' ' || *c == '\t') c++;
          size_t n = strcspn(c, "\n");
          if (n >= sizeof m->cpu) n = sizeof m->cpu - 1;
          memcpy(m->cpu, c, n);
          m->cpu[n] = 0;
        }
        break;
      }
    }
    fclose(f);
  }
  m->online_cpus = (int)sysconf(_SC_NPROCESSORS_ONLN);
  /* sysfs first: glibc's sysconf reports implausible L3 sizes on some virtual AMD CPUs */
  m->l2_bytes = read_cache_sysfs(2);
  m->l3_bytes = read_cache_sysfs(3);
#ifdef _SC_LEVEL2_CACHE_SIZE
  if (!m->l2_bytes && sysconf(_SC_LEVEL2_CACHE_SIZE) > 0) m->l2_bytes = (size_t)sysconf(_SC_LEVEL2_CACHE_SIZE);
  if (!m->l3_bytes && sysconf(_SC_LEVEL3_CACHE_SIZE) > 0) m->l3_bytes = (size_t)sysconf(_SC_LEVEL3_CACHE_SIZE);
#endif
  if (!m->l2_bytes) m->l2_bytes = (size_t)1 << 20;
  if (!m->l3_bytes) m->l3_bytes = (size_t)32 << 20; /* unknown: assume a large LLC (cold stays cold) */
  m->fma_isa = "-";
}

void bench_machine_measure(bench_machine* m, int threads, double seconds_per_roof) {
  if (threads < 1) threads = 1;
  m->threads = threads;
  m->fma_gflops_1t = measure_fma_peak(seconds_per_roof, &m->fma_isa);
  m->fma_gflops = m->fma_gflops_1t * threads;
  size_t l2_ws = m->l2_bytes / 4;                   /* src + dst = half of L2 */
  size_t l3_ws = m->l3_bytes / (4 * (size_t)threads); /* all threads together: half of L3 */
  size_t dram_ws = 2 * m->l3_bytes / (size_t)threads; /* all threads: 4x L3 */
  if (dram_ws < ((size_t)64 << 20) / (size_t)threads) dram_ws = ((size_t)64 << 20) / (size_t)threads;
  m->bw_l2 = measure_copy_bw(threads, l2_ws, seconds_per_roof);
  m->bw_l3 = measure_copy_bw(threads, l3_ws, seconds_per_roof);
  m->bw_dram = measure_copy_bw(threads, dram_ws, seconds_per_roof);
}

double bench_roof_bandwidth(const bench_machine* m, double working_set, int cold, const char** level, double* raw) {
  const double dram = m->bw_dram, l3 = m->bw_l3 > dram ? m->bw_l3 : dram, l2 = m->bw_l2 > l3 ? m->bw_l2 : l3;
  if (!cold && working_set <= (double)m->l2_bytes * m->threads) {
    *level = "L2";
    *raw = m->bw_l2;
    return l2;
  }
  if (!cold && working_set <= (double)m->l3_bytes) {
    *level = "L3";
    *raw = m->bw_l3;
    return l3;
  }
  *level = "DRAM";
  *raw = dram;
  return dram;
}

void bench_machine_refresh(bench_machine* m, double seconds_per_roof) {
  bench_machine again = *m;
  bench_machine_measure(&again, m->threads, seconds_per_roof);
#define KEEP_BEST(f) if (again.f > m->f) m->f = again.f
  KEEP_BEST(fma_gflops_1t);
  KEEP_BEST(fma_gflops);
  KEEP_BEST(bw_l2);
  KEEP_BEST(bw_l3);
  KEEP_BEST(bw_dram);
#undef KEEP_BEST
}

double bench_loadavg(void) {
  char buf[64];
  if (read_sysfs_line("/proc/loadavg", buf, sizeof buf)) return -1;
  return atof(buf);
}
