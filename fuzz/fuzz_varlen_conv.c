/*
 * libFuzzer target for linattn_varlen_causal_conv_with_state (packed batches, state pools,
 * transition capture; also built as a corpus-replay program). Same three modes as
 * fuzz_linear_attention.c (valid / invalid / arbitrary). The host arrays of the batch
 * (cu_seqlens, capture_count, state_indices, has_initial_state) are allocated exactly as long
 * as batch_size says, so a read past them is an ASan error.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

enum { IN, W, BIAS, INIT, OUT, FINAL, UPDATE, NT };
static const char* const vc_names[NT] = {"input", "weight", "bias", "initial_state", "output", "final_state",
                                         "state_update"};

#define VC_MAX_B 6

typedef struct vc_case {
  linattn_varlen_conv_desc desc;
  linattn_varlen_batch batch;
  int64_t B, N, C, K, dil, S, total, cap;
  int64_t len[VC_MAX_B];
  bool scl; /* state channels-last */
  linattn_dtype dt;
  bool has_bias, has_final, has_update, in_place, pool, has_flags;
  /* host arrays, exactly batch_size (+1) entries (NULL when absent) */
  int32_t *cu, *count, *idx;
  uint8_t* flags;
  bool kernel_delta; /* pass a kernel_delta (must be refused as unsupported) */
  int ws_mode;
  int isa, threads, host;
  bool desc_null, ctx_null, batch_null;
  int expect;
  const char* what;
  int xmode;
  uint64_t seed;
  double* vals[NT];
  fz_call call;
} vc_case;

static void state_dims(const vc_case* c, fz_tensor* t) {
  if (c->scl) fz_set_dims(t, 3, c->N, c->S, c->C, 0);
  else fz_set_dims(t, 3, c->N, c->C, c->S, 0);
}

static int64_t case_bytes(const vc_case* c) {
  return (int64_t)fz_esize(c->dt) * (2 * c->total * c->C + c->C * (c->K + 1) + 2 * c->N * c->C * c->S + c->B * c->cap * c->C);
}

/* (Re)allocates the host arrays for batch_size n (their contents are set by the caller). */
static void alloc_arrays(vc_case* c, int64_t n, bool count, bool idx, bool flags) {
  free(c->cu);
  free(c->count);
  free(c->idx);
  free(c->flags);
  c->cu = (int32_t*)malloc(sizeof(int32_t) * (size_t)(n + 1));
  c->count = count ? (int32_t*)malloc(sizeof(int32_t) * (size_t)(n ? n : 1)) : NULL;
  c->idx = idx ? (int32_t*)malloc(sizeof(int32_t) * (size_t)(n ? n : 1)) : NULL;
  c->flags = flags ? (uint8_t*)malloc((size_t)(n ? n : 1)) : NULL;
}

static void sync_batch(vc_case* c) {
  c->batch.cu_seqlens = c->cu;
  c->batch.capture_count = c->count;
  c->batch.state_indices = c->idx;
  c->batch.has_initial_state = c->flags;
}

static void build_valid(vc_case* c, fz_reader* r) {
  static const int64_t Lc[] = {1, 2, 3, 0, 4, 5, 1, 8}, Lr[] = {15, 16, 17, 33, 64};
  static const int64_t Cc[] = {1, 2, 3, 4, 5, 6, 3, 2}, Cr[] = {0, 16, 17, 33, 64, 65};
  static const int64_t Kc[] = {1, 2, 3, 4, 4, 5}, Kr[] = {7, 9};
  memset(c, 0, sizeof *c);
  linattn_varlen_conv_desc_init(&c->desc);
  c->desc.activation = fz_chance(r, 50) ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  c->B = fz_pick(r, 5);
  c->total = 0;
  for (int64_t i = 0; i < c->B; i++) c->len[i] = fz_pick_dim(r, Lc, 8, Lr, 5);
  c->C = fz_pick_dim(r, Cc, 8, Cr, 6);
  c->K = fz_pick_dim(r, Kc, 6, Kr, 2);
  static const int64_t dils[] = {1, 1, 2, 3, 0};
  c->desc.dilation = dils[fz_pick(r, 5)];
  c->dil = c->desc.dilation == 0 ? 1 : c->desc.dilation;
  c->S = (c->K - 1) * c->dil;
  c->scl = fz_chance(r, 40);
  c->desc.state_channels_last = c->scl;
  c->dt = fz_dtypes[fz_pick(r, 3)];
  c->has_bias = fz_chance(r, 50);
  c->has_final = !fz_chance(r, 15);
  c->in_place = c->has_final && fz_chance(r, 40);
  c->pool = fz_chance(r, 35);
  c->has_flags = fz_chance(r, 35);
  c->cap = fz_chance(r, 40) ? 1 + fz_pick(r, 8) : 0;
  c->desc.state_update_capacity = c->cap;
  c->has_update = c->cap > 0 && !fz_chance(r, 20);
  c->N = c->B + (c->pool ? fz_pick(r, 3) : 0);
  for (int64_t i = 0; i < c->B; i++) c->total += c->len[i];
  /* large rare dims come with small others */
  while (case_bytes(c) > FZ_BYTE_BUDGET) {
    int64_t longest = 0;
    for (int64_t i = 1; i < c->B; i++)
      if (c->len[i] > c->len[longest]) longest = i;
    if (c->B > 0 && c->len[longest] > 1) {
      c->total -= c->len[longest] - (c->len[longest] + 1) / 2;
      c->len[longest] = (c->len[longest] + 1) / 2;
    } else if (c->C > 1) {
      c->C = (c->C + 1) / 2;
    } else {
      break;
    }
  }
  alloc_arrays(c, c->B, c->cap > 0, c->pool, c->has_flags);
  c->cu[0] = 0;
  for (int64_t i = 0; i < c->B; i++) c->cu[i + 1] = c->cu[i] + (int32_t)c->len[i];
  for (int64_t i = 0; i < c->B; i++) {
    if (c->count) c->count[i] = fz_pick(r, 12) - 2; /* negative and above the capacity too */
    if (c->flags) c->flags[i] = (uint8_t)(fz_chance(r, 50) ? 1 + fz_pick(r, 3) : 0);
  }
  if (c->pool) { /* a random injection of the B sequences into the N slots */
    int32_t slots[VC_MAX_B + 3];
    for (int64_t s = 0; s < c->N; s++) slots[s] = (int32_t)s;
    for (int64_t s = c->N - 1; s > 0; s--) {
      const int j = fz_pick(r, (int)s + 1);
      const int32_t tmp = slots[s];
      slots[s] = slots[j], slots[j] = tmp;
    }
    for (int64_t i = 0; i < c->B; i++) c->idx[i] = slots[i];
  }
  c->batch.batch_size = c->B;
  sync_batch(c);
  c->ws_mode = fz_pick(r, 3);
  c->isa = fz_pick_isa(r);
  c->threads = fz_pick_threads(r);
  c->host = fz_chance(r, 15);
  c->xmode = fz_pick(r, 3);
  c->seed = fz_u32(r);
  c->expect = EXPECT_VALID;
  c->what = "valid";

  fz_call* k = &c->call;
  fz_init_tensors(k, NT, vc_names, 1u << OUT | 1u << FINAL | 1u << UPDATE, c->dt);
  for (int i = IN; i <= OUT; i += OUT - IN) {
    fz_set_dims(&k->t[i], 2, c->total, c->C, 0, 0);
    const int mode = fz_pick(r, 3);
    if (mode == 1) k->t[i].d.strides[0] = c->C, k->t[i].d.strides[1] = 1;
    if (mode == 2) k->t[i].d.strides[0] = c->C + 1 + fz_pick(r, 3), k->t[i].d.strides[1] = 1;
  }
  fz_set_dims(&k->t[W], 3, c->C, 1, c->K, 0);
  fz_set_dims(&k->t[BIAS], 1, c->C, 0, 0, 0);
  state_dims(c, &k->t[INIT]);
  state_dims(c, &k->t[FINAL]);
  fz_set_dims(&k->t[UPDATE], 3, c->B, c->cap, c->C, 0);
  k->t[BIAS].passed = c->has_bias;
  k->t[FINAL].passed = c->has_final;
  k->t[UPDATE].passed = c->has_update;
  if (c->in_place) k->t[FINAL].share_with = INIT;
  fz_null_empty(k, false, r);
  if (k->t[INIT].null_data && c->in_place) k->t[FINAL].null_data = true;
}

static const char* perturb(vc_case* c, fz_reader* r, int id) {
  fz_tensor* t = c->call.t;
  switch (id) {
    case 0:
      c->cu[0] = fz_chance(r, 50) ? 1 : -1;
      return "cu_seqlens not from 0";
    case 1:
      c->cu[c->B] += fz_chance(r, 50) ? 1 : -1;
      return "cu_seqlens not ending at total_tokens";
    case 2: {
      if (c->B < 2) return NULL;
      const int j = 1 + fz_pick(r, (int)c->B - 1); /* cu[j] > cu[j + 1] */
      c->cu[j] = c->cu[j + 1] + 1 + fz_pick(r, 3);
      return "cu_seqlens decreasing";
    }
    case 3:
      if (c->cap > 0) {
        free(c->count);
        c->count = NULL;
        sync_batch(c);
        return "capacity without capture_count";
      }
      c->count = (int32_t*)calloc((size_t)(c->B ? c->B : 1), sizeof(int32_t));
      sync_batch(c);
      return "capture_count without capacity";
    case 4:
      c->desc.state_update_capacity = fz_chance(r, 50) ? 9 + fz_pick(r, 3) : -1 - fz_pick(r, 2);
      return "capacity outside [0, 8]";
    case 5: {
      if (!c->pool || c->B < 1) return NULL;
      const int i = fz_pick(r, (int)c->B);
      if (c->B >= 2 && fz_chance(r, 50)) {
        const int j = (i + 1 + fz_pick(r, (int)c->B - 1)) % (int)c->B;
        c->idx[i] = c->idx[j];
        return "state_indices duplicate";
      }
      c->idx[i] = fz_chance(r, 50) ? (int32_t)c->N + fz_pick(r, 3) : -1 - fz_pick(r, 3);
      return "state_indices out of range";
    }
    case 6: {
      const int i = fz_chance(r, 50) || !c->has_final ? INIT : FINAL;
      fz_unshare(t, NT, i);
      int a = fz_pick(r, 3);
      if (a == 0 && c->pool) a = 1 + fz_pick(r, 2); /* a pool may have any size */
      t[i].d.dims[a] += 1;
      return "state shape wrong";
    }
    case 7:
      if (c->pool || c->B == 0) return NULL;
      fz_unshare(t, NT, INIT);
      fz_unshare(t, NT, FINAL);
      t[INIT].d.dims[0] += 1;
      t[FINAL].d.dims[0] += 1;
      return "state count differs from batch_size without a pool";
    case 8: {
      const int i = (int[]){W, BIAS, INIT, OUT, FINAL, UPDATE}[fz_pick(r, 6)];
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.dtype = fz_other_dtype(c->dt, r, LINATTN_DTYPE_F16);
      return "dtype differs from input";
    }
    case 9: {
      const int i = fz_pick(r, NT);
      if (!t[i].passed || fz_numel(&t[i].d) <= 0) return NULL;
      fz_unshare(t, NT, i);
      t[i].null_data = true;
      return "NULL data with elements";
    }
    case 10: {
      const int i = (int[]){IN, W, INIT, OUT}[fz_pick(r, 4)];
      fz_unshare(t, NT, i);
      t[i].passed = false;
      return "required tensor NULL";
    }
    case 11: {
      const int o = (int[]){OUT, FINAL, UPDATE}[fz_pick(r, 3)];
      const int i = fz_pick(r, NT);
      if (i == o || !t[o].passed || !t[i].passed || t[i].null_data || fz_numel(&t[i].d) <= 0 || fz_numel(&t[o].d) <= 0)
        return NULL;
      if (o == FINAL && i == INIT) return NULL;
      fz_overlap(t, NT, o, i);
      return "output overlaps another tensor";
    }
    case 12:
      if (!c->has_update) return NULL;
      t[UPDATE].d.dims[fz_pick(r, 3)] += 1;
      return "state_update shape wrong";
    case 13:
      if (fz_chance(r, 50)) t[W].d.dims[1] = 2;
      else t[W].d.dims[0] = c->C + 1;
      return "weight shape wrong";
    case 14:
      if (fz_chance(r, 50)) c->desc.activation = (linattn_activation)(int[]){0, 3, -1}[fz_pick(r, 3)];
      else c->desc.dilation = -1 - fz_pick(r, 4);
      return "activation or dilation invalid";
    case 15:
      switch (fz_pick(r, 4)) {
        case 0: c->desc_null = true; return "desc NULL";
        case 1: c->ctx_null = true; return "context NULL";
        case 2: c->batch_null = true; return "batch NULL";
        default: c->batch.cu_seqlens = NULL; return "cu_seqlens NULL";
      }
    case 16:
      c->desc.state_channels_last = fz_chance(r, 50) ? 2 : -1;
      return "state_channels_last not 0 or 1";
    case 17: { /* element count overflows */
      if (c->C < 1) return NULL;
      for (int i = IN; i <= OUT; i += OUT - IN) {
        fz_unshare(t, NT, i);
        t[i].d.dims[1] = (int64_t)1 << 62;
        t[i].d.dims[0] = c->total > 2 ? c->total : 2;
        memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      }
      return "element count overflows";
    }
    case 18: {
      const int i = fz_chance(r, 50) ? IN : OUT;
      if (c->total < 2 || c->C < 1) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.strides[1] = 1;
      t[i].d.strides[0] = (int64_t)1 << 62;
      return "memory extent overflows";
    }
    case 19:
      if (c->total < 2 || c->C < 1) return NULL;
      fz_unshare(t, NT, OUT);
      t[OUT].d.strides[1] = 1;
      t[OUT].d.strides[0] = 0;
      return "output rows overlap (zero row stride)";
    case 20: {
      const int i = fz_chance(r, 50) ? IN : OUT;
      if (c->C < 2 || c->total < 1) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.strides[1] = 2;
      t[i].d.strides[0] = 2 * c->C;
      return "innermost stride 2";
    }
    case 21:
      c->ws_mode = fz_chance(r, 50) ? WS_TOO_SMALL : WS_MISALIGNED;
      return "workspace too small or misaligned";
    case 22:
      if (c->B < 1) return NULL;
      c->batch.batch_size = -1 - fz_pick(r, 2);
      return "batch_size negative";
    case 23: {
      const int i = (int[]){IN, OUT, INIT, W}[fz_pick(r, 4)];
      fz_unshare(t, NT, i);
      t[i].d.rank += fz_chance(r, 50) ? 1 : -1;
      return "wrong rank";
    }
    default:
      return NULL;
  }
}
#define NUM_PERTURBATIONS 24

/* Raw mutations: descriptors, attributes, and the batch (arrays reallocated to its size). */
static void mutate(vc_case* c, fz_reader* r) {
  fz_tensor* t = c->call.t;
  const int n = 1 + fz_pick(r, 3);
  for (int m = 0; m < n; m++) {
    const int i = fz_pick(r, NT + 2);
    if (i == NT) {
      switch (fz_pick(r, 5)) {
        case 0: c->desc.activation = (linattn_activation)fz_pick(r, 4); break;
        case 1: c->desc.dilation = fz_pick(r, 6) - 1; break;
        case 2: c->desc.dilation = fz_chance(r, 50) ? INT64_MAX : INT64_MAX / 2 + 1; break;
        case 3: c->desc.state_channels_last = fz_pick(r, 3); break;
        default: c->desc.state_update_capacity = fz_pick(r, 11) - 1; break;
      }
      continue;
    }
    if (i == NT + 1) { /* a new batch: size, offsets, counts, slots, flags all arbitrary */
      const int64_t nb = fz_pick(r, VC_MAX_B + 1);
      alloc_arrays(c, nb, fz_chance(r, 50), fz_chance(r, 50), fz_chance(r, 50));
      for (int64_t j = 0; j <= nb; j++) c->cu[j] = j == 0 ? 0 : c->cu[j - 1] + fz_pick(r, 6) - 1;
      if (fz_chance(r, 30)) c->cu[nb] = (int32_t)fz_u32(r);
      for (int64_t j = 0; j < nb; j++) {
        if (c->count) c->count[j] = fz_pick(r, 14) - 3;
        if (c->idx) c->idx[j] = fz_pick(r, 9) - 1;
        if (c->flags) c->flags[j] = (uint8_t)fz_pick(r, 3);
      }
      c->batch.batch_size = nb;
      sync_batch(c);
      continue;
    }
    fz_mutate_tensor(t, NT, i, r);
  }
}

FZ_NOCOV static bool make_values(vc_case* c) {
  fz_rng g = {c->seed};
  for (int i = 0; i < NT; i++) c->vals[i] = NULL;
  for (int i = 0; i < NT; i++) {
    int64_t n;
    c->vals[i] = fz_values_alloc(&c->call.t[i], &n);
    if (!c->vals[i]) return false;
    for (int64_t e = 0; e < n; e++) {
      double v = fz_xmode_value(&g, c->xmode, 8.0, 1.0);
      c->vals[i][e] = v;
    }
  }
  return true;
}

FZ_NOCOV static double value_of(void* user, int tensor, int64_t index) { return ((vc_case*)user)->vals[tensor][index]; }

/* The conv's output numerics (src/ref/causal_conv_ref.c, the ONNX reference): fp16 with a bias
 * rounds the sum before adding the bias. Returns the expected value and its tolerance. */
FZ_NOCOV static double conv_expect(const vc_case* c, double acc, double sumabs, double bias, double* tol) {
  double pre;
  if (c->has_bias && c->dt == LINATTN_DTYPE_F16) {
    const double conv = fz_round_to(acc, c->dt);
    pre = fz_round_to(conv + bias, c->dt);
    *tol = 1e-5 * sumabs + fz_ulp(conv, c->dt) + fz_ulp(pre, c->dt);
  } else {
    pre = fz_round_to(acc + bias, c->dt);
    *tol = 1e-5 * sumabs + fz_ulp(pre, c->dt);
  }
  if (c->desc.activation != LINATTN_ACTIVATION_SILU) return pre;
  const double y = pre / (1.0 + exp(-pre));
  *tol = 1.1 * *tol + fz_ulp(y, c->dt);
  return y;
}

/* float64 oracle: each sequence alone, concat(its state slot, its tokens) */
FZ_NOCOV static void check_oracle(const vc_case* c, const fz_call* k, const fz_instance* in, const char* what) {
  const int64_t C = c->C, K = c->K, S = c->S, dil = c->dil;
  fz_instance pristine;
  fz_instance_make(k, &pristine);
  bool named[VC_MAX_B + 3] = {false};
#define SLIN(slot, ch, s) (c->scl ? ((slot) * S + (s)) * C + (ch) : ((slot) * C + (ch)) * S + (s))
  for (int64_t i = 0; i < c->B; i++) {
    const int64_t t0 = c->cu[i], L = c->cu[i + 1] - c->cu[i];
    const int64_t slot = c->idx ? c->idx[i] : i;
    const bool reads = !c->flags || c->flags[i] != 0;
    named[slot] = true;
    for (int64_t ch = 0; ch < C; ch++) {
#define XAT(p) ((p) >= 0 ? fz_get(k, &pristine, IN, (t0 + (p)) * C + ch) \
                         : ((p) >= -S && reads ? fz_get(k, &pristine, INIT, SLIN(slot, ch, S + (p))) : 0.0))
      const double bias = c->has_bias ? fz_get(k, &pristine, BIAS, ch) : 0.0;
      for (int64_t t = 0; t < L; t++) {
        double acc = 0.0, sumabs = fabs(bias), tol;
        for (int64_t j = 0; j < K; j++) {
          const double w = fz_get(k, &pristine, W, ch * K + j);
          const int64_t back = (K - 1 - j) * dil;
          const double x = back > t + S ? 0.0 : XAT(t - back);
          acc += w * x;
          sumabs += fabs(w * x);
        }
        const double ref = conv_expect(c, acc, sumabs, bias, &tol);
        const double got = fz_get(k, in, OUT, (t0 + t) * C + ch);
        FZ_CHECK(fabs(got - ref) <= tol, "%s: output[token %lld, c=%lld] (sequence %lld) = %.9g, expected %.9g (tol %.3g)",
                 what, (long long)(t0 + t), (long long)ch, (long long)i, got, ref, tol);
      }
      if (c->has_final) {
        for (int64_t s = 0; s < S; s++) {
          const double want = XAT(L - S + s);
          const double got = fz_get(k, in, FINAL, SLIN(slot, ch, s));
          FZ_CHECK(got == want || (isnan(got) && isnan(want)),
                   "%s: final_state[slot %lld, c=%lld, s=%lld] = %.9g, expected %.9g", what, (long long)slot, (long long)ch,
                   (long long)s, got, want);
        }
      }
      if (c->has_update) {
        int64_t kept = c->count[i] < 0 ? 0 : c->count[i];
        if (kept > c->cap) kept = c->cap;
        if (kept > L) kept = L;
        for (int64_t j = 0; j < c->cap; j++) {
          const double want = j < kept ? XAT(j) : 0.0;
          const double got = fz_get(k, in, UPDATE, (i * c->cap + j) * C + ch);
          FZ_CHECK(got == want, "%s: state_update[%lld, %lld, c=%lld] = %.9g, expected %.9g", what, (long long)i,
                   (long long)j, (long long)ch, got, want);
        }
      }
#undef XAT
    }
  }
  /* slots no sequence names: untouched (in place: the initial state; else still poison) */
  if (c->has_final)
    for (int64_t slot = 0; slot < c->N; slot++) {
      if (named[slot]) continue;
      for (int64_t e = 0; e < C * S; e++) {
        const int64_t lin = slot * C * S + e;
        const unsigned char* p = (const unsigned char*)in->d[FINAL].data + lin * (int64_t)fz_esize(c->dt);
        FZ_CHECK(c->in_place ? fz_get(k, in, FINAL, lin) == fz_get(k, &pristine, INIT, lin) ||
                                   isnan(fz_get(k, &pristine, INIT, lin))
                             : fz_is_poison(p, c->dt),
                 "%s: final_state slot %lld, named by no sequence, was written", what, (long long)slot);
      }
    }
#undef SLIN
  fz_instance_free(k, &pristine);
}

FZ_NOCOV static linattn_status run(const void* user, linattn_context* ctx, const fz_call* k, fz_instance* in, int ws_mode,
                                   size_t* need_out) {
  const vc_case* c = (const vc_case*)user;
  const linattn_varlen_conv_desc* desc = c->desc_null ? NULL : &c->desc;
  const linattn_varlen_batch* batch = c->batch_null ? NULL : &c->batch;
  if (c->ctx_null) ctx = NULL;
  size_t need = 0;
  const linattn_status qs = linattn_varlen_causal_conv_with_state_workspace_size(
      ctx, desc, batch, fz_arg(k, in, IN), fz_arg(k, in, W), fz_arg(k, in, BIAS), fz_arg(k, in, INIT), NULL, NULL,
      fz_arg(k, in, OUT), fz_arg(k, in, FINAL), fz_arg(k, in, UPDATE), &need);
  if (fz_stop_after_query(qs, need, need_out)) return qs;
  fz_workspace ws;
  fz_workspace_make(&ws, ws_mode, qs, need);
  const linattn_status st = linattn_varlen_causal_conv_with_state(
      ctx, desc, batch, fz_arg(k, in, IN), fz_arg(k, in, W), fz_arg(k, in, BIAS), fz_arg(k, in, INIT), NULL, NULL,
      fz_arg(k, in, OUT), fz_arg(k, in, FINAL), fz_arg(k, in, UPDATE), ws.ptr, ws.size);
  fz_workspace_done(&ws, ws_mode, qs, st);
  if (need_out) *need_out = need;
  return st;
}

/* ORT's dynamic grouped mode (kernel_delta / previous_mask) is CUDA only: a valid call given
 * either tensor must be refused as unsupported, with nothing written. */
FZ_NOCOV static void check_dynamic_mode_refused(const vc_case* c, const fz_call* k) {
  fz_instance a;
  fz_instance_make(k, &a);
  const linattn_tensor* dyn = fz_arg(k, &a, W);
  const linattn_status st = linattn_varlen_causal_conv_with_state(
      fz_context(c->isa, c->threads, c->host), &c->desc, &c->batch, fz_arg(k, &a, IN), fz_arg(k, &a, W),
      fz_arg(k, &a, BIAS), fz_arg(k, &a, INIT), c->kernel_delta ? dyn : NULL, c->kernel_delta ? NULL : dyn,
      fz_arg(k, &a, OUT), fz_arg(k, &a, FINAL), fz_arg(k, &a, UPDATE), NULL, 0);
  FZ_CHECK(st == LINATTN_ERROR_UNSUPPORTED, "dynamic mode gave %s", linattn_status_string(st));
  fz_check_instance(k, &a, false, "dynamic mode");
  fz_instance_free(k, &a);
}

FZ_NOCOV static const char* perturb_case(void* c, fz_reader* r, int id) { return perturb((vc_case*)c, r, id); }
FZ_NOCOV static void mutate_case(void* c, fz_reader* r) { mutate((vc_case*)c, r); }
FZ_NOCOV static void oracle_case(const void* c, const fz_call* k, const fz_instance* in, const char* what) {
  check_oracle((const vc_case*)c, k, in, what);
}

static const vc_case* current_case;
FZ_NOCOV static void describe_case(char* buf, size_t size) {
  const vc_case* c = current_case;
  size_t n = (size_t)snprintf(buf, size,
                              "act %d dil %lld scl %d cap %lld B %lld N %lld C %lld K %lld total %lld bias %d final %d "
                              "inplace %d isa %s threads %d host %d ws %d xmode %d seed %llu | cu",
                              (int)c->desc.activation, (long long)c->desc.dilation, c->desc.state_channels_last,
                              (long long)c->desc.state_update_capacity, (long long)c->batch.batch_size, (long long)c->N,
                              (long long)c->C, (long long)c->K, (long long)c->total, (int)c->has_bias, (int)c->has_final,
                              (int)c->in_place, linattn_isa_name((linattn_isa)c->isa), c->threads, c->host, c->ws_mode,
                              c->xmode, (unsigned long long)c->seed);
  const int64_t nb = c->batch.batch_size;
  for (int64_t i = 0; i <= nb && i <= VC_MAX_B && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, " %d", c->cu ? (int)c->cu[i] : -1);
  for (int64_t i = 0; i < nb && i < VC_MAX_B && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, " [cnt %d idx %d flag %d]", c->count ? (int)c->count[i] : -9,
                          c->idx ? (int)c->idx[i] : -9, c->flags ? (int)c->flags[i] : -9);
  for (int i = 0; i < NT; i++) fz_describe_tensor(buf, size, vc_names[i], c->call.t[i].passed, &c->call.t[i].d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz_reader r = {data, size, 0};
  vc_case c;
  build_valid(&c, &r);
  uint8_t tail[64];
  fz_reader rm = fz_tail_reader(data, size, tail, sizeof tail);
  fz_choose_mode(&c, &rm, NUM_PERTURBATIONS, perturb_case, mutate_case, &c.expect, &c.what);
  const bool try_dynamic = c.expect == EXPECT_VALID && fz_chance(&rm, 5);
  c.kernel_delta = fz_chance(&rm, 50);
  fz_case_name = c.what;
  fz_call* k = &c.call;
  current_case = &c;
  fz_case_describe = describe_case;
  fz_verbose_case();
  fz_layout(k);
  /* a pool's final_state slots that no sequence names keep their poison (checked by the oracle
   * in valid cases): no element is required to be written */
  if (c.batch.state_indices) k->t[FINAL].aliased = true;
  if (make_values(&c)) {
    fz_make_template(k, value_of, &c);
    if (try_dynamic && !fz_has_unbacked(k)) check_dynamic_mode_refused(&c, k);
    const double vmax = c.xmode == 1 ? 8.0 : c.xmode == 2 ? 20.0 : 1.0;
    fz_target t = {.c = &c, .call = k, .expect = c.expect, .isa = c.isa, .threads = c.threads, .host = c.host,
                   .ws_mode = c.ws_mode, .run = run, .oracle = oracle_case, .oracle_on_chosen = true, .rel = 1e-5,
                   .rel_lowp = 1.6e-2, .ulps = 2.0, .atol = 1e-6 * (10.0 * vmax * vmax + vmax)};
    fz_run_case(&t);
    fz_free_template(k);
  }
  for (int i = 0; i < NT; i++) free(c.vals[i]);
  free(c.cu);
  free(c.count);
  free(c.idx);
  free(c.flags);
  return 0;
}
