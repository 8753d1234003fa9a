/* The tensor parameters of the operators' entry points, written once for the public functions,
 * their workspace queries and the internal stages (resolve, state_window) that take them all. */
#ifndef LINATTN_OP_PARAMS_H
#define LINATTN_OP_PARAMS_H

#include "internal.h"

#define LA_TENSOR_PARAMS                                                                                  \
  const linattn_tensor *query, const linattn_tensor *key, const linattn_tensor *value,                  \
      const linattn_tensor *past_state, const linattn_tensor *decay, const linattn_tensor *beta,          \
      const linattn_tensor *output, const linattn_tensor *present_state
#define LA_TENSOR_ARGS query, key, value, past_state, decay, beta, output, present_state

#define CONV_TENSOR_PARAMS                                                                                \
  const linattn_tensor *input, const linattn_tensor *weight, const linattn_tensor *bias,                \
      const linattn_tensor *past_state, const linattn_tensor *output, const linattn_tensor *present_state
#define CONV_TENSOR_ARGS input, weight, bias, past_state, output, present_state

#define VARLEN_CONV_TENSOR_PARAMS                                                                         \
  const linattn_tensor *input, const linattn_tensor *weight, const linattn_tensor *bias,                \
      const linattn_tensor *initial_state, const linattn_tensor *kernel_delta,                            \
      const linattn_tensor *previous_mask, const linattn_tensor *output, const linattn_tensor *final_state, \
      const linattn_tensor *state_update
#define VARLEN_CONV_TENSOR_ARGS \
  input, weight, bias, initial_state, kernel_delta, previous_mask, output, final_state, state_update

#endif
