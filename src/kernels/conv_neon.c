/*
 * CausalConvWithState, AArch64 Advanced SIMD family. One pass over input and output with the
 * past state, bias, rounding to T, SiLU and the dtype conversions fused (conv_common.h gives
 * the order of operations). Channels-first runs along time (4 or 16 outputs per step, taps as
 * unaligned loads of the same row); channels-last runs along channels with tap-major fp32
 * weights. Every element, whichever path computes it (head, body, tail, decode), gets the same
 * operations: acc = bias, one FMA per tap in tap order, the vector finish below; so results
 * never depend on the channel split, the thread count or how a sequence is cut into calls.
 * Order (conv_common.h, the reference's): acc = 0; acc += w_j x_j (FMA) for j = 0 .. K-1; with a
 * bias: acc = round_f16(acc) for fp16, acc = acc + bias; v = round_T(acc); SiLU.
 */
#include <arm_neon.h>
#include <math.h>

#include "conv_common.h"
#include "neon_util.h"

/* The bias add (only when there is a bias: adding +0 would turn -0 into +0). fp16 rounds the
 * tap sum first, like the reference's fp16 matmul followed by an fp16 add. */
NEON_INLINE float32x4_t conv_neon_add_bias(float32x4_t acc, float32x4_t bias, const linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) acc = neon_round4(acc, dt);
  return vaddq_f32(acc, bias);
}
NEON_INLINE float conv_neon_add_bias1(float acc, float bias, const linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) acc = linattn_round_to(acc, dt);
  return acc + bias;
}

/* round_T(acc), then SiLU in fp32 as the ONNX reference writes it: v * (1 / (1 + exp(-v))). */
NEON_INLINE float32x4_t conv_neon_finish(float32x4_t acc, const linattn_dtype dt, const int silu) {
  float32x4_t v = neon_round4(acc, dt);
  if (silu) {
    const float32x4_t e = neon_exp4(vnegq_f32(v));
    v = vmulq_f32(v, vdivq_f32(vdupq_n_f32(1.0f), vaddq_f32(vdupq_n_f32(1.0f), e)));
  }
  return v;
}

/* 4 outputs [i, i + 4): the bias add (when there is a bias), the finish, the store. */
NEON_INLINE void conv_neon_store4_out(void* y, int64_t i, const linattn_dtype dt, const int silu, const int has_bias,
                                      float32x4_t acc, float32x4_t bias) {
  if (has_bias) acc = conv_neon_add_bias(acc, bias, dt);
  neon_store4(y, i, dt, conv_neon_finish(acc, dt, silu));
}

/* One element through the same finish (lane 0), stored with the scalar RNE conversion. */
NEON_INLINE void conv_neon_store1(void* base, int64_t i, const linattn_dtype dt, const int silu, float acc) {
  const float v = vgetq_lane_f32(conv_neon_finish(vdupq_n_f32(acc), dt, silu), 0);
  linattn_store_f32(base, i, dt, v);
}

/* ------------------------------------------------------------------ channels first */

NEON_INLINE void conv_neon_cf_channel(const conv_params* p, int64_t b, int64_t c, float* wf,
                                      const linattn_dtype dt, const int silu) {
  const int64_t K = p->K, d = p->dilation, S = p->S, L = p->L;
  for (int64_t j = 0; j < K; ++j) wf[j] = linattn_load_f32(p->w, c * K + j, dt);
  const int has_bias = p->bias != NULL;
  const float bias = has_bias ? linattn_load_f32(p->bias, c, dt) : 0.0f;
  const size_t es = conv_esize(dt);
  const void* x = conv_at(p->x, b * p->x_sb + c * p->x_sc, es);
  void* y = (char*)p->y + (b * p->y_sb + c * p->y_sc) * (int64_t)es;
  const void* past = p->past ? conv_at(p->past, b * p->s_sb + c * p->s_sc, es) : NULL;

  const int64_t head = S < L ? S : L;
  for (int64_t t = 0; t < head; ++t) { /* taps may reach into the past state */
    float acc = 0.0f;
    for (int64_t j = 0; j < K; ++j) {
      const int64_t pos = t + j * d;
      const float v = pos >= S ? linattn_load_f32(x, pos - S, dt) : (past ? linattn_load_f32(past, pos, dt) : 0.0f);
      acc = fmaf(wf[j], v, acc);
    }
    if (has_bias) acc = conv_neon_add_bias1(acc, bias, dt);
    conv_neon_store1(y, t, dt, silu, acc);
  }
  /* body: every tap inside the input row; x index of tap j at output t is t - S + j d */
  int64_t t = head;
  const float32x4_t vb = vdupq_n_f32(bias), vz = vdupq_n_f32(0.0f);
  for (; t + 16 <= L; t += 16) {
    float32x4_t a0 = vz, a1 = vz, a2 = vz, a3 = vz;
    const int64_t base = t - S;
    for (int64_t j = 0; j < K; ++j) {
      const int64_t o = base + j * d;
      const float w = wf[j];
      a0 = vfmaq_n_f32(a0, neon_load4(x, o, dt), w);
      a1 = vfmaq_n_f32(a1, neon_load4(x, o + 4, dt), w);
      a2 = vfmaq_n_f32(a2, neon_load4(x, o + 8, dt), w);
      a3 = vfmaq_n_f32(a3, neon_load4(x, o + 12, dt), w);
    }
    conv_neon_store4_out(y, t, dt, silu, has_bias, a0, vb);
    conv_neon_store4_out(y, t + 4, dt, silu, has_bias, a1, vb);
    conv_neon_store4_out(y, t + 8, dt, silu, has_bias, a2, vb);
    conv_neon_store4_out(y, t + 12, dt, silu, has_bias, a3, vb);
  }
  for (; t + 4 <= L; t += 4) {
    float32x4_t a0 = vz;
    for (int64_t j = 0; j < K; ++j) a0 = vfmaq_n_f32(a0, neon_load4(x, t - S + j * d, dt), wf[j]);
    conv_neon_store4_out(y, t, dt, silu, has_bias, a0, vb);
  }
  for (; t < L; ++t) {
    float acc = 0.0f;
    for (int64_t j = 0; j < K; ++j) acc = fmaf(wf[j], linattn_load_f32(x, t - S + j * d, dt), acc);
    if (has_bias) acc = conv_neon_add_bias1(acc, bias, dt);
    conv_neon_store1(y, t, dt, silu, acc);
  }
  conv_cf_write_present(p, b, c); /* after every read of this channel's past */
}

/* Decode (L = 1), channels first, dilation 1, K in {2, 3, 4}: 4 channels per step. The (C, K)
 * weights and (C, K-1) states are channel-major, so AArch64's de-interleaving loads (LD2/3/4)
 * give tap j of 4 channels in one register; the dot product and the state shift (ST2/3 of the
 * raw bits) happen in one pass. Each group is loaded before it is stored: in place is safe.
 * Same per-element operations as the general path. Returns the channels done (multiple of 4). */
#define CONV_DEC_TAPS4(K, W, P, X)                                              \
  float32x4_t w_[4], x_[4];                                                     \
  for (int j = 0; j < K; j++) w_[j] = W[j];                                     \
  for (int j = 0; j + 1 < K; j++) x_[j] = P[j];                                 \
  x_[K - 1] = X;                                                                \
  float32x4_t acc = vdupq_n_f32(0.0f);                                          \
  for (int j = 0; j < K; j++) acc = vfmaq_f32(acc, x_[j], w_[j]);

NEON_INLINE float32x4_t conv_neon_dec_finish(const conv_params* p, int64_t c, float32x4_t acc, const linattn_dtype dt,
                                             const int silu) {
  if (p->bias) acc = conv_neon_add_bias(acc, neon_load4(p->bias, c, dt), dt);
  return conv_neon_finish(acc, dt, silu);
}

NEON_INLINE int64_t conv_neon_cf_decode(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const linattn_dtype dt,
                                        const int silu, const int K) {
  int64_t c = c0;
  const int64_t end = c0 + nc / 4 * 4;
  if (dt == LINATTN_DTYPE_F32) {
    const float* w = (const float*)p->w;
    const float* x = (const float*)p->x + b * p->x_sb;
    float* y = (float*)p->y + b * p->y_sb;
    const float* past = p->past ? (const float*)p->past + b * p->s_sb : NULL;
    float* pres = p->present ? (float*)p->present + b * p->s_sb : NULL;
    for (; c < end; c += 4) {
      const float32x4_t xv = vld1q_f32(x + c);
      float32x4_t pv[3] = {vdupq_n_f32(0.0f), vdupq_n_f32(0.0f), vdupq_n_f32(0.0f)};
      float32x4_t wv[4];
      if (K == 4) {
        const float32x4x4_t W = vld4q_f32(w + c * 4);
        wv[0] = W.val[0]; wv[1] = W.val[1]; wv[2] = W.val[2]; wv[3] = W.val[3];
        if (past) { const float32x4x3_t P = vld3q_f32(past + c * 3); pv[0] = P.val[0]; pv[1] = P.val[1]; pv[2] = P.val[2]; }
      } else if (K == 3) {
        const float32x4x3_t W = vld3q_f32(w + c * 3);
        wv[0] = W.val[0]; wv[1] = W.val[1]; wv[2] = W.val[2];
        if (past) { const float32x4x2_t P = vld2q_f32(past + c * 2); pv[0] = P.val[0]; pv[1] = P.val[1]; }
      } else {
        const float32x4x2_t W = vld2q_f32(w + c * 2);
        wv[0] = W.val[0]; wv[1] = W.val[1];
        if (past) pv[0] = vld1q_f32(past + c);
      }
      CONV_DEC_TAPS4(K, wv, pv, xv)
      vst1q_f32(y + c, conv_neon_dec_finish(p, c, acc, dt, silu));
      if (pres) {
        if (K == 4) { const float32x4x3_t N = {{pv[1], pv[2], xv}}; vst3q_f32(pres + c * 3, N); }
        else if (K == 3) { const float32x4x2_t N = {{pv[1], xv}}; vst2q_f32(pres + c * 2, N); }
        else vst1q_f32(pres + c, xv);
      }
    }
  } else {
    const uint16_t* w = (const uint16_t*)p->w;
    const uint16_t* x = (const uint16_t*)p->x + b * p->x_sb;
    uint16_t* y = (uint16_t*)p->y + b * p->y_sb;
    const uint16_t* past = p->past ? (const uint16_t*)p->past + b * p->s_sb : NULL;
    uint16_t* pres = p->present ? (uint16_t*)p->present + b * p->s_sb : NULL;
    const uint16x4_t z = vdup_n_u16(0);
    for (; c < end; c += 4) {
      const uint16x4_t xr = vld1_u16(x + c);
      uint16x4_t pr[3] = {z, z, z};
      float32x4_t wv[4], pv[3];
      if (K == 4) {
        const uint16x4x4_t W = vld4_u16(w + c * 4);
        for (int j = 0; j < 4; j++) wv[j] = dt == LINATTN_DTYPE_F16 ? neon_f16_to_f32(W.val[j]) : neon_bf16_to_f32(W.val[j]);
        if (past) { const uint16x4x3_t P = vld3_u16(past + c * 3); pr[0] = P.val[0]; pr[1] = P.val[1]; pr[2] = P.val[2]; }
      } else if (K == 3) {
        const uint16x4x3_t W = vld3_u16(w + c * 3);
        for (int j = 0; j < 3; j++) wv[j] = dt == LINATTN_DTYPE_F16 ? neon_f16_to_f32(W.val[j]) : neon_bf16_to_f32(W.val[j]);
        if (past) { const uint16x4x2_t P = vld2_u16(past + c * 2); pr[0] = P.val[0]; pr[1] = P.val[1]; }
      } else {
        const uint16x4x2_t W = vld2_u16(w + c * 2);
        for (int j = 0; j < 2; j++) wv[j] = dt == LINATTN_DTYPE_F16 ? neon_f16_to_f32(W.val[j]) : neon_bf16_to_f32(W.val[j]);
        if (past) pr[0] = vld1_u16(past + c);
      }
      for (int j = 0; j + 1 < K; j++) pv[j] = dt == LINATTN_DTYPE_F16 ? neon_f16_to_f32(pr[j]) : neon_bf16_to_f32(pr[j]);
      const float32x4_t xv = dt == LINATTN_DTYPE_F16 ? neon_f16_to_f32(xr) : neon_bf16_to_f32(xr);
      CONV_DEC_TAPS4(K, wv, pv, xv)
      neon_store4(y, c, dt, conv_neon_dec_finish(p, c, acc, dt, silu));
      if (pres) {
        if (K == 4) { const uint16x4x3_t N = {{pr[1], pr[2], xr}}; vst3_u16(pres + c * 3, N); }
        else if (K == 3) { const uint16x4x2_t N = {{pr[1], xr}}; vst2_u16(pres + c * 2, N); }
        else vst1_u16(pres + c, xr);
      }
    }
  }
  return c - c0;
}
#undef CONV_DEC_TAPS4

NEON_INLINE void conv_neon_cf(const conv_params* p, int64_t b, int64_t c0, int64_t nc, float* wf,
                              const linattn_dtype dt, const int silu) {
  int64_t done = 0;
  /* packed decode: x, y rows of one element (channel stride 1), state (C, K-1) */
  if (p->L == 1 && p->dilation == 1 && p->K >= 2 && p->K <= 4 && p->x_sc == 1 && p->y_sc == 1 &&
      p->s_sc == p->K - 1 && p->s_st == 1) {
    if (p->K == 4) done = conv_neon_cf_decode(p, b, c0, nc, dt, silu, 4);
    else if (p->K == 3) done = conv_neon_cf_decode(p, b, c0, nc, dt, silu, 3);
    else done = conv_neon_cf_decode(p, b, c0, nc, dt, silu, 2);
  }
  for (int64_t c = c0 + done; c < c0 + nc; ++c) conv_neon_cf_channel(p, b, c, wf, dt, silu);
}

/* ------------------------------------------------------------------ channels last */

NEON_INLINE void conv_neon_cl(const conv_params* p, int64_t b, int64_t c0, int64_t nc, const conv_scratch_layout* s,
                              const linattn_dtype dt, const int silu) {
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, ncp = conv_ncp(nc);
  const int has_bias = p->bias != NULL;
  const float32x4_t vz = vdupq_n_f32(0.0f);
  conv_fill_weights_tk(p, c0, nc, s->wt, s->bias);
  memset(s->zero, 0, (size_t)nc * es);
  for (int64_t t = 0; t < p->L; ++t) {
    void* y = (char*)p->y + (b * p->y_sb + t * p->y_st + c0) * (int64_t)es;
    int64_t c = 0;
    for (; c + 16 <= nc; c += 16) {
      float32x4_t a0 = vz, a1 = vz, a2 = vz, a3 = vz;
      for (int64_t j = 0; j < K; ++j) {
        const void* row = conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
        const float* w = s->wt + j * ncp + c;
        a0 = vfmaq_f32(a0, neon_load4(row, c, dt), vld1q_f32(w));
        a1 = vfmaq_f32(a1, neon_load4(row, c + 4, dt), vld1q_f32(w + 4));
        a2 = vfmaq_f32(a2, neon_load4(row, c + 8, dt), vld1q_f32(w + 8));
        a3 = vfmaq_f32(a3, neon_load4(row, c + 12, dt), vld1q_f32(w + 12));
      }
      /* s->bias holds zeros when there is no bias (conv_fill_weights_tk) */
      conv_neon_store4_out(y, c, dt, silu, has_bias, a0, vld1q_f32(s->bias + c));
      conv_neon_store4_out(y, c + 4, dt, silu, has_bias, a1, vld1q_f32(s->bias + c + 4));
      conv_neon_store4_out(y, c + 8, dt, silu, has_bias, a2, vld1q_f32(s->bias + c + 8));
      conv_neon_store4_out(y, c + 12, dt, silu, has_bias, a3, vld1q_f32(s->bias + c + 12));
    }
    for (; c + 4 <= nc; c += 4) {
      float32x4_t a0 = vz;
      for (int64_t j = 0; j < K; ++j)
        a0 = vfmaq_f32(a0, neon_load4(conv_cl_padded_row(p, b, c0, t + j * d, s->zero), c, dt),
                       vld1q_f32(s->wt + j * ncp + c));
      conv_neon_store4_out(y, c, dt, silu, has_bias, a0, vld1q_f32(s->bias + c));
    }
    for (; c < nc; ++c) {
      float acc = 0.0f;
      for (int64_t j = 0; j < K; ++j)
        acc = fmaf(s->wt[j * ncp + c], linattn_load_f32(conv_cl_padded_row(p, b, c0, t + j * d, s->zero), c, dt), acc);
      if (has_bias) acc = conv_neon_add_bias1(acc, s->bias[c], dt);
      conv_neon_store1(y, c, dt, silu, acc);
    }
  }
  conv_cl_write_present(p, b, c0, nc); /* after every read of the block's past */
}

/* ------------------------------------------------------------------ entry */

#define CONV_NEON_VARIANTS(NAME, LAYOUT, ARG)                                                    \
  static void NAME##_f32(const conv_params* p, int64_t b, int64_t c0, int64_t nc, ARG, int silu) { \
    if (silu) LAYOUT(p, b, c0, nc, sc, LINATTN_DTYPE_F32, 1);                                       \
    else LAYOUT(p, b, c0, nc, sc, LINATTN_DTYPE_F32, 0);                                            \
  }                                                                                                 \
  static void NAME##_f16(const conv_params* p, int64_t b, int64_t c0, int64_t nc, ARG, int silu) { \
    if (silu) LAYOUT(p, b, c0, nc, sc, LINATTN_DTYPE_F16, 1);                                       \
    else LAYOUT(p, b, c0, nc, sc, LINATTN_DTYPE_F16, 0);                                            \
  }                                                                                                 \
  static void NAME##_bf16(const conv_params* p, int64_t b, int64_t c0, int64_t nc, ARG, int silu) { \
    if (silu) LAYOUT(p, b, c0, nc, sc, LINATTN_DTYPE_BF16, 1);                                      \
    else LAYOUT(p, b, c0, nc, sc, LINATTN_DTYPE_BF16, 0);                                           \
  }

CONV_NEON_VARIANTS(conv_neon_cf_run, conv_neon_cf, float* sc)
CONV_NEON_VARIANTS(conv_neon_cl_run, conv_neon_cl, const conv_scratch_layout* sc)

static void conv_neon_run(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch) {
  /* No flush-to-zero here: nothing recurs, and SiLU must stay exact near the subnormal range
   * (sigmoid(v) is subnormal for v < -87.3 while v * sigmoid(v) is still normal). */
  conv_scratch_layout s = conv_scratch_split(p, nc, scratch);
  const int silu = p->activation == LINATTN_ACTIVATION_SILU;
  switch (p->dtype) {
    case LINATTN_DTYPE_F16:
      if (p->channels_last) conv_neon_cl_run_f16(p, b, c0, nc, &s, silu);
      else conv_neon_cf_run_f16(p, b, c0, nc, s.wt, silu);
      break;
    case LINATTN_DTYPE_BF16:
      if (p->channels_last) conv_neon_cl_run_bf16(p, b, c0, nc, &s, silu);
      else conv_neon_cf_run_bf16(p, b, c0, nc, s.wt, silu);
      break;
    default:
      if (p->channels_last) conv_neon_cl_run_f32(p, b, c0, nc, &s, silu);
      else conv_neon_cf_run_f32(p, b, c0, nc, s.wt, silu);
      break;
  }
}

CONV_SEQS_EACH(conv_neon_run_seqs, conv_neon_run)

const conv_kernel linattn_conv_neon = {
    .name = "neon",
    .run = conv_neon_run,
    .run_seqs = conv_neon_run_seqs,
    .transpose = linattn_conv_transpose,
    .scratch_bytes = conv_vector_scratch_bytes,
    .block_channels = 256,
};
