/*
 * Portable fused LinearAttention kernel: the algorithm of la_common.h in plain C. It is the
 * readable model of the SIMD families and the fast path on CPUs without them; the inner loops
 * run along the state columns with no cross-iteration dependency, so compilers vectorise them.
 *
 * Per token t the unit does: u_t and o_t from p_t, s_t (accumulated by the previous sweep),
 * then one sweep over the d_k state rows that writes S_t and accumulates p_{t+1}, s_{t+1}.
 */
#include <math.h>
#include <string.h>

#include "convert.h"
#include "internal.h"
#include "la_common.h"

/* Query heads whose readouts ride along the main sweep. Larger GQA groups are handled in
 * groups of this size: each extra group reads the old state in a read-only sweep and writes
 * its outputs at once, so scratch does not depend on the group size (la_params has no n_q). */
#define LA_SCALAR_GROUP 8

/* One staged token: everything the sweeps need, in fp32. */
typedef struct la_token {
  float* k;    /* d_k: k_t */
  float* a;    /* d_k: exp(g_t) per row (1 when not gated) */
  float* ak;   /* d_k: a_t .* k_t */
  float* aq;   /* GROUP x d_k: a_t .* scale q_t,h for the first group of heads */
  float* kq;   /* GROUP: k_t . scale q_t,h */
  float beta;  /* beta_t (delta rules) */
} la_token;

typedef struct la_scalar_layout {
  la_token tok[2]; /* ring: current token, next token */
  float* p;        /* ncols: retrieval p_t */
  float* u;        /* ncols: update row u_t */
  float* s;        /* GROUP x ncols: readouts s_t,h of the first group */
  float* xaq;      /* GROUP x d_k: an extra group's a_t .* scale q */
  float* xkq;      /* GROUP */
  float* xs;       /* GROUP x ncols: an extra group's readouts */
} la_scalar_layout;

static size_t la_scalar_layout_make(const la_params* p, int64_t ncols, void* scratch, la_scalar_layout* L) {
  la_arena a = {(char*)scratch, 0};
  const int64_t dk = p->d_k, G = LA_SCALAR_GROUP;
  for (int i = 0; i < 2; i++) {
    L->tok[i].k = la_arena_floats(&a, dk);
    L->tok[i].a = la_arena_floats(&a, dk);
    L->tok[i].ak = la_arena_floats(&a, dk);
    L->tok[i].aq = la_arena_floats(&a, G * dk);
    L->tok[i].kq = la_arena_floats(&a, G);
  }
  L->p = la_arena_floats(&a, ncols);
  L->u = la_arena_floats(&a, ncols);
  L->s = la_arena_floats(&a, G * ncols);
  L->xaq = la_arena_floats(&a, G * dk);
  L->xkq = la_arena_floats(&a, G);
  L->xs = la_arena_floats(&a, G * ncols);
  return a.used;
}

static size_t la_scalar_scratch(const la_params* p, int64_t ncols) {
  la_scalar_layout L;
  return la_scalar_layout_make(p, ncols, NULL, &L);
}

/* aq_h = a .* scale q_t,h and kq_h = k . scale q_t,h for heads [h0, h1). */
static void stage_heads(const la_params* p, const la_unit* u, int64_t t, const float* a, const float* k,
                        int32_t h0, int32_t h1, float* aq, float* kqs) {
  const linattn_dtype dt = p->io_dtype;
  const int64_t dk = p->d_k;
  for (int32_t h = h0; h < h1; h++) {
    const void* qt = la_io_at(u->q, t * u->q_token_stride + h * u->q_head_stride, dt);
    float* aqh = aq + (h - h0) * dk;
    float kq = 0.0f;
    for (int64_t i = 0; i < dk; i++) {
      const float qs = p->scale * linattn_load_f32(qt, i, dt);
      kq += k[i] * qs;
      aqh[i] = a[i] * qs;
    }
    kqs[h - h0] = kq;
  }
}

static void stage_token(const la_params* p, const la_unit* u, int64_t t, la_token* s) {
  const linattn_dtype dt = p->io_dtype;
  const int64_t dk = p->d_k;
  const void* kt = la_io_at(u->k, t * u->k_token_stride, dt);
  for (int64_t i = 0; i < dk; i++) s->k[i] = linattn_load_f32(kt, i, dt);
  if (p->gated) {
    const void* gt = la_io_at(u->decay, t * u->decay_token_stride, dt);
    if (p->decay_kind == LA_DECAY_PER_KEY) {
      for (int64_t i = 0; i < dk; i++) s->a[i] = expf(linattn_load_f32(gt, i, dt));
    } else {
      const float a = expf(linattn_load_f32(gt, 0, dt));
      for (int64_t i = 0; i < dk; i++) s->a[i] = a;
    }
    for (int64_t i = 0; i < dk; i++) s->ak[i] = s->a[i] * s->k[i];
  } else {
    for (int64_t i = 0; i < dk; i++) s->a[i] = 1.0f; /* 1 * x == x exactly */
    for (int64_t i = 0; i < dk; i++) s->ak[i] = s->k[i];
  }
  const int32_t g = u->n_q < LA_SCALAR_GROUP ? u->n_q : LA_SCALAR_GROUP;
  stage_heads(p, u, t, s->a, s->k, 0, g, s->aq, s->kq);
  s->beta = p->delta ? linattn_load_f32(la_io_at(u->beta, t * u->beta_token_stride, dt), 0, dt) : 1.0f;
}

/* o_t,h = s_h + kq_h u for heads [h0, h0 + n), written to the output rows. */
static void write_outputs(const la_params* p, const la_unit* u, int64_t t, int32_t h0, int32_t n,
                          const float* s, const float* kq, const float* uu) {
  const linattn_dtype dt = p->io_dtype;
  const int64_t nc = u->ncols;
  for (int32_t h = 0; h < n; h++) {
    void* ot = la_io_at_mut(u->out, t * u->out_token_stride + (h0 + h) * u->out_head_stride, dt);
    const float* sh = s + h * nc;
    for (int64_t j = 0; j < nc; j++) linattn_store_f32(ot, j, dt, sh[j] + kq[h] * uu[j]);
  }
}

/* s_h += row * w_h for one state row (h < nh); p += row * wp when wp != NULL. */
static inline void accumulate_row(int64_t nc, const float* restrict row, const float* wp, float* restrict pacc,
                                  int32_t nh, const float* w, int64_t w_stride, float* restrict sacc) {
  if (wp) {
    const float c = *wp;
    for (int64_t j = 0; j < nc; j++) pacc[j] += row[j] * c;
  }
  for (int32_t h = 0; h < nh; h++) {
    const float c = w[h * w_stride];
    float* restrict sh = sacc + h * nc;
    for (int64_t j = 0; j < nc; j++) sh[j] += row[j] * c;
  }
}

/* Read-only sweep: p = src^T ak (if ak), s_h = src^T aq_h for nh heads. */
static void accumulate_only(const la_params* p, int64_t nc, const float* src, int64_t ld, const float* ak,
                            float* pacc, int32_t nh, const float* aq, float* sacc) {
  if (ak)
    for (int64_t j = 0; j < nc; j++) pacc[j] = 0.0f;
  for (int64_t j = 0; j < nh * nc; j++) sacc[j] = 0.0f;
  for (int64_t i = 0; i < p->d_k; i++)
    accumulate_row(nc, src + i * ld, ak ? ak + i : NULL, pacc, nh, aq + i, p->d_k, sacc);
}

/* S_t = a .* S_{t-1} + k u^T written to dst; if nx != NULL also p, s of the next token. */
static void update_sweep(const la_params* p, int64_t nc, int32_t nh, const float* src, float* dst, int64_t ld,
                         const la_token* cur, const float* restrict uu, const la_token* nx, float* pacc,
                         float* sacc) {
  if (nx) {
    for (int64_t j = 0; j < nc; j++) pacc[j] = 0.0f;
    for (int64_t j = 0; j < nh * nc; j++) sacc[j] = 0.0f;
  }
  for (int64_t i = 0; i < p->d_k; i++) {
    const float* restrict srow = src + i * ld;
    float* restrict drow = dst + i * ld;
    const float ai = cur->a[i], ki = cur->k[i];
    if (p->gated) {
      for (int64_t j = 0; j < nc; j++) drow[j] = ai * srow[j] + ki * uu[j];
    } else {
      for (int64_t j = 0; j < nc; j++) drow[j] = srow[j] + ki * uu[j];
    }
    if (nx) accumulate_row(nc, drow, p->delta ? nx->ak + i : NULL, pacc, nh, nx->aq + i, p->d_k, sacc);
  }
}

static void la_scalar_run(const la_params* p, const la_unit* u, void* scratch) {
  if (p->T <= 0) {
    la_copy_state_only(p, u);
    return;
  }
  linattn_fpenv env;
  linattn_fpenv_enter_ftz(&env);
  const linattn_dtype dt = p->io_dtype;
  const int64_t nc = u->ncols, ld = u->ld_state, T = p->T;
  const int32_t nq = u->n_q, g0 = nq < LA_SCALAR_GROUP ? nq : LA_SCALAR_GROUP;
  la_scalar_layout L;
  la_scalar_layout_make(p, nc, scratch, &L);

  float* S = u->state_out;
  const float* src = u->state_in;
  if (!src) {
    for (int64_t i = 0; i < p->d_k; i++) memset(S + i * ld, 0, sizeof(float) * (size_t)nc);
    src = S;
  }
  stage_token(p, u, 0, &L.tok[0]);
  accumulate_only(p, nc, src, ld, p->delta ? L.tok[0].ak : NULL, L.p, g0, L.tok[0].aq, L.s);
  for (int64_t t = 0; t < T; t++) {
    const la_token* cur = &L.tok[t & 1];
    la_token* nx = t + 1 < T ? &L.tok[(t + 1) & 1] : NULL;
    if (nx) stage_token(p, u, t + 1, nx);

    const void* vt = la_io_at(u->v, t * u->v_token_stride, dt);
    for (int64_t j = 0; j < nc; j++) {
      const float v = linattn_load_f32(vt, j, dt);
      L.u[j] = p->delta ? cur->beta * (v - L.p[j]) : v;
    }
    write_outputs(p, u, t, 0, g0, L.s, cur->kq, L.u);
    /* Heads beyond the first group: read the old state S_{t-1} before it is overwritten. */
    for (int32_t h0 = g0; h0 < nq; h0 += LA_SCALAR_GROUP) {
      const int32_t nh = nq - h0 < LA_SCALAR_GROUP ? nq - h0 : LA_SCALAR_GROUP;
      stage_heads(p, u, t, cur->a, cur->k, h0, h0 + nh, L.xaq, L.xkq);
      accumulate_only(p, nc, src, ld, NULL, NULL, nh, L.xaq, L.xs);
      write_outputs(p, u, t, h0, nh, L.xs, L.xkq, L.u);
    }
    update_sweep(p, nc, g0, src, S, ld, cur, L.u, nx, L.p, L.s);
    src = S;
  }
  linattn_fpenv_leave(&env);
}

const la_kernel linattn_la_scalar = {
    .name = "la_scalar",
    .run = la_scalar_run,
    .scratch_bytes = la_scalar_scratch,
    .block_cols = 64,
    .handles_io_dtype = {false, true, true, true},
};
