/* Test tensors: allocation, views, fill/read with rounding, poison and write checks. */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

void* tk_xmalloc(size_t n) {
  void* p = malloc(n ? n : 1);
  if (!p) tk_fatal("out of memory (%zu bytes)", n);
  return p;
}

void* tk_xcalloc(size_t n, size_t size) {
  void* p = calloc(n ? n : 1, size ? size : 1);
  if (!p) tk_fatal("out of memory (%zu x %zu bytes)", n, size);
  return p;
}

double* tk_dalloc(int64_t n) { return (double*)tk_xcalloc((size_t)(n > 0 ? n : 1), sizeof(double)); }

void* tk_aligned_alloc(size_t alignment, size_t size) {
  void* p = NULL;
  if (posix_memalign(&p, alignment, size ? size : alignment) != 0) tk_fatal("out of memory (%zu bytes)", size);
  return p;
}

void tk_aligned_free(void* p) { free(p); }

int64_t tk_numel_dims(int32_t rank, const int64_t* dims) {
  int64_t n = 1;
  for (int32_t i = 0; i < rank; i++) n *= dims[i];
  return n;
}

int64_t tk_numel(const tk_tensor* t) { return tk_numel_dims(t->rank, t->dims); }

static tk_tensor alloc_with_strides(linattn_dtype dt, int32_t rank, const int64_t* dims,
                                    const int64_t* pad) {
  tk_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = dt;
  t.rank = rank;
  int64_t extent = 1;
  t.packed = true; /* padding dim 0 only adds slack at the end: strides stay packed */
  for (int32_t d = rank - 1; d >= 0; d--) {
    t.dims[d] = dims[d];
    t.strides[d] = extent;
    int64_t p = pad ? pad[d] : 0;
    if (p && d > 0) t.packed = false;
    extent *= dims[d] + p;
  }
  size_t esz = tk_dtype_size(dt);
  t.alloc_elems = (size_t)(extent > 0 ? extent : 0);
  size_t bytes = t.alloc_elems * esz;
  bytes = (bytes + 63) / 64 * 64;
  if (bytes == 0) bytes = 64;
  t.base = (unsigned char*)tk_aligned_alloc(64, bytes);
  memset(t.base, 0, bytes);
  t.span = t.base;
  t.data = t.base;
  return t;
}

tk_tensor tk_alloc(linattn_dtype dt, int32_t rank, const int64_t* dims) {
  return alloc_with_strides(dt, rank, dims, NULL);
}

tk_tensor tk_alloc_padded(linattn_dtype dt, int32_t rank, const int64_t* dims, const int64_t* pad) {
  return alloc_with_strides(dt, rank, dims, pad);
}

tk_tensor tk_view(const tk_tensor* parent, int64_t offset, int32_t rank, const int64_t* dims,
                  const int64_t* strides) {
  tk_tensor t;
  memset(&t, 0, sizeof t);
  t.dtype = parent->dtype;
  t.rank = rank;
  int64_t expect = 1;
  t.packed = true;
  for (int32_t d = rank - 1; d >= 0; d--) {
    t.dims[d] = dims[d];
    t.strides[d] = strides[d];
    if (dims[d] > 1 && strides[d] != expect) t.packed = false;
    expect *= dims[d];
  }
  t.data = (unsigned char*)parent->data + offset * (int64_t)tk_dtype_size(parent->dtype);
  t.base = NULL;
  t.span = parent->span;
  t.alloc_elems = parent->alloc_elems;
  return t;
}

void tk_free(tk_tensor* t) {
  if (t->base) tk_aligned_free(t->base);
  memset(t, 0, sizeof *t);
}

linattn_tensor tk_desc(const tk_tensor* t) {
  linattn_tensor d;
  memset(&d, 0, sizeof d);
  d.data = t->data;
  d.dtype = t->dtype;
  d.rank = t->rank;
  for (int32_t i = 0; i < t->rank; i++) {
    d.dims[i] = t->dims[i];
    d.strides[i] = t->packed ? 0 : t->strides[i];
  }
  return d;
}

int64_t tk_offset(const tk_tensor* t, const int64_t* idx) {
  int64_t o = 0;
  for (int32_t d = 0; d < t->rank; d++) o += idx[d] * t->strides[d];
  return o;
}

int64_t tk_offset_linear(const tk_tensor* t, int64_t linear) {
  /* packed row-major (most tensors): the linear index is the offset, without a division per
   * dimension (the per-element helpers were most of some suites' time) */
  if (t->packed) return linear;
  int64_t packed = 1;
  int32_t d0 = t->rank - 1;
  for (; d0 >= 0 && t->strides[d0] == packed; d0--) packed *= t->dims[d0];
  if (d0 < 0) return linear;
  int64_t o = 0;
  for (int32_t d = t->rank - 1; d >= 0; d--) {
    int64_t n = t->dims[d];
    o += (linear % n) * t->strides[d];
    linear /= n;
  }
  return o;
}

double tk_get(const tk_tensor* t, int64_t linear) {
  return tk_load(t->data, tk_offset_linear(t, linear), t->dtype);
}

double tk_set(tk_tensor* t, int64_t linear, double x) {
  return tk_store(t->data, tk_offset_linear(t, linear), t->dtype, x);
}

void tk_fill(tk_tensor* t, double* vals) {
  int64_t n = tk_numel(t);
  for (int64_t i = 0; i < n; i++) vals[i] = tk_set(t, i, vals[i]);
}

void tk_read(const tk_tensor* t, double* vals) {
  int64_t n = tk_numel(t);
  for (int64_t i = 0; i < n; i++) vals[i] = tk_get(t, i);
}

static void store_bits(void* base, size_t i, linattn_dtype dt, uint32_t bits) {
  if (dt == LINATTN_DTYPE_F32)
    memcpy((unsigned char*)base + 4 * i, &bits, 4);
  else
    ((uint16_t*)base)[i] = (uint16_t)bits;
}

static uint32_t load_bits(const void* base, size_t i, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) {
    uint32_t u;
    memcpy(&u, (const unsigned char*)base + 4 * i, 4);
    return u;
  }
  return ((const uint16_t*)base)[i];
}

void tk_poison(tk_tensor* t) {
  uint32_t p = tk_poison_bits(t->dtype);
  if (t->base) {
    for (size_t i = 0; i < t->alloc_elems; i++) store_bits(t->base, i, t->dtype, p);
  } else {
    int64_t n = tk_numel(t);
    for (int64_t i = 0; i < n; i++) store_bits(t->data, (size_t)tk_offset_linear(t, i), t->dtype, p);
  }
}

int64_t tk_count_nan(const tk_tensor* t) {
  int64_t n = tk_numel(t), bad = 0;
  for (int64_t i = 0; i < n; i++)
    if (isnan(tk_get(t, i))) bad++;
  return bad;
}

int64_t tk_count_gap_writes(const tk_tensor* t) {
  if (!t->base || t->alloc_elems == 0) return 0;
  unsigned char* mark = (unsigned char*)tk_xcalloc(t->alloc_elems, 1);
  size_t esz = tk_dtype_size(t->dtype);
  int64_t start = ((unsigned char*)t->data - t->base) / (int64_t)esz;
  int64_t n = tk_numel(t);
  for (int64_t i = 0; i < n; i++) mark[start + tk_offset_linear(t, i)] = 1;
  uint32_t p = tk_poison_bits(t->dtype);
  int64_t bad = 0;
  for (size_t i = 0; i < t->alloc_elems; i++)
    if (!mark[i] && load_bits(t->base, i, t->dtype) != p) bad++;
  free(mark);
  return bad;
}

int64_t tk_bits_differ(const tk_tensor* a, const tk_tensor* b, int64_t* first) {
  int64_t n = tk_numel(a), bad = 0;
  if (first) *first = -1;
  if (a->dtype != b->dtype || tk_numel(b) != n) {
    if (first) *first = 0;
    return n > 0 ? n : 1;
  }
  for (int64_t i = 0; i < n; i++) {
    uint32_t x = load_bits(a->data, (size_t)tk_offset_linear(a, i), a->dtype);
    uint32_t y = load_bits(b->data, (size_t)tk_offset_linear(b, i), b->dtype);
    if (x != y) {
      if (first && *first < 0) *first = i;
      bad++;
    }
  }
  return bad;
}

void tk_copy(tk_tensor* dst, const tk_tensor* src) {
  int64_t n = tk_numel(src);
  for (int64_t i = 0; i < n; i++)
    store_bits(dst->data, (size_t)tk_offset_linear(dst, i), dst->dtype,
               load_bits(src->data, (size_t)tk_offset_linear(src, i), src->dtype));
}

void tk_fill_normal(tk_rng* r, double* v, int64_t n, double sigma) {
  for (int64_t i = 0; i < n; i++) v[i] = sigma * tk_normal(r);
}

void tk_fill_uniform(tk_rng* r, double* v, int64_t n, double lo, double hi) {
  for (int64_t i = 0; i < n; i++) v[i] = tk_uniform_range(r, lo, hi);
}

void tk_normalise_rows(double* v, int64_t rows, int64_t d) {
  for (int64_t r = 0; r < rows; r++) {
    double s = 0;
    for (int64_t i = 0; i < d; i++) s += v[r * d + i] * v[r * d + i];
    s = 1.0 / sqrt(s + 1e-12);
    for (int64_t i = 0; i < d; i++) v[r * d + i] *= s;
  }
}

linattn_context* tk_context_create(linattn_isa isa, int32_t num_threads) {
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.isa = isa;
  o.num_threads = num_threads;
  linattn_context* ctx = NULL;
  linattn_status st = linattn_context_create(&o, &ctx);
  if (st != LINATTN_SUCCESS || !ctx)
    tk_fatal("linattn_context_create(isa %s, %d threads) failed: %s: %s", linattn_isa_name(isa),
             num_threads, linattn_status_string(st), linattn_last_error());
  return ctx;
}

int tk_available_isas(linattn_isa* out, int max) {
  /* LINATTN_TEST_ISAS=scalar,avx2 restricts the list (for debugging one kernel family) */
  const char* only = getenv("LINATTN_TEST_ISAS");
  int n = 0;
  for (int i = LINATTN_ISA_REFERENCE; i <= linattn_isa_count(); i++) { /* every family of the registry */
    const linattn_isa isa = (linattn_isa)i;
    if (!linattn_isa_available(isa)) continue;
    if (n >= max) tk_fatal("tk_available_isas: more than %d kernel families", max);
    if (only && *only) {
      const char* name = linattn_isa_name(isa);
      size_t len = strlen(name);
      bool listed = false;
      for (const char* p = only; (p = strstr(p, name)) != NULL; p += len)
        if ((p == only || p[-1] == ',') && (p[len] == ',' || p[len] == 0)) listed = true;
      if (!listed) continue;
    }
    out[n++] = isa;
  }
  return n;
}
