/*
 * ONNX Runtime custom-op library: kernels (attribute parsing at session creation, Compute).
 *
 * Compute maps ORT's tensors onto linattn descriptors without copying and calls linattn. Each
 * kernel owns a linattn context (made once, at session creation: making one costs tens of
 * microseconds, mostly CPU feature detection) whose parallel regions run on ORT's intra-op
 * thread pool through KernelContext_ParallelFor, so the session's intra_op_num_threads governs
 * linattn as well (with one intra-op thread ORT runs every task on the calling thread). linattn
 * calls the host parallel-for on the thread that called it, so the OrtKernelContext of the
 * running Compute reaches it through a thread-local variable.
 */
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "linattn_ort.h"

#define KERNEL_MAX_OUTPUTS 3
#define KERNEL_MAX_INPUTS 11 /* GatedDeltaNet's */
#define VALUE_MAX_RANK 16

typedef struct ort_tensor {
  void* data;
  linattn_dtype dtype;
  ONNXTensorElementDataType onnx_type;
  size_t rank;
  int64_t dims[VALUE_MAX_RANK];
} ort_tensor;

/* linattn's memory hooks (ort_alloc) keep the last block freed for the next request it fits:
 * a decode-sized call then reuses its workspace instead of a round trip through ORT's arena,
 * whose lock and bin search cost a visible part of a decode node. One slot, taken and given
 * back by atomic exchange, so concurrent Compute calls of one kernel stay safe (the slower one
 * allocates). The block is freed with the kernel; the arena would have kept it anyway. */
typedef struct ort_block_cache {
  OrtAllocator* allocator;
  void* _Atomic block; /* an aligned block of ort_alloc, or NULL */
} ort_block_cache;

typedef struct ort_kernel {
  const ort_op* op;
  OrtAllocator* allocator;  /* the session's CPU allocator (arena): context and workspaces */
  ort_block_cache blocks;   /* the hooks' user data: allocator plus the last freed block */
  linattn_context* context; /* parallel regions on ORT's pool (see ort_parallel_for) */
  linattn_linear_attention_desc la;
  linattn_causal_conv_desc conv;
  linattn_gated_rms_norm_desc rms_norm;
  linattn_gated_delta_net_desc gdn;
  linattn_varlen_conv_desc varlen;
  int64_t conv_state_length; /* com.microsoft state_length attribute (0 = (k - 1) * dilation) */
  /* The node's outputs: their count and element types are fixed for the session, so they are
   * read once at creation rather than asked of ORT on every call (UNDEFINED: ask when run). */
  size_t num_outputs;
  ONNXTensorElementDataType output_types[KERNEL_MAX_OUTPUTS];
  size_t num_inputs; /* the node's input count: KernelContext_GetInputCount counts the same input defs */
  /* The node's input element types, fixed for the session like the outputs' (UNDEFINED: ask
   * when run, as for a type ORT cannot say or one linattn does not take, which is then refused
   * by name). */
  ONNXTensorElementDataType input_types[KERNEL_MAX_INPUTS];
  /* Float inputs that are constant initializers (weights, a_log, dt_bias, scales): the same
   * tensor on every call, read once at creation. */
  int input_is_constant[KERNEL_MAX_INPUTS];
  ort_tensor constant_inputs[KERNEL_MAX_INPUTS];
  /* LinearAttentionGate's lean path (gate_lean): set at creation when everything but a's and b's
   * shapes is fixed for the session (see gate_lean_init); gate_H is dt_bias's length. */
  int gate_lean;
  linattn_dtype gate_dtype;
  int64_t gate_H;
} ort_kernel;

static OrtStatus* read_value(const ort_op* op, const OrtValue* value, const char* name,
                             ONNXTensorElementDataType type, ort_tensor* t);
static int64_t numel(const ort_tensor* t);

/* ------------------------------------------------------------------ attributes */

/* Every attribute is read with its type checked: one of another type is an error in ONNX
 * Runtime's own wording (its schema check for the com.microsoft ops says the same), never a
 * silent default. ORT's typed getters fail on a missing attribute and on one of another type
 * alike, so the actual type is found by asking for each. */
typedef enum attr_type { ATTR_INT, ATTR_FLOAT, ATTR_STRING } attr_type;
static const char* const attr_type_names[3] = {"INT", "FLOAT", "STRING"};

static int attr_is(const OrtApi* api, const OrtKernelInfo* info, const char* name, attr_type type) {
  int64_t i;
  float f;
  size_t n = 0;
  OrtStatus* st = type == ATTR_INT     ? api->KernelInfoGetAttribute_int64(info, name, &i)
                  : type == ATTR_FLOAT ? api->KernelInfoGetAttribute_float(info, name, &f)
                                       : api->KernelInfoGetAttribute_string(info, name, NULL, &n);
  if (!st) return 1;
  api->ReleaseStatus(st);
  return 0;
}

/* The type name of a set attribute that is not a scalar INT, FLOAT or STRING, or NULL when the
 * node does not set `name` (ORT's list getters read the list of any attribute). */
static const char* attr_list_type(const OrtApi* api, const OrtKernelInfo* info, const char* name) {
  size_t ints = 0, floats = 0;
  OrtStatus* st = api->KernelInfoGetAttributeArray_int64(info, name, NULL, &ints);
  if (st) {
    api->ReleaseStatus(st);
    return NULL;
  }
  if ((st = api->KernelInfoGetAttributeArray_float(info, name, NULL, &floats))) api->ReleaseStatus(st);
  return ints ? "INTS" : floats ? "FLOATS" : "UNDEFINED";
}

/* NULL when `name` is absent (*given = 0) or of type `type` (*given = 1); else the error. */
static OrtStatus* attr_check(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, const char* name,
                             attr_type type, int* given) {
  *given = attr_is(api, info, name, type);
  if (*given) return NULL;
  const char* actual = NULL;
  for (int t = ATTR_INT; t <= ATTR_STRING && !actual; t++)
    if (t != (int)type && attr_is(api, info, name, (attr_type)t)) actual = attr_type_names[t];
  if (!actual) actual = attr_list_type(api, info, name);
  if (!actual) return NULL;
  char node[128] = "";
  size_t size = sizeof node;
  OrtStatus* st = api->KernelInfo_GetNodeName(info, node, &size);
  if (st) {
    api->ReleaseStatus(st);
    node[0] = 0;
  }
  return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: Mismatched attribute type in '%s : %s'. Expected: '%s', actual: '%s'",
                           op->label, node, name, attr_type_names[type], actual);
}

/* An INT attribute; `def` when the node does not set it (given, when not NULL, says which). */
static OrtStatus* attr_int(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, const char* name,
                           int64_t def, int64_t* value, int* given) {
  int found = 0;
  OrtStatus* st = attr_check(op, api, info, name, ATTR_INT, &found);
  *value = def;
  if (given) *given = found;
  return st ? st : found ? api->KernelInfoGetAttribute_int64(info, name, value) : NULL;
}

static OrtStatus* attr_float(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, const char* name,
                             float def, float* value) {
  int found = 0;
  OrtStatus* st = attr_check(op, api, info, name, ATTR_FLOAT, &found);
  *value = def;
  return st ? st : found ? api->KernelInfoGetAttribute_float(info, name, value) : NULL;
}

/* A STRING attribute copied into buf (the default when absent); a NUL byte inside it is an error,
 * not the end of the value. */
static OrtStatus* attr_string(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, const char* name,
                              const char* def, char* buf, size_t cap) {
  int found = 0;
  OrtStatus* st = attr_check(op, api, info, name, ATTR_STRING, &found);
  if (st) return st;
  if (!found) {
    strncpy(buf, def, cap - 1);
    buf[cap - 1] = 0;
    return NULL;
  }
  size_t size = 0;
  if ((st = api->KernelInfoGetAttribute_string(info, name, NULL, &size))) return st;
  if (size > cap)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute %s is too long (%zu bytes)", op->label, name, size);
  size = cap;
  if ((st = api->KernelInfoGetAttribute_string(info, name, buf, &size))) return st;
  if (strlen(buf) + 1 != size)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute %s contains a NUL byte", op->label, name);
  return NULL;
}

/* The library's name parsers as one type for attr_enum */
typedef int (*enum_parse_fn)(const char* name);
static int parse_update_rule(const char* name) { return (int)linattn_update_rule_from_string(name); }
static int parse_activation(const char* name) { return (int)linattn_activation_from_string(name); }
static int parse_gdn_gate(const char* name) { return (int)linattn_gdn_gate_from_string(name); }
static int parse_gdn_beta(const char* name) { return (int)linattn_gdn_beta_from_string(name); }

/* A string attribute naming an enum value (`def` when absent): parse gives `invalid` for a name
 * it does not know, which is reported with the accepted names `choices`. */
static OrtStatus* attr_enum(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, const char* name,
                            const char* def, enum_parse_fn parse, int invalid, const char* choices, int* value) {
  char buf[64];
  OrtStatus* st = attr_string(op, api, info, name, def, buf, sizeof buf);
  if (st) return st;
  *value = parse(buf);
  if (*value == invalid)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute %s '%s' is not one of %s", op->label, name, buf,
                             choices);
  return NULL;
}

#define UPDATE_RULES "linear, gated, delta, gated_delta"
#define CONV_ACTIVATIONS "none, silu, swish"

static OrtStatus* create_la(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  OrtStatus* st;
  int rule, has_q = 0, has_kv = 0;
  linattn_linear_attention_desc* d = &k->la;
  linattn_linear_attention_desc_init(d);
  if ((st = attr_enum(op, api, info, "update_rule", "gated_delta", parse_update_rule, LINATTN_UPDATE_INVALID,
                      UPDATE_RULES, &rule)))
    return st;
  d->update_rule = (linattn_update_rule)rule;
  if ((st = attr_int(op, api, info, "q_num_heads", 0, &d->q_num_heads, &has_q)) ||
      (st = attr_int(op, api, info, "kv_num_heads", 0, &d->kv_num_heads, &has_kv)) ||
      (st = attr_float(op, api, info, "scale", 0.0f, &d->scale)) ||
      (st = attr_int(op, api, info, "chunk_size", 64, &d->chunk_size, NULL)))
    return st;
  if (!has_q || !has_kv)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute %s is required", op->label,
                             has_q ? "kv_num_heads" : "q_num_heads");
  if (op->contrib) {
    int64_t window = 0;
    d->flags = LINATTN_LA_ORT_CONTRIB;
    if ((st = attr_int(op, api, info, "state_window", 0, &window, NULL))) return st;
    if ((st = linattn_ort_check_state_window(op, window))) return st;
    d->state_window = window;
  }
  return NULL;
}

static OrtStatus* not_implemented_attr(const ort_op* op, const char* name, long long value, const char* why) {
  return linattn_ort_error(ORT_NOT_IMPLEMENTED, "%s: attribute %s=%lld is not implemented by linattn (%s)", op->label,
                           name, value, why);
}

/* com.microsoft state_length: 0 or exactly (k - 1) * dilation (state_len, from the weight). */
static OrtStatus* check_state_length(const ort_op* op, int64_t attr, int64_t state_len) {
  if (attr == 0 || attr == state_len) return NULL;
  return not_implemented_attr(op, "state_length", attr,
                              "the state must hold exactly (k - 1) * dilation positions (CUDA-only override)");
}

/* The com.microsoft conv attributes (all INT). */
typedef struct conv_contrib_attrs {
  int64_t ndim, dilation, channels_last, window, capacity, state_cl, state_len, in_offset, in_channels;
} conv_contrib_attrs;

static OrtStatus* read_conv_contrib_attrs(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info,
                                          conv_contrib_attrs* a) {
  const struct { const char* name; int64_t def; int64_t* value; } ints[] = {
      {"ndim", 1, &a->ndim}, {"dilation", 1, &a->dilation}, {"channels_last", 0, &a->channels_last},
      {"state_window", 0, &a->window}, {"state_update_capacity", 0, &a->capacity},
      {"state_channels_last", -1, &a->state_cl}, {"state_length", 0, &a->state_len},
      {"input_channel_offset", 0, &a->in_offset}, {"input_channels", 0, &a->in_channels}};
  OrtStatus* st;
  for (size_t i = 0; i < sizeof ints / sizeof ints[0]; i++)
    if ((st = attr_int(op, api, info, ints[i].name, ints[i].def, ints[i].value, NULL))) return st;
  return NULL;
}

static OrtStatus* check_conv_contrib_attrs(const ort_op* op, const conv_contrib_attrs* a) {
  OrtStatus* st;
  if (a->ndim < 1 || a->ndim > 3)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute ndim must be 1, 2 or 3, got %lld", op->label,
                             (long long)a->ndim);
  if (a->ndim != 1) return not_implemented_attr(op, "ndim", a->ndim, "only 1-D causal convolution");
  if (a->dilation < 1)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute dilation must be >= 1, got %lld", op->label,
                             (long long)a->dilation);
  if (a->channels_last != 0 && a->channels_last != 1)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute channels_last must be 0 or 1, got %lld",
                             op->label, (long long)a->channels_last);
  if ((st = linattn_ort_check_state_window(op, a->window))) return st;
  if (a->capacity != 0) return not_implemented_attr(op, "state_update_capacity", a->capacity, "CUDA-only extension");
  if (a->in_offset != 0) return not_implemented_attr(op, "input_channel_offset", a->in_offset, "CUDA-only extension");
  if (a->in_channels != 0) return not_implemented_attr(op, "input_channels", a->in_channels, "CUDA-only extension");
  if (a->state_cl != -1 && a->state_cl != a->channels_last)
    return not_implemented_attr(op, "state_channels_last", a->state_cl,
                                "the state layout must follow channels_last (CUDA-only override)");
  if (a->state_len < 0)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute state_length must be >= 0, got %lld", op->label,
                             (long long)a->state_len);
  return NULL;
}

/* state_length against the weight's shape when the model gives it (else Compute checks it). */
static OrtStatus* check_state_length_at_creation(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info,
                                                 const ort_kernel* k) {
  if (k->conv_state_length == 0) return NULL;
  OrtTypeInfo* type = NULL;
  OrtStatus* st = api->KernelInfo_GetInputTypeInfo(info, 1, &type);
  if (st) {
    api->ReleaseStatus(st); /* no static type: checked when run */
    return NULL;
  }
  const OrtTensorTypeAndShapeInfo* shape = NULL; /* owned by type */
  size_t rank = 0;
  int64_t dims[3] = {-1, -1, -1};
  if (!(st = api->CastTypeInfoToTensorInfo(type, &shape)) && shape && !(st = api->GetDimensionsCount(shape, &rank)) &&
      rank == 3)
    st = api->GetDimensions(shape, dims, 3);
  api->ReleaseTypeInfo(type);
  if (st) {
    api->ReleaseStatus(st);
    return NULL;
  }
  int64_t len = -1;
  if (rank == 3 && dims[2] >= 0 && (st = linattn_ort_conv_state_length(op, &k->conv, dims[2], &len))) return st;
  return len >= 0 ? check_state_length(op, k->conv_state_length, len) : NULL;
}

static OrtStatus* create_conv(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  OrtStatus* st;
  int act;
  linattn_causal_conv_desc_init(&k->conv);
  if ((st = attr_enum(op, api, info, "activation", "none", parse_activation, LINATTN_ACTIVATION_INVALID,
                      CONV_ACTIVATIONS, &act)))
    return st;
  k->conv.activation = (linattn_activation)act;
  if (!op->contrib) return NULL;
  conv_contrib_attrs a;
  if ((st = read_conv_contrib_attrs(op, api, info, &a)) || (st = check_conv_contrib_attrs(op, &a))) return st;
  size_t outputs = 2;
  st = api->KernelInfo_GetOutputCount(info, &outputs);
  if (st) {
    api->ReleaseStatus(st);
    outputs = 2;
  }
  if (outputs > 2)
    return linattn_ort_error(ORT_NOT_IMPLEMENTED,
                             "%s: output state_update (CUDA-only extension) is not produced by linattn", op->label);
  k->conv.dilation = a.dilation;
  k->conv.state_window = a.window;
  k->conv.channels_last = (int32_t)a.channels_last;
  k->conv_state_length = a.state_len;
  return check_state_length_at_creation(op, api, info, k);
}

static OrtStatus* create_rms_norm(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  OrtStatus* st;
  char act[64];
  linattn_gated_rms_norm_desc_init(&k->rms_norm);
  if ((st = attr_string(op, api, info, "activation", "silu", act, sizeof act))) return st;
  k->rms_norm.activation = linattn_gate_activation_from_string(act);
  if (k->rms_norm.activation == LINATTN_GATE_INVALID)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: activation must be one of: silu, swish, sigmoid (got '%s')",
                             op->label, act);
  if ((st = attr_float(op, api, info, "epsilon", 1e-5f, &k->rms_norm.epsilon))) return st;
  if (!(k->rms_norm.epsilon >= 0.0f))
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute epsilon must be >= 0, got %g", op->label,
                             (double)k->rms_norm.epsilon);
  return NULL;
}

/* com.microsoft GatedDeltaNet: every attribute of the schema, typed as ORT's schema types them. */
static OrtStatus* create_gdn(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  OrtStatus* st;
  int rule, gate, beta;
  int64_t l2 = 0;
  linattn_gated_delta_net_desc* d = &k->gdn;
  linattn_gated_delta_net_desc_init(d);
  if ((st = attr_enum(op, api, info, "update_rule", "gated_delta", parse_update_rule, LINATTN_UPDATE_INVALID,
                      UPDATE_RULES, &rule)) ||
      (st = attr_enum(op, api, info, "gate_activation", "none", parse_gdn_gate, LINATTN_GDN_GATE_INVALID,
                      "none, softplus, qwen, sigmoid, kda", &gate)) ||
      (st = attr_enum(op, api, info, "beta_activation", "none", parse_gdn_beta, LINATTN_GDN_BETA_INVALID,
                      "none, sigmoid", &beta)) ||
      (st = attr_int(op, api, info, "qk_l2_norm", 0, &l2, NULL)) ||
      (st = attr_float(op, api, info, "scale", 0.0f, &d->scale)) ||
      (st = attr_float(op, api, info, "gate_lower_bound", -5.0f, &d->gate_lower_bound)) ||
      (st = attr_int(op, api, info, "state_update_capacity", 0, &d->state_update_capacity, NULL)) ||
      (st = attr_int(op, api, info, "chunk_size", 64, &d->chunk_size, NULL)))
    return st;
  d->update_rule = (linattn_update_rule)rule;
  d->gate_activation = (linattn_gdn_gate)gate;
  d->beta_activation = (linattn_gdn_beta)beta;
  if (l2 != 0 && l2 != 1)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute qk_l2_norm must be 0 or 1, got %lld", op->label,
                             (long long)l2);
  d->qk_l2_norm = (int32_t)l2;
  if (d->state_update_capacity < 0 || d->state_update_capacity > LINATTN_GDN_MAX_CAPTURE)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute state_update_capacity must be in [0, %d], got %lld",
                             op->label, LINATTN_GDN_MAX_CAPTURE, (long long)d->state_update_capacity);
  return NULL;
}

/* com.microsoft VarlenCausalConvWithState: the static-weight mode (the dynamic grouped mode's
 * delta_offset and group_size are read and checked for their type only: its inputs are refused). */
static OrtStatus* create_varlen_conv(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  OrtStatus* st;
  int act;
  int64_t delta_offset = 0, group_size = 1;
  linattn_varlen_conv_desc* d = &k->varlen;
  linattn_varlen_conv_desc_init(d);
  if ((st = attr_enum(op, api, info, "activation", "none", parse_activation, LINATTN_ACTIVATION_INVALID,
                      CONV_ACTIVATIONS, &act)) ||
      (st = attr_int(op, api, info, "dilation", 1, &d->dilation, NULL)) ||
      (st = attr_int(op, api, info, "state_update_capacity", 0, &d->state_update_capacity, NULL)) ||
      (st = attr_int(op, api, info, "delta_offset", 0, &delta_offset, NULL)) ||
      (st = attr_int(op, api, info, "group_size", 1, &group_size, NULL)))
    return st;
  d->activation = (linattn_activation)act;
  if (d->dilation < 1)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute dilation must be >= 1, got %lld", op->label,
                             (long long)d->dilation);
  if (d->state_update_capacity < 0 || d->state_update_capacity > 8)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute state_update_capacity must be in [0, 8], got %lld",
                             op->label, (long long)d->state_update_capacity);
  if (group_size < 1)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: attribute group_size must be >= 1, got %lld", op->label,
                             (long long)group_size);
  return NULL;
}

/* ------------------------------------------------------------------ threads */

/* The OrtKernelContext of the Compute running on this thread (NULL outside Compute). */
static _Thread_local OrtKernelContext* tls_kernel_context = NULL;

typedef struct ort_task {
  linattn_task_fn task;
  void* arg;
} ort_task;

static void run_ort_task(void* data, size_t index) {
  const ort_task* t = (const ort_task*)data;
  t->task(t->arg, index);
}

/* linattn's host parallel-for: ORT's intra-op pool of the running Compute. */
static void ort_parallel_for(void* host_data, linattn_task_fn task, void* task_arg, size_t num_tasks) {
  (void)host_data;
  const OrtApi* api = linattn_ort_api;
  OrtKernelContext* ctx = tls_kernel_context;
  ort_task t = {task, task_arg};
  OrtStatus* st = ctx ? api->KernelContext_ParallelFor(ctx, run_ort_task, num_tasks, 0, &t)
                      : api->CreateStatus(ORT_FAIL, "no kernel context");
  if (st) {
    /* ORT refused before running anything (kernel-context API unavailable): run serially. */
    api->ReleaseStatus(st);
    for (size_t i = 0; i < num_tasks; i++) task(task_arg, i);
  }
}

/* linattn's memory hooks on ORT's allocator. A LinearAttention call's workspace is hundreds of
 * KiB even at decode; from malloc a block that size may be a fresh mmap with its page faults
 * on every call (glibc's mmap threshold decides), from ORT's arena it is a reused block. The
 * hooks over-allocate to honour any alignment (the arena promises only its own); the block
 * ORT gave and the usable size are kept just below the aligned pointer. */
typedef struct ort_block_header {
  void* raw;
  size_t usable; /* bytes from the aligned pointer to the end of the block */
  size_t alignment;
} ort_block_header;

static ort_block_header* block_header(void* p) { return (ort_block_header*)p - 1; }

static void ort_release_block(ort_block_cache* c, void* p) {
  if (p) c->allocator->Free(c->allocator, block_header(p)->raw);
}

static void* ort_alloc(void* user, size_t size, size_t alignment) {
  ort_block_cache* c = (ort_block_cache*)user;
  void* cached = atomic_exchange(&c->block, NULL);
  if (cached) {
    const ort_block_header* h = block_header(cached);
    if (h->usable >= size && h->alignment >= alignment) return cached;
    ort_release_block(c, cached);
  }
  if (alignment < _Alignof(ort_block_header)) alignment = _Alignof(ort_block_header);
  size_t total;
  if (__builtin_add_overflow(size, alignment + sizeof(ort_block_header), &total)) return NULL;
  char* raw = (char*)c->allocator->Alloc(c->allocator, total);
  if (!raw) return NULL;
  const uintptr_t p = ((uintptr_t)raw + sizeof(ort_block_header) + alignment - 1) & ~(uintptr_t)(alignment - 1);
  ort_block_header* h = block_header((void*)p);
  h->raw = raw;
  h->usable = (size_t)(raw + total - (char*)p);
  h->alignment = alignment;
  return (void*)p;
}

static void ort_free(void* user, void* ptr) {
  ort_block_cache* c = (ort_block_cache*)user;
  if (!ptr) return;
  ort_release_block(c, atomic_exchange(&c->block, ptr)); /* keep the newest, free the one it replaces */
}

static OrtStatus* make_context(const ort_op* op, const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  OrtStatus* st = api->KernelInfoGetAllocator(info, OrtMemTypeDefault, &k->allocator);
  if (st) return st;
  linattn_context_options o;
  linattn_context_options_init(&o);
  o.parallel_for = ort_parallel_for;
  o.num_threads = 0; /* task count; ORT's pool decides how many run at once */
  o.alloc = ort_alloc;
  o.free = ort_free;
  k->blocks.allocator = k->allocator;
  atomic_init(&k->blocks.block, NULL);
  o.alloc_user = &k->blocks;
  linattn_status s = linattn_context_create(&o, &k->context);
  return s == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, s);
}

/* The element type of input or output `index` as the session typed it; UNDEFINED when ORT
 * cannot say or linattn does not take it. */
static ONNXTensorElementDataType static_type(const OrtApi* api, const OrtKernelInfo* info, int input, size_t index) {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  OrtTypeInfo* ti = NULL;
  OrtStatus* st = input ? api->KernelInfo_GetInputTypeInfo(info, index, &ti)
                        : api->KernelInfo_GetOutputTypeInfo(info, index, &ti);
  const OrtTensorTypeAndShapeInfo* tensor = NULL; /* owned by ti */
  if (!st && !(st = api->CastTypeInfoToTensorInfo(ti, &tensor)) && tensor) st = api->GetTensorElementType(tensor, &type);
  if (st) {
    api->ReleaseStatus(st);
    type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  }
  if (ti) api->ReleaseTypeInfo(ti);
  return linattn_ort_dtype(type) == LINATTN_DTYPE_INVALID ? ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED : type;
}

static OrtStatus* read_static_types(const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  OrtStatus* st = api->KernelInfo_GetOutputCount(info, &k->num_outputs);
  if (st || (st = api->KernelInfo_GetInputCount(info, &k->num_inputs))) return st;
  const size_t inputs = k->num_inputs;
  for (size_t i = 0; i < KERNEL_MAX_OUTPUTS; i++)
    k->output_types[i] = i < k->num_outputs ? static_type(api, info, 0, i) : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  for (size_t i = 0; i < KERNEL_MAX_INPUTS; i++)
    k->input_types[i] = i < inputs ? static_type(api, info, 1, i) : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  return NULL;
}

/* Caches the float inputs that are constant initializers (int32 ones are read when run). */
static void read_constant_inputs(const OrtApi* api, const OrtKernelInfo* info, ort_kernel* k) {
  size_t count = 0;
  OrtStatus* st = api->KernelInfo_GetInputCount(info, &count);
  if (st) {
    api->ReleaseStatus(st);
    return;
  }
  for (size_t i = 0; i < count && i < KERNEL_MAX_INPUTS; i++) {
    int constant = 0;
    const OrtValue* v = NULL;
    if ((st = api->KernelInfoGetConstantInput_tensor(info, i, &constant, &v)) ||
        (constant && v && (st = read_value(k->op, v, "constant input", ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED,
                                           &k->constant_inputs[i])))) {
      api->ReleaseStatus(st); /* not a float tensor, or ORT cannot say: read when run */
      continue;
    }
    k->input_is_constant[i] = constant && v;
  }
}

/* LinearAttentionGate's lean path is for a session that fixes a's element type (a float type
 * linattn takes), b's and the outputs' as a's, dt_bias and decay_scale as constant float32 vectors
 * of one length H (as exported), and a C API with the in-place shape getter. */
static void gate_lean_init(ort_kernel* k) {
  const ONNXTensorElementDataType t = k->input_types[0];
  const ort_tensor *bias = &k->constant_inputs[1], *scale = &k->constant_inputs[2];
  k->gate_lean = 0;
  if (k->op->kind != ORT_OP_LINEAR_ATTENTION_GATE || k->op->base.version < LINATTN_ORT_SHAPE_REF_API) return;
  if (t == ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED || k->num_inputs < 3 || k->num_outputs < 1) return;
  if (k->num_inputs > 3 && k->input_types[3] != t) return;
  if (k->output_types[0] != t || (k->num_outputs > 1 && k->output_types[1] != t)) return;
  if (!k->input_is_constant[1] || !k->input_is_constant[2] || bias->dtype != LINATTN_DTYPE_F32 ||
      scale->dtype != LINATTN_DTYPE_F32)
    return;
  const int64_t H = numel(bias);
  if (H < 1 || numel(scale) != H) return;
  k->gate_dtype = linattn_ort_dtype(t);
  k->gate_H = H;
  k->gate_lean = 1;
}

static void free_kernel(ort_kernel* k) {
  linattn_context_destroy(k->context);
  if (k->allocator) ort_release_block(&k->blocks, atomic_exchange(&k->blocks.block, NULL));
  if (k->allocator) linattn_ort_api->ReleaseAllocator(k->allocator);
  free(k);
}

OrtStatus* ORT_API_CALL linattn_ort_create_kernel(const OrtCustomOp* custom_op, const OrtApi* api,
                                                  const OrtKernelInfo* info, void** kernel) {
  const ort_op* op = (const ort_op*)custom_op;
  *kernel = NULL;
  ort_kernel* k = (ort_kernel*)calloc(1, sizeof *k);
  if (!k) return linattn_ort_error(ORT_RUNTIME_EXCEPTION, "%s: out of memory", op->label);
  k->op = op;
  OrtStatus* st = NULL;
  switch (op->kind) {
    case ORT_OP_LINEAR_ATTENTION: st = create_la(op, api, info, k); break;
    case ORT_OP_CAUSAL_CONV: st = create_conv(op, api, info, k); break;
    case ORT_OP_GATED_RMS_NORM: st = create_rms_norm(op, api, info, k); break;
    case ORT_OP_GATED_DELTA_NET: st = create_gdn(op, api, info, k); break;
    case ORT_OP_VARLEN_CONV: st = create_varlen_conv(op, api, info, k); break;
    default: break; /* LinearAttentionGate has no attributes */
  }
  if (!st) st = read_static_types(api, info, k);
  if (!st) read_constant_inputs(api, info, k);
  if (!st) gate_lean_init(k);
  if (!st) st = make_context(op, api, info, k);
  if (st) {
    free_kernel(k);
    return st;
  }
  *kernel = k;
  return NULL;
}

void ORT_API_CALL linattn_ort_destroy_kernel(void* kernel) {
  ort_kernel* k = (ort_kernel*)kernel;
  if (k) free_kernel(k);
}

/* ------------------------------------------------------------------ tensors */

/* Dims past the rank read as 0, as shape checks that compare a fixed number of them expect. A
 * loop rather than a memset of the struct: the compiler stores whole vectors, where a memset
 * call's start-up costs more than the rest of reading a decode-sized tensor. */
static void clear_dims(ort_tensor* t) {
  for (size_t i = 0; i < VALUE_MAX_RANK; i++) t->dims[i] = 0;
}

/* The element type (asked only when *type is UNDEFINED) and the rank of a tensor value, and its
 * dims when the rank is at most max. From C API version 24 (when the runtime has it) the dims are
 * read in place (GetTensorElementTypeAndShapeDataReference); before that the only way is
 * GetTensorTypeAndShape, which allocates an info object for every query. */
static OrtStatus* value_shape(const ort_op* op, const OrtValue* value, ONNXTensorElementDataType* type, int64_t* dims,
                              size_t max, size_t* rank) {
  const OrtApi* api = op->api;
  *rank = 0;
#if ORT_API_VERSION >= LINATTN_ORT_SHAPE_REF_API
  if (op->base.version >= LINATTN_ORT_SHAPE_REF_API) {
    ONNXTensorElementDataType actual = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
    const int64_t* shape = NULL;
    size_t n = 0;
    OrtStatus* st = api->GetTensorElementTypeAndShapeDataReference(value, &actual, &shape, &n);
    if (st) return st;
    if (*type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED) *type = actual;
    *rank = n;
    if (n <= max)
      for (size_t i = 0; i < n; i++) dims[i] = shape[i];
    return NULL;
  }
#endif
  OrtTensorTypeAndShapeInfo* info = NULL;
  OrtStatus* st = api->GetTensorTypeAndShape(value, &info);
  if (st) return st;
  if ((*type != ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED || !(st = api->GetTensorElementType(info, type))) &&
      !(st = api->GetDimensionsCount(info, rank)) && *rank <= max)
    st = api->GetDimensions(info, dims, *rank);
  api->ReleaseTensorTypeAndShapeInfo(info);
  return st;
}

/* One shape query per tensor (value_shape), its element type asked only when `type` (the
 * session's static type) is UNDEFINED. */
static OrtStatus* read_value(const ort_op* op, const OrtValue* value, const char* name,
                             ONNXTensorElementDataType type, ort_tensor* t) {
  t->data = NULL;
  t->rank = 0;
  t->onnx_type = type;
  clear_dims(t);
  size_t rank = 0;
  OrtStatus* st = value_shape(op, value, &t->onnx_type, t->dims, VALUE_MAX_RANK, &rank);
  if (st) return st;
  if (rank > VALUE_MAX_RANK)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: %s has rank %zu, expected at most 4", op->label, name, rank);
  t->rank = rank;
  t->dtype = linattn_ort_dtype(t->onnx_type);
  if (t->dtype == LINATTN_DTYPE_INVALID)
    return linattn_ort_error(ORT_INVALID_ARGUMENT,
                             "%s: %s has ONNX element type %d; expected float, float16 or bfloat16", op->label, name,
                             (int)t->onnx_type);
  return op->api->GetTensorMutableData((OrtValue*)value, &t->data);
}

/* A packed linattn descriptor of t. With merge_channels, axes 2.. are multiplied into one
 * (channels_last tensors (B, L, d_1, ..., d_n) are (B, L, C) for linattn); with merge_leading
 * the first two axes are (a state window's (W, B) is W * B rows for linattn). */
static OrtStatus* to_linattn(const ort_op* op, const ort_tensor* t, const char* name, int merge_channels,
                             int merge_leading, linattn_tensor* out) {
  int64_t dims[VALUE_MAX_RANK];
  size_t rank = t->rank;
  for (size_t i = 0; i < rank; i++) dims[i] = t->dims[i];
  if (merge_leading && rank >= 2) { /* (W, B, ...) -> (W * B, ...) */
    dims[0] *= dims[1];
    for (size_t i = 2; i < rank; i++) dims[i - 1] = dims[i];
    rank--;
  }
  if (merge_channels && rank > 3) {
    for (size_t i = 3; i < rank; i++) dims[2] *= dims[i]; /* a real tensor's element count fits */
    rank = 3;
  }
  if (rank > LINATTN_MAX_RANK)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: %s has rank %zu, expected at most %d", op->label, name,
                             t->rank, LINATTN_MAX_RANK);
  *out = linattn_make_tensor(t->data, t->dtype, (int32_t)rank, dims);
  return NULL;
}

static ONNXTensorElementDataType input_type(const ort_kernel* k, size_t index) {
  return index < KERNEL_MAX_INPUTS ? k->input_types[index] : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
}

static OrtStatus* get_inputs(const ort_kernel* k, OrtKernelContext* ctx, size_t max, const char* const* names,
                             ort_tensor* tensors, int* present) {
  const OrtApi* api = linattn_ort_api;
  const size_t count = k->num_inputs; /* the node's, as the kernel context would say */
  OrtStatus* st;
  for (size_t i = 0; i < max; i++) {
    present[i] = 0;
    if (i >= count) continue;
    if (i < KERNEL_MAX_INPUTS && k->input_is_constant[i]) {
      tensors[i] = k->constant_inputs[i];
      present[i] = 1;
      continue;
    }
    const OrtValue* v = NULL;
    if ((st = api->KernelContext_GetInput(ctx, i, &v))) return st;
    if (!v) continue; /* absent optional input */
    if ((st = read_value(k->op, v, names[i], input_type(k, i), &tensors[i]))) return st;
    present[i] = 1;
  }
  return NULL;
}

/* Allocates output `index` with the given dims; *present = 0 when the node leaves it unnamed.
 * The dims are the ones just given and the type is the node's, known since creation: only the
 * data pointer is asked of ORT. */
static OrtStatus* get_output(const ort_kernel* k, OrtKernelContext* ctx, size_t index, const char* name,
                             const int64_t* dims, size_t rank, ort_tensor* t, int* present) {
  const OrtApi* api = linattn_ort_api;
  *present = 0;
  if (index >= k->num_outputs) return NULL;
  OrtValue* v = NULL;
  OrtStatus* st = api->KernelContext_GetOutput(ctx, index, dims, rank, &v);
  if (st) return st;
  if (!v) return NULL;
  const ONNXTensorElementDataType type = index < KERNEL_MAX_OUTPUTS ? k->output_types[index]
                                                                    : ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  if (type == ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED || rank > VALUE_MAX_RANK) {
    if ((st = read_value(k->op, v, name, type, t))) return st;
  } else {
    clear_dims(t);
    t->onnx_type = type;
    t->dtype = linattn_ort_dtype(type);
    t->rank = rank;
    memcpy(t->dims, dims, rank * sizeof dims[0]);
    if ((st = api->GetTensorMutableData(v, &t->data))) return st;
  }
  *present = 1;
  return NULL;
}

/* ------------------------------------------------------------------ Compute */

static OrtStatus* compute_la(const ort_kernel* k, OrtKernelContext* ctx) {
  static const char* const names[6] = {"query", "key", "value", "past_state", "decay", "beta"};
  const ort_op* op = k->op;
  ort_tensor in[6];
  int present[6];
  OrtStatus* st = get_inputs(k, ctx, 6, names, in, present);
  if (st) return st;
  for (size_t i = 0; i < 3; i++) {
    if (!present[i]) return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: input %s is required", op->label, names[i]);
    if ((st = linattn_ort_check_la_input_rank(op, i, in[i].rank))) return st;
  }
  int64_t out_dims[3], state_dims[4];
  linattn_status ls =
      linattn_linear_attention_infer_shapes(&k->la, in[0].dims, in[1].dims, in[2].dims, out_dims, state_dims);
  if (ls != LINATTN_SUCCESS) return linattn_ort_from_linattn(op, ls);

  /* a state window (W, B, H_kv, d_k, d_v) is (W * B, H_kv, d_k, d_v) for linattn */
  const int64_t window = k->la.state_window;
  if (window > 0 && present[3] && (st = linattn_ort_check_rank(op, "past_state", in[3].rank, 5, "(state_window, B, kv_num_heads, d_k, d_v)")))
    return st;
  linattn_tensor t[6];
  const linattn_tensor* tp[6];
  for (size_t i = 0; i < 6; i++) {
    tp[i] = NULL;
    if (!present[i]) continue;
    if ((st = to_linattn(op, &in[i], names[i], 0, i == 3 && window > 0, &t[i]))) return st;
    tp[i] = &t[i];
  }
  int64_t window_dims[5] = {window, state_dims[0], state_dims[1], state_dims[2], state_dims[3]};
  ort_tensor out, state;
  int has_out = 0, has_state = 0;
  if ((st = get_output(k, ctx, 0, "output", out_dims, 3, &out, &has_out))) return st;
  if ((st = get_output(k, ctx, 1, "present_state", window > 0 ? window_dims : state_dims, window > 0 ? 5 : 4, &state,
                       &has_state)))
    return st;
  if (!has_out) return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: output is required", op->label);
  linattn_tensor ot, stt;
  if ((st = to_linattn(op, &out, "output", 0, 0, &ot))) return st;
  if (has_state && (st = to_linattn(op, &state, "present_state", 0, window > 0, &stt))) return st;

  ls = linattn_linear_attention(k->context, &k->la, tp[0], tp[1], tp[2], tp[3], tp[4], tp[5], &ot,
                                has_state ? &stt : NULL, NULL, 0);
  return ls == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, ls);
}

static const char* dims_str(const int64_t* dims, size_t rank, char* buf, size_t cap) {
  size_t n = (size_t)snprintf(buf, cap, "(");
  for (size_t i = 0; i < rank && n < cap; i++) n += (size_t)snprintf(buf + n, cap - n, i ? ", %lld" : "%lld", (long long)dims[i]);
  if (n < cap) snprintf(buf + n, cap - n, ")");
  return buf;
}

/* channels_last past_state: (B, (k-1)*dilation, d_1, ..., d_n) with the input's channel axes
 * (linattn sees both with the channel axes merged, which would hide other axes of the same size). */
static OrtStatus* check_channels_last_state(const ort_op* op, const ort_tensor* past, const int64_t* want, size_t rank) {
  int same = past->rank == rank;
  for (size_t i = 0; i < rank && same; i++) same = past->dims[i] == want[i];
  if (same) return NULL;
  char a[160], b[160];
  return linattn_ort_invalid(op, "past_state: expected shape (B, (k-1)*dilation, d_1, ..., d_n) = %s, got %s",
                             dims_str(want, rank, a, sizeof a), dims_str(past->dims, past->rank, b, sizeof b));
}

static OrtStatus* compute_conv(const ort_kernel* k, OrtKernelContext* ctx) {
  const ort_op* op = k->op;
  static const char* const names[4] = {"input", "weight", "bias", "past_state"};
  ort_tensor in[4];
  int present[4];
  OrtStatus* st = get_inputs(k, ctx, 4, names, in, present);
  if (st) return st;
  if (!present[0] || !present[1])
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: inputs input and weight are required", op->label);
  const int cl = k->conv.channels_last;
  const ort_tensor* x = &in[0];
  if ((st = linattn_ort_check_conv_input_rank(op, cl, x->rank))) return st;
  if ((st = linattn_ort_check_rank(op, "weight", in[1].rank, 3, "(C, 1, k)"))) return st;
  const int64_t window = k->conv.state_window; /* states (W, B, ...): linattn takes them as they are */
  if (window > 0 && x->rank > 3) return linattn_ort_conv_window_rank(op, x->rank);

  /* channels_last: (B, L, d_1..d_n) and states (B, S, d_1..d_n) are (B, L, C) for linattn */
  linattn_tensor t[4];
  const linattn_tensor* tp[4] = {NULL, NULL, NULL, NULL};
  for (size_t i = 0; i < 4; i++) {
    if (!present[i]) continue;
    if ((st = to_linattn(op, &in[i], names[i], (i == 0 || (i == 3 && window == 0)) ? cl : 0, 0, &t[i]))) return st;
    tp[i] = &t[i];
  }
  int64_t out3[3], state3[3];
  linattn_status ls = linattn_causal_conv_infer_shapes(&k->conv, t[0].dims, t[1].dims, out3, state3);
  if (ls != LINATTN_SUCCESS) return linattn_ort_from_linattn(op, ls);
  const int64_t state_len = state3[cl ? 1 : 2];
  if ((st = check_state_length(op, k->conv_state_length, state_len))) return st;
  int64_t state_dims[VALUE_MAX_RANK + 1];
  const size_t lead = window > 0 ? 1 : 0;
  state_dims[0] = window;
  memcpy(state_dims + lead, x->dims, x->rank * sizeof state_dims[0]);
  state_dims[lead + (cl ? 1 : 2)] = state_len;
  if (cl && !lead && present[3] && (st = check_channels_last_state(op, &in[3], state_dims, x->rank))) return st;

  ort_tensor out, state;
  int has_out = 0, has_state = 0;
  if ((st = get_output(k, ctx, 0, "output", x->dims, x->rank, &out, &has_out))) return st;
  if ((st = get_output(k, ctx, 1, "present_state", state_dims, x->rank + lead, &state, &has_state))) return st;
  if (!has_out) return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: output is required", op->label);
  linattn_tensor ot, stt;
  if ((st = to_linattn(op, &out, "output", cl, 0, &ot))) return st;
  if (has_state && (st = to_linattn(op, &state, "present_state", lead ? 0 : cl, 0, &stt))) return st;

  ls = linattn_causal_conv_with_state(k->context, &k->conv, tp[0], tp[1], tp[2], tp[3], &ot,
                                                     has_state ? &stt : NULL, NULL, 0);
  return ls == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, ls);
}

/* ------------------------------------------------------------------ gates */

static int64_t numel(const ort_tensor* t) {
  int64_t n = 1;
  for (size_t i = 0; i < t->rank; i++) n *= t->dims[i]; /* a real tensor's element count fits */
  return n;
}

static int same_shape(const ort_tensor* a, const ort_tensor* b) {
  if (a->rank != b->rank) return 0;
  for (size_t i = 0; i < a->rank; i++)
    if (a->dims[i] != b->dims[i]) return 0;
  return 1;
}

/* t as a packed (numel / last, last) matrix, or (numel) when flat: linattn takes rank <= 4 and
 * both ops are rowwise over the last axis. */
static linattn_tensor as_rows(const ort_tensor* t, int flat) {
  const int64_t last = t->rank ? t->dims[t->rank - 1] : 1, n = numel(t);
  int64_t dims[2] = {last ? n / last : 0, last};
  if (flat) dims[0] = n;
  return linattn_make_tensor(t->data, t->dtype, flat ? 1 : 2, dims);
}

/* The gate ops' n inputs: the first three required, the first of rank >= 1. */
static OrtStatus* get_gate_inputs(const ort_kernel* k, OrtKernelContext* ctx, size_t n, const char* const* names,
                                  ort_tensor* in, int* present) {
  const ort_op* op = k->op;
  OrtStatus* st = get_inputs(k, ctx, n, names, in, present);
  if (st) return st;
  if (!present[0] || !present[1] || !present[2])
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: inputs %s, %s and %s are required", op->label, names[0],
                             names[1], names[2]);
  if (in[0].rank < 1) return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: %s must have rank >= 1", op->label, names[0]);
  return NULL;
}

static OrtStatus* compute_rms_norm(const ort_kernel* k, OrtKernelContext* ctx) {
  static const char* const names[3] = {"X", "scale", "gate"};
  const ort_op* op = k->op;
  ort_tensor in[3];
  int present[3];
  OrtStatus* st = get_gate_inputs(k, ctx, 3, names, in, present);
  if (st) return st;
  if (!same_shape(&in[0], &in[2]))
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: gate must have the same shape as X", op->label);
  ort_tensor out;
  int has_out = 0;
  if ((st = get_output(k, ctx, 0, "Y", in[0].dims, in[0].rank, &out, &has_out))) return st;
  if (!has_out) return NULL;
  linattn_tensor x = as_rows(&in[0], 0), scale = as_rows(&in[1], 1), gate = as_rows(&in[2], 0), y = as_rows(&out, 0);
  linattn_status ls = linattn_gated_rms_norm(k->context, &k->rms_norm, &x, &scale, &gate, &y);
  return ls == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, ls);
}

/* LinearAttentionGate's tensors as linattn_linear_attention_gate_packed takes them: a (..., H)
 * with H >= 1, dt_bias and decay_scale of H float32s, b (when beta is asked) and the outputs of
 * a's type (the shapes are a's: checked or allocated so). Otherwise the tensor call, whose
 * messages name what is wrong. */
static int gate_is_packed(const ort_tensor* in, const ort_tensor* decay, const ort_tensor* beta) {
  const int64_t H = in[0].dims[in[0].rank - 1];
  return H >= 1 && in[1].dtype == LINATTN_DTYPE_F32 && in[2].dtype == LINATTN_DTYPE_F32 && numel(&in[1]) == H &&
         numel(&in[2]) == H && decay->dtype == in[0].dtype && decay->rank == in[0].rank &&
         (!beta || (in[3].dtype == in[0].dtype && beta->dtype == in[0].dtype && beta->rank == in[0].rank));
}

/* The lean path of a LinearAttentionGate call (gate_lean): only the C API calls the call needs,
 * the outputs allocated straight from a's shape data. It takes the calls whose a has rank 1..16
 * and last axis gate_H and whose b, when given, has a's shape; any other call (*lean = 0, nothing
 * allocated yet) goes through compute_la_gate's general path, whose messages name what is wrong.
 * After the allocation it fails only where the general path fails the same way. */
static OrtKernelContext* set_kernel_context(OrtKernelContext* ctx);

/* Gates per call above which linattn may run a LinearAttentionGate call as a parallel region
 * (its serial bound, GATES_SERIAL_MAX_ELEMS / 16); at or below it the lean path skips the
 * thread-local kernel context (a larger bound would only run such a call serially, same bits). */
#define GATE_SERIAL_MAX 2048

__attribute__((noinline)) static OrtStatus* compute_la_gate_lean(const ort_kernel* k, OrtKernelContext* ctx,
                                                                 int* lean) {
#if ORT_API_VERSION >= LINATTN_ORT_SHAPE_REF_API
  const OrtApi* api = linattn_ort_api;
  const ort_op* op = k->op;
  const OrtValue *va = NULL, *vb = NULL;
  ONNXTensorElementDataType type;
  const int64_t *ad = NULL, *bd = NULL;
  size_t ar = 0, br = 0;
  OrtStatus* st;
  *lean = 1;
  if ((st = api->KernelContext_GetInput(ctx, 0, &va))) return st;
  if (va && (st = api->GetTensorElementTypeAndShapeDataReference(va, &type, &ad, &ar))) return st;
  if (!va || type != k->input_types[0] || ar < 1 || ar > VALUE_MAX_RANK || ad[ar - 1] != k->gate_H) goto general;
  if (k->num_inputs > 3) {
    if ((st = api->KernelContext_GetInput(ctx, 3, &vb))) return st;
    if (vb && (st = api->GetTensorElementTypeAndShapeDataReference(vb, &type, &bd, &br))) return st;
    if (vb && (type != k->input_types[0] || br != ar)) goto general;
    for (size_t i = 0; vb && i < ar; i++)
      if (bd[i] != ad[i]) goto general;
  }
  OrtValue *vdecay = NULL, *vbeta = NULL;
  if ((st = api->KernelContext_GetOutput(ctx, 0, ad, ar, &vdecay))) return st;
  if (k->num_outputs > 1 && (st = api->KernelContext_GetOutput(ctx, 1, ad, ar, &vbeta))) return st;
  if (vbeta && !vb)
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: The b input is required when the beta output is requested",
                             op->label);
  if (!vdecay) return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: output decay is required", op->label);
  void *a = NULL, *b = NULL, *decay = NULL, *beta = NULL;
  if ((st = api->GetTensorMutableData((OrtValue*)va, &a)) || (st = api->GetTensorMutableData(vdecay, &decay)))
    return st;
  if (vbeta && ((st = api->GetTensorMutableData((OrtValue*)vb, &b)) || (st = api->GetTensorMutableData(vbeta, &beta))))
    return st;
  int64_t rows = 1;
  for (size_t i = 0; i + 1 < ar; i++) rows *= ad[i]; /* a real tensor's element count fits */
  const int parallel = rows > GATE_SERIAL_MAX / k->gate_H;
  OrtKernelContext* outer = parallel ? set_kernel_context(ctx) : NULL;
  const linattn_status ls = linattn_linear_attention_gate_packed(
      k->context, k->gate_dtype, rows, k->gate_H, a, (const float*)k->constant_inputs[1].data,
      (const float*)k->constant_inputs[2].data, b, decay, beta);
  if (parallel) set_kernel_context(outer);
  return ls == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, ls);
general:
#else
  (void)k;
  (void)ctx;
#endif
  *lean = 0;
  return NULL;
}

static OrtStatus* compute_la_gate(const ort_kernel* k, OrtKernelContext* ctx) {
  static const char* const names[4] = {"a", "dt_bias", "decay_scale", "b"};
  const ort_op* op = k->op;
  ort_tensor in[4];
  int present[4];
  OrtStatus* st = get_gate_inputs(k, ctx, 4, names, in, present);
  if (st) return st;
  ort_tensor decay, beta;
  int has_decay = 0, has_beta = 0;
  if ((st = get_output(k, ctx, 0, "decay", in[0].dims, in[0].rank, &decay, &has_decay))) return st;
  if ((st = get_output(k, ctx, 1, "beta", in[0].dims, in[0].rank, &beta, &has_beta))) return st;
  if (has_beta && !present[3])
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: The b input is required when the beta output is requested",
                             op->label);
  if (has_beta && !same_shape(&in[0], &in[3]))
    return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: b must have the same shape as a", op->label);
  if (!has_decay) return linattn_ort_error(ORT_INVALID_ARGUMENT, "%s: output decay is required", op->label);
  linattn_status ls;
  if (gate_is_packed(in, &decay, has_beta ? &beta : NULL)) {
    /* the same call by pointer: a decode node's few gates cost less than six tensor descriptors */
    const int64_t H = in[0].dims[in[0].rank - 1];
    ls = linattn_linear_attention_gate_packed(k->context, in[0].dtype, numel(&in[0]) / H, H, in[0].data,
                                              (const float*)in[1].data, (const float*)in[2].data,
                                              has_beta ? in[3].data : NULL, decay.data, has_beta ? beta.data : NULL);
  } else {
    linattn_tensor a = as_rows(&in[0], 0), bias = as_rows(&in[1], 1), scale = as_rows(&in[2], 1);
    linattn_tensor b = has_beta ? as_rows(&in[3], 0) : a, d = as_rows(&decay, 0),
                   be = has_beta ? as_rows(&beta, 0) : d;
    ls = linattn_linear_attention_gate(k->context, &a, &bias, &scale, has_beta ? &b : NULL, &d, has_beta ? &be : NULL);
  }
  return ls == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, ls);
}

/* ------------------------------------------------------------------ GatedDeltaNet */

enum { GDN_QUERY, GDN_KEY, GDN_VALUE, GDN_CU_SEQLENS, GDN_DECAY, GDN_BETA, GDN_INITIAL_STATE, GDN_A_LOG, GDN_DT_BIAS,
       GDN_CAPTURE_COUNT, GDN_STATE_UPDATE_ACTIVE, GDN_INPUTS };

static int gdn_int_input(size_t i) {
  return i == GDN_CU_SEQLENS || i == GDN_CAPTURE_COUNT || i == GDN_STATE_UPDATE_ACTIVE;
}

/* An int32 rank-1 input (cu_seqlens, capture_count, state_update_active): data and length. */
static OrtStatus* read_int32_vector(const ort_op* op, const OrtValue* value, const char* name, const int32_t** data,
                                    int64_t* length) {
  ONNXTensorElementDataType type = ONNX_TENSOR_ELEMENT_DATA_TYPE_UNDEFINED;
  size_t rank = 0;
  int64_t dims[1] = {0};
  OrtStatus* st = value_shape(op, value, &type, dims, 1, &rank);
  if (st) return st;
  if (type != ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32)
    return linattn_ort_invalid(op, "%s: expected int32, got ONNX element type %d", name, (int)type);
  if (rank != 1) return linattn_ort_invalid(op, "%s: expected rank 1, got rank %zu", name, rank);
  *length = dims[0];
  return op->api->GetTensorMutableData((OrtValue*)value, (void**)data);
}

/* A node's inputs: float tensors, and int32 vectors (ints, int_lengths) where the schema has them. */
typedef struct node_inputs {
  ort_tensor t[GDN_INPUTS];
  int present[GDN_INPUTS];
  const int32_t* ints[GDN_INPUTS];
  int64_t int_lengths[GDN_INPUTS];
} node_inputs;

/* Inputs 0..n-1 of a node into in: absent optional inputs are marked not present; inputs for which
 * is_int(i) holds are read as int32 vectors, the others as tensors. */
static OrtStatus* read_node_inputs(const ort_kernel* k, OrtKernelContext* ctx, const char* const* names, size_t n,
                                   int (*is_int)(size_t), node_inputs* in) {
  const OrtApi* api = linattn_ort_api;
  const size_t count = k->num_inputs;
  OrtStatus* st;
  for (size_t i = 0; i < n; i++) {
    in->present[i] = 0;
    in->ints[i] = NULL;
    in->int_lengths[i] = 0;
    if (i >= count) continue;
    if (i < KERNEL_MAX_INPUTS && k->input_is_constant[i] && !is_int(i)) {
      in->t[i] = k->constant_inputs[i];
      in->present[i] = 1;
      continue;
    }
    const OrtValue* v = NULL;
    if ((st = api->KernelContext_GetInput(ctx, i, &v))) return st;
    if (!v) continue;
    st = is_int(i) ? read_int32_vector(k->op, v, names[i], &in->ints[i], &in->int_lengths[i])
                   : read_value(k->op, v, names[i], input_type(k, i), &in->t[i]);
    if (st) return st;
    in->present[i] = 1;
  }
  return NULL;
}

/* The tensor inputs of in (not the int32 vectors) as linattn tensors: tp[i] = &t[i] for a
 * present one, else NULL. */
static OrtStatus* node_tensors(const ort_op* op, const node_inputs* in, const char* const* names, size_t n,
                               int (*is_int)(size_t), linattn_tensor* t, const linattn_tensor** tp) {
  for (size_t i = 0; i < n; i++) {
    tp[i] = NULL;
    if (!in->present[i] || is_int(i)) continue;
    OrtStatus* st = to_linattn(op, &in->t[i], names[i], 0, 0, &t[i]);
    if (st) return st;
    tp[i] = &t[i];
  }
  return NULL;
}

/* The varlen ops' outputs: output (required), final_state and state_update, as linattn tensors
 * in lt (has[i] = 0 for one not requested). */
enum { OUT_OUTPUT, OUT_FINAL_STATE, OUT_STATE_UPDATE, STATE_OUTPUTS };
typedef struct state_outputs {
  ort_tensor t[STATE_OUTPUTS];
  int has[STATE_OUTPUTS];
  linattn_tensor lt[STATE_OUTPUTS];
} state_outputs;

static OrtStatus* get_state_outputs(const ort_kernel* k, OrtKernelContext* ctx, const int64_t* const* dims,
                                    const size_t* ranks, state_outputs* o) {
  static const char* const names[STATE_OUTPUTS] = {"output", "final_state", "state_update"};
  OrtStatus* st;
  for (size_t i = 0; i < STATE_OUTPUTS; i++) {
    o->has[i] = 0;
    if ((st = get_output(k, ctx, i, names[i], dims[i], ranks[i], &o->t[i], &o->has[i]))) return st;
  }
  if (!o->has[OUT_OUTPUT]) return linattn_ort_invalid(k->op, "output: required");
  for (size_t i = 0; i < STATE_OUTPUTS; i++)
    if (o->has[i] && (st = to_linattn(k->op, &o->t[i], names[i], 0, 0, &o->lt[i]))) return st;
  return NULL;
}

static const char* const gdn_input_names[GDN_INPUTS] = {
    "query", "key", "value", "cu_seqlens", "decay", "beta", "initial_state", "a_log", "dt_bias", "capture_count",
    "state_update_active"};

static OrtStatus* gdn_read_inputs(const ort_kernel* k, OrtKernelContext* ctx, node_inputs* in) {
  const ort_op* op = k->op;
  OrtStatus* st = read_node_inputs(k, ctx, gdn_input_names, GDN_INPUTS, gdn_int_input, in);
  if (st) return st;
  if (!in->present[GDN_QUERY]) return linattn_ort_invalid(op, "query: input is required");
  if (in->present[GDN_STATE_UPDATE_ACTIVE] && in->int_lengths[GDN_STATE_UPDATE_ACTIVE] != 1)
    return linattn_ort_invalid(op, "state_update_active: expected shape (1), got (%lld)",
                               (long long)in->int_lengths[GDN_STATE_UPDATE_ACTIVE]);
  return NULL;
}

static OrtStatus* compute_gdn(const ort_kernel* k, OrtKernelContext* ctx) {
  const ort_op* op = k->op;
  node_inputs in;
  OrtStatus* st = gdn_read_inputs(k, ctx, &in);
  if (st) return st;
  linattn_tensor t[GDN_INPUTS];
  const linattn_tensor* tp[GDN_INPUTS];
  /* query/key/value/decay/beta are rank <= 4 for a valid call */
  if ((st = node_tensors(op, &in, gdn_input_names, GDN_INPUTS, gdn_int_input, t, tp))) return st;

  /* state_update_active = 0: no capture, a zero state_update (ORT's CPU control input) */
  linattn_gated_delta_net_desc desc = k->gdn;
  const int capture = desc.state_update_capacity > 0 &&
                      !(in.present[GDN_STATE_UPDATE_ACTIVE] && in.ints[GDN_STATE_UPDATE_ACTIVE][0] == 0);
  const ort_tensor* q = &in.t[GDN_QUERY];
  if (q->rank < 2 || q->rank > 4) return linattn_ort_invalid(op, "query: expected rank 2 to 4, got rank %zu", q->rank);
  const int packed = !in.present[GDN_KEY] && !in.present[GDN_VALUE];
  const size_t lead = packed ? q->rank - 1 : q->rank - 2;
  const int per_key = in.present[GDN_DECAY] && in.t[GDN_DECAY].rank == lead + 2;
  int32_t out_rank = 0;
  int64_t out_dims[4], state_dims[4], su_dims[2];
  linattn_status ls = linattn_gated_delta_net_infer_shapes(
      &desc, (int32_t)q->rank, q->dims, tp[GDN_KEY] ? in.t[GDN_KEY].dims : NULL,
      tp[GDN_VALUE] ? in.t[GDN_VALUE].dims : NULL, tp[GDN_INITIAL_STATE] ? in.t[GDN_INITIAL_STATE].dims : NULL,
      in.present[GDN_CU_SEQLENS] ? in.int_lengths[GDN_CU_SEQLENS] : 0, per_key, &out_rank, out_dims, state_dims,
      su_dims);
  if (ls != LINATTN_SUCCESS) return linattn_ort_from_linattn(op, ls);

  /* linattn takes capture_count as a pointer: its (B) length is checked here */
  const int32_t* capture_count = in.ints[GDN_CAPTURE_COUNT];
  if (capture_count && capture && in.int_lengths[GDN_CAPTURE_COUNT] != state_dims[0])
    return linattn_ort_invalid(op, "capture_count: expected shape (B) = (%lld), got (%lld)", (long long)state_dims[0],
                               (long long)in.int_lengths[GDN_CAPTURE_COUNT]);
  if (desc.state_update_capacity > 0 && !capture) capture_count = NULL; /* ignored when capture is off */
  state_outputs o;
  if ((st = get_state_outputs(k, ctx, (const int64_t* const[]){out_dims, state_dims, su_dims},
                              (const size_t[]){(size_t)out_rank, 4, 2}, &o)))
    return st;
  const ort_tensor* su = &o.t[OUT_STATE_UPDATE];
  const int has_su = o.has[OUT_STATE_UPDATE];
  if (has_su && su->dtype != LINATTN_DTYPE_F32)
    return linattn_ort_invalid(op, "state_update: expected float32, got ONNX element type %d", (int)su->onnx_type);
  if (!capture) {
    if (has_su) memset(su->data, 0, (size_t)numel(su) * sizeof(float));
    if (desc.state_update_capacity > 0) desc.state_update_capacity = 0;
  }
  ls = linattn_gated_delta_net(k->context, &desc, tp[GDN_QUERY], tp[GDN_KEY], tp[GDN_VALUE], in.ints[GDN_CU_SEQLENS],
                               in.present[GDN_CU_SEQLENS] ? in.int_lengths[GDN_CU_SEQLENS] : 0, tp[GDN_DECAY],
                               tp[GDN_BETA], tp[GDN_INITIAL_STATE], tp[GDN_A_LOG], tp[GDN_DT_BIAS], capture_count,
                               &o.lt[OUT_OUTPUT], o.has[OUT_FINAL_STATE] ? &o.lt[OUT_FINAL_STATE] : NULL,
                               capture && has_su ? &o.lt[OUT_STATE_UPDATE] : NULL, NULL, 0);
  return ls == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, ls);
}

/* ------------------------------------------------------------------ VarlenCausalConvWithState */

enum { VC_INPUT, VC_WEIGHT, VC_CU, VC_BIAS, VC_INITIAL_STATE, VC_CAPTURE_COUNT, VC_KERNEL_DELTA, VC_PREVIOUS_MASK,
       VC_INPUTS };

static int vc_int_input(size_t i) { return i == VC_CU || i == VC_CAPTURE_COUNT; }

static const char* const vc_input_names[VC_INPUTS] = {
    "input", "weight", "cumulative_sequence_length", "bias", "initial_state", "capture_count", "kernel_delta",
    "previous_mask"};

static OrtStatus* vc_read_inputs(const ort_kernel* k, OrtKernelContext* ctx, node_inputs* in) {
  const ort_op* op = k->op;
  OrtStatus* st = read_node_inputs(k, ctx, vc_input_names, VC_INPUTS, vc_int_input, in);
  if (st) return st;
  /* ONNX Runtime's CPU kernel refuses the CUDA-only dynamic mode rather than ignoring its operands */
  if (in->present[VC_KERNEL_DELTA] || in->present[VC_PREVIOUS_MASK])
    return linattn_ort_error(ORT_NOT_IMPLEMENTED,
                             "%s: CPU VarlenCausalConvWithState does not support dynamic grouped convolution (CUDA only)",
                             op->label);
  static const size_t required[4] = {VC_INPUT, VC_WEIGHT, VC_CU, VC_INITIAL_STATE};
  for (size_t i = 0; i < 4; i++)
    if (!in->present[required[i]])
      return linattn_ort_invalid(op, "%s: input is required", vc_input_names[required[i]]);
  if (in->int_lengths[VC_CU] < 1)
    return linattn_ort_invalid(op, "cumulative_sequence_length: expected shape (batch_size + 1), got (%lld)",
                               (long long)in->int_lengths[VC_CU]);
  if ((st = linattn_ort_check_rank(op, "input", in->t[VC_INPUT].rank, 2, "(total_tokens, channels)"))) return st;
  return linattn_ort_check_rank(op, "initial_state", in->t[VC_INITIAL_STATE].rank, 3,
                                "(batch_size, channels, (k - 1) * dilation)");
}

static OrtStatus* compute_varlen_conv(const ort_kernel* k, OrtKernelContext* ctx) {
  node_inputs in;
  OrtStatus* st = vc_read_inputs(k, ctx, &in);
  if (st) return st;
  const ort_op* op = k->op;
  linattn_varlen_batch batch = {0};
  batch.batch_size = in.int_lengths[VC_CU] - 1;
  batch.cu_seqlens = in.ints[VC_CU];
  batch.capture_count = in.ints[VC_CAPTURE_COUNT];
  if (batch.capture_count && k->varlen.state_update_capacity == 0)
    return linattn_ort_invalid(op, "capture_count: given while state_update_capacity is 0");
  if (batch.capture_count && in.int_lengths[VC_CAPTURE_COUNT] != batch.batch_size)
    return linattn_ort_invalid(op, "capture_count: expected shape (batch_size) = (%lld), got (%lld)",
                               (long long)batch.batch_size, (long long)in.int_lengths[VC_CAPTURE_COUNT]);
  linattn_tensor t[VC_INPUTS];
  const linattn_tensor* tp[VC_INPUTS];
  if ((st = node_tensors(op, &in, vc_input_names, VC_INPUTS, vc_int_input, t, tp))) return st;
  const int64_t* x_dims = in.t[VC_INPUT].dims;
  const int64_t su_dims[3] = {batch.batch_size, k->varlen.state_update_capacity, x_dims[1]};
  state_outputs o;
  if ((st = get_state_outputs(k, ctx, (const int64_t* const[]){x_dims, in.t[VC_INITIAL_STATE].dims, su_dims},
                              (const size_t[]){2, 3, 3}, &o)))
    return st;
  linattn_status ls = linattn_varlen_causal_conv_with_state(
      k->context, &k->varlen, &batch, tp[VC_INPUT], tp[VC_WEIGHT], tp[VC_BIAS], tp[VC_INITIAL_STATE], NULL, NULL,
      &o.lt[OUT_OUTPUT], o.has[OUT_FINAL_STATE] ? &o.lt[OUT_FINAL_STATE] : NULL,
      o.has[OUT_STATE_UPDATE] && k->varlen.state_update_capacity > 0 ? &o.lt[OUT_STATE_UPDATE] : NULL, NULL, 0);
  return ls == LINATTN_SUCCESS ? NULL : linattn_ort_from_linattn(op, ls);
}

/* ------------------------------------------------------------------ entry */

/* Compute calls per op kind since the library was loaded (read by tests through
 * linattn_ort_kernel_calls: proof that a client really ran a node on linattn). */
static uint64_t g_kernel_calls[ORT_OP_KINDS];

__attribute__((visibility("default"))) uint64_t linattn_ort_kernel_calls(const char* op_name) {
  uint64_t total = 0;
  for (int kind = 0; kind < ORT_OP_KINDS; kind++)
    if (!op_name || !strcmp(op_name, linattn_ort_kind_name((ort_op_kind)kind)))
      total += __atomic_load_n(&g_kernel_calls[kind], __ATOMIC_RELAXED);
  return total;
}

/* Makes ctx the running Compute's kernel context on this thread; returns the previous one. */
static OrtKernelContext* set_kernel_context(OrtKernelContext* ctx) {
  OrtKernelContext* outer = tls_kernel_context;
  tls_kernel_context = ctx;
  return outer;
}

OrtStatus* ORT_API_CALL linattn_ort_compute(void* kernel, OrtKernelContext* context) {
  const ort_kernel* k = (const ort_kernel*)kernel;
  OrtStatus* st = NULL;
  if (k->gate_lean) { /* sets the thread's kernel context itself, when it may be needed */
    int lean = 0;
    st = compute_la_gate_lean(k, context, &lean);
    if (lean) {
      __atomic_add_fetch(&g_kernel_calls[ORT_OP_LINEAR_ATTENTION_GATE], 1, __ATOMIC_RELAXED);
      return st;
    }
  }
  OrtKernelContext* outer = set_kernel_context(context); /* normally NULL; restored for safety */
  switch (k->op->kind) {
    case ORT_OP_LINEAR_ATTENTION: st = compute_la(k, context); break;
    case ORT_OP_CAUSAL_CONV: st = compute_conv(k, context); break;
    case ORT_OP_GATED_RMS_NORM: st = compute_rms_norm(k, context); break;
    case ORT_OP_GATED_DELTA_NET: st = compute_gdn(k, context); break;
    case ORT_OP_VARLEN_CONV: st = compute_varlen_conv(k, context); break;
    default: st = compute_la_gate(k, context); break;
  }
  tls_kernel_context = outer;
  __atomic_add_fetch(&g_kernel_calls[k->op->kind], 1, __ATOMIC_RELAXED);
  return st;
}
