/*
 * Benchmark presets: one recurrent layer of real models (shapes from spec.md section 6).
 * python/linattn/bench.py mirrors these tables for the ONNX Runtime comparison; keep them in
 * step (tests/python/test_bench_smoke.py checks that they agree).
 */
#include "bench.h"

const la_preset bench_la_presets[] = {
    /* Qwen3.5-0.8B / 2B: 16 q/k heads, 16 value heads, d 128, per-head decay, per-head beta. */
    {"qwen3.5-0.8b", "Qwen3.5-0.8B Gated DeltaNet: H 16/16, d 128, gated_delta, per-head decay",
     16, 16, 16, 128, 128, LINATTN_UPDATE_GATED_DELTA, 0, 0.0f, 0, 1},
    /* Qwen3.5-9B: 16 q/k heads, 32 value heads. ORT contrib form: q and k stay at 16 heads
     * (inverse GQA + separate key heads), no repeat materialised. */
    {"qwen3.5-9b-ort", "Qwen3.5-9B GDN, ORT contrib form: q 16, k 16 (n_k), kv 32, d 128",
     16, 32, 16, 128, 128, LINATTN_UPDATE_GATED_DELTA, 0, 0.0f, LINATTN_LA_ORT_CONTRIB, 1},
    /* Same layer in the standard ai.onnx form: q and k repeat-interleaved up to 32 heads by
     * the caller (the repeat itself is not timed). */
    {"qwen3.5-9b-std", "Qwen3.5-9B GDN, ai.onnx form: q,k repeat-interleaved to 32, kv 32, d 128",
     32, 32, 32, 128, 128, LINATTN_UPDATE_GATED_DELTA, 0, 0.0f, 0, 1},
    {"qwen3.5-27b-ort", "Qwen3.5-27B GDN, ORT contrib form: q 16, k 16 (n_k), kv 48, d 128",
     16, 48, 16, 128, 128, LINATTN_UPDATE_GATED_DELTA, 0, 0.0f, LINATTN_LA_ORT_CONTRIB, 1},
    {"qwen3.5-27b-std", "Qwen3.5-27B GDN, ai.onnx form: q,k repeat-interleaved to 48, kv 48, d 128",
     48, 48, 48, 128, 128, LINATTN_UPDATE_GATED_DELTA, 0, 0.0f, 0, 1},
    /* Kimi-Linear KDA: gated_delta with per-key-dim decay. */
    {"kimi-kda", "Kimi-Linear KDA: H 32/32, d 128, gated_delta, per-key decay",
     32, 32, 32, 128, 128, LINATTN_UPDATE_GATED_DELTA, 1, 0.0f, 0, 1},
    /* RWKV-6 7B style: gated (no delta), per-key decay, no 1/sqrt(d) scaling. */
    {"rwkv6-7b", "RWKV-6 7B style: H 64/64, d 64, gated, per-key decay, scale 1",
     64, 64, 64, 64, 64, LINATTN_UPDATE_GATED, 1, 1.0f, 0, 1},
    /* Mamba-2 2.7B style: d_k = d_state 128, d_v = headdim 64, per-head decay dt*A, scale 1. */
    {"mamba2-2.7b", "Mamba-2 2.7B style: H 80/80, d_k 128, d_v 64, gated, per-head decay, scale 1",
     80, 80, 80, 128, 64, LINATTN_UPDATE_GATED, 0, 1.0f, 0, 1},
    /* For the smoke test: runs in microseconds even with the reference kernels. */
    {"tiny", "test shape: H 2/2, d 16, gated_delta, per-head decay",
     2, 2, 2, 16, 16, LINATTN_UPDATE_GATED_DELTA, 0, 0.0f, 0, 0},
};
const size_t bench_num_la_presets = sizeof bench_la_presets / sizeof bench_la_presets[0];

const conv_preset bench_conv_presets[] = {
    /* conv C = 2*n_k*d_k + n_v*d_v on the fused QKV projection, k 4, no bias, SiLU */
    {"qwen3.5-0.8b-conv", "Qwen3.5-0.8B/2B short conv: C 6144, k 4, SiLU, no bias", 6144, 4,
     LINATTN_ACTIVATION_SILU, 1},
    {"qwen3.5-9b-conv", "Qwen3.5-4B/9B/Qwen3-Next short conv: C 8192, k 4, SiLU, no bias", 8192, 4,
     LINATTN_ACTIVATION_SILU, 1},
    {"tiny-conv", "test shape: C 64, k 4, SiLU", 64, 4, LINATTN_ACTIVATION_SILU, 0},
};
const size_t bench_num_conv_presets = sizeof bench_conv_presets / sizeof bench_conv_presets[0];

double la_flops_per_token(const la_preset* p) {
  int gated = p->rule == LINATTN_UPDATE_GATED || p->rule == LINATTN_UPDATE_GATED_DELTA;
  int delta = p->rule == LINATTN_UPDATE_DELTA || p->rule == LINATTN_UPDATE_GATED_DELTA;
  /* query heads reading one state: H_q/H_kv for GQA, 1 for inverse GQA (one output per kv head) */
  int64_t group = p->q_heads > p->kv_heads ? p->q_heads / p->kv_heads : 1;
  double per_elem = (gated ? 1.0 : 0.0) + (delta ? 2.0 : 0.0) + 2.0 + 2.0 * (double)group;
  return (double)p->kv_heads * (double)p->d_k * (double)p->d_v * per_elem;
}
