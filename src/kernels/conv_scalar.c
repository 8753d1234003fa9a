/*
 * CausalConvWithState, portable C family. Same structure as the vector families (one pass,
 * bias/SiLU/conversion fused), plain loops that the compiler may vectorise; SiLU uses expf
 * exactly as the ONNX reference writes it: v * (1 / (1 + exp(-v))).
 */
#include <math.h>

#include "conv_common.h"

static inline float conv_activate_scalar(float acc, linattn_dtype dt, linattn_activation act) {
  float v = linattn_round_to(acc, dt);
  if (act == LINATTN_ACTIVATION_SILU) v = v * (1.0f / (1.0f + expf(-v)));
  return v;
}

/* acc + bias; fp16 rounds the sum to fp16 first, like the reference's fp16 matmul + add. */
static inline float conv_add_bias_scalar(float acc, float bias, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) acc = linattn_round_to(acc, dt);
  return acc + bias;
}

/* Channels-first (B, C, L): one channel row at a time, time innermost. */
static void conv_channels_first_scalar(const conv_params* p, int64_t b, int64_t c0, int64_t nc, float* wf) {
  const linattn_dtype dt = p->dtype;
  const int64_t K = p->K, d = p->dilation, S = p->S, L = p->L;
  for (int64_t c = c0; c < c0 + nc; ++c) {
    for (int64_t j = 0; j < K; ++j) wf[j] = linattn_load_f32(p->w, c * K + j, dt);
    const bool has_bias = p->bias != NULL;
    const float bias = has_bias ? linattn_load_f32(p->bias, c, dt) : 0.0f;
    const int64_t xo = b * p->x_sb + c * p->x_sc, yo = b * p->y_sb + c * p->y_sc;
    const int64_t so = b * p->s_sb + c * p->s_sc;
    int64_t head = S < L ? S : L;
    for (int64_t t = 0; t < head; ++t) { /* taps may reach into the past state */
      float acc = 0.0f;
      for (int64_t j = 0; j < K; ++j) {
        int64_t pos = t + j * d;
        float v = pos >= S ? linattn_load_f32(p->x, xo + pos - S, dt)
                           : (p->past ? linattn_load_f32(p->past, so + pos, dt) : 0.0f);
        acc += wf[j] * v;
      }
      if (has_bias) acc = conv_add_bias_scalar(acc, bias, dt);
      linattn_store_f32(p->y, yo + t, dt, conv_activate_scalar(acc, dt, p->activation));
    }
    for (int64_t t = head; t < L; ++t) {
      float acc = 0.0f;
      for (int64_t j = 0; j < K; ++j) acc += wf[j] * linattn_load_f32(p->x, xo + t - S + j * d, dt);
      if (has_bias) acc = conv_add_bias_scalar(acc, bias, dt);
      linattn_store_f32(p->y, yo + t, dt, conv_activate_scalar(acc, dt, p->activation));
    }
    conv_cf_write_present(p, b, c);
  }
}

/* Channels-last (B, L, C): one time row at a time over the block's channels. */
static void conv_channels_last_scalar(const conv_params* p, int64_t b, int64_t c0, int64_t nc,
                                      const conv_scratch_layout* s) {
  const linattn_dtype dt = p->dtype;
  const size_t es = conv_esize(dt);
  const int64_t K = p->K, d = p->dilation, ncp = conv_ncp(nc);
  float* acc = s->tile; /* reuse: nc floats */
  float* accbuf = nc <= CONV_TILE_ELEMS ? acc : NULL;
  conv_fill_weights_tk(p, c0, nc, s->wt, s->bias);
  memset(s->zero, 0, (size_t)nc * es);
  for (int64_t t = 0; t < p->L; ++t) {
    char* yrow = (char*)p->y + (b * p->y_sb + t * p->y_st + c0) * (int64_t)es;
    if (accbuf) {
      memset(accbuf, 0, (size_t)nc * sizeof(float));
      for (int64_t j = 0; j < K; ++j) {
        const void* row = conv_cl_padded_row(p, b, c0, t + j * d, s->zero);
        const float* wj = s->wt + j * ncp;
        if (dt == LINATTN_DTYPE_F32) {
          const float* r = (const float*)row;
          for (int64_t c = 0; c < nc; ++c) accbuf[c] += wj[c] * r[c];
        } else {
          for (int64_t c = 0; c < nc; ++c) accbuf[c] += wj[c] * linattn_load_f32(row, c, dt);
        }
      }
      if (p->bias)
        for (int64_t c = 0; c < nc; ++c) accbuf[c] = conv_add_bias_scalar(accbuf[c], s->bias[c], dt);
      for (int64_t c = 0; c < nc; ++c) linattn_store_f32(yrow, c, dt, conv_activate_scalar(accbuf[c], dt, p->activation));
    } else { /* block wider than the scratch row: channel at a time, same order of operations */
      for (int64_t c = 0; c < nc; ++c) {
        float a = 0.0f;
        for (int64_t j = 0; j < K; ++j)
          a += s->wt[j * ncp + c] * linattn_load_f32(conv_cl_padded_row(p, b, c0, t + j * d, s->zero), c, dt);
        if (p->bias) a = conv_add_bias_scalar(a, s->bias[c], dt);
        linattn_store_f32(yrow, c, dt, conv_activate_scalar(a, dt, p->activation));
      }
    }
  }
  conv_cl_write_present(p, b, c0, nc);
}

static void conv_run_scalar(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch) {
  conv_scratch_layout s = conv_scratch_split(p, nc, scratch);
  if (p->channels_last)
    conv_channels_last_scalar(p, b, c0, nc, &s);
  else
    conv_channels_first_scalar(p, b, c0, nc, s.wt);
}

CONV_SEQS_EACH(conv_run_seqs_scalar, conv_run_scalar)

const conv_kernel linattn_conv_scalar = {
    .name = "scalar",
    .run = conv_run_scalar,
    .run_seqs = conv_run_seqs_scalar,
    .transpose = linattn_conv_transpose,
    .scratch_bytes = conv_vector_scratch_bytes,
    .block_channels = 1024,
};
