/*
 * libFuzzer target for linattn_linear_attention (also built as a plain corpus-replay program).
 *
 * Each input describes one call: shapes, dtypes, strides, aliasing, optional inputs, attributes,
 * workspace handling, ISA and threading, then one of three modes:
 *  - valid: a consistent call; it must succeed, write every output element and nothing else,
 *    match a float64 oracle (via the reference kernels) and the reference kernels (via the
 *    chosen ISA), and give the same bits with 1 thread as with the chosen threading;
 *  - invalid: one perturbation that the header makes an error; the call must fail with a
 *    message and leave every byte untouched, with the same status on every ISA;
 *  - arbitrary: raw mutations of descriptors; whatever the status, it must be the same on the
 *    chosen ISA and on the reference kernels, and outputs are untouched on failure and agree
 *    on success.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

enum { Q, K, V, PAST, DECAY, BETA, OUT, PRESENT, NT };
static const char* const la_names[NT] = {"query", "key", "value", "past_state", "decay", "beta", "output", "present_state"};


typedef struct la_case {
  linattn_linear_attention_desc desc;
  int64_t B, T, Hq, Hkv, nk, dk, dv, out_heads;
  int64_t W; /* desc.state_window of a valid case (apply_window) */
  bool contrib, inverse;
  int decay_kind, beta_kind; /* 0 absent, 1 per head, 2 per key / shared */
  linattn_dtype tdt, sdt;
  bool has_past, has_present, in_place;
  int ws_mode;
  int isa, threads, host;
  int tune; /* tuning entry of the chosen ISA's contexts (fz_pick_tuning), read last */
  bool desc_null, ctx_null;
  int expect;
  const char* what;
  int kmode, dmode, bmode;
  uint64_t seed;
  double* vals[NT];
  fz_call call;
} la_case;

static void set_rank3(fz_tensor* t, int64_t d0, int64_t d1, int64_t d2) {
  t->d.rank = 3;
  t->d.dims[0] = d0;
  t->d.dims[1] = d1;
  t->d.dims[2] = d2;
  t->d.dims[3] = 0;
}

/* ------------------------------------------------------------------ building a valid call */

/* Bytes of all tensors of the valid call (the state twice: past and present). */
static int64_t case_bytes(const la_case* c) {
  const int64_t te = (int64_t)fz_esize(c->tdt), se = (int64_t)fz_esize(c->sdt);
  const int64_t decay_w = c->decay_kind == 2 ? c->Hkv * c->dk : c->decay_kind ? c->Hkv : 0;
  const int64_t width = (c->Hq + c->nk) * c->dk + (c->Hkv + c->out_heads) * c->dv + decay_w + (c->beta_kind ? c->Hkv : 0);
  return te * c->B * c->T * width + 2 * se * c->B * c->Hkv * c->dk * c->dv;
}

static void build_valid(la_case* c, fz_reader* r) {
  static const int64_t Bc[] = {1, 2, 1, 0}, Tc[] = {1, 2, 3, 5, 4, 1, 0, 7};
  static const int64_t Tr[] = {16, 17, 31, 33, 40, 65};
  static const int64_t dc[] = {2, 3, 4, 1, 5, 8, 6, 7};
  static const int64_t dkr[] = {0, 16, 17, 32, 33}, dvr[] = {0, 16, 17, 33, 63, 64, 65, 80};
  memset(c, 0, sizeof *c);
  linattn_linear_attention_desc_init(&c->desc);
  c->desc.update_rule = (linattn_update_rule)(1 + fz_pick(r, 4));
  c->B = Bc[fz_pick(r, 4)];
  c->T = fz_pick_dim(r, Tc, 8, Tr, 6);
  c->dk = fz_pick_dim(r, dc, 8, dkr, 5);
  c->dv = fz_pick_dim(r, dc, 8, dvr, 8);
  c->contrib = fz_chance(r, 25);
  c->desc.flags = c->contrib ? LINATTN_LA_ORT_CONTRIB : 0;
  const int heads_kind = fz_pick(r, 6);
  const int64_t base = 1 + fz_pick(r, 3), ratio = 1 + fz_pick(r, 3);
  if (heads_kind <= 2) { /* equal heads */
    c->Hq = c->Hkv = base;
  } else if (heads_kind <= 4 || !c->contrib) { /* GQA / MQA */
    c->Hkv = base;
    c->Hq = base * (ratio + (ratio == 1));
  } else { /* inverse GQA (ORT) */
    c->Hq = base;
    c->Hkv = base * (ratio + (ratio == 1));
    c->inverse = true;
  }
  c->nk = c->Hkv;
  if (c->contrib && fz_chance(r, 40)) { /* separate key heads: a divisor of H_kv */
    int64_t divs[8], nd = 0;
    for (int64_t d = 1; d <= c->Hkv; d++)
      if (c->Hkv % d == 0) divs[nd++] = d;
    c->nk = divs[fz_pick(r, (int)nd)];
  }
  c->out_heads = c->Hq > c->Hkv ? c->Hq : c->Hkv;
  c->desc.q_num_heads = c->Hq;
  c->desc.kv_num_heads = c->Hkv;
  static const float scales[] = {0.0f, 0.0f, 0.25f, -0.5f, 1.0f, 3.0f};
  c->desc.scale = scales[fz_pick(r, 6)];
  c->desc.chunk_size = fz_chance(r, 20) ? (int64_t)fz_pick(r, 130) : 64;
  const bool gated = c->desc.update_rule == LINATTN_UPDATE_GATED || c->desc.update_rule == LINATTN_UPDATE_GATED_DELTA;
  const bool delta = c->desc.update_rule == LINATTN_UPDATE_DELTA || c->desc.update_rule == LINATTN_UPDATE_GATED_DELTA;
  c->decay_kind = gated ? 1 + fz_pick(r, 2) : 0;
  c->beta_kind = delta ? 1 + fz_pick(r, 2) : 0;
  c->tdt = fz_dtypes[fz_pick(r, 3)];
  c->has_past = fz_chance(r, 55);
  c->has_present = !fz_chance(r, 15);
  c->sdt = c->has_past || fz_chance(r, 50) ? fz_dtypes[fz_pick(r, 3)] : c->tdt;
  c->in_place = c->has_past && c->has_present && fz_chance(r, 40);
  /* large rare dims come with small others */
  while (case_bytes(c) > FZ_BYTE_BUDGET && c->T > 1) c->T = (c->T + 1) / 2;
  while (case_bytes(c) > FZ_BYTE_BUDGET && c->B > 1) c->B = 1;
  while (case_bytes(c) > FZ_BYTE_BUDGET && c->dk > 1) c->dk = (c->dk + 1) / 2;
  while (case_bytes(c) > FZ_BYTE_BUDGET && c->dv > 1) c->dv = (c->dv + 1) / 2;
  c->ws_mode = fz_pick(r, 3);
  c->isa = fz_pick_isa(r);
  c->threads = fz_pick_threads(r);
  c->host = fz_chance(r, 15);
  c->kmode = fz_pick(r, 5);
  c->dmode = fz_pick(r, 6);
  c->bmode = fz_pick(r, 4);
  c->seed = fz_u32(r);
  c->expect = EXPECT_VALID;
  c->what = "valid";

  fz_call* k = &c->call;
  fz_init_tensors(k, NT, la_names, 1u << OUT | 1u << PRESENT, c->tdt);
  set_rank3(&k->t[Q], c->B, c->T, c->Hq * c->dk);
  set_rank3(&k->t[K], c->B, c->T, c->nk * c->dk);
  set_rank3(&k->t[V], c->B, c->T, c->Hkv * c->dv);
  set_rank3(&k->t[DECAY], c->B, c->T, c->decay_kind == 2 ? c->Hkv * c->dk : c->Hkv);
  set_rank3(&k->t[BETA], c->B, c->T, c->beta_kind == 2 ? 1 : c->Hkv);
  set_rank3(&k->t[OUT], c->B, c->T, c->out_heads * c->dv);
  k->t[DECAY].passed = c->decay_kind != 0;
  k->t[BETA].passed = c->beta_kind != 0;
  for (int i = PAST; i <= PRESENT; i += PRESENT - PAST) {
    fz_tensor* t = &k->t[i];
    t->d.rank = 4;
    t->d.dims[0] = c->B;
    t->d.dims[1] = c->Hkv;
    t->d.dims[2] = c->dk;
    t->d.dims[3] = c->dv;
    t->d.dtype = c->sdt;
    if (fz_chance(r, 15)) { /* explicit packed strides are allowed too */
      t->d.strides[3] = 1;
      t->d.strides[2] = c->dv;
      t->d.strides[1] = c->dk * c->dv;
      t->d.strides[0] = c->Hkv * c->dk * c->dv;
    }
  }
  k->t[PAST].passed = c->has_past;
  k->t[PRESENT].passed = c->has_present;
  if (c->in_place) {
    k->t[PRESENT].share_with = PAST;
    k->t[PRESENT].d.strides[0] = k->t[PRESENT].d.strides[1] = k->t[PRESENT].d.strides[2] = k->t[PRESENT].d.strides[3] = 0;
    k->t[PAST].d.strides[0] = k->t[PAST].d.strides[1] = k->t[PAST].d.strides[2] = k->t[PAST].d.strides[3] = 0;
  }
  /* strides of the rank-3 tensors */
  const int fused = fz_pick(r, 4); /* 0: q/k/v as views of one fused projection row */
  for (int i = 0; i < NT; i++) {
    if (i == PAST || i == PRESENT) continue;
    fz_tensor* t = &k->t[i];
    const int mode = fz_pick(r, 5), pad1 = fz_pick(r, 3), pad0 = fz_pick(r, 5); /* in this order */
    fz_strides3(mode, t->d.dims, pad1, pad0, t->d.strides);
  }
  if (fused == 0 && c->B > 0 && c->T > 0) {
    const int64_t qw = c->Hq * c->dk, kw = c->nk * c->dk, vw = c->Hkv * c->dv, pad = fz_pick(r, 3);
    const int64_t row = qw + kw + vw + pad;
    const bool batch_minor = fz_chance(r, 30);
    for (int i = Q; i <= V; i++) {
      fz_tensor* t = &k->t[i];
      t->d.strides[2] = 1;
      t->d.strides[1] = batch_minor ? row * c->B : row;
      t->d.strides[0] = batch_minor ? row : row * c->T;
    }
    k->t[K].share_with = Q;
    k->t[K].share_offset = qw;
    k->t[V].share_with = Q;
    k->t[V].share_offset = qw + kw;
  }
  /* zero-element tensors may have data == NULL */
  fz_null_empty(k, false, r);
  if (k->t[PAST].null_data) k->t[PRESENT].null_data = k->t[PRESENT].null_data || c->in_place;
}

/* ------------------------------------------------------------------ perturbations */

static int64_t total_numel(const fz_tensor* t) { return fz_numel(&t->d); }

/* Applies perturbation `id`; returns its name, or NULL when it does not apply to this call. */
static const char* perturb(la_case* c, fz_reader* r, int id) {
  fz_call* k = &c->call;
  fz_tensor* t = k->t;
  const bool gated = c->decay_kind != 0, delta = c->beta_kind != 0;
  switch (id) {
    case 0: {
      static const int bad[] = {0, 5, -1, 99};
      c->desc.update_rule = (linattn_update_rule)bad[fz_pick(r, 4)];
      return "update_rule invalid";
    }
    case 1:
      if (fz_chance(r, 50)) c->desc.q_num_heads = -(int64_t)fz_pick(r, 2);
      else c->desc.kv_num_heads = -(int64_t)fz_pick(r, 2);
      return "heads not positive";
    case 2:
      if (!c->contrib) {
        c->desc.kv_num_heads = c->desc.q_num_heads + 1;
      } else {
        c->desc.q_num_heads = 2;
        c->desc.kv_num_heads = 3;
        if (fz_chance(r, 50)) c->desc.q_num_heads = 3, c->desc.kv_num_heads = 2;
      }
      return "heads not multiples";
    case 3: {
      const int i = (int[]){Q, K, V, OUT, DECAY, BETA}[fz_pick(r, 6)];
      if (!t[i].passed) return NULL;
      if (fz_chance(r, 50)) {
        t[i].d.rank = 2;
        t[i].d.dims[1] *= t[i].d.dims[2];
      } else {
        t[i].d.rank = 4;
        t[i].d.dims[3] = 1;
      }
      memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      t[i].share_with = -1;
      return "rank-3 tensor of wrong rank";
    }
    case 4:
      if (c->Hq < 2) return NULL;
      t[Q].d.dims[2] += 1;
      return "query width not divisible by q_num_heads";
    case 5:
      t[K].d.dims[2] = c->Hkv * c->dk + 1;
      return "key width not H_kv*d_k (nor n_k*d_k)";
    case 6:
      if (c->Hkv < 2) return NULL;
      t[V].d.dims[2] += 1;
      return "value width not divisible";
    case 7: {
      const int i = (int[]){K, V, DECAY, BETA, OUT, PAST, PRESENT}[fz_pick(r, 7)];
      if (!t[i].passed) return NULL;
      t[i].d.dims[0] += 1;
      return "batch mismatch";
    }
    case 8: {
      const int i = (int[]){K, V, DECAY, BETA, OUT}[fz_pick(r, 5)];
      if (!t[i].passed) return NULL;
      t[i].d.dims[1] += 1;
      return "sequence length mismatch";
    }
    case 9:
      if (gated) t[DECAY].passed = false;
      else t[DECAY].passed = true, set_rank3(&t[DECAY], c->B, c->T, c->Hkv);
      return gated ? "decay missing" : "decay given for a non-gated rule";
    case 10:
      if (delta) t[BETA].passed = false;
      else t[BETA].passed = true, set_rank3(&t[BETA], c->B, c->T, c->Hkv);
      return delta ? "beta missing" : "beta given for a non-delta rule";
    case 11:
      if (!gated) return NULL;
      t[DECAY].d.dims[2] = (c->Hkv > c->Hkv * c->dk ? c->Hkv : c->Hkv * c->dk) + 1;
      return "decay width invalid";
    case 12:
      if (!delta) return NULL;
      t[BETA].d.dims[2] = c->Hkv + 1;
      return "beta width invalid";
    case 13: {
      const int i = fz_chance(r, 50) ? PAST : PRESENT;
      if (!t[i].passed) return NULL;
      if (fz_chance(r, 20)) {
        t[i].d.rank = 3;
      } else {
        t[i].d.dims[1 + fz_pick(r, 3)] += 1;
      }
      t[i].share_with = -1;
      memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      return "state shape wrong";
    }
    case 14:
      t[OUT].d.dims[2] += 1;
      return "output width wrong";
    case 15: {
      const int i = (int[]){K, V, DECAY, BETA, OUT}[fz_pick(r, 5)];
      if (!t[i].passed) return NULL;
      t[i].d.dtype = fz_other_dtype(t[i].d.dtype, r, LINATTN_DTYPE_BF16);
      t[i].share_with = -1;
      return "dtype differs from query";
    }
    case 16:
      if (!c->has_past || !c->has_present) return NULL;
      t[PRESENT].d.dtype = fz_other_dtype(t[PAST].d.dtype, r, LINATTN_DTYPE_BF16);
      t[PRESENT].share_with = -1;
      return "present dtype differs from past";
    case 17: {
      const int i = fz_pick(r, NT);
      if (!t[i].passed) return NULL;
      t[i].d.dtype = (linattn_dtype)(fz_chance(r, 50) ? 0 : 4 + fz_pick(r, 3));
      t[i].share_with = -1;
      for (int j = 0; j < NT; j++)
        if (t[j].share_with == i) t[j].share_with = -1;
      return "invalid dtype value";
    }
    case 18: {
      const int i = fz_pick(r, NT);
      if (!t[i].passed || total_numel(&t[i]) <= 0) return NULL;
      t[i].null_data = true;
      for (int j = 0; j < NT; j++)
        if (t[j].share_with == i) t[j].share_with = -1;
      return "NULL data with elements";
    }
    case 19: {
      const int i = (int[]){Q, K, V, OUT}[fz_pick(r, 4)];
      t[i].passed = false;
      for (int j = 0; j < NT; j++)
        if (t[j].share_with == i) t[j].share_with = -1;
      return "required tensor NULL";
    }
    case 20: { /* output (or present) overlaps an input or the other output */
      const int o = fz_chance(r, 60) || !c->has_present ? OUT : PRESENT;
      const int i = (int[]){Q, K, V, DECAY, BETA, PAST, OUT, PRESENT}[fz_pick(r, 8)];
      if (i == o || !t[i].passed || t[i].null_data || total_numel(&t[i]) <= 0 || total_numel(&t[o]) <= 0) return NULL;
      if (o == PRESENT && i == PAST) return NULL; /* handled by 21 */
      fz_overlap(t, NT, o, i);
      /* same element size keeps the start aligned; different dtypes still overlap at byte 0 */
      return "output overlaps another tensor";
    }
    case 21: { /* present partially overlaps past */
      if (!c->has_past || !c->has_present || total_numel(&t[PAST]) < 2) return NULL;
      t[PRESENT].share_with = PAST;
      t[PRESENT].share_offset = 1 + fz_pick(r, (int)(total_numel(&t[PAST]) - 1));
      t[PRESENT].null_data = false;
      t[PAST].null_data = false;
      return "present partially overlaps past";
    }
    case 22: { /* innermost stride not 1 */
      const int i = (int[]){Q, K, V, DECAY, BETA, OUT}[fz_pick(r, 6)];
      if (!t[i].passed || t[i].d.dims[2] < 2 || total_numel(&t[i]) <= 0) return NULL; /* empty: strides do not matter */
      t[i].share_with = -1;
      for (int j = 0; j < NT; j++)
        if (t[j].share_with == i) t[j].share_with = -1;
      t[i].d.strides[2] = 2;
      t[i].d.strides[1] = 2 * t[i].d.dims[2];
      t[i].d.strides[0] = t[i].d.strides[1] * (t[i].d.dims[1] > 0 ? t[i].d.dims[1] : 1);
      return "innermost stride 2";
    }
    case 23: { /* rows overlap */
      const int i = (int[]){Q, K, V, DECAY, BETA, OUT}[fz_pick(r, 6)];
      if (!t[i].passed || t[i].d.dims[2] < 2 || t[i].d.dims[1] < 2 || total_numel(&t[i]) <= 0) return NULL;
      t[i].share_with = -1;
      for (int j = 0; j < NT; j++)
        if (t[j].share_with == i) t[j].share_with = -1;
      t[i].d.strides[2] = 1;
      t[i].d.strides[1] = t[i].d.dims[2] - 1;
      t[i].d.strides[0] = t[i].d.dims[1] * t[i].d.dims[2];
      return "strides make elements overlap";
    }
    case 24: { /* state not packed */
      const int i = fz_chance(r, 50) ? PAST : PRESENT;
      if (!t[i].passed || total_numel(&t[i]) <= 0) return NULL;
      int ax = -1;
      for (int a = 0; a < 3; a++)
        if (t[i].d.dims[a] > 1) ax = a;
      if (ax < 0) return NULL;
      t[i].share_with = -1;
      if (i == PAST) t[PRESENT].share_with = -1;
      int64_t s = 1;
      for (int a = 3; a >= 0; a--) {
        t[i].d.strides[a] = s * (a == ax ? 2 : 1);
        s *= t[i].d.dims[a] > 0 ? t[i].d.dims[a] : 1;
        if (a == ax) s *= 2;
      }
      return "state not packed";
    }
    case 25:
      c->ws_mode = fz_chance(r, 50) ? WS_TOO_SMALL : WS_MISALIGNED;
      return "workspace too small or misaligned"; /* only counts when the call needs workspace */
    case 26: { /* element count overflows int64 */
      if (c->B < 1 || c->Hq * c->dk < 2) return NULL;
      const int64_t huge = (int64_t)1 << 62;
      for (int i = 0; i < NT; i++)
        if (t[i].d.rank == 3) t[i].d.dims[1] = huge;
      for (int i = 0; i < NT; i++) t[i].share_with = -1, memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      return "element count overflows";
    }
    case 27: { /* extent overflows */
      if (c->B < 1 || c->T < 2 || c->Hq * c->dk < 1) return NULL;
      for (int j = 0; j < NT; j++)
        if (t[j].share_with == Q) t[j].share_with = -1;
      t[Q].d.strides[2] = 1;
      t[Q].d.strides[1] = (int64_t)1 << 61;
      t[Q].d.strides[0] = (int64_t)1 << 62;
      return "memory extent overflows";
    }
    case 28:
      if (fz_chance(r, 50)) c->desc_null = true;
      else c->ctx_null = true;
      return c->desc_null ? "desc NULL" : "context NULL";
    case 29:
      c->desc.flags |= 2u << fz_pick(r, 30);
      return "unknown flag bits";
    default:
      return NULL;
  }
}
#define NUM_PERTURBATIONS 30

/* Raw mutations: anything goes, within sizes that stay cheap to back with memory. */
/* state_window (ORT contrib): read after the mode, from bytes that older (shorter) corpus inputs
 * do not have, so they keep W = 0. A valid case gets W in [1, 8] (states (W * B, H_kv, d_k, d_v),
 * packed), or one window error: W outside [0, 8], or states without the window axis. */
static void apply_window(la_case* c, fz_reader* r) {
  if (!fz_chance(r, 35) || c->expect != EXPECT_VALID) return;
  const int64_t W = 1 + fz_pick(r, 8), se = (int64_t)fz_esize(c->sdt);
  if ((W - 1) * 2 * se * c->B * c->Hkv * c->dk * c->dv > 2 * FZ_BYTE_BUDGET) return;
  fz_tensor* t = c->call.t;
  c->W = W;
  c->desc.state_window = W;
  for (int i = PAST; i <= PRESENT; i += PRESENT - PAST) {
    t[i].d.dims[0] = W * c->B;
    memset(t[i].d.strides, 0, sizeof t[i].d.strides);
  }
  const int bad = fz_pick(r, 8);
  if (bad == 0) {
    c->desc.state_window = fz_chance(r, 50) ? 9 + fz_pick(r, 3) : -1;
    c->expect = EXPECT_INVALID, c->what = "state_window outside [0, 8]";
  } else if (bad == 1 && W > 1 && c->B > 0 && (c->has_past || c->has_present)) {
    const int i = c->has_past && (!c->has_present || fz_chance(r, 50)) ? PAST : PRESENT;
    if (c->in_place) t[PRESENT].share_with = -1;
    t[i].d.dims[0] = c->B;
    c->expect = EXPECT_INVALID, c->what = "windowed state without the window axis";
  }
}

static void mutate(la_case* c, fz_reader* r) {
  fz_tensor* t = c->call.t;
  const int n = 1 + fz_pick(r, 3);
  for (int m = 0; m < n; m++) {
    const int i = fz_pick(r, NT + 1);
    if (i == NT) {
      switch (fz_pick(r, 4)) {
        case 0: c->desc.update_rule = (linattn_update_rule)fz_pick(r, 6); break;
        case 1: c->desc.q_num_heads = fz_pick(r, 6) - 1; break;
        case 2: c->desc.kv_num_heads = fz_pick(r, 6) - 1; break;
        default: c->desc.flags = (uint32_t)fz_pick(r, 4); break;
      }
      continue;
    }
    if (fz_mutate_tensor(t, NT, i, r) && t[i].share_with == i) t[i].share_with = -1;
  }
}

/* ------------------------------------------------------------------ data */

/* false: a backed tensor has more elements than a region may hold (zero strides over huge dims),
 * too many to fill and check; the case is skipped. */
FZ_NOCOV static bool make_values(la_case* c) {
  fz_rng g = {c->seed};
  for (int i = 0; i < NT; i++) c->vals[i] = NULL;
  for (int i = 0; i < NT; i++) {
    int64_t n;
    c->vals[i] = fz_values_alloc(&c->call.t[i], &n);
    if (!c->vals[i]) return false;
    double* v = c->vals[i];
    for (int64_t e = 0; e < n; e++) {
      switch (i) {
        case K:
          if (c->kmode == 3) v[e] = (double[]){0.0, 1.0, -1.0, 0.5}[fz_next(&g) % 4];
          else if (c->kmode == 4) v[e] = fz_uniform(&g, -0.3, 0.3);
          else v[e] = fz_uniform(&g, -1.0, 1.0);
          break;
        case DECAY:
          switch (c->dmode) {
            case 0: v[e] = fz_uniform(&g, -1.0, 0.0); break;
            case 1: v[e] = (double[]){0.0, -30.0, -1e-6, -3.0}[fz_next(&g) % 4]; break;
            case 2: v[e] = 0.0; break;
            case 3: v[e] = fz_uniform(&g, -30.0, -20.0); break;
            case 4: v[e] = fz_uniform(&g, 0.0, 0.2); break;
            default: v[e] = fz_uniform(&g, -0.1, 0.0); break;
          }
          break;
        case BETA:
          switch (c->bmode) {
            case 0: v[e] = fz_unit(&g); break;
            case 1: v[e] = (double)(fz_next(&g) & 1); break;
            case 2: v[e] = 0.0; break;
            default: v[e] = 1.0; break;
          }
          break;
        default: v[e] = fz_uniform(&g, -1.0, 1.0); break;
      }
    }
    /* keys: rows of d_k either unit length (kmode 0) or at most sqrt(2) long, so that delta
     * rules stay contractive (beta |k|^2 <= 2); kmode 1 leaves raw keys (may overflow: then
     * only robustness is checked). Only for the shapes of a valid call. */
    if (i == K && c->expect == EXPECT_VALID && c->dk > 0 && n > 0 && c->kmode != 1) {
      for (int64_t row = 0; row < n / c->dk; row++) {
        double s = 0;
        for (int64_t j = 0; j < c->dk; j++) s += v[row * c->dk + j] * v[row * c->dk + j];
        const double norm = sqrt(s);
        const double f = c->kmode == 0 ? (norm > 0 ? 1.0 / norm : 0.0) : (norm > 1.4 ? 1.4 / norm : 1.0);
        for (int64_t j = 0; j < c->dk; j++) v[row * c->dk + j] *= f;
      }
    }
  }
  return true;
}

FZ_NOCOV static double value_of(void* user, int tensor, int64_t index) { return ((la_case*)user)->vals[tensor][index]; }

/* ------------------------------------------------------------------ float64 oracle */

FZ_NOCOV static double* read_all(const fz_call* k, const fz_instance* in, int i) {
  const int64_t n = k->t[i].passed && !k->t[i].null_data ? fz_numel(&k->t[i].d) : 0;
  double* v = (double*)calloc((size_t)(n > 0 ? n : 0) + 1, sizeof(double));
  for (int64_t e = 0; e < n; e++) v[e] = fz_get(k, in, i, e);
  return v;
}

/* Cancellation allowance of the outputs: an output is a dot product scale q . S_j, whose fp32
 * rounding error scales with the magnitude of its terms, not with its value: with q nearly
 * orthogonal to the state every output can be tiny next to its terms (found by the fuzzer: a
 * T = 1 case whose outputs are all (k . q) u_j with a small k . q). oracle() stores
 * 4 eps32 (d_k + T + 2) max |scale| sum_i |q_i S_ij|, added to the outputs' absolute tolerance. */
static double la_output_atol;

/* The recurrence in float64, in ONNX order (decay, retrieve, write, read), packed layouts. */
FZ_NOCOV static void oracle(const la_case* c, const fz_call* k, const fz_instance* in, double* out, double* state) {
  const int64_t B = c->B, T = c->T, dk = c->dk, dv = c->dv, Hkv = c->Hkv, Hq = c->Hq;
  const int64_t qw = Hq * dk, kw = c->nk * dk, vw = Hkv * dv, ow = c->out_heads * dv;
  const int64_t dw = c->decay_kind == 2 ? Hkv * dk : Hkv, bw = c->beta_kind == 2 ? 1 : Hkv;
  const double scale = c->desc.scale == 0.0f ? 1.0 / sqrt((double)dk) : (double)c->desc.scale;
  double* q = read_all(k, in, Q);
  double* kk = read_all(k, in, K);
  double* v = read_all(k, in, V);
  double* past = c->has_past ? read_all(k, in, PAST) : NULL;
  const int64_t Wn = c->W > 0 ? c->W : 1; /* state slots */
  double* decay = c->decay_kind ? read_all(k, in, DECAY) : NULL;
  double* beta = c->beta_kind ? read_all(k, in, BETA) : NULL;
  double* S = (double*)calloc((size_t)(dk * dv) + 1, sizeof(double));
  double* u = (double*)calloc((size_t)dv + 1, sizeof(double));
  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < Hkv; h++) {
      const int64_t kh = h / (Hkv / c->nk);
      /* state_window W: states are W slots of (B, H_kv, d_k, d_v); slot W - 1 is read */
      for (int64_t e = 0; e < dk * dv; e++) S[e] = past ? past[(((Wn - 1) * B + b) * Hkv + h) * dk * dv + e] : 0.0;
      int64_t q0, nq, o0;
      if (c->inverse) q0 = h / (Hkv / Hq), nq = 1, o0 = h;
      else nq = Hq / Hkv, q0 = h * nq, o0 = q0;
      for (int64_t t = 0; t < T; t++) {
        const double* kt = kk + (b * T + t) * kw + kh * dk;
        if (decay) {
          for (int64_t i = 0; i < dk; i++) {
            const double a = exp(decay[(b * T + t) * dw + (c->decay_kind == 2 ? h * dk + i : h)]);
            for (int64_t j = 0; j < dv; j++) S[i * dv + j] *= a;
          }
        }
        for (int64_t j = 0; j < dv; j++) u[j] = v[(b * T + t) * vw + h * dv + j];
        if (beta) {
          const double be = beta[(b * T + t) * bw + (c->beta_kind == 2 ? 0 : h)];
          for (int64_t j = 0; j < dv; j++) {
            double rj = 0;
            for (int64_t i = 0; i < dk; i++) rj += S[i * dv + j] * kt[i];
            u[j] = be * (u[j] - rj);
          }
        }
        for (int64_t i = 0; i < dk; i++)
          for (int64_t j = 0; j < dv; j++) S[i * dv + j] += kt[i] * u[j];
        for (int64_t g = 0; g < nq; g++) {
          const double* qt = q + (b * T + t) * qw + (q0 + g) * dk;
          for (int64_t j = 0; j < dv; j++) {
            double o = 0, terms = 0;
            for (int64_t i = 0; i < dk; i++) o += qt[i] * S[i * dv + j], terms += fabs(qt[i] * S[i * dv + j]);
            out[(b * T + t) * ow + (o0 + g) * dv + j] = scale * o;
            const double allowance = 4.0 * FLT_EPSILON * (double)(dk + T + 2) * fabs(scale) * terms;
            if (allowance > la_output_atol) la_output_atol = allowance;
          }
        }
        /* slot j of a window holds the state after token T - W + j (lower slots stay zero) */
        if (c->W > 0 && t >= T - c->W)
          for (int64_t e = 0; e < dk * dv; e++) state[(((t - (T - c->W)) * B + b) * Hkv + h) * dk * dv + e] = S[e];
      }
      for (int64_t e = 0; e < dk * dv; e++) state[(((Wn - 1) * B + b) * Hkv + h) * dk * dv + e] = S[e];
    }
  }
  free(S);
  free(u);
  free(q);
  free(kk);
  free(v);
  free(past);
  free(decay);
  free(beta);
}

FZ_NOCOV static void check_oracle(const la_case* c, const fz_call* k, const fz_instance* in, const char* what) {
  const int64_t no = fz_numel(&k->t[OUT].d), ns = (c->W > 0 ? c->W : 1) * c->B * c->Hkv * c->dk * c->dv;
  double* out = (double*)calloc((size_t)no + 1, sizeof(double));
  double* st = (double*)calloc((size_t)ns + 1, sizeof(double));
  fz_instance inputs; /* the inputs as they were before the call (past_state may be updated in place) */
  fz_instance_make(k, &inputs);
  oracle(c, k, &inputs, out, st);
  fz_instance_free(k, &inputs);
  for (int pass = 0; pass < 2; pass++) {
    const int i = pass == 0 ? OUT : PRESENT;
    if (!k->t[i].passed || k->t[i].null_data) continue;
    const double* ref = pass == 0 ? out : st;
    const int64_t n = pass == 0 ? no : ns;
    double maxref = 0;
    for (int64_t e = 0; e < n; e++)
      if (isfinite(ref[e]) && fabs(ref[e]) > maxref) maxref = fabs(ref[e]);
    for (int64_t e = 0; e < n; e++)
      fz_compare_values(what, la_names[i], e, fz_get(k, in, i, e), ref[e], maxref + (pass == 0 ? la_output_atol / 2e-4 : 0.0),
                        k->t[i].d.dtype, 2e-4, 1.0);
  }
  free(out);
  free(st);
}

/* ------------------------------------------------------------------ running */

FZ_NOCOV static linattn_status run(const void* user, linattn_context* ctx, const fz_call* k, fz_instance* in, int ws_mode,
                                   size_t* need_out) {
  const la_case* c = (const la_case*)user;
  const linattn_linear_attention_desc* desc = c->desc_null ? NULL : &c->desc;
  if (c->ctx_null) ctx = NULL;
  size_t need = 0;
  const linattn_status qs = linattn_linear_attention_workspace_size(ctx, desc, fz_arg(k, in, Q), fz_arg(k, in, K), fz_arg(k, in, V),
                                                              fz_arg(k, in, PAST), fz_arg(k, in, DECAY),
                                                              fz_arg(k, in, BETA), fz_arg(k, in, OUT),
                                                              fz_arg(k, in, PRESENT), &need);
  if (fz_stop_after_query(qs, need, need_out)) return qs;
  fz_workspace ws;
  fz_workspace_make(&ws, ws_mode, qs, need);
  const linattn_status st = linattn_linear_attention(ctx, desc, fz_arg(k, in, Q), fz_arg(k, in, K), fz_arg(k, in, V),
                                                      fz_arg(k, in, PAST), fz_arg(k, in, DECAY), fz_arg(k, in, BETA),
                                                      fz_arg(k, in, OUT), fz_arg(k, in, PRESENT), ws.ptr, ws.size);
  fz_workspace_done(&ws, ws_mode, qs, st);
  if (need_out) *need_out = need;
  return st;
}

FZ_NOCOV static const char* perturb_case(void* c, fz_reader* r, int id) { return perturb((la_case*)c, r, id); }
FZ_NOCOV static void mutate_case(void* c, fz_reader* r) { mutate((la_case*)c, r); }
FZ_NOCOV static void oracle_case(const void* c, const fz_call* k, const fz_instance* in, const char* what) {
  check_oracle((const la_case*)c, k, in, what);
}

/* The current case, formatted for a failure message (fz_case_describe). */
static const la_case* current_case;
FZ_NOCOV static void describe_case(char* buf, size_t size) {
  const la_case* c = current_case;
  snprintf(buf, size,
           "window %lld rule %d Hq %lld Hkv %lld nk %lld dk %lld dv %lld B %lld T %lld flags %u scale %g isa %s tuning %s threads %d host %d ws %d "
           "kmode %d dmode %d bmode %d inplace %d seed %llu |",
           (long long)c->desc.state_window, (int)c->desc.update_rule, (long long)c->desc.q_num_heads, (long long)c->desc.kv_num_heads, (long long)c->nk,
           (long long)c->dk, (long long)c->dv, (long long)c->B, (long long)c->T, c->desc.flags, (double)c->desc.scale,
           linattn_isa_name((linattn_isa)c->isa), fz_tuning_name(c->tune), c->threads, c->host, c->ws_mode, c->kmode, c->dmode,
           c->bmode, (int)c->in_place, (unsigned long long)c->seed);
  for (int i = 0; i < NT; i++)
    fz_describe_tensor(buf, size, la_names[i], c->call.t[i].passed, &c->call.t[i].d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz_reader r = {data, size, 0};
  la_case c;
  build_valid(&c, &r);
  fz_choose_mode(&c, &r, NUM_PERTURBATIONS, perturb_case, mutate_case, &c.expect, &c.what);
  apply_window(&c, &r);
  /* the tuning entry: the last byte read, so the older, shorter corpus inputs keep the
   * process's own entry */
  c.tune = fz_pick_tuning(&r);
  fz_case_name = c.what;
  fz_call* k = &c.call;
  current_case = &c;
  fz_case_describe = describe_case;
  fz_verbose_case();
  fz_layout(k);
  if (!make_values(&c)) {
    for (int i = 0; i < NT; i++) free(c.vals[i]);
    return 0;
  }
  fz_make_template(k, value_of, &c);

  fz_target t = {.c = &c, .call = k, .expect = c.expect, .isa = c.isa, .threads = c.threads, .host = c.host,
                  .ws_mode = c.ws_mode, .tune = c.tune, .run = run, .oracle = oracle_case, .oracle_on_chosen = false, .rel = 2e-4, .rel_lowp = 2e-4, .ulps = 1.0, .atol = 0.0,
                  .oracle_atol = &la_output_atol};
  la_output_atol = 0.0;
  fz_run_case(&t);
  fz_free_template(k);
  for (int i = 0; i < NT; i++) free(c.vals[i]);
  return 0;
}
