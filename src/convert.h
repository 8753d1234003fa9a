/*
 * fp16 / bf16 <-> fp32 conversions, portable scalar versions (vector versions live in the
 * ISA kernels). Narrowing rounds to nearest even; NaN stays NaN (quiet), infinities stay.
 */
#ifndef LINATTN_CONVERT_H
#define LINATTN_CONVERT_H

#include <stdint.h>
#include <string.h>

#include "linattn.h"

static inline uint32_t linattn_f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}
static inline float linattn_bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline float linattn_bf16_to_f32(uint16_t h) { return linattn_bits_f32((uint32_t)h << 16); }

static inline uint16_t linattn_f32_to_bf16(float f) {
  uint32_t u = linattn_f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 0x0040u); /* quiet NaN, keep sign */
  u += 0x7fffu + ((u >> 16) & 1u); /* round to nearest even; overflow to inf is correct */
  return (uint16_t)(u >> 16);
}

static inline float linattn_f16_to_f32(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
  uint32_t exp = (h >> 10) & 0x1fu;
  uint32_t man = h & 0x3ffu;
  uint32_t u;
  if (exp == 0x1fu) {
    u = sign | 0x7f800000u | (man << 13); /* inf / NaN (payload kept) */
  } else if (exp != 0) {
    u = sign | ((exp + 112u) << 23) | (man << 13);
  } else if (man == 0) {
    u = sign;
  } else { /* subnormal: value = man * 2^-24, exact in fp32 */
    float f = (float)man * 5.9604644775390625e-8f;
    u = sign | linattn_f32_bits(f);
  }
  return linattn_bits_f32(u);
}

static inline uint16_t linattn_f32_to_f16(float f) {
  uint32_t u = linattn_f32_bits(f);
  uint16_t sign = (uint16_t)((u >> 16) & 0x8000u);
  uint32_t a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return (uint16_t)(sign | 0x7e00u | ((a >> 13) & 0x3ffu)); /* NaN */
  if (a >= 0x477ff000u) return (uint16_t)(sign | 0x7c00u); /* >= 65520 rounds to inf */
  if (a < 0x38800000u) { /* below the smallest normal 2^-14: subnormal or zero */
    if (a < 0x33000000u) return sign; /* < 2^-25: rounds to 0 (2^-25 exactly ties to even 0) */
    uint32_t e = a >> 23;              /* 102..112 */
    uint32_t m = (a & 0x7fffffu) | 0x800000u;
    uint32_t shift = 126u - e;         /* 14..24: value = m * 2^(e-150), unit 2^-24 */
    uint32_t q = m >> shift;
    uint32_t rem = m & ((1u << shift) - 1u);
    uint32_t half = 1u << (shift - 1u);
    if (rem > half || (rem == half && (q & 1u))) q++;
    return (uint16_t)(sign | q);
  }
  /* normal: rebias exponent, round mantissa from 23 to 10 bits */
  uint32_t r = a - 0x38000000u; /* exponent - 112 */
  r += 0xfffu + ((r >> 13) & 1u);
  return (uint16_t)(sign | (r >> 13));
}

/* Loads element i of a T-typed array as fp32. */
static inline float linattn_load_f32(const void* base, int64_t i, linattn_dtype dt) {
  switch (dt) {
    case LINATTN_DTYPE_F16: return linattn_f16_to_f32(((const uint16_t*)base)[i]);
    case LINATTN_DTYPE_BF16: return linattn_bf16_to_f32(((const uint16_t*)base)[i]);
    default: return ((const float*)base)[i];
  }
}

/* Stores fp32 value to element i of a T-typed array, rounding to nearest even. */
static inline void linattn_store_f32(void* base, int64_t i, linattn_dtype dt, float v) {
  switch (dt) {
    case LINATTN_DTYPE_F16: ((uint16_t*)base)[i] = linattn_f32_to_f16(v); break;
    case LINATTN_DTYPE_BF16: ((uint16_t*)base)[i] = linattn_f32_to_bf16(v); break;
    default: ((float*)base)[i] = v; break;
  }
}

/* Rounds an fp32 value to dtype and back (the value a T-typed tensor would hold). */
static inline float linattn_round_to(float v, linattn_dtype dt) {
  switch (dt) {
    case LINATTN_DTYPE_F16: return linattn_f16_to_f32(linattn_f32_to_f16(v));
    case LINATTN_DTYPE_BF16: return linattn_bf16_to_f32(linattn_f32_to_bf16(v));
    default: return v;
  }
}

#endif /* LINATTN_CONVERT_H */
