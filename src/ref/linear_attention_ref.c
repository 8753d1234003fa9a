/* Reference LinearAttention kernel: the executable spec. It follows the ONNX reference
 * (onnx/reference/ops/op_linear_attention.py) operation by operation, in fp32:
 *   1. gated rules:  S = S * exp(g_t)            (g per head, or per key row)
 *   2. delta rules:  u = beta_t * (v_t - S^T k_t)  (retrieval from the decayed state)
 *      otherwise:    u = v_t
 *   3. S = S + k_t u^T                            (product rounded, then the sum: no FMA)
 *   4. o_t = scale * (q_t^T S) for every query head of the group (reads the updated state),
 *      the product taken in float64 and rounded to fp32 (the reference's default scale is a
 *      float64 scalar), then rounded to T.
 * Built with -ffp-contract=off so the compiler does not fuse step 3 into an FMA.
 * Slow on purpose: four plain passes over the state per token. */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"

static size_t la_ref_scratch(const la_params* p, int64_t ncols) {
  /* q rows are converted per head on the fly; k, g (d_k each), u, acc (ncols each). */
  return sizeof(float) * (size_t)(3 * p->d_k + 2 * ncols + 16);
}

static void la_ref_run(const la_params* p, const la_unit* u, void* scratch) {
  const int64_t dk = p->d_k, n = u->ncols, ld = u->ld_state;
  const linattn_dtype dt = p->io_dtype;
  float* kf = (float*)scratch;
  float* gf = kf + dk;
  float* qf = gf + dk;
  float* uf = qf + dk;
  float* acc = uf + n;
  float* S = u->state_out;

  /* Bring the entering state into state_out. */
  for (int64_t i = 0; i < dk; i++) {
    float* row = S + i * ld;
    if (!u->state_in) memset(row, 0, sizeof(float) * (size_t)n);
    else if (u->state_in != u->state_out) memcpy(row, u->state_in + i * ld, sizeof(float) * (size_t)n);
  }

  for (int64_t t = 0; t < p->T; t++) {
    const void* kt = (const char*)u->k + (size_t)(t * u->k_token_stride) * linattn_dtype_size(dt);
    const void* vt = (const char*)u->v + (size_t)(t * u->v_token_stride) * linattn_dtype_size(dt);
    for (int64_t i = 0; i < dk; i++) kf[i] = linattn_load_f32(kt, i, dt);

    if (p->gated) {
      const void* gt = (const char*)u->decay + (size_t)(t * u->decay_token_stride) * linattn_dtype_size(dt);
      if (p->decay_kind == LA_DECAY_PER_KEY) {
        for (int64_t i = 0; i < dk; i++) gf[i] = expf(linattn_load_f32(gt, i, dt));
      } else {
        const float a = expf(linattn_load_f32(gt, 0, dt));
        for (int64_t i = 0; i < dk; i++) gf[i] = a;
      }
      for (int64_t i = 0; i < dk; i++)
        for (int64_t j = 0; j < n; j++) S[i * ld + j] = S[i * ld + j] * gf[i];
    }

    if (p->delta) {
      const void* bt = (const char*)u->beta + (size_t)(t * u->beta_token_stride) * linattn_dtype_size(dt);
      const float beta = linattn_load_f32(bt, 0, dt);
      for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
      for (int64_t i = 0; i < dk; i++)
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + S[i * ld + j] * kf[i];
      for (int64_t j = 0; j < n; j++) uf[j] = beta * (linattn_load_f32(vt, j, dt) - acc[j]);
    } else {
      for (int64_t j = 0; j < n; j++) uf[j] = linattn_load_f32(vt, j, dt);
    }

    for (int64_t i = 0; i < dk; i++)
      for (int64_t j = 0; j < n; j++) S[i * ld + j] = S[i * ld + j] + kf[i] * uf[j];

    for (int32_t h = 0; h < u->n_q; h++) {
      const void* qt = (const char*)u->q + (size_t)(t * u->q_token_stride + h * u->q_head_stride) * linattn_dtype_size(dt);
      for (int64_t i = 0; i < dk; i++) qf[i] = linattn_load_f32(qt, i, dt);
      for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
      for (int64_t i = 0; i < dk; i++)
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + qf[i] * S[i * ld + j];
      void* ot = (char*)u->out + (size_t)(t * u->out_token_stride + h * u->out_head_stride) * linattn_dtype_size(dt);
      /* (double)scale * acc is exact; one rounding to fp32 as in the reference (an explicit fp32
       * scale gives the same bits as a float multiply). */
      for (int64_t j = 0; j < n; j++) linattn_store_f32(ot, j, dt, (float)(p->scale_f64 * (double)acc[j]));
    }
  }
}

const la_kernel linattn_la_reference = {
    .name = "reference",
    .run = la_ref_run,
    .scratch_bytes = la_ref_scratch,
    .block_cols = 0, /* whole head */
};
