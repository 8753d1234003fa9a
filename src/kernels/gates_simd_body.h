/*
 * GatedRMSNorm written once over the vector vocabulary of vec_avx2.h / vec_avx512.h (VX_LANES,
 * vxf, vx_*); included by gates_avx2.c and gates_avx512.c after their vec header, with
 * GATES_FN(name) giving the file's symbol suffix.
 *
 * A row (one head, C elements) is read twice, the second time from L1: once for the sum of
 * squares, once for normalize * scale * gate, widened to fp32 on load and rounded to T on
 * store. Memory-bound, so one pass over memory is what counts. Rows are independent: the bits
 * do not depend on the split. LinearAttentionGate (H values per token) uses the reference
 * function.
 */
#ifndef VX_LANES
#error "include the ISA's vec header before gates_simd_body.h"
#endif

/* 1 / (1 + exp(-z)); NaN stays NaN through vx_exp. */
VEC_INLINE vxf gates_sigmoid(vxf z) {
  const vxf one = vx_set1(1.0f);
  return vx_div(one, vx_add(one, vx_exp(vx_sub(vx_zero(), z))));
}

static void GATES_FN(rms_norm)(const gated_rms_norm_params* p, const void* x, const void* scale, const void* gate,
                               void* y, int64_t rows) {
  const linattn_dtype dt = p->dtype;
  const int64_t C = p->C;
  const size_t es = dt == LINATTN_DTYPE_F32 ? 4u : 2u;
  const char* sc = (const char*)scale;
  for (int64_t r = 0; r < rows; r++) {
    const size_t off = (size_t)(r * C) * es;
    const char* xr = (const char*)x + off;
    const char* gr = (const char*)gate + off;
    char* yr = (char*)y + off;
    vxf acc = vx_zero();
    for (int64_t i = 0; i < C; i += VX_LANES) {
      const vxf v = vx_load_n(xr + (size_t)i * es, C - i, dt);
      acc = vx_fma(v, v, acc);
    }
    const vxf vinv = vx_set1(1.0f / sqrtf(vx_hsum(acc) / (float)C + p->epsilon));
    for (int64_t i = 0; i < C; i += VX_LANES) {
      const size_t o = (size_t)i * es;
      const vxf z = vx_load_n(gr + o, C - i, dt);
      const vxf n = vx_mul(vx_mul(vx_load_n(xr + o, C - i, dt), vinv), vx_load_n(sc + o, C - i, dt));
      const vxf g = p->silu ? vx_silu(z) : gates_sigmoid(z);
      vx_store_n(yr + o, C - i, vx_mul(n, g), dt);
    }
  }
}
