/*
 * Shared helpers of the CausalConvWithState kernel families (scalar, AVX2, AVX-512; private).
 *
 * Every family computes one output element the same way:
 *   acc = 0; for j = 0 .. K-1: acc = acc + w[j] * padded[t + j*dilation]; acc = acc + bias
 * (the bias add only when there is a bias; for fp16 the sum is rounded to fp16 before the
 * bias add, like the reference's fp16 matmul; one fused multiply-add per tap in the vector
 * families; this is the reference's order), v = round_T(acc),
 * y = round_T(v * (1 / (1 + exp(-v)))) for SiLU. Because the order never changes with the
 * path (decode, head, body, tail, channel split), a family gives the same bits whatever the
 * split, the thread count, or the way a sequence is cut into calls.
 *
 * padded[p] for p in [0, S + L): p < S -> past[p] (zeros without past), else input[p - S].
 * present_state[s] = padded[L + s].
 */
#ifndef LINATTN_CONV_COMMON_H
#define LINATTN_CONV_COMMON_H

#include <stdint.h>
#include <string.h>

#include "convert.h"
#include "internal.h"

static inline size_t conv_esize(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 4u : 2u; }

/* Element (b, c, t) of a strided io-dtype tensor, as a byte pointer. */
static inline const char* conv_at(const void* base, int64_t i, size_t es) {
  return (const char*)base + i * (int64_t)es;
}

/* Scratch layout shared by the families (all fp32 areas 64-byte aligned):
 *   wc   : K * ncp floats    fp32 copy of the block's (C, K) weights (16-bit T)
 *   wt   : K * ncp floats    tap-major fp32 weights [K][ncp] (channels-last)
 *   bias : ncp floats        fp32 bias (zeros when absent)
 *   zero : ncp * 4 bytes     a zero row in the io dtype (past_state absent, channels-last)
 *   tile : CONV_TILE_ELEMS floats   fp32 copy of 16 channels' past state (decode, 16-bit T)
 * ncp = nc rounded up to 16. */
#define CONV_TILE_MAX_S 64
#define CONV_TILE_ELEMS (16 * CONV_TILE_MAX_S)

static inline int64_t conv_ncp(int64_t nc) { return (nc + 15) / 16 * 16; }

/* Elements of size es from y up to the next vbytes boundary (0 when y is on one, or when y is
 * not even element-aligned and no element boundary meets it). */
static inline int64_t conv_lead_to_boundary(const void* y, size_t es, size_t vbytes) {
  const uintptr_t a = (uintptr_t)y;
  return a % es ? 0 : (int64_t)((vbytes - a % vbytes) % vbytes / es);
}

static inline size_t conv_vector_scratch_bytes(const conv_params* p, int64_t nc) {
  size_t ncp = (size_t)conv_ncp(nc);
  return (2u * (size_t)p->K + 2u) * ncp * 4u + CONV_TILE_ELEMS * 4u + 256u;
}

typedef struct conv_scratch_layout {
  float* wc;
  float* wt;
  float* bias;
  void* zero;
  float* tile;
} conv_scratch_layout;

static inline conv_scratch_layout conv_scratch_split(const conv_params* p, int64_t nc, void* scratch) {
  size_t ncp = (size_t)conv_ncp(nc);
  conv_scratch_layout s;
  memset(&s, 0, sizeof s);
  if (!scratch) return s; /* a path that needs no scratch (AVX-512 decode) got none */
  s.wc = (float*)scratch;
  s.wt = s.wc + (size_t)p->K * ncp;
  s.bias = s.wt + (size_t)p->K * ncp;
  s.zero = s.bias + ncp;
  s.tile = (float*)((char*)s.zero + ncp * 4u);
  return s;
}

/* Fills the fp32 transposed weights and bias of channels [c0, c0 + nc); pads to ncp with 0. */
static inline void conv_fill_weights_tk(const conv_params* p, int64_t c0, int64_t nc, float* wt, float* bias) {
  int64_t ncp = conv_ncp(nc), K = p->K;
  for (int64_t j = 0; j < K; ++j) {
    float* row = wt + j * ncp;
    for (int64_t c = 0; c < nc; ++c) row[c] = linattn_load_f32(p->w, (c0 + c) * K + j, p->dtype);
    for (int64_t c = nc; c < ncp; ++c) row[c] = 0.0f;
  }
  for (int64_t c = 0; c < ncp; ++c)
    bias[c] = (p->bias && c < nc) ? linattn_load_f32(p->bias, c0 + c, p->dtype) : 0.0f;
}

/* Channels-last: byte pointer to padded row p (time position in padded coordinates) of batch
 * b at channel c0; zero_row when the row comes from an absent past state. */
static inline const char* conv_cl_padded_row(const conv_params* p, int64_t b, int64_t c0, int64_t pos,
                                             const void* zero_row) {
  size_t es = conv_esize(p->dtype);
  if (pos >= p->S) return conv_at(p->x, b * p->x_sb + (pos - p->S) * p->x_st + c0, es);
  if (!p->past) return (const char*)zero_row;
  return conv_at(p->past, b * p->s_sb + pos * p->s_st + c0, es);
}

/* Channels-last present state of channels [c0, c0 + nc): row s = padded[L + s]. Must run after
 * every read of past for these channels. Rows are written in increasing s; in place, row
 * L + s is read before it is overwritten (L + s >= s). */
static inline void conv_cl_write_present(const conv_params* p, int64_t b, int64_t c0, int64_t nc) {
  if (!p->present) return;
  size_t es = conv_esize(p->dtype);
  size_t bytes = (size_t)nc * es;
  for (int64_t s = 0; s < p->S; ++s) {
    char* dst = (char*)p->present + (b * p->s_sb + s * p->s_st + c0) * (int64_t)es;
    int64_t pos = p->L + s;
    if (pos >= p->S) {
      memcpy(dst, conv_at(p->x, b * p->x_sb + (pos - p->S) * p->x_st + c0, es), bytes);
    } else if (p->past) {
      memmove(dst, conv_at(p->past, b * p->s_sb + pos * p->s_st + c0, es), bytes);
    } else {
      memset(dst, 0, bytes);
    }
  }
}

/* Channels-first present state of channel c: S contiguous elements padded[L .. L + S). */
static inline void conv_cf_write_present(const conv_params* p, int64_t b, int64_t c) {
  if (!p->present || p->S == 0) return;
  size_t es = conv_esize(p->dtype);
  int64_t S = p->S, L = p->L;
  char* dst = (char*)p->present + (b * p->s_sb + c * p->s_sc) * (int64_t)es;
  const char* xrow = conv_at(p->x, b * p->x_sb + c * p->x_sc, es);
  if (L >= S) {
    memcpy(dst, xrow + (L - S) * (int64_t)es, (size_t)S * es);
    return;
  }
  /* first S - L entries come from the tail of past (moved down by L), then all L inputs */
  size_t keep = (size_t)(S - L) * es;
  if (p->past) {
    const char* src = conv_at(p->past, b * p->s_sb + c * p->s_sc + L, es);
    memmove(dst, src, keep);
  } else {
    memset(dst, 0, keep);
  }
  if (L > 0) memcpy(dst + keep, xrow, (size_t)L * es);
}

/* ------------------------------------------------------------------ state transpose */

/* Vector transposes (conv_kernel.transpose) of an (n, S) block with S <= CONV_TR_MAX_S, in
 * groups of `lanes` channels (<= 32) held as S vectors:
 *   de-interleave (the n x S block contiguous, to S rows): input vector j lane l is block
 *     position p = j * lanes + l, element (p / S, p % S); output vector k lane r is (r, k);
 *   interleave (S rows to the contiguous block): input vector r lane c is (c, r); output
 *     vector o lane i is block position p = o * lanes + i, element (p / S, p % S).
 * Output vector o lane i takes lane lane[o][i] of input vector vec[o][i]. Other shapes (and S
 * above CONV_TR_MAX_S) take the portable loop. */
#define CONV_TR_MAX_S 8

typedef struct conv_tr_plan {
  int32_t lane[CONV_TR_MAX_S][32];
  int32_t vec[CONV_TR_MAX_S][32];
} conv_tr_plan;

static inline void conv_tr_plan_make(conv_tr_plan* pl, int64_t S, int lanes, bool deint) {
  for (int64_t o = 0; o < S; ++o)
    for (int i = 0; i < lanes; ++i) {
      const int64_t p = deint ? i * S + o : o * lanes + i; /* block position of output lane (o, i) */
      pl->vec[o][i] = (int32_t)(deint ? p / lanes : p % S);
      pl->lane[o][i] = (int32_t)(deint ? p % lanes : p / S);
    }
}

/* Calls RUN(p, b, c0, nc, s, dtype, activation) with dtype and activation as literal constants,
 * so an always-inline RUN is specialised for each of the six combinations. */
#define CONV_RUN_TYPED(RUN, p, b, c0, nc, s)                                                           \
  do {                                                                                                 \
    const bool silu_ = (p)->activation == LINATTN_ACTIVATION_SILU;                                    \
    switch ((p)->dtype) {                                                                              \
      case LINATTN_DTYPE_F16:                                                                          \
        if (silu_) RUN(p, b, c0, nc, s, LINATTN_DTYPE_F16, LINATTN_ACTIVATION_SILU);                   \
        else RUN(p, b, c0, nc, s, LINATTN_DTYPE_F16, LINATTN_ACTIVATION_NONE);                         \
        break;                                                                                         \
      case LINATTN_DTYPE_BF16:                                                                         \
        if (silu_) RUN(p, b, c0, nc, s, LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_SILU);                  \
        else RUN(p, b, c0, nc, s, LINATTN_DTYPE_BF16, LINATTN_ACTIVATION_NONE);                        \
        break;                                                                                         \
      default:                                                                                         \
        if (silu_) RUN(p, b, c0, nc, s, LINATTN_DTYPE_F32, LINATTN_ACTIVATION_SILU);                   \
        else RUN(p, b, c0, nc, s, LINATTN_DTYPE_F32, LINATTN_ACTIVATION_NONE);                         \
        break;                                                                                         \
    }                                                                                                  \
  } while (0)

#endif /* LINATTN_CONV_COMMON_H */
