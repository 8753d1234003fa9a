/*
 * Internal contracts between the operator layer (src/api: validation, shapes, threading) and
 * the kernels (src/ref: the spec; src/kernels: fast paths). Kernels never validate user input;
 * their preconditions are stated here once.
 */
#ifndef LINATTN_INTERNAL_H
#define LINATTN_INTERNAL_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "linattn.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ LinearAttention */

typedef enum la_decay_kind { LA_DECAY_NONE = 0, LA_DECAY_PER_HEAD = 1, LA_DECAY_PER_KEY = 2 } la_decay_kind;
typedef enum la_beta_kind { LA_BETA_NONE = 0, LA_BETA_PER_HEAD = 1, LA_BETA_SHARED = 2 } la_beta_kind;
/* How staging turns a decay element x into the log-space decay g (GatedDeltaNet's fused gates):
 * NONE g = x; SOFTPLUS g = u.gate_coef * softplus(x + dt_bias) with gate_coef = -exp(a_log);
 * SIGMOID g = gate_lower_bound * sigmoid(u.gate_coef * (x + dt_bias)) with gate_coef = exp(a_log). */
typedef enum la_gate_kind { LA_GATE_NONE = 0, LA_GATE_SOFTPLUS = 1, LA_GATE_SIGMOID = 2 } la_gate_kind;
/* Epsilon of the fused q/k L2 normalisation: x / sqrt(sum x^2 + eps), as ONNX Runtime's CPU
 * GatedDeltaNet computes it. */
#define LA_L2_NORM_EPS 1e-12f /* ONNX Runtime's, the default of la_params.l2_eps */

/* Problem-wide constants of one LinearAttention call, resolved by the operator layer. */
typedef struct la_params {
  bool gated;              /* rule is gated or gated_delta: decay applied first */
  bool delta;              /* rule is delta or gated_delta: u = beta (v - S^T k) */
  la_decay_kind decay_kind;
  la_beta_kind beta_kind;
  linattn_dtype io_dtype;  /* T: query, key, value, decay, beta, output */
  int64_t T;               /* tokens */
  int64_t d_k, d_v;
  float scale;             /* resolved: desc.scale, or 1/sqrt(d_k) when desc.scale == 0 */
  double scale_f64;        /* the value the ONNX reference multiplies by: its default scale is the
                            * float64 1/sqrt(d_k) and the product is rounded once to fp32 */
  bool stream_state;       /* T == 1 into a separate state_out: non-temporal stores allowed
                            * (chosen by the operator layer from linattn_state_stores) */
  /* GatedDeltaNet extensions, applied where the kernels stage a token (LinearAttention: zeros,
   * gate_dtype = io_dtype). */
  linattn_dtype gate_dtype; /* elements of decay and beta; 0 (INVALID) = io_dtype */
  la_gate_kind gate;        /* decay holds the raw gate projection (see la_gate_kind) */
  float gate_lower_bound;
  bool beta_sigmoid;        /* beta = sigmoid(beta element) */
  bool qk_l2_norm;          /* q and k divided by sqrt(|x|^2 + l2_eps) */
  float l2_eps;             /* GatedDeltaNet's qk_l2_norm_eps */
  bool state_v_major;       /* state blocks are V-major: element (i, j) at j * ld_state + i (fp32 only) */
  linattn_dtype state_dtype; /* elements of the unit's state blocks: F32 (or 0), F16 or BF16; a
                             * half-precision state is read and written by the kernel itself,
                             * which works in fp32 between the load and one rounded store */
  int sweep_tokens;        /* prefill tokens per state sweep (la_tuning.sweep_tokens) */
  int stage_plain;         /* specialised staging of plain fp32 inputs (la_tuning.stage_plain) */
  int decode_vectors;      /* la_tuning.decode_vectors */
  int decode_overlap;      /* la_tuning.decode_overlap */
  int decode_half_convert;   /* la_tuning.decode_half_convert */
  int decode_split;        /* 1: a decode without the delta rule keeps its read and update sweeps
                            * apart (the bits of its one pass; tests compare the two) */
  int pair_vectors;        /* la_tuning.pair_vectors */
  int fold_head_decay;     /* la_tuning.fold_head_decay */
  int decode_half_chain;   /* la_tuning.decode_half_chain */
  int decode_one_pass_prefetch; /* la_tuning.decode_one_pass_prefetch */
} la_params;

/* One work unit: batch b, kv head h, value columns [col0, col0 + ncols). Everything a kernel
 * reads or writes, as pointers already offset to token 0 of this unit, strides in ELEMENTS of
 * io_dtype. State columns evolve independently, so units never share writable memory and the
 * result of a unit does not depend on how the columns were split. */
/* Every field is set by the operators that build units (la_prepare_unit sets them one by one). */
typedef struct la_unit {
  const void* q;          /* query head qh0 at token 0: d_k elements per head */
  int64_t q_token_stride;
  int64_t q_head_stride;  /* distance between consecutive query heads of the group (= d_k) */
  int32_t n_q;            /* query heads reading this state (GQA group size; 1 for inverse GQA) */
  const void* k;          /* key head at token 0 (d_k elements) */
  int64_t k_token_stride;
  const void* v;          /* value head at token 0, already offset by col0 */
  int64_t v_token_stride;
  const void* decay;      /* per head: 1 element; per key: d_k elements; NULL when not gated */
  int64_t decay_token_stride;
  const void* beta;       /* 1 element; NULL when not a delta rule */
  int64_t beta_token_stride;
  void* out;              /* output head oh0 at token 0, offset by col0 */
  int64_t out_token_stride;
  int64_t out_head_stride; /* distance between consecutive output heads of the group (= d_v) */
  /* state block of d_k rows x ncols, row stride ld_state elements of la_params.state_dtype
   * (state_in / state_out for fp32, state_in_h / state_out_h for F16 / BF16 bits).
   * state_in: the state entering the call (NULL = zeros). state_out: where the state leaves.
   * state_in may equal state_out (in place). They never partially overlap. */
  union {
    const float* state_in;
    const uint16_t* state_in_h;
  };
  union {
    float* state_out;
    uint16_t* state_out_h;
  };
  int64_t ld_state;
  int64_t col0, ncols;
  /* GatedDeltaNet: gate constants of this head (la_params.gate != NONE) */
  float gate_coef;        /* softplus: -exp(a_log[h]); sigmoid: exp(a_log[h]) */
  const float* dt_bias;   /* NULL (none), 1 element, or d_k elements when dt_bias_per_key */
  bool dt_bias_per_key;
  /* GatedDeltaNet transition capture of tokens [0, cap_tokens) (fp32): per token t the decay
   * factor exp(g) (1 or d_k values, 1 when not gated), the key as used (after normalisation) and
   * the update u = beta (v - p) (v for non-delta rules) of the unit's columns. A NULL pointer:
   * another unit writes that part. */
  int64_t cap_tokens;
  float* cap_decay;
  int64_t cap_decay_stride;
  float* cap_key;
  int64_t cap_key_stride;
  float* cap_delta;
  int64_t cap_delta_stride;
} la_unit;

/* A LinearAttention micro-kernel family: advance one unit over all T tokens, writing the
 * unit's output columns for every query head and token, and the final state to state_out.
 * scratch: la_kernel.scratch_bytes(params, ncols) bytes, 64-byte aligned, private to the caller;
 * it may grow with params->T (a decode call needs less), never shrink: a scratch sized for T
 * tokens serves any call of fewer. Must give the same bits for a unit whatever the other units
 * are (thread-count independence). */
typedef void (*la_unit_fn)(const la_params* p, const la_unit* u, void* scratch);
typedef size_t (*la_scratch_fn)(const la_params* p, int64_t ncols);
/* Input rows (q, k, v, decay, beta) of tokens [t0, t0 + n) of unit u: those the caller's next
 * step stages, which a step prefetches (to L2) while it runs. */
typedef struct la_step_next {
  const la_unit* u;
  int64_t t0, n;
  int prefetch; /* 1: prefetch those rows (to L2) while the step runs */
} la_step_next;
/* Optional resumable form of run: advances the unit over tokens [t0, t1), keeping all it needs
 * between calls (state, carries, staged tokens) in scratch (scratch_bytes, one per unit, kept
 * by the caller). Calls go t0 = 0, then each t0 = previous t1, up to t1 = T (which writes
 * state_out); t0 is a multiple of step_tokens. next (or NULL): rows to prefetch for the call
 * that follows, a token at a time between the sweeps. The bits equal those of run. */
typedef void (*la_step_fn)(const la_params* p, const la_unit* u, void* scratch, int64_t t0, int64_t t1,
                           const la_step_next* next);

/* Optional decode form of run (T == 1) for consecutive units of a call, each with its own
 * scratch: runs u like run; where primed, u's job was already set up in scratch by the previous
 * call (which returned 1). Given next (its la_unit kept unchanged until its own call, nscratch its
 * scratch), it may set up next's job and sum next's first panel during u's sweeps, returning 1
 * when it did; 0: the next call starts afresh. The bits equal those of run. */
typedef int (*la_chain_fn)(const la_params* p, const la_unit* u, void* scratch, int primed, const la_unit* next,
                           void* nscratch);

/* The output scan of the non-finite recompute (src/api/la_units.h): true when every output
 * element that unit u stored for tokens [t0, t1) (n_q heads of ncols values, at out_token_stride
 * and out_head_stride) has magnitude bits (the bits of |x| in io_dtype) below limit
 * (la_refine_limit: at most those of T's largest finite value, so that inf and NaN fail);
 * limit < 2^31 for f32, < 2^15 for f16 and bf16. No element: true. Reads no other element. */
typedef bool (*la_finite_fn)(linattn_dtype io_dtype, uint32_t limit, const la_unit* u, int64_t t0, int64_t t1);
/* The portable scan (src/api/la_units.c, built without ISA flags): the reference of the
 * families' scans, and the scan of the reference, scalar and NEON families. */
bool la_unit_outputs_finite(linattn_dtype io_dtype, uint32_t limit, const la_unit* u, int64_t t0, int64_t t1);

typedef struct la_kernel {
  const char* name;        /* the family's linattn_isa_name */
  la_unit_fn run;
  la_scratch_fn scratch_bytes;
  int64_t block_cols;      /* preferred ncols per unit (the last block of a head may be smaller) */
  la_step_fn step;         /* NULL = run only */
  int64_t step_tokens;     /* granularity of step's token ranges */
  bool handles_gdn;        /* implements the GatedDeltaNet fields of la_params / la_unit */
  la_chain_fn run_chain;   /* NULL = run only */
  la_finite_fn outputs_finite; /* never NULL: the output scan after a unit's run or step */
} la_kernel;

/* Store policy of a decode step into a separate fp32 present_state (linattn_state_stores):
 * true = non-temporal stores. footprint = past + present bytes of the call. AUTO streams when
 * that exceeds half the last-level cache: below it a warm loop keeps the state cached and
 * ordinary stores win, above it streaming wins (docs/tuning.md, la_stream_choice). */
static inline bool la_stream_choice(linattn_state_stores policy, double footprint, size_t llc_bytes) {
  if (policy == LINATTN_STATE_STORES_CACHED) return false;
  if (policy == LINATTN_STATE_STORES_STREAMING) return true;
  return footprint > 0.5 * (double)llc_bytes;
}

/* ------------------------------------------------------------------ CausalConvWithState */

typedef struct conv_params {
  linattn_dtype dtype;
  linattn_activation activation;
  bool channels_last;
  int64_t B, C, L, K;       /* K = kernel taps */
  int64_t dilation;
  int64_t S;                /* state length (K - 1) * dilation */
  /* base pointers and element strides */
  const void* x; int64_t x_sb, x_sc, x_st;       /* input: batch, channel, token strides */
  const void* w;                                  /* (C, K) packed */
  const void* bias;                               /* (C) or NULL */
  const void* past; int64_t s_sb, s_sc, s_st;     /* past state (NULL = zeros); strides also for present */
  void* y; int64_t y_sb, y_sc, y_st;              /* output */
  void* present;                                  /* NULL = not wanted; may equal past */
  bool stream_output; /* output too large to stay cached: the AVX-512 channels-last kernels write
                       * fp32 outputs with non-temporal stores (same bits; an sfence ends the unit) */
  bool stream_rows;   /* stream_output, and the output is at least conv_tuning.cf_stream_min_bytes
                       * (by default the last-level cache's size): the channels-first kernels
                       * stream fp32 rows */
  int64_t cf_prefetch; /* channels-first prefill: software prefetch of the input this many bytes
                        * ahead, 0 none (conv_tuning.cf_prefetch_bytes; a hint, same bits) */
  bool decode_vbmi;   /* the AVX-512 channels-first K = 4 decode moves 16-bit states with AVX512-VBMI
                       * byte permutes: the CPU has them and conv_tuning.decode_vbmi asks for them
                       * (same bits either way) */
  bool cf_bf16_pairs; /* the AVX-512 channels-first bf16 K = 4 prefill runs as even and odd steps
                       * (conv_tuning.cf_bf16_pairs; same bits either way) */
  bool silu_table;    /* the AVX-512 family looks the 16-bit SiLU up in a table of all 65,536
                       * results (conv_tuning.silu_table; same bits either way) */
  bool weights_ready; /* a hint for a channels-last prefill (L > 1): the previous run on this scratch
                       * was a channels-last prefill of the same channels, weights, bias, dtype and
                       * K, so the scratch already holds its prepared weights and bias; a family
                       * may skip preparing them again (same bits either way) */
} conv_params;

/* Advance channels [c0, c0 + nc) of batch b. Reads all of its past-state entries before writing
 * any present-state entry of those channels (in-place safety). scratch: scratch_bytes(p, nc). */
typedef void (*conv_unit_fn)(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch);
typedef size_t (*conv_scratch_fn)(const conv_params* p, int64_t nc);
/* Advance channels [0, nc) of n problems ps[0..n), each run as run(&ps[i], 0, 0, nc, scratch)
 * would, with the same bits: one-token decodes of a packed batch's sequences, which differ only
 * in x, y, past and present (weights, bias, dtype, activation, layout and strides the same), and
 * no problem's present overlaps another's past or present. The AVX-512 family prepares each
 * K = 4 weight group once for all of them; other problems and families run each alone.
 * scratch: scratch_bytes(&ps[0], nc). */
typedef void (*conv_seqs_fn)(const conv_params* ps, int64_t n, int64_t nc, void* scratch);
/* The conv_seqs_fn of a family without a multi-sequence path: run() on each problem in turn. */
#define CONV_SEQS_EACH(NAME, RUN)                                                \
  static void NAME(const conv_params* ps, int64_t n, int64_t nc, void* scratch) { \
    for (int64_t i = 0; i < n; ++i) RUN(&ps[i], 0, 0, nc, scratch);               \
  }

/* dst[k * dst_ld + r] = src[r * src_ld + k] for r < rows, k < cols, elements of es bytes (2 or
 * 4; moved as bits): an (nc, S) channel block of a channels-first state to an (S, nc) tile of
 * the channels-last kernels (rows = nc, cols = S, src_ld = S), or back (rows = S, cols = nc,
 * dst_ld = S). dst and src do not overlap. */
typedef void (*conv_transpose_fn)(void* restrict dst, const void* restrict src, int64_t rows, int64_t cols,
                                  int64_t src_ld, int64_t dst_ld, size_t es);
/* The portable loop: the reference of every family's transpose, and the scalar / NEON one. */
void linattn_conv_transpose(void* restrict dst, const void* restrict src, int64_t rows, int64_t cols, int64_t src_ld,
                            int64_t dst_ld, size_t es);

typedef struct conv_kernel {
  const char* name;         /* the family's linattn_isa_name */
  conv_unit_fn run;
  conv_seqs_fn run_seqs;    /* several sequences' one-token problems (the packed decode) */
  conv_transpose_fn transpose; /* a packed call's channels-first state blocks to tiles and back */
  conv_scratch_fn scratch_bytes;
  int64_t block_channels;   /* preferred channels per unit */
  bool cl_whole_rows;       /* channels-last prefill: units as wide as the thread count allows
                             * (at least block_channels), for long contiguous row streams */
} conv_kernel;

/* ------------------------------------------------------------------ gates */

/* GatedRMSNorm on `rows` packed rows of C elements: x, gate, y advance by C per row, scale is
 * the same (C) vector for every row. y may equal x or gate (each row is read before written). */
typedef struct gated_rms_norm_params {
  linattn_dtype dtype;
  int64_t C;
  float epsilon;
  bool silu; /* else sigmoid */
} gated_rms_norm_params;
typedef void (*gated_rms_norm_fn)(const gated_rms_norm_params* p, const void* x, const void* scale,
                                  const void* gate, void* y, int64_t rows);

/* LinearAttentionGate on `rows` packed rows of H elements (b and beta NULL together). */
typedef void (*la_gate_fn)(linattn_dtype dtype, int64_t H, const void* a, const float* dt_bias,
                           const float* decay_scale, const void* b, void* decay, void* beta, int64_t rows);

typedef struct gates_kernel {
  const char* name;
  gated_rms_norm_fn rms_norm;
  la_gate_fn la_gate;
} gates_kernel;

/* One sequence of a packed causal conv call (linattn_varlen_causal_conv_with_state), for the
 * data movement no conv kernel does (src/ref/varlen_conv_ref.c). Pointers are at the sequence's
 * first token / state slot / state_update rows. */
typedef struct varlen_seq {
  linattn_dtype dtype;
  int64_t C, S, L;
  bool state_channels_last;               /* slot (S, C), else (C, S) */
  const void* x; int64_t x_token_stride;  /* elements */
  const void* state_in; void* state_out;  /* state_out NULL = not wanted; may equal state_in */
  bool has_initial;                       /* false: the sequence starts from zeros */
  void* update; int64_t capacity, captured; /* (capacity, C) state_update rows or NULL */
} varlen_seq;

/* state_update rows of channels [c0, c0 + nc): the first `captured` input tokens, zeros after. */
void linattn_varlen_capture(const varlen_seq* q, int64_t c0, int64_t nc);
/* state_out of a length-0 sequence, channels [c0, c0 + nc): state_in, or zeros without one. */
void linattn_varlen_pass_state(const varlen_seq* q, int64_t c0, int64_t nc);

/* ------------------------------------------------------------------ dispatch */

typedef struct kernel_table {
  linattn_isa isa;
  const la_kernel* la;      /* never NULL */
  const conv_kernel* conv;  /* never NULL */
  const gates_kernel* gates;/* never NULL */
} kernel_table;

/* The families' names, comma-separated, in linattn_isa order (for messages). */
const char* linattn_isa_names(void);
/* The CPU runs the AVX-512 family and has AVX512-VBMI (byte permutes). */
int linattn_cpu_has_avx512vbmi(void);

/* Kernel table for an ISA that is available (see linattn_isa_available), else NULL. */
const kernel_table* linattn_kernels_for_isa(linattn_isa isa);
/* The ISA chosen for LINATTN_ISA_AUTO: environment override, else the best available.
 * Returns LINATTN_ISA_AUTO (0) and sets *bad_env when the environment names an unknown or
 * unavailable ISA. */
linattn_isa linattn_auto_isa(const char** bad_env);

/* Reference kernels (src/ref): the executable spec. */
extern const la_kernel linattn_la_reference;
/* The portable fused kernel (every build): GatedDeltaNet's kernel where the ISA's own family
 * lacks handles_gdn. */
extern const la_kernel linattn_la_scalar;
extern const conv_kernel linattn_conv_reference;
extern const gates_kernel linattn_gates_reference;
/* The reference LinearAttentionGate (H gates per token, libm softplus): every family uses it. */
void linattn_la_gate_ref(linattn_dtype dtype, int64_t H, const void* a, const float* dt_bias,
                         const float* decay_scale, const void* b, void* decay, void* beta, int64_t rows);

/* ------------------------------------------------------------------ tuning (src/tuning.c) */

/* LinearAttention kernel parameters that depend on the microarchitecture (docs/tuning.md). */
typedef struct la_tuning {
  int sweep_tokens;            /* prefill tokens per state sweep: 1, or 2 (kernels with two-token
                                * panels: AVX-512); 2 sums p and s in another order (other bits) */
  int lockstep_units;          /* units per lock-step group, 1 .. LA_LOCKSTEP_UNITS_MAX */
  int64_t lockstep_state_bytes; /* > 0: fewer units per group where their state blocks together
                                 * exceed this (at least 2); 0: lockstep_units whatever the size */
  int64_t lockstep_min_tokens; /* T from which a task's units advance in lock-step */
  int lockstep_prefetch_next;  /* 1: each lock-step step prefetches (to L2) the input rows of the
                                * next unit's step; 0: left to the hardware prefetchers */
  int stage_plain;             /* 1: tokens with fp32 inputs and no fused gate or capture (a q/k
                                * L2 norm only without per-key decay) are staged by a copy
                                * specialised for them (the same arithmetic, the same bits) */
  int decode_vectors;          /* decode (T == 1) of an fp32 state in place: most vectors per column
                                * panel, 2, 4 or 8 (capped by the ISA's LA_WMAX_DECODE); 0: the ISA's */
  int decode_overlap;          /* 1: there, each panel's update sweep also sums the next panel's p
                                * and s from its old rows (the same arithmetic, the same bits) */
  int decode_half_convert;       /* 1: decode of a 16-bit state with conversions the Intel cores run in
                                * fewer uops (AVX-512): fp16 stored by vcvtps2ph to memory; bf16
                                * (AVX512-BF16; delta rule and one-pass decode) in column pairs, even and odd columns
                                * widened by a shift and a masked load (the same bits) */
  int pair_vectors;            /* 2: two-token panels of at most 2 vectors for every unit (a 16 KiB
                                * fp32 panel for d_k = 128, within a 32 KiB L1D); 0: the ISA's
                                * LA_WMAX_PAIR (the same bits either way) */
  int fold_head_decay;         /* 1: with two-token sweeps and a per-head decay, the tile keeps k and
                                * scale q as given and the decay scalars scale the per-token sums
                                * and u instead of the staged rows (other rounding, other bits) */
  int decode_chain;            /* 1: a decode (T == 1) with decode_overlap runs a task's units as one
                                * chain: each unit's last update sweep also sums the next unit's first
                                * panel (la_kernel.run_chain; the same bits) */
  int decode_half_chain;       /* 1: a decode of a 16-bit state updated in place (or from zeros) takes
                                * decode_vectors and decode_overlap as an fp32 one, and so the chain
                                * (the state converted in the sweeps; the same bits) */
  int decode_one_pass_prefetch; /* 1: the one-pass decode (no delta rule) of an fp32 state prefetches
                                 * its rows to L1 16 ahead, once per line (AVX-512; the same bits) */
} la_tuning;

/* CausalConvWithState parameters that depend on the microarchitecture (docs/tuning.md). */
typedef struct conv_tuning {
  int64_t cf_stream_min_bytes; /* channels-first outputs of at least this many bytes (and at least
                                * CONV_STREAM_MIN_BYTES) stream their fp32 rows (conv_params.stream_rows);
                                * 0: from the last-level cache's size up */
  int64_t cf_prefetch_bytes;   /* channels-first prefill: the K = 4 loops prefetch the input this many
                                * bytes ahead (0: none; conv_params.cf_prefetch) */
  int decode_vbmi;             /* 1: where the CPU has AVX512-VBMI, the AVX-512 channels-first K = 4
                                * decode moves 16-bit states with byte permutes (conv_params.decode_vbmi) */
  int cf_bf16_pairs;           /* 1: the AVX-512 channels-first bf16 K = 4 prefill widens, sums and narrows
                                * even and odd steps apart, without shuffles (conv_params.cf_bf16_pairs) */
  int decode_seqs;             /* a packed decode (no sequence longer than one token) runs up to this many
                                * sequences per unit through conv_kernel.run_seqs; 0 or 1: one per
                                * unit through run (docs/tuning.md, conv.decode_seqs) */
  int silu_table;              /* 1: the AVX-512 family's 16-bit SiLU (prefill, decode, varlen) is a gather
                                * from a table of all 65,536 results per dtype, built once per process by
                                * the vector SiLU itself (conv_params.silu_table; same bits) */
} conv_tuning;

/* One entry of the tuning table: a parameter set per kernel family. */
typedef struct linattn_tuning {
  const char* name;
  la_tuning la;
  conv_tuning conv;
} linattn_tuning;

/* The entry for this CPU (deterministic: CPUID vendor, family, model, features). */
const linattn_tuning* linattn_tuning_for_cpu(void);
/* The entry named name, or NULL. */
const linattn_tuning* linattn_tuning_by_name(const char* name);
/* LINATTN_TUNE when set (NULL and *bad_env = its value when it names no entry), else
 * linattn_tuning_for_cpu(). */
const linattn_tuning* linattn_auto_tuning(const char** bad_env);
/* The accepted LINATTN_TUNE values, for messages. */
const char* linattn_tuning_names(void);
/* Entry i of the table, or NULL past its end (for the tests, which run every entry). */
const linattn_tuning* linattn_tuning_at(size_t i);

/* ------------------------------------------------------------------ context, errors */

struct linattn_pool;

struct linattn_context {
  int32_t num_threads;
  linattn_parallel_for_fn parallel_for;
  void* parallel_for_data;
  linattn_alloc_fn alloc;
  linattn_free_fn free;
  void* alloc_user;
  const kernel_table* kernels;
  struct linattn_pool* pool; /* NULL when num_threads == 1 or a host parallel_for is used */
  linattn_state_stores state_stores;
  size_t llc_bytes;          /* last-level cache, detected at creation (for linattn_state_stores) */
  /* Lifetime: LA_CTX_CALL per call in flight (linattn_ctx_enter .. linattn_ctx_leave), plus
   * LA_CTX_CLOSING once linattn_context_close or _destroy began. One word, so that the call that
   * leaves last learns from its own decrement that a closer waits, and never reads the context
   * after it (the closer may free it at once). */
  atomic_uint_fast64_t lifetime;
  bool pool_stopped;         /* written by the first closer, under the closers' mutex */
  const linattn_tuning* tuning; /* never NULL: the CPU's entry or LINATTN_TUNE's */
};

/* Every entry point that uses a context brackets its work with these. enter: LINATTN_SUCCESS
 * (ctx may be NULL: the caller reports that), or an error with a message when the context is
 * closed; leave only after a successful enter. */
linattn_status linattn_ctx_enter(linattn_context* ctx);
void linattn_ctx_leave(linattn_context* ctx);
/* The body of a public entry point: clear the error, count the call into the context, evaluate
 * call (a linattn_status expression), count it out and return its status. */
#define LINATTN_RETURN_ENTERED(ctx, call)                   \
  do {                                                      \
    linattn_clear_error();                                  \
    const linattn_status entered_ = linattn_ctx_enter(ctx); \
    if (entered_) return entered_;                          \
    const linattn_status status_ = (call);                  \
    linattn_ctx_leave(ctx);                                 \
    return status_;                                         \
  } while (0)

/* Runs task(arg, i) for i in [0, n) on the context's threads (host parallel-for, pool, or
 * inline). Any n works: pool threads claim task indices from a shared counter; the operators
 * pass n <= num_threads so that each task gets one slice of the workspace. */
void linattn_run_parallel(linattn_context* ctx, linattn_task_fn task, void* arg, size_t n);

struct linattn_pool* linattn_pool_create(linattn_context* ctx, int32_t num_threads);
void linattn_pool_destroy(linattn_context* ctx, struct linattn_pool* pool);
/* Returns false (and runs nothing) if the pool is busy with another caller's region. */
bool linattn_pool_try_run(struct linattn_pool* pool, linattn_task_fn task, void* arg, size_t n);

void* linattn_ctx_alloc(linattn_context* ctx, size_t size);
/* A call's workspace: the caller's (given, at least need bytes, 64-byte aligned) or, when the caller
 * gave none and allocate is true, need bytes from the context, also stored in *owned for
 * linattn_ctx_free (*owned is NULL otherwise). need == SIZE_MAX (the planners' mark for a size
 * that overflows) is an error. Sets the error message on failure. */
linattn_status linattn_take_workspace(linattn_context* ctx, void* given, size_t given_size, size_t need, bool allocate,
                                      char** workspace, void** owned);
void linattn_ctx_free(linattn_context* ctx, void* ptr);
/* A workspace-size query's answer: *workspace_size = bytes, or the overflow error when bytes is
 * SIZE_MAX (the planners' mark). */
linattn_status linattn_answer_workspace_size(size_t bytes, size_t* workspace_size);

/* Records a printf-style message for linattn_last_error() and returns status. */
linattn_status linattn_set_error(linattn_status status, const char* fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void linattn_clear_error(void);

/* Overflow-checked arithmetic on sizes: return false on overflow. */
static inline bool linattn_mul_i64(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool linattn_add_i64(int64_t a, int64_t b, int64_t* out) {
  return !__builtin_add_overflow(a, b, out);
}
static inline bool linattn_mul_size(size_t a, size_t b, size_t* out) {
  return !__builtin_mul_overflow(a, b, out);
}
static inline bool linattn_add_size(size_t a, size_t b, size_t* out) {
  return !__builtin_add_overflow(a, b, out);
}

static inline size_t linattn_round_up(size_t x, size_t a) { return (x + a - 1) / a * a; }

/* Floating-point environment for fast kernels: flush denormals to zero within a kernel call and
 * restore the caller's mode afterwards. No-ops where unsupported. */
typedef struct linattn_fpenv { uint32_t saved; } linattn_fpenv;
void linattn_fpenv_enter_ftz(linattn_fpenv* env);
void linattn_fpenv_leave(const linattn_fpenv* env);

#ifdef __cplusplus
}
#endif

#endif /* LINATTN_INTERNAL_H */
