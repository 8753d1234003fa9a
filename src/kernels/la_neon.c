/*
 * AArch64 Advanced SIMD (NEON) fused LinearAttention kernel: the vector vocabulary for
 * la_simd_body.h with 4 fp32 lanes (float32x4_t). Conversions and exp come from neon_util.h
 * (shared with conv_neon.c): fp16 via FCVTL / FCVTN (round to nearest even), bf16 by shifts and
 * an integer round-to-nearest-even that keeps NaNs (src/convert.h semantics).
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "la_common.h"
#include "neon_util.h"

#define LA_VL 4
#define LA_FN(name) name##_neon
typedef float32x4_t vf;

static inline vf v_zero(void) { return vdupq_n_f32(0.0f); }
static inline vf v_set1(float x) { return vdupq_n_f32(x); }
static inline vf v_load(const float* p) { return vld1q_f32(p); }
static inline void v_store(float* p, vf x) { vst1q_f32(p, x); }
/* plain stores: AArch64's non-temporal pair store (STNP) has no intrinsic, and v_sfence is empty */
static inline void v_stream(float* p, vf x) { vst1q_f32(p, x); }
static inline vf v_fma(vf a, vf b, vf c) { return vfmaq_f32(c, a, b); }
static inline vf v_mul(vf a, vf b) { return vmulq_f32(a, b); }
static inline vf v_sub(vf a, vf b) { return vsubq_f32(a, b); }
static inline vf v_div(vf a, vf b) { return vdivq_f32(a, b); }
/* 1 if every lane is in [lo, hi] (NaN is not) */
static inline int v_in_range(vf x, float lo, float hi) {
  const uint32x4_t ok = vandq_u32(vcgeq_f32(x, vdupq_n_f32(lo)), vcleq_f32(x, vdupq_n_f32(hi)));
  return vminvq_u32(ok) == 0xffffffffu;
}
static inline float v_hsum(vf x) {
  /* fixed order (x0 + x2) + (x1 + x3), the scalar family's */
  const vf h = vaddq_f32(x, vextq_f32(x, x, 2));
  return vgetq_lane_f32(h, 0) + vgetq_lane_f32(h, 1);
}
static inline vf v_exp(vf x) { return neon_exp4(x); }
static inline void v_prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }
static inline void v_prefetch_w(const void* p) { __builtin_prefetch(p, 1, 3); } /* PRFM PSTL1KEEP */
static inline void v_sfence(void) {}

/* n < LA_VL lanes go through a zero-filled 4-element copy, so every lane is converted by the
 * same instructions as a full vector. */
static inline vf v_load_io(const void* p, linattn_dtype dt, int n) {
  if (n == LA_VL) return neon_load4(p, 0, dt);
  float tmp[LA_VL] = {0.0f, 0.0f, 0.0f, 0.0f};
  memcpy(tmp, p, (size_t)n * (dt == LINATTN_DTYPE_F32 ? 4u : 2u));
  return neon_load4(tmp, 0, dt);
}
static inline void v_store_io(void* p, linattn_dtype dt, vf x, int n) {
  if (n == LA_VL) {
    neon_store4(p, 0, dt, x);
    return;
  }
  float tmp[LA_VL];
  neon_store4(tmp, 0, dt, x);
  memcpy(p, tmp, (size_t)n * (dt == LINATTN_DTYPE_F32 ? 4u : 2u));
}

/* Register budget (32 q registers): a panel of W vectors for G heads keeps p, u and the G
 * readouts, (G + 2) W accumulators, plus a few broadcasts and the state row being updated.
 * One head: 8 vectors (32 columns, the column width of the AVX-512 panel, 24 accumulators);
 * two to four heads: 4 (16 to 24); eight: 2 (20). The next wider choice each time would
 * leave fewer registers than the sweep's broadcasts and row need, and spill. */
#define LA_WMAX(G) ((G) == 1 ? 8 : (G) <= 4 ? 4 : 2)
/* Decode works in place on the state rows with the same register budget. */
#define LA_WMAX_DECODE(G) LA_WMAX(G)

/* The panels to instantiate, (heads per group, vectors): la_simd_panels.h checks that these are
 * the widths la_setup picks with the LA_WMAX above. */
#define LA_PANELS(X) \
  X(1, 1) X(1, 2) X(1, 4) X(1, 8) X(2, 1) X(2, 2) X(2, 4) X(3, 1) X(3, 2) X(3, 4) X(4, 1) X(4, 2) X(4, 4) X(8, 1) X(8, 2)

#include "la_simd_body.h"
#include "la_simd_panels.h"

const la_kernel linattn_la_neon = LA_SIMD_KERNEL("neon");
