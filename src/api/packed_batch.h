/* Validation of a packed batch (linattn_varlen_batch), shared by the packed operators. */
#ifndef LINATTN_PACKED_BATCH_H
#define LINATTN_PACKED_BATCH_H

#include "internal.h"

/* batch->batch_size in [0, 2^31). */
linattn_status packed_check_batch_size(const linattn_varlen_batch* batch);

/* B + 1 offsets: 0 = cu[0] <= ... <= cu[B] = total; name is the argument ("batch.cu_seqlens"),
 * total_name where total comes from ("input.dims[0]"). */
linattn_status packed_check_offsets(const int32_t* cu, int64_t B, int64_t total, const char* name,
                                    const char* total_name);

/* cu_seqlens (0 = cu[0] <= ... <= cu[B] = total; total_name names where total comes from, e.g.
 * "input.dims[0]"), capture_count present exactly when capacity > 0, state_indices distinct and
 * in [0, N) (pool_name: the tensor whose dims[0] is N). Reads every entry once. */
linattn_status packed_check_batch(linattn_context* ctx, const linattn_varlen_batch* batch, int64_t total,
                                  const char* total_name, int64_t N, const char* pool_name, int64_t capacity);

#endif
