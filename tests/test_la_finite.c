/*
 * The output finiteness scan of the non-finite recompute (la_kernel.outputs_finite, internal.h;
 * src/api/la_units.h): the scan of every kernel family this build and CPU run, and the portable
 * la_unit_outputs_finite, against a plain loop here over the stored bits (an element fails when
 * its magnitude bits are >= limit).
 *
 * Per case (balanced io dtype, seed printed): ncols 1..300 (half of them near multiples of 16 and
 * 32: every tail length of the 8-, 16- and 32-lane scans), n_q 1..4 or 8 query heads, head and
 * token strides with or without gaps (contiguous heads, contiguous rows), an unaligned start, T
 * tokens with a random [t0, t1) (also empty), limits from la_refine_limit (scales 1, 1/sqrt(128),
 * 0.7, 1e-3, random) or random (also 0 and above inf's bits). Elements inside the scanned range
 * are random values below limit, both signs; every element outside it (stride gaps, tokens
 * outside [t0, t1), the start offset) holds a failing value in half the cases, so a scan that
 * reads one returns the wrong answer; the buffer ends at the last element (ASan sees over-reads).
 * Then one special value at a time at every column of one row (every lane position, the tail
 * included) and at random places: limit - 1, limit, limit + 1, +-inf, quiet and signalling NaN
 * of both signs, NaN with a full payload, the largest finite value, -0, subnormals, the
 * smallest normal; and a few specials together. Each answer must equal the loop's.
 *
 * The loop's broken variants (limit off by one, the last column of a row or the last token
 * missed) must disagree with it in some case of the run: the cases can see those faults.
 * Closing line "N passed, N failed".
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/la_units.h"
#include "internal.h"
#include "testkit.h"

#define MAX_SCANS 16
#define N_VARIANTS 4 /* 0: the oracle; 1: limit off by one; 2: misses a row's last column; 3: misses t1 - 1 */

typedef struct scan {
  const char* name;
  la_finite_fn fn;
} scan;

/* The portable scan and each family's (the reference family's is the portable one). */
static int find_scans(scan* out, int max) {
  int n = 0;
  out[n++] = (scan){"portable", la_unit_outputs_finite};
  for (int isa = LINATTN_ISA_REFERENCE + 1; isa <= linattn_isa_count() && n < max; isa++) {
    const kernel_table* kt = linattn_kernels_for_isa((linattn_isa)isa);
    if (kt) out[n++] = (scan){kt->la->name, kt->la->outputs_finite};
  }
  return n;
}

static uint32_t get_bits(const void* out, int64_t i, bool wide) {
  return wide ? ((const uint32_t*)out)[i] : ((const uint16_t*)out)[i];
}
static void set_bits(void* out, int64_t i, bool wide, uint32_t b) {
  if (wide) ((uint32_t*)out)[i] = b;
  else ((uint16_t*)out)[i] = (uint16_t)b;
}

static bool oracle(bool wide, uint32_t limit, const la_unit* u, int64_t t0, int64_t t1, int variant) {
  const uint32_t mag = wide ? 0x7fffffffu : 0x7fffu;
  if (variant == 3) t1 = t1 > t0 ? t1 - 1 : t1;
  for (int64_t t = t0; t < t1; t++)
    for (int64_t h = 0; h < u->n_q; h++)
      for (int64_t j = 0; j < u->ncols - (variant == 2); j++) {
        const uint32_t m = get_bits(u->out, t * u->out_token_stride + h * u->out_head_stride + j, wide) & mag;
        if (variant == 1 ? m > limit : m >= limit) return false;
      }
  return true;
}

/* Specials as magnitude bits (the sign is drawn per use). */
static int specials(linattn_dtype dt, uint32_t limit, uint32_t* s) {
  int n = 0;
  if (dt == LINATTN_DTYPE_F32) {
    static const uint32_t f[] = {0x7f800000u, 0x7fc00000u, 0x7f800001u, 0x7fa00000u, 0x7fffffffu, 0x7f7fffffu,
                                 0x00000000u, 0x00000001u, 0x007fffffu, 0x00800000u, 0x3f800000u};
    for (size_t i = 0; i < sizeof f / sizeof f[0]; i++) s[n++] = f[i];
  } else if (dt == LINATTN_DTYPE_F16) {
    static const uint16_t h[] = {0x7c00u, 0x7e00u, 0x7c01u, 0x7d00u, 0x7fffu, 0x7bffu,
                                 0x0000u, 0x0001u, 0x03ffu, 0x0400u, 0x3c00u};
    for (size_t i = 0; i < sizeof h / sizeof h[0]; i++) s[n++] = h[i];
  } else {
    static const uint16_t b[] = {0x7f80u, 0x7fc0u, 0x7f81u, 0x7fa0u, 0x7fffu, 0x7f7fu,
                                 0x0000u, 0x0001u, 0x007fu, 0x0080u, 0x3f80u};
    for (size_t i = 0; i < sizeof b / sizeof b[0]; i++) s[n++] = b[i];
  }
  const uint32_t mag = dt == LINATTN_DTYPE_F32 ? 0x7fffffffu : 0x7fffu;
  if (limit >= 1) s[n++] = limit - 1;
  s[n++] = limit;
  if (limit < mag) s[n++] = limit + 1;
  return n;
}

typedef struct scase {
  linattn_dtype dt;
  uint32_t limit;
  la_unit u;
  int64_t T, t0, t1, off, n_elems;
  bool poison_outside;
} scase;

static void describe(const scase* c, const char* what) {
  tk_context("%s io=%s limit=0x%x ncols=%lld n_q=%d head_stride=%lld token_stride=%lld T=%lld t=[%lld,%lld) "
             "offset=%lld outside=%s",
             what, tk_dtype_str(c->dt), (unsigned)c->limit, (long long)c->u.ncols, (int)c->u.n_q,
             (long long)c->u.out_head_stride, (long long)c->u.out_token_stride, (long long)c->T, (long long)c->t0,
             (long long)c->t1, (long long)c->off, c->poison_outside ? "failing" : "passing");
}

static uint32_t draw_limit(tk_rng* r, linattn_dtype dt) {
  const uint32_t inf = dt == LINATTN_DTYPE_F32 ? 0x7f800000u : dt == LINATTN_DTYPE_F16 ? 0x7c00u : 0x7f80u;
  switch (tk_below(r, 8)) {
    case 0: return 0;
    case 1: return 1 + (uint32_t)tk_below(r, 4);
    case 2: return inf + (uint32_t)tk_below(r, 3);             /* inf passes from inf + 1 on */
    case 3: return (uint32_t)tk_below(r, (int64_t)inf + 1);     /* any */
    default: {
      static const double scales[] = {1.0, 0.08838834764831845, 0.7, 1e-3};
      la_params p;
      memset(&p, 0, sizeof p);
      p.io_dtype = dt;
      p.scale_f64 = tk_below(r, 5) < 4 ? scales[tk_below(r, 4)] : exp(tk_uniform_range(r, -30.0, 3.0));
      return la_refine_limit(&p);
    }
  }
}

static int64_t draw_ncols(tk_rng* r) {
  static const int64_t widths[] = {8, 16, 32, 64, 128, 256};
  if (tk_below(r, 2)) return 1 + tk_below(r, 300);
  const int64_t w = widths[tk_below(r, 6)] + tk_below(r, 5) - 2;
  return w < 1 ? 1 : w;
}

/* A magnitude below limit (limit > 0) with a random sign: random bits, or small ones. */
static uint32_t passing_bits(tk_rng* r, bool wide, uint32_t limit) {
  const uint32_t m = tk_below(r, 4) ? (uint32_t)tk_below(r, limit) : (uint32_t)tk_below(r, limit < 64 ? limit : 64);
  return m | (tk_below(r, 2) ? (wide ? 0x80000000u : 0x8000u) : 0u);
}

static void make_case(tk_rng* r, linattn_dtype dt, scase* c, void** buf) {
  memset(c, 0, sizeof *c);
  c->dt = dt;
  c->limit = draw_limit(r, dt);
  const bool wide = dt == LINATTN_DTYPE_F32;
  la_unit* u = &c->u;
  u->ncols = draw_ncols(r);
  u->n_q = tk_below(r, 6) ? 1 + (int32_t)tk_below(r, 4) : 8;
  u->out_head_stride = u->ncols + (tk_below(r, 2) ? 0 : tk_below(r, 40));
  u->out_token_stride = u->n_q * u->out_head_stride + (tk_below(r, 2) ? 0 : tk_below(r, 40));
  c->T = 1 + tk_below(r, 8);
  c->t0 = tk_below(r, c->T + 1);
  c->t1 = c->t0 + tk_below(r, c->T - c->t0 + 1);
  if (tk_below(r, 8) == 0) c->t0 = 0, c->t1 = c->T;
  c->off = tk_below(r, 4) ? tk_below(r, 40) : 0;
  c->n_elems = c->off + (c->T - 1) * u->out_token_stride + (u->n_q - 1) * u->out_head_stride + u->ncols;
  c->poison_outside = tk_below(r, 2);
  const size_t esz = wide ? 4 : 2;
  char* b = tk_xmalloc((size_t)c->n_elems * esz);
  *buf = b;
  /* outside: failing values (inf, NaN, limit) or passing ones */
  static const uint32_t bad32[] = {0x7f800000u, 0xffc00000u, 0x7f800001u};
  static const uint32_t bad16[] = {0x7c00u, 0xfe00u, 0x7f80u, 0x7fc0u};
  for (int64_t i = 0; i < c->n_elems; i++) {
    uint32_t v = 0;
    if (c->poison_outside) v = wide ? bad32[tk_below(r, 3)] : tk_below(r, 4) ? bad16[tk_below(r, 4)] : 0x7fffu;
    else if (c->limit > 0) v = passing_bits(r, wide, c->limit);
    set_bits(b, i, wide, v);
  }
  u->out = b + (size_t)c->off * esz;
  for (int64_t t = c->t0; t < c->t1; t++)
    for (int64_t h = 0; h < u->n_q; h++)
      for (int64_t j = 0; j < u->ncols; j++)
        set_bits(u->out, t * u->out_token_stride + h * u->out_head_stride + j, wide,
                 c->limit > 0 ? passing_bits(r, wide, c->limit) : 0u);
}

static int64_t g_variant_caught[N_VARIANTS];

/* Every scan against the oracle on the case as it stands now; counts mismatches per scan. */
static void compare(const scase* c, const scan* scans, int nscan, int64_t* wrong) {
  const bool wide = c->dt == LINATTN_DTYPE_F32;
  const bool want = oracle(wide, c->limit, &c->u, c->t0, c->t1, 0);
  for (int v = 1; v < N_VARIANTS; v++)
    if (oracle(wide, c->limit, &c->u, c->t0, c->t1, v) != want) g_variant_caught[v]++;
  for (int s = 0; s < nscan; s++)
    if (scans[s].fn(c->dt, c->limit, &c->u, c->t0, c->t1) != want) wrong[s]++;
}

static void run_case(tk_rng* r, linattn_dtype dt, const scan* scans, int nscan) {
  scase c;
  void* buf;
  make_case(r, dt, &c, &buf);
  const bool wide = dt == LINATTN_DTYPE_F32;
  const uint32_t sign = wide ? 0x80000000u : 0x8000u;
  uint32_t sp[32];
  const int nsp = specials(dt, c.limit, sp);
  int64_t wrong[MAX_SCANS] = {0};
  int64_t calls = 0;
  compare(&c, scans, nscan, wrong);
  calls++;
  const int64_t rows = c.t1 - c.t0;
  if (rows > 0) {
    /* every column of one row, a special each */
    const int64_t t = c.t0 + tk_below(r, rows), h = tk_below(r, c.u.n_q);
    const int64_t row = t * c.u.out_token_stride + h * c.u.out_head_stride;
    for (int64_t j = 0; j < c.u.ncols; j++) {
      const uint32_t keep = get_bits(c.u.out, row + j, wide);
      set_bits(c.u.out, row + j, wide, sp[tk_below(r, nsp)] | (tk_below(r, 2) ? sign : 0u));
      compare(&c, scans, nscan, wrong);
      calls++;
      set_bits(c.u.out, row + j, wide, keep);
    }
    /* every special (both signs) at random places; the last column of the last row */
    for (int k = 0; k < 2 * nsp; k++) {
      const bool last = k % 5 == 0;
      const int64_t tt = last ? c.t1 - 1 : c.t0 + tk_below(r, rows);
      const int64_t hh = last ? c.u.n_q - 1 : tk_below(r, c.u.n_q);
      const int64_t i = tt * c.u.out_token_stride + hh * c.u.out_head_stride + (last ? c.u.ncols - 1 : tk_below(r, c.u.ncols));
      const uint32_t keep = get_bits(c.u.out, i, wide);
      set_bits(c.u.out, i, wide, sp[k / 2] | (k & 1 ? sign : 0u));
      compare(&c, scans, nscan, wrong);
      calls++;
      set_bits(c.u.out, i, wide, keep);
    }
    /* several specials at once */
    for (int k = 0; k < 4; k++) {
      const int64_t tt = c.t0 + tk_below(r, rows), hh = tk_below(r, c.u.n_q);
      const int64_t i = tt * c.u.out_token_stride + hh * c.u.out_head_stride + tk_below(r, c.u.ncols);
      set_bits(c.u.out, i, wide, sp[tk_below(r, nsp)] | (tk_below(r, 2) ? sign : 0u));
    }
    compare(&c, scans, nscan, wrong);
    calls++;
  }
  describe(&c, "scan");
  for (int s = 0; s < nscan; s++)
    tk_check(wrong[s] == 0, "%s: %lld of %lld answers differ from the loop", scans[s].name, (long long)wrong[s],
             (long long)calls);
  free(buf);
}

int main(int argc, char** argv) {
  tk_begin("test_la_finite");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  scan scans[MAX_SCANS];
  if (linattn_isa_count() + 1 > MAX_SCANS) tk_fatal("%d kernel families: raise MAX_SCANS", linattn_isa_count());
  const int nscan = find_scans(scans, MAX_SCANS);
  for (int s = 0; s < nscan; s++) tk_note("scan %s", scans[s].name);
  const int ncases = argc > 1 ? atoi(argv[1]) : tk_case_count(3000, 600);
  static const linattn_dtype dts[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  tk_axis a_dt;
  tk_axis_init(&a_dt, 3);
  for (int n = 0; n < ncases; n++) run_case(&r, dts[tk_axis_next(&a_dt, &r)], scans, nscan);
  tk_context("broken variants of the loop");
  tk_check(g_variant_caught[1] > 0, "no case saw a limit off by one");
  tk_check(g_variant_caught[2] > 0, "no case saw a missed last column");
  tk_check(g_variant_caught[3] > 0, "no case saw a missed last token");
  tk_note("%d cases; the broken loops differed in %lld, %lld, %lld answers", ncases, (long long)g_variant_caught[1],
          (long long)g_variant_caught[2], (long long)g_variant_caught[3]);
  return tk_finish();
}
