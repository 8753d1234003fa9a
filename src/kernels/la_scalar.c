/*
 * Portable fused LinearAttention kernel: the algorithm of la_common.h / la_simd_body.h over
 * GNU C generic vectors of 4 floats (vector_size, supported by GCC and Clang). No intrinsics:
 * the compiler maps the vectors to whatever the target has (SSE2 on baseline x86-64, Advanced
 * SIMD on AArch64, two-lane or scalar code elsewhere), so this is the fast path on CPUs without
 * AVX2 and the same algorithm as the SIMD families, with the same tests. A plain-loop version
 * of the same kernel was much slower: its per-column accumulators lived in memory instead of
 * registers (docs/tuning.md, LA_WMAX (la_scalar.c)).
 *
 * fp16 / bf16 go through the scalar conversions of src/convert.h (round to nearest even, NaN
 * kept), exp through expf. Built with -ffp-contract=off (registry.inc): v_fma is a rounded product
 * then a sum on every target, so that every inlined copy of the body (the general and the
 * specialised staging) gives the same bits.
 */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "la_common.h"

#define LA_VL 4
#define LA_FN(name) name##_scalar
typedef float vf __attribute__((vector_size(16)));

static inline vf v_zero(void) { return (vf){0.0f, 0.0f, 0.0f, 0.0f}; }
static inline vf v_set1(float x) { return (vf){x, x, x, x}; }
static inline vf v_load(const float* p) {
  vf r;
  memcpy(&r, p, sizeof r);
  return r;
}
static inline void v_store(float* p, vf x) { memcpy(p, &x, sizeof x); }
static inline void v_stream(float* p, vf x) { v_store(p, x); }
static inline vf v_fma(vf a, vf b, vf c) { return a * b + c; }
static inline vf v_mul(vf a, vf b) { return a * b; }
static inline vf v_sub(vf a, vf b) { return a - b; }
static inline vf v_div(vf a, vf b) { return a / b; }
/* 1 if every lane is in [lo, hi] (NaN is not) */
static inline int v_in_range(vf x, float lo, float hi) {
  int ok = 1;
  for (int l = 0; l < LA_VL; l++) ok &= x[l] >= lo && x[l] <= hi;
  return ok;
}
static inline float v_hsum(vf x) { return (x[0] + x[2]) + (x[1] + x[3]); }
static inline vf v_exp(vf x) {
  vf r;
  for (int l = 0; l < LA_VL; l++) r[l] = expf(x[l]);
  return r;
}
static inline void v_prefetch(const void* p) { __builtin_prefetch(p, 0, 3); }
static inline void v_prefetch_w(const void* p) { __builtin_prefetch(p, 1, 3); }
static inline void v_sfence(void) {}

static inline vf v_load_io(const void* p, linattn_dtype dt, int n) {
  if (dt == LINATTN_DTYPE_F32 && n == LA_VL) return v_load((const float*)p);
  vf r = v_zero();
  for (int l = 0; l < n; l++) r[l] = linattn_load_f32(p, l, dt);
  return r;
}
static inline void v_store_io(void* p, linattn_dtype dt, vf x, int n) {
  if (dt == LINATTN_DTYPE_F32 && n == LA_VL) {
    v_store((float*)p, x);
    return;
  }
  for (int l = 0; l < n; l++) linattn_store_f32(p, l, dt, x[l]);
}

/* 16 columns (4 vectors) per panel for one head, the fastest on x86-64 SSE2 (docs/tuning.md,
 * LA_WMAX (la_scalar.c)); fewer for GQA groups so the accumulators stay in registers. */
#define LA_WMAX(G) ((G) == 1 ? 4 : (G) <= 3 ? 2 : 1)
#define LA_WMAX_DECODE(G) LA_WMAX(G)

/* The panels to instantiate, (heads per group, vectors): la_simd_panels.h checks that these are
 * the widths la_setup picks with the LA_WMAX above. */
#define LA_PANELS(X) X(1, 1) X(1, 2) X(1, 4) X(2, 1) X(2, 2) X(3, 1) X(3, 2) X(4, 1) X(8, 1)

#include "la_simd_body.h"
#include "la_simd_panels.h"

const la_kernel linattn_la_scalar = LA_SIMD_KERNEL("scalar");
