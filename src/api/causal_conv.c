/* CausalConvWithState operator: validation, shape resolution, work split, threading. */
#include <string.h>

#include "api/op_params.h"
#include "api/shape_rules.h"
#include "api/state_window.h"
#include "api/tensor_check.h"
#include "internal.h"

typedef struct conv_call {
  conv_params p;
  tview x, w, bias, past, y, present;
  bool has_bias, has_past, has_present;
  const conv_kernel* kern;
  int64_t block_channels, blocks_per_batch, num_units;
  size_t num_tasks, task_bytes;
  char* workspace;
} conv_call;

/* Input + state elements up to which a call runs on the calling thread only. */
#define CONV_SERIAL_MAX_ELEMS ((int64_t)1 << 16)
/* Output bytes from which the kernels may stream the output past the caches: above about half
 * a server L3 the output cannot stay cached next to the input anyway, and streaming saves the
 * read for ownership of every output line; 16-bit outputs gained nothing and stream nothing.
 * Channels-first rows stream from the tuning's conv.cf_stream_min_bytes up (conv_params.stream_rows;
 * by default the last-level cache's size: below it repeated calls find the output cached; figures:
 * docs/tuning.md, CONV_STREAM_MIN_BYTES and conv.cf_stream_min_bytes). */
#define CONV_STREAM_MIN_BYTES ((int64_t)16 << 20)

/* Widest channels-last prefill unit: 64 KiB fp32 rows stream well, and a unit's scratch
 * (weights transposed for its channels) stays bounded. */
#define CONV_CL_MAX_UNIT ((int64_t)16384)

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

/* A packed tensor of the input's dtype and the given shape (weight, bias, states). */
static linattn_status conv_bind_packed(tview* v, const char* name, const linattn_tensor* t, int32_t rank,
                                       const int64_t* dims, const char* doc, linattn_dtype dt) {
  linattn_status st = tview_init(v, name, t, rank, true, doc);
  if (st) return st;
  if (v->dtype != dt) return ERR("%s: dtype %s differs from input's %s", name, linattn_dtype_name(v->dtype), linattn_dtype_name(dt));
  return dims ? tview_expect_dims(v, dims, doc) : LINATTN_SUCCESS;
}

/* Views, dtypes and the shape rules of every tensor. */
static linattn_status conv_bind(conv_call* c, conv_dims* s, CONV_TENSOR_PARAMS) {
  linattn_status st;
  const char* xdoc = conv_input_doc(s);
  const char* sdoc = conv_state_doc(s);
  if ((st = tview_init(&c->x, "input", input, 3, false, xdoc))) return st;
  const linattn_dtype dt = c->x.dtype;
  if ((st = conv_bind_packed(&c->w, "weight", weight, 3, NULL, "(C, 1, k)", dt))) return st;
  if ((st = conv_check_input_weight(s, c->x.dims, c->w.dims))) return st;
  if (bias) {
    c->has_bias = true;
    if ((st = conv_bind_packed(&c->bias, "bias", bias, 1, NULL, "(C)", dt))) return st;
    if (c->bias.dims[0] != s->C) return ERR("bias: expected shape (C) = (%lld), got (%lld)", (long long)s->C, (long long)c->bias.dims[0]);
  }
  int64_t sdims[3];
  conv_state_dims(s, sdims);
  if (past_state) {
    c->has_past = true;
    if ((st = conv_bind_packed(&c->past, "past_state", past_state, 3, sdims, sdoc, dt))) return st;
  }
  if ((st = tview_init(&c->y, "output", output, 3, false, xdoc))) return st;
  if (c->y.dtype != dt) return ERR("output: dtype %s differs from input's %s", linattn_dtype_name(c->y.dtype), linattn_dtype_name(dt));
  if ((st = tview_expect_dims(&c->y, c->x.dims, xdoc))) return st;
  if (present_state) {
    c->has_present = true;
    if ((st = conv_bind_packed(&c->present, "present_state", present_state, 3, sdims, sdoc, dt))) return st;
  }
  return LINATTN_SUCCESS;
}

/* Outputs may not overlap anything, except present_state == past_state (then in place). */
static linattn_status conv_check_aliasing(const conv_call* c) {
  linattn_status st;
  const tview* inputs[] = {&c->x, &c->w, c->has_bias ? &c->bias : NULL, c->has_past ? &c->past : NULL};
  for (size_t i = 0; i < 4; i++)
    if ((st = tview_check_no_overlap(&c->y, inputs[i]))) return st;
  if (c->has_present) {
    if ((st = tview_check_no_overlap(&c->present, &c->y))) return st;
    for (size_t i = 0; i < 3; i++)
      if ((st = tview_check_no_overlap(&c->present, inputs[i]))) return st;
    if (c->has_past && !tview_same_buffer(&c->present, &c->past))
      if ((st = tview_check_no_overlap(&c->present, &c->past))) return st;
  }
  return LINATTN_SUCCESS;
}

/* The kernels' parameters: sizes, strides, streaming choices. */
static linattn_status conv_params_from(const linattn_context* ctx, conv_call* c, const conv_dims* s) {
  conv_params* p = &c->p;
  const bool cl = s->channels_last;
  const int64_t C = s->C, L = s->L;
  p->dtype = c->x.dtype;
  p->activation = s->activation;
  p->channels_last = cl;
  p->B = s->B; p->C = C; p->L = L; p->K = s->K;
  p->dilation = s->dilation;
  p->S = s->S;
  if (!c->has_past && !c->has_present && s->dilation > L && L > 0) {
    /* Without state tensors, taps more than L back read zeros whatever the dilation: hand the
     * kernels dilation L (same arithmetic, same bits) so that no offset grows with a huge
     * (k-1)*dilation, which overflows int64 once scaled to bytes (found by fuzz/). */
    p->dilation = L;
    if (!linattn_mul_i64(s->K - 1, L, &p->S)) return ERR("problem size overflows");
  }
  p->x = c->x.data;
  p->x_sb = c->x.strides[0];
  p->x_sc = cl ? 1 : c->x.strides[1];
  p->x_st = cl ? c->x.strides[1] : 1;
  p->w = c->w.data;
  p->bias = c->has_bias ? c->bias.data : NULL;
  p->past = c->has_past ? c->past.data : NULL;
  /* S * C overflows only for a huge dilation without state tensors (a state of that shape is
   * rejected above); the state strides are then unused (found by fuzz/fuzz_causal_conv.c). */
  if (!linattn_mul_i64(p->S, C, &p->s_sb)) p->s_sb = 0;
  p->s_sc = cl ? 1 : p->S; /* p->S: the kernels' S (see the dilation clamp above) */
  p->s_st = cl ? C : 1;
  p->y = c->y.data;
  p->y_sb = c->y.strides[0];
  p->y_sc = cl ? 1 : c->y.strides[1];
  p->y_st = cl ? c->y.strides[1] : 1;
  p->present = c->has_present && c->present.numel > 0 ? c->present.data : NULL;
  int64_t out_bytes;
  const bool out_bytes_fit = linattn_mul_i64(c->y.numel, (int64_t)linattn_dtype_size(p->dtype), &out_bytes);
  p->stream_output = out_bytes_fit ? out_bytes >= CONV_STREAM_MIN_BYTES : true;
  const int64_t rows_min = ctx->tuning->conv.cf_stream_min_bytes;
  p->stream_rows = p->stream_output && (!out_bytes_fit || (rows_min > 0 ? out_bytes >= rows_min
                                                                         : (uint64_t)out_bytes >= (uint64_t)ctx->llc_bytes));
  p->cf_prefetch = ctx->tuning->conv.cf_prefetch_bytes;
  p->cf_bf16_pairs = ctx->tuning->conv.cf_bf16_pairs != 0;
  p->silu_table = ctx->tuning->conv.silu_table != 0;
  p->decode_vbmi = ctx->tuning->conv.decode_vbmi && linattn_cpu_has_avx512vbmi();
  return LINATTN_SUCCESS;
}

/* Work split (units = (b, channel block)) and per-task scratch. */
static linattn_status conv_plan(const linattn_context* ctx, conv_call* c) {
  const conv_params* p = &c->p;
  const int64_t B = p->B, C = p->C, L = p->L;
  c->kern = ctx->kernels->conv;
  int64_t bc = c->kern->block_channels;
  if (p->channels_last && L > 1 && c->kern->cl_whole_rows && bc > 0 && bc < C) {
    /* Units as wide as the threads allow (never narrower than block_channels, at most
     * CONV_CL_MAX_UNIT): a unit sweeps its channels row by row, and long rows stream from
     * memory much faster than 4 KiB pieces of rows 24 KiB apart (docs/tuning.md,
     * CONV_CL_MAX_UNIT).
     * threads / gcd(B, threads) units per batch make the unit count a multiple of the thread
     * count, so every thread gets the same share. */
    const int64_t threads = ctx->num_threads > 0 ? ctx->num_threads : 1;
    int64_t g = threads, r = B % threads;
    while (r) { const int64_t t = g % r; g = r; r = t; }
    const int64_t per_batch = threads / g;
    const int64_t share = (C + per_batch - 1) / per_batch;
    int64_t wide = (share + 15) / 16 * 16;
    if (wide > CONV_CL_MAX_UNIT) wide = CONV_CL_MAX_UNIT;
    if (wide > C) wide = C;
    if (wide > bc) bc = wide;
  }
  if (bc <= 0 || bc > C) bc = C;
  c->block_channels = bc;
  c->blocks_per_batch = bc > 0 ? (C + bc - 1) / bc : 0;
  if (!linattn_mul_i64(B, c->blocks_per_batch, &c->num_units)) return ERR("problem size overflows");
  c->num_tasks = (size_t)(c->num_units < ctx->num_threads ? c->num_units : ctx->num_threads);
  /* A call that touches little memory (one decode step of a sequence: microseconds) runs on
   * the caller alone: waking the pool would cost more than the work. No bits change, the
   * kernels' results do not depend on the split. */
  int64_t touched;
  if (c->num_tasks > 1 && linattn_add_i64(L, p->S, &touched) && linattn_mul_i64(touched, B, &touched) &&
      linattn_mul_i64(touched, C, &touched) && touched <= CONV_SERIAL_MAX_ELEMS)
    c->num_tasks = 1;
  c->task_bytes = linattn_round_up(c->kern->scratch_bytes(p, bc), 64);
  return LINATTN_SUCCESS;
}

static linattn_status conv_resolve(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                   CONV_TENSOR_PARAMS, conv_call* c) {
  linattn_status st;
  conv_dims s;
  memset(c, 0, sizeof *c);
  if (!ctx) return ERR("context: NULL (create one with linattn_context_create)");
  if ((st = conv_check_desc(d, &s))) return st;
  if ((st = conv_bind(c, &s, CONV_TENSOR_ARGS))) return st;
  if ((st = conv_check_aliasing(c))) return st;
  if ((st = conv_params_from(ctx, c, &s))) return st;
  return conv_plan(ctx, c);
}

static size_t conv_workspace_bytes(const conv_call* c) {
  size_t total;
  if (!linattn_mul_size(c->task_bytes, c->num_tasks, &total)) return SIZE_MAX;
  return total;
}

static void conv_task(void* arg, size_t task) {
  const conv_call* c = (const conv_call*)arg;
  const int64_t U = c->num_units, n = (int64_t)c->num_tasks;
  const int64_t begin = (int64_t)task * U / n, end = ((int64_t)task + 1) * U / n;
  /* kernels that need no scratch (decode) run with no workspace at all: no offset of NULL */
  char* scratch = c->task_bytes ? c->workspace + task * c->task_bytes : NULL;
  for (int64_t u = begin; u < end; u++) {
    const int64_t b = u / c->blocks_per_batch, blk = u % c->blocks_per_batch;
    const int64_t c0 = blk * c->block_channels;
    const int64_t nc = (c->p.C - c0) < c->block_channels ? (c->p.C - c0) : c->block_channels;
    c->kern->run(&c->p, b, c0, nc, scratch);
  }
}

static linattn_status conv_workspace_size_entered(linattn_context* context, const linattn_causal_conv_desc* desc,
                                                  CONV_TENSOR_PARAMS, size_t* workspace_size) {
  conv_call c;
  if (!workspace_size) return ERR("workspace_size: NULL output pointer");
  if (context && desc && desc->state_window != 0)
    return linattn_conv_window_workspace_size(context, desc, CONV_TENSOR_ARGS, workspace_size);
  linattn_status st = conv_resolve(context, desc, CONV_TENSOR_ARGS, &c);
  if (st) return st;
  return linattn_answer_workspace_size(conv_workspace_bytes(&c), workspace_size);
}

linattn_status linattn_causal_conv_with_state_workspace_size(linattn_context* context, const linattn_causal_conv_desc* desc,
                                                             CONV_TENSOR_PARAMS, size_t* workspace_size) {
  LINATTN_RETURN_ENTERED(context, conv_workspace_size_entered(context, desc, CONV_TENSOR_ARGS, workspace_size));
}

static linattn_status conv_compute_entered(linattn_context* context, const linattn_causal_conv_desc* desc,
                                           CONV_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  void* owned;
  if (context && desc && desc->state_window != 0)
    return linattn_conv_window_run(context, desc, CONV_TENSOR_ARGS, workspace, workspace_size);
  conv_call c;
  linattn_status st = conv_resolve(context, desc, CONV_TENSOR_ARGS, &c);
  if (st) return st;
  if ((st = linattn_take_workspace(context, workspace, workspace_size, conv_workspace_bytes(&c), c.p.L > 0,
                                   &c.workspace, &owned)))
    return st;
  if (c.p.L == 0) {
    /* Empty sequence: nothing to convolve and present_state = past_state (zeros without one).
     * Kernels never see L = 0: input/output data may then be NULL, and their row pointers
     * would offset a null pointer (undefined behaviour, found by fuzz/fuzz_causal_conv.c). */
    tview_copy_or_zero(c.has_present ? &c.present : NULL, c.has_past ? &c.past : NULL);
    return LINATTN_SUCCESS;
  }
  if (c.num_units > 0) linattn_run_parallel(context, conv_task, &c, c.num_tasks);
  linattn_ctx_free(context, owned);
  return LINATTN_SUCCESS;
}

linattn_status linattn_causal_conv_with_state(linattn_context* context, const linattn_causal_conv_desc* desc,
                                              CONV_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  LINATTN_RETURN_ENTERED(context, conv_compute_entered(context, desc, CONV_TENSOR_ARGS, workspace, workspace_size));
}

linattn_status linattn_causal_conv_infer_shapes(const linattn_causal_conv_desc* desc, const int64_t input_dims[3],
                                                const int64_t weight_dims[3], int64_t output_dims[3],
                                                int64_t state_dims[3]) {
  linattn_clear_error();
  conv_dims s;
  linattn_status st = conv_check_desc(desc, &s);
  if (st) return st;
  if (!input_dims || !weight_dims || !output_dims || !state_dims)
    return ERR("infer_shapes: NULL dims array (input_dims, weight_dims, output_dims, state_dims)");
  if ((st = check_dims_nonnegative("input", input_dims, 3, conv_input_doc(&s))) ||
      (st = check_dims_nonnegative("weight", weight_dims, 3, "(C, 1, k)")) ||
      (st = conv_check_input_weight(&s, input_dims, weight_dims)))
    return st;
  for (int i = 0; i < 3; i++) output_dims[i] = input_dims[i];
  conv_state_dims(&s, state_dims);
  return LINATTN_SUCCESS;
}
