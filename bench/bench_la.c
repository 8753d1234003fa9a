/*
 * LinearAttention cases: buffers, realistic random data (unit-norm q/k per head, negative
 * log-decay, beta in (0,1)), one state (fp32, or the case's state_dtype) updated in place per rotation slot (the usual decode
 * loop), or with --present separate read from past and written to a present_state of the slot's
 * own (as ONNX Runtime does; past then stays the same every call). Cold cases rotate among enough slots that a slot's state has left the caches by the time
 * it is used again.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "bench.h"

typedef struct la_slot {
  linattn_tensor q, k, v, decay, beta, out, state, present; /* present: state itself when in place */
} la_slot;

typedef struct la_impl {
  linattn_linear_attention_desc desc;
  int has_decay, has_beta;
  int num_slots;
  la_slot* slots;
  char* arena;
} la_impl;

static size_t align64(size_t x) { return (x + 63) / 64 * 64; }

static linattn_status la_call(void* impl, linattn_context* ctx, int slot, void* ws, size_t ws_bytes) {
  la_impl* L = (la_impl*)impl;
  la_slot* s = &L->slots[slot];
  return linattn_linear_attention(ctx, &L->desc, &s->q, &s->k, &s->v, &s->state,
                                  L->has_decay ? &s->decay : NULL, L->has_beta ? &s->beta : NULL,
                                  &s->out, &s->present, ws, ws_bytes);
}

static size_t la_workspace(void* impl, linattn_context* ctx) {
  la_impl* L = (la_impl*)impl;
  la_slot* s = &L->slots[0];
  size_t n = 0;
  linattn_status st = linattn_linear_attention_workspace_size(
      ctx, &L->desc, &s->q, &s->k, &s->v, &s->state, L->has_decay ? &s->decay : NULL,
      L->has_beta ? &s->beta : NULL, &s->out, &s->present, &n);
  if (st != LINATTN_SUCCESS) {
    fprintf(stderr, "linattn-bench: workspace query failed: %s\n", linattn_last_error());
    return SIZE_MAX;
  }
  return n;
}

static void la_destroy(void* impl) {
  la_impl* L = (la_impl*)impl;
  bench_free(L->arena);
  free(L->slots);
  free(L);
}

/* Fills a (B, T, heads * d) array with per-head unit-norm rows. */
static void fill_unit_rows(void* p, linattn_dtype dt, int64_t rows, int64_t heads, int64_t d, bench_rng* r) {
  float* tmp = (float*)malloc((size_t)d * sizeof(float));
  for (int64_t i = 0; i < rows * heads; i++) {
    double n2 = 0;
    for (int64_t j = 0; j < d; j++) {
      tmp[j] = (float)bench_normal(r);
      n2 += (double)tmp[j] * tmp[j];
    }
    float inv = (float)(1.0 / sqrt(n2 > 0 ? n2 : 1.0));
    for (int64_t j = 0; j < d; j++) bench_store(p, (size_t)(i * d + j), dt, tmp[j] * inv);
  }
  free(tmp);
}

int bench_la_prepare(const bench_case* c, size_t llc_bytes, uint64_t seed, bench_instance* out) {
  const la_preset* p = c->la;
  la_impl* L = (la_impl*)calloc(1, sizeof *L);
  if (!L) return -1;
  linattn_linear_attention_desc_init(&L->desc);
  L->desc.update_rule = p->rule;
  L->desc.q_num_heads = p->q_heads;
  L->desc.kv_num_heads = p->kv_heads;
  L->desc.scale = p->scale;
  L->desc.flags = p->flags;
  L->has_decay = p->rule == LINATTN_UPDATE_GATED || p->rule == LINATTN_UPDATE_GATED_DELTA;
  L->has_beta = p->rule == LINATTN_UPDATE_DELTA || p->rule == LINATTN_UPDATE_GATED_DELTA;

  const int64_t B = c->B, T = c->T;
  const int64_t out_heads = p->q_heads > p->kv_heads ? p->q_heads : p->kv_heads;
  const int64_t decay_w = p->decay_per_key ? p->kv_heads * p->d_k : p->kv_heads;
  const size_t es = linattn_dtype_size(c->dtype);
  const linattn_dtype sdt = c->state_dtype ? c->state_dtype : LINATTN_DTYPE_F32;
  const size_t ss = linattn_dtype_size(sdt);
  int64_t qd[3] = {B, T, p->q_heads * p->d_k}, kd[3] = {B, T, p->key_heads * p->d_k};
  int64_t vd[3] = {B, T, p->kv_heads * p->d_v}, dd[3] = {B, T, decay_w}, bd[3] = {B, T, p->kv_heads};
  int64_t od[3] = {B, T, out_heads * p->d_v}, sd[4] = {B, p->kv_heads, p->d_k, p->d_v};
  size_t nq = (size_t)(B * T * qd[2]), nk = (size_t)(B * T * kd[2]), nv = (size_t)(B * T * vd[2]);
  size_t nd = L->has_decay ? (size_t)(B * T * decay_w) : 0, nb = L->has_beta ? (size_t)(B * T * bd[2]) : 0;
  size_t no = (size_t)(B * T * od[2]), ns = (size_t)(B * p->kv_heads * p->d_k * p->d_v);

  size_t off_q = 0, off_k = off_q + align64(nq * es), off_v = off_k + align64(nk * es);
  size_t off_d = off_v + align64(nv * es), off_b = off_d + align64(nd * es);
  size_t off_o = off_b + align64(nb * es), off_s = off_o + align64(no * es);
  size_t off_p = off_s + align64(ns * ss);
  size_t slot_bytes = off_p + (c->separate_present ? align64(ns * ss) : 0);
  double io_bytes = (double)(nq + nk + nv + nd + nb + no) * (double)es;
  double state_bytes = (double)ns * (double)ss;

  L->num_slots = c->cold ? bench_cold_slots((double)slot_bytes, llc_bytes) : 1;
  L->slots = (la_slot*)calloc((size_t)L->num_slots, sizeof(la_slot));
  L->arena = (char*)bench_alloc(slot_bytes * (size_t)L->num_slots);

  /* slot 0 gets the random data; the other slots are copies at other addresses */
  char* s0 = L->arena;
  bench_rng r = {seed};
  fill_unit_rows(s0 + off_q, c->dtype, B * T, p->q_heads, p->d_k, &r);
  fill_unit_rows(s0 + off_k, c->dtype, B * T, p->key_heads, p->d_k, &r);
  for (size_t i = 0; i < nv; i++) bench_store(s0 + off_v, i, c->dtype, (float)bench_normal(&r));
  for (size_t i = 0; i < nd; i++) bench_store(s0 + off_d, i, c->dtype, (float)-(0.02 + 0.3 * bench_uniform(&r)));
  for (size_t i = 0; i < nb; i++) bench_store(s0 + off_b, i, c->dtype, (float)(0.1 + 0.8 * bench_uniform(&r)));
  for (size_t i = 0; i < ns; i++) bench_store(s0 + off_s, i, sdt, (float)(0.05 * bench_normal(&r)));
  for (int s = 1; s < L->num_slots; s++) memcpy(L->arena + (size_t)s * slot_bytes, s0, slot_bytes);

  int* pos = bench_slot_positions(L->num_slots, seed);
  for (int s = 0; s < L->num_slots; s++) {
    char* base = L->arena + (size_t)pos[s] * slot_bytes;
    la_slot* sl = &L->slots[s];
    sl->q = linattn_make_tensor(base + off_q, c->dtype, 3, qd);
    sl->k = linattn_make_tensor(base + off_k, c->dtype, 3, kd);
    sl->v = linattn_make_tensor(base + off_v, c->dtype, 3, vd);
    sl->decay = linattn_make_tensor(base + off_d, c->dtype, 3, dd);
    sl->beta = linattn_make_tensor(base + off_b, c->dtype, 3, bd);
    sl->out = linattn_make_tensor(base + off_o, c->dtype, 3, od);
    sl->state = linattn_make_tensor(base + off_s, sdt, 4, sd);
    sl->present = c->separate_present ? linattn_make_tensor(base + off_p, sdt, 4, sd) : sl->state;
  }
  free(pos);


  memset(out, 0, sizeof *out);
  out->impl = L;
  out->num_slots = L->num_slots;
  out->flops = la_flops_per_token(p) * (double)(B * T);
  out->bytes = io_bytes + 2.0 * state_bytes; /* state read once and written once per call */
  out->working_set = io_bytes + (c->separate_present ? 2.0 : 1.0) * state_bytes;
  out->call = la_call;
  out->workspace_size = la_workspace;
  out->destroy = la_destroy;
  return 0;
}
