/*
 * Edge cases only the C API can express, for every ISA this CPU runs (tests/python/
 * test_edge_cases.py covers the numerical edge cases against onnx.reference):
 *
 *  1. d_k = 0: the state is empty and every output is scale * (empty sum): NaN for the default
 *     scale 1/sqrt(0) = inf (the ONNX reference), +-0 for an explicit scale; written into a
 *     strided output without touching its gaps; caller workspace of the reported size works,
 *     a misaligned one is rejected before anything is written.
 *  2. Zero-element tensors passed with data == NULL (B = 0, T = 0, d_v = 0, conv L = 0, k = 1,
 *     C = 0): success; T = 0 / L = 0 pass the state through bit for bit (also in place).
 *  3. Extent-1 dimensions with arbitrary strides (0 or huge), as a decode step may pass them:
 *     the same bits as the packed call, and the packed call matches the float64 oracle.
 *     Conv decode (L = 1) with channels 3 elements apart.
 *  4. More threads than work units: the same bits as one thread.
 *  5. Infinite inputs: every ISA gives NaN / +-inf exactly where the reference ISA does (units
 *     with non-finite outputs are recomputed by the reference kernel), with the library's or a
 *     caller workspace of the reported size, on 1 and 2 threads, with an f16 state updated in
 *     place, and with an fp32 state updated in place by a call of 256 tokens (shorter in-place
 *     fp32 calls keep the fast result of a flagged unit: docs/reliability.md).
 *  6. q . S overflowing fp32 while scale * q . S would not (state 4.25e37, d = 16, q = 1,
 *     k = v = 0): +-inf where the reference ISA has it, every rule, separate and in place.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "testkit.h"

static const linattn_dtype dtypes[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};

static linattn_tensor desc3(void* data, linattn_dtype dt, int64_t d0, int64_t d1, int64_t d2, int64_t s0, int64_t s1,
                            int64_t s2) {
  linattn_tensor t;
  memset(&t, 0, sizeof t);
  t.data = data;
  t.dtype = dt;
  t.rank = 3;
  t.dims[0] = d0, t.dims[1] = d1, t.dims[2] = d2;
  t.strides[0] = s0, t.strides[1] = s1, t.strides[2] = s2;
  return t;
}

static linattn_tensor packed(void* data, linattn_dtype dt, int32_t rank, int64_t d0, int64_t d1, int64_t d2, int64_t d3) {
  const int64_t dims[4] = {d0, d1, d2, d3};
  return linattn_make_tensor(data, dt, rank, dims);
}

static bool status_ok(linattn_status st, const char* what) {
  return tk_check(st == LINATTN_SUCCESS, "%s: status %s: %s", what, linattn_status_string(st), linattn_last_error());
}

/* ------------------------------------------------------------------ 1. d_k = 0 */

static void test_zero_key_width(linattn_context* ctx, linattn_isa isa) {
  const int64_t B = 2, T = 3, Hq = 4, Hkv = 2, dv = 5, pad = 3, W = Hq * dv;
  const float scales[] = {0.0f, -0.5f, 2.0f};
  for (int di = 0; di < 3; di++) {
    const linattn_dtype dt = dtypes[di];
    for (int si = 0; si < 3; si++) {
      for (int rule = LINATTN_UPDATE_LINEAR; rule <= LINATTN_UPDATE_GATED_DELTA; rule++) {
        tk_context("d_k=0 isa=%s T=%s scale=%g rule=%d", linattn_isa_name(isa), tk_dtype_str(dt), (double)scales[si], rule);
        const bool gated = rule == LINATTN_UPDATE_GATED || rule == LINATTN_UPDATE_GATED_DELTA;
        const bool delta = rule == LINATTN_UPDATE_DELTA || rule == LINATTN_UPDATE_GATED_DELTA;
        linattn_linear_attention_desc d;
        linattn_linear_attention_desc_init(&d);
        d.update_rule = (linattn_update_rule)rule;
        d.q_num_heads = Hq;
        d.kv_num_heads = Hkv;
        d.scale = scales[si];
        const int64_t vdims[3] = {B, T, Hkv * dv}, bdims[3] = {B, T, Hkv};
        tk_tensor v = tk_alloc(dt, 3, vdims), beta = tk_alloc(dt, 3, bdims);
        for (int64_t i = 0; i < tk_numel(&v); i++) tk_set(&v, i, 0.25 * (double)(i % 7) - 0.5);
        for (int64_t i = 0; i < tk_numel(&beta); i++) tk_set(&beta, i, 0.5);
        const int64_t odims[3] = {B, T, W}, opad[3] = {0, 0, pad};
        tk_tensor out = tk_alloc_padded(dt, 3, odims, opad);
        linattn_tensor q = packed(NULL, dt, 3, B, T, 0, 0), k = packed(NULL, dt, 3, B, T, 0, 0);
        linattn_tensor g = packed(NULL, dt, 3, B, T, 0, 0); /* per-key decay: H_kv * d_k = 0 wide */
        linattn_tensor vd = tk_desc(&v), bd = tk_desc(&beta), od = tk_desc(&out);
        linattn_tensor present = packed(NULL, LINATTN_DTYPE_F32, 4, B, Hkv, 0, dv);
        const linattn_tensor* gp = gated ? &g : NULL;
        const linattn_tensor* bp = delta ? &bd : NULL;

        for (int pass = 0; pass < 2; pass++) { /* 0: library workspace, 1: caller workspace */
          tk_poison(&out);
          size_t ws_size = 0;
          void* ws = NULL;
          if (pass == 1) {
            if (!status_ok(linattn_linear_attention_workspace_size(ctx, &d, &q, &k, &vd, NULL, gp, bp, &od, &present,
                                                                   &ws_size), "workspace_size"))
              continue;
            ws = tk_aligned_alloc(64, ws_size + 64);
          }
          linattn_status st = linattn_linear_attention(ctx, &d, &q, &k, &vd, NULL, gp, bp, &od, &present, ws, ws_size);
          if (status_ok(st, "linear_attention")) {
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < tk_numel(&out); i++) {
              const double o = tk_get(&out, i);
              const bool ok = scales[si] == 0.0f ? isnan(o) : (o == 0.0 && (signbit(o) != 0) == (scales[si] < 0.0f));
              if (!ok && bad++ == 0) first = i;
            }
            tk_check(bad == 0, "%lld outputs are not scale*0 (%s), first #%lld = %g", (long long)bad,
                     scales[si] == 0.0f ? "NaN" : "signed zero", (long long)first, first >= 0 ? tk_get(&out, first) : 0.0);
            tk_check(tk_count_gap_writes(&out) == 0, "wrote into the gaps of a strided output");
          }
          if (pass == 1) {
            /* Misaligned workspace: rejected, output untouched. */
            tk_poison(&out);
            st = linattn_linear_attention(ctx, &d, &q, &k, &vd, NULL, gp, bp, &od, &present, (char*)ws + 8, ws_size + 8);
            tk_check(st == LINATTN_ERROR_INVALID_ARGUMENT, "misaligned workspace: status %s", linattn_status_string(st));
            tk_check(tk_count_nan(&out) == tk_numel(&out), "output written by a failed call");
            tk_aligned_free(ws);
          }
        }
        tk_free(&v);
        tk_free(&beta);
        tk_free(&out);
      }
    }
  }
}

/* ------------------------------------------------------------------ 2. NULL data, zero elements */

static void test_null_empty_linear_attention(linattn_context* ctx, linattn_isa isa) {
  const int64_t Hq = 4, Hkv = 2, dk = 3, dv = 5;
  for (int di = 0; di < 3; di++) {
    const linattn_dtype sdt = dtypes[di];
    for (int rule = LINATTN_UPDATE_LINEAR; rule <= LINATTN_UPDATE_GATED_DELTA; rule++) {
      tk_context("null-empty LA isa=%s S=%s rule=%d", linattn_isa_name(isa), tk_dtype_str(sdt), rule);
      const bool gated = rule == LINATTN_UPDATE_GATED || rule == LINATTN_UPDATE_GATED_DELTA;
      const bool delta = rule == LINATTN_UPDATE_DELTA || rule == LINATTN_UPDATE_GATED_DELTA;
      linattn_linear_attention_desc d;
      linattn_linear_attention_desc_init(&d);
      d.update_rule = (linattn_update_rule)rule;
      d.q_num_heads = Hq;
      d.kv_num_heads = Hkv;
      const linattn_dtype dt = LINATTN_DTYPE_F32;

      /* B = 0: every tensor empty and NULL. */
      {
        linattn_tensor q = packed(NULL, dt, 3, 0, 4, Hq * dk, 0), k = packed(NULL, dt, 3, 0, 4, Hkv * dk, 0);
        linattn_tensor v = packed(NULL, dt, 3, 0, 4, Hkv * dv, 0), o = packed(NULL, dt, 3, 0, 4, Hq * dv, 0);
        linattn_tensor g = packed(NULL, dt, 3, 0, 4, Hkv, 0), b = packed(NULL, dt, 3, 0, 4, 1, 0);
        linattn_tensor s = packed(NULL, sdt, 4, 0, Hkv, dk, dv);
        status_ok(linattn_linear_attention(ctx, &d, &q, &k, &v, &s, gated ? &g : NULL, delta ? &b : NULL, &o, &s, NULL, 0),
                  "B=0 in place");
        status_ok(linattn_linear_attention(ctx, &d, &q, &k, &v, NULL, gated ? &g : NULL, delta ? &b : NULL, &o, NULL, NULL, 0),
                  "B=0 no state");
      }
      /* T = 0: inputs and output NULL, the state passes through bit for bit. */
      {
        const int64_t B = 2;
        linattn_tensor q = packed(NULL, dt, 3, B, 0, Hq * dk, 0), k = packed(NULL, dt, 3, B, 0, Hkv * dk, 0);
        linattn_tensor v = packed(NULL, dt, 3, B, 0, Hkv * dv, 0), o = packed(NULL, dt, 3, B, 0, Hq * dv, 0);
        linattn_tensor g = packed(NULL, dt, 3, B, 0, Hkv * dk, 0), b = packed(NULL, dt, 3, B, 0, Hkv, 0);
        const int64_t sdims[4] = {B, Hkv, dk, dv};
        tk_tensor past = tk_alloc(sdt, 4, sdims), pres = tk_alloc(sdt, 4, sdims), orig = tk_alloc(sdt, 4, sdims);
        for (int64_t i = 0; i < tk_numel(&past); i++) tk_set(&past, i, 0.125 * (double)(i % 13) - 0.7);
        tk_copy(&orig, &past);
        tk_poison(&pres);
        linattn_tensor pd = tk_desc(&past), rd = tk_desc(&pres);
        const linattn_tensor* gp = gated ? &g : NULL;
        const linattn_tensor* bp = delta ? &b : NULL;
        if (status_ok(linattn_linear_attention(ctx, &d, &q, &k, &v, &pd, gp, bp, &o, &rd, NULL, 0), "T=0"))
          tk_check(tk_bits_differ(&pres, &orig, NULL) == 0, "T=0: present_state differs from past_state");
        if (status_ok(linattn_linear_attention(ctx, &d, &q, &k, &v, &pd, gp, bp, &o, &pd, NULL, 0), "T=0 in place"))
          tk_check(tk_bits_differ(&past, &orig, NULL) == 0, "T=0 in place: state changed");
        tk_poison(&pres);
        if (status_ok(linattn_linear_attention(ctx, &d, &q, &k, &v, NULL, gp, bp, &o, &rd, NULL, 0), "T=0 no past")) {
          int64_t nonzero = 0;
          for (int64_t i = 0; i < tk_numel(&pres); i++) nonzero += tk_get(&pres, i) != 0.0;
          tk_check(nonzero == 0, "T=0 without past: %lld state elements not zero", (long long)nonzero);
        }
        tk_free(&past);
        tk_free(&pres);
        tk_free(&orig);
      }
      /* d_v = 0: value, output and states empty and NULL; q/k real. */
      {
        const int64_t B = 2, T = 3;
        const int64_t qdims[3] = {B, T, Hq * dk}, kdims[3] = {B, T, Hkv * dk}, gdims[3] = {B, T, Hkv};
        tk_tensor q = tk_alloc(dt, 3, qdims), k = tk_alloc(dt, 3, kdims), g = tk_alloc(dt, 3, gdims), b = tk_alloc(dt, 3, gdims);
        for (int64_t i = 0; i < tk_numel(&g); i++) tk_set(&g, i, -0.1), tk_set(&b, i, 0.5);
        linattn_tensor qd = tk_desc(&q), kd = tk_desc(&k), gd = tk_desc(&g), bd = tk_desc(&b);
        linattn_tensor v = packed(NULL, dt, 3, B, T, 0, 0), o = packed(NULL, dt, 3, B, T, 0, 0);
        linattn_tensor s = packed(NULL, sdt, 4, B, Hkv, dk, 0);
        status_ok(linattn_linear_attention(ctx, &d, &qd, &kd, &v, &s, gated ? &gd : NULL, delta ? &bd : NULL, &o, &s, NULL, 0),
                  "d_v=0");
        tk_free(&q);
        tk_free(&k);
        tk_free(&g);
        tk_free(&b);
      }
    }
  }
}

static void test_null_empty_conv(linattn_context* ctx, linattn_isa isa) {
  for (int di = 0; di < 3; di++) {
    const linattn_dtype dt = dtypes[di];
    for (int cl = 0; cl < 2; cl++) {
      tk_context("null-empty conv isa=%s T=%s channels_last=%d", linattn_isa_name(isa), tk_dtype_str(dt), cl);
      linattn_causal_conv_desc d;
      linattn_causal_conv_desc_init(&d);
      d.activation = LINATTN_ACTIVATION_SILU;
      d.channels_last = cl;
      d.dilation = 2;
      const int64_t B = 2, C = 5, K = 4, S = (K - 1) * 2;
      const int64_t wdims[3] = {C, 1, K}, bdims[1] = {C};
      const int64_t sdims[3] = {B, cl ? S : C, cl ? C : S};
      tk_tensor w = tk_alloc(dt, 3, wdims), bias = tk_alloc(dt, 1, bdims);
      tk_tensor past = tk_alloc(dt, 3, sdims), pres = tk_alloc(dt, 3, sdims), orig = tk_alloc(dt, 3, sdims);
      for (int64_t i = 0; i < tk_numel(&w); i++) tk_set(&w, i, 0.3 * (double)(i % 5) - 0.6);
      for (int64_t i = 0; i < C; i++) tk_set(&bias, i, 0.1 * (double)i);
      for (int64_t i = 0; i < tk_numel(&past); i++) tk_set(&past, i, 0.25 * (double)(i % 9) - 1.0);
      tk_copy(&orig, &past);
      linattn_tensor wd = tk_desc(&w), bd = tk_desc(&bias), pd = tk_desc(&past), rd = tk_desc(&pres);
      /* L = 0 */
      linattn_tensor x = packed(NULL, dt, 3, B, cl ? 0 : C, cl ? C : 0, 0);
      linattn_tensor y = x;
      tk_poison(&pres);
      if (status_ok(linattn_causal_conv_with_state(ctx, &d, &x, &wd, &bd, &pd, &y, &rd, NULL, 0), "L=0"))
        tk_check(tk_bits_differ(&pres, &orig, NULL) == 0, "L=0: present_state differs from past_state");
      if (status_ok(linattn_causal_conv_with_state(ctx, &d, &x, &wd, &bd, &pd, &y, &pd, NULL, 0), "L=0 in place"))
        tk_check(tk_bits_differ(&past, &orig, NULL) == 0, "L=0 in place: state changed");
      /* B = 0 */
      linattn_tensor x0 = packed(NULL, dt, 3, 0, cl ? 3 : C, cl ? C : 3, 0);
      linattn_tensor s0 = packed(NULL, dt, 3, 0, cl ? S : C, cl ? C : S, 0);
      linattn_tensor y0 = x0; /* both empty and NULL: no overlap */
      status_ok(linattn_causal_conv_with_state(ctx, &d, &x0, &wd, &bd, &s0, &y0, &s0, NULL, 0), "B=0");
      /* C = 0 */
      linattn_tensor xc = packed(NULL, dt, 3, B, cl ? 3 : 0, cl ? 0 : 3, 0);
      linattn_tensor wc = packed(NULL, dt, 3, 0, 1, K, 0), bc = packed(NULL, dt, 1, 0, 0, 0, 0);
      linattn_tensor sc = packed(NULL, dt, 3, B, cl ? S : 0, cl ? 0 : S, 0);
      status_ok(linattn_causal_conv_with_state(ctx, &d, &xc, &wc, &bc, &sc, &xc, &sc, NULL, 0), "C=0");
      tk_free(&w);
      tk_free(&bias);
      tk_free(&past);
      tk_free(&pres);
      tk_free(&orig);

      /* k = 1: zero-width state passed as NULL; output = silu(round(x w + b)) */
      {
        const int64_t L = 3;
        const int64_t xdims[3] = {B, cl ? L : C, cl ? C : L}, w1dims[3] = {C, 1, 1};
        tk_tensor xs = tk_alloc(dt, 3, xdims), ys = tk_alloc(dt, 3, xdims), w1 = tk_alloc(dt, 3, w1dims), b1 = tk_alloc(dt, 1, bdims);
        double xv[2 * 5 * 3], wv[5], bv[5], ref[2 * 5 * 3], pres_ref[1];
        for (int64_t i = 0; i < tk_numel(&xs); i++) xv[i] = 0.37 * (double)(i % 11) - 1.5;
        for (int64_t i = 0; i < C; i++) wv[i] = 0.5 + 0.25 * (double)i, bv[i] = -0.3 * (double)i;
        tk_fill(&xs, xv);
        tk_fill(&w1, wv);
        tk_fill(&b1, bv);
        tk_poison(&ys);
        linattn_tensor xd = tk_desc(&xs), yd = tk_desc(&ys), w1d = tk_desc(&w1), b1d = tk_desc(&b1);
        linattn_tensor s1 = packed(NULL, dt, 3, B, cl ? 0 : C, cl ? C : 0, 0);
        if (status_ok(linattn_causal_conv_with_state(ctx, &d, &xd, &w1d, &b1d, &s1, &yd, &s1, NULL, 0), "k=1")) {
          /* oracle wants channels-first */
          double xcf[2 * 5 * 3];
          for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++)
              for (int64_t t = 0; t < L; t++)
                xcf[(b * C + c) * L + t] = cl ? xv[(b * L + t) * C + c] : xv[(b * C + c) * L + t];
          oracle_conv oc = {.B = B, .C = C, .L = L, .K = 1, .dilation = 2, .dtype = dt,
                            .activation = LINATTN_ACTIVATION_SILU, .x = xcf, .w = wv, .bias = bv,
                            .past = NULL, .out = ref, .present = pres_ref};
          oracle_causal_conv(&oc);
          int64_t bad = 0;
          for (int64_t b = 0; b < B; b++)
            for (int64_t c = 0; c < C; c++)
              for (int64_t t = 0; t < L; t++) {
                const int64_t idx = cl ? (b * L + t) * C + c : (b * C + c) * L + t;
                const double got = tk_get(&ys, idx), want = ref[(b * C + c) * L + t];
                if (!(fabs(got - want) <= 2.0 * tk_ulp(want, dt) + 1e-6 * fabs(want))) bad++;
              }
          tk_check(bad == 0, "k=1: %lld outputs differ from the oracle", (long long)bad);
        }
        tk_free(&xs);
        tk_free(&ys);
        tk_free(&w1);
        tk_free(&b1);
      }
    }
  }
}

/* ------------------------------------------------------------------ 3. extent-1 strides */

static void test_decode_odd_strides(linattn_context* ctx, linattn_isa isa, tk_rng* r) {
  const int64_t Hq = 4, Hkv = 2, dk = 16, dv = 24;
  for (int di = 0; di < 3; di++) {
    const linattn_dtype dt = dtypes[di];
    for (int rule = LINATTN_UPDATE_LINEAR; rule <= LINATTN_UPDATE_GATED_DELTA; rule++) {
      tk_context("decode strides isa=%s T=%s rule=%d", linattn_isa_name(isa), tk_dtype_str(dt), rule);
      const bool gated = rule == LINATTN_UPDATE_GATED || rule == LINATTN_UPDATE_GATED_DELTA;
      const bool delta = rule == LINATTN_UPDATE_DELTA || rule == LINATTN_UPDATE_GATED_DELTA;
      linattn_linear_attention_desc d;
      linattn_linear_attention_desc_init(&d);
      d.update_rule = (linattn_update_rule)rule;
      d.q_num_heads = Hq;
      d.kv_num_heads = Hkv;
      const int64_t widths[6] = {Hq * dk, Hkv * dk, Hkv * dv, Hkv * dk, Hkv, Hq * dv}; /* q k v decay beta out */
      tk_tensor t[6];
      double* vals[5];
      for (int i = 0; i < 6; i++) {
        const int64_t dims[3] = {1, 1, widths[i]};
        t[i] = tk_alloc(dt, 3, dims);
        if (i < 5) {
          vals[i] = tk_dalloc(widths[i]);
          if (i == 3) tk_fill_uniform(r, vals[i], widths[i], -0.5, 0.0);
          else if (i == 4) tk_fill_uniform(r, vals[i], widths[i], 0.0, 1.0);
          else tk_fill_normal(r, vals[i], widths[i], 1.0);
          if (i == 1) tk_normalise_rows(vals[i], Hkv, dk);
          tk_fill(&t[i], vals[i]);
        }
      }
      const int64_t sdims[4] = {1, Hkv, dk, dv};
      tk_tensor past = tk_alloc(LINATTN_DTYPE_F32, 4, sdims), pres = tk_alloc(LINATTN_DTYPE_F32, 4, sdims);
      double* pastv = tk_dalloc(Hkv * dk * dv);
      tk_fill_normal(r, pastv, Hkv * dk * dv, 0.5);
      tk_fill(&past, pastv);
      linattn_tensor pd = tk_desc(&past), rd = tk_desc(&pres);

      /* packed call vs the oracle */
      double* out_ref = tk_dalloc(Hq * dv);
      double* state_ref = tk_dalloc(Hkv * dk * dv);
      oracle_la o = {.rule = (linattn_update_rule)rule, .B = 1, .T = 1, .Hq = Hq, .Hkv = Hkv, .Nk = Hkv, .dk = dk, .dv = dv,
                     .scale = 1.0 / sqrt((double)dk), .decay_kind = gated ? ORACLE_DECAY_PER_KEY : ORACLE_DECAY_NONE,
                     .beta_kind = delta ? ORACLE_BETA_PER_HEAD : ORACLE_BETA_NONE, .q = vals[0], .k = vals[1],
                     .v = vals[2], .past = pastv, .decay = vals[3], .beta = vals[4], .out = out_ref, .state = state_ref};
      oracle_linear_attention(&o);
      linattn_tensor dsc[6];
      for (int i = 0; i < 6; i++) dsc[i] = tk_desc(&t[i]);
      tk_poison(&t[5]);
      tk_poison(&pres);
      if (status_ok(linattn_linear_attention(ctx, &d, &dsc[0], &dsc[1], &dsc[2], &pd, gated ? &dsc[3] : NULL,
                                             delta ? &dsc[4] : NULL, &dsc[5], &rd, NULL, 0), "packed decode")) {
        double m = 0.0;
        for (int64_t i = 0; i < Hq * dv; i++) m = fmax(m, fabs(out_ref[i]));
        int64_t bad = 0;
        for (int64_t i = 0; i < Hq * dv; i++) {
          const double got = tk_get(&t[5], i);
          if (!(fabs(got - out_ref[i]) <= 1e-5 * m + 2.0 * tk_ulp(out_ref[i], dt) * (dt != LINATTN_DTYPE_F32))) bad++;
        }
        tk_check(bad == 0, "packed decode: %lld outputs differ from the oracle", (long long)bad);
      }
      tk_tensor ref_out = tk_alloc(dt, 3, t[5].dims), ref_state = tk_alloc(LINATTN_DTYPE_F32, 4, sdims);
      tk_copy(&ref_out, &t[5]);
      tk_copy(&ref_state, &pres);

      /* the same data described with batch/token strides 0 and huge */
      const int64_t odd[2][2] = {{0, 0}, {1234567, 89}};
      for (int variant = 0; variant < 2; variant++) {
        linattn_tensor s[6];
        for (int i = 0; i < 6; i++) s[i] = desc3(t[i].data, dt, 1, 1, widths[i], odd[variant][0], odd[variant][1], 1);
        tk_poison(&t[5]);
        tk_poison(&pres);
        if (status_ok(linattn_linear_attention(ctx, &d, &s[0], &s[1], &s[2], &pd, gated ? &s[3] : NULL, delta ? &s[4] : NULL,
                                               &s[5], &rd, NULL, 0), "strided decode")) {
          tk_check(tk_bits_differ(&t[5], &ref_out, NULL) == 0, "strides %lld/%lld: output bits differ from packed",
                   (long long)odd[variant][0], (long long)odd[variant][1]);
          tk_check(tk_bits_differ(&pres, &ref_state, NULL) == 0, "strides %lld/%lld: state bits differ from packed",
                   (long long)odd[variant][0], (long long)odd[variant][1]);
        }
      }
      for (int i = 0; i < 6; i++) tk_free(&t[i]);
      for (int i = 0; i < 5; i++) free(vals[i]);
      tk_free(&past);
      tk_free(&pres);
      tk_free(&ref_out);
      tk_free(&ref_state);
      free(pastv);
      free(out_ref);
      free(state_ref);
    }
  }
}

static void test_conv_decode_channel_stride(linattn_context* ctx, linattn_isa isa, tk_rng* r) {
  const int64_t B = 2, C = 37, K = 4, S = K - 1;
  for (int di = 0; di < 3; di++) {
    const linattn_dtype dt = dtypes[di];
    tk_context("conv decode channel stride isa=%s T=%s", linattn_isa_name(isa), tk_dtype_str(dt));
    linattn_causal_conv_desc d;
    linattn_causal_conv_desc_init(&d);
    d.activation = LINATTN_ACTIVATION_SILU;
    /* x (B, C, 1) with channel stride 3, batch stride 3*C + 5; y with channel stride 2 */
    const int64_t xs[3] = {3 * C + 5, 3, 7}, ys[3] = {2 * C + 1, 2, 1};
    const int64_t xalloc[1] = {B * xs[0]}, yalloc[1] = {B * ys[0]};
    tk_tensor xbuf = tk_alloc(dt, 1, xalloc), ybuf = tk_alloc(dt, 1, yalloc);
    const int64_t wdims[3] = {C, 1, K}, bdims[1] = {C}, sdims[3] = {B, C, S};
    tk_tensor w = tk_alloc(dt, 3, wdims), bias = tk_alloc(dt, 1, bdims), past = tk_alloc(dt, 3, sdims), pres = tk_alloc(dt, 3, sdims);
    double *xv = tk_dalloc(B * C), *wv = tk_dalloc(C * K), *bv = tk_dalloc(C), *pv = tk_dalloc(B * C * S);
    double *ref = tk_dalloc(B * C), *pres_ref = tk_dalloc(B * C * S);
    tk_fill_normal(r, xv, B * C, 1.0);
    tk_fill_normal(r, wv, C * K, 0.5);
    tk_fill_normal(r, bv, C, 0.5);
    tk_fill_normal(r, pv, B * C * S, 1.0);
    for (int64_t b = 0; b < B; b++)
      for (int64_t c = 0; c < C; c++) xv[b * C + c] = tk_store(xbuf.data, b * xs[0] + c * xs[1], dt, xv[b * C + c]);
    tk_fill(&w, wv);
    tk_fill(&bias, bv);
    tk_fill(&past, pv);
    tk_poison(&ybuf);
    tk_poison(&pres);
    linattn_tensor xd = desc3(xbuf.data, dt, B, C, 1, xs[0], xs[1], xs[2]);
    linattn_tensor yd = desc3(ybuf.data, dt, B, C, 1, ys[0], ys[1], ys[2]);
    linattn_tensor wd = tk_desc(&w), bd = tk_desc(&bias), pd = tk_desc(&past), rd = tk_desc(&pres);
    oracle_conv oc = {.B = B, .C = C, .L = 1, .K = K, .dilation = 1, .dtype = dt, .activation = LINATTN_ACTIVATION_SILU,
                      .x = xv, .w = wv, .bias = bv, .past = pv, .out = ref, .present = pres_ref};
    oracle_causal_conv(&oc);
    if (status_ok(linattn_causal_conv_with_state(ctx, &d, &xd, &wd, &bd, &pd, &yd, &rd, NULL, 0), "conv decode")) {
      int64_t bad = 0, unwritten_gaps = 0, bad_state = 0;
      for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++) {
          const double got = tk_load(ybuf.data, b * ys[0] + c * ys[1], dt), want = ref[b * C + c];
          if (!(fabs(got - want) <= 2.0 * tk_ulp(want, dt) + 1e-5 * fabs(want) + 1e-6)) bad++;
        }
      for (int64_t i = 0; i < B * ys[0]; i++) {
        const bool logical = (i % ys[0]) < 2 * C && (i % ys[0]) % 2 == 0;
        if (!logical && !isnan(tk_load(ybuf.data, i, dt))) unwritten_gaps++;
      }
      for (int64_t i = 0; i < B * C * S; i++)
        if (tk_get(&pres, i) != pres_ref[i]) bad_state++;
      tk_check(bad == 0, "%lld outputs differ from the oracle", (long long)bad);
      tk_check(unwritten_gaps == 0, "%lld elements written between output channels", (long long)unwritten_gaps);
      tk_check(bad_state == 0, "%lld present_state elements differ", (long long)bad_state);
    }
    tk_free(&xbuf);
    tk_free(&ybuf);
    tk_free(&w);
    tk_free(&bias);
    tk_free(&past);
    tk_free(&pres);
    free(xv), free(wv), free(bv), free(pv), free(ref), free(pres_ref);
  }
}

/* ------------------------------------------------------------------ 4. threads > units */

static void test_more_threads_than_units(linattn_isa isa, tk_rng* r) {
  linattn_context* one = tk_context_create(isa, 1);
  linattn_context* many = tk_context_create(isa, 7);
  const int64_t B = 1, T = 9, Hq = 3, Hkv = 1, dk = 5, dv = 3;
  tk_context("threads > units isa=%s", linattn_isa_name(isa));
  linattn_linear_attention_desc d;
  linattn_linear_attention_desc_init(&d);
  d.q_num_heads = Hq;
  d.kv_num_heads = Hkv;
  const int64_t qd[3] = {B, T, Hq * dk}, kd[3] = {B, T, Hkv * dk}, vd[3] = {B, T, Hkv * dv}, gd[3] = {B, T, Hkv},
                od[3] = {B, T, Hq * dv}, sd[4] = {B, Hkv, dk, dv};
  tk_tensor q = tk_alloc(LINATTN_DTYPE_BF16, 3, qd), k = tk_alloc(LINATTN_DTYPE_BF16, 3, kd),
            v = tk_alloc(LINATTN_DTYPE_BF16, 3, vd), g = tk_alloc(LINATTN_DTYPE_BF16, 3, gd),
            b = tk_alloc(LINATTN_DTYPE_BF16, 3, gd);
  tk_tensor o1 = tk_alloc(LINATTN_DTYPE_BF16, 3, od), o2 = tk_alloc(LINATTN_DTYPE_BF16, 3, od);
  tk_tensor s1 = tk_alloc(LINATTN_DTYPE_F16, 4, sd), s2 = tk_alloc(LINATTN_DTYPE_F16, 4, sd);
  tk_tensor* ins[5] = {&q, &k, &v, &g, &b};
  for (int i = 0; i < 5; i++) {
    const int64_t n = tk_numel(ins[i]);
    double* tmp = tk_dalloc(n);
    if (i == 3) tk_fill_uniform(r, tmp, n, -1.0, 0.0);
    else if (i == 4) tk_fill_uniform(r, tmp, n, 0.0, 1.0);
    else tk_fill_normal(r, tmp, n, 0.7);
    tk_fill(ins[i], tmp);
    free(tmp);
  }
  linattn_tensor a[5], d1 = tk_desc(&o1), d2 = tk_desc(&o2), ds1 = tk_desc(&s1), ds2 = tk_desc(&s2);
  for (int i = 0; i < 5; i++) a[i] = tk_desc(ins[i]);
  tk_poison(&o1), tk_poison(&o2), tk_poison(&s1), tk_poison(&s2);
  if (status_ok(linattn_linear_attention(one, &d, &a[0], &a[1], &a[2], NULL, &a[3], &a[4], &d1, &ds1, NULL, 0), "1 thread") &&
      status_ok(linattn_linear_attention(many, &d, &a[0], &a[1], &a[2], NULL, &a[3], &a[4], &d2, &ds2, NULL, 0), "7 threads")) {
    tk_check(tk_count_nan(&o1) == 0, "outputs left unwritten");
    tk_check(tk_bits_differ(&o1, &o2, NULL) == 0 && tk_bits_differ(&s1, &s2, NULL) == 0, "7 threads differ from 1");
  }
  tk_tensor* all[] = {&q, &k, &v, &g, &b, &o1, &o2, &s1, &s2};
  for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) tk_free(all[i]);
  linattn_context_destroy(one);
  linattn_context_destroy(many);
}

/* ------------------------------------------------------------------ 5. infinities */

/* a and e are both NaN, the same infinity, or finite and close (e from the reference ISA). */
static bool same_class(double a, double e) {
  if (isnan(e) || isnan(a)) return isnan(e) && isnan(a);
  if (isinf(e) || isinf(a)) return a == e;
  return fabs(a - e) <= 1e-3 * fabs(e) + 1e-3;
}

static void test_infinite_inputs(linattn_isa isa, tk_rng* r) {
  if (isa == LINATTN_ISA_REFERENCE) return;
  const int64_t B = 2, Hq = 4, Hkv = 2, dk = 8, dv = 20;
  linattn_context* ref = tk_context_create(LINATTN_ISA_REFERENCE, 1);
  linattn_context* ctxs[2] = {tk_context_create(isa, 1), tk_context_create(isa, 2)};
  /* T = 100: the units advance in lock-step and their outputs are checked tile by tile;
   * T = 256: an in-place state is kept for the recompute */
  for (int ti = 0; ti < 3; ti++)
  for (int di = 0; di < 2; di++) {
    const int64_t T = ti == 0 ? 9 : ti == 1 ? 100 : 256;
    const linattn_dtype dt = dtypes[di];
    for (int where = 0; where < 3; where++) { /* inf in q, v, past_state */
      for (int sdi = 0; sdi < 2; sdi++) {
        const linattn_dtype sdt = sdi == 0 ? LINATTN_DTYPE_F32 : LINATTN_DTYPE_F16;
        tk_context("infinities isa=%s tokens=%lld T=%s S=%s where=%d", linattn_isa_name(isa), (long long)T,
                   tk_dtype_str(dt), tk_dtype_str(sdt), where);
        linattn_linear_attention_desc d;
        linattn_linear_attention_desc_init(&d); /* gated_delta */
        d.q_num_heads = Hq;
        d.kv_num_heads = Hkv;
        const int64_t qd[3] = {B, T, Hq * dk}, kd[3] = {B, T, Hkv * dk}, vd[3] = {B, T, Hkv * dv};
        const int64_t gd[3] = {B, T, Hkv * dk}, bd[3] = {B, T, Hkv}, sd[4] = {B, Hkv, dk, dv}, od[3] = {B, T, Hq * dv};
        tk_tensor q = tk_alloc(dt, 3, qd), k = tk_alloc(dt, 3, kd), v = tk_alloc(dt, 3, vd), g = tk_alloc(dt, 3, gd);
        tk_tensor be = tk_alloc(dt, 3, bd), past = tk_alloc(sdt, 4, sd);
        tk_tensor* ins[6] = {&q, &k, &v, &g, &be, &past};
        for (int i = 0; i < 6; i++) {
          double* vals = tk_dalloc(tk_numel(ins[i]));
          if (i == 3) tk_fill_uniform(r, vals, tk_numel(ins[i]), -0.5, 0.0);
          else if (i == 4) tk_fill_uniform(r, vals, tk_numel(ins[i]), 0.0, 1.0);
          else tk_fill_normal(r, vals, tk_numel(ins[i]), 0.5);
          if (i == 1) tk_normalise_rows(vals, B * T * Hkv, dk);
          tk_fill(ins[i], vals);
          free(vals);
        }
        tk_tensor* hit = where == 0 ? &q : where == 1 ? &v : &past;
        tk_set(hit, tk_below(r, tk_numel(hit)), tk_below(r, 2) ? INFINITY : -INFINITY);
        tk_tensor eo = tk_alloc(dt, 3, od), es = tk_alloc(sdt, 4, sd), ao = tk_alloc(dt, 3, od), as = tk_alloc(sdt, 4, sd);
        linattn_tensor tq = tk_desc(&q), tkk = tk_desc(&k), tv = tk_desc(&v), tg = tk_desc(&g), tb = tk_desc(&be);
        linattn_tensor tp = tk_desc(&past), teo = tk_desc(&eo), tes = tk_desc(&es), tao = tk_desc(&ao), tas = tk_desc(&as);
        tk_poison(&eo);
        tk_poison(&es);
        const bool ref_ok =
            status_ok(linattn_linear_attention(ref, &d, &tq, &tkk, &tv, &tp, &tg, &tb, &teo, &tes, NULL, 0), "reference");
        for (int run = 0; ref_ok && run < 4; run++) { /* 1 thread, 2 threads, caller workspace, in place */
          linattn_context* ctx = ctxs[run == 1];
          tk_poison(&ao);
          tk_poison(&as);
          void* ws = NULL;
          size_t ws_size = 0;
          const linattn_tensor* present = &tas;
          const linattn_tensor* pastp = &tp;
          linattn_tensor tip;
          if (run == 2) {
            if (!status_ok(linattn_linear_attention_workspace_size(ctx, &d, &tq, &tkk, &tv, &tp, &tg, &tb, &tao, &tas,
                                                                   &ws_size), "workspace_size"))
              continue;
            ws = tk_aligned_alloc(64, ws_size + 64);
          }
          if (run == 3) {
            if (T < 256) continue; /* documented: an in-place state is not recomputed below 256 tokens */
            tk_copy(&as, &past);
            tip = tk_desc(&as);
            present = pastp = &tip;
          }
          linattn_status st = linattn_linear_attention(ctx, &d, &tq, &tkk, &tv, pastp, &tg, &tb, &tao, present, ws, ws_size);
          if (ws) tk_aligned_free(ws);
          if (!status_ok(st, "linear_attention")) continue;
          const tk_tensor* pairs[2][2] = {{&ao, &eo}, {&as, &es}};
          for (int o = 0; o < 2; o++) {
            int64_t bad = 0, first = -1;
            for (int64_t i = 0; i < tk_numel(pairs[o][0]); i++)
              if (!same_class(tk_get(pairs[o][0], i), tk_get(pairs[o][1], i)) && bad++ == 0) first = i;
            tk_check(bad == 0, "run %d %s: %lld elements differ from the reference ISA in NaN/inf/value, first #%lld: %g vs %g",
                     run, o ? "present_state" : "output", (long long)bad, (long long)first,
                     first >= 0 ? tk_get(pairs[o][0], first) : 0.0, first >= 0 ? tk_get(pairs[o][1], first) : 0.0);
          }
        }
        for (int i = 0; i < 6; i++) tk_free(ins[i]);
        tk_free(&eo);
        tk_free(&es);
        tk_free(&ao);
        tk_free(&as);
      }
    }
  }
  linattn_context_destroy(ref);
  linattn_context_destroy(ctxs[0]);
  linattn_context_destroy(ctxs[1]);
}

/* Item 6 of the header: the fast kernels fold the scale into q, so the overflow of the unscaled
 * sum must be noticed by the recompute check. */
static void test_overflow_hidden_by_scale(linattn_isa isa) {
  if (isa == LINATTN_ISA_REFERENCE) return;
  const int64_t H = 2, d = 16;
  linattn_context* ref = tk_context_create(LINATTN_ISA_REFERENCE, 1);
  linattn_context* ctx = tk_context_create(isa, 1);
  const linattn_update_rule rules[4] = {LINATTN_UPDATE_LINEAR, LINATTN_UPDATE_GATED, LINATTN_UPDATE_DELTA,
                                        LINATTN_UPDATE_GATED_DELTA};
  for (int ri = 0; ri < 4; ri++)
    for (int mode = 0; mode < 2; mode++) { /* separate present_state, in place (T = 256) */
      const int64_t T = mode == 0 ? 3 : 256;
      tk_context("overflow hidden by the scale isa=%s rule=%d %s", linattn_isa_name(isa), (int)rules[ri],
                 mode ? "in place" : "separate");
      linattn_linear_attention_desc desc;
      linattn_linear_attention_desc_init(&desc);
      desc.update_rule = rules[ri];
      desc.q_num_heads = desc.kv_num_heads = H;
      const bool gated = ri == 1 || ri == 3, delta = ri >= 2;
      const int64_t io[3] = {1, T, H * d}, hd[3] = {1, T, H}, sd[4] = {1, H, d, d};
      tk_tensor q = tk_alloc(LINATTN_DTYPE_F32, 3, io), k = tk_alloc(LINATTN_DTYPE_F32, 3, io);
      tk_tensor v = tk_alloc(LINATTN_DTYPE_F32, 3, io), g = tk_alloc(LINATTN_DTYPE_F32, 3, hd);
      tk_tensor be = tk_alloc(LINATTN_DTYPE_F32, 3, hd), past = tk_alloc(LINATTN_DTYPE_F32, 4, sd);
      for (int64_t i = 0; i < tk_numel(&q); i++) {
        tk_set(&q, i, (i / d) % H == 0 && (i / (H * d)) % 2 ? -1.0 : 1.0); /* head 0: +inf and -inf tokens */
        tk_set(&k, i, 0.0);
        tk_set(&v, i, 0.0);
      }
      for (int64_t i = 0; i < tk_numel(&g); i++) tk_set(&g, i, 0.0), tk_set(&be, i, 0.5);
      for (int64_t i = 0; i < tk_numel(&past); i++) tk_set(&past, i, i < d * d ? 4.25e37 : 1.0);
      tk_tensor eo = tk_alloc(LINATTN_DTYPE_F32, 3, io), es = tk_alloc(LINATTN_DTYPE_F32, 4, sd);
      tk_tensor ao = tk_alloc(LINATTN_DTYPE_F32, 3, io), as = tk_alloc(LINATTN_DTYPE_F32, 4, sd);
      linattn_tensor tq = tk_desc(&q), tkk = tk_desc(&k), tv = tk_desc(&v), tg = tk_desc(&g), tb = tk_desc(&be);
      linattn_tensor tp = tk_desc(&past), teo = tk_desc(&eo), tes = tk_desc(&es), tao = tk_desc(&ao);
      tk_poison(&eo);
      tk_poison(&es);
      tk_poison(&ao);
      tk_copy(&as, &past);
      linattn_tensor tas = tk_desc(&as);
      const linattn_tensor* pg = gated ? &tg : NULL;
      const linattn_tensor* pb = delta ? &tb : NULL;
      if (status_ok(linattn_linear_attention(ref, &desc, &tq, &tkk, &tv, &tp, pg, pb, &teo, &tes, NULL, 0), "reference") &&
          status_ok(linattn_linear_attention(ctx, &desc, &tq, &tkk, &tv, mode ? &tas : &tp, pg, pb, &tao, &tas, NULL, 0),
                    "linear_attention")) {
        int64_t bad = 0, first = -1, infs = 0;
        for (int64_t i = 0; i < tk_numel(&ao); i++) {
          infs += isinf(tk_get(&eo, i)) != 0;
          if (!same_class(tk_get(&ao, i), tk_get(&eo, i)) && bad++ == 0) first = i;
        }
        tk_check(infs == T * d && bad == 0, "%lld of %lld reference infinities; %lld outputs differ, first #%lld: %g vs %g",
                 (long long)infs, (long long)(T * d), (long long)bad, (long long)first,
                 first >= 0 ? tk_get(&ao, first) : 0.0, first >= 0 ? tk_get(&eo, first) : 0.0);
        int64_t first_s = -1;
        tk_check(tk_bits_differ(&as, &es, &first_s) == 0, "present_state differs from the reference ISA at #%lld",
                 (long long)first_s);
      }
      tk_tensor* all[10] = {&q, &k, &v, &g, &be, &past, &eo, &es, &ao, &as};
      for (int i = 0; i < 10; i++) tk_free(all[i]);
    }
  linattn_context_destroy(ref);
  linattn_context_destroy(ctx);
}

int main(void) {
  tk_begin("test_edge_cases");
  tk_rng r;
  tk_rng_init(&r, tk_seed());
  linattn_isa isas[8];
  const int n = tk_available_isas(isas, 8);
  for (int i = 0; i < n; i++) {
    linattn_context* ctx = tk_context_create(isas[i], 1);
    test_zero_key_width(ctx, isas[i]);
    test_null_empty_linear_attention(ctx, isas[i]);
    test_null_empty_conv(ctx, isas[i]);
    test_decode_odd_strides(ctx, isas[i], &r);
    test_conv_decode_channel_stride(ctx, isas[i], &r);
    linattn_context_destroy(ctx);
    test_more_threads_than_units(isas[i], &r);
    test_infinite_inputs(isas[i], &r);
    test_overflow_hidden_by_scale(isas[i]);
  }
  return tk_finish();
}
