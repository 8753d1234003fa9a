"""Tests of the Python binding itself: library loading, contexts, dtype rules, strided views,
out= buffers, in-place state, errors, the ONNX Runtime extensions (checked against the ONNX
reference on the equivalent standard call) and the conv's dilation / channels-last layout
(checked against a float64 oracle written here)."""

from __future__ import annotations

import ctypes
import os
import sys
import threading
from pathlib import Path

import ml_dtypes
import numpy as np
import pytest

import linattn
from linattn import _lib, _tensor, onnx_models, testing

BF16 = np.dtype(ml_dtypes.bfloat16)


def rng_for(request) -> np.random.Generator:
    """Fresh random data every run (seed printed on failure through the test id + seed)."""
    seed = int.from_bytes(os.urandom(4), "little")
    request.node.user_properties.append(("seed", seed))
    print(f"seed {seed}")
    return np.random.default_rng(seed)


@pytest.fixture
def rng(request):
    return rng_for(request)


def la_data(rng, b=2, t=5, hq=4, hkv=2, dk=8, dv=6, dtype=np.float32, past=True, state_dtype=np.float32):
    q = rng.standard_normal((b, t, hq * dk), dtype=np.float32).astype(dtype)
    k = rng.standard_normal((b, t, hkv, dk), dtype=np.float32)
    k = (k / np.linalg.norm(k, axis=-1, keepdims=True)).reshape(b, t, hkv * dk).astype(dtype)
    v = rng.standard_normal((b, t, hkv * dv), dtype=np.float32).astype(dtype)
    g = (-np.abs(rng.standard_normal((b, t, hkv), dtype=np.float32)) * 0.2).astype(dtype)
    beta = rng.random((b, t, hkv), dtype=np.float32).astype(dtype)
    s = rng.standard_normal((b, hkv, dk, dv), dtype=np.float32).astype(state_dtype) if past else None
    return dict(query=q, key=k, value=v, past_state=s, decay=g, beta=beta), dict(q_num_heads=hq, kv_num_heads=hkv)


def bits(a):
    return np.ascontiguousarray(a).view(np.uint32 if a.itemsize == 4 else np.uint16)


def assert_close(actual, expected, tol=None):
    reason = testing.compare(actual, expected, tol)
    assert reason is None, reason


def la_tol(expected):
    e = np.abs(expected.astype(np.float64))
    tol = 1e-36 + 2e-5 * e.max(initial=0.0) + 1e-4 * e
    return tol + (testing.ulp(e, expected.dtype) if expected.dtype != np.float32 else 0)


# ---------------------------------------------------------------- loading, contexts


def test_library_loads_and_reports_its_version():
    assert Path(linattn.library_path()).is_file()
    assert linattn.library_version() == "0.1.0"
    version = _lib.lib().linattn_version()
    assert ((version >> 16) & 0xFF, (version >> 8) & 0xFF) == _lib.BINDING_VERSION


def test_struct_layout_matches_the_header():
    # Natural x86-64 / AArch64 layout of the structs in linattn.h.
    import ctypes

    assert ctypes.sizeof(_lib.Tensor) == 8 + 4 + 4 + 32 + 32
    assert _lib.LinearAttentionDesc.scale.offset == 24 and ctypes.sizeof(_lib.LinearAttentionDesc) == 56
    assert _lib.LinearAttentionDesc.state_window.offset == 48
    assert _lib.CausalConvDesc.dilation.offset == 8 and ctypes.sizeof(_lib.CausalConvDesc) == 32
    assert _lib.CausalConvDesc.state_window.offset == 24
    assert _lib.VarlenConvDesc.state_channels_last.offset == 24 and ctypes.sizeof(_lib.VarlenConvDesc) == 32
    assert _lib.VarlenBatch.has_initial_state.offset == 32 and ctypes.sizeof(_lib.VarlenBatch) == 40
    assert _lib.ContextOptions.isa.offset == 24 and _lib.ContextOptions.state_stores.offset == 56
    assert ctypes.sizeof(_lib.ContextOptions) == 64


def test_contexts_threads_and_isa():
    assert "reference" in linattn.available_isas()
    with linattn.Context(threads=1, isa="reference") as ctx:
        assert ctx.num_threads == 1 and ctx.isa == "reference"
    with linattn.Context(threads=2) as ctx:
        assert ctx.num_threads == 2 and ctx.isa in linattn.available_isas()
    assert linattn.Context().num_threads >= 1
    with pytest.raises(ValueError, match="unknown isa"):
        linattn.Context(isa="sse9")
    codes = _lib.isa_codes()
    assert list(codes.values()) == list(range(len(codes))) and codes["auto"] == 0 and codes["reference"] == 1
    for name, code in codes.items():
        if name != "auto" and linattn.isa_available(name):
            with linattn.Context(threads=1, isa=code) as ctx:
                assert ctx.isa == name
    missing = [isa for isa in codes if not linattn.isa_available(isa)]
    assert missing, "an x86 build cannot have neon and an arm build cannot have avx"
    with pytest.raises(linattn.LinattnError) as info:
        linattn.Context(isa=missing[0])
    assert info.value.status == _lib.ERROR_UNSUPPORTED and info.value.message


def test_closed_context_is_rejected(rng):
    ctx = linattn.Context(threads=1)
    ctx.close()
    inputs, heads = la_data(rng)
    with pytest.raises(ValueError, match="closed"):
        linattn.linear_attention(**inputs, **heads, context=ctx)


# ---------------------------------------------------------------- dtype rules


@pytest.mark.parametrize("t", [np.float32, np.float16, BF16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("s", [np.float32, np.float16, BF16], ids=["f32", "f16", "bf16"])
def test_present_state_takes_past_dtype(rng, t, s):
    inputs, heads = la_data(rng, dtype=t, state_dtype=s)
    out, state = linattn.linear_attention(**inputs, **heads)
    assert out.dtype == np.dtype(t) and state.dtype == np.dtype(s)
    expected = onnx_models.reference_linear_attention(*inputs.values(), **heads)
    assert_close(out, expected[0], la_tol(expected[0]))
    assert_close(state, expected[1], la_tol(expected[1]))


@pytest.mark.parametrize("t", [np.float16, BF16], ids=["f16", "bf16"])
def test_present_state_without_past(rng, t):
    inputs, heads = la_data(rng, dtype=t, past=False)
    _, state = linattn.linear_attention(**inputs, **heads)
    assert state.dtype == np.dtype(t)  # the ONNX rule: query's dtype
    # state_dtype picks S when past_state is absent: same as feeding explicit float32 zeros.
    out32, state32 = linattn.linear_attention(**inputs, **heads, state_dtype="float32")
    assert state32.dtype == np.float32
    zeros = np.zeros(state32.shape, np.float32)
    expected = onnx_models.reference_linear_attention(*{**inputs, "past_state": zeros}.values(), **heads)
    assert_close(out32, expected[0], la_tol(expected[0]))
    assert_close(state32, expected[1], la_tol(expected[1]))


def test_unsupported_dtypes_raise_type_error(rng):
    inputs, heads = la_data(rng)
    with pytest.raises(TypeError, match="query"):
        linattn.linear_attention(**{**inputs, "query": inputs["query"].astype(np.float64)}, **heads)
    with pytest.raises(TypeError, match="unsupported dtype"):
        linattn.linear_attention(**{**inputs, "past_state": None}, **heads, state_dtype=np.int32)
    with pytest.raises(TypeError, match="key"):
        linattn.linear_attention(**{**inputs, "key": inputs["key"].tolist()}, **heads)  # a list is float64


def test_big_endian_float32_is_accepted(rng):
    inputs, heads = la_data(rng)
    swapped = {n: (a.astype(a.dtype.newbyteorder(">")) if n == "query" else a) for n, a in inputs.items()}
    assert bits(linattn.linear_attention(**swapped, **heads)[0]).tobytes() == bits(
        linattn.linear_attention(**inputs, **heads)[0]
    ).tobytes()


# ---------------------------------------------------------------- layouts and out=


def test_qkv_views_of_a_fused_projection_are_passed_without_copy(rng):
    b, t, hq, hkv, dk, dv = 2, 7, 4, 2, 8, 6
    wq, wk, wv = hq * dk, hkv * dk, hkv * dv
    fused = rng.standard_normal((b, t, wq + wk + wv), dtype=np.float32)
    q, k, v = fused[..., :wq], fused[..., wq : wq + wk], fused[..., wq + wk :]
    for view in (q, k, v):
        assert _tensor.prepare_input(view, "x", strided=True) is view
        desc = _tensor.describe(view, strided=True)
        assert desc.data == view.ctypes.data and list(desc.strides)[:3] == [t * (wq + wk + wv), wq + wk + wv, 1]
    g = -np.abs(rng.standard_normal((b, t, hkv), dtype=np.float32))
    beta = rng.random((b, t, hkv), dtype=np.float32)
    heads = dict(q_num_heads=hq, kv_num_heads=hkv)
    strided = linattn.linear_attention(q, k, v, None, g, beta, **heads)
    packed = linattn.linear_attention(*(np.ascontiguousarray(a) for a in (q, k, v)), None, g, beta, **heads)
    for a, e in zip(strided, packed):
        assert np.array_equal(bits(a), bits(e))


def test_time_major_views_and_copied_layouts(rng):
    inputs, heads = la_data(rng, past=False)
    reference = linattn.linear_attention(**inputs, **heads)
    time_major = {n: (np.ascontiguousarray(a.transpose(1, 0, 2)).transpose(1, 0, 2) if a is not None else None)
                  for n, a in inputs.items()}
    assert _tensor.prepare_input(time_major["query"], "q", strided=True) is time_major["query"]  # no copy
    every_other = {n: (np.repeat(a, 2, axis=-1)[..., ::2] if a is not None else None) for n, a in inputs.items()}
    assert _tensor.element_strides(every_other["query"]) is None  # innermost stride 2: copied
    reversed_ = {n: (a[:, ::-1][:, ::-1] if a is not None else None) for n, a in inputs.items()}
    for variant in (time_major, every_other, reversed_):
        result = linattn.linear_attention(**variant, **heads)
        for a, e in zip(result, reference):
            assert np.array_equal(bits(a), bits(e))


def test_out_buffers_strided_poisoned_and_in_place(rng):
    inputs, heads = la_data(rng)
    expected = linattn.linear_attention(**inputs, **heads)
    big = np.full(expected[0].shape[:2] + (expected[0].shape[2] + 5,), np.nan, np.float32)
    out = big[..., 3 : 3 + expected[0].shape[2]]
    state = np.full(expected[1].shape, np.nan, np.float32)
    result = linattn.linear_attention(**inputs, **heads, out=(out, state))
    assert result[0] is out and result[1] is state
    assert np.array_equal(out, expected[0]) and np.array_equal(state, expected[1])
    assert np.isnan(big[..., :3]).all() and np.isnan(big[..., -2:]).all()  # nothing outside the view
    # An out array whose layout the library cannot take is filled through a copy.
    strided_out = np.full(expected[0].shape + (2,), np.nan, np.float32)[..., 0]
    assert linattn.linear_attention(**inputs, **heads, out=strided_out)[0] is strided_out
    assert np.array_equal(strided_out, expected[0])
    # In place: present_state is the past_state buffer.
    past = inputs["past_state"].copy()
    _, present = linattn.linear_attention(**{**inputs, "past_state": past}, **heads, out=(None, past))
    assert present is past and np.array_equal(bits(past), bits(expected[1]))
    # No state wanted.
    out_only, none = linattn.linear_attention(**inputs, **heads, return_state=False)
    assert none is None and np.array_equal(bits(out_only), bits(expected[0]))


def test_out_buffer_checks(rng):
    inputs, heads = la_data(rng)
    shape = linattn.linear_attention(**inputs, **heads)[0].shape
    with pytest.raises(linattn.LinattnError, match="dtype"):
        linattn.linear_attention(**inputs, **heads, out=np.empty(shape, np.float16))
    with pytest.raises(linattn.LinattnError, match="shape"):
        linattn.linear_attention(**inputs, **heads, out=np.empty(shape[:2] + (shape[2] + 1,), np.float32))
    read_only = np.empty(shape, np.float32)
    read_only.flags.writeable = False
    with pytest.raises(ValueError, match="read-only"):
        linattn.linear_attention(**inputs, **heads, out=read_only)


def test_chunk_size_does_not_change_bits(rng):
    inputs, heads = la_data(rng, t=70)
    base = linattn.linear_attention(**inputs, **heads)
    for chunk in (1, 16, 63, 64, 4096):
        result = linattn.linear_attention(**inputs, **heads, chunk_size=chunk)
        for a, e in zip(result, base):
            assert np.array_equal(bits(a), bits(e)), f"chunk_size {chunk}"


def test_state_store_policies_give_the_same_bits(rng):
    # decode into a separate present_state: ordinary and non-temporal stores, d_v 64 and 128
    for dv in (64, 128):
        inputs, heads = la_data(rng, b=2, t=1, hq=2, hkv=2, dk=128, dv=dv)
        results = []
        for policy in ("auto", "cached", "streaming"):
            with linattn.Context(threads=1, state_stores=policy) as ctx:
                results.append(linattn.linear_attention(**inputs, **heads, context=ctx))
        for result in results[1:]:
            for a, e in zip(result, results[0]):
                assert np.array_equal(bits(a), bits(e)), f"d_v {dv}"
    with pytest.raises(ValueError, match="unknown state_stores"):
        linattn.Context(state_stores="nt")


def test_zero_tokens_keeps_the_state(rng):
    inputs, heads = la_data(rng, t=0)
    out, state = linattn.linear_attention(**inputs, **heads)
    assert out.shape == (2, 0, 4 * 6)
    assert np.array_equal(bits(state), bits(inputs["past_state"]))
    inputs, heads = la_data(rng, t=0, past=False)
    out, state = linattn.linear_attention(**inputs, **heads)
    assert state.shape == (2, 2, 8, 6) and not state.any()


def test_threads_and_python_threads_give_the_same_bits(rng):
    inputs, heads = la_data(rng, b=3, t=33, hq=6, hkv=3, dk=40, dv=72)
    one = linattn.linear_attention(**inputs, **heads, threads=1)
    two = linattn.linear_attention(**inputs, **heads, threads=2)
    for a, e in zip(two, one):
        assert np.array_equal(bits(a), bits(e))
    ctx = linattn.Context(threads=2)
    results = [None] * 6

    def worker(i):
        results[i] = linattn.linear_attention(**inputs, **heads, context=ctx)

    workers = [threading.Thread(target=worker, args=(i,)) for i in range(len(results))]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    for result in results:
        for a, e in zip(result, one):
            assert np.array_equal(bits(a), bits(e))
    with pytest.raises(ValueError, match="either"):
        linattn.linear_attention(**inputs, **heads, threads=1, context=ctx)
    ctx.close()


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    "change, words",
    [
        (lambda d, h: ({**d, "decay": d["decay"][..., :1]}, h), ["decay"]),
        (lambda d, h: ({**d, "beta": np.concatenate([d["beta"]] * 3, -1)}, h), ["beta"]),
        (lambda d, h: ({**d, "decay": None}, h), ["decay"]),
        (lambda d, h: (d, {**h, "update_rule": "linear"}), ["decay"]),
        (lambda d, h: (d, {**h, "update_rule": "fancy"}), ["update_rule", "'fancy'", "'gated_delta'"]),
        (lambda d, h: (d, {**h, "update_rule": "Gated_Delta"}), ["update_rule", "'Gated_Delta'"]),
        (lambda d, h: (d, {**h, "q_num_heads": 3}), ["q_num_heads"]),
        (lambda d, h: ({**d, "past_state": d["past_state"][:, :, :, :5].copy()}, h), ["past_state"]),
        (lambda d, h: ({**d, "value": d["value"][:1]}, h), ["value"]),
        (lambda d, h: ({**d, "key": d["key"][..., :-1]}, h), ["key"]),
        (lambda d, h: ({**d, "query": d["query"][0]}, h), ["query", "rank"]),
        (lambda d, h: ({**d, "beta": d["beta"].astype(np.float16)}, h), ["beta"]),
    ],
    ids=["decay-width", "beta-width", "decay-missing", "decay-forbidden", "bad-rule", "rule-case", "heads", "past-shape",
         "batch", "key-width", "query-rank", "beta-dtype"],
)
def test_errors_name_the_argument_and_write_nothing(rng, change, words):
    inputs, heads = la_data(rng)
    inputs, heads = change(inputs, heads)
    with pytest.raises(linattn.LinattnError) as info:
        linattn.linear_attention(**inputs, **heads)
    err = info.value
    assert err.status == _lib.ERROR_INVALID_ARGUMENT and err.status_name in str(err)
    for word in words:
        assert word in err.message, err.message
    # The same call with poisoned out= buffers leaves them untouched.
    b, t = inputs["query"].shape[:2] if inputs["query"].ndim == 3 else (1, 1)
    out = np.full((b, t, 24), np.nan, np.float32)
    state = np.full((b, 2, 8, 6), np.nan, np.float32)
    try:
        linattn.linear_attention(**inputs, **heads, out=(out, state))
    except linattn.LinattnError:
        pass
    assert np.isnan(out).all() and np.isnan(state).all()


def test_aliasing_output_and_input_is_rejected(rng):
    inputs, heads = la_data(rng, hq=2, hkv=2, dk=6, dv=6, past=False)
    with pytest.raises(linattn.LinattnError, match="overlap"):
        linattn.linear_attention(**inputs, **heads, out=inputs["value"])


# ---------------------------------------------------------------- ONNX Runtime extensions


def test_ort_inverse_gqa_equals_repeated_query(rng):
    b, t, hq, hkv, dk, dv = 2, 9, 2, 6, 8, 5
    inputs, _ = la_data(rng, b, t, hkv, hkv, dk, dv)
    q = rng.standard_normal((b, t, hq * dk), dtype=np.float32)
    heads = dict(q_num_heads=hq, kv_num_heads=hkv)
    with pytest.raises(linattn.LinattnError):
        linattn.linear_attention(**{**inputs, "query": q}, **heads)
    out, state = linattn.linear_attention(**{**inputs, "query": q}, **heads, ort_contrib=True)
    q_rep = np.repeat(q.reshape(b, t, hq, dk), hkv // hq, axis=2).reshape(b, t, hkv * dk)
    expected = onnx_models.reference_linear_attention(
        q_rep, *[inputs[n] for n in ("key", "value", "past_state", "decay", "beta")], q_num_heads=hkv, kv_num_heads=hkv
    )
    assert_close(out, expected[0], la_tol(expected[0]))
    assert_close(state, expected[1], la_tol(expected[1]))


def test_ort_separate_key_heads_equal_repeated_keys(rng):
    b, t, hkv, nk, dk, dv = 2, 9, 4, 2, 8, 5
    inputs, _ = la_data(rng, b, t, hkv, hkv, dk, dv)
    k = rng.standard_normal((b, t, nk, dk), dtype=np.float32)
    k = (k / np.linalg.norm(k, axis=-1, keepdims=True)).reshape(b, t, nk * dk)
    heads = dict(q_num_heads=hkv, kv_num_heads=hkv)
    out, state = linattn.linear_attention(**{**inputs, "key": k}, **heads, ort_contrib=True)
    k_rep = np.repeat(k.reshape(b, t, nk, dk), hkv // nk, axis=2).reshape(b, t, hkv * dk)
    expected = onnx_models.reference_linear_attention(*{**inputs, "key": k_rep}.values(), **heads)
    assert_close(out, expected[0], la_tol(expected[0]))
    assert_close(state, expected[1], la_tol(expected[1]))


def test_shape_inference():
    out, state = linattn.linear_attention_shapes((2, 5, 32), (2, 5, 16), (2, 5, 12), q_num_heads=4, kv_num_heads=2)
    assert out == (2, 5, 24) and state == (2, 2, 8, 6)
    out, _ = linattn.linear_attention_shapes((2, 5, 16), (2, 5, 32), (2, 5, 24), q_num_heads=2, kv_num_heads=4,
                                             ort_contrib=True)
    assert out == (2, 5, 24)


# ---------------------------------------------------------------- CausalConvWithState


def conv_oracle(x, w, bias, past, activation, dilation):
    """float64 oracle in channels-first layout; returns (output before rounding, present_state)."""
    x64, w64 = x.astype(np.float64), w.astype(np.float64)[:, 0, :]
    b, c, n = x.shape
    k = w64.shape[1]
    s = (k - 1) * dilation
    past64 = past.astype(np.float64) if past is not None else np.zeros((b, c, s))
    padded = np.concatenate([past64, x64], axis=2)
    y = np.zeros((b, c, n))
    for j in range(k):
        start = j * dilation
        y += w64[None, :, j, None] * padded[:, :, start : start + n]
    if bias is not None:
        if x.dtype == np.float16:  # as onnx.reference: the fp16 sum is rounded, then the bias added in fp16
            y = y.astype(np.float32).astype(np.float16).astype(np.float64)
        y += bias.astype(np.float64)[None, :, None]
    y = y.astype(x.dtype).astype(np.float64)  # rounded to T before the activation
    if activation in ("silu", "swish"):
        y = y / (1 + np.exp(-y))
    return y, padded[:, :, padded.shape[2] - s :].astype(x.dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16], ids=["f32", "f16", "bf16"])
@pytest.mark.parametrize("dilation", [1, 2, 3])
def test_conv_dilation_and_channels_last(rng, dtype, dilation):
    b, c, n, k = 2, 19, 11, 4
    s = (k - 1) * dilation
    x = rng.standard_normal((b, c, n), dtype=np.float32).astype(dtype)
    w = rng.standard_normal((c, 1, k), dtype=np.float32).astype(dtype)
    bias = rng.standard_normal(c, dtype=np.float32).astype(dtype)
    past = rng.standard_normal((b, c, s), dtype=np.float32).astype(dtype)
    out, present = linattn.causal_conv_with_state(x, w, bias, past, activation="silu", dilation=dilation)
    y, expected_present = conv_oracle(x, w, bias, past, "silu", dilation)
    tol = 1e-5 * np.abs(y).max() + 2 * testing.ulp(y, dtype)
    assert_close(out.astype(np.float64), y, tol)
    assert present.shape == (b, c, s) and np.array_equal(bits(present), bits(expected_present))
    # channels_last: the same numbers in (B, L, C) / (B, S, C), bit for bit.
    out_cl, present_cl = linattn.causal_conv_with_state(
        np.ascontiguousarray(x.transpose(0, 2, 1)), w, bias, np.ascontiguousarray(past.transpose(0, 2, 1)),
        activation="silu", dilation=dilation, channels_last=True,
    )
    assert np.array_equal(bits(out_cl), bits(out.transpose(0, 2, 1)))
    assert np.array_equal(bits(present_cl), bits(present.transpose(0, 2, 1)))


def test_conv_strided_input_output_and_in_place_state(rng):
    b, c, n, k = 2, 8, 10, 4
    buf = rng.standard_normal((b, 2 * c, n), dtype=np.float32)
    x = buf[:, 3 : 3 + c]  # a channel slice of a bigger tensor: strided, no copy
    assert _tensor.prepare_input(x, "input", strided=True) is x
    w = rng.standard_normal((c, 1, k), dtype=np.float32)
    past = rng.standard_normal((b, c, k - 1), dtype=np.float32)
    expected = linattn.causal_conv_with_state(np.ascontiguousarray(x), w, None, past)
    out_buf = np.full((b, c, n + 4), np.nan, np.float32)
    state = past.copy()
    out, present = linattn.causal_conv_with_state(x, w, None, state, out=(out_buf[..., 2 : 2 + n], state))
    assert present is state
    assert np.array_equal(out, expected[0]) and np.array_equal(state, expected[1])
    assert np.isnan(out_buf[..., :2]).all() and np.isnan(out_buf[..., -2:]).all()


def test_conv_errors():
    x = np.zeros((1, 4, 5), np.float32)
    w = np.zeros((4, 1, 3), np.float32)
    with pytest.raises(linattn.LinattnError, match="activation: 'relu' is not one of 'none', 'silu', 'swish'"):
        linattn.causal_conv_with_state(x, w, activation="relu")
    for bad in ("", "SiLU", "silu "):  # onnx.reference: exact names only
        with pytest.raises(linattn.LinattnError, match=f"activation: {bad!r}"):
            linattn.causal_conv_with_state(x, w, activation=bad)
    with pytest.raises(linattn.LinattnError, match="weight"):
        linattn.causal_conv_with_state(x, np.zeros((3, 1, 3), np.float32))
    with pytest.raises(linattn.LinattnError, match="past_state"):
        linattn.causal_conv_with_state(x, w, None, np.zeros((1, 4, 3), np.float32))
    with pytest.raises(linattn.LinattnError, match="bias"):
        linattn.causal_conv_with_state(x, w, np.zeros(4, np.float16))
    with pytest.raises(linattn.LinattnError, match="input"):
        linattn.causal_conv_with_state(x[0], w)


def test_absent_attributes_mean_their_onnx_defaults(rng):
    """None for an attribute = absent (onnx.reference's None): update_rule gated_delta, scale 0
    (1/sqrt(d_k)), chunk_size 64, activation none; same bits as the explicit defaults."""
    inputs, heads = la_data(rng)
    explicit = linattn.linear_attention(**inputs, **heads, threads=1)
    absent = linattn.linear_attention(**inputs, q_num_heads=heads["q_num_heads"], kv_num_heads=heads["kv_num_heads"],
                                      update_rule=None, scale=None, chunk_size=None, threads=1)
    for a, b in zip(explicit, absent):
        assert np.array_equal(a.view(np.uint32), b.view(np.uint32))
    expected = onnx_models.reference_linear_attention(*[inputs.get(n) for n in onnx_models.LA_INPUT_NAMES],
                                                      q_num_heads=heads["q_num_heads"],
                                                      kv_num_heads=heads["kv_num_heads"])
    for a, e in zip(absent, expected):
        assert testing.compare(a, e) is None
    x = rng.standard_normal((2, 4, 6), dtype=np.float32)
    w = rng.standard_normal((4, 1, 3), dtype=np.float32)
    y, s = linattn.causal_conv_with_state(x, w, activation=None)
    y0, s0 = linattn.causal_conv_with_state(x, w, activation="none")
    assert np.array_equal(y, y0) and np.array_equal(s, s0)


def test_bad_python_arguments_are_named(rng):
    """Missing required inputs, non-integer or out-of-int64 head counts, a non-float scale and a
    present_state too large to allocate: errors that name the argument (never a bare numpy,
    ctypes or attribute error, and never a silently truncated value)."""
    inputs, heads = la_data(rng)
    with pytest.raises(linattn.LinattnError, match="query: required"):
        linattn.linear_attention(**{**inputs, "query": None}, **heads)
    with pytest.raises(TypeError, match="q_num_heads: expected an integer"):
        linattn.linear_attention(**inputs, q_num_heads=4.5, kv_num_heads=2)
    with pytest.raises(linattn.LinattnError, match="kv_num_heads: .* does not fit in int64"):
        linattn.linear_attention(**inputs, q_num_heads=4, kv_num_heads=2**64 + 2)
    with pytest.raises(TypeError, match="scale: expected a float"):
        linattn.linear_attention(**inputs, **heads, scale="big")
    x = rng.standard_normal((1, 2, 3), dtype=np.float32)
    w = rng.standard_normal((2, 1, 2), dtype=np.float32)
    with pytest.raises(linattn.LinattnError, match="weight: required"):
        linattn.causal_conv_with_state(x, None)
    with pytest.raises(linattn.LinattnError, match="present_state: cannot allocate"):
        linattn.causal_conv_with_state(x, w, dilation=2**62)
    y, state = linattn.causal_conv_with_state(x, w, dilation=2**62, return_state=False)
    assert state is None and np.array_equal(y, x * w[None, :, 0, 1:])



# ---------------------------------------------------------------- per-call fast paths


def field_by_field(a: np.ndarray, strided: bool) -> bytes:
    """The descriptor _tensor.describe must produce, built the slow obvious way."""
    t = _lib.Tensor()
    t.data = a.ctypes.data if a.size else None
    t.dtype = _tensor.DTYPE_CODES[a.dtype]
    t.rank = a.ndim
    for i, d in enumerate(a.shape):
        t.dims[i] = d
    if strided and not a.flags.c_contiguous:
        for i, s in enumerate(_tensor.element_strides(a)):
            t.strides[i] = s
    return ctypes.string_at(ctypes.addressof(t), ctypes.sizeof(t))


@pytest.mark.parametrize("dtype", [np.float32, np.float16, BF16], ids=["f32", "f16", "bf16"])
def test_descriptors_equal_the_field_by_field_build(rng, dtype):
    """describe / input_tensor pack the descriptor with struct layouts and take the address from
    the buffer protocol: the same bytes as setting each field, for every rank, packed or strided
    views, read-only, empty and bfloat16 arrays (which export no buffer format)."""
    base = rng.standard_normal((3, 4, 5, 6), dtype=np.float32).astype(dtype)
    read_only = base[1].copy()
    read_only.flags.writeable = False
    arrays = [base, base[0], base[0, 0], base[0, 0, 0], base[0, 0, 0, :1].reshape(()), base[:, 1:3], base[..., ::2],
              base.transpose(1, 0, 2, 3), read_only, base[:0], np.ascontiguousarray(base[:, :, 1])]
    for a in arrays:
        if a.size:
            assert _tensor.data_address(a) == a.ctypes.data
        for strided in (False, True):
            if strided and _tensor.element_strides(a) is None:
                continue  # prepare_input copies such arrays first
            if not strided and not (a.flags.c_contiguous or a.size == 0):
                continue
            t = _tensor.describe(a, strided)
            assert ctypes.string_at(ctypes.addressof(t), ctypes.sizeof(t)) == field_by_field(a, strided), (a.shape, a.strides)
        prepared, t = _tensor.input_tensor(a, "x", strided=True)
        expected = _tensor.prepare_input(a, "x", strided=True)  # a itself, or a packed copy
        assert (prepared is a) == (expected is a) and np.array_equal(bits(prepared), bits(expected))
        assert ctypes.string_at(ctypes.addressof(t), ctypes.sizeof(t)) == field_by_field(prepared, True)
    assert _tensor.input_tensor(None, "x", strided=True) == (None, None)


def test_calls_go_through_the_unchecked_entry_points():
    """The per-call entry points skip ctypes' argument conversion; the checked prototypes stay for
    every other caller."""
    lib = _lib.lib()
    for name in ("linattn_linear_attention", "linattn_causal_conv_with_state"):
        fast = _lib.unchecked(name)
        assert fast is not getattr(lib, name) and fast.argtypes is None and fast.restype is ctypes.c_int
        assert getattr(lib, name).argtypes is not None


def test_attribute_caches_keep_types_errors_and_shapes(rng):
    """Descriptors and inferred shapes are reused across calls with the same attributes; a value
    equal to a cached one but of another type (1.0 for 1) still gets its own checks, a failure is
    never cached, and a new input shape is inferred anew."""
    from linattn import ops

    inputs, heads = la_data(rng)
    first = linattn.linear_attention(**inputs, **heads, chunk_size=64)
    with pytest.raises(TypeError, match="chunk_size: expected an integer"):
        linattn.linear_attention(**inputs, **heads, chunk_size=64.0)
    again = linattn.linear_attention(**inputs, **heads, chunk_size=64)
    for a, b in zip(first, again):
        assert np.array_equal(bits(a), bits(b))
    for _ in range(2):
        with pytest.raises(linattn.LinattnError, match="update_rule: 'fancy'"):
            linattn.linear_attention(**inputs, **heads, update_rule="fancy")
        with pytest.raises(linattn.LinattnError, match="key"):
            linattn.linear_attention(**{**inputs, "key": inputs["key"][..., :-1]}, **heads)
    one_token = {n: (a[:, :1] if n != "past_state" else a) for n, a in inputs.items()}
    out, state = linattn.linear_attention(**one_token, **heads)
    assert out.shape == (2, 1, 24) and state.shape == inputs["past_state"].shape

    x = rng.standard_normal((1, 4, 3), dtype=np.float32)
    w = rng.standard_normal((4, 1, 3), dtype=np.float32)
    y, _ = linattn.causal_conv_with_state(x, w, dilation=1)
    with pytest.raises(TypeError, match="dilation: expected an integer"):
        linattn.causal_conv_with_state(x, w, dilation=1.0)
    with pytest.raises(TypeError, match="dilation: expected an integer, got True"):  # == 1, but no integer
        linattn.causal_conv_with_state(x, w, dilation=True)
    for _ in range(2):
        with pytest.raises(linattn.LinattnError, match="activation: 'relu'"):
            linattn.causal_conv_with_state(x, w, activation="relu")
    for d in range(1, 3 * ops._CACHE_LIMIT):
        linattn.causal_conv_with_state(x, w, dilation=d, return_state=False)
    assert len(ops._conv_desc_cache) <= ops._CACHE_LIMIT


# ---------------------------------------------------------------- repeated calls: the plan fast path


def test_field_address_reads_the_array_struct():
    """The fast paths read an array's data address and flags from the array object: the probe
    passed here (CPython), and the address equals a.ctypes.data for views, offsets, read-only and
    bfloat16 arrays."""
    assert _tensor.FIELD_ADDRESS_WORKS
    base = np.arange(2 * 3 * 4 * 6, dtype=np.float32).reshape(2, 3, 4, 6)
    read_only = base[1].copy()
    read_only.flags.writeable = False
    for a in (base, base[1], base[:, 1:, 2], base[..., 1::2], read_only, base.astype(BF16)[1, 1:],
              np.frombuffer(bytes(13), np.uint8)[1:].view(np.float16)[1:], np.empty((0, 3), np.float32)):
        assert _tensor.field_address(a) == a.ctypes.data


class GeneralPath:
    """Counts the calls that reach the general path of an operator (its fast path otherwise),
    starting without plans."""

    def __init__(self, monkeypatch, name):
        from linattn import ops

        ops._la_fast.reset()
        ops._conv_fast.reset()
        self.real = getattr(ops, name)
        self.calls = 0

        def counted(*args, **kwargs):
            self.calls += 1
            return self.real(*args, **kwargs)

        monkeypatch.setattr(ops, name, counted)


def same_bits(actual, expected):
    assert (actual is None) == (expected is None)
    if actual is not None:
        assert actual.dtype == expected.dtype and actual.shape == expected.shape
        assert np.array_equal(bits(actual), bits(expected))


LA_FORMS = {  # name: (la_data options, call arguments from (inputs, fresh output, fresh state))
    "alloc": ({}, lambda d, o, s: {}),
    "out-array": ({}, lambda d, o, s: {"out": o}),
    "out-pair": ({}, lambda d, o, s: {"out": (o, s)}),
    "out-list-state-only": ({}, lambda d, o, s: {"out": [None, s]}),
    "out-pair-output-only": ({}, lambda d, o, s: {"out": (o, None)}),
    "in-place": ({}, lambda d, o, s: {"out": (o, d["past_state"])}),
    "no-state": ({}, lambda d, o, s: {"return_state": False}),
    "no-state-out": ({}, lambda d, o, s: {"out": o, "return_state": False}),
    "no-state-but-given": ({}, lambda d, o, s: {"out": (None, s), "return_state": False}),
    "no-past": ({"past": False}, lambda d, o, s: {}),
    "no-past-out": ({"past": False}, lambda d, o, s: {"out": (o, s)}),
    "linear-rule": ({}, lambda d, o, s: {"update_rule": "linear", "decay": None, "beta": None}),
    "delta-rule-no-past": ({"past": False}, lambda d, o, s: {"update_rule": "delta", "decay": None}),
    "f16": ({"dtype": np.float16, "state_dtype": np.float16}, lambda d, o, s: {"out": (o, d["past_state"])}),
    "bf16-f32-state": ({"dtype": BF16}, lambda d, o, s: {"out": (o, d["past_state"])}),
    "bf16-alloc": ({"dtype": BF16, "state_dtype": BF16}, lambda d, o, s: {}),
    "attributes": ({}, lambda d, o, s: {"scale": 0.25, "chunk_size": 16, "update_rule": None}),
    "context": ({}, lambda d, o, s: {"context": "ctx"}),
    "threads": ({}, lambda d, o, s: {"threads": 1}),
}


def check_repeated_calls(monkeypatch, general_name, public, make):
    """make() -> (inputs, call arguments): three calls of one kind with fresh arrays each; the
    first goes through the general path and leaves a plan, the next ones take the fast path. Each
    gives the bits of the general path (run on copies of the inputs, outputs allocated), in the
    arrays given as out=, and a state exactly when the general path gives one."""
    general = GeneralPath(monkeypatch, general_name)
    ctx = linattn.Context(threads=1)
    for i in range(3):
        inputs, kwargs = make()
        if kwargs.get("context") == "ctx":
            kwargs["context"] = ctx
        arrays = {**inputs, **{n: v for n, v in kwargs.items() if n in inputs}}
        attrs = {n: v for n, v in kwargs.items() if n not in inputs and n != "out"}
        out = kwargs.get("out")
        given = (out, None) if isinstance(out, np.ndarray) else tuple(out or (None, None))
        copies = {n: (a.copy() if isinstance(a, np.ndarray) else a) for n, a in arrays.items()}
        expected = general.real(**copies, **{**attrs, "return_state": True})
        if not attrs.get("return_state", True) and given[1] is None:
            expected = (expected[0], None)
        calls = general.calls
        result = public(**arrays, **attrs, out=out)
        assert general.calls == calls + (1 if i == 0 else 0), "a repeated call went through the general path"
        same_bits(result[0], expected[0])
        same_bits(result[1], expected[1])
        for r, g in zip(result, given):
            assert g is None or r is g
    ctx.close()


@pytest.mark.parametrize("form", list(LA_FORMS))
def test_repeated_la_calls_take_the_fast_path_with_the_general_paths_bits(rng, monkeypatch, form):
    from linattn import ops

    options, call = LA_FORMS[form]

    def make():
        inputs, heads = la_data(rng, b=2, t=3, **options)
        out_shape, state_shape = ops.linear_attention_shapes(inputs["query"].shape, inputs["key"].shape,
                                                             inputs["value"].shape, **heads)
        state_dtype = inputs["past_state"].dtype if inputs["past_state"] is not None else inputs["query"].dtype
        out = np.full(out_shape, np.nan, inputs["query"].dtype)
        kwargs = call(inputs, out, np.full(state_shape, np.nan, state_dtype))
        return inputs, {**heads, **kwargs}

    check_repeated_calls(monkeypatch, "_linear_attention", linattn.linear_attention, make)


def conv_data(rng, b=2, c=6, n=1, k=4, dtype=np.float32, bias=True, past=True, dilation=1, channels_last=False):
    def arr(*shape):
        return rng.standard_normal(shape, dtype=np.float32).astype(dtype)

    s = (k - 1) * dilation
    x = arr(b, n, c) if channels_last else arr(b, c, n)
    state = (arr(b, s, c) if channels_last else arr(b, c, s)) if past else None
    return dict(input=x, weight=arr(c, 1, k), bias=arr(c) if bias else None, past_state=state), (
        (b, s, c) if channels_last else (b, c, s))


CONV_FORMS = {
    "alloc": ({}, lambda d, o, s: {}),
    "in-place": ({}, lambda d, o, s: {"out": (o, d["past_state"])}),
    "out-list": ({}, lambda d, o, s: {"out": [o, s]}),
    "out-array": ({}, lambda d, o, s: {"out": o}),
    "no-state": ({}, lambda d, o, s: {"return_state": False}),
    "no-bias-no-past": ({"bias": False, "past": False}, lambda d, o, s: {}),
    "silu-dilation": ({"dilation": 2}, lambda d, o, s: {"activation": "silu", "dilation": 2}),
    "channels-last": ({"channels_last": True}, lambda d, o, s: {"channels_last": True, "out": (o, s)}),
    "f16": ({"dtype": np.float16}, lambda d, o, s: {"activation": "swish", "out": (o, d["past_state"])}),
    "bf16": ({"dtype": BF16}, lambda d, o, s: {"activation": None}),
    "context": ({}, lambda d, o, s: {"context": "ctx"}),
    "threads": ({}, lambda d, o, s: {"threads": 1, "out": (o, None)}),
}


@pytest.mark.parametrize("form", list(CONV_FORMS))
def test_repeated_conv_calls_take_the_fast_path_with_the_general_paths_bits(rng, monkeypatch, form):
    options, call = CONV_FORMS[form]

    def make():
        inputs, state_shape = conv_data(rng, **options)
        x = inputs["input"]
        return inputs, call(inputs, np.full(x.shape, np.nan, x.dtype), np.full(state_shape, np.nan, x.dtype))

    check_repeated_calls(monkeypatch, "_causal_conv_with_state", linattn.causal_conv_with_state, make)


def test_calls_the_fast_path_leaves_to_the_general_path(rng, monkeypatch):
    """With a plan for the shapes, a call that is not all packed aligned native ndarrays (or an
    attribute of another type, a threads/context mix, a bad out=) still goes through the general
    path: the same results and the same errors as without the plan."""
    from linattn import ops

    general = GeneralPath(monkeypatch, "_linear_attention")
    inputs, heads = la_data(rng, b=1, t=1)
    expected = linattn.linear_attention(**inputs, **heads)
    assert any(ops._la_fast.plans.values())
    q = inputs["query"]
    strided = np.repeat(q, 2, axis=-1)[..., ::2]
    fortran = np.asfortranarray(q.reshape(q.shape[2], 1, 1)).reshape(q.shape, order="F")
    assert not fortran.flags.c_contiguous or q.ndim  # (B, T) = (1, 1): still contiguous, then fine either way
    misaligned = np.frombuffer(b"\0" + q.tobytes(), np.uint8)[1:].view(np.float32).reshape(q.shape)
    read_only = q.copy()
    read_only.flags.writeable = False

    class Sub(np.ndarray):
        pass

    for name, variant in [("strided", strided), ("misaligned", misaligned), ("subclass", q.view(Sub)),
                          ("big-endian", q.astype(">f4")), ("list", q.tolist())]:
        calls = general.calls
        if name == "list":
            with pytest.raises(TypeError, match="query"):
                linattn.linear_attention(**{**inputs, "query": variant}, **heads)
        else:
            result = linattn.linear_attention(**{**inputs, "query": variant}, **heads)
            same_bits(result[0], expected[0])
            same_bits(result[1], expected[1])
        assert general.calls == calls + 1, name
    calls = general.calls
    result = linattn.linear_attention(**{**inputs, "query": read_only}, **heads)  # read-only inputs: fast
    assert general.calls == calls
    same_bits(result[0], expected[0])
    same_bits(result[1], expected[1])

    out = np.empty_like(expected[0])
    read_only_out = out.copy()
    read_only_out.flags.writeable = False
    bad_out = [(np.empty(out.shape[::-1], np.float32).T, None, None),  # Fortran order: through a copy
               (out.view(Sub), None, None),
               (read_only_out, ValueError, "output: out array is read-only"),
               ((out,), TypeError, "out must be an array"),
               ((out, out, out), TypeError, "out must be an array"),
               ((out, "state"), TypeError, "present_state: out must be a numpy array")]
    for given, error, message in bad_out:
        calls = general.calls
        if error is None:
            result = linattn.linear_attention(**inputs, **heads, out=given)
            assert result[0] is given
            same_bits(result[0], expected[0])
        else:
            with pytest.raises(error, match=message):
                linattn.linear_attention(**inputs, **heads, out=given)
        assert general.calls == calls + 1, given
    for attrs, error in [({"q_num_heads": 2.0}, TypeError), ({"chunk_size": np.int64(64)}, None),
                         ({"scale": np.float32(0)}, None), ({"return_state": 1}, None), ({"threads": 1.0}, None),
                         ({"threads": 1, "context": linattn.shared_context(1)}, ValueError)]:
        calls = general.calls
        call_heads = {**heads, **{n: v for n, v in attrs.items() if n in heads}}
        rest = {n: v for n, v in attrs.items() if n not in heads}
        if error is None:
            result = linattn.linear_attention(**inputs, **call_heads, **rest)
            same_bits(result[0], expected[0])
            same_bits(result[1], expected[1])
        else:
            with pytest.raises(error):
                linattn.linear_attention(**inputs, **call_heads, **rest)
        assert general.calls == calls + 1, attrs


def outcome(fn, *args, **kwargs):
    """(result, None) or (None, (exception type, message)) of a call."""
    try:
        return fn(*args, **kwargs), None
    except Exception as e:  # noqa: BLE001 - compared with the other path's
        return None, (type(e), str(e))


def check_plan_keys(monkeypatch, general_name, public, arrays, attrs, slots):
    """After a plan for `arrays`, a call where one of them (or one of the out= pair) has another
    dtype or shape is not taken for the plan's: it gives what the general path gives, error or
    bits, as it would without the plan."""
    general = GeneralPath(monkeypatch, general_name)
    out = (np.empty_like(slots[0]), np.empty_like(slots[1]))
    public(**arrays, **attrs, out=out)
    assert general.calls == 1
    variants = []
    for name, a in [*arrays.items(), ("output", out[0]), ("present_state", out[1])]:
        if a is None:
            continue
        for changed in (a.astype(np.float16), np.concatenate([a, a[..., :1]], axis=-1), a[:1].copy(),
                        a.reshape(a.shape[:-1] + (1, a.shape[-1]))):
            if changed.shape != a.shape or changed.dtype != a.dtype:
                variants.append((name, changed))
    for name, changed in variants:
        if name in arrays:
            call_arrays, call_out = {**arrays, name: changed}, out
        else:
            call_arrays, call_out = arrays, (changed, out[1]) if name == "output" else (out[0], changed)
        fresh = tuple(np.full_like(o, np.nan) for o in call_out)
        expected, expected_error = outcome(general.real, **call_arrays, **attrs, out=fresh)
        calls = general.calls
        result, error = outcome(public, **call_arrays, **attrs, out=call_out)
        assert general.calls == calls + 1, (name, changed.shape, changed.dtype)
        assert error == expected_error, (name, changed.shape, changed.dtype)
        if error is None:
            for r, e in zip(result, expected):
                same_bits(r, e)


def test_a_plan_serves_only_its_shapes_and_dtypes(rng, monkeypatch):
    inputs, heads = la_data(rng, b=2, t=1)
    expected = linattn.linear_attention(**inputs, **heads)
    check_plan_keys(monkeypatch, "_linear_attention", linattn.linear_attention, inputs, heads, expected)
    inputs, state_shape = conv_data(rng, b=2)
    expected = linattn.causal_conv_with_state(**inputs, activation="silu")
    check_plan_keys(monkeypatch, "_causal_conv_with_state", linattn.causal_conv_with_state, inputs,
                    {"activation": "silu"}, expected)


def test_fast_path_errors_are_the_general_paths(rng, monkeypatch):
    """What a plan cannot know, the data addresses and the context, is checked on each call: an
    output overlapping an input and a closed context fail as through the general path and write
    nothing."""
    from linattn import ops

    general = GeneralPath(monkeypatch, "_linear_attention")
    inputs, heads = la_data(rng, hq=2, hkv=2, dk=6, dv=6, past=False)
    ctx = linattn.Context(threads=1)
    out = np.empty_like(inputs["value"])
    linattn.linear_attention(**inputs, **heads, out=out, context=ctx)
    assert general.calls == 1
    with pytest.raises(linattn.LinattnError) as expected:
        general.real(**inputs, **heads, out=inputs["value"], context=ctx)
    value = inputs["value"].copy()
    with pytest.raises(linattn.LinattnError) as fast:
        linattn.linear_attention(**inputs, **heads, out=inputs["value"], context=ctx)
    assert general.calls == 1 and "overlap" in fast.value.message
    assert (fast.value.status, fast.value.message) == (expected.value.status, expected.value.message)
    assert np.array_equal(bits(inputs["value"]), bits(value))
    ctx.close()
    with pytest.raises(ValueError, match="linattn context is closed"):
        linattn.linear_attention(**inputs, **heads, out=out, context=ctx)
    assert general.calls == 1

    general = GeneralPath(monkeypatch, "_causal_conv_with_state")
    x = rng.standard_normal((1, 4, 3), dtype=np.float32)
    w = rng.standard_normal((4, 1, 3), dtype=np.float32)
    y = np.empty_like(x)
    linattn.causal_conv_with_state(x, w, out=y)
    with pytest.raises(linattn.LinattnError, match="overlaps"):
        linattn.causal_conv_with_state(x, w, out=x)
    assert general.calls == 1


def test_empty_arrays_stay_on_the_general_path(rng, monkeypatch):
    """An empty array is passed with a null address by the general path: no plan for such shapes."""
    from linattn import ops

    general = GeneralPath(monkeypatch, "_linear_attention")
    inputs, heads = la_data(rng, t=0)
    first = linattn.linear_attention(**inputs, **heads)
    again = linattn.linear_attention(**inputs, **heads)
    assert general.calls == 2 and list(ops._la_fast.plans.values()) == [False]
    for a, e in zip(again, first):
        same_bits(a, e)
    x = rng.standard_normal((1, 4, 3), dtype=np.float32)
    w = rng.standard_normal((4, 1, 1), dtype=np.float32)  # k = 1: an empty state
    general = GeneralPath(monkeypatch, "_causal_conv_with_state")
    first = linattn.causal_conv_with_state(x, w)
    again = linattn.causal_conv_with_state(x, w)
    assert general.calls == 2 and again[1].shape == (1, 4, 0) and list(ops._conv_fast.plans.values()) == [False]
    same_bits(again[0], first[0])


def test_python_threads_share_plans_safely(rng):
    """Concurrent calls with one plan (ctypes releases the GIL during the C call) each use their
    own descriptors: every thread gets the bits of its own data."""
    jobs = []
    for _ in range(4):
        inputs, heads = la_data(rng, b=1, t=1, hq=4, hkv=4, dk=64, dv=64)
        jobs.append((inputs, linattn.linear_attention(**inputs, **heads, threads=1)))
    failures = []
    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # a thread switch between any two steps of a call

    def worker(inputs, expected):
        out = np.empty_like(expected[0])
        state = np.empty_like(expected[1])
        for _ in range(2000):
            out.fill(np.nan)
            state.fill(np.nan)
            linattn.linear_attention(**inputs, **heads, out=(out, state), threads=1)
            if not (np.array_equal(bits(out), bits(expected[0])) and np.array_equal(bits(state), bits(expected[1]))):
                failures.append(1)
                return

    workers = [threading.Thread(target=worker, args=job) for job in jobs]
    try:
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    finally:
        sys.setswitchinterval(switch)
    assert not failures


# ---------------------------------------------------------------- hostile arguments (issue 15)


@pytest.mark.parametrize("threads", [2**31, 2**32 + 1, 100000, 1025, -1])
def test_nonsense_thread_counts_are_rejected_naming_the_limit(threads):
    """A thread count outside 0..LINATTN_MAX_THREADS is an error naming the value and the limit:
    never wrapped to int32 (2**31 read as -2147483648, 2**32+1 as 1) nor silently clamped."""
    with pytest.raises(linattn.LinattnError, match=rf"num_threads.*0\.\.1024.*got {threads}\b"):
        linattn.Context(threads=threads)
    inputs, heads = la_data(np.random.default_rng(1))
    with pytest.raises(linattn.LinattnError, match=rf"num_threads.*got {threads}\b"):
        linattn.linear_attention(**inputs, **heads, threads=threads)


def test_thread_count_at_the_limit_is_used_as_given():
    with linattn.Context(threads=1024) as ctx:
        assert ctx.num_threads == 1024


@pytest.mark.parametrize("name,value", [("update_rule", "gated_delta\0x"), ("update_rule", "gated_delta\0"),
                                        ("activation", "silu\0none")])
def test_strings_with_a_nul_byte_are_rejected(rng, name, value):
    """The C library reads a string up to its first NUL: 'gated_delta\\0x' must not pass as gated_delta."""
    if name == "update_rule":
        inputs, heads = la_data(rng)
        with pytest.raises(linattn.LinattnError, match="update_rule"):
            linattn.linear_attention(**inputs, **heads, update_rule=value)
    else:
        x = rng.standard_normal((1, 2, 3), dtype=np.float32)
        w = rng.standard_normal((2, 1, 2), dtype=np.float32)
        with pytest.raises(linattn.LinattnError, match="activation"):
            linattn.causal_conv_with_state(x, w, activation=value)


@pytest.mark.parametrize("name", ["q_num_heads", "kv_num_heads", "chunk_size"])
def test_booleans_are_not_integers(rng, name):
    inputs, heads = la_data(rng, hq=2, hkv=2)
    args = {**heads, name: True}
    with pytest.raises(TypeError, match=rf"{name}: expected an integer, got True"):
        linattn.linear_attention(**inputs, **args)
    with pytest.raises(TypeError, match=r"dilation: expected an integer, got True"):
        linattn.causal_conv_with_state(np.zeros((1, 2, 3), np.float32), np.zeros((2, 1, 2), np.float32), dilation=True)


def test_linear_attention_shapes_rejects_element_counts_beyond_int64():
    """Shapes whose element count overflows int64 are rejected (the call rejects them too)."""
    big = 2**40
    with pytest.raises(linattn.LinattnError, match="output"):
        linattn.linear_attention_shapes((big, big, 4), (big, big, 4), (big, big, 4), q_num_heads=1, kv_num_heads=1)
    with pytest.raises(linattn.LinattnError, match="state"):
        linattn.linear_attention_shapes((1, 1, 2**33), (1, 1, 2**33), (1, 1, 2**33), q_num_heads=1, kv_num_heads=1)
    out, state = linattn.linear_attention_shapes((1, 1, 2**31), (1, 1, 2**31), (1, 1, 2**31), q_num_heads=2**16,
                                                 kv_num_heads=2**16)
    assert out == (1, 1, 2**31) and state == (1, 2**16, 2**15, 2**15)


def test_zero_tokens_with_a_huge_width_does_nothing():
    """T = 0: nothing to compute whatever the head sizes; no workspace (it asked for terabytes)."""
    w = 2**21
    q = np.zeros((1, 0, w), np.float32)
    out, state = linattn.linear_attention(q, q, q, q_num_heads=1, kv_num_heads=1, update_rule="linear",
                                          return_state=False)
    assert out.shape == (1, 0, w) and state is None
    lib = _lib.lib()
    desc = linattn.ops.linear_attention_desc(1, 1, "linear")
    t = _tensor.input_tensor(q, "query", strided=True)[1]
    o = _tensor.input_tensor(out, "output", strided=True)[1]
    size = ctypes.c_size_t(12345)
    with linattn.Context(threads=2) as ctx:
        _lib.check(lib.linattn_linear_attention_workspace_size(ctx.handle, ctypes.byref(desc), ctypes.byref(t),
                                                               ctypes.byref(t), ctypes.byref(t), None, None, None,
                                                               ctypes.byref(o), None, ctypes.byref(size)))
    assert size.value == 0


@pytest.mark.parametrize("layout", ["columns", "interleaved_rows"])
def test_disjoint_slices_of_one_buffer_are_accepted(rng, layout):
    """q, k, v and output as disjoint slices of one buffer (a fused projection, the output written
    next to it) touch different elements: accepted, with the results of separate arrays. Slices
    that share elements are still rejected."""
    b, t, h, d = 2, 5, 2, 8
    w = h * d
    if layout == "columns":  # each token row is [q | k | v | out]
        buf = rng.standard_normal((b, t, 4 * w), dtype=np.float32)
        q, k, v, o = (buf[..., i * w:(i + 1) * w] for i in range(4))
        overlapping = buf[..., 3 * w - 4:4 * w - 4]
    else:  # rows of q, k, v and out alternate: (b, t, 4, w)
        buf = rng.standard_normal((b, t, 4, w), dtype=np.float32)
        q, k, v, o = (buf[:, :, i, :] for i in range(4))
        overlapping = buf.reshape(b, t, 4 * w)[..., 3 * w - 1:4 * w - 1]
    expected, _ = linattn.linear_attention(q.copy(), k.copy(), v.copy(), q_num_heads=h, kv_num_heads=h,
                                           update_rule="linear", return_state=False)
    o[...] = np.nan
    linattn.linear_attention(q, k, v, q_num_heads=h, kv_num_heads=h, update_rule="linear", out=o, return_state=False)
    assert np.array_equal(bits(o), bits(expected))
    with pytest.raises(linattn.LinattnError, match="overlap"):
        linattn.linear_attention(q, k, v, q_num_heads=h, kv_num_heads=h, update_rule="linear", out=overlapping,
                                 return_state=False)
