"""ctypes mirror of include/linattn.h and the loader of the shared library.

The structs below must match the header field for field (C enums are `int`). The library is
loaded lazily on first use so that modules that do not call it (the official-case generator)
work without a build.

Where the library comes from, first match wins:
  1. the environment variable LINATTN_LIBRARY (a path to the .so);
  2. <repo>/build/liblinattn.so (this file lives in <repo>/python/linattn/);
  3. liblinattn.so next to this package (an installed copy).
"""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

# Header version this binding was written against: the major and minor numbers must match.
BINDING_VERSION = (0, 1)

# ---------------------------------------------------------------- enums (linattn.h)

SUCCESS = 0
ERROR_INVALID_ARGUMENT = 1
ERROR_UNSUPPORTED = 2
ERROR_OUT_OF_MEMORY = 3
ERROR_WORKSPACE_TOO_SMALL = 4
ERROR_INTERNAL = 5

STATUS_NAMES = {
    SUCCESS: "LINATTN_SUCCESS",
    ERROR_INVALID_ARGUMENT: "LINATTN_ERROR_INVALID_ARGUMENT",
    ERROR_UNSUPPORTED: "LINATTN_ERROR_UNSUPPORTED",
    ERROR_OUT_OF_MEMORY: "LINATTN_ERROR_OUT_OF_MEMORY",
    ERROR_WORKSPACE_TOO_SMALL: "LINATTN_ERROR_WORKSPACE_TOO_SMALL",
    ERROR_INTERNAL: "LINATTN_ERROR_INTERNAL",
}

DTYPE_INVALID = 0
DTYPE_F32 = 1
DTYPE_F16 = 2
DTYPE_BF16 = 3

# linattn_isa: AUTO, then the library's kernel families, listed by isa_codes() below.
ISA_AUTO = 0

LA_ORT_CONTRIB = 1

MAX_RANK = 4
MAX_THREADS = 1024  # LINATTN_MAX_THREADS


class LinattnError(Exception):
    """A call into linattn failed. `status` is the linattn_status code, `message` the C message."""

    def __init__(self, status: int, message: str):
        self.status = int(status)
        self.status_name = STATUS_NAMES.get(self.status, f"status {self.status}")
        self.message = message
        super().__init__(f"{self.status_name}: {message}")

    def __reduce__(self):
        return (type(self), (self.status, self.message))


# ---------------------------------------------------------------- structs (linattn.h)


class Tensor(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.c_void_p),
        ("dtype", ctypes.c_int),
        ("rank", ctypes.c_int32),
        ("dims", ctypes.c_int64 * MAX_RANK),
        ("strides", ctypes.c_int64 * MAX_RANK),
    ]


TASK_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_size_t)
PARALLEL_FOR_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, TASK_FN, ctypes.c_void_p, ctypes.c_size_t)
ALLOC_FN = ctypes.CFUNCTYPE(ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_size_t)
FREE_FN = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p)


class ContextOptions(ctypes.Structure):
    _fields_ = [
        ("num_threads", ctypes.c_int32),
        ("parallel_for", PARALLEL_FOR_FN),
        ("parallel_for_data", ctypes.c_void_p),
        ("isa", ctypes.c_int),
        ("alloc", ALLOC_FN),
        ("free", FREE_FN),
        ("alloc_user", ctypes.c_void_p),
        ("state_stores", ctypes.c_int),
    ]


class LinearAttentionDesc(ctypes.Structure):
    _fields_ = [
        ("update_rule", ctypes.c_int),
        ("q_num_heads", ctypes.c_int64),
        ("kv_num_heads", ctypes.c_int64),
        ("scale", ctypes.c_float),
        ("chunk_size", ctypes.c_int64),
        ("flags", ctypes.c_uint32),
        ("state_window", ctypes.c_int64),
    ]


class GatedDeltaNetDesc(ctypes.Structure):
    _fields_ = [
        ("update_rule", ctypes.c_int),
        ("gate_activation", ctypes.c_int),
        ("beta_activation", ctypes.c_int),
        ("qk_l2_norm", ctypes.c_int32),
        ("scale", ctypes.c_float),
        ("gate_lower_bound", ctypes.c_float),
        ("state_update_capacity", ctypes.c_int64),
        ("chunk_size", ctypes.c_int64),
        ("qk_l2_norm_eps", ctypes.c_float),
    ]


class CausalConvDesc(ctypes.Structure):
    _fields_ = [
        ("activation", ctypes.c_int),
        ("dilation", ctypes.c_int64),
        ("channels_last", ctypes.c_int32),
        ("state_window", ctypes.c_int64),
    ]


class VarlenConvDesc(ctypes.Structure):
    _fields_ = [
        ("activation", ctypes.c_int),
        ("dilation", ctypes.c_int64),
        ("state_update_capacity", ctypes.c_int64),
        ("state_channels_last", ctypes.c_int32),
    ]


class VarlenBatch(ctypes.Structure):
    _fields_ = [
        ("batch_size", ctypes.c_int64),
        ("cu_seqlens", ctypes.c_void_p),
        ("capture_count", ctypes.c_void_p),
        ("state_indices", ctypes.c_void_p),
        ("has_initial_state", ctypes.c_void_p),
    ]


# ---------------------------------------------------------------- loading

_P = ctypes.POINTER
_VOIDP = ctypes.c_void_p
_TP = _P(Tensor)

_PROTOTYPES = {
    "linattn_version": (ctypes.c_uint32, []),
    "linattn_version_string": (ctypes.c_char_p, []),
    "linattn_status_string": (ctypes.c_char_p, [ctypes.c_int]),
    "linattn_last_error": (ctypes.c_char_p, []),
    "linattn_dtype_size": (ctypes.c_size_t, [ctypes.c_int]),
    "linattn_dtype_name": (ctypes.c_char_p, [ctypes.c_int]),
    "linattn_isa_count": (ctypes.c_int, []),
    "linattn_isa_name": (ctypes.c_char_p, [ctypes.c_int]),
    "linattn_isa_available": (ctypes.c_int, [ctypes.c_int]),
    "linattn_context_options_init": (None, [_P(ContextOptions)]),
    "linattn_context_create": (ctypes.c_int, [_P(ContextOptions), _P(_VOIDP)]),
    "linattn_context_close": (None, [_VOIDP]),
    "linattn_context_destroy": (None, [_VOIDP]),
    "linattn_context_num_threads": (ctypes.c_int32, [_VOIDP]),
    "linattn_context_isa": (ctypes.c_int, [_VOIDP]),
    "linattn_update_rule_from_string": (ctypes.c_int, [ctypes.c_char_p]),
    "linattn_linear_attention_desc_init": (None, [_P(LinearAttentionDesc)]),
    "linattn_linear_attention": (
        ctypes.c_int,
        [_VOIDP, _P(LinearAttentionDesc), _TP, _TP, _TP, _TP, _TP, _TP, _TP, _TP, _VOIDP, ctypes.c_size_t],
    ),
    "linattn_linear_attention_workspace_size": (
        ctypes.c_int,
        [_VOIDP, _P(LinearAttentionDesc), _TP, _TP, _TP, _TP, _TP, _TP, _TP, _TP, _P(ctypes.c_size_t)],
    ),
    "linattn_linear_attention_infer_shapes": (
        ctypes.c_int,
        [
            _P(LinearAttentionDesc),
            _P(ctypes.c_int64),
            _P(ctypes.c_int64),
            _P(ctypes.c_int64),
            _P(ctypes.c_int64),
            _P(ctypes.c_int64),
        ],
    ),
    "linattn_gdn_gate_from_string": (ctypes.c_int, [ctypes.c_char_p]),
    "linattn_gdn_beta_from_string": (ctypes.c_int, [ctypes.c_char_p]),
    "linattn_gated_delta_net_desc_init": (None, [_P(GatedDeltaNetDesc)]),
    "linattn_gated_delta_net": (
        ctypes.c_int,
        [_VOIDP, _P(GatedDeltaNetDesc), _TP, _TP, _TP, _P(ctypes.c_int32), ctypes.c_int64, _TP, _TP, _TP, _TP, _TP,
         _P(ctypes.c_int32), _TP, _TP, _TP, _VOIDP, ctypes.c_size_t],
    ),
    "linattn_gated_delta_net_state_replay": (
        ctypes.c_int,
        [_TP, _TP, ctypes.c_int64, ctypes.c_int64, ctypes.c_int64, _TP],
    ),
    "linattn_activation_from_string": (ctypes.c_int, [ctypes.c_char_p]),
    "linattn_causal_conv_desc_init": (None, [_P(CausalConvDesc)]),
    "linattn_causal_conv_with_state": (
        ctypes.c_int,
        [_VOIDP, _P(CausalConvDesc), _TP, _TP, _TP, _TP, _TP, _TP, _VOIDP, ctypes.c_size_t],
    ),
    "linattn_causal_conv_with_state_workspace_size": (
        ctypes.c_int,
        [_VOIDP, _P(CausalConvDesc), _TP, _TP, _TP, _TP, _TP, _TP, _P(ctypes.c_size_t)],
    ),
    "linattn_causal_conv_infer_shapes": (
        ctypes.c_int,
        [_P(CausalConvDesc), _P(ctypes.c_int64), _P(ctypes.c_int64), _P(ctypes.c_int64), _P(ctypes.c_int64)],
    ),
    "linattn_varlen_linear_attention": (
        ctypes.c_int,
        [_VOIDP, _P(LinearAttentionDesc), _P(VarlenBatch), _TP, _TP, _TP, _TP, _TP, _TP, _TP, _TP, _VOIDP,
         ctypes.c_size_t],
    ),
    "linattn_varlen_conv_desc_init": (None, [_P(VarlenConvDesc)]),
    "linattn_varlen_causal_conv_with_state": (
        ctypes.c_int,
        [_VOIDP, _P(VarlenConvDesc), _P(VarlenBatch), _TP, _TP, _TP, _TP, _TP, _TP, _TP, _TP, _TP, _VOIDP,
         ctypes.c_size_t],
    ),
}

# The per-call entry points again, as separate function objects without argtypes: ctypes then
# passes each argument as it is instead of calling the argtype's from_param on it, which is about
# two thirds of the cost of a 12-argument call (~0.9 of ~1.4 us). The binding's own calls use
# these with arguments of exactly the C types: a c_void_p context, byref() of the structs (or
# None), a c_size_t workspace size. Everything else keeps the checked prototypes.
_UNCHECKED = ("linattn_linear_attention", "linattn_causal_conv_with_state", "linattn_gated_delta_net")

_lock = threading.Lock()
_lib: ctypes.CDLL | None = None
_lib_path: str | None = None
_unchecked: dict[str, ctypes._CFuncPtr] = {}


def _shared_name() -> str:
    if sys.platform == "darwin":
        return "liblinattn.dylib"
    if sys.platform == "win32":
        return "linattn.dll"
    return "liblinattn.so"


def candidate_paths() -> list[Path]:
    """Where the loader looks for the shared library, in order."""
    env = os.environ.get("LINATTN_LIBRARY")
    if env:
        return [Path(env)]
    here = Path(__file__).resolve().parent
    repo = here.parent.parent
    return [repo / "build" / _shared_name(), here / _shared_name()]


def library_path() -> str:
    """Path of the shared library that is (or would be) loaded."""
    if _lib_path is not None:
        return _lib_path
    tried = candidate_paths()
    for path in tried:
        if path.is_file():
            return str(path)
    raise OSError(
        "linattn shared library not found; tried "
        + ", ".join(str(p) for p in tried)
        + " (build it with `make build` in the checkout, install the package with `pip install .` from the"
        " repository top, or set LINATTN_LIBRARY)"
    )


def lib() -> ctypes.CDLL:
    """The loaded library with prototypes set (loaded on first call)."""
    global _lib, _lib_path
    if _lib is not None:
        return _lib
    with _lock:
        if _lib is not None:
            return _lib
        path = library_path()
        handle = ctypes.CDLL(path)
        for name, (restype, argtypes) in _PROTOTYPES.items():
            fn = getattr(handle, name)
            fn.restype = restype
            fn.argtypes = argtypes
        version = handle.linattn_version()
        major, minor = (version >> 16) & 0xFF, (version >> 8) & 0xFF
        if (major, minor) != BINDING_VERSION:
            raise OSError(
                f"{path}: library version {major}.{minor} does not match the binding's "
                f"{BINDING_VERSION[0]}.{BINDING_VERSION[1]}"
            )
        for name in _UNCHECKED:
            fn = handle[name]  # indexing makes a new function object; attribute access would reuse the checked one
            fn.restype = ctypes.c_int
            _unchecked[name] = fn
        _lib_path = path
        _lib = handle
        return handle


def isa_codes() -> dict[str, int]:
    """{name: linattn_isa value} of "auto" and of every kernel family of the library, in value
    order (the library's registry, through linattn_isa_count and linattn_isa_name)."""
    handle = lib()
    codes = {"auto": ISA_AUTO}
    for code in range(1, handle.linattn_isa_count() + 1):
        codes[handle.linattn_isa_name(code).decode()] = code
    return codes


def unchecked(name: str):
    """The entry point `name` (one of _UNCHECKED) without argument conversion: the caller passes
    ctypes objects of exactly the C parameter types (see _UNCHECKED)."""
    fn = _unchecked.get(name)
    if fn is None:
        lib()
        fn = _unchecked[name]
    return fn


def last_error() -> str:
    return lib().linattn_last_error().decode("utf-8", "replace")


def check(status: int) -> None:
    """Raises LinattnError with the calling thread's last C message unless status is SUCCESS."""
    if status != SUCCESS:
        raise LinattnError(status, last_error())
