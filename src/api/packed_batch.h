/* Validation of a packed batch (linattn_varlen_batch), shared by the packed operators. */
#ifndef LINATTN_PACKED_BATCH_H
#define LINATTN_PACKED_BATCH_H

#include "internal.h"

/* batch->batch_size in [0, 2^31). */
linattn_status packed_check_batch_size(const linattn_varlen_batch* batch);

/* cu_seqlens (0 = cu[0] <= ... <= cu[B] = total; total_name names where total comes from, e.g.
 * "input.dims[0]"), capture_count present exactly when capacity > 0, state_indices distinct and
 * in [0, N) (pool_name: the tensor whose dims[0] is N). Reads every entry once. */
linattn_status packed_check_batch(linattn_context* ctx, const linattn_varlen_batch* batch, int64_t total,
                                  const char* total_name, int64_t N, const char* pool_name, int64_t capacity);

#endif
