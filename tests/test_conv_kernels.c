/*
 * CausalConvWithState micro-kernel families (every family of src/kernels/registry.inc that this
 * build and CPU run), called unit by unit as the operator layer does (batch b, channels
 * [c0, c0 + nc), private poisoned scratch), against a float64 oracle written here and against linattn_conv_reference.
 *
 * Sweep: K in {1,2,3,4,5,7} x L in {0,1,2,K-2,K-1,K,17,1000} x dilation {1,3} x bias x past x
 * activation x dtype x layout; C not a multiple of the vector widths; outer strides padded on
 * odd cases. Every output and state buffer is poisoned (NaN pattern) around and inside; after a
 * run every logical element must be written and nothing else touched.
 * Per case and family:
 *  - output vs oracle within the bound below, present_state bit-exact vs oracle;
 *  - output vs the reference kernel within the same bound, present_state bit-exact; on "grid"
 *    data (fp32 sums exact) the conv result must match the reference bit for bit;
 *  - bit-identical results for other channel splits (1, 5, 19 channels per unit, units run in
 *    random order; one unit of all channels when C exceeds block_channels), in place (present == past), present NULL, the sequence cut in two calls
 *    with the state carried, and token-by-token decode (L <= 17).
 * Tolerance. p exact conv, acc = (K+2) 2^-24 (|bias| + sum|w x|) bounds the fp32 accumulation:
 *   none: |y - ref| <= acc + ulp_T(|p| + acc)   (+ ulp_T(|p - bias| + acc) for fp16 with a bias,
 *         whose sum is rounded to fp16 before the bias add, as in the reference)
 *   silu: |y - ref| <= 1.1 (acc + ulp_T(|p| + acc)) + ulp_T(|ref|) + 8 ulp_f32(|ref|)
 * SiLU accuracy on its own: fp32, w = 1, every v on a fine grid of [-100, 100], specials and
 * wide random magnitudes: relative error <= 1e-6 vs float64 and vs the expf formula.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#if defined(__x86_64__) || defined(_M_X64)
#include <xmmintrin.h> /* _mm_getcsr, _mm_setcsr */
#endif

#include "convert.h"
#include "internal.h"
#include "testkit.h"

typedef struct family { const char* name; const conv_kernel* k; } family;

/* The fused families this build and CPU run: every family of the kernel registry but the
 * reference (the oracle here). */
static int get_families(family* f, int max) {
  if (linattn_isa_count() > max) tk_fatal("%d kernel families: raise the families array", linattn_isa_count());
  int n = 0;
  for (int isa = LINATTN_ISA_REFERENCE + 1; isa <= linattn_isa_count(); isa++) {
    const kernel_table* kt = linattn_kernels_for_isa((linattn_isa)isa);
    if (kt) f[n++] = (family){linattn_isa_name(kt->isa), kt->conv};
  }
  return n;
}

/* ------------------------------------------------------------------ guarded buffers */

#define GUARD 40 /* elements of poison on each side */

typedef struct gbuf {
  linattn_dtype dt;
  int64_t n;             /* elements between the guards */
  unsigned char* mem;
  void* data;            /* element 0 */
} gbuf;

static size_t esz(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 4 : 2; }

static uint32_t get_bits(const void* base, int64_t i, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) { uint32_t u; memcpy(&u, (const char*)base + 4 * i, 4); return u; }
  return ((const uint16_t*)base)[i];
}
static void put_bits(void* base, int64_t i, linattn_dtype dt, uint32_t u) {
  if (dt == LINATTN_DTYPE_F32) memcpy((char*)base + 4 * i, &u, 4);
  else ((uint16_t*)base)[i] = (uint16_t)u;
}

static gbuf gb_alloc(linattn_dtype dt, int64_t n) {
  gbuf g = {dt, n, NULL, NULL};
  g.mem = tk_aligned_alloc(64, (size_t)(n + 2 * GUARD) * esz(dt) + 64);
  g.data = g.mem + GUARD * esz(dt);
  return g;
}
static void gb_poison(gbuf* g) {
  for (int64_t i = -GUARD; i < g->n + GUARD; i++) put_bits(g->data, i, g->dt, tk_poison_bits(g->dt));
}
static void gb_free(gbuf* g) { tk_aligned_free(g->mem); g->mem = NULL; }

/* ------------------------------------------------------------------ cases */

typedef struct conv_case {
  linattn_dtype dt;
  bool cl, bias, past, silu, grid, strided;
  int64_t B, C, L, K, dil;
} conv_case;

/* One layout of a (B, C, len) tensor: strides and element count (allocation). */
typedef struct lay { int64_t sb, sc, st, n; } lay;

static lay io_layout(const conv_case* cs, int64_t len, int64_t pad) {
  lay l;
  if (cs->cl) {
    l.sc = 1; l.st = cs->C + pad; l.sb = len * l.st + pad;
  } else {
    l.st = 1; l.sc = len + pad; l.sb = cs->C * l.sc + pad;
  }
  l.n = cs->B * l.sb;
  return l;
}
static lay state_layout(const conv_case* cs, int64_t S) {
  lay l;
  if (cs->cl) { l.sc = 1; l.st = cs->C; }
  else { l.st = 1; l.sc = S; }
  l.sb = S * cs->C;
  l.n = cs->B * l.sb;
  return l;
}
static int64_t at(const lay* l, int64_t b, int64_t c, int64_t t) { return b * l->sb + c * l->sc + t * l->st; }

typedef struct conv_data {
  conv_case cs;
  int64_t S;
  lay xl, yl, sl;
  gbuf x, w, bias, past;
  double *xd, *wd, *bd, *pd;             /* canonical [b][c][t] values the kernels see */
  double *yo, *pre, *sum, *mag, *presento; /* oracle; sum = pre without the bias */
} conv_data;

static double draw(tk_rng* r, const conv_case* cs) {
  if (cs->grid) return (double)(tk_below(r, 255) - 127) / 16.0; /* products and sums exact in fp32 */
  return tk_normal(r);
}

static void oracle(conv_data* d) {
  const conv_case* cs = &d->cs;
  const int64_t C = cs->C, L = cs->L, K = cs->K, S = d->S;
  for (int64_t b = 0; b < cs->B; b++)
    for (int64_t c = 0; c < C; c++) {
      const double* x = d->xd + (b * C + c) * L;
      const double* past = cs->past ? d->pd + (b * C + c) * S : NULL;
#define PADDED(q) ((q) < S ? (past ? past[(q)] : 0.0) : x[(q) - S])
      for (int64_t t = 0; t < L; t++) {
        double acc = 0, mag = 0;
        for (int64_t j = 0; j < K; j++) {
          double v = d->wd[c * K + j] * PADDED(t + j * cs->dil);
          acc += v;
          mag += fabs(v);
        }
        const int64_t o = (b * C + c) * L + t;
        d->sum[o] = acc;
        double v;
        if (cs->bias && cs->dt == LINATTN_DTYPE_F16) { /* fp16 matmul result, then an fp16 add */
          v = tk_round(tk_round(acc, cs->dt) + d->bd[c], cs->dt);
          acc += d->bd[c], mag += fabs(d->bd[c]);
        } else {
          if (cs->bias) acc += d->bd[c], mag += fabs(d->bd[c]);
          v = tk_round(acc, cs->dt);
        }
        d->pre[o] = acc;
        d->mag[o] = mag;
        d->yo[o] = cs->silu ? tk_round(v / (1.0 + exp(-v)), cs->dt) : v;
      }
      for (int64_t s = 0; s < S; s++) d->presento[(b * C + c) * S + s] = PADDED(L + s);
#undef PADDED
    }
}

static void data_make(conv_data* d, const conv_case* cs, tk_rng* r) {
  memset(d, 0, sizeof *d);
  d->cs = *cs;
  const int64_t B = cs->B, C = cs->C, L = cs->L, K = cs->K, S = (K - 1) * cs->dil;
  d->S = S;
  d->xl = io_layout(cs, L, cs->strided ? 3 : 0);
  d->yl = io_layout(cs, L, cs->strided ? 5 : 0);
  d->sl = state_layout(cs, S);
  d->x = gb_alloc(cs->dt, d->xl.n);
  d->w = gb_alloc(cs->dt, C * K);
  d->bias = gb_alloc(cs->dt, C);
  d->past = gb_alloc(cs->dt, d->sl.n);
  gb_poison(&d->x);
  gb_poison(&d->past);
  d->xd = tk_dalloc(B * C * L + 1);
  d->wd = tk_dalloc(C * K + 1);
  d->bd = tk_dalloc(C + 1);
  d->pd = tk_dalloc(B * C * S + 1);
  d->yo = tk_dalloc(B * C * L + 1);
  d->pre = tk_dalloc(B * C * L + 1);
  d->sum = tk_dalloc(B * C * L + 1);
  d->mag = tk_dalloc(B * C * L + 1);
  d->presento = tk_dalloc(B * C * S + 1);
  for (int64_t b = 0; b < B; b++)
    for (int64_t c = 0; c < C; c++) {
      for (int64_t t = 0; t < L; t++)
        d->xd[(b * C + c) * L + t] = tk_store(d->x.data, at(&d->xl, b, c, t), cs->dt, draw(r, cs));
      for (int64_t s = 0; s < S; s++)
        d->pd[(b * C + c) * S + s] = tk_store(d->past.data, at(&d->sl, b, c, s), cs->dt, draw(r, cs));
    }
  for (int64_t i = 0; i < C * K; i++) d->wd[i] = tk_store(d->w.data, i, cs->dt, cs->grid ? draw(r, cs) : tk_normal(r) * 0.5);
  for (int64_t c = 0; c < C; c++) d->bd[c] = tk_store(d->bias.data, c, cs->dt, draw(r, cs));
  oracle(d);
}

static void data_free(conv_data* d) {
  gb_free(&d->x); gb_free(&d->w); gb_free(&d->bias); gb_free(&d->past);
  free(d->xd); free(d->wd); free(d->bd); free(d->pd);
  free(d->yo); free(d->pre); free(d->sum); free(d->mag); free(d->presento);
}

/* Parameters for a call over time steps [t0, t0 + len) of the case's input. */
static conv_params make_params(const conv_data* d, int64_t t0, int64_t len, const void* past, gbuf* y,
                               void* present) {
  const conv_case* cs = &d->cs;
  conv_params p;
  memset(&p, 0, sizeof p);
  p.dtype = cs->dt;
  p.activation = cs->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  p.channels_last = cs->cl;
  p.B = cs->B; p.C = cs->C; p.L = len; p.K = cs->K; p.dilation = cs->dil; p.S = d->S;
  p.x = (const char*)d->x.data + t0 * d->xl.st * (int64_t)esz(cs->dt);
  p.x_sb = d->xl.sb; p.x_sc = d->xl.sc; p.x_st = d->xl.st;
  p.w = d->w.data;
  p.bias = cs->bias ? d->bias.data : NULL;
  p.past = past;
  p.s_sb = d->sl.sb; p.s_sc = d->sl.sc; p.s_st = d->sl.st;
  p.y = (char*)y->data + t0 * d->yl.st * (int64_t)esz(cs->dt);
  p.y_sb = d->yl.sb; p.y_sc = d->yl.sc; p.y_st = d->yl.st;
  p.present = present;
  return p;
}

/* Runs every unit (b, channel block) in a random order, each with fresh poisoned scratch. */
static void run_units(const conv_kernel* k, const conv_params* p, int64_t block, tk_rng* r) {
  if (block <= 0) block = p->C;
  const int64_t nblk = p->C == 0 ? 0 : (p->C + block - 1) / block, nu = p->B * nblk;
  if (nu == 0) return;
  size_t sb = k->scratch_bytes(p, block < p->C ? block : p->C);
  unsigned char* scratch = tk_aligned_alloc(64, sb + 64);
  int* order = tk_xmalloc(sizeof(int) * (size_t)nu);
  for (int i = 0; i < nu; i++) order[i] = i;
  tk_shuffle(r, order, (int)nu);
  for (int64_t i = 0; i < nu; i++) {
    const int64_t u = order[i], b = u / nblk, c0 = (u % nblk) * block;
    const int64_t nc = p->C - c0 < block ? p->C - c0 : block;
    memset(scratch, 0xff, sb); /* NaN everywhere: a kernel must not read scratch it did not write */
    k->run(p, b, c0, nc, scratch);
  }
  free(order);
  tk_aligned_free(scratch);
}

/* ------------------------------------------------------------------ checks */

static double tol_of(const conv_case* cs, double pre, double sum, double mag, double ref) {
  double acc = (double)(cs->K + 2) * ldexp(1.0, -24) * mag;
  double e = acc + tk_ulp(fabs(pre) + acc, cs->dt);
  if (cs->bias && cs->dt == LINATTN_DTYPE_F16) e += tk_ulp(fabs(sum) + acc, cs->dt); /* two roundings */
  if (cs->dt == LINATTN_DTYPE_F32) e = acc + ldexp(1.0, -24) * fabs(pre) + 1e-45;
  if (!cs->silu) return e;
  return 1.1 * e + tk_ulp(fabs(ref), cs->dt) + 8.0 * tk_ulp(fabs(ref), LINATTN_DTYPE_F32) + 1e-38;
}

/* Output y (layout yl) vs canonical expected values; every element written, gaps untouched. */
static void check_output(const conv_data* d, const gbuf* y, const double* expect, const char* what) {
  const conv_case* cs = &d->cs;
  const uint32_t poison = tk_poison_bits(cs->dt);
  unsigned char* logical = tk_xcalloc((size_t)(y->n + 1), 1);
  int64_t bad = 0, unwritten = 0, first = -1;
  double worst = 0;
  for (int64_t b = 0; b < cs->B; b++)
    for (int64_t c = 0; c < cs->C; c++)
      for (int64_t t = 0; t < cs->L; t++) {
        const int64_t off = at(&d->yl, b, c, t), o = (b * cs->C + c) * cs->L + t;
        logical[off] = 1;
        if (get_bits(y->data, off, cs->dt) == poison) { unwritten++; continue; }
        double v = tk_load(y->data, off, cs->dt), e = expect[o];
        double tol = tol_of(cs, d->pre[o], d->sum[o], d->mag[o], e);
        double err = fabs(v - e);
        if (!(err <= tol)) {
          if (first < 0) first = o;
          bad++;
        }
        if (tol > 0 && err / tol > worst) worst = err / tol;
      }
  int64_t touched = 0;
  for (int64_t i = -GUARD; i < y->n + GUARD; i++)
    if ((i < 0 || i >= y->n || !logical[i]) && get_bits(y->data, i, cs->dt) != poison) touched++;
  free(logical);
  tk_check(unwritten == 0, "%s: %lld output elements not written", what, (long long)unwritten);
  tk_check(touched == 0, "%s: %lld elements outside the output written", what, (long long)touched);
  if (first >= 0) {
    int64_t t = first % cs->L, c = (first / cs->L) % cs->C, b = first / cs->L / cs->C;
    tk_check(false, "%s: %lld outputs out of tolerance; first (b=%lld c=%lld t=%lld) got %.9g expected %.9g (pre %.9g)",
             what, (long long)bad, (long long)b, (long long)c, (long long)t,
             tk_load(y->data, at(&d->yl, b, c, t), cs->dt), expect[first], d->pre[first]);
  } else {
    tk_check(true, "%s", what);
  }
}

/* Present state (packed) vs canonical expected values, bit for bit; guards untouched. */
static void check_present(const conv_data* d, const gbuf* st, const double* expect, const char* what) {
  const conv_case* cs = &d->cs;
  const uint32_t poison = tk_poison_bits(cs->dt);
  int64_t bad = 0, touched = 0;
  for (int64_t b = 0; b < cs->B; b++)
    for (int64_t c = 0; c < cs->C; c++)
      for (int64_t s = 0; s < d->S; s++) {
        const int64_t off = at(&d->sl, b, c, s);
        const uint32_t want = tk_encode(expect[(b * cs->C + c) * d->S + s], cs->dt);
        if (get_bits(st->data, off, cs->dt) != want) bad++;
      }
  for (int64_t i = -GUARD; i < 0; i++) touched += get_bits(st->data, i, cs->dt) != poison;
  for (int64_t i = st->n; i < st->n + GUARD; i++) touched += get_bits(st->data, i, cs->dt) != poison;
  tk_check(bad == 0 && touched == 0, "%s: present_state: %lld wrong elements, %lld guard elements written", what,
           (long long)bad, (long long)touched);
}

static bool same_bits(const gbuf* a, const gbuf* b) {
  return a->n == b->n && memcmp(a->mem, b->mem, (size_t)(a->n + 2 * GUARD) * esz(a->dt)) == 0;
}

/* Reads an output buffer back into canonical order (for comparing with the reference). */
static void read_output(const conv_data* d, const gbuf* y, double* out) {
  const conv_case* cs = &d->cs;
  for (int64_t b = 0; b < cs->B; b++)
    for (int64_t c = 0; c < cs->C; c++)
      for (int64_t t = 0; t < cs->L; t++) out[(b * cs->C + c) * cs->L + t] = tk_load(y->data, at(&d->yl, b, c, t), cs->dt);
}

/* ------------------------------------------------------------------ one case, every family */

static gbuf fresh(linattn_dtype dt, int64_t n);
static gbuf copy_of(const gbuf* src);

/* A one-token case's batches as the sequences of a packed decode: each channel block's problems
 * (one per batch, in a random order) through run_seqs must give the bits run gave (yexp, pexp);
 * in place (state copied from the past), without present, with VBMI state moves. */
static void check_run_seqs(const conv_kernel* k, const char* name, const conv_data* d, const void* past, int64_t block,
                           bool in_place, bool no_present, bool vbmi, bool table, const gbuf* yexp, const gbuf* pexp,
                           tk_rng* r) {
  const conv_case* cs = &d->cs;
  const size_t es = esz(cs->dt);
  gbuf y = fresh(cs->dt, d->yl.n), pres = in_place ? copy_of(&d->past) : fresh(cs->dt, d->sl.n);
  const char* pa = in_place ? (const char*)pres.data : (const char*)past;
  conv_params base = make_params(d, 0, 1, pa, &y, no_present ? NULL : pres.data);
  base.decode_vbmi = vbmi;
  base.silu_table = table;
  if (block <= 0 || block > cs->C) block = cs->C;
  const size_t sb = k->scratch_bytes(&base, block);
  unsigned char* scratch = tk_aligned_alloc(64, sb + 64);
  conv_params* ps = tk_xmalloc(sizeof(conv_params) * (size_t)cs->B);
  int* order = tk_xmalloc(sizeof(int) * (size_t)cs->B);
  for (int i = 0; i < cs->B; i++) order[i] = i;
  for (int64_t c0 = 0; c0 < cs->C; c0 += block) {
    const int64_t nc = cs->C - c0 < block ? cs->C - c0 : block;
    tk_shuffle(r, order, (int)cs->B);
    for (int64_t i = 0; i < cs->B; i++) {
      const int64_t b = order[i];
      conv_params p = base;
      p.B = 1;
      p.C = nc;
      p.x = (const char*)base.x + (b * base.x_sb + c0 * base.x_sc) * (int64_t)es;
      p.y = (char*)base.y + (b * base.y_sb + c0 * base.y_sc) * (int64_t)es;
      p.w = (const char*)base.w + c0 * cs->K * (int64_t)es;
      p.bias = base.bias ? (const char*)base.bias + c0 * (int64_t)es : NULL;
      p.past = pa ? pa + (b * base.s_sb + c0 * base.s_sc) * (int64_t)es : NULL;
      p.present = base.present ? (char*)base.present + (b * base.s_sb + c0 * base.s_sc) * (int64_t)es : NULL;
      p.x_sb = p.y_sb = p.s_sb = 0;
      ps[i] = p;
    }
    memset(scratch, 0xff, sb);
    k->run_seqs(ps, cs->B, nc, scratch);
  }
  tk_check(same_bits(&y, yexp) && (no_present || same_bits(&pres, pexp)),
           "%s: run_seqs (block %lld%s%s%s%s) differs from run", name, (long long)block, in_place ? ", in place" : "",
           no_present ? ", no present" : "", vbmi ? ", vbmi" : "", table ? ", silu_table" : "");
  free(ps); free(order);
  tk_aligned_free(scratch);
  gb_free(&y); gb_free(&pres);
}

static gbuf fresh(linattn_dtype dt, int64_t n) {
  gbuf g = gb_alloc(dt, n);
  gb_poison(&g);
  return g;
}

static gbuf copy_of(const gbuf* src) {
  gbuf g = gb_alloc(src->dt, src->n);
  memcpy(g.mem, src->mem, (size_t)(src->n + 2 * GUARD) * esz(src->dt));
  return g;
}

static void run_case(const conv_case* cs, const family* fams, int nf, tk_rng* r) {
  conv_data d;
  data_make(&d, cs, r);
  const int64_t L = cs->L;
  const void* past = cs->past ? d.past.data : NULL;
  tk_context("%s %s B=%lld C=%lld L=%lld K=%lld dil=%lld bias=%d past=%d %s%s%s", tk_dtype_str(cs->dt),
             cs->cl ? "channels-last" : "channels-first", (long long)cs->B, (long long)cs->C, (long long)L,
             (long long)cs->K, (long long)cs->dil, cs->bias, cs->past, cs->silu ? "silu" : "none",
             cs->grid ? " grid-data" : "", cs->strided ? " strided" : "");

  gbuf yref = fresh(cs->dt, d.yl.n), pref = fresh(cs->dt, d.sl.n);
  conv_params p = make_params(&d, 0, L, past, &yref, pref.data);
  run_units(&linattn_conv_reference, &p, linattn_conv_reference.block_channels, r);
  check_output(&d, &yref, d.yo, "reference vs oracle");
  double* refv = tk_dalloc(cs->B * cs->C * L + 1);
  read_output(&d, &yref, refv);

  char what[96];
  for (int f = 0; f < nf; f++) {
    const conv_kernel* k = fams[f].k;
    gbuf y = fresh(cs->dt, d.yl.n), pres = fresh(cs->dt, d.sl.n);
    p = make_params(&d, 0, L, past, &y, pres.data);
    run_units(k, &p, k->block_channels, r);
    snprintf(what, sizeof what, "%s vs oracle", fams[f].name);
    check_output(&d, &y, d.yo, what);
    check_present(&d, &pres, d.presento, what);
    snprintf(what, sizeof what, "%s vs reference", fams[f].name);
    check_output(&d, &y, refv, what);
    tk_check(same_bits(&pres, &pref), "%s: present_state differs from the reference's", fams[f].name);
    if (cs->grid && !cs->silu)
      tk_check(same_bits(&y, &yref), "%s: exact-arithmetic data: output differs from the reference bit for bit",
               fams[f].name);

    static const int64_t blocks[] = {1, 5, 19};
    for (int i = 0; i < 3; i++) {
      if (blocks[i] >= cs->C) continue;
      gbuf y2 = fresh(cs->dt, d.yl.n), p2 = fresh(cs->dt, d.sl.n);
      p = make_params(&d, 0, L, past, &y2, p2.data);
      run_units(k, &p, blocks[i], r);
      tk_check(same_bits(&y2, &y) && same_bits(&p2, &pres), "%s: %lld channels per unit changes the bits",
               fams[f].name, (long long)blocks[i]);
      gb_free(&y2); gb_free(&p2);
    }
    if (cs->C > k->block_channels) { /* whole rows in one unit (the driver's choice for channels-last prefill) */
      gbuf y8 = fresh(cs->dt, d.yl.n), p8 = fresh(cs->dt, d.sl.n);
      p = make_params(&d, 0, L, past, &y8, p8.data);
      run_units(k, &p, cs->C, r);
      tk_check(same_bits(&y8, &y) && same_bits(&p8, &pres), "%s: one unit of all %lld channels changes the bits",
               fams[f].name, (long long)cs->C);
      gb_free(&y8); gb_free(&p8);
    }
    if (cs->past) { /* in place */
      gbuf st = copy_of(&d.past), y3 = fresh(cs->dt, d.yl.n);
      p = make_params(&d, 0, L, st.data, &y3, st.data);
      run_units(k, &p, k->block_channels, r);
      tk_check(same_bits(&y3, &y) && same_bits(&st, &pres), "%s: in-place state differs", fams[f].name);
      gb_free(&st); gb_free(&y3);
    }
    if (linattn_cpu_has_avx512vbmi()) { /* AVX-512 16-bit state moves by VBMI byte permutes: the same bits */
      gbuf yv = fresh(cs->dt, d.yl.n), pv = fresh(cs->dt, d.sl.n);
      p = make_params(&d, 0, L, past, &yv, pv.data);
      p.decode_vbmi = true;
      run_units(k, &p, k->block_channels, r);
      tk_check(same_bits(&yv, &y) && same_bits(&pv, &pres), "%s: decode_vbmi changes the bits", fams[f].name);
      gb_free(&yv); gb_free(&pv);
    }
    { /* AVX-512 16-bit SiLU by table lookup (conv.silu_table): the same bits */
      gbuf yt = fresh(cs->dt, d.yl.n), pt = fresh(cs->dt, d.sl.n);
      p = make_params(&d, 0, L, past, &yt, pt.data);
      p.silu_table = true;
      p.cf_bf16_pairs = tk_below(r, 2);
      run_units(k, &p, k->block_channels, r);
      tk_check(same_bits(&yt, &y) && same_bits(&pt, &pres), "%s: silu_table changes the bits", fams[f].name);
      gb_free(&yt); gb_free(&pt);
    }
    if (L == 1) { /* the sequences of a packed decode, together */
      check_run_seqs(k, fams[f].name, &d, past, k->block_channels, false, false, false, false, &y, &pres, r);
      check_run_seqs(k, fams[f].name, &d, past, 5, false, false, false, false, &y, &pres, r);
      if (cs->past) check_run_seqs(k, fams[f].name, &d, past, 19, true, false, false, false, &y, &pres, r);
      check_run_seqs(k, fams[f].name, &d, past, k->block_channels, false, true, false, false, &y, &pres, r);
      check_run_seqs(k, fams[f].name, &d, past, 7, cs->past, false, false, true, &y, &pres, r);
      if (linattn_cpu_has_avx512vbmi())
        check_run_seqs(k, fams[f].name, &d, past, k->block_channels, cs->past, false, true, tk_below(r, 2), &y, &pres, r);
    }
    { /* present not wanted */
      gbuf y4 = fresh(cs->dt, d.yl.n);
      p = make_params(&d, 0, L, past, &y4, NULL);
      run_units(k, &p, k->block_channels, r);
      tk_check(same_bits(&y4, &y), "%s: output differs with present_state NULL", fams[f].name);
      gb_free(&y4);
    }
    { /* output streamed past the caches (the API's choice for large outputs): same bits */
      gbuf y7 = fresh(cs->dt, d.yl.n), p7 = fresh(cs->dt, d.sl.n);
      p = make_params(&d, 0, L, past, &y7, p7.data);
      p.stream_output = p.stream_rows = true;
      run_units(k, &p, k->block_channels, r);
      tk_check(same_bits(&y7, &y) && same_bits(&p7, &pres), "%s: output differs with streaming stores", fams[f].name);
      gb_free(&y7); gb_free(&p7);
    }
    if (L >= 2) { /* two calls with the state carried */
      const int64_t L1 = 1 + tk_below(r, L - 1);
      gbuf mid = fresh(cs->dt, d.sl.n), fin = fresh(cs->dt, d.sl.n), y5 = fresh(cs->dt, d.yl.n);
      p = make_params(&d, 0, L1, past, &y5, mid.data);
      run_units(k, &p, k->block_channels, r);
      p = make_params(&d, L1, L - L1, mid.data, &y5, fin.data);
      run_units(k, &p, k->block_channels, r);
      tk_check(same_bits(&y5, &y) && same_bits(&fin, &pres), "%s: split in calls of %lld + %lld steps differs",
               fams[f].name, (long long)L1, (long long)(L - L1));
      /* again with streamed output: the second call's output starts L1 rows in, at any
       * alignment (channels-last columns then start with a partial one up to the boundary) */
      gbuf y9 = fresh(cs->dt, d.yl.n), fin9 = fresh(cs->dt, d.sl.n);
      p = make_params(&d, 0, L1, past, &y9, mid.data);
      p.stream_output = p.stream_rows = true;
      run_units(k, &p, k->block_channels, r);
      p = make_params(&d, L1, L - L1, mid.data, &y9, fin9.data);
      p.stream_output = p.stream_rows = true;
      run_units(k, &p, k->block_channels, r);
      tk_check(same_bits(&y9, &y) && same_bits(&fin9, &pres), "%s: streamed split in calls of %lld + %lld steps differs",
               fams[f].name, (long long)L1, (long long)(L - L1));
      gb_free(&y9); gb_free(&fin9);
      gb_free(&mid); gb_free(&fin); gb_free(&y5);
    }
    if (L >= 2 && L <= 17) { /* token-by-token decode, state updated in place */
      gbuf st = cs->past ? copy_of(&d.past) : fresh(cs->dt, d.sl.n), y6 = fresh(cs->dt, d.yl.n);
      for (int64_t t = 0; t < L; t++) {
        p = make_params(&d, t, 1, (t > 0 || cs->past) ? st.data : NULL, &y6, st.data);
        run_units(k, &p, k->block_channels, r);
      }
      tk_check(same_bits(&y6, &y) && same_bits(&st, &pres), "%s: token-by-token decode differs", fams[f].name);
      gb_free(&st); gb_free(&y6);
    }
    gb_free(&y); gb_free(&pres);
  }
  free(refv);
  gb_free(&yref); gb_free(&pref);
  data_free(&d);
}

/* ------------------------------------------------------------------ SiLU accuracy, specials */

static void silu_accuracy(const family* fams, int nf, tk_rng* r) {
  const int64_t ngrid = 200 * 128 + 1, nspec = 32, nrand = 6000, n = ngrid + nspec + nrand;
  float* x = tk_xmalloc(sizeof(float) * (size_t)n);
  int64_t i = 0;
  for (int64_t g = 0; g < ngrid; g++) x[i++] = (float)(-100.0 + (double)g / 128.0);
  const float spec[32] = {0.0f, -0.0f, INFINITY, -INFINITY, NAN, -NAN, 3.4028235e38f, -3.4028235e38f,
                          1.1754944e-38f, -1.1754944e-38f, 1e-40f, -1e-40f, 88.72f, -88.72f, 88.73f, -88.73f,
                          89.0f, -89.0f, 87.3f, -87.3f, 103.9f, -103.9f, 104.1f, -104.1f,
                          120.0f, -120.0f, 150.0f, -150.0f, 1e-7f, -1e-7f, 0.3465736f, -0.3465736f};
  for (int64_t s = 0; s < nspec; s++) x[i++] = spec[s];
  for (int64_t s = 0; s < nrand; s++) {
    double m = ldexp(1.0 + tk_uniform(r), (int)tk_below(r, 140) - 133);
    x[i++] = (float)((tk_below(r, 2) ? -1.0 : 1.0) * m);
  }
  const float one = 1.0f;
  float* y = tk_xmalloc(sizeof(float) * (size_t)n);
  for (int f = 0; f < nf; f++) {
    conv_params p;
    memset(&p, 0, sizeof p);
    p.dtype = LINATTN_DTYPE_F32; p.activation = LINATTN_ACTIVATION_SILU;
    p.B = 1; p.C = 1; p.L = n; p.K = 1; p.dilation = 1; p.S = 0;
    p.x = x; p.x_sb = n; p.x_sc = n; p.x_st = 1;
    p.w = &one;
    p.y = y; p.y_sb = n; p.y_sc = n; p.y_st = 1;
    for (int64_t j = 0; j < n; j++) y[j] = NAN;
    run_units(fams[f].k, &p, 1, r);
    double worst_d = 0, worst_f = 0;
    int64_t bad = 0, first = -1;
    for (int64_t j = 0; j < n; j++) {
      const double v = x[j], e = v / (1.0 + exp(-v));
      const float ef = x[j] * (1.0f / (1.0f + expf(-x[j])));
      bool ok;
      if (isnan(e) || isnan(ef)) ok = isnan(y[j]);
      else if (isinf(e)) ok = y[j] == (float)e;
      else {
        double ed = fabs((double)y[j] - e), eff = fabs((double)y[j] - (double)ef);
        ok = ed <= 1e-6 * fabs(e) + 1e-36 && eff <= 1e-6 * fabs((double)ef) + 1e-36;
        if (fabs(e) > 1e-30) {
          if (ed / fabs(e) > worst_d) worst_d = ed / fabs(e);
          if (ef != 0 && eff / fabs((double)ef) > worst_f) worst_f = eff / fabs((double)ef);
        }
      }
      if (!ok && bad++ == 0) first = j;
    }
    tk_check(bad == 0, "%s: SiLU: %lld of %lld values off; first x=%.9g got %.9g want %.9g", fams[f].name,
             (long long)bad, (long long)n, first >= 0 ? x[first] : 0.0, first >= 0 ? y[first] : 0.0,
             first >= 0 ? x[first] / (1.0 + exp(-(double)x[first])) : 0.0);
    tk_note("%s: SiLU max relative error %.3g vs float64, %.3g vs the expf formula", fams[f].name, worst_d, worst_f);
  }
  free(x);
  free(y);
}

/* 16-bit specials (w = 1, K = 1): none -> the input itself (NaN stays NaN); silu -> the
 * reference's value within one T spacing, NaN and infinities exactly. */
static void specials_16bit(const family* fams, int nf, tk_rng* r) {
  static const linattn_dtype dts[2] = {LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  for (int di = 0; di < 2; di++) {
    const linattn_dtype dt = dts[di];
    const double vals[] = {NAN, INFINITY, -INFINITY, 0.0, 1.0, -1.0, 0.5, -3.25, 60000.0, -60000.0, 1e-6, -1e-6,
                           11.0, -11.0, 17.5, -17.5, 2.0, 1000.0, -1000.0, 6e-8};
    const int64_t n = (int64_t)(sizeof vals / sizeof vals[0]);
    uint16_t x[32], yr[32], yk[32], w1;
    for (int64_t i = 0; i < n; i++) tk_store(x, i, dt, vals[i]);
    x[n] = (uint16_t)(dt == LINATTN_DTYPE_F16 ? 0x7d01u : 0x7f81u); /* signalling NaN */
    tk_store(&w1, 0, dt, 1.0);
    for (int act = 0; act < 2; act++) {
      conv_params p;
      memset(&p, 0, sizeof p);
      p.dtype = dt; p.activation = act ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
      p.B = 1; p.C = 1; p.L = n + 1; p.K = 1; p.dilation = 1;
      p.x = x; p.x_sb = p.x_sc = n + 1; p.x_st = 1;
      p.w = &w1;
      p.y_sb = p.y_sc = n + 1; p.y_st = 1;
      p.y = yr;
      run_units(&linattn_conv_reference, &p, 1, r);
      for (int f = 0; f < nf; f++) {
        p.y = yk;
        memset(yk, 0xff, sizeof yk);
        run_units(fams[f].k, &p, 1, r);
        int64_t bad = 0;
        for (int64_t i = 0; i <= n; i++) {
          double a = tk_decode(yk[i], dt), b = tk_decode(yr[i], dt);
          bool ok = (isnan(a) && isnan(b)) || (isinf(b) && a == b) ||
                    (isfinite(a) && isfinite(b) && fabs(a - b) <= (act ? tk_ulp(b, dt) : 0.0));
          if (!act && isnan(tk_decode(x[i], dt))) ok = isnan(a) && (yk[i] & 0x7fffu) >= (x[i] & 0x7fffu);
          bad += !ok;
        }
        tk_check(bad == 0, "%s: %s specials (%s): %lld values differ from the reference", fams[f].name,
                 tk_dtype_str(dt), act ? "silu" : "none", (long long)bad);
      }
    }
  }
}

/* ------------------------------------------------------------------ SiLU on every 16-bit input */

/* The vector families' SiLU as silu16 (src/kernels/vec_avx512.h) computes it (fp32, FMA for
 * every fused step): t = sign(v) min(|v|, 120), n = rint(-t log2 e), r' = t + n ln2 in two FMAs, a degree-5
 * polynomial, e = 2^n q, v / (1 + e). A 16-bit T variant may compute it differently (fewer
 * steps), but after rounding to T it must give exactly these bits. */
static float silu_poly_spec(float v) {
  const float t = isnan(v) ? 120.0f : copysignf(fminf(fabsf(v), 120.0f), v);
  const float n = rintf(t * -1.44269504088896341f);
  float r = fmaf(n, 0.693359375f, t);
  r = fmaf(n, -2.12194440e-4f, r);
  float q = -0.008297647349536419f;
  q = fmaf(q, r, 0.04191543161869049f);
  q = fmaf(q, r, -0.16667574644088745f);
  q = fmaf(q, r, 0.49998894333839417f);
  q = fmaf(q, r, -0.9999997019767761f);
  q = fmaf(q, r, 1.0000001192092896f);
  return v / (1.0f + ldexpf(q, (int)n));
}

static uint32_t to_t_bits(float f, linattn_dtype dt) {
  return dt == LINATTN_DTYPE_F16 ? linattn_f32_to_f16(f) : linattn_f32_to_bf16(f);
}
static float from_t_bits(uint32_t h, linattn_dtype dt) {
  return dt == LINATTN_DTYPE_F16 ? linattn_f16_to_f32((uint16_t)h) : linattn_bf16_to_f32((uint16_t)h);
}

/* Every one of the 65,536 fp16 and bf16 values through a conv with K = 1, weight 1, no bias,
 * SiLU (so y = T(silu(x)), +0 for -0): channels-first along time (L = 65536), channels-last
 * prefill (L = 2, the values as channels) and decode (L = 1). The vector families must give
 * exactly silu_poly_spec's bits, the scalar one (expf, as the reference) the reference's.
 * Without activation (the input's bits back, through each family's conversions) every family
 * must give the reference's bits (any NaN for a NaN). The AVX-512 SiLU by table lookup
 * (conv.silu_table) must give the same bits as its vector path, silu_poly_spec's.
 * Notes how many inputs the polynomial and the reference's expf formula round differently,
 * and each against round_T of the float64 SiLU. */
static void every_16bit_input(const family* fams, int nf, tk_rng* r) {
  static const linattn_dtype dts[2] = {LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  const int64_t n = 65536;
  uint16_t* x = tk_xmalloc(sizeof(uint16_t) * 2 * (size_t)n);
  uint16_t* yref = tk_xmalloc(sizeof(uint16_t) * 2 * (size_t)n);
  uint16_t* yk = tk_xmalloc(sizeof(uint16_t) * 2 * (size_t)n);
  uint32_t* spec = tk_xmalloc(sizeof(uint32_t) * (size_t)n);
  uint16_t* w = tk_xmalloc(sizeof(uint16_t) * (size_t)n); /* (C, 1) weights, all 1 */
  for (int di = 0; di < 2; di++) {
    const linattn_dtype dt = dts[di];
    for (int64_t i = 0; i < n; i++) x[i] = x[n + i] = (uint16_t)i, tk_store(w, i, dt, 1.0);
    int64_t spec_vs_ref = 0, spec_vs_exact = 0, ref_vs_exact = 0;
    for (int run = 0; run < 6; run++) { /* SiLU, then none; channels-first, channels-last L = 2, decode */
      const int layout = run % 3;
      const bool silu = run < 3;
      conv_params p;
      memset(&p, 0, sizeof p);
      p.dtype = dt; p.activation = silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
      p.B = 1; p.K = 1; p.dilation = 1; p.S = 0;
      p.channels_last = layout > 0;
      p.C = layout == 0 ? 1 : n;
      p.L = layout == 0 ? n : layout == 1 ? 2 : 1;
      p.x = x; p.y = yref;
      p.x_sb = p.y_sb = 2 * n;
      if (layout == 0) p.x_sc = p.y_sc = n, p.x_st = p.y_st = 1;
      else p.x_sc = p.y_sc = 1, p.x_st = p.y_st = n;
      p.w = w;
      const int64_t nout = layout == 1 ? 2 * n : n;
      memset(yref, 0xff, sizeof(uint16_t) * 2 * (size_t)n);
      run_units(&linattn_conv_reference, &p, 4096, r);
      for (int64_t i = 0; i < n; i++) {
        float v = from_t_bits((uint32_t)i, dt);
        if (v == 0.0f) v = 0.0f; /* the conv sum 0 + 1 * -0 is +0 */
        spec[i] = to_t_bits(silu_poly_spec(v), dt);
        if (run > 0) continue;
        const uint32_t exact = tk_encode(tk_round((double)v / (1.0 + exp(-(double)v)), dt), dt);
        const bool nan_in = isnan(v);
        spec_vs_ref += !nan_in && spec[i] != yref[i];
        spec_vs_exact += !nan_in && spec[i] != exact;
        ref_vs_exact += !nan_in && yref[i] != exact;
      }
      for (int fv = 0; fv < 2 * nf; fv++) { /* each family; AVX-512 SiLU again by table (conv.silu_table) */
        const int f = fv / 2;
        const bool table = fv % 2;
        if (table && !(silu && strcmp(fams[f].name, "avx512") == 0)) continue;
        /* the x86 families share silu_poly_spec's polynomial; NEON has its own exp (neon_util.h),
         * held to one unit of T's last place of the reference */
        const bool poly = silu && (strcmp(fams[f].name, "avx2") == 0 || strcmp(fams[f].name, "avx512") == 0);
        const bool own_exp = silu && !poly && strcmp(fams[f].name, "scalar") != 0;
        p.y = yk;
        p.silu_table = table;
        memset(yk, 0xff, sizeof(uint16_t) * 2 * (size_t)n);
        run_units(fams[f].k, &p, layout == 0 ? 1 : 4096, r);
        p.y = yref;
        p.silu_table = false;
        int64_t bad = 0, first = -1;
        for (int64_t o = 0; o < nout; o++) {
          const uint32_t want = poly ? spec[o % n] : yref[o];
          bool ok = isnan(from_t_bits(want, dt)) ? isnan(from_t_bits(yk[o], dt)) : yk[o] == want; /* any NaN */
          if (!ok && own_exp && !isnan(from_t_bits(want, dt)) && ((yk[o] ^ want) & 0x8000u) == 0) /* same sign, 1 ulp */
            ok = (yk[o] > want ? yk[o] - want : want - yk[o]) <= 1;
          if (!ok && bad++ == 0) first = o % n;
        }
        tk_check(bad == 0, "%s%s: %s %s, %s: %lld of %lld outputs differ from the %s; first x = %.9g got 0x%04x want 0x%04x",
                 fams[f].name, table ? " (silu_table)" : "", tk_dtype_str(dt), silu ? "SiLU" : "no activation", layout == 0 ? "channels-first" : layout == 1 ? "channels-last" : "decode",
                 (long long)bad, (long long)nout, poly ? "polynomial spec" : own_exp ? "reference (1 ulp)" : "reference",
                 first >= 0 ? from_t_bits((uint32_t)first, dt) : 0.0,
                 first >= 0 ? (unsigned)yk[first] : 0u, first >= 0 ? (unsigned)(poly ? spec[first] : yref[first]) : 0u);
      }
    }
    tk_note("%s SiLU over all %lld inputs (NaNs aside): polynomial vs reference (expf) differ on %lld, polynomial vs "
            "round(float64) on %lld, reference vs round(float64) on %lld", tk_dtype_str(dt), (long long)n,
            (long long)spec_vs_ref, (long long)spec_vs_exact, (long long)ref_vs_exact);
  }
  free(x); free(yref); free(yk); free(spec); free(w);
}

/* The SiLU table holds the vector path's results under the default floating-point mode; under
 * another (FTZ and DAZ, as the LinearAttention kernels set, or another rounding mode) the
 * vector path's bits differ for some tiny values, and the kernels must then not use the table:
 * with conv.silu_table on and off, every 16-bit input must give the same bits in each mode.
 * Notes how many outputs each mode changes against the default (what a table used in the wrong
 * mode would get wrong). */
static void silu_table_fp_modes(const family* fams, int nf, tk_rng* r) {
#if defined(__x86_64__) || defined(_M_X64)
  static const linattn_dtype dts[2] = {LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  static const unsigned modes[3] = {0x8040u, 0x6000u, 0x2000u}; /* FTZ | DAZ, toward zero, down */
  const int64_t n = 65536;
  const family* fam = NULL;
  for (int f = 0; f < nf; f++)
    if (strcmp(fams[f].name, "avx512") == 0) fam = &fams[f];
  if (!fam) return;
  uint16_t* x = tk_xmalloc(sizeof(uint16_t) * (size_t)n);
  uint16_t* w = tk_xmalloc(sizeof(uint16_t));
  uint16_t* y[3];
  for (int i = 0; i < 3; i++) y[i] = tk_xmalloc(sizeof(uint16_t) * (size_t)n);
  const unsigned saved = _mm_getcsr();
  for (int di = 0; di < 2; di++) {
    const linattn_dtype dt = dts[di];
    for (int64_t i = 0; i < n; i++) x[i] = (uint16_t)i;
    tk_store(w, 0, dt, 1.0);
    conv_params p;
    memset(&p, 0, sizeof p);
    p.dtype = dt; p.activation = LINATTN_ACTIVATION_SILU;
    p.B = 1; p.C = 1; p.L = n; p.K = 1; p.dilation = 1;
    p.x = x; p.x_sb = p.x_sc = n; p.x_st = 1;
    p.y_sb = p.y_sc = n; p.y_st = 1;
    p.w = w;
    p.y = y[0];
    memset(y[0], 0xff, sizeof(uint16_t) * (size_t)n);
    run_units(fam->k, &p, 1, r); /* the default mode */
    for (int m = 0; m < 3; m++) {
      for (int table = 0; table < 2; table++) {
        p.y = y[1 + table];
        p.silu_table = table;
        memset(y[1 + table], 0xff, sizeof(uint16_t) * (size_t)n);
        _mm_setcsr((saved & ~0xe040u) | modes[m]);
        run_units(fam->k, &p, 1, r);
        _mm_setcsr(saved);
      }
      int64_t bad = 0, moved = 0;
      for (int64_t i = 0; i < n; i++) bad += y[1][i] != y[2][i], moved += y[1][i] != y[0][i];
      tk_check(bad == 0, "avx512: %s SiLU under MXCSR control 0x%04x: %lld of %lld outputs differ with silu_table",
               tk_dtype_str(dt), modes[m], (long long)bad, (long long)n);
      tk_note("%s SiLU under MXCSR control 0x%04x: %lld of %lld outputs differ from the default mode's",
              tk_dtype_str(dt), modes[m], (long long)moved, (long long)n);
    }
  }
  _mm_setcsr(saved);
  free(x); free(w);
  for (int i = 0; i < 3; i++) free(y[i]);
#else
  (void)fams; (void)nf; (void)r;
#endif
}

/* ------------------------------------------------------------------ channels-first K = 4 bit for bit */

/* The x86 vector families' arithmetic per output of a channels-first K = 4, dilation 1 conv:
 * the four products summed by FMAs in tap order from 0, for fp16 the sum rounded to fp16
 * before the bias, the bias added in fp32, then for 16-bit T rounded to T, SiLU as
 * silu_poly_spec, rounded to T. Independent of how a kernel arranges its vectors (the
 * shifted-register loops, bf16's even / odd streams), so every output must have these bits. */
static uint32_t cf_k4_spec(const float* xs, const float* w, float bias, bool has_bias, bool silu, linattn_dtype dt) {
  float acc = fmaf(w[0], xs[0], 0.0f);
  for (int j = 1; j < 4; j++) acc = fmaf(w[j], xs[j], acc);
  if (has_bias) {
    if (dt == LINATTN_DTYPE_F16) acc = linattn_f16_to_f32(linattn_f32_to_f16(acc));
    acc += bias;
  }
  if (dt == LINATTN_DTYPE_F32) {
    if (silu) acc = silu_poly_spec(acc);
    uint32_t u;
    memcpy(&u, &acc, 4);
    return u;
  }
  if (silu) acc = silu_poly_spec(from_t_bits(to_t_bits(acc, dt), dt));
  return to_t_bits(acc, dt);
}

/* Channels-first K = 4, dilation 1, long rows at every output alignment of the first 32
 * elements (row starts 0..31 elements into an aligned buffer) and lengths around the loops'
 * rounds, random past state, each dtype with and without bias and SiLU, conv.cf_bf16_pairs and
 * (AVX-512) conv.silu_table off and on: the avx2 and avx512 families must give cf_k4_spec's bits
 * for every output. */
static void cf_k4_bits(const family* fams, int nf, tk_rng* r) {
  static const linattn_dtype dts[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  static const int64_t Ls[] = {150, 161, 290, 1031, 4099};
  const int64_t C = 4, pad = 40, S = 3;
  int64_t nchecked = 0;
  for (int di = 0; di < 3; di++)
    for (int li = 0; li < 5; li++)
      for (int flags = 0; flags < 4; flags++) {
        const linattn_dtype dt = dts[di];
        const int64_t L = Ls[li], row = L + pad, off = tk_below(r, 32), n = C * row + 64;
        const bool has_bias = flags & 1, silu = flags & 2;
        const size_t es = esz(dt);
        char* xb = tk_aligned_alloc(64, (size_t)n * es);
        char* yb = tk_aligned_alloc(64, (size_t)n * es);
        char* past = tk_aligned_alloc(64, (size_t)(C * S) * es);
        char* w = tk_aligned_alloc(64, (size_t)(C * 4) * es);
        char* bias = tk_aligned_alloc(64, (size_t)C * es);
        for (int64_t i = 0; i < n; i++) tk_store(xb, i, dt, tk_uniform_range(r, -6.0, 6.0));
        for (int64_t i = 0; i < C * S; i++) tk_store(past, i, dt, tk_uniform_range(r, -6.0, 6.0));
        for (int64_t i = 0; i < C * 4; i++) tk_store(w, i, dt, tk_uniform_range(r, -1.0, 1.0));
        for (int64_t i = 0; i < C; i++) tk_store(bias, i, dt, tk_uniform_range(r, -1.0, 1.0));
        conv_params p;
        memset(&p, 0, sizeof p);
        p.dtype = dt; p.activation = silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
        p.B = 1; p.C = C; p.L = L; p.K = 4; p.dilation = 1; p.S = S;
        p.x = xb + off * (int64_t)es; p.x_sb = C * row; p.x_sc = row; p.x_st = 1;
        p.y = yb + off * (int64_t)es; p.y_sb = C * row; p.y_sc = row; p.y_st = 1;
        p.w = w; p.bias = has_bias ? bias : NULL;
        p.past = past; p.s_sb = C * S; p.s_sc = S; p.s_st = 1;
        p.cf_prefetch = 4096;
        for (int f = 0; f < nf; f++)
          for (int v = 0; v < 4; v++) { /* AVX-512: conv.cf_bf16_pairs (v & 1), conv.silu_table (v >> 1) */
            const int pairs = v & 1, table = v >> 1;
            if (strcmp(fams[f].name, "avx2") != 0 && strcmp(fams[f].name, "avx512") != 0) continue;
            if (table && strcmp(fams[f].name, "avx512") != 0) continue;
            p.cf_bf16_pairs = pairs;
            p.silu_table = table;
            memset(yb, 0xff, (size_t)n * es);
            run_units(fams[f].k, &p, 1 + tk_below(r, C), r);
            int64_t bad = 0, first = -1;
            for (int64_t c = 0; c < C; c++) {
              float wf[4], xs[4];
              for (int j = 0; j < 4; j++) wf[j] = (float)tk_load(w, c * 4 + j, dt);
              const float bf = (float)tk_load(bias, c, dt);
              for (int64_t t = 0; t < L; t++) {
                for (int j = 0; j < 4; j++) { /* padded position t + j: past for < S, else x[t + j - S] */
                  const int64_t q = t + j;
                  xs[j] = (float)(q < S ? tk_load(past, c * S + q, dt) : tk_load(p.x, c * row + q - S, dt));
                }
                const uint32_t want = cf_k4_spec(xs, wf, bf, has_bias, silu, dt);
                const uint32_t got = get_bits(p.y, c * row + t, dt);
                if (got != want && bad++ == 0) first = c * row + t;
              }
            }
            nchecked += C * L;
            tk_check(bad == 0, "%s: channels-first K=4 %s L=%lld offset %lld bias=%d %s bf16_pairs=%d silu_table=%d: "
                     "%lld of %lld outputs differ from the spec's bits (first at element %lld)", fams[f].name,
                     tk_dtype_str(dt), (long long)L, (long long)off, has_bias, silu ? "silu" : "none", pairs, table,
                     (long long)bad,
                     (long long)(C * L), (long long)first);
          }
        tk_aligned_free(xb); tk_aligned_free(yb); tk_aligned_free(past); tk_aligned_free(w); tk_aligned_free(bias);
      }
  tk_note("channels-first K = 4 bit for bit: %lld outputs checked", (long long)nchecked);
}

/* Channels-last K = 4, dilation 1, 16-bit T with SiLU: the AVX-512 family with conv.silu_table
 * (whole tiles as pipelined 64-byte lines, the other columns one by one) must give the bits of
 * its vector SiLU (which every_16bit_input holds to the spec) for every output, at every output
 * alignment of the first 32 channels, with rows whose stride is a multiple of 4 KiB too, in
 * place, with and without bias and past state, L around the 12-step tiles. */
static void cl_k4_table_bits(const family* fams, int nf, tk_rng* r) {
  static const int64_t Cs[] = {64, 75, 2048, 2051};
  static const int64_t Ls[] = {12, 13, 40, 61};
  int64_t nchecked = 0;
  for (int f = 0; f < nf; f++) {
    if (strcmp(fams[f].name, "avx512") != 0) continue;
    for (int di = 0; di < 2; di++)
      for (int ci = 0; ci < 4; ci++)
        for (int li = 0; li < 4; li++) {
          const linattn_dtype dt = di == 0 ? LINATTN_DTYPE_F16 : LINATTN_DTYPE_BF16;
          const int64_t C = Cs[ci], L = Ls[li], S = 3, off = tk_below(r, 32), n = (L + 1) * C + 64;
          const bool has_bias = tk_below(r, 2), has_past = li != 1;
          char* xb = tk_aligned_alloc(64, (size_t)n * 2);
          char* w = tk_aligned_alloc(64, (size_t)(C * 4) * 2);
          char* bias = tk_aligned_alloc(64, (size_t)C * 2);
          char* ys[2];
          char* st[2];
          for (int64_t i = 0; i < n; i++) tk_store(xb, i, dt, tk_uniform_range(r, -6.0, 6.0));
          for (int64_t i = 0; i < C * 4; i++) tk_store(w, i, dt, tk_uniform_range(r, -1.0, 1.0));
          for (int64_t i = 0; i < C; i++) tk_store(bias, i, dt, tk_uniform_range(r, -1.0, 1.0));
          for (int v = 0; v < 2; v++) {
            ys[v] = tk_aligned_alloc(64, (size_t)n * 2);
            st[v] = tk_aligned_alloc(64, (size_t)(S * C) * 2);
            memset(ys[v], 0xff, (size_t)n * 2);
          }
          for (int64_t i = 0; i < S * C; i++) tk_store(st[0], i, dt, tk_uniform_range(r, -6.0, 6.0));
          memcpy(st[1], st[0], (size_t)(S * C) * 2);
          for (int v = 0; v < 2; v++) { /* v = 1: the table */
            conv_params p;
            memset(&p, 0, sizeof p);
            p.dtype = dt; p.activation = LINATTN_ACTIVATION_SILU; p.channels_last = true;
            p.B = 1; p.C = C; p.L = L; p.K = 4; p.dilation = 1; p.S = S;
            p.x = xb + off * 2; p.x_sb = L * C; p.x_sc = 1; p.x_st = C;
            p.y = ys[v] + off * 2; p.y_sb = L * C; p.y_sc = 1; p.y_st = C;
            p.w = w; p.bias = has_bias ? bias : NULL;
            p.past = has_past ? st[v] : NULL; p.present = st[v]; p.s_sb = S * C; p.s_sc = 1; p.s_st = C;
            p.silu_table = v == 1;
            run_units(fams[f].k, &p, C, r);
          }
          int64_t bad = 0, first = -1;
          for (int64_t i = 0; i < L * C; i++)
            if (get_bits(ys[1] + off * 2, i, dt) != get_bits(ys[0] + off * 2, i, dt) && bad++ == 0) first = i;
          const bool state_same = memcmp(st[0], st[1], (size_t)(S * C) * 2) == 0;
          nchecked += L * C;
          tk_check(bad == 0 && state_same,
                   "avx512: channels-last K=4 %s C=%lld L=%lld offset %lld bias=%d past=%d: %lld of %lld outputs differ "
                   "with silu_table (first at %lld), present state %s",
                   tk_dtype_str(dt), (long long)C, (long long)L, (long long)off, has_bias, has_past, (long long)bad,
                   (long long)(L * C), (long long)first, state_same ? "same" : "differs");
          for (int v = 0; v < 2; v++) tk_aligned_free(ys[v]), tk_aligned_free(st[v]);
          tk_aligned_free(xb); tk_aligned_free(w); tk_aligned_free(bias);
        }
  }
  tk_note("channels-last K = 4 with silu_table bit for bit: %lld outputs checked", (long long)nchecked);
}

/* ------------------------------------------------------------------ main */

int main(void) {
  tk_begin("conv kernels");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  family fams[16];
  const int nf = get_families(fams, 16);
  for (int f = 0; f < nf; f++) tk_note("family %s (block_channels %lld)", fams[f].name, (long long)fams[f].k->block_channels);

  silu_accuracy(fams, nf, &r);
  specials_16bit(fams, nf, &r);
  every_16bit_input(fams, nf, &r);
  silu_table_fp_modes(fams, nf, &r);
  cf_k4_bits(fams, nf, &r);
  cl_k4_table_bits(fams, nf, &r);

  static const linattn_dtype dts[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  static const int64_t Ks[] = {1, 2, 3, 4, 5, 7};
  static const int64_t Cs[] = {1, 3, 7, 17, 19, 37, 45};
  int64_t ncase = 0;
  const double t_start = tk_seconds();
  for (int di = 0; di < 3; di++)
    for (int cl = 0; cl < 2; cl++)
      for (int ki = 0; ki < 6; ki++) {
        const int64_t K = Ks[ki];
        int64_t Ls[8] = {0, 1, 2, K - 2, K - 1, K, 17, 1000}, nl = 0;
        for (int i = 0; i < 8; i++) { /* distinct, non-negative */
          bool dup = Ls[i] < 0;
          for (int j = 0; j < nl; j++) dup |= Ls[j] == Ls[i];
          if (!dup) Ls[nl++] = Ls[i];
        }
        for (int li = 0; li < nl; li++)
          for (int dil = 1; dil <= 3; dil += 2)
            for (int flags = 0; flags < 8; flags++) {
              conv_case cs;
              memset(&cs, 0, sizeof cs);
              cs.dt = dts[di]; cs.cl = cl; cs.K = K; cs.L = Ls[li]; cs.dil = dil;
              cs.bias = flags & 1; cs.past = flags & 2; cs.silu = flags & 4;
              cs.grid = ncase % 3 == 0;
              cs.strided = ncase % 2 == 1;
              cs.B = cs.L >= 1000 ? 1 : 2;
              cs.C = cs.L >= 1000 ? Cs[2 + tk_below(&r, 3)] : Cs[tk_below(&r, 7)];
              run_case(&cs, fams, nf, &r);
              ncase++;
            }
      }
  /* several real channel blocks per batch (block_channels-sized units and a partial one) */
  for (int di = 0; di < 3; di++)
    for (int cl = 0; cl < 2; cl++)
      for (int li = 0; li < 3; li++) {
        static const int64_t Lb[3] = {1, 5, 40};
        conv_case cs = {dts[di], cl, true, true, true, false, li == 1, 2, 600, Lb[li], 4, 1};
        run_case(&cs, fams, nf, &r);
        ncase++;
      }
  /* rows wider than block_channels (whole-row units), partial tiles of the channels-last
   * column sweep (L not a multiple of 8), C not a multiple of the vector widths */
  for (int di = 0; di < 3; di++)
    for (int li = 0; li < 3; li++) {
      static const int64_t Lw[3] = {2, 11, 43};
      conv_case cs = {dts[di], true, li == 1, true, true, false, li == 2, 1, 2100, Lw[li], 4, 1};
      run_case(&cs, fams, nf, &r);
      ncase++;
    }
  /* channels-first K = 4 decode (the vector families' in-register state move): every group fill
   * 1..16 and whole groups after it, packed, with and without a past state (run_case adds in
   * place, present NULL and other channel splits) */
  for (int di = 0; di < 3; di++)
    for (int64_t C = 1; C <= 49; C++) {
      conv_case cs = {dts[di], false, C % 3 == 0, C % 5 != 0, C % 2 == 1, C % 7 == 0, false, 2 + C % 3, C, 1, 4, 1};
      run_case(&cs, fams, nf, &r);
      ncase++;
    }
  /* packed decodes of more sequences than the kernels take at once or defer (run_seqs), both
   * state layouts, a partial group and several */
  for (int di = 0; di < 3; di++)
    for (int cl = 0; cl < 2; cl++)
      for (int ci = 0; ci < 3; ci++) {
        static const int64_t Cq[3] = {16, 45, 100};
        conv_case cs = {dts[di], cl, ci != 1, ci != 2, ci != 0, false, false, 37, Cq[ci], 1, 4, 1};
        run_case(&cs, fams, nf, &r);
        ncase++;
      }
  tk_note("%lld cases in %.1f s", (long long)ncase, tk_seconds() - t_start);
  return tk_finish();
}
