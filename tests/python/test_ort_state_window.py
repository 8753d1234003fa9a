"""state_window > 0 for com.microsoft LinearAttention and CausalConvWithState through
liblinattn_ort.so (ONNX Runtime's CPU kernels reject it), against chained single-step sessions of
ORT's own CPU kernel with state_window = 0: slot j of the windowed present_state must be the state
after token T - W + j (zeros for j < W - T), and the output must be the one-call output. Only
slot W - 1 of past_state may be read (the other slots are poisoned with NaN)."""

from __future__ import annotations

import numpy as np
import pytest

ort = pytest.importorskip("onnxruntime")
# every test once per shape-reading path of the plugin (conftest.py, ort_api_path)
pytestmark = pytest.mark.usefixtures("ort_api_path")
from linattn import ort as lort  # noqa: E402
from linattn import ort_models as M  # noqa: E402

if not lort.is_available():
    pytest.skip("liblinattn_ort.so not built (needs the ONNX Runtime C API header)", allow_module_level=True)

from ort_testlib import assert_close, fresh_rng  # noqa: E402

TOL = {"float32": dict(rel_max=2e-5, rel=1e-4), "float16": dict(rel_max=4e-3, rel=4e-3)}


def window_slots(states, W, T, zero):
    """Slot j = state after token T - W + j (states[i] is the state after token i), zeros before."""
    return np.stack([states[T - W + j] if T - W + j >= 0 else zero for j in range(W)])


@pytest.mark.parametrize("dtype", ["float32", "float16"])
@pytest.mark.parametrize("T,W", [(1, 1), (1, 4), (3, 4), (6, 4), (5, 8), (9, 2)])
def test_linear_attention_window_matches_chained_steps(dtype, T, W):
    rng, seed = fresh_rng()
    B, H, dk, dv = 2, 2, 16, 8
    dt = M.np_dtype(dtype)
    q = rng.standard_normal((B, T, H * dk)).astype(dt)
    k = rng.standard_normal((B, T, H, dk))
    k = (k / np.linalg.norm(k, axis=-1, keepdims=True)).reshape(B, T, H * dk).astype(dt)
    v = rng.standard_normal((B, T, H * dv)).astype(dt)
    decay = (-np.abs(rng.standard_normal((B, T, H))) * 0.3).astype(dt)
    beta = rng.uniform(0, 1, (B, T, H)).astype(dt)
    past = (rng.standard_normal((B, H, dk, dv)) * 0.3).astype(dt)
    feeds = dict(query=q, key=k, value=v, decay=decay, beta=beta)
    plain = M.session(M.linear_attention_model(M.CONTRIB, q_num_heads=H, kv_num_heads=H, dtype=dtype), plugin=False)
    states, outs, s = [], [], past
    for t in range(T):
        step = {n: a[:, t:t + 1] for n, a in feeds.items()}
        o, s = plain.run(None, dict(step, past_state=s))
        outs.append(o)
        states.append(s)
    expected_out = np.concatenate(outs, axis=1)
    expected_state = window_slots(states, W, T, np.zeros_like(past))

    window_past = np.full((W,) + past.shape, np.nan, dt)
    window_past[W - 1] = past
    model = M.linear_attention_model(M.CONTRIB, q_num_heads=H, kv_num_heads=H, dtype=dtype, state_window=W)
    sess = M.session(model, plugin=True)
    out, state = M.run(sess, dict(feeds, past_state=window_past),
                       {"output": expected_out.shape, "present_state": expected_state.shape})
    what = f"seed {seed} {dtype} T={T} W={W}"
    assert_close(out, expected_out, dtype, "output " + what, **TOL[dtype])
    assert_close(state, expected_state, dtype, "present_state " + what, **TOL[dtype])
    assert (state[:max(0, W - T)] == 0).all(), "slots before the call's first token must be zeros"


@pytest.mark.parametrize("channels_last", [0, 1])
@pytest.mark.parametrize("T,W", [(1, 1), (1, 3), (4, 3), (7, 8), (2, 8)])
def test_causal_conv_window_matches_chained_steps(channels_last, T, W):
    rng, seed = fresh_rng()
    B, C, K, dil = 2, 5, 4, 2
    S = (K - 1) * dil
    x = rng.standard_normal((B, T, C) if channels_last else (B, C, T)).astype(np.float32)
    w = rng.standard_normal((C, 1, K)).astype(np.float32)
    bias = rng.standard_normal(C).astype(np.float32)
    past = rng.standard_normal((B, S, C) if channels_last else (B, C, S)).astype(np.float32)
    attrs = dict(activation="silu", dilation=dil, channels_last=channels_last)
    plain = M.session(M.causal_conv_model(M.CONTRIB, **attrs), plugin=False)
    states, outs, s = [], [], past
    for t in range(T):
        xt = x[:, t:t + 1] if channels_last else x[:, :, t:t + 1]
        o, s = plain.run(None, dict(input=xt, weight=w, bias=bias, past_state=s))
        outs.append(o)
        states.append(s)
    expected_out = np.concatenate(outs, axis=1 if channels_last else 2)
    expected_state = window_slots(states, W, T, np.zeros_like(past))

    window_past = np.full((W,) + past.shape, np.nan, np.float32)
    window_past[W - 1] = past
    sess = M.session(M.causal_conv_model(M.CONTRIB, state_window=W, **attrs), plugin=True)
    out, state = M.run(sess, dict(input=x, weight=w, bias=bias, past_state=window_past),
                       {"output": expected_out.shape, "present_state": expected_state.shape})
    what = f"seed {seed} channels_last={channels_last} T={T} W={W}"
    assert_close(out, expected_out, "float32", "output " + what)
    np.testing.assert_array_equal(state, expected_state, "present_state " + what)


def test_window_state_shape_inferred_at_load():
    shapes = {"query": [2, 3, 32], "key": [2, 3, 32], "value": [2, 3, 16], "past_state": [4, 2, 2, 16, 8]}
    model = M.linear_attention_model(M.CONTRIB, q_num_heads=2, kv_num_heads=2, shapes=shapes, state_window=4)
    sess = M.session(model, plugin=True)
    assert sess.get_outputs()[1].shape == [4, 2, 2, 16, 8]
    conv = M.causal_conv_model(M.CONTRIB, shapes={"input": [2, 5, 7], "weight": [5, 1, 4]}, state_window=3)
    assert M.session(conv, plugin=True).get_outputs()[1].shape == [3, 2, 5, 3]


def test_window_past_state_of_wrong_rank_names_the_argument():
    model = M.linear_attention_model(M.CONTRIB, q_num_heads=1, kv_num_heads=1, inputs=("query", "key", "value",
                                     "past_state"), state_window=2)
    sess = M.session(model, plugin=True)
    f = {n: np.ones((1, 1, 4), np.float32) for n in ("query", "key", "value")}
    with pytest.raises(Exception, match="past_state"):
        M.run(sess, dict(f, past_state=np.zeros((1, 1, 4, 4), np.float32)))
