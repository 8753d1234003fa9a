/*
 * Constants of the x86 vector exp and SiLU (vec_avx512.h, vec_avx2.h; private), written once
 * for both vector widths. tests/test_conv_kernels.c holds the SiLU to an independent scalar
 * copy of its polynomial, bit for bit.
 */
#ifndef LINATTN_VEC_POLY_H
#define LINATTN_VEC_POLY_H

#define VEC_LOG2E 1.44269504088896341f
/* Cody-Waite: ln 2 = VEC_LN2_HI + VEC_LN2_LO, n * VEC_LN2_HI exact for the n in use */
#define VEC_LN2_HI 0.693359375f
#define VEC_LN2_LO -2.12194440e-4f

/* exp(r) = 1 + r + r^2 P(r), |r| <= ln2/2, P of degree 5 (Cephes expf coefficients, ~1 ulp);
 * VEC_EXP_P0 is the highest-degree coefficient. */
#define VEC_EXP_P0 1.9875691500e-4f
#define VEC_EXP_P1 1.3981999507e-3f
#define VEC_EXP_P2 8.3334519073e-3f
#define VEC_EXP_P3 4.1665795894e-2f
#define VEC_EXP_P4 1.6666665459e-1f
#define VEC_EXP_P5 5.0000001201e-1f

/* SiLU's exp(-r') for r' in [-ln2/2, ln2/2], degree 5 (minimax for exp, signs of the odd terms
 * flipped; max relative error 1.9e-7 with fp32 Horner rounding); VEC_SILU_Q0 is the
 * highest-degree coefficient. */
#define VEC_SILU_Q0 -0.008297647349536419f
#define VEC_SILU_Q1 0.04191543161869049f
#define VEC_SILU_Q2 -0.16667574644088745f
#define VEC_SILU_Q3 0.49998894333839417f
#define VEC_SILU_Q4 -0.9999997019767761f
#define VEC_SILU_Q5 1.0000001192092896f
/* ln 2 as one fp32 constant: the single-FMA reduction of the 16-bit T SiLU */
#define VEC_SILU_LN2 0.693147182f
/* 1.5 * 2^23 + 126: n = round(x) lands in the low bits of x + VEC_SILU_MAGIC (bits
 * VEC_SILU_MAGIC_BITS + n), from which 2^(n-1) is built */
#define VEC_SILU_MAGIC (12582912.0f + 126.0f)
#define VEC_SILU_MAGIC_BITS 0x4b40007e

#endif /* LINATTN_VEC_POLY_H */
