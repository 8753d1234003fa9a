/*
 * Shared harness of the linattn fuzz targets (header-only, static functions).
 *
 * A fuzz input is read as a sequence of decisions (fz_reader); missing bytes read as 0, so
 * every input, even an empty one, is a well-formed case. Tensor data is not taken from the
 * input: a seed from the input drives a PRNG, which keeps inputs short and lets the fuzzer
 * spend its bytes on shapes, strides, dtypes and aliasing.
 *
 * Tensors live in "regions": one malloc per region, exactly as large as the tensors placed
 * in it need, so ASan flags any access outside what a descriptor allows. Several tensors
 * may share a region (fused q/k/v views, in-place state, deliberate overlaps). A call runs
 * on a fresh copy of the template regions (an "instance"); afterwards every byte of every
 * region must equal the template except the logical elements of output tensors, and only
 * when the call succeeded.
 */
#ifndef LINATTN_FUZZ_COMMON_H
#define LINATTN_FUZZ_COMMON_H

#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h" /* src/convert.h: fp16/bf16 <-> fp32, verified exhaustively against hardware */
#include "linattn.h"

/* Harness helpers are not coverage-instrumented: libFuzzer should steer by the library's
 * branches, and comparison tracing in these loops cost half of the execution time. Not every
 * target uses every helper (unused). */
#if defined(__clang__)
#define FZ_NOCOV __attribute__((no_sanitize("coverage"), unused))
#else
#define FZ_NOCOV __attribute__((unused))
#endif

/* ------------------------------------------------------------------ failure */

static const char* fz_case_name = "";
static char fz_case_desc[1024]; /* the case, printed with a failure */
static char fz_chosen_error[512]; /* the chosen ISA's message (a later reference call replaces the last error) */
/* Writes the current case into fz_case_desc: called only when it is printed (a failure, or
 * FUZZ_VERBOSE), since formatting it for every execution costs as much as a small case. */
static void (*fz_case_describe)(char* buf, size_t size);
static void fz_fill_desc(void) {
  fz_case_desc[0] = '\0';
  if (fz_case_describe) fz_case_describe(fz_case_desc, sizeof fz_case_desc);
}

#define FZ_FAIL(...)                                                            \
  do {                                                                          \
    fz_fill_desc();                                                             \
    fprintf(stderr, "\nFUZZ FAILURE (%s) at %s:%d: ", fz_case_name, __FILE__, __LINE__); \
    fprintf(stderr, __VA_ARGS__);                                               \
    fprintf(stderr, "\n  last error: %s\n  chosen ISA's error: %s\n  case: %s\n", linattn_last_error(), fz_chosen_error, \
            fz_case_desc);                                                      \
    abort();                                                                    \
  } while (0)

/* With FUZZ_VERBOSE=1 in the environment, every case is printed before it runs (to see the
 * case behind a sanitizer report, which stops the program before FZ_FAIL could print it). */
FZ_NOCOV static void fz_verbose_case(void) {
  static int verbose = -1;
  if (verbose < 0) verbose = getenv("FUZZ_VERBOSE") != NULL;
  if (verbose) {
    fz_fill_desc();
    fprintf(stderr, "case (%s): %s\n", fz_case_name, fz_case_desc);
  }
}

/* Appends a description of tensor t to buf. */
FZ_NOCOV static void fz_describe_tensor(char* buf, size_t size, const char* name, bool passed, const linattn_tensor* d) {
  size_t n = strlen(buf);
  if (!passed) {
    snprintf(buf + n, size - n, " %s=NULL", name);
    return;
  }
  n += (size_t)snprintf(buf + n, size - n, " %s=dt%d[", name, (int)d->dtype);
  for (int i = 0; i < d->rank && i < 4 && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)d->dims[i]);
  if (n < size) n += (size_t)snprintf(buf + n, size - n, "]s(");
  for (int i = 0; i < d->rank && i < 4 && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, i ? ",%lld" : "%lld", (long long)d->strides[i]);
  if (n < size) snprintf(buf + n, size - n, ")");
}

#define FZ_CHECK(cond, ...) \
  do {                      \
    if (!(cond)) FZ_FAIL(__VA_ARGS__); \
  } while (0)

/* ------------------------------------------------------------------ input reader */

typedef struct fz_reader {
  const uint8_t* p;
  size_t n, i;
} fz_reader;

FZ_NOCOV static uint8_t fz_u8(fz_reader* r) { return r->i < r->n ? r->p[r->i++] : 0; }

FZ_NOCOV static uint32_t fz_u32(fz_reader* r) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) v |= (uint32_t)fz_u8(r) << (8 * i);
  return v;
}

/* A value in [0, n). */
FZ_NOCOV static int fz_pick(fz_reader* r, int n) { return n <= 1 ? 0 : (int)(fz_u8(r) % (unsigned)n); }

/* True with probability ~percent/100 (byte 0 = false, so short inputs take the plain path). */
FZ_NOCOV static bool fz_chance(fz_reader* r, int percent) {
  uint8_t b = fz_u8(r);
  return b != 0 && (int)(b % 100u) < percent;
}

/* ------------------------------------------------------------------ data PRNG */

typedef struct fz_rng {
  uint64_t s;
} fz_rng;

FZ_NOCOV static uint64_t fz_next(fz_rng* g) { /* splitmix64 */
  uint64_t z = (g->s += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}
FZ_NOCOV static double fz_unit(fz_rng* g) { return (double)(fz_next(g) >> 11) * (1.0 / 9007199254740992.0); }
FZ_NOCOV static double fz_uniform(fz_rng* g, double lo, double hi) { return lo + (hi - lo) * fz_unit(g); }

/* ------------------------------------------------------------------ dtypes */

FZ_NOCOV static size_t fz_esize(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 4 : (dt == LINATTN_DTYPE_F16 || dt == LINATTN_DTYPE_BF16) ? 2 : 0; }

FZ_NOCOV static double fz_load(const unsigned char* p, linattn_dtype dt) {
  uint16_t h;
  float f;
  switch (dt) {
    case LINATTN_DTYPE_F16: memcpy(&h, p, 2); return linattn_f16_to_f32(h);
    case LINATTN_DTYPE_BF16: memcpy(&h, p, 2); return linattn_bf16_to_f32(h);
    case LINATTN_DTYPE_F32: memcpy(&f, p, 4); return f;
    default: return 0.0;
  }
}

/* Stores x rounded to dt; returns the stored value. */
FZ_NOCOV static double fz_store(unsigned char* p, linattn_dtype dt, double x) {
  uint16_t h;
  float f = (float)x;
  switch (dt) {
    case LINATTN_DTYPE_F16: h = linattn_f32_to_f16(f); memcpy(p, &h, 2); return linattn_f16_to_f32(h);
    case LINATTN_DTYPE_BF16: h = linattn_f32_to_bf16(f); memcpy(p, &h, 2); return linattn_bf16_to_f32(h);
    case LINATTN_DTYPE_F32: memcpy(p, &f, 4); return f;
    default: return 0.0;
  }
}

/* NaN with a recognisable payload written into outputs before a call: an element that still
 * holds it afterwards was not written. */
FZ_NOCOV static void fz_store_poison(unsigned char* p, linattn_dtype dt) {
  const uint32_t f = 0x7fa5a5a5u;
  const uint16_t h = 0x7e5au, b = 0x7fa5u;
  if (dt == LINATTN_DTYPE_F32) memcpy(p, &f, 4);
  else if (dt == LINATTN_DTYPE_F16) memcpy(p, &h, 2);
  else if (dt == LINATTN_DTYPE_BF16) memcpy(p, &b, 2);
}
FZ_NOCOV static bool fz_is_poison(const unsigned char* p, linattn_dtype dt) {
  unsigned char tmp[4];
  memset(tmp, 0, sizeof tmp);
  fz_store_poison(tmp, dt);
  return memcmp(p, tmp, fz_esize(dt)) == 0;
}

/* Largest finite value and spacing of dt at |x| (enough for tolerances). */
FZ_NOCOV static double fz_dtype_max(linattn_dtype dt) {
  return dt == LINATTN_DTYPE_F16 ? 65504.0 : dt == LINATTN_DTYPE_BF16 ? 3.38953139e38 : 3.40282347e38;
}
FZ_NOCOV static double fz_ulp(double x, linattn_dtype dt) {
  const int mant = dt == LINATTN_DTYPE_F16 ? 10 : dt == LINATTN_DTYPE_BF16 ? 7 : 23;
  const int emin = dt == LINATTN_DTYPE_F16 ? -14 : -126;
  int e;
  x = fabs(x);
  if (x == 0.0 || !isfinite(x)) return ldexp(1.0, emin - mant);
  frexp(x, &e); /* x = m 2^e, m in [0.5, 1) */
  e -= 1;
  if (e < emin) e = emin;
  return ldexp(1.0, e - mant);
}

/* ------------------------------------------------------------------ tensors and regions */

#define FZ_MAX_TENSORS 12
#define FZ_MAX_REGIONS 12
#define FZ_HUGE_REGION_BYTES 64          /* region given to descriptors too large to back */
#define FZ_MAX_REGION_BYTES (4u << 20)   /* larger extents are treated as "huge" */
/* A valid case is shrunk (sequence first, then batch, then widths) until its tensors fit in this
 * many bytes: every execution walks each element several times (template, checks, float64 oracle,
 * reference kernels, one-thread rerun), so case size sets the execution rate. Tails of the
 * kernels' panels and chunks (d 17..65, T 16..65) still come up, with small other dims. */
#define FZ_BYTE_BUDGET 4096

typedef struct fz_tensor {
  const char* name;
  bool passed;         /* false: the argument is a NULL pointer (absent) */
  bool is_output;
  bool null_data;      /* data pointer NULL */
  int share_with;      /* -1: own region; else placed in that tensor's region */
  int64_t share_offset;/* element offset (of this tensor's dtype) from share_with's data */
  linattn_tensor d;    /* descriptor; data set per instance */
  /* computed by fz_layout */
  int region;
  size_t byte_offset;  /* data = region start + byte_offset */
  bool huge;
  int64_t numel;       /* logical elements (0 when rank is out of range) */
  int64_t s[LINATTN_MAX_RANK]; /* resolved element strides (fz_strides) */
  bool packed;         /* s are the row-major strides: element e is at offset e */
  bool aliased;        /* an output sharing its region with an input (may keep input bytes) */
} fz_tensor;

typedef struct fz_call {
  fz_tensor t[FZ_MAX_TENSORS];
  int nt;
  int nr;
  size_t region_bytes[FZ_MAX_REGIONS];
  unsigned char* tmpl[FZ_MAX_REGIONS];
} fz_call;

typedef struct fz_instance {
  unsigned char* mem[FZ_MAX_REGIONS];
  linattn_tensor d[FZ_MAX_TENSORS];
} fz_instance;

FZ_NOCOV static bool fz_rank_ok(const linattn_tensor* d) { return d->rank >= 0 && d->rank <= LINATTN_MAX_RANK; }

/* Resolved element strides (all-zero = packed row-major). */
FZ_NOCOV static void fz_strides(const linattn_tensor* d, int64_t* s) {
  bool all_zero = true;
  for (int i = 0; i < d->rank; i++)
    if (d->strides[i] != 0) all_zero = false;
  int64_t acc = 1;
  for (int i = d->rank - 1; i >= 0; i--) {
    s[i] = all_zero ? acc : d->strides[i];
    if (d->dims[i] > 0 && __builtin_mul_overflow(acc, d->dims[i], &acc)) acc = INT64_MAX / 4;
  }
}

/* Logical element count; -1 on overflow or a negative dim. */
FZ_NOCOV static int64_t fz_numel(const linattn_tensor* d) {
  if (!fz_rank_ok(d)) return 0;
  int64_t n = 1;
  for (int i = 0; i < d->rank; i++) {
    if (d->dims[i] < 0) return -1;
    if (__builtin_mul_overflow(n, d->dims[i], &n)) return -1;
  }
  return n;
}

/* Element offset of logical index `lin` (row-major). */
FZ_NOCOV static int64_t fz_offset(const linattn_tensor* d, const int64_t* s, int64_t lin) {
  int64_t off = 0;
  for (int i = d->rank - 1; i >= 0; i--) {
    int64_t idx = lin % d->dims[i];
    lin /= d->dims[i];
    off += idx * s[i];
  }
  return off;
}

/* Byte range [lo, hi) relative to data touched by the descriptor; false if too large. */
FZ_NOCOV static bool fz_extent(const linattn_tensor* d, int64_t numel, int64_t* lo, int64_t* hi) {
  *lo = *hi = 0;
  const size_t es = fz_esize(d->dtype) ? fz_esize(d->dtype) : 4;
  if (numel <= 0) return numel == 0;
  int64_t s[LINATTN_MAX_RANK], mn = 0, mx = 0;
  fz_strides(d, s);
  for (int i = 0; i < d->rank; i++) {
    int64_t term;
    if (d->dims[i] <= 1) continue;
    if (__builtin_mul_overflow(d->dims[i] - 1, s[i], &term)) return false;
    if (term < 0) mn += term; else mx += term;
    if (mn < -(int64_t)FZ_MAX_REGION_BYTES || mx > (int64_t)FZ_MAX_REGION_BYTES) return false;
  }
  *lo = mn * (int64_t)es;
  *hi = (mx + 1) * (int64_t)es;
  return *hi - *lo <= (int64_t)FZ_MAX_REGION_BYTES;
}

/* Places tensors into regions (after all descriptors are final). A tensor sharing another's
 * region is placed after it; sharing with an absent or NULL-data tensor means an own region. */
FZ_NOCOV static void fz_place(fz_call* c, int i, bool* placed) {
  fz_tensor* t = &c->t[i];
  placed[i] = true;
  int64_t lo, hi;
  if (t->numel < 0 || !fz_extent(&t->d, t->numel, &lo, &hi)) {
    t->huge = true;
    lo = 0;
    hi = FZ_HUGE_REGION_BYTES;
  }
  const fz_tensor* o = t->share_with >= 0 ? &c->t[t->share_with] : NULL;
  if (o && o->region >= 0) {
    const int64_t es = (int64_t)(fz_esize(t->d.dtype) ? fz_esize(t->d.dtype) : 4);
    int64_t off = (int64_t)o->byte_offset + t->share_offset * es;
    if (off % es) off += es - off % es; /* data aligned to its element size, as C requires (an fp32 view of a 16-bit tensor's buffer) */
    if (off + lo < 0) off = -lo;
    t->region = o->region;
    t->byte_offset = (size_t)off;
  } else {
    t->region = c->nr++;
    t->byte_offset = (size_t)(-lo);
  }
  size_t end = t->byte_offset + (size_t)hi;
  if (end > c->region_bytes[t->region]) c->region_bytes[t->region] = end;
}

/* Element offset of logical index e of a laid-out tensor (fz_layout). */
FZ_NOCOV static int64_t fz_elem_offset(const fz_tensor* t, int64_t e) {
  return t->packed ? e : fz_offset(&t->d, t->s, e);
}

FZ_NOCOV static void fz_layout(fz_call* c) {
  bool placed[FZ_MAX_TENSORS];
  c->nr = 0;
  memset(c->region_bytes, 0, sizeof c->region_bytes);
  for (int i = 0; i < c->nt; i++) {
    fz_tensor* t = &c->t[i];
    t->region = -1;
    t->huge = false;
    t->numel = fz_numel(&t->d);
    t->packed = false;
    if (fz_rank_ok(&t->d)) {
      fz_strides(&t->d, t->s);
      int64_t acc = 1;
      t->packed = true;
      for (int r = t->d.rank - 1; r >= 0; r--) {
        if (t->d.dims[r] > 1 && t->s[r] != acc) t->packed = false;
        if (t->d.dims[r] > 0 && __builtin_mul_overflow(acc, t->d.dims[r], &acc)) t->packed = false;
      }
    }
    placed[i] = !t->passed || t->null_data;
    if (t->share_with == i) t->share_with = -1;
  }
  for (int round = 0; round <= c->nt; round++)
    for (int i = 0; i < c->nt; i++) {
      const int j = c->t[i].share_with;
      if (!placed[i] && (j < 0 || placed[j] || round == c->nt)) fz_place(c, i, placed);
    }
  for (int i = 0; i < c->nt; i++) {
    fz_tensor* t = &c->t[i];
    t->aliased = false;
    for (int j = 0; j < c->nt; j++)
      if (j != i && t->is_output && t->region >= 0 && c->t[j].region == t->region && !c->t[j].is_output) t->aliased = true;
  }
}

/* Fills the template: region bytes 0xA5 (gaps), output elements poison, then input elements
 * from value(tensor index, linear index) rounded to the tensor's dtype. */
/* ------------------------------------------------------------------ case building */

/* Unlike the helpers above, these take part in decoding the input into a case, and keep their
 * coverage instrumentation like the targets' own case builders. Not every target uses each. */
#define FZ_DECODE __attribute__((unused))

static const linattn_dtype fz_dtypes[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};

/* Starts a call of nt tensors: each passed, of dtype dt, in its own region, zero rank; those
 * whose bit is set in outputs (1u << index) are outputs. */
FZ_DECODE static void fz_init_tensors(fz_call* k, int nt, const char* const* names, unsigned outputs, linattn_dtype dt) {
  k->nt = nt;
  for (int i = 0; i < nt; i++) {
    fz_tensor* t = &k->t[i];
    memset(t, 0, sizeof *t);
    t->name = names[i];
    t->share_with = -1;
    t->is_output = (outputs >> i) & 1u;
    t->passed = true;
    t->d.dtype = dt;
  }
}

/* Sets rank and dims (unused dims 0) and clears the strides (packed). */
FZ_DECODE static void fz_set_dims(fz_tensor* t, int rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  t->d.rank = rank;
  t->d.dims[0] = d0;
  t->d.dims[1] = d1;
  t->d.dims[2] = d2;
  t->d.dims[3] = d3;
  memset(t->d.strides, 0, sizeof t->d.strides);
}

FZ_DECODE static int64_t fz_pick_dim(fz_reader* r, const int64_t* common, int ncommon, const int64_t* rare, int nrare) {
  if (fz_chance(r, 8)) return rare[fz_pick(r, nrare)];
  return common[fz_pick(r, ncommon)];
}

/* A dtype other than dt: a pick from fz_dtypes, else f32_alt when dt is F32, else F32. */
FZ_DECODE static linattn_dtype fz_other_dtype(linattn_dtype dt, fz_reader* r, linattn_dtype f32_alt) {
  linattn_dtype o = fz_dtypes[fz_pick(r, 3)];
  if (o == dt) o = dt == LINATTN_DTYPE_F32 ? f32_alt : LINATTN_DTYPE_F32;
  return o;
}

/* Gives tensor i of t[0..nt) its own region, and the tensors placed in its region theirs. */
FZ_DECODE static void fz_unshare(fz_tensor* t, int nt, int i) {
  t[i].share_with = -1;
  for (int j = 0; j < nt; j++)
    if (t[j].share_with == i) t[j].share_with = -1;
}

/* Zero-element tensors may have data == NULL: each in its own region gets it at random (with
 * passed_only, only the passed ones, and absent ones read no decision). */
FZ_DECODE static void fz_null_empty(fz_call* k, bool passed_only, fz_reader* r) {
  for (int i = 0; i < k->nt; i++) {
    fz_tensor* t = &k->t[i];
    if ((!passed_only || t->passed) && fz_numel(&t->d) == 0 && t->share_with < 0 && fz_chance(r, 50)) t->null_data = true;
  }
}

/* Places output o at the start of tensor i's region (with data), after giving the tensors placed
 * in o's region their own. */
FZ_DECODE static void fz_overlap(fz_tensor* t, int nt, int o, int i) {
  for (int j = 0; j < nt; j++)
    if (t[j].share_with == o) t[j].share_with = -1;
  t[o].share_with = i;
  t[o].share_offset = 0;
  t[o].null_data = false;
}

/* One random change to tensor i of t[0..nt): rank, a dim, a stride, dtype, passed, NULL data, or
 * its placement. Returns true when it placed the tensor in another's region (share_with is any
 * of 0..nt-1, i included: the caller drops what it does not want). */
FZ_DECODE static bool fz_mutate_tensor(fz_tensor* t, int nt, int i, fz_reader* r) {
  const int a = fz_pick(r, 4);
  switch (fz_pick(r, 7)) {
    case 0: t[i].d.rank = fz_pick(r, 7) - 1; return false;
    case 1: t[i].d.dims[a] = fz_pick(r, 11) - 1; return false;
    case 2: t[i].d.strides[a] = fz_pick(r, 72) - 2; return false;
    case 3: t[i].d.dtype = (linattn_dtype)fz_pick(r, 5); return false;
    case 4: t[i].passed = !t[i].passed; return false;
    case 5: t[i].null_data = !t[i].null_data; return false;
    default:
      t[i].share_with = fz_pick(r, nt);
      t[i].share_offset = fz_pick(r, 9);
      return true;
  }
}

/* A case of some targets reads more bytes than libFuzzer's first inputs hold (it grows the length
 * slowly): their mode and perturbation decisions read the input backwards from its end, so that
 * short inputs reach every mode too. */
FZ_NOCOV static fz_reader fz_tail_reader(const uint8_t* data, size_t size, uint8_t* buf, size_t cap) {
  const size_t n = size < cap ? size : cap;
  for (size_t i = 0; i < n; i++) buf[i] = data[size - 1 - i];
  return (fz_reader){buf, n, 0};
}

/* x rounded to dt's precision. */
FZ_NOCOV static double fz_round_to(double x, linattn_dtype dt) {
  unsigned char tmp[4];
  return fz_store(tmp, dt, x);
}

/* A zeroed array for the values of tensor t: one per logical element if t is backed (placed in a
 * region, not huge), else none; *n of them. NULL when there are more than a region may hold
 * (zero strides over huge dims: too many to fill and check) or the allocation fails. */
FZ_NOCOV static double* fz_values_alloc(const fz_tensor* t, int64_t* n) {
  *n = t->region >= 0 && !t->huge ? fz_numel(&t->d) : 0;
  if (*n < 0) *n = 0;
  if (*n > (int64_t)FZ_MAX_REGION_BYTES) return NULL;
  return (double*)calloc((size_t)*n + 1, sizeof(double));
}

/* A value for a target's xmode: 1 uniform in [-wide, wide] (function tails), 2 from a few special
 * values, else uniform in [-normal, normal]. */
FZ_NOCOV static double fz_xmode_value(fz_rng* g, int xmode, double wide, double normal) {
  if (xmode == 1) return fz_uniform(g, -wide, wide);
  if (xmode == 2) return (double[]){0.0, 1.0, -1.0, 0.5, -20.0, 20.0}[fz_next(g) % 6];
  return fz_uniform(g, -normal, normal);
}

/* ------------------------------------------------------------------ templates and instances */

typedef double (*fz_value_fn)(void* user, int tensor, int64_t index);

FZ_NOCOV static void fz_make_template(fz_call* c, fz_value_fn value, void* user) {
  for (int r = 0; r < c->nr; r++) {
    c->tmpl[r] = (unsigned char*)malloc(c->region_bytes[r] ? c->region_bytes[r] : 1);
    memset(c->tmpl[r], 0xA5, c->region_bytes[r]);
  }
  for (int pass = 0; pass < 2; pass++) {
    for (int i = 0; i < c->nt; i++) {
      fz_tensor* t = &c->t[i];
      if (t->region < 0 || t->huge || t->numel <= 0 || !fz_esize(t->d.dtype)) continue;
      if ((pass == 0) != t->is_output) continue;
      const size_t es = fz_esize(t->d.dtype);
      unsigned char* base = c->tmpl[t->region] + t->byte_offset;
      for (int64_t e = 0; e < t->numel; e++) {
        unsigned char* p = base + fz_elem_offset(t, e) * (int64_t)es;
        if (t->is_output) fz_store_poison(p, t->d.dtype);
        else fz_store(p, t->d.dtype, value(user, i, e));
      }
    }
  }
}

FZ_NOCOV static void fz_free_template(fz_call* c) {
  for (int r = 0; r < c->nr; r++) free(c->tmpl[r]);
}

/* Fresh copy of the template; descriptors point into it. Regions of 0 bytes are malloc(0):
 * any access through them is an ASan error. */
FZ_NOCOV static void fz_instance_make(const fz_call* c, fz_instance* in) {
  for (int r = 0; r < c->nr; r++) {
    in->mem[r] = (unsigned char*)malloc(c->region_bytes[r]);
    if (c->region_bytes[r]) memcpy(in->mem[r], c->tmpl[r], c->region_bytes[r]);
  }
  for (int i = 0; i < c->nt; i++) {
    in->d[i] = c->t[i].d;
    in->d[i].data = c->t[i].region >= 0 ? in->mem[c->t[i].region] + c->t[i].byte_offset : NULL;
  }
}

FZ_NOCOV static void fz_instance_free(const fz_call* c, fz_instance* in) {
  for (int r = 0; r < c->nr; r++) free(in->mem[r]);
}

FZ_NOCOV static const linattn_tensor* fz_arg(const fz_call* c, const fz_instance* in, int i) {
  return c->t[i].passed ? &in->d[i] : NULL;
}

/* A NaN's sign and payload as fp32 bits, quieted (what a conversion to fp32 or arithmetic on it
 * yields), or 0 if the bits of dtype dt at p are not a NaN. */
FZ_NOCOV static uint32_t fz_quiet_nan_f32(const unsigned char* p, linattn_dtype dt) {
  uint32_t f;
  uint16_t h;
  if (dt == LINATTN_DTYPE_F32) {
    memcpy(&f, p, 4);
  } else {
    memcpy(&h, p, 2);
    if (dt == LINATTN_DTYPE_BF16) f = (uint32_t)h << 16;
    else if ((h & 0x7c00u) == 0x7c00u) f = ((uint32_t)(h & 0x8000u) << 16) | 0x7f800000u | ((uint32_t)(h & 0x3ffu) << 13);
    else return 0;
  }
  return (f & 0x7f800000u) == 0x7f800000u && (f & 0x7fffffu) ? f | 0x400000u : 0;
}

/* Whether the quieted NaN q (fp32 bits), narrowed to dt (payload truncated), is dt's poison up
 * to the sign (a negation flips a NaN's sign). */
FZ_NOCOV static bool fz_nan_becomes_poison(uint32_t q, linattn_dtype dt) {
  unsigned char poison[4];
  memset(poison, 0, sizeof poison);
  fz_store_poison(poison, dt);
  const uint32_t want = fz_quiet_nan_f32(poison, dt);
  const uint32_t keep = dt == LINATTN_DTYPE_F32 ? 0x7fffffffu : dt == LINATTN_DTYPE_F16 ? 0x7fffe000u : 0x7fff0000u;
  return q && (q & keep) == (want & keep);
}

/* Whether an input's bytes hold a NaN that can come out as dt's poison pattern: a NaN carries
 * its payload through the arithmetic and through conversions (quieted, truncated), so
 * such an input (random bits, or a tensor read through another dtype in a shared buffer) can
 * make a written output equal the poison: its "not written" check is void. Every input byte
 * offset is read as each dtype. */
FZ_NOCOV static bool fz_inputs_hold_poison(const fz_call* c, linattn_dtype dt) {
  static const linattn_dtype as[] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  if (!fz_esize(dt)) return false;
  for (int i = 0; i < c->nt; i++) {
    const fz_tensor* t = &c->t[i];
    if (t->is_output || !t->passed || t->region < 0) continue;
    for (int a = 0; a < 3; a++)
      for (size_t b = 0; b + fz_esize(as[a]) <= c->region_bytes[t->region]; b += 2)
        if (fz_nan_becomes_poison(fz_quiet_nan_f32(c->tmpl[t->region] + b, as[a]), dt)) return true;
  }
  return false;
}

/* Every byte outside the logical elements of outputs must equal the template; when
 * `succeeded`, outputs may have changed and (unless aliased with an input, or an input holds
 * the poison pattern) must hold no poison any more. */
FZ_NOCOV static void fz_check_instance(const fz_call* c, const fz_instance* in, bool succeeded, const char* what) {
  if (!succeeded) { /* nothing may have changed: compare whole regions first */
    bool same = true;
    for (int r = 0; r < c->nr && same; r++) same = memcmp(in->mem[r], c->tmpl[r], c->region_bytes[r]) == 0;
    if (same) return;
  }
  unsigned char* writable[FZ_MAX_REGIONS];
  for (int r = 0; r < c->nr; r++) writable[r] = (unsigned char*)calloc(c->region_bytes[r] ? c->region_bytes[r] : 1, 1);
  for (int i = 0; i < c->nt && succeeded; i++) {
    const fz_tensor* t = &c->t[i];
    if (!t->is_output || t->region < 0 || t->huge || t->numel <= 0) continue;
    const size_t es = fz_esize(t->d.dtype);
    const bool check_written = !t->aliased && !fz_inputs_hold_poison(c, t->d.dtype);
    for (int64_t e = 0; e < t->numel; e++) {
      size_t off = t->byte_offset + (size_t)(fz_elem_offset(t, e) * (int64_t)es);
      memset(writable[t->region] + off, 1, es);
      if (check_written && fz_is_poison(in->mem[t->region] + off, t->d.dtype))
        FZ_FAIL("%s: %s element %lld was not written", what, t->name, (long long)e);
    }
  }
  for (int r = 0; r < c->nr; r++) {
    for (size_t b = 0; b < c->region_bytes[r]; b++) {
      if (!writable[r][b] && in->mem[r][b] != c->tmpl[r][b]) {
        const char* owner = "?";
        for (int i = 0; i < c->nt; i++)
          if (c->t[i].region == r) owner = c->t[i].name;
        FZ_FAIL("%s: byte %zu of the region of %s changed (%s call)", what, b, owner,
                succeeded ? "successful" : "failed");
      }
    }
    free(writable[r]);
  }
}

/* Reads logical element e of tensor i of an instance. */
FZ_NOCOV static double fz_get(const fz_call* c, const fz_instance* in, int i, int64_t e) {
  const fz_tensor* t = &c->t[i];
  return fz_load((const unsigned char*)in->d[i].data + fz_elem_offset(t, e) * (int64_t)fz_esize(t->d.dtype), t->d.dtype);
}

/* Output tensors of two instances must agree bit for bit (same ISA, different threading). */
FZ_NOCOV static void fz_compare_bits(const fz_call* c, const fz_instance* a, const fz_instance* b, const char* what) {
  for (int i = 0; i < c->nt; i++) {
    const fz_tensor* t = &c->t[i];
    if (!t->is_output || t->region < 0 || t->huge || t->numel <= 0) continue;
    const size_t es = fz_esize(t->d.dtype);
    for (int64_t e = 0; e < t->numel; e++) {
      int64_t off = fz_elem_offset(t, e) * (int64_t)es;
      if (memcmp((const char*)a->d[i].data + off, (const char*)b->d[i].data + off, es) != 0)
        FZ_FAIL("%s: %s element %lld differs bitwise (%.9g vs %.9g)", what, t->name, (long long)e, fz_get(c, a, i, e),
                fz_get(c, b, i, e));
    }
  }
}

/* |x - r| <= rel * max|ref| + ulps * ulp_dt(r) + 1e-35, with overflow and NaN handled:
 * a finite reference within range needs a finite result; NaN reference needs NaN. */
FZ_NOCOV static void fz_compare_values(const char* what, const char* name, int64_t e, double x, double r, double maxref,
                              linattn_dtype dt, double rel, double ulps) {
  if (isnan(r)) {
    FZ_CHECK(isnan(x), "%s: %s[%lld] = %.9g, reference NaN", what, name, (long long)e, x);
    return;
  }
  if (!isfinite(r) || fabs(r) > 0.5 * fz_dtype_max(dt) || maxref > 1e30) return; /* overflow region */
  /* 1e-35: the fast kernels flush subnormals to zero (FTZ/DAZ), the reference kernels do not */
  const double tol = rel * maxref + ulps * fz_ulp(r, dt) + 1e-35;
  FZ_CHECK(isfinite(x) && fabs(x - r) <= tol, "%s: %s[%lld] = %.9g, reference %.9g (|diff| %.3g > tol %.3g, max|ref| %.3g)",
           what, name, (long long)e, x, r, fabs(x - r), tol, maxref);
}

/* A target's exception to the comparison: true when output tensor `tensor` of the chosen ISA's
 * results x is checked only for robustness (a result the library documents as allowed to differ). */
typedef bool (*fz_robust_only_fn)(const void* user, const fz_call* c, const fz_instance* x, int tensor);

/* Output tensors of an instance vs another instance (same descriptors), with tolerance
 * rel * max|ref| + atol + ulps ulp (atol covers cancellation: a small result of large terms);
 * robust_only (or NULL) exempts tensors. */
FZ_NOCOV static void fz_compare_instances(const fz_call* c, const fz_instance* x, const fz_instance* ref, const char* what,
                                 double rel, double rel_lowp, double ulps, double atol, fz_robust_only_fn robust_only,
                                 const void* user) {
  for (int i = 0; i < c->nt; i++) {
    const fz_tensor* t = &c->t[i];
    if (!t->is_output || t->region < 0 || t->huge || t->numel <= 0) continue;
    if (robust_only && robust_only(user, c, x, i)) continue;
    double maxref = 0.0;
    bool overflow = false;
    for (int64_t e = 0; e < t->numel; e++) {
      double r = fz_get(c, ref, i, e);
      if (!isfinite(r)) overflow = true;
      else if (fabs(r) > maxref) maxref = fabs(r);
    }
    /* non-finite values in fp32 arithmetic: inf vs NaN and near-overflow rounding depend on
     * the order of operations, so such a tensor is only checked for robustness */
    if (overflow || maxref > 0.25 * fz_dtype_max(t->d.dtype) || maxref > 1e30) continue;
    const double rl = t->d.dtype == LINATTN_DTYPE_F32 ? rel : rel_lowp;
    for (int64_t e = 0; e < t->numel; e++)
      fz_compare_values(what, t->name, e, fz_get(c, x, i, e), fz_get(c, ref, i, e), maxref + atol / rl, t->d.dtype, rl,
                        ulps);
  }
}

/* ------------------------------------------------------------------ strides */

/* Layout choices for a strided rank-3 tensor (dims d0, d1, d2; innermost contiguous):
 * 0 packed (all-zero strides), 1 explicit packed strides, 2 padded rows and batches,
 * 3 batch-minor (memory order d1, d0, d2), 4 padded batch-minor. */
FZ_NOCOV static void fz_strides3(int mode, const int64_t* dims, int pad1, int pad0, int64_t* s) {
  const int64_t d0 = dims[0] > 0 ? dims[0] : 1, d1 = dims[1] > 0 ? dims[1] : 1, d2 = dims[2] > 0 ? dims[2] : 1;
  s[3] = 0;
  switch (mode) {
    case 0: s[0] = s[1] = s[2] = 0; break;
    case 1: s[2] = 1; s[1] = d2; s[0] = d1 * d2; break;
    case 2: s[2] = 1; s[1] = d2 + pad1; s[0] = d1 * s[1] + pad0; break;
    case 3: s[2] = 1; s[0] = d2; s[1] = d0 * d2; break;
    default: s[2] = 1; s[0] = d2 + pad1; s[1] = d0 * s[0] + pad0; break;
  }
}

/* ------------------------------------------------------------------ contexts */

/* ISA indexes are linattn_isa values: 0 = AUTO, then every family of the kernel registry
 * (1 .. linattn_isa_count(), at most FZ_MAX_ISA). */
#define FZ_MAX_ISA 15

/* Host parallel-for that runs the tasks serially in reverse order: results must not depend on
 * the order in which a host schedules tasks. Counts the tasks it ran. */
static size_t fz_host_tasks_run;
FZ_NOCOV static void fz_host_parallel_for(void* host, linattn_task_fn task, void* arg, size_t n) {
  (void)host;
  for (size_t i = n; i-- > 0;) task(arg, i);
  fz_host_tasks_run += n;
}

/* Tuning entries (docs/tuning.md). LINATTN_TUNE is read when a context is created, so a case
 * picks an entry by creating its contexts with the variable set. Index 0 is the process's own
 * entry (LINATTN_TUNE as the process got it: the CPU's, unless set), which inputs without the
 * byte decode to; 1 .. FZ_MAX_TUNINGS are the named entries, read once from the message with
 * which context creation refuses an unknown name ("... expected one of auto, zen4, ..."): the
 * library's own list, through the public API only. */
#define FZ_MAX_TUNINGS 8
static char fz_tune_names[FZ_MAX_TUNINGS + 1][32]; /* [0]: "own" */
static int fz_tune_count;                          /* 1 + named entries, once read */
static char fz_tune_env[64];                       /* LINATTN_TUNE as the process got it */
static bool fz_tune_env_set;

/* LINATTN_TUNE for entry tune (0: as the process got it). */
FZ_NOCOV static void fz_tune_setenv(int tune) {
  if (tune > 0) setenv("LINATTN_TUNE", fz_tune_names[tune], 1);
  else if (fz_tune_env_set) setenv("LINATTN_TUNE", fz_tune_env, 1);
  else unsetenv("LINATTN_TUNE");
}

FZ_NOCOV static void fz_tunings_init(void) {
  if (fz_tune_count > 0) return;
  const char* env = getenv("LINATTN_TUNE");
  fz_tune_env_set = env != NULL;
  snprintf(fz_tune_env, sizeof fz_tune_env, "%s", env ? env : "");
  snprintf(fz_tune_names[0], sizeof fz_tune_names[0], "own");
  fz_tune_count = 1;
  setenv("LINATTN_TUNE", "fuzz-no-such-entry", 1);
  linattn_context* ctx = NULL;
  if (linattn_context_create(NULL, &ctx) == LINATTN_SUCCESS) FZ_FAIL("LINATTN_TUNE=fuzz-no-such-entry accepted");
  const char* list = strstr(linattn_last_error(), "expected one of ");
  if (!list) FZ_FAIL("no list of tuning entries in the LINATTN_TUNE refusal: %s", linattn_last_error());
  list += strlen("expected one of ");
  while (*list && fz_tune_count <= FZ_MAX_TUNINGS) {
    const size_t n = strcspn(list, ", ");
    if (n > 0 && n < sizeof fz_tune_names[0] && !(n == 4 && !strncmp(list, "auto", 4))) {
      memcpy(fz_tune_names[fz_tune_count], list, n);
      fz_tune_names[fz_tune_count++][n] = '\0';
    }
    list += n;
    list += strspn(list, ", ");
  }
  fz_tune_setenv(0);
  if (fz_tune_count < 2) FZ_FAIL("no tuning entry named in: %s", linattn_last_error());
}

/* Chooses a tuning entry (0: the process's own). */
FZ_NOCOV static int fz_pick_tuning(fz_reader* r) {
  fz_tunings_init();
  return fz_pick(r, fz_tune_count);
}

FZ_NOCOV static const char* fz_tuning_name(int tune) { return tune >= 0 && tune < fz_tune_count ? fz_tune_names[tune] : "own"; }

/* Cached contexts: isa (a linattn_isa value), threads 1..3, host 0 = built-in pool, 1 = host,
 * tuning entry (fz_pick_tuning). */
FZ_NOCOV static linattn_context* fz_context_tuned(int isa, int threads, int host, int tune) {
  static linattn_context* cache[FZ_MAX_ISA + 1][4][2][FZ_MAX_TUNINGS + 1];
  linattn_context** slot = &cache[isa][threads][host][tune];
  if (!*slot) {
    linattn_context_options o;
    linattn_context_options_init(&o);
    o.isa = (linattn_isa)isa;
    o.num_threads = threads;
    if (host) o.parallel_for = fz_host_parallel_for;
    if (tune > 0) fz_tune_setenv(tune);
    linattn_status st = linattn_context_create(&o, slot);
    if (tune > 0) fz_tune_setenv(0);
    if (st != LINATTN_SUCCESS) FZ_FAIL("context_create(isa %s, %d threads, tuning %s) failed: %s", linattn_isa_name(o.isa), threads,
                                       fz_tuning_name(tune), linattn_status_string(st));
    FZ_CHECK(linattn_context_num_threads(*slot) == threads, "context_num_threads");
  }
  return *slot;
}

FZ_NOCOV static linattn_context* fz_context(int isa, int threads, int host) { return fz_context_tuned(isa, threads, host, 0); }

/* Chooses AUTO or an available family. */
FZ_NOCOV static int fz_pick_isa(fz_reader* r) {
  if (linattn_isa_count() > FZ_MAX_ISA) FZ_FAIL("%d kernel families: raise FZ_MAX_ISA", linattn_isa_count());
  int avail[FZ_MAX_ISA + 1], n = 0;
  for (int i = LINATTN_ISA_AUTO; i <= linattn_isa_count(); i++)
    if (i == LINATTN_ISA_AUTO || linattn_isa_available((linattn_isa)i)) avail[n++] = i;
  return avail[fz_pick(r, n)];
}

/* Threads of a case: 1 (2 in 3 cases, which then skip the one-thread rerun), 2 or 3. */
FZ_NOCOV static int fz_pick_threads(fz_reader* r) {
  const int n = fz_pick(r, 6);
  return n < 4 ? 1 : n - 2;
}

FZ_NOCOV static void* fz_aligned(size_t bytes) {
  void* p = NULL;
  if (posix_memalign(&p, 64, bytes ? bytes : 1) != 0) abort();
  return p;
}

/* ------------------------------------------------------------------ one case, end to end */

enum { EXPECT_VALID, EXPECT_INVALID, EXPECT_EITHER };
enum { WS_NULL, WS_EXACT, WS_LARGER, WS_TOO_SMALL, WS_MISALIGNED };

/* The workspace handed to a call in mode ws_mode, given the size query's status and answer. */
typedef struct fz_workspace {
  void* block; /* allocation (freed by fz_workspace_done) */
  void* ptr;
  size_t size;
} fz_workspace;

FZ_NOCOV static void fz_workspace_make(fz_workspace* w, int ws_mode, linattn_status query, size_t need) {
  w->block = w->ptr = NULL;
  w->size = 0;
  if (query != LINATTN_SUCCESS || ws_mode == WS_NULL) return;
  const size_t bytes = need + (ws_mode == WS_LARGER ? 192 : 0) + (ws_mode == WS_MISALIGNED ? 64 : 0);
  w->block = w->ptr = fz_aligned(bytes);
  w->size = bytes;
  if (ws_mode == WS_TOO_SMALL) w->size = need ? need - 1 : 0;
  if (ws_mode == WS_MISALIGNED) w->ptr = (char*)w->block + 16, w->size = need;
}

/* Checks a finished call against its size query (which validates exactly like the call) and
 * frees the workspace. */
FZ_NOCOV static void fz_workspace_done(fz_workspace* w, int ws_mode, linattn_status query, linattn_status st) {
  if (st != LINATTN_SUCCESS) FZ_CHECK(linattn_last_error()[0] != '\0', "failed call without an error message");
  if (ws_mode == WS_NULL || query != LINATTN_SUCCESS)
    FZ_CHECK(query == st, "workspace_size returned %s but the call %s", linattn_status_string(query),
             linattn_status_string(st));
  free(w->block);
}

/* Mode of a case (after its valid form is built): valid (6 in 10), one perturbation the
 * header makes an error (3 in 10; the first that applies, from a random start), or raw
 * mutations (1 in 10). */
typedef const char* (*fz_perturb_fn)(void* c, fz_reader* r, int id);
typedef void (*fz_mutate_fn)(void* c, fz_reader* r);

FZ_NOCOV static void fz_choose_mode(void* c, fz_reader* r, int nperturb, fz_perturb_fn perturb, fz_mutate_fn mutate,
                                    int* expect, const char** what) {
  const int mode = fz_pick(r, 10);
  if (mode >= 6 && mode <= 8) {
    const int first = fz_pick(r, nperturb);
    for (int i = 0; i < nperturb && *expect == EXPECT_VALID; i++) {
      const char* name = perturb(c, r, (first + i) % nperturb);
      if (name) *what = name, *expect = EXPECT_INVALID;
    }
  } else if (mode == 9) {
    mutate(c, r);
    *expect = EXPECT_EITHER;
    *what = "arbitrary";
  }
}

/* Arguments that pass validation but name a tensor too large to back (fz_place gives it
 * FZ_HUGE_REGION_BYTES) cannot run: the call may read all of that tensor, memory that does not
 * exist (a conv past_state of 6.6e12 positions, for a dilation of 2^40, found by the fuzzer).
 * For such a case fz_query_only is set, and a target's run makes only the size query (which
 * validates exactly like the call) when it succeeds, and sets fz_call_skipped. */
static bool fz_query_only, fz_call_skipped;

/* For a target's run after its size query qs (need bytes): true when the call must be skipped
 * (fz_query_only and the query succeeded); then need is reported and fz_call_skipped set. */
FZ_NOCOV static bool fz_stop_after_query(linattn_status qs, size_t need, size_t* need_out) {
  if (!fz_query_only || qs != LINATTN_SUCCESS) return false;
  fz_call_skipped = true;
  if (need_out) *need_out = need;
  return true;
}

FZ_NOCOV static bool fz_has_unbacked(const fz_call* c) {
  for (int i = 0; i < c->nt; i++)
    if (c->t[i].passed && !c->t[i].null_data && c->t[i].huge) return true;
  return false;
}

/* A target's call (sizes through need_out) and its float64 oracle check. */
typedef linattn_status (*fz_run_fn)(const void* c, linattn_context* ctx, const fz_call* k, fz_instance* in, int ws_mode,
                                    size_t* need_out);
typedef void (*fz_oracle_fn)(const void* c, const fz_call* k, const fz_instance* in, const char* what);

typedef struct fz_target {
  const void* c; /* the target's case */
  const fz_call* call;
  int expect, isa, threads, host, ws_mode;
  int tune; /* tuning entry of the chosen ISA's contexts (fz_pick_tuning; 0: the process's own) */
  fz_run_fn run;
  fz_oracle_fn oracle;
  bool oracle_on_chosen; /* also check the chosen ISA against the oracle */
  double rel, rel_lowp, ulps, atol; /* chosen ISA vs reference kernels (fz_compare_instances) */
  const double* oracle_atol; /* or NULL: added to atol, set by the oracle (cancellation bound) */
  fz_robust_only_fn robust_only; /* or NULL: tensors exempt from that comparison */
} fz_target;

/* Runs a laid-out case with its template made: the chosen ISA and threading, then the reference
 * kernels (same status, results within tolerance, the oracle), then the same ISA on one thread
 * (the same bits). */
FZ_NOCOV static void fz_run_case(const fz_target* t) {
  const fz_call* k = t->call;
  linattn_context* ctx = fz_context_tuned(t->isa, t->threads, t->host, t->tune);
  linattn_context* ctx1 = fz_context_tuned(t->isa, 1, 0, t->tune);
  linattn_context* ref = fz_context(1, 1, 0);

  fz_instance a, b;
  fz_instance_make(k, &a);
  size_t need = 0;
  fz_query_only = fz_has_unbacked(k);
  fz_call_skipped = false;
  linattn_status st = t->run(t->c, ctx, k, &a, t->ws_mode, &need);
  snprintf(fz_chosen_error, sizeof fz_chosen_error, "%s", st == LINATTN_SUCCESS ? "" : linattn_last_error());
  if (fz_query_only) {
    /* An unbacked tensor's extent reaches far beyond its 64-byte region, so whether it overlaps
     * another tensor depends on where the allocator put them: the reference must see the same
     * addresses (instance a). Its outputs are untouched either way (call skipped or refused). */
    fz_check_instance(k, &a, false, "size query");
    const bool chosen_skipped = fz_call_skipped;
    fz_call_skipped = false;
    const linattn_status rs = t->run(t->c, ref, k, &a, WS_NULL, NULL);
    FZ_CHECK(fz_call_skipped == chosen_skipped && rs == st, "reference size query returned %s, chosen ISA %s",
             linattn_status_string(rs), linattn_status_string(st));
    fz_check_instance(k, &a, false, "size query (reference)");
    const bool ws_only = t->ws_mode == WS_TOO_SMALL || t->ws_mode == WS_MISALIGNED; /* the query sees no workspace */
    if (t->expect == EXPECT_INVALID && !ws_only) FZ_CHECK(st != LINATTN_SUCCESS, "invalid call (%s) passed the size query", fz_case_name);
    fz_instance_free(k, &a);
    return;
  }
  const bool ws_bad = t->ws_mode == WS_TOO_SMALL || t->ws_mode == WS_MISALIGNED;
  if (t->expect == EXPECT_VALID) {
    FZ_CHECK(st == LINATTN_SUCCESS, "valid call failed: %s", linattn_status_string(st));
  } else if (t->expect == EXPECT_INVALID && !(ws_bad && need == 0)) {
    FZ_CHECK(st != LINATTN_SUCCESS, "invalid call (%s) succeeded", fz_case_name);
    if (ws_bad)
      FZ_CHECK(st == (t->ws_mode == WS_TOO_SMALL ? LINATTN_ERROR_WORKSPACE_TOO_SMALL : LINATTN_ERROR_INVALID_ARGUMENT),
               "bad workspace gave %s", linattn_status_string(st));
    else
      FZ_CHECK(st == LINATTN_ERROR_INVALID_ARGUMENT, "invalid call gave %s", linattn_status_string(st));
  }
  fz_check_instance(k, &a, st == LINATTN_SUCCESS, "chosen ISA");

  /* the reference kernels: same validation, results within tolerance */
  fz_instance_make(k, &b);
  linattn_status rs = t->run(t->c, ref, k, &b, WS_NULL, NULL);
  if (!ws_bad)
    FZ_CHECK(rs == st, "reference ISA returned %s, chosen ISA %s", linattn_status_string(rs), linattn_status_string(st));
  fz_check_instance(k, &b, rs == LINATTN_SUCCESS, "reference ISA");
  if (st == LINATTN_SUCCESS && rs == LINATTN_SUCCESS) {
    if (t->expect == EXPECT_VALID) t->oracle(t->c, k, &b, "reference kernels vs float64 oracle");
    if (t->expect == EXPECT_VALID && t->oracle_on_chosen) t->oracle(t->c, k, &a, "chosen ISA vs float64 oracle");
    fz_compare_instances(k, &a, &b, "chosen ISA vs reference kernels", t->rel, t->rel_lowp, t->ulps,
                         t->atol + (t->oracle_atol ? *t->oracle_atol : 0.0), t->robust_only, t->c);
  }
  fz_instance_free(k, &b);

  /* same ISA on one thread: bit-identical */
  if (st == LINATTN_SUCCESS && (t->threads > 1 || t->host)) {
    fz_instance_make(k, &b);
    FZ_CHECK(t->run(t->c, ctx1, k, &b, WS_NULL, NULL) == LINATTN_SUCCESS, "one-thread call failed");
    fz_compare_bits(k, &a, &b, "threads vs one thread");
    fz_instance_free(k, &b);
  }
  fz_instance_free(k, &a);
}

#endif /* LINATTN_FUZZ_COMMON_H */
