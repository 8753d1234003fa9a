/*
 * linattn: CPU kernels for ONNX opset-27 LinearAttention and CausalConvWithState.
 *
 * This is the whole public API. Conventions:
 *  - Every function that can fail returns a linattn_status. On failure a message naming the
 *    offending argument and the expected shape/value is available from
 *    linattn_last_error() (thread-local, valid until the next linattn call on that thread),
 *    and no output buffer has been written.
 *  - Tensors are passed as linattn_tensor descriptors: a data pointer, a dtype, a rank, dims
 *    and strides counted in ELEMENTS. All-zero strides mean packed row-major. The innermost
 *    stride must be 1 (or 0 meaning packed); outer strides may be anything that does not make
 *    distinct elements overlap, so q, k and v can be views into one fused projection output.
 *    Recurrent states, weights and biases must be packed.
 *  - A tensor with zero elements may have data == NULL.
 *  - Optional inputs are passed as NULL pointers (absent), exactly like an empty ONNX input name.
 *  - Aliasing: present_state may be the very same buffer as past_state (same data pointer,
 *    dtype, shape): the state is then updated in place. Any other overlap between an output
 *    and any input or the other output (a byte of their elements in common; views that only
 *    interleave, like column slices of one buffer, do not overlap) is rejected with
 *    LINATTN_ERROR_INVALID_ARGUMENT.
 */
#ifndef LINATTN_H
#define LINATTN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(_WIN32) && defined(LINATTN_BUILD_SHARED)
#define LINATTN_API __declspec(dllexport)
#elif defined(__GNUC__)
#define LINATTN_API __attribute__((visibility("default")))
#else
#define LINATTN_API
#endif

/* ---------------------------------------------------------------- version */

#define LINATTN_VERSION_MAJOR 0
#define LINATTN_VERSION_MINOR 1
#define LINATTN_VERSION_PATCH 0
#define LINATTN_VERSION_STRING "0.1.0"
/* (major << 16) | (minor << 8) | patch */
#define LINATTN_VERSION ((LINATTN_VERSION_MAJOR << 16) | (LINATTN_VERSION_MINOR << 8) | LINATTN_VERSION_PATCH)

/* The version of the library actually loaded (compare with LINATTN_VERSION). */
LINATTN_API uint32_t linattn_version(void);
LINATTN_API const char* linattn_version_string(void);

/* ---------------------------------------------------------------- status */

typedef enum linattn_status {
  LINATTN_SUCCESS = 0,
  LINATTN_ERROR_INVALID_ARGUMENT = 1,  /* shape, dtype, attribute, pointer or aliasing error */
  LINATTN_ERROR_UNSUPPORTED = 2,       /* valid request this build/CPU cannot serve */
  LINATTN_ERROR_OUT_OF_MEMORY = 3,
  LINATTN_ERROR_WORKSPACE_TOO_SMALL = 4,
  LINATTN_ERROR_INTERNAL = 5
} linattn_status;

LINATTN_API const char* linattn_status_string(linattn_status status);

/* Message of the last failed call on the calling thread ("" if none). Never NULL. */
LINATTN_API const char* linattn_last_error(void);

/* ---------------------------------------------------------------- tensors */

typedef enum linattn_dtype {
  LINATTN_DTYPE_INVALID = 0,
  LINATTN_DTYPE_F32 = 1,
  LINATTN_DTYPE_F16 = 2,  /* IEEE binary16 */
  LINATTN_DTYPE_BF16 = 3  /* bfloat16 */
} linattn_dtype;

LINATTN_API size_t linattn_dtype_size(linattn_dtype dtype); /* 0 for an invalid dtype */
LINATTN_API const char* linattn_dtype_name(linattn_dtype dtype);

#define LINATTN_MAX_RANK 4

typedef struct linattn_tensor {
  void* data;            /* inputs are never written through this pointer */
  linattn_dtype dtype;
  int32_t rank;
  int64_t dims[LINATTN_MAX_RANK];
  int64_t strides[LINATTN_MAX_RANK]; /* in elements; all zero = packed row-major */
} linattn_tensor;

/* Fills a packed tensor descriptor (rank <= 4). */
LINATTN_API linattn_tensor linattn_make_tensor(void* data, linattn_dtype dtype, int32_t rank,
                                               const int64_t* dims);

/* ---------------------------------------------------------------- context */

typedef enum linattn_isa {
  LINATTN_ISA_AUTO = 0,      /* best available on this CPU (or the LINATTN_ISA environment variable) */
  LINATTN_ISA_REFERENCE = 1, /* the reference kernels: the executable spec, slowest */
  LINATTN_ISA_SCALAR = 2,    /* portable C fused kernels */
  LINATTN_ISA_AVX2 = 3,      /* x86-64 AVX2 + FMA + F16C */
  LINATTN_ISA_AVX512 = 4,    /* x86-64 AVX-512 F/BW/VL/DQ (no AVX512-BF16 needed) */
  LINATTN_ISA_NEON = 5       /* AArch64 Advanced SIMD */
} linattn_isa;

/* The kernel families are the linattn_isa values 1 .. linattn_isa_count() (AUTO, 0, is none). */
LINATTN_API int linattn_isa_count(void);
/* "auto", a family's name ("reference", "scalar", ...), or "unknown" for any other value. */
LINATTN_API const char* linattn_isa_name(linattn_isa isa);
/* The linattn_isa value whose linattn_isa_name is `name` ("auto" gives 0), or -1 if none. */
LINATTN_API int linattn_isa_from_name(const char* name);
/* 1 if this build and this CPU can run the ISA's kernels, else 0. */
LINATTN_API int linattn_isa_available(linattn_isa isa);

/* A task body: run task number `index` of a parallel region. */
typedef void (*linattn_task_fn)(void* task_arg, size_t index);

/* A host runtime's parallel-for: must call task(task_arg, i) exactly once for every i in
 * [0, num_tasks), possibly concurrently, and return only when all calls have returned. */
typedef void (*linattn_parallel_for_fn)(void* host_data, linattn_task_fn task, void* task_arg,
                                        size_t num_tasks);

/* Memory hooks (used for the context itself and for workspaces the library allocates).
 * alloc must return memory aligned to at least `alignment` (a power of two <= 4096) or NULL. */
typedef void* (*linattn_alloc_fn)(void* user, size_t size, size_t alignment);
typedef void (*linattn_free_fn)(void* user, void* ptr);

/* How LinearAttention writes present_state when it is a separate fp32 buffer and T == 1
 * (decode). In place (present_state == past_state), T > 1 and fp16/bf16 states always use
 * ordinary stores.
 *  AUTO: non-temporal (streaming) stores when the call's past_state + present_state bytes
 *        exceed half the last-level cache (then the state cannot still be cached at the next
 *        step, and streaming saves reading present_state into the cache before it is
 *        overwritten); ordinary stores otherwise, so the new state stays cached.
 *  CACHED: always ordinary stores. STREAMING: always non-temporal stores. Pick STREAMING when
 *        the state is known to be evicted between steps (e.g. a full model whose weights
 *        stream through the caches between two calls of a layer): measured 1.3-1.45x faster
 *        than CACHED then; CACHED is 1.25-1.45x faster when the state stays cached.
 * Streaming needs the AVX2 / AVX-512 kernels, a present_state address that is a multiple of
 * their vector size (32 / 64 bytes) and d_v a multiple of 8 / 16; otherwise, and on NEON and
 * the portable kernels, ordinary stores are used.
 * Results are bit-identical under every policy; only speed differs. */
typedef enum linattn_state_stores {
  LINATTN_STATE_STORES_AUTO = 0,
  LINATTN_STATE_STORES_CACHED = 1,
  LINATTN_STATE_STORES_STREAMING = 2
} linattn_state_stores;

/* Largest num_threads a context accepts (a larger count is an error, never clamped). */
#define LINATTN_MAX_THREADS 1024

typedef struct linattn_context_options {
  int32_t num_threads;                 /* 0 = number of online CPUs (at most LINATTN_MAX_THREADS);
                                        * 1 = run on the caller only; else 1..LINATTN_MAX_THREADS */
  linattn_parallel_for_fn parallel_for;/* NULL = the built-in pthread pool */
  void* parallel_for_data;             /* passed as host_data to parallel_for */
  linattn_isa isa;                     /* LINATTN_ISA_AUTO unless forcing a kernel family */
  linattn_alloc_fn alloc;              /* NULL = aligned_alloc/free */
  linattn_free_fn free;
  void* alloc_user;
  linattn_state_stores state_stores;   /* decode stores into a separate present_state; 0 = AUTO */
} linattn_context_options;

typedef struct linattn_context linattn_context;

LINATTN_API void linattn_context_options_init(linattn_context_options* options);

/* options may be NULL (defaults). With the built-in pool, num_threads - 1 worker threads are
 * started here. With LINATTN_ISA_AUTO the environment variable LINATTN_ISA (a family's
 * linattn_isa_name) forces a kernel family; forcing one the CPU lacks is
 * LINATTN_ERROR_UNSUPPORTED.
 * Thread safety: a context may be used by several threads at once; calls that find the
 * built-in pool busy run on their calling thread alone (same results, bit for bit).
 * Lifetime with several threads: see linattn_context_close. */
LINATTN_API linattn_status linattn_context_create(const linattn_context_options* options,
                                                  linattn_context** context);
/* Stops the context: calls in flight on other threads finish normally (close waits for them),
 * every later call on it fails with LINATTN_ERROR_INVALID_ARGUMENT ("context: closed"), and the
 * pool threads are joined. The memory stays valid until linattn_context_destroy, so a thread
 * that races with close gets that error, never a crash. Idempotent; may run on any thread, but
 * not from inside a call on the same context (an allocator hook or parallel_for callback):
 * it would wait for itself. */
LINATTN_API void linattn_context_close(linattn_context* context);
/* Closes (as linattn_context_close: waits for calls in flight, refuses calls that start
 * meanwhile) and frees the context. No use of the context may start after destroy returns: the
 * caller makes sure, or closes first and destroys once no thread can reach it. */
LINATTN_API void linattn_context_destroy(linattn_context* context);
LINATTN_API int32_t linattn_context_num_threads(const linattn_context* context);
LINATTN_API linattn_isa linattn_context_isa(const linattn_context* context);

/* ---------------------------------------------------------------- LinearAttention */

typedef enum linattn_update_rule {
  LINATTN_UPDATE_INVALID = 0,
  LINATTN_UPDATE_LINEAR = 1,      /* S += k v^T */
  LINATTN_UPDATE_GATED = 2,       /* S = exp(g) S + k v^T */
  LINATTN_UPDATE_DELTA = 3,       /* S += k (beta (v - S^T k))^T */
  LINATTN_UPDATE_GATED_DELTA = 4  /* S = exp(g) S; S += k (beta (v - S^T k))^T  (ONNX default) */
} linattn_update_rule;

/* "linear", "gated", "delta", "gated_delta" -> rule; anything else -> LINATTN_UPDATE_INVALID. */
LINATTN_API linattn_update_rule linattn_update_rule_from_string(const char* name);

/* Flag: accept ONNX Runtime's com.microsoft extensions:
 *  - inverse GQA: kv_num_heads a multiple of q_num_heads; one output head per kv head; kv head h
 *    reads query head h / (kv_num_heads / q_num_heads);
 *  - separate key heads: key width n_k * d_k with kv_num_heads % n_k == 0; kv head h uses key
 *    head h / (kv_num_heads / n_k).
 * Without the flag the call follows ai.onnx LinearAttention-27 exactly and rejects both. */
#define LINATTN_LA_ORT_CONTRIB 1u

typedef struct linattn_linear_attention_desc {
  linattn_update_rule update_rule;
  int64_t q_num_heads;
  int64_t kv_num_heads;
  float scale;        /* 0 = 1/sqrt(d_k); any other value is used as is */
  int64_t chunk_size; /* tuning hint only (ONNX attribute); results never depend on it */
  uint32_t flags;     /* LINATTN_LA_* */
  int64_t state_window; /* ORT contrib, 0..8: W > 0 gives the states a leading window axis of W
                         * right-aligned slots (see linattn_linear_attention) */
} linattn_linear_attention_desc;

/* Defaults of the ONNX attributes: gated_delta, scale 0, chunk_size 64, flags 0. Heads are 0
 * (must be set). */
LINATTN_API void linattn_linear_attention_desc_init(linattn_linear_attention_desc* desc);

/* Shapes (B = batch, T = tokens, d_k = query width / q_num_heads, d_v = value width / kv_num_heads):
 *   query   (B, T, H_q * d_k)                 T-type (f32/f16/bf16)
 *   key     (B, T, H_kv * d_k)  [ORT: n_k * d_k]
 *   value   (B, T, H_kv * d_v)
 *   past_state    (B, H_kv, d_k, d_v)  S-type, optional (absent = zeros), packed
 *   decay   (B, T, H_kv) or (B, T, H_kv * d_k)   log-space; required iff rule is gated/gated_delta
 *   beta    (B, T, H_kv) or (B, T, 1)            required iff rule is delta/gated_delta
 *   output  (B, T, max(H_q, H_kv) * d_v)      T-type
 *   present_state (B, H_kv, d_k, d_v)  S-type, packed; may be NULL if the caller does not want it;
 *                                      may be the past_state buffer itself (in-place update).
 * query, key, value, decay, beta and output share the T dtype. past_state and present_state share
 * the S dtype; with past_state absent present_state may have any dtype (the ONNX reference uses
 * the query dtype in that case: pick that for exact ONNX behaviour).
 * All arithmetic is fp32; the state is fp32 for the whole call and rounded to S once at the end.
 * state_window W > 0 (ORT contrib): past_state and present_state are (W * B, H_kv, d_k, d_v), ORT's
 * (W, B, H_kv, d_k, d_v) with its two leading axes merged (descriptors have at most 4 dims): slot
 * j (rows [j B, (j + 1) B)) of present_state is the state after token T - W + j, so slot W - 1 is
 * the W = 0 state; slots j < W - T hold no token of the call and are zeros (with T = 0, slot W - 1
 * is the past state). Only slot W - 1 of past_state is read. Each slot is rounded to S from the
 * fp32 state once. The call then runs the kernels on token ranges ending at the window tokens.
 * workspace: NULL = the library allocates what it needs through the context's allocator; else at
 * least linattn_linear_attention_workspace_size() bytes, 64-byte aligned. */
LINATTN_API linattn_status linattn_linear_attention(
    linattn_context* context, const linattn_linear_attention_desc* desc,
    const linattn_tensor* query, const linattn_tensor* key, const linattn_tensor* value,
    const linattn_tensor* past_state, const linattn_tensor* decay, const linattn_tensor* beta,
    const linattn_tensor* output, const linattn_tensor* present_state,
    void* workspace, size_t workspace_size);

/* Same arguments (validated the same way); stores the workspace bytes the call needs. */
LINATTN_API linattn_status linattn_linear_attention_workspace_size(
    linattn_context* context, const linattn_linear_attention_desc* desc,
    const linattn_tensor* query, const linattn_tensor* key, const linattn_tensor* value,
    const linattn_tensor* past_state, const linattn_tensor* decay, const linattn_tensor* beta,
    const linattn_tensor* output, const linattn_tensor* present_state, size_t* workspace_size);

/* Shape inference from the input shapes alone (for runtimes and bindings): validates the
 * attributes and query/key/value dims and stores output dims (B, T, W) and state dims
 * (B, H_kv, d_k, d_v). */
LINATTN_API linattn_status linattn_linear_attention_infer_shapes(
    const linattn_linear_attention_desc* desc, const int64_t query_dims[3],
    const int64_t key_dims[3], const int64_t value_dims[3], int64_t output_dims[3],
    int64_t state_dims[4]);

/* ---------------------------------------------------------------- CausalConvWithState */

typedef enum linattn_activation {
  LINATTN_ACTIVATION_INVALID = 0,
  LINATTN_ACTIVATION_NONE = 1,
  LINATTN_ACTIVATION_SILU = 2  /* x * sigmoid(x); ONNX "silu" and its alias "swish" */
} linattn_activation;

/* "none", "silu", "swish" -> activation; anything else -> LINATTN_ACTIVATION_INVALID. */
LINATTN_API linattn_activation linattn_activation_from_string(const char* name);

typedef struct linattn_causal_conv_desc {
  linattn_activation activation;
  int64_t dilation;      /* ORT contrib; 1 (or 0, read as 1) for ai.onnx */
  int32_t channels_last; /* ORT contrib: input/output (B, L, C), states (B, (k-1)*dilation, C) */
  int64_t state_window;  /* ORT contrib, 0..8: W > 0 gives the states a leading window axis */
} linattn_causal_conv_desc;

/* activation none, dilation 1, channels first. */
LINATTN_API void linattn_causal_conv_desc_init(linattn_causal_conv_desc* desc);

/* Shapes (S = (k - 1) * dilation):
 *   input   (B, C, L)   [channels_last: (B, L, C)]       T-type, any outer strides
 *   weight  (C, 1, k)   k >= 1, packed
 *   bias    (C)         optional, packed
 *   past_state    (B, C, S) [channels_last: (B, S, C)]  optional (absent = zeros), packed
 *   output  like input                                   any outer strides
 *   present_state like past_state; may be NULL (not wanted) or the past_state buffer itself.
 * All tensors share one dtype. output = act(round_T(bias + sum_j w[j] x[t - (k-1-j)*dilation]))
 * with fp32 accumulation (float16 with a bias: round_T(round_T(sum) + bias), as onnx.reference's
 * float16 matmul then float16 bias add); act (SiLU) is evaluated in fp32 on the rounded value
 * and rounded again; present_state = the last S positions of concat(past, input).
 * state_window W > 0 (ORT contrib): past_state and present_state are (W, B, C, S) [channels_last:
 * (W, B, S, C)]; slot j of present_state is the state after position L - W + j (slot W - 1 = the
 * W = 0 state); slots j < W - L hold no position of the call and are zeros (with L = 0, slot
 * W - 1 is the past state). Only slot W - 1 of past_state is read. */
LINATTN_API linattn_status linattn_causal_conv_with_state(
    linattn_context* context, const linattn_causal_conv_desc* desc,
    const linattn_tensor* input, const linattn_tensor* weight, const linattn_tensor* bias,
    const linattn_tensor* past_state, const linattn_tensor* output,
    const linattn_tensor* present_state, void* workspace, size_t workspace_size);

LINATTN_API linattn_status linattn_causal_conv_with_state_workspace_size(
    linattn_context* context, const linattn_causal_conv_desc* desc,
    const linattn_tensor* input, const linattn_tensor* weight, const linattn_tensor* bias,
    const linattn_tensor* past_state, const linattn_tensor* output,
    const linattn_tensor* present_state, size_t* workspace_size);

/* Shape inference from the input and weight shapes alone (for runtimes and bindings): validates
 * the attributes and the dims as the call does and stores output dims (those of input) and state
 * dims (B, C, (k-1)*dilation) [channels_last: (B, (k-1)*dilation, C)]. The state's element
 * count may exceed int64 (a huge dilation): the call then runs only without state tensors. */
LINATTN_API linattn_status linattn_causal_conv_infer_shapes(
    const linattn_causal_conv_desc* desc, const int64_t input_dims[3], const int64_t weight_dims[3],
    int64_t output_dims[3], int64_t state_dims[3]);

/* ---------------------------------------------------------------- gates (ORT com.microsoft) */

/* The fused elementwise ops around a Gated DeltaNet layer in ONNX Runtime's contrib domain:
 * GatedRMSNorm (output norm and gate) and LinearAttentionGate (decay and update rate). Both
 * compute in fp32 whatever the tensor type and round once to it. */

typedef enum linattn_gate_activation {
  LINATTN_GATE_INVALID = 0,
  LINATTN_GATE_SILU = 1,    /* z * sigmoid(z); ORT "silu" and its alias "swish" */
  LINATTN_GATE_SIGMOID = 2  /* sigmoid(z) */
} linattn_gate_activation;

/* "silu", "swish", "sigmoid" -> activation; anything else -> LINATTN_GATE_INVALID. */
LINATTN_API linattn_gate_activation linattn_gate_activation_from_string(const char* name);

typedef struct linattn_gated_rms_norm_desc {
  linattn_gate_activation activation;
  float epsilon; /* added to the mean of squares; >= 0 */
} linattn_gated_rms_norm_desc;

/* ORT's defaults: silu, epsilon 1e-5. */
LINATTN_API void linattn_gated_rms_norm_desc_init(linattn_gated_rms_norm_desc* desc);

/* y = x * rsqrt(mean(x^2) + epsilon) * scale * act(gate), the mean taken over each contiguous
 * group of C = len(scale) elements of x's last axis (per-head norm of a packed (.., H * C)).
 *   x     (N_1, ..., W), rank 1..4, W a multiple of C     T-type, packed
 *   scale (C)                                               T-type, packed
 *   gate  like x                                            T-type, packed
 *   y     like x                                            T-type, packed; may be x or gate
 * T is f32, f16 or bf16 (one for all four); arithmetic in fp32. */
LINATTN_API linattn_status linattn_gated_rms_norm(linattn_context* context, const linattn_gated_rms_norm_desc* desc,
                                                  const linattn_tensor* x, const linattn_tensor* scale,
                                                  const linattn_tensor* gate, const linattn_tensor* y);

/* decay = decay_scale * softplus(a + dt_bias); beta = sigmoid(b).
 *   a           (N_1, ..., H), rank 1..4    T-type, packed
 *   dt_bias     (H)                          f32
 *   decay_scale (H)                          f32 (for Gated DeltaNet -exp(A_log))
 *   b           like a, optional (NULL)      T-type; required when beta is given
 *   decay       like a                       T-type
 *   beta        like a, optional (NULL)      T-type
 * Outputs may be their input's buffer (decay = a, beta = b). */
LINATTN_API linattn_status linattn_linear_attention_gate(linattn_context* context, const linattn_tensor* a,
                                                         const linattn_tensor* dt_bias,
                                                         const linattn_tensor* decay_scale, const linattn_tensor* b,
                                                         const linattn_tensor* decay, const linattn_tensor* beta);

/* linattn_linear_attention_gate on packed tensors given by pointer: a, b, decay and beta (rows, H)
 * of dtype, dt_bias and decay_scale (H) float32; b and beta may be NULL as there. Same results
 * and messages; a small call skips the tensor descriptors' checks, which cost more than its work
 * (a decode step's few heads: hosts that call it once per node and token). */
LINATTN_API linattn_status linattn_linear_attention_gate_packed(linattn_context* context, linattn_dtype dtype,
                                                                int64_t rows, int64_t H, const void* a,
                                                                const float* dt_bias, const float* decay_scale,
                                                                const void* b, void* decay, void* beta);

/* ---------------------------------------------------------------- packed (varlen) CausalConvWithState */

/* Attributes of a packed causal conv call: ONNX Runtime's com.microsoft VarlenCausalConvWithState
 * (v1), extended with state pools and the channels-last state layout. */
typedef struct linattn_varlen_conv_desc {
  linattn_activation activation;
  int64_t dilation;              /* >= 1 (0 is read as 1) */
  int64_t state_update_capacity; /* 0..8; > 0 requires batch->capture_count */
  int32_t state_channels_last;   /* 0: states (N, C, S) as VarlenCausalConvWithState;
                                  * 1: (N, S, C) as CausalConvWithState channels_last */
} linattn_varlen_conv_desc;

/* activation none, dilation 1, no capture, states (N, C, S). */
LINATTN_API void linattn_varlen_conv_desc_init(linattn_varlen_conv_desc* desc);

/* The sequences of a packed batch, as host int32 arrays (read during the call only); used by
 * linattn_varlen_causal_conv_with_state and linattn_varlen_linear_attention. */
typedef struct linattn_varlen_batch {
  int64_t batch_size;               /* B >= 0 sequences */
  const int32_t* cu_seqlens;        /* B + 1 offsets (ORT: cumulative_sequence_length): sequence i is
                                     * tokens [cu[i], cu[i + 1]); cu[0] = 0, non-decreasing,
                                     * cu[B] = total_tokens. Length-0 sequences pass their state through. */
  const int32_t* capture_count;     /* B entries, required iff state_update_capacity > 0 (conv only;
                                     * NULL for LinearAttention) */
  const int32_t* state_indices;     /* NULL: sequence i uses state i (N = B). Else sequence i reads and
                                     * writes slot idx[i] of a pool of N states; distinct, in [0, N) */
  const uint8_t* has_initial_state; /* NULL: every sequence reads its state; else 0 = start from zeros */
} linattn_varlen_batch;

/* Shapes (S = (k - 1) * dilation, N = B without state_indices, else the pool size):
 *   input          (total_tokens, C)  T-type, any row stride
 *   weight         (C, 1, k), packed;  bias (C), optional, packed
 *   initial_state  (N, C, S) [state_channels_last: (N, S, C)]  required, packed
 *   output         (total_tokens, C)  any row stride
 *   final_state    like initial_state; may be NULL (not wanted) or the initial_state buffer itself
 *                  (in place). Slots no sequence names are not written.
 *   state_update   (B, state_update_capacity, C), optional when the capacity is > 0: row j of
 *                  sequence i is input token cu[i] + j for j < clamp(capture_count[i], 0,
 *                  min(capacity, length i)), zeros after.
 *   kernel_delta, previous_mask: ORT's dynamic grouped mode (CUDA only in ONNX Runtime): must be
 *                  NULL, else LINATTN_ERROR_UNSUPPORTED.
 * All tensors share one dtype. Each sequence is convolved exactly as linattn_causal_conv_with_state
 * would convolve it alone (same arithmetic; never reading across a sequence boundary). */
LINATTN_API linattn_status linattn_varlen_causal_conv_with_state(
    linattn_context* context, const linattn_varlen_conv_desc* desc, const linattn_varlen_batch* batch,
    const linattn_tensor* input, const linattn_tensor* weight, const linattn_tensor* bias,
    const linattn_tensor* initial_state, const linattn_tensor* kernel_delta,
    const linattn_tensor* previous_mask, const linattn_tensor* output, const linattn_tensor* final_state,
    const linattn_tensor* state_update, void* workspace, size_t workspace_size);

LINATTN_API linattn_status linattn_varlen_causal_conv_with_state_workspace_size(
    linattn_context* context, const linattn_varlen_conv_desc* desc, const linattn_varlen_batch* batch,
    const linattn_tensor* input, const linattn_tensor* weight, const linattn_tensor* bias,
    const linattn_tensor* initial_state, const linattn_tensor* kernel_delta,
    const linattn_tensor* previous_mask, const linattn_tensor* output, const linattn_tensor* final_state,
    const linattn_tensor* state_update, size_t* workspace_size);

/* ---------------------------------------------------------------- packed (varlen) LinearAttention */

/* LinearAttention on a packed ragged batch, for engines doing continuous batching: the
 * sequences' tokens are rows of token-major tensors (the dense operator's (B, T, H*d) with the
 * batch folded into the token axis, as a fused projection produces them), and each sequence
 * reads and writes its own state, optionally a slot of a state pool (batch->state_indices), from
 * zeros when batch->has_initial_state says so. Each sequence gets exactly the dense operator's
 * arithmetic (same kernels, same bits as linattn_linear_attention on that sequence alone with
 * B = 1). desc as for linattn_linear_attention (every update rule, decay kind, head layout and
 * flag); desc->state_window must be 0; batch->capture_count must be NULL.
 * Shapes (total_tokens = batch->cu_seqlens[B]; N = B without state_indices, else the pool size):
 *   query  (total_tokens, q_num_heads*d_k)      T-type (f32/f16/bf16), any row stride
 *   key    (total_tokens, kv_num_heads*d_k)     [ORT_CONTRIB: or (total_tokens, n_k*d_k)]
 *   value  (total_tokens, kv_num_heads*d_v)
 *   decay  (total_tokens, kv_num_heads) or (total_tokens, kv_num_heads*d_k); gated rules only
 *   beta   (total_tokens, kv_num_heads) or (total_tokens, 1); delta rules only
 *   past_state    (N, kv_num_heads, d_k, d_v) S-type, packed; optional (absent = every sequence
 *                 starts from zeros)
 *   output (total_tokens, max(q_num_heads, kv_num_heads)*d_v)  T-type, any row stride
 *   present_state like past_state; may be NULL (not wanted) or the past_state buffer itself (in
 *                 place). Slots no sequence names are not written. With state_indices, at least
 *                 one of past_state / present_state is given and gives N.
 * A length-0 sequence passes its state through (zeros if it has no initial state). */
LINATTN_API linattn_status linattn_varlen_linear_attention(
    linattn_context* context, const linattn_linear_attention_desc* desc, const linattn_varlen_batch* batch,
    const linattn_tensor* query, const linattn_tensor* key, const linattn_tensor* value,
    const linattn_tensor* past_state, const linattn_tensor* decay, const linattn_tensor* beta,
    const linattn_tensor* output, const linattn_tensor* present_state, void* workspace, size_t workspace_size);

/* Same arguments (validated the same way); stores the workspace bytes the call needs. */
LINATTN_API linattn_status linattn_varlen_linear_attention_workspace_size(
    linattn_context* context, const linattn_linear_attention_desc* desc, const linattn_varlen_batch* batch,
    const linattn_tensor* query, const linattn_tensor* key, const linattn_tensor* value,
    const linattn_tensor* past_state, const linattn_tensor* decay, const linattn_tensor* beta,
    const linattn_tensor* output, const linattn_tensor* present_state, size_t* workspace_size);

/* ---------------------------------------------------------------- GatedDeltaNet (ORT contrib) */

/* ONNX Runtime's com.microsoft GatedDeltaNet (version 1): token-major packed batches with a
 * V-major fp32 state, fused gates, beta sigmoid and q/k L2 normalisation, and compact transition
 * capture. Same recurrence and kernels as LinearAttention. */

/* GatedDeltaNet's gate_activation attribute. */
typedef enum linattn_gdn_gate {
  LINATTN_GDN_GATE_INVALID = 0,
  LINATTN_GDN_GATE_NONE = 1,     /* decay is the log-space decay g */
  LINATTN_GDN_GATE_SOFTPLUS = 2, /* g = -exp(a_log) * softplus(decay + dt_bias)           ("softplus", "qwen") */
  LINATTN_GDN_GATE_SIGMOID = 3   /* g = gate_lower_bound * sigmoid(exp(a_log) * (decay + dt_bias)) ("sigmoid", "kda") */
} linattn_gdn_gate;

/* "none", "softplus", "qwen", "sigmoid", "kda" -> gate; anything else -> INVALID. */
LINATTN_API linattn_gdn_gate linattn_gdn_gate_from_string(const char* name);

/* GatedDeltaNet's beta_activation attribute. */
typedef enum linattn_gdn_beta {
  LINATTN_GDN_BETA_INVALID = 0,
  LINATTN_GDN_BETA_NONE = 1,
  LINATTN_GDN_BETA_SIGMOID = 2
} linattn_gdn_beta;

/* "none", "sigmoid" -> beta activation; anything else -> INVALID. */
LINATTN_API linattn_gdn_beta linattn_gdn_beta_from_string(const char* name);

/* Most transitions a call can capture (ORT's state_update_capacity range). */
#define LINATTN_GDN_MAX_CAPTURE 8

typedef struct linattn_gated_delta_net_desc {
  linattn_update_rule update_rule;
  linattn_gdn_gate gate_activation;
  linattn_gdn_beta beta_activation;
  int32_t qk_l2_norm;            /* 1: q and k divided by sqrt(sum x^2 + qk_l2_norm_eps) per head */
  float scale;                   /* 0 = 1/sqrt(d_k) */
  float gate_lower_bound;        /* sigmoid gate only */
  int64_t state_update_capacity; /* C in [0, 8]; 0 = no capture */
  int64_t chunk_size;            /* tuning hint only */
  float qk_l2_norm_eps;          /* added under the root of the q/k L2 norm, finite and >= 0: ONNX
                                  * Runtime's kernel uses 1e-12, fla's l2norm 1e-6 */
} linattn_gated_delta_net_desc;

/* ORT's defaults: gated_delta, gate none, beta none, qk_l2_norm 0, scale 0, gate_lower_bound -5,
 * capacity 0, chunk_size 64, qk_l2_norm_eps 1e-12 (ORT's kernel; its schema has no attribute). */
LINATTN_API void linattn_gated_delta_net_desc_init(linattn_gated_delta_net_desc* desc);

/* Shapes (T = total tokens, B = requests, H_q = H_k query/key heads, H_v value heads, a positive
 * multiple of H_q; value head h reads query/key head h / (H_v / H_q)):
 *   query  (T, H_q, d_k) or (B, S, H_q, d_k)   T-type (f32/f16/bf16), any outer strides
 *          packed QKV (key and value NULL): (T, 2*H_q*d_k + H_v*d_v) or (B, S, same), q | k | v
 *          per token; the head counts then come from initial_state, which is required
 *   key    (T, H_q, d_k) or (B, S, H_q, d_k)
 *   value  (T, H_v, d_v) or (B, S, H_v, d_v)
 *   cu_seqlens  int32[num_cu_seqlens = B + 1], 0 = c[0] <= c[1] <= ... <= c[B] = T: request b is
 *          tokens [c[b], c[b+1]) (length 0 passes the state through); rank-3 spelling only.
 *          NULL: uniform packing, B from initial_state (required), T a multiple of B.
 *   decay  (T, H_v) or (T, H_v, d_k) [rank 4: (B, S, ...)]  f32 or T; required for gated rules
 *   beta   (T, H_v) [rank 4: (B, S, H_v)]                  the decay's dtype; required for delta rules
 *   initial_state (B, H_v, d_v, d_k) fp32, V-major, packed; optional (zeros) unless uniform/packed
 *   a_log  (H_v) fp32; dt_bias (H_v), or with per-key decay (H_v, d_k) / (H_v*d_k), fp32: both
 *          required when gate_activation is not none (as ONNX Runtime's CPU kernel requires them)
 *   capture_count int32[B]: required exactly when state_update_capacity > 0; request b captures
 *          its first clamp(capture_count[b], 0, min(C, length b)) transitions
 *   output (T, max(H_q, H_v), d_v) or (B, S, ...)  T-type
 *   final_state (B, H_v, d_v, d_k) fp32 packed; NULL = not wanted; may be initial_state itself
 *   state_update (B, C*(D + H_q*d_k + H_v*d_v)) fp32 packed, D = H_v (scalar decay) or H_v*d_k
 *          (per-key decay); NULL = not wanted. Row b: decay factors exp(g) [C][D], keys as used
 *          [C][H_q*d_k], updates beta (v - S^T k) (v for non-delta rules) [C][H_v*d_v]; slots
 *          past the captured prefix are written as 0.
 * Arithmetic in fp32 (gates, beta sigmoid and the norms included); output rounded once to T. */
LINATTN_API linattn_status linattn_gated_delta_net(
    linattn_context* context, const linattn_gated_delta_net_desc* desc,
    const linattn_tensor* query, const linattn_tensor* key, const linattn_tensor* value,
    const int32_t* cu_seqlens, int64_t num_cu_seqlens,
    const linattn_tensor* decay, const linattn_tensor* beta, const linattn_tensor* initial_state,
    const linattn_tensor* a_log, const linattn_tensor* dt_bias, const int32_t* capture_count,
    const linattn_tensor* output, const linattn_tensor* final_state, const linattn_tensor* state_update,
    void* workspace, size_t workspace_size);

/* Same arguments (validated the same way); stores the workspace bytes the call needs. */
LINATTN_API linattn_status linattn_gated_delta_net_workspace_size(
    linattn_context* context, const linattn_gated_delta_net_desc* desc,
    const linattn_tensor* query, const linattn_tensor* key, const linattn_tensor* value,
    const int32_t* cu_seqlens, int64_t num_cu_seqlens,
    const linattn_tensor* decay, const linattn_tensor* beta, const linattn_tensor* initial_state,
    const linattn_tensor* a_log, const linattn_tensor* dt_bias, const int32_t* capture_count,
    const linattn_tensor* output, const linattn_tensor* final_state, const linattn_tensor* state_update,
    size_t* workspace_size);

/* Shape inference (for runtimes and bindings) from the input shapes: query (rank query_rank),
 * key/value (NULL for packed QKV), initial_state dims (NULL if absent), num_cu_seqlens (0 = no
 * cu_seqlens) and whether the decay is per key. Stores output dims (rank query_rank for separate
 * QKV, rank query_rank + 1 for packed QKV), final_state dims and state_update dims
 * ((B, C*(...)), zeros when C == 0). */
LINATTN_API linattn_status linattn_gated_delta_net_infer_shapes(
    const linattn_gated_delta_net_desc* desc, int32_t query_rank, const int64_t* query_dims,
    const int64_t* key_dims, const int64_t* value_dims, const int64_t initial_state_dims[4],
    int64_t num_cu_seqlens, int32_t per_key_decay, int32_t* output_rank, int64_t output_dims[4],
    int64_t final_state_dims[4], int64_t state_update_dims[2]);

/* GatedDeltaNetStateReplay's arithmetic on the CPU: replays the first kept_count transitions of
 * one request's state_update row (capsule, C*(D + H_k*d_k + H_v*d_v) floats, capture capacity C)
 * onto source (H_v, d_v, d_k), the state from just before the captured transitions, writing
 * destination (H_v, d_v, d_k): for each (h, v, i), s = source; per transition t,
 * s *= decay[t][h] (or decay[t][h][i]); s += key[t][h*H_k/H_v][i] * delta[t][h][v].
 * Per-key decay is recognised from the capsule length. destination must not overlap the others.
 * 1 <= kept_count <= C <= 8. */
LINATTN_API linattn_status linattn_gated_delta_net_state_replay(
    const linattn_tensor* source, const linattn_tensor* capsule, int64_t num_heads_k, int64_t capacity,
    int64_t kept_count, const linattn_tensor* destination);

#ifdef __cplusplus
}
#endif

#endif /* LINATTN_H */
