/*
 * GatedRMSNorm, AVX-512 family: 16 elements of a row per zmm, widened to fp32 on load and
 * rounded to T on store (vec_avx512.h). A row (one head, C elements) is read twice, the second
 * time from L1: once for the sum of squares, once for normalize * scale * gate. Memory-bound,
 * so one pass over memory is what counts. Rows are independent: the bits do not depend on the
 * split. LinearAttentionGate (H values per token) uses the reference function.
 */
#include <math.h>

#include "internal.h"
#include "vec_avx512.h"

/* 1 / (1 + exp(-z)); NaN stays NaN through exp16. */
VEC_INLINE __m512 sigmoid16(__m512 z) {
  const __m512 one = _mm512_set1_ps(1.0f);
  return _mm512_div_ps(one, _mm512_add_ps(one, exp16(_mm512_sub_ps(_mm512_setzero_ps(), z))));
}

/* Rounds the 16 fp32 lanes to T and stores the lanes of m. */
VEC_INLINE void store16_m(char* p, __mmask16 m, __m512 v, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) {
    _mm512_mask_storeu_ps(p, m, v);
    return;
  }
  const __m256i h = dt == LINATTN_DTYPE_F16 ? _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                                            : f32_to_bf16_16(v);
  _mm256_mask_storeu_epi16(p, m, h);
}

static void rms_norm_avx512(const gated_rms_norm_params* p, const void* x, const void* scale, const void* gate,
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
    __m512 acc = _mm512_setzero_ps();
    for (int64_t i = 0; i < C; i += 16) {
      const __m512 v = load16_m(xr + (size_t)i * es, lanes16(C - i), dt);
      acc = _mm512_fmadd_ps(v, v, acc);
    }
    const __m512 vinv = _mm512_set1_ps(1.0f / sqrtf(_mm512_reduce_add_ps(acc) / (float)C + p->epsilon));
    for (int64_t i = 0; i < C; i += 16) {
      const __mmask16 m = lanes16(C - i);
      const size_t o = (size_t)i * es;
      const __m512 z = load16_m(gr + o, m, dt);
      const __m512 n = _mm512_mul_ps(_mm512_mul_ps(load16_m(xr + o, m, dt), vinv), load16_m(sc + o, m, dt));
      const __m512 g = p->silu ? silu16(z) : sigmoid16(z);
      store16_m(yr + o, m, _mm512_mul_ps(n, g), dt);
    }
  }
}

const gates_kernel linattn_gates_avx512 = {"avx512", rms_norm_avx512, linattn_la_gate_ref};
