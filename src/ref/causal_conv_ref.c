/* Reference CausalConvWithState kernel: the executable spec (onnx/reference/ops/
 * op_causal_conv_with_state.py). padded = concat(past or zeros, input) along time;
 *   y[t] = round_T( sum_j w[j] * padded[t + j*dilation] + bias )   (fp32, taps in order)
 *          for fp16 with a bias: round_T( round_T(sum) + bias ): the reference's fp16 matmul
 *          returns fp16 and the bias is added in fp16 (bf16 matmul returns fp32: one rounding)
 *   silu: y = round_T( y * (1 / (1 + exp(-y))) )                     (on the rounded value)
 *   present = the last S = (k-1)*dilation positions of padded.
 * One channel at a time. Past values are read in place, never copied: the scratch must not
 * grow with S = (k-1)*dilation, which may be huge when no state tensor is passed (taps that
 * far back reads zeros). present_state may be past_state: present[s] = padded[L + s] is
 * written in increasing s after reading padded[L + s'] for s' <= s, and L + s' >= s, so a
 * past value is read before its slot is overwritten. Positions are computed without forming
 * t + j*dilation (which can overflow int64 for huge dilations). */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"

static size_t conv_ref_scratch(const conv_params* p, int64_t nc) {
  (void)nc;
  return sizeof(float) * (size_t)(p->K + 1);
}

/* padded[S + rel] for rel in [-S, L): the input at rel >= 0, else the past (or zero). */
static inline float padded_rel(const conv_params* p, int64_t b, int64_t c, int64_t rel) {
  if (rel >= 0) return linattn_load_f32(p->x, b * p->x_sb + c * p->x_sc + rel * p->x_st, p->dtype);
  if (!p->past) return 0.0f;
  return linattn_load_f32(p->past, b * p->s_sb + c * p->s_sc + (p->S + rel) * p->s_st, p->dtype);
}

static void conv_ref_run(const conv_params* p, int64_t b, int64_t c0, int64_t nc, void* scratch) {
  float* w = (float*)scratch;
  const linattn_dtype dt = p->dtype;
  for (int64_t c = c0; c < c0 + nc; c++) {
    for (int64_t j = 0; j < p->K; j++) w[j] = linattn_load_f32(p->w, c * p->K + j, dt);
    const float bias = p->bias ? linattn_load_f32(p->bias, c, dt) : 0.0f;
    for (int64_t t = 0; t < p->L; t++) {
      float acc = 0.0f;
      for (int64_t j = 0; j < p->K; j++) {
        const int64_t back = (p->K - 1 - j) * p->dilation; /* <= S: no overflow */
        /* padded[t + j*dilation] = padded[S + (t - back)]; taps before the past read zeros */
        const float x = (back - t > p->S) ? 0.0f : padded_rel(p, b, c, t - back);
        acc = acc + w[j] * x;
      }
      float y;
      if (p->bias && dt == LINATTN_DTYPE_F16) /* numpy: fp16 matmul result, then an fp16 add */
        y = linattn_round_to(linattn_round_to(acc, dt) + bias, dt);
      else
        y = linattn_round_to(p->bias ? acc + bias : acc, dt);
      if (p->activation == LINATTN_ACTIVATION_SILU) y = y * (1.0f / (1.0f + expf(-y)));
      linattn_store_f32(p->y, b * p->y_sb + c * p->y_sc + t * p->y_st, dt, y);
    }
    if (p->present) {
      /* present[s] = padded[L + s] = padded[S + (s - (S - L))] */
      for (int64_t s = 0; s < p->S; s++)
        linattn_store_f32(p->present, b * p->s_sb + c * p->s_sc + s * p->s_st, dt, padded_rel(p, b, c, s - (p->S - p->L)));
    }
  }
}

CONV_SEQS_EACH(conv_ref_run_seqs, conv_ref_run)

const conv_kernel linattn_conv_reference = {
    .name = "reference",
    .run = conv_ref_run,
    .run_seqs = conv_ref_run_seqs,
    .transpose = linattn_conv_transpose,
    .scratch_bytes = conv_ref_scratch,
    .block_channels = 64,
};
