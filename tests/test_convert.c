/*
 * src/convert.h (scalar fp16 / bf16 <-> fp32) against two independent references: the
 * compiler's _Float16 conversions (where gcc has them) and the arithmetic float64 model in
 * tests/common/numeric.c. Exhaustive over all 2^16 half and bfloat16 patterns; every tie
 * (midpoint between consecutive f16 / bf16 values, and its two fp32 neighbours) for the
 * narrowing direction; NaN, infinities, subnormals, overflow edges; and a large sample of
 * random fp32 bit patterns.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "convert.h"
#include "testkit.h"

#if defined(__FLT16_MAX__) && !defined(LINATTN_TEST_NO_FLOAT16)
#define HAVE_FLOAT16 1
static uint16_t hw_f32_to_f16(float f) {
  _Float16 h = (_Float16)f;
  uint16_t u;
  memcpy(&u, &h, 2);
  return u;
}
static float hw_f16_to_f32(uint16_t u) {
  _Float16 h;
  memcpy(&h, &u, 2);
  return (float)h;
}
#else
#define HAVE_FLOAT16 0
#endif

static uint32_t bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static float from_bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}

static bool f16_is_nan(uint16_t h) { return (h & 0x7c00u) == 0x7c00u && (h & 0x3ffu); }
static bool bf16_is_nan(uint16_t h) { return (h & 0x7f80u) == 0x7f80u && (h & 0x7fu); }

/* Expected narrowing result from the float64 model (NaN handled by the caller). */
static uint16_t model_f16(float f) { return (uint16_t)tk_encode(tk_round((double)f, LINATTN_DTYPE_F16), LINATTN_DTYPE_F16); }
static uint16_t model_bf16(float f) { return (uint16_t)tk_encode(tk_round((double)f, LINATTN_DTYPE_BF16), LINATTN_DTYPE_BF16); }

/* Counters per group: one tk_check per group, first mismatch printed. */
typedef struct group { const char* name; int64_t n, bad; uint32_t first_in; uint32_t first_got, first_want; } group;
static void g_add(group* g, bool ok, uint32_t in, uint32_t got, uint32_t want) {
  g->n++;
  if (!ok && g->bad++ == 0) {
    g->first_in = in;
    g->first_got = got;
    g->first_want = want;
  }
}
static void g_report(const group* g) {
  tk_check(g->bad == 0 && g->n > 0, "%s: %lld of %lld wrong (first input 0x%08x: got 0x%04x want 0x%04x)", g->name,
           (long long)g->bad, (long long)g->n, g->first_in, g->first_got, g->first_want);
  tk_note("  %-58s %10lld values", g->name, (long long)g->n);
}

/* Checks one fp32 -> f16 / bf16 narrowing against the model (and the hardware for f16). */
static void narrow_f16(group* g, group* ghw, float f) {
  uint16_t got = linattn_f32_to_f16(f);
  uint32_t in = bits(f);
  if (isnan(f)) {
    bool ok = f16_is_nan(got) && (got & 0x200u) && ((got >> 15) == (in >> 31));
    g_add(g, ok, in, got, 0x7e00u | ((in >> 16) & 0x8000u));
  } else {
    uint16_t want = model_f16(f);
    g_add(g, got == want, in, got, want);
  }
#if HAVE_FLOAT16
  if (ghw && !isnan(f)) {
    uint16_t hw = hw_f32_to_f16(f);
    g_add(ghw, got == hw, in, got, hw);
  }
#else
  (void)ghw;
#endif
}

static void narrow_bf16(group* g, float f) {
  uint16_t got = linattn_f32_to_bf16(f);
  uint32_t in = bits(f);
  if (isnan(f)) {
    bool ok = bf16_is_nan(got) && (got & 0x40u) && ((got >> 15) == (in >> 31));
    g_add(g, ok, in, got, 0x7fc0u | ((in >> 16) & 0x8000u));
  } else {
    uint16_t want = model_bf16(f);
    g_add(g, got == want, in, got, want);
  }
}

static void test_widening(void) {
  group g16 = {"f16 -> f32 exhaustive vs model", 0, 0, 0, 0, 0};
  group g16hw = {"f16 -> f32 exhaustive vs _Float16", 0, 0, 0, 0, 0};
  group gbf = {"bf16 -> f32 exhaustive vs model", 0, 0, 0, 0, 0};
  group grt = {"f16 -> f32 -> f16 round trip exhaustive (bit exact)", 0, 0, 0, 0, 0};
  group grtb = {"bf16 -> f32 -> bf16 round trip exhaustive (bit exact)", 0, 0, 0, 0, 0};
  for (uint32_t h = 0; h < 65536; h++) {
    float f = linattn_f16_to_f32((uint16_t)h);
    double want = tk_decode(h, LINATTN_DTYPE_F16);
    bool nan = f16_is_nan((uint16_t)h);
    bool ok = nan ? (isnan(f) && (bits(f) >> 31) == (h >> 15)) : (bits(f) == bits((float)want));
    g_add(&g16, ok, h, bits(f) >> 16, bits((float)want) >> 16);
#if HAVE_FLOAT16
    float hw = hw_f16_to_f32((uint16_t)h);
    g_add(&g16hw, nan ? isnan(f) : bits(f) == bits(hw), h, bits(f) >> 16, bits(hw) >> 16);
#endif
    /* round trip: every f16 value is exact in fp32 and must come back unchanged (NaN payloads
     * are quieted, which keeps quiet NaNs unchanged) */
    uint16_t back = linattn_f32_to_f16(f);
    bool rt_ok = nan ? (f16_is_nan(back) && (back & 0x8000u) == (h & 0x8000u) &&
                        ((h & 0x200u) ? back == h : (back & 0x200u)))
                     : back == h;
    g_add(&grt, rt_ok, h, back, h);

    float fb = linattn_bf16_to_f32((uint16_t)h);
    double wantb = tk_decode(h, LINATTN_DTYPE_BF16);
    bool nanb = bf16_is_nan((uint16_t)h);
    g_add(&gbf, nanb ? isnan(fb) : bits(fb) == bits((float)wantb), h, bits(fb) >> 16, bits((float)wantb) >> 16);
    uint16_t backb = linattn_f32_to_bf16(fb);
    bool rtb_ok = nanb ? (bf16_is_nan(backb) && (backb & 0x8000u) == (h & 0x8000u) &&
                          ((h & 0x40u) ? backb == h : (backb & 0x40u)))
                       : backb == h;
    g_add(&grtb, rtb_ok, h, backb, h);
  }
  g_report(&g16);
  if (HAVE_FLOAT16) g_report(&g16hw);
  g_report(&gbf);
  g_report(&grt);
  g_report(&grtb);
}

/* Ties: for every pair of consecutive finite values of the narrow format, the fp32 midpoint
 * (exact in fp32) must round to the one with an even significand; the fp32 values just below
 * and above the midpoint must round down and up. */
static void test_ties(void) {
  group t16 = {"f32 -> f16 ties and tie neighbours vs model", 0, 0, 0, 0, 0};
  group t16hw = {"f32 -> f16 ties and tie neighbours vs _Float16", 0, 0, 0, 0, 0};
  group t16even = {"f32 -> f16 ties go to the even neighbour", 0, 0, 0, 0, 0};
  group tbf = {"f32 -> bf16 ties and tie neighbours vs model", 0, 0, 0, 0, 0};
  group tbfeven = {"f32 -> bf16 ties go to the even neighbour", 0, 0, 0, 0, 0};
  for (uint32_t h = 0; h < 0x7c00u; h++) { /* positive finite f16, next one may be inf */
    for (uint32_t s = 0; s < 2; s++) {
      uint32_t a = h | (s << 15), b = (h + 1) | (s << 15);
      double lo = tk_decode(a, LINATTN_DTYPE_F16), hi = tk_decode(b, LINATTN_DTYPE_F16);
      if (isinf(hi)) hi = (s ? -1.0 : 1.0) * 65536.0; /* the virtual next value: ties to inf */
      float mid = (float)((lo + hi) / 2); /* exact: needs 12 significant bits */
      if ((double)mid != (lo + hi) / 2) {
        tk_check(false, "f16 midpoint not exact in fp32 at 0x%04x", a);
        continue;
      }
      uint16_t got = linattn_f32_to_f16(mid);
      uint16_t even = (a & 1u) ? (uint16_t)b : (uint16_t)a;
      if ((b & 0x7fffu) == 0x7c00u) even = (uint16_t)b; /* 65504 is odd: tie goes to inf */
      g_add(&t16even, got == even, bits(mid), got, even);
      narrow_f16(&t16, &t16hw, mid);
      narrow_f16(&t16, &t16hw, nextafterf(mid, 0.0f));
      narrow_f16(&t16, &t16hw, nextafterf(mid, s ? -INFINITY : INFINITY));
    }
  }
  for (uint32_t h = 0; h < 0x7f80u; h++) {
    for (uint32_t s = 0; s < 2; s++) {
      uint32_t a = h | (s << 15), b = (h + 1) | (s << 15);
      /* midpoint of two consecutive bf16 values: the fp32 pattern with bit 15 set */
      float mid = from_bits((a << 16) | 0x8000u);
      uint16_t got = linattn_f32_to_bf16(mid);
      uint16_t even = (a & 1u) ? (uint16_t)b : (uint16_t)a;
      g_add(&tbfeven, got == even, bits(mid), got, even);
      narrow_bf16(&tbf, mid);
      narrow_bf16(&tbf, from_bits(bits(mid) - 1));
      narrow_bf16(&tbf, from_bits(bits(mid) + 1));
    }
  }
  g_report(&t16);
  if (HAVE_FLOAT16) g_report(&t16hw);
  g_report(&t16even);
  g_report(&tbf);
  g_report(&tbfeven);
}

static void test_specials(void) {
  group sp16 = {"f32 -> f16 specials (NaN, inf, overflow, subnormal, zero)", 0, 0, 0, 0, 0};
  group sp16hw = {"f32 -> f16 specials vs _Float16", 0, 0, 0, 0, 0};
  group spbf = {"f32 -> bf16 specials", 0, 0, 0, 0, 0};
  const uint32_t special[] = {
      0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u,          /* zeros, infinities */
      0x7fc00000u, 0xffc00000u, 0x7f800001u, 0xff800001u,          /* quiet and signalling NaN */
      0x7fbfffffu, 0x7fffffffu, 0xffffffffu, 0x7f802000u,          /* NaN payloads (some vanish in 16 bits) */
      0x7f810000u, 0x7f800100u,
      0x00000001u, 0x80000001u, 0x007fffffu, 0x00400000u,          /* fp32 subnormals */
      0x00800000u, 0x33000000u, 0x33000001u, 0x32ffffffu,          /* 2^-25 tie to 0, just above, just below */
      0x33400000u, 0x337fffffu, 0x33800000u, 0x38800000u,          /* 1.5*2^-25, f16 min subnormal, min normal */
      0x387fc000u, 0x387fe000u, 0x387ff000u,                       /* around the f16 subnormal/normal edge */
      0x477fe000u, 0x477fefffu, 0x477ff000u, 0x477ff001u,          /* 65504, below/at/above the inf threshold */
      0x47800000u, 0x7f7fffffu, 0xff7fffffu, 0x7f7f8000u,          /* 65536, fp32 max, bf16 overflow tie */
      0x7f7f7fffu, 0x3f800000u, 0x3f808000u, 0x3f818000u,          /* 1.0 and bf16 ties around 1 */
      0x3f800fffu, 0x3f801000u, 0x3f801001u, 0x3f803000u,          /* f16 ties around 1 */
  };
  for (size_t i = 0; i < sizeof special / sizeof special[0]; i++) {
    float f = from_bits(special[i]);
    narrow_f16(&sp16, &sp16hw, f);
    narrow_f16(&sp16, &sp16hw, -f);
    narrow_bf16(&spbf, f);
    narrow_bf16(&spbf, -f);
  }
  /* named expectations, independent of the model */
  tk_check(linattn_f32_to_f16(65520.0f) == 0x7c00u, "65520 must round to f16 inf");
  tk_check(linattn_f32_to_f16(65519.996f) == 0x7bffu, "just below 65520 must round to 65504");
  tk_check(linattn_f32_to_f16(0x1p-25f) == 0x0000u, "2^-25 ties to even (0)");
  tk_check(linattn_f32_to_f16(0x1.8p-25f) == 0x0001u, "1.5 * 2^-25 rounds to the min subnormal");
  tk_check(linattn_f32_to_f16(0x1p-24f) == 0x0001u, "2^-24 is the min subnormal");
  tk_check(linattn_f32_to_f16(0x1.8p-24f) == 0x0002u, "1.5 * 2^-24 ties to even (2 * 2^-24)");
  tk_check(linattn_f32_to_f16(-0.0f) == 0x8000u, "-0 keeps its sign");
  tk_check(linattn_f32_to_bf16(from_bits(0x7f7fffffu)) == 0x7f80u, "fp32 max rounds to bf16 inf");
  tk_check(linattn_f32_to_bf16(from_bits(0x00000001u)) == 0x0000u, "min fp32 subnormal rounds to bf16 0");
  tk_check(linattn_f32_to_bf16(from_bits(0x00008000u)) == 0x0000u, "fp32 subnormal tie to even 0");
  tk_check(linattn_f32_to_bf16(from_bits(0x00018000u)) == 0x0002u, "fp32 subnormal tie to even 2");
  tk_check(linattn_bf16_to_f32(0x0001u) == from_bits(0x00010000u), "bf16 subnormal widens exactly");
  tk_check(linattn_f16_to_f32(0x0001u) == 0x1p-24f && linattn_f16_to_f32(0x03ffu) == 0x3ffp-24f,
           "f16 subnormals widen exactly");
  g_report(&sp16);
  if (HAVE_FLOAT16) g_report(&sp16hw);
  g_report(&spbf);
}

/* A full sweep of the fp32 exponent/high-mantissa space with chosen low bits, plus random
 * patterns: every rounding case for every binade. */
static void test_sweep(tk_rng* r) {
  group s16 = {"f32 -> f16 sweep (2^20 high patterns x 9 low patterns) vs model", 0, 0, 0, 0, 0};
  group s16hw = {"f32 -> f16 sweep vs _Float16", 0, 0, 0, 0, 0};
  group sbf = {"f32 -> bf16 sweep vs model", 0, 0, 0, 0, 0};
  static const uint32_t low[] = {0x000u, 0x001u, 0x7ffu, 0x800u, 0x801u, 0xfffu, 0x1000u, 0x1001u, 0x1fffu};
  for (uint32_t hi = 0; hi < (1u << 19); hi++) {
    for (uint32_t s = 0; s < 2; s++) {
      uint32_t base = (s << 31) | (hi << 12);
      for (size_t i = 0; i < sizeof low / sizeof low[0]; i++) {
        float f = from_bits(base + (low[i] & 0x1fffu));
        narrow_f16(&s16, &s16hw, f);
        /* bf16 sees bits 16+ : reuse the pattern with the low 16 bits set to tie cases */
        narrow_bf16(&sbf, from_bits((base & 0xffff0000u) | ((low[i] << 4) & 0xffffu)));
      }
    }
  }
  group rnd = {"f32 -> f16 / bf16 on 4M random fp32 patterns vs model", 0, 0, 0, 0, 0};
  for (int i = 0; i < (1 << 22); i++) {
    float f = from_bits((uint32_t)tk_next(r));
    narrow_f16(&rnd, &s16hw, f);
    narrow_bf16(&rnd, f);
  }
  g_report(&s16);
  if (HAVE_FLOAT16) g_report(&s16hw);
  g_report(&sbf);
  g_report(&rnd);
}

static void test_helpers(tk_rng* r) {
  group g = {"load_f32 / store_f32 / round_to vs model", 0, 0, 0, 0, 0};
  const linattn_dtype dts[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};
  for (int i = 0; i < 200000; i++) {
    linattn_dtype dt = dts[i % 3];
    float f = (float)(tk_normal(r) * ldexp(1.0, (int)tk_below(r, 40) - 20));
    double want = tk_round((double)f, dt);
    float rounded = linattn_round_to(f, dt);
    uint32_t buf[4] = {0, 0, 0, 0}; /* element 1 is written; neighbours must stay zero */
    linattn_store_f32(buf, 1, dt, f);
    float back = linattn_load_f32(buf, 1, dt);
    uint32_t spill = dt == LINATTN_DTYPE_F32 ? (buf[0] | buf[2]) : ((buf[0] & 0xffffu) | buf[1]);
    bool ok = (double)rounded == want && (double)back == want && spill == 0;
    g_add(&g, ok, bits(f), bits(back) >> 16, bits((float)want) >> 16);
  }
  g_report(&g);
}

int main(void) {
  tk_begin("test_convert");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  double t0 = tk_seconds();
  if (!HAVE_FLOAT16) tk_note("compiler has no _Float16: comparing against the float64 model only");
  test_widening();
  test_ties();
  test_specials();
  test_sweep(&r);
  test_helpers(&r);
  tk_note("%.2f s", tk_seconds() - t0);
  return tk_finish();
}
