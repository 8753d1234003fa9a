/*
 * linattn-bench: times linattn calls inside one process for real-model presets and prints a
 * table (and optionally JSON) with median/min/max time, tokens/s, GFLOP/s, GB/s and the
 * distance to the machine's roofs measured in the same run. Every case is also timed with the
 * reference kernels, alternating call by call with the fast ones, so the ratio is robust to the
 * machine's noise. See docs/benchmarks.md for how to read the numbers.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "bench.h"

#define MAX_LIST 16
#define MAX_VARIANTS 6

typedef struct options {
  int threads;
  int quick;
  int ops;                /* bit 0: LA, bit 1: conv */
  int modes;              /* bit 0: decode, bit 1: prefill */
  int states;             /* bit 0: warm, bit 1: cold */
  int layouts;            /* bit 0: channels first, bit 1: channels last */
  char* presets[MAX_LIST]; int num_presets;
  linattn_dtype dtypes[3]; int num_dtypes;
  linattn_isa isas[MAX_VARIANTS]; int num_isas;
  int64_t Ts[MAX_LIST]; int num_T;        /* prefill lengths (LA tokens / conv L) */
  int64_t Bs[MAX_LIST]; int num_B;        /* decode batch sizes */
  const char* json_path;
  int reps;               /* fixed repetitions (0 = adaptive) */
  double budget;          /* adaptive: seconds per kernel and case */
  double roof_seconds;
  uint64_t seed;
  int separate_present;   /* LA: past_state -> a separate present_state (as ONNX Runtime does) */
  linattn_state_stores state_stores;
} options;

typedef struct variant {
  linattn_isa requested;
  linattn_isa actual;
  linattn_context* ctx;
  const char* name;
  int baseline;           /* times bench_instance.call_baseline instead of call */
} variant;

typedef struct stats {
  double median, min, max;
  int reps;
  const char* error;      /* NULL when the calls succeeded */
  char message[256];
} stats;

/* ------------------------------------------------------------------ argument parsing */

static void usage(FILE* f) {
  fprintf(f,
          "usage: linattn-bench [options]\n"
          "  --quick             the reduced default set used by `make bench` (minutes, not hours)\n"
          "  --threads N         threads per linattn context (default 1)\n"
          "  --op la|conv|all    operator (default all)\n"
          "  --mode decode|prefill|all\n"
          "  --state warm|cold|all        decode state cache temperature (default all)\n"
          "  --layout first|last|all      conv layout (default all)\n"
          "  --preset NAME[,NAME...]      presets (see --list; default: every model preset)\n"
          "  --dtype f32,f16,bf16         activation dtypes (LA decode with f16/bf16 also runs an\n"
          "                               f16/bf16 state; otherwise the LA state is f32)\n"
          "  --isa auto,reference         kernel families timed side by side (default auto,reference;\n"
          "                               the ratio column is time / reference time)\n"
          "  --T N[,N...]        prefill lengths (default 64,512,4096)\n"
          "  --B N[,N...]        decode batch sizes (default 1,8)\n"
          "  --json FILE         also write the results as JSON\n"
          "  --reps N            fixed repetitions per kernel (default: adaptive, median of >= 5)\n"
          "  --budget SEC        adaptive: target seconds per kernel and case (default 0.25, quick 0.1)\n"
          "  --roof-time SEC     seconds spent on each roof measurement (default 0.3)\n"
          "  --seed N            data seed\n"
          "  --present inplace|separate   LA state: updated in place (default) or written to a\n"
          "                               separate present_state, as ONNX Runtime does\n"
          "  --state-stores auto|cached|streaming  decode stores into a separate present_state\n"
          "                               (linattn_context_options.state_stores; default auto)\n"
          "  --list              list the presets and exit (--list-json: as JSON)\n");
}

/* Copies made by split_list, freed at exit. */
static char* list_copies[64];
static int num_list_copies;

static void free_list_copies(void) {
  for (int i = 0; i < num_list_copies; i++) free(list_copies[i]);
  num_list_copies = 0;
}

/* Splits a comma list; works on a copy (argv stays intact for the JSON "command"). */
static int split_list(const char* s, char** out, int max) {
  int n = 0;
  if (num_list_copies == (int)(sizeof list_copies / sizeof list_copies[0])) return 0;
  char* copy = strdup(s);
  if (!copy) return 0;
  list_copies[num_list_copies++] = copy;
  for (char* tok = strtok(copy, ","); tok && n < max; tok = strtok(NULL, ",")) out[n++] = tok;
  return n;
}

/* A family's name (linattn_isa_name), "auto", or "ref" for the reference. */
static int parse_isa(const char* s, linattn_isa* isa) {
  const int v = linattn_isa_from_name(strcmp(s, "ref") ? s : "reference");
  if (v < 0) return -1;
  *isa = (linattn_isa)v;
  return 0;
}

static int parse_bits(const char* s, const char* a, const char* b, int* bits) {
  if (!strcmp(s, a)) *bits = 1;
  else if (!strcmp(s, b)) *bits = 2;
  else if (!strcmp(s, "all")) *bits = 3;
  else return -1;
  return 0;
}

static int parse_i64_list(const char* s, int64_t* out, int* n) {
  char* parts[MAX_LIST];
  *n = split_list(s, parts, MAX_LIST);
  for (int i = 0; i < *n; i++) {
    char* end;
    long long v = strtoll(parts[i], &end, 10);
    if (*end || v < 1) return -1;
    out[i] = v;
  }
  return *n > 0 ? 0 : -1;
}

static void list_presets(void) {
  printf("LinearAttention presets (state f32; flops/token = model of docs/benchmarks.md):\n");
  for (size_t i = 0; i < bench_num_la_presets; i++) {
    const la_preset* p = &bench_la_presets[i];
    printf("  %-16s %s  [%.2f MFLOP/token]%s\n", p->name, p->about, la_flops_per_token(p) * 1e-6,
           p->in_default_set ? "" : "  (not in the default set)");
  }
  printf("CausalConvWithState presets:\n");
  for (size_t i = 0; i < bench_num_conv_presets; i++) {
    const conv_preset* p = &bench_conv_presets[i];
    printf("  %-18s %s%s\n", p->name, p->about, p->in_default_set ? "" : "  (not in the default set)");
  }
}

static const char* rule_name(linattn_update_rule r) {
  switch (r) {
    case LINATTN_UPDATE_LINEAR: return "linear";
    case LINATTN_UPDATE_GATED: return "gated";
    case LINATTN_UPDATE_DELTA: return "delta";
    default: return "gated_delta";
  }
}

/* Machine-readable preset table (the Python comparison mirrors it; a test checks they agree). */
static void list_presets_json(void) {
  printf("{\"la\": {");
  for (size_t i = 0; i < bench_num_la_presets; i++) {
    const la_preset* p = &bench_la_presets[i];
    printf("%s\n  \"%s\": {\"q_heads\": %lld, \"kv_heads\": %lld, \"key_heads\": %lld, \"d_k\": %lld, "
           "\"d_v\": %lld, \"rule\": \"%s\", \"decay_per_key\": %s, \"scale\": %g, \"ort_contrib\": %s, "
           "\"flops_per_token\": %.0f, \"default\": %s}",
           i ? "," : "", p->name, (long long)p->q_heads, (long long)p->kv_heads, (long long)p->key_heads,
           (long long)p->d_k, (long long)p->d_v, rule_name(p->rule), p->decay_per_key ? "true" : "false",
           (double)p->scale, (p->flags & LINATTN_LA_ORT_CONTRIB) ? "true" : "false", la_flops_per_token(p),
           p->in_default_set ? "true" : "false");
  }
  printf("},\n \"conv\": {");
  for (size_t i = 0; i < bench_num_conv_presets; i++) {
    const conv_preset* p = &bench_conv_presets[i];
    printf("%s\n  \"%s\": {\"channels\": %lld, \"kernel\": %lld, \"activation\": \"%s\", \"default\": %s}",
           i ? "," : "", p->name, (long long)p->channels, (long long)p->kernel,
           p->activation == LINATTN_ACTIVATION_SILU ? "silu" : "none", p->in_default_set ? "true" : "false");
  }
  printf("}}\n");
}

static int parse_args(int argc, char** argv, options* o) {
  memset(o, 0, sizeof *o);
  o->threads = 1;
  o->ops = o->modes = o->states = o->layouts = 3;
  o->budget = -1;
  o->roof_seconds = 0.3;
  o->seed = 20240601;
  for (int i = 1; i < argc; i++) {
    const char* a = argv[i];
    const char* v = i + 1 < argc ? argv[i + 1] : NULL;
#define NEED_VALUE() do { if (!v) { fprintf(stderr, "linattn-bench: %s needs a value\n", a); return -1; } i++; } while (0)
    if (!strcmp(a, "--help") || !strcmp(a, "-h")) { usage(stdout); exit(0); }
    else if (!strcmp(a, "--list")) { list_presets(); exit(0); }
    else if (!strcmp(a, "--list-json")) { list_presets_json(); exit(0); }
    else if (!strcmp(a, "--quick")) o->quick = 1;
    else if (!strcmp(a, "--threads")) { NEED_VALUE(); o->threads = atoi(v); if (o->threads < 1) return -1; }
    else if (!strcmp(a, "--op")) { NEED_VALUE(); if (parse_bits(v, "la", "conv", &o->ops)) return -1; }
    else if (!strcmp(a, "--mode")) { NEED_VALUE(); if (parse_bits(v, "decode", "prefill", &o->modes)) return -1; }
    else if (!strcmp(a, "--state")) { NEED_VALUE(); if (parse_bits(v, "warm", "cold", &o->states)) return -1; }
    else if (!strcmp(a, "--layout")) { NEED_VALUE(); if (parse_bits(v, "first", "last", &o->layouts)) return -1; }
    else if (!strcmp(a, "--preset")) { NEED_VALUE(); o->num_presets = split_list(argv[i], o->presets, MAX_LIST); }
    else if (!strcmp(a, "--dtype")) {
      NEED_VALUE();
      char* parts[MAX_LIST];
      int n = split_list(argv[i], parts, MAX_LIST);
      o->num_dtypes = 0;
      for (int j = 0; j < n && o->num_dtypes < 3; j++)
        if (bench_dtype_from_name(parts[j], &o->dtypes[o->num_dtypes++])) return -1;
    } else if (!strcmp(a, "--isa")) {
      NEED_VALUE();
      char* parts[MAX_LIST];
      int n = split_list(argv[i], parts, MAX_LIST);
      o->num_isas = 0;
      for (int j = 0; j < n && o->num_isas < MAX_VARIANTS; j++)
        if (parse_isa(parts[j], &o->isas[o->num_isas++])) return -1;
    } else if (!strcmp(a, "--T")) { NEED_VALUE(); if (parse_i64_list(argv[i], o->Ts, &o->num_T)) return -1; }
    else if (!strcmp(a, "--B")) { NEED_VALUE(); if (parse_i64_list(argv[i], o->Bs, &o->num_B)) return -1; }
    else if (!strcmp(a, "--json")) { NEED_VALUE(); o->json_path = v; }
    else if (!strcmp(a, "--reps")) { NEED_VALUE(); o->reps = atoi(v); if (o->reps < 1) return -1; }
    else if (!strcmp(a, "--budget")) { NEED_VALUE(); o->budget = atof(v); if (o->budget <= 0) return -1; }
    else if (!strcmp(a, "--roof-time")) { NEED_VALUE(); o->roof_seconds = atof(v); if (o->roof_seconds <= 0) return -1; }
    else if (!strcmp(a, "--seed")) { NEED_VALUE(); o->seed = strtoull(v, NULL, 10); }
    else if (!strcmp(a, "--present")) {
      NEED_VALUE();
      if (!strcmp(v, "inplace")) o->separate_present = 0;
      else if (!strcmp(v, "separate")) o->separate_present = 1;
      else return -1;
    } else if (!strcmp(a, "--state-stores")) {
      NEED_VALUE();
      if (!strcmp(v, "auto")) o->state_stores = LINATTN_STATE_STORES_AUTO;
      else if (!strcmp(v, "cached")) o->state_stores = LINATTN_STATE_STORES_CACHED;
      else if (!strcmp(v, "streaming")) o->state_stores = LINATTN_STATE_STORES_STREAMING;
      else return -1;
    }
    else { fprintf(stderr, "linattn-bench: unknown option %s\n", a); return -1; }
#undef NEED_VALUE
  }
  if (o->num_dtypes == 0) {
    o->dtypes[0] = LINATTN_DTYPE_F32; o->dtypes[1] = LINATTN_DTYPE_F16; o->dtypes[2] = LINATTN_DTYPE_BF16;
    o->num_dtypes = 3;
  }
  if (o->num_isas == 0) {
    o->isas[0] = LINATTN_ISA_AUTO; o->isas[1] = LINATTN_ISA_REFERENCE;
    o->num_isas = 2;
  }
  if (o->num_T == 0) { o->Ts[0] = 64; o->Ts[1] = 512; o->Ts[2] = 4096; o->num_T = 3; }
  if (o->num_B == 0) { o->Bs[0] = 1; o->Bs[1] = 8; o->num_B = 2; }
  if (o->budget < 0) o->budget = o->quick ? 0.1 : 0.25;
  for (int i = 0; i < o->num_presets; i++) {
    int found = 0;
    for (size_t j = 0; j < bench_num_la_presets; j++) found |= !strcmp(o->presets[i], bench_la_presets[j].name);
    for (size_t j = 0; j < bench_num_conv_presets; j++) found |= !strcmp(o->presets[i], bench_conv_presets[j].name);
    if (!found) { fprintf(stderr, "linattn-bench: unknown preset %s (see --list)\n", o->presets[i]); return -1; }
  }
  return 0;
}

/* ------------------------------------------------------------------ case selection */

static int preset_selected(const options* o, const char* name, int in_default_set) {
  if (o->num_presets == 0) return in_default_set;
  for (int i = 0; i < o->num_presets; i++)
    if (!strcmp(o->presets[i], name)) return 1;
  return 0;
}

/* The --quick set keeps every preset, mode and dtype somewhere, but only f32 for the expensive
 * corners (T = 4096, cold batch-8 decode) and drops the 27B standard form (same kernel shape as
 * the 9B standard form, 1.5x the work). */
static int quick_keeps(const options* o, const bench_case* c) {
  if (!o->quick) return 1;
  if (c->op == BENCH_OP_LA) {
    if (o->num_presets == 0 && !strcmp(c->la->name, "qwen3.5-27b-std")) return 0;
    /* packed rows: one preset, f32, up to T = 512 (the per-call overhead they measure shrinks with T) */
    if (c->varlen && ((o->num_presets == 0 && strcmp(c->la->name, "qwen3.5-0.8b")) || c->dtype != LINATTN_DTYPE_F32 ||
                      c->T > 512))
      return 0;
    if (c->mode == BENCH_PREFILL && c->T >= 4096 && c->dtype != LINATTN_DTYPE_F32) return 0;
    if (c->mode == BENCH_DECODE && c->B > 1 && c->cold && c->dtype != LINATTN_DTYPE_F32) return 0;
    return 1;
  }
  if (c->mode == BENCH_PREFILL && c->T >= 4096 && c->dtype == LINATTN_DTYPE_BF16) return 0;
  return 1;
}

/* Enumerates the cases in print order; returns how many were stored (out may be NULL). */
static size_t enumerate_cases(const options* o, bench_case* out) {
  size_t n = 0;
#define EMIT(...) do { bench_case c_ = {__VA_ARGS__}; if (quick_keeps(o, &c_)) { if (out) out[n] = c_; n++; } } while (0)
  if (o->ops & 1) {
    for (size_t pi = 0; pi < bench_num_la_presets; pi++) {
      const la_preset* p = &bench_la_presets[pi];
      if (!preset_selected(o, p->name, p->in_default_set)) continue;
      for (int di = 0; di < o->num_dtypes; di++) {
        linattn_dtype dt = o->dtypes[di];
        if (o->modes & 1)
          for (int bi = 0; bi < o->num_B; bi++)
            for (int cold = 0; cold < 2; cold++)
              if (o->states & (1 << cold))
                for (int half = 0; half < (dt == LINATTN_DTYPE_F32 ? 1 : 2); half++) /* and an S = T state */
                  EMIT(.op = BENCH_OP_LA, .la = p, .mode = BENCH_DECODE, .B = o->Bs[bi], .T = 1, .dtype = dt,
                       .state_dtype = half ? dt : LINATTN_DTYPE_F32, .cold = cold,
                       .separate_present = o->separate_present);
        if (o->modes & 2)
          for (int ti = 0; ti < o->num_T; ti++)
            EMIT(.op = BENCH_OP_LA, .la = p, .mode = BENCH_PREFILL, .B = 1, .T = o->Ts[ti], .dtype = dt,
                 .separate_present = o->separate_present);
      }
      /* packed ragged batches on a state pool against one dense call per sequence */
      for (int di = 0; di < o->num_dtypes; di++) {
        linattn_dtype dt = o->dtypes[di];
        if (o->modes & 1)
          for (int bi = 0; bi < o->num_B; bi++)
            if (o->Bs[bi] > 1)
              EMIT(.op = BENCH_OP_LA, .la = p, .mode = BENCH_DECODE, .B = o->Bs[bi], .T = 1, .dtype = dt, .varlen = 1);
        if (o->modes & 2)
          for (int ti = 0; ti < o->num_T; ti++)
            EMIT(.op = BENCH_OP_LA, .la = p, .mode = BENCH_PREFILL, .B = 4, .T = o->Ts[ti], .dtype = dt, .varlen = 1);
      }
    }
  }
  if (o->ops & 2) {
    for (size_t pi = 0; pi < bench_num_conv_presets; pi++) {
      const conv_preset* p = &bench_conv_presets[pi];
      if (!preset_selected(o, p->name, p->in_default_set)) continue;
      for (int di = 0; di < o->num_dtypes; di++)
        for (int cl = 0; cl < 2; cl++) {
          if (!(o->layouts & (1 << cl))) continue;
          linattn_dtype dt = o->dtypes[di];
          if (o->modes & 1)
            for (int cold = 0; cold < 2; cold++)
              if (o->states & (1 << cold))
                EMIT(.op = BENCH_OP_CONV, .conv = p, .mode = BENCH_DECODE, .B = 1, .T = 1, .dtype = dt,
                     .cold = cold, .channels_last = cl);
          if (o->modes & 2)
            for (int ti = 0; ti < o->num_T; ti++)
              EMIT(.op = BENCH_OP_CONV, .conv = p, .mode = BENCH_PREFILL, .B = 1, .T = o->Ts[ti], .dtype = dt,
                   .channels_last = cl);
        }
      /* packed ragged batches (token-major, channels last) against the dense conv */
      if (!(o->layouts & 2)) continue;
      for (int di = 0; di < o->num_dtypes; di++) {
        linattn_dtype dt = o->dtypes[di];
        if (o->modes & 1)
          for (int bi = 0; bi < o->num_B; bi++)
            if (o->Bs[bi] > 1) /* one sequence: the dense rows */
              EMIT(.op = BENCH_OP_CONV, .conv = p, .mode = BENCH_DECODE, .B = o->Bs[bi], .T = 1, .dtype = dt,
                   .channels_last = 1, .varlen = 1);
        if (o->modes & 2)
          for (int ti = 0; ti < o->num_T; ti++)
            EMIT(.op = BENCH_OP_CONV, .conv = p, .mode = BENCH_PREFILL, .B = 4, .T = o->Ts[ti], .dtype = dt,
                 .channels_last = 1, .varlen = 1);
      }
    }
  }
#undef EMIT
  return n;
}

/* ------------------------------------------------------------------ measurement */

static int cmp_double(const void* a, const void* b) {
  double x = *(const double*)a, y = *(const double*)b;
  return (x > y) - (x < y);
}

/* Times every variant on the same instance. Calls alternate between variants (spread evenly
 * when their repetition counts differ) and walk the rotation slots, so slow drifts of the
 * machine hit all variants alike. */
#define CALL_OF(inst, var) ((var).baseline ? (inst)->call_baseline : (inst)->call)

/* A variant that has not run for more than LEAD_IN_GAP seconds of this thread's CPU time, and
 * for longer than its own call takes (the other variants' calls ran meanwhile, e.g. a long
 * reference call that moves little memory), first makes untimed calls until they used the
 * shorter of that gap and LEAD_IN seconds of thread CPU time: after such a stretch the memory
 * streams of a machine may run slower for a while (memcpy alike), and the sample would time
 * that ramp instead of the call (docs/benchmarks.md, "Lead-in calls"). CPU time, so that being
 * preempted is no gap; other variants' lead-in calls are no gap either (they stream memory). */
#define LEAD_IN_GAP 0.02
#define LEAD_IN 0.1

typedef struct lead_in_clock {
  double last_end[MAX_VARIANTS]; /* thread CPU time at the end of each variant's last call */
  double lead_at[MAX_VARIANTS];  /* `lead` at that moment */
  double own[MAX_VARIANTS];      /* thread CPU time of each variant's first call */
  double lead;                   /* thread CPU time spent in lead-in calls so far */
} lead_in_clock;

static double lead_in_seconds; /* wall time spent in lead-in calls, reported at the end */

static void lead_in_mark(lead_in_clock* k, int v) {
  k->last_end[v] = bench_thread_cpu();
  k->lead_at[v] = k->lead;
}

static void lead_in(bench_instance* inst, const variant* var, lead_in_clock* k, int v, int* slot, void* ws,
                    size_t ws_bytes) {
  const double c0 = bench_thread_cpu(), gap = c0 - k->last_end[v] - (k->lead - k->lead_at[v]);
  if (gap <= LEAD_IN_GAP || gap <= k->own[v]) return;
  const double want = gap < LEAD_IN ? gap : LEAD_IN, t0 = bench_now();
  do {
    CALL_OF(inst, *var)(inst->impl, var->ctx, *slot, ws, ws_bytes);
    *slot = (*slot + 1) % inst->num_slots;
  } while (bench_thread_cpu() - c0 < want);
  k->lead += bench_thread_cpu() - c0;
  lead_in_seconds += bench_now() - t0;
}

static void measure(const options* o, bench_instance* inst, variant* vars, int nv, void* ws,
                    size_t ws_bytes, stats* st) {
  double* samples[MAX_VARIANTS];
  int reps[MAX_VARIANTS], done[MAX_VARIANTS], maxreps = 0;
  lead_in_clock lk;
  memset(&lk, 0, sizeof lk);
  int slot = 0;
  const double budget = o->budget;
  const int cap_reps = o->quick ? 2000 : 10000;
  const double long_call = o->quick ? 0.5 : 2.0; /* seconds; reference prefill at T = 4096 */
  for (int v = 0; v < nv; v++) {
    memset(&st[v], 0, sizeof st[v]);
    samples[v] = NULL;
    reps[v] = done[v] = 0;
    double t0 = bench_now(), c0 = bench_thread_cpu();
    linattn_status s = CALL_OF(inst, vars[v])(inst->impl, vars[v].ctx, slot, ws, ws_bytes);
    double first = bench_now() - t0;
    lk.own[v] = bench_thread_cpu() - c0;
    slot = (slot + 1) % inst->num_slots;
    if (s != LINATTN_SUCCESS) {
      snprintf(st[v].message, sizeof st[v].message, "%s: %s", linattn_status_string(s), linattn_last_error());
      st[v].error = st[v].message;
      continue;
    }
    if (o->reps > 0) reps[v] = o->reps;
    else if (first > long_call) reps[v] = 1; /* its single timing is the sample (caps the work) */
    else {
      /* a median of >= 5 (3 for calls over 20 ms, 10 without --quick) */
      int min_reps = first > 0.02 ? 3 : o->quick ? 5 : 10;
      double r = budget / (first > 1e-7 ? first : 1e-7);
      reps[v] = r < min_reps ? min_reps : r > cap_reps ? cap_reps : (int)r;
    }
    samples[v] = (double*)malloc((size_t)reps[v] * sizeof(double));
    if (o->reps == 0 && first > long_call) {
      samples[v][0] = first;
      done[v] = 1;
    } else if (first < 0.01) { /* short calls: a couple more untimed warm-up calls */
      for (int w = 0; w < 2; w++) {
        CALL_OF(inst, vars[v])(inst->impl, vars[v].ctx, slot, ws, ws_bytes);
        slot = (slot + 1) % inst->num_slots;
      }
    }
    if (reps[v] > maxreps) maxreps = reps[v];
    lead_in_mark(&lk, v);
  }
  for (int i = 0; i < maxreps; i++) {
    for (int v = 0; v < nv; v++) {
      if (st[v].error || done[v] >= reps[v]) continue;
      /* variant v is due when its share of the schedule advances at step i */
      long due_before = (long)i * reps[v] / maxreps, due_after = (long)(i + 1) * reps[v] / maxreps;
      if (due_after == due_before) continue;
      lead_in(inst, &vars[v], &lk, v, &slot, ws, ws_bytes);
      double t0 = bench_now();
      linattn_status s = CALL_OF(inst, vars[v])(inst->impl, vars[v].ctx, slot, ws, ws_bytes);
      samples[v][done[v]++] = bench_now() - t0;
      lead_in_mark(&lk, v);
      slot = (slot + 1) % inst->num_slots;
      if (s != LINATTN_SUCCESS) {
        snprintf(st[v].message, sizeof st[v].message, "%s: %s", linattn_status_string(s), linattn_last_error());
        st[v].error = st[v].message;
      }
    }
  }
  for (int v = 0; v < nv; v++) {
    if (!st[v].error && done[v] > 0) {
      qsort(samples[v], (size_t)done[v], sizeof(double), cmp_double);
      int n = done[v];
      st[v].median = n % 2 ? samples[v][n / 2] : 0.5 * (samples[v][n / 2 - 1] + samples[v][n / 2]);
      st[v].min = samples[v][0];
      st[v].max = samples[v][n - 1];
      st[v].reps = n;
    }
    free(samples[v]);
  }
}

/* ------------------------------------------------------------------ output */

static void json_string(FILE* f, const char* s) {
  fputc('"', f);
  for (; s && *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') fprintf(f, "\\%c", ch);
    else if (ch < 0x20) fprintf(f, "\\u%04x", ch);
    else fputc(ch, f);
  }
  fputc('"', f);
}

static void json_number(FILE* f, double x) {
  if (isfinite(x)) fprintf(f, "%.6g", x);
  else fputs("null", f);
}

static const char* op_name(const bench_case* c) {
  if (c->op == BENCH_OP_LA) return c->varlen ? "VarlenLinearAttention" : "LinearAttention";
  return c->varlen ? "VarlenCausalConvWithState" : "CausalConvWithState";
}
static const char* preset_name(const bench_case* c) { return c->op == BENCH_OP_LA ? c->la->name : c->conv->name; }

typedef struct row_metrics {
  double tokens_per_s, gflops, gbs, roof_pct, ratio;
  double roof_bw, roof_bw_raw; /* bandwidth roof used (GB/s) and the level's own measurement */
  int roof_raised;             /* the level measured slower than a level further out */
  double roof_pct_raw;         /* %roof against the raw figure */
  const char* bound;
  const char* level;
} row_metrics;

static row_metrics compute_metrics(const bench_case* c, const bench_instance* inst, const bench_machine* m,
                                   const stats* main, const stats* ref) {
  row_metrics r;
  double t = main->median;
  /* packed prefill rows: T is the batch's total token count */
  r.tokens_per_s = (double)(c->varlen && c->mode == BENCH_PREFILL ? c->T : c->B * c->T) / t;
  r.gflops = inst->flops / t * 1e-9;
  r.gbs = inst->bytes / t * 1e-9;
  double bw = bench_roof_bandwidth(m, inst->working_set, c->cold, &r.level, &r.roof_bw_raw);
  r.roof_bw = bw;
  r.roof_raised = bw != r.roof_bw_raw;
  double t_fp = inst->flops / (m->fma_gflops * 1e9), t_mem = inst->bytes / (bw * 1e9);
  double t_mem_raw = r.roof_bw_raw > 0 ? inst->bytes / (r.roof_bw_raw * 1e9) : t_mem;
  r.bound = t_fp >= t_mem ? "fp" : "mem";
  r.roof_pct = 100.0 * (t_fp > t_mem ? t_fp : t_mem) / t;
  r.roof_pct_raw = 100.0 * (t_fp > t_mem_raw ? t_fp : t_mem_raw) / t;
  r.ratio = ref && !ref->error && ref->median > 0 ? t / ref->median : NAN;
  return r;
}

static void print_header(void) {
  printf("%-19s %-17s %-7s %-4s %3s %5s %-4s %-9s %10s %10s %10s %9s %8s %7s %6s %10s %7s\n", "op", "preset",
         "mode", "st", "B", "T", "dt", "isa", "median_us", "min_us", "max_us", "tok/s", "GFLOP/s", "GB/s",
         "%roof", "ref_us", "t/ref");
}

static void print_row(const bench_case* c, const char* isa, const stats* s, const stats* ref, const row_metrics* r) {
  char mode[16];
  snprintf(mode, sizeof mode, "%s", c->mode == BENCH_DECODE ? "decode" : "prefill");
  const char* st = c->varlen ? "V" : c->op == BENCH_OP_CONV ? (c->channels_last ? "CL" : "CF") : "";
  const char* sdt = c->op == BENCH_OP_LA && c->state_dtype == LINATTN_DTYPE_F16    ? "f16"
                    : c->op == BENCH_OP_LA && c->state_dtype == LINATTN_DTYPE_BF16 ? "b16"
                                                                                     : "";
  char stbuf[8];
  snprintf(stbuf, sizeof stbuf, "%s%s%s", st, c->mode == BENCH_DECODE ? (c->cold ? "c" : "w") : "", sdt);
  printf("%-19s %-17s %-7s %-4s %3lld %5lld %-4s %-9s ", op_name(c), preset_name(c), mode, stbuf,
         (long long)c->B, (long long)c->T, bench_dtype_name(c->dtype), isa);
  if (s->error) {
    printf("ERROR %s\n", s->error);
    return;
  }
  /* '!': the memory level's roof was raised to that of a level further out (raw figure in the JSON) */
  printf("%10.1f %10.1f %10.1f %9.3g %8.2f %7.2f %5.1f%c%s", s->median * 1e6, s->min * 1e6, s->max * 1e6,
         r->tokens_per_s, r->gflops, r->gbs, r->roof_pct, r->bound[0] == 'f' ? 'F' : 'M',
         r->bound[0] == 'm' && r->roof_raised ? "!" : " ");
  if (ref && !ref->error) printf("%10.1f %7.3f\n", ref->median * 1e6, r->ratio);
  else printf("%10s %7s\n", "-", "-");
  fflush(stdout);
}

static void json_row(FILE* f, int first, const bench_case* c, const bench_instance* inst, int threads,
                     const char* isa, const stats* s, const stats* ref, const row_metrics* r) {
  fprintf(f, "%s\n    {\"op\": ", first ? "" : ",");
  json_string(f, op_name(c));
  fprintf(f, ", \"preset\": ");
  json_string(f, preset_name(c));
  fprintf(f, ", \"mode\": \"%s\", \"state\": \"%s\", \"B\": %lld, \"T\": %lld, \"dtype\": \"%s\"",
          c->mode == BENCH_DECODE ? "decode" : "prefill",
          c->mode == BENCH_DECODE ? (c->cold ? "cold" : "warm") : "warm", (long long)c->B, (long long)c->T,
          bench_dtype_name(c->dtype));
  fprintf(f, ", \"state_dtype\": \"%s\", \"layout\": %s, \"threads\": %d, \"isa\": ",
          c->op == BENCH_OP_LA ? bench_dtype_name(c->state_dtype ? c->state_dtype : LINATTN_DTYPE_F32)
                               : bench_dtype_name(c->dtype),
          c->op == BENCH_OP_CONV ? (c->channels_last ? "\"channels_last\"" : "\"channels_first\"") : "null",
          threads);
  json_string(f, isa);
  if (c->varlen)
    fprintf(f, ", \"ref\": \"%s\"",
            c->op == BENCH_OP_CONV ? "dense channels-last conv, same tokens"
                                   : "one dense call per sequence, same slots");
  fprintf(f, ", \"slots\": %d, \"flops\": ", inst->num_slots);
  json_number(f, inst->flops);
  fprintf(f, ", \"bytes\": ");
  json_number(f, inst->bytes);
  if (s->error) {
    fprintf(f, ", \"error\": ");
    json_string(f, s->error);
    fprintf(f, ", \"linattn_us\": null}");
    return;
  }
  fprintf(f, ", \"linattn_us\": ");
  json_number(f, s->median * 1e6);
  fprintf(f, ", \"min_us\": ");
  json_number(f, s->min * 1e6);
  fprintf(f, ", \"max_us\": ");
  json_number(f, s->max * 1e6);
  fprintf(f, ", \"reps\": %d, \"tokens_per_s\": ", s->reps);
  json_number(f, r->tokens_per_s);
  fprintf(f, ", \"gflops\": ");
  json_number(f, r->gflops);
  fprintf(f, ", \"gbs\": ");
  json_number(f, r->gbs);
  fprintf(f, ", \"roof_pct\": ");
  json_number(f, r->roof_pct);
  fprintf(f, ", \"roof_bound\": \"%s\", \"roof_level\": \"%s\"", r->bound, r->level);
  fprintf(f, ", \"roof_bw_gbs\": ");
  json_number(f, r->roof_bw);
  fprintf(f, ", \"roof_bw_raw_gbs\": ");
  json_number(f, r->roof_bw_raw);
  fprintf(f, ", \"roof_raised\": %s, \"roof_pct_raw\": ", r->roof_raised ? "true" : "false");
  json_number(f, r->roof_pct_raw);
  if (ref && !ref->error) {
    fprintf(f, ", \"ref_us\": ");
    json_number(f, ref->median * 1e6);
    fprintf(f, ", \"ref_min_us\": ");
    json_number(f, ref->min * 1e6);
    fprintf(f, ", \"ref_max_us\": ");
    json_number(f, ref->max * 1e6);
    fprintf(f, ", \"ref_reps\": %d, \"ratio_vs_ref\": ", ref->reps);
    json_number(f, r->ratio);
  } else {
    fprintf(f, ", \"ref_us\": null, \"ratio_vs_ref\": null");
    if (ref && ref->error) {
      fprintf(f, ", \"ref_error\": ");
      json_string(f, ref->error);
    }
  }
  fputc('}', f);
}

static void json_meta(FILE* f, const options* o, const bench_machine* m, variant* vars, int nv, int argc,
                      char** argv) {
  char date[64];
  time_t now = time(NULL);
  struct tm tmv;
  gmtime_r(&now, &tmv);
  strftime(date, sizeof date, "%Y-%m-%dT%H:%M:%SZ", &tmv);
  fprintf(f, "{\n  \"tool\": \"linattn-bench\",\n  \"version\": ");
  json_string(f, linattn_version_string());
  fprintf(f, ",\n  \"date\": \"%s\",\n  \"command\": \"", date);
  for (int i = 0; i < argc; i++) {
    if (i) fputc(' ', f);
    for (const char* s = argv[i]; *s; s++)
      if (*s == '"' || *s == '\\') fprintf(f, "\\%c", *s);
      else fputc(*s, f);
  }
  fprintf(f, "\",\n  \"machine\": {\"cpu\": ");
  json_string(f, m->cpu);
  fprintf(f, ", \"online_cpus\": %d, \"l2_bytes\": %zu, \"l3_bytes\": %zu},\n", m->online_cpus, m->l2_bytes,
          m->l3_bytes);
  static const char* stores[] = {"auto", "cached", "streaming"};
  fprintf(f, "  \"threads\": %d,\n  \"quick\": %s,\n  \"present\": \"%s\",\n  \"state_stores\": \"%s\",\n  \"variants\": [",
          o->threads, o->quick ? "true" : "false", o->separate_present ? "separate" : "inplace",
          stores[o->state_stores]);
  for (int v = 0; v < nv; v++) {
    fprintf(f, "%s{\"requested\": ", v ? ", " : "");
    json_string(f, linattn_isa_name(vars[v].requested));
    fprintf(f, ", \"isa\": ");
    json_string(f, vars[v].name);
    fputc('}', f);
  }
  fprintf(f, "],\n  \"roofs\": {\"fma_isa\": ");
  json_string(f, m->fma_isa);
  fprintf(f, ", \"fma_gflops_1t\": ");
  json_number(f, m->fma_gflops_1t);
  fprintf(f, ", \"fma_gflops\": ");
  json_number(f, m->fma_gflops);
  fprintf(f, ", \"bw_l2_gbs\": ");
  json_number(f, m->bw_l2);
  fprintf(f, ", \"bw_l3_gbs\": ");
  json_number(f, m->bw_l3);
  fprintf(f, ", \"bw_dram_gbs\": ");
  json_number(f, m->bw_dram);
  fprintf(f, ", \"threads\": %d},\n  \"rows\": [", m->threads);
}

/* ------------------------------------------------------------------ main */

int main(int argc, char** argv) {
  options o;
  if (parse_args(argc, argv, &o)) {
    usage(stderr);
    return 2;
  }
  double t_start = bench_now();

  variant vars[MAX_VARIANTS];
  int nv = 0, ref_index = -1;
  for (int i = 0; i < o.num_isas; i++) {
    if (o.isas[i] != LINATTN_ISA_AUTO && !linattn_isa_available(o.isas[i])) {
      fprintf(stderr, "linattn-bench: ISA %s is not available here; skipped\n", linattn_isa_name(o.isas[i]));
      continue;
    }
    linattn_context_options co;
    linattn_context_options_init(&co);
    co.num_threads = o.threads;
    co.isa = o.isas[i];
    co.state_stores = o.state_stores;
    linattn_context* ctx = NULL;
    if (linattn_context_create(&co, &ctx) != LINATTN_SUCCESS) {
      fprintf(stderr, "linattn-bench: cannot create a context for %s: %s\n", linattn_isa_name(o.isas[i]),
              linattn_last_error());
      continue;
    }
    vars[nv].requested = o.isas[i];
    vars[nv].actual = linattn_context_isa(ctx);
    vars[nv].ctx = ctx;
    vars[nv].name = linattn_isa_name(vars[nv].actual);
    vars[nv].baseline = 0;
    if (o.isas[i] == LINATTN_ISA_REFERENCE && ref_index < 0) ref_index = nv;
    nv++;
  }
  if (nv == 0) return 1;

  bench_machine m;
  bench_machine_describe(&m);
  double load_start = bench_loadavg();
  bench_machine_measure(&m, o.threads, o.roof_seconds);
  const bench_machine first_roofs = m;
  printf("# linattn-bench %s | %s | %d online CPUs | L2 %zu KiB/core, L3 %zu MiB | threads %d | load %.2f\n",
         linattn_version_string(), m.cpu, m.online_cpus, m.l2_bytes >> 10, m.l3_bytes >> 20, o.threads, load_start);
  if (o.separate_present || o.state_stores != LINATTN_STATE_STORES_AUTO)
    printf("# LinearAttention state: %s, state stores %s\n", o.separate_present ? "separate present_state" : "in place",
           o.state_stores == LINATTN_STATE_STORES_CACHED ? "cached" : o.state_stores == LINATTN_STATE_STORES_STREAMING ? "streaming" : "auto");
  printf("# roofs (%d thread%s): FMA fp32 %.1f GFLOP/s (%s, %.1f per thread); copy %.1f GB/s L2, %.1f GB/s L3, "
         "%.1f GB/s DRAM\n",
         m.threads, m.threads > 1 ? "s" : "", m.fma_gflops, m.fma_isa, m.fma_gflops_1t, m.bw_l2, m.bw_l3, m.bw_dram);
  printf("# st: w/c = decode state warm/cold (f32 state; wf16/wb16, cf16/cb16: an f16/bf16 state), "
         "CF/CL = conv channels first/last, V = packed ragged batch "
         "(VarlenCausalConvWithState: its ref = the dense channels-last conv on the same tokens; "
         "VarlenLinearAttention on a state pool: its ref = one dense call per sequence); %%roof: F = "
         "flop-bound, M = memory-bound (M!: that cache level measured slower than a level further out, so its "
         "roof is the faster level's); t/ref = time / reference time (same run)\n");

  size_t ncases = enumerate_cases(&o, NULL);
  bench_case* cases = (bench_case*)calloc(ncases ? ncases : 1, sizeof(bench_case));
  enumerate_cases(&o, cases);

  FILE* jf = NULL;
  if (o.json_path) { /* opened now so that a bad path fails before the long run */
    jf = fopen(o.json_path, "w");
    if (!jf) {
      fprintf(stderr, "linattn-bench: cannot write %s\n", o.json_path);
      return 1;
    }
  }
  /* Results are kept so that the JSON can use the final roofs (see below). */
  typedef struct result {
    bench_case c;
    bench_instance inst; /* only the per-call model numbers are used after destroy */
    stats st[MAX_VARIANTS];
    int prepared;
  } result;
  result* res = (result*)calloc(ncases ? ncases : 1, sizeof(result));
  print_header();
  int failures = 0;
  double last_refresh = bench_now();
  for (size_t ci = 0; ci < ncases; ci++) {
    if (bench_now() - last_refresh > 20.0) { /* resample the roofs now and then (keeps the best) */
      bench_machine_refresh(&m, o.roof_seconds / 3);
      last_refresh = bench_now();
    }
    const bench_case* c = &cases[ci];
    result* R = &res[ci];
    R->c = *c;
    uint64_t seed = o.seed + ci * 7919u;
    int rc = c->op == BENCH_OP_LA ? (c->varlen ? bench_varlen_la_prepare(c, m.l3_bytes, seed, &R->inst)
                                               : bench_la_prepare(c, m.l3_bytes, seed, &R->inst))
             : c->varlen          ? bench_varlen_prepare(c, m.l3_bytes, seed, &R->inst)
                                  : bench_conv_prepare(c, m.l3_bytes, seed, &R->inst);
    if (rc) {
      failures++;
      continue;
    }
    R->prepared = 1;
    bench_instance* inst = &R->inst;
    size_t ws_bytes = 0;
    for (int v = 0; v < nv; v++) {
      size_t n = inst->workspace_size(inst->impl, vars[v].ctx);
      if (n != SIZE_MAX && n > ws_bytes) ws_bytes = n;
    }
    void* ws = ws_bytes ? bench_alloc(ws_bytes) : NULL;
    variant pair[2];
    const int fast = ref_index == 0 && nv > 1 ? 1 : 0;
    if (inst->call_baseline) { /* the fast kernels against the baseline call, alternating */
      pair[0] = pair[1] = vars[fast];
      pair[1].baseline = 1;
      measure(&o, inst, pair, 2, ws, ws_bytes, R->st);
    } else {
      measure(&o, inst, vars, nv, ws, ws_bytes, R->st);
    }
    const stats* ref = inst->call_baseline ? &R->st[1] : ref_index >= 0 ? &R->st[ref_index] : NULL;
    for (int v = 0; v < (inst->call_baseline ? 1 : nv); v++) {
      if (!inst->call_baseline && v == ref_index && nv > 1) continue; /* reported in the other rows' ref columns */
      row_metrics r = {0};
      if (!R->st[v].error) r = compute_metrics(c, inst, &m, &R->st[v], ref);
      else failures++;
      print_row(c, vars[inst->call_baseline ? fast : v].name, &R->st[v], ref, &r);
    }
    bench_free(ws);
    inst->destroy(inst->impl);
    inst->impl = NULL;
  }
  /* Roofs once more at the end; the JSON uses the best value seen for each roof during the run
   * (the live table above used the best seen so far). */
  bench_machine_refresh(&m, o.roof_seconds);
  double load_end = bench_loadavg();
  printf("# best roofs of the run: FMA fp32 %.1f GFLOP/s; copy %.1f GB/s L2, %.1f GB/s L3, %.1f GB/s DRAM; "
         "load %.2f -> %.2f\n", m.fma_gflops, m.bw_l2, m.bw_l3, m.bw_dram, load_start, load_end);
  bench_machine best = m;
  if (jf) {
    json_meta(jf, &o, &best, vars, nv, argc, argv);
    int first_row = 1;
    for (size_t ci = 0; ci < ncases; ci++) {
      result* R = &res[ci];
      if (!R->prepared) continue;
      const int base = R->c.varlen;
      const int fast = ref_index == 0 && nv > 1 ? 1 : 0;
      const stats* ref = base ? &R->st[1] : ref_index >= 0 ? &R->st[ref_index] : NULL;
      for (int v = 0; v < (base ? 1 : nv); v++) {
        if (!base && v == ref_index && nv > 1) continue;
        row_metrics r = {0};
        if (!R->st[v].error) r = compute_metrics(&R->c, &R->inst, &best, &R->st[v], ref);
        json_row(jf, first_row, &R->c, &R->inst, o.threads, vars[base ? fast : v].name, &R->st[v], ref, &r);
        first_row = 0;
      }
    }
    fprintf(jf, "\n  ],\n  \"roofs_first\": {\"fma_gflops\": %.6g, \"bw_l2_gbs\": %.6g, \"bw_l3_gbs\": %.6g, "
            "\"bw_dram_gbs\": %.6g},\n", first_roofs.fma_gflops, first_roofs.bw_l2, first_roofs.bw_l3,
            first_roofs.bw_dram);
    fprintf(jf, "  \"loadavg_start\": %.2f,\n  \"loadavg_end\": %.2f,\n", load_start, load_end);
    fprintf(jf, "  \"seconds\": %.1f\n}\n", bench_now() - t_start);
    fclose(jf);
  }
  free(res);
  fflush(stdout);
  fprintf(stderr, "linattn-bench: %zu cases in %.1f s (lead-in calls %.1f s)%s\n", ncases, bench_now() - t_start,
          lead_in_seconds, failures ? " (some failed, see ERROR rows)" : "");
  for (int v = 0; v < nv; v++) linattn_context_destroy(vars[v].ctx);
  free(cases);
  free_list_copies();
  return failures ? 1 : 0;
}
