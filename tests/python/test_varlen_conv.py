"""linattn.varlen_causal_conv_with_state: ONNX Runtime's com.microsoft VarlenCausalConvWithState on
packed ragged batches, plus state pools.

Oracles:
  - ONNX Runtime 1.32's own CPU VarlenCausalConvWithState (one-node models), on random ragged
    lengths 1..300, every attribute, f32/f16/bf16, capture on and off. ORT sums bias + taps in
    fp32 and rounds once; linattn's conv kernels add the bias last (fused multiply-adds) and, for
    16-bit types, apply SiLU to the rounded sum (the onnx.reference order), so outputs agree to
    rounding (a few fp32 ulps / about one 16-bit ulp); final_state and state_update are copies
    of input samples and must match bit for bit.
  - the sequential decomposition: each sequence alone, one token at a time, through
    linattn.causal_conv_with_state on the same kernels: identical bits (the conv families give the
    same bits whatever way a sequence is cut into calls), for ragged batches with length-0
    sequences, state pools, has_initial_state, both state layouts, in place.
Outputs are NaN-poisoned before every call so an element the kernels skip shows up.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import linattn
from linattn import LinattnError
from linattn import ort_models as M


DTYPES = ("float32", "float16", "bfloat16")


def examples(n):
    return max(3, n * settings.default.max_examples // 100)


def varlen_model(dtype, *, has_bias, capacity, activation, dilation):
    from onnx import TensorProto, helper

    ins = ["input", "weight", "cu", "bias" if has_bias else "", "initial_state"] + (["capture_count"] if capacity else [])
    outs = ["output", "final_state"] + (["state_update"] if capacity else [])
    attrs = {"activation": activation, "dilation": dilation}
    if capacity:
        attrs["state_update_capacity"] = capacity
    node = helper.make_node("VarlenCausalConvWithState", ins, outs, domain=M.CONTRIB, **attrs)
    vis = [M._vi("input", dtype), M._vi("weight", dtype), helper.make_tensor_value_info("cu", TensorProto.INT32, None)]
    if has_bias:
        vis.append(M._vi("bias", dtype))
    vis.append(M._vi("initial_state", dtype))
    if capacity:
        vis.append(helper.make_tensor_value_info("capture_count", TensorProto.INT32, None))
    return M._make_model([node], vis, [M._vi(o, dtype) for o in outs], M.CONTRIB)


def random_case(rng, dtype, lengths, channels, kernel, dilation, has_bias, capacity, pool=0, state_cl=False):
    dt = M.np_dtype(dtype)
    total, batch = int(sum(lengths)), len(lengths)
    S = (kernel - 1) * dilation
    n_states = batch + pool
    case = {
        "input": rng.standard_normal((total, channels)).astype(dt),
        "weight": (rng.standard_normal((channels, 1, kernel)) / np.sqrt(kernel)).astype(dt),
        "cu": np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32),
        "initial_state": rng.standard_normal((n_states, S, channels) if state_cl else (n_states, channels, S)).astype(dt),
    }
    if has_bias:
        case["bias"] = rng.standard_normal(channels).astype(dt)
    if capacity:
        case["capture_count"] = rng.integers(-2, 11, batch).astype(np.int32)
    return case


def poisoned(shape, dtype):
    return np.full(shape, np.nan, np.float32).astype(M.np_dtype(dtype))


EPS = {"float32": 2.0**-23, "float16": 2.0**-10, "bfloat16": 2.0**-7}
TINY = {"float32": 2.0**-149, "float16": 2.0**-24, "bfloat16": 2.0**-133}  # subnormal spacing


def tap_magnitude(case, dilation):
    """sum_j |w_j x_(t - (k-1-j) d)| + |bias| per output element (float64), the scale of the
    rounding differences between two summation orders."""
    x = np.abs(case["input"].astype(np.float64))
    w = np.abs(case["weight"].astype(np.float64))[:, 0, :]
    s = np.abs(case["initial_state"].astype(np.float64))
    cu, K = case["cu"], w.shape[1]
    mag = np.zeros_like(x)
    for i in range(len(cu) - 1):
        padded = np.concatenate([s[i].T, x[cu[i]:cu[i + 1]]], 0)
        for j in range(K):
            mag[cu[i]:cu[i + 1]] += w[:, j] * padded[j * dilation: j * dilation + cu[i + 1] - cu[i]]
    if "bias" in case:
        mag += np.abs(case["bias"].astype(np.float64))
    return mag


def assert_rounding_close(actual, expected, mag, dtype, what):
    """|a - e| <= 4 eps_T * magnitude of the terms + one ulp of e (at least the subnormal spacing):
    two evaluation orders of the same sum, each rounded to T (16-bit: possibly twice) differ by
    that much at most."""
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    assert np.isfinite(a).all(), f"{what}: non-finite elements (unwritten output?)"
    bound = 4 * EPS[dtype] * mag + EPS[dtype] * np.abs(e) + TINY[dtype]
    err = np.abs(a - e)
    bad = err > bound
    assert not bad.any(), (f"{what}: {int(bad.sum())} of {e.size} off; worst |a-e|={err.max():.3e} "
                           f"(bound there {bound.flat[int(np.argmax(err - bound))]:.3e})")


def run_linattn(case, ctx, *, activation, dilation, capacity, **kw):
    x = case["input"]
    S = case["initial_state"].shape[2 if not kw.get("state_channels_last") else 1]
    out = poisoned(x.shape, str(x.dtype) if x.dtype != M.np_dtype("bfloat16") else "bfloat16")
    final = kw.pop("final", None)
    if final is None:
        final = np.full_like(case["initial_state"], np.nan)
    upd = np.full((len(case["cu"]) - 1, capacity, x.shape[1]), np.nan, np.float32).astype(x.dtype) if capacity else None
    del S
    return linattn.varlen_causal_conv_with_state(
        x, case["weight"], case["cu"], case.get("bias"), case["initial_state"], case.get("capture_count"),
        activation=activation, dilation=dilation, state_update_capacity=capacity, out=(out, final, upd),
        context=ctx, **kw)


@settings(max_examples=examples(150))
@given(data=st.data())
def test_matches_onnxruntime_cpu(contexts, data):
    dtype = data.draw(st.sampled_from(DTYPES), "dtype")
    batch = data.draw(st.integers(1, 6), "batch")
    lengths = data.draw(st.lists(st.one_of(st.integers(1, 9), st.integers(1, 300)), min_size=batch,
                                 max_size=batch), "lengths")
    channels = data.draw(st.integers(1, 80), "channels")
    kernel = data.draw(st.integers(1, 5), "kernel")
    dilation = data.draw(st.integers(1, 3), "dilation")
    activation = data.draw(st.sampled_from(("none", "silu", "swish")), "activation")
    has_bias = data.draw(st.booleans(), "bias")
    capacity = data.draw(st.sampled_from((0, 0, 1, 3, 8)), "capacity")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    rng = np.random.default_rng(seed)
    case = random_case(rng, dtype, lengths, channels, kernel, dilation, has_bias, capacity)

    sess = M.session(varlen_model(dtype, has_bias=has_bias, capacity=capacity, activation=activation,
                                  dilation=dilation), plugin=False)
    S = (kernel - 1) * dilation
    shapes = {"output": case["input"].shape, "final_state": (batch, channels, S)}
    if capacity:
        shapes["state_update"] = (batch, capacity, channels)
    expected = M.run(sess, case, shapes)
    mag = tap_magnitude(case, dilation)
    for label, ctx in contexts.items():
        got = run_linattn(case, ctx, activation=activation, dilation=dilation, capacity=capacity)
        assert_rounding_close(got[0], expected[0], mag, dtype, f"{label} output")
        np.testing.assert_array_equal(got[1].view(np.uint8), expected[1].view(np.uint8), f"{label} final_state")
        if capacity:
            np.testing.assert_array_equal(got[2].view(np.uint8), expected[2].view(np.uint8), f"{label} state_update")
        else:
            assert got[2] is None


def sequential(case, ctx, *, activation, dilation, state_indices=None, has_initial=None, state_cl=False):
    """Each sequence alone, one token at a time, through causal_conv_with_state (channels_last)."""
    x, cu = case["input"], case["cu"]
    pool = case["initial_state"].copy()
    out = np.zeros_like(x)
    for i in range(len(cu) - 1):
        slot = i if state_indices is None else int(state_indices[i])
        st_ = pool[slot] if state_cl else pool[slot].T  # (S, C)
        st_ = np.ascontiguousarray(st_[None])
        if has_initial is not None and not has_initial[i]:
            st_ = np.zeros_like(st_)
        for t in range(cu[i], cu[i + 1]):
            y, st_ = linattn.causal_conv_with_state(x[None, t:t + 1], case["weight"], case.get("bias"), st_,
                                                    activation=activation, dilation=dilation, channels_last=True,
                                                    context=ctx)
            out[t] = y[0, 0]
        pool[slot] = st_[0] if state_cl else st_[0].T
    return out, pool


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


@settings(max_examples=examples(80))
@given(data=st.data())
def test_matches_sequential_decomposition(contexts, data):
    dtype = data.draw(st.sampled_from(DTYPES), "dtype")
    batch = data.draw(st.integers(0, 6), "batch")
    lengths = data.draw(st.lists(st.sampled_from((0, 1, 1, 2, 3, 5, 17, 40)), min_size=batch, max_size=batch), "lengths")
    channels = data.draw(st.sampled_from((1, 7, 16, 33, 70)), "channels")
    kernel = data.draw(st.integers(1, 5), "kernel")
    dilation = data.draw(st.integers(1, 3), "dilation")
    activation = data.draw(st.sampled_from(("none", "silu")), "activation")
    has_bias = data.draw(st.booleans(), "bias")
    state_cl = data.draw(st.booleans(), "state_channels_last")
    pool = data.draw(st.integers(0, 3), "extra pool slots")
    use_idx = data.draw(st.booleans(), "state_indices")
    use_has = data.draw(st.booleans(), "has_initial_state")
    in_place = data.draw(st.booleans(), "in place")
    seed = data.draw(st.integers(0, 2**32 - 1), "seed")
    rng = np.random.default_rng(seed)
    case = random_case(rng, dtype, lengths, channels, kernel, dilation, has_bias, 0,
                       pool=pool if use_idx else 0, state_cl=state_cl)
    n_states = case["initial_state"].shape[0]
    idx = rng.permutation(n_states)[:batch].astype(np.int32) if use_idx else None
    has = rng.integers(0, 2, batch).astype(bool) if use_has else None
    exp_out, exp_pool = sequential(case, contexts["auto"], activation=activation, dilation=dilation,
                                   state_indices=idx, has_initial=has, state_cl=state_cl)
    for label, ctx in contexts.items():
        if label != "auto":
            exp_out, exp_pool = sequential(case, ctx, activation=activation, dilation=dilation,
                                           state_indices=idx, has_initial=has, state_cl=state_cl)
        initial = case["initial_state"].copy()
        c = dict(case, initial_state=initial)
        final = initial if in_place else None
        out, fin, upd = run_linattn(c, ctx, activation=activation, dilation=dilation, capacity=0,
                                    state_indices=idx, has_initial_state=has, state_channels_last=state_cl,
                                    final=final)
        assert upd is None
        assert np.array_equal(bits(out), bits(exp_out)), f"{label}: output differs from the sequential decomposition"
        if not in_place and idx is not None:
            # slots no sequence names are not written: still NaN in a poisoned final_state
            untouched = np.setdiff1d(np.arange(n_states), idx)
            assert np.isnan(fin[untouched].astype(np.float32)).all(), f"{label}: unnamed pool slots written"
            fin = fin.copy()
            fin[untouched] = case["initial_state"][untouched]
        assert np.array_equal(bits(fin), bits(exp_pool)), f"{label}: final_state differs"


def test_threads_give_identical_bits():
    rng = np.random.default_rng(7)
    lengths = [1, 1, 300, 0, 57, 1, 129, 2, 1000]
    for dtype in DTYPES:
        case = random_case(rng, dtype, lengths, 1536, 4, 1, True, 4)
        results = []
        for threads in (1, 2, 3):
            with linattn.Context(threads=threads) as ctx:
                results.append(run_linattn(case, ctx, activation="silu", dilation=1, capacity=4))
        for r in results[1:]:
            for a, b in zip(results[0], r):
                assert np.array_equal(bits(a), bits(b)), f"{dtype}: threads change the bits"


# ---------------------------------------------------------------- bad input


def _small_case(rng, capacity=0):
    return random_case(rng, "float32", [3, 2], 8, 4, 1, True, capacity)


@pytest.mark.parametrize(
    "cu, needle",
    [
        ([1, 3, 5], "cu_seqlens[0] must be 0"),
        ([0, 3, 4], "must equal total_tokens"),
        ([0, 4, 3, 5], "non-decreasing"),
        ([0, 3, 9], "must equal total_tokens"),
    ],
)
def test_bad_cu_seqlens(cu, needle):
    rng = np.random.default_rng(1)
    case = _small_case(rng)
    case["cu"] = np.array(cu, np.int32)
    case["initial_state"] = rng.standard_normal((len(cu) - 1, 8, 3)).astype(np.float32)
    out = np.full(case["input"].shape, 7.0, np.float32)
    fin = np.full(case["initial_state"].shape, 7.0, np.float32)
    with pytest.raises(LinattnError) as e:
        linattn.varlen_causal_conv_with_state(case["input"], case["weight"], case["cu"], case["bias"],
                                              case["initial_state"], out=(out, fin))
    assert "cu_seqlens" in e.value.message and needle in e.value.message, e.value.message
    assert (out == 7.0).all() and (fin == 7.0).all(), "outputs written on error"


@pytest.mark.parametrize(
    "capacity, with_count, needle",
    [
        (0, True, "capture_count: must be NULL"),
        (3, False, "capture_count: required"),
        (9, True, "state_update_capacity: must be in [0, 8]"),
        (-1, False, "state_update_capacity: must be in [0, 8]"),
    ],
)
def test_bad_capture(capacity, with_count, needle):
    rng = np.random.default_rng(2)
    case = _small_case(rng)
    out = np.full(case["input"].shape, 7.0, np.float32)
    fin = np.full(case["initial_state"].shape, 7.0, np.float32)
    with pytest.raises(LinattnError) as e:
        linattn.varlen_causal_conv_with_state(case["input"], case["weight"], case["cu"], case["bias"],
                                              case["initial_state"], np.array([1, 1]) if with_count else None,
                                              state_update_capacity=capacity, out=(out, fin))
    assert needle in e.value.message, e.value.message
    assert (out == 7.0).all() and (fin == 7.0).all()


@pytest.mark.parametrize(
    "idx, needle",
    [([0, 4], "outside the pool [0, 4)"), ([-1, 0], "outside the pool"), ([2, 2], "appears twice")],
)
def test_bad_pool_indices(idx, needle):
    rng = np.random.default_rng(3)
    case = random_case(rng, "float32", [3, 2], 8, 4, 1, True, 0, pool=2)
    pool = case["initial_state"]
    before = pool.copy()
    out = np.full(case["input"].shape, 7.0, np.float32)
    with pytest.raises(LinattnError) as e:
        linattn.varlen_causal_conv_with_state(case["input"], case["weight"], case["cu"], case["bias"], pool,
                                              state_indices=np.array(idx), out=(out, pool))
    assert "state_indices" in e.value.message and needle in e.value.message, e.value.message
    assert (out == 7.0).all() and np.array_equal(pool, before)


def test_state_shape_errors_name_the_argument():
    rng = np.random.default_rng(4)
    case = _small_case(rng)
    with pytest.raises(LinattnError, match="initial_state: expected shape"):
        linattn.varlen_causal_conv_with_state(case["input"], case["weight"], case["cu"], case["bias"],
                                              case["initial_state"][:, :, :2])
    with pytest.raises(LinattnError, match="initial_state: expected 2 states"):
        linattn.varlen_causal_conv_with_state(case["input"], case["weight"], case["cu"], case["bias"],
                                              np.concatenate([case["initial_state"]] * 2))
    with pytest.raises(LinattnError, match="initial_state: required"):
        linattn.varlen_causal_conv_with_state(case["input"], case["weight"], case["cu"], case["bias"])
