"""state_window (ONNX Runtime contrib) of linear_attention and causal_conv_with_state.

ORT's CPU kernels reject state_window > 0, so the oracle is the sequential decomposition through
the existing operators with window 0:
  - LinearAttention: tokens [0, T - W + first + 1) in one call, then one token per call, chaining
    a float32 state (first = max(0, W - T)); slot j = that chain's state after token T - W + j,
    rounded to the state dtype; slots j < first are zeros; the output equals the chain's outputs
    bit for bit, and the window-0 call's to rounding (a token range in one sweep and token by
    token round differently);
  - CausalConvWithState: slot j = the last (k-1)*dilation samples of concat(past, input[:p + 1])
    for p = L - W + j (a copy: exact), and the output equals the window-0 call's bit for bit.
Every kernel family, float32/float16/bfloat16, both conv layouts, in place, T < W.
"""

from __future__ import annotations

import numpy as np
import pytest

import linattn
from linattn import LinattnError
from linattn import ort_models as M

DTYPES = ("float32", "float16", "bfloat16")


def bits(a):
    return np.ascontiguousarray(a).view(np.uint8)


def la_case(rng, dtype, B, T, H, dk, dv, W):
    dt = M.np_dtype(dtype)
    k = rng.standard_normal((B, T, H, dk))
    k /= np.linalg.norm(k, axis=-1, keepdims=True)
    return dict(
        q=rng.standard_normal((B, T, H * dk)).astype(dt), k=k.reshape(B, T, H * dk).astype(dt),
        v=rng.standard_normal((B, T, H * dv)).astype(dt), g=(-rng.random((B, T, H))).astype(dt),
        b=rng.random((B, T, H)).astype(dt),
        past=(0.1 * rng.standard_normal((W, B, H, dk, dv))).astype(np.float32))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("W,T", [(1, 5), (3, 7), (4, 4), (8, 3), (2, 1), (8, 70), (3, 0)])
def test_linear_attention_window(contexts, dtype, W, T):
    rng = np.random.default_rng(W * 100 + T)
    B, H, dk, dv = 2, 2, 16, 8
    c = la_case(rng, dtype, B, T, H, dk, dv, W)
    kw = dict(q_num_heads=H, kv_num_heads=H)
    first = max(0, W - T)
    def decompose(ctx, start):
        """float32 state chained through window-0 calls from `start` (slot W - 1 of past)."""
        state = start.astype(np.float32)
        outs, slots = [], np.zeros((W,) + start.shape, np.float32)
        t = 0
        for j in range(first, W if T > 0 else 0):
            end = T - W + j + 1
            o, state = linattn.linear_attention(c["q"][:, t:end], c["k"][:, t:end], c["v"][:, t:end], state,
                                                c["g"][:, t:end], c["b"][:, t:end], context=ctx, **kw)
            outs.append(o)
            slots[j] = state
            t = end
        if T == 0:
            slots[W - 1] = state
        return outs, slots

    for label, ctx in contexts.items():
        outs, slots = decompose(ctx, c["past"][W - 1])
        o0, s0 = linattn.linear_attention(c["q"], c["k"], c["v"], c["past"][W - 1], c["g"], c["b"], context=ctx, **kw)
        out = np.full(o0.shape, np.nan, np.float32).astype(o0.dtype)
        present = np.full(c["past"].shape, np.nan, np.float32)
        o1, s1 = linattn.linear_attention(c["q"], c["k"], c["v"], c["past"], c["g"], c["b"], state_window=W,
                                          out=(out, present), context=ctx, **kw)
        assert s1.shape == (W, B, H, dk, dv)
        assert np.array_equal(bits(s1), bits(slots)), f"{label}: window slots differ from the decomposition"
        if T:
            assert np.array_equal(bits(o1), bits(np.concatenate(outs, 1))), f"{label}: output differs"
        np.testing.assert_allclose(o1.astype(np.float64), o0.astype(np.float64), rtol=2e-2 if dtype != "float32" else 1e-5,
                                   atol=1e-2 if dtype != "float32" else 1e-6, err_msg=f"{label}: output vs window 0")
        np.testing.assert_allclose(s1[W - 1], s0, rtol=1e-5, atol=1e-6, err_msg=f"{label}: slot W-1 vs window 0")
        # in place, and 16-bit states rounded once per slot (from an fp32 chain)
        for sdt in ("float32", "bfloat16"):
            pool = c["past"].astype(M.np_dtype(sdt))
            expect = decompose(ctx, pool[W - 1])[1].astype(M.np_dtype(sdt))
            _, s2 = linattn.linear_attention(c["q"], c["k"], c["v"], pool, c["g"], c["b"], state_window=W,
                                             out=(None, pool), context=ctx, **kw)
            assert s2 is pool and np.array_equal(bits(pool), bits(expect)), f"{label}: in place {sdt}"


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("W,L,K,dil", [(1, 6, 4, 1), (4, 9, 4, 2), (8, 3, 3, 1), (3, 3, 1, 1), (2, 0, 4, 1), (5, 40, 4, 3)])
def test_causal_conv_window(contexts, dtype, channels_last, W, L, K, dil):
    rng = np.random.default_rng(W * 1000 + L * 10 + K)
    dt = M.np_dtype(dtype)
    B, C, S = 2, 19, (K - 1) * dil
    x = rng.standard_normal((B, L, C) if channels_last else (B, C, L)).astype(dt)
    w = rng.standard_normal((C, 1, K)).astype(dt)
    bias = rng.standard_normal(C).astype(dt)
    past = rng.standard_normal((W, B, S, C) if channels_last else (W, B, C, S)).astype(dt)
    xs = x if channels_last else x.transpose(0, 2, 1)  # (B, L, C)
    padded = np.concatenate([past[W - 1] if channels_last else past[W - 1].transpose(0, 2, 1), xs], 1)
    expect = np.zeros_like(past)
    for j in range(W):
        p = L - W + j
        if p >= 0 or (L == 0 and j == W - 1):
            rows = padded[:, p + 1:p + 1 + S]
            expect[j] = rows if channels_last else rows.transpose(0, 2, 1)
    for label, ctx in contexts.items():
        kw = dict(activation="silu", dilation=dil, channels_last=channels_last, context=ctx)
        y0, _ = linattn.causal_conv_with_state(x, w, bias, past[W - 1], **kw)
        present = np.full(past.shape, np.nan, np.float32).astype(dt)
        y1, s1 = linattn.causal_conv_with_state(x, w, bias, past, state_window=W, out=(None, present), **kw)
        assert np.array_equal(bits(y1), bits(y0)), f"{label}: output differs from the window-0 call"
        assert np.array_equal(bits(s1), bits(expect)), f"{label}: window slots differ"
        pool = past.copy()
        _, s2 = linattn.causal_conv_with_state(x, w, bias, pool, state_window=W, out=(None, pool), **kw)
        assert np.array_equal(bits(pool), bits(expect)), f"{label}: in place"


def test_window_errors_name_the_argument():
    rng = np.random.default_rng(5)
    c = la_case(rng, "float32", 1, 3, 2, 8, 8, 2)
    with pytest.raises(LinattnError, match="state_window: must be in"):
        linattn.linear_attention(c["q"], c["k"], c["v"], None, c["g"], c["b"], q_num_heads=2, kv_num_heads=2,
                                 state_window=9)
    with pytest.raises(LinattnError, match="past_state: expected shape"):
        linattn.linear_attention(c["q"], c["k"], c["v"], c["past"][:1], c["g"], c["b"], q_num_heads=2,
                                 kv_num_heads=2, state_window=2)
    x = rng.standard_normal((1, 4, 5)).astype(np.float32)
    w = rng.standard_normal((4, 1, 3)).astype(np.float32)
    bad = rng.standard_normal((3, 1, 4, 2)).astype(np.float32)
    out = np.full(x.shape, 7.0, np.float32)
    with pytest.raises(LinattnError, match="past_state: expected shape"):
        linattn.causal_conv_with_state(x, w, None, bad, state_window=2, out=out)
    assert (out == 7.0).all()
