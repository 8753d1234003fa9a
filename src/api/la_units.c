/* Lock-step of LinearAttention-kernel units and the non-finite recompute check (la_units.h). */
#include "api/la_units.h"

#include <float.h>
#include <math.h>
#include <string.h>

#include "convert.h"

int64_t la_lockstep_min_tokens(const linattn_context* ctx) {
#ifdef LA_LOCKSTEP_MIN_TOKENS
  (void)ctx;
  return LA_LOCKSTEP_MIN_TOKENS;
#else
  return ctx->tuning->la.lockstep_min_tokens;
#endif
}

int64_t la_lockstep_group(const linattn_context* ctx, size_t state_block_bytes) {
  int64_t group = ctx->tuning->la.lockstep_units;
  group = group < 1 ? 1 : group > LA_LOCKSTEP_UNITS_MAX ? LA_LOCKSTEP_UNITS_MAX : group;
  const int64_t group_state = ctx->tuning->la.lockstep_state_bytes;
  if (group > 2 && group_state > 0 && (size_t)group * state_block_bytes > (size_t)group_state) {
    const int64_t fit = (int64_t)((size_t)group_state / state_block_bytes);
    group = fit < 2 ? 2 : fit;
  }
  return group;
}

/* Below T's largest finite value (an output rounded to it may sit at the overflow boundary,
 * where the reference's own rounding decides between it and inf) when |scale| < 1: the fast
 * kernels fold the scale into q, so a q . S that overflows fp32 (+-inf in the reference, which
 * scales the finished sum) shows only as an output near |scale| * FLT_MAX. The margin covers
 * the fast kernels' rounding of that sum. */
uint32_t la_refine_limit(const la_params* p) {
  const double s = fabs(p->scale_f64);
  const float lim = s < 1.0 ? (float)(s * FLT_MAX * (1.0 - 1.0 / 1024)) : FLT_MAX;
  if (p->io_dtype == LINATTN_DTYPE_F32) return linattn_f32_bits(lim);
  const uint16_t top = p->io_dtype == LINATTN_DTYPE_F16 ? 0x7bffu : 0x7f7fu; /* 65504 / bf16 max */
  const uint16_t bits = p->io_dtype == LINATTN_DTYPE_F16 ? linattn_f32_to_f16(lim) : linattn_f32_to_bf16(lim);
  return bits < top ? bits : top;
}

/* Checked on the stored T values (an output that overflowed to inf when rounded to fp16/bf16
 * counts). |x| >= limit (magnitude bits, also inf and NaN) is the sign of (limit - 1) - |x|: both
 * in [0, 2^31) (2^15 for 16-bit T), so the difference cannot overflow, and the row loops (no
 * early exit) are an and, a subtraction and an or per element (SSE2 has no unsigned compare). */
bool la_unit_outputs_finite(linattn_dtype io_dtype, uint32_t limit, const la_unit* u, int64_t t0, int64_t t1) {
  const int32_t lim32_m1 = (int32_t)limit - 1;
  const int16_t lim16_m1 = (int16_t)((int32_t)(uint16_t)limit - 1);
  for (int64_t t = t0; t < t1; t++)
    for (int32_t h = 0; h < u->n_q; h++) {
      const int64_t base = t * u->out_token_stride + h * u->out_head_stride;
      bool bad;
      if (io_dtype == LINATTN_DTYPE_F32) {
        const uint32_t* o = (const uint32_t*)u->out + base;
        int32_t acc = 0;
        for (int64_t j = 0; j < u->ncols; j++) acc |= lim32_m1 - (int32_t)(o[j] & 0x7fffffffu);
        bad = acc < 0;
      } else {
        const uint16_t* o = (const uint16_t*)u->out + base;
        int16_t acc = 0;
        for (int64_t j = 0; j < u->ncols; j++) acc |= (int16_t)(lim16_m1 - (int16_t)(o[j] & 0x7fffu));
        bad = acc < 0;
      }
      if (bad) return false;
    }
  return true;
}

void la_copy_rows(void* dst, int64_t ld_dst, const void* src, int64_t ld_src, int64_t rows, int64_t n, size_t esz) {
  for (int64_t i = 0; i < rows; i++)
    memcpy((char*)dst + (size_t)(i * ld_dst) * esz, (const char*)src + (size_t)(i * ld_src) * esz, esz * (size_t)n);
}

void la_step_units(const la_kernel* kern, const la_params* p, la_unit* units, char* const* kscr, int64_t n,
                   int64_t chunk, bool* finite, uint32_t limit, bool prefetch_next) {
  for (int64_t t0 = 0; t0 < p->T;) {
    const int64_t t1 = p->T - t0 < chunk ? p->T : t0 + chunk;
    for (int64_t i = 0; i < n; i++) {
      /* A step stages the tokens it runs, t0 .. t1 (t1: the last sweep's weights). With
       * prefetch_next (la_tuning.lockstep_prefetch_next) each step prefetches (to L2) the input
       * rows the next unit's step stages, so that staging finds them in L2 (docs/tuning.md,
       * next-unit prefetch; per-key decay rows are as long as k's); the last unit's turn
       * prefetches for the first unit's turn of the next round. */
      la_step_next next = {NULL, 0, 0, 0};
      if (i + 1 < n) next = (la_step_next){&units[i + 1], t0, t1 - t0 + 1, prefetch_next};
      else if (n > 1) next = (la_step_next){&units[0], t1, chunk + 1, prefetch_next};
      kern->step(p, &units[i], kscr[i], t0, t1, next.u && next.prefetch ? &next : NULL);
      if (finite && finite[i]) finite[i] = kern->outputs_finite(p->io_dtype, limit, &units[i], t0, t1);
    }
    t0 = t1;
  }
}
