/*
 * AArch64 Advanced SIMD (NEON) fused LinearAttention kernel: the algorithm of la_common.h.
 *
 * A unit (b, kv head, column block) is cut into column panels of 16 columns (4 q-registers;
 * 4-column panels for the tail, a zero-padded copy for the last < 4 columns). Tokens are staged
 * in tiles (q, k, decay converted to fp32 once per unit) and every panel then runs all tokens
 * of the tile while its d_k x 16 slice of the state stays in L1. Per token a panel makes one
 * sweep over its rows that writes S_t and accumulates p_{t+1} and s_{t+1} for the first two
 * query heads in registers; further GQA heads read the freshly written panel in a read-only
 * pass. Every column gets the same arithmetic whatever panel it lands in, so results never
 * depend on the split into units or threads.
 */
#include <arm_neon.h>
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "la_common.h"
#include "neon_util.h"

#define LA_NEON_PANEL 16     /* columns per full panel */
#define LA_NEON_SWEEP_HEADS 2 /* query heads accumulated inside the update sweep */
#define LA_NEON_STAGED_HEADS 8 /* query heads staged per token; more are converted on the fly */
#define LA_NEON_MAX_TILE 64

/* ------------------------------------------------------------------ sweeps */

typedef struct la_sweep_args {
  const float* src; /* panel of S_{t-1} (row stride ld) */
  float* dst;       /* where S_t goes (update sweeps) */
  int64_t ld, d_k;
  const float* k;   /* k_t (update) */
  const float* a;   /* per-key a_t (update, DECAY == 2) */
  float a_s;        /* per-head a_t (update, DECAY == 1) */
  const float* u;   /* u_t, one panel (update) */
  const float* pk;  /* p accumulation weights (PACC) */
  const float* sq0; /* s accumulation weights, head 0 / 1 (NQ >= 1 / 2) */
  const float* sq1;
  float* p_out;
  float* s0_out;
  float* s1_out;
} la_sweep_args;

/* One pass over the rows of a panel of NV 4-column vectors. UPD: x = a .* S + k_i u, stored;
 * PACC: p += x * pk_i; NQ heads: s_h += x * sq_h,i. DECAY 0 none, 1 per head, 2 per key.
 * Accumulators are named registers (not arrays) so the compiler keeps them out of memory. */
#define LA_V4(OP) OP(0) if (NV > 1) { OP(1) OP(2) OP(3) }
NEON_INLINE void la_sweep_generic(const la_sweep_args* A, const int NV, const int DECAY, const int UPD,
                                  const int PACC, const int NQ) {
  const float32x4_t z = vdupq_n_f32(0.0f);
  float32x4_t u0 = z, u1 = z, u2 = z, u3 = z;
  float32x4_t p0 = z, p1 = z, p2 = z, p3 = z;
  float32x4_t s0 = z, s1 = z, s2 = z, s3 = z;
  float32x4_t r0 = z, r1 = z, r2 = z, r3 = z;
  if (UPD) {
#define LA_LOAD_U(J) u##J = vld1q_f32(A->u + 4 * J);
    LA_V4(LA_LOAD_U)
#undef LA_LOAD_U
  }
  const float* restrict src = A->src;
  float* restrict dst = A->dst;
  const float* restrict kk = A->k;
  const float* restrict aa = A->a;
  const float* restrict pk = A->pk;
  const float* restrict q0 = A->sq0;
  const float* restrict q1 = A->sq1;
  const float a_s = A->a_s;
  const int64_t ld = A->ld, d_k = A->d_k;
  for (int64_t i = 0; i < d_k; i++, src += ld) {
    float32x4_t x0 = vld1q_f32(src), x1 = z, x2 = z, x3 = z;
    if (NV > 1) {
      x1 = vld1q_f32(src + 4);
      x2 = vld1q_f32(src + 8);
      x3 = vld1q_f32(src + 12);
    }
    if (UPD) {
      const float ki = kk[i];
      const float ai = DECAY == 2 ? aa[i] : a_s;
#define LA_UPDATE(J)                          \
  if (DECAY) x##J = vmulq_n_f32(x##J, ai);    \
  x##J = vfmaq_n_f32(x##J, u##J, ki);         \
  vst1q_f32(dst + 4 * J, x##J);
      LA_V4(LA_UPDATE)
#undef LA_UPDATE
      dst += ld;
    }
    if (PACC) {
      const float w = pk[i];
#define LA_ACC_P(J) p##J = vfmaq_n_f32(p##J, x##J, w);
      LA_V4(LA_ACC_P)
#undef LA_ACC_P
    }
    if (NQ >= 1) {
      const float w = q0[i];
#define LA_ACC_S(J) s##J = vfmaq_n_f32(s##J, x##J, w);
      LA_V4(LA_ACC_S)
#undef LA_ACC_S
    }
    if (NQ >= 2) {
      const float w = q1[i];
#define LA_ACC_R(J) r##J = vfmaq_n_f32(r##J, x##J, w);
      LA_V4(LA_ACC_R)
#undef LA_ACC_R
    }
  }
#define LA_STORE_OUT(J)                                  \
  if (PACC) vst1q_f32(A->p_out + 4 * J, p##J);           \
  if (NQ >= 1) vst1q_f32(A->s0_out + 4 * J, s##J);       \
  if (NQ >= 2) vst1q_f32(A->s1_out + 4 * J, r##J);
  LA_V4(LA_STORE_OUT)
#undef LA_STORE_OUT
}
#undef LA_V4

typedef void (*la_sweep_fn)(const la_sweep_args* a);

/* Specialisations: mode = (UPD, PACC, NQ) in the order of la_modes below. */
#define LA_SWEEP_DEF(NV, DECAY, UPD, PACC, NQ)                                        \
  static void la_sweep_##NV##_##DECAY##_##UPD##_##PACC##_##NQ(const la_sweep_args* a) { \
    la_sweep_generic(a, NV, DECAY, UPD, PACC, NQ);                                    \
  }
#define LA_SWEEP_UPDATES(NV, DECAY)    \
  LA_SWEEP_DEF(NV, DECAY, 1, 0, 0)     \
  LA_SWEEP_DEF(NV, DECAY, 1, 0, 1)     \
  LA_SWEEP_DEF(NV, DECAY, 1, 0, 2)     \
  LA_SWEEP_DEF(NV, DECAY, 1, 1, 1)     \
  LA_SWEEP_DEF(NV, DECAY, 1, 1, 2)
#define LA_SWEEP_READS(NV)             \
  LA_SWEEP_DEF(NV, 0, 0, 0, 1)         \
  LA_SWEEP_DEF(NV, 0, 0, 0, 2)         \
  LA_SWEEP_DEF(NV, 0, 0, 1, 1)         \
  LA_SWEEP_DEF(NV, 0, 0, 1, 2)
#define LA_SWEEP_ALL(NV) \
  LA_SWEEP_UPDATES(NV, 0) LA_SWEEP_UPDATES(NV, 1) LA_SWEEP_UPDATES(NV, 2) LA_SWEEP_READS(NV)

LA_SWEEP_ALL(4)
LA_SWEEP_ALL(1)

#define LA_UPD_ROW(NV, DECAY)                                                                   \
  {la_sweep_##NV##_##DECAY##_1_0_0, la_sweep_##NV##_##DECAY##_1_0_1, la_sweep_##NV##_##DECAY##_1_0_2, \
   la_sweep_##NV##_##DECAY##_1_1_1, la_sweep_##NV##_##DECAY##_1_1_2}
#define LA_READ_ROW(NV) \
  {la_sweep_##NV##_0_0_0_1, la_sweep_##NV##_0_0_0_2, la_sweep_##NV##_0_0_1_1, la_sweep_##NV##_0_0_1_2}

/* [nv == 4 ? 0 : 1][decay][mode]: mode 0 update only, 1 + 2*pacc + (nq-1) with accumulation. */
static const la_sweep_fn la_update_sweeps[2][3][5] = {
    {LA_UPD_ROW(4, 0), LA_UPD_ROW(4, 1), LA_UPD_ROW(4, 2)},
    {LA_UPD_ROW(1, 0), LA_UPD_ROW(1, 1), LA_UPD_ROW(1, 2)},
};
/* [nv == 4 ? 0 : 1][2*pacc + (nq-1)] */
static const la_sweep_fn la_read_sweeps[2][4] = {LA_READ_ROW(4), LA_READ_ROW(1)};

/* ------------------------------------------------------------------ staging */

/* Per-unit layout of the scratch. Token record (fp32), dk16 = d_k rounded up to 16:
 *   k[dk16] | per key: a[dk16], ak[dk16] | aq_h[dk16] for staged heads h | beta, a_s, kq_h...
 * aq_h = a .* scale q_h for per-key decay, scale q_h otherwise (the per-head a_t is applied to
 * p and s after the sweep). ak = a .* k for per-key decay, k otherwise. */
typedef struct la_neon_layout {
  int64_t dk16, rec;  /* floats per token record */
  int perkey, hs;     /* staged heads */
  int64_t tile;       /* tokens per tile */
  float* tok;         /* tile * rec */
  float* p;           /* 16 */
  float* s;           /* LA_NEON_SWEEP_HEADS x 16 */
  float* sx;          /* 2 x 16: extra heads */
  float* u;           /* 16 */
  float* io;          /* 16: tail load/store */
  float* qx;          /* 2 x dk16: heads converted on the fly */
  float* pad;         /* d_k x 4: padded last panel */
} la_neon_layout;

static int64_t la_neon_rec_floats(int64_t dk16, int perkey, int hs) {
  return dk16 * (1 + (perkey ? 2 : 0) + hs) + 16;
}

static size_t la_neon_layout_make(const la_params* p, int32_t n_q, void* scratch, la_neon_layout* L) {
  la_arena a = {(char*)scratch, 0};
  L->dk16 = (p->d_k + 15) / 16 * 16;
  L->perkey = p->decay_kind == LA_DECAY_PER_KEY;
  L->hs = n_q < LA_NEON_STAGED_HEADS ? (n_q < 1 ? 1 : n_q) : LA_NEON_STAGED_HEADS;
  L->rec = la_neon_rec_floats(L->dk16, L->perkey, L->hs);
  /* The budget does not depend on n_q (unknown to scratch_bytes): room for 8 tokens of 8 heads
   * or 32 tokens of one head, whichever is larger. */
  const int64_t budget_a = 8 * la_neon_rec_floats(L->dk16, L->perkey, LA_NEON_STAGED_HEADS);
  const int64_t budget_b = 32 * la_neon_rec_floats(L->dk16, L->perkey, 1);
  const int64_t budget = budget_a > budget_b ? budget_a : budget_b;
  L->tile = budget / L->rec;
  if (L->tile > LA_NEON_MAX_TILE) L->tile = LA_NEON_MAX_TILE;
  L->tok = la_arena_floats(&a, budget);
  L->p = la_arena_floats(&a, 16);
  L->s = la_arena_floats(&a, 16 * LA_NEON_SWEEP_HEADS);
  L->sx = la_arena_floats(&a, 32);
  L->u = la_arena_floats(&a, 16);
  L->io = la_arena_floats(&a, 16);
  L->qx = la_arena_floats(&a, 2 * L->dk16);
  L->pad = la_arena_floats(&a, p->d_k * 4);
  return a.used;
}

/* Bytes of the fp32 copy of a half-precision state block (after the layout). */
static size_t la_neon_half_bytes(const la_params* p, int64_t ncols) {
  return la_state_half(p) ? ((sizeof(float) * (size_t)(p->d_k * ncols) + 63u) & ~(size_t)63u) : 0;
}

static size_t la_neon_scratch(const la_params* p, int64_t ncols) {
  la_neon_layout L;
  return la_neon_layout_make(p, 1, NULL, &L) + la_neon_half_bytes(p, ncols);
}

/* n io-dtype elements -> fp32 dst[0, n), zeros up to n_pad. */
static void la_neon_load_row(const void* src, linattn_dtype dt, int64_t n, float* dst, int64_t n_pad) {
  int64_t i = 0;
  if (dt == LINATTN_DTYPE_F16) {
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, neon_load4(src, i, LINATTN_DTYPE_F16));
  } else if (dt == LINATTN_DTYPE_BF16) {
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, neon_load4(src, i, LINATTN_DTYPE_BF16));
  } else {
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, neon_load4(src, i, LINATTN_DTYPE_F32));
  }
  for (; i < n; i++) dst[i] = linattn_load_f32(src, i, dt);
  for (; i < n_pad; i++) dst[i] = 0.0f;
}

/* q_h of token t -> dst = (a .*) scale q_h (dk16 floats, zero padded); returns k . scale q_h. */
static float la_neon_stage_query(const la_params* p, const la_unit* u, const la_neon_layout* L, int64_t t,
                                 int32_t h, const float* k, const float* a, float* dst) {
  const void* qt = la_io_at(u->q, t * u->q_token_stride + h * u->q_head_stride, p->io_dtype);
  la_neon_load_row(qt, p->io_dtype, p->d_k, dst, L->dk16);
  float32x4_t kq = vdupq_n_f32(0.0f);
  for (int64_t i = 0; i < L->dk16; i += 4) {
    float32x4_t q = vmulq_n_f32(vld1q_f32(dst + i), p->scale);
    kq = vfmaq_f32(kq, vld1q_f32(k + i), q);
    if (a) q = vmulq_f32(q, vld1q_f32(a + i));
    vst1q_f32(dst + i, q);
  }
  return vaddvq_f32(kq);
}

static inline float* la_rec_k(const la_neon_layout* L, float* rec) {
  (void)L;
  return rec;
}
static inline float* la_rec_a(const la_neon_layout* L, float* rec) { return rec + L->dk16; }
static inline float* la_rec_ak(const la_neon_layout* L, float* rec) { return rec + 2 * L->dk16; }
static inline float* la_rec_q(const la_neon_layout* L, float* rec, int h) {
  return rec + (1 + (L->perkey ? 2 : 0) + h) * L->dk16;
}
static inline float* la_rec_scalars(const la_neon_layout* L, float* rec) {
  return rec + (1 + (L->perkey ? 2 : 0) + L->hs) * L->dk16;
}
/* scalars: [0] beta, [1] per-head a_t (1 otherwise), [2 + h] kq_h */

static void la_neon_stage_token(const la_params* p, const la_unit* u, const la_neon_layout* L, int64_t t,
                                float* rec) {
  const linattn_dtype dt = p->io_dtype;
  float* k = la_rec_k(L, rec);
  float* sc = la_rec_scalars(L, rec);
  la_neon_load_row(la_io_at(u->k, t * u->k_token_stride, dt), dt, p->d_k, k, L->dk16);
  const float* a = NULL;
  sc[1] = 1.0f;
  if (p->gated) {
    const void* gt = la_io_at(u->decay, t * u->decay_token_stride, dt);
    if (L->perkey) {
      float* av = la_rec_a(L, rec);
      float* ak = la_rec_ak(L, rec);
      la_neon_load_row(gt, dt, p->d_k, av, L->dk16);
      for (int64_t i = 0; i < L->dk16; i += 4) {
        const float32x4_t e = neon_exp4(vld1q_f32(av + i));
        vst1q_f32(av + i, e);
        vst1q_f32(ak + i, vmulq_f32(e, vld1q_f32(k + i)));
      }
      a = av;
    } else {
      sc[1] = expf(linattn_load_f32(gt, 0, dt));
    }
  }
  sc[0] = p->delta ? linattn_load_f32(la_io_at(u->beta, t * u->beta_token_stride, dt), 0, dt) : 1.0f;
  for (int h = 0; h < L->hs; h++) sc[2 + h] = la_neon_stage_query(p, u, L, t, h, k, a, la_rec_q(L, rec, h));
}

/* ------------------------------------------------------------------ panels */

typedef struct la_panel {
  float* st;         /* panel of the state being advanced (state_out or the padded copy) */
  const float* st0;  /* panel of the state entering the call */
  int64_t ld;
  int64_t col;       /* first column, relative to the unit */
  int w;             /* real columns (<= 4 * nv) */
  int nv;            /* 4-column vectors: 4 or 1 */
} la_panel;

/* v_t of the panel -> L->io as fp32 (zero padded). */
static const float* la_panel_load_v(const la_params* p, const la_unit* u, const la_panel* P, int64_t t,
                                    float* io) {
  const void* vt = la_io_at(u->v, t * u->v_token_stride + P->col, p->io_dtype);
  la_neon_load_row(vt, p->io_dtype, P->w, io, 4 * P->nv);
  return io;
}

/* o = (a_s s + kq u) -> output head h, token t (w columns). */
static void la_panel_store_out(const la_params* p, const la_unit* u, const la_panel* P, int64_t t, int32_t h,
                               const float* s, float a_s, float kq, const float* uu, float* io) {
  const linattn_dtype dt = p->io_dtype;
  void* ot = la_io_at_mut(u->out, t * u->out_token_stride + h * u->out_head_stride + P->col, dt);
  if (P->w == 4 * P->nv) {
    for (int j = 0; j < P->nv; j++) {
      const float32x4_t o = vfmaq_n_f32(vmulq_n_f32(vld1q_f32(s + 4 * j), a_s), vld1q_f32(uu + 4 * j), kq);
      neon_store4(ot, 4 * j, dt, o);
    }
  } else {
    vst1q_f32(io, vfmaq_n_f32(vmulq_n_f32(vld1q_f32(s), a_s), vld1q_f32(uu), kq));
    for (int c = 0; c < P->w; c++) linattn_store_f32(ot, c, dt, io[c]);
  }
}

/* Advances one panel over the staged tokens [t0, t1). */
static void la_panel_run_tile(const la_params* p, const la_unit* u, la_neon_layout* L, const la_panel* P,
                              int64_t t0, int64_t t1) {
  const int vsel = P->nv == 4 ? 0 : 1;
  const int decay = !p->gated ? 0 : (L->perkey ? 2 : 1);
  const int32_t n_q = u->n_q < 1 ? 1 : u->n_q;
  const int nqs = n_q < LA_NEON_SWEEP_HEADS ? n_q : LA_NEON_SWEEP_HEADS;
  const int pacc = p->delta ? 1 : 0;
  const int nw = 4 * P->nv;

  la_sweep_args A;
  memset(&A, 0, sizeof A);
  A.ld = P->ld;
  A.d_k = p->d_k;
  A.p_out = L->p;
  A.s0_out = L->s;
  A.s1_out = L->s + 16;

  /* p, s of token t0 from the state entering the tile */
  const float* cur = t0 == 0 ? P->st0 : P->st;
  {
    float* rec = L->tok;
    A.src = cur;
    A.pk = L->perkey ? la_rec_ak(L, rec) : la_rec_k(L, rec);
    A.sq0 = la_rec_q(L, rec, 0);
    A.sq1 = nqs > 1 ? la_rec_q(L, rec, 1) : NULL;
    la_read_sweeps[vsel][2 * pacc + nqs - 1](&A);
  }

  for (int64_t t = t0; t < t1; t++) {
    float* rec = L->tok + (t - t0) * L->rec;
    const float* sc = la_rec_scalars(L, rec);
    const float beta = sc[0], a_s = sc[1];

    /* u_t = beta (v - a_s p) or v */
    const float* v = la_panel_load_v(p, u, P, t, L->io);
    for (int j = 0; j < nw; j += 4) {
      float32x4_t uv = vld1q_f32(v + j);
      if (p->delta) uv = vmulq_n_f32(vsubq_f32(uv, vmulq_n_f32(vld1q_f32(L->p + j), a_s)), beta);
      vst1q_f32(L->u + j, uv);
    }
    for (int h = 0; h < nqs; h++)
      la_panel_store_out(p, u, P, t, h, L->s + 16 * h, a_s, sc[2 + h], L->u, L->io);

    /* further heads: read-only passes over S_{t-1} */
    for (int32_t h = nqs; h < n_q; h += 2) {
      const int nh = n_q - h >= 2 ? 2 : 1;
      float kqx[2];
      const float* sq[2];
      for (int e = 0; e < nh; e++) {
        if (h + e < L->hs) {
          sq[e] = la_rec_q(L, rec, h + e);
          kqx[e] = sc[2 + h + e];
        } else {
          float* dst = L->qx + e * L->dk16;
          kqx[e] = la_neon_stage_query(p, u, L, t, h + e, la_rec_k(L, rec), L->perkey ? la_rec_a(L, rec) : NULL, dst);
          sq[e] = dst;
        }
      }
      la_sweep_args X = A;
      X.src = cur;
      X.sq0 = sq[0];
      X.sq1 = nh > 1 ? sq[1] : NULL;
      X.s0_out = L->sx;
      X.s1_out = L->sx + 16;
      la_read_sweeps[vsel][nh - 1](&X);
      for (int e = 0; e < nh; e++)
        la_panel_store_out(p, u, P, t, h + e, L->sx + 16 * e, a_s, kqx[e], L->u, L->io);
    }

    /* S_t, and p, s of token t + 1 when it is in this tile */
    A.src = cur;
    A.dst = P->st;
    A.k = la_rec_k(L, rec);
    A.a = L->perkey ? la_rec_a(L, rec) : NULL;
    A.a_s = a_s;
    A.u = L->u;
    if (t + 1 < t1) {
      float* nx = rec + L->rec;
      A.pk = L->perkey ? la_rec_ak(L, nx) : la_rec_k(L, nx);
      A.sq0 = la_rec_q(L, nx, 0);
      A.sq1 = nqs > 1 ? la_rec_q(L, nx, 1) : NULL;
      la_update_sweeps[vsel][decay][1 + 2 * pacc + nqs - 1](&A);
    } else {
      la_update_sweeps[vsel][decay][0](&A);
    }
    cur = P->st;
  }
}

/* ------------------------------------------------------------------ unit */

static void la_neon_run_f32(const la_params* p, const la_unit* u, void* scratch) {
  if (p->T <= 0) {
    la_copy_state_only(p, u);
    return;
  }
  linattn_fpenv env;
  linattn_fpenv_enter_ftz(&env);
  la_neon_layout L;
  la_neon_layout_make(p, u->n_q, scratch, &L);
  const int64_t d_k = p->d_k, ld = u->ld_state, nc = u->ncols;

  /* panels: 16-wide, then 4-wide, then a padded copy for the last nc % 4 columns */
  la_panel panels[LA_NEON_MAX_TILE]; /* at most block_cols / 4 + 1 used per batch of panels */
  int64_t col = 0;
  while (col < nc) {
    int np = 0;
    for (; col < nc && np < LA_NEON_MAX_TILE; np++) {
      la_panel* P = &panels[np];
      const int64_t rem = nc - col;
      P->col = col;
      P->nv = rem >= LA_NEON_PANEL ? 4 : 1;
      P->w = rem >= 4 * P->nv ? 4 * P->nv : (int)rem;
      if (P->w == 4 * P->nv) {
        P->st = u->state_out + col;
        P->ld = ld;
        if (u->state_in) {
          P->st0 = u->state_in + col;
        } else {
          for (int64_t i = 0; i < d_k; i++) memset(P->st + i * ld, 0, sizeof(float) * (size_t)P->w);
          P->st0 = P->st;
        }
      } else { /* the padded panel is private: columns beyond w stay zero (v = 0, u = 0) */
        P->st = L.pad;
        P->ld = 4;
        memset(L.pad, 0, sizeof(float) * (size_t)(d_k * 4));
        if (u->state_in)
          for (int64_t i = 0; i < d_k; i++) memcpy(L.pad + i * 4, u->state_in + i * ld + col, sizeof(float) * (size_t)P->w);
        P->st0 = L.pad;
      }
      col += P->w;
    }
    for (int64_t t0 = 0; t0 < p->T; t0 += L.tile) {
      const int64_t t1 = t0 + L.tile < p->T ? t0 + L.tile : p->T;
      for (int64_t t = t0; t < t1; t++) la_neon_stage_token(p, u, &L, t, L.tok + (t - t0) * L.rec);
      for (int i = 0; i < np; i++) la_panel_run_tile(p, u, &L, &panels[i], t0, t1);
    }
    for (int i = 0; i < np; i++) {
      const la_panel* P = &panels[i];
      if (P->st == L.pad)
        for (int64_t r = 0; r < d_k; r++)
          memcpy(u->state_out + r * ld + P->col, L.pad + r * 4, sizeof(float) * (size_t)P->w);
    }
  }
  linattn_fpenv_leave(&env);
}

/* A half-precision state is widened into an fp32 block at the end of the scratch when the unit
 * loads it and rounded once when it stores it (the sweeps here are fp32 only). */
static void la_neon_run(const la_params* p, const la_unit* u, void* scratch) {
  if (!la_state_half(p)) {
    la_neon_run_f32(p, u, scratch);
    return;
  }
  la_neon_layout L;
  float* block = (float*)((char*)scratch + la_neon_layout_make(p, 1, NULL, &L));
  la_params pf = *p;
  pf.state_dtype = LINATTN_DTYPE_F32;
  la_unit uf = *u;
  uf.state_in = u->state_in ? block : NULL;
  uf.state_out = block;
  uf.ld_state = u->ncols;
  if (u->state_in) la_state_widen(p, u, block);
  la_neon_run_f32(&pf, &uf, scratch);
  la_state_narrow(p, u, block);
}

const la_kernel linattn_la_neon = {
    .name = "neon",
    .run = la_neon_run,
    .scratch_bytes = la_neon_scratch,
    .block_cols = 64,
};
