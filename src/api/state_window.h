/* state_window (ONNX Runtime contrib) of LinearAttention and CausalConvWithState: the public
 * entry points hand calls with desc->state_window != 0 to these (src/api/state_window.c). */
#ifndef LINATTN_STATE_WINDOW_H
#define LINATTN_STATE_WINDOW_H

#include "api/op_params.h"

linattn_status linattn_la_window_run(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                     LA_TENSOR_PARAMS, void* workspace, size_t workspace_size);
linattn_status linattn_la_window_workspace_size(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                                LA_TENSOR_PARAMS, size_t* bytes);
/* The workspace of a LinearAttention call (window-less desc) on these tensors with an fp32 state
 * given as past_state and present_state in place: what the window's inner calls need (a decode of
 * such a state may chain its units, la_tuning.decode_chain). Defined in linear_attention.c. */
linattn_status linattn_la_in_place_workspace_size(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                                  const linattn_tensor* query, const linattn_tensor* key,
                                                  const linattn_tensor* value, const linattn_tensor* decay,
                                                  const linattn_tensor* beta, const linattn_tensor* output,
                                                  size_t* bytes);
linattn_status linattn_conv_window_run(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                       CONV_TENSOR_PARAMS, void* workspace,
                                       size_t workspace_size);
linattn_status linattn_conv_window_workspace_size(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                                  CONV_TENSOR_PARAMS, size_t* bytes);

#endif
