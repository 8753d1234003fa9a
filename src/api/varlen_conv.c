/* Packed (varlen) CausalConvWithState: ONNX Runtime's VarlenCausalConvWithState and state pools.
 * Validation, the per-sequence problems, work split and threading; the convolution itself runs
 * on the context's channels-last conv kernels, one (sequence, channel block) unit at a time. */
#include <string.h>

#include "api/op_params.h"
#include "api/packed_batch.h"
#include "api/shape_rules.h"
#include "api/tensor_check.h"
#include "internal.h"

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

/* ORT's limit on state_update_capacity (its kMaxStateWindow). */
#define VARLEN_MAX_CAPACITY 8
/* Most tasks one call splits into (their unit ranges live in the call). */
#define VARLEN_MAX_TASKS 256
/* Token-weighted cost up to which a call runs on the calling thread only (elements touched). */
#define VARLEN_SERIAL_MAX_ELEMS ((int64_t)1 << 16)
#define VARLEN_MAX_UNIT ((int64_t)16384)
#define VARLEN_STREAM_MIN_BYTES ((int64_t)16 << 20)
/* Most sequences per unit of a packed decode (conv_tuning.decode_seqs is capped to it). */
#define VARLEN_MAX_SEQS 32

void linattn_varlen_conv_desc_init(linattn_varlen_conv_desc* desc) {
  if (!desc) return;
  memset(desc, 0, sizeof *desc);
  desc->activation = LINATTN_ACTIVATION_NONE;
  desc->dilation = 1;
}

typedef struct varlen_call {
  linattn_varlen_batch seqs;
  conv_params base; /* shared fields of every unit's problem */
  tview x, w, bias, s_in, y, s_out, update;
  bool has_bias, has_out, has_update, state_cl;
  int64_t B, C, K, S, N, capacity, total;
  const conv_kernel* kern;
  bool direct_strides; /* the reference kernel reads a (C, S) state next to token-major rows */
  int64_t block_channels, blocks, num_units;
  int64_t seqs_per_unit; /* > 1: a packed decode, units of that many sequences through run_seqs */
  int64_t seq_groups;    /* units per channel block: ceil(B / seqs_per_unit) */
  size_t num_tasks, kern_bytes, task_bytes;
  int64_t task_begin[VARLEN_MAX_TASKS + 1]; /* unit ranges of the tasks */
  char* workspace;
} varlen_call;

static linattn_status varlen_check_attrs(const linattn_varlen_conv_desc* d) {
  /* activation and dilation as the dense operator checks them */
  linattn_causal_conv_desc dense;
  linattn_causal_conv_desc_init(&dense);
  dense.activation = d->activation;
  dense.dilation = d->dilation;
  conv_dims dims;
  linattn_status st = conv_check_desc(&dense, &dims);
  if (st) return st;
  if (d->state_update_capacity < 0 || d->state_update_capacity > VARLEN_MAX_CAPACITY)
    return ERR("desc.state_update_capacity: must be in [0, %d], got %lld", VARLEN_MAX_CAPACITY,
               (long long)d->state_update_capacity);
  if (d->state_channels_last != 0 && d->state_channels_last != 1)
    return ERR("desc.state_channels_last: must be 0 or 1, got %d", (int)d->state_channels_last);
  return LINATTN_SUCCESS;
}

static linattn_status varlen_check_tensors(varlen_call* c, const linattn_tensor* input, const linattn_tensor* weight,
                                           const linattn_tensor* bias, const linattn_tensor* initial_state,
                                           const linattn_tensor* output, const linattn_tensor* final_state,
                                           const linattn_tensor* state_update, int64_t dil) {
  linattn_status st;
  if ((st = tview_init(&c->x, "input", input, 2, false, "(total_tokens, C)"))) return st;
  const linattn_dtype dt = c->x.dtype;
  c->total = c->x.dims[0];
  c->C = c->x.dims[1];
  if ((st = tview_init(&c->w, "weight", weight, 3, true, "(C, 1, k)"))) return st;
  if (c->w.dtype != dt) return ERR("weight: dtype %s differs from input's %s", linattn_dtype_name(c->w.dtype), linattn_dtype_name(dt));
  if (c->w.dims[0] != c->C || c->w.dims[1] != 1 || c->w.dims[2] < 1)
    return ERR("weight: expected shape (C, 1, k) with C = %lld and k >= 1, got (%lld, %lld, %lld)", (long long)c->C,
               (long long)c->w.dims[0], (long long)c->w.dims[1], (long long)c->w.dims[2]);
  c->K = c->w.dims[2];
  if (!linattn_mul_i64(c->K - 1, dil, &c->S)) return ERR("desc.dilation: (k-1)*dilation overflows");
  if (bias) {
    c->has_bias = true;
    if ((st = tview_init(&c->bias, "bias", bias, 1, true, "(C)"))) return st;
    if (c->bias.dtype != dt) return ERR("bias: dtype %s differs from input's %s", linattn_dtype_name(c->bias.dtype), linattn_dtype_name(dt));
    if (c->bias.dims[0] != c->C) return ERR("bias: expected shape (C) = (%lld), got (%lld)", (long long)c->C, (long long)c->bias.dims[0]);
  }
  const char* sdoc = c->state_cl ? "(N, (k-1)*dilation, C)" : "(N, C, (k-1)*dilation)";
  if ((st = tview_init(&c->s_in, "initial_state", initial_state, 3, true, sdoc))) return st;
  if (c->s_in.dtype != dt)
    return ERR("initial_state: dtype %s differs from input's %s", linattn_dtype_name(c->s_in.dtype), linattn_dtype_name(dt));
  c->N = c->s_in.dims[0];
  const int64_t sdims[3] = {c->N, c->state_cl ? c->S : c->C, c->state_cl ? c->C : c->S};
  if ((st = tview_expect_dims(&c->s_in, sdims, sdoc))) return st;
  if (!c->seqs.state_indices && c->N != c->B)
    return ERR("initial_state: expected %lld states (batch_size) without batch.state_indices, got %lld", (long long)c->B,
               (long long)c->N);
  if ((st = tview_init(&c->y, "output", output, 2, false, "(total_tokens, C)"))) return st;
  if (c->y.dtype != dt) return ERR("output: dtype %s differs from input's %s", linattn_dtype_name(c->y.dtype), linattn_dtype_name(dt));
  if ((st = tview_expect_dims(&c->y, c->x.dims, "(total_tokens, C)"))) return st;
  if (final_state) {
    c->has_out = true;
    if ((st = tview_init(&c->s_out, "final_state", final_state, 3, true, sdoc))) return st;
    if (c->s_out.dtype != dt)
      return ERR("final_state: dtype %s differs from input's %s", linattn_dtype_name(c->s_out.dtype), linattn_dtype_name(dt));
    if ((st = tview_expect_dims(&c->s_out, sdims, sdoc))) return st;
  }
  if (state_update) {
    c->has_update = true;
    if ((st = tview_init(&c->update, "state_update", state_update, 3, true, "(batch_size, state_update_capacity, C)")))
      return st;
    if (c->update.dtype != dt)
      return ERR("state_update: dtype %s differs from input's %s", linattn_dtype_name(c->update.dtype), linattn_dtype_name(dt));
    const int64_t udims[3] = {c->B, c->capacity, c->C};
    if ((st = tview_expect_dims(&c->update, udims, "(batch_size, state_update_capacity, C)"))) return st;
  }
  /* outputs must not overlap inputs or each other; final_state may be initial_state itself */
  const tview* inputs[] = {&c->x, &c->w, c->has_bias ? &c->bias : NULL, &c->s_in};
  const tview* outs[] = {&c->y, c->has_out ? &c->s_out : NULL, c->has_update ? &c->update : NULL};
  for (size_t o = 0; o < 3; o++) {
    if (!outs[o]) continue;
    for (size_t i = 0; i < 4; i++) {
      if (o == 1 && i == 3 && tview_same_buffer(&c->s_out, &c->s_in)) continue;
      if ((st = tview_check_no_overlap(outs[o], inputs[i]))) return st;
    }
    for (size_t p = o + 1; p < 3; p++)
      if ((st = tview_check_no_overlap(outs[o], outs[p]))) return st;
  }
  return LINATTN_SUCCESS;
}

/* Sequences per unit: one, or for a packed decode (no sequence longer than one token, a
 * channels-first state read in place or a channels-last one) up to conv_tuning.decode_seqs, so
 * that the kernel reads each weight group once for all of them (run_seqs), fewer where the
 * threads would otherwise go without a unit. */
static void varlen_plan_seqs(const linattn_context* ctx, varlen_call* c, int64_t threads) {
  int64_t per = ctx->tuning->conv.decode_seqs;
  if (per > VARLEN_MAX_SEQS) per = VARLEN_MAX_SEQS;
  if (c->direct_strides || c->total > c->B) per = 1;
  for (int64_t i = 0; per > 1 && i < c->B; i++)
    if (c->seqs.cu_seqlens[i + 1] - c->seqs.cu_seqlens[i] > 1) per = 1;
  if (per < 1) per = 1;
  while (per > 1 && ((c->B + per - 1) / per) * c->blocks < threads) per = (per + 1) / 2;
  c->seqs_per_unit = per;
  c->seq_groups = (c->B + per - 1) / per;
}

/* Channel blocks and a token-weighted static split of the (sequence group, block) units. */
static void varlen_plan(linattn_context* ctx, varlen_call* c) {
  const int64_t threads = ctx->num_threads > 0 ? ctx->num_threads : 1;
  int64_t bc = c->kern->block_channels;
  if (c->kern->cl_whole_rows && bc > 0 && bc < c->C && c->total > c->B) {
    /* prefill: units as wide as the threads allow (long contiguous row streams), as the dense
     * channels-last operator does */
    const int64_t per_seq = c->B >= threads ? 1 : (threads + c->B - 1) / c->B;
    int64_t wide = ((c->C + per_seq - 1) / per_seq + 15) / 16 * 16;
    if (wide > VARLEN_MAX_UNIT) wide = VARLEN_MAX_UNIT;
    if (wide > bc) bc = wide;
  }
  if (bc <= 0 || bc > c->C) bc = c->C;
  c->block_channels = bc;
  c->blocks = bc > 0 ? (c->C + bc - 1) / bc : 0;
  varlen_plan_seqs(ctx, c, threads);
  c->num_units = c->seq_groups * c->blocks; /* B <= total + ... bounded: both come from int32 offsets and C */
  int64_t n = c->num_units < threads ? c->num_units : threads;
  if (n > VARLEN_MAX_TASKS) n = VARLEN_MAX_TASKS;
  /* a unit costs its tokens plus its state, per channel */
  const double total_cost = ((double)c->total + (double)c->B * (double)(c->S + 1)) * (double)c->C;
  if (n > 1 && total_cost <= (double)VARLEN_SERIAL_MAX_ELEMS) n = 1;
  if (n < 1) n = 1;
  c->num_tasks = (size_t)n;
  c->task_begin[0] = 0;
  double acc = 0.0;
  int64_t t = 1;
  for (int64_t u = 0; u < c->num_units && t < n; u++) {
    const int64_t g = u / c->blocks, blk = u % c->blocks;
    const int64_t nc = (c->C - blk * bc) < bc ? (c->C - blk * bc) : bc;
    const int64_t i0 = g * c->seqs_per_unit, i1 = i0 + c->seqs_per_unit < c->B ? i0 + c->seqs_per_unit : c->B;
    acc += (double)(c->seqs.cu_seqlens[i1] - c->seqs.cu_seqlens[i0] + (i1 - i0) * (c->S + 1)) * (double)nc;
    while (t < n && acc >= total_cost * (double)t / (double)n) c->task_begin[t++] = u + 1;
  }
  while (t <= n) c->task_begin[t++] = c->num_units;
}

static linattn_status varlen_resolve(linattn_context* ctx, const linattn_varlen_conv_desc* d,
                                     const linattn_varlen_batch* batch, VARLEN_CONV_TENSOR_PARAMS, varlen_call* c) {
  linattn_status st;
  memset(c, 0, sizeof *c);
  if (!ctx) return ERR("context: NULL (create one with linattn_context_create)");
  if (!d) return ERR("desc: NULL");
  if (!batch) return ERR("batch: NULL");
  if (kernel_delta || previous_mask)
    return linattn_set_error(LINATTN_ERROR_UNSUPPORTED,
                             "%s: the dynamic grouped two-tap mode (kernel_delta, previous_mask) is CUDA-only in ONNX "
                             "Runtime's VarlenCausalConvWithState; CPU kernels reject it",
                             kernel_delta ? "kernel_delta" : "previous_mask");
  if ((st = varlen_check_attrs(d))) return st;
  if ((st = packed_check_batch_size(batch))) return st;
  c->seqs = *batch;
  c->B = batch->batch_size;
  c->capacity = d->state_update_capacity;
  c->state_cl = d->state_channels_last != 0;
  const int64_t dil = d->dilation == 0 ? 1 : d->dilation;
  if ((st = varlen_check_tensors(c, input, weight, bias, initial_state, output, final_state, state_update, dil))) return st;
  if (c->total > INT32_MAX) return ERR("input: total_tokens = %lld exceeds the int32 range of cu_seqlens", (long long)c->total);
  if ((st = packed_check_batch(ctx, batch, c->total, "input.dims[0]", c->N, "initial_state", c->capacity)))
    return st;

  conv_params* p = &c->base;
  p->dtype = c->x.dtype;
  p->activation = d->activation;
  p->channels_last = true;
  p->B = 1;
  p->K = c->K;
  p->dilation = dil;
  p->S = c->S;
  p->x_st = c->x.strides[0];
  p->x_sc = 1;
  p->y_st = c->y.strides[0];
  p->y_sc = 1;
  int64_t out_bytes;
  p->stream_output = !linattn_mul_i64(c->y.numel, (int64_t)linattn_dtype_size(p->dtype), &out_bytes) ||
                     out_bytes >= VARLEN_STREAM_MIN_BYTES;
  p->decode_vbmi = ctx->tuning->conv.decode_vbmi && linattn_cpu_has_avx512vbmi();
  p->silu_table = ctx->tuning->conv.silu_table != 0;
  c->kern = ctx->kernels->conv;
  c->direct_strides = c->kern == &linattn_conv_reference;
  varlen_plan(ctx, c);
  p->C = c->block_channels;
  c->kern_bytes = linattn_round_up(c->kern->scratch_bytes(p, c->block_channels), 64);
  /* (S, block) tile of a channels-first state, for the channels-last kernels */
  size_t tile = 0;
  if (!c->state_cl && !c->direct_strides &&
      (!linattn_mul_size((size_t)c->S, (size_t)c->block_channels, &tile) ||
       !linattn_mul_size(tile, linattn_dtype_size(p->dtype), &tile)))
    return ERR("problem size overflows");
  if (!linattn_add_size(c->kern_bytes, linattn_round_up(tile, 64), &c->task_bytes)) return ERR("problem size overflows");
  return LINATTN_SUCCESS;
}

/* Sequence i's problem on channels [c0, c0 + nc): its capture, and its pass-through when it is
 * empty (then false: nothing for a kernel), else the kernel's problem in *pp (through the tile
 * in scratch, set in *tile_out, for a channels-first state of a multi-token sequence). */
static inline __attribute__((always_inline)) bool varlen_problem(const varlen_call* c, int64_t i, int64_t c0,
                                                                 int64_t nc, char* scratch, conv_params* pp,
                                                                 char** tile_out) {
  const size_t es = linattn_dtype_size(c->base.dtype);
  const int64_t t0 = c->seqs.cu_seqlens[i], L = c->seqs.cu_seqlens[i + 1] - t0;
  const int64_t slot = c->seqs.state_indices ? c->seqs.state_indices[i] : i;
  const int64_t slot_elems = c->S * c->C;
  varlen_seq q = {
      .dtype = c->base.dtype, .C = c->C, .S = c->S, .L = L, .state_channels_last = c->state_cl,
      .x = L > 0 ? c->x.data + t0 * c->x.strides[0] * (int64_t)es : NULL, .x_token_stride = c->x.strides[0],
      /* an empty state (S = 0) may have a NULL buffer: no offset on NULL (undefined behaviour) */
      .state_in = c->s_in.data ? c->s_in.data + slot * slot_elems * (int64_t)es : NULL,
      .state_out = c->has_out && c->s_out.data ? c->s_out.data + slot * slot_elems * (int64_t)es : NULL,
      .has_initial = !c->seqs.has_initial_state || c->seqs.has_initial_state[i] != 0,
  };
  if (c->has_update && c->capacity > 0) {
    int64_t n = c->seqs.capture_count[i];
    if (n < 0) n = 0;
    if (n > c->capacity) n = c->capacity;
    if (n > L) n = L;
    q.update = c->update.data + i * c->capacity * c->C * (int64_t)es;
    q.capacity = c->capacity;
    q.captured = n;
    linattn_varlen_capture(&q, c0, nc);
  }
  if (L == 0) {
    linattn_varlen_pass_state(&q, c0, nc);
    return false;
  }
  conv_params p = c->base;
  p.C = nc;
  p.L = L;
  p.x = (const char*)q.x + c0 * (int64_t)es;
  p.y = c->y.data + (t0 * c->y.strides[0] + c0) * (int64_t)es;
  p.w = c->w.data + c0 * c->K * (int64_t)es;
  p.bias = c->has_bias ? c->bias.data + c0 * (int64_t)es : NULL;
  const char* in = q.has_initial ? (const char*)q.state_in : NULL;
  char* out = (char*)q.state_out;
  char* tile = NULL;
  if (c->state_cl) { /* (S, C) slot: the kernels' own channels-last state */
    p.past = in ? in + c0 * (int64_t)es : NULL;
    p.present = out ? out + c0 * (int64_t)es : NULL;
    p.s_st = c->C;
    p.s_sc = 1;
  } else if (c->direct_strides || L == 1) {
    /* (C, S) slot read in place: the reference kernel takes any strides, and one token is a
     * channels-first (1, C, 1) problem for every family */
    p.channels_last = c->direct_strides;
    if (!c->direct_strides) p.x_st = p.y_st = 1;
    p.past = in ? in + c0 * c->S * (int64_t)es : NULL;
    p.present = out ? out + c0 * c->S * (int64_t)es : NULL;
    p.s_sc = c->S;
    p.s_st = 1;
  } else { /* (C, S) slot through an (S, nc) channels-last tile */
    tile = scratch + c->kern_bytes;
    if (in && c->S > 0) c->kern->transpose(tile, in + c0 * c->S * (int64_t)es, nc, c->S, c->S, nc, es);
    p.past = in ? tile : NULL;
    /* L >= S: the new state is the last S input rows, which varlen_untile moves from x */
    p.present = out && L < c->S ? tile : NULL;
    p.s_st = nc;
    p.s_sc = 1;
  }
  p.s_sb = 0;
  *pp = p;
  *tile_out = tile;
  return true;
}

/* The channels-first state of a sequence that went through a tile: from the tile the kernel
 * wrote, or (p->present NULL) from the sequence's last S input rows. */
static void varlen_untile(const varlen_call* c, const conv_params* p, int64_t i, int64_t c0, int64_t nc,
                          const char* tile) {
  const size_t es = linattn_dtype_size(c->base.dtype);
  const int64_t slot = c->seqs.state_indices ? c->seqs.state_indices[i] : i;
  if (!tile || !c->has_out || !c->s_out.data || c->S <= 0) return;
  char* dst = c->s_out.data + (slot * c->S * c->C + c0 * c->S) * (int64_t)es;
  if (p->present) c->kern->transpose(dst, tile, c->S, nc, nc, c->S, es);
  else c->kern->transpose(dst, (const char*)p->x + (p->L - c->S) * p->x_st * (int64_t)es, c->S, nc, p->x_st, c->S, es);
}

/* Channels whose weights a task's scratch holds from its last channels-last prefill run
 * (conv_params.weights_ready), nc = 0: none. */
typedef struct varlen_prepared {
  int64_t c0, nc;
} varlen_prepared;

/* Sequence i on channels [c0, c0 + nc) through run (varlen_problem inlined: through an
 * out-of-line call the one-sequence decode measured slower, docs/tuning.md, conv.decode_seqs). */
static void varlen_unit(const varlen_call* c, int64_t i, int64_t c0, int64_t nc, char* scratch, varlen_prepared* prep) {
  conv_params p;
  char* tile;
  if (!varlen_problem(c, i, c0, nc, scratch, &p, &tile)) return;
  const bool cl_prefill = p.channels_last && p.L > 1 && !c->direct_strides;
  p.weights_ready = cl_prefill && prep->nc == nc && prep->c0 == c0;
  c->kern->run(&p, 0, 0, nc, scratch);
  *prep = cl_prefill ? (varlen_prepared){c0, nc} : (varlen_prepared){0, 0};
  varlen_untile(c, &p, i, c0, nc, tile);
}

/* Sequences [i0, i1) of a packed decode on channels [c0, c0 + nc): their problems together
 * through run_seqs (a sequence through a tile, which a decode plan never has, alone). */
static void varlen_unit_seqs(const varlen_call* c, int64_t i0, int64_t i1, int64_t c0, int64_t nc, char* scratch) {
  conv_params ps[VARLEN_MAX_SEQS];
  int64_t n = 0;
  for (int64_t i = i0; i < i1; i++) {
    char* tile;
    if (!varlen_problem(c, i, c0, nc, scratch, &ps[n], &tile)) continue;
    if (!tile) {
      n++;
      continue;
    }
    c->kern->run(&ps[n], 0, 0, nc, scratch);
    varlen_untile(c, &ps[n], i, c0, nc, tile);
  }
  if (n == 1) c->kern->run(&ps[0], 0, 0, nc, scratch);
  else if (n > 1) c->kern->run_seqs(ps, n, nc, scratch);
}

static void varlen_task(void* arg, size_t task) {
  const varlen_call* c = (const varlen_call*)arg;
  char* scratch = c->task_bytes ? c->workspace + task * c->task_bytes : NULL;
  varlen_prepared prep = {0, 0};
  for (int64_t u = c->task_begin[task]; u < c->task_begin[task + 1]; u++) {
    const int64_t g = u / c->blocks, c0 = (u % c->blocks) * c->block_channels;
    const int64_t nc = (c->C - c0) < c->block_channels ? (c->C - c0) : c->block_channels;
    if (c->seqs_per_unit == 1) {
      varlen_unit(c, g, c0, nc, scratch, &prep);
      continue;
    }
    const int64_t i0 = g * c->seqs_per_unit, i1 = i0 + c->seqs_per_unit < c->B ? i0 + c->seqs_per_unit : c->B;
    varlen_unit_seqs(c, i0, i1, c0, nc, scratch);
  }
}

static size_t varlen_workspace_bytes(const varlen_call* c) {
  size_t total;
  if (!linattn_mul_size(c->task_bytes, c->num_tasks, &total)) return SIZE_MAX;
  return total;
}

static linattn_status linattn_varlen_causal_conv_with_state_workspace_size_entered(
    linattn_context* context, const linattn_varlen_conv_desc* desc, const linattn_varlen_batch* batch,
    VARLEN_CONV_TENSOR_PARAMS, size_t* workspace_size) {
  linattn_clear_error();
  if (!workspace_size) return ERR("workspace_size: NULL output pointer");
  varlen_call c;
  linattn_status st = varlen_resolve(context, desc, batch, VARLEN_CONV_TENSOR_ARGS, &c);
  if (st) return st;
  return linattn_answer_workspace_size(varlen_workspace_bytes(&c), workspace_size);
}

linattn_status linattn_varlen_causal_conv_with_state_workspace_size(
    linattn_context* context, const linattn_varlen_conv_desc* desc, const linattn_varlen_batch* batch,
    VARLEN_CONV_TENSOR_PARAMS, size_t* workspace_size) {
  LINATTN_RETURN_ENTERED(context, linattn_varlen_causal_conv_with_state_workspace_size_entered(context, desc, batch,
                         VARLEN_CONV_TENSOR_ARGS, workspace_size));
}

static linattn_status linattn_varlen_causal_conv_with_state_entered(
    linattn_context* context, const linattn_varlen_conv_desc* desc, const linattn_varlen_batch* batch,
    VARLEN_CONV_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  linattn_clear_error();
  varlen_call c;
  linattn_status st = varlen_resolve(context, desc, batch, VARLEN_CONV_TENSOR_ARGS, &c);
  if (st) return st;
  void* owned;
  if ((st = linattn_take_workspace(context, workspace, workspace_size, varlen_workspace_bytes(&c), c.num_units > 0,
                                   &c.workspace, &owned)))
    return st;
  if (c.num_units > 0) linattn_run_parallel(context, varlen_task, &c, c.num_tasks);
  linattn_ctx_free(context, owned);
  return LINATTN_SUCCESS;
}

linattn_status linattn_varlen_causal_conv_with_state(
    linattn_context* context, const linattn_varlen_conv_desc* desc, const linattn_varlen_batch* batch,
    VARLEN_CONV_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  LINATTN_RETURN_ENTERED(context, linattn_varlen_causal_conv_with_state_entered(
                                      context, desc, batch, VARLEN_CONV_TENSOR_ARGS, workspace, workspace_size));
}
