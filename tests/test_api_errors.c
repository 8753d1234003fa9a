/*
 * Table-driven bad-input tests for LinearAttention (CausalConvWithState: test_api_errors_conv.c)
 * and the small API surface (names, defaults, context options, allocator hooks). Each row starts from a valid call (checked to
 * succeed), breaks one thing, and expects: the status, a linattn_last_error() message naming
 * the argument (case-insensitive substring; "a|b" accepts either), and every buffer the call
 * could see (inputs, outputs, workspace) byte-for-byte untouched. LinearAttention rows also run
 * through linattn_linear_attention_workspace_size (validated the same way). Valid edge calls (positive controls) must
 * succeed, so the validation is not simply rejecting everything.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "errcheck.h"
#include "testkit.h"

static linattn_context* g_ctx;

/* ------------------------------------------------------------------ LinearAttention */

enum { Q, K, V, PAST, DECAY, BETA, OUT, PRESENT };

typedef struct la_shape {
  int64_t B, T, Hq, Hkv, Nk, dk, dv;
  linattn_update_rule rule;
  int decay_kind, beta_kind; /* 0 absent, 1 per head / per head, 2 per key / shared */
  bool past, present;
  uint32_t flags;
  linattn_dtype tdt, sdt;
} la_shape;

typedef struct la_call {
  linattn_context* ctx;
  linattn_linear_attention_desc desc;
  const linattn_linear_attention_desc* pdesc;
  linattn_tensor t[8];
  const linattn_tensor* p[8];
  void* ws;
  size_t ws_size;
} la_call;

static const la_shape la_base = {2, 3, 4, 2, 2, 4, 3, LINATTN_UPDATE_GATED_DELTA, 2, 1, true, true, 0,
                                 LINATTN_DTYPE_F32, LINATTN_DTYPE_F32};

static void build_la(la_call* c, la_shape s) {
  memset(c, 0, sizeof *c);
  c->ctx = g_ctx;
  linattn_linear_attention_desc_init(&c->desc);
  c->desc.update_rule = s.rule;
  c->desc.q_num_heads = s.Hq;
  c->desc.kv_num_heads = s.Hkv;
  c->desc.flags = s.flags;
  c->pdesc = &c->desc;
  int64_t Hout = s.Hq > s.Hkv ? s.Hq : s.Hkv;
  c->t[Q] = ec_tensor3(Q, s.tdt, s.B, s.T, s.Hq * s.dk);
  c->t[K] = ec_tensor3(K, s.tdt, s.B, s.T, s.Nk * s.dk);
  c->t[V] = ec_tensor3(V, s.tdt, s.B, s.T, s.Hkv * s.dv);
  c->t[DECAY] = ec_tensor3(DECAY, s.tdt, s.B, s.T, s.decay_kind == 2 ? s.Hkv * s.dk : s.Hkv);
  c->t[BETA] = ec_tensor3(BETA, s.tdt, s.B, s.T, s.beta_kind == 2 ? 1 : s.Hkv);
  c->t[OUT] = ec_tensor3(OUT, s.tdt, s.B, s.T, Hout * s.dv);
  int64_t sd[4] = {s.B, s.Hkv, s.dk, s.dv};
  c->t[PAST] = linattn_make_tensor(ec_slots[PAST], s.sdt, 4, sd);
  c->t[PRESENT] = linattn_make_tensor(ec_slots[PRESENT], s.sdt, 4, sd);
  for (int i = 0; i < 8; i++) c->p[i] = &c->t[i];
  if (!s.past) c->p[PAST] = NULL;
  if (!s.present) c->p[PRESENT] = NULL;
  if (!s.decay_kind) c->p[DECAY] = NULL;
  if (!s.beta_kind) c->p[BETA] = NULL;
}

static linattn_status run_la(const la_call* c) {
  return linattn_linear_attention(c->ctx, c->pdesc, c->p[Q], c->p[K], c->p[V], c->p[PAST], c->p[DECAY], c->p[BETA],
                                  c->p[OUT], c->p[PRESENT], c->ws, c->ws_size);
}

static linattn_status run_la_ws(const la_call* c) {
  size_t ws = 12345;
  linattn_status st = linattn_linear_attention_workspace_size(c->ctx, c->pdesc, c->p[Q], c->p[K], c->p[V], c->p[PAST],
                                                              c->p[DECAY], c->p[BETA], c->p[OUT], c->p[PRESENT], &ws);
  return st;
}

typedef void (*la_mutator)(la_call* c);
typedef struct la_row {
  const char* name;
  la_mutator mutate;
  linattn_status status;
  const char* needle;
} la_row;

#define SHAPE_MUT(fname, ...)          \
  static void fname(la_call* c) {      \
    la_shape s = la_base;              \
    __VA_ARGS__;                       \
    build_la(c, s);                    \
  }

static void m_null_ctx(la_call* c) { c->ctx = NULL; }
static void m_null_desc(la_call* c) { c->pdesc = NULL; }
static void m_null_q(la_call* c) { c->p[Q] = NULL; }
static void m_null_k(la_call* c) { c->p[K] = NULL; }
static void m_null_v(la_call* c) { c->p[V] = NULL; }
static void m_null_out(la_call* c) { c->p[OUT] = NULL; }
static void m_q_rank2(la_call* c) { c->t[Q].rank = 2; c->t[Q].dims[1] = 3 * 16; }
static void m_k_rank4(la_call* c) { c->t[K].rank = 4; c->t[K].dims[3] = 1; }
static void m_v_rank2(la_call* c) { c->t[V].rank = 2; }
static void m_q_rank0(la_call* c) { c->t[Q].rank = 0; }
static void m_q_rank5(la_call* c) { c->t[Q].rank = 5; }
static void m_hq0(la_call* c) { c->desc.q_num_heads = 0; }
static void m_hkv0(la_call* c) { c->desc.kv_num_heads = 0; }
static void m_hq_neg(la_call* c) { c->desc.q_num_heads = -4; }
static void m_q_indivisible(la_call* c) { c->t[Q].dims[2] = 15; }
static void m_v_indivisible(la_call* c) { c->t[V].dims[2] = 7; }
SHAPE_MUT(m_hq_not_multiple, s.Hq = 4; s.Hkv = 3; s.Nk = 3)
SHAPE_MUT(m_hq_not_multiple_ort, s.Hq = 4; s.Hkv = 3; s.Nk = 3; s.flags = LINATTN_LA_ORT_CONTRIB)
SHAPE_MUT(m_inverse_no_flag, s.Hq = 2; s.Hkv = 4; s.Nk = 4)
SHAPE_MUT(m_inverse_not_multiple_ort, s.Hq = 3; s.Hkv = 4; s.Nk = 4; s.flags = LINATTN_LA_ORT_CONTRIB)
static void m_key_width(la_call* c) { c->t[K].dims[2] = 12; }
SHAPE_MUT(m_key_separate_no_flag, s.Hq = 4; s.Hkv = 4; s.Nk = 2)
SHAPE_MUT(m_key_nk_not_divisor_ort, s.Hq = 4; s.Hkv = 4; s.Nk = 3; s.flags = LINATTN_LA_ORT_CONTRIB)
static void m_key_not_multiple_dk_ort(la_call* c) { c->desc.flags = LINATTN_LA_ORT_CONTRIB; c->t[K].dims[2] = 10; }
static void m_key_batch(la_call* c) { c->t[K].dims[0] = 1; }
static void m_value_tokens(la_call* c) { c->t[V].dims[1] = 4; }
static void m_decay_missing(la_call* c) { c->p[DECAY] = NULL; }
SHAPE_MUT(m_decay_forbidden_delta, s.rule = LINATTN_UPDATE_DELTA)
static void m_decay_forbidden_delta2(la_call* c) { m_decay_forbidden_delta(c); c->p[DECAY] = &c->t[DECAY]; }
static void m_decay_forbidden_linear(la_call* c) {
  la_shape s = la_base;
  s.rule = LINATTN_UPDATE_LINEAR;
  s.beta_kind = 0;
  build_la(c, s);
  c->p[DECAY] = &c->t[DECAY];
}
static void m_beta_missing(la_call* c) { c->p[BETA] = NULL; }
static void m_beta_forbidden_gated(la_call* c) {
  la_shape s = la_base;
  s.rule = LINATTN_UPDATE_GATED;
  build_la(c, s);
  c->p[BETA] = &c->t[BETA];
}
static void m_beta_missing_delta(la_call* c) {
  la_shape s = la_base;
  s.rule = LINATTN_UPDATE_DELTA;
  s.decay_kind = 0;
  build_la(c, s);
  c->p[BETA] = NULL;
}
static void m_decay_last(la_call* c) { c->t[DECAY].dims[2] = 5; }
static void m_decay_rank(la_call* c) { c->t[DECAY].rank = 2; c->t[DECAY].dims[1] = 24; }
static void m_decay_tokens(la_call* c) { c->t[DECAY].dims[1] = 2; }
static void m_beta_last(la_call* c) { c->t[BETA].dims[2] = 3; }
static void m_beta_rank(la_call* c) { c->t[BETA].rank = 4; c->t[BETA].dims[3] = 1; }
static void m_beta_batch(la_call* c) { c->t[BETA].dims[0] = 1; }
static void m_past_shape(la_call* c) { c->t[PAST].dims[3] = 4; }
static void m_past_heads(la_call* c) { c->t[PAST].dims[1] = 1; }
static void m_past_rank(la_call* c) { c->t[PAST].rank = 3; }
static void m_key_dtype(la_call* c) { c->t[K].dtype = LINATTN_DTYPE_F16; }
static void m_value_dtype(la_call* c) { c->t[V].dtype = LINATTN_DTYPE_BF16; }
static void m_decay_dtype(la_call* c) { c->t[DECAY].dtype = LINATTN_DTYPE_F16; }
static void m_beta_dtype(la_call* c) { c->t[BETA].dtype = LINATTN_DTYPE_BF16; }
static void m_out_dtype(la_call* c) { c->t[OUT].dtype = LINATTN_DTYPE_F16; }
static void m_query_dtype0(la_call* c) { c->t[Q].dtype = LINATTN_DTYPE_INVALID; }
static void m_query_dtype9(la_call* c) { c->t[Q].dtype = (linattn_dtype)9; }
static void m_all_dtype9(la_call* c) { for (int i = 0; i < 8; i++) c->t[i].dtype = (linattn_dtype)9; }
static void m_state_dtype(la_call* c) { c->t[PRESENT].dtype = LINATTN_DTYPE_F16; }
static void m_state_dtype_invalid(la_call* c) { c->p[PAST] = NULL; c->t[PRESENT].dtype = (linattn_dtype)7; }
static void m_out_width(la_call* c) { c->t[OUT].dims[2] = 9; }
static void m_out_width_kv(la_call* c) { c->t[OUT].dims[2] = 6; } /* H_kv * d_v instead of H_q * d_v */
static void m_out_tokens(la_call* c) { c->t[OUT].dims[1] = 2; }
static void m_out_rank(la_call* c) { c->t[OUT].rank = 2; c->t[OUT].dims[1] = 36; }
static void m_present_shape(la_call* c) { c->t[PRESENT].dims[2] = 3; }
static void m_present_shape_nopast(la_call* c) { c->p[PAST] = NULL; c->t[PRESENT].dims[0] = 1; }
static void m_past_strided(la_call* c) {
  int64_t st[4] = {48, 24, 3, 1};
  memcpy(c->t[PAST].strides, st, sizeof st);
}
static void m_present_strided(la_call* c) {
  int64_t st[4] = {24, 12, 6, 1};
  memcpy(c->t[PRESENT].strides, st, sizeof st);
}
static void m_q_inner_stride(la_call* c) {
  int64_t st[3] = {96, 32, 2};
  memcpy(c->t[Q].strides, st, sizeof st);
}
static void m_out_inner_stride(la_call* c) {
  int64_t st[3] = {72, 24, 2};
  memcpy(c->t[OUT].strides, st, sizeof st);
}
static void m_out_is_query(la_call* c) { c->t[OUT].data = ec_slots[Q]; }
static void m_out_overlaps_key(la_call* c) { c->t[OUT].data = ec_slots[K] + 4 * 5; }
static void m_out_overlaps_decay_tail(la_call* c) { c->t[OUT].data = ec_slots[DECAY] + 4 * 40; }
static void m_out_is_beta(la_call* c) { c->t[OUT].data = ec_slots[BETA]; }
static void m_present_overlaps_past(la_call* c) { c->t[PRESENT].data = ec_slots[PAST] + 4; }
static void m_present_is_output(la_call* c) { c->t[PRESENT].data = ec_slots[OUT] + 8; }
static void m_present_is_value(la_call* c) { c->t[PRESENT].data = ec_slots[V]; }
static void m_present_past_same_ptr_other_shape(la_call* c) {
  /* same pointer but present viewed with a different (still packed, same size) shape */
  c->t[PRESENT].data = ec_slots[PAST];
  c->t[PRESENT].dims[2] = 3;
  c->t[PRESENT].dims[3] = 4;
}
static void m_out_self_overlap(la_call* c) {
  int64_t st[3] = {36, 6, 1}; /* token stride 6 < width 12 */
  memcpy(c->t[OUT].strides, st, sizeof st);
}
static void m_out_zero_token_stride(la_call* c) {
  int64_t st[3] = {12, 0, 1};
  memcpy(c->t[OUT].strides, st, sizeof st);
  c->t[OUT].dims[0] = 2;
}
static void m_q_zero_token_stride(la_call* c) {
  int64_t st[3] = {48, 0, 1};
  memcpy(c->t[Q].strides, st, sizeof st);
}
static void m_null_q_data(la_call* c) { c->t[Q].data = NULL; }
static void m_null_out_data(la_call* c) { c->t[OUT].data = NULL; }
static void m_null_past_data(la_call* c) { c->t[PAST].data = NULL; }
static void m_null_present_data(la_call* c) { c->t[PRESENT].data = NULL; }
static void m_null_decay_data(la_call* c) { c->t[DECAY].data = NULL; }
static void m_q_negative_dim(la_call* c) { c->t[Q].dims[1] = -1; }
static void m_all_negative_tokens(la_call* c) {
  for (int i = 0; i < 8; i++)
    if (c->t[i].rank == 3) c->t[i].dims[1] = -3;
}
static void m_overflow_batch(la_call* c) {
  for (int i = 0; i < 8; i++) c->t[i].dims[0] = (int64_t)1 << 62;
}
static void m_overflow_tokens(la_call* c) {
  for (int i = 0; i < 8; i++)
    if (c->t[i].rank == 3) c->t[i].dims[1] = (int64_t)1 << 40;
  for (int i = 0; i < 8; i++) c->t[i].dims[0] = (int64_t)1 << 30;
}
static void m_overflow_heads(la_call* c) {
  /* huge head counts with widths that divide: (2^60 heads) x d 4 */
  int64_t H = (int64_t)1 << 60;
  c->desc.q_num_heads = H;
  c->desc.kv_num_heads = H;
  c->t[Q].dims[2] = H * 4;
  c->t[K].dims[2] = H * 4;
  c->t[V].dims[2] = H * 2;
}
static void m_stride_overflow(la_call* c) {
  int64_t st[3] = {(int64_t)1 << 62, (int64_t)1 << 61, 1};
  memcpy(c->t[Q].strides, st, sizeof st);
}
static void m_flags_unknown(la_call* c) { c->desc.flags = 0x6u; }
static void m_rule0(la_call* c) { c->desc.update_rule = LINATTN_UPDATE_INVALID; }
static void m_rule99(la_call* c) { c->desc.update_rule = (linattn_update_rule)99; }

static const la_row la_rows[] = {
    {"NULL context", m_null_ctx, LINATTN_ERROR_INVALID_ARGUMENT, "context"},
    {"NULL desc", m_null_desc, LINATTN_ERROR_INVALID_ARGUMENT, "desc"},
    {"NULL query", m_null_q, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"NULL key", m_null_k, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"NULL value", m_null_v, LINATTN_ERROR_INVALID_ARGUMENT, "value"},
    {"NULL output", m_null_out, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"query rank 2", m_q_rank2, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"key rank 4", m_k_rank4, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"value rank 2", m_v_rank2, LINATTN_ERROR_INVALID_ARGUMENT, "value"},
    {"query rank 0", m_q_rank0, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"query rank 5", m_q_rank5, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"q_num_heads 0", m_hq0, LINATTN_ERROR_INVALID_ARGUMENT, "q_num_heads"},
    {"kv_num_heads 0", m_hkv0, LINATTN_ERROR_INVALID_ARGUMENT, "kv_num_heads"},
    {"q_num_heads negative", m_hq_neg, LINATTN_ERROR_INVALID_ARGUMENT, "q_num_heads"},
    {"query width not divisible by q_num_heads", m_q_indivisible, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"value width not divisible by kv_num_heads", m_v_indivisible, LINATTN_ERROR_INVALID_ARGUMENT, "value"},
    {"q_num_heads not a multiple of kv_num_heads", m_hq_not_multiple, LINATTN_ERROR_INVALID_ARGUMENT, "num_heads"},
    {"heads 4/3 with the ORT flag", m_hq_not_multiple_ort, LINATTN_ERROR_INVALID_ARGUMENT, "num_heads"},
    {"inverse GQA without the ORT flag", m_inverse_no_flag, LINATTN_ERROR_INVALID_ARGUMENT, "num_heads"},
    {"inverse GQA 3/4 with the ORT flag", m_inverse_not_multiple_ort, LINATTN_ERROR_INVALID_ARGUMENT, "num_heads"},
    {"key width mismatch", m_key_width, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"separate key heads without the ORT flag", m_key_separate_no_flag, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"key heads not dividing kv heads (ORT)", m_key_nk_not_divisor_ort, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"key width not a multiple of d_k (ORT)", m_key_not_multiple_dk_ort, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"key batch mismatch", m_key_batch, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"value token mismatch", m_value_tokens, LINATTN_ERROR_INVALID_ARGUMENT, "value"},
    {"decay missing for gated_delta", m_decay_missing, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"decay given for delta", m_decay_forbidden_delta2, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"decay given for linear", m_decay_forbidden_linear, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"beta missing for gated_delta", m_beta_missing, LINATTN_ERROR_INVALID_ARGUMENT, "beta"},
    {"beta missing for delta", m_beta_missing_delta, LINATTN_ERROR_INVALID_ARGUMENT, "beta"},
    {"beta given for gated", m_beta_forbidden_gated, LINATTN_ERROR_INVALID_ARGUMENT, "beta"},
    {"decay last dim 5", m_decay_last, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"decay rank 2", m_decay_rank, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"decay token mismatch", m_decay_tokens, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"beta last dim 3", m_beta_last, LINATTN_ERROR_INVALID_ARGUMENT, "beta"},
    {"beta rank 4", m_beta_rank, LINATTN_ERROR_INVALID_ARGUMENT, "beta"},
    {"beta batch mismatch", m_beta_batch, LINATTN_ERROR_INVALID_ARGUMENT, "beta"},
    {"past_state d_v mismatch", m_past_shape, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"past_state heads mismatch", m_past_heads, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"past_state rank 3", m_past_rank, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"key dtype f16 vs query f32", m_key_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "key"},
    {"value dtype bf16 vs query f32", m_value_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "value"},
    {"decay dtype f16 vs query f32", m_decay_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"beta dtype bf16 vs query f32", m_beta_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "beta"},
    {"output dtype f16 vs query f32", m_out_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"query dtype invalid (0)", m_query_dtype0, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"query dtype invalid (9)", m_query_dtype9, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"every dtype invalid (9)", m_all_dtype9, LINATTN_ERROR_INVALID_ARGUMENT, "dtype|query"},
    {"present_state dtype f16 vs past_state f32", m_state_dtype, LINATTN_ERROR_INVALID_ARGUMENT, "state"},
    {"present_state dtype invalid, no past", m_state_dtype_invalid, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"output width", m_out_width, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output width H_kv*d_v under GQA", m_out_width_kv, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output tokens", m_out_tokens, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output rank 2", m_out_rank, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"present_state shape", m_present_shape, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"present_state batch, no past", m_present_shape_nopast, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"past_state not packed", m_past_strided, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"present_state not packed", m_present_strided, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"query innermost stride 2", m_q_inner_stride, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"output innermost stride 2", m_out_inner_stride, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output is the query buffer", m_out_is_query, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output overlaps key", m_out_overlaps_key, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output overlaps the tail of decay", m_out_overlaps_decay_tail, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output is the beta buffer", m_out_is_beta, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"present_state partially overlaps past_state", m_present_overlaps_past, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"present_state overlaps output", m_present_is_output, LINATTN_ERROR_INVALID_ARGUMENT, "present_state|output"},
    {"present_state is the value buffer", m_present_is_value, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"present_state same pointer as past_state, other shape", m_present_past_same_ptr_other_shape,
     LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"output overlaps itself (token stride < width)", m_out_self_overlap, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"output token stride 0", m_out_zero_token_stride, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"query token stride 0 (distinct elements alias)", m_q_zero_token_stride, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"NULL query data", m_null_q_data, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"NULL output data", m_null_out_data, LINATTN_ERROR_INVALID_ARGUMENT, "output"},
    {"NULL past_state data", m_null_past_data, LINATTN_ERROR_INVALID_ARGUMENT, "past_state"},
    {"NULL present_state data", m_null_present_data, LINATTN_ERROR_INVALID_ARGUMENT, "present_state"},
    {"NULL decay data", m_null_decay_data, LINATTN_ERROR_INVALID_ARGUMENT, "decay"},
    {"query negative dim", m_q_negative_dim, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"negative token count everywhere", m_all_negative_tokens, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
    {"batch 2^62 everywhere", m_overflow_batch, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
    {"batch 2^30 x tokens 2^40", m_overflow_tokens, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
    {"heads 2^60", m_overflow_heads, LINATTN_ERROR_INVALID_ARGUMENT, NULL},
    {"query strides 2^62", m_stride_overflow, LINATTN_ERROR_INVALID_ARGUMENT, "query"},
    {"unknown flag bits", m_flags_unknown, LINATTN_ERROR_INVALID_ARGUMENT, "flags"},
    {"update_rule invalid (0)", m_rule0, LINATTN_ERROR_INVALID_ARGUMENT, "update_rule|rule"},
    {"update_rule unknown (99)", m_rule99, LINATTN_ERROR_INVALID_ARGUMENT, "update_rule|rule"},
};

static void test_la_table(void) {
  la_call c;
  for (size_t i = 0; i < sizeof la_rows / sizeof la_rows[0]; i++) {
    const la_row* row = &la_rows[i];
    tk_context("LinearAttention: %s", row->name);
    build_la(&c, la_base);
    row->mutate(&c);
    ec_fill_pattern();
    ec_expect(row->name, "linear_attention", run_la(&c), row->status, row->needle);
    ec_fill_pattern();
    ec_expect(row->name, "workspace_size", run_la_ws(&c), row->status, row->needle);
  }
  /* workspace too small (only meaningful when the call needs one) */
  tk_context("LinearAttention: workspace too small");
  build_la(&c, la_base);
  size_t need = 0;
  linattn_status st = linattn_linear_attention_workspace_size(c.ctx, c.pdesc, c.p[Q], c.p[K], c.p[V], c.p[PAST],
                                                              c.p[DECAY], c.p[BETA], c.p[OUT], c.p[PRESENT], &need);
  tk_check(st == LINATTN_SUCCESS, "workspace_size of the base call: %s", linattn_last_error());
  if (need > 0 && need <= EC_SLOT_BYTES) {
    c.ws = ec_slots[EC_WS_SLOT];
    c.ws_size = need - 1;
    ec_fill_pattern();
    ec_expect("workspace one byte too small", "linear_attention", run_la(&c), LINATTN_ERROR_WORKSPACE_TOO_SMALL, "workspace");
    c.ws_size = 0;
    ec_fill_pattern();
    ec_expect("workspace size 0", "linear_attention", run_la(&c), LINATTN_ERROR_WORKSPACE_TOO_SMALL, "workspace");
    c.ws = ec_slots[EC_WS_SLOT] + 8; /* large enough but not 64-byte aligned */
    c.ws_size = need + 64;
    ec_fill_pattern();
    ec_expect("workspace misaligned", "linear_attention", run_la(&c), LINATTN_ERROR_INVALID_ARGUMENT, "workspace");
  } else {
    tk_note("LinearAttention base call needs %zu workspace bytes: too-small test skipped", need);
  }
  /* NULL workspace_size pointer */
  st = linattn_linear_attention_workspace_size(c.ctx, c.pdesc, c.p[Q], c.p[K], c.p[V], c.p[PAST], c.p[DECAY],
                                               c.p[BETA], c.p[OUT], c.p[PRESENT], NULL);
  ec_expect("NULL workspace_size pointer", "workspace_size", st, LINATTN_ERROR_INVALID_ARGUMENT, "workspace");
}

/* Valid calls near the edges: must succeed (and write). */
static void test_la_positive(void) {
  la_call c;
  struct {
    const char* name;
    la_shape s;
    int tweak;
  } pos[] = {
      {"base", la_base, 0},
      {"inverse GQA with the ORT flag", {2, 3, 2, 4, 4, 4, 3, LINATTN_UPDATE_GATED_DELTA, 1, 2, true, true,
                                         LINATTN_LA_ORT_CONTRIB, LINATTN_DTYPE_F32, LINATTN_DTYPE_F32}, 0},
      {"separate key heads with the ORT flag", {2, 3, 2, 4, 2, 4, 3, LINATTN_UPDATE_GATED_DELTA, 1, 1, true, true,
                                                LINATTN_LA_ORT_CONTRIB, LINATTN_DTYPE_F32, LINATTN_DTYPE_F32}, 0},
      {"present_state not wanted", la_base, 1},
      {"present_state == past_state (in place)", la_base, 2},
      {"explicit packed strides on states and inputs", la_base, 3},
      {"T = 0 with NULL data", la_base, 4},
      {"no past, present_state f16 with f32 activations", la_base, 5},
      {"linear rule, f16 activations, bf16 state", {1, 2, 2, 1, 1, 8, 8, LINATTN_UPDATE_LINEAR, 0, 0, true, true, 0,
                                                    LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16}, 0},
      {"d_k == 1 decay width H_kv", {1, 2, 2, 2, 2, 1, 4, LINATTN_UPDATE_GATED, 1, 0, false, true, 0,
                                     LINATTN_DTYPE_F32, LINATTN_DTYPE_F32}, 0},
  };
  for (size_t i = 0; i < sizeof pos / sizeof pos[0]; i++) {
    tk_context("LinearAttention valid: %s", pos[i].name);
    build_la(&c, pos[i].s);
    switch (pos[i].tweak) {
      case 1: c.p[PRESENT] = NULL; break;
      case 2: c.t[PRESENT].data = c.t[PAST].data; break;
      case 3: {
        int64_t ps[4] = {24, 12, 3, 1}, qs[3] = {48, 16, 1};
        memcpy(c.t[PAST].strides, ps, sizeof ps);
        memcpy(c.t[PRESENT].strides, ps, sizeof ps);
        memcpy(c.t[Q].strides, qs, sizeof qs);
        break;
      }
      case 4:
        for (int k = 0; k < 8; k++)
          if (c.t[k].rank == 3) {
            c.t[k].dims[1] = 0;
            c.t[k].data = NULL;
          }
        break;
      case 5: c.p[PAST] = NULL; c.t[PRESENT].dtype = LINATTN_DTYPE_F16; break;
      default: break;
    }
    ec_zero(); /* finite inputs */
    linattn_status st = run_la(&c);
    tk_check(st == LINATTN_SUCCESS, "%s: %s (%s)", pos[i].name, linattn_status_string(st), linattn_last_error());
    st = run_la_ws(&c);
    tk_check(st == LINATTN_SUCCESS, "%s workspace_size: %s (%s)", pos[i].name, linattn_status_string(st),
             linattn_last_error());
  }
}

static void test_infer_shapes(void) {
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.q_num_heads = 4;
  d.kv_num_heads = 2;
  int64_t q[3] = {2, 3, 16}, k[3] = {2, 3, 8}, v[3] = {2, 3, 6}, o[3], s[4];
  tk_context("infer_shapes");
  tk_check(linattn_linear_attention_infer_shapes(&d, q, k, v, o, s) == LINATTN_SUCCESS && o[2] == 12 && s[2] == 4 &&
               s[3] == 3,
           "infer_shapes base: %s", linattn_last_error());
  ec_expect("NULL desc", "infer_shapes", linattn_linear_attention_infer_shapes(NULL, q, k, v, o, s),
         LINATTN_ERROR_INVALID_ARGUMENT, "desc");
  d.kv_num_heads = 3;
  ec_expect("heads 4/3", "infer_shapes", linattn_linear_attention_infer_shapes(&d, q, k, v, o, s),
         LINATTN_ERROR_INVALID_ARGUMENT, "num_heads");
  d.kv_num_heads = 2;
  int64_t kbad[3] = {2, 3, 12};
  ec_expect("key width", "infer_shapes", linattn_linear_attention_infer_shapes(&d, q, kbad, v, o, s),
         LINATTN_ERROR_INVALID_ARGUMENT, "key");
  int64_t qbad[3] = {2, 3, 15};
  ec_expect("query width", "infer_shapes", linattn_linear_attention_infer_shapes(&d, qbad, k, v, o, s),
         LINATTN_ERROR_INVALID_ARGUMENT, "query");
  int64_t vbad[3] = {2, 4, 6};
  ec_expect("value tokens", "infer_shapes", linattn_linear_attention_infer_shapes(&d, q, k, vbad, o, s),
         LINATTN_ERROR_INVALID_ARGUMENT, "value");
  d.update_rule = (linattn_update_rule)17;
  ec_expect("rule 17", "infer_shapes", linattn_linear_attention_infer_shapes(&d, q, k, v, o, s),
         LINATTN_ERROR_INVALID_ARGUMENT, "rule");
  /* dims each of which is fine but whose element count overflows int64: no such tensor exists */
  linattn_linear_attention_desc_init(&d);
  d.q_num_heads = d.kv_num_heads = 1;
  const int64_t big = (int64_t)1 << 40, wide = (int64_t)1 << 33;
  int64_t qb[3] = {big, big, 4}, qw[3] = {1, 1, wide};
  ec_expect("output count overflows", "infer_shapes", linattn_linear_attention_infer_shapes(&d, qb, qb, qb, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "output");
  ec_expect("state count overflows", "infer_shapes", linattn_linear_attention_infer_shapes(&d, qw, qw, qw, o, s),
            LINATTN_ERROR_INVALID_ARGUMENT, "present_state");
}


/* ------------------------------------------------------------------ allocator hooks */

typedef struct alloc_log { int64_t allocs, frees, live, misaligned; } alloc_log;

static void* counting_alloc(void* user, size_t size, size_t alignment) {
  alloc_log* l = (alloc_log*)user;
  if (alignment == 0 || (alignment & (alignment - 1)) != 0 || alignment > 4096) {
    l->misaligned++; /* the contract: a power of two <= 4096 */
    return NULL;
  }
  void* p = tk_aligned_alloc(alignment < 64 ? 64 : alignment, size);
  l->allocs++;
  l->live++;
  return p;
}

static void counting_free(void* user, void* p) {
  alloc_log* l = (alloc_log*)user;
  if (!p) return;
  l->frees++;
  l->live--;
  tk_aligned_free(p);
}

static void* failing_alloc(void* user, size_t size, size_t alignment) {
  (void)user; (void)size; (void)alignment;
  return NULL;
}

/* The context and library-allocated workspaces go through the hooks and are all released. */
static void test_alloc_hooks(void) {
  tk_context("allocator hooks");
  alloc_log log = {0, 0, 0, 0};
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 2;
  o.alloc = counting_alloc;
  o.free = counting_free;
  o.alloc_user = &log;
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(&o, &ctx);
  if (!tk_check(st == LINATTN_SUCCESS, "context with hooks: %s", linattn_last_error())) return;
  int64_t after_create = log.allocs;
  tk_check(after_create >= 1, "the context itself was not allocated through the hook");
  la_call c;
  build_la(&c, la_base);
  c.ctx = ctx;
  size_t need = 0;
  linattn_linear_attention_workspace_size(ctx, c.pdesc, c.p[Q], c.p[K], c.p[V], c.p[PAST], c.p[DECAY], c.p[BETA],
                                          c.p[OUT], c.p[PRESENT], &need);
  ec_zero();
  st = run_la(&c);
  tk_check(st == LINATTN_SUCCESS, "call with hooks: %s", linattn_last_error());
  if (need > 0) tk_check(log.allocs > after_create, "workspace of %zu bytes not allocated through the hook", need);
  linattn_context_destroy(ctx);
  tk_check(log.live == 0 && log.allocs == log.frees, "hooks: %lld allocs, %lld frees after destroy",
           (long long)log.allocs, (long long)log.frees);
  tk_check(log.misaligned == 0, "hooks: %lld allocations asked for an alignment that is not a power of two <= 4096", (long long)log.misaligned);
  /* an allocator that fails: context creation reports out of memory */
  o.alloc = failing_alloc;
  ctx = NULL;
  st = linattn_context_create(&o, &ctx);
  tk_check(st == LINATTN_ERROR_OUT_OF_MEMORY && ctx == NULL, "failing allocator: context_create returned %s",
           linattn_status_string(st));
  if (ctx) linattn_context_destroy(ctx);
}

/* ------------------------------------------------------------------ small API surface */

static void test_misc_api(void) {
  tk_context("misc API");
  tk_check(linattn_version() == LINATTN_VERSION, "linattn_version %u vs header %u", linattn_version(),
           (unsigned)LINATTN_VERSION);
  tk_check(strcmp(linattn_version_string(), LINATTN_VERSION_STRING) == 0, "version string %s",
           linattn_version_string());
  for (int s = 0; s <= 6; s++) tk_check(linattn_status_string((linattn_status)s) != NULL, "status string %d NULL", s);
  tk_check(linattn_status_string((linattn_status)99) != NULL, "status string 99 NULL");
  tk_check(linattn_dtype_size(LINATTN_DTYPE_F32) == 4 && linattn_dtype_size(LINATTN_DTYPE_F16) == 2 &&
               linattn_dtype_size(LINATTN_DTYPE_BF16) == 2 && linattn_dtype_size(LINATTN_DTYPE_INVALID) == 0 &&
               linattn_dtype_size((linattn_dtype)42) == 0,
           "dtype sizes");
  tk_check(linattn_dtype_name((linattn_dtype)42) != NULL && linattn_isa_name((linattn_isa)42) != NULL,
           "names of unknown enums must not be NULL");
  tk_check(linattn_last_error() != NULL, "last_error NULL");
  tk_check(linattn_update_rule_from_string("linear") == LINATTN_UPDATE_LINEAR &&
               linattn_update_rule_from_string("gated") == LINATTN_UPDATE_GATED &&
               linattn_update_rule_from_string("delta") == LINATTN_UPDATE_DELTA &&
               linattn_update_rule_from_string("gated_delta") == LINATTN_UPDATE_GATED_DELTA &&
               linattn_update_rule_from_string("gated-delta") == LINATTN_UPDATE_INVALID &&
               linattn_update_rule_from_string("") == LINATTN_UPDATE_INVALID &&
               linattn_update_rule_from_string(NULL) == LINATTN_UPDATE_INVALID,
           "update rule names");
  tk_check(linattn_activation_from_string("none") == LINATTN_ACTIVATION_NONE &&
               linattn_activation_from_string("silu") == LINATTN_ACTIVATION_SILU &&
               linattn_activation_from_string("swish") == LINATTN_ACTIVATION_SILU &&
               linattn_activation_from_string("relu") == LINATTN_ACTIVATION_INVALID &&
               linattn_activation_from_string(NULL) == LINATTN_ACTIVATION_INVALID,
           "activation names");
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  tk_check(d.update_rule == LINATTN_UPDATE_GATED_DELTA && d.scale == 0.0f && d.chunk_size == 64 && d.flags == 0,
           "linear attention desc defaults");
  linattn_causal_conv_desc cd;
  linattn_causal_conv_desc_init(&cd);
  tk_check(cd.activation == LINATTN_ACTIVATION_NONE && (cd.dilation == 1 || cd.dilation == 0) && cd.channels_last == 0,
           "conv desc defaults");
  int64_t dims[2] = {3, 5};
  float buf[15];
  linattn_tensor t = linattn_make_tensor(buf, LINATTN_DTYPE_F32, 2, dims);
  tk_check(t.data == buf && t.rank == 2 && t.dims[0] == 3 && t.dims[1] == 5 && t.strides[0] == 0 && t.strides[1] == 0,
           "make_tensor");
  /* context creation errors */
  linattn_context* ctx = NULL;
  ec_fill_pattern();
  ec_expect("context_create NULL out pointer", "context_create", linattn_context_create(NULL, NULL),
         LINATTN_ERROR_INVALID_ARGUMENT, "context");
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.isa = (linattn_isa)42;
  linattn_status st = linattn_context_create(&o, &ctx);
  tk_check(st != LINATTN_SUCCESS && ctx == NULL, "context_create with isa 42: %s", linattn_status_string(st));
  if (st == LINATTN_SUCCESS) linattn_context_destroy(ctx);
  ctx = NULL;
  o.isa = (linattn_isa)(linattn_isa_count() + 1); /* one past the last family */
  st = linattn_context_create(&o, &ctx);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ctx == NULL && strstr(linattn_last_error(), "options.isa"),
           "context_create with isa %d: %s (%s)", (int)o.isa, linattn_status_string(st), linattn_last_error());
  if (st == LINATTN_SUCCESS) linattn_context_destroy(ctx);
  ctx = NULL;
  linattn_isa missing = LINATTN_ISA_AUTO; /* a family of the registry this build or CPU lacks */
  for (int isa = linattn_isa_count(); isa > LINATTN_ISA_AUTO; isa--)
    if (!linattn_isa_available((linattn_isa)isa)) missing = (linattn_isa)isa;
  if (missing != LINATTN_ISA_AUTO) {
    linattn_context_options_init(&o);
    o.isa = missing;
    st = linattn_context_create(&o, &ctx);
    tk_check(st == LINATTN_ERROR_UNSUPPORTED && ctx == NULL, "forcing unavailable isa %s: %s",
             linattn_isa_name(missing), linattn_status_string(st));
    if (st == LINATTN_SUCCESS) linattn_context_destroy(ctx);
    ctx = NULL;
  }
  for (int bad = -1; bad <= 3; bad += 4) {
    linattn_context_options_init(&o);
    o.state_stores = (linattn_state_stores)bad;
    st = linattn_context_create(&o, &ctx);
    tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ctx == NULL && strstr(linattn_last_error(), "options.state_stores"),
             "state_stores %d: %s (%s)", bad, linattn_status_string(st), linattn_last_error());
    if (st == LINATTN_SUCCESS) linattn_context_destroy(ctx);
    ctx = NULL;
  }
  for (int k = 0; k < 2; k++) { /* beyond the limit: an error naming it, never a silent clamp */
    linattn_context_options_init(&o);
    o.num_threads = k ? INT32_MAX : LINATTN_MAX_THREADS + 1;
    st = linattn_context_create(&o, &ctx);
    tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ctx == NULL && strstr(linattn_last_error(), "num_threads") &&
                 strstr(linattn_last_error(), "1024"),
             "num_threads %d: %s (%s)", o.num_threads, linattn_status_string(st), linattn_last_error());
    if (st == LINATTN_SUCCESS) linattn_context_destroy(ctx);
    ctx = NULL;
  }
  linattn_context_options_init(&o);
  o.num_threads = -3;
  st = linattn_context_create(&o, &ctx);
  tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ctx == NULL, "num_threads -3: %s", linattn_status_string(st));
  if (st == LINATTN_SUCCESS) linattn_context_destroy(ctx);
  ctx = NULL;
  st = linattn_context_create(NULL, &ctx);
  tk_check(st == LINATTN_SUCCESS && ctx && linattn_context_num_threads(ctx) >= 1, "default context: %s",
           linattn_last_error());
  if (ctx) linattn_context_destroy(ctx);
  linattn_context_destroy(NULL); /* must be a no-op */
  tk_check(linattn_isa_available(LINATTN_ISA_REFERENCE) && linattn_isa_available(LINATTN_ISA_SCALAR),
           "reference and scalar always available");
}

/* The ISA enumeration (the kernel registry seen through linattn.h): names round-trip and are
 * distinct, values outside 0 .. count are unknown, AUTO picks the last family available, and
 * a bad LINATTN_ISA names every family in its message. */
static void test_isa_enumeration(void) {
  tk_context("isa enumeration");
  const int count = linattn_isa_count();
  tk_check(count >= LINATTN_ISA_SCALAR, "linattn_isa_count %d", count);
  tk_check(linattn_isa_from_name("auto") == LINATTN_ISA_AUTO && !strcmp(linattn_isa_name(LINATTN_ISA_AUTO), "auto"),
           "auto");
  tk_check(linattn_isa_from_name("no-such-isa") == -1 && linattn_isa_from_name(NULL) == -1, "unknown name");
  tk_check(!strcmp(linattn_isa_name((linattn_isa)(count + 1)), "unknown") &&
               !strcmp(linattn_isa_name((linattn_isa)-1), "unknown") && !linattn_isa_available((linattn_isa)(count + 1)),
           "value past the last family");
  int last_available = LINATTN_ISA_AUTO;
  for (int isa = 1; isa <= count; isa++) {
    const char* name = linattn_isa_name((linattn_isa)isa);
    tk_check(strcmp(name, "unknown") != 0 && linattn_isa_from_name(name) == isa, "isa %d: name %s", isa, name);
    for (int other = 1; other < isa; other++)
      tk_check(strcmp(name, linattn_isa_name((linattn_isa)other)) != 0, "isa %d and %d share the name %s", isa, other, name);
    if (linattn_isa_available((linattn_isa)isa)) last_available = isa;
  }
  const char* env = getenv("LINATTN_ISA");
  char* saved = env ? strdup(env) : NULL;
  unsetenv("LINATTN_ISA");
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(NULL, &ctx);
  tk_check(st == LINATTN_SUCCESS && linattn_context_isa(ctx) == (linattn_isa)last_available,
           "auto context runs %s, want %s", linattn_isa_name(linattn_context_isa(ctx)),
           linattn_isa_name((linattn_isa)last_available));
  linattn_context_destroy(ctx);
  ctx = NULL;
  setenv("LINATTN_ISA", "no-such-isa", 1);
  st = linattn_context_create(NULL, &ctx);
  tk_check(st == LINATTN_ERROR_UNSUPPORTED && ctx == NULL, "LINATTN_ISA=no-such-isa: %s", linattn_status_string(st));
  for (int isa = 1; isa <= count; isa++)
    tk_check(strstr(linattn_last_error(), linattn_isa_name((linattn_isa)isa)) != NULL,
             "LINATTN_ISA message lacks %s: %s", linattn_isa_name((linattn_isa)isa), linattn_last_error());
  if (ctx) linattn_context_destroy(ctx);
  if (saved) setenv("LINATTN_ISA", saved, 1);
  else unsetenv("LINATTN_ISA");
  free(saved);
}

/* T = 0: nothing to compute whatever d_k and d_v; no workspace; present_state = past_state (or
 * zeros), as the spec's empty scan leaves the state. */
static void test_no_tokens(void) {
  tk_context("LinearAttention T = 0");
  la_call c;
  la_shape s = la_base;
  s.T = 0;
  build_la(&c, s);
  size_t ws = 12345;
  linattn_status st = linattn_linear_attention_workspace_size(c.ctx, c.pdesc, c.p[Q], c.p[K], c.p[V], c.p[PAST],
                                                              c.p[DECAY], c.p[BETA], c.p[OUT], c.p[PRESENT], &ws);
  tk_check(st == LINATTN_SUCCESS && ws == 0, "T = 0: workspace %zu (%s)", ws, linattn_last_error());
  for (int with_past = 0; with_past < 2; with_past++) {
    build_la(&c, s);
    if (!with_past) c.p[PAST] = NULL;
    ec_fill_pattern(); /* past_state holds the pattern; present_state is poisoned with it too */
    memset(ec_slots[PRESENT], 0xA5, 4 * 2 * 2 * 4 * 3);
    st = run_la(&c);
    tk_check(st == LINATTN_SUCCESS, "T = 0 (past %d): %s", with_past, linattn_last_error());
    const size_t bytes = 4 * 2 * 2 * 4 * 3; /* (B, H_kv, d_k, d_v) f32 */
    bool ok = true;
    for (size_t i = 0; i < bytes; i++) ok &= ec_slots[PRESENT][i] == (with_past ? ec_slots[PAST][i] : 0);
    tk_check(ok, "T = 0 (past %d): present_state is not %s", with_past, with_past ? "past_state" : "zeros");
  }
  /* d_k = d_v = 2^21 without state tensors: 2^42-element states that never exist */
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.update_rule = LINATTN_UPDATE_LINEAR;
  d.q_num_heads = d.kv_num_heads = 1;
  const int64_t dims[3] = {1, 0, (int64_t)1 << 21};
  linattn_tensor t = linattn_make_tensor(NULL, LINATTN_DTYPE_F32, 3, dims);
  ws = 12345;
  st = linattn_linear_attention_workspace_size(g_ctx, &d, &t, &t, &t, NULL, NULL, NULL, &t, NULL, &ws);
  tk_check(st == LINATTN_SUCCESS && ws == 0, "T = 0, d = 2^21: workspace %zu (%s)", ws, linattn_last_error());
  st = linattn_linear_attention(g_ctx, &d, &t, &t, &t, NULL, NULL, NULL, &t, NULL, NULL, 0);
  tk_check(st == LINATTN_SUCCESS, "T = 0, d = 2^21: %s", linattn_last_error());
}

/* ------------------------------------------------------------------ aliasing, exactly */

/* Marks (or tests, when mark == NULL) the bytes of a strided rank-3/4 view at byte offset off. */
static bool view_bytes(const linattn_tensor* t, size_t off, unsigned char* map, const unsigned char* test) {
  const int64_t esz = (int64_t)linattn_dtype_size(t->dtype);
  int64_t st[4], d[4] = {1, 1, 1, 1};
  int64_t s = 1;
  for (int i = t->rank - 1; i >= 0; i--) { /* all-zero strides: packed */
    st[i] = t->strides[0] || t->strides[1] || t->strides[2] ? t->strides[i] : s;
    s *= t->dims[i];
  }
  for (int i = 0; i < t->rank; i++) d[i] = t->dims[i];
  for (int64_t a = 0; a < d[0]; a++)
    for (int64_t b = 0; b < d[1]; b++)
      for (int64_t c = 0; c < d[2]; c++)
        for (int64_t e = 0; e < (t->rank > 3 ? d[3] : 1); e++) {
          const int64_t el = a * st[0] + b * st[1] + c * st[2] + (t->rank > 3 ? e * st[3] : 0);
          for (int64_t k = 0; k < esz; k++) {
            const size_t at = off + (size_t)(el * esz + k);
            if (map) map[at] = 1;
            else if (test[at]) return true;
          }
        }
  return false;
}

/* Random strided layouts of output (or present_state) and query inside one buffer: the call must
 * reject exactly the layouts whose element sets share a byte (brute force), and accept the rest
 * (interleaved and column-sliced views that only look overlapping by their address spans). */
static void test_overlap_is_exact(void) {
  enum { BUF = 8192 };
  unsigned char* buf = (unsigned char*)tk_aligned_alloc(64, BUF);
  unsigned char* map = (unsigned char*)calloc(BUF, 1);
  tk_rng r;
  tk_rng_init(&r, tk_seed() ^ 0x0e41a9ULL);
  int accepted = 0, rejected = 0;
  for (int it = 0; it < 3000; it++) {
    const bool present_case = it % 3 == 2; /* present_state (f32, packed) against an f16 query */
    la_shape s = {1 + tk_below(&r, 2), 1 + tk_below(&r, 3), 1, 1, 1, 1 + tk_below(&r, 4), 1 + tk_below(&r, 4),
                  LINATTN_UPDATE_LINEAR, 0, 0, false, present_case, 0,
                  present_case ? LINATTN_DTYPE_F16 : LINATTN_DTYPE_F32, LINATTN_DTYPE_F32};
    la_call c;
    build_la(&c, s);
    const int64_t esz = present_case ? 2 : 4;
    /* query: strides (s0, s1, 1) with s1 >= d_k and s0 >= T * s1 (a layout tview accepts) */
    const int64_t s1 = s.dk + tk_below(&r, 6), s0 = s.T * s1 + tk_below(&r, 5);
    int64_t qst[3] = {s0, s1, 1};
    memcpy(c.t[Q].strides, qst, sizeof qst);
    const size_t qoff = (size_t)(tk_below(&r, 64) * esz);
    c.t[Q].data = buf + qoff;
    linattn_tensor* o = present_case ? &c.t[PRESENT] : &c.t[OUT];
    if (!present_case && tk_below(&r, 2)) { /* output with the same strides half of the time */
      int64_t ost[3] = {s0, s1, 1};
      if (s.dv > s1) { ost[1] = s.dv + tk_below(&r, 3); ost[0] = s.T * ost[1] + tk_below(&r, 3); }
      memcpy(o->strides, ost, sizeof ost);
    } else if (!present_case) {
      const int64_t o1 = s.dv + tk_below(&r, 6);
      int64_t ost[3] = {s.T * o1 + tk_below(&r, 5), o1, 1};
      memcpy(o->strides, ost, sizeof ost);
    }
    const size_t ooff = (size_t)(tk_below(&r, 64) * (present_case ? 4 : esz));
    o->data = buf + ooff;
    memset(map, 0, BUF);
    view_bytes(&c.t[Q], qoff, map, NULL);
    const bool overlap = view_bytes(o, ooff, NULL, map);
    ec_zero();
    const linattn_status st = run_la(&c);
    if (overlap) {
      rejected++;
      if (!tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT && ec_contains(linattn_last_error(), "overlap"),
                    "iteration %d: overlapping %s and query accepted (%s)", it, present_case ? "present_state" : "output",
                    linattn_last_error()))
        break;
    } else {
      accepted++;
      if (!tk_check(st == LINATTN_SUCCESS, "iteration %d: disjoint %s and query rejected: %s", it,
                    present_case ? "present_state" : "output", linattn_last_error()))
        break;
    }
  }
  tk_check(accepted > 300 && rejected > 300, "overlap test: %d disjoint and %d overlapping layouts drawn", accepted,
           rejected);
  free(map);
  tk_aligned_free(buf);
}

int main(void) {
  tk_begin("test_api_errors");
  ec_init();
  g_ctx = tk_context_create(LINATTN_ISA_AUTO, 1);
  test_misc_api();
  test_isa_enumeration();
  test_alloc_hooks();
  test_la_positive();
  test_la_table();
  test_infer_shapes();
  test_overlap_is_exact();
  test_no_tokens();
  /* the valid edge calls (T = 0 with NULL data, in place, ORT layouts) on every kernel family */
  linattn_isa isas[8];
  int n = tk_available_isas(isas, 8);
  for (int i = 0; i < n; i++) {
    linattn_context_destroy(g_ctx);
    g_ctx = tk_context_create(isas[i], 2);
    test_la_positive();
  }
  linattn_context_destroy(g_ctx);
  ec_free();
  return tk_finish();
}
