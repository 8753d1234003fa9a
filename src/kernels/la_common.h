/*
 * Shared private helpers of the fused LinearAttention micro-kernels (la_scalar.c, la_avx2.c,
 * la_avx512.c, la_neon.c). The algorithm (algorithms.md 4.1/4.2) per unit, in the notation of
 * src/internal.h, with a_t = exp(g_t) (a scalar or a d_k vector, 1 when not gated):
 *
 *   p_t   = S_{t-1}^T (a_t .* k_t)                retrieval from the decayed old state
 *   s_t,h = S_{t-1}^T (a_t .* scale q_t,h)         readout of the decayed old state
 *   u_t   = beta_t (v_t - p_t)   [delta rules]     u_t = v_t otherwise
 *   o_t,h = s_t,h + (k_t . scale q_t,h) u_t        = scale S_t^T q_t,h (old state + rank-1)
 *   S_t   = a_t .* S_{t-1} + k_t u_t^T             (rows of S scaled by a_t)
 *
 * One sweep over the rows of S per token both writes S_t and accumulates p_{t+1}, s_{t+1}
 * from the freshly written rows, so each token touches the state once. State columns evolve
 * independently: every column's arithmetic is the same whatever the unit's column range, so
 * results never depend on the split into units.
 *
 * la_simd_body.h implements this once (tiles, panels, the decay fold that removes the decay
 * multiply from the sweep) for la_avx512.c, la_avx2.c, la_neon.c and la_scalar.c.
 */
#ifndef LINATTN_LA_COMMON_H
#define LINATTN_LA_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "convert.h"
#include "internal.h"

/* Tokens staged per tile (converted q/k, decays, k.q). A tile is staged once per unit and
 * reused by every column panel of the unit. */
#ifndef LA_TILE_TOKENS
#define LA_TILE_TOKENS 32
#endif

/* Query heads handled per sweep (register accumulators). GQA groups are padded up to one of
 * {1, 2, 3, 4, 8}; larger groups run as several groups of 8: the first rides along the update
 * sweep, each further group reads the old state in a read-only sweep before the update. */
static inline int la_group_heads(int32_t n_q) {
  if (n_q <= 4) return n_q < 1 ? 1 : n_q;
  return 8;
}
/* Row of a group size (1, 2, 3, 4, 8) in the panel tables of la_simd_panels.h. */
#define LA_GROUP_INDEX(G) ((G) <= 4 ? (G) - 1 : 4)

/* Vectors in the next column panel of a unit (la_setup in la_simd_body.h): `left` full vectors
 * remain (0: only the partial one), wmax is the widest allowed; decode (no packed copy) also
 * takes 4 when wmax is wider. A macro so that la_simd_panels.h can check at compile time that
 * every width it can give is instantiated. */
#define LA_PANEL_WIDTH(left, wmax, decode) \
  ((left) >= (wmax) ? (wmax) : (decode) && (left) >= 4 && (wmax) > 4 ? 4 : (left) >= 2 && (wmax) >= 2 ? 2 : 1)

/* Two tokens per state sweep in prefill (la_simd_body.h, la_panel_pairs). */
static inline int la_pair_tokens(const la_params* p) { return p->sweep_tokens == 2; }

/* Address of element idx of an io_dtype array. */
static inline const void* la_io_at(const void* base, int64_t idx, linattn_dtype dt) {
  return (const char*)base + idx * (int64_t)(dt == LINATTN_DTYPE_F32 ? 4 : 2);
}
static inline void* la_io_at_mut(void* base, int64_t idx, linattn_dtype dt) {
  return (char*)base + idx * (int64_t)(dt == LINATTN_DTYPE_F32 ? 4 : 2);
}

/* Bump allocator over the caller's scratch; every piece 64-byte aligned. With base == NULL it
 * only counts (scratch_bytes uses the same code path as run, so the two cannot disagree). */
typedef struct la_arena {
  char* base;
  size_t used;
} la_arena;

static inline float* la_arena_floats(la_arena* a, int64_t n) {
  const size_t bytes = ((size_t)(n < 0 ? 0 : n) * sizeof(float) + 63u) & ~(size_t)63u;
  float* p = a->base ? (float*)(a->base + a->used) : NULL;
  a->used += bytes;
  return p;
}

/* First and end cache-line addresses of the bytes [p, p + bytes), for prefetching: a row need
 * not start on a line (arrays from malloc's mmap start 16 bytes past a page), and a row of
 * whole lines then spans one line more (its last line, missed, costs: docs/tuning.md,
 * la_line_first). */
static inline uintptr_t la_line_first(const void* p) { return (uintptr_t)p & ~(uintptr_t)63; }
static inline uintptr_t la_line_end(const void* p, int64_t bytes) { return (uintptr_t)p + (uintptr_t)bytes; }

/* Prefetches (to L2) the lines of [p, p + bytes). */
static inline void la_prefetch_l2(const void* p, int64_t bytes) {
  for (uintptr_t a = la_line_first(p), e = la_line_end(p, bytes); a < e; a += 64)
    __builtin_prefetch((const void*)a, 0, 2);
}

/* The rows of the output scan (la_finite_fn) of tokens [t0, t1), t1 > t0: a token's n_q heads
 * as one row where they are contiguous, the tokens' rows as one where those are. */
typedef struct la_scan_rows {
  int64_t len;                  /* elements per row */
  int64_t heads, head_stride;   /* rows per token */
  int64_t tokens, token_stride; /* tokens, from t0 */
} la_scan_rows;
static inline la_scan_rows la_scan_rows_of(const la_unit* u, int64_t t0, int64_t t1) {
  la_scan_rows s = {u->ncols, u->n_q, u->out_head_stride, t1 - t0, u->out_token_stride};
  if (s.heads > 1 && s.head_stride == s.len) s.len *= s.heads, s.heads = 1;
  if (s.heads == 1 && s.tokens > 1 && s.token_stride == s.len) s.len *= s.tokens, s.tokens = 1;
  return s;
}

/* dtype of decay and beta elements (la_params.gate_dtype, 0 meaning io_dtype). */
static inline linattn_dtype la_gate_dtype(const la_params* p) { return p->gate_dtype ? p->gate_dtype : p->io_dtype; }

/* Prefetches (to L2) the q, k, v, decay and beta rows of token t of a unit (none past T). */
static inline void la_prefetch_unit_rows(const la_params* p, const la_unit* u, int64_t t) {
  if (t >= p->T) return;
  const int64_t esz = p->io_dtype == LINATTN_DTYPE_F32 ? 4 : 2;
  const int64_t gsz = la_gate_dtype(p) == LINATTN_DTYPE_F32 ? 4 : 2;
  const int64_t qb = (int64_t)u->n_q * p->d_k * esz, kb = p->d_k * esz, vb = u->ncols * esz;
  const int64_t db = p->decay_kind == LA_DECAY_PER_KEY ? p->d_k * gsz : gsz;
  la_prefetch_l2((const char*)u->q + t * u->q_token_stride * esz, qb);
  la_prefetch_l2((const char*)u->k + t * u->k_token_stride * esz, kb);
  la_prefetch_l2((const char*)u->v + t * u->v_token_stride * esz, vb);
  if (p->gated) la_prefetch_l2((const char*)u->decay + t * u->decay_token_stride * gsz, db);
  if (p->delta) la_prefetch_l2((const char*)u->beta + t * u->beta_token_stride * gsz, gsz);
}

/* ------------------------------------------------------------------ GatedDeltaNet staging */

/* Log-space decay g of decay element x (key row i) through the fused gate (la_gate_kind), in
 * fp32 as ONNX Runtime evaluates it: softplus(y) = y above 20, log1p(exp(y)) otherwise. */
static inline float la_gate_log_decay(const la_params* p, const la_unit* u, float x, int64_t i) {
  if (p->gate == LA_GATE_NONE) return x;
  if (u->dt_bias) x += u->dt_bias[u->dt_bias_per_key ? i : 0];
  if (p->gate == LA_GATE_SOFTPLUS) return u->gate_coef * (x > 20.0f ? x : log1pf(expf(x)));
  return p->gate_lower_bound * (1.0f / (1.0f + expf(-(u->gate_coef * x))));
}

/* beta of token t as the recurrence uses it (1 when not a delta rule). */
static inline float la_beta_at(const la_params* p, const la_unit* u, int64_t t) {
  if (!p->delta) return 1.0f;
  const linattn_dtype gt = la_gate_dtype(p);
  const float b = linattn_load_f32((const char*)u->beta + t * u->beta_token_stride * (gt == LINATTN_DTYPE_F32 ? 4 : 2), 0, gt);
  return p->beta_sigmoid ? 1.0f / (1.0f + expf(-b)) : b;
}

/* 1 / |x| for the fused L2 normalisation, from sum x^2 (la_params.l2_eps under the root). */
static inline float la_l2_inv(const la_params* p, float sumsq) { return 1.0f / sqrtf(sumsq + p->l2_eps); }

/* dst[c * ldd + r] = src[r * lds + c] for r < rows, c < cols (the V-major state <-> packed panel
 * copies): 8 x 8 blocks through 256-bit generic vectors (on AVX2 / AVX-512 one register per
 * row, 24 in-lane and lane-crossing shuffles per block; two 128-bit halves elsewhere), the rest
 * in 4 x 4 blocks through 128-bit ones, the edges element by element. */
typedef float la_v4 __attribute__((vector_size(16)));
typedef float la_v8 __attribute__((vector_size(32)));
#if defined(__clang__)
#define LA_SHUF4(a, b, i0, i1, i2, i3) __builtin_shufflevector(a, b, i0, i1, i2, i3)
#define LA_SHUF8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shufflevector(a, b, i0, i1, i2, i3, i4, i5, i6, i7)
#else
typedef int32_t la_i4 __attribute__((vector_size(16)));
typedef int32_t la_i8 __attribute__((vector_size(32)));
#define LA_SHUF4(a, b, i0, i1, i2, i3) __builtin_shuffle(a, b, (la_i4){i0, i1, i2, i3})
#define LA_SHUF8(a, b, i0, i1, i2, i3, i4, i5, i6, i7) __builtin_shuffle(a, b, (la_i8){i0, i1, i2, i3, i4, i5, i6, i7})
#endif
static inline void la_transpose4(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  int64_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    int64_t c = 0;
    for (; c + 4 <= cols; c += 4) {
      la_v4 a, b, e, f;
      memcpy(&a, src + r * lds + c, 16);
      memcpy(&b, src + (r + 1) * lds + c, 16);
      memcpy(&e, src + (r + 2) * lds + c, 16);
      memcpy(&f, src + (r + 3) * lds + c, 16);
      const la_v4 t0 = LA_SHUF4(a, b, 0, 4, 1, 5), t1 = LA_SHUF4(a, b, 2, 6, 3, 7);
      const la_v4 t2 = LA_SHUF4(e, f, 0, 4, 1, 5), t3 = LA_SHUF4(e, f, 2, 6, 3, 7);
      const la_v4 o0 = LA_SHUF4(t0, t2, 0, 1, 4, 5), o1 = LA_SHUF4(t0, t2, 2, 3, 6, 7);
      const la_v4 o2 = LA_SHUF4(t1, t3, 0, 1, 4, 5), o3 = LA_SHUF4(t1, t3, 2, 3, 6, 7);
      memcpy(dst + c * ldd + r, &o0, 16);
      memcpy(dst + (c + 1) * ldd + r, &o1, 16);
      memcpy(dst + (c + 2) * ldd + r, &o2, 16);
      memcpy(dst + (c + 3) * ldd + r, &o3, 16);
    }
    for (; c < cols; c++)
      for (int64_t k = 0; k < 4; k++) dst[c * ldd + r + k] = src[(r + k) * lds + c];
  }
  for (; r < rows; r++)
    for (int64_t c = 0; c < cols; c++) dst[c * ldd + r] = src[r * lds + c];
}
/* One 8 x 8 block: rows interleaved in pairs (unpack), then in fours (within 128-bit lanes),
 * then the 128-bit lanes exchanged. */
#define LA_LOAD8(v, p) memcpy(&(v), (p), 32)
#define LA_STORE8(p, v) memcpy((p), &(v), 32)
static inline __attribute__((always_inline)) void la_transpose8x8(float* dst, int64_t ldd, const float* src,
                                                                  int64_t lds) {
  la_v8 a, b, c, d, e, f, g, h;
  LA_LOAD8(a, src), LA_LOAD8(b, src + lds), LA_LOAD8(c, src + 2 * lds), LA_LOAD8(d, src + 3 * lds);
  LA_LOAD8(e, src + 4 * lds), LA_LOAD8(f, src + 5 * lds), LA_LOAD8(g, src + 6 * lds), LA_LOAD8(h, src + 7 * lds);
  const la_v8 ab0 = LA_SHUF8(a, b, 0, 8, 1, 9, 4, 12, 5, 13), ab1 = LA_SHUF8(a, b, 2, 10, 3, 11, 6, 14, 7, 15);
  const la_v8 cd0 = LA_SHUF8(c, d, 0, 8, 1, 9, 4, 12, 5, 13), cd1 = LA_SHUF8(c, d, 2, 10, 3, 11, 6, 14, 7, 15);
  const la_v8 ef0 = LA_SHUF8(e, f, 0, 8, 1, 9, 4, 12, 5, 13), ef1 = LA_SHUF8(e, f, 2, 10, 3, 11, 6, 14, 7, 15);
  const la_v8 gh0 = LA_SHUF8(g, h, 0, 8, 1, 9, 4, 12, 5, 13), gh1 = LA_SHUF8(g, h, 2, 10, 3, 11, 6, 14, 7, 15);
  /* columns k and k + 4 of rows a-d (s*) and e-h (u*) */
  const la_v8 s0 = LA_SHUF8(ab0, cd0, 0, 1, 8, 9, 4, 5, 12, 13), s1 = LA_SHUF8(ab0, cd0, 2, 3, 10, 11, 6, 7, 14, 15);
  const la_v8 s2 = LA_SHUF8(ab1, cd1, 0, 1, 8, 9, 4, 5, 12, 13), s3 = LA_SHUF8(ab1, cd1, 2, 3, 10, 11, 6, 7, 14, 15);
  const la_v8 u0 = LA_SHUF8(ef0, gh0, 0, 1, 8, 9, 4, 5, 12, 13), u1 = LA_SHUF8(ef0, gh0, 2, 3, 10, 11, 6, 7, 14, 15);
  const la_v8 u2 = LA_SHUF8(ef1, gh1, 0, 1, 8, 9, 4, 5, 12, 13), u3 = LA_SHUF8(ef1, gh1, 2, 3, 10, 11, 6, 7, 14, 15);
  const la_v8 o0 = LA_SHUF8(s0, u0, 0, 1, 2, 3, 8, 9, 10, 11), o4 = LA_SHUF8(s0, u0, 4, 5, 6, 7, 12, 13, 14, 15);
  const la_v8 o1 = LA_SHUF8(s1, u1, 0, 1, 2, 3, 8, 9, 10, 11), o5 = LA_SHUF8(s1, u1, 4, 5, 6, 7, 12, 13, 14, 15);
  const la_v8 o2 = LA_SHUF8(s2, u2, 0, 1, 2, 3, 8, 9, 10, 11), o6 = LA_SHUF8(s2, u2, 4, 5, 6, 7, 12, 13, 14, 15);
  const la_v8 o3 = LA_SHUF8(s3, u3, 0, 1, 2, 3, 8, 9, 10, 11), o7 = LA_SHUF8(s3, u3, 4, 5, 6, 7, 12, 13, 14, 15);
  LA_STORE8(dst, o0), LA_STORE8(dst + ldd, o1), LA_STORE8(dst + 2 * ldd, o2), LA_STORE8(dst + 3 * ldd, o3);
  LA_STORE8(dst + 4 * ldd, o4), LA_STORE8(dst + 5 * ldd, o5), LA_STORE8(dst + 6 * ldd, o6), LA_STORE8(dst + 7 * ldd, o7);
}
#undef LA_LOAD8
#undef LA_STORE8
static inline void la_transpose(float* dst, int64_t ldd, const float* src, int64_t lds, int64_t rows, int64_t cols) {
  const int64_t rows8 = rows & ~(int64_t)7, cols8 = cols & ~(int64_t)7;
  /* 16 x 16 tiles of four blocks: each row piece read or written is a whole 64-byte line at
   * once (8 x 8 blocks alone touch half lines, and the panel is larger than L1 by the time the
   * other half comes) */
  for (int64_t r0 = 0; r0 < rows8; r0 += 16)
    for (int64_t c0 = 0; c0 < cols8; c0 += 16) {
      /* the same tile of the next tile row, a row of tiles ahead: the state comes from L3 or
       * memory (read) and goes to the caller's buffer (write) in short strided pieces, which
       * the hardware prefetchers do not follow */
      if (r0 + 32 <= rows8 && c0 + 16 <= cols8)
        for (int64_t i = 0; i < 16; i++) {
          __builtin_prefetch(src + (r0 + 16 + i) * lds + c0, 0, 3);
          __builtin_prefetch(dst + (c0 + i) * ldd + r0 + 16, 1, 3);
        }
      for (int64_t r = r0; r < r0 + 16 && r < rows8; r += 8)
        for (int64_t c = c0; c < c0 + 16 && c < cols8; c += 8) la_transpose8x8(dst + c * ldd + r, ldd, src + r * lds + c, lds);
    }
  la_transpose4(dst + cols8 * ldd, ldd, src + cols8, lds, rows8, cols - cols8); /* rows [0, rows8), cols [cols8, cols) */
  la_transpose4(dst + rows8, ldd, src + rows8 * lds, lds, rows - rows8, cols);  /* rows [rows8, rows) */
}

/* Element offset of state entry (key row i, value column j) within a unit's block. */
static inline int64_t la_state_idx(const la_params* p, const la_unit* u, int64_t i, int64_t j) {
  return p->state_v_major ? j * u->ld_state + i : i * u->ld_state + j;
}

/* A half-precision (F16 / BF16) state block (la_params.state_dtype)? */
static inline int la_state_half(const la_params* p) {
  return p->state_dtype == LINATTN_DTYPE_F16 || p->state_dtype == LINATTN_DTYPE_BF16;
}
/* Bytes of a state element. */
static inline size_t la_state_esz(const la_params* p) { return la_state_half(p) ? 2u : 4u; }

/* T == 0: the state leaves unchanged (zeros when absent). */
static inline void la_copy_state_only(const la_params* p, const la_unit* u) {
  const size_t esz = la_state_esz(p);
  const int64_t rows = p->state_v_major ? u->ncols : p->d_k, len = p->state_v_major ? p->d_k : u->ncols;
  for (int64_t r = 0; r < rows; r++) { /* V-major: rows of the block are value columns */
    char* dst = (char*)u->state_out + (size_t)(r * u->ld_state) * esz;
    const char* src = u->state_in ? (const char*)u->state_in + (size_t)(r * u->ld_state) * esz : NULL;
    if (!src) memset(dst, 0, esz * (size_t)len);
    else if (src != dst) memcpy(dst, src, esz * (size_t)len);
  }
}

/* Half-precision state rows (d_k x ncols, row stride ld) to / from an fp32 block with row
 * stride ncols, element by element (the reference kernel's load and store of its state). */
static inline void la_state_widen(const la_params* p, const la_unit* u, float* dst) {
  for (int64_t i = 0; i < p->d_k; i++)
    for (int64_t j = 0; j < u->ncols; j++)
      dst[i * u->ncols + j] = linattn_load_f32(u->state_in_h, i * u->ld_state + j, p->state_dtype);
}
static inline void la_state_narrow(const la_params* p, const la_unit* u, const float* src) {
  for (int64_t i = 0; i < p->d_k; i++)
    for (int64_t j = 0; j < u->ncols; j++)
      linattn_store_f32(u->state_out_h, i * u->ld_state + j, p->state_dtype, src[i * u->ncols + j]);
}

#endif /* LINATTN_LA_COMMON_H */
