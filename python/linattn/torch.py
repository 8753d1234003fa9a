"""PyTorch custom ops on CPU tensors, drop-in replacements for flash-linear-attention's and
causal-conv1d's entry points, and a patch that makes transformers' Qwen3-Next / Qwen3.5 linear
attention layers run on linattn.

torch is an optional dependency: `import linattn` never imports this module.

Ops (namespace `linattn`, registered with torch.library.custom_op; fake implementations let
torch.compile trace through them without graph breaks): linear_attention, causal_conv_with_state,
causal_conv_update, gated_delta_net, varlen_causal_conv. Tensors are passed to the library by data
pointer and strides (no copy when the library accepts the layout; see _describe). Outputs are
allocated by torch. Backward is not supported: calling backward through an op raises RuntimeError.

Drop-in entry points (fla / causal-conv1d / transformers signatures): chunk_gated_delta_rule,
fused_recurrent_gated_delta_rule, causal_conv1d_fn, causal_conv1d_update.

State layout: fla and transformers keep the recurrent state as (N, H, d_k, d_v); the library's
GatedDeltaNet keeps it V-major, (N, H, d_v, d_k). The entry points return the final state as a
transposed *view* of the V-major buffer (shape (N, H, d_k, d_v), values as fla's), and an
initial_state that is such a view (as the returned state, or transformers' cache copy of it, is)
is passed to the library without a copy; any other initial_state is copied once into V-major fp32.

Threads: each call runs on a linattn context of torch.get_num_threads() threads.
"""

from __future__ import annotations

import ctypes
import functools
from typing import Optional

import torch

from . import _lib
from .context import shared_context
from .gdn import gated_delta_net_desc
from .ops import causal_conv_desc, linear_attention_desc

__all__ = [
    "chunk_gated_delta_rule",
    "fused_recurrent_gated_delta_rule",
    "causal_conv1d_fn",
    "causal_conv1d_update",
    "patch_transformers",
    "unpatch",
]

_DTYPES = {torch.float32: _lib.DTYPE_F32, torch.float16: _lib.DTYPE_F16, torch.bfloat16: _lib.DTYPE_BF16}
_FLA_L2_NORM_EPS = 1e-6  # fla's (and transformers') q/k L2 norm epsilon
_I32P = ctypes.POINTER(ctypes.c_int32)
_NO_WORKSPACE = ctypes.c_size_t(0)
_NO_GRAD = ("linattn.torch ops have no backward (inference only): run under torch.no_grad() / "
            "torch.inference_mode(), or use the PyTorch implementation for training")


def _err(msg: str) -> _lib.LinattnError:
    return _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, msg)


def _strides_accepted(t: torch.Tensor) -> bool:
    """The library's rule for strided tensors: innermost stride 1 (or extent <= 1), non-negative
    strides, axes of extent > 1 nested without overlap."""
    if t.dim() and t.shape[-1] > 1 and t.stride(-1) != 1:
        return False
    if any(s < 0 for s in t.stride()):
        return False
    axes = sorted((i for i in range(t.dim()) if t.shape[i] > 1), key=lambda i: t.stride(i), reverse=True)
    return all(t.stride(o) >= t.stride(i) * t.shape[i] for o, i in zip(axes, axes[1:]))


def _describe(t: torch.Tensor | None, name: str, strided: bool):
    """(tensor to keep alive, linattn_tensor) for `t`: its own memory when the library accepts its
    layout (packed, or strided where the argument allows strides), else a packed copy."""
    if t is None:
        return None, None
    if t.device.type != "cpu":
        raise _err(f"{name}: expected a CPU tensor, got device {t.device}")
    code = _DTYPES.get(t.dtype)
    if code is None:
        raise TypeError(f"{name}: expected float32, float16 or bfloat16, got {t.dtype}")
    if t.dim() > _lib.MAX_RANK:
        raise _err(f"{name}: rank {t.dim()} exceeds {_lib.MAX_RANK}")
    packed = t.is_contiguous()
    if not packed and not (strided and _strides_accepted(t)):
        t, packed = t.contiguous(), True
    d = _lib.Tensor()
    d.data = t.data_ptr() if t.numel() else None
    d.dtype = code
    d.rank = t.dim()
    for i in range(t.dim()):
        d.dims[i] = t.shape[i]
        d.strides[i] = 0 if packed else t.stride(i)
    return t, d


@functools.lru_cache(maxsize=64)
def _cached_desc(make, *attrs):
    """A descriptor per attribute set: the calls only read it."""
    return make(*attrs)


def _ref(d):
    return None if d is None else ctypes.byref(d)


def _ctx():
    return shared_context(torch.get_num_threads()).handle


def _int32(t: torch.Tensor | None, name: str):
    if t is None:
        return None, None, 0
    if t.dim() != 1:
        raise _err(f"{name}: expected rank 1, got shape {tuple(t.shape)}")
    t = t.to(device="cpu", dtype=torch.int32).contiguous()
    return t, ctypes.cast(t.data_ptr(), _I32P), t.numel()


def _no_backward(ctx, *grads):
    raise RuntimeError(_NO_GRAD)


def _no_setup(ctx, inputs, output):
    pass


_EAGER = {}  # op -> its Python implementation


def _custom_op(name, mutates_args):
    def wrap(fn):
        op = torch.library.custom_op(name, fn, mutates_args=mutates_args)
        _EAGER[op] = fn
        return op

    return wrap


def _run(op, *args, **kwargs):
    """Calls `op`; in eager mode without autograd the implementation directly: the dispatcher
    adds a fixed cost per call that decode steps notice, and nothing to do."""
    if torch.compiler.is_compiling() or (torch.is_grad_enabled() and any(
            isinstance(a, torch.Tensor) and a.requires_grad for a in (*args, *kwargs.values()))):
        return op(*args, **kwargs)
    return _EAGER[op](*args, **kwargs)


def _register(op, fake):
    op.register_fake(fake)
    op.register_autograd(_no_backward, setup_context=_no_setup)
    return op


# ---------------------------------------------------------------- ONNX LinearAttention


def _la_out_shapes(query, key, value, q_num_heads, kv_num_heads):
    B, T = query.shape[:2]
    dk = query.shape[2] // q_num_heads
    dv = value.shape[2] // kv_num_heads
    return (B, T, max(q_num_heads, kv_num_heads) * dv), (B, kv_num_heads, dk, dv)


@_custom_op("linattn::linear_attention", mutates_args=())
def linear_attention(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, past_state: Optional[torch.Tensor],
                     decay: Optional[torch.Tensor], beta: Optional[torch.Tensor], q_num_heads: int, kv_num_heads: int,
                     update_rule: str = "gated_delta", scale: float = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX LinearAttention: query (B, T, H_q*d_k), key (B, T, H_kv*d_k), value (B, T, H_kv*d_v),
    past_state (B, H_kv, d_k, d_v), decay (B, T, H_kv[*d_k]), beta (B, T, H_kv or 1).
    Returns (output (B, T, max(H_q, H_kv)*d_v), present_state like past_state, query's dtype
    without one)."""
    desc = _cached_desc(linear_attention_desc, q_num_heads, kv_num_heads, update_rule, scale)
    out_shape, state_shape = _la_out_shapes(query, key, value, q_num_heads, kv_num_heads)
    keep = [_describe(x, n, s) for x, n, s in ((query, "query", True), (key, "key", True), (value, "value", True),
                                              (past_state, "past_state", False), (decay, "decay", True),
                                              (beta, "beta", True))]
    out = torch.empty(out_shape, dtype=query.dtype)
    present = torch.empty(state_shape, dtype=past_state.dtype if past_state is not None else query.dtype)
    _, t_out = _describe(out, "output", False)
    _, t_present = _describe(present, "present_state", False)
    t = [_ref(d) for _, d in keep]
    _lib.check(_lib.unchecked("linattn_linear_attention")(
        _ctx(), ctypes.byref(desc), *t[:3], t[3], t[4], t[5], ctypes.byref(t_out), ctypes.byref(t_present), None,
        _NO_WORKSPACE))
    return out, present


def _la_fake(query, key, value, past_state, decay, beta, q_num_heads, kv_num_heads, update_rule="gated_delta",
             scale=0.0):
    out_shape, state_shape = _la_out_shapes(query, key, value, q_num_heads, kv_num_heads)
    sdt = past_state.dtype if past_state is not None else query.dtype
    return query.new_empty(out_shape), query.new_empty(state_shape, dtype=sdt)


_register(linear_attention, _la_fake)


# ---------------------------------------------------------------- ONNX CausalConvWithState


def _conv_state_shape(input, weight, channels_last):
    S = weight.shape[-1] - 1
    B, C = (input.shape[0], input.shape[2]) if channels_last else input.shape[:2]
    return (B, S, C) if channels_last else (B, C, S)


def _conv_call(desc, input, weight, bias, past_state, out, present):
    keep = [_describe(x, n, s) for x, n, s in ((input, "input", True), (weight, "weight", False),
                                              (bias, "bias", False), (past_state, "past_state", False))]
    _, t_out = _describe(out, "output", False)
    _, t_present = _describe(present, "present_state", False)
    t = [_ref(d) for _, d in keep]
    _lib.check(_lib.unchecked("linattn_causal_conv_with_state")(
        _ctx(), ctypes.byref(desc), *t, ctypes.byref(t_out), _ref(t_present), None, _NO_WORKSPACE))


@_custom_op("linattn::causal_conv_with_state", mutates_args=())
def causal_conv_with_state(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                           past_state: Optional[torch.Tensor], activation: str = "none",
                           channels_last: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """ONNX CausalConvWithState: input (B, C, L) [channels_last: (B, L, C)], weight (C, 1, k),
    bias (C), past_state (B, C, k-1) [(B, k-1, C)]. Returns (output like input, present_state)."""
    desc = _cached_desc(causal_conv_desc, activation, 1, channels_last)
    out = torch.empty(input.shape, dtype=input.dtype)
    present = torch.empty(_conv_state_shape(input, weight, channels_last), dtype=input.dtype)
    _conv_call(desc, input, weight, bias, past_state, out, present)
    return out, present


def _conv_fake(input, weight, bias, past_state, activation="none", channels_last=False):
    return input.new_empty(input.shape), input.new_empty(_conv_state_shape(input, weight, channels_last))


_register(causal_conv_with_state, _conv_fake)


@_custom_op("linattn::causal_conv_update", mutates_args=("conv_state",))
def causal_conv_update(input: torch.Tensor, conv_state: torch.Tensor, weight: torch.Tensor,
                       bias: Optional[torch.Tensor], activation: str = "none") -> torch.Tensor:
    """causal-conv1d's causal_conv1d_update: input (B, C, L), conv_state (B, C, W) with W >= k-1
    (transformers keeps W = k), updated in place to the last W columns of concat(conv_state, input).
    Returns the output (B, C, L)."""
    k = weight.shape[-1]
    W = conv_state.shape[-1]
    L = input.shape[-1]
    if W < k - 1:
        raise _err(f"conv_state: expected (B, C, W) with W >= k - 1 = {k - 1}, got shape {tuple(conv_state.shape)}")
    desc = _cached_desc(causal_conv_desc, activation)
    w = weight.reshape(weight.shape[0], 1, k)
    out = torch.empty(input.shape, dtype=input.dtype)
    if W == k - 1 and conv_state.is_contiguous() and conv_state.dtype == input.dtype:
        _conv_call(desc, input, w, bias, conv_state, out, conv_state)  # the library updates it in place
        return out
    # The library reads a packed (B, C, k-1) past state: the last k-1 columns of a wider cache are
    # a strided view, so they are copied (B*C*(k-1) elements).
    past = conv_state[..., W - (k - 1):].to(input.dtype).contiguous()
    _conv_call(desc, input, w, bias, past, out, None)
    if L >= W:
        conv_state.copy_(input[..., L - W:])
    else:
        conv_state[..., :W - L] = conv_state[..., L:].clone()
        conv_state[..., W - L:] = input
    return out


@causal_conv_update.register_fake
def _conv_update_fake(input, conv_state, weight, bias, activation="none"):
    return input.new_empty(input.shape)



# ---------------------------------------------------------------- packed (varlen) conv


@_custom_op("linattn::varlen_causal_conv", mutates_args=())
def varlen_causal_conv(input: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                       initial_state: torch.Tensor, cu_seqlens: torch.Tensor,
                       activation: str = "none") -> tuple[torch.Tensor, torch.Tensor]:
    """ORT VarlenCausalConvWithState: input (T, C) holding the sequences cu_seqlens (int32, B+1),
    weight (C, 1, k), initial_state (B, C, k-1). Returns (output (T, C), final_state (B, C, k-1))."""
    lib = _lib.lib()
    desc = _lib.VarlenConvDesc()
    lib.linattn_varlen_conv_desc_init(ctypes.byref(desc))
    desc.activation = lib.linattn_activation_from_string(activation.encode())
    if desc.activation == 0:
        raise _err(f"activation: {activation!r} is not one of 'none', 'silu', 'swish'")
    cu, p_cu, n_cu = _int32(cu_seqlens, "cu_seqlens")
    batch = _lib.VarlenBatch()
    batch.batch_size = n_cu - 1
    batch.cu_seqlens = ctypes.cast(p_cu, ctypes.c_void_p)
    keep = [_describe(x, n, s) for x, n, s in ((input, "input", True), (weight, "weight", False),
                                              (bias, "bias", False), (initial_state, "initial_state", False))]
    out = torch.empty(input.shape, dtype=input.dtype)
    final = torch.empty(initial_state.shape, dtype=initial_state.dtype)
    _, t_out = _describe(out, "output", False)
    _, t_final = _describe(final, "final_state", False)
    t = [_ref(d) for _, d in keep]
    _lib.check(lib.linattn_varlen_causal_conv_with_state(
        _ctx(), ctypes.byref(desc), ctypes.byref(batch), *t, None, None, ctypes.byref(t_out), ctypes.byref(t_final),
        None, None, 0))
    return out, final


def _varlen_fake(input, weight, bias, initial_state, cu_seqlens, activation="none"):
    return input.new_empty(input.shape), initial_state.new_empty(initial_state.shape)


_register(varlen_causal_conv, _varlen_fake)


# ---------------------------------------------------------------- ORT GatedDeltaNet


def _gdn_shapes(query, value, initial_state, cu_seqlens):
    Hq, dk = query.shape[-2:]
    Hv, dv = value.shape[-2:]
    if cu_seqlens is not None:
        B = cu_seqlens.shape[0] - 1
    elif query.dim() == 4:
        B = query.shape[0]
    else:
        B = initial_state.shape[0] if initial_state is not None else 0
    return tuple(query.shape[:-2]) + (max(Hq, Hv), dv), (B, Hv, dv, dk)


@_custom_op("linattn::gated_delta_net", mutates_args=())
def gated_delta_net(query: torch.Tensor, key: torch.Tensor, value: torch.Tensor, decay: torch.Tensor,
                    beta: torch.Tensor, initial_state: Optional[torch.Tensor], cu_seqlens: Optional[torch.Tensor],
                    a_log: Optional[torch.Tensor] = None, dt_bias: Optional[torch.Tensor] = None,
                    gate_activation: str = "none", beta_activation: str = "none", qk_l2_norm: bool = False,
                    scale: float = 0.0, output_final_state: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """ORT GatedDeltaNet: query/key (B, S, H_k, d_k) or packed (T, H_k, d_k) with cu_seqlens
    (int32, B+1), value (.., H_v, d_v), decay / beta (.., H_v) (fp32 or query's dtype, both the
    same), initial_state V-major fp32 (B, H_v, d_v, d_k), a_log / dt_bias (H_v) fp32 for the fused
    gates. Returns (output (.., max(H_k, H_v), d_v), final_state V-major fp32, or an empty tensor
    when output_final_state is False)."""
    desc = _cached_desc(gated_delta_net_desc, "gated_delta", gate_activation, beta_activation, int(qk_l2_norm),
                        float(scale))
    out_shape, state_shape = _gdn_shapes(query, value, initial_state, cu_seqlens)
    keep = [_describe(x, n, s) for x, n, s in ((query, "query", True), (key, "key", True), (value, "value", True),
                                              (decay, "decay", False), (beta, "beta", False),
                                              (initial_state, "initial_state", False), (a_log, "a_log", False),
                                              (dt_bias, "dt_bias", False))]
    cu, p_cu, n_cu = _int32(cu_seqlens, "cu_seqlens")
    out = torch.empty(out_shape, dtype=query.dtype)
    final = torch.empty(state_shape if output_final_state else (0,), dtype=torch.float32)
    _, t_out = _describe(out, "output", False)
    _, t_final = _describe(final, "final_state", False) if output_final_state else (None, None)
    t = [_ref(d) for _, d in keep]
    _lib.check(_lib.unchecked("linattn_gated_delta_net")(
        _ctx(), ctypes.byref(desc), t[0], t[1], t[2], p_cu, ctypes.c_int64(n_cu), t[3], t[4], t[5], t[6], t[7],
        None, ctypes.byref(t_out), _ref(t_final), None, None, _NO_WORKSPACE))
    return out, final


def _gdn_fake(query, key, value, decay, beta, initial_state, cu_seqlens, a_log=None, dt_bias=None,
              gate_activation="none", beta_activation="none", qk_l2_norm=False, scale=0.0, output_final_state=True):
    out_shape, state_shape = _gdn_shapes(query, value, initial_state, cu_seqlens)
    return (query.new_empty(out_shape),
            query.new_empty(state_shape if output_final_state else (0,), dtype=torch.float32))


_register(gated_delta_net, _gdn_fake)


# ---------------------------------------------------------------- drop-in entry points


def _v_major_state(state: torch.Tensor | None) -> torch.Tensor | None:
    """fla's (N, H, d_k, d_v) state as the library's V-major fp32 (N, H, d_v, d_k): a view when
    `state` is the transposed view of such a buffer (what the entry points return), else a copy."""
    if state is None:
        return None
    v_major = state.transpose(-1, -2)
    if v_major.dtype != torch.float32 or not v_major.is_contiguous():
        v_major = v_major.to(torch.float32).contiguous()
    return v_major


def _l2norm(x):
    x = x.to(torch.float32)
    return x * torch.rsqrt((x * x).sum(dim=-1, keepdim=True) + _FLA_L2_NORM_EPS)


def chunk_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                           cu_seqlens=None, use_qk_l2norm_in_kernel=False, **kwargs):
    """flash-linear-attention's chunk_gated_delta_rule on CPU tensors: q, k (B, T, H, d_k), v
    (B, T, H_v, d_v) with H_v a multiple of H (value head h reads q/k head h // (H_v // H)), g
    (B, T, H_v) log decay, beta (B, T, H_v), initial_state (N, H_v, d_k, d_v); with cu_seqlens
    (N + 1 offsets) B must be 1. Returns (o (B, T, H_v, d_v) in q's dtype, final state fp32
    (N, H_v, d_k, d_v) or None). The final state is a transposed view of a V-major buffer (see
    the module docstring). use_qk_l2norm_in_kernel normalises q and k in fp32 with fla's epsilon
    (1e-6) before the call, not in the kernel (whose epsilon is ONNX Runtime's 1e-12), and then
    passes q, k and v in fp32. Other keyword arguments (chunk_size, ...) are accepted and
    ignored."""
    if cu_seqlens is not None:
        if q.shape[0] != 1:
            raise _err(f"q: with cu_seqlens the batch must be 1 (packed sequences), got shape {tuple(q.shape)}")
        q, k, v, g, beta = (x[0] for x in (q, k, v, g, beta))
    dtype = q.dtype
    if use_qk_l2norm_in_kernel:
        # fla normalises with eps 1e-6, the library's in-kernel norm (ONNX Runtime's) with 1e-12:
        # the norm is done here in fp32, and v joins q and k in fp32 (the library takes one dtype).
        q, k, v = _l2norm(q), _l2norm(k), v.to(torch.float32)
    # The library takes decay and beta in one dtype, fp32 or q's: fp32 keeps the gates exact.
    g32 = g.to(torch.float32)
    beta32 = beta.to(torch.float32)
    o, final = _run(gated_delta_net, q, k, v, g32, beta32, _v_major_state(initial_state), cu_seqlens,
                    scale=float(scale or 0.0), output_final_state=bool(output_final_state))
    o = o.to(dtype)
    if cu_seqlens is not None:
        o = o.unsqueeze(0)
    return o, (final.transpose(-1, -2) if output_final_state else None)


def fused_recurrent_gated_delta_rule(q, k, v, g, beta, scale=None, initial_state=None, output_final_state=False,
                                     cu_seqlens=None, use_qk_l2norm_in_kernel=False, **kwargs):
    """flash-linear-attention's fused_recurrent_gated_delta_rule: the same op as
    chunk_gated_delta_rule (the library picks the recurrent or the chunked kernel itself)."""
    return chunk_gated_delta_rule(q, k, v, g, beta, scale, initial_state, output_final_state, cu_seqlens,
                                  use_qk_l2norm_in_kernel)


def _conv_weight(weight):
    return weight.reshape(weight.shape[0], 1, weight.shape[-1])


def _seq_idx_to_cu_seqlens(seq_idx, length):
    if seq_idx.dim() != 2 or seq_idx.shape[0] != 1:
        raise _err(f"seq_idx: expected (1, L) with batch 1, got shape {tuple(seq_idx.shape)}")
    ids = seq_idx[0]
    if length and bool((ids[1:] < ids[:-1]).any()):
        raise _err("seq_idx: expected non-decreasing sequence ids (each sequence one run of tokens)")
    _, counts = torch.unique_consecutive(ids, return_counts=True)
    return torch.cat([counts.new_zeros(1), counts.cumsum(0)]).to(torch.int32)


def causal_conv1d_fn(x, weight, bias=None, seq_idx=None, initial_states=None, return_final_states=False,
                     final_states_out=None, activation=None, **kwargs):
    """causal-conv1d's causal_conv1d_fn (and transformers' fallback of it): depthwise causal conv
    of x (B, C, L) with weight (C, k), bias (C), zero left padding or initial_states (B, C, k-1);
    activation None or "silu"/"swish". x in the layout transformers passes ((B, L, C) transposed)
    is read without a copy. seq_idx (1, L) of non-decreasing ids runs the packed (varlen) conv,
    each run from a zero state. Returns out (B, C, L), or (out, final_states (B, C, k-1)) with
    return_final_states."""
    if final_states_out is not None:
        raise _err("final_states_out: not supported (the final states are returned)")
    act = activation or "none"
    dtype = x.dtype  # as transformers: computed in the weight's dtype, returned in x's
    if x.dtype != weight.dtype:
        x = x.to(weight.dtype)
    w = _conv_weight(weight)
    if seq_idx is not None:
        if initial_states is not None:
            raise _err("initial_states: not supported together with seq_idx")
        cu = _seq_idx_to_cu_seqlens(seq_idx, x.shape[-1])
        init = x.new_zeros((cu.shape[0] - 1, x.shape[1], w.shape[-1] - 1))
        out, final = _run(varlen_causal_conv, x[0].transpose(0, 1), w, bias, init, cu, act)
        out = out.transpose(0, 1).unsqueeze(0).to(dtype)
        return (out, final) if return_final_states else out
    # (B, C, L) with unit channel stride is a (B, L, C) tensor: run channels-last on it.
    channels_last = x.shape[1] > 1 and x.stride(1) == 1 and initial_states is None and not return_final_states
    if channels_last:
        out, final = _run(causal_conv_with_state, x.transpose(1, 2), w, bias, None, act, True)
        out = out.transpose(1, 2)
    else:
        out, final = _run(causal_conv_with_state, x, w, bias, initial_states, act, False)
    out = out.to(dtype)
    return (out, final) if return_final_states else out


def causal_conv1d_update(x, conv_state, weight, bias=None, activation=None, cache_seqlens=None,
                         conv_state_indices=None, **kwargs):
    """causal-conv1d's causal_conv1d_update (and transformers'): x (B, C, L) or (B, C), conv_state
    (B, C, W), W >= k-1 (transformers' cache keeps W = k), updated in place; returns out like x."""
    if cache_seqlens is not None or conv_state_indices is not None:
        raise _err("cache_seqlens / conv_state_indices: not supported (circular or indexed conv states)")
    squeeze = x.dim() == 2
    if squeeze:
        x = x.unsqueeze(-1)
    dtype = x.dtype
    if x.dtype != weight.dtype:
        x = x.to(weight.dtype)
    out = _run(causal_conv_update, x, conv_state, weight, bias, activation or "none").to(dtype)
    return out.squeeze(-1) if squeeze else out


# ---------------------------------------------------------------- transformers patch

_PATCHED_MODULES = ("transformers.models.qwen3_next.modeling_qwen3_next",
                    "transformers.models.qwen3_5.modeling_qwen3_5",
                    "transformers.models.qwen3_5_moe.modeling_qwen3_5_moe")
_REPLACEMENTS = {
    "torch_chunk_gated_delta_rule": chunk_gated_delta_rule,
    "torch_recurrent_gated_delta_rule": fused_recurrent_gated_delta_rule,
    "causal_conv1d_fn": causal_conv1d_fn,
    "causal_conv1d_update": causal_conv1d_update,
}
_saved: dict = {}


def _on_cpu(args, kwargs) -> bool:
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device.type == "cpu"
    return False


def _dispatch(ours, original):
    def call(*args, **kwargs):
        if _on_cpu(args, kwargs):
            return ours(*args, **kwargs)
        return original(*args, **kwargs)

    call.__name__ = getattr(original, "__name__", ours.__name__)
    call.__doc__ = ours.__doc__
    call.linattn_original = original
    return call


def patch_transformers() -> list[str]:
    """Makes transformers' Qwen3-Next, Qwen3.5 and Qwen3.5-MoE linear-attention layers call the
    linattn ops on CPU tensors (other devices keep transformers' own functions). Replaces the
    module-level gated delta rule and causal conv functions those layers call; idempotent.
    Returns the names of the modules patched."""
    import importlib

    done = []
    for name in _PATCHED_MODULES:
        try:
            module = importlib.import_module(name)
        except ImportError:
            continue
        if name not in _saved:
            _saved[name] = {attr: getattr(module, attr) for attr in _REPLACEMENTS if hasattr(module, attr)}
            for attr, original in _saved[name].items():
                setattr(module, attr, _dispatch(_REPLACEMENTS[attr], original))
        done.append(name)
    return done


def unpatch() -> None:
    """Restores the functions patch_transformers() replaced."""
    import sys

    for name, originals in list(_saved.items()):
        module = sys.modules.get(name)
        if module is not None:
            for attr, original in originals.items():
                setattr(module, attr, original)
        del _saved[name]
