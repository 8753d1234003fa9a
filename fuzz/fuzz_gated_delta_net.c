/*
 * libFuzzer target for linattn_gated_delta_net (ONNX Runtime's GatedDeltaNet; also built as a
 * corpus-replay program): its workspace query, linattn_gated_delta_net_infer_shapes (checked
 * against the shapes of every valid call) and linattn_gated_delta_net_state_replay (the capture
 * of a valid call replayed onto its initial state must give the state after the captured
 * tokens). Same three modes as fuzz_linear_attention.c (valid / invalid / arbitrary). The
 * host arrays (cu_seqlens, capture_count) are allocated exactly as long as the call says.
 */
#include <float.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

enum { Q, K, V, DECAY, BETA, INIT, ALOG, DTB, OUT, FIN, SU, NT };
static const char* const gd_names[NT] = {"query", "key",    "value",  "decay",       "beta",        "initial_state",
                                         "a_log", "dt_bias", "output", "final_state", "state_update"};

#define GD_MAX_B 4

/* spellings of q/k/v */
enum { SP_RAGGED, SP_UNIFORM, SP_RANK4, SP_PACKED2, SP_PACKED3 };

typedef struct gd_case {
  linattn_gated_delta_net_desc desc;
  int spelling;
  int64_t B, S, T, Hq, Hv, grp, dk, dv, cap, pw; /* pw: packed row width */
  int64_t len[GD_MAX_B];
  bool gated, delta, per_key, dtb_per_key, gates_f32, has_init, has_fin, has_su, in_place, has_cu;
  linattn_dtype dt;
  int32_t *cu, *count;
  int64_t ncu; /* num_cu_seqlens passed */
  int ws_mode;
  int isa, threads, host;
  int tune; /* tuning entry of the chosen ISA's contexts (fz_pick_tuning), read last */
  bool desc_null, ctx_null;
  int expect;
  const char* what;
  int kmode, dmode;
  uint64_t seed;
  double* vals[NT];
  fz_call call;
} gd_case;

static bool packed_qkv(const gd_case* c) { return c->spelling == SP_PACKED2 || c->spelling == SP_PACKED3; }
static bool lead2(const gd_case* c) { return c->spelling == SP_RANK4 || c->spelling == SP_PACKED3; } /* (B, S, ...) */

static int64_t case_bytes(const gd_case* c) {
  const int64_t te = (int64_t)fz_esize(c->dt), ge = c->gates_f32 ? 4 : te;
  const int64_t D = c->per_key ? c->Hv * c->dk : c->Hv;
  const int64_t row = c->cap * (D + c->Hq * c->dk + c->Hv * c->dv);
  return te * c->T * (2 * c->Hq * c->dk + 2 * c->Hv * c->dv) + ge * c->T * (D + c->Hv) +
         4 * (2 * c->B * c->Hv * c->dv * c->dk + c->B * row + 2 * c->Hv * c->dk);
}

static void update_T(gd_case* c) {
  if (c->has_cu) {
    c->T = 0;
    for (int64_t i = 0; i < c->B; i++) c->T += c->len[i];
  } else {
    c->T = c->B * c->S;
  }
}

/* Tokens/requests (B, S or lens), shrunk to the byte budget. */
static void pick_batch(gd_case* c, fz_reader* r) {
  static const int64_t Lc[] = {1, 2, 3, 0, 4, 5, 1, 7}, Lr[] = {16, 17, 33, 65};
  c->has_cu = c->spelling == SP_RAGGED || (c->spelling == SP_PACKED2 && fz_chance(r, 50));
  c->B = c->has_cu ? fz_pick(r, GD_MAX_B + 1) : fz_pick(r, 4);
  if (!c->has_cu && c->B == 0 && fz_chance(r, 70)) c->B = 1;
  for (int64_t i = 0; i < c->B; i++) c->len[i] = fz_chance(r, 8) ? Lr[fz_pick(r, 4)] : Lc[fz_pick(r, 8)];
  c->S = fz_chance(r, 8) ? Lr[fz_pick(r, 4)] : Lc[fz_pick(r, 8)];
  update_T(c);
  while (case_bytes(c) > 2 * FZ_BYTE_BUDGET) {
    int64_t longest = 0;
    for (int64_t i = 1; i < c->B; i++)
      if (c->len[i] > c->len[longest]) longest = i;
    if (c->has_cu && c->B > 0 && c->len[longest] > 1) c->len[longest] = (c->len[longest] + 1) / 2;
    else if (!c->has_cu && c->S > 1) c->S = (c->S + 1) / 2;
    else if (c->dv > 1) c->dv = (c->dv + 1) / 2;
    else if (c->dk > 1) c->dk = (c->dk + 1) / 2;
    else break;
    update_T(c);
  }
}

/* q/k/v/output layout: rank 3 (T, H, d) through fz_strides3, rank 4 packed or padded tokens. */
static void qkv_strides(fz_tensor* t, fz_reader* r) {
  if (t->d.rank == 3) {
    const int mode = fz_pick(r, 5), pad1 = fz_pick(r, 3), pad0 = fz_pick(r, 5);
    fz_strides3(mode, t->d.dims, pad1, pad0, t->d.strides);
  } else if (t->d.rank == 4 && fz_chance(r, 40)) {
    const int64_t d3 = t->d.dims[3] > 0 ? t->d.dims[3] : 1, d2 = t->d.dims[2] > 0 ? t->d.dims[2] : 1;
    const int64_t d1 = t->d.dims[1] > 0 ? t->d.dims[1] : 1;
    t->d.strides[3] = 1;
    t->d.strides[2] = d3;
    t->d.strides[1] = d2 * d3 + fz_pick(r, 4);
    t->d.strides[0] = d1 * t->d.strides[1] + fz_pick(r, 4);
  } else if (t->d.rank == 2 && fz_chance(r, 40)) {
    t->d.strides[1] = 1;
    t->d.strides[0] = t->d.dims[1] + fz_pick(r, 4);
  }
}

static void build_tensors(gd_case* c, fz_reader* r) {
  fz_call* k = &c->call;
  fz_init_tensors(k, NT, gd_names, 1u << OUT | 1u << FIN | 1u << SU, LINATTN_DTYPE_F32);
  for (int i = 0; i < NT; i++)
    if (i == Q || i == K || i == V || i == OUT || ((i == DECAY || i == BETA) && !c->gates_f32)) k->t[i].d.dtype = c->dt;
  const bool l2 = lead2(c);
  const int64_t a0 = l2 ? c->B : c->T, a1 = c->S;
  if (packed_qkv(c)) {
    if (l2) fz_set_dims(&k->t[Q], 3, a0, a1, c->pw, 0);
    else fz_set_dims(&k->t[Q], 2, a0, c->pw, 0, 0);
    k->t[K].passed = k->t[V].passed = false;
  } else if (l2) {
    fz_set_dims(&k->t[Q], 4, a0, a1, c->Hq, c->dk);
    fz_set_dims(&k->t[K], 4, a0, a1, c->Hq, c->dk);
    fz_set_dims(&k->t[V], 4, a0, a1, c->Hv, c->dv);
  } else {
    fz_set_dims(&k->t[Q], 3, a0, c->Hq, c->dk, 0);
    fz_set_dims(&k->t[K], 3, a0, c->Hq, c->dk, 0);
    fz_set_dims(&k->t[V], 3, a0, c->Hv, c->dv, 0);
  }
  if (l2) fz_set_dims(&k->t[OUT], 4, a0, a1, c->Hv, c->dv);
  else fz_set_dims(&k->t[OUT], 3, a0, c->Hv, c->dv, 0);
  for (int i = Q; i <= OUT; i++)
    if ((i <= V || i == OUT) && k->t[i].passed) qkv_strides(&k->t[i], r);
  if (l2) {
    if (c->per_key) fz_set_dims(&k->t[DECAY], 4, a0, a1, c->Hv, c->dk);
    else fz_set_dims(&k->t[DECAY], 3, a0, a1, c->Hv, 0);
    fz_set_dims(&k->t[BETA], 3, a0, a1, c->Hv, 0);
  } else {
    if (c->per_key) fz_set_dims(&k->t[DECAY], 3, a0, c->Hv, c->dk, 0);
    else fz_set_dims(&k->t[DECAY], 2, a0, c->Hv, 0, 0);
    fz_set_dims(&k->t[BETA], 2, a0, c->Hv, 0, 0);
  }
  k->t[DECAY].passed = c->gated;
  k->t[BETA].passed = c->delta;
  fz_set_dims(&k->t[INIT], 4, c->B, c->Hv, c->dv, c->dk);
  fz_set_dims(&k->t[FIN], 4, c->B, c->Hv, c->dv, c->dk);
  k->t[INIT].passed = c->has_init;
  k->t[FIN].passed = c->has_fin;
  if (c->in_place) k->t[FIN].share_with = INIT;
  const bool gates = c->desc.gate_activation != LINATTN_GDN_GATE_NONE;
  fz_set_dims(&k->t[ALOG], 1, c->Hv, 0, 0, 0);
  if (!c->dtb_per_key) fz_set_dims(&k->t[DTB], 1, c->Hv, 0, 0, 0);
  else if (fz_chance(r, 50)) fz_set_dims(&k->t[DTB], 2, c->Hv, c->dk, 0, 0);
  else fz_set_dims(&k->t[DTB], 1, c->Hv * c->dk, 0, 0, 0);
  k->t[ALOG].passed = k->t[DTB].passed = gates;
  const int64_t D = c->per_key ? c->Hv * c->dk : c->Hv;
  fz_set_dims(&k->t[SU], 2, c->B, c->cap * (D + c->Hq * c->dk + c->Hv * c->dv), 0, 0);
  k->t[SU].passed = c->has_su;
  fz_null_empty(k, false, r);
  if (k->t[INIT].null_data && c->in_place) k->t[FIN].null_data = true;
}

static void build_valid(gd_case* c, fz_reader* r) {
  static const int64_t dc[] = {2, 3, 4, 1, 5, 8, 6, 7}, dkr[] = {16, 17, 32, 33}, dvr[] = {0, 16, 17, 33, 64, 65};
  memset(c, 0, sizeof *c);
  linattn_gated_delta_net_desc_init(&c->desc);
  c->desc.update_rule = (linattn_update_rule)(1 + fz_pick(r, 4));
  c->gated = c->desc.update_rule == LINATTN_UPDATE_GATED || c->desc.update_rule == LINATTN_UPDATE_GATED_DELTA;
  c->delta = c->desc.update_rule == LINATTN_UPDATE_DELTA || c->desc.update_rule == LINATTN_UPDATE_GATED_DELTA;
  c->desc.gate_activation = (linattn_gdn_gate)(1 + fz_pick(r, 3));
  c->desc.beta_activation = (linattn_gdn_beta)(1 + fz_pick(r, 2));
  c->desc.qk_l2_norm = fz_chance(r, 50);
  if (fz_chance(r, 30)) c->desc.qk_l2_norm_eps = (float[]){1e-6f, 0.0f, 1e-3f}[fz_pick(r, 3)];
  static const float scales[] = {0.0f, 0.0f, 0.25f, -0.5f, 1.0f};
  c->desc.scale = scales[fz_pick(r, 5)];
  c->desc.gate_lower_bound = (float[]){-5.0f, -1.0f, -0.5f}[fz_pick(r, 3)];
  c->desc.chunk_size = fz_chance(r, 20) ? (int64_t)fz_pick(r, 130) : 64;
  c->spelling = fz_pick(r, 5);
  c->Hq = 1 + fz_pick(r, 2);
  c->grp = 1 + fz_pick(r, 3);
  c->Hv = c->Hq * c->grp;
  c->dk = fz_chance(r, 8) ? dkr[fz_pick(r, 4)] : dc[fz_pick(r, 8)];
  c->dv = fz_chance(r, 8) ? dvr[fz_pick(r, 6)] : dc[fz_pick(r, 8)];
  c->per_key = c->gated && fz_chance(r, 40);
  c->dtb_per_key = c->per_key && fz_chance(r, 50);
  c->dt = fz_dtypes[fz_pick(r, 3)];
  c->gates_f32 = c->dt == LINATTN_DTYPE_F32 || fz_chance(r, 50);
  c->cap = fz_chance(r, 40) ? 1 + fz_pick(r, 8) : 0;
  c->desc.state_update_capacity = c->cap;
  c->has_su = c->cap > 0 && !fz_chance(r, 20);
  pick_batch(c, r);
  /* uniform packing and packed QKV take the batch / head sizes from initial_state */
  c->has_init = !c->has_cu || c->spelling == SP_PACKED2 || c->spelling == SP_PACKED3 || fz_chance(r, 60);
  if (c->spelling == SP_RANK4) c->has_init = fz_chance(r, 60);
  if (packed_qkv(c)) c->has_init = true;
  if (packed_qkv(c) && c->dv == 0) c->dv = 1; /* packed width must exceed H_v*d_v */
  c->has_fin = !fz_chance(r, 15);
  c->in_place = c->has_init && c->has_fin && fz_chance(r, 40);
  c->pw = 2 * c->Hq * c->dk + c->Hv * c->dv;
  c->kmode = fz_pick(r, 3);
  c->dmode = fz_pick(r, 4);
  c->ws_mode = fz_pick(r, 3);
  c->isa = fz_pick_isa(r);
  c->threads = fz_pick_threads(r);
  c->host = fz_chance(r, 15);
  c->seed = fz_u32(r);
  c->expect = EXPECT_VALID;
  c->what = "valid";
  if (c->has_cu) {
    c->ncu = c->B + 1;
    c->cu = (int32_t*)malloc(sizeof(int32_t) * (size_t)c->ncu);
    c->cu[0] = 0;
    for (int64_t i = 0; i < c->B; i++) c->cu[i + 1] = c->cu[i] + (int32_t)c->len[i];
  }
  if (c->cap > 0) {
    c->count = (int32_t*)malloc(sizeof(int32_t) * (size_t)(c->B ? c->B : 1));
    for (int64_t i = 0; i < c->B; i++) c->count[i] = fz_pick(r, 12) - 2;
  }
  build_tensors(c, r);
}

static const char* perturb(gd_case* c, fz_reader* r, int id) {
  fz_tensor* t = c->call.t;
  switch (id) {
    case 0:
      if (!c->cu) return NULL;
      c->cu[0] = fz_chance(r, 50) ? 1 : -1;
      return "cu_seqlens not from 0";
    case 1:
      if (!c->cu) return NULL;
      c->cu[c->B] += fz_chance(r, 50) ? 1 : -1;
      return "cu_seqlens not ending at total_tokens";
    case 2: {
      if (!c->cu || c->B < 2) return NULL;
      const int j = 1 + fz_pick(r, (int)c->B - 1);
      c->cu[j] = c->cu[j + 1] + 1 + fz_pick(r, 3);
      return "cu_seqlens decreasing";
    }
    case 3:
      if (c->cap > 0) {
        free(c->count);
        c->count = NULL;
        return "capacity without capture_count";
      }
      c->count = (int32_t*)calloc((size_t)(c->B ? c->B : 1), sizeof(int32_t));
      return "capture_count without capacity";
    case 4:
      c->desc.state_update_capacity = fz_chance(r, 50) ? 9 + fz_pick(r, 3) : -1 - fz_pick(r, 2);
      return "capacity outside [0, 8]";
    case 5: {
      const int i = fz_chance(r, 50) || !c->has_fin ? INIT : FIN;
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      const int a = fz_pick(r, 4);
      if (a == 0 && !c->has_cu && i == INIT) return NULL; /* B from the state: may be consistent */
      /* packed QKV reads d_k from the state: another d_k may split the packed width as well */
      if (a == 3 && packed_qkv(c) && i == INIT) return NULL;
      if (fz_chance(r, 30)) { /* K-major (B, H_v, d_k, d_v): wrong unless square */
        if (c->dk == c->dv) return NULL;
        t[i].d.dims[2] = c->dk, t[i].d.dims[3] = c->dv;
        return "state K-major instead of V-major";
      }
      t[i].d.dims[a] += 1;
      return "state shape wrong";
    }
    case 6: {
      const int i = (int[]){INIT, FIN, SU, ALOG, DTB}[fz_pick(r, 5)];
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.dtype = fz_other_dtype(LINATTN_DTYPE_F32, r, LINATTN_DTYPE_F16);
      return "float32 tensor of another dtype";
    }
    case 7: {
      const int i = (int[]){K, V, OUT, DECAY, BETA}[fz_pick(r, 5)];
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      linattn_dtype o = fz_other_dtype(c->dt, r, LINATTN_DTYPE_F16);
      if ((i == DECAY || i == BETA) && (o == LINATTN_DTYPE_F32 || o == c->dt)) {
        if (!c->gated || !c->delta) return NULL; /* alone, f32 or T is fine */
        o = t[i].d.dtype == LINATTN_DTYPE_F32 ? (c->dt == LINATTN_DTYPE_F32 ? LINATTN_DTYPE_F16 : c->dt) : LINATTN_DTYPE_F32;
        if (o == t[i].d.dtype || (o != LINATTN_DTYPE_F32 && o != c->dt)) return NULL;
      }
      t[i].d.dtype = o;
      return "dtype differs";
    }
    case 8: {
      const int i = fz_pick(r, NT);
      if (!t[i].passed || fz_numel(&t[i].d) <= 0) return NULL;
      fz_unshare(t, NT, i);
      t[i].null_data = true;
      return "NULL data with elements";
    }
    case 9: {
      const int i = (int[]){Q, OUT, DECAY, BETA, ALOG, DTB, INIT}[fz_pick(r, 7)];
      if (!t[i].passed) return NULL;
      /* initial_state is required by packed QKV and uniform packing only */
      if (i == INIT && !packed_qkv(c) && (c->has_cu || c->spelling == SP_RANK4)) return NULL;
      fz_unshare(t, NT, i);
      t[i].passed = false;
      return "required tensor NULL";
    }
    case 10: {
      if (packed_qkv(c)) return NULL;
      const int i = fz_chance(r, 50) ? K : V;
      fz_unshare(t, NT, i);
      t[i].passed = false;
      return "key or value alone";
    }
    case 11: {
      const int o = (int[]){OUT, FIN, SU}[fz_pick(r, 3)];
      const int i = fz_pick(r, NT);
      if (i == o || !t[o].passed || !t[i].passed || t[i].null_data || fz_numel(&t[i].d) <= 0 || fz_numel(&t[o].d) <= 0)
        return NULL;
      if (o == FIN && i == INIT) return NULL;
      fz_overlap(t, NT, o, i);
      return "output overlaps another tensor";
    }
    case 12:
      if (!c->gated && !c->delta) return NULL;
      if (c->gated && fz_chance(r, 50)) t[DECAY].d.dims[t[DECAY].d.rank - 1] += 1;
      else if (c->delta) t[BETA].d.dims[t[BETA].d.rank - 1] += 1;
      else return NULL;
      return "decay or beta shape wrong";
    case 13:
      if (c->gated) t[DECAY].passed = false;
      if (c->delta) t[BETA].passed = false;
      if (!c->gated) {
        t[DECAY].passed = true;
        t[DECAY].null_data = false;
        return "decay given to an ungated rule";
      }
      return "decay or beta missing";
    case 14:
      if (!t[ALOG].passed) return NULL;
      if (fz_chance(r, 50)) t[ALOG].d.dims[0] += 1;
      else if (t[DTB].d.rank == 2) t[DTB].d.dims[1] += 1;
      else t[DTB].d.dims[0] = c->Hv * c->dk + c->Hv + 1; /* neither (H_v) nor (H_v*d_k) */
      return "a_log or dt_bias shape wrong";
    case 15:
      if (!c->has_su) return NULL;
      t[SU].d.dims[fz_pick(r, 2)] += 1;
      return "state_update shape wrong";
    case 16:
      switch (fz_pick(r, 5)) {
        case 0: c->desc.update_rule = (linattn_update_rule)(fz_chance(r, 50) ? 0 : 5 + fz_pick(r, 3)); return "rule invalid";
        case 3: c->desc.qk_l2_norm_eps = (float[]){-1e-6f, NAN, INFINITY}[fz_pick(r, 3)]; return "qk_l2_norm_eps invalid";
        case 1: c->desc.gate_activation = (linattn_gdn_gate)(fz_chance(r, 50) ? 0 : 4); return "gate invalid";
        case 2: c->desc.beta_activation = (linattn_gdn_beta)(fz_chance(r, 50) ? 0 : 3); return "beta activation invalid";
        default: if (fz_chance(r, 50)) c->desc_null = true; else c->ctx_null = true; return "desc or context NULL";
      }
    case 17:
      if (packed_qkv(c)) return NULL;
      fz_unshare(t, NT, V);
      t[V].d.dims[t[V].d.rank - 2] = c->Hq + 1 == c->Hv * 1 ? c->Hq + 2 : (c->Hq > 1 ? c->Hq + 1 : 0);
      if (t[V].d.dims[t[V].d.rank - 2] % c->Hq == 0 && t[V].d.dims[t[V].d.rank - 2] > 0) return NULL;
      return "num_heads_v not a multiple of num_heads_q";
    case 18:
      if (packed_qkv(c)) return NULL;
      fz_unshare(t, NT, K);
      t[K].d.dims[t[K].d.rank - 1] += 1;
      return "key width differs";
    case 19:
      if (!packed_qkv(c)) return NULL;
      t[Q].d.dims[t[Q].d.rank - 1] += 1;
      memset(t[Q].d.strides, 0, sizeof t[Q].d.strides);
      return "packed width wrong";
    case 20:
      if (!c->has_cu && c->B > 1 && c->T > 0 && !lead2(c)) { /* T not a multiple of B */
        for (int i = Q; i <= OUT; i++)
          if (t[i].passed && (i <= BETA || i == OUT)) {
            fz_unshare(t, NT, i);
            t[i].d.dims[0] += 1;
            memset(t[i].d.strides, 0, sizeof t[i].d.strides);
          }
        return "tokens not a multiple of the batch";
      }
      if (lead2(c) && c->B > 0) {
        c->cu = (int32_t*)calloc(2, sizeof(int32_t));
        c->cu[1] = (int32_t)c->T;
        c->ncu = 2;
        return "cu_seqlens with the rank-4 spelling";
      }
      return NULL;
    case 21:
      if (!c->cu) return NULL;
      c->ncu = 0;
      return "num_cu_seqlens 0 with cu_seqlens";
    case 22: { /* element count overflows */
      if (packed_qkv(c) || c->Hq < 1 || c->T < 1) return NULL;
      for (int i = Q; i <= V; i++) {
        fz_unshare(t, NT, i);
        t[i].d.dims[t[i].d.rank - 1] = (int64_t)1 << 62;
        memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      }
      return "element count overflows";
    }
    case 23: {
      const int i = (int[]){Q, OUT}[fz_pick(r, 2)];
      if (c->T < 2 || fz_numel(&t[i].d) <= 0) return NULL;
      fz_unshare(t, NT, i);
      const int rk = t[i].d.rank;
      int64_t s = 1;
      for (int a = rk - 1; a >= 0; a--) t[i].d.strides[a] = s, s *= t[i].d.dims[a] > 0 ? t[i].d.dims[a] : 1;
      t[i].d.strides[0] = fz_chance(r, 50) ? (int64_t)1 << 62 : 0;
      if (t[i].d.strides[0] == 0 && i == Q) return NULL; /* an input may repeat its rows */
      if (t[i].d.dims[0] < 2) return NULL;
      return t[i].d.strides[0] ? "memory extent overflows" : "output rows overlap (zero stride)";
    }
    case 24:
      c->ws_mode = fz_chance(r, 50) ? WS_TOO_SMALL : WS_MISALIGNED;
      return "workspace too small or misaligned";
    case 25: {
      const int i = (int[]){Q, OUT}[fz_pick(r, 2)];
      fz_unshare(t, NT, i);
      t[i].d.rank = t[i].d.rank == 4 || t[i].d.rank == 2 ? 1 : 5;
      return "wrong rank";
    }
    default:
      return NULL;
  }
}
#define NUM_PERTURBATIONS 26

static void mutate(gd_case* c, fz_reader* r) {
  fz_tensor* t = c->call.t;
  const int n = 1 + fz_pick(r, 3);
  for (int m = 0; m < n; m++) {
    const int i = fz_pick(r, NT + 2);
    if (i == NT) {
      switch (fz_pick(r, 5)) {
        case 0: c->desc.update_rule = (linattn_update_rule)fz_pick(r, 6); break;
        case 1: c->desc.gate_activation = (linattn_gdn_gate)fz_pick(r, 5); break;
        case 2: c->desc.beta_activation = (linattn_gdn_beta)fz_pick(r, 4); break;
        case 3: c->desc.qk_l2_norm = fz_pick(r, 3); break;
        default: c->desc.state_update_capacity = fz_pick(r, 11) - 1; break;
      }
      continue;
    }
    if (i == NT + 1) { /* new host arrays: arbitrary offsets and counts, exactly as long as passed */
      free(c->cu);
      free(c->count);
      c->cu = c->count = NULL;
      c->ncu = fz_pick(r, GD_MAX_B + 3) - 1;
      if (c->ncu > 0 || fz_chance(r, 50)) {
        const int64_t ncu = c->ncu > 0 ? c->ncu : 1;
        c->cu = (int32_t*)malloc(sizeof(int32_t) * (size_t)ncu);
        for (int64_t j = 0; j < ncu; j++) c->cu[j] = j == 0 ? 0 : c->cu[j - 1] + fz_pick(r, 6) - 1;
        if (fz_chance(r, 30)) c->cu[ncu - 1] = (int32_t)fz_u32(r);
      }
      if (fz_chance(r, 50)) { /* as many counts as the largest batch the call could read */
        const int64_t nb = c->B > c->ncu ? c->B : c->ncu;
        c->count = (int32_t*)malloc(sizeof(int32_t) * (size_t)(nb > 0 ? nb : 1) + 64);
        for (int64_t j = 0; j < (nb > 0 ? nb : 1); j++) c->count[j] = fz_pick(r, 14) - 3;
      }
      continue;
    }
    if (fz_mutate_tensor(t, NT, i, r) && t[i].share_with == i) t[i].share_with = -1;
  }
}

/* ------------------------------------------------------------------ data */

/* Logical element index of (token, head, col) in q, k or v (separate or packed QKV). */
static int64_t qkv_index(const gd_case* c, int which, int64_t tok, int64_t h, int64_t col) {
  if (packed_qkv(c)) {
    const int64_t off = which == Q ? 0 : which == K ? c->Hq * c->dk : 2 * c->Hq * c->dk;
    return tok * c->pw + off + h * (which == V ? c->dv : c->dk) + col;
  }
  return (tok * (which == V ? c->Hv : c->Hq) + h) * (which == V ? c->dv : c->dk) + col;
}

FZ_NOCOV static bool make_values(gd_case* c) {
  fz_rng g = {c->seed};
  for (int i = 0; i < NT; i++) c->vals[i] = NULL;
  for (int i = 0; i < NT; i++) {
    int64_t n;
    c->vals[i] = fz_values_alloc(&c->call.t[i], &n);
    if (!c->vals[i]) return false;
    double* v = c->vals[i];
    const bool gates = c->desc.gate_activation != LINATTN_GDN_GATE_NONE;
    for (int64_t e = 0; e < n; e++) {
      switch (i) {
        case DECAY:
          if (gates) v[e] = fz_uniform(&g, -3.0, 3.0);
          else if (c->dmode == 1) v[e] = (double[]){0.0, -30.0, -1e-6, -3.0}[fz_next(&g) % 4];
          else if (c->dmode == 2) v[e] = fz_uniform(&g, 0.0, 0.2);
          else v[e] = fz_uniform(&g, -1.0, 0.0);
          break;
        case BETA:
          v[e] = c->desc.beta_activation == LINATTN_GDN_BETA_SIGMOID ? fz_uniform(&g, -4.0, 4.0) : fz_unit(&g);
          break;
        case ALOG: case DTB: v[e] = fz_uniform(&g, -1.0, 1.0); break;
        default: v[e] = fz_uniform(&g, -1.0, 1.0); break;
      }
    }
  }
  /* keys of a valid call without the fused norm: rows of d_k at most 1 long (kmode 0: unit),
   * so that delta rules stay contractive; kmode 2 leaves them raw (may grow: robustness only) */
  const int ki = packed_qkv(c) ? Q : K;
  if (c->expect == EXPECT_VALID && !c->desc.qk_l2_norm && c->kmode != 2 && c->vals[ki] && c->dk > 0 &&
      !c->call.t[ki].huge && c->call.t[ki].region >= 0) {
    for (int64_t tok = 0; tok < c->T; tok++)
      for (int64_t h = 0; h < c->Hq; h++) {
        double* row = c->vals[ki] + qkv_index(c, K, tok, h, 0);
        double s = 0;
        for (int64_t j = 0; j < c->dk; j++) s += row[j] * row[j];
        const double norm = sqrt(s), f = c->kmode == 0 ? (norm > 0 ? 1.0 / norm : 0.0) : (norm > 1.0 ? 1.0 / norm : 1.0);
        for (int64_t j = 0; j < c->dk; j++) row[j] *= f;
      }
  }
  return true;
}

FZ_NOCOV static double value_of(void* user, int tensor, int64_t index) { return ((gd_case*)user)->vals[tensor][index]; }

/* ------------------------------------------------------------------ float64 oracle */

/* Cancellation allowance of the outputs (as fuzz_linear_attention.c's la_output_atol). */
static double gd_output_atol;

FZ_NOCOV static void request_range(const gd_case* c, int64_t r, int64_t* s0, int64_t* len) {
  if (c->has_cu) *s0 = c->cu[r], *len = c->cu[r + 1] - c->cu[r];
  else *s0 = r * c->S, *len = c->S;
}

/* q or k row (token, head) as the recurrence uses it (L2-normalised when asked). */
FZ_NOCOV static void load_row(const gd_case* c, const fz_call* k, const fz_instance* in, int which, int64_t tok, int64_t h,
                              double* dst) {
  const int ti = packed_qkv(c) ? Q : which;
  double ss = 0;
  for (int64_t i = 0; i < c->dk; i++) {
    dst[i] = fz_get(k, in, ti, qkv_index(c, which, tok, h, i));
    ss += dst[i] * dst[i];
  }
  if (c->desc.qk_l2_norm)
    for (int64_t i = 0; i < c->dk; i++) dst[i] /= sqrt(ss + (double)c->desc.qk_l2_norm_eps);
}

/* exp(g) of (token, head, key i) through the gate */
FZ_NOCOV static double decay_factor(const gd_case* c, const fz_call* k, const fz_instance* in, int64_t tok, int64_t h, int64_t i) {
  if (!c->gated) return 1.0;
  double x = fz_get(k, in, DECAY, c->per_key ? (tok * c->Hv + h) * c->dk + i : tok * c->Hv + h), g;
  switch (c->desc.gate_activation) {
    case LINATTN_GDN_GATE_SOFTPLUS:
      x += fz_get(k, in, DTB, c->dtb_per_key ? h * c->dk + i : h);
      g = -exp(fz_get(k, in, ALOG, h)) * (x > 20.0 ? x : log1p(exp(x)));
      break;
    case LINATTN_GDN_GATE_SIGMOID:
      x += fz_get(k, in, DTB, c->dtb_per_key ? h * c->dk + i : h);
      g = (double)c->desc.gate_lower_bound / (1.0 + exp(-exp(fz_get(k, in, ALOG, h)) * x));
      break;
    default: g = x; break;
  }
  return exp(g);
}

/* The recurrence per request and value head, in float64: out (T, H_v, d_v), state V-major,
 * capture rows (B, C*(D + H_q d_k + H_v d_v)). */
FZ_NOCOV static void oracle(const gd_case* c, const fz_call* k, const fz_instance* in, double* out, double* state, double* su) {
  const int64_t dk = c->dk, dv = c->dv, Hv = c->Hv, Hq = c->Hq, C = c->cap;
  const int64_t D = c->per_key ? Hv * dk : Hv, row = C * (D + Hq * dk + Hv * dv);
  const double scale = c->desc.scale == 0.0f ? 1.0 / sqrt((double)dk) : (double)c->desc.scale;
  double* S = (double*)calloc((size_t)(dk * dv) + 1, sizeof(double));
  double* kt = (double*)calloc((size_t)dk + 1, sizeof(double));
  double* qt = (double*)calloc((size_t)dk + 1, sizeof(double));
  double* a = (double*)calloc((size_t)dk + 1, sizeof(double));
  double* u = (double*)calloc((size_t)dv + 1, sizeof(double));
  for (int64_t r = 0; r < c->B; r++) {
    int64_t s0, len;
    request_range(c, r, &s0, &len);
    int64_t kept = C > 0 ? c->count[r] : 0;
    if (kept < 0) kept = 0;
    if (kept > C) kept = C;
    if (kept > len) kept = len;
    for (int64_t h = 0; h < Hv; h++) {
      const int64_t hq = h / c->grp, sb = (r * Hv + h) * dv * dk;
      for (int64_t e = 0; e < dk * dv; e++) S[e] = c->has_init ? fz_get(k, in, INIT, sb + e) : 0.0;
      for (int64_t t = 0; t < len; t++) {
        const int64_t tok = s0 + t;
        load_row(c, k, in, K, tok, hq, kt);
        load_row(c, k, in, Q, tok, hq, qt);
        for (int64_t i = 0; i < dk; i++) a[i] = decay_factor(c, k, in, tok, h, i);
        for (int64_t j = 0; j < dv; j++)
          for (int64_t i = 0; i < dk; i++) S[j * dk + i] *= a[i];
        const int vi = packed_qkv(c) ? Q : V;
        for (int64_t j = 0; j < dv; j++) u[j] = fz_get(k, in, vi, qkv_index(c, V, tok, h, j));
        if (c->delta) {
          double be = fz_get(k, in, BETA, tok * Hv + h);
          if (c->desc.beta_activation == LINATTN_GDN_BETA_SIGMOID) be = 1.0 / (1.0 + exp(-be));
          for (int64_t j = 0; j < dv; j++) {
            double rj = 0;
            for (int64_t i = 0; i < dk; i++) rj += S[j * dk + i] * kt[i];
            u[j] = be * (u[j] - rj);
          }
        }
        if (t < kept) {
          double* rw = su + r * row;
          if (c->per_key) for (int64_t i = 0; i < dk; i++) rw[t * D + h * dk + i] = a[i];
          else rw[t * D + h] = a[0];
          for (int64_t i = 0; i < dk; i++) rw[C * D + t * Hq * dk + hq * dk + i] = kt[i];
          for (int64_t j = 0; j < dv; j++) rw[C * (D + Hq * dk) + t * Hv * dv + h * dv + j] = u[j];
        }
        for (int64_t j = 0; j < dv; j++)
          for (int64_t i = 0; i < dk; i++) S[j * dk + i] += u[j] * kt[i];
        for (int64_t j = 0; j < dv; j++) {
          double o = 0, terms = 0;
          for (int64_t i = 0; i < dk; i++) o += qt[i] * S[j * dk + i], terms += fabs(qt[i] * S[j * dk + i]);
          out[(tok * Hv + h) * dv + j] = scale * o;
          const double allowance = 4.0 * FLT_EPSILON * (double)(dk + len + 2) * fabs(scale) * terms;
          if (allowance > gd_output_atol) gd_output_atol = allowance;
        }
      }
      for (int64_t e = 0; e < dk * dv; e++) state[sb + e] = S[e];
    }
  }
  free(S);
  free(kt);
  free(qt);
  free(a);
  free(u);
}

FZ_NOCOV static void compare_tensor(const fz_call* k, const fz_instance* in, int i, const double* ref, int64_t n,
                                    double extra, const char* what) {
  if (!k->t[i].passed || k->t[i].null_data) return;
  double maxref = 0;
  for (int64_t e = 0; e < n; e++)
    if (isfinite(ref[e]) && fabs(ref[e]) > maxref) maxref = fabs(ref[e]);
  for (int64_t e = 0; e < n; e++)
    fz_compare_values(what, gd_names[i], e, fz_get(k, in, i, e), ref[e], maxref + extra, k->t[i].d.dtype, 2e-4, 1.0);
}

/* The state after the captured prefix of request r, replayed from its initial state, must be
 * the oracle's state after those tokens (a second oracle run on the prefix). */
FZ_NOCOV static void check_replay(const gd_case* c, const fz_call* k, const fz_instance* in, const fz_instance* pristine,
                                  const char* what);

FZ_NOCOV static void check_oracle(const gd_case* c, const fz_call* k, const fz_instance* in, const char* what) {
  const int64_t no = c->T * c->Hv * c->dv, ns = c->B * c->Hv * c->dv * c->dk, nu = fz_numel(&k->t[SU].d);
  double* out = (double*)calloc((size_t)no + 1, sizeof(double));
  double* st = (double*)calloc((size_t)ns + 1, sizeof(double));
  double* su = (double*)calloc((size_t)(nu > 0 ? nu : 0) + 1, sizeof(double));
  fz_instance pristine;
  fz_instance_make(k, &pristine);
  oracle(c, k, &pristine, out, st, su);
  compare_tensor(k, in, OUT, out, no, gd_output_atol / 2e-4, what);
  compare_tensor(k, in, FIN, st, ns, 0.0, what);
  if (c->has_su) compare_tensor(k, in, SU, su, nu, 0.0, what);
  if (c->has_su && c->has_init && !k->t[INIT].null_data) check_replay(c, k, in, &pristine, what);
  fz_instance_free(k, &pristine);
  free(out);
  free(st);
  free(su);
}

FZ_NOCOV static void check_replay(const gd_case* c, const fz_call* k, const fz_instance* in, const fz_instance* pristine,
                                  const char* what) {
  const int64_t slot = c->Hv * c->dv * c->dk, row = k->t[SU].d.dims[1];
  float* dst = (float*)fz_aligned(sizeof(float) * (size_t)(slot + 1));
  float* src = (float*)fz_aligned(sizeof(float) * (size_t)(slot + 1));
  float* cap = (float*)fz_aligned(sizeof(float) * (size_t)(row + 1));
  double* out = (double*)calloc((size_t)(c->T * c->Hv * c->dv) + 1, sizeof(double));
  double* want = (double*)calloc((size_t)(c->B * slot) + 1, sizeof(double));
  for (int64_t r = 0; r < c->B; r++) {
    int64_t s0, len;
    request_range(c, r, &s0, &len);
    int64_t kept = c->count[r] < 0 ? 0 : c->count[r];
    if (kept > c->cap) kept = c->cap;
    if (kept > len) kept = len;
    if (kept < 1) continue;
    for (int64_t e = 0; e < slot; e++) src[e] = (float)fz_get(k, pristine, INIT, r * slot + e), dst[e] = NAN;
    for (int64_t e = 0; e < row; e++) cap[e] = (float)fz_get(k, in, SU, r * row + e);
    const int64_t sd[3] = {c->Hv, c->dv, c->dk}, cd[1] = {row};
    const linattn_tensor ts = linattn_make_tensor(src, LINATTN_DTYPE_F32, 3, sd);
    const linattn_tensor tc = linattn_make_tensor(cap, LINATTN_DTYPE_F32, 1, cd);
    const linattn_tensor td = linattn_make_tensor(dst, LINATTN_DTYPE_F32, 3, sd);
    const linattn_status st = linattn_gated_delta_net_state_replay(&ts, &tc, c->Hq, c->cap, kept, &td);
    FZ_CHECK(st == LINATTN_SUCCESS, "%s: state_replay of request %lld failed: %s", what, (long long)r, linattn_last_error());
    /* expected: the oracle on a batch whose request r is tokens [s0, s0 + kept) and whose other
     * requests are empty (the oracle reads tokens by absolute index) */
    gd_case one = *c;
    int32_t cu[GD_MAX_B + 1];
    for (int64_t q = 0; q <= c->B; q++) cu[q] = (int32_t)(q <= r ? s0 : s0 + kept);
    one.cu = cu;
    one.has_cu = true;
    one.cap = 0;
    const double saved = gd_output_atol;
    oracle(&one, k, pristine, out, want, NULL);
    gd_output_atol = saved;
    double maxref = 0;
    for (int64_t e = 0; e < slot; e++)
      if (fabs(want[r * slot + e]) > maxref) maxref = fabs(want[r * slot + e]);
    for (int64_t e = 0; e < slot; e++)
      fz_compare_values("state_replay vs float64 oracle", "destination", e, dst[e], want[r * slot + e], maxref,
                        LINATTN_DTYPE_F32, 2e-4, 1.0);
  }
  free(out);
  free(want);
  free(dst);
  free(src);
  free(cap);
}

/* ------------------------------------------------------------------ running */

FZ_NOCOV static linattn_status run(const void* user, linattn_context* ctx, const fz_call* k, fz_instance* in, int ws_mode,
                                   size_t* need_out) {
  const gd_case* c = (const gd_case*)user;
  const linattn_gated_delta_net_desc* desc = c->desc_null ? NULL : &c->desc;
  if (c->ctx_null) ctx = NULL;
  size_t need = 0;
  const linattn_status qs = linattn_gated_delta_net_workspace_size(
      ctx, desc, fz_arg(k, in, Q), fz_arg(k, in, K), fz_arg(k, in, V), c->cu, c->ncu, fz_arg(k, in, DECAY),
      fz_arg(k, in, BETA), fz_arg(k, in, INIT), fz_arg(k, in, ALOG), fz_arg(k, in, DTB), c->count, fz_arg(k, in, OUT),
      fz_arg(k, in, FIN), fz_arg(k, in, SU), &need);
  if (fz_stop_after_query(qs, need, need_out)) return qs;
  fz_workspace ws;
  fz_workspace_make(&ws, ws_mode, qs, need);
  const linattn_status st = linattn_gated_delta_net(
      ctx, desc, fz_arg(k, in, Q), fz_arg(k, in, K), fz_arg(k, in, V), c->cu, c->ncu, fz_arg(k, in, DECAY),
      fz_arg(k, in, BETA), fz_arg(k, in, INIT), fz_arg(k, in, ALOG), fz_arg(k, in, DTB), c->count, fz_arg(k, in, OUT),
      fz_arg(k, in, FIN), fz_arg(k, in, SU), ws.ptr, ws.size);
  fz_workspace_done(&ws, ws_mode, qs, st);
  if (need_out) *need_out = need;
  return st;
}

/* An in-place call (final_state is initial_state's buffer) whose requests are shorter than
 * the library's LA_KEEP_ENTRY_MIN_TOKENS (256) is not recomputed by the reference kernels when
 * the fast kernels' outputs are not finite (docs/reliability.md): it keeps the fast kernels'
 * outputs, state and capture, which may overflow where the reference's do not (the decay fold
 * holds S / C, up to 2^60 |S|). So in an arbitrary case (valid cases draw inputs that cannot
 * overflow: a non-finite output there stays an error) whose chosen-ISA outputs hold a value at
 * or past the recompute limit, output, final_state and state_update are checked only for
 * robustness. */
#define GD_KEEP_ENTRY_MIN_TOKENS 256
FZ_NOCOV static bool gd_robust_only(const void* user, const fz_call* k, const fz_instance* x, int i) {
  const gd_case* c = (const gd_case*)user;
  const fz_tensor* t = k->t;
  if ((i != OUT && i != FIN && i != SU) || c->expect == EXPECT_VALID) return false;
  if (!t[INIT].passed || !t[FIN].passed || t[INIT].region < 0 || t[INIT].region != t[FIN].region ||
      t[INIT].byte_offset != t[FIN].byte_offset)
    return false;
  int64_t shortest = c->cu && c->ncu >= 2 ? INT64_MAX : c->S;
  for (int64_t r = 0; c->cu && r + 1 < c->ncu; r++)
    if (c->cu[r + 1] - c->cu[r] < shortest) shortest = c->cu[r + 1] - c->cu[r];
  if (shortest >= GD_KEEP_ENTRY_MIN_TOKENS) return false;
  const fz_tensor* o = &t[OUT];
  if (!o->passed || o->region < 0 || o->huge || o->numel <= 0) return false;
  /* the recompute limit (la_refine_limit), with a margin on the safe side */
  const double sc = c->desc.scale == 0.0f ? 1.0 / sqrt((double)c->dk) : fabs((double)c->desc.scale);
  double lim = fz_dtype_max(o->d.dtype);
  if (sc < 1.0 && sc * FLT_MAX < lim) lim = sc * FLT_MAX;
  lim *= 1.0 - 1.0 / 256;
  for (int64_t e = 0; e < o->numel; e++) {
    const double v = fz_get(k, x, OUT, e);
    if (!isfinite(v) || fabs(v) >= lim) return true;
  }
  return false;
}

/* linattn_gated_delta_net_infer_shapes on the shapes of a valid call: the output, state and
 * capture dims the call accepted. */
FZ_NOCOV static void check_infer_shapes(const gd_case* c) {
  const fz_tensor* t = c->call.t;
  int32_t orank = -1;
  int64_t od[4] = {-1, -1, -1, -1}, sd[4] = {-1, -1, -1, -1}, ud[2] = {-1, -1};
  const linattn_status st = linattn_gated_delta_net_infer_shapes(
      &c->desc, t[Q].d.rank, t[Q].d.dims, packed_qkv(c) ? NULL : t[K].d.dims, packed_qkv(c) ? NULL : t[V].d.dims,
      c->has_init ? t[INIT].d.dims : NULL, c->cu ? c->ncu : 0, c->per_key, &orank, od, sd, ud);
  FZ_CHECK(st == LINATTN_SUCCESS, "infer_shapes failed on a valid call: %s", linattn_last_error());
  FZ_CHECK(orank == t[OUT].d.rank, "infer_shapes: output rank %d, the call takes %d", (int)orank, (int)t[OUT].d.rank);
  for (int i = 0; i < orank; i++)
    FZ_CHECK(od[i] == t[OUT].d.dims[i], "infer_shapes: output dim %d = %lld, the call takes %lld", i, (long long)od[i],
             (long long)t[OUT].d.dims[i]);
  for (int i = 0; i < 4; i++)
    FZ_CHECK(sd[i] == t[FIN].d.dims[i], "infer_shapes: state dim %d = %lld, expected %lld", i, (long long)sd[i],
             (long long)t[FIN].d.dims[i]);
  if (c->cap > 0)
    for (int i = 0; i < 2; i++)
      FZ_CHECK(ud[i] == t[SU].d.dims[i], "infer_shapes: state_update dim %d = %lld, expected %lld", i, (long long)ud[i],
               (long long)t[SU].d.dims[i]);
}

FZ_NOCOV static const char* perturb_case(void* c, fz_reader* r, int id) { return perturb((gd_case*)c, r, id); }
FZ_NOCOV static void mutate_case(void* c, fz_reader* r) { mutate((gd_case*)c, r); }
FZ_NOCOV static void oracle_case(const void* c, const fz_call* k, const fz_instance* in, const char* what) {
  check_oracle((const gd_case*)c, k, in, what);
}

static const gd_case* current_case;
FZ_NOCOV static void describe_case(char* buf, size_t size) {
  const gd_case* c = current_case;
  size_t n = (size_t)snprintf(
      buf, size,
      "rule %d gate %d beta %d l2 %d scale %g glb %g cap %lld spelling %d B %lld S %lld T %lld Hq %lld Hv %lld dk %lld dv %lld "
      "perkey %d dtbkey %d inplace %d isa %s tuning %s threads %d host %d ws %d kmode %d dmode %d seed %llu | ncu %lld cu",
      (int)c->desc.update_rule, (int)c->desc.gate_activation, (int)c->desc.beta_activation, c->desc.qk_l2_norm,
      (double)c->desc.scale, (double)c->desc.gate_lower_bound, (long long)c->desc.state_update_capacity, c->spelling,
      (long long)c->B, (long long)c->S, (long long)c->T, (long long)c->Hq, (long long)c->Hv, (long long)c->dk,
      (long long)c->dv, (int)c->per_key, (int)c->dtb_per_key, (int)c->in_place, linattn_isa_name((linattn_isa)c->isa),
      fz_tuning_name(c->tune), c->threads, c->host, c->ws_mode, c->kmode, c->dmode, (unsigned long long)c->seed, (long long)c->ncu);
  for (int64_t i = 0; c->cu && i < c->ncu && i <= GD_MAX_B && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, " %d", (int)c->cu[i]);
  for (int64_t i = 0; c->count && i < c->B && n < size; i++) n += (size_t)snprintf(buf + n, size - n, " cnt%d", (int)c->count[i]);
  for (int i = 0; i < NT; i++) fz_describe_tensor(buf, size, gd_names[i], c->call.t[i].passed, &c->call.t[i].d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz_reader r = {data, size, 0};
  gd_case c;
  build_valid(&c, &r);
  /* the tuning entry: after every other byte of the front (the mode reads from the end), so
   * the older, shorter corpus inputs keep the process's own entry */
  c.tune = fz_pick_tuning(&r);
  uint8_t tail[64];
  fz_reader rm = fz_tail_reader(data, size, tail, sizeof tail);
  fz_choose_mode(&c, &rm, NUM_PERTURBATIONS, perturb_case, mutate_case, &c.expect, &c.what);
  fz_case_name = c.what;
  fz_call* k = &c.call;
  current_case = &c;
  fz_case_describe = describe_case;
  fz_verbose_case();
  if (c.expect == EXPECT_VALID) check_infer_shapes(&c);
  fz_layout(k);
  if (make_values(&c)) {
    fz_make_template(k, value_of, &c);
    fz_target t = {.c = &c, .call = k, .expect = c.expect, .isa = c.isa, .threads = c.threads, .host = c.host,
                   .ws_mode = c.ws_mode, .tune = c.tune, .run = run, .oracle = oracle_case, .oracle_on_chosen = false, .rel = 2e-4,
                   .rel_lowp = 2e-4, .ulps = 1.0, .atol = 0.0, .oracle_atol = &gd_output_atol,
                   .robust_only = gd_robust_only};
    gd_output_atol = 0.0;
    fz_run_case(&t);
    fz_free_template(k);
  }
  for (int i = 0; i < NT; i++) free(c.vals[i]);
  free(c.cu);
  free(c.count);
  return 0;
}
