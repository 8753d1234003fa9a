/*
 * Internal header of the ONNX Runtime custom-op library (liblinattn_ort.so).
 *
 * The library registers LinearAttention and CausalConvWithState twice: for ONNX Runtime's
 * contrib domain "com.microsoft" (version 1, with its extensions) and for the standard domain
 * "" from opset 27; GatedRMSNorm, LinearAttentionGate, GatedDeltaNet and VarlenCausalConvWithState for
 * "com.microsoft" only. Each registration is an ort_op: the OrtCustomOp ORT sees plus what kind of
 * op it is. linattn_ort.c holds the schemas, the type/shape inference and the registration;
 * linattn_ort_kernels.c holds the kernels (attribute parsing and Compute).
 */
#ifndef LINATTN_ORT_H
#define LINATTN_ORT_H

#include <stddef.h>
#include <stdint.h>

#include "linattn.h"
#include "onnxruntime_c_api.h"

#define LINATTN_ORT_HIDDEN __attribute__((visibility("hidden")))

typedef enum ort_op_kind {
  ORT_OP_LINEAR_ATTENTION = 0,
  ORT_OP_CAUSAL_CONV = 1,
  ORT_OP_GATED_RMS_NORM = 2,        /* com.microsoft only */
  ORT_OP_LINEAR_ATTENTION_GATE = 3, /* com.microsoft only */
  ORT_OP_GATED_DELTA_NET = 4,       /* com.microsoft only */
  ORT_OP_VARLEN_CONV = 5,           /* com.microsoft only */
  ORT_OP_KINDS = 6
} ort_op_kind;

typedef struct ort_op {
  OrtCustomOp base; /* first member: ORT hands us &base; base.version is the C API version in use */
  const OrtApi* api; /* the table of that version (the runtime's, see RegisterCustomOps) */
  ort_op_kind kind;
  int contrib;      /* 1 = com.microsoft (ORT extensions), 0 = ai.onnx */
  int start_version;
  const char* label; /* "com.microsoft.LinearAttention", "LinearAttention-27", ... for messages */
} ort_op;

/* The oldest C API version the plugin runs on: every entry it calls outside
 * LINATTN_ORT_SHAPE_REF_API is in that version's table. */
#define LINATTN_ORT_MIN_API 21
/* The C API version of GetTensorElementTypeAndShapeDataReference (ONNX Runtime 1.24). */
#define LINATTN_ORT_SHAPE_REF_API 24

/* The API table of the ONNX Runtime that loaded us (set by RegisterCustomOps). Only its entries
 * up to LINATTN_ORT_MIN_API are called through it; newer ones go through an op's own table after
 * checking the op's version. */
LINATTN_ORT_HIDDEN extern const OrtApi* linattn_ort_api;

/* Status helpers: NULL = success. */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_error(OrtErrorCode code, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* Maps a failed linattn call to an ORT status carrying linattn_last_error(). */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_from_linattn(const ort_op* op, linattn_status status);
/* ORT_INVALID_ARGUMENT worded as linattn's own messages ("<label> (linattn): invalid argument: ..."),
 * for the rules the plugin checks on ORT's side of the mapping (ranks, channel axes). */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_invalid(const ort_op* op, const char* fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* com.microsoft state_window: ORT's range is [0, 8]. */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_check_state_window(const ort_op* op, int64_t window);
/* state_window > 0 on a conv input with several channel axes (not implemented). */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_conv_window_rank(const ort_op* op, size_t rank);
/* Input `name` has `rank` dims, as `shape_doc` says. */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_check_rank(const ort_op* op, const char* name, size_t rank, size_t want,
                                                     const char* shape_doc);
/* (k - 1) * dilation for `taps` taps under desc, by the library's shape inference. */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_conv_state_length(const ort_op* op, const linattn_causal_conv_desc* desc,
                                                            int64_t taps, int64_t* len);
/* LinearAttention query (index 0), key (1) or value (2): rank 3. */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_check_la_input_rank(const ort_op* op, size_t index, size_t rank);
/* CausalConvWithState input rank: 3, or with channels_last >= 3 (B, L, d_1, ..., d_n). */
LINATTN_ORT_HIDDEN OrtStatus* linattn_ort_check_conv_input_rank(const ort_op* op, int channels_last, size_t rank);

/* ONNX element type <-> linattn dtype (LINATTN_DTYPE_INVALID for anything else). */
LINATTN_ORT_HIDDEN linattn_dtype linattn_ort_dtype(ONNXTensorElementDataType type);

/* Kernel callbacks (linattn_ort_kernels.c). */
LINATTN_ORT_HIDDEN OrtStatus* ORT_API_CALL linattn_ort_create_kernel(const OrtCustomOp* op, const OrtApi* api,
                                                                     const OrtKernelInfo* info, void** kernel);
LINATTN_ORT_HIDDEN OrtStatus* ORT_API_CALL linattn_ort_compute(void* kernel, OrtKernelContext* context);
LINATTN_ORT_HIDDEN void ORT_API_CALL linattn_ort_destroy_kernel(void* kernel);

/* Name of an op kind as ORT knows it ("LinearAttention", ...). */
LINATTN_ORT_HIDDEN const char* linattn_ort_kind_name(ort_op_kind kind);

#endif /* LINATTN_ORT_H */
