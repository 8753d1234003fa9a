/* Float64 oracles (see oracle.h). Deliberately plain: one state per (batch, kv head). */
#include "oracle.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "testkit.h"

int64_t oracle_la_out_heads(const oracle_la* p) { return p->Hq >= p->Hkv ? p->Hq : p->Hkv; }

void oracle_linear_attention(const oracle_la* p) {
  const int64_t B = p->B, T = p->T, dk = p->dk, dv = p->dv;
  const int64_t Hout = oracle_la_out_heads(p);
  const bool gated = p->rule == LINATTN_UPDATE_GATED || p->rule == LINATTN_UPDATE_GATED_DELTA;
  const bool delta = p->rule == LINATTN_UPDATE_DELTA || p->rule == LINATTN_UPDATE_GATED_DELTA;
  const int64_t qw = p->Hq * dk, kw = p->Nk * dk, vw = p->Hkv * dv, ow = Hout * dv;
  const int64_t decay_w = p->decay_kind == ORACLE_DECAY_PER_KEY ? p->Hkv * dk : p->Hkv;
  const int64_t beta_w = p->beta_kind == ORACLE_BETA_SHARED ? 1 : p->Hkv;
  double* S = tk_dalloc(dk * dv);
  double* u = tk_dalloc(dv);

  for (int64_t b = 0; b < B; b++) {
    for (int64_t h = 0; h < p->Hkv; h++) {
      const int64_t kh = h / (p->Hkv / p->Nk);
      double* Sout = p->state + (b * p->Hkv + h) * dk * dv;
      if (p->past)
        memcpy(S, p->past + (b * p->Hkv + h) * dk * dv, sizeof(double) * (size_t)(dk * dv));
      else
        memset(S, 0, sizeof(double) * (size_t)(dk * dv));
      for (int64_t t = 0; t < T; t++) {
        const int64_t bt = b * T + t;
        const double* k = p->k + bt * kw + kh * dk;
        const double* v = p->v + bt * vw + h * dv;
        /* 1. decay the whole state first */
        if (gated) {
          const double* g = p->decay + bt * decay_w;
          for (int64_t i = 0; i < dk; i++) {
            double a = exp(p->decay_kind == ORACLE_DECAY_PER_KEY ? g[h * dk + i] : g[h]);
            for (int64_t j = 0; j < dv; j++) S[i * dv + j] *= a;
          }
        }
        /* 2. retrieval from the decayed state; u = beta (v - S^T k) or v */
        if (delta) {
          double beta = p->beta[bt * beta_w + (p->beta_kind == ORACLE_BETA_SHARED ? 0 : h)];
          for (int64_t j = 0; j < dv; j++) {
            double r = 0;
            for (int64_t i = 0; i < dk; i++) r += S[i * dv + j] * k[i];
            u[j] = beta * (v[j] - r);
          }
        } else {
          for (int64_t j = 0; j < dv; j++) u[j] = v[j];
        }
        /* 3. write */
        for (int64_t i = 0; i < dk; i++)
          for (int64_t j = 0; j < dv; j++) S[i * dv + j] += k[i] * u[j];
        /* 4. readout after the write, for every output head served by kv head h */
        for (int64_t oh = 0; oh < Hout; oh++) {
          int64_t kvh, qh;
          if (p->Hq >= p->Hkv) {
            qh = oh;
            kvh = oh / (p->Hq / p->Hkv);
          } else {
            kvh = oh;
            qh = oh / (p->Hkv / p->Hq);
          }
          if (kvh != h) continue;
          const double* q = p->q + bt * qw + qh * dk;
          double* o = p->out + bt * ow + oh * dv;
          double* m = p->out_mag ? p->out_mag + bt * ow + oh * dv : NULL;
          for (int64_t j = 0; j < dv; j++) {
            double acc = 0, mag = 0;
            for (int64_t i = 0; i < dk; i++) {
              acc += q[i] * S[i * dv + j];
              mag += fabs(q[i] * S[i * dv + j]);
            }
            o[j] = p->scale * acc;
            if (m) m[j] = fabs(p->scale) * mag;
          }
        }
      }
      memcpy(Sout, S, sizeof(double) * (size_t)(dk * dv));
    }
  }
  free(S);
  free(u);
}

void oracle_causal_conv(const oracle_conv* p) {
  const int64_t B = p->B, C = p->C, L = p->L, K = p->K;
  const int64_t dil = p->dilation > 0 ? p->dilation : 1;
  const int64_t S = (K - 1) * dil;
  for (int64_t b = 0; b < B; b++) {
    for (int64_t c = 0; c < C; c++) {
      /* padded sequence: S past values (or zeros) then the L inputs */
      const double* x = p->x + (b * C + c) * L;
      const double* past = p->past ? p->past + (b * C + c) * S : NULL;
#define PADDED(pos) ((pos) < S ? (past ? past[(pos)] : 0.0) : x[(pos) - S])
      for (int64_t l = 0; l < L; l++) {
        /* ONNX reference: fp16 conv output is rounded to fp16 before the fp16 bias add (numpy's
         * fp16 matmul returns fp16); float32 and bfloat16 round once after the bias. */
        const int bias_after_round = p->bias && p->dtype == LINATTN_DTYPE_F16;
        double acc = (p->bias && !bias_after_round) ? p->bias[c] : 0.0;
        double mag = p->bias ? fabs(p->bias[c]) : 0.0;
        for (int64_t j = 0; j < K; j++) {
          /* output l sits at padded position l + S; tap j reads (K-1-j)*dil positions back */
          double xv = PADDED(l + S - (K - 1 - j) * dil);
          acc += p->w[c * K + j] * xv;
          mag += fabs(p->w[c * K + j] * xv);
        }
        int64_t o = (b * C + c) * L + l;
        if (p->pre) p->pre[o] = acc;
        if (p->mag) p->mag[o] = mag;
        if (bias_after_round) acc = tk_round(acc, p->dtype) + p->bias[c];
        double y = tk_round(acc, p->dtype);
        if (p->activation == LINATTN_ACTIVATION_SILU) y = tk_round(y / (1.0 + exp(-y)), p->dtype);
        p->out[o] = y;
      }
      for (int64_t s = 0; s < S; s++) p->present[(b * C + c) * S + s] = PADDED(L + s);
#undef PADDED
    }
  }
}
