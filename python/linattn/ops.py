"""The two operators: LinearAttention and CausalConvWithState (ONNX opset 27) on numpy arrays."""

from __future__ import annotations

import ctypes
import operator

import numpy as np

from . import _lib, _tensor
from ._tensor import OutputSlot, input_tensor, resolve_dtype
from .context import _shared as _shared_contexts
from .context import Context, shared_context

UPDATE_RULES = ("linear", "gated", "delta", "gated_delta")
ACTIVATIONS = ("none", "silu", "swish")

# Descriptors (and LinearAttention's inferred shapes) of recent attribute sets, reused by the next
# call with the same ones: a decode loop repeats them every token, and building them costs four
# ctypes calls, several times the C work of a small decode step. Only values of exact built-in
# types make keys (1 == 1.0 == True would share an entry); a failure is never cached, so a bad
# value fails again with its message. The C functions only read a descriptor (const pointers);
# linear_attention_desc / causal_conv_desc still return fresh ones.
_CACHE_LIMIT = 64
_la_desc_cache: dict = {}
_la_shape_cache: dict = {}
_conv_desc_cache: dict = {}
_NO_WORKSPACE = ctypes.c_size_t(0)
_byref = ctypes.byref


def _cache_put(cache: dict, key, value) -> None:
    if len(cache) >= _CACHE_LIMIT:  # many distinct attribute sets: start over rather than track use
        cache.clear()
    cache[key] = value


# ---------------------------------------------------------------- per-call fast path
#
# A decode loop calls an operator with the same attributes, shapes and dtypes every token, most
# often with packed native arrays. Such a call's descriptors differ from the previous one's only
# in the data addresses, so a _Plan, cached per (attributes, shapes, dtypes, which arrays are
# given) key, keeps them packed in one buffer and a call patches the addresses in and calls C.
# One _FastPath object per operator holds its plans; both operators share its code, and differ
# only in the attribute types they accept and the slot order of their arrays.
# A plan is made only after the general path (_linear_attention, _causal_conv_with_state) has
# succeeded on a call with that key, so every check of the general path that depends on the key
# alone is known to pass; the fast path itself checks the rest (exact ndarray types, C-contiguous
# and aligned, outputs writeable) and leaves any call it does not cover, error or not, to the
# general path: the same results and the same errors. Nothing is copied, so such a call takes
# the same arrays the general path would pass.

_ndarray = np.ndarray
_INT32 = np.dtype(np.int32)
_empty = np.empty
_id = id
_head = _tensor.array_head
_FAST = _tensor.FIELD_ADDRESS_WORKS
_IN_FLAGS = _tensor.FLAG_C_CONTIGUOUS | _tensor.FLAG_ALIGNED  # passed as they are, packed
_WRITEABLE = _tensor.FLAG_WRITEABLE  # and outputs, written directly
_TENSOR_SIZE = ctypes.sizeof(_lib.Tensor)
# A plan keeps its descriptors as 64-bit words, slot i's data address at word i * _SLOT_WORDS
# (the descriptor's first field, which this checks).
_SLOT_WORDS = _TENSOR_SIZE // 8
assert _TENSOR_SIZE % 8 == 0 and _lib.Tensor.data.offset == 0


class _CountOf:
    """A C argument that is the element count (int64) of a slot's array, 0 when absent."""

    __slots__ = ("slot",)

    def __init__(self, slot: int):
        self.slot = slot


class _Plan:
    """A call's descriptors without their data addresses, and the shapes and dtypes of the outputs
    it allocates. Each array of the C call has a fixed slot (None where absent). A call takes
    one (words, args) entry from `free`: `words` the slots as 64-bit words (the data address of
    slot i at word i * _SLOT_WORDS), `args` the C arguments after the context; it puts the entry
    back after the call, so concurrent calls (ctypes releases the GIL) never share one."""

    __slots__ = ("fn", "desc", "template", "used", "address_slots", "free", "alloc", "c_args", "pointer_slots")

    def __init__(self, fn, desc, arrays, alloc, c_args, pointer_slots):
        self.fn = fn
        self.desc = desc
        self.used = tuple(a is not None for a in arrays)
        # (word of the data address, slot) of each given array
        self.address_slots = tuple((i * _SLOT_WORDS, i) for i, a in enumerate(arrays) if a is not None)
        template = bytearray(_TENSOR_SIZE * len(arrays))
        for i, a in enumerate(arrays):
            if a is not None and i not in pointer_slots:
                _tensor._PACKED_LAYOUT[a.ndim].pack_into(template, i * _TENSOR_SIZE, 0, _tensor.DTYPE_CODES[a.dtype],
                                                         a.ndim, *a.shape)
        self.template = bytes(template)
        self.free = []
        self.alloc = alloc  # (slot, shape, dtype) of each output the call allocates
        self.pointer_slots = pointer_slots
        # the C arguments after the descriptor: a slot index, or a _CountOf (fixed by the key)
        self.c_args = tuple(ctypes.c_int64(arrays[c.slot].size if arrays[c.slot] is not None else 0)
                            if type(c) is _CountOf else c for c in c_args)

    def entry(self):
        buf = (ctypes.c_char * len(self.template)).from_buffer_copy(self.template)
        words = memoryview(buf).cast("B").cast("Q")
        # a pointer slot passes its data address itself (a void* read from the slot's first word)
        args = tuple((None if not self.used[c] else ctypes.c_void_p.from_buffer(buf, c * _TENSOR_SIZE)
                      if c in self.pointer_slots else _byref(buf, c * _TENSOR_SIZE)) if type(c) is int else c
                     for c in self.c_args)
        return words, (_byref(self.desc), *args, None, _NO_WORKSPACE)


class _FastPath:
    """The per-call fast path of one operator whose C entry point takes (context, descriptor, the
    arrays' arguments, workspace, size): its plans, keyed by the attributes and the shapes and
    dtypes of the arrays given, and the last plan used. The arrays are the `n_inputs` inputs then
    the `n_outputs` outputs, each in a slot; `c_args` orders the C arguments between the
    descriptor and the workspace (slot indices and _CountOf; default: the slots in order), and
    `pointer_slots` are int32 arrays passed as a plain pointer rather than a tensor."""

    __slots__ = ("c_name", "plans", "last", "n_inputs", "need_flags", "c_args", "pointer_slots")

    def __init__(self, c_name: str, n_inputs: int, n_outputs: int = 2, c_args: tuple | None = None,
                 pointer_slots=()):
        self.c_name = c_name
        self.plans: dict = {}
        self.last = ((), None)  # the key and plan of the last fast call
        self.n_inputs = n_inputs
        # the array flags each slot needs: inputs passed as they are, packed; outputs written directly
        self.need_flags = (_IN_FLAGS,) * n_inputs + (_IN_FLAGS | _WRITEABLE,) * n_outputs
        self.c_args = c_args if c_args is not None else tuple(range(n_inputs + n_outputs))
        self.pointer_slots = frozenset(pointer_slots)

    def reset(self) -> None:
        self.plans.clear()
        self.last = ((), None)

    def call(self, attrs: tuple, arrays: tuple, threads, context):
        """A call with these attributes (exact built-in types: the caller checks) and arrays (the
        inputs, then the outputs given, None where absent or to allocate) -> (result, key): result
        the outputs when a plan ran the call, else None; key, when result is None, the plan key
        for remember() after the general path (None when the general path must not leave a plan)."""
        key = [attrs]
        heads = []  # per slot (None where absent)
        for a, need in zip(arrays, self.need_flags):  # one pass: the key, the heads, the flags checked
            if a is None:
                heads.append(None)
                key.append(None)
            elif type(a) is _ndarray:
                h = _head(_id(a))
                if h.flags & need != need:
                    return _NO_PLAN
                heads.append(h)
                key.append((a.shape, a.dtype))
            else:
                return _NO_PLAN
        key = tuple(key)
        last_key, plan = self.last
        if key != last_key:  # a decode loop repeats one key: one comparison instead of a hash
            plan = self.plans.get(key)
            if plan:
                self.last = (key, plan)
        if plan is False:  # no plan can describe this key
            return _NO_PLAN
        if context is None:  # the shared context, unless this call would create it
            ctx = _shared_contexts.get(0 if threads is None else threads if type(threads) is int else None)
        else:
            ctx = context if threads is None else None
        if plan is None or ctx is None:
            return None, key
        handle = ctx.handle
        n_in = self.n_inputs
        if plan.alloc:
            outputs = list(arrays[n_in:])
            try:
                for i, shape, dtype in plan.alloc:
                    outputs[i - n_in] = o = _empty(shape, dtype)
                    heads[i] = _head(_id(o))
            except (ValueError, MemoryError, OverflowError):  # the general path gives its own error
                return _NO_PLAN
            outputs = tuple(outputs)
        else:
            outputs = arrays[n_in:]
        try:
            entry = plan.free.pop()
        except IndexError:
            entry = plan.entry()
        words, args = entry
        for w, i in plan.address_slots:
            words[w] = heads[i].data
        status = plan.fn(handle, *args)
        plan.free.append(entry)
        if status:
            _lib.check(status)
        return outputs, None

    def remember(self, key, make_desc, arrays, result) -> None:
        """After a general call with fast-path key `key` succeeded (arrays: the inputs and outputs
        given, as passed to call(); result: the outputs it returned): a plan for the next calls
        with that key, or False when no plan can describe its arrays."""
        if key is None or key in self.plans:
            return
        n_in = self.n_inputs
        slots = (*arrays[:n_in], *result)
        plan = False
        if _plan_arrays_ok(slots, self.pointer_slots):
            alloc = tuple((i, r.shape, r.dtype) for i, (g, r) in enumerate(zip(arrays[n_in:], result), n_in)
                          if g is None and r is not None)
            plan = _Plan(_lib.unchecked(self.c_name), make_desc(), slots, alloc, self.c_args, self.pointer_slots)
        _cache_put(self.plans, key, plan)


def _given_pair(out):
    """out= of the two opset-27 operators as (output, present_state) given, or None when it is
    not a form the fast path takes."""
    if out is None:
        return None, None
    if type(out) is _ndarray:
        return out, None
    if (type(out) is tuple or type(out) is list) and len(out) == 2:
        return out
    return None


_NO_PLAN = (None, None)
_la_fast = _FastPath("linattn_linear_attention", 6)
_conv_fast = _FastPath("linattn_causal_conv_with_state", 4)


def _plan_arrays_ok(arrays, pointer_slots=frozenset()) -> bool:
    """Whether a plan can describe these arrays (the key alone decides): each of a linattn dtype
    in native byte order (the general path converts others), rank <= MAX_RANK and non-empty (the
    general path passes a null address for an empty one); a pointer slot's a native int32 vector
    (the general path passes its address even when empty)."""
    for i, a in enumerate(arrays):
        if a is None:
            continue
        if i in pointer_slots:
            if a.dtype != _INT32 or a.ndim != 1:
                return False
        elif a.dtype not in _tensor.DTYPE_CODES or a.ndim > _lib.MAX_RANK or a.size == 0:
            return False
    return True


def _context(context: Context | None, threads: int | None) -> Context:
    if context is not None:
        if threads is not None:
            raise ValueError("pass either context or threads, not both")
        return context
    return shared_context(threads)


def _ptr(t: _lib.Tensor | None):
    return ctypes.byref(t) if t is not None else None


def _split_out(out, names: tuple[str, str]):
    if out is None:
        return None, None
    if isinstance(out, np.ndarray):
        return out, None
    if isinstance(out, (tuple, list)) and len(out) == 2:
        return out[0], out[1]
    raise TypeError(f"out must be an array ({names[0]}) or a pair ({names[0]}, {names[1]})")


def _rank_error(name: str, a: np.ndarray, rank: int, doc: str) -> _lib.LinattnError:
    return _lib.LinattnError(
        _lib.ERROR_INVALID_ARGUMENT, f"{name}: expected rank {rank} {doc}, got shape {tuple(a.shape)}"
    )


def _int_attr(value, name: str) -> int:
    """An integer attribute as a C int64: non-integers (1.5, "4") are a TypeError, values outside
    int64 an INVALID_ARGUMENT naming the attribute (ctypes would silently wrap them)."""
    try:
        if isinstance(value, bool):  # an int subclass, but True is no head count
            raise TypeError
        v = operator.index(value)
    except TypeError:
        raise TypeError(f"{name}: expected an integer, got {value!r}") from None
    if not -(2**63) <= v < 2**63:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, f"{name}: {v} does not fit in int64")
    return v


def _c_string(value) -> bytes:
    """A name for the C library, which reads up to the first NUL: one with a NUL inside becomes the
    empty string, which no name matches (so 'gated_delta\\0x' is not taken for gated_delta)."""
    text = str(value)
    return b"" if "\0" in text else text.encode()


def _required(value, name: str, shape_doc: str):
    if value is None:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, f"{name}: required, got None; expected shape {shape_doc}")
    return value


def _la_inputs(query, key, value, past_state, decay, beta, tokens: str):
    """LinearAttention's inputs as (array, descriptor) pairs, flattened: q, t_q, k, t_k, v, t_v,
    past, t_past, t_decay, t_beta. tokens names the token axes ("B, T": rank 3; "total_tokens":
    rank 2) in the messages."""
    q, t_q = input_tensor(_required(query, "query", f"({tokens}, q_num_heads*d_k)"), "query", strided=True)
    k, t_k = input_tensor(_required(key, "key", f"({tokens}, kv_num_heads*d_k)"), "key", strided=True)
    v, t_v = input_tensor(_required(value, "value", f"({tokens}, kv_num_heads*d_v)"), "value", strided=True)
    past, t_past = input_tensor(past_state, "past_state", strided=False)
    _, t_g = input_tensor(decay, "decay", strided=True)
    _, t_b = input_tensor(beta, "beta", strided=True)
    rank = 2 + tokens.count(",")
    for name, a in (("query", q), ("key", k), ("value", v)):
        if a.ndim != rank:
            raise _rank_error(name, a, rank, f"({tokens}, heads*dim)")
    return q, t_q, k, t_k, v, t_v, past, t_past, t_g, t_b


def _state_dtype(past, state_dtype, state_given, default):
    """present_state's dtype: past_state's, else state_dtype if given, else a given present_state's,
    else default (the ONNX rule, with a given output array standing for the caller's choice)."""
    if past is not None:
        return past.dtype
    if state_dtype is not None:
        return resolve_dtype(state_dtype)
    return state_given.dtype if state_given is not None else default


def _la_outputs(out, out_shape, state_shape, dtype, past, state_dtype, return_state):
    """(output, present_state) OutputSlots of a LinearAttention call, present None when neither
    asked for nor given."""
    out_given, state_given = _split_out(out, ("output", "present_state"))
    s_dtype = _state_dtype(past, state_dtype, state_given, dtype)
    output = OutputSlot("output", out_shape, dtype, out_given, strided=True)
    present = None
    if return_state or state_given is not None:
        present = OutputSlot("present_state", state_shape, s_dtype, state_given, strided=False)
    return output, present


def _conv_inputs(input, weight, bias, past_state, channels_last: bool):
    """CausalConvWithState's inputs as (array, descriptor) pairs, flattened: x, t_x, w, t_w, t_bias,
    t_past."""
    input_doc = "(B, L, C)" if channels_last else "(B, C, L)"
    x, t_x = input_tensor(_required(input, "input", input_doc), "input", strided=True)
    w, t_w = input_tensor(_required(weight, "weight", "(C, 1, k)"), "weight", strided=False)
    _, t_b = input_tensor(bias, "bias", strided=False)
    _, t_past = input_tensor(past_state, "past_state", strided=False)
    if x.ndim != 3:
        raise _rank_error("input", x, 3, input_doc)
    if w.ndim != 3:
        raise _rank_error("weight", w, 3, "(C, 1, k)")
    return x, t_x, w, t_w, t_b, t_past


def _finish(output, present):
    """(output, present_state) of a call: present None when not made."""
    return output.finish(), (present.finish() if present is not None else None)


def linear_attention_desc(
    q_num_heads: int,
    kv_num_heads: int,
    update_rule: str | None = "gated_delta",
    scale: float | None = 0.0,
    chunk_size: int | None = 64,
    ort_contrib: bool = False,
) -> _lib.LinearAttentionDesc:
    """None for update_rule / scale / chunk_size means the attribute is absent: its ONNX default
    (gated_delta, 0.0 = 1/sqrt(d_k), 64), as in onnx.reference."""
    if update_rule is None:
        update_rule = "gated_delta"
    if scale is None:
        scale = 0.0
    if chunk_size is None:
        chunk_size = 64
    lib = _lib.lib()
    desc = _lib.LinearAttentionDesc()
    lib.linattn_linear_attention_desc_init(ctypes.byref(desc))
    desc.update_rule = lib.linattn_update_rule_from_string(_c_string(update_rule))
    if desc.update_rule == 0:  # LINATTN_UPDATE_INVALID: name the string, not the enum value
        raise _lib.LinattnError(
            _lib.ERROR_INVALID_ARGUMENT,
            f"update_rule: {update_rule!r} is not one of {', '.join(repr(r) for r in UPDATE_RULES)}",
        )
    desc.q_num_heads = _int_attr(q_num_heads, "q_num_heads")
    desc.kv_num_heads = _int_attr(kv_num_heads, "kv_num_heads")
    try:
        desc.scale = float(scale)
    except (TypeError, ValueError):
        raise TypeError(f"scale: expected a float, got {scale!r}") from None
    desc.chunk_size = _int_attr(chunk_size, "chunk_size")
    desc.flags = _lib.LA_ORT_CONTRIB if ort_contrib else 0
    return desc


def _infer_shapes(desc: _lib.LinearAttentionDesc, query_shape, key_shape, value_shape):
    lib = _lib.lib()
    arr3 = ctypes.c_int64 * 3
    out_dims, state_dims = arr3(), (ctypes.c_int64 * 4)()
    _lib.check(
        lib.linattn_linear_attention_infer_shapes(
            ctypes.byref(desc), arr3(*query_shape), arr3(*key_shape), arr3(*value_shape), out_dims, state_dims
        )
    )
    return tuple(out_dims), tuple(state_dims)


def linear_attention_shapes(query_shape, key_shape, value_shape, *, q_num_heads: int, kv_num_heads: int,
                            ort_contrib: bool = False):
    """(output shape, state shape) of a LinearAttention call, from the library's shape inference."""
    desc = linear_attention_desc(q_num_heads, kv_num_heads, ort_contrib=ort_contrib)
    return _infer_shapes(desc, query_shape, key_shape, value_shape)


def _linear_attention(query, key, value, past_state=None, decay=None, beta=None, *, q_num_heads: int,
                      kv_num_heads: int, update_rule: str | None = "gated_delta", scale: float | None = 0.0,
                      chunk_size: int | None = 64, ort_contrib: bool = False, state_dtype=None, out=None,
                      return_state: bool = True, threads: int | None = None, context: Context | None = None):
    """linear_attention through the general path: every argument normalised and checked."""
    ctx = _context(context, threads)
    q, t_q, k, t_k, v, t_v, past, t_past, t_g, t_b = _la_inputs(query, key, value, past_state, decay, beta, "B, T")

    attrs = None  # cache key of the attributes (see _la_desc_cache)
    if (type(q_num_heads) is int and type(kv_num_heads) is int and (update_rule is None or type(update_rule) is str)
            and (scale is None or type(scale) in (float, int)) and (chunk_size is None or type(chunk_size) is int)
            and type(ort_contrib) is bool):
        attrs = (q_num_heads, kv_num_heads, update_rule, scale, chunk_size, ort_contrib)
    desc = _la_desc_cache.get(attrs) if attrs is not None else None
    if desc is None:
        desc = linear_attention_desc(q_num_heads, kv_num_heads, update_rule, scale, chunk_size, ort_contrib)
        if attrs is not None:
            _cache_put(_la_desc_cache, attrs, desc)
    shape_key = (attrs, q.shape, k.shape, v.shape) if attrs is not None else None
    shapes = _la_shape_cache.get(shape_key) if shape_key is not None else None
    if shapes is None:
        shapes = _infer_shapes(desc, q.shape, k.shape, v.shape)
        if shape_key is not None:
            _cache_put(_la_shape_cache, shape_key, shapes)
    out_shape, state_shape = shapes

    output, present = _la_outputs(out, out_shape, state_shape, q.dtype, past, state_dtype, return_state)

    t_out = output.describe()
    t_present = present.describe() if present is not None else None
    status = _lib.unchecked("linattn_linear_attention")(
        ctx.handle, _byref(desc), _byref(t_q), _byref(t_k), _byref(t_v), _ptr(t_past), _ptr(t_g), _ptr(t_b),
        _byref(t_out), _ptr(t_present), None, _NO_WORKSPACE,
    )
    _lib.check(status)
    return _finish(output, present)


def causal_conv_desc(activation: str | None = "none", dilation: int = 1, channels_last: bool = False):
    """activation None means the attribute is absent: "none", as in onnx.reference."""
    if activation is None:
        activation = "none"
    lib = _lib.lib()
    desc = _lib.CausalConvDesc()
    lib.linattn_causal_conv_desc_init(ctypes.byref(desc))
    desc.activation = lib.linattn_activation_from_string(_c_string(activation))
    if desc.activation == 0:  # LINATTN_ACTIVATION_INVALID
        raise _lib.LinattnError(
            _lib.ERROR_INVALID_ARGUMENT,
            f"activation: {activation!r} is not one of {', '.join(repr(a) for a in ACTIVATIONS)}",
        )
    desc.dilation = _int_attr(dilation, "dilation")
    desc.channels_last = 1 if channels_last else 0
    return desc


def _conv_state_shape(desc: _lib.CausalConvDesc, input_shape, weight_shape):
    arr3 = ctypes.c_int64 * 3
    out_dims, state_dims = arr3(), arr3()
    _lib.check(_lib.lib().linattn_causal_conv_infer_shapes(ctypes.byref(desc), arr3(*input_shape),
                                                           arr3(*weight_shape), out_dims, state_dims))
    return tuple(state_dims)


def _causal_conv_with_state(input, weight, bias=None, past_state=None, *, activation: str | None = "none",
                            dilation: int = 1, channels_last: bool = False, out=None, return_state: bool = True,
                            threads: int | None = None, context: Context | None = None):
    """causal_conv_with_state through the general path: every argument normalised and checked."""
    ctx = _context(context, threads)
    x, t_x, w, t_w, t_b, t_past = _conv_inputs(input, weight, bias, past_state, channels_last)
    attrs = None  # cache key of the attributes (see _la_desc_cache)
    if (activation is None or type(activation) is str) and type(dilation) is int and type(channels_last) is bool:
        attrs = (activation, dilation, channels_last)
    desc = _conv_desc_cache.get(attrs) if attrs is not None else None
    if desc is None:
        desc = causal_conv_desc(activation, dilation, channels_last)
        if attrs is not None:
            _cache_put(_conv_desc_cache, attrs, desc)

    state_shape = _conv_state_shape(desc, x.shape, w.shape)
    state_len = state_shape[1 if channels_last else 2]
    out_given, state_given = _split_out(out, ("output", "present_state"))
    output = OutputSlot("output", x.shape, x.dtype, out_given, strided=True)
    present = None
    if return_state or state_given is not None:
        try:
            present = OutputSlot("present_state", state_shape, x.dtype, state_given, strided=False)
        except (ValueError, MemoryError, OverflowError):
            raise _lib.LinattnError(
                _lib.ERROR_OUT_OF_MEMORY,
                f"present_state: cannot allocate shape {state_shape} ((k-1)*dilation = {state_len} positions); "
                "pass return_state=False to skip it",
            ) from None

    t_out = output.describe()
    t_present = present.describe() if present is not None else None
    status = _lib.unchecked("linattn_causal_conv_with_state")(
        ctx.handle, _byref(desc), _byref(t_x), _byref(t_w), _ptr(t_b), _ptr(t_past), _byref(t_out), _ptr(t_present),
        None, _NO_WORKSPACE,
    )
    _lib.check(status)
    return _finish(output, present)


def linear_attention(query, key, value, past_state=None, decay=None, beta=None, *, q_num_heads: int,
                     kv_num_heads: int, update_rule: str | None = "gated_delta", scale: float | None = 0.0,
                     chunk_size: int | None = 64, ort_contrib: bool = False, state_dtype=None, out=None,
                     return_state: bool = True, threads: int | None = None, context: Context | None = None,
                     state_window: int = 0):
    """ONNX LinearAttention-27. Returns (output, present_state).

    query (B, T, H_q*d_k), key (B, T, H_kv*d_k), value (B, T, H_kv*d_v), decay (B, T, H_kv) or
    (B, T, H_kv*d_k), beta (B, T, H_kv) or (B, T, 1): one dtype T (float32, float16 or
    ml_dtypes.bfloat16); q/k/v/decay/beta may be strided views (innermost stride 1, passed without a
    copy). past_state (B, H_kv, d_k, d_v) of dtype S. output has dtype T; present_state has
    past_state's dtype, else `state_dtype` if given, else T (the ONNX rule).

    update_rule / scale / chunk_size None: the attribute's ONNX default (as if absent).
    ort_contrib enables ONNX Runtime's com.microsoft extensions (inverse GQA, separate key heads).
    out: an output array, or a pair (output, present_state) with either None; present_state may be
    past_state itself (in-place update). return_state=False skips present_state (returns None).
    threads: use the shared context with that many threads; context: an explicit Context.
    state_window W (ONNX Runtime contrib, 0..8): past_state and present_state are
    (W, B, H_kv, d_k, d_v); slot j of present_state is the state after token T - W + j (slot W - 1
    is the W = 0 state), slots j < W - T are zeros; only slot W - 1 of past_state is read.
    Errors from the library raise LinattnError carrying its message.
    """
    if state_window:
        return _windowed(_la_window_call, state_window, query, key, value, past_state, decay, beta,
                         q_num_heads=q_num_heads, kv_num_heads=kv_num_heads, update_rule=update_rule, scale=scale,
                         chunk_size=chunk_size, ort_contrib=ort_contrib, state_dtype=state_dtype, out=out,
                         return_state=return_state, threads=threads, context=context)
    key_ = arrays = None
    if (_FAST and type(q_num_heads) is int and type(kv_num_heads) is int
            and (update_rule is None or type(update_rule) is str)
            and (scale is None or type(scale) is float or type(scale) is int)
            and (chunk_size is None or type(chunk_size) is int) and type(ort_contrib) is bool
            and (return_state is True or return_state is False)
            and (state_dtype is None or past_state is not None)):  # else state_dtype decides present's dtype
        given = _given_pair(out)
        if given is not None:
            arrays = (query, key, value, past_state, decay, beta, *given)
            result, key_ = _la_fast.call((q_num_heads, kv_num_heads, update_rule, scale, chunk_size, ort_contrib,
                                          return_state), arrays, threads, context)
            if result is not None:
                return result
    result = _linear_attention(query, key, value, past_state, decay, beta, q_num_heads=q_num_heads,
                               kv_num_heads=kv_num_heads, update_rule=update_rule, scale=scale, chunk_size=chunk_size,
                               ort_contrib=ort_contrib, state_dtype=state_dtype, out=out, return_state=return_state,
                               threads=threads, context=context)
    _la_fast.remember(key_, lambda: linear_attention_desc(q_num_heads, kv_num_heads, update_rule, scale, chunk_size,
                                                          ort_contrib), arrays, result)
    return result


def causal_conv_with_state(
    input,
    weight,
    bias=None,
    past_state=None,
    *,
    activation: str | None = "none",
    dilation: int = 1,
    channels_last: bool = False,
    out=None,
    return_state: bool = True,
    threads: int | None = None,
    context: Context | None = None,
    state_window: int = 0,
):
    """ONNX CausalConvWithState-27. Returns (output, present_state).

    input (B, C, L) [channels_last: (B, L, C)], weight (C, 1, k), bias (C), past_state
    (B, C, (k-1)*dilation) [channels_last: (B, (k-1)*dilation, C)], all one dtype. activation is
    "none", "silu" or "swish" (None: absent, i.e. "none"). dilation and channels_last are ONNX
    Runtime extensions. input and output may be strided views (innermost stride 1).
    out / return_state / threads / context as in linear_attention.
    state_window W (ONNX Runtime contrib, 0..8): past_state and present_state are (W, B, C, S)
    [channels_last: (W, B, S, C)]; slot j of present_state is the state after position L - W + j
    (slot W - 1 is the W = 0 state), slots j < W - L are zeros; only slot W - 1 of past_state is read.
    """
    if state_window:
        return _windowed(_conv_window_call, state_window, input, weight, bias, past_state, activation=activation,
                         dilation=dilation, channels_last=channels_last, out=out, return_state=return_state,
                         threads=threads, context=context)
    key_ = arrays = None
    if (_FAST and (activation is None or type(activation) is str) and type(dilation) is int
            and type(channels_last) is bool and (return_state is True or return_state is False)):
        given = _given_pair(out)
        if given is not None:
            arrays = (input, weight, bias, past_state, *given)
            result, key_ = _conv_fast.call((activation, dilation, channels_last, return_state), arrays, threads,
                                           context)
            if result is not None:
                return result
    result = _causal_conv_with_state(input, weight, bias, past_state, activation=activation, dilation=dilation,
                                     channels_last=channels_last, out=out, return_state=return_state,
                                     threads=threads, context=context)
    _conv_fast.remember(key_, lambda: causal_conv_desc(activation, dilation, channels_last), arrays, result)
    return result


def _int32_array(value, name: str, length: int | None, doc: str):
    """A host int32 array for the C call (None stays None): integer dtypes only, values checked
    to fit int32 (a silent wrap would turn a bad offset into a valid-looking one)."""
    if value is None:
        return None
    a = np.asarray(value)
    if a.dtype == np.bool_:
        a = a.astype(np.int32)
    if a.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array {doc}, got dtype {a.dtype}")
    if a.ndim != 1 or (length is not None and a.shape[0] != length):
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT,
                                f"{name}: expected shape {doc}, got {tuple(a.shape)}")
    if a.size and (int(a.min()) < -(2**31) or int(a.max()) >= 2**31):
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, f"{name}: values must fit in int32")
    return np.ascontiguousarray(a, dtype=np.int32)


def _addr(a):
    return None if a is None else a.ctypes.data


def varlen_causal_conv_with_state(
    input,
    weight,
    cumulative_sequence_length,
    bias=None,
    initial_state=None,
    capture_count=None,
    *,
    activation: str | None = "none",
    dilation: int = 1,
    state_update_capacity: int = 0,
    state_indices=None,
    has_initial_state=None,
    state_channels_last: bool = False,
    out=None,
    threads: int | None = None,
    context: Context | None = None,
):
    """ONNX Runtime's com.microsoft VarlenCausalConvWithState (v1) on a packed ragged batch.
    Returns (output, final_state, state_update); state_update is None when
    state_update_capacity is 0.

    input (total_tokens, C) token-major; weight (C, 1, k); cumulative_sequence_length (B + 1)
    integer offsets (sequence i is tokens [cu[i], cu[i + 1]); length 0 passes the state through);
    bias (C); initial_state (B, C, (k-1)*dilation), required; capture_count (B) integers, required
    exactly when state_update_capacity (0..8) is positive: state_update (B, capacity, C) holds the
    first clamp(capture_count[i], 0, min(capacity, length i)) input tokens of each sequence, zeros
    after. activation "none", "silu" or "swish".

    Extensions (not in ORT): state_indices (B) makes initial_state a pool of N states, sequence i
    reading and writing slot state_indices[i] (distinct, in [0, N)); has_initial_state (B) bools,
    False = the sequence starts from zeros; state_channels_last: states (N, (k-1)*dilation, C).
    out: output, or a tuple (output, final_state[, state_update]); final_state may be
    initial_state itself (in place; with a pool, slots no sequence names keep their values).
    """
    ctx = _context(context, threads)
    x, t_x = input_tensor(_required(input, "input", "(total_tokens, C)"), "input", strided=True)
    w, t_w = input_tensor(_required(weight, "weight", "(C, 1, k)"), "weight", strided=False)
    _, t_b = input_tensor(bias, "bias", strided=False)
    sdoc = "(N, (k-1)*dilation, C)" if state_channels_last else "(N, C, (k-1)*dilation)"
    s_in, t_s = input_tensor(_required(initial_state, "initial_state", sdoc), "initial_state", strided=False)
    if x.ndim != 2:
        raise _rank_error("input", x, 2, "(total_tokens, C)")
    cu = _int32_array(_required(cumulative_sequence_length, "cumulative_sequence_length", "(B + 1)"),
                      "cumulative_sequence_length", None, "(B + 1)")
    if cu.shape[0] < 1:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT,
                                "cumulative_sequence_length: expected shape (B + 1), got (0,)")
    batch = cu.shape[0] - 1
    cc = _int32_array(capture_count, "capture_count", batch, f"({batch})")
    idx = _int32_array(state_indices, "state_indices", batch, f"({batch})")
    has = _int32_array(has_initial_state, "has_initial_state", batch, f"({batch})")
    has = None if has is None else (has != 0).astype(np.uint8)

    lib = _lib.lib()
    desc = _lib.VarlenConvDesc()
    lib.linattn_varlen_conv_desc_init(ctypes.byref(desc))
    conv = causal_conv_desc(activation, dilation)
    desc.activation = conv.activation
    desc.dilation = conv.dilation
    desc.state_update_capacity = _int_attr(state_update_capacity, "state_update_capacity")
    desc.state_channels_last = 1 if state_channels_last else 0
    seqs = _lib.VarlenBatch(batch, _addr(cu), _addr(cc), _addr(idx), _addr(has))

    given = out if isinstance(out, (tuple, list)) else (out,)
    if len(given) > 3:
        raise TypeError("out must be an array (output) or a tuple (output, final_state[, state_update])")
    given = tuple(given) + (None,) * (3 - len(given))
    output = OutputSlot("output", x.shape, x.dtype, given[0], strided=True)
    final = OutputSlot("final_state", s_in.shape, x.dtype, given[1], strided=False)
    cap = desc.state_update_capacity
    update = None
    if cap > 0 or given[2] is not None:
        update = OutputSlot("state_update", (batch, max(cap, 0), x.shape[1]), x.dtype, given[2], strided=False)
    t_out, t_final = output.describe(), final.describe()
    t_update = update.describe() if update is not None else None
    status = lib.linattn_varlen_causal_conv_with_state(
        ctx.handle, ctypes.byref(desc), ctypes.byref(seqs), ctypes.byref(t_x), ctypes.byref(t_w), _ptr(t_b),
        ctypes.byref(t_s), None, None, ctypes.byref(t_out), ctypes.byref(t_final), _ptr(t_update), None, 0)
    _lib.check(status)
    return output.finish(), final.finish(), (update.finish() if update is not None else None)


def varlen_linear_attention(query, key, value, cu_seqlens, past_state=None, decay=None, beta=None, *,
                            q_num_heads: int, kv_num_heads: int, update_rule: str | None = "gated_delta",
                            scale: float | None = 0.0, chunk_size: int | None = 64, ort_contrib: bool = False,
                            state_indices=None, has_initial_state=None, state_dtype=None, out=None,
                            return_state: bool = True, threads: int | None = None, context: Context | None = None):
    """LinearAttention on a packed ragged batch. Returns (output, present_state).

    query (total_tokens, H_q*d_k), key (total_tokens, H_kv*d_k), value (total_tokens, H_kv*d_v),
    decay (total_tokens, H_kv) or (total_tokens, H_kv*d_k), beta (total_tokens, H_kv) or
    (total_tokens, 1): the dense operator's (B, T, H*d) tensors with the batch folded into the
    token axis (strided views, e.g. column slices of one fused projection, pass without a copy).
    cu_seqlens (B + 1) integers: sequence i is tokens [cu[i], cu[i + 1]) (0 = cu[0] <= ... <=
    cu[B] = total_tokens; length 0 passes the state through). past_state (N, H_kv, d_k, d_v),
    optional (absent: zeros). Each sequence gets the bits linear_attention gives it alone.

    state_indices (B) integers: sequence i reads and writes slot state_indices[i] of the pool of N
    states (distinct, in [0, N)); without them N = B. has_initial_state (B) bools: False = the
    sequence starts from zeros. out: output, or a pair (output, present_state); present_state may
    be past_state itself (in place). Pool slots no sequence names keep their values in place, are
    not written in a given present_state, and are copies of past_state (zeros without one) in a
    fresh one. Other arguments as linear_attention's.
    """
    ctx = _context(context, threads)
    q, t_q, k, t_k, v, t_v, past, t_past, t_g, t_b = _la_inputs(query, key, value, past_state, decay, beta,
                                                                "total_tokens")
    cu = _int32_array(_required(cu_seqlens, "cu_seqlens", "(B + 1)"), "cu_seqlens", None, "(B + 1)")
    if cu.shape[0] < 1:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, "cu_seqlens: expected shape (B + 1), got (0,)")
    batch = cu.shape[0] - 1
    idx = _int32_array(state_indices, "state_indices", batch, f"({batch})")
    has = _int32_array(has_initial_state, "has_initial_state", batch, f"({batch})")
    has = None if has is None else (has != 0).astype(np.uint8)
    desc = linear_attention_desc(q_num_heads, kv_num_heads, update_rule, scale, chunk_size, ort_contrib)
    hq, hkv = desc.q_num_heads, desc.kv_num_heads
    if hq <= 0 or hkv <= 0:  # the library's message
        _infer_shapes(desc, (1,) + q.shape, (1,) + k.shape, (1,) + v.shape)
    # shapes that fit a valid call; the library checks them against the inputs with its messages
    d_k, d_v = q.shape[1] // hq, v.shape[1] // hkv
    out_width, state_shape = max(hq, hkv) * d_v, (hkv, d_k, d_v)
    out_given, state_given = _split_out(out, ("output", "present_state"))
    if past is not None:
        n_states = past.shape[0] if past.ndim == 4 else batch
    else:
        n_states = state_given.shape[0] if state_given is not None and state_given.ndim == 4 else batch
    s_dtype = _state_dtype(past, state_dtype, state_given, q.dtype)
    output = OutputSlot("output", (q.shape[0], out_width), q.dtype, out_given, strided=True)
    present = None
    if return_state or state_given is not None:
        present = OutputSlot("present_state", (n_states,) + state_shape, s_dtype, state_given, strided=False)
        if state_given is None and idx is not None:  # a fresh pool: unnamed slots keep past_state's values
            if past is not None and past.shape == present.array.shape:
                present.array[...] = past
            else:
                present.array[...] = 0
    seqs = _lib.VarlenBatch(batch, _addr(cu), None, _addr(idx), _addr(has))
    t_out = output.describe()
    t_present = present.describe() if present is not None else None
    status = _lib.lib().linattn_varlen_linear_attention(
        ctx.handle, ctypes.byref(desc), ctypes.byref(seqs), ctypes.byref(t_q), ctypes.byref(t_k), ctypes.byref(t_v),
        _ptr(t_past), _ptr(t_g), _ptr(t_b), ctypes.byref(t_out), _ptr(t_present), None, 0)
    _lib.check(status)
    return _finish(output, present)


# ---------------------------------------------------------------- state_window (general path only)


def _windowed(call, window, *args, **kw):
    window = _int_attr(window, "state_window")
    if not 0 <= window <= 8:
        raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT, f"state_window: must be in [0, 8], got {window}")
    return call(window, *args, **kw)


def _la_window_call(window, query, key, value, past_state, decay, beta, *, q_num_heads, kv_num_heads, update_rule,
                    scale, chunk_size, ort_contrib, state_dtype, out, return_state, threads, context):
    ctx = _context(context, threads)
    # past_state (rank 5) is checked below
    q, t_q, k, t_k, v, t_v, _, _, t_g, t_b = _la_inputs(query, key, value, None, decay, beta, "B, T")
    desc = linear_attention_desc(q_num_heads, kv_num_heads, update_rule, scale, chunk_size, ort_contrib)
    out_shape, slot = _infer_shapes(desc, q.shape, k.shape, v.shape)
    desc.state_window = window
    shape5 = (window,) + tuple(slot)
    doc = "(state_window, B, kv_num_heads, d_k, d_v)"
    past = t_past = None
    if past_state is not None:  # rank 5: merged into (W * B, ...) for the C call
        a = past_state if isinstance(past_state, np.ndarray) else np.asarray(past_state)
        if a.shape != shape5:
            raise _lib.LinattnError(_lib.ERROR_INVALID_ARGUMENT,
                                    f"past_state: expected shape {doc} = {shape5}, got {a.shape}")
        past = _tensor.prepare_input(a.reshape((window * slot[0],) + tuple(slot[1:])), "past_state", False)
        t_past = _tensor.describe(past, strided=False)
    output, present = _la_outputs(out, out_shape, shape5, q.dtype, past, state_dtype, return_state)
    t_out = output.describe()
    t_present = None
    if present is not None:
        t_present = _tensor.describe(present.array.reshape((window * slot[0],) + tuple(slot[1:])), strided=False)
    _lib.check(_lib.lib().linattn_linear_attention(
        ctx.handle, ctypes.byref(desc), ctypes.byref(t_q), ctypes.byref(t_k), ctypes.byref(t_v), _ptr(t_past),
        _ptr(t_g), _ptr(t_b), ctypes.byref(t_out), _ptr(t_present), None, 0))
    return _finish(output, present)


def _conv_window_call(window, input, weight, bias, past_state, *, activation, dilation, channels_last, out,
                      return_state, threads, context):
    ctx = _context(context, threads)
    x, t_x, w, t_w, t_b, t_past = _conv_inputs(input, weight, bias, past_state, channels_last)
    desc = causal_conv_desc(activation, dilation, channels_last)
    desc.state_window = window
    S = max(w.shape[2] - 1, 0) * max(int(dilation), 1)
    C = x.shape[2] if channels_last else x.shape[1]
    shape = (window, x.shape[0], S, C) if channels_last else (window, x.shape[0], C, S)
    out_given, state_given = _split_out(out, ("output", "present_state"))
    output = OutputSlot("output", x.shape, x.dtype, out_given, strided=True)
    present = OutputSlot("present_state", shape, x.dtype, state_given, strided=False) \
        if return_state or state_given is not None else None
    t_out = output.describe()
    t_present = present.describe() if present is not None else None
    _lib.check(_lib.lib().linattn_causal_conv_with_state(
        ctx.handle, ctypes.byref(desc), ctypes.byref(t_x), ctypes.byref(t_w), _ptr(t_b), _ptr(t_past),
        ctypes.byref(t_out), _ptr(t_present), None, 0))
    return _finish(output, present)
