"""GatedDeltaNet (ONNX Runtime's com.microsoft GatedDeltaNet, version 1) on numpy arrays."""

from __future__ import annotations

import ctypes

import numpy as np

from . import _lib
from ._tensor import OutputSlot, input_tensor
from .context import Context
from .ops import _FAST, _CountOf, _FastPath, _context, _int_attr, _ptr

GDN_GATE_ACTIVATIONS = ("none", "softplus", "qwen", "sigmoid", "kda")
GDN_BETA_ACTIVATIONS = ("none", "sigmoid")


def _err(msg: str) -> _lib.LinattnError:
    return _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, msg)


def gated_delta_net_desc(update_rule="gated_delta", gate_activation="none", beta_activation="none", qk_l2_norm=0,
                         scale=0.0, gate_lower_bound=-5.0, state_update_capacity=0, chunk_size=64, qk_l2_norm_eps=1e-12):
    lib = _lib.lib()
    d = _lib.GatedDeltaNetDesc()
    lib.linattn_gated_delta_net_desc_init(ctypes.byref(d))
    d.update_rule = lib.linattn_update_rule_from_string(str(update_rule).encode())
    if d.update_rule == 0:
        raise _err(f"update_rule: {update_rule!r} is not one of 'linear', 'gated', 'delta', 'gated_delta'")
    d.gate_activation = lib.linattn_gdn_gate_from_string(str(gate_activation).encode())
    if d.gate_activation == 0:
        raise _err(f"gate_activation: {gate_activation!r} is not one of {', '.join(map(repr, GDN_GATE_ACTIVATIONS))}")
    d.beta_activation = lib.linattn_gdn_beta_from_string(str(beta_activation).encode())
    if d.beta_activation == 0:
        raise _err(f"beta_activation: {beta_activation!r} is not one of {', '.join(map(repr, GDN_BETA_ACTIVATIONS))}")
    d.qk_l2_norm = 1 if _int_attr(qk_l2_norm, "qk_l2_norm") else 0
    d.scale = float(scale)
    d.gate_lower_bound = float(gate_lower_bound)
    d.state_update_capacity = _int_attr(state_update_capacity, "state_update_capacity")
    d.chunk_size = _int_attr(chunk_size, "chunk_size")
    d.qk_l2_norm_eps = float(qk_l2_norm_eps)
    return d


_desc_cache: dict = {}
_NO_WORKSPACE = ctypes.c_size_t(0)
_I32P = ctypes.POINTER(ctypes.c_int32)


def _int32_array(value, name: str):
    if value is None:
        return None, None, 0
    if type(value) is np.ndarray and value.dtype == np.int32 and value.ndim == 1 and value.flags.c_contiguous:
        return value, ctypes.cast(value.ctypes.data, _I32P), value.size
    a = np.ascontiguousarray(np.asarray(value))
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {a.dtype}")
    if a.ndim != 1:
        raise _err(f"{name}: expected rank 1, got shape {a.shape}")
    if a.size and (a.min() < -(2**31) or a.max() >= 2**31):
        raise _err(f"{name}: values do not fit in int32")
    a = a.astype(np.int32, copy=False)
    return a, a.ctypes.data_as(ctypes.POINTER(ctypes.c_int32)), a.size


def _f32(value, name):
    if value is None:
        return None, None
    a = np.asarray(value)
    if a.dtype != np.float32:
        raise TypeError(f"{name}: expected float32, got {a.dtype}")
    return input_tensor(a, name, strided=False)


# The per-call fast path (see ops._FastPath): slots query, key, value, cu_seqlens, decay, beta,
# initial_state, a_log, dt_bias, capture_count, then the outputs output, final_state, state_update;
# the C call takes cu_seqlens and capture_count as int32 pointers and cu_seqlens' length after it.
_gdn_fast = _FastPath("linattn_gated_delta_net", 10, n_outputs=3,
                      c_args=(0, 1, 2, 3, _CountOf(3), 4, 5, 6, 7, 8, 9, 10, 11, 12), pointer_slots=(3, 9))


def gated_delta_net(query, key=None, value=None, cu_seqlens=None, decay=None, beta=None, initial_state=None,
                    a_log=None, dt_bias=None, capture_count=None, *, update_rule: str = "gated_delta",
                    gate_activation: str = "none", beta_activation: str = "none", qk_l2_norm: int = 0,
                    scale: float = 0.0, gate_lower_bound: float = -5.0, state_update_capacity: int = 0,
                    chunk_size: int = 64, qk_l2_norm_eps: float = 1e-12, out=None, final_state_out=None,
                    threads: int | None = None, context: Context | None = None):
    """ONNX Runtime's com.microsoft GatedDeltaNet: returns (output, final_state, state_update).

    query (T, H_q, d_k) / (B, S, H_q, d_k), or packed QKV (T, 2*H_q*d_k + H_v*d_v) with key and
    value None; value (T, H_v, d_v); cu_seqlens int32 (B + 1); decay (T, H_v) or (T, H_v, d_k) and
    beta (T, H_v) in float32 or query's dtype; initial_state float32 V-major (B, H_v, d_v, d_k);
    a_log (H_v), dt_bias (H_v) or (H_v, d_k) float32; capture_count int32 (B).
    out: an array to write the output into; final_state_out: one for the final state (may be
    initial_state itself, for an in-place update). state_update is None when state_update_capacity is 0.
    qk_l2_norm_eps: added under the root of the q/k L2 norm (ONNX Runtime's kernel: 1e-12, the
    default; fla's l2norm: 1e-6)."""
    key_ = arrays = None
    if (_FAST and type(update_rule) is str and type(gate_activation) is str and type(beta_activation) is str
            and type(qk_l2_norm) is int and (type(scale) is float or type(scale) is int)
            and (type(gate_lower_bound) is float or type(gate_lower_bound) is int)
            and type(state_update_capacity) is int and type(chunk_size) is int
            and (type(qk_l2_norm_eps) is float or type(qk_l2_norm_eps) is int)):
        attrs = (update_rule, gate_activation, beta_activation, qk_l2_norm, scale, gate_lower_bound,
                 state_update_capacity, chunk_size, qk_l2_norm_eps)
        arrays = (query, key, value, cu_seqlens, decay, beta, initial_state, a_log, dt_bias, capture_count, out,
                  final_state_out, None)
        result, key_ = _gdn_fast.call(attrs, arrays, threads, context)
        if result is not None:
            return result
    result = _gated_delta_net(query, key, value, cu_seqlens, decay, beta, initial_state, a_log, dt_bias,
                              capture_count, update_rule, gate_activation, beta_activation, qk_l2_norm, scale,
                              gate_lower_bound, state_update_capacity, chunk_size, qk_l2_norm_eps, out,
                              final_state_out, threads, context)
    _gdn_fast.remember(key_, lambda: gated_delta_net_desc(*attrs), arrays, result)
    return result


def _gated_delta_net(query, key, value, cu_seqlens, decay, beta, initial_state, a_log, dt_bias, capture_count,
                     update_rule, gate_activation, beta_activation, qk_l2_norm, scale, gate_lower_bound,
                     state_update_capacity, chunk_size, qk_l2_norm_eps, out, final_state_out, threads, context):
    """gated_delta_net's general path: every argument checked and converted."""
    ctx = _context(context, threads)
    attrs = (update_rule, gate_activation, beta_activation, qk_l2_norm, scale, gate_lower_bound, state_update_capacity,
             chunk_size, qk_l2_norm_eps)
    ckey = (attrs, tuple(type(x) for x in attrs))  # 1 == True == 1.0 stay apart
    cacheable = all(type(x) in (str, int, float) for x in attrs)
    desc = _desc_cache.get(ckey) if cacheable else None
    if desc is None:
        desc = gated_delta_net_desc(*attrs)
        if cacheable:
            if len(_desc_cache) > 64:
                _desc_cache.clear()
            _desc_cache[ckey] = desc
    if query is None:
        raise _err("query: required, got None")
    q, t_q = input_tensor(query, "query", strided=True)
    k, t_k = input_tensor(key, "key", strided=True)
    v, t_v = input_tensor(value, "value", strided=True)
    g, t_g = input_tensor(decay, "decay", strided=False)
    b, t_b = input_tensor(beta, "beta", strided=False)
    s0, t_s0 = _f32(initial_state, "initial_state")
    al, t_al = _f32(a_log, "a_log")
    db, t_db = _f32(dt_bias, "dt_bias")
    cu, p_cu, n_cu = _int32_array(cu_seqlens, "cu_seqlens")
    cc, p_cc, _ = _int32_array(capture_count, "capture_count")
    packed = k is None and v is None
    if packed:
        if s0 is None or s0.ndim != 4:
            raise _err("initial_state: required (rank 4, V-major (B, H_v, d_v, d_k)) with packed QKV")
        Hv, dv, dk = s0.shape[1:]
        Hq = (q.shape[-1] - Hv * dv) // (2 * dk) if dk > 0 else 0
        lead = q.shape[:-1]
    else:
        if k is None or v is None:
            raise _err("key / value: pass both, or neither for packed QKV in query")
        if q.ndim not in (3, 4) or v.ndim != q.ndim:
            raise _err(f"query / value: expected rank 3 (T, H, d) or 4 (B, S, H, d), got shapes {q.shape} / {v.shape}")
        Hq, dk = q.shape[-2:]
        Hv, dv = v.shape[-2:]
        lead = q.shape[:-2]
    if cu is not None:
        B = n_cu - 1
    elif len(lead) == 2:
        B = lead[0]
    elif s0 is not None and s0.ndim == 4:
        B = s0.shape[0]
    else:
        raise _err("initial_state: required without cu_seqlens (uniform packing takes the batch size from it)")
    out = OutputSlot("output", tuple(lead) + (max(Hq, Hv), dv), q.dtype, out, strided=True)
    state_shape = (max(B, 0), Hv, dv, dk)
    if final_state_out is not None and final_state_out is s0:
        fin_arr, t_fin = s0, t_s0  # in place
    else:
        fin = OutputSlot("final_state", state_shape, np.dtype(np.float32), final_state_out, strided=False)
        fin_arr, t_fin = None, fin.describe()
    C = int(desc.state_update_capacity)
    su = None
    t_su = None
    if C > 0:
        per_key = g is not None and g.ndim == len(lead) + 2
        dw = Hv * dk if per_key else Hv
        su = np.empty((max(B, 0), C * (dw + Hq * dk + Hv * dv)), np.float32)
        su_slot = OutputSlot("state_update", su.shape, np.dtype(np.float32), su, strided=False)
        t_su = su_slot.describe()
    status = _lib.unchecked("linattn_gated_delta_net")(
        ctx.handle, ctypes.byref(desc), ctypes.byref(t_q), _ptr(t_k), _ptr(t_v), p_cu, ctypes.c_int64(n_cu), _ptr(t_g),
        _ptr(t_b), _ptr(t_s0), _ptr(t_al), _ptr(t_db), p_cc, ctypes.byref(out.describe()), ctypes.byref(t_fin),
        _ptr(t_su), None, _NO_WORKSPACE)
    _lib.check(status)
    final = fin_arr if fin_arr is not None else fin.finish()
    return out.finish(), final, su


def gated_delta_net_state_replay(source, capsule, *, num_heads_k: int, capacity: int, kept_count: int):
    """GatedDeltaNetStateReplay's arithmetic: source (H_v, d_v, d_k) float32 replayed through the
    first kept_count transitions of one request's state_update row; returns the new state."""
    s, t_s = _f32(source, "source")
    c, t_c = _f32(capsule, "capsule")
    if s is None or c is None:
        raise _err("source / capsule: required")
    dst = np.empty(s.shape, np.float32)
    slot = OutputSlot("destination", dst.shape, np.dtype(np.float32), dst, strided=False)
    _lib.check(_lib.lib().linattn_gated_delta_net_state_replay(
        ctypes.byref(t_s), ctypes.byref(t_c), _int_attr(num_heads_k, "num_heads_k"), _int_attr(capacity, "capacity"),
        _int_attr(kept_count, "kept_count"), slot.describe()))
    return dst
