/* state_window (ONNX Runtime contrib) for LinearAttention and CausalConvWithState: the states
 * gain a leading axis of W right-aligned slots, slot j holding the state after token T - W + j.
 * The call runs the operator itself (window 0) on the token ranges that end at the window's
 * tokens, chaining the state from one range to the next:
 *   tokens [0, T - W + first + 1) from past slot W - 1, then one token per slot up to slot W - 1,
 * with first = max(0, W - T); slots below first are zeros. LinearAttention chains an fp32 state
 * (each slot is rounded to S once, so slot W - 1 has the bits of the W = 0 call); the conv state
 * is raw samples and chains through the present slots themselves. Everything is validated (the
 * whole token range, through the operator's workspace query) before anything is written. */
#include <string.h>

#include "api/state_window.h"
#include "api/tensor_check.h"
#include "convert.h"

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)
#define WINDOW_MAX 8

/* A descriptor of tokens [t0, t0 + n) of t along axis `axis` (explicit strides). */
static linattn_tensor token_slice(const linattn_tensor* t, int axis, int64_t t0, int64_t n) {
  linattn_tensor s = *t;
  bool packed = true;
  for (int i = 0; i < t->rank; i++) packed &= t->strides[i] == 0;
  if (packed) {
    int64_t st = 1;
    for (int i = t->rank - 1; i >= 0; i--) {
      s.strides[i] = st;
      st *= t->dims[i] > 0 ? t->dims[i] : 1;
    }
  }
  if (n > 0 && t->data) s.data = (char*)t->data + t0 * s.strides[axis] * (int64_t)linattn_dtype_size(t->dtype);
  s.dims[axis] = n;
  return s;
}

static const linattn_tensor* opt_slice(const linattn_tensor* t, int axis, int64_t t0, int64_t n, linattn_tensor* buf) {
  if (!t) return NULL;
  *buf = token_slice(t, axis, t0, n);
  return buf;
}

/* Slot j of a packed windowed state of slot_elems elements per slot, as a packed descriptor. */
static linattn_tensor state_slot(const tview* v, int64_t j, int32_t rank, const int64_t* dims, int64_t slot_elems) {
  linattn_tensor s = linattn_make_tensor(v->data ? v->data + j * slot_elems * (int64_t)linattn_dtype_size(v->dtype) : NULL,
                                         v->dtype, rank, dims);
  return s;
}

/* *W = window, checked */
static linattn_status window_take(int64_t window, int64_t* W) {
  if (window < 0 || window > WINDOW_MAX)
    return ERR("desc.state_window: must be in [0, %d], got %lld", WINDOW_MAX, (long long)window);
  *W = window;
  return LINATTN_SUCCESS;
}

/* Windowed state tensors: rank-packed, the expected dims, one dtype, present not overlapping any
 * input but past (same buffer allowed). */
static linattn_status window_states(const linattn_tensor* past_state, const linattn_tensor* present_state, int32_t rank,
                                    const int64_t* dims, const char* doc, const linattn_tensor* const* inputs, size_t n_in,
                                    tview* past, tview* present) {
  linattn_status st;
  memset(past, 0, sizeof *past);
  memset(present, 0, sizeof *present);
  if (past_state) {
    if ((st = tview_init(past, "past_state", past_state, rank, true, doc))) return st;
    if ((st = tview_expect_dims(past, dims, doc))) return st;
  }
  if (!present_state) return LINATTN_SUCCESS;
  if ((st = tview_init(present, "present_state", present_state, rank, true, doc))) return st;
  if ((st = tview_expect_dims(present, dims, doc))) return st;
  if (past_state && present->dtype != past->dtype)
    return ERR("present_state: dtype %s differs from past_state's %s", linattn_dtype_name(present->dtype),
               linattn_dtype_name(past->dtype));
  for (size_t i = 0; i < n_in; i++) {
    if (!inputs[i]) continue;
    tview v;
    if ((st = tview_init(&v, "input", inputs[i], inputs[i]->rank, false, "(any)"))) return LINATTN_SUCCESS; /* reported by the operator */
    if ((st = tview_check_no_overlap(present, &v))) return st;
  }
  if (past_state && !tview_same_buffer(present, past))
    if ((st = tview_check_no_overlap(present, past))) return st;
  return LINATTN_SUCCESS;
}

/* ------------------------------------------------------------------ LinearAttention */

typedef struct la_window {
  linattn_linear_attention_desc d0; /* the call's attributes with window 0 */
  int64_t W, B, T, slot_elems;
  int64_t sdims[4];       /* one slot: (B, H_kv, d_k, d_v) */
  tview past, present;
  size_t state_bytes, inner_bytes;
} la_window;

static linattn_status la_window_resolve(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                        LA_TENSOR_PARAMS, la_window* w) {
  linattn_status st;
  memset(w, 0, sizeof *w);
  if ((st = window_take(d->state_window, &w->W))) return st;
  w->d0 = *d;
  w->d0.state_window = 0;
  if (!query || !key || !value || query->rank != 3 || key->rank != 3 || value->rank != 3) {
    /* the operator's own messages */
    st = linattn_linear_attention_workspace_size(ctx, &w->d0, query, key, value, NULL, decay, beta, output, NULL,
                                                 &w->inner_bytes);
    return st ? st : ERR("query, key, value: expected rank 3");
  }
  int64_t odims[3];
  if ((st = linattn_linear_attention_infer_shapes(&w->d0, query->dims, key->dims, value->dims, odims, w->sdims)))
    return st;
  w->B = w->sdims[0];
  w->T = query->dims[1];
  int64_t dims[4] = {w->W * w->B, w->sdims[1], w->sdims[2], w->sdims[3]};
  if (!linattn_mul_i64(w->sdims[0] * w->sdims[1], w->sdims[2] * w->sdims[3], &w->slot_elems) ||
      !linattn_mul_i64(w->W, w->B, &dims[0]))
    return ERR("past_state: size overflows");
  /* validates the whole token range; then the workspace of the ranges that will run (the first
   * one and single tokens), each on the window's fp32 state in place */
  size_t whole_bytes;
  if ((st = linattn_linear_attention_workspace_size(ctx, &w->d0, query, key, value, NULL, decay, beta, output, NULL,
                                                    &whole_bytes)))
    return st;
  const linattn_tensor* inputs[] = {query, key, value, decay, beta, output};
  if ((st = window_states(past_state, present_state, 4, dims, "(state_window * B, kv_num_heads, d_k, d_v)", inputs, 6,
                          &w->past, &w->present)))
    return st;
  const int64_t first = w->W > w->T ? w->W - w->T : 0, first_len = w->T - w->W + first + 1;
  for (int r = 0; r < 2 && w->T > 0; r++) {
    const int64_t n = r ? 1 : first_len;
    linattn_tensor sq = token_slice(query, 1, 0, n), sk = token_slice(key, 1, 0, n), sv = token_slice(value, 1, 0, n);
    linattn_tensor so = token_slice(output, 1, 0, n), sd, sb;
    size_t bytes = 0;
    if ((st = linattn_la_in_place_workspace_size(ctx, &w->d0, &sq, &sk, &sv, opt_slice(decay, 1, 0, n, &sd),
                                                 opt_slice(beta, 1, 0, n, &sb), &so, &bytes)))
      return st;
    if (bytes > w->inner_bytes) w->inner_bytes = bytes;
  }
  w->state_bytes = linattn_round_up((size_t)w->slot_elems * sizeof(float), 64);
  return LINATTN_SUCCESS;
}

linattn_status linattn_la_window_workspace_size(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                                LA_TENSOR_PARAMS, size_t* bytes) {
  la_window w;
  const linattn_status st = la_window_resolve(ctx, d, LA_TENSOR_ARGS, &w);
  return st ? st : linattn_answer_workspace_size(w.state_bytes + w.inner_bytes, bytes);
}

static void la_slot_store(const la_window* w, const float* state, int64_t j) {
  if (w->slot_elems == 0) return; /* an empty state may have a NULL buffer: no offsets, no memset on it */
  void* dst = w->present.data + j * w->slot_elems * (int64_t)linattn_dtype_size(w->present.dtype);
  if (!state) {
    memset(dst, 0, (size_t)w->slot_elems * linattn_dtype_size(w->present.dtype));
    return;
  }
  for (int64_t e = 0; e < w->slot_elems; e++) linattn_store_f32(dst, e, w->present.dtype, state[e]);
}

linattn_status linattn_la_window_run(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                     LA_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  la_window w;
  linattn_status st = la_window_resolve(ctx, d, LA_TENSOR_ARGS, &w);
  if (st) return st;
  void* owned;
  char* ws = NULL;
  if ((st = linattn_take_workspace(ctx, workspace, workspace_size, w.state_bytes + w.inner_bytes, true, &ws, &owned)))
    return st;
  float* state = (float*)ws;
  /* the fp32 state entering the call: past slot W - 1 (read before any slot is written) */
  if (w.slot_elems == 0) { /* B, d_k or d_v 0: the buffers may be NULL */
  } else if (past_state) {
    const char* src = w.past.data + (w.W - 1) * w.slot_elems * (int64_t)linattn_dtype_size(w.past.dtype);
    for (int64_t e = 0; e < w.slot_elems; e++) state[e] = linattn_load_f32(src, e, w.past.dtype);
  } else {
    memset(state, 0, (size_t)w.slot_elems * sizeof(float));
  }
  const linattn_tensor fstate = linattn_make_tensor(state, LINATTN_DTYPE_F32, 4, w.sdims);
  char* inner_ws = ws ? ws + w.state_bytes : NULL; /* no workspace at all for an empty problem */
  const int64_t first = w.W > w.T ? w.W - w.T : 0;
  int64_t t = 0;
  for (int64_t j = first; j < w.W && w.T > 0 && !st; j++) {
    const int64_t end = w.T - w.W + j + 1;
    linattn_tensor sq = token_slice(query, 1, t, end - t), sk = token_slice(key, 1, t, end - t);
    linattn_tensor sv = token_slice(value, 1, t, end - t), so = token_slice(output, 1, t, end - t), sd, sb;
    st = linattn_linear_attention(ctx, &w.d0, &sq, &sk, &sv, &fstate, opt_slice(decay, 1, t, end - t, &sd),
                                  opt_slice(beta, 1, t, end - t, &sb), &so, &fstate, inner_ws, w.inner_bytes);
    if (!st && present_state) la_slot_store(&w, state, j);
    t = end;
  }
  if (!st && present_state) {
    for (int64_t j = 0; j < first && j < w.W - 1; j++) la_slot_store(&w, NULL, j);
    if (w.T == 0) la_slot_store(&w, past_state ? state : NULL, w.W - 1);
  }
  linattn_ctx_free(ctx, owned);
  return st;
}

/* ------------------------------------------------------------------ CausalConvWithState */

typedef struct conv_window {
  linattn_causal_conv_desc d0;
  int64_t W, B, L, slot_elems;
  int64_t sdims[3]; /* one slot */
  int axis;         /* token axis of input / output */
  tview past, present;
  size_t inner_bytes;
} conv_window;

static linattn_status conv_window_resolve(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                          CONV_TENSOR_PARAMS, conv_window* w) {
  const bool cl = d->channels_last == 1;
  linattn_status st;
  memset(w, 0, sizeof *w);
  if ((st = window_take(d->state_window, &w->W))) return st;
  w->d0 = *d;
  w->d0.state_window = 0;
  /* the operator validates input, weight, bias and output (and the attributes) */
  if ((st = linattn_causal_conv_with_state_workspace_size(ctx, &w->d0, input, weight, bias, NULL, output, NULL,
                                                          &w->inner_bytes)))
    return st;
  w->axis = cl ? 1 : 2;
  w->B = input->dims[0];
  w->L = input->dims[w->axis];
  const int64_t C = cl ? input->dims[2] : input->dims[1], K = weight->dims[2];
  const int64_t S = (K - 1) * (d->dilation == 0 ? 1 : d->dilation); /* checked by the operator */
  w->sdims[0] = w->B;
  w->sdims[1] = cl ? S : C;
  w->sdims[2] = cl ? C : S;
  if (!linattn_mul_i64(w->B * C, S, &w->slot_elems)) return ERR("past_state: size overflows");
  const int64_t dims[4] = {w->W, w->sdims[0], w->sdims[1], w->sdims[2]};
  const linattn_tensor* inputs[] = {input, weight, bias, output};
  if ((st = window_states(past_state, present_state, 4, dims,
                          cl ? "(state_window, B, (k-1)*dilation, C)" : "(state_window, B, C, (k-1)*dilation)", inputs, 4,
                          &w->past, &w->present)))
    return st;
  /* the workspace of the ranges as linattn_conv_window_run calls them, states included (the
   * kernels' scratch depends on them): the first range from past slot W - 1 (or none), then
   * single tokens from one present slot to the next; without present_state one range */
  const int64_t first = w->W > w->L ? w->W - w->L : 0, first_len = w->L - w->W + first + 1;
  linattn_tensor last_past = past_state ? state_slot(&w->past, w->W - 1, 3, w->sdims, w->slot_elems) : (linattn_tensor){0};
  linattn_tensor slot_a = {0}, slot_b = {0};
  if (present_state && w->L > 0) {
    slot_a = state_slot(&w->present, first, 3, w->sdims, w->slot_elems);
    slot_b = state_slot(&w->present, first + 1 < w->W ? first + 1 : first, 3, w->sdims, w->slot_elems);
  }
  for (int r = 0; r < 2 && w->L > 0; r++) {
    if (r == 1 && (!present_state || first + 1 >= w->W)) break;
    const int64_t n = r ? 1 : (present_state ? first_len : w->L);
    linattn_tensor sx = token_slice(input, w->axis, 0, n), so = token_slice(output, w->axis, 0, n);
    const linattn_tensor* in_state = r ? &slot_a : past_state ? &last_past : NULL;
    const linattn_tensor* out_state = !present_state ? NULL : r ? &slot_b : &slot_a;
    size_t bytes = 0;
    if ((st = linattn_causal_conv_with_state_workspace_size(ctx, &w->d0, &sx, weight, bias, in_state, &so, out_state, &bytes)))
      return st;
    if (bytes > w->inner_bytes) w->inner_bytes = bytes;
  }
  return LINATTN_SUCCESS;
}

linattn_status linattn_conv_window_workspace_size(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                                  CONV_TENSOR_PARAMS, size_t* bytes) {
  conv_window w;
  const linattn_status st = conv_window_resolve(ctx, d, CONV_TENSOR_ARGS, &w);
  return st ? st : linattn_answer_workspace_size(w.inner_bytes, bytes);
}

linattn_status linattn_conv_window_run(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                       CONV_TENSOR_PARAMS, void* workspace, size_t workspace_size) {
  void* owned;
  char* ws = NULL;
  conv_window w;
  linattn_status st = conv_window_resolve(ctx, d, CONV_TENSOR_ARGS, &w);
  if (st) return st;
  if ((st = linattn_take_workspace(ctx, workspace, workspace_size, w.inner_bytes, true, &ws, &owned))) return st;
  const size_t es = linattn_dtype_size(input->dtype);
  linattn_tensor last_past = past_state ? state_slot(&w.past, w.W - 1, 3, w.sdims, w.slot_elems) : (linattn_tensor){0};
  const int64_t first = w.W > w.L ? w.W - w.L : 0;
  if (!present_state) { /* outputs only: one range */
    st = linattn_causal_conv_with_state(ctx, &w.d0, input, weight, bias, past_state ? &last_past : NULL, output, NULL,
                                        ws, w.inner_bytes);
  } else {
    int64_t t = 0;
    for (int64_t j = first; j < w.W && w.L > 0 && !st; j++) {
      const int64_t end = w.L - w.W + j + 1;
      linattn_tensor sx = token_slice(input, w.axis, t, end - t), so = token_slice(output, w.axis, t, end - t);
      linattn_tensor prev = j == first ? last_past : state_slot(&w.present, j - 1, 3, w.sdims, w.slot_elems);
      linattn_tensor slot = state_slot(&w.present, j, 3, w.sdims, w.slot_elems);
      st = linattn_causal_conv_with_state(ctx, &w.d0, &sx, weight, bias, j == first && !past_state ? NULL : &prev, &so,
                                          &slot, ws, w.inner_bytes);
      t = end;
    }
    /* empty slots (S = 0) may have a NULL buffer: no offsets on it */
    if (!st && w.L == 0 && w.slot_elems > 0) { /* slot W - 1 is the past state */
      char* dst = w.present.data + (w.W - 1) * w.slot_elems * (int64_t)es;
      if (!past_state) memset(dst, 0, (size_t)w.slot_elems * es);
      else if (dst != (char*)last_past.data) memcpy(dst, last_past.data, (size_t)w.slot_elems * es);
    }
    if (!st && w.slot_elems > 0)
      for (int64_t j = 0; j < first && j < w.W - 1; j++)
        memset(w.present.data + j * w.slot_elems * (int64_t)es, 0, (size_t)w.slot_elems * es);
  }
  linattn_ctx_free(ctx, owned);
  return st;
}
