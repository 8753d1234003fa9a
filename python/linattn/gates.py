"""ONNX Runtime's com.microsoft gate ops on linattn: GatedRMSNorm and LinearAttentionGate.

    y = linattn.gated_rms_norm(x, scale, gate, activation="silu", epsilon=1e-5)
    decay, beta = linattn.linear_attention_gate(a, dt_bias, decay_scale, b)

Arrays of float32, float16 or ml_dtypes.bfloat16 (dt_bias / decay_scale float32), any rank >= 1;
the library sees them as (rows, last axis) matrices. Arithmetic in float32, rounded once.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import _lib
from ._tensor import OutputSlot, input_tensor
from .context import Context, shared_context

GATE_ACTIVATIONS = ("silu", "swish", "sigmoid")


class GatedRMSNormDesc(ctypes.Structure):
    _fields_ = [("activation", ctypes.c_int), ("epsilon", ctypes.c_float)]


_TP = ctypes.POINTER(_lib.Tensor)
_prototypes_set = False


def _fns():
    global _prototypes_set
    lib = _lib.lib()
    if not _prototypes_set:
        lib.linattn_gated_rms_norm.restype = ctypes.c_int
        lib.linattn_gated_rms_norm.argtypes = [ctypes.c_void_p, ctypes.POINTER(GatedRMSNormDesc), _TP, _TP, _TP, _TP]
        lib.linattn_linear_attention_gate.restype = ctypes.c_int
        lib.linattn_linear_attention_gate.argtypes = [ctypes.c_void_p, _TP, _TP, _TP, _TP, _TP, _TP]
        lib.linattn_gate_activation_from_string.restype = ctypes.c_int
        lib.linattn_gate_activation_from_string.argtypes = [ctypes.c_char_p]
        _prototypes_set = True
    return lib


def _rows(value, name: str) -> np.ndarray:
    a = np.ascontiguousarray(value)
    if a.ndim < 1:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, f"{name}: expected rank >= 1, got a scalar")
    return a


def _matrix(a: np.ndarray) -> np.ndarray:
    last = a.shape[-1]
    return a.reshape(-1, last) if last else a.reshape(a.size, 0)


def _ctx(context: Context | None, threads: int | None) -> Context:
    if context is not None and threads is not None:
        raise ValueError("pass either context or threads, not both")
    return context if context is not None else shared_context(threads)


def gated_rms_norm(x, scale, gate, *, activation: str = "silu", epsilon: float = 1e-5, out=None,
                   threads: int | None = None, context: Context | None = None) -> np.ndarray:
    """y = x * rsqrt(mean(x^2) + epsilon) * scale * act(gate), the mean over each group of
    C = len(scale) elements of the last axis (com.microsoft GatedRMSNorm)."""
    lib = _fns()
    desc = GatedRMSNormDesc()
    desc.activation = lib.linattn_gate_activation_from_string(str(activation).encode())
    if desc.activation == 0:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT,
                                f"activation: {activation!r} is not one of {', '.join(GATE_ACTIVATIONS)}")
    desc.epsilon = float(epsilon)
    xa, ga = _rows(x, "x"), _rows(gate, "gate")
    if ga.shape != xa.shape:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, f"gate: shape {ga.shape} differs from x's {xa.shape}")
    _, tx = input_tensor(_matrix(xa), "x", strided=False)
    _, tg = input_tensor(_matrix(ga), "gate", strided=False)
    _, ts = input_tensor(np.ascontiguousarray(scale).reshape(-1), "scale", strided=False)
    y = OutputSlot("y", xa.shape, xa.dtype, out, strided=False)
    ty = input_tensor(_matrix(y.array), "y", strided=False)[1]
    _lib.check(lib.linattn_gated_rms_norm(_ctx(context, threads).handle, ctypes.byref(desc), tx, ts, tg, ty))
    return y.finish()


def linear_attention_gate(a, dt_bias, decay_scale, b=None, *, threads: int | None = None,
                          context: Context | None = None):
    """(decay, beta) = (decay_scale * softplus(a + dt_bias), sigmoid(b)); beta is None without b
    (com.microsoft LinearAttentionGate)."""
    lib = _fns()
    aa = _rows(a, "a")
    _, ta = input_tensor(_matrix(aa), "a", strided=False)
    _, tbias = input_tensor(np.ascontiguousarray(dt_bias).reshape(-1), "dt_bias", strided=False)
    _, tscale = input_tensor(np.ascontiguousarray(decay_scale).reshape(-1), "decay_scale", strided=False)
    tb = beta = tbeta = None
    if b is not None:
        ba = _rows(b, "b")
        if ba.shape != aa.shape:
            raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, f"b: shape {ba.shape} differs from a's {aa.shape}")
        _, tb = input_tensor(_matrix(ba), "b", strided=False)
        beta = np.empty(aa.shape, aa.dtype)
        tbeta = input_tensor(_matrix(beta), "beta", strided=False)[1]
    decay = np.empty(aa.shape, aa.dtype)
    tdecay = input_tensor(_matrix(decay), "decay", strided=False)[1]
    _lib.check(lib.linattn_linear_attention_gate(_ctx(context, threads).handle, ta, tbias, tscale, tb, tdecay, tbeta))
    return decay, beta
