/* state_window (ONNX Runtime contrib) of LinearAttention and CausalConvWithState: the public
 * entry points hand calls with desc->state_window != 0 to these (src/api/state_window.c). */
#ifndef LINATTN_STATE_WINDOW_H
#define LINATTN_STATE_WINDOW_H

#include "internal.h"

linattn_status linattn_la_window_run(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                     const linattn_tensor* q, const linattn_tensor* k, const linattn_tensor* v,
                                     const linattn_tensor* past, const linattn_tensor* decay,
                                     const linattn_tensor* beta, const linattn_tensor* output,
                                     const linattn_tensor* present, void* workspace, size_t workspace_size);
linattn_status linattn_la_window_workspace_size(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                                const linattn_tensor* q, const linattn_tensor* k, const linattn_tensor* v,
                                                const linattn_tensor* past, const linattn_tensor* decay,
                                                const linattn_tensor* beta, const linattn_tensor* output,
                                                const linattn_tensor* present, size_t* bytes);
linattn_status linattn_conv_window_run(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                       const linattn_tensor* input, const linattn_tensor* weight,
                                       const linattn_tensor* bias, const linattn_tensor* past,
                                       const linattn_tensor* output, const linattn_tensor* present, void* workspace,
                                       size_t workspace_size);
linattn_status linattn_conv_window_workspace_size(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                                  const linattn_tensor* input, const linattn_tensor* weight,
                                                  const linattn_tensor* bias, const linattn_tensor* past,
                                                  const linattn_tensor* output, const linattn_tensor* present,
                                                  size_t* bytes);

#endif
