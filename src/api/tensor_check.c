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

linattn_status tview_init(tview* v, const char* name, const linattn_tensor* t, int32_t rank, bool require_packed,
                          const char* shape_doc) {
  memset(v, 0, sizeof *v);
  v->name = name;
  if (!t) return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: required tensor is NULL, expected shape %s", name, shape_doc);
  if (t->rank != rank)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: expected rank %d %s, got rank %d", name, (int)rank,
                             shape_doc, (int)t->rank);
  if (linattn_dtype_size(t->dtype) == 0)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: invalid dtype %d (expected float32, float16 or bfloat16)",
                             name, (int)t->dtype);
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
    memcpy(v->strides, packed, sizeof packed);
  } else {
    for (int32_t i = 0; i < rank; i++) v->strides[i] = t->strides[i];
    if (require_packed) {
      for (int32_t i = 0; i < rank; i++)
        if (v->dims[i] > 1 && v->strides[i] != packed[i])
          return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                                   "%s: must be packed row-major (strides all 0 or equal to the packed strides)", name);
    } else {
      if (rank > 0 && v->dims[rank - 1] > 1 && v->strides[rank - 1] != 1)
        return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: innermost stride must be 1, got %lld", name,
                                 (long long)v->strides[rank - 1]);
      for (int32_t i = 0; i < rank; i++)
        if (v->dims[i] > 1 && v->strides[i] == 0)
          return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                                   "%s: stride %d is 0 for a dimension of size %lld (distinct elements would alias)",
                                   name, (int)i, (long long)v->dims[i]);
      for (int32_t i = 0; i < rank; i++)
        if (v->strides[i] < 0)
          return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: stride %d is negative (%lld)", name, (int)i,
                                   (long long)v->strides[i]);
      /* Distinct elements must not alias: sort the non-trivial axes by stride and require each
       * stride to step over the whole extent of the axes inside it. */
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
        if (!linattn_mul_i64(v->strides[ax[i + 1]], v->dims[ax[i + 1]], &inner_extent) ||
            v->strides[ax[i]] < inner_extent)
          return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT,
                                   "%s: strides make distinct elements overlap (axis %d stride %lld < extent %lld of axis %d)",
                                   name, (int)ax[i], (long long)v->strides[ax[i]], (long long)inner_extent, (int)ax[i + 1]);
      }
    }
  }
  if (numel == 0) {
    v->lo = v->hi = 0;
    return LINATTN_SUCCESS;
  }
  if (!v->data)
    return linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, "%s: data is NULL but the tensor has %lld elements", name,
                             (long long)numel);
  int64_t maxoff = 0;
  for (int32_t i = 0; i < rank; i++) {
    int64_t term;
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

linattn_status tview_check_no_overlap(const tview* out, const tview* other) {
  if (!out || !other || out->lo == out->hi || other->lo == other->hi) return LINATTN_SUCCESS;
  if (out->lo < other->hi && other->lo < out->hi)
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
