/* LinearAttention operator: validation, shape resolution, work split, workspace, threading.
 * No arithmetic on tensor data happens here (except the constant output of the degenerate
 * d_k == 0 case): the kernels read and write the state in its own dtype S. */
#include <math.h>
#include <string.h>

#include "api/la_units.h"
#include "api/op_params.h"
#include "api/packed_batch.h"
#include "api/shape_rules.h"
#include "api/state_window.h"
#include "api/tensor_check.h"
#include "convert.h"
#include "internal.h"

typedef struct la_call {
  la_params p;
  la_dims s; /* the validated shape */
  tview q, k, v, past, decay, beta, out, present;
  bool has_past, has_decay, has_beta, has_present, in_place;
  linattn_dtype state_dtype; /* S of present (or past) */
  /* work split */
  const la_kernel* kern;
  bool refine;                /* non-finite unit results are recomputed by the reference kernel */
  uint32_t refine_limit;      /* bits of |output| (in T) from which a unit is recomputed */
  int64_t block_cols, blocks_per_head, num_units;
  size_t num_tasks;
  size_t state_scratch_bytes; /* per unit in flight: an S-typed state block when no present is wanted */
  size_t entry_copy_bytes;    /* per unit in flight: the entering state of an in-place state, kept
                               * for the reference kernel's recompute (0 otherwise) */
  size_t kernel_scratch_bytes;
  int64_t lockstep_units;     /* > 1: units of a task advance together (see la_task); else 1 */
  int64_t step_chunk;         /* tokens per lock-step round */
  int64_t lockstep_min;       /* tokens from which a unit runs in lock-step */
  bool prefetch_next;         /* a lock-step step prefetches the next unit's rows (la_tuning) */
  int64_t refine_min_tokens;  /* tokens from which a unit is recomputed (in place: its entry copied) */
  size_t task_bytes;
  size_t chain_bytes;         /* per task: a second unit's scratch for the decode chain (la_run_chain); 0: none */
  char* workspace;
  /* packed batch (linattn_varlen_linear_attention); cu == NULL for the dense operator. Tensors
   * are then (1, total_tokens, width) views, sequence b is tokens [cu[b], cu[b + 1]), p.T is the
   * longest sequence and s.B the number of sequences. */
  const int32_t* cu;
  const int32_t* slots;       /* state slot of sequence b (NULL: slot b) */
  const uint8_t* has_initial; /* NULL: every sequence reads its state; else 0 = zeros */
} la_call;

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

/* Tokens x state elements below which a call's units all run on the calling thread: a decode
 * step over a few small heads is done before the host's parallel-for (ORT's pool) would have
 * handed its tasks out. Any task count gives the same bits. */
#define LA_SERIAL_MAX_WORK ((int64_t)1 << 15)

/* Sequence (batch row) of a unit, its tokens, the element offset of its first token in a
 * token-major view, its state slot's element offset for kv head h, and whether it reads a state. */
static inline int64_t la_unit_seq(const la_call* c, int64_t unit) { return unit / c->blocks_per_head / c->s.H_kv; }
static inline int64_t la_seq_len(const la_call* c, int64_t b) {
  return c->cu ? (int64_t)c->cu[b + 1] - c->cu[b] : c->p.T;
}
static inline int64_t la_seq_off(const la_call* c, const tview* t, int64_t b) {
  return c->cu ? (int64_t)c->cu[b] * t->strides[1] : b * t->strides[0];
}
static inline int64_t la_state_base(const la_call* c, int64_t b, int64_t h) {
  const int64_t slot = c->slots ? c->slots[b] : b;
  return (slot * c->s.H_kv + h) * c->p.d_k * c->p.d_v;
}
static inline bool la_seq_reads_state(const la_call* c, int64_t b) {
  return c->has_past && (!c->has_initial || c->has_initial[b] != 0);
}
/* Is a fast kernel's unit of sequence b (len tokens) recomputed when its outputs are not finite?
 * An in-place state it reads must then have been copied first (la_unit_keeps_entry), which
 * only calls of refine_min_tokens or more do; a unit that starts from zeros needs no copy. */
static inline bool la_unit_refines(const la_call* c, int64_t b, int64_t len) {
  return c->refine && (len >= c->refine_min_tokens || !la_seq_reads_state(c, b));
}
static inline bool la_unit_keeps_entry(const la_call* c, int64_t b, int64_t len) {
  return c->entry_copy_bytes > 0 && len >= c->refine_min_tokens && la_seq_reads_state(c, b);
}

/* Non-temporal stores for the state of this call (decode into a separate fp32 present)? */
static bool la_stream_state(const linattn_context* ctx, const la_call* c) {
  if (c->p.T != 1 || !c->has_past || !c->has_present || c->in_place || c->state_dtype != LINATTN_DTYPE_F32) return false;
  const double footprint = 2.0 * 4.0 * (double)c->s.B * (double)c->s.H_kv * (double)c->p.d_k * (double)c->p.d_v;
  return la_stream_choice(ctx->state_stores, footprint, ctx->llc_bytes);
}

/* An input of the T dtype (query's). */
static linattn_status la_bind_input(tview* v, const char* name, const linattn_tensor* t, const char* doc,
                                    linattn_dtype T_dt) {
  linattn_status st = tview_init(v, name, t, 3, false, doc);
  if (st) return st;
  if (v->dtype != T_dt) return ERR("%s: dtype %s differs from query's %s", name, linattn_dtype_name(v->dtype), linattn_dtype_name(T_dt));
  return LINATTN_SUCCESS;
}

/* query, key, value, decay, beta: views, dtypes and the shape rules. */
static linattn_status la_bind_inputs(la_call* c, const linattn_tensor* query, const linattn_tensor* key,
                                     const linattn_tensor* value, const linattn_tensor* decay,
                                     const linattn_tensor* beta) {
  linattn_status st;
  if ((st = tview_init(&c->q, "query", query, 3, false, LA_QUERY_DOC))) return st;
  const linattn_dtype T_dt = c->q.dtype;
  if ((st = la_bind_input(&c->k, "key", key, LA_KEY_DOC, T_dt))) return st;
  if ((st = la_bind_input(&c->v, "value", value, LA_VALUE_DOC, T_dt))) return st;
  if ((st = la_check_qkv(&c->s, c->q.dims, c->k.dims, c->v.dims))) return st;
  c->p.io_dtype = T_dt;
  c->p.T = c->s.T;
  c->p.d_k = c->s.d_k;
  c->p.d_v = c->s.d_v;
  if (decay) {
    c->has_decay = true;
    if ((st = la_bind_input(&c->decay, "decay", decay, LA_DECAY_DOC, T_dt))) return st;
    if ((st = la_check_decay(&c->s, c->decay.dims, &c->p.decay_kind))) return st;
  }
  if (beta) {
    c->has_beta = true;
    if ((st = la_bind_input(&c->beta, "beta", beta, LA_BETA_DOC, T_dt))) return st;
    if ((st = la_check_beta(&c->s, c->beta.dims, &c->p.beta_kind))) return st;
  }
  return LINATTN_SUCCESS;
}

/* past_state, output, present_state: views, shapes, dtypes. */
static linattn_status la_bind_state_output(la_call* c, const linattn_tensor* past_state, const linattn_tensor* output,
                                           const linattn_tensor* present_state) {
  linattn_status st;
  int64_t state_dims[4], out_dims[3];
  la_state_dims(&c->s, state_dims);
  la_output_dims(&c->s, out_dims);
  if (past_state) {
    c->has_past = true;
    if ((st = tview_init(&c->past, "past_state", past_state, 4, true, LA_STATE_DOC))) return st;
    if ((st = tview_expect_dims(&c->past, state_dims, LA_STATE_DOC))) return st;
  }
  if ((st = la_bind_input(&c->out, "output", output, LA_OUTPUT_DOC, c->p.io_dtype))) return st;
  if ((st = tview_expect_dims(&c->out, out_dims, LA_OUTPUT_DOC))) return st;
  c->state_dtype = c->has_past ? c->past.dtype : c->p.io_dtype;
  if (present_state) {
    c->has_present = true;
    if ((st = tview_init(&c->present, "present_state", present_state, 4, true, LA_STATE_DOC))) return st;
    if ((st = tview_expect_dims(&c->present, state_dims, LA_STATE_DOC))) return st;
    if (c->has_past && c->present.dtype != c->past.dtype)
      return ERR("present_state: dtype %s differs from past_state's %s", linattn_dtype_name(c->present.dtype),
                 linattn_dtype_name(c->past.dtype));
    c->state_dtype = c->present.dtype;
  }
  return LINATTN_SUCCESS;
}

/* Outputs may not overlap anything, except present_state == past_state (then in place). */
static linattn_status la_check_aliasing(la_call* c) {
  linattn_status st;
  const tview* inputs[] = {&c->q, &c->k, &c->v, c->has_decay ? &c->decay : NULL, c->has_beta ? &c->beta : NULL,
                           c->has_past ? &c->past : NULL};
  for (size_t i = 0; i < sizeof inputs / sizeof inputs[0]; i++)
    if ((st = tview_check_no_overlap(&c->out, inputs[i]))) return st;
  if (c->has_present) {
    if ((st = tview_check_no_overlap(&c->present, &c->out))) return st;
    for (size_t i = 0; i + 1 < sizeof inputs / sizeof inputs[0]; i++)
      if ((st = tview_check_no_overlap(&c->present, inputs[i]))) return st;
    if (c->has_past && c->present.lo != c->present.hi) {
      if (tview_same_buffer(&c->present, &c->past)) c->in_place = true;
      else if ((st = tview_check_no_overlap(&c->present, &c->past))) return st;
    }
  }
  return LINATTN_SUCCESS;
}

/* Work split (units = (b, kv head, column block), heads first) and per-task scratch. */
static linattn_status la_plan(const linattn_context* ctx, la_call* c) {
  const int64_t T = c->p.T, dk = c->p.d_k, dv = c->p.d_v;
  c->kern = ctx->kernels->la;
  c->p.sweep_tokens = ctx->tuning->la.sweep_tokens;
  c->p.stage_plain = ctx->tuning->la.stage_plain;
  c->p.decode_vectors = ctx->tuning->la.decode_vectors;
  c->p.decode_overlap = ctx->tuning->la.decode_overlap;
  c->p.decode_half_convert = ctx->tuning->la.decode_half_convert;
  c->p.pair_vectors = ctx->tuning->la.pair_vectors;
  c->p.fold_head_decay = ctx->tuning->la.fold_head_decay;
  c->p.decode_half_chain = ctx->tuning->la.decode_half_chain;
  c->p.decode_one_pass_prefetch = ctx->tuning->la.decode_one_pass_prefetch;
  /* dense, no token: no unit runs, no workspace (present_state = past_state, or zeros); a packed
   * batch runs its units even then (each passes its state through) */
  if (T == 0 && !c->cu) return LINATTN_SUCCESS;
  int64_t bc = c->kern->block_cols;
  if (bc <= 0 || bc > dv) bc = dv;
  c->block_cols = bc;
  c->blocks_per_head = bc > 0 ? (dv + bc - 1) / bc : 0;
  int64_t units;
  if (!linattn_mul_i64(c->s.B, c->s.H_kv, &units) || !linattn_mul_i64(units, c->blocks_per_head, &units))
    return ERR("problem size overflows");
  c->num_units = units;
  c->num_tasks = (size_t)(units < ctx->num_threads ? units : ctx->num_threads);
  int64_t work;
  if (c->num_tasks > 1 && !c->cu && linattn_mul_i64(units, bc, &work) && linattn_mul_i64(work, dk, &work) &&
      linattn_mul_i64(work, T, &work) && work <= LA_SERIAL_MAX_WORK)
    c->num_tasks = 1;
  size_t sblock;
  if (!linattn_mul_size((size_t)dk, (size_t)bc, &sblock) ||
      !linattn_mul_size(sblock, linattn_dtype_size(c->state_dtype), &sblock))
    return ERR("state block size overflows");
  c->p.state_dtype = c->state_dtype;
  c->state_scratch_bytes = c->has_present ? 0 : linattn_round_up(sblock, 64);
  size_t kbytes = c->kern->scratch_bytes(&c->p, bc);
  /* Units with non-finite outputs are recomputed by the reference kernel (la_units.h); an
   * in-place state is copied first only from LA_KEEP_ENTRY_MIN_TOKENS tokens on, shorter calls
   * keep the fast kernel's result (docs/reliability.md states what then holds). */
  const bool in_place = c->in_place;
  c->refine_min_tokens = in_place ? LA_KEEP_ENTRY_MIN_TOKENS : 0;
  /* packed: decided per unit (la_unit_refines), the longest sequence sizes the copy */
  c->refine = c->kern != &linattn_la_reference && (!in_place || T >= LA_KEEP_ENTRY_MIN_TOKENS || c->cu);
  c->entry_copy_bytes = c->refine && in_place && T >= LA_KEEP_ENTRY_MIN_TOKENS ? linattn_round_up(sblock, 64) : 0;
  if (c->refine) {
    const size_t rbytes = linattn_la_reference.scratch_bytes(&c->p, bc);
    if (rbytes > kbytes) kbytes = rbytes;
  }
  c->kernel_scratch_bytes = linattn_round_up(kbytes, 64);
  size_t unit_bytes;
  if (!linattn_add_size(c->state_scratch_bytes, c->kernel_scratch_bytes, &unit_bytes) ||
      !linattn_add_size(unit_bytes, c->entry_copy_bytes, &unit_bytes))
    return ERR("workspace size overflows");
  /* lock-step groups (la_units.h) */
  const int64_t per_task = c->num_tasks > 0 ? (units + (int64_t)c->num_tasks - 1) / (int64_t)c->num_tasks : 0;
  c->lockstep_units = 1;
  c->step_chunk = 0;
  const int64_t lockstep_min = la_lockstep_min_tokens(ctx);
  c->lockstep_min = lockstep_min;
  c->prefetch_next = ctx->tuning->la.lockstep_prefetch_next != 0;
  const int64_t group = la_lockstep_group(ctx, sblock);
  if (c->kern->step && c->kern->step_tokens > 0 && T >= lockstep_min && per_task > 1 && group > 1) {
    c->lockstep_units = per_task < group ? per_task : group;
    c->step_chunk = c->kern->step_tokens;
  }
  if (!linattn_mul_size(unit_bytes, (size_t)c->lockstep_units, &c->task_bytes))
    return ERR("workspace size overflows");
  c->p.stream_state = la_stream_state(ctx, c);
  /* decode chain (la_tuning.decode_chain): a task's units of a state in place (fp32, or 16-bit
   * with la_tuning.decode_half_chain) run as one chain (la_run_chain), each unit's scratch
   * alternating with a second one */
  c->chain_bytes = ctx->tuning->la.decode_chain && c->kern->run_chain && T == 1 && c->in_place &&
                           c->p.delta && c->p.decode_overlap &&
                           (c->state_dtype == LINATTN_DTYPE_F32 || c->p.decode_half_chain) &&
                           (!c->refine || c->cu) && /* packed: units that may refine run alone (la_task_packed_chain) */
                           c->lockstep_units == 1 && per_task > 1
                       ? unit_bytes
                       : 0;
  return LINATTN_SUCCESS;
}

static linattn_status la_resolve(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                 LA_TENSOR_PARAMS, la_call* c) {
  linattn_status st;
  memset(c, 0, sizeof *c);
  if (!ctx) return ERR("context: NULL (create one with linattn_context_create)");
  if ((st = la_check_desc(d, &c->s))) return st;
  if ((st = la_check_gate_presence(&c->s, decay != NULL, beta != NULL))) return st;
  c->p.gated = c->s.gated;
  c->p.delta = c->s.delta;
  if ((st = la_bind_inputs(c, query, key, value, decay, beta))) return st;
  if ((st = la_bind_state_output(c, past_state, output, present_state))) return st;
  if ((st = la_check_aliasing(c))) return st;
  c->p.scale_f64 = d->scale == 0.0f ? 1.0 / sqrt((double)c->p.d_k) : (double)d->scale;
  c->p.scale = (float)c->p.scale_f64;
  return la_plan(ctx, c);
}

/* ------------------------------------------------------------------ packed batch */

#define LA_PACKED_STATE_DOC "(N, kv_num_heads, d_k, d_v), N = batch_size without batch.state_indices"

/* A token-major (total_tokens, width) tensor of dtype T_dt (LINATTN_DTYPE_INVALID: query itself)
 * with total_tokens rows, as the (1, total_tokens, width) view the units read. */
static linattn_status la_bind_packed(tview* v, const char* name, const linattn_tensor* t, const char* doc,
                                     linattn_dtype T_dt, int64_t total) {
  linattn_status st = tview_init(v, name, t, 2, false, doc);
  if (st) return st;
  if (T_dt != LINATTN_DTYPE_INVALID && v->dtype != T_dt)
    return ERR("%s: dtype %s differs from query's %s", name, linattn_dtype_name(v->dtype), linattn_dtype_name(T_dt));
  if (total >= 0 && v->dims[0] != total)
    return ERR("%s: expected shape %s with total_tokens = %lld (query's), got %lld rows", name, doc, (long long)total,
               (long long)v->dims[0]);
  const int64_t rows = v->dims[0], width = v->dims[1], row_stride = v->strides[0];
  v->rank = 3;
  v->dims[0] = 1, v->dims[1] = rows, v->dims[2] = width;
  v->strides[0] = 0, v->strides[1] = row_stride, v->strides[2] = 1;
  return LINATTN_SUCCESS;
}

static linattn_status la_bind_packed_inputs(la_call* c, const linattn_tensor* query, const linattn_tensor* key,
                                            const linattn_tensor* value, const linattn_tensor* decay,
                                            const linattn_tensor* beta) {
  linattn_status st;
  if ((st = la_bind_packed(&c->q, "query", query, "(total_tokens, q_num_heads*d_k)", LINATTN_DTYPE_INVALID, -1)))
    return st;
  const linattn_dtype T_dt = c->q.dtype;
  const int64_t total = c->q.dims[1];
  if ((st = la_bind_packed(&c->k, "key", key, "(total_tokens, kv_num_heads*d_k)", T_dt, total)) ||
      (st = la_bind_packed(&c->v, "value", value, "(total_tokens, kv_num_heads*d_v)", T_dt, total)) ||
      (st = la_check_qkv(&c->s, c->q.dims, c->k.dims, c->v.dims)))
    return st;
  c->p.io_dtype = T_dt;
  c->p.d_k = c->s.d_k;
  c->p.d_v = c->s.d_v;
  if (decay) {
    c->has_decay = true;
    if ((st = la_bind_packed(&c->decay, "decay", decay,
                             "(total_tokens, kv_num_heads) or (total_tokens, kv_num_heads*d_k)", T_dt, total)) ||
        (st = la_check_decay(&c->s, c->decay.dims, &c->p.decay_kind)))
      return st;
  }
  if (beta) {
    c->has_beta = true;
    if ((st = la_bind_packed(&c->beta, "beta", beta, "(total_tokens, kv_num_heads) or (total_tokens, 1)", T_dt,
                             total)) ||
        (st = la_check_beta(&c->s, c->beta.dims, &c->p.beta_kind)))
      return st;
  }
  return LINATTN_SUCCESS;
}

/* past_state / present_state: the pool (N states; N = B without slot indices), output. */
static linattn_status la_bind_packed_states(la_call* c, const linattn_tensor* past_state, const linattn_tensor* output,
                                            const linattn_tensor* present_state, int64_t* N) {
  linattn_status st;
  int64_t sd[4] = {c->s.B, c->s.H_kv, c->p.d_k, c->p.d_v};
  if (past_state) {
    c->has_past = true;
    if ((st = tview_init(&c->past, "past_state", past_state, 4, true, LA_PACKED_STATE_DOC))) return st;
    if (c->slots) sd[0] = c->past.dims[0];
    if ((st = tview_expect_dims(&c->past, sd, LA_PACKED_STATE_DOC))) return st;
  }
  int64_t od[3] = {1, c->q.dims[1], c->s.out_width};
  if ((st = la_bind_packed(&c->out, "output", output, "(total_tokens, max(q_num_heads, kv_num_heads)*d_v)",
                           c->p.io_dtype, c->q.dims[1])) ||
      (st = tview_expect_dims(&c->out, od, "(total_tokens, max(q_num_heads, kv_num_heads)*d_v)")))
    return st;
  c->state_dtype = c->has_past ? c->past.dtype : c->p.io_dtype;
  if (present_state) {
    c->has_present = true;
    if ((st = tview_init(&c->present, "present_state", present_state, 4, true, LA_PACKED_STATE_DOC))) return st;
    if (c->slots && !c->has_past) sd[0] = c->present.dims[0];
    if ((st = tview_expect_dims(&c->present, sd, LA_PACKED_STATE_DOC))) return st;
    if (c->has_past && c->present.dtype != c->past.dtype)
      return ERR("present_state: dtype %s differs from past_state's %s", linattn_dtype_name(c->present.dtype),
                 linattn_dtype_name(c->past.dtype));
    c->state_dtype = c->present.dtype;
  }
  if (c->slots && !past_state && !present_state)
    return ERR("batch.state_indices: given without a state pool (past_state or present_state)");
  *N = sd[0];
  return LINATTN_SUCCESS;
}

static linattn_status la_resolve_packed(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                        const linattn_varlen_batch* batch, LA_TENSOR_PARAMS, la_call* c) {
  linattn_status st;
  memset(c, 0, sizeof *c);
  if (!ctx) return ERR("context: NULL (create one with linattn_context_create)");
  if ((st = la_check_desc(d, &c->s))) return st;
  if (d->state_window != 0)
    return ERR("desc.state_window: must be 0 for a packed batch, got %lld", (long long)d->state_window);
  if ((st = la_check_gate_presence(&c->s, decay != NULL, beta != NULL))) return st;
  if (!batch) return ERR("batch: NULL");
  if ((st = packed_check_batch_size(batch))) return st;
  if (batch->capture_count) return ERR("batch.capture_count: must be NULL (LinearAttention captures no transitions)");
  c->p.gated = c->s.gated;
  c->p.delta = c->s.delta;
  c->cu = batch->cu_seqlens;
  c->slots = batch->state_indices;
  c->has_initial = batch->has_initial_state;
  if ((st = la_bind_packed_inputs(c, query, key, value, decay, beta))) return st;
  const int64_t total = c->q.dims[1];
  if (total > INT32_MAX)
    return ERR("query: total_tokens = %lld exceeds the int32 range of cu_seqlens", (long long)total);
  c->s.B = batch->batch_size;
  int64_t N = 0;
  if ((st = la_bind_packed_states(c, past_state, output, present_state, &N))) return st;
  if ((st = la_check_aliasing(c))) return st;
  if ((st = packed_check_batch(ctx, batch, total, "query.dims[0]", N, past_state ? "past_state" : "present_state", 0)))
    return st;
  int64_t longest = 0;
  for (int64_t b = 0; b < c->s.B; b++) longest = la_seq_len(c, b) > longest ? la_seq_len(c, b) : longest;
  c->p.T = longest;
  c->p.scale_f64 = d->scale == 0.0f ? 1.0 / sqrt((double)c->p.d_k) : (double)d->scale;
  c->p.scale = (float)c->p.scale_f64;
  return la_plan(ctx, c);
}

static size_t la_workspace_bytes(const la_call* c) {
  size_t total;
  if (!linattn_add_size(c->task_bytes, c->chain_bytes, &total) || !linattn_mul_size(total, c->num_tasks, &total))
    return SIZE_MAX;
  return total;
}


/* The unit's state pointers, typed by the state's dtype (la_unit's unions). */
static void la_set_state(la_unit* u, linattn_dtype dt, const void* in, void* out) {
  if (dt == LINATTN_DTYPE_F32) {
    u->state_in = in;
    u->state_out = out;
  } else {
    u->state_in_h = in;
    u->state_out_h = out;
  }
}

/* base + off elements of esz bytes. A zero-element tensor may have data == NULL, and offsetting
 * a null pointer is undefined behaviour even by 0 (UBSan, found by fuzz/): NULL stays NULL. */
static inline char* la_at(char* base, int64_t off, size_t esz) { return base ? base + (size_t)off * esz : NULL; }

/* Builds unit `unit` (its state block, when no present is wanted, at the head of scratch, then
 * the copy of an entering in-place state) and returns the kernel's scratch. recompute: for the
 * reference kernel after a fast one ran the unit; an in-place state then evolves in its copy. */
static char* la_prepare_unit(const la_call* c, int64_t unit, char* scratch, la_unit* up, bool recompute) {
  const int64_t blk = unit % c->blocks_per_head;
  const int64_t bh = unit / c->blocks_per_head;
  const int64_t h = bh % c->s.H_kv, b = bh / c->s.H_kv;
  const int64_t dk = c->p.d_k, dv = c->p.d_v;
  const int64_t col0 = blk * c->block_cols;
  const int64_t ncols = (dv - col0) < c->block_cols ? (dv - col0) : c->block_cols;
  const size_t esz = linattn_dtype_size(c->p.io_dtype);
  /* Written in place, field by field: a local copy assigned at the end is read back before its
   * scalar stores have drained (a store-forwarding stall), and zeroing the whole struct first
   * compiles to a string store; both cost more than the rest of the function. */
  la_unit* const u = up;
  u->decay = u->beta = NULL;
  u->decay_token_stride = u->beta_token_stride = 0;
  u->gate_coef = 0.0f;
  u->dt_bias = NULL;
  u->dt_bias_per_key = false;
  u->cap_tokens = u->cap_decay_stride = u->cap_key_stride = u->cap_delta_stride = 0;
  u->cap_decay = u->cap_key = u->cap_delta = NULL;
  int64_t qh0, oh0;
  if (c->s.inverse_gqa) {
    u->n_q = 1;
    qh0 = h / (c->s.H_kv / c->s.H_q);
    oh0 = h;
  } else {
    u->n_q = (int32_t)(c->s.H_q / c->s.H_kv);
    qh0 = h * u->n_q;
    oh0 = qh0;
  }
  const int64_t kh = h / (c->s.H_kv / c->s.n_k);
  u->q = la_at(c->q.data, la_seq_off(c, &c->q, b) + qh0 * dk, esz);
  u->q_token_stride = c->q.strides[1];
  u->q_head_stride = dk;
  u->k = la_at(c->k.data, la_seq_off(c, &c->k, b) + kh * dk, esz);
  u->k_token_stride = c->k.strides[1];
  u->v = la_at(c->v.data, la_seq_off(c, &c->v, b) + h * dv + col0, esz);
  u->v_token_stride = c->v.strides[1];
  if (c->has_decay) {
    const int64_t off = c->p.decay_kind == LA_DECAY_PER_KEY ? h * dk : h;
    u->decay = la_at(c->decay.data, la_seq_off(c, &c->decay, b) + off, esz);
    u->decay_token_stride = c->decay.strides[1];
  }
  if (c->has_beta) {
    const int64_t off = c->p.beta_kind == LA_BETA_PER_HEAD ? h : 0;
    u->beta = la_at(c->beta.data, la_seq_off(c, &c->beta, b) + off, esz);
    u->beta_token_stride = c->beta.strides[1];
  }
  u->out = la_at(c->out.data, la_seq_off(c, &c->out, b) + oh0 * dv + col0, esz);
  u->out_token_stride = c->out.strides[1];
  u->out_head_stride = dv;
  u->col0 = col0;
  u->ncols = ncols;

  const int64_t sbase = la_state_base(c, b, h); /* element offset of this head's state */
  const bool reads = la_seq_reads_state(c, b);
  const bool keeps_entry = la_unit_keeps_entry(c, b, la_seq_len(c, b));
  const size_t ssz = linattn_dtype_size(c->state_dtype);
  char* entry = scratch + c->state_scratch_bytes;
  char* kscratch = scratch + c->state_scratch_bytes + c->entry_copy_bytes;
  /* the state in its own dtype: past_state in, present_state out (row stride d_v); without
   * present_state, a copy of past_state's block in scratch (row stride ncols) updated in place */
  const void* past = reads ? la_at(c->past.data, sbase + col0, ssz) : NULL;
  if (c->has_present) {
    la_set_state(u, c->state_dtype, past, la_at(c->present.data, sbase + col0, ssz));
    u->ld_state = dv;
  } else {
    if (past) la_copy_rows(scratch, ncols, past, dv, dk, ncols, ssz);
    la_set_state(u, c->state_dtype, past ? scratch : NULL, scratch);
    u->ld_state = ncols;
  }
  if (keeps_entry && recompute) {
    la_set_state(u, c->state_dtype, reads ? entry : NULL, entry); /* rows of ncols; la_refine_unit copies back */
    u->ld_state = ncols;
  } else if (keeps_entry && reads) {
    la_copy_rows(entry, ncols, u->state_out, dv, dk, ncols, ssz);
  }
  return kscratch;
}



/* After a fast kernel ran unit `unit`: recomputes it with the reference
 * kernel unless its outputs were all finite (see c->refine). */
static void la_refine_unit(const la_call* c, const la_params* p, int64_t unit, char* scratch, la_unit* u, bool finite) {
  const int64_t b = la_unit_seq(c, unit);
  if (!la_unit_refines(c, b, p->T) || p->T == 0 || finite) return;
  char* kscratch = la_prepare_unit(c, unit, scratch, u, true);
  linattn_la_reference.run(p, u, kscratch);
  if (la_unit_keeps_entry(c, b, p->T)) { /* the in-place state evolved in its copy: back to past_state */
    const int64_t bh = unit / c->blocks_per_head;
    const int64_t sbase = la_state_base(c, bh / c->s.H_kv, bh % c->s.H_kv);
    const size_t ssz = linattn_dtype_size(c->state_dtype);
    la_copy_rows(la_at(c->present.data, sbase + u->col0, ssz), c->p.d_v, u->state_out, u->ncols, c->p.d_k,
                    u->ncols, ssz);
  }
}

/* p: c->p, or for a packed batch a copy whose T is the unit's sequence length (0 passes the
 * state through: the kernels copy it). */
static void la_run_unit(const la_call* c, const la_params* p, int64_t unit, char* scratch) {
  la_unit u;
  char* kscratch = la_prepare_unit(c, unit, scratch, &u, false);
  c->kern->run(p, &u, kscratch);
  const bool refines = la_unit_refines(c, la_unit_seq(c, unit), p->T);
  la_refine_unit(c, p, unit, scratch, &u, !refines || c->kern->outputs_finite(p->io_dtype, c->refine_limit, &u, 0, p->T));
}

/* d_k == 0: the state is empty and every readout is scale * (empty sum) = scale * 0, which is
 * NaN for the default scale 1/sqrt(0) = inf, as in the ONNX reference. The fast kernels fold the
 * scale into q (an empty vector) and would write 0, so this case never reaches a kernel. */
static void la_fill_zero_width_keys(const la_call* c) {
  const float val = c->p.scale * 0.0f;
  for (int64_t b = 0; b < c->out.dims[0]; b++)
    for (int64_t t = 0; t < c->out.dims[1]; t++)
      for (int64_t j = 0; j < c->out.dims[2]; j++)
        linattn_store_f32(c->out.data, b * c->out.strides[0] + t * c->out.strides[1] + j, c->p.io_dtype, val);
}

/* Units [g0, g1) advance together token tile by token tile (p->T tokens each); each round
 * advances every unit of the group over the same tokens. The kernel's step gives the bits of
 * run, so the grouping cannot show. */
static void la_run_group(const la_call* c, const la_params* p, int64_t g0, int64_t g1, char* scratch) {
  const size_t unit_bytes = c->task_bytes / (size_t)c->lockstep_units;
  la_unit units[LA_LOCKSTEP_UNITS_MAX];
  char* kscr[LA_LOCKSTEP_UNITS_MAX] = {NULL};
  bool finite[LA_LOCKSTEP_UNITS_MAX]; /* outputs checked step by step, while still in cache */
  const bool refines = la_unit_refines(c, la_unit_seq(c, g0), p->T); /* one sequence (packed), or all alike */
  for (int64_t i = 0; i < g1 - g0; i++) {
    kscr[i] = la_prepare_unit(c, g0 + i, scratch + (size_t)i * unit_bytes, &units[i], false);
    finite[i] = true;
  }
  la_step_units(c->kern, p, units, kscr, g1 - g0, c->step_chunk, refines ? finite : NULL, c->refine_limit,
                c->prefetch_next);
  for (int64_t i = 0; i < g1 - g0; i++)
    la_refine_unit(c, p, g0 + i, scratch + (size_t)i * unit_bytes, &units[i], finite[i]);
}

/* Units [begin, end) of a decode (la_call.chain_bytes): each unit's run may set up the next one and
 * sum its first panel (la_kernel.run_chain), so each keeps its own scratch until its run (two
 * alternate); the bits are those of la_run_unit's. No recompute here (la_plan: !c->refine). */
static void la_run_chain(const la_call* c, int64_t begin, int64_t end, char* scratch) {
  la_unit us[2];
  char* const scr[2] = {scratch, scratch + c->task_bytes};
  char* kscr[2] = {NULL, NULL};
  if (begin >= end) return;
  kscr[0] = la_prepare_unit(c, begin, scr[0], &us[0], false);
  int primed = 0;
  for (int64_t u = begin; u < end; u++) {
    const int i = (int)((u - begin) & 1);
    const bool more = u + 1 < end;
    if (more) kscr[i ^ 1] = la_prepare_unit(c, u + 1, scr[i ^ 1], &us[i ^ 1], false);
    primed = c->kern->run_chain(&c->p, &us[i], kscr[i], primed, more ? &us[i ^ 1] : NULL, more ? kscr[i ^ 1] : NULL);
  }
}

/* A packed decode's units [begin, end) (la_call.chain_bytes): the runs of units whose sequence has
 * its one token and no recompute (it reads its in-place state) run as chains; the others (no
 * token, or a sequence starting from zeros, which may be recomputed) run alone, as la_task's. */
static void la_task_packed_chain(const la_call* c, int64_t begin, int64_t end, char* scratch) {
  const int64_t per_seq = c->blocks_per_head * c->s.H_kv;
  la_params p = c->p;
  for (int64_t u = begin; u < end;) {
    const int64_t b = la_unit_seq(c, u);
    p.T = la_seq_len(c, b);
    if (p.T != 1 || la_unit_refines(c, b, 1)) {
      la_run_unit(c, &p, u, scratch);
      u++;
      continue;
    }
    int64_t r = (b + 1) * per_seq; /* the run goes on through the following chaining sequences */
    for (int64_t bn = b + 1; r < end && la_seq_len(c, bn) == 1 && !la_unit_refines(c, bn, 1); bn++) r += per_seq;
    if (r > end) r = end;
    la_run_chain(c, u, r, scratch);
    u = r;
  }
}

/* Units [*begin, *end) of a task. Dense: equal counts (every unit has T tokens). Packed: ranges
 * of about equal cost, a unit costing its sequence's tokens plus one (its state's load and
 * store); every task computes the same split, so the ranges tile [0, num_units). */
static void la_task_range(const la_call* c, size_t task, int64_t* begin, int64_t* end) {
  const int64_t U = c->num_units, n = (int64_t)c->num_tasks, t = (int64_t)task;
  if (!c->cu || n == 1) {
    *begin = t * U / n;
    *end = (t + 1) * U / n;
    return;
  }
  const int64_t per_seq = c->blocks_per_head * c->s.H_kv;
  const double total = ((double)c->cu[c->s.B] + (double)c->s.B) * (double)per_seq;
  *begin = *end = U;
  for (int64_t u = 0; u < U; u++) {
    const int64_t b = u / per_seq;
    const double before = ((double)c->cu[b] + (double)b) * (double)per_seq +
                          (double)(u - b * per_seq) * ((double)la_seq_len(c, b) + 1.0);
    int64_t owner = (int64_t)(before * (double)n / total);
    if (owner > n - 1) owner = n - 1;
    if (owner >= t && *begin == U) *begin = u;
    if (owner > t) {
      *end = u;
      break;
    }
  }
}

static void la_task(void* arg, size_t task) {
  const la_call* c = (const la_call*)arg;
  int64_t begin, end;
  la_task_range(c, task, &begin, &end);
  char* scratch = c->workspace + task * (c->task_bytes + c->chain_bytes);
  if (!c->cu) {
    if (c->chain_bytes) {
      la_run_chain(c, begin, end, scratch);
      return;
    }
    if (c->lockstep_units <= 1) {
      for (int64_t u = begin; u < end; u++) la_run_unit(c, &c->p, u, scratch);
      return;
    }
    for (int64_t g0 = begin; g0 < end; g0 += c->lockstep_units)
      la_run_group(c, &c->p, g0, end - g0 < c->lockstep_units ? end : g0 + c->lockstep_units, scratch);
    return;
  }
  /* packed: a group never spans two sequences (its units share T) */
  const int64_t per_seq = c->blocks_per_head * c->s.H_kv;
  if (c->chain_bytes) {
    la_task_packed_chain(c, begin, end, scratch);
    return;
  }
  la_params p = c->p;
  for (int64_t g0 = begin; g0 < end;) {
    const int64_t b = la_unit_seq(c, g0), seq_end = (b + 1) * per_seq;
    p.T = la_seq_len(c, b);
    int64_t g1 = g0 + (c->lockstep_units > 1 && p.T >= c->lockstep_min ? c->lockstep_units : 1);
    if (g1 > end) g1 = end;
    if (g1 > seq_end) g1 = seq_end;
    if (g1 - g0 > 1) la_run_group(c, &p, g0, g1, scratch);
    else la_run_unit(c, &p, g0, scratch);
    g0 = g1;
  }
}

static linattn_status la_workspace_size_entered(
    linattn_context* context, const linattn_linear_attention_desc* desc, LA_TENSOR_PARAMS, size_t* workspace_size) {
  if (!workspace_size) return ERR("workspace_size: NULL output pointer");
  if (context && desc && desc->state_window != 0)
    return linattn_la_window_workspace_size(context, desc, LA_TENSOR_ARGS, workspace_size);
  la_call c;
  linattn_status st = la_resolve(context, desc, LA_TENSOR_ARGS, &c);
  if (st) return st;
  return linattn_answer_workspace_size(la_workspace_bytes(&c), workspace_size);
}

linattn_status linattn_linear_attention_workspace_size(
    linattn_context* context, const linattn_linear_attention_desc* desc, LA_TENSOR_PARAMS, size_t* workspace_size) {
  LINATTN_RETURN_ENTERED(context, la_workspace_size_entered(context, desc, LA_TENSOR_ARGS, workspace_size));
}

linattn_status linattn_la_in_place_workspace_size(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                                  const linattn_tensor* query, const linattn_tensor* key,
                                                  const linattn_tensor* value, const linattn_tensor* decay,
                                                  const linattn_tensor* beta, const linattn_tensor* output,
                                                  size_t* bytes) {
  la_call c;
  linattn_status st = la_resolve(ctx, d, query, key, value, NULL, decay, beta, output, NULL, &c);
  if (st) return st;
  /* planned again as if an fp32 state were given and updated in place */
  c.has_past = c.has_present = c.in_place = true;
  c.state_dtype = LINATTN_DTYPE_F32;
  if ((st = la_plan(ctx, &c))) return st;
  *bytes = la_workspace_bytes(&c);
  return *bytes == SIZE_MAX ? ERR("workspace size overflows") : LINATTN_SUCCESS;
}

static linattn_status la_compute_entered(linattn_context* context, const linattn_linear_attention_desc* desc,
                                         LA_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  if (desc && desc->state_window != 0 && context)
    return linattn_la_window_run(context, desc, LA_TENSOR_ARGS, workspace, workspace_size);
  la_call c;
  linattn_status st = la_resolve(context, desc, LA_TENSOR_ARGS, &c);
  if (st) return st;
  void* owned;
  /* the workspace is empty when T == 0 */
  if ((st = linattn_take_workspace(context, workspace, workspace_size, la_workspace_bytes(&c), c.p.d_k > 0,
                                   &c.workspace, &owned)))
    return st;
  c.refine_limit = la_refine_limit(&c.p);
  if (c.p.T == 0) tview_copy_or_zero(c.has_present ? &c.present : NULL, c.has_past ? &c.past : NULL);
  else if (c.p.d_k == 0) la_fill_zero_width_keys(&c);
  else if (c.num_units > 0) linattn_run_parallel(context, la_task, &c, c.num_tasks);
  linattn_ctx_free(context, owned);
  return LINATTN_SUCCESS;
}

linattn_status linattn_linear_attention(linattn_context* context, const linattn_linear_attention_desc* desc,
                                        LA_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  LINATTN_RETURN_ENTERED(context, la_compute_entered(context, desc, LA_TENSOR_ARGS, workspace, workspace_size));
}

#define LA_PACKED_ARGS_DECL                                                                              \
  linattn_context *context, const linattn_linear_attention_desc *desc, const linattn_varlen_batch *batch, \
      LA_TENSOR_PARAMS
#define LA_PACKED_ARGS context, desc, batch, LA_TENSOR_ARGS

static linattn_status la_packed_workspace_size_entered(LA_PACKED_ARGS_DECL, size_t* workspace_size) {
  if (!workspace_size) return ERR("workspace_size: NULL output pointer");
  la_call c;
  linattn_status st = la_resolve_packed(LA_PACKED_ARGS, &c);
  if (st) return st;
  return linattn_answer_workspace_size(la_workspace_bytes(&c), workspace_size);
}

linattn_status linattn_varlen_linear_attention_workspace_size(LA_PACKED_ARGS_DECL, size_t* workspace_size) {
  LINATTN_RETURN_ENTERED(context, la_packed_workspace_size_entered(LA_PACKED_ARGS, workspace_size));
}

static linattn_status la_packed_entered(LA_PACKED_ARGS_DECL, void* workspace, size_t workspace_size) {
  la_call c;
  linattn_status st = la_resolve_packed(LA_PACKED_ARGS, &c);
  if (st) return st;
  void* owned;
  if ((st = linattn_take_workspace(context, workspace, workspace_size, la_workspace_bytes(&c), c.p.d_k > 0 && c.num_units > 0,
                                   &c.workspace, &owned)))
    return st;
  c.refine_limit = la_refine_limit(&c.p);
  if (c.p.d_k == 0) la_fill_zero_width_keys(&c); /* the states are empty */
  else if (c.num_units > 0) linattn_run_parallel(context, la_task, &c, c.num_tasks);
  linattn_ctx_free(context, owned);
  return LINATTN_SUCCESS;
}

linattn_status linattn_varlen_linear_attention(LA_PACKED_ARGS_DECL, void* workspace, size_t workspace_size) {
  LINATTN_RETURN_ENTERED(context, la_packed_entered(LA_PACKED_ARGS, workspace, workspace_size));
}

linattn_status linattn_linear_attention_infer_shapes(const linattn_linear_attention_desc* desc,
                                                     const int64_t query_dims[3], const int64_t key_dims[3],
                                                     const int64_t value_dims[3], int64_t output_dims[3],
                                                     int64_t state_dims[4]) {
  linattn_clear_error();
  la_dims s;
  linattn_status st;
  if ((st = la_check_desc(desc, &s))) return st;
  if (!query_dims || !key_dims || !value_dims || !output_dims || !state_dims)
    return ERR("infer_shapes: NULL dims array (query_dims, key_dims, value_dims, output_dims, state_dims)");
  if ((st = check_dims_nonnegative("query", query_dims, 3, LA_QUERY_DOC)) ||
      (st = check_dims_nonnegative("key", key_dims, 3, LA_KEY_DOC)) ||
      (st = check_dims_nonnegative("value", value_dims, 3, LA_VALUE_DOC)))
    return st;
  if ((st = la_check_qkv(&s, query_dims, key_dims, value_dims))) return st;
  int64_t out[3], state[4];
  la_output_dims(&s, out);
  la_state_dims(&s, state);
  /* shapes only a tensor of fewer than 2^63 elements can have (the call's tensors are checked so) */
  if ((st = check_element_count("output", out, 3, LA_OUTPUT_DOC)) ||
      (st = check_element_count("present_state", state, 4, LA_STATE_DOC)))
    return st;
  memcpy(output_dims, out, sizeof out);
  memcpy(state_dims, state, sizeof state);
  return LINATTN_SUCCESS;
}
