/*
 * linattn-node-call: the bare library time of one decode-sized call, the baseline against which
 * python -m linattn.ort_overhead measures what the ONNX Runtime plugin adds per node.
 *
 *   linattn-node-call la|gdn H_q H_kv d [reps]
 *
 * la:  com.microsoft LinearAttention form (query (1, 1, H_q*d), key likewise, value (1, 1, H_kv*d),
 *      gated_delta, per-head decay and beta, separate present_state, as ONNX Runtime runs it);
 * gdn: GatedDeltaNet (query/key (1, 1, H_q, d), value (1, 1, H_kv, d), qwen gate, beta sigmoid,
 *      qk_l2_norm, separate final_state).
 * One thread, every buffer allocated once; prints the median and minimum of `reps` calls in
 * nanoseconds as JSON.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "linattn.h"

static double now_ns(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e9 + (double)ts.tv_nsec;
}

static float* random_buffer(size_t n, float amplitude, unsigned* seed) {
  float* p = (float*)malloc(n * sizeof *p);
  if (!p) exit(2);
  for (size_t i = 0; i < n; i++) {
    *seed = *seed * 1664525u + 1013904223u;
    p[i] = amplitude * ((float)(*seed >> 8) / 16777216.0f - 0.5f);
  }
  return p;
}

static int compare_double(const void* a, const void* b) {
  const double x = *(const double*)a, y = *(const double*)b;
  return x < y ? -1 : x > y;
}

int main(int argc, char** argv) {
  if (argc < 5 || (strcmp(argv[1], "la") && strcmp(argv[1], "gdn"))) {
    fprintf(stderr, "usage: %s la|gdn H_q H_kv d [reps]\n", argv[0]);
    return 2;
  }
  const int gdn = !strcmp(argv[1], "gdn");
  const int64_t hq = atoll(argv[2]), hkv = atoll(argv[3]), d = atoll(argv[4]);
  const int reps = argc > 5 ? atoi(argv[5]) : 20000;
  if (hq < 1 || hkv < 1 || d < 1 || reps < 1) return 2;
  unsigned seed = 1;
  float *q = random_buffer((size_t)(hq * d), 1.0f, &seed), *k = random_buffer((size_t)(hq * d), 0.25f, &seed);
  float *v = random_buffer((size_t)(hkv * d), 1.0f, &seed), *state = random_buffer((size_t)(hkv * d * d), 0.2f, &seed);
  float *decay = random_buffer((size_t)hkv, 0.2f, &seed), *beta = random_buffer((size_t)hkv, 1.0f, &seed);
  float *out = random_buffer((size_t)(hkv * d), 0.0f, &seed), *present = random_buffer((size_t)(hkv * d * d), 0.0f, &seed);
  float *a_log = random_buffer((size_t)hkv, 1.0f, &seed), *dt_bias = random_buffer((size_t)hkv, 1.0f, &seed);
  for (int64_t i = 0; i < hkv; i++) { /* LinearAttention: log-decay < 0, beta in (0, 1) */
    decay[i] = -0.05f - (decay[i] < 0 ? -decay[i] : decay[i]);
    beta[i] = 0.5f + beta[i] * 0.5f;
  }
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.num_threads = 1;
  linattn_context* ctx = NULL;
  if (linattn_context_create(&o, &ctx) != LINATTN_SUCCESS) return 1;
  const int64_t row_q[3] = {1, 1, hq * d}, row_v[3] = {1, 1, hkv * d}, gate[3] = {1, 1, hkv};
  const int64_t head_q[4] = {1, 1, hq, d}, head_v[4] = {1, 1, hkv, d}, st[4] = {1, hkv, d, d};
  const int64_t per_head[1] = {hkv};
  linattn_tensor tq = gdn ? linattn_make_tensor(q, LINATTN_DTYPE_F32, 4, head_q) : linattn_make_tensor(q, LINATTN_DTYPE_F32, 3, row_q);
  linattn_tensor tk = gdn ? linattn_make_tensor(k, LINATTN_DTYPE_F32, 4, head_q) : linattn_make_tensor(k, LINATTN_DTYPE_F32, 3, row_q);
  linattn_tensor tv = gdn ? linattn_make_tensor(v, LINATTN_DTYPE_F32, 4, head_v) : linattn_make_tensor(v, LINATTN_DTYPE_F32, 3, row_v);
  linattn_tensor to = gdn ? linattn_make_tensor(out, LINATTN_DTYPE_F32, 4, head_v) : linattn_make_tensor(out, LINATTN_DTYPE_F32, 3, row_v);
  linattn_tensor ts = linattn_make_tensor(state, LINATTN_DTYPE_F32, 4, st);
  linattn_tensor tp = linattn_make_tensor(present, LINATTN_DTYPE_F32, 4, st);
  linattn_tensor td = linattn_make_tensor(decay, LINATTN_DTYPE_F32, 3, gate);
  linattn_tensor tb = linattn_make_tensor(beta, LINATTN_DTYPE_F32, 3, gate);
  linattn_tensor ta = linattn_make_tensor(a_log, LINATTN_DTYPE_F32, 1, per_head);
  linattn_tensor tt = linattn_make_tensor(dt_bias, LINATTN_DTYPE_F32, 1, per_head);
  linattn_linear_attention_desc la;
  linattn_linear_attention_desc_init(&la);
  la.q_num_heads = hq;
  la.kv_num_heads = hkv;
  la.scale = 1.0f;
  la.flags = LINATTN_LA_ORT_CONTRIB;
  linattn_gated_delta_net_desc g;
  linattn_gated_delta_net_desc_init(&g);
  g.gate_activation = LINATTN_GDN_GATE_SOFTPLUS;
  g.beta_activation = LINATTN_GDN_BETA_SIGMOID;
  g.qk_l2_norm = 1;
  double* times = (double*)malloc((size_t)reps * sizeof *times);
  if (!times) return 2;
  for (int r = -reps / 10 - 1; r < reps; r++) { /* the first tenth warms caches and the workspace */
    const double t0 = now_ns();
    linattn_status s = gdn ? linattn_gated_delta_net(ctx, &g, &tq, &tk, &tv, NULL, 0, &td, &tb, &ts, &ta, &tt, NULL,
                                                     &to, &tp, NULL, NULL, 0)
                           : linattn_linear_attention(ctx, &la, &tq, &tk, &tv, &ts, &td, &tb, &to, &tp, NULL, 0);
    const double t1 = now_ns();
    if (s != LINATTN_SUCCESS) {
      fprintf(stderr, "%s\n", linattn_last_error());
      return 1;
    }
    if (r >= 0) times[r] = t1 - t0;
  }
  qsort(times, (size_t)reps, sizeof *times, compare_double);
  printf("{\"op\": \"%s\", \"H_q\": %lld, \"H_kv\": %lld, \"d\": %lld, \"reps\": %d, \"median_ns\": %.0f, \"min_ns\": %.0f}\n",
         argv[1], (long long)hq, (long long)hkv, (long long)d, reps, times[reps / 2], times[0]);
  linattn_context_destroy(ctx);
  free(times);
  free(q); free(k); free(v); free(state); free(decay); free(beta); free(out); free(present); free(a_log); free(dt_bias);
  return 0;
}
