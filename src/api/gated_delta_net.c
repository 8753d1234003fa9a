/* GatedDeltaNet operator (ONNX Runtime com.microsoft GatedDeltaNet, version 1): validation,
 * shapes, the split into units and threading. The recurrence runs on the LinearAttention
 * micro-kernels (la_unit / la_params, src/internal.h): each unit is (request, value head, value
 * column block) over the request's tokens; the kernels' staging applies the fused gates, the beta
 * sigmoid and the q/k L2 norm as they convert each token, works on the V-major state directly
 * (la_params.state_v_major) and writes the transition capture. Kernel families without the
 * GatedDeltaNet staging (handles_gdn false; every built-in family has it) would run the portable
 * fused kernel instead. Units whose outputs are not finite are recomputed by the reference
 * kernel, as LinearAttention's (la_units.h). */
#include <float.h>
#include <math.h>
#include <string.h>

#include "api/la_units.h"
#include "api/packed_batch.h"
#include "api/tensor_check.h"
#include "convert.h"
#include "internal.h"
#include "kernels/la_common.h"

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

/* A token-major activation: element offset of (request r starting at token s0, head h, 0) is
 * off + (rank4 ? r * rs : s0 * ts) + h * hs; tokens ts apart. */
typedef struct gdn_rows {
  char* data;
  int64_t off, ts, hs, rs;
} gdn_rows;

typedef struct gdn_call {
  la_params p;  /* p.T is set per request */
  int64_t T, B, S; /* S: tokens per request (uniform packing) */
  int64_t Hq, Hv, dk, dv, grp, out_heads;
  bool rank4, packed_qkv, per_key_decay, dt_bias_per_key;
  const int32_t* cu;
  const int32_t* capture_count;
  tview q, k, v, decay, beta, init, a_log, dt_bias, out, fin, su;
  bool has_decay, has_beta, has_init, has_fin, has_su, has_gate_inputs;
  bool in_place; /* final_state is initial_state */
  /* Per-head gate and beta activation computed per unit before its kernel runs (gdn_unit_gates):
   * p then has gate NONE, no beta sigmoid and fp32 gates; these keep the call's own. */
  bool pre_gates;
  la_gate_kind gate_in;
  bool beta_sigmoid_in;
  linattn_dtype gate_dtype_in;
  gdn_rows qr, kr, vr, outr;
  int64_t C, dw, su_row;
  /* work split */
  const la_kernel* kern;
  int64_t block_cols, blocks_per_head, num_units;
  int64_t lockstep_units, lockstep_min; /* lock-step groups of a request's units (la_units.h) */
  bool prefetch_next;   /* a lock-step step prefetches the next unit's rows (la_tuning) */
  bool refine;          /* non-finite unit results are recomputed by the reference kernel */
  uint32_t refine_limit; /* la_refine_limit */
  size_t num_tasks, state_block_bytes, entry_copy_bytes, gate_table_bytes, kernel_scratch_bytes, unit_bytes, task_bytes;
  char* workspace;
} gdn_call;

void linattn_gated_delta_net_desc_init(linattn_gated_delta_net_desc* desc) {
  if (!desc) return;
  memset(desc, 0, sizeof *desc);
  desc->update_rule = LINATTN_UPDATE_GATED_DELTA;
  desc->gate_activation = LINATTN_GDN_GATE_NONE;
  desc->beta_activation = LINATTN_GDN_BETA_NONE;
  desc->gate_lower_bound = -5.0f;
  desc->chunk_size = 64;
  desc->qk_l2_norm_eps = LA_L2_NORM_EPS;
}

linattn_gdn_gate linattn_gdn_gate_from_string(const char* name) {
  if (!name) return LINATTN_GDN_GATE_INVALID;
  if (!strcmp(name, "none")) return LINATTN_GDN_GATE_NONE;
  if (!strcmp(name, "softplus") || !strcmp(name, "qwen")) return LINATTN_GDN_GATE_SOFTPLUS;
  if (!strcmp(name, "sigmoid") || !strcmp(name, "kda")) return LINATTN_GDN_GATE_SIGMOID;
  return LINATTN_GDN_GATE_INVALID;
}

linattn_gdn_beta linattn_gdn_beta_from_string(const char* name) {
  if (!name) return LINATTN_GDN_BETA_INVALID;
  if (!strcmp(name, "none")) return LINATTN_GDN_BETA_NONE;
  if (!strcmp(name, "sigmoid")) return LINATTN_GDN_BETA_SIGMOID;
  return LINATTN_GDN_BETA_INVALID;
}

static const char* gdn_rule_name(linattn_update_rule r) {
  return r == LINATTN_UPDATE_LINEAR ? "linear" : r == LINATTN_UPDATE_GATED ? "gated" : r == LINATTN_UPDATE_DELTA ? "delta" : "gated_delta";
}

static linattn_status gdn_check_desc(const linattn_gated_delta_net_desc* d) {
  if (!d) return ERR("desc: NULL");
  switch (d->update_rule) {
    case LINATTN_UPDATE_LINEAR: case LINATTN_UPDATE_GATED: case LINATTN_UPDATE_DELTA: case LINATTN_UPDATE_GATED_DELTA: break;
    default: return ERR("desc.update_rule: unknown value %d (expected linear, gated, delta or gated_delta)", (int)d->update_rule);
  }
  if (d->gate_activation < LINATTN_GDN_GATE_NONE || d->gate_activation > LINATTN_GDN_GATE_SIGMOID)
    return ERR("desc.gate_activation: unknown value %d (expected none, softplus or sigmoid)", (int)d->gate_activation);
  if (d->beta_activation != LINATTN_GDN_BETA_NONE && d->beta_activation != LINATTN_GDN_BETA_SIGMOID)
    return ERR("desc.beta_activation: unknown value %d (expected none or sigmoid)", (int)d->beta_activation);
  if (!(d->qk_l2_norm_eps >= 0.0f && d->qk_l2_norm_eps <= FLT_MAX))
    return ERR("desc.qk_l2_norm_eps: %g must be finite and >= 0 (ORT: 1e-12, fla: 1e-6)", (double)d->qk_l2_norm_eps);
  if (d->state_update_capacity < 0 || d->state_update_capacity > LINATTN_GDN_MAX_CAPTURE)
    return ERR("desc.state_update_capacity: %lld outside [0, %d]", (long long)d->state_update_capacity,
               LINATTN_GDN_MAX_CAPTURE);
  return LINATTN_SUCCESS;
}

/* Row addressing of a validated q/k/v/output view whose last two dims are (heads, width) or,
 * packed QKV, whose last dim is the fused row. */
static gdn_rows gdn_rows_of(const tview* t, bool rank4_spelling, int64_t off) {
  gdn_rows r;
  const int32_t lead = rank4_spelling ? 2 : 1; /* leading token dims */
  r.data = t->data;
  r.off = off;
  r.rs = rank4_spelling ? t->strides[0] : 0;
  r.ts = t->strides[lead - 1];
  r.hs = t->rank > lead + 1 ? t->strides[lead] : 0;
  return r;
}

/* query / key / value: ranks, head counts and widths. */
static linattn_status gdn_resolve_qkv(gdn_call* c, const linattn_tensor* query, const linattn_tensor* key,
                                      const linattn_tensor* value, const linattn_tensor* initial_state) {
  linattn_status st;
  if (!query) return ERR("query: NULL (required)");
  if ((key == NULL) != (value == NULL)) return ERR("key / value: pass both, or neither for packed QKV in query");
  c->packed_qkv = key == NULL;
  if (c->packed_qkv) {
    if (query->rank != 2 && query->rank != 3)
      return ERR("query: packed QKV must be rank 2 (T, 2*H_q*d_k + H_v*d_v) or rank 3 (B, S, same), got rank %d",
                 (int)query->rank);
    if ((st = tview_init(&c->q, "query", query, query->rank, false, "(T, 2*H_q*d_k + H_v*d_v)"))) return st;
    if (!initial_state) return ERR("initial_state: required with packed QKV (it gives the head counts and sizes)");
    if (initial_state->rank != 4)
      return ERR("initial_state: expected rank 4 V-major (B, H_v, d_v, d_k), got rank %d", (int)initial_state->rank);
    c->rank4 = query->rank == 3;
    c->Hv = initial_state->dims[1];
    c->dv = initial_state->dims[2];
    c->dk = initial_state->dims[3];
    const int64_t W = c->q.dims[c->q.rank - 1];
    int64_t vw;
    if (c->Hv <= 0 || c->dk <= 0 || c->dv < 0 || !linattn_mul_i64(c->Hv, c->dv, &vw) || W - vw <= 0 || (W - vw) % (2 * c->dk))
      return ERR("query: packed width %lld must be 2*H_q*d_k + H_v*d_v with H_v, d_v, d_k = %lld, %lld, %lld from initial_state",
                 (long long)W, (long long)c->Hv, (long long)c->dv, (long long)c->dk);
    c->Hq = (W - vw) / (2 * c->dk);
    c->qr = gdn_rows_of(&c->q, c->rank4, 0);
    c->kr = c->qr;
    c->kr.off = c->Hq * c->dk;
    c->vr = c->qr;
    c->vr.off = 2 * c->Hq * c->dk;
    c->qr.hs = c->kr.hs = c->dk;
    c->vr.hs = c->dv;
    c->T = c->q.dims[0];
    if (c->rank4 && !linattn_mul_i64(c->q.dims[0], c->q.dims[1], &c->T)) return ERR("query: B*S overflows");
  } else {
    if (query->rank != 3 && query->rank != 4)
      return ERR("query: expected rank 3 (T, H_q, d_k) or rank 4 (B, S, H_q, d_k), got rank %d", (int)query->rank);
    c->rank4 = query->rank == 4;
    const int32_t r = query->rank;
    const char* qdoc = c->rank4 ? "(B, S, H_q, d_k)" : "(T, H_q, d_k)";
    if ((st = tview_init(&c->q, "query", query, r, false, qdoc))) return st;
    if ((st = tview_init(&c->k, "key", key, r, false, c->rank4 ? "(B, S, H_q, d_k) like query" : "(T, H_q, d_k) like query")))
      return st;
    if ((st = tview_init(&c->v, "value", value, r, false, c->rank4 ? "(B, S, H_v, d_v)" : "(T, H_v, d_v)"))) return st;
    c->Hq = c->q.dims[r - 2];
    c->dk = c->q.dims[r - 1];
    c->Hv = c->v.dims[r - 2];
    c->dv = c->v.dims[r - 1];
    for (int32_t i = 0; i < r - 2; i++) {
      if (c->k.dims[i] != c->q.dims[i] || c->v.dims[i] != c->q.dims[i])
        return ERR("key / value: token dims differ from query's (dim %d: %lld / %lld vs %lld)", (int)i,
                   (long long)c->k.dims[i], (long long)c->v.dims[i], (long long)c->q.dims[i]);
    }
    if (c->k.dims[r - 2] != c->Hq || c->k.dims[r - 1] != c->dk)
      return ERR("key: heads and width (%lld, %lld) must equal query's (%lld, %lld) (num_heads_k == num_heads_q)",
                 (long long)c->k.dims[r - 2], (long long)c->k.dims[r - 1], (long long)c->Hq, (long long)c->dk);
    c->T = c->q.dims[0];
    if (c->rank4 && !linattn_mul_i64(c->q.dims[0], c->q.dims[1], &c->T)) return ERR("query: B*S overflows");
    c->qr = gdn_rows_of(&c->q, c->rank4, 0);
    c->kr = gdn_rows_of(&c->k, c->rank4, 0);
    c->vr = gdn_rows_of(&c->v, c->rank4, 0);
  }
  const linattn_dtype dt = c->q.dtype;
  if (!c->packed_qkv && (c->k.dtype != dt || c->v.dtype != dt))
    return ERR("key / value: dtype %s / %s differs from query's %s", linattn_dtype_name(c->k.dtype),
               linattn_dtype_name(c->v.dtype), linattn_dtype_name(dt));
  if (c->Hq <= 0 || c->dk <= 0)
    return ERR("query: num_heads_q and head_size_qk must be positive, got %lld and %lld", (long long)c->Hq, (long long)c->dk);
  if (c->Hv <= 0 || c->Hv % c->Hq)
    return ERR("value: num_heads_v (%lld) must be a positive multiple of num_heads_q (%lld)", (long long)c->Hv, (long long)c->Hq);
  c->grp = c->Hv / c->Hq;
  c->out_heads = c->Hv;
  return LINATTN_SUCCESS;
}

/* Requests: cu_seqlens (ragged) or uniform packing with the batch from initial_state. */
static linattn_status gdn_resolve_batch(gdn_call* c, const int32_t* cu, int64_t ncu, const linattn_tensor* initial_state) {
  if (c->rank4) {
    if (cu) return ERR("cu_seqlens: ragged packing requires the rank-3 spelling of query (T, H, d), got rank 4");
    c->B = c->q.dims[0];
    c->S = c->q.dims[1];
    if (initial_state && initial_state->rank == 4 && initial_state->dims[0] != c->B)
      return ERR("initial_state: batch %lld differs from query's %lld", (long long)initial_state->dims[0], (long long)c->B);
    return LINATTN_SUCCESS;
  }
  if (cu) {
    if (ncu < 1) return ERR("cu_seqlens: length %lld, expected batch_size + 1 >= 1", (long long)ncu);
    linattn_status st = packed_check_offsets(cu, ncu - 1, c->T, "cu_seqlens", "query.dims[0]");
    if (st) return st;
    c->cu = cu;
    c->B = ncu - 1;
    return LINATTN_SUCCESS;
  }
  if (!initial_state)
    return ERR("initial_state: required without cu_seqlens (uniform packing takes the batch size from it)");
  if (initial_state->rank != 4)
    return ERR("initial_state: expected rank 4 V-major (B, H_v, d_v, d_k), got rank %d", (int)initial_state->rank);
  c->B = initial_state->dims[0];
  if (c->B <= 0 ? c->T != 0 : c->T % c->B != 0)
    return ERR("query: total_tokens %lld is not a multiple of the batch size %lld (from initial_state)", (long long)c->T,
               (long long)c->B);
  c->S = c->B > 0 ? c->T / c->B : 0;
  return LINATTN_SUCCESS;
}

/* decay / beta (shapes, dtype), a_log / dt_bias. */
static linattn_status gdn_resolve_gates(gdn_call* c, const linattn_gated_delta_net_desc* d, const linattn_tensor* decay,
                                        const linattn_tensor* beta, const linattn_tensor* a_log, const linattn_tensor* dt_bias) {
  linattn_status st;
  const char* rule = gdn_rule_name(d->update_rule);
  const bool gated = c->p.gated, delta = c->p.delta;
  if (gated && !decay) return ERR("decay: required by update_rule '%s', got NULL", rule);
  if (!gated && decay) return ERR("decay: update_rule '%s' forbids decay (pass NULL)", rule);
  if (delta && !beta) return ERR("beta: required by update_rule '%s', got NULL", rule);
  if (!delta && beta) return ERR("beta: update_rule '%s' forbids beta (pass NULL)", rule);
  const int32_t lead = c->rank4 ? 2 : 1;
  const int64_t lead_dims[2] = {c->rank4 ? c->q.dims[0] : c->T, c->rank4 ? c->q.dims[1] : 0};
  const linattn_dtype T_dt = c->q.dtype;
  c->p.gate_dtype = T_dt;
  if (decay) {
    const char* doc = c->rank4 ? "(B, S, H_v) or (B, S, H_v, d_k)" : "(T, H_v) or (T, H_v, d_k)";
    if (decay->rank != lead + 1 && decay->rank != lead + 2)
      return ERR("decay: expected %s, got rank %d", doc, (int)decay->rank);
    if ((st = tview_init(&c->decay, "decay", decay, decay->rank, true, doc))) return st;
    c->has_decay = true;
    c->per_key_decay = decay->rank == lead + 2;
    int64_t want[4] = {lead_dims[0], lead_dims[1], 0, 0};
    want[lead] = c->Hv;
    want[lead + 1] = c->dk;
    if ((st = tview_expect_dims(&c->decay, want, doc))) return st;
    if (c->decay.dtype != LINATTN_DTYPE_F32 && c->decay.dtype != T_dt)
      return ERR("decay: dtype %s must be float32 or query's %s", linattn_dtype_name(c->decay.dtype), linattn_dtype_name(T_dt));
    c->p.gate_dtype = c->decay.dtype;
  }
  if (beta) {
    const char* doc = c->rank4 ? "(B, S, H_v)" : "(T, H_v)";
    if ((st = tview_init(&c->beta, "beta", beta, lead + 1, true, doc))) return st;
    c->has_beta = true;
    int64_t want[3] = {lead_dims[0], lead_dims[1], 0};
    want[lead] = c->Hv;
    if ((st = tview_expect_dims(&c->beta, want, doc))) return st;
    if (decay && c->beta.dtype != c->decay.dtype)
      return ERR("beta: dtype %s differs from decay's %s", linattn_dtype_name(c->beta.dtype), linattn_dtype_name(c->decay.dtype));
    if (c->beta.dtype != LINATTN_DTYPE_F32 && c->beta.dtype != T_dt)
      return ERR("beta: dtype %s must be float32 or query's %s", linattn_dtype_name(c->beta.dtype), linattn_dtype_name(T_dt));
    c->p.gate_dtype = c->beta.dtype;
  }
  if (d->gate_activation == LINATTN_GDN_GATE_NONE) return LINATTN_SUCCESS;
  if (!a_log || !dt_bias) return ERR("a_log / dt_bias: both required when gate_activation is softplus or sigmoid");
  if ((st = tview_init(&c->a_log, "a_log", a_log, a_log->rank, true, "(H_v)"))) return st;
  if ((st = tview_init(&c->dt_bias, "dt_bias", dt_bias, dt_bias->rank, true, "(H_v) or (H_v, d_k)"))) return st;
  if (c->a_log.dtype != LINATTN_DTYPE_F32 || c->dt_bias.dtype != LINATTN_DTYPE_F32)
    return ERR("a_log / dt_bias: must be float32, got %s / %s", linattn_dtype_name(c->a_log.dtype), linattn_dtype_name(c->dt_bias.dtype));
  if (c->a_log.numel != c->Hv) return ERR("a_log: expected (H_v) = (%lld) elements, got %lld", (long long)c->Hv, (long long)c->a_log.numel);
  if (c->dt_bias.numel == c->Hv && c->dt_bias.rank == 1) {
    c->dt_bias_per_key = false;
  } else if (c->per_key_decay && c->dt_bias.numel == c->Hv * c->dk && c->dt_bias.rank <= 2 &&
             (c->dt_bias.rank == 1 || c->dt_bias.dims[0] == c->Hv)) {
    c->dt_bias_per_key = true;
  } else {
    return ERR("dt_bias: expected (H_v) = (%lld), or with per-key decay (H_v, d_k) / (H_v*d_k) = (%lld, %lld), got %lld elements",
               (long long)c->Hv, (long long)c->Hv, (long long)c->dk, (long long)c->dt_bias.numel);
  }
  c->has_gate_inputs = true;
  return LINATTN_SUCCESS;
}

/* initial_state, output, final_state, state_update, capture_count; aliasing. */
static linattn_status gdn_resolve_io(gdn_call* c, const linattn_gated_delta_net_desc* d, const linattn_tensor* initial_state,
                                     const int32_t* capture_count, const linattn_tensor* output,
                                     const linattn_tensor* final_state, const linattn_tensor* state_update) {
  linattn_status st;
  const int64_t sdims[4] = {c->B, c->Hv, c->dv, c->dk};
  const char* sdoc = "V-major (B, H_v, d_v, d_k), float32";
  if (initial_state) {
    if ((st = tview_init(&c->init, "initial_state", initial_state, 4, true, sdoc))) return st;
    if ((st = tview_expect_dims(&c->init, sdims, sdoc))) return st;
    if (c->init.dtype != LINATTN_DTYPE_F32) return ERR("initial_state: dtype %s, expected float32", linattn_dtype_name(c->init.dtype));
    c->has_init = true;
  }
  int64_t odims[4];
  const int32_t orank = c->rank4 ? 4 : 3;
  if (c->rank4) { odims[0] = c->q.dims[0]; odims[1] = c->q.dims[1]; odims[2] = c->out_heads; odims[3] = c->dv; }
  else { odims[0] = c->T; odims[1] = c->out_heads; odims[2] = c->dv; }
  const char* odoc = c->rank4 ? "(B, S, max(H_q, H_v), d_v)" : "(T, max(H_q, H_v), d_v)";
  if (!output) return ERR("output: NULL (required)");
  if ((st = tview_init(&c->out, "output", output, orank, false, odoc))) return st;
  if ((st = tview_expect_dims(&c->out, odims, odoc))) return st;
  if (c->out.dtype != c->q.dtype)
    return ERR("output: dtype %s differs from query's %s", linattn_dtype_name(c->out.dtype), linattn_dtype_name(c->q.dtype));
  c->outr = gdn_rows_of(&c->out, c->rank4, 0);
  if (final_state) {
    if ((st = tview_init(&c->fin, "final_state", final_state, 4, true, sdoc))) return st;
    if ((st = tview_expect_dims(&c->fin, sdims, sdoc))) return st;
    if (c->fin.dtype != LINATTN_DTYPE_F32) return ERR("final_state: dtype %s, expected float32", linattn_dtype_name(c->fin.dtype));
    c->has_fin = true;
  }
  c->C = d->state_update_capacity;
  c->dw = c->per_key_decay ? c->Hv * c->dk : c->Hv;
  if (c->C > 0 && !capture_count) return ERR("capture_count: required when state_update_capacity (%lld) > 0", (long long)c->C);
  if (c->C == 0 && capture_count) return ERR("capture_count: forbidden when state_update_capacity is 0");
  c->capture_count = capture_count;
  int64_t row = 0, t1, t2;
  if (!linattn_mul_i64(c->Hq, c->dk, &t1) || !linattn_mul_i64(c->Hv, c->dv, &t2) || !linattn_add_i64(c->dw, t1, &row) ||
      !linattn_add_i64(row, t2, &row) || !linattn_mul_i64(row, c->C, &row))
    return ERR("state_update: row size overflows");
  c->su_row = row;
  if (state_update) {
    const int64_t udims[2] = {c->B, row};
    if ((st = tview_init(&c->su, "state_update", state_update, 2, true, "(B, C*(D + H_q*d_k + H_v*d_v)), float32"))) return st;
    if ((st = tview_expect_dims(&c->su, udims, "(B, C*(D + H_q*d_k + H_v*d_v)), D = H_v or H_v*d_k"))) return st;
    if (c->su.dtype != LINATTN_DTYPE_F32) return ERR("state_update: dtype %s, expected float32", linattn_dtype_name(c->su.dtype));
    c->has_su = true;
  }
  const tview* ins[] = {&c->q, c->packed_qkv ? NULL : &c->k, c->packed_qkv ? NULL : &c->v, c->has_decay ? &c->decay : NULL,
                        c->has_beta ? &c->beta : NULL, c->has_gate_inputs ? &c->a_log : NULL,
                        c->has_gate_inputs ? &c->dt_bias : NULL, c->has_init ? &c->init : NULL};
  const size_t nin = sizeof ins / sizeof ins[0];
  for (size_t i = 0; i < nin; i++)
    if ((st = tview_check_no_overlap(&c->out, ins[i]))) return st;
  if (c->has_fin) {
    if ((st = tview_check_no_overlap(&c->fin, &c->out))) return st;
    for (size_t i = 0; i + 1 < nin; i++)
      if ((st = tview_check_no_overlap(&c->fin, ins[i]))) return st;
    if (c->has_init && c->fin.lo != c->fin.hi) {
      if (tview_same_buffer(&c->fin, &c->init)) c->in_place = true;
      else if ((st = tview_check_no_overlap(&c->fin, &c->init))) return st;
    }
  }
  if (c->has_su) {
    for (size_t i = 0; i < nin; i++)
      if ((st = tview_check_no_overlap(&c->su, ins[i]))) return st;
    if ((st = tview_check_no_overlap(&c->su, &c->out))) return st;
    if (c->has_fin && (st = tview_check_no_overlap(&c->su, &c->fin))) return st;
  }
  return LINATTN_SUCCESS;
}

/* Units, scratch, lock-step. */
static linattn_status gdn_plan(linattn_context* ctx, gdn_call* c) {
  c->kern = ctx->kernels->la->handles_gdn ? ctx->kernels->la : &linattn_la_scalar;
  c->p.sweep_tokens = ctx->tuning->la.sweep_tokens; /* as LinearAttention: the same kernels, tuned alike */
  c->p.stage_plain = ctx->tuning->la.stage_plain; /* fp32 inputs: the specialised staging (la_stage_slot) */
  /* per-head decay folded out of the staged rows (two-token sweeps; la_setup leaves it out where
   * the transition capture or a per-key decay rules those out) */
  c->p.fold_head_decay = ctx->tuning->la.fold_head_decay;
  c->p.pair_vectors = ctx->tuning->la.pair_vectors;
  int64_t bc = c->kern->block_cols;
  if (bc <= 0 || bc > c->dv) bc = c->dv;
  c->block_cols = bc;
  c->blocks_per_head = bc > 0 ? (c->dv + bc - 1) / bc : 0;
  if (c->dv == 0) {
    /* no value columns, but the capture still takes each token's decay factors and keys: one
     * unit of no columns per (request, head), on the reference kernel (nothing else to compute;
     * the fast kernels assume at least one column) */
    c->kern = &linattn_la_reference;
    c->block_cols = 0;
    c->blocks_per_head = 1;
  }
  int64_t units;
  if (!linattn_mul_i64(c->B, c->Hv, &units) || !linattn_mul_i64(units, c->blocks_per_head, &units))
    return ERR("problem size overflows");
  c->num_units = units;
  c->num_tasks = (size_t)(units < ctx->num_threads ? units : ctx->num_threads);
  size_t sblock;
  if (!linattn_mul_size((size_t)c->dk, (size_t)bc, &sblock) || !linattn_mul_size(sblock, sizeof(float), &sblock))
    return ERR("state block size overflows");
  int64_t longest = c->S;
  if (c->cu)
    for (int64_t b = 0; b < c->B; b++) longest = c->cu[b + 1] - c->cu[b] > longest ? c->cu[b + 1] - c->cu[b] : longest;
  c->state_block_bytes = c->has_fin ? 0 : linattn_round_up(sblock, 64);
  size_t gtab = 0; /* the unit's fp32 decay and beta rows (pre_gates) */
  if (c->pre_gates && (!linattn_mul_size((size_t)longest, 2 * sizeof(float), &gtab) || gtab > SIZE_MAX - 64))
    return ERR("workspace size overflows");
  c->gate_table_bytes = linattn_round_up(gtab, 64);
  /* a kernel's scratch grows with the tokens of a call up to a tile: sized for the longest request */
  la_params longest_p = c->p;
  longest_p.T = longest;
  size_t kbytes = c->kern->scratch_bytes(&longest_p, bc);
  /* non-finite recompute (la_units.h): an in-place state is copied per unit first in requests
   * of LA_KEEP_ENTRY_MIN_TOKENS tokens or more, shorter in-place requests are not recomputed */
  c->refine = c->kern != &linattn_la_reference && (!c->in_place || longest >= LA_KEEP_ENTRY_MIN_TOKENS);
  c->entry_copy_bytes = c->refine && c->in_place ? linattn_round_up(sblock, 64) : 0;
  if (c->refine && linattn_la_reference.scratch_bytes(&longest_p, bc) > kbytes)
    kbytes = linattn_la_reference.scratch_bytes(&longest_p, bc);
  c->kernel_scratch_bytes = linattn_round_up(kbytes, 64);
  if (!linattn_add_size(c->state_block_bytes, c->kernel_scratch_bytes, &c->unit_bytes) ||
      !linattn_add_size(c->unit_bytes, c->entry_copy_bytes, &c->unit_bytes) ||
      !linattn_add_size(c->unit_bytes, c->gate_table_bytes, &c->unit_bytes))
    return ERR("workspace size overflows");
  const int64_t per_task = c->num_tasks > 0 ? (units + (int64_t)c->num_tasks - 1) / (int64_t)c->num_tasks : 0;
  c->lockstep_units = 1;
  c->lockstep_min = la_lockstep_min_tokens(ctx);
  c->prefetch_next = ctx->tuning->la.lockstep_prefetch_next != 0;
  const int64_t group = la_lockstep_group(ctx, sblock);
  if (c->kern->step && c->kern->step_tokens > 0 && longest >= c->lockstep_min && per_task > 1 && group > 1)
    c->lockstep_units = per_task < group ? per_task : group;
  if (!linattn_mul_size(c->unit_bytes, (size_t)c->lockstep_units, &c->task_bytes)) return ERR("workspace size overflows");
  size_t total;
  if (!linattn_mul_size(c->task_bytes, c->num_tasks, &total)) return ERR("workspace size overflows");
  return LINATTN_SUCCESS;
}

static linattn_status gdn_resolve(linattn_context* ctx, const linattn_gated_delta_net_desc* d, const linattn_tensor* query,
                                  const linattn_tensor* key, const linattn_tensor* value, const int32_t* cu, int64_t ncu,
                                  const linattn_tensor* decay, const linattn_tensor* beta, const linattn_tensor* initial_state,
                                  const linattn_tensor* a_log, const linattn_tensor* dt_bias, const int32_t* capture_count,
                                  const linattn_tensor* output, const linattn_tensor* final_state,
                                  const linattn_tensor* state_update, gdn_call* c) {
  linattn_status st;
  memset(c, 0, sizeof *c);
  if (!ctx) return ERR("context: NULL (create one with linattn_context_create)");
  if ((st = gdn_check_desc(d))) return st;
  c->p.gated = d->update_rule == LINATTN_UPDATE_GATED || d->update_rule == LINATTN_UPDATE_GATED_DELTA;
  c->p.delta = d->update_rule == LINATTN_UPDATE_DELTA || d->update_rule == LINATTN_UPDATE_GATED_DELTA;
  if ((st = gdn_resolve_qkv(c, query, key, value, initial_state))) return st;
  if ((st = gdn_resolve_batch(c, cu, ncu, initial_state))) return st;
  if ((st = gdn_resolve_gates(c, d, decay, beta, a_log, dt_bias))) return st;
  if ((st = gdn_resolve_io(c, d, initial_state, capture_count, output, final_state, state_update))) return st;
  la_params* p = &c->p;
  p->decay_kind = !p->gated ? LA_DECAY_NONE : c->per_key_decay ? LA_DECAY_PER_KEY : LA_DECAY_PER_HEAD;
  p->beta_kind = p->delta ? LA_BETA_PER_HEAD : LA_BETA_NONE;
  p->io_dtype = c->q.dtype;
  p->d_k = c->dk;
  p->d_v = c->dv;
  p->scale = d->scale == 0.0f ? 1.0f / sqrtf((float)c->dk) : d->scale;
  p->scale_f64 = p->scale;
  p->gate = !p->gated || d->gate_activation == LINATTN_GDN_GATE_NONE ? LA_GATE_NONE
            : d->gate_activation == LINATTN_GDN_GATE_SOFTPLUS        ? LA_GATE_SOFTPLUS
                                                                 : LA_GATE_SIGMOID;
  p->gate_lower_bound = d->gate_lower_bound;
  p->beta_sigmoid = d->beta_activation == LINATTN_GDN_BETA_SIGMOID;
  p->qk_l2_norm = d->qk_l2_norm != 0;
  p->l2_eps = d->qk_l2_norm_eps;
  p->state_v_major = true;
  c->gate_in = p->gate;
  c->beta_sigmoid_in = p->beta_sigmoid;
  c->gate_dtype_in = p->gate_dtype;
  /* Per-head gates: computed once per (token, head) in a loop of independent libm calls before
   * the unit runs, off the staging's per-token dependency chain (per-key gates stay in the
   * staging, which has the key row at hand). */
  c->pre_gates = !c->per_key_decay && (p->gate != LA_GATE_NONE || p->beta_sigmoid) && (c->has_decay || c->has_beta);
  if (c->pre_gates) {
    p->gate = LA_GATE_NONE;
    p->beta_sigmoid = false;
    p->gate_dtype = LINATTN_DTYPE_F32;
  }
  return gdn_plan(ctx, c);
}

static inline char* gdn_at(char* base, int64_t off, size_t esz) { return base ? base + (size_t)off * esz : NULL; }

/* First token and length of request r. */
static void gdn_request(const gdn_call* c, int64_t r, int64_t* s0, int64_t* len) {
  if (c->cu) {
    *s0 = c->cu[r];
    *len = (int64_t)c->cu[r + 1] - c->cu[r];
  } else {
    *s0 = r * c->S;
    *len = c->S;
  }
}

static int64_t gdn_rows_off(const gdn_call* c, const gdn_rows* g, int64_t r, int64_t s0, int64_t h) {
  return g->off + (c->rank4 ? r * g->rs : s0 * g->ts) + h * g->hs;
}

/* Is a fast kernel's unit of a request of len tokens recomputed when its outputs are not finite
 * (an in-place state then copied first)? */
static bool gdn_unit_refines(const gdn_call* c, int64_t len) {
  return c->refine && (!c->in_place || len >= LA_KEEP_ENTRY_MIN_TOKENS);
}

/* The decay (log-space, through the gate) and beta (through its activation) of the unit's len
 * tokens into table (2 len floats), to which u then points (pre_gates): the staging's own
 * functions (la_gate_log_decay, la_beta_at), so the same bits as when the staging applies them. */
static void gdn_unit_gates(const gdn_call* c, la_unit* u, float* table, int64_t len) {
  la_params gp = c->p;
  gp.gate = c->gate_in;
  gp.beta_sigmoid = c->beta_sigmoid_in;
  gp.gate_dtype = c->gate_dtype_in;
  float *g = table, *b = table + len;
  if (u->decay) {
    const size_t gsz = linattn_dtype_size(c->gate_dtype_in);
    for (int64_t t = 0; t < len; t++)
      g[t] = la_gate_log_decay(&gp, u, linattn_load_f32((const char*)u->decay + (size_t)(t * u->decay_token_stride) * gsz, 0, c->gate_dtype_in), 0);
    u->decay = g;
    u->decay_token_stride = 1;
  }
  if (u->beta) {
    for (int64_t t = 0; t < len; t++) b[t] = la_beta_at(&gp, u, t);
    u->beta = b;
    u->beta_token_stride = 1;
  }
}

/* Builds unit `unit` (request r): la_unit over the request's tokens; returns the kernel scratch.
 * Scratch: the state block (without final_state), the entering in-place state's copy (made
 * unless recompute: the reference kernel then runs from it), the gate table (pre_gates), the
 * kernel's scratch. */
static char* gdn_prepare_unit(const gdn_call* c, int64_t unit, char* scratch, la_unit* up, bool recompute) {
  const int64_t blk = unit % c->blocks_per_head, rh = unit / c->blocks_per_head;
  const int64_t h = rh % c->Hv, r = rh / c->Hv, hq = h / c->grp;
  const int64_t dk = c->dk, dv = c->dv, col0 = blk * c->block_cols;
  const int64_t ncols = dv - col0 < c->block_cols ? dv - col0 : c->block_cols;
  const size_t esz = linattn_dtype_size(c->p.io_dtype), gsz = linattn_dtype_size(c->gate_dtype_in);
  int64_t s0, len;
  gdn_request(c, r, &s0, &len);
  /* Written in place, field by field (as la_prepare_unit): a local copy assigned at the end is
   * read back before its scalar stores have drained, and zeroing the struct first compiles to a
   * string store. */
  la_unit* const u = up;
  u->n_q = 1;
  u->q = gdn_at(c->qr.data, gdn_rows_off(c, &c->qr, r, s0, hq), esz);
  u->q_token_stride = c->qr.ts;
  u->q_head_stride = dk;
  u->k = gdn_at(c->kr.data, gdn_rows_off(c, &c->kr, r, s0, hq), esz);
  u->k_token_stride = c->kr.ts;
  u->v = gdn_at(c->vr.data, gdn_rows_off(c, &c->vr, r, s0, h) + col0, esz);
  u->v_token_stride = c->vr.ts;
  u->decay = c->has_decay ? gdn_at(c->decay.data, s0 * c->dw + (c->per_key_decay ? h * dk : h), gsz) : NULL;
  u->decay_token_stride = c->has_decay ? c->dw : 0; /* packed (T, H_v[, d_k]) */
  u->beta = c->has_beta ? gdn_at(c->beta.data, s0 * c->Hv + h, gsz) : NULL;
  u->beta_token_stride = c->has_beta ? c->Hv : 0;
  u->out = gdn_at(c->outr.data, gdn_rows_off(c, &c->outr, r, s0, h) + col0, esz);
  u->out_token_stride = c->outr.ts;
  u->out_head_stride = dv;
  if (dv == 0) { /* never dereferenced, but offset per token: a valid pointer, no stride (v and output may be NULL) */
    u->v = u->out = scratch + c->state_block_bytes + c->entry_copy_bytes;
    u->v_token_stride = u->out_token_stride = 0;
  }
  u->col0 = col0;
  u->ncols = ncols;
  const int64_t sbase = ((r * c->Hv + h) * dv + col0) * dk;
  u->state_in = c->has_init ? (const float*)gdn_at(c->init.data, sbase, sizeof(float)) : NULL;
  u->state_out = c->has_fin ? (float*)gdn_at(c->fin.data, sbase, sizeof(float)) : (float*)scratch;
  u->ld_state = dk;
  u->gate_coef = 0.0f;
  u->dt_bias = NULL;
  u->dt_bias_per_key = false;
  if (c->gate_in != LA_GATE_NONE) {
    const float al = ((const float*)c->a_log.data)[h];
    u->gate_coef = c->gate_in == LA_GATE_SOFTPLUS ? -expf(al) : expf(al);
    u->dt_bias = (const float*)c->dt_bias.data + (c->dt_bias_per_key ? h * dk : h);
    u->dt_bias_per_key = c->dt_bias_per_key;
  }
  u->cap_tokens = u->cap_decay_stride = u->cap_key_stride = u->cap_delta_stride = 0;
  u->cap_decay = u->cap_key = u->cap_delta = NULL;
  if (c->C > 0 && c->has_su) {
    const int64_t want = c->capture_count[r], lim = len < c->C ? len : c->C;
    u->cap_tokens = want < 0 ? 0 : want > lim ? lim : want;
    float* row = (float*)c->su.data + r * c->su_row;
    u->cap_decay = col0 == 0 ? row + (c->per_key_decay ? h * dk : h) : NULL;
    u->cap_decay_stride = c->dw;
    u->cap_key = col0 == 0 && h % c->grp == 0 ? row + c->C * c->dw + hq * dk : NULL;
    u->cap_key_stride = c->Hq * dk;
    u->cap_delta = row + c->C * (c->dw + c->Hq * dk) + h * dv + col0;
    u->cap_delta_stride = c->Hv * dv;
  }
  if (c->in_place && gdn_unit_refines(c, len)) { /* the state rows are value columns */
    char* entry = scratch + c->state_block_bytes;
    if (recompute) la_copy_rows(u->state_out, dk, entry, dk, ncols, dk, sizeof(float));
    else la_copy_rows(entry, dk, u->state_out, dk, ncols, dk, sizeof(float));
  }
  char* table = scratch + c->state_block_bytes + c->entry_copy_bytes;
  if (c->pre_gates) gdn_unit_gates(c, u, (float*)table, len);
  return table + c->gate_table_bytes;
}

/* After a fast kernel ran unit `unit` (finite: its outputs were all finite, la_units.h):
 * otherwise runs it again with the reference kernel, from the entering state. */
static void gdn_refine_unit(const gdn_call* c, const la_params* p, int64_t unit, char* scratch, bool finite) {
  if (finite || p->T == 0 || !gdn_unit_refines(c, p->T)) return;
  la_unit u;
  char* kscratch = gdn_prepare_unit(c, unit, scratch, &u, true);
  linattn_la_reference.run(p, &u, kscratch);
}

static int64_t gdn_unit_request(const gdn_call* c, int64_t unit) { return unit / c->blocks_per_head / c->Hv; }

/* Units [g0, g1) of one request advance token tile by token tile together (la_step_units);
 * the kernel's step gives the bits of run. */
static void gdn_run_lockstep(const gdn_call* c, const la_params* p, int64_t g0, int64_t g1, char* scratch) {
  la_unit units[LA_LOCKSTEP_UNITS_MAX];
  char* kscr[LA_LOCKSTEP_UNITS_MAX] = {NULL};
  bool finite[LA_LOCKSTEP_UNITS_MAX];
  const int64_t n = g1 - g0;
  const bool refines = gdn_unit_refines(c, p->T);
  for (int64_t i = 0; i < n; i++) {
    kscr[i] = gdn_prepare_unit(c, g0 + i, scratch + (size_t)i * c->unit_bytes, &units[i], false);
    finite[i] = true;
  }
  la_step_units(c->kern, p, units, kscr, n, c->kern->step_tokens, refines ? finite : NULL, c->refine_limit,
                c->prefetch_next);
  for (int64_t i = 0; i < n; i++) gdn_refine_unit(c, p, g0 + i, scratch + (size_t)i * c->unit_bytes, finite[i]);
}

static void gdn_task(void* arg, size_t task) {
  const gdn_call* c = (const gdn_call*)arg;
  const int64_t U = c->num_units, nt = (int64_t)c->num_tasks;
  const int64_t begin = (int64_t)task * U / nt, end = ((int64_t)task + 1) * U / nt;
  char* scratch = c->workspace + task * c->task_bytes;
  for (int64_t g0 = begin; g0 < end;) {
    const int64_t r = gdn_unit_request(c, g0);
    int64_t s0, len, g1 = g0 + 1;
    gdn_request(c, r, &s0, &len);
    la_params p = c->p;
    p.T = len;
    if (c->lockstep_units > 1 && len >= c->lockstep_min)
      while (g1 < end && g1 - g0 < c->lockstep_units && gdn_unit_request(c, g1) == r) g1++;
    if (g1 - g0 > 1) {
      gdn_run_lockstep(c, &p, g0, g1, scratch);
    } else {
      la_unit u;
      char* kscratch = gdn_prepare_unit(c, g0, scratch, &u, false);
      c->kern->run(&p, &u, kscratch);
      gdn_refine_unit(c, &p, g0, scratch,
                      !gdn_unit_refines(c, len) || c->kern->outputs_finite(p.io_dtype, c->refine_limit, &u, 0, len));
    }
    g0 = g1;
  }
}

#define GDN_ARGS_DECL                                                                                                   \
  linattn_context *context, const linattn_gated_delta_net_desc *desc, const linattn_tensor *query,                     \
      const linattn_tensor *key, const linattn_tensor *value, const int32_t *cu_seqlens, int64_t num_cu_seqlens,        \
      const linattn_tensor *decay, const linattn_tensor *beta, const linattn_tensor *initial_state,                    \
      const linattn_tensor *a_log, const linattn_tensor *dt_bias, const int32_t *capture_count,                         \
      const linattn_tensor *output, const linattn_tensor *final_state, const linattn_tensor *state_update
#define GDN_ARGS                                                                                                  \
  context, desc, query, key, value, cu_seqlens, num_cu_seqlens, decay, beta, initial_state, a_log, dt_bias,     \
      capture_count, output, final_state, state_update

static linattn_status linattn_gated_delta_net_workspace_size_entered(GDN_ARGS_DECL, size_t* workspace_size) {
  linattn_clear_error();
  if (!workspace_size) return ERR("workspace_size: NULL output pointer");
  gdn_call c;
  linattn_status st = gdn_resolve(GDN_ARGS, &c);
  if (st) return st;
  *workspace_size = c.task_bytes * c.num_tasks;
  return LINATTN_SUCCESS;
}

linattn_status linattn_gated_delta_net_workspace_size(GDN_ARGS_DECL, size_t* workspace_size) {
  LINATTN_RETURN_ENTERED(context, linattn_gated_delta_net_workspace_size_entered(GDN_ARGS, workspace_size));
}

static linattn_status linattn_gated_delta_net_entered(GDN_ARGS_DECL, void* workspace, size_t workspace_size) {
  linattn_clear_error();
  gdn_call c;
  linattn_status st = gdn_resolve(GDN_ARGS, &c);
  if (st) return st;
  const size_t need = c.task_bytes * c.num_tasks;
  void* owned;
  if ((st = linattn_take_workspace(context, workspace, workspace_size, need, true, &c.workspace, &owned)))
    return st;
  /* Slots past each request's captured prefix are defined as zero. */
  if (c.has_su && c.su.numel > 0) memset(c.su.data, 0, (size_t)c.su.numel * sizeof(float));
  c.refine_limit = la_refine_limit(&c.p);
  if (c.num_units > 0) linattn_run_parallel(context, gdn_task, &c, c.num_tasks);
  linattn_ctx_free(context, owned);
  return LINATTN_SUCCESS;
}

linattn_status linattn_gated_delta_net(GDN_ARGS_DECL, void* workspace, size_t workspace_size) {
  LINATTN_RETURN_ENTERED(context, linattn_gated_delta_net_entered(GDN_ARGS, workspace, workspace_size));
}

linattn_status linattn_gated_delta_net_infer_shapes(const linattn_gated_delta_net_desc* desc, int32_t query_rank,
                                                    const int64_t* query_dims, const int64_t* key_dims,
                                                    const int64_t* value_dims, const int64_t initial_state_dims[4],
                                                    int64_t num_cu_seqlens, int32_t per_key_decay, int32_t* output_rank,
                                                    int64_t output_dims[4], int64_t final_state_dims[4],
                                                    int64_t state_update_dims[2]) {
  linattn_clear_error();
  linattn_status st;
  if ((st = gdn_check_desc(desc))) return st;
  if (!query_dims || !output_rank || !output_dims || !final_state_dims || !state_update_dims)
    return ERR("infer_shapes: NULL dims pointer (query_dims, output_rank, output_dims, final_state_dims, state_update_dims)");
  if ((key_dims == NULL) != (value_dims == NULL)) return ERR("key_dims / value_dims: pass both, or neither for packed QKV");
  const bool packed = key_dims == NULL;
  if (packed ? (query_rank != 2 && query_rank != 3) : (query_rank != 3 && query_rank != 4))
    return ERR("query: rank %d not accepted (separate QKV: 3 or 4; packed QKV: 2 or 3)", (int)query_rank);
  for (int32_t i = 0; i < query_rank; i++)
    if (query_dims[i] < 0 || (!packed && (key_dims[i] < 0 || value_dims[i] < 0))) return ERR("query/key/value: negative dimension");
  const bool rank4 = packed ? query_rank == 3 : query_rank == 4;
  const int32_t lead = rank4 ? 2 : 1;
  int64_t Hq, dk, Hv, dv;
  if (packed) {
    if (!initial_state_dims) return ERR("initial_state: required with packed QKV");
    Hv = initial_state_dims[1];
    dv = initial_state_dims[2];
    dk = initial_state_dims[3];
    const int64_t W = query_dims[query_rank - 1];
    if (Hv <= 0 || dk <= 0 || dv < 0 || W - Hv * dv <= 0 || (W - Hv * dv) % (2 * dk))
      return ERR("query: packed width %lld must be 2*H_q*d_k + H_v*d_v", (long long)W);
    Hq = (W - Hv * dv) / (2 * dk);
  } else {
    Hq = query_dims[lead];
    dk = query_dims[lead + 1];
    Hv = value_dims[lead];
    dv = value_dims[lead + 1];
    if (key_dims[lead] != Hq || key_dims[lead + 1] != dk) return ERR("key: heads and width must equal query's");
  }
  if (Hq <= 0 || dk <= 0 || Hv <= 0 || Hv % Hq)
    return ERR("value: num_heads_v (%lld) must be a positive multiple of num_heads_q (%lld)", (long long)Hv, (long long)Hq);
  int64_t B;
  if (rank4) {
    if (num_cu_seqlens > 0) return ERR("cu_seqlens: ragged packing requires the rank-3 spelling");
    B = query_dims[0];
  } else if (num_cu_seqlens > 0) {
    B = num_cu_seqlens - 1;
  } else {
    if (!initial_state_dims) return ERR("initial_state: required without cu_seqlens");
    B = initial_state_dims[0];
  }
  *output_rank = lead + 2;
  for (int32_t i = 0; i < lead; i++) output_dims[i] = query_dims[i];
  output_dims[lead] = Hv;
  output_dims[lead + 1] = dv;
  final_state_dims[0] = B;
  final_state_dims[1] = Hv;
  final_state_dims[2] = dv;
  final_state_dims[3] = dk;
  const int64_t dw = per_key_decay ? Hv * dk : Hv;
  state_update_dims[0] = B;
  state_update_dims[1] = desc->state_update_capacity * (dw + Hq * dk + Hv * dv);
  return LINATTN_SUCCESS;
}

linattn_status linattn_gated_delta_net_state_replay(const linattn_tensor* source, const linattn_tensor* capsule,
                                                    int64_t num_heads_k, int64_t capacity, int64_t kept_count,
                                                    const linattn_tensor* destination) {
  linattn_clear_error();
  linattn_status st;
  tview src, cap, dst;
  if ((st = tview_init(&src, "source", source, 3, true, "(H_v, d_v, d_k) float32"))) return st;
  if ((st = tview_init(&cap, "capsule", capsule, 1, true, "(C*(D + H_k*d_k + H_v*d_v)) float32"))) return st;
  if ((st = tview_init(&dst, "destination", destination, 3, true, "(H_v, d_v, d_k) float32"))) return st;
  if (src.dtype != LINATTN_DTYPE_F32 || cap.dtype != LINATTN_DTYPE_F32 || dst.dtype != LINATTN_DTYPE_F32)
    return ERR("source / capsule / destination: must be float32");
  if ((st = tview_expect_dims(&dst, src.dims, "(H_v, d_v, d_k) like source"))) return st;
  const int64_t Hv = src.dims[0], dv = src.dims[1], dk = src.dims[2];
  if (capacity < 1 || capacity > LINATTN_GDN_MAX_CAPTURE) return ERR("capacity: %lld outside [1, 8]", (long long)capacity);
  if (kept_count < 1 || kept_count > capacity)
    return ERR("kept_count: %lld outside [1, capacity = %lld]", (long long)kept_count, (long long)capacity);
  if (num_heads_k <= 0 || Hv <= 0 || Hv % num_heads_k)
    return ERR("num_heads_k: %lld must be positive and divide H_v = %lld", (long long)num_heads_k, (long long)Hv);
  const int64_t rest = num_heads_k * dk + Hv * dv;
  bool per_key;
  if (cap.numel == capacity * (Hv + rest)) per_key = false;
  else if (cap.numel == capacity * (Hv * dk + rest)) per_key = true;
  else
    return ERR("capsule: %lld elements, expected C*(H_v + H_k*d_k + H_v*d_v) = %lld or C*(H_v*d_k + ...) = %lld",
               (long long)cap.numel, (long long)(capacity * (Hv + rest)), (long long)(capacity * (Hv * dk + rest)));
  if ((st = tview_check_no_overlap(&dst, &src)) || (st = tview_check_no_overlap(&dst, &cap))) return st;
  const int64_t dw = per_key ? Hv * dk : Hv;
  const float* s = (const float*)src.data;
  const float* dec = (const float*)cap.data;
  const float* key = dec + capacity * dw;
  const float* del = key + capacity * num_heads_k * dk;
  float* out = (float*)dst.data;
  for (int64_t h = 0; h < Hv; h++) {
    const int64_t hk = h * num_heads_k / Hv;
    for (int64_t v = 0; v < dv; v++)
      for (int64_t i = 0; i < dk; i++) {
        float x = s[(h * dv + v) * dk + i];
        for (int64_t t = 0; t < kept_count; t++) {
          x = x * dec[t * dw + (per_key ? h * dk + i : h)];
          x = x + key[(t * num_heads_k + hk) * dk + i] * del[(t * Hv + h) * dv + v];
        }
        out[(h * dv + v) * dk + i] = x;
      }
  }
  return LINATTN_SUCCESS;
}
