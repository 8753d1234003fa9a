/* The shape rules of each operator on dims alone, each rule with its one message. The operators
 * apply them to their tensors' dims, the public shape inference functions to the dims they are
 * given, and the ONNX Runtime plugin and the Python binding reach them through those. Pure: no
 * tensors, no context, no allocation; on failure the message names the argument. */
#ifndef LINATTN_SHAPE_RULES_H
#define LINATTN_SHAPE_RULES_H

#include "internal.h"

/* ------------------------------------------------------------------ LinearAttention */

typedef struct la_dims {
  linattn_update_rule rule;
  bool contrib;      /* LINATTN_LA_ORT_CONTRIB: inverse GQA and separate key heads allowed */
  bool gated, delta; /* the rule needs decay / beta */
  bool inverse_gqa;  /* contrib: kv_num_heads a multiple of q_num_heads */
  int64_t H_q, H_kv;
  int64_t n_k;       /* key heads: H_kv, or (contrib) a divisor of it */
  int64_t B, T, d_k, d_v;
  int64_t out_heads; /* max(H_q, H_kv) */
  int64_t key_width; /* H_kv * d_k: the width of a per-key decay */
  int64_t out_width; /* out_heads * d_v */
} la_dims;

/* The attributes: flags, update_rule, head counts. Fills rule, contrib, gated, delta, heads. */
linattn_status la_check_desc(const linattn_linear_attention_desc* desc, la_dims* s);

/* decay and beta present exactly when the rule needs them (has_*: the input is given). */
linattn_status la_check_gate_presence(const la_dims* s, bool has_decay, bool has_beta);

/* query, key and value dims (rank 3, each >= 0) against the attributes: fills B, T, d_k, d_v,
 * n_k, key_width, out_width. */
linattn_status la_check_qkv(la_dims* s, const int64_t query[3], const int64_t key[3], const int64_t value[3]);

/* decay (B, T, H_kv) or (B, T, H_kv * d_k); beta (B, T, H_kv) or (B, T, 1). */
linattn_status la_check_decay(const la_dims* s, const int64_t decay[3], la_decay_kind* kind);
linattn_status la_check_beta(const la_dims* s, const int64_t beta[3], la_beta_kind* kind);

void la_output_dims(const la_dims* s, int64_t out[3]); /* (B, T, out_width) */
void la_state_dims(const la_dims* s, int64_t out[4]);  /* (B, H_kv, d_k, d_v) */

#define LA_QUERY_DOC "(B, T, q_num_heads*d_k)"
#define LA_KEY_DOC "(B, T, kv_num_heads*d_k)"
#define LA_VALUE_DOC "(B, T, kv_num_heads*d_v)"
#define LA_DECAY_DOC "(B, T, kv_num_heads) or (B, T, kv_num_heads*d_k)"
#define LA_BETA_DOC "(B, T, kv_num_heads) or (B, T, 1)"
#define LA_STATE_DOC "(B, kv_num_heads, d_k, d_v)"
#define LA_OUTPUT_DOC "(B, T, max(q_num_heads, kv_num_heads)*d_v)"

/* ------------------------------------------------------------------ CausalConvWithState */

typedef struct conv_dims {
  linattn_activation activation;
  bool channels_last;
  int64_t dilation; /* >= 1 (desc 0 is read as 1) */
  int64_t B, C, L, K;
  int64_t S;        /* state positions: (K - 1) * dilation */
} conv_dims;

/* The attributes: activation, dilation, channels_last. */
linattn_status conv_check_desc(const linattn_causal_conv_desc* desc, conv_dims* s);

/* input (B, C, L) [channels_last (B, L, C)] and weight (C, 1, K) dims (rank 3, each >= 0):
 * fills B, C, L, K, S. */
linattn_status conv_check_input_weight(conv_dims* s, const int64_t input[3], const int64_t weight[3]);

/* (B, C, S) [channels_last (B, S, C)]; the element count is checked by whoever allocates it. */
void conv_state_dims(const conv_dims* s, int64_t out[3]);

const char* conv_input_doc(const conv_dims* s); /* "(B, C, L)" or "(B, L, C)" */
const char* conv_state_doc(const conv_dims* s);

/* ------------------------------------------------------------------ shared */

/* The element count of a shape (dims >= 0) fits int64. */
linattn_status check_element_count(const char* name, const int64_t* dims, int32_t rank, const char* shape_doc);

/* Every dim of a rank-`rank` shape >= 0 (the message names `name` and the expected shape). */
linattn_status check_dims_nonnegative(const char* name, const int64_t* dims, int32_t rank, const char* shape_doc);

#endif
