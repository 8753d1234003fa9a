/*
 * linattn-bench: shared declarations of the benchmark program (presets, cases, timing,
 * machine roofs, output). Everything here is bench-only; nothing is exported by the library.
 */
#ifndef LINATTN_BENCH_H
#define LINATTN_BENCH_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "linattn.h"

/* ------------------------------------------------------------------ presets (bench_presets.c) */

/* One LinearAttention layer of a real model, as a linattn call sees it. */
typedef struct la_preset {
  const char* name;        /* command-line name, e.g. "qwen3.5-0.8b" */
  const char* about;       /* one line: model and mapping */
  int64_t q_heads, kv_heads, key_heads; /* key_heads != kv_heads only with the ORT contrib form */
  int64_t d_k, d_v;
  linattn_update_rule rule;
  int decay_per_key;       /* 1: decay (B,T,H_kv*d_k); 0: (B,T,H_kv) (ignored for non-gated rules) */
  float scale;             /* 0 = 1/sqrt(d_k) */
  uint32_t flags;          /* LINATTN_LA_* */
  int in_default_set;      /* 0 for test-only presets ("tiny") */
} la_preset;

/* One CausalConvWithState layer. */
typedef struct conv_preset {
  const char* name;
  const char* about;
  int64_t channels, kernel;
  linattn_activation activation;
  int in_default_set;
} conv_preset;

extern const la_preset bench_la_presets[];
extern const size_t bench_num_la_presets;
extern const conv_preset bench_conv_presets[];
extern const size_t bench_num_conv_presets;

/* Flops per token and per (batch) sequence of a LinearAttention call, see docs/benchmarks.md:
 * per kv head: decay d_k*d_v (gated), retrieval 2*d_k*d_v (delta), rank-1 update 2*d_k*d_v,
 * readout 2*d_k*d_v per query head reading that state. gated_delta with one query head: 7*d_k*d_v. */
double la_flops_per_token(const la_preset* p);

/* ------------------------------------------------------------------ cases */

typedef enum bench_op_kind { BENCH_OP_LA = 0, BENCH_OP_CONV = 1 } bench_op_kind;
typedef enum bench_mode { BENCH_DECODE = 0, BENCH_PREFILL = 1 } bench_mode;

/* A fully specified measurement. */
typedef struct bench_case {
  bench_op_kind op;
  const la_preset* la;     /* op == LA */
  const conv_preset* conv; /* op == CONV */
  bench_mode mode;
  int64_t B, T;            /* T = tokens (conv: L) */
  linattn_dtype dtype;     /* activations */
  linattn_dtype state_dtype; /* LA only: past / present state (0 = f32) */
  int cold;                /* 1: rotate among states/buffers larger than 2x the last-level cache */
  int channels_last;       /* conv only */
  int separate_present;    /* LA only: present_state a buffer of its own (else past == present) */
  int varlen;              /* B packed sequences of T tokens in all, timed against the same work
                            * through the dense operator. conv: linattn_varlen_causal_conv_with_state
                            * (ORT's (B, C, S) states) against the dense channels-last conv on the
                            * same tokens; LA: linattn_varlen_linear_attention on a state pool
                            * against one dense call per sequence */
} bench_case;

/* A prepared case: buffers allocated and filled; call() runs one operator call on rotation
 * slot `slot` (0 <= slot < num_slots) with the given context and workspace. */
typedef struct bench_instance {
  void* impl;
  int num_slots;
  double flops;            /* per call, model of docs/benchmarks.md */
  double bytes;            /* per call: compulsory traffic (inputs read, outputs and state written) */
  double working_set;      /* bytes touched by one call (selects the bandwidth roof when warm) */
  size_t workspace_bytes;  /* largest workspace any of the contexts asked for */
  linattn_status (*call)(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes);
  /* optional: the same work through another call, timed alternately with call and reported in
   * the row's ref columns instead of the reference kernels (varlen conv: the dense conv) */
  linattn_status (*call_baseline)(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes);
  size_t (*workspace_size)(void* impl, linattn_context* ctx); /* SIZE_MAX on error */
  void (*destroy)(void* impl);
} bench_instance;

/* bench_la.c / bench_conv.c: return 0 on success, else print why to stderr and return -1.
 * llc_bytes: last-level cache size, used to size the cold rotation. */
int bench_la_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out);
int bench_conv_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out);
int bench_varlen_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out);
int bench_varlen_la_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out);

/* Rotation slots so that the slots together exceed twice the last-level cache. */
int bench_cold_slots(double slot_bytes, size_t llc_bytes);
/* A fixed random permutation of [0, n): slot i lives at arena position perm[i], so consecutive
 * calls do not walk memory sequentially (the hardware prefetcher would hide a cold state). */
int* bench_slot_positions(int n, uint64_t seed);

/* ------------------------------------------------------------------ small helpers (bench_util.c) */

double bench_now(void);                         /* monotonic seconds */
double bench_thread_cpu(void);                  /* the calling thread's CPU time, seconds */
void* bench_alloc(size_t bytes);                /* 64-byte aligned, zeroed, pages touched; exits on OOM */
void bench_free(void* p);
/* Deterministic random numbers (splitmix64 / xorshift), independent of libc. */
typedef struct bench_rng { uint64_t s; } bench_rng;
double bench_uniform(bench_rng* r);             /* [0, 1) */
double bench_normal(bench_rng* r);
/* Stores v as element i of a dtype array. */
void bench_store(void* base, size_t i, linattn_dtype dt, float v);
const char* bench_dtype_name(linattn_dtype dt);
int bench_dtype_from_name(const char* s, linattn_dtype* dt);

/* ------------------------------------------------------------------ machine (bench_roofs.c) */

typedef struct bench_machine {
  char cpu[128];
  int online_cpus;
  size_t l2_bytes;         /* per core */
  size_t l3_bytes;         /* last level, shared */
  /* measured with the run's thread count */
  double fma_gflops_1t;    /* single-thread fp32 FMA peak (register-resident loop) */
  const char* fma_isa;     /* the vector width used for that loop */
  double fma_gflops;       /* fma_gflops_1t * threads */
  double bw_l2, bw_l3, bw_dram; /* copy bandwidth, GB/s (read + write bytes), `threads` threads */
  int threads;
} bench_machine;

void bench_machine_describe(bench_machine* m);  /* name and caches only */
void bench_machine_measure(bench_machine* m, int threads, double seconds_per_roof);
/* Measures the roofs again and keeps, for each, the better of the old and new value: on a
 * shared machine a busy moment can only lower a roof. */
void bench_machine_refresh(bench_machine* m, double seconds_per_roof);
/* 1-minute load average (-1 if unknown): how busy the shared machine was. */
double bench_loadavg(void);

/* Bandwidth roof for a working set (cold calls always use DRAM). A cache level cannot be slower
 * than the levels beyond it (data it holds could always come from there): a level whose measured
 * copy bandwidth is below that of a level further out (a measurement artefact, e.g. an L3 that a
 * VM reports but shares) gets the larger figure. *raw: the level's own measurement; the return
 * value differs from it exactly when the roof was raised. */
double bench_roof_bandwidth(const bench_machine* m, double working_set, int cold, const char** level, double* raw);

#endif /* LINATTN_BENCH_H */
