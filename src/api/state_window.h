/* state_window (ONNX Runtime contrib) of LinearAttention and CausalConvWithState: the public
 * entry points hand calls with desc->state_window != 0 to these (src/api/state_window.c). */
#ifndef LINATTN_STATE_WINDOW_H
#define LINATTN_STATE_WINDOW_H

#include "api/op_params.h"

linattn_status linattn_la_window_run(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                     LA_TENSOR_PARAMS, void* workspace, size_t workspace_size);
linattn_status linattn_la_window_workspace_size(linattn_context* ctx, const linattn_linear_attention_desc* d,
                                                LA_TENSOR_PARAMS, size_t* bytes);
linattn_status linattn_conv_window_run(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                       CONV_TENSOR_PARAMS, void* workspace,
                                       size_t workspace_size);
linattn_status linattn_conv_window_workspace_size(linattn_context* ctx, const linattn_causal_conv_desc* d,
                                                  CONV_TENSOR_PARAMS, size_t* bytes);

#endif
