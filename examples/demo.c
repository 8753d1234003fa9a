/* linattn demo: one Qwen3.5-0.8B Gated DeltaNet layer's linear-attention core on synthetic data.
 *
 *   projection output (B, T, 6144) --CausalConvWithState (k=4, SiLU, channels-last)--> (B, T, 6144)
 *   split into q | k | v (2048 each = 16 heads x 128) as strided views, L2-normalise q and k per
 *   head, gates decay = -exp(A_log) * softplus(a + dt_bias), beta = sigmoid(b), then
 *   LinearAttention gated_delta (H = 16, d_k = d_v = 128, per-head decay).
 *
 * Runs a prefill of P tokens and D decode steps carrying both states, checks that prefill +
 * decode equals one call over all P + D tokens, and prints tokens per second for each phase.
 * Usage: linattn-demo [prefill_tokens] [decode_steps] [threads]
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linattn.h"

enum { H = 16, D = 128, KCONV = 4, C = 3 * H * D };

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static float frand(void) { /* uniform in [-1, 1) */
  rng_state ^= rng_state << 13; rng_state ^= rng_state >> 7; rng_state ^= rng_state << 17;
  return (float)((rng_state >> 40) * (1.0 / 8388608.0)) - 1.0f;
}

#define CHECK(call)                                                                   \
  do {                                                                                \
    linattn_status st_ = (call);                                                      \
    if (st_ != LINATTN_SUCCESS) {                                                     \
      fprintf(stderr, "%s failed: %s\n", #call, linattn_last_error());                \
      exit(1);                                                                        \
    }                                                                                 \
  } while (0)

typedef struct layer_state {
  float* conv;  /* (1, KCONV-1, C) channels-last */
  float* rec;   /* (1, H, D, D) */
} layer_state;

typedef struct layer {
  float* conv_w;  /* (C, 1, KCONV) */
  float A_log[H], dt_bias[H];
} layer;

/* Runs tokens [t0, t0 + n) of the synthetic stream through the layer. proj: (T_all, C), gates a/b:
 * (T_all, H). Writes out (n, H*D). */
static double run_layer(linattn_context* ctx, const layer* L, const float* proj, const float* ga, const float* gb,
                        int64_t t0, int64_t n, layer_state* s, float* out, float* scratch_conv) {
  double t_start = now_s();
  /* 1. causal conv + SiLU, channels-last, state carried in place */
  linattn_causal_conv_desc cd;
  linattn_causal_conv_desc_init(&cd);
  cd.activation = LINATTN_ACTIVATION_SILU;
  cd.channels_last = 1;
  int64_t xdims[3] = {1, n, C}, wdims[3] = {C, 1, KCONV}, sdims[3] = {1, KCONV - 1, C};
  linattn_tensor x = linattn_make_tensor((void*)(proj + t0 * C), LINATTN_DTYPE_F32, 3, xdims);
  linattn_tensor w = linattn_make_tensor(L->conv_w, LINATTN_DTYPE_F32, 3, wdims);
  linattn_tensor y = linattn_make_tensor(scratch_conv, LINATTN_DTYPE_F32, 3, xdims);
  linattn_tensor cs = linattn_make_tensor(s->conv, LINATTN_DTYPE_F32, 3, sdims);
  CHECK(linattn_causal_conv_with_state(ctx, &cd, &x, &w, NULL, &cs, &y, &cs, NULL, 0));

  /* 2. L2-normalise q and k per head in place (outside the op, as in the model) */
  for (int64_t t = 0; t < n; t++)
    for (int part = 0; part < 2; part++)
      for (int h = 0; h < H; h++) {
        float* v = scratch_conv + t * C + part * H * D + h * D;
        double ss = 0;
        for (int i = 0; i < D; i++) ss += (double)v[i] * v[i];
        float inv = (float)(1.0 / sqrt(ss + 1e-6));
        for (int i = 0; i < D; i++) v[i] *= inv;
      }
  /* 3. gates */
  float* decay = (float*)malloc(sizeof(float) * (size_t)(n * H));
  float* beta = (float*)malloc(sizeof(float) * (size_t)(n * H));
  for (int64_t t = 0; t < n; t++)
    for (int h = 0; h < H; h++) {
      float a = ga[(t0 + t) * H + h] + L->dt_bias[h];
      float softplus = a > 20.0f ? a : log1pf(expf(a));
      decay[t * H + h] = -expf(L->A_log[h]) * softplus;
      beta[t * H + h] = 1.0f / (1.0f + expf(-gb[(t0 + t) * H + h]));
    }
  /* 4. LinearAttention: q, k, v are views into the conv output (token stride C), no copy */
  linattn_linear_attention_desc ad;
  linattn_linear_attention_desc_init(&ad);
  ad.q_num_heads = H;
  ad.kv_num_heads = H;
  int64_t qdims[3] = {1, n, H * D}, gdims[3] = {1, n, H}, stdims[4] = {1, H, D, D};
  linattn_tensor q = linattn_make_tensor(scratch_conv, LINATTN_DTYPE_F32, 3, qdims);
  q.strides[0] = n * C; q.strides[1] = C; q.strides[2] = 1;
  linattn_tensor k = q, v = q;
  k.data = scratch_conv + H * D;
  v.data = scratch_conv + 2 * H * D;
  linattn_tensor g = linattn_make_tensor(decay, LINATTN_DTYPE_F32, 3, gdims);
  linattn_tensor b = linattn_make_tensor(beta, LINATTN_DTYPE_F32, 3, gdims);
  linattn_tensor o = linattn_make_tensor(out, LINATTN_DTYPE_F32, 3, qdims);
  linattn_tensor st = linattn_make_tensor(s->rec, LINATTN_DTYPE_F32, 4, stdims);
  CHECK(linattn_linear_attention(ctx, &ad, &q, &k, &v, &st, &g, &b, &o, &st, NULL, 0));
  free(decay);
  free(beta);
  return now_s() - t_start;
}

static void state_init(layer_state* s) {
  s->conv = (float*)calloc((size_t)(KCONV - 1) * C, sizeof(float));
  s->rec = (float*)calloc((size_t)H * D * D, sizeof(float));
}

int main(int argc, char** argv) {
  const int64_t P = argc > 1 ? atol(argv[1]) : 512;
  const int64_t Dn = argc > 2 ? atol(argv[2]) : 64;
  const int threads = argc > 3 ? atoi(argv[3]) : 0;
  if (P < 0 || Dn < 1) {
    fprintf(stderr, "usage: %s [prefill_tokens >= 0] [decode_steps >= 1] [threads]\n", argv[0]);
    return 2;
  }
  const int64_t N = P + Dn;
  linattn_context_options opt;
  linattn_context_options_init(&opt);
  opt.num_threads = threads;
  linattn_context* ctx;
  CHECK(linattn_context_create(&opt, &ctx));
  printf("linattn %s: Qwen3.5-0.8B Gated DeltaNet layer (conv C=%d k=%d SiLU, gated_delta H=%d d=%d)\n",
         linattn_version_string(), C, KCONV, H, D);
  printf("kernels: %s, threads: %d\n", linattn_isa_name(linattn_context_isa(ctx)), (int)linattn_context_num_threads(ctx));

  layer L;
  L.conv_w = (float*)malloc(sizeof(float) * C * KCONV);
  for (int i = 0; i < C * KCONV; i++) L.conv_w[i] = 0.5f * frand();
  for (int h = 0; h < H; h++) {
    L.A_log[h] = logf(1.0f + 15.0f * (0.5f + 0.5f * frand()));
    L.dt_bias[h] = 0.5f * frand();
  }
  float* proj = (float*)malloc(sizeof(float) * (size_t)(N * C));
  float* ga = (float*)malloc(sizeof(float) * (size_t)(N * H));
  float* gb = (float*)malloc(sizeof(float) * (size_t)(N * H));
  for (int64_t i = 0; i < N * C; i++) proj[i] = frand();
  for (int64_t i = 0; i < N * H; i++) { ga[i] = 2.0f * frand() - 2.0f; gb[i] = 2.0f * frand(); }
  float* conv_buf = (float*)malloc(sizeof(float) * (size_t)(N * C));
  float* out_steps = (float*)malloc(sizeof(float) * (size_t)(N * H * D));
  float* out_once = (float*)malloc(sizeof(float) * (size_t)(N * H * D));
  /* touch every page now so that no phase's timing includes first-touch page faults */
  memset(conv_buf, 0, sizeof(float) * (size_t)(N * C));
  memset(out_steps, 0, sizeof(float) * (size_t)(N * H * D));
  memset(out_once, 0, sizeof(float) * (size_t)(N * H * D));

  /* prefill then decode, states carried */
  layer_state s1;
  state_init(&s1);
  double t_prefill = P > 0 ? run_layer(ctx, &L, proj, ga, gb, 0, P, &s1, out_steps, conv_buf) : 0.0;
  double t_decode = 0.0;
  for (int64_t t = P; t < N; t++) t_decode += run_layer(ctx, &L, proj, ga, gb, t, 1, &s1, out_steps + t * H * D, conv_buf);

  /* the same tokens in one call */
  layer_state s2;
  state_init(&s2);
  double t_once = run_layer(ctx, &L, proj, ga, gb, 0, N, &s2, out_once, conv_buf);

  double max_ref = 0, max_err = 0;
  for (int64_t i = 0; i < N * H * D; i++) {
    double r = fabs(out_once[i]), e = fabs((double)out_once[i] - out_steps[i]);
    if (r > max_ref) max_ref = r;
    if (!(e <= max_err)) max_err = e; /* NaN propagates */
  }
  double state_ref = 0, state_err = 0;
  for (int64_t i = 0; i < (int64_t)H * D * D; i++) {
    double r = fabs(s2.rec[i]), e = fabs((double)s2.rec[i] - s1.rec[i]);
    if (r > state_ref) state_ref = r;
    if (!(e <= state_err)) state_err = e;
  }
  for (int64_t i = 0; i < (int64_t)(KCONV - 1) * C; i++)
    if (s1.conv[i] != s2.conv[i]) state_err = INFINITY; /* the conv state is a copy of inputs: exact */

  printf("prefill  %6lld tokens: %9.3f ms  %10.1f tokens/s\n", (long long)P, 1e3 * t_prefill, P > 0 ? P / t_prefill : 0.0);
  printf("decode   %6lld steps : %9.3f ms  %10.1f tokens/s\n", (long long)Dn, 1e3 * t_decode, Dn / t_decode);
  printf("one call %6lld tokens: %9.3f ms  %10.1f tokens/s\n", (long long)N, 1e3 * t_once, N / t_once);
  const double out_rel = max_ref > 0 ? max_err / max_ref : max_err;
  const double st_rel = state_ref > 0 ? state_err / state_ref : state_err;
  const int ok = out_rel <= 1e-5 && st_rel <= 1e-5;
  printf("prefill+decode vs one call: output max rel diff %.2e, state max rel diff %.2e -> %s\n", out_rel, st_rel,
         ok ? "OK" : "MISMATCH");

  free(L.conv_w); free(proj); free(ga); free(gb); free(conv_buf); free(out_steps); free(out_once);
  free(s1.conv); free(s1.rec); free(s2.conv); free(s2.rec);
  linattn_context_destroy(ctx);
  return ok ? 0 : 1;
}
