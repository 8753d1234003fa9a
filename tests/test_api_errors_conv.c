/*
 * Table-driven bad-input tests for CausalConvWithState (LinearAttention: test_api_errors.c).
 * Each row starts from a valid call, breaks one thing, and expects the status, a
 * linattn_last_error() message naming the argument (case-insensitive; "a|b" accepts either),
 * and every buffer the call could see byte-for-byte untouched; each row also goes through
 * linattn_causal_conv_with_state_workspace_size. Valid edge calls must succeed.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errcheck.h"
#include "testkit.h"

static linattn_context* g_ctx;

/* ------------------------------------------------------------------ CausalConvWithState */

enum { CX, CW, CB, CPAST, COUT, CPRESENT };

typedef struct conv_call {
  linattn_context* ctx;
  linattn_causal_conv_desc desc;
  const linattn_causal_conv_desc* pdesc;
  linattn_tensor t[6];
  const linattn_tensor* p[6];
  void* ws;
  size_t ws_size;
} conv_call;

typedef struct conv_shape {
  int64_t B, C, L, K, dilation;
  bool bias, past, present, channels_last;
  linattn_dtype dt;
} conv_shape;

static const conv_shape conv_base = {2, 5, 6, 4, 1, true, true, true, false, LINATTN_DTYPE_F32};

static void build_conv(conv_call* c, conv_shape s) {
  memset(c, 0, sizeof *c);
  c->ctx = g_ctx;
  linattn_causal_conv_desc_init(&c->desc);
  c->desc.activation = LINATTN_ACTIVATION_SILU;
  c->desc.dilation = s.dilation;
  c->desc.channels_last = s.channels_last;
  c->pdesc = &c->desc;
  int64_t S = (s.K - 1) * (s.dilation > 0 ? s.dilation : 1);
  if (s.channels_last) {
    c->t[CX] = ec_tensor3(0, s.dt, s.B, s.L, s.C);
    c->t[COUT] = ec_tensor3(4, s.dt, s.B, s.L, s.C);
    c->t[CPAST] = ec_tensor3(3, s.dt, s.B, S, s.C);
    c->t[CPRESENT] = ec_tensor3(5, s.dt, s.B, S, s.C);
  } else {
    c->t[CX] = ec_tensor3(0, s.dt, s.B, s.C, s.L);
    c->t[COUT] = ec_tensor3(4, s.dt, s.B, s.C, s.L);
    c->t[CPAST] = ec_tensor3(3, s.dt, s.B, s.C, S);
    c->t[CPRESENT] = ec_tensor3(5, s.dt, s.B, s.C, S);
  }
  c->t[CW] = ec_tensor3(1, s.dt, s.C, 1, s.K);
  int64_t bd[1] = {s.C};
  c->t[CB] = linattn_make_tensor(ec_slots[2], s.dt, 1, bd);
  for (int i = 0; i < 6; i++) c->p[i] = &c->t[i];
  if (!s.bias) c->p[CB] = NULL;
  if (!s.past) c->p[CPAST] = NULL;
  if (!s.present) c->p[CPRESENT] = NULL;
}

static linattn_status run_conv(const conv_call* c) {
  return linattn_causal_conv_with_state(c->ctx, c->pdesc, c->p[CX], c->p[CW], c->p[CB], c->p[CPAST], c->p[COUT],
                                        c->p[CPRESENT], c->ws, c->ws_size);
}

static linattn_status run_conv_ws(const conv_call* c) {
  size_t ws = 777;
  return linattn_causal_conv_with_state_workspace_size(c->ctx, c->pdesc, c->p[CX], c->p[CW], c->p[CB], c->p[CPAST],
                                                       c->p[COUT], c->p[CPRESENT], &ws);
}

typedef void (*conv_mutator)(conv_call* c);
typedef struct conv_row {
  const char* name;
  conv_mutator mutate;
  linattn_status status;
  const char* needle;
} conv_row;

#define CONV_SHAPE_MUT(fname, ...)     \
  static void fname(conv_call* c) {    \
    conv_shape s = conv_base;          \
    __VA_ARGS__;                       \
    build_conv(c, s);                  \
  }

static void c_null_ctx(conv_call* c) { c->ctx = NULL; }
static void c_null_desc(conv_call* c) { c->pdesc = NULL; }
static void c_null_input(conv_call* c) { c->p[CX] = NULL; }
static void c_null_weight(conv_call* c) { c->p[CW] = NULL; }
static void c_null_output(conv_call* c) { c->p[COUT] = NULL; }
static void c_input_rank2(conv_call* c) { c->t[CX].rank = 2; c->t[CX].dims[1] = 30; }
static void c_input_rank4(conv_call* c) { c->t[CX].rank = 4; c->t[CX].dims[3] = 1; }
static void c_weight_rank2(conv_call* c) { c->t[CW].rank = 2; c->t[CW].dims[1] = 4; }
static void c_weight_mid2(conv_call* c) { c->t[CW].dims[1] = 2; }
static void c_weight_channels(conv_call* c) { c->t[CW].dims[0] = 4; }
static void c_k0(conv_call* c) {
  c->t[CW].dims[2] = 0;
  c->p[CPAST] = NULL;
  c->p[CPRESENT] = NULL;
}
static void c_k0_states(conv_call* c) { /* k = 0 with "state length" 0 */
  c->t[CW].dims[2] = 0;
  c->t[CPAST].dims[2] = 0;
  c->t[CPRESENT].dims[2] = 0;
}
static void c_k_negative(conv_call* c) { c->t[CW].dims[2] = -2; c->p[CPAST] = NULL; c->p[CPRESENT] = NULL; }
static void c_dilation_neg(conv_call* c) { c->desc.dilation = -1; }
static void c_dilation_neg_nostate(conv_call* c) { c->desc.dilation = -2; c->p[CPAST] = NULL; c->p[CPRESENT] = NULL; }
static void c_past_len(conv_call* c) { c->t[CPAST].dims[2] = 2; }
CONV_SHAPE_MUT(c_past_len_dilation, s.dilation = 2; build_conv(c, s); c->t[CPAST].dims[2] = 3; return)
static void c_present_len(conv_call* c) { c->t[CPRESENT].dims[2] = 4; }
static void c_past_channels(conv_call* c) { c->t[CPAST].dims[1] = 4; }
static void c_past_batch(conv_call* c) { c->t[CPAST].dims[0] = 1; }
static void c_past_rank(conv_call* c) { c->t[CPAST].rank = 2; }
static void c_bias_len(conv_call* c) { c->t[CB].dims[0] = 4; }
static void c_bias_rank(conv_call* c) { c->t[CB].rank = 2; c->t[CB].dims[1] = 1; }
static void c_bias_dtype(conv_call* c) { c->t[CB].dtype = LINATTN_DTYPE_F16; }
static void c_weight_dtype(conv_call* c) { c->t[CW].dtype = LINATTN_DTYPE_BF16; }
static void c_past_dtype(conv_call* c) { c->t[CPAST].dtype = LINATTN_DTYPE_F16; }
static void c_out_dtype(conv_call* c) { c->t[COUT].dtype = LINATTN_DTYPE_F16; }
static void c_present_dtype(conv_call* c) { c->t[CPRESENT].dtype = LINATTN_DTYPE_BF16; }
static void c_input_dtype0(conv_call* c) { c->t[CX].dtype = LINATTN_DTYPE_INVALID; }
static void c_all_dtype5(conv_call* c) { for (int i = 0; i < 6; i++) c->t[i].dtype = (linattn_dtype)5; }
static void c_out_len(conv_call* c) { c->t[COUT].dims[2] = 5; }
static void c_out_channels(conv_call* c) { c->t[COUT].dims[1] = 6; }
static void c_out_rank(conv_call* c) { c->t[COUT].rank = 2; c->t[COUT].dims[1] = 30; }
static void c_channels_last_mismatch(conv_call* c) { c->desc.channels_last = 1; } /* (B,C,L) read as (B,L,C): C 6 vs weight 5 */
static void c_act0(conv_call* c) { c->desc.activation = LINATTN_ACTIVATION_INVALID; }
static void c_act7(conv_call* c) { c->desc.activation = (linattn_activation)7; }
static void c_weight_strided(conv_call* c) {
  int64_t st[3] = {8, 4, 1};
  memcpy(c->t[CW].strides, st, sizeof st);
}
static void c_bias_strided(conv_call* c) { c->t[CB].strides[0] = 2; }
static void c_past_strided(conv_call* c) {
  int64_t st[3] = {20, 4, 1};
  memcpy(c->t[CPAST].strides, st, sizeof st);
}
static void c_present_strided(conv_call* c) {
  int64_t st[3] = {30, 6, 1};
  memcpy(c->t[CPRESENT].strides, st, sizeof st);
}
static void c_input_inner(conv_call* c) {
  int64_t st[3] = {60, 12, 2};
  memcpy(c->t[CX].strides, st, sizeof st);
}
static void c_out_inner(conv_call* c) {
  int64_t st[3] = {60, 12, 2};
  memcpy(c->t[COUT].strides, st, sizeof st);
}
static void c_out_is_input(conv_call* c) { c->t[COUT].data = ec_slots[0]; }
static void c_out_overlaps_input(conv_call* c) { c->t[COUT].data = ec_slots[0] + 4 * 30; }
static void c_out_overlaps_weight(conv_call* c) { c->t[COUT].data = ec_slots[1] + 8; }
static void c_out_overlaps_past(conv_call* c) { c->t[COUT].data = ec_slots[3] + 4; }
static void c_present_overlaps_past(conv_call* c) { c->t[CPRESENT].data = ec_slots[3] + 4; }
static void c_present_overlaps_out(conv_call* c) { c->t[CPRESENT].data = ec_slots[4] + 4 * 10; }
static void c_present_is_input(conv_call* c) { c->t[CPRESENT].data = ec_slots[0]; }
static void c_out_self_overlap(conv_call* c) {
  int64_t st[3] = {30, 3, 1}; /* channel stride 3 < length 6 */
  memcpy(c->t[COUT].strides, st, sizeof st);
}
static void c_out_zero_stride(conv_call* c) {
  int64_t st[3] = {30, 0, 1};
  memcpy(c->t[COUT].strides, st, sizeof st);
}
static void c_null_input_data(conv_call* c) { c->t[CX].data = NULL; }
static void c_null_weight_data(conv_call* c) { c->t[CW].data = NULL; }
static void c_null_bias_data(conv_call* c) { c->t[CB].data = NULL; }
static void c_null_out_data(conv_call* c) { c->t[COUT].data = NULL; }
static void c_null_present_data(conv_call* c) { c->t[CPRESENT].data = NULL; }
static void c_negative_len(conv_call* c) { c->t[CX].dims[2] = -1; c->t[COUT].dims[2] = -1; }
static void c_overflow_len(conv_call* c) { c->t[CX].dims[2] = (int64_t)1 << 62; c->t[COUT].dims[2] = (int64_t)1 << 62; }
static void c_overflow_batch(conv_call* c) {
  c->t[CX].dims[0] = (int64_t)1 << 62;
  c->t[COUT].dims[0] = (int64_t)1 << 62;
  c->t[CPAST].dims[0] = (int64_t)1 << 62;
  c->t[CPRESENT].dims[0] = (int64_t)1 << 62;
}
static void c_overflow_dilation(conv_call* c) {
  c->desc.dilation = (int64_t)1 << 62;
  c->p[CPAST] = NULL;
  c->p[CPRESENT] = NULL;
}
static void c_overflow_channels(conv_call* c) {
  int64_t C = (int64_t)1 << 61;
  c->t[CX].dims[1] = C;
  c->t[COUT].dims[1] = C;
  c->t[CW].dims[0] = C;
  c->p[CB] = NULL;
  c->p[CPAST] = NULL;
  c->p[CPRESENT] = NULL;
}

static const conv_row conv_rows[] = {
    {"NULL context", c_null_ctx, LINATTN_ERROR_INVALID_ARGUMENT, "context"},
    {"NULL desc", c_null_desc, LINATTN_ERROR_INVALID_ARGUMENT, "desc"},
    {"NULL input", c_null_input, LINATTN_ERROR_INVALID_ARGUMENT, "input"},
    {"NULL weight", c_null_weight, LINATTN_ERROR_INVALID_ARGUMENT, "weight"},
    {"NULL output", c_null_output, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"input rank 2", c_input_rank2, LINATTN_ERROR_INVALID_ARGUMENT, "input"},
    {"input rank 4", c_input_rank4, LINATTN_ERROR_INVALID_ARGUMENT, "input"},
    {"weight rank 2", c_weight_rank2, LINATTN_ERROR_INVALID_ARGUMENT, "weight"},
    {"weight middle dim 2", c_weight_mid2, LINATTN_ERROR_INVALID_ARGUMENT, "weight"},
    {"weight channels 4 vs input 5", c_weight_channels, LINATTN_ERROR_INVALID_ARGUMENT, "weight"},
    {"k = 0, no states", c_k0, LINATTN_ERROR_INVALID_ARGUMENT, "weight|k"},
    {"k = 0, empty states", c_k0_states, LINATTN_ERROR_INVALID_ARGUMENT, "weight|k"},
    {"k = -2", c_k_negative, LINATTN_ERROR_INVALID_ARGUMENT, "weight|k"},
    {"dilation -1", c_dilation_neg, LINATTN_ERROR_INVALID_ARGUMENT, "dilation"},
    {"dilation -2, no states", c_dilation_neg_nostate, LINATTN_ERROR_INVALID_ARGUMENT, "dilation"},
    {"past_state length 2 vs k-1 = 3", c_past_len, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"past_state length 3 vs (k-1)*dilation = 6", c_past_len_dilation, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"present_state length 4", c_present_len, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"past_state channels", c_past_channels, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"past_state batch", c_past_batch, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"past_state rank 2", c_past_rank, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"bias length 4", c_bias_len, LINATTN_ERROR_INVALID_ARGUMENT, "bias"},
    {"bias rank 2", c_bias_rank, LINATTN_ERROR_INVALID_ARGUMENT, "bias"},
    {"bias dtype f16", c_bias_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "bias"},
    {"weight dtype bf16", c_weight_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "weight"},
    {"past_state dtype f16", c_past_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"output dtype f16", c_out_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"present_state dtype bf16", c_present_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"input dtype invalid", c_input_dtype0, LINATTN_ERROR_INVALID_ARGUMENT, "input"},
    {"every dtype invalid (5)", c_all_dtype5, LINATTN_ERROR_INVALID_ARGUMENT, "dtype|input"},
    {"output length 5", c_out_len, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output channels 6", c_out_channels, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output rank 2", c_out_rank, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"channels_last with channels-first shapes", c_channels_last_mismatch, LINATTN_ERROR_INVALID_ARGUMENT,
     "weight|input|past_state|output|channel"},
    {"activation invalid (0)", c_act0, LINATTN_ERROR_INVALID_ARGUMENT, "activation"},
    {"activation unknown (7)", c_act7, LINATTN_ERROR_INVALID_ARGUMENT, "activation"},
    {"weight not packed", c_weight_strided, LINATTN_ERROR_INVALID_ARGUMENT, "weight"},
    {"bias not packed", c_bias_strided, LINATTN_ERROR_INVALID_ARGUMENT, "bias"},
    {"past_state not packed", c_past_strided, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"present_state not packed", c_present_strided, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"input innermost stride 2", c_input_inner, LINATTN_ERROR_INVALID_ARGUMENT, "input"},
    {"output innermost stride 2", c_out_inner, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output is the input buffer", c_out_is_input, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output overlaps input", c_out_overlaps_input, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output overlaps weight", c_out_overlaps_weight, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output overlaps past_state", c_out_overlaps_past, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"present_state partially overlaps past_state", c_present_overlaps_past, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"present_state overlaps output", c_present_overlaps_out, LINATTN_ERROR_INVALID_ARGUMENT, "present_state|output"},
    {"present_state is the input buffer", c_present_is_input, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"output overlaps itself", c_out_self_overlap, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output channel stride 0", c_out_zero_stride, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"NULL input data", c_null_input_data, LINATTN_ERROR_INVALID_ARGUMENT, "input"},
    {"NULL weight data", c_null_weight_data, LINATTN_ERROR_INVALID_ARGUMENT, "weight"},
    {"NULL bias data", c_null_bias_data, LINATTN_ERROR_INVALID_ARGUMENT, "bias"},
    {"NULL output data", c_null_out_data, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"NULL present_state data", c_null_present_data, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"negative length", c_negative_len, LINATTN_ERROR_INVALID_ARGUMENT, "input"},
    {"length 2^62", c_overflow_len, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
    {"batch 2^62", c_overflow_batch, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
    {"dilation 2^62", c_overflow_dilation, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
    {"channels 2^61", c_overflow_channels, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
};

static void test_conv_table(void) {
  conv_call c;
  for (size_t i = 0; i < sizeof conv_rows / sizeof conv_rows[0]; i++) {
    const conv_row* row = &conv_rows[i];
    tk_context("CausalConvWithState: %s", row->name);
    build_conv(&c, conv_base);
    row->mutate(&c);
    ec_fill_pattern();
    ec_expect(row->name, "causal_conv", run_conv(&c), row->status, row->needle);
    ec_fill_pattern();
    ec_expect(row->name, "conv workspace_size", run_conv_ws(&c), row->status, row->needle);
  }
  tk_context("CausalConvWithState: workspace too small");
  build_conv(&c, conv_base);
  size_t need = 0;
  linattn_status st = linattn_causal_conv_with_state_workspace_size(c.ctx, c.pdesc, c.p[CX], c.p[CW], c.p[CB],
                                                                    c.p[CPAST], c.p[COUT], c.p[CPRESENT], &need);
  tk_check(st == LINATTN_SUCCESS, "conv workspace_size of the base call: %s", linattn_last_error());
  if (need > 0 && need <= EC_SLOT_BYTES) {
    c.ws = ec_slots[EC_WS_SLOT];
    c.ws_size = need - 1;
    ec_fill_pattern();
    ec_expect("conv workspace one byte too small", "causal_conv", run_conv(&c), LINATTN_ERROR_WORKSPACE_TOO_SMALL, "workspace");
    c.ws = ec_slots[EC_WS_SLOT] + 4;
    c.ws_size = need + 64;
    ec_fill_pattern();
    ec_expect("conv workspace misaligned", "causal_conv", run_conv(&c), LINATTN_ERROR_INVALID_ARGUMENT, "workspace");
  } else {
    tk_note("CausalConvWithState base call needs %zu workspace bytes: too-small test skipped", need);
  }
  st = linattn_causal_conv_with_state_workspace_size(c.ctx, c.pdesc, c.p[CX], c.p[CW], c.p[CB], c.p[CPAST],
                                                     c.p[COUT], c.p[CPRESENT], NULL);
  ec_expect("NULL workspace_size pointer", "conv workspace_size", st, LINATTN_ERROR_INVALID_ARGUMENT, "workspace");
}

static void test_conv_positive(void) {
  struct {
    const char* name;
    conv_shape s;
    int tweak;
  } pos[] = {
      {"base", conv_base, 0},
      {"in place", conv_base, 1},
      {"present_state not wanted", conv_base, 2},
      {"k = 1 with empty NULL states", {2, 5, 6, 1, 1, true, true, true, false, LINATTN_DTYPE_F32}, 3},
      {"L = 0 with NULL input/output", conv_base, 4},
      {"dilation 0 read as 1", {2, 5, 6, 4, 0, false, true, true, false, LINATTN_DTYPE_F16}, 0},
      {"dilation 3, channels last", {2, 5, 6, 3, 3, true, true, true, true, LINATTN_DTYPE_BF16}, 0},
      {"no past, no bias", {1, 3, 2, 5, 1, false, false, true, false, LINATTN_DTYPE_F32}, 0},
      {"explicit packed strides", conv_base, 5},
  };
  conv_call c;
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
    tk_context("CausalConvWithState valid: %s", pos[i].name);
    build_conv(&c, pos[i].s);
    switch (pos[i].tweak) {
      case 1: c.t[CPRESENT].data = c.t[CPAST].data; break;
      case 2: c.p[CPRESENT] = NULL; break;
      case 3: c.t[CPAST].data = NULL; c.t[CPRESENT].data = NULL; break;
      case 4:
        c.t[CX].dims[2] = 0;
        c.t[COUT].dims[2] = 0;
        c.t[CX].data = NULL;
        c.t[COUT].data = NULL;
        break;
      case 5: {
        int64_t xs[3] = {30, 6, 1}, ws[3] = {4, 4, 1}, ps[3] = {15, 3, 1};
        memcpy(c.t[CX].strides, xs, sizeof xs);
        memcpy(c.t[CW].strides, ws, sizeof ws);
        memcpy(c.t[CPAST].strides, ps, sizeof ps);
        memcpy(c.t[CPRESENT].strides, ps, sizeof ps);
        c.t[CB].strides[0] = 1;
        break;
      }
      default: break;
    }
    ec_zero();
    linattn_status st = run_conv(&c);
    tk_check(st == LINATTN_SUCCESS, "%s: %s (%s)", pos[i].name, linattn_status_string(st), linattn_last_error());
    st = run_conv_ws(&c);
    tk_check(st == LINATTN_SUCCESS, "%s workspace_size: %s (%s)", pos[i].name, linattn_status_string(st),
             linattn_last_error());
    /* shape inference accepts the call's shapes and gives the shapes the call was given */
    int64_t od[3] = {-9, -9, -9}, sd[3] = {-9, -9, -9};
    st = linattn_causal_conv_infer_shapes(c.pdesc, c.t[CX].dims, c.t[CW].dims, od, sd);
    tk_check(st == LINATTN_SUCCESS, "%s infer_shapes: %s", pos[i].name, linattn_last_error());
    for (int d = 0; d < 3 && st == LINATTN_SUCCESS; d++)
      tk_check(od[d] == c.t[CX].dims[d] && sd[d] == c.t[CPRESENT].dims[d],
               "%s infer_shapes dim %d: output %lld (input %lld), state %lld (present_state %lld)", pos[i].name, d,
               (long long)od[d], (long long)c.t[CX].dims[d], (long long)sd[d], (long long)c.t[CPRESENT].dims[d]);
  }
}

/* Shape inference rejects what the call's shape rules reject, with the call's messages. */
static void test_conv_infer_shapes(void) {
  tk_context("causal_conv_infer_shapes");
  linattn_causal_conv_desc d;
  linattn_causal_conv_desc_init(&d);
  const int64_t x[3] = {2, 5, 6}, w[3] = {5, 1, 4};
  int64_t o[3], s[3];
  tk_check(linattn_causal_conv_infer_shapes(&d, x, w, o, s) == LINATTN_SUCCESS && s[0] == 2 && s[1] == 5 && s[2] == 3,
           "base: %s", linattn_last_error());
  d.channels_last = 1;
  d.dilation = 3;
  const int64_t xl[3] = {2, 6, 5};
  tk_check(linattn_causal_conv_infer_shapes(&d, xl, w, o, s) == LINATTN_SUCCESS && s[0] == 2 && s[1] == 9 && s[2] == 5,
           "channels_last, dilation 3: %s", linattn_last_error());
  ec_expect("NULL desc", "infer_shapes", linattn_causal_conv_infer_shapes(NULL, x, w, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "desc");
  ec_expect("NULL dims", "infer_shapes", linattn_causal_conv_infer_shapes(&d, x, NULL, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "dims");
  linattn_causal_conv_desc_init(&d);
  const int64_t wc[3] = {4, 1, 4}, wk0[3] = {5, 1, 0}, wg[3] = {5, 2, 4}, xneg[3] = {2, -1, 6};
  ec_expect("weight channels", "infer_shapes", linattn_causal_conv_infer_shapes(&d, x, wc, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "weight");
  ec_expect("weight k = 0", "infer_shapes", linattn_causal_conv_infer_shapes(&d, x, wk0, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "weight");
  ec_expect("weight groups", "infer_shapes", linattn_causal_conv_infer_shapes(&d, x, wg, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "weight");
  ec_expect("negative input dim", "infer_shapes", linattn_causal_conv_infer_shapes(&d, xneg, w, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "input");
  d.dilation = (int64_t)1 << 62;
  ec_expect("(k-1)*dilation overflows", "infer_shapes", linattn_causal_conv_infer_shapes(&d, x, w, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "dilation");
  d.dilation = -2;
  ec_expect("dilation -2", "infer_shapes", linattn_causal_conv_infer_shapes(&d, x, w, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "dilation");
  linattn_causal_conv_desc_init(&d);
  d.activation = LINATTN_ACTIVATION_INVALID;
  ec_expect("activation invalid", "infer_shapes", linattn_causal_conv_infer_shapes(&d, x, w, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "activation");
}


int main(void) {
  tk_begin("test_api_errors_conv");
  ec_init();
  g_ctx = tk_context_create(LINATTN_ISA_AUTO, 1);
  test_conv_positive();
  test_conv_table();
  test_conv_infer_shapes();
  /* the valid edge calls (empty tensors, k = 1, in place) on every kernel family */
  linattn_isa isas[8];
  int n = tk_available_isas(isas, 8);
  for (int i = 0; i < n; i++) {
    linattn_context_destroy(g_ctx);
    g_ctx = tk_context_create(isas[i], 2);
    test_conv_positive();
  }
  linattn_context_destroy(g_ctx);
  ec_free();
  return tk_finish();
}
