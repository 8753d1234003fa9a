/*
 * GatedRMSNorm, AVX2 family: gates_avx512.c with 8 lanes (vec_avx2.h; partial vectors through
 * a small stack buffer, AVX2 having no 16-bit masked moves). LinearAttentionGate uses the
 * reference function.
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "vec_avx2.h"

/* 1 / (1 + exp(-z)); NaN stays NaN through exp8. */
VEC_INLINE __m256 sigmoid8(__m256 z) {
  const __m256 one = _mm256_set1_ps(1.0f);
  return _mm256_div_ps(one, _mm256_add_ps(one, exp8(_mm256_sub_ps(_mm256_setzero_ps(), z))));
}

VEC_INLINE float hsum8(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

/* Rounds the 8 fp32 lanes to T and stores the first n (<= 8). */
VEC_INLINE void store8_part(char* p, int64_t n, __m256 v, linattn_dtype dt) {
  _Alignas(32) char buf[32];
  if (dt == LINATTN_DTYPE_F32) {
    if (n >= 8) {
      _mm256_storeu_ps((float*)p, v);
      return;
    }
    _mm256_store_ps((float*)buf, v);
  } else {
    const __m128i h = dt == LINATTN_DTYPE_F16 ? _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                                              : f32_to_bf16_8(v);
    if (n >= 8) {
      _mm_storeu_si128((__m128i*)p, h);
      return;
    }
    _mm_store_si128((__m128i*)buf, h);
  }
  memcpy(p, buf, (size_t)n * vec_esize(dt));
}

static void rms_norm_avx2(const gated_rms_norm_params* p, const void* x, const void* scale, const void* gate,
                          void* y, int64_t rows) {
  const linattn_dtype dt = p->dtype;
  const int64_t C = p->C;
  const size_t es = vec_esize(dt);
  const char* sc = (const char*)scale;
  for (int64_t r = 0; r < rows; r++) {
    const size_t off = (size_t)(r * C) * es;
    const char* xr = (const char*)x + off;
    const char* gr = (const char*)gate + off;
    char* yr = (char*)y + off;
    __m256 acc = _mm256_setzero_ps();
    for (int64_t i = 0; i < C; i += 8) {
      const __m256 v = load8_part(xr + (size_t)i * es, C - i, dt);
      acc = _mm256_fmadd_ps(v, v, acc);
    }
    const __m256 vinv = _mm256_set1_ps(1.0f / sqrtf(hsum8(acc) / (float)C + p->epsilon));
    for (int64_t i = 0; i < C; i += 8) {
      const size_t o = (size_t)i * es;
      const __m256 z = load8_part(gr + o, C - i, dt);
      const __m256 n = _mm256_mul_ps(_mm256_mul_ps(load8_part(xr + o, C - i, dt), vinv), load8_part(sc + o, C - i, dt));
      const __m256 g = p->silu ? silu8(z) : sigmoid8(z);
      store8_part(yr + o, C - i, _mm256_mul_ps(n, g), dt);
    }
  }
}

const gates_kernel linattn_gates_avx2 = {"avx2", rms_norm_avx2, linattn_la_gate_ref};
