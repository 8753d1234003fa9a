/* The operators' shape rules on dims alone (see shape_rules.h). */
#include "api/shape_rules.h"
#include "api/tensor_check.h"

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

linattn_status check_dims_nonnegative(const char* name, const int64_t* dims, int32_t rank, const char* shape_doc) {
  for (int32_t i = 0; i < rank; i++)
    if (dims[i] < 0)
      return ERR("%s: dimension %d is negative (%lld), expected shape %s", name, (int)i, (long long)dims[i], shape_doc);
  return LINATTN_SUCCESS;
}

linattn_status check_element_count(const char* name, const int64_t* dims, int32_t rank, const char* shape_doc) {
  int64_t n = 1;
  for (int32_t i = 0; i < rank; i++)
    if (!linattn_mul_i64(n, dims[i], &n)) {
      char buf[128];
      return ERR("%s: element count of %s = %s overflows int64", name, shape_doc, tview_dims_str(dims, rank, buf, sizeof buf));
    }
  return LINATTN_SUCCESS;
}

/* ------------------------------------------------------------------ LinearAttention */

static const char* la_rule_name(linattn_update_rule rule) {
  switch (rule) {
    case LINATTN_UPDATE_LINEAR: return "linear";
    case LINATTN_UPDATE_GATED: return "gated";
    case LINATTN_UPDATE_DELTA: return "delta";
    default: return "gated_delta";
  }
}

linattn_status la_check_desc(const linattn_linear_attention_desc* d, la_dims* s) {
  if (!d) return ERR("desc: NULL");
  if (d->flags & ~(uint32_t)LINATTN_LA_ORT_CONTRIB) return ERR("desc.flags: unknown bits 0x%x", (unsigned)d->flags);
  switch (d->update_rule) {
    case LINATTN_UPDATE_LINEAR: case LINATTN_UPDATE_GATED: case LINATTN_UPDATE_DELTA: case LINATTN_UPDATE_GATED_DELTA: break;
    default: return ERR("desc.update_rule: unknown value %d (expected linear, gated, delta or gated_delta)", (int)d->update_rule);
  }
  s->rule = d->update_rule;
  s->contrib = (d->flags & LINATTN_LA_ORT_CONTRIB) != 0;
  s->gated = d->update_rule == LINATTN_UPDATE_GATED || d->update_rule == LINATTN_UPDATE_GATED_DELTA;
  s->delta = d->update_rule == LINATTN_UPDATE_DELTA || d->update_rule == LINATTN_UPDATE_GATED_DELTA;
  const int64_t Hq = d->q_num_heads, Hkv = d->kv_num_heads;
  if (Hq <= 0 || Hkv <= 0)
    return ERR("desc.q_num_heads / desc.kv_num_heads: must be positive, got %lld / %lld", (long long)Hq, (long long)Hkv);
  s->inverse_gqa = false;
  if (Hq % Hkv != 0) {
    if (!s->contrib)
      return ERR("desc.q_num_heads (%lld): must be a positive multiple of kv_num_heads (%lld)", (long long)Hq, (long long)Hkv);
    if (Hkv % Hq != 0)
      return ERR("desc.q_num_heads (%lld) / kv_num_heads (%lld): one must be a multiple of the other", (long long)Hq,
                 (long long)Hkv);
    s->inverse_gqa = true;
  }
  s->H_q = Hq;
  s->H_kv = Hkv;
  s->out_heads = Hq > Hkv ? Hq : Hkv;
  return LINATTN_SUCCESS;
}

linattn_status la_check_gate_presence(const la_dims* s, bool has_decay, bool has_beta) {
  const char* rule = la_rule_name(s->rule);
  if (s->gated && !has_decay) return ERR("decay: required by update_rule '%s', got NULL", rule);
  if (!s->gated && has_decay) return ERR("decay: update_rule '%s' forbids decay (pass NULL)", rule);
  if (s->delta && !has_beta) return ERR("beta: required by update_rule '%s', got NULL", rule);
  if (!s->delta && has_beta) return ERR("beta: update_rule '%s' forbids beta (pass NULL)", rule);
  return LINATTN_SUCCESS;
}

/* key (B, T, H_kv*d_k); with contrib also (B, T, n_k*d_k) with H_kv a multiple of n_k. */
static linattn_status la_check_key_width(la_dims* s, int64_t width) {
  const int64_t dk = s->d_k;
  if (!linattn_mul_i64(s->H_kv, dk, &s->key_width)) return ERR("key: kv_num_heads*d_k overflows");
  if (width == s->key_width) {
    s->n_k = s->H_kv;
  } else if (s->contrib && dk > 0 && width % dk == 0 && width / dk > 0 && s->H_kv % (width / dk) == 0) {
    s->n_k = width / dk;
  } else if (s->contrib) {
    return ERR("key: last dim %lld must be n_k*d_k (d_k = %lld from query) with kv_num_heads %lld a multiple of n_k",
               (long long)width, (long long)dk, (long long)s->H_kv);
  } else {
    return ERR("key: last dim %lld must equal kv_num_heads*d_k = %lld*%lld (d_k from query)", (long long)width,
               (long long)s->H_kv, (long long)dk);
  }
  return LINATTN_SUCCESS;
}

linattn_status la_check_qkv(la_dims* s, const int64_t q[3], const int64_t k[3], const int64_t v[3]) {
  linattn_status st;
  s->B = q[0];
  s->T = q[1];
  if (q[2] % s->H_q != 0)
    return ERR("query: last dim %lld not divisible by q_num_heads %lld", (long long)q[2], (long long)s->H_q);
  s->d_k = q[2] / s->H_q;
  if (k[0] != s->B || k[1] != s->T)
    return ERR("key: batch/sequence dims (%lld, %lld) differ from query's (%lld, %lld)", (long long)k[0],
               (long long)k[1], (long long)s->B, (long long)s->T);
  if (v[0] != s->B || v[1] != s->T)
    return ERR("value: batch/sequence dims (%lld, %lld) differ from query's (%lld, %lld)", (long long)v[0],
               (long long)v[1], (long long)s->B, (long long)s->T);
  if ((st = la_check_key_width(s, k[2]))) return st;
  if (v[2] % s->H_kv != 0)
    return ERR("value: last dim %lld not divisible by kv_num_heads %lld", (long long)v[2], (long long)s->H_kv);
  s->d_v = v[2] / s->H_kv;
  if (!linattn_mul_i64(s->out_heads, s->d_v, &s->out_width)) return ERR("output: width overflows");
  return LINATTN_SUCCESS;
}

linattn_status la_check_decay(const la_dims* s, const int64_t g[3], la_decay_kind* kind) {
  if (g[0] != s->B || g[1] != s->T)
    return ERR("decay: expected shape (B, T, ...) = (%lld, %lld, ...), got (%lld, %lld, %lld)", (long long)s->B,
               (long long)s->T, (long long)g[0], (long long)g[1], (long long)g[2]);
  if (g[2] == s->H_kv) *kind = LA_DECAY_PER_HEAD; /* checked first, as the reference does */
  else if (g[2] == s->key_width) *kind = LA_DECAY_PER_KEY;
  else
    return ERR("decay: last dim %lld must equal kv_num_heads (%lld) or kv_num_heads*d_k (%lld)", (long long)g[2],
               (long long)s->H_kv, (long long)s->key_width);
  return LINATTN_SUCCESS;
}

linattn_status la_check_beta(const la_dims* s, const int64_t b[3], la_beta_kind* kind) {
  if (b[0] != s->B || b[1] != s->T)
    return ERR("beta: expected shape (B, T, ...) = (%lld, %lld, ...), got (%lld, %lld, %lld)", (long long)s->B,
               (long long)s->T, (long long)b[0], (long long)b[1], (long long)b[2]);
  if (b[2] == s->H_kv) *kind = LA_BETA_PER_HEAD;
  else if (b[2] == 1) *kind = LA_BETA_SHARED;
  else return ERR("beta: last dim %lld must equal kv_num_heads (%lld) or 1", (long long)b[2], (long long)s->H_kv);
  return LINATTN_SUCCESS;
}

void la_output_dims(const la_dims* s, int64_t out[3]) {
  out[0] = s->B;
  out[1] = s->T;
  out[2] = s->out_width;
}

void la_state_dims(const la_dims* s, int64_t out[4]) {
  out[0] = s->B;
  out[1] = s->H_kv;
  out[2] = s->d_k;
  out[3] = s->d_v;
}

/* ------------------------------------------------------------------ CausalConvWithState */

linattn_status conv_check_desc(const linattn_causal_conv_desc* d, conv_dims* s) {
  if (!d) return ERR("desc: NULL");
  if (d->activation != LINATTN_ACTIVATION_NONE && d->activation != LINATTN_ACTIVATION_SILU)
    return ERR("desc.activation: unknown value %d (expected none or silu/swish)", (int)d->activation);
  if (d->dilation < 0) return ERR("desc.dilation: must be >= 1 (0 is read as 1), got %lld", (long long)d->dilation);
  if (d->channels_last != 0 && d->channels_last != 1)
    return ERR("desc.channels_last: must be 0 or 1, got %d", (int)d->channels_last);
  s->activation = d->activation;
  s->channels_last = d->channels_last != 0;
  s->dilation = d->dilation == 0 ? 1 : d->dilation;
  return LINATTN_SUCCESS;
}

const char* conv_input_doc(const conv_dims* s) { return s->channels_last ? "(B, L, C)" : "(B, C, L)"; }

const char* conv_state_doc(const conv_dims* s) {
  return s->channels_last ? "(B, (k-1)*dilation, C)" : "(B, C, (k-1)*dilation)";
}

linattn_status conv_check_input_weight(conv_dims* s, const int64_t x[3], const int64_t w[3]) {
  s->B = x[0];
  s->C = s->channels_last ? x[2] : x[1];
  s->L = s->channels_last ? x[1] : x[2];
  if (w[0] != s->C || w[1] != 1)
    return ERR("weight: expected shape (C, 1, k) with C = %lld, got (%lld, %lld, %lld)", (long long)s->C,
               (long long)w[0], (long long)w[1], (long long)w[2]);
  s->K = w[2];
  if (s->K < 1) return ERR("weight: kernel size k (last dim) must be >= 1, got %lld", (long long)s->K);
  if (!linattn_mul_i64(s->K - 1, s->dilation, &s->S)) return ERR("desc.dilation: (k-1)*dilation overflows");
  return LINATTN_SUCCESS;
}

void conv_state_dims(const conv_dims* s, int64_t out[3]) {
  out[0] = s->B;
  out[1] = s->channels_last ? s->S : s->C;
  out[2] = s->channels_last ? s->C : s->S;
}
