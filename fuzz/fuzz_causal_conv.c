/*
 * libFuzzer target for linattn_causal_conv_with_state (also built as a corpus-replay program).
 * Same three modes as fuzz_linear_attention.c (valid / invalid / arbitrary); see there.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "fuzz_common.h"

enum { IN, W, BIAS, PAST, OUT, PRESENT, NT };
static const char* const cv_names[NT] = {"input", "weight", "bias", "past_state", "output", "present_state"};


typedef struct cv_case {
  linattn_causal_conv_desc desc;
  int64_t B, C, L, K, dil, S;
  int64_t W; /* desc.state_window of a valid case (apply_window) */
  bool cl;
  linattn_dtype dt;
  bool has_bias, has_past, has_present, in_place;
  int ws_mode;
  int isa, threads, host;
  bool desc_null, ctx_null;
  int expect;
  const char* what;
  int xmode;
  uint64_t seed;
  double* vals[NT];
  fz_call call;
} cv_case;

/* state dims for the layout: (B, C, S) or channels-last (B, S, C) */
static void state_dims(const cv_case* c, fz_tensor* t) {
  if (c->cl) fz_set_dims(t, 3, c->B, c->S, c->C, 0);
  else fz_set_dims(t, 3, c->B, c->C, c->S, 0);
}

/* Bytes of all tensors of the valid call (the state twice: past and present). */
static int64_t case_bytes(const cv_case* c) {
  const int64_t state = c->has_past || c->has_present ? c->S : 0;
  return (int64_t)fz_esize(c->dt) * (2 * c->B * c->C * c->L + c->C * (c->K + 1) + 2 * c->B * c->C * state);
}

static void build_valid(cv_case* c, fz_reader* r) {
  static const int64_t Bc[] = {1, 2, 1, 0}, Cc[] = {1, 2, 3, 4, 5, 6, 3, 2}, Cr[] = {0, 16, 17, 33, 64, 65};
  static const int64_t Lc[] = {1, 2, 3, 4, 5, 8, 1, 0}, Lr[] = {15, 16, 17, 33, 64};
  static const int64_t Kc[] = {1, 2, 3, 4, 4, 5}, Kr[] = {7, 9};
  memset(c, 0, sizeof *c);
  linattn_causal_conv_desc_init(&c->desc);
  c->desc.activation = fz_chance(r, 50) ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  c->B = Bc[fz_pick(r, 4)];
  c->C = fz_pick_dim(r, Cc, 8, Cr, 6);
  c->L = fz_pick_dim(r, Lc, 8, Lr, 5);
  c->K = fz_pick_dim(r, Kc, 6, Kr, 2);
  c->cl = fz_chance(r, 35);
  c->desc.channels_last = c->cl ? 1 : 0;
  c->dt = fz_dtypes[fz_pick(r, 3)];
  c->has_bias = fz_chance(r, 50);
  c->has_past = fz_chance(r, 55);
  c->has_present = !fz_chance(r, 15);
  c->in_place = c->has_past && c->has_present && fz_chance(r, 40);
  static const int64_t dils[] = {1, 1, 2, 3, 0, -1 /* L+1 */, -2 /* huge */};
  int64_t dil = dils[fz_pick(r, 7)];
  if (dil == -1) dil = c->L + 1;
  if (dil == -2) { /* taps far before the sequence read zeros; no state can hold them */
    if (!c->has_past && !c->has_present) dil = (int64_t)1 << 40;
    else dil = 2;
  }
  c->desc.dilation = dil;
  c->dil = dil == 0 ? 1 : dil;
  c->S = (c->K - 1) * c->dil;
  /* large rare dims come with small others (the huge dilation keeps no state: no bytes) */
  while (case_bytes(c) > FZ_BYTE_BUDGET && c->L > 1) c->L = (c->L + 1) / 2;
  while (case_bytes(c) > FZ_BYTE_BUDGET && c->B > 1) c->B = 1;
  while (case_bytes(c) > FZ_BYTE_BUDGET && c->C > 1) c->C = (c->C + 1) / 2;
  c->ws_mode = fz_pick(r, 3);
  c->isa = fz_pick_isa(r);
  c->threads = fz_pick_threads(r);
  c->host = fz_chance(r, 15);
  c->xmode = fz_pick(r, 3);
  c->seed = fz_u32(r);
  c->expect = EXPECT_VALID;
  c->what = "valid";

  fz_call* k = &c->call;
  fz_init_tensors(k, NT, cv_names, 1u << OUT | 1u << PRESENT, c->dt);
  for (int i = IN; i <= OUT; i += OUT - IN) {
    if (c->cl) fz_set_dims(&k->t[i], 3, c->B, c->L, c->C, 0);
    else fz_set_dims(&k->t[i], 3, c->B, c->C, c->L, 0);
    const int mode = fz_pick(r, 5), pad1 = fz_pick(r, 3), pad0 = fz_pick(r, 5); /* in this order */
    fz_strides3(mode, k->t[i].d.dims, pad1, pad0, k->t[i].d.strides);
  }
  fz_set_dims(&k->t[W], 3, c->C, 1, c->K, 0);
  fz_set_dims(&k->t[BIAS], 1, c->C, 0, 0, 0);
  state_dims(c, &k->t[PAST]);
  state_dims(c, &k->t[PRESENT]);
  k->t[BIAS].passed = c->has_bias;
  k->t[PAST].passed = c->has_past;
  k->t[PRESENT].passed = c->has_present;
  if (c->in_place) k->t[PRESENT].share_with = PAST;
  fz_null_empty(k, false, r);
  if (k->t[PAST].null_data && c->in_place) k->t[PRESENT].null_data = true;
}

/* axis of the state length in the state dims, and of L / C in input dims */
static const char* perturb(cv_case* c, fz_reader* r, int id) {
  fz_tensor* t = c->call.t;
  switch (id) {
    case 0:
      c->desc.activation = (linattn_activation)(int[]){0, 3, -1, 77}[fz_pick(r, 4)];
      return "activation invalid";
    case 1:
      c->desc.dilation = -1 - fz_pick(r, 5);
      return "dilation negative";
    case 2: {
      const int i = (int[]){IN, OUT, W, BIAS, PAST, PRESENT}[fz_pick(r, 6)];
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      if (i == BIAS) fz_set_dims(&t[i], 2, c->C, 1, 0, 0);
      else if (fz_chance(r, 50)) fz_set_dims(&t[i], 2, t[i].d.dims[0], t[i].d.dims[1] * t[i].d.dims[2], 0, 0);
      else t[i].d.rank = 4, t[i].d.dims[3] = 1, memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      return "wrong rank";
    }
    case 3:
      t[W].d.dims[1] = 2;
      return "weight middle dim not 1";
    case 4:
      t[W].d.dims[0] = c->C + 1;
      return "weight channels differ";
    case 5:
      t[W].d.dims[2] = 0;
      t[PAST].passed = t[PRESENT].passed = false;
      return "kernel size 0";
    case 6:
      if (!c->has_bias) return NULL;
      t[BIAS].d.dims[0] = c->C + 1;
      return "bias length differs";
    case 7: {
      const int i = fz_chance(r, 50) ? PAST : PRESENT;
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.dims[fz_pick(r, 3)] += 1;
      return "state shape wrong";
    }
    case 8:
      t[OUT].d.dims[fz_pick(r, 3)] += 1;
      memset(t[OUT].d.strides, 0, sizeof t[OUT].d.strides);
      return "output shape wrong";
    case 9: {
      const int i = (int[]){W, BIAS, PAST, OUT, PRESENT}[fz_pick(r, 5)];
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.dtype = fz_other_dtype(c->dt, r, LINATTN_DTYPE_F16);
      return "dtype differs from input";
    }
    case 10: {
      const int i = fz_pick(r, NT);
      if (!t[i].passed) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.dtype = (linattn_dtype)(fz_chance(r, 50) ? 0 : 4 + fz_pick(r, 3));
      return "invalid dtype value";
    }
    case 11: {
      const int i = fz_pick(r, NT);
      if (!t[i].passed || fz_numel(&t[i].d) <= 0) return NULL;
      fz_unshare(t, NT, i);
      t[i].null_data = true;
      return "NULL data with elements";
    }
    case 12: {
      const int i = (int[]){IN, W, OUT}[fz_pick(r, 3)];
      fz_unshare(t, NT, i);
      t[i].passed = false;
      return "required tensor NULL";
    }
    case 13: {
      const int o = fz_chance(r, 60) || !c->has_present ? OUT : PRESENT;
      const int i = (int[]){IN, W, BIAS, PAST, OUT, PRESENT}[fz_pick(r, 6)];
      if (i == o || !t[i].passed || t[i].null_data || fz_numel(&t[i].d) <= 0 || fz_numel(&t[o].d) <= 0) return NULL;
      if (o == PRESENT && i == PAST) return NULL;
      fz_overlap(t, NT, o, i);
      return "output overlaps another tensor";
    }
    case 14:
      if (!c->has_past || !c->has_present || fz_numel(&t[PAST].d) < 2) return NULL;
      t[PRESENT].share_with = PAST;
      t[PRESENT].share_offset = 1 + fz_pick(r, (int)(fz_numel(&t[PAST].d) - 1));
      t[PRESENT].null_data = t[PAST].null_data = false;
      return "present partially overlaps past";
    case 15: {
      const int i = fz_chance(r, 50) ? IN : OUT;
      if (t[i].d.dims[2] < 2 || fz_numel(&t[i].d) <= 0) return NULL; /* empty: strides do not matter */
      fz_unshare(t, NT, i);
      t[i].d.strides[2] = 2;
      t[i].d.strides[1] = 2 * t[i].d.dims[2];
      t[i].d.strides[0] = t[i].d.strides[1] * (t[i].d.dims[1] > 0 ? t[i].d.dims[1] : 1);
      return "innermost stride 2";
    }
    case 16: {
      const int i = (int[]){W, BIAS, PAST, PRESENT}[fz_pick(r, 4)];
      if (!t[i].passed || fz_numel(&t[i].d) <= 0) return NULL;
      int ax = -1;
      for (int a = 0; a + 1 < t[i].d.rank; a++)
        if (t[i].d.dims[a] > 1) ax = a;
      if (t[i].d.rank == 1 && t[i].d.dims[0] > 1) ax = 0;
      if (ax < 0) return NULL;
      fz_unshare(t, NT, i);
      int64_t s = 1;
      for (int a = t[i].d.rank - 1; a >= 0; a--) {
        t[i].d.strides[a] = s * (a == ax ? 2 : 1);
        s *= t[i].d.dims[a] > 0 ? t[i].d.dims[a] : 1;
        if (a == ax) s *= 2;
      }
      return "packed tensor given strides";
    }
    case 17: {
      const int i = fz_chance(r, 50) ? IN : OUT;
      if (t[i].d.dims[2] < 2 || t[i].d.dims[1] < 2 || fz_numel(&t[i].d) <= 0) return NULL;
      fz_unshare(t, NT, i);
      t[i].d.strides[2] = 1;
      t[i].d.strides[1] = t[i].d.dims[2] - 1;
      t[i].d.strides[0] = t[i].d.dims[1] * t[i].d.dims[2];
      return "strides make elements overlap";
    }
    case 18:
      c->ws_mode = fz_chance(r, 50) ? WS_TOO_SMALL : WS_MISALIGNED;
      return "workspace too small or misaligned";
    case 19: { /* element count overflows */
      if (c->B < 1 || c->C < 2) return NULL;
      const int64_t huge = (int64_t)1 << 62;
      const int la = c->cl ? 1 : 2;
      for (int i = IN; i <= OUT; i += OUT - IN) {
        fz_unshare(t, NT, i);
        t[i].d.dims[la] = huge;
        memset(t[i].d.strides, 0, sizeof t[i].d.strides);
      }
      return "element count overflows";
    }
    case 20:
      if (c->B < 1 || fz_numel(&t[IN].d) < 2 || (t[IN].d.dims[1] < 2 && t[IN].d.dims[0] < 2)) return NULL;
      fz_unshare(t, NT, IN);
      t[IN].d.strides[2] = 1;
      t[IN].d.strides[1] = (int64_t)1 << 61;
      t[IN].d.strides[0] = (int64_t)1 << 62;
      if (t[IN].d.dims[1] < 2) t[IN].d.strides[0] = (int64_t)1 << 62;
      return "memory extent overflows";
    case 21:
      if (fz_chance(r, 50)) c->desc_null = true;
      else c->ctx_null = true;
      return c->desc_null ? "desc NULL" : "context NULL";
    default:
      return NULL;
  }
}
#define NUM_PERTURBATIONS 22

/* state_window (ORT contrib): read after the mode, from bytes that older (shorter) corpus inputs
 * do not have, so they keep W = 0. A valid case gets W in [1, 8] (states (W, B, C, S)
 * [channels_last (W, B, S, C)], packed), or one window error: W outside [0, 8], or rank-3
 * states without the window axis. */
static void apply_window(cv_case* c, fz_reader* r) {
  if (!fz_chance(r, 35) || c->expect != EXPECT_VALID) return;
  const int64_t W = 1 + fz_pick(r, 8);
  if ((W - 1) * 2 * (int64_t)fz_esize(c->dt) * c->B * c->C * c->S > 2 * FZ_BYTE_BUDGET) return;
  fz_tensor* t = c->call.t;
  c->W = W;
  c->desc.state_window = W;
  for (int i = PAST; i <= PRESENT; i += PRESENT - PAST) {
    fz_tensor* st = &t[i];
    const int64_t d0 = st->d.dims[0], d1 = st->d.dims[1], d2 = st->d.dims[2];
    st->d.rank = 4;
    st->d.dims[0] = W, st->d.dims[1] = d0, st->d.dims[2] = d1, st->d.dims[3] = d2;
    memset(st->d.strides, 0, sizeof st->d.strides);
  }
  const int bad = fz_pick(r, 8);
  if (bad == 0) {
    c->desc.state_window = fz_chance(r, 50) ? 9 + fz_pick(r, 3) : -1;
    c->expect = EXPECT_INVALID, c->what = "state_window outside [0, 8]";
  } else if (bad == 1 && (c->has_past || c->has_present)) {
    const int i = c->has_past && (!c->has_present || fz_chance(r, 50)) ? PAST : PRESENT;
    if (c->in_place) t[PRESENT].share_with = -1;
    state_dims(c, &t[i]);
    t[i].null_data = false;
    c->expect = EXPECT_INVALID, c->what = "windowed state without the window axis";
  }
}

static void mutate(cv_case* c, fz_reader* r) {
  fz_tensor* t = c->call.t;
  const int n = 1 + fz_pick(r, 3);
  for (int m = 0; m < n; m++) {
    const int i = fz_pick(r, NT + 1);
    if (i == NT) {
      switch (fz_pick(r, 4)) {
        case 0: c->desc.activation = (linattn_activation)fz_pick(r, 4); break;
        case 1: c->desc.dilation = fz_pick(r, 6) - 1; break;
        case 2: c->desc.dilation = fz_chance(r, 50) ? INT64_MAX : INT64_MAX / 2 + 1; break;
        default: c->desc.channels_last = fz_pick(r, 3); break;
      }
      continue;
    }
    fz_mutate_tensor(t, NT, i, r);
  }
}

/* false: a backed tensor has more elements than a region may hold (zero strides over huge dims),
 * too many to fill and check; the case is skipped. */
FZ_NOCOV static bool make_values(cv_case* c) {
  fz_rng g = {c->seed};
  for (int i = 0; i < NT; i++) c->vals[i] = NULL;
  for (int i = 0; i < NT; i++) {
    int64_t n;
    c->vals[i] = fz_values_alloc(&c->call.t[i], &n);
    if (!c->vals[i]) return false;
    for (int64_t e = 0; e < n; e++) {
      double v = fz_xmode_value(&g, c->xmode, 8.0, 1.0); /* wide range: SiLU tails */
      c->vals[i][e] = v;
    }
  }
  return true;
}

FZ_NOCOV static double value_of(void* user, int tensor, int64_t index) { return ((cv_case*)user)->vals[tensor][index]; }

/* float64 oracle, checked element by element against an instance of a valid call */
FZ_NOCOV static void check_oracle(const cv_case* c, const fz_call* k, const fz_instance* in, const char* what) {
  const int64_t B = c->B, C = c->C, L = c->L, K = c->K, S = c->S, dil = c->dil;
  /* state_window W: states are W slots of (B, C, S) [channels_last (B, S, C)]; slot W - 1 is read */
  const int64_t Wn = c->W > 0 ? c->W : 1, past0 = (Wn - 1) * B * C * S;
  fz_instance pristine; /* inputs before the call (past_state may be updated in place) */
  fz_instance_make(k, &pristine);
  /* logical (b, ch, pos) -> linear index of a (B, C, X) or channels-last (B, X, C) tensor */
#define LIN(X, b, ch, pos) (c->cl ? ((b) * (X) + (pos)) * C + (ch) : ((b) * C + (ch)) * (X) + (pos))
  for (int64_t b = 0; b < B; b++) {
    for (int64_t ch = 0; ch < C; ch++) {
      /* x at position p of the virtual sequence concat(past, input), p in [-S, L) */
#define XAT(p) ((p) >= 0 ? fz_get(k, &pristine, IN, LIN(L, b, ch, (p))) \
                         : ((p) >= -S && c->has_past ? fz_get(k, &pristine, PAST, past0 + LIN(S, b, ch, S + (p))) : 0.0))
      for (int64_t t = 0; t < L; t++) {
        const double bias = c->has_bias ? fz_get(k, &pristine, BIAS, ch) : 0.0;
        double acc = 0.0, sumabs = fabs(bias);
        for (int64_t j = 0; j < K; j++) {
          const double w = fz_get(k, &pristine, W, ch * K + j);
          const int64_t back = (K - 1 - j) * dil;
          const double x = back > t + S ? 0.0 : XAT(t - back);
          acc += w * x;
          sumabs += fabs(w * x);
        }
        /* ONNX reference numerics: fp16 convolution results are fp16 before the bias is added
         * (in fp16); other dtypes round once. See src/ref/causal_conv_ref.c. */
        double pre, tol;
        if (c->has_bias && c->dt == LINATTN_DTYPE_F16) {
          const double conv = fz_round_to(acc, c->dt);
          pre = fz_round_to(conv + bias, c->dt);
          tol = 1e-5 * sumabs + fz_ulp(conv, c->dt) + fz_ulp(pre, c->dt);
        } else {
          pre = fz_round_to(acc + bias, c->dt);
          tol = 1e-5 * sumabs + fz_ulp(pre, c->dt);
        }
        double ref = pre;
        if (c->desc.activation == LINATTN_ACTIVATION_SILU) {
          ref = pre / (1.0 + exp(-pre));
          tol = 1.1 * tol + fz_ulp(ref, c->dt); /* SiLU' <= 1.1 */
        }
        const double got = fz_get(k, in, OUT, LIN(L, b, ch, t));
        FZ_CHECK(fabs(got - ref) <= tol, "%s: output[b=%lld, c=%lld, t=%lld] = %.9g, expected %.9g (tol %.3g)", what,
                 (long long)b, (long long)ch, (long long)t, got, ref, tol);
      }
      if (c->has_present) {
        /* slot j: the S positions up to position L - W + j; slots below W - L zeros (W - 1 never) */
        for (int64_t s = 0; s < S * Wn; s++) {
          const int64_t j = s / S, end = L - Wn + j, pos = end + 1 - S + s % S;
          const double want = j < Wn - 1 && j < Wn - L ? 0.0 : XAT(pos);
          const double got = fz_get(k, in, PRESENT, j * B * C * S + LIN(S, b, ch, s % S));
          FZ_CHECK(got == want || (isnan(got) && isnan(want)),
                   "%s: present_state[b=%lld, c=%lld, s=%lld] = %.9g, expected %.9g", what, (long long)b, (long long)ch,
                   (long long)s, got, want);
        }
      }
#undef XAT
    }
  }
#undef LIN
  fz_instance_free(k, &pristine);
}

FZ_NOCOV static linattn_status run(const void* user, linattn_context* ctx, const fz_call* k, fz_instance* in, int ws_mode,
                                   size_t* need_out) {
  const cv_case* c = (const cv_case*)user;
  const linattn_causal_conv_desc* desc = c->desc_null ? NULL : &c->desc;
  if (c->ctx_null) ctx = NULL;
  size_t need = 0;
  const linattn_status qs = linattn_causal_conv_with_state_workspace_size(ctx, desc, fz_arg(k, in, IN), fz_arg(k, in, W), fz_arg(k, in, BIAS),
                                                                     fz_arg(k, in, PAST), fz_arg(k, in, OUT),
                                                                     fz_arg(k, in, PRESENT), &need);
  if (fz_stop_after_query(qs, need, need_out)) return qs;
  fz_workspace ws;
  fz_workspace_make(&ws, ws_mode, qs, need);
  const linattn_status st = linattn_causal_conv_with_state(ctx, desc, fz_arg(k, in, IN), fz_arg(k, in, W), fz_arg(k, in, BIAS),
                                                            fz_arg(k, in, PAST), fz_arg(k, in, OUT), fz_arg(k, in, PRESENT),
                                                            ws.ptr, ws.size);
  fz_workspace_done(&ws, ws_mode, qs, st);
  if (need_out) *need_out = need;
  return st;
}

FZ_NOCOV static const char* perturb_case(void* c, fz_reader* r, int id) { return perturb((cv_case*)c, r, id); }
FZ_NOCOV static void mutate_case(void* c, fz_reader* r) { mutate((cv_case*)c, r); }
FZ_NOCOV static void oracle_case(const void* c, const fz_call* k, const fz_instance* in, const char* what) {
  check_oracle((const cv_case*)c, k, in, what);
}

/* The current case, formatted for a failure message (fz_case_describe). */
static const cv_case* current_case;
FZ_NOCOV static void describe_case(char* buf, size_t size) {
  const cv_case* c = current_case;
  snprintf(buf, size,
           "window %lld act %d dil %lld cl %d B %lld C %lld L %lld K %lld bias %d past %d present %d inplace %d isa %s threads %d host %d "
           "ws %d xmode %d seed %llu |",
           (long long)c->desc.state_window, (int)c->desc.activation, (long long)c->desc.dilation, c->desc.channels_last, (long long)c->B, (long long)c->C,
           (long long)c->L, (long long)c->K, (int)c->has_bias, (int)c->has_past, (int)c->has_present, (int)c->in_place,
           linattn_isa_name((linattn_isa)c->isa), c->threads, c->host, c->ws_mode, c->xmode, (unsigned long long)c->seed);
  for (int i = 0; i < NT; i++)
    fz_describe_tensor(buf, size, cv_names[i], c->call.t[i].passed, &c->call.t[i].d);
}

int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  fz_reader r = {data, size, 0};
  cv_case c;
  build_valid(&c, &r);
  fz_choose_mode(&c, &r, NUM_PERTURBATIONS, perturb_case, mutate_case, &c.expect, &c.what);
  apply_window(&c, &r);
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

  /* fused multiply-adds and tap order may differ between kernel families: allow a few
   * roundings of the largest possible sum of |w x| (k <= 9 taps plus a bias here) */
  const double vmax = c.xmode == 1 ? 8.0 : c.xmode == 2 ? 20.0 : 1.0;
  fz_target t = {.c = &c, .call = k, .expect = c.expect, .isa = c.isa, .threads = c.threads, .host = c.host,
                  .ws_mode = c.ws_mode, .run = run, .oracle = oracle_case, .oracle_on_chosen = true, .rel = 1e-5, .rel_lowp = 1.6e-2, .ulps = 2.0,
                  .atol = 1e-6 * (10.0 * vmax * vmax + vmax)};
  fz_run_case(&t);
  fz_free_template(k);
  for (int i = 0; i < NT; i++) free(c.vals[i]);
  return 0;
}
