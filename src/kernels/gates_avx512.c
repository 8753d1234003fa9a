/*
 * GatedRMSNorm, AVX-512 family: gates_simd_body.h over vec_avx512.h's 16 lanes (partial vectors
 * with k-masks).
 */
#include <math.h>

#include "internal.h"
#include "vec_avx512.h"

#define GATES_FN(name) name##_avx512
#include "gates_simd_body.h"

const gates_kernel linattn_gates_avx512 = {"avx512", rms_norm_avx512, linattn_la_gate_ref};
