/* Reference GatedRMSNorm and LinearAttentionGate: the schemas' formulas in fp32, one element at
 * a time, in the order they are written (sum of squares from the first element on). */
#include <math.h>

#include "convert.h"
#include "internal.h"

static float sigmoid_f32(float z) { return 1.0f / (1.0f + expf(-z)); }

/* log(1 + exp(v)) without overflow for large v. */
static float softplus_f32(float v) { return v > 0.0f ? v + log1pf(expf(-v)) : log1pf(expf(v)); }

static void rms_norm_ref(const gated_rms_norm_params* p, const void* x, const void* scale, const void* gate,
                         void* y, int64_t rows) {
  const int64_t C = p->C;
  const linattn_dtype dt = p->dtype;
  for (int64_t r = 0; r < rows; r++) {
    const int64_t o = r * C;
    float sum = 0.0f;
    for (int64_t i = 0; i < C; i++) {
      const float v = linattn_load_f32(x, o + i, dt);
      sum += v * v;
    }
    const float inv_rms = 1.0f / sqrtf(sum / (float)C + p->epsilon);
    for (int64_t i = 0; i < C; i++) {
      const float z = linattn_load_f32(gate, o + i, dt);
      const float g = p->silu ? z * sigmoid_f32(z) : sigmoid_f32(z);
      const float n = linattn_load_f32(x, o + i, dt) * inv_rms * linattn_load_f32(scale, i, dt);
      linattn_store_f32(y, o + i, dt, n * g);
    }
  }
}

void linattn_la_gate_ref(linattn_dtype dt, int64_t H, const void* a, const float* dt_bias, const float* decay_scale,
                         const void* b, void* decay, void* beta, int64_t rows) {
  for (int64_t r = 0; r < rows; r++) {
    for (int64_t h = 0; h < H; h++) {
      const int64_t i = r * H + h;
      const float bias_a = linattn_load_f32(a, i, dt) + dt_bias[h];
      linattn_store_f32(decay, i, dt, decay_scale[h] * softplus_f32(bias_a));
      if (beta) linattn_store_f32(beta, i, dt, sigmoid_f32(linattn_load_f32(b, i, dt)));
    }
  }
}

const gates_kernel linattn_gates_reference = {"reference", rms_norm_ref, linattn_la_gate_ref};
