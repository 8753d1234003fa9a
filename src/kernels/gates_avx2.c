/*
 * GatedRMSNorm, AVX2 family: gates_simd_body.h over vec_avx2.h's 8 lanes (partial vectors
 * through a small stack buffer, AVX2 having no 16-bit masked moves).
 */
#include <math.h>
#include <string.h>

#include "internal.h"
#include "vec_avx2.h"

#define GATES_FN(name) name##_avx2
#include "gates_simd_body.h"

const gates_kernel linattn_gates_avx2 = {"avx2", rms_norm_avx2, linattn_la_gate_ref};
