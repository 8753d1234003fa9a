/*
 * Float64 oracles for LinearAttention and CausalConvWithState, written from the ONNX reference
 * semantics (onnx/reference/ops/op_linear_attention.py, op_causal_conv_with_state.py) and the
 * ORT contrib extensions described in linattn.h, independently of src/ref. Inputs are packed
 * row-major double arrays holding the values the library sees (already rounded to their dtype).
 */
#ifndef LINATTN_TEST_ORACLE_H
#define LINATTN_TEST_ORACLE_H

#include <stdbool.h>
#include <stdint.h>

#include "linattn.h"

#ifdef __cplusplus
extern "C" {
#endif

enum { ORACLE_DECAY_NONE = 0, ORACLE_DECAY_PER_HEAD = 1, ORACLE_DECAY_PER_KEY = 2 };
enum { ORACLE_BETA_NONE = 0, ORACLE_BETA_PER_HEAD = 1, ORACLE_BETA_SHARED = 2 };

typedef struct oracle_la {
  linattn_update_rule rule;
  int64_t B, T;
  int64_t Hq, Hkv, Nk; /* query heads, kv (value/state) heads, key heads (= Hkv in ai.onnx) */
  int64_t dk, dv;
  double scale;        /* already resolved (0 -> 1/sqrt(dk) done by the caller) */
  int decay_kind, beta_kind;
  const double* q;     /* (B, T, Hq*dk) */
  const double* k;     /* (B, T, Nk*dk) */
  const double* v;     /* (B, T, Hkv*dv) */
  const double* past;  /* (B, Hkv, dk, dv) or NULL (zeros) */
  const double* decay; /* (B, T, Hkv) or (B, T, Hkv*dk), log-space */
  const double* beta;  /* (B, T, Hkv) or (B, T, 1) */
  double* out;         /* (B, T, max(Hq, Hkv)*dv) */
  double* state;       /* (B, Hkv, dk, dv) */
  double* out_mag;     /* (B, T, max(Hq, Hkv)*dv) or NULL: |scale| * sum_i |q_i S_ij|, the readout's
                        * magnitude (an output much smaller than it is cancellation, for error bounds) */
} oracle_la;

/* Output heads: max(Hq, Hkv). */
int64_t oracle_la_out_heads(const oracle_la* p);
/* Sequential recurrence in ONNX order: decay, retrieval from the decayed state, write,
 * readout after the write. Query head h (Hq >= Hkv) reads kv head h / (Hq/Hkv)
 * (repeat-interleave); with Hq < Hkv (ORT inverse GQA) output head h is kv head h and reads
 * query head h / (Hkv/Hq); kv head h uses key head h / (Hkv/Nk). */
void oracle_linear_attention(const oracle_la* p);

typedef struct oracle_conv {
  int64_t B, C, L, K, dilation;
  linattn_dtype dtype;      /* output rounding: conv result rounded to dtype before the activation */
  linattn_activation activation;
  const double* x;          /* (B, C, L) channels first */
  const double* w;          /* (C, K) */
  const double* bias;       /* (C) or NULL */
  const double* past;       /* (B, C, S) or NULL, S = (K-1)*dilation */
  double* out;              /* (B, C, L): act(round(conv)) rounded to dtype */
  double* pre;              /* (B, C, L) or NULL: exact conv result (before rounding) */
  double* mag;              /* (B, C, L) or NULL: |bias| + sum |w x| (for error bounds) */
  double* present;          /* (B, C, S) */
} oracle_conv;

void oracle_causal_conv(const oracle_conv* p);

#ifdef __cplusplus
}
#endif

#endif
