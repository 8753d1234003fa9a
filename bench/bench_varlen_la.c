/*
 * Packed (varlen) LinearAttention cases: a ragged batch, token-major (total, H*d) inputs, fp32
 * states in a pool of 2B slots named by permuted state_indices, updated in place (an engine's
 * continuous-batching step). Decode: B sequences of one token. Prefill: 4 sequences of
 * 40/30/20/10 % of T tokens.
 * The baseline (call_baseline) is the same work as dense calls: one linattn_linear_attention per
 * sequence, (1, length, H*d) views of the same rows, on its pool slot in place.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct vla_impl {
  linattn_linear_attention_desc desc;
  linattn_varlen_batch batch;
  int has_decay, has_beta;
  int64_t B;
  int32_t *cu, *idx;
  linattn_tensor q, k, v, decay, beta, out, pool;
  linattn_tensor *dq, *dk, *dv, *ddecay, *dbeta, *dout, *dstate; /* per sequence, for the dense calls */
  void* bufs[7];
} vla_impl;

static linattn_status vla_call(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes) {
  vla_impl* K = (vla_impl*)impl;
  (void)slot;
  return linattn_varlen_linear_attention(ctx, &K->desc, &K->batch, &K->q, &K->k, &K->v, &K->pool,
                                         K->has_decay ? &K->decay : NULL, K->has_beta ? &K->beta : NULL, &K->out,
                                         &K->pool, ws, ws_bytes);
}

static linattn_status vla_dense_calls(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes) {
  vla_impl* K = (vla_impl*)impl;
  (void)slot;
  for (int64_t i = 0; i < K->B; i++) {
    linattn_status st = linattn_linear_attention(ctx, &K->desc, &K->dq[i], &K->dk[i], &K->dv[i], &K->dstate[i],
                                                 K->has_decay ? &K->ddecay[i] : NULL, K->has_beta ? &K->dbeta[i] : NULL,
                                                 &K->dout[i], &K->dstate[i], ws, ws_bytes);
    if (st) return st;
  }
  return LINATTN_SUCCESS;
}

static size_t vla_workspace(void* impl, linattn_context* ctx) {
  vla_impl* K = (vla_impl*)impl;
  size_t most = 0, n = 0;
  if (linattn_varlen_linear_attention_workspace_size(ctx, &K->desc, &K->batch, &K->q, &K->k, &K->v, &K->pool,
                                                     K->has_decay ? &K->decay : NULL, K->has_beta ? &K->beta : NULL,
                                                     &K->out, &K->pool, &most))
    goto fail;
  for (int64_t i = 0; i < K->B; i++) {
    if (linattn_linear_attention_workspace_size(ctx, &K->desc, &K->dq[i], &K->dk[i], &K->dv[i], &K->dstate[i],
                                                K->has_decay ? &K->ddecay[i] : NULL, K->has_beta ? &K->dbeta[i] : NULL,
                                                &K->dout[i], &K->dstate[i], &n))
      goto fail;
    if (n > most) most = n;
  }
  return most;
fail:
  fprintf(stderr, "linattn-bench: workspace query failed: %s\n", linattn_last_error());
  return SIZE_MAX;
}

static void vla_destroy(void* impl) {
  vla_impl* K = (vla_impl*)impl;
  for (int i = 0; i < 7; i++) bench_free(K->bufs[i]);
  free(K->cu); free(K->idx);
  free(K->dq); free(K->dk); free(K->dv); free(K->ddecay); free(K->dbeta); free(K->dout); free(K->dstate);
  free(K);
}

static void* filled(size_t n, linattn_dtype dt, bench_rng* r, double lo, double hi, bool normal) {
  void* p = bench_alloc(n * linattn_dtype_size(dt));
  for (size_t i = 0; i < n; i++)
    bench_store(p, i, dt, (float)(normal ? lo * bench_normal(r) : lo + (hi - lo) * bench_uniform(r)));
  return p;
}

/* Rows [t0, t0 + len) of a (total, w) tensor as a (1, len, w) tensor. */
static linattn_tensor rows3(const linattn_tensor* t, int64_t t0, int64_t len) {
  const int64_t d[3] = {1, len, t->dims[1]};
  return linattn_make_tensor((char*)t->data + (size_t)(t0 * t->dims[1]) * linattn_dtype_size(t->dtype), t->dtype, 3, d);
}

static void vla_sequences(vla_impl* K, const bench_case* c) {
  const bool decode = c->mode == BENCH_DECODE;
  const int64_t B = K->B, total = decode ? B : c->T;
  static const int share[4] = {40, 30, 20, 10};
  for (int64_t i = 0; i < B; i++)
    K->cu[i + 1] = decode       ? (int32_t)(i + 1)
                   : i == B - 1 ? (int32_t)total
                                : K->cu[i] + (int32_t)(total * share[i] / 100);
  for (int64_t i = 0; i < 2 * B; i++) K->idx[i] = (int32_t)i;
  bench_rng r = {0x5eed};
  for (int64_t i = 2 * B - 1; i > 0; i--) { /* a fixed shuffle: slots out of order */
    const int64_t j = (int64_t)(bench_uniform(&r) * (double)(i + 1)) % (i + 1);
    const int32_t s = K->idx[i];
    K->idx[i] = K->idx[j], K->idx[j] = s;
  }
}

int bench_varlen_la_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out) {
  (void)llc_bytes;
  const la_preset* p = c->la;
  vla_impl* K = (vla_impl*)calloc(1, sizeof *K);
  if (!K) return -1;
  linattn_linear_attention_desc_init(&K->desc);
  K->desc.update_rule = p->rule;
  K->desc.q_num_heads = p->q_heads;
  K->desc.kv_num_heads = p->kv_heads;
  K->desc.scale = p->scale;
  K->desc.flags = p->flags;
  K->has_decay = p->rule == LINATTN_UPDATE_GATED || p->rule == LINATTN_UPDATE_GATED_DELTA;
  K->has_beta = p->rule == LINATTN_UPDATE_DELTA || p->rule == LINATTN_UPDATE_GATED_DELTA;
  const bool decode = c->mode == BENCH_DECODE;
  const int64_t B = decode ? c->B : 4, total = decode ? B : c->T, N = 2 * B;
  K->B = B;
  K->cu = (int32_t*)calloc((size_t)B + 1, sizeof(int32_t));
  K->idx = (int32_t*)calloc((size_t)N, sizeof(int32_t));
  vla_sequences(K, c);
  K->batch = (linattn_varlen_batch){B, K->cu, NULL, K->idx, NULL};

  const linattn_dtype dt = c->dtype;
  const int64_t out_heads = p->q_heads > p->kv_heads ? p->q_heads : p->kv_heads;
  const int64_t w[6] = {p->q_heads * p->d_k, p->key_heads * p->d_k, p->kv_heads * p->d_v,
                        p->decay_per_key ? p->kv_heads * p->d_k : p->kv_heads, p->kv_heads, out_heads * p->d_v};
  const int64_t slot_elems = p->kv_heads * p->d_k * p->d_v;
  bench_rng r = {seed};
  K->bufs[0] = filled((size_t)(total * w[0]), dt, &r, 0.1, 0, true);
  K->bufs[1] = filled((size_t)(total * w[1]), dt, &r, 0.1, 0, true);
  K->bufs[2] = filled((size_t)(total * w[2]), dt, &r, 1.0, 0, true);
  K->bufs[3] = filled((size_t)(total * w[3]), dt, &r, -0.32, -0.02, false);
  K->bufs[4] = filled((size_t)(total * w[4]), dt, &r, 0.1, 0.9, false);
  K->bufs[5] = bench_alloc((size_t)(total * w[5]) * linattn_dtype_size(dt));
  K->bufs[6] = filled((size_t)(N * slot_elems), LINATTN_DTYPE_F32, &r, 0.05, 0, true);
  linattn_tensor* ts[6] = {&K->q, &K->k, &K->v, &K->decay, &K->beta, &K->out};
  for (int i = 0; i < 6; i++) {
    const int64_t d[2] = {total, w[i]};
    *ts[i] = linattn_make_tensor(K->bufs[i], dt, 2, d);
  }
  const int64_t pd[4] = {N, p->kv_heads, p->d_k, p->d_v}, sd[4] = {1, p->kv_heads, p->d_k, p->d_v};
  K->pool = linattn_make_tensor(K->bufs[6], LINATTN_DTYPE_F32, 4, pd);
  linattn_tensor** dts[7] = {&K->dq, &K->dk, &K->dv, &K->ddecay, &K->dbeta, &K->dout, &K->dstate};
  for (int i = 0; i < 7; i++) *dts[i] = (linattn_tensor*)calloc((size_t)B, sizeof(linattn_tensor));
  for (int64_t i = 0; i < B; i++) {
    const int64_t t0 = K->cu[i], len = K->cu[i + 1] - t0;
    for (int j = 0; j < 6; j++) (*dts[j])[i] = rows3(ts[j], t0, len);
    K->dstate[i] = linattn_make_tensor((float*)K->bufs[6] + K->idx[i] * slot_elems, LINATTN_DTYPE_F32, 4, sd);
  }

  memset(out, 0, sizeof *out);
  out->impl = K;
  out->num_slots = 1;
  double io = 0;
  for (int i = 0; i < 6; i++) io += (double)(total * w[i]);
  io *= (double)linattn_dtype_size(dt);
  const double state_bytes = (double)(B * slot_elems) * sizeof(float);
  out->flops = la_flops_per_token(p) * (double)total;
  out->bytes = io + 2.0 * state_bytes;
  out->working_set = io + state_bytes;
  out->call = vla_call;
  out->call_baseline = vla_dense_calls;
  out->workspace_size = vla_workspace;
  out->destroy = vla_destroy;
  return 0;
}
