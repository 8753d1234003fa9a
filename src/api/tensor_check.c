#include "api/tensor_check.h"

#include <stdio.h>
#include <string.h>

const char* tview_dims_str(const int64_t* dims, int32_t rank, char* buf, size_t size) {
  size_t n = 0;
  n += (size_t)snprintf(buf + n, size - n, "(");
  for (int32_t i = 0; i < rank && n < size; i++)
    n += (size_t)snprintf(buf + n, size - n, i ? ", %lld" : "%lld", (long long)dims[i]);
  if (n < size) snprintf(buf + n, size - n, ")");
  return buf;
}

/* Packed row-major strides (size-1 axes may have any stride). */
static linattn_status tview_check_packed(const tview* v, const int64_t* packed) {
  for (int32_t i = 0; i < v->rank; i++)
    if (v->dims[i] > 1 && v->strides[i] != packed[i])
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                               "%s: must be packed row-major (strides all 0 or equal to the packed strides)", v->name);
  return LINATTN_SUCCESS;
}

/* Innermost stride 1, no zero or negative stride on an axis of size > 1, and distinct elements
 * apart: sorted by stride, each axis's stride steps over the whole extent of the axes inside it. */
static linattn_status tview_check_strided(const tview* v) {
  const int32_t rank = v->rank;
  if (rank > 0 && v->dims[rank - 1] > 1 && v->strides[rank - 1] != 1)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: innermost stride must be 1, got %lld", v->name,
                             (long long)v->strides[rank - 1]);
  for (int32_t i = 0; i < rank; i++)
    if (v->dims[i] > 1 && v->strides[i] == 0)
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                               "%s: stride %d is 0 for a dimension of size %lld (distinct elements would alias)",
                               v->name, (int)i, (long long)v->dims[i]);
  for (int32_t i = 0; i < rank; i++)
    if (v->strides[i] < 0)
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: stride %d is negative (%lld)", v->name, (int)i,
                               (long long)v->strides[i]);
  int32_t ax[LINATTN_MAX_RANK];
  int32_t na = 0;
  for (int32_t i = 0; i < rank; i++)
    if (v->dims[i] > 1) ax[na++] = i;
  for (int32_t i = 1; i < na; i++)
    for (int32_t j = i; j > 0 && v->strides[ax[j]] > v->strides[ax[j - 1]]; j--) {
      int32_t tmp = ax[j]; ax[j] = ax[j - 1]; ax[j - 1] = tmp;
    }
  for (int32_t i = 0; i + 1 < na; i++) {
    int64_t inner_extent;
    if (!linattn_mul_i64(v->strides[ax[i + 1]], v->dims[ax[i + 1]], &inner_extent) || v->strides[ax[i]] < inner_extent)
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                               "%s: strides make distinct elements overlap (axis %d stride %lld < extent %lld of axis %d)",
                               v->name, (int)ax[i], (long long)v->strides[ax[i]], (long long)inner_extent, (int)ax[i + 1]);
  }
  return LINATTN_SUCCESS;
}

/* The common case in one pass: a non-empty packed tensor (strides all 0) of valid dims whose size
 * fits. false leaves the rest to tview_init's general checks, which also word the errors. */
static bool tview_init_packed(tview* v, const linattn_tensor* t, int32_t rank) {
  if (rank < 1 || rank > LINATTN_MAX_RANK || !t->data) return false;
  int64_t numel = 1;
  for (int32_t i = rank - 1; i >= 0; i--) {
    if (t->strides[i] != 0 || t->dims[i] < 1) return false;
    v->dims[i] = t->dims[i];
    v->strides[i] = numel;
    if (!linattn_mul_i64(numel, t->dims[i], &numel)) return false;
  }
  int64_t bytes;
  if (!linattn_mul_i64(numel, (int64_t)linattn_dtype_size(t->dtype), &bytes) || bytes > (int64_t)(PTRDIFF_MAX / 2) ||
      (uintptr_t)t->data + (uintptr_t)bytes < (uintptr_t)t->data)
    return false;
  v->data = (char*)t->data;
  v->dtype = t->dtype;
  v->rank = rank;
  v->numel = numel;
  v->lo = (uintptr_t)t->data;
  v->hi = v->lo + (uintptr_t)bytes;
  return true;
}

linattn_status tview_init(tview* v, const char* name, const linattn_tensor* t, int32_t rank, bool require_packed,
                          const char* shape_doc) {
  /* field by field: a memset of the struct compiles to a string store, whose start-up costs
   * more than the rest of a decode-sized call's check of a tensor */
  v->name = name;
  v->data = NULL;
  v->dtype = LINATTN_DTYPE_INVALID;
  v->rank = 0;
  for (int32_t i = 0; i < LINATTN_MAX_RANK; i++) v->dims[i] = v->strides[i] = 0;
  v->numel = 0;
  v->lo = v->hi = 0;
  if (!t) return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: required tensor is NULL, expected shape %s", name, shape_doc);
  if (t->rank != rank)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: expected rank %d %s, got rank %d", name, (int)rank,
                             shape_doc, (int)t->rank);
  /* callers that accept several ranks pass the tensor's own */
  if (rank < 0 || rank > LINATTN_MAX_RANK)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: rank %d outside [0, %d], expected shape %s", name, (int)rank,
                             LINATTN_MAX_RANK, shape_doc);
  if (linattn_dtype_size(t->dtype) == 0)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: invalid dtype %d (expected float32, float16 or bfloat16)",
                             name, (int)t->dtype);
  if (tview_init_packed(v, t, rank)) return LINATTN_SUCCESS;
  v->data = (char*)t->data;
  v->dtype = t->dtype;
  v->rank = rank;
  bool all_zero = true;
  for (int32_t i = 0; i < rank; i++) {
    if (t->dims[i] < 0)
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: dimension %d is negative (%lld), expected shape %s",
                               name, (int)i, (long long)t->dims[i], shape_doc);
    v->dims[i] = t->dims[i];
    if (t->strides[i] != 0) all_zero = false;
  }
  int64_t numel = 1;
  for (int32_t i = 0; i < rank; i++)
    if (!linattn_mul_i64(numel, v->dims[i], &numel))
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: element count of shape overflows", name);
  v->numel = numel;
  /* packed strides */
  int64_t packed[LINATTN_MAX_RANK];
  {
    int64_t s = 1;
    for (int32_t i = rank - 1; i >= 0; i--) {
      packed[i] = s;
      if (v->dims[i] > 0 && !linattn_mul_i64(s, v->dims[i], &s))
        return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: size of shape overflows", name);
    }
  }
  if (all_zero || numel == 0) { /* an empty tensor touches no memory: its strides do not matter
                                  * (numpy gives zero-size arrays strides like (0, 0, 0, 4)) */
    for (int32_t i = 0; i < rank; i++) v->strides[i] = packed[i]; /* only the entries written */
  } else {
    for (int32_t i = 0; i < rank; i++) v->strides[i] = t->strides[i];
    linattn_status st = require_packed ? tview_check_packed(v, packed) : tview_check_strided(v);
    if (st) return st;
  }
  if (numel == 0) {
    v->lo = v->hi = 0;
    return LINATTN_SUCCESS;
  }
  if (!v->data)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: data is NULL but the tensor has %lld elements", name,
                             (long long)numel);
  int64_t maxoff = numel - 1; /* packed (the strides given were checked to be): sum (d_i - 1) * packed_i */
  for (int32_t i = 0; i < rank && !all_zero && !require_packed; i++) {
    int64_t term;
    if (i == 0) maxoff = 0;
    if (!linattn_mul_i64(v->dims[i] - 1, v->strides[i], &term) || !linattn_add_i64(maxoff, term, &maxoff))
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: memory extent overflows", name);
  }
  int64_t bytes;
  if (!linattn_add_i64(maxoff, 1, &bytes) || !linattn_mul_i64(bytes, (int64_t)linattn_dtype_size(v->dtype), &bytes) ||
      bytes > (int64_t)(PTRDIFF_MAX / 2))
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: memory extent overflows", name);
  v->lo = (uintptr_t)v->data;
  if (v->lo + (uintptr_t)bytes < v->lo)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: memory extent wraps the address space", name);
  v->hi = v->lo + (uintptr_t)bytes;
  return LINATTN_SUCCESS;
}

linattn_status tview_expect_dims(const tview* v, const int64_t* expected, const char* shape_doc) {
  for (int32_t i = 0; i < v->rank; i++) {
    if (v->dims[i] != expected[i]) {
      char a[96], b[96];
      return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: expected shape %s = %s, got %s", v->name, shape_doc,
                               tview_dims_str(expected, v->rank, a, sizeof a), tview_dims_str(v->dims, v->rank, b, sizeof b));
    }
  }
  return LINATTN_SUCCESS;
}

/* Whether two strided views share a byte, decided on their actual element sets. An element of
 * view a starts at a.lo + sum_d i_d sa_d (bytes, 0 <= i_d < na_d) and covers wa bytes; likewise b.
 * Two elements share a byte iff delta = start_b - start_a lies in (-wb, wa), and
 *   delta = (b.lo - a.lo) + sum_d j_d sb_d - sum_d i_d sa_d,
 * a sum of terms k * stride with k in a range per axis (axes of equal stride merged). The search
 * fixes the axes from the largest stride down; at each one only the k whose term can still be
 * completed by the smaller axes into the window are tried. For the layouts views have (each
 * stride spans the axes inside it) that is at most three values per axis; for others the search
 * has a budget and, when it runs out, answers "overlap": it can be conservative, never wrong. */
typedef struct lattice_axis {
  int64_t stride;        /* bytes, > 0 */
  int64_t lo, hi;        /* k in [lo, hi] */
  int64_t inner_lo, inner_hi; /* range of the sum over the axes after this one */
} lattice_axis;

static int64_t floor_div(int64_t a, int64_t b) { return a / b - ((a % b != 0) && ((a < 0) != (b < 0))); }

/* 1: some choice of k puts rem + sum k_d stride_d in (-wb, wa); 0: none; -1: budget spent. */
static int lattice_hit(const lattice_axis* ax, int n, int64_t rem, int64_t wa, int64_t wb, int* budget) {
  if (n == 0) return rem > -wb && rem < wa;
  /* k * stride in (-wb - rem - inner_hi, wa - rem - inner_lo) */
  const int64_t lo_open = -wb - rem - ax->inner_hi, hi_open = wa - rem - ax->inner_lo;
  int64_t k0 = floor_div(lo_open, ax->stride) + 1, k1 = -floor_div(-hi_open, ax->stride) - 1;
  if (k0 < ax->lo) k0 = ax->lo;
  if (k1 > ax->hi) k1 = ax->hi;
  for (int64_t k = k0; k <= k1; k++) {
    if (--*budget < 0) return -1;
    const int r = lattice_hit(ax + 1, n - 1, rem + k * ax->stride, wa, wb, budget);
    if (r) return r;
  }
  return 0;
}

/* Adds the axes of v with more than one element as terms sign * i * stride (bytes). */
static int lattice_add(lattice_axis* ax, int n, const tview* v, int sign) {
  const int64_t esz = (int64_t)linattn_dtype_size(v->dtype);
  for (int32_t d = 0; d < v->rank; d++) {
    if (v->dims[d] <= 1) continue;
    const int64_t stride = v->strides[d] * esz, lo = sign < 0 ? -(v->dims[d] - 1) : 0, hi = sign < 0 ? 0 : v->dims[d] - 1;
    int m = 0;
    while (m < n && ax[m].stride != stride) m++;
    if (m == n) ax[n++] = (lattice_axis){stride, 0, 0, 0, 0};
    ax[m].lo += lo;
    ax[m].hi += hi;
  }
  return n;
}

static bool tview_elements_overlap(const tview* a, const tview* b) {
  lattice_axis ax[2 * LINATTN_MAX_RANK];
  int n = lattice_add(ax, 0, a, -1);
  n = lattice_add(ax, n, b, +1);
  for (int i = 1; i < n; i++) /* largest stride first */
    for (int j = i; j > 0 && ax[j].stride > ax[j - 1].stride; j--) {
      const lattice_axis t = ax[j]; ax[j] = ax[j - 1]; ax[j - 1] = t;
    }
  int64_t inner_lo = 0, inner_hi = 0; /* spans are below PTRDIFF_MAX / 2 (tview_init): no overflow */
  for (int i = n - 1; i >= 0; i--) {
    ax[i].inner_lo = inner_lo;
    ax[i].inner_hi = inner_hi;
    inner_lo += ax[i].lo * ax[i].stride;
    inner_hi += ax[i].hi * ax[i].stride;
  }
  int budget = 4096;
  const int64_t delta = (int64_t)(b->lo - a->lo); /* the spans intersect: |delta| < one span */
  return lattice_hit(ax, n, delta, (int64_t)linattn_dtype_size(a->dtype), (int64_t)linattn_dtype_size(b->dtype),
                     &budget) != 0;
}

linattn_status tview_check_no_overlap(const tview* out, const tview* other) {
  if (!out || !other || out->lo == out->hi || other->lo == other->hi) return LINATTN_SUCCESS;
  if (out->lo < other->hi && other->lo < out->hi && tview_elements_overlap(out, other))
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                             "%s: output memory overlaps %s (only present_state == past_state, the same buffer, may alias)",
                             out->name, other->name);
  return LINATTN_SUCCESS;
}

bool tview_same_buffer(const tview* a, const tview* b) {
  if (a->data != b->data || a->dtype != b->dtype || a->rank != b->rank) return false;
  for (int32_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return false;
  return true;
}

void tview_copy_or_zero(const tview* dst, const tview* src) {
  if (!dst || dst->numel == 0 || (src && src->data == dst->data)) return;
  const size_t bytes = (size_t)dst->numel * linattn_dtype_size(dst->dtype);
  if (src) memcpy(dst->data, src->data, bytes);
  else memset(dst->data, 0, bytes);
}
