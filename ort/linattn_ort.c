/*
 * ONNX Runtime custom-op library: registration, schemas and output type/shape inference.
 *
 * RegisterCustomOps adds two custom-op domains to the session options:
 *   "com.microsoft": LinearAttention and CausalConvWithState version 1 (ORT's contrib ops, with
 *                    inverse GQA / separate key heads, dilation and channels_last), GatedRMSNorm
 *                    and LinearAttentionGate version 1;
 *   "" (ai.onnx):    LinearAttention and CausalConvWithState from opset 27.
 * ORT consults a session's custom registries before its own, so these take over the nodes (and
 * an opset-27 model gets past ORT's "opset under development" load check).
 *
 * All inputs and outputs are type-generic (element type UNDEFINED): a single op instance then
 * serves every dtype combination the schemas allow, including fp16/bf16 activations with an
 * fp32 state, which one-instance-per-type registration cannot express. ORT then needs the
 * output type/shape inference function below; it follows the ONNX reference: output has the
 * query/input type, present_state the past_state type when given, else the query type.
 */
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>


#include "linattn_ort.h"

const OrtApi* linattn_ort_api = NULL;

/* ------------------------------------------------------------------ status helpers */

OrtStatus* linattn_ort_error(OrtErrorCode code, const char* fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return linattn_ort_api->CreateStatus(code, msg);
}

OrtStatus* linattn_ort_from_linattn(const ort_op* op, linattn_status status) {
  OrtErrorCode code = ORT_FAIL;
  switch (status) {
    case LINATTN_SUCCESS: return NULL;
    case LINATTN_ERROR_INVALID_ARGUMENT: code = ORT_INVALID_ARGUMENT; break;
    case LINATTN_ERROR_UNSUPPORTED: code = ORT_NOT_IMPLEMENTED; break;
    default: code = ORT_RUNTIME_EXCEPTION; break;
  }
  return linattn_ort_error(code, "%s (linattn): %s: %s", op->label, linattn_status_string(status),
                           linattn_last_error());
}

OrtStatus* linattn_ort_invalid(const ort_op* op, const char* fmt, ...) {
  char msg[768];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s (linattn): %s: %s", op->label,
                           linattn_status_string(LINATTN_ERROR_INVALID_ARGUMENT), msg);
}

OrtStatus* linattn_ort_check_state_window(const ort_op* op, int64_t window) {
  if (window < 0 || window > 8)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute state_window must be in [0, 8], got %lld", op->label,
                             (long long)window);
  return NULL;
}

OrtStatus* linattn_ort_conv_window_rank(const ort_op* op, size_t rank) {
  return linattn_ort_error(ORT_NOT_IMPLEMENTED,
                           "%s: attribute state_window > 0 with a rank-%zu input (more than one channel axis) is not "
                           "implemented by linattn; only (B, C, L) or (B, L, C) inputs",
                           op->label, rank);
}

OrtStatus* linattn_ort_check_rank(const ort_op* op, const char* name, size_t rank, size_t want, const char* shape_doc) {
  if (rank == want) return NULL;
  return linattn_ort_invalid(op, "%s: expected rank %zu %s, got rank %zu", name, want, shape_doc, rank);
}

OrtStatus* linattn_ort_check_la_input_rank(const ort_op* op, size_t index, size_t rank) {
  static const char* const names[3] = {"query", "key", "value"};
  static const char* const docs[3] = {"(B, T, q_num_heads*d_k)", "(B, T, kv_num_heads*d_k)", "(B, T, kv_num_heads*d_v)"};
  return linattn_ort_check_rank(op, names[index], rank, 3, docs[index]);
}

OrtStatus* linattn_ort_check_conv_input_rank(const ort_op* op, int channels_last, size_t rank) {
  if (channels_last ? rank >= 3 : rank == 3) return NULL;
  return linattn_ort_invalid(op, "input: expected %s, got rank %zu",
                             channels_last ? "rank >= 3 (B, L, d_1, ..., d_n)" : "rank 3 (B, C, L)", rank);
}

linattn_dtype linattn_ort_dtype(ONNXTensorElementDataType type) {
  switch (type) {
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT: return LINATTN_DTYPE_F32;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16: return LINATTN_DTYPE_F16;
    case ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16: return LINATTN_DTYPE_BF16;
    default: return LINATTN_DTYPE_INVALID;
  }
}

/* ------------------------------------------------------------------ schema callbacks */

static const ort_op* as_op(const OrtCustomOp* op) { return (const ort_op*)op; }

const char* linattn_ort_kind_name(ort_op_kind kind) {
  switch (kind) {
    case ORT_OP_LINEAR_ATTENTION: return "LinearAttention";
    case ORT_OP_CAUSAL_CONV: return "CausalConvWithState";
    case ORT_OP_GATED_RMS_NORM: return "GatedRMSNorm";
    case ORT_OP_LINEAR_ATTENTION_GATE: return "LinearAttentionGate";
    case ORT_OP_GATED_DELTA_NET: return "GatedDeltaNet";
    case ORT_OP_VARLEN_CONV: return "VarlenCausalConvWithState";
    default: return "";
  }
}

static const char* ORT_API_CALL op_name(const OrtCustomOp* op) { return linattn_ort_kind_name(as_op(op)->kind); }

static const char* ORT_API_CALL op_provider(const OrtCustomOp* op) {
  (void)op;
  return NULL; /* CPU execution provider */
}

/* Inputs, of which the first `required` are required. */
static const size_t op_inputs[ORT_OP_KINDS] = {6, 4, 3, 4, 11, 8};
static const size_t op_required_inputs[ORT_OP_KINDS] = {3, 2, 3, 3, 1, 3};

static size_t ORT_API_CALL op_input_count(const OrtCustomOp* op) { return op_inputs[as_op(op)->kind]; }

/* com.microsoft.CausalConvWithState declares a third, optional output (state_update, CUDA
 * only); declaring it lets such a node reach our kernel, which then says clearly that linattn
 * does not produce it, instead of failing graph resolution. */
static size_t ORT_API_CALL op_output_count(const OrtCustomOp* op) {
  const ort_op* o = as_op(op);
  if (o->kind == ORT_OP_GATED_RMS_NORM) return 1;
  if (o->kind == ORT_OP_GATED_DELTA_NET || o->kind == ORT_OP_VARLEN_CONV) return 3;
  return (o->kind == ORT_OP_CAUSAL_CONV && o->contrib) ? 3 : 2;
}

static ONNXTensorElementDataType ORT_API_CALL op_io_type(const OrtCustomOp* op, size_t index) {
  (void)op;
  (void)index;
  return ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

/* LinearAttention: query, key, value required; past_state, decay, beta optional.
 * CausalConvWithState: input, weight required; bias, past_state optional.
 * GatedRMSNorm: X, scale, gate required. LinearAttentionGate: a, dt_bias, decay_scale required,
 * b optional. GatedDeltaNet: query required, the other ten optional. VarlenCausalConvWithState:
 * input, weight, cumulative_sequence_length and initial_state (index 4) required. */
static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_input_characteristic(const OrtCustomOp* op,
                                                                                   size_t index) {
  if (as_op(op)->kind == ORT_OP_VARLEN_CONV && index == 4) return INPUT_OUTPUT_REQUIRED;
  return index < op_required_inputs[as_op(op)->kind] ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
}

/* LinearAttentionGate's beta, GatedDeltaNet's final_state and state_update and the varlen conv's
 * state_update are optional; the others' first two outputs are required. */
static OrtCustomOpInputOutputCharacteristic ORT_API_CALL op_output_characteristic(const OrtCustomOp* op,
                                                                                    size_t index) {
  const ort_op_kind kind = as_op(op)->kind;
  size_t required = kind == ORT_OP_LINEAR_ATTENTION_GATE || kind == ORT_OP_GATED_DELTA_NET ? 1 : 2;
  return index < required ? INPUT_OUTPUT_REQUIRED : INPUT_OUTPUT_OPTIONAL;
}

static OrtMemType ORT_API_CALL op_input_memory_type(const OrtCustomOp* op, size_t index) {
  (void)op;
  (void)index;
  return OrtMemTypeDefault;
}

static int ORT_API_CALL op_start_version(const OrtCustomOp* op) { return as_op(op)->start_version; }

static int ORT_API_CALL op_end_version(const OrtCustomOp* op) {
  (void)op;
  return INT_MAX;
}

/* ------------------------------------------------------------------ inference helpers */

#define INFER_MAX_RANK 8

typedef struct infer_input {
  int present; /* input given with a defined element type */
  ONNXTensorElementDataType type;
  size_t rank; /* 0 also when the shape is unknown */
  int64_t dims[INFER_MAX_RANK];      /* -1 = unknown */
  const char* names[INFER_MAX_RANK]; /* symbolic name or "" */
} infer_input;

/* One output dimension: a value >= 0, or a symbolic name (NULL = unknown, a fresh name is made). */
typedef struct infer_dim {
  int64_t value;
  const char* name;
} infer_dim;

static infer_dim dim_known(int64_t v) {
  infer_dim d = {v, NULL};
  return d;
}

static infer_dim dim_unknown(void) {
  infer_dim d = {-1, NULL};
  return d;
}

static infer_dim dim_of(const infer_input* in, size_t axis) {
  infer_dim d = {-1, NULL};
  if (!in->present || axis >= in->rank) return d;
  if (in->dims[axis] >= 0) {
    d.value = in->dims[axis];
  } else if (in->names[axis] && in->names[axis][0]) {
    d.name = in->names[axis];
  }
  return d;
}

static OrtStatus* read_input(OrtShapeInferContext* ic, size_t count, size_t index, infer_input* out) {
  const OrtApi* api = linattn_ort_api;
  memset(out, 0, sizeof *out);
  if (index >= count) return NULL;
  OrtTensorTypeAndShapeInfo* info = NULL; /* owned by the context: never released here */
  OrtStatus* st = api->ShapeInferContext_GetInputTypeShape(ic, index, &info);
  if (st) {
    api->ReleaseStatus(st); /* an absent optional input */
    return NULL;
  }
  if (!info) return NULL;
  if ((st = api->GetTensorElementType(info, &out->type))) return st;
  if (out->type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED) return NULL; /* absent optional input */
  out->present = 1;
  size_t rank = 0;
  if ((st = api->GetDimensionsCount(info, &rank))) return st;
  if (rank > INFER_MAX_RANK) {
    out->rank = 0; /* treated as unknown: shapes beyond that are not inferred */
    return NULL;
  }
  out->rank = rank;
  if (rank == 0) return NULL;
  if ((st = api->GetDimensions(info, out->dims, rank))) return st;
  if ((st = api->GetSymbolicDimensions(info, out->names, rank))) return st;
  for (size_t i = 0; i < rank; i++)
    if (!out->names[i]) out->names[i] = "";
  return NULL;
}

/* The node's inputs index[0..n) into in[] (absent ones not present). Input index[0] is required:
 * its absence is reported as "<op>: <first> missing". */
static OrtStatus* read_node_inputs(OrtShapeInferContext* ic, const ort_op* op, const size_t* index, size_t n,
                                   const char* first, infer_input* in) {
  size_t count = 0;
  OrtStatus* st = linattn_ort_api->ShapeInferContext_GetInputCount(ic, &count);
  if (st) return st;
  for (size_t i = 0; i < n; i++)
    if ((st = read_input(ic, count, index[i], &in[i]))) return st;
  if (!in[0].present) return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: %s missing", op->label, first);
  return NULL;
}

/* An INT attribute (`def` when absent). One of another type leaves *typed = 0 and `def`: the
 * kernel, made at session creation, reports it in ORT's wording (see linattn_ort_kernels.c). */
static OrtStatus* read_int_attr(OrtShapeInferContext* ic, const char* name, int64_t def, int64_t* value, int* typed) {
  const OrtApi* api = linattn_ort_api;
  const OrtOpAttr* attr = NULL;
  *value = def;
  OrtStatus* st = api->ShapeInferContext_GetAttribute(ic, name, &attr);
  if (st) {
    api->ReleaseStatus(st); /* not given: the default applies */
    return NULL;
  }
  if (!attr) return NULL;
  size_t written = 0;
  int64_t v = def;
  st = api->ReadOpAttr(attr, ORT_OP_ATTR_INT, &v, sizeof v, &written);
  if (st) {
    api->ReleaseStatus(st);
    *typed = 0;
    return NULL;
  }
  *value = v;
  return NULL;
}

static unsigned long next_unknown_dim_id(void) {
  static unsigned long counter = 0;
  return __atomic_add_fetch(&counter, 1, __ATOMIC_RELAXED);
}

/* Gives an unknown, unnamed dimension a fresh name (kept in buf), so that two outputs sharing
 * it (output and state batch) say so. */
static void name_if_unknown(infer_dim* d, char* buf, size_t cap) {
  if (d->value >= 0 || (d->name && d->name[0])) return;
  snprintf(buf, cap, "linattn_unk_%lu", next_unknown_dim_id());
  d->name = buf;
}

static OrtStatus* set_output(OrtShapeInferContext* ic, size_t index, ONNXTensorElementDataType type,
                             size_t rank, const infer_dim* dims) {
  const OrtApi* api = linattn_ort_api;
  int64_t values[INFER_MAX_RANK + 1];
  const char* names[INFER_MAX_RANK + 1];
  char fresh[INFER_MAX_RANK + 1][40];
  for (size_t i = 0; i < rank; i++) {
    if (dims[i].value >= 0) {
      values[i] = dims[i].value;
      names[i] = "";
    } else {
      /* ORT copies a dimension without a name as its integer value, so an unknown dimension
       * needs a name; a fresh one promises nothing about equality with other dimensions. */
      values[i] = -1;
      if (dims[i].name && dims[i].name[0]) {
        names[i] = dims[i].name;
      } else {
        snprintf(fresh[i], sizeof fresh[i], "linattn_unk_%lu", next_unknown_dim_id());
        names[i] = fresh[i];
      }
    }
  }
  OrtTensorTypeAndShapeInfo* info = NULL;
  OrtStatus* st = api->CreateTensorTypeAndShapeInfo(&info);
  if (st) return st;
  if (!(st = api->SetTensorElementType(info, type)) && !(st = api->SetDimensions(info, values, rank)) &&
      !(st = api->SetSymbolicDimensions(info, names, rank)))
    st = api->ShapeInferContext_SetOutputTypeShape(ic, index, info);
  api->ReleaseTensorTypeAndShapeInfo(info);
  return st;
}

/* ------------------------------------------------------------------ LinearAttention inference */

/* Picks a concrete stand-in for a B or T dimension shared by query, key and value: the first
 * known value, else 1 (the dimension passes through unchanged, so the stand-in only has to be
 * consistent). */
static int64_t shared_dim(const infer_input* in, size_t n, size_t axis) {
  for (size_t i = 0; i < n; i++)
    if (in[i].rank == 3 && in[i].dims[axis] >= 0) return in[i].dims[axis];
  return 1;
}

static int64_t width_of(const infer_input* in) { return in->rank == 3 ? in->dims[2] : -1; }

/* The library's shape inference on query/key/value dims where an unknown width gets a stand-in
 * that satisfies the rules (d_k or d_v = 1, key = kv_num_heads * d_k), so that every rule and
 * message stays linattn's. Dims that depend on an unknown width stay unknown. */
static OrtStatus* la_infer_dims(const ort_op* op, const infer_input* in, int64_t hq, int64_t hkv, infer_dim* out,
                                infer_dim* state) {
  const int64_t qw = width_of(&in[0]), kw = width_of(&in[1]), vw = width_of(&in[2]);
  const int64_t b = shared_dim(in, 3, 0), t = shared_dim(in, 3, 1);
  int64_t qd[3], kd[3], vd[3], od[3], sd[4];
  int64_t* dst[3] = {qd, kd, vd};
  for (size_t i = 0; i < 3; i++) {
    dst[i][0] = in[i].rank == 3 && in[i].dims[0] >= 0 ? in[i].dims[0] : b;
    dst[i][1] = in[i].rank == 3 && in[i].dims[1] >= 0 ? in[i].dims[1] : t;
  }
  qd[2] = qw >= 0 ? qw : hq;
  /* a known key width is checked against d_k, known only with the query's width */
  kd[2] = hkv;
  if (qw >= 0 && kw >= 0) kd[2] = kw;
  else if (qw >= 0 && hq > 0 && __builtin_mul_overflow(hkv, qw / hq, &kd[2]))
    kd[2] = 0; /* the library reports kv_num_heads*d_k overflowing */
  vd[2] = vw >= 0 ? vw : hkv;
  linattn_linear_attention_desc desc;
  linattn_linear_attention_desc_init(&desc);
  desc.q_num_heads = hq;
  desc.kv_num_heads = hkv;
  desc.flags = op->contrib ? LINATTN_LA_ORT_CONTRIB : 0u;
  linattn_status ls = linattn_linear_attention_infer_shapes(&desc, qd, kd, vd, od, sd);
  if (ls != LINATTN_SUCCESS) return linattn_ort_from_linattn(op, ls);
  if (vw >= 0) out[2] = dim_known(od[2]);
  if (qw >= 0) state[2] = dim_known(sd[2]);
  if (vw >= 0) state[3] = dim_known(sd[3]);
  return NULL;
}

static OrtStatus* ORT_API_CALL la_infer(const OrtCustomOp* custom_op, OrtShapeInferContext* ic) {
  const ort_op* op = as_op(custom_op);
  infer_input in[4]; /* query, key, value, past_state */
  OrtStatus* st = read_node_inputs(ic, op, (const size_t[]){0, 1, 2, 3}, 4, "query input", in);
  if (st) return st;

  int64_t hq = 0, hkv = 0, window = 0;
  int typed = 1;
  if ((st = read_int_attr(ic, "q_num_heads", 0, &hq, &typed)) || (st = read_int_attr(ic, "kv_num_heads", 0, &hkv, &typed)))
    return st;
  if (op->contrib && (st = read_int_attr(ic, "state_window", 0, &window, &typed))) return st;
  if (!typed) return NULL; /* an attribute of the wrong type: the kernel reports it at session creation */
  if ((st = linattn_ort_check_state_window(op, window))) return st;
  for (size_t i = 0; i < 3; i++)
    if (in[i].present && in[i].rank != 0 && (st = linattn_ort_check_la_input_rank(op, i, in[i].rank))) return st;

  infer_dim out[3] = {dim_of(&in[0], 0), dim_of(&in[0], 1), dim_unknown()};
  char batch_name[40];
  name_if_unknown(&out[0], batch_name, sizeof batch_name);
  infer_dim state[5] = {dim_known(window), out[0], dim_known(hkv), dim_unknown(), dim_unknown()};
  if ((st = la_infer_dims(op, in, hq, hkv, out, state + 1))) return st;
  /* the ONNX rule: output has query's type, present_state past_state's (else query's); a state
   * window leads with its W axis */
  if ((st = set_output(ic, 0, in[0].type, 3, out))) return st;
  return set_output(ic, 1, in[3].present ? in[3].type : in[0].type, window > 0 ? 5 : 4, window > 0 ? state : state + 1);
}

/* ------------------------------------------------------------------ CausalConvWithState inference */

/* The library's shape inference on stand-in dims (one channel, one batch, one step), so that
 * the rules on k and dilation and their messages are linattn's. */
OrtStatus* linattn_ort_conv_state_length(const ort_op* op, const linattn_causal_conv_desc* desc, int64_t taps,
                                         int64_t* len) {
  const int64_t xd[3] = {1, 1, 1}, wd[3] = {1, 1, taps};
  int64_t od[3], sd[3];
  linattn_status ls = linattn_causal_conv_infer_shapes(desc, xd, wd, od, sd);
  if (ls != LINATTN_SUCCESS) return linattn_ort_from_linattn(op, ls);
  *len = sd[desc->channels_last ? 1 : 2];
  return NULL;
}

static OrtStatus* ORT_API_CALL conv_infer(const OrtCustomOp* custom_op, OrtShapeInferContext* ic) {
  const ort_op* op = as_op(custom_op);
  infer_input in[2]; /* input, weight */
  OrtStatus* st = read_node_inputs(ic, op, (const size_t[]){0, 1}, 2, "input", in);
  if (st) return st;
  const infer_input x = in[0], w = in[1];

  int64_t channels_last = 0, dilation = 1, window = 0;
  int typed = 1;
  if (op->contrib) {
    if ((st = read_int_attr(ic, "channels_last", 0, &channels_last, &typed)) ||
        (st = read_int_attr(ic, "dilation", 1, &dilation, &typed)) ||
        (st = read_int_attr(ic, "state_window", 0, &window, &typed)))
      return st;
  }
  if (!typed) return NULL; /* an attribute of the wrong type: the kernel reports it at session creation */
  if ((st = linattn_ort_check_state_window(op, window))) return st;
  if (x.rank != 0 && (st = linattn_ort_check_conv_input_rank(op, channels_last != 0, x.rank))) return st;
  if (window > 0 && x.rank > 3) return linattn_ort_conv_window_rank(op, x.rank);

  /* With channels_last the rank is 2 + the number of channel axes: unknown with the input's. */
  if (x.rank == 0 && channels_last) return NULL;
  /* output: the input's type and shape */
  size_t rank = x.rank >= 3 ? x.rank : 3;
  infer_dim out[INFER_MAX_RANK];
  char names[INFER_MAX_RANK][40]; /* shared by output and present_state */
  for (size_t i = 0; i < rank; i++) {
    out[i] = dim_of(&x, i);
    name_if_unknown(&out[i], names[i], sizeof names[i]);
  }
  if ((st = set_output(ic, 0, x.type, rank, out))) return st;

  /* present_state: the sequence axis becomes (k - 1) * dilation */
  infer_dim len = dim_unknown();
  if (w.present && w.rank == 3 && w.dims[2] >= 0) {
    linattn_causal_conv_desc desc;
    linattn_causal_conv_desc_init(&desc);
    desc.dilation = dilation;
    desc.channels_last = channels_last ? 1 : 0;
    if ((st = linattn_ort_conv_state_length(op, &desc, w.dims[2], &len.value))) return st;
  }
  infer_dim state[INFER_MAX_RANK + 1];
  size_t seq_axis = channels_last ? 1 : rank - 1;
  const size_t lead = window > 0 ? 1 : 0; /* a state window leads with its W axis */
  state[0] = dim_known(window);
  for (size_t i = 0; i < rank; i++) state[lead + i] = i == seq_axis ? len : out[i];
  return set_output(ic, 1, x.type, rank + lead, state);
}

/* ------------------------------------------------------------------ gates inference */

static OrtStatus* linattn_infer_types_only(OrtShapeInferContext* ic, ONNXTensorElementDataType first,
                                           ONNXTensorElementDataType rest, size_t outputs);

/* GatedRMSNorm Y and LinearAttentionGate decay / beta: the type and shape of input 0. */
static OrtStatus* ORT_API_CALL gates_infer(const OrtCustomOp* custom_op, OrtShapeInferContext* ic) {
  const ort_op* op = as_op(custom_op);
  const int la_gate = op->kind == ORT_OP_LINEAR_ATTENTION_GATE;
  infer_input in[3]; /* x or a; LinearAttentionGate's dt_bias, decay_scale */
  OrtStatus* st = read_node_inputs(ic, op, (const size_t[]){0, 1, 2}, la_gate ? 3 : 1, "input 0", in);
  if (st) return st;
  const infer_input x = in[0];
  if (la_gate) {
    /* dt_bias and decay_scale are float32 whatever T is (type constraint TF) */
    for (size_t i = 1; i < 3; i++) {
      const infer_input v = in[i];
      if (v.present && v.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT)
        return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: %s must be float32 (type constraint TF)", op->label,
                                 i == 1 ? "dt_bias" : "decay_scale");
    }
  }
  const size_t outputs = la_gate ? 2 : 1;
  /* unknown shape: the type only (else ORT would take the last given input's, float32 decay_scale) */
  if (x.rank == 0 && x.type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED)
    return linattn_infer_types_only(ic, x.type, x.type, outputs);
  infer_dim dims[INFER_MAX_RANK];
  char names[INFER_MAX_RANK][40];
  for (size_t i = 0; i < x.rank; i++) {
    dims[i] = dim_of(&x, i);
    name_if_unknown(&dims[i], names[i], sizeof names[i]);
  }
  for (size_t o = 0; o < outputs; o++)
    if ((st = set_output(ic, o, x.type, x.rank, dims))) return st;
  return NULL;
}

/* ------------------------------------------------------------------ GatedDeltaNet inference */

static int dims_known(const infer_input* in) {
  if (!in->present) return 1;
  if (in->rank == 0) return 0;
  for (size_t i = 0; i < in->rank; i++)
    if (in->dims[i] < 0) return 0;
  return 1;
}

/* Unknown ranks (or a mistyped attribute, which the kernel reports at session creation): the
 * output types only (output 0 `first`, the others `rest`), else ORT would take them from an
 * input (the last given, an int32 one for these ops). */
static OrtStatus* linattn_infer_types_only(OrtShapeInferContext* ic, ONNXTensorElementDataType first,
                                           ONNXTensorElementDataType rest, size_t outputs) {
  const OrtApi* api = linattn_ort_api;
  OrtStatus* st = NULL;
  for (size_t o = 0; o < outputs && !st; o++) {
    OrtTensorTypeAndShapeInfo* info = NULL;
    if ((st = api->CreateTensorTypeAndShapeInfo(&info))) return st;
    st = api->SetTensorElementType(info, o == 0 ? first : rest);
    if (!st) st = api->ShapeInferContext_SetOutputTypeShape(ic, o, info);
    api->ReleaseTensorTypeAndShapeInfo(info);
  }
  return st;
}

/* output: query's type; final_state and state_update: float. With every shape known the
 * library's inference gives the dims (and its rules and messages); otherwise the ranks and what
 * passes through (token axes, a given initial_state's shape). */
static OrtStatus* ORT_API_CALL gdn_infer(const OrtCustomOp* custom_op, OrtShapeInferContext* ic) {
  const ort_op* op = as_op(custom_op);
  enum { Q, K, V, CU, DECAY, STATE, N };
  static const size_t index[N] = {0, 1, 2, 3, 4, 6};
  infer_input in[N];
  OrtStatus* st = read_node_inputs(ic, op, index, N, "query input", in);
  if (st) return st;
  int64_t capacity = 0;
  int typed = 1;
  if ((st = read_int_attr(ic, "state_update_capacity", 0, &capacity, &typed))) return st;
  if (!typed || in[Q].rank == 0) return linattn_infer_types_only(ic, in[Q].type, ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT, 3);
  const int packed = !in[K].present && !in[V].present;
  if (in[Q].rank < 2 || in[Q].rank > 4)
    return linattn_ort_invalid(op, "query: expected rank 3 (T, H, d), 4 (B, S, H, d) or, packed QKV, 2 or 3, got rank %zu",
                               in[Q].rank);
  const size_t lead = packed ? in[Q].rank - 1 : in[Q].rank - 2;
  const int per_key = in[DECAY].present && in[DECAY].rank == lead + 2;
  const ONNXTensorElementDataType f32 = ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT;
  const size_t out_rank = lead + 2;
  infer_dim out[4], state[4], su[2];
  char names[4][40];
  for (size_t i = 0; i < out_rank; i++) out[i] = i < lead ? dim_of(&in[Q], i) : dim_unknown();
  for (size_t i = 0; i < 4; i++) state[i] = dim_of(&in[STATE], i);
  name_if_unknown(&state[0], names[0], sizeof names[0]);
  su[0] = state[0];
  su[1] = capacity == 0 ? dim_known(0) : dim_unknown();
  int known = 1;
  for (size_t i = 0; i < N; i++) known &= i == CU ? (!in[CU].present || (in[CU].rank == 1 && in[CU].dims[0] >= 0))
                                                  : dims_known(&in[i]);
  if (known) {
    linattn_gated_delta_net_desc desc;
    linattn_gated_delta_net_desc_init(&desc);
    desc.state_update_capacity = capacity;
    int32_t rank = 0;
    int64_t od[4], sd[4], ud[2];
    linattn_status ls = linattn_gated_delta_net_infer_shapes(
        &desc, (int32_t)in[Q].rank, in[Q].dims, in[K].present ? in[K].dims : NULL, in[V].present ? in[V].dims : NULL,
        in[STATE].present ? in[STATE].dims : NULL, in[CU].present ? in[CU].dims[0] : 0, per_key, &rank, od, sd, ud);
    if (ls != LINATTN_SUCCESS) return linattn_ort_from_linattn(op, ls);
    for (int32_t i = 0; i < rank && i < 4; i++) out[i] = dim_known(od[i]);
    for (size_t i = 0; i < 4; i++) state[i] = dim_known(sd[i]);
    for (size_t i = 0; i < 2; i++) su[i] = dim_known(ud[i]);
  }
  if ((st = set_output(ic, 0, in[Q].type, out_rank, out)) || (st = set_output(ic, 1, f32, 4, state))) return st;
  return set_output(ic, 2, f32, 2, su);
}

/* ------------------------------------------------------------------ VarlenCausalConvWithState inference */

/* output: input's type and shape; final_state: initial_state's; state_update: (batch_size,
 * state_update_capacity, channels) of the input's type. */
static OrtStatus* ORT_API_CALL varlen_conv_infer(const OrtCustomOp* custom_op, OrtShapeInferContext* ic) {
  const ort_op* op = as_op(custom_op);
  infer_input in[3]; /* input, cu_seqlens, initial_state */
  OrtStatus* st = read_node_inputs(ic, op, (const size_t[]){0, 2, 4}, 3, "input", in);
  if (st) return st;
  const infer_input x = in[0], cu = in[1], state = in[2];
  int64_t capacity = 0;
  int typed = 1;
  if ((st = read_int_attr(ic, "state_update_capacity", 0, &capacity, &typed))) return st;
  if (!typed || x.rank != 2 || (state.present && state.rank != 3)) return linattn_infer_types_only(ic, x.type, x.type, 3);
  if ((st = set_output(ic, 0, x.type, 2, (infer_dim[2]){dim_of(&x, 0), dim_of(&x, 1)}))) return st;
  infer_dim sd[3] = {dim_of(&state, 0), dim_of(&x, 1), dim_of(&state, 2)};
  if ((st = set_output(ic, 1, x.type, 3, sd))) return st;
  infer_dim batch = cu.present && cu.rank == 1 && cu.dims[0] >= 1 ? dim_known(cu.dims[0] - 1) : sd[0];
  return set_output(ic, 2, x.type, 3, (infer_dim[3]){batch, dim_known(capacity), dim_of(&x, 1)});
}

/* ------------------------------------------------------------------ registration */

/* The ops and domains for one C API version. Made once per version and kept for the life of the
 * process: ORT requires the domains to outlive every session options object and session that
 * uses them, which the library cannot track. A process has one ONNX Runtime, so in practice one
 * set; LINATTN_ORT_API_VERSION can ask for an older version next to it. */
#define OP_COUNT 8
#define MAX_API_SETS 4

typedef struct op_set {
  uint32_t api_version;
  ort_op ops[OP_COUNT];
  OrtCustomOpDomain* contrib;
  OrtCustomOpDomain* onnx;
} op_set;

static op_set g_sets[MAX_API_SETS];
static size_t g_set_count = 0;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

/* .version is the C API version in use, not the header's: ORT releases before the one that caps
 * it (1.27's header says it does) refuse to make a kernel for an op whose version is above their
 * own ORT_API_VERSION ("Unsupported version"), and every ORT hands CreateKernelV2 the table of
 * that version. The op's callbacks (CreateKernelV2, KernelComputeV2, InferOutputShapeFn,
 * Get{Start,End}Version) are read from version 17 on. */
static void init_op(ort_op* o, ort_op_kind kind, int contrib, const OrtApi* api, uint32_t api_version) {
  memset(o, 0, sizeof *o);
  o->kind = kind;
  o->contrib = contrib;
  o->api = api;
  o->start_version = contrib ? 1 : 27;
  switch (kind) {
    case ORT_OP_LINEAR_ATTENTION: o->label = contrib ? "com.microsoft.LinearAttention" : "LinearAttention-27"; break;
    case ORT_OP_CAUSAL_CONV: o->label = contrib ? "com.microsoft.CausalConvWithState" : "CausalConvWithState-27"; break;
    case ORT_OP_GATED_RMS_NORM: o->label = "com.microsoft.GatedRMSNorm"; break;
    case ORT_OP_GATED_DELTA_NET: o->label = "com.microsoft.GatedDeltaNet"; break;
    case ORT_OP_VARLEN_CONV: o->label = "com.microsoft.VarlenCausalConvWithState"; break;
    default: o->label = "com.microsoft.LinearAttentionGate"; break;
  }
  o->base = (OrtCustomOp){
      .version = api_version,
      .GetName = op_name,
      .GetExecutionProviderType = op_provider,
      .GetInputType = op_io_type, .GetInputTypeCount = op_input_count,
      .GetOutputType = op_io_type, .GetOutputTypeCount = op_output_count,
      .GetInputCharacteristic = op_input_characteristic, .GetOutputCharacteristic = op_output_characteristic,
      .GetInputMemoryType = op_input_memory_type,
      .CreateKernelV2 = linattn_ort_create_kernel, .KernelComputeV2 = linattn_ort_compute,
      .KernelDestroy = linattn_ort_destroy_kernel,
      .InferOutputShapeFn = kind == ORT_OP_LINEAR_ATTENTION  ? la_infer
                            : kind == ORT_OP_CAUSAL_CONV     ? conv_infer
                            : kind == ORT_OP_GATED_DELTA_NET ? gdn_infer
                            : kind == ORT_OP_VARLEN_CONV     ? varlen_conv_infer
                                                             : gates_infer,
      .GetStartVersion = op_start_version,
      .GetEndVersion = op_end_version,
  };
}

/* The set for api_version, made on first use (under g_lock). */
static OrtStatus* op_set_for(const OrtApi* api, uint32_t api_version, const op_set** out) {
  for (size_t i = 0; i < g_set_count; i++)
    if (g_sets[i].api_version == api_version) {
      *out = &g_sets[i];
      return NULL;
    }
  if (g_set_count == MAX_API_SETS)
    return api->CreateStatus(ORT_FAIL, "liblinattn_ort: too many C API versions requested in one process");
  static const struct {
    ort_op_kind kind;
    int contrib;
  } list[OP_COUNT] = {
      {ORT_OP_LINEAR_ATTENTION, 1}, {ORT_OP_CAUSAL_CONV, 1},          {ORT_OP_LINEAR_ATTENTION, 0},
      {ORT_OP_CAUSAL_CONV, 0},      {ORT_OP_GATED_RMS_NORM, 1},       {ORT_OP_LINEAR_ATTENTION_GATE, 1},
      {ORT_OP_GATED_DELTA_NET, 1},  {ORT_OP_VARLEN_CONV, 1},
  };
  op_set* set = &g_sets[g_set_count];
  set->api_version = api_version;
  for (size_t i = 0; i < OP_COUNT; i++) init_op(&set->ops[i], list[i].kind, list[i].contrib, api, api_version);
  OrtCustomOpDomain* contrib = NULL;
  OrtCustomOpDomain* onnx = NULL;
  OrtStatus* st = api->CreateCustomOpDomain("com.microsoft", &contrib);
  if (!st) st = api->CreateCustomOpDomain("", &onnx);
  for (size_t i = 0; i < OP_COUNT && !st; i++)
    st = api->CustomOpDomain_Add(list[i].contrib ? contrib : onnx, &set->ops[i].base);
  if (st) {
    if (contrib) api->ReleaseCustomOpDomain(contrib);
    if (onnx) api->ReleaseCustomOpDomain(onnx);
    return st;
  }
  set->contrib = contrib;
  set->onnx = onnx;
  g_set_count++;
  *out = set;
  return NULL;
}

/* The runtime's C API version from its version string: ONNX Runtime 1.N has C API version N.
 * 0 when the string says otherwise. */
static uint32_t runtime_api_version(const OrtApiBase* base) {
  const char* v = base->GetVersionString ? base->GetVersionString() : NULL;
  unsigned major = 0, minor = 0;
  if (!v || sscanf(v, "%u.%u", &major, &minor) != 2 || major != 1) return 0;
  return minor;
}

/* The table to use: the header's version, or the runtime's when that is older (its table then
 * lacks the newer entries), at most LINATTN_ORT_API_VERSION when that environment variable is set
 * (to run the older-runtime path on a newer ONNX Runtime), at least LINATTN_ORT_MIN_API. Asking
 * GetApi for the runtime's own version first avoids the message an older ORT prints for every
 * version it does not have; when the version string cannot be read, lower versions are asked
 * one by one. */
static const OrtApi* negotiate_api(const OrtApiBase* base, uint32_t* version) {
  uint32_t want = ORT_API_VERSION;
  const uint32_t runtime = runtime_api_version(base);
  if (runtime >= LINATTN_ORT_MIN_API && runtime < want) want = runtime;
  const char* cap = getenv("LINATTN_ORT_API_VERSION");
  if (cap && *cap) {
    char* end = NULL;
    const unsigned long c = strtoul(cap, &end, 10);
    if (*end == 0 && c < want) want = (uint32_t)c;
  }
  for (uint32_t v = want; v >= LINATTN_ORT_MIN_API; v--) {
    const OrtApi* api = base->GetApi(v);
    if (api) {
      *version = v;
      return api;
    }
  }
  return NULL;
}

/* Which domains to register, from the session config entry "linattn.domains" (default "all").
 *
 * Why a choice: ORT gives a model that does not import "com.microsoft" the highest version any
 * registry knows for that domain, and a custom "com.microsoft" domain is registered for versions
 * 1..1000. Such a model then finds no schema for the com.microsoft nodes that ORT's own graph
 * fusions insert (QuickGelu for x*sigmoid(x), ...) and fails to load. Models that import
 * com.microsoft are unaffected, so an opset-27 model without com.microsoft nodes should be run
 * with "ai.onnx". */
#define DOMAINS_CONFIG_KEY "linattn.domains"

static OrtStatus* requested_domains(const OrtApi* api, const OrtSessionOptions* options, int* contrib, int* onnx) {
  *contrib = *onnx = 1;
  int has = 0;
  OrtStatus* st = api->HasSessionConfigEntry(options, DOMAINS_CONFIG_KEY, &has);
  if (st || !has) {
    if (st) api->ReleaseStatus(st);
    return NULL;
  }
  char value[128];
  size_t size = sizeof value;
  if ((st = api->GetSessionConfigEntry(options, DOMAINS_CONFIG_KEY, value, &size)))
    return st;
  *contrib = *onnx = 0;
  /* a comma-separated list of: all, ai.onnx (or onnx), com.microsoft */
  char* save = NULL;
  for (char* tok = strtok_r(value, ", ", &save); tok; tok = strtok_r(NULL, ", ", &save)) {
    if (!strcmp(tok, "all")) {
      *contrib = *onnx = 1;
    } else if (!strcmp(tok, "ai.onnx") || !strcmp(tok, "onnx")) {
      *onnx = 1;
    } else if (!strcmp(tok, "com.microsoft")) {
      *contrib = 1;
    } else {
      return api->CreateStatus(ORT_INVALID_ARGUMENT,
                               "liblinattn_ort: session config entry " DOMAINS_CONFIG_KEY
                               " must list all, ai.onnx or com.microsoft");
    }
  }
  if (!*contrib && !*onnx)
    return api->CreateStatus(ORT_INVALID_ARGUMENT,
                             "liblinattn_ort: session config entry " DOMAINS_CONFIG_KEY " names no domain");
  return NULL;
}

__attribute__((visibility("default"))) OrtStatus* ORT_API_CALL RegisterCustomOps(OrtSessionOptions* options,
                                                                                 const OrtApiBase* api_base) {
  if (!api_base) return NULL;
  uint32_t version = 0;
  const OrtApi* api = negotiate_api(api_base, &version);
  if (!api) {
    /* CreateStatus is the first entry of every API version's table. */
    const OrtApi* v1 = api_base->GetApi(1);
    return v1 ? v1->CreateStatus(ORT_FAIL, "liblinattn_ort needs ONNX Runtime with C API version >= 21 (1.21+)")
              : NULL;
  }
  pthread_mutex_lock(&g_lock);
  if (!linattn_ort_api) linattn_ort_api = api;
  const op_set* set = NULL;
  OrtStatus* st = op_set_for(api, version, &set);
  pthread_mutex_unlock(&g_lock);
  if (st) return st;
  int contrib = 1, onnx = 1;
  if ((st = requested_domains(api, options, &contrib, &onnx))) return st;
  if (contrib && (st = api->AddCustomOpDomain(options, set->contrib))) return st;
  if (onnx && (st = api->AddCustomOpDomain(options, set->onnx))) return st;
  return NULL;
}
