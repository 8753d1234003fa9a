/*
 * VarlenCausalConvWithState cases: a packed batch of sequences, token-major (total, C), states
 * (B, C, k-1) as ONNX Runtime's op has them, updated in place; no bias (as in Qwen3.5).
 * Decode: B sequences of one token. Prefill: 4 sequences of 40/30/20/10 % of T tokens.
 * The baseline (call_baseline) is the dense channels-last conv on the same tokens: (B, 1, C)
 * with (B, k-1, C) states for decode, (1, T, C) for prefill.
 */
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct varlen_impl {
  linattn_varlen_conv_desc desc;
  linattn_varlen_batch batch;
  linattn_causal_conv_desc dense_desc;
  int32_t* cu;
  linattn_tensor x, y, w, state, dense_x, dense_y, dense_state;
  void *bufs[5];
} varlen_impl;

static linattn_status varlen_call(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes) {
  varlen_impl* K = (varlen_impl*)impl;
  (void)slot;
  return linattn_varlen_causal_conv_with_state(ctx, &K->desc, &K->batch, &K->x, &K->w, NULL, &K->state, NULL, NULL,
                                               &K->y, &K->state, NULL, ws, ws_bytes);
}

static linattn_status dense_call(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes) {
  varlen_impl* K = (varlen_impl*)impl;
  (void)slot;
  return linattn_causal_conv_with_state(ctx, &K->dense_desc, &K->dense_x, &K->w, NULL, &K->dense_state, &K->dense_y,
                                        &K->dense_state, ws, ws_bytes);
}

static size_t varlen_workspace(void* impl, linattn_context* ctx) {
  varlen_impl* K = (varlen_impl*)impl;
  size_t a = 0, b = 0;
  if (linattn_varlen_causal_conv_with_state_workspace_size(ctx, &K->desc, &K->batch, &K->x, &K->w, NULL, &K->state,
                                                           NULL, NULL, &K->y, &K->state, NULL, &a) ||
      linattn_causal_conv_with_state_workspace_size(ctx, &K->dense_desc, &K->dense_x, &K->w, NULL, &K->dense_state,
                                                    &K->dense_y, &K->dense_state, &b)) {
    fprintf(stderr, "linattn-bench: workspace query failed: %s\n", linattn_last_error());
    return SIZE_MAX;
  }
  return a > b ? a : b;
}

static void varlen_destroy(void* impl) {
  varlen_impl* K = (varlen_impl*)impl;
  for (int i = 0; i < 5; i++) bench_free(K->bufs[i]);
  free(K->cu);
  free(K);
}

static void* filled(size_t n, linattn_dtype dt, bench_rng* r, double scale) {
  void* p = bench_alloc(n * linattn_dtype_size(dt));
  for (size_t i = 0; i < n; i++) bench_store(p, i, dt, (float)(scale * bench_normal(r)));
  return p;
}

int bench_varlen_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out) {
  (void)llc_bytes;
  const conv_preset* p = c->conv;
  varlen_impl* K = (varlen_impl*)calloc(1, sizeof *K);
  if (!K) return -1;
  const bool decode = c->mode == BENCH_DECODE;
  const int64_t B = decode ? c->B : 4, total = decode ? c->B : c->T, C = p->channels, k = p->kernel, S = k - 1;
  K->cu = (int32_t*)calloc((size_t)B + 1, sizeof(int32_t));
  static const int share[4] = {40, 30, 20, 10};
  for (int64_t i = 0; i < B; i++)
    K->cu[i + 1] = decode ? (int32_t)(i + 1) : i == B - 1 ? (int32_t)total : K->cu[i] + (int32_t)(total * share[i] / 100);
  linattn_varlen_conv_desc_init(&K->desc);
  K->desc.activation = p->activation;
  K->batch.batch_size = B;
  K->batch.cu_seqlens = K->cu;
  linattn_causal_conv_desc_init(&K->dense_desc);
  K->dense_desc.activation = p->activation;
  K->dense_desc.channels_last = 1;

  const linattn_dtype dt = c->dtype;
  bench_rng r = {seed};
  const size_t nx = (size_t)(total * C), ns = (size_t)(B * C * S), nw = (size_t)(C * k);
  const int64_t dense_B = decode ? B : 1, dense_L = decode ? 1 : total;
  K->bufs[0] = filled(nx, dt, &r, 1.0);          /* input, shared by both calls */
  K->bufs[1] = bench_alloc(nx * linattn_dtype_size(dt)); /* output, shared */
  K->bufs[2] = filled(nw, dt, &r, 0.5);
  K->bufs[3] = filled(ns, dt, &r, 1.0);          /* (B, C, S) */
  K->bufs[4] = filled((size_t)(dense_B * S * C), dt, &r, 1.0);
  int64_t xd[2] = {total, C}, wd[3] = {C, 1, k}, sd[3] = {B, C, S};
  int64_t dxd[3] = {dense_B, dense_L, C}, dsd[3] = {dense_B, S, C};
  K->x = linattn_make_tensor(K->bufs[0], dt, 2, xd);
  K->y = linattn_make_tensor(K->bufs[1], dt, 2, xd);
  K->w = linattn_make_tensor(K->bufs[2], dt, 3, wd);
  K->state = linattn_make_tensor(K->bufs[3], dt, 3, sd);
  K->dense_x = linattn_make_tensor(K->bufs[0], dt, 3, dxd);
  K->dense_y = linattn_make_tensor(K->bufs[1], dt, 3, dxd);
  K->dense_state = linattn_make_tensor(K->bufs[4], dt, 3, dsd);

  memset(out, 0, sizeof *out);
  out->impl = K;
  out->num_slots = 1;
  out->flops = 2.0 * (double)k * (double)nx;
  out->bytes = (double)(2 * nx + nw + 2 * ns) * (double)linattn_dtype_size(dt);
  out->working_set = (double)(2 * nx + nw + ns) * (double)linattn_dtype_size(dt);
  out->call = varlen_call;
  out->call_baseline = dense_call;
  out->workspace_size = varlen_workspace;
  out->destroy = varlen_destroy;
  return 0;
}
