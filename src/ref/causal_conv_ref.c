/* Reference CausalConvWithState kernel: the executable spec (onnx/reference/ops/
 * op_causal_conv_with_state.py). padded = concat(past or zeros, input) along time;
 *   y[t] = round_T( sum_j w[j] * padded[t + j*dilation] + bias )   (fp32, taps in order)
 *          for fp16 with a bias: round_T( round_T(sum) + bias ): the reference's fp16 matmul
 *          returns fp16 and the bias is added in fp16 (bf16 matmul returns fp32: one rounding)
 *   silu: y = round_T( y * (1 / (1 + exp(-y))) )                     (on the rounded value)
 *   present = the last S = (k-1)*dilation positions of padded.
 * One channel at a time; the channel's past is copied to scratch before anything is written,
 * so present_state may be past_state. */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"

static size_t conv_ref_scratch(const conv_params* p, int64_t nc) {
  (void)nc;
  return sizeof(float) * (size_t)(p->S + p->K + 1);
}

/* padded[pos] for pos in [0, S + L) */
static inline float padded_at(const conv_params* p, const float* hist, int64_t b, int64_t c, int64_t pos) {
  if (pos < p->S) return hist[pos];
  const int64_t t = pos - p->S;
  return linattn_load_f32(p->x, b * p->x_sb + c * p->x_sc + t * p->x_st, p->dtype);
}

static void conv_ref_run(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch) {
  float* hist = (float*)scratch;
  float* w = hist + p->S;
  const linattn_dtype dt = p->dtype;
  for (int64_t c = c0; c < c0 + nc; c++) {
    for (int64_t s = 0; s < p->S; s++)
      hist[s] = p->past ? linattn_load_f32(p->past, b * p->s_sb + c * p->s_sc + s * p->s_st, dt) : 0.0f;
    for (int64_t j = 0; j < p->K; j++) w[j] = linattn_load_f32(p->w, c * p->K + j, dt);
    const float bias = p->bias ? linattn_load_f32(p->bias, c, dt) : 0.0f;
    for (int64_t t = 0; t < p->L; t++) {
      float acc = 0.0f;
      for (int64_t j = 0; j < p->K; j++) acc = acc + w[j] * padded_at(p, hist, b, c, t + j * p->dilation);
      float y;
      if (p->bias && dt == LINATTN_DTYPE_F16) /* numpy: fp16 matmul result, then an fp16 add */
        y = linattn_round_to(linattn_round_to(acc, dt) + bias, dt);
      else
        y = linattn_round_to(p->bias ? acc + bias : acc, dt);
      if (p->activation == LINATTN_ACTIVATION_SILU) y = y * (1.0f / (1.0f + expf(-y)));
      linattn_store_f32(p->y, b * p->y_sb + c * p->y_sc + t * p->y_st, dt, y);
    }
    if (p->present) {
      for (int64_t s = 0; s < p->S; s++)
        linattn_store_f32(p->present, b * p->s_sb + c * p->s_sc + s * p->s_st, dt, padded_at(p, hist, b, c, p->L + s));
    }
  }
}

const conv_kernel linattn_conv_reference = {
    .name = "conv_reference",
    .run = conv_ref_run,
    .scratch_bytes = conv_ref_scratch,
    .block_channels = 64,
};
