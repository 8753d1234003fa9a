/* GatedRMSNorm and LinearAttentionGate operators: validation, row split, threading. Both are
 * elementwise over rows (a head of C elements, a token's H gates), so any split gives the same
 * bits; a task takes a contiguous range of rows. */
#include <stdint.h>
#include <string.h>

#include "api/tensor_check.h"
#include "internal.h"

#define ERR(...) linattn_set_error(LINATTN_ERROR_INVALID_ARGUMENT, __VA_ARGS__)

/* Elements (all tensors of the call) below which the call stays on the calling thread: a decode
 * step's few heads are done before a parallel region would start. */
#define GATES_SERIAL_MAX_ELEMS ((int64_t)1 << 15)

linattn_gate_activation linattn_gate_activation_from_string(const char* name) {
  if (!name) return LINATTN_GATE_INVALID;
  if (!strcmp(name, "silu") || !strcmp(name, "swish")) return LINATTN_GATE_SILU;
  if (!strcmp(name, "sigmoid")) return LINATTN_GATE_SIGMOID;
  return LINATTN_GATE_INVALID;
}

void linattn_gated_rms_norm_desc_init(linattn_gated_rms_norm_desc* desc) {
  if (!desc) return;
  desc->activation = LINATTN_GATE_SILU;
  desc->epsilon = 1e-5f;
}

/* A packed tensor of x's rank (1..4) that has dims `like` when like != NULL. */
static linattn_status view_like(tview* v, const char* name, const linattn_tensor* t, const tview* like,
                                const char* doc) {
  if (!t) return ERR("%s: required tensor is NULL, expected shape %s", name, doc);
  int32_t rank = like ? like->rank : t->rank;
  if (!like && (rank < 1 || rank > LINATTN_MAX_RANK))
    return ERR("%s: expected rank 1..%d %s, got rank %d", name, LINATTN_MAX_RANK, doc, (int)t->rank);
  linattn_status st = tview_init(v, name, t, rank, true, doc);
  if (st) return st;
  if (like) {
    if (v->dtype != like->dtype)
      return ERR("%s: dtype %s differs from %s's %s", name, linattn_dtype_name(v->dtype), like->name,
                 linattn_dtype_name(like->dtype));
    if ((st = tview_expect_dims(v, like->dims, doc))) return st;
  }
  return LINATTN_SUCCESS;
}

/* An output may be exactly one of its inputs' buffers; any other overlap is rejected. */
static linattn_status check_output(const tview* out, const tview* const* ins, size_t n) {
  for (size_t i = 0; i < n; i++) {
    if (!ins[i] || tview_same_buffer(out, ins[i])) continue;
    linattn_status st = tview_check_no_overlap(out, ins[i]);
    if (st) return st;
  }
  return LINATTN_SUCCESS;
}

/* The same (non-empty) buffer: empty tensors, which may all be NULL, alias nothing. */
static bool same_nonempty_buffer(const tview* a, const tview* b) { return a->numel > 0 && tview_same_buffer(a, b); }

/* rows rows of row_bytes bytes each, split evenly over tasks tasks */
typedef struct row_split {
  int64_t rows;
  size_t tasks, row_bytes;
} row_split;

static row_split gates_split(const linattn_context* ctx, int64_t rows, size_t row_bytes, int64_t elems) {
  row_split s = {rows, 0, row_bytes};
  if (elems <= GATES_SERIAL_MAX_ELEMS || ctx->num_threads <= 1) s.tasks = rows > 0 ? 1 : 0;
  else s.tasks = (size_t)(rows < ctx->num_threads ? rows : ctx->num_threads);
  return s;
}

static int64_t task_first_row(const row_split* s, size_t i) {
  if (i == 0) return 0; /* the ends without a 128-bit division (a decode call has one task) */
  if (i >= s->tasks) return s->rows;
  return (int64_t)((__int128)s->rows * (int64_t)i / (int64_t)s->tasks);
}

/* Task i's rows: the byte offset of the first, and how many. */
typedef struct row_range {
  size_t offset;
  int64_t rows;
} row_range;

static row_range task_rows(const row_split* s, size_t i) {
  const int64_t r0 = task_first_row(s, i);
  const row_range r = {(size_t)r0 * s->row_bytes, task_first_row(s, i + 1) - r0};
  return r;
}

/* ------------------------------------------------------------------ GatedRMSNorm */

typedef struct rms_call {
  gated_rms_norm_params p;
  gated_rms_norm_fn fn;
  const char *x, *scale, *gate;
  char* y;
  row_split split; /* rows of C elements */
} rms_call;

static void rms_task(void* arg, size_t i) {
  const rms_call* c = (const rms_call*)arg;
  const row_range r = task_rows(&c->split, i);
  c->fn(&c->p, c->x + r.offset, c->scale, c->gate + r.offset, c->y + r.offset, r.rows);
}

static linattn_status linattn_gated_rms_norm_entered(linattn_context* ctx, const linattn_gated_rms_norm_desc* d,
                                      const linattn_tensor* x, const linattn_tensor* scale,
                                      const linattn_tensor* gate, const linattn_tensor* y) {
  linattn_status st;
  if (!ctx) return ERR("context: NULL (create one with linattn_context_create)");
  if (!d) return ERR("desc: NULL");
  if (d->activation != LINATTN_GATE_SILU && d->activation != LINATTN_GATE_SIGMOID)
    return ERR("desc.activation: unknown value %d (expected silu/swish or sigmoid)", (int)d->activation);
  if (!(d->epsilon >= 0.0f)) return ERR("desc.epsilon: must be >= 0, got %g", (double)d->epsilon);
  tview vx, vs, vg, vy;
  if ((st = view_like(&vx, "x", x, NULL, "(..., H * C)"))) return st;
  if ((st = view_like(&vs, "scale", scale, NULL, "(C)"))) return st;
  if (vs.rank != 1) return ERR("scale: expected rank 1 (C), got rank %d", (int)vs.rank);
  if (vs.dtype != vx.dtype)
    return ERR("scale: dtype %s differs from x's %s", linattn_dtype_name(vs.dtype), linattn_dtype_name(vx.dtype));
  const int64_t C = vs.dims[0], W = vx.dims[vx.rank - 1];
  if (C < 1) return ERR("scale: must not be empty, expected shape (C) with C >= 1");
  if (W % C != 0)
    return ERR("x: last dimension %lld must be a multiple of the scale length C = %lld", (long long)W, (long long)C);
  if ((st = view_like(&vg, "gate", gate, &vx, "like x"))) return st;
  if ((st = view_like(&vy, "y", y, &vx, "like x"))) return st;
  const tview* ins[3] = {&vx, &vs, &vg};
  if ((st = check_output(&vy, ins, 3))) return st;
  if (same_nonempty_buffer(&vy, &vs)) return ERR("y: output memory overlaps scale");

  rms_call c;
  memset(&c, 0, sizeof c);
  c.p.dtype = vx.dtype;
  c.p.C = C;
  c.p.epsilon = d->epsilon;
  c.p.silu = d->activation == LINATTN_GATE_SILU;
  c.fn = ctx->kernels->gates->rms_norm;
  c.x = vx.data;
  c.scale = vs.data;
  c.gate = vg.data;
  c.y = vy.data;
  c.split = gates_split(ctx, vx.numel / C, (size_t)C * linattn_dtype_size(vx.dtype), vx.numel);
  linattn_clear_error();
  linattn_run_parallel(ctx, rms_task, &c, c.split.tasks);
  return LINATTN_SUCCESS;
}

linattn_status linattn_gated_rms_norm(linattn_context* ctx, const linattn_gated_rms_norm_desc* d, const linattn_tensor* x,
                                      const linattn_tensor* scale, const linattn_tensor* gate, const linattn_tensor* y) {
  LINATTN_RETURN_ENTERED(ctx, linattn_gated_rms_norm_entered(ctx, d, x, scale, gate, y));
}

/* ------------------------------------------------------------------ LinearAttentionGate */

typedef struct gate_call {
  la_gate_fn fn;
  linattn_dtype dtype;
  int64_t H;
  const char *a, *b;
  const float *dt_bias, *decay_scale;
  char *decay, *beta;
  row_split split; /* rows of H elements */
} gate_call;

static void gate_task(void* arg, size_t i) {
  const gate_call* c = (const gate_call*)arg;
  const row_range r = task_rows(&c->split, i);
  c->fn(c->dtype, c->H, c->a + r.offset, c->dt_bias, c->decay_scale, c->b ? c->b + r.offset : NULL,
        c->decay + r.offset, c->beta ? c->beta + r.offset : NULL, r.rows);
}

static linattn_status head_vector(tview* v, const char* name, const linattn_tensor* t, int64_t H) {
  linattn_status st = view_like(v, name, t, NULL, "(H) float32");
  if (st) return st;
  if (v->dtype != LINATTN_DTYPE_F32)
    return ERR("%s: dtype must be float32, got %s", name, linattn_dtype_name(v->dtype));
  if (v->numel != H) return ERR("%s: must have H = %lld elements, got %lld", name, (long long)H, (long long)v->numel);
  return LINATTN_SUCCESS;
}

static linattn_status linattn_linear_attention_gate_entered(linattn_context* ctx, const linattn_tensor* a,
                                             const linattn_tensor* dt_bias, const linattn_tensor* decay_scale,
                                             const linattn_tensor* b, const linattn_tensor* decay,
                                             const linattn_tensor* beta) {
  linattn_status st;
  if (!ctx) return ERR("context: NULL (create one with linattn_context_create)");
  tview va, vbias, vscale, vb, vdecay, vbeta;
  if ((st = view_like(&va, "a", a, NULL, "(..., H)"))) return st;
  const int64_t H = va.dims[va.rank - 1];
  if (H < 1) return ERR("a: last dimension H must be >= 1, got %lld", (long long)H);
  if ((st = head_vector(&vbias, "dt_bias", dt_bias, H))) return st;
  if ((st = head_vector(&vscale, "decay_scale", decay_scale, H))) return st;
  if (beta && !b) return ERR("b: required when beta is requested, expected shape like a");
  if (b && (st = view_like(&vb, "b", b, &va, "like a"))) return st;
  if ((st = view_like(&vdecay, "decay", decay, &va, "like a"))) return st;
  if (beta && (st = view_like(&vbeta, "beta", beta, &va, "like a"))) return st;
  const tview* ins[4] = {&va, &vbias, &vscale, b ? &vb : NULL};
  if ((st = check_output(&vdecay, ins, 4))) return st;
  if (beta) {
    const tview* ins_beta[5] = {&va, &vbias, &vscale, &vb, &vdecay};
    if ((st = check_output(&vbeta, ins_beta, 5))) return st;
    /* beta = a's buffer would be read after decay has overwritten it (or the reverse) */
    if (same_nonempty_buffer(&vbeta, &va) || same_nonempty_buffer(&vbeta, &vdecay))
      return ERR("beta: may share only b's buffer");
  }
  if (b && same_nonempty_buffer(&vdecay, &vb)) return ERR("decay: may share only a's buffer");

  gate_call c;
  memset(&c, 0, sizeof c);
  c.fn = ctx->kernels->gates->la_gate;
  c.dtype = va.dtype;
  c.H = H;
  c.a = va.data;
  c.b = beta ? vb.data : NULL;
  c.dt_bias = (const float*)vbias.data;
  c.decay_scale = (const float*)vscale.data;
  c.decay = vdecay.data;
  c.beta = beta ? vbeta.data : NULL;
  /* softplus costs ~16 element loads' time */
  c.split = gates_split(ctx, va.numel / H, (size_t)H * linattn_dtype_size(va.dtype), va.numel * 16);
  linattn_clear_error();
  linattn_run_parallel(ctx, gate_task, &c, c.split.tasks);
  return LINATTN_SUCCESS;
}

linattn_status linattn_linear_attention_gate(linattn_context* ctx, const linattn_tensor* a, const linattn_tensor* dt_bias,
                                             const linattn_tensor* decay_scale, const linattn_tensor* b,
                                             const linattn_tensor* decay, const linattn_tensor* beta) {
  LINATTN_RETURN_ENTERED(ctx, linattn_linear_attention_gate_entered(ctx, a, dt_bias, decay_scale, b, decay, beta));
}

/* ------------------------------------------------------------------ LinearAttentionGate, packed rows */

/* [p, p + pn) and [q, q + qn) share no byte. */
static bool bytes_disjoint(const void* p, size_t pn, const void* q, size_t qn) {
  const uintptr_t a = (uintptr_t)p, b = (uintptr_t)q;
  return a + pn <= b || b + qn <= a;
}

/* A call the tensor entry would accept and run in one task (gates_split; softplus costs ~16
 * element loads' time): every pointer given, outputs either the input they may be (decay = a,
 * beta = b) or apart from every other argument. Anything else (an empty or large call, NULLs,
 * overlaps) goes through the tensor entry, which gives its result or its message. */
static bool gate_packed_direct(const linattn_context* ctx, linattn_dtype dtype, int64_t rows, int64_t H,
                               const void* a, const float* dt_bias, const float* decay_scale, const void* b,
                               const void* decay, const void* beta) {
  const size_t es = linattn_dtype_size(dtype);
  int64_t n;
  if (!ctx || !es || rows < 1 || H < 1 || __builtin_mul_overflow(rows, H, &n) ||
      n > GATES_SERIAL_MAX_ELEMS / 16)
    return false;
  if (!a || !dt_bias || !decay_scale || !decay || (beta && !b)) return false;
  const size_t bytes = (size_t)n * es, hb = (size_t)H * sizeof(float);
  if ((decay != a && !bytes_disjoint(decay, bytes, a, bytes)) || (b && !bytes_disjoint(decay, bytes, b, bytes)) ||
      !bytes_disjoint(decay, bytes, dt_bias, hb) || !bytes_disjoint(decay, bytes, decay_scale, hb))
    return false;
  return !beta || (bytes_disjoint(beta, bytes, a, bytes) && bytes_disjoint(beta, bytes, decay, bytes) &&
                   (beta == b || bytes_disjoint(beta, bytes, b, bytes)) && bytes_disjoint(beta, bytes, dt_bias, hb) &&
                   bytes_disjoint(beta, bytes, decay_scale, hb));
}

static linattn_status linattn_linear_attention_gate_packed_entered(linattn_context* ctx, linattn_dtype dtype,
                                                                   int64_t rows, int64_t H, const void* a,
                                                                   const float* dt_bias, const float* decay_scale,
                                                                   const void* b, void* decay, void* beta) {
  if (gate_packed_direct(ctx, dtype, rows, H, a, dt_bias, decay_scale, b, decay, beta)) {
    /* what gate_task does for the single task of a call this small */
    ctx->kernels->gates->la_gate(dtype, H, a, dt_bias, decay_scale, beta ? b : NULL, decay, beta, rows);
    return LINATTN_SUCCESS;
  }
  const int64_t dims[2] = {rows, H};
  const linattn_tensor ta = linattn_make_tensor((void*)(uintptr_t)a, dtype, 2, dims),
                       tb = linattn_make_tensor((void*)(uintptr_t)b, dtype, 2, dims),
                       tdecay = linattn_make_tensor(decay, dtype, 2, dims),
                       tbeta = linattn_make_tensor(beta, dtype, 2, dims),
                       tbias = linattn_make_tensor((void*)(uintptr_t)dt_bias, LINATTN_DTYPE_F32, 1, &H),
                       tscale = linattn_make_tensor((void*)(uintptr_t)decay_scale, LINATTN_DTYPE_F32, 1, &H);
  return linattn_linear_attention_gate_entered(ctx, &ta, &tbias, &tscale, b ? &tb : NULL, &tdecay,
                                               beta ? &tbeta : NULL);
}

linattn_status linattn_linear_attention_gate_packed(linattn_context* ctx, linattn_dtype dtype, int64_t rows, int64_t H,
                                                    const void* a, const float* dt_bias, const float* decay_scale,
                                                    const void* b, void* decay, void* beta) {
  LINATTN_RETURN_ENTERED(ctx, linattn_linear_attention_gate_packed_entered(ctx, dtype, rows, H, a, dt_bias,
                                                                           decay_scale, b, decay, beta));
}
