/*
 * Float64 model of f32 / f16 / bf16: rounding is computed arithmetically (scale by the ulp,
 * nearbyint in the default round-to-nearest-even mode, scale back), so it shares no code or
 * bit tricks with src/convert.h and can serve as its oracle.
 */
#include <math.h>
#include <string.h>

#include "testkit.h"

int tk_dtype_mant(linattn_dtype dt) {
  switch (dt) {
    case LINATTN_DTYPE_F16: return 10;
    case LINATTN_DTYPE_BF16: return 7;
    default: return 23;
  }
}
int tk_dtype_emin(linattn_dtype dt) { return dt == LINATTN_DTYPE_F16 ? -14 : -126; }
int tk_dtype_emax(linattn_dtype dt) { return dt == LINATTN_DTYPE_F16 ? 15 : 127; }
size_t tk_dtype_size(linattn_dtype dt) { return dt == LINATTN_DTYPE_F32 ? 4 : 2; }

const char* tk_dtype_str(linattn_dtype dt) {
  switch (dt) {
    case LINATTN_DTYPE_F32: return "f32";
    case LINATTN_DTYPE_F16: return "f16";
    case LINATTN_DTYPE_BF16: return "bf16";
    default: return "invalid";
  }
}

double tk_ulp(double x, linattn_dtype dt) {
  int e = 0;
  double ax = fabs(x);
  int E = tk_dtype_emin(dt);
  if (ax > 0 && isfinite(ax)) {
    frexp(ax, &e); /* ax = m 2^e, m in [0.5, 1): leading bit 2^(e-1) */
    if (e - 1 > E) E = e - 1;
  }
  return ldexp(1.0, E - tk_dtype_mant(dt));
}

double tk_round(double x, linattn_dtype dt) {
  if (isnan(x) || isinf(x) || x == 0.0) return x;
  double ulp = tk_ulp(x, dt);
  double r = nearbyint(x / ulp) * ulp; /* x / ulp is exact (power-of-two scaling) */
  int mant = tk_dtype_mant(dt);
  double maxv = ldexp(2.0 - ldexp(1.0, -mant), tk_dtype_emax(dt));
  if (fabs(r) > maxv) return copysign(INFINITY, x);
  if (r == 0.0) return copysign(0.0, x);
  return r;
}

static uint32_t f16_encode(double x) {
  uint32_t sign = signbit(x) ? 0x8000u : 0u;
  double a = fabs(x);
  if (isnan(x)) return sign | 0x7e00u;
  if (isinf(x)) return sign | 0x7c00u;
  if (a == 0.0) return sign;
  int e;
  frexp(a, &e);
  int E = e - 1;
  if (E < -14) return sign | (uint32_t)ldexp(a, 24); /* subnormal: a = man 2^-24 */
  uint32_t man = (uint32_t)(ldexp(a, 10 - E) - 1024.0);
  return sign | ((uint32_t)(E + 15) << 10) | man;
}

static double f16_decode(uint32_t h) {
  double sign = (h & 0x8000u) ? -1.0 : 1.0;
  uint32_t exp = (h >> 10) & 0x1fu, man = h & 0x3ffu;
  if (exp == 0x1fu) return man ? NAN : sign * INFINITY;
  if (exp == 0) return sign * ldexp((double)man, -24);
  return sign * ldexp(1024.0 + (double)man, (int)exp - 25);
}

uint32_t tk_encode(double x, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) return f16_encode(x);
  float f = (float)x; /* exact for representable values */
  uint32_t u;
  memcpy(&u, &f, 4);
  if (isnan(x)) u = (u & 0x80000000u) | 0x7fc00000u;
  return dt == LINATTN_DTYPE_BF16 ? u >> 16 : u;
}

double tk_decode(uint32_t bits, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F16) return f16_decode(bits & 0xffffu);
  uint32_t u = dt == LINATTN_DTYPE_BF16 ? (bits & 0xffffu) << 16 : bits;
  float f;
  memcpy(&f, &u, 4);
  return (double)f;
}

double tk_load(const void* base, int64_t i, linattn_dtype dt) {
  if (dt == LINATTN_DTYPE_F32) return (double)((const float*)base)[i];
  return tk_decode(((const uint16_t*)base)[i], dt);
}

double tk_store(void* base, int64_t i, linattn_dtype dt, double x) {
  double r = tk_round(x, dt);
  if (dt == LINATTN_DTYPE_F32)
    ((float*)base)[i] = (float)r;
  else
    ((uint16_t*)base)[i] = (uint16_t)tk_encode(r, dt);
  return r;
}

uint32_t tk_poison_bits(linattn_dtype dt) {
  switch (dt) {
    case LINATTN_DTYPE_F16: return 0x7e5au;
    case LINATTN_DTYPE_BF16: return 0x7fa5u;
    default: return 0x7fc0dead;
  }
}

double tk_max(double a, double b) { return b > a ? b : a; }
