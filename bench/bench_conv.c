/*
 * CausalConvWithState cases: channels-first (B, C, L) or channels-last (B, L, C), weight
 * (C, 1, k), no bias (as in Qwen3.5), the state updated in place per rotation slot.
 */
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct conv_slot {
  linattn_tensor x, y, state;
} conv_slot;

typedef struct conv_impl {
  linattn_causal_conv_desc desc;
  linattn_tensor weight;
  int num_slots;
  conv_slot* slots;
  char* arena;
  void* weight_buf;
} conv_impl;

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

static linattn_status conv_call(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes) {
  conv_impl* K = (conv_impl*)impl;
  conv_slot* s = &K->slots[slot];
  return linattn_causal_conv_with_state(ctx, &K->desc, &s->x, &K->weight, NULL, &s->state, &s->y,
                                        &s->state, ws, ws_bytes);
}

static size_t conv_workspace(void* impl, linattn_context* ctx) {
  conv_impl* K = (conv_impl*)impl;
  conv_slot* s = &K->slots[0];
  size_t n = 0;
  if (linattn_causal_conv_with_state_workspace_size(ctx, &K->desc, &s->x, &K->weight, NULL, &s->state,
                                                    &s->y, &s->state, &n) != LINATTN_SUCCESS) {
    fprintf(stderr, "linattn-bench: workspace query failed: %s\n", linattn_last_error());
    return SIZE_MAX;
  }
  return n;
}

static void conv_destroy(void* impl) {
  conv_impl* K = (conv_impl*)impl;
  bench_free(K->arena);
  bench_free(K->weight_buf);
  free(K->slots);
  free(K);
}

int bench_conv_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out) {
  const conv_preset* p = c->conv;
  conv_impl* K = (conv_impl*)calloc(1, sizeof *K);
  if (!K) return -1;
  linattn_causal_conv_desc_init(&K->desc);
  K->desc.activation = p->activation;
  K->desc.channels_last = c->channels_last;

  const int64_t B = c->B, C = p->channels, Lx = c->T, k = p->kernel, S = k - 1;
  const size_t es = linattn_dtype_size(c->dtype);
  int64_t xd[3], sd[3], wd[3] = {C, 1, k};
  if (c->channels_last) {
    xd[0] = B; xd[1] = Lx; xd[2] = C;
    sd[0] = B; sd[1] = S; sd[2] = C;
  } else {
    xd[0] = B; xd[1] = C; xd[2] = Lx;
    sd[0] = B; sd[1] = C; sd[2] = S;
  }
  size_t nx = (size_t)(B * C * Lx), ns = (size_t)(B * C * S), nw = (size_t)(C * k);
  size_t off_x = 0, off_y = align64(nx * es), off_s = off_y + align64(nx * es);
  size_t slot_bytes = off_s + align64(ns * es);

  K->num_slots = c->cold ? bench_cold_slots((double)slot_bytes, llc_bytes) : 1;
  K->slots = (conv_slot*)calloc((size_t)K->num_slots, sizeof(conv_slot));
  K->arena = (char*)bench_alloc(slot_bytes * (size_t)K->num_slots);
  K->weight_buf = bench_alloc(nw * es);

  bench_rng r = {seed};
  char* s0 = K->arena;
  for (size_t i = 0; i < nx; i++) bench_store(s0 + off_x, i, c->dtype, (float)bench_normal(&r));
  for (size_t i = 0; i < ns; i++) bench_store(s0 + off_s, i, c->dtype, (float)bench_normal(&r));
  for (size_t i = 0; i < nw; i++) bench_store(K->weight_buf, i, c->dtype, (float)(0.5 * bench_normal(&r)));
  for (int s = 1; s < K->num_slots; s++) memcpy(K->arena + (size_t)s * slot_bytes, s0, slot_bytes);

  K->weight = linattn_make_tensor(K->weight_buf, c->dtype, 3, wd);
  int* pos = bench_slot_positions(K->num_slots, seed);
  for (int s = 0; s < K->num_slots; s++) {
    char* base = K->arena + (size_t)pos[s] * slot_bytes;
    K->slots[s].x = linattn_make_tensor(base + off_x, c->dtype, 3, xd);
    K->slots[s].y = linattn_make_tensor(base + off_y, c->dtype, 3, xd);
    K->slots[s].state = linattn_make_tensor(base + off_s, c->dtype, 3, sd);
  }
  free(pos);


  memset(out, 0, sizeof *out);
  out->impl = K;
  out->num_slots = K->num_slots;
  out->flops = 2.0 * (double)k * (double)nx; /* taps only; SiLU not counted */
  /* input read, output written, weights read, state read and written */
  out->bytes = (double)(2 * nx + nw + 2 * ns) * (double)es;
  out->working_set = (double)(2 * nx + nw + ns) * (double)es;
  out->call = conv_call;
  out->workspace_size = conv_workspace;
  out->destroy = conv_destroy;
  return 0;
}
