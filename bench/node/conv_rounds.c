/*
 * linattn-conv-rounds: one CausalConvWithState prefill shape (B = 1, K = 4, SiLU, no bias, past
 * state in place, fp32) and a round of operations, repeated; every operation of the round is
 * timed alone (wall and thread CPU time) and reported per position in the round, with the
 * median over the rounds of its ratio to the round's byte-time operation.
 *
 *   linattn-conv-rounds C L ROUNDS OP[,OP...]
 *
 * OP (x, y: the conv's input and output, one arena as linattn-bench lays them out):
 *   cf, cl         the call, channels first / last, the CPU's tuning entry
 *   cf0, cl0       the same without the activation
 *   cfs            channels first into a buffer of its own, 2 KiB off the input's page offset
 *   cfpN           channels first with conv.cf_prefetch_bytes = N
 *   cfo            channels first with ordinary output stores (conv.cf_stream_min_bytes huge)
 *   ref, refl      the reference kernels' call (channels first / last)
 *   leadcf, leadcl lead-in: calls for 0.1 s of thread CPU time (linattn-bench's lead-in)
 *   spinN          N ms of arithmetic without memory traffic; sleepN: N ms asleep
 *   memcpy         memcpy of x's bytes into a buffer of their own (the byte-time operation)
 *   ntcopy         the same copy with non-temporal stores (x86-64 with AVX-512 only)
 * The ratio column divides by the round's first memcpy (else ntcopy). Used for
 * docs/benchmarks.md, "Lead-in calls".
 */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "internal.h"
#include "linattn.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define ROUNDS_NT 1
#endif

#define MAX_OPS 32

typedef struct setup {
  int64_t C, L;
  size_t n;                  /* elements of x (and y) */
  char *arena, *x, *y, *copy, *state, *w;
  char* out;                 /* the conv's output: y, or copy + 2048 (cfs) */
  linattn_activation act;
  linattn_context *ctx, *ref;
  linattn_tuning tune;       /* the CPU's entry, edited per operation */
  const linattn_tuning* cpu; /* the CPU's entry */
} setup;

static double clock_s(clockid_t c) {
  struct timespec ts;
  clock_gettime(c, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static void* alloc_touched(size_t bytes) {
  void* p = aligned_alloc(4096, (bytes + 4095) / 4096 * 4096);
  if (!p) {
    fprintf(stderr, "linattn-conv-rounds: out of memory\n");
    exit(2);
  }
  memset(p, 0, (bytes + 4095) / 4096 * 4096);
  return p;
}

static void conv(setup* s, linattn_context* ctx, int channels_last) {
  linattn_causal_conv_desc d;
  linattn_causal_conv_desc_init(&d);
  d.activation = s->act;
  d.channels_last = channels_last;
  const int64_t C = s->C, L = s->L;
  int64_t xd[3] = {1, channels_last ? L : C, channels_last ? C : L};
  int64_t sd[3] = {1, channels_last ? 3 : C, channels_last ? C : 3}, wd[3] = {C, 1, 4};
  linattn_tensor x = linattn_make_tensor(s->x, LINATTN_DTYPE_F32, 3, xd);
  linattn_tensor y = linattn_make_tensor(s->out, LINATTN_DTYPE_F32, 3, xd);
  linattn_tensor st = linattn_make_tensor(s->state, LINATTN_DTYPE_F32, 3, sd);
  linattn_tensor w = linattn_make_tensor(s->w, LINATTN_DTYPE_F32, 3, wd);
  if (linattn_causal_conv_with_state(ctx, &d, &x, &w, NULL, &st, &y, &st, NULL, 0) != LINATTN_SUCCESS) {
    fprintf(stderr, "linattn-conv-rounds: %s\n", linattn_last_error());
    exit(1);
  }
}

#ifdef ROUNDS_NT
__attribute__((target("avx512f"))) static void ntcopy_avx512(const float* src, float* dst, size_t n) {
  size_t k = 0;
  for (; k + 16 <= n; k += 16) _mm512_stream_ps(dst + k, _mm512_load_ps(src + k));
  for (; k < n; k++) dst[k] = src[k];
  _mm_sfence();
}
#endif

static void ntcopy(setup* s) {
#ifdef ROUNDS_NT
  if (__builtin_cpu_supports("avx512f")) {
    ntcopy_avx512((const float*)s->x, (float*)s->copy, s->n);
    return;
  }
#endif
  memcpy(s->copy, s->x, s->n * 4);
}

static void spin(double seconds) {
  volatile float sink;
  float a = 0.5f;
  const double end = clock_s(CLOCK_MONOTONIC) + seconds;
  while (clock_s(CLOCK_MONOTONIC) < end)
    for (int k = 0; k < 1000; k++) a = a * 0.999f + expf(-a);
  sink = a;
  (void)sink;
}

/* Runs one operation; returns 0, or -1 for an unknown name. */
static int run_op(setup* s, const char* op) {
  s->tune = *s->cpu;
  s->ctx->tuning = &s->tune;
  s->out = s->y;
  s->act = LINATTN_ACTIVATION_SILU;
  if (!strcmp(op, "cf") || !strcmp(op, "cl")) conv(s, s->ctx, op[1] == 'l');
  else if (!strcmp(op, "cf0") || !strcmp(op, "cl0")) {
    s->act = LINATTN_ACTIVATION_NONE;
    conv(s, s->ctx, op[1] == 'l');
  } else if (!strcmp(op, "cfs")) {
    s->out = s->copy + 2048;
    conv(s, s->ctx, 0);
  }
  else if (!strncmp(op, "cfp", 3)) {
    s->tune.conv.cf_prefetch_bytes = atoll(op + 3);
    conv(s, s->ctx, 0);
  } else if (!strcmp(op, "cfo")) {
    s->tune.conv.cf_stream_min_bytes = INT64_MAX;
    conv(s, s->ctx, 0);
  } else if (!strcmp(op, "ref") || !strcmp(op, "refl")) conv(s, s->ref, op[3] == 'l');
  else if (!strcmp(op, "leadcf") || !strcmp(op, "leadcl")) {
    const double end = clock_s(CLOCK_THREAD_CPUTIME_ID) + 0.1;
    do conv(s, s->ctx, op[5] == 'l');
    while (clock_s(CLOCK_THREAD_CPUTIME_ID) < end);
  } else if (!strncmp(op, "spin", 4)) spin(1e-3 * atof(op + 4));
  else if (!strncmp(op, "sleep", 5)) {
    const long ns = (long)(1e6 * atof(op + 5));
    struct timespec ts = {ns / 1000000000L, ns % 1000000000L};
    nanosleep(&ts, NULL);
  } else if (!strcmp(op, "memcpy")) memcpy(s->copy, s->x, s->n * 4);
  else if (!strcmp(op, "ntcopy")) ntcopy(s);
  else return -1;
  return 0;
}

static void setup_init(setup* s, int64_t C, int64_t L) {
  memset(s, 0, sizeof *s);
  s->C = C;
  s->L = L;
  s->n = (size_t)(C * L);
  const size_t xb = s->n * 4, yoff = (xb + 63) / 64 * 64; /* as bench/bench_conv.c */
  s->arena = (char*)alloc_touched(yoff + xb);
  s->x = s->arena;
  s->y = s->arena + yoff;
  s->copy = (char*)alloc_touched(xb + 4096);
  s->state = (char*)alloc_touched((size_t)C * 3 * 4);
  s->w = (char*)alloc_touched((size_t)C * 4 * 4);
  uint64_t r = 12345;
  for (size_t i = 0; i < s->n; i++) {
    r = r * 6364136223846793005ull + 1442695040888963407ull;
    ((float*)s->x)[i] = (float)((int)(r >> 40) % 2000 - 1000) * 2e-3f;
  }
  for (int64_t i = 0; i < C * 4; i++) ((float*)s->w)[i] = 0.1f * (float)(i % 7) - 0.3f;
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 1;
  if (linattn_context_create(&o, &s->ctx) != LINATTN_SUCCESS) exit(1);
  o.isa = LINATTN_ISA_REFERENCE;
  if (linattn_context_create(&o, &s->ref) != LINATTN_SUCCESS) exit(1);
  s->cpu = s->ctx->tuning;
}

static int cmp_double(const void* a, const void* b) {
  const double p = *(const double*)a, q = *(const double*)b;
  return (p > q) - (p < q);
}

/* Median and minimum of column i of a rounds x nops table. */
static void column_stats(const double* t, int rounds, int nops, int i, double* tmp, double* med, double* min) {
  for (int r = 0; r < rounds; r++) tmp[r] = t[r * nops + i];
  qsort(tmp, (size_t)rounds, sizeof(double), cmp_double);
  *med = tmp[rounds / 2];
  *min = tmp[0];
}

static void report(const setup* s, char** ops, int nops, int rounds, const double* wall, const double* cpu) {
  int base = -1;
  for (int i = 0; i < nops && base < 0; i++)
    if (!strcmp(ops[i], "memcpy")) base = i;
  for (int i = 0; i < nops && base < 0; i++)
    if (!strcmp(ops[i], "ntcopy")) base = i;
  double* tmp = (double*)malloc(sizeof(double) * (size_t)rounds);
  printf("%-3s %-10s %9s %9s %9s %9s %9s %10s\n", "pos", "op", "wall_ms", "wall_min", "cpu_ms", "cpu_min",
         base >= 0 ? "cpu/copy" : "-", "GB/s(cpu)");
  for (int i = 0; i < nops; i++) {
    double wm, wmin, cm, cmin, ratio = NAN;
    column_stats(wall, rounds, nops, i, tmp, &wm, &wmin);
    column_stats(cpu, rounds, nops, i, tmp, &cm, &cmin);
    if (base >= 0) {
      for (int r = 0; r < rounds; r++) tmp[r] = cpu[r * nops + i] / cpu[r * nops + base];
      qsort(tmp, (size_t)rounds, sizeof(double), cmp_double);
      ratio = tmp[rounds / 2];
    }
    printf("%-3d %-10s %9.2f %9.2f %9.2f %9.2f %9.3f %10.2f\n", i, ops[i], wm * 1e3, wmin * 1e3, cm * 1e3,
           cmin * 1e3, ratio, 8.0 * (double)s->n / cm * 1e-9);
  }
  free(tmp);
}

int main(int argc, char** argv) {
  if (argc != 5) {
    fprintf(stderr, "usage: linattn-conv-rounds C L ROUNDS OP[,OP...] (see the source's header)\n");
    return 2;
  }
  const int64_t C = atoll(argv[1]), L = atoll(argv[2]);
  const int rounds = atoi(argv[3]);
  char* ops[MAX_OPS];
  int nops = 0;
  for (char* t = strtok(argv[4], ","); t && nops < MAX_OPS; t = strtok(NULL, ",")) ops[nops++] = t;
  if (C < 1 || L < 16 || rounds < 1 || nops == 0) return 2;
  setup s;
  setup_init(&s, C, L);
  printf("# linattn-conv-rounds C=%lld L=%lld rounds=%d tuning %s: fp32, K = 4, SiLU, B = 1; GB/s = 2 x input bytes / cpu_ms\n",
         (long long)C, (long long)L, rounds, s.cpu->name);
  double* wall = (double*)calloc((size_t)(rounds * nops), sizeof(double));
  double* cpu = (double*)calloc((size_t)(rounds * nops), sizeof(double));
  for (int r = -1; r < rounds; r++) /* round -1: untimed warm-up */
    for (int i = 0; i < nops; i++) {
      const double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_THREAD_CPUTIME_ID);
      if (run_op(&s, ops[i])) {
        fprintf(stderr, "linattn-conv-rounds: unknown operation %s\n", ops[i]);
        return 2;
      }
      if (r < 0) continue;
      wall[r * nops + i] = clock_s(CLOCK_MONOTONIC) - w0;
      cpu[r * nops + i] = clock_s(CLOCK_THREAD_CPUTIME_ID) - c0;
    }
  report(&s, ops, nops, rounds, wall, cpu);
  return 0;
}
