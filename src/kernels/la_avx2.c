/*
 * AVX2 + FMA + F16C fused LinearAttention kernel: the vector vocabulary for la_simd_body.h
 * with 8 fp32 lanes. 16 ymm registers hold p, u and the readouts of one column panel (see
 * LA_WMAX). Conversions and exp come from vec_avx2.h (shared with conv_avx2.c): fp16 via
 * vcvtph2ps / vcvtps2ph; bf16 by shifting and an integer round-to-nearest-even that keeps NaNs
 * (src/convert.h semantics).
 */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "la_common.h"
#include "vec_avx2.h"

#define LA_VL 8
#define LA_FN(name) name##_avx2
typedef __m256 vf;

static inline vf v_zero(void) { return _mm256_setzero_ps(); }
static inline vf v_set1(float x) { return _mm256_set1_ps(x); }
static inline vf v_load(const float* p) { return _mm256_loadu_ps(p); }
static inline void v_store(float* p, vf x) { _mm256_storeu_ps(p, x); }
static inline void v_stream(float* p, vf x) { _mm256_stream_ps(p, x); }
static inline vf v_fma(vf a, vf b, vf c) { return _mm256_fmadd_ps(a, b, c); }
static inline vf v_mul(vf a, vf b) { return _mm256_mul_ps(a, b); }
static inline vf v_sub(vf a, vf b) { return _mm256_sub_ps(a, b); }
static inline vf v_div(vf a, vf b) { return _mm256_div_ps(a, b); }
/* 1 if every lane is in [lo, hi] (NaN is not) */
static inline int v_in_range(vf x, float lo, float hi) {
  const vf a = _mm256_cmp_ps(x, _mm256_set1_ps(lo), _CMP_GE_OQ);
  const vf b = _mm256_cmp_ps(x, _mm256_set1_ps(hi), _CMP_LE_OQ);
  return _mm256_movemask_ps(_mm256_and_ps(a, b)) == 0xff;
}
static inline float v_hsum(vf x) {
  /* fixed pairwise order: 8 -> 4 -> 2 -> 1 */
  __m128 q = _mm_add_ps(_mm256_castps256_ps128(x), _mm256_extractf128_ps(x, 1));
  q = _mm_add_ps(q, _mm_movehl_ps(q, q));
  q = _mm_add_ss(q, _mm_movehdup_ps(q));
  return _mm_cvtss_f32(q);
}
static inline void v_prefetch(const void* p) { _mm_prefetch((const char*)p, _MM_HINT_T0); }
/* prefetcht0: PREFETCHW (PRFCHW) is not implied by AVX2 */
static inline void v_prefetch_w(const void* p) { _mm_prefetch((const char*)p, _MM_HINT_T0); }
static inline void v_sfence(void) { _mm_sfence(); }

static inline vf v_load_io(const void* p, linattn_dtype dt, int n) { return load8_part((const char*)p, n, dt); }

static inline void v_store_io(void* p, linattn_dtype dt, vf x, int n) {
  if (dt == LINATTN_DTYPE_F32) {
    if (n == LA_VL) {
      _mm256_storeu_ps(p, x);
    } else {
      float tmp[LA_VL];
      _mm256_storeu_ps(tmp, x);
      memcpy(p, tmp, sizeof(float) * (size_t)n);
    }
    return;
  }
  const __m128i h = dt == LINATTN_DTYPE_F16 ? _mm256_cvtps_ph(x, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)
                                            : f32_to_bf16_8(x);
  if (n == LA_VL) {
    _mm_storeu_si128((__m128i*)p, h);
  } else {
    uint16_t tmp[LA_VL];
    _mm_storeu_si128((__m128i*)tmp, h);
    memcpy(p, tmp, sizeof(uint16_t) * (size_t)n);
  }
}

static inline vf v_exp(vf x) { return exp8(x); }

/* Register budget (16 ymm): p W + u W + s NQ*W + 3-4 broadcasts. One head: 4 ymm (32
 * columns, a 16 KiB state panel), the fastest of 2, 3 and 4 (docs/tuning.md, LA_WMAX (la_avx2.c)). */
#define LA_WMAX(G) ((G) == 1 ? 4 : (G) <= 3 ? 2 : 1)
/* Decode (no packed copy): one head reads whole 64-column rows (8 ymm; p and s partly spill,
 * but the state streams as contiguous rows): cold-state decode, H = 16, 110 -> 74 us. */
#define LA_WMAX_DECODE(G) ((G) == 1 ? 8 : LA_WMAX(G))

/* The panels to instantiate, (heads per group, vectors): la_simd_panels.h checks that these are
 * the widths la_setup picks with the LA_WMAX above. */
#define LA_PANELS(X) X(1, 1) X(1, 2) X(1, 4) X(1, 8) X(2, 1) X(2, 2) X(3, 1) X(3, 2) X(4, 1) X(8, 1)

/* The output finiteness scan (la_kernel.outputs_finite): the unsigned maximum of the magnitude
 * bits (sign cleared) of 8 fp32 or 16 16-bit elements a vector, a row's tail element by element,
 * one compare with limit at the end (x >= limit: max(x, limit) == x). */
VEC_INLINE __m256i la_max_mag32(const uint32_t* o, int64_t n, __m256i m, uint32_t* tail) {
  const __m256i mag = _mm256_set1_epi32(0x7fffffff);
  int64_t j = 0;
  for (; j + 8 <= n; j += 8) m = _mm256_max_epu32(m, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(o + j)), mag));
  for (; j < n; j++) *tail = *tail > (o[j] & 0x7fffffffu) ? *tail : o[j] & 0x7fffffffu;
  return m;
}
VEC_INLINE __m256i la_max_mag16(const uint16_t* o, int64_t n, __m256i m, uint32_t* tail) {
  const __m256i mag = _mm256_set1_epi16(0x7fff);
  int64_t j = 0;
  for (; j + 16 <= n; j += 16) m = _mm256_max_epu16(m, _mm256_and_si256(_mm256_loadu_si256((const __m256i*)(o + j)), mag));
  for (; j < n; j++) *tail = *tail > (o[j] & 0x7fffu) ? *tail : o[j] & 0x7fffu;
  return m;
}
static bool la_outputs_finite_avx2(linattn_dtype io_dtype, uint32_t limit, const la_unit* u, int64_t t0,
                                   int64_t t1) {
  if (t1 <= t0 || u->n_q <= 0 || u->ncols <= 0) return true;
  const la_scan_rows s = la_scan_rows_of(u, t0, t1);
  __m256i m = _mm256_setzero_si256();
  uint32_t tail = 0;
  if (io_dtype == LINATTN_DTYPE_F32) {
    const uint32_t* o = (const uint32_t*)u->out + t0 * u->out_token_stride;
    for (int64_t t = 0; t < s.tokens; t++)
      for (int64_t h = 0; h < s.heads; h++)
        m = la_max_mag32(o + t * s.token_stride + h * s.head_stride, s.len, m, &tail);
    const __m256i lim = _mm256_set1_epi32((int32_t)limit);
    return tail < limit && _mm256_movemask_epi8(_mm256_cmpeq_epi32(_mm256_max_epu32(m, lim), m)) == 0;
  }
  const uint16_t* o = (const uint16_t*)u->out + t0 * u->out_token_stride;
  for (int64_t t = 0; t < s.tokens; t++)
    for (int64_t h = 0; h < s.heads; h++)
      m = la_max_mag16(o + t * s.token_stride + h * s.head_stride, s.len, m, &tail);
  const __m256i lim = _mm256_set1_epi16((int16_t)limit);
  return tail < limit && _mm256_movemask_epi8(_mm256_cmpeq_epi16(_mm256_max_epu16(m, lim), m)) == 0;
}
#define LA_OUTPUTS_FINITE la_outputs_finite_avx2

#include "la_simd_body.h"
#include "la_simd_panels.h"

const la_kernel linattn_la_avx2 = LA_SIMD_KERNEL("avx2");
