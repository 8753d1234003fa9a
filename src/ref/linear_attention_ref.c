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
 * Slow on purpose: four plain passes over the state per token.
 * GatedDeltaNet (la_params extensions): q and k L2-normalised, g through the fused gate, beta
 * through the sigmoid when asked, all in fp32 before step 1; V-major state blocks indexed as
 * such; the capture (la_unit.cap_*) takes exp(g), k and u of its tokens.
 * A half-precision state (la_params.state_dtype) is widened into an fp32 block of the scratch
 * when loaded and rounded once (to nearest even) when stored: fp32 in between. */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "kernels/la_common.h"

/* Floats of the scratch before the fp32 copy of a half-precision state. */
static int64_t la_ref_work_floats(const la_params* p, int64_t ncols) { return 3 * p->d_k + 2 * ncols + 16; }

static size_t la_ref_scratch(const la_params* p, int64_t ncols) {
  /* q rows are converted per head on the fly; k, g (d_k each), u, acc (ncols each); the fp32
   * copy of a half-precision state. */
  const int64_t state = la_state_half(p) ? p->d_k * ncols : 0;
  return sizeof(float) * (size_t)(la_ref_work_floats(p, ncols) + state);
}

/* Row x (d_k io elements) to fp32 in dst, L2-normalised when the call asks for it. */
static void la_ref_load_row(const la_params* p, const void* x, float* dst) {
  float ss = 0.0f;
  for (int64_t i = 0; i < p->d_k; i++) {
    dst[i] = linattn_load_f32(x, i, p->io_dtype);
    ss += dst[i] * dst[i];
  }
  if (!p->qk_l2_norm) return;
  const float inv = la_l2_inv(p, ss);
  for (int64_t i = 0; i < p->d_k; i++) dst[i] = dst[i] * inv;
}

/* Capture of token t's decay factors gf, key kf and update uf (see la_unit.cap_*). */
static void la_ref_capture(const la_params* p, const la_unit* u, int64_t t, const float* gf, const float* kf,
                           const float* uf) {
  if (t >= u->cap_tokens) return;
  if (u->cap_decay) {
    float* d = u->cap_decay + t * u->cap_decay_stride;
    if (p->decay_kind == LA_DECAY_PER_KEY) memcpy(d, gf, sizeof(float) * (size_t)p->d_k);
    else d[0] = p->gated ? gf[0] : 1.0f;
  }
  if (u->cap_key) memcpy(u->cap_key + t * u->cap_key_stride, kf, sizeof(float) * (size_t)p->d_k);
  if (u->cap_delta) memcpy(u->cap_delta + t * u->cap_delta_stride, uf, sizeof(float) * (size_t)u->ncols);
}

static void la_ref_run_f32(const la_params* p, const la_unit* u, void* scratch) {
  const int64_t dk = p->d_k, n = u->ncols;
  const linattn_dtype dt = p->io_dtype, gdt = la_gate_dtype(p);
  const size_t esz = linattn_dtype_size(dt), gsz = linattn_dtype_size(gdt);
  float* kf = (float*)scratch;
  float* gf = kf + dk;
  float* qf = gf + dk;
  float* uf = qf + dk;
  float* acc = uf + n;
  float* S = u->state_out;
#define SX(i, j) S[la_state_idx(p, u, i, j)]

  /* Bring the entering state into state_out. */
  la_copy_state_only(p, u);

  for (int64_t t = 0; t < p->T; t++) {
    const void* kt = (const char*)u->k + (size_t)(t * u->k_token_stride) * esz;
    const void* vt = (const char*)u->v + (size_t)(t * u->v_token_stride) * esz;
    la_ref_load_row(p, kt, kf);

    if (p->gated) {
      const void* gt = (const char*)u->decay + (size_t)(t * u->decay_token_stride) * gsz;
      if (p->decay_kind == LA_DECAY_PER_KEY) {
        for (int64_t i = 0; i < dk; i++) gf[i] = expf(la_gate_log_decay(p, u, linattn_load_f32(gt, i, gdt), i));
      } else {
        const float a = expf(la_gate_log_decay(p, u, linattn_load_f32(gt, 0, gdt), 0));
        for (int64_t i = 0; i < dk; i++) gf[i] = a;
      }
      for (int64_t i = 0; i < dk; i++)
        for (int64_t j = 0; j < n; j++) SX(i, j) = SX(i, j) * gf[i];
    }

    if (p->delta) {
      const float beta = la_beta_at(p, u, t);
      for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
      for (int64_t i = 0; i < dk; i++)
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + SX(i, j) * kf[i];
      for (int64_t j = 0; j < n; j++) uf[j] = beta * (linattn_load_f32(vt, j, dt) - acc[j]);
    } else {
      for (int64_t j = 0; j < n; j++) uf[j] = linattn_load_f32(vt, j, dt);
    }
    la_ref_capture(p, u, t, gf, kf, uf);

    for (int64_t i = 0; i < dk; i++)
      for (int64_t j = 0; j < n; j++) SX(i, j) = SX(i, j) + kf[i] * uf[j];

    for (int32_t h = 0; h < u->n_q; h++) {
      const void* qt = (const char*)u->q + (size_t)(t * u->q_token_stride + h * u->q_head_stride) * esz;
      la_ref_load_row(p, qt, qf);
      for (int64_t j = 0; j < n; j++) acc[j] = 0.0f;
      for (int64_t i = 0; i < dk; i++)
        for (int64_t j = 0; j < n; j++) acc[j] = acc[j] + qf[i] * SX(i, j);
      void* ot = (char*)u->out + (size_t)(t * u->out_token_stride + h * u->out_head_stride) * esz;
      /* (double)scale * acc is exact; one rounding to fp32 as in the reference (an explicit fp32
       * scale gives the same bits as a float multiply). */
      for (int64_t j = 0; j < n; j++) linattn_store_f32(ot, j, dt, (float)(p->scale_f64 * (double)acc[j]));
    }
  }
#undef SX
}

static void la_ref_run(const la_params* p, const la_unit* u, void* scratch) {
  if (!la_state_half(p)) {
    la_ref_run_f32(p, u, scratch);
    return;
  }
  float* block = (float*)scratch + la_ref_work_floats(p, u->ncols);
  la_params pf = *p;
  pf.state_dtype = LINATTN_DTYPE_F32;
  la_unit uf = *u;
  uf.state_in = u->state_in ? block : NULL;
  uf.state_out = block;
  uf.ld_state = u->ncols;
  if (u->state_in) la_state_widen(p, u, block);
  la_ref_run_f32(&pf, &uf, scratch);
  la_state_narrow(p, u, block);
}

const la_kernel linattn_la_reference = {
    .name = "reference",
    .run = la_ref_run,
    .scratch_bytes = la_ref_scratch,
    .block_cols = 0, /* whole head */
    .handles_gdn = true,
    .outputs_finite = la_unit_outputs_finite,
};
