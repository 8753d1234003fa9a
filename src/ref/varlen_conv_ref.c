/* The data-movement parts of the packed causal conv (linattn_varlen_causal_conv_with_state) that
 * no conv kernel does: the compact state update (ONNX Runtime's VarlenCausalConvWithState
 * state_update output) and the state of a length-0 sequence. Channels [c0, c0 + nc) only, so
 * the operator's units stay disjoint. And the portable state transpose (conv_kernel.transpose). */
#include <string.h>

#include "internal.h"

void linattn_varlen_capture(const varlen_seq* q, int64_t c0, int64_t nc) {
  const size_t es = linattn_dtype_size(q->dtype);
  for (int64_t j = 0; j < q->capacity; j++) {
    char* dst = (char*)q->update + (j * q->C + c0) * (int64_t)es;
    if (j < q->captured)
      memcpy(dst, (const char*)q->x + (j * q->x_token_stride + c0) * (int64_t)es, (size_t)nc * es);
    else
      memset(dst, 0, (size_t)nc * es);
  }
}

void linattn_varlen_pass_state(const varlen_seq* q, int64_t c0, int64_t nc) {
  /* S = 0: nothing to pass, and the state buffers may be NULL (no offsets on them) */
  if (!q->state_out || q->S == 0 || (q->state_out == q->state_in && q->has_initial)) return;
  const size_t es = linattn_dtype_size(q->dtype);
  /* channels-first: one block of nc * S; channels-last: S rows of nc, C apart */
  const int64_t rows = q->state_channels_last ? q->S : 1;
  const int64_t row_elems = q->state_channels_last ? nc : nc * q->S;
  const int64_t first = q->state_channels_last ? c0 : c0 * q->S;
  const int64_t row_stride = q->state_channels_last ? q->C : 0;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t off = (first + r * row_stride) * (int64_t)es;
    char* dst = (char*)q->state_out + off;
    if (q->has_initial)
      memcpy(dst, (const char*)q->state_in + off, (size_t)row_elems * es);
    else
      memset(dst, 0, (size_t)row_elems * es);
  }
}

/* The usual short states (S = 1..4: k up to 5, undilated) get loops with a constant inner count,
 * which compile to straight-line moves. */
#define CONV_TRANSPOSE(T, COLS)                                                      \
  for (int64_t r = 0; r < rows; r++)                                                 \
    for (int64_t k = 0; k < (COLS); k++) ((T*)dst)[k * dst_ld + r] = ((const T*)src)[r * src_ld + k]
#define CONV_TRANSPOSE_T(T)                  \
  switch (cols) {                            \
    case 1: CONV_TRANSPOSE(T, 1); break;     \
    case 2: CONV_TRANSPOSE(T, 2); break;     \
    case 3: CONV_TRANSPOSE(T, 3); break;     \
    case 4: CONV_TRANSPOSE(T, 4); break;     \
    default: CONV_TRANSPOSE(T, cols); break; \
  }
void linattn_conv_transpose(void* restrict dst, const void* restrict src, int64_t rows, int64_t cols, int64_t src_ld,
                            int64_t dst_ld, size_t es) {
  if (es == 4) {
    CONV_TRANSPOSE_T(uint32_t)
  } else {
    CONV_TRANSPOSE_T(uint16_t)
  }
}
#undef CONV_TRANSPOSE_T
#undef CONV_TRANSPOSE
