/*
 * CausalConvWithState against the float64 oracle, for every ISA the CPU runs: the 13 official
 * ONNX case shapes (spec.md 2.2) in every dtype, then balanced random cases over dtype, taps,
 * dilation (0 = 1, 2, 3), length (0, 1 decode, shorter than the state, long), channels (odd,
 * not a multiple of 16, realistic), bias, past, activation, layout (channels first / last),
 * strided input/output, and one variant per case (in-place state, split into two calls,
 * strided views, caller workspace, present_state not wanted).
 *
 * Tolerance. Let p be the exact conv value, acc = (K+2) 2^-24 (|bias| + sum|w x|) the bound on
 * the library's fp32 accumulation error. The output is round_T(p') (p' the fp32 sum), the
 * oracle round_T(p): both are T values at most one spacing apart, so
 *   none:  |y - ref| <= acc + ulp_T(|p| + acc)  (+ ulp_T(mag) for fp16 with a bias, whose sum is
 *          rounded to fp16 before the bias add, as the ONNX reference does).
 * With SiLU both sides apply SiLU (slope in [-0.1, 1.1]) to those rounded values, the library
 * in fp32 (a few fp32 ulp), and round again to T:
 *   silu:  |y - ref| <= 1.1 (acc + ulp_T(|p| + acc)) + ulp_T(|ref|) + 8 ulp_f32(|ref|).
 * present_state is data movement: compared bit for bit.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "oracle.h"
#include "testkit.h"

enum { V_NONE, V_INPLACE, V_SPLIT, V_STRIDED, V_WORKSPACE, V_NO_PRESENT, V_KINDS };
static const char* variant_names[] = {"none", "inplace", "split", "strided", "workspace", "no_present"};
static const linattn_dtype dtypes[3] = {LINATTN_DTYPE_F32, LINATTN_DTYPE_F16, LINATTN_DTYPE_BF16};

typedef struct conv_case {
  const char* name;
  int64_t B, C, L, K, dilation;
  bool bias, past, silu, channels_last, strided;
  linattn_dtype dt;
  bool uniform01; /* data U[0,1) (official fp16 cases) instead of N(0,1) */
  int variant;
  bool null_empty;
} conv_case;

static int64_t dil_of(const conv_case* c) { return c->dilation > 0 ? c->dilation : 1; }
static int64_t state_len(const conv_case* c) { return (c->K - 1) * dil_of(c); }

typedef struct conv_data {
  tk_tensor x, w, bias, past, out, present;
  double *xd, *wd, *bd, *pd;                   /* canonical (B, C, *) oracle inputs */
  double *out_ref, *pre, *mag, *present_ref;   /* canonical */
} conv_data;

/* Element offset (linear, row-major in the tensor's own dims) of canonical (b, c, l). */
static int64_t lin(const conv_case* c, int64_t b, int64_t ch, int64_t l, int64_t len) {
  return c->channels_last ? (b * len + l) * c->C + ch : (b * c->C + ch) * len + l;
}

static void io_dims(const conv_case* c, int64_t len, int64_t* dims) {
  dims[0] = c->B;
  dims[1] = c->channels_last ? len : c->C;
  dims[2] = c->channels_last ? c->C : len;
}

/* Writes canonical values into tensor t (rounding) and replaces them by the stored values. */
static void put_canonical(const conv_case* c, tk_tensor* t, double* vals, int64_t len) {
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t ch = 0; ch < c->C; ch++)
      for (int64_t l = 0; l < len; l++) {
        double* v = &vals[(b * c->C + ch) * len + l];
        *v = tk_set(t, lin(c, b, ch, l, len), *v);
      }
}

static double get_canonical(const conv_case* c, const tk_tensor* t, int64_t b, int64_t ch, int64_t l, int64_t len) {
  return tk_get(t, lin(c, b, ch, l, len));
}

static void describe(const conv_case* c, linattn_isa isa, int threads) {
  tk_context("%s isa=%s threads=%d dtype=%s B=%lld C=%lld L=%lld K=%lld dil=%lld bias=%d past=%d act=%s "
             "channels_last=%d strided=%d variant=%s",
             c->name, linattn_isa_name(isa), threads, tk_dtype_str(c->dt), (long long)c->B, (long long)c->C,
             (long long)c->L, (long long)c->K, (long long)c->dilation, c->bias, c->past, c->silu ? "silu" : "none",
             c->channels_last, c->strided, variant_names[c->variant]);
}

static void make_data(const conv_case* c, tk_rng* r, conv_data* d) {
  memset(d, 0, sizeof *d);
  const int64_t S = state_len(c), n = c->B * c->C * c->L, ns = c->B * c->C * S;
  int64_t xd[3], sd[3], wdims[3] = {c->C, 1, c->K}, bdims[1] = {c->C};
  io_dims(c, c->L, xd);
  io_dims(c, S, sd);
  if (c->strided) {
    int64_t pad[3] = {0, 1, 3};
    d->x = tk_alloc_padded(c->dt, 3, xd, pad);
    d->out = tk_alloc_padded(c->dt, 3, xd, pad);
  } else {
    d->x = tk_alloc(c->dt, 3, xd);
    d->out = tk_alloc(c->dt, 3, xd);
  }
  d->w = tk_alloc(c->dt, 3, wdims);
  d->present = tk_alloc(c->dt, 3, sd);
  d->xd = tk_dalloc(n);
  d->wd = tk_dalloc(c->C * c->K);
  d->out_ref = tk_dalloc(n);
  d->pre = tk_dalloc(n);
  d->mag = tk_dalloc(n);
  d->present_ref = tk_dalloc(ns);
  if (c->uniform01) {
    tk_fill_uniform(r, d->xd, n, 0, 1);
    tk_fill_uniform(r, d->wd, c->C * c->K, 0, 1);
  } else {
    tk_fill_normal(r, d->xd, n, 1.0);
    tk_fill_normal(r, d->wd, c->C * c->K, 1.0);
  }
  put_canonical(c, &d->x, d->xd, c->L);
  tk_fill(&d->w, d->wd);
  if (c->bias) {
    d->bias = tk_alloc(c->dt, 1, bdims);
    d->bd = tk_dalloc(c->C);
    tk_fill_normal(r, d->bd, c->C, 1.0);
    tk_fill(&d->bias, d->bd);
  }
  if (c->past) {
    d->past = tk_alloc(c->dt, 3, sd);
    d->pd = tk_dalloc(ns);
    tk_fill_normal(r, d->pd, ns, 1.0);
    put_canonical(c, &d->past, d->pd, S);
  }
}

static void free_data(conv_data* d) {
  tk_free(&d->x); tk_free(&d->w); tk_free(&d->bias); tk_free(&d->past); tk_free(&d->out); tk_free(&d->present);
  free(d->xd); free(d->wd); free(d->bd); free(d->pd); free(d->out_ref); free(d->pre); free(d->mag);
  free(d->present_ref);
}

static void run_oracle(const conv_case* c, const double* x, int64_t L, const double* past, const conv_data* d,
                       double* out, double* pre, double* mag, double* present) {
  oracle_conv p = {.B = c->B, .C = c->C, .L = L, .K = c->K, .dilation = dil_of(c), .dtype = c->dt,
                   .activation = c->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE, .x = x,
                   .w = d->wd, .bias = d->bd, .past = past, .out = out, .pre = pre, .mag = mag, .present = present};
  oracle_causal_conv(&p);
}

static linattn_tensor desc_of(const conv_case* c, const tk_tensor* t) {
  linattn_tensor d = tk_desc(t);
  if (c->null_empty && tk_numel(t) == 0) d.data = NULL;
  return d;
}

static linattn_status call_conv(linattn_context* ctx, const conv_case* c, const tk_tensor* x, const conv_data* d,
                                const tk_tensor* past, const tk_tensor* out, const tk_tensor* present, void* ws,
                                size_t ws_size) {
  linattn_causal_conv_desc desc;
  linattn_causal_conv_desc_init(&desc);
  desc.activation = c->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
  desc.dilation = c->dilation;
  desc.channels_last = c->channels_last;
  linattn_tensor tx = desc_of(c, x), tw = tk_desc(&d->w), tb, tp, to = desc_of(c, out), ts;
  if (c->bias) tb = tk_desc(&d->bias);
  if (past) tp = desc_of(c, past);
  if (present) ts = desc_of(c, present);
  linattn_status st = linattn_causal_conv_with_state(ctx, &desc, &tx, &tw, c->bias ? &tb : NULL, past ? &tp : NULL,
                                                     &to, present ? &ts : NULL, ws, ws_size);
  tk_check(st == LINATTN_SUCCESS, "linattn_causal_conv_with_state returned %s: %s", linattn_status_string(st),
           linattn_last_error());
  return st;
}

/* f16/bf16 outputs that differ from the oracle at all: with a correct single rounding this
 * happens only when the fp32 sum and the exact sum straddle a rounding boundary (rate ~2^-12),
 * so a high rate exposes e.g. a missing rounding before SiLU, which the bound alone allows. */
static int64_t g_low_total, g_low_mismatch;

/* Output tolerance check over canonical positions [l0, l0 + len) of out (a tensor of length len). */
static void check_output(const char* what, const conv_case* c, const tk_tensor* out, int64_t len, const double* ref,
                         const double* pre, const double* mag, int64_t L_ref, int64_t l0) {
  double worst = 0, wg = 0, wr = 0;
  int64_t wi = -1;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t ch = 0; ch < c->C; ch++)
      for (int64_t l = 0; l < len; l++) {
        int64_t o = (b * c->C + ch) * L_ref + l0 + l;
        double acc = (double)(c->K + 2) * 0x1p-24 * mag[o];
        double base = acc + tk_ulp(fabs(pre[o]) + acc, c->dt);
        /* fp16 with bias: the sum is rounded to fp16 before the bias add (ONNX reference), and
         * the library's fp32 sum and the exact one may round to neighbouring fp16 values. */
        if (c->bias && c->dt == LINATTN_DTYPE_F16) base += tk_ulp(mag[o], c->dt);
        double bound = c->silu ? 1.1 * base + tk_ulp(ref[o], c->dt) + 8 * tk_ulp(ref[o], LINATTN_DTYPE_F32) : base;
        double g = get_canonical(c, out, b, ch, l, len);
        if (c->dt != LINATTN_DTYPE_F32) {
          g_low_total++;
          g_low_mismatch += g != ref[o];
        }
        double ratio = fabs(g - ref[o]) / bound;
        if (isnan(ratio)) ratio = INFINITY;
        if (ratio > worst) {
          worst = ratio;
          wi = o;
          wg = g;
          wr = ref[o];
        }
      }
  tk_check(worst <= 1.0, "%s: canonical element %lld got %.9g want %.9g (%.3g x bound)", what, (long long)wi, wg, wr,
           worst);
}

static void check_state_exact(const char* what, const conv_case* c, const tk_tensor* st, const double* ref) {
  const int64_t S = state_len(c);
  int64_t bad = 0, first = -1;
  for (int64_t b = 0; b < c->B; b++)
    for (int64_t ch = 0; ch < c->C; ch++)
      for (int64_t s = 0; s < S; s++) {
        double g = get_canonical(c, st, b, ch, s, S), r = ref[(b * c->C + ch) * S + s];
        if (!(g == r || (isnan(g) && isnan(r)))) {
          if (first < 0) first = (b * c->C + ch) * S + s;
          bad++;
        }
      }
  tk_check(bad == 0, "%s: %lld elements differ from the oracle (first canonical %lld)", what, (long long)bad,
           (long long)first);
}

static void check_bits(const char* what, const tk_tensor* a, const tk_tensor* b) {
  int64_t first, n = tk_bits_differ(a, b, &first);
  tk_check(n == 0, "%s: %lld elements differ in bits from the base call (first %lld)", what, (long long)n,
           (long long)first);
}

static void variant(linattn_context* ctx, const conv_case* c, conv_data* d, tk_rng* r) {
  const int64_t S = state_len(c);
  int64_t sd[3];
  io_dims(c, S, sd);
  if (c->variant == V_INPLACE && c->past) {
    tk_tensor st = tk_alloc(c->dt, 3, sd), out = tk_alloc(c->dt, 3, d->out.dims);
    tk_copy(&st, &d->past);
    tk_poison(&out);
    if (call_conv(ctx, c, &d->x, d, &st, &out, &st, NULL, 0) == LINATTN_SUCCESS) {
      check_bits("in-place output", &out, &d->out);
      check_bits("in-place state", &st, &d->present);
    }
    tk_free(&st);
    tk_free(&out);
  } else if (c->variant == V_SPLIT || (c->variant == V_INPLACE && !c->past)) {
    /* two calls L1 + L2 with the state carried (the second one in place) */
    const int64_t L = c->L, L1 = tk_below(r, L + 1), L2 = L - L1;
    tk_tensor st = tk_alloc(c->dt, 3, sd), out = tk_alloc(c->dt, 3, d->out.dims);
    tk_poison(&st);
    tk_poison(&out);
    tk_tensor xv[2], ov[2];
    for (int p = 0; p < 2; p++) {
      int64_t len = p ? L2 : L1, t0 = p ? L1 : 0, dims[3];
      io_dims(c, len, dims);
      int64_t xs[3] = {d->x.strides[0], d->x.strides[1], d->x.strides[2]};
      int64_t os[3] = {out.strides[0], out.strides[1], out.strides[2]};
      int64_t tok_x = c->channels_last ? xs[1] : xs[2], tok_o = c->channels_last ? os[1] : os[2];
      xv[p] = tk_view(&d->x, t0 * tok_x, 3, dims, xs);
      ov[p] = tk_view(&out, t0 * tok_o, 3, dims, os);
    }
    bool ok = call_conv(ctx, c, &xv[0], d, c->past ? &d->past : NULL, &ov[0], &st, NULL, 0) == LINATTN_SUCCESS;
    double* mid_ref = tk_dalloc(c->B * c->C * S);
    double* tmp = tk_dalloc(c->B * c->C * c->L * 3 + 1);
    /* oracle of part 1 gives the intermediate state (exact) */
    double* x1 = tk_dalloc(c->B * c->C * L1);
    for (int64_t bc = 0; bc < c->B * c->C; bc++)
      for (int64_t l = 0; l < L1; l++) x1[bc * L1 + l] = d->xd[bc * L + l];
    run_oracle(c, x1, L1, d->pd, d, tmp, tmp + c->B * c->C * L1, tmp + 2 * c->B * c->C * L1, mid_ref);
    if (ok) check_state_exact("split: intermediate state", c, &st, mid_ref);
    ok = ok && call_conv(ctx, c, &xv[1], d, &st, &ov[1], &st, NULL, 0) == LINATTN_SUCCESS;
    if (ok) {
      check_output("split output", c, &out, L, d->out_ref, d->pre, d->mag, L, 0);
      check_state_exact("split: final state", c, &st, d->present_ref);
      tk_check(tk_count_nan(&out) == 0, "split: output not fully written");
    }
    free(mid_ref);
    free(tmp);
    free(x1);
    tk_free(&st);
    tk_free(&out);
  } else if (c->variant == V_STRIDED) {
    /* input as a view into a wider fused buffer (channels_last: (B, L, W) with W > C, the Qwen
     * projection layout; channels first: padded channel and batch strides) */
    int64_t fd[3];
    io_dims(c, c->L, fd);
    fd[2] += 5;
    fd[1] += 1;
    tk_tensor fused = tk_alloc(c->dt, 3, fd);
    tk_poison(&fused);
    int64_t fs[3] = {fd[1] * fd[2], fd[2], 1};
    tk_tensor xv = tk_view(&fused, 2, 3, d->x.dims, fs);
    xv.packed = false;
    tk_copy(&xv, &d->x);
    int64_t pad[3] = {0, 2, 1};
    tk_tensor out = tk_alloc_padded(c->dt, 3, d->out.dims, pad), st = tk_alloc(c->dt, 3, sd);
    tk_poison(&out);
    tk_poison(&st);
    if (call_conv(ctx, c, &xv, d, c->past ? &d->past : NULL, &out, &st, NULL, 0) == LINATTN_SUCCESS) {
      check_bits("strided output", &out, &d->out);
      check_bits("strided state", &st, &d->present);
      tk_check(tk_count_gap_writes(&out) == 0, "strided output: writes into the gaps");
    }
    tk_free(&fused);
    tk_free(&out);
    tk_free(&st);
  } else if (c->variant == V_WORKSPACE) {
    linattn_causal_conv_desc desc;
    linattn_causal_conv_desc_init(&desc);
    desc.activation = c->silu ? LINATTN_ACTIVATION_SILU : LINATTN_ACTIVATION_NONE;
    desc.dilation = c->dilation;
    desc.channels_last = c->channels_last;
    linattn_tensor tx = desc_of(c, &d->x), tw = tk_desc(&d->w), tb, tp, to = desc_of(c, &d->out);
    linattn_tensor ts = desc_of(c, &d->present);
    if (c->bias) tb = tk_desc(&d->bias);
    if (c->past) tp = desc_of(c, &d->past);
    size_t ws = (size_t)-1;
    linattn_status st = linattn_causal_conv_with_state_workspace_size(ctx, &desc, &tx, &tw, c->bias ? &tb : NULL,
                                                                      c->past ? &tp : NULL, &to, &ts, &ws);
    if (tk_check(st == LINATTN_SUCCESS && ws < ((size_t)1 << 40), "conv workspace_size: %s (%s) %zu",
                 linattn_status_string(st), linattn_last_error(), ws)) {
      unsigned char* buf = (unsigned char*)tk_aligned_alloc(64, ws ? ws : 64);
      memset(buf, 0xff, ws ? ws : 64);
      tk_tensor out = tk_alloc_padded(c->dt, 3, d->out.dims, NULL), sto = tk_alloc(c->dt, 3, sd);
      if (c->strided) {
        tk_free(&out);
        int64_t pad[3] = {0, 1, 3};
        out = tk_alloc_padded(c->dt, 3, d->out.dims, pad);
      }
      tk_poison(&out);
      tk_poison(&sto);
      if (call_conv(ctx, c, &d->x, d, c->past ? &d->past : NULL, &out, &sto, buf, ws) == LINATTN_SUCCESS) {
        check_bits("caller-workspace output", &out, &d->out);
        check_bits("caller-workspace state", &sto, &d->present);
      }
      tk_aligned_free(buf);
      tk_free(&out);
      tk_free(&sto);
    }
  } else if (c->variant == V_NO_PRESENT) {
    tk_tensor out = tk_alloc(c->dt, 3, d->out.dims);
    tk_poison(&out);
    if (call_conv(ctx, c, &d->x, d, c->past ? &d->past : NULL, &out, NULL, NULL, 0) == LINATTN_SUCCESS)
      check_bits("output without present_state", &out, &d->out);
    tk_free(&out);
  }
}

static void run_case(linattn_context* ctx, linattn_isa isa, int threads, const conv_case* c, tk_rng* r) {
  describe(c, isa, threads);
  conv_data d;
  make_data(c, r, &d);
  run_oracle(c, d.xd, c->L, d.pd, &d, d.out_ref, d.pre, d.mag, d.present_ref);
  tk_poison(&d.out);
  tk_poison(&d.present);
  size_t xbytes = d.x.alloc_elems * tk_dtype_size(c->dt);
  unsigned char* xsnap = (unsigned char*)tk_xmalloc(xbytes + 1);
  memcpy(xsnap, d.x.base, xbytes);
  if (call_conv(ctx, c, &d.x, &d, c->past ? &d.past : NULL, &d.out, &d.present, NULL, 0) == LINATTN_SUCCESS) {
    tk_check(tk_count_nan(&d.out) == 0, "output: %lld elements not written", (long long)tk_count_nan(&d.out));
    tk_check(tk_count_gap_writes(&d.out) == 0, "output: writes outside the tensor");
    tk_check(memcmp(xsnap, d.x.base, xbytes) == 0, "input modified");
    check_output("output", c, &d.out, c->L, d.out_ref, d.pre, d.mag, c->L, 0);
    check_state_exact("present_state", c, &d.present, d.present_ref);
    variant(ctx, c, &d, r);
  }
  free(xsnap);
  free_data(&d);
}

/* The official ONNX cases (spec.md 2.2), channels first, dilation 1. */
static const struct {
  const char* name;
  int64_t B, C, L, K;
  bool bias, past, silu, u01;
} official[] = {
    {"basic", 2, 4, 8, 4, 0, 0, 0, 0},
    {"with_bias", 2, 4, 8, 4, 1, 0, 0, 0},
    {"with_past_state", 2, 4, 8, 4, 0, 1, 0, 0},
    {"silu", 2, 4, 8, 4, 0, 0, 1, 0},
    {"swish_alias", 2, 4, 8, 4, 0, 0, 1, 0},
    {"decode_step", 2, 4, 1, 4, 1, 1, 0, 0},
    {"kernel_size_one", 2, 4, 8, 1, 0, 0, 0, 0},
    {"with_bias_and_past_state", 2, 4, 8, 4, 1, 1, 0, 0},
    {"silu_with_past_state", 2, 4, 8, 4, 0, 1, 1, 0},
    {"b1_c1_degenerate", 1, 1, 6, 4, 0, 0, 0, 0},
    {"short_input_no_past_state", 2, 4, 2, 5, 0, 0, 0, 0},
    {"fp16", 2, 4, 8, 4, 0, 0, 0, 1},
    {"silu_fp16", 2, 4, 8, 4, 0, 0, 1, 1},
};

int main(void) {
  tk_begin("test_causal_conv");
  uint64_t seed = tk_seed();
  int random_cases = tk_case_count(400, 120);
  tk_check(linattn_activation_from_string("swish") == LINATTN_ACTIVATION_SILU &&
               linattn_activation_from_string("silu") == LINATTN_ACTIVATION_SILU &&
               linattn_activation_from_string("none") == LINATTN_ACTIVATION_NONE,
           "activation names");
  linattn_isa isas[8];
  int nisa = tk_available_isas(isas, 8);
  double t_all = tk_seconds();
  for (int ii = 0; ii < nisa; ii++) {
    double t0 = tk_seconds();
    int64_t failed_before = tk_failed();
    g_low_total = g_low_mismatch = 0;
    linattn_context* ctx[2] = {tk_context_create(isas[ii], 1), tk_context_create(isas[ii], 2)};
    tk_rng r;
    tk_rng_init(&r, seed * 131 + (uint64_t)isas[ii]);
    int n = 0;
    for (size_t o = 0; o < sizeof official / sizeof official[0]; o++)
      for (int di = 0; di < 3; di++) {
        conv_case c = {.name = official[o].name, .B = official[o].B, .C = official[o].C, .L = official[o].L,
                       .K = official[o].K, .dilation = 1, .bias = official[o].bias, .past = official[o].past,
                       .silu = official[o].silu, .dt = dtypes[di], .uniform01 = official[o].u01,
                       .variant = (int)((o + (size_t)di) % V_KINDS)};
        run_case(ctx[n & 1], isas[ii], 1 + (n & 1), &c, &r);
        n++;
      }
    static const int64_t Ks[] = {1, 2, 3, 4, 5};
    static const int64_t dils[] = {1, 2, 3, 0};
    static const int64_t Ls[] = {0, 1, 2, 3, 7, 16, 64, 200};
    static const int64_t Cs[] = {1, 4, 17, 33, 100, 256};
    tk_axis ax_dt, ax_k, ax_dil, ax_l, ax_c, ax_bias, ax_past, ax_act, ax_cl, ax_str, ax_var;
    tk_axis_init(&ax_dt, 3); tk_axis_init(&ax_k, 5); tk_axis_init(&ax_dil, 4); tk_axis_init(&ax_l, 8);
    tk_axis_init(&ax_c, 6); tk_axis_init(&ax_bias, 2); tk_axis_init(&ax_past, 2); tk_axis_init(&ax_act, 2);
    tk_axis_init(&ax_cl, 2); tk_axis_init(&ax_str, 2); tk_axis_init(&ax_var, V_KINDS);
    for (int i = 0; i < random_cases; i++, n++) {
      conv_case c = {.name = "random", .dt = dtypes[tk_axis_next(&ax_dt, &r)], .K = Ks[tk_axis_next(&ax_k, &r)],
                     .dilation = dils[tk_axis_next(&ax_dil, &r)], .L = Ls[tk_axis_next(&ax_l, &r)],
                     .C = Cs[tk_axis_next(&ax_c, &r)], .bias = tk_axis_next(&ax_bias, &r),
                     .past = tk_axis_next(&ax_past, &r), .silu = tk_axis_next(&ax_act, &r),
                     .channels_last = tk_axis_next(&ax_cl, &r), .strided = tk_axis_next(&ax_str, &r),
                     .variant = tk_axis_next(&ax_var, &r), .B = 1 + tk_below(&r, 3),
                     .null_empty = tk_below(&r, 2)};
      if (i % 40 == 39) { /* realistic channel counts (Qwen3.5 conv C = 6144 / 8192), k = 4 */
        c.C = i % 80 == 79 ? 8192 : 6144;
        c.K = 4;
        c.B = 1;
        c.L = (i / 40) % 2 ? 1 : 33;
        c.name = "realistic";
      }
      run_case(ctx[n & 1], isas[ii], 1 + (n & 1), &c, &r);
    }
    tk_context("isa=%s: all f16/bf16 outputs", linattn_isa_name(isas[ii]));
    tk_check(g_low_mismatch <= 5 + g_low_total / 200,
             "f16/bf16 outputs differing from the oracle: %lld of %lld (expected a rate of ~2^-12)",
             (long long)g_low_mismatch, (long long)g_low_total);
    tk_note("isa %s: f16/bf16 outputs differing from the oracle by one spacing: %lld of %lld",
            linattn_isa_name(isas[ii]), (long long)g_low_mismatch, (long long)g_low_total);
    linattn_context_destroy(ctx[0]);
    linattn_context_destroy(ctx[1]);
    tk_note("isa %-9s %d cases, %lld failed checks, %.2f s", linattn_isa_name(isas[ii]), n,
            (long long)(tk_failed() - failed_before), tk_seconds() - t0);
  }
  tk_note("total %.2f s", tk_seconds() - t_all);
  return tk_finish();
}
