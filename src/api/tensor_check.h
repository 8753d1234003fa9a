/* Validation of tensor descriptors shared by the operators. */
#ifndef LINATTN_TENSOR_CHECK_H
#define LINATTN_TENSOR_CHECK_H

#include "internal.h"

/* A validated tensor: strides resolved (elements), byte span [lo, hi) of the elements it can touch. */
typedef struct tview {
  const char* name;
  char* data;
  linattn_dtype dtype;
  int32_t rank;
  int64_t dims[LINATTN_MAX_RANK];
  int64_t strides[LINATTN_MAX_RANK];
  int64_t numel;
  uintptr_t lo, hi; /* empty span (lo == hi) when numel == 0 */
} tview;

/* Checks pointer, rank, dtype, dims >= 0, strides (innermost 1, non-overlapping layout; packed
 * when require_packed), element count and byte span without overflow, data != NULL unless empty.
 * `shape_doc` names the expected shape in messages, e.g. "(B, T, H_q*d_k)". */
linattn_status tview_init(tview* v, const char* name, const linattn_tensor* t, int32_t rank, bool require_packed,
                          const char* shape_doc);

/* Formats dims as "(2, 3, 4)" into buf. */
const char* tview_dims_str(const int64_t* dims, int32_t rank, char* buf, size_t size);

/* Requires v->dims == expected (rank v->rank). */
linattn_status tview_expect_dims(const tview* v, const int64_t* expected, const char* shape_doc);

/* Rejects overlap between an output and another tensor (NULL views are skipped). */
linattn_status tview_check_no_overlap(const tview* out, const tview* other);

/* A state passed through unchanged: dst = src (packed, same dtype and shape), zeros when src is
 * NULL; nothing when dst is NULL, empty or src itself (in place). */
void tview_copy_or_zero(const tview* dst, const tview* src);

/* in-place: same data pointer, dtype and dims (both packed). */
bool tview_same_buffer(const tview* a, const tview* b);

#endif
