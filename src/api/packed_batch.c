/* Validation of a packed batch: offsets, capture counts and state-pool slots. */
#include <string.h>

#include "api/packed_batch.h"

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

linattn_status packed_check_batch_size(const linattn_varlen_batch* batch) {
  if (batch->batch_size < 0 || batch->batch_size > INT32_MAX)
    return ERR("batch.batch_size: must be in [0, 2^31), got %lld", (long long)batch->batch_size);
  return LINATTN_SUCCESS;
}

/* Slots distinct and inside the pool (a bit per slot, from the context's allocator). */
static linattn_status packed_check_slots(linattn_context* ctx, const linattn_varlen_batch* q, int64_t N,
                                         const char* pool_name) {
  const int64_t B = q->batch_size;
  if (N == 0 && B > 0) return ERR("batch.state_indices: the state pool (%s.dims[0]) is empty", pool_name);
  uint8_t* seen = (uint8_t*)linattn_ctx_alloc(ctx, (size_t)(N + 7) / 8);
  if (!seen) return linattn_set_error(LINATTN_ERROR_OUT_OF_MEMORY, "batch.state_indices: no memory for the check");
  memset(seen, 0, (size_t)(N + 7) / 8);
  linattn_status st = LINATTN_SUCCESS;
  for (int64_t i = 0; i < B && !st; i++) {
    const int32_t s = q->state_indices[i];
    if (s < 0 || s >= N)
      st = ERR("batch.state_indices: state_indices[%lld] = %d is outside the pool [0, %lld) (%s.dims[0])",
               (long long)i, (int)s, (long long)N, pool_name);
    else if (seen[s / 8] & (1u << (s % 8)))
      st = ERR("batch.state_indices: slot %d appears twice (state_indices[%lld]); slots must be distinct", (int)s,
               (long long)i);
    else
      seen[s / 8] |= (uint8_t)(1u << (s % 8));
  }
  linattn_ctx_free(ctx, seen);
  return st;
}

linattn_status packed_check_offsets(const int32_t* cu, int64_t B, int64_t total, const char* name,
                                    const char* total_name) {
  if (!cu) return ERR("%s: NULL, expected batch_size + 1 = %lld offsets", name, (long long)B + 1);
  if (cu[0] != 0) return ERR("%s: cu_seqlens[0] must be 0, got %d", name, (int)cu[0]);
  for (int64_t i = 0; i < B; i++)
    if (cu[i + 1] < cu[i])
      return ERR("%s: must be non-decreasing, cu_seqlens[%lld] = %d < cu_seqlens[%lld] = %d", name, (long long)i + 1,
                 (int)cu[i + 1], (long long)i, (int)cu[i]);
  if (cu[B] != total)
    return ERR("%s: cu_seqlens[batch_size = %lld] = %d must equal total_tokens = %s = %lld", name, (long long)B,
               (int)cu[B], total_name, (long long)total);
  return LINATTN_SUCCESS;
}

linattn_status packed_check_batch(linattn_context* ctx, const linattn_varlen_batch* q, int64_t total,
                                  const char* total_name, int64_t N, const char* pool_name, int64_t capacity) {
  linattn_status st = packed_check_offsets(q->cu_seqlens, q->batch_size, total, "batch.cu_seqlens", total_name);
  if (st) return st;
  if (capacity > 0 && !q->capture_count)
    return ERR("batch.capture_count: required (batch_size entries) when desc.state_update_capacity = %lld > 0",
               (long long)capacity);
  if (capacity == 0 && q->capture_count)
    return ERR("batch.capture_count: must be NULL when desc.state_update_capacity is 0");
  return q->state_indices ? packed_check_slots(ctx, q, N, pool_name) : LINATTN_SUCCESS;
}
